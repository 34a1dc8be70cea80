"""Evaluation of the analyser against hand-labelled units (LABELLING.md semantics).

Labels are dicts with ``id``, ``lang``, ``text``, ``ai_training``, ``consent``, ``negated`` and
optionally ``alert`` (derived as ``ai_training and consent != "opt_in"`` when absent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from monitor.models import Analysis

Predict = Callable[[str, str | None], Analysis]

FIELDS = ("ai_training", "consent", "negated", "alert")


def _default_predict(text: str, lang: str | None) -> Analysis:
    from monitor.analyse import analyse_unit

    return analyse_unit(text, lang=lang)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass(slots=True)
class BinaryCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, gold: bool, pred: bool) -> None:
        if gold and pred:
            self.tp += 1
        elif pred:
            self.fp += 1
        elif gold:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None or p + r == 0:
            return None if (p is None or r is None) else 0.0
        return 2 * p * r / (p + r)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


@dataclass(slots=True)
class Metrics:
    """Metrics over one group of units (all, or one language)."""

    n: int = 0
    ai_training: BinaryCounts = field(default_factory=BinaryCounts)
    alert: BinaryCounts = field(default_factory=BinaryCounts)
    consent_both_true: int = 0  # units where gold and predicted ai_training are both true
    consent_both_true_correct: int = 0
    consent_correct: int = 0  # 4-way (opt_in / opt_out / none / n/a) over every unit
    opt_in_predicted: int = 0
    opt_in_predicted_correct: int = 0
    negated_gold: int = 0
    negated_gold_errors: int = 0  # gold-negated units whose predicted negated flag is wrong
    negated_correct: int = 0

    def add(self, gold: dict[str, Any], pred: dict[str, Any]) -> None:
        self.n += 1
        self.ai_training.add(gold["ai_training"], pred["ai_training"])
        self.alert.add(gold["alert"], pred["alert"])
        if gold["ai_training"] and pred["ai_training"]:
            self.consent_both_true += 1
            self.consent_both_true_correct += gold["consent"] == pred["consent"]
        self.consent_correct += gold["consent"] == pred["consent"]
        if pred["consent"] == "opt_in":
            self.opt_in_predicted += 1
            self.opt_in_predicted_correct += gold["consent"] == "opt_in"
        if gold["negated"]:
            self.negated_gold += 1
            self.negated_gold_errors += not pred["negated"]
        self.negated_correct += gold["negated"] == pred["negated"]

    @property
    def consent_accuracy(self) -> float | None:
        return _ratio(self.consent_both_true_correct, self.consent_both_true)

    @property
    def consent_accuracy_4way(self) -> float | None:
        return _ratio(self.consent_correct, self.n)

    @property
    def opt_in_precision(self) -> float | None:
        return _ratio(self.opt_in_predicted_correct, self.opt_in_predicted)

    @property
    def negated_error_rate(self) -> float | None:
        return _ratio(self.negated_gold_errors, self.negated_gold)

    @property
    def negated_accuracy(self) -> float | None:
        return _ratio(self.negated_correct, self.n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "ai_training": self.ai_training.to_dict(),
            "alert": self.alert.to_dict(),
            "consent_accuracy": self.consent_accuracy,
            "consent_units": self.consent_both_true,
            "consent_accuracy_4way": self.consent_accuracy_4way,
            "opt_in_precision": self.opt_in_precision,
            "opt_in_predicted": self.opt_in_predicted,
            "negated_units": self.negated_gold,
            "negated_error_rate": self.negated_error_rate,
            "negated_accuracy": self.negated_accuracy,
        }


@dataclass(slots=True)
class EvalError:
    id: str
    lang: str
    field: str
    gold: Any
    predicted: Any
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "lang": self.lang,
            "field": self.field,
            "gold": self.gold,
            "predicted": self.predicted,
            "text": self.text,
        }


@dataclass(slots=True)
class EvalReport:
    overall: Metrics
    by_lang: dict[str, Metrics]
    errors: list[EvalError]

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall.to_dict(),
            "by_lang": {k: v.to_dict() for k, v in sorted(self.by_lang.items())},
            "errors": [e.to_dict() for e in self.errors],
        }

    def format_text(self, max_errors: int = 50) -> str:
        def f(x: float | None) -> str:
            return "   -" if x is None else f"{x:.2f}"

        head = (
            f"{'lang':<5} {'n':>4}  {'AI P':>5} {'AI R':>5} {'AI F1':>5}  "
            f"{'al P':>5} {'al R':>5} {'al F1':>5}  {'cons':>5} {'cons4':>5} "
            f"{'optinP':>6}  {'neg acc':>7} {'neg err':>7}"
        )
        lines = [head, "-" * len(head)]
        rows = [*sorted(self.by_lang.items()), ("ALL", self.overall)]
        for name, m in rows:
            neg = f"{m.negated_gold_errors}/{m.negated_gold}" if m.negated_gold else "-"
            lines.append(
                f"{name:<5} {m.n:>4}  {f(m.ai_training.precision):>5} {f(m.ai_training.recall):>5} "
                f"{f(m.ai_training.f1):>5}  {f(m.alert.precision):>5} {f(m.alert.recall):>5} "
                f"{f(m.alert.f1):>5}  {f(m.consent_accuracy):>5} {f(m.consent_accuracy_4way):>5} "
                f"{f(m.opt_in_precision):>6}  {f(m.negated_accuracy):>7} {neg:>7}"
            )
        lines.append("")
        lines.append(
            "AI = ai_training, al = alert, cons = consent accuracy where gold and predicted "
            "ai_training are true, cons4 = 4-way consent accuracy, optinP = opt-in precision, "
            "neg acc = negated accuracy over every unit, "
            "neg err = gold-negated units with a wrong negated flag"
        )
        if self.errors:
            lines.append("")
            lines.append(f"errors ({len(self.errors)}):")
            for e in self.errors[:max_errors]:
                text = e.text if len(e.text) <= 140 else e.text[:137] + "..."
                lines.append(
                    f"  {e.id} [{e.lang}] {e.field}: gold={e.gold} got={e.predicted}  {text}"
                )
            if len(self.errors) > max_errors:
                lines.append(f"  ... {len(self.errors) - max_errors} more")
        return "\n".join(lines)


def _gold(label: dict[str, Any]) -> dict[str, Any]:
    ai = bool(label["ai_training"])
    consent = str(label.get("consent") or ("none" if ai else "n/a"))
    alert = label.get("alert")
    if alert is None:
        alert = ai and consent != "opt_in"
    return {
        "ai_training": ai,
        "consent": consent,
        "negated": bool(label.get("negated", False)),
        "alert": bool(alert),
    }


def evaluate(labels: Iterable[dict[str, Any]], predict: Predict | None = None) -> EvalReport:
    """Score ``predict`` (default: :func:`monitor.analyse.analyse_unit`) on labelled units."""
    run = predict or _default_predict
    overall = Metrics()
    by_lang: dict[str, Metrics] = {}
    errors: list[EvalError] = []
    for label in labels:
        text = str(label["text"])
        gold = _gold(label)
        a = run(text, label.get("lang"))
        # Unlabelled languages are grouped by the detected one, not lumped into "und".
        lang = label.get("lang") or a.lang
        pred = {
            "ai_training": a.ai_training,
            "consent": a.consent.value,
            "negated": a.negated,
            "alert": a.alert,
        }
        overall.add(gold, pred)
        by_lang.setdefault(lang, Metrics()).add(gold, pred)
        for name in FIELDS:
            if gold[name] != pred[name]:
                errors.append(
                    EvalError(str(label.get("id", "")), lang, name, gold[name], pred[name], text)
                )
    return EvalReport(overall, by_lang, errors)

"""Quality floors of the AI-training analyser on the labelled sets (LABELLING.md semantics).

The development sets (labels_dev.jsonl, labels_dev2.jsonl, labels_dev3.jsonl, labels_dev4.jsonl
and labels_dev5.jsonl) are what the packs are tuned on, with the language given and detected;
labels_test.jsonl is held out and only measured here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from monitor.analyse import analyse_unit
from monitor.evaluate import EvalReport, evaluate
from monitor.models import Analysis, Consent

DATA = Path(__file__).resolve().parent / "data"

AI_PRECISION = {"en": 0.95}
AI_RECALL = {"en": 0.85}
AI_PRECISION_OTHER = 0.90
AI_RECALL_OTHER = 0.80
OPT_IN_PRECISION = 0.97
ALERT_F1 = 0.90
NEGATED_ERROR_RATE = 0.05


def _labels(*names: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in names:
        path = DATA / name
        if not path.exists():
            pytest.skip(f"{path} not found")
        with path.open(encoding="utf-8") as fh:
            out.extend(json.loads(line) for line in fh if line.strip())
    return out


def _floor_failures(report: EvalReport) -> list[str]:
    failures: list[str] = []
    for lang, m in sorted(report.by_lang.items()):
        p, r = m.ai_training.precision, m.ai_training.recall
        p_min = AI_PRECISION.get(lang, AI_PRECISION_OTHER)
        r_min = AI_RECALL.get(lang, AI_RECALL_OTHER)
        if p is not None and p < p_min:
            failures.append(f"{lang}: ai_training precision {p:.2f} < {p_min}")
        if r is not None and r < r_min:
            failures.append(f"{lang}: ai_training recall {r:.2f} < {r_min}")
    overall = report.overall
    checks = (
        ("opt-in precision", overall.opt_in_precision, OPT_IN_PRECISION, False),
        ("alert F1", overall.alert.f1, ALERT_F1, False),
        ("negated error rate", overall.negated_error_rate, NEGATED_ERROR_RATE, True),
    )
    for name, value, floor, at_most in checks:
        if value is None:
            failures.append(f"{name}: not measurable")
        elif (value > floor) if at_most else (value < floor):
            failures.append(f"{name} {value:.3f} {'>' if at_most else '<'} {floor}")
    return failures


DEV_SETS = (
    "labels_dev.jsonl",
    "labels_dev2.jsonl",
    "labels_dev3.jsonl",
    "labels_dev4.jsonl",
    "labels_dev5.jsonl",
    "labels_dev6.jsonl",
    "labels_dev7.jsonl",
)


def test_development_sets_meet_the_floors() -> None:
    report = evaluate(_labels(*DEV_SETS))
    assert report.overall.n >= 1600
    failures = _floor_failures(report)
    assert not failures, "\n".join(failures) + "\n\n" + report.format_text()


def test_development_sets_meet_the_floors_with_detected_language() -> None:
    # Real documents do not say which language a clause is in: the analyser detects it.
    report = evaluate(_labels(*DEV_SETS), lambda text, _lang: analyse_unit(text))
    failures = _floor_failures(report)
    assert not failures, "\n".join(failures) + "\n\n" + report.format_text()


# Measured and never tuned on. Until this stop French precision was 0.89 (8/9) and this
# test an xfail; now 0.90 (9/10): at the floor, still one false positive.
def test_held_out_set_meets_the_floors() -> None:
    report = evaluate(_labels("labels_test.jsonl"))
    failures = _floor_failures(report)
    # Only the summary: the held-out units themselves must not leak into tuning.
    assert not failures, "\n".join(failures)


def test_extra_label_fields_are_ignored_and_every_language_is_reported() -> None:
    base = {"ai_training": True, "consent": "none", "negated": False}
    labels = [
        {"id": "a", "lang": "pl", "text": "t-pl", **base, "kind": "positive", "note": "x"},
        {"id": "b", "lang": "el", "text": "t-el", **base, "kind": "positive", "extra": [1]},
        {
            "id": "c",
            "lang": "el",
            "text": "t-el2",
            "ai_training": False,
            "consent": "n/a",
            "negated": True,
            "kind": "hard_negative",
        },
    ]

    def fake(text: str, lang: str | None) -> Analysis:
        positive = text != "t-el2"
        return Analysis(
            lang=lang or "und",
            ai_training=positive,
            consent=Consent.NONE if positive else Consent.NA,
            negated=not positive,
            findings=[],
            unit_count=1,
        )

    report = evaluate(labels, fake)
    assert sorted(report.by_lang) == ["el", "pl"]
    assert report.by_lang["pl"].n == 1
    assert report.by_lang["el"].ai_training.tp == 1
    assert report.by_lang["el"].ai_training.tn == 1
    assert report.errors == []

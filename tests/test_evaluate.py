"""Evaluation metrics on a tiny hand-made label set (numbers worked out by hand)."""

from __future__ import annotations

from typing import Any

from monitor.evaluate import evaluate
from monitor.models import Analysis, Consent

# gold labels; PRED gives what the fake analyser answers for each text
LABELS: list[dict[str, Any]] = [
    {
        "id": "a",
        "lang": "en",
        "text": "t1",
        "ai_training": True,
        "consent": "none",
        "negated": False,
    },
    {
        "id": "b",
        "lang": "en",
        "text": "t2",
        "ai_training": True,
        "consent": "opt_in",
        "negated": False,
    },
    {
        "id": "c",
        "lang": "en",
        "text": "t3",
        "ai_training": False,
        "consent": "n/a",
        "negated": True,
    },
    {
        "id": "d",
        "lang": "fr",
        "text": "t4",
        "ai_training": True,
        "consent": "opt_out",
        "negated": True,
    },
    {
        "id": "e",
        "lang": "fr",
        "text": "t5",
        "ai_training": False,
        "consent": "n/a",
        "negated": False,
    },
]
PRED = {
    "t1": (True, Consent.NONE, False),  # right
    "t2": (True, Consent.OPT_OUT, False),  # consent wrong -> alert FP
    "t3": (True, Consent.OPT_IN, False),  # ai FP, negation missed, opt-in wrong
    "t4": (False, Consent.NA, True),  # ai FN, alert FN
    "t5": (False, Consent.NA, False),  # right
}


def fake(text: str, lang: str | None) -> Analysis:
    ai, consent, neg = PRED[text]
    return Analysis(lang=lang or "und", ai_training=ai, consent=consent, negated=neg)


def test_overall_metrics() -> None:
    m = evaluate(LABELS, fake).overall
    # ai_training: tp a,b; fp c; fn d
    assert (m.ai_training.tp, m.ai_training.fp, m.ai_training.fn) == (2, 1, 1)
    assert m.ai_training.precision == 2 / 3 and m.ai_training.recall == 2 / 3
    assert abs((m.ai_training.f1 or 0) - 2 / 3) < 1e-9
    # alert gold: a, d; predicted: a, b (c is opt_in so no alert) -> tp 1, fp 1, fn 1
    assert (m.alert.tp, m.alert.fp, m.alert.fn) == (1, 1, 1)
    assert m.alert.f1 == 0.5
    # consent where both say training: a (right), b (wrong)
    assert m.consent_accuracy == 0.5
    # 4-way: a right, b wrong, c wrong, d wrong, e right
    assert m.consent_accuracy_4way == 2 / 5
    # opt-in predicted once (c), gold n/a
    assert m.opt_in_precision == 0.0
    # gold-negated units c, d: c missed
    assert (m.negated_gold, m.negated_gold_errors) == (2, 1)
    assert m.negated_error_rate == 0.5


def test_per_language_and_errors() -> None:
    r = evaluate(LABELS, fake)
    fr = r.by_lang["fr"]
    assert fr.n == 2 and fr.ai_training.fn == 1 and fr.ai_training.precision is None
    fields = {(e.id, e.field) for e in r.errors}
    assert fields == {
        ("b", "consent"),
        ("b", "alert"),
        ("c", "ai_training"),
        ("c", "consent"),
        ("c", "negated"),
        ("d", "ai_training"),
        ("d", "consent"),
        ("d", "alert"),
    }
    err = next(e for e in r.errors if (e.id, e.field) == ("c", "consent"))
    assert (err.gold, err.predicted, err.lang, err.text) == ("n/a", "opt_in", "en", "t3")


def test_report_serialises_and_formats() -> None:
    r = evaluate(LABELS, fake)
    d = r.to_dict()
    assert d["overall"]["n"] == 5 and set(d["by_lang"]) == {"en", "fr"}
    assert len(d["errors"]) == 8
    text = r.format_text()
    assert "ALL" in text and "errors (8)" in text and "0.67" in text


def test_alert_is_derived_when_absent() -> None:
    labels = [{"id": "x", "lang": "en", "text": "t2", "ai_training": True, "consent": "opt_in"}]
    m = evaluate(labels, fake).overall
    # gold alert False (opt_in); predicted opt_out -> alert FP
    assert m.alert.fp == 1 and m.alert.tp == 0


def test_default_predictor_runs_the_analyser() -> None:
    labels = [
        {
            "id": "r",
            "lang": "en",
            "text": "We use your posts to train our AI models.",
            "ai_training": True,
            "consent": "none",
            "negated": False,
        }
    ]
    r = evaluate(labels)
    assert r.overall.ai_training.tp == 1 and r.errors == []

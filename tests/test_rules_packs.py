"""Every example of every built-in rule pack, executed from the YAML data."""

from __future__ import annotations

import pytest

from monitor.analyse import ExampleResult, builtin_rules_dir, load_packs, run_pack_examples

PACKS = load_packs()
CASES: list[ExampleResult] = [r for p in PACKS for r in run_pack_examples(p)]


def _id(r: ExampleResult) -> str:
    return f"{r.pack}-{r.kind}-{r.index}-{r.lang}"


@pytest.mark.parametrize("result", CASES, ids=_id)
def test_pack_example(result: ExampleResult) -> None:
    assert result.passed, f"{result.text!r}: expected {result.expected}, got {result.got}"


def test_builtin_packs_are_found() -> None:
    assert builtin_rules_dir().is_dir()
    ids = {p.id for p in PACKS}
    assert {"ai-training", "ai-affiliate-sharing", "private-messages-biometrics"} <= ids


def test_ai_training_pack_has_examples_in_every_language() -> None:
    pack = next(p for p in PACKS if p.id == "ai-training")
    for lang in ("en", "fr", "de", "es", "it", "nl"):
        n = sum(1 for e in pack.examples["match"] if e["lang"] == lang)
        assert n >= 8, lang
    assert set(pack.languages) >= {"en", "fr", "de", "es", "it", "nl", "pl", "el"}


def test_every_pack_exposes_its_metadata() -> None:
    for p in PACKS:
        assert p.title and p.description and p.category and p.severity
        assert p.path is not None and p.path.suffix == ".yaml"
        assert p.rules and all(r.id for r in p.rules)
        assert p.examples["match"] and p.examples["no_match"]

"""Validate the labelled evaluation set for the AI-training analyser.

The files are data, written by hand against /work/shared/LABELLING.md; these tests guard the
format and the invariants that LABELLING.md makes mechanical (consent n/a iff no training,
alert derived from training and consent), plus the shape of the dev/test split and of the third
development set (labels_dev3.jsonl, modelled on real policy phrasings in six languages) and of the
blind rounds labels_dev4.jsonl, labels_dev5.jsonl and labels_dev6.jsonl, and of the English-only
labels_dev7.jsonl (modelled on the wording of policies outside the corpus).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent / "data"
HALVES = ("dev", "test")
DEV3 = "dev3"
DEV4 = "dev4"
DEV5 = "dev5"
DEV6 = "dev6"
DEV7 = "dev7"
# Every file whose format is checked; labels_dev2.jsonl only takes part in the id and text
# uniqueness checks (its ids have their own "<lang>-d2-NNN" form).
CHECKED = (*HALVES, DEV3, DEV4, DEV5, DEV6, DEV7)
DEV3_LANGS = ("en", "fr", "de", "es", "it", "nl")

LANGS = {"en", "fr", "de", "es", "it", "nl", "pl", "el"}
CONSENTS = {"opt_in", "opt_out", "none", "n/a"}
KINDS = {"positive", "hard_negative", "negative"}
REQUIRED = {
    "id": str,
    "lang": str,
    "text": str,
    "ai_training": bool,
    "consent": str,
    "negated": bool,
    "alert": bool,
    "kind": str,
}
OPTIONAL = {"note": str}
ID_RE = re.compile(r"^(?P<lang>[a-z]{2})-(?P<num>\d{4})$")

Unit = dict[str, Any]


def _load(half: str) -> list[Unit]:
    path = DATA / f"labels_{half}.jsonl"
    units: list[Unit] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"{path.name}:{lineno}: blank line"
        obj = json.loads(line)
        assert isinstance(obj, dict), f"{path.name}:{lineno}: not a JSON object"
        units.append(obj)
    return units


def _norm(text: str) -> str:
    # Near-identical texts (case, spacing, Unicode form) would leak dev into test.
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@pytest.fixture(scope="module")
def halves() -> dict[str, list[Unit]]:
    return {half: _load(half) for half in CHECKED}


@pytest.fixture(scope="module")
def every_file(halves: dict[str, list[Unit]]) -> list[Unit]:
    return [u for name in CHECKED for u in halves[name]] + _load("dev2")


@pytest.fixture(scope="module")
def all_units(halves: dict[str, list[Unit]]) -> list[Unit]:
    return [u for half in HALVES for u in halves[half]]


@pytest.mark.parametrize("half", CHECKED)
def test_schema_and_types(halves: dict[str, list[Unit]], half: str) -> None:
    for unit in halves[half]:
        keys = set(unit)
        missing = set(REQUIRED) - keys
        extra = keys - set(REQUIRED) - set(OPTIONAL)
        assert not missing, f"{unit.get('id')}: missing {missing}"
        assert not extra, f"{unit.get('id')}: unexpected {extra}"
        for key, typ in {**REQUIRED, **OPTIONAL}.items():
            if key in unit:
                assert type(unit[key]) is typ, f"{unit['id']}: {key} is not {typ.__name__}"


@pytest.mark.parametrize("half", CHECKED)
def test_allowed_values(halves: dict[str, list[Unit]], half: str) -> None:
    for unit in halves[half]:
        assert unit["lang"] in LANGS, unit["id"]
        assert unit["consent"] in CONSENTS, unit["id"]
        assert unit["kind"] in KINDS, unit["id"]
        text = unit["text"]
        assert text == text.strip() and text, f"{unit['id']}: empty or padded text"
        assert len(text) <= 600, f"{unit['id']}: longer than a short passage"


@pytest.mark.parametrize("half", CHECKED)
def test_ids_match_language(halves: dict[str, list[Unit]], half: str) -> None:
    for unit in halves[half]:
        match = ID_RE.match(unit["id"])
        assert match, f"bad id {unit['id']!r}"
        assert match["lang"] == unit["lang"], unit["id"]


def test_ids_unique_across_halves(all_units: list[Unit]) -> None:
    dupes = [i for i, n in Counter(u["id"] for u in all_units).items() if n > 1]
    assert not dupes


def test_texts_unique_within_and_across_halves(all_units: list[Unit]) -> None:
    dupes = [t for t, n in Counter(_norm(u["text"]) for u in all_units).items() if n > 1]
    assert not dupes


@pytest.mark.parametrize("half", CHECKED)
def test_consent_is_na_exactly_when_no_training(halves: dict[str, list[Unit]], half: str) -> None:
    for unit in halves[half]:
        assert (unit["consent"] == "n/a") == (not unit["ai_training"]), unit["id"]


@pytest.mark.parametrize("half", CHECKED)
def test_alert_is_training_without_opt_in(halves: dict[str, list[Unit]], half: str) -> None:
    for unit in halves[half]:
        expected = unit["ai_training"] and unit["consent"] != "opt_in"
        assert unit["alert"] is expected, unit["id"]


@pytest.mark.parametrize("half", CHECKED)
def test_kind_agrees_with_label(halves: dict[str, list[Unit]], half: str) -> None:
    for unit in halves[half]:
        assert (unit["kind"] == "positive") == unit["ai_training"], unit["id"]
        if unit["kind"] == "negative":
            # negated only ever attaches to an AI-training statement, which a plain negative lacks
            assert unit["negated"] is False, unit["id"]


def test_total_size(all_units: list[Unit]) -> None:
    assert len(all_units) >= 420


def test_split_is_balanced_and_stratified(halves: dict[str, list[Unit]]) -> None:
    dev, test = halves["dev"], halves["test"]
    assert 0.45 <= len(dev) / (len(dev) + len(test)) <= 0.55
    strata_dev = Counter((u["lang"], u["kind"]) for u in dev)
    strata_test = Counter((u["lang"], u["kind"]) for u in test)
    for stratum in strata_dev.keys() | strata_test.keys():
        d, t = strata_dev[stratum], strata_test[stratum]
        assert abs(d - t) <= max(2, (d + t) // 5), f"{stratum}: dev {d} vs test {t}"


@pytest.mark.parametrize("half", HALVES)
def test_language_mix(halves: dict[str, list[Unit]], half: str) -> None:
    units = halves[half]
    share = {lang: n / len(units) for lang, n in Counter(u["lang"] for u in units).items()}
    assert set(share) == LANGS, f"missing languages: {LANGS - set(share)}"
    assert 1 - share["en"] >= 0.40
    for lang in ("fr", "de", "es", "it", "nl"):
        assert 0.06 <= share[lang] <= 0.12, (lang, share[lang])
    for lang in ("pl", "el"):
        assert 0.03 <= share[lang] <= 0.06, (lang, share[lang])


@pytest.mark.parametrize("half", HALVES)
def test_hard_negative_share(halves: dict[str, list[Unit]], half: str) -> None:
    units = halves[half]
    hard = sum(u["kind"] == "hard_negative" for u in units)
    assert hard / len(units) >= 0.35


def test_every_language_covers_each_consent_regime(all_units: list[Unit]) -> None:
    seen = {(u["lang"], u["consent"]) for u in all_units if u["ai_training"]}
    for lang in LANGS:
        for consent in ("opt_in", "opt_out", "none"):
            assert (lang, consent) in seen, f"{lang} has no positive with consent {consent}"


def test_every_language_has_negated_positives_and_denials(all_units: list[Unit]) -> None:
    # Negated positives (conditional/partial) and negated non-training (denials) are the cases
    # that separate "negated" from "no training"; each language must exercise both.
    for lang in LANGS:
        units = [u for u in all_units if u["lang"] == lang]
        assert any(u["negated"] and u["ai_training"] for u in units), lang
        assert any(u["negated"] and not u["ai_training"] for u in units), lang


def test_multi_line_units_present(all_units: list[Unit]) -> None:
    # Lead-in + list item passages exercise unit segmentation that spans lines.
    assert sum("\n" in u["text"] for u in all_units) >= 4


# --------------------------------------------------------------------------- labels_dev3.jsonl


def test_ids_unique_across_all_files(every_file: list[Unit]) -> None:
    dupes = [i for i, n in Counter(u["id"] for u in every_file).items() if n > 1]
    assert not dupes


# The later development sets (each its own id range, first number given) and the languages
# each must cover with every regime, a negated positive and a negated denial.
LATER_SETS = {
    DEV3: (5000, DEV3_LANGS),
    DEV4: (6000, tuple(sorted(LANGS))),
    DEV5: (7000, DEV3_LANGS),
    DEV6: (8000, DEV3_LANGS),
    DEV7: (9000, ("en",)),
}


@pytest.mark.parametrize("name", LATER_SETS)
def test_later_sets_use_their_own_id_range(halves: dict[str, list[Unit]], name: str) -> None:
    first = LATER_SETS[name][0]
    for unit in halves[name]:
        match = ID_RE.match(unit["id"])
        assert match and int(match["num"]) >= first, unit["id"]


@pytest.mark.parametrize("name", LATER_SETS)
def test_later_sets_texts_unique_across_all_files(
    halves: dict[str, list[Unit]], every_file: list[Unit], name: str
) -> None:
    counts = Counter(_norm(u["text"]) for u in every_file)
    dupes = [u["id"] for u in halves[name] if counts[_norm(u["text"])] > 1]
    assert not dupes


@pytest.mark.parametrize("name", LATER_SETS)
def test_later_sets_every_language_covers_regimes_and_negation(
    halves: dict[str, list[Unit]], name: str
) -> None:
    for lang in LATER_SETS[name][1]:
        units = [u for u in halves[name] if u["lang"] == lang]
        # a one-language set (dev7) names only that language: it must be present
        assert units, (name, lang)
        seen = {u["consent"] for u in units if u["ai_training"]}
        assert {"opt_in", "opt_out", "none"} <= seen, (lang, seen)
        assert any(u["negated"] and u["ai_training"] for u in units), lang
        assert any(u["negated"] and not u["ai_training"] for u in units), lang
        assert all(u.get("note") for u in units), lang


def test_dev3_size_and_language_mix(halves: dict[str, list[Unit]]) -> None:
    dev3 = halves[DEV3]
    assert len(dev3) >= 250
    langs = Counter(u["lang"] for u in dev3)
    assert set(langs) == set(DEV3_LANGS)
    assert 1 - langs["en"] / len(dev3) >= 0.60
    for lang in DEV3_LANGS[1:]:
        assert langs[lang] >= 30, (lang, langs[lang])


def test_dev3_hard_negative_share(halves: dict[str, list[Unit]]) -> None:
    dev3 = halves[DEV3]
    hard = sum(u["kind"] == "hard_negative" for u in dev3)
    assert hard / len(dev3) >= 1 / 3


# ----------------------------------------------- labels_dev4.jsonl, labels_dev5.jsonl, labels_dev6.jsonl

# name: (minimum size, languages required, languages allowed, minimum non-English share,
# minimum units of each non-English DEV3 language or 0); hard negatives are a third of each.
BLIND_ROUNDS = {
    DEV4: (250, LANGS, LANGS, 0.50, 0),
    DEV5: (240, set(DEV3_LANGS), LANGS, 0.70, 30),
    DEV6: (120, set(DEV3_LANGS), set(DEV3_LANGS), 0.80, 20),
}


@pytest.mark.parametrize("name", BLIND_ROUNDS)
def test_blind_rounds_size_language_mix_and_hard_negatives(
    halves: dict[str, list[Unit]], name: str
) -> None:
    size, required, allowed, non_en, per_lang = BLIND_ROUNDS[name]
    units = halves[name]
    assert len(units) >= size
    langs = Counter(u["lang"] for u in units)
    assert required <= set(langs) <= allowed
    assert 1 - langs["en"] / len(units) >= non_en
    for lang in DEV3_LANGS[1:]:
        assert langs[lang] >= per_lang, (lang, langs[lang])
    hard = sum(u["kind"] == "hard_negative" for u in units)
    assert hard / len(units) >= 1 / 3


# --------------------------------------------------------------------------- labels_dev7.jsonl


def test_dev7_size_language_and_hard_negatives(halves: dict[str, list[Unit]]) -> None:
    dev7 = halves[DEV7]
    assert len(dev7) >= 80
    assert {u["lang"] for u in dev7} == {"en"}
    hard = sum(u["kind"] == "hard_negative" for u in dev7)
    assert hard / len(dev7) >= 0.5
    assert sum(u["kind"] == "positive" for u in dev7) >= 30

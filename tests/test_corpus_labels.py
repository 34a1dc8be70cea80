"""Labels of real policy units, addressed in place (see LABELS.md).

Two sources: ``labels_corpus.jsonl`` (units of ``../shared/corpus``) and
``labels_external.jsonl`` (units of real policies *outside* the corpus - Open Terms Archive,
GitHub, Mozilla and AI products' pages - whose texts are fetched into a directory named by
``$POLICY_EXTERNAL_TEXTS``; see LABELS.md). Every test runs for both.

Each label addresses unit ``unit`` of a corpus file by position and stores the SHA-1 of its
text, never the text. The schema checks always run; the unit checks and the floors of the
analyser on the dev half (documents alternate between the halves) need the corpus and skip
without it. The floors are those of tests/test_eval_floors.py; a floor the current pack misses
is an xfail(strict=True) with the measured number, so a fix shows up as an XPASS. The test half
(the other documents) is held out: one test measures it against every floor and reports numbers
only, never the units it gets wrong.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from monitor.evaluate import EvalReport, evaluate

DATA = Path(__file__).resolve().parent / "data"


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("corpus_units", DATA / "corpus_units.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("corpus_units", module)
    spec.loader.exec_module(module)
    return module


cu = _load_tool()

CONSENTS = {"opt_in", "opt_out", "none", "n/a"}
KINDS = {"positive", "hard_negative", "negative"}
SPLITS = {"dev", "test"}
FIELDS = {
    "id": str,
    "file": str,
    "unit": int,
    "sha1": str,
    "lang": str,
    "ai_training": bool,
    "consent": str,
    "negated": bool,
    "alert": bool,
    "kind": str,
    "note": str,
    "split": str,
}
# Optional: the round-4 precision audit marks its units (sampled from the analyser's output);
# external labels name the document they were fetched from (repository, path, commit).
OPTIONAL = {"audit": bool, "source": dict}

# The external held-out half, measured blind once its documents were chosen (None: meets
# every floor).
EXTERNAL_TEST_HALF: str | None = (
    "held out, real text outside the corpus (2,005 units): English ai_training precision 0.80 "
    "(< 0.95), recall 0.70 (< 0.85); de 0.50 / 0.59, es 0.77 / 0.65, fr 0.76 / 0.76, "
    "it 0.50 / 0.35, nl 0.84 / 0.51 (< 0.90 / 0.80); alert F1 0.60; opt-in precision 0.62; "
    "negated errors 13/80"
)
EXTERNAL_DEV_HALF: str | None = (
    "English ai_training precision 0.88 (< 0.95); precision de 0.74, nl 0.65, recall it 0.76, "
    "nl 0.68 (< 0.90 / 0.80); alert F1 0.84; negated errors 11/98"
)

AI_PRECISION = {"en": 0.95}
AI_RECALL = {"en": 0.85}
AI_PRECISION_OTHER = 0.90
AI_RECALL_OTHER = 0.80
MIN_UNITS_OTHER = 20  # the other-language floors apply from this many units
OPT_IN_PRECISION = 0.97
ALERT_F1 = 0.90
NEGATED_ERROR_RATE = 0.05

Label = dict[str, Any]


@dataclass(frozen=True)
class Source:
    name: str
    labels: Path
    root: Path | None  # where the labelled files are; None when they are not here
    id_re: re.Pattern[str]
    file_re: re.Pattern[str]
    size: tuple[int, int]
    dev_share: tuple[float, float]
    # the numbers of a half that misses a floor (a strict xfail), else None
    test_half_below: str | None
    dev_half_below: str | None = None


def _external_root() -> Path | None:
    where = os.environ.get("POLICY_EXTERNAL_TEXTS")
    return Path(where) if where and (Path(where) / "versions").is_dir() else None


SOURCES = (
    Source(
        "corpus",
        DATA / "labels_corpus.jsonl",
        cu.CORPUS if cu.corpus_available() else None,
        re.compile(r"^c-\d{4}$"),
        re.compile(r"^versions/[a-z0-9-]+/[a-z-]+/[0-9TZ-]+\.md$"),
        (250, 800),
        # round 3 (c-0345..) added dev-half units only: the dev half is the larger one
        (0.4, 0.75),
        "held out, real text, never tuned on: English ai_training precision 0.90 (< 0.95); "
        "recall 1.00, alert F1 0.91, opt-in precision and negation hold",
    ),
    Source(
        "external",
        DATA / "labels_external.jsonl",
        _external_root(),
        re.compile(r"^[opqrstuvwxyz]-\d{4}$"),
        re.compile(r"^versions/[a-z0-9-]+/[a-z0-9-]+/latest\.md$"),
        (150, 8000),
        # the first wave of documents is all dev (its errors were read): the larger half
        (0.45, 0.85),
        EXTERNAL_TEST_HALF,
        EXTERNAL_DEV_HALF,
    ),
)


@pytest.fixture(scope="module", params=SOURCES, ids=lambda s: s.name)
def source(request: pytest.FixtureRequest) -> Source:
    picked: Source = request.param
    return picked


def _texts(source: Source) -> Path:
    if source.root is None:
        pytest.skip(f"the {source.name} texts are not present")
    return source.root


@pytest.fixture(scope="module")
def labels(source: Source) -> list[Label]:
    loaded: list[Label] = cu.load_labels(source.labels)
    return loaded


def test_schema_and_values(source: Source, labels: list[Label]) -> None:
    low, high = source.size
    assert low <= len(labels) <= high
    for label in labels:
        extra = set(label) - set(FIELDS)
        assert set(FIELDS) <= set(label) and extra <= set(OPTIONAL), (
            f"{label.get('id')}: fields {sorted(label)}"
        )
        for key, typ in {**FIELDS, **OPTIONAL}.items():
            if key in label:
                assert type(label[key]) is typ, f"{label['id']}: {key} is not {typ.__name__}"
        assert source.id_re.match(label["id"]), label["id"]
        assert source.file_re.match(label["file"]), f"{label['id']}: {label['file']}"
        assert re.fullmatch(r"[0-9a-f]{40}", label["sha1"]), label["id"]
        assert label["unit"] >= 0, label["id"]
        assert label["consent"] in CONSENTS, label["id"]
        assert label["kind"] in KINDS, label["id"]
        assert label["split"] in SPLITS, label["id"]
        assert label["note"].strip(), f"{label['id']}: empty note"


def test_ids_and_units_unique(labels: list[Label]) -> None:
    ids = Counter(label["id"] for label in labels)
    assert [i for i, n in ids.items() if n > 1] == []
    units = Counter((label["file"], label["unit"]) for label in labels)
    assert [u for u, n in units.items() if n > 1] == []


def test_derived_fields(labels: list[Label]) -> None:
    for label in labels:
        assert (label["consent"] == "n/a") == (not label["ai_training"]), label["id"]
        assert label["alert"] is (label["ai_training"] and label["consent"] != "opt_in")
        assert (label["kind"] == "positive") == label["ai_training"], label["id"]
        if label["kind"] == "negative":
            assert label["negated"] is False, label["id"]


def test_each_document_is_in_one_half(source: Source, labels: list[Label]) -> None:
    halves: dict[str, set[str]] = defaultdict(set)
    for label in labels:
        halves[str(Path(label["file"]).parent)].add(label["split"])
    assert {doc: s for doc, s in halves.items() if len(s) > 1} == {}
    sizes = Counter(label["split"] for label in labels)
    low, high = source.dev_share
    assert low <= sizes["dev"] / len(labels) <= high, sizes


def test_labelled_units_are_unchanged(source: Source, labels: list[Label]) -> None:
    root = _texts(source)
    changed: list[str] = []
    for label in labels:
        where = f"{label['id']}: unit {label['unit']} of {label['file']}"
        if not (root / label["file"]).exists():
            changed.append(f"{where}: file missing")
            continue
        try:
            text = cu.unit_text(label["file"], label["unit"], root)
        except IndexError as exc:
            changed.append(f"{where}: {exc}")
            continue
        if cu.sha1(text) != label["sha1"]:
            changed.append(f"{where}: text changed (sha1 {cu.sha1(text)}, label {label['sha1']})")
    assert not changed, "units changed (re-segmented or edited):\n" + "\n".join(changed)


def test_export_rows_are_eval_input(source: Source, labels: list[Label]) -> None:
    rows = cu.export(labels, "dev", _texts(source))
    assert rows and all(set(r) >= {"id", "lang", "text", "ai_training", "consent"} for r in rows)
    assert len(rows) == sum(label["split"] == "dev" for label in labels)


@pytest.fixture(scope="module")
def dev_report(source: Source, labels: list[Label]) -> EvalReport:
    if source.dev_half_below:
        pytest.skip("a floor is missed: test_dev_half_meets_every_floor records the numbers")
    return evaluate(cu.export(labels, "dev", _texts(source)))


def _ai_failures(report: EvalReport, which: str, english: bool) -> list[str]:
    out: list[str] = []
    for lang, m in sorted(report.by_lang.items()):
        if (lang == "en") != english or (not english and m.n < MIN_UNITS_OTHER):
            continue
        if which == "precision":
            value, floor = m.ai_training.precision, AI_PRECISION.get(lang, AI_PRECISION_OTHER)
        else:
            value, floor = m.ai_training.recall, AI_RECALL.get(lang, AI_RECALL_OTHER)
        if value is not None and value < floor:
            out.append(f"{lang}: ai_training {which} {value:.2f} < {floor}")
    return out


def test_dev_english_ai_training_precision(dev_report: EvalReport) -> None:
    failures = _ai_failures(dev_report, "precision", english=True)
    assert not failures, "\n".join(failures)


def test_dev_english_ai_training_recall(dev_report: EvalReport) -> None:
    failures = _ai_failures(dev_report, "recall", english=True)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("which", ["precision", "recall"])
def test_dev_other_languages_ai_training(dev_report: EvalReport, which: str) -> None:
    # Only French (Google's French policy) is not English, with fewer than 20 dev units: the
    # floor applies as soon as a language reaches that size.
    failures = _ai_failures(dev_report, which, english=False)
    assert not failures, "\n".join(failures)


def test_dev_opt_in_precision(dev_report: EvalReport) -> None:
    value = dev_report.overall.opt_in_precision
    # No opt-in prediction at all is no wrong opt-in.
    assert value is None or value >= OPT_IN_PRECISION, f"opt-in precision {value:.3f}"


def test_dev_alert_f1(dev_report: EvalReport) -> None:
    value = dev_report.overall.alert.f1
    assert value is not None and value >= ALERT_F1, f"alert F1 {value}"


def test_dev_negated_error_rate(dev_report: EvalReport) -> None:
    value = dev_report.overall.negated_error_rate
    assert value is not None and value <= NEGATED_ERROR_RATE, f"negated error rate {value}"


# --- the test half: held out (documents never tuned on; its errors are not printed) ---------


@pytest.fixture(scope="module")
def test_report(source: Source, labels: list[Label]) -> EvalReport:
    return evaluate(cu.export(labels, "test", _texts(source)))


def _floor_failures(report: EvalReport) -> list[str]:
    """Every floor the report misses, as numbers only (no unit text)."""
    out = [
        *_ai_failures(report, "precision", english=True),
        *_ai_failures(report, "recall", english=True),
        *_ai_failures(report, "precision", english=False),
        *_ai_failures(report, "recall", english=False),
    ]
    o = report.overall
    if o.opt_in_precision is not None and o.opt_in_precision < OPT_IN_PRECISION:
        out.append(f"opt-in precision {o.opt_in_precision:.2f}")
    if o.alert.f1 is None or o.alert.f1 < ALERT_F1:
        out.append(f"alert F1 {o.alert.f1}")
    if o.negated_error_rate is not None and o.negated_error_rate > NEGATED_ERROR_RATE:
        out.append(f"negated error rate {o.negated_error_rate:.2f}")
    return out


def test_test_half_meets_the_floors(
    request: pytest.FixtureRequest, source: Source, test_report: EvalReport
) -> None:
    if source.test_half_below:
        # strict: a rule change that meets the floors shows up as an XPASS to record
        request.applymarker(pytest.mark.xfail(strict=True, reason=source.test_half_below))
    failures = _floor_failures(test_report)
    assert not failures, "; ".join(failures)


def test_dev_half_meets_every_floor(
    request: pytest.FixtureRequest, source: Source, labels: list[Label]
) -> None:
    # The same checks as the held-out test above, so that one cannot fail for another reason.
    if source.dev_half_below:
        request.applymarker(pytest.mark.xfail(strict=True, reason=source.dev_half_below))
    report = evaluate(cu.export(labels, "dev", _texts(source)))
    failures = _floor_failures(report)
    assert not failures, "; ".join(failures)


# --- where the external texts come from ---------------------------------------------------


def _external_sources() -> dict[str, dict[str, str]]:
    with (DATA / "external_sources.tsv").open(encoding="utf-8", newline="") as fh:
        return {row["file"]: row for row in csv.DictReader(fh, delimiter="\t")}


def test_external_labels_name_a_fetched_document() -> None:
    sources = _external_sources()
    for label in cu.load_labels(DATA / "labels_external.jsonl"):
        row = sources.get(label["file"])
        assert row is not None, f"{label['id']}: {label['file']} not in external_sources.tsv"
        assert row["labelled"] == "yes", label["file"]
        origin = label["source"]
        assert (origin["repo"], origin["path"]) == (row["repo"], row["path"]), label["id"]


def test_external_texts_are_the_recorded_ones() -> None:
    # A fresh fetch (see LABELS.md) must give the saved text exactly, or the SHA-1s of the
    # labelled units mean nothing.
    root = _external_root()
    if root is None:
        pytest.skip("the external texts are not present")
    wrong = [
        file
        for file, row in _external_sources().items()
        if (root / file).exists()
        and cu.sha1((root / file).read_text(encoding="utf-8")) != row["saved_sha1"]
    ]
    assert not wrong, wrong

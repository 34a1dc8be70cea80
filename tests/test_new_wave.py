"""tests/data/new_wave.py: the bookkeeping of a new blind-labelled wave, end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

DATA = Path(__file__).resolve().parent / "data"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("new_wave", DATA / "new_wave.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["new_wave"] = module
    spec.loader.exec_module(module)
    return module


nw = _load()

FILE = "versions/wave-test-app/privacy-policy/latest.md"
TEXT = (
    "# Privacy\n\nWe use your chats to train our AI models. You can object in Settings.\n\n"
    "We never sell your data.\n"
)


def _label(unit: int, ai: bool, consent: str, note: str = "n") -> dict[str, object]:
    kind = "positive" if ai else "negative"
    return {"ai_training": ai, "consent": consent, "negated": False, "kind": kind, "note": note}


@pytest.fixture
def wave(tmp_path: Path) -> tuple[Path, Path]:
    d, texts = tmp_path / "wave", tmp_path / "texts"
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(TEXT), encoding="utf-8")
    assert "DIFFERS" not in nw.page(d, "t", 0, len(TEXT), raw)
    nw.assemble(d, texts, "t", FILE, ("index", "id:1", "-", str(len(TEXT))))
    return d, texts


def test_a_short_page_is_reported(tmp_path: Path) -> None:
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps("abc"), encoding="utf-8")
    assert "LENGTH DIFFERS" in nw.page(tmp_path, "s", 0, 5, raw)


def test_a_gap_between_pages_is_refused(tmp_path: Path) -> None:
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps("x" * 10), encoding="utf-8")
    nw.page(tmp_path, "s", 0, 40_000, raw)
    nw.page(tmp_path, "s", 16_000, 40_000, raw)  # the page at 10 is missing
    with pytest.raises(ValueError, match="gap"):
        nw.assemble(tmp_path, tmp_path / "texts", "s", FILE, ("r", "p", "c", "40000"))


def test_labels_checked_blinded_compared_and_integrated(wave: tuple[Path, Path]) -> None:
    d, texts = wave
    units = list(nw.cu.units(FILE, texts))
    train = next(i for i, t in enumerate(units) if "train" in t)
    sell = next(i for i, t in enumerate(units) if "sell" in t)
    (d / "en").mkdir()
    first = [
        {"file": FILE, "unit": train, "lang": "en", **_label(train, True, "opt_out")},
        {"file": FILE, "unit": sell, "lang": "en", **_label(sell, False, "n/a")},
        {"file": FILE, "unit": sell, "lang": "en", **_label(sell, False, "n/a")},  # twice
    ]
    nw._write_jsonl(d / "en" / "labels1.jsonl", first)
    ok, errors = nw.check(d, texts, "en")
    assert len(ok) == 2 and len(errors) == 1 and "twice" in errors[0]
    assert ok[0]["sha1"] == nw.cu.sha1(units[train]) and ok[0]["alert"] is True
    assert ok[0]["source"] == {"repo": "index", "path": "id:1", "commit": "-"}

    assert nw.blind(d, texts, "en", "b1") == 2
    blind_rows = nw._jsonl(d / "en" / "blind" / "b1" / "units.jsonl")
    assert all("ai_training" not in r for r in blind_rows)
    second = [
        {"key": f"{FILE}#{train}", **_label(train, True, "none")},  # disagrees on consent
        {"key": f"{FILE}#{sell}", **_label(sell, False, "n/a")},
    ]
    nw._write_jsonl(d / "en" / "blind" / "b1" / "labels2.jsonl", second)
    assert nw.check2(d, "en", "b1") == []
    assert "all three fields 1/2" in nw.compare(d, "en")

    rows, problems = nw.integrate(d, "z", {"en": 7})
    assert problems == [f"{FILE}#{train}: disagreement not adjudicated"]
    settled = {"key": f"{FILE}#{train}", **_label(train, True, "opt_out", "settled")}
    nw._write_jsonl(d / "adjudicated.jsonl", [settled])
    rows, problems = nw.integrate(d, "z", {"en": 7})
    assert problems == []
    assert [r["id"] for r in rows] == ["z-7001", "z-7002"]
    assert rows[0]["note"] == "settled" and {r["split"] for r in rows} == {"dev"}


def test_halves_give_both_halves_positives() -> None:
    rows = [
        {"file": f"versions/{s}/p/latest.md", "ai_training": ai}
        for s, ai in [("a", True), ("a", True), ("b", True), ("c", False), ("d", True)]
    ]
    half = nw.halves(rows)
    pos = {
        h: sum(r["ai_training"] for r in rows if half[r["file"].split("/")[1]] == h)
        for h in ("dev", "test")
    }
    assert pos == {"dev": 2, "test": 2}


def test_kappa() -> None:
    assert nw.kappa([(True, True), (False, False)]) == 1.0
    assert nw.kappa([(True, False), (False, True)]) < 0

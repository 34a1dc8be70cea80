"""tests/data/external_texts.py: the bookkeeping of re-fetching the external texts."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
from pathlib import Path
from types import ModuleType

import pytest

DATA = Path(__file__).resolve().parent / "data"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("external_texts", DATA / "external_texts.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


et = _load()


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _source(file: str, text: str, offset: int = 0) -> dict[str, str]:
    return {
        "file": file,
        "repo": "o/r",
        "path": file,
        "commit": "0" * 40,
        "offset": str(offset),
        "saved_chars": str(len(text)),
        "saved_sha1": _sha1(text),
        "labelled": "yes",
    }


def test_plan_covers_every_saved_character_of_the_recorded_sources() -> None:
    rows = et.sources()
    pages = et.plan_pages(rows)
    by_file: dict[str, list[dict[str, str]]] = {}
    for p in pages:
        by_file.setdefault(p["file"], []).append(p)
    assert set(by_file) == {r["file"] for r in rows}
    for r in rows:
        ps = sorted(by_file[r["file"]], key=lambda p: int(p["offset"]))
        assert int(ps[0]["offset"]) == int(r["offset"])
        assert all(int(p["length"]) <= et.PAGE for p in ps)
        # contiguous pages, ending where the saved text ends
        for a, b in itertools.pairwise(ps):
            assert int(a["offset"]) + int(a["length"]) == int(b["offset"])
        assert sum(int(p["length"]) for p in ps) == int(r["saved_chars"])
    assert len({p["id"] for p in pages}) == len(pages)


def test_jobs_split_the_pages_once_and_evenly() -> None:
    pages = et.plan_pages(et.sources())
    jobs = et.balance(pages, 8)
    ids = [p["id"] for job in jobs for p in job]
    assert sorted(ids) == sorted(p["id"] for p in pages)
    loads = [sum(int(p["length"]) for p in job) for job in jobs]
    assert max(loads) - min(loads) <= et.PAGE


@pytest.mark.parametrize(
    "copied",
    [
        json.dumps('a "quoted" line\nand a \\ backslash ’é'),
        json.dumps('a "quoted" line\nand a \\ backslash ’é')[1:-1],  # quotes left off
        json.dumps('a "quoted" line\nand a \\ backslash ’é')[:-1],  # closing quote left off
    ],
)
def test_a_copied_literal_decodes_to_the_text(copied: str) -> None:
    assert et.decode_literal(copied) == 'a "quoted" line\nand a \\ backslash ’é'


def test_a_broken_copy_is_an_error() -> None:
    with pytest.raises(ValueError):
        et.decode_literal('"an escape cut in half \\u00"')


def _fetch(tmp_path: Path, pages: list[dict[str, str]], texts: dict[str, str]) -> Path:
    page_dir = tmp_path / "pages"
    page_dir.mkdir()
    for p in pages:
        full = texts[p["file"]]
        start = int(p["offset"]) - min(int(q["offset"]) for q in pages if q["file"] == p["file"])
        page = full[start : start + int(p["length"])]
        (page_dir / f"{p['id']}.txt").write_text(page, encoding="utf-8", newline="")
    return page_dir


def test_assemble_keeps_documents_with_the_recorded_sha1_and_undoes_copy_artefacts(
    tmp_path: Path,
) -> None:
    long = "x" * (et.PAGE + 10) + "\nend"
    rows = [
        _source("versions/a/p/latest.md", long, offset=5),
        _source("versions/b/p/latest.md", "b"),
    ]
    pages = et.plan_pages(rows)
    assert len([p for p in pages if p["file"] == rows[0]["file"]]) == 2
    # the copy of b came back with a CRLF and a zero-width space that the saved text lacks
    rows[1]["saved_sha1"] = _sha1("b\nc")
    page_dir = _fetch(tmp_path, pages, {rows[0]["file"]: long, rows[1]["file"]: "b"})
    (page_dir / f"{pages[-1]['id']}.txt").write_text("b\r\n\u200bc", encoding="utf-8", newline="")
    want = {r["file"]: r["saved_sha1"] for r in rows}
    done, differ, missing = et.assemble(pages, page_dir, want, tmp_path / "texts")
    assert (done, differ, missing) == (sorted(want), [], [])
    assert (tmp_path / "texts" / rows[0]["file"]).read_text(encoding="utf-8") == long
    assert (tmp_path / "texts" / rows[1]["file"]).read_bytes() == b"b\nc"


def test_assemble_refuses_a_changed_text_and_reports_missing_pages(tmp_path: Path) -> None:
    rows = [_source("versions/a/p/latest.md", "right"), _source("versions/b/p/latest.md", "two")]
    pages = et.plan_pages(rows)
    page_dir = _fetch(tmp_path, pages, {rows[0]["file"]: "wrong", rows[1]["file"]: "two"})
    (page_dir / f"{pages[1]['id']}.txt").unlink()
    want = {r["file"]: r["saved_sha1"] for r in rows}
    done, differ, missing = et.assemble(pages, page_dir, want, tmp_path / "texts")
    assert (done, differ, missing) == ([], [rows[0]["file"]], [rows[1]["file"]])
    assert not (tmp_path / "texts").exists()


def test_put_saves_the_page_and_checks_its_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert et.main(["plan", "--dir", str(tmp_path), "--jobs", "2"]) == 0
    first = et._read_tsv(tmp_path / "pages.tsv")[0]
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps("y" * int(first["length"])), encoding="utf-8")
    assert et.main(["put", "--dir", str(tmp_path), first["id"], str(raw)]) == 0
    assert (tmp_path / "pages" / f"{first['id']}.txt").read_text() == "y" * int(first["length"])
    raw.write_text(json.dumps("short"), encoding="utf-8")
    assert et.main(["put", "--dir", str(tmp_path), first["id"], str(raw)]) == 1
    assert "LENGTH DIFFERS" in capsys.readouterr().out


def test_assemble_keeps_a_carriage_return_that_the_saved_text_has(tmp_path: Path) -> None:
    # Reading a page with universal newlines would turn this CR into LF and lose the document.
    rows = [_source("versions/a/p/latest.md", "line\rsame line")]
    pages = et.plan_pages(rows)
    page_dir = _fetch(tmp_path, pages, {rows[0]["file"]: "line\rsame line"})
    want = {r["file"]: r["saved_sha1"] for r in rows}
    assert et.assemble(pages, page_dir, want, tmp_path / "texts")[0] == [rows[0]["file"]]
    assert (tmp_path / "texts" / rows[0]["file"]).read_bytes() == b"line\rsame line"

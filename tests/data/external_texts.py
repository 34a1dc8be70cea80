"""Re-fetch the external texts of labels_external.jsonl, page by page, and check them.

The texts are not in the project (see LABELS.md, "The texts"). They come back through the
workplace's ``read_file`` tool, 16,000 characters a page, which only agents can call; this
script does the bookkeeping around them so that each session does not rewrite it:

    python tests/data/external_texts.py plan --dir /tmp/ext --jobs 8
        # pages.tsv (one row per page: id, file, repo, path, commit, offset, length)
        # and jobs/jobK.tsv, balanced by characters, one list per helper
    python tests/data/external_texts.py put --dir /tmp/ext ID RAW.json
        # RAW.json: the page's "text" copied from read_file as a JSON string literal;
        # saves pages/ID.txt and says whether its length is the expected one
    python tests/data/external_texts.py assemble --dir /tmp/ext --out /tmp/ext/texts
        # joins each document's pages and keeps it only when its SHA-1 is external_sources.tsv's
        # saved_sha1, trying the known copy artefacts (CRLF, U+200B, U+2068/9, U+200D)

Then ``export POLICY_EXTERNAL_TEXTS=/tmp/ext/texts``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "external_sources.tsv"
PAGE = 16_000
PAGE_FIELDS = ("id", "file", "repo", "path", "commit", "offset", "length")

# What a copy through the JSON form has been seen to add or lose (LABELS.md, "The texts").
ARTEFACTS: tuple[Callable[[str], str], ...] = (
    lambda t: t.replace("\r\n", "\n"),
    lambda t: t.replace("\u200b", ""),
    lambda t: t.replace("\u2068", "").replace("\u2069", ""),
    lambda t: t.replace("\u200d", ""),
)


def sources(path: Path = SOURCES, labelled_only: bool = True) -> list[dict[str, str]]:
    return [r for r in _read_tsv(path) if r["labelled"] == "yes" or not labelled_only]


def plan_pages(rows: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    pages = []
    for i, r in enumerate(rows):
        start, saved = int(r["offset"]), int(r["saved_chars"])
        for k, off in enumerate(range(start, start + saved, PAGE)):
            pages.append(
                {
                    "id": f"d{i:03d}p{k}",
                    "file": r["file"],
                    "repo": r["repo"],
                    "path": r["path"],
                    "commit": r["commit"],
                    "offset": str(off),
                    "length": str(min(PAGE, start + saved - off)),
                }
            )
    return pages


def balance(pages: Sequence[dict[str, str]], jobs: int) -> list[list[dict[str, str]]]:
    """Split pages into ``jobs`` lists of about the same number of characters."""
    out: list[list[dict[str, str]]] = [[] for _ in range(jobs)]
    load = [0] * jobs
    for p in sorted(pages, key=lambda p: -int(p["length"])):
        j = load.index(min(load))
        out[j].append(p)
        load[j] += int(p["length"])
    return [sorted(ps, key=lambda p: p["id"]) for ps in out]


def _write_tsv(path: Path, rows: Sequence[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=PAGE_FIELDS, delimiter="\t")
        w.writeheader()
        w.writerows(rows)


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def decode_literal(raw: str) -> str:
    """The text of a JSON string literal as a helper copied it (quotes optional)."""
    raw = raw.strip()
    if not raw.startswith('"'):
        raw = '"' + raw
    try:
        text = json.loads(raw)
    except json.JSONDecodeError:
        text = json.loads(raw + '"')  # the closing quote was left off
    if not isinstance(text, str):
        raise ValueError("not a JSON string")
    return text


def recover(text: str, sha1: str) -> str | None:
    """``text``, or it without some copy artefacts, whichever has SHA-1 ``sha1``."""
    for k in range(len(ARTEFACTS) + 1):
        for combo in itertools.combinations(ARTEFACTS, k):
            t = text
            for fix in combo:
                t = fix(t)
            if hashlib.sha1(t.encode("utf-8")).hexdigest() == sha1:
                return t
    return None


def assemble(
    pages: Sequence[dict[str, str]], page_dir: Path, want: dict[str, str], out: Path
) -> tuple[list[str], list[str], list[str]]:
    """Write every document whose pages are all there and whose SHA-1 is the recorded one.

    Returns the files written, the files whose text differs and the files with pages missing.
    """
    by_file: dict[str, list[dict[str, str]]] = defaultdict(list)
    for p in pages:
        by_file[p["file"]].append(p)
    done, differ, missing = [], [], []
    for file, ps in sorted(by_file.items()):
        parts = []
        for p in sorted(ps, key=lambda p: int(p["offset"])):
            f = page_dir / f"{p['id']}.txt"
            if not f.exists():
                break
            # newline="": a page's own CR must reach the SHA-1 check as it was saved.
            with f.open(encoding="utf-8", newline="") as fh:
                parts.append(fh.read())
        if len(parts) < len(ps):
            missing.append(file)
            continue
        text = recover("".join(parts), want[file])
        if text is None:
            differ.append(file)
            continue
        dest = out / file
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8", newline="")
        done.append(file)
    return done, differ, missing


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--all", action="store_true", help="also the unlabelled documents")
    p = sub.add_parser("put")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("id")
    p.add_argument("raw", type=Path)
    p = sub.add_parser("assemble")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)

    if a.cmd == "plan":
        pages = plan_pages(sources(labelled_only=not a.all))
        _write_tsv(a.dir / "pages.tsv", pages)
        for j, ps in enumerate(balance(pages, a.jobs)):
            _write_tsv(a.dir / "jobs" / f"job{j}.tsv", ps)
        (a.dir / "pages").mkdir(parents=True, exist_ok=True)
        print(f"{len(pages)} pages in {a.jobs} jobs under {a.dir}")
        return 0
    pages = _read_tsv(a.dir / "pages.tsv")
    if a.cmd == "put":
        expected = {p["id"]: int(p["length"]) for p in pages}
        if a.id not in expected:
            print(f"{a.id}: no such page in {a.dir / 'pages.tsv'}", file=sys.stderr)
            return 2
        try:
            text = decode_literal(a.raw.read_text(encoding="utf-8"))
        except ValueError as e:  # json.JSONDecodeError is one
            print(f"{a.id}: {a.raw} is not a JSON string literal: {e}", file=sys.stderr)
            return 1
        (a.dir / "pages").mkdir(parents=True, exist_ok=True)
        (a.dir / "pages" / f"{a.id}.txt").write_text(text, encoding="utf-8", newline="")
        ok = len(text) == expected[a.id]
        verdict = "OK" if ok else "LENGTH DIFFERS: recheck the copy"
        print(f"{a.id}: saved {len(text)} chars, expected {expected[a.id]}: {verdict}")
        return 0 if ok else 1
    want = {r["file"]: r["saved_sha1"] for r in sources(labelled_only=False)}
    done, differ, missing = assemble(pages, a.dir / "pages", want, a.out)
    for f in differ:
        print(f"differs from saved_sha1: {f}")
    print(f"{len(done)} written, {len(differ)} differ, {len(missing)} with pages missing")
    return 0 if not differ and not missing else 1


if __name__ == "__main__":
    raise SystemExit(main())

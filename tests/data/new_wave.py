"""Bookkeeping for a new blind-labelled wave of labels_external.jsonl (LABELS.md, wave 10).

Only agents can call the workplace's ``read_file``, so helpers do the choosing, copying and
labelling (the instructions are tests/data/WAVE_PROMPTS.md); this script does the rest, so that
a session does not rewrite it. Everything lives under ``--dir`` (default /tmp/wave), the texts
under ``--texts`` (default /tmp/ext/texts, i.e. ``$POLICY_EXTERNAL_TEXTS``):

    new_wave.py page SLUG OFFSET TOTAL RAW.json      # one read_file page, its length checked
    new_wave.py assemble SLUG FILE REPO PATH COMMIT TOTAL   # pages -> texts/FILE + sources row
    new_wave.py units FILE                           # the units as the evaluation cuts them
    new_wave.py check GROUP                          # GROUP/labels1.jsonl -> labels1.checked.jsonl
    new_wave.py blind GROUP BATCH                    # unlabelled units for the second labeller
    new_wave.py check2 GROUP BATCH                   # the second labeller's file
    new_wave.py compare GROUP                        # agreement, kappa, the disagreements
    new_wave.py integrate --prefix y --groups de=1,es=2 [--write]
        # final labels (the first labeller's where both agree on ai_training, consent and
        # negated, else DIR/adjudicated.jsonl), ids PREFIX-<group><3 digits>, halves (whole
        # services, greedy on positives); --write appends them to labels_external.jsonl and
        # their documents to external_sources.tsv

A document read by index id (no repository known) is assembled with REPO ``index``, PATH
``id:<id>`` and COMMIT ``-``.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import corpus_units as cu  # noqa: E402

PAGE = 16_000
FIELDS = ("ai_training", "consent", "negated")
LANGS = {"en", "fr", "de", "es", "it", "nl", "pl", "el"}
FILE_RE = re.compile(r"versions/[a-z0-9-]+/[a-z0-9-]+/latest\.md")
Row = dict[str, Any]


def _jsonl(path: Path) -> list[Row]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _write_jsonl(path: Path, rows: Sequence[Row]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")


def _key(row: Row) -> str:
    return f"{row['file']}#{row['unit']}"


def check_label(row: Row) -> None:
    """The label fields' schema (LABELS.md, "Format"); raises AssertionError."""
    assert isinstance(row["ai_training"], bool) and isinstance(row["negated"], bool), "bools"
    assert row["consent"] in {"opt_in", "opt_out", "none", "n/a"}, "consent"
    assert (row["consent"] == "n/a") == (not row["ai_training"]), "consent n/a iff not training"
    assert row["kind"] in {"positive", "hard_negative", "negative"}, "kind"
    assert (row["kind"] == "positive") == row["ai_training"], "kind positive iff ai_training"
    assert row.get("note"), "note"


def page(d: Path, slug: str, offset: int, total: int, raw: Path) -> str:
    text = json.loads(raw.read_text(encoding="utf-8"))
    if not isinstance(text, str):
        raise ValueError("the literal is not a JSON string")
    want = min(PAGE, total - offset)
    out = d / "pages" / slug
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{offset:09d}.txt").write_text(text, encoding="utf-8")
    flag = "" if len(text) == want else "  LENGTH DIFFERS"
    return f"{slug} @{offset}: saved {len(text)} expected {want}{flag}"


def assemble(d: Path, texts: Path, slug: str, file: str, origin: Sequence[str]) -> str:
    if not FILE_RE.fullmatch(file):
        raise ValueError(f"bad FILE {file!r}: versions/<service>/<doc-type>/latest.md")
    pages = sorted((d / "pages" / slug).glob("*.txt"))
    if not pages:
        raise ValueError(f"no pages saved for {slug}")
    start = at = int(pages[0].stem)
    parts = []
    for p in pages:
        if int(p.stem) != at:
            raise ValueError(f"gap: expected a page at {at}, found {p.stem}")
        parts.append(p.read_text(encoding="utf-8"))
        at += len(parts[-1])
    text = "".join(parts)
    row_file = d / "sources" / f"{slug}.tsv"
    out = texts / file
    if out.exists() and not row_file.exists():
        raise ValueError(f"{out} exists already (pick another FILE)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    sha = hashlib.sha1(text.encode("utf-8")).hexdigest()
    repo, path, commit, total = origin
    row = [file, repo, path, commit, total, str(start), str(len(text)), sha, "yes"]
    row_file.parent.mkdir(parents=True, exist_ok=True)
    row_file.write_text("\t".join(row) + "\n", encoding="utf-8")
    return f"{file}: {len(text)} chars from offset {start} of {total}; sha1 {sha}"


def _sources(d: Path) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for p in sorted((d / "sources").glob("*.tsv")):
        for row in csv.reader(p.open(encoding="utf-8"), delimiter="\t"):
            rows[row[0]] = row
    return rows


def check(d: Path, texts: Path, group: str) -> tuple[list[Row], list[str]]:
    src = _sources(d)
    out: list[Row] = []
    errors: list[str] = []
    seen: set[str] = set()
    for n, row in enumerate(_jsonl(d / group / "labels1.jsonl"), 1):
        try:
            assert row["file"] in src, "file not assembled (no sources row)"
            text = cu.unit_text(row["file"], int(row["unit"]), texts)
            assert row["lang"] in LANGS, "lang"
            check_label(row)
            row["unit"] = int(row["unit"])
            assert _key(row) not in seen, "unit labelled twice"
            seen.add(_key(row))
            s = src[row["file"]]
            row.update(
                sha1=cu.sha1(text),
                alert=row["ai_training"] and row["consent"] != "opt_in",
                source={"repo": s[1], "path": s[2], "commit": s[3]},
            )
            out.append(row)
        except (AssertionError, KeyError, IndexError, ValueError) as exc:
            errors.append(f"line {n}: {exc!r}")
    _write_jsonl(d / group / "labels1.checked.jsonl", out)
    return out, errors


def blind(d: Path, texts: Path, group: str, batch: str) -> int:
    """The checked units no earlier batch holds, without their labels."""
    out = d / group / "blind" / batch
    out.mkdir(parents=True, exist_ok=True)
    done = {
        r["key"]
        for p in (d / group / "blind").glob("*/units.jsonl")
        if p.parent != out
        for r in _jsonl(p)
    }
    rows = [
        {
            "key": _key(r),
            "lang": r["lang"],
            "doc": r["file"],
            "text": cu.unit_text(r["file"], r["unit"], texts),
        }
        for r in _jsonl(d / group / "labels1.checked.jsonl")
        if _key(r) not in done
    ]
    _write_jsonl(out / "units.jsonl", rows)
    return len(rows)


def check2(d: Path, group: str, batch: str) -> list[str]:
    keys = [r["key"] for r in _jsonl(d / group / "blind" / batch / "units.jsonl")]
    seen: set[str] = set()
    errors = []
    for n, row in enumerate(_jsonl(d / group / "blind" / batch / "labels2.jsonl"), 1):
        try:
            assert row["key"] in keys, "unknown key"
            check_label(row)
            assert row["key"] not in seen, "labelled twice"
            seen.add(row["key"])
        except (AssertionError, KeyError) as exc:
            errors.append(f"line {n}: {exc!r}")
    errors += [f"missing: {k}" for k in keys if k not in seen]
    return errors


def _second(d: Path, group: str) -> dict[str, Row]:
    files = glob.glob(str(d / group / "blind" / "*" / "labels2.jsonl"))
    return {r["key"]: r for f in files for r in _jsonl(Path(f))}


def kappa(pairs: Sequence[tuple[bool, bool]]) -> float:
    """Cohen's kappa of two labellers' booleans."""
    n = len(pairs)
    po = sum(a == b for a, b in pairs) / n
    p1, p2 = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    pe = p1 * p2 + (1 - p1) * (1 - p2)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def compare(d: Path, group: str) -> str:
    first = {_key(r): r for r in _jsonl(d / group / "labels1.checked.jsonl")}
    second = _second(d, group)
    both = [k for k in first if k in second]
    if not both:
        return f"{group}: no unit has both labels"
    pairs = [(first[k]["ai_training"], second[k]["ai_training"]) for k in both]
    agree = sum(a == b for a, b in pairs)
    same = [k for k in both if all(first[k][f] == second[k][f] for f in FIELDS)]
    lines = [
        f"{group}: {len(both)} units; ai_training agree {agree}/{len(both)} "
        f"(kappa {kappa(pairs):.2f}); all three fields {len(same)}/{len(both)}"
    ]
    for k in both:
        if k not in same:
            lines.append(f"\n== {k}")
            for who, r in (("L1", first[k]), ("L2", second[k])):
                lines.append(
                    f"   {who}: " + " ".join(f"{f}={r[f]}" for f in FIELDS) + f" | {r['note']}"
                )
    return "\n".join(lines)


def halves(rows: Sequence[Row]) -> dict[str, str]:
    """Whole services to one half, the most positives first, each to the half with fewer
    positives (then units): both halves get positives."""
    pos: dict[str, int] = defaultdict(int)
    size: dict[str, int] = defaultdict(int)
    for r in rows:
        service = r["file"].split("/")[1]
        size[service] += 1
        pos[service] += r["ai_training"]
    half: dict[str, str] = {}
    tot = {"dev": [0, 0], "test": [0, 0]}
    for s in sorted(size, key=lambda s: (-pos[s], -size[s], s)):
        h = min(("dev", "test"), key=lambda h: (tot[h][0], tot[h][1], h))
        half[s] = h
        tot[h][0] += pos[s]
        tot[h][1] += size[s]
    return half


def integrate(d: Path, prefix: str, groups: dict[str, int]) -> tuple[list[Row], list[str]]:
    adjudicated = {r["key"]: r for r in _jsonl(d / "adjudicated.jsonl")}
    known = {r["file"] for r in cu.load_labels(HERE / "labels_external.jsonl")}
    out: list[Row] = []
    problems: list[str] = []
    for group, g in groups.items():
        first = _jsonl(d / group / "labels1.checked.jsonl")
        second = _second(d, group)
        half = halves(first)
        for n, r in enumerate(sorted(first, key=lambda r: (r["file"], r["unit"]))):
            key = _key(r)
            if r["file"] in known:
                problems.append(f"{key}: the document is in an earlier wave")
            other = second.get(key)
            if other is None:
                problems.append(f"{key}: no second label")
            elif any(other[f] != r[f] for f in FIELDS):
                if key not in adjudicated:
                    problems.append(f"{key}: disagreement not adjudicated")
                else:
                    a = adjudicated[key]
                    r = {**r, **{f: a[f] for f in (*FIELDS, "kind", "note")}}
            out.append(
                {
                    "id": f"{prefix}-{g}{n + 1:03d}",
                    **{k: r[k] for k in ("file", "unit", "sha1", "lang", *FIELDS)},
                    "alert": r["ai_training"] and r["consent"] != "opt_in",
                    "kind": r["kind"],
                    "note": r["note"],
                    "split": half[r["file"].split("/")[1]],
                    "source": r["source"],
                }
            )
    return out, problems


def write(d: Path, rows: Sequence[Row]) -> None:
    with (HERE / "labels_external.jsonl").open("a", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    files = {r["file"] for r in rows}
    src = _sources(d)
    with (HERE / "external_sources.tsv").open("a", encoding="utf-8") as fh:
        fh.writelines("\t".join(src[f]) + "\n" for f in sorted(files))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/wave"))
    parser.add_argument("--texts", type=Path, default=Path("/tmp/ext/texts"))
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("page")
    p.add_argument("slug")
    p.add_argument("offset", type=int)
    p.add_argument("total", type=int)
    p.add_argument("raw", type=Path)
    a = sub.add_parser("assemble")
    for name in ("slug", "file", "repo", "path", "commit", "total"):
        a.add_argument(name)
    sub.add_parser("units").add_argument("file")
    sub.add_parser("check").add_argument("group")
    for name in ("blind", "check2"):
        b = sub.add_parser(name)
        b.add_argument("group")
        b.add_argument("batch")
    sub.add_parser("compare").add_argument("group")
    i = sub.add_parser("integrate")
    i.add_argument("--prefix", required=True)
    i.add_argument("--groups", required=True, help="GROUP=DIGIT,... (ids PREFIX-DIGITnnn)")
    i.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    d: Path = args.dir
    if args.mode == "page":
        print(page(d, args.slug, args.offset, args.total, args.raw))
    elif args.mode == "assemble":
        origin = (args.repo, args.path, args.commit, args.total)
        print(assemble(d, args.texts, args.slug, args.file, origin))
    elif args.mode == "units":
        for n, t in enumerate(cu.units(args.file, args.texts)):
            k = "K" if cu.KEYWORDS.search(t) else "-"
            print(f"{n}\t{cu.sha1(t)[:10]}\t{k}\t{t.replace(chr(10), ' ⏎ ')}")
    elif args.mode == "check":
        ok, errors = check(d, args.texts, args.group)
        print("\n".join(errors))
        print(f"{len(ok)} ok, {len(errors)} bad; positives {sum(r['ai_training'] for r in ok)}")
        return 1 if errors else 0
    elif args.mode == "blind":
        print(f"{blind(d, args.texts, args.group, args.batch)} units")
    elif args.mode == "check2":
        errors = check2(d, args.group, args.batch)
        print("\n".join(errors) or "0 bad, 0 missing")
        return 1 if errors else 0
    elif args.mode == "compare":
        print(compare(d, args.group))
    else:
        groups = {k: int(v) for k, v in (g.split("=") for g in args.groups.split(","))}
        rows, problems = integrate(d, args.prefix, groups)
        counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for r in rows:
            counts[(r["lang"], r["split"])][0] += 1
            counts[(r["lang"], r["split"])][1] += r["ai_training"]
        for (lang, split), (n, k) in sorted(counts.items()):
            print(f"{lang} {split}: {n} units, {k} positives")
        print("\n".join(problems[:40]))
        if args.write:
            if problems:
                print("not written: settle the problems first")
                return 1
            write(d, rows)
            print(f"{len(rows)} labels written")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Output equivalence of the analyser over the corpus: dump, then compare two dumps.

    python bench/analyse_equivalence.py dump --rules DIR OUT.jsonl [--limit N]
    python bench/analyse_equivalence.py compare A.jsonl B.jsonl
    python bench/analyse_equivalence.py cache --rules DIR [--limit N]

``dump`` runs ``analyse_text`` over every ../shared/corpus/versions/**/*.md with the packs of
``DIR`` (pin a copy of ``rules/`` when packs are being edited elsewhere: a moving rules dir
makes every comparison meaningless) and writes one canonical JSON line per file and input
variant: ``md`` is the text as bench_analyse.py feeds it (links to their text, emphasis
dropped), ``raw`` the file as it is (links, emphasis and all, which the segmenter and
the patterns see differently). Each line holds ai_training, consent, negated, lang,
unit_count and every finding's ``to_dict()``. ``compare`` exits 1 and prints the first
differences when the dumps differ. ``cache`` analyses each document's versions oldest first
(as ``import dir`` does, in the md, raw and imported-text variants) without and with one
:class:`~monitor.analyse.AnalysisCache` per document and variant, exits 1 on any difference
of the records, and prints both CPU times and the cache's hit rate. Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Check this checkout, not whatever copy of the package happens to be installed.
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_analyse import CORPUS, cheap_markdown  # noqa: E402

from monitor.analyse import AnalysisCache, analyse_text, load_packs  # noqa: E402


def dump(rules: Path, out: Path, limit: int) -> int:
    if not CORPUS.is_dir():
        print(f"corpus not found at {CORPUS}", file=sys.stderr)
        return 1
    packs = load_packs([rules])
    files = sorted(CORPUS.rglob("*.md"))
    if limit:
        files = files[:limit]
    c0 = time.process_time()
    with out.open("w", encoding="utf-8") as fh:
        for f in files:
            raw = f.read_text(encoding="utf-8")
            for variant, text in (("md", cheap_markdown(raw)), ("raw", raw)):
                record = {
                    "file": f.relative_to(CORPUS).as_posix(),
                    "variant": variant,
                    **_fields(analyse_text(text, packs)),
                }
                fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
    print(
        f"{len(files)} files x 2 variants, packs {[p.id for p in packs]}, "
        f"CPU {time.process_time() - c0:.1f} s -> {out}"
    )
    return 0


def _fields(a: object) -> dict[str, object]:
    from monitor.models import Analysis

    assert isinstance(a, Analysis)
    return {
        "ai_training": a.ai_training,
        "consent": a.consent.value,
        "negated": a.negated,
        "lang": a.lang,
        "unit_count": a.unit_count,
        "findings": [x.to_dict() for x in a.findings],
    }


def _record(a: object) -> str:
    return json.dumps(_fields(a), ensure_ascii=False, sort_keys=True)


def cached(rules: Path, limit: int) -> int:
    """Every document's versions in order, without and with a cache: identical records?"""
    from monitor.extract import extract_markdown

    if not CORPUS.is_dir():
        print(f"corpus not found at {CORPUS}", file=sys.stderr)
        return 1
    packs = load_packs([rules])
    series = sorted({f.parent for f in CORPUS.rglob("*.md")})
    plain_s = cached_s = 0.0
    records = differ = hits = misses = 0
    for folder in series:
        files = sorted(folder.glob("*.md"))[: limit or None]
        raws = [f.read_text(encoding="utf-8") for f in files]
        variants = {
            "md": [cheap_markdown(r) for r in raws],
            "raw": raws,
            "import": [extract_markdown(r).text for r in raws],
        }
        for variant, texts in variants.items():
            cache = AnalysisCache()
            for f, text in zip(files, texts, strict=True):
                c0 = time.process_time()
                want = _record(analyse_text(text, packs))
                c1 = time.process_time()
                got = _record(analyse_text(text, packs, cache=cache))
                c2 = time.process_time()
                plain_s += c1 - c0
                cached_s += c2 - c1
                records += 1
                if want != got:
                    differ += 1
                    if differ <= 5:
                        print(f"DIFFERENT: {f.relative_to(CORPUS)} [{variant}]")
            hits += cache.hits
            misses += cache.misses
    rate = hits / (hits + misses) if hits + misses else 0.0
    print(
        f"{records} analyses in {len(series)} documents x 3 variants: CPU {plain_s:.1f} s "
        f"without a cache, {cached_s:.1f} s with one per document ({rate:.0%} hits)"
    )
    print("identical" if not differ else f"DIFFERENT: {differ} of {records} records")
    return 1 if differ else 0


def compare(a: Path, b: Path, show: int = 5) -> int:
    left = a.read_text(encoding="utf-8").splitlines()
    right = b.read_text(encoding="utf-8").splitlines()
    if left == right:
        print(f"identical: {len(left)} records")
        return 0
    if len(left) != len(right):
        print(f"record counts differ: {len(left)} vs {len(right)}")
    shown = 0
    for x, y in zip(left, right, strict=False):
        if x == y:
            continue
        rx, ry = json.loads(x), json.loads(y)
        where = f"{rx.get('file')} [{rx.get('variant')}]"
        for key in sorted(set(rx) | set(ry)):
            if key == "findings" or rx.get(key) == ry.get(key):
                continue
            print(f"{where}: {key} {rx.get(key)!r} -> {ry.get(key)!r}")
        fx, fy = rx.get("findings", []), ry.get("findings", [])
        if fx != fy:
            print(f"{where}: findings differ ({len(fx)} vs {len(fy)})")
            for i, (p, q) in enumerate(zip(fx, fy, strict=False)):
                if p != q:
                    keys = [k for k in sorted(set(p) | set(q)) if p.get(k) != q.get(k)]
                    print(f"  finding {i} (unit {p.get('unit_index')}): {keys} differ")
                    break
        shown += 1
        if shown >= show:
            break
    diff = sum(x != y for x, y in zip(left, right, strict=False))
    print(f"DIFFERENT: {diff} of {min(len(left), len(right))} records")
    return 1


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="write the canonical JSONL of every corpus file")
    d.add_argument("--rules", type=Path, required=True, help="rules directory to load")
    d.add_argument("--limit", type=int, default=0, help="only the first N files")
    d.add_argument("out", type=Path)
    c = sub.add_parser("compare", help="compare two dumps (exit 1 when they differ)")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    k = sub.add_parser("cache", help="each document's versions without and with a cache")
    k.add_argument("--rules", type=Path, required=True, help="rules directory to load")
    k.add_argument("--limit", type=int, default=0, help="only the first N versions of each")
    args = ap.parse_args()
    if args.cmd == "cache":
        return cached(args.rules, args.limit)
    if args.cmd == "dump":
        return dump(args.rules, args.out, args.limit)
    return compare(args.a, args.b)


if __name__ == "__main__":
    raise SystemExit(main())

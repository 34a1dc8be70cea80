"""Throughput of the analyser over the Open Terms Archive corpus (single core).

    python bench/bench_analyse.py [--limit N]

Prints MB/s of analyse_text (segmentation + every built-in pack) over
../shared/corpus/versions/**/*.md, a cheap Markdown clean-up applied first, then the time spent
per pack, segmentation and language detection alone. Not run by CI.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from monitor.analyse import analyse_text, load_packs
from monitor.analyse.lang import detect_language
from monitor.analyse.segment import segment

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus" / "versions"
_LINK = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)")
_SETEXT = re.compile(r"\n(?:=+|-{3,})[ \t]*(?=\n)")


def cheap_markdown(text: str) -> str:
    """Links to their text, emphasis dropped: good enough for a throughput figure."""
    text = _LINK.sub(r"\1", text)
    return text.replace("**", "").replace("__", "")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0, help="only the first N files")
    args = ap.parse_args()
    if not CORPUS.is_dir():
        print(f"corpus not found at {CORPUS}", file=sys.stderr)
        return 1
    files = sorted(CORPUS.rglob("*.md"))
    if args.limit:
        files = files[: args.limit]
    texts = [cheap_markdown(f.read_text(encoding="utf-8")) for f in files]
    size = sum(len(t.encode("utf-8")) for t in texts)
    mb = size / 1e6
    packs = load_packs()

    t0 = time.perf_counter()
    training_docs = 0
    for t in texts:
        training_docs += analyse_text(t, packs).ai_training
    total = time.perf_counter() - t0
    print(f"files={len(texts)} size={mb:.1f} MB")
    print(f"analyse_text (all {len(packs)} packs): {total:.2f} s  {mb / total:.1f} MB/s")
    print(f"documents disclosing AI training: {training_docs}/{len(texts)}")

    t0 = time.perf_counter()
    for t in texts:
        segment(t)
    seg = time.perf_counter() - t0
    print(f"segment only: {seg:.2f} s  {mb / seg:.1f} MB/s")

    t0 = time.perf_counter()
    for t in texts:
        detect_language(t[:20000])
    print(f"detect_language (document): {time.perf_counter() - t0:.2f} s")

    for pack in packs:
        t0 = time.perf_counter()
        for t in texts:
            analyse_text(t, [pack])
        dt = time.perf_counter() - t0
        print(f"  pack {pack.id:<30} {dt:.2f} s  (includes segmentation)  {mb / dt:.1f} MB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

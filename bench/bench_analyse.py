"""Throughput of the analyser over the Open Terms Archive corpus (single core).

    python bench/bench_analyse.py [--limit N]

Prints MB/s of analyse_text (segmentation + every built-in pack; a first, cold pass and a
second one with the token-gate caches warm) over
../shared/corpus/versions/**/*.md, a cheap Markdown clean-up applied first, then the time spent
per pack, segmentation and language detection alone. Not run by CI.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Measure this checkout, not whatever copy of the package happens to be installed.
sys.path.insert(0, str(REPO))

import host  # noqa: E402  (bench/host.py, beside this script)

from monitor.analyse import analyse_text, load_packs  # noqa: E402
from monitor.analyse.lang import detect_language  # noqa: E402
from monitor.analyse.segment import segment  # noqa: E402

CORPUS = REPO / ".." / "shared" / "corpus" / "versions"
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

    print(host.describe())
    print(f"files={len(texts)} size={mb:.1f} MB")
    # Two passes: the first one also classifies every new token for the packs' token gates
    # (cached per pack); later documents of a long-running process mostly hit that cache.
    # CPU time is printed too: wall time suffers when other jobs share the machine.
    for label in ("cold", "warm"):
        t0, c0 = time.perf_counter(), time.process_time()
        training_docs = 0
        for t in texts:
            training_docs += analyse_text(t, packs).ai_training
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"analyse_text (all {len(packs)} packs, {label}): {total:.2f} s  {mb / total:.1f} MB/s"
            f"  (CPU {cpu:.2f} s  {mb / cpu:.1f} MB/s)"
        )
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

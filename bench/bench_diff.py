"""Benchmark monitor.diff over every consecutive version pair of the shared corpus.

    python bench/bench_diff.py [--series SUBSTRING] [--profile] [--worst N]

Prints the number of pairs, median / p90 / p99 / max milliseconds of diff_texts (markdown
conversion excluded), and the number of degenerate diffs. A diff is degenerate when the two
texts share >= 50% of their units by exact match but no unit came out EQUAL, or when fewer
than half of the old units stayed EQUAL while difflib finds the unit sequences > 80% similar.
Floors (issue 2): median < 20 ms, no degenerate diff.
"""

from __future__ import annotations

import argparse
import cProfile
import difflib
import pstats
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Measure this checkout, not whatever copy of the package happens to be installed.
sys.path.insert(0, str(REPO))

from monitor.diff import diff_texts, split_units  # noqa: E402
from monitor.models import DiffResult  # noqa: E402

CORPUS = REPO / ".." / "shared" / "corpus"


def _crude_markdown(md: str) -> str:
    """Fallback when monitor.extract is unavailable: strip the commonest Markdown markers."""
    out = []
    for block in re.split(r"\n\s*\n", md):
        lines = [ln for ln in block.splitlines() if not re.fullmatch(r"\s*[-=]{3,}\s*", ln)]
        text = " ".join(" ".join(lines).split())
        text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
        text = re.sub(r"[*_`]+|\\(?=\S)", "", text)
        text = re.sub(r"^\s*[*+]\s+", "- ", text)
        if text:
            out.append(text)
    return "\n\n".join(out)


def _converter() -> Callable[[str], str]:
    try:
        from monitor.extract import extract_markdown
    except ImportError:
        print("monitor.extract not importable: using the crude markdown stripper")
        return _crude_markdown
    return lambda md: extract_markdown(md).text


def is_degenerate(old: str, new: str, result: DiffResult) -> bool:
    a, b = split_units(old), split_units(new)
    if not a or not b:
        return False
    counts = result.counts()
    equal, removed = counts["equal"], counts["removed"]
    shared = sum((Counter(a) & Counter(b)).values())
    if shared >= 0.5 * min(len(a), len(b)) and equal == 0:
        return True
    kept = equal / (equal + removed) if equal + removed else 1.0
    if kept < 0.5:
        ratio = difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
        return ratio > 0.8
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="", help="only series whose path contains this")
    ap.add_argument("--profile", action="store_true", help="cProfile diff_texts, print top 25")
    ap.add_argument("--worst", type=int, default=5, help="list the N slowest pairs")
    args = ap.parse_args()

    versions = CORPUS / "versions"
    if not versions.is_dir():
        print(f"corpus not found at {versions.resolve()}", file=sys.stderr)
        return 1
    convert = _converter()
    series = sorted({p.parent for p in versions.rglob("*.md")})
    series = [s for s in series if args.series in str(s.relative_to(versions))]

    timings: list[tuple[float, str]] = []
    cpu_ms: list[float] = []  # robust to other processes competing for the CPU
    degenerate: list[str] = []
    units = 0
    profiler = cProfile.Profile() if args.profile else None
    for folder in series:
        files = sorted(folder.glob("*.md"))
        texts = [convert(f.read_text(encoding="utf-8")) for f in files]
        for k in range(1, len(texts)):
            old, new = texts[k - 1], texts[k]
            name = f"{folder.relative_to(versions)}/{files[k].stem}"
            if profiler:
                profiler.enable()
            t0, c0 = time.perf_counter(), time.process_time()
            result = diff_texts(old, new)
            ms = (time.perf_counter() - t0) * 1000
            cpu_ms.append((time.process_time() - c0) * 1000)
            if profiler:
                profiler.disable()
            timings.append((ms, name))
            units += len(result.changes)
            if is_degenerate(old, new, result):
                degenerate.append(name)

    if not timings:
        print("no version pairs found")
        return 1
    print(f"series: {len(series)}  pairs: {len(timings)}  units (new side + removed): {units}")
    for label, values in (("wall", [t for t, _ in timings]), ("cpu ", cpu_ms)):
        ms_sorted = sorted(values)

        def pct(p: float, ms_sorted: list[float] = ms_sorted) -> float:
            return ms_sorted[min(len(ms_sorted) - 1, round(p * (len(ms_sorted) - 1)))]

        print(
            f"diff_texts {label} ms  median {statistics.median(ms_sorted):.2f}  "
            f"p90 {pct(0.90):.2f}  p99 {pct(0.99):.2f}  max {ms_sorted[-1]:.2f}  "
            f"total {sum(ms_sorted) / 1000:.2f} s"
        )
    print(f"degenerate diffs: {len(degenerate)}")
    for name in degenerate:
        print(f"  degenerate: {name}")
    for ms, name in sorted(timings, reverse=True)[: args.worst]:
        print(f"  slow: {ms:8.2f} ms  {name}")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())

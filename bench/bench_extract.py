"""Throughput of the extract stage over the shared corpus.

    python bench/bench_extract.py [--repeat N]

Prints MB/s (input bytes per second of CPU time, best of N runs) for ``extract_markdown`` over
``../shared/corpus/versions`` (the ``import`` path; target > 20 MB/s) and for ``extract_html``
over ``../shared/corpus/snapshots``. CPU time rather than wall time, so that figures stay
comparable on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from monitor.extract import extract_html, extract_markdown

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"


def _bench(name: str, files: list[Path], fn: Callable[[str], object], repeat: int) -> None:
    texts = [f.read_text(encoding="utf-8") for f in files]
    size = sum(f.stat().st_size for f in files)
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for text in texts:
            fn(text)
        best = min(best, time.process_time() - start)
    print(
        f"{name:17s} {len(files):4d} files {size / 1e6:6.1f} MB "
        f"{best:6.2f} s CPU  {size / 1e6 / best:6.1f} MB/s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not CORPUS.is_dir():
        print(f"corpus not found at {CORPUS.resolve()}", file=sys.stderr)
        return 1
    _bench(
        "extract_markdown",
        sorted((CORPUS / "versions").glob("*/*/*.md")),
        extract_markdown,
        args.repeat,
    )
    _bench(
        "extract_html",
        sorted((CORPUS / "snapshots").glob("*/*/*.html")),
        extract_html,
        args.repeat,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

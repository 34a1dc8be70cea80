"""A fixed, code-independent CPU workload, so bench figures from different days compare.

    python bench/host.py

The same machine kind has run this project's benches 2.5x apart on different days (shared
hosts). Every throughput bench prints ``host reference: X s`` (lower = faster host, measured
just before its own figures); a figure divided by the reference's speed ratio compares across
hosts. The workload is what the analyser does most - regex scans, str splits, dict and set
lookups in Python loops - over deterministic synthetic text, and never changes.
"""

from __future__ import annotations

import os
import random
import re
import time

_WORD = re.compile(r"\w+")


def _text() -> str:
    rnd = random.Random(20261202)
    vocab = [
        "".join(rnd.choice("abcdefghijklmnopqrstuvwxyzéà") for _ in range(rnd.randint(2, 11)))
        for _ in range(3000)
    ]
    words = [rnd.choice(vocab) for _ in range(200_000)]
    for i in range(0, len(words), 17):
        words[i] += "."
    return " ".join(words)


def reference_seconds(repeat: int = 3) -> float:
    """Best of ``repeat`` runs of the fixed workload, in CPU seconds (~0.5 s on a quick host)."""
    text = _text()
    best = float("inf")
    for _ in range(repeat):
        c0 = time.process_time()
        counts: dict[str, int] = {}
        for w in _WORD.findall(text):
            counts[w] = counts.get(w, 0) + 1
        seen = set()
        for sentence in text.split(". "):
            tokens = sentence.split()
            seen.update(t for t in tokens if len(t) > 6)
        stems = sorted(seen)[:500]
        pattern = re.compile("|".join(map(re.escape, stems)))
        hits = len(pattern.findall(text))
        assert hits and counts
        best = min(best, time.process_time() - c0)
    return best


def describe() -> str:
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"host reference: {reference_seconds():.3f} s CPU (lower = faster host; "
        f"{os.cpu_count()} CPUs, load average {load})"
    )


if __name__ == "__main__":
    print(describe())

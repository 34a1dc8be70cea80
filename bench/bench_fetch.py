"""Fetch-stage figures: throughput against a local server, and charset decoding speed.

    python bench/bench_fetch.py [--rounds 3]

Serves the corpus HTML snapshots (../shared/corpus/snapshots) from a real HTTP server on
127.0.0.1 (tests/httpserver.py), fetches them all through one Fetcher (robots.txt checked,
no per-host delay) and prints pages/s and MB/s; then times ``decode_body`` on the same bytes,
declared, undeclared UTF-8 and undeclared cp1252 (charset detection). Prints nothing comparable when the corpus is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from httpserver import serve  # noqa: E402

from monitor.config import HttpSettings  # noqa: E402
from monitor.fetch import Fetcher, decode_body  # noqa: E402

CORPUS = ROOT / ".." / "shared" / "corpus" / "snapshots"


async def fetch_all(urls: list[str], settings: HttpSettings) -> tuple[float, int]:
    async with Fetcher(settings) as fetcher:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(fetcher.fetch(u) for u in urls))
        took = time.perf_counter() - t0
    failed = [r for r in results if r.outcome is not None]
    if failed:
        raise SystemExit(f"{len(failed)} fetches failed, first: {failed[0].error}")
    return took, sum(len(r.body or b"") for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    files = sorted(CORPUS.rglob("*.html"))
    if not files:
        print(f"corpus snapshots not found under {CORPUS.resolve()}; nothing to measure")
        return
    bodies = [f.read_bytes() for f in files]
    megabytes = sum(map(len, bodies)) / 1e6
    routes = {
        f"/p/{i}": (200, {"Content-Type": "text/html; charset=utf-8"}, body)
        for i, body in enumerate(bodies)
    }
    settings = HttpSettings.model_validate(
        {"per_host_delay": 0, "per_host_concurrency": 8, "max_bytes": 50_000_000}
    )
    print(f"{len(files)} snapshots, {megabytes:.1f} MB")
    with serve(routes) as server:
        urls = [server.url(path) for path in routes]
        for concurrency in (1, 8):
            settings = settings.model_copy(update={"per_host_concurrency": concurrency})
            times = [asyncio.run(fetch_all(urls, settings))[0] for _ in range(args.rounds)]
            best = min(times)
            print(
                f"fetch, per-host concurrency {concurrency}: best {best * 1000:.0f} ms "
                f"(median {statistics.median(times) * 1000:.0f} ms) = "
                f"{len(urls) / best:.0f} pages/s, {megabytes / best:.0f} MB/s"
            )
    # Undeclared legacy bytes take the slow path: charset detection.
    legacy = [b.decode("utf-8", "replace").encode("cp1252", "replace") for b in bodies]
    cases = (
        ("declared utf-8", "text/html; charset=utf-8", bodies),
        ("undeclared utf-8", None, bodies),
        ("undeclared cp1252 (detected)", None, legacy),
    )
    for label, content_type, inputs in cases:
        size = sum(map(len, inputs)) / 1e6
        t0 = time.perf_counter()
        for body in inputs:
            decode_body(body, content_type)
        took = time.perf_counter() - t0
        print(f"decode_body {label}: {took * 1000:.0f} ms = {size / took:.0f} MB/s")


if __name__ == "__main__":
    main()

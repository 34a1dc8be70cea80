"""Per-check database work against a long fetch log.

A daemon that runs for months writes a fetch row per check; the queries a check (and `status`)
runs must not grow with that history. This builds a database with ``--rows`` fetches (default
200,000) for one document, among ``--others`` documents with ``--other-rows`` fetches each,
interleaved as a real log is, then times (median of ``--repeat`` runs, in ms):

- ``last_good_fetch`` (before every fetch: validators and the same-body hash),
- ``fetches(limit=50)`` and ``last_fetch``,
- ``health.update`` of the long-history document (after every check),
- the queries of ``policy-monitor status`` (``document_status``),
- ``last_fetch_times`` (the daemon's schedule at start and on reload),

once as before migration 4 (no ``fetches(document_id, id)`` index; ``status`` and
``last_fetch_times`` as the aggregate queries they were then) and once as now.

    python bench/bench_fetch_log.py [--rows 200000] [--others 99] [--other-rows 1000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor import health  # noqa: E402
from monitor.config import Config, parse_config  # noqa: E402
from monitor.scheduler import document_status, last_fetch_times  # noqa: E402
from monitor.store import Store, iso  # noqa: E402

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
INDEX = "fetches_document_id"
OUTCOMES = ["unchanged"] * 5 + ["same_body"] * 5 + ["not_modified"] * 5 + ["http_error", "suspect"]


def build(path: Path, rows: int, others: int, other_rows: int) -> Config:
    docs = ["long/privacy-policy"] + [f"d{i}/privacy-policy" for i in range(others)]
    config = parse_config(
        "documents:\n"
        + "".join(
            f"  - {{platform: {d.split('/')[0]}, url: 'https://{d.split('/')[0]}.example/p'}}\n"
            for d in docs
        )
    )
    rng = random.Random(1)
    with Store(path) as store:
        for doc in config.documents:
            store.upsert_document(doc)
        # the long document's checks every few minutes, the others' spread among them
        plan = [docs[0]] * rows + [d for d in docs[1:] for _ in range(other_rows)]
        rng.shuffle(plan)
        batch: list[tuple[Any, ...]] = []
        for n, doc_id in enumerate(plan):
            outcome = rng.choice(OUTCOMES)
            batch.append(
                (doc_id, iso(T0 + dt.timedelta(seconds=30 * n)), "https://x/p", outcome, "etag")
            )
            if len(batch) == 10_000:
                _insert(store, batch)
                batch = []
        _insert(store, batch)
        # the long document ends well: its latest fetch is good
        _insert(store, [(docs[0], iso(T0 + dt.timedelta(days=9999)), "u", "unchanged", "e")])
    return config


def _insert(store: Store, batch: list[tuple[Any, ...]]) -> None:
    with store.transaction():
        store.conn.executemany(
            "INSERT INTO fetches (document_id, started_at, url, outcome, etag) "
            "VALUES (?, ?, ?, ?, ?)",
            batch,
        )


def timed(fn: Callable[[], Any], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
    return statistics.median(runs)


# What `status` ran before migration 4 (aggregates over the whole table); its per-document
# replacement needs the index, so "without index" times these instead.
_LEGACY_STATUS = [
    "SELECT f.document_id, f.started_at, f.outcome, f.detail FROM fetches f "
    "JOIN (SELECT document_id, max(id) AS id FROM fetches GROUP BY document_id) m ON f.id = m.id",
    "SELECT f.document_id, count(*) AS n FROM fetches f LEFT JOIN "
    "(SELECT document_id, max(id) AS id FROM fetches WHERE outcome IN "
    "('new_version', 'unchanged', 'same_body', 'not_modified') GROUP BY document_id) ok "
    "ON ok.document_id = f.document_id WHERE f.id > coalesce(ok.id, 0) GROUP BY f.document_id",
    "SELECT v.document_id, v.number, v.first_seen FROM versions v JOIN "
    "(SELECT document_id, max(number) AS n FROM versions GROUP BY document_id) m "
    "ON v.document_id = m.document_id AND v.number = m.n",
]
_LEGACY_LAST_FETCH_TIMES = (
    "SELECT document_id, max(started_at) AS at FROM fetches GROUP BY document_id"
)


def measure(store: Store, config: Config, repeat: int, legacy: bool) -> dict[str, float]:
    doc = "long/privacy-policy"
    now = T0 + dt.timedelta(days=10000)

    def status() -> None:
        if legacy:
            for sql in _LEGACY_STATUS:
                store.query(sql)
        else:
            document_status(store, config, now)

    def schedule() -> None:
        if legacy:
            store.query(_LEGACY_LAST_FETCH_TIMES)
        else:
            last_fetch_times(store)

    return {
        "last_good_fetch": timed(lambda: store.last_good_fetch(doc), repeat),
        "fetches(limit=50)": timed(lambda: store.fetches(doc, limit=50), repeat),
        "last_fetch": timed(lambda: store.last_fetch(doc), repeat),
        "health.update": timed(lambda: health.update(store, config, [doc], now=now), repeat),
        "status queries": timed(status, repeat),
        "last_fetch_times": timed(schedule, repeat),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--others", type=int, default=99)
    ap.add_argument("--other-rows", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        t0 = time.perf_counter()
        config = build(path, args.rows, args.others, args.other_rows)
        with Store(path) as store:
            total = store.query("SELECT count(*) AS n FROM fetches")[0]["n"]
            print(
                f"{total:,} fetch rows ({args.rows:,} for one document, {args.others} others); "
                f"built in {time.perf_counter() - t0:.1f} s"
            )
            has_index = bool(store.query("SELECT 1 FROM sqlite_master WHERE name = ?", (INDEX,)))
            if has_index:
                store.conn.execute(f"DROP INDEX {INDEX}")
            before = measure(store, config, args.repeat, legacy=True)
            if has_index:
                store.conn.execute(f"CREATE INDEX {INDEX} ON fetches(document_id, id)")
                after = measure(store, config, args.repeat, legacy=False)
            else:
                after = {}
    print(f"{'query':<20} {'before':>11} {'now':>12}")
    for name, ms in before.items():
        now = f"{after[name]:9.2f} ms" if name in after else "        n/a"
        print(f"{name:<20} {ms:8.2f} ms {now}")
    if not after:
        print(f"(this schema has no {INDEX} index: migration 4 is not applied)")


if __name__ == "__main__":
    main()

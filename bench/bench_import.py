"""Benchmark `import dir` over the whole shared corpus, then the report in each format.

    python bench/bench_import.py [--workers N] [--keep DB] [--profile] [--first-ai]

Prints: files, versions, seconds and versions per second of the import (floor: 100 versions/s
on two cores), the database size against the corpus size, a second import (must add nothing),
and the generation time of each report format (html twice: the first run writes every diff
page, the second reuses them). ``--first-ai`` prints each document's ``first_ai_training``
and the latest consent, for reading against the texts. ``--profile`` profiles the main
process (the ordered database writes) and prints its top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Measure this checkout, not whatever copy of the package happens to be installed.
sys.path.insert(0, str(REPO))

from monitor.backfill import import_tree  # noqa: E402
from monitor.config import default_config  # noqa: E402
from monitor.pipeline import Pipeline  # noqa: E402
from monitor.report import collect, to_json, write_report  # noqa: E402
from monitor.store import Store  # noqa: E402

CORPUS = REPO / ".." / "shared" / "corpus" / "versions"


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the database at this path")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--first-ai", action="store_true")
    args = parser.parse_args()
    if not CORPUS.is_dir():
        print(f"no corpus at {CORPUS}; nothing to measure")
        return 0
    folder = Path(tempfile.mkdtemp(prefix="bench-import-"))
    db = args.keep or folder / "bench.db"
    if db.exists():
        sys.exit(f"{db} exists; pass a new path")
    with Store(db) as store:
        pipeline = Pipeline(default_config(), store, notify=False)
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        result = import_tree(pipeline, CORPUS, workers=args.workers)
        if profiler:
            profiler.disable()
        print(
            f"import: {result.files} files, {len(result.documents)} documents, "
            f"{result.new_versions} new versions, {result.unchanged} unchanged, "
            f"{result.suspect} suspect, {result.skipped} skipped, {result.alerts} alerts"
        )
        print(
            f"import: {result.seconds:.1f} s, {result.versions_per_second:.1f} versions/s "
            f"({(result.new_versions + result.unchanged)} versions), "
            f"{result.files / result.seconds:.1f} files/s, workers={args.workers}"
        )
        again = import_tree(pipeline, CORPUS, workers=args.workers)
        print(
            f"re-import: {again.new_versions} new versions, {again.alerts} alerts, "
            f"{again.seconds:.1f} s"
        )
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        corpus_mb = _size(CORPUS) / 1e6
        db_mb = db.stat().st_size / 1e6
        fts = store.query("SELECT sum(pgsize) AS n FROM dbstat WHERE name LIKE 'versions_fts%'")
        fts_mb = (fts[0]["n"] or 0) / 1e6 if fts else 0.0
        print(
            f"size: corpus {corpus_mb:.1f} MB, database {db_mb:.1f} MB "
            f"({db_mb / corpus_mb:.2f}x; full-text index {fts_mb:.1f} MB)"
        )
        out = folder / "report"
        for fmt in ("json", "csv", "html", "html"):
            t0 = time.perf_counter()
            path = write_report(store, out, formats=[fmt])[fmt]
            print(
                f"report {fmt}: {time.perf_counter() - t0:.2f} s, "
                f"{path.stat().st_size / 1e6:.1f} MB ({path})"
            )
        if args.first_ai:
            for doc in to_json(collect(store))["documents"]:
                print(
                    f"  {doc['document']:<45} versions {doc['versions']:>3}  "
                    f"first_ai_training {doc['first_ai_training'] or '-':<10}  "
                    f"consent {doc['consent']}"
                )
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

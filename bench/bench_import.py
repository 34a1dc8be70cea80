"""Benchmark `import dir` over the whole shared corpus, then the report in each format.

    python bench/bench_import.py [--workers N] [--keep DB] [--profile] [--first-ai] [--stages]

Prints: files, versions, seconds and versions per second of the import (floor: 100 versions/s
on two cores), the database size against the corpus size, a second import (must add nothing),
and the generation time of each report format (html twice: the first run writes every diff
page, the second reuses them). ``--first-ai`` prints each document's ``first_ai_training``
and the latest consent, for reading against the texts. ``--profile`` profiles the main
process (the ordered database writes) and prints its top functions. ``--stages`` first runs
one more import in a single process (``workers=1``, a throwaway database) and prints the CPU
time of each stage (extract, analyse, diff, alert decisions, the rest of the ordered writes)
and the rate to expect on two cores, also with the analyser at 5 MB/s.
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

import host  # noqa: E402  (bench/host.py, beside this script)

from monitor.backfill import import_tree  # noqa: E402
from monitor.config import default_config  # noqa: E402
from monitor.pipeline import Pipeline  # noqa: E402
from monitor.report import collect, to_json, write_report  # noqa: E402
from monitor.store import Store  # noqa: E402

CORPUS = REPO / ".." / "shared" / "corpus" / "versions"


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def stages(folder: Path) -> None:
    """CPU seconds per stage of a single-process import, and the two-core rates they imply."""
    import monitor.alerts
    import monitor.analyse
    import monitor.backfill
    import monitor.diff

    spent: dict[str, float] = {}
    text_bytes = 0
    originals: list[tuple[object, str, object]] = []

    def timed(module: object, name: str, label: str) -> None:
        inner = getattr(module, name)
        originals.append((module, name, inner))

        def wrapper(*args: object, **kwargs: object) -> object:
            t0 = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - t0

        setattr(module, name, wrapper)

    def analyse_counting(text: str, *args: object, **kwargs: object) -> object:
        nonlocal text_bytes
        text_bytes += len(text.encode("utf-8"))
        return analyse(text, *args, **kwargs)

    analyse = monitor.analyse.analyse_text
    originals.append((monitor.analyse, "analyse_text", analyse))
    monitor.analyse.analyse_text = analyse_counting  # type: ignore[assignment]
    # Worker-side (parallel) stages, then the main process's ordered writes; nested timers
    # are subtracted from the enclosing stage below.
    timed(monitor.backfill, "_prepare_run", "prepare")
    timed(monitor.backfill, "_ingest_one", "ingest")
    timed(monitor.backfill, "_read", "extract")
    timed(monitor.analyse, "analyse_text", "analyse")
    timed(monitor.diff, "diff_units", "diff")
    timed(monitor.diff, "diff_unit_counts", "diff")
    timed(monitor.diff, "split_units", "diff")
    timed(monitor.alerts, "record_alerts", "alerts")
    try:
        with Store(folder / "stages.db") as store:
            pipeline = Pipeline(default_config(), store, notify=False)
            c0 = time.process_time()
            result = import_tree(pipeline, CORPUS, workers=1)
            total = time.process_time() - c0
    finally:
        for module, name, original in reversed(originals):
            setattr(module, name, original)
    versions = result.new_versions + result.unchanged
    # Everything in _prepare_run runs in the worker processes; what _ingest_one spends on
    # extract / analyse / diff (a re-read, a re-diff) is main-process work.
    prepare, ingest = spent.get("prepare", 0.0), spent.get("ingest", 0.0)
    print(
        f"stages (one process, CPU s): total {total:.1f} = worker side {prepare:.1f} + "
        f"main side {ingest:.1f} + scan/setup {total - prepare - ingest:.1f}"
    )
    for label in ("extract", "analyse", "diff", "alerts"):
        print(f"  {label:<8} {spent.get(label, 0.0):6.2f} s")
    rest = total - sum(spent.get(k, 0.0) for k in ("extract", "analyse", "diff", "alerts"))
    print(
        f"  {'rest':<8} {rest:6.2f} s  (store writes incl. full-text index, suspect guard, setup)"
    )
    mb = text_bytes / 1e6
    print(f"  analyser: {mb:.1f} MB analysed, {mb / spent.get('analyse', 1e-9):.2f} MB/s")
    for label, analyse_s in (("now", spent.get("analyse", 0.0)), ("analyser at 5 MB/s", mb / 5)):
        saved = spent.get("analyse", 0.0) - analyse_s
        # Two cores: the ordered writes run in one process while the workers share the rest.
        wall = max(ingest, (total - saved) / 2)
        print(
            f"  expected on two cores, {label}: {versions / wall:.0f} versions/s "
            f"(bound by {'the ordered writes' if wall == ingest else 'total CPU / 2'}: {wall:.1f} s)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the database at this path")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--first-ai", action="store_true")
    parser.add_argument("--stages", action="store_true", help="CPU per stage, one process")
    args = parser.parse_args()
    if not CORPUS.is_dir():
        print(f"no corpus at {CORPUS}; nothing to measure")
        return 0
    print(host.describe())
    folder = Path(tempfile.mkdtemp(prefix="bench-import-"))
    if args.stages:
        # In a child process: run here, it would leave the packs' token and pattern caches
        # warm for the import below (its workers inherit them), which then looks ~25 % faster
        # than a fresh `policy-monitor import` is.
        import multiprocessing

        child = multiprocessing.get_context("fork").Process(target=stages, args=(folder,))
        child.start()
        child.join()
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

"""Alert precision on real histories: every series of ../shared/corpus/versions fed through the
pipeline oldest first (extract_markdown -> Pipeline.ingest -> record_alerts), then the alerts
raised, counted per type, with a sample printed for a manual check.

    python bench/bench_alerts_corpus.py [--series twitter/privacy-policy ...] [--sample 3]
                                        [--pages bench/out/alerts] [--db bench/out/alerts.db]

Prints: versions fed, seconds, alerts per type and per series, then the sample.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from monitor.alerts import AlertType, decide_alerts, list_alerts, record_alerts
from monitor.config import Config
from monitor.extract import extract_markdown
from monitor.pages import write_alert_pages
from monitor.pipeline import Pipeline
from monitor.store import Store

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus" / "versions"


def _seen_at(path: Path) -> dt.datetime:
    # 2023-09-29T17-05-12Z.md
    stamp = path.stem
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H-%M-%SZ").replace(tzinfo=dt.UTC)


def _time_decisions(store: Store) -> None:
    """decide_alerts alone over every stored transition: its share of the pipeline's time."""
    times: list[float] = []
    for doc in store.documents():
        versions = store.versions(doc["id"])
        for prev, new in zip([None, *versions], versions, strict=False):
            a_new = store.analysis(new)
            if a_new is None:
                continue
            a_prev = store.analysis(prev) if prev else None
            t = time.perf_counter()
            decide_alerts(a_prev, a_new, first_version=prev is None)
            times.append(time.perf_counter() - t)
    if times:
        print(
            f"\ndecide_alerts: {len(times)} transitions, total {sum(times):.2f} s, "
            f"mean {1000 * sum(times) / len(times):.1f} ms, max {1000 * max(times):.1f} ms"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", nargs="*", help="service/doc-type folders (default: all)")
    ap.add_argument("--sample", type=int, default=3, help="alerts printed per type")
    ap.add_argument("--pages", type=Path, help="also write the alert pages here")
    ap.add_argument("--db", type=Path, help="keep the database here")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument(
        "--reuse-db", action="store_true", help="skip feeding: report on the --db as it is"
    )
    args = ap.parse_args(argv)
    if not CORPUS.is_dir():
        print(f"corpus not found at {CORPUS}", file=sys.stderr)
        return 1

    series = sorted(p.parent for p in CORPUS.glob("*/*/*.md"))
    folders = sorted(set(series))
    if args.series:
        folders = [CORPUS / s for s in args.series]
    db_path = args.db or Path(tempfile.mkdtemp()) / "alerts.db"
    if not args.reuse_db:
        db_path.unlink(missing_ok=True)
    store = Store(db_path)
    pipeline = Pipeline(Config.model_validate({}), store, alert_hook=record_alerts)

    t0 = time.perf_counter()
    fed = 0
    for folder in [] if args.reuse_db else folders:
        service, doc_type = folder.parent.name, folder.name
        doc_id = f"{service}/{doc_type}"
        store.ensure_document(doc_id, service, doc_type, f"https://example.invalid/{doc_id}")
        for md in sorted(folder.glob("*.md")):
            extracted = extract_markdown(md.read_text(encoding="utf-8"))
            pipeline.ingest(doc_id, extracted, seen_at=_seen_at(md), source="import")
            fed += 1
    elapsed = time.perf_counter() - t0

    alerts = list_alerts(store)
    print(f"series: {len(folders)}  versions fed: {fed}  seconds: {elapsed:.1f}")
    print(f"alerts: {len(alerts)}")
    by_type = Counter(a.type.value for a in alerts)
    for t in AlertType:
        print(f"  {t.value:22} {by_type.get(t.value, 0)}")
    print("per series:")
    per_doc: dict[str, Counter[str]] = {}
    for a in alerts:
        per_doc.setdefault(a.document_id, Counter())[a.type.value] += 1
    for doc_id in sorted(per_doc):
        counts = ", ".join(f"{k}={v}" for k, v in sorted(per_doc[doc_id].items()))
        print(f"  {doc_id:45} {counts}")

    rng = random.Random(args.seed)
    print("\nsample:")
    for t in AlertType:
        of_type = [a for a in alerts if a.type == t]
        for a in rng.sample(of_type, min(args.sample, len(of_type))):
            clause = " ".join((a.unit_text or "").split())
            print(
                f"- #{a.id} {a.document_id} v{a.prev_version_number}->v{a.version_number} "
                f"{a.created_at[:10]} {a.type.value} {a.severity}\n"
                f"  {a.summary}\n  clause: {clause[:400]}"
            )
    _time_decisions(store)
    if args.pages:
        written = write_alert_pages(store, args.pages)
        print(f"\npages: {len(written)} files under {args.pages}")
    print(f"database: {db_path}")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

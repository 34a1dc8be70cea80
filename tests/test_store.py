from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from monitor.errors import NotFound, StoreError
from monitor.store import MIGRATIONS, Store

T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)


def _doc(store: Store, doc_id: str = "x/privacy-policy") -> str:
    store.ensure_document(doc_id, "X", "privacy-policy", "https://x.com/en/privacy")
    return doc_id


def test_fresh_database_is_migrated_and_in_wal_mode(store: Store) -> None:
    assert store.schema_version == len(MIGRATIONS)
    mode = store.conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "documents",
        "fetches",
        "versions",
        "blobs",
        "findings",
        "changes",
        "alerts",
        "subscribers",
        "deliveries",
    } <= tables


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    Store(tmp_path / "a.db").close()
    again = Store(tmp_path / "a.db")
    assert again.schema_version == len(MIGRATIONS)
    again.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "b.db")
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this policy-monitor"):
        Store(tmp_path / "b.db")


def test_versions_are_numbered_and_found_by_ref(store: Store) -> None:
    doc = _doc(store)
    v1 = store.add_version(doc, text="one", seen_at=T0, source="fetch")
    v2 = store.add_version(doc, text="two", seen_at=T0 + dt.timedelta(days=10), source="fetch")
    assert (v1.number, v2.number) == (1, 2)
    assert store.version(doc, "latest").id == v2.id
    assert store.version(doc, -2).id == v1.id
    assert store.version(doc, "1").id == v1.id
    assert store.version(doc, v2.sha256[:8]).id == v2.id
    assert store.version(doc, "2024-03-05").id == v1.id  # current on that date
    with pytest.raises(NotFound):
        store.version(doc, 7)
    with pytest.raises(NotFound, match="no document"):
        store.version("nope/privacy-policy", 1)


def test_blobs_are_content_addressed_and_compressed(store: Store) -> None:
    body = b"<html>" + b"policy text " * 2000 + b"</html>"
    sha1 = store.put_blob(body, "text/html")
    sha2 = store.put_blob(body, "text/html")
    assert sha1 == sha2
    assert store.query_one("SELECT count(*) AS n FROM blobs")["n"] == 1
    stored = store.query_one("SELECT length(data) AS n FROM blobs")["n"]
    assert stored < len(body) / 10
    assert store.get_blob(sha1) == body


def test_transaction_is_all_or_nothing(store: Store) -> None:
    doc = _doc(store)
    with pytest.raises(RuntimeError), store.transaction():
        store.add_version(doc, text="half", seen_at=T0, source="fetch")
        store.record_fetch(doc, started_at=T0, url="https://x.com", outcome="new_version")
        raise RuntimeError("crash mid-write")
    assert store.versions(doc) == []
    assert store.fetches(doc) == []


def test_touch_version_only_moves_last_seen_forward(store: Store) -> None:
    doc = _doc(store)
    v = store.add_version(doc, text="one", seen_at=T0, source="fetch")
    store.touch_version(v.id, T0 + dt.timedelta(days=3))
    store.touch_version(v.id, T0 + dt.timedelta(days=1))
    assert store.version_by_id(v.id).last_seen == "2024-03-04T12:00:00Z"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM fetches WHERE document_id = ? ORDER BY id DESC LIMIT 50",
        "SELECT * FROM fetches WHERE document_id = ? AND outcome IN "
        "('new_version', 'unchanged', 'same_body', 'not_modified') ORDER BY id DESC LIMIT 1",
    ],
)
def test_the_newest_fetches_of_a_document_are_read_through_an_index(store: Store, sql: str) -> None:
    # A long-running daemon's history must not be sorted on every check (see
    # bench/bench_fetch_log.py): the plan walks fetches(document_id, id) backwards.
    plan = " ".join(r["detail"] for r in store.query("EXPLAIN QUERY PLAN " + sql, ("x",)))
    assert "fetches_document_id" in plan, plan
    assert "TEMP B-TREE" not in plan, plan

"""SQLite storage through sqlite-utils: one file, WAL, migrations, versions and the fetch log.

Every write that belongs together (a version, its blob, its findings, its change record,
its alerts and their outbox rows, and the fetch that produced them) goes through
:meth:`Store.transaction`, so a crash mid-write leaves either all of it or none of it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import sqlite3
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.config import DocumentConfig
from monitor.errors import NotFound, StoreError
from monitor.models import Analysis, Consent, Finding

# Each entry is one migration; the schema version is its position (PRAGMA user_version).
# Never edit an entry that has shipped: append a new one.
MIGRATIONS: list[str] = [
    # 1: the core data model
    """
    CREATE TABLE documents (
        id TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        doc_type TEXT NOT NULL,
        url TEXT NOT NULL,
        added_at TEXT NOT NULL
    );
    CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        data BLOB NOT NULL,          -- zlib-compressed raw body
        size INTEGER NOT NULL,
        content_type TEXT,
        first_seen TEXT NOT NULL
    );
    CREATE TABLE versions (
        id INTEGER PRIMARY KEY,
        document_id TEXT NOT NULL REFERENCES documents(id),
        number INTEGER NOT NULL,
        sha256 TEXT NOT NULL,        -- of the normalised text
        text TEXT NOT NULL,
        title TEXT,
        blob_sha256 TEXT REFERENCES blobs(sha256),
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        effective_date TEXT,
        source TEXT NOT NULL,        -- fetch | import
        source_url TEXT,
        lang TEXT,
        ai_training INTEGER,         -- NULL until analysed
        consent TEXT,
        negated INTEGER,
        analysed_at TEXT,
        UNIQUE (document_id, number)
    );
    CREATE INDEX versions_document ON versions(document_id, number);
    CREATE TABLE fetches (
        id INTEGER PRIMARY KEY,
        document_id TEXT NOT NULL REFERENCES documents(id),
        started_at TEXT NOT NULL,
        duration_ms INTEGER,
        url TEXT NOT NULL,
        final_url TEXT,
        status INTEGER,
        outcome TEXT NOT NULL,
        detail TEXT,
        etag TEXT,
        last_modified TEXT,
        body_sha256 TEXT,
        text_sha256 TEXT,
        version_id INTEGER REFERENCES versions(id),
        attempts INTEGER,
        robots_overridden INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX fetches_document ON fetches(document_id, started_at);
    CREATE TABLE findings (
        id INTEGER PRIMARY KEY,
        version_id INTEGER NOT NULL REFERENCES versions(id),
        pack TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        category TEXT NOT NULL,
        severity TEXT NOT NULL,
        unit_index INTEGER NOT NULL,
        unit_text TEXT NOT NULL,
        start INTEGER NOT NULL,
        "end" INTEGER NOT NULL,
        heading_path TEXT NOT NULL,  -- JSON list
        lang TEXT,
        ai_training INTEGER NOT NULL,
        consent TEXT NOT NULL,
        negated INTEGER NOT NULL,
        spans TEXT NOT NULL,         -- JSON
        consent_cues TEXT NOT NULL   -- JSON
    );
    CREATE INDEX findings_version ON findings(version_id);
    CREATE TABLE changes (
        id INTEGER PRIMARY KEY,
        document_id TEXT NOT NULL REFERENCES documents(id),
        from_version_id INTEGER REFERENCES versions(id),
        to_version_id INTEGER NOT NULL REFERENCES versions(id),
        created_at TEXT NOT NULL,
        summary TEXT NOT NULL        -- JSON counts
    );
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        document_id TEXT NOT NULL REFERENCES documents(id),
        type TEXT NOT NULL,
        severity TEXT NOT NULL,
        version_id INTEGER NOT NULL REFERENCES versions(id),
        prev_version_id INTEGER REFERENCES versions(id),
        created_at TEXT NOT NULL,
        clause_key TEXT NOT NULL,    -- what makes "the same clause" for de-duplication
        unit_text TEXT,
        summary TEXT NOT NULL,
        evidence TEXT NOT NULL,      -- JSON
        UNIQUE (document_id, type, clause_key)
    );
    CREATE TABLE subscribers (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        platforms TEXT NOT NULL,     -- JSON list; empty = all
        min_severity TEXT NOT NULL,
        digest TEXT NOT NULL,        -- none | daily
        token TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,          -- alert | digest | health
        alert_id INTEGER REFERENCES alerts(id),
        subscriber_id INTEGER REFERENCES subscribers(id),
        recipient TEXT NOT NULL,
        subject TEXT NOT NULL,
        body_text TEXT NOT NULL,
        body_html TEXT,
        headers TEXT NOT NULL,       -- JSON
        message_id TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,        -- pending | sending | sent | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX deliveries_status ON deliveries(status, next_attempt_at);
    """,
    # health problems of documents (monitor/health.py): one row per problem episode; the open
    # ones (resolved_at NULL) are what a restarted daemon must not alert about again.
    """
    CREATE TABLE health_problems (
        id INTEGER PRIMARY KEY,
        document_id TEXT NOT NULL REFERENCES documents(id),
        problem TEXT NOT NULL,       -- failing | suspect | selector | robots
        detail TEXT,
        started_at TEXT NOT NULL,    -- first bad fetch of the episode
        alerted_at TEXT NOT NULL,
        resolved_at TEXT
    );
    CREATE UNIQUE INDEX health_problems_open
        ON health_problems(document_id, problem) WHERE resolved_at IS NULL;
    """,
    # full-text search over every version (monitor/search.py): an external-content FTS5 index,
    # so the text is stored once; triggers keep it in the same transaction as the version.
    """
    CREATE VIRTUAL TABLE versions_fts USING fts5(
        text, content='versions', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER versions_fts_insert AFTER INSERT ON versions BEGIN
        INSERT INTO versions_fts (rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER versions_fts_delete AFTER DELETE ON versions BEGIN
        INSERT INTO versions_fts (versions_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    CREATE TRIGGER versions_fts_update AFTER UPDATE OF text ON versions BEGIN
        INSERT INTO versions_fts (versions_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO versions_fts (rowid, text) VALUES (new.id, new.text);
    END;
    INSERT INTO versions_fts (versions_fts) VALUES ('rebuild');
    """,
    # where an alert came from, which decides whether it may be e-mailed (monitor/notify.py):
    # 'check' (a fetch: yes), 'import' (backfilled history: never), 'import-notify' (an
    # import run with --notify: yes). Alerts of older databases: an imported version's alert
    # with no e-mail queued for it was an import without --notify.
    """
    ALTER TABLE alerts ADD COLUMN origin TEXT NOT NULL DEFAULT 'check';
    UPDATE alerts SET origin = CASE
        WHEN (SELECT source FROM versions WHERE versions.id = alerts.version_id) != 'import'
            THEN 'check'
        WHEN EXISTS (SELECT 1 FROM deliveries WHERE deliveries.alert_id = alerts.id)
            THEN 'import-notify'
        ELSE 'import'
    END;
    """,
    # the outbox backs off as a whole while the SMTP server takes no mail (monitor/notify.py):
    # one row while it is down; queued_at restarts a message's give-up clock when an operator
    # queues it again (NULL: created_at).
    """
    CREATE TABLE smtp_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        failures INTEGER NOT NULL,   -- delivery runs in a row that got no session
        down_since TEXT NOT NULL,
        retry_at TEXT NOT NULL,
        last_error TEXT
    );
    ALTER TABLE deliveries ADD COLUMN queued_at TEXT;
    """,
    # the fetch log is read newest first by id (last good fetch, the health tail, status);
    # (document_id, started_at) cannot give that order, so each of those reads sorted the
    # document's whole history: 200,000 rows cost hundreds of ms per check.
    """
    CREATE INDEX fetches_document_id ON fetches(document_id, id);
    """,
    # the extraction settings a good fetch was read with (pipeline.extraction_key): when
    # select / remove / render or the extractor change, the shortcuts that reuse the last
    # good fetch (conditional GET, same body) would keep the old text until the page changes.
    """
    ALTER TABLE fetches ADD COLUMN extract_key TEXT;
    """,
]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(slots=True, frozen=True)
class Version:
    id: int
    document_id: str
    number: int
    sha256: str
    text: str
    title: str | None
    blob_sha256: str | None
    first_seen: str
    last_seen: str
    effective_date: str | None
    source: str
    source_url: str | None
    lang: str | None
    ai_training: bool | None
    consent: str | None
    negated: bool | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Version:
        def _b(v: Any) -> bool | None:
            return None if v is None else bool(v)

        return cls(
            id=row["id"],
            document_id=row["document_id"],
            number=row["number"],
            sha256=row["sha256"],
            text=row["text"],
            title=row["title"],
            blob_sha256=row["blob_sha256"],
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
            effective_date=row["effective_date"],
            source=row["source"],
            source_url=row["source_url"],
            lang=row["lang"],
            ai_training=_b(row["ai_training"]),
            consent=row["consent"],
            negated=_b(row["negated"]),
        )

    def summary(self) -> dict[str, Any]:
        """The version without its text, for listings and JSON output."""
        return {
            "number": self.number,
            "sha256": self.sha256,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "effective_date": self.effective_date,
            "source": self.source,
            "chars": len(self.text),
            "lang": self.lang,
            "ai_training": self.ai_training,
            "consent": self.consent,
            "negated": self.negated,
        }


class Store:
    """The project's database. Open one per process (or per thread); it is not a singleton."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from None
        self.conn = conn
        self._db: Any = None
        self._depth = 0
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    # --- plumbing -----------------------------------------------------------------------

    @property
    def db(self) -> Any:
        """The same connection as a ``sqlite_utils.Database`` (imported on first use: it pulls
        in numpy, which a check of unchanged pages has no use for)."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing block; nested blocks join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._depth = 0

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} has schema version {current}, newer than this policy-monitor "
                f"({len(MIGRATIONS)}); upgrade policy-monitor"
            )
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            # executescript commits implicitly, so run the statements one by one inside
            # our own transaction: a failed migration leaves the previous schema intact.
            with self.transaction():
                for statement in _split_sql(script):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={number}")

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        cols = [c[0] for c in cur.description or ()]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def query_one(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def insert(self, table: str, row: dict[str, Any]) -> int:
        cols = ", ".join(f'"{c}"' for c in row)
        marks = ", ".join("?" for _ in row)
        cur = self.conn.execute(
            f'INSERT INTO "{table}" ({cols}) VALUES ({marks})', list(row.values())
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    # --- documents ----------------------------------------------------------------------

    def upsert_document(self, doc: DocumentConfig, *, now: dt.datetime | None = None) -> None:
        self.conn.execute(
            """INSERT INTO documents (id, platform, doc_type, url, added_at) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET platform=excluded.platform,
               doc_type=excluded.doc_type, url=excluded.url""",
            (doc.doc_id, doc.platform, doc.doc_type, doc.url, iso(now or utcnow())),
        )

    def upsert_documents(
        self, docs: Sequence[DocumentConfig], *, now: dt.datetime | None = None
    ) -> None:
        """:meth:`upsert_document` for many documents in one transaction (one commit instead
        of one per document at the start of a pass); rows that did not change are not
        rewritten."""
        added = iso(now or utcnow())
        with self.transaction():
            self.conn.executemany(
                """INSERT INTO documents (id, platform, doc_type, url, added_at)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(id) DO UPDATE SET platform=excluded.platform,
                   doc_type=excluded.doc_type, url=excluded.url
                   WHERE platform IS NOT excluded.platform OR doc_type IS NOT excluded.doc_type
                   OR url IS NOT excluded.url""",
                [(d.doc_id, d.platform, d.doc_type, d.url, added) for d in docs],
            )

    def ensure_document(
        self, doc_id: str, platform: str, doc_type: str, url: str, now: dt.datetime | None = None
    ) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO documents (id, platform, doc_type, url, added_at) VALUES (?, ?, ?, ?, ?)",
            (doc_id, platform, doc_type, url, iso(now or utcnow())),
        )

    def documents(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM documents ORDER BY id")

    def document(self, doc_id: str) -> dict[str, Any]:
        row = self.query_one("SELECT * FROM documents WHERE id = ?", (doc_id,))
        if row is None:
            known = ", ".join(d["id"] for d in self.documents()) or "none yet"
            raise NotFound(f"no document {doc_id!r} in the database (known: {known})")
        return row

    # --- blobs --------------------------------------------------------------------------

    def put_blob(
        self, data: bytes, content_type: str | None = None, now: dt.datetime | None = None
    ) -> str:
        sha = sha256_bytes(data)
        self.conn.execute(
            "INSERT OR IGNORE INTO blobs (sha256, data, size, content_type, first_seen) VALUES (?, ?, ?, ?, ?)",
            (sha, zlib.compress(data, 6), len(data), content_type, iso(now or utcnow())),
        )
        return sha

    def put_suspect_blob(
        self,
        doc_id: str,
        data: bytes,
        content_type: str | None = None,
        now: dt.datetime | None = None,
        *,
        keep: int = 3,
    ) -> str:
        """Store the raw body of a suspect fetch of ``doc_id`` (call before recording it),
        keeping only the latest ``keep`` different ones of the document.

        A suspect body is kept to show what the site served instead of the policy; a captcha
        page with a rotating nonce is a new body at every fetch and would otherwise add a blob
        per fetch for as long as the site blocks us. A body that a version or another
        document's fetch refers to is never deleted."""
        sha = sha256_bytes(data)
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO blobs (sha256, data, size, content_type, first_seen) VALUES (?, ?, ?, ?, ?)",
            (sha, zlib.compress(data, 6), len(data), content_type, iso(now or utcnow())),
        )
        if cur.rowcount:  # a new body: the oldest kept one may now be one too many
            dropped = self._suspect_body_beyond(doc_id, sha, keep)
            if dropped is not None and not self._blob_referenced(dropped, doc_id):
                self.conn.execute("DELETE FROM blobs WHERE sha256 = ?", (dropped,))
        return sha

    def _suspect_body_beyond(self, doc_id: str, newest: str, keep: int) -> str | None:
        """The (keep+1)-th different body among the document's suspect fetches, newest first
        (``newest`` being the first): the one that falls out of the kept window. Older ones
        fell out (and were deleted) when they were in that place."""
        seen = [newest]
        before: int | None = None
        while True:
            rows = self.query(
                "SELECT id, body_sha256 FROM fetches WHERE document_id = ? AND outcome = "
                "'suspect' AND body_sha256 IS NOT NULL AND id < ? ORDER BY id DESC LIMIT 200",
                (doc_id, before if before is not None else 2**63 - 1),
            )
            for row in rows:
                if row["body_sha256"] not in seen:
                    seen.append(row["body_sha256"])
                    if len(seen) > keep:
                        return seen[keep]
            if len(rows) < 200:
                return None
            before = rows[-1]["id"]

    def _blob_referenced(self, sha: str, doc_id: str) -> bool:
        return bool(
            self.query_one("SELECT 1 FROM versions WHERE blob_sha256 = ? LIMIT 1", (sha,))
            or self.query_one(
                "SELECT 1 FROM fetches WHERE body_sha256 = ? AND document_id != ? LIMIT 1",
                (sha, doc_id),
            )
        )

    def get_blob(self, sha: str) -> bytes:
        row = self.conn.execute("SELECT data FROM blobs WHERE sha256 = ?", (sha,)).fetchone()
        if row is None:
            raise NotFound(f"no blob {sha}")
        return zlib.decompress(row[0])

    # --- versions -----------------------------------------------------------------------

    def latest_version(self, doc_id: str) -> Version | None:
        row = self.query_one(
            "SELECT * FROM versions WHERE document_id = ? ORDER BY number DESC LIMIT 1", (doc_id,)
        )
        return Version.from_row(row) if row else None

    def latest_version_head(self, doc_id: str) -> dict[str, Any] | None:
        """The latest version without its text (id, number, sha256, first_seen, ai_training,
        consent)."""
        return self.query_one(
            "SELECT id, number, sha256, first_seen, ai_training, consent FROM versions "
            "WHERE document_id = ? ORDER BY number DESC LIMIT 1",
            (doc_id,),
        )

    def versions(self, doc_id: str) -> list[Version]:
        rows = self.query("SELECT * FROM versions WHERE document_id = ? ORDER BY number", (doc_id,))
        return [Version.from_row(r) for r in rows]

    def version_by_id(self, version_id: int) -> Version:
        row = self.query_one("SELECT * FROM versions WHERE id = ?", (version_id,))
        if row is None:
            raise NotFound(f"no version with id {version_id}")
        return Version.from_row(row)

    def version(self, doc_id: str, ref: str | int) -> Version:
        """Find a version by number (``3``, ``-1`` for the latest, ``-2`` the one before),
        ``latest``, a sha256 prefix, or a date (the version current on that date)."""
        self.document(doc_id)
        ref_s = str(ref).strip()
        rows: list[dict[str, Any]] = []
        if ref_s in ("latest", "last"):
            ref_s = "-1"
        if ref_s.lstrip("-").isdigit():
            n = int(ref_s)
            if n < 0:
                rows = self.query(
                    "SELECT * FROM versions WHERE document_id = ? ORDER BY number DESC LIMIT 1 OFFSET ?",
                    (doc_id, -n - 1),
                )
            else:
                rows = self.query(
                    "SELECT * FROM versions WHERE document_id = ? AND number = ?", (doc_id, n)
                )
        elif len(ref_s) >= 4 and all(c in "0123456789abcdef" for c in ref_s.lower()):
            rows = self.query(
                "SELECT * FROM versions WHERE document_id = ? AND sha256 LIKE ? ORDER BY number",
                (doc_id, ref_s.lower() + "%"),
            )
            if len(rows) > 1:
                raise NotFound(f"version prefix {ref_s!r} is ambiguous for {doc_id}")
        elif len(ref_s) >= 10 and ref_s[4] == "-":
            rows = self.query(
                "SELECT * FROM versions WHERE document_id = ? AND first_seen <= ? "
                "ORDER BY number DESC LIMIT 1",
                (doc_id, ref_s + ("T23:59:59Z" if len(ref_s) == 10 else "")),
            )
        if not rows:
            raise NotFound(f"no version {ref_s!r} of {doc_id}")
        return Version.from_row(rows[0])

    def add_version(
        self,
        doc_id: str,
        *,
        text: str,
        seen_at: dt.datetime,
        source: str,
        title: str | None = None,
        blob_sha256: str | None = None,
        effective_date: dt.date | None = None,
        source_url: str | None = None,
    ) -> Version:
        # The next number without reading the latest version's text.
        number = self.conn.execute(
            "SELECT coalesce(max(number), 0) + 1 FROM versions WHERE document_id = ?", (doc_id,)
        ).fetchone()[0]
        when = iso(seen_at)
        vid = self.insert(
            "versions",
            {
                "document_id": doc_id,
                "number": number,
                "sha256": sha256_text(text),
                "text": text,
                "title": title,
                "blob_sha256": blob_sha256,
                "first_seen": when,
                "last_seen": when,
                "effective_date": effective_date.isoformat() if effective_date else None,
                "source": source,
                "source_url": source_url,
            },
        )
        return self.version_by_id(vid)

    def touch_version(self, version_id: int, seen_at: dt.datetime) -> None:
        self.conn.execute(
            "UPDATE versions SET last_seen = max(last_seen, ?) WHERE id = ?",
            (iso(seen_at), version_id),
        )

    # --- fetch log ----------------------------------------------------------------------

    def record_fetch(self, doc_id: str, **fields: Any) -> int:
        row = {"document_id": doc_id, **fields}
        if isinstance(row.get("started_at"), dt.datetime):
            row["started_at"] = iso(row["started_at"])
        return self.insert("fetches", row)

    def fetches(self, doc_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM fetches WHERE document_id = ? ORDER BY id DESC LIMIT ?", (doc_id, limit)
        )

    def last_fetch(self, doc_id: str) -> dict[str, Any] | None:
        return self.query_one(
            "SELECT * FROM fetches WHERE document_id = ? ORDER BY id DESC LIMIT 1", (doc_id,)
        )

    def latest_fetch_starts(self) -> dict[str, str]:
        """``started_at`` of the newest fetch row (by id) of every document that has one;
        one index seek per document, however long the log."""
        rows = self.query(
            "SELECT d.id AS document_id, (SELECT started_at FROM fetches "
            "WHERE document_id = d.id ORDER BY id DESC LIMIT 1) AS at FROM documents d"
        )
        return {r["document_id"]: r["at"] for r in rows if r["at"]}

    def last_good_fetch(self, doc_id: str) -> dict[str, Any] | None:
        """The last fetch that saw the current text: its validators and body hash are the ones
        to reuse for the next conditional GET and the same-body shortcut."""
        return self.query_one(
            "SELECT * FROM fetches WHERE document_id = ? AND outcome IN "
            "('new_version', 'unchanged', 'same_body', 'not_modified') ORDER BY id DESC LIMIT 1",
            (doc_id,),
        )

    # --- analysis -----------------------------------------------------------------------

    def save_analysis(
        self, version_id: int, analysis: Analysis, now: dt.datetime | None = None
    ) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM findings WHERE version_id = ?", (version_id,))
            # One executemany, rows in the findings' order (so ids are as one insert each).
            self.conn.executemany(
                "INSERT INTO findings (version_id, pack, rule_id, category, severity, "
                'unit_index, unit_text, start, "end", heading_path, lang, ai_training, '
                "consent, negated, spans, consent_cues) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        version_id,
                        f.pack,
                        f.rule_id,
                        f.category,
                        f.severity,
                        f.unit_index,
                        f.unit_text,
                        f.start,
                        f.end,
                        json.dumps(list(f.heading_path), ensure_ascii=False),
                        f.lang,
                        int(f.ai_training),
                        f.consent.value,
                        int(f.negated),
                        json.dumps(
                            [
                                {"start": s.start, "end": s.end, "role": s.role, "text": s.text}
                                for s in f.spans
                            ],
                            ensure_ascii=False,
                        ),
                        json.dumps(f.consent_cues, ensure_ascii=False),
                    )
                    for f in analysis.findings
                ],
            )
            self.conn.execute(
                "UPDATE versions SET lang = ?, ai_training = ?, consent = ?, negated = ?, "
                "analysed_at = ? WHERE id = ?",
                (
                    analysis.lang,
                    int(analysis.ai_training),
                    analysis.consent.value,
                    int(analysis.negated),
                    iso(now or utcnow()),
                    version_id,
                ),
            )

    def findings(self, version_id: int) -> list[Finding]:
        rows = self.query("SELECT * FROM findings WHERE version_id = ? ORDER BY id", (version_id,))
        out = []
        for r in rows:
            out.append(
                Finding.from_dict(
                    {
                        **r,
                        "heading_path": json.loads(r["heading_path"]),
                        "spans": json.loads(r["spans"]),
                        "consent_cues": json.loads(r["consent_cues"]),
                    }
                )
            )
        return out

    def analysis(self, version: Version) -> Analysis | None:
        """The stored analysis of a version, or None if it was never analysed."""
        if version.ai_training is None:
            return None
        findings = self.findings(version.id)
        return Analysis(
            lang=version.lang or "und",
            ai_training=bool(version.ai_training),
            consent=Consent(version.consent or "n/a"),
            negated=bool(version.negated),
            findings=findings,
        )

    def record_change(
        self,
        doc_id: str,
        from_id: int | None,
        to_id: int,
        summary: dict[str, int],
        now: dt.datetime | None = None,
    ) -> int:
        return self.insert(
            "changes",
            {
                "document_id": doc_id,
                "from_version_id": from_id,
                "to_version_id": to_id,
                "created_at": iso(now or utcnow()),
                "summary": json.dumps(summary),
            },
        )


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (no semicolons inside our literals; a
    trigger body's inner semicolons are kept: pieces join until SQLite sees a whole one)."""
    without_comments = re.sub(r"--[^\n]*", "", script)
    statements: list[str] = []
    pending = ""
    for part in without_comments.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n\t;"):
                statements.append(pending.strip().rstrip(";").strip())
            pending = ""
    if pending.strip(" \n\t;"):
        statements.append(pending.strip().rstrip(";").strip())
    return statements

"""Full-text search over every stored version (SQLite FTS5, table ``versions_fts``).

A query is what people type: words, ``"quoted phrases"``, ``OR`` / ``AND`` / ``NOT``, a
trailing ``*`` for a prefix. Anything FTS5 would read as syntax by accident (a hyphen in
``opt-out``, a lone quote, a colon, parentheses) is quoted, so that ``opt-out`` finds the
phrase "opt out" instead of failing on a column named ``out``. What still cannot be parsed is
a :class:`~monitor.errors.MonitorError` with one line for people.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from monitor.config import slug
from monitor.errors import MonitorError
from monitor.store import Store

__all__ = ["SearchHit", "fts_query", "search"]

# Snippet markers: control characters that never occur in normalised policy text, so the
# caller can split on them and escape the text in between (HTML) or colour it (terminal).
MARK_START = "\x02"
MARK_END = "\x03"
_OPERATORS = {"AND", "OR", "NOT"}
_BAREWORD = re.compile(r"^\w+\*?$")
_TOKEN = re.compile(r'"[^"]*"?|\S+')


@dataclass(slots=True, frozen=True)
class SearchHit:
    """One matching passage of one document, shown in its newest version. The same passage
    in several versions (a policy is mostly unchanged from one version to the next) is one
    hit: ``versions`` says in how many, ``since`` since when (the oldest one's first_seen)."""

    document_id: str
    platform: str
    doc_type: str
    version: int  # the newest version with this passage
    first_seen: str  # of that version
    last_seen: str
    snippet: str  # with MARK_START / MARK_END around the matching words
    rank: float
    versions: int = 1
    first_version: int | None = None  # the oldest version with this passage
    since: str | None = None  # its first_seen

    def plain_snippet(self, start: str = "[", end: str = "]") -> str:
        return self.snippet.replace(MARK_START, start).replace(MARK_END, end)

    def to_dict(self) -> dict[str, Any]:
        return {
            "document": self.document_id,
            "platform": self.platform,
            "doc_type": self.doc_type,
            "version": self.version,
            "date": self.first_seen[:10],
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "versions": self.versions,
            "first_version": self.first_version if self.first_version is not None else self.version,
            "since": (self.since or self.first_seen)[:10],
            "snippet": self.plain_snippet("**", "**"),
        }


def fts_query(query: str) -> str:
    """Turn what a person typed into an FTS5 MATCH expression (see the module docstring)."""
    parts: list[str] = []
    for token in _TOKEN.findall(query):
        if token in _OPERATORS:
            parts.append(token)
        elif token.startswith('"'):
            inner = token.strip('"')
            if inner.strip():
                parts.append('"' + inner.replace('"', "") + '"')
        elif _BAREWORD.match(token):
            parts.append(token)
        else:
            words = re.findall(r"\w+", token)
            if words:
                # opt-out, e-mail, "AI-training:": the words in order, as a phrase
                parts.append('"' + " ".join(words) + '"' + ("*" if token.endswith("*") else ""))
    # An operator with nothing on one side is a syntax error: drop dangling ones.
    while parts and parts[0] in _OPERATORS - {"NOT"}:
        parts.pop(0)
    while parts and parts[-1] in _OPERATORS:
        parts.pop()
    return " ".join(parts)


def search(
    store: Store,
    query: str,
    *,
    platforms: list[str] | None = None,
    limit: int = 20,
    tokens: int = 24,
) -> list[SearchHit]:
    """Passages matching ``query``: one hit per document and passage (a snippet of about
    ``tokens`` words around the match), in its newest version, newest first; the same
    passage in older versions only counts in ``versions`` / ``since``."""
    expression = fts_query(query)
    if not expression:
        raise MonitorError(f"nothing to search for in {query!r}")
    where = ["versions_fts MATCH ?"]
    params: list[Any] = [expression]
    if platforms:
        # A platform by its name ("Claude.ai", "Meta AI") or its slug ("claude-ai", "meta-ai"):
        # compared as slugs, as `subscribers add` does.
        wanted = {slug(p) for p in platforms}
        doc_ids = [
            d["id"]
            for d in store.documents()
            if slug(d["platform"]) in wanted or d["id"].partition("/")[0] in wanted
        ]
        where.append(f"v.document_id IN ({', '.join('?' for _ in doc_ids) or 'NULL'})")
        params.extend(doc_ids)
    sql = f"""
        SELECT v.document_id, d.platform, d.doc_type, v.number, v.first_seen, v.last_seen,
               snippet(versions_fts, 0, ?, ?, ' … ', ?) AS snippet, bm25(versions_fts) AS rank
        FROM versions_fts
        JOIN versions v ON v.id = versions_fts.rowid
        JOIN documents d ON d.id = v.document_id
        WHERE {" AND ".join(where)}
        ORDER BY v.document_id, v.number DESC
    """
    try:
        # Every matching version: a passage's hit must count all the versions that have it.
        rows = store.query(sql, [MARK_START, MARK_END, max(1, min(tokens, 64)), *params])
    except sqlite3.OperationalError as exc:
        message = str(exc)
        if "fts5" in message or "syntax" in message or "no such column" in message:
            raise MonitorError(f"cannot search for {query!r}: {message}") from None
        raise
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:  # newest version first within each document
        snippet = " ".join(r["snippet"].split())
        groups.setdefault((r["document_id"], snippet), []).append(r)
    hits = []
    for (_, snippet), same in groups.items():
        newest, oldest = same[0], same[-1]
        hits.append(
            SearchHit(
                document_id=newest["document_id"],
                platform=newest["platform"],
                doc_type=newest["doc_type"],
                version=newest["number"],
                first_seen=newest["first_seen"],
                last_seen=newest["last_seen"],
                snippet=snippet,
                rank=min(float(r["rank"]) for r in same),
                versions=len(same),
                first_version=oldest["number"],
                since=oldest["first_seen"],
            )
        )
    # Newest first; among passages of the same day, the better match first (stable sorts).
    hits.sort(key=lambda h: (h.rank, h.document_id))
    hits.sort(key=lambda h: h.first_seen, reverse=True)
    return hits[:limit]

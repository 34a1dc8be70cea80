"""Backfill history from a folder tree: ``PLATFORM/DOC-TYPE/<date>.md|.html``.

That is the Open Terms Archive dataset layout: a file stem starts with an ISO date, optionally
followed by a time (``2024-03-14T12-31-33Z``). Files are read oldest first and each one goes
through the same store -> analyse -> diff -> alert stages as a fetch on that date
(:meth:`monitor.pipeline.Pipeline.ingest`). Importing twice adds nothing: a text identical to
the document's latest version only moves its ``last_seen``; an older date than the latest
version's is skipped (history is append-only).

Archives contain failed captures too (an error page, a heading alone, a cookie banner). The
suspect guard of a live check applies: a blocked page or an empty text is skipped; a shrink
under ``suspect.min_ratio`` is skipped unless the next file of the same document is shrunk
as well (the archive's equivalent of "the same shrunk text on consecutive fetches").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from monitor import extract
from monitor.config import slug
from monitor.errors import MonitorError
from monitor.pipeline import Pipeline
from monitor.store import iso

_STEM = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})(?:[T_ ](?P<h>\d{2})[-:](?P<m>\d{2})(?:[-:](?P<s>\d{2}))?(?:\.\d+)?Z?)?"
)


@dataclass(slots=True, frozen=True)
class HistoryFile:
    platform: str
    doc_type: str
    path: Path
    seen_at: dt.datetime

    @property
    def doc_id(self) -> str:
        return f"{slug(self.platform)}/{slug(self.doc_type)}"


@dataclass(slots=True)
class ImportResult:
    files: int = 0
    new_versions: int = 0
    unchanged: int = 0
    skipped: int = 0  # older than what the database already has, or unreadable
    suspect: int = 0  # failed captures in the archive, not versions
    alerts: int = 0
    documents: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def parse_stem(stem: str) -> dt.datetime | None:
    """``2024-03-14T12-31-33Z--legal`` -> 2024-03-14 12:31:33 UTC; None if no date."""
    m = _STEM.match(stem)
    if not m:
        return None
    try:
        day = dt.date.fromisoformat(m["date"])
    except ValueError:
        return None
    return dt.datetime(
        day.year,
        day.month,
        day.day,
        int(m["h"] or 0),
        int(m["m"] or 0),
        int(m["s"] or 0),
        tzinfo=dt.UTC,
    )


def scan(root: Path) -> list[HistoryFile]:
    """Every dated .md/.html file under ``root/PLATFORM/DOC-TYPE/``, oldest first per document."""
    if not root.is_dir():
        raise MonitorError(f"{root} is not a folder")
    files: list[HistoryFile] = []
    for path in root.glob("*/*/*"):
        if path.suffix.lower() not in {".md", ".markdown", ".html", ".htm"} or not path.is_file():
            continue
        seen_at = parse_stem(path.stem)
        if seen_at is None:
            continue
        files.append(HistoryFile(path.parent.parent.name, path.parent.name, path, seen_at))
    files.sort(key=lambda f: (f.doc_id, f.seen_at, f.path.name))
    return files


def _read(file: HistoryFile) -> extract.Extracted:
    raw = file.path.read_text(encoding="utf-8", errors="replace")
    if file.path.suffix.lower() in {".html", ".htm"}:
        return extract.extract_html(raw)
    return extract.extract_markdown(raw)


def import_tree(
    pipeline: Pipeline,
    root: Path,
    *,
    on_file: Callable[[HistoryFile], None] | None = None,
) -> ImportResult:
    """Import a history tree through ``pipeline`` (build it with ``notify=False`` unless the
    imported alerts should be e-mailed)."""
    store = pipeline.store
    result = ImportResult()
    files = scan(root)
    texts: dict[Path, extract.Extracted] = {}

    def read(f: HistoryFile) -> extract.Extracted:
        if f.path not in texts:
            texts.clear()  # only the current file and its successor are ever needed
            texts[f.path] = _read(f)
        return texts[f.path]

    for i, file in enumerate(files):
        result.files += 1
        doc_id = file.doc_id
        if doc_id not in result.documents:
            store.ensure_document(
                doc_id,
                file.platform,
                file.doc_type,
                f"file://{file.path.parent.resolve()}",
                now=file.seen_at,
            )
            result.documents.add(doc_id)
        latest = store.latest_version(doc_id)
        if latest is not None and latest.first_seen > iso(file.seen_at):
            result.skipped += 1
        else:
            try:
                extracted = read(file)
                reason = _suspect(pipeline, extracted, latest.text if latest else None)
                if (
                    reason
                    and "shrunk" in reason
                    and _shrink_persists(pipeline, files, i, extracted)
                ):
                    reason = None  # the next capture is as short: a real, shorter policy
            except (OSError, MonitorError) as exc:
                result.skipped += 1
                result.problems.append(f"{file.path}: {exc}")
            else:
                if reason:
                    result.suspect += 1
                    result.problems.append(f"{file.path}: suspect: {reason}")
                else:
                    ingest = pipeline.ingest(
                        doc_id,
                        extracted,
                        seen_at=file.seen_at,
                        source="import",
                        source_url=str(file.path),
                    )
                    if ingest.new_version:
                        result.new_versions += 1
                    else:
                        result.unchanged += 1
                    result.alerts += len(ingest.alert_ids)
        if on_file:
            on_file(file)
    return result


def _suspect(pipeline: Pipeline, extracted: extract.Extracted, previous: str | None) -> str | None:
    settings = pipeline.config.suspect
    return extract.suspect_reason(
        extracted,
        status=200,
        previous_text=previous,
        min_ratio=settings.min_ratio,
        min_chars=settings.min_chars,
    )


def _shrink_persists(
    pipeline: Pipeline, files: list[HistoryFile], i: int, shrunk: extract.Extracted
) -> bool:
    following = files[i + 1] if i + 1 < len(files) else None
    if following is None or following.doc_id != files[i].doc_id:
        return False
    nxt = _read(following)
    return _suspect(pipeline, nxt, shrunk.text) is None and len(nxt.text) < 1.5 * len(shrunk.text)


def iter_docs(files: list[HistoryFile]) -> Iterator[str]:
    seen: set[str] = set()
    for f in files:
        if f.doc_id not in seen:
            seen.add(f.doc_id)
            yield f.doc_id

"""The researcher report: ``report --format html|json|csv --out DIR``.

- ``report.json``: one entry per document (platform, doc_type, versions, first_seen,
  last_seen, first_ai_training, consent of the latest version, alerts).
- ``findings.csv``: one row per finding of every selected version, for spreadsheets and pandas.
- ``index.html``: a matrix platform x document type, a timeline per platform (inline SVG, no
  script), every document's versions with links to the diff pages written under
  ``diffs/<doc-slug>/<from>-<to>-<hash>.html`` (the hash of both versions' sha256), and the
  alerts. Self-contained and autoescaped like
  every page (:mod:`monitor.pages`).

Filters select documents (platform, document type) and versions: those in force during
``since``..``until`` (both days included), that is the versions first seen in the range plus the
one already in force on ``since`` (the starting state, ``version_at_start``). Figures are
computed over those versions, except ``first_ai_training``: the earliest disclosure in the whole
history up to ``until`` (``since`` does not move it). Alerts are those raised in the range.
Reading the database is the only I/O before writing.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.alerts import AlertRow, AlertType, list_alerts
from monitor.config import slug
from monitor.errors import MonitorError
from monitor.pages import _write, doc_slug, environment
from monitor.store import Store, iso, utcnow

if TYPE_CHECKING:
    from monitor.diff import DiffMemo

__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "DocumentReport",
    "Report",
    "VersionRow",
    "collect",
    "render_html",
    "to_json",
    "write_csv",
    "write_html",
    "write_json",
    "write_report",
]

FORMATS = ("html", "json", "csv")
CSV_COLUMNS = (
    "platform",
    "doc_type",
    "document",
    "version",
    "version_date",
    "category",
    "rule",
    "severity",
    "ai_training",
    "consent",
    "negated",
    "heading",
    "unit_text",
    "version_sha256",
    "source_url",
)

# state of a version -> (legend label, colour); the colours keep apart for red-green blindness
# by lightness as well as hue, and every mark has a <title> with the words anyway.
_STATES: dict[str, tuple[str, str]] = {
    # "none" is the weakest regime of a version's training clauses: some training it
    # discloses comes with no choice, even when an opt-out covers other data.
    "none": ("AI training without any choice", "#b3261e"),
    "opt_out": ("AI training, opt-out only", "#e08a00"),
    "opt_in": ("AI training, opt-in", "#1b7f4b"),
    "no_ai": ("no AI training disclosed", "#9aa5b1"),
    "unknown": ("not analysed", "#e4e7eb"),
}


@dataclass(slots=True, frozen=True)
class VersionRow:
    id: int
    number: int
    first_seen: str
    last_seen: str
    sha256: str
    chars: int
    ai_training: bool | None
    consent: str | None
    source_url: str | None

    @property
    def state(self) -> str:
        if self.ai_training is None:
            return "unknown"
        if not self.ai_training:
            return "no_ai"
        return self.consent if self.consent in ("none", "opt_out", "opt_in") else "none"


@dataclass(slots=True)
class DocumentReport:
    doc_id: str
    platform: str
    doc_type: str
    url: str
    versions: list[VersionRow]
    alerts: list[AlertRow] = field(default_factory=list)
    # Over the history up to the end of the range; None: compute from ``versions``.
    earliest_ai_training: str | None = None
    # The number of the version already in force when the range starts, if it is one of
    # ``versions``.
    version_at_start: int | None = None

    @property
    def latest(self) -> VersionRow:
        return self.versions[-1]

    @property
    def first_seen(self) -> str:
        return self.versions[0].first_seen

    @property
    def last_seen(self) -> str:
        return max(v.last_seen for v in self.versions)

    @property
    def first_ai_training(self) -> str | None:
        if self.earliest_ai_training is not None:
            return self.earliest_ai_training
        return next((v.first_seen for v in self.versions if v.ai_training), None)

    def to_dict(self) -> dict[str, Any]:
        def day(value: str | None) -> str | None:
            return value[:10] if value else None

        return {
            "document": self.doc_id,
            "platform": self.platform,
            "doc_type": self.doc_type,
            "versions": len(self.versions),
            "first_seen": day(self.first_seen),
            "last_seen": day(self.last_seen),
            "first_ai_training": day(self.first_ai_training),
            "version_at_start": self.version_at_start,
            "consent": self.latest.consent,
            "alerts": [
                {
                    "id": a.id,
                    "type": a.type.value,
                    "severity": a.severity,
                    "version": a.version_number,
                    "date": day(a.version_first_seen),
                    "summary": a.summary,
                    "unit_text": a.unit_text,
                }
                for a in self.alerts
            ],
        }


@dataclass(slots=True)
class Report:
    documents: list[DocumentReport]
    filters: dict[str, Any]
    generated_at: str


def _day_bound(value: str | dt.date | None, *, end: bool) -> str | None:
    if value is None:
        return None
    text = value.isoformat() if isinstance(value, dt.date) else str(value).strip()
    try:
        day = dt.date.fromisoformat(text[:10])
    except ValueError:
        raise MonitorError(f"not a date: {text!r} (use YYYY-MM-DD)") from None
    return day.isoformat() + ("T23:59:59Z" if end else "T00:00:00Z")


def _version_row(r: Mapping[str, Any]) -> VersionRow:
    return VersionRow(
        id=r["id"],
        number=r["number"],
        first_seen=r["first_seen"],
        last_seen=r["last_seen"],
        sha256=r["sha256"],
        chars=r["chars"],
        ai_training=None if r["ai_training"] is None else bool(r["ai_training"]),
        consent=r["consent"],
        source_url=r["source_url"],
    )


def collect(
    store: Store,
    *,
    platforms: Sequence[str] = (),
    doc_types: Sequence[str] = (),
    since: str | dt.date | None = None,
    until: str | dt.date | None = None,
) -> Report:
    """Read what the report shows. Platforms and document types match by name or slug
    (compared as slugs: "Meta AI" is "meta-ai")."""
    lo, hi = _day_bound(since, end=False), _day_bound(until, end=True)
    # "Meta AI", "meta ai" and "meta-ai" are one platform, as for `subscribers add`.
    wanted_p = {slug(p) for p in platforms}
    wanted_t = {slug(t) for t in doc_types}
    # Every version up to the end of the range: those before its start give the starting state
    # and the earliest disclosure of AI training.
    rows = store.query(
        "SELECT v.id, v.document_id, v.number, v.first_seen, v.last_seen, v.sha256, "
        "length(v.text) AS chars, v.ai_training, v.consent, v.source_url "
        "FROM versions v WHERE (? IS NULL OR v.first_seen <= ?) "
        "ORDER BY v.document_id, v.number",
        (hi, hi),
    )
    by_doc: dict[str, list[VersionRow]] = {}
    at_start: dict[str, VersionRow] = {}
    earliest: dict[str, str] = {}
    for r in rows:
        doc_id = r["document_id"]
        if r["ai_training"] and doc_id not in earliest:
            earliest[doc_id] = r["first_seen"]
        if lo is not None and r["first_seen"] < lo:
            at_start[doc_id] = _version_row(r)
            continue
        if doc_id in at_start and doc_id not in by_doc:
            by_doc[doc_id] = [at_start[doc_id]]
        by_doc.setdefault(doc_id, []).append(_version_row(r))
    for doc_id, in_force in at_start.items():
        by_doc.setdefault(doc_id, [in_force])  # nothing new in the range: still in force
    alerts_by_doc: dict[str, list[AlertRow]] = {}
    for alert in list_alerts(store):
        alerts_by_doc.setdefault(alert.document_id, []).append(alert)
    docs: list[DocumentReport] = []
    for d in store.documents():
        platform_slug, _, type_slug = d["id"].partition("/")
        if wanted_p and not wanted_p & {slug(d["platform"]), platform_slug}:
            continue
        if wanted_t and not wanted_t & {slug(d["doc_type"]), type_slug}:
            continue
        versions = by_doc.get(d["id"])
        if not versions:
            continue
        start = at_start.get(d["id"])
        in_range = {v.id for v in versions if start is None or v.id != start.id}
        alerts = [a for a in alerts_by_doc.get(d["id"], []) if a.version_id in in_range]
        alerts.sort(key=lambda a: (a.version_first_seen, a.id))
        docs.append(
            DocumentReport(
                d["id"],
                d["platform"],
                d["doc_type"],
                d["url"],
                versions,
                alerts,
                earliest_ai_training=earliest.get(d["id"]),
                version_at_start=start.number if start is not None else None,
            )
        )
    docs.sort(key=lambda doc: (doc.platform.casefold(), doc.doc_type.casefold()))
    filters = {
        "platform": list(platforms),
        "doc_type": list(doc_types),
        "since": lo[:10] if lo else None,
        "until": hi[:10] if hi else None,
    }
    return Report(docs, filters, iso(utcnow()))


# --- JSON and CSV ---------------------------------------------------------------------------


def to_json(report: Report) -> dict[str, Any]:
    return {
        "generated_at": report.generated_at,
        "filters": report.filters,
        "documents": [d.to_dict() for d in report.documents],
    }


def write_json(report: Report, out: Path) -> Path:
    text = json.dumps(to_json(report), ensure_ascii=False, indent=2) + "\n"
    return _write(Path(out) / "report.json", text)


def write_csv(store: Store, report: Report, out: Path) -> Path:
    """One row per finding; the csv module quotes the commas, quotes and newlines of policy
    text. UTF-8 with a BOM so that spreadsheet programs guess the encoding right."""
    path = Path(out) / "findings.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for doc in report.documents:
            versions = {v.id: v for v in doc.versions}
            marks = ", ".join("?" for _ in versions)
            rows = store.query(
                f"SELECT * FROM findings WHERE version_id IN ({marks}) ORDER BY version_id, id",
                list(versions),
            )
            for f in rows:
                v = versions[f["version_id"]]
                heading = json.loads(f["heading_path"] or "[]")
                writer.writerow(
                    [
                        doc.platform,
                        doc.doc_type,
                        doc.doc_id,
                        v.number,
                        v.first_seen,
                        f["category"],
                        f["rule_id"],
                        f["severity"],
                        bool(f["ai_training"]),
                        f["consent"],
                        bool(f["negated"]),
                        " > ".join(str(h) for h in heading),
                        f["unit_text"],
                        v.sha256,
                        v.source_url or doc.url,
                    ]
                )
    tmp.replace(path)
    return path


# --- HTML -----------------------------------------------------------------------------------


def diff_href(doc_id: str, old: VersionRow, new: VersionRow) -> str:
    """``diffs/<doc>/<from>-<to>-<hash>.html``: the hash of both texts' sha256 makes a page
    kept from an earlier run (another database, a re-import) never stand for other texts."""
    pair = hashlib.sha256(f"{old.sha256}:{new.sha256}".encode()).hexdigest()[:12]
    return f"diffs/{doc_slug(doc_id)}/{old.number}-{new.number}-{pair}.html"


def _when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _timelines(report: Report, width: int = 960) -> list[dict[str, Any]]:
    """SVG geometry of one timeline per platform, all on the same time axis so that platforms
    can be compared by eye."""
    if not report.documents:
        return []
    t0 = min(_when(d.first_seen) for d in report.documents)
    t1 = max(_when(d.last_seen) for d in report.documents)
    if report.filters.get("since"):
        # The version in force at the start began earlier: its bar starts with the range.
        t0 = max(t0, _when(report.filters["since"] + "T00:00:00Z"))
    start = t0
    t0 = dt.datetime(t0.year, 1, 1, tzinfo=dt.UTC)
    t1 = dt.datetime(t1.year + 1, 1, 1, tzinfo=dt.UTC)
    left, right, row_h, top = 190, 16, 30, 12
    span = (t1 - t0).total_seconds()

    def x(value: str | dt.datetime) -> float:
        t = max(_when(value) if isinstance(value, str) else value, start)
        return round(left + (t - t0).total_seconds() / span * (width - left - right), 1)

    ticks = [
        # the last tick closes the axis; a label there would overflow the right edge
        {
            "x": x(dt.datetime(year, 1, 1, tzinfo=dt.UTC)),
            "label": "" if year == t1.year else str(year),
        }
        for year in range(t0.year, t1.year + 1)
    ]
    out: list[dict[str, Any]] = []
    by_platform: dict[str, list[DocumentReport]] = {}
    for doc in report.documents:
        by_platform.setdefault(doc.platform, []).append(doc)
    for platform, docs in by_platform.items():
        rows = []
        for i, doc in enumerate(docs):
            y = top + i * row_h + row_h / 2
            spans, marks = [], []
            alert_versions = {a.version_number for a in doc.alerts}
            for j, v in enumerate(doc.versions):
                end = doc.versions[j + 1].first_seen if j + 1 < len(doc.versions) else v.last_seen
                label, colour = _STATES[v.state]
                spans.append(
                    {"x": x(v.first_seen), "w": max(1.0, x(end) - x(v.first_seen)), "fill": colour}
                )
                title = f"{doc.doc_type} v{v.number}, {v.first_seen[:10]}: {label}"
                if v.number in alert_versions:
                    title += " (alert)"
                marks.append(
                    {
                        "x": x(v.first_seen),
                        "fill": colour,
                        "title": title,
                        "alert": v.number in alert_versions,
                        "href": f"#{doc_slug(doc.doc_id)}-v{v.number}",
                    }
                )
            rows.append({"label": doc.doc_type, "y": y, "spans": spans, "marks": marks})
        height = top + len(docs) * row_h + 26
        out.append(
            {
                "platform": platform,
                "width": width,
                "height": height,
                "left": left,
                "axis_y": height - 22,
                "ticks": ticks,
                "rows": rows,
            }
        )
    return out


def _matrix(report: Report) -> dict[str, Any]:
    platforms = sorted({d.platform for d in report.documents}, key=str.casefold)
    types = sorted({d.doc_type for d in report.documents}, key=str.casefold)
    cells = {(d.platform, d.doc_type): d for d in report.documents}
    rows = []
    for p in platforms:
        row: list[dict[str, Any] | None] = []
        for t in types:
            doc = cells.get((p, t))
            if doc is None:
                row.append(None)
                continue
            latest = doc.latest
            row.append(
                {
                    "doc_id": doc.doc_id,
                    "anchor": doc_slug(doc.doc_id),
                    "state": latest.state,
                    "state_label": _STATES[latest.state][0],
                    "ai_training": latest.ai_training,
                    "consent": latest.consent,
                    "since": (doc.first_ai_training or "")[:10] or None,
                    "last_change": latest.first_seen[:10],
                    "versions": len(doc.versions),
                    "alerts": len(doc.alerts),
                }
            )
        rows.append({"platform": p, "cells": row})
    return {"types": types, "rows": rows}


def render_html(report: Report, *, template_dir: str | Path | None = None) -> str:
    env = environment(template_dir)
    alerts = sorted(
        (a for d in report.documents for a in d.alerts),
        key=lambda a: (a.version_first_seen, a.id),
        reverse=True,
    )
    documents = []
    for doc in report.documents:
        versions = []
        previous = None
        for v in doc.versions:
            versions.append(
                {
                    "v": v,
                    "state_label": _STATES[v.state][0],
                    "diff_href": diff_href(doc.doc_id, previous, v) if previous else None,
                    "alerts": [a for a in doc.alerts if a.version_id == v.id],
                }
            )
            previous = v
        documents.append({"doc": doc, "anchor": doc_slug(doc.doc_id), "versions": versions})
    filters = [
        f"{k}: {', '.join(v) if isinstance(v, list) else v}" for k, v in report.filters.items() if v
    ]
    return env.get_template("report.html").render(
        title="AI training in privacy policies: report",
        generated_at=report.generated_at,
        report=report,
        filters=filters,
        matrix=_matrix(report),
        timelines=_timelines(report),
        legend=[{"state": k, "label": lab, "colour": c} for k, (lab, c) in _STATES.items()],
        documents=documents,
        alerts=alerts,
        alert_anchor=lambda a: f"{doc_slug(a.document_id)}-v{a.version_number}",
        type_label=lambda t: AlertType(t).label,
        version_count=sum(len(d.versions) for d in report.documents),
    )


def _diff_pages(report: Report) -> list[tuple[DocumentReport, VersionRow, VersionRow]]:
    """Every successive pair of selected versions."""
    pairs = []
    for doc in report.documents:
        for a, b in zip(doc.versions, doc.versions[1:], strict=False):
            pairs.append((doc, a, b))
    return pairs


# platform, doc_type, url, old id, new id, page (relative to out)
_Pair = tuple[str, str, str, int, int, str]


def _render_pair(store: Store, out: Path, item: _Pair, memo: DiffMemo | None = None) -> None:
    from monitor.diff import diff_units, split_units
    from monitor.diff import render_html as render_diff

    platform, doc_type, url, old_id, new_id, href = item
    old, new = store.version_by_id(old_id), store.version_by_id(new_id)
    page = render_diff(
        diff_units(split_units(old.text, memo), split_units(new.text, memo), memo=memo),
        title=f"{platform} {doc_type}: version {old.number} -> {new.number}",
        old_label=f"version {old.number} ({old.first_seen[:10]})",
        new_label=f"version {new.number} ({new.first_seen[:10]})",
        source_url=url,
    )
    _write(out / href, page)


def _render_pairs(db: str, items: Sequence[_Pair], out: str) -> int:
    """Body of a worker process: its own connection, a chunk of pages."""
    from monitor.diff import DiffMemo

    # Successive pages of a document share a version and most of its blocks: one memo.
    memo = DiffMemo()
    with Store(db) as store:
        for item in items:
            _render_pair(store, Path(out), item, memo)
    return len(items)


def write_html(
    store: Store,
    report: Report,
    out: Path,
    *,
    template_dir: str | Path | None = None,
    workers: int = 2,
    on_page: Callable[[int], None] | None = None,
) -> Path:
    """``index.html`` and one diff page per pair of successive selected versions. A diff page
    that exists already is kept: versions are append-only, so its content cannot change.
    Diffing and rendering the missing pages runs in ``workers`` processes."""
    out = Path(out)
    pending: list[_Pair] = []
    for doc, a, b in _diff_pages(report):
        href = diff_href(doc.doc_id, a, b)
        if (out / href).exists():
            if on_page:
                on_page(1)
            continue
        pending.append((doc.platform, doc.doc_type, doc.url, a.id, b.id, href))
    db = str(store.path)
    if workers > 1 and len(pending) > 1 and db != ":memory:":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        size = max(1, min(8, len(pending) // (4 * workers)))  # small chunks balance better
        chunks = [pending[i : i + size] for i in range(0, len(pending), size)]
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [pool.submit(_render_pairs, db, chunk, str(out)) for chunk in chunks]
            for future in as_completed(futures):
                done = future.result()
                if on_page:
                    on_page(done)
    else:
        from monitor.diff import DiffMemo

        memo = DiffMemo()
        for item in pending:
            _render_pair(store, out, item, memo)
            if on_page:
                on_page(1)
    return _write(out / "index.html", render_html(report, template_dir=template_dir))


def diff_page_count(report: Report) -> int:
    return sum(max(0, len(d.versions) - 1) for d in report.documents)


def write_report(
    store: Store,
    out: Path,
    *,
    formats: Sequence[str] = FORMATS,
    platforms: Sequence[str] = (),
    doc_types: Sequence[str] = (),
    since: str | dt.date | None = None,
    until: str | dt.date | None = None,
    workers: int = 2,
    on_start: Callable[[int], None] | None = None,
    on_page: Callable[[int], None] | None = None,
) -> dict[str, Path]:
    """Collect once and write each format; returns format -> path written. ``on_start``
    gets the number of diff pages the HTML report links to, ``on_page`` a count of pages
    done (written or kept) as they are (for a progress bar)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise MonitorError(
            f"unknown report format {unknown[0]!r} (choose from {', '.join(FORMATS)})"
        )
    report = collect(store, platforms=platforms, doc_types=doc_types, since=since, until=until)
    if on_start:
        on_start(diff_page_count(report) if "html" in formats else 0)
    written: dict[str, Path] = {}
    for fmt in formats:
        if fmt == "json":
            written[fmt] = write_json(report, out)
        elif fmt == "csv":
            written[fmt] = write_csv(store, report, out)
        else:
            written[fmt] = write_html(store, report, out, workers=workers, on_page=on_page)
    return written

"""Alert pages, the alerts index and the Atom feed, written under ``reports_dir``.

Layout::

    reports_dir/alerts/<id>.html          one page per alert
    reports_dir/alerts/index.html         every alert, newest first
    reports_dir/alerts.atom               Atom 1.0 feed of the alerts
    reports_dir/versions/<doc>/<n>.html   the texts an alert page links to

Policy text is untrusted. Templates are autoescaped and never mark policy text safe: the
highlighted clause is a list of :class:`Segment` values that the template escapes one by one.
The pages are self-contained (inline CSS, no script, no external resource) and carry a
Content-Security-Policy that would block anything that slipped through.

Templates can be overridden: pass ``template_dir`` and a file there (``alert.html``,
``alerts_index.html``, ``_base.html``) is used before the built-in one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    select_autoescape,
)
from markupsafe import escape

from monitor.alerts import AlertRow, AlertType, list_alerts, normalise, opt_in_wording, similarity
from monitor.diff import diff_texts, diff_to_json, diff_view
from monitor.models import Consent, DiffResult, Span, UnitChange
from monitor.store import Store, iso, utcnow

__all__ = [
    "Segment",
    "alert_href",
    "doc_slug",
    "environment",
    "feed_entry_id",
    "highlight",
    "render_alert_page",
    "render_feed",
    "render_index",
    "render_version_page",
    "write_alert_pages",
]

ATOM_NS = "http://www.w3.org/2005/Atom"
# Entry and feed ids are name-based UUIDs under this namespace, so they are the same every
# time the feed is regenerated (uuid5 of a fixed name).
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://policy-monitor.invalid/alerts")
FEED_LIMIT = 200

_CONSENT_LABEL = {
    Consent.NONE.value: "None: no opt-in and no way to opt out",
    Consent.OPT_OUT.value: "Opt-out: training by default, users can only object or switch it off",
    Consent.OPT_IN.value: "Opt-in: training only with a prior affirmative choice",
    Consent.NA.value: "Not applicable: no AI training disclosed",
}
_ROLE_LABEL = {
    "purpose": "training purpose",
    "object": "AI / model",
    "data": "data concerned",
    "negation": "negation",
    "opt_in": "opt-in wording",
    "opt_out": "opt-out wording",
    "none": "bundled consent",
    "term": "matched term",
}

# XML 1.0 forbids most C0 controls even when escaped; policy text can carry them.
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def environment(template_dir: str | Path | None = None) -> Environment:
    """The jinja2 environment for pages: built-in templates, ``template_dir`` searched first."""
    loaders: list[BaseLoader] = []
    if template_dir is not None:
        loaders.append(FileSystemLoader(str(template_dir)))
    loaders.append(PackageLoader("monitor", "templates"))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["day"] = _day
    return env


def _day(value: str | None) -> str:
    return (value or "")[:10]


# --------------------------------------------------------------------------------------------
# Highlighting
# --------------------------------------------------------------------------------------------


class Segment(NamedTuple):
    """A piece of a quoted clause: plain text, or a matched term to put in ``<mark>``."""

    text: str
    mark: bool
    roles: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return ", ".join(_ROLE_LABEL.get(r, r) for r in self.roles)

    @property
    def css(self) -> str:
        return " ".join(f"role-{re.sub(r'[^a-z_]', '', r)}" for r in self.roles)


def _span_fields(span: Span | Mapping[str, Any]) -> tuple[int, int, str, str]:
    if isinstance(span, Span):
        return span.start, span.end, span.role, span.text
    return (
        int(span.get("start", 0)),
        int(span.get("end", 0)),
        str(span.get("role", "term")),
        str(span.get("text") or ""),
    )


def highlight(text: str, spans: Iterable[Span | Mapping[str, Any]]) -> list[Segment]:
    """Split ``text`` into plain and marked segments from the finding's spans.

    Offsets that do not point at the span's own text (an analyser bug, a text that was
    normalised afterwards) are re-found by searching the span text; spans that cannot be
    placed are dropped rather than marking the wrong words. Overlapping spans merge.
    """
    placed: list[tuple[int, int, str]] = []
    for span in spans:
        start, end, role, span_text = _span_fields(span)
        if not (0 <= start < end <= len(text)) or (span_text and text[start:end] != span_text):
            if not span_text:
                continue
            found = text.find(span_text)
            if found < 0:
                found = text.casefold().find(span_text.casefold())
            if found < 0:
                continue
            start, end = found, found + len(span_text)
        placed.append((start, end, role))
    placed.sort()
    merged: list[tuple[int, int, list[str]]] = []
    for start, end, role in placed:
        if merged and start <= merged[-1][1]:
            last = merged[-1]
            roles = last[2] if role in last[2] else [*last[2], role]
            merged[-1] = (last[0], max(last[1], end), roles)
        else:
            merged.append((start, end, [role]))
    out: list[Segment] = []
    pos = 0
    for start, end, roles in merged:
        if start > pos:
            out.append(Segment(text[pos:start], False))
        out.append(Segment(text[start:end], True, tuple(roles)))
        pos = end
    if pos < len(text):
        out.append(Segment(text[pos:], False))
    return out


# --------------------------------------------------------------------------------------------
# Alert page
# --------------------------------------------------------------------------------------------


def doc_slug(doc_id: str) -> str:
    """A file-name-safe folder name for a document id (``x/privacy-policy`` ->
    ``x--privacy-policy``): no dots, so never a path traversal."""
    return re.sub(r"[^a-z0-9_-]+", "-", doc_id.lower().replace("/", "--")).strip("-") or "doc"


def alert_href(alert_id: int) -> str:
    return f"alerts/{alert_id}.html"


def _version_href(doc_id: str, number: int | None) -> str | None:
    return None if number is None else f"versions/{doc_slug(doc_id)}/{number}.html"


def _safe_url(url: str | None) -> str | None:
    # Only web links become hrefs: a "javascript:" URL from a config must not be clickable.
    if url and re.match(r"(?i)https?://[^\s]+$", url.strip()):
        return url.strip()
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clause_view(clause: Mapping[str, Any]) -> dict[str, Any]:
    text = str(clause.get("unit_text") or "")
    consent = str(clause.get("consent") or "n/a")
    return {
        "segments": highlight(text, clause.get("spans") or []),
        "heading": " › ".join(str(h).lstrip("# ") for h in clause.get("heading_path") or []),
        "consent": consent,
        "consent_label": _CONSENT_LABEL.get(consent, consent),
        "consent_cues": [str(c) for c in clause.get("consent_cues") or []],
        "rule_ids": [str(r) for r in clause.get("rule_ids") or []],
        "negated": bool(clause.get("negated")),
    }


def _locate(changes: Sequence[UnitChange], clause: str, *, old_side: bool) -> int | None:
    """Index of the diff unit that holds (most of) an analysed clause."""
    target = normalise(clause)
    if not target:
        return None
    best, score = None, 0.0
    for k, c in enumerate(changes):
        text = c.old_text if old_side else c.new_text
        if not text:
            continue
        cand = normalise(text)
        if not cand:
            continue
        s = (
            1.0
            if target in cand or (len(cand) > 20 and cand in target)
            else similarity(target, cand)
        )
        if s > score:
            best, score = k, s
    return best if score >= 0.5 else None


def _diff_in_context(
    old_text: str | None,
    new_text: str | None,
    clauses: Sequence[str],
    *,
    old_side: bool,
    window: int = 3,
) -> dict[str, Any] | None:
    """The changed units around the alerted clause(s), as ``diff_view`` data."""
    if old_text is None or new_text is None:
        return None
    result = diff_texts(old_text, new_text)
    keep: set[int] = set()
    for clause in clauses[:5]:
        k = _locate(result.changes, clause, old_side=old_side)
        if k is not None:
            keep.update(range(max(0, k - window), min(len(result.changes), k + window + 1)))
    if not keep:
        return None
    picked = [result.changes[k] for k in sorted(keep)]
    view = diff_view(DiffResult(picked), context=1)
    # The counts describe the whole change, not the excerpt.
    view["summary"] = diff_to_json(result)["summary"]
    return view


def render_alert_page(
    alert: AlertRow,
    *,
    old_text: str | None,
    new_text: str | None,
    root: str = "../",
    env: Environment | None = None,
    template_dir: str | Path | None = None,
    generated_at: str | None = None,
) -> str:
    """The HTML page of one alert. ``root`` is the relative path from the page to
    ``reports_dir`` (links to the versions, the index and the feed go through it)."""
    env = env or environment(template_dir)
    ev = alert.evidence
    clauses = [_clause_view(c) for c in ev.get("clauses") or [] if isinstance(c, Mapping)]
    old_clauses = [_clause_view(c) for c in ev.get("old_clauses") or [] if isinstance(c, Mapping)]
    # Which side of the diff the alert is about: what appeared, or what went away.
    removal = alert.type in (AlertType.NEGATION_REMOVED, AlertType.AI_TRAINING_REMOVED)
    located = [
        str(c.get("unit_text") or "")
        for c in (ev.get("old_clauses") if removal else ev.get("clauses")) or []
        if isinstance(c, Mapping)
    ]
    diff = _diff_in_context(old_text, new_text, located, old_side=removal)
    consent = ev.get("consent")
    lang = str(ev.get("lang") or "en")
    looked_for = [str(w) for w in ev.get("opt_in_looked_for") or opt_in_wording(lang)]
    prev_no = alert.prev_version_number
    template = env.get_template("alert.html")
    return template.render(
        alert=alert,
        type_label=AlertType(alert.type).label,
        title=_one_line(f"{alert.platform} {alert.doc_type}: {AlertType(alert.type).label}"),
        summary=_one_line(alert.summary),
        clauses=clauses,
        old_clauses=old_clauses,
        removal=removal,
        consent=consent,
        consent_label=_CONSENT_LABEL.get(str(consent)) if consent else None,
        previous_consent=ev.get("previous_consent"),
        previous_consent_label=_CONSENT_LABEL.get(str(ev.get("previous_consent"))),
        consent_cues=[str(c) for c in ev.get("consent_cues") or []],
        opt_in_found=bool(ev.get("opt_in_found")),
        looked_for=looked_for,
        rule_ids=[str(r) for r in ev.get("rule_ids") or []],
        replaces_denial=ev.get("replaces_denial"),
        diff=diff,
        version_href=root + (_version_href(alert.document_id, alert.version_number) or ""),
        prev_version_href=root + v if (v := _version_href(alert.document_id, prev_no)) else None,
        source_url=_safe_url(alert.url),
        raw_source_url=alert.url,
        index_href=root + "alerts/index.html",
        feed_href=root + "alerts.atom",
        generated_at=generated_at or iso(utcnow()),
        role_labels=_ROLE_LABEL,
    )


def render_index(
    alerts: Sequence[AlertRow],
    *,
    root: str = "../",
    env: Environment | None = None,
    template_dir: str | Path | None = None,
    generated_at: str | None = None,
) -> str:
    """The index of alerts, in the order given (newest first from :func:`list_alerts`)."""
    env = env or environment(template_dir)
    rows = [
        {
            "alert": a,
            "type_label": AlertType(a.type).label,
            "summary": _one_line(a.summary),
            "href": f"{a.id}.html",
        }
        for a in alerts
    ]
    counts: dict[str, int] = {}
    for a in alerts:
        counts[a.severity] = counts.get(a.severity, 0) + 1
    return env.get_template("alerts_index.html").render(
        rows=rows,
        counts=counts,
        title="Alerts",
        index_href="index.html",
        feed_href=root + "alerts.atom",
        generated_at=generated_at or iso(utcnow()),
    )


_VERSION_TEMPLATE = """{% extends "_base.html" %}
{% block title %}{{ title }}{% endblock %}
{% block content %}
<nav class="crumbs"><a href="{{ index_href }}">All alerts</a></nav>
<h1>{{ platform }} · {{ doc_type }}</h1>
<p class="meta">Version {{ number }}, first seen <time datetime="{{ first_seen }}">{{ first_seen|day }}</time>
{% if source_url %} · <a href="{{ source_url }}" rel="noopener noreferrer">source</a>{% endif %}</p>
<div class="policy-text">{{ text }}</div>
{% endblock %}
"""


def render_version_page(
    *,
    platform: str,
    doc_type: str,
    number: int,
    first_seen: str,
    text: str,
    source_url: str | None,
    root: str = "../../",
    env: Environment | None = None,
    template_dir: str | Path | None = None,
) -> str:
    """A stored version's text as an escaped, readable page."""
    env = env or environment(template_dir)
    return env.from_string(_VERSION_TEMPLATE).render(
        title=_one_line(f"{platform} {doc_type}, version {number}"),
        platform=platform,
        doc_type=doc_type,
        number=number,
        first_seen=first_seen,
        text=text,
        source_url=_safe_url(source_url),
        index_href=root + "alerts/index.html",
    )


# --------------------------------------------------------------------------------------------
# Atom feed
# --------------------------------------------------------------------------------------------


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("", text)


def feed_entry_id(alert: AlertRow) -> str:
    """A stable Atom id: the same alert gets the same id in every regeneration."""
    key_hash = hashlib.sha256(alert.clause_key.encode("utf-8")).hexdigest()[:16]
    name = f"alert:{alert.id}:{alert.document_id}:{key_hash}"
    return f"urn:uuid:{uuid.uuid5(_ID_NAMESPACE, name)}"


def _join(base_url: str | None, path: str) -> str:
    if not base_url:
        return path
    return base_url.rstrip("/") + "/" + path


def _entry_html(alert: AlertRow, page: str) -> str:
    clause = alert.unit_text or ""
    consent = alert.evidence.get("consent")
    parts = [f"<p>{escape(_one_line(alert.summary))}</p>"]
    if clause:
        parts.append(f"<blockquote>{escape(clause)}</blockquote>")
    if consent:
        parts.append(f"<p>Consent: {escape(_CONSENT_LABEL.get(str(consent), str(consent)))}</p>")
    parts.append(f'<p><a href="{escape(page)}">Alert page</a></p>')
    return "\n".join(parts)


def render_feed(
    alerts: Sequence[AlertRow],
    *,
    base_url: str | None,
    updated: str | dt.datetime | None = None,
    title: str = "policy-monitor alerts",
) -> str:
    """Atom 1.0 feed of ``alerts`` (give them newest first). Links are absolute under
    ``base_url`` when it is set, relative to the feed file otherwise."""
    ET.register_namespace("", ATOM_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            el.text = _xml_text(text)
        return el

    if isinstance(updated, dt.datetime):
        updated_s = iso(updated)
    else:
        updated_s = updated or (max(a.created_at for a in alerts) if alerts else iso(utcnow()))

    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    sub(feed, "id", f"urn:uuid:{uuid.uuid5(_ID_NAMESPACE, 'feed:' + (base_url or ''))}")
    sub(feed, "title", _one_line(title))
    sub(feed, "subtitle", "AI-training language without opt-in in platform privacy policies")
    sub(feed, "updated", updated_s)
    author = sub(feed, "author")
    sub(author, "name", "policy-monitor")
    if base_url:
        # A self link is the feed's own address: without base_url there is none to give (a
        # relative one would be resolved against wherever a reader found the file).
        sub(
            feed,
            "link",
            rel="self",
            type="application/atom+xml",
            href=_join(base_url, "alerts.atom"),
        )
    sub(feed, "link", rel="alternate", type="text/html", href=_join(base_url, "alerts/index.html"))
    sub(feed, "generator", "policy-monitor")
    for a in alerts:
        page = _join(base_url, alert_href(a.id))
        entry = sub(feed, "entry")
        sub(entry, "id", feed_entry_id(a))
        label = AlertType(a.type).label
        sub(entry, "title", _one_line(f"[{a.severity.upper()}] {a.platform} {a.doc_type}: {label}"))
        sub(entry, "updated", a.created_at)
        sub(entry, "published", a.created_at)
        sub(entry, "link", rel="alternate", type="text/html", href=page)
        sub(entry, "category", term=a.type.value, label=label)
        sub(entry, "category", term=f"severity:{a.severity}", label=f"severity {a.severity}")
        sub(entry, "summary", _one_line(a.summary), type="text")
        sub(entry, "content", _entry_html(a, page), type="html")
    ET.indent(feed)
    body = ET.tostring(feed, encoding="unicode", xml_declaration=False)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n"


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    # Replace atomically: a web server publishing reports_dir never serves half a page.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_alert_pages(
    store: Store,
    reports_dir: Path,
    *,
    alert_ids: Iterable[int] | None = None,
    base_url: str | None = None,
    template_dir: str | Path | None = None,
) -> list[Path]:
    """Write the pages of ``alert_ids`` (all alerts when None) and every alert page that is
    missing, the versions they link to, the index and the feed. Returns the paths written.

    The index and the feed list every alert, so any alert without a page gets one: an
    imported history, a check that stopped before publishing, a new ``reports_dir``."""
    reports_dir = Path(reports_dir)
    env = environment(template_dir)
    now = iso(utcnow())
    every = list_alerts(store)
    wanted = set(alert_ids) if alert_ids is not None else None
    written: list[Path] = []
    versions_done: set[int] = set()
    for alert in every:
        page_path = reports_dir / alert_href(alert.id)
        if wanted is not None and alert.id not in wanted and page_path.exists():
            continue
        new = store.version_by_id(alert.version_id)
        old = store.version_by_id(alert.prev_version_id) if alert.prev_version_id else None
        html = render_alert_page(
            alert, old_text=old.text if old else None, new_text=new.text, env=env, generated_at=now
        )
        written.append(_write(page_path, html))
        for v in (new, old):
            if v is None or v.id in versions_done:
                continue
            versions_done.add(v.id)
            href = _version_href(alert.document_id, v.number)
            assert href is not None
            page = render_version_page(
                platform=alert.platform,
                doc_type=alert.doc_type,
                number=v.number,
                first_seen=v.first_seen,
                text=v.text,
                source_url=v.source_url or alert.url,
                env=env,
            )
            written.append(_write(reports_dir / href, page))
    written.append(
        _write(
            reports_dir / "alerts" / "index.html", render_index(every, env=env, generated_at=now)
        )
    )
    written.append(
        _write(reports_dir / "alerts.atom", render_feed(every[:FEED_LIMIT], base_url=base_url))
    )
    return written

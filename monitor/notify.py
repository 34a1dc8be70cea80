"""Subscribers, e-mail composition, the outbox and SMTP delivery.

Subscribers
    A subscriber is an e-mail address with filters: platforms (empty = all, matched by platform
    name or slug, case-insensitively), a minimum severity (info < low < medium < high) and a
    digest mode (``none``: one e-mail per alert; ``daily``: one digest e-mail listing every
    matching alert since the previous digest). Re-adding an address updates its filters and
    keeps its unsubscribe token. Removing it cancels its pending e-mails.

Outbox semantics
    * Every e-mail is a ``deliveries`` row (status ``pending``) before any attempt to send it.
      The message is composed when it is enqueued: subject, text and HTML bodies and headers
      are stored in the row, so a later send depends neither on the templates nor on the alert.
      Only ``From`` (the configured sender) and ``Date`` are added at send time (and the
      ``mailto:`` unsubscribe address for rows queued before it was stored with them).
    * One alert is enqueued at most once per subscriber: the row's ``Message-ID`` is derived
      from the alert id, the subscriber id and the subscriber's token, and is UNIQUE. A digest's
      is derived from the newest alert it lists, a health e-mail's from its key.
    * :func:`deliver_pending` sends the rows that are due, over one SMTP connection (reconnected
      when it drops). For each row: mark ``sending`` (committed), hand the message to the
      server, mark ``sent`` (committed).
    * A failure of the *server* (connection refused, timeout, a 4xx or 5xx greeting, TLS or
      login failure, a refused sender, a 421 reply) costs no message anything: the rows stay
      ``pending`` as they were (``last_error`` says why) and the whole outbox backs off.
      The ``smtp_state`` row remembers the outage across runs; runs before its ``retry_at``
      (``backoff * 2^(failures-1)``, at most ``smtp.max_backoff``) return without connecting,
      unless forced (``notify``). The first run that gets a session clears it.
    * A failure of *one message*: a 5xx refusal of its recipient or of its data fails the row
      at once; a 4xx puts it back to ``pending`` with its own backoff (same formula, by its
      ``attempts``). A connection dropped before DATA sends nothing: the row waits for the next
      run. A row is also ``failed`` when a delivery fails while it has waited more than
      ``smtp.give_up_after`` (default 3 days) since it was queued. Failed rows are kept and
      visible; :func:`retry_failed` queues them again (with a new give-up clock).
    * At most once, never silently lost. The one ambiguous moment is after the message data
      was handed over and before the row is marked ``sent``: the server may have accepted it.
      A row found in ``sending`` by the next run (the process died there), or whose DATA
      exchange broke off, is marked ``unknown``. It is NOT resent automatically: it is logged
      at WARNING and counted in :class:`DeliveryReport` on every run until the operator
      decides, with :func:`resend_unknown` (queue it again; the Message-ID is the same, so
      most mail systems drop a duplicate) or :func:`mark_unknown_sent` (it did arrive).
    * Only one process delivers at a time: :func:`deliver_pending` holds an exclusive lock
      file next to the database (released by the OS if the process dies), so a row in
      ``sending`` seen by the lock holder always belongs to a run that died. A second caller
      returns at once with ``DeliveryReport.busy`` set.

Statuses: ``pending``, ``sending``, ``sent``, ``failed``, ``unknown``, ``cancelled``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import secrets
import smtplib
import ssl
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import css_inline
import jinja2

from monitor.alerts import EMAILABLE_ORIGINS
from monitor.config import SmtpSettings, slug
from monitor.errors import ConfigError, NotFound, StoreError
from monitor.store import Store, iso, utcnow

__all__ = [
    "DIGEST_MODES",
    "SEVERITIES",
    "DeliveryReport",
    "Subscriber",
    "add_subscriber",
    "deliver_pending",
    "enqueue_alert",
    "enqueue_digests",
    "enqueue_health",
    "list_subscribers",
    "mark_unknown_sent",
    "outbox_counts",
    "remove_subscriber",
    "render_message",
    "resend_unknown",
    "retry_failed",
    "unsubscribe_address",
]

log = logging.getLogger(__name__)

SEVERITIES = ("info", "low", "medium", "high")  # weakest first
DIGEST_MODES = ("none", "daily")

# Seconds to sleep in the process after SMTP accepted a message and before the row is marked
# sent; only the crash test sets it, to kill the process in exactly that window.
PAUSE_ENV = "POLICY_MONITOR_TEST_PAUSE_AFTER_SEND"

_TEMPLATES = Path(__file__).resolve().parent / "templates"
_MSGID_DOMAIN = "policy-monitor.local"
# Headers stored raw (List-Unsubscribe) are written as given: the default refolding would turn
# a URI longer than a line into RFC 2047 encoded words, which mail clients do not decode there.
_POLICY = email_policy.SMTP.clone(refold_source="none")
_RECONNECT_PAUSE = 1.0  # seconds before reconnecting after the server dropped the connection
_DIGEST_MIN_GAP = dt.timedelta(hours=20)  # "daily" tolerates a jittered daily schedule
_MAX_SUBJECT = 180
_MAX_ERROR = 500

_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOMAIN_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

_HEADLINES = {
    "ai_training_added": "AI training added without opt-in",
    "consent_downgraded": "consent for AI training downgraded",
    "negation_removed": "a 'no AI training' statement was removed",
    "ai_training_removed": "AI training language removed",
    "baseline": "already says data trains AI, without opt-in",
}
# Alerts about training that lacks an opt-in: only they say which opt-in wording was missing.
_ASKS_FOR_OPT_IN = frozenset({"ai_training_added", "consent_downgraded", "baseline"})
_CONSENT_LABELS = {
    "none": "none: no opt-in and no way to object is mentioned",
    "opt_out": "opt-out: used unless you object",
    "opt_in": "opt-in: only with your consent",
    "n/a": "not applicable",
}


# --- subscribers ---------------------------------------------------------------------------


@dataclass(slots=True)
class Subscriber:
    id: int
    email: str
    platforms: list[str]  # platform slugs; empty = every platform
    min_severity: str
    digest: str
    token: str
    created_at: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Subscriber:
        return cls(
            id=row["id"],
            email=row["email"],
            platforms=list(json.loads(row["platforms"])),
            min_severity=row["min_severity"],
            digest=row["digest"],
            token=row["token"],
            created_at=row["created_at"],
        )

    def wants(self, platform: str, severity: str) -> bool:
        """Whether an alert about ``platform`` at ``severity`` passes this subscriber's filters."""
        if self.platforms and slug(platform) not in self.platforms:
            return False
        return _severity_rank(severity) >= _severity_rank(self.min_severity)


def add_subscriber(
    store: Store,
    email: str,
    *,
    platforms: Iterable[str] = (),
    min_severity: str = "medium",
    digest: str = "none",
    now: dt.datetime | None = None,
) -> Subscriber:
    """Add a subscriber, or update the filters of an existing one (same address, any case).

    Raises :class:`ConfigError` for an unusable address, severity or digest mode.
    """
    address = _normalise_email(email)
    if min_severity not in SEVERITIES:
        raise ConfigError(
            f"unknown severity {min_severity!r} (use one of {', '.join(SEVERITIES)})",
            key="min_severity",
        )
    if digest not in DIGEST_MODES:
        raise ConfigError(
            f"unknown digest mode {digest!r} (use one of {', '.join(DIGEST_MODES)})", key="digest"
        )
    slugs: list[str] = []
    for name in platforms:
        s = slug(name)
        if not s:
            raise ConfigError(f"not a platform name: {name!r}", key="platform")
        if s not in slugs:
            slugs.append(s)
    with store.transaction():
        existing = _find_subscriber(store, address)
        if existing is not None:
            store.conn.execute(
                "UPDATE subscribers SET platforms = ?, min_severity = ?, digest = ? WHERE id = ?",
                (json.dumps(slugs), min_severity, digest, existing.id),
            )
            sid = existing.id
        else:
            sid = store.insert(
                "subscribers",
                {
                    "email": address,
                    "platforms": json.dumps(slugs),
                    "min_severity": min_severity,
                    "digest": digest,
                    "token": secrets.token_urlsafe(24),
                    "created_at": iso(now or utcnow()),
                },
            )
    row = store.query_one("SELECT * FROM subscribers WHERE id = ?", (sid,))
    assert row is not None
    return Subscriber.from_row(row)


def list_subscribers(store: Store) -> list[Subscriber]:
    return [Subscriber.from_row(r) for r in store.query("SELECT * FROM subscribers ORDER BY email")]


def remove_subscriber(store: Store, email_or_token: str) -> bool:
    """Remove a subscriber found by address (any case) or token; False when there is none.

    Their pending e-mails are cancelled; sent ones stay in the outbox as a record.
    """
    key = email_or_token.strip()
    with store.transaction():
        row = store.query_one(
            "SELECT * FROM subscribers WHERE lower(email) = lower(?) OR token = ?", (key, key)
        )
        if row is None:
            return False
        sid = row["id"]
        store.conn.execute(
            "UPDATE deliveries SET status = 'cancelled', last_error = 'unsubscribed' "
            "WHERE subscriber_id = ? AND status = 'pending'",
            (sid,),
        )
        store.conn.execute(
            "UPDATE deliveries SET subscriber_id = NULL WHERE subscriber_id = ?", (sid,)
        )
        store.conn.execute("DELETE FROM subscribers WHERE id = ?", (sid,))
    return True


def _find_subscriber(store: Store, email: str) -> Subscriber | None:
    row = store.query_one("SELECT * FROM subscribers WHERE lower(email) = lower(?)", (email,))
    return Subscriber.from_row(row) if row else None


def _normalise_email(email: str) -> str:
    """A plain ``local@domain`` address, domain lower-cased and IDNA-encoded, or ConfigError."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{email!r} is not a usable e-mail address: {why}", key="email")

    address = email.strip()
    if any(unicodedata.category(ch)[0] in "CZ" and ch != " " for ch in address) or " " in address:
        raise bad("it contains spaces or control characters")
    if address.count("@") != 1:
        raise bad("it needs exactly one @")
    local, domain = address.split("@")
    if not local or len(local) > 64 or not _LOCAL_PART.match(local):
        raise bad("the part before @ has characters that need quoting or non-ASCII letters")
    try:
        ascii_domain = domain.lower().encode("idna").decode("ascii")
    except UnicodeError:
        raise bad("the domain is not a valid host name") from None
    labels = ascii_domain.split(".")
    if (
        len(labels) < 2
        or len(ascii_domain) > 253
        or not all(_DOMAIN_LABEL.match(x) for x in labels)
    ):
        raise bad("the domain is not a valid host name with a dot")
    return f"{local}@{ascii_domain}"


def _severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES) - 1


# --- enqueueing ----------------------------------------------------------------------------


def enqueue_alert(
    store: Store,
    alert_id: int,
    *,
    base_url: str | None = None,
    smtp: SmtpSettings | None = None,
    now: dt.datetime | None = None,
) -> list[int]:
    """Queue one e-mail per matching subscriber (``digest == "none"``) for an alert.

    Returns the ids of the rows created; an alert already queued for a subscriber is skipped,
    so calling this twice queues nothing more. Daily-digest subscribers get it in their digest.
    An alert from imported history (origin ``import``) is never e-mailed: nothing is queued.
    """
    alert = _load_alerts(store, "a.id = ?", (alert_id,))
    if not alert:
        raise NotFound(f"no alert with id {alert_id}")
    if alert[0].get("origin", "check") not in EMAILABLE_ORIGINS:
        return []
    view = _alert_view(alert[0], base_url=base_url)
    env = _environment()
    created: list[int] = []
    with store.transaction():
        for sub in list_subscribers(store):
            if sub.digest != "none" or not sub.wants(view["platform"], view["severity"]):
                continue
            context = {"alert": view, **_subscriber_context(sub, smtp)}
            row_id = _insert_delivery(
                store,
                kind="alert",
                alert_id=alert_id,
                subscriber=sub,
                subject=_alert_subject(view),
                body_text=env.get_template("email_alert.txt").render(context),
                body_html=_inline_css(env.get_template("email_alert.html").render(context)),
                headers=_list_headers(sub, smtp) | {"X-Policy-Monitor-Alert": str(alert_id)},
                message_id=_message_id(f"alert{alert_id}.s{sub.id}", sub.token),
                now=now,
            )
            if row_id is not None:
                created.append(row_id)
    return created


def enqueue_digests(
    store: Store,
    *,
    now: dt.datetime | None = None,
    base_url: str | None = None,
    smtp: SmtpSettings | None = None,
) -> list[int]:
    """Queue a digest for each daily subscriber with matching alerts since their last digest.

    A subscriber's first digest covers the alerts raised since they subscribed. At most one
    digest per subscriber per 20 hours, so it is safe to call after every check. Returns the
    ids of the rows created (none when there is nothing new).
    """
    current = now or utcnow()
    env = _environment()
    created: list[int] = []
    with store.transaction():
        for sub in list_subscribers(store):
            if sub.digest != "daily":
                continue
            last = store.query_one(
                "SELECT max(alert_id) AS alert_id, max(created_at) AS at FROM deliveries "
                "WHERE kind = 'digest' AND subscriber_id = ?",
                (sub.id,),
            )
            if last and last["at"] and _parse_iso(last["at"]) > current - _DIGEST_MIN_GAP:
                continue
            # Imported history (origin "import") is not news: never in a digest.
            emailable = f"a.origin IN ({', '.join('?' for _ in EMAILABLE_ORIGINS)})"
            if last and last["alert_id"] is not None:
                rows = _load_alerts(
                    store, f"a.id > ? AND {emailable}", (last["alert_id"], *EMAILABLE_ORIGINS)
                )
            else:
                rows = _load_alerts(
                    store,
                    f"a.created_at >= ? AND {emailable}",
                    (sub.created_at, *EMAILABLE_ORIGINS),
                )
            views = [
                _alert_view(r, base_url=base_url)
                for r in rows
                if sub.wants(r["platform"], r["severity"])
            ]
            if not views:
                continue
            newest = max(v["id"] for v in views)
            context = {"alerts": views, "date": current.date().isoformat()}
            context |= _subscriber_context(sub, smtp)
            row_id = _insert_delivery(
                store,
                kind="digest",
                alert_id=newest,
                subscriber=sub,
                subject=_digest_subject(views),
                body_text=env.get_template("email_digest.txt").render(context),
                body_html=_inline_css(env.get_template("email_digest.html").render(context)),
                headers=_list_headers(sub, smtp),
                message_id=_message_id(f"digest.s{sub.id}.a{newest}", sub.token),
                now=current,
            )
            if row_id is not None:
                created.append(row_id)
    return created


def enqueue_health(
    store: Store,
    operator_email: str,
    subject: str,
    body: str,
    *,
    key: str,
    now: dt.datetime | None = None,
) -> int | None:
    """Queue a plain-text health e-mail to the operator; None if ``key`` was already queued."""
    recipient = _normalise_email(operator_email)
    text = (
        _environment()
        .get_template("email_health.txt")
        .render({"subject": _header_text(subject), "body": body})
    )
    seed = f"{key}\n{recipient}\n{store.path.resolve() if store.path.name != ':memory:' else ''}"
    with store.transaction():
        return _insert_delivery(
            store,
            kind="health",
            alert_id=None,
            subscriber=None,
            recipient=recipient,
            subject=_header_text(f"[policy-monitor] health: {subject}"),
            body_text=text,
            body_html=None,
            headers={"Auto-Submitted": "auto-generated"},
            message_id=_message_id(f"health.{hashlib.sha256(seed.encode()).hexdigest()[:20]}", ""),
            now=now,
        )


def _insert_delivery(
    store: Store,
    *,
    kind: str,
    alert_id: int | None,
    subscriber: Subscriber | None,
    subject: str,
    body_text: str,
    body_html: str | None,
    headers: dict[str, str],
    message_id: str,
    now: dt.datetime | None,
    recipient: str | None = None,
) -> int | None:
    when = iso(now or utcnow())
    cur = store.conn.execute(
        """INSERT INTO deliveries (kind, alert_id, subscriber_id, recipient, subject, body_text,
               body_html, headers, message_id, status, attempts, next_attempt_at, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)
           ON CONFLICT(message_id) DO NOTHING""",
        (
            kind,
            alert_id,
            subscriber.id if subscriber else None,
            recipient or (subscriber.email if subscriber else ""),
            subject,
            body_text,
            body_html,
            json.dumps(headers, ensure_ascii=False),
            message_id,
            when,
            when,
        ),
    )
    return cur.lastrowid if cur.rowcount == 1 else None


def _message_id(ident: str, token: str) -> str:
    # The token digest makes ids differ between installations, whose numeric ids collide:
    # mail systems drop a second message with a Message-ID they have already seen.
    salt = "." + hashlib.sha256(token.encode()).hexdigest()[:10] if token else ""
    return f"<{ident}{salt}@{_MSGID_DOMAIN}>"


# --- composition ---------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        # HTML templates escape everything; the .txt ones produce plain text, where HTML
        # entities would only corrupt the quoted policy text.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["split_lines"] = str.splitlines
    return env


def _inline_css(html: str) -> str:
    # Mail clients drop <style> blocks; no remote stylesheet may be fetched while composing.
    inliner = css_inline.CSSInliner(load_remote_stylesheets=False, keep_style_tags=False)
    result: str = inliner.inline(html)
    return result


def _header_text(value: str, limit: int = _MAX_SUBJECT) -> str:
    """One line of text safe for a header: no control, format or line-separator characters."""
    cleaned = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in value
    )
    text = " ".join(cleaned.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _doc_label(doc_type: str) -> str:
    return " ".join(doc_type.replace("_", "-").split("-")).strip() or "document"


def _alert_subject(view: dict[str, Any]) -> str:
    # Built only from the configured platform and document type and from fixed phrases:
    # policy text (summary, clause) never goes into a header.
    return _header_text(
        f"[{view['severity']}] {view['platform']} {view['doc_label']}: {view['headline']}"
    )


def _digest_subject(views: Sequence[dict[str, Any]]) -> str:
    platforms: list[str] = []
    for v in views:
        if v["platform"] not in platforms:
            platforms.append(v["platform"])
    shown = ", ".join(platforms[:3]) + (
        f" and {len(platforms) - 3} more" if len(platforms) > 3 else ""
    )
    noun = "alert" if len(views) == 1 else "alerts"
    return _header_text(f"[policy-monitor] daily digest: {len(views)} {noun} ({shown})")


def _list_headers(sub: Subscriber, smtp: SmtpSettings | None) -> dict[str, str]:
    # Keys starting with "_" are instructions for render_message, not headers. The address
    # and URL are fixed when the message is composed, so that its footer and its
    # List-Unsubscribe header always agree.
    headers = {"_unsubscribe_token": sub.token, "Auto-Submitted": "auto-generated"}
    if smtp is not None:
        headers["_unsubscribe_mailto"] = unsubscribe_address(smtp)
    if url := _unsubscribe_url(sub, smtp):
        headers["_list_unsubscribe_url"] = url
    return headers


def unsubscribe_address(smtp: SmtpSettings) -> str:
    """Where "unsubscribe TOKEN" e-mails go: ``smtp.unsubscribe``, else the sender."""
    return _bare_address(smtp.unsubscribe or smtp.sender)


def _unsubscribe_url(sub: Subscriber, smtp: SmtpSettings | None) -> str | None:
    # Only an endpoint the operator says they run: nothing in policy-monitor serves one.
    if smtp is None or not smtp.unsubscribe_url:
        return None
    return smtp.unsubscribe_url.replace("{token}", sub.token)


def _subscriber_context(sub: Subscriber, smtp: SmtpSettings | None) -> dict[str, Any]:
    return {
        "subscriber": {
            "email": sub.email,
            "platforms": sub.platforms,
            "min_severity": sub.min_severity,
            "digest": sub.digest,
            "token": sub.token,
        },
        "unsubscribe_url": _unsubscribe_url(sub, smtp),
        "unsubscribe_address": unsubscribe_address(smtp) if smtp else None,
    }


def _load_alerts(store: Store, where: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    return store.query(
        "SELECT a.*, d.platform, d.doc_type, d.url FROM alerts a "
        f"JOIN documents d ON d.id = a.document_id WHERE {where} ORDER BY a.id",
        params,
    )


def _alert_view(row: dict[str, Any], *, base_url: str | None) -> dict[str, Any]:
    """What the templates show about one alert, read defensively from its evidence JSON."""
    try:
        evidence = json.loads(row.get("evidence") or "{}")
    except ValueError:
        evidence = {}
    if not isinstance(evidence, dict):
        evidence = {}
    clause = row.get("unit_text") or ""
    finding = _main_finding(evidence, clause)
    consent = _first_str(evidence, "consent", "new_consent") or _first_str(finding, "consent")
    previous = _first_str(evidence, "previous_consent", "old_consent", "prev_consent")
    cues = _str_list(evidence.get("consent_cues")) or _str_list(finding.get("consent_cues"))
    looked_for = _str_list(
        evidence.get("opt_in_looked_for")
        or evidence.get("looked_for")
        or evidence.get("missing_cues")
    )
    if row["type"] not in _ASKS_FOR_OPT_IN or consent == "opt_in":
        # A removed clause or a removed denial: there is no training whose opt-in was missing.
        looked_for = []
    # Without base_url there is no address a subscriber can open: a file:// path would point
    # into the monitor's own disk. The page's name still lets an operator find it.
    link: str | None = None
    if base_url:
        link = f"{base_url.rstrip('/')}/alerts/{row['id']}.html"
    severity = row["severity"] if row["severity"] in SEVERITIES else "high"
    return {
        "id": row["id"],
        "type": row["type"],
        "severity": severity,
        "headline": _HEADLINES.get(row["type"], row["type"].replace("_", " ")),
        "platform": _header_text(row["platform"], 80),
        "doc_type": row["doc_type"],
        "doc_label": _header_text(_doc_label(row["doc_type"]), 80),
        "document_id": row["document_id"],
        "url": row["url"],
        "summary": row.get("summary") or "",
        "clause": clause,
        "clause_parts": _highlight(clause, finding),
        "consent": consent,
        "consent_label": _CONSENT_LABELS.get(consent, consent) if consent else None,
        "previous_consent": previous,
        "previous_consent_label": _CONSENT_LABELS.get(previous or "", previous or ""),
        "consent_cues": cues,
        "looked_for": looked_for,
        "created_at": row.get("created_at") or "",
        "link": link,
        "page": f"alerts/{row['id']}.html",
    }


def _main_finding(evidence: dict[str, Any], clause: str) -> dict[str, Any]:
    """The clause (or finding) the alert quotes: it carries the consent cues and the spans."""
    candidates: list[dict[str, Any]] = []
    for key in ("clauses", "findings_new", "findings", "finding"):
        value = evidence.get(key)
        items = value if isinstance(value, list) else [value]
        candidates.extend(f for f in items if isinstance(f, dict))
    for f in candidates:
        if f.get("unit_text") == clause and f.get("ai_training", True):
            return f
    return candidates[0] if candidates else {}


def _first_str(d: dict[str, Any], *keys: str) -> str | None:
    for k in keys:
        v = d.get(k)
        if isinstance(v, str) and v:
            return v
    return None


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value if v not in (None, "")]
    return []


def _highlight(clause: str, finding: dict[str, Any]) -> list[tuple[str, bool]]:
    """The clause cut into (text, matched) pieces, from the finding's spans when they fit."""
    spans = finding.get("spans") if finding.get("unit_text") == clause else None
    marks: list[tuple[int, int]] = []
    for s in spans if isinstance(spans, list) else []:
        if (
            isinstance(s, dict)
            and isinstance(s.get("start"), int)
            and isinstance(s.get("end"), int)
        ):
            start, end = max(0, s["start"]), min(len(clause), s["end"])
            if start < end and s.get("role") != "negation":
                marks.append((start, end))
    parts: list[tuple[str, bool]] = []
    pos = 0
    for start, end in sorted(marks):
        if start < pos:
            start = pos
        if start >= end:
            continue
        if start > pos:
            parts.append((clause[pos:start], False))
        parts.append((clause[start:end], True))
        pos = end
    if pos < len(clause):
        parts.append((clause[pos:], False))
    return parts


def render_message(
    row: dict[str, Any],
    sender: str,
    *,
    date: dt.datetime | None = None,
    unsubscribe_to: str | None = None,
) -> EmailMessage:
    """The e-mail for one ``deliveries`` row, as it goes on the wire (From = ``sender``).

    ``unsubscribe_to`` is the mailto address for rows queued without one (default: sender)."""
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = _header_text(sender, 320)
    msg["To"] = row["recipient"]
    msg["Subject"] = _header_text(row["subject"])
    msg["Date"] = format_datetime((date or utcnow()).astimezone(dt.UTC))
    msg["Message-ID"] = row["message_id"]
    headers: dict[str, Any] = json.loads(row["headers"] or "{}")
    unsubscribe: list[str] = []
    mailto = headers.pop("_unsubscribe_mailto", None) or _bare_address(unsubscribe_to or sender)
    if token := headers.pop("_unsubscribe_token", None):
        unsubscribe.append(f"<mailto:{mailto}?subject=unsubscribe%20{token}>")
    # Rows queued by earlier versions carry a "_unsubscribe_url" built from base_url, which
    # no server ever answered: dropped, like every "_" key.
    url = headers.pop("_list_unsubscribe_url", None)
    if url:
        unsubscribe.append(f"<{url}>")
    unsubscribe = [u for u in unsubscribe if u.isascii() and _header_text(u, 2000) == u]
    if unsubscribe:
        msg.set_raw("List-Unsubscribe", ",\n ".join(unsubscribe))
    if url and str(url).startswith("https://"):
        # RFC 8058: one-click only with an HTTPS URI in List-Unsubscribe.
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in headers.items():
        if not name.startswith("_") and re.fullmatch(r"[A-Za-z0-9-]+", name):
            msg[name] = _header_text(str(value), 500)
    msg.set_content(row["body_text"])
    if row.get("body_html"):
        msg.add_alternative(row["body_html"], subtype="html")
    return msg


def _bare_address(sender: str) -> str:
    m = re.search(r"<([^<>\s]+@[^<>\s]+)>", sender)
    return m.group(1) if m else sender.strip()


# --- delivery ------------------------------------------------------------------------------


@dataclass(slots=True)
class DeliveryReport:
    """What one :func:`deliver_pending` run did."""

    sent: int = 0
    deferred: int = 0  # back to pending, will be retried
    failed: int = 0  # given up (a 5xx for that message, or undelivered for give_up_after)
    unknown: int = 0  # newly found in doubt this run (see the module docstring)
    unknown_total: int = 0  # rows waiting for the operator's decision, this run's included
    busy: bool = False  # another process was delivering; this run did nothing
    server_down: str | None = None  # the server could not take mail: why
    down_since: str | None = None  # when that started (the first failed run)
    retry_at: str | None = None  # when the next run will try the server again
    waiting: int = 0  # rows pending while the server is down
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.busy:
            return "another process is delivering the outbox; nothing done"
        text = f"sent {self.sent}, deferred {self.deferred}, failed {self.failed}"
        if self.server_down:
            text += (
                f"; SMTP server unavailable since {self.down_since} ({self.server_down}):"
                f" {self.waiting} e-mail(s) wait, next try at {self.retry_at}"
            )
        if self.unknown_total:
            text += (
                f"; {self.unknown_total} e-mail(s) in doubt (the process stopped while sending):"
                " check the recipients' mailboxes, then resend them with"
                " `policy-monitor notify --resend-unknown`"
            )
        return text


class _ServerDown(Exception):
    """The server cannot take any mail now (unreachable, 421, TLS or login failure, sender
    refused): the whole run backs off, no message is charged for it."""


class _Dropped(Exception):
    """The connection broke before the message data was sent: nothing was handed over."""


class _InDoubt(Exception):
    """The exchange broke off after the message data was handed to the server."""


class _Refused(Exception):
    """The server refused this one message (its recipient or its content)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class _Link:
    """One SMTP connection for a batch, opened lazily and reopened after it drops."""

    def __init__(self, smtp: SmtpSettings, sleep: Callable[[float], None]) -> None:
        self._smtp = smtp
        self._sleep = sleep
        self._conn: smtplib.SMTP | None = None
        self._dropped = False
        self.connected = False  # the server took a session at least once in this run

    def get(self) -> smtplib.SMTP:
        if self._conn is None:
            if self._dropped:
                self._sleep(_RECONNECT_PAUSE)
            try:
                self._conn = _connect(self._smtp)
            except (OSError, smtplib.SMTPException) as exc:
                raise _ServerDown(_describe(exc)) from None
            self.connected = True
        return self._conn

    def drop(self) -> None:
        if self._conn is not None:
            with suppress(OSError, smtplib.SMTPException):
                self._conn.close()
        self._conn = None
        self._dropped = True

    def close(self) -> None:
        if self._conn is not None:
            with suppress(OSError, smtplib.SMTPException):
                self._conn.quit()
            self.drop()


def _connect(smtp: SmtpSettings) -> smtplib.SMTP:
    # Loading the system CA store takes a tenth of a second: only when TLS is used.
    context = ssl.create_default_context() if smtp.ssl or smtp.starttls else None
    conn: smtplib.SMTP
    if smtp.ssl:
        conn = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=context)
    else:
        conn = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    try:
        code, reply = conn.ehlo()
        if code != 250:
            # A 4xx / 5xx greeting or EHLO reply: the server takes no mail now.
            raise smtplib.SMTPResponseException(code, reply)
        if smtp.starttls and not smtp.ssl:
            conn.starttls(context=context)
            conn.ehlo()
        if smtp.username:
            conn.login(smtp.username, smtp.password or "")
    except BaseException:
        with suppress(OSError, smtplib.SMTPException):
            conn.close()
        raise
    return conn


# 421: "service not available, closing transmission channel" (RFC 5321): the server's state,
# not a verdict on the message at hand.
_SERVICE_UNAVAILABLE = 421


def _send(conn: smtplib.SMTP, sender: str, recipient: str, data: bytes) -> None:
    """Hand one message to the server; raises _Refused, _ServerDown, _Dropped or _InDoubt."""
    try:
        code, reply = conn.mail(_bare_address(sender))
        if code != 250:
            _reset(conn)
            # A refused sender is a configuration problem, not this message's.
            raise _ServerDown(f"sender refused: {code} {_reply(reply)}")
        code, reply = conn.rcpt(recipient)
    except (OSError, smtplib.SMTPException) as exc:
        raise _Dropped(_describe(exc)) from None
    if code == _SERVICE_UNAVAILABLE:
        raise _ServerDown(f"{code} {_reply(reply)}")
    if code not in (250, 251):
        _reset(conn)
        raise _Refused(f"recipient refused: {code} {_reply(reply)}", permanent=code >= 500)
    try:
        code, reply = conn.data(data)
    except smtplib.SMTPDataError as exc:
        if exc.smtp_code == _SERVICE_UNAVAILABLE:
            raise _ServerDown(f"{exc.smtp_code} {_reply(exc.smtp_error)}") from None
        _reset(conn)
        raise _Refused(
            f"message refused: {exc.smtp_code} {_reply(exc.smtp_error)}",
            permanent=exc.smtp_code >= 500,
        ) from None
    except (OSError, smtplib.SMTPException) as exc:
        # The data may have reached the server, which may keep it: never resend on our own.
        raise _InDoubt(f"connection lost during DATA: {_describe(exc)}") from None
    if code == _SERVICE_UNAVAILABLE:
        raise _ServerDown(f"{code} {_reply(reply)}")
    if code != 250:
        _reset(conn)
        raise _Refused(f"message refused: {code} {_reply(reply)}", permanent=code >= 500)


def _reset(conn: smtplib.SMTP) -> None:
    with suppress(OSError, smtplib.SMTPException):
        conn.rset()


def _reply(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_reply(exc.smtp_error)}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _backoff(smtp: SmtpSettings, failures: int) -> dt.timedelta:
    """Wait after the n-th failure in a row: ``backoff`` doubling, capped at ``max_backoff``."""
    seconds = smtp.backoff * 2 ** min(max(failures - 1, 0), 40)
    return dt.timedelta(seconds=min(seconds, smtp.max_backoff))


def deliver_pending(
    store: Store,
    smtp: SmtpSettings,
    *,
    now: dt.datetime | None = None,
    limit: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    force: bool = False,
) -> DeliveryReport:
    """Send the outbox rows that are due; see the module docstring for the guarantees.

    While the server is known to be down (a previous run failed to get a session), runs
    before the backed-off retry time return at once without connecting, unless ``force``
    (an operator's ``notify``). Must not run inside :meth:`Store.transaction`: each status
    change has to be committed on its own, before and after the send.
    """
    if store.conn.in_transaction:
        raise StoreError("deliver_pending cannot run inside a database transaction")
    report = DeliveryReport()
    current = now or utcnow()
    with _outbox_lock(store) as held:
        if not held:
            report.busy = True
            log.info("outbox: another process is delivering; skipping this run")
            return report
        report.unknown = _flag_interrupted(store, now)
        state = store.query_one("SELECT * FROM smtp_state WHERE id = 1")
        if state is not None and not force and iso(current) < state["retry_at"]:
            _report_down(store, report, state)
        else:
            _deliver_due(store, smtp, current, limit, sleep, report)
        report.unknown_total = _count(store, "unknown")
    if report.unknown_total:
        log.warning("outbox: %s", report.summary())
    return report


def _deliver_due(
    store: Store,
    smtp: SmtpSettings,
    current: dt.datetime,
    limit: int | None,
    sleep: Callable[[float], None],
    report: DeliveryReport,
) -> None:
    rows = store.query(
        "SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ? "
        "ORDER BY next_attempt_at, id" + (" LIMIT ?" if limit is not None else ""),
        (iso(current), *((limit,) if limit is not None else ())),
    )
    if not rows:
        return
    link = _Link(smtp, sleep)
    try:
        for n, row in enumerate(rows):
            try:
                _deliver_one(store, smtp, link, row, current, report)
            except _ServerDown as exc:
                link.drop()
                _server_failed(store, smtp, str(exc), rows[n:], current, report)
                return
        if link.connected:
            store.conn.execute("DELETE FROM smtp_state")
    finally:
        link.close()


def _deliver_one(
    store: Store,
    smtp: SmtpSettings,
    link: _Link,
    row: dict[str, Any],
    current: dt.datetime,
    report: DeliveryReport,
) -> None:
    conn = link.get()  # _ServerDown propagates: the run backs off, this row is not charged
    attempts = row["attempts"] + 1
    data = render_message(
        row, smtp.sender, date=current, unsubscribe_to=unsubscribe_address(smtp)
    ).as_bytes()
    # Committed before the first byte goes out: a crash from here on leaves a trace.
    claimed = store.conn.execute(
        "UPDATE deliveries SET status = 'sending', attempts = ? WHERE id = ? AND status = 'pending'",
        (attempts, row["id"]),
    )
    if claimed.rowcount != 1:  # cancelled since the batch was selected
        return
    try:
        _send(conn, smtp.sender, row["recipient"], data)
    except _Refused as exc:
        _record_failure(store, smtp, row, attempts, str(exc), exc.permanent, current, report)
        return
    except _ServerDown:
        _unclaim(store, row)
        raise
    except _Dropped as exc:
        # Nothing was handed over: the next row reconnects, this one waits for the next run.
        link.drop()
        _unclaim(store, row, f"connection lost before sending: {exc}")
        report.deferred += 1
        return
    except _InDoubt as exc:
        link.drop()
        _set_unknown(store, row["id"], str(exc))
        report.unknown += 1
        report.errors.append(f"{row['recipient']}: {exc}")
        return
    if pause := os.environ.get(PAUSE_ENV):
        time.sleep(float(pause))
    store.conn.execute(
        "UPDATE deliveries SET status = 'sent', sent_at = ?, last_error = NULL WHERE id = ?",
        (iso(current), row["id"]),
    )
    report.sent += 1


def _unclaim(store: Store, row: dict[str, Any], error: str | None = None) -> None:
    """Back to pending as it was: a failure of the server, not of this message."""
    store.conn.execute(
        "UPDATE deliveries SET status = 'pending', attempts = ?, "
        "last_error = coalesce(?, last_error) WHERE id = ?",
        (row["attempts"], error[:_MAX_ERROR] if error else None, row["id"]),
    )


def _expired(smtp: SmtpSettings, row: dict[str, Any], current: dt.datetime) -> bool:
    queued = _parse_iso(row.get("queued_at") or row["created_at"])
    return current - queued >= dt.timedelta(seconds=smtp.give_up_after)


def _server_failed(
    store: Store,
    smtp: SmtpSettings,
    error: str,
    rows: Sequence[dict[str, Any]],
    current: dt.datetime,
    report: DeliveryReport,
) -> None:
    """The server took no mail: back off the whole outbox, charge no message for it, and
    give up only the messages waiting for longer than ``give_up_after``."""
    error = error[:_MAX_ERROR]
    state = store.query_one("SELECT * FROM smtp_state WHERE id = 1")
    failures = (state["failures"] if state else 0) + 1
    down_since = state["down_since"] if state else iso(current)
    retry_at = iso(current + _backoff(smtp, failures))
    store.conn.execute(
        "INSERT OR REPLACE INTO smtp_state (id, failures, down_since, retry_at, last_error) "
        "VALUES (1, ?, ?, ?, ?)",
        (failures, down_since, retry_at, error),
    )
    for row in rows:
        if _expired(smtp, row, current):
            _give_up(store, row, f"undelivered for {_duration(smtp.give_up_after)}: {error}")
            report.failed += 1
        else:
            store.conn.execute(
                "UPDATE deliveries SET last_error = ? WHERE id = ? AND status = 'pending'",
                (error, row["id"]),
            )
            report.deferred += 1
    report.errors.append(f"SMTP server: {error}")
    log.warning(
        "outbox: SMTP server unavailable (%s); %d failure(s) in a row since %s, next try at %s",
        error,
        failures,
        down_since,
        retry_at,
    )
    state = store.query_one("SELECT * FROM smtp_state WHERE id = 1")
    assert state is not None
    _report_down(store, report, state)


def _report_down(store: Store, report: DeliveryReport, state: dict[str, Any]) -> None:
    report.server_down = state["last_error"]
    report.down_since = state["down_since"]
    report.retry_at = state["retry_at"]
    report.waiting = _count(store, "pending")


def _give_up(store: Store, row: dict[str, Any], error: str, attempts: int | None = None) -> None:
    store.conn.execute(
        "UPDATE deliveries SET status = 'failed', attempts = ?, last_error = ? WHERE id = ?",
        (row["attempts"] if attempts is None else attempts, error[:_MAX_ERROR], row["id"]),
    )
    log.warning("outbox: gave up on e-mail %s to %s: %s", row["id"], row["recipient"], error)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _record_failure(
    store: Store,
    smtp: SmtpSettings,
    row: dict[str, Any],
    attempts: int,
    error: str,
    permanent: bool,
    current: dt.datetime,
    report: DeliveryReport,
) -> None:
    """This message was refused: at once for good (5xx), or for now (4xx) until it has waited
    ``give_up_after``; its own retries back off like the server's."""
    error = error[:_MAX_ERROR]
    report.errors.append(f"{row['recipient']}: {error}")
    if permanent or _expired(smtp, row, current):
        reason = error if permanent else f"undelivered for {_duration(smtp.give_up_after)}: {error}"
        _give_up(store, row, reason, attempts)
        report.failed += 1
        return
    store.conn.execute(
        "UPDATE deliveries SET status = 'pending', attempts = ?, next_attempt_at = ?, "
        "last_error = ? WHERE id = ?",
        (attempts, iso(current + _backoff(smtp, attempts)), error, row["id"]),
    )
    report.deferred += 1


def _set_unknown(store: Store, row_id: int, why: str) -> None:
    store.conn.execute(
        "UPDATE deliveries SET status = 'unknown', last_error = ? WHERE id = ?",
        (why[:_MAX_ERROR], row_id),
    )
    log.warning(
        "outbox: e-mail %s may or may not have been delivered (%s); not resent", row_id, why
    )


def _flag_interrupted(store: Store, now: dt.datetime | None) -> int:
    """Rows left in ``sending`` by a run that died: mark them ``unknown``, loudly."""
    rows = store.query("SELECT id, recipient FROM deliveries WHERE status = 'sending'")
    for r in rows:
        _set_unknown(
            store,
            r["id"],
            f"the sending process stopped before confirming (found {iso(now or utcnow())})",
        )
    return len(rows)


@contextmanager
def _outbox_lock(store: Store) -> Iterator[bool]:
    """Exclusive, non-blocking lock for delivering this database's outbox."""
    if store.path.name == ":memory:":
        yield True
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: only one deliverer is assumed
        yield True
        return
    lock_path = store.path.with_name(store.path.name + ".outbox-lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # also releases the lock


def _count(store: Store, status: str) -> int:
    row = store.conn.execute(
        "SELECT count(*) FROM deliveries WHERE status = ?", (status,)
    ).fetchone()
    return int(row[0])


def _parse_iso(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


# --- operator actions ----------------------------------------------------------------------


def outbox_counts(store: Store) -> dict[str, int]:
    """Number of deliveries per status."""
    return {
        r["status"]: r["n"]
        for r in store.query("SELECT status, count(*) AS n FROM deliveries GROUP BY status")
    }


def resend_unknown(
    store: Store, ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> int:
    """Queue the in-doubt rows (all, or ``ids``) to be sent again; returns how many."""
    return _requeue(store, "unknown", ids, now=now)


def retry_failed(
    store: Store, ids: Iterable[int] | None = None, *, now: dt.datetime | None = None
) -> int:
    """Queue failed rows (all, or ``ids``) again with a fresh retry budget; returns how many."""
    return _requeue(store, "failed", ids, now=now)


def mark_unknown_sent(store: Store, ids: Iterable[int] | None = None) -> int:
    """Record in-doubt rows (all, or ``ids``) as sent, once the operator saw they arrived."""
    where, params = _status_filter("unknown", ids)
    cur = store.conn.execute(
        f"UPDATE deliveries SET status = 'sent', sent_at = coalesce(sent_at, ?) WHERE {where}",
        (iso(utcnow()), *params),
    )
    return cur.rowcount


def _requeue(
    store: Store, status: str, ids: Iterable[int] | None, *, now: dt.datetime | None
) -> int:
    # An explicit decision of the operator: the row gets a fresh retry budget.
    # queued_at restarts the give_up_after clock.
    where, params = _status_filter(status, ids)
    when = iso(now or utcnow())
    cur = store.conn.execute(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?, "
        f"queued_at = ? WHERE {where}",
        (when, when, *params),
    )
    return cur.rowcount


def _status_filter(status: str, ids: Iterable[int] | None) -> tuple[str, list[Any]]:
    if ids is None:
        return "status = ?", [status]
    id_list = [int(i) for i in ids]
    marks = ", ".join("?" for _ in id_list) or "NULL"
    return f"status = ? AND id IN ({marks})", [status, *id_list]

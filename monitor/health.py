"""Health of the watch itself: is each document still being fetched and read properly?

Separate from content alerts: these go to the operator (``config.operator``), never to
subscribers. Four problems are tracked per document, decided from the fetch log after each
check:

``failing``
    the latest fetches all failed (HTTP error, network error, timeout, too large, a stage
    error) for longer than ``health.failing_for``; over when a fetch gets an answer again.
``suspect``
    ``health.suspect_in_a_row`` suspect fetches in a row (captcha, login wall, error page,
    shrink); over at the next good fetch.
``selector``
    the same number of suspect fetches in a row that were all an empty selection: the page
    was probably redesigned and ``select`` no longer matches; over at the next good fetch.
``robots``
    robots.txt disallows the document (a Disallow rule, or a 401 / 403 for robots.txt); over
    when a fetch is allowed again. A robots.txt that cannot be read is a failed fetch
    (``failing``), not a refusal.
``stale``
    the document has not been fetched at all for about three intervals (see
    :func:`sweep_stale`, run periodically by the daemon: nothing else notices a check that
    never ends or a document that is never run); over when a fetch lands.

A problem is an *episode* in the ``health_problems`` table: one e-mail when it opens, one
when it is resolved, never one per failed fetch. The state lives in the database, so a
restarted daemon does not alert again about a problem it already reported.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.config import Config
from monitor.models import Outcome
from monitor.store import Store, iso, utcnow

__all__ = ["PROBLEMS", "Problem", "Transition", "open_problems", "sweep_stale", "update"]

log = logging.getLogger("monitor.health")

PROBLEMS = ("failing", "suspect", "selector", "robots", "stale")

_SUCCESS = frozenset(
    {Outcome.NEW_VERSION, Outcome.UNCHANGED, Outcome.SAME_BODY, Outcome.NOT_MODIFIED}
)
# Robots refusals are deliberate answers, reported as their own problem, not as an outage. A
# robots.txt that could not be read is recorded as the timeout / network or HTTP error it was,
# so a site that is down is "failing" from its first failed fetch to its recovery.
_FAILING = frozenset(o for o in Outcome if o.failed and o is not Outcome.ROBOTS_DISALLOWED)
_EMPTY_SELECTION = "empty selection"
_TAIL = 50  # recent fetches read per decision; enough for any sane suspect_in_a_row

_HINTS = {
    "failing": "The site has not answered properly since then. Check the URL and the network.",
    "suspect": "The fetched page does not look like the policy (a captcha, a login wall, an "
    "error page or a drastic shrink). Nothing was stored as a version.",
    "selector": "The CSS selector in documents[].select matched nothing: the page was "
    "probably redesigned. Update the selector.",
    "stale": "The daemon has not checked this document for more than twice its interval "
    "past the time it was due. A check may be stuck, the database may refuse writes, or the "
    "document is not scheduled. Look at the daemon's log; a restart reschedules every document.",
    "robots": "robots.txt of the site disallows this URL for our user agent (a Disallow "
    "rule, or robots.txt itself answered 401 / 403). Nothing is fetched until it allows it "
    "again (or set ignore_robots on the document).",
}


@dataclass(slots=True, frozen=True)
class Problem:
    """An open health problem of a document."""

    document_id: str
    problem: str
    started_at: str
    alerted_at: str
    detail: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "since": self.started_at,
            "alerted_at": self.alerted_at,
            "detail": self.detail,
        }


@dataclass(slots=True, frozen=True)
class Transition:
    """A problem that opened (``kind == "started"``) or closed (``"recovered"``)."""

    document_id: str
    problem: str
    kind: str
    started_at: str
    detail: str | None
    delivery_id: int | None  # the operator e-mail queued, None without an operator


def update(
    store: Store,
    config: Config,
    doc_ids: Iterable[str],
    *,
    now: dt.datetime | None = None,
) -> list[Transition]:
    """Decide the health of ``doc_ids`` from their fetch log (call after checking them) and
    queue one operator e-mail per problem that opened or closed."""
    current = now or utcnow()
    out: list[Transition] = []
    # One transaction for the whole pass: a write lock and a commit per document cost more
    # than deciding (nearly always: nothing to write).
    with store.transaction():
        open_rows: dict[str, dict[str, dict[str, Any]]] = {}
        for row in store.query(
            "SELECT id, document_id, problem, started_at FROM health_problems "
            "WHERE resolved_at IS NULL"
        ):
            open_rows.setdefault(row["document_id"], {})[row["problem"]] = row
        for doc_id in dict.fromkeys(doc_ids):  # a repeated id would see stale open_rows
            out.extend(_update_one(store, config, doc_id, current, open_rows.get(doc_id, {})))
    return out


def open_problems(store: Store) -> dict[str, list[Problem]]:
    """Open problems by document id."""
    rows = store.query(
        "SELECT document_id, problem, started_at, alerted_at, detail FROM health_problems "
        "WHERE resolved_at IS NULL ORDER BY document_id, started_at"
    )
    out: dict[str, list[Problem]] = {}
    for r in rows:
        out.setdefault(r["document_id"], []).append(Problem(**r))
    return out


def sweep_stale(
    store: Store,
    config: Config,
    planned: Mapping[str, dt.datetime],
    *,
    now: dt.datetime | None = None,
) -> list[Transition]:
    """Open a ``stale`` problem for every configured document that has had no fetch for
    more than two intervals (plus ``jitter``) past the time it was due, and close those
    that got a fetch since. Due = the later of its last fetch + interval and ``planned``
    (the run the daemon last scheduled for it: after a restart, a Retry-After or an error
    backoff, that is later than last fetch + interval). With the defaults, a 6-hour document
    is stale about 18 hours after its last fetch.

    Health is otherwise decided after a check completes; a check that never ends, a job the
    scheduler lost or a database that takes no rows produce no check to decide after."""
    current = now or utcnow()
    last = store.latest_fetch_starts()
    open_rows = {
        r["document_id"]: r
        for r in store.query(
            "SELECT id, document_id, started_at FROM health_problems "
            "WHERE problem = 'stale' AND resolved_at IS NULL"
        )
    }
    out: list[Transition] = []
    for doc in config.documents:
        fetched = last.get(doc.doc_id)
        row = open_rows.get(doc.doc_id)
        if row is not None:
            if fetched is not None and _parse(fetched) > _parse(row["started_at"]):
                with store.transaction():
                    store.conn.execute(
                        "UPDATE health_problems SET resolved_at = ? WHERE id = ?",
                        (iso(current), row["id"]),
                    )
                    verdict = _Verdict(active=False, resolved=True, since=row["started_at"])
                    out.append(
                        _notify(
                            store,
                            config,
                            doc.doc_id,
                            "stale",
                            "recovered",
                            verdict,
                            row["id"],
                            current,
                        )
                    )
            continue
        interval = dt.timedelta(seconds=max(doc.interval, 1.0))
        dues = [_parse(fetched) + interval] if fetched else []
        if doc.doc_id in planned:
            dues.append(planned[doc.doc_id])
        if not dues:
            continue
        due = max(dues)
        if current <= due + 2 * interval + dt.timedelta(seconds=config.jitter):
            continue
        since = fetched or iso(due)
        detail = (
            f"no fetch since {fetched} (interval {_human(doc.interval)})"
            if fetched
            else f"never fetched; due since {iso(due)}"
        )
        with store.transaction():
            episode = store.insert(
                "health_problems",
                {
                    "document_id": doc.doc_id,
                    "problem": "stale",
                    "detail": detail,
                    "started_at": since,
                    "alerted_at": iso(current),
                },
            )
            verdict = _Verdict(active=True, resolved=False, since=since, detail=detail)
            out.append(
                _notify(store, config, doc.doc_id, "stale", "started", verdict, episode, current)
            )
    return out


# --- decisions -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Verdict:
    """What the fetch log says about one problem: bad now or not, since when, why, and
    whether the latest fetch ends an open episode."""

    active: bool
    resolved: bool
    since: str | None = None
    detail: str | None = None


def _update_one(
    store: Store,
    config: Config,
    doc_id: str,
    now: dt.datetime,
    open_rows: dict[str, dict[str, Any]],
) -> list[Transition]:
    """``open_rows``: the document's open episodes by problem."""
    sql = (
        "SELECT id, started_at, outcome, detail FROM fetches WHERE document_id = ? "
        "ORDER BY id DESC LIMIT ?"
    )
    # After a good fetch every streak is empty whatever came before it, so that one row
    # decides: read the longer tail only when the latest fetch was not a success.
    tail = store.query(sql, (doc_id, 1))
    if not tail:
        return []
    if Outcome(tail[0]["outcome"]) not in _SUCCESS:
        tail = store.query(sql, (doc_id, max(_TAIL, config.health.suspect_in_a_row)))
    verdicts = _judge(store, config, doc_id, tail, now)
    # A stale episode is opened by the sweep, never here; any fetch after it ends it.
    stale = open_rows.get("stale")
    verdicts["stale"] = _Verdict(
        active=False,
        resolved=stale is not None and _parse(tail[0]["started_at"]) > _parse(stale["started_at"]),
    )
    out: list[Transition] = []
    with store.transaction():
        for problem in PROBLEMS:
            verdict = verdicts[problem]
            row = open_rows.get(problem)
            if row is None and verdict.active:
                assert verdict.since is not None
                episode = store.insert(
                    "health_problems",
                    {
                        "document_id": doc_id,
                        "problem": problem,
                        "detail": verdict.detail,
                        "started_at": verdict.since,
                        "alerted_at": iso(now),
                    },
                )
                out.append(
                    _notify(store, config, doc_id, problem, "started", verdict, episode, now)
                )
            elif row is not None and verdict.resolved:
                store.conn.execute(
                    "UPDATE health_problems SET resolved_at = ? WHERE id = ?", (iso(now), row["id"])
                )
                verdict.since = row["started_at"]
                out.append(
                    _notify(store, config, doc_id, problem, "recovered", verdict, row["id"], now)
                )
    return out


def _judge(
    store: Store, config: Config, doc_id: str, tail: Sequence[dict[str, Any]], now: dt.datetime
) -> dict[str, _Verdict]:
    latest = tail[0]
    outcome = Outcome(latest["outcome"])
    verdicts: dict[str, _Verdict] = {}

    # failing: the run of failed fetches at the end of the log, and how long it has lasted
    streak = _streak(tail, lambda r: Outcome(r["outcome"]) in _FAILING)
    since: str | None = None
    if streak:
        since = streak[-1]["started_at"]
        if len(streak) == len(tail):  # the run goes back further than the tail we read
            since = _failing_since(store, doc_id) or since
    lasted = (now - _parse(since)).total_seconds() if since else 0.0
    verdicts["failing"] = _Verdict(
        active=bool(streak) and lasted >= config.health.failing_for,
        resolved=outcome not in _FAILING,
        since=since,
        detail=f"{latest['outcome']}: {latest['detail']}" if streak else None,
    )

    # suspect / selector: enough suspect fetches in a row; "selector" when all were empty
    need = config.health.suspect_in_a_row
    suspects = _streak(tail, lambda r: r["outcome"] == Outcome.SUSPECT.value)
    recent = suspects[:need]
    enough = len(suspects) >= need
    empty = enough and all(_EMPTY_SELECTION in (r["detail"] or "") for r in recent)
    first = suspects[-1]["started_at"] if suspects else None
    reasons = sorted({r["detail"] or "suspect" for r in recent})
    verdicts["selector"] = _Verdict(
        active=empty,
        resolved=outcome in _SUCCESS,
        since=first,
        detail=f"{len(suspects)} fetches in a row: {_EMPTY_SELECTION}",
    )
    verdicts["suspect"] = _Verdict(
        active=enough and not empty,
        resolved=outcome in _SUCCESS,
        since=first,
        detail=f"{len(suspects)} suspect fetches in a row: " + "; ".join(reasons),
    )

    refused = _streak(tail, lambda r: r["outcome"] == Outcome.ROBOTS_DISALLOWED.value)
    verdicts["robots"] = _Verdict(
        active=bool(refused),
        resolved=not refused,
        since=refused[-1]["started_at"] if refused else None,
        detail=latest["detail"] if refused else None,
    )
    return verdicts


def _streak(tail: Sequence[dict[str, Any]], bad: Any) -> list[dict[str, Any]]:
    """The newest-first run of rows at the head of ``tail`` that satisfy ``bad``."""
    out = []
    for row in tail:
        if not bad(row):
            break
        out.append(row)
    return out


def _failing_since(store: Store, doc_id: str) -> str | None:
    marks = ", ".join("?" for _ in _FAILING)
    row = store.query_one(
        f"SELECT min(started_at) AS since FROM fetches WHERE document_id = ? AND id > "
        f"coalesce((SELECT max(id) FROM fetches WHERE document_id = ? "
        f"AND outcome NOT IN ({marks})), 0)",
        (doc_id, doc_id, *(o.value for o in _FAILING)),
    )
    return row["since"] if row else None


def _parse(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


# --- e-mail --------------------------------------------------------------------------------


def _notify(
    store: Store,
    config: Config,
    doc_id: str,
    problem: str,
    kind: str,
    verdict: _Verdict,
    episode: int,
    now: dt.datetime,
) -> Transition:
    since = verdict.since or iso(now)
    if kind == "started":
        log.warning("health: %s %s since %s (%s)", doc_id, problem, since, verdict.detail)
        subject = f"{doc_id}: {problem} since {since}"
    else:
        lasted = _human((now - _parse(since)).total_seconds())
        log.warning("health: %s recovered from %s after %s", doc_id, problem, lasted)
        subject = f"{doc_id}: recovered from {problem} after {lasted}"
    delivery = None
    if config.operator:
        from monitor import notify

        delivery = notify.enqueue_health(
            store,
            config.operator,
            subject,
            _body(store, doc_id, problem, kind, since, verdict.detail, now),
            key=f"health.{doc_id}.{problem}.{episode}.{kind}",
            now=now,
        )
    else:
        log.warning("health: no 'operator' e-mail address in the config; nobody is told")
    return Transition(doc_id, problem, kind, since, verdict.detail, delivery)


def _body(
    store: Store,
    doc_id: str,
    problem: str,
    kind: str,
    since: str,
    detail: str | None,
    now: dt.datetime,
) -> str:
    doc = store.query_one("SELECT url FROM documents WHERE id = ?", (doc_id,))
    lines = [
        f"Document: {doc_id}",
        f"URL:      {doc['url'] if doc else '?'}",
        f"Problem:  {problem}",
        f"Since:    {since}",
    ]
    if kind == "started":
        lines += [f"Latest:   {detail or ''}", "", _HINTS[problem]]
    elif problem == "stale":
        lines += [f"Recovered: {iso(now)}", "", "The document is being fetched again."]
    else:
        lines += [f"Recovered: {iso(now)}", "", "The latest fetch was fine again."]
    lines += ["", "`policy-monitor status` shows every document's state."]
    return "\n".join(lines)


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"

"""The watchdog daemon (``policy-monitor run``) and the schedule it shares with ``status``.

One asyncio loop runs an APScheduler 3 ``AsyncIOScheduler``: one job per document (job id =
document id) on its ``interval`` with ``jitter``, plus an outbox job (every minute, and woken
when a check queues e-mail), a digest job (hourly; :func:`monitor.notify.enqueue_digests`
sends each subscriber at most one a day) and a config watch job. All checks share one
:class:`~monitor.fetch.Fetcher` (so per-host politeness holds across documents) and at most
``config.max_checks`` run at once.

Restart safety: a document's next run is computed from the fetch log (its last fetch +
interval), never from the time the daemon started, so a restart neither re-fetches everything
nor skips what fell due while it was down. Overdue documents run once (``coalesce``; no
``misfire_grace_time``, whose default of one second would silently drop late runs), spread
over up to ``jitter`` seconds so a thousand of them do not start in the same instant.

Stopping: SIGTERM / SIGINT stop new checks at once, let running checks finish for a few
seconds, then cancel them. The pipeline writes each check's rows in one transaction with no
``await`` inside it, so a cancelled check leaves nothing behind and is simply due again.
SIGHUP, or a change of the config file's mtime, reloads the documents; a config that does not
load is logged and the running one kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from monitor.config import Config, DocumentConfig
from monitor.errors import MonitorError
from monitor.models import Outcome
from monitor.store import Store, iso, utcnow

if TYPE_CHECKING:
    from pathlib import Path

    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from monitor.fetch import Fetcher
    from monitor.pipeline import CheckResult, Pipeline

__all__ = [
    "Daemon",
    "DocStatus",
    "check_deadline",
    "document_status",
    "first_run_time",
    "last_fetch_times",
    "next_due",
    "run_after_check",
    "run_after_retry_after",
    "run_daemon",
]

log = logging.getLogger("monitor.scheduler")

T = TypeVar("T")

_SUCCESS = tuple(
    o.value
    for o in (Outcome.NEW_VERSION, Outcome.UNCHANGED, Outcome.SAME_BODY, Outcome.NOT_MODIFIED)
)
_OUTBOX_EVERY = 60.0
_DIGEST_EVERY = 3600.0
_SWEEP_EVERY = 60.0  # the stale-document sweep (health.sweep_stale)
_MIN_INTERVAL = 1.0  # APScheduler refuses a zero interval
# After checks that end in `error` (a bug, a database that refuses writes), a document with a
# short interval waits at least this long, doubling up to the maximum: the same failure at
# full speed only fills the log.
_ERROR_BACKOFF = 60.0
_ERROR_BACKOFF_MAX = 3600.0
# The longest Retry-After a daemon check waits out before retrying: a longer one ends the check
# (http_error, the wait in its detail) and the document runs again at that time, rather than
# holding one of the max_checks slots while the other documents wait.
RETRY_AFTER_WAIT = 5.0
# On top of the fetches' own worst case: per-host queueing, extraction, analysis, the database.
_CHECK_MARGIN = 60.0


# --- the schedule (shared by the daemon and `status`) ------------------------------------------

# What decides the text a check gets: a reload that changes one of these checks the document
# soon instead of after its interval.
_FETCH_FIELDS = ("url", "select", "remove", "render", "headers", "ignore_robots")


def _fetch_changed(old: DocumentConfig, new: DocumentConfig) -> bool:
    return any(getattr(old, f) != getattr(new, f) for f in _FETCH_FIELDS)


def next_due(
    last_started: dt.datetime | None, interval: float, now: dt.datetime | None = None
) -> dt.datetime | None:
    """When a document is next due: its last fetch + interval; None = never fetched (due now).

    With ``now``, never later than ``now`` + interval: a fetch stamped in the future (a clock
    that was wrong, a database copied from elsewhere) must not postpone the document for as
    long as that clock was ahead."""
    if last_started is None:
        return None
    step = dt.timedelta(seconds=max(interval, _MIN_INTERVAL))
    due = last_started + step
    return min(due, now + step) if now is not None else due


def first_run_time(
    last_started: dt.datetime | None,
    interval: float,
    jitter: float,
    now: dt.datetime,
    rng: random.Random,
) -> dt.datetime:
    """The daemon's first run of a document after a (re)start or a reload.

    Not yet due: at its due time plus up to ``jitter``. Overdue or never fetched: now, spread
    over up to ``jitter`` (at most one interval) so a restart does not stampede."""
    due = next_due(last_started, interval, now)
    if due is not None and due > now:
        return due + dt.timedelta(seconds=rng.uniform(0, jitter))
    return now + dt.timedelta(seconds=rng.uniform(0, min(jitter, max(interval, _MIN_INTERVAL))))


def run_after_check(
    last_recorded: dt.datetime | None,
    started: dt.datetime,
    interval: float,
    now: dt.datetime,
    errors: int = 0,
) -> dt.datetime:
    """When to check a document again after a check that started at ``started`` (jitter not
    included). From the later of the newest recorded fetch and this check's start: if the
    check's row could not be written, the newest row is an older one, and counting from it
    would make the document due again at once, in a loop. ``errors`` consecutive checks that
    ended in ``error`` back off (see _ERROR_BACKOFF)."""
    base = max(last_recorded, started) if last_recorded is not None else started
    step = max(interval, _MIN_INTERVAL)
    if errors:
        step = max(step, min(_ERROR_BACKOFF * 2 ** (errors - 1), _ERROR_BACKOFF_MAX))
    return min(base, now) + dt.timedelta(seconds=step)


def run_after_retry_after(
    retry_after: float, interval: float, max_retry_after: float, now: dt.datetime
) -> dt.datetime:
    """When to come back to a document whose site answered 429 / 503 with a Retry-After the
    check did not wait out: then, even if sooner than the interval (the check is still to be
    done), but never later than the interval or ``max_retry_after`` (whichever is longer), so
    a site cannot silence a document for a week."""
    wait = min(retry_after, max(interval, max_retry_after, _MIN_INTERVAL))
    return now + dt.timedelta(seconds=max(wait, _MIN_INTERVAL))


def check_deadline(config: Config, doc: DocumentConfig) -> float:
    """The longest a daemon check of ``doc`` may run before it is cancelled and recorded as
    a timeout: robots.txt and the page, each with every retry at the full timeout, backoff and
    the Retry-After waits a check makes, plus a margin. A check stuck beyond it (a wedged
    browser, a hung stage) would otherwise hold one of the ``max_checks`` slots for good."""
    http = config.http
    waits = sum(http.backoff * 2**n * 1.1 for n in range(http.retries))
    one_url = (http.retries + 1) * http.timeout + waits + http.retries * RETRY_AFTER_WAIT
    page = one_url
    if doc.render == "browser":
        from monitor.render import render_deadline

        page = 2 * render_deadline(http)  # a render may be tried twice (a dead browser)
    queueing = http.per_host_delay * config.max_checks
    return one_url + page + queueing + _CHECK_MARGIN


def last_fetch_times(store: Store) -> dict[str, dt.datetime]:
    """The start of the latest fetch (the newest row, by id) of every document that has one:
    the same row the daemon reschedules from after each check and `status` shows, whatever
    the timestamps say. One index seek per document."""
    return {doc_id: _parse(at) for doc_id, at in store.latest_fetch_starts().items()}


@dataclass(slots=True)
class DocStatus:
    """One line of ``status``."""

    doc_id: str
    url: str
    interval: float
    render: str
    last_fetch: str | None = None
    outcome: str | None = None
    detail: str | None = None
    consecutive_failures: int = 0
    version: int | None = None
    version_date: str | None = None
    next_run: str | None = None  # None: never fetched, due as soon as the daemon runs
    overdue: bool = False
    health: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "document": self.doc_id,
            "url": self.url,
            "interval_s": self.interval,
            "render": self.render,
            "last_fetch": self.last_fetch,
            "outcome": self.outcome,
            "detail": self.detail,
            "consecutive_failures": self.consecutive_failures,
            "version": self.version,
            "version_date": self.version_date,
            "next_run": self.next_run,
            "overdue": self.overdue,
            "health": self.health,
        }


def document_status(
    store: Store, config: Config, now: dt.datetime | None = None
) -> list[DocStatus]:
    """Every configured document's state, from a handful of aggregate queries."""
    from monitor.health import open_problems

    current = now or utcnow()
    marks = ", ".join("?" for _ in _SUCCESS)
    # Per document, newest first through fetches(document_id, id): a handful of index seeks
    # each, however long the history (a GROUP BY over the table would read all of it).
    # Every fetch after the last good one failed or was suspect: that is the count.
    rows = store.query(
        "WITH heads AS (SELECT d.id AS document_id, "
        "(SELECT id FROM fetches WHERE document_id = d.id ORDER BY id DESC LIMIT 1) AS last_id, "
        f"(SELECT id FROM fetches WHERE document_id = d.id AND outcome IN ({marks}) "
        "ORDER BY id DESC LIMIT 1) AS good_id FROM documents d) "
        "SELECT h.document_id, f.started_at, f.outcome, f.detail, "
        "(SELECT count(*) FROM fetches c WHERE c.document_id = h.document_id "
        "AND c.id > coalesce(h.good_id, 0)) AS failures "
        "FROM heads h JOIN fetches f ON f.id = h.last_id",
        _SUCCESS,
    )
    last = {r["document_id"]: r for r in rows}
    failures = {r["document_id"]: r["failures"] for r in rows}
    versions = {
        r["document_id"]: r
        for r in store.query(
            "SELECT v.document_id, v.number, v.first_seen FROM versions v JOIN "
            "(SELECT document_id, max(number) AS n FROM versions GROUP BY document_id) m "
            "ON v.document_id = m.document_id AND v.number = m.n"
        )
    }
    problems = open_problems(store)
    out = []
    for doc in config.documents:
        st = DocStatus(doc.doc_id, doc.url, doc.interval, doc.render)
        if (row := last.get(doc.doc_id)) is not None:
            st.last_fetch, st.outcome, st.detail = row["started_at"], row["outcome"], row["detail"]
            due = next_due(_parse(row["started_at"]), doc.interval, current)
            assert due is not None
            st.next_run, st.overdue = iso(due), due <= current
        st.consecutive_failures = failures.get(doc.doc_id, 0)
        if (v := versions.get(doc.doc_id)) is not None:
            st.version, st.version_date = v["number"], v["first_seen"]
        st.health = [p.to_dict() for p in problems.get(doc.doc_id, [])]
        out.append(st)
    return out


def _parse(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


# --- the daemon --------------------------------------------------------------------------------


class Daemon:
    """``policy-monitor run``. ``reload`` reads the config again (SIGHUP, file change); it is
    also what the CLI uses to keep ``--db`` applied. ``grace`` is how long running checks may
    finish after SIGTERM; ``poll`` how often the config file's mtime is looked at;
    ``retry_after_wait`` the longest Retry-After a check waits out (see RETRY_AFTER_WAIT);
    ``deadline`` replaces every check's :func:`check_deadline`; ``clock`` is the stale
    sweep's idea of now."""

    def __init__(
        self,
        config: Config,
        *,
        reload: Callable[[], Config] | None = None,
        grace: float = 5.0,
        poll: float = 2.0,
        rng: random.Random | None = None,
        retry_after_wait: float = RETRY_AFTER_WAIT,
        deadline: float | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.config = config
        self._reload_config = reload
        self.grace = grace
        self.poll = poll
        self.retry_after_wait = retry_after_wait
        self.deadline = deadline  # None: check_deadline() of each document
        self.clock = clock  # what the stale sweep calls "now"
        self._rng = rng or random.Random()
        self._docs = {d.doc_id: d for d in config.documents}
        self._stop = asyncio.Event()
        self._stopping = False
        self._waiting: set[asyncio.Task[Any]] = set()
        self._running: set[asyncio.Task[Any]] = set()
        self._checking: set[str] = set()  # documents queued or being checked
        self._background: set[asyncio.Task[Any]] = set()
        self._outbox_busy = False
        self._outbox_again = False
        self._digests_due = False
        self._outbox_thread: asyncio.Future[Any] | None = None
        self._config_stamp = self._stamp()
        self.checks = 0
        self._store: Store | None = None
        self._pipeline: Pipeline | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._fetcher: Fetcher | None = None
        self._browser: Fetcher | None = None
        self._retired: list[Fetcher] = []  # replaced by a reload, closed when unused
        self._users: Counter[Fetcher] = Counter()  # running checks per fetcher
        self._errors: dict[str, int] = {}  # consecutive checks that ended in `error`
        self._planned: dict[str, dt.datetime] = {}  # the run last scheduled per document
        self._slots: asyncio.Semaphore | None = None
        self._signals = False

    # --- lifecycle ---------------------------------------------------------------------

    async def serve(self) -> None:
        """Run until :meth:`stop` (or SIGTERM / SIGINT)."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        from monitor.fetch import Fetcher
        from monitor.pipeline import Pipeline

        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        self._slots = asyncio.Semaphore(self.config.max_checks)
        with Store(self.config.database_path) as store:
            self._store = store
            self._pipeline = Pipeline(self.config, store)
            self._fetcher = Fetcher(self.config.http, retry_after_wait=self.retry_after_wait)
            for doc in self.config.documents:
                store.upsert_document(doc)
            self._write_missing_pages()
            self._scheduler = scheduler = AsyncIOScheduler(
                event_loop=loop,
                timezone=dt.UTC,
                # A job that fires while its previous check is still running (a slow site,
                # a long queue) finds it in _checking and returns at once: two instances so
                # that APScheduler does not log a warning for each of those.
                job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 2},
            )
            self._schedule(self.config.documents)
            scheduler.add_job(
                self._outbox, IntervalTrigger(seconds=_OUTBOX_EVERY), id="outbox:deliver"
            )
            scheduler.add_job(
                self._digests,
                IntervalTrigger(seconds=_DIGEST_EVERY),
                id="outbox:digests",
                next_run_time=utcnow() + dt.timedelta(seconds=5),
            )
            scheduler.add_job(self._sweep, IntervalTrigger(seconds=_SWEEP_EVERY), id="health:stale")
            if self.config.source:
                scheduler.add_job(
                    self._watch_config, IntervalTrigger(seconds=self.poll), id="config:watch"
                )
            scheduler.start()
            log.info(
                "daemon started: %d document(s), %d check(s) at a time, database %s",
                len(self._docs),
                self.config.max_checks,
                self.config.database_path,
            )
            try:
                await self._stop.wait()
            finally:
                await self._shutdown()
                self._remove_signals()
        log.info("daemon stopped after %d check(s)", self.checks)

    def _write_pages(self, alert_ids: list[int]) -> list[Path]:
        """The pages of ``alert_ids`` and of every alert without one, the index and the feed
        (see :func:`monitor.pages.write_alert_pages`); a failure is logged, not raised."""
        from monitor import pages

        assert self._store is not None
        try:
            return pages.write_alert_pages(
                self._store,
                self.config.reports_path,
                alert_ids=alert_ids,
                base_url=self.config.base_url,
            )
        except Exception:  # a page bug must not stop the watch
            log.exception("writing alert pages failed")
            return []

    def _write_missing_pages(self) -> None:
        # Pages are otherwise written when a check raises an alert: a new reports directory,
        # an `import` or a run that stopped before publishing would leave the alerts that
        # exist without pages (and the index and feed stale) until the next alert.
        written = self._write_pages([])
        log.info("alert pages: %d written in %s", len(written), self.config.reports_path)

    def stop(self) -> None:
        """Stop accepting checks; :meth:`serve` returns after the grace period at most."""
        if not self._stopping:
            log.info("stopping: no new checks; %d running", len(self._running))
        self._stopping = True
        self._stop.set()

    def reload(self, why: str = "SIGHUP") -> bool:
        """Read the config again and apply its documents; False (and the old config kept)
        when it does not load."""
        if self._reload_config is None:
            return False
        try:
            new = self._reload_config()
        except MonitorError as exc:
            log.error("config reload (%s) failed; keeping the running config: %s", why, exc)
            return False
        self._apply(new, why)
        return True

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled in the main thread (tests run us elsewhere)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self._signals = True

    def _remove_signals(self) -> None:
        if self._signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self._signals = False

    async def _shutdown(self) -> None:
        scheduler = self._scheduler
        if scheduler is not None and scheduler.running:
            scheduler.pause()  # no new job submissions from here on
        for task in list(self._waiting):
            task.cancel()  # queued behind the limit: nothing started, nothing to finish
        running = set(self._running)
        if running:
            _, late = await asyncio.wait(running, timeout=self.grace)
            for task in late:
                log.warning("cancelling a check still running after %.0f s", self.grace)
                task.cancel()
        pending = self._waiting | self._running | self._background
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._outbox_thread is not None and not self._outbox_thread.done():
            # A delivery thread stuck on a dead SMTP server must not hold the exit: the
            # outbox marks an interrupted send as 'unknown' next time.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._outbox_thread), self.grace)
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        for fetcher in (self._fetcher, self._browser, *self._retired):
            if fetcher is not None:
                with contextlib.suppress(Exception):
                    await fetcher.aclose()
        if self._background:  # closes of replaced clients that the last checks started
            await asyncio.gather(*self._background, return_exceptions=True)

    # --- scheduling --------------------------------------------------------------------

    def _schedule(self, docs: Iterable[DocumentConfig], *, fresh: bool = False) -> None:
        """Add or replace the jobs of ``docs``, timed from the fetch log; ``fresh``: as if
        never fetched (due now, spread over the jitter)."""
        from apscheduler.triggers.interval import IntervalTrigger

        assert self._scheduler is not None and self._store is not None
        last = {} if fresh else last_fetch_times(self._store)
        now = utcnow()
        for doc in docs:
            when = first_run_time(
                last.get(doc.doc_id), doc.interval, self.config.jitter, now, self._rng
            )
            self._scheduler.add_job(
                self._check,
                IntervalTrigger(
                    seconds=max(doc.interval, _MIN_INTERVAL),
                    jitter=self.config.jitter or None,
                    timezone=dt.UTC,
                ),
                args=[doc.doc_id],
                id=doc.doc_id,
                name=doc.doc_id,
                next_run_time=when,
                replace_existing=True,
            )
            self._planned[doc.doc_id] = when
            log.debug("%s: next run %s", doc.doc_id, iso(when))

    def _reschedule_after(
        self, doc: DocumentConfig, result: CheckResult, started: dt.datetime
    ) -> None:
        """Next run = this check's time + interval + jitter (see run_after_check), not the
        trigger's idea of when the job was meant to fire."""
        from apscheduler.jobstores.base import JobLookupError

        assert self._scheduler is not None and self._store is not None
        if self._stopping:
            return
        if result.outcome is Outcome.ERROR:
            self._errors[doc.doc_id] = self._errors.get(doc.doc_id, 0) + 1
        else:
            self._errors.pop(doc.doc_id, None)
        try:
            row = self._store.last_fetch(doc.doc_id)
        except Exception:  # the database is in trouble: count from this check's start
            log.exception("reading the last fetch of %s failed", doc.doc_id)
            row = None
        now = utcnow()
        if result.retry_after is not None:
            when = run_after_retry_after(
                result.retry_after, doc.interval, self.config.http.max_retry_after, now
            )
            # a little spread so the documents of one rate-limited host do not all return at
            # the same second
            spread = min(self.config.jitter, 0.1 * result.retry_after)
            when += dt.timedelta(seconds=self._rng.uniform(0, spread))
        else:
            when = run_after_check(
                _parse(row["started_at"]) if row else None,
                started,
                doc.interval,
                now,
                self._errors.get(doc.doc_id, 0),
            ) + dt.timedelta(seconds=self._rng.uniform(0, self.config.jitter))
        with contextlib.suppress(JobLookupError):  # removed by a reload meanwhile
            self._scheduler.modify_job(doc.doc_id, next_run_time=when)
            self._planned[doc.doc_id] = when

    def _apply(self, new: Config, why: str) -> None:
        from monitor.fetch import Fetcher

        assert self._scheduler is not None and self._store is not None
        assert self._pipeline is not None
        old = self.config
        if new.database_path != old.database_path:
            log.warning(
                "config reload: a new database path needs a restart; keeping %s", old.database_path
            )
            new = new.model_copy(update={"database": str(old.database_path)})
        if new.http != old.http:
            # Running checks keep the old client; it is closed as soon as none uses it.
            if self._fetcher is not None:
                self._retire(self._fetcher)
            self._fetcher = Fetcher(new.http, retry_after_wait=self.retry_after_wait)
        if (new.http != old.http or new.chromium != old.chromium) and self._browser is not None:
            self._retire(self._browser)
            self._browser = None
        if new.max_checks != old.max_checks:
            log.warning("config reload: max_checks changes on restart (now %d)", old.max_checks)
        new_docs = {d.doc_id: d for d in new.documents}
        removed = [d for d in self._docs if d not in new_docs]
        added = [d for i, d in new_docs.items() if i not in self._docs]
        changed = [d for i, d in new_docs.items() if i in self._docs and self._docs[i] != d]
        for doc_id in removed:
            self._scheduler.remove_job(doc_id)
            self._planned.pop(doc_id, None)
            self._errors.pop(doc_id, None)
        for doc in (*added, *changed):
            self._store.upsert_document(doc)
        # A document now fetched or extracted differently (a fixed selector, a moved page) is
        # checked soon: waiting out its interval would leave the old, maybe broken, setting's
        # outcome standing for hours.
        refetch = [d for d in changed if _fetch_changed(self._docs[d.doc_id], d)]
        soon = {d.doc_id for d in refetch}
        if new.jitter == old.jitter:
            retimed = [d for d in changed if d.interval != self._docs[d.doc_id].interval]
        else:  # every document kept from the old config
            retimed = [d for d in new.documents if d.doc_id in self._docs]
        retimed = [d for d in retimed if d.doc_id not in soon]
        self.config = new
        self._pipeline.config = new
        self._docs = new_docs
        self._schedule([*added, *retimed])
        self._schedule(refetch, fresh=True)
        self._config_stamp = self._stamp()
        log.info(
            "config reloaded (%s): %d document(s); %d added, %d removed, %d changed",
            why,
            len(new_docs),
            len(added),
            len(removed),
            len(changed),
        )

    def _retire(self, fetcher: Fetcher) -> None:
        self._retired.append(fetcher)
        if not self._users[fetcher]:
            self._spawn(self._close_retired(fetcher))

    async def _close_retired(self, fetcher: Fetcher) -> None:
        if fetcher in self._retired:
            self._retired.remove(fetcher)
            try:
                await fetcher.aclose()
            except Exception:
                log.exception("closing a replaced HTTP client / browser failed")

    def _stamp(self) -> tuple[float, int] | None:
        if not self.config.source:
            return None
        try:
            st = os.stat(self.config.source)
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    async def _watch_config(self) -> None:
        stamp = self._stamp()
        if stamp is not None and stamp != self._config_stamp:
            self._config_stamp = stamp
            self.reload("config file changed")

    # --- jobs --------------------------------------------------------------------------

    async def _check(self, doc_id: str) -> None:
        assert self._slots is not None and self._pipeline is not None
        if self._stopping or doc_id in self._checking:
            return
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        self._checking.add(doc_id)
        try:
            async with self._slots:
                self._waiting.discard(task)
                doc = self._docs.get(doc_id)
                if self._stopping or doc is None:
                    return
                self._running.add(task)
                started = utcnow()
                deadline = self.deadline or check_deadline(self.config, doc)
                fetcher = self._fetcher_for(doc)
                self._users[fetcher] += 1
                try:
                    async with asyncio.timeout(deadline):
                        result = await self._pipeline.check_one(doc, fetcher)
                except TimeoutError:
                    result = self._overran(doc, started, deadline)
                finally:
                    self._running.discard(task)
                    self._users[fetcher] -= 1
                    if not self._users[fetcher]:
                        del self._users[fetcher]
                        if fetcher in self._retired:  # replaced by a reload meanwhile
                            self._spawn(self._close_retired(fetcher))
            self.checks += 1
            self._after_check(doc, result, started)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Stopping: a check queued behind max_checks, or one cancelled after the grace
            # period, wrote nothing and runs at the next start. Ending quietly keeps
            # APScheduler from logging each one as a job that raised (with a traceback).
        finally:
            self._waiting.discard(task)
            self._checking.discard(doc_id)

    def _overran(self, doc: DocumentConfig, started: dt.datetime, deadline: float) -> CheckResult:
        """Record a check cancelled at its deadline. It was cancelled at an ``await``, and the
        pipeline never awaits inside a transaction, so it left nothing half-written."""
        from monitor.pipeline import CheckResult

        assert self._store is not None
        detail = f"check did not finish within {deadline:.0f} s"
        log.warning("%s timeout (%s)", doc.doc_id, detail)
        try:
            self._store.record_fetch(
                doc.doc_id,
                started_at=started,
                url=doc.url,
                outcome=Outcome.TIMEOUT.value,
                detail=detail,
                duration_ms=round(deadline * 1000),
            )
        except Exception:
            log.exception("could not record the timed-out check of %s", doc.doc_id)
        return CheckResult(doc.doc_id, Outcome.TIMEOUT, detail=detail, duration=deadline)

    async def _sweep(self) -> None:
        """Tell the operator about documents that stopped being checked (health.sweep_stale)."""
        from monitor import health

        assert self._store is not None
        try:
            transitions = health.sweep_stale(
                self._store, self.config, self._planned, now=self.clock()
            )
        except Exception:  # a health bug must not stop the watch
            log.exception("stale-document sweep failed")
            return
        if any(t.delivery_id is not None for t in transitions):
            self._spawn(self._outbox())

    def _fetcher_for(self, doc: DocumentConfig) -> Fetcher:
        assert self._fetcher is not None
        if doc.render != "browser":
            return self._fetcher
        if self._browser is None:
            from monitor.render import BrowserFetcher

            self._browser = BrowserFetcher(
                self.config.http,
                executable_path=self.config.chromium,
                retry_after_wait=self.retry_after_wait,
            )
        return self._browser

    def _after_check(self, doc: DocumentConfig, result: CheckResult, started: dt.datetime) -> None:
        from monitor import health

        assert self._store is not None and self._pipeline is not None
        mail = bool(result.alerts)
        try:
            transitions = health.update(self._store, self.config, [doc.doc_id])
            mail = mail or any(t.delivery_id is not None for t in transitions)
        except Exception:  # a health bug must not stop the watch
            log.exception("health decision for %s failed", doc.doc_id)
        if self._pipeline.new_alerts:
            ids, self._pipeline.new_alerts = self._pipeline.new_alerts, []
            self._write_pages(ids)
        self._reschedule_after(doc, result, started)
        if mail:
            self._spawn(self._outbox())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _outbox(self, digests: bool = False) -> None:
        """Deliver due e-mail (and queue due digests) in a thread, since smtplib blocks, with
        its own connection. A call while a run is under way makes that run go round once more
        instead of overlapping it, so a wake-up is never lost."""
        self._digests_due = self._digests_due or digests
        if self._outbox_busy:
            self._outbox_again = True
            return
        self._outbox_busy = True
        try:
            while not self._stopping:
                self._outbox_again = False
                due, self._digests_due = self._digests_due, False
                await self._in_thread(_deliver, self.config, due)
                if not self._outbox_again:
                    break
        finally:
            self._outbox_busy = False

    async def _digests(self) -> None:
        await self._outbox(digests=True)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T | None:
        """Run ``fn`` in a daemon thread: unlike the default executor, a thread stuck in an
        SMTP conversation does not hold the process at exit."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if not future.done():
                (future.set_result if ok else future.set_exception)(value)

        def work() -> None:
            try:
                value: Any = fn(*args)
                ok = True
            except Exception as exc:
                value, ok = exc, False
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(settle, ok, value)

        self._outbox_thread = future
        threading.Thread(target=work, name="policy-monitor-outbox", daemon=True).start()
        try:
            return await asyncio.shield(future)
        except Exception:
            log.exception("outbox run failed")
            return None


def _deliver(config: Config, digests: bool) -> None:
    from monitor import notify

    with Store(config.database_path) as store:
        if digests:
            queued = notify.enqueue_digests(store, base_url=config.base_url, smtp=config.smtp)
            if queued:
                log.info("queued %d digest(s)", len(queued))
        if config.smtp is None:
            return
        report = notify.deliver_pending(store, config.smtp)
        if report.sent or report.failed or report.deferred:
            log.info("outbox: %s", report.summary())


def run_daemon(config: Config, *, reload: Callable[[], Config] | None = None) -> None:
    """Run the daemon in this process until SIGTERM / SIGINT."""
    daemon = Daemon(config, reload=reload)
    asyncio.run(daemon.serve())

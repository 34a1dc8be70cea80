"""The orchestrator: one document through every stage. The CLI (`check`, `import`) and the
daemon (`run`) all call :class:`Pipeline`, so there is exactly one code path.

::

    fetch -> extract -> suspect guard -> store version -> analyse -> diff -> decide alerts
                                                                                -> outbox

Stages are pure functions of their inputs; only this module touches the store. Everything a
new version brings (version row, blob, findings, change record, alerts, outbox rows, the fetch
row) is written in one transaction: a crash leaves all of it or none of it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from monitor.config import Config, DocumentConfig
from monitor.fetch import Fetcher
from monitor.models import EXTRACTOR_VERSION, Analysis, Extracted, FetchResult, Outcome
from monitor.store import Store, Version, sha256_bytes, sha256_text, utcnow

if TYPE_CHECKING:
    from monitor.analyse import RulePack
    from monitor.notify import DeliveryReport

log = logging.getLogger("monitor.pipeline")

# Suspect reasons that say "this is not the policy" (a captcha, a login wall, an error page,
# a selector that matched nothing). They are never accepted as a version, however often they
# come back. Only a *shrink* can be real (a platform really did shorten its policy), so only a
# shrink that persists is accepted.
_NEVER_ACCEPTED = ("empty", "captcha", "login", "error", "bot", "status")


@functools.lru_cache(maxsize=4096)
def extraction_key(select: tuple[str, ...], remove: tuple[str, ...], render: str) -> str:
    """Fingerprint of what turns a document's body into text (see EXTRACTOR_VERSION)."""
    return sha256_text(json.dumps([EXTRACTOR_VERSION, select, remove, render]))[:16]


def _extraction_key(doc: DocumentConfig) -> str:
    return extraction_key(tuple(doc.select), tuple(doc.remove), doc.render)


@dataclass(slots=True)
class IngestResult:
    version: Version
    new_version: bool
    analysis: Analysis
    change_summary: dict[str, int] | None
    alert_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class CheckResult:
    """What one check of one document came to; one row of `check`'s summary table."""

    doc_id: str
    outcome: Outcome
    version: int | None = None  # the document's current version number after the check
    new_version: bool = False
    status: int | None = None
    detail: str | None = None
    duration: float = 0.0
    changes: dict[str, int] | None = None
    alerts: list[int] = field(default_factory=list)
    ai_training: bool | None = None
    consent: str | None = None
    retry_after: float | None = None  # the site asked us to come back in this many seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "document": self.doc_id,
            "outcome": self.outcome.value,
            "new_version": self.new_version,
            "version": self.version,
            "status": self.status,
            "detail": self.detail,
            "duration_ms": round(self.duration * 1000),
            "changes": self.changes,
            "alerts": self.alerts,
            "ai_training": self.ai_training,
            "consent": self.consent,
            "retry_after": self.retry_after,
        }


def shard_by_host(docs: Sequence[DocumentConfig], workers: int) -> list[list[DocumentConfig]]:
    """Split documents into at most ``workers`` shards, never splitting a host, balanced by
    document count (largest host first onto the lightest shard)."""
    groups: dict[str, list[DocumentConfig]] = {}
    for doc in docs:
        groups.setdefault((urlsplit(doc.url).hostname or "").lower(), []).append(doc)
    shards: list[list[DocumentConfig]] = [[] for _ in range(max(1, min(workers, len(groups))))]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(shards, key=len).extend(group)
    return [s for s in shards if s]


def _run_shard(config: Config, docs: list[DocumentConfig], notify: bool, queue: Any) -> None:
    """Body of one worker process of :meth:`Pipeline.check_sharded`."""
    try:
        with Store(config.database_path) as store:
            pipeline = Pipeline(config, store, notify=notify)
            asyncio.run(pipeline.check(docs, on_result=lambda r: queue.put(("result", r))))
            queue.put(("alerts", pipeline.new_alerts))
    finally:
        queue.put(("done", None))


@dataclass(slots=True)
class Prepared:
    """What the CPU-bound part of a check found (see :meth:`Pipeline._prepare`)."""

    extracted: Extracted
    text_sha: str
    suspect: str | None
    analysis: Analysis | None = None
    change_summary: dict[str, int] | None = None


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


@dataclass(slots=True)
class PublishResult:
    pages: list[Path]
    delivery: DeliveryReport | None


AlertHook = Callable[[Store, str, Version | None, Version, Analysis | None, Analysis], list[int]]


class Pipeline:
    """Runs documents through the stages against one store.

    ``transport`` is the seam for tests (an httpx transport). ``alert_hook`` decides and
    stores alerts for a new version; the default records them (:mod:`monitor.alerts`) and,
    when ``notify`` is true, puts their e-mails in the outbox in the same transaction, so an
    alert never exists without its e-mails. ``import`` passes ``notify=False``.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        packs: Sequence[RulePack] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        alert_hook: AlertHook | None = None,
        notify: bool = True,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.config = config
        self.store = store
        self._packs = list(packs) if packs is not None else None
        self._packs_lock = threading.Lock()
        self._known_docs: set[str] = set()
        self.transport = transport
        self.alert_hook: AlertHook = alert_hook or self._record_alerts
        self.notify = notify
        self.clock = clock
        # Worker processes use their own clock: only the real one can be shared with them.
        self._default_clock = clock is utcnow and transport is None and alert_hook is None
        self.new_alerts: list[int] = []  # alerts raised since the last publish()

    def _record_alerts(
        self,
        store: Store,
        doc_id: str,
        previous: Version | None,
        version: Version,
        prev_analysis: Analysis | None,
        analysis: Analysis,
    ) -> list[int]:
        from monitor import alerts, notify

        origin = "check"
        if version.source == "import":
            origin = "import-notify" if self.notify else "import"
        ids = alerts.record_alerts(
            store, doc_id, previous, version, prev_analysis, analysis, origin=origin
        )
        if self.notify:
            for alert_id in ids:
                notify.enqueue_alert(
                    store,
                    alert_id,
                    base_url=self.config.base_url,
                    smtp=self.config.smtp,
                )
        return ids

    def publish(self) -> PublishResult:
        """After a pass (or an import): write the pages of new alerts and of any alert
        without one, the index and the feed; with ``notify``, queue the daily digests that
        are due and deliver what waits in the outbox."""
        from monitor import notify, pages

        written = pages.write_alert_pages(
            self.store,
            self.config.reports_path,
            alert_ids=self.new_alerts,
            base_url=self.config.base_url,
        )
        self.new_alerts = []
        report = None
        if self.notify:
            notify.enqueue_digests(
                self.store,
                base_url=self.config.base_url,
                smtp=self.config.smtp,
            )
            if self.config.smtp is not None:
                report = notify.deliver_pending(self.store, self.config.smtp)
        return PublishResult(written, report)

    # --- many documents -----------------------------------------------------------------

    def select(self, doc_ids: Sequence[str] | None) -> list[DocumentConfig]:
        if not doc_ids:
            return list(self.config.documents)
        return [self.config.document(d) for d in doc_ids]

    async def check(
        self,
        docs: Sequence[DocumentConfig],
        *,
        on_result: Callable[[CheckResult], None] | None = None,
        fetcher: Fetcher | None = None,
    ) -> list[CheckResult]:
        """Check documents concurrently (the fetcher enforces per-host limits)."""
        unknown = [d for d in docs if d.doc_id not in self._known_docs]
        if unknown:  # one transaction for all, not one commit per document in check_one
            self.store.upsert_documents(unknown)
            self._known_docs.update(d.doc_id for d in unknown)
        own = fetcher is None
        f = fetcher or Fetcher(self.config.http, transport=self.transport)
        limit = asyncio.Semaphore(self.config.http.max_concurrency)
        browser: list[Fetcher] = []  # render: browser documents share one, made on demand

        def fetcher_for(doc: DocumentConfig) -> Fetcher:
            if doc.render != "browser":
                return f
            if not browser:
                from monitor.render import BrowserFetcher

                browser.append(
                    BrowserFetcher(self.config.http, executable_path=self.config.chromium)
                )
            return browser[0]

        async def one(doc: DocumentConfig) -> CheckResult:
            async with limit:
                result = await self.check_one(doc, fetcher_for(doc))
            if on_result:
                on_result(result)
            return result

        try:
            return list(await asyncio.gather(*(one(d) for d in docs)))
        finally:
            for b in browser:
                await b.aclose()
            if own:
                await f.aclose()

    def run_pass(
        self,
        docs: Sequence[DocumentConfig],
        *,
        on_result: Callable[[CheckResult], None] | None = None,
    ) -> list[CheckResult]:
        """One synchronous pass (what ``check`` does): in several processes when there are
        many documents (``sharding_from``) on several hosts, else in this one."""
        workers = self.config.workers or os.cpu_count() or 1
        if workers > 1 and len(docs) >= self.config.sharding_from and self._default_clock:
            return self.check_sharded(docs, workers=workers, on_result=on_result)
        return asyncio.run(self.check(docs, on_result=on_result))

    def check_sharded(
        self,
        docs: Sequence[DocumentConfig],
        *,
        workers: int,
        on_result: Callable[[CheckResult], None] | None = None,
    ) -> list[CheckResult]:
        """Check documents in ``workers`` processes, each owning whole hosts.

        One Python process spends most of a pass over unchanged pages in the HTTP client and
        SQLite, on one core. Documents are grouped by host and each group goes to exactly one
        process, so per-host concurrency and delay hold as in a single process; SQLite in WAL
        mode with a busy timeout takes the short write transactions of both. Falls back to
        :meth:`check` when there is nothing to split.
        """
        shards = shard_by_host(docs, workers)
        if len(shards) < 2:
            return asyncio.run(self.check(docs, on_result=on_result))
        ctx = multiprocessing.get_context("fork")
        queue: Any = ctx.SimpleQueue()
        procs = [
            ctx.Process(
                target=_run_shard, args=(self.config, shard, self.notify, queue), daemon=True
            )
            for shard in shards
        ]
        for proc in procs:
            proc.start()
        results: list[CheckResult] = []
        running = len(procs)
        while running:
            kind, payload = queue.get()
            if kind == "result":
                results.append(payload)
                if on_result:
                    on_result(payload)
            elif kind == "alerts":
                self.new_alerts.extend(payload)
            else:  # "done"
                running -= 1
        for proc in procs:
            proc.join()
        order = {d.doc_id: i for i, d in enumerate(docs)}
        results.sort(key=lambda r: order.get(r.doc_id, 0))
        checked = {r.doc_id for r in results}
        missing = [d for d in docs if d.doc_id not in checked]
        for doc in missing:  # a worker died: say so rather than pretend it was checked
            results.append(CheckResult(doc.doc_id, Outcome.ERROR, detail="worker process died"))
        return results

    # --- one document -------------------------------------------------------------------

    async def check_one(self, doc: DocumentConfig, fetcher: Fetcher) -> CheckResult:
        """Fetch and process one document. Never raises for the document's own trouble:
        every failure is an outcome recorded in the fetch log."""
        t0 = time.monotonic()
        started = self.clock()  # when the check began, not when its fetch came back
        doc_id = doc.doc_id
        try:
            if doc_id not in self._known_docs:
                self.store.upsert_document(doc)
                self._known_docs.add(doc_id)
            good = self.store.last_good_fetch(doc_id)
            if good is not None and good["extract_key"] != _extraction_key(doc):
                good = None  # read with other settings: its validators and body prove nothing
            fetched = await fetcher.fetch(
                doc.url,
                etag=good["etag"] if good else None,
                last_modified=good["last_modified"] if good else None,
                ignore_robots=doc.ignore_robots,
                headers=doc.headers or None,
            )
            result = await self._process(doc, fetched, good, started)
        except Exception as exc:  # one document's bug must not stop the others
            log.exception("check of %s failed", doc_id)
            result = CheckResult(doc_id, Outcome.ERROR, detail=f"{type(exc).__name__}: {exc}")
            try:
                self.store.record_fetch(
                    doc_id,
                    started_at=started,
                    url=doc.url,
                    outcome=Outcome.ERROR.value,
                    detail=result.detail,
                )
            except Exception:
                log.exception("could not record the failed check of %s", doc_id)
        result.duration = time.monotonic() - t0
        log.info(
            "%s %s%s (%.0f ms)",
            doc_id,
            result.outcome.value,
            f" v{result.version}" if result.new_version else "",
            result.duration * 1000,
        )
        return result

    async def _process(
        self,
        doc: DocumentConfig,
        fetched: FetchResult,
        good: dict[str, Any] | None,
        started: dt.datetime,
    ) -> CheckResult:
        doc_id = doc.doc_id
        # The pipeline's clock, not the fetcher's: the demo and tests replay dated histories.
        seen_at = self.clock()
        base: dict[str, Any] = {
            "started_at": started,
            "duration_ms": round(fetched.elapsed * 1000),
            "url": fetched.url,
            "final_url": fetched.final_url,
            "status": fetched.status,
            "etag": fetched.etag,
            "last_modified": fetched.last_modified,
            "attempts": fetched.attempts,
            "robots_overridden": int(fetched.robots_overridden),
            "extract_key": _extraction_key(doc),
        }

        def done(outcome: Outcome, detail: str | None = None, **extra: Any) -> CheckResult:
            # The common paths (304, same body, failures) need only the latest version's
            # number, not its text: keep them to a couple of small queries.
            head = self.store.latest_version_head(doc_id)
            with self.store.transaction():
                if head is not None and outcome in (
                    Outcome.NOT_MODIFIED,
                    Outcome.SAME_BODY,
                    Outcome.UNCHANGED,
                ):
                    self.store.touch_version(head["id"], seen_at)
                    extra.setdefault("version_id", head["id"])
                    if outcome == Outcome.NOT_MODIFIED and good:
                        # A 304 carries no body: keep the validators and hash we already have.
                        extra.setdefault("body_sha256", good["body_sha256"])
                        extra.setdefault("text_sha256", good["text_sha256"])
                        base["etag"] = base["etag"] or good["etag"]
                        base["last_modified"] = base["last_modified"] or good["last_modified"]
                self.store.record_fetch(
                    doc_id, **base, outcome=outcome.value, detail=detail, **extra
                )
            return CheckResult(
                doc_id,
                outcome,
                version=head["number"] if head else None,
                status=fetched.status,
                detail=detail,
                ai_training=_opt_bool(head["ai_training"]) if head else None,
                consent=head["consent"] if head else None,
                retry_after=fetched.retry_after,
            )

        if fetched.outcome is not None:
            return done(fetched.outcome, fetched.error)
        body = fetched.body or b""
        body_sha = sha256_bytes(body)
        if good is not None and good["body_sha256"] == body_sha:
            return done(Outcome.SAME_BODY, body_sha256=body_sha, text_sha256=good["text_sha256"])

        latest = self.store.latest_version(doc_id)
        # Extraction, analysis and diff are CPU work: run them off the event loop so the
        # responses of other documents keep being read (a blocked loop makes them time out).
        prepared = await asyncio.to_thread(
            self._prepare, doc, fetched.text or "", latest.text if latest else None
        )
        reason = prepared.suspect
        if reason and not self._accept_persistent_suspect(doc_id, reason, prepared.text_sha):
            with self.store.transaction():
                blob = self.store.put_suspect_blob(doc_id, body, fetched.content_type, seen_at)
            return done(Outcome.SUSPECT, reason, body_sha256=blob, text_sha256=prepared.text_sha)
        if latest is not None and latest.sha256 == prepared.text_sha:
            return done(Outcome.UNCHANGED, body_sha256=body_sha, text_sha256=prepared.text_sha)
        if prepared.analysis is None:  # an accepted persistent suspect was not analysed yet
            prepared = await asyncio.to_thread(
                self._prepare, doc, fetched.text or "", latest.text if latest else None, True
            )

        with self.store.transaction():
            blob = self.store.put_blob(body, fetched.content_type, seen_at)
            ingest = self.ingest(
                doc_id,
                prepared.extracted,
                seen_at=seen_at,
                source="fetch",
                blob_sha256=blob,
                source_url=fetched.final_url,
                analysis=prepared.analysis,
                change_summary=prepared.change_summary,
            )
            self.store.record_fetch(
                doc_id,
                **base,
                outcome=Outcome.NEW_VERSION.value,
                detail=f"accepted after {self.config.suspect.accept_after} identical suspect fetches: {reason}"
                if reason
                else None,
                body_sha256=blob,
                text_sha256=prepared.text_sha,
                version_id=ingest.version.id,
            )
        return CheckResult(
            doc_id,
            Outcome.NEW_VERSION,
            version=ingest.version.number,
            new_version=True,
            status=fetched.status,
            changes=ingest.change_summary,
            alerts=ingest.alert_ids,
            ai_training=ingest.analysis.ai_training,
            consent=ingest.analysis.consent.value,
        )

    def _prepare(
        self, doc: DocumentConfig, html: str, previous: str | None, force: bool = False
    ) -> Prepared:
        """The pure, CPU-bound part of a check: extract, judge, and (for a text that will
        become a version) analyse and diff. Touches neither the store nor the network."""
        from monitor import extract
        from monitor.diff import diff_counts

        extracted = extract.extract_html(html, select=doc.select, remove=doc.remove)
        text_sha = sha256_text(extracted.text)
        reason = extract.suspect_reason(
            extracted,
            status=200,
            previous_text=previous,
            min_ratio=self.config.suspect.min_ratio,
            min_chars=self.config.suspect.min_chars,
        )
        prepared = Prepared(extracted, text_sha, reason)
        if (force or reason is None) and (previous is None or sha256_text(previous) != text_sha):
            prepared.analysis = self.analyse(extracted.text)
            if previous is not None:
                prepared.change_summary = diff_counts(previous, extracted.text)
        return prepared

    def _accept_persistent_suspect(self, doc_id: str, reason: str, text_sha: str) -> bool:
        """The documented rule: a *shrunk* text (not a blocked page, not an empty selection)
        that comes back identical on ``suspect.accept_after`` consecutive fetches (this one
        included) is accepted as a real new version."""
        if any(word in reason.lower() for word in _NEVER_ACCEPTED):
            return False
        need = self.config.suspect.accept_after - 1
        previous = self.store.fetches(doc_id, limit=need)
        return len(previous) == need and all(
            f["outcome"] == Outcome.SUSPECT.value and f["text_sha256"] == text_sha for f in previous
        )

    # --- a new text, from a fetch or an import ------------------------------------------

    def ingest(
        self,
        doc_id: str,
        extracted: Extracted,
        *,
        seen_at: dt.datetime,
        source: str,
        blob_sha256: str | None = None,
        source_url: str | None = None,
        analysis: Analysis | None = None,
        change_summary: dict[str, int] | None = None,
    ) -> IngestResult:
        """Store a text as the document's next version (if it differs from the latest),
        analyse it, diff it against the previous one and decide alerts, in one transaction.

        ``analysis`` and ``change_summary`` may be computed beforehand (in a thread or a
        process pool: they are pure); the change summary must be against the latest version."""
        from monitor.diff import diff_counts

        with self.store.transaction():
            previous = self.store.latest_version(doc_id)
            if previous is not None and previous.sha256 == sha256_text(extracted.text):
                self.store.touch_version(previous.id, seen_at)
                stored = self.store.analysis(previous)
                if stored is None:
                    stored = analysis or self.analyse(previous.text)
                    self.store.save_analysis(previous.id, stored)
                return IngestResult(previous, False, stored, None)
            version = self.store.add_version(
                doc_id,
                text=extracted.text,
                seen_at=seen_at,
                source=source,
                title=extracted.title,
                blob_sha256=blob_sha256,
                effective_date=extracted.effective_date,
                source_url=source_url,
            )
            if analysis is None:
                analysis = self.analyse(version.text)
            self.store.save_analysis(version.id, analysis)
            summary = None
            if previous is not None:
                summary = change_summary or diff_counts(previous.text, version.text)
                self.store.record_change(doc_id, previous.id, version.id, summary, seen_at)
            prev_analysis = self.store.analysis(previous) if previous else None
            alert_ids = self.alert_hook(
                self.store, doc_id, previous, version, prev_analysis, analysis
            )
            self.new_alerts.extend(alert_ids)
            return IngestResult(
                self.store.version_by_id(version.id), True, analysis, summary, alert_ids
            )

    def analyse(self, text: str) -> Analysis:
        from monitor.analyse import analyse_text

        return analyse_text(text, self.packs)

    @property
    def packs(self) -> list[RulePack]:
        # Compiling the packs costs most of a second: a pass over unchanged pages never needs them.
        with self._packs_lock:  # first analyses of a pass run in several threads at once
            if self._packs is None:
                from monitor.analyse import load_packs

                self._packs = load_packs()
            return self._packs

"""The command line: a thin click shell over :mod:`monitor.pipeline` and the stage modules.

Errors for people, not tracebacks: every :class:`~monitor.errors.MonitorError` becomes one
``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from monitor import __version__
from monitor.config import Config, default_config, load_config
from monitor.errors import MonitorError
from monitor.store import Store

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_CONFIG = "config.yaml"


class AppContext:
    """What every command needs: the config (loaded lazily) and the database path."""

    def __init__(self, config_path: str | None, db_path: str | None) -> None:
        self._config_path = config_path
        self._db_path = db_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            path = self._config_path or os.environ.get("POLICY_MONITOR_CONFIG")
            if path is None and Path(DEFAULT_CONFIG).exists():
                path = DEFAULT_CONFIG
            self._config = load_config(path) if path else default_config()
            if self._db_path:
                self._config = self._config.model_copy(
                    update={"database": str(Path(self._db_path).resolve())}
                )
        return self._config

    def store(self) -> Store:
        return Store(self.config.database_path)

    def reread_config(self) -> Config:
        """The config read again from its file, ``--db`` still applied (daemon reloads)."""
        return AppContext(self._config_path, self._db_path).config


def _handle_errors(fn: F) -> F:
    """Turn our errors into one line for people."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MonitorError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


# rich is imported where output is made, not at the top: `check --json` (what scripts run
# every few minutes) never needs it, and importing it costs ~80 ms of CPU.


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _progress(label: str, console: Console, *, eta: bool = True, detail: bool = True) -> Progress:
    """A transient bar on ``console``: label, bar, done/total, elapsed, then the time left
    (``eta``) and the task's description, the item at hand (``detail``)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[ProgressColumn] = [
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    if eta:
        columns.append(TimeRemainingColumn())
    if detail:
        columns.append(TextColumn("{task.description}"))
    return Progress(*columns, console=console, transient=True)


def _table(**options: Any) -> Table:
    from rich.table import Table

    return Table(**options)


def _stdout_console() -> Console:
    from rich.console import Console

    # Piped output is read by people in pagers and logs too: do not squeeze tables to 80 columns.
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=200)
    return console


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="policy-monitor")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Config file (default: ./config.yaml, or $POLICY_MONITOR_CONFIG).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    help="SQLite database file (overrides the config).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, db_path: str | None, verbose: int, quiet: bool
) -> None:
    """Watch privacy policies, keep every version, diff them, and alert when AI-training
    language appears without an opt-in."""
    level = (
        logging.WARNING
        if quiet
        else (logging.INFO if verbose == 1 else logging.DEBUG if verbose > 1 else logging.WARNING)
    )
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    ctx.obj = AppContext(config_path, db_path)


# --- check -----------------------------------------------------------------------------


@cli.command()
@click.argument("docs", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.pass_obj
@_handle_errors
def check(app: AppContext, docs: tuple[str, ...], as_json: bool) -> None:
    """One pass: fetch, store, analyse, diff, alert, deliver (all documents, or DOC ...)."""
    from monitor.pipeline import CheckResult, Pipeline

    config = app.config
    if not config.documents:
        raise MonitorError("the config lists no documents: add some under 'documents:'")
    with app.store() as store:
        pipeline = Pipeline(config, store)
        selected = pipeline.select(docs)
        _warn_without_base_url(config, store)
        err = None if as_json else _stderr_console()
        if err is not None and err.is_terminal:
            with _progress("checking", err, eta=False) as progress:
                task = progress.add_task("", total=len(selected))

                def advance(r: CheckResult) -> None:
                    progress.update(task, advance=1, description=r.doc_id)

                results = pipeline.run_pass(selected, on_result=advance)
        else:
            results = pipeline.run_pass(selected)
        from monitor import health  # operator e-mails, delivered by publish() with the rest

        health.update(store, config, [r.doc_id for r in results])
        published = pipeline.publish()
    delivery = published.delivery
    if as_json:
        counts: dict[str, int] = {}
        for r in results:
            counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
        click.echo(
            json.dumps(
                {
                    "documents": [r.to_dict() for r in results],
                    "summary": {
                        "checked": len(results),
                        "new_versions": sum(r.new_version for r in results),
                        "alerts": sum(len(r.alerts) for r in results),
                        "outcomes": counts,
                        "emails": delivery.summary() if delivery else None,
                    },
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    table = _table(title=None, show_edge=False)
    for col in ("document", "outcome", "new version", "version", "AI training", "detail"):
        table.add_column(col)
    for r in results:
        training = (
            ""
            if r.ai_training is None
            else ("yes, " + (r.consent or "") if r.ai_training else "no")
        )
        table.add_row(
            r.doc_id,
            r.outcome.value,
            "yes" if r.new_version else "no",
            str(r.version or ""),
            training,
            (r.detail or "")[:80],
        )
    _stdout_console().print(table)
    new = sum(r.new_version for r in results)
    failed = sum(r.outcome.failed for r in results)
    alerts = sum(len(r.alerts) for r in results)
    click.echo(f"{len(results)} checked, {new} new version(s), {alerts} alert(s), {failed} failed")
    if delivery is not None:
        click.echo(f"e-mail: {delivery.summary()}")


def _warn_without_base_url(config: Config, store: Store) -> None:
    """Once per check: e-mails cannot link to alert pages nobody can open."""
    if config.base_url:
        return
    row = store.query_one("SELECT count(*) AS n FROM subscribers")
    if row and row["n"]:
        click.echo(
            f"warning: base_url is not set, so the e-mails to {row['n']} subscriber(s) name "
            "their alert page but cannot link to it; set base_url to the public URL of "
            f"reports_dir ({config.reports_path})",
            err=True,
        )


# --- history / diff ----------------------------------------------------------------------


@cli.command()
@click.argument("doc")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@_handle_errors
def history(app: AppContext, doc: str, as_json: bool) -> None:
    """Versions of a document, oldest first."""
    with app.store() as store:
        document = store.document(doc)
        versions = store.versions(doc)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "document": doc,
                    "platform": document["platform"],
                    "doc_type": document["doc_type"],
                    "url": document["url"],
                    "versions": [v.summary() for v in versions],
                },
                indent=2,
            )
        )
        return
    table = _table(show_edge=False)
    for col in ("#", "first seen", "last seen", "effective", "chars", "sha256", "AI training"):
        table.add_column(col)
    for v in versions:
        training = (
            ""
            if v.ai_training is None
            else ("yes, " + (v.consent or "") if v.ai_training else "no")
        )
        table.add_row(
            str(v.number),
            v.first_seen,
            v.last_seen,
            v.effective_date or "",
            str(len(v.text)),
            v.sha256[:12],
            training,
        )
    console = _stdout_console()
    console.print(f"{doc}  ({document['url']})")
    console.print(table)


@cli.command()
@click.argument("doc")
@click.option(
    "--from",
    "from_ref",
    help="Old version: number, -2, sha256 prefix or date (default: the one before --to).",
)
@click.option("--to", "to_ref", default="latest", show_default=True, help="New version.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "html"]),
    default="text",
    show_default=True,
)
@click.option(
    "--color/--no-color",
    default=None,
    help="Colour the text diff (default: when stdout is a terminal).",
)
@click.pass_obj
@_handle_errors
def diff(
    app: AppContext, doc: str, from_ref: str | None, to_ref: str, fmt: str, color: bool | None
) -> None:
    """Diff two versions of a document, clause by clause."""
    from monitor.diff import diff_texts, diff_to_json, render_html, render_text

    with app.store() as store:
        document = store.document(doc)
        new = store.version(doc, to_ref)
        if from_ref is None:
            if new.number == 1:
                raise MonitorError(f"{doc} version 1 is the first version: nothing to diff against")
            old = store.version(doc, new.number - 1)
        else:
            old = store.version(doc, from_ref)
    result = diff_texts(old.text, new.text)
    if fmt == "json":
        payload = {
            "document": doc,
            "from": old.summary(),
            "to": new.summary(),
            **diff_to_json(result),
        }
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    elif fmt == "html":
        click.echo(
            render_html(
                result,
                title=f"{document['platform']} / {document['doc_type']}",
                old_label=f"version {old.number} ({old.first_seen})",
                new_label=f"version {new.number} ({new.first_seen})",
                source_url=document["url"],
            )
        )
    else:
        use_color = sys.stdout.isatty() if color is None else color
        click.echo(render_text(result, color=use_color), nl=False)


# --- alerts, subscribers, notify ---------------------------------------------------------


@cli.command("alerts")
@click.option("--json", "as_json", is_flag=True)
@click.option("--doc", "doc_id", help="Only this document's alerts.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_obj
@_handle_errors
def alerts_cmd(app: AppContext, as_json: bool, doc_id: str | None, limit: int) -> None:
    """Alerts raised so far, newest first."""
    from monitor.alerts import list_alerts

    with app.store() as store:
        rows = list_alerts(store, doc_id=doc_id, limit=limit)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2, ensure_ascii=False))
        return
    table = _table(show_edge=False)
    for col in ("#", "date", "document", "type", "severity", "summary"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r.id), r.created_at[:10], r.document_id, r.type, r.severity, r.summary)
    _stdout_console().print(table)
    if not rows:
        click.echo("no alerts yet")


@cli.group()
def subscribers() -> None:
    """People who receive alert e-mails."""


@subscribers.command("add")
@click.argument("email")
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    help="Only alerts about this platform (repeatable; default all).",
)
@click.option(
    "--min-severity",
    type=click.Choice(["info", "low", "medium", "high"]),
    default="medium",
    show_default=True,
)
@click.option(
    "--digest",
    type=click.Choice(["none", "daily"]),
    default="none",
    show_default=True,
    help="One e-mail per alert, or one daily digest.",
)
@click.pass_obj
@_handle_errors
def subscribers_add(
    app: AppContext, email: str, platforms: tuple[str, ...], min_severity: str, digest: str
) -> None:
    """Add a subscriber (or update the filters of an existing one)."""
    from monitor.notify import add_subscriber

    with app.store() as store:
        sub = add_subscriber(
            store, email, platforms=platforms, min_severity=min_severity, digest=digest
        )
    scope = ", ".join(sub.platforms) if sub.platforms else "all platforms"
    click.echo(f"{sub.email}: {scope}, severity >= {sub.min_severity}, digest {sub.digest}")


@subscribers.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@_handle_errors
def subscribers_list(app: AppContext, as_json: bool) -> None:
    """List subscribers and their filters."""
    from monitor.notify import list_subscribers

    with app.store() as store:
        subs = list_subscribers(store)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "email": s.email,
                        "platforms": s.platforms,
                        "min_severity": s.min_severity,
                        "digest": s.digest,
                        "created_at": s.created_at,
                    }
                    for s in subs
                ],
                indent=2,
            )
        )
        return
    for s in subs:
        scope = ", ".join(s.platforms) if s.platforms else "all platforms"
        click.echo(f"{s.email}\t{scope}\t>= {s.min_severity}\tdigest {s.digest}")
    if not subs:
        click.echo("no subscribers")


@subscribers.command("remove")
@click.argument("email_or_token")
@click.pass_obj
@_handle_errors
def subscribers_remove(app: AppContext, email_or_token: str) -> None:
    """Remove a subscriber (by e-mail address or unsubscribe token)."""
    from monitor.notify import remove_subscriber

    with app.store() as store:
        removed = remove_subscriber(store, email_or_token)
    if not removed:
        raise MonitorError(f"no subscriber {email_or_token!r}")
    click.echo(f"removed {email_or_token}")


@cli.command()
@click.option(
    "--resend-unknown",
    is_flag=True,
    help="Resend e-mails whose delivery is in doubt after a crash.",
)
@click.option("--retry-failed", is_flag=True, help="Put failed e-mails back in the queue.")
@click.pass_obj
@_handle_errors
def notify(app: AppContext, resend_unknown: bool, retry_failed: bool) -> None:
    """Deliver what is waiting in the outbox."""
    from monitor import notify as notify_stage

    config = app.config
    with app.store() as store:
        if resend_unknown:
            click.echo(f"{notify_stage.resend_unknown(store)} e-mail(s) in doubt queued again")
        if retry_failed:
            click.echo(f"{notify_stage.retry_failed(store)} failed e-mail(s) queued again")
        notify_stage.enqueue_digests(store, base_url=config.base_url, smtp=config.smtp)
        if config.smtp is None:
            counts = notify_stage.outbox_counts(store)
            raise MonitorError(f"no 'smtp:' section in the config; outbox: {counts}")
        # An operator asking now: try the server even while the outbox backs off.
        report = notify_stage.deliver_pending(store, config.smtp, force=True)
    click.echo(report.summary())


# --- run / status (the daemon) ----------------------------------------------------------


@cli.command()
@click.pass_context
@_handle_errors
def run(ctx: click.Context) -> None:
    """The daemon: check every document on its interval until SIGTERM or SIGINT.

    SIGHUP, or saving the config file, reloads the documents without a restart. One log line
    per check on stderr (INFO by default here; -q for warnings only, -vv for debug)."""
    from monitor.scheduler import run_daemon

    app: AppContext = ctx.obj
    root = ctx.find_root().params
    if not root.get("quiet") and not root.get("verbose"):
        logging.getLogger().setLevel(logging.INFO)
    if (root.get("verbose") or 0) < 2:
        # One line per check is the daemon's log; these would add one per request and job.
        for noisy in ("httpx", "httpcore", "apscheduler"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    config = app.config
    if not config.documents:
        raise MonitorError("the config lists no documents: add some under 'documents:'")
    run_daemon(config, reload=app.reread_config)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per document.")
@click.pass_obj
@_handle_errors
def status(app: AppContext, as_json: bool) -> None:
    """Every configured document: last fetch, outcome, consecutive failures, latest version,
    next run and open health problems."""
    from monitor.scheduler import document_status

    with app.store() as store:
        rows = document_status(store, app.config)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2, ensure_ascii=False))
        return
    table = _table(show_edge=False)
    for col in ("document", "last fetch", "outcome", "failures", "version", "next run", "health"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.doc_id,
            r.last_fetch or "never",
            r.outcome or "",
            str(r.consecutive_failures or ""),
            f"{r.version} ({(r.version_date or '')[:10]})" if r.version else "",
            "now" if r.next_run is None else r.next_run + (" (overdue)" if r.overdue else ""),
            ", ".join(p["problem"] for p in r.health) or "ok",
        )
    _stdout_console().print(table)
    if not rows:
        click.echo("no documents in the config")


# --- research: import, report, search ------------------------------------------------------


@cli.group("import")
def import_group() -> None:
    """Backfill history from an archive."""


@import_group.command("dir")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--notify", "notify_", is_flag=True, help="Queue e-mails for the imported alerts.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Processes for extraction, analysis and diffs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
@_handle_errors
def import_dir(app: AppContext, path: str, notify_: bool, workers: int, as_json: bool) -> None:
    """Import a tree PLATFORM/DOC-TYPE/<date>.md|html, oldest first, as if fetched then."""
    from monitor.backfill import HistoryFile, import_tree
    from monitor.pipeline import Pipeline

    err = _stderr_console()
    with app.store() as store:
        pipeline = Pipeline(app.config, store, notify=notify_)
        if err.is_terminal and not as_json:
            with _progress("importing", err) as progress:
                task = progress.add_task("", total=None)

                def advance(f: HistoryFile) -> None:
                    progress.update(task, advance=1, description=f.doc_id)

                result = import_tree(
                    pipeline,
                    Path(path),
                    workers=workers,
                    on_start=lambda n: progress.update(task, total=n),
                    on_file=advance,
                )
        else:
            result = import_tree(pipeline, Path(path), workers=workers)
        # Pages, index and feed always (they list every alert); e-mail only with --notify.
        pipeline.publish()
    index = app.config.reports_path / "alerts" / "index.html"
    if as_json:
        summary = result.to_dict() | {"alerts_index": str(index)}
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    for problem in result.problems:
        err.print(f"[yellow]skipped[/] {problem}", highlight=False, markup=True, soft_wrap=True)
    click.echo(
        f"{result.files} files, {len(result.documents)} documents: "
        f"{result.new_versions} new versions, {result.unchanged} unchanged, "
        f"{result.skipped} skipped, {result.suspect} suspect, {result.alerts} alerts "
        f"in {result.seconds:.1f} s ({result.versions_per_second:.0f} versions/s)"
    )
    click.echo(f"alert pages: {index}")


@cli.command()
@click.option(
    "--format",
    "formats",
    type=click.Choice(["html", "json", "csv"]),
    multiple=True,
    help="Output format (repeatable; default: all three).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Output folder (default: REPORTS_DIR/report).",
)
@click.option("--platform", "platforms", multiple=True, help="Only this platform (repeatable).")
@click.option(
    "--doc-type", "doc_types", multiple=True, help="Only this document type (repeatable)."
)
@click.option("--since", help="Only versions first seen on or after this date (YYYY-MM-DD).")
@click.option("--until", help="Only versions first seen on or before this date (YYYY-MM-DD).")
@click.pass_obj
@_handle_errors
def report(
    app: AppContext,
    formats: tuple[str, ...],
    out_dir: str | None,
    platforms: tuple[str, ...],
    doc_types: tuple[str, ...],
    since: str | None,
    until: str | None,
) -> None:
    """Researcher report: a matrix, timelines, versions with diffs, alerts (html); one entry
    per document (json); one row per finding (csv)."""
    import time

    from monitor.report import FORMATS, write_report

    out = Path(out_dir) if out_dir else app.config.reports_path / "report"
    t0 = time.monotonic()
    err = _stderr_console()
    options: dict[str, Any] = {
        "formats": formats or FORMATS,
        "platforms": platforms,
        "doc_types": doc_types,
        "since": since,
        "until": until,
    }
    with app.store() as store:
        if err.is_terminal:
            # Diffing every pair of versions is most of the time on a large history.
            with _progress("report: diff pages", err, detail=False) as progress:
                task = progress.add_task("", total=None)
                written = write_report(
                    store,
                    out,
                    on_start=lambda n: progress.update(task, total=n),
                    on_page=lambda n: progress.update(task, advance=n),
                    **options,
                )
        else:
            written = write_report(store, out, **options)
    for fmt, path in written.items():
        click.echo(f"{fmt:<5} {path}")
    click.echo(f"written in {time.monotonic() - t0:.1f} s", err=True)


@cli.command()
@click.argument("query")
@click.option("--platform", "platforms", multiple=True, help="Only this platform (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
@click.pass_obj
@_handle_errors
def search(
    app: AppContext, query: str, platforms: tuple[str, ...], limit: int, as_json: bool
) -> None:
    """Full-text search over every version: platform, document, version, date, passage."""
    from rich.text import Text

    from monitor.search import MARK_END, MARK_START
    from monitor.search import search as run_search

    with app.store() as store:
        hits = run_search(store, query, platforms=list(platforms), limit=limit)
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
        return
    console = _stdout_console()
    if not hits:
        console.print(f"no version matches {query!r}", markup=False)
        return
    for h in hits:
        head = Text(f"{h.document_id}", style="bold")
        head.append(f"  version {h.version}  {h.first_seen[:10]}", style="dim")
        if h.versions > 1:
            since = (h.since or h.first_seen)[:10]
            head.append(f"  (in {h.versions} versions since {since})", style="dim")
        console.print(head)
        passage = Text("  ")
        for i, piece in enumerate(h.snippet.replace(MARK_END, MARK_START).split(MARK_START)):
            passage.append(piece, style="bold yellow" if i % 2 else "")
        console.print(passage)


# --- analyse, eval, rules (the analyser on its own) --------------------------------------

_rules_option = click.option(
    "--rules",
    "rule_paths",
    multiple=True,
    type=click.Path(exists=True),
    help="Rule pack file or folder to use instead of the built-in packs (repeatable).",
)


def _packs(rule_paths: tuple[str, ...]) -> list[Any]:
    from monitor.analyse import load_packs

    return load_packs([Path(p) for p in rule_paths] if rule_paths else None)


def _open_input(name: str) -> Any:
    if name == "-":
        return click.get_text_stream("stdin", encoding="utf-8", errors="replace")
    try:
        return open(name, encoding="utf-8", errors="replace")  # the caller closes it
    except OSError as exc:
        raise MonitorError(f"{name}: cannot read: {exc.strerror}") from exc


def _document_text(name: str, raw: str) -> str:
    """The block text the pipeline would analyse: HTML and OTA Markdown go through extract."""
    from monitor.analyse import looks_like_html
    from monitor.extract import clean_characters, extract_html, extract_markdown

    suffix = Path(name).suffix.lower()
    if suffix in {".html", ".htm"} or (suffix == "" and looks_like_html(raw)):
        return extract_html(raw).text
    if suffix in {".md", ".markdown"}:
        return extract_markdown(raw).text
    return clean_characters(raw)


def _highlighted(text: str, spans: list[Any]) -> Any:
    from rich.text import Text

    out = Text(text)
    for sp in spans:
        style = "bold red" if sp.role == "negation" else "bold"
        out.stylize(style, sp.start, sp.end)
    return out


def _print_analysis(name: str, a: Any) -> None:
    console = _stdout_console()
    verdict = "ALERT" if a.alert else "no alert"
    console.print(
        f"{name}: {a.lang}, {a.unit_count} units. AI training: "
        f"{'yes' if a.ai_training else 'no'}, consent: {a.consent.value}, "
        f"negated: {'yes' if a.negated else 'no'} -> {verdict}",
        markup=False,
        highlight=False,
    )
    for f in a.findings:
        where = " > ".join(f.heading_path) or "(no heading)"
        flags = [f.category]
        if f.category == "ai_training":
            flags.append(f"training {'yes' if f.ai_training else 'no'}")
            flags.append(f"consent {f.consent.value}")
            if f.negated:
                flags.append("negated")
        console.print("")
        console.print(
            f"[{f.pack}/{f.rule_id}] unit {f.unit_index} [{f.lang}] {', '.join(flags)}",
            markup=False,
            highlight=False,
        )
        console.print(f"  in: {where}", markup=False, highlight=False)
        if f.consent_cues:
            console.print(
                f"  consent wording: {'; '.join(f.consent_cues)}", markup=False, highlight=False
            )
        line = _highlighted(f.unit_text, f.spans)
        line.pad_left(2)
        console.print(line, highlight=False)


@cli.command()
@click.argument("file", default="-", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "text"]),
    default="text",
    show_default=True,
    help="Output of a whole-document analysis.",
)
@click.option(
    "--jsonl",
    is_flag=True,
    help='Read one {"id", "text"} object per line, write one result object per line.',
)
@_rules_option
@_handle_errors
def analyse(file: str, fmt: str, jsonl: bool, rule_paths: tuple[str, ...]) -> None:
    """Analyse a text, Markdown or HTML file (or - for standard input) for AI-training
    clauses and their consent regime; with --jsonl, one unit per input line."""
    from monitor.analyse import analyse_text, analyse_unit

    packs = _packs(rule_paths)
    if not jsonl:
        with _open_input(file) as fh:
            raw = fh.read()
        a = analyse_text(_document_text(file, raw), packs)
        if fmt == "json":
            click.echo(json.dumps(a.to_dict(), ensure_ascii=False, indent=2))
        else:
            _print_analysis(file, a)
        return
    # One output line per input line, in order and flushed as it goes, so a caller can zip
    # outputs with inputs and a long run can be followed; a bad line is reported in place.
    name = "<stdin>" if file == "-" else file
    bad = 0
    with _open_input(file) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            obj: Any = None
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    raise ValueError('expected an object with a string "text"')
            except ValueError as exc:
                bad += 1
                click.echo(f"{name}:{lineno}: {exc}", err=True)
                ident = obj.get("id") if isinstance(obj, dict) else None
                row = {"id": ident, "error": str(exc), "line": lineno}
                click.echo(json.dumps(row, ensure_ascii=False))
                continue
            lang = obj.get("lang") if isinstance(obj.get("lang"), str) else None
            a = analyse_unit(obj["text"], packs, lang=lang)
            out = a.to_dict()
            del out["units"]
            click.echo(json.dumps({"id": obj.get("id"), **out}, ensure_ascii=False))
            sys.stdout.flush()
    if bad:
        click.echo(f"error: {bad} line(s) could not be analysed", err=True)
        sys.exit(1)


@cli.command("eval")
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--detect-lang",
    is_flag=True,
    help="Ignore the labels' lang field and let the analyser detect each unit's language.",
)
@click.option(
    "--errors",
    "max_errors",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="How many errors to list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics and errors as JSON.")
@_rules_option
@_handle_errors
def eval_(
    labels: str, detect_lang: bool, max_errors: int, as_json: bool, rule_paths: tuple[str, ...]
) -> None:
    """Score the analyser against hand-labelled units (one JSON object per line: id, text,
    ai_training, consent, negated, optional lang and alert)."""
    from monitor.analyse import analyse_unit
    from monitor.evaluate import evaluate
    from monitor.models import Analysis

    packs = _packs(rule_paths)
    rows: list[dict[str, Any]] = []
    with _open_input(labels) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise MonitorError(f"{labels}:{lineno}: invalid JSON: {exc}") from exc
            missing = [k for k in ("text", "ai_training") if k not in obj]
            if not isinstance(obj, dict) or missing:
                raise MonitorError(f"{labels}:{lineno}: missing {', '.join(missing) or 'fields'}")
            rows.append(obj)
    if not rows:
        raise MonitorError(f"{labels}: no labelled lines")

    def predict(text: str, lang: str | None) -> Analysis:
        return analyse_unit(text, packs, lang=None if detect_lang else lang)

    result = evaluate(rows, predict)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(result.format_text(max_errors=max_errors))


@cli.group()
def rules() -> None:
    """Rule packs: list them, run their examples."""


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the packs as JSON.")
@_rules_option
@_handle_errors
def rules_list(as_json: bool, rule_paths: tuple[str, ...]) -> None:
    """The rule packs, with their rules, languages and examples."""
    packs = _packs(rule_paths)
    rows = [
        {
            "id": p.id,
            "title": p.title,
            "engine": p.engine,
            "category": p.category,
            "severity": p.severity,
            "languages": list(p.languages),
            "rules": [r.id for r in p.rules],
            "examples": {k: len(v) for k, v in p.examples.items()},
            "path": str(p.path) if p.path else None,
        }
        for p in packs
    ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = _table(show_edge=False)
    for col in ("pack", "engine", "category", "severity", "languages", "rules", "examples"):
        table.add_column(col)
    for r in rows:
        ex = r["examples"]
        table.add_row(
            f"{r['id']}\n{r['title']}",
            r["engine"],
            r["category"],
            r["severity"],
            " ".join(r["languages"]),
            "\n".join(r["rules"]),
            f"{ex.get('match', 0)} match / {ex.get('no_match', 0)} no match",
        )
    _stdout_console().print(table)


@rules.command("test")
@click.argument("pack_ids", nargs=-1)
@click.option("--all", "verbose", is_flag=True, help="List passing examples too.")
@_rules_option
@_handle_errors
def rules_test(pack_ids: tuple[str, ...], verbose: bool, rule_paths: tuple[str, ...]) -> None:
    """Run every pack's examples (texts that must match, texts that must not); exit status 1
    when one fails."""
    from monitor.analyse import run_pack_examples

    packs = _packs(rule_paths)
    if pack_ids:
        unknown = sorted(set(pack_ids) - {p.id for p in packs})
        if unknown:
            raise MonitorError(f"no rule pack {', '.join(unknown)}")
        packs = [p for p in packs if p.id in pack_ids]
    failed = total = 0
    for pack in packs:
        results = run_pack_examples(pack)
        bad = [r for r in results if not r.passed]
        total += len(results)
        failed += len(bad)
        click.echo(f"{pack.id}: {len(results) - len(bad)}/{len(results)} examples pass")
        for r in results if verbose else bad:
            mark = "ok  " if r.passed else "FAIL"
            click.echo(f"  {mark} {r.kind} #{r.index} [{r.lang or '-'}] {r.text}")
            if not r.passed:
                click.echo(f"       expected {r.expected}, got {r.got}")
    click.echo(f"{total - failed}/{total} examples pass in {len(packs)} pack(s)")
    if failed:
        sys.exit(1)


# --- demo ------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False),
    help="Where to put the demo's database and reports (default: a new temporary folder).",
)
@_handle_errors
def demo(folder: str | None) -> None:
    """Offline end-to-end run on a bundled fictional platform."""
    import tempfile
    import time

    from monitor.demo import describe_email, run_demo

    target = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="policy-monitor-demo-"))
    t0 = time.monotonic()
    click.echo(f"policy-monitor demo: watching a fictional platform's privacy policy in {target}")
    result = run_demo(target, say=click.echo)
    click.echo(
        f"done in {time.monotonic() - t0:.1f} s: {result.alerts} alert(s), {len(result.emails)} e-mail(s)"
    )
    click.echo("")
    click.echo(f"  database      {result.database}")
    for name, path in result.pages.items():
        click.echo(f"  {name:<13} {path}")
    click.echo(f"  e-mails       {result.mail_folder}")
    for path in result.emails:
        click.echo(f"                {describe_email(path)}")
    click.echo("")
    click.echo(f"Try: policy-monitor --db {result.database} history chirpy/privacy-policy")
    click.echo(
        f"     policy-monitor --db {result.database} diff chirpy/privacy-policy --from 1 --to 2"
    )


def main() -> None:
    cli(prog_name="policy-monitor")


if __name__ == "__main__":
    main()

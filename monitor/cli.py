"""The command line: a thin click shell over :mod:`monitor.pipeline` and the stage modules.

Errors for people, not tracebacks: every :class:`~monitor.errors.MonitorError` becomes one
``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from monitor import __version__
from monitor.config import Config, default_config, load_config
from monitor.errors import MonitorError
from monitor.store import Store

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


def _stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="policy-monitor")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Config file (default: ./config.yaml, or $POLICY_MONITOR_CONFIG).",
)
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="SQLite database file (overrides the config).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, db_path: str | None, verbose: int, quiet: bool) -> None:
    """Watch privacy policies, keep every version, diff them, and alert when AI-training
    language appears without an opt-in."""
    level = logging.WARNING if quiet else (logging.INFO if verbose == 1 else logging.DEBUG if verbose > 1 else logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
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
    err = Console(stderr=True)
    with app.store() as store:
        pipeline = Pipeline(config, store)
        selected = pipeline.select(docs)
        show_progress = err.is_terminal and not as_json
        if show_progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(
                TextColumn("checking"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=err,
                transient=True,
            ) as progress:
                task = progress.add_task("", total=len(selected))

                def advance(r: CheckResult) -> None:
                    progress.update(task, advance=1, description=r.doc_id)

                results = asyncio.run(pipeline.check(selected, on_result=advance))
        else:
            results = asyncio.run(pipeline.check(selected))
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
                        "outcomes": counts,
                    },
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    table = Table(title=None, show_edge=False)
    for col in ("document", "outcome", "new version", "version", "AI training", "detail"):
        table.add_column(col)
    for r in results:
        training = "" if r.ai_training is None else ("yes, " + (r.consent or "") if r.ai_training else "no")
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
    click.echo(f"{len(results)} checked, {new} new version(s), {failed} failed")


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
    table = Table(show_edge=False)
    for col in ("#", "first seen", "last seen", "effective", "chars", "sha256", "AI training"):
        table.add_column(col)
    for v in versions:
        training = "" if v.ai_training is None else ("yes, " + (v.consent or "") if v.ai_training else "no")
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
@click.option("--from", "from_ref", help="Old version: number, -2, sha256 prefix or date (default: the one before --to).")
@click.option("--to", "to_ref", default="latest", show_default=True, help="New version.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True)
@click.option("--color/--no-color", default=None, help="Colour the text diff (default: when stdout is a terminal).")
@click.pass_obj
@_handle_errors
def diff(app: AppContext, doc: str, from_ref: str | None, to_ref: str, fmt: str, color: bool | None) -> None:
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


def main() -> None:
    cli(prog_name="policy-monitor")


if __name__ == "__main__":
    main()

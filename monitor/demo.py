"""`policy-monitor demo`: the offline end-to-end run a newcomer starts first.

It serves a fictional platform's policy history (no AI -> AI training without opt-in -> an
opt-out added -> opt-in) from a local HTTP server on a free 127.0.0.1 port, captures e-mail on
a local SMTP server, runs ``check`` once per version into a fresh database and says where the
alert pages, the feed, the report and the captured e-mails are. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import socket
import string
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from monitor import pages
from monitor.config import Config, parse_config
from monitor.errors import MonitorError
from monitor.pipeline import CheckResult, Pipeline
from monitor.report import write_report
from monitor.store import Store

PLATFORM = "Chirpy"
DOC_ID = "chirpy/privacy-policy"
SUBSCRIBER = "reader@example.org"


@dataclass(frozen=True)
class DemoVersion:
    step: str  # what this version changes, in a few words
    seen_at: dt.datetime  # the demo checks it as if on this date
    html: bytes


def demo_versions() -> list[DemoVersion]:
    """The bundled history: ``versions.yaml`` filling the placeholders of one page template."""
    folder = resources.files("monitor") / "demo_data"
    template = string.Template((folder / "chirpy-privacy.html").read_text(encoding="utf-8"))
    data = yaml.safe_load((folder / "versions.yaml").read_text(encoding="utf-8"))
    out = []
    for v in data["versions"]:
        html = template.substitute(
            date=v["date"],
            nonce=v["nonce"],
            training_item=v["training_item"] and v["training_item"] + "\n",
            training_section=v["training_section"] and v["training_section"] + "\n",
        )
        seen_at = dt.datetime.strptime(v["date"], "%d %B %Y").replace(hour=9, tzinfo=dt.UTC)
        out.append(DemoVersion(v["step"], seen_at, html.encode("utf-8")))
    return out


class _PolicyServer:
    """Serves the current demo page at /privacy; ``current`` is switched between checks."""

    def __init__(self, pages: list[bytes]) -> None:
        self.pages = pages
        self.current = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/privacy"):
                    body = outer.pages[outer.current]
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                else:
                    body = b"not found"
                    self.send_response(404)
                    self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/privacy"

    def __enter__(self) -> _PolicyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class _Mailbox:
    """Captures every message the local SMTP server receives into a folder of .eml files."""

    folder: Path
    messages: list[Path] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        n = len(self.messages) + 1
        path = self.folder / f"{n:03d}.eml"
        path.write_bytes(envelope.content)
        self.messages.append(path)
        return "250 Message accepted for delivery"


@contextmanager
def _smtp_server(folder: Path) -> Iterator[tuple[int, _Mailbox]]:
    from aiosmtpd.controller import Controller

    mailbox = _Mailbox(folder)
    # aiosmtpd's Controller checks readiness by connecting to its port, so it needs a real
    # port number up front rather than 0.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


@dataclass
class DemoResult:
    folder: Path
    database: Path
    reports: Path
    mail_folder: Path
    checks: list[CheckResult]
    alerts: int
    emails: list[Path]
    pages: dict[str, Path]


def _config(folder: Path, url: str, smtp_port: int) -> Config:
    text = f"""
database: policy-monitor.db
reports_dir: reports
http:
  per_host_delay: 0
  retries: 0
  respect_robots: true
documents:
  - platform: {PLATFORM}
    doc_type: privacy-policy
    url: {url}
    select: main
smtp:
  host: 127.0.0.1
  port: {smtp_port}
  sender: "policy-monitor demo <demo@policy-monitor.invalid>"
  backoff: 0
"""
    return parse_config(text, str(folder / "config.yaml"))


def _fixed(when: dt.datetime) -> Callable[[], dt.datetime]:
    return lambda: when


def run_demo(folder: Path, *, say: Any = print) -> DemoResult:
    """Run the whole demo into ``folder`` (created if needed; must not hold a demo already)."""
    from monitor import notify

    folder.mkdir(parents=True, exist_ok=True)
    mail_folder = folder / "mail"
    mail_folder.mkdir(exist_ok=True)
    versions = demo_versions()
    with (
        _PolicyServer([v.html for v in versions]) as web,
        _smtp_server(mail_folder) as (smtp_port, mailbox),
    ):
        config = _config(folder, web.url, smtp_port)
        if config.database_path.exists():
            raise MonitorError(f"{folder} already holds a demo database: pick an empty folder")
        with Store(config.database_path) as store:
            notify.add_subscriber(store, SUBSCRIBER, platforms=[PLATFORM], min_severity="low")
            checks = []
            for step, version in enumerate(versions):
                web.current = step
                when = version.seen_at
                # Each version is checked as if on its date, so the history reads like one.
                pipeline = Pipeline(config, store, clock=_fixed(when))
                result = asyncio.run(pipeline.check(config.documents))[0]
                pipeline.publish()
                checks.append(result)
                say(
                    f"  {when:%Y-%m-%d}  {version.step:<28} -> {result.outcome.value}"
                    + (f", version {result.version}" if result.new_version else "")
                    + (f", {len(result.alerts)} alert(s)" if result.alerts else "")
                )
            written = pages.write_alert_pages(store, config.reports_path)
            alert_count = int(store.query("SELECT count(*) AS n FROM alerts")[0]["n"])
            report = write_report(store, config.reports_path / "report", formats=["html"])
    emails = list(mailbox.messages)
    index = config.reports_path / "alerts" / "index.html"
    feed = config.reports_path / "alerts.atom"
    first_alert = next((p for p in written if p.parent.name == "alerts" and p.stem.isdigit()), None)
    return DemoResult(
        folder=folder,
        database=config.database_path,
        reports=config.reports_path,
        mail_folder=mail_folder,
        checks=checks,
        alerts=alert_count,
        emails=emails,
        pages={
            "index": index,
            "feed": feed,
            **({"alert": first_alert} if first_alert else {}),
            "report": report["html"],
        },
    )


def describe_email(path: Path) -> str:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    return f"{path}  To: {msg['To']}  Subject: {msg['Subject']}"

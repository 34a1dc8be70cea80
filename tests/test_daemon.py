"""`policy-monitor run` as a real subprocess against a real HTTP and SMTP server on 127.0.0.1,
with one-second intervals: pages change, fail and recover; SIGTERM stops it cleanly; a
restart neither skips nor repeats work."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from httpserver import Route, Server, serve
from smtpserver import SmtpServer, smtp_server

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

REPO = Path(__file__).resolve().parents[1]
# The subprocesses run this checkout's code, whatever else is installed.
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
}

OPERATOR = "ops@example.org"
READER = "reader@example.org"
HTML = {"Content-Type": "text/html; charset=utf-8"}

POLICY = """<!doctype html><html><head><title>{name} privacy policy</title></head><body>
<nav>Home</nav><{tag}><h1>{name} Privacy Policy</h1>
<h2>What we collect</h2>
<p>We collect the information you give us when you create an account, such as your name
and e-mail address, and the messages you send to other people on {name}.</p>
<h2>How we use it</h2>
<p>We use information to provide and secure the service, to prevent fraud and abuse, and
to answer your questions. We keep it while your account is open.</p>{extra}
</{tag}></body></html>"""

AI_CLAUSE = (
    "<p>We use your posts and personal data to train our artificial intelligence models.</p>"
)


def policy(name: str, *, extra: str = "", tag: str = "main") -> Route:
    return Route(200, HTML, POLICY.format(name=name, extra=extra, tag=tag))


CAPTCHA = Route(
    200,
    HTML,
    "<html><head><title>Just a moment...</title></head><body><main><h1>Verify you are human"
    "</h1><p>Please complete the captcha to continue.</p></main></body></html>",
)


def write_config(
    folder: Path,
    server: Server,
    smtp: SmtpServer,
    paths: list[str],
    *,
    interval: str = "1s",
    extra: str = "",
    others: dict[str, str] | None = None,
) -> Path:
    """``others`` maps more platform names to URLs (documents on other servers)."""
    urls = {p.strip("/").title(): server.url(p) for p in paths} | (others or {})
    docs = "".join(
        f"  - platform: {name}\n    url: {url}\n    select: main\n    interval: {interval}\n"
        for name, url in urls.items()
    )
    config = folder / "config.yaml"
    config.write_text(
        f"""database: pm.db
operator: {OPERATOR}
jitter: 0
max_checks: 8
http:
  timeout: 0.5
  retries: 0
  per_host_delay: 0
  per_host_concurrency: 8
smtp:
  host: 127.0.0.1
  port: {smtp.port}
  sender: monitor@example.org
health:
  failing_for: 2s
  suspect_in_a_row: 3
{extra}documents:
{docs}""",
        encoding="utf-8",
    )
    return config


class Daemon:
    """A `policy-monitor run` subprocess with its stderr in a file."""

    def __init__(self, config: Path) -> None:
        self.log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            cwd=config.parent,
            env=ENV,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self, timeout: float = 8.0) -> tuple[int, float]:
        """SIGTERM; the exit status and how long the exit took."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self._log.close()
        return code, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@contextmanager
def daemon(config: Path) -> Iterator[Daemon]:
    d = Daemon(config)
    try:
        yield d
    finally:
        d.kill()


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, d: Daemon) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if d.proc.poll() is not None:
            pytest.fail(f"daemon exited ({d.proc.returncode}) waiting for {what}:\n{d.log}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}; daemon log:\n{d.log[-4000:]}")


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=5) as conn:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # schema not created yet
            return []


def versions(db: Path, doc: str) -> int:
    return query(db, "SELECT count(*) FROM versions WHERE document_id = ?", doc)[0][0]


def outcomes(db: Path, doc: str) -> list[str]:
    return [r[0] for r in query(db, "SELECT outcome FROM fetches WHERE document_id = ?", doc)]


def health_mail(smtp: SmtpServer) -> list[str]:
    return [str(m.message["Subject"]) for m in smtp.messages if "health:" in m.message["Subject"]]


def cli(config: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), *args],
        check=True,
        capture_output=True,
        cwd=config.parent,
        env=ENV,
    )


def test_daemon_survives_failures_alerts_and_stops_cleanly(tmp_path: Path) -> None:
    routes: dict[str, Any] = {
        "/robots.txt": (200, {"Content-Type": "text/plain"}, "User-agent: *\nDisallow: /private\n"),
        "/policy": policy("Policy"),
        "/flaky": policy("Flaky"),
        "/guarded": policy("Guarded"),
        "/redesign": policy("Redesign"),
        "/slow": Route(200, HTML, POLICY.format(name="Slow", extra="", tag="main"), delay=1.5),
        "/limited": Route(429, {"Content-Type": "text/plain"}, "slow down"),
        "/private": policy("Private"),
    }
    # a second site whose robots.txt fails: it is down, not refusing
    down_routes: dict[str, Any] = {
        "/robots.txt": Route(503, {"Content-Type": "text/plain"}, "maintenance"),
        "/policy": policy("Down"),
    }
    with serve(routes) as server, serve(down_routes) as other, smtp_server() as smtp:
        config = write_config(
            tmp_path,
            server,
            smtp,
            [p for p in routes if p != "/robots.txt"],
            others={"Down": other.url("/policy")},
        )
        db = tmp_path / "pm.db"
        cli(config, "subscribers", "add", READER, "--min-severity", "info")
        with daemon(config) as d:
            # 1. first versions; the broken ones fail in their own ways
            wait_until(
                "first versions",
                lambda: all(
                    versions(db, f"{n}/privacy-policy") == 1
                    for n in ("policy", "flaky", "guarded", "redesign")
                ),
                15,
                d,
            )
            wait_until("a timeout", lambda: "timeout" in outcomes(db, "slow/privacy-policy"), 10, d)
            assert "http_error" in outcomes(db, "limited/privacy-policy")
            assert set(outcomes(db, "private/privacy-policy")) == {"robots_disallowed"}
            assert versions(db, "slow/privacy-policy") == 0
            wait_until("robots.txt down", lambda: outcomes(db, "down/privacy-policy"), 10, d)
            assert set(outcomes(db, "down/privacy-policy")) == {"http_error"}
            details = query(
                db, "SELECT DISTINCT detail FROM fetches WHERE document_id = 'down/privacy-policy'"
            )
            assert details == [("robots.txt unreachable: HTTP 503 Service Unavailable",)]
            assert other.hits["/policy"] == 0

            # 2. a policy gains AI training; the others break
            server.routes["/policy"] = policy("Policy", extra=AI_CLAUSE)
            server.routes["/flaky"] = Route(500, {"Content-Type": "text/plain"}, "oops")
            server.routes["/guarded"] = CAPTCHA
            server.routes["/redesign"] = policy("Redesign", tag="article")
            wait_until("v2", lambda: versions(db, "policy/privacy-policy") == 2, 10, d)
            expected = {
                ("private/privacy-policy", "robots"),
                ("flaky/privacy-policy", "failing"),
                ("guarded/privacy-policy", "suspect"),
                ("redesign/privacy-policy", "selector"),
                ("slow/privacy-policy", "failing"),
                ("limited/privacy-policy", "failing"),
                ("down/privacy-policy", "failing"),  # not "robots"
            }

            def open_problems() -> set[tuple[Any, ...]]:
                sql = "SELECT document_id, problem FROM health_problems WHERE resolved_at IS NULL"
                return set(query(db, sql))

            wait_until("seven problems", lambda: open_problems() == expected, 15, d)
            assert versions(db, "guarded/privacy-policy") == 1  # a captcha is never a version
            assert versions(db, "redesign/privacy-policy") == 1
            wait_until(
                "content alert e-mail",
                lambda: any(READER in m.rcpt_tos for m in smtp.messages),
                10,
                d,
            )

            # 3. recovery
            server.routes["/flaky"] = policy("Flaky")
            server.routes["/guarded"] = policy("Guarded")
            server.routes["/redesign"] = policy("Redesign")
            other.routes["/robots.txt"] = (404, {}, "")
            wait_until(
                "recoveries",
                lambda: sum("recovered" in s for s in health_mail(smtp)) >= 4,
                15,
                d,
            )
            assert versions(db, "down/privacy-policy") == 1
            time.sleep(1.5)  # more checks of the same state must not alert again
            code, took = d.terminate()

        assert code == 0, d.log
        assert took < 6, f"SIGTERM took {took:.1f} s"
        assert query(db, "PRAGMA integrity_check") == [("ok",)]

        subjects = health_mail(smtp)
        for doc, problem in expected:
            started = [s for s in subjects if f"{doc}: {problem} since" in s]
            assert len(started) == 1, (doc, problem, subjects)
        for doc, problem in [
            ("flaky/privacy-policy", "failing"),
            ("guarded/privacy-policy", "suspect"),
            ("redesign/privacy-policy", "selector"),
            ("down/privacy-policy", "failing"),
        ]:
            assert sum(f"{doc}: recovered from {problem}" in s for s in subjects) == 1, subjects
        for m in smtp.messages:
            is_health = "health:" in m.message["Subject"]
            assert m.rcpt_tos == ([OPERATOR] if is_health else [READER]), m.message["Subject"]
        alerts = query(db, "SELECT document_id, type FROM alerts")
        assert ("policy/privacy-policy", "ai_training_added") in alerts
        assert all(doc == "policy/privacy-policy" for doc, _ in alerts)
        # the log: one line per check with document, outcome and duration
        log = d.log
        assert "policy/privacy-policy new_version v2 (" in log
        assert "flaky/privacy-policy http_error (" in log
        assert "slow/privacy-policy timeout (" in log
        assert "Traceback" not in log


def fetch_counts(db: Path) -> dict[str, int]:
    return dict(query(db, "SELECT document_id, count(*) FROM fetches GROUP BY document_id"))


def fetch_times(db: Path, doc: str) -> list[str]:
    rows = query(db, "SELECT started_at FROM fetches WHERE document_id = ? ORDER BY id", doc)
    return [r[0] for r in rows]


def test_restart_neither_skips_nor_repeats(tmp_path: Path) -> None:
    paths = [f"/p{i}" for i in range(6)]
    with serve({p: policy(f"P{p}") for p in paths}) as server, smtp_server() as smtp:
        config = write_config(tmp_path, server, smtp, paths, interval="3s")
        db = tmp_path / "pm.db"
        ids = [f"p{p[2:]}/privacy-policy" for p in paths]

        def all_have(n: int) -> Callable[[], bool]:
            return lambda: (c := fetch_counts(db)) and all(c.get(i) == n for i in ids)

        # a first pass by `check` stores the first versions (and pays for the analysis)
        cli(config, "check")
        assert all_have(1)()
        # run 1 catches up with it once
        with daemon(config) as d:
            wait_until("second checks", all_have(2), 15, d)
            assert d.terminate()[0] == 0
        # run 2, restarted at once: nothing is due, so nothing is fetched at start; each
        # document runs again one interval after its last fetch
        with daemon(config) as d:
            wait_until("start", lambda: "daemon started" in d.log, 10, d)
            wait_until("third checks", all_have(3), 10, d)
            assert d.terminate()[0] == 0
        # down for more than two intervals: on restart each overdue document runs once, now
        time.sleep(7)
        restarted = dt.datetime.now(dt.UTC).replace(microsecond=0)
        with daemon(config) as d:
            wait_until("catch-up checks", all_have(4), 10, d)
            time.sleep(1.0)  # less than an interval: the missed runs are not replayed
            assert all(n == 4 for n in fetch_counts(db).values()), fetch_counts(db)
            assert d.terminate()[0] == 0
        assert all(server.hits[p] == 4 for p in paths), server.hits
        for doc in ids:
            times = [_at(t) for t in fetch_times(db, doc)]
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
            assert all(g >= 2 for g in gaps), (doc, gaps)  # 3 s; stored to the second
            assert gaps[-1] >= 6, (doc, gaps)
            assert times[-1] - restarted < dt.timedelta(seconds=4), (doc, times, restarted)


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _gap(a: str, b: str) -> float:
    return (_at(b) - _at(a)).total_seconds()


def test_sighup_and_config_edits_reload_documents(tmp_path: Path) -> None:
    with serve({"/a": policy("A"), "/b": policy("B")}) as server, smtp_server() as smtp:
        config = write_config(tmp_path, server, smtp, ["/a"], interval="1s")
        db = tmp_path / "pm.db"
        with daemon(config) as d:
            wait_until("a checked", lambda: fetch_counts(db).get("a/privacy-policy"), 10, d)
            good = config.read_text(encoding="utf-8")
            # a broken config is logged and the old one kept
            config.write_text(good + "  - platform: Broken\n    url: not-a-url\n", "utf-8")
            os.kill(d.proc.pid, signal.SIGHUP)
            wait_until("reload error", lambda: "keeping the running config" in d.log, 10, d)
            # an edited config adds b and drops a, without a restart
            config.write_text(good.replace("A\n", "B\n").replace("/a", "/b"), encoding="utf-8")
            wait_until("b checked", lambda: fetch_counts(db).get("b/privacy-policy"), 10, d)
            a_before = fetch_counts(db)["a/privacy-policy"]
            time.sleep(1.5)
            assert fetch_counts(db)["a/privacy-policy"] == a_before
            assert d.proc.poll() is None
            assert d.terminate()[0] == 0

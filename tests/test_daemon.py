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
    max_checks: int = 8,
    timeout: str = "0.5",
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
max_checks: {max_checks}
http:
  timeout: {timeout}
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

    def __init__(self, config: Path, flags: tuple[str, ...] = ()) -> None:
        self.log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", *flags, "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            cwd=config.parent,
            env=ENV,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def terminate(
        self, timeout: float = 8.0, sig: signal.Signals = signal.SIGTERM
    ) -> tuple[int, float]:
        """SIGTERM (or ``sig``); the exit status and how long the exit took."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
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
def daemon(config: Path, flags: tuple[str, ...] = ()) -> Iterator[Daemon]:
    d = Daemon(config, flags)
    try:
        yield d
    finally:
        d.kill()


# The timeouts below are what an idle machine needs; a loaded 2-core one running other work
# can take several times longer (a first version compiles the rule packs): waiting is cheap,
# a flaky failure is not.
SLACK = 3


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, d: Daemon) -> Any:
    deadline = time.monotonic() + timeout * SLACK
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
    rows = query(db, "SELECT count(*) FROM versions WHERE document_id = ?", doc)
    return rows[0][0] if rows else 0  # no database (or schema) yet: none


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
            server.routes["/limited"] = policy("Limited")  # no more 429
            server.routes["/slow"] = policy("Slow")  # answers in time again
            other.routes["/robots.txt"] = (404, {}, "")
            wait_until(
                "recoveries",
                lambda: sum("recovered" in s for s in health_mail(smtp)) >= 6,
                15,
                d,
            )
            for doc in ("down", "limited", "slow"):
                assert versions(db, f"{doc}/privacy-policy") == 1, doc
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
            ("limited/privacy-policy", "failing"),
            ("slow/privacy-policy", "failing"),
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
        with daemon(config) as d:
            # measured from the scheduler's start, not the process's (a loaded machine may
            # take seconds to import everything)
            wait_until("start", lambda: "daemon started" in d.log, 20, d)
            restarted = dt.datetime.now(dt.UTC).replace(microsecond=0)
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
            # at once (the start of the check is stored to the second), not an interval later
            assert times[-1] - restarted < dt.timedelta(seconds=2), (doc, times, restarted)


def test_start_writes_the_pages_alerts_lack(tmp_path: Path) -> None:
    import shutil

    from bs4 import BeautifulSoup

    with serve({"/a": policy("A", extra=AI_CLAUSE)}) as server, smtp_server() as smtp:
        config = write_config(tmp_path, server, smtp, ["/a"], interval="1h")
        cli(config, "check")  # one alert, its page, the index and the feed
        reports = tmp_path / "reports"
        page = reports / "alerts" / "1.html"
        assert page.exists()
        shutil.rmtree(reports)  # a new reports directory, say
        with daemon(config) as d:
            wait_until("the missing pages", lambda: "alert pages:" in d.log, 10, d)
            assert page.exists() and (reports / "alerts" / "index.html").exists()
            text = " ".join(BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser").strings)
            assert "artificial intelligence" in text and "models" in text  # the clause is shown
            assert d.terminate()[0] == 0
        assert server.hits["/a"] == 1  # nothing was due: the pages came from the database


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _gap(a: str, b: str) -> float:
    return (_at(b) - _at(a)).total_seconds()


def test_sighup_alone_reloads_the_documents(tmp_path: Path) -> None:
    with serve({"/a": policy("A"), "/b": policy("B")}) as server, smtp_server() as smtp:
        config = write_config(tmp_path, server, smtp, ["/a"], interval="1s")
        db = tmp_path / "pm.db"
        with daemon(config) as d:
            wait_until("a checked", lambda: fetch_counts(db).get("a/privacy-policy"), 10, d)
            # b instead of a, in a file of the same size and mtime: only SIGHUP can tell
            before = os.stat(config)
            edited = config.read_text(encoding="utf-8").replace("A\n", "B\n").replace("/a", "/b")
            config.write_text(edited, encoding="utf-8")
            os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
            assert os.stat(config).st_size == before.st_size
            time.sleep(3.5)  # more than the watcher's 2 s poll: it sees nothing
            assert "b/privacy-policy" not in fetch_counts(db)
            assert "config reloaded" not in d.log
            os.kill(d.proc.pid, signal.SIGHUP)
            wait_until("b checked", lambda: fetch_counts(db).get("b/privacy-policy"), 10, d)
            a_before = fetch_counts(db)["a/privacy-policy"]
            time.sleep(1.5)
            assert fetch_counts(db)["a/privacy-policy"] == a_before
            assert "config reloaded (SIGHUP): 1 document(s); 1 added, 1 removed" in d.log
            assert d.terminate()[0] == 0


def test_saving_the_config_file_reloads_and_a_broken_one_is_kept_out(tmp_path: Path) -> None:
    with serve({"/a": policy("A"), "/b": policy("B")}) as server, smtp_server() as smtp:
        config = write_config(tmp_path, server, smtp, ["/a"], interval="1s")
        db = tmp_path / "pm.db"
        with daemon(config) as d:
            wait_until("a checked", lambda: fetch_counts(db).get("a/privacy-policy"), 10, d)
            good = config.read_text(encoding="utf-8")
            # a broken config is logged and the old one kept
            config.write_text(good + "  - platform: Broken\n    url: not-a-url\n", "utf-8")
            wait_until(
                "reload error",
                lambda: "config reload (config file changed) failed" in d.log,
                10,
                d,
            )
            assert "keeping the running config" in d.log
            # an edited config adds b and drops a, without a restart or a signal
            config.write_text(good.replace("A\n", "B\n").replace("/a", "/b"), encoding="utf-8")
            wait_until("b checked", lambda: fetch_counts(db).get("b/privacy-policy"), 10, d)
            a_before = fetch_counts(db)["a/privacy-policy"]
            time.sleep(1.5)
            assert fetch_counts(db)["a/privacy-policy"] == a_before
            assert "config reloaded (config file changed)" in d.log
            assert d.proc.poll() is None
            assert d.terminate()[0] == 0


def test_a_restart_while_checks_are_queued_and_running_checks_each_document_once(
    tmp_path: Path,
) -> None:
    paths = [f"/q{i}" for i in range(5)]
    routes = {
        p: Route(200, HTML, POLICY.format(name=f"Q{p[2:]}", extra="", tag="main"), delay=1.0)
        for p in paths
    }
    ids = [f"q{p[2:]}/privacy-policy" for p in paths]
    with serve(routes) as server, smtp_server() as smtp:
        # one check at a time, a second each: the others wait in the queue
        config = write_config(
            tmp_path, server, smtp, paths, interval="1h", max_checks=1, timeout="10"
        )
        db = tmp_path / "pm.db"
        with daemon(config) as d:
            wait_until("a first check", lambda: sum(fetch_counts(db).values()) >= 1, 20, d)
            code, _ = d.terminate()
        first_run = fetch_counts(db)
        assert code == 0, d.log
        assert 1 <= sum(first_run.values()) < len(paths), first_run  # some never started
        assert "Traceback" not in d.log, d.log
        with daemon(config) as d:
            wait_until(
                "every document checked",
                lambda: all(fetch_counts(db).get(i) == 1 for i in ids),
                30,
                d,
            )
            time.sleep(2.0)  # nothing runs twice: every document is due in an hour
            assert all(fetch_counts(db).get(i) == 1 for i in ids), fetch_counts(db)
            assert d.terminate()[0] == 0
        assert "Traceback" not in d.log, d.log
    for doc, path in zip(ids, paths, strict=True):
        assert versions(db, doc) == 1
        # a document checked before the restart was not fetched again after it
        assert server.hits[path] == 1 if doc in first_run else server.hits[path] <= 2
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_running_check_exits_cleanly_leaving_nothing_partial(
    tmp_path: Path, sig: signal.Signals
) -> None:
    hang = Route(200, HTML, POLICY.format(name="Hang", extra="", tag="main"), delay=30)
    with serve({"/done": policy("Done"), "/hang": hang}) as server, smtp_server() as smtp:
        config = write_config(tmp_path, server, smtp, ["/done", "/hang"], timeout="60")
        db = tmp_path / "pm.db"
        with daemon(config) as d:
            wait_until("done checked", lambda: versions(db, "done/privacy-policy") == 1, 20, d)
            wait_until("hang requested", lambda: server.hits["/hang"] == 1, 10, d)
            code, took = d.terminate(timeout=15, sig=sig)
    assert code == 0, d.log
    assert took < 9, f"{sig.name} took {took:.1f} s"  # 5 s of grace, then the check is cancelled
    assert "cancelling a check still running" in d.log
    assert "Traceback" not in d.log, d.log
    # the cancelled check wrote nothing: no fetch row, no version, no half a transaction
    assert outcomes(db, "hang/privacy-policy") == []
    assert versions(db, "hang/privacy-policy") == 0
    assert versions(db, "done/privacy-policy") == 1
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.parametrize(
    ("flags", "info", "debug"),
    [((), True, False), (("-q",), False, False), (("-vv",), True, True)],
    ids=["default", "-q", "-vv"],
)
def test_run_logs_one_line_per_check_and_obeys_v_and_q(
    tmp_path: Path, flags: tuple[str, ...], info: bool, debug: bool
) -> None:
    with serve({"/p": policy("P")}) as server, smtp_server() as smtp:
        config = write_config(tmp_path, server, smtp, [], interval="1h")
        # ignore_robots makes every fetch log a warning: -q must keep it
        config.write_text(
            config.read_text(encoding="utf-8")
            + f"  - platform: P\n    url: {server.url('/p')}\n    select: main\n"
            "    interval: 1h\n    ignore_robots: true\n",
            encoding="utf-8",
        )
        db = tmp_path / "pm.db"
        with daemon(config, flags) as d:
            wait_until("the check", lambda: versions(db, "p/privacy-policy") == 1, 20, d)
            time.sleep(0.3)
            assert d.terminate()[0] == 0
    log = d.log
    assert "WARNING monitor.fetch: ignoring robots.txt for" in log
    assert ("INFO monitor.pipeline: p/privacy-policy new_version v1 (" in log) is info
    assert ("INFO monitor.scheduler: daemon started" in log) is info
    assert (" INFO " in log) is info
    assert ("DEBUG monitor.fetch: GET " in log) is debug

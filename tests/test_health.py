"""Health alerts: one operator e-mail when a problem starts and one when it ends, decided
from the fetch log, remembered in the database."""

from __future__ import annotations

import datetime as dt

import pytest

from monitor import health
from monitor.config import Config, parse_config
from monitor.store import Store

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
DOC = "example/privacy-policy"
OPERATOR = "ops@example.org"


def make_config(operator: str | None = OPERATOR) -> Config:
    return parse_config(
        (f"operator: {operator}\n" if operator else "")
        + "health:\n  failing_for: 1h\n  suspect_in_a_row: 3\n"
        "documents:\n  - platform: Example\n    url: https://example.org/privacy\n"
    )


@pytest.fixture
def config() -> Config:
    return make_config()


@pytest.fixture
def watched(store: Store, config: Config) -> Store:
    store.upsert_document(config.documents[0])
    return store


class Log:
    """Writes fetch rows every ten minutes of fake time and asks for a health decision."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store, self.config, self.now = store, config, T0

    def fetch(self, outcome: str, detail: str | None = None) -> list[health.Transition]:
        self.now += dt.timedelta(minutes=10)
        self.store.record_fetch(
            DOC,
            started_at=self.now,
            url="https://example.org/privacy",
            outcome=outcome,
            detail=detail,
        )
        return health.update(self.store, self.config, [DOC], now=self.now)


def health_mail(store: Store) -> list[dict[str, object]]:
    return store.query("SELECT recipient, subject, body_text FROM deliveries WHERE kind = 'health'")


def test_failing_alerts_once_after_the_threshold_and_once_on_recovery(
    watched: Store, config: Config
) -> None:
    log = Log(watched, config)
    assert log.fetch("unchanged") == []
    # failures from 12:20 to 13:10: under the one-hour threshold
    for _ in range(6):
        assert log.fetch("http_error", "HTTP 500 Internal Server Error") == []
    started = log.fetch("timeout", "no complete response within 30 s")  # 13:20
    assert [(t.problem, t.kind) for t in started] == [("failing", "started")]
    assert started[0].started_at == "2025-03-01T12:20:00Z"  # the first failed fetch
    for _ in range(10):
        assert log.fetch("network_error", "connection refused") == []
    recovered = log.fetch("not_modified")
    assert [(t.problem, t.kind) for t in recovered] == [("failing", "recovered")]
    mail = health_mail(watched)
    assert [m["recipient"] for m in mail] == [OPERATOR, OPERATOR]
    assert f"{DOC}: failing since 2025-03-01T12:20:00Z" in str(mail[0]["subject"])
    assert "https://example.org/privacy" in str(mail[0]["body_text"])
    assert f"{DOC}: recovered from failing" in str(mail[1]["subject"])
    assert health.open_problems(watched) == {}


def test_suspect_fetches_in_a_row(watched: Store, config: Config) -> None:
    log = Log(watched, config)
    log.fetch("new_version")
    assert log.fetch("suspect", "looks like a captcha / bot check") == []
    assert log.fetch("suspect", "looks like a captcha / bot check") == []
    started = log.fetch("suspect", "looks like a login wall")
    assert [(t.problem, t.kind) for t in started] == [("suspect", "started")]
    assert "captcha" in (started[0].detail or "") and "login wall" in (started[0].detail or "")
    assert log.fetch("suspect", "looks like a captcha / bot check") == []
    # a failure is not a recovery from "suspect" (it may open "failing" later, on its own)
    assert log.fetch("http_error", "HTTP 503") == []
    assert [t.kind for t in log.fetch("unchanged")] == ["recovered"]
    assert len(health_mail(watched)) == 2


def test_interrupted_suspect_streak_does_not_alert(watched: Store, config: Config) -> None:
    log = Log(watched, config)
    for outcome in ("suspect", "suspect", "unchanged", "suspect", "suspect", "same_body"):
        assert log.fetch(outcome, "looks like an error page (404)") == []
    assert health_mail(watched) == []


def test_selector_that_stopped_matching(watched: Store, config: Config) -> None:
    log = Log(watched, config)
    log.fetch("new_version")
    log.fetch("suspect", "empty selection")
    log.fetch("suspect", "empty selection")
    started = log.fetch("suspect", "empty selection")
    assert [(t.problem, t.kind) for t in started] == [("selector", "started")]
    assert "documents[].select" in str(health_mail(watched)[0]["body_text"])
    assert [(t.problem, t.kind) for t in log.fetch("new_version")] == [("selector", "recovered")]


def test_robots_refusal_alerts_at_once_and_recovers_when_allowed(
    watched: Store, config: Config
) -> None:
    log = Log(watched, config)
    log.fetch("unchanged")
    started = log.fetch("robots_disallowed", "robots.txt of https://example.org disallows /privacy")
    assert [(t.problem, t.kind) for t in started] == [("robots", "started")]
    assert log.fetch("robots_disallowed", "still") == []
    assert [(t.problem, t.kind) for t in log.fetch("unchanged")] == [("robots", "recovered")]


def test_state_survives_a_restart(store: Store, config: Config, tmp_path: object) -> None:
    store.upsert_document(config.documents[0])
    log = Log(store, config)
    log.fetch("robots_disallowed", "disallowed")
    path = store.path
    store.close()
    with Store(path) as again:  # a new process: same database, no memory
        log.store = again
        assert log.fetch("robots_disallowed", "disallowed") == []
        assert len(health_mail(again)) == 1
        assert [p.problem for p in health.open_problems(again)[DOC]] == ["robots"]


def test_a_new_episode_alerts_again(watched: Store, config: Config) -> None:
    log = Log(watched, config)
    log.fetch("robots_disallowed", "x")
    log.fetch("unchanged")
    assert [t.kind for t in log.fetch("robots_disallowed", "x")] == ["started"]
    assert len(health_mail(watched)) == 3  # start, recovery, start


def test_without_operator_state_is_kept_and_nothing_is_queued(store: Store) -> None:
    config = make_config(operator=None)
    store.upsert_document(config.documents[0])
    log = Log(store, config)
    started = log.fetch("robots_disallowed", "x")
    assert started[0].delivery_id is None
    assert health.open_problems(store)[DOC][0].problem == "robots"
    assert health_mail(store) == []


def test_failing_streak_longer_than_the_window_read(watched: Store, config: Config) -> None:
    log = Log(watched, config)
    log.fetch("unchanged")
    for _ in range(60):  # more failed rows than one decision reads, written without deciding
        log.now += dt.timedelta(minutes=10)
        watched.record_fetch(DOC, started_at=log.now, url="u", outcome="http_error")
    started = log.fetch("http_error", "HTTP 500")
    assert [t.problem for t in started] == ["failing"]
    assert started[0].started_at == "2025-03-01T12:20:00Z"


def test_check_decides_health_too(tmp_path: object) -> None:
    from pathlib import Path

    from click.testing import CliRunner
    from httpserver import serve

    from monitor.cli import cli

    folder = Path(str(tmp_path))
    robots = {"/robots.txt": (200, {}, "User-agent: *\nDisallow: /privacy\n")}
    with serve(robots) as srv:
        config = folder / "config.yaml"
        config.write_text(
            f"database: pm.db\noperator: {OPERATOR}\nhttp:\n  per_host_delay: 0\n"
            f"documents:\n  - platform: Example\n    url: {srv.url('/privacy')}\n",
            encoding="utf-8",
        )
        result = CliRunner().invoke(cli, ["--config", str(config), "check"])
    assert result.exit_code == 0, result.output
    with Store(folder / "pm.db") as store:
        assert [p.problem for p in health.open_problems(store)[DOC]] == ["robots"]
        assert [m["recipient"] for m in health_mail(store)] == [OPERATOR]


def test_a_site_whose_robots_txt_is_down_is_failing_from_start_to_end(tmp_path: object) -> None:
    """A site that is down answers robots.txt with errors too: that is an outage (`failing`,
    once, from the first failed fetch to the recovery), never a `robots` refusal."""
    import asyncio
    from pathlib import Path

    from httpserver import Route, serve

    from monitor.pipeline import Pipeline

    folder = Path(str(tmp_path))
    page = (
        "<main><h1>Example Privacy Policy</h1>"
        + "<p>We collect the name and e-mail address you give us when you sign up.</p>" * 6
        + "</main>"
    )
    ok = Route(200, {"Content-Type": "text/html"}, page)
    down = Route(503, {"Content-Type": "text/plain"}, "down for maintenance")
    with serve({"/robots.txt": (404, {}, ""), "/privacy": ok}) as srv:
        config = parse_config(
            f"database: {folder / 'pm.db'}\noperator: {OPERATOR}\n"
            "health:\n  failing_for: 1h\nhttp:\n  per_host_delay: 0\n  retries: 0\n"
            f"documents:\n  - platform: Example\n    url: {srv.url('/privacy')}\n"
        )
        # robots.txt down, then the page down behind a good robots.txt, then robots.txt down
        # again: one outage of four hours
        plan = [
            (None, ok),
            (down, ok),
            (down, ok),
            ((404, {}, ""), down),
            (down, down),
            ((404, {}, ""), ok),
        ]
        transitions: list[health.Transition] = []
        outcomes = []
        with Store(config.database_path) as store:
            for step, (robots, privacy) in enumerate(plan):
                when = T0 + dt.timedelta(hours=step)
                if robots is not None:
                    srv.routes["/robots.txt"] = robots
                srv.routes["/privacy"] = privacy
                # a new pipeline per check: no robots.txt cached from the previous one
                pipeline = Pipeline(config, store, clock=lambda when=when: when)
                (result,) = asyncio.run(pipeline.check(config.documents))
                outcomes.append((result.outcome.value, result.detail or ""))
                transitions += health.update(store, config, [DOC], now=when)
            mail = health_mail(store)
    assert [o for o, _ in outcomes] == [
        "new_version",
        "http_error",
        "http_error",
        "http_error",
        "http_error",
        "same_body",
    ]
    assert outcomes[1][1].startswith("robots.txt unreachable: HTTP 503")
    assert not outcomes[3][1].startswith("robots.txt")  # the page itself answered 503
    assert [(t.problem, t.kind, t.started_at) for t in transitions] == [
        ("failing", "started", "2025-03-01T13:00:00Z"),
        ("failing", "recovered", "2025-03-01T13:00:00Z"),
    ]
    assert len(mail) == 2
    assert "robots.txt disallows" not in str(mail[0]["body_text"])


# --- stale: a document that stopped being checked ---------------------------------------------

HOURLY = parse_config(
    f"operator: {OPERATOR}\njitter: 60\n"
    "documents:\n  - platform: Example\n    url: https://example.org/privacy\n    interval: 1h\n"
)


def _fetched(store: Store, when: dt.datetime) -> None:
    store.record_fetch(DOC, started_at=when, url="https://example.org/privacy", outcome="unchanged")


def test_a_document_without_fetches_for_three_intervals_is_stale_once(store: Store) -> None:
    store.upsert_document(HOURLY.documents[0])
    _fetched(store, T0)
    planned = {DOC: T0 + dt.timedelta(hours=1)}

    def sweep(after: dt.timedelta) -> list[tuple[str, str]]:
        found = health.sweep_stale(store, HOURLY, planned, now=T0 + after)
        return [(t.problem, t.kind) for t in found]

    assert sweep(dt.timedelta(hours=2)) == []  # late, not yet stale
    assert sweep(dt.timedelta(hours=3, seconds=59)) == []  # jitter included
    assert sweep(dt.timedelta(hours=3, seconds=61)) == [("stale", "started")]
    assert sweep(dt.timedelta(hours=4)) == []  # one alert, not one per sweep
    (problem,) = health.open_problems(store)[DOC]
    assert (problem.problem, problem.started_at) == ("stale", "2025-03-01T12:00:00Z")
    assert "no fetch since 2025-03-01T12:00:00Z" in (problem.detail or "")
    # a fetch lands (a `check` from cron, the daemon unstuck): the next sweep says so
    _fetched(store, T0 + dt.timedelta(hours=4, minutes=5))
    assert sweep(dt.timedelta(hours=4, minutes=6)) == [("stale", "recovered")]
    mail = health_mail(store)
    assert [str(m["subject"]).split("health: ", 1)[1] for m in mail] == [
        f"{DOC}: stale since 2025-03-01T12:00:00Z",
        f"{DOC}: recovered from stale after 4.1 h",
    ]
    assert "has not checked this document" in str(mail[0]["body_text"])


def test_a_check_that_lands_ends_a_stale_episode(store: Store) -> None:
    store.upsert_document(HOURLY.documents[0])
    _fetched(store, T0)
    later = T0 + dt.timedelta(hours=5)
    assert health.sweep_stale(store, HOURLY, {}, now=later)[0].kind == "started"
    _fetched(store, later + dt.timedelta(minutes=1))
    recovered = health.update(store, HOURLY, [DOC], now=later + dt.timedelta(minutes=1))
    assert [(t.problem, t.kind) for t in recovered] == [("stale", "recovered")]
    assert health.open_problems(store) == {}


def test_a_deferred_run_is_not_stale_before_it_is_due(store: Store) -> None:
    # the daemon planned the next run five hours out (a Retry-After, an error backoff)
    store.upsert_document(HOURLY.documents[0])
    _fetched(store, T0)
    planned = {DOC: T0 + dt.timedelta(hours=5)}
    assert health.sweep_stale(store, HOURLY, planned, now=T0 + dt.timedelta(hours=6)) == []
    late = health.sweep_stale(store, HOURLY, planned, now=T0 + dt.timedelta(hours=7, minutes=2))
    assert [t.kind for t in late] == ["started"]


def test_a_document_never_fetched_is_stale_after_its_planned_run(store: Store) -> None:
    store.upsert_document(HOURLY.documents[0])
    planned = {DOC: T0}
    assert health.sweep_stale(store, HOURLY, planned, now=T0 + dt.timedelta(hours=2)) == []
    (started,) = health.sweep_stale(
        store, HOURLY, planned, now=T0 + dt.timedelta(hours=2, minutes=2)
    )
    assert started.detail == "never fetched; due since 2025-03-01T12:00:00Z"
    # nothing planned and nothing fetched (not the daemon's document): nothing to say
    assert health.sweep_stale(store, HOURLY, {}, now=T0 + dt.timedelta(days=9)) == []

"""Fetch stage: conditional GET, retries, robots.txt, limits, charsets, politeness."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import itertools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import httpx
import pytest
import respx
from httpserver import Request, Route, serve

from monitor.config import HttpSettings
from monitor.fetch import Fetcher, decode_body
from monitor.models import FetchResult, Outcome

T = TypeVar("T")

SITE = "https://policies.example"
PAGE = f"{SITE}/privacy"
UA = "policy-monitor-test/1.0 (+https://example.org/contact)"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class FakeSleep:
    """Records requested waits instead of waiting them out."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


def make_settings(**overrides: Any) -> HttpSettings:
    values: dict[str, Any] = {
        "user_agent": UA,
        "per_host_delay": 0,
        "backoff": 1.0,
        "retries": 3,
        "max_bytes": 4096,
    }
    values.update(overrides)
    return HttpSettings(**values)


def make_router(robots: str | int | None = 404) -> respx.Router:
    """A router for SITE; ``robots`` is the robots.txt body, or a status to answer with."""
    router = respx.Router(assert_all_called=False)
    if isinstance(robots, str):
        router.get(f"{SITE}/robots.txt").respond(200, text=robots)
    elif isinstance(robots, int):
        router.get(f"{SITE}/robots.txt").respond(robots)
    return router


async def fetch_once(
    router: respx.Router,
    url: str = PAGE,
    *,
    settings: HttpSettings | None = None,
    sleep: FakeSleep | None = None,
    **kwargs: Any,
) -> FetchResult:
    async with Fetcher(
        settings or make_settings(),
        transport=httpx.MockTransport(router.async_handler),
        sleep=sleep or FakeSleep(),
    ) as fetcher:
        return await fetcher.fetch(url, **kwargs)


# --- a plain fetch and conditional GET -------------------------------------------------------


def test_ok_response_fills_every_field_and_merges_headers() -> None:
    router = make_router()
    route = router.get(PAGE).respond(
        200,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "ETag": '"v1"',
            "Last-Modified": "Wed, 01 May 2024 10:00:00 GMT",
        },
        content="<p>Politique de confidentialité</p>".encode(),
    )
    settings = make_settings(headers={"Accept-Language": "fr", "X-Team": "base"})

    result = run(fetch_once(router, settings=settings, headers={"X-Team": "doc"}))

    assert result.outcome is None
    assert result.error is None
    assert (result.status, result.attempts, result.final_url) == (200, 1, PAGE)
    assert result.etag == '"v1"'
    assert result.last_modified == "Wed, 01 May 2024 10:00:00 GMT"
    assert result.content_type == "text/html; charset=utf-8"
    assert result.body == "<p>Politique de confidentialité</p>".encode()
    assert result.text == "<p>Politique de confidentialité</p>"
    assert result.robots_overridden is False
    sent = route.calls.last.request.headers
    assert sent["User-Agent"] == UA
    assert sent["Accept-Language"] == "fr"
    assert sent["X-Team"] == "doc"  # the per-call header wins over the configured one
    assert "If-None-Match" not in sent and "If-Modified-Since" not in sent


def test_conditional_get_sends_validators_and_304_is_not_modified() -> None:
    router = make_router()
    route = router.get(PAGE).respond(304)
    since = "Wed, 01 May 2024 10:00:00 GMT"

    result = run(fetch_once(router, etag='"abc"', last_modified=since))

    sent = route.calls.last.request.headers
    assert sent["If-None-Match"] == '"abc"'
    assert sent["If-Modified-Since"] == since
    assert result.outcome is Outcome.NOT_MODIFIED
    assert result.status == 304
    assert result.body is None and result.text is None
    # The server sent no validators: the ones we had stay valid.
    assert (result.etag, result.last_modified) == ('"abc"', since)


def test_304_with_new_validator_reports_the_new_one() -> None:
    router = make_router()
    router.get(PAGE).respond(304, headers={"ETag": '"abd"'})

    result = run(fetch_once(router, etag='"abc"'))

    assert result.outcome is Outcome.NOT_MODIFIED
    assert result.etag == '"abd"'


# --- retries ---------------------------------------------------------------------------------


def test_500_then_200_is_retried_with_doubling_backoff() -> None:
    router = make_router()
    route = router.get(PAGE)
    route.side_effect = [httpx.Response(500), httpx.Response(502), httpx.Response(200, text="ok")]
    sleep = FakeSleep()

    result = run(fetch_once(router, settings=make_settings(backoff=2.0), sleep=sleep))

    assert result.outcome is None
    assert result.text == "ok"
    assert result.attempts == 3
    assert route.call_count == 3
    assert len(sleep.calls) == 2
    first, second = sleep.calls
    assert 2.0 <= first <= 2.0 * 1.1  # backoff plus at most 10 % jitter
    assert 4.0 <= second <= 4.0 * 1.1


def test_persistent_500_gives_up_after_the_configured_retries() -> None:
    router = make_router()
    route = router.get(PAGE).respond(500)
    sleep = FakeSleep()

    result = run(fetch_once(router, settings=make_settings(retries=2), sleep=sleep))

    assert result.outcome is Outcome.HTTP_ERROR
    assert result.status == 500
    assert result.attempts == 3
    assert route.call_count == 3
    assert len(sleep.calls) == 2
    assert result.error is not None and "500" in result.error


def test_429_retry_after_seconds_is_honoured() -> None:
    router = make_router()
    route = router.get(PAGE)
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, text="ok"),
    ]
    sleep = FakeSleep()

    result = run(fetch_once(router, sleep=sleep))

    assert result.outcome is None
    assert result.attempts == 2
    assert sleep.calls == [7.0]


def test_503_retry_after_http_date_is_honoured() -> None:
    router = make_router()
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    route = router.get(PAGE)
    route.side_effect = [
        httpx.Response(
            503, headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)}
        ),
        httpx.Response(200, text="ok"),
    ]
    sleep = FakeSleep()

    result = run(fetch_once(router, sleep=sleep))

    assert result.outcome is None
    assert len(sleep.calls) == 1
    assert 110 <= sleep.calls[0] <= 120  # the date has one-second precision


def test_retry_after_longer_than_the_cap_fails_without_waiting() -> None:
    router = make_router()
    route = router.get(PAGE).respond(429, headers={"Retry-After": "3600"})
    sleep = FakeSleep()

    result = run(fetch_once(router, settings=make_settings(max_retry_after=60), sleep=sleep))

    assert result.outcome is Outcome.HTTP_ERROR
    assert result.status == 429
    assert result.attempts == 1
    assert route.call_count == 1
    assert sleep.calls == []
    assert result.error is not None and "Retry-After" in result.error


def test_connect_error_is_retried_then_reported_as_network_error() -> None:
    router = make_router()
    route = router.get(PAGE).mock(side_effect=httpx.ConnectError("connection refused"))
    sleep = FakeSleep()

    result = run(fetch_once(router, sleep=sleep))

    assert result.outcome is Outcome.NETWORK_ERROR
    assert result.status is None
    assert result.attempts == 4
    assert route.call_count == 4
    assert len(sleep.calls) == 3
    assert result.error is not None and "connection refused" in result.error


def test_read_error_then_success_is_retried() -> None:
    router = make_router()
    route = router.get(PAGE)
    route.side_effect = [httpx.ReadError("reset by peer"), httpx.Response(200, text="ok")]

    result = run(fetch_once(router))

    assert result.outcome is None
    assert result.attempts == 2


def test_404_is_not_retried() -> None:
    router = make_router()
    route = router.get(PAGE).respond(404)
    sleep = FakeSleep()

    result = run(fetch_once(router, sleep=sleep))

    assert result.outcome is Outcome.HTTP_ERROR
    assert result.status == 404
    assert result.attempts == 1
    assert route.call_count == 1
    assert sleep.calls == []
    assert result.body is None


def test_one_debug_line_per_attempt(caplog: pytest.LogCaptureFixture) -> None:
    router = make_router()
    router.get(PAGE).side_effect = [httpx.Response(500), httpx.Response(200, text="ok")]

    with caplog.at_level(logging.DEBUG, logger="monitor.fetch"):
        run(fetch_once(router, settings=make_settings(respect_robots=False)))

    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(lines) == 2
    assert "attempt 1/4" in lines[0] and "500" in lines[0]
    assert "attempt 2/4" in lines[1] and "200" in lines[1]


# --- robots.txt ------------------------------------------------------------------------------


def test_robots_disallow_blocks_the_page_without_requesting_it() -> None:
    router = make_router(robots="User-agent: *\nDisallow: /legal/\n")
    page = router.get(f"{SITE}/legal/privacy").respond(200, text="secret")

    result = run(fetch_once(router, f"{SITE}/legal/privacy"))

    assert result.outcome is Outcome.ROBOTS_DISALLOWED
    assert result.error is not None and "/legal/privacy" in result.error
    assert result.attempts == 0
    assert page.call_count == 0
    assert result.body is None


def test_robots_group_for_our_agent_applies_to_us() -> None:
    robots = "User-agent: policy-monitor-test\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    router = make_router(robots=robots)
    page = router.get(PAGE).respond(200, text="x")

    result = run(fetch_once(router))

    assert result.outcome is Outcome.ROBOTS_DISALLOWED
    assert page.call_count == 0


def test_robots_allowing_the_path_lets_the_fetch_through() -> None:
    router = make_router(robots="User-agent: *\nDisallow: /admin/\n")
    router.get(PAGE).respond(200, text="policy")

    result = run(fetch_once(router))

    assert result.outcome is None
    assert result.text == "policy"


@pytest.mark.parametrize(
    ("robots_status", "allowed"),
    [(404, True), (410, True), (401, False), (403, False)],
)
def test_robots_status_decides_by_rfc_9309(robots_status: int, allowed: bool) -> None:
    router = make_router(robots=robots_status)
    page = router.get(PAGE).respond(200, text="policy")

    result = run(fetch_once(router))

    assert (result.outcome is None) is allowed
    assert (page.call_count == 1) is allowed
    if not allowed:
        assert result.outcome is Outcome.ROBOTS_DISALLOWED
        assert result.error is not None and "forbidden" in result.error


@pytest.mark.parametrize("robots_status", [429, 500, 503])
def test_robots_txt_server_error_is_the_failure_it_was_not_a_refusal(robots_status: int) -> None:
    router = make_router(robots=robots_status)
    page = router.get(PAGE).respond(200, text="policy")
    sleep = FakeSleep()

    result = run(fetch_once(router, settings=make_settings(retries=2), sleep=sleep))

    assert page.call_count == 0  # RFC 9309: robots.txt unreachable, so the page is not fetched
    assert result.outcome is Outcome.HTTP_ERROR
    assert result.error is not None
    assert result.error.startswith("robots.txt unreachable: ")
    assert str(robots_status) in result.error
    assert router.routes[0].call_count == 3  # retried like any request
    assert result.attempts == 0  # of the page


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (httpx.ConnectError("connection refused"), Outcome.NETWORK_ERROR),
        (httpx.ReadTimeout("timed out"), Outcome.TIMEOUT),
    ],
)
def test_unreachable_robots_keeps_the_page_unfetched_and_records_why(
    error: Exception, outcome: Outcome
) -> None:
    router = make_router(robots=None)
    router.get(f"{SITE}/robots.txt").mock(side_effect=error)
    page = router.get(PAGE).respond(200, text="policy")

    result = run(fetch_once(router, settings=make_settings(retries=0)))

    assert result.outcome is outcome
    assert result.error is not None and result.error.startswith("robots.txt unreachable: ")
    assert page.call_count == 0


def test_a_failed_robots_txt_is_asked_again_at_the_next_fetch() -> None:
    router = make_router(robots=None)
    robots = router.get(f"{SITE}/robots.txt")
    robots.side_effect = [
        httpx.ConnectError("down"),
        httpx.Response(200, text="User-agent: *\nDisallow: /private\n"),
    ]
    page = router.get(PAGE).respond(200, text="policy")

    async def twice() -> list[FetchResult]:
        async with Fetcher(
            make_settings(retries=0),
            transport=httpx.MockTransport(router.async_handler),
            sleep=FakeSleep(),
        ) as fetcher:
            first = await fetcher.fetch(PAGE)
            return [first, await fetcher.fetch(PAGE), await fetcher.fetch(PAGE)]

    results = run(twice())

    assert [r.outcome for r in results] == [Outcome.NETWORK_ERROR, None, None]
    assert robots.call_count == 2  # the good answer is cached, the failure was not
    assert page.call_count == 2


def test_checks_waiting_for_a_failing_robots_txt_share_its_answer() -> None:
    router = make_router(robots=None)

    async def slow_failure(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)  # the other fetches queue behind this request meanwhile
        raise httpx.ConnectError("down")

    robots = router.get(f"{SITE}/robots.txt").mock(side_effect=slow_failure)
    router.get(url__regex=rf"^{SITE}/doc/\d$").respond(200, text="doc")

    async def many() -> list[FetchResult]:
        async with Fetcher(
            make_settings(retries=0, per_host_concurrency=4),
            transport=httpx.MockTransport(router.async_handler),
            sleep=FakeSleep(),
        ) as fetcher:
            return await asyncio.gather(*(fetcher.fetch(f"{SITE}/doc/{i}") for i in range(4)))

    results = run(many())

    assert [r.outcome for r in results] == [Outcome.NETWORK_ERROR] * 4
    assert robots.call_count == 1


def test_ignore_robots_fetches_and_warns_every_time(caplog: pytest.LogCaptureFixture) -> None:
    router = make_router(robots="User-agent: *\nDisallow: /\n")
    robots = router.routes[0]
    page = router.get(PAGE).respond(200, text="policy")

    async def twice() -> list[FetchResult]:
        async with Fetcher(
            make_settings(), transport=httpx.MockTransport(router.async_handler), sleep=FakeSleep()
        ) as fetcher:
            return [await fetcher.fetch(PAGE, ignore_robots=True) for _ in range(2)]

    with caplog.at_level(logging.WARNING, logger="monitor.fetch"):
        results = run(twice())

    assert [r.outcome for r in results] == [None, None]
    assert all(r.robots_overridden for r in results)
    assert page.call_count == 2
    assert robots.call_count == 0
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and PAGE in r.getMessage()
    ]
    assert len(warnings) == 2


def test_robots_is_fetched_once_per_host() -> None:
    other = "http://other.example:8080"
    router = make_router(robots=None)

    async def slow_robots(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)  # let the other fetches of the host catch up with this one
        return httpx.Response(200, text="User-agent: *\nDisallow: /private\n")

    robots = router.get(f"{SITE}/robots.txt").mock(side_effect=slow_robots)
    robots_other = router.get(f"{other}/robots.txt").respond(404)
    router.get(url__regex=rf"^{SITE}/doc/\d$").respond(200, text="doc")
    router.get(f"{other}/terms").respond(200, text="terms")
    urls = [f"{SITE}/doc/{i}" for i in range(4)] + [f"{other}/terms", f"{SITE}/private"]

    async def many() -> list[FetchResult]:
        async with Fetcher(
            make_settings(per_host_concurrency=4),
            transport=httpx.MockTransport(router.async_handler),
            sleep=FakeSleep(),
        ) as fetcher:
            return await asyncio.gather(*(fetcher.fetch(u) for u in urls))

    results = run(many())

    assert [r.outcome for r in results] == [None] * 5 + [Outcome.ROBOTS_DISALLOWED]
    assert robots.call_count == 1
    assert robots_other.call_count == 1


# --- limits ----------------------------------------------------------------------------------


class CountingStream(httpx.AsyncByteStream):
    """A body of ``chunks`` x ``size`` bytes that records how much was read."""

    def __init__(self, chunks: int, size: int = 1000, pause: float = 0.0) -> None:
        self.chunks, self.size, self.pause = chunks, size, pause
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            if self.pause:
                await asyncio.sleep(self.pause)
            self.sent += self.size
            yield b"a" * self.size


def test_announced_content_length_over_the_limit_is_too_large_unread() -> None:
    router = make_router()
    stream = CountingStream(chunks=10)
    router.get(PAGE).respond(200, headers={"Content-Length": "10000"}, stream=stream)

    result = run(fetch_once(router, settings=make_settings(max_bytes=4096)))

    assert result.outcome is Outcome.TOO_LARGE
    assert result.body is None and result.text is None
    assert stream.sent == 0
    assert result.error is not None and "10000" in result.error


def test_chunked_body_over_the_limit_stops_reading_early() -> None:
    router = make_router()
    stream = CountingStream(chunks=100)
    router.get(PAGE).respond(200, stream=stream)
    sleep = FakeSleep()

    result = run(fetch_once(router, settings=make_settings(max_bytes=4096), sleep=sleep))

    assert result.outcome is Outcome.TOO_LARGE
    assert result.body is None
    assert 4096 < stream.sent <= 6000  # stopped a chunk after crossing the limit
    assert result.attempts == 1 and sleep.calls == []  # a size problem is not retried


def test_body_exactly_at_the_limit_is_accepted() -> None:
    router = make_router()
    router.get(PAGE).respond(200, stream=CountingStream(chunks=4, size=1024))

    result = run(fetch_once(router, settings=make_settings(max_bytes=4096)))

    assert result.outcome is None
    assert result.body is not None and len(result.body) == 4096


def test_slow_drip_body_hits_the_overall_deadline() -> None:
    router = make_router()
    router.get(PAGE).respond(200, stream=CountingStream(chunks=1000, size=1, pause=0.02))
    settings = make_settings(timeout=0.2, retries=0)

    t0 = time.monotonic()
    result = run(fetch_once(router, settings=settings))
    took = time.monotonic() - t0

    assert result.outcome is Outcome.TIMEOUT
    assert result.body is None
    assert took < 2.0


def test_httpx_read_timeout_is_retried_then_timeout() -> None:
    router = make_router()
    route = router.get(PAGE).mock(side_effect=httpx.ReadTimeout("read timed out"))

    result = run(fetch_once(router, settings=make_settings(retries=1)))

    assert result.outcome is Outcome.TIMEOUT
    assert result.attempts == 2
    assert route.call_count == 2


# --- redirects -------------------------------------------------------------------------------


def test_redirect_chain_records_the_final_url() -> None:
    router = make_router()
    router.get(f"{SITE}/privacy").respond(301, headers={"Location": "/privacy/"})
    router.get(f"{SITE}/privacy/").respond(302, headers={"Location": f"{SITE}/en/privacy"})
    router.get(f"{SITE}/en/privacy").respond(200, text="final")

    result = run(fetch_once(router))

    assert result.outcome is None
    assert result.url == PAGE
    assert result.final_url == f"{SITE}/en/privacy"
    assert result.text == "final"


def test_redirect_loop_is_an_http_error() -> None:
    router = make_router()
    router.get(f"{SITE}/a").respond(302, headers={"Location": "/b"})
    router.get(f"{SITE}/b").respond(302, headers={"Location": "/a"})
    sleep = FakeSleep()

    result = run(fetch_once(router, f"{SITE}/a", sleep=sleep))

    assert result.outcome is Outcome.HTTP_ERROR
    assert result.error is not None and "redirect" in result.error
    assert sleep.calls == []


def test_invalid_url_is_an_outcome_not_an_exception() -> None:
    result = run(fetch_once(make_router(), "ftp://policies.example/privacy"))

    assert result.outcome is Outcome.NETWORK_ERROR
    assert result.error is not None and "invalid URL" in result.error


# --- charsets --------------------------------------------------------------------------------


def test_charset_from_the_content_type_header() -> None:
    router = make_router()
    body = "<p>Données personnelles, café</p>".encode("iso-8859-1")
    router.get(PAGE).respond(
        200, headers={"Content-Type": "text/html; charset=ISO-8859-1"}, content=body
    )

    result = run(fetch_once(router))

    assert result.text == "<p>Données personnelles, café</p>"


@pytest.mark.parametrize(
    "meta",
    [
        b'<meta charset="windows-1252">',
        b"<meta http-equiv='Content-Type' content='text/html; charset=windows-1252'>",
    ],
)
def test_charset_from_a_meta_tag(meta: bytes) -> None:
    router = make_router()
    body = b"<html><head>" + meta + b"</head><body>We don\x92t sell data \x96 ever</body>"
    router.get(PAGE).respond(200, headers={"Content-Type": "text/html"}, content=body)

    result = run(fetch_once(router))

    assert result.text is not None
    assert "We don\u2019t sell data \u2013 ever" in result.text


def test_undeclared_utf8_is_decoded_as_utf8() -> None:
    router = make_router()
    router.get(PAGE).respond(
        200, headers={"Content-Type": "text/html"}, content="Datenschutzerklärung – “KI”".encode()
    )

    result = run(fetch_once(router))

    assert result.text == "Datenschutzerklärung – “KI”"


def test_byte_order_mark_beats_a_wrong_header() -> None:
    body = b"\xef\xbb\xbf" + "Privacidad y protección".encode()

    assert decode_body(body, "text/html; charset=iso-8859-1") == "Privacidad y protección"


def test_latin1_label_is_read_as_windows_1252_like_browsers() -> None:
    assert decode_body(b"it\x92s", "text/plain; charset=iso-8859-1") == "it\u2019s"


def test_undeclared_legacy_bytes_decode_without_failing() -> None:
    text = "Nous ne vendons pas vos données. Vos données personnelles sont protégées. " * 5
    body = text.encode("cp1252")

    decoded = decode_body(body, None)

    assert "\ufffd" not in decoded
    assert decoded.startswith("Nous ne vendons pas vos donn")


def test_unknown_declared_charset_falls_through_to_utf8() -> None:
    assert decode_body("équipe".encode(), "text/html; charset=no-such-charset") == "équipe"


# --- politeness ------------------------------------------------------------------------------


class InFlight:
    """An async handler that counts requests in flight, per host and overall."""

    def __init__(self, hold: float = 0.03) -> None:
        self.hold = hold
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.total = 0
        self.peak_total = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.now[host] += 1
        self.total += 1
        self.peak[host] = max(self.peak[host], self.now[host])
        self.peak_total = max(self.peak_total, self.total)
        await asyncio.sleep(self.hold)
        self.now[host] -= 1
        self.total -= 1
        return httpx.Response(200, text="ok")


async def fetch_all(
    handler: InFlight, urls: list[str], settings: HttpSettings
) -> list[FetchResult]:
    async with Fetcher(settings, transport=httpx.MockTransport(handler)) as fetcher:
        return await asyncio.gather(*(fetcher.fetch(u) for u in urls))


def test_per_host_concurrency_is_never_exceeded() -> None:
    handler = InFlight()
    urls = [f"https://a.example/{i}" for i in range(6)] + [
        f"https://b.example/{i}" for i in range(3)
    ]
    settings = make_settings(per_host_concurrency=2, max_concurrency=10)

    results = run(fetch_all(handler, urls, settings))

    assert all(r.outcome is None for r in results)
    # Robots requests go through the same handler and count as requests to their host.
    assert handler.peak["a.example"] == 2
    assert handler.peak["b.example"] == 2
    assert handler.peak_total > 2  # the hosts did run side by side


def test_global_concurrency_is_never_exceeded() -> None:
    handler = InFlight(hold=0.01)
    urls = [f"https://h{i}.example/p" for i in range(5)]
    settings = make_settings(per_host_concurrency=2, max_concurrency=2, respect_robots=False)

    results = run(fetch_all(handler, urls, settings))

    assert all(r.outcome is None for r in results)
    assert handler.peak_total == 2


def test_per_host_delay_spaces_request_starts() -> None:
    starts: dict[str, list[float]] = {"a.example": [], "b.example": []}

    async def handler(request: httpx.Request) -> httpx.Response:
        starts[request.url.host].append(time.monotonic())
        return httpx.Response(200, text="ok")

    urls = [f"https://a.example/{i}" for i in range(3)] + ["https://b.example/0"]
    settings = make_settings(per_host_delay=0.05, per_host_concurrency=3)

    async def go() -> None:
        async with Fetcher(settings, transport=httpx.MockTransport(handler)) as fetcher:
            await asyncio.gather(*(fetcher.fetch(u) for u in urls))

    run(go())

    a = sorted(starts["a.example"])
    assert len(a) == 4  # robots.txt and three pages
    gaps = [later - earlier for earlier, later in itertools.pairwise(a)]
    # The fetcher spaces the starts by 50 ms on its clock; the handler sees them with the event
    # loop's scheduling delay on top, which differs from request to request on a loaded machine.
    assert min(gaps) >= 0.035
    # Another host has its own clock: its robots.txt and page are not queued behind a.example.
    assert len(starts["b.example"]) == 2
    assert starts["b.example"][0] < a[1]


# --- a real server ---------------------------------------------------------------------------


def test_etag_round_trip_against_a_real_server() -> None:
    def policy(request: Request) -> Route:
        if request.headers.get("If-None-Match") == '"v1"':
            return Route(304, {"ETag": '"v1"'})
        return Route(200, {"Content-Type": "text/html; charset=utf-8", "ETag": '"v1"'}, "<p>v1</p>")

    async def twice(url: str) -> tuple[FetchResult, FetchResult]:
        async with Fetcher(make_settings()) as fetcher:
            first = await fetcher.fetch(url)
            second = await fetcher.fetch(url, etag=first.etag)
            return first, second

    with serve({"/privacy": policy}) as server:
        first, second = run(twice(server.url("/privacy")))

        assert first.outcome is None
        assert first.text == "<p>v1</p>"
        assert first.etag == '"v1"'
        assert second.outcome is Outcome.NOT_MODIFIED
        assert second.status == 304
        assert server.hits["/privacy"] == 2
        assert server.hits["/robots.txt"] == 1  # cached for the second fetch
        assert server.requests[-1].headers.get("If-None-Match") == '"v1"'
        assert server.requests[-1].headers.get("User-Agent") == UA


def test_real_server_too_slow_is_a_timeout() -> None:
    with serve({"/slow": Route(body="late", delay=1.0)}) as server:
        settings = make_settings(timeout=0.2, retries=0, respect_robots=False)

        async def once() -> FetchResult:
            async with Fetcher(settings) as fetcher:
                return await fetcher.fetch(server.url("/slow"))

        t0 = time.monotonic()
        result = run(once())

        assert result.outcome is Outcome.TIMEOUT
        assert time.monotonic() - t0 < 0.9


# --- Retry-After in the daemon ----------------------------------------------------------------


def _fetch_with_wait_limit(router: respx.Router, sleep: FakeSleep, **settings: Any) -> FetchResult:
    async def go() -> FetchResult:
        async with Fetcher(
            make_settings(**settings),
            transport=httpx.MockTransport(router.async_handler),
            sleep=sleep,
            retry_after_wait=5,
        ) as fetcher:
            return await fetcher.fetch(PAGE)

    return run(go())


def test_a_retry_after_longer_than_the_wait_limit_ends_the_fetch_with_the_wait() -> None:
    router = make_router()
    route = router.get(PAGE)
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "120"}),
        httpx.Response(200, text="ok"),
    ]
    sleep = FakeSleep()

    result = _fetch_with_wait_limit(router, sleep)

    assert (result.outcome, result.status, result.retry_after) == (Outcome.HTTP_ERROR, 429, 120)
    assert route.call_count == 1 and sleep.calls == []  # no slot held for two minutes
    assert result.error is not None and "Retry-After 120 s" in result.error


def test_a_short_retry_after_is_still_waited_out_and_retried() -> None:
    router = make_router()
    route = router.get(PAGE)
    route.side_effect = [
        httpx.Response(503, headers={"Retry-After": "2"}),
        httpx.Response(200, text="ok"),
    ]
    sleep = FakeSleep()

    result = _fetch_with_wait_limit(router, sleep)

    assert (result.outcome, result.retry_after, sleep.calls) == (None, None, [2.0])


def test_the_retry_after_of_the_last_attempt_is_reported() -> None:
    router = make_router()
    router.get(PAGE).respond(429, headers={"Retry-After": "3"})

    result = _fetch_with_wait_limit(router, FakeSleep(), retries=0)

    assert (result.outcome, result.retry_after) == (Outcome.HTTP_ERROR, 3)
    assert result.error == "HTTP 429 Too Many Requests; Retry-After 3 s"


def test_a_rate_limited_robots_txt_reports_its_retry_after() -> None:
    router = make_router(robots=None)
    router.get(f"{SITE}/robots.txt").respond(429, headers={"Retry-After": "60"})
    page = router.get(PAGE).respond(200, text="policy")

    result = _fetch_with_wait_limit(router, FakeSleep())

    assert (result.outcome, result.retry_after, page.call_count) == (Outcome.HTTP_ERROR, 60, 0)
    assert result.error is not None and result.error.startswith("robots.txt unreachable: ")

"""Fetch stage: polite, bounded HTTP GETs of policy pages.

One :class:`Fetcher` owns one ``httpx.AsyncClient`` and every politeness rule that spans
requests: per-host and global concurrency, the delay between requests to one host, the
robots.txt cache. :meth:`Fetcher.fetch` never raises for network or HTTP trouble; the outcome
is recorded in the returned :class:`~monitor.models.FetchResult` so the pipeline can log it
as a fetch attempt and carry on with the next document.

    async with Fetcher(config.http) as fetcher:
        result = await fetcher.fetch(url, etag=previous.etag)

Robots.txt is checked for the URL as requested, not for the hosts a redirect chain passes
through.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import datetime as dt
import email.utils
import logging
import random
import re
import ssl
import time
import urllib.request
import urllib.robotparser
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpcore
import httpx
from httpcore._utils import is_socket_readable

from monitor.config import HttpSettings
from monitor.models import FetchResult, Outcome

__all__ = ["Fetcher", "decode_body"]

_LOG_NAME = "monitor.fetch"
_MAX_REDIRECTS = 10
_JITTER = 0.1  # backoff delays are stretched by up to this fraction so clients don't sync up
# RFC 9309: a crawler should not use a cached robots.txt for more than 24 hours. A robots.txt
# that could not be read is not cached at all (only the checks already waiting for that request
# share its answer), so a site that comes back is fetched at its next check.
_ROBOTS_TTL = 24 * 3600.0
_ROBOTS_TOO_LARGE_TTL = 600.0
# RFC 9309 asks for at least 500 KiB to be parsed; more than this is not a robots.txt.
_ROBOTS_MAX_BYTES = 1024 * 1024
_SNIFF_BYTES = 2048
_DEFAULT_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"

_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.I)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class Fetcher:
    """Fetches URLs with one shared client; use as ``async with`` or call :meth:`aclose`.

    ``transport`` replaces the network (respx / ``httpx.MockTransport`` in tests); ``sleep``
    is awaited for every deliberate wait (backoff, Retry-After, per-host delay) so tests can
    record the delays instead of waiting them out. ``retry_after_wait`` is the longest
    Retry-After waited for before a retry (default ``max_retry_after``); a longer one ends the
    fetch, with the wait in ``FetchResult.retry_after``: the daemon reschedules the document
    rather than hold one of its few check slots for minutes.
    """

    def __init__(
        self,
        settings: HttpSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        logger: logging.Logger | None = None,
        retry_after_wait: float | None = None,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._retry_after_wait = (
            settings.max_retry_after
            if retry_after_wait is None
            else min(retry_after_wait, settings.max_retry_after)
        )
        self._log = logger or logging.getLogger(_LOG_NAME)
        self._random = random.Random()
        self._clock: Callable[[], float] = time.monotonic
        limits = httpx.Limits(
            max_connections=settings.max_concurrency,
            max_keepalive_connections=settings.max_concurrency,
        )
        if transport is None and not _environment_proxies():
            transport = _OriginPools(settings)
        self._client = httpx.AsyncClient(
            transport=transport,
            limits=limits,
            timeout=httpx.Timeout(settings.timeout),
            follow_redirects=True,
            max_redirects=_MAX_REDIRECTS,
            headers={
                "User-Agent": settings.user_agent,
                "Accept": _DEFAULT_ACCEPT,
                **settings.headers,
            },
        )
        self._global_slots = asyncio.Semaphore(settings.max_concurrency)
        self._hosts: dict[str, _HostGate] = {}
        self._robots: dict[str, _RobotsEntry] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        if not settings.respect_robots:
            self._log.warning("robots.txt checks are disabled by the configuration")

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        ignore_robots: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> FetchResult:
        """GET ``url`` politely. Never raises for network or HTTP trouble (see FetchResult).

        For a 304, ``etag`` / ``last_modified`` in the result are the server's new validators
        when it sent any, else the ones given, so the caller can store them as they come.
        """
        started_at = dt.datetime.now(dt.UTC)
        t0 = self._clock()
        result = FetchResult(
            url=url,
            final_url=url,
            status=None,
            body=None,
            text=None,
            content_type=None,
            etag=None,
            last_modified=None,
            outcome=None,
            attempts=0,
            started_at=started_at,
        )
        try:
            target = httpx.URL(url)
            if target.scheme not in ("http", "https") or not target.host:
                raise httpx.InvalidURL("not an absolute http(s) URL")
        except httpx.InvalidURL as exc:
            result.outcome = Outcome.NETWORK_ERROR
            result.error = f"invalid URL: {exc}"
            return result

        if self._settings.respect_robots:
            if ignore_robots:
                result.robots_overridden = True
                self._log.warning("ignoring robots.txt for %s (document override)", url)
            elif refusal := await self._robots_refusal(target):
                result.outcome, result.error, result.retry_after = refusal
                result.elapsed = self._clock() - t0
                return result

        request_headers = dict(headers or {})
        if etag:
            request_headers["If-None-Match"] = etag
        if last_modified:
            request_headers["If-Modified-Since"] = last_modified

        attempt = await self._fetch_with_retries(target, request_headers, result)
        self._fill(result, attempt, etag, last_modified)
        result.retry_after = attempt.retry_after
        result.elapsed = self._clock() - t0
        return result

    # --- retries -------------------------------------------------------------------------

    async def _fetch_with_retries(
        self,
        target: httpx.URL,
        headers: dict[str, str],
        result: FetchResult | None,
        max_bytes: int | None = None,
    ) -> _Attempt:
        settings = self._settings
        tries = settings.retries + 1
        for number in range(1, tries + 1):
            if result is not None:
                result.attempts = number
            attempt = await self._attempt(target, headers, max_bytes)
            self._log.debug(
                "GET %s attempt %d/%d -> %s (%.3f s)",
                target,
                number,
                tries,
                attempt.status if attempt.status is not None else attempt.error,
                attempt.seconds,
            )
            if not attempt.retryable:
                return attempt
            retry_after = None
            if attempt.status in (429, 503) and attempt.headers is not None:
                retry_after = _parse_retry_after(attempt.headers.get("Retry-After"))
            if number == tries:
                if retry_after is not None:  # no retry left: say when the server expects us
                    attempt.retry_after = retry_after
                    attempt.error = f"{attempt.error}; Retry-After {retry_after:.0f} s"
                return attempt
            delay = settings.backoff * 2 ** (number - 1) * (1 + _JITTER * self._random.random())
            if retry_after is not None:
                if retry_after > settings.max_retry_after:
                    attempt.retry_after = retry_after
                    attempt.error = (
                        f"HTTP {attempt.status}; Retry-After {retry_after:.0f} s exceeds "
                        f"max_retry_after {settings.max_retry_after:.0f} s, not retried"
                    )
                    return attempt
                if retry_after > self._retry_after_wait:
                    attempt.retry_after = retry_after
                    attempt.error = (
                        f"HTTP {attempt.status}; Retry-After {retry_after:.0f} s: not waited "
                        "for, checked again then"
                    )
                    return attempt
                delay = retry_after
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    async def _attempt(
        self, target: httpx.URL, headers: Mapping[str, str], max_bytes: int | None = None
    ) -> _Attempt:
        settings = self._settings
        async with self._slot(target):
            t0 = self._clock()
            attempt = _Attempt(final_url=str(target))
            try:
                async with asyncio.timeout(settings.timeout):
                    await self._send(target, headers, max_bytes or settings.max_bytes, attempt)
            except TimeoutError:
                attempt.fail(Outcome.TIMEOUT, f"no complete response within {settings.timeout:g} s")
            except httpx.TimeoutException as exc:
                attempt.fail(Outcome.TIMEOUT, _describe(exc, "timed out"))
            except httpx.TooManyRedirects:
                attempt.fail(Outcome.HTTP_ERROR, f"more than {_MAX_REDIRECTS} redirects")
                attempt.retryable = False
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                attempt.fail(Outcome.NETWORK_ERROR, _describe(exc, "network error"))
            except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
                # Bad scheme in a redirect, undecodable gzip, local protocol trouble: trying
                # again would give the same answer.
                attempt.fail(Outcome.NETWORK_ERROR, _describe(exc, "request failed"))
                attempt.retryable = False
            attempt.seconds = self._clock() - t0
            return attempt

    async def _send(
        self, target: httpx.URL, headers: Mapping[str, str], max_bytes: int, attempt: _Attempt
    ) -> None:
        request = self._client.build_request("GET", target, headers=headers)
        response = await self._client.send(request, stream=True)
        try:
            attempt.final_url = str(response.url)
            attempt.status = response.status_code
            attempt.headers = response.headers
            if response.status_code == 304:
                # A 304 has no body, but closing a response that was not read closes its
                # connection: read the nothing, and the connection goes back to the pool
                # (else every conditional GET of a pass opened a new one).
                await response.aread()
                attempt.outcome = Outcome.NOT_MODIFIED
                return
            if response.status_code >= 300:
                # 3xx left over here had no usable Location; treat it like an error status.
                attempt.outcome = Outcome.HTTP_ERROR
                attempt.error = f"HTTP {response.status_code} {response.reason_phrase}".strip()
                attempt.retryable = response.status_code == 429 or response.status_code >= 500
                return
            announced = _content_length(response.headers)
            if announced is not None and announced > max_bytes:
                attempt.fail(Outcome.TOO_LARGE, f"Content-Length {announced} > {max_bytes} bytes")
                return
            body = bytearray()
            # aiter_bytes yields decoded content, so a compressed bomb is caught as well.
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    attempt.fail(Outcome.TOO_LARGE, f"body over {max_bytes} bytes")
                    return
            attempt.body = bytes(body)
        finally:
            await response.aclose()

    def _fill(
        self, result: FetchResult, attempt: _Attempt, etag: str | None, last_modified: str | None
    ) -> None:
        result.final_url = attempt.final_url
        result.status = attempt.status
        result.outcome = attempt.outcome
        result.error = attempt.error
        if attempt.headers is not None:
            result.content_type = attempt.headers.get("Content-Type")
            result.etag = attempt.headers.get("ETag")
            result.last_modified = attempt.headers.get("Last-Modified")
        if attempt.outcome is Outcome.NOT_MODIFIED:
            result.etag = result.etag or etag
            result.last_modified = result.last_modified or last_modified
        if attempt.outcome is None and attempt.body is not None:
            result.body = attempt.body
            result.text = decode_body(attempt.body, result.content_type)

    # --- politeness ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _slot(self, target: httpx.URL) -> AsyncIterator[None]:
        """Hold a per-host and a global slot, and space out request starts to the host."""
        gate = self._hosts.get(_host_key(target))
        if gate is None:
            gate = self._hosts[_host_key(target)] = _HostGate(
                asyncio.Semaphore(self._settings.per_host_concurrency)
            )
        # Always host first, then global: one order everywhere means no deadlock, and
        # requests queued behind a busy host do not hold global slots while they wait.
        async with gate.slots, self._global_slots:
            delay = self._settings.per_host_delay
            async with gate.start_lock:
                if delay > 0 and gate.last_start is not None:
                    wait = gate.last_start + delay - self._clock()
                    if wait > 0:
                        await self._sleep(wait)
                gate.last_start = self._clock()
            yield

    async def _robots_refusal(self, target: httpx.URL) -> tuple[Outcome, str, float | None] | None:
        """Why ``target`` must not be fetched, as (outcome, detail, Retry-After), or None
        when it may be.

        ``robots_disallowed`` is a deliberate answer of the site (a Disallow rule, a 401 / 403);
        a robots.txt that could not be read keeps the page unfetched too (RFC 9309 2.3.1.4)
        but is the outcome of that request (``timeout``, ``network_error``, ``http_error``):
        a site that is down is failing, not refusing."""
        origin = _origin(target)
        lock = self._robots_locks.setdefault(origin, asyncio.Lock())
        asked = self._clock()
        async with lock:  # concurrent checks of one host share one robots.txt request
            entry = self._robots.get(origin)
            if entry is None or entry.expires <= asked:
                entry = await self._load_robots(origin)
                self._robots[origin] = entry
        if entry.failure is not None:
            return entry.failure
        if entry.parser is None:
            if entry.refusal is None:
                return None
            return Outcome.ROBOTS_DISALLOWED, entry.refusal, None
        if entry.parser.can_fetch(self._settings.user_agent, str(target)):
            return None
        why = f"robots.txt of {origin} disallows {target.raw_path.decode()} for our user agent"
        return Outcome.ROBOTS_DISALLOWED, why, None

    async def _load_robots(self, origin: str) -> _RobotsEntry:
        robots_url = httpx.URL(origin + "/robots.txt")
        # Retried like the page (a robots.txt request is no less likely to hit a blip), but
        # not counted in the page's attempts.
        attempt = await self._fetch_with_retries(
            robots_url, {"Accept": "text/plain,*/*;q=0.5"}, None, _ROBOTS_MAX_BYTES
        )
        now = self._clock()
        self._log.debug("GET %s -> %s", robots_url, attempt.status or attempt.error)
        status = attempt.status
        if attempt.outcome is Outcome.TOO_LARGE:
            # Read nothing rather than a truncated file whose cut could drop a Disallow.
            return _RobotsEntry(now + _ROBOTS_TOO_LARGE_TTL, f"robots.txt of {origin} is too large")
        if status is None or status == 429 or status >= 500:
            # RFC 9309 2.3.1.4: an unreachable robots.txt means "assume complete disallow", so
            # the page is not fetched; the check records why robots.txt could not be read.
            why = f"robots.txt unreachable: {attempt.error or f'HTTP {status}'}"
            self._log.info("%s: %s", origin, why)
            # expires = now: checks that were already waiting share this answer, later ones
            # ask again.
            failure = (attempt.outcome or Outcome.HTTP_ERROR, why, attempt.retry_after)
            return _RobotsEntry(now, None, failure=failure)
        if status in (401, 403):
            # Stricter than RFC 9309, which reads every 4xx as "no rules": a site that refuses
            # its robots.txt to us is taken to refuse its pages too.
            return _RobotsEntry(
                now + _ROBOTS_TTL, f"robots.txt of {origin} is forbidden ({status})"
            )
        if status >= 400:
            return _RobotsEntry(now + _ROBOTS_TTL, None)  # no robots.txt: everything allowed
        parser = urllib.robotparser.RobotFileParser(str(robots_url))
        parser.parse((attempt.body or b"").decode("utf-8", errors="replace").splitlines())
        return _RobotsEntry(now + _ROBOTS_TTL, None, parser)


class _OriginPools(httpx.AsyncBaseTransport):
    """One httpcore connection pool per origin (scheme, host, port), behind the one client.

    httpcore's pool scans every connection it holds, and for each idle one counts the idle
    ones again, on every request and every response close: with 10 hosts x 2 connections
    that was ~400 connection checks (each a socket query through anyio) per request, most of
    the CPU a check of an unchanged page cost. A pool per origin holds only that host's few
    connections; the Fetcher's semaphores still bound per-host and global concurrency.
    httpx makes a TLS context for every transport (loading the CA bundle: ~50 ms, and
    ~20 ms even unverified), so the verifying one is made once, on the first https origin,
    and shared; plain-http pools get a bare context that is never used.
    """

    def __init__(self, settings: HttpSettings) -> None:
        self._settings = settings
        self._pools: dict[tuple[bytes, bytes, int | None], httpx.AsyncHTTPTransport] = {}
        self._tls: ssl.SSLContext | None = None
        self._plain: ssl.SSLContext | None = None

    def _pool(self, url: httpx.URL) -> httpx.AsyncHTTPTransport:
        key = (url.raw_scheme, url.raw_host, url.port)
        pool = self._pools.get(key)
        if pool is None:
            if url.scheme == "https":
                if self._tls is None:
                    self._tls = httpx.create_ssl_context()
                context = self._tls
            else:  # no TLS in this pool, ever: the key includes the scheme
                if self._plain is None:
                    self._plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context = self._plain
            pool = self._pools[key] = httpx.AsyncHTTPTransport(
                verify=context,
                limits=httpx.Limits(
                    max_connections=self._settings.max_concurrency,
                    max_keepalive_connections=self._settings.per_host_concurrency,
                ),
            )
            # The same pool httpx builds, on the asyncio backend (see _AsyncioStream).
            pool._pool = httpcore.AsyncConnectionPool(
                ssl_context=context,
                max_connections=self._settings.max_concurrency,
                max_keepalive_connections=self._settings.per_host_concurrency,
                keepalive_expiry=5.0,
                network_backend=_AsyncioBackend(),
            )
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


class _AsyncioStream(httpcore.AsyncNetworkStream):
    """An httpcore network stream on plain asyncio streams.

    httpcore's default backend goes through anyio (and sniffio) on every read and write: a
    cancel scope per call and attribute lookups per connection check were a tenth of what an
    unchanged check costs. asyncio is the only event loop here, so talk to it directly.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (OSError, ssl.SSLError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc)) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "is_readable":
            # An idle keep-alive connection the server closed (or sent bytes on) must not be
            # reused: httpcore asks before picking it for a request.
            return (
                self._reader.at_eof()
                or self._writer.is_closing()
                or is_socket_readable(self._writer.get_extra_info("socket"))
            )
        return None


class _AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - policies are fetched over TCP
        raise httpcore.ConnectError("unix sockets are not supported")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _environment_proxies() -> bool:
    """Whether HTTP(S)_PROXY / ALL_PROXY are set: then httpx's own transport (which honours
    them) is used instead of :class:`_OriginPools`."""
    return any(k in ("http", "https", "all") for k in urllib.request.getproxies_environment())


# --- decoding ----------------------------------------------------------------------------


def decode_body(body: bytes, content_type: str | None = None) -> str:
    """Decode a page body as a browser would, never failing.

    Order: byte-order mark (the HTML standard lets it override the header), the
    Content-Type charset, a ``<meta>`` charset in the first 2 KB, strict UTF-8, detection,
    then cp1252 with replacement characters.
    """
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body.decode(encoding, errors="replace")
    declared = _codec(_header_charset(content_type)) or _codec(_meta_charset(body))
    if declared:
        return body.decode(declared, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Imported here, not at the top: it costs tens of milliseconds to import, and only pages
    # that declare no charset and are not UTF-8 need it.
    try:
        import charset_normalizer
    except ImportError:  # pragma: no cover - an optional dependency: httpx does not pull it in
        pass
    else:
        best = charset_normalizer.from_bytes(body).best()
        if best is not None:
            return str(best)
    return body.decode("cp1252", errors="replace")


def _header_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


def _meta_charset(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:_SNIFF_BYTES])
    if not match:
        return None
    label = match.group(1).decode("ascii", errors="ignore")
    # A page that could be read as ASCII to find this tag cannot be UTF-16 (HTML standard).
    return "utf-8" if label.lower().startswith("utf-16") else label


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    # Browsers read latin-1 and ASCII labels as windows-1252 (HTML standard); pages rely on
    # it for curly quotes and dashes in 0x80-0x9F.
    return "cp1252" if name in ("iso8859-1", "ascii") else name


# --- helpers -----------------------------------------------------------------------------


@dataclass(slots=True)
class _HostGate:
    slots: asyncio.Semaphore
    start_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_start: float | None = None


@dataclass(slots=True)
class _RobotsEntry:
    expires: float
    refusal: str | None  # a blanket answer when there are no rules: why everything is refused
    parser: urllib.robotparser.RobotFileParser | None = None
    # robots.txt could not be read: the outcome, its detail and the server's Retry-After
    failure: tuple[Outcome, str, float | None] | None = None


@dataclass(slots=True)
class _Attempt:
    final_url: str
    status: int | None = None
    headers: httpx.Headers | None = None
    body: bytes | None = None
    outcome: Outcome | None = None
    error: str | None = None
    retryable: bool = False
    seconds: float = 0.0
    retry_after: float | None = None

    def fail(self, outcome: Outcome, error: str) -> None:
        self.outcome = outcome
        self.error = error
        self.body = None
        self.retryable = outcome in (Outcome.TIMEOUT, Outcome.NETWORK_ERROR)


def _origin(url: httpx.URL) -> str:
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}"


def _host_key(url: httpx.URL) -> str:
    return f"{url.host}:{url.port}" if url.port is not None else url.host


def _content_length(headers: httpx.Headers) -> int | None:
    try:
        return int(headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _describe(exc: BaseException, fallback: str) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else f"{type(exc).__name__} ({fallback})"

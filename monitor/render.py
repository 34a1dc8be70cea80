"""JavaScript-rendered pages: ``render: browser`` documents are loaded in headless Chromium.

:class:`BrowserFetcher` is a :class:`~monitor.fetch.Fetcher` whose ``fetch`` drives the
system's Chromium through Playwright (the optional ``browser`` extra) and returns the rendered
HTML as an ordinary :class:`~monitor.models.FetchResult`: the rest of the pipeline does not
know the difference. robots.txt and the per-host limits are the parent's, so a browser fetch is
as polite as an HTTP one. Playwright is imported on the first browser fetch only, so documents
without ``render: browser`` never load it; without it installed, a fetch ends in the ``error``
outcome with an install hint. Playwright never downloads a browser here: Chromium is the
system's (``chromium`` on PATH, or ``config.chromium``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
import time
from collections.abc import Mapping
from typing import Any

import httpx

from monitor.config import HttpSettings
from monitor.fetch import Fetcher
from monitor.models import FetchResult, Outcome

__all__ = ["BROWSER_ARGS", "INSTALL_HINT", "BrowserFetcher", "find_chromium", "render_deadline"]

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
INSTALL_HINT = "render: browser needs Playwright: install policy-monitor[browser]"
_SETTLE = 5.0  # at most this long waiting for the network to go quiet after the load event
# Playwright's own timeouts cover navigation only; a browser that hangs (out of memory, a
# renderer stuck in a script) could hold a render, its context's close or a launch forever.
_LAUNCH_TIMEOUT = 60.0
_CLOSE_TIMEOUT = 5.0
_RENDER_MARGIN = 10.0


def render_deadline(settings: HttpSettings) -> float:
    """The longest one render may take: navigation, settling, reading the page."""
    return settings.timeout + _SETTLE + _RENDER_MARGIN


def find_chromium(configured: str | None = None) -> str | None:
    """The Chromium executable to drive: the configured one, else one on PATH."""
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


class BrowserFetcher(Fetcher):
    """Renders pages in one shared headless Chromium (launched on first use); one browser
    context per fetch, so no cookie or storage leaks from one document to the next.

    A browser that died (killed by the OOM killer, crashed) or stopped answering is replaced
    by a new one at the next fetch; a render that fails because the browser went away during
    it is tried once more in a fresh one, since the page itself did not fail."""

    def __init__(
        self,
        settings: HttpSettings,
        *,
        executable_path: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_after_wait: float | None = None,
    ) -> None:
        # the HTTP client reads robots.txt
        super().__init__(settings, transport=transport, retry_after_wait=retry_after_wait)
        self._executable = find_chromium(executable_path)
        self._playwright: Any = None
        self._browser: Any = None
        self._wedged = False  # a render overran its deadline: do not trust this browser
        self._launch_lock = asyncio.Lock()

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        ignore_robots: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> FetchResult:
        """Load ``url`` in Chromium and return the rendered HTML. Never raises for the page's
        own trouble. No conditional GET: a rendered page has no validators worth keeping."""
        t0 = time.monotonic()
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
            started_at=dt.datetime.now(dt.UTC),
        )
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            return _failed(result, Outcome.NETWORK_ERROR, f"invalid URL: {exc}", t0)
        if self._settings.respect_robots:
            if ignore_robots:
                result.robots_overridden = True
                self._log.warning("ignoring robots.txt for %s (document override)", url)
            elif refusal := await self._robots_refusal(target):
                result.retry_after = refusal[2]
                return _failed(result, refusal[0], refusal[1], t0)
        async with self._slot(target):
            for last_try in (False, True):
                try:
                    browser = await asyncio.wait_for(self._launch(), _LAUNCH_TIMEOUT)
                except ImportError:
                    return _failed(result, Outcome.ERROR, INSTALL_HINT, t0)
                except Exception as exc:  # no Chromium, or it would not start
                    return _failed(result, Outcome.ERROR, f"cannot start Chromium: {exc}", t0)
                await self._render_within_deadline(browser, url, dict(headers or {}), result)
                if last_try or browser.is_connected() or result.outcome is None:
                    break
                self._log.warning("Chromium went away while rendering %s; trying again", url)
                result.outcome = result.error = None
        result.elapsed = time.monotonic() - t0
        return result

    async def _render_within_deadline(
        self, browser: Any, url: str, headers: dict[str, str], result: FetchResult
    ) -> None:
        deadline = render_deadline(self._settings)
        try:
            async with asyncio.timeout(deadline):
                await self._render(browser, url, headers, result)
        except TimeoutError:
            result.outcome = Outcome.TIMEOUT
            result.error = f"page not rendered within {deadline:g} s"
            result.body = result.text = None
            self._wedged = True

    async def _render(
        self, browser: Any, url: str, headers: dict[str, str], result: FetchResult
    ) -> None:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        timeout_ms = self._settings.timeout * 1000
        context = None
        try:
            context = await browser.new_context(
                user_agent=self._settings.user_agent,
                extra_http_headers={**self._settings.headers, **headers},
            )
            page = await context.new_page()
            response = await page.goto(url, wait_until="load", timeout=timeout_ms)
            # Scripts that fill the page after "load" usually fetch something first; a page
            # that polls forever never goes quiet, so take what is there after a while.
            with contextlib.suppress(PlaywrightTimeout):
                await page.wait_for_load_state(
                    "networkidle", timeout=min(_SETTLE * 1000, timeout_ms)
                )
            result.status = response.status if response is not None else None
            result.final_url = page.url
            if result.status is not None and result.status >= 400:
                result.outcome = Outcome.HTTP_ERROR
                result.error = f"HTTP {result.status} {response.status_text}".strip()
                return
            html = await page.content()
            body = html.encode("utf-8")
            if len(body) > self._settings.max_bytes:
                result.outcome = Outcome.TOO_LARGE
                result.error = f"rendered page over {self._settings.max_bytes} bytes"
                return
            result.body, result.text = body, html
            result.content_type = "text/html; charset=utf-8"
        except PlaywrightTimeout:
            result.outcome = Outcome.TIMEOUT
            result.error = f"page not loaded within {self._settings.timeout:g} s"
        except PlaywrightError as exc:
            result.outcome = Outcome.NETWORK_ERROR
            result.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        finally:
            if context is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(context.close(), _CLOSE_TIMEOUT)

    async def _launch(self) -> Any:
        async with self._launch_lock:
            if self._browser is not None and (self._wedged or not self._browser.is_connected()):
                self._log.warning(
                    "Chromium %s: starting a new one",
                    "stopped answering" if self._wedged else "is gone",
                )
                await self._discard()
            if self._browser is None:
                from playwright.async_api import async_playwright

                if self._executable is None:
                    raise RuntimeError("no chromium executable on PATH (set 'chromium:')")
                self._playwright = await async_playwright().start()
                try:
                    self._browser = await self._playwright.chromium.launch(
                        executable_path=self._executable, args=BROWSER_ARGS, headless=True
                    )
                except BaseException:
                    await self._playwright.stop()
                    self._playwright = None
                    raise
            return self._browser

    async def _discard(self) -> None:
        """Let go of the browser and its Playwright driver, whatever state they are in."""
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        self._wedged = False
        for closing in (browser, playwright):
            if closing is not None:
                with contextlib.suppress(Exception):
                    stop = closing.close() if closing is browser else closing.stop()
                    await asyncio.wait_for(stop, _CLOSE_TIMEOUT)

    async def aclose(self) -> None:
        try:
            await self._discard()
        finally:
            await super().aclose()


def _failed(result: FetchResult, outcome: Outcome, error: str, t0: float) -> FetchResult:
    result.outcome, result.error = outcome, error
    result.elapsed = time.monotonic() - t0
    return result

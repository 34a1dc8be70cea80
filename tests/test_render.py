"""`render: browser`: JavaScript pages rendered by the system Chromium through Playwright,
an optional extra that documents without it never load."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from httpserver import serve

from monitor.config import Config, parse_config
from monitor.models import FetchResult, Outcome
from monitor.pipeline import Pipeline
from monitor.render import INSTALL_HINT, find_chromium
from monitor.store import Store

REPO = Path(__file__).resolve().parents[1]
HTML = {"Content-Type": "text/html; charset=utf-8"}
SENTENCE = "We collect the name and e-mail address you give us when you create an account."
# The policy is written by a script: an HTTP fetch sees an empty <main>.
JS_PAGE = f"""<!doctype html><html><head><title>Scripted privacy policy</title></head><body>
<main id="policy"></main>
<script>
  const lines = [];
  for (let i = 0; i < 6; i++) lines.push("<p>Section " + i + ". {SENTENCE}</p>");
  document.getElementById("policy").innerHTML = "<h1>Scripted Privacy Policy</h1>" + lines.join("");
</script></body></html>"""


def config_for(url: str, tmp_path: Path, render: str) -> Config:
    return parse_config(
        f"database: {tmp_path / 'pm.db'}\nhttp:\n  per_host_delay: 0\n  retries: 0\n"
        f"documents:\n  - platform: Scripted\n    url: {url}\n    select: main\n"
        f"    render: {render}\n"
    )


def check(config: Config) -> tuple[Outcome, str | None, str | None]:
    with Store(config.database_path) as store:
        pipeline = Pipeline(config, store)
        (result,) = asyncio.run(pipeline.check(config.documents))
        latest = store.latest_version(config.documents[0].doc_id)
    return result.outcome, result.detail, latest.text if latest else None


needs_browser = pytest.mark.skipif(
    importlib.util.find_spec("playwright") is None or find_chromium() is None,
    reason="needs the playwright package and a system chromium",
)


@pytest.mark.browser
@needs_browser
def test_browser_rendering_sees_what_scripts_write(tmp_path: Path) -> None:
    with serve({"/privacy": (200, HTML, JS_PAGE)}) as srv:
        outcome, _, _ = check(config_for(srv.url("/privacy"), tmp_path / "http", "http"))
        assert outcome == Outcome.SUSPECT  # plain HTTP: the selector matches an empty <main>
        outcome, detail, text = check(config_for(srv.url("/privacy"), tmp_path, "browser"))
    assert outcome == Outcome.NEW_VERSION, detail
    assert text is not None
    assert "# Scripted Privacy Policy" in text
    assert f"Section 5. {SENTENCE}" in text


@pytest.mark.browser
@needs_browser
def test_browser_fetch_respects_robots_txt(tmp_path: Path) -> None:
    routes = {"/robots.txt": (200, {}, "User-agent: *\nDisallow: /"), "/privacy": (200, HTML, "x")}
    with serve(routes) as srv:
        outcome, detail, _ = check(config_for(srv.url("/privacy"), tmp_path, "browser"))
        assert srv.hits["/privacy"] == 0
    assert outcome == Outcome.ROBOTS_DISALLOWED, detail


def test_without_playwright_the_check_is_an_error_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "playwright", None)
    monkeypatch.setitem(sys.modules, "playwright.async_api", None)
    with serve({"/privacy": (200, HTML, JS_PAGE)}) as srv:
        outcome, detail, text = check(config_for(srv.url("/privacy"), tmp_path, "browser"))
        assert srv.hits["/privacy"] == 0
    assert outcome == Outcome.ERROR
    assert detail == INSTALL_HINT and "policy-monitor[browser]" in detail
    assert text is None


def test_http_documents_never_import_playwright(tmp_path: Path) -> None:
    with serve({"/privacy": (200, HTML, JS_PAGE.replace("<main", "<main>x</main><div"))}) as srv:
        script = textwrap.dedent(
            f"""
            import asyncio, sys
            from monitor.config import parse_config
            from monitor.pipeline import Pipeline
            from monitor.store import Store
            config = parse_config(
                "database: {tmp_path / "pm.db"}\\ndocuments:\\n"
                "  - platform: Plain\\n    url: {srv.url("/privacy")}\\n"
            )
            with Store(config.database_path) as store:
                (r,) = asyncio.run(Pipeline(config, store).check(config.documents))
            print(r.outcome.value)
            print(sorted(m for m in sys.modules if m.startswith(("playwright", "monitor.render"))))
            """
        )
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
        ).stdout.split("\n")
        assert srv.hits["/privacy"] == 1
    assert out[0] != "error"
    assert out[1] == "[]"


def _chromium_browsers_started_by_us() -> list[int]:
    """Pids of the Chromium browser processes below this test process (not their renderer
    and GPU children, and nobody else's Chromium)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        names[pid] = cmdline

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    def is_chromium(pid: int) -> bool:
        return "chrom" in Path(names.get(pid, "")).name

    return [p for p in names if is_chromium(p) and not is_chromium(parents[p]) and ours(p)]


@pytest.mark.browser
@needs_browser
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_killed_chromium_is_replaced_at_the_next_fetch() -> None:
    import signal

    from monitor.config import HttpSettings
    from monitor.render import BrowserFetcher

    async def scenario(url: str) -> tuple[list[FetchResult], int]:
        fetcher = BrowserFetcher(HttpSettings(per_host_delay=0, retries=0, timeout=20))
        try:
            first = await fetcher.fetch(url)
            browsers = _chromium_browsers_started_by_us()
            for pid in browsers:
                os.kill(pid, signal.SIGKILL)  # as the OOM killer would
            second = await fetcher.fetch(url)
            third = await fetcher.fetch(url)
        finally:
            await fetcher.aclose()
        return [first, second, third], len(browsers)

    with serve({"/privacy": (200, HTML, JS_PAGE)}) as srv:
        results, killed = asyncio.run(scenario(srv.url("/privacy")))
    assert killed == 1
    for result in results:
        assert result.outcome is None, result.error
        assert result.text is not None and "Scripted Privacy Policy" in result.text

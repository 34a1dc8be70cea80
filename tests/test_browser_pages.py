"""Alert pages in a real headless Chromium: they render, log no console errors, and show the
highlighted clause. Screenshots are kept under tests/artifacts/ (gitignored).

Console messages are read from Chromium's own log (``--enable-logging=stderr``), where every
page console message, uncaught exception and CSP violation appears as a ``CONSOLE`` line; a
deliberately broken page checks that this route really catches errors.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from test_pages import CLAUSE, HOSTILE, build

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def _chromium() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@dataclass
class Rendered:
    dom: BeautifulSoup
    console: list[str]
    screenshot: Path


def render(page: Path, screenshot: Path, profile: Path) -> Rendered:
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (/usr/bin/chromium)")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--hide-scrollbars",
            "--window-size=1200,1600",
            f"--screenshot={screenshot}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [
        line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line
    ]
    return Rendered(BeautifulSoup(proc.stdout, "lxml"), console, screenshot)


def test_console_error_detection_works(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<!DOCTYPE html><html><body><p>x</p><script>nonexistent()</script></body></html>",
        encoding="utf-8",
    )
    r = render(broken, tmp_path / "broken.png", tmp_path / "profile")
    assert any("nonexistent" in line for line in r.console), r.console


def test_alert_page_and_index_in_chromium(tmp_path: Path) -> None:
    site = build(tmp_path)
    page = render(
        site.reports / "alerts" / f"{site.ids[0]}.html",
        ARTIFACTS / "alert_page.png",
        tmp_path / "profile",
    )
    assert page.console == []
    marks = [m.get_text() for m in page.dom.select("blockquote.clause mark")]
    assert "train" in marks and "your public posts" in marks
    assert "".join(page.dom.select_one("blockquote.clause").strings) == CLAUSE
    assert page.screenshot.stat().st_size > 10_000  # a rendered page, not a blank PNG

    index = render(
        site.reports / "alerts" / "index.html", ARTIFACTS / "alerts_index.png", tmp_path / "profile"
    )
    assert index.console == []
    assert len(index.dom.select("#alerts tbody tr")) == 1


def test_hostile_page_runs_nothing_in_chromium(tmp_path: Path) -> None:
    site = build(tmp_path, HOSTILE, data=("your posts",))
    page = render(
        site.reports / "alerts" / f"{site.ids[0]}.html",
        ARTIFACTS / "alert_page_hostile.png",
        tmp_path / "profile",
    )
    assert page.console == []
    assert page.dom.find("script") is None and page.dom.find("img") is None
    assert "<script>alert(1)</script>" in page.dom.select_one("blockquote.clause").get_text()

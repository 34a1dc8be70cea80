"""The researcher report in a real headless Chromium: it renders without console errors, the
SVG timelines are there with a mark per version, and a screenshot is kept under
tests/artifacts/report.png (gitignored) for people to look at."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_browser_pages import ARTIFACTS, render

from monitor.backfill import import_tree
from monitor.config import default_config
from monitor.pipeline import Pipeline
from monitor.report import write_report
from monitor.store import Store

pytestmark = pytest.mark.browser

HISTORY = Path(__file__).resolve().parent / "data" / "history"


def test_report_renders_in_chromium_with_its_timelines(store: Store, tmp_path: Path) -> None:
    import_tree(Pipeline(default_config(), store, notify=False), HISTORY)
    out = tmp_path / "report"
    index = write_report(store, out, formats=["html"])["html"]
    page = render(index, ARTIFACTS / "report.png", tmp_path / "profile")
    assert page.console == []
    timelines = page.dom.select("section.timeline svg")
    assert [t.find_previous("h3").get_text() for t in timelines] == ["parlour", "quillnest"]
    marks = timelines[0].select("circle title")
    assert len(marks) == 5  # 3 privacy-policy versions + 2 terms versions
    assert any(
        "v2, 2023-03-01: AI training without any choice (alert)" in m.get_text() for m in marks
    )
    assert page.screenshot.stat().st_size > 10_000

    (two_three,) = (out / "diffs" / "parlour--privacy-policy").glob("2-3-*.html")
    diff = render(
        two_three,
        ARTIFACTS / "report_diff.png",
        tmp_path / "profile",
    )
    assert diff.console == []
    assert "opt out" in diff.dom.get_text()

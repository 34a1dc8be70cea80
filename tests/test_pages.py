"""Alert pages and the alerts index (monitor.pages), parsed back with BeautifulSoup."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from test_alerts import DENIAL, History, analysis, finding

from monitor.alerts import list_alerts, record_alerts
from monitor.models import Finding
from monitor.pages import highlight, render_alert_page, write_alert_pages
from monitor.store import Store

SOURCE = "https://x.example/en/privacy"
CLAUSE = "We may use your public posts to train our AI models."
HOSTILE = (
    "We use your posts <script>alert(1)</script> to train AI models "
    '"><img src=x onerror=alert(1)> {{ 7*7 }}\r\nSubject: injected'
)
OLD_TEXT = (
    "# Privacy Policy\n\n## How we use data\n\nWe use your data to provide the service.\n\n"
    "We keep your data safe.\n\n## Contact\n\nWrite to us."
)


def new_text(clause: str) -> str:
    return OLD_TEXT.replace("We keep your data safe.", f"We keep your data safe.\n\n{clause}")


@dataclass
class Site:
    store: Store
    reports: Path
    ids: list[int]

    def page(self, alert_id: int | None = None) -> BeautifulSoup:
        path = self.reports / "alerts" / f"{alert_id or self.ids[0]}.html"
        return BeautifulSoup(path.read_text(encoding="utf-8"), "lxml")

    def index(self) -> BeautifulSoup:
        return BeautifulSoup((self.reports / "alerts" / "index.html").read_text("utf-8"), "lxml")


def add_pair(
    store: Store,
    doc_id: str,
    new_finding: Finding,
    *,
    when: dt.datetime,
    old_text: str = OLD_TEXT,
) -> list[int]:
    """v1 without training, then v2 with ``new_finding`` added: the alert hook decides."""
    v1 = store.add_version(doc_id, text=old_text, seen_at=when, source="fetch")
    a1 = analysis()
    store.save_analysis(v1.id, a1)
    v2 = store.add_version(
        doc_id,
        text=new_text(new_finding.unit_text),
        seen_at=when + dt.timedelta(days=1),
        source="fetch",
        source_url=SOURCE,
    )
    a2 = analysis(new_finding)
    store.save_analysis(v2.id, a2)
    return record_alerts(store, doc_id, v1, v2, a1, a2)


def build(
    tmp_path: Path,
    clause: str = CLAUSE,
    *,
    consent: str = "none",
    platform: str = "X",
    data: tuple[str, ...] = ("your public posts",),
) -> Site:
    store = Store(tmp_path / "monitor.db")
    store.ensure_document("x/privacy-policy", platform, "privacy-policy", SOURCE)
    ids = add_pair(
        store,
        "x/privacy-policy",
        finding(clause, consent=consent, data=data),
        when=dt.datetime(2024, 5, 1, tzinfo=dt.UTC),
    )
    assert len(ids) == 1
    reports = tmp_path / "reports"
    write_alert_pages(store, reports, base_url="https://watch.example/reports/")
    return Site(store, reports, ids)


# --- highlighting ----------------------------------------------------------------------------


def test_highlight_marks_spans_and_keeps_the_text() -> None:
    text = "We use your posts to train AI."
    spans = [
        {"start": 12, "end": 17, "role": "data", "text": "posts"},
        {"start": 21, "end": 26, "role": "purpose", "text": "train"},
        {"start": 21, "end": 29, "role": "object", "text": "train AI"},  # overlaps: merged
    ]
    segs = highlight(text, spans)
    assert "".join(s.text for s in segs) == text
    assert [s.text for s in segs if s.mark] == ["posts", "train AI"]
    assert segs[-2].roles == ("purpose", "object")


def test_highlight_refinds_a_span_with_stale_offsets() -> None:
    segs = highlight(
        "Now we train AI.", [{"start": 0, "end": 5, "role": "purpose", "text": "train"}]
    )
    assert [s.text for s in segs if s.mark] == ["train"]
    assert highlight("abc", [{"start": 0, "end": 9, "role": "x", "text": "zzz"}]) == [
        ("abc", False, ())
    ]


# --- the alert page ---------------------------------------------------------------------------


def test_alert_page_content(tmp_path: Path) -> None:
    site = build(tmp_path)
    soup = site.page()
    text = soup.get_text(" ", strip=True)
    assert "X" in soup.h1.get_text() and "privacy-policy" in soup.h1.get_text()
    summary = soup.select_one("#summary").get_text()
    assert "train AI" in summary and "no opt-in" in summary
    marks = [m.get_text() for m in soup.select("blockquote.clause mark")]
    assert "train" in marks and "your public posts" in marks
    assert "".join(soup.select_one("blockquote.clause").strings) == CLAUSE
    assert "None: no opt-in and no way to opt out" in soup.select_one("#consent").get_text()
    looked_for = [li.get_text() for li in soup.select("#looked-for li")]
    assert "“with your consent”" in looked_for and "“only if you opt in”" in looked_for
    assert "not found" in soup.select_one(".notfound").get_text()
    assert soup.select_one(".badge.sev-high").get_text() == "high"
    assert "2024-05-02" in text  # the date the new version was seen


def test_alert_page_links_to_both_versions_and_the_source(tmp_path: Path) -> None:
    site = build(tmp_path)
    soup = site.page()
    page_dir = site.reports / "alerts"
    for link_id, number in (("#version-link", 2), ("#prev-version-link", 1)):
        href = soup.select_one(link_id)["href"]
        target = (page_dir / href).resolve()
        assert target.name == f"{number}.html" and target.is_file()
        version_page = BeautifulSoup(target.read_text("utf-8"), "lxml")
        body = version_page.select_one(".policy-text").get_text()
        assert ("public posts" in body) == (number == 2)
    assert soup.select_one("#source-link")["href"] == SOURCE


def test_alert_page_shows_the_diff_in_context(tmp_path: Path) -> None:
    soup = build(tmp_path).page()
    inserted = " ".join(i.get_text() for i in soup.find_all("ins"))
    assert "public posts" in inserted
    assert "We use your data to provide the service" not in inserted


def test_alert_page_is_self_contained(tmp_path: Path) -> None:
    soup = build(tmp_path).page()
    assert soup.find("script") is None
    assert soup.find("link", rel="stylesheet") is None
    assert soup.find("style") is not None
    for tag in soup.find_all(src=True):
        pytest.fail(f"external resource {tag}")
    for tag in soup.find_all(href=True):
        href = tag["href"]
        assert href == SOURCE or not href.startswith(("http:", "https:", "//")), href
        assert not href.lower().startswith("javascript:")
    csp = soup.find("meta", attrs={"http-equiv": "Content-Security-Policy"})
    assert "default-src 'none'" in csp["content"]


def test_hostile_policy_text_is_inert(tmp_path: Path) -> None:
    site = build(
        tmp_path,
        HOSTILE,
        platform='Evil<script>alert("p")</script>\r\nCo',
        data=("your posts",),
    )
    raw = (site.reports / "alerts" / f"{site.ids[0]}.html").read_text("utf-8")
    soup = site.page()
    assert soup.find("script") is None
    assert soup.find("img") is None
    assert not any(tag.has_attr("onerror") for tag in soup.find_all(True))
    assert "<script>alert(1)</script>" in soup.select_one("blockquote.clause").get_text()
    assert "{{ 7*7 }}" in soup.get_text() and "49" not in soup.get_text()
    assert "&lt;script&gt;" in raw and "<script>" not in raw
    assert "\r" not in soup.title.get_text() and "\n" not in soup.title.get_text()
    for path in (site.reports / "versions").rglob("*.html"):
        vsoup = BeautifulSoup(path.read_text("utf-8"), "lxml")
        assert vsoup.find("script") is None and vsoup.find("img") is None


def test_javascript_source_url_is_not_a_link(tmp_path: Path) -> None:
    site = build(tmp_path)
    [alert] = list_alerts(site.store)
    hostile = replace(alert, url="javascript:alert(1)")
    soup = BeautifulSoup(render_alert_page(hostile, old_text=OLD_TEXT, new_text=None), "lxml")
    assert not any("javascript" in a["href"] for a in soup.find_all("a", href=True))
    assert "javascript:alert(1)" in soup.get_text()  # still shown, as text


def test_template_dir_overrides_a_builtin_template(tmp_path: Path) -> None:
    site = build(tmp_path)
    custom = tmp_path / "templates"
    custom.mkdir()
    (custom / "alert.html").write_text(
        '{% extends "_base.html" %}{% block content %}<p id="mine">{{ summary }}</p>{% endblock %}',
        encoding="utf-8",
    )
    [alert] = list_alerts(site.store)
    html = render_alert_page(alert, old_text=None, new_text=None, template_dir=custom)
    soup = BeautifulSoup(html, "lxml")
    assert soup.select_one("#mine").get_text() == alert.summary
    assert soup.find("style") is not None  # the built-in base still applies


# --- the index -------------------------------------------------------------------------------


def test_index_lists_alerts_newest_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "monitor.db")
    store.ensure_document("old/privacy", "OldCo", "privacy", "https://old.example/")
    store.ensure_document("new/privacy", "NewCo", "privacy", "https://new.example/")
    first = add_pair(
        store, "old/privacy", finding(CLAUSE), when=dt.datetime(2023, 3, 1, tzinfo=dt.UTC)
    )
    second = add_pair(
        store,
        "new/privacy",
        finding(CLAUSE, consent="opt_out"),
        when=dt.datetime(2024, 9, 1, tzinfo=dt.UTC),
    )
    reports = tmp_path / "reports"
    written = write_alert_pages(store, reports)
    assert reports / "alerts" / "index.html" in written
    soup = BeautifulSoup((reports / "alerts" / "index.html").read_text("utf-8"), "lxml")
    rows = soup.select("#alerts tbody tr")
    assert [r["data-alert-id"] for r in rows] == [str(second[0]), str(first[0])]
    cells = [td.get_text(strip=True) for td in rows[0].find_all("td")]
    assert cells[:5] == ["2024-09-02", "NewCo", "privacy", "AI training added", "medium"]
    link = rows[1].find("a")
    assert link["href"] == f"{first[0]}.html" and (reports / "alerts" / link["href"]).is_file()
    assert soup.find("script") is None


def test_only_requested_alert_pages_are_rewritten(tmp_path: Path) -> None:
    site = build(tmp_path)
    page = site.reports / "alerts" / f"{site.ids[0]}.html"
    page.write_text("stale", encoding="utf-8")
    write_alert_pages(site.store, site.reports, alert_ids=[])
    assert page.read_text("utf-8") == "stale"
    write_alert_pages(site.store, site.reports, alert_ids=site.ids)
    assert page.read_text("utf-8") != "stale"


def test_publishing_writes_every_missing_page_the_index_links_to(tmp_path: Path) -> None:
    # A check that stopped after recording its alert and before publishing: the next publish
    # (for other alerts, or none) must not leave the index linking to a page that is missing.
    site = build(tmp_path)
    when = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    site.store.ensure_document("y/privacy-policy", "Y", "privacy-policy", SOURCE)
    (unpublished,) = add_pair(site.store, "y/privacy-policy", finding(CLAUSE), when=when)
    written = write_alert_pages(site.store, site.reports, alert_ids=[])
    assert site.reports / "alerts" / f"{unpublished}.html" in written
    assert site.reports / "alerts" / f"{site.ids[0]}.html" not in written  # it exists
    hrefs = [a["href"] for a in site.index().select("#alerts tbody a")]
    assert sorted(hrefs) == sorted(f"{i}.html" for i in (site.ids[0], unpublished))
    assert all((site.reports / "alerts" / h).is_file() for h in hrefs)
    assert "Y" in site.page(unpublished).get_text()
    assert (site.reports / "versions" / "y--privacy-policy" / "2.html").is_file()


def test_negation_removed_page_quotes_the_removed_statement(tmp_path: Path, store: Store) -> None:
    store.ensure_document("x/privacy-policy", "X", "privacy-policy", SOURCE)
    h = History(store)
    h.add(finding(DENIAL, ai_training=False, negated=True, data=("your private messages",)))
    [alert_id] = h.add()
    write_alert_pages(store, tmp_path)
    soup = BeautifulSoup((tmp_path / "alerts" / f"{alert_id}.html").read_text("utf-8"), "lxml")
    assert "Denial removed" in soup.get_text()
    quoted = soup.select_one("blockquote.clause.removed")
    assert "".join(quoted.strings) == DENIAL
    assert "your private messages" in [m.get_text() for m in quoted.find_all("mark")]
    assert soup.select_one("#looked-for") is None  # no training to ask consent for
    deleted = " ".join(d.get_text() for d in soup.find_all("del"))
    assert "We do not use your private messages" in deleted

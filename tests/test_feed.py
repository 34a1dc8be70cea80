"""The Atom feed of alerts (monitor.pages.render_feed / write_alert_pages)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bs4 import BeautifulSoup
from lxml import etree
from test_alerts import finding
from test_pages import CLAUSE, HOSTILE, add_pair, build

from monitor.alerts import list_alerts
from monitor.pages import render_feed, write_alert_pages
from monitor.store import Store

A = "{http://www.w3.org/2005/Atom}"


def parse(path: Path) -> etree._Element:
    return etree.fromstring(path.read_bytes())


def test_feed_is_atom_with_the_required_elements(tmp_path: Path) -> None:
    site = build(tmp_path)
    feed = parse(site.reports / "alerts.atom")
    assert feed.tag == f"{A}feed"
    for tag in ("id", "title", "updated"):
        assert (feed.findtext(f"{A}{tag}") or "").strip(), tag
    assert feed.find(f"{A}author/{A}name").text
    self_link = feed.find(f"{A}link[@rel='self']")
    assert self_link.get("href") == "https://watch.example/reports/alerts.atom"
    [entry] = feed.findall(f"{A}entry")
    for tag in ("id", "title", "updated"):
        assert (entry.findtext(f"{A}{tag}") or "").strip(), tag
    assert entry.findtext(f"{A}id").startswith("urn:uuid:")
    link = entry.find(f"{A}link[@rel='alternate']").get("href")
    assert link == f"https://watch.example/reports/alerts/{site.ids[0]}.html"
    # RFC 3339 timestamps
    for stamp in (feed.findtext(f"{A}updated"), entry.findtext(f"{A}updated")):
        dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert entry.findtext(f"{A}title") == "[HIGH] X privacy-policy: AI training added"
    content = entry.find(f"{A}content")
    assert content.get("type") == "html"
    assert CLAUSE in BeautifulSoup(content.text, "lxml").get_text()


def test_without_base_url_the_feed_has_no_self_link(tmp_path: Path) -> None:
    site = build(tmp_path)
    write_alert_pages(site.store, site.reports)
    feed = parse(site.reports / "alerts.atom")
    assert feed.find(f"{A}link[@rel='self']") is None
    assert [link.get("rel") for link in feed.findall(f"{A}link")] == ["alternate"]
    entry_link = feed.find(f"{A}entry/{A}link").get("href")
    assert entry_link == f"alerts/{site.ids[0]}.html"  # relative to the feed file


def test_entry_ids_are_stable_across_regenerations(tmp_path: Path) -> None:
    site = build(tmp_path)
    first = parse(site.reports / "alerts.atom")
    write_alert_pages(site.store, site.reports, base_url="https://watch.example/reports/")
    second = parse(site.reports / "alerts.atom")
    ids = [e.findtext(f"{A}id") for e in first.findall(f"{A}entry")]
    assert ids == [e.findtext(f"{A}id") for e in second.findall(f"{A}entry")]
    assert first.findtext(f"{A}id") == second.findtext(f"{A}id")
    assert first.findtext(f"{A}updated") == second.findtext(f"{A}updated")


def test_entry_ids_differ_between_alerts_and_entries_are_newest_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "monitor.db")
    store.ensure_document("a/privacy", "A", "privacy", "https://a.example/")
    store.ensure_document("b/privacy", "B", "privacy", "https://b.example/")
    old = add_pair(store, "a/privacy", finding(CLAUSE), when=dt.datetime(2023, 1, 1, tzinfo=dt.UTC))
    new = add_pair(store, "b/privacy", finding(CLAUSE), when=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    xml = render_feed(list_alerts(store), base_url=None)
    feed = etree.fromstring(xml.encode("utf-8"))
    entries = feed.findall(f"{A}entry")
    hrefs = [e.find(f"{A}link").get("href") for e in entries]
    assert hrefs == [f"alerts/{new[0]}.html", f"alerts/{old[0]}.html"]
    ids = {e.findtext(f"{A}id") for e in entries}
    assert len(ids) == 2
    assert feed.findtext(f"{A}updated") == entries[0].findtext(f"{A}updated")


def test_hostile_text_is_escaped_in_the_feed(tmp_path: Path) -> None:
    site = build(
        tmp_path,
        HOSTILE + "\x00\x0b\x1b",  # controls that XML 1.0 cannot carry at all
        platform="Evil\r\nBcc: victim@example.org <b>Co</b>",
        data=("your posts",),
    )
    raw = (site.reports / "alerts.atom").read_bytes()
    feed = etree.fromstring(raw)  # would raise on an unescaped "<" or a NUL
    [entry] = feed.findall(f"{A}entry")
    title = entry.findtext(f"{A}title")
    assert "\r" not in title and "\n" not in title
    assert "<b>Co</b>" in title  # text, not markup: the title element has no children
    assert len(entry.find(f"{A}title")) == 0
    content_html = entry.find(f"{A}content").text
    soup = BeautifulSoup(content_html, "lxml")
    assert soup.find("script") is None and soup.find("img") is None
    assert "<script>alert(1)</script>" in soup.get_text()
    assert "{{ 7*7 }}" in soup.get_text()
    for e in feed.iter(f"{A}title"):
        assert "\n" not in (e.text or "") and "\r" not in (e.text or "")

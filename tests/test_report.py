"""`report`: JSON one entry per document, CSV one row per finding, a self-contained HTML page.
Expected values come from what tests/data/history says (see its README), not from output."""

from __future__ import annotations

import csv
import html
import io
import json
import shutil
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner

from monitor.backfill import import_tree
from monitor.cli import cli
from monitor.config import default_config
from monitor.errors import MonitorError
from monitor.pipeline import Pipeline
from monitor.report import CSV_COLUMNS, collect, to_json, write_report
from monitor.store import Store

HISTORY = Path(__file__).resolve().parent / "data" / "history"
HOSTILE_AI = (
    'We use your "posts", comments, and <script>alert(1)</script> photos to train the '
    "artificial intelligence models <img src=x onerror=alert(2)> of Nastyco."
)


@pytest.fixture
def imported(store: Store) -> Store:
    import_tree(Pipeline(default_config(), store, notify=False), HISTORY)
    return store


def _docs(store: Store, **filters: object) -> dict[str, dict[str, object]]:
    report = to_json(collect(store, **filters))  # type: ignore[arg-type]
    return {d["document"]: d for d in report["documents"]}


def test_json_report_field_by_field(imported: Store) -> None:
    docs = _docs(imported)
    assert list(docs) == [
        "parlour/privacy-policy",
        "parlour/terms-of-service",
        "quillnest/privacy-policy",
    ]
    parlour = docs["parlour/privacy-policy"]
    assert parlour["platform"] == "parlour"
    assert parlour["doc_type"] == "privacy-policy"
    assert parlour["versions"] == 3  # the 2024-02-01 file only changes markup
    assert parlour["first_seen"] == "2022-01-10"
    assert parlour["last_seen"] == "2024-02-01"
    assert parlour["first_ai_training"] == "2023-03-01"
    assert parlour["consent"] == "opt_out"  # the opt-out added on 2023-09-15
    (alert,) = parlour["alerts"]  # type: ignore[misc]
    assert alert["type"] == "ai_training_added"
    assert alert["severity"] == "high"
    assert alert["version"] == 2
    assert alert["date"] == "2023-03-01"
    assert "train the artificial intelligence models" in alert["unit_text"]

    terms = docs["parlour/terms-of-service"]
    assert (terms["versions"], terms["first_seen"], terms["last_seen"]) == (
        2,
        "2022-01-10",
        "2023-06-20",
    )
    assert (terms["first_ai_training"], terms["consent"], terms["alerts"]) == (None, "n/a", [])

    quill = docs["quillnest/privacy-policy"]
    # "We do not use your notebooks to train..." is a denial: no AI training, ever.
    assert (quill["versions"], quill["first_ai_training"], quill["consent"]) == (3, None, "n/a")
    assert (quill["first_seen"], quill["last_seen"]) == ("2021-05-04", "2024-04-18")


def test_filters_by_platform_doc_type_and_dates(imported: Store) -> None:
    assert list(_docs(imported, platforms=["Quillnest"])) == ["quillnest/privacy-policy"]
    assert list(_docs(imported, doc_types=["terms-of-service"])) == ["parlour/terms-of-service"]
    # Every document in force during 2023 (quillnest's 2022 version was), with the version in
    # force on 1 January as its starting state.
    ranged = _docs(imported, since="2023-01-01", until="2023-12-31")
    assert list(ranged) == [
        "parlour/privacy-policy",
        "parlour/terms-of-service",
        "quillnest/privacy-policy",
    ]
    assert ranged["parlour/privacy-policy"]["versions"] == 3
    assert ranged["parlour/privacy-policy"]["version_at_start"] == 1
    assert ranged["parlour/privacy-policy"]["first_seen"] == "2022-01-10"
    assert (
        ranged["quillnest/privacy-policy"]["versions"],
        ranged["quillnest/privacy-policy"]["version_at_start"],
    ) == (1, 2)
    before_ai = _docs(imported, until="2022-12-31")["parlour/privacy-policy"]
    assert (before_ai["first_ai_training"], before_ai["alerts"]) == (None, [])
    assert before_ai["version_at_start"] is None
    with pytest.raises(MonitorError, match="not a date"):
        collect(imported, since="last tuesday")


def _named_platforms(store: Store) -> None:
    """A platform named by a config ("Meta AI") and one named by an import folder."""
    import datetime as dt

    when = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    store.ensure_document("meta-ai/privacy-policy", "Meta AI", "Privacy Policy", "https://m.ai")
    store.ensure_document("claude-ai/terms", "claude-ai", "terms", "file:///x")
    for doc in ("meta-ai/privacy-policy", "claude-ai/terms"):
        store.add_version(doc, text="We keep your chats safe.", seen_at=when, source="fetch")


@pytest.mark.parametrize(
    ("platform", "doc_type", "expected"),
    [
        ("Meta AI", None, ["meta-ai/privacy-policy"]),
        ("meta-ai", None, ["meta-ai/privacy-policy"]),
        ("META  ai", "privacy policy", ["meta-ai/privacy-policy"]),
        ("Claude AI", None, ["claude-ai/terms"]),
        ("claude-ai", "Terms", ["claude-ai/terms"]),
    ],
)
def test_platforms_and_types_match_by_name_or_slug(
    store: Store, platform: str, doc_type: str | None, expected: list[str]
) -> None:
    _named_platforms(store)
    docs = _docs(store, platforms=[platform], doc_types=[doc_type] if doc_type else [])
    assert list(docs) == expected


def test_since_starts_from_the_version_in_force_and_keeps_the_first_disclosure(
    imported: Store,
) -> None:
    # parlour: no AI (2022-01-10), AI training without choice (2023-03-01), an opt-out
    # (2023-09-15). From 2023-06-01 on, the policy in force already trained on posts: the
    # report must neither drop that version nor date the disclosure to the range.
    doc = _docs(imported, since="2023-06-01")["parlour/privacy-policy"]
    assert doc["first_ai_training"] == "2023-03-01"
    assert doc["version_at_start"] == 2
    assert doc["versions"] == 2  # v2 (in force on 2023-06-01) and v3
    assert doc["consent"] == "opt_out"
    assert doc["alerts"] == []  # the alert of 2023-03-01 was raised before the range
    report = collect(imported, since="2023-06-01")
    (parlour,) = [d for d in report.documents if d.doc_id == "parlour/privacy-policy"]
    assert [v.number for v in parlour.versions] == [2, 3]
    later = _docs(imported, since="2024-01-01")["parlour/privacy-policy"]
    assert (later["versions"], later["version_at_start"], later["first_ai_training"]) == (
        1,
        3,
        "2023-03-01",
    )


def test_csv_has_one_row_per_finding_and_parses(imported: Store, tmp_path: Path) -> None:
    path = write_report(imported, tmp_path, formats=["csv"])["csv"]
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    training = [r for r in rows if r["ai_training"] == "True"]
    assert [(r["document"], r["version"], r["consent"]) for r in training] == [
        ("parlour/privacy-policy", "2", "none"),
        ("parlour/privacy-policy", "3", "opt_out"),
    ]
    assert training[0]["version_date"] == "2023-03-01T08:30:00Z"
    assert training[0]["source_url"].endswith("2023-03-01T08-30-00Z.md")
    assert len(training[0]["version_sha256"]) == 64
    denial = [r for r in rows if r["negated"] == "True"]
    assert [r["document"] for r in denial] == ["quillnest/privacy-policy"]


def _hostile_tree(tmp_path: Path) -> Path:
    """A platform whose name and policy carry markup as text (entities in the page decode
    to a literal ``<script>`` in the extracted text: exactly what must stay inert)."""
    root = tmp_path / "history"
    shutil.copytree(HISTORY / "quillnest", root / "quillnest")
    folder = root / "nasty<b>co" / "privacy-policy"
    folder.mkdir(parents=True)
    intro = "<h1>Nastyco Privacy</h1><h2>Data</h2><p>We keep your account details and posts.</p>"
    page = "<!DOCTYPE html><html><body><main>{}</main></body></html>"
    (folder / "2023-01-01.html").write_text(
        page.format(intro + "<p>We never sell them.</p>" * 10), encoding="utf-8"
    )
    (folder / "2023-06-01.html").write_text(
        page.format(intro + "<h2>AI</h2><p>" + html.escape(HOSTILE_AI) + "</p>"), encoding="utf-8"
    )
    return root


def test_hostile_policy_text_is_escaped_and_csv_round_trips(store: Store, tmp_path: Path) -> None:
    import_tree(Pipeline(default_config(), store, notify=False), _hostile_tree(tmp_path))
    out = tmp_path / "report"
    written = write_report(store, out)
    page = written["html"].read_text(encoding="utf-8")
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "nasty&lt;b&gt;co" in page
    soup = BeautifulSoup(page, "lxml")
    assert soup.find("b") is None or "co" not in soup.find("b").get_text()
    for page in out.glob("diffs/*/*.html"):
        assert "<script" not in page.read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(written["csv"].read_text(encoding="utf-8-sig"))))
    texts = [r["unit_text"] for r in rows if r["ai_training"] == "True"]
    assert any('"posts", comments, and <script>' in t for t in texts)


def test_html_links_every_version_pair_to_a_diff_page(imported: Store, tmp_path: Path) -> None:
    out = tmp_path / "report"
    index = write_report(imported, out, formats=["html"])["html"]
    soup = BeautifulSoup(index.read_text(encoding="utf-8"), "lxml")
    hrefs = [a["href"] for a in soup.select("table.versions a")]
    assert len(hrefs) == 2 + 1 + 2  # successive pairs of 3, 2 and 3 versions
    (two_three,) = [h for h in hrefs if h.startswith("diffs/parlour--privacy-policy/2-3-")]
    for href in hrefs:
        assert (out / href).is_file()
    opt_out = (out / two_three).read_text(encoding="utf-8")
    assert "opt out" in opt_out
    # matrix: one row per platform, one column per document type
    assert [th.get_text() for th in soup.select("table.matrix thead th")] == [
        "Platform",
        "privacy-policy",
        "terms-of-service",
    ]
    cell = soup.select_one('td[data-doc="parlour/privacy-policy"]')
    assert cell is not None and "since 2023-03-01" in cell.get_text()
    assert "opt-out" in cell.get_text()
    # a timeline per platform, one mark per version, each with a tooltip
    svgs = soup.select("section.timeline svg")
    assert len(svgs) == 2
    assert len(svgs[0].select("circle")) == 3 + 2
    assert all(c.find("title") for c in svgs[0].select("circle"))
    assert not soup.select("script, link[rel=stylesheet]")


def test_cli_report_writes_each_format(imported: Store, tmp_path: Path) -> None:
    out = tmp_path / "cli-report"
    result = CliRunner().invoke(
        cli,
        [
            "--db",
            str(imported.path),
            "report",
            "--format",
            "json",
            "--out",
            str(out),
            "--platform",
            "parlour",
            "--since",
            "2023-01-01",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [d["document"] for d in data["documents"]] == [
        "parlour/privacy-policy",
        "parlour/terms-of-service",
    ]
    assert data["filters"]["since"] == "2023-01-01"
    assert not (out / "index.html").exists()
    bad = CliRunner().invoke(cli, ["--db", str(imported.path), "report", "--since", "soon"])
    assert bad.exit_code == 2 and "not a date" in bad.output


def test_a_diff_page_of_another_database_is_not_reused(tmp_path: Path) -> None:
    # Two databases, the same document id and version numbers, different texts, one --out.
    out = tmp_path / "report"

    def history(root: Path, word: str) -> Path:
        folder = root / "acme" / "privacy-policy"
        folder.mkdir(parents=True)
        body = "# Acme privacy\n\n## Data\n\n" + "We keep your account details safe. " * 8
        (folder / "2024-01-01.md").write_text(body, encoding="utf-8")
        (folder / "2024-02-01.md").write_text(body + f"\n\nWe now keep {word}.", encoding="utf-8")
        return root

    pages = []
    for name, word in (("one", "pebbles"), ("two", "marbles")):
        with Store(tmp_path / f"{name}.db") as store:
            import_tree(
                Pipeline(default_config(), store, notify=False),
                history(tmp_path / name, word),
            )
            index = write_report(store, out, formats=["html"])["html"]
        soup = BeautifulSoup(index.read_text(encoding="utf-8"), "lxml")
        (href,) = [a["href"] for a in soup.select("table.versions a")]
        pages.append(href)
        assert word in (out / href).read_text(encoding="utf-8")
    assert pages[0] != pages[1]


def test_diff_pages_are_the_same_from_a_process_pool(imported: Store, tmp_path: Path) -> None:
    one = write_report(imported, tmp_path / "one", formats=["html"], workers=1)["html"].parent
    two = write_report(imported, tmp_path / "two", formats=["html"], workers=2)["html"].parent
    pages = sorted(p.relative_to(one) for p in one.glob("diffs/*/*.html"))
    assert len(pages) == 5
    assert pages == sorted(p.relative_to(two) for p in two.glob("diffs/*/*.html"))
    for page in pages:
        assert (one / page).read_bytes() == (two / page).read_bytes()


def test_progress_counts_every_diff_page_written_or_kept(imported: Store, tmp_path: Path) -> None:
    for _ in range(2):  # written, then kept
        totals: list[int] = []
        done: list[int] = []
        write_report(
            imported,
            tmp_path / "report",
            formats=["html"],
            workers=1,
            on_start=totals.append,
            on_page=done.append,
        )
        assert totals == [5] and sum(done) == 5


def test_cli_report_shows_progress_on_a_terminal(imported: Store, tmp_path: Path) -> None:
    args = ["--db", str(imported.path), "report", "--out", str(tmp_path / "r")]
    on_tty = CliRunner().invoke(cli, args, env={"TTY_COMPATIBLE": "1"})
    assert on_tty.exit_code == 0, on_tty.output
    assert "report: diff pages" in on_tty.stderr
    piped = CliRunner().invoke(cli, args, env={"TTY_COMPATIBLE": "0"})
    assert "report: diff pages" not in piped.stderr
    assert "index.html" in piped.stdout

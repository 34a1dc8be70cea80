"""`import dir`: a bundled fictional history (tests/data/history, see its README) goes through
the same stages as a fetch on each file's date; importing twice adds nothing."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from monitor.backfill import import_tree, parse_stem, scan
from monitor.cli import cli
from monitor.config import default_config
from monitor.pipeline import Pipeline
from monitor.store import Store

HISTORY = Path(__file__).resolve().parent / "data" / "history"
PARLOUR = "parlour/privacy-policy"


def _import(store: Store, root: Path = HISTORY, workers: int = 1) -> object:
    return import_tree(Pipeline(default_config(), store, notify=False), root, workers=workers)


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("2024-03-14T12-31-33Z", dt.datetime(2024, 3, 14, 12, 31, 33, tzinfo=dt.UTC)),
        (
            "2024-03-14T12-31-33Z--legal-privacy",
            dt.datetime(2024, 3, 14, 12, 31, 33, tzinfo=dt.UTC),
        ),
        ("2022-01-10", dt.datetime(2022, 1, 10, tzinfo=dt.UTC)),
        ("2024-02-30", None),
        ("README", None),
    ],
)
def test_parse_stem(stem: str, expected: dt.datetime | None) -> None:
    assert parse_stem(stem) == expected


def test_scan_orders_each_document_oldest_first_and_ignores_other_files() -> None:
    files = scan(HISTORY)
    assert len(files) == 9  # README.md has no date and is not a version
    parlour = [f.path.name for f in files if f.doc_id == PARLOUR]
    assert parlour == [
        "2022-01-10.md",
        "2023-03-01T08-30-00Z.md",
        "2023-09-15T12-00-00Z.html",
        "2024-02-01.html",
    ]


def test_import_runs_every_stage_on_the_files_dates(store: Store) -> None:
    result = _import(store)
    assert (result.files, result.new_versions, result.unchanged) == (9, 8, 1)
    assert (result.skipped, result.suspect, result.alerts) == (0, 0, 1)
    versions = store.versions(PARLOUR)
    # 2024-02-01.html differs from 2023-09-15 only in markup: it extends version 3.
    assert [v.first_seen for v in versions] == [
        "2022-01-10T00:00:00Z",
        "2023-03-01T08:30:00Z",
        "2023-09-15T12:00:00Z",
    ]
    assert versions[2].last_seen == "2024-02-01T00:00:00Z"
    assert [(v.ai_training, v.consent) for v in versions] == [
        (False, "n/a"),
        (True, "none"),
        (True, "opt_out"),
    ]
    alert = store.query("SELECT type, severity, version_id FROM alerts")
    assert alert == [
        {"type": "ai_training_added", "severity": "high", "version_id": versions[1].id}
    ]
    # a diff is recorded between successive versions, and no e-mail without --notify
    assert len(store.query("SELECT * FROM changes WHERE document_id = ?", (PARLOUR,))) == 2
    assert store.query("SELECT count(*) AS n FROM deliveries") == [{"n": 0}]


def test_importing_twice_adds_nothing(store: Store) -> None:
    _import(store)
    before = store.query("SELECT id, sha256, last_seen FROM versions ORDER BY id")
    again = _import(store)
    assert again.new_versions == 0 and again.alerts == 0 and again.suspect == 0
    assert store.query("SELECT id, sha256, last_seen FROM versions ORDER BY id") == before
    assert store.query("SELECT count(*) AS n FROM alerts") == [{"n": 1}]
    assert store.query("SELECT count(*) AS n FROM changes") == [{"n": 5}]


def test_process_pool_gives_the_same_history(tmp_path: Path) -> None:
    with Store(tmp_path / "one.db") as one, Store(tmp_path / "two.db") as two:
        _import(one, workers=1)
        _import(two, workers=2)
        sql = "SELECT document_id, number, sha256, ai_training, consent FROM versions ORDER BY id"
        assert one.query(sql) == two.query(sql)
        sql = "SELECT summary FROM changes ORDER BY id"
        assert one.query(sql) == two.query(sql)


def test_failed_capture_in_the_archive_is_suspect_not_a_version(
    store: Store, tmp_path: Path
) -> None:
    root = tmp_path / "history"
    shutil.copytree(HISTORY / "quillnest", root / "quillnest")
    folder = root / "quillnest" / "privacy-policy"
    (folder / "2023-01-05.md").write_text("# Page not found\n\nSorry.\n", encoding="utf-8")
    result = _import(store, root)
    assert result.suspect == 1
    assert any("2023-01-05.md" in p for p in result.problems)
    assert [v.first_seen[:10] for v in store.versions("quillnest/privacy-policy")] == [
        "2021-05-04",
        "2022-11-30",
        "2024-04-18",
    ]


def test_cli_import_dir_json_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # without a config, the pages go to ./reports
    db = tmp_path / "cli.db"
    runner = CliRunner()
    out = runner.invoke(cli, ["--db", str(db), "import", "dir", str(HISTORY), "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert (summary["documents"], summary["new_versions"], summary["alerts"]) == (3, 8, 1)
    assert summary["alerts_index"] == str(tmp_path / "reports" / "alerts" / "index.html")
    assert (tmp_path / "reports" / "alerts" / "1.html").is_file()
    human = runner.invoke(cli, ["--db", str(db), "import", "dir", str(HISTORY), "--workers", "1"])
    assert human.exit_code == 0, human.output
    assert "0 new versions" in human.output and "9 files" in human.output


def test_cli_import_publishes_the_pages_of_imported_alerts(tmp_path: Path) -> None:
    from bs4 import BeautifulSoup

    config = tmp_path / "config.yaml"
    config.write_text("database: research.db\nreports_dir: out\n", encoding="utf-8")
    out = CliRunner().invoke(cli, ["--config", str(config), "import", "dir", str(HISTORY)])
    assert out.exit_code == 0, out.output
    alerts = tmp_path / "out" / "alerts"
    index = BeautifulSoup((alerts / "index.html").read_text(encoding="utf-8"), "lxml")
    hrefs = [a["href"] for a in index.select("#alerts tbody a")]
    assert hrefs == ["1.html"]  # the one alert of the history (see test above)
    assert "train" in (alerts / "1.html").read_text(encoding="utf-8")
    assert (tmp_path / "out" / "alerts.atom").is_file()
    assert str(alerts / "index.html") in out.output
    with Store(tmp_path / "research.db") as store:  # pages, but still no e-mail
        assert store.query("SELECT count(*) AS n FROM deliveries") == [{"n": 0}]


def test_cli_import_of_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        cli, ["--db", str(tmp_path / "x.db"), "import", "dir", str(tmp_path / "nope")]
    )
    assert out.exit_code == 2
    assert "Traceback" not in out.output


# --- imported history is not news: no e-mail unless --notify --------------------------------

LIVE = "live/privacy-policy"
NO_AI = "# Privacy\n\n## Use\n\nWe keep your account details to run the service.\n"
TRAINS = NO_AI + "\nWe may use your public posts to train our artificial intelligence models.\n"


def _live_alert(store: Store, when: dt.datetime) -> list[int]:
    """An alert raised by a fetch (what `check` does), at ``when``."""
    from monitor.extract import extract_markdown

    store.ensure_document(LIVE, "Live", "privacy-policy", "https://live.example/privacy")
    pipeline = Pipeline(default_config(), store, notify=True, clock=lambda: when)
    for text in (NO_AI, TRAINS):
        ingest = pipeline.ingest(LIVE, extract_markdown(text), seen_at=when, source="fetch")
    return ingest.alert_ids


def test_daily_digest_after_an_import_lists_no_imported_alert(store: Store) -> None:
    from monitor.notify import add_subscriber, enqueue_digests

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    add_subscriber(store, "daily@example.org", digest="daily", min_severity="info", now=now)
    live = _live_alert(store, now + dt.timedelta(minutes=1))
    assert len(live) == 1
    (first,) = enqueue_digests(store, now=now + dt.timedelta(hours=1))
    assert store.query_one("SELECT alert_id FROM deliveries WHERE id = ?", (first,)) == {
        "alert_id": live[0]
    }

    imported = _import(store)
    assert imported.alert_ids  # the history does raise an alert: recorded, not e-mailed
    assert enqueue_digests(store, now=now + dt.timedelta(days=1, hours=1)) == []
    origins = store.query("SELECT id, origin FROM alerts ORDER BY id")
    assert origins == [
        {"id": live[0], "origin": "check"},
        *({"id": i, "origin": "import"} for i in imported.alert_ids),
    ]


def test_import_with_notify_e_mails_its_alerts(store: Store) -> None:
    from monitor.notify import add_subscriber

    add_subscriber(store, "instant@example.org", min_severity="info")
    result = import_tree(Pipeline(default_config(), store, notify=True), HISTORY)
    (alert,) = result.alert_ids
    assert store.query("SELECT origin FROM alerts") == [{"origin": "import-notify"}]
    rows = store.query("SELECT alert_id, recipient FROM deliveries")
    assert rows == [{"alert_id": alert, "recipient": "instant@example.org"}]


def test_an_imported_alert_is_never_queued_by_hand_either(store: Store) -> None:
    from monitor.notify import add_subscriber, enqueue_alert

    add_subscriber(store, "instant@example.org", min_severity="info")
    (alert,) = _import(store).alert_ids
    assert enqueue_alert(store, alert) == []
    assert store.query("SELECT count(*) AS n FROM deliveries") == [{"n": 0}]


def test_migration_marks_the_alerts_of_earlier_imports(db_before: Any) -> None:
    db, conn = db_before("origin TEXT")
    day = "2024-01-01T00:00:00Z"
    conn.execute(
        "INSERT INTO documents VALUES ('p/privacy-policy', 'P', 'privacy-policy', 'u', ?)", (day,)
    )
    for vid, source in ((1, "fetch"), (2, "import"), (3, "import")):
        conn.execute(
            "INSERT INTO versions (id, document_id, number, sha256, text, first_seen, last_seen, "
            "source) VALUES (?, 'p/privacy-policy', ?, ?, 't', ?, ?, ?)",
            (vid, vid, str(vid), day, day, source),
        )
        conn.execute(
            "INSERT INTO alerts (id, document_id, type, severity, version_id, created_at, "
            "clause_key, summary, evidence) VALUES (?, 'p/privacy-policy', 'baseline', 'high', "
            "?, ?, ?, 's', '{}')",
            (vid, vid, day, f"k{vid}"),
        )
    # the outbox row an `import --notify` left for the second imported alert
    conn.execute(
        "INSERT INTO deliveries (kind, alert_id, recipient, subject, body_text, headers, "
        "message_id, status, next_attempt_at, created_at) "
        "VALUES ('alert', 3, 'a@b.org', 's', 'b', '{}', '<m@x>', 'sent', ?, ?)",
        (day, day),
    )
    conn.close()
    with Store(db) as store:
        origins = {r["id"]: r["origin"] for r in store.query("SELECT id, origin FROM alerts")}
    assert origins == {1: "check", 2: "import", 3: "import-notify"}

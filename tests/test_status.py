"""`status`: every configured document with its last fetch, failures, version, next run and
health, from the same schedule computation as the daemon."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor import health
from monitor.cli import cli
from monitor.config import load_config
from monitor.store import Store

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "database: pm.db\noperator: ops@example.org\ndocuments:\n"
        "  - {platform: Alpha, url: 'https://alpha.example/privacy', interval: 6h}\n"
        "  - {platform: Beta, url: 'https://beta.example/privacy'}\n"
        "  - {platform: Gamma, url: 'https://gamma.example/privacy', interval: 1d}\n",
        encoding="utf-8",
    )
    config = load_config(path)
    with Store(config.database_path) as store:
        for doc in config.documents:
            store.upsert_document(doc)
        alpha = "alpha/privacy-policy"
        version = store.add_version(alpha, text="# Policy\n\nText.", seen_at=T0, source="fetch")
        log = [
            ("new_version", 0),
            ("unchanged", 60),
            ("http_error", 120),  # the failures after the last good fetch are counted
            ("suspect", 180),
        ]
        for outcome, minutes in log:
            store.record_fetch(
                alpha,
                started_at=T0 + dt.timedelta(minutes=minutes),
                url="u",
                outcome=outcome,
                version_id=version.id if outcome == "new_version" else None,
            )
        store.record_fetch(
            "gamma/privacy-policy",
            started_at=dt.datetime.now(dt.UTC),
            url="u",
            outcome="robots_disallowed",
            detail="robots.txt disallows /privacy",
        )
        health.update(store, config, ["gamma/privacy-policy"])
    return path


def run_status(config_path: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(config_path), "status", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_status_json(config_path: Path) -> None:
    rows = {r["document"]: r for r in json.loads(run_status(config_path, "--json"))}
    assert list(rows) == ["alpha/privacy-policy", "beta/privacy-policy", "gamma/privacy-policy"]

    alpha = rows["alpha/privacy-policy"]
    assert alpha["last_fetch"] == "2025-03-01T15:00:00Z"
    assert alpha["outcome"] == "suspect"
    assert alpha["consecutive_failures"] == 2
    assert alpha["version"] == 1
    assert alpha["version_date"] == "2025-03-01T12:00:00Z"
    assert alpha["next_run"] == "2025-03-01T21:00:00Z"  # last fetch + 6 h
    assert alpha["overdue"] is True
    assert alpha["health"] == []

    beta = rows["beta/privacy-policy"]
    assert beta["last_fetch"] is None and beta["next_run"] is None
    assert beta["consecutive_failures"] == 0 and beta["version"] is None

    gamma = rows["gamma/privacy-policy"]
    assert gamma["overdue"] is False  # fetched just now, due in a day
    assert gamma["consecutive_failures"] == 1
    assert [p["problem"] for p in gamma["health"]] == ["robots"]
    assert "disallows" in gamma["health"][0]["detail"]


def test_status_table(config_path: Path) -> None:
    out = run_status(config_path)
    lines = {line.split()[0]: line for line in out.splitlines() if "/privacy-policy" in line}
    assert "suspect" in lines["alpha/privacy-policy"]
    assert "(overdue)" in lines["alpha/privacy-policy"]
    assert "never" in lines["beta/privacy-policy"] and "now" in lines["beta/privacy-policy"]
    assert "robots" in lines["gamma/privacy-policy"]

"""`search`: FTS5 over every version, kept in sync by triggers, with forgiving query syntax."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from monitor.backfill import import_tree
from monitor.cli import cli
from monitor.config import default_config
from monitor.errors import MonitorError
from monitor.pipeline import Pipeline
from monitor.search import fts_query, search
from monitor.store import MIGRATIONS, Store

HISTORY = Path(__file__).resolve().parent / "data" / "history"


@pytest.fixture
def imported(store: Store) -> Store:
    import_tree(Pipeline(default_config(), store, notify=False), HISTORY)
    return store


def test_phrase_finds_the_version_that_says_it(imported: Store) -> None:
    (hit,) = search(imported, '"opt out of this use"')
    assert (hit.document_id, hit.version, hit.first_seen[:10]) == (
        "parlour/privacy-policy",
        3,
        "2023-09-15",
    )
    assert hit.platform == "parlour" and hit.doc_type == "privacy-policy"
    assert "You can [opt out of this use] at any time" in hit.plain_snippet()


def test_words_match_every_version_that_has_them(imported: Store) -> None:
    hits = search(imported, "Finland Ireland")
    assert sorted((h.document_id, h.version) for h in hits) == [
        ("quillnest/privacy-policy", 2),
        ("quillnest/privacy-policy", 3),
    ]
    assert all("[Ireland]" in h.plain_snippet() for h in hits)


def test_a_passage_repeated_in_every_version_is_one_hit_newest_first(imported: Store) -> None:
    hits = search(imported, "Parlour")
    # parlour/privacy-policy says "Parlour rooms" in all three versions, the same words around.
    rooms = [h for h in hits if h.document_id == "parlour/privacy-policy"]
    assert len(rooms) == 1
    (hit,) = rooms
    assert (hit.version, hit.versions, hit.first_version) == (3, 3, 1)
    assert (hit.first_seen[:10], (hit.since or "")[:10]) == ("2023-09-15", "2022-01-10")
    assert hit.to_dict()["versions"] == 3 and hit.to_dict()["since"] == "2022-01-10"
    dates = [h.first_seen for h in hits]
    assert dates == sorted(dates, reverse=True)
    assert len({(h.document_id, h.snippet) for h in hits}) == len(hits)


def test_platform_filter_and_limit(imported: Store) -> None:
    assert {h.document_id for h in search(imported, "account", platforms=["quillnest"])} == {
        "quillnest/privacy-policy"
    }
    assert len(search(imported, "Parlour", limit=2)) == 2


@pytest.mark.parametrize(
    ("name", "typed"),
    [
        ("Meta AI", "Meta AI"),  # a platform named in a config ...
        ("Meta AI", "meta-ai"),
        ("meta-ai", "Meta AI"),  # ... or by an import folder
        ("meta-ai", "META ai"),
    ],
)
def test_platform_filter_takes_names_and_slugs_alike(store: Store, name: str, typed: str) -> None:
    import datetime as dt

    when = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    store.ensure_document("meta-ai/privacy-policy", name, "privacy-policy", "https://m.ai")
    store.ensure_document("other/privacy-policy", "Other", "privacy-policy", "https://o.ai")
    for doc in ("meta-ai/privacy-policy", "other/privacy-policy"):
        store.add_version(doc, text="We keep your chats safe.", seen_at=when, source="fetch")
    hits = search(store, "chats", platforms=[typed])
    assert [h.document_id for h in hits] == ["meta-ai/privacy-policy"]


@pytest.mark.parametrize(
    ("typed", "expression"),
    [
        ("opt-out", '"opt out"'),
        ('say "hello', 'say "hello"'),
        ("e-mail: address", '"e mail" address'),
        ("train*", "train*"),
        ("AND train OR", "train"),
        ("a OR b", "a OR b"),
    ],
)
def test_user_queries_are_quoted_sensibly(typed: str, expression: str) -> None:
    assert fts_query(typed) == expression


def test_hyphen_and_quote_queries_do_not_crash(imported: Store) -> None:
    assert [h.version for h in search(imported, "opt-out")] == [3]
    assert search(imported, 'Parlour"s') == []
    with pytest.raises(MonitorError):
        search(imported, '"')
    with pytest.raises(MonitorError, match="cannot search"):
        search(imported, "train AND OR privacy")


def test_index_follows_inserts_and_deletes(imported: Store) -> None:
    assert search(imported, "Finland") != []
    imported.conn.execute(
        "DELETE FROM versions WHERE document_id = 'quillnest/privacy-policy' AND id NOT IN "
        "(SELECT version_id FROM findings UNION SELECT version_id FROM alerts "
        "UNION SELECT to_version_id FROM changes UNION SELECT from_version_id FROM changes "
        "WHERE from_version_id IS NOT NULL)"
    )
    remaining = imported.query(
        "SELECT number FROM versions WHERE document_id = 'quillnest/privacy-policy'"
    )
    assert sorted(h.version for h in search(imported, "Finland")) == sorted(
        r["number"] for r in remaining
    )


def test_migration_indexes_versions_stored_before_it(db_before: Any) -> None:
    db, conn = db_before("versions_fts")
    day = "2024-01-01T00:00:00Z"
    conn.execute(
        "INSERT INTO documents VALUES ('q/privacy-policy', 'Q', 'privacy-policy', 'u', ?)", (day,)
    )
    texts = ("We are based in Finland.", "We are based in Finland and Ireland.", "Ireland only.")
    for n, text in enumerate(texts, 1):
        conn.execute(
            "INSERT INTO versions (document_id, number, sha256, text, first_seen, last_seen, "
            "source) VALUES ('q/privacy-policy', ?, ?, ?, ?, ?, 'import')",
            (n, str(n), text, day, day),
        )
    conn.close()
    with Store(db) as store:
        assert store.schema_version == len(MIGRATIONS)
        assert {h.version for h in search(store, "Ireland")} == {2, 3}


def test_cli_search_json_and_text(imported: Store) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["--db", str(imported.path), "search", "opt-out", "--json"])
    assert out.exit_code == 0, out.output
    (hit,) = json.loads(out.output)
    assert (hit["document"], hit["version"], hit["date"]) == (
        "parlour/privacy-policy",
        3,
        "2023-09-15",
    )
    assert "**opt out**" in hit["snippet"]
    text = runner.invoke(cli, ["--db", str(imported.path), "search", "Ireland", "--limit", "1"])
    assert text.exit_code == 0 and "quillnest/privacy-policy" in text.output
    rooms = runner.invoke(cli, ["--db", str(imported.path), "search", "rooms"])
    assert "version 3  2023-09-15  (in 3 versions since 2022-01-10)" in rooms.output
    bad = runner.invoke(cli, ["--db", str(imported.path), "search", "train AND OR privacy"])
    assert bad.exit_code == 2
    assert bad.output.startswith("error: cannot search") and bad.output.count("\n") == 1

"""Shared fixtures. Small and named; anything bigger lives in its feature's test file."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.store import MIGRATIONS, Store, _split_sql

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A real SQLite file in a temporary folder."""
    s = Store(tmp_path / "test.db")
    yield s
    s.close()


@pytest.fixture
def corpus() -> Path:
    """The shared corpus of real policy histories; tests using it skip when it is absent."""
    if not (CORPUS / "versions").is_dir():
        pytest.skip("../shared/corpus is not present")
    return CORPUS


@pytest.fixture
def db_before(tmp_path: Path) -> Callable[[str], tuple[Path, sqlite3.Connection]]:
    """For migration tests: ``db_before(marker)`` builds ``old.db`` with the migrations that
    come before the first one whose SQL contains ``marker``, and returns it with an open
    autocommit connection (the test fills it in the old schema, closes it, then opens it
    with :class:`Store`, which runs the rest)."""

    def make(marker: str) -> tuple[Path, sqlite3.Connection]:
        upto = next(i for i, m in enumerate(MIGRATIONS) if marker in m)
        db = tmp_path / "old.db"
        conn = sqlite3.connect(db, isolation_level=None)
        for script in MIGRATIONS[:upto]:
            for statement in _split_sql(script):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={upto}")
        return db, conn

    return make

"""Shared fixtures. Small and named; anything bigger lives in its feature's test file."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.store import Store

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

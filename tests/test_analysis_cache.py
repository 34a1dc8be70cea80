"""AnalysisCache: analysing a document's versions through one cache gives exactly the analyses
of analysing each alone, and the import's per-document worker state changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from monitor import backfill
from monitor.analyse import AnalysisCache, analyse_text, load_packs
from monitor.backfill import _prepare_run, scan

HISTORY = Path(__file__).resolve().parent / "data" / "history"

BASE = """# Privacy policy

## How we use data

We may use your public posts to train our AI models. You can opt out in Settings.

We do not use your private messages to train our AI models.

## Sharing

We share your data with advertising partners. Nous utilisons vos publications pour entraîner
nos modèles d'IA.

- We collect biometric data such as face geometry.
- You can turn this off at any time.
"""


def _versions() -> list[str]:
    """One document's versions: units kept, edited, moved, removed, repeated, translated."""
    v2 = BASE.replace("You can opt out in Settings.", "We will ask for your consent first.")
    v3 = v2.replace("## Sharing", "## Sharing with partners") + "\nWe train our AI models.\n"
    v4 = v3.replace("We do not use your private messages", "We use your private messages")
    v5 = "# Privacy policy\n\nWe train our AI models.\n\n" + BASE  # the same units, moved
    return [BASE, v2, v3, v4, v5, BASE, v2]


def _record(text: str, **kw: object) -> dict[str, object]:
    return analyse_text(text, **kw).to_dict()  # type: ignore[arg-type]


def test_a_cache_across_versions_gives_the_same_analyses() -> None:
    cache = AnalysisCache()
    for text in _versions():
        assert _record(text, cache=cache) == _record(text)
    assert cache.hits > 0  # the later versions did reuse the earlier ones' units


def test_history_files_through_one_cache(tmp_path: Path) -> None:
    cache = AnalysisCache()
    for f in scan(HISTORY):
        text = backfill._read(f.path).text
        assert _record(text, cache=cache) == _record(text)


def test_a_cache_never_mixes_packs() -> None:
    packs = load_packs()
    cache = AnalysisCache()
    for subset in (packs[:1], packs, packs[1:], packs):
        for text in _versions()[:3]:
            assert _record(text, packs=subset, cache=cache) == _record(text, packs=subset)


def test_the_cache_is_bounded() -> None:
    cache = AnalysisCache(max_entries=5)
    for text in _versions():
        assert _record(text, cache=cache) == _record(text)
        assert len(cache) <= 5
    cache.clear()
    assert len(cache) == 0


@pytest.mark.parametrize("run", [1, 2, 3])
def test_worker_state_between_runs_changes_nothing(tmp_path: Path, run: int) -> None:
    """Runs of one document with the worker's kept state give what fresh runs (each reading
    the file before it) give, also when a run ends on an unreadable file."""
    root = tmp_path / "history"
    shutil.copytree(HISTORY / "parlour", root / "parlour")
    folder = root / "parlour" / "privacy-policy"
    (folder / "2023-05-01.md").write_bytes(b"")  # read, empty
    broken = folder / "2023-06-01.md"
    broken.mkdir()  # unreadable: a folder where a file should be
    (folder / "2023-07-01.md").write_text("# Policy\n\nWe train our AI models.\n")
    paths = [f.path for f in scan(root) if f.doc_id == "parlour/privacy-policy"]
    paths.append(broken)  # scan skips non-files; a run can still meet one (a race)
    paths.sort()

    def summary(prepared: list[backfill._Prepared]) -> list[object]:
        return [
            (
                p.path.name,
                p.sha,
                p.error is None,
                p.analysis.to_dict() if p.analysis else None,
                p.change_summary,
                p.base_sha,
            )
            for p in prepared
        ]

    chunks = [paths[i : i + run] for i in range(0, len(paths), run)]
    fresh: list[object] = []
    kept: list[object] = []
    backfill._STATES.clear()
    try:
        for k, chunk in enumerate(chunks):
            before = chunks[k - 1][-1] if k else None
            fresh += summary(_prepare_run(chunk, before))
            kept += summary(_prepare_run(chunk, before, doc_id="parlour/privacy-policy"))
    finally:
        backfill._STATES.clear()
    assert kept == fresh

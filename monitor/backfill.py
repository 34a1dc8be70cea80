"""Backfill history from a folder tree: ``PLATFORM/DOC-TYPE/<date>.md|.html``.

That is the Open Terms Archive dataset layout: a file stem starts with an ISO date, optionally
followed by a time (``2024-03-14T12-31-33Z``). Files are read oldest first and each one goes
through the same store -> analyse -> diff -> alert stages as a fetch on that date
(:meth:`monitor.pipeline.Pipeline.ingest`). Importing twice adds nothing: a text identical to
the document's latest version only moves its ``last_seen``; an older date than the latest
version's is skipped (history is append-only).

Archives contain failed captures too (an error page, a heading alone, a cookie banner). The
suspect guard of a live check applies: a blocked page or an empty text is skipped; a shrink
under ``suspect.min_ratio`` is skipped unless the next file of the same document is shrunk
as well (the archive's equivalent of "the same shrunk text on consecutive fetches").

Speed: the pure stages (read, extract, analyse, and the diff against the previous file of the
same document) run in worker processes over short runs of consecutive files of one document.
Each document goes to one worker ("lane", chosen to balance the lanes' bytes), so the worker
keeps what the document's previous run ended with (its last text, split into diff units, and
an :class:`~monitor.analyse.AnalysisCache` of its units: consecutive versions are mostly the
same units) instead of extracting the file before the run again. The main process only writes,
in order. At most ``_WINDOW`` files per worker are in flight, so memory stays bounded whatever
the size of the tree. A precomputed diff is used only when its base is the document's latest
stored version (it is not when the file before was a suspect capture); otherwise
:meth:`~monitor.pipeline.Pipeline.ingest` diffs again itself.
"""

from __future__ import annotations

import datetime as dt
import gc
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from monitor import extract
from monitor.config import slug
from monitor.errors import MonitorError
from monitor.models import Analysis
from monitor.pipeline import Pipeline
from monitor.store import iso, sha256_text

if TYPE_CHECKING:
    from monitor.analyse import AnalysisCache, RulePack
    from monitor.diff import DiffMemo

__all__ = ["HistoryFile", "ImportResult", "import_tree", "iter_docs", "parse_stem", "scan"]

_STEM = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})(?:[T_ ](?P<h>\d{2})[-:](?P<m>\d{2})(?:[-:](?P<s>\d{2}))?(?:\.\d+)?Z?)?"
)
# Consecutive files of one document handed to a worker at once. The worker keeps the end of
# the document's previous run, so shorter runs cost little more and reach the writer sooner.
_RUN = 6
# Files in flight per worker: room for one lane to run a long document ahead of the other.
_WINDOW = 48


@dataclass(slots=True, frozen=True)
class HistoryFile:
    platform: str
    doc_type: str
    path: Path
    seen_at: dt.datetime

    @property
    def doc_id(self) -> str:
        return f"{slug(self.platform)}/{slug(self.doc_type)}"


@dataclass(slots=True)
class ImportResult:
    files: int = 0
    new_versions: int = 0
    unchanged: int = 0
    skipped: int = 0  # older than what the database already has, or unreadable
    suspect: int = 0  # failed captures in the archive, not versions
    alerts: int = 0
    documents: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    alert_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def versions_per_second(self) -> float:
        """Files turned into versions (new or unchanged) per second of import."""
        done = self.new_versions + self.unchanged
        return done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "files": self.files,
            "documents": len(self.documents),
            "new_versions": self.new_versions,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "suspect": self.suspect,
            "alerts": self.alerts,
            "seconds": round(self.seconds, 3),
            "versions_per_second": round(self.versions_per_second, 1),
            "problems": list(self.problems),
        }


def parse_stem(stem: str) -> dt.datetime | None:
    """``2024-03-14T12-31-33Z--legal`` -> 2024-03-14 12:31:33 UTC; None if no date."""
    m = _STEM.match(stem)
    if not m:
        return None
    try:
        day = dt.date.fromisoformat(m["date"])
    except ValueError:
        return None
    return dt.datetime(
        day.year,
        day.month,
        day.day,
        int(m["h"] or 0),
        int(m["m"] or 0),
        int(m["s"] or 0),
        tzinfo=dt.UTC,
    )


def scan(root: Path) -> list[HistoryFile]:
    """Every dated .md/.html file under ``root/PLATFORM/DOC-TYPE/``, oldest first per document."""
    if not root.is_dir():
        raise MonitorError(f"{root} is not a folder")
    files: list[HistoryFile] = []
    for path in root.glob("*/*/*"):
        if path.suffix.lower() not in {".md", ".markdown", ".html", ".htm"} or not path.is_file():
            continue
        seen_at = parse_stem(path.stem)
        if seen_at is None:
            continue
        files.append(HistoryFile(path.parent.parent.name, path.parent.name, path, seen_at))
    files.sort(key=lambda f: (f.doc_id, f.seen_at, f.path.name))
    return files


def iter_docs(files: Iterable[HistoryFile]) -> Iterator[str]:
    seen: set[str] = set()
    for f in files:
        if f.doc_id not in seen:
            seen.add(f.doc_id)
            yield f.doc_id


def _read(path: Path, memo: extract.MarkdownMemo | None = None) -> extract.Extracted:
    """The file's extracted text (``memo``: see :func:`monitor.extract.extract_markdown`)."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() in {".html", ".htm"}:
        return extract.extract_html(raw)
    return extract.extract_markdown(raw, memo)


# --- the pure part, run in worker processes ------------------------------------------------


@dataclass(slots=True)
class _Prepared:
    """One file after the pure stages. ``error`` is set instead when it could not be read."""

    path: Path
    extracted: extract.Extracted | None = None
    sha: str = ""
    analysis: Analysis | None = None
    # Change counts against the text whose sha256 is ``base_sha`` (the previous file's).
    change_summary: dict[str, int] | None = None
    base_sha: str | None = None
    error: str | None = None


@dataclass(slots=True)
class _DocState:
    """What a worker keeps of a document between two of its runs: the analysis, diff and
    Markdown-extraction memos, and the last text of the previous run (``last`` is that file)
    with its sha256 and diff units."""

    cache: AnalysisCache
    diff_memo: DiffMemo
    extract_memo: extract.MarkdownMemo = field(default_factory=extract.MarkdownMemo)
    last: Path | None = None
    text: str | None = None
    sha: str | None = None
    units: list[str] | None = None


# Per process (a worker, or the importing process with workers=1): the latest documents'
# states, oldest first. Two: a lane may get the next document before the last run of one.
_STATES: dict[str, _DocState] = {}
_KEEP_STATES = 2


def _state_of(doc_id: str) -> _DocState:
    from monitor.analyse import AnalysisCache
    from monitor.diff import DiffMemo

    state = _STATES.pop(doc_id, None) or _DocState(AnalysisCache(max_entries=100_000), DiffMemo())
    _STATES[doc_id] = state
    while len(_STATES) > _KEEP_STATES:
        del _STATES[next(iter(_STATES))]
    return state


def _prepare_run(
    paths: Sequence[Path],
    before: Path | None,
    packs: Sequence[RulePack] | None = None,
    known_sha: str | None = None,
    doc_id: str | None = None,
) -> list[_Prepared]:
    """Extract, analyse and diff consecutive files of one document (``before`` is the file
    preceding the run, for the first diff; ``known_sha`` the sha256 of the document's latest
    stored text, which needs no analysis). With ``doc_id``, this process's state of the
    document is used and kept (see :class:`_DocState`): the same results, less work."""
    from monitor.analyse import analyse_text
    from monitor.diff import diff_unit_counts, split_units

    state = _state_of(doc_id) if doc_id is not None else None
    previous: str | None = None
    previous_sha: str | None = None
    # The units of ``previous`` once split: each text is the new side of one diff and the
    # old side of the next, and splitting it twice was a fifth of the diff time.
    previous_units: list[str] | None = None
    if state is not None and before is not None and state.last == before:
        # The previous run of this document ended with ``before``, read as it is now.
        previous, previous_sha, previous_units = state.text, state.sha, state.units
    elif before is not None:
        try:
            previous = _read(before).text
            previous_sha = sha256_text(previous)
        except (OSError, MonitorError):
            previous = None
    cache = state.cache if state is not None else None
    memo = state.diff_memo if state is not None else None
    extract_memo = state.extract_memo if state is not None else None
    out: list[_Prepared] = []
    for path in paths:
        try:
            extracted = _read(path, extract_memo)
        except (OSError, MonitorError) as exc:
            out.append(_Prepared(path, error=str(exc)))
            continue
        prepared = _Prepared(path, extracted, sha256_text(extracted.text))
        units: list[str] | None = None
        if previous_sha != prepared.sha and prepared.sha != known_sha:
            # An unchanged file needs neither (the main process only moves last_seen), nor
            # does the text the document already has as its latest version (a re-import).
            prepared.analysis = analyse_text(extracted.text, packs, cache=cache)
            if previous is not None:
                if previous_units is None:
                    previous_units = split_units(previous, memo)
                units = split_units(extracted.text, memo)
                prepared.base_sha = previous_sha
                # The counts only: the change record does not keep the word-level diffs.
                prepared.change_summary = diff_unit_counts(previous_units, units, memo)
        if previous_sha != prepared.sha:
            previous, previous_sha, previous_units = extracted.text, prepared.sha, units
        out.append(prepared)
    if state is not None:
        # Only a run whose last file was read: otherwise the next run reads ``before`` (and
        # fails the same way) as it would without a state.
        ok = bool(out) and out[-1].error is None
        state.last = paths[-1] if ok else None
        state.text, state.sha, state.units = previous, previous_sha, previous_units
    return out


def _warm_up() -> None:
    # The rule packs, compiled before the first run arrives (inherited from the importing
    # process when it compiled them before forking: then this costs nothing).
    from monitor.analyse import load_packs

    load_packs()
    # A worker lives for one import: no need to restore the collector's setting.
    _collect_less()


# Allocations between two collections of the youngest generation while importing (CPython's
# default is 700). An import keeps large, growing memos (each document's analysis and diff
# memos, its units, the packs' caches), and collecting every 700 allocations walked through
# them again and again: about a twelfth of the import's CPU. Cycles are still collected, less
# often; nothing in an import depends on when.
_GC_YOUNG = 10_000


def _collect_less() -> tuple[int, int, int]:
    """Raise the youngest generation's threshold to ``_GC_YOUNG``; the previous thresholds."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], _GC_YOUNG), before[1], before[2])
    return before


# --- the ordered writes, in the main process ------------------------------------------------


def _runs(
    files: Sequence[HistoryFile], todo: Sequence[int]
) -> Iterator[tuple[list[int], Path | None]]:
    """Group the indices to import into runs of consecutive files of one document, each with
    the file just before its first one (imported or not)."""
    run: list[int] = []
    for i in todo:
        if run and (files[run[-1]].doc_id != files[i].doc_id or len(run) >= _RUN):
            yield run, _before(files, run[0])
            run = []
        run.append(i)
    if run:
        yield run, _before(files, run[0])


def _before(files: Sequence[HistoryFile], i: int) -> Path | None:
    return files[i - 1].path if i > 0 and files[i - 1].doc_id == files[i].doc_id else None


def import_tree(
    pipeline: Pipeline,
    root: Path,
    *,
    workers: int = 1,
    on_file: Callable[[HistoryFile], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import a history tree through ``pipeline`` (build it with ``notify=False`` unless the
    imported alerts should be e-mailed).

    ``workers`` > 1 runs the pure stages in that many processes (with the built-in rule
    packs); 1 runs everything here with ``pipeline``'s packs. ``on_start`` receives the number
    of files found, ``on_file`` each file once it is done (for a progress bar)."""
    thresholds = _collect_less()
    try:
        return _import_tree(pipeline, root, workers, on_file, on_start)
    finally:
        gc.set_threshold(*thresholds)


def _import_tree(
    pipeline: Pipeline,
    root: Path,
    workers: int,
    on_file: Callable[[HistoryFile], None] | None,
    on_start: Callable[[int], None] | None,
) -> ImportResult:
    import time

    t0 = time.perf_counter()
    store = pipeline.store
    result = ImportResult()
    files = scan(root)
    if on_start:
        on_start(len(files))

    todo: list[int] = []
    latest_seen: dict[str, str | None] = {}
    latest_sha: dict[str, str | None] = {}  # of each document's stored latest text
    for i, file in enumerate(files):
        doc_id = file.doc_id
        if doc_id not in latest_seen:
            store.ensure_document(
                doc_id,
                file.platform,
                file.doc_type,
                f"file://{file.path.parent.resolve()}",
                now=file.seen_at,
            )
            result.documents.add(doc_id)
            head = store.latest_version_head(doc_id)
            latest_seen[doc_id] = head["first_seen"] if head else None
            latest_sha[doc_id] = head["sha256"] if head else None
        seen = latest_seen[doc_id]
        if seen is not None and seen > iso(file.seen_at):
            # Already imported (or older than what a live check stored): never re-analysed.
            result.files += 1
            result.skipped += 1
            if on_file:
                on_file(file)
        else:
            todo.append(i)

    def consume(indices: Sequence[int], prepared: Sequence[_Prepared]) -> None:
        # One transaction per run, not per file: the pages every version touches (the
        # full-text index, the tables' indexes) are written to the WAL once per run. A crash
        # loses at most the run, which importing again redoes.
        with store.transaction():
            for i, prep in zip(indices, prepared, strict=True):
                _ingest_one(pipeline, files, i, prep, result)
                if on_file:
                    on_file(files[i])

    runs = _runs(files, todo)
    if workers <= 1:
        packs = pipeline.packs
        try:
            for indices, before in runs:
                paths = [files[i].path for i in indices]
                doc_id = files[indices[0]].doc_id
                consume(indices, _prepare_run(paths, before, packs, latest_sha[doc_id], doc_id))
        finally:
            _STATES.clear()
    else:
        import contextlib
        import multiprocessing

        from monitor.analyse import load_packs

        lane_of = _lanes(files, todo, workers)
        # Compile the built-in packs here, once, before the workers are forked: they inherit
        # them instead of each compiling its own (seconds of CPU per worker, on the cores the
        # workers share, while none of them has anything else to do yet).
        load_packs()
        # fork: the workers inherit the loaded modules instead of importing them again.
        ctx = multiprocessing.get_context("fork")
        window: deque[tuple[list[int], Future[list[_Prepared]]]] = deque()
        in_flight = 0
        with contextlib.ExitStack() as stack:
            # One single-process pool per lane: a document's runs reach its worker in order.
            lanes = [
                stack.enter_context(ProcessPoolExecutor(1, mp_context=ctx, initializer=_warm_up))
                for _ in range(workers)
            ]
            for indices, before in runs:
                paths = [files[i].path for i in indices]
                doc_id = files[indices[0]].doc_id
                lane = lanes[lane_of[doc_id]]
                job = lane.submit(_prepare_run, paths, before, None, latest_sha[doc_id], doc_id)
                window.append((indices, job))
                in_flight += len(indices)
                while in_flight > _WINDOW * workers:
                    done_indices, future = window.popleft()
                    in_flight -= len(done_indices)
                    consume(done_indices, future.result())
            while window:
                done_indices, future = window.popleft()
                consume(done_indices, future.result())
    result.seconds = time.perf_counter() - t0
    return result


def _lanes(files: Sequence[HistoryFile], todo: Sequence[int], workers: int) -> dict[str, int]:
    """The worker of each document: in order, the one with the fewest bytes so far (the writer
    takes the results in order, so the lanes must keep pace with each other all along)."""
    weight: dict[str, int] = {}
    for i in todo:
        try:
            size = files[i].path.stat().st_size
        except OSError:
            size = 0
        weight[files[i].doc_id] = weight.get(files[i].doc_id, 0) + size + 1
    load = [0] * workers
    lane_of: dict[str, int] = {}
    for doc_id, w in weight.items():
        lane = min(range(workers), key=load.__getitem__)
        lane_of[doc_id] = lane
        load[lane] += w
    return lane_of


def _ingest_one(
    pipeline: Pipeline,
    files: Sequence[HistoryFile],
    i: int,
    prep: _Prepared,
    result: ImportResult,
) -> None:
    file = files[i]
    result.files += 1
    if prep.error is not None or prep.extracted is None:
        result.skipped += 1
        result.problems.append(f"{file.path}: {prep.error}")
        return
    latest = pipeline.store.latest_version(file.doc_id)
    if latest is not None and latest.first_seen > iso(file.seen_at):
        result.skipped += 1
        return
    extracted = prep.extracted
    reason = None
    if latest is None or latest.sha256 != prep.sha:
        reason = _suspect(pipeline, extracted, latest.text if latest else None)
        if reason and "shrunk" in reason and _shrink_persists(pipeline, files, i, extracted):
            reason = None  # the next capture is as short: a real, shorter policy
    if reason:
        result.suspect += 1
        result.problems.append(f"{file.path}: suspect: {reason}")
        return
    usable = latest is not None and prep.base_sha == latest.sha256
    ingest = pipeline.ingest(
        file.doc_id,
        extracted,
        seen_at=file.seen_at,
        source="import",
        source_url=str(file.path.resolve()),
        analysis=prep.analysis,
        change_summary=prep.change_summary if usable else None,
    )
    if ingest.new_version:
        result.new_versions += 1
    else:
        result.unchanged += 1
    result.alerts += len(ingest.alert_ids)
    result.alert_ids.extend(ingest.alert_ids)


def _suspect(pipeline: Pipeline, extracted: extract.Extracted, previous: str | None) -> str | None:
    settings = pipeline.config.suspect
    return extract.suspect_reason(
        extracted,
        status=200,
        previous_text=previous,
        min_ratio=settings.min_ratio,
        min_chars=settings.min_chars,
    )


def _shrink_persists(
    pipeline: Pipeline, files: Sequence[HistoryFile], i: int, shrunk: extract.Extracted
) -> bool:
    following = files[i + 1] if i + 1 < len(files) else None
    if following is None or following.doc_id != files[i].doc_id:
        return False
    try:
        nxt = _read(following.path)
    except (OSError, MonitorError):
        return False
    return _suspect(pipeline, nxt, shrunk.text) is None and len(nxt.text) < 1.5 * len(shrunk.text)

"""An exact memo of the analyser's per-unit pure computations, across texts.

Consecutive versions of one document share most of their units word for word, and every
expensive step of :func:`monitor.analyse.analyse_text` on a unit is a pure function of that
unit's text and of values derived from it (its language, its token bits and literals, the
pack): the ai-training :func:`~monitor.analyse.engine.assess`, :func:`detect_language`, the
neighbour tests :func:`~monitor.analyse.engine.mentions_training` and
:func:`~monitor.analyse.engine.consent_cues`, and :func:`~monitor.analyse.engine.eval_generic`.
:class:`AnalysisCache` memoises them keyed by *all* of their arguments (objects by identity,
kept alive by the cache so an id is never reused while it is a key), so an unchanged unit
costs a dict lookup and ``analyse_text(text, packs, cache=c)`` gives exactly the Analysis of
``analyse_text(text, packs)``. Segmentation, which is not per unit, is memoised per block
(:class:`~monitor.analyse.segment.SegmentMemo`).

Results are shared between the analyses that hit them (a span list, an Assessment): the
analyser never mutates them after creation, and nothing downstream may either.

The memory is bounded: past ``max_entries`` results the memo is emptied and starts over (a
new document's units rarely repeat an old one's). Use one cache per document, or call
:meth:`AnalysisCache.clear` between documents.

:data:`PLAIN` has the same methods without a memo (what ``analyse_text`` uses by default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from monitor.analyse.engine import (
    ALL_BITS,
    Assessment,
    Spans,
    assess,
    consent_cues,
    eval_generic,
    mentions_training,
)
from monitor.analyse.lang import detect_language
from monitor.analyse.rules import GatedMatcher, Lits, Rule, RulePack, TokenGate
from monitor.analyse.segment import SegmentMemo, segment_with_blocks
from monitor.models import Span, Unit

__all__ = ["PLAIN", "AnalysisCache", "gate_hits"]

T = TypeVar("T")
_MISSING: Any = object()


class _Plain:
    """The uncached operations (the signatures of the engine functions)."""

    @staticmethod
    def segment(text: str) -> tuple[list[Unit], list[int]]:
        return segment_with_blocks(text)

    @staticmethod
    def detect_language(text: str) -> str:
        return detect_language(text)

    @staticmethod
    def assess(
        text: str, lang: str, pack: RulePack, bits: int = ALL_BITS, lits: Lits = None
    ) -> Assessment | None:
        return assess(text, lang, pack, bits, lits)

    @staticmethod
    def mentions_training(
        text: str, lang: str, pack: RulePack, bits: int = ALL_BITS, lits: Lits = None
    ) -> bool:
        return mentions_training(text, lang, pack, bits, lits)

    @staticmethod
    def consent_cues(text: str, m: Any) -> dict[str, Spans]:
        return consent_cues(text, m)

    @staticmethod
    def eval_generic(rule: Rule, text: str, lits: Lits = None) -> list[Span] | None:
        return eval_generic(rule, text, lits)


PLAIN = _Plain()


class AnalysisCache:
    """Memo of :data:`PLAIN`'s operations (see the module docstring). Not thread-safe: one
    per thread or process."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._memo: dict[tuple[Any, ...], Any] = {}
        # Objects whose id is part of a key, kept alive so that the id is not reused.
        self._keep: dict[int, object] = {}
        # unit_table's memos, by (kind, id of the owner)
        self._tables: dict[tuple[str, int], dict[str, Any]] = {}
        # Blocks, not units: segmentation is the one step that is not per unit.
        self._segments = SegmentMemo()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._memo)

    def clear(self) -> None:
        self._memo.clear()
        self._tables.clear()
        self._keep.clear()
        self._segments.clear()

    def _id(self, obj: object) -> int:
        if obj is None:
            return 0
        k = id(obj)
        if k not in self._keep:
            self._keep[k] = obj
        return k

    def _memoised(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        got = self._memo.get(key, _MISSING)
        if got is not _MISSING:
            self.hits += 1
            return got
        self.misses += 1
        value = compute()
        if len(self._memo) >= self.max_entries:
            self.clear()
        self._memo[key] = value
        return value

    # --- the operations -----------------------------------------------------------------

    def segment(self, text: str) -> tuple[list[Unit], list[int]]:
        return segment_with_blocks(text, self._segments)

    def detect_language(self, text: str) -> str:
        key = ("lang", text)
        return self._memoised(key, lambda: detect_language(text))

    def assess(
        self, text: str, lang: str, pack: RulePack, bits: int = ALL_BITS, lits: Lits = None
    ) -> Assessment | None:
        key = ("assess", self._id(pack), text, lang, bits, lits)
        return self._memoised(key, lambda: assess(text, lang, pack, bits, lits))

    def mentions_training(
        self, text: str, lang: str, pack: RulePack, bits: int = ALL_BITS, lits: Lits = None
    ) -> bool:
        key = ("mentions", self._id(pack), text, lang, bits, lits)
        return self._memoised(key, lambda: mentions_training(text, lang, pack, bits, lits))

    def consent_cues(self, text: str, m: Any) -> dict[str, Spans]:
        if isinstance(m, GatedMatcher):
            key: tuple[Any, ...] = (
                "cues",
                self._id(m.m),
                self._id(m.gate),
                m.bits,
                m.lits,
                text,
            )
        else:
            key = ("cues", self._id(m), text)
        return self._memoised(key, lambda: consent_cues(text, m))

    def eval_generic(self, rule: Rule, text: str, lits: Lits = None) -> list[Span] | None:
        key = ("generic", self._id(rule), text, lits)
        return self._memoised(key, lambda: eval_generic(rule, text, lits))

    # --- a unit's token facts: pure functions of its text, asked for every version --------

    def unit_table(self, kind: str, owner: object) -> dict[str, Any]:
        """The memo of one pure computation over a unit's text with ``owner`` (a gate, a
        literal index), keyed by the text, that the caller reads and fills itself: its hits
        are a unit of every version each, too many for a method call apiece. Emptied when
        it has ``max_entries`` texts (checked here, once per document version)."""
        key = (kind, self._id(owner))
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = {}
        elif len(table) >= self.max_entries:
            table.clear()
        return table


def gate_hits(gates: tuple[TokenGate, ...], pres: tuple[int, ...], text: str) -> tuple[int, ...]:
    """For each of ``gates``, the token bits of ``text`` when they include its ``pres`` bits
    (the unit is a candidate of that gate's pack), else 0; ``()`` when none does."""
    tokens = text.split()
    out = []
    for gate, pre in zip(gates, pres, strict=True):
        bits = gate.mask(tokens)
        out.append(bits if bits & pre else 0)
    return tuple(out) if any(out) else ()

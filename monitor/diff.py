"""Clause-level diff of two normalised policy texts.

The diff works on *units*: the blocks of :class:`monitor.models.Extracted` text, with long
paragraph and list-item blocks split into sentences. Units are aligned first by exact match
(each distinct unit mapped to a few private characters, weighted by its length, then
diff-match-patch, or difflib when many units differ: a large policy aligns in milliseconds and
never as "everything deleted, everything inserted"). The leftovers are then paired as MODIFIED
(similar, same place) or MOVED (same or nearly the same text elsewhere), and only paired units
get a word-level diff.

Indices in :class:`~monitor.models.UnitChange` and in the JSON are 0-based positions in
:func:`split_units`; the text and HTML renderings show them 1-based (``#1`` is the first unit),
because they are read by people.

Everything here is pure: no I/O, no global state.
"""

from __future__ import annotations

import difflib
import functools
import heapq
import itertools
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from diff_match_patch import diff_match_patch
from jinja2 import Environment, PackageLoader

from monitor.models import ChangeKind, DiffResult, UnitChange

__all__ = [
    "DiffMemo",
    "diff_counts",
    "diff_texts",
    "diff_to_json",
    "diff_unit_counts",
    "diff_units",
    "diff_view",
    "render_html",
    "render_text",
    "split_units",
]

# Similarity (word-level ratio) at or above which a deleted and an inserted unit in the same
# hunk are the same clause, edited.
MODIFIED_THRESHOLD = 0.5
# Similarity at or above which units in different places are one clause that moved.
MOVED_THRESHOLD = 0.9
# Seconds the unit alignment may take in diff-match-patch before we give up on it (its timeout
# degrades into "delete everything, insert everything") and use difflib instead.
ALIGN_TIMEOUT = 0.2
# diff-match-patch aligns only when at most this many weighted unit characters differ: pure
# Python Myers costs O(length x differences), ~0.3 s for a 1,000-character difference on a
# large policy, where difflib takes ~2 ms (bench/bench_diff.py).
_DMP_MAX_DIFF = 150
# Per-unit word diffs are small; this only bounds pathological input.
WORD_DIFF_TIMEOUT = 0.5
# Above this many candidate pairs in one hunk, compare each deleted unit only with inserted
# units near its relative position, so that a rewritten policy stays fast.
_HUNK_FULL_PAIRS = 10_000
_HUNK_BAND = 40
# Move candidates looked at per inserted unit (bounds the cost of repeated boilerplate).
_MAX_CANDIDATES = 64

_OP_DELETE, _OP_EQUAL, _OP_INSERT = -1, 0, 1

# --------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------

_BLOCK_SEP = re.compile(r"\n[ \t]*\n+")
# A candidate sentence end: terminal punctuation, optional closing quotes/brackets, whitespace.
_SENTENCE_END = re.compile(r"[.?!…][\"'”’»)\]]*\s+")
_OPENERS = "\"'“‘«([¿¡"
# Lower-cased words after which a full stop does not end a sentence.
_ABBREVIATIONS = frozenset(
    {
        "e.g.",
        "i.e.",
        "etc.",
        "inc.",
        "ltd.",
        "art.",
        "arts.",
        "no.",
        "nos.",
        "nr.",
        "mr.",
        "mrs.",
        "ms.",
        "dr.",
        "prof.",
        "st.",
        "u.s.",
        "u.k.",
        "vs.",
        "cf.",
        "incl.",
        "approx.",
        "co.",
        "corp.",
        "llc.",
        "sec.",
        "para.",
        "par.",
        "p.",
        "pp.",
        "ca.",
        "fig.",
        "resp.",
        "z.b.",
        "bzw.",
        "ggf.",
        "abs.",
        "gem.",
        "vgl.",
        "usw.",
        "d.h.",
        "s.",
        "ex.",
        "cfr.",
        "ecc.",
    }
)


class DiffMemo:
    """What diffing a chain of versions can reuse from one diff to the next: the units of a
    block of text (:func:`split_units`) and the words of a unit (the similarity of units).
    Both are pure functions of their text, so a diff with a memo is the diff without one.
    Bounded: past ``max_entries`` texts each, a table is emptied and starts over."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self.blocks: dict[str, list[str]] = {}
        self.words: dict[str, tuple[list[str], frozenset[str]]] = {}

    def clear(self) -> None:
        self.blocks.clear()
        self.words.clear()

    def units_of(self, raw: str) -> list[str]:
        got = self.blocks.get(raw)
        if got is None:
            if len(self.blocks) >= self.max_entries:
                self.blocks.clear()
            got = self.blocks[raw] = _block_units(raw)
        return got

    def words_of(self, unit: str) -> tuple[list[str], frozenset[str]]:
        got = self.words.get(unit)
        if got is None:
            if len(self.words) >= self.max_entries:
                self.words.clear()
            w = _words(unit)
            got = self.words[unit] = (w, frozenset(w))
        return got


def split_units(text: str, memo: DiffMemo | None = None) -> list[str]:
    """Split normalised block text into diff units (``memo``: see :class:`DiffMemo`).

    Headings are one unit each. Paragraphs and list items are split into sentences; the first
    sentence of a list item keeps its ``- `` marker so a unit still says what it was. Sentence
    ends are ``.``/``?``/``!`` followed by an upper-case letter, a digit or an opening quote,
    except after common abbreviations (``e.g.``, ``Inc.``, ``Art.`` ...), dotted initials
    (``U.S.``) and a lone enumerator (``1.``, ``a.``).
    """
    # Each block splits on its own, so a memo can keep a block's units: consecutive versions
    # share most blocks verbatim.
    units_of = memo.units_of if memo is not None else _block_units
    out: list[str] = []
    for raw in _BLOCK_SEP.split(text.strip()):
        out.extend(units_of(raw))
    return out


def _block_units(raw: str) -> list[str]:
    """The units of one block (a piece of ``_BLOCK_SEP.split``): split_units, per block."""
    out: list[str] = []
    for line in _block_lines(raw):
        if line.startswith("#") or len(line) < _MIN_SPLIT:
            out.append(line)
        else:
            out.extend(_sentences(line))
    return out


def _block_lines(raw: str) -> Iterator[str]:
    if "\n" not in raw:  # the usual block, one line: the loop below, without the loop
        line = " ".join(raw.split())
        if line:
            yield line
        return
    # Tolerate list items and headings on consecutive lines without the blank line; a
    # heading is always one line.
    current: list[str] = []
    for line in raw.split("\n"):
        line = " ".join(line.split())
        if line.startswith(("#", "- ")) and current:
            yield " ".join(current)
            current = []
        if line:
            current.append(line)
        if line.startswith("#"):
            yield " ".join(current)
            current = []
    if current:
        yield " ".join(current)


# Blocks shorter than this are one unit.
_MIN_SPLIT = 40


def _sentences(block: str) -> list[str]:
    if len(block) < _MIN_SPLIT:
        return [block]
    out: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(block):
        end = m.end()
        if end >= len(block):
            break
        nxt = block[end]
        if not (nxt.isupper() or nxt.isdigit() or nxt in _OPENERS):
            continue
        stop = m.start() + 1
        if block[stop - 1] == "." and not _ends_sentence(block, start, stop):
            continue
        out.append(block[start:stop] + m.group()[1:].rstrip())
        start = end
    out.append(block[start:])
    return out


def _ends_sentence(block: str, start: int, stop: int) -> bool:
    """Whether the full stop at ``block[stop - 1]`` ends the sentence begun at ``start``."""
    sp = block.rfind(" ", start, stop)
    last = block[sp + 1 if sp >= 0 else start : stop].lstrip(_OPENERS)
    if last.lower() in _ABBREVIATIONS:
        return False
    # Dotted initials and abbreviations not in the list: "U.S.", "a.m.", "S.A.".
    if "." in last[:-1]:
        return False
    # "1. Introduction", "a. Data we collect", "- 2. ..." are enumerators, not sentences.
    return sp > start and not (sp == start + 1 and block[start] == "-")


# --------------------------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Hunk:
    """A run of deleted and inserted units between two equal runs."""

    dels: list[int] = field(default_factory=list)  # old indices
    ins: list[int] = field(default_factory=list)  # new indices


def _encode(units: Sequence[str], table: dict[str, str]) -> str:
    """One character per distinct unit (token), so a character diff is a unit diff."""
    chars = []
    for u in units:
        c = table.get(u)
        if c is None:
            c = table[u] = _char(len(table))
        chars.append(c)
    return "".join(chars)


def _char(n: int) -> str:
    # Skip the surrogate range so the string stays valid if anyone ever encodes it.
    n += 0x100
    if n >= 0xD800:
        n += 0x800
    return chr(n)


# A unit weighs one character per this many characters of text (at most _MAX_WEIGHT), so that
# when a paragraph swaps places with a sentence, the alignment keeps the longer text in place
# and reports the shorter one as moved.
_WEIGHT_CHARS = 40
_MAX_WEIGHT = 6
_MAX_CODES = 0x10FFFF - 0x100 - 0x800


def _align(old: Sequence[str], new: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs ``(old index, new index)`` of equal units, increasing in both.

    Each distinct unit becomes a run of private characters (its weight), then:
    diff-match-patch (an optimal, Myers diff) when few units differ, because its cost grows
    with the number of differences; difflib's longest-block matcher otherwise, and whenever
    dmp runs out of time (its timeout answer is "delete all, insert all" for the region).
    """
    table: dict[str, str] = {}
    n_codes = 0
    codes: tuple[list[str], list[str]] = ([], [])  # the code of every unit
    for units, out in zip((old, new), codes, strict=True):
        for u in units:
            code = table.get(u)
            if code is None:
                weight = min(_MAX_WEIGHT, 1 + len(u) // _WEIGHT_CHARS)
                if n_codes + weight > _MAX_CODES:
                    weight = 1  # absurdly many distinct units: alignment stays correct, unweighted
                code = table[u] = _codes(n_codes, weight)
                n_codes += weight
            out.append(code)
    if _differing_chars(old, new, table) <= _DMP_MAX_DIFF:
        a, b = "".join(codes[0]), "".join(codes[1])
        dmp = diff_match_patch()
        dmp.Diff_Timeout = ALIGN_TIMEOUT
        deadline = time.time() + ALIGN_TIMEOUT
        diffs = dmp.diff_main(a, b, False, deadline)
        if time.time() < deadline:
            return _equal_pairs(_dmp_blocks(diffs), codes)
    return [(i + t, j + t) for i, j, n in _matching_runs(codes[0], codes[1]) for t in range(n)]


def _matching_runs(a: Sequence[str], b: Sequence[str]) -> list[tuple[int, int, int]]:
    """``difflib.SequenceMatcher(None, "".join(a), "".join(b), autojunk=False)``'s matching
    blocks, computed on the codes instead of their characters: ``(i, j, n)`` for units
    ``a[i:i + n] == b[j:j + n]``, sorted.

    The same blocks: a code's characters occur in no other code, so a longest matching block
    of the characters (maximal, in a window whose ends are unit ends) always starts and ends
    at unit ends, and the characters' dynamic programme is this one with each unit's weight
    (its code's length) for length; the blocks difflib prefers among equally long ones (the
    earliest in ``a``, then in ``b``) are also first here, as units and characters come in
    the same order. One step per unit instead of one per character (a unit weighs up to
    six): most of the time of aligning a rewritten policy."""
    b2j: dict[str, list[int]] = {}
    for j, code in enumerate(b):
        b2j.setdefault(code, []).append(j)
    # weight of a[i:k] = size[k] - size[i]
    size = [0, *itertools.accumulate(map(len, a))]
    nothing: list[int] = []
    blocks: list[tuple[int, int, int]] = []
    queue = [(0, len(a), 0, len(b))]
    while queue:
        alo, ahi, blo, bhi = queue.pop()
        # difflib's find_longest_match (without junk), per unit: j2len[j] is the number of
        # units of the matching run ending at a[i - 1], b[j].
        besti, bestj, bestn, best = alo, blo, 0, 0
        j2len: dict[int, int] = {}
        for i in range(alo, ahi):
            j2lenget = j2len.get
            newj2len: dict[int, int] = {}
            for j in b2j.get(a[i], nothing):
                if j < blo:
                    continue
                if j >= bhi:
                    break
                n = newj2len[j] = j2lenget(j - 1, 0) + 1
                weight = size[i + 1] - size[i + 1 - n]
                if weight > best:
                    besti, bestj, bestn, best = i - n + 1, j - n + 1, n, weight
            j2len = newj2len
        if bestn:
            blocks.append((besti, bestj, bestn))
            if alo < besti and blo < bestj:
                queue.append((alo, besti, blo, bestj))
            if besti + bestn < ahi and bestj + bestn < bhi:
                queue.append((besti + bestn, ahi, bestj + bestn, bhi))
    blocks.sort()
    return blocks


# The code characters in order (see _char), sliced for the weighted codes of the first units:
# building each code character by character was a large part of an alignment.
_ALPHABET = "".join(map(chr, range(0x100, 0xD800)))


def _codes(n: int, weight: int) -> str:
    """The code of the unit whose characters start at number ``n``: ``weight`` characters."""
    if n + weight <= len(_ALPHABET):
        return _ALPHABET[n : n + weight]
    return "".join(_char(n + t) for t in range(weight))


def _differing_chars(old: Sequence[str], new: Sequence[str], table: dict[str, str]) -> int:
    """A lower bound of the edit distance of the encoded texts: characters not shared as a
    multiset. Counted per distinct unit (its code characters occur nowhere else), which is
    the same number as counting characters, for a fraction of the work."""
    count_old, count_new = Counter(old), Counter(new)
    total = 0
    for u, n in count_old.items():
        total += len(table[u]) * abs(n - count_new.get(u, 0))
    for u, n in count_new.items():
        if u not in count_old:
            total += len(table[u]) * n
    return total


def _dmp_blocks(diffs: Sequence[tuple[int, str]]) -> list[tuple[int, int, int]]:
    blocks = []
    p = q = 0
    for op, chars in diffs:
        n = len(chars)
        if op == _OP_EQUAL:
            blocks.append((p, q, n))
            p += n
            q += n
        elif op == _OP_DELETE:
            p += n
        else:
            q += n
    return blocks


def _equal_pairs(
    blocks: Sequence[tuple[int, int, int]], codes: tuple[list[str], list[str]]
) -> list[tuple[int, int]]:
    # A unit is equal only when all its characters matched the same new unit; a partial match
    # (possible between repeated identical units) counts as delete + insert. Matched characters
    # are counted per run of one old and one new unit, not one by one.
    owners: list[list[int]] = []  # unit index of every encoded character
    starts: list[list[int]] = []  # offset of every unit's code, and the end
    for side in codes:
        owner: list[int] = []
        start = [0]
        pos = 0
        for idx, code in enumerate(side):
            owner.extend([idx] * len(code))
            pos += len(code)
            start.append(pos)
        owners.append(owner)
        starts.append(start)
    owner_a, owner_b = owners
    start_a, start_b = starts
    old_codes = codes[0]
    matched: dict[tuple[int, int], int] = {}
    for p, q, n in blocks:
        end = p + n
        while p < end:
            i, j = owner_a[p], owner_b[q]
            run = min(end - p, start_a[i + 1] - p, start_b[j + 1] - q)
            matched[i, j] = matched.get((i, j), 0) + run
            p += run
            q += run
    return [(i, j) for (i, j), n in matched.items() if n == len(old_codes[i])]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


_WORD = re.compile(r"\w+|[^\w\s]")


class _Similarity:
    """Word-level similarity (difflib ratio over words), cached per unit.

    Most pairs compared are unrelated, so cheap filters come first: the length bound, then the
    Dice coefficient of the word sets (C-level set operations). The set filter is a heuristic,
    with a margin, not a strict bound: words repeated many times inside one unit can make the
    ratio exceed it, which policy sentences do not do.
    """

    _SET_MARGIN = 0.15

    def __init__(
        self, old: Sequence[str], new: Sequence[str], memo: DiffMemo | None = None
    ) -> None:
        self._old = old
        self._new = new
        self._memo = memo
        self._old_words: dict[int, list[str]] = {}
        self._new_words: dict[int, list[str]] = {}
        self._old_sets: dict[int, frozenset[str]] = {}
        self._new_sets: dict[int, frozenset[str]] = {}
        self._matchers: dict[int, difflib.SequenceMatcher[str]] = {}

    def old_words(self, i: int) -> list[str]:
        w = self._old_words.get(i)
        if w is None:
            if self._memo is not None:
                w, self._old_sets[i] = self._memo.words_of(self._old[i])
                self._old_words[i] = w
                return w
            w = self._old_words[i] = _words(self._old[i])
            self._old_sets[i] = frozenset(w)
        return w

    def new_words(self, j: int) -> list[str]:
        w = self._new_words.get(j)
        if w is None:
            if self._memo is not None:
                w, self._new_sets[j] = self._memo.words_of(self._new[j])
                self._new_words[j] = w
                return w
            w = self._new_words[j] = _words(self._new[j])
            self._new_sets[j] = frozenset(w)
        return w

    def old_set(self, i: int) -> frozenset[str]:
        self.old_words(i)
        return self._old_sets[i]

    def new_set(self, j: int) -> frozenset[str]:
        self.new_words(j)
        return self._new_sets[j]

    def ratio(self, i: int, j: int, floor: float) -> float:
        """Similarity of old unit ``i`` and new unit ``j``; 0.0 when below ``floor``."""
        a, b = self.old_words(i), self.new_words(j)
        la, lb = len(a), len(b)
        if not la or not lb:
            return 1.0 if la == lb else 0.0
        if 2.0 * min(la, lb) / (la + lb) < floor:
            return 0.0
        sa, sb = self._old_sets[i], self._new_sets[j]
        if 2.0 * len(sa & sb) / (len(sa) + len(sb)) < floor - self._SET_MARGIN:
            return 0.0
        sm = self._matchers.get(j)
        if sm is None:
            # difflib caches its index of the second sequence: keep one matcher per new unit.
            sm = self._matchers[j] = difflib.SequenceMatcher(None, b=b, autojunk=False)
        sm.set_seq1(a)
        if sm.quick_ratio() < floor:
            return 0.0
        r = sm.ratio()
        return r if r >= floor else 0.0


def _pair_moves(
    old: Sequence[str],
    new: Sequence[str],
    hunks: list[_Hunk],
    sim: _Similarity,
) -> tuple[dict[int, int], dict[int, int]]:
    """Pair deleted and inserted units that are (nearly) the same text, anywhere.

    Returns ``(same_hunk, moved)``, both old index -> new index. A near-identical pair inside
    one hunk is an in-place edit, not a move.
    """
    hunk_of_old = {i: h for h, hk in enumerate(hunks) for i in hk.dels}
    hunk_of_new = {j: h for h, hk in enumerate(hunks) for j in hk.ins}
    if not hunk_of_old or not hunk_of_new:
        return {}, {}

    candidates: list[tuple[float, int, int]] = []
    # Exact matches by text; duplicates pair in order so repeated boilerplate stays local.
    by_text: dict[str, list[int]] = defaultdict(list)
    for i in sorted(hunk_of_old):
        by_text[old[i]].append(i)
    n_old, n_new = max(len(old), 1), max(len(new), 1)
    for j in sorted(hunk_of_new):
        same_text = by_text.get(new[j], [])
        if len(same_text) > _MAX_CANDIDATES:
            # Boilerplate repeated many times: only the copies nearest in relative position.
            same_text = sorted(same_text, key=lambda i: abs(i / n_old - j / n_new))
            same_text = same_text[:_MAX_CANDIDATES]
        candidates.extend((2.0, i, j) for i in same_text)

    # Near matches: any pair at >= MOVED_THRESHOLD shares most words, so it shares at least one
    # of the rarest words of the inserted unit; looking only there keeps this near-linear.
    df: Counter[str] = Counter()
    old_len: dict[int, int] = {}
    old_set: dict[int, frozenset[str]] = {}
    for i in hunk_of_old:
        old_len[i], old_set[i] = len(sim.old_words(i)), sim.old_set(i)
        df.update(old_set[i])
    # Per inserted unit, its (at most 3) rarest words that are rare enough to look up: a
    # word in more than _MAX_CANDIDATES old units stops the search (all the unit's words are
    # common: it is boilerplate, not a moved clause), and so do the rarer-first ones after it.
    lookups: list[tuple[int, list[str]]] = []
    for j in hunk_of_new:
        # the 3 rarest (keys are unique: the same as sorted(...)[:3])
        rare = heapq.nsmallest(3, sim.new_set(j) & df.keys(), key=lambda w: (df[w], w))
        lookups.append((j, list(itertools.takewhile(lambda w: df[w] <= _MAX_CANDIDATES, rare))))
    wanted = {w for _, words in lookups for w in words}
    index: dict[str, list[int]] = defaultdict(list)  # only the words looked up
    for i in hunk_of_old:
        for w in old_set[i] & wanted:
            index[w].append(i)
    # ratio()'s length and word-set filters, inline as in _pair_in_hunk (both units have the
    # word w: neither is empty, so the filters apply as they are).
    floor, set_floor = MOVED_THRESHOLD, MOVED_THRESHOLD - _Similarity._SET_MARGIN
    for j, rare in lookups:
        words = sim.new_set(j)
        lb, n_words, nj = len(sim.new_words(j)), len(words), new[j]
        seen: set[int] = set()
        for w in rare:
            for i in index[w]:
                if i in seen or old[i] == nj:
                    continue
                seen.add(i)
                la = old_len[i]
                if 2.0 * (la if la < lb else lb) / (la + lb) < floor:
                    continue
                sa = old_set[i]
                if 2.0 * len(sa & words) / (len(sa) + n_words) < set_floor:
                    continue
                r = sim.ratio(i, j, MOVED_THRESHOLD)
                if r:
                    candidates.append((r, i, j))

    # Greedy by similarity, then by closeness of relative position.
    candidates.sort(key=lambda c: (-c[0], abs(c[1] / n_old - c[2] / n_new), c[1], c[2]))
    used_old: set[int] = set()
    used_new: set[int] = set()
    same: dict[int, int] = {}
    moved: dict[int, int] = {}
    for _, i, j in candidates:
        if i in used_old or j in used_new:
            continue
        used_old.add(i)
        used_new.add(j)
        (same if hunk_of_old[i] == hunk_of_new[j] else moved)[i] = j
    return same, moved


def _pair_in_hunk(
    hunk: _Hunk, sim: _Similarity, taken_old: set[int], taken_new: set[int]
) -> dict[int, int]:
    """Order-preserving pairing of similar units within one hunk with the largest total
    similarity (old index -> new index)."""
    dels = [i for i in hunk.dels if i not in taken_old]
    ins = [j for j in hunk.ins if j not in taken_new]
    if not dels or not ins:
        return {}
    nd, ni = len(dels), len(ins)
    banded = nd * ni > _HUNK_FULL_PAIRS
    # Similar pairs are few, so the chain is computed over them only (sparse weighted LCS).
    cands: list[tuple[int, int, float]] = []
    # ratio()'s length and word-set filters, inline: ~95% of the pairs stop there, and the
    # calls were most of the cost of this loop. Same expressions as in ratio(), so the same
    # answers (keep them in step).
    floor, set_floor = MODIFIED_THRESHOLD, MODIFIED_THRESHOLD - _Similarity._SET_MARGIN
    ins_len = [len(sim.new_words(j)) for j in ins]
    ins_set = [sim.new_set(j) for j in ins]
    ins_set_len = [len(w) for w in ins_set]
    for x, i in enumerate(dels):
        if banded:
            centre = x * ni // nd
            lo, hi = max(0, centre - _HUNK_BAND), min(ni, centre + _HUNK_BAND + 1)
        else:
            lo, hi = 0, ni
        la, sa = len(sim.old_words(i)), sim.old_set(i)
        n_sa = len(sa)
        for y in range(lo, hi):
            lb = ins_len[y]
            if la and lb:
                if 2.0 * (la if la < lb else lb) / (la + lb) < floor:
                    continue
                if 2.0 * len(sa & ins_set[y]) / (n_sa + ins_set_len[y]) < set_floor:
                    continue
            s = sim.ratio(i, ins[y], floor)
            if s:
                cands.append((x, y, s))
    if not cands:
        return {}
    # Heaviest chain increasing in x and y: by x, and by y descending within one x so that two
    # candidates of the same deleted unit never chain; a Fenwick tree gives the best chain
    # ending below each y.
    cands.sort(key=lambda c: (c[0], -c[1]))
    tree_val = [0.0] * (ni + 1)
    tree_arg = [-1] * (ni + 1)
    total = [0.0] * len(cands)
    prev = [-1] * len(cands)
    for k, (_, y, s) in enumerate(cands):
        best, arg = 0.0, -1
        p = y  # prefix query over positions < y (1-based y means positions 1..y)
        while p > 0:
            if tree_val[p] > best:
                best, arg = tree_val[p], tree_arg[p]
            p -= p & -p
        total[k], prev[k] = best + s, arg
        p = y + 1
        while p <= ni:
            if total[k] > tree_val[p]:
                tree_val[p], tree_arg[p] = total[k], k
            p += p & -p
    k = max(range(len(cands)), key=total.__getitem__)
    pairs: dict[int, int] = {}
    while k >= 0:
        x, y, _ = cands[k]
        pairs[dels[x]] = ins[y]
        k = prev[k]
    return pairs


# --------------------------------------------------------------------------------------------
# Word-level diff
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def _word_ops(old: str, new: str) -> list[tuple[int, str]]:
    """diff-match-patch over word tokens, so that no op ever splits a word."""
    table: dict[str, str] = {}
    ta, tb = _TOKEN.findall(old), _TOKEN.findall(new)
    a, b = _encode(ta, table), _encode(tb, table)
    back = {c: t for t, c in table.items()}
    dmp = diff_match_patch()
    dmp.Diff_Timeout = WORD_DIFF_TIMEOUT
    diffs = dmp.diff_main(a, b, False)
    dmp.diff_cleanupSemantic(diffs)
    out: list[tuple[int, str]] = []
    for op, chars in diffs:
        s = "".join(back[c] for c in chars)
        if not s:
            continue
        if out and out[-1][0] == op:
            out[-1] = (op, out[-1][1] + s)
        else:
            out.append((op, s))
    return out


# --------------------------------------------------------------------------------------------
# Public diff
# --------------------------------------------------------------------------------------------


def diff_texts(old: str, new: str) -> DiffResult:
    """Align the units of two texts and diff the changed ones word by word.

    ``changes`` holds every unit, EQUAL ones included, in new-document order; a REMOVED unit
    sits where it was relative to its old neighbours, and a MOVED unit at its new position.
    """
    return diff_units(split_units(old), split_units(new))


def diff_counts(old: str, new: str) -> dict[str, int]:
    """``diff_texts(old, new).counts()`` without the word-level diffs, which the counts do
    not depend on (they were most of the cost of a change record)."""
    return diff_unit_counts(split_units(old), split_units(new))


def diff_units(
    a: Sequence[str], b: Sequence[str], *, word_ops: bool = True, memo: DiffMemo | None = None
) -> DiffResult:
    """:func:`diff_texts` over texts already split by :func:`split_units` (a caller diffing a
    chain of versions splits each text once). ``word_ops=False`` leaves every ``ops`` empty:
    same units, kinds and pairs, without the word-level diffs. ``memo``: see
    :class:`DiffMemo` (the same result)."""
    segments, modified, moved = _pairing(a, b, memo)
    new_to_old = {v: k for k, v in modified.items()}
    moved_new_to_old = {v: k for k, v in moved.items()}

    def unit_change(kind: ChangeKind, oi: int | None, nj: int | None) -> UnitChange:
        ot = a[oi] if oi is not None else None
        nt = b[nj] if nj is not None else None
        change_ops: list[tuple[int, str]] = []
        if word_ops and ot is not None and nt is not None and ot != nt:
            change_ops = _word_ops(ot, nt)
        return UnitChange(kind, oi, nj, ot, nt, change_ops)

    changes: list[UnitChange] = []
    for seg in segments:
        if isinstance(seg, tuple):
            changes.append(unit_change(ChangeKind.EQUAL, *seg))
            continue
        hunk = seg
        pending = [x for x in hunk.dels if x not in modified and x not in moved]
        # For each insertion, the old index of the next in-place pair at or after it: removed
        # units before that index come first, as in a unified diff.
        next_paired: list[int | None] = [None] * len(hunk.ins)
        nxt: int | None = None
        for k in range(len(hunk.ins) - 1, -1, -1):
            nxt = new_to_old.get(hunk.ins[k], nxt)
            next_paired[k] = nxt
        p = 0
        for k, y in enumerate(hunk.ins):
            limit = next_paired[k]
            while p < len(pending) and (limit is None or pending[p] < limit):
                changes.append(unit_change(ChangeKind.REMOVED, pending[p], None))
                p += 1
            paired = new_to_old.get(y)
            if paired is not None:
                kind = ChangeKind.EQUAL if a[paired] == b[y] else ChangeKind.MODIFIED
                changes.append(unit_change(kind, paired, y))
            elif y in moved_new_to_old:
                changes.append(unit_change(ChangeKind.MOVED, moved_new_to_old[y], y))
            else:
                changes.append(unit_change(ChangeKind.ADDED, None, y))
        changes.extend(unit_change(ChangeKind.REMOVED, x, None) for x in pending[p:])
    return DiffResult(changes)


def diff_unit_counts(
    a: Sequence[str], b: Sequence[str], memo: DiffMemo | None = None
) -> dict[str, int]:
    """``diff_units(a, b, word_ops=False).counts()`` without building the changes: the same
    pairing, counted (every equal pair; in each hunk, every unpaired deletion as removed and
    every insertion by what it pairs with, in the precedence of diff_units)."""
    segments, modified, moved = _pairing(a, b, memo)
    new_to_old = {v: k for k, v in modified.items()}
    moved_new = set(moved.values())
    equal = modified_n = moved_n = added = removed = 0
    for seg in segments:
        if isinstance(seg, tuple):
            equal += 1
            continue
        removed += sum(1 for x in seg.dels if x not in modified and x not in moved)
        for y in seg.ins:
            paired = new_to_old.get(y)
            if paired is not None:
                if a[paired] == b[y]:
                    equal += 1
                else:
                    modified_n += 1
            elif y in moved_new:
                moved_n += 1
            else:
                added += 1
    out = {k.value: 0 for k in ChangeKind}
    out[ChangeKind.EQUAL.value] = equal
    out[ChangeKind.MODIFIED.value] = modified_n
    out[ChangeKind.MOVED.value] = moved_n
    out[ChangeKind.ADDED.value] = added
    out[ChangeKind.REMOVED.value] = removed
    return out


def _pairing(
    a: Sequence[str], b: Sequence[str], memo: DiffMemo | None
) -> tuple[list[tuple[int, int] | _Hunk], dict[int, int], dict[int, int]]:
    """The document as a sequence of equal pairs and hunks (the units between two equal
    pairs), the in-hunk pairs (old -> new: MODIFIED, or EQUAL when the texts are the same)
    and the moves (old -> new)."""
    segments: list[tuple[int, int] | _Hunk] = []
    hunks: list[_Hunk] = []
    i = j = 0
    for x, y in [*_align(a, b), (len(a), len(b))]:
        if x > i or y > j:
            hunk = _Hunk(list(range(i, x)), list(range(j, y)))
            hunks.append(hunk)
            segments.append(hunk)
        if x < len(a):
            segments.append((x, y))
        i, j = x + 1, y + 1

    sim = _Similarity(a, b, memo)
    same, moved = _pair_moves(a, b, hunks, sim)
    modified: dict[int, int] = dict(same)
    taken_old = set(same) | set(moved)
    taken_new = set(same.values()) | set(moved.values())
    for hunk in hunks:
        modified.update(_pair_in_hunk(hunk, sim, taken_old, taken_new))
    return segments, modified, moved


_SUMMARY_KINDS = ("added", "removed", "modified", "moved", "equal")


def diff_to_json(result: DiffResult) -> dict[str, Any]:
    """JSON-ready dict: ``summary`` counts of every kind, ``changes`` without EQUAL units."""
    counts = result.counts()
    return {
        "summary": {k: counts[k] for k in _SUMMARY_KINDS},
        "changes": [
            {
                "kind": c.kind.value,
                "old_index": c.old_index,
                "new_index": c.new_index,
                "old_text": c.old_text,
                "new_text": c.new_text,
                "ops": [[op, s] for op, s in c.ops],
            }
            for c in result.changes
            if c.kind != ChangeKind.EQUAL
        ],
    }


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Gap:
    """Unchanged units left out of the rendering (shown as ``...`` or collapsed)."""

    units: list[UnitChange]


def _layout(changes: Sequence[UnitChange], context: int) -> list[UnitChange | _Gap]:
    """Changes with ``context`` equal units around each, the other equal runs as gaps."""
    context = max(context, 0)
    keep = [c.kind != ChangeKind.EQUAL for c in changes]
    shown = list(keep)
    for k, changed in enumerate(keep):
        if changed:
            for m in range(max(0, k - context), min(len(changes), k + context + 1)):
                shown[m] = True
    out: list[UnitChange | _Gap] = []
    for c, s in zip(changes, shown, strict=True):
        if s:
            out.append(c)
        elif out and isinstance(out[-1], _Gap):
            out[-1].units.append(c)
        else:
            out.append(_Gap([c]))
    return out


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _clean(text: str) -> str:
    # Policy text is untrusted: an ESC in it must not drive the reader's terminal.
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


_RESET = "\x1b[0m"
_STYLE = {
    "header": "\x1b[36m",
    "equal": "\x1b[2m",
    "removed": "\x1b[31m",
    "added": "\x1b[32m",
    "moved": "\x1b[33m",
    "del": "\x1b[9;31m",
    "ins": "\x1b[1;32m",
}


def render_text(result: DiffResult, *, color: bool = False, context: int = 1) -> str:
    """Unified-diff-like rendering for a terminal.

    One header line per change (``@@ -#old +#new kind @@``, 1-based unit numbers), then the
    unit: ``- `` removed, ``+ `` added, ``! `` modified with inline ``[-deleted-]{+inserted+}``
    (ANSI red/green instead when ``color``), ``~ `` moved. ``context`` unchanged units around
    each change are shown indented by two spaces; ``...`` stands for the ones left out.
    """

    def paint(style: str, text: str) -> str:
        return f"{_STYLE[style]}{text}{_RESET}" if color else text

    def inline(ops: Sequence[tuple[int, str]]) -> str:
        parts = []
        for op, s in ops:
            s = _clean(s)
            if op == _OP_DELETE:
                parts.append(paint("del", s) if color else f"[-{s}-]")
            elif op == _OP_INSERT:
                parts.append(paint("ins", s) if color else f"{{+{s}+}}")
            else:
                parts.append(s)
        return "".join(parts)

    if not result.changed:
        return "No changes.\n"
    lines: list[str] = []
    for item in _layout(result.changes, context):
        if isinstance(item, _Gap):
            lines.append(paint("equal", "..."))
            continue
        c = item
        old_no = None if c.old_index is None else c.old_index + 1
        new_no = None if c.new_index is None else c.new_index + 1
        if c.kind == ChangeKind.EQUAL:
            lines.append(paint("equal", "  " + _clean(c.new_text or "")))
        elif c.kind == ChangeKind.REMOVED:
            lines.append(paint("header", f"@@ -#{old_no} removed @@"))
            lines.append(paint("removed", "- " + _clean(c.old_text or "")))
        elif c.kind == ChangeKind.ADDED:
            lines.append(paint("header", f"@@ +#{new_no} added @@"))
            lines.append(paint("added", "+ " + _clean(c.new_text or "")))
        elif c.kind == ChangeKind.MODIFIED:
            lines.append(paint("header", f"@@ -#{old_no} +#{new_no} modified @@"))
            lines.append("! " + inline(c.ops))
        else:
            edited = " (edited)" if c.ops else ""
            lines.append(paint("moved", f"~ moved from #{old_no} to #{new_no}{edited}"))
            body = inline(c.ops) if c.ops else _clean(c.new_text or "")
            lines.append(paint("moved", "~ ") + body)
    return "\n".join(lines) + "\n"


@functools.cache
def _environment() -> Environment:
    # One per process: a report renders hundreds of diff pages, and compiling the template
    # again for each was a third of a page's time.
    return Environment(
        autoescape=True,
        loader=PackageLoader("monitor", "templates"),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _safe_url(url: str | None) -> str | None:
    # Only web links become hrefs: a "javascript:" URL from a config file must not be clickable.
    if url and re.match(r"(?i)https?://", url):
        return url
    return None


def diff_view(result: DiffResult, *, context: int = 1) -> dict[str, Any]:
    """Template data for ``_diff_body.html`` (the variable ``diff``), for pages that embed a
    diff. Unit numbers are 1-based; all text is plain and left for autoescape."""

    def unit(c: UnitChange) -> dict[str, Any]:
        text = c.new_text if c.new_text is not None else c.old_text
        return {
            "kind": c.kind.value,
            "old_no": None if c.old_index is None else c.old_index + 1,
            "new_no": None if c.new_index is None else c.new_index + 1,
            "text": text or "",
            "heading": (text or "").startswith("#"),
            "ops": [{"op": op, "text": s} for op, s in c.ops],
        }

    items: list[dict[str, Any]] = []
    for item in _layout(result.changes, context):
        if isinstance(item, _Gap):
            items.append({"kind": "gap", "units": [unit(u) for u in item.units]})
        else:
            items.append(unit(item))
    counts = result.counts()
    summary = {k: counts[k] for k in _SUMMARY_KINDS}
    return {"summary": summary, "changed": result.changed, "items": items}


def render_html(
    result: DiffResult,
    *,
    title: str,
    old_label: str,
    new_label: str,
    source_url: str | None = None,
) -> str:
    """A self-contained HTML page (inline CSS, no script, no external resources)."""
    template = _environment().get_template("diff.html")
    return template.render(
        title=title,
        old_label=old_label,
        new_label=new_label,
        source_url=_safe_url(source_url),
        raw_source_url=source_url,
        diff=diff_view(result),
    )

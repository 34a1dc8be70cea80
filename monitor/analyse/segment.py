"""Segmentation of block text into units (sentences, list items with their lead-in).

Input is the normalised block text of :class:`monitor.models.Extracted` (blocks separated by a
blank line, ``# heading``, ``- item``, paragraphs); raw Markdown (setext headings, several
list items in one block, soft line breaks) and plain text are tolerated. Work is done with
regexes over blocks and lines; Python only loops over candidate sentence ends, never over
characters.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from monitor.models import Unit

_BLOCK_SEP = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")
# What joins a list item to its lead-in in ``Unit.text``: "<lead-in> — <item>".
LEAD_IN_JOIN = " — "
# One match per line. The three forms exclude each other (a setext underline has no space
# after its first "-", a heading starts with "#"), so their order only matters for speed.
_LINE = re.compile(
    r"(#{1,6})[ \t]+(.*?)[ \t#]*$"  # ATX heading: 1 = the hashes, 2 = the title
    r"|((?:=+|-{3,})[ \t]*$)"  # 3: a setext underline
    r"|[ \t]*(?:[-*+•·]|\d{1,3}[.)]|[a-z][.)])[ \t]+(?=\S)"  # a list item marker
)
_MD_DECOR = re.compile(r"\*\*|__|\[([^\]\n]*)\]\([^)\n]*\)")

# A sentence end: terminal punctuation (plus closing quotes/brackets) followed by space and
# something that can start a sentence.
# The lookahead captures the whitespace after the end, so the next sentence starts at
# ``m.end(1)`` without a character loop to trim it.
# An inline bullet after the end ("... filters. * With your consent, ...": list items of a
# table cell, joined on one line by extraction) belongs to that whitespace: the next
# sentence starts after it.
_AFTER_END = (
    r"[\"'”’»)\]]*(?=([ \t\n]+(?:[*•·–-][ \t]+)?)[\"'“‘«(\[¿¡*_]*([A-ZÀ-ÖØ-ÞĀ-ſΑ-ΩΆ-Ώ0-9]))"
)
_BOUNDARY = re.compile(r"[.!?…]+" + _AFTER_END)
# The same ends split by their first character: a pattern that starts with a literal is
# searched for at C speed, one that starts with a class is tried at every position (8x
# slower), so the rarer "!", "?" and "…" get their own pass, run only where they occur.
_END_PUNCT = ".!?…"
_DOT_BOUNDARY = re.compile(r"\.[.!?…]*" + _AFTER_END)
_RARE_BOUNDARY = re.compile(r"[!?…][.!?…]*" + _AFTER_END)
_DOTTED = re.compile(r"(?:\w\.)+\w?")

# Lower-cased tokens (with their final period) that never end a sentence.
_ABBREVIATIONS = frozenset(
    """
    e.g. i.e. etc. inc. ltd. co. corp. llc. plc. gmbh. s.a. s.l. s.r.l. b.v. n.v. ag.
    no. nos. nr. art. arts. para. paras. sec. secs. ss. cf. vs. v. viz. approx. incl. excl.
    mr. mrs. ms. dr. prof. st. jr. sr. fig. vol. pp. p. ch. ed. eds. ref. reg. dir. ibid.
    u.s. u.k. u.s.a. e.u. a.m. p.m. jan. feb. mar. apr. jun. jul. aug. sep. sept. oct. nov. dec.
    z.b. z. b. d.h. d. h. bzw. abs. ggf. vgl. u.a. usw. ca. s. nr. lit. bspw. inkl. evtl. gem. ziff.
    p.ex. ex. cf. ex. env. mme. mlle. m. al. av. chap. art. par. paragr.
    ecc. es. pag. sig. sigg. dott. ecc. cfr. n. c.d. d.lgs. lett. co.
    p.ej. ej. sr. sra. núm. pág. etc. arts. apdo. dña. d. ud. uds. vd.
    bijv. bv. o.a. m.b.t. nl. blz. nr. d.w.z. t.a.v. enz.
    np. tj. tzw. ust. pkt. itd. itp. zob. m.in. r. ok. ul. poz. dz.
    π.χ. κ.λπ. αρ. παρ.
    """.split()  # noqa: SIM905 - a word list is easier to extend as text
)


def _is_abbreviation(text: str, end: int) -> bool:
    """Is the period at ``text[end-1]`` part of an abbreviation or a legal reference?"""
    return _abbreviation_at_end(text[max(0, end - 16) : end])


@functools.lru_cache(maxsize=1 << 16)
def _abbreviation_at_end(window: str) -> bool:
    """:func:`_is_abbreviation` of the 16 characters up to the period (all it looks at;
    cached: sentence ends repeat, within a policy and across its versions)."""
    # The last whitespace-delimited token (a period is never whitespace, so there is one).
    token = window.rsplit(None, 1)[-1]
    token = token.lstrip("([\"'“‘«*_").lower()
    token = token.rsplit("'", 1)[-1].rsplit("’", 1)[-1]  # elision: l'art.
    if token in _ABBREVIATIONS:
        return True
    # German street names in addresses ("Goethestr. 12", "Hauptstr."): no sentence ends so
    if len(token) > 4 and token.endswith("str."):
        return True
    # Initials and dotted acronyms: "J.", "U.S.", "e.g." already covered, "A.I."
    core = token.rstrip(".")
    if len(core) == 1 and core.isalpha():
        return True
    return _DOTTED.fullmatch(token) is not None


def _boundaries(text: str, start: int, stop: int) -> list[re.Match[str]]:
    """The matches of ``_BOUNDARY.finditer(text, start, stop)``.

    A match of _BOUNDARY spans a whole run of end punctuation (a run's tail has the same
    lookahead as its head, so it cannot match where the head failed); each split pattern
    may also match inside a run that the other one starts, which is no match of _BOUNDARY.
    """
    ends = [
        m
        for m in _DOT_BOUNDARY.finditer(text, start, stop)
        if m.start() == start or text[m.start() - 1] not in _END_PUNCT
    ]
    if any(text.find(ch, start, stop) >= 0 for ch in "!?…"):
        rare = [
            m
            for m in _RARE_BOUNDARY.finditer(text, start, stop)
            if m.start() == start or text[m.start() - 1] not in _END_PUNCT
        ]
        if rare:
            ends = sorted(ends + rare, key=lambda m: m.start())
    return ends


# Months that follow a day ordinal ("ab 30. November 2018", "από 30. Νοεμβρίου"): capitalised
# in German and Greek, so the period after the day looks like a sentence end.
_MONTH_AFTER_DAY = re.compile(
    r"(?:Januar|Jänner|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|November"
    r"|Dezember|Ιανουαρίου|Φεβρουαρίου|Μαρτίου|Απριλίου|Μα[ΐι]ου|Ιουνίου|Ιουλίου|Αυγούστου"
    r"|Σεπτεμβρίου|Οκτωβρίου|Νοεμβρίου|Δεκεμβρίου)\b"
)


def _ends_sentence(text: str, m: re.Match[str]) -> bool:
    """Does the _BOUNDARY match ``m`` end a sentence? A lone period (not an ellipsis) may
    belong to an abbreviation or follow a day before its month; the match's lookahead
    guarantees a character after it."""
    p = m.start()
    if text[p] != "." or text[p + 1] == ".":
        return True
    if _is_abbreviation(text, p + 1):
        return False
    if text[p - 1 : p].isdigit() and (p < 3 or not text[p - 3].isdigit()):
        return _MONTH_AFTER_DAY.match(text, m.end(1)) is None
    return True


def _spans(
    text: str, start: int, stop: int, ends: Iterable[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Sentence spans of ``text[start:stop]`` cut at ``ends`` (sentence end, next start)."""
    spans: list[tuple[int, int]] = []
    s = start
    for e, nxt in ends:
        spans.append((s, e))
        s = nxt
    spans.append((s, stop))
    # A sentence between two ends starts after the whitespace the end's lookahead captured
    # and ends on punctuation: only the first start and the last end can carry whitespace.
    a, b = spans[0]
    while a < b and text[a].isspace():
        a += 1
    spans[0] = (a, b)
    a, b = spans[-1]
    while b > a and text[b - 1].isspace():
        b -= 1
    if b > a:
        spans[-1] = (a, b)
    else:
        spans.pop()
    return spans


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans ``(s, e)`` of ``text[start:end]`` (whitespace trimmed)."""
    stop = len(text) if end is None else end
    ends = [(m.end(), m.end(1)) for m in _boundaries(text, start, stop) if _ends_sentence(text, m)]
    return _spans(text, start, stop, ends)


class _DocEnds:
    """The sentence ends of a whole document, found in one pass, for its paragraphs.

    ``split_sentences(text, s, e)`` of a paragraph finds the same ends: no end's punctuation
    run crosses a paragraph start (whitespace or a list marker precedes it), and the only
    one whose lookahead can cross the paragraph's end is its last (the lookahead reaches the
    character that starts the next sentence, before the next end).
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.matches = _boundaries(text, 0, len(text))
        self.at = [m.start() for m in self.matches]

    def split(self, s: int, e: int) -> list[tuple[int, int]]:
        text, at = self.text, self.at
        lo = bisect_left(at, s)
        hi = bisect_left(at, e, lo)
        ends: list[tuple[int, int]] = []
        if hi > lo:
            found = self.matches[lo:hi]
            if found[-1].end(2) > e:
                found.pop()
            ends = [(m.end(), m.end(1)) for m in found if _ends_sentence(text, m)]
        if not ends and e > s and not text[s].isspace() and not text[e - 1].isspace():
            return [(s, e)]  # one sentence, nothing to trim: most paragraphs and items
        return _spans(text, s, e, ends)


class _BlockEnds:
    """:class:`_DocEnds` one paragraph at a time (the same ends, by its docstring)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def split(self, s: int, e: int) -> list[tuple[int, int]]:
        return split_sentences(self.text, s, e)


def _iter_blocks(text: str) -> Iterator[tuple[int, int]]:
    pos = 0
    for m in _BLOCK_SEP.finditer(text):
        yield pos, m.start()
        pos = m.end()
    yield pos, len(text)


def _clean(text: str) -> str:
    return text.replace("\n", " ")


def plain(text: str) -> str:
    """Unit text without Markdown emphasis/link decoration (for headings)."""
    return _MD_DECOR.sub(lambda m: m.group(1) or "", text).strip()


class _Segmenter:
    def __init__(self, text: str, whole: bool = True) -> None:
        self.text = text
        self.units: list[Unit] = []
        self.headings: list[tuple[int, str]] = []  # (level, title)
        self.path: tuple[str, ...] = ()
        self.lead_in: str | None = None
        self.block = 0  # index of the block (paragraph / list run) a unit belongs to
        self.blocks: list[int] = []
        # The whole document's sentence ends in one pass; without ``whole`` (a memo will
        # replay most blocks) each paragraph's, when it is segmented.
        self.ends: _DocEnds | _BlockEnds = _DocEnds(text) if whole else _BlockEnds(text)

    def heading(self, level: int, title: str) -> None:
        self.headings = [h for h in self.headings if h[0] < level]
        self.headings.append((level, plain(title)))
        self.path = tuple(t for _, t in self.headings)
        self.lead_in = None
        self.block += 1

    def paragraph(self, s: int, e: int) -> None:
        self.block += 1
        text, units, path = self.text, self.units, self.path
        sentences = self.ends.split(s, e)
        for a, b in sentences:
            units.append(Unit(len(units), _clean(text[a:b]), a, b, path))
        self.blocks.extend([self.block] * len(sentences))
        last = units[-1].text if sentences else ""
        self.lead_in = last if last.rstrip("*_ ").endswith(":") else None

    def item(self, s: int, e: int, new_list: bool) -> None:
        if new_list:
            self.block += 1
        text, units, path, lead_in = self.text, self.units, self.path, self.lead_in
        sentences = self.ends.split(s, e)
        for a, b in sentences:
            body = _clean(text[a:b])
            units.append(
                Unit(len(units), f"{lead_in}{LEAD_IN_JOIN}{body}" if lead_in else body, a, b, path)
            )
        self.blocks.extend([self.block] * len(sentences))

    def flush(self, kind: str, s: int, e: int, in_list: bool) -> bool:
        """Emit the pending list item or paragraph; whether a list is now open."""
        if kind == "item":
            self.item(s, e, not in_list)
            return True
        if kind == "para":
            self.paragraph(s, e)
            return False
        return in_list

    def block_lines(self, bs: int, be: int, in_list: bool) -> bool:
        """Segment the block ``text[bs:be]``; whether a list is open after it."""
        text = self.text
        line_match = _LINE.match
        # Group the block's lines into headings, list items and paragraphs: the pending
        # one is ``kind`` ("item", "para" or "" for none) over ``text[cs:ce]``.
        kind, cs, ce = "", 0, 0
        prev_ls = -1  # start of the previous line of the pending one (-1: none)
        ls = bs
        while True:
            le = text.find("\n", ls, be)
            last = le < 0
            if last:
                le = be
            if ls == le or (text[ls].isspace() and text[ls:le].isspace()):
                pass  # a blank line
            elif (m := line_match(text, ls, le)) is not None and m.group(1) is not None:
                in_list = self.flush(kind, cs, ce, in_list)
                kind = ""
                self.heading(len(m.group(1)), m.group(2))
                in_list = False
                prev_ls = -1
            elif m is not None and m.group(3) is not None and kind == "para" and cs == prev_ls:
                # A setext underline below a one-line paragraph: that line is a heading.
                self.heading(1 if text[ls] == "=" else 2, text[cs:ce])
                kind = ""
                in_list = False
                prev_ls = -1
            else:
                if m is not None and m.group(3) is None:  # a list item marker
                    in_list = self.flush(kind, cs, ce, in_list)
                    kind, cs, ce = "item", m.end(), le
                elif kind == "":
                    off = 0
                    if text[ls].isspace():
                        line = text[ls:le]
                        off = len(line) - len(line.lstrip())
                    kind, cs, ce = "para", ls + off, le
                else:
                    ce = le
                prev_ls = ls
            if last:
                break
            ls = le + 1
        return self.flush(kind, cs, ce, in_list)


def segment_with_blocks(text: str, memo: SegmentMemo | None = None) -> tuple[list[Unit], list[int]]:
    """Units plus, for each unit, the id of its block (paragraph or list run). ``memo``: see
    :class:`SegmentMemo` (the same result)."""
    seg = _Segmenter(text, whole=memo is None)
    in_list = False
    for bs, be in _iter_blocks(text):
        if memo is None:
            in_list = seg.block_lines(bs, be, in_list)
        else:
            in_list = memo.segment_block(seg, bs, be, in_list)
    return seg.units, seg.blocks


@dataclass(slots=True, frozen=True)
class _Replay:
    """What segmenting one block did, relative to where it started."""

    units: tuple[tuple[str, int, int, tuple[str, ...]], ...]  # text, start, end, path
    block_ids: tuple[int, ...]  # each unit's block id minus the id on entry
    advance: int  # blocks opened
    headed: bool  # it held a heading: its units' paths depend on the headings above it
    headings: tuple[tuple[int, str], ...]  # the state on exit (``headed`` only)
    path: tuple[str, ...]
    lead_in: str | None
    in_list: bool


_Key = tuple[str, str | None, bool]


class SegmentMemo:
    """Blocks already segmented, for the versions of one document (consecutive versions share
    most blocks verbatim). A block's units depend only on its text and on the state it
    starts in - a pending lead-in, an open list and, if it holds a heading, the headings above
    it - which are the key, so a replay is exactly what segmenting the block again gives.
    Bounded: past ``max_entries`` blocks the tables are emptied and start over."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self.blocks: dict[_Key, _Replay] = {}
        self.headed: dict[tuple[_Key, tuple[tuple[int, str], ...]], _Replay] = {}

    def clear(self) -> None:
        self.blocks.clear()
        self.headed.clear()

    def segment_block(self, seg: _Segmenter, bs: int, be: int, in_list: bool) -> bool:
        key = (seg.text[bs:be], seg.lead_in, in_list)
        got = self.blocks.get(key)
        if got is not None and got.headed:
            got = self.headed.get((key, tuple(seg.headings)))
        if got is None:
            return self._segment(seg, bs, be, in_list, key)
        units = seg.units
        n = len(units)
        if got.headed:
            for k, (t, a, b, path) in enumerate(got.units):
                units.append(Unit(n + k, t, bs + a, bs + b, path))
            seg.headings = list(got.headings)
            seg.path = got.path
        else:
            path = seg.path
            for k, (t, a, b, _) in enumerate(got.units):
                units.append(Unit(n + k, t, bs + a, bs + b, path))
        block = seg.block
        seg.blocks.extend([block + d for d in got.block_ids])
        seg.block = block + got.advance
        seg.lead_in = got.lead_in
        return got.in_list

    def _segment(self, seg: _Segmenter, bs: int, be: int, in_list: bool, key: _Key) -> bool:
        units = seg.units
        u0, b0, above = len(units), seg.block, seg.headings
        out = seg.block_lines(bs, be, in_list)
        # heading() replaces the list: the same list means no heading in this block.
        headed = seg.headings is not above
        replay = _Replay(
            tuple((u.text, u.start - bs, u.end - bs, u.heading_path) for u in units[u0:]),
            tuple(b - b0 for b in seg.blocks[u0:]),
            seg.block - b0,
            headed,
            tuple(seg.headings),
            seg.path,
            seg.lead_in,
            out,
        )
        if len(self.blocks) + len(self.headed) >= self.max_entries:
            self.clear()
        if headed:
            self.headed[(key, tuple(above))] = replay
            self.blocks[key] = _HEADED
        else:
            self.blocks[key] = replay
        return out


# Marks a block text that held a heading (its replays are in SegmentMemo.headed).
_HEADED = _Replay((), (), 0, True, (), (), None, False)


def segment(text: str) -> list[Unit]:
    """Split block text into units with heading paths and offsets into ``text``.

    ``text[u.start:u.end]`` is the unit's own text (soft line breaks become spaces in
    ``u.text``). A list item that follows a paragraph ending with ":" carries that lead-in:
    ``u.text == "<lead-in> — <item>"`` while the offsets cover the item only.
    """
    return segment_with_blocks(text)[0]

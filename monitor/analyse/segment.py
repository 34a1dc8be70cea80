"""Segmentation of block text into units (sentences, list items with their lead-in).

Input is the normalised block text of :class:`monitor.models.Extracted` (blocks separated by a
blank line, ``# heading``, ``- item``, paragraphs); raw Markdown (setext headings, several
list items in one block, soft line breaks) and plain text are tolerated. Work is done with
regexes over blocks and lines; Python only loops over candidate sentence ends, never over
characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from monitor.models import Unit

_BLOCK_SEP = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")
_HEADING = re.compile(r"(#{1,6})[ \t]+(.*?)[ \t#]*$")
_SETEXT = re.compile(r"(?:=+|-{3,})[ \t]*$")
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*+•·]|\d{1,3}[.)]|[a-z][.)])[ \t]+(?=\S)")
_MD_DECOR = re.compile(r"\*\*|__|\[([^\]\n]*)\]\([^)\n]*\)")

# A sentence end: terminal punctuation (plus closing quotes/brackets) followed by space and
# something that can start a sentence.
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=[ \t\n]+[\"'“‘«(\[¿¡*_]*[A-ZÀ-ÖØ-ÞĀ-ſΑ-ΩΆ-Ώ0-9])")
_LAST_TOKEN = re.compile(r"(\S+)$")

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
    m = _LAST_TOKEN.search(text, max(0, end - 16), end)
    if m is None:
        return False
    token = m.group(1).lstrip("([\"'“‘«*_").lower()
    token = token.rsplit("'", 1)[-1].rsplit("’", 1)[-1]  # elision: l'art.
    if token in _ABBREVIATIONS:
        return True
    # Initials and dotted acronyms: "J.", "U.S.", "e.g." already covered, "A.I."
    core = token.rstrip(".")
    if len(core) == 1 and core.isalpha():
        return True
    return bool(re.fullmatch(r"(?:\w\.)+\w?", token))


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans ``(s, e)`` of ``text[start:end]`` (whitespace trimmed)."""
    stop = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    s = start
    for m in _BOUNDARY.finditer(text, start, stop):
        e = m.end()
        punct = m.group()
        if punct[0] == "." and not punct.startswith("..") and _is_abbreviation(text, m.start() + 1):
            continue
        spans.append((s, e))
        s = e
    spans.append((s, stop))
    out: list[tuple[int, int]] = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out


def _iter_blocks(text: str) -> Iterator[tuple[int, int]]:
    pos = 0
    for m in _BLOCK_SEP.finditer(text):
        yield pos, m.start()
        pos = m.end()
    yield pos, len(text)


def _iter_lines(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    pos = start
    while pos <= end:
        nl = text.find("\n", pos, end)
        if nl < 0:
            yield pos, end
            return
        yield pos, nl
        pos = nl + 1


def _clean(text: str) -> str:
    return text.replace("\n", " ")


def plain(text: str) -> str:
    """Unit text without Markdown emphasis/link decoration (for headings)."""
    return _MD_DECOR.sub(lambda m: m.group(1) or "", text).strip()


class _Segmenter:
    def __init__(self, text: str) -> None:
        self.text = text
        self.units: list[Unit] = []
        self.headings: list[tuple[int, str]] = []  # (level, title)
        self.path: tuple[str, ...] = ()
        self.lead_in: str | None = None
        self.block = 0  # index of the block (paragraph / list run) a unit belongs to
        self.blocks: list[int] = []

    def heading(self, level: int, title: str) -> None:
        self.headings = [h for h in self.headings if h[0] < level]
        self.headings.append((level, plain(title)))
        self.path = tuple(t for _, t in self.headings)
        self.lead_in = None
        self.block += 1

    def paragraph(self, s: int, e: int) -> None:
        self.block += 1
        sentences = split_sentences(self.text, s, e)
        for a, b in sentences:
            self._emit(a, b, None)
        last = _clean(self.text[sentences[-1][0] : sentences[-1][1]]) if sentences else ""
        self.lead_in = last if last.rstrip("*_ ").endswith(":") else None

    def item(self, s: int, e: int, new_list: bool) -> None:
        if new_list:
            self.block += 1
        for a, b in split_sentences(self.text, s, e):
            self._emit(a, b, self.lead_in)

    def _emit(self, a: int, b: int, lead_in: str | None) -> None:
        body = _clean(self.text[a:b])
        unit_text = f"{lead_in} — {body}" if lead_in else body
        self.units.append(Unit(len(self.units), unit_text, a, b, self.path))
        self.blocks.append(self.block)


def segment_with_blocks(text: str) -> tuple[list[Unit], list[int]]:
    """Units plus, for each unit, the id of its block (paragraph or list run)."""
    seg = _Segmenter(text)
    in_list = False
    for bs, be in _iter_blocks(text):
        # Group the block's lines into headings, list items and paragraphs.
        cur: tuple[str, int, int] | None = None  # (kind, start, end)
        prev_line: tuple[int, int] | None = None

        def flush(c: tuple[str, int, int] | None) -> None:
            nonlocal in_list
            if c is None:
                return
            kind, s, e = c
            if kind == "item":
                seg.item(s, e, not in_list)
                in_list = True
            else:
                seg.paragraph(s, e)
                in_list = False

        for ls, le in _iter_lines(text, bs, be):
            line = text[ls:le]
            if not line.strip():
                continue
            hm = _HEADING.match(line)
            if hm:
                flush(cur)
                cur = None
                seg.heading(len(hm.group(1)), hm.group(2))
                in_list = False
                prev_line = None
                continue
            if (
                _SETEXT.match(line)
                and cur is not None
                and cur[0] == "para"
                and prev_line is not None
                and cur[1] == prev_line[0]
            ):
                seg.heading(1 if line.lstrip().startswith("=") else 2, text[cur[1] : cur[2]])
                cur = None
                in_list = False
                prev_line = None
                continue
            lm = _LIST_ITEM.match(line)
            if lm:
                flush(cur)
                cur = ("item", ls + lm.end(), le)
            elif cur is None:
                off = len(line) - len(line.lstrip())
                cur = ("para", ls + off, le)
            else:
                cur = (cur[0], cur[1], le)
            prev_line = (ls, le)
        flush(cur)
    return seg.units, seg.blocks


def segment(text: str) -> list[Unit]:
    """Split block text into units with heading paths and offsets into ``text``.

    ``text[u.start:u.end]`` is the unit's own text (soft line breaks become spaces in
    ``u.text``). A list item that follows a paragraph ending with ":" carries that lead-in:
    ``u.text == "<lead-in> — <item>"`` while the offsets cover the item only.
    """
    return segment_with_blocks(text)[0]

"""Extract stage: turn a fetched page (HTML) or an Open Terms Archive version (Markdown) into
normalised block text, and tell a blocked or broken fetch apart from a real policy change.

Block text (see :class:`monitor.models.Extracted`): one block per line, blocks separated by
exactly one blank line. ``# Heading`` (``#`` to ``######``), ``- list item`` (nested items
indented by two spaces per level), table rows as ``cell | cell``, everything else a paragraph.
Only text survives: link targets, images, attributes and scripts never reach ``text``, so markup
churn (nonces, tracking pixels, class names, rotating URLs) cannot look like a policy change.

Everything here is a pure function of its arguments: no I/O.
"""

from __future__ import annotations

import datetime as dt
import html as html_lib
import operator
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import soupsieve
from bs4 import BeautifulSoup
from bs4.element import NavigableString, Tag

from monitor.errors import ExtractError
from monitor.models import Extracted

__all__ = [
    "MarkdownMemo",
    "extract_html",
    "extract_markdown",
    "normalise_text",
    "suspect_reason",
]

# ---------------------------------------------------------------------------------------------
# Text normalisation
# ---------------------------------------------------------------------------------------------

_SPACE_LIKE = "\t\v\f\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
# Invisible characters that only ever differ between renderings of the same text.
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
# Regexes rather than str.translate: translate with a dict is ~30x slower on non-ASCII text.
_SPACE_LIKE_RE = re.compile("[" + _SPACE_LIKE + "]")
_INVISIBLE_RE = re.compile("[" + _INVISIBLE + "]")

# Patterns start with a literal so that the regex engine can skip ahead: these run over
# megabytes of text during an import.
_SPACE_RUNS = re.compile(r"  +")
_TRAILING_SPACES = re.compile(r" +\n")
# Leading spaces carry meaning only as list nesting ("  - sub"); anywhere else they are noise.
_LEADING_SPACES = re.compile(r"\n ++(?!- )")
_BLANK_RUNS = re.compile(r"\n{3,}")


def clean_characters(text: str) -> str:
    """Unicode NFC, space characters (nbsp...) as a plain space, zero-width characters,
    directional marks and soft hyphens removed; nothing else changes (lines and runs of
    spaces stay). What the analyser needs of a text that did not come through extraction
    (``analyse -``, ``analyse --jsonl``, ``eval``): a soft hyphen in "trai\u00adning" or a
    decomposed accent would otherwise hide a term."""
    text = _SPACE_LIKE_RE.sub(" ", text)
    text = _INVISIBLE_RE.sub("", text)
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return text


def normalise_text(text: str) -> str:
    """Normalise text the same way for every source.

    Unicode NFC; nbsp and other space characters become a plain space; zero-width characters,
    directional marks and soft hyphens are removed; runs of spaces collapse to one; lines lose
    trailing spaces and leading spaces (except the indentation of a nested ``- `` list item);
    runs of blank lines collapse to one blank line; no leading or trailing blank lines. Quotes
    and dashes are kept as they are: they are real text. Idempotent.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\n").replace("\u2029", "\n")
    text = "\n" + clean_characters(text) + "\n"
    if "  " in text:
        text = _SPACE_RUNS.sub(_keep_indent, text)
    if " \n" in text:
        text = _TRAILING_SPACES.sub("\n", text)
    if "\n " in text:
        text = _LEADING_SPACES.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip("\n")


def _keep_indent(m: re.Match[str]) -> str:
    # A run at the start of a line is indentation, left to _LEADING_SPACES.
    return m[0] if m.string[m.start() - 1] == "\n" else " "


def _collapse(text: str) -> str:
    """One block's text on one line: every whitespace run becomes one space."""
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------
# Effective dates
# ---------------------------------------------------------------------------------------------

_MONTHS: dict[str, int] = {}
for _num, _names in enumerate(
    [
        # en, en abbr, fr, de, es, it, nl (with unaccented spellings)
        "january jan janvier januar jänner enero gennaio januari",
        "february feb février fevrier februar febrero febbraio februari",
        "march mar mars märz maerz marzo maart",
        "april apr avril abril aprile",
        "may mai mayo maggio mei",
        "june jun juin juni junio giugno",
        "july jul juillet juli julio luglio",
        "august aug août aout agosto augustus",
        "september sep sept septembre septiembre settembre",
        "october oct octobre oktober okt octubre ottobre",
        "november nov novembre noviembre",
        "december dec décembre decembre dezember dez diciembre dicembre",
    ],
    start=1,
):
    for _name in _names.split():
        _MONTHS[_name] = _num

_MONTH_RE = "|".join(sorted((re.escape(m) for m in _MONTHS), key=len, reverse=True))

_KW_EN = (
    r"effective\s+date|effective\s+as\s+of|effective\s+from|effective|last\s+updated|"
    r"last\s+modified|last\s+revised|last\s+changed|date\s+of\s+last\s+revision|updated|revised"
)
_KW_OTHER = (
    # fr
    r"derni[eè]re\s+mise\s+[aà]\s+jour|mise\s+[aà]\s+jour|mis\s+[aà]\s+jour|"
    r"date\s+d['’]entr[ée]e\s+en\s+vigueur|entr[ée]e\s+en\s+vigueur|en\s+vigueur|"
    r"date\s+d['’]effet|"
    # de
    r"stand|g[üu]ltig\s+ab|g[üu]ltig\s+seit|zuletzt\s+aktualisiert|zuletzt\s+ge[äa]ndert|"
    r"letzte\s+aktualisierung|letzte\s+[äa]nderung|inkrafttreten|in\s+kraft\s+seit|wirksam\s+ab|"
    # es
    r"fecha\s+de\s+entrada\s+en\s+vigor|entrada\s+en\s+vigor|en\s+vigor\s+desde|"
    r"[úu]ltima\s+actualizaci[óo]n|[úu]ltima\s+modificaci[óo]n|actualizad[oa]|vigente\s+desde|"
    r"fecha\s+de\s+vigencia|"
    # it
    r"ultimo\s+aggiornamento|ultima\s+modifica|aggiornat[oa]\s+(?:al|il)|in\s+vigore\s+dal|"
    r"data\s+di\s+entrata\s+in\s+vigore|entrata\s+in\s+vigore|data\s+di\s+efficacia|"
    r"efficace\s+dal|"
    # nl
    r"laatst\s+bijgewerkt|laatste\s+wijziging|laatst\s+gewijzigd|bijgewerkt|ingangsdatum|"
    r"van\s+kracht|geldig\s+vanaf|datum\s+van\s+inwerkingtreding"
)
_DATE = (
    r"(?P<iso_y>\d{4})-(?P<iso_m>\d{1,2})-(?P<iso_d>\d{1,2})(?!\d)"
    r"|(?P<num_a>\d{1,2})(?P<num_sep>[./-])(?P<num_b>\d{1,2})(?P=num_sep)(?P<num_y>\d{4})(?!\d)"
    rf"|(?P<dmy_d>\d{{1,2}})(?:st|nd|rd|th|er|º|°|\.)?\s*(?:de\s+|of\s+)?(?P<dmy_m>{_MONTH_RE})\b\.?,?"
    r"\s*(?:de\s+|del\s+)?(?P<dmy_y>\d{4})(?!\d)"
    rf"|(?P<mdy_m>{_MONTH_RE})\b\.?\s+(?P<mdy_d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<mdy_y>\d{{4}})(?!\d)"
)
# Matched against lower-cased text: without IGNORECASE the engine can skip ahead on the first
# letters of the keywords.
_EFFECTIVE = re.compile(
    rf"\b(?:(?P<kw_en>{_KW_EN})|(?P<kw_other>{_KW_OTHER}))\b[^\n\d]{{0,25}}?(?<!\w)(?:{_DATE})"
)
_DATE_SCAN_CHARS = 3000


def _find_effective_date(text: str) -> dt.date | None:
    for m in _EFFECTIVE.finditer(text[:_DATE_SCAN_CHARS].lower()):
        date = _date_from_match(m, english=m.group("kw_en") is not None)
        if date is not None:
            return date
    return None


def _date_from_match(m: re.Match[str], *, english: bool) -> dt.date | None:
    g = m.group
    if g("iso_y"):
        y, mo, d = int(g("iso_y")), int(g("iso_m")), int(g("iso_d"))
    elif g("num_a"):
        a, b, y = int(g("num_a")), int(g("num_b")), int(g("num_y"))
        # Dots are European everywhere; slashes are month-first only in English, and only when
        # the first number can be a month.
        if g("num_sep") != "." and english and a <= 12:
            mo, d = a, b
        else:
            d, mo = a, b
    elif g("dmy_m"):
        y, mo, d = int(g("dmy_y")), _MONTHS[g("dmy_m").lower()], int(g("dmy_d"))
    else:
        y, mo, d = int(g("mdy_y")), _MONTHS[g("mdy_m").lower()], int(g("mdy_d"))
    try:
        return dt.date(y, mo, d)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

# Stripped with regexes before parsing: on real pages these are most of the bytes (framework
# state, analytics) and parsing them only to throw them away dominates the cost.
_PRE_STRIP = re.compile(
    r"<script\b[^>]*>.*?</script\s*>|<style\b[^>]*>.*?</style\s*>|<!--.*?-->",
    re.IGNORECASE | re.DOTALL,
)
_ALWAYS_DROP = (
    "script, style, noscript, template, svg, math, iframe, object, embed, canvas, video, audio, "
    "picture, img, source, nav, [role=navigation i], input, select, textarea, option, link, meta"
)
_HIDDEN = '[aria-hidden="true" i], [hidden]'
_HIDDEN_KEEP_CHARS = 2000
# Screen-reader notes on links ("(opens in a new window)") are widget chrome, not policy text.
_LINK_NOTES = "a .sr-only, a .visually-hidden, a .visuallyhidden, a .screen-reader-text"
# Vendor names of consent platforms: safe to drop wherever they appear.
_CONSENT_VENDOR = re.compile(
    r"onetrust|didomi|cookiebot|cybotcookiebot|gdpr-banner|truste|osano|usercentrics|"
    r"cookie-?banner|cookie-?consent|cookie-?notice|cookie-?bar|cookie-?popup|consent-?banner",
    re.IGNORECASE,
)
# Generic words: a privacy policy legitimately has a section id="cookies", so these only count
# on something that behaves like a widget (see _is_consent_widget).
_CONSENT_GENERIC = re.compile(r"cookie|consent|gdpr", re.IGNORECASE)
_COOKIE_TEXT = re.compile(r"cookie|consent|témoin|tracker", re.IGNORECASE)
_HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_TAGS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "center",
        "dd",
        "details",
        "dialog",
        "dir",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hgroup",
        "hr",
        "html",
        "legend",
        "li",
        "main",
        "menu",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "button",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "td",
        "th",
        "caption",
        "ul",
        "br",
    ]
)


def extract_html(
    html: str,
    *,
    select: Sequence[str] = (),
    remove: Sequence[str] = (),
    base_url: str | None = None,
) -> Extracted:
    """Extract normalised block text from an HTML page.

    Page furniture is always dropped (scripts, styles, ``nav``, form controls, images, hidden
    and ``aria-hidden`` elements, cookie/consent banners). Then every element matching a
    ``remove`` selector is dropped, and the text is taken from the elements matching the
    ``select`` selectors (document order, nested matches counted once). Without ``select`` the
    text comes from ``<main>``, else the only ``<article>``, else ``<body>`` (minus its header
    and footer). ``matched_selector`` is False when ``select`` matched nothing.

    ``base_url`` is accepted for callers that know it; link targets never reach the text, so it
    does not change the result.

    Raises :class:`ExtractError` naming the selector when a CSS selector is invalid.
    """
    del base_url  # link targets are dropped, so there is nothing to resolve
    select_patterns = [_compile_selector(s, "select") for s in select]
    remove_patterns = [_compile_selector(s, "remove") for s in remove]

    soup = BeautifulSoup(_PRE_STRIP.sub(" ", html), "lxml")
    page_title = _page_title(soup)
    _drop_furniture(soup)
    for pattern in remove_patterns:
        for el in pattern.select(soup):
            el.decompose()

    if select_patterns:
        roots = _select_roots(soup, select_patterns)
        if not roots:
            return Extracted(text="", title=page_title, matched_selector=False)
    else:
        roots = _default_roots(soup)

    writer = _BlockWriter()
    for root in roots:
        writer.walk(root)
        writer.flush()
    text = normalise_text("\n\n".join(writer.blocks))

    title = _first_h1(roots) or _first_h1([soup]) or page_title
    return Extracted(text=text, title=title, effective_date=_find_effective_date(text))


def _compile_selector(selector: str, what: str) -> soupsieve.SoupSieve:
    try:
        return soupsieve.compile(selector)
    except (soupsieve.SelectorSyntaxError, ValueError, TypeError, NotImplementedError) as exc:
        raise ExtractError(f"invalid CSS {what} selector {selector!r}: {exc}") from exc


def _page_title(soup: BeautifulSoup) -> str | None:
    tag = soup.find("title")
    if tag is None:
        return None
    return _collapse(normalise_text(tag.get_text())) or None


def _first_h1(roots: Iterable[Tag]) -> str | None:
    for root in roots:
        h1 = root if root.name == "h1" else root.find("h1")
        if isinstance(h1, Tag):
            text = _collapse(normalise_text(_flat_text(h1)))
            if text:
                return text
    return None


def _drop_furniture(soup: BeautifulSoup) -> None:
    # Consent widgets first: recognising them needs their buttons, which are dropped next.
    for el in soup.find_all(_is_consent_widget):
        if not el.decomposed:
            el.decompose()
    # A collapsed accordion panel is hidden until clicked but is policy text all the same.
    panels = {
        ref
        for el in soup.select("[aria-controls]")
        for ref in _attr_str(el, "aria-controls").split()
    }
    for el in soup.select(_ALWAYS_DROP + ", " + _LINK_NOTES):
        if not el.decomposed:
            el.decompose()
    for el in soup.find_all("button"):
        # An accordion trigger holds the section heading; other buttons are widgets.
        if not el.decomposed and el.find(_is_heading) is None:
            el.decompose()
    for el in soup.select(_HIDDEN):
        if el.decomposed or _attr_str(el, "id") in panels:
            continue
        # Some sites (Facebook) set aria-hidden on the whole page while a modal is open; hidden
        # furniture is small, a hidden policy is not.
        if len(el.get_text()) < _HIDDEN_KEEP_CHARS:
            el.decompose()


def _is_heading(el: Tag) -> bool:
    return _heading_level(el) is not None


def _is_consent_widget(el: Tag) -> bool:
    if el.name in ("html", "body", "main", "article"):
        return False
    marks = " ".join(
        [_attr_str(el, "id"), _attr_str(el, "class"), _attr_str(el, "aria-label")]
    ).strip()
    if marks and _CONSENT_VENDOR.search(marks):
        return True
    role = _attr_str(el, "role").lower()
    is_dialog = (
        role in ("dialog", "alertdialog") or el.name == "dialog" or el.has_attr("aria-modal")
    )
    generic = bool(marks) and _CONSENT_GENERIC.search(marks) is not None
    if not (is_dialog or generic):
        return False
    if el.find(["h1", "h2"]) is not None:
        return False  # a real section of the policy ("Cookies"), not a banner
    if is_dialog:
        return _COOKIE_TEXT.search(el.get_text(" ")[:2000]) is not None
    return el.find(["button", "input", "select"]) is not None


def _attr_str(el: Tag, name: str) -> str:
    value = el.get(name)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return " ".join(value)


def _select_roots(soup: BeautifulSoup, patterns: Sequence[soupsieve.SoupSieve]) -> list[Tag]:
    matched: dict[int, Tag] = {}
    for pattern in patterns:
        for el in pattern.select(soup):
            matched[id(el)] = el
    if not matched:
        return []
    # Walk the document once so that matches come out in document order, and skip the inside of
    # a match so that a nested match is not extracted twice.
    roots: list[Tag] = []
    stack: list[Tag] = [soup]
    while stack:
        el = stack.pop()
        if id(el) in matched:
            roots.append(el)
            continue
        stack.extend(reversed([c for c in el.children if isinstance(c, Tag)]))
    return roots


def _default_roots(soup: BeautifulSoup) -> list[Tag]:
    mains = soup.select("main, [role=main]")
    if mains:
        return [mains[0]]
    articles = soup.find_all("article")
    if len(articles) == 1:
        return [articles[0]]
    body = soup.body or soup
    # The page's own banner and footer are chrome; a header that holds the h1 is the title.
    for el in body.select("footer, [role=contentinfo], header, [role=banner]"):
        if el.decomposed:
            continue
        if el.name == "header" and el.find("h1") is not None:
            continue
        el.decompose()
    return [body]


def _flat_text(el: Tag) -> str:
    """All text under ``el`` as one line: block boundaries and ``<br>`` become spaces."""
    parts: list[str] = []
    _collect_inline(el, parts)
    return _collapse("".join(parts))


def _collect_inline(el: Tag, parts: list[str]) -> None:
    for child in el.children:
        if isinstance(child, Tag):
            if child.name in _BLOCK_TAGS:
                parts.append(" ")
                _collect_inline(child, parts)
                parts.append(" ")
            else:
                _collect_inline(child, parts)
        elif type(child) is NavigableString:
            parts.append(child)


def _heading_level(el: Tag) -> int | None:
    level = _HEADING_TAGS.get(el.name)
    if level is not None:
        return level
    if _attr_str(el, "role").lower() == "heading":
        try:
            return min(6, max(1, int(_attr_str(el, "aria-level") or "2")))
        except ValueError:
            return 2
    return None


class _BlockWriter:
    """Walks a DOM subtree and writes blocks. Inline text accumulates in ``buf`` until a block
    boundary flushes it; a list item's marker goes on the first block written inside it."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.buf: list[str] = []
        self.list_depth = 0
        self.item_prefix: str | None = None

    def flush(self) -> None:
        if not self.buf:
            return
        text = _collapse("".join(self.buf))
        self.buf.clear()
        if not text:
            return
        if self.item_prefix is not None:
            text = self.item_prefix + text
            self.item_prefix = None
        self.blocks.append(text)

    def walk(self, el: Tag) -> None:
        for child in el.children:
            if isinstance(child, Tag):
                self._element(child)
            elif type(child) is NavigableString:
                self.buf.append(child)

    def _element(self, el: Tag) -> None:
        name = el.name
        level = _heading_level(el)
        if level is not None:
            self.flush()
            text = _flat_text(el)
            if text:
                self.item_prefix = None
                self.blocks.append("#" * level + " " + text)
        elif name in ("ul", "ol", "menu", "dir"):
            self.flush()
            self.item_prefix = None
            self.list_depth += 1
            self.walk(el)
            self.flush()
            self.list_depth -= 1
        elif name == "li":
            self.flush()
            self.item_prefix = "  " * max(0, self.list_depth - 1) + "- "
            self.walk(el)
            self.flush()
            self.item_prefix = None
        elif name == "table":
            self.flush()
            self._table(el)
        elif name == "br":
            self.buf.append(" ")
        elif name in _BLOCK_TAGS:
            self.flush()
            self.walk(el)
            self.flush()
        else:
            self.walk(el)

    def _table(self, table: Tag) -> None:
        caption = table.find("caption")
        if isinstance(caption, Tag) and caption.find_parent("table") is table:
            text = _flat_text(caption)
            if text:
                self.blocks.append(text)
        for tr in table.find_all("tr"):
            if tr.find_parent("table") is not table:
                continue  # a row of a nested table: flattened into its cell instead
            cells = [_flat_text(c) for c in tr.find_all(["td", "th"], recursive=False)]
            row = " | ".join(c for c in cells if c)
            if row:
                self.blocks.append(row)


# ---------------------------------------------------------------------------------------------
# Markdown (Open Terms Archive versions)
# ---------------------------------------------------------------------------------------------

_MD_ATX = re.compile(r"(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_MD_SETEXT = re.compile(r"(?:=+|-+)[ \t]*$")
_MD_RULE = re.compile(r"(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_MD_LIST = re.compile(r"(?:[*+-]|\d{1,9}[.)])(?:[ \t]+(.*)|$)")
_MD_TABLE_SEP = re.compile(r"\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?$")
_MD_TABLE_SPLIT = re.compile(r"(?<!\\)\|")
_MD_FENCE = re.compile(r"(`{3,}|~{3,})")

_MD_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_MD_AUTOLINK = re.compile(r"<((?:https?|mailto):[^<>\s]+|[^<>\s@]+@[^<>\s@]+\.[^<>\s@]+)>")
_MD_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
# Unrolled loops ("normal* (special normal*)*"): much faster than an alternation per char.
_LINK_TEXT = r"(?<!\\)\[([^\]\\]*(?:\\.[^\]\\]*)*)\]"  # an escaped \[ opens no link
_LINK_DEST = r"\([^()\s]*(?:\([^()]*\)[^()\s]*)*(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)"
_MD_IMAGE = re.compile(r"!" + _LINK_TEXT + _LINK_DEST)
_MD_LINK = re.compile(_LINK_TEXT + _LINK_DEST)
# Lookbehinds come after the first character so that the engine can scan for [*_] quickly.
_MD_STRONG = re.compile(r"(?:\*\*|__)(?<!\\..)")
_MD_EMPH = re.compile(r"[*_](?:(?<![\\\w*][*_])(?=[^\s*_])|(?<=[^\s\\*][*_])(?![\w*]))")
_MD_SPACES = re.compile(r"  +")
_MD_ESCAPE = re.compile(r"\\([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")
_MD_TRAILING_BACKSLASH = re.compile(r"\\ ")


_group1 = operator.itemgetter(1)  # C-level, unlike expanding an r"\1" template


class MarkdownMemo:
    """What :func:`extract_markdown` reuses between the versions of one document: the inline
    conversion of each paragraph, heading, cell and table row by its source, and the
    normalisation of each block by its text. Both are pure functions of their text, and consecutive versions
    share most of them verbatim. Bounded: past ``max_entries`` texts, a table is emptied and
    starts over."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self.inline: dict[str, str] = {}
        self.rows: dict[str, str] = {}  # table rows, by their line
        self.blocks: dict[str, str] = {}

    def trim(self) -> None:
        """Empty the tables that have ``max_entries`` texts (once per version, not per text)."""
        for table in (self.inline, self.rows, self.blocks):
            if len(table) >= self.max_entries:
                table.clear()

    def inline_of(self, source: str) -> str:
        got = self.inline.get(source)
        if got is None:
            got = self.inline[source] = _md_inline(source)
        return got

    def row_of(self, line: str) -> str:
        got = self.rows.get(line)
        if got is None:
            got = self.rows[line] = _md_table_row(line, self.inline_of)
        return got

    def normalised(self, blocks: list[str]) -> str:
        """``normalise_text("\n\n".join(blocks))``, block by block (see _per_block)."""
        memo = self.blocks
        out: list[str] = []
        for block in blocks:
            got = memo.get(block)
            if got is None:
                got = memo[block] = normalise_text(block)
            if got:
                out.append(got)
        return "\n\n".join(out)


# Characters that make or are line breaks for normalise_text.
_BREAKS = re.compile("[\n\r\u2028\u2029]")


def _per_block(blocks: list[str]) -> bool:
    """Whether the normalisation of the blocks joined by blank lines is that of each block,
    the empty ones left out: when no block holds a line break, every step of normalise_text
    stays inside a line (NFC composes nothing across a newline), and the blank lines around
    a block that normalises to nothing collapse into one."""
    return not any(map(_BREAKS.search, blocks))


def extract_markdown(md: str, memo: MarkdownMemo | None = None) -> Extracted:
    """Convert Open Terms Archive Markdown into the same block text as :func:`extract_html`.

    Headings (ATX and setext) become ``#`` blocks, list items ``- `` blocks (nested by
    indentation), table rows ``a | b``; links keep their text only; images, rules, ``- - -``
    document separators, HTML tags and emphasis markers disappear; escapes are unescaped.

    ``memo``: kept between the versions of one document (see :class:`MarkdownMemo`), so
    that only what a version changed is converted again. The same result.
    """
    if memo is not None:
        memo.trim()
    blocks = _md_blocks(md, memo)
    if memo is not None and _per_block(blocks):
        text = memo.normalised(blocks)
    else:
        text = normalise_text("\n\n".join(blocks))
    title = None
    for block in blocks:
        if block.startswith("# "):
            title = block[2:]
            break
    return Extracted(text=text, title=title, effective_date=_find_effective_date(text))


def _md_blocks(md: str, memo: MarkdownMemo | None = None) -> list[str]:
    inline: Callable[[str], str] = _md_inline if memo is None else memo.inline_of

    blocks: list[str] = []
    para: list[str] = []
    prefix = ""  # the list marker of the block in ``para``, or "" for a paragraph
    list_indents: list[int] = []
    fence: str | None = None

    def flush() -> None:
        nonlocal prefix
        if para:
            text = inline(" ".join(para))
            if text:
                blocks.append(prefix + text)
            para.clear()
        prefix = ""

    for raw in md.splitlines():
        stripped = raw.lstrip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
                flush()
            elif stripped:
                para.append(stripped)
            continue
        if not stripped:
            flush()
            continue
        indent = len(raw) - len(stripped)
        if stripped[0] == ">":
            stripped = stripped.lstrip("> \t")
            if not stripped:
                flush()
                continue
        first = stripped[0]
        if first in "=-" and para and not prefix and _MD_SETEXT.match(stripped):
            heading = inline(" ".join(para))
            para.clear()
            if heading:
                blocks.append(("# " if first == "=" else "## ") + heading)
            list_indents.clear()
            continue
        if first in "-*_" and _MD_RULE.match(stripped):
            flush()
            continue
        if first == "#":
            m = _MD_ATX.match(stripped)
            if m:
                flush()
                heading = inline(m.group(2) or "")
                if heading:
                    blocks.append("#" * len(m.group(1)) + " " + heading)
                list_indents.clear()
                continue
        if first == "|":
            flush()
            if not _MD_TABLE_SEP.match(stripped):
                row = _md_table_row(stripped, inline) if memo is None else memo.row_of(stripped)
                if row:
                    blocks.append(row)
            continue
        if first in "`~":
            m = _MD_FENCE.match(stripped)
            if m:
                flush()
                fence = m.group(1)
                continue
        if first in "*+-0123456789":
            m = _MD_LIST.match(stripped)
            if m:
                flush()
                while list_indents and list_indents[-1] > indent:
                    list_indents.pop()
                if not list_indents or list_indents[-1] < indent:
                    list_indents.append(indent)
                prefix = "  " * (len(list_indents) - 1) + "- "
                para.append(m.group(1) or "")
                continue
        if not para and indent < 2:
            list_indents.clear()
        para.append(stripped)
    flush()
    return blocks


def _md_table_row(line: str, inline: Callable[[str], str]) -> str:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells = (inline(c) for c in _MD_TABLE_SPLIT.split(line))
    return " | ".join(c for c in cells if c)


def _md_inline(s: str) -> str:
    if "<" in s:
        s = _MD_BR.sub(" ", s)
        s = _MD_AUTOLINK.sub(_group1, s)
        s = _MD_TAG.sub("", s)
    if "[" in s:
        s = _MD_IMAGE.sub("", s)
        s = _MD_LINK.sub(_group1, s)
    if "**" in s or "__" in s:
        s = _MD_STRONG.sub("", s) if "\\" in s else s.replace("**", "").replace("__", "")
    if "*" in s or "_" in s:
        s = _MD_EMPH.sub("", s)
    if "`" in s:
        s = s.replace("`", "")
    if "\\" in s:
        s = _MD_TRAILING_BACKSLASH.sub(" ", s + " ")
        s = _MD_ESCAPE.sub(_group1, s)
    if "&" in s:
        s = html_lib.unescape(s)
    if "\t" in s:
        s = s.replace("\t", " ")
    if "  " in s:
        s = _MD_SPACES.sub(" ", s)
    return s.strip()


# ---------------------------------------------------------------------------------------------
# Suspect fetches
# ---------------------------------------------------------------------------------------------

_SHORT_PAGE_CHARS = 3000
# On a short page a phrase in the body counts only when the page is mostly the message that
# contains it: a page this short says nothing else; else the phrase opens the page (its first
# two blocks) or the blocks that say it are half the text. A short real policy may well say
# "we use reCAPTCHA" or "if something went wrong" further down.
_TINY_PAGE_CHARS = 600
_LEAD_BLOCKS = 2
_BLOCK_SHARE = 0.5
# Word overlap with the latest version above which a text is that policy, not a block page.
_RESEMBLES = 0.8


def _phrases(*phrases: str) -> re.Pattern[str]:
    return re.compile(
        r"(?<!\w)(?:" + "|".join(re.escape(p) for p in phrases) + r")(?!\w)", re.IGNORECASE
    )


_CAPTCHA = _phrases(
    "verify you are human",
    "verify that you are human",
    "verifying you are human",
    "are you a robot",
    "are you a human",
    "i'm not a robot",
    "unusual traffic",
    "checking your browser",
    "checking if the site connection is secure",
    "attention required",
    "just a moment",
    "ddos protection",
    "press and hold",
    "bot detection",
    "vérifiez que vous êtes humain",
    "vérifier que vous êtes humain",
    "êtes-vous un robot",
    "trafic inhabituel",
    "bestätigen sie, dass sie ein mensch sind",
    "sind sie ein roboter",
    "ungewöhnlicher datenverkehr",
    "verifica que eres humano",
    "eres un robot",
    "tráfico inusual",
    "verifica di essere umano",
    "sei un robot",
    "traffico insolito",
    "bevestig dat je een mens bent",
    "ben je een robot",
    "ongebruikelijk verkeer",
)
# Vendor names: a real policy names them (its sign-up form uses reCAPTCHA, its CDN is
# Cloudflare), so they only count on a tiny page, which has room for nothing but the block.
_CAPTCHA_WORDS = _phrases("captcha", "recaptcha", "hcaptcha", "cloudflare")
_LOGIN = _phrases(
    "log in to continue",
    "login to continue",
    "sign in to continue",
    "log in to view",
    "sign in to view",
    "please log in",
    "please sign in",
    "you must be logged in",
    "you need to log in",
    "you need to sign in",
    "log in or sign up",
    "connectez-vous pour continuer",
    "se connecter pour continuer",
    "veuillez vous connecter",
    "bitte melden sie sich an",
    "melden sie sich an, um fortzufahren",
    "anmelden, um fortzufahren",
    "inicia sesión para continuar",
    "inicia sesión para ver",
    "accedi per continuare",
    "effettua l'accesso",
    "log in om door te gaan",
    "log in om verder te gaan",
    "meld je aan om verder te gaan",
)
_ERROR = _phrases(
    "access denied",
    "403 forbidden",
    # A bare "404" is not enough: "Platform 404" or "Section 404" is a real heading.
    "404 not found",
    "error 404",
    "404 error",
    "404 page",
    "page not found",
    "this page isn't available",
    "this page could not be found",
    "something went wrong",
    "service unavailable",
    "503 service unavailable",
    "502 bad gateway",
    "bad gateway",
    "gateway timeout",
    "internal server error",
    "too many requests",
    "please enable javascript",
    "enable javascript to",
    "javascript is required",
    "javascript is disabled",
    "page introuvable",
    "une erreur est survenue",
    "accès refusé",
    "seite nicht gefunden",
    "zugriff verweigert",
    "etwas ist schiefgelaufen",
    "página no encontrada",
    "acceso denegado",
    "algo salió mal",
    "pagina non trovata",
    "accesso negato",
    "qualcosa è andato storto",
    "pagina niet gevonden",
    "toegang geweigerd",
    "er is iets misgegaan",
)


def suspect_reason(
    extracted: Extracted,
    *,
    status: int | None,
    previous_text: str | None,
    min_ratio: float = 0.5,
    min_chars: int = 200,
) -> str | None:
    """Why this extraction should not be stored as a new version, or None when it looks real.

    Catches an HTTP error status, an empty selection, a captcha / bot check, a login wall and an
    error page served as 200, a drastic shrink against ``previous_text`` and, for a first
    version, a text shorter than ``min_chars``. A real policy may well say "log in", "error"
    or "reCAPTCHA", so block-page phrases are trusted only in the title / first heading, or
    on a short page that is mostly the message saying them; and never in a text that equals
    or closely resembles ``previous_text`` (the latest version is the policy, not a block
    page).
    """
    if status is not None and status >= 400:
        return f"HTTP status {status}"
    text = extracted.text
    if not extracted.matched_selector or not text.strip():
        return "empty selection"

    short = len(text) < _SHORT_PAGE_CHARS
    headline = " ".join(filter(None, [extracted.title, _first_heading(text)]))
    for pattern, words, what in (
        (_CAPTCHA, _CAPTCHA_WORDS, "a captcha / bot check"),
        (_LOGIN, None, "a login wall"),
        (_ERROR, None, "an error page"),
    ):
        m = pattern.search(headline) if headline else None
        if m is None and short:
            m = _block_page_phrase(pattern, words, text)
        if m and not _resembles(text, previous_text):
            if what == "an error page":
                return f"looks like an error page ({m.group(0).lower()})"
            return f"looks like {what}"

    if previous_text is not None:
        if previous_text.strip() and len(text) < min_ratio * len(previous_text):
            pct = round(100 * len(text) / len(previous_text))
            return f"shrunk to {pct}% of the previous version"
    elif len(text) < min_chars:
        return f"too short ({len(text)} chars)"
    return None


def _block_page_phrase(
    pattern: re.Pattern[str], words: re.Pattern[str] | None, text: str
) -> re.Match[str] | None:
    """A block-page phrase of a short page's text, when the page is mostly the message that
    says it (see _TINY_PAGE_CHARS, _LEAD_BLOCKS, _BLOCK_SHARE); ``words`` count on tiny
    pages only."""
    if len(text) < _TINY_PAGE_CHARS:
        return pattern.search(text) or (words.search(text) if words else None)
    first: re.Match[str] | None = None
    saying = 0
    for number, block in enumerate(text.split("\n\n")):
        if m := pattern.search(block):
            if number < _LEAD_BLOCKS:
                return m
            first = first or m
            saying += len(block)
    return first if first is not None and saying >= _BLOCK_SHARE * len(text) else None


def _resembles(text: str, previous: str | None) -> bool:
    """True when ``text`` is (nearly) the latest version: most of their words are shared.
    Computed only when a phrase matched, and linear in the texts' length."""
    if previous is None:
        return False
    if text == previous:
        return True
    a, b = Counter(text.lower().split()), Counter(previous.lower().split())
    total = sum(a.values()) + sum(b.values())
    return total > 0 and 2 * sum((a & b).values()) / total >= _RESEMBLES


def _first_heading(text: str) -> str | None:
    for line in text.split("\n", 200)[:200]:
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return None

"""Rule packs: YAML data -> validated, compiled :class:`RulePack` objects.

A pack is data a lawyer-researcher can read and extend (see ``rules/README.md``). Two engines
interpret packs:

- ``engine: ai_training`` - the AI-training analyser. Per-language lexicons of *roles*
  (purpose, object, data, negation, consent cues...) that the engine combines according to
  LABELLING.md.
- ``engine: generic`` - boolean conditions over keywords, regexes, lexicons and proximity.

Terms are written in a small readable syntax (see :func:`term_to_regex`) and compiled once
into one alternation per role and language, so matching a unit costs a handful of regex
searches.
"""

from __future__ import annotations

import functools
import importlib
import operator
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from re._casefix import _EXTRA_CASES  # the engine's own case equivalences
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from monitor.errors import RuleError

# Greek accents are dropped on both sides of the match (same-length mapping, so offsets in the
# matched text stay valid) because policy text and lexicons disagree on tonos placement.
_GREEK_FOLD = str.maketrans("άέήίόύώΆΈΉΊΌΎΏϊϋΐΰ", "αεηιουωΑΕΗΙΟΥΩιυιυ")


_NEEDS_FOLD = re.compile("[άέήίόύώΆΈΉΊΌΎΏϊϋΐΰ]")


def fold(text: str) -> str:
    """Text as the compiled patterns see it (same length as ``text``)."""
    # str.translate is slow on long texts; most policies have nothing to fold.
    if text.isascii() or not _NEEDS_FOLD.search(text):
        return text
    return text.translate(_GREEK_FOLD)


# --------------------------------------------------------------------------- schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


AI_ROLES: tuple[str, ...] = (
    "purpose",
    "purpose_weak",
    "passive",
    "object",
    "object_narrow",
    "object_pronoun",
    "object_anaphor",
    "data",
    "third_party",
    "negation",
    "negation_after",
    "not_negation",
    "restriction",
    "exclusion",
    "ignore",
    "opt_in",
    "conditional_opt_in",
    "conditional_opt_out",
    "exception",
    "opt_out",
    "opt_out_weak",
    "none",
    "none_soft",
    "clause_break",
    "contrast",
    "anaphora",
    "use_verb",
)


class AiLexicon(_Strict):
    """Lexicon of one language for the AI-training engine (every role optional)."""

    purpose: list[str] = []
    purpose_weak: list[str] = []
    passive: list[str] = []
    object: list[str] = []
    object_narrow: list[str] = []
    object_pronoun: list[str] = []
    object_anaphor: list[str] = []
    data: list[str] = []
    third_party: list[str] = []
    negation: list[str] = []
    negation_after: list[str] = []
    not_negation: list[str] = []
    restriction: list[str] = []
    exclusion: list[str] = []
    ignore: list[str] = []
    opt_in: list[str] = []
    conditional_opt_in: list[str] = []
    conditional_opt_out: list[str] = []
    exception: list[str] = []
    opt_out: list[str] = []
    opt_out_weak: list[str] = []
    none: list[str] = []
    none_soft: list[str] = []
    clause_break: list[str] = []
    contrast: list[str] = []
    anaphora: list[str] = []
    use_verb: list[str] = []


class AiSettings(_Strict):
    weak_window: int = Field(6, ge=1, le=40)  # words between "improve/develop" and the AI object
    negation_window: int = Field(14, ge=1, le=60)  # words between a negation and the purpose
    contrast_max_words: int = Field(9, ge=1, le=40)  # elliptical "..., but public posts are"


AiWhen = Literal["disclosure", "narrow_ml", "third_party", "denial"]


class AiRuleModel(_Strict):
    id: str
    when: AiWhen
    severity: Literal["high", "medium", "low", "info"] | None = None
    description: str = ""


class AiMatchExample(_Strict):
    text: str
    lang: str | None = None
    ai_training: bool
    consent: Literal["opt_in", "opt_out", "none", "n/a"]
    negated: bool
    note: str = ""


class NoMatchExample(_Strict):
    text: str
    lang: str | None = None
    note: str = ""


class AiExamples(_Strict):
    match: list[AiMatchExample] = Field(min_length=1)
    no_match: list[NoMatchExample] = Field(min_length=1)


class Condition(_Strict):
    """One node of a generic rule: exactly one operator key."""

    keywords: list[str] | None = None
    regex: str | None = None
    lexicon: str | None = None
    near: list[str] | None = None
    within: int | None = Field(None, ge=1, le=200)
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(None, alias="not")

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        ops = [
            k
            for k in ("keywords", "regex", "lexicon", "near", "all", "any", "not_")
            if getattr(self, k) is not None
        ]
        if len(ops) != 1:
            raise ValueError(
                "a condition needs exactly one of keywords, regex, lexicon, near, all, any, not"
                f" (got {', '.join(o.rstrip('_') for o in ops) or 'none'})"
            )
        if self.near is not None:
            if len(self.near) != 2 or self.within is None:
                raise ValueError("near needs two terms and within: N (words)")
        elif self.within is not None:
            raise ValueError("within is only valid with near")
        return self


Scope = Literal["clause", "sentence", "section"]


class GenericRuleModel(_Strict):
    id: str
    when: Condition
    severity: Literal["high", "medium", "low", "info"] | None = None
    scope: Scope | None = None
    description: str = ""


class GenericMatchExample(_Strict):
    text: str
    lang: str | None = None
    rule: str | None = None  # the rule expected to fire (any rule when omitted)
    note: str = ""


class GenericExamples(_Strict):
    match: list[GenericMatchExample] = Field(min_length=1)
    no_match: list[NoMatchExample] = Field(min_length=1)


class _PackHeader(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str
    description: str
    category: str
    severity: Literal["high", "medium", "low", "info"]
    languages: list[str] = Field(min_length=1)


class AiPackModel(_PackHeader):
    engine: Literal["ai_training"]
    settings: AiSettings = AiSettings()  # type: ignore[call-arg]
    rules: list[AiRuleModel] = Field(min_length=1)
    lexicons: dict[str, AiLexicon]
    examples: AiExamples


class GenericPackModel(_PackHeader):
    engine: Literal["generic"]
    scope: Scope = "sentence"
    lexicons: dict[str, dict[str, list[str]]] = {}
    rules: list[GenericRuleModel] = Field(min_length=1)
    examples: GenericExamples


# --------------------------------------------------------------------------- compiled forms


@dataclass(slots=True)
class RoleMatcher:
    """The compiled lexicon of one language: one alternation per role."""

    roles: dict[str, re.Pattern[str]]
    sets: dict[str, TermSet] = field(default_factory=dict)  # the same alternations

    def _pattern(self, role: str, lits: Lits) -> re.Pattern[str] | None:
        ts = self.sets.get(role)
        return self.roles.get(role) if ts is None else ts.pattern(lits)

    def find(self, role: str, text: str, lits: Lits = None) -> list[tuple[int, int]]:
        """Spans of ``role`` in ``text``; ``lits``: the text's literals (LiteralIndex)."""
        pat = self._pattern(role, lits)
        if pat is None:
            return []
        return [m.span() for m in pat.finditer(text) if m.end() > m.start()]

    def search(self, role: str, text: str, lits: Lits = None) -> bool:
        pat = self._pattern(role, lits)
        return pat is not None and pat.search(text) is not None


@dataclass(slots=True)
class GatedMatcher:
    """A :class:`RoleMatcher` that skips the roles a text's token bits rule out and matches
    the others with only the terms its literals allow."""

    m: RoleMatcher
    gate: TokenGate | None
    bits: int
    lits: Lits = None

    def find(self, role: str, text: str) -> list[tuple[int, int]]:
        if self.gate is not None and not self.gate.hit(ROLE_KEY[role], self.bits):
            return []
        return self.m.find(role, text, self.lits)

    def search(self, role: str, text: str) -> bool:
        if self.gate is not None and not self.gate.hit(ROLE_KEY[role], self.bits):
            return False
        return self.m.search(role, text, self.lits)


# TokenGate key of each role of an ai_training pack.
ROLE_KEY: dict[str, str] = {role: f"role:{role}" for role in AI_ROLES}


@dataclass(slots=True)
class Rule:
    id: str
    severity: str
    description: str
    when: str = ""  # ai_training engine: disclosure | narrow_ml | third_party | denial
    scope: str = "sentence"  # generic engine
    condition: CompiledCondition | None = None


@dataclass(slots=True)
class CompiledCondition:
    op: str  # "terms" | "near" | "all" | "any" | "not"
    pattern: re.Pattern[str] | None = None
    terms: list[str] = field(default_factory=list)  # source terms, for the prefilter
    near_terms: tuple[list[str], list[str]] = ([], [])
    near: tuple[re.Pattern[str], re.Pattern[str]] | None = None
    within: int = 0
    children: list[CompiledCondition] = field(default_factory=list)
    # TokenGate keys: the terms (or each side of "near") a text needs for this node to hold
    gate_keys: tuple[str, ...] = ()
    # ``pattern`` (or each side of ``near``) as a TermSet of the pack's LiteralIndex
    term_sets: tuple[TermSet, ...] = ()


@dataclass(slots=True)
class RulePack:
    """A validated, compiled rule pack."""

    id: str
    title: str
    description: str
    path: Path | None
    category: str
    severity: str
    languages: list[str]
    engine: str
    rules: list[Rule]
    examples: dict[str, list[dict[str, Any]]]
    prefilter: re.Pattern[str] | None
    settings: AiSettings | None = None
    # ai_training engine: matcher per language ("und" = every language merged)
    matchers: dict[str, RoleMatcher] = field(default_factory=dict)
    scope: str = "sentence"
    # Set-based prefilters of whole documents (key "pre" = what ``prefilter`` tests).
    gate: TokenGate | None = None
    role_gate: TokenGate | None = None  # ai_training: one key per role (ROLE_KEY)
    # The literals of every term of the pack (see TermSet); ai_training: the object and the
    # purpose terms of every language, which a unit needs both to be a training statement.
    index: LiteralIndex | None = None
    need: tuple[TermSet, ...] = ()
    # generic engine: the rules that may fire on a unit, by its ``gate`` bits (memo of a
    # pure function of the bits; a pack sees a few dozen distinct values)
    viable: dict[int, tuple[Rule, ...]] = field(default_factory=dict)

    def matcher(self, lang: str) -> RoleMatcher:
        return self.matchers.get(lang) or self.matchers["und"]

    def rule(self, when: str) -> Rule | None:
        for r in self.rules:
            if r.when == when:
                return r
        return None


# --------------------------------------------------------------------------- term syntax


def _is_upper_term(term: str) -> bool:
    letters = [c for c in term if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def term_to_regex(term: str) -> str:
    """Translate one lexicon term to a regex.

    - ``re:...``  a raw regular expression (case-insensitive);
    - ``train*``  ``*`` at a word end stands for any word ending (``*ing`` any beginning);
    - spaces match any run of spaces or a hyphen; ``'`` matches ' or ’;
    - a term written in CAPITALS (``AI``, ``KI``, ``LLM``) matches case-sensitively, so the
      Italian preposition "ai" is not the English "AI";
    - otherwise whole words, case-insensitive.
    """
    if term.startswith("re:"):
        return fold(term[3:].strip())
    raw = fold(term.strip())
    if not raw:
        raise ValueError("empty term")
    out: list[str] = []
    for ch in raw:
        if ch == "*":
            out.append(r"\w*")
        elif ch == " ":
            out.append(r"[\s\-]+")
        elif ch == "-":
            out.append(r"[\s\-]?")
        elif ch in "'’":
            out.append(r"['’]")
        else:
            out.append(re.escape(ch))
    body = "".join(out)
    core = raw.replace("*", "")
    if core and (core[0].isalnum() or core[0] == "_") and not raw.startswith("*"):
        body = r"\b" + body
    if core and (core[-1].isalnum() or core[-1] == "_") and not raw.endswith("*"):
        body = body + r"\b"
    if _is_upper_term(raw):
        body = f"(?-i:{body})"
    return body


@functools.lru_cache(maxsize=16_384)
def _checked_regex(term: str) -> str:
    """:func:`term_to_regex`, checked (raises re.error, ValueError).

    A pure function of the term, memoised: the built-in packs validate ~8,000 terms, ~2,000
    distinct (English terms join every language's matchers), more than the ``re`` module's
    own cache holds, and compiling each of them again was a third of loading the packs."""
    rx = term_to_regex(term)
    if term.startswith("re:"):
        # Only a raw pattern can be wrong: a plain term's regex is escaped characters and
        # the fixed pieces of term_to_regex, always valid.
        re.compile(rx, re.IGNORECASE)
    return rx


def _compile_terms(
    terms: Iterable[str], where: _Where, keep: Collection[int] | None = None
) -> re.Pattern[str] | None:
    """One alternation of ``terms`` (see :class:`_Alternation`)."""
    alt = _Alternation.build(list(terms), where)
    return None if alt is None else alt.compile(keep)


@dataclass(slots=True)
class _Alternation:
    """The alternatives of a list of terms, in the order and form the pattern tries them:
    ``grouped`` under a shared word-boundary test (and first-character classes), then
    ``rest``; each alternative carries the index of its term."""

    grouped: list[tuple[frozenset[str] | None, bool, list[tuple[int, str]]]]
    rest: list[tuple[int, str]]

    @staticmethod
    def build(terms: list[str], where: _Where) -> _Alternation | None:
        parts: list[tuple[int, str]] = []
        for i, t in enumerate(terms):
            if not isinstance(t, str):
                raise where.error(f"term {t!r} is not a string")
            try:
                rx = _checked_regex(t)
            except (re.error, ValueError) as exc:
                raise where.error(f"bad pattern {t!r}: {exc}") from None
            parts.append((i, f"(?:{rx})"))
        if not parts:
            return None
        # Longest alternatives first so a span covers "machine learning models", not
        # "machine".
        parts.sort(key=lambda p: len(p[1]), reverse=True)
        # One shared word-boundary test in front of the word-start terms is much cheaper
        # than one per alternative.
        at_word = [(i, p[5:-1]) for i, p in parts if p.startswith("(?:\\b")]
        rest = [(i, p) for i, p in parts if not p.startswith("(?:\\b")]
        # Case-sensitive word-start terms ("AI", "LLM*") join the shared word-boundary group
        # at its end: the same order of alternatives, as long as no other term came before
        # them.
        while (
            rest
            and (m := _UPPER_AT_WORD.fullmatch(rest[0][1]))
            and not _top_level_alternation(m.group(1))
        ):
            at_word.append((rest[0][0], f"(?-i:{m.group(1)})"))
            rest.pop(0)
        return _Alternation(_by_first_char(at_word), rest)

    def compile(self, keep: Collection[int] | None = None) -> re.Pattern[str] | None:
        """The pattern; with ``keep``, the same pattern with only the alternatives of those
        terms (indices), each in the very form it has in the full pattern, so that both find
        the same matches wherever the others cannot match."""
        out: list[str] = []
        for chars, group, items in self.grouped:
            kept = [a for i, a in items if keep is None or i in keep]
            if not kept:
                continue
            if not group:
                out.append(f"(?:{kept[0]})")
            else:
                assert chars is not None
                members = "".join(re.escape(c) for c in sorted(chars))
                rests = "|".join(f"(?:{it[1:]})" for it in kept)
                out.append(f"(?-i:[{members}])(?:{rests})")
        pieces = ([r"\b(?:" + "|".join(out) + ")"] if out else []) + [
            p for i, p in self.rest if keep is None or i in keep
        ]
        if not pieces:
            return None
        return re.compile("|".join(pieces), re.IGNORECASE)


_UPPER_AT_WORD = re.compile(r"\(\?:\(\?-i:\\b(.*)\)\)", re.DOTALL)


def _first_char(rx: str) -> str | None:
    """The letter or digit every match of ``rx`` starts with, if it is a plain literal."""
    if len(rx) < 2 or not (rx[0].isalnum() or rx[0] == "_") or rx[1] in "?*+{":
        return None
    if _top_level_alternation(rx):
        return None
    return rx[0]


def _case_chars(ch: str) -> frozenset[str]:
    """Every character that ``ch`` matches case-insensitively (the engine's own rules)."""
    chars = {ch, ch.lower(), ch.upper()}
    for c in list(chars):
        for extra in _EXTRA_CASES.get(ord(c.lower()), ()):
            chars.add(chr(extra))
    return frozenset(c for c in chars if len(c) == 1)


def _by_first_char(
    alts: list[tuple[int, str]],
) -> list[tuple[frozenset[str] | None, bool, list[tuple[int, str]]]]:
    """Alternatives grouped under their first character: ``[mM](?:odel\\w*|achine...)``.

    Python's regex engine tries every alternative at every word start, and under IGNORECASE
    it cannot reject one on its first character cheaply; a case-sensitive class in front of
    each group can be. Matches are unchanged: inside a group the order is kept, alternatives
    whose first characters cannot match the same text never compete, and an alternative
    without a known first character closes the run (keeping its place). (The class is made
    of ``_case_chars``, which misses a few characters IGNORECASE would take, "İ" for "i":
    a grouped alternative does not match them.)

    ``alts`` are ``(term index, regex)``; the result is ``(first characters, grouped?,
    alternatives)`` in pattern order.
    """
    out: list[tuple[frozenset[str] | None, bool, list[tuple[int, str]]]] = []
    run: dict[frozenset[str], list[tuple[int, str]]] = {}

    def flush() -> None:
        for chars, items in run.items():
            out.append((chars, len(items) > 1, items))
        run.clear()

    for i, a in alts:
        ch = _first_char(a)
        chars = _case_chars(ch) if ch is not None else None
        if chars is None or any(k != chars and k & chars for k in run):
            flush()
        if chars is None:
            out.append((None, False, [(i, a)]))
        else:
            run.setdefault(chars, []).append((i, a))
    flush()
    return out


@dataclass(slots=True)
class _Where:
    path: Path | None
    rule_id: str | None = None
    text: str = ""

    def error(self, problem: str, rule_id: str | None = None) -> RuleError:
        rid = rule_id or self.rule_id
        where = str(self.path) if self.path else None
        if where and rid and self.text:
            line = _line_of(self.text, rid)
            if line:
                where = f"{where}:{line}"
        return RuleError(problem, path=where, rule_id=rid)


def _line_of(text: str, needle: str) -> int | None:
    m = re.search(rf"^\s*-?\s*id:\s*['\"]?{re.escape(needle)}['\"]?\s*$", text, re.MULTILINE)
    if m is None:
        m = re.search(rf"^\s*{re.escape(needle)}\s*:", text, re.MULTILINE)
    return text.count("\n", 0, m.start()) + 1 if m else None


# --------------------------------------------------------------------------- prefilters

_RE_LITERAL = re.compile(r"(?:\\b|\^|\\W\*|\\s\*)*([^\W\d_]{2,})([?*{]?)")
# Escapes whose following characters are not literal letters (\x41, \u00e9, \N{...}, \1).
_OPAQUE_ESCAPE = re.compile(r"\\[xuUN0-9]")
_VERBOSE_FLAG = re.compile(r"\(\?[a-zA-Z]*x")


def _stem(term: str) -> tuple[str | None, str]:
    """A literal every match of ``term`` contains (lower-cased) and where it sits: a whole
    ``word``, at a word ``start``, or ``anywhere``. ``None`` when no literal of 2+ letters
    is guaranteed. The longest of :func:`_stem_choices` (the rarest, as a rule).

    A literal never contains whitespace, so it always lies inside one whitespace-delimited
    token of the matched text (:class:`TokenGate` relies on that).
    """
    choices = _stem_choices(term)
    if not choices:
        return None, ""
    return max(choices, key=lambda c: len(c[0]))  # the first of the longest


# A literal option: literals one of which every match of a term contains.
_Option = tuple[tuple[str, str], ...]

# Words that every policy is full of: the worst stems a token gate can have ("we train",
# "par notre modèle", "natural language processing", "neural network*"). Only the choice
# of stem depends on them, never what matches.
_COMMON_WORDS = frozenset(
    word
    for words in (
        "we our you your to by for of the and or with on in is are be it this that",
        "par pour de des du la le les et en au aux un une que qui nos notre",
        "el los las del por para con lo su sus",
        "il di da per che con del della dei gli",
        "de het een van te voor en op met die dat",
        "der die das und zu zum zur für mit von den dem ein eine",
        "processing network system data information content service services personal",
        "use used using purposes technology technologies",
    )
    for word in words.split()
)


def _stem_choices(term: str) -> list[tuple[str, str]]:
    """Every single literal (with its kind, see :func:`_stem`) that each match of ``term``
    contains, in the order of the term."""
    return [opt[0] for opt in _stem_options(term) if len(opt) == 1]


def _stem_options(term: str) -> list[_Option]:
    """Every :data:`_Option` of ``term``: its sure literals, and for a regex the literals of
    the alternatives of a group that every match goes through ("(?:lernen|lernt)")."""
    if term.startswith("re:"):
        body = fold(term[3:].strip())
        if body.startswith("(?-i:"):
            body = body[5:]
        if _OPAQUE_ESCAPE.search(body) or _VERBOSE_FLAG.search(body):
            return []
        return _regex_options(body)
    raw = fold(term.strip()).lower()
    # Every word of a plain term must occur. A hyphen in a term is optional in the text
    # ("AI-powered" matches "aipowered"), so a word next to one is not sure to start or end
    # a word of the text.
    out: list[_Option] = []
    for wm in re.finditer(r"[^\s\-'’.]+", raw):
        w = wm.group()
        glued_before = wm.start() > 0 and raw[wm.start() - 1] == "-"
        glued_after = wm.end() < len(raw) and raw[wm.end()] == "-"
        lit = w.strip("*").split("*")[0]
        if w.startswith("*") or glued_before:
            kind = "anywhere"
        elif "*" in w or lit != w or glued_after:
            kind = "start"
        else:
            kind = "word"
        if len(lit) >= 2 and lit.isalpha():
            out.append(((lit, kind),))
    core = raw.strip("*")
    if not out and len(core) >= 3 and not re.search(r"[\s\-'’*]", core):
        # "a.i.", "k.i.": dotted acronyms
        kind = "start" if core[0].isalnum() and not raw.startswith("*") else "anywhere"
        return [((core, kind),)]
    return out


def _regex_options(body: str) -> list[_Option]:
    if _top_level_alternation(body):
        # One alternative or another: an option only when each one has a literal.
        alts: list[tuple[str, str]] = []
        for alt in _split_alternatives(body):
            best = _best_option(_regex_options(alt))
            if best is None:
                return []
            alts.extend(best)
        return [tuple(dict.fromkeys(alts))]
    out: list[_Option] = []
    m = _RE_LITERAL.match(body)
    if m is not None:
        lit = m.group(1)[:-1] if m.group(2) else m.group(1)
        if len(lit) >= 2:
            out.append(((lit.lower(), "start" if body.startswith("\\b") else "anywhere"),))
    out += [((run, "anywhere"),) for run in _inner_literals(body)]
    for inner in _required_groups(body):
        # inside a group, where a word starts is no longer known: "anywhere" is what holds
        out += [tuple((lit, "anywhere") for lit, _ in opt) for opt in _regex_options(inner)]
    return out


def _best_option(options: list[_Option]) -> _Option | None:
    """The option that lets the fewest tokens through, as far as can be told: no common
    word among its literals, then the longest shortest literal."""
    if not options:
        return None
    return max(options, key=_option_rank)


def _option_rank(opt: _Option) -> tuple[bool, int]:
    return (not any(lit in _COMMON_WORDS for lit, _ in opt), min(len(lit) for lit, _ in opt))


def _required_groups(body: str) -> list[str]:
    """The bodies of the top-level groups of ``body`` that every match goes through: not
    optional, not repeated from zero, not negative lookarounds (a positive lookaround's
    text is in the searched text too)."""
    out: list[str] = []
    start = 0
    for i, ch, depth in _structure(body):
        if ch == "(" and depth == 0:
            start = i
        elif ch == ")" and depth == 0:
            group = body[start : i + 1]
            after = body[i + 1 : i + 3]
            optional = after[:1] in ("?", "*") or after.startswith("{0")
            head = _GROUP_HEAD.match(group)
            if not optional and head is not None:
                out.append(group[head.end() : -1])
    return out


def _structure(body: str) -> Iterator[tuple[int, str, int]]:
    """The "(", ")" and "|" of the regex ``body`` outside escapes and character classes,
    each with its position and the depth of groups around it (a group's own parentheses
    at the depth outside it)."""
    depth = 0
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            i = _class_end(body, i)
            continue
        if ch == "(":
            yield i, ch, depth
            depth += 1
        elif ch == ")":
            depth -= 1
            yield i, ch, depth
        elif ch == "|":
            yield i, ch, depth
        i += 1


# The openings of the groups whose text every match of the group contains: capturing,
# non-capturing, named, with inline flags, positive lookarounds.
_GROUP_HEAD = re.compile(r"\((?:\?(?:[a-zA-Z\-]*:|P<\w+>|=|<=))?(?!\?)")


def _split_alternatives(body: str) -> list[str]:
    """``body`` split at its top-level "|" (and at any "|" after an unbalanced ")")."""
    out: list[str] = []
    last = 0
    for i, ch, depth in _structure(body):
        if ch == "|" and depth <= 0:
            out.append(body[last:i])
            last = i + 1
    out.append(body[last:])
    return out


def _top_level_alternation(body: str) -> bool:
    # An unbalanced ")" (a slice of a larger pattern) counts as top level too.
    return any(ch == "|" and depth <= 0 for _, ch, depth in _structure(body))


def _class_end(body: str, i: int) -> int:
    """Index just past the character class opening at ``body[i] == "["``."""
    j = i + 1
    if j < len(body) and body[j] == "^":
        j += 1
    if j < len(body) and body[j] == "]":  # a leading "]" is a member, not the end
        j += 1
    while j < len(body):
        if body[j] == "\\":
            j += 2
            continue
        if body[j] == "]":
            return j + 1
        j += 1
    return len(body)


def _inner_literals(body: str) -> list[str]:
    """The runs of letters (lower-cased, 2+) that every match of the regex ``body`` must
    contain: outside groups and character classes, not quantified, with no top-level
    alternation."""
    depth = 0
    flat: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            flat.append("\0")
            i += 2
            continue
        if ch == "[":
            flat.append("\0")
            i = _class_end(body, i)
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            flat.append("\0")
        elif ch == "|" and depth == 0:
            return []
        elif depth == 0:
            flat.append(ch)
        i += 1
    runs = []
    for m in re.finditer(r"([^\W\d_]+)([?*{]?)", "".join(flat)):
        run = m.group(1)[:-1] if m.group(2) else m.group(1)
        if len(run) >= 2:
            runs.append(run.lower())
    return runs


def _trie(words: Iterable[str]) -> str:
    root: dict[str, Any] = {}
    for w in words:
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        end = "" in node
        alts = [re.escape(ch) + emit(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        # A stem that is a prefix of another ends the match early: that is enough for a
        # prefilter, which only needs to know that some stem occurs.
        if end:
            return ""
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(root)


def _trie_words(words: Iterable[str]) -> str:
    """A trie of whole words: a word may end only where the text's word ends."""
    root: dict[str, Any] = {}
    for w in words:
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + emit(sub) for ch, sub in sorted(node.items()) if ch]
        if "" in node:
            alts.append(r"\b")
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(root)


def _stem_groups(terms: Iterable[str]) -> tuple[dict[str, set[str]], list[str]]:
    """Literal stems of ``terms`` by kind, and the terms that have none.

    A term needs only one of its options (:func:`_stem_options`) as its stems. One that the
    stems of another term already let through lets no more tokens through, so it is taken
    when there is one; otherwise the best by :func:`_option_rank`.
    """
    groups: dict[str, set[str]] = {"word": set(), "start": set(), "anywhere": set()}
    slow: list[str] = []
    several: list[list[_Option]] = []
    for t in terms:
        options = list(dict.fromkeys(_stem_options(t)))
        if not options:
            slow.append(t)
        elif len(options) == 1:
            for lit, kind in options[0]:
                groups[kind].add(lit)
        else:
            several.append(options)
    for options in several:
        if any(all(_stem_covered(lit, kind, groups) for lit, kind in o) for o in options):
            continue
        best = _best_option(options)
        assert best is not None
        for lit, kind in best:
            groups[kind].add(lit)
    return groups, slow


def _stem_covered(lit: str, kind: str, groups: dict[str, set[str]]) -> bool:
    """Does every token holding ``lit`` (as ``kind`` says) hold one of ``groups``' stems?"""
    if any(s in lit for s in groups["anywhere"]):
        return True
    if kind == "anywhere":
        return False
    if any(lit.startswith(s) for s in groups["start"]):
        return True
    return kind == "word" and lit in groups["word"]


def _stem_alternatives(groups: dict[str, set[str]]) -> list[str]:
    parts: list[str] = []
    if groups["word"]:
        parts.append(r"\b" + _trie_words(groups["word"]))
    if groups["start"]:
        parts.append(r"\b" + _trie(groups["start"]))
    if groups["anywhere"]:
        parts.append(_trie(groups["anywhere"]))
    return parts


def build_prefilter(terms: Iterable[str]) -> re.Pattern[str] | None:
    """One fast regex over LOWER-CASED, folded text that every match of ``terms`` implies.

    Literal stems go into two character tries (word-start and anywhere); terms without a
    guaranteed literal are kept as whole case-insensitive patterns.
    """
    groups, slow_terms = _stem_groups(terms)
    slow = sorted({f"(?i:{term_to_regex(t)})" for t in slow_terms})
    parts = _stem_alternatives(groups) + slow
    return re.compile("|".join(parts)) if parts else None


# Token classifications kept per gate; past this many, the cache starts again (memory bound
# for a long-running process that sees unbounded vocabularies, e.g. URLs).
_GATE_CACHE_MAX = 100_000


class TokenGate:
    """Set-based prefilters: which terms a text may contain, judged from its tokens.

    Each *key* names a list of terms (a role, a rule condition). When every term of a key has
    a literal stem (:func:`_stem`), a text can only match one of them if one of its
    lower-cased, whitespace-delimited tokens contains a stem. So a document is split into
    tokens once, its distinct tokens are classified (cached across documents: policies share
    their vocabulary), and a unit is examined only if its tokens carry the bits it needs -
    set operations instead of regex passes over every unit. Keys with a stem-less term are
    not *sound*: :meth:`hit` then always answers True.
    """

    __slots__ = ("_any", "_memo", "_patterns", "masks")

    def __init__(self, keys: dict[str, list[str]]) -> None:
        self.masks: dict[str, int] = {}
        patterns: list[tuple[int, re.Pattern[str]]] = []
        every: dict[str, set[str]] = {"word": set(), "start": set(), "anywhere": set()}
        for key, terms in keys.items():
            groups, slow = _stem_groups(terms)
            parts = _stem_alternatives(groups)
            if slow or not parts:
                continue
            bit = 1 << len(patterns)
            self.masks[key] = bit
            patterns.append((bit, re.compile("|".join(parts))))
            for kind, stems in groups.items():
                every[kind] |= stems
        self._patterns = patterns
        alts = _stem_alternatives(every)
        self._any = re.compile("|".join(alts)) if alts else None
        self._memo: dict[str, int] = {}  # for mask(): every token seen, 0 included

    def sound(self, key: str) -> bool:
        return key in self.masks

    def hit(self, key: str, bits: int) -> bool:
        """May a text whose tokens carry ``bits`` match a term of ``key``?"""
        mask = self.masks.get(key)
        return mask is None or bool(bits & mask)

    def classify(self, tokens: set[str]) -> dict[str, int]:
        """The tokens that contain a stem (once folded and lower-cased), with their key bits.

        Tokens are taken as they are in the text: lower-casing and folding one token gives
        the token of the lower-cased, folded text (neither creates nor removes whitespace,
        and the one context-dependent lower-casing, final sigma, stops at whitespace)."""
        # One implementation of the cached classification: a group of this gate alone.
        return gate_group((self,)).classify(tokens)[0]

    def mask(self, tokens: list[str]) -> int:
        """OR of the key bits of ``tokens`` (one unit's)."""
        if self._any is None:
            return 0
        return _or_cached(self._memo, tokens, self._classify)

    def _classify(self, tok: str) -> int:
        assert self._any is not None
        tok = fold(tok).lower()
        if self._any.search(tok) is None:
            return 0
        b = 0
        for bit, pat in self._patterns:
            if pat.search(tok) is not None:
                b |= bit
        return b


class GateGroup:
    """Several packs' token gates classifying a document's tokens together.

    The same answers as each gate's :meth:`TokenGate.classify`, with one pass over the
    tokens that no gate has found a stem in yet (most of a document's) instead of one per
    gate: that difference of sets was most of the cost of classifying.
    """

    __slots__ = ("_bits", "_idle", "gates")

    def __init__(self, gates: tuple[TokenGate, ...]) -> None:
        self.gates = gates
        self._bits: dict[str, tuple[int, ...]] = {}  # tokens some gate finds a stem in
        self._idle: set[str] = set()  # tokens no gate finds a stem in

    def classify(self, tokens: set[str]) -> list[dict[str, int]]:
        """For each gate, ``gate.classify(tokens)``."""
        out: list[dict[str, int]] = [{} for _ in self.gates]
        bits_of = self._bits
        fresh: list[str] = []
        for tok in tokens - self._idle:
            bs = bits_of.get(tok)
            if bs is None:
                bs = tuple(g._classify(tok) if g._any is not None else 0 for g in self.gates)
                if not any(bs):
                    fresh.append(tok)
                    continue
                bits_of[tok] = bs
            for found, b in zip(out, bs, strict=True):
                if b:
                    found[tok] = b
        if len(self._idle) + len(fresh) > _GATE_CACHE_MAX:
            self._idle = set()
        self._idle.update(fresh)
        if len(bits_of) > _GATE_CACHE_MAX:
            self._bits = {}
        return out


@functools.lru_cache(maxsize=8)
def gate_group(gates: tuple[TokenGate, ...]) -> GateGroup:
    """The :class:`GateGroup` of ``gates`` (kept: its caches serve every later document
    analysed with the same packs)."""
    return GateGroup(gates)


def _or_cached(cache: dict[str, int], tokens: list[str], classify: Any) -> int:
    """OR of ``cache[t]`` over ``tokens``, classifying the tokens the cache lacks first.
    The OR runs in C (map, filter, reduce): a unit has tens of tokens, most of them known."""
    try:
        return functools.reduce(operator.or_, filter(None, map(cache.__getitem__, tokens)), 0)
    except KeyError:
        _fill(cache, tokens, classify)
    return functools.reduce(operator.or_, filter(None, map(cache.__getitem__, tokens)), 0)


def _fill(cache: dict[str, Any], tokens: list[str], classify: Any) -> None:
    """Classify the tokens ``cache`` lacks (emptied first when it has grown too big)."""
    if len(cache) > _GATE_CACHE_MAX:
        cache.clear()
    for tok in tokens:
        if tok not in cache:
            cache[tok] = classify(tok)


# --------------------------------------------------------------------------- term gates
#
# A TokenGate knows one stem per term; a term of several words ("training program*") or a
# regex ("\byou\s+(?:hereby\s+)?grant\b") needs all of its literals in the text, which is a
# much sharper test. The literals of every term are indexed per pack; a unit's tokens give
# the set of literals it holds (a bit mask), and an alternation of terms is then matched
# with only the terms whose literals are all there: none (no regex at all), a few (a small
# pattern, compiled once per subset) or all (the full pattern). Matches are unchanged: at
# every position the alternation tries its terms in order, and a term that cannot match
# anywhere in the text cannot change which one matches first.
#
# This test must hold for every text the full pattern can match, so literals are compared
# as re.IGNORECASE compares characters (case_key), not as str.lower() does.


def _case_classes() -> dict[int, str]:
    """Each character with case-insensitive equivalents beyond lower-casing (re's own
    table: ſ/s, ı/i, ς/σ...) mapped to one representative of its class (the smallest)."""
    parent: dict[int, int] = {}

    def find(c: int) -> int:
        while parent.get(c, c) != c:
            c = parent[c]
        return c

    for c, extras in _EXTRA_CASES.items():
        for e in extras:
            a, b = find(c), find(e)
            if a != b:
                parent[max(a, b)] = min(a, b)
    members = set(_EXTRA_CASES) | {e for extras in _EXTRA_CASES.values() for e in extras}
    return {c: chr(find(c)) for c in members if find(c) != c}


_CASE_REP = _case_classes()


def case_key(text: str) -> str:
    """``text`` with each character replaced by a representative of the characters that
    match it under re.IGNORECASE: its simple lower case (str.lower() is the full one, which
    differs only for "İ", mapped to "i" first), then re's extra equivalences. Two characters
    of the same key are all the engine needs to match a term's character to a text's."""
    if text.isascii():
        return text.lower()
    return text.replace("İ", "i").lower().translate(_CASE_REP)


def _is_word_char(ch: str) -> bool:
    # re's \w and \b for str patterns: alphanumeric or underscore.
    return ch.isalnum() or ch == "_"


# Literal kinds: where the literal sits in a token, as \b sees it.
Kind = Literal["word", "start", "end", "anywhere"]


def _kind(left: bool, right: bool) -> Kind:
    if left and right:
        return "word"
    if left:
        return "start"
    if right:
        return "end"
    return "anywhere"


# re's own parser (untyped, internal like _casefix): what a regex term guarantees is read
# from its parse tree.
_RE_PARSER: Any = importlib.import_module("re._parser")
_RE_CONSTANTS: Any = importlib.import_module("re._constants")


def _plain_literals(raw: str) -> list[tuple[str, Kind]]:
    """Literals of a plain term (see :func:`term_to_regex`): its runs between spaces,
    hyphens, apostrophes and ``*``. A side of a run is a word boundary in every match when
    the term's regex puts one there: the term's own ``\\b`` at its ends, or a space or an
    apostrophe (never a word character) next to it; a hyphen is optional and ``*`` is
    ``\\w*``, so a run next to one may be glued to a word."""
    out: list[tuple[str, Kind]] = []
    for m in re.finditer(r"[^\s\-'’*]+", raw):
        lit = m.group()
        a, b = m.start(), m.end()
        # At the term's ends, term_to_regex puts \b next to a word character.
        left = _is_word_char(lit[0]) and (a == 0 or raw[a - 1] not in "-*")
        right = _is_word_char(lit[-1]) and (b == len(raw) or raw[b] not in "-*")
        out.append((case_key(lit), _kind(left, right)))
    return out


def _regex_literals(body: str) -> list[tuple[str, Kind]]:
    """Literal runs every match of the regex ``body`` contains (case-insensitively), with
    the word boundaries the regex guarantees around them. Conservative: groups in an
    alternation, optional or repeated parts, lookarounds and backreferences are skipped."""
    c = _RE_CONSTANTS
    try:
        tree = _RE_PARSER.parse(body, re.IGNORECASE)
    except re.error:
        return []
    out: list[tuple[str, Kind]] = []
    run: list[str] = []
    left = False

    def flush(right: bool) -> None:
        nonlocal run
        if run:
            lit = "".join(run)
            out.append((case_key(lit), _kind(left and _is_word_char(lit[0]), right)))
        run = []

    def non_word_set(items: Any) -> bool:
        """Does the character set ``items`` (IN) only match non-word characters?"""
        for op, av in items:
            if op is c.LITERAL:
                if _is_word_char(chr(av)):
                    return False
            elif op is c.CATEGORY:
                if av not in (c.CATEGORY_SPACE, c.CATEGORY_NOT_WORD):
                    return False
            else:
                return False
        return True

    def walk(seq: Any) -> None:
        nonlocal left
        for op, av in seq:
            if op is c.LITERAL:
                ch = chr(av)
                if ch.isspace():  # a token never holds whitespace
                    flush(bool(run) and _is_word_char(run[-1]))
                    left = True
                else:
                    run.append(ch)
            elif op is c.SUBPATTERN:
                walk(av[-1])
            elif (op is c.AT and av is c.AT_BOUNDARY) or (op is c.IN and non_word_set(av)):
                # \b, or a character that is no word character: a boundary on both sides
                flush(bool(run) and _is_word_char(run[-1]))
                left = True
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
                lo, _hi, item = av
                simple = len(item) == 1 and item[0][0] is c.IN and non_word_set(item[0][1])
                if lo >= 1 and simple:  # \s+, [\s\-]+: a non-word character on both sides
                    flush(bool(run) and _is_word_char(run[-1]))
                    left = True
                    continue
                flush(False)
                left = False
                if lo >= 1:
                    walk(item)  # its first repetition is required
                    flush(False)
                left = False
            else:
                flush(False)
                left = False

    walk(tree)
    flush(False)
    return out


def term_literals(term: str) -> list[tuple[str, Kind]]:
    """Literals (case keys, without whitespace) that every match of ``term`` contains, each
    inside one whitespace-delimited token of the matched text, and where it sits there."""
    return list(_term_literals(term))


@functools.lru_cache(maxsize=16_384)
def _term_literals(term: str) -> tuple[tuple[str, Kind], ...]:
    # Memoised (a pure function of the term): loading the packs asks for the literals of
    # ~10,000 terms, ~2,000 distinct, and a regex term's costs a parse of its pattern.
    if term.startswith("re:"):
        lits = _regex_literals(fold(term[3:].strip()))
    else:
        lits = _plain_literals(fold(term.strip()))
    # A one-character literal anywhere in a token rules out next to nothing.
    return tuple((lit, kind) for lit, kind in lits if kind != "anywhere" or len(lit) >= 2)


# The literals a text holds: ids in a LiteralIndex; None: unknown (every term may match).
Lits = frozenset[int] | None
_NO_LITS: frozenset[int] = frozenset()


class LiteralIndex:
    """Which term literals a text holds, judged from its tokens (cached per token)."""

    __slots__ = ("_cache", "_odd", "_runs", "ids")

    def __init__(self, literals: Iterable[tuple[str, Kind]]) -> None:
        self.ids: dict[tuple[str, Kind], int] = {}
        for lk in literals:
            if lk not in self.ids:
                self.ids[lk] = len(self.ids)
        # Literals of word characters only lie inside one run of word characters of a
        # token: found by dictionary look-ups on its runs, their prefixes, suffixes and
        # substrings of the lengths that occur. Others ("x.ai", "6(1)") are searched for.
        by_kind: dict[str, dict[str, int]] = {k: {} for k in ("word", "start", "end", "anywhere")}
        self._odd: list[tuple[str, Kind, int]] = []
        for (lit, kind), i in self.ids.items():
            if lit and all(_is_word_char(ch) for ch in lit):
                by_kind[kind][lit] = i
            else:
                self._odd.append((lit, kind, i))
        lengths = {k: sorted({len(x) for x in d}) for k, d in by_kind.items()}
        self._runs = (by_kind, lengths)
        self._cache: dict[str, frozenset[int]] = {}

    def mask(self, tokens: list[str]) -> frozenset[int]:
        """The literals ``tokens`` hold. (Sets of ids, not bit masks: OR-ing big integers
        per token costs more than a union of small sets, done in C.)"""
        cache = self._cache
        # Most tokens hold no literal: filtered out (in C) rather than merged, half the cost.
        try:
            return _NO_LITS.union(*filter(None, map(cache.__getitem__, tokens)))
        except KeyError:
            _fill(cache, tokens, self._classify)
        return _NO_LITS.union(*filter(None, map(cache.__getitem__, tokens)))

    def _classify(self, tok: str) -> frozenset[int]:
        if not self.ids:
            return _NO_LITS
        key = case_key(fold(tok))
        by_kind, lengths = self._runs
        words, starts, ends, anywhere = (
            by_kind["word"],
            by_kind["start"],
            by_kind["end"],
            by_kind["anywhere"],
        )
        found: set[int] = set()
        for run in _WORD_RUN.findall(key):
            n = len(run)
            if run in words:
                found.add(words[run])
            for k in lengths["start"]:
                if k > n:
                    break
                if run[:k] in starts:
                    found.add(starts[run[:k]])
            for k in lengths["end"]:
                if k > n:
                    break
                if run[n - k :] in ends:
                    found.add(ends[run[n - k :]])
            for k in lengths["anywhere"]:
                if k > n:
                    break
                for i in range(n - k + 1):
                    if run[i : i + k] in anywhere:
                        found.add(anywhere[run[i : i + k]])
        for lit, kind, i in self._odd:
            if i not in found and _holds(key, lit, kind):
                found.add(i)
        return frozenset(found) if found else _NO_LITS


_WORD_RUN = re.compile(r"\w+")


def _holds(key: str, lit: str, kind: Kind) -> bool:
    """Does ``lit`` occur in ``key`` with the word boundaries ``kind`` asks for?"""
    i = key.find(lit)
    while i >= 0:
        j = i + len(lit)
        left = i == 0 or not _is_word_char(key[i - 1])
        right = j == len(key) or not _is_word_char(key[j])
        if kind == "anywhere" or ((left or kind == "end") and (right or kind == "start")):
            return True
        i = key.find(lit, i + 1)
    return False


# A pattern subset per distinct set of possible terms, compiled once; past this many per
# term set, the cache starts again.
_SUBSET_CACHE_MAX = 512


class TermSet:
    """An alternation of terms that can be matched with only the terms a text may hold."""

    __slots__ = ("_always", "_anchors", "_cache", "_compile", "anchor_ids", "full", "n")

    def __init__(
        self,
        terms: list[str],
        full: re.Pattern[str] | None,
        index: LiteralIndex | None,
        compile_subset: Any = None,
    ) -> None:
        self.full = full
        self.n = len(terms)
        self._compile = compile_subset
        self._cache: dict[tuple[int, ...], re.Pattern[str]] = {}
        # Each term that needs literals hangs on one of them (its anchor, the longest): only
        # the terms of the anchors a text holds are examined.
        self._anchors: dict[int, list[tuple[int, frozenset[int]]]] = {}
        self._always: list[int] = []
        for i, t in enumerate(terms):
            lits = [lk for lk in term_literals(t) if index is not None and lk in index.ids]
            if not lits:
                self._always.append(i)
                continue
            assert index is not None
            req = frozenset(index.ids[lk] for lk in lits)
            anchor = index.ids[max(lits, key=lambda lk: len(lk[0]))]
            self._anchors.setdefault(anchor, []).append((i, req))
        self.anchor_ids = frozenset(self._anchors)

    def possible(self, lits: Lits) -> list[int]:
        """Indices (in order) of the terms whose literals are all in ``lits``."""
        if lits is None:
            return list(range(self.n))
        out = list(self._always)
        held = self.anchor_ids & lits
        if not held:  # most roles in most units
            return out
        for a in held:
            for i, req in self._anchors[a]:
                if req <= lits:
                    out.append(i)
        out.sort()
        return out

    def may_match(self, lits: Lits) -> bool:
        if lits is None or self._always:
            return True
        for a in self.anchor_ids & lits:
            for _i, req in self._anchors[a]:
                if req <= lits:
                    return True
        return False

    def pattern(self, lits: Lits) -> re.Pattern[str] | None:
        """The pattern to match a text holding the literals ``lits`` with (None: no term
        can match)."""
        if lits is None:
            return self.full
        idx = self.possible(lits)
        if not idx:
            return None
        if len(idx) == self.n or self._compile is None:
            return self.full
        key = tuple(idx)
        pat = self._cache.get(key)
        if pat is None:
            if len(self._cache) > _SUBSET_CACHE_MAX:
                self._cache.clear()
            pat = self._cache[key] = self._compile(idx)
        return pat


# --------------------------------------------------------------------------- loading


def load_pack_file(path: Path) -> RulePack:
    """Read, validate and compile one pack file; :class:`RuleError` on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"cannot read: {exc}", path=str(path)) from None
    return load_pack_text(text, path)


def load_pack_text(text: str, path: Path | None = None) -> RulePack:
    where = _Where(path, text=text)
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{path}:{mark.line + 1}" if mark is not None and path else str(path)
        raise RuleError(f"invalid YAML: {exc}", path=loc) from None
    if not isinstance(data, dict):
        raise where.error("a rule pack must be a YAML mapping")
    engine = data.get("engine")
    model_cls: type[AiPackModel] | type[GenericPackModel]
    if engine == "ai_training":
        model_cls = AiPackModel
    elif engine == "generic":
        model_cls = GenericPackModel
    else:
        raise where.error(f"engine must be 'ai_training' or 'generic' (got {engine!r})")
    try:
        model = model_cls.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, data, where) from None
    if isinstance(model, AiPackModel):
        return _compile_ai(model, where)
    return _compile_generic(model, where)


def _load_yaml(text: str) -> Any:
    """``yaml.safe_load``, through libyaml when PyYAML was built with it (ten times faster on
    the 130 KB ai-training pack). A document libyaml rejects is parsed again by the pure
    Python loader, so that a broken pack's error (and its line) reads as it always did."""
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is not None:
        try:
            return yaml.load(text, Loader=loader)
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def _validation_error(exc: ValidationError, data: dict[str, Any], where: _Where) -> RuleError:
    err = exc.errors()[0]
    loc = err.get("loc", ())
    rule_id: str | None = None
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = data.get("rules") or []
        if loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
            rule_id = str(rules[loc[1]].get("id") or f"#{loc[1] + 1}")
    key = ".".join(str(p) for p in loc)
    msg = err.get("msg", "invalid")
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    return where.error(f"{key}: {msg}" if key else msg, rule_id)


def _compile_ai(model: AiPackModel, where: _Where) -> RulePack:
    where.rule_id = None
    for lang, lex in model.lexicons.items():
        if not lex.purpose and not lex.purpose_weak:
            raise where.error(f"lexicons.{lang}: no purpose terms", f"lexicons.{lang}")
    if "en" not in model.lexicons:
        raise where.error("the ai_training engine needs an 'en' lexicon", "lexicons")

    # Validated by _compile_terms below before their literals are taken.
    index: LiteralIndex | None = None
    pending: list[tuple[RoleMatcher, str, list[str], _Where]] = []

    def build(langs: list[str]) -> RoleMatcher:
        roles: dict[str, re.Pattern[str]] = {}
        matcher = RoleMatcher(roles)
        for role in AI_ROLES:
            terms: list[str] = []
            for lg in langs:
                terms.extend(getattr(model.lexicons[lg], role))
            w = _Where(where.path, f"lexicons.{'+'.join(langs)}.{role}", where.text)
            pat = _compile_terms(terms, w)
            if pat is not None:
                roles[role] = pat
                pending.append((matcher, role, terms, w))
        return matcher

    matchers: dict[str, RoleMatcher] = {}
    for lang in model.lexicons:
        matchers[lang] = build([lang] if lang == "en" else [lang, "en"])
    matchers["und"] = build(list(model.lexicons))
    index = LiteralIndex(
        lk
        for lex in model.lexicons.values()
        for role in AI_ROLES
        for t in getattr(lex, role)
        for lk in term_literals(t)
    )
    for matcher, role, terms, w in pending:
        matcher.sets[role] = TermSet(terms, matcher.roles[role], index, _subsets(terms, w))
    whens = {r.when for r in model.rules}
    if "disclosure" not in whens:
        raise where.error("the ai_training engine needs a rule with when: disclosure", "rules")
    rules = [
        Rule(id=r.id, severity=r.severity or model.severity, description=r.description, when=r.when)
        for r in model.rules
    ]
    _check_unique([r.id for r in rules], where)
    # Every training statement needs an AI object (or an intrinsically-AI purpose term that
    # the object lexicon also covers), so object terms are the cheapest sound prefilter.
    pre_terms: list[str] = []
    for lex in model.lexicons.values():
        pre_terms.extend(lex.object)
        pre_terms.extend(lex.object_narrow)
    prefilter = build_prefilter(pre_terms)
    purpose_terms: list[str] = []
    for lex in model.lexicons.values():
        purpose_terms.extend(lex.purpose)
        purpose_terms.extend(lex.purpose_weak)
    need = (TermSet(pre_terms, None, index), TermSet(purpose_terms, None, index))
    gate = TokenGate({"pre": pre_terms, "purpose": purpose_terms})
    # Kept apart: role terms ("you", "data", "not") are in most tokens, and only candidate
    # units need them.
    role_gate = TokenGate(
        {
            ROLE_KEY[role]: [t for lex in model.lexicons.values() for t in getattr(lex, role)]
            for role in AI_ROLES
        }
    )
    return RulePack(
        id=model.id,
        title=model.title,
        description=model.description,
        path=where.path,
        category=model.category,
        severity=model.severity,
        languages=list(model.languages),
        engine="ai_training",
        rules=rules,
        examples={
            "match": [e.model_dump() for e in model.examples.match],
            "no_match": [e.model_dump() for e in model.examples.no_match],
        },
        prefilter=prefilter,
        settings=model.settings,
        matchers=matchers,
        gate=gate,
        role_gate=role_gate,
        index=index,
        need=need,
    )


def _check_unique(ids: list[str], where: _Where) -> None:
    seen: set[str] = set()
    for rid in ids:
        if rid in seen:
            raise where.error("duplicate rule id", rid)
        seen.add(rid)


def _compile_generic(model: GenericPackModel, where: _Where) -> RulePack:
    lexicons: dict[str, list[str]] = {}
    for lang_lex in model.lexicons.values():
        for name, terms in lang_lex.items():
            lexicons.setdefault(name, []).extend(terms)
    compiled_lex: dict[str, re.Pattern[str]] = {}
    for name, terms in lexicons.items():
        pat = _compile_terms(terms, _Where(where.path, f"lexicon {name}", where.text))
        if pat is not None:
            compiled_lex[name] = pat
    positive: list[str] = []
    rules: list[Rule] = []
    for r in model.rules:
        w = _Where(where.path, r.id, where.text)
        cond = _compile_condition(r.when, compiled_lex, w, positive, lexicons)
        rules.append(
            Rule(
                id=r.id,
                severity=r.severity or model.severity,
                description=r.description,
                scope=r.scope or model.scope,
                condition=cond,
            )
        )
    _check_unique([r.id for r in rules], where)
    required: list[str] = []
    for rule in rules:
        assert rule.condition is not None
        req = _required_terms(rule.condition)
        if not req:
            raise where.error(
                "the rule needs terms a unit must contain (a condition that is only 'not')",
                rule.id,
            )
        required.extend(req)
    prefilter = build_prefilter(required)
    gate_terms: dict[str, list[str]] = {"pre": required}
    for rule in rules:
        assert rule.condition is not None
        _assign_gate_keys(rule.condition, gate_terms)
    index = LiteralIndex(
        lk for rule in rules for t in _all_terms(rule.condition) for lk in term_literals(t)
    )
    for rule in rules:
        assert rule.condition is not None
        _assign_term_sets(rule.condition, index, _Where(where.path, rule.id, where.text))
    return RulePack(
        id=model.id,
        title=model.title,
        description=model.description,
        path=where.path,
        category=model.category,
        severity=model.severity,
        languages=list(model.languages),
        engine="generic",
        rules=rules,
        examples={
            "match": [e.model_dump() for e in model.examples.match],
            "no_match": [e.model_dump() for e in model.examples.no_match],
        },
        prefilter=prefilter,
        scope=model.scope,
        gate=TokenGate(gate_terms),
        index=index,
    )


def _ref_pattern(
    ref: str,
    lex: dict[str, re.Pattern[str]],
    where: _Where,
    positive: list[str],
    raw_lex: dict[str, list[str]],
    negated: bool,
) -> re.Pattern[str]:
    """``@name`` is a lexicon, anything else one term."""
    if ref.startswith("@"):
        name = ref[1:]
        if name not in lex:
            raise where.error(f"unknown lexicon {ref!r}")
        if not negated:
            positive.extend(term_to_regex(t) for t in raw_lex[name])
        return lex[name]
    pat = _compile_terms([ref], where)
    assert pat is not None
    if not negated:
        positive.append(term_to_regex(ref))
    return pat


def _compile_condition(
    c: Condition,
    lex: dict[str, re.Pattern[str]],
    where: _Where,
    positive: list[str],
    raw_lex: dict[str, list[str]],
    negated: bool = False,
) -> CompiledCondition:
    if c.keywords is not None:
        pat = _compile_terms(c.keywords, where)
        if pat is None:
            raise where.error("keywords: empty list")
        if not negated:
            positive.extend(term_to_regex(t) for t in c.keywords)
        return CompiledCondition("terms", pattern=pat, terms=list(c.keywords))
    if c.regex is not None:
        try:
            pat = re.compile(fold(c.regex), re.IGNORECASE)
        except re.error as exc:
            raise where.error(f"bad regex {c.regex!r}: {exc}") from None
        if not negated:
            positive.append(fold(c.regex))
        return CompiledCondition("terms", pattern=pat, terms=["re:" + c.regex])
    if c.lexicon is not None:
        pat = _ref_pattern("@" + c.lexicon, lex, where, positive, raw_lex, negated)
        return CompiledCondition("terms", pattern=pat, terms=list(raw_lex[c.lexicon]))
    if c.near is not None:
        a = _ref_pattern(c.near[0], lex, where, positive, raw_lex, negated)
        b = _ref_pattern(c.near[1], lex, where, positive, raw_lex, negated)
        return CompiledCondition(
            "near",
            near=(a, b),
            within=c.within or 10,
            near_terms=(_ref_terms(c.near[0], raw_lex), _ref_terms(c.near[1], raw_lex)),
        )
    if c.all is not None:
        kids = [_compile_condition(k, lex, where, positive, raw_lex, negated) for k in c.all]
        return CompiledCondition("all", children=kids)
    if c.any is not None:
        kids = [_compile_condition(k, lex, where, positive, raw_lex, negated) for k in c.any]
        return CompiledCondition("any", children=kids)
    assert c.not_ is not None
    kid = _compile_condition(c.not_, lex, where, positive, raw_lex, not negated)
    return CompiledCondition("not", children=[kid])


def _assign_gate_keys(c: CompiledCondition, keys: dict[str, list[str]]) -> None:
    """Name the term lists of ``c``'s positive nodes for the pack's :class:`TokenGate`."""
    if c.op == "terms":
        c.gate_keys = (f"c{len(keys)}",)
        keys[c.gate_keys[0]] = c.terms
    elif c.op == "near":
        c.gate_keys = (f"c{len(keys)}", f"c{len(keys) + 1}")
        keys[c.gate_keys[0]] = c.near_terms[0]
        keys[c.gate_keys[1]] = c.near_terms[1]
    elif c.op in ("all", "any"):
        for k in c.children:
            _assign_gate_keys(k, keys)
    # "not": nothing a text must contain


def _subsets(terms: list[str], where: _Where) -> Any:
    """How a TermSet of ``terms`` (compiled with _compile_terms) compiles a subset."""
    built: list[_Alternation] = []  # on first use: most term sets never need a subset

    def compile_subset(idx: list[int]) -> re.Pattern[str]:
        if not built:
            alt = _Alternation.build(terms, where)
            assert alt is not None
            built.append(alt)
        pat = built[0].compile(set(idx))
        assert pat is not None
        return pat

    return compile_subset


def _all_terms(c: CompiledCondition | None) -> list[str]:
    if c is None:
        return []
    own = c.terms + c.near_terms[0] + c.near_terms[1]
    return own + [t for k in c.children for t in _all_terms(k)]


def _assign_term_sets(c: CompiledCondition, index: LiteralIndex, where: _Where) -> None:
    """Give ``c``'s term nodes their TermSets (of the terms and patterns _compile_condition
    made; one term, e.g. a ``regex`` node, is never recompiled)."""
    if c.op == "terms":
        assert c.pattern is not None
        subsets = _subsets(c.terms, where) if len(c.terms) > 1 else None
        c.term_sets = (TermSet(c.terms, c.pattern, index, subsets),)
    elif c.op == "near":
        assert c.near is not None
        c.term_sets = tuple(
            TermSet(terms, pat, index, _subsets(terms, where))
            for terms, pat in zip(c.near_terms, c.near, strict=True)
        )
    for k in c.children:
        _assign_term_sets(k, index, where)


def _ref_terms(ref: str, raw_lex: dict[str, list[str]]) -> list[str]:
    return list(raw_lex[ref[1:]]) if ref.startswith("@") else [ref]


def _required_terms(c: CompiledCondition) -> list[str]:
    """Terms of which at least one must occur for ``c`` to hold ([] = no guarantee).

    For ``all`` the first child that guarantees terms is used, for ``near`` its first side:
    pack authors put the rarest condition first (rules/README.md) to keep the prefilter fast.
    """
    if c.op == "terms":
        return c.terms
    if c.op == "near":
        return c.near_terms[0]
    if c.op == "all":
        for k in c.children:
            req = _required_terms(k)
            if req:
                return req
        return []
    if c.op == "any":
        out: list[str] = []
        for k in c.children:
            req = _required_terms(k)
            if not req:
                return []
            out.extend(req)
        return out
    return []

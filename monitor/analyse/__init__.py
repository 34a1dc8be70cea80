"""The analyser: segmentation, language detection and rule packs over policy text.

Pure functions of their inputs (no I/O except reading rule-pack files in :func:`load_packs`).

>>> a = analyse_text("We use your posts to train our AI models. You can opt out in Settings.")
>>> a.ai_training, a.consent.value
(True, 'opt_out')
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import Any

import monitor
from monitor.analyse.cache import PLAIN, AnalysisCache, gate_hits
from monitor.analyse.engine import (
    ALL_BITS,
    HEADING_JOIN,
    Assessment,
    Spans,
    UnitVerdict,
    assess_unit,
    heading_states_training,
    may_hold,
    under_training_heading,
)
from monitor.analyse.lang import detect_language
from monitor.analyse.rules import (
    GatedMatcher,
    LiteralIndex,
    Lits,
    RoleMatcher,
    Rule,
    RulePack,
    TokenGate,
    fold,
    gate_group,
    load_pack_file,
)
from monitor.analyse.segment import segment
from monitor.errors import RuleError
from monitor.extract import clean_characters
from monitor.models import Analysis, Consent, Finding, Span, Unit

__all__ = [
    "AnalysisCache",
    "ExampleResult",
    "RulePack",
    "analyse_text",
    "analyse_unit",
    "builtin_rules_dir",
    "detect_language",
    "load_packs",
    "run_pack_examples",
    "segment",
]

AI_CATEGORY = "ai_training"


def builtin_rules_dir() -> Path:
    """The packs shipped with the package (wheel) or the checkout's ``rules/``."""
    inside = Path(monitor.__file__).resolve().parent / "_rules"
    if inside.is_dir():
        return inside
    return Path(monitor.__file__).resolve().parent.parent / "rules"


def load_packs(paths: Sequence[Path] | None = None) -> list[RulePack]:
    """Load and compile rule packs: files, or directories of ``*.yaml``; ``None`` = built-in.

    Raises :class:`monitor.errors.RuleError` naming the file, the rule id and the problem.
    """
    if paths is None:
        return list(_builtin_packs(str(builtin_rules_dir())))
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]))
        elif p.exists():
            files.append(p)
        else:
            raise RuleError("no such rule file or directory", path=str(p))
    packs = [load_pack_file(f) for f in files]
    seen: dict[str, Path | None] = {}
    for pk in packs:
        if pk.id in seen:
            raise RuleError(f"pack id {pk.id!r} also defined in {seen[pk.id]}", path=str(pk.path))
        seen[pk.id] = pk.path
    return packs


@functools.lru_cache(maxsize=4)
def _builtin_packs(directory: str) -> tuple[RulePack, ...]:
    # Compiled packs are never mutated after loading, so sharing them between calls is safe
    # and spares every analyse_text(text) call a YAML parse.
    return tuple(load_packs([Path(directory)]))


def _resolve(packs: Sequence[RulePack] | None) -> Sequence[RulePack]:
    return _builtin_packs(str(builtin_rules_dir())) if packs is None else packs


# --------------------------------------------------------------------------- HTML input

_HTML_HINT = re.compile(r"<(?:!doctype|html|body|p|div|li|h[1-6]|section|article|span)\b", re.I)
_BLOCK_TAGS = ("p", "div", "section", "article", "br", "tr", "table", "ul", "ol", "dl", "dd", "dt")


def looks_like_html(text: str) -> bool:
    head = text[:5000]
    return bool(_HTML_HINT.search(head)) and "</" in text[:50000]


def html_to_blocks(html: str) -> str:
    """Minimal HTML -> block text (headings ``#``, list items ``- ``, paragraphs)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    for tag in soup(["script", "style", "noscript", "template", "svg"]):
        tag.decompose()
    for level in range(1, 7):
        for h in soup.find_all(f"h{level}"):
            h.insert(0, "\n\n" + "#" * level + " ")
            h.append("\n\n")
    for li in soup.find_all("li"):
        li.insert(0, "\n\n- ")
        li.append("\n\n")
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.append("\n\n")
    text = soup.get_text()
    blocks = []
    for raw in re.split(r"\n\s*\n", text):
        block = " ".join(raw.split())
        if block and block not in {"-", "#"}:
            blocks.append(block)
    return "\n\n".join(blocks)


# --------------------------------------------------------------------------- analysis


def _finding(
    pack: RulePack,
    rule: Rule,
    unit: Unit,
    lang: str,
    *,
    ai_training: bool,
    consent: Consent,
    negated: bool,
    spans: list[Span],
    cues: list[str] | None = None,
) -> Finding:
    return Finding(
        pack=pack.id,
        rule_id=rule.id,
        category=pack.category,
        severity=rule.severity,
        unit_index=unit.index,
        unit_text=unit.text,
        start=unit.start,
        end=unit.end,
        heading_path=unit.heading_path,
        lang=lang,
        ai_training=ai_training,
        consent=consent,
        negated=negated,
        spans=spans,
        consent_cues=cues or [],
    )


def _ai_finding(pack: RulePack, unit: Unit, lang: str, v: UnitVerdict) -> Finding:
    rule = pack.rule(v.when) or pack.rule("disclosure")
    assert rule is not None
    return _finding(
        pack,
        rule,
        unit,
        lang,
        ai_training=v.ai_training,
        consent=v.consent,
        negated=v.negated,
        spans=v.spans,
        cues=v.consent_cues,
    )


def _summarise(lang: str, findings: list[Finding], unit_count: int) -> Analysis:
    training = [f for f in findings if f.category == AI_CATEGORY]
    positive = [f for f in training if f.ai_training]
    consent = (
        min((f.consent for f in positive), key=lambda c: c.strength) if positive else Consent.NA
    )
    return Analysis(
        lang=lang,
        ai_training=bool(positive),
        consent=consent,
        negated=any(f.negated for f in training),
        findings=findings,
        unit_count=unit_count,
    )


class _Doc:
    """One document's units and, computed once on first use, what the prefilters need.

    Tokens are whitespace-delimited and taken as they are in the text; the gates fold and
    lower-case them themselves (once per distinct token, cached across documents).
    """

    def __init__(self, text: str, units: list[Unit], cache: AnalysisCache | None = None) -> None:
        self.text = text
        self.units = units
        # With a cache, a unit's token facts (bits, literals, whether a pack's prefilter
        # hits it) are memoised by its text across the versions of the document, and the
        # unit is not split into tokens again.
        self.cache = cache
        self._bits: dict[tuple[int, int], int] = {}
        self._lits: dict[tuple[int, int], frozenset[int]] = {}

    @functools.cached_property
    def lowered(self) -> str | None:
        """Folded, lower-cased text with the offsets of ``text``; None if lowering moved
        them (a few characters change length when lower-cased)."""
        folded = fold(self.text)
        low = folded.lower()
        return low if len(low) == len(folded) else None

    @functools.cached_property
    def starts(self) -> list[int]:
        return [u.start for u in self.units]

    @functools.cached_property
    def lead_ins(self) -> list[int]:
        """List items whose text carries a lead-in that is not inside their offsets."""
        return [i for i, u in enumerate(self.units) if len(u.text) != u.end - u.start]

    @functools.cached_property
    def unit_tokens(self) -> list[list[str]]:
        """Each unit's tokens, lead-in included."""
        return [u.text.split() for u in self.units]

    @functools.cached_property
    def vocab(self) -> set[str]:
        return set().union(*self.unit_tokens)

    def tokens(self, i: int) -> list[str]:
        return self.unit_tokens[i]

    def relevant(self, gates: tuple[TokenGate, ...]) -> list[dict[str, int]]:
        """For each of ``gates``: this document's tokens that contain one of its stems,
        with their bits."""
        return gate_group(gates).classify(self.vocab)

    def units_with(self, triggers: set[str]) -> list[int]:
        """Indices of the units that contain one of the tokens ``triggers``."""
        # In C (compress, map): a Python loop over every unit of every document showed.
        held = map(operator.not_, map(triggers.isdisjoint, self.unit_tokens))
        return list(compress(range(len(self.unit_tokens)), held))

    def unit_bits(self, gate: TokenGate | None, i: int) -> int:
        """Token bits of unit ``i`` for ``gate``."""
        if gate is None:
            return ALL_BITS
        got: int = self._unit_fact(self._bits, "bits", gate, gate.mask, i)
        return got

    def unit_lits(self, index: LiteralIndex | None, i: int) -> Lits:
        """Literals of unit ``i`` in ``index`` (see :class:`TermSet`)."""
        if index is None:
            return None
        got: frozenset[int] = self._unit_fact(self._lits, "lits", index, index.mask, i)
        return got

    def _unit_fact(
        self,
        mine: dict[tuple[int, int], Any],
        kind: str,
        owner: object,
        compute: Callable[[list[str]], Any],
        i: int,
    ) -> Any:
        """``compute(tokens of unit i)``, memoised for this document and, with a cache, by
        the unit's text across the document's versions."""
        key = (id(owner), i)
        got = mine.get(key)
        if got is None:
            if self.cache is not None:
                table = self.cache.unit_table(kind, owner)
                text = self.units[i].text
                got = table.get(text)
                if got is None:
                    got = table[text] = compute(text.split())
            else:
                got = compute(self.unit_tokens[i])
            mine[key] = got
        return got


def _candidates(packs: Sequence[RulePack], doc: _Doc) -> list[list[tuple[int, int]]]:
    """For each pack, ``(unit index, gate bits)`` of the units its prefilter hits.

    With a sound token gate: the document's distinct tokens are classified (cached across
    documents), then set operations find the units holding a trigger token - no regex over
    the text, one pass over the units for all packs. Otherwise one prefilter regex pass over
    the whole text.
    """
    units = doc.units
    out: list[list[tuple[int, int]]] = [[] for _ in packs]
    sound: list[int] = []
    for k, pack in enumerate(packs):
        gate = pack.gate
        if pack.prefilter is None:
            out[k] = [(i, ALL_BITS) for i in range(len(units))]
        elif gate is None or not gate.sound("pre"):
            out[k] = [(i, ALL_BITS) for i in _scan_candidates(pack.prefilter, doc)]
        else:
            sound.append(k)
    if sound and doc.cache is not None:
        # Unit by unit, memoised by the unit's text: its bits for a gate are the OR of its
        # tokens' (what classifying the document's vocabulary gives below), and it holds a
        # trigger token of pack k exactly when they include k's "pre" bits.
        group = gate_group(tuple(g for k in sound if (g := packs[k].gate) is not None))
        pres = tuple(g.masks["pre"] for g in group.gates)
        table = doc.cache.unit_table("hits", group)
        for i, u in enumerate(units):
            hit = table.get(u.text)
            if hit is None:
                hit = table[u.text] = gate_hits(group.gates, pres, u.text)
            if hit:
                for k, bits in zip(sound, hit, strict=True):
                    if bits:
                        out[k].append((i, bits))
        return out
    gated: list[tuple[int, set[str], dict[str, int]]] = []
    if sound:
        gates = tuple(g for k in sound if (g := packs[k].gate) is not None)
        for k, gate, relevant in zip(sound, gates, doc.relevant(gates), strict=True):
            pre = gate.masks["pre"]
            triggers = {t for t, b in relevant.items() if b & pre}
            if triggers:
                gated.append((k, triggers, relevant))
    if not gated:
        return out
    every = set().union(*(t for _, t, _ in gated))
    if len(gated) == 1:
        k, _triggers, relevant = gated[0]
        found = out[k]
        for i in doc.units_with(every):
            bits = 0
            for t in relevant.keys() & doc.tokens(i):
                bits |= relevant[t]
            found.append((i, bits))
        return out
    # One intersection per unit with the tokens any pack finds a stem in, then each pack's
    # share of it (a unit holds few of them), rather than one per pack.
    anyone = set().union(*(r.keys() for _, _, r in gated))
    for i in doc.units_with(every):
        held = anyone.intersection(doc.tokens(i))
        for k, triggers, relevant in gated:
            if not triggers.isdisjoint(held):
                bits = 0
                for t in relevant.keys() & held:
                    bits |= relevant[t]
                out[k].append((i, bits))
    return out


def _scan_candidates(prefilter: re.Pattern[str], doc: _Doc) -> list[int]:
    units = doc.units
    lowered = doc.lowered
    if lowered is None:
        return [i for i, u in enumerate(units) if prefilter.search(fold(u.text).lower())]
    starts = doc.starts
    hit: set[int] = set()
    for m in prefilter.finditer(lowered):
        i = bisect_right(starts, m.start()) - 1
        if i >= 0 and m.start() < units[i].end:
            hit.add(i)
    for i in doc.lead_ins:
        if i not in hit and prefilter.search(fold(units[i].text).lower()):
            hit.add(i)
    return sorted(hit)


class _Neighbours:
    """Per document and pack: which units mention training, and their consent cues, for
    the context of positive units (several positive units of a section share neighbours)."""

    def __init__(self, doc: _Doc, blocks: list[int], pack: RulePack, ops: Any = PLAIN) -> None:
        self.ops = ops  # PLAIN or an AnalysisCache
        self.doc = doc
        self.blocks = blocks
        self.pack = pack
        self._mentions: dict[tuple[int, str], bool] = {}
        self._cues: dict[tuple[int, str], dict[str, Spans]] = {}

    def mentions(self, j: int, lang: str) -> bool:
        got = self._mentions.get((j, lang))
        if got is None:
            bits = self.doc.unit_bits(self.pack.role_gate, j)
            lits = self.doc.unit_lits(self.pack.index, j)
            got = self.ops.mentions_training(self.doc.units[j].text, lang, self.pack, bits, lits)
            self._mentions[(j, lang)] = got
        return got

    def cues(self, j: int, lang: str) -> dict[str, Spans]:
        got = self._cues.get((j, lang))
        if got is None:
            matcher = self.pack.matcher(lang)
            gate = self.pack.role_gate
            m: RoleMatcher | GatedMatcher = GatedMatcher(
                matcher,
                gate,
                self.doc.unit_bits(gate, j),
                self.doc.unit_lits(self.pack.index, j),
            )
            got = self._cues[(j, lang)] = self.ops.consent_cues(self.doc.units[j].text, m)
        return got

    def context(self, i: int, lang: str, positive_units: set[int]) -> list[int]:
        """Neighbouring units whose consent wording is tied to unit ``i``'s training
        statement.

        The next two units of the same paragraph or list (e.g. "You can object to this
        processing."), and units of the same section that themselves refer to training.
        Units that are training statements of their own never lend their regime to another.
        """
        units, blocks = self.doc.units, self.blocks
        out: list[int] = []
        for j in (i + 1, i + 2):
            if j < len(units) and blocks[j] == blocks[i] and j not in positive_units:
                out.append(j)
        path = units[i].heading_path
        if path:
            lo, hi = max(0, i - 12), min(len(units), i + 13)
            for j in range(lo, hi):
                if j == i or j in positive_units or blocks[j] == blocks[i]:
                    continue
                if units[j].heading_path == path and self.mentions(j, lang):
                    out.append(j)
        return out


def analyse_text(
    text: str, packs: Sequence[RulePack] | None = None, *, cache: AnalysisCache | None = None
) -> Analysis:
    """Analyse a whole document (block text, plain text, Markdown or HTML). ``cache``: an
    :class:`AnalysisCache` shared by the analyses of one document's versions (same result,
    unchanged units cost a lookup)."""
    ops: Any = PLAIN if cache is None else cache
    if looks_like_html(text):
        text = html_to_blocks(text)
    packs = _resolve(packs)
    units, blocks = ops.segment(text)
    doc_lang = detect_language(text[:20000])
    unit_lang: dict[int, str] = {}

    def lang_of(i: int) -> str:
        lg = unit_lang.get(i)
        if lg is None:
            lg = ops.detect_language(units[i].text)
            if lg == "und":
                lg = doc_lang
            units[i].lang = lg
            unit_lang[i] = lg
        return lg

    findings: list[Finding] = []
    doc = _Doc(text, units, cache)
    for pack, cands in zip(packs, _candidates(packs, doc), strict=True):
        if pack.engine == "ai_training":
            gate = pack.gate
            assessed: dict[int, Assessment] = {}
            for i, bits in cands:
                # No purpose term at all: assess_unit would say nothing (and the unit's
                # language need not be detected). Nor without both an object and a purpose
                # term of some language whose literals are all in the unit.
                if gate is not None and not gate.hit("purpose", bits):
                    continue
                lits = doc.unit_lits(pack.index, i)
                if not all(ts.may_match(lits) for ts in pack.need):
                    continue
                role_bits = doc.unit_bits(pack.role_gate, i)
                a = ops.assess(units[i].text, lang_of(i), pack, role_bits, lits)
                if a is not None:
                    assessed[i] = a
            shift = _heading_statements(pack, units, assessed, lang_of, doc_lang)
            positive = {i for i, a in assessed.items() if a.verdict.ai_training}
            near = _Neighbours(doc, blocks, pack, ops)
            for i, a in sorted(assessed.items()):
                v = a.verdict
                if v.ai_training:
                    lg = lang_of(i)
                    ctx = near.context(i, lg, positive)
                    if ctx:
                        v = a.with_context(
                            [units[j].text for j in ctx], [near.cues(j, lg) for j in ctx]
                        )
                if i in shift:
                    v = _shifted(v, shift[i])
                findings.append(_ai_finding(pack, units[i], lang_of(i), v))
        else:
            findings.extend(_generic_findings(pack, cands, units, lang_of, doc, ops))
    findings.sort(key=lambda f: (f.unit_index, f.pack))
    return _summarise(doc_lang, findings, len(units))


def _heading_statements(
    pack: RulePack,
    units: list[Unit],
    assessed: dict[int, Assessment],
    lang_of: Callable[[int], str],
    doc_lang: str,
) -> dict[int, int]:
    """Add to ``assessed`` the units that take their section heading as their training
    purpose (:func:`under_training_heading`); returns each one's offset of its own text in
    the assessed text."""
    shift: dict[int, int] = {}
    heads: dict[str, bool] = {}
    for i, unit in enumerate(units):
        if not unit.heading_path:
            continue
        # A document has few distinct headings and fewer that state training: test the
        # heading first (scanning every unit for an anaphora costs more than the pass).
        heading = unit.heading_path[-1]
        ok = heads.get(heading)
        if ok is None:
            ok = heads[heading] = heading_states_training(heading, doc_lang, pack)
        if not ok:
            continue
        done = assessed.get(i)
        if done is not None and done.verdict.ai_training:
            continue
        a = under_training_heading(heading, unit.text, lang_of(i), pack)
        if a is not None:
            assessed[i] = a
            shift[i] = len(heading) + len(HEADING_JOIN)
    return shift


def _shifted(v: UnitVerdict, offset: int) -> UnitVerdict:
    """``v`` with the spans of the heading dropped and the unit's own moved to its text."""
    spans = [
        Span(s.start - offset, s.end - offset, s.role, s.text) for s in v.spans if s.start >= offset
    ]
    return dataclasses.replace(v, spans=spans)


def _generic_findings(
    pack: RulePack,
    cands: list[tuple[int, int]],
    units: list[Unit],
    lang_of: Any,
    doc: _Doc | None = None,
    ops: Any = PLAIN,
) -> list[Finding]:
    out: list[Finding] = []
    sections: dict[tuple[str, ...], str] = {}
    gate = pack.gate
    viable = pack.viable
    for i, bits in cands:
        # The rules a unit's token bits leave possible: a function of the bits alone, of
        # which a pack sees few distinct values (most candidates are ruled out here).
        rules = viable.get(bits)
        if rules is None:
            if len(viable) > _VIABLE_MAX:
                viable.clear()
            rules = viable[bits] = _viable_rules(pack, gate, bits)
        if not rules:
            continue
        u = units[i]
        lits: Lits = None
        for rule in rules:
            if rule.scope == "section":
                key = u.heading_path
                if key not in sections:
                    sections[key] = " ".join(x.text for x in units if x.heading_path == key)
                if ops.eval_generic(rule, sections[key]) is None:
                    continue
                spans = ops.eval_generic(rule, u.text) or []
            else:
                assert rule.condition is not None
                # Its literals (dearer than its stems) are only looked at when its stems
                # leave the rule possible.
                if lits is None and doc is not None:
                    lits = doc.unit_lits(pack.index, i)
                if not may_hold(rule.condition, None, bits, lits):
                    continue
                got = ops.eval_generic(rule, u.text, lits)
                if got is None:
                    continue
                spans = got
            out.append(
                _finding(
                    pack,
                    rule,
                    u,
                    lang_of(i),
                    ai_training=False,
                    consent=Consent.NA,
                    negated=False,
                    spans=spans,
                )
            )
    return out


# Bound of RulePack.viable (distinct bit values seen; a few dozen in practice).
_VIABLE_MAX = 4096


def _viable_rules(pack: RulePack, gate: TokenGate | None, bits: int) -> tuple[Rule, ...]:
    """The rules of ``pack`` (in order) that a unit whose tokens carry ``bits`` may fire:
    section rules always (they look beyond the unit), the others when their stems allow."""
    return tuple(
        r
        for r in pack.rules
        if r.scope == "section" or (r.condition is not None and may_hold(r.condition, gate, bits))
    )


def analyse_unit(
    text: str, packs: Sequence[RulePack] | None = None, lang: str | None = None
) -> Analysis:
    """Analyse ONE labelled unit (a sentence or a short passage) as a whole. Its characters
    are cleaned first (:func:`monitor.extract.clean_characters`): a unit given by hand has not
    been through extraction, and a soft hyphen or a decomposed accent would hide a term."""
    if looks_like_html(text):
        text = html_to_blocks(text)
    text = clean_characters(text)
    packs = _resolve(packs)
    lg = lang or detect_language(text)
    unit = Unit(0, text, 0, len(text), (), lg)
    findings: list[Finding] = []
    for pack in packs:
        if pack.prefilter is not None and not pack.prefilter.search(fold(text).lower()):
            continue
        if pack.engine == "ai_training":
            v = assess_unit(text, lg, pack)
            if v is not None:
                findings.append(_ai_finding(pack, unit, lg, v))
        else:
            findings.extend(_generic_findings(pack, [(0, ALL_BITS)], [unit], lambda _i: lg))
    return _summarise(lg, findings, 1)


# --------------------------------------------------------------------------- pack examples


@dataclass(slots=True)
class ExampleResult:
    """One pack example run: what the pack says should happen and what did."""

    pack: str
    kind: str  # "match" | "no_match"
    index: int
    lang: str | None
    text: str
    expected: dict[str, Any]
    got: dict[str, Any]
    passed: bool
    note: str = ""


def run_pack_examples(pack: RulePack) -> list[ExampleResult]:
    """Run every ``examples:`` entry of ``pack`` against that pack alone."""
    results: list[ExampleResult] = []
    for kind in ("match", "no_match"):
        for n, ex in enumerate(pack.examples.get(kind, [])):
            a = analyse_unit(ex["text"], [pack], ex.get("lang"))
            mine = [f for f in a.findings if f.pack == pack.id]
            expected: dict[str, Any]
            got: dict[str, Any]
            if pack.engine == "ai_training":
                got = {
                    "ai_training": a.ai_training,
                    "consent": a.consent.value,
                    "negated": a.negated,
                }
                if kind == "match":
                    expected = {k: ex[k] for k in ("ai_training", "consent", "negated")}
                else:
                    expected = {"ai_training": False, "consent": "n/a", "negated": False}
                passed = got == expected
            else:
                got = {"rules": sorted({f.rule_id for f in mine})}
                if kind == "match":
                    want = ex.get("rule")
                    expected = {"rules": [want] if want else ["<any>"]}
                    passed = bool(mine) and (want is None or want in got["rules"])
                else:
                    expected = {"rules": []}
                    passed = not mine
            results.append(
                ExampleResult(
                    pack=pack.id,
                    kind=kind,
                    index=n,
                    lang=ex.get("lang"),
                    text=ex["text"],
                    expected=expected,
                    got=got,
                    passed=passed,
                    note=ex.get("note", ""),
                )
            )
    return results

"""Matching: the AI-training analyser and the generic rule evaluator.

The AI-training decision for one unit follows LABELLING.md:

1. *training statements*: a purpose term ("train", "fine-tune") with an AI object in the same
   sentence, or a weak purpose ("improve", "develop") with an AI object within a few words;
   purpose words inside ``ignore`` phrases ("staff training", "informations") do not count;
2. the unit must mention data about people, and a statement inside a ``restriction`` ("you
   may not use ... to train") or an ``exclusion`` (licensed / synthetic data only) is dropped;
3. each statement is *negated* when a negation operator sits in its clause before it (or
   after it, for ``negation_after`` terms such as German "nicht") within a window, unless the
   operator is part of a ``not_negation`` phrase ("not limited to", "if you do not opt out");
   a ``conditional_opt_in`` ("not ... without your consent") keeps it positive and opt-in,
   a ``conditional_opt_out`` ("once you opt out, ... not used") positive and opt-out, an
   ``exception`` ("not ... except when") positive;
4. a negated statement followed by a short contrast clause with data and no negation
   ("..., but public posts are") is a partial negation: still training; a positive one
   followed by a short negated contrast clause ("..., but we do not use private messages")
   is negated;
5. consent is the weakest regime among the cues tied to the training (the unit itself, plus
   context units the caller passes): hard ``none`` < ``opt_out`` < ``opt_in`` < weak opt-out
   wording < soft none ("legitimate interests") < default ``none``.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from monitor.analyse.rules import (
    CompiledCondition,
    GatedMatcher,
    Lits,
    RoleMatcher,
    Rule,
    RulePack,
    TokenGate,
    fold,
)
from monitor.analyse.segment import LEAD_IN_JOIN, split_sentences
from monitor.models import Consent, Span

_WORD = re.compile(r"\w+")
_CLAUSE_PUNCT = re.compile(r"[;·\u0387]|\s[–—]\s|:(?=\s)")
_SEMI = re.compile(r"[;·\u0387]")
# quality: coordinating conjunctions between two infinitives sharing an object
_COORD = re.compile(r"\s(?:and|or|et|ou|und|oder|y|o|e|en|of)\s", re.IGNORECASE)

Spans = list[tuple[int, int]]
Roles = RoleMatcher | GatedMatcher

# Token bits of a text no gate examined: every role may match.
ALL_BITS = -1


def _starts_in(span: tuple[int, int], masks: Spans) -> bool:
    # A negation is neutralised by a phrase it starts in ("not limited to", a relative
    # clause), not by one it merely spans ("providers, who act for us, are prohibited").
    return any(a <= span[0] < b for a, b in masks)


def _overlaps(span: tuple[int, int], masks: Spans) -> bool:
    return any(a < span[1] and span[0] < b for a, b in masks)


class _WordRuns:
    """Word runs of a text, to count words between offsets by bisection.

    ``between(a, b) == len(_WORD.findall(text, a, b))`` (words between two offsets, a word
    cut by either offset counting once): the runs that start before ``b`` minus those that
    end by ``a``.
    """

    __slots__ = ("ends", "starts")

    def __init__(self, text: str) -> None:
        spans = [m.span() for m in _WORD.finditer(text)]
        self.starts = [a for a, _ in spans]
        self.ends = [b for _, b in spans]

    def between(self, a: int, b: int) -> int:
        if b <= a:
            return 0
        return bisect_left(self.starts, b) - bisect_right(self.ends, a)


@dataclass(slots=True)
class UnitVerdict:
    """What the AI-training engine concluded about one unit."""

    ai_training: bool
    negated: bool
    consent: Consent
    when: str  # disclosure | narrow_ml | third_party | denial
    spans: list[Span] = field(default_factory=list)
    consent_cues: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Statement:
    purpose: tuple[int, int]
    sentence: int
    clause: int
    objects: Spans
    negation: tuple[int, int] | None = None
    conditional: bool = False
    # quality: negated only as the consequence of an opt-out ("once you opt out, your chats
    # will not be used to train"): the training happens by default, so still a disclosure.
    after_opt_out: bool = False


class _UnitView:
    """One unit's text with its sentence and clause boundaries and lazily found roles."""

    def __init__(self, text: str, m: Roles) -> None:
        self.raw = text
        self.text = fold(text)
        self.m = m
        self._cache: dict[str, Spans] = {}
        sents = split_sentences(self.text)
        self.sent_starts = [s for s, _ in sents] or [0]
        cuts = [mm.start() for mm in _CLAUSE_PUNCT.finditer(self.text)]
        cuts += [a for a, _ in self.find("clause_break")]
        cuts += [a for a, _ in self.find("contrast")]
        self.clause_starts = sorted({0, *self.sent_starts, *cuts})
        self._runs: _WordRuns | None = None

    def words_between(self, a: int, b: int) -> int:
        if b <= a:
            return 0
        if self._runs is None:
            self._runs = _WordRuns(self.text)
        return self._runs.between(a, b)

    def find(self, role: str) -> Spans:
        got = self._cache.get(role)
        if got is None:
            got = self.m.find(role, self.text)
            self._cache[role] = got
        return got

    def sentence_of(self, pos: int) -> int:
        return bisect_right(self.sent_starts, pos) - 1

    def clause_of(self, pos: int) -> int:
        return bisect_right(self.clause_starts, pos) - 1

    def clause_span(self, idx: int) -> tuple[int, int]:
        end = self.clause_starts[idx + 1] if idx + 1 < len(self.clause_starts) else len(self.text)
        return self.clause_starts[idx], end


def _statements(v: _UnitView, pack: RulePack) -> list[_Statement]:
    assert pack.settings is not None
    narrow, broad = v.find("object_narrow"), v.find("object")
    if not narrow and not broad:
        # no statement without an object: the ignore phrases (a dear pattern) could only
        # take more away
        return []
    ignore = v.find("ignore")
    narrow = [o for o in narrow if not _overlaps(o, ignore)]
    objects = [o for o in broad if not _overlaps(o, ignore) and not _overlaps(o, narrow)]
    objects += narrow
    if not objects:
        return []
    out: list[_Statement] = []
    for p in v.find("purpose"):
        if _overlaps(p, ignore):
            continue
        sent = v.sentence_of(p[0])
        objs = [o for o in objects if v.sentence_of(o[0]) == sent] or _pronoun_objects(
            v, p, objects, ignore, strong=True
        )
        if objs:
            out.append(_Statement(p, sent, v.clause_of(p[0]), objs))
    window = pack.settings.weak_window
    passive = v.find("passive")
    # quality: an object inside a strong purpose term ("model" of "excluding model training")
    # belongs to that term; a nearby "improve" must not borrow it.
    strong = [p for p in v.find("purpose") if not _overlaps(p, ignore)]
    for p in v.find("purpose_weak"):
        if _overlaps(p, ignore) or any(_overlaps(p, [s.purpose]) for s in out):
            continue
        clause = v.clause_of(p[0])
        objs = []
        for o in objects:
            if v.clause_of(o[0]) != clause or _overlaps(o, strong):
                continue
            after = o[0] >= p[1] and v.words_between(p[1], o[0]) <= window
            # "our models are improved using ...", "um Modelle zu verbessern": the object
            # before the verb, tied by a passive auxiliary or an infinitive particle.
            # quality: two more words for a coordinated infinitive ("om onze modellen te
            # corrigeren en te verbeteren", "to correct and improve").
            # quality: one more word when the particle sits right before the verb, for a
            # short phrase after the object ("de AI-modellen achter onze functies te
            # ontwikkelen", "die Modelle hinter unseren Funktionen zu verbessern").
            gap = v.words_between(o[1], p[0]) if o[1] <= p[0] else -1
            ties = [(a, b) for a, b in passive if o[1] <= a and b <= p[0]]
            limit = 5 if _COORD.search(v.text, o[1], p[0]) else 3
            if any(v.words_between(b, p[0]) == 0 for _, b in ties):
                limit = max(limit, 4)
            before = bool(ties) and 0 <= gap <= limit
            if after or before:
                objs.append(o)
        objs = objs or _pronoun_objects(v, p, objects, ignore, strong=False)
        if objs:
            out.append(_Statement(p, v.sentence_of(p[0]), clause, objs))
    return out


def _pronoun_objects(
    v: _UnitView, p: tuple[int, int], objects: Spans, ignore: Spans, *, strong: bool
) -> Spans:
    # quality: a pronoun object of the purpose ("... and we use it to train them", "pour
    # l'entraîner", "afin de les améliorer") stands for an AI object named earlier in the
    # unit. What "train" takes is the trained thing; "improve them" may also refer back to
    # data, so a weak purpose only takes it when no data term lies between.
    # A demonstrative noun ("improve this feature", "these models") cannot mean the data, so
    # it needs no such check.
    got: Spans = []
    for role, sure in (("object_pronoun", strong), ("object_anaphor", True)):
        for o in v.find(role):
            if not _overlaps(o, [p]) or _overlaps(o, ignore):
                continue
            before = [a for a in objects if a[1] <= o[0]]
            if not before:
                continue
            last = max(b for _, b in before)
            if sure or not any(last <= d[0] < o[0] for d in v.find("data")):
                got.append(o)
    return got


def _negate(v: _UnitView, st: _Statement, pack: RulePack) -> None:
    assert pack.settings is not None
    window = pack.settings.negation_window
    blockers = v.find("not_negation")
    lo, hi = v.clause_span(st.clause)
    cond = [c for c in v.find("conditional_opt_in") if v.sentence_of(c[0]) == st.sentence]
    if cond:
        st.negation = cond[0]
        st.conditional = True
        return
    for n in v.find("negation"):
        if not (lo <= n[0] < hi) or _starts_in(n, blockers):
            continue
        if n[1] <= st.purpose[0] and v.words_between(n[1], st.purpose[0]) <= window:
            st.negation = n
            return
    for n in v.find("negation_after"):
        if not (lo <= n[0] < hi) or _starts_in(n, blockers):
            continue
        if n[0] >= st.purpose[1] and v.words_between(st.purpose[1], n[0]) <= window:
            st.negation = n
            return
        if n[1] <= st.purpose[0] and v.words_between(n[1], st.purpose[0]) <= window:
            st.negation = n
            return
    lead = _negated_lead_in(v, st.purpose[0], blockers)
    if lead is not None:
        st.negation = lead


# A list item's lead-in as the segmenter joins it: the lead-in ends with ":", perhaps inside
# emphasis ("**We do not:** — ...").
_LEAD_IN_END = re.compile(
    r":[*_ ]*"
    + re.escape(LEAD_IN_JOIN)
    # ... or flattened onto one line: a bullet after the colon ("NIEMALS verwenden für: •
    # Werbung • Training von KI-Modellen"), or a preposition before it that the item completes
    # ("We will never use your data for: training AI models")
    + r"|:[*_ ]*[•·▪●◦–—*-]\s"
    + r"|\b(?:for|to|für|zu|zum|zur|pour|à|para|per|voor|om)\s?:",
    re.IGNORECASE,
)


def _negated_lead_in(v: _UnitView, pos: int, blockers: Spans) -> tuple[int, int] | None:
    """The negation of a list lead-in that governs the item ("We do not: — use your content
    to train AI models", "gebruikt klantdata NIET voor: — Training van AI-modellen"): one in
    the lead-in's last clause, with no contrast after it and no purpose of its own."""
    joins = list(_LEAD_IN_END.finditer(v.text, 0, pos))
    if not joins:
        return None
    end = joins[-1].start()
    start = max(
        [v.sent_starts[v.sentence_of(end)], *[c[1] for c in v.find("contrast") if c[1] <= end]]
    )
    start = max([start, *[m.end() for m in _SEMI.finditer(v.text, start, end)]])
    if any(start <= p[0] < end for p in v.find("purpose") + v.find("purpose_weak")):
        return None
    negs = [
        n
        for n in v.find("negation") + v.find("negation_after")
        if start <= n[0] < end and not _starts_in(n, blockers)
    ]
    return negs[-1] if negs else None


def _after_opt_out(v: _UnitView, st: _Statement) -> None:
    # quality: a negated statement in the same sentence as a conditional_opt_out cue ("once
    # you opt out, ... not used") or an exception ("we do not use it to train except when").
    if st.negation is not None and not st.conditional:
        cues = v.find("conditional_opt_out") + v.find("exception")
        st.after_opt_out = any(v.sentence_of(c[0]) == st.sentence for c in cues)


def _piece_positive(v: _UnitView, lo: int, hi: int, pack: RulePack) -> bool:
    assert pack.settings is not None
    # quality: a neutralised negation ("a meno che tu non disattivi", "if you do not opt out")
    # does not make the contrasted piece negative.
    blockers = v.find("not_negation")
    negs = [n for n in v.find("negation") + v.find("negation_after") if not _starts_in(n, blockers)]
    if any(lo <= n[0] < hi for n in negs) or not any(lo <= d[0] < hi for d in v.find("data")):
        return False
    # "..., but we use it to improve our services" is a different purpose, not a contrast.
    if any(lo <= w[0] < hi for w in v.find("purpose_weak")):
        return False
    return v.words_between(lo, hi) <= pack.settings.contrast_max_words


# the elliptic "yes" of a partial negation ("...; i post pubblici sì", "...; öffentliche
# Beiträge schon", "...; openbare berichten wel")
_ELLIPTIC_YES = re.compile(r"\b(?:sì|sí|schon|wohl|wel|oui|yes)\b", re.IGNORECASE)


def _contrast_positive(v: _UnitView, st: _Statement, pack: RulePack) -> bool:
    """Partial negation: "X is not used to train; Y is" / "..., but public posts are" /
    "X is not used. Public posts, however, may be used for this purpose."

    A stretch after the negated statement that starts after a ";" or carries a contrast word,
    names data, and has no negation and no other purpose of its own; after a bare ";" it must
    also say the use (an auxiliary, a modal - the item verbs of ``_ITEM_VERB`` - or a use
    verb) or answer with an elliptic yes.
    """
    sent_end = (
        v.sent_starts[st.sentence + 1] if st.sentence + 1 < len(v.sent_starts) else len(v.text)
    )
    contrast = v.find("contrast")
    semi = [m.end() for m in _SEMI.finditer(v.text, st.purpose[1], sent_end)]
    for c in contrast:
        if st.purpose[1] <= c[0] < sent_end:
            comma = v.text.rfind(",", st.purpose[1], c[0])
            lo = comma + 1 if comma >= 0 else c[0]
            lo = max([lo, *[x for x in semi if x <= c[0]]])
            if _piece_positive(v, lo, sent_end, pack):
                return True
    # the stretch after ";" must say the use ("...; public posts are", "...; Y may be",
    # "...; i post pubblici sì") or contrast it: "no training; every file carries a
    # watermark" adds a fact
    if semi and _piece_positive(v, semi[-1], sent_end, pack):
        lo = semi[-1]
        if (
            _ELLIPTIC_YES.search(v.text, lo, sent_end)
            or _ITEM_VERB.search(v.text, lo, sent_end)
            or any(lo <= a < sent_end for a, _ in v.find("passive") + v.find("use_verb") + contrast)
        ):
            return True
    nxt = st.sentence + 1
    if nxt < len(v.sent_starts):
        lo = v.sent_starts[nxt]
        hi = v.sent_starts[nxt + 1] if nxt + 1 < len(v.sent_starts) else len(v.text)
        if any(lo <= c[0] < hi for c in contrast):
            return _piece_positive(v, lo, hi, pack)
    return False


def _contrast_negative(v: _UnitView, st: _Statement, pack: RulePack) -> bool:
    """quality: partial negation after a positive statement, the mirror of
    :func:`_contrast_positive`: "X is used to train; data of Y is excluded" / "..., but we do
    not use your private messages" / "..., Texte von Pro-Kunden dagegen niemals".

    A short stretch of the same sentence after the statement, opened by ";" or a contrast
    word, that names data, carries a negation (not a neutralised one) and no purpose of its own.
    """
    assert pack.settings is not None
    sent_end = (
        v.sent_starts[st.sentence + 1] if st.sentence + 1 < len(v.sent_starts) else len(v.text)
    )
    blockers = v.find("not_negation")
    negs = [n for n in v.find("negation") + v.find("negation_after") if not _starts_in(n, blockers)]
    starts = [m.end() for m in _SEMI.finditer(v.text, st.purpose[1], sent_end)]
    for c in v.find("contrast"):
        if st.purpose[1] <= c[0] < sent_end:
            comma = v.text.rfind(",", st.purpose[1], c[0])
            starts.append(comma + 1 if comma >= 0 else c[0])
    purposes = v.find("purpose") + v.find("purpose_weak")
    data = v.find("data")
    limit = pack.settings.contrast_max_words

    def negative_piece(lo: int, hi: int) -> bool:
        return (
            any(lo <= n[0] < hi for n in negs)
            and any(lo <= d[0] < hi for d in data)
            and not any(lo <= p[0] < hi for p in purposes)
            and v.words_between(lo, hi) <= limit
        )

    if any(negative_piece(lo, sent_end) for lo in starts):
        return True
    # The mirror, before the statement: "private messages are not used; public posts,
    # however, are used to train our AI" (LABELLING's own example of a partial negation).
    # The piece must deny a use ("are not used"), not another verb ("we do not sell your
    # data, but we use it to train": a negation of selling).
    sent_start = v.sent_starts[st.sentence]
    ends = [m.start() for m in _SEMI.finditer(v.text, sent_start, st.purpose[0])]
    ends += [c[0] for c in v.find("contrast") if sent_start <= c[0] < st.purpose[0]]
    uses = v.find("use_verb")
    return any(
        negative_piece(sent_start, hi) and any(sent_start <= u[0] < hi for u in uses) for hi in ends
    )


def _excepted(v: _UnitView, st: _Statement) -> bool:
    """An exclusion operator after a positive statement ("we use input data to train our
    models, except when the history holds sensitive information"): LABELLING's partial
    negation, the training still happens for the rest."""
    # "except as described below" points elsewhere, and "sauf si vous vous y opposez" is
    # the opt-out itself: neither excludes any data.
    choices = [c for role in _CHOICE_ROLES for c in v.find(role)]
    return any(
        v.sentence_of(c[0]) == st.sentence
        and c[0] >= st.purpose[1]
        and not _REFERENCE.search(v.text, c[0], c[1])
        and not any(c[0] <= k[0] <= c[1] + 40 for k in choices)
        for c in v.find("exception")
    )


_REFERENCE = re.compile(
    r"descri|set\s+out|explain|expliqu|décrit|beschrieb|beschreib|descritt|beschrev"
)


_CUE_ORDER = ("none", "opt_out", "opt_in", "opt_out_weak", "none_soft")
_CUE_CONSENT = {
    "none": Consent.NONE,
    "opt_out": Consent.OPT_OUT,
    "opt_in": Consent.OPT_IN,
    "opt_out_weak": Consent.OPT_OUT,
    "none_soft": Consent.NONE,
}


def consent_cues(text: str, m: Roles) -> dict[str, Spans]:
    """Consent wording in ``text`` by kind (offsets relative to ``text``)."""
    folded = fold(text)
    out: dict[str, Spans] = {}
    for kind in _CUE_ORDER:
        spans = m.find(kind, folded)
        if kind == "opt_in":
            # "not ... without your consent" is an opt-in condition.
            spans = spans + m.find("conditional_opt_in", folded)
        elif kind == "opt_out":
            # quality: "once you opt out, ... will not be used" is an opt-out route.
            spans = spans + m.find("conditional_opt_out", folded)
        if spans:
            out[kind] = sorted(set(spans))
    return out


def decide_consent(cues: dict[str, Spans], conditional: bool) -> Consent:
    if cues.get("none"):
        return Consent.NONE
    if cues.get("opt_out"):
        return Consent.OPT_OUT
    if cues.get("opt_in") or conditional:
        return Consent.OPT_IN
    if cues.get("opt_out_weak"):
        return Consent.OPT_OUT
    return Consent.NONE


@dataclass(slots=True)
class Assessment:
    """A unit's analysis, kept so that neighbouring units' consent wording can be added
    later without matching the unit again."""

    verdict: UnitVerdict
    _finish: _Positive | None = None

    def with_context(
        self, context: Sequence[str], cues: Sequence[dict[str, Spans]] | None = None
    ) -> UnitVerdict:
        """The verdict when ``context`` texts are tied to the unit's training statement
        (``cues``: their :func:`consent_cues`, when the caller has them already)."""
        if self._finish is None or not context:
            return self.verdict
        return self._finish.verdict(context, cues)


@dataclass(slots=True)
class _Positive:
    text: str
    view: _UnitView
    pack: RulePack
    base: RoleMatcher
    positives: list[_Statement]
    negated: bool
    spans: list[Span]
    cues: dict[str, Spans]

    def verdict(
        self, context: Sequence[str], ctx_cues: Sequence[dict[str, Spans]] | None = None
    ) -> UnitVerdict:
        cues = dict(self.cues)
        if ctx_cues is None:
            ctx_cues = [consent_cues(ctx, self.base) for ctx in context]
        for found_cues in ctx_cues:
            for kind, found in found_cues.items():
                cues.setdefault(kind, [])
                # Context offsets do not point into this unit; keep them for the cue text only.
                cues[kind] = cues[kind] + [(-1 - i, -1) for i, _ in enumerate(found)]
        conditional = any(s.conditional for s in self.positives)
        consent = decide_consent(cues, conditional)
        text = self.text
        spans = list(self.spans)
        cue_texts: list[str] = []
        for kind in _CUE_ORDER:
            for a, b in cues.get(kind, []):
                if a >= 0:
                    cue_texts.append(text[a:b])
                    role = "opt_in" if kind == "opt_in" else _role(kind)
                    spans.append(Span(a, b, role, text[a:b]))
        when = _kind(self.view, self.positives, self.pack)
        return UnitVerdict(True, self.negated, consent, when, _dedup(spans), cue_texts)


def assess_unit(
    text: str,
    lang: str,
    pack: RulePack,
    context: Sequence[str] = (),
    bits: int = ALL_BITS,
) -> UnitVerdict | None:
    """Run the AI-training pack over one unit; ``None`` when it says nothing about training.

    ``context`` holds texts of neighbouring units already judged to be tied to this unit's
    training statement; their consent cues count as if they were in the unit. ``bits``: the
    unit's token bits from the pack's ``role_gate``, to skip roles it cannot contain.
    """
    a = assess(text, lang, pack, bits)
    if a is None:
        return None
    return a.with_context(context)


def _roles(base: RoleMatcher, pack: RulePack, bits: int, lits: Lits) -> Roles:
    """``base`` restricted to what a text's token bits and literals (``lits``, from the
    pack's LiteralIndex) allow."""
    gate = pack.role_gate if bits != ALL_BITS else None
    if gate is None and lits is None:
        return base
    return GatedMatcher(base, gate, bits, lits)


def _names_purpose(m: Roles, text: str) -> bool:
    folded = fold(text)
    return bool(m.search("purpose", folded) or m.search("purpose_weak", folded))


def assess(
    text: str, lang: str, pack: RulePack, bits: int = ALL_BITS, lits: Lits = None
) -> Assessment | None:
    """:func:`assess_unit` without context, keeping what :meth:`Assessment.with_context`
    needs. ``lits``: the unit's literals in the pack's LiteralIndex."""
    base = pack.matcher(lang)
    m = _roles(base, pack, bits, lits)
    # Cheap exits first: most prefilter hits name an AI object without any training purpose.
    if not _names_purpose(m, text):
        return None
    if _header_row(text):
        return None
    v = _UnitView(text, m)
    stmts = _statements(v, pack)
    if not stmts:
        return None
    # quality: a data word inside an ``ignore`` phrase ("data from the following sources:",
    # "synthetic data") names no one's data.
    ignore = v.find("ignore")
    has_data = bool(v.find("anaphora")) or any(not _starts_in(d, ignore) for d in v.find("data"))
    negs = v.find("negation")
    # "our providers are not permitted to ..." is a negation (processors barred), not a
    # restriction on users.
    barred = [
        b
        for b in v.find("restriction")
        if not any(n[0] <= b[0] and b[1] <= n[1] and n != b for n in negs)
    ] + v.find("exclusion")
    if barred:
        barred_sents = {v.sentence_of(b[0]) for b in barred}
        stmts = [s for s in stmts if s.sentence not in barred_sents]
        if not stmts:
            return None
    # quality: a question ("Will my chats be used to train your models?", an FAQ heading)
    # asks, it does not state or permit; "Don't want your posts used for training?"
    # presupposes the training and stays.
    stmts = [s for s in stmts if not _asks(v, s.sentence)]
    if not stmts:
        return None
    for st in stmts:
        _negate(v, st, pack)
        _after_opt_out(v, st)
    positives = [s for s in stmts if s.negation is None or s.conditional or s.after_opt_out]
    negated = any(s.negation is not None for s in stmts)
    if not positives:
        positives = [s for s in stmts if _contrast_positive(v, s, pack)]
    elif not negated:
        negated = any(_contrast_negative(v, s, pack) or _excepted(v, s) for s in positives)
    spans = _spans(v, stmts)
    if not positives:
        if not negated:
            return None
        return Assessment(UnitVerdict(False, True, Consent.NA, "denial", spans))
    if not has_data and _needs_data(v, positives, negated):
        # Exclusion-only or feature descriptions: nothing about people's data.
        if negated:
            return Assessment(UnitVerdict(False, True, Consent.NA, "denial", spans))
        return None
    pos = _Positive(text, v, pack, base, positives, negated, spans, _tied_cues(v, stmts, m))
    return Assessment(pos.verdict(()), pos)


def _needs_data(v: _UnitView, positives: list[_Statement], negated: bool) -> bool:
    """quality: training "without consent" is conditional on someone's consent, so on their
    data ("No entrenamos modelos sin consentimiento"), as is training that a sentence makes
    subject to an opt-in ("inviamo, se tu lo accetti, un riassunto ... per migliorare il
    modello"), and a purpose item by definition. Only asked of units without a data noun."""
    consented = {v.sentence_of(c[0]) for c in v.find("opt_in")}
    if any(s.conditional or s.sentence in consented for s in positives):
        return False
    return negated or not _purpose_item(v, positives)


_CELL_WORD = re.compile(r"[^\W\d_][\w'’\-]*")
_ITEM_LEAD = re.compile(r"[\W\d_]*")  # a bullet, a number, an emoji, markup
_ITEM_ARTICLE = re.compile(
    r"(?:the|a|an|het|de|een|le|la|les|l['’]|el|los|las|lo|il|gli|i|der|die|das|den|dem)\s*$",
    re.IGNORECASE,
)
# a finite verb or auxiliary after the object makes a statement of the item ("Training our
# models can take weeks", "Improving our AI models is a priority")
_ITEM_VERB = re.compile(
    r"\b(?:can|could|may|might|will|would|is|are|was|were|has|have|takes?|requires?|involves?"
    r"|peut|peuvent|est|sont|ont|nécessite|kann|können|ist|sind|wird|werden|hat|haben|erfordert"
    r"|puede|pueden|son|han|requiere|può|possono|è|sono|hanno|richiede|kan|kunnen|zijn|wordt"
    r"|worden|heeft|hebben|vereist)\b",
    re.IGNORECASE,
)
_ITEM_WORDS = 12
_ITEM_TAIL = 7
_ITEM_SHORT_TAIL = 3
_ITEM_LIST_GOES_ON = re.compile(
    r"\s*(?:[,;(/&–-]|(?:and|or|y|o|et|ou|und|oder|e|en|of)\b)", re.IGNORECASE
)
_ITEM_LABEL_WORDS = 6
# a row labelled as a purpose ("Purpose: training our models", "Zweck: Training von
# Algorithmen"): the item is what follows the label
_PURPOSE_LABEL = re.compile(
    r"[\W\d_]*(?:(?:processing\s+)?purposes?|(?:verarbeitungs)?zwecke?|finalit(?:à|és?)"
    r"|finalidad(?:es)?|(?:verwerkings)?doel(?:en)?|scop[oi]|objectifs?|objetivos?)\s*",
    re.IGNORECASE,
)
# a prepositional phrase on the object ("entrenar nuestros modelos de atención al cliente",
# "Training von Algorithmen zur Erkennung von Anomalien") qualifies it, it states nothing
_ITEM_PP = re.compile(
    r"\s+(?:of|for|on|de|del|des|du|da|para|pour|sur|für|zur|zum|von|mit|di|dei|della|per|van"
    r"|voor|op)\b[^,;:()]{0,60}?(?=\s*(?:[,;(]|$|[.!]\s*$))",
    re.IGNORECASE,
)
# an earlier purpose of the same row ("Improving the user experience and training our
# models", "Mejorar la experiencia y entrenar nuestros modelos"): it ends in a coordinator
_ITEM_COORDINATED = re.compile(
    r"[^;:]*?(?:,\s*|\s+(?:and|or|y|o|e|et|ou|und|oder|en|of)\s+)$", re.IGNORECASE
)
# ... and has no subject or subordinator: "We share data and train our models" states
_ITEM_STATES = re.compile(
    r"\b(?:we|you|they|it|he|she|us|our\s+partners|if|when|while|where|because|nous|vous|ils"
    r"|elles|si|quand|lorsque|wir|ihr|du|sie|wenn|falls|weil|nosotros|usted(?:es)?|ellos"
    r"|cuando|porque|noi|voi|loro|quando|perché|se|wij|jij|je|u|zij|ze|als|wanneer|indien"
    r"|omdat)\b",
    re.IGNORECASE,
)
_ITEM_HEAD_WORDS = 8


def _purpose_item(v: _UnitView, positives: list[_Statement]) -> bool:
    """quality: a verbless purpose item that begins with its purpose ("Improving our AI
    models.", "Mejora de modelos, desarrollo del producto y prevención de abuso", "Het
    verbeteren van onze algoritmes (geanonimiseerd)") is a row of a purpose list whose
    lead-in the page lost: a purpose of processing personal data by definition (LABELLING's
    purpose items), so it needs no data noun. Only a short single sentence that opens with the
    purpose (after an article, or an earlier purpose of the row, at most: not "We train our
    system ...") and ends soon after its object: "Training our models can involve a number of
    separate stages" states something, it lists no purpose. A row's short label before a
    colon counts as the item, unless the label says "Purpose": then the item follows it."""
    text = v.text
    colon = text.find(":")
    label = colon > 0 and len(_CELL_WORD.findall(text[:colon])) <= _ITEM_LABEL_WORDS
    start = 0
    if label and _PURPOSE_LABEL.fullmatch(text[:colon]):
        label, start = False, colon + 1
    if label:
        # a labelled row ("Addestramento e sviluppo AI: il sistema identifica ...") is
        # tested on its label
        text = text[:colon]
    elif len(v.sent_starts) > 1:
        return False
    # cheap exit: an earlier purpose of the row (at most _ITEM_HEAD_WORDS) and the item
    if not label and len(_CELL_WORD.findall(text[start:])) > _ITEM_WORDS + _ITEM_HEAD_WORDS:
        return False
    lead = _ITEM_LEAD.match(text, start)
    start = lead.end() if lead else start
    for st in positives:
        p = st.purpose[0]
        if p < start:
            continue
        head = text[start:p]
        if not (p == start or _ITEM_ARTICLE.fullmatch(head) or _coordinated(head)):
            continue
        end = max(max(o[1] for o in st.objects), st.purpose[1])
        if end > len(text) or (not label and ":" in text[p:]):
            continue
        if not label and len(_CELL_WORD.findall(text[p:])) > _ITEM_WORDS:
            continue
        tail = text[end:]
        qualifier = _ITEM_PP.match(tail)
        rest = tail[qualifier.end() :] if qualifier else tail
        tail_words = len(_CELL_WORD.findall(rest))
        if tail_words > _ITEM_TAIL or (not label and _ITEM_VERB.search(tail)):
            continue
        # past a few words, only the list goes on ("Mejora de modelos, desarrollo del producto
        # y prevención de abuso"): "Improving our models remains our goal" is a statement
        if tail_words > _ITEM_SHORT_TAIL and not _ITEM_LIST_GOES_ON.match(rest):
            continue
        return True
    return False


def _coordinated(head: str) -> bool:
    # "Fraude voorkomen en het trainen van ...": the article belongs to the next purpose
    last = head.rstrip().rpartition(" ")
    if last[1] and _ITEM_ARTICLE.fullmatch(last[2]):
        head = last[0] + " "
    return (
        len(_CELL_WORD.findall(head)) <= _ITEM_HEAD_WORDS
        and bool(_ITEM_COORDINATED.fullmatch(head))
        and not _ITEM_VERB.search(head)
        and not _ITEM_STATES.search(head)
    )


# fmt: off
_MINOR_WORDS = frozenset((
    "a", "an", "and", "as", "at", "by", "de", "des", "du", "en", "et", "for", "from", "in",
    "of", "on", "or", "per", "the", "to", "via", "vs", "with",
))
# fmt: on


def _header_row(text: str) -> bool:
    """A table's header row is labels, not a statement: "Model | Model Provider | Trains on
    User Data via API | Data Retention" or an rST ``csv-table`` header. A row of four or more
    short cells, every one in title case; a purpose row ("| train our ad models | Consent |")
    is in sentence case, and has fewer columns, and stays."""
    if ":header:" in text:
        return True
    cells = [c.strip() for c in text.strip().strip("|").split("|")]
    if len(cells) < 4 or any(not c for c in cells):
        return False
    for cell in cells:
        words = _CELL_WORD.findall(cell)
        if not words or len(words) > 7:
            return False
        if any(w[0].islower() and w.lower() not in _MINOR_WORDS for w in words):
            return False
    return True


# Questions that presuppose the training: "Don't want your posts used for training?" and its
# translations ("Wil je niet dat ...?", "Vous ne souhaitez pas que ...?").
_PRESUPPOSING_QUESTION = re.compile(
    r"[\W_]*(?:don['’]t|do\s+not|would\s+you\s+rather\s+not|prefer\s+not|rather\s+not"
    r"|not\s+(?:want|comfortable)|wil\s+je\s+niet|wilt\s+u\s+niet|möchtest\s+du\s+nicht"
    r"|möchten\s+Sie\s+nicht|willst\s+du\s+nicht|wollen\s+Sie\s+nicht"
    r"|(?:vous\s+ne|tu\s+ne)\s+(?:souhaitez|voulez|veux|souhaites)\s+pas|no\s+quieres"
    r"|no\s+desea|non\s+vuoi|non\s+desideri)\b",
    re.IGNORECASE,
)
_CHOICE_ROLES = ("opt_out", "opt_out_weak", "conditional_opt_out", "opt_in", "conditional_opt_in")


def _asks(v: _UnitView, sent: int) -> bool:
    """Is sentence ``sent`` of the unit a question that does not presuppose the training
    (a question naming a choice, "Opted out of model training? ...", presupposes it)?"""
    start = v.sent_starts[sent]
    end = v.sent_starts[sent + 1] if sent + 1 < len(v.sent_starts) else len(v.text)
    # a quoted question ("\"Is my data used to train AI?\"", an FAQ entry) asks all the same
    sentence = v.text[start:end].rstrip().rstrip("\"'”’»)").rstrip()
    if not sentence.endswith("?") or _PRESUPPOSING_QUESTION.match(sentence):
        return False
    return not any(start <= a < end for role in _CHOICE_ROLES for a, _ in v.find(role))


def _tied_cues(v: _UnitView, stmts: list[_Statement], m: Roles) -> dict[str, Spans]:
    """quality: the unit's consent cues, without opt-in wording of a sentence that neither
    holds a training statement nor refers to training ("* With your consent, we save audio
    recordings ..." as the next item of a list): consent given for something else."""
    cues = consent_cues(v.raw, m)
    if len(v.sent_starts) > 1 and cues.get("opt_in"):
        tied = {s.sentence for s in stmts}
        refer = v.find("object") + v.find("purpose") + v.find("anaphora")
        tied |= {v.sentence_of(a) for a, _ in refer}
        kept = [c for c in cues["opt_in"] if v.sentence_of(c[0]) in tied]
        if kept:
            cues["opt_in"] = kept
        else:
            del cues["opt_in"]
    return cues


def _role(kind: str) -> str:
    return {"opt_out_weak": "opt_out", "none_soft": "none"}.get(kind, kind)


def _kind(v: _UnitView, positives: list[_Statement], pack: RulePack) -> str:
    third = v.find("third_party")
    if pack.rule("third_party") and any(
        v.sentence_of(t[0]) in {s.sentence for s in positives} for t in third
    ):
        return "third_party"
    narrow = v.find("object_narrow")
    if pack.rule("narrow_ml") and all(all(o in narrow for o in s.objects) for s in positives):
        return "narrow_ml"
    return "disclosure"


def _spans(v: _UnitView, stmts: list[_Statement]) -> list[Span]:
    out: list[Span] = []
    raw = v.raw
    for st in stmts:
        a, b = st.purpose
        out.append(Span(a, b, "purpose", raw[a:b]))
        for a, b in st.objects:
            out.append(Span(a, b, "object", raw[a:b]))
        if st.negation is not None:
            a, b = st.negation
            out.append(Span(a, b, "negation", raw[a:b]))
    for a, b in v.find("data"):
        out.append(Span(a, b, "data", raw[a:b]))
    return out


def _dedup(spans: list[Span]) -> list[Span]:
    seen: set[tuple[int, int, str]] = set()
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, s.end)):
        key = (s.start, s.end, s.role)
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


HEADING_JOIN = ": — "


def heading_states_training(heading: str, lang: str, pack: RulePack) -> bool:
    """Does a section heading name a training purpose with its AI object ("Training our AI
    models", "Comment nous utilisons vos données pour développer l'IA")?"""
    m = pack.matcher(lang)
    return _names_purpose(m, heading) and bool(_statements(_UnitView(heading, m), pack))


def under_training_heading(heading: str, text: str, lang: str, pack: RulePack) -> Assessment | None:
    """quality: a sentence of a section headed by a training statement that points back to
    it ("We use your posts and comments for this purpose") takes the heading as its purpose,
    as a list item takes its lead-in. Only with an anaphora and a use verb: a section's other
    sentences have purposes of their own, and "we describe the sources of this data in
    Section 3" uses nothing. Not when the sentence holds a negation: "we do not use private
    messages for this purpose" under such a heading is left alone rather than read as a
    disclosure. The assessment's offsets are in ``heading + HEADING_JOIN + text``."""
    if heading.rstrip().endswith("?"):
        return None  # a question ("Will the AI learn from my data?") states nothing
    view = _UnitView(text, pack.matcher(lang))
    if not view.find("anaphora") or not view.find("use_verb"):
        return None
    kept = view.find("not_negation")
    if any(not _overlaps(n, kept) for n in view.find("negation")):
        return None
    a = assess(heading + HEADING_JOIN + text, lang, pack)
    return a if a is not None and a.verdict.ai_training else None


def mentions_training(
    text: str, lang: str, pack: RulePack, bits: int = ALL_BITS, lits: Lits = None
) -> bool:
    """Does ``text`` refer to training or to an AI object (used to tie context units)?"""
    m = _roles(pack.matcher(lang), pack, bits, lits)
    folded = fold(text)
    return bool(m.find("object", folded) or m.find("purpose", folded) or m.find("anaphora", folded))


# --------------------------------------------------------------------------- generic engine


def _split_clauses(text: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    pos = 0
    for m in re.finditer(r"[;:,]\s|\s[–—]\s", text):
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, len(text)))
    return [(a, b) for a, b in out if b > a]


def _spans_of(pat: re.Pattern[str] | None, text: str) -> list[re.Match[str]]:
    if pat is None:
        return []
    return [mm for mm in pat.finditer(text) if mm.end() > mm.start()]


def _patterns(c: CompiledCondition, lits: Lits) -> list[re.Pattern[str] | None]:
    """The node's patterns (one, or each side of "near") for a text holding ``lits``."""
    if c.term_sets:
        return [ts.pattern(lits) for ts in c.term_sets]
    if c.op == "near":
        assert c.near is not None
        return list(c.near)
    return [c.pattern]


def _eval(c: CompiledCondition, text: str, hits: list[Span], lits: Lits = None) -> bool:
    if c.op == "terms":
        found = _spans_of(_patterns(c, lits)[0], text)
        for mm in found:
            hits.append(Span(mm.start(), mm.end(), "term", mm.group()))
        return bool(found)
    if c.op == "near":
        side_a, side_b = _patterns(c, lits)
        a_hits = [mm.span() for mm in _spans_of(side_a, text)]
        if not a_hits:  # the (rarer, by convention) first side decides most units
            return False
        b_hits = [mm.span() for mm in _spans_of(side_b, text)]
        runs = _WordRuns(text) if b_hits else None
        for a in a_hits:
            for b in b_hits:
                lo, hi = (a[1], b[0]) if a[0] <= b[0] else (b[1], a[0])
                assert runs is not None
                if runs.between(lo, hi) <= c.within:
                    hits.append(Span(a[0], a[1], "term", text[a[0] : a[1]]))
                    hits.append(Span(b[0], b[1], "term", text[b[0] : b[1]]))
                    return True
        return False
    if c.op == "all":
        return all(_eval(k, text, hits, lits) for k in c.children)
    if c.op == "any":
        return any([_eval(k, text, hits, lits) for k in c.children])  # collect every hit
    return not _eval(c.children[0], text, [], lits)


def may_hold(c: CompiledCondition, gate: TokenGate | None, bits: int, lits: Lits = None) -> bool:
    """False only when ``c`` cannot hold on a text whose tokens carry ``bits`` (see
    :class:`TokenGate`) or whose literals are ``lits`` (see TermSet): a cheap test before
    :func:`eval_generic`."""
    if c.op in ("terms", "near"):
        if gate is not None and not all(gate.hit(k, bits) for k in c.gate_keys):
            return False
        return all(ts.may_match(lits) for ts in c.term_sets)
    if c.op == "all":
        return all(may_hold(k, gate, bits, lits) for k in c.children)
    if c.op == "any":
        return any(may_hold(k, gate, bits, lits) for k in c.children)
    return True


def eval_generic(rule: Rule, text: str, lits: Lits = None) -> list[Span] | None:
    """Spans of the terms that made ``rule`` fire on ``text``, or ``None``. ``lits``: the
    literals of ``text`` (or of a text it is part of) in the pack's LiteralIndex."""
    assert rule.condition is not None
    folded = fold(text)
    if rule.scope == "clause":
        for a, b in _split_clauses(folded):
            hits: list[Span] = []
            if _eval(rule.condition, folded[a:b], hits, lits):
                return [
                    Span(h.start + a, h.end + a, h.role, text[h.start + a : h.end + a])
                    for h in hits
                ]
        return None
    hits = []
    if _eval(rule.condition, folded, hits, lits):
        return _dedup([Span(h.start, h.end, h.role, text[h.start : h.end]) for h in hits])
    return None

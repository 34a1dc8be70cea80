"""Alert decisions on state transitions between two analyses of one document.

:func:`decide_alerts` is pure: it compares the previous and the new :class:`Analysis` and says
which alerts the change deserves. :func:`record_alerts` is the pipeline hook that feeds it the
document's alert history (so the same clause never alerts twice) and stores the decisions;
:func:`list_alerts` reads them back for pages, the feed and the CLI.

A *clause* is one analysed unit with its ai-training findings merged (several rules can fire on
one unit). Clauses are matched across versions by word-sequence similarity, as wholes and at
sentence level (table cells, bullets and sentences of a unit apart): a new wording is the old
clause when each of its sentences that says the training is found in it, reworded, or nearly
word for word whatever the sizes (a sentence split out of a 130-word table row). So a clause
that is only reworded, moved or re-split is the same clause. Its ``clause_key`` is the
normalised text of the first version of that clause that ever alerted, reused by fuzzy match
for every later wording.

An opt-out sentence added next to a newly added training clause of the same section (within
three units) is that clause's way out: one ``ai_training_added`` alert, at opt-out severity,
quoting both. A regime is *downgraded* only when the old consent wording is gone: not when a
weaker copy or piece of a clause appears while a wording of it keeps the old regime.

Key formats (``alerts.clause_key``):

- ``<text>`` ai_training_added (and the training clauses listed by a baseline);
- ``<text>#back=<hash>`` ai_training_added of a clause that returns after the
  ``@removed#<hash>`` alert said the policy had stopped disclosing training;
- ``<text>#to=<consent>`` consent_downgraded (one alert per clause and consent level);
- ``<text>#denial`` negation_removed;
- ``@baseline``, ``@removed#<hash>``, ``@document#to=<consent>`` document-level alerts.

``<text>`` is lower-case words joined by single spaces, so it never holds ``#`` or starts with
``@``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from monitor.models import Analysis, Consent, Finding, Span
from monitor.store import Store, Version, iso

__all__ = [
    "EMAILABLE_ORIGINS",
    "FLAP_WINDOW",
    "OPT_IN_WORDING",
    "ORIGINS",
    "AlertDecision",
    "AlertRow",
    "AlertType",
    "decide_alerts",
    "list_alerts",
    "opt_in_wording",
    "record_alerts",
]


# Where an alert came from (``alerts.origin``). Only the e-mailable ones reach subscribers:
# imported history is not news, unless the import was asked to notify (issue 6).
ORIGINS = ("check", "import", "import-notify")
EMAILABLE_ORIGINS = ("check", "import-notify")


class AlertType(StrEnum):
    AI_TRAINING_ADDED = "ai_training_added"
    CONSENT_DOWNGRADED = "consent_downgraded"
    NEGATION_REMOVED = "negation_removed"
    AI_TRAINING_REMOVED = "ai_training_removed"
    BASELINE = "baseline"

    @property
    def label(self) -> str:
        return {
            "ai_training_added": "AI training added",
            "consent_downgraded": "Consent downgraded",
            "negation_removed": "Denial removed",
            "ai_training_removed": "AI training removed",
            "baseline": "Already trains AI",
        }[self.value]


# Examples of the opt-in wording the analyser looks for (LABELLING.md), per language. Shown on
# alert pages as "looked for ... not found"; the analyser's own lexicon is the authority.
OPT_IN_WORDING: dict[str, tuple[str, ...]] = {
    "en": (
        "with your consent",
        "with your explicit permission",
        "only if you opt in",
        "only if you choose to",
        "off by default",
        "we will ask for your consent",
        "not without your consent",
    ),
    "fr": (
        "avec votre consentement",
        "uniquement si vous l'acceptez",
        "désactivé par défaut",
        "nous vous demanderons votre consentement",
    ),
    "de": (
        "mit Ihrer Einwilligung",
        "nur wenn Sie zustimmen",
        "standardmäßig deaktiviert",
        "nicht ohne Ihre Einwilligung",
    ),
    "es": (
        "con tu consentimiento",
        "solo si lo aceptas",
        "desactivado de forma predeterminada",
        "no sin tu consentimiento",
    ),
    "it": (
        "con il tuo consenso",
        "solo se acconsenti",
        "disattivato per impostazione predefinita",
        "non senza il tuo consenso",
    ),
    "nl": (
        "met uw toestemming",
        "alleen als u daarvoor kiest",
        "standaard uitgeschakeld",
        "niet zonder uw toestemming",
    ),
    "pl": ("za Twoją zgodą", "tylko jeśli wyrazisz zgodę", "domyślnie wyłączone"),
    "el": ("με τη συγκατάθεσή σας", "μόνο εάν συναινέσετε"),
}


def opt_in_wording(lang: str | None) -> list[str]:
    """The opt-in examples for a language (``"fr-FR"`` -> French), English when unknown."""
    base = (lang or "en").split("-")[0].lower()
    return list(OPT_IN_WORDING.get(base, OPT_IN_WORDING["en"]))


@dataclass(slots=True)
class AlertDecision:
    """One alert a transition deserves, before it is stored."""

    type: AlertType
    severity: str  # "high" | "medium" | "low" | "info"
    clause_key: str
    unit_text: str | None
    summary: str  # one plain sentence: what changed
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class AlertRow:
    """A stored alert joined with its document and versions."""

    id: int
    document_id: str
    platform: str
    doc_type: str
    url: str
    type: AlertType
    severity: str
    created_at: str
    version_id: int
    version_number: int
    version_first_seen: str
    prev_version_id: int | None
    prev_version_number: int | None
    prev_version_first_seen: str | None
    clause_key: str
    unit_text: str | None
    summary: str
    evidence: dict[str, Any]
    origin: str = "check"

    @property
    def emailable(self) -> bool:
        return self.origin in EMAILABLE_ORIGINS

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "document": self.document_id,
            "platform": self.platform,
            "doc_type": self.doc_type,
            "url": self.url,
            "type": self.type.value,
            "severity": self.severity,
            "created_at": self.created_at,
            "version": self.version_number,
            "prev_version": self.prev_version_number,
            "clause_key": self.clause_key,
            "unit_text": self.unit_text,
            "summary": self.summary,
            "evidence": self.evidence,
            "origin": self.origin,
        }


# --------------------------------------------------------------------------------------------
# Clauses and their similarity
# --------------------------------------------------------------------------------------------

# Word-sequence ratio (difflib over words) at or above which two wordings are the same clause:
# a reworded clause keeps most of its words in order; two different training clauses of one
# policy share the vocabulary ("use", "your", "train", "models") but not the sequence.
SIMILARITY = 0.6
# A clause split in two (or two merged into one) keeps most of its words: multiset containment
# of the shorter in the longer, only between wordings of comparable size.
_CONTAINMENT = 0.85
_CONTAINMENT_MIN_WORDS = 6
_CONTAINMENT_MIN_SIZE_RATIO = 0.4
# A run of this many identical words in a row, covering most of the shorter wording.
_BLOCK_MIN_WORDS = 12
# Near-total containment: the shorter wording's words found in the longer one, in order, with
# a long run among them, is the same clause whatever the sizes (a sentence and the 135-word
# table row it was taken from).
_NEAR_TOTAL = 0.9
_NEAR_TOTAL_MIN_WORDS = 8
# Sentences shorter than this are not compared on their own ("We use it to:", a heading).
_PIECE_MIN_WORDS = 6
# Table cells, line breaks and bullets inside one unit separate sentences as well.
_PIECE_CUT = re.compile(r"\s\|\s|<br\s*/?>|\s[*•]\s|\s[—–]\s")
# An opt-out sentence this close to a newly added training clause of the same section is
# that clause's way out, not a disclosure of its own.
_FOLD_WINDOW = 3

_WORD = re.compile(r"\w+")
_SEVERITY_BY_CONSENT = {Consent.NONE: "high", Consent.OPT_OUT: "medium"}
_CONSENT_TEXT = {
    Consent.NONE: "no opt-in and no opt-out",
    Consent.OPT_OUT: "opt-out only",
    Consent.OPT_IN: "opt-in",
    Consent.NA: "n/a",
}


def normalise(text: str) -> str:
    """Lower-case words joined by single spaces: the text part of a clause key."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_WORD.findall(folded))


def similarity(a: str, b: str) -> float:
    """How much two normalised wordings are the same clause, 0..1."""
    if a == b:
        return 1.0
    wa, wb = a.split(), b.split()
    if not wa or not wb:
        return 0.0
    matcher = difflib.SequenceMatcher(None, wa, wb, autojunk=False)
    ratio = matcher.ratio() if matcher.real_quick_ratio() >= SIMILARITY else 0.0
    short, long_ = sorted((wa, wb), key=len)
    if len(short) >= _CONTAINMENT_MIN_WORDS:
        common = sum((Counter(short) & Counter(long_)).values())
        containment = common / len(short)
        if containment >= _CONTAINMENT and len(short) / len(long_) >= _CONTAINMENT_MIN_SIZE_RATIO:
            ratio = max(ratio, containment)
        elif containment >= _NEAR_TOTAL and len(short) >= _NEAR_TOTAL_MIN_WORDS:
            # Bag containment alone is cheap and loose (common words are everywhere in a long
            # row): require the words in order, with a long run among them.
            blocks = matcher.get_matching_blocks()
            in_order = sum(m.size for m in blocks) / len(short)
            if in_order >= _NEAR_TOTAL and max(m.size for m in blocks) * 2 >= len(short):
                ratio = max(ratio, in_order)
    if ratio < SIMILARITY and len(short) >= _BLOCK_MIN_WORDS:
        # A clause moved into a longer unit (a table row, a new lead-in) keeps a long run of
        # identical words even when the unit as a whole shares little.
        block = matcher.find_longest_match(0, len(wa), 0, len(wb)).size
        if block >= _BLOCK_MIN_WORDS:
            ratio = max(ratio, block / len(short))
    return ratio


def _is_training_family(f: Finding) -> bool:
    return f.pack == "ai-training" or f.category == "ai_training"


def _pieces(text: str, spans: Sequence[Span]) -> tuple[list[str], list[str]]:
    """A unit's sentences (table cells and bullets split too), normalised, and those of them
    that carry a training purpose (all of them when no span says)."""
    # Imported here: the analyser package costs 0.4 s to import, which `check` of unchanged
    # pages and the daemon's start never pay for (they import this module for the outbox).
    from monitor.analyse.segment import split_sentences

    bounds: list[tuple[int, int]] = []
    pos = 0
    for m in _PIECE_CUT.finditer(text):
        bounds.append((pos, m.start()))
        pos = m.end()
    bounds.append((pos, len(text)))
    purposes = [sp.start for sp in spans if sp.role == "purpose"]
    pieces: list[str] = []
    training: list[str] = []
    for lo, hi in bounds:
        for start, end in split_sentences(text, lo, hi):
            norm = normalise(text[start:end])
            if len(norm.split()) < _PIECE_MIN_WORDS:
                continue
            pieces.append(norm)
            if any(start <= at < end for at in purposes):
                training.append(norm)
    return pieces, training or pieces


@dataclass(slots=True)
class _Clause:
    """One unit with its ai-training findings merged."""

    unit_index: int
    text: str
    norm: str
    findings: list[Finding]
    _pieces: tuple[list[str], list[str]] | None = field(default=None, repr=False)
    _words: frozenset[str] | None = field(default=None, repr=False)

    @property
    def pieces(self) -> list[str]:
        """The unit's sentences, normalised (see :func:`_pieces`)."""
        if self._pieces is None:
            self._pieces = _pieces(self.text, self.spans())
        return self._pieces[0]

    @property
    def training_pieces(self) -> list[str]:
        """The sentences that say the training: what makes two wordings the same clause."""
        if self._pieces is None:
            self._pieces = _pieces(self.text, self.spans())
        return self._pieces[1]

    @property
    def words(self) -> frozenset[str]:
        if self._words is None:
            self._words = frozenset(self.norm.split())
        return self._words

    @property
    def heading(self) -> tuple[str, ...]:
        return tuple(self.findings[0].heading_path)

    @property
    def choice_words(self) -> list[str]:
        """The opt-in or opt-out wording in the unit's own text, normalised ("object to",
        "only if you opt in"); not "legitimate interests", not cues tied in from neighbours."""
        words = (normalise(s.text) for s in self.spans() if s.role in ("opt_in", "opt_out"))
        return list(dict.fromkeys(w for w in words if w))

    @property
    def training(self) -> bool:
        return any(f.ai_training for f in self.findings)

    @property
    def denial(self) -> bool:
        # A negated statement that discloses no training at all ("we do not use ... to train").
        return not self.training and any(f.negated for f in self.findings)

    @property
    def consent(self) -> Consent:
        regimes = [f.consent for f in self.findings if f.ai_training]
        return min(regimes, key=lambda c: c.strength) if regimes else Consent.NA

    @property
    def categories(self) -> set[str]:
        return {f.category for f in self.findings}

    @property
    def lang(self) -> str:
        return self.findings[0].lang

    def spans(self) -> list[Span]:
        out: dict[tuple[int, int, str], Span] = {}
        for f in self.findings:
            for s in f.spans:
                out.setdefault((s.start, s.end, s.role), s)
        return sorted(out.values(), key=lambda s: (s.start, s.end))

    def rule_ids(self) -> list[str]:
        return sorted({f.rule_id for f in self.findings})

    def cues(self) -> list[str]:
        seen: dict[str, None] = {}
        for f in self.findings:
            for c in f.consent_cues:
                seen.setdefault(c, None)
        return list(seen)

    def describe(self) -> dict[str, Any]:
        """The clause as evidence: enough for a page to quote and highlight it."""
        first = self.findings[0]
        return {
            "unit_index": self.unit_index,
            "unit_text": self.text,
            "heading_path": list(first.heading_path),
            "lang": self.lang,
            "ai_training": self.training,
            "negated": any(f.negated for f in self.findings),
            "consent": self.consent.value,
            "consent_cues": self.cues(),
            "rule_ids": self.rule_ids(),
            "spans": [
                {"start": s.start, "end": s.end, "role": s.role, "text": s.text}
                for s in self.spans()
            ],
        }


def _clauses(analysis: Analysis | None) -> list[_Clause]:
    if analysis is None:
        return []
    by_unit: dict[int, _Clause] = {}
    for f in analysis.findings:
        if not _is_training_family(f):
            continue
        clause = by_unit.get(f.unit_index)
        if clause is None:
            by_unit[f.unit_index] = _Clause(f.unit_index, f.unit_text, normalise(f.unit_text), [f])
        else:
            clause.findings.append(f)
    return [by_unit[i] for i in sorted(by_unit)]


# Possessives and articles that data spans carry ("your posts", "vos publications"); they say
# nothing about which data a clause is about.
_DATA_STOPWORDS = frozenset(
    " ".join(
        (
            "a an the your our their its of and or any all",
            "la le les de des du vos votre leurs et ou",
            "der die das den dem ihre ihrer ihren und oder",
            "el los las sus tus y o il lo gli i tuoi tue suoi e het uw jouw en",
        )
    ).split()
)


def _data_words(clause: _Clause) -> set[str]:
    words: set[str] = set()
    for span in clause.spans():
        if span.role == "data":
            words.update(w for w in normalise(span.text).split() if w not in _DATA_STOPWORDS)
    return words


def _same_data(a: _Clause, b: _Clause) -> bool:
    # Short training clauses are mostly boilerplate ("we use your ... to train our AI models"):
    # when both name the data concerned and share none of it, they are different clauses.
    da, db = _data_words(a), _data_words(b)
    return not (da and db) or bool(da & db)


def _piece_score(piece: str, norm: str, pieces: Sequence[str], words: frozenset[str]) -> float:
    """How well one sentence is found in a wording (given whole, and as sentences)."""
    own = piece.split()
    if sum(w in words for w in own) < SIMILARITY * len(own):
        return 0.0  # most of its words are not there at all: no ordering can fix that
    return max([similarity(piece, norm), *(similarity(piece, q) for q in pieces)])


def clause_similarity(new: _Clause, old: _Clause) -> float:
    """Whether ``new`` is a wording of ``old``: the units as wholes, or else every sentence
    of ``new`` that says the training found in ``old`` (split out of a table row, moved under
    a new lead-in, cut in two). Not symmetric: what ``old`` also said may have gone."""
    whole = similarity(new.norm, old.norm)
    if whole >= SIMILARITY or not new.training_pieces:
        return whole
    worst = 1.0
    for piece in new.training_pieces:
        worst = min(worst, _piece_score(piece, old.norm, old.pieces, old.words))
        if worst < SIMILARITY:
            return whole
    return max(whole, worst)


def _best_match(clause: _Clause, candidates: Iterable[_Clause]) -> tuple[_Clause | None, float]:
    best: _Clause | None = None
    score = 0.0
    for other in candidates:
        if not clause.categories & other.categories or not _same_data(clause, other):
            continue
        if clause.norm == other.norm:
            return other, 1.0
        s = clause_similarity(clause, other)
        if s > score:
            best, score = other, s
    return (best, score) if score >= SIMILARITY else (None, score)


class _Keys:
    """Earlier alerts' keys, and the reuse of a matching one for a new wording."""

    def __init__(self, seen: Collection[str]) -> None:
        self.seen = set(seen)
        self.texts: list[str] = []
        self.denials: list[str] = []
        for key in self.seen:
            if key.startswith("@"):
                continue
            text, _, qualifier = key.partition("#")
            (self.denials if qualifier == "denial" else self.texts).append(text)
        # Deterministic reuse when two earlier keys match equally well.
        self.texts = sorted(set(self.texts))
        self.denials = sorted(set(self.denials))

    @staticmethod
    def _reuse(norm: str, pool: Sequence[str], pieces: Sequence[str] = ()) -> str | None:
        best, score = None, 0.0
        for text in pool:
            s = similarity(norm, text)
            if s < SIMILARITY and pieces:
                # Every training sentence of the wording found in the key's text.
                words = frozenset(text.split())
                s = max(s, min(_piece_score(p, text, (), words) for p in pieces))
            if s > score:
                best, score = text, s
        return best if score >= SIMILARITY else None

    def clause(self, clause: _Clause | str) -> tuple[str, bool]:
        """The key of a training clause, and whether it has alerted before."""
        if isinstance(clause, str):
            norm, pieces = clause, []
        else:
            norm, pieces = clause.norm, clause.training_pieces
        reused = self._reuse(norm, self.texts, pieces)
        return (reused, True) if reused is not None else (norm, False)

    def denial(self, norm: str) -> str:
        return (self._reuse(norm, self.denials) or norm) + "#denial"

    def add(self, key: str) -> None:
        self.seen.add(key)
        if not key.startswith("@"):
            text, _, qualifier = key.partition("#")
            (self.denials if qualifier == "denial" else self.texts).append(text)


# --------------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------------


def _quote(text: str, limit: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _evidence(
    clauses: Sequence[_Clause],
    *,
    old: Sequence[_Clause] = (),
    consent: Consent | None = None,
    previous_consent: Consent | None = None,
    similarity_score: float | None = None,
) -> dict[str, Any]:
    lang = clauses[0].lang if clauses else (old[0].lang if old else "und")
    found_cues = [c for cl in clauses for c in cl.cues()]
    out: dict[str, Any] = {
        "clauses": [c.describe() for c in clauses],
        "old_clauses": [c.describe() for c in old],
        "findings_new": [f.to_dict() for c in clauses for f in c.findings],
        "findings_old": [f.to_dict() for c in old for f in c.findings],
        "rule_ids": sorted({r for c in (*clauses, *old) for r in c.rule_ids()}),
        "lang": lang,
        "consent": consent.value if consent else None,
        "previous_consent": previous_consent.value if previous_consent else None,
        "consent_cues": found_cues,
        "opt_in_looked_for": opt_in_wording(lang),
        "opt_in_found": consent == Consent.OPT_IN,
    }
    if similarity_score is not None:
        out["similarity"] = round(similarity_score, 3)
    return out


FLAP_WINDOW = dt.timedelta(days=60)
"""Training that comes back this soon after its removal alert is not alerted again.

Archived histories (Meta's pages alternate between two page variants a day or a month apart)
and live sites serving A/B variants would otherwise raise a removal and a high "AI training is
back" alert on every flip. Subscribers at the default severity never saw the (info) removal:
for them training never stopped. A return after the window alerts again, once per removal."""


def _within_flap_window(removed_on: str | None, when: str | None) -> bool:
    if not removed_on or not when:
        return False
    try:
        gone = dt.datetime.fromisoformat(removed_on.replace("Z", "+00:00"))
        back = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return False
    return back - gone < FLAP_WINDOW


def decide_alerts(
    prev: Analysis | None,
    new: Analysis,
    *,
    seen_keys: Collection[str] = (),
    removed: Mapping[str, str] | None = None,
    removed_on: Mapping[str, str] | None = None,
    when: str | None = None,
    first_version: bool,
) -> list[AlertDecision]:
    """The alerts a transition from ``prev`` to ``new`` deserves (pure).

    ``seen_keys`` are the ``clause_key`` values of the document's earlier alerts (plus the
    clause keys a baseline alert listed): a clause matching one of them never alerts again
    for the same reason, unless ``removed`` maps its key to the ``@removed#...`` alert that
    followed its last alert: training that comes back after the policy stopped disclosing it
    is news again (once per removal) - unless it comes back within :data:`FLAP_WINDOW` of
    that removal (``removed_on`` maps a removal key to its date, ``when`` is the new
    version's date): a page flipping between two variants, or a clause dropped and restored
    within weeks, is not a new disclosure to people who were told of it once. For the same
    reason a removal of clauses whose last alert already was their removal says nothing new.
    ``first_version`` marks the first version of a newly watched document; with ``prev``
    None otherwise, everything in ``new`` counts as added.
    """
    if prev is not None and _same_training_state(prev, new):
        return []  # nothing the decisions below look at changed (see _same_training_state)
    keys = _Keys(seen_keys)
    removed = removed or {}
    removed_on = removed_on or {}
    old_clauses = _clauses(prev)
    new_clauses = _clauses(new)
    old_training = [c for c in old_clauses if c.training]
    new_training = [c for c in new_clauses if c.training]
    out: list[AlertDecision] = []

    def emit(decision: AlertDecision) -> bool:
        if decision.clause_key in keys.seen:
            return False
        keys.add(decision.clause_key)
        out.append(decision)
        return True

    if first_version and prev is None:
        return _baseline(new_training, keys)

    consent_explained = False
    added_units: set[int] = set()
    matches = {c.unit_index: _best_match(c, old_training) for c in new_training}
    existing = [c for c in new_training if matches[c.unit_index][0] is not None]
    added = [
        c
        for c in new_training
        if matches[c.unit_index][0] is None
        and c.consent != Consent.OPT_IN
        and not _opt_out_for(c, existing)
    ]
    if _translated(prev, new):
        # The archive now holds the policy in another language: its clauses match none of the
        # old ones word for word, but a policy that disclosed training under this regime (or
        # a weaker one) says nothing new by saying it in French. A translation with a
        # weaker regime is not one of these: its clauses alert as added.
        added = []
    folded_into, folded = _fold_opt_outs(added)
    for clause in added:
        if clause.unit_index in folded:
            continue  # said in the alert of the training clause it is the way out of
        consent_explained = True
        key, alerted_before = keys.clause(clause)
        removal = removed.get(key) if alerted_before else None
        if removal is not None and _within_flap_window(removed_on.get(removal), when):
            continue  # back within weeks of its removal: a flip, not news (see FLAP_WINDOW)
        if alerted_before and removal is None:
            continue  # the same clause came back: it alerted once already
        if removal is not None:
            # It had gone, and the removal was reported: its return is news, once per removal.
            key = f"{key}#back={removal.partition('#')[2]}"
        decision = _added(
            clause, key, old_clauses, folded_into.get(clause.unit_index, []), returns=removal
        )
        if emit(decision):
            added_units.add(clause.unit_index)
    for clause in existing:
        match, score = matches[clause.unit_index]
        assert match is not None
        if clause.consent.strength < match.consent.strength:
            consent_explained = True
            if _regime_persists(match, new_training, clause):
                continue  # a copy or a piece of the clause; its old regime is still there
            emit(_downgraded(clause, match, keys.clause(match)[0], score))

    for denial in (c for c in old_clauses if c.denial):
        if _best_match(denial, (c for c in new_clauses if c.denial))[0] is not None:
            continue
        replaced_by, _ = _best_match(denial, new_training)
        if replaced_by is not None and replaced_by.unit_index in added_units:
            # "we do not train on X" became "we train on X": the ai_training_added alert for
            # the new wording says it (its evidence carries the old denial); one alert, not two.
            continue
        emit(_negation_removed(denial, replaced_by, new, keys.denial(denial.norm)))

    if old_training and not new_training:
        old_keys = sorted(keys.clause(c)[0] for c in old_training)
        # The removals these clauses went through before make a second removal of the same
        # clauses a new alert (the first removal's digest is the plain one).
        earlier = sorted({removed[k] for k in old_keys if k in removed})
        # Every clause's last alert was its removal (it came back unannounced, within the
        # flap window): the people told of that removal learn nothing from a second one.
        already_gone = all(
            k in removed and f"{k}#back={removed[k].partition('#')[2]}" not in keys.seen
            for k in old_keys
        )
        digest = hashlib.sha256("\n".join(old_keys + earlier).encode()).hexdigest()[:16]
        if not already_gone:
            emit(
                AlertDecision(
                    type=AlertType.AI_TRAINING_REMOVED,
                    severity="info",
                    clause_key=f"@removed#{digest}",
                    unit_text=old_training[0].text,
                    summary=(
                        "The policy no longer says that data is used to train AI: "
                        f"{_plural(len(old_training), 'training clause')} removed or rewritten."
                    ),
                    evidence=_evidence(
                        [], old=old_training, previous_consent=prev.consent if prev else None
                    )
                    | {"clause_keys": old_keys},
                )
            )

    if (
        prev is not None
        and prev.ai_training
        and new.ai_training
        and not consent_explained
        and Consent.NA not in (prev.consent, new.consent)
        and new.consent.strength < prev.consent.strength
        and not all(
            _regime_persists(c, new_training)
            for c in old_training
            if c.consent.strength > new.consent.strength
        )
    ):
        weakest = [c for c in new_training if c.consent == new.consent] or new_training
        emit(
            AlertDecision(
                type=AlertType.CONSENT_DOWNGRADED,
                severity=_SEVERITY_BY_CONSENT.get(new.consent, "medium"),
                clause_key=f"@document#to={new.consent.value}",
                unit_text=weakest[0].text if weakest else None,
                summary=(
                    "The policy's consent for AI training got weaker: from "
                    f"{_CONSENT_TEXT[prev.consent]} to {_CONSENT_TEXT[new.consent]}."
                ),
                evidence=_evidence(weakest, consent=new.consent, previous_consent=prev.consent),
            )
        )
    return out


def _translated(prev: Analysis | None, new: Analysis) -> bool:
    """``new`` is ``prev`` in another language, and disclosed training under no weaker
    regime than ``prev`` did."""
    return (
        prev is not None
        and "und" not in (prev.lang, new.lang)
        and prev.lang != new.lang
        and prev.ai_training
        and new.ai_training
        and new.consent.strength >= prev.consent.strength
    )


def _same_training_state(prev: Analysis, new: Analysis) -> bool:
    """Whether ``new`` has ``prev``'s training-family findings (every field but where the
    unit is: ``unit_index``, ``start``, ``end``; on the same units, in order) and
    document-level regime: then no alert is possible, whatever the history.

    Every new clause then has its identical old clause (same text, categories and data), so
    it is matched (nothing added); a weaker clause matched to a stronger namesake leaves that
    namesake's identical copy in the new version (its regime persists: no downgrade); every
    old denial finds its identical copy (nothing removed); training is not gone; the
    document's regime did not weaken. Where the units are only matters to decisions about an
    added clause (its neighbours, its section), and there is none. Most imported versions
    change no training wording; many move it (a unit added above)."""
    if prev.ai_training != new.ai_training or prev.consent != new.consent:
        return False
    old = [f for f in prev.findings if _is_training_family(f)]
    now = [f for f in new.findings if _is_training_family(f)]
    if len(old) != len(now):
        return False
    for k, (a, b) in enumerate(zip(old, now, strict=True)):
        # the same grouping into units (clauses), in the same order
        if k and (a.unit_index == old[k - 1].unit_index) != (b.unit_index == now[k - 1].unit_index):
            return False
        if replace(a, unit_index=b.unit_index, start=b.start, end=b.end) != b:
            return False
    return True


def _opt_out_for(clause: _Clause, existing: Sequence[_Clause]) -> bool:
    """Whether a new opt-out clause is the way out of training the policy already disclosed
    just before it ("You can turn this off in Settings."): LABELLING counts such a sentence as
    a training unit of its own, but what changed is a new choice, not new training."""
    if clause.consent != Consent.OPT_OUT:
        return False
    heading = clause.findings[0].heading_path
    return any(
        0 < clause.unit_index - c.unit_index <= 2 and c.findings[0].heading_path == heading
        for c in existing
    )


def _is_opt_out_sentence(clause: _Clause) -> bool:
    # It names the way out in its own words ("you can object to ...").
    return clause.consent == Consent.OPT_OUT and bool(clause.choice_words)


def _fold_opt_outs(
    added: Sequence[_Clause],
) -> tuple[dict[int, list[_Clause]], set[int]]:
    """New opt-out sentences that are the way out of a training clause added next to them, in
    the same section ("We will use your posts to train ... [...] You can object to this use
    ..."): one change, so one alert, on the training clause. Returns host unit -> the opt-out
    clauses folded into it, and the folded units."""
    into: dict[int, list[_Clause]] = {}
    folded: set[int] = set()
    for clause in added:
        if not _is_opt_out_sentence(clause) or clause.unit_index in into:
            continue
        hosts = [
            c
            for c in added
            if c is not clause
            and c.unit_index not in folded
            and c.heading == clause.heading
            and abs(c.unit_index - clause.unit_index) <= _FOLD_WINDOW
        ]
        if not hosts:
            continue
        # A disclosure rather than another opt-out sentence; the nearest; the one before.
        host = min(
            hosts,
            key=lambda c: (
                _is_opt_out_sentence(c),
                abs(c.unit_index - clause.unit_index),
                c.unit_index,
            ),
        )
        into.setdefault(host.unit_index, []).append(clause)
        folded.add(clause.unit_index)
    return into, folded


def _regime_persists(
    old: _Clause, new_training: Sequence[_Clause], near: _Clause | None = None
) -> bool:
    """Whether the consent wording of ``old`` is still in the new version: a clause that is a
    wording of it keeps at least its regime (a table row copied or split: one piece lost its
    regime but the row still has it), or the old unit's own consent words are still said in a
    training clause next to ``near`` in its section (the way out moved to its own sentence)."""
    for c in new_training:
        if c.consent.strength >= old.consent.strength and clause_similarity(c, old) >= SIMILARITY:
            return True
    cues = old.choice_words
    if near is None or not cues:
        return False
    around = [
        c.norm
        for c in new_training
        if c.heading == near.heading
        and abs(c.unit_index - near.unit_index) <= _FOLD_WINDOW
        and c.consent.strength >= old.consent.strength
    ]
    return all(any(cue in text for text in around) for cue in cues)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _added(
    clause: _Clause,
    key: str,
    old_clauses: Sequence[_Clause],
    opt_outs: Sequence[_Clause] = (),
    returns: str | None = None,
) -> AlertDecision:
    replaced, _ = _best_match(clause, (c for c in old_clauses if c.denial))
    # An opt-out sentence folded in is this training's way out: opt-out, not "no choice".
    consent = Consent.OPT_OUT if opt_outs and clause.consent == Consent.NONE else clause.consent
    how = (
        "with no opt-in and no way to opt out"
        if consent == Consent.NONE
        else "by default, with only an opt-out"
    )
    summary = f"A new clause says data is used to train AI {how}"
    if returns is not None:
        summary = (
            f"AI training is back: a clause says again that data is used to train AI {how},"
            " after the policy had stopped saying so"
        )
    if opt_outs:
        summary += " (the way out is stated in a separate sentence nearby)"
    summary += " (it replaces a statement that data is not used for training)." if replaced else "."
    evidence = _evidence([clause, *opt_outs], old=[replaced] if replaced else [], consent=consent)
    if opt_outs:
        evidence["opt_out_clauses"] = [c.text for c in opt_outs]
    if returns is not None:
        evidence["returns_after"] = returns
    if replaced is not None:
        evidence["replaces_denial"] = replaced.text
    return AlertDecision(
        type=AlertType.AI_TRAINING_ADDED,
        severity=_SEVERITY_BY_CONSENT.get(consent, "medium"),
        clause_key=key,
        unit_text=clause.text,
        summary=summary,
        evidence=evidence,
    )


def _downgraded(clause: _Clause, match: _Clause, key: str, score: float) -> AlertDecision:
    return AlertDecision(
        type=AlertType.CONSENT_DOWNGRADED,
        severity=_SEVERITY_BY_CONSENT.get(clause.consent, "medium"),
        clause_key=f"{key}#to={clause.consent.value}",
        unit_text=clause.text,
        summary=(
            "The AI-training clause's consent got weaker: from "
            f"{_CONSENT_TEXT[match.consent]} to {_CONSENT_TEXT[clause.consent]}."
        ),
        evidence=_evidence(
            [clause],
            old=[match],
            consent=clause.consent,
            previous_consent=match.consent,
            similarity_score=score,
        ),
    )


def _negation_removed(
    denial: _Clause, replaced_by: _Clause | None, new: Analysis, key: str
) -> AlertDecision:
    severity = "medium" if new.alert else "low"
    if replaced_by is not None:
        regime = _CONSENT_TEXT[replaced_by.consent]
        summary = (
            f"The statement “{_quote(denial.text)}” was replaced by one that allows AI training "
            f"({regime})."
        )
    else:
        summary = f"The statement “{_quote(denial.text)}” was removed."
    return AlertDecision(
        type=AlertType.NEGATION_REMOVED,
        severity=severity,
        clause_key=key,
        unit_text=denial.text,
        summary=_one_line(summary),
        evidence=_evidence(
            [replaced_by] if replaced_by else [],
            old=[denial],
            consent=new.consent if new.ai_training else None,
        ),
    )


def _baseline(new_training: Sequence[_Clause], keys: _Keys) -> list[AlertDecision]:
    without = [c for c in new_training if c.consent != Consent.OPT_IN]
    if not without or "@baseline" in keys.seen:
        return []
    weakest = min((c.consent for c in without), key=lambda c: c.strength)
    clause_keys = [keys.clause(c)[0] for c in without]
    return [
        AlertDecision(
            type=AlertType.BASELINE,
            severity=_SEVERITY_BY_CONSENT.get(weakest, "medium"),
            clause_key="@baseline",
            unit_text=without[0].text,
            summary=(
                "When first watched, the policy already says data is used to train AI without "
                f"opt-in ({_plural(len(without), 'clause')}; weakest consent: "
                f"{_CONSENT_TEXT[weakest]})."
            ),
            evidence=_evidence(without, consent=weakest) | {"clause_keys": clause_keys},
        )
    ]


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------
# Store side
# --------------------------------------------------------------------------------------------


def _history(store: Store, doc_id: str) -> tuple[set[str], dict[str, str], dict[str, str]]:
    """The document's alert keys (see :func:`decide_alerts`), for each clause text the
    ``@removed#...`` key of the last removal alert that listed it, and each removal's date."""
    seen: set[str] = set()
    removed: dict[str, str] = {}
    removed_on: dict[str, str] = {}
    for row in store.query(
        "SELECT type, clause_key, evidence, created_at FROM alerts WHERE document_id = ? "
        "ORDER BY id",
        (doc_id,),
    ):
        seen.add(row["clause_key"])
        if row["type"] == AlertType.AI_TRAINING_REMOVED.value:
            removed_on[row["clause_key"]] = row["created_at"]
        if row["type"] in (AlertType.BASELINE.value, AlertType.AI_TRAINING_REMOVED.value):
            # A hand-edited evidence column must not stop the check.
            listed: list[str] = []
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                listed = [str(k) for k in json.loads(row["evidence"]).get("clause_keys") or []]
            if row["type"] == AlertType.BASELINE.value:
                seen.update(listed)
            else:
                removed.update(dict.fromkeys(listed, row["clause_key"]))
    return seen, removed, removed_on


def _version_ref(v: Version | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "id": v.id,
        "number": v.number,
        "first_seen": v.first_seen,
        "effective_date": v.effective_date,
        "source_url": v.source_url,
    }


def record_alerts(
    store: Store,
    doc_id: str,
    prev_version: Version | None,
    version: Version,
    prev_analysis: Analysis | None,
    analysis: Analysis,
    *,
    origin: str | None = None,
) -> list[int]:
    """The pipeline's alert hook: decide the alerts for a new version and store them.

    Runs inside the caller's transaction (or its own). Returns the new alert ids. An alert
    whose (document, type, clause_key) already exists is skipped, never duplicated.
    ``origin`` (one of :data:`ORIGINS`) defaults to ``check`` for a fetched version and
    ``import`` for an imported one.
    """
    if origin is None:
        origin = "import" if version.source == "import" else "check"
    if origin not in ORIGINS:
        raise ValueError(f"unknown alert origin {origin!r}")
    with store.transaction():
        if prev_version is not None and prev_analysis is None:
            prev_analysis = store.analysis(prev_version)
        if prev_analysis is not None and _same_training_state(prev_analysis, analysis):
            return []  # decide_alerts would say nothing: spare it the history
        seen, removed, removed_on = _history(store, doc_id)
        decisions = decide_alerts(
            prev_analysis,
            analysis,
            seen_keys=seen,
            removed=removed,
            removed_on=removed_on,
            when=version.first_seen,
            first_version=prev_version is None,
        )
        ids: list[int] = []
        for d in decisions:
            evidence = d.evidence | {
                "version": _version_ref(version),
                "prev_version": _version_ref(prev_version),
            }
            cur = store.conn.execute(
                "INSERT OR IGNORE INTO alerts (document_id, type, severity, version_id, "
                "prev_version_id, created_at, clause_key, unit_text, summary, evidence, origin) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    doc_id,
                    d.type.value,
                    d.severity,
                    version.id,
                    prev_version.id if prev_version else None,
                    version.first_seen,
                    d.clause_key,
                    d.unit_text,
                    d.summary,
                    json.dumps(evidence, ensure_ascii=False),
                    origin,
                ),
            )
            if cur.rowcount and cur.lastrowid is not None:
                ids.append(cur.lastrowid)
        return ids


_ROW_SQL = """
SELECT a.*, d.platform, d.doc_type, d.url,
       v.number AS version_number, v.first_seen AS version_first_seen,
       p.number AS prev_version_number, p.first_seen AS prev_version_first_seen
FROM alerts a
JOIN documents d ON d.id = a.document_id
JOIN versions v ON v.id = a.version_id
LEFT JOIN versions p ON p.id = a.prev_version_id
"""


def _row(r: dict[str, Any]) -> AlertRow:
    try:
        evidence = json.loads(r["evidence"])
    except ValueError:
        evidence = {}
    return AlertRow(
        id=r["id"],
        document_id=r["document_id"],
        platform=r["platform"],
        doc_type=r["doc_type"],
        url=r["url"],
        type=AlertType(r["type"]),
        severity=r["severity"],
        created_at=r["created_at"],
        version_id=r["version_id"],
        version_number=r["version_number"],
        version_first_seen=r["version_first_seen"],
        prev_version_id=r["prev_version_id"],
        prev_version_number=r["prev_version_number"],
        prev_version_first_seen=r["prev_version_first_seen"],
        clause_key=r["clause_key"],
        unit_text=r["unit_text"],
        summary=r["summary"],
        evidence=evidence if isinstance(evidence, dict) else {},
        origin=r.get("origin") or "check",
    )


def list_alerts(
    store: Store,
    *,
    doc_id: str | None = None,
    since: str | dt.datetime | None = None,
    limit: int | None = None,
    ids: Iterable[int] | None = None,
) -> list[AlertRow]:
    """Stored alerts, newest first, with their document and version numbers."""
    where: list[str] = []
    params: list[Any] = []
    if doc_id is not None:
        where.append("a.document_id = ?")
        params.append(doc_id)
    if since is not None:
        where.append("a.created_at >= ?")
        params.append(iso(since) if isinstance(since, dt.datetime) else since)
    if ids is not None:
        wanted = list(ids)
        if not wanted:
            return []
        where.append(f"a.id IN ({', '.join('?' for _ in wanted)})")
        params.extend(wanted)
    sql = _ROW_SQL + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY a.created_at DESC, a.id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [_row(r) for r in store.query(sql, params)]

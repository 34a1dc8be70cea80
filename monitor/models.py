"""Typed values passed between the pipeline stages.

Stages never share mutable state: each one takes values of these types and returns new ones.
``fetch`` -> :class:`FetchResult`; ``extract`` -> :class:`Extracted`; ``analyse`` ->
:class:`Analysis`; ``diff`` -> :class:`DiffResult`; ``alerts`` -> :class:`AlertDecision`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# The version of the extract stage's output. Each good fetch stores a fingerprint of it and of
# the document's select / remove / render; a check whose fingerprint differs skips the
# conditional GET and the same-body shortcut, so the page is extracted again. Bump it when
# monitor.extract changes the text it gives for the same page.
EXTRACTOR_VERSION = 1


class Outcome(StrEnum):
    """What one check of one document came to. Stored in ``fetches.outcome``."""

    NEW_VERSION = "new_version"  # text changed: a version was stored
    UNCHANGED = "unchanged"  # fetched, text identical to the latest version
    NOT_MODIFIED = "not_modified"  # HTTP 304 to a conditional GET
    SAME_BODY = "same_body"  # raw body sha256 identical to the last one: extraction skipped
    SUSPECT = "suspect"  # captcha / login / error page / empty selection / drastic shrink
    HTTP_ERROR = "http_error"  # final status >= 400 after retries
    NETWORK_ERROR = "network_error"  # connect / read error after retries
    TIMEOUT = "timeout"
    TOO_LARGE = "too_large"  # body over http.max_bytes
    ROBOTS_DISALLOWED = "robots_disallowed"
    ERROR = "error"  # anything else (a bug in a stage); the check of other documents goes on

    @property
    def failed(self) -> bool:
        return self in {
            Outcome.HTTP_ERROR,
            Outcome.NETWORK_ERROR,
            Outcome.TIMEOUT,
            Outcome.TOO_LARGE,
            Outcome.ROBOTS_DISALLOWED,
            Outcome.ERROR,
        }


@dataclass(slots=True)
class FetchResult:
    """The result of fetching one URL (after redirects and retries).

    ``outcome`` is one of NOT_MODIFIED, HTTP_ERROR, NETWORK_ERROR, TIMEOUT, TOO_LARGE,
    ROBOTS_DISALLOWED, or ``None`` when a body was received with a 2xx status (the pipeline
    then decides between SAME_BODY, UNCHANGED, NEW_VERSION and SUSPECT).
    """

    url: str
    final_url: str
    status: int | None
    body: bytes | None
    text: str | None  # body decoded with the declared or detected charset
    content_type: str | None
    etag: str | None
    last_modified: str | None
    outcome: Outcome | None
    error: str | None = None
    attempts: int = 1
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    elapsed: float = 0.0  # seconds, all attempts included
    robots_overridden: bool = False
    # The server's Retry-After (seconds) when the fetch ended on a 429 / 503 without waiting
    # it out: the daemon comes back then instead of holding a check slot meanwhile.
    retry_after: float | None = None


@dataclass(slots=True)
class Extracted:
    """Normalised block text of a page.

    ``text`` is blocks separated by one blank line. A heading block starts with ``#`` marks
    (``## Title``), a list item with ``- ``; everything else is a paragraph. Unicode NFC, no
    nbsp, single spaces, no trailing whitespace: two pages that differ only in markup give
    the same ``text``.
    """

    text: str
    title: str | None = None
    effective_date: dt.date | None = None
    matched_selector: bool = True  # False when ``select`` matched nothing
    suspect_reason: str | None = None  # set by extract.suspect_reason(), not by extraction


class Consent(StrEnum):
    """The user-choice regime tied to AI training (LABELLING.md). Ordered weakest first."""

    NONE = "none"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    NA = "n/a"

    @property
    def strength(self) -> int:
        return {"none": 0, "opt_out": 1, "opt_in": 2, "n/a": 3}[self.value]


@dataclass(slots=True)
class Unit:
    """A sentence, clause or list item with its lead-in, located in the document text."""

    index: int
    text: str
    start: int  # offset of the unit in the analysed text
    end: int
    heading_path: tuple[str, ...] = ()
    lang: str = "und"


@dataclass(slots=True)
class Span:
    """A matched term inside a unit (offsets relative to the unit text)."""

    start: int
    end: int
    role: str  # "purpose", "object", "data", "negation", "opt_in", "opt_out", "none", "term"
    text: str


@dataclass(slots=True)
class Finding:
    """One unit that one rule matched."""

    pack: str  # rule pack id, e.g. "ai-training"
    rule_id: str
    category: str  # e.g. "ai_training", "ai_affiliate_sharing", "biometric"
    severity: str  # "high" | "medium" | "low" | "info"
    unit_index: int
    unit_text: str
    start: int
    end: int
    heading_path: tuple[str, ...]
    lang: str
    ai_training: bool  # a positive disclosure of training (LABELLING.md); False for other packs
    consent: Consent
    negated: bool
    spans: list[Span] = field(default_factory=list)
    consent_cues: list[str] = field(default_factory=list)  # wording that set the regime

    def to_dict(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "rule_id": self.rule_id,
            "category": self.category,
            "severity": self.severity,
            "unit_index": self.unit_index,
            "unit_text": self.unit_text,
            "start": self.start,
            "end": self.end,
            "heading_path": list(self.heading_path),
            "lang": self.lang,
            "ai_training": self.ai_training,
            "consent": self.consent.value,
            "negated": self.negated,
            "spans": [
                {"start": s.start, "end": s.end, "role": s.role, "text": s.text} for s in self.spans
            ],
            "consent_cues": list(self.consent_cues),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(
            pack=d["pack"],
            rule_id=d["rule_id"],
            category=d["category"],
            severity=d["severity"],
            unit_index=d["unit_index"],
            unit_text=d["unit_text"],
            start=d["start"],
            end=d["end"],
            heading_path=tuple(d.get("heading_path") or ()),
            lang=d.get("lang", "und"),
            ai_training=bool(d["ai_training"]),
            consent=Consent(d["consent"]),
            negated=bool(d["negated"]),
            spans=[Span(**s) for s in d.get("spans") or []],
            consent_cues=list(d.get("consent_cues") or []),
        )


@dataclass(slots=True)
class Analysis:
    """Document-level result of running the rule packs over one text.

    ``ai_training`` is True when any non-negated positive ai-training finding exists (a
    conditional "not without your consent" still counts: LABELLING.md). ``consent`` is the
    weakest regime among training findings, ``n/a`` when there is no training.
    """

    lang: str
    ai_training: bool
    consent: Consent
    negated: bool  # some training statement in the text carries a negation
    findings: list[Finding] = field(default_factory=list)
    unit_count: int = 0

    @property
    def alert(self) -> bool:
        return self.ai_training and self.consent != Consent.OPT_IN

    def to_dict(self) -> dict[str, Any]:
        """The shape of ``analyse --format json`` and of each ``analyse --jsonl`` line."""
        return {
            "lang": self.lang,
            "ai_training": self.ai_training,
            "consent": self.consent.value,
            "negated": self.negated,
            "alert": self.alert,
            "units": self.unit_count,
            "findings": [f.to_dict() for f in self.findings],
        }


class ChangeKind(StrEnum):
    EQUAL = "equal"
    ADDED = "added"
    REMOVED = "removed"
    MODIFIED = "modified"
    MOVED = "moved"  # same (or nearly same) text at another position


@dataclass(slots=True)
class UnitChange:
    """One aligned pair of diff units. ``ops`` is the word-level diff for MODIFIED (and for a
    MOVED unit that was also edited): a list of ``(op, text)`` with op -1 delete, 0 equal,
    1 insert, as diff-match-patch gives them."""

    kind: ChangeKind
    old_index: int | None
    new_index: int | None
    old_text: str | None
    new_text: str | None
    ops: list[tuple[int, str]] = field(default_factory=list)


@dataclass(slots=True)
class DiffResult:
    changes: list[UnitChange]  # in new-document order, removed units placed where they were

    def counts(self) -> dict[str, int]:
        out = {k.value: 0 for k in ChangeKind}
        for c in self.changes:
            out[c.kind.value] += 1
        return out

    @property
    def changed(self) -> bool:
        return any(c.kind != ChangeKind.EQUAL for c in self.changes)

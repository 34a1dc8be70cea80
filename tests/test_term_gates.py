"""Term gates: a unit's literals pick the terms of an alternation it may match; matching
with only those terms must find exactly what the full alternation finds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from monitor.analyse import load_packs
from monitor.analyse.rules import (
    CompiledCondition,
    GateGroup,
    LiteralIndex,
    TermSet,
    case_key,
    fold,
    term_literals,
)

DATA = Path(__file__).parent / "data"

TRICKY = [
    "We may use ſtaff training data and İnformation to train our AI-powered models.",
    "Trained staff, don’t share; we don't share. X.AI and xAI Corp. use Meta AI.",
    "You hereby grant us a licence to use your posts; if you do not opt out, by default.",
    "Wir verwenden Inhalte Ihrer Nachrichten, KI-Modelle und maschinelles Lernen.",
    "Nous utilisons l’IA et l'apprentissage automatique, conformément à l’art. 6(1)(a).",
    "Χρησιμοποιούμε τα δεδομένα σας για την εκπαίδευση μοντέλων τεχνητής νοημοσύνης ΤΝ.",
    "e-mail, E-Mail, email; user-generated content, AI\u00a0models, GPT-4, LLMs.",
]


def _texts() -> list[str]:
    rows = [
        json.loads(line)
        for f in sorted(DATA.glob("labels_*.jsonl"))
        for line in f.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    # labels_corpus.jsonl points into the corpus and holds no text.
    labelled = [row["text"] for row in rows if "text" in row]
    return TRICKY + labelled[::8]  # every language, a few seconds


def _term_sets() -> list[tuple[str, TermSet, LiteralIndex]]:
    out: list[tuple[str, TermSet, LiteralIndex]] = []

    def walk(pack_id: str, c: CompiledCondition, index: LiteralIndex) -> None:
        out.extend((f"{pack_id}:cond", ts, index) for ts in c.term_sets)
        for k in c.children:
            walk(pack_id, k, index)

    for pack in load_packs():
        assert pack.index is not None
        for lang, m in pack.matchers.items():
            out.extend((f"{pack.id}:{lang}:{role}", ts, pack.index) for role, ts in m.sets.items())
        for rule in pack.rules:
            if rule.condition is not None:
                walk(pack.id, rule.condition, pack.index)
    return out


def test_subset_patterns_find_what_the_full_alternation_finds() -> None:
    texts = [fold(t) for t in _texts()]
    checked = 0
    for name, ts, index in _term_sets():
        assert ts.full is not None
        for text in texts:
            lits = index.mask(text.split())
            pat = ts.pattern(lits)
            want = [m.span() for m in ts.full.finditer(text)]
            got = [] if pat is None else [m.span() for m in pat.finditer(text)]
            assert got == want, (name, text)
            assert ts.may_match(lits) == (pat is not None)
            checked += 1
    assert checked > 10_000


@pytest.mark.parametrize(
    ("term", "literals"),
    [
        ("training program*", [("training", "word"), ("program", "start")]),
        ("AI-powered", [("ai", "start"), ("powered", "end")]),
        ("*ing", [("ing", "end")]),
        ("A.I.", [("a.i.", "start")]),
        ("don't share", [("don", "word"), ("t", "word"), ("share", "word")]),
        ("ſtaff", [("staff", "word")]),
        (r"re:\byou\s+(?:hereby\s+)?grant\b", [("you", "word"), ("grant", "end")]),
        (r"re:\b(?:not|never|no)\b", [("n", "start")]),  # the parser factors out "n"
        (r"re:(?:a|b)c", [("c", "anywhere")][:0]),  # one letter anywhere: not kept
    ],
)
def test_term_literals(term: str, literals: list[tuple[str, str]]) -> None:
    assert term_literals(term) == literals


def test_case_key_follows_ignorecase() -> None:
    # Every character an IGNORECASE pattern character matches has the same key.
    for a, b in [("s", "ſ"), ("i", "İ"), ("i", "ı"), ("σ", "ς"), ("k", "\u212a"), ("µ", "μ")]:
        assert re.fullmatch(a, b, re.IGNORECASE)
        assert case_key(a) == case_key(b), (a, b)
    assert case_key("İnformation") == "information"


def test_gate_group_classifies_as_each_gate() -> None:
    """Classifying for several packs at once (one pass over the new tokens) gives each gate
    what it gives alone, on a first document and on one that hits the group's caches."""
    gates = tuple(p.gate for p in load_packs() if p.gate is not None)
    group = GateGroup(gates)
    docs = [{tok for text in TRICKY for tok in text.split()}, set(" ".join(_texts()).split())]
    for tokens in [*docs, docs[0] | {"новое", "AI-first"}]:
        assert group.classify(tokens) == [g.classify(tokens) for g in gates]


def test_unit_literals_skip_tokens_without_any() -> None:
    index = next(p.index for p in load_packs() if p.index is not None)
    for text in TRICKY:
        tokens = text.split()
        assert index.mask(tokens) == frozenset().union(*(index._classify(t) for t in tokens))

"""Alert decisions on state transitions (monitor.alerts), pure and against a real Store."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from monitor.alerts import (
    FLAP_WINDOW,
    AlertType,
    decide_alerts,
    list_alerts,
    normalise,
    record_alerts,
    similarity,
)
from monitor.models import Analysis, Consent, Finding, Span
from monitor.store import Store

# --- a small factory of analyser output ------------------------------------------------------

TERMS = ("train", "AI", "models", "posts", "messages", "opt out", "consent", "not")


def finding(
    text: str,
    *,
    consent: str = "none",
    ai_training: bool = True,
    negated: bool = False,
    unit_index: int = 0,
    rule_id: str = "ai-training.use",
    lang: str = "en",
    cues: tuple[str, ...] = (),
    data: tuple[str, ...] = (),
) -> Finding:
    """One ai-training finding over ``text``, with spans on the words in TERMS it contains
    and "data" spans on the phrases in ``data``."""
    spans = []
    for phrase in data:
        at = text.index(phrase)
        spans.append(Span(at, at + len(phrase), "data", phrase))
    for term in TERMS:
        at = text.find(term)
        if at >= 0:
            spans.append(Span(at, at + len(term), "term", term))
    return Finding(
        pack="ai-training",
        rule_id=rule_id,
        category="ai_training",
        severity="high",
        unit_index=unit_index,
        unit_text=text,
        start=0,
        end=len(text),
        heading_path=("## How we use data",),
        lang=lang,
        ai_training=ai_training,
        consent=Consent(consent if ai_training else "n/a"),
        negated=negated,
        spans=spans,
        consent_cues=list(cues),
    )


def analysis(*findings: Finding, consent: str | None = None) -> Analysis:
    training = [f for f in findings if f.ai_training]
    weakest = min((f.consent for f in training), key=lambda c: c.strength, default=Consent.NA)
    return Analysis(
        lang="en",
        ai_training=bool(training),
        consent=Consent(consent) if consent else weakest,
        negated=any(f.negated for f in findings),
        findings=list(findings),
        unit_count=10,
    )


EMPTY = analysis()
POSTS = "We may use your public posts to train our AI models."
POSTS_REWORDED = "We may use your public posts and photos to train our generative AI models."
MESSAGES = "Partners who receive your private messages train their own language models on them."
DENIAL = "We do not use your private messages to train our AI models."


# --- pure decisions -------------------------------------------------------------------------


def test_added_without_any_choice_is_high() -> None:
    [d] = decide_alerts(EMPTY, analysis(finding(POSTS)), first_version=False)
    assert d.type == AlertType.AI_TRAINING_ADDED
    assert d.severity == "high"
    assert d.unit_text == POSTS
    assert d.clause_key == normalise(POSTS)
    assert d.evidence["consent"] == "none"
    assert d.evidence["opt_in_found"] is False
    assert "with your consent" in d.evidence["opt_in_looked_for"]
    assert d.evidence["rule_ids"] == ["ai-training.use"]
    assert "\n" not in d.summary and d.summary.endswith(".")


def test_added_with_opt_out_is_medium() -> None:
    text = "We use your posts to train AI models unless you opt out in Settings."
    [d] = decide_alerts(
        EMPTY, analysis(finding(text, consent="opt_out", cues=("opt out",))), first_version=False
    )
    assert (d.type, d.severity) == (AlertType.AI_TRAINING_ADDED, "medium")
    assert d.evidence["consent_cues"] == ["opt out"]
    assert "opt-out" in d.summary


def test_opt_out_added_for_training_already_disclosed_is_not_new_training() -> None:
    opt_out = "You can opt out of this AI training at any time in your settings."
    prev = analysis(finding(POSTS, unit_index=5))
    new = analysis(finding(POSTS, unit_index=5), finding(opt_out, unit_index=6, consent="opt_out"))
    assert decide_alerts(prev, new, first_version=False) == []
    # The same sentence far from any disclosed training is a disclosure of its own.
    far = analysis(finding(POSTS, unit_index=5), finding(opt_out, unit_index=40, consent="opt_out"))
    [d] = decide_alerts(prev, far, first_version=False)
    assert (d.type, d.severity) == (AlertType.AI_TRAINING_ADDED, "medium")


POSTS_FR = "Nous pouvons utiliser vos publications pour entraîner nos modèles d'IA."


def test_the_same_policy_in_another_language_is_not_new_training() -> None:
    prev = analysis(finding(POSTS))
    french = replace(analysis(finding(POSTS_FR, lang="fr")), lang="fr")
    assert decide_alerts(prev, french, first_version=False) == []
    # In the same language the clause is new; and a translation that drops the opt-out the
    # old policy gave still alerts, as training without any choice.
    [d] = decide_alerts(prev, analysis(finding(POSTS_FR)), first_version=False)
    assert d.type == AlertType.AI_TRAINING_ADDED
    opted = analysis(finding(POSTS, consent="opt_out"))
    [d] = decide_alerts(opted, french, first_version=False)
    assert d.type == AlertType.AI_TRAINING_ADDED and d.severity == "high"


def test_added_with_opt_in_does_not_alert() -> None:
    text = "With your consent, we use your posts to train AI models."
    assert (
        decide_alerts(EMPTY, analysis(finding(text, consent="opt_in")), first_version=False) == []
    )


def test_reworded_clause_is_not_new() -> None:
    prev = analysis(finding(POSTS, unit_index=4))
    new = analysis(finding(POSTS_REWORDED, unit_index=7, rule_id="ai-training.other-rule"))
    assert decide_alerts(prev, new, first_version=False) == []


def test_clause_moved_out_of_a_longer_unit_is_not_new() -> None:
    core = (
        "In our interest and in the interests of third parties to create, provide and improve "
        "artificial intelligence models trained on the content you share"
    )
    table_row = (
        "Develop and improve AI technology on our products and for third parties. | * "
        + core
        + ". * To offer AI technology to developers, researchers and the public at large, and to "
        "support research on safety, fairness and accessibility across many languages and regions. "
        "* To keep our services secure, to prevent fraud, and to measure how well our features "
        "work for the people and the businesses who rely on them every day."
    )
    relisted = "Legitimate interests relied on: — " + core + "."
    prev = analysis(finding(table_row, unit_index=3))
    assert decide_alerts(prev, analysis(finding(relisted, unit_index=8)), first_version=False) == []


def test_a_different_clause_with_shared_vocabulary_is_new() -> None:
    prev = analysis(finding(POSTS, unit_index=1))
    new = analysis(finding(POSTS, unit_index=1), finding(MESSAGES, unit_index=5))
    [d] = decide_alerts(prev, new, first_version=False)
    assert d.type == AlertType.AI_TRAINING_ADDED
    assert d.unit_text == MESSAGES


def test_same_wording_about_other_data_is_new() -> None:
    old = "We use your public posts to train our AI models."
    new = "We use your private messages to train our AI models."
    prev = analysis(finding(old, data=("your public posts",)))
    [d] = decide_alerts(
        prev, analysis(finding(new, data=("your private messages",))), first_version=False
    )
    assert d.unit_text == new
    widened = "We use your public posts and photos to train our AI models."
    assert (
        decide_alerts(
            prev,
            analysis(finding(widened, data=("your public posts and photos",))),
            first_version=False,
        )
        == []
    )


def test_several_rules_on_one_unit_give_one_alert() -> None:
    new = analysis(finding(POSTS, rule_id="ai-training.a"), finding(POSTS, rule_id="ai-training.b"))
    [d] = decide_alerts(EMPTY, new, first_version=False)
    assert d.evidence["rule_ids"] == ["ai-training.a", "ai-training.b"]


def test_seen_key_of_an_earlier_wording_suppresses_the_alert() -> None:
    new = analysis(finding(POSTS_REWORDED))
    assert decide_alerts(EMPTY, new, seen_keys={normalise(POSTS)}, first_version=False) == []


def test_consent_downgraded_on_a_matched_clause() -> None:
    prev = analysis(
        finding("With your consent, we use your posts to train AI models.", consent="opt_in")
    )
    new = analysis(
        finding("We use your posts to train AI models unless you opt out.", consent="opt_out")
    )
    [d] = decide_alerts(prev, new, first_version=False)
    assert d.type == AlertType.CONSENT_DOWNGRADED
    assert d.severity == "medium"
    assert d.clause_key.endswith("#to=opt_out")
    assert (d.evidence["previous_consent"], d.evidence["consent"]) == ("opt_in", "opt_out")


def test_consent_upgrade_does_not_alert() -> None:
    prev = analysis(
        finding("We use your posts to train AI models unless you opt out.", consent="opt_out")
    )
    new = analysis(
        finding("With your consent, we use your posts to train AI models.", consent="opt_in")
    )
    assert decide_alerts(prev, new, first_version=False) == []


def test_document_level_downgrade_when_no_clause_explains_it() -> None:
    # The opt-in clause went away; the opt-out one was there all along: no clause changed
    # its regime, but the policy's did, because the opt-in wording disappeared.
    opt_in = finding(
        "With your consent, we use your messages to train AI models.",
        consent="opt_in",
        data=("your messages",),
    )
    opt_out = finding(POSTS, consent="opt_out", unit_index=3, data=("your public posts",))
    prev = analysis(opt_in, opt_out, consent="opt_in")
    new = analysis(replace(opt_out, unit_index=2), consent="opt_out")
    [d] = decide_alerts(prev, new, first_version=False)
    assert d.type == AlertType.CONSENT_DOWNGRADED
    assert d.clause_key == "@document#to=opt_out"


def test_no_document_level_downgrade_while_the_old_wording_is_still_there() -> None:
    clause = finding(POSTS, consent="opt_in")
    prev = analysis(clause, consent="opt_in")
    new = analysis(clause, consent="opt_out")  # the analyser's document-level verdict changed
    assert decide_alerts(prev, new, first_version=False) == []


def test_negation_removed() -> None:
    prev = analysis(finding(DENIAL, ai_training=False, negated=True))
    [d] = decide_alerts(prev, EMPTY, first_version=False)
    assert d.type == AlertType.NEGATION_REMOVED
    assert d.unit_text == DENIAL
    assert d.clause_key.endswith("#denial")
    assert d.evidence["old_clauses"][0]["unit_text"] == DENIAL


def test_summaries_are_one_line_even_when_they_quote_policy_text() -> None:
    denial = "We do not use your messages\r\nBcc: x@example.org\nto train AI models."
    prev = analysis(finding(denial, ai_training=False, negated=True))
    [d] = decide_alerts(prev, EMPTY, first_version=False)
    assert "\r" not in d.summary and "\n" not in d.summary
    assert "Bcc: x@example.org" in d.summary  # quoted as text, on the one line


def test_negation_kept_in_other_words_does_not_alert() -> None:
    prev = analysis(finding(DENIAL, ai_training=False, negated=True))
    new = analysis(
        finding(
            "We do not use your private messages or photos to train our AI models.",
            ai_training=False,
            negated=True,
        )
    )
    assert decide_alerts(prev, new, first_version=False) == []


def test_denial_turned_into_training_is_one_added_alert() -> None:
    prev = analysis(finding(DENIAL, ai_training=False, negated=True))
    new = analysis(finding("We use your private messages to train our AI models."))
    [d] = decide_alerts(prev, new, first_version=False)
    assert d.type == AlertType.AI_TRAINING_ADDED
    assert d.evidence["replaces_denial"] == DENIAL
    assert "replaces" in d.summary


def test_denial_replaced_by_an_already_alerted_clause_still_alerts() -> None:
    training = "We use your private messages to train our AI models."
    prev = analysis(finding(DENIAL, ai_training=False, negated=True))
    new = analysis(finding(training))
    [d] = decide_alerts(prev, new, seen_keys={normalise(training)}, first_version=False)
    assert d.type == AlertType.NEGATION_REMOVED
    assert d.evidence["clauses"][0]["unit_text"] == training


def test_training_removed_is_info() -> None:
    [d] = decide_alerts(analysis(finding(POSTS)), EMPTY, first_version=False)
    assert (d.type, d.severity) == (AlertType.AI_TRAINING_REMOVED, "info")
    assert d.evidence["old_clauses"][0]["unit_text"] == POSTS


def test_baseline_once_for_a_first_version_training_without_opt_in() -> None:
    new = analysis(
        finding(POSTS, unit_index=1, consent="opt_out"),
        finding(MESSAGES, unit_index=2, consent="none"),
        finding("With your consent we train AI on your voice.", unit_index=3, consent="opt_in"),
    )
    [d] = decide_alerts(None, new, first_version=True)
    assert d.type == AlertType.BASELINE
    assert d.severity == "high"  # the weakest clause decides
    assert d.clause_key == "@baseline"
    assert [c["unit_text"] for c in d.evidence["clauses"]] == [POSTS, MESSAGES]
    assert decide_alerts(None, new, seen_keys={"@baseline"}, first_version=True) == []


def test_no_baseline_when_first_version_only_trains_with_opt_in() -> None:
    new = analysis(finding("With your consent we train AI on your posts.", consent="opt_in"))
    assert decide_alerts(None, new, first_version=True) == []


def test_other_packs_are_ignored() -> None:
    other = finding(POSTS)
    other.pack, other.category = "biometric", "biometric"
    assert decide_alerts(EMPTY, analysis(other), first_version=False) == []


# The shortcut for an unchanged training state (alerts._same_training_state): the full
# decisions must say nothing either, whatever the history. Same-text units with different
# regimes, denials, opt-outs next to training and other packs are the tricky cases.
_UNCHANGED_CASES = [
    EMPTY,
    analysis(finding(POSTS)),
    analysis(
        finding(POSTS, consent="opt_out", unit_index=1),
        finding(DENIAL, unit_index=4, ai_training=False, negated=True),
    ),
    analysis(
        finding(POSTS, consent="opt_in", unit_index=1),
        finding(POSTS, consent="none", unit_index=5),  # the same text, weaker, later
        finding(MESSAGES, consent="opt_out", unit_index=6, data=("private messages",)),
    ),
    analysis(
        finding(POSTS, consent="none", unit_index=1),
        finding(POSTS, consent="opt_in", unit_index=5),  # the same text, stronger, later
        finding("You can opt out of this in Settings.", consent="opt_out", unit_index=2),
    ),
    analysis(finding(POSTS, consent="opt_out"), consent="none"),
]


@pytest.mark.parametrize("case", range(len(_UNCHANGED_CASES)))
@pytest.mark.parametrize(
    "history",
    [
        {},
        {"seen_keys": {"@baseline"}},
        {
            "seen_keys": {normalise(POSTS), "@removed#abc"},
            "removed": {normalise(POSTS): "@removed#abc"},
            "removed_on": {"@removed#abc": "2024-01-01T00:00:00Z"},
            "when": "2024-01-10T00:00:00Z",
        },
        {
            "seen_keys": {"@removed#abc"},
            "removed": {normalise(POSTS): "@removed#abc"},
            "removed_on": {"@removed#abc": "2023-01-01T00:00:00Z"},
            "when": "2024-06-01T00:00:00Z",
        },
    ],
)
def test_an_unchanged_training_state_never_alerts(
    case: int, history: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    import copy

    import monitor.alerts

    prev = _UNCHANGED_CASES[case]
    same = copy.deepcopy(prev)
    same.findings.append(replace(finding(POSTS), pack="biometric", category="biometric"))
    # units added above and between: the same clauses, elsewhere
    moved = copy.deepcopy(prev)
    for f in moved.findings:
        f.unit_index = 3 + 2 * f.unit_index
        f.start, f.end = f.start + 100, f.end + 100
    for new in (same, moved):
        assert monitor.alerts._same_training_state(prev, new)
        assert decide_alerts(prev, new, first_version=False, **history) == []  # type: ignore[arg-type]
    # ... and the full decisions agree.
    monkeypatch.setattr(monitor.alerts, "_same_training_state", lambda _a, _b: False)
    for new in (same, moved):
        assert decide_alerts(prev, new, first_version=False, **history) == []  # type: ignore[arg-type]


def test_any_training_change_takes_the_full_decisions() -> None:
    from monitor.alerts import _same_training_state

    prev = analysis(finding(POSTS, consent="opt_out", unit_index=1))
    for new in (
        analysis(finding(POSTS, consent="none", unit_index=1)),
        analysis(finding(POSTS, consent="opt_out", unit_index=1, lang="fr")),
        analysis(finding(POSTS_REWORDED, consent="opt_out", unit_index=1)),
        analysis(finding(POSTS, consent="opt_out", unit_index=1), consent="none"),
        analysis(finding(POSTS, consent="opt_out", unit_index=1), finding(MESSAGES)),
        analysis(finding(POSTS, consent="opt_out", unit_index=1, data=("public posts",))),
    ):
        assert not _same_training_state(prev, new)
    # two findings on one unit are one clause: on two units, two clauses
    one = analysis(finding(POSTS, unit_index=1), finding(POSTS, unit_index=1, rule_id="r2"))
    two = analysis(finding(POSTS, unit_index=1), finding(POSTS, unit_index=2, rule_id="r2"))
    assert not _same_training_state(one, two) and not _same_training_state(two, one)
    # the first version of a document is never short-cut: it may deserve a baseline
    [d] = decide_alerts(None, prev, first_version=True)
    assert d.type == AlertType.BASELINE


# --- record_alerts on a real store ----------------------------------------------------------


@pytest.fixture
def doc_store(store: Store) -> Store:
    """The shared store fixture with one watched document."""
    store.ensure_document("x/privacy-policy", "X", "privacy-policy", "https://x.example/privacy")
    return store


class History:
    """Feeds versions with hand-made analyses through record_alerts, as the pipeline does."""

    def __init__(
        self, store: Store, doc_id: str = "x/privacy-policy", step: dt.timedelta | None = None
    ) -> None:
        self.store, self.doc_id = store, doc_id
        self.day = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        self.step = step or dt.timedelta(days=30)

    def add(self, *findings: Finding) -> list[int]:
        prev = self.store.latest_version(self.doc_id)
        new_analysis = analysis(*findings)
        with self.store.transaction():
            v = self.store.add_version(
                self.doc_id,
                text="\n\n".join(f.unit_text for f in findings) or f"nothing {self.day}",
                seen_at=self.day,
                source="fetch",
            )
            self.store.save_analysis(v.id, new_analysis)
            prev_analysis = self.store.analysis(prev) if prev else None
            ids = record_alerts(self.store, self.doc_id, prev, v, prev_analysis, new_analysis)
        self.day += self.step
        return ids


def types(store: Store, ids: list[int]) -> list[str]:
    return [a.type.value for a in list_alerts(store, ids=ids)]


def test_same_clause_never_alerts_twice_across_versions(doc_store: Store) -> None:
    h = History(doc_store)
    assert h.add() == []  # v1: no training, nothing to report
    first = h.add(finding(POSTS))
    assert types(doc_store, first) == ["ai_training_added"]
    assert h.add(finding(POSTS_REWORDED)) == []  # v3: reworded
    assert h.add(finding(POSTS, unit_index=9)) == []  # v4: back in its first wording, moved
    other = finding(MESSAGES, unit_index=2, data=("your private messages",))
    assert types(doc_store, h.add(other)) == ["ai_training_added"]  # v5: another clause
    assert h.add(other, finding(POSTS_REWORDED, unit_index=9)) == []  # v6: the first is back
    rows = list_alerts(doc_store)
    assert [a.type.value for a in rows] == ["ai_training_added", "ai_training_added"]


def test_training_that_comes_back_after_its_removal_alerts_again(doc_store: Store) -> None:
    h = History(doc_store, step=FLAP_WINDOW + dt.timedelta(days=1))
    h.add()
    (added,) = h.add(finding(POSTS))
    (gone,) = h.add()  # the policy stops disclosing training: reported (info)
    (back,) = h.add(finding(POSTS_REWORDED))  # and it returns: that is news again
    assert h.add(finding(POSTS)) == []  # ... once
    (gone_again,) = h.add()
    (back_again,) = h.add(finding(POSTS))
    rows = {a.id: a for a in list_alerts(doc_store)}
    assert [rows[i].type.value for i in (added, gone, back, gone_again, back_again)] == [
        "ai_training_added",
        "ai_training_removed",
        "ai_training_added",
        "ai_training_removed",
        "ai_training_added",
    ]
    assert rows[back].clause_key == f"{normalise(POSTS)}#back={rows[gone].clause_key[9:]}"
    assert rows[back].evidence["returns_after"] == rows[gone].clause_key
    assert rows[back].summary.startswith("AI training is back:")
    assert rows[back].severity == "high"
    assert rows[gone_again].clause_key != rows[gone].clause_key
    assert rows[back_again].evidence["returns_after"] == rows[gone_again].clause_key


def test_training_flipping_back_within_weeks_is_not_news_again(doc_store: Store) -> None:
    # A page alternating between two variants (one without the training clause) every few
    # days: one added alert, one (info) removal, then silence until a removal has stood for
    # longer than the flap window.
    h = History(doc_store, step=dt.timedelta(days=5))
    h.add()
    (added,) = h.add(finding(POSTS))
    (gone,) = h.add()
    for _ in range(4):
        assert h.add(finding(POSTS)) == []  # back within days of the removal
        assert h.add() == []  # gone again: its removal was said already
    h.step = FLAP_WINDOW
    assert h.add() == []  # still gone, long after the removal
    (back,) = h.add(finding(POSTS_REWORDED))  # back after the window: news again
    rows = {a.id: a for a in list_alerts(doc_store)}
    assert [rows[i].type.value for i in (added, gone, back)] == [
        "ai_training_added",
        "ai_training_removed",
        "ai_training_added",
    ]
    assert rows[back].evidence["returns_after"] == rows[gone].clause_key
    (gone_again,) = h.add()  # and its next removal is news too
    assert list_alerts(doc_store, ids=[gone_again])[0].type.value == "ai_training_removed"


def test_record_alerts_stores_evidence_and_versions(doc_store: Store) -> None:
    h = History(doc_store)
    h.add()
    [alert_id] = h.add(finding(POSTS, consent="opt_out"))
    [a] = list_alerts(doc_store, doc_id="x/privacy-policy")
    assert a.id == alert_id
    assert (a.platform, a.doc_type, a.url) == ("X", "privacy-policy", "https://x.example/privacy")
    assert (a.version_number, a.prev_version_number) == (2, 1)
    assert a.severity == "medium"
    assert a.created_at.startswith("2024-01-31")  # when the version was seen, not "now"
    assert a.evidence["version"]["number"] == 2
    assert a.evidence["prev_version"]["number"] == 1
    assert a.evidence["clauses"][0]["spans"], "the highlighted terms must reach the page"


def test_baseline_clauses_count_as_seen(doc_store: Store) -> None:
    h = History(doc_store, step=FLAP_WINDOW)
    assert types(doc_store, h.add(finding(POSTS))) == ["baseline"]
    other = finding(MESSAGES, unit_index=1, data=("your private messages",))
    assert types(doc_store, h.add(other)) == ["ai_training_added"]  # POSTS gone, MESSAGES new
    assert h.add(other, finding(POSTS_REWORDED, unit_index=2)) == []  # POSTS back: not news
    assert types(doc_store, h.add()) == ["ai_training_removed"]
    assert types(doc_store, h.add(finding(POSTS))) == ["ai_training_added"]  # after a removal


def test_downgrades_alert_once_per_level(doc_store: Store) -> None:
    h = History(doc_store)
    h.add(finding("With your consent, we use your posts to train AI models.", consent="opt_in"))
    down = h.add(
        finding("We use your posts to train AI models unless you opt out.", consent="opt_out")
    )
    assert types(doc_store, down) == ["consent_downgraded"]
    h.add(finding("With your consent, we use your posts to train AI models.", consent="opt_in"))
    again = h.add(
        finding("We use your posts to train AI models unless you opt out.", consent="opt_out")
    )
    assert again == []
    worse = h.add(finding("We use your posts to train AI models.", consent="none"))
    assert types(doc_store, worse) == ["consent_downgraded"]
    [a] = list_alerts(doc_store, ids=worse)
    assert a.severity == "high"


def test_a_second_call_for_the_same_transition_inserts_nothing(doc_store: Store) -> None:
    h = History(doc_store)
    h.add()
    h.add(finding(POSTS))
    v1, v2 = doc_store.versions("x/privacy-policy")
    again = record_alerts(
        doc_store, "x/privacy-policy", v1, v2, doc_store.analysis(v1), analysis(finding(POSTS))
    )
    assert again == []
    assert len(list_alerts(doc_store)) == 1


def test_list_alerts_filters_and_orders_newest_first(doc_store: Store) -> None:
    doc_store.ensure_document("y/terms", "Y", "terms", "https://y.example/terms")
    hx, hy = History(doc_store), History(doc_store, "y/terms")
    hy.day += dt.timedelta(days=10)
    hx.add(finding(POSTS))  # 2024-01-01
    hy.add(finding(MESSAGES))  # 2024-01-11
    hx.add()  # 2024-01-31
    assert [a.document_id for a in list_alerts(doc_store)] == [
        "x/privacy-policy",
        "y/terms",
        "x/privacy-policy",
    ]
    assert [a.document_id for a in list_alerts(doc_store, doc_id="y/terms")] == ["y/terms"]
    assert len(list_alerts(doc_store, since="2024-01-05")) == 2
    assert len(list_alerts(doc_store, limit=1)) == 1


# --- shapes seen on real histories, rewritten: the real analyser, the real pipeline -----------
# (Meta's policies, 2025: a training sentence inside a 130-word table row of legal bases, then
# split out of it; an objection sentence two units after a new training clause.)

HEAD = "# Privacy Policy\n\n## How we use information\n\nWe keep your account secure.\n\n"
TAIL = "\n## Contact\n\nWrite to our privacy team.\n"
PURPOSE = (
    "Build and refine our machine learning models, known as Loom Assist, for our own apps and "
    "for partners."
)
LEGAL_BASES = (
    "* Our interest, and that of our members, in offering assistant features that help people "
    "write, search and organise what they share.<br>* Our interest, and that of partners and "
    "the wider public, in making assistant technology available to outside developers and "
    "researchers.<br>* Our interest in keeping assistant answers accurate, fair and safe, for "
    "example by checking replies before they are shown."
)
TABLE = (
    "| Purpose | Legal basis | Data |\n| --- | --- | --- |\n"
    f"| {PURPOSE} | {LEGAL_BASES} | Your posts, the photos you upload and your chats with Loom "
    "Assist. |\n"
)
TRAINS = (
    "We use your posts and the photos you upload to train the machine learning models behind "
    "Loom Assist."
)
OBJECT = "You can object to this use at any time from the Loom Assist page in your privacy centre."
BASIS = "Our legal basis is our legitimate interest in offering assistant features to our members."
ROW = f"| Purpose | Legal basis |\n| --- | --- |\n| {TRAINS} {OBJECT} | {BASIS} |\n"


def test_near_total_containment_matches_whatever_the_sizes() -> None:
    sentence = normalise(PURPOSE)
    row = normalise(f"{PURPOSE} {LEGAL_BASES} Your posts and your chats with Loom Assist.")
    assert len(row.split()) > 4 * len(sentence.split())
    assert similarity(sentence, row) >= 0.9
    # The same common words scattered over a long row are not the sentence.
    scattered = normalise(
        "Build a profile. We refine the layout of our apps. Machine parts and learning "
        "materials are sold by partners. Models, known as templates, are ours. " + LEGAL_BASES
    )
    assert similarity(sentence, scattered) < 0.6


def test_the_disclosure_hosts_the_folded_objection_whatever_its_own_regime() -> None:
    # The analyser often lends the objection's regime to the disclosure (context): both are
    # opt-out then, but only the objection says the way out in its own words.
    trains = "We will rely on legitimate interests to train our AI models on your posts."
    objection = "You can object to this use of your posts for AI training in Settings."

    def with_span(f: Finding, phrase: str, role: str) -> Finding:
        at = f.unit_text.index(phrase)
        return replace(f, spans=[*f.spans, Span(at, at + len(phrase), role, phrase)])

    host = with_span(
        finding(trains, consent="opt_out", unit_index=4, cues=("legitimate interests",)),
        "legitimate interests",
        "none",
    )
    way_out = with_span(
        finding(objection, consent="opt_out", unit_index=6, cues=("object to",)),
        "object to",
        "opt_out",
    )
    [d] = decide_alerts(EMPTY, analysis(host, way_out), first_version=False)
    assert (d.type, d.unit_text, d.severity) == (AlertType.AI_TRAINING_ADDED, trains, "medium")
    assert d.evidence["opt_out_clauses"] == [objection]


def replay(store: Store, *texts: str) -> list[list[tuple[str, str]]]:
    """Each text as the next version of one document, through the pipeline: the (type,
    severity) of the alerts each version raised."""
    from monitor.config import default_config
    from monitor.extract import extract_markdown
    from monitor.pipeline import Pipeline

    store.ensure_document("loom/privacy-policy", "Loom", "privacy-policy", "https://loom.example")
    pipeline = Pipeline(default_config(), store, notify=False)
    out = []
    for n, text in enumerate(texts):
        seen = dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=30 * n)
        ids = pipeline.ingest(
            "loom/privacy-policy", extract_markdown(text), seen_at=seen, source="fetch"
        ).alert_ids
        out.append([(a.type.value, a.severity) for a in reversed(list_alerts(store, ids=ids))])
    return out


def test_a_sentence_taken_out_of_a_long_table_row_is_not_a_new_clause(store: Store) -> None:
    prefixed = "For members who are adults where they live (in most places 18 or older) "
    assert replay(
        store,
        HEAD + TAIL,
        HEAD + TABLE + TAIL,  # the row is one 90-word unit: its first wording alerts
        HEAD + prefixed + PURPOSE + "\n" + TAIL,  # its sentence alone, under a lead-in
        HEAD + TABLE + TAIL,  # and back into the row
    ) == [[], [("ai_training_added", "high")], [], []]


def test_a_copy_split_out_of_a_row_is_no_downgrade_while_the_row_keeps_its_way_out(
    store: Store,
) -> None:
    summary = "\n## Summary\n\n" + TRAINS + "\n"  # the same sentence, alone: "no choice"
    assert replay(store, HEAD + TAIL, HEAD + ROW + TAIL, HEAD + ROW + summary + TAIL) == [
        [],
        [("ai_training_added", "medium")],
        [],
    ]


def test_the_way_out_removed_is_a_downgrade(store: Store) -> None:
    assert replay(
        store, HEAD + TAIL, HEAD + ROW + TAIL, HEAD + f"{TRAINS}\n\n{BASIS}\n" + TAIL
    ) == [
        [],
        [("ai_training_added", "medium")],
        [("consent_downgraded", "high")],
    ]


def test_an_objection_sentence_next_to_new_training_is_one_alert(store: Store) -> None:
    trains = (
        "From March, we will rely on legitimate interests to develop and improve the generative "
        "AI models behind Loom Assist with what you share publicly."
    )
    objection = (
        "You can object to this use of your public posts and chats for AI training by filling "
        "in our objection form."
    )
    later = HEAD + f"{trains}\n\nWe explain the change in our help centre.\n\n{objection}\n" + TAIL
    assert replay(store, HEAD + TAIL, later) == [[], [("ai_training_added", "medium")]]
    (alert,) = list_alerts(store)
    assert alert.unit_text == trains
    assert alert.evidence["opt_out_clauses"] == [objection]
    assert [c["unit_text"] for c in alert.evidence["clauses"]] == [trains, objection]
    assert "separate sentence" in alert.summary

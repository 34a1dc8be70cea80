"""Document-level semantics of analyse_text / analyse_unit (LABELLING.md)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from monitor.analyse import analyse_text, analyse_unit, load_packs
from monitor.analyse.rules import (
    _compile_terms,
    _is_word_char,
    _stem,
    _stem_groups,
    _stem_options,
    _Where,
    fold,
    term_to_regex,
)
from monitor.models import Consent


def test_training_with_no_choice_is_none_and_alerts() -> None:
    a = analyse_text("# Use\n\nWe use your public posts to train our generative AI models.")
    assert a.ai_training and a.consent == Consent.NONE and a.alert
    (f,) = [f for f in a.findings if f.pack == "ai-training"]
    roles = {s.role for s in f.spans}
    assert {"purpose", "object", "data"} <= roles
    purpose = next(s for s in f.spans if s.role == "purpose")
    assert f.unit_text[purpose.start : purpose.end] == purpose.text == "train"


def test_generic_consent_elsewhere_does_not_make_training_opt_in() -> None:
    doc = (
        "# Marketing\n\nWith your consent, we send you newsletters.\n\n"
        "# AI\n\nWe use your public posts to train our AI models."
    )
    a = analyse_text(doc)
    assert a.ai_training and a.consent == Consent.NONE and a.alert


def test_opt_out_in_the_next_sentence_of_the_paragraph_counts() -> None:
    a = analyse_text(
        "We use your posts to train our AI models. You can object to this processing at any time."
    )
    assert a.ai_training and a.consent == Consent.OPT_OUT


def test_weakest_consent_wins_across_findings() -> None:
    doc = (
        "We use your chats to improve our language models only if you opt in.\n\n"
        "We use your public posts to train our AI models unless you opt out."
    )
    a = analyse_text(doc)
    assert a.ai_training and a.consent == Consent.OPT_OUT
    assert sorted(f.consent.value for f in a.findings if f.ai_training) == ["opt_in", "opt_out"]


def test_full_denial_is_no_training_but_recorded_as_negated() -> None:
    a = analyse_text("We do not use the content of your messages to train our AI models.")
    assert not a.ai_training and a.consent == Consent.NA and a.negated and not a.alert
    (f,) = [f for f in a.findings if f.pack == "ai-training"]
    assert f.rule_id == "ai-training-denial" and not f.ai_training and f.negated


def test_conditional_negation_is_training_with_opt_in() -> None:
    a = analyse_unit("We will not use your recordings to train our models without your consent.")
    assert a.ai_training and a.consent == Consent.OPT_IN and a.negated and not a.alert


def test_user_restriction_is_not_a_disclosure() -> None:
    a = analyse_unit("You may not use any content from the Services to train AI models.")
    assert not a.ai_training and not a.negated and a.findings == []


def test_html_input_is_accepted() -> None:
    html = (
        "<html><body><h1>Privacy</h1><p>We keep your account safe.</p>"
        "<ul><li>We use your photos to train our AI models.</li></ul></body></html>"
    )
    a = analyse_text(html)
    assert a.ai_training and a.consent == Consent.NONE
    (f,) = [f for f in a.findings if f.ai_training]
    assert f.heading_path == ("Privacy",) and "<" not in f.unit_text


def test_findings_locate_the_unit_in_the_text() -> None:
    doc = "# A\n\nWe value privacy. We train our AI models on your posts."
    a = analyse_text(doc)
    (f,) = a.findings
    assert doc[f.start : f.end] == "We train our AI models on your posts."
    assert a.unit_count == 2 and a.lang == "en"


# A section headed by a training statement, a sentence pointing back to it, and the next
# sentence's opt-out (the layout of "How we use information to develop AI" sections).
HEADED_SECTIONS = {
    "en": (
        "Training our AI models",
        "We use your posts and comments for this purpose.",
        "You can object at any time in your settings.",
    ),
    "fr": (
        "Entraînement de nos modèles d'IA",
        "Nous utilisons vos publications et commentaires à cette fin.",
        "Vous pouvez vous y opposer à tout moment dans vos paramètres.",
    ),
    "de": (
        "Training unserer KI-Modelle",
        "Wir verwenden Ihre Beiträge und Kommentare zu diesem Zweck.",
        "Sie können jederzeit in Ihren Einstellungen widersprechen.",
    ),
    "es": (
        "Entrenamiento de nuestros modelos de IA",
        "Usamos tus publicaciones y comentarios con este fin.",
        "Puedes oponerte en cualquier momento en la configuración.",
    ),
    "it": (
        "Addestramento dei nostri modelli di IA",
        "Utilizziamo i tuoi post e commenti per tale scopo.",
        "Puoi opporti in qualsiasi momento nelle impostazioni.",
    ),
    "nl": (
        "Training van onze AI-modellen",
        "We gebruiken je berichten en reacties voor dit doel.",
        "Je kunt op elk moment bezwaar maken in je instellingen.",
    ),
}


@pytest.mark.parametrize("lang", sorted(HEADED_SECTIONS))
def test_a_sentence_pointing_back_to_a_training_heading_takes_it_as_purpose(lang: str) -> None:
    heading, sentence, choice = HEADED_SECTIONS[lang]
    # Neither sentence alone says what the data is used for.
    assert not analyse_unit(sentence, lang=lang).ai_training
    a = analyse_text(f"## {heading}\n\n{sentence} {choice}\n")
    assert a.ai_training and a.consent == Consent.OPT_OUT
    (f,) = [f for f in a.findings if f.ai_training]
    assert f.unit_text == sentence and f.heading_path == (heading,)
    # The heading's own terms are not reported as spans of the sentence.
    assert f.spans and all(sentence[s.start : s.end] == s.text for s in f.spans)


@pytest.mark.parametrize(
    "body",
    [
        "We do not use your private messages for this purpose.",  # a denial is left alone
        "We use your address to send you invoices.",  # a purpose of its own
        "We describe the sources of this data in Section 3.",  # no use of it
    ],
)
def test_other_sentences_under_a_training_heading_are_not_disclosures(body: str) -> None:
    assert not analyse_text(f"## Training our AI models\n\n{body}\n").ai_training


def test_a_question_heading_lends_no_purpose() -> None:
    doc = "## Do we train our AI models on your posts?\n\nWe use your posts for this purpose.\n"
    assert not analyse_text(doc).ai_training


def test_other_packs_report_their_own_category() -> None:
    a = analyse_text("We use facial recognition to suggest tags in your photos.")
    cats = {f.category for f in a.findings}
    assert "sensitive_data" in cats and not a.ai_training


def test_multilingual_units() -> None:
    assert analyse_unit("Wir nutzen Ihre Inhalte nicht, um KI-Modelle zu trainieren.").negated
    a = analyse_unit("Vous pouvez vous opposer à l'utilisation de vos données pour entraîner l'IA.")
    assert a.ai_training and a.consent == Consent.OPT_OUT and a.lang == "fr"
    b = analyse_unit("Nous utilisons vos informations pour améliorer nos services.")
    assert not b.ai_training


# --------------------------------------------------------------------------- speed machinery
# The token gates and grouped alternations are optimisations: they must change no result.


def _ungated(packs: list[Any]) -> list[Any]:
    return [dataclasses.replace(p, gate=None, role_gate=None) for p in packs]


GATE_DOCS = [
    # lead-in repeated on list items; punctuation glued to the trigger tokens
    "# AI\n\nWe use the following to train our models:\n\n- your posts,\n- your (AI) chats.\n\n"
    "You can object to this processing in Settings.",
    # a length-changing lower-case letter (İ) forces the per-unit path
    "İstanbul office. We may use de-identified data to fine-tune our LLMs; you can opt out.",
    # Greek with accents, folded on both sides
    "Χρησιμοποιούμε τις δημόσιες αναρτήσεις σας για την εκπαίδευση των μοντέλων μας.",
    # German compounds matched anywhere inside a word, relative clause, negation after
    "Wir verwenden Ihre Beiträge nicht, um unsere KI-Sprachmodelle zu trainieren. "
    "Dienstleistern, die für uns handeln, ist es untersagt, Daten zum Training zu nutzen.",
    # generic packs: affiliates + sharing + AI, private messages, biometrics
    "We may share your information with our affiliates, including xAI, to improve Grok. "
    "We scan the content of your messages and use facial recognition to verify you.",
]


@pytest.mark.parametrize("doc", GATE_DOCS)
def test_token_gates_change_no_finding(doc: str) -> None:
    packs = load_packs()
    gated = analyse_text(doc, packs)
    plain = analyse_text(doc, _ungated(packs))
    assert [f.to_dict() for f in gated.findings] == [f.to_dict() for f in plain.findings]
    assert (gated.ai_training, gated.consent, gated.negated) == (
        plain.ai_training,
        plain.consent,
        plain.negated,
    )


def test_gate_examples_do_find_something() -> None:
    # The equality test above would pass vacuously if nothing matched.
    found = {f.pack for doc in GATE_DOCS for f in analyse_text(doc).findings}
    assert found == {"ai-training", "ai-affiliate-sharing", "private-messages-biometrics"}


def test_stems_are_sound_for_hyphens_and_alternations() -> None:
    # "AI-powered" also matches "aipowered": "powered" need not start a word.
    assert _stem("AI-powered") == ("powered", "anywhere")
    assert _stem("large language model*") == ("language", "word")
    assert _stem("re:ab|cd")[0] is None  # no literal every match contains
    assert _stem("re:\\bwith\\s+your") == ("with", "start")
    assert _stem("re:n['’]t\\b")[0] is None


def test_stem_options_take_group_alternatives_and_lookaheads() -> None:
    # Every match of the first goes through "lernen" or "lernt": one option of two literals.
    assert (("lernen", "anywhere"), ("lernt", "anywhere")) in _stem_options(
        "re:\\bKI\\s+(?:lernen|lernt)\\b"
    )
    # A positive lookahead's text is in the text; a negative one's is not, nor an optional
    # group's.
    assert (("model", "anywhere"),) in _stem_options("re:\\btrain(?=\\s+(?:the\\s+)?model)")
    negative = {lit for o in _stem_options("re:\\btrain(?!\\s+staff)") for lit, _ in o}
    assert "staff" not in negative
    optional = {lit for o in _stem_options("re:\\bour(?:\\s+own)?\\s+models?") for lit, _ in o}
    assert "own" not in optional


def test_stem_groups_prefer_a_word_another_term_already_gates() -> None:
    groups, slow = _stem_groups(["model*", "train our models"])
    # "models" starts with the stem "model", so "train our models" needs no stem of its own.
    assert groups["start"] == {"model"}
    assert groups["word"] == set() and slow == []
    # Alone, its stem is the longest uncommon word: never "our".
    alone, _ = _stem_groups(["train our models"])
    assert alone["word"] == {"models"}


def _pack_terms_and_texts() -> list[tuple[list[str], str]]:
    """Each pack's lexicon terms and its example texts joined into one (so that each term
    is searched once; a blank line stops any match)."""
    import yaml

    from monitor.analyse import builtin_rules_dir

    out = []
    for path in sorted(builtin_rules_dir().glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        text = "\n\n".join(
            fold(e["text"] if isinstance(e, dict) else e)
            for kind in ("match", "no_match")
            for e in data.get("examples", {}).get(kind, [])
        )
        terms = {
            t
            for lexicon in data.get("lexicons", {}).values()
            for role in lexicon.values()
            for t in role
        }
        out.append((sorted(terms), text))
    return out


def _holds_at(low: str, lit: str, kind: str, start: int, end: int) -> bool:
    start = max(start, 0)
    i = low.find(lit, start)
    while i != -1 and i + len(lit) <= end:
        left = i == 0 or not _is_word_char(low[i - 1])
        right = i + len(lit) == len(low) or not _is_word_char(low[i + len(lit)])
        if kind == "anywhere" or (kind == "start" and left) or (left and right):
            return True
        i = low.find(lit, i + 1)
    return False


def test_every_match_of_every_pack_term_holds_each_of_its_stem_options() -> None:
    # Soundness of the token gate over every example text of every pack: an option that a
    # real match lacks would drop a finding.
    checked = 0
    for terms, text in _pack_terms_and_texts():
        low = text.lower()  # as TokenGate sees a token (lower-casing keeps the length here)
        assert len(low) == len(text)
        for term in terms:
            options = _stem_options(term)
            rx = re.compile(term_to_regex(term), re.IGNORECASE)
            # a lookaround's text lies outside the match, but near it
            reach = 80 if re.search(r"\(\?<?=", term) else 0
            for m in rx.finditer(text):
                if m.end() == m.start():
                    continue
                for option in options:
                    assert any(
                        _holds_at(low, lit, kind, m.start() - reach, m.end() + reach)
                        for lit, kind in option
                    ), (term, option, m.group())
                checked += 1
    assert checked > 1000


def test_grouped_alternation_matches_like_a_plain_one() -> None:
    terms = [
        "model*",
        "machine learning",
        "ML",
        "AI",
        "AI-powered",
        "Meta AI",
        "*modell*",
        "mistral",
    ]
    plain = re.compile(
        "|".join(
            f"(?:{term_to_regex(t)})"
            for t in sorted(terms, key=lambda t: len(term_to_regex(t)) + 4, reverse=True)
        ),
        re.IGNORECASE,
    )
    grouped = _compile_terms(terms, _Where(None))
    assert grouped is not None and "(?-i:[Mm])" in grouped.pattern
    text = "Meta AI models, machine-learning, ML and ai-powered KI-Sprachmodelle; Mistral, ai."
    assert [m.span() for m in grouped.finditer(text)] == [m.span() for m in plain.finditer(text)]


@pytest.mark.parametrize(
    "text",
    [
        "Will my recordings be used to train your speech models?",
        "Does the app use my photos to train its AI?",
        "¿Usamos tus datos para entrenar nuestros modelos de IA?",
        # an FAQ entry quoted on the page
        '"Is my voice used to train your assistant?"',
        "« Mes photos servent-elles à entraîner votre IA ? »",
    ],
)
def test_a_question_is_not_a_disclosure(text: str) -> None:
    assert not analyse_text(text).ai_training


@pytest.mark.parametrize(
    ("text", "consent"),
    [
        # the question presupposes the training, or names the way out of it
        ("Don't want your chats used to train our models? Turn it off in Settings.", "opt_out"),
        ("Will my data be used to train your models unless I opt out?", "opt_out"),
        # the answer after the question is a statement like any other
        ("Is my data used for training? Yes: we use your chats to train our models.", "none"),
    ],
)
def test_a_question_with_a_presupposition_or_an_answer_still_counts(
    text: str, consent: str
) -> None:
    a = analyse_text(text)
    assert a.ai_training and a.consent == Consent(consent)


# A purpose list's row whose lead-in the page lost: a purpose of processing personal data by
# definition (LABELLING's purpose items), with no data noun of its own.
PURPOSE_ITEMS = {
    "en": "Improving our speech models.",
    "fr": "Amélioration de nos modèles de reconnaissance vocale.",
    "de": "Verbesserung unserer Spracherkennungsmodelle.",
    "es": "Mejora de nuestros modelos de reconocimiento de voz.",
    "it": "Miglioramento dei nostri modelli di riconoscimento vocale.",
    "nl": "Het verbeteren van onze spraakmodellen.",
}


@pytest.mark.parametrize("lang", sorted(PURPOSE_ITEMS))
def test_a_verbless_purpose_item_is_a_disclosure(lang: str) -> None:
    a = analyse_text(PURPOSE_ITEMS[lang])
    assert (a.lang, a.ai_training, a.consent) == (lang, True, Consent.NONE)


@pytest.mark.parametrize(
    "text",
    [
        # a statement that opens with the purpose: a verb follows the object
        "Training our speech models can take several weeks.",
        "Improving our speech models is a priority for the team.",
        # a subject before the purpose
        "We improve our speech models only with licensed recordings.",
        "Improving our speech models remains the team's main goal this year.",
    ],
)
def test_a_statement_about_training_is_no_purpose_item(text: str) -> None:
    assert not analyse_text(text).ai_training

"""Segmentation: sentence ends, abbreviations, legal references, lead-ins, headings, offsets."""

from __future__ import annotations

import pytest

from monitor.analyse import segment


def texts(doc: str) -> list[str]:
    return [u.text for u in segment(doc)]


def test_sentences_split_on_terminal_punctuation() -> None:
    assert texts("We collect data. We share it! Do we sell it? No.") == [
        "We collect data.",
        "We share it!",
        "Do we sell it?",
        "No.",
    ]


@pytest.mark.parametrize(
    "sentence",
    [
        "We rely on consent under Art. 6(1)(a) GDPR for this.",
        "We share data with X Corp. and xAI Holdings Inc. in the U.S. for hosting.",
        "Some data, e.g. posts, and some metadata, i.e. timestamps, are kept.",
        "Photos, videos, etc. are stored for No. 3 of the list.",
        "Wir verarbeiten Daten, z. B. Beiträge, d. h. Inhalte, bzw. Kommentare nach Abs. 2.",
        "Nous traitons des données, p. ex. vos messages, selon l'art. 6 du RGPD.",
        "Trattiamo dati, ad es. foto, video ecc. per migliorare il servizio.",
        "Nous nous fondons sur l'art. 6 par. 1 point f du RGPD pour ce traitement.",
        "Wir verarbeiten Ihre Beiträge gem. Art. 6 Abs. 1 lit. f DSGVO für dieses Training.",
    ],
)
def test_abbreviations_and_legal_references_do_not_split(sentence: str) -> None:
    assert texts(sentence) == [sentence]


def test_list_items_carry_their_lead_in_but_offsets_cover_the_item() -> None:
    doc = "We may use your data to:\n\n- improve our services\n\n- train our AI models"
    units = segment(doc)
    assert [u.text for u in units] == [
        "We may use your data to:",
        "We may use your data to: — improve our services",
        "We may use your data to: — train our AI models",
    ]
    item = units[2]
    assert doc[item.start : item.end] == "train our AI models"


def test_list_without_colon_lead_in_stands_alone() -> None:
    units = segment("Some context here.\n\n- an item")
    assert units[1].text == "an item"


def test_heading_paths_follow_levels() -> None:
    doc = "# Policy\n\n## Use\n\nWe use data.\n\n### AI\n\nWe train models.\n\n## Sharing\n\nWe share."
    paths = {u.text: u.heading_path for u in segment(doc)}
    assert paths["We use data."] == ("Policy", "Use")
    assert paths["We train models."] == ("Policy", "Use", "AI")
    assert paths["We share."] == ("Policy", "Sharing")


def test_offsets_point_at_the_unit_text() -> None:
    doc = "# T\n\nFirst sentence here. Second one\nwraps a line.\n\nThird."
    units = segment(doc)
    assert len(units) == 3
    for u in units:
        assert doc[u.start : u.end].replace("\n", " ") == u.text
    assert [u.index for u in units] == [0, 1, 2]


def test_raw_markdown_setext_heading_and_list_in_one_block() -> None:
    doc = "Privacy\n=======\n\nWe share data with:\n- partners\n- affiliates"
    units = segment(doc)
    assert all(u.heading_path == ("Privacy",) for u in units)
    assert [u.text for u in units] == [
        "We share data with:",
        "We share data with: — partners",
        "We share data with: — affiliates",
    ]


@pytest.mark.parametrize(
    "doc",
    [
        "Why? Because. Really?! Yes… And... Then?. Done!. OK",
        'He said "Stop." Then left. (See below.) Next. «Oui.» Non.',
        "x?.. Bar! Baz… Qux?! A ...Foo. Bar",
        "Ends at the line end.\nNext line. Same paragraph.\n\n- Item one. Item two.\n\nNew block.",
        "Abbrev. e.g. Foo. Art. 6 GDPR. U.S. Bar. A.I. Models. x.\u00a0Y. Last.",
    ],
)
def test_split_boundary_patterns_find_what_one_pattern_finds(doc: str) -> None:
    # The segmenter searches "." ends and the rarer "!", "?", "…" ends with two patterns
    # (a literal first character is much faster to search for); together they must find
    # exactly the matches of the one pattern they stand for, in any part of the text.
    from monitor.analyse.segment import _BOUNDARY, _boundaries

    for start in range(len(doc)):
        for stop in (len(doc), len(doc) - 3, start + 12):
            if stop < start:
                continue
            want = [(m.span(), m.span(1)) for m in _BOUNDARY.finditer(doc, start, stop)]
            got = [(m.span(), m.span(1)) for m in _boundaries(doc, start, stop)]
            assert got == want, (start, stop)


def test_paragraphs_split_like_split_sentences() -> None:
    # The segmenter finds the sentence ends of the whole document once; each paragraph must
    # get the sentences split_sentences gives it alone, also where an end's lookahead
    # ("." + space + capital) would reach into the next paragraph.
    from monitor.analyse.segment import split_sentences

    paragraphs = [
        "One. Two e.g. three. Four!",
        "End here.\nNext line follows. X.",
        "Z. Y. ",
        "Last.",
    ]
    doc = "\n\n".join(paragraphs)
    want: list[tuple[int, int]] = []
    pos = 0
    for p in paragraphs:
        want += split_sentences(doc, pos, pos + len(p))
        pos += len(p) + 2
    assert [(u.start, u.end) for u in segment(doc)] == want
    assert len(want) == 8  # "Z." is taken for an initial


# --- SegmentMemo -------------------------------------------------------------------------

# A document's versions as an import sees them: blocks recur verbatim under changed headings,
# after a changed lead-in, inside and outside a list, and as raw Markdown (setext heading,
# list items on consecutive lines).
_V1 = """# Privacy

## What we collect

We collect your posts. We keep them, e.g. for backups.

We use your information to:

- train our models.
- keep you safe. We also fight spam.

## Sharing

We share data with partners."""
_VERSIONS = [
    _V1,
    # a heading renamed and one inserted above recurring blocks
    _V1.replace("## What we collect", "## What we collect and why").replace(
        "## Sharing", "## Your choices\n\nYou can object.\n\n### Sharing"
    ),
    # the lead-in changed: the same items now carry another one
    _V1.replace("We use your information to:", "We may use your information to:"),
    # the lead-in gone: the items stand alone; a paragraph now closes the list
    _V1.replace("We use your information to:\n\n", "").replace(
        "- keep you safe. We also fight spam.", "- keep you safe.\n\nWe also fight spam."
    ),
    "Privacy\n=======\n\nWe collect your posts.\n- train our models.\n- keep you safe.",
    _V1,
]


def test_segment_memo_replays_exactly_what_segmenting_gives() -> None:
    from monitor.analyse.segment import SegmentMemo, segment_with_blocks

    memo = SegmentMemo()
    for version in _VERSIONS + _VERSIONS[::-1]:
        assert segment_with_blocks(version, memo) == segment_with_blocks(version)
    assert memo.blocks  # something was kept to replay


def test_segment_memo_is_bounded() -> None:
    from monitor.analyse.segment import SegmentMemo, segment_with_blocks

    memo = SegmentMemo(max_entries=3)
    for version in _VERSIONS:
        assert segment_with_blocks(version, memo) == segment_with_blocks(version)
        assert len(memo.blocks) + len(memo.headed) <= 4  # emptied once full, then one added


def test_inline_bullets_after_a_sentence_start_a_new_unit() -> None:
    # Table cells of Markdown policies hold list items joined on one line ("<br>* ").
    doc = "We use it to train models. * With your consent, we keep audio. • Another item here."
    assert texts(doc) == [
        "We use it to train models.",
        "With your consent, we keep audio.",
        "Another item here.",
    ]
    # Emphasis is no bullet: "*Note*" starts the next sentence as it is.
    assert texts("We keep it. *Note* that it is kept.") == [
        "We keep it.",
        "*Note* that it is kept.",
    ]


@pytest.mark.parametrize(
    ("doc", "first"),
    [
        ("Gültig ab 30. November 2018. Wir speichern Daten.", "Gültig ab 30. November 2018."),
        ("Ισχύει από 30. Νοεμβρίου 2019. Κείμενο.", "Ισχύει από 30. Νοεμβρίου 2019."),
        ("Stand: 1. Mai. Danach folgt mehr.", "Stand: 1. Mai."),
        (
            "Beispiel GmbH, Goethestr. 12, 80336 München. Wir verarbeiten Daten.",
            "Beispiel GmbH, Goethestr. 12, 80336 München.",
        ),
        # a year or a count before the period is a sentence end, month or not
        ("Sie gilt seit 2030. November ist kalt.", "Sie gilt seit 2030."),
        ("We kept 30. Then we stopped.", "We kept 30."),
    ],
)
def test_a_day_before_its_month_or_a_street_does_not_end_a_sentence(doc: str, first: str) -> None:
    got = texts(doc)
    assert len(got) == 2, got
    assert got[0].strip() == first

"""Clause-level diff (monitor.diff): units, alignment, word ops, renderings."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from monitor import diff as diff_module
from monitor.diff import diff_texts, diff_to_json, render_html, render_text, split_units
from monitor.models import ChangeKind, DiffResult, UnitChange

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"

POLICY = """# Privacy Policy

We collect the information you give us when you create an account. This includes your name, \
email address and date of birth. We also collect the content you post.

## How we use information

We use your information to provide and improve the service. We use it to show you relevant \
advertising, e.g. ads from Acme Inc. and its partners.

- Account information
- Usage information
- Device information

## Your rights

You can access, correct or delete your data at any time. Contact our data protection officer \
for any question."""


def kinds(result: DiffResult) -> list[ChangeKind]:
    return [c.kind for c in result.changes if c.kind != ChangeKind.EQUAL]


def only_change(result: DiffResult) -> UnitChange:
    changed = [c for c in result.changes if c.kind != ChangeKind.EQUAL]
    assert len(changed) == 1, changed
    return changed[0]


# --- units -----------------------------------------------------------------------------------


def test_units_split_paragraphs_into_sentences_and_keep_markers() -> None:
    units = split_units(POLICY)
    assert units[0] == "# Privacy Policy"
    assert units[1] == "We collect the information you give us when you create an account."
    assert units[2] == "This includes your name, email address and date of birth."
    assert "- Usage information" in units
    assert "## Your rights" in units
    assert len(units) == 13


@pytest.mark.parametrize(
    "sentence",
    [
        "We share data with partners, e.g. Meta Platforms Ireland Ltd. and Google LLC, for ads.",
        "Processing is based on Art. 6(1)(a) GDPR where you gave consent to this processing.",
        "The controller is Acme Inc. We are based in Dublin and answer within a month.",
        "Data may be sent to the U.S. Department of Commerce under the framework we joined.",
        "Some data, i.e. Your contacts, is optional; see No. 5 of this policy for details.",
        "We use cookies, analytics etc. To learn more, contact Dr. Smith or Mr. Jones today.",
    ],
)
def test_abbreviations_do_not_split_units(sentence: str) -> None:
    # "Inc. We" and "etc. To" are ambiguous; the abbreviation list decides for "not a split".
    assert split_units(sentence) == [sentence]


def test_sentence_ends_split_before_capital_digit_or_quote() -> None:
    text = 'We keep logs for 30 days. 90 days for backups. "Deleted" means gone. Is it? Yes!'
    assert split_units(text) == [
        "We keep logs for 30 days.",
        "90 days for backups.",
        '"Deleted" means gone.',
        "Is it?",
        "Yes!",
    ]


def test_no_split_before_lower_case_or_inside_numbers() -> None:
    text = "Version 2.1 of the policy applies. see section 4.2 for more on data retention rules."
    assert split_units(text) == [text]


def test_list_item_sentences_keep_marker_on_first() -> None:
    text = "- Profile data. We collect your name and photo when you sign up for the service."
    assert split_units(text) == [
        "- Profile data.",
        "We collect your name and photo when you sign up for the service.",
    ]


def test_enumerator_is_not_a_sentence() -> None:
    text = "1. Introduction to this privacy policy and the ways we use your data today."
    assert split_units(text) == [text]


def test_list_items_on_consecutive_lines_are_separate_units() -> None:
    assert split_units("- one\n- two\n# Head\ntext") == ["- one", "- two", "# Head", "text"]


# --- alignment -------------------------------------------------------------------------------


def test_identical_texts_have_no_changes() -> None:
    result = diff_texts(POLICY, POLICY)
    assert not result.changed
    assert result.counts()["equal"] == len(split_units(POLICY))
    assert [c.new_index for c in result.changes] == list(range(len(split_units(POLICY))))


def test_empty_sides() -> None:
    assert diff_texts("", "").changes == []
    added = diff_texts("", "One. Two.")
    assert kinds(added) == [ChangeKind.ADDED]
    removed = diff_texts("One sentence here.\n\nTwo.", "")
    assert kinds(removed) == [ChangeKind.REMOVED, ChangeKind.REMOVED]
    assert [c.old_index for c in removed.changes] == [0, 1]


def test_sentence_added_inside_paragraph_is_one_added_unit() -> None:
    added = "We may use your posts to train our artificial intelligence models."
    new = POLICY.replace(
        "We use it to show you relevant",
        added + " We use it to show you relevant",
    )
    result = diff_texts(POLICY, new)
    change = only_change(result)
    assert change.kind == ChangeKind.ADDED
    assert change.new_text == added
    assert change.old_index is None
    assert split_units(new)[change.new_index or 0] == added


def test_one_word_changed_is_modified_with_word_ops() -> None:
    new = POLICY.replace("correct or delete your data", "correct or export your data")
    change = only_change(diff_texts(POLICY, new))
    assert change.kind == ChangeKind.MODIFIED
    assert [op for op in change.ops if op[0] != 0] == [(-1, "delete"), (1, "export")]
    assert "".join(t for op, t in change.ops if op != 1) == change.old_text
    assert "".join(t for op, t in change.ops if op != -1) == change.new_text


def test_word_ops_never_split_a_word() -> None:
    change = only_change(
        diff_texts("We store the data on servers.", "We restore the data on servers.")
    )
    assert (-1, "store") in change.ops
    assert (1, "restore") in change.ops


def test_moved_paragraph_is_moved_not_added_and_removed() -> None:
    rights = (
        "## Your rights\n\nYou can access, correct or delete your data at any time. "
        "Contact our data protection officer for any question."
    )
    body = POLICY.replace("\n\n" + rights, "")
    new = body.replace("## How we use information", rights + "\n\n## How we use information")
    result = diff_texts(POLICY, new)
    assert set(kinds(result)) == {ChangeKind.MOVED}
    moved = {c.new_text for c in result.changes if c.kind == ChangeKind.MOVED}
    assert "## Your rights" in moved
    assert all(not c.ops for c in result.changes if c.kind == ChangeKind.MOVED)


def test_moved_and_edited_paragraph_is_moved_with_ops() -> None:
    para = (
        "We use your information to provide and improve the service. We use it to show you "
        "relevant advertising, e.g. ads from Acme Inc. and its partners."
    )
    edited = para.replace("relevant advertising", "personalised advertising")
    new = POLICY.replace(para + "\n\n", "").replace("## Your rights", edited + "\n\n## Your rights")
    result = diff_texts(POLICY, new)
    moved = [c for c in result.changes if c.kind == ChangeKind.MOVED]
    assert len(moved) == 2
    assert ChangeKind.ADDED not in kinds(result)
    assert ChangeKind.REMOVED not in kinds(result)
    edited_unit = next(c for c in moved if c.ops)
    assert [op for op in edited_unit.ops if op[0] != 0] == [(-1, "relevant"), (1, "personalised")]


def test_removed_list_item_is_removed_in_place() -> None:
    new = POLICY.replace("- Usage information\n", "")
    result = diff_texts(POLICY, new)
    change = only_change(result)
    assert change.kind == ChangeKind.REMOVED
    assert change.old_text == "- Usage information"
    assert change.new_index is None
    # Placed between its old neighbours.
    pos = result.changes.index(change)
    assert result.changes[pos - 1].new_text == "- Account information"
    assert result.changes[pos + 1].new_text == "- Device information"


def test_changes_are_in_new_document_order() -> None:
    new = (
        POLICY.replace("We also collect the content you post.", "")
        .replace("- Device information", "- Device information\n\n- Location information")
        .replace("at any time", "at any reasonable time")
    )
    result = diff_texts(POLICY, new)
    new_positions = [c.new_index for c in result.changes if c.new_index is not None]
    assert new_positions == list(range(len(split_units(new))))
    old_positions = [c.old_index for c in result.changes if c.old_index is not None]
    assert old_positions == sorted(old_positions)
    assert sorted(kinds(result)) == sorted(
        [ChangeKind.REMOVED, ChangeKind.ADDED, ChangeKind.MODIFIED]
    )


def test_unrelated_replacement_is_removed_plus_added() -> None:
    new = POLICY.replace(
        "We also collect the content you post.",
        "Cookies help us remember your language preference.",
    )
    assert sorted(kinds(diff_texts(POLICY, new))) == [ChangeKind.ADDED, ChangeKind.REMOVED]


def test_swap_keeps_the_longer_text_in_place() -> None:
    long_para = (
        "We use your information to provide, personalise and improve our products, including "
        "to train and develop features, and to keep the service safe and secure for everyone."
    )
    short = "Cookies are small files."
    old = f"# A\n\n{long_para}\n\n{short}\n\n# B"
    new = f"# A\n\n{short}\n\n{long_para}\n\n# B"
    result = diff_texts(old, new)
    moved = [c for c in result.changes if c.kind == ChangeKind.MOVED]
    assert [c.new_text for c in moved] == [short]


def test_repeated_boilerplate_stays_in_place() -> None:
    old = "\n\n".join(f"Section {k} explains topic {k} in detail. Learn more." for k in range(300))
    new = old.replace("Section 10 explains topic 10 in detail. Learn more.\n\n", "").replace(
        "Section 200 explains", "Section 200 now explains"
    )
    result = diff_texts(old, new)
    assert sorted(kinds(result)) == sorted(
        [ChangeKind.REMOVED, ChangeKind.REMOVED, ChangeKind.MODIFIED]
    )
    removed = [c.old_text for c in result.changes if c.kind == ChangeKind.REMOVED]
    assert removed == ["Section 10 explains topic 10 in detail.", "Learn more."]


def _generated_policy(rng: random.Random, n_units: int) -> list[str]:
    vocab = [
        "data", "personal", "we", "process", "share", "partners", "service", "account",
        "consent", "cookies", "retain", "delete", "access", "legal", "basis", "users",
        "models", "information", "improve", "security", "advertising", "content", "device",
    ]  # fmt: skip
    units = []
    for k in range(n_units):
        words = [rng.choice(vocab) for _ in range(rng.randint(6, 18))]
        units.append(f"Clause {k} {' '.join(words)}.")
    return units


def _join(units: list[str]) -> str:
    # Five sentences per paragraph, so paragraphs are split back into the same units.
    return "\n\n".join(" ".join(units[k : k + 5]) for k in range(0, len(units), 5))


def _edited(rng: random.Random, units: list[str], rate: float) -> list[str]:
    out = list(units)
    for _ in range(int(len(units) * rate)):
        action = rng.random()
        k = rng.randrange(len(out))
        if action < 0.4:
            out[k] = out[k].replace(" ", " changed ", 1)
        elif action < 0.7:
            del out[k]
        elif action < 0.9:
            out.insert(k, f"Brand new clause {rng.random():.6f} about models.")
        else:
            out.insert(rng.randrange(len(out)), out.pop(k))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_large_text_with_few_edits_is_not_degenerate(seed: int) -> None:
    rng = random.Random(seed)
    old_units = _generated_policy(rng, 3000)
    new_units = _edited(rng, old_units, 0.05)
    old, new = _join(old_units), _join(new_units)
    assert split_units(old) == old_units
    result = diff_texts(old, new)
    counts = result.counts()
    assert counts["equal"] >= 0.9 * len(old_units)
    assert counts["added"] + counts["removed"] <= 0.1 * len(old_units)
    # Every unit is accounted for exactly once on each side.
    assert sorted(c.old_index for c in result.changes if c.old_index is not None) == list(
        range(len(old_units))
    )
    assert [c.new_index for c in result.changes if c.new_index is not None] == list(
        range(len(split_units(new)))
    )


def test_alignment_falls_back_when_dmp_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force diff-match-patch on a large difference with no time: its timeout answer is
    # "delete all, insert all", which the difflib fallback must replace.
    monkeypatch.setattr(diff_module, "ALIGN_TIMEOUT", 1e-9)
    monkeypatch.setattr(diff_module, "_DMP_MAX_DIFF", 10**9)
    rng = random.Random(7)
    old_units = _generated_policy(rng, 1500)
    new_units = _edited(rng, old_units, 0.2)
    # The alignment itself, not only the end result (later pairing would hide a bad one).
    pairs = diff_module._align(old_units, new_units)
    assert len(pairs) >= 0.6 * len(old_units)
    assert all(old_units[i] == new_units[j] for i, j in pairs)
    result = diff_texts(_join(old_units), _join(new_units))
    assert result.counts()["equal"] >= 0.6 * len(old_units)


# --- outputs ---------------------------------------------------------------------------------


def test_json_shape() -> None:
    new = POLICY.replace("correct or delete", "correct or erase").replace(
        "- Usage information\n", ""
    )
    data = diff_to_json(diff_texts(POLICY, new))
    assert set(data) == {"summary", "changes"}
    assert data["summary"] == {
        "added": 0,
        "removed": 1,
        "modified": 1,
        "moved": 0,
        "equal": len(split_units(POLICY)) - 2,
    }
    removed, modified = data["changes"]
    assert removed == {
        "kind": "removed",
        "old_index": split_units(POLICY).index("- Usage information"),
        "new_index": None,
        "old_text": "- Usage information",
        "new_text": None,
        "ops": [],
    }
    assert modified["kind"] == "modified"
    assert [-1, "delete"] in modified["ops"] and [1, "erase"] in modified["ops"]
    assert all(isinstance(op, list) and len(op) == 2 for op in modified["ops"])


def test_render_text_markers_without_color() -> None:
    new = (
        POLICY.replace("correct or delete", "correct or erase")
        .replace("- Usage information\n", "")
        .replace("for any question.", "for any question. We reply within a month.")
    )
    out = render_text(diff_texts(POLICY, new))
    assert "\x1b" not in out
    assert "! You can access, correct or [-delete-]{+erase+} your data at any time." in out
    assert "- - Usage information" in out
    assert "+ We reply within a month." in out
    assert re.search(r"^@@ -#\d+ removed @@$", out, re.M)
    assert re.search(r"^@@ -#\d+ \+#\d+ modified @@$", out, re.M)
    # Context: the neighbours of the removed item, indented by two spaces.
    assert "\n  - Account information\n" in out
    # The unchanged top of the policy is elided.
    assert "..." in out
    assert "# Privacy Policy" not in out


def test_render_text_color_codes_only_with_color() -> None:
    result = diff_texts(POLICY, POLICY.replace("correct or delete", "correct or erase"))
    colored = render_text(result, color=True)
    assert "\x1b[" in colored
    assert "[-" not in colored and "{+" not in colored
    assert re.search(r"\x1b\[[0-9;]*31mdelete\x1b\[0m", colored)
    assert "\x1b" not in render_text(result, color=False)


def test_render_text_context_and_moves() -> None:
    old = "\n\n".join(f"Unchanged clause number {k}." for k in range(10))
    new = old.replace("Unchanged clause number 0.\n\n", "") + "\n\nUnchanged clause number 0."
    out = render_text(diff_texts(old, new), context=0)
    assert "~ moved from #1 to #10" in out
    assert "  Unchanged" not in out
    assert render_text(diff_texts(old, old)) == "No changes.\n"


def test_render_text_neutralises_terminal_escapes() -> None:
    out = render_text(diff_texts("Hello.", "Hello. \x1b[2J Evil clause.\x07"), color=False)
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2J" in out


HOSTILE = 'We use <script>alert("x")</script> data. Click "><img src=x onerror=alert(1)> here.'


def test_render_html_escapes_policy_text() -> None:
    result = diff_texts("We use data.", HOSTILE)
    page = render_html(
        result,
        title="<script>t()</script> policy",
        old_label="<b>old</b>",
        new_label="new",
        source_url='https://example.org/p?a=1&b="><script>',
    )
    soup = BeautifulSoup(page, "html.parser")
    assert soup.find("script") is None
    assert soup.find("img") is None
    assert soup.find("b") is None
    text = soup.get_text()
    assert '<script>alert("x")</script>' in text
    assert '"><img src=x onerror=alert(1)>' in text
    assert soup.title is not None and "<script>t()</script> policy" in soup.title.get_text()
    link = soup.find("a", href=True)
    assert link is not None and link["href"] == 'https://example.org/p?a=1&b="><script>'


def test_render_html_drops_non_web_source_links() -> None:
    page = render_html(
        diff_texts("a", "b"), title="t", old_label="o", new_label="n", source_url="javascript:x()"
    )
    soup = BeautifulSoup(page, "html.parser")
    assert soup.find("a") is None
    assert "javascript:x()" in soup.get_text()


def test_render_html_structure() -> None:
    new = (
        POLICY.replace("correct or delete", "correct or erase")
        .replace("- Usage information\n", "")
        .replace("for any question.", "for any question. We reply within a month.")
    )
    page = render_html(
        diff_texts(POLICY, new),
        title="Acme privacy policy",
        old_label="2024-01-01",
        new_label="2024-06-01",
        source_url="https://acme.example/privacy",
    )
    soup = BeautifulSoup(page, "html.parser")
    assert soup.find("h1").get_text() == "Acme privacy policy"  # type: ignore[union-attr]
    assert "2024-01-01" in soup.get_text() and "2024-06-01" in soup.get_text()
    assert soup.find("style") is not None
    # Self-contained: nothing fetched from elsewhere.
    assert not soup.find_all(["script", "link", "img", "iframe"])
    summary = soup.select_one(".pm-summary").get_text(" ", strip=True)  # type: ignore[union-attr]
    assert "1 added" in summary and "1 removed" in summary and "1 modified" in summary
    modified = soup.select_one(".pm-modified")
    assert modified is not None
    assert modified.find("del").get_text() == "[deleted: delete]"  # type: ignore[union-attr]
    assert modified.find("ins").get_text() == "[inserted: erase]"  # type: ignore[union-attr]
    assert modified.find("del").get("title") == "deleted"  # type: ignore[union-attr]
    removed = soup.select_one(".pm-removed del")
    assert removed is not None and "- Usage information" in removed.get_text()
    assert "We reply within a month." in soup.select_one(".pm-added ins").get_text()  # type: ignore[union-attr]
    # Unchanged units away from the changes are collapsed, not dropped.
    gap = soup.select_one(".pm-gap details")
    assert gap is not None and "# Privacy Policy" in gap.get_text()
    first = gap.select_one(".pm-unit.pm-equal.pm-heading")  # rendered inline, not by unit_row
    assert first is not None and first.select_one(".pm-pos").get_text() == "#1"  # type: ignore[union-attr]


def test_render_html_marks_moves_and_no_change() -> None:
    old = "\n\n".join(f"Unchanged clause number {k}." for k in range(5))
    new = old.replace("Unchanged clause number 0.\n\n", "") + "\n\nUnchanged clause number 0."
    soup = BeautifulSoup(
        render_html(diff_texts(old, new), title="t", old_label="o", new_label="n"), "html.parser"
    )
    badge = soup.select_one(".pm-moved .pm-badge")
    assert badge is not None and badge.get_text() == "moved from #1"
    same = BeautifulSoup(
        render_html(diff_texts(old, old), title="t", old_label="o", new_label="n"), "html.parser"
    )
    assert same.select_one(".pm-nochange") is not None
    assert same.select_one(".pm-unit") is None


# --- corpus ----------------------------------------------------------------------------------


def _to_blocks(md: str) -> str:
    try:
        from monitor.extract import extract_markdown
    except ImportError:  # the extract stage is not there yet: strip the commonest markers
        md = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", md)
        md = re.sub(r"^\s*[-=]{3,}\s*$", "", md, flags=re.M)
        md = re.sub(r"^\s*[*+]\s+", "- ", md, flags=re.M)
        return re.sub(r"[*_`]+|\\(?=\S)", "", md)
    return extract_markdown(md).text


@pytest.mark.corpus
@pytest.mark.parametrize(
    "series", ["facebook/privacy-policy", "tiktok/privacy-policy", "chatgpt/privacy-policy"]
)
def test_corpus_pairs_are_not_degenerate(series: str) -> None:
    folder = CORPUS / "versions" / series
    if not folder.is_dir():
        pytest.skip(f"corpus series {series} is not present")
    files = sorted(folder.glob("*.md"))[-4:]
    texts = [_to_blocks(f.read_text(encoding="utf-8")) for f in files]
    assert len(texts) >= 2
    for old, new in itertools.pairwise(texts):
        a, b = split_units(old), split_units(new)
        result = diff_texts(old, new)
        counts = result.counts()
        shared = len(set(a) & set(b))
        assert counts["equal"] + counts["modified"] + counts["moved"] >= 0.9 * shared
        assert counts["equal"] + counts["removed"] + counts["modified"] + counts["moved"] == len(a)
        assert counts["equal"] + counts["added"] + counts["modified"] + counts["moved"] == len(b)


# --- the counts path and the memo of a chain of diffs ---------------------------------------


def _edited_versions(seed: int) -> list[str]:
    """A chain of versions of one policy under random unit edits: deletions, insertions,
    rewordings, moves, duplicated boilerplate, whitespace changes inside blocks."""
    import random

    from monitor.diff import split_units as split

    rng = random.Random(seed)
    words = [
        "we",
        "use",
        "your",
        "data",
        "posts",
        "messages",
        "to",
        "train",
        "our",
        "AI",
        "models",
        "partners",
        "share",
    ]
    base = [
        "# Privacy policy",
        "## What we collect",
        "We collect the posts you share and the messages you send.",
        "- Account data. Your name and e-mail address.",
        "- Usage data. What you click on, and when.",
        "## How we use data",
        "We use your public posts to train our AI models. You can opt out in Settings.",
        "We do not sell your data.",
        "## Contact",
        "Write to privacy@example.com.",
        "## Contact",
    ]
    units = list(base)
    out = ["\n\n".join(units)]
    for _ in range(12):
        for _ in range(rng.randint(1, 4)):
            op = rng.choice(["del", "ins", "edit", "move", "dup"])
            k = rng.randrange(len(units)) if units else 0
            if op == "del" and len(units) > 2:
                units.pop(k)
            elif op == "ins":
                units.insert(k, " ".join(rng.choice(words) for _ in range(9)).capitalize() + ".")
            elif op == "edit" and units:
                units[k] = units[k].replace("our", "our partners'", 1) + " Also " + "x" * k
            elif op == "move" and len(units) > 1:
                units.insert(rng.randrange(len(units)), units.pop(k))
            elif op == "dup" and units:
                units.insert(rng.randrange(len(units) + 1), units[k])
        text = "\n\n".join(units)
        if rng.random() < 0.3:
            text = text.replace("\n\n- ", "\n- ", 1)  # a list without its blank line
        out.append(text)
        assert split(text)  # never empty
    return out


@pytest.mark.parametrize("seed", range(8))
def test_counts_path_and_memo_give_the_full_diffs_counts(seed: int) -> None:
    from monitor.diff import DiffMemo, diff_unit_counts, diff_units

    memo = DiffMemo(max_entries=7)  # small: the tables empty and refill along the chain
    versions = _edited_versions(seed)
    prev_plain = prev_memo = None
    for text in versions:
        plain = split_units(text)
        memoised = split_units(text, memo)
        assert memoised == plain
        if prev_plain is not None and prev_memo is not None:
            want = diff_units(prev_plain, plain, word_ops=False).counts()
            assert diff_units(prev_plain, plain).counts() == want
            assert diff_unit_counts(prev_plain, plain) == want
            assert diff_unit_counts(prev_memo, memoised, memo) == want
            assert diff_units(prev_memo, memoised, memo=memo).counts() == want
        prev_plain, prev_memo = plain, memoised
        assert len(memo.blocks) <= 7 and len(memo.words) <= 7


def test_unit_matching_runs_are_difflibs_blocks_of_the_codes() -> None:
    # _matching_runs replaces difflib over the encoded characters (the rewrite path of the
    # alignment): the same blocks, repeated units and ties included.
    import difflib

    rng = random.Random(5)
    lengths = [rng.randint(1, 300) for _ in range(12)]
    for _ in range(400):
        vocab = rng.sample(range(12), rng.randint(1, 5))
        a = [rng.choice(vocab) for _ in range(rng.randint(0, 40))]
        b = [rng.choice(vocab) for _ in range(rng.randint(0, 40))]
        table: dict[int, str] = {}
        n = 0
        codes: tuple[list[str], list[str]] = ([], [])
        for units, out in zip((a, b), codes, strict=True):
            for u in units:
                if u not in table:
                    weight = min(diff_module._MAX_WEIGHT, 1 + lengths[u] // 40)
                    table[u] = diff_module._codes(n, weight)
                    n += weight
                out.append(table[u])
        sm = difflib.SequenceMatcher(None, "".join(codes[0]), "".join(codes[1]), autojunk=False)
        want = [(m.a, m.b, m.size) for m in sm.get_matching_blocks() if m.size]
        offsets = [list(itertools.accumulate(map(len, side), initial=0)) for side in codes]
        got = [
            (offsets[0][i], offsets[1][j], offsets[0][i + k] - offsets[0][i])
            for i, j, k in diff_module._matching_runs(*codes)
        ]
        # difflib merges adjacent blocks; so does this comparison
        merged: list[tuple[int, int, int]] = []
        for i, j, k in got:
            if merged and merged[-1][0] + merged[-1][2] == i and merged[-1][1] + merged[-1][2] == j:
                merged[-1] = (merged[-1][0], merged[-1][1], merged[-1][2] + k)
            else:
                merged.append((i, j, k))
        assert merged == want, (a, b)

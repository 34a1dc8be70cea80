"""Extract stage: block text from HTML and OTA Markdown, dates, and the suspect-fetch guard."""

from __future__ import annotations

import csv
import datetime as dt
from functools import cache
from pathlib import Path

import pytest

from monitor.errors import ExtractError
from monitor.extract import extract_html, extract_markdown, normalise_text, suspect_reason
from monitor.models import Extracted

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"


# --------------------------------------------------------------------------------------------
# HTML: markup churn never changes the text
# --------------------------------------------------------------------------------------------

PAGE_A = """<!DOCTYPE html>
<html lang="en"><head><title>Privacy | Example</title>
<script nonce="r4nd0m1">window.__STATE__ = {"build": 1}</script>
<style>.p1 { color: red }</style></head>
<body>
<nav class="top"><a href="/">Home</a> <a href="/jobs">Careers</a></nav>
<main id="content" class="c-main">
<h1 class="title" id="t">Privacy Policy</h1>
<p class="p1" data-track="a1">We collect <a href="https://example.com/x?utm=1">your data</a> to provide
the <strong>service</strong>.</p>
<ul class="l1"><li>Account data</li><li>Usage data</li></ul>
<img src="https://t.example/pixel.gif?id=1" width="1" height="1">
</main>
</body></html>"""

PAGE_B = """<!DOCTYPE html>
<html lang="en">
  <head>
    <title>Privacy | Example</title>
    <script nonce="Zq81x">window.__STATE__ = {"build": 2}</script>
    <style>.zz9 { color: blue }</style>
  </head>
  <body>
    <!-- build 2024-06-01 -->
    <nav class="top2"><a href="/">Home</a><a href="/about">About us</a></nav>
    <main class="x-main" id="content" data-page-id="998">
      <h1 id="t" class="h-xl  title">
        Privacy   Policy
      </h1>
      <p data-track="b7" class="para-2">
        We collect
        <a class="lnk" href="https://example.com/x?utm=2&amp;sig=ffe">your data</a>
        to provide the <strong data-x="1">service</strong>.
      </p>
      <script>trackPageView()</script>
      <ul data-v="3">
        <li class="i">Account data</li>
        <!-- experiment B -->
        <li class="i" data-n="2">Usage data</li>
      </ul>
      <img height="1" width="1" src="https://t.example/pixel.gif?id=2&amp;ts=17" alt="">
      <img src="https://other-tracker.example/p.png" alt="">
    </main>
  </body>
</html>"""

EXPECTED_AB = "# Privacy Policy\n\nWe collect your data to provide the service.\n\n- Account data\n\n- Usage data"


def test_markup_churn_gives_identical_text() -> None:
    a = extract_html(PAGE_A)
    b = extract_html(PAGE_B)
    assert a.text == EXPECTED_AB
    assert b.text == a.text
    assert a.title == b.title == "Privacy Policy"


def test_text_is_normalised_and_idempotent() -> None:
    text = extract_html(PAGE_B).text
    assert normalise_text(text) == text
    assert "  " not in text.replace("\n  ", "\n")
    assert not any(line != line.rstrip() for line in text.split("\n"))


# --------------------------------------------------------------------------------------------
# HTML: block format
# --------------------------------------------------------------------------------------------


def _body(inner: str) -> str:
    return f"<html><head><title>T</title></head><body>{inner}</body></html>"


def test_headings_paragraphs_and_inline_markup() -> None:
    html = _body(
        "<h2>Who we are</h2><p>Line one<br>line <em>two</em> and <span>three</span>.</p>"
        "<h3>Details</h3><div>Plain <b>div</b> text</div>"
        '<div role="heading" aria-level="4">Your rights</div>'
    )
    assert extract_html(html).text == (
        "## Who we are\n\nLine one line two and three.\n\n### Details\n\nPlain div text"
        "\n\n#### Your rights"
    )


def test_nested_lists_indent_two_spaces_per_level() -> None:
    html = _body("<ul><li>Top<ul><li>Sub<ol><li>Subsub</li></ol></li></ul></li><li>Next</li></ul>")
    assert extract_html(html).text == "- Top\n\n  - Sub\n\n    - Subsub\n\n- Next"


def test_list_item_with_paragraphs_keeps_marker_on_first_block() -> None:
    html = _body("<ul><li><p>Lead-in:</p><p>More detail.</p></li></ul>")
    assert extract_html(html).text == "- Lead-in:\n\nMore detail."


def test_table_rows_become_one_block_each() -> None:
    html = _body(
        "<table><caption>Data we hold</caption><tr><th>Data</th><th>Purpose</th></tr>"
        "<tr><td>Email</td><td>Login<br>Support</td></tr><tr><td></td><td>Ads</td></tr></table>"
    )
    assert (
        extract_html(html).text == "Data we hold\n\nData | Purpose\n\nEmail | Login Support\n\nAds"
    )


def test_link_targets_are_dropped() -> None:
    a = extract_html(_body('<p>See <a href="https://x.example/?sig=1">our page</a>.</p>'))
    b = extract_html(_body('<p>See <a href="https://x.example/?sig=2">our page</a>.</p>'))
    assert a.text == b.text == "See our page."


# --------------------------------------------------------------------------------------------
# HTML: selection
# --------------------------------------------------------------------------------------------

SELECT_PAGE = _body(
    '<div id="a"><p>Alpha</p><div class="ad">Buy now</div><div id="inner"><p>Inner</p></div></div>'
    '<div id="b"><p>Beta</p></div><div id="c"><p>Gamma</p></div>'
)


def test_select_and_remove() -> None:
    ex = extract_html(SELECT_PAGE, select=["#a"], remove=[".ad"])
    assert ex.text == "Alpha\n\nInner"
    assert ex.matched_selector is True


def test_several_selectors_in_document_order_without_duplicates() -> None:
    ex = extract_html(SELECT_PAGE, select=["#c", "#a", "#inner"])
    assert ex.text == "Alpha\n\nBuy now\n\nInner\n\nGamma"


def test_empty_selection() -> None:
    ex = extract_html(SELECT_PAGE, select=["#nothing-here"])
    assert ex.matched_selector is False
    assert ex.text == ""
    assert suspect_reason(ex, status=200, previous_text="x" * 5000) == "empty selection"


@pytest.mark.parametrize("kw", ["select", "remove"])
def test_invalid_selector_raises_extract_error_naming_it(kw: str) -> None:
    with pytest.raises(ExtractError, match=r"div\[\["):
        extract_html(SELECT_PAGE, **{kw: ["p", "div[["]})


def test_no_select_uses_main() -> None:
    html = _body("<header><p>Site name</p></header><main><p>Policy</p></main><p>Outside</p>")
    assert extract_html(html).text == "Policy"


def test_no_select_uses_single_article_else_body_without_chrome() -> None:
    one = _body("<div><p>Promo</p></div><article><p>Policy</p></article>")
    assert extract_html(one).text == "Policy"
    two = _body(
        "<header><p>Site name</p></header><article><p>One</p></article>"
        "<article><p>Two</p></article><footer><p>© Example</p></footer>"
    )
    assert extract_html(two).text == "One\n\nTwo"


def test_nav_cookie_banners_and_hidden_elements_are_dropped() -> None:
    html = _body(
        '<div id="onetrust-banner-sdk"><p>We use cookies.</p><button>Accept</button></div>'
        '<div class="cookie-consent-popup"><p>Accept all cookies?</p></div>'
        '<div role="dialog" aria-label="Privacy choices"><p>This site uses cookies.</p></div>'
        '<div class="site-consent"><p>Choose</p><button>OK</button></div>'
        '<div role="navigation"><a href="/">Home</a></div>'
        "<main><nav><a href='/a'>Jump</a></nav>"
        '<span aria-hidden="true">›</span><p hidden>Old text</p>'
        '<section id="cookies"><h2>Cookies</h2><p>We use cookies to keep you signed in.</p></section>'
        '<p class="consent-text">You can withdraw consent at any time.</p>'
        "</main>"
    )
    assert extract_html(html).text == (
        "## Cookies\n\nWe use cookies to keep you signed in.\n\n"
        "You can withdraw consent at any time."
    )


def test_aria_hidden_page_behind_a_modal_is_kept() -> None:
    # Facebook hides the whole page with aria-hidden while its cookie dialog is open.
    policy = "<p>" + "Policy sentence. " * 200 + "</p>"
    html = _body(f'<div aria-hidden="true"><h1>Terms</h1>{policy}</div>')
    ex = extract_html(html)
    assert ex.text.startswith("# Terms\n\nPolicy sentence.")


def test_collapsed_accordion_panels_are_policy_text() -> None:
    html = _body(
        '<main><button aria-expanded="false" aria-controls="p1"><h3>Do you train on my data?</h3>'
        '<svg><path d="M1"/></svg></button>'
        '<div id="p1" aria-hidden="true" style="height:0">No, never by default.</div>'
        '<button type="button">Share this page</button></main>'
    )
    assert extract_html(html).text == "### Do you train on my data?\n\nNo, never by default."


def test_title_prefers_first_h1_then_title_tag() -> None:
    assert extract_html(_body("<h2>Sub</h2><h1>Main title</h1>")).title == "Main title"
    assert extract_html(_body("<p>no heading</p>")).title == "T"


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------


def test_nfc_nbsp_zero_width_and_soft_hyphen() -> None:
    decomposed = "Caf" + "e\u0301\u00a0pri\u00advacy\u200b  policy "
    assert normalise_text(decomposed) == "Café privacy policy"
    a = extract_html(_body("<p>Caf" + "e\u0301 &nbsp;menu</p>"))
    b = extract_html(_body("<p>Café menu</p>"))
    assert a.text == b.text == "Café menu"


def test_quotes_are_kept_and_blank_lines_collapsed() -> None:
    assert normalise_text("\n\n“We” don't\t sell.\n\n\n\n  - item  \n\n") == (
        "“We” don't sell.\n\n  - item"
    )


# --------------------------------------------------------------------------------------------
# Effective dates
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Effective: September 29, 2023", dt.date(2023, 9, 29)),
        ("Last updated: 14 March 2024", dt.date(2024, 3, 14)),
        ("Effective date: 2024-03-14", dt.date(2024, 3, 14)),
        ("Updated: November 4, 2024", dt.date(2024, 11, 4)),
        ("Effective 2 April 2026 | Archived versions", dt.date(2026, 4, 2)),
        ("Last updated: 03/04/2024", dt.date(2024, 3, 4)),  # US order in English
        ("Last updated: 31/12/2023", dt.date(2023, 12, 31)),  # day first when it must be
        ("Dernière mise à jour : 12 mars 2024", dt.date(2024, 3, 12)),
        ("Mis à jour le 03/04/2024", dt.date(2024, 4, 3)),
        ("En vigueur à compter du 1er février 2024", dt.date(2024, 2, 1)),
        ("Stand: 01.02.2024", dt.date(2024, 2, 1)),
        ("Gültig ab 1. Januar 2025", dt.date(2025, 1, 1)),
        ("Fecha de entrada en vigor: 5 de mayo de 2024", dt.date(2024, 5, 5)),
        ("Ultimo aggiornamento: 3 giugno 2024", dt.date(2024, 6, 3)),
        ("Laatst bijgewerkt: 7 oktober 2024", dt.date(2024, 10, 7)),
    ],
)
def test_effective_date(line: str, expected: dt.date) -> None:
    md = f"# Policy\n\n{line}\n\nWe collect data."
    assert extract_markdown(md).effective_date == expected
    html = _body(f"<h1>Policy</h1><p><em>{line}</em></p><p>We collect data.</p>")
    assert extract_html(html).effective_date == expected


@pytest.mark.parametrize(
    "text",
    [
        "We update this policy from time to time.",
        "Last updated: February 30, 2024",  # not a date
        "We were founded on 12 March 2001.",  # a date, but not the policy's
        "Intro. " * 500 + "Last updated: 14 March 2024",  # too far down
    ],
)
def test_no_effective_date(text: str) -> None:
    assert extract_markdown(text).effective_date is None


# --------------------------------------------------------------------------------------------
# Markdown (Open Terms Archive versions)
# --------------------------------------------------------------------------------------------


def test_markdown_headings() -> None:
    md = "Title\n=====\n\nSub section\n-----------\n\n### Three ###\n\n#NotAHeading"
    assert extract_markdown(md).text == "# Title\n\n## Sub section\n\n### Three\n\n#NotAHeading"
    assert extract_markdown(md).title == "Title"


def test_markdown_links_images_escapes_emphasis() -> None:
    md = (
        'See [our **help** page](https://x.example/a_(b) "Help") and '
        "![pixel](data:image/gif;base64,R0lG==) [![logo](l.png)](https://x.example).\n\n"
        "1\\. Data controller\n\n"
        "**Account Information:** _we_ keep my_snake_case value \\*literally\\*.\n\n"
        "Line one  \nline two<br>three <span>four</span> <help@example.org>"
    )
    assert extract_markdown(md).text == (
        "See our help page and .\n\n"
        "1. Data controller\n\n"
        "Account Information: we keep my_snake_case value *literally*.\n\n"
        "Line one line two three four help@example.org"
    )


def test_markdown_lists_rules_and_separators() -> None:
    md = (
        "Intro\n\n*   First\n    *   Nested\n        1.  Deeper\n*   Second\n"
        "    continued lazily\n\n    Continuation paragraph.\n\n+ Plus\n\n- - -\n\n"
        "After separator\n\n* * *\n\n2) Last"
    )
    assert extract_markdown(md).text == (
        "Intro\n\n- First\n\n  - Nested\n\n    - Deeper\n\n- Second continued lazily\n\n"
        "Continuation paragraph.\n\n- Plus\n\nAfter separator\n\n- Last"
    )


def test_markdown_tables() -> None:
    md = "| Data | Use |\n| --- | :-: |\n| Email <br> Phone | Login |\n| a \\| b | |"
    assert extract_markdown(md).text == "Data | Use\n\nEmail Phone | Login\n\na | b"


def test_markdown_and_html_of_the_same_policy_agree() -> None:
    md = (
        "Privacy Policy\n==============\n\nWe collect [your data](https://x.example) to provide"
        " the **service**.\n\n*   Account data\n*   Usage data\n"
    )
    assert extract_markdown(md).text == EXPECTED_AB


# --------------------------------------------------------------------------------------------
# Suspect fetches
# --------------------------------------------------------------------------------------------

POLICY_PARAGRAPH = (
    "We process personal data to provide the service. You can log in to your account settings "
    "to access, correct or delete your data. If an error occurs in our records, contact us. "
)
LONG_POLICY = "# Privacy Policy\n\n" + "\n\n".join([POLICY_PARAGRAPH] * 40)


def _ex(text: str, title: str | None = None) -> Extracted:
    return Extracted(text=text, title=title)


def test_captcha_page_served_with_200() -> None:
    ex = _ex("# Just a moment...\n\nChecking your browser before accessing example.com.")
    assert suspect_reason(ex, status=200, previous_text=LONG_POLICY) == (
        "looks like a captcha / bot check"
    )


def test_login_wall() -> None:
    ex = _ex("Welcome back\n\nLog in to continue to Example.\n\n- Email\n\n- Password")
    assert suspect_reason(ex, status=200, previous_text=None) == "looks like a login wall"


def test_error_page() -> None:
    ex = _ex("# Page not found\n\nThe page you are looking for does not exist.")
    reason = suspect_reason(ex, status=200, previous_text=LONG_POLICY)
    assert reason == "looks like an error page (page not found)"


def test_error_status_that_reached_extract() -> None:
    assert suspect_reason(_ex(LONG_POLICY), status=503, previous_text=None) == "HTTP status 503"


def test_error_phrase_in_title_of_a_long_page() -> None:
    ex = _ex(LONG_POLICY.replace("# Privacy Policy", "# Access Denied"))
    assert suspect_reason(ex, status=200, previous_text=None) == (
        "looks like an error page (access denied)"
    )
    # the same words as the latest version, under whatever heading: that is the policy
    assert suspect_reason(ex, status=200, previous_text=LONG_POLICY) is None


SHORT_POLICY = """# Privacy notice

We collect the name and e-mail address you type into our contact form, and the message you send us, to answer your question. We keep them for one year.

Our contact form is protected by Google reCAPTCHA, which collects hardware and software information, such as device and application data, and sends it to Google for analysis. The use of reCAPTCHA is subject to the Google Privacy Policy and Terms of Use.

Our website is served through Cloudflare, which processes your IP address to protect the site against attacks and to deliver it quickly. Cloudflare keeps logs for a few days.

If something went wrong with your request, or if you want your data deleted, write to privacy@example.org. You can also complain to your data protection authority."""


def test_short_real_policy_mentioning_recaptcha_and_cloudflare_is_not_suspect() -> None:
    assert 600 < len(SHORT_POLICY) < 3000
    assert (
        suspect_reason(_ex(SHORT_POLICY, "Privacy notice"), status=200, previous_text=None) is None
    )
    edited = SHORT_POLICY.replace("one year", "two years")
    assert suspect_reason(_ex(edited), status=200, previous_text=SHORT_POLICY) is None
    # a vendor name in the heading is not a block page either, nor is the text without heading
    titled = SHORT_POLICY.replace("# Privacy notice", "# reCAPTCHA and Cloudflare notice")
    assert suspect_reason(_ex(titled), status=200, previous_text=None) is None
    headless = SHORT_POLICY.split("\n\n", 1)[1]
    assert suspect_reason(_ex(headless), status=200, previous_text=None) is None


GOOGLE_SORRY = """About this page

Our systems have detected unusual traffic from your computer network. This page checks to see if it's really you sending the requests, and not a robot.

Why did this happen?

This page appears when Google automatically detects requests coming from your computer network which appear to be in violation of the Terms of Service. The block will expire shortly after those requests stop. In the meantime, solving the above CAPTCHA will let you continue to use our services.

This traffic may have been sent by malicious software, a browser plug-in, or a script that sends automated requests. If you share your network connection, ask your administrator for help: a different computer using the same IP address may be responsible.

Sometimes you may be asked to solve the CAPTCHA if you are using advanced terms that robots are known to use, or sending requests very quickly.

IP address: 192.0.2.1"""


@pytest.mark.parametrize(
    ("text", "title"),
    [
        (GOOGLE_SORRY, None),  # no telling title or heading: the page is mostly the message
        (
            "example.org\n\nChecking if the site connection is secure\n\nexample.org needs to "
            "review the security of your connection before proceeding.",
            "example.org",
        ),
        ("Please complete the reCAPTCHA below to continue.\n\nWhy am I seeing this?", None),
        ("# Attention Required! | Cloudflare\n\nSorry, you have been blocked.", None),
    ],
)
def test_real_block_pages_are_still_suspect(text: str, title: str | None) -> None:
    for previous in (None, LONG_POLICY, SHORT_POLICY):
        assert suspect_reason(_ex(text, title), status=200, previous_text=previous) == (
            "looks like a captcha / bot check"
        ), previous


def test_big_shrink() -> None:
    new = LONG_POLICY[: len(LONG_POLICY) * 3 // 10]
    assert suspect_reason(_ex(new), status=200, previous_text=LONG_POLICY) == (
        "shrunk to 30% of the previous version"
    )


def test_too_short_first_version() -> None:
    assert suspect_reason(_ex("Hello world."), status=200, previous_text=None) == (
        "too short (12 chars)"
    )


def test_small_edit_is_not_suspect() -> None:
    edited = LONG_POLICY.replace("provide the service", "provide and improve the service", 3)
    edited = edited.rsplit("\n\n", 5)[0]  # a few paragraphs removed too
    assert suspect_reason(_ex(edited), status=200, previous_text=LONG_POLICY) is None


def test_long_real_policy_mentioning_log_in_and_errors_is_not_suspect() -> None:
    text = LONG_POLICY + "\n\nWe use captcha to stop spam. Sign in to continue using it. 404"
    assert suspect_reason(_ex(text, "Privacy Policy"), status=200, previous_text=None) is None


def test_short_real_page_is_not_suspect_against_similar_previous() -> None:
    text = "# Cookie notice\n\n" + POLICY_PARAGRAPH * 2
    assert suspect_reason(_ex(text), status=200, previous_text=text + " More.") is None


# --------------------------------------------------------------------------------------------
# The real corpus (skipped when ../shared/corpus is absent)
# --------------------------------------------------------------------------------------------


def _snapshot_rows() -> list[dict[str, str]]:
    manifest = CORPUS / "MANIFEST.csv"
    if not (CORPUS / "snapshots").is_dir() or not manifest.is_file():
        return []
    with manifest.open(encoding="utf-8", newline="") as f:
        return [row for row in csv.DictReader(f) if row["kind"] == "snapshot"]


SNAPSHOTS = _snapshot_rows()
needs_corpus = pytest.mark.skipif(not SNAPSHOTS, reason="../shared/corpus/snapshots is absent")


@cache
def _html(path: str) -> Extracted:
    return extract_html((CORPUS / path).read_text(encoding="utf-8"))


@cache
def _md(path: str) -> Extracted:
    return extract_markdown((CORPUS / path).read_text(encoding="utf-8"))


def _headings(text: str) -> set[str]:
    return {line.lstrip("#").strip() for line in text.split("\n") if line.startswith("#")}


def _blocks(text: str) -> set[str]:
    return set(text.split("\n\n"))


@pytest.mark.corpus
@needs_corpus
@pytest.mark.parametrize("row", SNAPSHOTS, ids=[r["path"][10:] for r in SNAPSHOTS])
def test_corpus_snapshot_gives_block_text(row: dict[str, str]) -> None:
    ex = _html(row["path"])
    assert len(ex.text) > 2000
    assert normalise_text(ex.text) == ex.text
    assert "\n\n\n" not in ex.text and "\u00a0" not in ex.text
    # Where OTA's own extraction found headings, ours does too.
    if _headings(_md(row["related_version"]).text):
        assert _headings(ex.text)


@pytest.mark.corpus
@needs_corpus
def test_corpus_most_snapshots_have_list_items() -> None:
    with_items = [r for r in SNAPSHOTS if "\n- " in _html(r["path"]).text]
    assert len(with_items) >= 0.8 * len(SNAPSHOTS)


@pytest.mark.corpus
@needs_corpus
@pytest.mark.parametrize(
    ("path", "heading", "nav_items"),
    [
        (
            "snapshots/chatgpt/privacy-policy/2026-07-25T10-30-09Z--policies-eu-privacy-policy.html",
            "## 2. How we use Personal Data",
            ["Research", "Business", "Foundation (opens in a new window)", "Foundation"],
        ),
        (
            "snapshots/claude-ai/privacy-policy/2026-08-17T22-31-33Z--legal-privacy.html",
            "### Personal data we collect or receive to train our models",
            ["Claude Code Enterprise", "Log in to Claude", "Research", "News"],
        ),
        (
            "snapshots/microsoft-copilot/terms-of-service/2026-08-17T22-33-48Z.html",
            "## DEFINITIONS",
            ["Copilot Labs", "Surface Laptop Ultra", "Manage cookies", "Sitemap"],
        ),
        (
            "snapshots/grok/privacy-policy/2026-07-08T10-32-47Z--legal-privacy-policy.html",
            "## 3. How we may use personal information",
            ["Contact Sales", "Try for free", "Products", "Grok on X"],
        ),
    ],
)
def test_corpus_pages_keep_policy_headings_and_drop_navigation(
    path: str, heading: str, nav_items: list[str]
) -> None:
    if not (CORPUS / path).is_file():
        pytest.skip(f"{path} is absent")
    lines = set(_html(path).text.split("\n"))
    assert heading in lines
    for item in nav_items:
        assert item not in lines, item
        assert "- " + item not in lines, item


@pytest.mark.corpus
@needs_corpus
@pytest.mark.parametrize("row", SNAPSHOTS, ids=[r["path"][10:] for r in SNAPSHOTS])
def test_corpus_html_and_ota_markdown_share_headings(row: dict[str, str]) -> None:
    html_h = _headings(_html(row["path"]).text)
    md_h = _headings(_md(row["related_version"]).text)
    if not html_h or not md_h:
        pytest.skip("no headings on one side (the page uses styled divs)")
    # A version may join several pages and a page may carry more than the version selected,
    # so compare against the smaller set.
    assert len(html_h & md_h) >= 0.75 * min(len(html_h), len(md_h))


@pytest.mark.corpus
@needs_corpus
def test_corpus_html_and_ota_markdown_agree_block_for_block() -> None:
    # Pages whose whole body is the policy: our HTML extraction and OTA's Markdown must give
    # the same blocks (OTA selected the same content with its own selectors).
    rows = [
        r for r in SNAPSHOTS if r["path"].startswith(("snapshots/deepseek/", "snapshots/grok/"))
    ]
    assert rows
    for row in rows:
        html_blocks = _blocks(_html(row["path"]).text)
        md_blocks = _blocks(_md(row["related_version"]).text)
        chars = sum(len(b) for b in html_blocks)
        shared = sum(len(b) for b in html_blocks & md_blocks)
        assert shared >= 0.9 * chars, row["path"]


@pytest.mark.corpus
@needs_corpus
def test_corpus_html_churn_without_policy_change_gives_identical_text() -> None:
    # OTA recorded no new version from these later fetches: the HTML changed, the policy did not.
    paths = [r["path"] for r in SNAPSHOTS if r["path"].startswith("snapshots/perplexity/privacy")]
    paths = [p for p in paths if p.split("/")[-1] < "2026"]
    raw = {(CORPUS / p).read_bytes() for p in paths}
    if len(raw) < 2:
        pytest.skip("the churned Perplexity snapshots are absent")
    assert len({_html(p).text for p in paths}) == 1


def test_markdown_escaped_brackets_are_not_a_link() -> None:
    # Seen in a real TikTok version: an escaped date in brackets followed by a real link.
    text = extract_markdown(
        r"Updated \[19 November 2023\]. Click [here](https://e.org/x) now."
    ).text
    assert text == "Updated [19 November 2023]. Click here now."


def test_a_number_404_in_a_heading_is_not_an_error_page() -> None:
    body = "<main><h1>Platform 404 privacy policy</h1>" + "<p>We collect what you post.</p>" * 30
    extracted = extract_html(body)
    assert suspect_reason(extracted, status=200, previous_text=None) is None
    error = extract_html("<main><h1>Error 404</h1><p>The page you asked for is gone.</p></main>")
    assert suspect_reason(error, status=200, previous_text=None) is not None


def test_markdown_memo_gives_the_same_extraction() -> None:
    # MarkdownMemo normalises block by block: the same text as normalising the joined
    # blocks, spaces, invisible characters, combining marks and empty blocks included.
    import random

    from monitor.extract import MarkdownMemo

    rng = random.Random(3)
    pieces = ["a", "B", " ", "  ", "- ", "\u00a0", "\t", "\u200b", "\u00ad", "e\u0301", "\u0301"]
    pieces += ["\u0327", "#", "\u3000", "\ufeff", "*x*", "[l](u)", "&amp;", "\\*", "|"]
    memo = MarkdownMemo()
    for _ in range(2000):
        lines = []
        for _ in range(rng.randint(1, 8)):
            line = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
            lines.append(rng.choice(["", "# ", "- ", "  - ", "1. "]) + line)
            if rng.random() < 0.4:
                lines.append("")
        md = "\n".join(lines)
        assert extract_markdown(md, memo) == extract_markdown(md), md

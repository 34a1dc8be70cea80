"""The suspect-fetch guard end to end (real HTTP server on 127.0.0.1, real SQLite file): what
is suspect, what is eventually accepted, and what is kept of suspect bodies."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from httpserver import Request, Route, serve

from monitor.config import Config, parse_config
from monitor.pipeline import CheckResult, Pipeline
from monitor.store import Store

HTML = {"Content-Type": "text/html; charset=utf-8"}
PARAGRAPH = (
    "<p>We collect the information you give us when you create an account, such as your "
    "name, your e-mail address and the messages you send, and we keep it while the account "
    "is open. Section {i}.</p>"
)


def policy_page(paragraphs: int = 30, title: str = "Example privacy policy") -> str:
    body = "".join(PARAGRAPH.format(i=i) for i in range(paragraphs))
    return f"<html><head><title>{title}</title></head><body><main><h1>Privacy Policy</h1>{body}</main></body></html>"


def captcha_page(nonce: str = "") -> str:
    return (
        "<html><head><title>Just a moment...</title></head><body><main>"
        f"<h1>Verify you are human</h1><p>Checking your browser. Ray ID {nonce}</p>"
        "</main></body></html>"
    )


def make_config(tmp_path: Path, urls: dict[str, str]) -> Config:
    docs = "".join(
        f"  - platform: {name}\n    url: {url}\n    select: main\n" for name, url in urls.items()
    )
    return parse_config(
        f"database: {tmp_path / 'pm.db'}\nhttp:\n  per_host_delay: 0\n  retries: 0\n"
        f"documents:\n{docs}"
    )


def check(config: Config, store: Store, *names: str) -> list[CheckResult]:
    docs = [d for d in config.documents if not names or d.platform in names]
    return asyncio.run(Pipeline(config, store).check(docs))


def test_suspect_bodies_with_a_rotating_nonce_keep_only_the_latest_three(tmp_path: Path) -> None:
    nonces = itertools.count()

    def rotating(request: Request) -> Route:
        return Route(200, HTML, captcha_page(f"n{next(nonces)}"))

    with serve({"/a": (200, HTML, policy_page()), "/b": (200, HTML, captcha_page())}) as srv:
        config = make_config(tmp_path, {"A": srv.url("/a"), "B": srv.url("/b")})
        with Store(config.database_path) as store:
            assert check(config, store, "A")[0].new_version
            version_blob = store.latest_version("a/privacy-policy").blob_sha256
            # A and B are served the same static block page once: one shared blob
            srv.routes["/a"] = (200, HTML, captcha_page())
            assert [r.outcome.value for r in check(config, store)] == ["suspect", "suspect"]
            shared = store.last_fetch("b/privacy-policy")["body_sha256"]
            assert store.last_fetch("a/privacy-policy")["body_sha256"] == shared
            # then A's block page carries a new nonce at every fetch
            srv.routes["/a"] = rotating
            for _ in range(8):
                assert check(config, store, "A")[0].outcome.value == "suspect"
            suspect_rows = [
                f for f in store.fetches("a/privacy-policy") if f["outcome"] == "suspect"
            ]
            assert len(suspect_rows) == 9  # every fetch is still logged with its hash
            stored = {r["sha256"] for r in store.query("SELECT sha256 FROM blobs")}
            latest_three = {f["body_sha256"] for f in suspect_rows[:3]}
            # the version's body, A's latest three suspect bodies, and the body B still shows
            assert stored == {version_blob, shared} | latest_three
            assert b"Ray ID n7" in store.get_blob(suspect_rows[0]["body_sha256"])


SHORT_POLICY = """<html><head><title>Contact form privacy notice</title></head><body><main>
<h1>Privacy notice</h1>
<p>We collect the name and e-mail address you type into our contact form, and the message you
send us, to answer your question. We keep them for {years}.</p>
<p>Our contact form is protected by Google reCAPTCHA, which collects hardware and software
information, such as device and application data, and sends it to Google for analysis. The use
of reCAPTCHA is subject to the Google Privacy Policy and Terms of Use.</p>
<p>Our website is served through Cloudflare, which processes your IP address to protect the
site against attacks and to deliver it quickly. Cloudflare keeps logs for a few days.</p>
<p>If something went wrong with your request, write to privacy@example.org.</p>
</main></body></html>"""


def test_a_short_real_policy_naming_recaptcha_and_cloudflare_is_stored(tmp_path: Path) -> None:
    page = SHORT_POLICY.format(years="one year")
    with serve({"/notice": (200, HTML, page)}) as srv:
        config = make_config(tmp_path, {"Short": srv.url("/notice")})
        with Store(config.database_path) as store:
            first = check(config, store)[0]
            assert (first.outcome.value, first.version) == ("new_version", 1), first.detail
            srv.routes["/notice"] = (200, HTML, SHORT_POLICY.format(years="two years"))
            assert check(config, store)[0].version == 2
            # a real block page is still suspect, and stores nothing
            srv.routes["/notice"] = (200, HTML, captcha_page("x"))
            blocked = check(config, store)[0]
            assert (blocked.outcome.value, blocked.detail) == (
                "suspect",
                "looks like a captcha / bot check",
            )
            assert len(store.versions("short/privacy-policy")) == 2


def test_a_persistent_shrink_is_accepted_on_the_third_fetch(tmp_path: Path) -> None:
    """suspect.accept_after (3): the same shrunk text on three fetches in a row is a version."""
    with serve({"/p": (200, HTML, policy_page(30))}) as srv:
        config = make_config(tmp_path, {"Shrink": srv.url("/p")})
        with Store(config.database_path) as store:
            assert check(config, store)[0].version == 1
            srv.routes["/p"] = (200, HTML, policy_page(8))  # really shortened to a quarter
            results = [check(config, store)[0] for _ in range(4)]
            versions = store.versions("shrink/privacy-policy")
            accepted = store.fetches("shrink/privacy-policy")[1]
            # the accepted version keeps its body even when the site then serves block pages
            # (a suspect body that is a version's is never pruned)
            srv.routes["/p"] = Route(200, HTML, captcha_page("a"))
            for nonce in "bcde":
                srv.routes["/p"] = Route(200, HTML, captcha_page(nonce))
                check(config, store)
            assert versions[1].blob_sha256 is not None
            assert b"Section 7." in store.get_blob(versions[1].blob_sha256)
    assert [(r.outcome.value, r.version) for r in results] == [
        ("suspect", 1),
        ("suspect", 1),
        ("new_version", 2),
        ("same_body", 2),
    ]
    assert results[0].detail == "shrunk to 27% of the previous version"
    assert accepted["detail"] == (
        "accepted after 3 identical suspect fetches: shrunk to 27% of the previous version"
    )
    assert [v.number for v in versions] == [1, 2]
    assert "Section 7." in versions[1].text and "Section 8." not in versions[1].text


def test_an_interrupted_shrink_starts_counting_again(tmp_path: Path) -> None:
    with serve({"/p": (200, HTML, policy_page(30))}) as srv:
        config = make_config(tmp_path, {"Shrink": srv.url("/p")})
        with Store(config.database_path) as store:
            check(config, store)
            outcomes = []
            for paragraphs in (8, 8, 30, 8, 8):
                srv.routes["/p"] = (200, HTML, policy_page(paragraphs))
                outcomes.append(check(config, store)[0].outcome.value)
    assert outcomes == ["suspect", "suspect", "same_body", "suspect", "suspect"]


def test_a_captcha_is_never_accepted_however_often_it_comes_back(tmp_path: Path) -> None:
    with serve({"/p": (200, HTML, policy_page(30))}) as srv:
        config = make_config(tmp_path, {"Blocked": srv.url("/p")})
        with Store(config.database_path) as store:
            check(config, store)
            srv.routes["/p"] = (200, HTML, captcha_page())  # the very same page every time
            results = [check(config, store)[0] for _ in range(6)]
            assert len(store.versions("blocked/privacy-policy")) == 1
    assert {(r.outcome.value, r.detail) for r in results} == {
        ("suspect", "looks like a captcha / bot check")
    }


def test_a_too_short_first_version_is_accepted_after_accept_after_fetches(tmp_path: Path) -> None:
    """No earlier version to compare with: a text under suspect.min_chars is suspect, and like
    a shrink it is accepted once it comes back identical accept_after times."""
    tiny = "<html><body><main><h1>Privacy</h1><p>We keep no personal data.</p></main></body></html>"
    with serve({"/p": (200, HTML, tiny)}) as srv:
        config = make_config(tmp_path, {"Tiny": srv.url("/p")})
        with Store(config.database_path) as store:
            results = [check(config, store)[0] for _ in range(3)]
    assert [(r.outcome.value, r.version) for r in results] == [
        ("suspect", None),
        ("suspect", None),
        ("new_version", 1),
    ]
    assert results[0].detail == "too short (36 chars)"

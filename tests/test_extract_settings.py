"""Editing a document's `select` / `remove` takes effect at its next check, even when the page
has not changed (the conditional GET and same-body shortcuts reuse the last good fetch only
when it was read with the same extraction settings)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from httpserver import Request, Route, serve

from monitor.config import Config, parse_config
from monitor.pipeline import CheckResult, Pipeline, extraction_key
from monitor.store import Store

PAGE = """<html><head><title>Example privacy policy</title></head><body><main>
<h1>Privacy Policy</h1>
<p>We collect the information you give us when you create an account, such as your name and
e-mail address, and the messages you send to other people.</p>
<p>We use it to provide and secure the service, and keep it while your account is open.</p>
<aside class="promo"><p>Try our premium plan today and save twenty percent on your first year of
membership with the code SAVE20 at checkout.</p></aside>
</main></body></html>"""


def make_config(tmp_path: Path, url: str, extra: str = "") -> Config:
    return parse_config(
        f"database: {tmp_path / 'pm.db'}\nhttp:\n  per_host_delay: 0\n  retries: 0\n"
        f"documents:\n  - platform: Example\n    url: {url}\n    select: main\n{extra}"
    )


def check(config: Config) -> CheckResult:
    with Store(config.database_path) as store:
        (result,) = asyncio.run(Pipeline(config, store).check(config.documents))
    return result


@pytest.mark.parametrize("validators", [True, False], ids=["etag", "no-validators"])
def test_a_changed_remove_takes_effect_on_an_unchanged_page(
    tmp_path: Path, validators: bool
) -> None:
    seen: list[str | None] = []

    def page(request: Request) -> Route:
        seen.append(request.headers.get("If-None-Match"))
        if validators and request.headers.get("If-None-Match") == '"v1"':
            return Route(304, {"ETag": '"v1"'})
        headers = {"Content-Type": "text/html", **({"ETag": '"v1"'} if validators else {})}
        return Route(200, headers, PAGE)

    shortcut = "not_modified" if validators else "same_body"
    with serve({"/privacy": page}) as srv:
        before = make_config(tmp_path, srv.url("/privacy"))
        first = check(before)
        assert (first.outcome.value, first.version) == ("new_version", 1)
        assert check(before).outcome.value == shortcut
        after = make_config(tmp_path, srv.url("/privacy"), "    remove: [.promo]\n")
        edited = check(after)
        again = check(after)
    assert (edited.outcome.value, edited.version) == ("new_version", 2)
    assert again.outcome.value == shortcut  # the shortcuts work again with the new settings
    if validators:
        assert seen == [None, '"v1"', None, '"v1"']
    with Store(tmp_path / "pm.db") as store:
        latest = store.latest_version("example/privacy-policy")
    assert latest is not None and "premium" not in latest.text
    assert "We use it to provide" in latest.text


def test_an_edit_that_does_not_change_the_text_is_unchanged_not_a_version(tmp_path: Path) -> None:
    with serve({"/privacy": Route(200, {"Content-Type": "text/html"}, PAGE)}) as srv:
        assert check(make_config(tmp_path, srv.url("/privacy"))).version == 1
        # a selector for something the page does not have: same text, no new version
        edited = check(make_config(tmp_path, srv.url("/privacy"), "    remove: [.absent]\n"))
    assert (edited.outcome.value, edited.version, edited.new_version) == ("unchanged", 1, False)


def test_the_key_covers_every_extraction_setting() -> None:
    base = extraction_key(("main",), (), "http")
    assert base == extraction_key(("main",), (), "http")
    others = {
        extraction_key(("article",), (), "http"),
        extraction_key(("main",), ("nav",), "http"),
        extraction_key(("main",), (), "browser"),
        extraction_key(("main", "nav"), (), "http"),
        extraction_key(("main nav",), (), "http"),
    }
    assert base not in others and len(others) == 5

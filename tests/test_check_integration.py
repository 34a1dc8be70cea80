"""`check` end to end against a real HTTP server on 127.0.0.1 serving successive versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from httpserver import Route, serve

from monitor.cli import cli
from monitor.store import Store

POLICY = """<!doctype html>
<html><head><meta charset="utf-8"><title>Example privacy policy</title>{head}</head>
<body{body_attrs}>
<nav><a href="/">Home</a> <a href="/login">Log in</a></nav>
<main id="policy" {main_attrs}>
  <h1>Example Privacy Policy</h1>
  <h2>What we collect</h2>
  <p>We collect the information you give us when you create an account, such as your name and e-mail address.{extra}</p>
  <ul><li>Profile information you choose to add.</li><li>Messages you send to other people.</li></ul>
  <h2>How we use it</h2>
  <p>We use information to provide and secure the service, to prevent fraud and abuse, and to answer your questions.</p>
  <p>We keep information for as long as your account is open and delete it within ninety days after you close it.</p>
</main>
{tail}
</body></html>"""


def page(
    *,
    head: str = "",
    body_attrs: str = "",
    main_attrs: str = 'class="policy"',
    extra: str = "",
    tail: str = "",
) -> Route:
    html = POLICY.format(
        head=head, body_attrs=body_attrs, main_attrs=main_attrs, extra=extra, tail=tail
    )
    return Route(200, {"Content-Type": "text/html; charset=utf-8"}, html)


CAPTCHA = Route(
    200,
    {"Content-Type": "text/html"},
    "<html><head><title>Just a moment...</title></head><body><main><h1>Verify you are human</h1>"
    "<p>Please complete the captcha to continue.</p></main></body></html>",
)


def write_config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""database: pm.db
http:
  per_host_delay: 0
  retries: 0
documents:
  - platform: Example
    doc_type: privacy-policy
    url: {url}
    select: main
"""
    )
    return config


def check(config: Path) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["--config", str(config), "check", "--json"])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.output)
    (doc,) = summary["documents"]
    return doc


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with serve({"/privacy": page()}) as srv:
        yield srv


def test_versions_only_change_when_the_text_does(server: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, server.url("/privacy"))

    first = check(config)
    assert (first["outcome"], first["new_version"], first["version"]) == ("new_version", True, 1)

    again = check(config)
    assert again["outcome"] in {"same_body", "not_modified"}
    assert again["new_version"] is False

    # Markup churn only: attribute order, whitespace, a rotating nonce, an inline script and a
    # tracking pixel. The text is the same, so there is no new version.
    server.routes["/privacy"] = page(
        head='<script nonce="r4nd0m">var t = Date.now();</script><style>p{margin:0}</style>',
        body_attrs=' data-nonce="9f8e7d"',
        main_attrs='data-x="1"   class="policy"  ',
        tail='<img src="https://tracker.example/p.gif?id=123" width="1" height="1">',
    )
    churn = check(config)
    assert churn["outcome"] == "unchanged"
    assert churn["new_version"] is False

    sentence = "We never sell your information to data brokers."
    server.routes["/privacy"] = page(extra=" " + sentence)
    changed = check(config)
    assert (changed["outcome"], changed["new_version"], changed["version"]) == (
        "new_version",
        True,
        2,
    )

    result = CliRunner().invoke(
        cli, ["--config", str(config), "diff", "example/privacy-policy", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    diff = json.loads(result.output)
    assert diff["summary"]["added"] == 1
    assert diff["summary"]["removed"] == 0
    assert diff["summary"]["modified"] == 0
    (added,) = [c for c in diff["changes"] if c["kind"] != "equal"]
    assert added["kind"] == "added"
    assert added["new_text"].strip() == sentence

    with Store(tmp_path / "pm.db") as store:
        assert [v.number for v in store.versions("example/privacy-policy")] == [1, 2]
        outcomes = [f["outcome"] for f in reversed(store.fetches("example/privacy-policy"))]
    assert outcomes[0] == "new_version" and outcomes[-1] == "new_version"
    assert len(outcomes) == 4


def test_captcha_served_with_200_is_suspect_and_stores_nothing(server: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, server.url("/privacy"))
    assert check(config)["version"] == 1
    server.routes["/privacy"] = CAPTCHA
    suspect = check(config)
    assert suspect["outcome"] == "suspect"
    assert suspect["new_version"] is False
    assert "captcha" in suspect["detail"].lower() or "bot" in suspect["detail"].lower()
    with Store(tmp_path / "pm.db") as store:
        assert len(store.versions("example/privacy-policy")) == 1


def test_a_failed_fetch_is_an_outcome_not_a_version(server: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, server.url("/privacy"))
    check(config)
    server.routes["/privacy"] = Route(500, {}, "oops")
    failed = check(config)
    assert failed["outcome"] == "http_error"
    assert failed["version"] == 1
    with Store(tmp_path / "pm.db") as store:
        assert len(store.versions("example/privacy-policy")) == 1
        assert store.last_fetch("example/privacy-policy")["status"] == 500


def test_history_lists_versions(server: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, server.url("/privacy"))
    check(config)
    server.routes["/privacy"] = page(extra=" Added later.")
    check(config)
    result = CliRunner().invoke(
        cli, ["--config", str(config), "history", "example/privacy-policy", "--json"]
    )
    assert result.exit_code == 0, result.output
    history = json.loads(result.output)
    assert [v["number"] for v in history["versions"]] == [1, 2]
    assert history["platform"] == "Example"
    assert all(len(v["sha256"]) == 64 for v in history["versions"])


def test_unknown_document_is_an_error_for_people(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/privacy")
    result = CliRunner().invoke(cli, ["--config", str(config), "history", "nope/privacy-policy"])
    assert result.exit_code == 2
    assert "no document 'nope/privacy-policy'" in result.output


def test_sharded_pass_checks_every_document_once_and_keeps_hosts_together(tmp_path: Path) -> None:
    from monitor.config import load_config
    from monitor.pipeline import Pipeline, shard_by_host

    with serve({f"/p{i}": page(extra=f" Document {i}.") for i in range(6)}) as srv:
        # Two hosts: 127.0.0.1 and localhost resolve to the same server.
        urls = [srv.url(f"/p{i}") for i in range(3)]
        urls += [srv.url(f"/p{i}").replace("127.0.0.1", "localhost") for i in range(3, 6)]
        docs = "\n".join(
            f"  - {{platform: Site{i}, url: '{u}', select: main}}" for i, u in enumerate(urls)
        )
        config_path = tmp_path / "config.yaml"
        config_path.write_text(
            f"database: pm.db\nworkers: 2\nsharding_from: 1\nhttp: {{per_host_delay: 0, retries: 0}}\ndocuments:\n{docs}\n"
        )
        config = load_config(config_path)
        shards = shard_by_host(config.documents, 2)
        assert len(shards) == 2
        assert {len({d.url.split("/")[2] for d in shard}) for shard in shards} == {1}
        with Store(config.database_path) as store:
            seen: list[str] = []
            results = Pipeline(config, store).run_pass(
                config.documents, on_result=lambda r: seen.append(r.doc_id)
            )
            assert [r.doc_id for r in results] == [d.doc_id for d in config.documents]
            assert sorted(seen) == sorted(d.doc_id for d in config.documents)
            assert all(r.outcome.value == "new_version" for r in results)
            assert store.query("SELECT count(*) AS n FROM versions")[0]["n"] == 6
        assert srv.hits["/p0"] == 1


def test_reordered_attributes_and_whitespace_inside_text_are_no_change(
    server: Any, tmp_path: Path
) -> None:
    config = write_config(tmp_path, server.url("/privacy"))
    html = POLICY.format(
        head="",
        body_attrs=' lang="en" dir="ltr"',
        main_attrs='class="policy" data-v="1"',
        extra="",
        tail="",
    )
    server.routes["/privacy"] = Route(200, {"Content-Type": "text/html; charset=utf-8"}, html)
    assert check(config)["version"] == 1
    churned = (
        html.replace(' lang="en" dir="ltr"', ' dir="ltr"   lang="en"')
        .replace(
            '<main id="policy" class="policy" data-v="1">',
            '<main data-v="1"\n  class="policy" id="policy">',
        )
        # the same words, wrapped, indented and spaced differently inside the text
        .replace(
            "such as your name and e-mail address",
            "such\n      as  your name\tand\n e-mail   address",
        )
        .replace("<li>Profile information", "<li>\n    Profile   information")
        .replace("to answer your questions.</p>", "to answer\n  your questions.\n  </p>")
    )
    assert churned.count("\n") > html.count("\n") and churned != html
    server.routes["/privacy"] = Route(200, {"Content-Type": "text/html; charset=utf-8"}, churned)
    again = check(config)
    assert (again["outcome"], again["new_version"], again["version"]) == ("unchanged", False, 1)


def test_check_json_says_when_a_rate_limited_site_asked_us_back(tmp_path: Path) -> None:
    limited = Route(429, {"Retry-After": "3600", "Content-Type": "text/plain"}, "slow down")
    with serve({"/privacy": limited}) as srv:
        doc = check(write_config(tmp_path, srv.url("/privacy")))
    assert doc["outcome"] == "http_error" and doc["new_version"] is False
    assert doc["retry_after"] == 3600
    ok = tmp_path / "ok"
    ok.mkdir()
    with serve({"/privacy": page()}) as srv:
        assert check(write_config(ok, srv.url("/privacy")))["retry_after"] is None

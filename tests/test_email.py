"""E-mail composition: structure, headers safe from policy text, inert HTML, links."""

from __future__ import annotations

import datetime as dt
import email
import itertools
import json
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from monitor.config import SmtpSettings, parse_config, slug
from monitor.notify import (
    add_subscriber,
    enqueue_alert,
    enqueue_health,
    render_message,
)
from monitor.store import Store, iso

SENDER = "Policy Monitor <alerts@example.org>"
BASE = "https://watch.example.org/reports/"
_keys = itertools.count()

CLAUSE = "We use your posts to train our artificial intelligence models."
HOSTILE = 'We use <script>alert(1)</script> your posts "><img src=x onerror=alert(2)> to train AI.'
INJECT = "\r\nBcc: evil@example.com"


def add_alert(
    store: Store,
    *,
    platform: str = "X",
    doc_type: str = "privacy-policy",
    severity: str = "high",
    type_: str = "ai_training_added",
    summary: str = "A clause now says posts train AI models, with no opt-in.",
    unit_text: str = CLAUSE,
    evidence: dict[str, Any] | None = None,
) -> int:
    doc_id = f"{slug(platform) or 'p'}/{doc_type}"
    store.ensure_document(doc_id, platform, doc_type, "https://example.org/privacy")
    version = store.latest_version(doc_id) or store.add_version(
        doc_id, text="v1", seen_at=dt.datetime.now(dt.UTC), source="fetch"
    )
    return store.insert(
        "alerts",
        {
            "document_id": doc_id,
            "type": type_,
            "severity": severity,
            "version_id": version.id,
            "created_at": iso(dt.datetime.now(dt.UTC)),
            "clause_key": f"k{next(_keys)}",
            "unit_text": unit_text,
            "summary": summary,
            "evidence": json.dumps(evidence if evidence is not None else {"consent": "none"}),
        },
    )


def rendered(store: Store, delivery_id: int) -> bytes:
    """The bytes that go on the wire for one outbox row."""
    row = store.query_one("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
    assert row is not None
    return render_message(row, SENDER).as_bytes()


def wire(store: Store, delivery_id: int) -> EmailMessage:
    """The message as a receiving server parses it."""
    parsed = email.message_from_bytes(rendered(store, delivery_id), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def raw_headers(msg: EmailMessage) -> str:
    return msg.as_bytes(policy=policy.SMTP).split(b"\r\n\r\n", 1)[0].decode("ascii")


def parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def one_alert_mail(store: Store, **alert: Any) -> EmailMessage:
    add_subscriber(store, "reader@example.org", min_severity="info")
    (delivery,) = enqueue_alert(store, add_alert(store, **alert), base_url=BASE)
    return wire(store, delivery)


def test_multipart_alternative_text_first_then_html(store: Store) -> None:
    msg = one_alert_mail(store)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_envelope_headers(store: Store) -> None:
    add_subscriber(store, "reader@example.org")
    (delivery,) = enqueue_alert(store, add_alert(store), base_url=BASE)
    row = store.query_one("SELECT message_id FROM deliveries WHERE id = ?", (delivery,))
    msg = wire(store, delivery)
    assert msg["From"] == SENDER
    assert msg["To"] == "reader@example.org"
    assert msg["Message-ID"] == row["message_id"]  # type: ignore[index]
    assert msg["Date"].datetime.tzinfo is not None
    assert msg["Subject"] == "[high] X privacy policy: AI training added without opt-in"


def _smtp(**kw: Any) -> SmtpSettings:
    return SmtpSettings.model_validate({"sender": SENDER} | kw)


def test_list_unsubscribe_is_a_mailto_even_with_an_https_base_url(store: Store) -> None:
    # Nothing serves base_url + "/unsubscribe": offering it (and One-Click) would send
    # subscribers, and their mail providers' one-click POSTs, to a page that does not exist.
    sub = add_subscriber(store, "reader@example.org")
    (delivery,) = enqueue_alert(store, add_alert(store), base_url=BASE, smtp=_smtp())
    msg = wire(store, delivery)
    assert str(msg["List-Unsubscribe"]) == (
        f"<mailto:alerts@example.org?subject=unsubscribe%20{sub.token}>"
    )
    assert msg["List-Unsubscribe-Post"] is None
    text, html = parts(msg)
    assert "http" not in text.split("To unsubscribe", 1)[1]
    assert f'"unsubscribe {sub.token}" to alerts@example.org.' in " ".join(text.split())
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find("a", href=f"mailto:alerts@example.org?subject=unsubscribe%20{sub.token}")


def test_list_unsubscribe_goes_to_the_configured_address(store: Store) -> None:
    sub = add_subscriber(store, "reader@example.org")
    smtp = _smtp(unsubscribe="leave@example.org")
    (delivery,) = enqueue_alert(store, add_alert(store), smtp=smtp)
    msg = wire(store, delivery)
    assert str(msg["List-Unsubscribe"]) == (
        f"<mailto:leave@example.org?subject=unsubscribe%20{sub.token}>"
    )
    assert "to leave@example.org." in " ".join(parts(msg)[0].split())


def test_list_unsubscribe_offers_one_click_only_for_an_endpoint_the_config_names(
    store: Store,
) -> None:
    sub = add_subscriber(store, "reader@example.org")
    smtp = _smtp(unsubscribe_url="https://watch.example.org/leave?t={token}")
    (delivery,) = enqueue_alert(store, add_alert(store), base_url=BASE, smtp=smtp)
    msg = wire(store, delivery)
    value = str(msg["List-Unsubscribe"])
    assert f"<mailto:alerts@example.org?subject=unsubscribe%20{sub.token}>" in value
    assert f"<https://watch.example.org/leave?t={sub.token}>" in value
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    head = rendered(store, delivery).split(b"\r\n\r\n")[0]
    assert b"=?" not in head  # URIs as written, not RFC 2047 encoded words
    assert f"https://watch.example.org/leave?t={sub.token}" in parts(msg)[0]


def test_a_plain_http_endpoint_gets_no_one_click(store: Store) -> None:
    add_subscriber(store, "reader@example.org")
    smtp = _smtp(unsubscribe_url="http://watch.example.org/leave/{token}")
    (delivery,) = enqueue_alert(store, add_alert(store), smtp=smtp)
    msg = wire(store, delivery)
    assert "<http://watch.example.org/leave/" in str(msg["List-Unsubscribe"])
    assert msg["List-Unsubscribe-Post"] is None  # RFC 8058 needs an HTTPS URI


def test_rows_queued_by_earlier_versions_lose_their_dead_url(store: Store) -> None:
    sub = add_subscriber(store, "reader@example.org")
    (delivery,) = enqueue_alert(store, add_alert(store))
    legacy = {"_unsubscribe_token": sub.token, "_unsubscribe_url": BASE + "unsubscribe?x"}
    store.conn.execute("UPDATE deliveries SET headers = ?", (json.dumps(legacy),))
    msg = wire(store, delivery)
    assert "http" not in str(msg["List-Unsubscribe"])
    assert msg["List-Unsubscribe-Post"] is None
    row = store.query_one("SELECT * FROM deliveries WHERE id = ?", (delivery,))
    assert row is not None
    sent = render_message(row, SENDER, unsubscribe_to="leave@example.org")
    assert str(sent["List-Unsubscribe"]).startswith("<mailto:leave@example.org?subject=")


@pytest.mark.parametrize(
    ("value", "problem"),
    [("https://x.example/leave", "{token}"), ("javascript:alert(1){token}", "not an http")],
)
def test_unsubscribe_url_must_be_a_web_url_with_the_token(value: str, problem: str) -> None:
    from monitor.errors import ConfigError

    with pytest.raises(ConfigError, match=problem):
        parse_config(f"smtp:\n  unsubscribe_url: '{value}'\n")


def test_body_says_what_changed_quotes_clause_and_links(store: Store) -> None:
    msg = one_alert_mail(store)
    text, html = parts(msg)
    alert_id = store.query_one("SELECT max(id) AS i FROM alerts")["i"]  # type: ignore[index]
    page = f"https://watch.example.org/reports/alerts/{alert_id}.html"
    assert "A clause now says posts train AI models, with no opt-in." in text
    assert "> We use your posts to train our artificial intelligence models." in text
    assert "Consent: none" in text
    assert page in text
    assert "unsubscribe" in text.lower()
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find("a", href=page) is not None
    assert CLAUSE in soup.get_text()


def test_without_base_url_the_mail_names_the_page_and_links_nowhere(store: Store) -> None:
    # A file:// URL would point into the monitor's own disk, not the subscriber's.
    add_subscriber(store, "reader@example.org")
    alert_id = add_alert(store)
    (delivery,) = enqueue_alert(store, alert_id)
    text, html = parts(wire(store, delivery))
    assert "file:" not in text and "file:" not in html
    assert "Full alert" not in text
    assert f"Alert page: alerts/{alert_id}.html" in text
    soup = BeautifulSoup(html, "html.parser")
    assert not [a for a in soup.find_all("a") if "alerts/" in a.get("href", "")]
    assert f"alerts/{alert_id}.html" in soup.get_text()


@pytest.mark.parametrize("type_", ["ai_training_removed", "negation_removed"])
def test_removal_mails_do_not_say_opt_in_wording_was_missing(store: Store, type_: str) -> None:
    evidence = {"consent": None, "opt_in_looked_for": ["with your consent"], "opt_in_found": False}
    msg = one_alert_mail(store, type_=type_, severity="low", evidence=evidence)
    text, html = parts(msg)
    assert "looked for" not in text and "looked for" not in html
    added = wire(store, enqueue_alert(store, add_alert(store, evidence=evidence))[0])
    assert "Opt-in wording looked for and not found: with your consent" in parts(added)[0]


def test_html_has_inline_styles_and_no_style_block(store: Store) -> None:
    _, html = parts(one_alert_mail(store))
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find("style") is None
    assert soup.find("link") is None
    styled = soup.find_all(style=True)
    assert len(styled) >= 5
    assert "background" in soup.find("blockquote")["style"]  # type: ignore[index]


def test_matched_terms_are_highlighted(store: Store) -> None:
    start = CLAUSE.index("train")
    evidence = {
        "findings": [
            {
                "unit_text": CLAUSE,
                "consent": "opt_out",
                "ai_training": True,
                "spans": [{"start": start, "end": start + 5, "role": "purpose", "text": "train"}],
                "consent_cues": ["you can object"],
            }
        ]
    }
    text, html = parts(one_alert_mail(store, evidence=evidence, severity="medium"))
    hit = BeautifulSoup(html, "html.parser").find("blockquote").find("span")  # type: ignore[union-attr]
    assert hit is not None and hit.get_text() == "train"
    assert "background" in hit["style"]
    assert "Consent: opt-out" in text
    assert "you can object" in text


def test_hostile_policy_text_is_inert_in_html_and_verbatim_in_text(store: Store) -> None:
    msg = one_alert_mail(store, unit_text=HOSTILE, summary="Changed: <script>x()</script>")
    text, html = parts(msg)
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find_all(["script", "img", "iframe"]) == []
    assert not [a for tag in soup.find_all(True) for a in tag.attrs if a.startswith("on")]
    assert "<script>alert(1)</script>" in soup.get_text()
    assert '"><img src=x onerror=alert(2)>' in soup.get_text()
    assert "<script>x()</script>" in soup.get_text()
    # the text part is plain text: no HTML entities
    assert "<script>alert(1)</script>" in text and "&lt;" not in text


def test_policy_text_never_reaches_a_header(store: Store) -> None:
    msg = one_alert_mail(store, summary="New AI clause" + INJECT, unit_text="Train" + INJECT)
    headers = raw_headers(msg)
    assert "evil@example.com" not in headers
    assert "New AI clause" not in headers and "Train" not in headers
    assert msg["Bcc"] is None


def test_crlf_in_platform_name_does_not_create_a_header(store: Store) -> None:
    msg = one_alert_mail(store, platform="X" + INJECT)
    subject = str(msg["Subject"])
    assert "\r" not in subject and "\n" not in subject
    assert msg["Bcc"] is None
    assert not [line for line in raw_headers(msg).split("\r\n") if line.lower().startswith("bcc")]
    assert msg.get_all("To") == ["reader@example.org"]


def test_non_ascii_subject_is_encoded(store: Store) -> None:
    msg = one_alert_mail(store, platform="Mëta Plätförm\u202e")
    headers = raw_headers(msg)
    assert "=?utf-8?" in headers.lower()
    assert str(msg["Subject"]).startswith("[high] Mëta Plätförm privacy policy:")
    assert "\u202e" not in str(msg["Subject"])  # no bidi override to disguise the subject


def test_non_ascii_body_survives(store: Store) -> None:
    clause = "Nous utilisons vos données pour entraîner nos modèles d'IA, sans opt-in."
    text, html = parts(one_alert_mail(store, unit_text=clause))
    assert clause in text
    assert clause in BeautifulSoup(html, "html.parser").get_text()


def test_severity_and_type_phrases_in_subject(store: Store) -> None:
    msg = one_alert_mail(
        store, type_="ai_training_removed", severity="info", doc_type="terms-of-service"
    )
    assert msg["Subject"] == "[info] X terms of service: AI training language removed"


def test_health_mail_is_plain_text_and_once_per_key(store: Store) -> None:
    first = enqueue_health(
        store, "ops@example.org", "x/privacy failing" + INJECT, "Body line", key="k1"
    )
    again = enqueue_health(store, "ops@example.org", "x/privacy failing", "Body line", key="k1")
    other = enqueue_health(store, "ops@example.org", "y/privacy failing", "Body", key="k2")
    assert first is not None and other is not None and again is None
    msg = wire(store, first)
    assert msg.get_content_type() == "text/plain"
    assert msg["Bcc"] is None
    assert str(msg["Subject"]) == "[policy-monitor] health: x/privacy failing Bcc: evil@example.com"
    assert "Body line" in msg.get_content()
    assert msg["List-Unsubscribe"] is None


def test_health_refuses_a_bad_operator_address(store: Store) -> None:
    from monitor.errors import ConfigError

    with pytest.raises(ConfigError):
        enqueue_health(store, "ops@example.org\r\nBcc: evil@example.com", "s", "b", key="k")


def test_alert_from_the_real_pipeline_stages_reads_well(store: Store) -> None:
    """Evidence as monitor.alerts writes it: the clause, its highlighted terms, the consent."""
    from monitor.alerts import record_alerts
    from monitor.analyse import analyse_text

    doc = "chirpy/privacy-policy"
    store.ensure_document(doc, "Chirpy", "privacy-policy", "https://chirpy.example/privacy")
    before = "# Privacy\n\nWe collect your e-mail address to run the service."
    clause = "We use your posts and photos to train our artificial intelligence models."
    prev = prev_analysis = None
    alert_ids: list[int] = []
    for text in (before, f"{before}\n\n{clause}"):
        version = store.add_version(doc, text=text, seen_at=dt.datetime.now(dt.UTC), source="fetch")
        analysis = analyse_text(text)
        store.save_analysis(version.id, analysis)
        alert_ids = record_alerts(store, doc, prev, version, prev_analysis, analysis)
        prev, prev_analysis = version, analysis
    add_subscriber(store, "reader@example.org")
    (alert_id,) = alert_ids
    (delivery,) = enqueue_alert(store, alert_id, base_url=BASE)
    msg = wire(store, delivery)
    text, html = parts(msg)
    assert msg["Subject"] == "[high] Chirpy privacy policy: AI training added without opt-in"
    assert f"> {clause}" in text
    assert "Consent: none" in text
    assert "Opt-in wording looked for and not found:" in text
    assert all(len(line) <= 78 for line in text.splitlines() if "http" not in line)
    quote = BeautifulSoup(html, "html.parser").find("blockquote")
    assert quote is not None and quote.get_text() == clause
    assert "train" in [s.get_text() for s in quote.find_all("span")]


def test_check_warns_once_when_subscribers_would_get_no_link(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from monitor.cli import cli

    def check(base_url: str | None) -> str:
        config = tmp_path / "config.yaml"
        config.write_text(
            "database: pm.db\n"
            + (f"base_url: {base_url}\n" if base_url else "")
            + "http: {retries: 0, timeout: 2, respect_robots: false}\n"
            "documents:\n"
            "  - {platform: A, url: 'http://127.0.0.1:9/a'}\n"
            "  - {platform: B, url: 'http://127.0.0.1:9/b'}\n",
            encoding="utf-8",
        )
        out = CliRunner().invoke(cli, ["--config", str(config), "check"])
        assert out.exit_code == 0, out.output
        return out.stderr

    assert "base_url" not in check(None)  # nobody to e-mail yet
    with Store(tmp_path / "pm.db") as store:
        add_subscriber(store, "reader@example.org")
    assert check(None).count("warning: base_url is not set") == 1
    assert "base_url" not in check(BASE)

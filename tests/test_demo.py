"""`policy-monitor demo`: the newcomer's first run must tell the whole story, offline."""

from __future__ import annotations

import email
import email.policy
import itertools
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from bs4 import BeautifulSoup
from click.testing import CliRunner

from monitor.cli import cli
from monitor.demo import SUBSCRIBER, demo_versions, run_demo
from monitor.store import Store


def test_bundled_history_differs_in_markup_as_well_as_text() -> None:
    versions = demo_versions()
    assert versions[0].step == "no AI training"
    assert len(versions) == 4
    assert len({v.html for v in versions}) == 4
    assert all(a.seen_at < b.seen_at for a, b in itertools.pairwise(versions))


def test_demo_raises_one_alert_and_one_email_for_training_without_opt_in(tmp_path: Path) -> None:
    t0 = time.monotonic()
    result = run_demo(tmp_path / "demo", say=lambda *_: None)
    assert time.monotonic() - t0 < 30

    assert [c.outcome.value for c in result.checks] == ["new_version"] * 4
    with Store(result.database) as store:
        alerts = store.query("SELECT type, severity, version_id FROM alerts")
        versions = store.versions("chirpy/privacy-policy")
    assert [(a["type"], a["severity"]) for a in alerts] == [("ai_training_added", "high")]
    assert alerts[0]["version_id"] == versions[1].id  # raised on the version that added training
    assert [v.ai_training for v in versions] == [False, True, True, True]
    # Each step says what it claims: the opt-out covers the very training disclosed before.
    assert [v.consent for v in versions] == ["n/a", "none", "opt_out", "opt_in"]
    assert [c.consent for c in result.checks] == ["n/a", "none", "opt_out", "opt_in"]

    (mail,) = result.emails
    msg = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    assert msg["To"] == SUBSCRIBER
    assert "Chirpy" in msg["Subject"]
    assert msg["List-Unsubscribe"]

    page = BeautifulSoup(result.pages["alert"].read_text(), "html.parser")
    assert "train" in " ".join(m.get_text() for m in page.find_all("mark"))
    feed = ET.parse(result.pages["feed"]).getroot()
    assert len(feed.findall("{http://www.w3.org/2005/Atom}entry")) == 1


def test_demo_command_prints_where_everything_is(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d")])
    assert out.exit_code == 0, out.output
    for word in ("alerts.atom", "index.html", "mail", "policy-monitor.db"):
        assert word in out.output
    again = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d")])
    assert again.exit_code == 2
    assert "already holds a demo" in again.output

"""The outbox against a real SMTP server on 127.0.0.1 (aiosmtpd): routing, retries, crashes."""

from __future__ import annotations

import datetime as dt
import fcntl
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from smtpserver import SmtpServer, smtp_server
from test_email import CLAUSE, INJECT, add_alert

from monitor.config import SmtpSettings
from monitor.errors import StoreError
from monitor.notify import (
    PAUSE_ENV,
    DeliveryReport,
    add_subscriber,
    deliver_pending,
    enqueue_alert,
    enqueue_digests,
    mark_unknown_sent,
    outbox_counts,
    resend_unknown,
    retry_failed,
)
from monitor.store import Store, iso

REPO = Path(__file__).resolve().parents[1]
SENDER = "alerts@example.org"


@pytest.fixture
def server() -> SmtpServer:
    with smtp_server() as srv:
        yield srv


def settings(srv: SmtpServer, **kw: object) -> SmtpSettings:
    values: dict[str, object] = {
        "host": srv.host,
        "port": srv.port,
        "sender": SENDER,
        "timeout": 5,
        "backoff": 60,
    }
    return SmtpSettings.model_validate(values | kw)


def no_sleep(seconds: float) -> None:
    pass


def deliver(store: Store, smtp: SmtpSettings, now: dt.datetime | None = None) -> DeliveryReport:
    return deliver_pending(store, smtp, now=now, sleep=no_sleep)


def statuses(store: Store) -> list[str]:
    return [r["status"] for r in store.query("SELECT status FROM deliveries ORDER BY id")]


def received(srv: SmtpServer) -> dict[str, set[str]]:
    """Subject -> recipients, over everything the server got."""
    out: dict[str, set[str]] = {}
    for m in srv.messages:
        out.setdefault(str(m.message["Subject"]), set()).update(m.rcpt_tos)
    return out


def test_right_subscribers_get_exactly_one_message_per_alert(
    store: Store, server: SmtpServer
) -> None:
    add_subscriber(store, "everything@example.org", min_severity="info")
    add_subscriber(store, "x-fan@example.org", platforms=["x"])
    add_subscriber(store, "meta-fan@example.org", platforms=["Meta"])
    add_subscriber(store, "high-only@example.org", min_severity="high")
    add_subscriber(store, "daily@example.org", min_severity="info", digest="daily")
    x_high = add_alert(store, platform="X", severity="high")
    meta_medium = add_alert(store, platform="Meta", severity="medium")
    x_info = add_alert(store, platform="X", severity="info", type_="ai_training_removed")
    for alert in (x_high, meta_medium, x_info):
        enqueue_alert(store, alert)

    report = deliver(store, settings(server))

    assert report.sent == 6 and report.deferred == report.failed == 0
    assert server.wait_for(6)
    assert all(len(m.rcpt_tos) == 1 for m in server.messages)
    assert received(server) == {
        "[high] X privacy policy: AI training added without opt-in": {
            "everything@example.org",
            "x-fan@example.org",
            "high-only@example.org",
        },
        "[medium] Meta privacy policy: AI training added without opt-in": {
            "everything@example.org",
            "meta-fan@example.org",
        },
        "[info] X privacy policy: AI training language removed": {"everything@example.org"},
    }
    assert set(server.message_ids().values()) == {1}
    assert statuses(store) == ["sent"] * 6


def test_enqueueing_twice_still_sends_one_per_recipient(store: Store, server: SmtpServer) -> None:
    add_subscriber(store, "a@example.org")
    add_subscriber(store, "b@example.org")
    alert = add_alert(store)
    first = enqueue_alert(store, alert)
    second = enqueue_alert(store, alert)
    deliver(store, settings(server))
    enqueue_alert(store, alert)
    deliver(store, settings(server))
    assert len(first) == 2 and second == []
    assert len(statuses(store)) == 2
    assert sorted(r for m in server.messages for r in m.rcpt_tos) == [
        "a@example.org",
        "b@example.org",
    ]


def test_smtp_down_then_up_delivers_everything_once(store: Store, server: SmtpServer) -> None:
    t0 = dt.datetime.now(dt.UTC)
    for n in range(3):
        add_subscriber(store, f"reader{n}@example.org")
    enqueue_alert(store, add_alert(store), now=t0)
    smtp = settings(server)

    server.stop()
    down = deliver(store, smtp, now=t0)
    rows = store.query("SELECT * FROM deliveries")
    assert (down.sent, down.deferred, down.failed) == (0, 3, 0)
    assert "refused" in (down.server_down or "").lower() and down.waiting == 3
    assert {r["status"] for r in rows} == {"pending"}
    assert {r["attempts"] for r in rows} == {0}  # the server's failure, not the messages'
    assert all("refused" in r["last_error"].lower() for r in rows)
    (state,) = store.query("SELECT * FROM smtp_state")
    assert state["retry_at"] == iso(t0 + dt.timedelta(seconds=60))

    server.start()
    early = deliver(store, smtp, now=t0 + dt.timedelta(seconds=30))  # the outbox backs off
    later = deliver(store, smtp, now=t0 + dt.timedelta(seconds=61))
    again = deliver(store, smtp, now=t0 + dt.timedelta(hours=1))
    assert early.sent == 0 and early.server_down and "next try at" in early.summary()
    assert later.sent == 3 and later.server_down is None and again.sent == 0
    assert server.wait_for(3)
    ids = server.message_ids()
    assert len(ids) == 3 and set(ids.values()) == {1}
    assert statuses(store) == ["sent"] * 3
    assert store.query("SELECT * FROM smtp_state") == []  # the outage is over


def _connects(store: Store) -> int:
    state = store.query_one("SELECT failures FROM smtp_state")
    return int(state["failures"]) if state else 0


def test_an_outage_of_many_hours_loses_no_message(store: Store, server: SmtpServer) -> None:
    # The daemon delivers every minute. With the defaults (backoff 60 s, at most one hour), a
    # ten-hour outage used to spend five attempts per message in 31 minutes and fail them all.
    t0 = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)
    for n in range(4):
        add_subscriber(store, f"reader{n}@example.org")
    enqueue_alert(store, add_alert(store), now=t0)
    smtp = settings(server, backoff=60, max_backoff=3600)
    server.stop()
    tries: list[dt.datetime] = []
    for minute in range(10 * 60):
        now = t0 + dt.timedelta(minutes=minute)
        before = _connects(store)
        report = deliver(store, smtp, now=now)
        assert report.sent == report.failed == 0
        if _connects(store) > before:
            tries.append(now)
    rows = store.query("SELECT * FROM deliveries")
    assert {r["status"] for r in rows} == {"pending"} and {r["attempts"] for r in rows} == {0}
    gaps = [(b - a).total_seconds() / 60 for a, b in itertools.pairwise(tries)]
    assert gaps[:6] == [1, 2, 4, 8, 16, 32]  # the whole run backs off, doubling ...
    assert set(gaps[6:]) == {60}  # ... up to an hour
    assert deliver(store, smtp, now=tries[-1] + dt.timedelta(minutes=30)).server_down

    server.start()
    back = tries[-1] + dt.timedelta(minutes=60)  # the next hourly try
    assert deliver(store, smtp, now=back).sent == 4
    assert server.wait_for(4) and statuses(store) == ["sent"] * 4
    assert set(server.message_ids().values()) == {1}


def test_messages_are_given_up_only_after_give_up_after(store: Store, server: SmtpServer) -> None:
    t0 = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)
    add_subscriber(store, "a@example.org")
    enqueue_alert(store, add_alert(store), now=t0)
    smtp = settings(server, backoff=60, max_backoff=3600, give_up_after="3d")
    server.stop()
    now = t0
    while now < t0 + dt.timedelta(days=3, hours=2):
        deliver(store, smtp, now=now)
        if now < t0 + dt.timedelta(days=3):
            assert statuses(store) == ["pending"], now
        now += dt.timedelta(minutes=10)
    (row,) = store.query("SELECT * FROM deliveries")
    assert row["status"] == "failed"
    assert row["last_error"].startswith("undelivered for 3d: ")
    assert "refused" in row["last_error"].lower()

    server.start()
    assert retry_failed(store, now=now) == 1  # the operator's decision: a new clock
    report = deliver_pending(store, smtp, now=now, sleep=no_sleep, force=True)
    assert report.sent == 1 and statuses(store) == ["sent"]
    assert server.wait_for(1)


def test_a_temporary_refusal_of_one_message_backs_off_that_message(
    store: Store, server: SmtpServer
) -> None:
    t0 = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)
    server.reject["full@example.org"] = "452 4.2.2 mailbox full"
    add_subscriber(store, "full@example.org")
    add_subscriber(store, "ok@example.org")
    enqueue_alert(store, add_alert(store), now=t0)
    smtp = settings(server, backoff=10, max_backoff=3600, give_up_after="1d")
    waits = []
    now = t0
    for _ in range(12):
        deliver(store, smtp, now=now)
        row = store.query_one("SELECT * FROM deliveries WHERE recipient = 'full@example.org'")
        assert row is not None
        next_at = dt.datetime.fromisoformat(row["next_attempt_at"].replace("Z", "+00:00"))
        waits.append((next_at - now).total_seconds())
        now = next_at
    assert waits[:4] == [10, 20, 40, 80] and max(waits) == 3600
    assert row["status"] == "pending" and "452" in row["last_error"]
    assert store.query("SELECT * FROM smtp_state") == []  # the server itself is fine
    del server.reject["full@example.org"]
    assert deliver(store, smtp, now=now).sent == 1
    assert sorted(r for m in server.messages for r in m.rcpt_tos) == [
        "full@example.org",
        "ok@example.org",
    ]


def test_a_server_saying_421_backs_off_the_run_not_the_message(
    store: Store, server: SmtpServer
) -> None:
    t0 = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)
    server.reject["a@example.org"] = "421 4.3.2 service shutting down"
    add_subscriber(store, "a@example.org")
    add_subscriber(store, "b@example.org")
    enqueue_alert(store, add_alert(store), now=t0)
    report = deliver(store, settings(server), now=t0)
    assert report.sent == 0 and "421" in (report.server_down or "")
    assert statuses(store) == ["pending", "pending"]
    assert {r["attempts"] for r in store.query("SELECT attempts FROM deliveries")} == {0}
    del server.reject["a@example.org"]
    assert deliver(store, settings(server), now=t0 + dt.timedelta(seconds=61)).sent == 2


def test_permanent_rejection_fails_at_once_and_the_batch_goes_on(
    store: Store, server: SmtpServer
) -> None:
    server.reject["gone@example.org"] = "550 5.1.1 no such user"
    server.reject["full@example.org"] = "452 4.2.2 mailbox full"
    for address in ("gone@example.org", "full@example.org", "ok@example.org"):
        add_subscriber(store, address)
    enqueue_alert(store, add_alert(store))
    report = deliver(store, settings(server))
    rows = {r["recipient"]: r for r in store.query("SELECT * FROM deliveries")}
    assert (report.sent, report.deferred, report.failed) == (1, 1, 1)
    assert rows["gone@example.org"]["status"] == "failed"
    assert "550" in rows["gone@example.org"]["last_error"]
    assert rows["full@example.org"]["status"] == "pending"
    assert "452" in rows["full@example.org"]["last_error"]
    assert rows["ok@example.org"]["status"] == "sent"
    assert [m.rcpt_tos for m in server.messages] == [["ok@example.org"]]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_login_with_password_from_config(store: Store) -> None:
    add_subscriber(store, "a@example.org")
    enqueue_alert(store, add_alert(store))
    with smtp_server(auth=("mailer", "s3cret")) as srv:
        wrong = deliver(store, settings(srv, username="mailer", password="nope"))
        assert wrong.deferred == 1 and "535" in str(
            store.query("SELECT last_error FROM deliveries")
        )
        assert statuses(store) == ["pending"]  # a login failure is the server's, not the row's
        # The operator fixes the password and runs `notify`, which does not wait for the backoff.
        right = deliver_pending(
            store, settings(srv, username="mailer", password="s3cret"), sleep=no_sleep, force=True
        )
        assert right.sent == 1 and srv.wait_for(1)


def test_hostile_text_does_not_add_recipients_or_headers_on_the_wire(
    store: Store, server: SmtpServer
) -> None:
    add_subscriber(store, "reader@example.org")
    enqueue_alert(store, add_alert(store, platform="X" + INJECT, summary="s" + INJECT))
    deliver(store, settings(server))
    assert server.wait_for(1)
    (message,) = server.messages
    assert message.rcpt_tos == ["reader@example.org"]
    assert message.message["Bcc"] is None
    assert b"\r\nBcc:" not in message.data.split(b"\r\n\r\n", 1)[0]


def test_a_second_deliverer_backs_off_while_one_holds_the_outbox(
    store: Store, server: SmtpServer
) -> None:
    add_subscriber(store, "a@example.org")
    enqueue_alert(store, add_alert(store))
    fd = os.open(f"{store.path}.outbox-lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        busy = deliver(store, settings(server))
    finally:
        os.close(fd)
    free = deliver(store, settings(server))
    assert busy.busy and busy.sent == 0
    assert free.sent == 1 and not free.busy


def test_delivering_inside_a_transaction_is_refused(store: Store, server: SmtpServer) -> None:
    add_subscriber(store, "a@example.org")
    enqueue_alert(store, add_alert(store))
    with pytest.raises(StoreError, match="transaction"), store.transaction():
        deliver(store, settings(server))
    assert statuses(store) == ["pending"] and server.messages == []


# --- a crash between "accepted by the server" and "marked sent" ---------------------------------

_CHILD = """
import sys
from monitor.config import SmtpSettings
from monitor.notify import deliver_pending
from monitor.errors import StoreError
from monitor.store import Store
smtp = SmtpSettings(host="127.0.0.1", port=int(sys.argv[2]), sender="alerts@example.org", timeout=5)
deliver_pending(Store(sys.argv[1]), smtp)
"""


def test_crash_after_send_is_neither_resent_nor_lost(store: Store, server: SmtpServer) -> None:
    add_subscriber(store, "first@example.org")
    add_subscriber(store, "second@example.org")
    enqueue_alert(store, add_alert(store))
    env = os.environ | {PAUSE_ENV: "60"}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(store.path), str(server.port)], env=env, cwd=REPO
    )
    try:
        assert server.wait_for(1, timeout=30), "the child never sent"
        time.sleep(0.2)  # the child is now sleeping between send and mark
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    (crashed,) = store.query("SELECT * FROM deliveries WHERE status = 'sending'")
    assert crashed["recipient"] == "first@example.org"  # not silently lost: still on record

    smtp = settings(server)
    after = deliver(store, smtp)
    assert after.unknown == 1 and after.unknown_total == 1 and after.sent == 1
    assert "--resend-unknown" in after.summary()
    assert server.wait_for(2)
    assert Counter(r for m in server.messages for r in m.rcpt_tos) == {
        "first@example.org": 1,
        "second@example.org": 1,
    }
    still = deliver(store, smtp)
    assert still.sent == 0 and still.unknown == 0 and still.unknown_total == 1
    assert outbox_counts(store) == {"unknown": 1, "sent": 1}

    assert resend_unknown(store) == 1
    resent = deliver(store, smtp)
    assert resent.sent == 1 and resent.unknown_total == 0
    assert server.wait_for(3)
    ids = server.message_ids()
    assert ids[crashed["message_id"]] == 2  # exactly once more, with the same Message-ID
    assert deliver(store, smtp).sent == 0
    assert len(server.messages) == 3


def test_operator_can_confirm_an_unknown_row_instead(store: Store, server: SmtpServer) -> None:
    add_subscriber(store, "a@example.org")
    enqueue_alert(store, add_alert(store))
    store.conn.execute("UPDATE deliveries SET status = 'sending', attempts = 1")
    assert deliver(store, settings(server)).unknown == 1
    assert mark_unknown_sent(store) == 1
    assert statuses(store) == ["sent"] and server.messages == []


# --- digests -------------------------------------------------------------------------------------


def test_daily_digest_lists_every_new_alert_once(store: Store, server: SmtpServer) -> None:
    t0 = dt.datetime.now(dt.UTC)
    add_subscriber(store, "daily@example.org", digest="daily")
    add_subscriber(store, "instant@example.org", platforms=["nobody"])
    first = add_alert(store, platform="X", summary="X now trains AI on posts.")
    second = add_alert(
        store, platform="Meta", summary="Meta dropped its opt-in.", severity="medium"
    )
    assert enqueue_alert(store, first) == [] and enqueue_alert(store, second) == []

    made = enqueue_digests(store, now=t0)
    assert len(made) == 1
    assert enqueue_digests(store, now=t0) == []
    assert enqueue_digests(store, now=t0 + dt.timedelta(days=1)) == []  # nothing new

    deliver(store, settings(server), now=t0 + dt.timedelta(days=1))
    assert server.wait_for(1)
    (digest,) = server.messages
    assert digest.rcpt_tos == ["daily@example.org"]
    assert str(digest.message["Subject"]) == "[policy-monitor] daily digest: 2 alerts (X, Meta)"
    text = digest.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "X now trains AI on posts." in text and "Meta dropped its opt-in." in text
    assert f"> {CLAUSE}" in text
    assert digest.message["List-Unsubscribe"] is not None

    third = add_alert(store, platform="X", summary="Another clause.")
    assert enqueue_digests(store, now=t0 + dt.timedelta(hours=2)) == []  # one a day at most
    (next_day,) = enqueue_digests(store, now=t0 + dt.timedelta(days=1))
    row = store.query_one("SELECT * FROM deliveries WHERE id = ?", (next_day,))
    assert row is not None and row["alert_id"] == third
    assert "Another clause." in row["body_text"] and "Meta dropped" not in row["body_text"]


# --- the notify command ------------------------------------------------------------------------


def _notify(config: Path, *flags: str) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from monitor.cli import cli

    out = CliRunner().invoke(cli, ["--config", str(config), "notify", *flags])
    return out.exit_code, out.stdout, out.stderr


def _config(tmp_path: Path, srv: SmtpServer | None) -> Path:
    config = tmp_path / "config.yaml"
    smtp = f"smtp: {{host: {srv.host}, port: {srv.port}, sender: {SENDER}}}\n" if srv else ""
    config.write_text(f"database: pm.db\n{smtp}", encoding="utf-8")
    return config


def test_cli_notify_delivers_and_tries_at_once_during_a_backoff(
    tmp_path: Path, server: SmtpServer
) -> None:
    config = _config(tmp_path, server)
    with Store(tmp_path / "pm.db") as store:
        add_subscriber(store, "a@example.org")
        add_subscriber(store, "b@example.org")
        enqueue_alert(store, add_alert(store))
    server.stop()
    code, out, _ = _notify(config)
    assert code == 0 and "sent 0, deferred 2" in out and "unavailable since" in out
    server.start()
    # The outbox backs off for a minute; an operator's notify does not wait for it.
    code, out, _ = _notify(config)
    assert (code, out) == (0, "sent 2, deferred 0, failed 0\n")
    assert server.wait_for(2)


def test_cli_notify_requeues_failed_and_in_doubt_e_mails(
    tmp_path: Path, server: SmtpServer
) -> None:
    config = _config(tmp_path, server)
    with Store(tmp_path / "pm.db") as store:
        add_subscriber(store, "gone@example.org")
        add_subscriber(store, "doubt@example.org")
        enqueue_alert(store, add_alert(store))
        store.conn.execute(
            "UPDATE deliveries SET status = 'failed' WHERE recipient = 'gone@example.org'"
        )
        store.conn.execute(
            "UPDATE deliveries SET status = 'unknown' WHERE recipient = 'doubt@example.org'"
        )
    code, out, _ = _notify(config)
    assert code == 0 and out.startswith("sent 0") and "1 e-mail(s) in doubt" in out
    code, out, _ = _notify(config, "--retry-failed", "--resend-unknown")
    assert code == 0
    assert out.splitlines() == [
        "1 e-mail(s) in doubt queued again",
        "1 failed e-mail(s) queued again",
        "sent 2, deferred 0, failed 0",
    ]
    assert server.wait_for(2)


def test_cli_notify_without_smtp_is_one_line_with_the_outbox(tmp_path: Path) -> None:
    config = _config(tmp_path, None)
    with Store(tmp_path / "pm.db") as store:
        add_subscriber(store, "a@example.org")
        enqueue_alert(store, add_alert(store))
    code, out, err = _notify(config)
    assert code == 2 and out == ""
    assert err == "error: no 'smtp:' section in the config; outbox: {'pending': 1}\n"

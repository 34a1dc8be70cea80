"""Subscribers: address validation, filters, re-adding, removal."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from monitor.errors import ConfigError
from monitor.notify import (
    Subscriber,
    add_subscriber,
    list_subscribers,
    remove_subscriber,
)
from monitor.store import Store, iso


@pytest.mark.parametrize(
    "address",
    [
        "",
        "no-at-sign.example.org",
        "two@at@example.org",
        "alice@localhost",
        "alice@example.org\r\nBcc: evil@example.com",
        "alice@example.org\nX: y",
        "ali ce@example.org",
        '"quoted"@example.org',
        "zoë@example.org",
        "alice@-bad-.example.org",
        "alice@example..org",
        "@example.org",
    ],
)
def test_unusable_addresses_are_refused(store: Store, address: str) -> None:
    with pytest.raises(ConfigError, match="e-mail address"):
        add_subscriber(store, address)
    assert list_subscribers(store) == []


def test_address_is_stored_with_lower_case_ascii_domain(store: Store) -> None:
    sub = add_subscriber(store, "  Alice.Smith+ai@Example.ORG ")
    idn = add_subscriber(store, "kim@bücher.de")
    assert sub.email == "Alice.Smith+ai@example.org"
    assert idn.email == "kim@xn--bcher-kva.de"


def test_defaults_and_token(store: Store) -> None:
    sub = add_subscriber(store, "a@example.org")
    other = add_subscriber(store, "b@example.org")
    assert (sub.platforms, sub.min_severity, sub.digest) == ([], "medium", "none")
    assert len(sub.token) >= 24 and sub.token != other.token


def test_readding_updates_filters_and_keeps_identity(store: Store) -> None:
    first = add_subscriber(store, "alice@example.org", platforms=["X"])
    again = add_subscriber(
        store,
        "ALICE@example.org",
        platforms=["Meta", "LinkedIn"],
        min_severity="high",
        digest="daily",
    )
    assert (again.id, again.token, again.email) == (first.id, first.token, first.email)
    assert (again.platforms, again.min_severity, again.digest) == (
        ["meta", "linkedin"],
        "high",
        "daily",
    )
    assert [s.email for s in list_subscribers(store)] == ["alice@example.org"]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"min_severity": "urgent"}, "min_severity"),
        ({"digest": "weekly"}, "digest"),
        ({"platforms": ["!!"]}, "platform"),
    ],
)
def test_bad_filters_are_refused(store: Store, kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        add_subscriber(store, "a@example.org", **kwargs)  # type: ignore[arg-type]
    assert err.value.key == key


def test_platforms_match_by_name_or_slug_case_insensitively(store: Store) -> None:
    sub = add_subscriber(store, "a@example.org", platforms=["META / facebook", "x"])
    assert sub.platforms == ["meta-facebook", "x"]
    assert sub.wants("Meta / Facebook", "high")
    assert sub.wants("X", "high")
    assert not sub.wants("LinkedIn", "high")


@pytest.mark.parametrize(
    ("minimum", "passes"),
    [
        ("info", {"info", "low", "medium", "high"}),
        ("medium", {"medium", "high"}),
        ("high", {"high"}),
    ],
)
def test_minimum_severity(store: Store, minimum: str, passes: set[str]) -> None:
    sub = add_subscriber(store, "a@example.org", min_severity=minimum)
    assert {s for s in ("info", "low", "medium", "high") if sub.wants("X", s)} == passes


def test_empty_platform_list_means_every_platform(store: Store) -> None:
    sub = add_subscriber(store, "a@example.org")
    assert sub.wants("Anything At All", "medium")


def test_list_is_sorted_and_typed(store: Store) -> None:
    add_subscriber(store, "zed@example.org")
    add_subscriber(store, "amy@example.org", platforms=["X"])
    subs = list_subscribers(store)
    assert [s.email for s in subs] == ["amy@example.org", "zed@example.org"]
    assert isinstance(subs[0], Subscriber) and subs[0].platforms == ["x"]


def test_remove_by_address_or_token(store: Store) -> None:
    a = add_subscriber(store, "a@example.org")
    b = add_subscriber(store, "b@example.org")
    assert remove_subscriber(store, "A@EXAMPLE.org") is True
    assert remove_subscriber(store, b.token) is True
    assert remove_subscriber(store, a.token) is False
    assert remove_subscriber(store, "nobody@example.org") is False
    assert list_subscribers(store) == []


def _delivery(store: Store, sub: Subscriber, status: str, n: int) -> int:
    now = iso(dt.datetime.now(dt.UTC))
    return store.insert(
        "deliveries",
        {
            "kind": "health",
            "subscriber_id": sub.id,
            "recipient": sub.email,
            "subject": "s",
            "body_text": "b",
            "headers": json.dumps({}),
            "message_id": f"<m{n}@test>",
            "status": status,
            "next_attempt_at": now,
            "created_at": now,
        },
    )


def test_removal_cancels_pending_mail_and_keeps_sent_records(store: Store) -> None:
    sub = add_subscriber(store, "a@example.org")
    pending = _delivery(store, sub, "pending", 1)
    sent = _delivery(store, sub, "sent", 2)
    assert remove_subscriber(store, sub.email)
    rows = {r["id"]: r for r in store.query("SELECT * FROM deliveries")}
    assert rows[pending]["status"] == "cancelled"
    assert rows[sent]["status"] == "sent"
    assert rows[sent]["recipient"] == "a@example.org"
    assert rows[sent]["subscriber_id"] is None


# --- the command line ---------------------------------------------------------------------------


def _cli(db: object, *args: str) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from monitor.cli import cli

    out = CliRunner().invoke(cli, ["--db", str(db), "subscribers", *args])
    return out.exit_code, out.stdout, out.stderr


def test_cli_add_list_update_and_remove(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    code, out, _ = _cli(db, "add", "Reader@Example.ORG", "--platform", "Meta AI", "--platform", "x")
    assert (
        code == 0
        and out.strip() == "Reader@example.org: meta-ai, x, severity >= medium, digest none"
    )
    code, out, _ = _cli(
        db, "add", "daily@example.org", "--min-severity", "info", "--digest", "daily"
    )
    assert code == 0 and "all platforms" in out and "digest daily" in out
    # Adding again changes the filters of the same subscriber.
    code, out, _ = _cli(db, "add", "reader@example.org", "--min-severity", "high")
    assert code == 0 and "all platforms, severity >= high" in out

    code, out, _ = _cli(db, "list")
    assert code == 0
    assert out.splitlines() == [
        "Reader@example.org\tall platforms\t>= high\tdigest none",
        "daily@example.org\tall platforms\t>= info\tdigest daily",
    ]
    code, out, _ = _cli(db, "list", "--json")
    listed = json.loads(out)
    assert [(s["email"], s["min_severity"], s["digest"]) for s in listed] == [
        ("Reader@example.org", "high", "none"),
        ("daily@example.org", "info", "daily"),
    ]
    assert all("token" not in s for s in listed)  # the token is for its owner's e-mails only

    with Store(db) as store:
        token = next(s.token for s in list_subscribers(store) if s.email.startswith("daily"))
    assert _cli(db, "remove", token)[:2] == (0, f"removed {token}\n")
    assert _cli(db, "remove", "READER@example.org")[0] == 0
    assert _cli(db, "list")[1] == "no subscribers\n"
    code, _, err = _cli(db, "remove", "reader@example.org")
    assert code == 2 and err == "error: no subscriber 'reader@example.org'\n"


def test_cli_refuses_a_bad_address_in_one_line(tmp_path: Path) -> None:
    code, out, err = _cli(tmp_path / "cli.db", "add", "not-an-address")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import load_config, parse_config, parse_duration
from monitor.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_example_config_is_valid_and_lists_the_platforms() -> None:
    config = load_config(REPO / "config.yaml")
    platforms = {d.platform.lower() for d in config.documents}
    assert {"x", "facebook", "instagram", "linkedin", "google", "reddit", "tiktok"} <= platforms
    for doc in config.documents:
        assert doc.select, f"{doc.doc_id} has no selector"


def test_document_id_is_slugged_platform_and_type() -> None:
    config = parse_config(
        "documents:\n  - platform: Meta / Facebook\n    doc_type: Privacy Policy\n    url: https://example.org/p\n"
    )
    assert config.documents[0].doc_id == "meta-facebook/privacy-policy"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("15m", 900), ("6h", 21600), ("1d", 86400), (45, 45), ("2.5h", 9000)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_unknown_key_names_file_line_and_key_path(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "database: x.db\ndocuments:\n  - platform: X\n    url: https://x.com/en/privacy\n    intervall: 6h\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:5: ")
    assert "documents.0.intervall" in message
    assert "unknown key" in message


def test_bad_value_is_located(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("http:\n  per_host_concurrency: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:2: http.per_host_concurrency" in str(info.value)


def test_bad_url_and_duplicate_ids_are_errors() -> None:
    with pytest.raises(ConfigError, match="not an http"):
        parse_config("documents:\n  - platform: X\n    url: ftp://x.com/p\n")
    with pytest.raises(ConfigError, match="two documents have the id"):
        parse_config(
            "documents:\n  - {platform: X, url: 'https://a.org/'}\n  - {platform: X, url: 'https://b.org/'}\n"
        )


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("database: a.db\nhttp: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "not valid YAML" in str(info.value)
    assert info.value.line is not None


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "smtp:\n  host: mail.example.org\n  password: {$env: PM_TEST_SMTP_PASSWORD}\n"
    monkeypatch.setenv("PM_TEST_SMTP_PASSWORD", "s3cret")
    config = parse_config(text)
    assert config.smtp is not None and config.smtp.password == "s3cret"
    monkeypatch.delenv("PM_TEST_SMTP_PASSWORD")
    with pytest.raises(ConfigError, match="PM_TEST_SMTP_PASSWORD is not set") as info:
        parse_config(text, "c.yaml")
    assert info.value.line == 3


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.yaml"
    path.parent.mkdir()
    path.write_text("database: data/pm.db\nreports_dir: out\n")
    config = load_config(path)
    assert config.database_path == tmp_path / "sub" / "data" / "pm.db"
    assert config.reports_path == tmp_path / "sub" / "out"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_css_selector_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("documents:\n  - platform: X\n    url: https://x.com/p\n    select: 'main[['\n")
    with pytest.raises(ConfigError, match=r"invalid CSS selector 'main\[\['") as info:
        load_config(path)
    assert info.value.line == 4


def test_duplicate_document_ids_name_the_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "documents:\n"
        "  - platform: X\n    url: https://x.com/en/privacy\n"
        "  - platform: Y\n    url: https://y.com/privacy\n"
        "  - platform: X\n    url: https://x.com/fr/privacy\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(
        f"{path}:6: documents.2: two documents have the id 'x/privacy-policy'"
    )
    assert "documents.0, line 2" in message
    assert info.value.line == 6 and info.value.key == "documents.2"


def test_duplicate_explicit_id_points_at_the_id_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "documents:\n"
        "  - {platform: X, url: 'https://x.com/en/privacy'}\n"
        "  - platform: Twitter\n    url: https://twitter.com/privacy\n    id: x/privacy-policy\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.line, info.value.key) == (5, "documents.1.id")


@pytest.mark.parametrize("value", ["[a]", "{name: A}", "null", "''", "3"])
def test_env_reference_that_is_not_a_name_is_a_config_error(value: str) -> None:
    text = f"smtp:\n  host: mail.example.org\n  password: {{$env: {value}}}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    assert info.value.line == 3
    assert info.value.key == "smtp.password"
    assert "needs the name of an environment variable" in str(info.value)


def test_duplicate_yaml_keys_are_rejected_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "database: a.db\n"
        "documents:\n"
        "  - platform: X\n"
        "    url: https://x.com/en/privacy\n"
        "    select: main\n"
        "    select: article\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:6: duplicate key 'select' (first on line 5)"


def test_duplicate_top_level_key_and_merge_keys() -> None:
    with pytest.raises(ConfigError, match=r"duplicate key 'jitter' \(first on line 1\)") as info:
        parse_config("jitter: 10\nmax_checks: 2\njitter: 20\n", "c.yaml")
    assert info.value.line == 3
    # keys brought in by a YAML merge key are meant to be overridden: not duplicates
    config = parse_config(
        "documents:\n"
        "  - &base\n    platform: X\n    url: https://x.com/p\n    select: main\n"
        "  - <<: *base\n    platform: Y\n"
    )
    assert [(d.doc_id, d.url) for d in config.documents] == [
        ("x/privacy-policy", "https://x.com/p"),
        ("y/privacy-policy", "https://x.com/p"),
    ]


@pytest.mark.parametrize(("key", "selector"), [("select", "main[["), ("remove", "a:has(")])
def test_selector_errors_are_one_line(tmp_path: Path, key: str, selector: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"documents:\n  - platform: X\n    url: https://x.com/p\n    {key}: '{selector}'\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:4: documents.0.{key}: invalid CSS selector {selector!r}: ")


# The Open Terms Archive declarations config.yaml follows (pga-declarations, Google from
# contrib-declarations): URL, select, and whether OTA executes the page's scripts.
OTA = {
    "x/privacy-policy": ("https://x.com/en/privacy", "main#twtr-main", "http"),
    "x/terms-of-service": ("https://x.com/tos", "main#twtr-main", "http"),
    "facebook/privacy-policy": (
        "https://mbasic.facebook.com/privacy/policy/printable/",
        "#root",
        "browser",
    ),
    "instagram/privacy-policy": (
        "https://privacycenter.instagram.com/policy",
        ".xg6iff7",
        "browser",
    ),
    "linkedin/privacy-policy": (
        "https://www.linkedin.com/legal/privacy-policy",
        "#component-container",
        "http",
    ),
    "google/privacy-policy": (
        "https://policies.google.com/privacy?hl=en-GB&gl=IE",
        "div[role=article]",
        "http",
    ),
    "reddit/privacy-policy": (
        "https://www.redditinc.com/policies/privacy-policy",
        "main",
        "browser",
    ),
    "tiktok/privacy-policy": (
        "https://www.tiktok.com/legal/page/eea/privacy-policy/en",
        '[data-testid="policy-card"]',
        "browser",
    ),
}


def test_example_config_follows_the_open_terms_archive_declarations() -> None:
    config = load_config(REPO / "config.yaml")
    found = {d.doc_id: (d.url, d.select[0], d.render) for d in config.documents}
    assert found == OTA

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

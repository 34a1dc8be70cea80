"""`analyse`, `analyse --jsonl`, `eval`, `rules list` and `rules test` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from monitor.cli import cli

TRAINS = "We may use your posts and public information to train our generative AI models."
TRAINS_FR = (
    "Nous utilisons vos publications pour entraîner nos modèles d'IA, sauf si vous vous y opposez."
)
DENIES = "We do not use the content of your private messages to train our AI models."
PLAIN = "You can change your password at any time in the account settings."

CUSTOM_PACK = """\
id: data-sale
engine: generic
title: Sale of personal data
description: Clauses that sell people's data.
category: data_sale
severity: medium
languages: [en]
rules:
  - id: sells-data
    when:
      near: ["@sell", "@data"]
      within: 4
lexicons:
  en:
    sell: [sell*, sold]
    data: [data, information]
examples:
  match:
    - {text: "We may sell your personal data to brokers.", lang: en, rule: sells-data}
  no_match:
    - {text: "We keep your data safe.", lang: en}
"""


def _invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def test_jsonl_writes_one_line_per_input_line_with_the_contract_fields(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "u1", "text": TRAINS}),
        json.dumps({"id": "u2", "text": DENIES}),
        json.dumps({"id": 3, "text": PLAIN}),
        json.dumps({"id": "u4", "text": TRAINS_FR}),
    ]
    path = tmp_path / "units.jsonl"
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    code, out, _ = _invoke("analyse", "--jsonl", str(path))
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == ["u1", "u2", 3, "u4"]
    for r in rows:
        assert {"id", "ai_training", "consent", "negated", "alert", "findings"} <= r.keys()
        assert r["consent"] in {"opt_in", "opt_out", "none", "n/a"}
        assert (r["consent"] == "n/a") == (not r["ai_training"])
        assert r["alert"] == (r["ai_training"] and r["consent"] != "opt_in")
    by_id = {r["id"]: r for r in rows}
    assert by_id["u1"]["ai_training"] and by_id["u1"]["alert"]
    assert by_id["u1"]["findings"][0]["unit_text"] == TRAINS
    assert not by_id["u2"]["ai_training"] and by_id["u2"]["negated"]
    assert by_id[3] == {
        "id": 3,
        "lang": "en",
        "ai_training": False,
        "consent": "n/a",
        "negated": False,
        "alert": False,
        "findings": [],
    }
    assert by_id["u4"]["consent"] == "opt_out" and by_id["u4"]["lang"] == "fr"


def test_jsonl_reads_stdin_and_reports_bad_lines_in_place() -> None:
    stdin = "\n".join(
        [json.dumps({"id": "a", "text": TRAINS}), "{not json", json.dumps({"id": "b"})]
    )
    code, out, err = _invoke("analyse", "--jsonl", "-", input=stdin)
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 3
    assert rows[0]["id"] == "a" and rows[0]["ai_training"]
    assert rows[1]["line"] == 2 and "error" in rows[1]
    assert rows[2]["id"] == "b" and "text" in rows[2]["error"]
    assert "<stdin>:2:" in err and "<stdin>:3:" in err


def test_soft_hyphens_and_decomposed_accents_in_given_text_hide_no_term() -> None:
    import unicodedata

    # Web text carries hyphenation hints (&shy;) and macOS files decomposed accents; a unit
    # given on the command line has not been through extraction.
    hyphenated = (
        "Wir verwenden Ihre Bei\u00adträge, um unsere KI-Mo\u00addelle zu trai\u00adnieren."
    )
    decomposed = unicodedata.normalize("NFD", TRAINS_FR)
    assert decomposed != TRAINS_FR
    stdin = "\n".join(
        json.dumps({"id": i, "text": t}) for i, t in (("de", hyphenated), ("fr", decomposed))
    )
    code, out, _ = _invoke("analyse", "--jsonl", "-", input=stdin)
    assert code == 0
    rows = {r["id"]: r for r in map(json.loads, out.splitlines())}
    assert rows["de"]["ai_training"] and rows["fr"]["ai_training"]
    assert rows["fr"]["consent"] == "opt_out"
    code, out, _ = _invoke("analyse", "-", "--format", "json", input=hyphenated + "\n")
    assert code == 0 and json.loads(out)["ai_training"]


def test_analyse_html_file_drops_navigation_and_keeps_headings(tmp_path: Path) -> None:
    page = tmp_path / "policy.html"
    page.write_text(
        "<html><body><nav>We train our AI models on everything.</nav><main>"
        "<h1>Privacy Policy</h1><h2>How we use information</h2>"
        f"<p>{PLAIN}</p><p>{TRAINS}</p></main></body></html>",
        encoding="utf-8",
    )
    code, out, _ = _invoke("analyse", str(page), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["ai_training"] and doc["consent"] == "none" and doc["alert"]
    training = [f for f in doc["findings"] if f["category"] == "ai_training"]
    assert [f["unit_text"] for f in training] == [TRAINS]
    assert training[0]["heading_path"] == ["Privacy Policy", "How we use information"]


def test_analyse_text_format_names_the_clause_and_the_verdict(tmp_path: Path) -> None:
    md = tmp_path / "policy.md"
    md.write_text(f"# Policy\n\n{PLAIN}\n\n{TRAINS} You can opt out in Settings.\n")
    code, out, _ = _invoke("analyse", str(md))
    assert code == 0
    head = out.splitlines()[0]
    assert "AI training: yes" in head and "consent: opt_out" in head and "ALERT" in head
    assert TRAINS in out and "ai-training/" in out


def test_analyse_without_training_says_so() -> None:
    code, out, _ = _invoke("analyse", "-", "--format", "json", input=PLAIN)
    assert code == 0
    doc = json.loads(out)
    assert (doc["ai_training"], doc["consent"], doc["alert"], doc["findings"]) == (
        False,
        "n/a",
        False,
        [],
    )


def _labels(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_eval_scores_against_the_labels_and_lists_the_errors(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"id": "p1", "lang": "en", "text": TRAINS, "ai_training": True, "consent": "none"},
        {"id": "n1", "lang": "en", "text": PLAIN, "ai_training": False, "consent": "n/a"},
        # Deliberately mislabelled: the analyser is right, so this must show up as an error.
        {"id": "wrong", "lang": "en", "text": DENIES, "ai_training": True, "consent": "opt_in"},
        {"id": "f1", "lang": "fr", "text": TRAINS_FR, "ai_training": True, "consent": "opt_out"},
    ]
    code, out, _ = _invoke("eval", str(_labels(tmp_path, rows)), "--json")
    assert code == 0
    report = json.loads(out)
    overall = report["overall"]
    assert overall["n"] == 4
    assert overall["ai_training"]["tp"] == 2 and overall["ai_training"]["fn"] == 1
    assert overall["ai_training"]["precision"] == 1.0
    assert abs(overall["ai_training"]["recall"] - 2 / 3) < 1e-9
    assert set(report["by_lang"]) == {"en", "fr"}
    assert {e["id"] for e in report["errors"]} == {"wrong"}

    code, text, _ = _invoke("eval", str(_labels(tmp_path, rows)))
    assert code == 0
    assert "wrong [en] ai_training: gold=True got=False" in text
    assert "neg acc" in text and "optinP" in text


def test_eval_names_the_line_of_a_broken_label_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": PLAIN, "ai_training": False}) + "\n{oops\n")
    code, _, err = _invoke("eval", str(path))
    assert code == 2
    assert f"{path}:2: invalid JSON" in err


def test_rules_list_shows_builtin_and_custom_packs(tmp_path: Path) -> None:
    code, out, _ = _invoke("rules", "list", "--json")
    assert code == 0
    ids = {p["id"] for p in json.loads(out)}
    assert {"ai-training", "ai-affiliate-sharing", "private-messages-biometrics"} <= ids

    (tmp_path / "sale.yaml").write_text(CUSTOM_PACK, encoding="utf-8")
    code, out, _ = _invoke("rules", "list", "--json", "--rules", str(tmp_path))
    assert code == 0
    [pack] = json.loads(out)
    assert pack["id"] == "data-sale" and pack["rules"] == ["sells-data"]
    assert pack["examples"] == {"match": 1, "no_match": 1}


def test_rules_test_passes_on_builtin_packs_and_fails_on_a_wrong_example(tmp_path: Path) -> None:
    code, out, _ = _invoke("rules", "test")
    assert code == 0
    assert "ai-training:" in out and "FAIL" not in out

    wrong = CUSTOM_PACK.replace("We keep your data safe.", "We sold your information.")
    (tmp_path / "sale.yaml").write_text(wrong, encoding="utf-8")
    code, out, _ = _invoke("rules", "test", "--rules", str(tmp_path))
    assert code == 1
    assert "FAIL no_match #0 [en] We sold your information." in out
    assert "1/2 examples pass" in out


def test_custom_pack_finds_its_clauses_in_analyse(tmp_path: Path) -> None:
    (tmp_path / "sale.yaml").write_text(CUSTOM_PACK, encoding="utf-8")
    text = "We may sell your personal data to brokers. " + PLAIN
    code, out, _ = _invoke("analyse", "-", "--format", "json", "--rules", str(tmp_path), input=text)
    assert code == 0
    [finding] = json.loads(out)["findings"]
    assert finding["rule_id"] == "sells-data" and finding["category"] == "data_sale"


def test_a_broken_pack_is_one_error_line_naming_file_and_rule(tmp_path: Path) -> None:
    broken = CUSTOM_PACK.replace('near: ["@sell", "@data"]\n      within: 4', 'regex: "sel(l"')
    path = tmp_path / "sale.yaml"
    path.write_text(broken, encoding="utf-8")
    code, _, err = _invoke("rules", "test", "--rules", str(path))
    assert code == 2
    assert err.startswith("error: ") and str(path) in err and "sells-data" in err
    assert "Traceback" not in err

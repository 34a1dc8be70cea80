"""Invalid rule packs fail with RuleError naming the file, the rule id and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.analyse import load_packs
from monitor.errors import RuleError

GENERIC = """\
id: demo
engine: generic
title: Demo
description: A demo pack.
category: demo
severity: low
languages: [en]
rules:
  - id: {rule_id}
    when:
{when}
examples:
  match:
    - {{text: "we sell data"}}
{no_match}
"""

NO_MATCH = """  no_match:
    - {text: "we keep data"}
"""


def write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "demo.yaml"
    p.write_text(body, encoding="utf-8")
    return p


def test_bad_regex_names_file_rule_and_pattern(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        GENERIC.format(rule_id="sells-data", when='      regex: "sel(l"', no_match=NO_MATCH),
    )
    with pytest.raises(RuleError) as err:
        load_packs([p])
    msg = str(err.value)
    assert str(p) in msg and "sells-data" in msg and "sel(l" in msg
    assert err.value.rule_id == "sells-data"


def test_bad_term_regex_in_keywords(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        GENERIC.format(rule_id="r1", when='      keywords: ["re:[unclosed"]', no_match=NO_MATCH),
    )
    with pytest.raises(RuleError, match=r"r1.*\[unclosed"):
        load_packs([p])


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        GENERIC.format(
            rule_id="sells-data",
            when="      keywords: [sell]\n    colour: red",
            no_match=NO_MATCH,
        ),
    )
    with pytest.raises(RuleError) as err:
        load_packs([p])
    assert "sells-data" in str(err.value) and "colour" in str(err.value)
    assert "unknown key" in str(err.value)


def test_missing_examples_is_an_error(tmp_path: Path) -> None:
    p = write(
        tmp_path, GENERIC.format(rule_id="sells-data", when="      keywords: [sell]", no_match="")
    )
    with pytest.raises(RuleError) as err:
        load_packs([p])
    assert str(p) in str(err.value) and "no_match" in str(err.value)


def test_condition_needs_exactly_one_operator(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        GENERIC.format(
            rule_id="two-ops",
            when="      keywords: [sell]\n      regex: rent",
            no_match=NO_MATCH,
        ),
    )
    with pytest.raises(RuleError, match=r"two-ops.*exactly one"):
        load_packs([p])


def test_unknown_lexicon_reference(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        GENERIC.format(
            rule_id="near-rule",
            when='      near: ["@nothing", sell]\n      within: 3',
            no_match=NO_MATCH,
        ),
    )
    with pytest.raises(RuleError, match=r"near-rule.*unknown lexicon '@nothing'"):
        load_packs([p])


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    p = write(tmp_path, "id: demo\ntitle: [unclosed\n")
    with pytest.raises(RuleError, match=r"demo\.yaml:\d+"):
        load_packs([p])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="no such rule file"):
        load_packs([tmp_path / "absent.yaml"])


def test_ai_pack_without_disclosure_rule(tmp_path: Path) -> None:
    body = """\
id: tiny
engine: ai_training
title: T
description: D
category: ai_training
severity: high
languages: [en]
rules:
  - {id: only-denial, when: denial}
lexicons:
  en: {purpose: [train*], object: [AI], data: [data]}
examples:
  match: [{text: "We train AI on your data.", ai_training: true, consent: none, negated: false}]
  no_match: [{text: "Hello."}]
"""
    with pytest.raises(RuleError, match="when: disclosure"):
        load_packs([write(tmp_path, body)])


def test_a_valid_generic_pack_loads_and_matches(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        GENERIC.format(rule_id="sells-data", when="      keywords: [sell*]", no_match=NO_MATCH),
    )
    (pack,) = load_packs([p])
    assert pack.id == "demo" and [r.id for r in pack.rules] == ["sells-data"]

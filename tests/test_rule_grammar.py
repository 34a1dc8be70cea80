"""The AI-training pack over generated sentences (tests/data/grammar_probes.yaml): every
training verb, noun, AI object and kind of people's data of each language, one varied at a time
in every frame, then seeded random combinations; the consent and negation frames with random
fillers. A lexicon gap shows as the item that fails, in every frame."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.analyse import analyse_unit

PROBES: dict[str, dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "data" / "grammar_probes.yaml").read_text(encoding="utf-8")
)
LANGS = sorted(PROBES)

# Contractions a filler can create after a frame's preposition.
_CONTRACT = {
    "fr": [("de les ", "des "), ("à les ", "aux "), ("de le ", "du ")],
    "it": [("di i ", "dei "), ("di le ", "delle "), ("di il ", "del "), ("di gli ", "degli ")],
}


def _render(lang: str, frame: str, **fill: Any) -> str:
    obj = fill.get("obj") or ["", ""]
    data = fill.get("data", "")
    text = frame.format(
        verb=fill.get("verb"),
        obj=obj[0],
        obj2=obj[1],
        objbare="models",
        noun=fill.get("noun"),
        data=data,
        Data=data[:1].upper() + data[1:],
    )
    for a, b in _CONTRACT.get(lang, []):
        text = text.replace(a, b)
    return text


def _disclosures(lang: str) -> list[str]:
    p = PROBES[lang]
    verb, obj, data = p["verbs"][0], p["objects"][0], p["data"][0]
    out = []
    for frame in p["frames"]:
        out += [_render(lang, frame, verb=v, obj=obj, data=data) for v in p["verbs"]]
        out += [_render(lang, frame, verb=verb, obj=o, data=data) for o in p["objects"]]
        out += [_render(lang, frame, verb=verb, obj=obj, data=d) for d in p["data"]]
    for frame in p["noun_frames"]:
        out += [_render(lang, frame, noun=n, obj=obj, data=data) for n in p["nouns"]]
        out += [_render(lang, frame, noun=p["nouns"][0], obj=o, data=data) for o in p["objects"]]
    rnd = random.Random(f"grammar-{lang}")
    for _ in range(60):
        frame = rnd.choice(p["frames"])
        out.append(
            _render(
                lang,
                frame,
                verb=rnd.choice(p["verbs"]),
                obj=rnd.choice(p["objects"]),
                data=rnd.choice(p["data"]),
            )
        )
    return out


@pytest.mark.parametrize("lang", LANGS)
def test_every_training_verb_object_and_data_in_every_frame_is_a_disclosure(lang: str) -> None:
    missed = [t for t in _disclosures(lang) if not analyse_unit(t, lang=lang).ai_training]
    assert not missed, f"{len(missed)} missed, e.g. {missed[:5]}"


@pytest.mark.parametrize("lang", LANGS)
def test_an_ai_that_runs_on_the_data_is_not_training(lang: str) -> None:
    p = PROBES[lang]
    texts = [
        _render(lang, frame, verb=v, obj=p["objects"][0], data=p["data"][0])
        for frame in p["frames"]
        for v in p["applied_verbs"]
    ]
    wrong = [t for t in texts if analyse_unit(t, lang=lang).ai_training]
    assert not wrong, wrong[:5]


@pytest.mark.parametrize("lang", LANGS)
def test_consent_and_negation_frames_read_as_labelled(lang: str) -> None:
    p = PROBES[lang]
    objs = [o[0] for o in p["objects"]]
    rnd = random.Random(f"consent-{lang}")
    wrong = []
    for case in p["consent_frames"]:
        for _ in range(6):
            text = _render(
                lang,
                case["text"],
                verb=rnd.choice(p["core_verbs"]),
                obj=[rnd.choice(objs)] * 2,
                data=rnd.choice(p["data"]),
            )
            a = analyse_unit(text, lang=lang)
            got = (a.ai_training, a.consent.value, a.negated)
            want = (case["ai_training"], case["consent"], case["negated"])
            if got != want:
                wrong.append((text, got, want))
    assert not wrong, wrong[:5]

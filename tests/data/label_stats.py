"""Print the statistics of the labelled evaluation set (the tables quoted in LABELS.md).

Usage: python tests/data/label_stats.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent
HALVES = ("dev", "test")
# Further development sets, each with its own table.
EXTRA = ("dev2", "dev3", "dev4", "dev5", "dev6", "dev7")
LANGS = ("en", "fr", "de", "es", "it", "nl", "pl", "el")
KINDS = ("positive", "hard_negative", "negative")
CONSENTS = ("opt_in", "opt_out", "none", "n/a")


def _load(half: str) -> list[dict[str, Any]]:
    lines = (DATA / f"labels_{half}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(units: list[dict[str, Any]]) -> list[str]:
    cols = ["lang", "units", *KINDS, *CONSENTS, "negated", "alert"]
    out = [_row(cols), _row(["---"] * len(cols))]
    for lang in (*LANGS, "all"):
        sel = units if lang == "all" else [u for u in units if u["lang"] == lang]
        if not sel:
            continue
        kinds = Counter(u["kind"] for u in sel)
        consents = Counter(u["consent"] for u in sel)
        cells = [
            lang,
            str(len(sel)),
            *(str(kinds[k]) for k in KINDS),
            *(str(consents[c]) for c in CONSENTS),
            str(sum(u["negated"] for u in sel)),
            str(sum(u["alert"] for u in sel)),
        ]
        out.append(_row(cells))
    return out


def _shares(units: list[dict[str, Any]]) -> str:
    n = len(units)
    non_en = sum(u["lang"] != "en" for u in units) / n
    hard = sum(u["kind"] == "hard_negative" for u in units) / n
    return f"{n} units, non-English {non_en:.1%}, hard negatives {hard:.1%}"


def main() -> None:
    halves = {half: _load(half) for half in HALVES}
    everything = [u for half in HALVES for u in halves[half]]
    extra = {name: _load(name) for name in EXTRA if (DATA / f"labels_{name}.jsonl").exists()}
    for name, units in (*halves.items(), ("all", everything), *extra.items()):
        print(f"### {name}: {_shares(units)}\n")
        print("\n".join(_table(units)))
        print()


if __name__ == "__main__":
    main()

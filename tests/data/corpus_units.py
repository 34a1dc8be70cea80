"""Address units of the real policy corpus by file and position (labels_corpus.jsonl).

A corpus unit is unit number ``unit`` of
``segment(extract_markdown(text).text)`` for the file ``file`` (a path relative to the corpus
root, ``versions/<platform>/<doc-type>/<date>.md``). Labels store the file, the index and the
SHA-1 of the unit text, never the text itself: the policy text stays in the corpus.

Usage (from the repository root):

    python tests/data/corpus_units.py candidates [--out /tmp/cands.txt] [FILE ...]
    python tests/data/corpus_units.py export tests/data/labels_corpus.jsonl [--split dev]
        > /tmp/corpus.jsonl
    python -m monitor eval /tmp/corpus.jsonl
    python tests/data/corpus_units.py stats

``candidates`` prints the units of the given files (by default the latest, the oldest and a
middle version of every document) that a broad keyword filter, independent of the rule pack,
selects; write its output under /tmp, never into the project. ``export`` resolves each label to
its unit text (failing on a changed unit) and prints the ``{"id", "lang", "text", ...}`` lines
that ``python -m monitor eval`` reads.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from monitor.analyse.segment import segment  # noqa: E402
from monitor.extract import extract_markdown  # noqa: E402

# Next to the repository, as tests/conftest.py expects it; POLICY_CORPUS overrides.
CORPUS = Path(os.environ.get("POLICY_CORPUS") or ROOT.parent / "shared" / "corpus")
LABELS = Path(__file__).resolve().parent / "labels_corpus.jsonl"
LABEL_FIELDS = ("ai_training", "consent", "negated", "alert", "kind")

# Broad on purpose (it finds hard negatives too) and independent of rules/ai-training.yaml.
KEYWORDS = re.compile(
    r"\b(?:A\.?I\.?|IA|KI|LLMs?|GPT\w*|artificial intelligence|intelligence artificielle"
    r"|machine[- ]learning|apprentissage(?: automatique)?|deep learning|neural"
    r"|models?|modèles?|train\w*|entra[iî]n\w*|(?:re|pre|pré)-?train\w*|former|formation"
    r"|generative|génératives?|algorithm\w*|algorithmes?|fine-?tun\w*|learn\w*"
    r"|improve (?:and develop )?(?:our|the) (?:services?|products?)"
    r"|améliorer (?:nos|les) services|develop(?:ing)? new (?:features|products|services)"
    r"|développer de nouveaux|Gemini|Grok|Claude|Copilot|Llama|chatbot|assistant)\b",
    re.IGNORECASE,
)


def sha1(text: str) -> str:
    """The SHA-1 (hex) of a unit text, as stored in a label."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def corpus_available() -> bool:
    return (CORPUS / "versions").is_dir()


@functools.lru_cache(maxsize=64)
def units(file: str, root: Path | None = None) -> tuple[str, ...]:
    """The unit texts of one corpus file, in order (index = position in the tuple)."""
    text = ((root or CORPUS) / file).read_text(encoding="utf-8")
    return tuple(u.text for u in segment(extract_markdown(text).text))


def unit_text(file: str, index: int, root: Path | None = None) -> str:
    found = units(file, root)
    if not 0 <= index < len(found):
        raise IndexError(f"{file}: no unit {index} (the file has {len(found)} units)")
    return found[index]


@functools.lru_cache(maxsize=1)
def languages() -> dict[str, str]:
    """Language of each corpus file, from MANIFEST.csv (missing: "en")."""
    path = CORPUS / "MANIFEST.csv"
    if not path.exists():
        return {}
    with path.open(encoding="utf-8", newline="") as fh:
        return {row["path"]: row["language"] or "en" for row in csv.DictReader(fh)}


def lang_of(file: str) -> str:
    return languages().get(file, "en")


def documents() -> list[Path]:
    """Every document directory (``versions/<platform>/<doc-type>``)."""
    return sorted(p for p in (CORPUS / "versions").glob("*/*") if p.is_dir())


def default_files() -> list[str]:
    """Latest, oldest and a middle version of every document."""
    out: list[str] = []
    for doc in documents():
        versions = sorted(doc.glob("*.md"))
        picks = {versions[-1], versions[0], versions[len(versions) // 2]}
        out.extend(str(p.relative_to(CORPUS)) for p in sorted(picks, reverse=True))
    return out


def candidates(files: Iterable[str]) -> Iterator[tuple[str, int, str]]:
    """(file, index, text) of the units the keyword filter selects, each text once per
    document (the first file of a document given wins: the latest by default)."""
    seen: set[tuple[str, str]] = set()
    for file in files:
        doc = str(Path(file).parent)
        for index, text in enumerate(units(file)):
            if (doc, text) in seen or not KEYWORDS.search(text):
                continue
            seen.add((doc, text))
            yield file, index, text


def load_labels(path: Path = LABELS) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def export(
    labels: Sequence[dict[str, Any]], split: str | None = None, root: Path | None = None
) -> list[dict[str, Any]]:
    """The eval rows of ``labels`` (optionally one split); a changed unit raises ValueError.
    ``root`` is where the labelled files are (default: the corpus)."""
    rows: list[dict[str, Any]] = []
    for label in labels:
        if split and label.get("split") != split:
            continue
        text = unit_text(label["file"], label["unit"], root)
        if sha1(text) != label["sha1"]:
            raise ValueError(
                f"{label['id']}: unit {label['unit']} of {label['file']} has changed "
                f"(sha1 {sha1(text)} != {label['sha1']})"
            )
        row = {"id": label["id"], "lang": label["lang"], "text": text}
        row.update({k: label[k] for k in LABEL_FIELDS if k in label})
        rows.append(row)
    return rows


def relocate(labels: list[dict[str, Any]]) -> list[str]:
    """Point each label whose unit moved (the segmenter now splits the file differently)
    at the unit of its file with the same text (sha1), in place; the ids of the labels whose
    text is nowhere in the file any more, which need labelling again."""
    lost: list[str] = []
    for label in labels:
        found = units(label["file"])
        index = label["unit"]
        if 0 <= index < len(found) and sha1(found[index]) == label["sha1"]:
            continue
        same = [k for k, text in enumerate(found) if sha1(text) == label["sha1"]]
        if same:
            label["unit"] = min(same, key=lambda k: abs(k - index))
        else:
            lost.append(label["id"])
    return lost


def stats(labels: Sequence[dict[str, Any]]) -> str:
    """Markdown tables of the labels: per document, and per half x kind / consent."""
    kinds = ("positive", "hard_negative", "negative")
    consents = ("opt_in", "opt_out", "none", "n/a")
    cols = ["units", *kinds, *consents, "negated", "alert"]

    def cells(sel: Sequence[dict[str, Any]]) -> list[str]:
        return [
            str(len(sel)),
            *(str(sum(u["kind"] == k for u in sel)) for k in kinds),
            *(str(sum(u["consent"] == c for u in sel)) for c in consents),
            str(sum(u["negated"] for u in sel)),
            str(sum(u["alert"] for u in sel)),
        ]

    def row(items: Sequence[str]) -> str:
        return "| " + " | ".join(items) + " |"

    out = [row(["document", "half", "versions", *cols]), row(["---"] * (len(cols) + 3))]
    docs: dict[str, list[dict[str, Any]]] = {}
    for label in labels:
        docs.setdefault(str(Path(label["file"]).parent.relative_to("versions")), []).append(label)
    for doc, sel in sorted(docs.items()):
        versions = str(len({u["file"] for u in sel}))
        out.append(row([doc, sel[0].get("split", "-"), versions, *cells(sel)]))
    out += ["", row(["half", *cols]), row(["---"] * (len(cols) + 1))]
    for half in ("dev", "test", "all"):
        sel = [u for u in labels if half == "all" or u.get("split") == half]
        out.append(row([half, *cells(sel)]))
    return "\n".join(out) + "\n"


def _write_jsonl(rows: Iterable[dict[str, Any]], out: TextIO) -> None:
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    cand = sub.add_parser("candidates", help="units the broad keyword filter selects")
    cand.add_argument("files", nargs="*", help="corpus-relative files (default: 3 per document)")
    cand.add_argument("--out", type=Path, help="write here (under /tmp) instead of stdout")
    exp = sub.add_parser("export", help="labels -> eval JSONL with the unit texts")
    exp.add_argument("labels", type=Path)
    exp.add_argument("--split", choices=("dev", "test"))
    exp.add_argument("--out", type=Path)
    rel = sub.add_parser(
        "relocate", help="after a segmenter change: re-point moved labels (rewrites the file)"
    )
    rel.add_argument("labels", type=Path, nargs="?", default=LABELS)
    st = sub.add_parser("stats", help="Markdown count tables of a label file (LABELS.md)")
    st.add_argument("labels", type=Path, nargs="?", default=LABELS)
    args = parser.parse_args(argv)
    if args.mode == "stats":
        sys.stdout.write(stats(load_labels(args.labels)))
        return 0
    if not corpus_available():
        print(f"corpus not found at {CORPUS} (set POLICY_CORPUS)", file=sys.stderr)
        return 2
    if args.mode == "relocate":
        labels = load_labels(args.labels)
        lost = relocate(labels)
        with args.labels.open("w", encoding="utf-8") as fh:
            _write_jsonl(labels, fh)
        for label_id in lost:
            print(f"{label_id}: its text is no longer a unit of its file; label it again")
        return 1 if lost else 0
    out: TextIO = args.out.open("w", encoding="utf-8") if args.out else sys.stdout
    try:
        if args.mode == "candidates":
            for file, index, text in candidates(args.files or default_files()):
                out.write(f"{file}\t{index}\t{sha1(text)[:10]}\t{lang_of(file)}\t{text}\n")
        else:
            _write_jsonl(export(load_labels(args.labels), args.split), out)
    finally:
        if args.out:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Safety net for speed work on `import dir`: the database an import writes, table by table.

    python bench/import_equivalence.py build CODE_DIR OUT.db [--workers N] [--corpus DIR]
    python bench/import_equivalence.py compare A.db B.db

``build`` imports the corpus (default ``../shared/corpus/versions``) with the checkout at
CODE_DIR (e.g. a pristine ``git archive main | tar -x -C /tmp/imp-base`` copy, or this one)
in a fresh process, into a new database. ``compare`` dumps both databases' tables in id order
(documents, blobs, versions, findings, changes, alerts, fetches, deliveries) without the
columns that record when the import ran (``versions.analysed_at``), plus the full-text index
row count, and exits 1 on the first difference of each table (0 when identical).
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / ".." / "shared" / "corpus" / "versions"

# Columns that depend on the wall clock of the import, not on its input.
_IGNORED = {"versions": {"analysed_at"}}
_TABLES = (
    "documents",
    "blobs",
    "versions",
    "findings",
    "changes",
    "alerts",
    "fetches",
    "deliveries",
)

_BUILD = """
import sys
sys.path.insert(0, {code!r})
from pathlib import Path
from monitor.backfill import import_tree
from monitor.config import default_config
from monitor.pipeline import Pipeline
from monitor.store import Store
import monitor
assert Path(monitor.__file__).resolve().is_relative_to(Path({code!r}).resolve()), monitor.__file__
with Store({db!r}) as store:
    result = import_tree(Pipeline(default_config(), store, notify=False), Path({corpus!r}),
                         workers={workers})
    print(monitor.__file__, result.to_dict())
"""


def build(code: Path, db: Path, workers: int, corpus: Path) -> int:
    if db.exists():
        sys.exit(f"{db} exists; pass a new path")
    script = _BUILD.format(
        code=str(code.resolve()), db=str(db), corpus=str(corpus.resolve()), workers=workers
    )
    return subprocess.run([sys.executable, "-c", script], cwd=code, check=False).returncode


def _rows(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[tuple[object, ...]]]:
    cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
    keep = [c for c in cols if c not in _IGNORED.get(table, set())]
    order = "id" if "id" in cols else keep[0]
    sql = f'SELECT {", ".join(f"{chr(34)}{c}{chr(34)}" for c in keep)} FROM "{table}" ORDER BY "{order}"'
    return keep, list(conn.execute(sql))


def compare(a: Path, b: Path) -> int:
    ca, cb = sqlite3.connect(a), sqlite3.connect(b)
    differ = 0
    for table in _TABLES:
        cols_a, rows_a = _rows(ca, table)
        cols_b, rows_b = _rows(cb, table)
        if cols_a != cols_b:
            print(f"{table}: columns differ: {cols_a} / {cols_b}")
            differ += 1
            continue
        if rows_a == rows_b:
            print(f"{table}: {len(rows_a)} rows, identical")
            continue
        differ += 1
        print(f"{table}: {len(rows_a)} / {len(rows_b)} rows, DIFFERENT")
        for ra, rb in zip(rows_a, rows_b, strict=False):
            if ra != rb:
                for col, x, y in zip(cols_a, ra, rb, strict=True):
                    if x != y:
                        print(
                            f"  first difference: row {ra[0]!r} column {col}: {x!r:.200} / {y!r:.200}"
                        )
                break
    fts = [c.execute("SELECT count(*) FROM versions_fts").fetchone()[0] for c in (ca, cb)]
    print(f"versions_fts: {fts[0]} / {fts[1]} rows{'' if fts[0] == fts[1] else ', DIFFERENT'}")
    differ += fts[0] != fts[1]
    print("identical" if not differ else f"{differ} table(s) differ")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("code", type=Path)
    b.add_argument("db", type=Path)
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--corpus", type=Path, default=CORPUS)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.cmd == "build":
        return build(args.code, args.db, args.workers, args.corpus)
    return compare(args.a, args.b)


if __name__ == "__main__":
    raise SystemExit(main())

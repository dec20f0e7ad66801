"""How fast DuckDB stores call rows, the writer's ceiling, variant by variant.

    python benchmarks/insert_rate.py [--db RECORDING] [--rows N]

Takes the call rows of a recording (``--db``: record one with ``--max-calls-per-
function 0`` for realistic columns) or, without one, generates rows shaped like
a recursive program's (preorder ids, small depths and function numbers, short
durations), and inserts them into fresh files the way the writer does (a
registered numpy batch, one transaction each), varying one thing at a time:
batch size, which columns a row has, compression, DuckDB threads.  Prints rows
per second and bytes per row.  Nothing else runs meanwhile, so this is the
most one core (or two) can store.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import duckdb
import numpy as np

OUTCOME = "CASE outcome WHEN 0 THEN 'returned' WHEN 1 THEN 'raised' ELSE 'unfinished' END"
TABLE = """CREATE TABLE call (run INTEGER, id BIGINT, thread INTEGER, parent BIGINT,
    end_id BIGINT, depth INTEGER, function BIGINT, start_ns BIGINT, duration_ns BIGINT,
    outcome call_outcome, suspended_ns BIGINT, suspensions INTEGER)"""
INSERT = f"""INSERT INTO call SELECT 1, id, thread, NULLIF(parent, 0), end_id, depth, function,
    start_ns, duration_ns, {OUTCOME}, suspended_ns, suspensions FROM batch"""
NARROW_TABLE = """CREATE TABLE call (run INTEGER, id BIGINT, parent BIGINT, end_id BIGINT,
    depth INTEGER, function BIGINT, start_ns BIGINT, duration_ns BIGINT, outcome UTINYINT)"""
NARROW_INSERT = """INSERT INTO call SELECT 1, id, NULLIF(parent, 0), end_id, depth, function,
    start_ns, duration_ns, outcome FROM batch"""

#: (name, table, insert, rows per batch, settings)
VARIANTS = (
    ("as the writer does (122,880 rows a batch)", TABLE, INSERT, 122_880, ()),
    ("1,048,576 rows a batch", TABLE, INSERT, 1 << 20, ()),
    ("no thread or suspension columns", NARROW_TABLE, NARROW_INSERT, 122_880, ()),
    ("uncompressed", TABLE, INSERT, 122_880, ("PRAGMA force_compression='uncompressed'",)),
    (
        "2 threads, 1,048,576 rows, order not kept",
        TABLE,
        INSERT,
        1 << 20,
        ("SET threads TO 2", "SET preserve_insertion_order = false"),
    ),
)


def recorded_rows(path: str) -> dict[str, np.ndarray]:
    """The call rows of a recording's latest run, in the order calls ended."""
    con = duckdb.connect(path, read_only=True)
    try:
        columns = con.execute(
            """SELECT id, thread, coalesce(parent, 0) AS parent, end_id, depth, function,
                      start_ns, duration_ns, (outcome = 'raised')::UTINYINT AS outcome,
                      suspended_ns, suspensions
               FROM call WHERE run = (SELECT max(id) FROM run)
               ORDER BY start_ns + duration_ns, id"""
        ).fetchnumpy()
    finally:
        con.close()
    return {name: np.ascontiguousarray(values) for name, values in columns.items()}


def generated_rows(n: int) -> dict[str, np.ndarray]:
    """Rows shaped like fib's: binary recursion, preorder ids, ns durations."""
    rng = np.random.default_rng(7)
    ids = (1 << 40) + np.arange(1, n + 1, dtype=np.int64)
    depth = rng.integers(0, 25, n).astype(np.int32)
    return {
        "id": ids,
        "thread": np.ones(n, np.int32),
        "parent": np.maximum(ids - rng.integers(1, 30, n), 1 << 40),
        "end_id": ids + rng.integers(0, 60, n),
        "depth": depth,
        "function": rng.integers(1, 40, n).astype(np.int64),
        "start_ns": np.cumsum(rng.integers(50, 400, n)).astype(np.int64),
        "duration_ns": rng.integers(80, 5000, n).astype(np.int64),
        "outcome": (rng.random(n) < 0.01).astype(np.uint8),
        "suspended_ns": np.zeros(n, np.int64),
        "suspensions": np.zeros(n, np.int32),
    }


def insert_rate(
    rows: dict[str, np.ndarray], table: str, insert: str, batch: int, settings: tuple[str, ...]
) -> tuple[float, float]:
    """(rows per second, bytes per row) of inserting ``rows`` into a fresh file."""
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "insert.duckdb")
    con = duckdb.connect(path)
    con.execute("SET threads TO 1")
    for setting in settings:
        con.execute(setting)
    con.execute("CREATE TYPE call_outcome AS ENUM ('returned', 'raised', 'unfinished')")
    con.execute(table)
    total = len(rows["id"])
    began = time.perf_counter()
    for start in range(0, total, batch):
        con.register("batch", {k: v[start : start + batch] for k, v in rows.items()})
        con.execute(f"BEGIN; {insert}; COMMIT")
        con.unregister("batch")
    con.close()
    elapsed = time.perf_counter() - began
    size = os.path.getsize(path)
    os.unlink(path)
    os.rmdir(folder)
    return total / elapsed, size / total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", metavar="RECORDING", help="take the call rows of this recording")
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows to generate without --db")
    args = parser.parse_args(argv)
    rows = recorded_rows(args.db) if args.db else generated_rows(args.rows)
    source = args.db or "generated rows"
    print(f"{len(rows['id']):,} call rows ({source}), inserted into fresh files")
    print(f"{'variant':<44}{'rows/s':>14}{'bytes/row':>11}")
    for name, table, insert, batch, settings in VARIANTS:
        rate, size = insert_rate(rows, table, insert, batch, settings)
        print(f"{name:<44}{rate:>14,.0f}{size:>11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

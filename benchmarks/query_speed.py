"""How fast the query API answers on a recording of 10 million calls.

    python benchmarks/query_speed.py [--calls N] [--repeat R] [--keep PATH]

Builds a recording with DuckDB alone (no program runs): a root call, batches
of 100,000 calls each (a batch calls items, each item eight leaf functions),
and a recursion 1,000 calls deep.  Then it times, best of R, each question
issue 8 names, through ``scope.query.Recording`` as the CLI asks them:

* the latest run's calls of one function (a page of 50, and their count);
* the tree under a call with 100,000 descendants (folded, 500 fetched);
* the top 20 functions by self time;
* the path from the root to the deepest call;

and ``scope --help`` as a fresh process (the CLI's own start-up).  Prints a
table of seconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from scope.query import CallFilter, Recording
from scope.storage.database import open_for_writing

BATCH = 100_000  # calls in a batch's subtree, itself included
PER_ITEM = 9  # an item and its eight leaves
LEAVES = ("leaf_a", "leaf_b", "leaf_c", "leaf_d", "leaf_e", "leaf_f", "leaf_g", "leaf_h")
FUNCTIONS = ("main", "batch", "item", *LEAVES, "recurse")
DEPTH = 1_000
THREAD_BASE = 1 << 40


def build(path: str, batches: int) -> int:
    """Write the synthetic recording; returns how many calls it holds."""
    con = open_for_writing(path)
    con.execute("SET threads TO 2")
    total = 1 + batches * BATCH
    con.execute("BEGIN")
    con.execute(
        """INSERT INTO run (id, argv, cwd, python, platform, pid, scope_version, started_at,
                            start_ns, end_ns, status, exit_status, calls_stored)
           VALUES (1, ['synthetic.py'], '/', 'CPython', 'linux', 1, 'bench', now(), 0, ?,
                   'complete', 0, ?)""",
        [(total + DEPTH) * 100, total + DEPTH],
    )
    con.execute("INSERT INTO process (run, pid, parent_pid, number) VALUES (1, 1, 0, 0)")
    con.execute("INSERT INTO thread (run, id, native_id, ident, name) VALUES (1, 1, 1, 1, 'Main')")
    con.execute(
        """INSERT INTO function (run, id, key, module, qualname, file, line, kind, level)
           SELECT 1, i + 1, i + 1, 'synthetic', name, 'synthetic.py', 10 * i + 1, 'plain', 'calls'
           FROM (SELECT unnest(?::VARCHAR[]) AS name,
                        generate_subscripts(?::VARCHAR[], 1) - 1 AS i)""",
        [list(FUNCTIONS), list(FUNCTIONS)],
    )
    # Call n (0 = root) in preorder; m = n - 1 within the batches, r its place in its batch.
    con.execute(
        f"""
        INSERT INTO call
        WITH placed AS (
            SELECT n, (n - 1) // {BATCH} AS k, (n - 1) % {BATCH} AS r FROM range(0, ?) t(n)
        ),
        shaped AS (
            SELECT n,
                CASE WHEN n = 0 THEN NULL
                     WHEN r = 0 THEN 0
                     WHEN (r - 1) % {PER_ITEM} = 0 THEN 1 + k * {BATCH}
                     ELSE n - (r - 1) % {PER_ITEM} END AS parent,
                CASE WHEN n = 0 THEN ? - 1
                     WHEN r = 0 THEN n + {BATCH} - 1
                     WHEN (r - 1) % {PER_ITEM} = 0 THEN n + {PER_ITEM} - 1
                     ELSE n END AS last,
                CASE WHEN n = 0 THEN 0 WHEN r = 0 THEN 1
                     WHEN (r - 1) % {PER_ITEM} = 0 THEN 2 ELSE 3 END AS depth,
                CASE WHEN n = 0 THEN 1 WHEN r = 0 THEN 2
                     WHEN (r - 1) % {PER_ITEM} = 0 THEN 3
                     ELSE 3 + (r - 1) % {PER_ITEM} END AS function
            FROM placed
        )
        SELECT 1, {THREAD_BASE} + n + 1, 1, {THREAD_BASE} + parent + 1, {THREAD_BASE} + last + 1,
               depth, function, n * 100, (last - n) * 100 + 50, 'returned', 0, 0
        FROM shaped
        """,
        [total, total + DEPTH],
    )
    # The recursion: each call the only child of the one before, under the root.
    recurse = len(FUNCTIONS)
    con.execute(
        f"""
        INSERT INTO call
        SELECT 1, {THREAD_BASE} + n + 1, 1,
               {THREAD_BASE} + CASE WHEN n = ? THEN 1 ELSE n END,
               {THREAD_BASE} + ? , n - ? + 1, {recurse}, n * 100, (? - n) * 100, 'returned', 0, 0
        FROM range(?, ?) t(n)
        """,
        [total, total + DEPTH, total, total + DEPTH, total, total + DEPTH],
    )
    con.execute("COMMIT")
    con.execute("CHECKPOINT")
    con.close()
    return total + DEPTH


def best(repeat: int, question: Callable[[], object]) -> float:
    """The best wall time of ``repeat`` answers, seconds."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        question()
        times.append(time.perf_counter() - began)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000_000, help="about this many calls")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", metavar="PATH", help="build (or reuse) the recording here")
    args = parser.parse_args(argv)
    batches = max(args.calls // BATCH, 1)
    folder = tempfile.mkdtemp()
    path = args.keep or os.path.join(folder, "ten-million.duckdb")
    if not os.path.exists(path):
        began = time.perf_counter()
        calls = build(path, batches)
        print(f"built {calls:,} calls in {time.perf_counter() - began:.1f} s: {path}")
    with Recording(path) as recording:
        batch = THREAD_BASE + 2 + BATCH  # the second batch's call: 99,999 calls below it
        deepest = THREAD_BASE + 1 + batches * BATCH + DEPTH
        rows = [
            (
                "calls of one function (page of 50 + count)",
                best(args.repeat, lambda: recording.calls(CallFilter(function="leaf_c"), limit=50)),
            ),
            (
                "tree under a call with 100,000 descendants",
                best(args.repeat, lambda: recording.tree(batch, limit=500)),
            ),
            (
                "top 20 functions by self time",
                best(args.repeat, lambda: recording.function_stats(limit=20, by="self")),
            ),
            (
                f"path to a call {DEPTH + 1} deep",
                best(args.repeat, lambda: recording.path_to(deepest)),
            ),
        ]
        found = recording.calls(CallFilter(function="leaf_c"), limit=1).matched
        depth = len(recording.path_to(deepest))
    scope = [sys.executable, "-m", "scope", "--help"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
    rows.append(
        (
            "scope --help (fresh process)",
            best(args.repeat, lambda: subprocess.run(scope, capture_output=True, env=env)),
        )
    )
    print(f"{'question':<46}{'best s':>10}")
    for name, seconds in rows:
        print(f"{name:<46}{seconds:>10.3f}")
    print(f"(leaf_c matched {found:,} calls; the path holds {depth:,} calls)")
    if not args.keep:
        Path(path).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

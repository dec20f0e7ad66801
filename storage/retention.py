"""Dropping the calls of tests whose recording is not kept (``pytest --scope-keep``).

A test's phases are root calls, and every call a phase made on its thread has
an id in the phase's preorder interval ``(root, root.end_id]``, so forgetting
them is a range delete on ``call``, ``value``, ``suspension`` and ``call_aggregate``.  The
phase's root call itself stays, with its duration and outcome, and so does the
test's row; calls the test made on other threads are kept.

A root can be dropped only once its row is stored (its ``end_id`` is known
then, and every call under it was stored before it); ``discard_under``
reports which roots it found, and the writer keeps the others for later.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

_ROOTS = "SELECT id, end_id FROM call WHERE run = $run AND id IN (SELECT unnest($roots))"

#: a span's rows go, except its roots' own (the sums right under a root go too)
_DELETES = (
    "DELETE FROM call WHERE run = $run AND id BETWEEN $low AND $high "
    "AND id NOT IN (SELECT unnest($roots))",
    "DELETE FROM value WHERE run = $run AND call BETWEEN $low AND $high "
    "AND call NOT IN (SELECT unnest($roots))",
    "DELETE FROM task WHERE run = $run AND id BETWEEN $low AND $high "
    "AND id NOT IN (SELECT unnest($roots))",
    "DELETE FROM suspension WHERE run = $run AND call BETWEEN $low AND $high "
    "AND call NOT IN (SELECT unnest($roots))",
    "DELETE FROM call_aggregate WHERE run = $run AND parent BETWEEN $low AND $high",
)


def spans(found: list[tuple[int, int]]) -> list[tuple[int, int, list[int]]]:
    """(first id, last id, roots) of runs of subtrees that follow each other with no call
    between them: a test's phases, and consecutive tests, are one span.

    Ids are given out one after another on a thread, so root ``b`` follows root
    ``a``'s subtree directly when ``b == a.end_id + 1``.
    """
    merged: list[tuple[int, int, list[int]]] = []
    for root, end in sorted(found):
        if merged and root == merged[-1][1] + 1:
            low, _, roots = merged[-1]
            merged[-1] = (low, end, [*roots, root])
        else:
            merged.append((root, end, [root]))
    return merged


def discard_under(con: duckdb.DuckDBPyConnection, run: int, roots: Sequence[int]) -> set[int]:
    """Delete every call under the stored ones of ``roots`` (in a transaction of the caller's).

    Returns the roots that were stored, whose calls are now gone.  Each span of
    adjacent subtrees is one range delete per table, which DuckDB prunes by
    the id column's zone maps instead of joining the whole table.
    """
    rows = con.execute(_ROOTS, {"run": run, "roots": list(roots)}).fetchall()
    found = [(int(root), int(end)) for root, end in rows]
    for low, high, span_roots in spans(found):
        bounds = {"run": run, "low": low, "high": high}
        for statement in _DELETES:
            params = {**bounds, "roots": span_roots} if "$roots" in statement else bounds
            con.execute(statement, params)
    return {root for root, _ in found}

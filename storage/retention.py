"""Dropping the calls of tests whose recording is not kept (``pytest --scope-keep``).

A test's phases are root calls, and every call a phase made on its thread has
an id in the phase's preorder interval ``(root, root.end_id]``, so forgetting
them is a range delete on ``call``, ``value`` and ``call_aggregate``.  The
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

_DELETES = (
    f"DELETE FROM value USING ({_ROOTS}) r "
    "WHERE value.run = $run AND value.call > r.id AND value.call <= r.end_id",
    f"DELETE FROM call_aggregate USING ({_ROOTS}) r "
    "WHERE call_aggregate.run = $run AND call_aggregate.parent BETWEEN r.id AND r.end_id",
    f"DELETE FROM task USING ({_ROOTS}) r "
    "WHERE task.run = $run AND task.id > r.id AND task.id <= r.end_id",
    f"DELETE FROM call USING ({_ROOTS}) r "
    "WHERE call.run = $run AND call.id > r.id AND call.id <= r.end_id",
)


def discard_under(con: duckdb.DuckDBPyConnection, run: int, roots: Sequence[int]) -> set[int]:
    """Delete every call under the stored ones of ``roots`` (in a transaction of the caller's).

    Returns the roots that were stored, whose calls are now gone.
    """
    params = {"run": run, "roots": list(roots)}
    found = {int(row[0]) for row in con.execute(_ROOTS, params).fetchall()}
    if found:
        params["roots"] = sorted(found)
        for statement in _DELETES:
            con.execute(statement, params)
    return found

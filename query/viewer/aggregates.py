"""The viewer's lists over a window of the run: top functions, and a call's children.

Top functions for a window count each call for its part inside the window (as
the flame graph does: ``flame.ACTIVE_IN_WINDOW``); a call's children come a
page at a time, so a call with a million children is as quick to show as one
with three.
"""

from __future__ import annotations

from typing import Any

import duckdb
from scope.query.viewer.flame import ACTIVE_IN_WINDOW, IN_WINDOW

#: children in one page at most
MAX_PAGE = 200


def window_top(
    con: duckdb.DuckDBPyConnection,
    run: int,
    since: int,
    until: int,
    run_end: int,
    by: str = "self",
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The functions with the most self (or total) time between ``since`` and
    ``until`` (recorder clock), each call clipped to the window: ``calls`` counts
    the calls that overlap it.  The fields are those of ``FunctionStats`` the page
    shows (``active_ns`` is the total)."""
    order = "self_ns" if by == "self" else "active_ns"
    rows = con.execute(
        f"""
        WITH base AS MATERIALIZED (
            SELECT id, parent, function, {ACTIVE_IN_WINDOW} AS ns FROM call WHERE {IN_WINDOW}
        ),
        kids AS (SELECT parent, sum(ns) AS ns FROM base WHERE parent IS NOT NULL GROUP BY parent),
        per AS (
            SELECT b.function, count(*) AS calls, sum(b.ns)::BIGINT AS active_ns,
                   sum(greatest(b.ns - coalesce(k.ns, 0), 0))::BIGINT AS self_ns
            FROM base b LEFT JOIN kids k ON k.parent = b.id GROUP BY b.function
        )
        SELECT p.function, coalesce(f.module, '?'),
               coalesce(f.qualname, printf('<function %d>', p.function)),
               p.calls, p.active_ns, p.self_ns, f.file, f.line
        FROM per p LEFT JOIN function f ON f.run = $run AND f.id = p.function
        ORDER BY {order} DESC, p.calls DESC, 3 LIMIT $limit
        """,
        {"run": run, "since": since, "until": until, "run_end": run_end, "limit": limit},
    ).fetchall()
    names = ("function_id", "module", "qualname", "calls", "active_ns", "self_ns", "file", "line")
    return [dict(zip(names, row, strict=True)) for row in rows]


def children(
    con: duckdb.DuckDBPyConnection, run: int, call: int, offset: int, limit: int
) -> tuple[int, list[tuple[int, int, int, int, str]]]:
    """How many calls ``call`` made, and a page of them in call order, each as (id,
    function, start on the recorder clock, duration, outcome).  Its children are
    those in its id interval on its thread, as ``scope tree`` finds them."""
    row = con.execute(
        "SELECT thread, end_id FROM call WHERE run = $run AND id = $id", {"run": run, "id": call}
    ).fetchone()
    if row is None:
        raise ValueError(f"no call {call} in run {run}")
    params = {"run": run, "id": call, "thread": row[0], "last": row[1] or call}
    within = "run = $run AND thread = $thread AND id > $id AND id <= $last AND parent = $id"
    counted = con.execute(f"SELECT count(*) FROM call WHERE {within}", params).fetchone()
    page = con.execute(
        f"""SELECT id, function, start_ns, duration_ns, outcome::VARCHAR FROM call
            WHERE {within} ORDER BY id LIMIT $limit OFFSET $offset""",
        {**params, "limit": max(min(limit, MAX_PAGE), 1), "offset": max(offset, 0)},
    ).fetchall()
    return (counted[0] if counted else 0), page

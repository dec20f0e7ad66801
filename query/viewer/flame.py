"""The flame graph of a run, or of a window of it: calls merged by their stack.

A node is a path of functions from a root call: every call whose callers'
functions, root first, are the same is one node.  A node's ``total`` is the
active time of its calls (their duration less the time they were suspended),
its ``self`` that less its calls' children's, so that a function's self time
summed over the nodes is what ``scope top`` gives it.

For a window, a call counts for the part of it inside the window (its
suspended time shared out in proportion, as where it fell is not stored);
calls summed past ``max_calls_per_function`` have no times, so they are in
the whole run's graph only, under their nearest stored caller.  Paths deeper
than MAX_DEPTH end in one node for every call below; past MAX_NODES nodes,
the smallest are merged into one "other" node under their parent.  The
answer says how many nodes were merged or cut, so the page can say so.  A
call that never ended counts until the run's end, as the timeline draws it
(``scope top`` counts none of its time); a generator resumed on another thread
than its maker's is under its maker here (``scope top`` charges the calls it
made there to that thread's call around them), so self times can differ there.

All of it is counted in DuckDB: the answer is bounded by MAX_NODES, not by
the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

#: nodes in one answer at most (the smallest past it are merged per parent)
MAX_NODES = 2000
#: levels of the stack followed; the calls below are one node per path there
MAX_DEPTH = 128
#: the function id of a node that stands for merged nodes (none of the run's)
OTHER = -1
#: the function id of a node that stands for every call below MAX_DEPTH
DEEPER = -2

_END = "CASE WHEN duration_ns < 0 THEN $run_end ELSE start_ns + duration_ns END"
#: the calls that overlap the window [$since, $until) (recorder clock)
IN_WINDOW = f"run = $run AND start_ns < $until AND {_END} > $since"
_CLIPPED = f"(least({_END}, $until) - greatest(start_ns, $since))"
#: a call's active time in the window: its clipped length, less its suspended time
#: in proportion (all of it if the whole call is in the window)
ACTIVE_IN_WINDOW = f"""greatest({_CLIPPED} - CASE
    WHEN suspended_ns <= 0 OR duration_ns <= 0 THEN 0
    WHEN {_CLIPPED} = duration_ns THEN suspended_ns
    ELSE CAST(round(suspended_ns * {_CLIPPED} / duration_ns) AS BIGINT) END, 0)"""


@dataclass
class Flame:
    """A flame graph: nodes, each after its parent, the roots' parent None."""

    since: int
    until: int
    #: [parent index or None, function id (OTHER, DEEPER), total ns, self ns, calls]
    nodes: list[list[int | None]] = field(default_factory=list)
    #: nodes merged into "other" nodes (past MAX_NODES)
    merged: int = 0
    #: whether calls were cut below MAX_DEPTH
    cut: bool = False
    #: whether calls summed past max_calls_per_function are left out (a window's graph)
    summed_left_out: bool = False


def flame(
    con: duckdb.DuckDBPyConnection,
    run: int,
    origin: int,
    run_end: int,
    since: int | None = None,
    until: int | None = None,
    within: int | None = None,
) -> Flame:
    """The flame graph of ``run``'s calls between ``since`` and ``until`` (ns since
    ``origin``, the run's first call; both None: the whole run), or of the calls
    under the call ``within`` (itself the one root)."""
    whole = since is None and until is None
    lo = origin + (since or 0)
    hi = run_end if until is None else origin + until
    params: dict[str, object] = {
        "run": run,
        "since": lo,
        "until": max(hi, lo + 1),
        "run_end": run_end,
        "depth": MAX_DEPTH,
        "nodes": MAX_NODES,
    }
    # The whole run: every call, though a call of no time at its first or last ns
    # overlaps no window.
    picked = "run = $run" if whole else IN_WINDOW
    root = "b.parent IS NULL" if whole else _ROOT_IN_WINDOW
    if within is not None:
        row = con.execute(
            "SELECT thread, end_id FROM call WHERE run = $run AND id = $id",
            {"run": run, "id": within},
        ).fetchone()
        if row is None:
            raise ValueError(f"no call {within} in run {run}")
        picked = "run = $run AND thread = $thread AND id BETWEEN $within AND $last"
        params.update(thread=row[0], within=within, last=row[1] or within)
        root = "b.id = $within"
    summed = whole and _has_summed(con, run)
    rows = con.execute(_query(picked, root, summed), params).fetchall()
    answer = Flame(since or 0, (run_end - origin) if until is None else until)
    answer.summed_left_out = not whole and _has_summed(con, run)
    _build(answer, rows)
    return answer


def _has_summed(con: duckdb.DuckDBPyConnection, run: int) -> bool:
    row = con.execute(
        "SELECT EXISTS (SELECT 1 FROM call_aggregate WHERE run = ?)", [run]
    ).fetchone()
    return bool(row and row[0])


#: a call is a root of a window's graph if its caller is not in the window (a task's
#: root coroutine can outlive the coroutine that created it)
_ROOT_IN_WINDOW = "b.parent IS NULL OR NOT EXISTS (SELECT 1 FROM base p WHERE p.id = b.parent)"


def _query(picked: str, root: str, summed: bool) -> str:
    """Of the calls ``picked`` (a condition) picks, those ``root`` finds the roots:
    the nodes, largest first, as (node, parent node, function, depth, total, self,
    calls, nodes), MAX_NODES of them at most, then one row per parent of nodes left
    out (node NULL) summing them, with how many they are."""
    aggregates = (
        """SELECT parent, function, total_ns AS ns, coalesce(self_ns, 0) AS self_ns, calls,
                  coalesce(direct_ns, 0) AS direct_ns
           FROM call_aggregate WHERE run = $run"""
        if summed
        else """SELECT NULL::BIGINT AS parent, NULL::BIGINT AS function, 0 AS ns, 0 AS self_ns,
                  0 AS calls, 0 AS direct_ns WHERE FALSE"""
    )
    return f"""
    WITH RECURSIVE
    base AS MATERIALIZED (
        SELECT id, parent, function, {ACTIVE_IN_WINDOW} AS ns
        FROM call WHERE {picked}
    ),
    summed AS MATERIALIZED ({aggregates}),
    kids AS (
        SELECT parent, sum(ns) AS ns FROM (
            SELECT parent, ns FROM base WHERE parent IS NOT NULL
            UNION ALL SELECT parent, direct_ns FROM summed
        ) GROUP BY parent
    ),
    w AS MATERIALIZED (
        SELECT b.id, b.parent, b.function, b.ns, greatest(b.ns - coalesce(k.ns, 0), 0) AS self_ns,
               {root} AS root, k.parent IS NOT NULL AS has_kids
        FROM base b LEFT JOIN kids k ON k.parent = b.id
    ),
    inner_calls AS MATERIALIZED (SELECT * FROM w WHERE has_kids),
    -- Most calls call none: they are placed under their caller's node, out of the
    -- walk down the stack.
    leaves AS (SELECT parent, function, ns, self_ns FROM w WHERE NOT has_kids AND NOT root),
    walk(id, node, up, function, depth, ns, self_ns) AS (
        SELECT id, hash(function, 'root'), NULL::UBIGINT, function, 0, ns, self_ns
        FROM inner_calls WHERE root
        UNION ALL
        SELECT c.id, hash(walk.node, c.function), walk.node, c.function, walk.depth + 1,
               c.ns, c.self_ns
        FROM inner_calls c JOIN walk ON c.parent = walk.id
        WHERE walk.depth < $depth AND NOT c.root
    ),
    placed AS (
        SELECT node, up, function, depth, ns, self_ns, 1 AS calls FROM walk
        UNION ALL
        SELECT hash(function, 'root'), NULL, function, 0, ns, self_ns, 1 FROM w
        WHERE root AND NOT has_kids
        UNION ALL
        SELECT hash(walk.node, l.function), walk.node, l.function, walk.depth + 1, l.ns,
               l.self_ns, 1
        FROM leaves l JOIN walk ON l.parent = walk.id WHERE walk.depth < $depth
        UNION ALL
        SELECT hash(walk.node, s.function), walk.node, s.function, walk.depth + 1, s.ns,
               s.self_ns, s.calls
        FROM summed s JOIN walk ON s.parent = walk.id WHERE walk.depth < $depth
        UNION ALL
        SELECT hash(function, 'root'), NULL, function, 0, ns, self_ns, calls FROM summed
        WHERE parent IS NULL
    ),
    nodes AS (
        SELECT node, any_value(up) AS up, any_value(function) AS function,
               any_value(depth) AS depth, sum(ns)::BIGINT AS total, sum(self_ns)::BIGINT AS self,
               sum(calls)::BIGINT AS calls
        FROM placed GROUP BY node
    ),
    kept AS (SELECT * FROM nodes ORDER BY total DESC, depth, node LIMIT $nodes)
    SELECT node, up, function, depth, total, self, calls, (SELECT count(*) FROM nodes) FROM kept
    UNION ALL
    SELECT NULL, up, NULL, any_value(depth), sum(total)::BIGINT, sum(total)::BIGINT,
           sum(calls)::BIGINT, count(*)
    FROM nodes WHERE node NOT IN (SELECT node FROM kept) GROUP BY up
    """


def _build(answer: Flame, rows: list[tuple[Any, ...]]) -> None:
    """The nodes as a list, each after its parent.  A node left out is in its
    parent's "other" node (its calls, those of the nodes merged, not of the calls
    below them); a node whose parent was left out is in an "other" node above."""
    kept = sorted((r for r in rows if r[0] is not None), key=lambda r: (r[3], r[0]))
    index: dict[int, int] = {}
    for node, up, function, depth, total, self_ns, calls, _ in kept:
        parent = None if up is None else index.get(up)
        if up is not None and parent is None:  # its parent was left out
            continue
        index[node] = len(answer.nodes)
        answer.nodes.append([parent, function, total, self_ns, calls])
        if depth == MAX_DEPTH and total > self_ns:
            answer.cut = True
            answer.nodes.append([index[node], DEEPER, total - self_ns, total - self_ns, None])
    for _, up, _, _, total, self_ns, calls, _ in (r for r in rows if r[0] is None):
        if up is None or up in index:
            parent = None if up is None else index[up]
            answer.nodes.append([parent, OTHER, total, self_ns, calls])
    every = kept[0][7] if kept else 0
    answer.merged = every - len(index)


def bottom_up(nodes: list[list[int | None]]) -> list[list[int | None]]:
    """The graph sized by self time: its roots are the functions time was spent in
    (their self time), each node's children the callers it was spent under.

    Made from the top-down ``nodes`` (bounded, so this is cheap): each node's self
    time is added along its path from itself up to its root.  A node's "total" is
    the self time spent under that path; its "self", the part where the path is
    the whole stack; calls are not counted (None)."""
    out: list[list[int | None]] = []
    index: dict[tuple[int | None, int | None], int] = {}
    for at, node in enumerate(nodes):
        spent = node[3] or 0
        if spent <= 0:
            continue
        parent: int | None = None
        step: int | None = at
        while step is not None:
            function = nodes[step][1]
            key = (parent, function)
            found = index.get(key)
            if found is None:
                found = index[key] = len(out)
                out.append([parent, function, 0, 0, None])
            out[found][2] = (out[found][2] or 0) + spent
            parent, step = found, nodes[step][0]
        out[parent][3] = (out[parent][3] or 0) + spent  # type: ignore[index]
    return out

"""Exceptions of a run: where each was raised, the calls it left, and where it stopped.

An exception that left recorded calls is a row of the ``exception`` view: the
calls it left, innermost first, linked as it left them (``value.raised_in``),
and the recorded call it did not leave, its catcher.  An exception with no
catcher left every recorded call: it was caught by code that is not recorded,
or it ended the program (then the run's ``uncaught exception`` event names the
call it was raised in).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scope.query.calls import CALL_ROW_COLUMNS, name_condition
from scope.query.results import CallNode, ExceptionPath

if TYPE_CHECKING:  # loaded only by the queries that open the file themselves
    import duckdb


def find_exceptions(
    con: duckdb.DuckDBPyConnection, run: int, type_pattern: str | None, limit: int
) -> list[ExceptionPath]:
    """The run's exceptions in the order they were raised, at most ``limit`` of them.

    ``type_pattern`` keeps those whose type name matches (a glob, or a part of it).
    """
    condition, params = "TRUE", {}
    if type_pattern is not None:
        condition, value = name_condition("e.type", "type", type_pattern)
        params = {"type": value}
    rows = con.execute(
        f"""SELECT e.raised_in, e.type, e.exception, e.propagated_through, e.caught_in,
                   EXISTS (SELECT 1 FROM event v WHERE v.run = e.run
                           AND v.kind = 'uncaught exception' AND v.call = e.raised_in)
            FROM exception e JOIN call c ON c.run = e.run AND c.id = e.raised_in
            WHERE e.run = $run AND {condition}
            ORDER BY c.start_ns + greatest(c.duration_ns, 0), e.raised_in
            LIMIT $limit""",
        {"run": run, "limit": limit, **params},
    ).fetchall()
    wanted = {call for row in rows for call in [*row[3], row[4]] if call is not None}
    nodes = {
        row[0]: CallNode(*row)
        for row in con.execute(
            f"""SELECT {CALL_ROW_COLUMNS} FROM call c
                LEFT JOIN function f ON f.run = c.run AND f.id = c.function
                WHERE c.run = ? AND c.id IN (SELECT unnest(?::BIGINT[]))""",
            [run, sorted(wanted)],
        ).fetchall()
    }
    return [
        ExceptionPath(
            type=type_name,
            summary=summary,
            raised_in=nodes[raised_in],
            left=[nodes[call] for call in left],
            caught_in=nodes.get(caught_in) if caught_in is not None else None,
            uncaught=bool(uncaught),
        )
        for raised_in, type_name, summary, left, caught_in, uncaught in rows
    ]

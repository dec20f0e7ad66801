"""Exceptions of a run: where each was raised, the calls it left, and where it stopped,
one by one or grouped with the exceptions alike.

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
from scope.query.results.calls import CallNode
from scope.query.results.exceptions import ExceptionKind, ExceptionPath

if TYPE_CHECKING:  # loaded only by the queries that open the file themselves
    import duckdb


def find_exceptions(
    con: duckdb.DuckDBPyConnection, run: int, type_pattern: str | None, limit: int
) -> list[ExceptionPath]:
    """The run's exceptions in the order they were raised, at most ``limit`` of them.

    ``type_pattern`` keeps those whose type name matches (a glob, or a part of it).
    """
    condition, params = _type_condition(type_pattern)
    rows = con.execute(
        f"""SELECT e.raised_in FROM exception e JOIN call c ON c.run = e.run AND c.id = e.raised_in
            WHERE e.run = $run AND {condition}
            ORDER BY c.start_ns + greatest(c.duration_ns, 0), e.raised_in
            LIMIT $limit""",
        {"run": run, "limit": limit, **params},
    ).fetchall()
    paths = _paths(con, run, [row[0] for row in rows])
    return [paths[row[0]] for row in rows]


def find_exception_kinds(
    con: duckdb.DuckDBPyConnection, run: int, type_pattern: str | None, limit: int
) -> list[ExceptionKind]:
    """The run's exceptions grouped by type, message shape, raising and catching
    function, the group with the newest exception first, at most ``limit`` groups."""
    condition, params = _type_condition(type_pattern)
    rows = con.execute(
        f"""WITH seen AS (
                SELECT e.raised_in, e.type,
                       replace(regexp_replace(regexp_replace(coalesce(e.exception, e.type, '?'),
                           '0x[0-9a-fA-F]+', chr(1), 'g'), '[0-9]+', 'N', 'g'), chr(1), '0x…')
                           AS shape,
                       c.function AS raised_by, k.function AS caught_by,
                       e.caught_in IS NULL AS left_all,
                       c.start_ns + greatest(c.duration_ns, 0) AS raised_ns
                FROM exception e JOIN call c ON c.run = e.run AND c.id = e.raised_in
                LEFT JOIN call k ON k.run = e.run AND k.id = e.caught_in
                WHERE e.run = $run AND {condition})
            SELECT count(*), any_value(shape), arg_max(raised_in, raised_ns) FROM seen
            GROUP BY type, shape, raised_by, caught_by, left_all
            ORDER BY max(raised_ns) DESC, arg_max(raised_in, raised_ns) DESC
            LIMIT $limit""",
        {"run": run, "limit": limit, **params},
    ).fetchall()
    paths = _paths(con, run, [row[2] for row in rows])
    return [ExceptionKind(count, shape, paths[example]) for count, shape, example in rows]


def _type_condition(type_pattern: str | None) -> tuple[str, dict[str, object]]:
    if type_pattern is None:
        return "TRUE", {}
    condition, value = name_condition("e.type", "type", type_pattern)
    return condition, {"type": value}


def _paths(
    con: duckdb.DuckDBPyConnection, run: int, raised_in: list[int]
) -> dict[int, ExceptionPath]:
    """The way each exception raised in ``raised_in`` went, by that call."""
    rows = con.execute(
        """SELECT e.raised_in, e.type, e.exception, e.propagated_through, e.caught_in,
                  EXISTS (SELECT 1 FROM event v WHERE v.run = e.run
                          AND v.kind = 'uncaught exception' AND v.call = e.raised_in)
           FROM exception e WHERE e.run = ? AND e.raised_in IN (SELECT unnest(?::BIGINT[]))""",
        [run, raised_in],
    ).fetchall()
    wanted = {call for row in rows for call in [row[0], *row[3], row[4]] if call is not None}
    ended_by = _ending_system_exit(con, run)
    nodes = {
        row[0]: CallNode(*row)
        for row in con.execute(
            f"""SELECT {CALL_ROW_COLUMNS} FROM call c
                LEFT JOIN function f ON f.run = c.run AND f.id = c.function
                WHERE c.run = ? AND c.id IN (SELECT unnest(?::BIGINT[]))""",
            [run, sorted(wanted)],
        ).fetchall()
    }
    return {
        raised: ExceptionPath(
            type=type_name,
            summary=summary,
            raised_in=nodes[raised],
            left=[nodes[call] for call in left],
            caught_in=nodes.get(caught_in) if caught_in is not None else None,
            uncaught=bool(uncaught),
            exit_status=ended_by[1] if ended_by and ended_by[0] == raised else None,
        )
        for raised, type_name, summary, left, caught_in, uncaught in rows
    }


def _ending_system_exit(con: duckdb.DuckDBPyConnection, run: int) -> tuple[int, int] | None:
    """(the call it was raised in, the exit status) of the SystemExit that ended the run:
    the run's last exception, if it is one that left every recorded call."""
    row = con.execute(
        """SELECT e.raised_in, e.type, e.caught_in, r.exit_status
           FROM exception e JOIN call c ON c.run = e.run AND c.id = e.raised_in
           JOIN run r ON r.id = e.run
           WHERE e.run = ? ORDER BY c.start_ns + greatest(c.duration_ns, 0) DESC, e.raised_in DESC
           LIMIT 1""",
        [run],
    ).fetchone()
    if row is None or row[1] != "SystemExit" or row[2] is not None or row[3] is None:
        return None
    return int(row[0]), int(row[3])

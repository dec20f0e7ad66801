"""Comparing two runs, or two tests: which calls, exceptions and return values differ.

Each side is a run, or a test's calls in a run (those under its phases' root
calls).  Functions are compared by ``module.qualname``, so a run of changed
code still lines up with an older one.  Calls are counted whether stored one
by one or summed past their budget; exceptions are counted per type and the
function they were raised in; return values (recorded at ``args`` level) are
compared as the set of distinct summaries each function returned (objects
summarised by identity compare by type: their addresses differ run to run).  A test's
own phase calls are left out: its node id makes them differ by name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scope.query.results.diff import CountChange, ExceptionChange, RecordingDiff, ReturnChange

if TYPE_CHECKING:  # loaded only by the queries that open the file themselves
    import duckdb

#: distinct return values listed per function and side
SHOWN_RETURNS = 5


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a run, or the calls of a test in it."""

    label: str
    run: int
    #: root calls of the test's phases; empty: the whole run
    roots: tuple[int, ...] = ()
    #: the test's outcome, for tests
    outcome: str | None = None


def _calls_of(side: Side) -> str:
    """SQL for the ids and function numbers of the side's calls (parameters $run, $roots)."""
    if not side.roots:
        return "SELECT id, function FROM call WHERE run = $run"
    return """SELECT c.id, c.function FROM call c
              JOIN call r ON r.run = c.run AND c.thread = r.thread
                         AND c.id BETWEEN r.id AND r.end_id
              WHERE c.run = $run AND r.id IN (SELECT unnest($roots::BIGINT[]))"""


def _name() -> str:
    return "f.module || '.' || f.qualname"


def _counts(con: duckdb.DuckDBPyConnection, side: Side) -> Counter[str]:
    rows = con.execute(
        f"""WITH mine AS ({_calls_of(side)}),
                 counted AS (
                     SELECT function, count(*) AS calls FROM mine GROUP BY function
                     UNION ALL
                     SELECT a.function, sum(a.calls) FROM call_aggregate a
                     WHERE a.run = $run AND ($whole OR a.parent IN (SELECT id FROM mine))
                     GROUP BY a.function)
            SELECT {_name()}, sum(calls)::BIGINT FROM counted k
            JOIN function f ON f.run = $run AND f.id = k.function
            WHERE f.kind <> 'test' GROUP BY ALL""",
        _params(side, whole=True),
    ).fetchall()
    return Counter({name: int(calls) for name, calls in rows})


def _exceptions(con: duckdb.DuckDBPyConnection, side: Side) -> Counter[tuple[str, str]]:
    rows = con.execute(
        f"""WITH mine AS ({_calls_of(side)})
            SELECT coalesce(e.type, '?'), {_name()}, count(*) FROM exception e
            JOIN call c ON c.run = e.run AND c.id = e.raised_in
            JOIN function f ON f.run = e.run AND f.id = c.function
            WHERE e.run = $run AND e.raised_in IN (SELECT id FROM mine) AND f.kind <> 'test'
            GROUP BY ALL""",
        _params(side),
    ).fetchall()
    return Counter({(kind, where): int(n) for kind, where, n in rows})


def _returns(con: duckdb.DuckDBPyConnection, side: Side) -> dict[str, set[str]]:
    rows = con.execute(
        f"""WITH mine AS ({_calls_of(side)})
            SELECT DISTINCT {_name()},
                   CASE WHEN v.kind = 'object' THEN '<' || v.type || '>' ELSE v.value END
            FROM value v
            JOIN function f ON f.run = v.run AND f.id = v.function
            WHERE v.run = $run AND v.role = 'return' AND v.call IN (SELECT id FROM mine)""",
        _params(side),
    ).fetchall()
    found: dict[str, set[str]] = {}
    for name, value in rows:
        found.setdefault(name, set()).add(value)
    return found


def _params(side: Side, whole: bool = False) -> dict[str, object]:
    """The side's query parameters; ``whole`` adds $whole (no test: the whole run)."""
    params: dict[str, object] = {"run": side.run}
    if whole:
        params["whole"] = not side.roots
    if side.roots:
        params["roots"] = list(side.roots)
    return params


def compare(con: duckdb.DuckDBPyConnection, before: Side, after: Side) -> RecordingDiff:
    """What differs from ``before`` to ``after``: biggest count changes first."""
    counts = (_counts(con, before), _counts(con, after))
    calls = [
        CountChange(name, counts[0][name], counts[1][name])
        for name in sorted(set(counts[0]) | set(counts[1]))
        if counts[0][name] != counts[1][name]
    ]
    calls.sort(key=lambda c: (-abs(c.after - c.before), c.function))
    raised = (_exceptions(con, before), _exceptions(con, after))
    exceptions = [
        ExceptionChange(kind, where, raised[0][kind, where], raised[1][kind, where])
        for kind, where in sorted(set(raised[0]) | set(raised[1]))
        if raised[0][kind, where] != raised[1][kind, where]
    ]
    values = (_returns(con, before), _returns(con, after))
    returns = []
    for name in sorted(set(values[0]) & set(values[1])):
        only_before = sorted(values[0][name] - values[1][name])
        only_after = sorted(values[1][name] - values[0][name])
        if only_before or only_after:
            returns.append(
                ReturnChange(name, only_before[:SHOWN_RETURNS], only_after[:SHOWN_RETURNS])
            )
    outcomes = None
    if before.outcome is not None and after.outcome is not None:
        outcomes = (before.outcome, after.outcome)
    return RecordingDiff(before.label, after.label, calls, exceptions, returns, outcomes)

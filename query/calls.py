"""Finding calls: the filters of ``scope calls`` and ``Recording.calls`` as SQL.

A ``CallFilter`` names what to keep; ``where_clause`` turns it into one SQL
condition on ``call c`` (joined to ``function f``) with named parameters, so
that the count and the page of a listing share it.  Only calls stored one by
one can be listed: calls past their function's budget exist as sums
(``call_aggregate``) and are counted apart.

Function and module patterns match like ``scope calls --function``: a pattern
with ``*`` or ``?`` is a glob over the whole name (``Parser.*``), any other is
a case-insensitive part of it; the function's name is its qualified name, and
for a pattern with a dot also ``module.qualname`` (so ``main`` does not name
every function of ``__main__``, and ``app.parse`` names ``parse`` of ``app``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from scope.errors import QueryError

#: the columns of a listed call (``CallRow``), with the function's names
CALL_ROW_COLUMNS = """c.id, c.thread, c.parent, c.depth, coalesce(f.module, '?'),
       coalesce(f.qualname, printf('<function %d>', c.function)),
       c.start_ns, c.duration_ns, c.outcome, f.file, f.line"""

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_UNITS.update(min=60 * _UNITS["s"], h=3600 * _UNITS["s"])
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|min|s|h)?\s*$")
OUTCOMES = ("returned", "raised", "unfinished")


def parse_duration(text: str) -> int:
    """Nanoseconds in ``text``: ``250ms``, ``1.5s``, ``40us``, ``900ns``, ``2min``, ``1h``
    (a bare number is seconds)."""
    match = _DURATION.match(text)
    if not match:
        raise QueryError(f"not a duration: {text!r} (examples: 250ms, 1.5s, 40us)")
    number, unit = match.groups()
    return round(float(number) * _UNITS[unit or "s"])


def name_condition(column: str, parameter: str, pattern: str) -> tuple[str, str]:
    """SQL that matches ``column`` against ``pattern`` (glob or part), and the bound value."""
    if any(c in pattern for c in "*?"):
        return f"{column} GLOB ${parameter}", pattern
    return f"contains(lower({column}), ${parameter})", pattern.lower()


@dataclass(frozen=True)
class CallFilter:
    """Which calls to keep; every field left ``None`` keeps all."""

    #: qualified name or ``module.qualname``: a glob (``Parser.*``) or a part of it
    function: str | None = None
    #: module name: a glob or a part of it
    module: str | None = None
    #: ``NAME=TEXT`` (the argument NAME's summary contains TEXT) or ``TEXT`` (any argument's)
    argument: str | None = None
    #: the return value's summary contains this
    returned: str | None = None
    #: duration bounds, nanoseconds (inclusive)
    min_ns: int | None = None
    max_ns: int | None = None
    #: a time window, nanoseconds from the run's start: calls still running at
    #: ``since_ns`` or begun later, and begun by ``until_ns`` (inclusive)
    since_ns: int | None = None
    until_ns: int | None = None
    #: thread slot (``thread.id``)
    thread: int | None = None
    #: asyncio task: its root call (``task.id``); keeps the calls made in the task
    task: int | None = None
    #: process id: keeps that process's calls
    pid: int | None = None
    #: root calls of a test's phases (``Recording.find_test`` resolves a name)
    test_roots: tuple[int, ...] = field(default=())
    #: returned, raised or unfinished
    outcome: str | None = None


def function_clause(found: CallFilter) -> tuple[list[str], dict[str, object]]:
    """The filter's conditions on ``function f`` alone (its name patterns), and parameters."""
    conditions: list[str] = []
    params: dict[str, object] = {}
    if found.function is not None:
        by_name, params["function"] = name_condition("f.qualname", "function", found.function)
        if "." in found.function:
            full, _ = name_condition("(f.module || '.' || f.qualname)", "function", found.function)
            by_name = f"({by_name} OR {full})"
        conditions.append(by_name)
    if found.module is not None:
        condition, params["module"] = name_condition("f.module", "module", found.module)
        conditions.append(condition)
    return conditions, params


def _window(found: CallFilter, params: dict[str, object]) -> list[str]:
    """Conditions of the filter's time window (a call that never ended runs to the end)."""
    since, until = found.since_ns, found.until_ns
    if since is not None and until is not None and since > until:
        raise QueryError("--since is later than --until: no call could match")
    run_start = "(SELECT start_ns FROM run WHERE id = $run)"
    conditions = []
    if found.since_ns is not None:
        params["since_ns"] = found.since_ns
        conditions.append(
            f"(c.duration_ns < 0 OR c.start_ns + c.duration_ns >= {run_start} + $since_ns)"
        )
    if found.until_ns is not None:
        params["until_ns"] = found.until_ns
        conditions.append(f"c.start_ns <= {run_start} + $until_ns")
    return conditions


def where_clause(found: CallFilter, run: int) -> tuple[str, dict[str, object]]:
    """The filter as a condition on ``call c`` / ``function f``, and its parameters."""
    by_function, params = function_clause(found)
    conditions = ["c.run = $run", *by_function]
    params["run"] = run
    if found.argument is not None:
        name, _, text = found.argument.partition("=")
        if not _:
            name, text = "", found.argument
        params["arg_name"], params["arg_text"] = name, text
        conditions.append(
            """c.id IN (SELECT call FROM value WHERE run = $run AND role = 'argument'
                        AND ($arg_name = '' OR name = $arg_name)
                        AND contains(value, $arg_text))"""
        )
    if found.returned is not None:
        params["returned"] = found.returned
        conditions.append(
            """c.id IN (SELECT call FROM value WHERE run = $run AND role = 'return'
                        AND contains(value, $returned))"""
        )
    if found.min_ns is not None:
        params["min_ns"] = found.min_ns
        conditions.append("c.duration_ns >= $min_ns")
    if found.max_ns is not None:
        params["max_ns"] = found.max_ns
        conditions.append("c.duration_ns BETWEEN 0 AND $max_ns")
    conditions += _window(found, params)
    if found.thread is not None:
        params["thread"] = found.thread
        conditions.append("c.thread = $thread")
    if found.task is not None:
        params["task"] = found.task
        conditions.append(
            """c.id IN (WITH RECURSIVE made(id) AS (
                            SELECT $task
                            UNION ALL
                            SELECT k.id FROM call k JOIN made m ON k.parent = m.id
                            WHERE k.run = $run)
                        SELECT id FROM made)"""
        )
    if found.pid is not None:
        params["pid"] = found.pid
        conditions.append(
            """c.id >> 52 = (SELECT number FROM process WHERE run = $run AND pid = $pid)"""
        )
    if found.test_roots:
        params["test_roots"] = list(found.test_roots)
        conditions.append(
            """EXISTS (SELECT 1 FROM call r WHERE r.run = $run
                       AND r.id IN (SELECT unnest($test_roots::BIGINT[]))
                       AND c.thread = r.thread AND c.id BETWEEN r.id AND r.end_id)"""
        )
    if found.outcome is not None:
        if found.outcome not in OUTCOMES:
            raise QueryError(f"no outcome {found.outcome!r}: returned, raised or unfinished")
        params["outcome"] = found.outcome
        conditions.append("c.outcome = $outcome")
    return " AND ".join(conditions), params

"""A run's calls as the exporters read them: thread by thread, in call order, in chunks.

Timeline viewers want each thread's slices properly nested.  Recorded calls
nest by their parent links, but a generator or coroutine stays open while its
caller goes on (it is suspended), so its wall-time interval can overlap calls
that are not its own.  ``nested`` therefore clamps each call's end into the
interval of the call it is drawn inside: what is drawn is always a well-formed
tree, and a call that never ended is drawn until the end of its enclosing call
(or of the run).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
from scope.query.export.selection import Selection
from scope.query.ids import SLOT_PROCESS_SHIFT

#: rows fetched from DuckDB at a time
CHUNK = 65_536


@dataclass(frozen=True)
class FunctionInfo:
    """What a viewer shows of a function."""

    module: str
    qualname: str
    file: str | None
    line: int | None


@dataclass(frozen=True)
class RunInfo:
    """The run's frame: when it began and ended, its processes and threads."""

    run: int
    argv: list[str]
    start_ns: int
    end_ns: int
    #: wall-clock time of start_ns, in ns since the Unix epoch
    start_unix_ns: int
    #: process number (call.id >> 52) -> pid
    pids: dict[int, int]
    #: thread slot -> its name and its process's pid, as the exports label it
    threads: dict[int, str]
    calls: int


@dataclass(frozen=True)
class DrawnCall:
    """A call as drawn: its times (ns since the run began) clamped into its enclosing call."""

    id: int
    thread: int
    parent: int | None
    function: int
    start: int
    end: int
    outcome: str
    #: its recorded duration (-1 if it never ended), before any clamping
    duration_ns: int
    #: how many drawn calls it is drawn inside
    depth: int


def run_info(con: duckdb.DuckDBPyConnection, run: int) -> RunInfo:
    """The run's frame, for the exporters' headers."""
    row = con.execute(
        """SELECT argv, start_ns,
                  coalesce(end_ns, (SELECT max(start_ns + greatest(duration_ns, 0))
                                    FROM call WHERE run = r.id), start_ns),
                  epoch_ns(started_at),
                  (SELECT count(*) FROM call WHERE run = r.id)
           FROM run r WHERE id = ?""",
        [run],
    ).fetchone()
    assert row is not None
    argv, start_ns, end_ns, start_unix_ns, calls = row
    pids = dict(
        con.execute("SELECT coalesce(number, 0), pid FROM process WHERE run = ?", [run]).fetchall()
    )
    threads = {
        slot: f"{name or f'thread {slot}'} (pid {pids.get(slot >> SLOT_PROCESS_SHIFT, 0)})"
        for slot, name in con.execute("SELECT id, name FROM thread WHERE run = ?", [run]).fetchall()
    }
    return RunInfo(run, list(argv or []), start_ns, end_ns, start_unix_ns, pids, threads, calls)


def functions(con: duckdb.DuckDBPyConnection, run: int) -> dict[int, FunctionInfo]:
    """The run's functions by number."""
    rows = con.execute(
        "SELECT id, module, qualname, file, line FROM function WHERE run = ?", [run]
    ).fetchall()
    return {number: FunctionInfo(*rest) for number, *rest in rows}


#: a raw call row: id, thread, parent, function, start_ns, duration_ns, outcome
CallRecord = tuple[int, int, int | None, int, int, int, str]


def calls(con: duckdb.DuckDBPyConnection, selection: Selection) -> Iterator[CallRecord]:
    """Raw rows (id, thread, parent, function, start_ns, duration_ns, outcome) of the
    selected calls, in call order thread by thread, fetched in chunks."""
    sql, params = selection.rows(
        "c.id, c.thread, c.parent, c.function, c.start_ns, c.duration_ns, c.outcome::VARCHAR"
    )
    cursor = con.cursor()
    cursor.execute(sql, params)
    while rows := cursor.fetchmany(CHUNK):
        yield from rows
    cursor.close()


def nested(
    con: duckdb.DuckDBPyConnection, info: RunInfo, selection: Selection | None = None
) -> Iterator[DrawnCall]:
    """The selected calls (default: the run's), thread by thread in call order, each
    clamped into the one it is drawn inside (see the module's doc); times are ns since
    the run began."""
    thread = None
    open_ends: list[int] = []
    run_end = max(info.end_ns - info.start_ns, 0)
    for call_id, slot, parent, function, start_ns, duration_ns, outcome in calls(
        con, selection or Selection(info.run)
    ):
        if slot != thread:
            thread, open_ends = slot, []
        start = max(start_ns - info.start_ns, 0)
        while open_ends and open_ends[-1] <= start:
            open_ends.pop()
        end = start + duration_ns if duration_ns >= 0 else run_end
        if open_ends:  # it starts before the enclosing slice ends: end it no later
            end = min(end, open_ends[-1])
        end = max(end, start)
        depth = len(open_ends)
        open_ends.append(end)
        yield DrawnCall(call_id, slot, parent, function, start, end, outcome, duration_ns, depth)

"""The calls a timeline shows for one window of time, at one zoom level.

A viewer that loads a whole trace dies on a big one; this one asks for the
window on screen.  Calls at least ``pixel_ns`` long (about a pixel at the
current zoom) come back one by one; the narrower ones are merged, per lane,
depth and pixel-wide bucket, into blocks that say how many calls they hold.
So the answer is bounded by the screen, not by the run: a 10-million-call run
draws as fast as a small one.

Times are ns since the run began.  A call that never ended is drawn until the
run's end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
from scope.query.ids import PROCESS_SHIFT, THREAD_SHIFT

#: calls drawn one by one in one answer at most: a screen shows fewer
MAX_DRAWN = 50_000

#: a call's end, for one that never ended: the run's end
_END = "CASE WHEN duration_ns < 0 THEN $run_end ELSE start_ns + duration_ns END"
_IN_WINDOW = f"run = $run AND start_ns < $until AND {_END} > $since"


@dataclass(frozen=True)
class Lane:
    """One row of the timeline: a thread of a process."""

    thread: int
    pid: int
    name: str


@dataclass
class Window:
    """What to draw between ``since`` and ``until`` (ns since the run began)."""

    since: int
    until: int
    pixel_ns: int
    #: [thread, start, duration (-1: never ended), depth, function, call id, outcome]
    calls: list[list[object]] = field(default_factory=list)
    #: [thread, depth, start, end, count]: narrower calls merged
    blocks: list[list[int]] = field(default_factory=list)
    #: calls wide enough to draw that were left out (past MAX_DRAWN)
    left_out: int = 0


@dataclass(frozen=True)
class Frame:
    """The run's span on the recorder clock."""

    start_ns: int
    end_ns: int

    @property
    def span_ns(self) -> int:
        """How long the run lasted, at least 1 ns."""
        return max(self.end_ns - self.start_ns, 1)


def frame(con: duckdb.DuckDBPyConnection, run: int) -> Frame:
    """When the run's calls began and ended (its end if it has one)."""
    row = con.execute(
        """SELECT min(start_ns), max(CASE WHEN duration_ns < 0 THEN start_ns
                                        ELSE start_ns + duration_ns END)
           FROM call WHERE run = ?""",
        [run],
    ).fetchone()
    end_row = con.execute("SELECT start_ns, end_ns FROM run WHERE id = ?", [run]).fetchone()
    run_start, run_end = end_row if end_row else (None, None)
    first = row[0] if row and row[0] is not None else run_start or 0
    last = max(v for v in (row[1] if row else None, run_end, first) if v is not None)
    return Frame(first, last)


def lanes(con: duckdb.DuckDBPyConnection, run: int) -> list[Lane]:
    """Every thread that made a recorded call, with its process's pid and its name."""
    rows = con.execute(
        """SELECT t.id, coalesce(p.pid, 0), coalesce(t.name, 'thread ' || t.id)
           FROM thread t
           LEFT JOIN process p ON p.run = t.run AND coalesce(p.number, 0) = t.id >> $slot_bits
           WHERE t.run = $run AND EXISTS (
               SELECT 1 FROM call c WHERE c.run = $run AND c.thread = t.id)
           ORDER BY t.id""",
        {"run": run, "slot_bits": PROCESS_SHIFT - THREAD_SHIFT},
    ).fetchall()
    return [Lane(thread, pid, name) for thread, pid, name in rows]


def window(
    con: duckdb.DuckDBPyConnection,
    run: int,
    since: int,
    until: int,
    pixel_ns: int,
    span: Frame | None = None,
) -> Window:
    """The calls to draw between ``since`` and ``until`` (ns since the run began), those
    narrower than ``pixel_ns`` merged into blocks.  ``span``: the run's ``frame``, if
    the caller has it (finding it reads every call)."""
    span = span or frame(con, run)
    since, until = max(since, 0), max(until, since + 1)
    pixel_ns = max(pixel_ns, 1)
    params = {
        "run": run,
        "since": span.start_ns + since,
        "until": span.start_ns + until,
        "run_end": span.end_ns,
        "origin": span.start_ns,
        "pixel": pixel_ns,
    }
    answer = Window(since, until, pixel_ns)
    wide = f"{_IN_WINDOW} AND {_END} - start_ns >= $pixel"
    rows = con.execute(
        f"""SELECT thread, start_ns - $origin, duration_ns, depth, function, id,
                   outcome::VARCHAR
            FROM call WHERE {wide}
            ORDER BY duration_ns DESC LIMIT {MAX_DRAWN + 1}""",
        params,
    ).fetchall()
    if len(rows) > MAX_DRAWN:
        count = con.execute(f"SELECT count(*) FROM call WHERE {wide}", params).fetchone()
        answer.left_out = (count[0] if count else 0) - MAX_DRAWN
        rows = rows[:MAX_DRAWN]
    answer.calls = [list(r) for r in rows]
    blocks = con.execute(
        f"""SELECT thread, depth, min(start_ns) - $origin, max({_END}) - $origin, count(*)
            FROM call WHERE {_IN_WINDOW} AND {_END} - start_ns < $pixel
            GROUP BY thread, depth, (start_ns - $since) // $pixel
            ORDER BY 1, 2, 3""",
        params,
    ).fetchall()
    answer.blocks = _coalesced(blocks, pixel_ns)
    return answer


def _coalesced(blocks: list[tuple[int, int, int, int, int]], pixel_ns: int) -> list[list[int]]:
    """Blocks of one lane and depth less than a pixel apart, as one: a long run of tiny
    calls is one block, not one per pixel."""
    out: list[list[int]] = []
    for thread, depth, start, end, count in blocks:
        last = out[-1] if out else None
        if last and last[0] == thread and last[1] == depth and start - last[3] < pixel_ns:
            last[3] = max(last[3], end)
            last[4] += count
        else:
            out.append([thread, depth, start, end, count])
    return out

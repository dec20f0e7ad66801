"""The calls a timeline shows for one window of time, at one zoom level.

A viewer that loads a whole trace dies on a big one; this one asks for the
window on screen.  Calls at least ``pixel_ns`` long (about a pixel at the
current zoom) come back one by one; the narrower ones are merged, per lane,
depth and pixel-wide bucket, into blocks that say how many calls they hold.
A lane is a thread, or an asyncio task (tasks.py): a task's calls are drawn in
its own lane, their depth counted from its root, the rest in their thread's.
So the answer is bounded by the screen, not by the run: a 10-million-call run
draws as fast as a small one.

Times are ns since the run began.  A call that never ended is drawn until the
run's end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
from scope.query.ids import PROCESS_SHIFT, THREAD_SHIFT
from scope.query.viewer.tasks import Tasks

#: calls drawn one by one in one answer at most: a screen shows fewer
MAX_DRAWN = 50_000
#: the overview's buckets across the whole run: finer than a pixel of any screen
#: until the window is a fifth of the run
OVERVIEW_BUCKETS = 8192
#: the overview keeps the calls a bucket long or longer if there are at most this many
MAX_LONG = 200_000
#: suspensions drawn as gaps in one answer at most (those of the longest calls first)
MAX_GAPS = 20_000

#: a call's end, for one that never ended: the run's end
_END = "CASE WHEN duration_ns < 0 THEN $run_end ELSE start_ns + duration_ns END"
_IN_WINDOW = f"run = $run AND start_ns < $until AND {_END} > $since"
#: a run without tasks
_NO_TASKS = Tasks()


@dataclass(frozen=True)
class Lane:
    """One row of the timeline: a thread of a process, or a task on one."""

    thread: int
    pid: int
    #: the thread's name
    name: str
    #: a task's lane: its number in window answers (``Task.lane``), else None
    task: int | None = None
    task_name: str | None = None


@dataclass
class Window:
    """What to draw between ``since`` and ``until`` (ns since the run began)."""

    since: int
    until: int
    pixel_ns: int
    #: [thread, start, duration (-1: never ended), depth, function, call id, outcome,
    #: task lane (None: the thread's lane; then depth is counted from the task's root)]
    calls: list[list[object]] = field(default_factory=list)
    #: [thread, depth, start, end, count, task lane]: narrower calls merged
    blocks: list[list[int | None]] = field(default_factory=list)
    #: calls wide enough to draw that were left out (past MAX_DRAWN)
    left_out: int = 0
    #: [call id, start, duration]: suspensions of the drawn calls (the ``suspension``
    #: table's, at least a pixel long), to draw as gaps in them
    gaps: list[list[object]] = field(default_factory=list)


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


def lanes(con: duckdb.DuckDBPyConnection, run: int, tasks: Tasks = _NO_TASKS) -> list[Lane]:
    """Every thread that made a recorded call, with its process's pid and its name
    (a run still being recorded has no thread rows yet: its lanes are named by number),
    each followed by the lanes of its ``tasks``."""
    rows = con.execute(
        """SELECT c.thread, coalesce(p.pid, 0), coalesce(t.name, 'thread ' || c.thread)
           FROM (SELECT DISTINCT thread FROM call WHERE run = $run) c
           LEFT JOIN thread t ON t.run = $run AND t.id = c.thread
           LEFT JOIN process p ON p.run = $run AND coalesce(p.number, 0) = c.thread >> $slot_bits
           ORDER BY c.thread""",
        {"run": run, "slot_bits": PROCESS_SHIFT - THREAD_SHIFT},
    ).fetchall()
    out = []
    for thread, pid, name in rows:
        out.append(Lane(thread, pid, name))
        out.extend(
            Lane(thread, pid, name, t.lane, t.name) for t in tasks.tasks if t.thread == thread
        )
    return out


#: (thread, depth, start, end, count, task lane or None): calls merged
Block = tuple[int, int, int, int, int, int | None]


@dataclass(frozen=True)
class Overview:
    """The run's narrow calls counted once per lane, depth and bucket of ``bucket_ns``:
    zoomed out, windows are merged from these instead of from every call."""

    bucket_ns: int
    #: (thread, depth, start, end, count, task lane), ns since the run began, in order
    buckets: list[Block]
    #: the calls at least a bucket long, as ``Window.calls`` lists them, longest first
    #: (None: more than MAX_LONG, so windows ask DuckDB)
    long_calls: list[tuple[object, ...]] | None
    #: ``buckets`` as an int64 table (a task lane of None as -1): windows merge it whole
    table: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), dtype=np.int64))


def overview(
    con: duckdb.DuckDBPyConnection, run: int, span: Frame, tasks: Tasks = _NO_TASKS
) -> Overview:
    """Count the run's calls narrower than a bucket into buckets (reads every call once),
    per lane: a thread's, or one of its ``tasks``'."""
    bucket = max(span.span_ns // OVERVIEW_BUCKETS, 1)
    params = {"run": run, "origin": span.start_ns, "run_end": span.end_ns, "bucket": bucket}
    rows = _counted(
        con,
        f"run = $run AND {_END} - start_ns < $bucket",
        "(start_ns - $origin) // $bucket",
        params,
        tasks,
    )
    long_calls = _longest(
        con, f"run = $run AND {_END} - start_ns >= $bucket", MAX_LONG, params, tasks
    )
    return Overview(
        bucket,
        rows,
        long_calls if len(long_calls) <= MAX_LONG else None,
        _as_table(rows),
    )


def _as_table(blocks: list[Block]) -> np.ndarray:
    """Blocks as an int64 table of their six columns, a task lane of None as -1."""
    table = np.array(
        [(t, d, s, e, c, -1 if k is None else k) for t, d, s, e, c, k in blocks],
        dtype=np.int64,
    )
    return table.reshape(-1, 6)


def window(
    con: duckdb.DuckDBPyConnection,
    run: int,
    since: int,
    until: int,
    pixel_ns: int,
    span: Frame | None = None,
    zoomed_out: Overview | None = None,
    tasks: Tasks = _NO_TASKS,
    gaps: bool = False,
) -> Window:
    """The calls to draw between ``since`` and ``until`` (ns since the run began), those
    narrower than ``pixel_ns`` merged into blocks.  ``span``: the run's ``frame``, if
    the caller has it (finding it reads every call); ``zoomed_out``: its ``overview``
    (made with the same ``tasks``), used for windows whose pixel is no finer than a
    bucket; ``tasks``: the run's, each drawn in a lane of its own; ``gaps``: whether
    to find the drawn calls' suspensions (the run has rows in ``suspension``)."""
    span = span or frame(con, run)
    answer = _window(con, run, since, until, pixel_ns, span, zoomed_out, tasks)
    if gaps and answer.calls:
        answer.gaps = _gaps(con, run, answer, span.start_ns)
    return answer


def _gaps(
    con: duckdb.DuckDBPyConnection, run: int, answer: Window, origin: int
) -> list[list[object]]:
    """The suspensions of the window's drawn calls that are at least a pixel long,
    those of the longest calls first, at most MAX_GAPS."""
    rows = con.execute(
        f"""SELECT s.call, s.start_ns - $origin, s.duration_ns
            FROM suspension s JOIN (SELECT unnest($calls::BIGINT[]) AS id,
                                           unnest(range(len($calls::BIGINT[]))) AS rank) d
              ON s.call = d.id
            WHERE s.run = $run AND s.duration_ns >= $pixel
              AND s.start_ns < $until AND s.start_ns + s.duration_ns > $since
            ORDER BY d.rank, s.start_ns LIMIT {MAX_GAPS}""",
        {
            "run": run,
            "origin": origin,
            "calls": [int(str(call[5])) for call in answer.calls],
            "pixel": answer.pixel_ns,
            "since": origin + answer.since,
            "until": origin + answer.until,
        },
    ).fetchall()
    return [list(row) for row in rows]


def _window(
    con: duckdb.DuckDBPyConnection,
    run: int,
    since: int,
    until: int,
    pixel_ns: int,
    span: Frame,
    zoomed_out: Overview | None,
    tasks: Tasks,
) -> Window:
    """``window``'s calls and blocks."""
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
    zoomed_out_enough = zoomed_out is not None and pixel_ns >= zoomed_out.bucket_ns
    if zoomed_out_enough and zoomed_out is not None and zoomed_out.long_calls is not None:
        return _all_from_overview(answer, zoomed_out, zoomed_out.long_calls, span)
    wide = f"{_IN_WINDOW} AND {_END} - start_ns >= $pixel"
    rows = _longest(con, wide, MAX_DRAWN, params, tasks)
    if len(rows) > MAX_DRAWN:
        counted = {k: v for k, v in params.items() if k != "origin"}  # DuckDB: no extras
        count = con.execute(f"SELECT count(*) FROM call WHERE {wide}", counted).fetchone()
        answer.left_out = (count[0] if count else 0) - MAX_DRAWN
        rows = rows[:MAX_DRAWN]
    answer.calls = [list(r) for r in rows]
    if zoomed_out is not None and pixel_ns >= zoomed_out.bucket_ns:
        answer.blocks = _from_overview(con, zoomed_out, since, until, params, tasks)
        return answer
    narrow = f"{_IN_WINDOW} AND {_END} - start_ns < $pixel"
    blocks = _counted(con, narrow, "(start_ns - $since) // $pixel", params, tasks)
    answer.blocks = _coalesced(blocks, pixel_ns)
    return answer


def _longest(
    con: duckdb.DuckDBPyConnection,
    where: str,
    most: int,
    params: dict[str, int],
    tasks: Tasks,
) -> list[tuple[object, ...]]:
    """The calls ``where`` holds, longest first, as ``Window.calls`` lists them: at most
    ``most`` and one more, which tells that there were more."""
    source, task, task_params = tasks.source(where)
    return con.execute(
        f"""SELECT thread, start_ns - $origin, duration_ns, depth, function, id,
                   outcome::VARCHAR, {task}
            FROM {source}
            ORDER BY {_END} - start_ns DESC LIMIT {most + 1}""",
        {**params, **task_params},
    ).fetchall()


def _counted(
    con: duckdb.DuckDBPyConnection,
    where: str,
    slot: str,
    params: dict[str, int],
    tasks: Tasks,
) -> list[Block]:
    """The calls ``where`` holds, counted per lane, depth and ``slot`` (the SQL that
    numbers a call's bucket or pixel), as blocks in order."""
    source, task, task_params = tasks.source(where)
    return con.execute(
        f"""SELECT thread, depth, min(start_ns) - $origin, max({_END}) - $origin, count(*),
                   {task}
            FROM {source}
            GROUP BY thread, {task}, depth, {slot}
            ORDER BY 1, 6 NULLS FIRST, 2, 3""",
        {**params, **task_params},
    ).fetchall()


def _all_from_overview(
    answer: Window, zoomed_out: Overview, long_calls: list[tuple[object, ...]], span: Frame
) -> Window:
    """A zoomed-out window answered from the overview alone: no call is read again."""
    since, until, pixel = answer.since, answer.until, answer.pixel_ns
    run_end = span.end_ns - span.start_ns
    wide: list[list[object]] = []
    narrow: list[Block] = []
    for call in long_calls:
        thread, start, duration, depth = (int(str(v)) for v in call[:4])
        end = run_end if duration < 0 else start + duration
        if start >= until or end <= since:
            continue
        if end - start >= pixel:
            wide.append(list(call))
        else:
            task = call[7]
            narrow.append((thread, depth, start, end, 1, None if task is None else int(str(task))))
    if len(wide) > MAX_DRAWN:
        answer.left_out = len(wide) - MAX_DRAWN
        wide = wide[:MAX_DRAWN]
    answer.calls = wide
    answer.blocks = _regrouped(zoomed_out, narrow, since, until, pixel)
    return answer


def _regrouped(
    zoomed_out: Overview,
    more: list[Block],
    since: int,
    until: int,
    pixel: int,
) -> list[list[int | None]]:
    """The overview's buckets in the window, with ``more`` blocks, merged per pixel and
    then as ``_coalesced`` merges them: in numpy, as an overview holds tens of thousands
    of buckets on a run of many tasks."""
    table = zoomed_out.table
    table = table[(table[:, 2] < until) & (table[:, 3] > since)]
    if more:
        table = np.concatenate([table, _as_table(more)])
    if not len(table):
        return []
    thread, depth, start, end, count, task = table.T
    column = (start - since) // pixel
    order = np.lexsort((column, depth, task, thread))
    thread, depth, start, end, count, task, column = (
        a[order] for a in (thread, depth, start, end, count, task, column)
    )
    lane_changes = np.empty(len(order), dtype=bool)
    lane_changes[0] = True
    lane_changes[1:] = (
        (thread[1:] != thread[:-1]) | (task[1:] != task[:-1]) | (depth[1:] != depth[:-1])
    )
    # One block per lane, depth and pixel.
    firsts = np.flatnonzero(lane_changes | np.r_[True, column[1:] != column[:-1]])
    thread, depth, task = thread[firsts], depth[firsts], task[firsts]
    start = np.minimum.reduceat(start, firsts)
    end = np.maximum.reduceat(end, firsts)
    count = np.add.reduceat(count, firsts)
    lanes = np.cumsum(lane_changes[firsts]) - 1
    # Blocks of a lane and depth less than a pixel apart as one: a block begins a new
    # one where it starts a pixel or more after every earlier block of its lane ended
    # (sorted by start, those ends' maximum is the end of the block being grown).
    # Each lane's times are shifted past the previous lane's, so one running maximum
    # serves every lane.
    base = min(int(start.min()), 0)
    shift = lanes * (int(end.max()) - base + 1) - base
    reach = np.maximum.accumulate(end + shift)
    begins = np.empty(len(firsts), dtype=bool)
    begins[0] = True
    begins[1:] = (lanes[1:] != lanes[:-1]) | (start[1:] + shift[1:] - reach[:-1] >= pixel)
    heads = np.flatnonzero(begins)
    merged: list[list[int]] = np.column_stack(
        (
            thread[heads],
            depth[heads],
            start[heads],
            np.maximum.reduceat(end, heads),
            np.add.reduceat(count, heads),
            task[heads],
        )
    ).tolist()
    return [[*block[:5], block[5] if block[5] >= 0 else None] for block in merged]


def _from_overview(
    con: duckdb.DuckDBPyConnection,
    zoomed_out: Overview,
    since: int,
    until: int,
    params: dict[str, int],
    tasks: Tasks,
) -> list[list[int | None]]:
    """The window's blocks from the overview's buckets, and from the calls narrower
    than a pixel but not than a bucket (few: they are long)."""
    source, task, task_params = tasks.source(
        f"{_IN_WINDOW} AND {_END} - start_ns < $pixel AND {_END} - start_ns >= $bucket"
    )
    between = con.execute(
        f"""SELECT thread, depth, start_ns - $origin, {_END} - $origin, 1, {task}
            FROM {source}""",
        {**params, "bucket": zoomed_out.bucket_ns, **task_params},
    ).fetchall()
    return _regrouped(zoomed_out, between, since, until, params["pixel"])


def _coalesced(blocks: list[Block], pixel_ns: int) -> list[list[int | None]]:
    """Blocks of one lane and depth less than a pixel apart, as one: a long run of tiny
    calls is one block, not one per pixel."""
    out: list[list[int | None]] = []
    ends: list[int] = []  # out's ends and counts, as ints
    counts: list[int] = []
    for thread, depth, start, end, count, task in blocks:
        last = out[-1] if out else None
        if (
            last
            and last[0] == thread
            and last[5] == task
            and last[1] == depth
            and start - ends[-1] < pixel_ns
        ):
            ends[-1] = max(ends[-1], end)
            counts[-1] += count
            last[3], last[4] = ends[-1], counts[-1]
        else:
            out.append([thread, depth, start, end, count, task])
            ends.append(end)
            counts.append(count)
    return out

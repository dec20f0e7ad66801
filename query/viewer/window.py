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
#: the overview's buckets across the whole run: finer than a pixel of any screen
#: until the window is a fifth of the run
OVERVIEW_BUCKETS = 8192
#: the overview keeps the calls a bucket long or longer if there are at most this many
MAX_LONG = 200_000

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
    """Every thread that made a recorded call, with its process's pid and its name
    (a run still being recorded has no thread rows yet: its lanes are named by number)."""
    rows = con.execute(
        """SELECT c.thread, coalesce(p.pid, 0), coalesce(t.name, 'thread ' || c.thread)
           FROM (SELECT DISTINCT thread FROM call WHERE run = $run) c
           LEFT JOIN thread t ON t.run = $run AND t.id = c.thread
           LEFT JOIN process p ON p.run = $run AND coalesce(p.number, 0) = c.thread >> $slot_bits
           ORDER BY c.thread""",
        {"run": run, "slot_bits": PROCESS_SHIFT - THREAD_SHIFT},
    ).fetchall()
    return [Lane(thread, pid, name) for thread, pid, name in rows]


@dataclass(frozen=True)
class Overview:
    """The run's narrow calls counted once per lane, depth and bucket of ``bucket_ns``:
    zoomed out, windows are merged from these instead of from every call."""

    bucket_ns: int
    #: (thread, depth, start, end, count), ns since the run began, in that order
    buckets: list[tuple[int, int, int, int, int]]
    #: the calls at least a bucket long, as ``Window.calls`` lists them, longest first
    #: (None: more than MAX_LONG, so windows ask DuckDB)
    long_calls: list[tuple[object, ...]] | None


def overview(con: duckdb.DuckDBPyConnection, run: int, span: Frame) -> Overview:
    """Count the run's calls narrower than a bucket into buckets (reads every call once)."""
    bucket = max(span.span_ns // OVERVIEW_BUCKETS, 1)
    params = {"run": run, "origin": span.start_ns, "run_end": span.end_ns, "bucket": bucket}
    rows = con.execute(
        f"""SELECT thread, depth, min(start_ns) - $origin, max({_END}) - $origin, count(*)
            FROM call WHERE run = $run AND {_END} - start_ns < $bucket
            GROUP BY thread, depth, (start_ns - $origin) // $bucket
            ORDER BY 1, 2, 3""",
        params,
    ).fetchall()
    long_calls = con.execute(
        f"""SELECT thread, start_ns - $origin, duration_ns, depth, function, id,
                   outcome::VARCHAR
            FROM call WHERE run = $run AND {_END} - start_ns >= $bucket
            ORDER BY {_END} - start_ns DESC LIMIT {MAX_LONG + 1}""",
        params,
    ).fetchall()
    return Overview(bucket, rows, long_calls if len(long_calls) <= MAX_LONG else None)


def window(
    con: duckdb.DuckDBPyConnection,
    run: int,
    since: int,
    until: int,
    pixel_ns: int,
    span: Frame | None = None,
    zoomed_out: Overview | None = None,
) -> Window:
    """The calls to draw between ``since`` and ``until`` (ns since the run began), those
    narrower than ``pixel_ns`` merged into blocks.  ``span``: the run's ``frame``, if
    the caller has it (finding it reads every call); ``zoomed_out``: its ``overview``,
    used for windows whose pixel is no finer than a bucket."""
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
    zoomed_out_enough = zoomed_out is not None and pixel_ns >= zoomed_out.bucket_ns
    if zoomed_out_enough and zoomed_out is not None and zoomed_out.long_calls is not None:
        return _all_from_overview(answer, zoomed_out, zoomed_out.long_calls, span)
    wide = f"{_IN_WINDOW} AND {_END} - start_ns >= $pixel"
    rows = con.execute(
        f"""SELECT thread, start_ns - $origin, duration_ns, depth, function, id,
                   outcome::VARCHAR
            FROM call WHERE {wide}
            ORDER BY {_END} - start_ns DESC LIMIT {MAX_DRAWN + 1}""",
        params,
    ).fetchall()
    if len(rows) > MAX_DRAWN:
        counted = {k: v for k, v in params.items() if k != "origin"}  # DuckDB: no extras
        count = con.execute(f"SELECT count(*) FROM call WHERE {wide}", counted).fetchone()
        answer.left_out = (count[0] if count else 0) - MAX_DRAWN
        rows = rows[:MAX_DRAWN]
    answer.calls = [list(r) for r in rows]
    if zoomed_out is not None and pixel_ns >= zoomed_out.bucket_ns:
        answer.blocks = _from_overview(con, zoomed_out, since, until, params)
        return answer
    blocks = con.execute(
        f"""SELECT thread, depth, min(start_ns) - $origin, max({_END}) - $origin, count(*)
            FROM call WHERE {_IN_WINDOW} AND {_END} - start_ns < $pixel
            GROUP BY thread, depth, (start_ns - $since) // $pixel
            ORDER BY 1, 2, 3""",
        params,
    ).fetchall()
    answer.blocks = _coalesced(blocks, pixel_ns)
    return answer


def _all_from_overview(
    answer: Window, zoomed_out: Overview, long_calls: list[tuple[object, ...]], span: Frame
) -> Window:
    """A zoomed-out window answered from the overview alone: no call is read again."""
    since, until, pixel = answer.since, answer.until, answer.pixel_ns
    run_end = span.end_ns - span.start_ns
    wide: list[list[object]] = []
    narrow: list[tuple[int, int, int, int, int]] = []
    for call in long_calls:
        thread, start, duration, depth = (int(str(v)) for v in call[:4])
        end = run_end if duration < 0 else start + duration
        if start >= until or end <= since:
            continue
        if end - start >= pixel:
            wide.append(list(call))
        else:
            narrow.append((thread, depth, start, end, 1))
    if len(wide) > MAX_DRAWN:
        answer.left_out = len(wide) - MAX_DRAWN
        wide = wide[:MAX_DRAWN]
    answer.calls = wide
    answer.blocks = _regrouped(zoomed_out, narrow, since, until, pixel)
    return answer


def _regrouped(
    zoomed_out: Overview,
    more: list[tuple[int, int, int, int, int]],
    since: int,
    until: int,
    pixel: int,
) -> list[list[int]]:
    """The overview's buckets in the window, with ``more`` blocks, merged per pixel."""
    kept = [b for b in zoomed_out.buckets if b[2] < until and b[3] > since]
    merged: dict[tuple[int, int, int], list[int]] = {}
    for thread, depth, start, end, count in [*kept, *more]:
        key = (thread, depth, (start - since) // pixel)
        block = merged.get(key)
        if block is None:
            merged[key] = [thread, depth, start, end, count]
        else:
            block[2], block[3] = min(block[2], start), max(block[3], end)
            block[4] += count
    ordered = sorted(merged.values(), key=lambda b: (b[0], b[1], b[2]))
    return _coalesced([(b[0], b[1], b[2], b[3], b[4]) for b in ordered], pixel)


def _from_overview(
    con: duckdb.DuckDBPyConnection,
    zoomed_out: Overview,
    since: int,
    until: int,
    params: dict[str, int],
) -> list[list[int]]:
    """The window's blocks from the overview's buckets, and from the calls narrower
    than a pixel but not than a bucket (few: they are long)."""
    between = con.execute(
        f"""SELECT thread, depth, start_ns - $origin, {_END} - $origin, 1
            FROM call WHERE {_IN_WINDOW} AND {_END} - start_ns < $pixel
              AND {_END} - start_ns >= $bucket""",
        {**params, "bucket": zoomed_out.bucket_ns},
    ).fetchall()
    return _regrouped(zoomed_out, between, since, until, params["pixel"])


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

"""Which of a run's calls each asyncio task made, for the timeline's task lanes.

A task's calls are those under its coroutine's call, task roots excepted: each
is its own task's.  The id interval ``[id, end_id]`` does not say it: tasks on
one event loop take turns, so the ids of one task's calls interleave with the
others' (a task's interval holds every call begun while it was open, its
waiting included).  Following ``parent`` does: once per run, by pointer
jumping over the calls' arrays (each call's nearest task root is found in as
many passes as log2 of the depth, not one per level).  The answer is kept as
runs of consecutive call ids (*segments*) of one task, which a window's query
joins by range (an ASOF join: sorted, not a nested loop), in SQL, as it reads
the calls.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scope.query.ids import THREAD_SHIFT


@dataclass(frozen=True)
class Task:
    """One task with a lane of its own: ``lane`` is its number in window answers."""

    lane: int
    id: int
    name: str
    thread: int
    #: its root call's depth: its calls are drawn this much higher in its lane
    depth: int


@dataclass(frozen=True)
class Tasks:
    """A run's tasks, and the segments of call ids each one's calls fill."""

    tasks: list[Task] = field(default_factory=list)
    #: segment i holds the calls with ids lo[i]..hi[i], all of task lane[i]
    lo: list[int] = field(default_factory=list)
    hi: list[int] = field(default_factory=list)
    lane: list[int] = field(default_factory=list)
    #: the depth of segment i's task's root
    base: list[int] = field(default_factory=list)

    def of(self, call_id: int) -> Task | None:
        """The task a call is part of, if any."""
        i = bisect.bisect_right(self.lo, call_id) - 1
        if i >= 0 and call_id <= self.hi[i]:
            return self.tasks[self.lane[i]]
        return None

    def source(self, where: str) -> tuple[str, str, dict[str, list[int]]]:
        """What a window's query reads after ``FROM``: the calls ``where`` holds for
        (its columns, ``depth`` counted from the task's root); how it names a call's
        task lane (NULL outside tasks); and the parameters that takes.  A run without
        tasks reads ``call`` itself: a big run pays nothing for tasks.  The calls are
        picked before they are joined to the segments: the join sorts what it reads."""
        if not self.tasks:
            return f"call WHERE {where}", "NULL::INTEGER", {}
        return (
            f"""(SELECT c.* EXCLUDE (depth),
                        CASE WHEN c.id <= s.hi THEN s.lane END AS task,
                        CASE WHEN c.id <= s.hi THEN greatest(c.depth - s.base, 0)
                             ELSE c.depth END AS depth
                 FROM (SELECT * FROM call WHERE {where}) c ASOF LEFT JOIN (
                     SELECT unnest($task_lo::BIGINT[]) AS lo, unnest($task_hi::BIGINT[]) AS hi,
                            unnest($task_lane::INTEGER[]) AS lane,
                            unnest($task_base::INTEGER[]) AS base) s
                   ON c.id >= s.lo)""",
            "task",
            {
                "task_lo": self.lo,
                "task_hi": self.hi,
                "task_lane": self.lane,
                "task_base": self.base,
            },
        )


def tasks(con: Any, run: int) -> Tasks:
    """The run's tasks whose root call was stored, each with its calls' segments
    (reads the id and parent of the calls of the tasks' threads once; nothing for a
    run without tasks).  ``con``: a DuckDB connection, or the recording service's."""
    rows = con.execute(
        """SELECT t.id, coalesce(t.name, 'task'), c.thread, c.depth, c.end_id
           FROM task t JOIN call c ON c.run = t.run AND c.id = t.id
           WHERE t.run = $run ORDER BY t.id""",
        {"run": run},
    ).fetchall()
    if not rows:
        return Tasks()
    found = [
        Task(i, tid, name, thread, depth) for i, (tid, name, thread, depth, _) in enumerate(rows)
    ]
    # A task's calls begin after its root and before the end of its root's interval.
    last = max(int(end_id or tid) for tid, *_, end_id in rows)
    ids, parents = _calls_of_threads(con, run, sorted({t.thread for t in found}), found[0].id, last)
    lo, hi, lane = segments(ids, parents, np.array([t.id for t in found], dtype=np.int64))
    depths = np.array([t.depth for t in found], dtype=np.int64)
    return Tasks(found, lo.tolist(), hi.tolist(), lane.tolist(), depths[lane].tolist())


def segments(
    ids: np.ndarray, parents: np.ndarray, roots: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs of consecutive ``ids`` (sorted) whose nearest ancestor among ``roots``
    (sorted; a root is its own) is the same: (first id, last id, that root's index)
    of each.  ``parents``: each id's parent (0: none)."""
    n = len(ids)
    up = _places_of(ids, parents)
    place = np.searchsorted(ids, roots)
    place = place[(place < n) & (ids[np.minimum(place, max(n - 1, 0))] == roots)]
    label = np.full(n, -1, dtype=np.int64)
    label[place] = np.searchsorted(roots, ids[place])
    up[place] = place  # a root stops the climb: its calls are its task's
    # Pointer jumping: each pass doubles how far a call has climbed, and only the
    # calls still below an ancestor that climbs on are passed over again.
    climbing = np.flatnonzero(up[up] != up)
    while climbing.size:
        up[climbing] = up[up[climbing]]
        climbing = climbing[up[up[climbing]] != up[climbing]]
    label = label[up]
    # Runs of one label (a new thread, whose ids jump, ends a run too).
    breaks = np.flatnonzero((np.diff(label) != 0) | (np.diff(ids >> THREAD_SHIFT) != 0)) + 1
    starts = np.concatenate(([0], breaks)) if n else np.zeros(0, dtype=np.int64)
    ends = np.concatenate((breaks - 1, [n - 1])) if n else np.zeros(0, dtype=np.int64)
    kept = label[starts] >= 0
    return ids[starts[kept]], ids[ends[kept]], label[starts[kept]]


def _places_of(ids: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Each call's parent's place in ``ids`` (sorted), or its own place if its parent
    is not among them."""
    n = len(ids)
    at = np.arange(n, dtype=np.int64)
    if not n:
        return at
    up = np.minimum(np.searchsorted(ids, parents), n - 1)
    return np.where((parents != 0) & (ids[up] == parents), up, at)


def _calls_of_threads(
    con: Any, run: int, threads: list[int], first: int, last: int
) -> tuple[np.ndarray, np.ndarray]:
    """The id and parent (0: none) of every call of ``threads`` with an id from
    ``first`` to ``last``, by id."""
    result = con.execute(
        """SELECT id, coalesce(parent, 0) AS parent FROM call
           WHERE run = $run AND id BETWEEN $first AND $last
             AND thread IN (SELECT unnest($threads::INTEGER[]))""",
        {"run": run, "threads": threads, "first": first, "last": last},
    )
    if hasattr(result, "fetchnumpy"):  # DuckDB itself: the columns as arrays, no tuples
        columns = result.fetchnumpy()
        ids = np.asarray(columns["id"], dtype=np.int64)
        parents = np.asarray(columns["parent"], dtype=np.int64)
    else:  # the recording service's answer
        rows = result.fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        parents = np.array([r[1] for r in rows], dtype=np.int64)
    if ids.size and not np.all(ids[1:] > ids[:-1]):  # stored in order, mostly: sorted cheaply
        order = np.argsort(ids, kind="stable")
        ids, parents = ids[order], parents[order]
    return ids, parents

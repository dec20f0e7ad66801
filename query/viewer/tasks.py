"""Which of a run's calls each asyncio task made, for the timeline's task lanes.

A task's calls are those under its coroutine's call, task roots excepted: each
is its own task's.  The id interval ``[id, end_id]`` does not say it: tasks on
one event loop take turns, so the ids of one task's calls interleave with the
others' (a task's interval holds every call begun while it was open, its
waiting included).  Following ``parent`` from each root does, once per run;
the answer is kept as runs of consecutive call ids (*segments*) of one task,
which a window's query joins by range, in SQL, as it reads the calls.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import duckdb

#: every call of each task, found by following parent from the tasks' roots (a
#: task's root ends its creator's task: the creator is its parent)
_MEMBERS = """
WITH RECURSIVE member(id, task) AS (
    SELECT c.id, c.id FROM call c JOIN task t ON t.run = c.run AND t.id = c.id
    WHERE c.run = $run
    UNION ALL
    SELECT c.id, m.task FROM member m JOIN call c ON c.run = $run AND c.parent = m.id
    WHERE c.id NOT IN (SELECT id FROM task WHERE run = $run)
),
labelled AS (
    SELECT c.thread, c.id, m.task FROM call c LEFT JOIN member m ON m.id = c.id
    WHERE c.run = $run AND c.thread IN (
        SELECT thread FROM call WHERE run = $run AND id IN (SELECT id FROM task WHERE run = $run))
),
turns AS (
    SELECT thread, id, task,
           row_number() OVER (PARTITION BY thread ORDER BY id)
           - row_number() OVER (PARTITION BY thread, task ORDER BY id) AS turn
    FROM labelled
)
SELECT task, min(id), max(id) FROM turns WHERE task IS NOT NULL
GROUP BY thread, task, turn ORDER BY 2
"""


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

    def of(self, call_id: int) -> Task | None:
        """The task a call is part of, if any."""
        i = bisect.bisect_right(self.lo, call_id) - 1
        if i >= 0 and call_id <= self.hi[i]:
            return self.tasks[self.lane[i]]
        return None

    def source(self) -> tuple[str, str, dict[str, list[int]]]:
        """What a window's query reads in place of the ``call`` table (its columns,
        ``depth`` counted from the task's root), how it names a call's task lane
        (NULL outside tasks), and the parameters that takes.  A run without
        tasks reads ``call`` itself: a big run pays nothing for tasks."""
        if not self.tasks:
            return "call", "NULL::INTEGER", {}
        return (
            """(SELECT c.* EXCLUDE (depth), s.lane AS task,
                       greatest(c.depth - coalesce(s.base, 0), 0) AS depth
                FROM call c LEFT JOIN (
                    SELECT unnest($task_lo::BIGINT[]) AS lo, unnest($task_hi::BIGINT[]) AS hi,
                           unnest($task_lane::INTEGER[]) AS lane,
                           unnest($task_base::INTEGER[]) AS base) s
                  ON c.id BETWEEN s.lo AND s.hi)""",
            "task",
            {
                "task_lo": self.lo,
                "task_hi": self.hi,
                "task_lane": self.lane,
                "task_base": [self.tasks[lane].depth for lane in self.lane],
            },
        )


def tasks(con: duckdb.DuckDBPyConnection, run: int) -> Tasks:
    """The run's tasks whose root call was stored, each with its calls' segments
    (reads the calls of the tasks' threads once; nothing for a run without tasks)."""
    rows = con.execute(
        """SELECT t.id, coalesce(t.name, 'task'), c.thread, c.depth
           FROM task t JOIN call c ON c.run = t.run AND c.id = t.id
           WHERE t.run = $run ORDER BY t.id""",
        {"run": run},
    ).fetchall()
    if not rows:
        return Tasks()
    found = [Task(i, tid, name, thread, depth) for i, (tid, name, thread, depth) in enumerate(rows)]
    lane_of = {task.id: task.lane for task in found}
    segments = con.execute(_MEMBERS, {"run": run}).fetchall()
    return Tasks(
        found,
        [lo for _, lo, _ in segments],
        [hi for _, _, hi in segments],
        [lane_of[task] for task, _, _ in segments],
    )

"""The query API: open a recording read-only and ask it questions.

Every answer is a typed dataclass, so the CLI, the renderers and scripts share
one implementation.  Subtrees use the preorder interval stored with each call
(``thread = t AND id BETWEEN a AND end_id(a)``) instead of recursive queries
over parent links.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import TracebackType

import duckdb
from scope.storage.database import open_for_reading

from scope.errors import QueryError


@dataclass(frozen=True)
class RunSummary:
    """One run of the recording."""

    id: int
    argv: list[str]
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    status: str
    exit_status: int | None
    calls_stored: int | None
    calls_unfinished: int | None
    events_dropped: int | None
    problems: list[str]


@dataclass(frozen=True)
class FunctionStats:
    """How often one function was called in a run, and how long it took."""

    function_id: int
    module: str
    qualname: str
    calls: int
    raised: int
    total_ns: int
    mean_ns: float
    max_ns: int


@dataclass(frozen=True)
class ThreadHealth:
    """What one thread of a run captured and lost."""

    id: int
    name: str | None
    native_id: int
    events_produced: int
    events_dropped: int
    ring_high_water: int
    blocked_ns: int
    stack_overflow: int
    unmatched_exits: int
    values_lost: int
    #: the thread that started it, and the innermost recorded call open there then
    parent: int | None = None
    started_by: int | None = None


@dataclass(frozen=True)
class ProcessHealth:
    """One recorded process of a run: who started it and how it ended."""

    pid: int
    parent_pid: int | None
    exit_status: int | None
    ended_by: str | None


@dataclass(frozen=True)
class RunHealth:
    """A run's self-telemetry: what was captured, stored and lost, and by which thread."""

    run: int
    status: str
    events_captured: int | None
    events_stored: int | None
    events_dropped: int | None
    calls_stored: int | None
    calls_unfinished: int | None
    calls_summed: int | None
    values_stored: int
    writer_batches: int | None
    clock: str | None
    clock_ns_per_tick: float | None
    problems: list[str]
    threads: list[ThreadHealth]
    processes: list[ProcessHealth]

    @property
    def writer_lag(self) -> int:
        """The most events that ever waited for the writer in one thread's ring."""
        return max((t.ring_high_water for t in self.threads), default=0)


@dataclass
class CallNode:
    """One call in a tree, with the calls it made (as far as the tree was fetched)."""

    id: int
    thread: int
    parent: int | None
    depth: int
    module: str
    qualname: str
    start_ns: int
    duration_ns: int
    outcome: str
    children: list[CallNode] = field(default_factory=list)


@dataclass(frozen=True)
class CallTree:
    """The roots of a (possibly truncated) call tree and how many calls were left out."""

    run: int
    roots: list[CallNode]
    shown: int
    total: int


_CALL_COLUMNS = """c.id, c.thread, c.parent, c.depth, coalesce(f.module, '?'),
       coalesce(f.qualname, printf('<function %d>', c.function)),
       c.start_ns, c.duration_ns, c.outcome"""


class Recording:
    """A recording file opened for reading."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.con: duckdb.DuckDBPyConnection = open_for_reading(path)

    def __enter__(self) -> Recording:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self.con.close()

    def runs(self) -> list[RunSummary]:
        """Every run in the file, oldest first."""
        rows = self.con.execute(
            """SELECT id, argv, started_at, ended_at, status, exit_status, calls_stored,
                      calls_unfinished, events_dropped, coalesce(problems, [])
               FROM run ORDER BY id"""
        ).fetchall()
        return [RunSummary(*row) for row in rows]

    def health(self, run: int | None = None) -> RunHealth:
        """What the recorder captured, stored and lost in a run, overall and per thread."""
        run_id = self.resolve_run(run)
        row = self.con.execute(
            """SELECT status, events_captured, events_stored, events_dropped, calls_stored,
                      calls_unfinished, calls_summed,
                      (SELECT count(*) FROM value WHERE run = r.id),
                      writer_batches, clock, clock_ns_per_tick, coalesce(problems, [])
               FROM run r WHERE id = ?""",
            [run_id],
        ).fetchone()
        assert row is not None
        threads = self.con.execute(
            """SELECT id, name, native_id, events_produced, events_dropped, ring_high_water,
                      blocked_ns, stack_overflow, unmatched_exits, values_lost, parent, started_by
               FROM thread WHERE run = ? ORDER BY id""",
            [run_id],
        ).fetchall()
        processes = self.con.execute(
            """SELECT pid, parent_pid, exit_status, ended_by
               FROM process WHERE run = ? ORDER BY start_ns""",
            [run_id],
        ).fetchall()
        values: list[object] = [
            run_id,
            *row,
            [ThreadHealth(*t) for t in threads],
            [ProcessHealth(*p) for p in processes],
        ]
        return RunHealth(*values)  # type: ignore[arg-type]

    def resolve_run(self, run: int | None = None) -> int:
        """The run ``run`` if it exists, or the latest run when ``run`` is None."""
        if run is None:
            row = self.con.execute("SELECT max(id) FROM run").fetchone()
            if row is None or row[0] is None:
                raise QueryError(f"{self.path} holds no runs yet")
            return int(row[0])
        row = self.con.execute("SELECT count(*) FROM run WHERE id = ?", [run]).fetchone()
        if not row or row[0] == 0:
            raise QueryError(f"no run {run} in {self.path} (see 'scope runs')")
        return run

    def function_stats(
        self, run: int | None = None, function: str | None = None, limit: int | None = None
    ) -> list[FunctionStats]:
        """Calls per function with total, mean and longest time, most total time first.

        ``function`` keeps functions whose qualified name or ``module.qualname``
        contains it (case-insensitive).
        """
        run_id = self.resolve_run(run)
        # Stored rows and the sums of calls past a function's budget, together.
        sql = """
            WITH every AS (
                SELECT function, 1 AS calls, (outcome = 'raised')::INT AS raised,
                       greatest(duration_ns, 0) AS total_ns,
                       CASE WHEN duration_ns >= 0 THEN 1 ELSE 0 END AS timed,
                       duration_ns AS max_ns
                FROM call WHERE run = $run
                UNION ALL
                SELECT function, calls, raised, total_ns, calls, max_ns
                FROM call_aggregate WHERE run = $run
            )
            SELECT e.function, coalesce(f.module, '?'),
                   coalesce(f.qualname, printf('<function %d>', e.function)),
                   sum(e.calls)::BIGINT, sum(e.raised)::BIGINT, sum(e.total_ns)::BIGINT,
                   sum(e.total_ns) / nullif(sum(e.timed), 0),
                   max(e.max_ns)
            FROM every e LEFT JOIN function f ON f.run = $run AND f.id = e.function
            WHERE ($function::VARCHAR IS NULL
                   OR f.qualname ILIKE '%' || $function || '%'
                   OR (f.module || '.' || f.qualname) ILIKE '%' || $function || '%')
            GROUP BY ALL
            ORDER BY 6 DESC, 4 DESC, 3
        """
        params: dict[str, object] = {"run": run_id, "function": function}
        if limit is not None:
            sql += " LIMIT $limit"
            params["limit"] = limit
        rows = self.con.execute(sql, params).fetchall()
        return [
            FunctionStats(
                function_id=r[0],
                module=r[1],
                qualname=r[2],
                calls=r[3],
                raised=r[4],
                total_ns=r[5],
                mean_ns=float(r[6]) if r[6] is not None else -1.0,
                max_ns=r[7],
            )
            for r in rows
        ]

    def call(self, call_id: int, run: int | None = None) -> CallNode:
        """One call by id."""
        run_id = self.resolve_run(run)
        row = self.con.execute(
            f"""SELECT {_CALL_COLUMNS} FROM call c
                LEFT JOIN function f ON f.run = c.run AND f.id = c.function
                WHERE c.run = ? AND c.id = ?""",
            [run_id, call_id],
        ).fetchone()
        if row is None:
            raise QueryError(f"no call {call_id} in run {run_id} of {self.path}")
        return CallNode(*row)

    def tree(
        self, call_id: int | None = None, run: int | None = None, limit: int = 500
    ) -> CallTree:
        """The calls under ``call_id`` (itself included), or the whole run, in call order.

        At most ``limit`` calls are fetched; ``CallTree.total`` says how many there are.
        """
        run_id = self.resolve_run(run)
        if call_id is not None:
            top = self.call(call_id, run_id)
            where = "c.run = ? AND c.thread = ? AND c.id BETWEEN ? AND ?"
            end = self.con.execute(
                "SELECT end_id FROM call WHERE run = ? AND id = ?", [run_id, call_id]
            ).fetchone()
            params: list[object] = [run_id, top.thread, call_id, end[0] if end else call_id]
        else:
            where = "c.run = ?"
            params = [run_id]
        total_row = self.con.execute(
            f"SELECT count(*) FROM call c WHERE {where}", params
        ).fetchone()
        rows = self.con.execute(
            f"""SELECT {_CALL_COLUMNS} FROM call c
                LEFT JOIN function f ON f.run = c.run AND f.id = c.function
                WHERE {where} ORDER BY c.thread, c.id LIMIT ?""",
            [*params, limit],
        ).fetchall()
        nodes = {row[0]: CallNode(*row) for row in rows}
        roots: list[CallNode] = []
        for node in nodes.values():
            parent = nodes.get(node.parent) if node.parent is not None else None
            if parent is not None and node.id != call_id:
                parent.children.append(node)
            else:
                roots.append(node)
        return CallTree(
            run=run_id, roots=roots, shown=len(nodes), total=total_row[0] if total_row else 0
        )

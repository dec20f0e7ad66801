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
    #: time in the function itself: its active time (suspensions left out) less
    #: the active time of the recorded calls it made; unfinished calls add none
    self_ns: int = 0


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


@dataclass(frozen=True)
class TestPhaseResult:
    """One phase of a recorded test (a row of the ``test`` table)."""

    phase: str
    outcome: str
    duration_ns: int
    #: the phase's root call (None: a collection error)
    call: int | None
    exception: str | None
    message: str | None
    #: the innermost recorded call the failure's exception left
    raised_in: int | None
    kept: bool
    #: calls the phase made on its thread (stored one by one or summed, or not kept): its
    #: root's preorder interval, where every call begun gets the next id
    calls: int


#: the outcomes pytest counts as failures
FAILING = ("failed", "error")


@dataclass(frozen=True)
class TestResult:
    """A recorded test: its outcome, its phases and how many calls it made."""

    nodeid: str
    outcome: str
    duration_ns: int
    worker: str | None
    phases: list[TestPhaseResult]

    @property
    def failed(self) -> bool:
        """Whether any phase failed (a failure, or an error in setup or teardown)."""
        return any(p.outcome in FAILING for p in self.phases)

    @property
    def calls(self) -> int:
        """Recorded calls under all its phases."""
        return sum(p.calls for p in self.phases)


def combined_outcome(phases: list[TestPhaseResult]) -> str:
    """A test's outcome from its phases, as pytest's summary counts it.

    The setup's outcome if it did not pass, else the call's; a failed teardown
    adds ``error`` (``failed+error``: the test failed and so did its teardown).
    """
    by_phase = {p.phase: p.outcome for p in phases}
    if "collect" in by_phase:  # a module that failed (error) or skipped collection
        return by_phase["collect"]
    setup = by_phase.get("setup", "passed")
    main = setup if setup != "passed" else by_phase.get("call", "passed")
    if by_phase.get("teardown") == "error":
        return "error" if main == "passed" else f"{main}+error"
    return main


@dataclass(frozen=True)
class TestUse:
    """How often one test called one function."""

    nodeid: str
    module: str
    qualname: str
    calls: int


@dataclass(frozen=True)
class TestDetail:
    """A test, the calls under each of its phases, and where its failure came from."""

    test: TestResult
    #: phase -> the calls under its root call
    trees: dict[str, CallTree]
    #: phase -> the calls from its root down to where its exception was raised
    exception_paths: dict[str, list[int]]


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
        self,
        run: int | None = None,
        function: str | None = None,
        limit: int | None = None,
        by: str = "total",
    ) -> list[FunctionStats]:
        """Calls per function with total, self, mean and longest time, the most expensive first.

        ``by`` is ``total`` (total time, then calls) or ``self`` (self time).
        ``function`` keeps functions whose qualified name or ``module.qualname``
        contains it (case-insensitive).
        """
        if by not in ("total", "self"):
            raise QueryError(f"cannot order functions by {by!r}: by total or self")
        run_id = self.resolve_run(run)
        # Stored rows and the sums of calls past a function's budget, together.  A
        # stored call's self time is its active time less its children's: stored
        # ones, and summed ones it called itself (call_aggregate.direct_ns).
        sql = """
            WITH children AS (
                SELECT parent, sum(duration_ns - suspended_ns) AS active_ns
                FROM call WHERE run = $run AND parent IS NOT NULL AND duration_ns >= 0
                GROUP BY parent
                UNION ALL
                SELECT parent, sum(coalesce(direct_ns, 0)) FROM call_aggregate
                WHERE run = $run AND parent IS NOT NULL GROUP BY parent
            ),
            children_ns AS (SELECT parent, sum(active_ns) AS ns FROM children GROUP BY parent),
            every AS (
                SELECT c.function, 1 AS calls, (c.outcome = 'raised')::INT AS raised,
                       greatest(c.duration_ns, 0) AS total_ns,
                       CASE WHEN c.duration_ns >= 0
                            THEN c.duration_ns - c.suspended_ns - coalesce(k.ns, 0)
                            ELSE 0 END AS self_ns,
                       CASE WHEN c.duration_ns >= 0 THEN 1 ELSE 0 END AS timed,
                       c.duration_ns AS max_ns
                FROM call c LEFT JOIN children_ns k ON k.parent = c.id
                WHERE c.run = $run
                UNION ALL
                SELECT function, calls, raised, total_ns, coalesce(self_ns, 0), calls, max_ns
                FROM call_aggregate WHERE run = $run
            )
            SELECT e.function, coalesce(f.module, '?'),
                   coalesce(f.qualname, printf('<function %d>', e.function)),
                   sum(e.calls)::BIGINT, sum(e.raised)::BIGINT, sum(e.total_ns)::BIGINT,
                   sum(e.total_ns) / nullif(sum(e.timed), 0),
                   max(e.max_ns), sum(e.self_ns)::BIGINT
            FROM every e LEFT JOIN function f ON f.run = $run AND f.id = e.function
            WHERE ($function::VARCHAR IS NULL
                   OR f.qualname ILIKE '%' || $function || '%'
                   OR (f.module || '.' || f.qualname) ILIKE '%' || $function || '%')
            GROUP BY ALL
        """
        sql += " ORDER BY 9 DESC, 4 DESC, 3" if by == "self" else " ORDER BY 6 DESC, 4 DESC, 3"
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
                self_ns=r[8],
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
        self,
        call_id: int | None = None,
        run: int | None = None,
        limit: int = 500,
        also: list[int] | None = None,
    ) -> CallTree:
        """The calls under ``call_id`` (itself included), or the whole run, in call order.

        At most ``limit`` calls are fetched, and the calls ``also`` names (a path
        that must show) whatever the limit; ``CallTree.total`` says how many there are.
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
        if also:
            rows += self.con.execute(
                f"""SELECT {_CALL_COLUMNS} FROM call c
                    LEFT JOIN function f ON f.run = c.run AND f.id = c.function
                    WHERE {where} AND c.id IN (SELECT unnest(?::BIGINT[]))""",
                [*params, also],
            ).fetchall()
            rows.sort(key=lambda row: (row[1], row[0]))
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

    def calls_in_run(self, run: int | None = None) -> int:
        """Every call of a run: stored one by one, or summed past a function's budget."""
        run_id = self.resolve_run(run)
        row = self.con.execute(
            """SELECT (SELECT count(*) FROM call WHERE run = $run)
                      + (SELECT coalesce(sum(calls), 0) FROM call_aggregate WHERE run = $run)""",
            {"run": run_id},
        ).fetchone()
        return int(row[0]) if row else 0

    def tests(
        self,
        run: int | None = None,
        failed: bool = False,
        slowest: int | None = None,
        nodeid: str | None = None,
    ) -> list[TestResult]:
        """The run's tests in the order they ran (``slowest``: the N longest, longest first).

        ``failed`` keeps tests that failed or errored; ``nodeid`` one test by node id.
        """
        run_id = self.resolve_run(run)
        rows = self.con.execute(
            """
            SELECT t.nodeid, t.phase, t.outcome, t.duration_ns, t.call, t.exception, t.message,
                   t.raised_in, coalesce(t.kept, true), coalesce(r.end_id - r.id, 0), t.worker
            FROM test t LEFT JOIN call r ON r.run = t.run AND r.id = t.call
            WHERE t.run = $run AND ($nodeid::VARCHAR IS NULL OR t.nodeid = $nodeid)
            ORDER BY t.start_ns, t.nodeid
            """,
            {"run": run_id, "nodeid": nodeid},
        ).fetchall()
        by_test: dict[str, tuple[str | None, list[TestPhaseResult]]] = {}
        for row in rows:
            by_test.setdefault(row[0], (row[10], []))[1].append(TestPhaseResult(*row[1:10]))
        results = [
            TestResult(
                nodeid=name,
                outcome=combined_outcome(phases),
                duration_ns=sum(p.duration_ns for p in phases),
                worker=worker,
                phases=phases,
            )
            for name, (worker, phases) in by_test.items()
        ]
        if failed:
            results = [t for t in results if t.failed]
        if slowest is not None:
            results = sorted(results, key=lambda t: -t.duration_ns)[:slowest]
        return results

    def find_test(self, name: str, run: int | None = None) -> str:
        """The node id ``name`` names: itself, else the one test it ends, else the one it is in.

        ``test_parse`` names ``tests/test_app.py::test_parse`` (not
        ``test_parse_header``); ``test_app.py::test_p`` names the one test whose
        node id contains it, if just one does.
        """
        run_id = self.resolve_run(run)
        rows = self.con.execute(
            "SELECT DISTINCT nodeid FROM test WHERE run = $run AND contains(nodeid, $name)",
            {"run": run_id, "name": name},
        ).fetchall()
        found = sorted(str(r[0]) for r in rows)
        for candidates in (
            [n for n in found if n == name],
            [n for n in found if n.endswith(("::" + name, "/" + name))],
            found,
        ):
            if len(candidates) == 1:
                return candidates[0]
            if candidates:
                shown = ", ".join(candidates[:5]) + (", ..." if len(candidates) > 5 else "")
                raise QueryError(f"{len(candidates)} tests match {name!r}: {shown}")
        raise QueryError(f"no test {name!r} in run {run_id} (see 'scope tests')")

    def test(self, name: str, run: int | None = None, limit: int = 500) -> TestDetail:
        """A test (by node id, or a part of one), each phase's calls, and its exception paths."""
        run_id = self.resolve_run(run)
        nodeid = self.find_test(name, run_id)
        (result,) = self.tests(run_id, nodeid=nodeid)
        trees: dict[str, CallTree] = {}
        paths: dict[str, list[int]] = {}
        for phase in result.phases:
            if phase.call is None:
                continue
            if phase.raised_in is not None:
                paths[phase.phase] = self.stack_of(phase.raised_in, run_id)
            trees[phase.phase] = self.tree(
                phase.call, run=run_id, limit=limit, also=paths.get(phase.phase)
            )
        return TestDetail(test=result, trees=trees, exception_paths=paths)

    def stack_of(self, call_id: int, run: int | None = None) -> list[int]:
        """The calls open when ``call_id`` began, outermost first, ending with it."""
        run_id = self.resolve_run(run)
        rows = self.con.execute(
            """SELECT id FROM call
               WHERE run = $run AND thread = $call >> 40 AND id <= $call AND end_id >= $call
               ORDER BY id""",
            {"run": run_id, "call": call_id},
        ).fetchall()
        return [int(r[0]) for r in rows]

    def tests_calling(self, function: str, run: int | None = None) -> list[TestUse]:
        """Which tests called functions whose name contains ``function``, and how often."""
        run_id = self.resolve_run(run)
        rows = self.con.execute(
            """
            WITH roots AS (
                SELECT t.nodeid, t.call, r.end_id FROM test t
                JOIN call r ON r.run = t.run AND r.id = t.call WHERE t.run = $run
            ),
            wanted AS (
                SELECT id, module, qualname FROM function
                WHERE run = $run AND kind <> 'test'
                  AND (qualname ILIKE '%' || $function || '%'
                       OR (module || '.' || qualname) ILIKE '%' || $function || '%')
            ),
            made AS (
                SELECT c.id AS at, c.function, 1 AS calls FROM call c
                WHERE c.run = $run AND c.function IN (SELECT id FROM wanted)
                UNION ALL
                SELECT a.parent, a.function, a.calls FROM call_aggregate a
                WHERE a.run = $run AND a.function IN (SELECT id FROM wanted)
            )
            SELECT r.nodeid, w.module, w.qualname, sum(m.calls)::BIGINT
            FROM made m JOIN roots r ON m.at BETWEEN r.call AND r.end_id
            JOIN wanted w ON w.id = m.function
            GROUP BY ALL ORDER BY 4 DESC, 1, 3
            """,
            {"run": run_id, "function": function},
        ).fetchall()
        return [TestUse(*row) for row in rows]

"""The query API: open a recording read-only and ask it questions.

Every answer is a typed dataclass, so the CLI, the renderers and scripts share
one implementation.  Subtrees use the preorder interval stored with each call
(``thread = t AND id BETWEEN a AND end_id(a)``) instead of recursive queries
over parent links.

Each method imports the answer types and helpers it uses, so that a command
loads its own and no others' (``tests/test_query_startup.py``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from scope.query.calls import CALL_ROW_COLUMNS, CallFilter, function_clause, where_clause
from scope.query.ids import THREAD_SHIFT

from scope import live
from scope.errors import QueryError, RecordingError, RecordingInUse

if TYPE_CHECKING:
    import duckdb  # loaded only when this process opens the file itself
    from scope.query.diff import Side
    from scope.query.remote import ServiceConnection
    from scope.query.results.calls import CallList, CallNode, CallTree
    from scope.query.results.diff import RecordingDiff
    from scope.query.results.exceptions import ExceptionKind, ExceptionPath
    from scope.query.results.health import RunHealth
    from scope.query.results.history import AttributeWrite
    from scope.query.results.runs import FunctionStats, RunSummary, SqlResult
    from scope.query.results.tests import TestDetail, TestResult, TestUse

#: what ``Recording.calls`` keeps when given no filter
EVERY_CALL = CallFilter()


#: seconds a query waits for a recording being written to be answered
SERVICE_WAIT = 5.0


def _open(
    path: str,
    settings: Mapping[str, str | bool | int] | None = None,
    writable_folder: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """The recording: asked of its recording service if one is running, else opened
    read-only here, as a sandbox (``open_for_reading``: ``settings`` and
    ``writable_folder`` are its).  One that is to write files under
    ``writable_folder`` is opened here in any case: a service writes no file.

    A service that writes the recording holds the file, and one that lingers
    after its runs has DuckDB loaded, which takes a query's own process longer
    than a short query does (see ``scope.query.remote``).  A service holds the
    file from just before it answers on its socket, and lets go of it a moment
    after its last program ends: either way is tried again until one works, for
    at most ``SERVICE_WAIT`` seconds.  So is a file that is not there yet (or
    not yet a recording) while a program recording into it runs: its service
    is making it.
    """
    deadline = time.monotonic() + SERVICE_WAIT
    while True:
        remote = None if writable_folder else _service_connection(path)
        if remote is not None:
            # It has the part of a connection the queries use (see scope.query.remote).
            return cast("duckdb.DuckDBPyConnection", remote)
        from scope.storage.database import open_for_reading

        try:
            return open_for_reading(path, settings, writable_folder)
        except RecordingInUse:
            if time.monotonic() > deadline:
                raise
        except RecordingError:
            # Not in the file yet: a program that has just begun recording into it
            # has a service that is making it.
            if time.monotonic() > deadline or not live.producer_running(path):
                raise
        time.sleep(0.05)


def _service_connection(path: str) -> ServiceConnection | None:
    """A connection to the service writing ``path`` that has the file open, if there is one."""
    if not os.path.exists(live.service_socket(path)):
        return None  # no service: what talks to one (socket, its codecs) stays unloaded
    from scope.storage import ahead

    # Before asking: a service that is starting opens the file before it answers,
    # and a reader keeps it out.
    ahead.discard()
    from scope.query.remote import RemoteError, ServiceConnection

    try:
        remote = ServiceConnection(path)
    except OSError:
        return None
    try:
        remote.execute("SELECT 1")
    except RemoteError:
        remote.close()
        return None
    return remote


def _query_errors() -> tuple[type[Exception], ...]:
    """What a statement that failed raises: a recording service's error and DuckDB's,
    of those that are loaded (a statement ran on one of them)."""
    errors: list[type[Exception]] = []
    remote = sys.modules.get("scope.query.remote")
    if remote is not None:
        errors.append(remote.RemoteError)
    engine = sys.modules.get("_duckdb") or sys.modules.get("duckdb")  # storage/engine.py
    if engine is not None:
        errors.append(engine.Error)
    return tuple(errors)


#: a stored call whose parent's row is on another thread (or process): the thread
#: part of a call id is its top bits (``scope.query.ids``)
_CROSSES = f"parent IS NOT NULL AND parent >> {THREAD_SHIFT} <> id >> {THREAD_SHIFT}"

#: Self time where generators cross threads.  A generator made on thread 1 and
#: consumed on thread 2 has a row on thread 1, under its maker; its children,
#: run while thread 2 resumed it, have rows on thread 2 (``crossing``).  Those
#: ran above the innermost call open on thread 2 when they began (their host,
#: found by the thread's preorder intervals), not above the generator's maker:
#: the host's self time leaves them out, and the generator's maker is charged
#: only the generator's time less theirs (``away``).  Without this a thread's
#: self times could add up to more than the thread lasted.
_CROSSING = f"""
    crossing AS (
        SELECT id, parent, duration_ns - suspended_ns AS active_ns FROM call
        WHERE run = $run AND duration_ns >= 0 AND {_CROSSES}
    ),
    away AS (SELECT parent, sum(active_ns) AS ns FROM crossing GROUP BY parent),
    hosted AS (
        SELECT max(h.id) AS host, any_value(x.active_ns) AS active_ns
        FROM crossing x JOIN call h
          ON h.run = $run AND h.id >> {THREAD_SHIFT} = x.id >> {THREAD_SHIFT}
         AND h.id < x.id AND h.end_id >= x.id
        GROUP BY x.id
    ),
"""
#: what ran above each call, where generators crossed threads
_CROSSING_CHILDREN = """
    SELECT c.parent, sum(CASE
        WHEN c.suspensions > 0
        THEN greatest(c.duration_ns - c.suspended_ns - coalesce(a.ns, 0), 0)
        ELSE c.duration_ns - c.suspended_ns END) AS active_ns
    FROM call c LEFT JOIN away a ON a.parent = c.id
    WHERE c.run = $run AND c.parent IS NOT NULL AND c.duration_ns >= 0
    GROUP BY c.parent
    UNION ALL
    SELECT host, sum(active_ns) FROM hosted GROUP BY host
"""
#: what ran above each call, in the common run where no generator crossed threads
_CHILDREN = """
    SELECT parent, sum(duration_ns - suspended_ns) AS active_ns
    FROM call WHERE run = $run AND parent IS NOT NULL AND duration_ns >= 0
    GROUP BY parent
"""


class Recording:
    """A recording file opened for reading (or the service writing it, meanwhile)."""

    def __init__(
        self, path: str, progress_bar: bool = False, writable_folder: str | None = None
    ) -> None:
        """Open the recording at ``path``.  ``progress_bar``: DuckDB shows one for a
        query that runs over a second (when it reads the file itself).
        ``writable_folder``: its SQL may write files there, and nowhere else (an
        export's ``COPY``)."""
        self.path = path
        settings = {"enable_progress_bar": True, "progress_bar_time": 1000} if progress_bar else {}
        self.con: duckdb.DuckDBPyConnection = _open(path, settings, writable_folder)
        #: run -> why it recorded no calls, for each such run a query has read
        self.why_empty: dict[int, str] = {}
        #: runs found, through ``_settled_on``, to exist and to have ended (noted in
        #: ``why_empty`` if empty): a command resolves its run in each question it
        #: asks, and asks once.  Another connection (the viewer opens the file
        #: again after letting go of it) may see runs removed meanwhile.
        self._settled_runs: set[int] = set()
        self._settled_on: object = self.con

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
        from scope.query.results.runs import RunSummary

        rows = self.con.execute(
            """SELECT id, argv, started_at, ended_at, status, exit_status, calls_stored,
                      calls_unfinished, events_dropped, coalesce(problems, [])
               FROM run ORDER BY id"""
        ).fetchall()
        return [RunSummary(*row) for row in rows]

    def health(self, run: int | None = None) -> RunHealth:
        """What the recorder captured, stored and lost in a run, overall and per thread."""
        from scope.query.results.health import ProcessHealth, RunHealth, ThreadHealth

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
            """SELECT p.pid, p.parent_pid, p.exit_status, p.ended_by,
                      TRY_CAST(regexp_extract(e.detail, 'p50 ([0-9]+)', 1) AS BIGINT),
                      TRY_CAST(regexp_extract(e.detail, 'p99 ([0-9]+)', 1) AS BIGINT)
               FROM process p LEFT JOIN (
                   SELECT pid, arg_max(detail, time_ns) AS detail FROM event
                   WHERE run = $run AND kind = 'service lag' GROUP BY pid
               ) e ON e.pid = p.pid
               WHERE p.run = $run ORDER BY p.start_ns""",
            {"run": run_id},
        ).fetchall()
        recovered = self.con.execute(
            "SELECT count(*) FROM event WHERE run = ? AND kind = 'recovered' AND "
            "detail LIKE 'process %'",
            [run_id],
        ).fetchone()
        values: list[object] = [
            run_id,
            *row,
            [ThreadHealth(*t) for t in threads],
            [ProcessHealth(*p) for p in processes],
            int(recovered[0]) if recovered else 0,
        ]
        return RunHealth(*values)  # type: ignore[arg-type]

    def resolve_run(self, run: int | None = None) -> int:
        """The run ``run`` if it exists, or the latest run when ``run`` is None.

        A finished run that recorded no calls is noted in ``why_empty``."""
        if self._settled_on is not self.con:
            self._settled_runs, self._settled_on = set(), self.con
        if run is None:
            row = self.con.execute("SELECT max(id) FROM run").fetchone()
            if row is None or row[0] is None:
                raise QueryError(f"{self.path} holds no runs yet")
            run = int(row[0])
        elif run in self._settled_runs:
            return run
        else:
            row = self.con.execute("SELECT count(*) FROM run WHERE id = ?", [run]).fetchone()
            if not row or row[0] == 0:
                raise QueryError(f"no run {run} in {self.path} (see 'scope runs')")
        if run not in self._settled_runs and self._note_if_empty(run):
            self._settled_runs.add(run)
        return run

    def records_values(self, run: int | None = None) -> bool:
        """Whether the run recorded values: arguments, return values, attribute writes
        (some function of it was at ``args`` or ``full`` level)."""
        row = self.con.execute(
            "SELECT count(*) > 0 FROM function WHERE run = ? AND level IN ('args', 'full')",
            [self.resolve_run(run)],
        ).fetchone()
        return bool(row and row[0])

    def _note_if_empty(self, run: int) -> bool:
        """Remember why run ``run`` recorded no calls, if it is over and recorded none:
        no recorded function ran, or no module with one was recorded at all.  Whether
        it is over (a run still recording is asked again)."""
        row = self.con.execute(
            """SELECT coalesce(calls_stored, 0) + coalesce(calls_unfinished, 0)
                      + coalesce(calls_summed, 0)
               FROM run WHERE id = ? AND ended_at IS NOT NULL""",
            [run],
        ).fetchone()
        if row is None:
            return False
        if row[0] != 0:
            return True
        recorded = self.con.execute(
            """SELECT DISTINCT CASE WHEN module IN ('__main__', '__mp_main__')
                                    THEN regexp_extract(file, '[^/]*$') ELSE module END
               FROM function WHERE run = ? AND level != 'off' ORDER BY 1""",
            [run],
        ).fetchall()
        names = [name for (name,) in recorded]
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            reason = f"no function of {shown} ran while it recorded"
        else:
            reason = (
                "no module of yours with a function to record was loaded; name what to "
                "record with --include or --only (scope plan shows why a module is left out)"
            )
        self.why_empty[run] = f"run {run} recorded no calls: {reason}"
        return True

    def function_stats(
        self,
        run: int | None = None,
        function: str | None = None,
        limit: int | None = None,
        by: str = "total",
    ) -> list[FunctionStats]:
        """Calls per function with total, self, mean and longest time, the most expensive first.

        ``by`` is ``total`` (total time, then calls) or ``self`` (self time).
        ``function`` keeps the functions it names, as ``scope calls --function``
        does (see ``scope.query.calls``).
        """
        from scope.query.results.runs import FunctionStats

        if by not in ("total", "self"):
            raise QueryError(f"cannot order functions by {by!r}: by total or self")
        run_id = self.resolve_run(run)
        # Stored rows and the sums of calls past a function's budget, together.  A
        # stored call's self time is its active time less what ran above it on the
        # stack: its stored children, and summed ones it called itself
        # (call_aggregate.direct_ns).  A generator resumed on another thread than
        # its caller's runs above that thread's call (its host), not above its
        # caller: see _CROSSING.
        crossing = self._threads_crossed(run_id)
        sql = """
            WITH {crossing}
            children AS (
                {stored_children}
                UNION ALL
                SELECT parent, sum(coalesce(direct_ns, 0)) FROM call_aggregate
                WHERE run = $run AND parent IS NOT NULL GROUP BY parent
            ),
            children_ns AS (SELECT parent, sum(active_ns) AS ns FROM children GROUP BY parent),
            every AS (
                SELECT c.function, 1 AS calls, (c.outcome = 'raised')::INT AS raised,
                       greatest(c.duration_ns, 0) AS total_ns,
                       greatest(c.duration_ns - c.suspended_ns, 0) AS active_ns,
                       CASE WHEN c.duration_ns >= 0
                            THEN greatest(c.duration_ns - c.suspended_ns - coalesce(k.ns, 0), 0)
                            ELSE 0 END AS self_ns,
                       CASE WHEN c.duration_ns >= 0 THEN 1 ELSE 0 END AS timed,
                       c.duration_ns AS max_ns
                FROM call c LEFT JOIN children_ns k ON k.parent = c.id
                WHERE c.run = $run
                UNION ALL
                SELECT function, calls, raised, total_ns, total_ns, coalesce(self_ns, 0), calls,
                       max_ns
                FROM call_aggregate WHERE run = $run
            )
            SELECT e.function, coalesce(f.module, '?'),
                   coalesce(f.qualname, printf('<function %d>', e.function)),
                   sum(e.calls)::BIGINT, sum(e.raised)::BIGINT, sum(e.total_ns)::BIGINT,
                   sum(e.total_ns) / nullif(sum(e.timed), 0),
                   max(e.max_ns), sum(e.self_ns)::BIGINT, sum(e.active_ns)::BIGINT,
                   100.0 * sum(e.active_ns) / nullif(
                       (SELECT max(end_ns) - min(start_ns) FROM run WHERE id = $run), 0),
                   any_value(f.file), any_value(f.line)
            FROM every e LEFT JOIN function f ON f.run = $run AND f.id = e.function
            WHERE {named}
            GROUP BY e.function, f.module, f.qualname
        """
        conditions, params = function_clause(CallFilter(function=function))
        sql = sql.replace("{named}", " AND ".join(conditions) or "TRUE")
        sql = sql.replace("{crossing}", _CROSSING if crossing else "")
        sql = sql.replace("{stored_children}", _CROSSING_CHILDREN if crossing else _CHILDREN)
        sql += " ORDER BY 9 DESC, 4 DESC, 3" if by == "self" else " ORDER BY 10 DESC, 4 DESC, 3"
        params["run"] = run_id
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
                active_ns=r[9],
                percent=float(r[10]) if r[10] is not None else None,
                file=r[11],
                line=r[12],
            )
            for r in rows
        ]

    def _threads_crossed(self, run: int) -> bool:
        """Whether any stored call ran on another thread than its caller's row: a
        generator or coroutine resumed on another thread than it began on."""
        row = self.con.execute(
            f"SELECT EXISTS (SELECT 1 FROM call WHERE run = $run AND {_CROSSES})", {"run": run}
        ).fetchone()
        return bool(row and row[0])

    def call(self, call_id: int, run: int | None = None) -> CallNode:
        """One call by id."""
        from scope.query.results.calls import CallNode

        run_id = self.resolve_run(run)
        row = self.con.execute(
            f"""SELECT {CALL_ROW_COLUMNS} FROM call c
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
        fold: bool = True,
        depth: int | None = None,
    ) -> CallTree:
        """The calls under ``call_id`` (itself included), or the whole run, in call order.

        ``limit`` counts the lines the tree shows: with ``fold``, a run of alike
        sibling calls is one line, its first, counting the others
        (``scope.query.folding``), and with ``depth``, calls more than ``depth``
        levels down are not fetched but counted on the call above them
        (``CallNode.below``).  The calls ``also`` names (a path that must show)
        are fetched whatever the limit, and stay unfolded.  ``CallTree.shown`` is
        how many calls the lines stand for; ``total``, how many there are.
        """
        from scope.query.results.calls import CallTree

        run_id = self.resolve_run(run)
        if call_id is not None:
            top = self.call(call_id, run_id)
            where = "c.run = ? AND c.thread = ? AND c.id BETWEEN ? AND ?"
            end = self.con.execute(
                "SELECT end_id FROM call WHERE run = ? AND id = ?", [run_id, call_id]
            ).fetchone()
            params: list[object] = [run_id, top.thread, call_id, end[0] if end else call_id]
            top_depth = top.depth
        else:
            where = "c.run = ?"
            params = [run_id]
            top_depth = 0
        total_row = self.con.execute(
            f"SELECT count(*) FROM call c WHERE {where}", params
        ).fetchone()
        total = total_row[0] if total_row else 0
        deepest = None if depth is None else top_depth + depth - 1
        within = where if deepest is None else f"{where} AND c.depth <= {int(deepest)}"
        rows: list[tuple[Any, ...]] = []
        batch = max(limit, 1)
        while True:
            fetched = self._tree_rows(within, params, deepest, batch, len(rows))
            rows += fetched
            roots = self._build_tree(rows, call_id, (where, params, also), fold, run_id)
            if _lines(roots) >= limit or len(fetched) < batch:
                break
            batch *= 2
        roots, shown = _first_lines(roots, limit, keep=set(also or ()))
        return CallTree(run=run_id, roots=roots, shown=shown, total=total)

    def _tree_rows(
        self,
        where: str,
        params: list[object],
        deepest: int | None,
        limit: int,
        offset: int,
    ) -> list[tuple[Any, ...]]:
        """Call rows in call order, each with how many calls it has under it when it is
        at the deepest level fetched (else 0)."""
        below = "0"
        if deepest is not None:
            below = f"""CASE WHEN c.depth = {int(deepest)} AND c.end_id > c.id THEN
                        (SELECT count(*) FROM call d WHERE d.run = c.run AND d.thread = c.thread
                         AND d.id > c.id AND d.id <= c.end_id) ELSE 0 END"""
        return self.con.execute(
            f"""SELECT {CALL_ROW_COLUMNS}, {below} FROM call c
                LEFT JOIN function f ON f.run = c.run AND f.id = c.function
                WHERE {where} ORDER BY c.thread, c.id LIMIT ? OFFSET ?""",
            [*params, limit, offset],
        ).fetchall()

    def _build_tree(
        self,
        rows: list[tuple[Any, ...]],
        call_id: int | None,
        path: tuple[str, list[object], list[int] | None],
        fold: bool,
        run_id: int,
    ) -> list[CallNode]:
        """The call tree of ``rows``, and of the calls of ``path`` (the condition of the
        tree's calls, its parameters, and the calls that must show), folded if asked."""
        from scope.query.folding import fold_similar
        from scope.query.results.calls import CallNode

        nodes: dict[int, CallNode] = {}
        for row in rows:
            node = nodes[row[0]] = CallNode(*row[:-1])
            node.below = int(row[-1])
        where, params, also = path
        if also:
            for row in self.con.execute(
                f"""SELECT {CALL_ROW_COLUMNS} FROM call c
                    LEFT JOIN function f ON f.run = c.run AND f.id = c.function
                    WHERE {where} AND c.id IN (SELECT unnest(?::BIGINT[]))""",
                [*params, also],
            ).fetchall():
                nodes.setdefault(row[0], CallNode(*row))
        ordered = sorted(nodes.values(), key=lambda node: (node.thread, node.id))
        roots: list[CallNode] = []
        for node in ordered:
            parent = nodes.get(node.parent) if node.parent is not None else None
            if parent is not None and node.id != call_id:
                parent.children.append(node)
            else:
                roots.append(node)
        phases = self._test_phases([node.id for node in roots], run_id)
        for node in roots:
            node.phase = phases.get(node.id)
        return fold_similar(roots, keep=also or ()) if fold else roots

    def _test_phases(self, calls: list[int], run_id: int) -> dict[int, str]:
        """The phase of each of ``calls`` that is a test's root call (pytest --scope)."""
        if not calls or not self._has_tests(run_id):
            return {}
        rows = self.con.execute(
            "SELECT call, phase FROM test WHERE run = ? AND call IN (SELECT unnest(?::BIGINT[]))",
            [run_id, calls],
        ).fetchall()
        return {int(call): str(phase) for call, phase in rows}

    def _has_tests(self, run_id: int) -> bool:
        row = self.con.execute("SELECT count(*) > 0 FROM test WHERE run = ?", [run_id]).fetchone()
        return bool(row and row[0])

    def calls(
        self,
        where: CallFilter = EVERY_CALL,
        run: int | None = None,
        limit: int = 100,
        slowest: bool = False,
    ) -> CallList:
        """The stored calls ``where`` keeps, in the order they began (``slowest``: longest first).

        At most ``limit`` are listed, with their recorded arguments and return
        value; ``CallList.matched`` counts them all, and ``CallList.summed`` the
        calls of the matched functions that were summed past their budget.
        """
        from scope.query.results.calls import CallList, CallRow

        run_id = self.resolve_run(run)
        condition, params = where_clause(where, run_id)
        joined = "FROM call c LEFT JOIN function f ON f.run = c.run AND f.id = c.function"
        counted = self.con.execute(f"SELECT count(*) {joined} WHERE {condition}", params)
        matched = int((counted.fetchone() or (0,))[0])
        order = "c.duration_ns DESC, c.id" if slowest else "c.start_ns, c.id"
        rows = self.con.execute(
            f"SELECT {CALL_ROW_COLUMNS} {joined} WHERE {condition} ORDER BY {order} LIMIT $limit",
            {**params, "limit": limit},
        ).fetchall()
        arguments: dict[int, list[str]] = {}
        returned: dict[int, str] = {}
        values = self.con.execute(
            """SELECT call, role, coalesce(name, '#' || position), value FROM value
               WHERE run = ? AND call IN (SELECT unnest(?::BIGINT[]))
                 AND role IN ('argument', 'return')
               ORDER BY call, position""",
            [run_id, [row[0] for row in rows]],
        ).fetchall()
        for call, role, name, value in values:
            if role == "return":
                returned[call] = value
            else:
                arguments.setdefault(call, []).append(f"{name}={value}")
        by_function, function_params = function_clause(where)
        summed_row = self.con.execute(
            f"""SELECT coalesce(sum(a.calls), 0) FROM call_aggregate a
                LEFT JOIN function f ON f.run = a.run AND f.id = a.function
                WHERE {" AND ".join(["a.run = $run", *by_function])}""",
            {**function_params, "run": run_id},
        ).fetchone()
        unfiltered = where == CallFilter(function=where.function, module=where.module)
        return CallList(
            run=run_id,
            calls=[
                replace(
                    CallRow(*row),
                    arguments=arguments.get(row[0], []),
                    returned=returned.get(row[0]),
                )
                for row in rows
            ],
            matched=matched,
            summed=int(summed_row[0]) if summed_row and unfiltered else 0,
        )

    def path_to(self, call_id: int, run: int | None = None) -> list[CallNode]:
        """How the program got to ``call_id``: the calls open when it began, outermost first."""
        from scope.query.results.calls import CallNode

        run_id = self.resolve_run(run)
        self.call(call_id, run_id)  # one that exists, or a clear error
        ids = self.stack_of(call_id, run_id)
        rows = self.con.execute(
            f"""SELECT {CALL_ROW_COLUMNS} FROM call c
                LEFT JOIN function f ON f.run = c.run AND f.id = c.function
                WHERE c.run = ? AND c.id IN (SELECT unnest(?::BIGINT[])) ORDER BY c.id""",
            [run_id, ids],
        ).fetchall()
        return [CallNode(*row) for row in rows]

    def exceptions(
        self, run: int | None = None, type: str | None = None, limit: int = 100
    ) -> list[ExceptionPath]:
        """Exceptions that left recorded calls, in the order they were raised.

        Each comes with the calls it left, innermost first, and the call that
        caught it (or none: it ended the program, or unrecorded code caught it).
        ``type`` keeps those whose type name matches (a glob, or a part of it).
        """
        from scope.query.exceptions import find_exceptions

        return find_exceptions(self.con, self.resolve_run(run), type, limit)

    def exception_kinds(
        self, run: int | None = None, type: str | None = None, limit: int = 100
    ) -> list[ExceptionKind]:
        """Exceptions that left recorded calls, grouped with those alike (type, message
        shape, raising and catching function), the group with the newest first."""
        from scope.query.exceptions import find_exception_kinds

        return find_exception_kinds(self.con, self.resolve_run(run), type, limit)

    def history(
        self,
        object_id: int | None = None,
        attribute: str | None = None,
        owner_type: str | None = None,
        run: int | None = None,
        limit: int = 1000,
    ) -> list[AttributeWrite]:
        """Recorded attribute writes (``self.x = v``), in order, with the calls that made them.

        ``object_id`` keeps one object's (its ``id()``, as values show it),
        ``attribute`` one attribute's, ``owner_type`` those to a type's objects.
        """
        from scope.query.history import attribute_writes

        run_id = self.resolve_run(run)
        return attribute_writes(self.con, run_id, object_id, attribute, owner_type, limit)

    def diff(self, before: str, after: str, run: int | None = None) -> RecordingDiff:
        """What differs from ``before`` to ``after``: each a run number, or a test.

        A test is named as for ``scope test`` (a node id or a part of one),
        optionally followed by ``@RUN`` for a test of another run than ``run``.
        """
        from scope.query.diff import compare

        return compare(self.con, self._side(before, run), self._side(after, run))

    def _side(self, spec: str, run: int | None) -> Side:
        from scope.query.diff import Side

        if spec.isdigit():
            return Side(f"run {spec}", self.resolve_run(int(spec)))
        name, at, run_text = spec.rpartition("@")
        if not at or not run_text.isdigit():
            name, run_text = spec, ""
        run_id = self.resolve_run(int(run_text) if run_text else run)
        result = self.tests(run_id, nodeid=self.find_test(name, run_id))[0]
        return Side(f"{result.nodeid} (run {run_id})", run_id, result.roots, result.outcome)

    def sql(self, query: str, params: list[object] | None = None) -> SqlResult:
        """Run one SQL statement on the recording (read-only); DuckDB's error becomes
        a ``QueryError``.  A recording service checks the statement itself."""
        from scope.query.results.runs import SqlResult

        # A service's connection has the file opened here once it declined a query.
        local = getattr(self.con, "direct", self.con)
        if local is not None:
            from scope.storage.database import one_statement

            one_statement(local, query)
        try:
            cursor = self.con.execute(query, params or [])
            columns = [d[0] for d in cursor.description or []]
            rows = cursor.fetchall() if columns else []
        except _query_errors() as exc:
            raise QueryError(str(exc).strip()) from None
        return SqlResult(columns, rows)

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
        from scope.query.results.tests import TestPhaseResult, TestResult, combined_outcome

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
        from scope.query.results.tests import TestDetail

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
        """Which tests called the functions ``function`` names, and how often.

        ``function`` names functions as ``scope calls --function`` does (see
        ``scope.query.calls``).
        """
        from scope.query.results.tests import TestUse

        run_id = self.resolve_run(run)
        conditions, params = function_clause(CallFilter(function=function))
        rows = self.con.execute(
            """
            WITH roots AS (
                SELECT t.nodeid, t.call, r.end_id FROM test t
                JOIN call r ON r.run = t.run AND r.id = t.call WHERE t.run = $run
            ),
            wanted AS (
                SELECT id, module, qualname FROM function f
                WHERE run = $run AND kind <> 'test' AND {named}
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
            """.replace("{named}", " AND ".join(conditions)),
            {**params, "run": run_id},
        ).fetchall()
        return [TestUse(*row) for row in rows]


def _lines(roots: list[CallNode]) -> int:
    """How many calls a tree shows, one line each (a folded run of calls is one)."""
    count, pending = 0, list(roots)
    while pending:
        node = pending.pop()
        count += 1
        pending.extend(node.children)
    return count


def _first_lines(roots: list[CallNode], limit: int, keep: set[int]) -> tuple[list[CallNode], int]:
    """The tree cut after its first ``limit`` lines in call order (the calls of ``keep``
    and the way to them stay), and how many calls the lines kept stand for."""
    wanted: set[int] = set()
    order: list[tuple[CallNode, CallNode | None]] = []
    pending: list[tuple[CallNode, CallNode | None]] = [(n, None) for n in reversed(roots)]
    while pending:
        node, parent = pending.pop()
        order.append((node, parent))
        pending.extend((child, node) for child in reversed(node.children))
    parents = {id(node): parent for node, parent in order}
    for node, _ in order[:limit]:
        wanted.add(id(node))
    for node, _ in order:
        if node.id in keep:
            walk: CallNode | None = node
            while walk is not None and id(walk) not in wanted:
                wanted.add(id(walk))
                walk = parents[id(walk)]
    shown = 0
    for node, _ in order:
        if id(node) in wanted:
            node.children = [child for child in node.children if id(child) in wanted]
            shown += 1 + node.similar_calls + node.below
    return [root for root in roots if id(root) in wanted], shown

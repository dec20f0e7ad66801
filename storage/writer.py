"""The recording writer: the sink the pipeline's writer thread feeds.

``begin`` inserts the run's row (status ``running``) before the program starts;
every batch is correlated and committed in one transaction together with the
functions planned since the previous batch, so a crash leaves every committed
batch readable; ``finish`` stores the calls still open as unfinished, the
threads, and the run's end, exit status and telemetry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
from scope.instrument.plan import ModulePlan
from scope.storage.budget import AggregateColumns, Budget
from scope.storage.correlate import CallColumns, Correlator
from scope.storage.schema import OUTCOMES
from scope.storage.values import value_columns

from scope import native

_OUTCOME_SQL = (
    "CASE outcome "
    + " ".join(f"WHEN {code} THEN '{name}'" for code, name in enumerate(OUTCOMES))
    + " END"
)

_INSERT_CALLS = f"""
INSERT INTO call
SELECT ?, id, thread, NULLIF(parent, 0), end_id, depth, function, start_ns, duration_ns,
       {_OUTCOME_SQL}, suspended_ns, suspensions
FROM batch
"""

_INSERT_AGGREGATES = """
INSERT INTO call_aggregate
SELECT ?, NULLIF(parent, 0), function, calls, raised, total_ns, min_ns, max_ns
FROM aggregate_batch
"""

_INSERT_VALUES = """
INSERT INTO value
SELECT ?, call, function, role, position, name, kind, type, value, length, object_id
FROM value_batch
"""


@dataclass(frozen=True)
class RunInfo:
    """What is known about a run when it starts."""

    argv: Sequence[str]
    cwd: str
    python: str
    platform: str
    pid: int
    scope_version: str
    start_ns: int


@dataclass(frozen=True)
class RunEnd:
    """What is known about a run when it ends."""

    exit_status: int | None
    end_ns: int
    rings: native.RingStats
    clock: native.ClockInfo
    writer_batches: int
    records_lost: int
    problems: Sequence[str]


class RecordingWriter:
    """Writes one run into an open recording connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, max_calls_per_function: int = 0) -> None:
        self.con = con
        self.run_id = 0
        self.correlator = Correlator()
        self.budget = Budget(max_calls_per_function)
        self.calls_summed = 0
        self.calls_stored = 0
        self.calls_unfinished = 0
        self.values_stored = 0
        self._plans: list[ModulePlan] = []
        #: function id -> (parameter names, attribute names), for naming values
        self._names: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._plans_lock = threading.Lock()
        self._thread_names: dict[int, str] = {}

    def begin(self, info: RunInfo) -> int:
        """Insert the run's row; returns its id."""
        self.con.execute("BEGIN")
        row = self.con.execute("SELECT coalesce(max(id), 0) + 1 FROM run").fetchone()
        self.run_id = int(row[0]) if row else 1
        self.con.execute(
            """INSERT INTO run (id, argv, cwd, python, platform, pid, scope_version,
                                started_at, start_ns, status)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')""",
            [
                self.run_id,
                list(info.argv),
                info.cwd,
                info.python,
                info.platform,
                info.pid,
                info.scope_version,
                dt.datetime.now(dt.UTC).replace(tzinfo=None),
                info.start_ns,
            ],
        )
        self.con.execute("COMMIT")
        return self.run_id

    def add_plan(self, plan: ModulePlan) -> None:
        """Queue a module's functions for the next transaction (any thread may call)."""
        with self._plans_lock:
            self._plans.append(plan)
            for f in plan.functions:
                self._names[f.id] = (f.params, f.attributes)

    def _name_of(self, function: int, role: str, index: int) -> str | None:
        params, attributes = self._names.get(function, ((), ()))
        names = params if role == "argument" else attributes if role == "attribute" else ()
        return names[index] if index < len(names) else None

    def write_batch(self, records: np.ndarray, arena: np.ndarray | None = None) -> None:
        """Correlate ``records`` and commit the completed calls and values (writer thread)."""
        calls, values = self.correlator.add(records)
        calls, summed = self.budget.split(calls)
        self._remember_thread_names()
        empty = np.empty(0, np.uint8)
        self._commit(calls, values, empty if arena is None else arena, summed)

    def _remember_thread_names(self) -> None:
        for thread in threading.enumerate():
            if thread.ident is not None:
                self._thread_names[thread.ident] = thread.name

    def _commit(
        self,
        calls: CallColumns,
        values: np.ndarray | None = None,
        arena: np.ndarray | None = None,
        summed: AggregateColumns | None = None,
    ) -> None:
        with self._plans_lock:
            plans, self._plans = self._plans, []
        self.con.execute("BEGIN")
        try:
            for plan in plans:
                self._insert_functions(plan)
            if len(calls):
                self._insert("batch", calls.as_dict(), _INSERT_CALLS)
            if summed is not None and len(summed):
                self._insert("aggregate_batch", summed.as_dict(), _INSERT_AGGREGATES)
            if values is not None and len(values):
                assert arena is not None
                self._insert(
                    "value_batch", value_columns(values, arena, self._name_of), _INSERT_VALUES
                )
            self.con.execute("COMMIT")
        except BaseException:
            # The failure is the news: a rollback that fails too must not hide it.
            with contextlib.suppress(Exception):
                self.con.execute("ROLLBACK")
            with self._plans_lock:
                self._plans[:0] = plans
            raise
        self.calls_stored += len(calls)
        self.calls_summed += 0 if summed is None else int(summed.calls.sum())
        self.values_stored += 0 if values is None else len(values)

    def _insert(self, name: str, columns: object, statement: str) -> None:
        self.con.register(name, columns)
        try:
            self.con.execute(statement, [self.run_id])
        finally:
            self.con.unregister(name)

    def _insert_functions(self, plan: ModulePlan) -> None:
        rows = [
            (
                self.run_id,
                f.id,
                plan.module,
                f.qualname,
                plan.path,
                f.kind,
                f.level,
                list(f.params),
                list(f.attributes),
                0,
            )
            for f in plan.functions
        ]
        if rows:
            self.con.executemany(
                "INSERT OR REPLACE INTO function VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )

    def finish(self, end: RunEnd) -> None:
        """Store the open calls as unfinished, the threads, and close the run's row."""
        unfinished = self.correlator.finish()
        self._remember_thread_names()
        self._commit(unfinished)
        self.calls_unfinished = len(unfinished)
        threads = native.threads()
        rings = end.rings
        dropped = rings.dropped + end.records_lost + self.correlator.orphan_exits
        self.con.execute("BEGIN")
        for function, count in self.budget.summed.items():
            self.con.execute(
                "UPDATE function SET calls_summed = ? WHERE run = ? AND id = ?",
                [count, self.run_id, function],
            )
        for t in threads:
            self.con.execute(
                "INSERT OR REPLACE INTO thread VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    self.run_id,
                    t.slot,
                    t.native_id,
                    t.ident,
                    t.name or self._thread_names.get(t.ident),
                    t.start_ns,
                    t.end_ns,
                    t.produced,
                    t.dropped,
                    t.high_water,
                    t.blocked_ns,
                    t.stack_overflow,
                    t.unmatched_exits,
                    t.values_lost,
                ],
            )
        self.con.execute(
            """UPDATE run SET ended_at = ?, end_ns = ?, status = 'complete', exit_status = ?,
                   events_captured = ?, events_dropped = ?, events_stored = ?,
                   calls_stored = ?, calls_unfinished = ?, calls_summed = ?,
                   writer_batches = ?, problems = ?,
                   clock = ?, clock_ns_per_tick = ?, clock_calibrated_ns = ?
               WHERE id = ?""",
            [
                dt.datetime.now(dt.UTC).replace(tzinfo=None),
                end.end_ns,
                end.exit_status,
                rings.produced + rings.dropped,
                dropped,
                self.correlator.records_seen - self.correlator.orphan_exits,
                self.calls_stored,
                self.calls_unfinished,
                self.calls_summed,
                end.writer_batches,
                list(end.problems),
                end.clock.source,
                end.clock.ns_per_tick,
                end.clock.calibrated_ns,
                self.run_id,
            ],
        )
        self.con.execute("COMMIT")

"""The recording writer: the sink the pipeline's writer thread feeds.

``begin`` inserts the run's row (status ``running``) before the program starts;
every batch's calls and values are committed in one transaction together with
the functions planned since the previous batch, so a crash leaves every
committed batch readable; ``finish`` stores the threads and the run's end,
exit status and telemetry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import cast

import duckdb
import numpy as np
from scope.instrument.plan import PackedPlan, unpack_plan
from scope.native.batch import VALUE_DTYPE, Batch
from scope.storage import database
from scope.storage.retention import discard_under
from scope.storage.rows import Event, RunEnd, RunInfo, TestPhase
from scope.storage.schema import OUTCOMES
from scope.storage.values import summarize, value_columns

from scope import native
from scope.redaction import scrub_argv

_OUTCOME_SQL = (
    "CASE outcome "
    + " ".join(f"WHEN {code} THEN '{name}'" for code, name in enumerate(OUTCOMES))
    + " END"
)

#: Value rows are rendered as Python objects and inserted this many at a time, and
#: far fewer while the program traces its allocations: a chunk under way when
#: tracing starts is in the program's measurement until it is inserted.
VALUE_CHUNK = 8192
TRACED_VALUE_CHUNK = 256

#: seconds between two rounds of dropping unkept tests' calls: each round scans ``call``
DISCARD_INTERVAL = 2.0

#: where an audit event's value record keeps its time (see SCOPE_ROLE_EVENT)
_TIME_FIELD = (VALUE_DTYPE.names or ()).index("raised_in")

#: the batch's buffers as DuckDB sees them: registered once, read in place
_CALLS_VIEW = "scope_call_batch"
_AGGREGATES_VIEW = "scope_aggregate_batch"

_INSERT_CALLS = f"""
INSERT INTO call
SELECT {{run}}, id, thread, NULLIF(parent, 0), end_id, depth, function, start_ns, duration_ns,
       {_OUTCOME_SQL}, suspended_ns, suspensions
FROM {_CALLS_VIEW} WHERE row < {{rows}};
"""

_INSERT_AGGREGATES = f"""
INSERT INTO call_aggregate
SELECT {{run}}, NULLIF(parent, 0), function, calls, raised, total_ns, min_ns, max_ns,
       self_ns, direct_ns
FROM {_AGGREGATES_VIEW} WHERE row < {{rows}};
"""

_INSERT_VALUES = """
INSERT INTO value
SELECT ?, call, function, role, position, name, kind, type, value, length, object_id,
       NULLIF(raised_in, 0)
FROM value_batch
"""


class RecordingWriter:
    """Writes one run into an open recording connection.

    A batch's calls and sums go in with a single statement string (one trip
    through the GIL, whatever the batch's size): DuckDB reads the batch's
    column arrays in place, registered once as views.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        numbering: native.Numbering | None = None,
    ) -> None:
        self.con = con
        self.run_id = 0
        #: how this run numbers its functions (the recording process's own, by default)
        self.numbering = numbering or native.OWN_NUMBERING
        self.records_stored = 0
        self.calls_summed = 0
        #: count ``function.calls_summed`` from the table, not the numbering
        self.recount_summed = False
        self.calls_stored = 0
        self.calls_unfinished = 0
        self.values_stored = 0
        self._plans: list[PackedPlan] = []
        #: function number -> (parameter names, attribute names), for naming values
        self._names: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._plans_lock = threading.Lock()
        #: test phases to store, and roots whose calls are to go (``pytest --scope-keep``)
        self._tests: list[TestPhase] = []
        self._discards: set[int] = set()
        self._next_discard = 0.0
        self._registered: Batch | None = None
        self._pid = 0
        #: the audit events the native side records, in its numbering
        self.audit_events: tuple[str, ...] = ()

    @property
    def opened(self) -> bool:
        """Whether the recording file is open (a ``DeferredWriter`` may not have made it)."""
        return True

    def close(self) -> None:
        """Close the recording file, if it was opened."""
        if self.opened:
            self.con.close()

    def begin(self, info: RunInfo, also: Callable[[int], object] | None = None) -> int:
        """Insert the run's row; returns its id.  ``also`` is called with the id inside
        the same transaction (a recording service notes the run's key)."""
        return self._insert_run(info, also)

    def _insert_run(self, info: RunInfo, also: Callable[[int], object] | None = None) -> int:
        self.con.execute("BEGIN")
        self.run_id = database.next_run_id(self.con)
        self.con.execute(
            """INSERT INTO run (id, argv, cwd, python, platform, pid, scope_version,
                                started_at, start_ns, status)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')""",
            [
                self.run_id,
                scrub_argv(info.argv),
                info.cwd,
                info.python,
                info.platform,
                info.pid,
                info.scope_version,
                dt.datetime.now(dt.UTC).replace(tzinfo=None),
                info.start_ns,
            ],
        )
        self.con.execute(
            """INSERT INTO process (run, pid, parent_pid, number, executable, start_ns)
               VALUES (?, ?, ?, 0, ?, ?)""",
            [self.run_id, info.pid, info.parent_pid, info.executable, info.start_ns],
        )
        self.con.execute(
            "INSERT INTO event VALUES (?, ?, ?, 'start', ?, NULL)",
            [self.run_id, info.pid, info.start_ns, " ".join(scrub_argv(info.argv))],
        )
        if also is not None:
            also(self.run_id)
        self.con.execute("COMMIT")
        self._pid = info.pid
        return self.run_id

    def add_plan(self, plan: PackedPlan) -> None:
        """Queue a module's functions for the next transaction (any thread may call)."""
        with self._plans_lock:
            self._plans.append(plan)

    def add_test_phases(self, phases: Sequence[TestPhase]) -> None:
        """Queue test phases for the next transaction (any thread may call)."""
        with self._plans_lock:
            self._tests.extend(phases)

    def discard_calls_under(self, roots: Sequence[int]) -> None:
        """Forget the calls under these root calls once they are stored (any thread)."""
        with self._plans_lock:
            self._discards.update(roots)

    def _take_tests(self) -> list[TestPhase]:
        with self._plans_lock:
            tests, self._tests = self._tests, []
        return tests

    def _insert_tests(self, tests: Sequence[TestPhase]) -> None:
        if not tests:
            return
        columns = (
            ("nodeid", "VARCHAR"),
            ("phase", "VARCHAR"),
            ("outcome", "VARCHAR"),
            ("start_ns", "BIGINT"),
            ("duration_ns", "BIGINT"),
            ("call", "BIGINT"),
            ("exception", "VARCHAR"),
            ("message", "VARCHAR"),
            ("raised_in", "BIGINT"),
            ("worker", "VARCHAR"),
            ("kept", "BOOLEAN"),
        )
        selected = ", ".join(
            f"NULLIF(unnest(?::{kind}[]), 0)"
            if name in ("call", "raised_in")
            else f"unnest(?::{kind}[])"
            for name, kind in columns
        )
        self.con.execute(
            f"INSERT INTO test (run, pid, {', '.join(n for n, _ in columns)}) "
            f"SELECT ?, ?, {selected}",
            [self.run_id, self._pid, *([getattr(t, n) for t in tests] for n, _ in columns)],
        )

    def _apply_discards(self) -> None:
        """Drop the calls under the queued roots that are stored by now (own transaction)."""
        with self._plans_lock:
            roots, self._discards = self._discards, set()
        self._next_discard = time.monotonic() + DISCARD_INTERVAL
        if not roots:
            return
        try:
            self.con.execute("BEGIN")
            found = discard_under(self.con, self.run_id, sorted(roots))
            self.con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                self.con.execute("ROLLBACK")
            found = set()
            raise
        finally:
            with self._plans_lock:
                self._discards.update(roots - found)

    def _name_of(self, function: int, role: str, index: int) -> str | None:
        params, attributes = self._names.get(function, ((), ()))
        names = params if role == "argument" else attributes if role == "attribute" else ()
        return names[index] if index < len(names) else None

    def write_batch(self, batch: Batch, also: str = "") -> None:
        """Commit what ``batch`` holds from its latest drain (writer thread), and the
        statements ``also`` in the same transaction."""
        counts = batch.counts
        self._register(batch)
        with self._plans_lock:
            plans, self._plans = self._plans, []
        tests = self._take_tests()
        statements = ""
        if counts.calls:
            statements += _INSERT_CALLS.format(run=self.run_id, rows=counts.calls)
        if counts.aggregates:
            statements += _INSERT_AGGREGATES.format(run=self.run_id, rows=counts.aggregates)
        statements += also
        try:
            if not plans and not counts.values and not tests:
                if statements:
                    self.con.execute(f"BEGIN; {statements} COMMIT")
            else:
                self.con.execute("BEGIN")
                for plan in plans:
                    self._insert_functions(plan)
                self._insert_tests(tests)
                if counts.values:
                    self._insert_values(batch)
                if statements:
                    self.con.execute(statements)
                self.con.execute("COMMIT")
        except BaseException:
            self._abandon(plans)
            with self._plans_lock:
                self._tests[:0] = tests
            raise
        self.records_stored += counts.records
        self.calls_stored += counts.calls
        self.calls_unfinished += counts.unfinished
        self.calls_summed += counts.summed
        self.values_stored += counts.values
        if self._discards and time.monotonic() >= self._next_discard:
            self._apply_discards()

    def _insert_tasks(self, records: np.ndarray, arena: np.ndarray) -> None:
        """Rows of the ``task`` table, from the tasks' value records (``SCOPE_ROLE_TASK``)."""
        names = [
            arena[position : position + size].tobytes().decode("utf-8", "replace")
            for position, size in zip(
                records["arena_pos"].tolist(), records["arena_len"].tolist(), strict=True
            )
        ]
        calls = records["call_id"].astype(np.int64)
        self.con.execute(
            """INSERT OR REPLACE INTO task
               SELECT ?, unnest(?::BIGINT[]), unnest(?::VARCHAR[]), unnest(?::INTEGER[]),
                      NULLIF(unnest(?::BIGINT[]), 0)""",
            [
                self.run_id,
                calls.tolist(),
                names,
                (calls >> native.SLOT_SHIFT).tolist(),
                records["raised_in"].astype(np.int64).tolist(),
            ],
        )

    def _insert_values(self, batch: Batch) -> None:
        values, arena = batch.values(), batch.arena
        is_event = values["role"] == native.ROLE_EVENT
        if is_event.any():
            self._insert_audit_events(values[is_event], arena)
            values = values[~is_event]
        is_task = values["role"] == native.ROLE_TASK
        if is_task.any():
            self._insert_tasks(values[is_task], arena)
            values = values[~is_task]
        is_suspension = values["role"] == native.ROLE_SUSPENSION
        if is_suspension.any():
            self._insert_suspensions(values[is_suspension])
            values = values[~is_suspension]
        start = 0
        while start < len(values):
            chunk = TRACED_VALUE_CHUNK if tracemalloc.is_tracing() else VALUE_CHUNK
            rows = value_columns(values[start : start + chunk], arena, self._name_of)
            self._insert("value_batch", rows, _INSERT_VALUES)
            del rows
            start += chunk

    def _insert_suspensions(self, records: np.ndarray) -> None:
        """Rows of the ``suspension`` table, from ``SCOPE_ROLE_SUSPENSION`` records."""
        self.con.execute(
            """INSERT INTO suspension
               SELECT ?, unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::BIGINT[])""",
            [
                self.run_id,
                records["call_id"].astype(np.int64).tolist(),
                records["payload"].astype(np.int64).tolist(),
                records["raised_in"].astype(np.int64).tolist(),
            ],
        )

    def _insert_audit_events(self, records: np.ndarray, arena: np.ndarray) -> None:
        self._store_events(self._audit_events(records, arena))

    def _audit_events(self, records: np.ndarray, arena: np.ndarray) -> list[Event]:
        """Audit events, drained as value records (``SCOPE_ROLE_EVENT``), as event rows."""
        events = []
        names = self.audit_events
        for record in records.tolist():
            call, payload, position, size, index, tag = record[:6]
            time_ns = record[_TIME_FIELD]
            name = names[index] if index < len(names) else f"event {index}"
            text = summarize(tag, payload, arena[position : position + size].tobytes()).text
            if name == "sys.unraisablehook":
                events.append(Event(time_ns, "unraisable exception", text, call))
            else:
                events.append(Event(time_ns, "audit", f"{name} {text}", call))
        return events

    def _store_events(self, events: Sequence[Event]) -> None:
        self.con.execute(
            """INSERT INTO event SELECT ?, ?, unnest(?::BIGINT[]), unnest(?::VARCHAR[]),
                                        unnest(?::VARCHAR[]), NULLIF(unnest(?::BIGINT[]), 0)""",
            [
                self.run_id,
                self._pid,
                [e.time_ns for e in events],
                [e.kind for e in events],
                [e.detail for e in events],
                [e.call for e in events],
            ],
        )

    def attach(self, batch: Batch) -> None:
        """Show DuckDB ``batch``'s buffers now, before the program runs, not at its first batch."""
        self._register(batch)

    def _register(self, batch: Batch) -> None:
        if self._registered is batch:
            return
        rows = np.arange(batch.capacity, dtype=np.int64)
        self.con.register(_CALLS_VIEW, {**batch.calls, "row": rows})
        self.con.register(_AGGREGATES_VIEW, {**batch.aggregates, "row": rows})
        self._registered = batch

    def _insert(self, name: str, columns: object, statement: str) -> None:
        self.con.register(name, columns)
        try:
            self.con.execute(statement, [self.run_id])
        finally:
            self.con.unregister(name)

    def flush_plans(
        self, events: Sequence[Event] = (), also: tuple[str, Sequence[object]] | None = None
    ) -> None:
        """Store the functions planned and the test phases queued since the last batch,
        and ``events`` and the statement ``also`` (SQL, parameters), in one transaction."""
        with self._plans_lock:
            plans, self._plans = self._plans, []
        tests = self._take_tests()
        if not plans and not tests and not events and also is None:
            return
        self.con.execute("BEGIN")
        try:
            for plan in plans:
                self._insert_functions(plan)
            self._insert_tests(tests)
            if events:
                self._store_events(events)
            if also is not None:
                self.con.execute(*also)
            self.con.execute("COMMIT")
        except BaseException:
            self._abandon(plans)
            with self._plans_lock:
                self._tests[:0] = tests
            raise

    def _abandon(self, plans: list[PackedPlan]) -> None:
        """Roll a failed transaction back; its functions wait for the next one."""
        # The failure is the news: a rollback that fails too must not hide it.
        with contextlib.suppress(Exception):
            self.con.execute("ROLLBACK")
        with self._plans_lock:
            self._plans[:0] = plans

    def _insert_functions(self, packed: PackedPlan) -> None:
        plan = unpack_plan(packed)
        functions = plan.functions
        if not functions:
            return
        numbers = [self.numbering.number(f.id) for f in functions]
        for number, f in zip(numbers, functions, strict=True):
            self._names[number] = (f.params, f.attributes)
        # One statement with list parameters: executemany runs one statement per row.
        self.con.execute(
            """INSERT OR REPLACE INTO function (run, id, key, module, qualname, file, line, kind,
                                                level, params, attributes, calls_summed)
               SELECT ?, unnest(?::BIGINT[]), unnest(?::BIGINT[]), ?, unnest(?::VARCHAR[]), ?,
                      unnest(?::INTEGER[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),
                      unnest(?::VARCHAR[][]), unnest(?::VARCHAR[][]), 0""",
            [
                self.run_id,
                numbers,
                [f.id for f in functions],
                plan.module,
                [f.qualname for f in functions],
                plan.path,
                [f.line or None for f in functions],
                [f.kind for f in functions],
                [f.level for f in functions],
                [list(f.params) for f in functions],
                [list(f.attributes) for f in functions],
            ],
        )

    def store_threads(self, threads: Sequence[native.ThreadInfo]) -> None:
        """Rows of the ``thread`` table, one per thread (in the caller's transaction)."""
        for t in threads:
            self.con.execute(
                "INSERT OR REPLACE INTO thread VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    self.run_id,
                    t.slot,
                    t.native_id,
                    t.ident,
                    t.name,
                    t.start_ns,
                    t.end_ns,
                    t.produced,
                    t.dropped,
                    t.high_water,
                    t.blocked_ns,
                    t.stack_overflow,
                    t.unmatched_exits,
                    t.values_lost,
                    t.parent_slot or None,
                    t.started_by or None,
                ],
            )

    def store_summed(self) -> None:
        """Note on each function how many of its calls were counted, not stored (its
        budget spent): the totals so far, so storing them again is harmless.

        With ``recount_summed`` they are counted from ``call_aggregate``: a recording
        service takes runs up again with a new numbering, which knows only its own.
        """
        if self.recount_summed:
            self.con.execute(
                """UPDATE function SET calls_summed = s.calls
                   FROM (SELECT function AS id, sum(calls) AS calls FROM call_aggregate
                         WHERE run = $run GROUP BY function) s
                   WHERE function.run = $run AND function.id = s.id""",
                {"run": self.run_id},
            )
            return
        summed = self.numbering.summed()
        if summed:
            self.con.execute(
                """UPDATE function SET calls_summed = s.calls
                   FROM (SELECT unnest(?::BIGINT[]) AS id, unnest(?::BIGINT[]) AS calls) s
                   WHERE function.run = ? AND function.id = s.id""",
                [list(summed), list(summed.values()), self.run_id],
            )

    def finish(self, end: RunEnd) -> None:
        """Store the functions still queued, the threads, and close the run's row."""
        self.flush_plans()
        threads = end.threads
        rings = end.rings
        dropped = rings.dropped + end.records_lost
        self._apply_discards()
        self.con.execute("BEGIN")
        self._insert_tests(self._take_tests())
        self.store_summed()
        self.store_threads(threads)
        self._store_events([*end.events, Event(end.end_ns, "end", end.ended_by)])
        self.con.execute(
            """UPDATE process SET end_ns = ?, exit_status = ?, ended_by = ?
               WHERE run = ? AND pid = ?""",
            [end.end_ns, end.exit_status, end.ended_by, self.run_id, self._pid],
        )
        # Added to, not set: a recording service stores the run's child processes
        # that ended before this one into the same row.
        self.con.execute(
            """UPDATE run SET ended_at = ?, end_ns = ?, status = 'complete', exit_status = ?,
                   events_captured = coalesce(events_captured, 0) + ?,
                   events_dropped = coalesce(events_dropped, 0) + ?, events_stored = ?,
                   calls_stored = ?, calls_unfinished = ?, calls_summed = ?,
                   writer_batches = ?, problems = list_concat(coalesce(problems, []), ?),
                   clock = ?, clock_ns_per_tick = ?, clock_calibrated_ns = ?
               WHERE id = ?""",
            [
                dt.datetime.now(dt.UTC).replace(tzinfo=None),
                end.end_ns,
                end.exit_status,
                rings.produced + rings.dropped + rings.unfinished_held,
                dropped,
                self.records_stored,
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


#: audit events a child keeps in memory before its first call (the rest are counted)
HELD_EVENTS = 10_000


class DeferredWriter(RecordingWriter):
    """A writer that creates its file only once there is something to store.

    For child processes: multiprocessing's helpers (the forkserver, the
    resource tracker) run no code of the program's and live as long as their
    parent, so a file held open by each would still be locked when the run
    merges its children's files.  Such a process leaves no file at all.
    """

    def __init__(self, path: str) -> None:
        super().__init__(cast(duckdb.DuckDBPyConnection, None))
        self.path = path
        self._opened = False
        self._info: RunInfo | None = None
        self._also: Callable[[int], object] | None = None
        self._batch: Batch | None = None
        #: audit events drained before the first call, waiting for the file
        self._held: list[Event] = []
        self.events_discarded = 0

    @property
    def opened(self) -> bool:
        """Whether the file exists yet."""
        return self._opened

    def begin(self, info: RunInfo, also: Callable[[int], object] | None = None) -> int:
        """Keep the run's row for when the file is made."""
        self._info, self._also = info, also
        return 0

    def attach(self, batch: Batch) -> None:
        """Remember the batch, to show DuckDB when the file is made."""
        self._batch = batch

    def _open(self) -> None:
        assert self._info is not None
        self.con = database.open_for_writing(self.path)
        self._opened = True
        self._insert_run(self._info, self._also)
        if self._batch is not None:
            self._register(self._batch)

    def write_batch(self, batch: Batch, also: str = "") -> None:
        """Store the batch, making the file first if it holds any call.

        Until then, plans wait in their queue and audit events (the only values
        there can be without calls) in memory, up to ``HELD_EVENTS``.
        """
        counts = batch.counts
        if not self._opened:
            if not (counts.calls or counts.aggregates or self._tests):
                discarded = 0
                if counts.values:
                    held = self._audit_events(batch.values(), batch.arena)
                    room = HELD_EVENTS - len(self._held)
                    self._held += held[:room]
                    discarded = max(0, len(held) - room)
                    self.events_discarded += discarded
                # Counted as stored now, as they will be with the file; if none is
                # made, neither is the run's row that would count them.
                self.records_stored += counts.records - discarded
                return
            self._open()
            if self._held:
                self._store_events(self._held)
                self._held = []
        super().write_batch(batch, also)

    def finish(self, end: RunEnd) -> None:
        """Close the run, unless it ran none of the program's code and nothing went wrong.

        A process that made no recorded call (multiprocessing's helpers) keeps no
        file, and the audit events it raised are not kept either.
        """
        if not self._opened:
            quiet = not (end.problems or end.events or end.records_lost or end.rings.dropped)
            if quiet and not self._tests:
                return
            self._open()
            if self._held:
                self._store_events(self._held)
                self._held = []
        if self.events_discarded:
            detail = f"{self.events_discarded} audit events raised before the first call not kept"
            self._store_events([Event(end.end_ns, "dropped", detail)])
            end = dataclasses.replace(end, records_lost=end.records_lost + self.events_discarded)
        super().finish(end)

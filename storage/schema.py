"""The recording's schema: every table and column, documented, in one place.

The model follows Perfetto's trace processor: a ``run`` holds ``thread``s, the
``function`` table describes code, and ``call`` has one row per call (a slice)
with its parent, depth and the preorder interval ``[id, end_id]`` of its
subtree: every call made under call ``a`` on the same thread has an id in that
interval, so a subtree is a range scan and so is the stack above a call.

``SCHEMA_VERSION`` is stored in ``meta``; a file of another version is refused
with a message naming both versions.  Version 2 added ``value``, the
suspension columns of ``call``, the clock calibration of ``run`` and the
per-thread counters; version 3 added ``call_aggregate`` and the budget
columns; version 4 dropped the index on ``call``, made ``outcome`` an enum,
numbers functions per run (``function.key`` keeps the stable id) and added
``process``, ``event`` and the ``exception`` view; version 5 added
``function.line``; version 6 added ``task``, who started each ``thread`` and
the call an ``event`` happened in; version 7 added ``test``; version 8 added
the self times of ``call_aggregate`` and ``process.number``; version 9 added
``suspension``.  ``MIGRATIONS`` upgrades a version 3 to 8 file when it is next
recorded into.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 9

OUTCOMES = ("returned", "raised", "unfinished")

#: how a test phase ended, in pytest's words (an error is a setup or teardown failure)
TEST_OUTCOMES = ("passed", "failed", "skipped", "xfailed", "xpassed", "error")
#: the phases of a test; ``collect`` rows are modules or classes that failed to collect
TEST_PHASES = ("collect", "setup", "call", "teardown")


@dataclass(frozen=True)
class Column:
    """One column: its name, DuckDB type and meaning."""

    name: str
    type: str
    doc: str


@dataclass(frozen=True)
class Table:
    """One table: its name, meaning, columns and the key that identifies a row."""

    name: str
    doc: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()

    def ddl(self) -> str:
        """The ``CREATE TABLE`` statement for this table."""
        cols = [f"{c.name} {c.type}" for c in self.columns]
        if self.key:
            cols.append(f"PRIMARY KEY ({', '.join(self.key)})")
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({', '.join(cols)})"


TABLES = (
    Table(
        "meta",
        "Facts about the file itself, such as the schema version.",
        (
            Column(
                "key",
                "VARCHAR",
                "name of the fact: 'schema_version', or 'last_run' (the highest run "
                "number given, so that a removed run's number is never given again)",
            ),
            Column("value", "VARCHAR", "its value"),
        ),
        key=("key",),
    ),
    Table(
        "run",
        "One row per recorded program run (or test session).",
        (
            Column("id", "INTEGER", "run number, 1 for the file's first run"),
            Column("argv", "VARCHAR[]", "the program's sys.argv"),
            Column("cwd", "VARCHAR", "working directory at start"),
            Column("python", "VARCHAR", "Python implementation and version"),
            Column("platform", "VARCHAR", "operating system and machine"),
            Column("pid", "INTEGER", "process id of the run's main process"),
            Column("scope_version", "VARCHAR", "version of scope that recorded it"),
            Column("started_at", "TIMESTAMP", "wall-clock time of the start, UTC"),
            Column("ended_at", "TIMESTAMP", "wall-clock time of the end, UTC (NULL while running)"),
            Column("start_ns", "BIGINT", "recorder clock (CLOCK_MONOTONIC ns) at the start"),
            Column("clock", "VARCHAR", "what stamped records: 'tsc' or 'monotonic'"),
            Column("clock_ns_per_tick", "DOUBLE", "TSC calibration against CLOCK_MONOTONIC"),
            Column("clock_calibrated_ns", "BIGINT", "length of the calibration interval"),
            Column("end_ns", "BIGINT", "recorder clock at the end"),
            Column("status", "VARCHAR", "'running' until the recording is closed, then 'complete'"),
            Column("exit_status", "INTEGER", "the program's exit status, as the shell sees it"),
            Column("events_captured", "BIGINT", "records written into the rings"),
            Column("events_dropped", "BIGINT", "records lost (full rings, failed writer)"),
            Column("events_stored", "BIGINT", "records turned into stored rows"),
            Column("calls_stored", "BIGINT", "rows written to the call table"),
            Column("calls_unfinished", "BIGINT", "calls still open when recording ended"),
            Column("calls_summed", "BIGINT", "calls past their function's budget (call_aggregate)"),
            Column("writer_batches", "BIGINT", "batches the writer committed"),
            Column("problems", "VARCHAR[]", "what went wrong while recording, if anything"),
        ),
        key=("id",),
    ),
    Table(
        "process",
        "One row per recorded process of a run (the main process; child processes "
        "once they are followed).",
        (
            Column("run", "INTEGER", "the run"),
            Column("pid", "INTEGER", "process id"),
            Column("parent_pid", "INTEGER", "process id of its parent"),
            Column(
                "number",
                "INTEGER",
                "its number in the run, the high bits of its call ids (call.id >> 52): "
                "0 for the main process, 1, 2, ... for children in the order they were merged",
            ),
            Column("executable", "VARCHAR", "sys.executable"),
            Column("start_ns", "BIGINT", "recorder clock when recording began in it"),
            Column("end_ns", "BIGINT", "recorder clock when recording ended in it"),
            Column("exit_status", "INTEGER", "its exit status, where it ended by exiting"),
            Column(
                "ended_by",
                "VARCHAR",
                "how it ended: exit (returned, sys.exit, uncaught exception), os._exit, "
                "exec, SIGTERM; NULL while running",
            ),
        ),
        key=("run", "pid"),
    ),
    Table(
        "event",
        "Lifecycle of the recording and the process, in time order: what happened besides calls.",
        (
            Column("run", "INTEGER", "the run"),
            Column("pid", "INTEGER", "the process"),
            Column("time_ns", "BIGINT", "recorder clock"),
            Column(
                "kind",
                "VARCHAR",
                "start, end, not instrumented, imported before scope, writer restarted, "
                "storage failed, dropped, thread exception, uncaught exception, "
                "unraisable exception, audit (detail: the event's name and arguments)",
            ),
            Column("detail", "VARCHAR", "what and why, in words"),
            Column("call", "BIGINT", "the recorded call it happened in, or was raised in"),
        ),
    ),
    Table(
        "thread",
        "One row per OS thread threading started while recording, or that made a recorded call.",
        (
            Column("run", "INTEGER", "the run"),
            Column("id", "INTEGER", "thread slot: the high bits of its call ids (call.id >> 40)"),
            Column("native_id", "BIGINT", "the kernel's thread id"),
            Column("ident", "UBIGINT", "threading.get_ident() of the thread"),
            Column("name", "VARCHAR", "threading name, where known"),
            Column("start_ns", "BIGINT", "when it started (its first event if threading did not)"),
            Column("end_ns", "BIGINT", "when the thread ended (NULL if still alive at the end)"),
            Column("events_produced", "BIGINT", "records the thread wrote into its ring"),
            Column("events_dropped", "BIGINT", "records it lost to a full ring"),
            Column("ring_high_water", "BIGINT", "most records ever waiting in its ring"),
            Column("blocked_ns", "BIGINT", "time it waited for the writer (overflow = block)"),
            Column("stack_overflow", "BIGINT", "calls not recorded: deeper than the stack bound"),
            Column("unmatched_exits", "BIGINT", "exits whose entry was not on its stack"),
            Column("values_lost", "BIGINT", "values stored as 'lost': its arena was full"),
            Column("parent", "INTEGER", "the thread that started it (Thread.start), if known"),
            Column("started_by", "BIGINT", "the innermost recorded call open there at the time"),
        ),
        key=("run", "id"),
    ),
    Table(
        "task",
        "One row per asyncio task whose coroutine is instrumented, noted as it starts.",
        (
            Column("run", "INTEGER", "the run"),
            Column("id", "BIGINT", "its coroutine's call (call.id): the root of the task's calls"),
            Column("name", "VARCHAR", "the task's name (Task.get_name())"),
            Column("thread", "INTEGER", "the thread its event loop ran on"),
            Column(
                "created_by",
                "BIGINT",
                "the coroutine call that created it (also its root call's parent), if recorded; "
                "how it ended is its root call's outcome (CancelledError: cancelled)",
            ),
        ),
        key=("run", "id"),
    ),
    Table(
        "function",
        "One row per instrumented (or planned) function of the run's code.",
        (
            Column("run", "INTEGER", "the run"),
            Column("id", "BIGINT", "number of the function in its run (call.function)"),
            Column(
                "key", "BIGINT", "stable id across runs: hash of module, qualified name, occurrence"
            ),
            Column("module", "VARCHAR", "module name as imported ('__main__' for the script)"),
            Column("qualname", "VARCHAR", "__qualname__ of the function"),
            Column("file", "VARCHAR", "source file"),
            Column("line", "INTEGER", "first line of the def (of the first of a scope's lambdas)"),
            Column(
                "kind",
                "VARCHAR",
                "plain, method, staticmethod, classmethod, property, generator, coroutine, "
                "async_generator, lambda (a scope's lambdas are one function) or test (a "
                "test's phases, recorded by pytest --scope)",
            ),
            Column("level", "VARCHAR", "capture level: off, calls, args or full"),
            Column("params", "VARCHAR[]", "parameter names, in the order arguments are recorded"),
            Column("attributes", "VARCHAR[]", "attributes of self whose writes are recorded"),
            Column(
                "calls_summed",
                "BIGINT",
                "calls past max_calls_per_function, summed in call_aggregate (0: none)",
            ),
        ),
        key=("run", "id"),
    ),
    Table(
        "call",
        "One row per recorded call (a Perfetto slice).",
        (
            Column("run", "INTEGER", "the run"),
            Column("id", "BIGINT", "call id, unique in the process, preorder on its thread"),
            Column("thread", "INTEGER", "thread slot (thread.id)"),
            Column("parent", "BIGINT", "id of the calling recorded call; NULL for a root"),
            Column(
                "end_id", "BIGINT", "largest call id on the thread begun before this call ended"
            ),
            Column("depth", "INTEGER", "number of recorded calls above it on its thread"),
            Column("function", "BIGINT", "function.id"),
            Column("start_ns", "BIGINT", "recorder clock at entry"),
            Column("duration_ns", "BIGINT", "wall time from entry to exit; -1 if it never ended"),
            Column(
                "outcome", "call_outcome", "returned, raised (an exception left it) or unfinished"
            ),
            Column(
                "suspended_ns",
                "BIGINT",
                "time left out of its active time: suspended at yield or await "
                "(generators and coroutines), or scope instrumenting a module imported "
                "during the call (-1 if it never ended)",
            ),
            Column("suspensions", "INTEGER", "how many times it suspended"),
        ),
    ),
    Table(
        "call_aggregate",
        "Calls of a function past its budget (max_calls_per_function: the first calls "
        "to begin are stored), summed per nearest stored ancestor: a summed call's "
        "calls are summed under the stored call around them too, so every count and "
        "time stays exact. A (parent, function) pair may have several rows: sum them.",
        (
            Column("run", "INTEGER", "the run"),
            Column(
                "parent",
                "BIGINT",
                "id of the nearest stored call around them (call.id); NULL for root calls",
            ),
            Column("function", "BIGINT", "function.id"),
            Column("calls", "BIGINT", "how many calls were summed"),
            Column("raised", "BIGINT", "how many of them ended by an exception"),
            Column("total_ns", "BIGINT", "sum of their durations"),
            Column("min_ns", "BIGINT", "shortest duration"),
            Column("max_ns", "BIGINT", "longest duration"),
            Column(
                "self_ns",
                "BIGINT",
                "sum of their self times: active time (duration less suspended time) less "
                "the active time of the recorded calls each made",
            ),
            Column(
                "direct_ns",
                "BIGINT",
                "active time of those the parent call made itself (not through another "
                "summed call): what the parent's self time leaves out",
            ),
        ),
    ),
    Table(
        "suspension",
        "One row per suspension of a stored call (a generator at yield, a coroutine at "
        "await) at least suspension_min_us long, noted as the call resumed: the gaps "
        "in its time.  Shorter ones are only in the call's suspended_ns and suspensions; "
        "so is a last suspension the call never resumed from.",
        (
            Column("run", "INTEGER", "the run"),
            Column("call", "BIGINT", "the suspended call (call.id)"),
            Column("start_ns", "BIGINT", "recorder clock as it suspended"),
            Column("duration_ns", "BIGINT", "how long until it resumed"),
        ),
    ),
    Table(
        "value",
        "Summaries of arguments, return values, exceptions and attribute writes "
        "(functions recorded at args or full level; at calls level, only the type "
        "and id of the exception that left a call).",
        (
            Column("run", "INTEGER", "the run"),
            Column("call", "BIGINT", "call.id of the call it belongs to"),
            Column("function", "BIGINT", "function.id"),
            Column("role", "VARCHAR", "argument, return, raise or attribute"),
            Column("position", "INTEGER", "argument position, or attribute number"),
            Column("name", "VARCHAR", "parameter or attribute name"),
            Column(
                "kind",
                "VARCHAR",
                "how it was summarised: none, bool, int, bigint, float, str, bytes, "
                "container, object, class, exception, exception type (calls level: the "
                "type and id only), repr, redacted or lost",
            ),
            Column("type", "VARCHAR", "type name (NULL when redacted or lost)"),
            Column("value", "VARCHAR", "bounded rendering; strings and bytes truncated with …"),
            Column("length", "BIGINT", "full length of a str, bytes or container"),
            Column("object_id", "BIGINT", "id() of an object summarised by type and identity"),
            Column(
                "raised_in",
                "BIGINT",
                "role raise: the innermost recorded call the exception left (the same for "
                "every call one exception left)",
            ),
        ),
    ),
    Table(
        "test",
        "One row per phase of each test pytest ran with --scope (and per collection "
        "error): its outcome, and the root call under which its calls hang.",
        (
            Column("run", "INTEGER", "the run (the test session)"),
            Column("nodeid", "VARCHAR", "pytest's node id, e.g. tests/test_app.py::test_parse[1]"),
            Column("phase", "VARCHAR", "collect, setup, call or teardown"),
            Column(
                "outcome",
                "VARCHAR",
                "passed, failed, skipped, xfailed, xpassed, or error (a failed setup, "
                "teardown or collection)",
            ),
            Column("start_ns", "BIGINT", "recorder clock when the phase began"),
            Column("duration_ns", "BIGINT", "the phase's duration as pytest measured it"),
            Column(
                "call",
                "BIGINT",
                "the phase's root call (call.id): every recorded call the phase made on "
                "its thread is in [call, call.end_id]; NULL for collection errors",
            ),
            Column("exception", "VARCHAR", "type of the exception that failed or skipped it"),
            Column(
                "message", "VARCHAR", "pytest's one-line account of the failure, or skip reason"
            ),
            Column(
                "raised_in",
                "BIGINT",
                "the innermost recorded call that exception left (exception.raised_in); "
                "the phase's root call if it was raised in the test's own code",
            ),
            Column("worker", "VARCHAR", "pytest-xdist worker id (gw0, ...); NULL without xdist"),
            Column("pid", "INTEGER", "the process that ran it"),
            Column(
                "kept",
                "BOOLEAN",
                "whether its calls are kept (--scope-keep); if not, only the phase's root "
                "call remains",
            ),
        ),
    ),
)

TABLES_BY_NAME = {t.name: t for t in TABLES}


@dataclass(frozen=True)
class View:
    """A view over the tables: its name, meaning, columns and query."""

    name: str
    doc: str
    columns: tuple[Column, ...]
    query: str

    def ddl(self) -> str:
        """The ``CREATE OR REPLACE VIEW`` statement for this view."""
        return f"CREATE OR REPLACE VIEW {self.name} AS {self.query}"


VIEWS = (
    View(
        "exception",
        "One row per exception that left a recorded call: where it was raised, the "
        "calls it passed through and the call that caught it.  The calls an exception "
        "left are linked as it leaves them (value.raised_in).",
        (
            Column("run", "INTEGER", "the run"),
            Column("raised_in", "BIGINT", "the innermost recorded call it left"),
            Column("type", "VARCHAR", "its type's name"),
            Column("exception", "VARCHAR", "its summary (type and message from args level)"),
            Column(
                "propagated_through",
                "BIGINT[]",
                "every recorded call it left, innermost first (raised_in is the first)",
            ),
            Column(
                "caught_in",
                "BIGINT",
                "the recorded call it did not leave; NULL if it left every recorded call "
                "(uncaught, or caught by code that is not recorded)",
            ),
        ),
        """
        SELECT v.run, v.raised_in,
               arg_max(v.type, c.depth) AS type,
               arg_max(v.value, c.depth) AS exception,
               list(v.call ORDER BY c.depth DESC) AS propagated_through,
               NULLIF(arg_min(coalesce(c.parent, 0), c.depth), 0) AS caught_in
        FROM value v JOIN call c ON c.run = v.run AND c.id = v.call
        WHERE v.role = 'raise'
        GROUP BY v.run, v.raised_in
        """,
    ),
)

#: Statements that bring a file of an older version up to the next one; a file
#: scope can migrate is also readable as it is (its tables are the same).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    3: (
        "DROP INDEX IF EXISTS call_function",
        TABLES_BY_NAME["process"].ddl(),
        TABLES_BY_NAME["event"].ddl(),
        "CREATE TYPE call_outcome AS ENUM ('returned', 'raised', 'unfinished')",
        "ALTER TABLE call ALTER outcome TYPE call_outcome",
        "ALTER TABLE function ADD COLUMN key BIGINT",
        "ALTER TABLE value ADD COLUMN raised_in BIGINT",
        "UPDATE function SET key = id",
        *(view.ddl() for view in VIEWS),
    ),
    4: ("ALTER TABLE function ADD COLUMN line INTEGER",),
    # IF NOT EXISTS: a version 3 file got today's event table from step 3.
    5: (
        TABLES_BY_NAME["task"].ddl(),
        "ALTER TABLE event ADD COLUMN IF NOT EXISTS call BIGINT",
        "ALTER TABLE thread ADD COLUMN IF NOT EXISTS parent INTEGER",
        "ALTER TABLE thread ADD COLUMN IF NOT EXISTS started_by BIGINT",
    ),
    6: (TABLES_BY_NAME["test"].ddl(),),
    7: (
        "ALTER TABLE call_aggregate ADD COLUMN self_ns BIGINT",
        "ALTER TABLE call_aggregate ADD COLUMN direct_ns BIGINT",
        # IF NOT EXISTS: a version 3 file got today's process table from step 3.
        "ALTER TABLE process ADD COLUMN IF NOT EXISTS number INTEGER",
        "UPDATE process SET number = 0 FROM run "
        "WHERE run.id = process.run AND run.pid = process.pid",
    ),
    8: (TABLES_BY_NAME["suspension"].ddl(),),
}

#: No index on ``call``: an ART index costs a third of the insert rate and 4 bytes
#: a row, while a column scan of ``function`` or of the id interval is fast.
INDEXES = ("CREATE INDEX IF NOT EXISTS value_call ON value (run, call)",)


def readable(version: int) -> bool:
    """Whether this scope reads a file of ``version`` (its own, or one it can migrate)."""
    return version == SCHEMA_VERSION or version in MIGRATIONS


#: Types the tables use, created before them.
TYPES = ("CREATE TYPE call_outcome AS ENUM (" + ", ".join(f"'{name}'" for name in OUTCOMES) + ")",)


def create_statements() -> list[str]:
    """Every statement that creates the schema in an empty database."""
    return list(TYPES) + [t.ddl() for t in TABLES] + list(INDEXES) + [v.ddl() for v in VIEWS]

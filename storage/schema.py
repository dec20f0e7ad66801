"""The recording's schema: every table and column, documented, in one place.

The model follows Perfetto's trace processor: a ``run`` holds ``thread``s, the
``function`` table describes code, and ``call`` has one row per call (a slice)
with its parent, depth and the preorder interval ``[id, end_id]`` of its
subtree: every call made under call ``a`` on the same thread has an id in that
interval, so a subtree is a range scan and so is the stack above a call.

``SCHEMA_VERSION`` is stored in ``meta``; a file of another version is refused
with a message naming both versions (migrations arrive with the first change).
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 1

OUTCOMES = ("returned", "raised", "unfinished")


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
            Column("key", "VARCHAR", "name of the fact, e.g. 'schema_version'"),
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
            Column("end_ns", "BIGINT", "recorder clock at the end"),
            Column("status", "VARCHAR", "'running' until the recording is closed, then 'complete'"),
            Column("exit_status", "INTEGER", "the program's exit status, as the shell sees it"),
            Column("events_captured", "BIGINT", "records written into the rings"),
            Column("events_dropped", "BIGINT", "records lost (full rings, failed writer)"),
            Column("events_stored", "BIGINT", "records turned into stored rows"),
            Column("calls_stored", "BIGINT", "rows written to the call table"),
            Column("calls_unfinished", "BIGINT", "calls still open when recording ended"),
            Column("writer_batches", "BIGINT", "batches the writer committed"),
            Column("problems", "VARCHAR[]", "what went wrong while recording, if anything"),
        ),
        key=("id",),
    ),
    Table(
        "thread",
        "One row per OS thread that made at least one recorded call.",
        (
            Column("run", "INTEGER", "the run"),
            Column("id", "INTEGER", "thread slot: the high bits of its call ids (call.id >> 40)"),
            Column("native_id", "BIGINT", "the kernel's thread id"),
            Column("ident", "UBIGINT", "threading.get_ident() of the thread"),
            Column("name", "VARCHAR", "threading name, where known"),
            Column("start_ns", "BIGINT", "first event of the thread"),
            Column("end_ns", "BIGINT", "when the thread ended (NULL if still alive at the end)"),
        ),
        key=("run", "id"),
    ),
    Table(
        "function",
        "One row per instrumented (or planned) function of the run's code.",
        (
            Column("run", "INTEGER", "the run"),
            Column("id", "BIGINT", "stable id: hash of module, qualified name and occurrence"),
            Column("module", "VARCHAR", "module name as imported ('__main__' for the script)"),
            Column("qualname", "VARCHAR", "__qualname__ of the function"),
            Column("file", "VARCHAR", "source file"),
            Column("kind", "VARCHAR", "plain, method, staticmethod, classmethod, property, ..."),
            Column("level", "VARCHAR", "capture level: off, calls, args or full"),
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
            Column("outcome", "VARCHAR", "returned, raised (an exception left it) or unfinished"),
        ),
    ),
)

TABLES_BY_NAME = {t.name: t for t in TABLES}

INDEXES = ("CREATE INDEX IF NOT EXISTS call_function ON call (run, function)",)


def create_statements() -> list[str]:
    """Every statement that creates the schema in an empty database."""
    return [t.ddl() for t in TABLES] + list(INDEXES)

"""Merge the files of a run's child processes into the run: one recording, many processes.

Each recorded process writes its own file (DuckDB allows one writing process
per file).  When the run's top process ends, every finished child file in the
run's children folder is copied into the run, as the processes of that run:

* the ``k``-th child merged gets process number ``k`` (the top process is 0),
  put in the high bits of its ids, so that ids stay unique in the run and keep
  their layout: a call id becomes ``id | k << 52`` and a thread ``slot | k << 12``
  (so ``call.id >> 40`` is still its thread), which leaves room for 2,047
  children of 4,095 threads each;
* functions are matched by ``function.key`` (module, qualified name,
  occurrence): a function the run already has keeps its number, a new one gets
  the next;
* the child's counters are added to the run's, its problems appended.

A child's exit status, which Python code cannot see, comes from the
``<pid>.status`` file the C library's exit handlers wrote (``native.note_exit_status``).
A child file still open (a child that outlives the run) or of another schema
cannot be merged now; it stays in the folder for ``scope combine`` and the run
says so.  A child that could not record at all leaves a ``<pid>.failed`` note,
which becomes a problem of the run.
"""

from __future__ import annotations

import contextlib
import glob
import os
from dataclasses import dataclass, field

import duckdb
from scope.storage.schema import SCHEMA_VERSION

from scope import native

#: process numbers go in these bits of ids (see the module's doc)
CALL_SHIFT = native.PROCESS_SHIFT
THREAD_SHIFT = native.PROCESS_SHIFT - native.SLOT_SHIFT
MAX_CHILDREN = (1 << (63 - CALL_SHIFT)) - 1

#: per table: its columns holding call ids, thread slots and function numbers
_CALL_COLUMNS = {
    "call": ("id", "parent", "end_id"),
    "call_aggregate": ("parent",),
    "value": ("call", "raised_in"),
    "task": ("id", "created_by"),
    "suspension": ("call",),
    "event": ("call",),
    "thread": ("started_by",),
    "test": ("call", "raised_in"),
}
_THREAD_COLUMNS = {"call": ("thread",), "thread": ("id", "parent"), "task": ("thread",)}
_FUNCTION_COLUMNS = {"call": ("function",), "call_aggregate": ("function",), "value": ("function",)}
#: the tables whose rows a child's run brings (``function`` is merged by key, ``run`` summed)
_MERGED_TABLES = (
    "call",
    "call_aggregate",
    "value",
    "task",
    "suspension",
    "event",
    "thread",
    "process",
    "test",
)
_COUNTERS = (
    "events_captured",
    "events_dropped",
    "events_stored",
    "calls_stored",
    "calls_unfinished",
    "calls_summed",
    "writer_batches",
)


@dataclass
class MergeReport:
    """What merging a run's children did."""

    merged: list[int] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def merge_children(con: duckdb.DuckDBPyConnection, run: int, folder: str) -> MergeReport:
    """Merge every finished child file in ``folder`` into ``run``; remove what was merged."""
    report = MergeReport()
    for note in sorted(glob.glob(os.path.join(folder, "*.failed"))):
        with contextlib.suppress(OSError):
            with open(note) as f:
                report.problems.append(f.read().strip())
            os.unlink(note)
    files = sorted(glob.glob(os.path.join(folder, "*.duckdb")), key=os.path.getmtime)
    for path in files:
        number = _next_number(con, run)
        if number > MAX_CHILDREN:
            report.left.append(path)
            continue
        try:
            pid = _merge_one(con, run, path, number)
        except duckdb.Error:
            report.left.append(path)  # still being written, or not a recording of ours
            continue
        report.merged.append(pid)
        _note_exit_status(con, run, pid, os.path.join(folder, f"{pid}.status"))
        for leftover in (path, path + ".wal"):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
    for status in glob.glob(os.path.join(folder, "*.status")):  # children that kept no file
        with contextlib.suppress(OSError):
            os.unlink(status)
    if not report.left:
        with contextlib.suppress(OSError):
            os.rmdir(folder)
    return report


def _note_exit_status(con: duckdb.DuckDBPyConnection, run: int, pid: int, path: str) -> None:
    """The status the child exited with, which its own recording could not know."""
    try:
        with open(path) as f:
            status = int(f.read().strip())
    except (OSError, ValueError):
        return
    con.execute(
        "UPDATE process SET exit_status = ? WHERE run = ? AND pid = ? AND exit_status IS NULL",
        [status, run, pid],
    )


def _next_number(con: duckdb.DuckDBPyConnection, run: int) -> int:
    row = con.execute("SELECT count(*) FROM process WHERE run = ?", [run]).fetchone()
    return int(row[0]) if row else 1


def _remapped(table: str, column: str, number: int) -> str:
    if table == "process" and column == "number":
        return str(number)
    if column in _CALL_COLUMNS.get(table, ()):
        return (
            f"CASE WHEN {column} = 0 THEN 0 ELSE {column} | ({number}::BIGINT << {CALL_SHIFT}) END"
        )
    if column in _THREAD_COLUMNS.get(table, ()):
        return f"{column} | ({number} << {THREAD_SHIFT})"
    if column in _FUNCTION_COLUMNS.get(table, ()):
        return f"(SELECT parent FROM scope_function_map WHERE child = {column})"
    return column


def _merge_one(con: duckdb.DuckDBPyConnection, run: int, path: str, number: int) -> int:
    con.execute("ATTACH ? AS scope_child (READ_ONLY)", [path])
    try:
        row = con.execute("SELECT value FROM scope_child.meta WHERE key = 'schema_version'")
        version = row.fetchone()
        if version is None or int(version[0]) != SCHEMA_VERSION:
            raise duckdb.Error(f"{path}: schema version {version}")
        child_row = con.execute("SELECT max(id) FROM scope_child.run").fetchone()
        child_run = int(child_row[0]) if child_row and child_row[0] is not None else 0
        con.execute("BEGIN")
        try:
            _map_functions(con, run, child_run)
            for table in _MERGED_TABLES:
                columns = _columns(con, table)
                selected = ", ".join(
                    "? AS run" if c == "run" else f"{_remapped(table, c, number)} AS {c}"
                    for c in columns
                )
                con.execute(
                    f"INSERT INTO {table} BY NAME SELECT {selected} "
                    f"FROM scope_child.{table} WHERE run = ?",
                    [run, child_run],
                )
            sums = ", ".join(f"{c} = coalesce(run.{c}, 0) + coalesce(c.{c}, 0)" for c in _COUNTERS)
            con.execute(
                f"""UPDATE run SET {sums},
                       problems = list_concat(coalesce(run.problems, []), coalesce(c.problems, []))
                    FROM scope_child.run c WHERE run.id = ? AND c.id = ?""",
                [run, child_run],
            )
            pid_row = con.execute("SELECT pid FROM scope_child.run WHERE id = ?", [child_run])
            pid = pid_row.fetchone()
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.execute("DROP TABLE IF EXISTS scope_function_map")
        return int(pid[0]) if pid else 0
    finally:
        con.execute("DETACH scope_child")


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The child file's columns of ``table``, in order."""
    rows = con.execute(
        """SELECT column_name FROM duckdb_columns()
           WHERE database_name = 'scope_child' AND table_name = ? ORDER BY column_index""",
        [table],
    ).fetchall()
    return [r[0] for r in rows]


def _map_functions(con: duckdb.DuckDBPyConnection, run: int, child_run: int) -> None:
    """Number the child's functions in the run: by key if the run has them, else anew."""
    con.execute(
        """CREATE TEMP TABLE scope_function_map AS
           SELECT c.id AS child, min(p.id) AS parent
           FROM scope_child.function c LEFT JOIN function p ON p.run = ? AND p.key = c.key
           WHERE c.run = ? GROUP BY c.id""",
        [run, child_run],
    )
    base_row = con.execute("SELECT coalesce(max(id), 0) FROM function WHERE run = ?", [run])
    base = int(base_row.fetchone()[0])  # type: ignore[index]
    con.execute(
        """UPDATE scope_function_map SET parent = ? + n.number
           FROM (SELECT child, row_number() OVER (ORDER BY child) AS number
                 FROM scope_function_map WHERE parent IS NULL) n
           WHERE scope_function_map.child = n.child""",
        [base],
    )
    con.execute(
        """INSERT INTO function BY NAME
           SELECT ? AS run, m.parent AS id, c.* EXCLUDE (run, id)
           FROM scope_child.function c JOIN scope_function_map m ON m.child = c.id
           WHERE c.run = ? AND m.parent > ?""",
        [run, child_run, base],
    )

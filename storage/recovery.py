"""Store what recorded processes left behind when they were killed.

A recording process keeps its rings in files of its own folder in the
recording's live folder (``scope.live``), and removes the folder once
everything is stored.  A folder whose process is gone was left by a process
that was killed (SIGKILL, a crash) or could not finish storing: its rings still
hold every record it published and nobody stored.  ``recover`` drains each such
folder into the run it belongs to, closes that run as its process header says
the process ended ("killed" when it never said), marks it ``recovered``, and
removes the folder.  Calls still open at the kill were only in the process's
memory: they are not in the rings, and the run says so.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import duckdb
from scope.native.batch import Batch
from scope.storage.rows import Event
from scope.storage.writer import RecordingWriter

from scope import live, native

#: records per batch while recovering (as the pipeline's, one row group)
BATCH_RECORDS = 122_880


@dataclass(frozen=True)
class Recovered:
    """One process folder stored into its run."""

    run: int
    pid: int
    calls: int
    ended_by: str


@dataclass(frozen=True)
class _Note:
    """A process folder's ``run.json``: what its records belong to."""

    db: str
    run: int
    pid: int
    start: int | None


def _note(folder: str) -> _Note | None:
    """The folder's note, or None if it has none that makes sense (still being written)."""
    data = live.read_note(folder)
    if data is None or data.get("run_key"):
        return None  # a recording service's: it resumes its own runs
    try:
        start = data.get("start")
        return _Note(
            str(data["db"]),
            int(data["run"]),
            int(data["pid"]),
            None if start is None else int(start),
        )
    except (ValueError, TypeError, KeyError):
        return None


def left_to_a_service(db: str) -> list[int]:
    """The pids of processes that recorded for a recording service and are gone,
    whose folders no service has stored yet (the service was stopped too)."""
    pids = []
    for folder in sorted(glob.glob(os.path.join(live.live_root(db), "*-*"))):
        data = live.read_note(folder)
        if data is None or not data.get("run_key"):
            continue
        try:
            pid, start = int(data["pid"]), data.get("start")
        except (KeyError, TypeError, ValueError):
            continue
        if live.process_start(pid) != start:
            pids.append(pid)
    return pids


def left_folders(db: str) -> list[str]:
    """The process folders in ``db``'s live folder whose process is gone."""
    found = []
    for folder in sorted(glob.glob(os.path.join(live.live_root(db), "*-*"))):
        note = _note(folder)
        if note is not None and live.process_start(note.pid) != note.start:
            found.append(folder)
    return found


def recover(con: duckdb.DuckDBPyConnection, db: str) -> list[Recovered]:
    """Store every left folder of ``db`` into its run (``con`` is open for writing)."""
    done = []
    for folder in left_folders(db):
        note = _note(folder)
        if note is None or os.path.abspath(note.db) != os.path.abspath(db):
            continue
        try:
            reader = native.Reader(folder, native.Numbering())
        except OSError:
            live.remove_process_folder(folder)  # no header: it never recorded anything
            continue
        try:
            recovered = _store(con, reader, note.run)
        finally:
            reader.close()
        if recovered is not None:
            done.append(recovered)
        live.remove_process_folder(folder)
    return done


def _store(con: duckdb.DuckDBPyConnection, reader: native.Reader, run: int) -> Recovered | None:
    rows = con.execute("SELECT status FROM run WHERE id = ?", [run]).fetchall()
    row = rows[0] if rows else None
    if row is None or row[0] != "running":
        return None  # not this file's run, or it was closed after all
    process = reader.process()
    writer = RecordingWriter(con, reader.numbering)
    writer.run_id = run
    writer._pid = process.pid
    for number, key, params, attributes in con.execute(
        "SELECT id, key, params, attributes FROM function WHERE run = ?", [run]
    ).fetchall():
        reader.numbering.seed(key, number)
        writer._names[number] = (tuple(params or ()), tuple(attributes or ()))
    reader.refresh()
    _, missing = reader.unfinish()  # the calls it left open, from its ring files
    if reader.process().ended_by == "killed":  # suspended ones are in no file
        missing += reader.process().parked
    batch = Batch(BATCH_RECORDS, 1 << 22)
    writer.attach(batch)
    while batch.drain(reader).records:
        writer.write_batch(batch)
        reader.commit()
    _name_unknown_functions(con, run)
    _finish(con, writer, reader, process, missing)
    return Recovered(run, process.pid, writer.calls_stored, process.ended_by)


def _name_unknown_functions(con: duckdb.DuckDBPyConnection, run: int) -> None:
    """Functions planned after the process's last stored batch have no row: give them one."""
    con.execute(
        """INSERT INTO function (run, id, module, qualname, kind, level, calls_summed)
           SELECT DISTINCT ?, c.function, '<unknown>', '<function planned just before the kill>',
                  'function', 'calls', 0
           FROM call c WHERE c.run = ?
             AND c.function NOT IN (SELECT id FROM function WHERE run = ?)""",
        [run, run, run],
    )


def _finish(
    con: duckdb.DuckDBPyConnection,
    writer: RecordingWriter,
    reader: native.Reader,
    process: native.ProcessInfo,
    missing: int,
) -> None:
    end_ns = process.end_ns or max(
        [t.end_ns or t.start_ns for t in reader.threads()] + [process.start_ns]
    )
    said = process.ended_by != "killed" and process.exit_status >= 0
    exit_status = process.exit_status if said else None
    problem = (
        f"recovered: process {process.pid} ended ({process.ended_by}) before storing "
        f"everything; {writer.calls_stored} calls were stored from its rings afterwards"
        + (f", and {missing} calls still open when it ended are missing" if missing else "")
    )
    con.execute("BEGIN")
    writer.store_threads(reader.threads())
    writer._store_events([Event(end_ns, "end", process.ended_by)])
    con.execute(
        """UPDATE process SET end_ns = ?, exit_status = ?, ended_by = ?
           WHERE run = ? AND pid = ?""",
        [end_ns, exit_status, process.ended_by, writer.run_id, process.pid],
    )
    con.execute(
        """UPDATE run SET end_ns = ?, status = 'recovered', exit_status = ?,
               calls_stored = (SELECT count(*) FROM call WHERE run = ?),
               problems = list_append(coalesce(problems, []), ?)
           WHERE id = ?""",
        [end_ns, exit_status, writer.run_id, problem, writer.run_id],
    )
    con.execute("COMMIT")

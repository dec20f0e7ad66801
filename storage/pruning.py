"""Removing runs from a recording, and giving their space back.

``scope rm`` and ``scope prune`` remove runs a user names or no longer wants
(``remove_runs``); a recording configured with ``retain_runs`` drops its oldest
runs as each run closes (``retain``).  A run's rows are in every table with a
``run`` column (the ``run`` table itself by ``id``), the recording service's
own tables among them, and go in one transaction.

DuckDB does not shrink a file when rows are deleted: the blocks they held are
only reused by later writes.  So ``remove_runs`` then copies what is left into
a new file (``COPY FROM DATABASE``) and puts it in place of the old one with
an atomic rename.  Retention at record time only deletes: the next runs reuse
the space, and a file kept to N runs stays about the size of N runs.

A recording that a program is recording into is left alone: its rows could be
written while they are deleted, or into a file that is being replaced.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import duckdb
from scope.native import live
from scope.storage import database

from scope.errors import QueryError, RecordingError, RecordingInUse

#: seconds to wait for a recording service that has stored its runs to leave
SERVICE_WAIT = 5.0

_UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_AGE = re.compile(r"(\d+)([mhdw])")


def parse_age(text: str) -> dt.timedelta:
    """``30m``, ``12h``, ``7d`` or ``2w`` as a duration; ``ValueError`` saying why not."""
    found = _AGE.fullmatch(text.strip())
    if found is None:
        raise ValueError(
            f"{text!r} is not an age: a whole number and a unit, m (minutes), "
            "h (hours), d (days) or w (weeks), such as 12h or 7d"
        )
    return dt.timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])


@dataclass(frozen=True)
class Removed:
    """What ``remove_runs`` did: the runs removed and the file's size before and after."""

    path: str
    runs: tuple[int, ...]
    size_before: int
    size_after: int


#: chooses the runs to remove among those of an open recording
Selection = Callable[[duckdb.DuckDBPyConnection], list[int]]


def named(runs: Sequence[int], path: str) -> Selection:
    """Exactly ``runs``; ``QueryError`` naming any that the recording (at ``path``,
    for the message) does not have."""

    def select(con: duckdb.DuckDBPyConnection) -> list[int]:
        present = set(_run_ids(con))
        missing = sorted({run for run in runs if run not in present})
        if missing:
            listed = ", ".join(str(run) for run in missing)
            plural = "s" if len(missing) > 1 else ""
            raise QueryError(f"no run{plural} {listed} in {path} (see 'scope runs')")
        return sorted(set(runs))

    return select


def beyond_newest(keep: int) -> Selection:
    """Every run but the ``keep`` newest (the highest numbers: the last recorded)."""

    def select(con: duckdb.DuckDBPyConnection) -> list[int]:
        ids = _run_ids(con)
        return ids[: max(len(ids) - keep, 0)]

    return select


def started_before(age: dt.timedelta, now: dt.datetime | None = None) -> Selection:
    """Every run that started more than ``age`` before ``now`` (UTC, as runs are stamped)."""

    def select(con: duckdb.DuckDBPyConnection) -> list[int]:
        moment = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None) - age
        rows = con.execute(
            "SELECT id FROM run WHERE started_at < ? ORDER BY id", [moment]
        ).fetchall()
        return [int(row[0]) for row in rows]

    return select


def remove_runs(path: str, select: Selection) -> Removed:
    """Remove the runs ``select`` chooses from the recording at ``path``, then compact it.

    Raises ``RecordingInUse`` while a program records into it (or another process
    holds it), and ``RecordingError`` if it is not there.  Nothing is removed when
    ``select`` raises.  If the runs are removed but the copy cannot be made (a
    full disk), the file is left as it is, uncompacted, and ``RecordingError``
    says so.
    """
    if not os.path.isfile(path):
        raise RecordingError(f"no recording at {path}")
    _check_not_recording(path)
    size_before = _size(path)
    try:
        con = database.open_for_writing(path)
    except RecordingInUse:
        raise RecordingInUse(
            f"cannot remove runs from {path}: another process has it open (a query, or a "
            "program recording into it); try again once it is done"
        ) from None
    try:
        runs = select(con)
        if runs:
            delete_runs(con, runs)
            try:
                compact(con, path)
            except (OSError, duckdb.Error) as exc:
                raise RecordingError(
                    f"{_listed(runs)} removed from {path}, but it could not be "
                    f"compacted to a smaller file: {' '.join(str(exc).split())}"
                ) from None
    finally:
        con.close()  # after the rename: the old file is not left for another to open
    return Removed(path, tuple(runs), size_before, _size(path))


def retain(con: duckdb.DuckDBPyConnection, keep: int, busy: Collection[int] = ()) -> list[int]:
    """Delete every run but the ``keep`` newest, as a run closes (``retain_runs``);
    0 keeps them all.  Runs still being recorded (``running``, or in ``busy``: a
    run whose child processes still record) stay whatever their number.  Returns
    the runs deleted."""
    if keep <= 0:
        return []
    rows = con.execute(
        "SELECT id FROM run WHERE status IS DISTINCT FROM 'running' AND id NOT IN "
        "(SELECT id FROM run ORDER BY id DESC LIMIT ?) ORDER BY id",
        [keep],
    ).fetchall()
    runs = [int(row[0]) for row in rows if int(row[0]) not in busy]
    if runs:
        delete_runs(con, runs)
    return runs


def delete_runs(con: duckdb.DuckDBPyConnection, runs: Sequence[int]) -> None:
    """Delete every row of ``runs`` from every table, in one transaction."""
    tables = _tables_by_run(con)
    con.execute("BEGIN")
    try:
        for table, column in tables:
            con.execute(
                f'DELETE FROM "{table}" WHERE "{column}" IN (SELECT unnest(?))', [list(runs)]
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def compact(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """Copy the recording ``con`` has open into a new file, and rename it over ``path``.

    The copy is made next to the original (``<path>.compact``) with its
    permissions, and replaces it only once whole: a failure leaves the original
    as it was.  ``con`` still holds the old file as it is replaced, so no other
    process can open it between the copy and the rename.
    """
    con.execute("CHECKPOINT")  # the deletions in the file itself, its log emptied
    source = con.execute("SELECT current_database()").fetchone()
    assert source is not None
    path = os.path.realpath(path)  # a link to the recording stays one
    target = f"{path}.compact"
    _remove_copy(target)
    alias = "scope_compacted"
    con.execute(f"ATTACH {database.sql_string(database.duckdb_path(target))} AS {alias}")
    try:
        os.chmod(target, os.stat(path).st_mode & 0o7777)
        quoted = str(source[0]).replace('"', '""')
        con.execute(f'COPY FROM DATABASE "{quoted}" TO {alias}')
        con.execute(f"DETACH {alias}")
        _sync(target)
        os.replace(target, path)
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DETACH {alias}")
        _remove_copy(target)
        raise
    _sync(os.path.dirname(os.path.abspath(path)))


def _check_not_recording(path: str) -> None:
    """Raise ``RecordingInUse`` while a program records into ``path``, or its service
    has not stored all it was given, or what a killed program left waits to be stored
    (into runs that could be removed meanwhile)."""
    from scope.storage.recovery import left_folders

    if live.producer_running(path):
        raise RecordingInUse(
            f"cannot remove runs from {path}: a program is recording into it; "
            "try again once it has ended"
        )
    deadline = time.monotonic() + SERVICE_WAIT
    while live.service_running(path):  # it lingers a moment after its last run
        if time.monotonic() > deadline:
            raise RecordingInUse(
                f"cannot remove runs from {path}: its recording service is still storing "
                "runs; try again once it has finished"
            )
        time.sleep(0.05)
    if left_folders(path):
        raise RecordingInUse(
            f"cannot remove runs from {path}: programs killed while recording left "
            "records to store into it first (run 'scope recover')"
        )


def _run_ids(con: duckdb.DuckDBPyConnection) -> list[int]:
    return [int(row[0]) for row in con.execute("SELECT id FROM run ORDER BY id").fetchall()]


def _tables_by_run(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(table, column naming the run) of every table of the recording that has rows
    per run: the schema's, and any the recording service keeps there."""
    rows = con.execute(
        """SELECT table_name FROM duckdb_columns()
           WHERE database_name = current_database() AND schema_name = 'main'
             AND column_name = 'run'
             AND table_name IN (SELECT table_name FROM duckdb_tables()
                                WHERE database_name = current_database()
                                  AND schema_name = 'main')
           ORDER BY table_name"""
    ).fetchall()
    return [(str(row[0]), "run") for row in rows] + [("run", "id")]


def _listed(runs: Sequence[int]) -> str:
    """``run 3 was`` or ``runs 1, 2 were``."""
    numbers = ", ".join(str(run) for run in runs)
    return f"runs {numbers} were" if len(runs) > 1 else f"run {numbers} was"


def _size(path: str) -> int:
    """Bytes of the recording with its write-ahead log."""
    total = 0
    for name in (path, f"{path}.wal"):
        with contextlib.suppress(OSError):
            total += os.path.getsize(name)
    return total


def _remove_copy(target: str) -> None:
    for name in (target, f"{target}.wal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _sync(path: str) -> None:
    """Flush ``path`` (a file, or a folder after a rename in it) to the disk."""
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

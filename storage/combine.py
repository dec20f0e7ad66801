"""Merge recordings: copy every run of other files into one, as new runs.

DuckDB lets no other process open a file while it is written, so each recorded
process writes a file of its own; ``combine`` brings them together (``scope
combine`` by hand).  Each source run becomes the next run of the target, every
table's rows copied with the run renumbered, in one transaction: the target
gets all of a source or none of it.  Sources are attached read-only and left
as they are; they must be recordings of this scope's schema version.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb
from scope.storage import database
from scope.storage.schema import SCHEMA_VERSION, TABLES

from scope.errors import NotARecording, RecordingError

#: tables whose rows belong to a run, and the column that names it
_RUN_COLUMN = {t.name: ("id" if t.name == "run" else "run") for t in TABLES if t.name != "meta"}


@dataclass(frozen=True)
class Combined:
    """One source run copied into the target."""

    source: str
    source_run: int
    run: int


def combine(
    target: str,
    sources: Sequence[str],
    progress: Callable[[int, int], None] | None = None,
) -> list[Combined]:
    """Copy every run of ``sources`` into ``target`` (created if missing).

    ``progress`` is told (sources done, sources in all) after each source.
    """
    for source in sources:
        if not os.path.isfile(source):
            raise RecordingError(f"no recording at {source}")
        if os.path.abspath(source) == os.path.abspath(target):
            raise RecordingError(f"cannot combine {source} into itself")
    con = database.open_for_writing(target)
    try:
        copied: list[Combined] = []
        for number, source in enumerate(sources):
            copied += _copy(con, source, f"scope_source_{number}")
            if progress is not None:
                progress(number + 1, len(sources))
        return copied
    finally:
        con.close()


def _copy(con: duckdb.DuckDBPyConnection, source: str, alias: str) -> list[Combined]:
    try:
        con.execute(f"ATTACH ? AS {alias} (READ_ONLY)", [source])
    except duckdb.Error as exc:
        raise NotARecording(f"{source} is not a scope recording: {exc}") from None
    try:
        _check(con, source, alias)
        runs = [
            int(r[0]) for r in con.execute(f"SELECT id FROM {alias}.run ORDER BY id").fetchall()
        ]
        copied = []
        con.execute("BEGIN")
        try:
            for source_run in runs:
                run = database.next_run_id(con)
                for table, column in _RUN_COLUMN.items():
                    con.execute(
                        f"""INSERT INTO {table} BY NAME SELECT ? AS {column}, * EXCLUDE ({column})
                            FROM {alias}.{table} WHERE {column} = ?""",
                        [run, source_run],
                    )
                copied.append(Combined(source, source_run, run))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return copied
    finally:
        con.execute(f"DETACH {alias}")


def _check(con: duckdb.DuckDBPyConnection, source: str, alias: str) -> None:
    try:
        row = con.execute(f"SELECT value FROM {alias}.meta WHERE key = 'schema_version'").fetchone()
    except duckdb.CatalogException:
        raise NotARecording(f"{source} is a DuckDB file but not a scope recording") from None
    version = int(row[0]) if row else None
    if version != SCHEMA_VERSION:
        raise NotARecording(
            f"{source} has recording schema version {version}; combine reads version "
            f"{SCHEMA_VERSION} (record into it once with this scope to upgrade it)"
        )

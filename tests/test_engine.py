"""The engine a recording service keeps: recordings attached to one DuckDB, run after run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from scope.storage import database
from scope.storage.schema import SCHEMA_VERSION

from scope.errors import NotARecording, RecordingError, RecordingInUse

#: another process: counts a recording's runs, read-only, and says so
COUNTS_RUNS = """
import duckdb, sys
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("SELECT count(*) FROM run").fetchone()[0])
"""


def runs_seen_by_another_process(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", COUNTS_RUNS, str(path)], capture_output=True, text=True
    )


def add_run(con: duckdb.DuckDBPyConnection, run: int) -> None:
    con.execute("INSERT INTO run (id, status) VALUES (?, 'complete')", [run])


def test_a_released_recording_is_whole_and_free_for_other_processes(tmp_path):
    path = tmp_path / "rec.duckdb"
    engine = database.Engine()
    try:
        for run in (1, 2, 3):  # one DuckDB, attached again for each run
            con = engine.open_for_writing(str(path))
            add_run(con, run)
            held = runs_seen_by_another_process(path)
            assert held.returncode != 0 and "lock" in held.stderr  # attached: held
            engine.release()
            free = runs_seen_by_another_process(path)
            assert (free.returncode, free.stdout) == (0, f"{run}\n"), free.stderr
        assert not (tmp_path / "rec.duckdb.wal").exists()  # checkpointed as it let go
    finally:
        engine.close()
    con = database.open_for_reading(str(path))
    try:
        assert database.schema_version(con) == SCHEMA_VERSION
    finally:
        con.close()


def test_a_cursor_reads_the_attached_recording(tmp_path):
    engine = database.Engine()
    try:
        add_run(engine.open_for_writing(str(tmp_path / "rec.duckdb")), 7)
        cursor = engine.cursor()
        try:
            assert cursor.execute("SELECT id FROM run").fetchall() == [(7,)]
        finally:
            cursor.close()
    finally:
        engine.close()


def test_a_file_held_by_a_reader_is_in_use_and_can_be_attached_once_free(tmp_path):
    path = tmp_path / "rec.duckdb"
    database.open_for_writing(str(path)).close()
    reader = subprocess.Popen(
        [sys.executable, "-c", f"{COUNTS_RUNS}\nsys.stdin.read()", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    engine = database.Engine()
    try:
        assert reader.stdout is not None and reader.stdout.readline() == "0\n"
        with pytest.raises(RecordingInUse, match="in use by another process"):
            engine.open_for_writing(str(path))
        reader.communicate("", timeout=60)
        add_run(engine.open_for_writing(str(path)), 1)  # the failed attach left nothing behind
        engine.release()
    finally:
        if reader.poll() is None:
            reader.kill()
        engine.close()


@pytest.mark.parametrize(
    ("content", "error"),
    [(b"not a database at all, but text" * 200, NotARecording), (None, NotARecording)],
    ids=["not DuckDB", "DuckDB, not scope"],
)
def test_a_file_that_is_not_a_recording_is_refused_and_not_kept(tmp_path, content, error):
    path = tmp_path / "other.duckdb"
    if content is None:
        con = duckdb.connect(str(path))
        con.execute("CREATE TABLE mine (x INTEGER)")
        con.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    engine = database.Engine()
    try:
        with pytest.raises(error):
            engine.open_for_writing(str(path))
        assert engine.attached is None
        # The engine still works, and the file was not written.
        add_run(engine.open_for_writing(str(tmp_path / "rec.duckdb")), 1)
        engine.release()
    finally:
        engine.close()
    if content is not None:
        assert path.read_bytes() == before


def test_a_recording_path_with_a_quote_in_it_is_attached(tmp_path):
    folder = tmp_path / "it's here"
    engine = database.Engine()
    try:
        add_run(engine.open_for_writing(str(folder / "rec.duckdb")), 1)
        engine.release()
    finally:
        engine.close()
    assert runs_seen_by_another_process(folder / "rec.duckdb").stdout == "1\n"


def test_a_folder_is_no_recording(tmp_path):
    engine = database.Engine()
    try:
        with pytest.raises(RecordingError, match="directory"):
            engine.open_for_writing(str(tmp_path))
    finally:
        engine.close()

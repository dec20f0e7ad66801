"""The recording writer's manners towards the program: what it allocates while watched.

The writer thread runs inside the recorded process, so a program measuring its
own allocations with ``tracemalloc`` sees the Python objects the writer makes.
The pipeline stops storing while tracing is on; these tests check the writer
keeps the work already under way small.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from scope.native.batch import VALUE_DTYPE
from scope.storage import database
from scope.storage.writer import VALUE_CHUNK, RecordingWriter, RunInfo

from scope import native

ROWS = 4 * VALUE_CHUNK
ROOT = Path(__file__).resolve().parent.parent


class ValueBatch:
    """A drained batch holding ``ROWS`` string values of one call, and nothing else."""

    def __init__(self) -> None:
        self._values = np.zeros(ROWS, VALUE_DTYPE)
        self._values["func_word"] = native.VALUE << native.KIND_SHIFT | 1
        self._values["tag"] = native.lib.SCOPE_TAG_STR
        self._values["role"] = native.lib.SCOPE_ROLE_RETURN
        self._values["call_id"] = 1
        self._values["payload"] = 40
        self._values["arena_len"] = 40
        self.arena = np.frombuffer(b"x" * 40, np.uint8)

    def values(self) -> np.ndarray:
        return self._values


@pytest.fixture
def writer(tmp_path):
    writer = RecordingWriter(database.open_for_writing(str(tmp_path / "w.duckdb")))
    writer.begin(RunInfo(["app.py"], str(tmp_path), "CPython", "linux", 1, 0, "python", "0", 0))
    yield writer
    writer.con.close()


def peak_traced_bytes(action) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_values_are_stored_in_small_chunks_while_the_program_traces(writer):
    batch = ValueBatch()
    peak = peak_traced_bytes(lambda: writer._insert_values(batch))
    assert writer.con.execute("SELECT count(*) FROM value").fetchone() == (ROWS,)
    # One small chunk's Python objects at a time, not the batch's.
    assert peak < 256 * 1024, peak


def test_the_chunk_size_is_what_bounds_it(writer, monkeypatch):
    # The same batch in chunks of the untraced size goes well past the bound.
    monkeypatch.setattr("scope.storage.writer.TRACED_VALUE_CHUNK", VALUE_CHUNK)
    peak = peak_traced_bytes(lambda: writer._insert_values(ValueBatch()))
    assert peak > 4 * 256 * 1024, peak


def test_storing_while_the_program_traces_allocations_does_not_crash(tmp_path):
    # DuckDB's worker threads take the GIL to scan object columns; one without a
    # Python thread state makes one, which crashes CPython 3.11 while tracemalloc
    # traces (seen in 1 of 8 more-itertools runs: timing decides).  The
    # recording's connection therefore runs DuckDB on one thread: checked first.
    program = f"""
import tracemalloc
from scope.storage import database
from scope.storage.writer import RecordingWriter, RunInfo
from tests.test_writer import ValueBatch

writer = RecordingWriter(database.open_for_writing({str(tmp_path / "t.duckdb")!r}))
writer.begin(RunInfo(["app.py"], ".", "CPython", "linux", 1, 0, "python", "0", 0))
print(writer.con.execute("SELECT current_setting('threads')").fetchall()[0][0])
tracemalloc.start()
for _ in range(5):
    writer._insert_values(ValueBatch())
tracemalloc.stop()
print(writer.con.execute("SELECT count(*) FROM value").fetchone()[0])
"""
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert (done.returncode, done.stdout.split()) == (0, ["1", str(5 * ROWS)]), done.stderr

"""Rings in shared files: a killed program leaves every record it published behind.

While a program records, each of its threads' rings is a file of its own
private folder in the recording's live folder (``scope.live``), mapped
shared with a process header beside it.  A normal end stores everything and
removes the folder; SIGKILL leaves it, and the next ``scope run`` (or ``scope
recover``) stores what it holds into the killed run (``scope.storage.recovery``):
everything the writer had not taken out of the rings yet.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
from scope.native import tsc_usable
from scope.native.batch import RECORD_DTYPE, function_ids, kinds

from scope import native

from .conftest import clean_env, unavailable

LISTS_ITS_LIVE_FOLDER = """
import json, os, stat

def work(n):
    return n + 1

for i in range(1000):
    work(i)
root = os.path.abspath(".scope/scope.duckdb.live")
seen = {}
for folder, _, files in os.walk(root):
    seen[os.path.relpath(folder, root)] = stat.S_IMODE(os.stat(folder).st_mode)
    for name in files:
        path = os.path.join(folder, name)
        seen[os.path.relpath(path, root)] = stat.S_IMODE(os.stat(path).st_mode)
print(json.dumps(seen))
"""

#: makes every call it will make, says how many, then kills itself: nothing of
#: scope's runs between its last call and its death
KILLS_ITSELF = """
import os, signal, sys

def work(n):
    return n + 1

count = 0
for _ in range(int(sys.argv[1])):
    count = work(count)
print(count, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


#: records straight into shared rings (no writer drains them), then is killed
PRODUCES_AND_DIES = """
import os, signal, sys
from scope import native

native.configure(1 << 16, "block", 10**9, 1 << 10, clock=sys.argv[2])
native.share_rings(sys.argv[1])
native.set_enabled(True)
native.lib.scope_produce_pairs(int(sys.argv[3]), 1)
native.set_budget(0)
print("produced", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("clock", ["monotonic", "tsc"])
def test_a_reader_drains_every_record_a_killed_process_published(tmp_path, clock):
    if clock == "tsc" and not tsc_usable():
        # The TSC case needs a CPU with an invariant TSC (scope then refuses clock
        # "tsc"); CI's machines have one, and there the case must run.
        unavailable("this CPU has no invariant TSC", "SCOPE_TEST_REQUIRE_TSC")
    folder = tmp_path / "p"
    folder.mkdir(mode=0o700)
    pairs = 50_000  # fewer than a ring holds: nothing waits for a drainer
    before = time.monotonic_ns()
    result = subprocess.run(
        [sys.executable, "-c", PRODUCES_AND_DIES, str(folder), clock, str(pairs)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    after = time.monotonic_ns()
    assert result.returncode == -signal.SIGKILL and result.stdout == "produced\n", result.stderr
    reader = native.Reader(str(folder))
    process = reader.process()
    assert process.pid > 0 and process.ended_by == "killed"
    records = np.zeros(1 << 17, RECORD_DTYPE)
    n, _ = reader_drain(reader, records)
    assert n == pairs
    drained = records[:n]
    assert sorted(function_ids(drained)) == list(range(1, pairs + 1))
    assert (kinds(drained) == native.RETURN).all()
    assert (drained["start_ns"] >= before).all() and (drained["start_ns"] <= after).all()
    (thread,) = reader.threads()
    assert thread.produced == pairs and thread.slot == 1
    assert reader_drain(reader, records)[0] == 0  # drained once
    reader.close()


def test_a_reader_passes_over_what_a_killed_reader_stored_but_did_not_free(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir(mode=0o700)
    result = subprocess.run(
        [sys.executable, "-c", PRODUCES_AND_DIES, str(folder), "monotonic", "30000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout == "produced\n", result.stderr
    records = np.zeros(1 << 17, RECORD_DTYPE)
    killed = native.Reader(str(folder))
    assert reader_drain(killed, records[:10_000])[0] == 10_000
    stored_to = killed.positions()  # noted with the store; then killed before commit
    assert [(slot, read) for slot, read, _ in stored_to] == [(1, 10_000)]
    killed.close()
    after = native.Reader(str(folder))
    assert not after.skip_to(7, 10_000, 0)  # no such ring
    assert after.skip_to(*stored_to[0])
    n, _ = reader_drain(after, records)
    assert n == 20_000
    assert sorted(function_ids(records[:n])) == list(range(10_001, 30_001))
    assert after.skip_to(*stored_to[0])  # behind the cursor now: nothing moves
    assert reader_drain(after, records)[0] == 0
    after.close()
    again = native.Reader(str(folder))  # nothing committed since: the skip freed them
    assert reader_drain(again, records)[0] == 20_000
    again.close()


def reader_drain(reader, records):
    used = native.ffi.new("size_t *")
    buffer = native.ffi.cast("scope_record *", native.ffi.from_buffer(records))
    n = native.lib.scope_reader_drain(reader.handle, buffer, len(records), native.ffi.NULL, 0, used)
    return int(n), int(used[0])


def run_killed(project, calls: int) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "scope", "run", "kill.py", str(calls)],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert result.stdout.split() == [str(calls)]
    return result


def live_root(project) -> str:
    return os.path.join(project, ".scope", "scope.duckdb.live")


@pytest.mark.usefixtures("in_program")  # the service stores a killed program's rings itself
def test_a_recording_keeps_its_rings_in_private_files_and_removes_them_at_the_end(
    write, project, scope
):
    write("lists.py", LISTS_ITS_LIVE_FOLDER)
    result = scope("run", "lists.py")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    (folder,) = [name for name in seen if name != "." and os.sep not in name]
    assert folder.split("-")[0].isdigit()  # <pid>-<random>
    assert seen["."] == 0o700 and seen[folder] == 0o700
    files = {name.split(os.sep)[1]: mode for name, mode in seen.items() if os.sep in name}
    assert set(files) == {"process", "ring-1", "run.json"}
    assert set(files.values()) == {0o600}
    assert not os.path.exists(live_root(project))  # everything stored: nothing left


@pytest.mark.usefixtures("in_program")  # the service stores a killed program's rings itself
def test_calls_a_killed_program_made_are_stored_by_the_next_run(write, project, scope, query):
    calls = 300_000
    write("kill.py", KILLS_ITSELF)
    run_killed(project, calls)
    (left,) = os.listdir(live_root(project))
    assert stat.S_IMODE(os.stat(os.path.join(live_root(project), left)).st_mode) == 0o700
    write("next.py", "print('next')\n")
    result = scope("run", "next.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "next\n" and result.stderr == ""
    assert not os.path.exists(live_root(project))
    # The calls the writer had stored, and those the rings still held, once each.
    ((stored, distinct, recovered),) = query(
        "SELECT count(*), count(DISTINCT c.id), (SELECT count(*) FROM event "
        "WHERE run = 2 AND kind = 'recovered') FROM call c JOIN function f "
        "ON f.run = c.run AND f.id = c.function WHERE c.run = 1 AND f.qualname = 'work'"
    )
    assert stored <= calls and distinct == stored and recovered == 1
    ((status, problems),) = query("SELECT status, problems FROM run WHERE id = 1")
    assert status == "recovered"
    assert any("recovered: process" in p and "killed" in p for p in problems)
    ((ended_by, exit_status),) = query("SELECT ended_by, exit_status FROM process WHERE run = 1")
    assert ended_by == "killed" and exit_status is None
    ((note,),) = query("SELECT detail FROM event WHERE run = 2 AND kind = 'recovered'")
    assert note.startswith("run 1 ")


@pytest.mark.usefixtures("in_program")  # the service stores a killed program's rings itself
def test_scope_recover_stores_what_was_left_and_says_so(write, project, scope, query):
    write("kill.py", KILLS_ITSELF)
    run_killed(project, 5_000)
    result = scope("recover")
    assert result.returncode == 0, result.stderr
    assert "run 1: process" in result.stdout and "(killed)" in result.stdout
    ((stored, distinct),) = query("SELECT count(*), count(DISTINCT id) FROM call WHERE run = 1")
    assert stored <= 5_000 and distinct == stored
    again = scope("recover")
    assert again.returncode == 0 and again.stdout == "nothing to recover\n"


@pytest.mark.usefixtures("in_program")  # the service stores a killed program's rings itself
def test_a_live_folder_of_a_running_program_is_left_alone(write, project, scope, query):
    write("kill.py", KILLS_ITSELF)
    run_killed(project, 10)
    (left,) = os.listdir(live_root(project))
    note_path = os.path.join(live_root(project), left, "run.json")
    with open(note_path) as f:
        note = json.load(f)
    # Make the folder look like this test's process's: alive, so not to be touched.
    with open(f"/proc/{os.getpid()}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    note.update(pid=os.getpid(), start=int(fields[19]))
    with open(note_path, "w") as f:
        json.dump(note, f)
    assert scope("recover").stdout == "nothing to recover\n"
    assert os.listdir(live_root(project)) == [left]


@pytest.mark.usefixtures("in_program")  # the service stores a killed program's rings itself
def test_files_that_are_not_rings_are_left_out(write, project, scope, query):
    write("kill.py", KILLS_ITSELF)
    run_killed(project, 2_000)
    (left,) = os.listdir(live_root(project))
    folder = os.path.join(live_root(project), left)
    with open(os.path.join(folder, "ring-7"), "wb") as f:  # sizes that fit no ring
        f.write(b"\xff" * 8192)
    with open(os.path.join(folder, "ring-8"), "wb") as f:  # shorter than a header
        f.write(b"\x00" * 100)
    os.symlink(os.path.join(folder, "ring-1"), os.path.join(folder, "ring-9"))  # not followed
    result = scope("recover")
    assert result.returncode == 0, result.stderr
    ((status,),) = query("SELECT status FROM run WHERE id = 1")
    assert status == "recovered"
    ((threads,),) = query("SELECT count(*) FROM thread WHERE run = 1")
    assert threads == 1

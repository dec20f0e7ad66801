"""The recording service: the recorded program only fills its rings; another process stores.

With ``service = true`` (``SCOPE_SERVICE=1``) a recorded process runs no thread
of scope's and never opens the recording: ``python -m scope.service`` drains
its rings from their files (``scope.storage.service``).  These tests hold the
promises that come with it: the program's threads, signals and descriptors are
its own, and what it recorded is stored however it ends, once.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
from scope.query.api import Recording
from scope.storage import database

from scope import live, native
from scope.errors import RecordingError

from .conftest import (
    assert_no_count_is_negative,
    clean_env,
    lock_free,
    unavailable,
    wait_for_service_to_leave,
)
from .test_live_rings import KILLS_ITSELF


def service_env() -> dict[str, str]:
    return clean_env({"SCOPE_SERVICE": "1"})


def record(project: Path, *args: str, **popen: object) -> subprocess.CompletedProcess[str]:
    popen.setdefault("env", service_env())
    return subprocess.run(
        [sys.executable, "-m", "scope", "run", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        **popen,  # type: ignore[arg-type]
    )


def start(project: Path, *args: str) -> subprocess.Popen[str]:
    """``scope run ARGS`` with the service, in the background, its stdin, stdout and
    stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "scope", "run", *args],
        cwd=project,
        env=service_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def plain(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=project, env=clean_env(), capture_output=True, text=True
    )


COUNTS_ITS_THREADS = """
import os, threading

def work(n):
    return n + 1

for i in range(1000):
    work(i)
print(threading.active_count(), [t.name for t in threading.enumerate()],
      len(os.listdir("/proc/self/task")))
"""


def test_a_recorded_program_sees_no_thread_of_scopes(write, project, query):
    write("threads.py", COUNTS_ITS_THREADS)
    recorded = record(project, "threads.py")
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout == plain(project, "threads.py").stdout
    assert recorded.stdout.split()[-1] == "1"  # one OS thread: the program's own
    ((calls,),) = query("SELECT count(*) FROM call WHERE run = 1")
    assert calls == 1000


def test_every_call_a_killed_program_made_is_stored(write, project, query, scope):
    calls = 200_000  # fewer than a ring holds: no wait on a service still starting
    write("kill.py", KILLS_ITSELF)
    result = record(project, "--max-calls-per-function", "0", "kill.py", str(calls))
    assert result.returncode == -signal.SIGKILL and result.stdout == f"{calls}\n"
    wait_for_service_to_leave(project)
    ((stored, distinct),) = query(
        "SELECT count(*), count(DISTINCT c.id) FROM call c JOIN function f "
        "ON f.run = c.run AND f.id = c.function WHERE f.qualname = 'work'"
    )
    assert stored == calls and distinct == calls
    ((status, ended_by, exit_status),) = query(
        "SELECT r.status, p.ended_by, p.exit_status FROM run r JOIN process p ON p.run = r.id"
    )
    # Only the parent learns how a process died; the service knows when it saw the
    # zombie before the parent reaped it.
    assert (status, ended_by, exit_status) in (
        ("complete", "SIGKILL", 128 + 9),
        ("complete", "killed", None),
    )
    assert not (project / ".scope" / "scope.duckdb.live").exists() or not [
        name for name in os.listdir(project / ".scope" / "scope.duckdb.live") if "-" in name
    ]


KILLED_INSIDE_ITS_CALLS = """
import os, signal, sys

def helper(i):
    return i

def inner(depth):
    if depth:
        return inner(depth - 1)
    print("deep", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

def outer(depth):
    for i in range(3):
        helper(i)
    inner(depth)

sys.setrecursionlimit(10_000)
outer(int(sys.argv[1]))
"""


def killed_inside(project: Path, query, script: str, depth: str) -> list[tuple[object, ...]]:
    """Record ``script`` until it kills itself ``depth`` calls deep; (function, outcome,
    calls) as stored."""
    result = record(project, script, depth)
    assert result.returncode == -signal.SIGKILL and result.stdout == "deep\n", result.stderr
    wait_for_service_to_leave(project)
    return query(
        "SELECT f.qualname, c.outcome, count(*) FROM call c JOIN function f "
        "ON f.run = c.run AND f.id = c.function GROUP BY ALL ORDER BY ALL"
    )


def test_calls_a_killed_program_left_open_are_stored_as_unfinished(write, project, query):
    write("inside.py", KILLED_INSIDE_ITS_CALLS)
    assert killed_inside(project, query, "inside.py", "10") == [
        ("helper", "returned", 3),
        ("inner", "unfinished", 11),
        ("outer", "unfinished", 1),
    ]
    # The open calls keep their tree: each inner under the one before, all under outer.
    ((outer, end_id),) = query(
        "SELECT c.id, c.end_id FROM call c JOIN function f ON f.run = c.run AND "
        "f.id = c.function WHERE f.qualname = 'outer'"
    )
    ((under,),) = query(f"SELECT count(*) FROM call WHERE id > {outer} AND id <= {end_id}")
    assert under == 14
    assert query("SELECT calls_unfinished, problems FROM run") == [(12, [])]


def test_open_calls_deeper_than_a_ring_file_keeps_are_counted_missing(write, project, query):
    write("inside.py", KILLED_INSIDE_ITS_CALLS)
    result = record(project, "inside.py", "2000")
    assert result.returncode == -signal.SIGKILL and result.stdout == "deep\n", result.stderr
    wait_for_service_to_leave(project)
    ((problems,),) = query("SELECT problems FROM run")
    (problem,) = problems
    assert "before it said so: 2,002 calls still open then are missing" in problem
    assert query("SELECT outcome, count(*) FROM call GROUP BY ALL") == [("returned", 3)]


def test_a_stack_that_was_deep_once_is_kept_again_once_shallow(write, project, query):
    write(
        "once_deep.py",
        KILLED_INSIDE_ITS_CALLS.replace(
            "outer(int(sys.argv[1]))",
            "def down(n):\n    return down(n - 1) if n else 0\n\n"
            "down(2000)\nouter(int(sys.argv[1]))",
        ),
    )
    assert killed_inside(project, query, "once_deep.py", "3") == [
        ("down", "returned", 2001),
        ("helper", "returned", 3),
        ("inner", "unfinished", 4),
        ("outer", "unfinished", 1),
    ]
    assert query("SELECT problems FROM run") == [([],)]


def test_suspended_calls_a_killed_program_left_are_counted_missing(write, project, query):
    # A suspended generator's call is in no ring file: it cannot be stored, so it
    # is counted, and the calls on the stack are stored as unfinished.
    write(
        "suspended.py",
        """
import os, signal

def numbers():
    yield 1
    yield 2

def outer():
    first, second = numbers(), numbers()
    next(first), next(second)
    inner()

def inner():
    print("deep", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

outer()
""",
    )
    result = record(project, "suspended.py")
    assert result.returncode == -signal.SIGKILL and result.stdout == "deep\n", result.stderr
    wait_for_service_to_leave(project)
    stored = query(
        "SELECT f.qualname, c.outcome FROM call c JOIN function f "
        "ON f.run = c.run AND f.id = c.function ORDER BY ALL"
    )
    assert stored == [("inner", "unfinished"), ("outer", "unfinished")]
    ((problems,),) = query("SELECT problems FROM run")
    assert len(problems) == 1 and "2 calls still open then are missing" in problems[0]


@pytest.mark.parametrize(
    "busy",
    [
        "while True:\n    work(1)",
        "sum(range(10**11))  # one long C call",
    ],
    ids=["python loop", "long C call"],
)
def test_sigterm_kills_at_once_as_plain_python(write, project, query, busy):
    write(
        "busy.py",
        f"""
import sys

def work(n):
    return n + 1

for i in range(1000):
    work(i)
print("ready", flush=True)
{busy}
""",
    )
    process = start(project, "busy.py")
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGTERM)
    # A program that stored its backlog on SIGTERM, or waited in a C call, would not be dead.
    assert process.wait(timeout=10) == -signal.SIGTERM
    wait_for_service_to_leave(project)
    ((stored,),) = query("SELECT count(*) FROM call WHERE run = 1")
    assert stored >= 1000
    # scope's handler noted the signal on the way: the service knows how it ended.
    assert query("SELECT ended_by, exit_status FROM process") == [("SIGTERM", 143)]
    assert query("SELECT exit_status, problems FROM run") == [(143, [])]
    assert_no_count_is_negative(query)


@pytest.mark.parametrize("first", [3, 0])
def test_closing_every_descriptor_does_not_hurt_the_program(write, project, query, first):
    write(
        "daemon.py",
        f"""
import os, sys

def work(n):
    return n + 1

for i in range(500):
    work(i)
sys.stdout.flush()
os.closerange({first}, 1024)
for i in range(500):
    work(i)
with open("done.txt", "w") as f:
    f.write("done")
""",
    )
    recorded = record(project, "daemon.py")
    assert recorded.returncode == plain(project, "daemon.py").returncode == 0
    assert (project / "done.txt").read_text() == "done"
    wait_for_service_to_leave(project)
    ((stored,),) = query("SELECT count(*) FROM call WHERE run = 1")
    assert stored == 1000


def test_a_forked_child_and_a_subprocess_record_into_the_same_run(write, project, query):
    write(
        "family.py",
        """
import os, subprocess, sys, warnings

warnings.simplefilter("error")  # a fork warning would end the program

def work(n):
    return n + 1

for i in range(10):
    work(i)
pid = os.fork()
if pid == 0:
    for i in range(20):
        work(i)
    os._exit(3)
_, status = os.waitpid(pid, 0)
subprocess.run([sys.executable, "child.py"], check=True)
print(os.waitstatus_to_exitcode(status))
""",
    )
    write("child.py", "def job(n):\n    return n * 2\n\nfor i in range(30):\n    job(i)\n")
    result = record(project, "family.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "3\n" and result.stderr == ""
    wait_for_service_to_leave(project)
    rows = query(
        "SELECT p.number, p.exit_status, count(c.id) FROM process p LEFT JOIN call c "
        "ON c.run = p.run AND c.id >> 52 = p.number GROUP BY ALL ORDER BY p.number"
    )
    assert [(n, calls) for n, _, calls in rows] == [(0, 10), (1, 20), (2, 30)]
    assert rows[1][1] == 3  # the forked child's os._exit status
    ((runs,),) = query("SELECT count(*) FROM run")
    assert runs == 1


def test_programs_recording_into_one_file_at_once_get_a_run_each(write, project, query):
    write(
        "one.py",
        "import sys, time\n\ndef work(n):\n    return n + 1\n\n"
        "for i in range(int(sys.argv[1])):\n    work(i)\ntime.sleep(0.3)\n",
    )
    processes = [start(project, "one.py", str(100 * (k + 1))) for k in range(6)]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    wait_for_service_to_leave(project)
    rows = query(
        "SELECT r.status, count(c.id) FROM run r LEFT JOIN call c ON c.run = r.id "
        "GROUP BY r.id, r.status ORDER BY 2"
    )
    assert rows == [("complete", 100 * (k + 1)) for k in range(6)]


def test_scope_run_returns_with_its_run_stored(write, project, scope):
    write("quick.py", "def f():\n    return 1\n\nfor i in range(5000):\n    f()\n")
    assert record(project, "quick.py").returncode == 0
    # No waiting for the service: the run was stored before scope run returned.
    status = subprocess.run(
        [sys.executable, "-c", STATUS_WHILE_THE_SERVICE_LINGERS],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert status.stdout.strip() in ("complete 5000", "in use")


#: reads the run's row as soon as the file can be opened
STATUS_WHILE_THE_SERVICE_LINGERS = """
import duckdb, time
for _ in range(400):
    try:
        con = duckdb.connect(".scope/scope.duckdb", read_only=True)
    except duckdb.Error:
        time.sleep(0.01)
        continue
    print(*con.execute("SELECT status, calls_stored FROM run").fetchone())
    break
else:
    print("in use")
"""


def test_the_live_folder_and_socket_are_private(write, project):
    write(
        "look.py",
        """
import json, os, stat
root = os.path.abspath(".scope/scope.duckdb.live")
print(json.dumps({name: stat.S_IMODE(os.lstat(os.path.join(root, name)).st_mode)
                  for name in os.listdir(root)}))
""",
    )
    result = record(project, "look.py")
    assert result.returncode == 0, result.stderr
    modes = json.loads(result.stdout)
    own = [name for name in modes if "-" in name]
    assert len(own) == 1 and modes[own[0]] == 0o700
    assert modes.get("service.sock", 0o600) == 0o600  # may not be up yet
    assert os.stat(project / ".scope" / "scope.duckdb.live").st_mode & 0o777 == 0o700


def test_a_killed_service_is_replaced_and_nothing_is_lost(write, project, query, scope):
    write(
        "phases.py",
        """
import sys

def work(n):
    return n + 1

for i in range(50_000):
    work(i)
print("first", flush=True)
sys.stdin.readline()
for i in range(20_000):
    work(i)
""",
    )
    process = start(project, "--max-calls-per-function", "0", "phases.py")
    assert process.stdout is not None and process.stdin is not None
    assert process.stdout.readline() == "first\n"
    service = service_pid(project)
    live_root = project / ".scope" / "scope.duckdb.live"
    deadline = time.monotonic() + 30
    while not list(live_root.glob("*/assigned.json")):  # the service took the process up
        assert time.monotonic() < deadline, "the service never took the program up"
        time.sleep(0.01)
    os.kill(service, signal.SIGKILL)
    while (
        os.path.exists(f"/proc/{service}") and "Z" not in Path(f"/proc/{service}/stat").read_text()
    ):
        time.sleep(0.01)
    out, err = process.communicate("go\n", timeout=120)
    assert process.returncode == 0 and (out, err) == ("", "")
    wait_for_service_to_leave(project)
    assert query("SELECT status, calls_stored FROM run") == [("complete", 70_000)]
    ((stored, distinct),) = query("SELECT count(*), count(DISTINCT id) FROM call")
    assert stored == distinct == 70_000
    # scope status says the process was taken over, and how far behind its services were.
    status = scope("status", "--json")
    assert status.returncode == 0, status.stderr
    health = json.loads(status.stdout)
    assert health["recoveries"] == 1
    ((process),) = health["processes"]
    assert 1 <= process["lag_p50"] <= process["lag_p99"] <= 70_000


def service_pid(project: Path, timeout: float = 30.0) -> int:
    """The pid of the service storing the project's recording, once it holds its lock."""
    lock = project / ".scope" / "scope.duckdb.live" / "service.lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = lock.read_text()
        except FileNotFoundError:
            text = ""
        if text.strip() and not lock_free(lock):
            return int(text)
        time.sleep(0.02)
    raise AssertionError("no service took the recording")


def test_queries_are_answered_while_the_program_records(write, project, scope):
    write(
        "waits.py",
        """
import sys

def work(n):
    return n + 1

for i in range(3000):
    work(i)
print("recorded", flush=True)
sys.stdin.readline()
""",
    )
    process = start(project, "waits.py")
    assert process.stdout is not None and process.stdout.readline() == "recorded\n"
    try:
        count = "SELECT count(*) AS calls FROM call"
        deadline = time.monotonic() + 60
        while True:  # the service stores what the rings hold within milliseconds
            answer = scope("sql", count, "--json")
            assert answer.returncode == 0, answer.stderr
            if json.loads(answer.stdout) == [{"calls": 3000}] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert json.loads(answer.stdout) == [{"calls": 3000}]
        runs = json.loads(scope("runs", "--json").stdout)
        assert [run["status"] for run in runs] == ["running"]
        # What a query changes is rolled back: the recording stays as it was written.
        scope("sql", "DELETE FROM call")
        assert json.loads(scope("sql", count, "--json").stdout) == [{"calls": 3000}]
        bad = scope("sql", "SELECT nothing FROM nowhere")
        assert bad.returncode == 1 and "nowhere" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        process.communicate("\n", timeout=60)
    assert process.returncode == 0
    assert json.loads(scope("sql", count, "--json").stdout) == [{"calls": 3000}]


ASKS_THE_SERVICE = """
import os, sys
from scope.query.remote import RemoteError, ServiceConnection
try:
    print("answered", ServiceConnection(sys.argv[1]).execute("SELECT 1").fetchall()[0][0])
except RemoteError as exc:
    print("refused", os.getuid(), exc)
"""


def waiting_service(project: Path, write) -> subprocess.Popen[str]:
    """A recorded program waiting for a line on its stdin, once its service answers
    queries (its socket may come a moment after the program's first output)."""
    write("waits.py", "import sys\n\ndef work():\n    return 1\n\nwork()\nsys.stdin.readline()\n")
    process = start(project, "waits.py")
    db = str(project / ".scope" / "scope.duckdb")
    deadline = time.monotonic() + 60
    while True:
        asked = subprocess.run(
            [sys.executable, "-c", ASKS_THE_SERVICE, db],
            env=clean_env(),
            capture_output=True,
            text=True,
        )
        if asked.stdout.split() == ["answered", "1"]:
            return process
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the service never answered: {asked.stdout}{asked.stderr}")
        time.sleep(0.05)


def test_a_connection_from_another_user_is_refused(write, project):
    if os.getuid() != 0 or not shutil.which("setpriv"):
        unavailable("needs root and setpriv to ask as another user", "SCOPE_TEST_REQUIRE_SETPRIV")
    process = waiting_service(project, write)
    try:
        # User nobody, allowed past file permissions (CAP_DAC_OVERRIDE): only the
        # service's own check of the peer's uid stands in the way.
        as_nobody = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "--inh-caps=+dac_override", "--ambient-caps=+dac_override",
             sys.executable, "-c", ASKS_THE_SERVICE, str(project / ".scope" / "scope.duckdb")],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert as_nobody.stdout.split()[:2] == ["refused", "65534"], as_nobody.stderr
    finally:
        process.communicate("\n", timeout=60)
    assert process.returncode == 0


def test_a_folder_that_is_not_a_producers_does_not_stop_the_service(write, project, query):
    root = project / ".scope" / "scope.duckdb.live"
    root.mkdir(parents=True, mode=0o700)
    bogus = root / "1-bogus"
    bogus.mkdir(mode=0o700)
    note = {"db": str(project / ".scope" / "scope.duckdb"), "run_key": "x", "top": True, "pid": 1}
    (bogus / "run.json").write_text(json.dumps(note))  # says nothing of its run
    write("ok.py", "def f():\n    return 1\n\nfor i in range(100):\n    f()\n")
    result = record(project, "ok.py")
    assert (result.returncode, result.stderr) == (0, "")
    assert query("SELECT status, calls_stored FROM run") == [("complete", 100)]
    assert bogus.exists()  # not the service's to remove


def test_a_producer_is_running_while_its_process_lives(tmp_path):
    db = str(tmp_path / "rec.duckdb")
    assert not live.producer_running(db)  # no live folder
    own = live.make_process_folder(db, 0, os.getpid())
    assert live.producer_running(db)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout  # fmt: skip
    live.remove_process_folder(own)
    live.make_process_folder(db, 0, int(dead))
    assert not live.producer_running(db)  # its pid is gone (or taken by another start)


def test_a_query_waits_for_a_recording_its_service_is_making(tmp_path):
    db = str(tmp_path / "rec.duckdb")
    with pytest.raises(RecordingError, match="no recording at"):
        Recording(db)  # nothing recording into it: said at once
    live.make_process_folder(db, 0, os.getpid())  # a program has begun recording into it

    def make_it() -> None:
        time.sleep(0.5)
        database.open_for_writing(db).close()

    maker = threading.Thread(target=make_it)
    maker.start()
    try:
        with Recording(db) as recording:
            assert recording.runs() == []
    finally:
        maker.join()


HOLDS_THE_FILE = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1], read_only=True)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_the_recording(project: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the project's recording read-only for ``seconds``."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDS_THE_FILE, ".scope/scope.duckdb", str(seconds)],
        cwd=project,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
    return holder


def test_a_recording_a_query_holds_is_stored_once_it_lets_go(write, project, query):
    write("ten.py", "def f():\n    return 1\n\nfor i in range(10):\n    f()\nprint('ok')\n")
    assert record(project, "ten.py").returncode == 0
    wait_for_service_to_leave(project)
    holder = hold_the_recording(project, 4)  # longer than the program runs
    try:
        second = record(project, "ten.py")
    finally:
        holder.wait(timeout=60)
    assert (second.returncode, second.stdout, second.stderr) == (0, "ok\n", "")
    assert query("SELECT id, status, calls_stored FROM run ORDER BY id") == [
        (1, "complete", 10),
        (2, "complete", 10),
    ]


def test_a_recording_held_too_long_is_kept_for_the_next_service(write, project, query):
    write("ten.py", "def f():\n    return 1\n\nfor i in range(10):\n    f()\nprint('ok')\n")
    assert record(project, "ten.py").returncode == 0
    wait_for_service_to_leave(project)
    holder = hold_the_recording(project, 3)
    try:
        held = record(project, "ten.py", env={**service_env(), "SCOPE_SERVICE_READER_WAIT": "0.3"})
    finally:
        holder.wait(timeout=60)
    # The program is not held up; what it recorded waits in its folder.
    assert (held.returncode, held.stdout) == (0, "ok\n")
    assert "did not confirm that it stored this run" in held.stderr
    assert "in use by another process" in held.stderr and "Traceback" not in held.stderr
    third = record(project, "ten.py")
    assert (third.returncode, third.stderr) == (0, "")
    wait_for_service_to_leave(project)
    assert query("SELECT status, calls_stored FROM run ORDER BY id") == [("complete", 10)] * 3


#: a service killed between storing its first batch and freeing the rings' space;
#: with "ended", it first waits until the program has ended (so it has read the
#: program's end from its log when it dies); with "logged", killed between storing
#: the events of the program's log and noting how far it read it
DIES_BEFORE_IT_FREES = """
import glob, os, signal, sys, time
from scope import native
from scope.storage import service

def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[2] == "logged":  # after storing the log's events, before noting it in the folder
    note = service.live.write_assignment
    def note_or_die(folder, run, number, log):
        if log:
            with open(os.path.join(folder, "log"), "rb") as f:
                if b'"event"' in f.read(log):
                    die()
        note(folder, run, number, log)

    service.live.write_assignment = note_or_die
else:
    native.Reader.commit = die
if sys.argv[2] == "ended":
    scan = service.Service._scan

    def scan_once_ended(self):
        while not any(b'"end"' in open(log, "rb").read()
                      for log in glob.glob(os.path.join(self.root, "*", "log"))):
            time.sleep(0.01)
        scan(self)

    service.Service._scan = scan_once_ended
print("serving", flush=True)
sys.exit(service.main([sys.argv[1]]))
"""


@pytest.mark.parametrize("when", ["running", "ended", "logged"])
def test_what_a_killed_service_stored_is_not_stored_again(write, project, query, when):
    write(
        "many.py",
        "def work(n):\n    return n + 1\n\nfor i in range(30_000):\n    work(i)\n"
        "print('ok')\nraise ValueError('last')\n",  # an event in the program's log
    )
    db = project / ".scope" / "scope.duckdb"
    os.makedirs(live.live_root(str(db)), mode=0o700)
    killed = subprocess.Popen(
        [sys.executable, "-c", DIES_BEFORE_IT_FREES, str(db), when],
        env=clean_env({"SCOPE_SERVICE_LINGER": "60"}),  # it waits for the program
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdout is not None and killed.stdout.readline() == "serving\n"
    service_pid(project)  # it holds the recording: the program's hello finds it
    result = record(project, "--max-calls-per-function", "0", "many.py")
    assert killed.wait(timeout=60) == -signal.SIGKILL  # it did store, and die
    assert (result.returncode, result.stdout) == (1, "ok\n")
    assert result.stderr.endswith("ValueError: last\n"), result.stderr
    assert "scope:" not in result.stderr
    wait_for_service_to_leave(project)
    assert query("SELECT status, calls_stored FROM run") == [("complete", 30_000)]
    ((stored, distinct),) = query("SELECT count(*), count(DISTINCT id) FROM call")
    assert stored == distinct == 30_000
    ((events, distinct_events, uncaught),) = query(
        "SELECT count(*), count(DISTINCT (time_ns, kind, detail)), "
        "count(*) FILTER (kind = 'uncaught exception') FROM event"
    )
    assert events == distinct_events and uncaught == 1
    assert query("SELECT count(*) FROM service_drained") == [(0,)]


#: how a parent starts a child it does not wait for: its interpreter starts at
#: once (the service is still there), or after the service has left
LATE_CHILDREN = {
    "at once": '[sys.executable, "child.py"]',
    "after the service left": '["sh", "-c", "sleep 2.5; exec \\"$0\\" child.py", sys.executable]',
}


@pytest.mark.parametrize("when", list(LATE_CHILDREN))
def test_a_child_that_outlives_its_parent_is_stored_in_its_run(write, project, query, when):
    write(
        "parent.py",
        f"""
import subprocess, sys

def work(n):
    return n + 1

for i in range(50):
    work(i)
subprocess.Popen({LATE_CHILDREN[when]})  # not waited for
print("parent done")
""",
    )
    write(
        "child.py",
        """
import time

def work(n):
    return n + 1

time.sleep(1.0)  # its parent is stored and gone by now
for i in range(100):
    work(i)
open("child-done", "w").close()
""",
    )
    result = record(project, "--max-calls-per-function", "10", "parent.py")
    assert (result.returncode, result.stdout, result.stderr) == (0, "parent done\n", "")
    deadline = time.monotonic() + 60
    while not (project / "child-done").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    wait_for_service_to_leave(project)
    # Every call of work is stored or summed (its budget spent), in one run.
    ((stored, summed),) = query(
        "SELECT (SELECT count(*) FROM call c WHERE c.function = f.id), f.calls_summed "
        "FROM function f WHERE f.qualname = 'work'"
    )
    assert stored + summed == 150 and stored < 150
    ((run, calls_stored),) = query("SELECT status, calls_stored FROM run")
    assert (run, calls_stored) == ("complete", stored)
    assert query("SELECT number, exit_status FROM process ORDER BY number") == [(0, 0), (1, 0)]


IMPORTS_AND_CALLS = """
import importlib, sys
sys.path.insert(0, "modules")
for i in range(150):
    importlib.import_module(f"m{i}").f(i)
"""


def test_values_are_named_when_their_module_came_while_the_service_drained(write, project, query):
    # Each module is planned (logged) just before its function runs: a service that
    # read the log before the plan came, then drained the call, once named no value.
    for i in range(150):
        write(f"modules/m{i}.py", "def f(x):\n    return x\n")
    write("imports.py", IMPORTS_AND_CALLS)
    for _ in range(3):
        assert record(project, "--level", "args", "imports.py").returncode == 0
    (unnamed,) = query("SELECT count(*) FROM value WHERE role = 'argument' AND name IS NULL")
    assert unnamed == (0,)
    assert query("SELECT count(*) FROM value WHERE role = 'argument'") == [(450,)]


@pytest.mark.parametrize("change", ["replaced", "written"])
def test_a_file_changed_while_the_service_lingers_is_checked_again(write, project, change):
    # The service answers a new run's check at once for the file as it left it;
    # a file anyone else has touched since is opened and checked again.
    write("ok.py", "print('ran')\n")
    lingering = {**service_env(), "SCOPE_SERVICE_LINGER": "5"}
    first = record(project, "ok.py", env=lingering)
    assert first.returncode == 0 and first.stdout == "ran\n", first.stderr
    db = project / ".scope" / "scope.duckdb"
    if change == "replaced":
        other = project / "other.duckdb"
        con = duckdb.connect(str(other))
        con.execute("CREATE TABLE t (x INTEGER)")
        con.close()
        os.replace(other, db)
    else:
        con = duckdb.connect(str(db))
        con.execute("DROP TABLE meta")
        con.close()
    second = record(project, "ok.py", env=lingering)
    assert second.returncode == 1 and second.stdout == "", second  # the program never ran
    assert "not a scope recording" in second.stderr
    wait_for_service_to_leave(project, stored=False)


@pytest.mark.parametrize("removed", [".scope", ".scope/scope.duckdb.live"])
def test_a_run_after_the_recording_was_removed_under_a_lingering_service(
    write, project, query, removed
):
    # `rm -rf .scope` while a service lingers: the old service must leave the new
    # live folder (socket, lock, producer folders) to the new run's service.
    write("ok.py", "print('ran')\n")
    lingering = {**service_env(), "SCOPE_SERVICE_LINGER": "3"}
    assert record(project, "ok.py", env=lingering).returncode == 0
    old_pid = service_pid(project)
    shutil.rmtree(project / removed)
    second = record(project, "ok.py", env=lingering)
    assert second.returncode == 0 and second.stdout == "ran\n", second.stderr
    assert second.stderr == "", second.stderr
    assert service_pid(project) != old_pid
    wait_for_service_to_leave(project)
    expected = 1 if removed == ".scope" else 2
    assert query("SELECT count(*) FROM run WHERE status = 'complete'") == [(expected,)]


def _file_is_open_in_the_service(db: str, want: bool, timeout: float = 30.0) -> bool:
    """Wait until ``db``'s service has the file open for writing or, with ``want``
    false, has let go of it; whether it did in ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = live.ask_service(db, {"op": "hello"})
        if answer is not None and answer.get("writing") is want:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def test_a_lingering_service_opens_the_file_as_a_run_starts_and_lets_go_if_none_came(
    write, project
):
    # scope run says hello before it imports the rest of scope, so the service opens
    # the file meanwhile; a run that never comes (its program could not start)
    # does not keep it from other processes.
    write("ok.py", "print('ran')\n")
    lingering = {**service_env(), "SCOPE_SERVICE_LINGER": "4"}
    assert record(project, "ok.py", env=lingering).returncode == 0
    db = str(project / ".scope" / "scope.duckdb")
    assert _file_is_open_in_the_service(db, want=False, timeout=0)  # stored, let go of
    assert live.ask_service(db, {"op": "hello", "open": True}) == {
        "ok": True,
        "format": native.SHARED_FORMAT,
        "writing": False,
    }
    assert _file_is_open_in_the_service(db, want=True)
    assert _file_is_open_in_the_service(db, want=False)  # half its linger later
    other = duckdb.connect(db, read_only=True)
    assert other.execute("SELECT count(*) FROM run").fetchone() == (1,)
    other.close()
    wait_for_service_to_leave(project)


#: asks the recording in the cwd a question; says how many rows, and whether this
#: process loaded DuckDB to answer (it did not if the service answered)
ASKS = """
import json, sys
from scope.query.api import Recording
with Recording(".scope/scope.duckdb") as recording:
    top = [(f.qualname, f.calls) for f in recording.function_stats()]
    ids = recording.sql(sys.argv[1]).rows
loaded = "duckdb" in sys.modules or "_duckdb" in sys.modules  # see storage/engine.py
print(json.dumps({"top": top, "rows": len(ids), "duckdb": loaded}))
"""


def ask(project: Path, sql: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", ASKS, sql], cwd=project, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.mark.parametrize("rows", [100, 30_000], ids=["a few rows", "many rows"])
def test_a_lingering_service_answers_short_queries_and_declines_long_ones(
    write, project, tmp_path, rows
):
    # Right after a run, its service has DuckDB loaded and answers a short query
    # sooner than the query's process could load DuckDB; an answer of many rows it
    # declines, and the query opens the file itself.  Both answer as the file does.
    write("calls.py", f"def f(n):\n    return n\n\nfor i in range({rows}):\n    f(i)\n")
    lingering = {**service_env(), "SCOPE_SERVICE_LINGER": "5"}
    assert record(project, "calls.py", env=lingering).returncode == 0
    db = project / ".scope" / "scope.duckdb"
    lock = project / ".scope" / "scope.duckdb.live" / "service.lock"
    assert _file_is_open_in_the_service(str(db), want=False, timeout=0)
    answered = ask(project, "SELECT id FROM call")
    assert not lock_free(lock)  # it lingered all along: it answered, or declined
    assert answered["duckdb"] == (rows > 10_000)
    copy = tmp_path / "copy.duckdb"  # no service for this one: read here
    shutil.copy(db, copy)
    with Recording(str(copy)) as direct:
        top = [[f.qualname, f.calls] for f in direct.function_stats()]
        (count,) = direct.sql("SELECT count(*) FROM call").rows[0]
    assert answered["top"] == top and ["f", rows] in top
    assert answered["rows"] == count == rows
    wait_for_service_to_leave(project)


def test_a_parquet_export_a_service_answers_is_written_where_it_was_asked(write, project, scope):
    write("ok.py", "def f():\n    return 1\n\nf()\n")
    lingering = {**service_env(), "SCOPE_SERVICE_LINGER": "30"}
    assert record(project, "ok.py", env=lingering).returncode == 0
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scope",
            "export",
            "--db",
            "../.scope/scope.duckdb",
            "--format",
            "parquet",
            "-o",
            "out",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    assert (elsewhere / "out" / "call.parquet").is_file()
    assert not (project / "out").exists()


@pytest.mark.parametrize("service", ["1", "0"], ids=["by the service", "in the program"])
def test_scope_status_says_how_many_records_waited_for_the_service(write, project, scope, service):
    write("calls.py", "def work(n):\n    return n + 1\n\nfor i in range(100_000):\n    work(i)\n")
    result = record(
        project,
        "--max-calls-per-function",
        "0",
        "calls.py",
        env=clean_env({"SCOPE_SERVICE": service}),
    )
    assert result.returncode == 0, result.stderr
    status = scope("status", "--json")
    assert status.returncode == 0, status.stderr
    health = json.loads(status.stdout)
    ((process),) = health["processes"]
    if service == "1":
        assert 1 <= process["lag_p50"] <= process["lag_p99"] <= 100_000
    else:  # no service: nothing waited for one
        assert process["lag_p50"] is None and process["lag_p99"] is None
    assert health["recoveries"] == 0
    shown = scope("status")
    assert "waiting p99" in shown.stdout and "taken over from a stopped service" in shown.stdout


def test_a_run_stops_waiting_for_a_service_that_refused_the_recording(tmp_path, monkeypatch):
    # A lingering service can refuse a changed file and leave before the run's
    # check reaches it; the run then reads the refusal instead of waiting for a
    # service that will not come (it waited 10 s).  The wait is made endless here:
    # only the refusal can end it.
    from scope.capture import service_link

    monkeypatch.setattr(service_link, "CONNECT_TIMEOUT", 1e9)
    db = str(tmp_path / ".scope" / "scope.duckdb")
    link = service_link.ServiceLink(db, "key", True, {}, ())
    os.makedirs(live.live_root(db))
    answers: list[object] = []
    asking = threading.Thread(
        target=lambda: answers.append(link._request({"op": "check"}, None)), daemon=True
    )
    asking.start()
    time.sleep(0.2)
    with open(os.path.join(live.live_root(db), live.REFUSAL), "w") as refusal:
        refusal.write("not-a-recording\nit is not one\n")
    asking.join(timeout=60)
    assert not asking.is_alive() and answers == [None]
    assert link.refusal() == "it is not one"


def test_records_waiting_are_never_more_than_the_rings_hold(write, project, scope):
    # The lag is what waited in the rings when the service drained a batch, not
    # everything it drained in one go: with a small ring, a fast program keeps
    # it full, and no more than a ring's worth can ever have waited.
    # The measure before counted each drain loop's whole take: 283,616 "waiting" here.
    ring = 4096
    write("calls.py", "def work(n):\n    return n + 1\n\nfor i in range(300_000):\n    work(i)\n")
    env = clean_env({"SCOPE_SERVICE": "1", "SCOPE_RING_SIZE": str(ring)})
    result = record(project, "--max-calls-per-function", "0", "calls.py", env=env)
    assert result.returncode == 0, result.stderr
    status = scope("status", "--json")
    assert status.returncode == 0, status.stderr
    ((process),) = json.loads(status.stdout)["processes"]
    assert 1 <= process["lag_p50"] <= process["lag_p99"] <= ring


LEADER_EXITS = """
import ctypes, threading, time

def work(n):
    return n + 1

def worker():
    time.sleep(0.5)
    for i in range(20_000):
        work(i)
    print("worker done", flush=True)

threading.Thread(target=worker).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def test_a_process_whose_main_thread_ended_first_is_stored_once_it_ends(write, project, query):
    # Its main thread is a zombie while a worker runs on: the process has not ended.
    write("leader.py", LEADER_EXITS)
    recorded = record(project, "--max-calls-per-function", "0", "leader.py")
    assert (recorded.returncode, recorded.stdout) == (0, "worker done\n"), recorded.stderr
    wait_for_service_to_leave(project)
    ((calls,),) = query(
        "SELECT count(*) FROM call c JOIN function f ON f.run = c.run AND f.id = c.function "
        "WHERE f.qualname = 'work' AND c.outcome = 'returned'"
    )
    assert calls == 20_000


class OldService:
    """Stands in for another scope version's recording service: it holds the
    recording's service lock and says hello, with no ring format of its own."""

    def __init__(self, project: Path) -> None:
        db = str(project / ".scope" / "scope.duckdb")
        os.makedirs(live.live_root(db), mode=0o700)
        self.lock = os.open(os.path.join(live.live_root(db), live.LOCK), os.O_RDWR | os.O_CREAT)
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.path = live.service_socket(db)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with live.socket_address(self.path) as address:
            self.listener.bind(address)
        self.listener.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection, connection.makefile("rb") as stream:
                while live.receive(stream) is not None:
                    live.send(connection, {"ok": True})

    def leave(self) -> None:
        os.unlink(self.path)
        self.listener.close()
        os.close(self.lock)  # lets go of the lock: a waiting service takes it


def test_a_run_while_another_scopes_service_lingers_is_stored_after_it(write, project, query):
    write(
        "calls.py",
        "def work(n):\n    return n + 1\n\nfor i in range(1000):\n    work(i)\nprint('done')\n",
    )
    old = OldService(project)
    try:
        result = record(project, "calls.py")  # it does not wait for the old one
    finally:
        old.leave()
    assert (result.returncode, result.stdout) == (0, "done\n")
    assert "another scope version" in result.stderr
    wait_for_service_to_leave(project)
    ((calls,),) = query("SELECT count(*) FROM call")
    assert calls == 1000


def test_scope_recover_has_what_a_stopped_service_left_stored(write, project, query, scope):
    write(
        "busy.py",
        "import sys\n\ndef work(n):\n    return n + 1\n\nfor i in range(20_000):\n    work(i)\n"
        "print('ready', flush=True)\nsys.stdin.readline()\n",
    )
    process = start(project, "--max-calls-per-function", "0", "busy.py")
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    service = service_pid(project)
    os.kill(service, signal.SIGKILL)  # the service, then its program: nothing is left to store
    process.kill()
    process.communicate(timeout=30)
    while (
        os.path.exists(f"/proc/{service}") and "Z" not in Path(f"/proc/{service}/stat").read_text()
    ):
        time.sleep(0.01)
    recovered = scope("recover")
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout == f"process {process.pid}: stored by the recording service\n"
    ((calls,),) = query("SELECT count(*) FROM call")
    assert calls == 20_000
    again = scope("recover")
    assert again.stdout == "nothing to recover\n"

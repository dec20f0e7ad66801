"""Opening the recording ahead (``scope.storage.ahead``, ``scope.launch.open_ahead``).

A reading command starts opening its recording on a thread before it loads the
rest of itself.  What it prints must be what it printed without that; the
connection must be the one the command then uses; and a connection nobody takes
must let go of the file, since a read-only connection keeps every writer out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from scope.storage import ahead

from scope.launch import READING_COMMANDS, open_ahead

from . import test_query_startup
from .conftest import clean_env, run, wait_for_service_to_leave
from .test_query_startup import QUERIES

#: a project with a recorded run (args level) and a recorded pytest session
recording = test_query_startup.recording

#: runs the command line in argv as ``scope`` does, with opening ahead on or off
#: (argv[1]), and notes at exit whether the command took a connection opened ahead
#: (in the file SCOPE_TEST_AHEAD names)
NOTED = """
import atexit, json, os, sys
from scope.storage import ahead

taken = []
if sys.argv[1] == "off":
    ahead.start = lambda path: None
original = ahead.take

def take(path):
    con = original(path)
    taken.append(con is not None)
    return con

ahead.take = take
atexit.register(lambda: open(os.environ["SCOPE_TEST_AHEAD"], "w").write(json.dumps(taken)))
from scope.launch import main
main(sys.argv[2:])
"""


def scope_noting(project: Path, switch: str, args: list[str]) -> tuple[str, str, list[bool]]:
    """``scope ARGS`` with opening ahead ``on`` or ``off``: its output, and what each
    opening of the recording took from ahead (True: a connection opened ahead)."""
    noted = project / "ahead.json"
    noted.unlink(missing_ok=True)
    result = run(
        [sys.executable, "-c", NOTED, switch, *args],
        project,
        env=clean_env({"SCOPE_TEST_AHEAD": str(noted)}),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr, json.loads(noted.read_text())


def writable(path: Path) -> bool:
    """Whether another process can open ``path`` for writing now (no one holds it)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()", path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return probe.returncode == 0


@pytest.mark.parametrize("command", sorted(READING_COMMANDS))
def test_a_reading_command_answers_the_same_from_the_file_opened_ahead(
    recording: Path, command: str
) -> None:
    args = QUERIES[command]
    with_ahead, with_ahead_err, taken = scope_noting(recording, "on", args)
    without, without_err, not_taken = scope_noting(recording, "off", args)
    assert (with_ahead, with_ahead_err) == (without, without_err)
    assert taken[:1] == [True] and not any(not_taken)


def test_every_reading_command_is_a_query() -> None:
    # Only a command that reads one recording and writes nothing may be opened ahead.
    assert set(QUERIES) - {"export", "view"} >= READING_COMMANDS


@pytest.mark.parametrize(
    "words", [["top", "--help"], ["top", "-h"], ["top", "--db"], ["run", "app.py"], ["plan"], []]
)
def test_nothing_is_opened_for(recording: Path, words: list[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Help, --db without its value, and commands that write or read no recording.
    monkeypatch.chdir(recording)
    open_ahead(words)
    assert ahead.pending() is None


@pytest.mark.parametrize("form", ["separate", "joined"])
def test_the_file_db_names_is_opened_ahead(recording: Path, tmp_path: Path, form: str) -> None:
    elsewhere = tmp_path / "copy.duckdb"
    elsewhere.write_bytes((recording / ".scope" / "scope.duckdb").read_bytes())
    words = ["--db", str(elsewhere)] if form == "separate" else [f"--db={elsewhere}"]
    open_ahead(["top", *words])
    con = ahead.take(str(elsewhere))
    assert con is not None
    try:
        assert con.execute("SELECT count(*) FROM run").fetchone() == (2,)
    finally:
        con.close()


def test_a_connection_to_another_file_is_closed_when_taken(recording: Path) -> None:
    path = recording / ".scope" / "scope.duckdb"
    ahead.start(str(path))
    assert ahead.take(str(path) + ".other") is None
    assert writable(path)


def test_a_connection_nobody_takes_lets_go_of_the_file(recording: Path) -> None:
    path = recording / ".scope" / "scope.duckdb"
    ahead.start(str(path))
    ahead.discard()
    assert writable(path)
    assert ahead.take(str(path)) is None


#: ``scope top --by nothing`` (a usage error, after the file was opened ahead) as
#: ``scope`` runs it; at the very end of exit (registered first, so run last) it
#: notes whether the connection opened ahead was closed by then
CLOSED_AT_EXIT = """
import atexit, json, os, sys
from scope.storage import ahead

opened = []

def note():
    try:
        opened[0].execute("SELECT 1")
        state = "open"
    except Exception as exc:
        state = type(exc).__name__
    open(os.environ["SCOPE_TEST_AHEAD"], "w").write(state)

atexit.register(note)
original = ahead._Opening._open

def keep(self):
    original(self)
    opened.append(self.con)

ahead._Opening._open = keep
from scope.launch import main
main(["top", "--by", "nothing"])
"""


def test_a_command_that_fails_closes_what_it_opened_ahead_at_exit(recording: Path) -> None:
    # The process's end would release the file anyway; what is checked here is that
    # scope closes it itself, as a command that runs on after failing would need.
    noted = recording / "ahead-exit.txt"
    refused = run(
        [sys.executable, "-c", CLOSED_AT_EXIT],
        recording,
        env=clean_env({"SCOPE_TEST_AHEAD": str(noted)}),
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert noted.read_text() == "ConnectionException"


def after_at_most(seconds: float, work: object) -> bool:
    """Whether ``work()`` returned within ``seconds`` (a thread left blocked otherwise)."""
    done = threading.Event()

    def body() -> None:
        work()  # type: ignore[operator]
        done.set()

    threading.Thread(target=body, daemon=True).start()
    return done.wait(seconds)


def test_nothing_but_a_regular_file_is_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.duckdb"
    os.mkfifo(fifo)
    # Opening a fifo blocks until a writer comes: none ever does here.
    assert after_at_most(30, lambda: ahead.start(str(fifo)))
    assert ahead.pending() is None
    for path in (tmp_path, tmp_path / "missing.duckdb"):
        ahead.start(str(path))
        assert ahead.pending() is None


def test_a_name_duckdb_cannot_take_is_left_to_the_command(tmp_path: Path) -> None:
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/r\xff.duckdb")
    Path(name).write_bytes(b"")
    ahead.start(name)
    assert ahead.pending() is None


def test_a_file_a_recording_service_answers_for_is_not_opened(recording: Path) -> None:
    from scope import live

    path = str(recording / ".scope" / "scope.duckdb")
    socket = Path(live.service_socket(path))
    socket.parent.mkdir(parents=True, exist_ok=True)
    socket.write_text("")  # where the service would listen: its query goes there
    try:
        ahead.start(path)
        assert ahead.pending() is None
    finally:
        socket.unlink()


#: a query that opened the file ahead, then (as if its imports took long) waits for
#: the file named in argv[1] before it goes on: meanwhile a recording service starts
SLOW_QUERY = """
import os, sys, time
from scope import launch

launch.open_ahead(["runs"])
open(sys.argv[1] + ".opened", "w").close()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
launch.main(["runs"])
"""


def test_a_service_that_starts_meanwhile_is_not_kept_out(project: Path, write) -> None:  # type: ignore[no-untyped-def]
    # A service listens before it opens the file, and opens it before it answers: a
    # query that asked it while still holding the file opened ahead waited on the
    # service, which waited on the query (10 s, then the run was left unstored).
    from scope import live

    write("app.py", "def f():\n    return 1\n\nf()\n")
    env = {**clean_env(), "SCOPE_SERVICE": "1"}
    assert run([sys.executable, "-m", "scope", "run", "app.py"], project, env=env).returncode == 0
    wait_for_service_to_leave(project)
    go = project / "go"
    query = subprocess.Popen(
        [sys.executable, "-c", SLOW_QUERY, str(go)],
        cwd=project,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: Path(str(go) + ".opened").exists(), "the query to open the file ahead")
        assert query.poll() is None  # holding the file it opened ahead
        recorded = subprocess.Popen(
            [sys.executable, "-m", "scope", "run", "app.py"],
            cwd=project,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        socket = live.service_socket(str(project / ".scope" / "scope.duckdb"))
        wait_for(lambda: os.path.exists(socket), "the recording service to listen")
        go.write_text("")
        _, run_err = recorded.communicate(timeout=120)
        _, query_err = query.communicate(timeout=120)
    finally:
        go.write_text("")
        query.kill()
    assert recorded.returncode == 0 and "did not confirm" not in run_err, run_err
    assert query.returncode == 0, query_err
    wait_for_service_to_leave(project)
    runs = run([sys.executable, "-m", "scope", "runs", "--json"], project)
    assert [r["id"] for r in json.loads(runs.stdout)] == [1, 2], runs.stderr


def wait_for(condition, what: str, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it holds; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.02)

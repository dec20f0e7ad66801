"""A recording survives its process being killed: every committed batch stays readable.

SIGKILL gives scope no chance to flush, so this is the worst case: the file
must open, the run must show as never finished, and the calls committed
before the kill must all be there, readable by the next ``scope`` command.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from .conftest import clean_env


@pytest.mark.usefixtures("in_program")  # the service stores it all: test_service.py
def test_sigkill_mid_run_leaves_every_committed_batch_readable(write, project, scope, query):
    write(
        "busy.py",
        """
        import sys, time

        def work(n):
            return n + 1

        count = 0
        for _ in range(50_000):
            count = work(count)
        print("ready", count, flush=True)
        while True:  # keeps calling until killed
            count = work(count)
            time.sleep(0.0001)
        """,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "scope", "run", "busy.py"],
        cwd=project,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("ready 50000")
        time.sleep(1.0)  # the writer commits every few milliseconds
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    runs = scope("runs", "--json")
    assert runs.returncode == 0, runs.stderr
    (run,) = json.loads(runs.stdout)
    assert run["status"] == "running" and run["exit_status"] is None
    # The first 50,000 calls were made a second before the kill: all committed.
    ((stored, distinct),) = query("SELECT count(*), count(DISTINCT id) FROM call")
    assert stored >= 50_000 and stored == distinct
    calls = scope("top", "--json")
    assert calls.returncode == 0 and json.loads(calls.stdout)[0]["qualname"] == "work"
    # And the file takes the next run, which first stores what the killed one left.
    write("again.py", "def f():\n    return 1\nf()\n")
    assert scope("run", "again.py").returncode == 0
    assert [r["status"] for r in json.loads(scope("runs", "--json").stdout)] == [
        "recovered",
        "complete",
    ]

"""SIGTERM: scope stores what was captured, then the program dies of the signal as it would.

scope's handler is installed with sigaction, only while SIGTERM has its default
action, so ``signal.getsignal`` still answers SIG_DFL and a program's own
handler replaces it.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from .conftest import clean_env

LOOP = """
import signal, sys, time

def work(n):
    return n + 1

print(signal.getsignal(signal.SIGTERM), flush=True)
count = 0
for _ in range(20_000):
    count = work(count)
print("ready", count, flush=True)
while True:
    count = work(count)
    time.sleep(0.001)
"""


def run_until_terminated(
    command: list[str], cwd, signal_number: int = signal.SIGTERM
) -> tuple[int, str, str]:
    process = subprocess.Popen(
        command, cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    lines = [process.stdout.readline(), process.stdout.readline()]
    process.send_signal(signal_number)
    out, err = process.communicate(timeout=60)
    return process.returncode, "".join(lines) + out, err


def test_sigterm_stores_everything_then_dies_of_sigterm(project, write, query):
    write("loop.py", LOOP)
    plain = run_until_terminated([sys.executable, "loop.py"], project)
    recorded = run_until_terminated([sys.executable, "-m", "scope", "run", "loop.py"], project)
    assert plain[0] == -signal.SIGTERM
    assert recorded == plain
    ((calls, status, exit_status),) = query("SELECT calls_stored, status, exit_status FROM run")
    assert calls >= 20_000 and status == "complete" and exit_status == 128 + signal.SIGTERM
    assert query("SELECT exit_status, ended_by FROM process") == [(143, "SIGTERM")]
    assert query("SELECT count(*) FROM call WHERE outcome = 'unfinished'") == [(0,)]


def test_a_programs_own_sigterm_handler_wins(project, write):
    write(
        "handler.py",
        LOOP.replace(
            "print(signal.getsignal",
            "signal.signal(signal.SIGTERM, lambda *a: (print('handled'), sys.exit(7)))\n"
            "print(signal.getsignal",
        ),
    )
    plain = run_until_terminated([sys.executable, "handler.py"], project)
    recorded = run_until_terminated([sys.executable, "-m", "scope", "run", "handler.py"], project)
    assert plain[0] == 7 and "handled" in plain[1]
    # The first line is the handler's repr, whose address differs between processes.
    assert recorded[0] == plain[0] and recorded[1].splitlines()[1:] == plain[1].splitlines()[1:]
    assert recorded[2] == plain[2]


def test_a_forked_child_dies_of_sigterm_at_once(write, python, scope):
    write(
        "child.py",
        """
        import os, signal, time

        def work():
            return 1

        work()
        pid = os.fork()
        if pid == 0:
            while True:
                time.sleep(0.01)
        time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """,
    )
    plain = python("child.py")
    recorded = scope("run", "child.py", timeout=60)
    assert plain.stdout == f"{-signal.SIGTERM}\n"
    assert recorded == plain  # exit status, stdout and stderr


def test_sigint_ends_it_as_python_does_with_everything_stored(project, write, query):
    write("loop.py", LOOP)
    plain = run_until_terminated([sys.executable, "loop.py"], project, signal.SIGINT)
    command = [sys.executable, "-m", "scope", "run", "loop.py"]
    recorded = run_until_terminated(command, project, signal.SIGINT)
    # KeyboardInterrupt's traceback, then death by SIGINT, as python does.  Which
    # line it interrupts depends on timing, so the traceback's frame is not compared.
    assert plain[0] == -signal.SIGINT and "KeyboardInterrupt" in plain[2]
    assert recorded[:2] == plain[:2]
    for stderr in (plain[2], recorded[2]):
        lines = stderr.splitlines()
        assert lines[0] == "Traceback (most recent call last):" and len(lines) >= 4
        assert lines[1].endswith("in <module>") and lines[-1] == "KeyboardInterrupt"
    ((calls, status, exit_status),) = query("SELECT calls_stored, status, exit_status FROM run")
    assert calls >= 20_000 and status == "complete" and exit_status == 128 + signal.SIGINT
    assert query("SELECT ended_by FROM process") == [("exit",)]

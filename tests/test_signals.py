"""SIGTERM: scope stores what was captured, then the program dies of the signal as it would.

scope's handler is installed with sigaction, only while SIGTERM has its default
action, so ``signal.getsignal`` still answers SIG_DFL and a program's own
handler replaces it.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from .conftest import assert_no_count_is_negative, clean_env, wait_for_service_to_leave

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


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_until_terminated(
    command: list[str], cwd, signal_number: int = signal.SIGTERM
) -> tuple[int, str, str]:
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a shell: a test runner's worker may ignore SIGINT, and a child
        # inherits that (python then never raises KeyboardInterrupt).
        preexec_fn=_default_sigint,
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
    wait_for_service_to_leave(project)  # with the service, it stores after the death
    ((calls, status, exit_status),) = query("SELECT calls_stored, status, exit_status FROM run")
    assert calls >= 20_000 and status == "complete" and exit_status == 128 + signal.SIGTERM
    assert query("SELECT exit_status, ended_by FROM process") == [(143, "SIGTERM")]
    assert query("SELECT count(*) FROM call WHERE outcome = 'unfinished'") == [(0,)]
    assert_no_count_is_negative(query)


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


def test_a_sigterm_while_os_exit_stores_waits_for_the_store(write, python, query):
    # A pool worker being terminated as it exits: SIGTERM arrives while os._exit
    # is storing.  The SIGTERM path's stop() must wait for that store to finish,
    # not find the recording stopped and let the signal kill the process midway.
    write("helper.py", "def work(n):\n    return n + 1\n")
    write(
        "app.py",
        """
        import os, signal, threading, time, scope
        recorder = scope.install()
        import helper
        for i in range(1000):
            helper.work(i)
        finish = recorder._finish
        def slow_finish():
            threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
            time.sleep(0.5)  # the signal arrives meanwhile
            finish()
        recorder._finish = slow_finish
        os._exit(3)
        """,
    )
    result = python("app.py")
    # os._exit(3) or the signal ends it, whichever comes first once the store is done
    assert result.returncode in (3, -signal.SIGTERM), result
    assert query("SELECT calls_stored, status FROM run") == [(1000, "complete")]

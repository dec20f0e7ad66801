"""os._exit and exec end the process without atexit: scope stores everything first.

Each program runs under plain python and under ``scope run``; output and exit
status must match, and the recording must hold every call made before the end.
"""

from __future__ import annotations

import pytest

WORK = """
import os, sys

def work(n):
    return n + 1

count = 0
for _ in range(5_000):
    count = work(count)
print("before", count, flush=True)
"""

EXIT = WORK + "os._exit(7)\n"

EXEC = WORK + "os.{function}(sys.executable, {arguments})\n"

LOOKS = """
import inspect, os, posix
for f in (os._exit, os.execv, os.execve):
    print(f, type(f).__name__, f.__name__, f.__qualname__, f.__module__, f.__self__)
    print(inspect.signature(f), f.__doc__, f is getattr(posix, f.__name__))
"""


def test_os_exit_stores_every_call_and_its_status(write, python, scope, query):
    write("exits.py", EXIT)
    plain, recorded = python("exits.py"), scope("run", "exits.py")
    assert plain.returncode == recorded.returncode == 7
    assert recorded.stdout == plain.stdout == "before 5000\n" and recorded.stderr == ""
    ((calls, status, exit_status),) = query("SELECT calls_stored, status, exit_status FROM run")
    assert (calls, status, exit_status) == (5_000, "complete", 7)
    assert query("SELECT exit_status, ended_by FROM process") == [(7, "os._exit")]
    assert query("SELECT kind, detail FROM event ORDER BY time_ns")[-1] == ("end", "os._exit")


@pytest.mark.parametrize(
    ("function", "arguments"),
    [
        ("execv", "[sys.executable, '-c', 'print(\"after exec\")']"),
        ("execl", "sys.executable, '-c', 'print(\"after exec\")'"),
        ("execve", "[sys.executable, '-c', 'print(\"after exec\")'], dict(os.environ)"),
    ],
)
def test_exec_stores_every_call_first(write, python, scope, query, function, arguments):
    write("execs.py", EXEC.format(function=function, arguments=arguments))
    plain, recorded = python("execs.py"), scope("run", "execs.py")
    assert plain.returncode == recorded.returncode == 0
    assert recorded.stdout == plain.stdout == "before 5000\nafter exec\n"
    assert recorded.stderr == ""
    assert query("SELECT calls_stored, status FROM run") == [(5_000, "complete")]
    assert query("SELECT ended_by FROM process") == [("exec",)]


def test_the_wrapped_builtins_answer_inspect_as_the_originals(write, python, scope):
    write("looks.py", LOOKS)
    plain, recorded = python("looks.py"), scope("run", "looks.py")
    assert plain.returncode == recorded.returncode == 0
    assert recorded.stdout == plain.stdout and "True" in plain.stdout

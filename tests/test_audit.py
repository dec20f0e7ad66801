"""Audit events (PEP 578): what the program did to the world, against the call that did it.

A program opens a file, starts a subprocess, imports a module, connects a
socket and leaves an exception in ``__del__``; each must be an event of the
call that caused it, with its arguments summarised as values are (secrets in
containers never shown).  Nothing scope does itself (reading the script, its
cache, importing libcst) may appear, the list is configurable, and the
program's output is python's.
"""

from __future__ import annotations

import re

import pytest

from .conftest import clean_env

PROGRAM = """
import socket, subprocess, sys

def write_file(path):
    with open(path, "w") as f:
        f.write("x")

def run_child():
    env = {"PATH": "/usr/bin", "API_TOKEN": "s3cret"}
    return subprocess.run([sys.executable, "-c", "pass"], env=env).returncode

class Leaky:
    def __del__(self):
        raise ValueError("from __del__")

def make_garbage():
    Leaky()

def connect():
    try:
        socket.create_connection(("127.0.0.1", 9), timeout=0.2)
    except OSError:
        pass

def load():
    import wave
    return wave.__name__

def main():
    write_file("out.txt")
    run_child()
    load()
    connect()
    make_garbage()

main()
"""


def without_addresses(text: str) -> str:
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def events_by_call(query) -> list[tuple[str, str, str | None]]:
    return query(
        """SELECT e.kind, e.detail, f.qualname FROM event e
           LEFT JOIN call c ON c.id = e.call LEFT JOIN function f ON f.id = c.function
           WHERE e.kind NOT IN ('start', 'end') ORDER BY e.time_ns"""
    )


def test_audit_events_are_kept_against_the_call_that_caused_them(write, python, scope, query):
    write("app.py", PROGRAM)
    plain, recorded = python("app.py"), scope("run", "app.py")
    assert (recorded.returncode, recorded.stdout) == (plain.returncode, plain.stdout)
    assert without_addresses(recorded.stderr) == without_addresses(plain.stderr)
    events = events_by_call(query)
    by_call = {(kind, detail.split(" ")[0], call) for kind, detail, call in events}
    assert ("audit", "open", "write_file") in by_call
    assert ("audit", "subprocess.Popen", "run_child") in by_call
    assert ("audit", "import", "load") in by_call
    assert ("audit", "socket.connect", "connect") in by_call
    assert ("unraisable exception", "ValueError('from", "make_garbage") in by_call
    details = " ".join(detail for _, detail, _ in events)
    assert "out.txt" in details and "import 'wave'" in details
    assert "s3cret" not in details  # the child's environment is summarised by size
    # scope's own reading and importing are not the program's
    assert "libcst" not in details and "scope.pyc" not in details and "app.py" not in details


@pytest.mark.parametrize(
    "setting, kinds",
    [("none", set()), ("open", {"open"}), ("open,import", {"open", "import"})],
)
def test_the_events_recorded_are_configurable(write, scope, query, setting, kinds):
    write("app.py", PROGRAM)
    result = scope("run", "app.py", env=clean_env({"SCOPE_AUDIT": setting}))
    assert result.returncode == 0
    recorded = {d.split(" ")[0] for k, d, _ in events_by_call(query) if k == "audit"}
    assert recorded == kinds


def test_a_bad_event_name_is_refused(write, scope):
    write("app.py", "print('should not run')\n")
    result = scope("run", "app.py", env=clean_env({"SCOPE_AUDIT": "open,not an event"}))
    assert result.returncode == 1 and result.stdout == ""
    assert (
        result.stderr.startswith("scope: error: SCOPE_AUDIT") and "'not an event'" in result.stderr
    )

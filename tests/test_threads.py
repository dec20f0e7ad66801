"""Threads: each one recorded once, with the thread and the call that started it.

A program starts threads from known calls (plain threads, a pool, a thread
that starts another, one that fails, one that records nothing); the recording
must hold every thread once with its name, parent thread and starting call,
every call under its own thread, and an event for the exception that ended a
thread.  The program must see what it sees under ``python``: the same output,
the same stack inside a thread, the same ``threading`` hooks afterwards.
"""

from __future__ import annotations

import json

PROGRAM = """
import inspect, threading
from concurrent.futures import ThreadPoolExecutor

def square(i):
    return i * i

def work(n):
    return sum(square(i) for i in range(n))

def fails():
    raise ValueError("in a thread")

def starts_another():
    inner = threading.Thread(target=work, args=(3,), name="inner")
    inner.start()
    inner.join()

def stack_names():
    print([frame.function for frame in inspect.stack()])

def main():
    threads = [threading.Thread(target=work, args=(5,), name=f"worker-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with ThreadPoolExecutor(2, thread_name_prefix="pool") as pool:
        print(sum(pool.map(square, range(10))))
    for target, name in ((fails, "failing"), (starts_another, "outer"), (stack_names, "stack")):
        t = threading.Thread(target=target, name=name)
        t.start()
        t.join()
    idle = threading.Thread(target=print, args=("idle thread",), name="idle")
    idle.start()
    idle.join()

main()
print(threading.active_count(), threading.excepthook is threading.__excepthook__)
"""


def call_of(query, qualname: str) -> int:
    """The id of the one recorded call of ``qualname``."""
    sql = "SELECT c.id FROM call c JOIN function f ON f.id = c.function WHERE f.qualname = ?"
    ((call,),) = query(sql, [qualname])
    return call


def test_every_thread_once_with_its_parent_and_starting_call(write, python, scope, query):
    write("threads.py", PROGRAM)
    plain, recorded = python("threads.py"), scope("run", "threads.py")
    assert plain.returncode == 0
    assert recorded == plain  # output, the failing thread's report, exit status
    main_call, outer_call = (call_of(query, name) for name in ("main", "starts_another"))
    threads = {
        name: (thread_id, parent, started_by)
        for thread_id, name, parent, started_by in query(
            "SELECT id, name, parent, started_by FROM thread"
        )
    }
    assert set(threads) == {
        "MainThread", "worker-0", "worker-1", "pool_0", "pool_1",
        "failing", "outer", "inner", "stack", "idle",
    }  # fmt: skip
    main_thread = threads["MainThread"][0]
    for name, (_, parent, started_by) in threads.items():
        if name == "MainThread":
            assert (parent, started_by) == (None, None)
        elif name == "inner":
            assert (parent, started_by) == (threads["outer"][0], outer_call)
        else:
            assert (parent, started_by) == (main_thread, main_call), name
    # Every call hangs under a call of its own thread.
    assert query(
        "SELECT count(*) FROM call c JOIN call p ON p.id = c.parent WHERE c.thread <> p.thread"
    ) == [(0,)]
    per_thread = dict(
        query(
            """SELECT t.name, count(*) FILTER (WHERE f.qualname = 'square')
               FROM call c JOIN thread t ON t.id = c.thread
               JOIN function f ON f.id = c.function GROUP BY t.name"""
        )
    )
    assert per_thread["worker-0"] == per_thread["worker-1"] == 5
    assert per_thread["inner"] == 3
    assert per_thread.get("pool_0", 0) + per_thread.get("pool_1", 0) == 10
    (event,) = query("SELECT detail, call FROM event WHERE kind = 'thread exception'")
    assert event[0] == "failing: ValueError: in a thread"
    assert event[1] == call_of(query, "fails")
    # scope status shows the same, processes and threads seen and who started each.
    status = json.loads(scope("status", "--json").stdout)
    assert [(p["exit_status"], p["ended_by"]) for p in status["processes"]] == [(0, "exit")]
    by_name = {t["name"]: t for t in status["threads"]}
    assert len(by_name) == 10
    assert (by_name["inner"]["parent"], by_name["inner"]["started_by"]) == threads["inner"][1:]
    table = scope("status").stdout
    assert "processes seen" in table and "threads seen" in table and "writer lag" in table


def test_threading_is_put_back_when_recording_stops(write, python):
    write("helper.py", "def twice(n):\n    return 2 * n\n")
    write(
        "app.py",
        """
        import threading, scope
        # what Thread.start calls: _start_joinable_thread from 3.13, _start_new_thread before
        name = "_start_joinable_thread"
        if not hasattr(threading, name):
            name = "_start_new_thread"
        start, hook = getattr(threading, name), threading.excepthook
        with scope.recording():
            import helper
            during = getattr(threading, name) is start, threading.excepthook is hook
            t = threading.Thread(target=helper.twice, args=(1,))
            t.start()
            t.join()
        print(during, getattr(threading, name) is start, threading.excepthook is hook)
        print(threading.excepthook is threading.__excepthook__, repr(threading.excepthook))
        """,
    )
    result = python("app.py")
    assert (result.returncode, result.stderr) == (0, "")
    during = "(False, False) True True\n"  # both replaced while recording; put back after
    assert result.stdout == during + "True <built-in function _excepthook>\n"

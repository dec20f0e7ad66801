"""Every event a run captured is stored or counted as dropped: the run's numbers add up.

``scope status`` once read "captured 20,123, stored 20,076, 0 dropped" for a
multiprocessing program: the process that ended last set the run's counters,
forgetting the children that ended before it.  And a thread still inside a
call at exit left a call stored that no counter had captured, so the dropped
count came out negative.  Each case runs with the recording service and with
the writer inside the program, which count in different places.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import assert_no_count_is_negative, wait_for_service_to_leave

Query = Callable[..., list[tuple[object, ...]]]

#: a pool whose workers end before the program does, each having made calls
POOL = """
import multiprocessing, time

def square(x):
    return x * x

def total(n):
    pool = multiprocessing.get_context("fork").Pool(3)
    result = sum(pool.map(square, range(n), chunksize=10))
    pool.close()
    pool.join()
    return result

if __name__ == "__main__":
    print(total(120))
    time.sleep(0.5)  # the workers' ends reach the recording before the program's
"""

#: a daemon thread still inside a call when the program ends: stored as unfinished
OPEN_AT_EXIT = """
import threading, time

def sleeper(started):
    started.set()
    time.sleep(60)

def start():
    started = threading.Event()
    threading.Thread(target=sleeper, args=(started,), daemon=True).start()
    started.wait()

start()
print("done")
"""


@pytest.fixture(params=["service", "in the program"])
def storing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where the recording is stored: by the recording service, or by the program."""
    if request.param == "in the program":
        monkeypatch.setenv("SCOPE_TESTS_SERVICE", "0")
    return str(request.param)


def assert_events_add_up(query: Query) -> tuple[int, int, int]:
    """The run's captured events are its stored plus its dropped ones; returns them."""
    assert_no_count_is_negative(query)
    [row] = query("SELECT events_captured, events_stored, events_dropped FROM run")
    captured, stored, dropped = (int(str(n)) for n in row)
    assert (captured, stored + dropped) == (captured, captured)
    return captured, stored, dropped


def test_children_that_end_first_are_counted_in_the_run(
    storing, project, write, python, scope, query
):
    write("app.py", POOL)
    plain, recorded = python("app.py"), scope("run", "app.py")
    assert recorded == plain
    wait_for_service_to_leave(project)
    captured, stored, _ = assert_events_add_up(query)
    [(squares,)] = query(
        "SELECT count(*) FROM call c JOIN function f ON f.id = c.function "
        "WHERE f.qualname = 'square'"
    )
    assert squares == 120 and stored >= squares + 1
    status = scope("status")
    assert status.returncode == 0
    assert f"{captured:,}" in status.stdout and f"{stored:,}" in status.stdout


def test_a_call_open_at_exit_is_captured_and_stored_as_unfinished(
    storing, project, write, python, scope, query
):
    write("app.py", OPEN_AT_EXIT)
    plain, recorded = python("app.py"), scope("run", "app.py")
    assert recorded == plain
    wait_for_service_to_leave(project)
    assert_events_add_up(query)
    unfinished = query(
        "SELECT f.qualname FROM call c JOIN function f ON f.id = c.function "
        "WHERE c.outcome = 'unfinished' ORDER BY 1"
    )
    assert ("sleeper",) in unfinished
    # The thread was started by start(), the program's first call: named by its short id.
    status = scope("status")
    assert "thread 1, call 1:1" in status.stdout, status.stdout

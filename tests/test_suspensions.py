"""Suspensions stored one by one: each long yield or await of a call is a row of
``suspension``, so that a timeline can draw it as a gap in the call.

Checked against the totals the recorder kept all along (``call.suspended_ns``
and ``suspensions``): with no threshold every suspension is a row and they add
up to the totals; with the default one the long ones are there and the short
ones are not; the run's events still add up, stored by the service or by the
program; and the program's output is its own.
"""

from __future__ import annotations

import pytest

from .conftest import clean_env, wait_for_service_to_leave
from .test_event_accounting import assert_events_add_up

PROGRAM = """
import asyncio

def numbers(n):
    for i in range(n):
        yield i

async def leaf(i):
    await asyncio.sleep(0.002 if i % 2 else 0)
    return sum(numbers(3))

async def worker(n):
    total = 0
    for i in range(n):
        total += await leaf(i)
    return total

async def main():
    tasks = [asyncio.create_task(worker(4), name=f"worker-{i}") for i in range(3)]
    return sum(await asyncio.gather(*tasks))

print(asyncio.run(main()))
"""


@pytest.fixture(params=["service", "in the program"])
def storing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where the recording is stored: by the recording service, or by the program."""
    if request.param == "in the program":
        monkeypatch.setenv("SCOPE_TESTS_SERVICE", "0")
    return str(request.param)


def recorded(write, python, scope, project, min_us: int | None = None) -> None:
    """Record PROGRAM, with ``suspension_min_us`` if given; its output is its own."""
    write("app.py", PROGRAM)
    env = clean_env()
    if min_us is not None:
        env["SCOPE_SUSPENSION_MIN_US"] = str(min_us)
    plain, result = python("app.py"), scope("run", "app.py", env=env)
    assert result == plain
    wait_for_service_to_leave(project)


def test_with_no_threshold_every_suspension_is_a_row_and_they_add_up(
    storing, project, write, python, scope, query
):
    recorded(write, python, scope, project, min_us=0)
    assert_events_add_up(query)
    rows = query(
        """SELECT c.id, c.suspensions, c.suspended_ns, c.start_ns, c.duration_ns,
                  count(s.call), coalesce(sum(s.duration_ns), 0),
                  coalesce(min(s.start_ns), c.start_ns),
                  coalesce(max(s.start_ns + s.duration_ns), c.start_ns)
           FROM call c LEFT JOIN suspension s ON s.run = c.run AND s.call = c.id
           GROUP BY c.id, c.suspensions, c.suspended_ns, c.start_ns, c.duration_ns"""
    )
    assert sum(row[1] for row in rows) > 20  # generators and coroutines both suspended
    for _, times, total, start, duration, count, summed, first, last in rows:
        assert count == times
        assert abs(summed - total) <= count  # the same ticks, each turned into ns
        assert start <= first and last <= start + duration


def test_the_default_threshold_keeps_the_long_ones_only(
    storing, project, write, python, scope, query
):
    recorded(write, python, scope, project)
    assert_events_add_up(query)
    long_leaves = query(
        """SELECT c.id, c.suspended_ns, s.duration_ns FROM call c
           JOIN function f ON f.run = c.run AND f.id = c.function
           LEFT JOIN suspension s ON s.run = c.run AND s.call = c.id
           WHERE f.qualname = 'leaf' AND c.suspended_ns >= 2000000"""
    )
    assert len(long_leaves) == 6  # each worker's leaf(1) and leaf(3)
    for _, total, duration in long_leaves:
        assert duration == total  # its one suspension, to the ns
    # A generator's suspensions last about a microsecond: none is a row.
    [(generator_rows,)] = query(
        """SELECT count(*) FROM suspension s JOIN call c ON c.run = s.run AND c.id = s.call
           JOIN function f ON f.run = c.run AND f.id = c.function
           WHERE f.qualname = 'numbers'"""
    )
    assert generator_rows == 0
    [(shortest,)] = query("SELECT min(duration_ns) FROM suspension")
    assert shortest >= 100_000


def test_a_huge_threshold_keeps_none(project, write, python, scope, query):
    recorded(write, python, scope, project, min_us=10**9)
    assert query("SELECT count(*) FROM suspension") == [(0,)]
    assert query("SELECT count(*) FROM call WHERE suspensions > 0")[0][0] > 0


CHILDREN = """
import asyncio, multiprocessing

async def wait():
    await asyncio.sleep(0.01)
    return 1

def child():
    return asyncio.run(wait())

if __name__ == "__main__":
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=child) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    print(child())
"""


def test_each_process_suspensions_name_its_own_calls(storing, project, write, python, scope, query):
    write("app.py", CHILDREN)
    assert scope("run", "app.py") == python("app.py")
    wait_for_service_to_leave(project)
    assert_events_add_up(query)
    rows = query(
        """SELECT s.call >> 52, c.id IS NOT NULL, f.qualname
           FROM suspension s LEFT JOIN call c ON c.run = s.run AND c.id = s.call
           LEFT JOIN function f ON f.run = c.run AND f.id = c.function
           ORDER BY 1"""
    )
    assert sorted(rows) == [(0, True, "wait"), (1, True, "wait"), (2, True, "wait")]

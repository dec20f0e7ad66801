"""The capture stage through ``scope run``: values, coroutines, fork, and telemetry.

Each test records a small program with the real CLI and reads the stored rows
back, comparing the program's own output with and without scope.
"""

from __future__ import annotations

import json


def test_args_level_stores_named_values_and_status_counts_them(write, python, scope, query):
    write(
        "shop.py",
        """
        class Cart:
            def __init__(self, owner):
                self.owner = owner
                self.items = []

            def add(self, name, price, token=None):
                self.total = price * 2
                return len(self.items)

        def checkout(password):
            cart = Cart("ann")
            return [cart.add("tea", 1.5), cart.add("cake", 3, token="t0k")]

        print(checkout("hunter2"))
        """,
    )
    plain = python("shop.py")
    recorded = scope("run", "--level", "args", "shop.py")
    assert (recorded.returncode, recorded.stdout) == (plain.returncode, plain.stdout)
    rows = query(
        """SELECT f.qualname, v.role, v.name, v.value FROM value v
           JOIN function f ON f.run = v.run AND f.id = v.function
           JOIN call c ON c.run = v.run AND c.id = v.call
           ORDER BY c.id, v.role, v.position"""
    )
    values = [(q, role, name, value) for q, role, name, value in rows if name != "self"]
    assert ("checkout", "argument", "password", "<redacted>") in values
    assert ("Cart.add", "argument", "name", "'tea'") in values
    assert ("Cart.add", "argument", "price", "1.5") in values
    assert ("Cart.add", "argument", "token", "<redacted>") in values
    assert ("Cart.add", "attribute", "total", "3.0") in values
    assert ("Cart.__init__", "attribute", "owner", "'ann'") in values
    assert ("checkout", "return", None, "list[2]") in values
    assert "hunter2" not in repr(rows) and "t0k" not in repr(rows)
    status = json.loads(scope("status", "--json").stdout)
    assert status["values_stored"] == len(rows) and status["events_dropped"] == 0
    assert status["clock"] in ("tsc", "monotonic")
    (thread,) = status["threads"]
    assert thread["events_produced"] == status["events_captured"]
    table = scope("status")
    assert table.returncode == 0 and "values stored" in table.stdout


def test_asyncio_program_is_stored_with_suspensions(write, python, scope, query):
    write(
        "tasks.py",
        """
        import asyncio

        async def fetch(n):
            await asyncio.sleep(0.001 * n)
            return n

        async def main():
            print(sum(await asyncio.gather(*(fetch(n) for n in range(5)))))

        asyncio.run(main())
        """,
    )
    plain = python("tasks.py")
    recorded = scope("run", "tasks.py")
    assert recorded == plain  # exit status, stdout and stderr
    rows = query(
        """SELECT f.qualname, p.id IS NOT NULL AND pf.qualname = 'main', c.suspensions,
                  c.suspended_ns, c.duration_ns, c.outcome
           FROM call c JOIN function f ON f.run = c.run AND f.id = c.function
           LEFT JOIN call p ON p.run = c.run AND p.id = c.parent
           LEFT JOIN function pf ON pf.run = p.run AND pf.id = p.function
           WHERE f.qualname = 'fetch'"""
    )
    assert len(rows) == 5
    for _, under_main, suspensions, suspended, duration, outcome in rows:
        assert under_main and suspensions == 1 and outcome == "returned"
        assert 0 <= suspended <= duration


def test_a_forked_child_does_not_duplicate_the_parents_records(write, python, scope, query):
    write(
        "forks.py",
        """
        import os, sys

        def work(n):
            return n

        for i in range(100):
            work(i)
        pid = os.fork()
        if pid == 0:
            for i in range(50):
                work(i)
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        for i in range(10):
            work(i)
        print("child exited", os.waitstatus_to_exitcode(status))
        """,
    )
    plain = python("forks.py")
    recorded = scope("run", "forks.py")
    assert recorded == plain  # exit status, stdout and stderr
    # The parent's 110 calls once each, the child's 50 as process 1's: the child's
    # copy of the parent's pending records never reaches the file.
    assert query(
        "SELECT id >> 52, count(*), count(DISTINCT id) FROM call GROUP BY 1 ORDER BY 1"
    ) == [
        (0, 110, 110),
        (1, 50, 50),
    ]
    assert query("SELECT events_dropped FROM run") == [(0,)]


def test_a_program_measuring_its_own_memory_does_not_see_the_writers(write, python, scope):
    # The writer's batches (numpy arrays, value strings) are Python allocations;
    # while the program traces its allocations, the writer holds records in C.
    write(
        "measure.py",
        """
        import tracemalloc

        def step(i, label):
            return i + len(label)

        tracemalloc.start()
        total = 0
        for i in range(200_000):
            total += step(i, "x")
        retained = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        print(total, retained < 64 * 1024)
        """,
    )
    plain = python("measure.py")
    assert plain.stdout.endswith("True\n")
    for level in ("calls", "args"):
        recorded = scope("run", "--level", level, "measure.py")
        assert (recorded.returncode, recorded.stdout) == (plain.returncode, plain.stdout), level

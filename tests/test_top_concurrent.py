"""``scope top`` counts a coroutine's running time, not its waits, as its total; the wall
time, the share of the run and ``file:line`` are shown beside it."""

from __future__ import annotations

import json
import re

APP = """
import asyncio

async def fetch(i):
    await asyncio.sleep(0.05)
    return i

async def main():
    return await asyncio.gather(*(fetch(i) for i in range(20)))

asyncio.run(main())
"""


def test_a_coroutines_total_leaves_out_its_suspensions(write, scope):  # type: ignore[no-untyped-def]
    write("app.py", APP)
    assert scope("run", "app.py").returncode == 0
    stats = {s["qualname"]: s for s in json.loads(scope("top", "--json").stdout)}
    fetch = stats["fetch"]
    assert fetch["calls"] == 20
    assert fetch["total_ns"] >= 20 * 50_000_000  # wall: each waited 50 ms
    assert fetch["active_ns"] < fetch["total_ns"] / 10
    assert 0 <= fetch["self_ns"] <= fetch["active_ns"]
    assert all(0 <= s["percent"] <= 100 for s in stats.values())
    assert fetch["file"].endswith("app.py") and fetch["line"] == 4
    table = scope("top").stdout
    (row,) = [line for line in table.splitlines() if "│ fetch " in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[1].endswith("app.py:4")
    tree = scope("tree", "--limit", "3").stdout
    assert re.search(r"main  app\.py:8 ", tree)


#: a generator made on the main thread and consumed on another, while the main
#: thread keeps busy: its work ran on thread 2's stack, above consume
CROSSING = """
import threading, time

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def produce(n):
    for i in range(n):
        spin(0.002)
        yield i

def consume(it):
    return sum(it)

def main():
    it = produce(60)
    next(it)
    worker = threading.Thread(target=consume, args=(it,))
    worker.start()
    spin(0.2)
    worker.join()

main()
"""


def test_a_generator_resumed_on_another_thread_is_charged_to_that_threads_call(write, scope, query):  # type: ignore[no-untyped-def]
    write("app.py", CROSSING)
    assert scope("run", "app.py").returncode == 0
    stats = {s["qualname"]: s for s in json.loads(scope("top", "--json").stdout)}
    # consume only handed the generator to sum(): what ran meanwhile was produce's.
    consume = stats["consume"]
    assert consume["self_ns"] < consume["active_ns"] / 5
    # main spun 0.2 s itself (spin's), then waited: the generator's work, done on the
    # other thread, is not taken out of main's self time (it would go below zero).
    main = stats["main"]
    assert main["self_ns"] > 0
    assert main["self_ns"] + stats["spin"]["active_ns"] >= main["active_ns"] / 2
    assert all(s["self_ns"] >= 0 for s in stats.values())
    # Self times still partition the roots' running time: none is counted twice.
    [(roots,)] = query("SELECT sum(duration_ns - suspended_ns) FROM call WHERE parent IS NULL")
    total_self = sum(s["self_ns"] for s in stats.values())
    assert abs(total_self - roots) <= roots / 100

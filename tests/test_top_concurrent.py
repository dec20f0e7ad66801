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

"""The viewer's page in chromium on a run of 3 processes, 4 threads and 10 asyncio
tasks: a lane per thread named with its pid, a lane per task named with its
name, and a long await drawn as a gap in its coroutine's bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scope.query.api import Recording

from .test_view_browser import browser, opened  # noqa: F401 (a fixture)
from .viewing import record, serving

#: the page in chromium, as in test_view_browser
pytestmark = pytest.mark.matrix_once

PROGRAM = """
import asyncio, multiprocessing, threading, time

def leaf(i):
    return i * i

async def step(i):
    await asyncio.sleep(0.002)
    return leaf(i)

async def long_wait():
    time.sleep(0.02)  # running: its bar is drawn whole up to the await
    await asyncio.sleep(0.2)
    return leaf(0)

async def worker(n):
    total = 0
    for i in range(n):
        total += await step(i)
    return total

async def main(tag):
    tasks = [asyncio.create_task(worker(5), name=f"{tag}-worker-{i}") for i in range(2)]
    if tag == "parent":
        tasks.append(asyncio.create_task(long_wait(), name="parent-long-wait"))
    return sum(await asyncio.gather(*tasks))

def run_loop(tag):
    return asyncio.run(main(tag))

def busy():
    return sum(leaf(i) for i in range(200))

if __name__ == "__main__":
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=run_loop, args=(f"child{k}",)) for k in range(2)]
    for child in children:
        child.start()
    helper = threading.Thread(target=busy, name="helper")
    helper.start()
    print(run_loop("parent"))
    helper.join()
    for child in children:
        child.join()
"""

#: the long await's gap, and a point of its bar before it: [x, y] on the canvas
GAP_AND_BAR = """(() => {
    const hit = state.drawn.find(d => (state.functions[d[4][4]] || "").endsWith("long_wait"));
    if (!hit) return null;
    const [x0, y0, x1, , call] = hit;
    const [start, duration] = (state.gaps.get(call[5]) || [[null, null]])[0];
    if (start === null) return null;
    const bar = (x0 + x(start)) / 2;
    return { gap: [x(start + duration / 2), y0 + 1], bar: [bar, y0 + 1], width: x1 - x0 };
})()"""


def alpha(page: Any, point: list[float]) -> int:
    """How opaque the canvas is at ``point`` (CSS pixels): 0 where nothing is drawn."""
    return int(
        page.evaluate(
            """([px, py]) => {
                const ratio = window.devicePixelRatio || 1;
                return ctx.getImageData(Math.round(px * ratio), Math.round(py * ratio), 1, 1)
                    .data[3];
            }""",
            point,
        )
    )


def test_a_lane_per_thread_and_per_task_and_a_long_await_is_a_gap(
    browser: Any,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    with Recording(str(record(tmp_path, PROGRAM))) as recording, serving(recording) as running:
        pids = {pid for (pid,) in recording.con.execute("SELECT pid FROM process").fetchall()}
        with opened(browser, running.url, (1200, 900)) as page:
            lanes = page.page.evaluate("state.lanes")
            threads = [lane for lane in lanes if lane["task"] is None]
            tasks = [lane for lane in lanes if lane["task"] is not None]
            assert len(pids) == 3
            assert len(threads) == 4
            assert {lane["pid"] for lane in threads} == pids
            assert sorted(lane["name"] for lane in threads) == ["MainThread"] * 3 + ["helper"]
            assert len(tasks) == 10  # each loop's main task, and its workers
            named = sorted(lane["task_name"] for lane in tasks)
            assert [n for n in named if not n.startswith("Task-")] == [
                "child0-worker-0",
                "child0-worker-1",
                "child1-worker-0",
                "child1-worker-1",
                "parent-long-wait",
                "parent-worker-0",
                "parent-worker-1",
            ]
            # Each task's lane is on its thread's process: named with that pid.
            assert {lane["pid"] for lane in tasks} == pids
            # Every lane has calls on screen, drawn or merged.
            shown = page.page.evaluate(
                """new Set([...state.calls.map(c => laneKey(c[0], c[7])),
                            ...state.blocks.map(b => laneKey(b[0], b[5]))]).size"""
            )
            assert shown == 14
            # Zoomed to the long await: its bar is cut where it waited.
            page.after(
                lambda: page.page.evaluate(
                    """(() => {
                        const c = state.calls.find(
                            c => (state.functions[c[4]] || "").endsWith("long_wait"));
                        fitTo(c[1], c[2]);
                    })()"""
                )
            )
            found = page.page.evaluate(GAP_AND_BAR)
            assert found is not None, "the long await's call or its gap is not drawn"
            assert found["width"] > 100
            assert alpha(page.page, found["bar"]) == 255
            assert alpha(page.page, found["gap"]) == 0
            assert page.errors == []

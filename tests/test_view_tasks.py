"""The viewer's task lanes: each asyncio task's calls in a lane of its own.

Tasks on one event loop take turns, so one task's call ids interleave with
the others'; the lanes must follow the calls' parents, not their id intervals.
Checked against a walk of the recorded parents, in every way a window is
answered (call by call, merged into blocks, from the overview).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scope.query.api import Recording
from scope.query.viewer import window as windows
from scope.query.viewer.server import ViewServer
from scope.query.viewer.tasks import segments, tasks

from .test_view_server import ask
from .viewing import record, serving

PROGRAM = """
import asyncio

def plain(i):
    return i

async def leaf(i):
    plain(i)
    await asyncio.sleep(0.001 * (i % 3))
    return i

async def worker(n):
    total = 0
    for i in range(n):
        total += await leaf(i)
    return total

async def main():
    plain(0)
    tasks = [asyncio.create_task(worker(4 + i), name=f"worker-{i}") for i in range(3)]
    return sum(await asyncio.gather(*tasks))

def outside():
    return plain(-1)

outside()
print(asyncio.run(main()))
outside()
"""


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    with Recording(str(record(tmp_path_factory.mktemp("tasks"), PROGRAM))) as opened:
        yield opened


@pytest.fixture(scope="module")
def server(recording: Recording) -> Iterator[ViewServer]:
    with serving(recording) as running:
        yield running


def api(server: ViewServer, route: str) -> Any:
    status, _, body = ask(server, f"/{server.token}/api/{route}")
    assert status == 200, body
    return json.loads(body)


def expected(recording: Recording) -> dict[int, tuple[str | None, int]]:
    """Each call's task name (None: none) and its depth in its lane, by walking parents."""
    roots = dict(recording.con.execute("SELECT id, name FROM task").fetchall())
    calls = {
        cid: (parent, depth)
        for cid, parent, depth in recording.con.execute(
            "SELECT id, parent, depth FROM call"
        ).fetchall()
    }
    out: dict[int, tuple[str | None, int]] = {}
    for cid, (_, depth) in calls.items():
        at: int | None = cid
        while at is not None and at not in roots:
            at = calls[at][0]
        out[cid] = (None, depth) if at is None else (roots[at], depth - calls[at][1])
    return out


def test_the_recording_interleaves_its_tasks(recording: Recording) -> None:
    # Else the test below would not tell parents from id intervals.
    rows = recording.con.execute("SELECT id, end_id FROM call ORDER BY id").fetchall()
    found = tasks(recording.con, 1)
    assert len(found.tasks) == 4  # main's task and three workers
    worker = found.tasks[1]
    end = dict(rows)[worker.id]
    inside = [cid for cid, _ in rows if worker.id <= cid <= end]
    assert any(found.of(cid) is not worker for cid in inside)


def test_each_task_has_a_lane_named_with_its_thread_and_pid(server: ViewServer) -> None:
    run = api(server, "run")
    named = [lane for lane in run["lanes"] if lane["task"] is not None]
    assert sorted(lane["task_name"] for lane in named) == [
        "Task-1",
        "worker-0",
        "worker-1",
        "worker-2",
    ]
    thread_lanes = [lane for lane in run["lanes"] if lane["task"] is None]
    assert len(thread_lanes) == 1
    for lane in named:
        assert lane["name"] == "MainThread"
        assert lane["pid"] == thread_lanes[0]["pid"] > 0


@pytest.mark.parametrize("pixel", [1, 20_000, 10**12])
@pytest.mark.parametrize("from_overview", [False, True])
def test_every_call_is_in_its_tasks_lane_at_its_depth_there(
    recording: Recording, pixel: int, from_overview: bool
) -> None:
    con = recording.con
    found = tasks(con, 1)
    span = windows.frame(con, 1)
    zoomed_out = windows.overview(con, 1, span, found) if from_overview else None
    pixel = max(pixel, zoomed_out.bucket_ns) if zoomed_out else pixel
    answer = windows.window(con, 1, 0, span.span_ns, pixel, span, zoomed_out, found)
    names = {task.lane: task.name for task in found.tasks}
    want = expected(recording)
    drawn = {
        int(str(c[5])): (None if c[7] is None else names[int(str(c[7]))], c[3])
        for c in answer.calls
    }
    assert drawn.items() <= want.items()
    # The merged ones: counted per lane and depth.
    merged: dict[tuple[str | None, object], int] = {}
    for block in answer.blocks:
        key = (None if block[5] is None else names[int(str(block[5]))], block[1])
        merged[key] = merged.get(key, 0) + int(str(block[4]))
    rest: dict[tuple[str | None, object], int] = {}
    for cid, where in want.items():
        if cid not in drawn:
            rest[where] = rest.get(where, 0) + 1
    assert merged == rest
    assert any(name is None for name, _ in want.values())  # some calls stay in the thread's


def test_a_calls_details_name_its_task(server: ViewServer, recording: Recording) -> None:
    want = expected(recording)
    for cid, (name, _) in want.items():
        details = api(server, f"call?id={cid}")
        assert (details["task"] and details["task"]["name"]) == name


def test_a_run_without_tasks_has_thread_lanes_only(tmp_path: Path) -> None:
    path = record(tmp_path, "def f():\n    return 1\n\nf()\n")
    with Recording(str(path)) as recording, serving(recording) as running:
        lanes = api(running, "run")["lanes"]
        assert [lane["task"] for lane in lanes] == [None]
        calls = api(running, f"window?since=0&until={10**12}&pixel=1")["calls"]
        assert [c[7] for c in calls] == [None]


@pytest.mark.parametrize("pixel", [1, 1_500_000])
def test_the_drawn_calls_long_suspensions_come_as_gaps(
    server: ViewServer, recording: Recording, pixel: int
) -> None:
    answer = api(server, f"window?since=0&until={10**12}&pixel={pixel}")
    origin = windows.frame(recording.con, 1).start_ns
    drawn = {int(c[5]): (c[1], c[2]) for c in answer["calls"]}
    gaps = {(int(call), start, duration) for call, start, duration in answer["gaps"]}
    want = {
        (call, start - origin, duration)
        for call, start, duration in recording.con.execute(
            "SELECT call, start_ns, duration_ns FROM suspension WHERE duration_ns >= ?", [pixel]
        ).fetchall()
        if call in drawn
    }
    assert gaps == want
    assert gaps or pixel > 1  # the sleeps of 1 and 2 ms are there, a pixel wide or more
    for call, start, duration in gaps:
        call_start, call_duration = drawn[call]
        assert call_start <= start and start + duration <= call_start + call_duration


@st.composite
def forests(draw: st.DrawFn) -> tuple[list[int], list[int], list[int]]:
    """Calls in preorder on up to three threads (each call's parent begun before it
    on its thread, or none), and some of them task roots."""
    ids: list[int] = []
    parents: list[int] = []
    for thread in range(1, draw(st.integers(1, 3)) + 1):
        count = draw(st.integers(0, 30))
        mine = [(thread << 40) | (i + 1) for i in range(count)]
        for i, cid in enumerate(mine):
            ids.append(cid)
            parents.append(0 if i == 0 else draw(st.sampled_from([0, *mine[:i]])))
    roots = sorted(draw(st.sets(st.sampled_from(ids))) if ids else set())
    return ids, parents, roots


@given(forests())
def test_segments_are_each_calls_nearest_task_root(forest: Any) -> None:
    ids, parents, roots = forest
    lo, hi, lane = segments(
        np.array(ids, dtype=np.int64),
        np.array(parents, dtype=np.int64),
        np.array(roots, dtype=np.int64),
    )
    parent_of = dict(zip(ids, parents, strict=True))
    for cid in ids:
        at = cid
        while at and at not in roots:
            at = parent_of[at]
        inside = [i for i in range(len(lo)) if lo[i] <= cid <= hi[i]]
        assert len(inside) <= 1
        got = roots[lane[inside[0]]] if inside else 0
        assert got == at

"""How fast ``scope view``'s server answers the window on screen, on 10 million calls.

    python benchmarks/view_window.py [--calls N] [--repeat R] [--keep PATH] [--width PX]
                                     [--tasks N]

Builds (or reuses) ``query_speed.py``'s synthetic recording, starts the
viewer's server on it, and asks over HTTP, as the page does, best of R:

* what the first paint needs: the run (lanes, functions) and the whole run's window;
* a zoom step: windows of 80 % (the page's first step in), 1 %, 0.01 % and
  0.0001 % of the run, centred;
* a pan step: the 1 % window moved by half its width;
* the flame graph of the whole run (the first ask counts it; the server keeps it),
  and of windows of 1 %, 0.01 % and 0.0001 % of the run;
* top functions of a 1 % window, and a page of 50 of a batch's 11,111 children.

Each window is asked at ``--width`` pixels (calls narrower than a pixel are
merged).  The target is 100 ms for a zoom or pan step.  Prints a table.

With ``--tasks N``, the first N batches' roots are made asyncio tasks (rows of
``task``; the recording is changed), so each batch's calls are a task lane's:
the table then also says how long finding the tasks' calls took (once per run).

With ``--browser``, it also loads the page in Debian's chromium (Playwright) and
measures first paint (page asked for until the whole run's window is drawn), a
zoom and a pan step as the page does them (key press until drawn), and the
memory of the browser's processes (every process of the chromium it started:
proportional set sizes summed, and resident sizes summed, which count shared
pages once per process) and of the page's JavaScript heap.  Targets: first paint
1.5 s, a step 100 ms, memory 300 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
from scope.query import Recording
from scope.query.viewer import tasks as task_lanes
from scope.query.viewer.server import ViewServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.query_speed import BATCH, THREAD_BASE, build


def ask(server: ViewServer, route: str) -> tuple[float, int, object]:
    """Seconds, bytes and the JSON of one answer."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    began = time.perf_counter()
    connection.request("GET", f"/{server.token}/api/{route}")
    response = connection.getresponse()
    body = response.read()
    seconds = time.perf_counter() - began
    connection.close()
    if response.status != 200:
        raise SystemExit(f"view_window.py: {route} answered {response.status}: {body[:200]!r}")
    return seconds, len(body), json.loads(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000_000, help="about this many calls")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", metavar="PATH", help="build (or reuse) the recording here")
    parser.add_argument("--width", type=int, default=1500, help="the timeline's width in pixels")
    parser.add_argument("--browser", action="store_true", help="also measure the page in chromium")
    parser.add_argument("--tasks", type=int, default=0, help="make this many batches tasks")
    args = parser.parse_args(argv)
    path = args.keep or os.path.join(tempfile.mkdtemp(), "view.duckdb")
    if not os.path.exists(path):
        began = time.perf_counter()
        calls = build(path, max(args.calls // BATCH, 1))
        print(f"built {calls:,} calls in {time.perf_counter() - began:.1f} s: {path}")
    make_tasks(path, args.tasks)
    if args.tasks:
        with Recording(path) as recording:
            began = time.perf_counter()
            found = task_lanes.tasks(recording.con, recording.resolve_run())
            print(
                f"found the calls of {len(found.tasks)} tasks ({len(found.lo):,} segments) "
                f"in {(time.perf_counter() - began) * 1000:.0f} ms"
            )
    with serving(path) as server:
        rows = measure(server, args.repeat, args.width)
        batch = THREAD_BASE + 2 + BATCH  # the second batch's call: 11,111 items under it
        name = "children: a page of 50 of 11,111"
        best(server, args.repeat, name, f"children?id={batch}&offset=5000&limit=50", rows)
        browser_rows = in_browser(server, args.repeat, args.width) if args.browser else []
    report(rows, browser_rows)
    if not args.keep:
        Path(path).unlink(missing_ok=True)
    return 0


def make_tasks(path: str, count: int) -> None:
    """Make the roots of the first ``count`` batches (and no other call) tasks."""
    con = duckdb.connect(path)
    try:
        con.execute("DELETE FROM task")
        con.execute(
            """INSERT INTO task SELECT 1, ? + 2 + k * ?, 'batch-' || k, 1, ? + 1
               FROM range(0, ?) t(k)""",
            [THREAD_BASE, BATCH, THREAD_BASE, count],
        )
    finally:
        con.close()


@contextlib.contextmanager
def serving(path: str) -> Iterator[ViewServer]:
    """``scope view``'s server on the recording's latest run, answering from a thread."""
    with Recording(path) as recording:
        server = ViewServer(recording, recording.resolve_run())
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.stop()
            thread.join(10)


def report(rows: list[Row], browser_rows: list[tuple[str, str]]) -> None:
    """Print the server's table, then chromium's (if measured)."""
    print(f"{'answer':<44}{'best ms':>10}{'CPU ms':>10}{'KB':>10}{'drawn':>10}{'blocks':>10}")
    for name, seconds, cpu, size, drawn, blocks in rows:
        print(
            f"{name:<44}{seconds * 1000:>10.1f}{cpu * 1000:>10.1f}{size / 1024:>10.1f}"
            f"{drawn:>10,}{blocks:>10,}"
        )
    if browser_rows:
        print()
        print(f"{'in chromium':<44}{'best':>12}")
        for name, value in browser_rows:
            print(f"{name:<44}{value:>12}")


#: a step the page takes from a drawn window to the next drawn one: its name, what must
#: hold in the page before it (JavaScript), and what starts it
Step = tuple[str, str, Callable[[Any], None]]

STEPS: list[Step] = [
    ("zoom step (key w, drawn)", "true", lambda page: page.keyboard.press("w")),
    ("pan step (key d, drawn)", "true", lambda page: page.keyboard.press("d")),
]
LOADED = "Number(document.body.dataset.loaded || 0)"


def in_browser(
    server: ViewServer, repeat: int, width: int, steps: list[Step] = STEPS
) -> list[tuple[str, str]]:
    """First paint, each of ``steps`` (a zoom and a pan), and memory, as chromium shows
    the page: best of ``repeat`` fresh pages."""
    executable = chromium()
    from playwright.sync_api import sync_playwright

    paints: list[float] = []
    times: dict[str, list[float]] = {name: [] for name, _, _ in steps}
    rss, pss, heap = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        blank = browser.new_context(viewport={"width": width, "height": 800})
        blank.new_page().goto("about:blank")
        floor = browser_memory()[1]  # chromium itself, for comparison
        blank.close()
        for _ in range(repeat):
            context = browser.new_context(viewport={"width": width, "height": 800})
            page = context.new_page()
            began = time.perf_counter()
            page.goto(server.url)
            wait(page, f"{LOADED} > 0")
            paints.append(time.perf_counter() - began)
            for name, ready, start in steps:
                wait(page, ready)
                page.focus("#timeline")
                before = page.evaluate(LOADED)
                began = time.perf_counter()
                start(page)
                wait(page, f"{LOADED} > {before}")
                times[name].append(time.perf_counter() - began)
            heap.append(page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0"))
            memory = browser_memory()
            rss.append(memory[0])
            pss.append(memory[1])
            context.close()
        browser.close()
    return [
        ("first paint (whole run drawn)", f"{min(paints) * 1000:.0f} ms"),
        *((name, f"{min(times[name]) * 1000:.0f} ms") for name, _, _ in steps),
        ("browser processes, proportional (PSS)", f"{max(pss) / 2**20:.0f} MB"),
        ("  the same with a blank page instead", f"{floor / 2**20:.0f} MB"),
        ("browser processes, resident (RSS summed)", f"{max(rss) / 2**20:.0f} MB"),
        ("page's JavaScript heap", f"{max(heap) / 2**20:.1f} MB"),
    ]


def chromium() -> str:
    """Debian's chromium, or a clear exit."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("benchmarks: --browser needs chromium (apt-get install chromium)")
    return executable


def wait(page: object, condition: str, timeout: float = 60.0) -> None:
    """Until ``condition`` holds in the page (asked from here: the page's policy
    forbids the evaluation Playwright's own waiting does)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(condition):  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise SystemExit(f"view_window.py: the page never got to {condition}")
        time.sleep(0.005)


def browser_memory() -> tuple[int, int]:
    """Bytes of memory of the chromium processes this script started (its descendants:
    another session's chromium is not counted), summed: resident (RSS, which counts
    the pages they share once per process) and proportional (PSS, shared pages split
    between their sharers)."""
    parents: dict[int, int] = {}
    commands: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                # pid (comm) state ppid ...: comm may hold spaces, so split after its ")"
                parents[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                # chromium's children rewrite their command line into one string
                commands[int(entry)] = f.read().split(b"\0")[0].split(b" ")[0]
        except (OSError, IndexError, ValueError):
            continue

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    rss = pss = 0
    for pid, command in commands.items():
        if os.path.basename(command) in (b"chromium", b"chrome") and ours(pid):
            rss += resident(pid)
            pss += resident(pid, "Pss", "smaps_rollup")
    return rss, pss


def resident(pid: int, field: str = "VmRSS", table: str = "status") -> int:
    """A process's resident bytes now (``VmHWM``: at its peak; ``Pss`` from
    ``smaps_rollup``: its share), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/{table}") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


#: a row of the server's table: name, best seconds, least CPU seconds, bytes, calls
#: drawn (or nodes, or rows), blocks
Row = tuple[str, float, float, int, int, int]


def cpu_seconds() -> float:
    """CPU time of this process so far (the server and DuckDB's threads are in it):
    steadier than wall time on a machine shared with other work."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(server: ViewServer, route: str) -> tuple[float, float, int, object]:
    """Wall seconds, CPU seconds, bytes and the JSON of one answer."""
    began = cpu_seconds()
    seconds, size, body = ask(server, route)
    return seconds, cpu_seconds() - began, size, body


def best(server: ViewServer, repeat: int, name: str, route: str, rows: list[Row]) -> dict[str, Any]:
    """Ask ``route`` ``repeat`` times; add the best time's row to ``rows``; the answer."""
    answers = [timed(server, route) for _ in range(repeat)]
    seconds, cpu = min(a[0] for a in answers), min(a[1] for a in answers)
    size, body = answers[0][2], answers[0][3]
    assert isinstance(body, dict)
    listed = body.get("calls", body.get("nodes", body.get("functions", body.get("children"))))
    drawn, blocks = len(listed or []), len(body.get("blocks", []))
    rows.append((name, seconds, cpu, size, drawn, blocks))
    return body


def window_route(since: int, until: int, width: int) -> str:
    """The page's question for ``since``..``until`` (ns from the run's start) drawn
    ``width`` pixels wide."""
    return f"window?since={since}&until={until}&pixel={max((until - since) // width, 1)}"


def measure(server: ViewServer, repeat: int, width: int) -> list[Row]:
    """The table's rows for the first paint's answers, zoom and pan steps, the flame
    graph and top functions."""
    rows: list[Row] = []

    span = int(best(server, repeat, "run: lanes and functions", "run", rows)["span_ns"])
    best(server, repeat, "window: the whole run", window_route(0, span, width), rows)
    for share in (0.8, 0.01, 0.0001, 0.000001):  # 80 %: the page's first zoom step
        length = max(int(span * share), 1)
        since = (span - length) // 2
        route = window_route(since, since + length, width)
        best(server, repeat, f"zoom: {share:.4%} of the run", route, rows)
    length = span // 100
    since = (span - length) // 2 + length // 2
    route = window_route(since, since + length, width)
    best(server, repeat, "pan: 1% of the run, moved by half", route, rows)
    seconds, cpu, size, body = timed(server, "flame")
    assert isinstance(body, dict)
    name = "flame: the whole run (first ask: counted)"
    rows.append((name, seconds, cpu, size, len(body["nodes"]), 0))
    best(server, repeat, "flame: the whole run (kept)", "flame", rows)
    for share in (0.01, 0.0001, 0.000001):
        length = max(int(span * share), 1)
        since = (span - length) // 2
        route = f"flame?since={since}&until={since + length}"
        best(server, repeat, f"flame: {share:.4%} of the run", route, rows)
    length = span // 100
    since = (span - length) // 2
    route = f"top?since={since}&until={since + length}"
    best(server, repeat, "top functions: 1% of the run", route, rows)
    return rows


if __name__ == "__main__":
    sys.exit(main())

"""How fast ``scope view``'s server answers the window on screen, on 10 million calls.

    python benchmarks/view_window.py [--calls N] [--repeat R] [--keep PATH] [--width PX]
                                     [--tasks N]

Builds (or reuses) ``query_speed.py``'s synthetic recording, starts the
viewer's server on it, and asks over HTTP, as the page does, best of R:

* what the first paint needs: the run (lanes, functions) and the whole run's window;
* a zoom step: windows of 1 %, 0.01 % and 0.0001 % of the run, centred;
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
memory of the browser's processes (resident, summed) and of the page's
JavaScript heap.  Targets: first paint 1.5 s, a step 100 ms, memory 300 MB.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

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
    with Recording(path) as recording:
        if args.tasks:
            began = time.perf_counter()
            found = task_lanes.tasks(recording.con, recording.resolve_run())
            print(
                f"found the calls of {len(found.tasks)} tasks ({len(found.lo):,} segments) "
                f"in {(time.perf_counter() - began) * 1000:.0f} ms"
            )
        server = ViewServer(recording, recording.resolve_run())
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        try:
            rows = measure(server, args.repeat, args.width)
            if args.browser:
                browser_rows = in_browser(server, args.repeat, args.width)
        finally:
            server.stop()
            thread.join(10)
    print(f"{'answer':<44}{'best ms':>10}{'CPU ms':>10}{'KB':>10}{'drawn':>10}{'blocks':>10}")
    for name, seconds, cpu, size, drawn, blocks in rows:
        print(
            f"{name:<44}{seconds * 1000:>10.1f}{cpu * 1000:>10.1f}{size / 1024:>10.1f}"
            f"{drawn:>10,}{blocks:>10,}"
        )
    if args.browser:
        print()
        print(f"{'in chromium':<44}{'best':>12}")
        for name, value in browser_rows:
            print(f"{name:<44}{value:>12}")
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


def in_browser(server: ViewServer, repeat: int, width: int) -> list[tuple[str, str]]:
    """First paint, a zoom and a pan step, and memory, as chromium shows the page."""
    import shutil

    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("view_window.py: --browser needs chromium (apt-get install chromium)")
    loaded = "Number(document.body.dataset.loaded || 0)"
    paints, zooms, pans, rss, heap = [], [], [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        for _ in range(repeat):
            context = browser.new_context(viewport={"width": width, "height": 800})
            page = context.new_page()
            began = time.perf_counter()
            page.goto(server.url)
            wait(page, f"{loaded} > 0")
            paints.append(time.perf_counter() - began)
            page.focus("#timeline")
            for key, times in (("w", zooms), ("d", pans)):
                before = page.evaluate(loaded)
                began = time.perf_counter()
                page.keyboard.press(key)
                wait(page, f"{loaded} > {before}")
                times.append(time.perf_counter() - began)
            heap.append(page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0"))
            rss.append(browser_rss())
            context.close()
        browser.close()
    return [
        ("first paint (whole run drawn)", f"{min(paints) * 1000:.0f} ms"),
        ("zoom step (key w, drawn)", f"{min(zooms) * 1000:.0f} ms"),
        ("pan step (key d, drawn)", f"{min(pans) * 1000:.0f} ms"),
        ("browser processes, resident", f"{max(rss) / 2**20:.0f} MB"),
        ("page's JavaScript heap", f"{max(heap) / 2**20:.1f} MB"),
    ]


def wait(page: object, condition: str, timeout: float = 60.0) -> None:
    """Until ``condition`` holds in the page (asked from here: the page's policy
    forbids the evaluation Playwright's own waiting does)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(condition):  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise SystemExit(f"view_window.py: the page never got to {condition}")
        time.sleep(0.005)


def browser_rss() -> int:
    """Resident bytes of every chromium process of this user (the one this script runs)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().split(b"\0")[0]
            if not command.endswith((b"chromium", b"chrome")):
                continue
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def cpu_seconds() -> float:
    """CPU time of this process so far (the server and DuckDB's threads are in it):
    steadier than wall time on a machine shared with other work."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(
    server: ViewServer, repeat: int, width: int
) -> list[tuple[str, float, float, int, int, int]]:
    """The table's rows: name, best seconds, least CPU seconds, bytes, calls drawn
    (or nodes, or rows), blocks."""
    rows: list[tuple[str, float, float, int, int, int]] = []

    def timed(route: str) -> tuple[float, float, int, object]:
        began = cpu_seconds()
        seconds, size, body = ask(server, route)
        return seconds, cpu_seconds() - began, size, body

    def best(name: str, route: str) -> dict[str, list[object]]:
        answers = [timed(route) for _ in range(repeat)]
        seconds, cpu = min(a[0] for a in answers), min(a[1] for a in answers)
        size, body = answers[0][2], answers[0][3]
        assert isinstance(body, dict)
        listed = body.get("calls", body.get("nodes", body.get("functions", body.get("children"))))
        drawn, blocks = len(listed or []), len(body.get("blocks", []))
        rows.append((name, seconds, cpu, size, drawn, blocks))
        return body

    def once(name: str, route: str) -> None:
        seconds, cpu, size, body = timed(route)
        assert isinstance(body, dict)
        rows.append((name, seconds, cpu, size, len(body["nodes"]), 0))

    span = int(best("run: lanes and functions", "run")["span_ns"])  # type: ignore[call-overload]
    best("window: the whole run", f"window?since=0&until={span}&pixel={max(span // width, 1)}")
    for share in (0.01, 0.0001, 0.000001):
        length = max(int(span * share), 1)
        since = (span - length) // 2
        route = f"window?since={since}&until={since + length}&pixel={max(length // width, 1)}"
        best(f"zoom: {share:.4%} of the run", route)
    length = span // 100
    since = (span - length) // 2 + length // 2
    best(
        "pan: 1% of the run, moved by half",
        f"window?since={since}&until={since + length}&pixel={max(length // width, 1)}",
    )
    once("flame: the whole run (first ask: counted)", "flame")
    best("flame: the whole run (kept)", "flame")
    for share in (0.01, 0.0001, 0.000001):
        length = max(int(span * share), 1)
        since = (span - length) // 2
        best(f"flame: {share:.4%} of the run", f"flame?since={since}&until={since + length}")
    length = span // 100
    since = (span - length) // 2
    best("top functions: 1% of the run", f"top?since={since}&until={since + length}")
    batch = THREAD_BASE + 2 + BATCH  # the second batch's call: 11,111 items under it
    best("children: a page of 50 of 11,111", f"children?id={batch}&offset=5000&limit=50")
    return rows


if __name__ == "__main__":
    sys.exit(main())

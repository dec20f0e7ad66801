"""How fast ``scope view``'s server answers the window on screen, on 10 million calls.

    python benchmarks/view_window.py [--calls N] [--repeat R] [--keep PATH] [--width PX]

Builds (or reuses) ``query_speed.py``'s synthetic recording, starts the
viewer's server on it, and asks over HTTP, as the page does, best of R:

* what the first paint needs: the run (lanes, functions) and the whole run's window;
* a zoom step: windows of 1 %, 0.01 % and 0.0001 % of the run, centred;
* a pan step: the 1 % window moved by half its width.

Each window is asked at ``--width`` pixels (calls narrower than a pixel are
merged).  The target is 100 ms for a zoom or pan step.  Prints a table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from scope.query import Recording
from scope.query.viewer.server import ViewServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.query_speed import BATCH, build


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
    args = parser.parse_args(argv)
    path = args.keep or os.path.join(tempfile.mkdtemp(), "view.duckdb")
    if not os.path.exists(path):
        began = time.perf_counter()
        calls = build(path, max(args.calls // BATCH, 1))
        print(f"built {calls:,} calls in {time.perf_counter() - began:.1f} s: {path}")
    with Recording(path) as recording:
        server = ViewServer(recording, recording.resolve_run())
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        try:
            rows = measure(server, args.repeat, args.width)
        finally:
            server.stop()
            thread.join(10)
    print(f"{'answer':<44}{'best ms':>10}{'KB':>10}{'drawn':>10}{'blocks':>10}")
    for name, seconds, size, drawn, blocks in rows:
        print(f"{name:<44}{seconds * 1000:>10.1f}{size / 1024:>10.1f}{drawn:>10,}{blocks:>10,}")
    if not args.keep:
        Path(path).unlink(missing_ok=True)
    return 0


def measure(server: ViewServer, repeat: int, width: int) -> list[tuple[str, float, int, int, int]]:
    """The table's rows: name, best seconds, bytes, calls drawn, blocks."""
    rows: list[tuple[str, float, int, int, int]] = []

    def best(name: str, route: str) -> dict[str, list[object]]:
        answers = [ask(server, route) for _ in range(repeat)]
        seconds = min(a[0] for a in answers)
        size, body = answers[0][1], answers[0][2]
        assert isinstance(body, dict)
        drawn, blocks = len(body.get("calls", [])), len(body.get("blocks", []))
        rows.append((name, seconds, size, drawn, blocks))
        return body

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
    return rows


if __name__ == "__main__":
    sys.exit(main())

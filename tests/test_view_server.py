"""The viewer's server: the window on screen from the recording, to its own page only.

A real program is recorded; the server runs in this process on a thread and
is asked over HTTP, as the browser asks it.  What it must refuse (no token, a
wrong token, another Host, other methods) is asked too.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from scope.query.api import Recording
from scope.query.viewer import window as windows
from scope.query.viewer.server import CONTENT_SECURITY_POLICY, ViewServer

from .viewing import record, serving

PROGRAM = """
import threading
import time

def leaf(i):
    return i

def fib(n):
    leaf(n)
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def worker():
    fib(8)

def main():
    t = threading.Thread(target=worker, name="helper")
    t.start()
    fib(10)
    t.join()

main()
"""


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    with Recording(str(record(tmp_path_factory.mktemp("viewed"), PROGRAM))) as opened:
        yield opened


@pytest.fixture
def server(recording: Recording) -> Iterator[ViewServer]:
    with serving(recording) as running:
        yield running


def ask(
    server: ViewServer, path: str, method: str = "GET", host: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request, as a browser on this machine sends it."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Host": host or f"127.0.0.1:{server.port}"}
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    answer = response.status, dict(response.getheaders()), response.read()
    connection.close()
    return answer


def api(server: ViewServer, route: str) -> Any:
    status, _, body = ask(server, f"/{server.token}/api/{route}")
    assert status == 200, body
    return json.loads(body)


def test_the_page_is_served_with_its_policy_and_no_cors(server: ViewServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}/{server.token}/"
    status, headers, body = ask(server, f"/{server.token}/")
    assert status == 200 and b'<script src="view.js">' in body
    assert headers["Content-Type"].startswith("text/html")
    for asset, kind in (("view.js", "text/javascript"), ("view.css", "text/css")):
        status, asset_headers, _ = ask(server, f"/{server.token}/{asset}")
        assert status == 200 and asset_headers["Content-Type"].startswith(kind)
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "connect-src 'self'" in CONTENT_SECURITY_POLICY
    assert not any(name.lower().startswith("access-control") for name in headers)


@pytest.mark.parametrize(
    ("path", "method", "host", "status"),
    [
        ("/", "GET", None, 403),
        ("/api/run", "GET", None, 403),
        ("/not-the-token/api/run", "GET", None, 403),
        ("{token}/api/run", "GET", "evil.example:80", 421),
        ("{token}/api/run", "GET", "localhost", 421),
        ("{token}/api/run", "POST", None, 405),
        ("{token}/api/nothing", "GET", None, 404),
    ],
)
def test_what_is_refused(
    server: ViewServer, path: str, method: str, host: str | None, status: int
) -> None:
    target = path.replace("{token}", f"/{server.token}")
    answer, _, body = ask(server, target, method, host)
    assert answer == status, body
    assert b"fib" not in body


def test_a_token_is_made_per_server(recording: Recording) -> None:
    first, second = ViewServer(recording, 1), ViewServer(recording, 1)
    assert first.token != second.token and len(first.token) >= 32


def test_the_run_names_its_lanes_with_pid_and_thread_name(
    server: ViewServer, recording: Recording
) -> None:
    run = api(server, "run")
    [(pid,)] = recording.con.execute("SELECT pid FROM process").fetchall()
    names = {lane["name"] for lane in run["lanes"]}
    assert names == {"MainThread", "helper"}
    assert {lane["pid"] for lane in run["lanes"]} == {pid}
    assert "__main__.fib" in run["functions"].values()
    assert run["span_ns"] > 0


def count_calls(recording: Recording) -> int:
    [(calls,)] = recording.con.execute("SELECT count(*) FROM call").fetchall()
    return int(calls)


@pytest.mark.parametrize("pixels", [1, 50, 800, 100_000])
def test_every_call_in_the_window_is_drawn_or_in_a_block(
    server: ViewServer, recording: Recording, pixels: int
) -> None:
    span = api(server, "run")["span_ns"]
    pixel = max(span // pixels, 1)
    shown = api(server, f"window?since=0&until={span}&pixel={pixel}")
    drawn = len(shown["calls"]) + sum(block[4] for block in shown["blocks"])
    assert drawn == count_calls(recording)
    assert all(call[2] >= pixel or call[2] < 0 for call in shown["calls"])
    if pixels <= 1:  # the whole run is one pixel: only the roots are wider
        assert len(shown["calls"]) <= 2


def test_a_window_holds_only_the_calls_that_overlap_it(
    server: ViewServer, recording: Recording
) -> None:
    span = api(server, "run")["span_ns"]
    since, until = span // 3, span // 2
    shown = api(server, f"window?since={since}&until={until}&pixel=1")
    for _, start, duration, *_ in shown["calls"]:
        assert start < until and (duration < 0 or start + duration > since)
    assert 0 < len(shown["calls"]) < count_calls(recording)


def test_a_calls_details_hold_its_path(server: ViewServer, recording: Recording) -> None:
    [(deepest,)] = recording.con.execute(
        "SELECT id FROM call WHERE thread = 1 ORDER BY depth DESC, id LIMIT 1"
    ).fetchall()
    details = api(server, f"call?id={deepest}")
    assert details["qualname"] in ("fib", "leaf")
    assert details["path"][0]["name"] == "__main__.main"
    assert details["path"][-1]["id"] == deepest
    status, _, body = ask(server, f"/{server.token}/api/call?id=1:999999")
    assert status == 404 and b"no call" in body
    status, _, body = ask(server, f"/{server.token}/api/call?id=nonsense")
    assert status == 400 and b"not a call id" in body


def test_search_takes_a_regular_expression(server: ViewServer, recording: Recording) -> None:
    found = api(server, "search?pattern=f.b%24")["functions"]
    [(fib,)] = recording.con.execute("SELECT id FROM function WHERE qualname = 'fib'").fetchall()
    assert found == [fib]
    # Stepping through the matches: the first fib call, then the one after it.
    firsts = recording.con.execute(
        "SELECT id, start_ns - (SELECT min(start_ns) FROM call) FROM call "
        "WHERE function = ? ORDER BY start_ns, id LIMIT 2",
        [fib],
    ).fetchall()
    first = api(server, "find?pattern=fib&after=-1")["call"]
    assert first[:2] == list(firsts[0])
    second = api(server, f"find?pattern=fib&after={first[1]}")["call"]
    assert second[:2] == list(firsts[1])
    back = api(server, f"find?pattern=fib&after={second[1]}&direction=back")["call"]
    assert back[0] == first[0]
    assert api(server, "find?pattern=nothing.matches.this&after=0")["call"] is None
    status, _, body = ask(server, f"/{server.token}/api/search?pattern=%28")
    assert status == 400 and b"not a regular expression" in body
    status, _, body = ask(server, f"/{server.token}/api/window?since=x&until=1&pixel=1")
    assert status == 400 and b"since must be" in body


def test_the_server_stops_once_idle(recording: Recording) -> None:
    idle = ViewServer(recording, 1, idle_seconds=0.5)
    why: list[str] = []
    thread = threading.Thread(target=lambda: why.append(idle.serve()), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert len(why) == 1 and why[0].startswith("idle for"), why


def test_a_request_closes_its_cursor(server: ViewServer) -> None:
    # A thread serves one request: a cursor kept per thread would pile up (one
    # per zoom step, one per poll of a live run) until the server stops.
    for _ in range(5):
        api(server, "run")
        api(server, "window?since=0&until=1000&pixel=1")
    assert server._cursors == []


def test_a_path_that_is_not_ascii_is_refused_not_a_traceback(server: ViewServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"GET /\xe9t\xe9/api/run HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % server.port)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 403 ") and b"fib" not in answer


def unfinished_root_and_three_calls() -> duckdb.DuckDBPyConnection:
    """A run's calls: a root that never ended (duration -1), and three under it."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE call (run INT, id BIGINT, thread INT, start_ns BIGINT, "
        "duration_ns BIGINT, depth INT, function INT, outcome VARCHAR)"
    )
    con.execute(
        "INSERT INTO call VALUES (1, 1, 1, 0, -1, 0, 1, 'unfinished'), "
        "(1, 2, 1, 10000, 3000, 1, 2, 'returned'), (1, 3, 1, 30000, 2000, 1, 2, 'returned'), "
        "(1, 4, 1, 50000, 2500, 1, 2, 'returned')"
    )
    return con


def test_the_calls_left_out_of_a_window_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(windows, "MAX_DRAWN", 2)
    span = windows.Frame(0, 100_000)
    shown = windows.window(unfinished_root_and_three_calls(), 1, 0, 100_000, 1000, span)
    assert len(shown.calls) == 2 and shown.left_out == 2


@pytest.mark.parametrize("from_overview", [False, True])
def test_a_call_that_never_ended_is_the_last_left_out(
    monkeypatch: pytest.MonkeyPatch, from_overview: bool
) -> None:
    # A root that never ended lasts until the run's end: of the calls wide enough to
    # draw it is the longest, so the last to leave out, not the first.
    monkeypatch.setattr(windows, "MAX_DRAWN", 2)
    monkeypatch.setattr(windows, "OVERVIEW_BUCKETS", 100)
    con = unfinished_root_and_three_calls()
    span = windows.Frame(0, 100_000)
    zoomed_out = windows.overview(con, 1, span) if from_overview else None
    shown = windows.window(con, 1, 0, 100_000, 1000, span, zoomed_out)
    assert [call[5] for call in shown.calls] == [1, 2] and shown.left_out == 2


FORKS = """
import os

def child(i):
    return i

def main():
    for i in range(3):
        pid = os.fork()
        if pid == 0:
            child(i)
            os._exit(0)
        os.waitpid(pid, 0)

main()
"""

#: the largest integer a JavaScript number holds exactly
JS_EXACT = 2**53 - 1


def held_by_javascript(call_id: object) -> bool:
    return isinstance(call_id, str) or (isinstance(call_id, int) and abs(call_id) <= JS_EXACT)


def test_call_ids_of_later_processes_reach_the_page_exactly(tmp_path: Path) -> None:
    # A call id's top bits are its process's number (from bit 52): from the third
    # process on, ids pass 2**53 and a JavaScript number would round them, so the
    # page would ask for another call than the one clicked.
    with Recording(str(record(tmp_path, FORKS))) as forked:
        [(beyond,)] = forked.con.execute(
            "SELECT count(*) FROM call WHERE id > ?", [JS_EXACT]
        ).fetchall()
        assert beyond > 0
        with serving(forked) as running:
            span = api(running, "run")["span_ns"]
            shown = api(running, f"window?since=0&until={span}&pixel=1")
            assert shown["calls"] and all(held_by_javascript(c[5]) for c in shown["calls"])
            last = max(shown["calls"], key=lambda c: int(c[5]))
            assert api(running, f"call?id={last[5]}")["qualname"] == "child"
            found = api(running, f"find?pattern=child&after={last[1] + 1}&direction=back")
            assert held_by_javascript(found["call"][0])


def test_other_requests_are_answered_while_the_overview_is_counted(
    server: ViewServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Counting the overview reads every call (seconds, for a big run): meanwhile the
    # page's other questions (its panels, a call's details) must not wait for it.
    counting, go_on = threading.Event(), threading.Event()
    counted = windows.overview

    def slow_overview(*args: Any) -> windows.Overview:
        counting.set()
        go_on.wait(60)
        return counted(*args)

    monkeypatch.setattr(windows, "overview", slow_overview)
    span = api(server, "run")["span_ns"]
    zoomed_out: list[Any] = []
    asking = threading.Thread(
        target=lambda: zoomed_out.append(api(server, f"window?since=0&until={span}&pixel={span}"))
    )
    asking.start()
    try:
        assert counting.wait(30)
        assert api(server, "run")["span_ns"] == span  # not held up by the counting
        assert not zoomed_out
    finally:
        go_on.set()
        asking.join(30)
    assert zoomed_out and zoomed_out[0]["blocks"]


class CountingLock:
    """A lock that counts who came to take it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived = 0

    def __enter__(self) -> None:
        self.arrived += 1
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_stopping_while_the_overview_is_counted_does_not_count_it_again(
    server: ViewServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stopping interrupts the queries under way; a request that was waiting for the
    # overview's lock must not then begin counting it again (Ctrl-C would wait for
    # one whole count per window asked meanwhile).
    counts: list[int] = []
    counting, go_on = threading.Event(), threading.Event()

    def slow_overview(*args: Any) -> windows.Overview:
        counts.append(1)
        counting.set()
        go_on.wait(60)
        raise duckdb.InterruptException("as a count under way is when the server stops")

    monkeypatch.setattr(windows, "overview", slow_overview)
    waiting = CountingLock()
    monkeypatch.setattr(server, "_overview_lock", waiting)
    span = api(server, "run")["span_ns"]
    path = f"/{server.token}/api/window?since=0&until={span}&pixel={span}"
    asking = [threading.Thread(target=ask, args=(server, path)) for _ in range(2)]
    for thread in asking:
        thread.start()
    assert counting.wait(30)
    while waiting.arrived < 2:  # the second waits for the first's count
        time.sleep(0.01)
    server.stop()
    go_on.set()
    for thread in asking:
        thread.join(30)
    assert counts == [1]

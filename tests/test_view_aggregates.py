"""The viewer's aggregate answers: the flame graph, top functions of a window, and a
call's children a page at a time.

A program with two phases and a thread is recorded; the server is asked over
HTTP as the page asks it.  The whole run's flame graph is checked against
``scope top`` (``Recording.function_stats``), and a window's, for windows
Hypothesis picks, against the calls merged by their stack here in Python.
"""

from __future__ import annotations

import http.client
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scope.query.api import Recording
from scope.query.viewer import flame as flames
from scope.query.viewer.server import ViewServer

from .viewing import record, serving

PROGRAM = """
import threading

def leaf(i):
    return i

def fib(n):
    leaf(n)
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def alpha(i):
    leaf(i)
    return leaf(i + 1)

def first_phase():
    for i in range(20):
        alpha(i)

def second_phase():
    return fib(9)

def worker():
    fib(7)

def main():
    helper = threading.Thread(target=worker, name="helper")
    helper.start()
    helper.join()
    first_phase()
    second_phase()

main()
"""

Node = list[Any]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    with Recording(str(record(tmp_path_factory.mktemp("aggregated"), PROGRAM))) as opened:
        yield opened


@pytest.fixture(scope="module")
def server(recording: Recording) -> Iterator[ViewServer]:
    with serving(recording) as running:
        yield running


def get(server: ViewServer, route: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", f"/{server.token}/api/{route}")
    response = connection.getresponse()
    answer = response.status, response.read()
    connection.close()
    return answer


def api(server: ViewServer, route: str) -> Any:
    status, body = get(server, route)
    assert status == 200, body
    return json.loads(body)


def function_ids(recording: Recording) -> dict[str, int]:
    return dict(recording.con.execute("SELECT qualname, id FROM function").fetchall())


def the_call(recording: Recording, qualname: str) -> tuple[int, int, int]:
    """The first call of ``qualname``: id, start (ns since the run began), duration."""
    [row] = recording.con.execute(
        """SELECT c.id, c.start_ns - (SELECT min(start_ns) FROM call), c.duration_ns
           FROM call c JOIN function f ON f.run = c.run AND f.id = c.function
           WHERE f.qualname = ? ORDER BY c.id LIMIT 1""",
        [qualname],
    ).fetchall()
    return int(row[0]), int(row[1]), int(row[2])


def adds_up(nodes: list[Node]) -> None:
    """Each node's total is its self time and its children's totals."""
    below: dict[int, int] = defaultdict(int)
    for node in nodes:
        if node[0] is not None:
            below[node[0]] += node[2]
    for at, node in enumerate(nodes):
        assert node[2] == node[3] + below[at], node
        assert node[0] is None or node[0] < at  # each node after its parent


def test_the_whole_runs_flame_graph_adds_up_as_scope_top_does(
    server: ViewServer, recording: Recording
) -> None:
    graph = api(server, "flame")
    nodes = graph["nodes"]
    assert graph["merged"] == 0 and not graph["cut"] and graph["by"] == "total"
    adds_up(nodes)
    roots = defaultdict(int)
    for node in nodes:
        if node[0] is None:
            roots[node[1]] += node[2]
    root_calls = recording.con.execute(
        "SELECT function, sum(duration_ns - greatest(suspended_ns, 0)) FROM call "
        "WHERE parent IS NULL GROUP BY function"
    ).fetchall()
    assert dict(roots) == {f: int(ns) for f, ns in root_calls}
    ids = function_ids(recording)
    assert set(roots) == {ids["main"], ids["worker"]}
    own: dict[int, int] = defaultdict(int)
    calls: dict[int, int] = defaultdict(int)
    for node in nodes:
        own[node[1]] += node[3]
        calls[node[1]] += node[4]
    top = recording.function_stats(recording.resolve_run())
    assert {s.function_id: s.self_ns for s in top} == dict(own)
    assert {s.function_id: s.calls for s in top} == dict(calls)
    # fib under second_phase and under worker are two nodes: merged by path, not name.
    fib_roots = [
        n
        for n in nodes
        if n[1] == ids["fib"] and nodes[n[0]][1] in (ids["second_phase"], ids["worker"])
    ]
    assert len(fib_roots) == 2


SUMMED = """
def leaf(i):
    return i

def alpha(i):
    leaf(i)
    return leaf(i + 1)

def main():
    for i in range(30):
        alpha(i)

for i in range(12):
    leaf(i)
main()
"""


def test_calls_summed_past_their_budget_are_in_the_whole_runs_graph(tmp_path: Path) -> None:
    path = record(tmp_path, SUMMED, "--max-calls-per-function", "5")
    with Recording(str(path)) as summed, serving(summed) as running:
        [(rows,)] = summed.con.execute("SELECT count(*) FROM call_aggregate").fetchall()
        assert rows > 0
        graph = api(running, "flame")
        own: dict[int, int] = defaultdict(int)
        calls: dict[int, int] = defaultdict(int)
        for node in graph["nodes"]:
            own[node[1]] += node[3]
            calls[node[1]] += node[4]
        top = summed.function_stats(summed.resolve_run())
        assert {s.function_id: s.self_ns for s in top} == dict(own)
        assert {s.function_id: s.calls for s in top} == dict(calls)
        assert not graph["summed_left_out"]
        span = api(running, "run")["span_ns"]
        assert api(running, f"flame?since=1&until={span}")["summed_left_out"]


def test_the_flame_graph_by_self_time_is_rooted_where_time_was_spent(
    server: ViewServer, recording: Recording
) -> None:
    nodes = api(server, "flame?by=self")["nodes"]
    roots = {n[1]: n[2] for n in nodes if n[0] is None}
    top = recording.function_stats(recording.resolve_run())
    assert roots == {s.function_id: s.self_ns for s in top if s.self_ns > 0}
    ids = function_ids(recording)
    leaf = next(at for at, n in enumerate(nodes) if n[0] is None and n[1] == ids["leaf"])
    callers = {n[1] for n in nodes if n[0] == leaf}
    assert callers == {ids["fib"], ids["alpha"]}


def test_the_flame_graph_of_a_call_is_its_subtree(server: ViewServer, recording: Recording) -> None:
    call, _, duration = the_call(recording, "second_phase")
    nodes = api(server, f"flame?within={call}")["nodes"]
    ids = function_ids(recording)
    assert [n[1:3] for n in nodes if n[0] is None] == [[ids["second_phase"], duration]]
    assert {n[1] for n in nodes} == {ids["second_phase"], ids["fib"], ids["leaf"]}
    adds_up(nodes)


def calls_of(recording: Recording) -> list[tuple[int, int | None, int, int, int]]:
    """Every call: id, parent, function, start (ns since the run began), end."""
    rows = recording.con.execute(
        "SELECT id, parent, function, start_ns - (SELECT min(start_ns) FROM call), duration_ns "
        "FROM call ORDER BY id"
    ).fetchall()
    return [(i, p, f, s, s + d) for i, p, f, s, d in rows]


def merged_here(
    calls: list[tuple[int, int | None, int, int, int]], since: int, until: int
) -> dict[tuple[int, ...], list[int]]:
    """The flame graph of the window, made here: path of functions -> [total, self, calls]."""
    inside = {c[0]: c for c in calls if c[3] < until and c[4] > since}
    part = {i: min(c[4], until) - max(c[3], since) for i, c in inside.items()}
    below: dict[int, int] = defaultdict(int)
    for i, c in inside.items():
        if c[1] in inside:
            below[c[1]] += part[i]
    paths: dict[int, tuple[int, ...]] = {}
    for i, c in sorted(inside.items()):  # a caller's id is below its callees'
        paths[i] = (*paths.get(c[1], ()), c[2]) if c[1] in inside else (c[2],)
    graph: dict[tuple[int, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for i, path in paths.items():
        graph[path][0] += part[i]
        graph[path][1] += part[i] - below[i]
        graph[path][2] += 1
    return dict(graph)


def as_paths(nodes: list[Node]) -> dict[tuple[int, ...], list[int]]:
    paths: list[tuple[int, ...]] = []
    for node in nodes:
        paths.append((*(paths[node[0]] if node[0] is not None else ()), node[1]))
    return {path: node[2:5] for path, node in zip(paths, nodes, strict=True)}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.floats(0, 1), st.floats(0, 1))
def test_a_windows_flame_graph_counts_the_part_of_each_call_inside_it(
    server: ViewServer, recording: Recording, a: float, b: float
) -> None:
    span = api(server, "run")["span_ns"]
    since = int(min(a, b) * span)
    until = max(int(max(a, b) * span), since + 1)
    nodes = api(server, f"flame?since={since}&until={until}")["nodes"]
    assert as_paths(nodes) == merged_here(calls_of(recording), since, until)


def test_nodes_past_the_cap_are_merged_into_one_other_node(
    server: ViewServer, recording: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    span = api(server, "run")["span_ns"]
    whole = api(server, f"flame?since=1&until={span}")  # not the whole run's, kept
    monkeypatch.setattr(flames, "MAX_NODES", 6)
    capped = api(server, f"flame?since=1&until={span}")
    kept = [n for n in capped["nodes"] if n[1] != flames.OTHER]
    others = [n for n in capped["nodes"] if n[1] == flames.OTHER]
    assert len(kept) <= 6 and others and capped["merged"] == len(whole["nodes"]) - len(kept)
    adds_up(capped["nodes"])

    def roots(graph: dict[str, Any]) -> int:
        return sum(n[2] for n in graph["nodes"] if n[0] is None)

    assert roots(capped) == roots(whole)  # a root left out is in an "other" root
    assert sum(n[3] for n in capped["nodes"]) == sum(n[3] for n in whole["nodes"])


def test_stacks_deeper_than_followed_end_in_one_node(
    server: ViewServer, recording: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    span = api(server, "run")["span_ns"]
    whole = api(server, f"flame?since=1&until={span}")
    monkeypatch.setattr(flames, "MAX_DEPTH", 3)
    cut = api(server, f"flame?since=1&until={span}")
    assert cut["cut"] and not whole["cut"]
    deeper = [n for n in cut["nodes"] if n[1] == flames.DEEPER]
    assert deeper and all(n[2] == n[3] for n in deeper)
    adds_up(cut["nodes"])
    paths = as_paths(cut["nodes"])
    assert max(len(path) for path in paths) == 5  # four levels followed, then the rest
    full = as_paths(whole["nodes"])
    assert {p: v for p, v in paths.items() if len(p) <= 4} == {
        p: v for p, v in full.items() if len(p) <= 4
    }


def test_top_functions_of_a_window_are_those_that_ran_in_it(
    server: ViewServer, recording: Recording
) -> None:
    _, start, duration = the_call(recording, "second_phase")
    since, until = start, start + duration
    top = api(server, f"top?since={since}&until={until}")["functions"]
    names = {f["qualname"] for f in top}
    assert names == {"main", "second_phase", "fib", "leaf"}
    fib = next(f for f in top if f["qualname"] == "fib")
    [(fibs,)] = recording.con.execute(
        "SELECT count(*) FROM call c JOIN function f ON f.run = c.run AND f.id = c.function "
        "WHERE f.qualname = 'fib' AND c.thread = 1"
    ).fetchall()
    assert fib["calls"] == fibs
    main = next(f for f in top if f["qualname"] == "main")
    assert main["active_ns"] == duration  # main clipped to the window
    whole = {f["qualname"] for f in api(server, "top")["functions"]}
    assert {"alpha", "first_phase", "worker"} <= whole
    by_total = api(server, f"top?since={since}&until={until}&by=total")["functions"]
    totals = [f["active_ns"] for f in by_total]
    assert totals == sorted(totals, reverse=True)
    assert [f["self_ns"] for f in top] == sorted((f["self_ns"] for f in top), reverse=True)


def test_a_calls_children_come_a_page_at_a_time(server: ViewServer, recording: Recording) -> None:
    call, _, _ = the_call(recording, "first_phase")
    ids = function_ids(recording)
    expected = [
        row[0]
        for row in recording.con.execute(
            "SELECT id FROM call WHERE parent = ? ORDER BY id", [call]
        ).fetchall()
    ]
    pages = [api(server, f"children?id={call}&offset={at}&limit=7") for at in (0, 7, 14, 21)]
    assert [p["count"] for p in pages] == [20] * 4
    assert [len(p["children"]) for p in pages] == [7, 7, 6, 0]
    listed = [child for p in pages for child in p["children"]]
    assert [c[0] for c in listed] == expected
    assert {c[1] for c in listed} == {ids["alpha"]}
    assert all(c[3] > 0 and c[4] == "returned" for c in listed)
    assert api(server, f"children?id={expected[0]}")["count"] == 2  # alpha: two leaf calls


def test_a_window_holding_the_whole_run_is_the_whole_runs_graph(server: ViewServer) -> None:
    span = api(server, "run")["span_ns"]
    assert api(server, f"flame?since=0&until={span}") == api(server, "flame")
    assert api(server, f"flame?since=0&until={span}&by=self") == api(server, "flame?by=self")


@pytest.mark.parametrize(
    ("route", "status", "says"),
    [
        ("flame?by=width", 400, b"by must be"),
        ("flame?since=5&until=1", 400, b"window"),
        ("flame?since=5", 400, b"until must be"),
        ("flame?within=1:999999", 404, b"no call"),
        ("top?since=x&until=3", 400, b"since must be"),
        ("children?id=1:999999", 404, b"no call"),
        ("children?id=1:1&limit=0", 400, b"limit"),
        ("children?id=1:1&offset=-3", 400, b"offset"),
        ("children?id=nonsense", 400, b"not a call id"),
    ],
)
def test_bad_questions_are_answered_in_one_line(
    server: ViewServer, route: str, status: int, says: bytes
) -> None:
    answer, body = get(server, route)
    assert answer == status and says in body and body.count(b"\n") == 1, body

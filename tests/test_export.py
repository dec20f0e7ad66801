"""Exports, each checked by a reader of its format.

* Chrome Trace Event JSON: every event has the fields the Trace Event Format
  requires of its phase, and each thread's complete events nest (what Perfetto
  and chrome://tracing need to draw them);
* speedscope: speedscope's published JSON schema (from its npm package), and its
  importer's rule that events open and close like a stack, in time order;
* Parquet: DuckDB reads every file back, rows equal to the recording's;
* OTLP/JSON: OpenTelemetry's protobuf definitions parse it (unknown fields refused).

Then the filters ``scope export`` shares with ``scope calls``, each checked
against what the recording holds: which calls the trace keeps, and that it
still nests.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Result, unavailable, wait_for_service_to_leave

REQUIRE_NPM = "SCOPE_TEST_REQUIRE_NPM"

SPEEDSCOPE = "speedscope@1.25.0"
SCHEMA_CACHE = Path(os.environ.get("SCOPE_TEST_CACHE", Path.home() / ".cache" / "scope-tests"))

#: a generator consumed while its caller makes other calls (its slice overlaps
#: theirs), two threads, and an exception that is caught
PROGRAM = """
import threading

def numbers(n):
    for i in range(n):
        yield square(i)

def square(x):
    return x * x

def total(n):
    found = numbers(n)
    first = next(found)
    other = square(7)
    return first + other + sum(found)

def worker():
    total(3)

def fails():
    raise ValueError("no")

def main():
    t = threading.Thread(target=worker, name="helper")
    t.start()
    total(4)
    t.join()
    try:
        fails()
    except ValueError:
        pass

main()
"""


@pytest.fixture
def recorded(write, scope, project) -> Path:
    """The program, recorded; returns the recording's path."""
    write("app.py", PROGRAM)
    result = scope("run", "--level", "args", "app.py")
    assert result.returncode == 0, result.stderr
    wait_for_service_to_leave(project)
    return project / ".scope" / "scope.duckdb"


def stored_calls(path: Path) -> dict[int, tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            """SELECT c.id, f.qualname, c.thread, c.parent, c.outcome::VARCHAR
               FROM call c JOIN function f ON f.run = c.run AND f.id = c.function"""
        ).fetchall()
    finally:
        con.close()
    return {row[0]: row[1:] for row in rows}


def exported(scope, project: Path, fmt: str, name: str) -> Path:
    result: Result = scope("export", "--format", fmt, "-o", name)
    assert result.returncode == 0, result.stderr
    return project / name


def assert_nested_per_thread(complete: list[dict]) -> None:
    """Each thread's complete events nest: one that starts inside another ends inside it."""
    by_thread: dict[int, list[dict]] = {}
    for e in complete:
        by_thread.setdefault(e["tid"], []).append(e)
    for slices in by_thread.values():
        open_ends: list[float] = []
        for e in sorted(slices, key=lambda e: (e["ts"], -e["dur"])):
            while open_ends and open_ends[-1] <= e["ts"]:
                open_ends.pop()
            end = e["ts"] + e["dur"]
            assert not open_ends or end <= open_ends[-1] + 1e-6, e
            open_ends.append(end)


def test_chrome_trace_events_are_well_formed_and_nest_per_thread(recorded, scope, project):
    calls = stored_calls(recorded)
    trace = json.loads(exported(scope, project, "chrome", "t.json").read_text())
    events = trace["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    metadata = [e for e in events if e["ph"] == "M"]
    assert {e["ph"] for e in events} == {"X", "M"}
    for e in complete:
        assert isinstance(e["name"], str) and isinstance(e["cat"], str)
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert e["ts"] >= 0 and e["dur"] >= 0
    assert {m["name"] for m in metadata} == {"process_name", "thread_name"}
    named = {m["args"]["name"] for m in metadata if m["name"] == "thread_name"}
    (pid,) = {m["pid"] for m in metadata}
    assert named == {f"MainThread (pid {pid})", f"helper (pid {pid})"}
    assert {e["args"]["call"]: (e["name"], e["tid"]) for e in complete} == {
        call: (name, thread) for call, (name, thread, _, _) in calls.items()
    }
    assert_nested_per_thread(complete)
    raised = {e["args"]["call"] for e in complete if e["args"]["outcome"] == "raised"}
    assert {calls[c][0] for c in raised} == {"fails"}


def test_perfetto_is_the_chrome_format(recorded, scope, project):
    chrome = json.loads(exported(scope, project, "chrome", "a.json").read_text())
    perfetto = json.loads(exported(scope, project, "perfetto", "b.json").read_text())
    assert chrome == perfetto


@pytest.fixture(scope="session")
def speedscope_schema() -> dict:
    """speedscope's file format schema, from its npm package (fetched once, then cached)."""
    cached = SCHEMA_CACHE / SPEEDSCOPE / "file-format-schema.json"
    if not cached.exists():
        npm = shutil.which("npm")
        if npm is None:
            unavailable("no npm to fetch speedscope's schema (apt-get install npm)", REQUIRE_NPM)
            raise AssertionError("unreachable")
        cached.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "pack", SPEEDSCOPE, "--pack-destination", str(cached.parent)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        (tarball,) = cached.parent.glob("speedscope-*.tgz")
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/dist/release/file-format-schema.json")
            assert member is not None
            cached.write_bytes(member.read())
    return json.loads(cached.read_text())


def test_speedscope_files_follow_its_schema_and_open_like_a_stack(
    recorded, scope, project, speedscope_schema
):
    import jsonschema

    calls = stored_calls(recorded)
    document = json.loads(exported(scope, project, "speedscope", "s.json").read_text())
    jsonschema.validate(document, speedscope_schema)
    frames = document["shared"]["frames"]
    opened = 0
    names = {re.sub(r" \(pid \d+\)$", "", p["name"]) for p in document["profiles"]}
    assert names == {"MainThread", "helper"}
    assert all(re.search(r" \(pid \d+\)$", p["name"]) for p in document["profiles"])
    for profile in document["profiles"]:
        stack: list[int] = []
        last = 0
        for event in profile["events"]:
            assert event["at"] >= last
            last = event["at"]
            if event["type"] == "O":
                stack.append(event["frame"])
                opened += 1
            else:
                assert stack.pop() == event["frame"]
        assert stack == [] and profile["endValue"] == last
    assert opened == len(calls)
    assert {f["name"] for f in frames} == {name for name, *_ in calls.values()}
    assert all(f["file"].endswith("app.py") and f["line"] > 0 for f in frames)


def test_parquet_files_read_back_as_the_recordings_rows(recorded, scope, project):
    folder = exported(scope, project, "parquet", "out")
    con = duckdb.connect(str(recorded), read_only=True)
    try:
        for table in ("call", "call_aggregate", "function", "value", "thread", "process", "run"):
            key = "id" if table == "run" else "run"
            mine = con.execute(f"SELECT * FROM {table} WHERE {key} = 1 ORDER BY ALL").fetchall()
            path = str(folder / f"{table}.parquet")
            back = con.execute("SELECT * FROM read_parquet(?) ORDER BY ALL", [path]).fetchall()
            assert back == mine, table
        assert "call.parquet" in (folder / "README.txt").read_text()
    finally:
        con.close()


def test_otlp_json_parses_as_opentelemetry_trace_requests(recorded, scope, project):
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    calls = stored_calls(recorded)
    document = json.loads(exported(scope, project, "otlp", "o.json").read_text())
    # OTLP/JSON writes ids in hex where protobuf's JSON mapping has base64 (as
    # OpenTelemetry's own JSON readers do, turn them back before parsing).
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        assert len(span[key]) == (32 if key == "traceId" else 16)
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    request = json_format.ParseDict(
        document, ExportTraceServiceRequest(), ignore_unknown_fields=False
    )
    (resource,) = request.resource_spans
    service = {a.key: a.value for a in resource.resource.attributes}["service.name"]
    assert service.string_value == "scope: app.py"
    (spans,) = [s.spans for s in resource.scope_spans]
    by_id = {int.from_bytes(s.span_id, "big"): s for s in spans}
    assert set(by_id) == set(calls)
    assert len({s.trace_id for s in spans}) == 1
    for call, (name, _, parent, outcome) in calls.items():
        span = by_id[call]
        assert span.name == f"__main__.{name}"
        assert span.end_time_unix_nano >= span.start_time_unix_nano > 1_600_000_000 * 10**9
        assert (int.from_bytes(span.parent_span_id, "big") or None) == parent
        assert (span.status.code == 2) == (outcome == "raised")


def test_export_errors_are_one_line(recorded, scope, project):
    (project / "taken").mkdir()
    result = scope("export", "--format", "chrome", "-o", "taken")
    assert result.returncode == 1 and result.stderr.startswith("scope: error: cannot write taken")
    assert "Traceback" not in result.stderr
    wrong = scope("export", "--format", "svg")
    assert wrong.returncode == 2 and "'svg' is not one of" in wrong.stderr


# Filters -----------------------------------------------------------------------


def call_times(path: Path) -> dict[int, tuple[str, int, int | None, int, int]]:
    """Each stored call: (function, thread, parent, start in ns from the run's start,
    duration in ns)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            """SELECT c.id, f.qualname, c.thread, c.parent, c.start_ns - r.start_ns, c.duration_ns
               FROM call c JOIN function f ON f.run = c.run AND f.id = c.function
               JOIN run r ON r.id = c.run"""
        ).fetchall()
    finally:
        con.close()
    return {row[0]: row[1:] for row in rows}


def chrome_calls(scope, project: Path, *options: str) -> tuple[set[int], Result]:
    """Export to Chrome's format with ``options``: the call ids written, and the result."""
    result: Result = scope("export", "--format", "chrome", "-o", "f.json", *options)
    assert result.returncode == 0, result.stderr
    events = json.loads((project / "f.json").read_text())["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert_nested_per_thread(complete)
    return {e["args"]["call"] for e in complete}, result


def under(calls: dict[int, tuple], call: int) -> set[int]:
    """``call`` and every call below it, by the recorded parent links."""
    found = {call}
    grew = True
    while grew:
        more = {c for c, (_, _, parent, *_) in calls.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def test_function_keeps_its_calls_with_every_call_under_them(recorded, scope, project):
    calls = call_times(recorded)
    kept, result = chrome_calls(scope, project, "--function", "total")
    totals = [c for c, (name, *_) in calls.items() if name == "total"]
    assert len(totals) == 2  # one per thread
    expected = set().union(*(under(calls, c) for c in totals))
    assert kept == expected
    # The generator's calls of square, made while total ran, are in; main and fails are not.
    assert {calls[c][0] for c in kept} == {"total", "numbers", "square"}
    assert result.stdout.startswith(f"run 1: {len(expected)} calls written to f.json")


def test_thread_keeps_only_that_threads_calls(recorded, scope, project):
    calls = call_times(recorded)
    helper = calls[next(c for c, (name, *_) in calls.items() if name == "worker")][1]
    kept, _ = chrome_calls(scope, project, "--thread", str(helper))
    assert kept == {c for c, (_, thread, *_) in calls.items() if thread == helper}
    assert kept and len(kept) < len(calls)
    # Only that thread is named: the others would show as empty tracks.
    events = json.loads((project / "f.json").read_text())["traceEvents"]
    named = [e["tid"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"]
    assert named == [helper]


def test_since_and_until_keep_the_calls_running_in_the_window(recorded, scope, project):
    calls = call_times(recorded)
    # The moment fails began: main is still running, the threads' totals are over.
    at = next(start for name, _, _, start, _ in calls.values() if name == "fails")
    since, _ = chrome_calls(scope, project, "--since", f"{at}ns")
    assert since == {c for c, (*_, start, took) in calls.items() if took < 0 or start + took >= at}
    assert {calls[c][0] for c in since} == {"main", "fails"}
    until, _ = chrome_calls(scope, project, "--until", f"{at - 1}ns")
    assert until == {c for c, (*_, start, _) in calls.items() if start <= at - 1}
    assert "fails" not in {calls[c][0] for c in until}
    both, _ = chrome_calls(scope, project, "--since", f"{at}ns", "--until", f"{at}ns")
    assert both == since


def test_min_duration_leaves_out_shorter_calls(recorded, scope, project):
    calls = call_times(recorded)
    durations = sorted(took for *_, took in calls.values())
    middle = durations[len(durations) // 2]
    kept, _ = chrome_calls(scope, project, "--min-duration", f"{middle}ns")
    assert kept == {c for c, (*_, took) in calls.items() if took >= middle}
    assert 0 < len(kept) < len(calls)
    same, _ = chrome_calls(scope, project, "--slower-than", f"{middle}ns")
    assert same == kept


def test_filters_combine_subtrees_then_pruning(recorded, scope, project):
    calls = call_times(recorded)
    main_thread = calls[next(c for c, (name, *_) in calls.items() if name == "main")][1]
    kept, _ = chrome_calls(
        scope, project, "--function", "total", "--thread", str(main_thread), "-f", "chrome"
    )
    (total,) = [
        c for c, (name, thread, *_) in calls.items() if name == "total" and thread == main_thread
    ]
    assert kept == under(calls, total)


def test_max_calls_keeps_the_longest_and_says_how_many_it_left_out(recorded, scope, project):
    calls = call_times(recorded)
    kept, result = chrome_calls(scope, project, "--max-calls", "3")
    longest = sorted(calls, key=lambda c: (-calls[c][4], c))[:3]
    assert kept == set(longest)
    assert "main" in {calls[c][0] for c in kept}
    left = len(calls) - 3
    assert result.stderr == (
        f"scope: --max-calls 3 left out {left} shorter calls of the {len(calls)} selected\n"
    )
    assert result.stdout.startswith("run 1: 3 calls written")
    everything, whole = chrome_calls(scope, project, "--max-calls", str(len(calls)))
    assert everything == set(calls) and whole.stderr == ""


def test_every_trace_format_takes_the_filters(recorded, scope, project):
    calls = call_times(recorded)
    expected = set().union(*(under(calls, c) for c, (n, *_) in calls.items() if n == "total"))
    for fmt in ("speedscope", "otlp"):
        result = scope("export", "--format", fmt, "-o", "out.json", "--function", "total")
        assert result.returncode == 0, result.stderr
        assert f"{len(expected)} calls written" in result.stdout
    spans = json.loads((project / "out.json").read_text())["resourceSpans"][0]["scopeSpans"][0]
    assert {int(s["spanId"], 16) for s in spans["spans"]} == expected


def test_test_keeps_the_calls_a_test_made(write, scope, python, project):
    write("app.py", PROGRAM.replace("\nmain()\n", "\n"))
    write(
        "test_app.py",
        """
        import app

        def test_total():
            assert app.total(3) == 54

        def test_main():
            app.main()
        """,
    )
    assert python("-m", "pytest", "--scope", "-q", "-p", "no:cacheprovider").returncode == 0
    wait_for_service_to_leave(project)
    calls = call_times(project / ".scope" / "scope.duckdb")
    kept, _ = chrome_calls(scope, project, "--test", "test_total")
    listed = scope("calls", "--test", "test_total", "--json", "--limit", "1000")
    assert kept == {c["id"] for c in json.loads(listed.stdout)["calls"]}
    assert {calls[c][0] for c in kept} == {"test_total", "total", "numbers", "square"}
    phases = [c for c in kept if calls[c][0] == "test_total"]  # setup, call, teardown
    assert kept == set().union(*(under(calls, c) for c in phases))


def test_nothing_matched_is_an_error_and_writes_nothing(recorded, scope, project):
    result = scope("export", "--format", "chrome", "-o", "none.json", "--function", "nosuch")
    assert result.returncode == 1
    assert result.stderr == "scope: error: no call of run 1 matches the filters: nothing written\n"
    assert not (project / "none.json").exists()


def test_parquet_refuses_filters(recorded, scope, project):
    result = scope("export", "--format", "parquet", "-o", "folder", "--max-calls", "5")
    assert result.returncode == 1
    assert result.stderr.startswith("scope: error: parquet copies whole tables and takes no")
    assert len(result.stderr.splitlines()) == 1
    assert not (project / "folder").exists()


def test_overlapping_intervals_of_anchors_are_merged(tmp_path):
    """A generator's interval can begin inside another anchor's and end after it:
    every call in either interval is kept, each once."""
    from scope.query.calls import CallFilter
    from scope.query.export.selection import Selection
    from scope.storage.database import open_for_writing

    con = open_for_writing(str(tmp_path / "r.duckdb"))
    con.execute(
        """INSERT INTO run (id, argv, cwd, python, platform, pid, scope_version, started_at,
                            start_ns, end_ns, status, exit_status, calls_stored)
           VALUES (1, ['t.py'], '/', 'CPython', 'linux', 1, 'test', now(), 0, 100,
                   'complete', 0, 9)"""
    )
    con.execute(
        """INSERT INTO function (run, id, key, module, qualname, file, line, kind, level)
           VALUES (1, 1, 1, 'm', 'other', 't.py', 1, 'plain', 'calls'),
                  (1, 2, 2, 'm', 'gen', 't.py', 2, 'generator', 'calls')"""
    )
    # (id, end_id, function): gen 2 spans [2, 5], gen 4 begins inside it and spans [4, 7].
    shape = [(1, 9, 1), (2, 5, 2), (3, 3, 1), (4, 7, 2), (5, 5, 1), (6, 6, 1), (7, 7, 1),
             (8, 8, 1), (9, 9, 1)]  # fmt: skip
    con.executemany(
        "INSERT INTO call VALUES (1, ?, 1, NULL, ?, 0, ?, ?, 10, 'returned', 0, 0)",
        [[i, end, f, i * 10] for i, end, f in shape],
    )
    selection = Selection(1, CallFilter(function="gen"))
    sql, params = selection.rows("c.id")
    assert [row[0] for row in con.execute(sql, params).fetchall()] == [2, 3, 4, 5, 6, 7]
    assert selection.count(con) == 6
    capped = Selection(1, CallFilter(function="gen"), max_calls=2)
    sql, params = capped.rows("c.id")
    assert [row[0] for row in con.execute(sql, params).fetchall()] == [2, 3]
    con.close()

"""Exports, each checked by a reader of its format.

* Chrome Trace Event JSON: every event has the fields the Trace Event Format
  requires of its phase, and each thread's complete events nest (what Perfetto
  and chrome://tracing need to draw them);
* speedscope: speedscope's published JSON schema (from its npm package), and its
  importer's rule that events open and close like a stack, in time order;
* Parquet: DuckDB reads every file back, rows equal to the recording's;
* OTLP/JSON: OpenTelemetry's protobuf definitions parse it (unknown fields refused).
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

from tests.conftest import Result, unavailable

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

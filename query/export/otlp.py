"""OpenTelemetry's OTLP/JSON: one span per call, for a collector or any OTLP reader.

The file is an ``ExportTraceServiceRequest`` in OTLP's JSON encoding (what a
collector's OTLP/HTTP endpoint accepts and its file exporter writes): one
``resourceSpans`` per process, whose resource names the program, then the
spans of its calls.  The run is one trace; a call's span id is its call id (16
hex digits, unique in the run) and its parent's is its parent span id.  Times
are Unix nanoseconds (the run's wall-clock start plus the recorder clock);
a call that raised has status ERROR, and one that never ended ends with the run.
Attributes follow OpenTelemetry's ``code.*`` and ``thread.*`` conventions.
"""

from __future__ import annotations

import hashlib
import json
from typing import TextIO

import duckdb
from scope.query.export import Progress
from scope.query.export.selection import Selection
from scope.query.export.stream import (
    CallRecord,
    FunctionInfo,
    RunInfo,
    calls,
    functions,
    run_info,
)
from scope.query.ids import PROCESS_SHIFT

from scope import __version__

SPAN_KIND_INTERNAL = 1
STATUS_ERROR = 2
#: calls between two progress reports
REPORT_EVERY = 100_000


def _value(value: object) -> dict[str, object]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, list):
        return {"arrayValue": {"values": [_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _attributes(pairs: dict[str, object]) -> list[dict[str, object]]:
    return [{"key": k, "value": _value(v)} for k, v in pairs.items() if v is not None]


def trace_id(info: RunInfo) -> str:
    """The run's trace id: 32 hex digits, the same on every export of the run."""
    seed = f"{info.run}:{info.start_unix_ns}:{sorted(info.pids.values())}"
    return hashlib.blake2b(seed.encode(), digest_size=16).hexdigest()


def _span(row: CallRecord, info: RunInfo, trace: str, f: FunctionInfo | None) -> dict[str, object]:
    call_id, thread, parent, function, start_ns, duration_ns, outcome = row
    start = info.start_unix_ns + start_ns - info.start_ns
    run_end = info.start_unix_ns + info.end_ns - info.start_ns
    end = start + duration_ns if duration_ns >= 0 else run_end
    span: dict[str, object] = {
        "traceId": trace,
        "spanId": f"{call_id:016x}",
        "name": f"{f.module}.{f.qualname}" if f else f"<function {function}>",
        "kind": SPAN_KIND_INTERNAL,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(max(end, start)),
        "attributes": _attributes(
            {
                "code.function": f.qualname if f else None,
                "code.namespace": f.module if f else None,
                "code.filepath": f.file if f else None,
                "code.lineno": f.line if f else None,
                "thread.id": thread,
                "scope.call_id": call_id,
                "scope.outcome": outcome,
            }
        ),
    }
    if parent is not None:
        span["parentSpanId"] = f"{parent:016x}"
    if outcome == "raised":
        span["status"] = {"code": STATUS_ERROR, "message": "an exception left the call"}
    return span


def _open_process(out: TextIO, info: RunInfo, number: int, first: bool) -> None:
    resource = {
        "attributes": _attributes(
            {
                "service.name": f"scope: {info.argv[0] if info.argv else 'python'}",
                "process.pid": info.pids.get(number),
                "process.command_args": info.argv,
            }
        )
    }
    scope = {"name": "scope", "version": __version__}
    out.write(("" if first else "]}]},") + '{"resource": ' + json.dumps(resource))
    out.write(', "scopeSpans": [{"scope": ' + json.dumps(scope) + ', "spans": [')


def write(
    con: duckdb.DuckDBPyConnection, selection: Selection, path: str, progress: Progress
) -> int:
    """Write the selected calls to ``path``; returns how many spans were written."""
    run = selection.run
    info = run_info(con, run)
    names = functions(con, run)
    trace = trace_id(info)
    process: int | None = None
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        out.write('{"resourceSpans": [')
        for row in calls(con, selection):
            number = row[0] >> PROCESS_SHIFT
            first_span = number != process
            if first_span:
                _open_process(out, info, number, process is None)
                process = number
            span = _span(row, info, trace, names.get(row[3]))
            out.write(("" if first_span else ",") + json.dumps(span))
            written += 1
            if written % REPORT_EVERY == 0:
                progress(written, info.calls)
        out.write("]}]}]}\n" if process is not None else "]}\n")
    progress(written, info.calls)
    return written

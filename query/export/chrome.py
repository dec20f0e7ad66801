"""Chrome's Trace Event JSON: the format Perfetto's UI and chrome://tracing open.

One complete event (``"ph": "X"``) per call, on its process and thread, with
microsecond timestamps from the run's start; metadata events (``"ph": "M"``)
name the processes and threads.  The call's id, outcome and recorded duration
go in ``args``, so a slice in the viewer can be looked up with ``scope tree``.
The file is written as it is read, one event per line.
"""

from __future__ import annotations

import json

import duckdb
from scope.query.export import Progress
from scope.query.export.selection import Selection
from scope.query.export.stream import FunctionInfo, functions, nested, run_info
from scope.query.ids import PROCESS_SHIFT, SLOT_PROCESS_SHIFT

#: events between two progress reports
REPORT_EVERY = 100_000


def _head(number: int, f: FunctionInfo | None) -> str:
    """The start of a function's complete events, its name and category encoded once."""
    name = json.dumps(f.qualname if f else f"<function {number}>")
    return f'{{"ph": "X", "name": {name}, "cat": {json.dumps(f.module if f else "?")}, '


def write(
    con: duckdb.DuckDBPyConnection, selection: Selection, path: str, progress: Progress
) -> int:
    """Write the selected calls to ``path``; returns how many calls were written."""
    run = selection.run
    info = run_info(con, run)
    names = functions(con, run)
    pid_of = info.pids
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        out.write('{"displayTimeUnit": "ns", "otherData": ')
        out.write(json.dumps({"scope_run": run, "argv": info.argv}))
        out.write(', "traceEvents": [\n')
        heads: dict[int, str] = {}
        threads: set[int] = set()
        for call in nested(con, info, selection):
            head = heads.get(call.function)
            if head is None:
                head = heads[call.function] = _head(call.function, names.get(call.function))
            threads.add(call.thread)
            out.write(",\n" if written else "")
            # By hand rather than json.dumps: a third of the time of a big export.
            # Numbers print as JSON does (float repr); outcomes are plain words.
            out.write(
                f'{head}"ts": {call.start / 1000!r}, "dur": {(call.end - call.start) / 1000!r}, '
                f'"pid": {pid_of.get(call.id >> PROCESS_SHIFT, 0)}, "tid": {call.thread}, '
                f'"args": {{"call": {call.id}, "outcome": "{call.outcome}", '
                f'"duration_ns": {call.duration_ns}}}}}'
            )
            written += 1
            if written % REPORT_EVERY == 0:
                progress(written, info.calls)
        # Named after the calls, so that only the threads and processes an export
        # holds are named: a filtered export shows no empty tracks.
        pid_of_thread = {t: pid_of.get(t >> SLOT_PROCESS_SHIFT, 0) for t in threads}
        metadata = [
            {"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
             "args": {"name": f"{' '.join(info.argv) or 'python'} (pid {pid})"}}
            for pid in sorted(set(pid_of_thread.values()))
        ]  # fmt: skip
        metadata += [
            {"ph": "M", "name": "thread_name", "pid": pid_of_thread[slot], "tid": slot,
             "args": {"name": info.threads.get(slot, f"thread {slot}")}}
            for slot in sorted(threads)
        ]  # fmt: skip
        if metadata:
            out.write(",\n" if written else "")
            out.write(",\n".join(json.dumps(m) for m in metadata))
        out.write("\n]}\n")
    progress(written, info.calls)
    return written

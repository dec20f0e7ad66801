"""speedscope's evented format: one profile per thread, calls as open and close events.

The file follows speedscope's published schema
(https://www.speedscope.app/file-format-schema.json): per thread an
``evented`` profile in nanoseconds from the run's start whose ``O`` and ``C``
events nest (``scope.query.export.stream.nested`` makes sure they do), then
the frames they name (a function's name, file and line).  JSON objects are
unordered, so the file is written as the calls are read, frames last.
"""

from __future__ import annotations

import json
from typing import TextIO

import duckdb
from scope.query.export import Progress
from scope.query.export.selection import Selection
from scope.query.export.stream import FunctionInfo, functions, nested, run_info

SCHEMA = "https://www.speedscope.app/file-format-schema.json"
#: calls between two progress reports
REPORT_EVERY = 100_000


class _Profiles:
    """Writes the profiles array, one thread's profile after another."""

    def __init__(self, out: TextIO, thread_names: dict[int, str]) -> None:
        self.out = out
        self.thread_names = thread_names
        self.thread: int | None = None
        self.closing: list[tuple[int, int]] = []  # (end, frame) of the calls drawn open
        self.last = 0
        self.first_event = True

    def _event(self, kind: str, frame: int, at: int) -> None:
        self.out.write(
            ("" if self.first_event else ",") + f'{{"type":"{kind}","frame":{frame},"at":{at}}}'
        )
        self.first_event = False
        self.last = at

    def close_until(self, time: int | None) -> None:
        while self.closing and (time is None or self.closing[-1][0] <= time):
            end, frame = self.closing.pop()
            self._event("C", frame, end)

    def open(self, thread: int, frame: int, start: int, end: int) -> None:
        if thread != self.thread:
            self.finish()
            name = self.thread_names.get(thread, f"thread {thread}")
            header = {"type": "evented", "name": name, "unit": "nanoseconds", "startValue": 0}
            self.out.write(("," if self.thread is not None else "") + json.dumps(header)[:-1])
            self.out.write(', "events": [')
            self.thread, self.first_event, self.last = thread, True, 0
        self.close_until(start)
        self._event("O", frame, start)
        self.closing.append((end, frame))

    def finish(self) -> None:
        if self.thread is None:
            return
        self.close_until(None)
        self.out.write(f'], "endValue": {self.last}}}')


def _frame(number: int, f: FunctionInfo | None) -> dict[str, object]:
    entry: dict[str, object] = {"name": f.qualname if f else f"<function {number}>"}
    if f and f.file:
        entry["file"] = f.file
    if f and f.line:
        entry["line"] = f.line
    return entry


def write(
    con: duckdb.DuckDBPyConnection, selection: Selection, path: str, progress: Progress
) -> int:
    """Write the selected calls to ``path``; returns how many calls were written."""
    run = selection.run
    info = run_info(con, run)
    names = functions(con, run)
    frame_of: dict[int, int] = {}
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        head = {"$schema": SCHEMA, "name": f"scope run {run}: {' '.join(info.argv)}",
                "exporter": "scope", "activeProfileIndex": 0}  # fmt: skip
        out.write(json.dumps(head)[:-1] + ', "profiles": [')
        profiles = _Profiles(out, info.threads)
        for call in nested(con, info, selection):
            frame = frame_of.setdefault(call.function, len(frame_of))
            profiles.open(call.thread, frame, call.start, call.end)
            written += 1
            if written % REPORT_EVERY == 0:
                progress(written, info.calls)
        profiles.finish()
        frames = [_frame(number, names.get(number)) for number in frame_of]
        out.write('], "shared": {"frames": ' + json.dumps(frames) + "}}\n")
    progress(written, info.calls)
    return written

"""Record instrumented source inside the test process, without a database.

``record(source, level, run)`` compiles ``source`` with scope's rewriter,
lets ``run`` call into the module while recording is on, then drains the
rings: tests see the same call rows and value rows the writer would store,
in milliseconds.
"""

from __future__ import annotations

import gc
import textwrap
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scope.capture import runtime
from scope.instrument.analyze import analyze_source
from scope.instrument.plan import PlanSettings, make_plan
from scope.instrument.rewrite import compile_instrumented
from scope.native.batch import RECORD_DTYPE, VALUE_DTYPE, drain, kinds
from scope.storage.values import value_columns

from scope import native
from scope.redaction import native_patterns
from tests.calls import OUTCOME_UNFINISHED, split_batch


@dataclass
class Call:
    """One recorded call, with its values, as a test wants to see it."""

    id: int
    qualname: str
    parent: int
    end_id: int
    depth: int
    outcome: int
    duration_ns: int
    suspended_ns: int
    suspensions: int
    args: dict[str, str] = field(default_factory=dict)
    returned: str | None = None
    raised: str | None = None
    attributes: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Recorded:
    """What a recording captured: calls by id, and the native counters' change."""

    calls: dict[int, Call]
    unfinished: int
    stats: native.RingStats

    def named(self, qualname: str) -> list[Call]:
        """The calls of one function, in id order."""
        return [c for c in self.calls.values() if c.qualname == qualname]

    def parent_of(self, call: Call) -> Call | None:
        """The recorded parent, if it is in this recording."""
        return self.calls.get(call.parent)

    def children(self, call: Call) -> list[Call]:
        """The calls whose parent is ``call``."""
        return [c for c in self.calls.values() if c.parent == call.id]


def drain_everything() -> tuple[np.ndarray, np.ndarray]:
    """Every pending record and the arena bytes they use."""
    records, arenas = [], []
    buffer = np.zeros(1 << 16, RECORD_DTYPE)
    arena = np.zeros(1 << 22, np.uint8)
    offset = 0
    while True:
        n, used = drain(buffer, arena)
        if n == 0:
            break
        chunk = buffer[:n].copy()
        values = chunk.view(VALUE_DTYPE)
        values["arena_pos"][kinds(chunk) == native.VALUE] += offset
        records.append(chunk)
        arenas.append(arena[:used].copy())
        offset += used
    if not records:
        return np.empty(0, RECORD_DTYPE), np.empty(0, np.uint8)
    return np.concatenate(records), np.concatenate(arenas)


def load(source: str, level: str = "calls", name: str = "recorded", redact=()) -> types.ModuleType:
    """Compile ``source`` instrumented at ``level`` into a fresh module."""
    source = textwrap.dedent(source)
    path = f"/virtual/{name}.py"
    plan = make_plan(name, path, analyze_source(source), PlanSettings(level, redact=tuple(redact)))
    module = types.ModuleType(name)
    module.__file__ = path
    module.__dict__["__scope_plan__"] = plan
    exec(compile_instrumented(source, path, plan), module.__dict__)
    return module


def load_file(path: Path, instrumented: bool, level: str, name: str) -> types.ModuleType:
    """The file at ``path`` as module ``name``, compiled plainly or instrumented at
    ``level``, from its real path (tracebacks and tracers read its lines)."""
    source = path.read_text()
    plan = make_plan(name, str(path), analyze_source(source), PlanSettings(level))
    if instrumented:
        code = compile_instrumented(source, str(path), plan)
    else:
        code = compile(source, str(path), "exec", dont_inherit=True)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    module.__dict__["__scope_plan__"] = plan  # how ``record`` names recorded calls
    exec(code, module.__dict__)
    return module


def record(
    module: types.ModuleType,
    run: Callable[[types.ModuleType], object],
    *,
    max_bytes: int = 64,
    items: int = 4,
    call_repr: bool = False,
    redact: tuple[str, ...] = (),
    arena_bytes: int = 1 << 20,
    max_depth: int = 1 << 16,
) -> Recorded:
    """Run ``run(module)`` with recording on; return the recorded calls.

    Calls still open when ``run`` returns (suspended generators, a thread's
    calls when it ended) are reported unfinished, as at the end of a run.

    It runs on a new thread, so that its ring is created with this harness's
    sizes whatever earlier tests configured.
    """
    runtime.install_entry_points()
    gc.collect()  # earlier tests' suspended generators end now, unrecorded
    native.configure(1 << 20, "drop", 0, max_depth, arena_bytes=arena_bytes)
    native.set_budget(0)  # every call stored, whatever budget an earlier test left
    native.configure_values(max_bytes, items, call_repr, native_patterns(redact))
    drain_everything()
    before = native.stats()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            run(module)
        except BaseException as exc:
            failure.append(exc)

    native.set_enabled(True)
    try:
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    finally:
        native.set_enabled(False)
        native.unfinish_open()
    if failure:
        raise failure[0]
    records, arena = drain_everything()
    after = native.stats()
    plan = module.__dict__["__scope_plan__"]
    functions = {f.id: f for f in plan.functions}
    cols, values = split_batch(records)
    calls: dict[int, Call] = {}
    for i in range(len(cols)):
        call_id = int(cols.id[i])
        calls[call_id] = Call(
            id=call_id,
            qualname=functions[int(cols.function[i])].qualname,
            parent=int(cols.parent[i]),
            end_id=int(cols.end_id[i]),
            depth=int(cols.depth[i]),
            outcome=int(cols.outcome[i]),
            duration_ns=int(cols.duration_ns[i]),
            suspended_ns=int(cols.suspended_ns[i]),
            suspensions=int(cols.suspensions[i]),
        )

    def name_of(func: int, role: str, index: int) -> str | None:
        f = functions[func]
        names = f.params if role == "argument" else f.attributes
        # A scope's lambdas share one plan: their arguments are known by position only.
        known = role in ("argument", "attribute") and index < len(names)
        return names[index] if known else None

    rows = value_columns(values, arena, name_of)
    for call_id, role, name, text in zip(
        rows["call"].tolist(), rows["role"], rows["name"], rows["value"], strict=True
    ):
        call = calls[call_id]
        if role == "argument":
            call.args[name] = text
        elif role == "return":
            call.returned = text
        elif role == "raise":
            call.raised = text
        else:
            call.attributes.append((name, text))
    delta = native.RingStats(
        **{k: getattr(after, k) - getattr(before, k) for k in native.RingStats.__dataclass_fields__}
    )
    unfinished = int((cols.outcome == OUTCOME_UNFINISHED).sum())
    return Recorded(calls, unfinished, delta)


class OwnThread:
    """A thread that runs functions on command, one at a time.

    The recorder keeps a ring and a stack per OS thread; a test that wants to
    interleave one thread's work with drains (or several threads' work in a
    chosen order) hands each step to ``call``, which returns once it has run.
    """

    def __init__(self) -> None:
        self._commands: list[Callable[[], object] | None] = []
        self._cond = threading.Condition()
        self._done = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._commands)
                step = self._commands.pop(0)
            if step is None:
                return
            step()
            with self._cond:
                self._done += 1
                self._cond.notify_all()

    def call(self, step: Callable[[], object]) -> None:
        """Run ``step`` on this thread and wait for it."""
        with self._cond:
            target = self._done + 1
            self._commands.append(step)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._done == target)

    def stop(self) -> None:
        """End the thread and wait until the recorder has seen it end.

        ``join`` returns when the Python thread is done; the C destructor that
        writes its open calls as unfinished and stamps its end runs a moment
        later on the OS thread, so this also waits (bounded) for the stamp.
        """
        ident = self._thread.ident
        with self._cond:
            self._commands.append(None)
            self._cond.notify_all()
        self._thread.join()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            mine = [t for t in native.threads() if t.ident == ident]
            if not mine or mine[-1].end_ns:  # no ring, or the newest ring of that ident ended
                return
            time.sleep(0.0005)

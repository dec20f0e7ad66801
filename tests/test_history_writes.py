"""``scope history`` holds every write to ``self.<attribute>`` that happened, and no other.

Each program runs under plain python and under ``scope run --level full``: the
output must be the same, and the recorded writes exactly those the program
made (every assignment form: augmented, chained, unpacking, ``for`` and
``with`` targets, sync and async), with their values.  Writes that raised (a
refusing ``__setattr__``, a property setter, a frozen dataclass) are not there.
"""

from __future__ import annotations

import sys
import textwrap
import traceback
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scope.capture import runtime
from scope.instrument.analyze import analyze_source
from scope.instrument.plan import ModulePlan, PlanSettings, make_plan
from scope.instrument.rewrite import compile_instrumented
from scope.native.batch import RECORD_DTYPE, VALUE_DTYPE, drain, function_ids, kinds
from scope.query.api import Recording
from scope.storage.values import summarize

from scope import native
from tests.conftest import run

runtime.install_entry_points()

FORMS = """
import asyncio
import dataclasses
import io


class Account:
    def __init__(self):
        self.balance = 0
        self.a = self.b = 0
        self.x, self.y = 1, 2
        self.p, *self.rest = [3, 4, 5]
        (self.n1, [self.n2, self.n3]) = (6, (7, 8))
        for self.i in range(2):
            pass
        with io.StringIO("t") as self.f:
            pass
        self.note: int = 9
        self.password, self.shown = "hunter2", "plain"
        self.password += "!"

    def deposit(self, amount):
        self.balance += amount
        self.balance *= 2


class Ticks:
    def __aiter__(self):
        self.left = 2
        return self

    async def __anext__(self):
        if not self.left:
            raise StopAsyncIteration
        self.left -= 1
        return self.left


class Guard:
    async def __aenter__(self):
        return "entered"

    async def __aexit__(self, *exc):
        return False


class Poller:
    async def poll(self):
        async for self.tick in Ticks():
            pass
        async with Guard() as self.state:
            pass


acc = Account()
acc.deposit(5)
asyncio.run(Poller().poll())
print(acc.balance, acc.a, acc.b, acc.x, acc.y, acc.p, acc.rest, acc.i, acc.note, acc.shown)
"""

REFUSED = """
import dataclasses


class Refuser:
    def __init__(self):
        self.ok = 1
        try:
            self.bad = 2
        except AttributeError as exc:
            print("refused", exc)

    def __setattr__(self, name, value):
        if name == "bad":
            raise AttributeError("no " + name)
        object.__setattr__(self, name, value)


class Prop:
    def __init__(self):
        self.value = 1
        try:
            self.value = -1
        except ValueError as exc:
            print("setter raised", exc)

    @property
    def value(self):
        return self._v

    @value.setter
    def value(self, v):
        if v < 0:
            raise ValueError(v)
        self._v = v


@dataclasses.dataclass(frozen=True)
class Frozen:
    z: int = 0

    def change(self):
        try:
            self.z = 5
        except dataclasses.FrozenInstanceError as exc:
            print("frozen", exc)


class Slotted:
    __slots__ = ("s", "t")

    def __init__(self):
        self.s = 11
        try:
            self.s, self.t = 12, 1 / 0
        except ZeroDivisionError:
            print("value raised")


Refuser()
print(Prop().value)
Frozen().change()
print(Slotted().s)
"""


class StartsWith(str):
    """Equal to any text that starts with this one."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith(str(self))

    __hash__ = str.__hash__


def recorded(project: Path, source: str) -> list[tuple[str, str, str | None]]:
    """Run ``source`` plainly and under scope (same output); the writes scope recorded."""
    (project / "app.py").write_text(textwrap.dedent(source))
    plain = run([sys.executable, "app.py"], project)
    traced = run([sys.executable, "-m", "scope", "run", "--level", "full", "app.py"], project)
    assert plain.returncode == 0, plain.stderr
    assert (traced.returncode, traced.stdout, traced.stderr) == (0, plain.stdout, plain.stderr)
    with Recording(str(project / ".scope" / "scope.duckdb")) as recording:
        writes = recording.history(run=1)
    return [(w.qualname, w.attribute, w.value) for w in writes]


def test_every_form_of_attribute_write_is_recorded_with_its_value(project):
    init = "Account.__init__"
    assert recorded(project, FORMS) == [
        (init, "balance", "0"),
        (init, "a", "0"),
        (init, "b", "0"),
        (init, "x", "1"),
        (init, "y", "2"),
        (init, "p", "3"),
        (init, "rest", "[4, 5]"),
        (init, "n1", "6"),
        (init, "n2", "7"),
        (init, "n3", "8"),
        (init, "i", "0"),
        (init, "i", "1"),
        (init, "f", StartsWith("<_io.StringIO at ")),
        (init, "note", "9"),
        (init, "password", "<redacted>"),
        (init, "shown", "'plain'"),
        (init, "password", "<redacted>"),
        ("Account.deposit", "balance", "5"),
        ("Account.deposit", "balance", "10"),
        ("Ticks.__aiter__", "left", "2"),
        ("Ticks.__anext__", "left", "1"),
        ("Poller.poll", "tick", "1"),
        ("Ticks.__anext__", "left", "0"),
        ("Poller.poll", "tick", "0"),
        ("Poller.poll", "state", "'entered'"),
    ]


def test_writes_that_raised_are_not_recorded(project):
    assert recorded(project, REFUSED) == [
        ("Refuser.__init__", "ok", "1"),
        ("Prop.value", "_v", "1"),
        ("Prop.__init__", "value", "<not kept on the instance>"),
        ("Slotted.__init__", "s", "11"),
    ]


def load(source: str, instrument: bool) -> types.ModuleType:
    """``source`` as a module, compiled plainly or instrumented at ``full`` level."""
    path = "/virtual/writes.py"
    if instrument:
        code = compile_instrumented(source, path, plan_of(source))
    else:
        code = compile(source, path, "exec", dont_inherit=True)
    module = types.ModuleType("writes")
    module.__file__ = path
    exec(code, module.__dict__)
    return module


def plan_of(source: str) -> ModulePlan:
    """The ``full`` level plan of the module ``load`` makes."""
    return make_plan("writes", "/virtual/writes.py", analyze_source(source), PlanSettings("full"))


def outcome(module: types.ModuleType) -> tuple[object, ...]:
    """What running ``Box().fill()`` shows: the object's state, or the traceback's positions."""
    box = module.Box()
    try:
        box.fill()
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        where = [(f.lineno, f.end_lineno, f.colno, f.end_colno) for f in frames[1:]]
        return ("raised", type(exc).__name__, where, dict(vars(box)), box.log)
    return ("returned", dict(vars(box)), box.log, module.Box.fill.__code__.co_varnames)


def recorded_in_process(
    source: str, qualname: str, action: Callable[[], object]
) -> list[tuple[str, str]]:
    """Run ``action`` (which runs the instrumented ``source``) while recording; the
    attribute writes that the function ``qualname`` recorded, with their values."""
    function = next(f for f in plan_of(source).functions if f.qualname == qualname)
    records = np.zeros(4096, dtype=RECORD_DTYPE)
    arena = np.zeros(1 << 16, np.uint8)
    while drain(records, arena)[0]:
        pass
    # Whatever an earlier test of this process set: rings that wait, every call stored.
    native.configure(1 << 12, "block", 2_000_000_000, 1 << 16, clock="monotonic")
    native.set_budget(0)
    native.set_enabled(True)
    try:
        action()
    finally:
        native.set_enabled(False)
    drained = records[: drain(records, arena)[0]]
    values = drained[kinds(drained) == native.VALUE].view(VALUE_DTYPE)
    writes = values[
        (values["role"] == native.lib.SCOPE_ROLE_ATTR) & (function_ids(values) == function.id)
    ]
    return [
        (
            function.attributes[int(w["index"])],
            summarize(
                int(w["tag"]),
                int(w["payload"]),
                arena[w["arena_pos"] : w["arena_pos"] + w["arena_len"]].tobytes(),
            ).text,
        )
        for w in writes
    ]


TARGETS = st.sampled_from(["self.a", "self.b", "local", "self.c"])


@st.composite
def statements(draw: st.DrawFn) -> str:
    """One statement that stores to attributes of ``self`` in some form."""
    form = draw(st.sampled_from(["assign", "chain", "aug", "unpack", "star", "for", "with"]))
    # Two stores to one attribute in one statement would be recorded with the
    # last value twice: what is read back is what the statement left.
    one, two = draw(st.lists(TARGETS, min_size=2, max_size=2, unique=True))
    value = draw(st.sampled_from(["1", "[2, 3]", "(4, 5)", "'s'", "1 / 0", "(\n    6)"]))
    if form == "assign":
        return f"{one} = {value}"
    if form == "chain":
        return f"{one} = {two} = {value}"
    if form == "aug":
        return f"{one} = 0\n{one} += {draw(st.sampled_from(['1', '1 / 0', 'None']))}"
    if form == "unpack":
        return f"{one}, ({two}, self.d) = {value}, {value}"
    if form == "star":
        return f"{one}, *{two} = {value}"
    if form == "for":
        return f"for {one} in {value}:\n    {two} = {one}"
    return f"with Guard({value}) as {one}:\n    {two} = 0"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(statements(), min_size=1, max_size=5))
def test_any_assignment_form_is_recorded_as_it_happened(body):
    lines = "\n".join(textwrap.indent(statement, " " * 8) for statement in body)
    source = (
        "class Guard:\n"
        "    def __init__(self, value):\n        self.value = value\n"
        "    def __enter__(self):\n        return self.value\n"
        "    def __exit__(self, *exc):\n        return False\n\n"
        "class Box:\n"
        "    def __init__(self):\n"
        "        object.__setattr__(self, 'log', [])\n"
        "    def __setattr__(self, name, value):\n"
        "        object.__setattr__(self, name, value)\n"
        "        self.log.append((name, repr(value)))\n"
        "    def fill(self):\n"
        "        local = None\n"
        f"{lines}\n"
    )
    try:
        compile(source, "/virtual/writes.py", "exec")
    except SyntaxError:
        return
    instrumented = load(source, True)
    seen = outcome(instrumented)
    assert seen == outcome(load(source, False))
    log = seen[-1] if seen[0] == "raised" else seen[2]
    writes = recorded_in_process(source, "Box.fill", lambda: outcome(instrumented))
    if seen[0] == "returned":
        assert writes == log
    else:
        # Only writes that happened, in order; a statement that raised after some of
        # its stores (a nested unpacking of the wrong shape) has them unrecorded.
        assert writes == log[: len(writes)]


def test_the_recorder_reads_no_property_and_adds_no_local(project):
    source = textwrap.dedent(
        """
        class Lazy:
            reads = 0

            @property
            def value(self):
                Lazy.reads += 1
                return 1

            @value.setter
            def value(self, v):
                pass

            def set(self):
                self.value = 2
                self.value += 3
                return Lazy.reads
        """
    )
    plain, instrumented = load(source, False), load(source, True)
    reads: list[object] = []
    writes = recorded_in_process(
        source, "Lazy.set", lambda: reads.append(instrumented.Lazy().set())
    )
    assert reads == [plain.Lazy().set()] == [1]
    assert writes == [("value", "<not kept on the instance>")] * 2
    assert instrumented.Lazy.set.__code__.co_varnames == plain.Lazy.set.__code__.co_varnames


def test_a_traced_program_sees_no_new_line_events():
    source = "class C:\n    def f(self):\n        self.a, self.b = (\n            1, 2)\n"
    source += "        for self.i in range(2):\n            pass\n        self.a += 1\n"

    def events(module: types.ModuleType) -> list[tuple[str, int]]:
        seen: list[tuple[str, int]] = []

        def tracer(frame, event, arg):
            if frame.f_code.co_name == "f":
                seen.append((event, frame.f_lineno - frame.f_code.co_firstlineno))
            return tracer

        sys.settrace(tracer)
        try:
            module.C().f()
        finally:
            sys.settrace(None)
        return seen

    def body(seen: list[tuple[str, int]]) -> list[tuple[str, int]]:
        # up to the last statement: what follows is the exit path's (a matter of its own)
        return seen[: seen.index(("line", 5)) + 1]

    instrumented = load(source, True)
    assert body(events(instrumented)) == body(events(load(source, False)))
    writes = recorded_in_process(source, "C.f", lambda: instrumented.C().f())
    assert writes == [("a", "1"), ("b", "2"), ("i", "0"), ("i", "1"), ("a", "2")]

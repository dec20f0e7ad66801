"""What a program can observe of its own functions is the same when they are instrumented.

Each test loads one source file twice from a real path, plainly and
instrumented, and runs both while scope records (so the native side is
exercised, not just the rewriting): tracebacks with their source lines and
PEP 657 carets, frame walks, warnings' positions, generator and async
generator protocols, object lifetimes and dunders scope might call.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import textwrap
import traceback
import types
import warnings
import weakref
from pathlib import Path

import pytest
from scope.capture import runtime

from .harness import load_file, record

SOURCE = """
import inspect
import sys
import warnings


def divide(a, b):
    ratio = a / b
    return ratio


def nested_call(values):
    return [divide(v, v - 2) for v in values]


def lookup(table, key):
    return table[key]["inner"].upper()


def stack_names():
    return [(f.function, f.lineno) for f in inspect.stack()[:4]]


def frame_chain():
    frame, names = sys._getframe(0), []
    while frame is not None and len(names) < 4:
        names.append((frame.f_code.co_name, frame.f_lineno))
        frame = frame.f_back
    return names


def caller_of_caller():
    return sys._getframe(2).f_code.co_name


def middle():
    return caller_of_caller()


def deprecated():
    warnings.warn("old", DeprecationWarning, stacklevel=2)
    return 1


def warns_through():
    return deprecated()


def counting(n):
    try:
        for i in range(n):
            received = yield i
            if received == "stop":
                return "stopped"
    finally:
        counting.closed = True


def stubborn():
    try:
        yield 1
    except GeneratorExit:
        yield 2


def leaks_stop_iteration():
    yield 1
    raise StopIteration("inside")


def delegating():
    result = yield from counting(3)
    return result


async def ticker(n):
    try:
        for i in range(n):
            await asyncio_sleep(0)
            yield i
    finally:
        ticker.closed = True


async def consume_some(n):
    agen = ticker(10)
    got = [x async for x, _ in zip_async(agen, n)]
    await agen.aclose()
    return got, ticker.closed


async def zip_async(agen, n):
    count = 0
    async for item in agen:
        if count == n:
            break
        count += 1
        yield item, count


async def throws_into():
    agen = ticker(3)
    await agen.__anext__()
    try:
        await agen.athrow(ValueError("thrown"))
    except ValueError as exc:
        return str(exc), ticker.closed


class Box:
    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Box({self.value!r})"

    def __eq__(self, other):
        return isinstance(other, Box) and self.value == other.value

    def __hash__(self):
        return hash(("Box", self.value))

    def __getattr__(self, name):
        if name.startswith("virtual_"):
            return name[8:]
        raise AttributeError(name)

    def __del__(self):
        Box.deleted = getattr(Box, "deleted", 0) + 1


def use_box(box):
    return repr(box), box == Box(box.value), hash(box) == hash(Box(box.value)), box.virtual_x


class Failure(ValueError):
    pass


def keep_nothing(obj):
    if obj is None:
        raise Failure("none")
    return obj
"""


async def _sleep(delay: float) -> None:
    await asyncio.sleep(delay)


def load(path: Path, instrumented: bool, level: str) -> types.ModuleType:
    name = "fidelity_instrumented" if instrumented else "fidelity_plain"
    module = load_file(path, instrumented, level, name)
    module.asyncio_sleep = _sleep
    return module


@pytest.fixture(params=["calls", "args", "full"])
def pair(request, tmp_path) -> tuple[types.ModuleType, types.ModuleType]:
    path = tmp_path / "fidelity.py"
    path.write_text(textwrap.dedent(SOURCE))
    runtime.install_entry_points()
    return load(path, False, request.param), load(path, True, request.param)


def while_recording(module: types.ModuleType, action) -> object:
    """``action(module)``'s result (or exception) while scope records ``module``."""
    outcome: list[object] = []

    def run(m: types.ModuleType) -> None:
        try:
            outcome.append(("returned", action(m)))
        except BaseException as exc:  # compared, not raised
            outcome.append(("raised", "".join(traceback.format_exception_only(exc))))
            outcome.append(formatted_traceback(exc))

    record(module, run, call_repr=True)
    return tuple(outcome)


def formatted_traceback(exc: BaseException) -> str:
    """The traceback as Python prints it (source lines and carets), from the module's frames."""
    text = "".join(traceback.format_exception(exc))
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "fidelity.py" in line)
    return "\n".join(lines[start:]).replace("fidelity_instrumented", "fidelity_plain")


def same(pair, action) -> None:
    plain, instrumented = pair
    assert while_recording(instrumented, action) == while_recording(plain, action)


@pytest.mark.parametrize(
    "action",
    [
        lambda m: m.divide(1, 0),
        lambda m: m.nested_call([1, 2, 3]),
        lambda m: m.lookup({"k": {"inner": None}}, "k"),
        lambda m: m.lookup({}, "missing"),
    ],
    ids=["zero-division", "through-comprehension", "none-attribute", "key-error"],
)
def test_tracebacks_print_the_same_lines_and_carets(pair, action):
    plain, _ = pair
    printed = while_recording(plain, action)
    assert "^" in printed[-1]  # the carets are there to compare
    same(pair, action)


@pytest.mark.parametrize(
    "action",
    [
        lambda m: m.stack_names()[:2],
        lambda m: m.frame_chain()[:2],
        lambda m: m.middle(),
    ],
    ids=["inspect.stack", "f_back", "sys._getframe(2)"],
)
def test_frame_walks_see_no_extra_frame(pair, action):
    same(pair, action)


def test_warnings_point_at_the_same_caller_line(pair):
    def warn(m: types.ModuleType) -> object:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m.warns_through()
        return [(w.category.__name__, Path(w.filename).name, w.lineno) for w in caught]

    same(pair, warn)


def test_warnings_as_errors_raise_the_same(pair):
    def warn(m: types.ModuleType) -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return m.warns_through()

    same(pair, warn)


def test_generator_protocols(pair):
    def drive(m: types.ModuleType) -> object:
        m.counting.closed = False
        g = m.counting(5)
        first = [next(g), g.send(None)]
        g.close()
        stopped = m.counting(5)
        next(stopped)
        try:
            stopped.send("stop")
        except StopIteration as stop:
            returned = stop.value
        ignored = m.stubborn()
        next(ignored)
        try:
            ignored.close()
        except RuntimeError as exc:
            refused = str(exc)
        try:
            list(m.leaks_stop_iteration())
        except RuntimeError as exc:
            pep479 = (str(exc), type(exc.__cause__).__name__)
        return first, m.counting.closed, returned, refused, pep479, list(m.delegating())

    same(pair, drive)


def test_async_generator_protocols(pair):
    def drive(m: types.ModuleType) -> object:
        m.ticker.closed = False
        return asyncio.run(m.consume_some(2)), asyncio.run(m.throws_into())

    same(pair, drive)


def test_dunders_scope_could_call_work_while_values_are_recorded(pair):
    same(pair, lambda m: m.use_box(m.Box(3)))


def test_arguments_and_exceptions_are_freed_when_the_call_ends(pair):
    _, instrumented = pair

    def drop(m: types.ModuleType) -> object:
        m.Box.deleted = 0
        box = m.Box([1, 2])
        alive = weakref.ref(box)
        m.keep_nothing(box)
        del box
        freed_after_return = alive() is None
        try:
            m.keep_nothing(None)
        except ValueError as exc:
            error = weakref.ref(exc)
        freed_after_raise = error() is None
        return freed_after_return, freed_after_raise, m.Box.deleted

    gc.disable()
    try:
        gc.collect()
        # Reference counting alone frees them: scope kept no reference and made no cycle.
        assert while_recording(instrumented, drop) == (("returned", (True, True, 1)),)
        assert gc.garbage == []
    finally:
        gc.enable()


def test_a_swapped_code_object_needs_no_extra_cells(pair):
    _, instrumented = pair

    def swap(m: types.ModuleType) -> object:
        def replacement(a, b):
            return "swapped"

        m.divide.__code__, original = replacement.__code__, m.divide.__code__
        try:
            return m.divide(1, 0)
        finally:
            m.divide.__code__ = original

    assert while_recording(instrumented, swap) == (("returned", "swapped"),)


def test_recursion_limit_is_reached_at_the_same_depth_while_recording(tmp_path):
    source = "def down(n):\n    return down(n + 1)\n"
    path = tmp_path / "fidelity.py"
    path.write_text(source)

    def depth(m: types.ModuleType) -> int:
        try:
            m.down(0)
        except RecursionError as exc:
            return len(traceback.extract_tb(exc.__traceback__))
        raise AssertionError("no RecursionError")

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(300)
    try:
        depths = [while_recording(load(path, i, "args"), depth) for i in (False, True)]
    finally:
        sys.setrecursionlimit(old)
    assert depths[0] == depths[1]

"""Code that runs while the interpreter shuts down runs as under ``python``.

Objects and generators a program leaves behind are cleaned up after its
``atexit`` handlers, and so after scope's own (registered first, it runs last):
``__del__`` methods, generators' ``finally`` blocks and weak reference callbacks
run while CPython takes modules and builtins apart.  Instrumented code still
calls scope's entry points then; they must be there to call, record nothing and
say nothing.  Each program's status, stdout and stderr under ``python -m scope
run`` must be those under ``python``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .conftest import Result, run

#: the example of the issue: a module-level object with ``__del__`` and a generator
#: left suspended at module level, cleaned up when ``__main__`` is collected
LEFT_BEHIND = """
class Res:
    def __del__(self):
        print("DEL ran")
def gen():
    try:
        yield 1
        yield 2
    finally:
        print("GEN finally ran")
r = Res()
g = gen(); next(g)
print("end of module")
"""

#: the same cleanup calling further instrumented code: a raise caught, a lambda, an
#: attribute set on ``self`` (recorded at the ``args`` and ``full`` levels)
CLEANUP_CALLS_MORE = """
class Res:
    def __init__(self, name):
        self.name = name

    def __del__(self):
        self.closed = describe(self.name)
        print("DEL ran", self.closed)


def describe(name):
    try:
        raise ValueError(name)
    except ValueError as exc:
        return (lambda e: f"<{e}>")(exc)


def gen(name):
    try:
        yield 1
        yield 2
    finally:
        print("GEN finally ran", describe(name))


r = Res("r")
g = gen("g")
next(g)
print("end of module")
"""

HELPER = """
class Res:
    def __init__(self, name):
        self.name = name

    def __del__(self):
        print("helper DEL ran for", self.name)


def gen():
    try:
        yield 1
    finally:
        print("helper GEN finally ran")


r = Res("helper's")
g = gen()
next(g)
"""

IMPORTS_HELPER = """
import helper

mine = helper.Res("main's")
print("end of module")
"""

#: ``atexit`` handlers and ``weakref.finalize`` run before scope stops; a weak
#: reference's callback runs when the shutdown collects its referent, a cycle left
#: for it (the collector is off), after the builtins were restored to their start
AT_EXIT = """
import atexit
import gc
import sys
import weakref


def work(n):
    return n * 2


def handler():
    print("atexit handler", work(21))


def finalizer(label, n):
    print("finalize", label, work(n))


def collected(ref):
    print("weakref callback", work(3))


class Obj:
    pass


atexit.register(handler)
kept = Obj()
weakref.finalize(kept, finalizer, "at exit", 1)
gc.disable()
late = Obj()
late.cycle = late
sys.kept_ref = weakref.ref(late, collected)
del late
print("end of module")
"""

#: objects only ``sys`` keeps, in cycles: collected at the very end, after every
#: builtin was set to None (so they use only what their module holds)
VERY_END = """
import sys
from os import write


def note(text):
    write(1, text.encode() + b"\\n")


class Res:
    def __del__(self):
        note("late DEL ran")


def gen():
    try:
        yield 1
    finally:
        note("late GEN finally ran")


r = Res()
r.cycle = r
g = gen()
next(g)
holder = [g]
holder.append(holder)
sys.kept_until_the_end = (r, holder)
del r, g, holder
print("end of module")
"""


def both(project: Path, *args: str, options: tuple[str, ...] = ()) -> tuple[Result, Result]:
    """The program run by ``python ARGS`` and by ``python -m scope run [OPTIONS] ARGS``."""
    plain = run([sys.executable, *args], project)
    recorded = run([sys.executable, "-m", "scope", "run", *options, *args], project)
    return plain, recorded


def test_the_issues_example_cleans_up_as_under_python(project, write, query):
    write("app.py", LEFT_BEHIND)
    plain, recorded = both(project, "app.py")
    assert plain.stdout == "end of module\nDEL ran\nGEN finally ran\n"
    assert recorded == plain
    # The cleanup ran after the recording was stored: only the generator, left
    # open when it stopped, is in it.
    stored = query("SELECT f.qualname, c.outcome FROM call c JOIN function f "
                   "ON f.run = c.run AND f.id = c.function")  # fmt: skip
    assert stored == [("gen", "unfinished")]


@pytest.mark.parametrize("level", ["calls", "args", "full"])
def test_cleanup_calling_more_code_at_every_level(project, write, level):
    write("app.py", CLEANUP_CALLS_MORE)
    plain, recorded = both(project, "app.py", options=("--level", level))
    assert plain.stdout == "end of module\nDEL ran <r>\nGEN finally ran <g>\n"
    assert recorded == plain


def test_cleanup_stored_from_inside_the_program(project, write, in_program):
    write("app.py", CLEANUP_CALLS_MORE)
    plain, recorded = both(project, "app.py")
    assert recorded == plain


def test_an_imported_modules_objects_clean_up_as_under_python(project, write):
    write("helper.py", HELPER)
    write("app.py", IMPORTS_HELPER)
    plain, recorded = both(project, "app.py")
    assert "helper DEL ran for helper's" in plain.stdout
    assert "helper GEN finally ran" in plain.stdout
    assert recorded == plain


def test_atexit_handlers_finalizers_and_weakref_callbacks(project, write):
    write("app.py", AT_EXIT)
    plain, recorded = both(project, "app.py")
    assert plain.stdout == (
        "end of module\nfinalize at exit 2\natexit handler 42\nweakref callback 6\n"
    )
    assert recorded == plain


def test_objects_collected_after_the_builtins_are_gone(project, write):
    write("app.py", VERY_END)
    plain, recorded = both(project, "app.py")
    assert plain.stdout == "end of module\nlate DEL ran\nlate GEN finally ran\n"
    assert recorded == plain

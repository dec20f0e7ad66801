"""The rewriter: instrumented code behaves exactly as the original, down to traceback positions.

Each test compiles the same source twice, plainly and with every function
instrumented, runs both, and compares what a program could observe.
"""

from __future__ import annotations

import inspect
import re
import textwrap
import traceback
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scope.capture import runtime
from scope.instrument.analyze import analyze_source
from scope.instrument.plan import PlanSettings, make_plan
from scope.instrument.rewrite import PlanMismatch, compile_instrumented, rewrite_tree

from scope import native

runtime.install_entry_points()


LEVELS = ["calls", "args", "full"]


def load(
    source: str, instrument: bool, name: str = "mod", level: str = "calls"
) -> types.ModuleType:
    source = textwrap.dedent(source)
    path = f"/virtual/{name}.py"
    if instrument:
        plan = make_plan(name, path, analyze_source(source), PlanSettings(level))
        code = compile_instrumented(source, path, plan)
    else:
        code = compile(source, path, "exec", dont_inherit=True)
    module = types.ModuleType(name)
    module.__file__ = path
    exec(code, module.__dict__)
    return module


def observe(call) -> tuple[object, ...]:
    """What a caller can see of a call: its result, or its exception and traceback positions."""
    try:
        return ("returned", call())
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        positions = [
            (f.filename, f.name, f.lineno, f.end_lineno, f.colno, f.end_colno)
            for f in frames
            if f.filename.startswith("/virtual/")
        ]
        return ("raised", type(exc).__name__, str(exc), positions)


def both(source: str, level: str = "calls") -> tuple[types.ModuleType, types.ModuleType]:
    return load(source, False), load(source, True, level=level)


CONSTRUCTS = """
from __future__ import annotations
import asyncio
import functools

counter = 0

def plain(a, b=2, *args, key=None, **kw):
    "the docstring"
    return (a + b, args, key, kw)

def uses_global():
    global counter
    counter += 1
    return counter

def closure(n):
    total = 0
    def add(x):
        nonlocal total
        total += x
        return total
    return [add(i) for i in range(n)]

class Base:
    def greet(self):
        return "base"

class Child(Base):
    "class doc"
    def greet(self):
        return "child+" + super().greet()

    @staticmethod
    def static(x):
        return x * 2

    @classmethod
    def make(cls):
        return cls.__name__

    @property
    def prop(self):
        return self.greet()

    def __repr__(self):
        return "Child()"

def finally_return():
    try:
        return "body"
    finally:
        return "finally"

def caught():
    try:
        {}["missing"]
    except KeyError as exc:
        return repr(exc)

def raises_deep(n):
    if n == 0:
        return 1 / n
    return raises_deep(n - 1)

def decorated_inner(x):
    return x + 1

decorated = functools.lru_cache(maxsize=None)(decorated_inner)

def matcher(value):
    match value:
        case [x, y]:
            return ("pair", x, y)
        case {"k": v}:
            return ("mapping", v)
        case _:
            return "other"

def walrus(items):
    if (n := len(items)) > 2:
        return n
    return -n

def only_docstring():
    "nothing but a docstring"

def gen():
    yield 1
    yield 2

def attribute_error(obj):
    return obj.missing.attribute

class Account:
    def __init__(self, owner, password):
        self.owner = owner
        self.password: str = password
        self.balance = 0

    def deposit(self, amount):
        self.balance += amount
        self.last = self.balance
        return self.last

async def async_fails(key):
    await asyncio.sleep(0)
    return {}[key]

async def async_values(n):
    first = await asyncio.sleep(0, result="first")
    return [first] + [await asyncio.sleep(0, result=i) for i in range(n)]

async def async_stream(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i

async def async_consume(n):
    return [i async for i in async_stream(n)]

async def async_comprehensions(n):
    squares = {i: await asyncio.sleep(0, result=i * i) for i in range(n)}
    nested = [[await asyncio.sleep(0, result=(i, j)) for j in range(i)] for i in range(n)]
    evens = {i for i in await asyncio.sleep(0, result=range(n)) if await asyncio.sleep(0, i % 2)}
    lazy = [x async for x in (await asyncio.sleep(0, result=i) for i in range(n))]
    try:
        [await async_fails(i) for i in range(n)]
    except KeyError as exc:
        failed = exc.args
    return squares, nested, evens, lazy, failed

def echo():
    received = []
    try:
        while True:
            received.append((yield len(received)))
    except ValueError as exc:
        yield ("thrown", str(exc), received)
    return "done"

square = lambda x: x * x
divide = lambda a, b=1, *, password="": a / b

def lambdas_in_scopes(n):
    adders = [lambda y, i=i: y + i for i in range(n)]
    nested = (lambda: lambda: "inner")()()
    return sorted([3, 1, 2], key=lambda v: -v), [f(10) for f in adders], nested

def lambda_raises_caught():
    try:
        (lambda: {}["k"])()
    except KeyError:
        return "caught", (lambda: "after")()

generator_lambda = lambda: (yield 1)

def lambda_defaults(a=lambda: "default", *, b=lambda v: v * 2, c=lambda x=lambda: 1: x()):
    return a(), b(3), c()

def takes(value):
    return lambda function: function

@takes(lambda: "in a decorator")
def decorated_by_lambda():
    class Local(dict, metaclass=(lambda name, bases, ns: type(name, bases, ns))):
        pass
    return type(Local()).__name__

def drive_echo():
    g = echo()
    next(g)
    g.send("a")
    g.send("b")
    thrown = g.throw(ValueError("stop"))
    try:
        next(g)
    except StopIteration as stop:
        return thrown, stop.value
"""


@pytest.mark.parametrize(
    "expression",
    [
        "m.plain(1, 3, 4, key=5, z=6)",
        "(m.uses_global(), m.uses_global())",
        "m.closure(4)",
        "m.Child().greet()",
        "m.Child.static(21)",
        "m.Child.make()",
        "m.Child().prop",
        "repr(m.Child())",
        "m.finally_return()",
        "m.caught()",
        "m.raises_deep(3)",
        "m.decorated(41)",
        "(m.matcher([1, 2]), m.matcher({'k': 3}), m.matcher(None))",
        "(m.walrus([1, 2, 3]), m.walrus([1]))",
        "m.only_docstring()",
        "list(m.gen())",
        "m.attribute_error(object())",
        "vars(m.Account('ann', 'pw'))",
        "m.Account('ann', 'pw').deposit(5)",
        "m.asyncio.run(m.async_fails('k'))",
        "m.asyncio.run(m.async_values(3))",
        "m.asyncio.run(m.async_consume(3))",
        "m.asyncio.run(m.async_comprehensions(3))",
        "m.drive_echo()",
        "m.square(7)",
        "m.divide(1, 0)",
        "m.divide(6, b=3, password='pw')",
        "m.lambdas_in_scopes(3)",
        "m.lambda_raises_caught()",
        "list(m.generator_lambda())",
        "(m.lambda_defaults(), m.decorated_by_lambda())",
    ],
)
@pytest.mark.parametrize("level", LEVELS)
def test_constructs_behave_the_same(expression, level):
    plain, instrumented = both(CONSTRUCTS, level)
    assert observe(lambda: eval(expression, {"m": instrumented})) == observe(
        lambda: eval(expression, {"m": plain})
    )


def code_facts(code: types.CodeType) -> tuple[object, ...]:
    return (
        code.co_name,
        code.co_qualname,
        code.co_firstlineno,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_argcount,
        code.co_kwonlyargcount,
        code.co_posonlyargcount,
        code.co_flags,
    )


def all_functions(module: types.ModuleType) -> dict[str, object]:
    found: dict[str, object] = {}
    for name, value in vars(module).items():
        if inspect.isfunction(value):
            found[name] = value
        elif inspect.isclass(value):
            for attr, member in vars(value).items():
                func = getattr(member, "__func__", None) or getattr(member, "fget", None) or member
                if inspect.isfunction(func):
                    found[f"{name}.{attr}"] = func
    return found


def signature_text(func) -> str:
    """The signature as printed, default objects named without their addresses."""
    return re.sub(r" at 0x[0-9a-f]+", "", str(inspect.signature(func)))


@pytest.mark.parametrize("level", LEVELS)
def test_code_objects_keep_names_positions_locals_and_cells(level):
    plain, instrumented = both(CONSTRUCTS, level)
    plain_functions, instrumented_functions = all_functions(plain), all_functions(instrumented)
    assert plain_functions.keys() == instrumented_functions.keys()
    assert len(plain_functions) > 15
    for name, func in plain_functions.items():
        other = instrumented_functions[name]
        assert code_facts(other.__code__) == code_facts(func.__code__), name
        assert other.__doc__ == func.__doc__, name
        assert other.__qualname__ == func.__qualname__, name
        assert signature_text(other) == signature_text(func), name


def test_instrumented_bodies_call_the_entry_points():
    instrumented = load(CONSTRUCTS, True)
    names = set(instrumented.plain.__code__.co_names)
    assert {"__scope_enter__", "__scope_exit__", "__scope_unwind__"} <= names
    # Generators also report their suspensions.
    gen_names = set(instrumented.gen.__code__.co_names)
    assert {"__scope_enter__", "__scope_yield__", "__scope_resume__"} <= gen_names


def test_functions_report_entries_and_exits():
    instrumented = load(CONSTRUCTS, True, name="reporting")
    plan = make_plan(
        "reporting", "/virtual/reporting.py", analyze_source(CONSTRUCTS), PlanSettings()
    )
    ids = {f.qualname: f.id for f in plan.functions}
    buffer = np.zeros(64, dtype=native.RECORD_DTYPE)
    while native.drain(buffer)[0]:
        pass
    native.set_enabled(True)
    try:
        observe(lambda: instrumented.raises_deep(2))
    finally:
        native.set_enabled(False)
    records = buffer[: native.drain(buffer, np.zeros(4096, np.uint8))[0]]
    kinds = native.kinds(records)
    # Each call leaves the exception's type (a value record) and then its own record.
    assert kinds.tolist() == [native.VALUE, native.RAISE] * 3
    calls = records[kinds == native.RAISE]
    assert native.function_ids(calls).tolist() == [ids["raises_deep"]] * 3
    assert calls["depth"].tolist() == [2, 1, 0]  # innermost ends first


def test_plan_for_other_source_is_refused():
    import ast

    plan = make_plan("m", "m.py", analyze_source("def a():\n    pass\n"), PlanSettings())
    with pytest.raises(PlanMismatch):
        rewrite_tree(ast.parse("def b():\n    pass\n"), plan)
    with pytest.raises(PlanMismatch):
        rewrite_tree(ast.parse("def a():\n    pass\ndef b():\n    pass\n"), plan)


# --- property: random function bodies behave the same instrumented -------------------

STATEMENTS = [
    "a = a + {k}",
    "b = b * {k}",
    "if a > {k}:\n    return a - b",
    "if b == {k}:\n    raise ValueError({k})",
    "c = 100 // (a - {k})",
    "try:\n    a = a // (b - {k})\nexcept ZeroDivisionError:\n    a = -a",
    "for i in range({k} % 4):\n    b = b + i\n    if b > 50:\n        break",
    "try:\n    b = helper(b, {k})\nfinally:\n    a = a + 1",
    "while a < {k}:\n    a = a + 3",
    "x = [a, b][{k} % 3]",
    # These make f a generator: its values and return value are compared too.
    "yield a + {k}",
    "a = (yield b) or a + {k}",
    "b = b + sum((yield from range({k} % 3)) or [])",
]

statement = st.builds(
    lambda template, k: template.format(k=k),
    st.sampled_from(STATEMENTS),
    st.integers(min_value=-3, max_value=12),
)


def indent(block: str, spaces: int) -> str:
    return textwrap.indent(block, " " * spaces)


def run_to_end(result: object) -> object:
    """A plain result as is; a generator's yields, then its return value."""
    if not inspect.isgenerator(result):
        return result
    produced = []
    try:
        while True:
            produced.append(next(result))
    except StopIteration as stop:
        return (produced, stop.value)


@settings(max_examples=150, deadline=None)
@given(
    body=st.lists(statement, min_size=1, max_size=8),
    calls=st.lists(st.tuples(st.integers(-5, 15), st.integers(-5, 15)), min_size=1, max_size=5),
    level=st.sampled_from(LEVELS),
)
def test_random_functions_behave_the_same(body, calls, level):
    source = (
        "def helper(x, k):\n"
        "    if x == k:\n"
        "        raise KeyError(k)\n"
        "    return x + k\n\n"
        "def f(a, b):\n" + indent("\n".join(body), 4) + "\n    return (a, b)\n"
    )
    plain, instrumented = both(source, level)
    for a, b in calls:
        assert observe(lambda a=a, b=b: run_to_end(instrumented.f(a, b))) == observe(
            lambda a=a, b=b: run_to_end(plain.f(a, b))
        ), source

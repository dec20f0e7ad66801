"""The rewriter: instrumented code behaves exactly as the original, down to traceback positions.

Each test compiles the same source twice, plainly and with every function
instrumented, runs both, and compares what a program could observe.
"""

from __future__ import annotations

import inspect
import re
import sys
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
from scope.native.batch import RECORD_DTYPE, drain, function_ids, kinds

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
    assert "__scope_call__" in names
    # Generators also report their suspensions.
    gen_names = set(instrumented.gen.__code__.co_names)
    assert {"__scope_call__", "__scope_yield__", "__scope_resume__"} <= gen_names


def test_functions_report_entries_and_exits():
    instrumented = load(CONSTRUCTS, True, name="reporting")
    plan = make_plan(
        "reporting", "/virtual/reporting.py", analyze_source(CONSTRUCTS), PlanSettings()
    )
    ids = {f.qualname: f.id for f in plan.functions}
    buffer = np.zeros(64, dtype=RECORD_DTYPE)
    while drain(buffer)[0]:
        pass
    native.set_enabled(True)
    try:
        observe(lambda: instrumented.raises_deep(2))
    finally:
        native.set_enabled(False)
    records = buffer[: drain(buffer, np.zeros(4096, np.uint8))[0]]
    found = kinds(records)
    # Each call leaves the exception's type (a value record) and then its own record.
    assert found.tolist() == [native.VALUE, native.RAISE] * 3
    calls = records[found == native.RAISE]
    assert function_ids(calls).tolist() == [ids["raises_deep"]] * 3
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


# --- property: every lambda is planned under the name Python gives it -----------------

#: scopes that hold statements: a def or a class around what follows
STATEMENT_SCOPES = ("def", "class")
#: expressions around a lambda; 3.12 inlines the three comprehensions (PEP 709)
EXPRESSION_SCOPES = ("lambda", "listcomp", "setcomp", "dictcomp", "genexp")


def compiled_lambda_qualnames(source: str) -> set[str]:
    """The qualified names CPython's compiler gives the lambdas of ``source``."""
    found, pending = set(), [compile(source, "<nested>", "exec", dont_inherit=True)]
    while pending:
        code = pending.pop()
        if code.co_name == "<lambda>":
            found.add(code.co_qualname)
        pending.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return found


#: lambdas where the enclosing scope, not the lambda's neighbours, evaluates them:
#: annotations (3.14 moves them into __annotate__ scopes, which add nothing to a
#: qualname), defaults, decorators, class bases, keyword arguments
LAMBDA_PLACES = {
    "annotations": """
        def f(x: (lambda: int)(), *, y: (lambda: str)() = "") -> (lambda: None)():
            return [lambda: x for _ in "a"]
        class C:
            a: (lambda: int)()
            def m(self, z: (lambda: float)()) -> (lambda: int)():
                return lambda: z
        """,
    "annotations under the future import": """
        from __future__ import annotations
        def f(x: (lambda: int)()) -> (lambda: None)():
            v: (lambda: int)() = (lambda: 1)()
            return v
        class C:
            a: (lambda: int)() = 2
        """,
    "variable annotations, evaluated at module and class level only": """
        b: (lambda: int)() = 3
        def f():
            x: (lambda: int)() = 1
            y: (lambda: int)()
            return x
        class C:
            a: (lambda: int)() = lambda: 2
        """,
    "defaults and decorators": """
        def deco(f):
            return f
        @(lambda f: deco(f))
        def g(a=lambda: 1, b=[lambda: 2 for _ in "a"][0]):
            return {k: (lambda: k) for k in "ab"}
        class D(type("B", (), {"h": lambda self: 3})):
            k = sorted([3, 1], key=lambda v: -v)
        """,
    "generator expressions and comprehensions in classes": """
        class E:
            squares = [(lambda n: n * n)(i) for i in range(3)]
            gen = list(lambda: j for j in range(2))
            def method(self):
                return {(lambda: 0) for _ in "a"}, (lambda: (lambda: 1))
        """,
}
if sys.version_info >= (3, 14):  # t-strings (PEP 750) and bare except tuples (PEP 758)
    LAMBDA_PLACES["t-strings"] = """
        def t(name):
            try:
                return t"{(lambda: name)()!r:>{(lambda: 4)()}} {[lambda: i for i in 'a'][0]}"
            except ValueError, TypeError:
                return lambda: None
        """


@pytest.mark.parametrize("place", sorted(LAMBDA_PLACES))
def test_lambdas_everywhere_are_planned_under_pythons_own_qualname(place):
    source = textwrap.dedent(LAMBDA_PLACES[place])
    plan = make_plan("places", "/virtual/places.py", analyze_source(source), PlanSettings())
    planned = {f.qualname for f in plan.functions if f.kind == "lambda"}
    assert planned == compiled_lambda_qualnames(source)
    plain, instrumented = both(source, level="args")  # and runs alike, annotations kept
    assert sorted(vars(plain)) == sorted(vars(instrumented))
    for name, value in vars(plain).items():
        if callable(value) and hasattr(value, "__annotations__"):
            assert value.__annotations__ == vars(instrumented)[name].__annotations__, name


def nested_lambda_source(statements: list[str], expressions: list[str]) -> str:
    """A module whose ``RESULT`` is a lambda made inside these scopes, outermost first."""
    expr = "(lambda: 0)"
    for kind in reversed(expressions):
        expr = {
            "lambda": f"(lambda: {expr})()",
            "listcomp": f"[{expr} for _x in [0]][0]",
            "setcomp": f"next(iter({{{expr} for _x in [0]}}))",
            "dictcomp": f"{{0: {expr} for _x in [0]}}[0]",
            "genexp": f"next({expr} for _x in [0])",
        }[kind]
    lines = [f"RESULT = {expr}"]
    for depth, kind in reversed(list(enumerate(statements))):
        body = ["    " + line for line in lines[:-1]]
        last = lines[-1].removeprefix("RESULT = ")
        if kind == "def":
            lines = [f"def f{depth}():", *body, f"    return {last}", f"RESULT = f{depth}()"]
        else:
            lines = [f"class C{depth}:", *body, f"    value = {last}", f"RESULT = C{depth}.value"]
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(STATEMENT_SCOPES), max_size=3),
    st.lists(st.sampled_from(EXPRESSION_SCOPES), max_size=3),
)
def test_lambdas_are_planned_and_recorded_under_pythons_own_qualname(statements, expressions):
    source = nested_lambda_source(statements, expressions)
    plain = load(source, False, name="nested")
    plan = make_plan("nested", "/virtual/nested.py", analyze_source(source), PlanSettings())
    planned = {f.qualname: f.id for f in plan.functions if f.kind == "lambda"}
    assert plain.RESULT.__qualname__ in planned, source
    assert set(planned) == compiled_lambda_qualnames(source), source
    # ... and the instrumented lambda reports its calls under that plan.
    instrumented = load(source, True, name="nested")
    buffer = np.zeros(256, dtype=RECORD_DTYPE)
    while drain(buffer)[0]:
        pass
    native.set_enabled(True)
    try:
        assert instrumented.RESULT() == 0
    finally:
        native.set_enabled(False)
    records = buffer[: drain(buffer)[0]]
    calls = records[kinds(records) == native.RETURN]
    assert function_ids(calls).tolist() == [planned[plain.RESULT.__qualname__]], source

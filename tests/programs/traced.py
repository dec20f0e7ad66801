"""Functions whose trace events scope must not change (tests/test_trace_fidelity.py).

Each shape is one a tracer, a debugger or coverage.py reports line by line:
returns on one line and on several, raises from statements, calls, loops and
handlers, ``with``, generators driven every way, coroutines, ``match``, and
the attribute writes scope records at ``args`` level.  Its layout is the
point (one-line bodies, parenthesised returns), so ruff leaves it as written.  ``CASES`` names each
function with the arguments that drive it down a path.
"""

import asyncio
import contextlib
import sys


def returns(x):
    y = x + 1
    return y


def falls_off(x):
    y = x + 1


def early(x):
    if x > 0:
        return "positive"
    z = -x
    return z


def raises(x):
    y = x + 1
    raise ValueError(y)


def raises_in_call(x):
    return int(x)


def caught(x):
    try:
        raise KeyError(x)
    except KeyError:
        return "caught"


def handler_raises(x):
    try:
        raise KeyError(x)
    except KeyError as error:
        raise LookupError(x) from error


def finally_return(x):
    try:
        return x
    finally:
        x = 0


def finally_overrides(x):
    try:
        raise ValueError(x)
    finally:
        return "finally"


def loop(n):
    total = 0
    for i in range(n):
        if i == 2:
            continue
        total += i
    else:
        total = -total
    return total


def while_break(n):
    while True:
        n -= 1
        if n < 0:
            break
    return n


@contextlib.contextmanager
def managed():
    yield 1


def uses_with(x):
    with managed() as v:
        x += v
    return x


def with_raises(x):
    with managed():
        raise TypeError(x)


def return_in_with(x):
    with managed():
        return x


def gen(n):
    for i in range(n):
        yield i
    return "done"


def drive_gen(n):
    return list(gen(n))


def drive_gen_throw(n):
    g = gen(n)
    next(g)
    try:
        g.throw(ValueError("thrown"))
    except ValueError:
        return "thrown"


def drive_gen_close(n):
    g = gen(n)
    next(g)
    g.close()
    return "closed"


def delegating(n):
    result = yield from gen(n)
    return result


def drive_delegating(n):
    return list(delegating(n))


def matcher(value):
    match value:
        case [a, b]:
            return a + b
        case {"k": v}:
            return v
        case str() if value:
            return value.upper()
        case _:
            return None


def docstring_only():
    """Just a docstring."""


def one_liner(x): return x * 2


@staticmethod
def decorated(x):
    return x


def nested(x):
    def inner(y):
        return y + x

    return inner(1)


def comprehension(n):
    return [i * i for i in range(n) if i % 2]


def uses_lambda(n):
    square = lambda v: v * v
    return square(n)


def multi_line_return(x):
    return (
        x
        + 1
    )


def multi_line_first_statement(x):
    total = (
        x
        * 2
    )
    return total


def raise_from_loop(n):
    for i in range(n):
        if i == 1:
            raise RuntimeError(i)


def reraise(x):
    try:
        raise ValueError(x)
    except ValueError:
        raise


async def coro(x):
    await asyncio.sleep(0)
    return x


async def coro_raises(x):
    await asyncio.sleep(0)
    raise ValueError(x)


def drive_coro(x):
    return asyncio.run(coro(x))


def drive_coro_raises(x):
    return asyncio.run(coro_raises(x))


async def agen(n):
    for i in range(n):
        yield i


async def collect(n):
    return [i async for i in agen(n)]


def drive_agen(n):
    return asyncio.run(collect(n))


class Account:
    """Attribute writes: scope reports each after its statement (args level)."""

    def __init__(self, balance):
        self.balance = balance
        self.history = [
            balance,
        ]

    def deposit(self, amount):
        self.balance += amount
        self.last, self.count = (
            amount,
            len(self.history),
        )
        for self.cursor in range(2):
            pass
        return self.balance


def drive_account(x):
    account = Account(x)
    return account.deposit(2)


def deep(n):
    if n == 0:
        raise ArithmeticError("bottom")
    return deep(n - 1)


#: Since 3.13, closing a generator suspended at a ``yield`` that no ``try`` or
#: ``with`` surrounds runs none of its code, so a tracer sees nothing of it.
#: scope's block surrounds every ``yield`` (it must hear that the call ended),
#: so there a tracer sees the generator take GeneratorExit and return.  Its
#: cases are left out of the comparisons on those versions.
CLOSED_WITHOUT_RUNNING = {"drive_gen_close"}

CASES = [
    ("returns", 1),
    ("falls_off", 1),
    ("early", 1),
    ("early", -1),
    ("raises", 1),
    ("raises_in_call", "x"),
    ("caught", 1),
    ("handler_raises", 1),
    ("finally_return", 1),
    ("finally_overrides", 1),
    ("loop", 4),
    ("while_break", 2),
    ("uses_with", 1),
    ("with_raises", 1),
    ("return_in_with", 1),
    ("drive_gen", 2),
    ("drive_gen_throw", 2),
    ("drive_gen_close", 2),  # see CLOSED_WITHOUT_RUNNING
    ("drive_delegating", 2),
    ("matcher", [1, 2]),
    ("matcher", {"k": 3}),
    ("matcher", "text"),
    ("matcher", 5),
    ("docstring_only",),
    ("one_liner", 2),
    ("decorated", 3),
    ("nested", 1),
    ("comprehension", 5),
    ("uses_lambda", 3),
    ("multi_line_return", 1),
    ("multi_line_first_statement", 1),
    ("raise_from_loop", 3),
    ("reraise", 1),
    ("drive_coro", 4),
    ("drive_coro_raises", 4),
    ("drive_agen", 3),
    ("drive_account", 5),
    ("deep", 3),
]

if sys.version_info >= (3, 13):
    CASES = [case for case in CASES if case[0] not in CLOSED_WITHOUT_RUNNING]

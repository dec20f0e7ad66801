"""The runtime that instrumented code calls.

Rewritten modules call a handful of builtins (see ``scope.instrument.rewrite``);
this module binds them to the native entry points.  They live in ``builtins`` rather
than in each module's globals so that a function whose globals are swapped
(``types.FunctionType(code, other_globals)``, pickling by value) still finds
them, and so that no module gains a global name or an import.  Once bound they
stay bound for the life of the process: instrumented functions can run after
recording stops (in ``atexit`` handlers, in daemon threads), and then the native
side simply records nothing.
"""

from __future__ import annotations

import builtins
import contextvars

from scope.instrument import rewrite

from scope import native


class Redacted:
    """What instrumented code passes instead of a secret argument: the value never leaves."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<redacted by scope>"


REDACTED = Redacted()

#: (call id, depth) of the coroutine running in this context; asyncio copies it into
#: the tasks a coroutine creates, which is how their calls find their parent.
CALLER: contextvars.ContextVar[tuple[int, int]] = contextvars.ContextVar("scope.caller")

ENTRY_POINTS = {
    rewrite.ENTER_NAME: native.enter,
    rewrite.EXIT_NAME: native.exit,
    rewrite.LEAVE_NAME: native.leave,
    rewrite.UNWIND_NAME: native.unwind,
    rewrite.RETURN_NAME: native.returning,
    rewrite.ATTR_NAME: native.assigning,
    rewrite.YIELD_NAME: native.suspending,
    rewrite.RESUME_NAME: native.resumed,
    rewrite.REDACTED_NAME: REDACTED,
}


def install_entry_points() -> None:
    """Bind the names instrumented code calls (idempotent)."""
    native.set_runtime_objects(REDACTED, CALLER)
    for name, value in ENTRY_POINTS.items():
        setattr(builtins, name, value)


def entry_points_installed() -> bool:
    """Whether instrumented code can run in this process."""
    return all(getattr(builtins, name, None) is value for name, value in ENTRY_POINTS.items())

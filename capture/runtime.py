"""The runtime that instrumented code calls.

Rewritten modules call a handful of builtins (see ``scope.instrument.rewrite``);
this module binds them to the native entry points.  They live in ``builtins`` rather
than in each module's globals so that a function whose globals are swapped
(``types.FunctionType(code, other_globals)``, pickling by value) still finds
them, and so that no module gains a global name or an import.  Once bound they
stay bound for the life of the process: instrumented functions can run after
recording stops (in ``atexit`` handlers, in daemon threads, in ``__del__`` methods
and generators' ``finally`` blocks run while the interpreter shuts down), and then
the native side simply records nothing.

Staying bound takes some doing, because interpreter shutdown takes the builtins
dict apart twice (``finalize_modules`` in CPython's ``Python/pylifecycle.c``,
alike in 3.11 to 3.13), after the ``atexit`` handlers have run:

* first it restores the dict to the copy made at startup, which deletes every
  name added since; only then are the program's modules collected (their
  objects' ``__del__`` methods and suspended generators' ``finally`` blocks run);
* then, after setting every global of the modules still alive to ``None``, it
  sets every builtin to ``None`` as well; what only ``sys`` or those modules
  kept alive is collected after that.

Module globals, deleted or set to ``None`` along the way, do not matter: the names
are never looked up there.  The builtins dict is the only holder of a
``Keeper``, stored after the entry points: each pass drops it, and its
``__del__`` puts the entry points back before anything dropped after it runs.
After the first pass it also stores a new keeper, for the second.
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
    rewrite.CALL_NAME: native.call_body,
    rewrite.LEAVE_NAME: native.leave,
    rewrite.RETURN_NAME: native.returning,
    rewrite.WROTE_NAME: native.wrote,
    rewrite.YIELD_NAME: native.suspending,
    rewrite.RESUME_NAME: native.resumed,
    rewrite.REDACTED_NAME: REDACTED,
}


#: The builtin that holds the ``Keeper``; its ``__del__`` spells it out, as module
#: globals may be ``None`` by the time it runs.
KEEPER_NAME = "__scope_keeper__"


class Keeper:
    """Puts the entry points back into builtins when interpreter shutdown takes them out.

    Only ``namespace`` (the builtins dict) refers to a keeper, so it dies when
    shutdown deletes it (with every name added to builtins) or sets it to
    ``None`` (with every builtin); it is stored after the entry points, so they
    have been dropped by then too.  See the module's docstring.
    """

    __slots__ = ("entry_points", "namespace")

    def __init__(self, namespace: dict[str, object], entry_points: dict[str, object]) -> None:
        self.namespace = namespace
        self.entry_points = entry_points

    def __del__(self) -> None:
        # Neither builtins nor this module's globals: either may be gone by now.
        namespace, keeper = self.namespace, self.__class__
        namespace.update(self.entry_points)
        # Deleted (the first pass): the next pass needs a keeper after the entry
        # points.  Set to None (the second), or to another keeper: none, lest
        # replacing a keeper call this again.
        if "__scope_keeper__" not in namespace:
            namespace["__scope_keeper__"] = keeper(namespace, self.entry_points)


def install_entry_points() -> None:
    """Bind the names instrumented code calls, for as long as the interpreter lives
    (idempotent)."""
    native.set_runtime_objects(REDACTED, CALLER)
    for name, value in ENTRY_POINTS.items():
        setattr(builtins, name, value)
    namespace = vars(builtins)
    if type(namespace.get(KEEPER_NAME)) is not Keeper:
        namespace[KEEPER_NAME] = Keeper(namespace, dict(ENTRY_POINTS))


def entry_points_installed() -> bool:
    """Whether instrumented code can run in this process."""
    return all(getattr(builtins, name, None) is value for name, value in ENTRY_POINTS.items())

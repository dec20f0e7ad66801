"""The runtime that instrumented code calls.

Rewritten modules call four builtins (see ``scope.instrument.rewrite``); this
module binds them to the native entry points.  They live in ``builtins`` rather
than in each module's globals so that a function whose globals are swapped
(``types.FunctionType(code, other_globals)``, pickling by value) still finds
them, and so that no module gains a global name or an import.  Once bound they
stay bound for the life of the process: instrumented functions can run after
recording stops (in ``atexit`` handlers, in daemon threads), and then the native
side simply records nothing.
"""

from __future__ import annotations

import builtins

from scope.instrument.rewrite import CATCH_NAME, ENTER_NAME, EXIT_NAME, UNWIND_NAME

from scope import native

ENTRY_POINTS = {
    ENTER_NAME: native.enter,
    EXIT_NAME: native.exit,
    UNWIND_NAME: native.unwind,
    CATCH_NAME: BaseException,
}


def install_entry_points() -> None:
    """Bind the names instrumented code calls (idempotent)."""
    for name, value in ENTRY_POINTS.items():
        setattr(builtins, name, value)


def entry_points_installed() -> bool:
    """Whether instrumented code can run in this process."""
    return all(getattr(builtins, name, None) is value for name, value in ENTRY_POINTS.items())

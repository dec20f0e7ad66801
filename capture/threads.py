"""Following the threads a program starts, and the exceptions that end them.

While recording, the function ``Thread.start`` calls to start a thread
(``threading._start_new_thread`` up to 3.12, ``threading._start_joinable_thread``
from 3.13) is its native stand-in: it notes the starting thread and its
innermost recorded call, and runs the new thread under a C function that
records them with the thread's name before ``run()`` begins.  Being C, neither
adds a frame to the new thread's stack.

An exception that ends a thread is kept as an event, against the call it was
raised in, by a look-alike of the default ``threading.excepthook`` (a builtin of
the same name, module and signature: ``native.wrap_builtin``) that notes it and
then runs the default, which prints it.  It stands in for both
``threading.excepthook`` and ``threading.__excepthook__``, so that the program's
``excepthook is __excepthook__`` still holds; a program that set a hook of its
own before recording keeps it, and its threads' exceptions are not kept.  All of
this is put back when recording stops, unless the program replaced it meanwhile.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from typing import Any

from scope import native
from scope.errors import CapabilityMissing
from scope.interpreter import PYBEHAVIOR
from scope.patching import Patch

#: kind, detail, call id: how a watch reports what it saw
EventSink = Callable[[str, str, int], None]


def describe(exc: BaseException | None) -> str:
    """An exception as one line: its type and its message."""
    if exc is None:
        return "None"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


#: the look-alike of the default threading.excepthook: made once per process
#: (native.wrap_builtin has a handful of slots), and the watch it reports to
_look_alike: Any = None
_watching: ThreadWatch | None = None


def _thread_ended_by(args: Any) -> None:
    watch = _watching
    if watch is not None:
        watch.thread_ended_by(args)


class ThreadWatch:
    """Installs and removes scope's hooks into ``threading``."""

    def __init__(self, on_event: EventSink) -> None:
        self.on_event = on_event
        if PYBEHAVIOR.joinable_threads:
            self._start = Patch(threading, "_start_joinable_thread", native.start_joinable_thread)
        else:
            self._start = Patch(threading, "_start_new_thread", native.start_new_thread)
        self._hook: Any = None

    def install(self) -> None:
        """Follow every thread ``threading`` starts from now on.

        Raises ``CapabilityMissing`` (having done the rest) if this Python starts
        threads through none of the functions scope knows.
        """
        global _look_alike, _watching
        missing: CapabilityMissing | None = None
        try:
            self._start.install()
        except CapabilityMissing as exc:
            missing = exc
        hook = threading.excepthook
        if hook is threading.__excepthook__ and isinstance(hook, types.BuiltinFunctionType):
            if _look_alike is None:
                _look_alike = native.wrap_builtin(hook, _thread_ended_by)
            self._hook = hook
            threading.excepthook = threading.__excepthook__ = _look_alike
        _watching = self
        if missing is not None:
            raise CapabilityMissing(f"{missing}: who started each thread is not recorded")

    def uninstall(self) -> None:
        """Put ``threading`` back as it was, unless the program changed it since."""
        global _watching
        _watching = None
        self._start.uninstall()
        if self._hook is not None and threading.excepthook is _look_alike:
            threading.excepthook = threading.__excepthook__ = self._hook

    def thread_ended_by(self, args: Any) -> None:
        """Keep an event for the exception that is ending a thread."""
        name = args.thread.name if args.thread is not None else "a thread"
        detail = f"{name}: {describe(args.exc_value)}"
        self.on_event("thread exception", detail, native.raised_in(args.exc_value))

"""Store the recording before ``os._exit`` and the ``exec`` functions end the process.

Neither runs ``atexit`` handlers, so the session's ``stop`` would never run.
``install(on_exit, on_exec)`` replaces ``os._exit``, ``os.execv`` and
``os.execve`` (and the same names in ``posix``) with look-alike builtins
(``native.wrap_builtin``: same name, module, ``__self__``, doc and signature)
that call the hook first; ``os.execl``, ``execvp`` and the rest go through
``execv`` and ``execve``.  The wrappers are made once per process and dispatch
to whatever hooks are installed, so sessions can come and go.
"""

from __future__ import annotations

from collections.abc import Callable

from scope.capture.standins import StandIns

_on_exit: Callable[[int | None], object] | None = None
_on_exec: Callable[[], object] | None = None


def _exiting(status: object = None, *args: object, **kwargs: object) -> None:
    if _on_exit is not None:
        _on_exit(status if isinstance(status, int) else None)


def _executing(*args: object, **kwargs: object) -> None:
    if _on_exec is not None:
        _on_exec()


#: the builtins replaced: ``_exit`` and the exec functions the others go through
_stand_ins = StandIns(
    ("_exit", "execv", "execve"), lambda name: _exiting if name == "_exit" else _executing
)


def install(on_exit: Callable[[int | None], object], on_exec: Callable[[], object]) -> None:
    """Call ``on_exit(status)`` before ``os._exit`` and ``on_exec()`` before an exec."""
    global _on_exit, _on_exec
    _on_exit, _on_exec = on_exit, on_exec
    _stand_ins.install()


def uninstall() -> None:
    """Put the original builtins back (where the program has not replaced them)."""
    global _on_exit, _on_exec
    _on_exit = _on_exec = None
    _stand_ins.uninstall()

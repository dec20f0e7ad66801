"""A program forks with no thread of scope's running, as it would without scope.

scope runs a writer thread, a mover and a SIGTERM watcher in the recorded
process.  A fork while they run is what CPython 3.12+ warns about
(``DeprecationWarning: This process is multi-threaded, use of fork() may lead
to deadlocks in the child``): the warning would be scope's doing, and the child
could inherit a lock one of them held.  So scope's threads stop before every
fork and start again after it, in the parent.

While recording, ``os.fork`` and ``os.forkpty`` are look-alike builtins
(``scope.capture.standins``) that stop the threads before calling the original
and start them again once it has returned, in the parent.  Restarting any
earlier would be too early: 3.12 counts the process's threads before the
``after_in_parent`` fork hooks run, but 3.13 after them.  A fork that does not
go through a stand-in (``posix.fork`` kept from before recording began) is
covered by ``os.register_at_fork`` hooks instead, where 3.13 may still warn.

numpy's OpenBLAS threads, which scope's import of numpy starts, are not
scope's to stop; OpenBLAS itself shuts them down at every fork (its
``pthread_atfork`` handler), before CPython counts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from scope.capture.standins import StandIns

_pause: Callable[[], object] | None = None
_resume: Callable[[], object] | None = None
#: forks under way through a stand-in; the threads stop when the first begins and
#: start again when the last has returned (two threads may fork at once)
_depth = 0
#: a fork that bypassed the stand-ins stopped the threads in the before hook
_paused_by_hook = False
#: decisions and the pausing and resuming they call are made under it, so that no
#: fork starts while another thread is resuming
_lock = threading.RLock()


def _fork_pid(result: object) -> object:
    """The pid os.fork (an int) or os.forkpty (a (pid, fd) pair) returned."""
    return result[0] if isinstance(result, tuple) and result else result


def _entering(*args: object, **kwargs: object) -> None:
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1 and _pause is not None:  # before the program's own fork hooks, too
            _pause()


def _returned(result: object) -> None:
    global _depth
    with _lock:
        _depth = max(0, _depth - 1)
        # In the child (pid 0) the session's own fork hook has taken over.
        if _depth == 0 and _fork_pid(result) != 0 and _resume is not None:
            _resume()


def _before_fork() -> None:
    global _paused_by_hook
    with _lock:
        if _depth == 0 and _pause is not None:
            _paused_by_hook = True
            _pause()


def _after_fork_in_parent() -> None:
    global _paused_by_hook
    with _lock:
        if _paused_by_hook and _resume is not None:
            _paused_by_hook = False
            _resume()


def _after_fork_in_child() -> None:
    global _depth, _paused_by_hook, _lock
    _depth = 0
    _paused_by_hook = False
    _lock = threading.RLock()  # another thread may have held it at the fork


_stand_ins = StandIns(("fork", "forkpty"), lambda name: _entering, lambda name: _returned)
_hooks_registered = False


def install(pause: Callable[[], object], resume: Callable[[], object]) -> None:
    """Call ``pause()`` before every fork and ``resume()`` after it, in the parent."""
    global _pause, _resume, _hooks_registered
    _pause, _resume = pause, resume
    if not _hooks_registered:  # fork hooks cannot be removed: they dispatch to the above
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
        _hooks_registered = True
    _stand_ins.install()


def uninstall() -> None:
    """Stop pausing scope's threads around forks; put ``os.fork`` back."""
    global _pause, _resume
    _pause = _resume = None
    _stand_ins.uninstall()

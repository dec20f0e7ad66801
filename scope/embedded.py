"""Recording from inside a program: ``install()``, ``uninstall()`` and ``recording()``.

For programs that cannot be started under ``python -m scope run`` (a service's
entry point, a notebook, an embedding application)::

    import scope

    with scope.recording(level="args"):
        import app          # imported after install: instrumented
        app.main()

Modules of your code imported *before* ``install`` run uninstrumented; the run
names them once.  Settings are the configuration's keys (``db``, ``level``,
``levels``, ``include``, ...), on top of ``[tool.scope]`` and ``SCOPE_*`` as
for ``scope run``; they apply to the modules imported while they are in force
(code keeps the level it was instrumented with).  Inside a program already
recorded by ``scope run``, ``install`` returns that recorder and ``uninstall``
leaves it running, so the same program behaves the same whichever way it is
recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from scope.config import load_config
from scope.session import Recorder, RecorderReport, current_recorder

_lock = threading.Lock()
#: the recorder ``install`` started (None if none, or if ``scope run`` owns it)
_installed: Recorder | None = None


def install(**settings: Any) -> Recorder:
    """Start recording this process, or return the recorder already recording it.

    Raises ``scope.errors.ConfigError`` for a bad setting and
    ``scope.errors.RecordingError`` if the recording file cannot be written.
    """
    global _installed
    with _lock:
        active = current_recorder()
        if active is not None:
            return active
        recorder = Recorder(load_config(overrides=settings))
        recorder.start()
        _installed = recorder
        return recorder


def uninstall() -> RecorderReport | None:
    """Stop the recording ``install`` started and store it; its report, or None."""
    global _installed
    with _lock:
        recorder, _installed = _installed, None
    return recorder.stop() if recorder is not None else None


@contextmanager
def recording(**settings: Any) -> Iterator[Recorder]:
    """Record the ``with`` block (see ``install``); stored when the block ends."""
    recorder = install(**settings)
    owned = recorder is _installed
    try:
        yield recorder
    finally:
        if owned:
            uninstall()

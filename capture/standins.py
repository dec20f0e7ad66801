"""Look-alike builtins standing in for functions of ``os`` while recording.

``native.wrap_builtin`` makes a builtin with the original's name, module,
``__self__`` (the ``posix`` module), doc and signature that calls hooks around
the original.  ``StandIns`` makes one per name, once per process (the native
module has a fixed number of slots), puts them in ``os`` and ``posix`` where the
original still is, and puts the originals back where the program has not
replaced them since.  The hooks dispatch to whatever the current session set, so
sessions can come and go.
"""

from __future__ import annotations

import os
import posix
from collections.abc import Callable, Sequence
from typing import Any

from scope import native


class StandIns:
    """Stand-ins for ``os.<name>`` for each of ``names``."""

    def __init__(
        self,
        names: Sequence[str],
        before: Callable[[str], Callable[..., object]],
        after: Callable[[str], Callable[[object], object] | None] = lambda name: None,
    ) -> None:
        #: the names of the builtins replaced (those this platform has)
        self.names = tuple(name for name in names if hasattr(posix, name))
        self._before = before
        self._after = after
        self._originals: dict[str, Any] = {}
        self._wrappers: dict[str, Any] = {}

    def install(self) -> None:
        """Put the stand-ins in place (making them the first time)."""
        for name in self.names:
            if name not in self._wrappers:
                self._originals[name] = getattr(posix, name)
                self._wrappers[name] = native.wrap_builtin(
                    self._originals[name], self._before(name), self._after(name)
                )
            for module in (os, posix):
                if getattr(module, name) is self._originals[name]:
                    setattr(module, name, self._wrappers[name])

    def uninstall(self) -> None:
        """Put the originals back (where the program has not replaced the stand-ins)."""
        for name, wrapper in self._wrappers.items():
            for module in (os, posix):
                if getattr(module, name) is wrapper:
                    setattr(module, name, self._originals[name])

"""Decide which modules are the user's own, and so get instrumented.

By default a module is the user's when its source file lies under one of the
roots (the project root and the script's folder) and not in the standard
library, a site-packages folder, a virtual environment or scope itself.
``include`` and ``exclude`` patterns refine that: a pattern with a ``/`` or
ending in ``.py`` matches file paths, any other matches dotted module names
(both with ``fnmatch`` wildcards; a module pattern also matches submodules),
and a ``module:function`` pattern names functions: in ``include`` it includes
its module, in ``exclude`` it is left to the plan, which turns those functions
off.  Exclusion wins over inclusion; scope itself is never instrumented.
"""

from __future__ import annotations

import fnmatch
import os
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from scope.instrument.plan import is_function_pattern, pattern_matches

_SCOPE_PACKAGES = ("scope", "instrument", "capture", "native", "storage", "query")
_THIRD_PARTY_PARTS = frozenset({"site-packages", "dist-packages"})


@dataclass(frozen=True)
class Decision:
    """Whether a module is instrumented, and why (shown by ``scope plan``)."""

    instrument: bool
    reason: str


def _real(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(_real_folder(folder), os.path.normcase(name))


@lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    """``realpath`` of a folder, remembered: it costs a ``lstat`` per path component."""
    return os.path.normcase(os.path.realpath(folder))


def _is_under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _scope_dirs() -> tuple[str, ...]:
    """The folders scope's own packages were loaded from (six in a source checkout)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if os.path.basename(here) == "instrument" and os.path.isdir(os.path.join(here, "..", "scope")):
        parent = os.path.dirname(here)
        return tuple(_real(os.path.join(parent, name)) for name in _SCOPE_PACKAGES)
    return (_real(os.path.dirname(here)),)


def _system_dirs() -> tuple[str, ...]:
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    paths = sysconfig.get_paths()
    dirs = {_real(paths[n]) for n in names if n in paths}
    return tuple(sorted(dirs))


@lru_cache(maxsize=4096)
def _in_virtualenv(folder: str) -> bool:
    """Whether ``folder`` or a parent holds a ``pyvenv.cfg`` (a virtual environment)."""
    if os.path.exists(os.path.join(folder, "pyvenv.cfg")):
        return True
    parent = os.path.dirname(folder)
    return parent != folder and _in_virtualenv(parent)


def _matches(
    patterns: Sequence[str], module: str, path: str, functions: bool = False
) -> str | None:
    """The first pattern that names the module; ``module:function`` ones only if ``functions``."""
    for pattern in patterns:
        if is_function_pattern(pattern):
            if functions and pattern_matches(pattern, module):
                return pattern
        elif "/" not in pattern and pattern.endswith(".py"):
            # A file name: ``*`` must not reach into the folders above it.
            if fnmatch.fnmatch(os.path.basename(path), os.path.normcase(pattern)):
                return pattern
        elif "/" in pattern:
            absolute = _real(pattern) if not any(c in pattern for c in "*?[") else pattern
            if fnmatch.fnmatch(path, absolute) or fnmatch.fnmatch(path, f"*/{pattern}"):
                return pattern
            if _is_under(path, absolute):
                return pattern
        elif fnmatch.fnmatchcase(module, pattern) or fnmatch.fnmatchcase(module, f"{pattern}.*"):
            return pattern
    return None


class ModuleSelector:
    """Answers "is this module the user's?" for the import hook and ``scope plan``."""

    def __init__(
        self,
        roots: Iterable[str],
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> None:
        self.roots = tuple(dict.fromkeys(_real(r) for r in roots))
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self._system = _system_dirs()
        self._scope = _scope_dirs()
        #: without patterns a decision depends on the folder alone: one per folder
        self._by_folder: dict[str, Decision] | None = None if self.include or self.exclude else {}

    def decide(self, module: str, path: str) -> Decision:
        """Decide for the module ``module`` whose source file is ``path``."""
        if self._by_folder is None:
            return self._decide(module, path)
        folder = os.path.dirname(path)
        decision = self._by_folder.get(folder)
        if decision is None:
            decision = self._by_folder[folder] = self._decide(module, path)
        return decision

    def _decide(self, module: str, path: str) -> Decision:
        real = _real(path)
        if any(_is_under(real, d) for d in self._scope):
            return Decision(False, "scope itself")
        matched = _matches(self.exclude, module, real)
        if matched:
            return Decision(False, f"excluded by {matched!r}")
        # An exclude pattern that names functions turns those off, not the module.
        matched = _matches(self.include, module, real, functions=True)
        if matched:
            return Decision(True, f"included by {matched!r}")
        if self.include:
            return Decision(False, "not matched by any include pattern")
        if _THIRD_PARTY_PARTS & set(real.split(os.sep)):
            return Decision(False, "third-party (site-packages)")
        if any(_is_under(real, d) for d in self._system):
            return Decision(False, "standard library or installed package")
        if _in_virtualenv(os.path.dirname(real)):
            return Decision(False, "inside a virtual environment")
        for root in self.roots:
            if _is_under(real, root):
                return Decision(True, f"under {root}")
        return Decision(False, "outside the project")


def default_roots(project_root: str, script: str | None) -> list[str]:
    """The folders whose modules are the user's by default."""
    roots = [project_root]
    if script is not None:
        roots.append(os.path.dirname(os.path.abspath(script)))
    return roots

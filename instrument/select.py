"""Decide which modules are the user's own, and so get instrumented.

By default a module is the user's when its source file lies under one of the
roots (the project root and the script's folder) and not in the standard
library, a site-packages folder, a virtual environment or scope itself.
Patterns change that: ``include`` adds modules to those, ``only`` replaces
them (``include`` still adds to what ``only`` selects), and ``exclude`` takes
modules away, whatever else names them.  A pattern with a ``/`` or ending in
``.py`` matches file paths, any other matches dotted module names (both with
``fnmatch`` wildcards; a module pattern also matches submodules), and a
``module:function`` pattern names functions: in ``include`` it adds those
functions of a module otherwise left alone; in ``only`` it selects its module,
and the plan leaves every function it does not name off; in ``exclude`` the
plan turns those functions off.  A script running as ``__main__`` is matched
under its file's stem too.  Scope itself is never instrumented.
"""

from __future__ import annotations

import fnmatch
import os
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from scope.instrument.plan import is_function_pattern, pattern_matches, script_names

_SCOPE_PACKAGES = ("scope", "instrument", "capture", "native", "storage", "query")
_THIRD_PARTY_PARTS = frozenset({"site-packages", "dist-packages"})


@dataclass(frozen=True)
class Decision:
    """Whether a module is instrumented, and why (shown by ``scope plan``)."""

    instrument: bool
    reason: str
    #: ``module:function`` patterns naming the only functions to record (an include
    #: pattern adding functions of a module that is not otherwise recorded)
    functions: tuple[str, ...] = ()
    #: the module or path pattern that decided, if one did
    pattern: str | None = None


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
    patterns: Sequence[str], names: Sequence[str], path: str, functions: bool = False
) -> str | None:
    """The first pattern that names the module (known as any of ``names``) or its file;
    ``module:function`` ones only if ``functions``."""
    for pattern in patterns:
        if is_function_pattern(pattern):
            if functions and any(pattern_matches(pattern, name) for name in names):
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
        elif any(
            fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, f"{pattern}.*")
            for name in names
        ):
            return pattern
    return None


class ModuleSelector:
    """Answers "is this module the user's?" for the import hook and ``scope plan``."""

    def __init__(
        self,
        roots: Iterable[str],
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        only: Sequence[str] = (),
    ) -> None:
        self.roots = tuple(dict.fromkeys(_real(r) for r in roots))
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.only = tuple(only)
        self._system = _system_dirs()
        self._scope = _scope_dirs()
        #: without patterns a decision depends on the folder alone: one per folder
        patterns = self.include or self.exclude or self.only
        self._by_folder: dict[str, Decision] | None = None if patterns else {}
        #: the module and path patterns that have decided about a module so far
        self.decided_by: set[str] = set()

    def decide(self, module: str, path: str) -> Decision:
        """Decide for the module ``module`` whose source file is ``path``."""
        if self._by_folder is None:
            decision = self._decide(module, path)
            if decision.pattern is not None:
                self.decided_by.add(decision.pattern)
            return decision
        folder = os.path.dirname(path)
        known = self._by_folder.get(folder)
        if known is None:
            known = self._by_folder[folder] = self._decide(module, path)
        return known

    def _decide(self, module: str, path: str) -> Decision:
        real = _real(path)
        names = (module, *script_names(module, path))
        if any(_is_under(real, d) for d in self._scope):
            return Decision(False, "scope itself")
        # An exclude pattern that names functions turns those off, not the module.
        matched = _matches(self.exclude, names, real)
        if matched:
            return Decision(False, f"excluded by {matched!r}", pattern=matched)
        if self.only:
            matched = _matches(self.only, names, real, functions=True)
            if matched:
                return Decision(True, f"selected by only {matched!r}", pattern=matched)
            left = Decision(False, "not matched by any only pattern")
        else:
            left = self._decide_by_place(real)
            if left.instrument:
                # An include pattern naming the user's own module adds nothing, but
                # it did name something: it is not reported as matching nothing.
                return replace(left, pattern=_matches(self.include, names, real))
        matched = _matches(self.include, names, real)
        if matched:
            return Decision(True, f"included by {matched!r}", pattern=matched)
        naming = [
            p
            for p in self.include
            if is_function_pattern(p) and any(pattern_matches(p, name) for name in names)
        ]
        if naming:
            return Decision(True, f"included by {naming[0]!r}", tuple(naming))
        return left

    def _decide_by_place(self, real: str) -> Decision:
        """The default: whether the file lies among the user's code."""
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

"""The instrumentation plan: for each function of a module, an id and a capture level.

A plan is plain data, built from the analysis and the configuration, so that it
can be printed (``scope plan``), compared, hashed into the bytecode cache key,
and written to the recording's ``function`` table.

Function ids are stable: a 56-bit hash of the module name, the qualified name
and the occurrence of that qualified name in the module.  The same function
gets the same id in every run (so runs compare without a mapping step), and
cached rewritten bytecode stays valid whatever order modules are imported in.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # analyze imports libcst, which a cached run never needs
    from scope.instrument.analyze import FunctionInfo

LEVELS = ("off", "calls", "args", "full")

#: Kinds whose calls suspend and resume (they report each yield and await).
RESUMABLE_KINDS = frozenset({"generator", "coroutine", "async_generator"})
ASYNC_KINDS = frozenset({"coroutine", "async_generator"})

#: Names whose values never leave the process, matched case-insensitively as
#: substrings (``redact`` in the configuration adds more, as fnmatch patterns).
DEFAULT_REDACT = ("password", "passwd", "secret", "token", "api_key", "apikey", "authorization")

# The high byte of the id instrumented code passes; matches SCOPE_FLAG_* in scope_native.h.
FLAG_SHIFT = 56
FLAG_ARGS = 1
FLAG_FULL = 2
FLAG_RESUMABLE = 4
FLAG_ASYNC = 8


def is_secret(name: str, extra_patterns: Sequence[str] = ()) -> bool:
    """Whether values named ``name`` must be redacted."""
    lowered = name.lower()
    if any(word in lowered for word in DEFAULT_REDACT):
        return True
    return any(fnmatch.fnmatchcase(lowered, p.lower()) for p in extra_patterns)


@dataclass(frozen=True)
class FunctionPlan:
    """How one function is instrumented."""

    id: int
    qualname: str
    name: str
    kind: str
    #: source order of the ``def`` in its module, for matching against the ast
    index: int
    level: str
    reason: str
    #: parameter names, in the order arguments are recorded
    params: tuple[str, ...] = ()
    #: attributes of self whose assignments are recorded; a write's index is its position
    attributes: tuple[str, ...] = ()
    #: parameters and attributes whose values are replaced by "redacted"
    redacted: frozenset[str] = frozenset()

    @property
    def flags(self) -> int:
        """How the native side records this function (``FLAG_*``)."""
        flags = 0
        if self.level in ("args", "full"):
            flags |= FLAG_ARGS
        if self.level == "full":
            flags |= FLAG_FULL
        if self.kind in RESUMABLE_KINDS:
            flags |= FLAG_RESUMABLE
        if self.kind in ASYNC_KINDS:
            flags |= FLAG_ASYNC
        return flags

    @property
    def tagged_id(self) -> int:
        """The id with its flags in the high byte: the constant instrumented code passes."""
        return self.id | (self.flags << FLAG_SHIFT)


@dataclass(frozen=True)
class ModulePlan:
    """How one module is instrumented: its functions, in source order."""

    module: str
    path: str
    functions: tuple[FunctionPlan, ...]

    def digest(self) -> str:
        """A short hash of every decision in the plan (for cache keys)."""
        h = hashlib.blake2b(digest_size=8)
        for f in self.functions:
            h.update(f"{f.tagged_id}:{f.params}:{f.attributes}:{sorted(f.redacted)}\n".encode())
        return h.hexdigest()

    @property
    def instrumented(self) -> tuple[FunctionPlan, ...]:
        """The functions whose level is not ``off``."""
        return tuple(f for f in self.functions if f.level != "off")


def function_id(module: str, qualname: str, occurrence: int) -> int:
    """The stable id of the ``occurrence``-th function named ``qualname`` in ``module``."""
    digest = hashlib.blake2b(f"{module}\0{qualname}\0{occurrence}".encode(), digest_size=7)
    return int.from_bytes(digest.digest(), "big") or 1


def make_plan(
    module: str,
    path: str,
    functions: Sequence[FunctionInfo],
    level: str,
    redact: Sequence[str] = (),
) -> ModulePlan:
    """Decide each function's id and level from its description and the module's level.

    ``redact`` adds fnmatch patterns to ``DEFAULT_REDACT`` for names whose
    values are never recorded.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown capture level {level!r}")
    seen: Counter[str] = Counter()
    plans = []
    for index, info in enumerate(functions):
        occurrence = seen[info.qualname]
        seen[info.qualname] += 1
        if level == "off":
            function_level, reason = "off", "module level is off"
        elif level != "calls" and info.scope_sensitive:
            # Summaries never call these, but a value's repr (if asked for) might.
            function_level, reason = "calls", f"{info.name} may run while scope records a value"
        else:
            function_level, reason = level, "default"
        records_values = function_level in ("args", "full")
        names = (*info.params, *info.self_attributes) if records_values else ()
        plans.append(
            FunctionPlan(
                id=function_id(module, info.qualname, occurrence),
                qualname=info.qualname,
                name=info.name,
                kind=info.kind,
                index=index,
                level=function_level,
                reason=reason,
                params=info.params if records_values else (),
                attributes=info.self_attributes if records_values else (),
                redacted=frozenset(n for n in names if is_secret(n, redact)),
            )
        )
    return ModulePlan(module=module, path=path, functions=tuple(plans))

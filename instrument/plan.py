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

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from scope.instrument.analyze import FunctionInfo

LEVELS = ("off", "calls", "args", "full")

#: Kinds the rewriter does not instrument yet, with the reason the plan shows.
UNSUPPORTED_KINDS = {
    "generator": "generators are not instrumented yet (suspend/resume reporting)",
    "coroutine": "coroutines are not instrumented yet (suspend/resume reporting)",
    "async_generator": "async generators are not instrumented yet (suspend/resume reporting)",
}


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
            h.update(f"{f.id}:{f.level}\n".encode())
        return h.hexdigest()

    @property
    def instrumented(self) -> tuple[FunctionPlan, ...]:
        """The functions whose level is not ``off``."""
        return tuple(f for f in self.functions if f.level != "off")


def function_id(module: str, qualname: str, occurrence: int) -> int:
    """The stable id of the ``occurrence``-th function named ``qualname`` in ``module``."""
    digest = hashlib.blake2b(f"{module}\0{qualname}\0{occurrence}".encode(), digest_size=7)
    return int.from_bytes(digest.digest(), "big") or 1


def make_plan(module: str, path: str, functions: Sequence[FunctionInfo], level: str) -> ModulePlan:
    """Decide each function's id and level from its description and the module's level."""
    if level not in LEVELS:
        raise ValueError(f"unknown capture level {level!r}")
    seen: Counter[str] = Counter()
    plans = []
    for index, info in enumerate(functions):
        occurrence = seen[info.qualname]
        seen[info.qualname] += 1
        if level == "off":
            function_level, reason = "off", "module level is off"
        elif info.kind in UNSUPPORTED_KINDS:
            function_level, reason = "off", UNSUPPORTED_KINDS[info.kind]
        else:
            function_level, reason = level, "default"
        plans.append(
            FunctionPlan(
                id=function_id(module, info.qualname, occurrence),
                qualname=info.qualname,
                name=info.name,
                kind=info.kind,
                index=index,
                level=function_level,
                reason=reason,
            )
        )
    return ModulePlan(module=module, path=path, functions=tuple(plans))

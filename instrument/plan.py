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
import functools
import marshal
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

try:  # hashlib loads OpenSSL's library first: a few ms in every recorded process
    # (scope.instrument.cache takes it from here)
    from _blake2 import blake2b as blake2b
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import blake2b as blake2b

from scope.interpreter import PYBEHAVIOR
from scope.levels import LEVELS as LEVELS
from scope.redaction import name_is_secret

if TYPE_CHECKING:  # analyze imports libcst, which a cached run never needs
    from scope.instrument.analyze import FunctionInfo

#: The ``co_name`` of each comprehension's code object (a scope of its own on 3.11), by
#: node class name, which libcst and ``ast`` share.
COMPREHENSION_NAMES = {
    "ListComp": "<listcomp>",
    "SetComp": "<setcomp>",
    "DictComp": "<dictcomp>",
    "GeneratorExp": "<genexpr>",
}


def comprehension_name(node_type: str) -> str | None:
    """The name a comprehension adds to the ``__qualname__`` of what is defined in it.

    None where it adds none: from 3.12 list, set and dict comprehensions are
    inlined into the scope that contains them (PEP 709); generator expressions
    keep a scope of their own on every version.
    """
    if node_type != "GeneratorExp" and not PYBEHAVIOR.comprehension_scopes:
        return None
    return COMPREHENSION_NAMES[node_type]


#: Kinds whose calls suspend and resume (they report each yield and await).
RESUMABLE_KINDS = frozenset({"generator", "coroutine", "async_generator"})
ASYNC_KINDS = frozenset({"coroutine", "async_generator"})

# The high byte of the id instrumented code passes; matches SCOPE_FLAG_* in scope_native.h.
FLAG_SHIFT = 56
FLAG_ARGS = 1
FLAG_FULL = 2
FLAG_RESUMABLE = 4
FLAG_ASYNC = 8
FLAG_EXPRESSION = 16
#: only on suspension reports: made from inside a comprehension (see rewrite.py)
FLAG_IN_COMPREHENSION = 32
#: its name is a secret's (``get_api_key``): what it returns is redacted
FLAG_SECRET = 64


@dataclass(frozen=True)
class FunctionPlan:
    """How one function is instrumented."""

    id: int
    qualname: str
    name: str
    kind: str
    #: position in the module's plan: defs in source order (how the rewriter matches
    #: them to the ast), then the lambdas of each scope (matched by qualified name)
    index: int
    level: str
    reason: str
    #: parameter names, in the order arguments are recorded
    params: tuple[str, ...] = ()
    #: attributes of self whose assignments are recorded; a write's index is its position
    attributes: tuple[str, ...] = ()
    #: parameters and attributes whose values are replaced by "redacted"
    redacted: frozenset[str] = frozenset()
    #: its name is a secret's (``scope.redaction``): its return value is redacted
    secret: bool = False
    #: first line of the ``def`` (of a scope's first lambda); 0 until the rewriter sets it
    line: int = 0

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
        if self.kind == "lambda":
            flags |= FLAG_EXPRESSION
        if self.secret:
            flags |= FLAG_SECRET
        return flags

    @property
    def tagged_id(self) -> int:
        """The id with its flags in the high byte: the constant instrumented code passes."""
        return self.id | (self.flags << FLAG_SHIFT)


_FUNCTION_FIELDS = tuple(f.name for f in fields(FunctionPlan))


@dataclass(frozen=True)
class ModulePlan:
    """How one module is instrumented: its functions, in source order."""

    module: str
    path: str
    functions: tuple[FunctionPlan, ...]

    def to_data(self) -> tuple[Any, ...]:
        """The plan as tuples of plain values, which ``marshal`` stores and loads fast."""
        rows = tuple(
            tuple(
                sorted(value) if isinstance(value, frozenset) else value
                for value in (getattr(f, name) for name in _FUNCTION_FIELDS)
            )
            for f in self.functions
        )
        return (self.module, self.path, rows)

    @classmethod
    def from_data(cls, data: tuple[Any, ...]) -> ModulePlan:
        """The plan ``to_data`` described (raises ``ValueError`` for anything else)."""
        module, path, rows = data
        functions = []
        for row in rows:
            if len(row) != len(_FUNCTION_FIELDS):
                raise ValueError("not a plan of this version")
            # A frozen dataclass sets each field through object.__setattr__: on the
            # warm import path, filling __dict__ at once is three times faster.
            function = object.__new__(FunctionPlan)
            function.__dict__.update(zip(_FUNCTION_FIELDS, row, strict=True))
            function.__dict__["redacted"] = frozenset(function.redacted)
            functions.append(function)
        return cls(module, path, tuple(functions))

    def with_lines(self, lines: Mapping[int, int]) -> ModulePlan:
        """The same plan with each function's first line (``lines`` maps plan index to line)."""
        functions = tuple(replace(f, line=lines.get(f.index, f.line)) for f in self.functions)
        return replace(self, functions=functions)

    @property
    def defs(self) -> tuple[FunctionPlan, ...]:
        """The plans of the module's ``def`` statements, in source order."""
        return tuple(f for f in self.functions if f.kind != "lambda")

    @property
    def lambdas(self) -> dict[str, FunctionPlan]:
        """The plans of the module's lambdas, by qualified name (one per scope)."""
        return {f.qualname: f for f in self.functions if f.kind == "lambda"}

    @property
    def instrumented(self) -> tuple[FunctionPlan, ...]:
        """The functions whose level is not ``off``."""
        return tuple(f for f in self.functions if f.level != "off")


#: A plan, or its ``to_data`` marshalled as the cache keeps it: a cached import hands
#: this on undecoded, and whoever needs the functions (the writer thread) decodes it.
PackedPlan = ModulePlan | bytes


def unpack_plan(plan: PackedPlan) -> ModulePlan:
    """The plan itself (raises ``ValueError`` for bytes that are not a packed plan)."""
    if isinstance(plan, ModulePlan):
        return plan
    return ModulePlan.from_data(marshal.loads(plan))


def function_id(module: str, qualname: str, occurrence: int) -> int:
    """The stable id of the ``occurrence``-th function named ``qualname`` in ``module``."""
    digest = blake2b(f"{module}\0{qualname}\0{occurrence}".encode(), digest_size=7)
    return int.from_bytes(digest.digest(), "big") or 1


def _name_matches(pattern: str, name: str) -> bool:
    """fnmatch, where a pattern also matches the dotted names under it (``a`` matches ``a.b``)."""
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, f"{pattern}.*")


def is_function_pattern(pattern: str) -> bool:
    """Whether ``pattern`` names functions (``module:qualname``) rather than modules or paths."""
    return ":" in pattern and "/" not in pattern and "\\" not in pattern


def pattern_matches(pattern: str, module: str, qualname: str | None = None) -> bool:
    """Whether ``pattern`` (``module`` or ``module:qualname``, fnmatch) matches a function.

    With ``qualname`` left out, only the module part is compared.  Either part
    also matches what is nested under it: ``app`` matches ``app.db``, and
    ``app:Model`` matches ``Model.save`` and ``Model.save.<locals>.check``.
    """
    module_part, _, function_part = pattern.partition(":")
    if not _name_matches(module_part or "*", module):
        return False
    return qualname is None or not function_part or _name_matches(function_part, qualname)


#: the names a script runs under: python's main module, multiprocessing's children's
MAIN_NAMES = ("__main__", "__mp_main__")


def script_names(module: str, path: str) -> tuple[str, ...]:
    """The other name patterns know module ``module`` at ``path`` by: a script running
    as ``__main__`` is also the module its file would be if imported (its stem)."""
    if module in MAIN_NAMES and path.endswith(".py"):
        return (os.path.splitext(os.path.basename(path))[0],)
    return ()


@dataclass(frozen=True)
class PlanSettings:
    """The configuration that decides each function's level (and so a module's plan)."""

    #: the level of every function no pattern names
    level: str = "calls"
    #: (pattern, level) pairs in order; the last pattern that matches a function decides
    levels: tuple[tuple[str, str], ...] = ()
    #: the include, exclude and only patterns (``scope.instrument.select`` reads
    #: them for modules); ``module:qualname`` ones in exclude turn functions off,
    #: and in ``only`` leave every other function of their modules off
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: extra patterns for names whose values are never recorded (``scope.redaction``)
    redact: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    #: ``module:qualname`` patterns naming the only functions recorded in a module
    #: that is recorded for them alone (an include pattern that names functions)
    limit: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for level in (self.level, *(level for _, level in self.levels)):
            if level not in LEVELS:
                raise ValueError(f"unknown capture level {level!r}")

    def digest(self) -> str:
        """A short hash of every setting (part of the cache's file names and keys)."""
        return _settings_digest(self)

    def limited_to(self, patterns: Sequence[str]) -> PlanSettings:
        """These settings, recording only the functions ``patterns`` name."""
        return replace(self, limit=tuple(patterns)) if patterns else self

    def decide(self, module: str, qualname: str, aliases: Sequence[str] = ()) -> tuple[str, str]:
        """The level of function ``qualname`` of ``module`` (also known as ``aliases``),
        and why."""
        names = (module, *aliases)

        def named_by(pattern: str, qualname: str | None = qualname) -> bool:
            return any(pattern_matches(pattern, name, qualname) for name in names)

        level, reason = self.level, "default level"
        for pattern, pattern_level in self.levels:
            if named_by(pattern):
                level, reason = pattern_level, f"level {pattern_level} by {pattern!r}"
        for pattern in self.exclude:
            if is_function_pattern(pattern) and named_by(pattern):
                return "off", f"excluded by {pattern!r}"
        for patterns, source in ((self.only, "only"), (self.limit, "include")):
            mine = [p for p in patterns if is_function_pattern(p) and named_by(p, None)]
            if mine and not any(named_by(p) for p in mine):
                return "off", f"not named by any {source} pattern ({', '.join(mine)})"
        return level, reason


@functools.cache
def _settings_digest(settings: PlanSettings) -> str:
    text = repr((settings.level, settings.levels, settings.include, settings.exclude))
    text += repr((settings.redact, settings.only, settings.limit))
    return blake2b(text.encode(), digest_size=6).hexdigest()


def make_plan(
    module: str,
    path: str,
    functions: Sequence[FunctionInfo],
    settings: PlanSettings,
) -> ModulePlan:
    """Decide each function's id and level from its description and the settings."""
    aliases = script_names(module, path)
    seen: Counter[str] = Counter()
    plans = []
    for index, info in enumerate(functions):
        occurrence = seen[info.qualname]
        seen[info.qualname] += 1
        function_level, reason = settings.decide(module, info.qualname, aliases)
        if function_level not in ("off", "calls") and info.scope_sensitive:
            # Summaries never call these, but a value's repr (if asked for) might.
            function_level, reason = "calls", f"{info.name} may run while scope records a value"
        records_values = function_level in ("args", "full")
        names = (*info.params, *info.self_attributes) if records_values else ()
        # A scope's lambdas share an id, so their arguments are recorded by position.
        named_params = info.params if records_values and info.kind != "lambda" else ()
        plans.append(
            FunctionPlan(
                id=function_id(module, info.qualname, occurrence),
                qualname=info.qualname,
                name=info.name,
                kind=info.kind,
                index=index,
                level=function_level,
                reason=reason,
                params=named_params,
                attributes=info.self_attributes if records_values else (),
                redacted=frozenset(n for n in names if name_is_secret(n, settings.redact)),
                secret=records_values and name_is_secret(info.name, settings.redact),
            )
        )
    return ModulePlan(module=module, path=path, functions=tuple(plans))

"""Explain what scope would do to modules: the answer behind ``scope plan``.

For each module named on the command line (a file, a folder of them, or a
dotted module name found on ``sys.path`` without importing anything) it gives
the selector's decision and, for the user's modules, the plan: every function
with its kind, first line, capture level and the reason for that level.  It
uses the same ``ModuleSelector``, ``PlanSettings`` and rewriter as a recorded
run, so what it prints is what a run would do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.machinery import PathFinder, SourceFileLoader

from scope.instrument.hook import Instrumenter
from scope.instrument.plan import FunctionPlan, ModulePlan, PlanSettings
from scope.instrument.select import ModuleSelector, default_roots
from scope.instrument.unmatched import describe, unmatched_patterns

from scope.errors import ProgramError

#: folders never walked into when a folder is explained
_SKIPPED_FOLDERS = frozenset({"__pycache__", "node_modules", "build", "dist"})


@dataclass(frozen=True)
class ModuleReport:
    """What scope does with one module: instrument it (and how) or leave it alone."""

    module: str
    path: str
    instrumented: bool
    reason: str
    functions: tuple[FunctionPlan, ...] = ()
    #: why the module would be loaded as is although it is the user's (it does not parse)
    error: str | None = None
    #: the module or path pattern that decided, if one did
    pattern: str | None = None


def module_name(path: str) -> str:
    """The dotted name ``path`` is imported under: its name, prefixed by its packages."""
    folder, filename = os.path.split(os.path.abspath(path))
    stem = os.path.splitext(filename)[0]
    parts = [] if stem == "__init__" else [stem]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        folder, package = os.path.split(folder)
        parts.insert(0, package)
    return ".".join(parts) or stem


def _files_under(folder: str) -> Iterator[str]:
    for current, folders, files in os.walk(folder):
        folders[:] = sorted(
            f
            for f in folders
            if not f.startswith(".")
            and f not in _SKIPPED_FOLDERS
            and not os.path.exists(os.path.join(current, f, "pyvenv.cfg"))
        )
        yield from (os.path.join(current, f) for f in sorted(files) if f.endswith(".py"))


def _find_module(name: str) -> str:
    """The source file of module ``name``, found like the import system would, importing nothing."""
    search: Sequence[str] | None = [os.getcwd(), *sys.path[1:]]
    spec = None
    for depth in range(name.count(".") + 1):
        fullname = ".".join(name.split(".")[: depth + 1])
        spec = PathFinder.find_spec(fullname, search)
        if spec is None:
            raise ProgramError(f"no module named {fullname!r} (and no file {name!r})")
        search = spec.submodule_search_locations
        if search is None and fullname != name:
            raise ProgramError(f"{fullname!r} is not a package, so it has no {name!r}")
    assert spec is not None
    if not isinstance(spec.loader, SourceFileLoader) or not spec.origin:
        raise ProgramError(f"{name!r} is not a Python source module (it is {spec.origin!r})")
    return spec.origin


def targets_to_modules(targets: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """(module, path, script folder) for each file, file of a folder, or module name."""
    found: list[tuple[str, str, str | None]] = []
    for target in targets:
        if os.path.isdir(target):
            found.extend((module_name(p), p, None) for p in _files_under(target))
        elif os.path.isfile(target):
            found.append((module_name(target), target, target))
        elif target.replace(".", "").replace("_", "").isalnum():
            found.append((target, _find_module(target), None))
        else:
            raise ProgramError(f"no such file, folder or module: {target}")
    return found


def explain(
    targets: Sequence[str],
    project_root: str,
    settings: PlanSettings,
) -> list[ModuleReport]:
    """Decide and plan every module ``targets`` name, as a recorded run would."""
    from scope.instrument.rewrite import instrument_source

    instrumenter = Instrumenter(settings)
    reports = []
    for module, path, script in targets_to_modules(targets):
        selector = ModuleSelector(
            default_roots(project_root, script),
            include=settings.include,
            exclude=settings.exclude,
            only=settings.only,
        )
        decision = selector.decide(module, path)
        if not decision.instrument:
            reports.append(
                ModuleReport(module, path, False, decision.reason, pattern=decision.pattern)
            )
            continue
        try:
            with open(path, "rb") as f:
                source = f.read()
            limited = settings.limited_to(decision.functions)
            plan = instrument_source(
                source, path, instrumenter.plan(module, path, source, limited)
            )[1]
        except Exception as exc:  # what the hook would do: load it as is
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            reports.append(
                ModuleReport(
                    module, path, True, decision.reason, error=error, pattern=decision.pattern
                )
            )
            continue
        reports.append(
            ModuleReport(
                module, path, True, decision.reason, plan.functions, pattern=decision.pattern
            )
        )
    return reports


def unmatched_in(reports: Sequence[ModuleReport], settings: PlanSettings) -> list[str]:
    """A line for each pattern that named none of the modules explained, nor their functions."""
    decided_by = {r.pattern for r in reports if r.pattern is not None}
    plans = [ModulePlan(r.module, r.path, r.functions) for r in reports if r.functions]
    return describe(unmatched_patterns(settings, decided_by, plans), "in the modules explained")

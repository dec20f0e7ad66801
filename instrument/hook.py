"""The import hook: a meta-path finder that hands the user's modules to scope's loader.

The finder asks the standard ``PathFinder`` where a module is, and claims it only
when it is plain Python source (``SourceFileLoader``) that the selector calls the
user's; everything else (extension, frozen, zip, namespace and third-party
modules) is left to the usual machinery by returning ``None``.

The loader stays the standard ``SourceFileLoader`` the path finder made, so
that ``type(module.__loader__)``, the spec's repr and ``isinstance`` checks are
what the program sees without scope; one thing changes, on that instance
alone: its ``get_code`` (``InstrumentedCode``).  The code comes from scope's own
cache (``scope.instrument.cache``) or is instrumented from the source; the
standard ``__pycache__`` files are neither read nor written for instrumented
modules, so plain ``python`` runs never see instrumented bytecode.
``__file__``, ``__spec__``, ``inspect.getsource`` and ``-B`` work as usual
because the rest is the standard loader.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
from types import CodeType, ModuleType
from typing import Any, cast

from scope.instrument import cache
from scope.instrument.plan import ModulePlan, PackedPlan, PlanSettings, make_plan
from scope.instrument.rewrite import instrument_source
from scope.instrument.select import ModuleSelector

from scope import native
from scope.errors import CapabilityMissing
from scope.interpreter import PYBEHAVIOR
from scope.patching import Patch

#: Called with each module's plan (packed when it came from the cache), before its code runs.
PlanListener = Callable[[PackedPlan], None]
#: Called when instrumenting a module failed and it was loaded as is.
FailureListener = Callable[[str, str, BaseException], None]


#: The plan of every module instrumented in this process, by (module, path): a later
#: recording in the same process (``scope.install`` again) still runs their code.
_loaded: dict[tuple[str, str], PackedPlan] = {}


def loaded_plans() -> list[PackedPlan]:
    """The plans of the modules instrumented so far in this process (the latest of each)."""
    return list(_loaded.values())


def may_define_functions(source: bytes) -> bool:
    """Whether ``source`` may define a function (``def`` or ``lambda`` appear in it).

    A "no" is certain, and spares analysing it (``python -c pass`` in a recorded
    child: such code has no cache entry, and libcst costs ~0.2 s to import).
    """
    return b"def" in source or b"lambda" in source


def compiles(source: bytes, path: str) -> bool:
    """Whether Python compiles ``source``: if not, scope's refusal was no failure of scope's.

    Python's own refusals include ``RecursionError`` and ``MemoryError`` for
    source nested too deep, besides ``SyntaxError`` and ``ValueError``.
    """
    try:
        compile(source, path, "exec", dont_inherit=True)
    except Exception:
        return False
    return True


class Instrumenter:
    """Turns a module's source into instrumented code, reporting plans and failures."""

    def __init__(
        self,
        settings: PlanSettings,
        on_plan: PlanListener | None = None,
        on_failure: FailureListener | None = None,
        code_cache: cache.CodeCache | None = None,
    ) -> None:
        self.settings = settings
        self.on_plan = on_plan
        self.on_failure = on_failure
        self.code_cache = code_cache or cache.CodeCache(None, 0)

    def plan(
        self, module: str, path: str, source: bytes | str, settings: PlanSettings | None = None
    ) -> ModulePlan:
        """The plan for ``source`` (with ``settings``, else the instrumenter's).

        Raises what ``analyze_source`` raises: Python's own error for source Python
        refuses, ``TooComplex`` for source beyond scope's budget, libcst's parser
        error for source libcst cannot read.
        """
        from scope.instrument.analyze import analyze_source  # libcst: only on a cache miss

        return make_plan(module, path, analyze_source(source), settings or self.settings)

    def compile(
        self,
        module: str,
        path: str,
        read_source: Callable[[], bytes],
        functions: Sequence[str] = (),
    ) -> CodeType | None:
        """Instrumented code for the module at ``path``, or ``None`` if scope could not.

        ``functions``: the only functions to record, by pattern (see ``Decision``).

        The plan and code come from ``scope.instrument.cache`` when a valid entry
        exists (``read_source`` is then called only if the file's size or time
        changed), and go there when they were made.  Source Python refuses
        (``SyntaxError``; ``RecursionError`` when nested too deep) is not scope's
        failure: the caller compiles it normally so that Python raises its own
        error.  Any other failure, a module beyond the analysis' budget
        (``TooComplex``) among them, goes to ``on_failure`` and the module is
        loaded as is.
        """
        settings = self.settings.limited_to(functions)
        with native.scope_work():  # its file reads and imports are not the program's
            return self._compile(module, path, read_source, settings)

    def _compile(
        self, module: str, path: str, read_source: Callable[[], bytes], settings: PlanSettings
    ) -> CodeType | None:
        key = cache.entry_key(module, path, settings)
        facts = cache.SourceFacts.of(path)
        cached = self.code_cache.load(path, key, facts, read_source)
        plan: PackedPlan
        if cached is not None:
            plan, code = cached
        else:
            source = read_source()
            try:
                if may_define_functions(source):
                    plan_made = self.plan(module, path, source, settings)
                    code, made = instrument_source(source, path, plan_made)
                else:  # nothing to instrument: Python's own code, and no libcst to import
                    code = compile(source, path, "exec", dont_inherit=True)
                    made = ModulePlan(module, path, ())
            except SyntaxError:
                return None
            except Exception as exc:
                if self.on_failure is not None and compiles(source, path):
                    self.on_failure(module, path, exc)
                return None
            self.code_cache.store(path, key, (facts, source), made, code)
            plan = made
        _loaded[module, path] = plan
        if self.on_plan is not None:
            self.on_plan(plan)
        return code


class InstrumentedCode:
    """The ``get_code`` of one module's loader: its instrumented code, not its ``.pyc``.

    The finder makes the code before it returns the spec, so that a module
    scope cannot instrument (Python's own syntax error, most often) keeps the
    standard loader and fails exactly as without scope, with no frame of
    scope's in its traceback.  The code is handed out once, so that it is not
    kept alive after the module ran; a second call makes it again (from the
    cache) should anything ask twice.
    """

    def __init__(
        self, code: CodeType, loader: SourceFileLoader, instrumenter: Instrumenter
    ) -> None:
        self.code: CodeType | None = code
        self.loader = loader
        self.instrumenter = instrumenter

    def __call__(self, fullname: str) -> CodeType:
        code, self.code = self.code, None
        if code is None:
            loader = self.loader
            code = self.instrumenter.compile(loader.name, loader.path, loader_source(loader))
        if code is None:  # a source file's loader returns code or raises
            return cast(CodeType, SourceFileLoader.get_code(self.loader, fullname))
        return code


def read_once(read: Callable[[], bytes]) -> Callable[[], bytes]:
    """``read``, called at most once, when first asked (a cache hit never reads the source)."""
    source: bytes | None = None

    def read_source() -> bytes:
        nonlocal source
        if source is None:
            source = read()
        return source

    return read_source


def loader_source(loader: SourceFileLoader) -> Callable[[], bytes]:
    """Reads the loader's source file, once, when first asked."""
    return read_once(lambda: loader.get_data(loader.path))


def is_instrumented(loader: object) -> bool:
    """Whether ``loader`` (a module's ``__loader__``) loads instrumented code."""
    return isinstance(getattr(loader, "__dict__", {}).get("get_code"), InstrumentedCode)


class ScopeFinder:
    """A meta-path finder that has the user's source modules loaded instrumented."""

    def __init__(self, selector: ModuleSelector, instrumenter: Instrumenter) -> None:
        self.selector = selector
        self.instrumenter = instrumenter

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        """Return the spec of a user module, its loader's ``get_code`` scope's; else ``None``."""
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None or type(spec.loader) is not SourceFileLoader or not spec.origin:
            return None
        decision = self.selector.decide(fullname, spec.origin)
        if not decision.instrument:
            return None
        loader = spec.loader
        code = self.instrumenter.compile(
            fullname, spec.origin, loader_source(loader), decision.functions
        )
        if code is not None:
            instrumented = InstrumentedCode(code, loader, self.instrumenter)
            loader.get_code = instrumented  # type: ignore[method-assign]
        return spec

    def invalidate_caches(self) -> None:
        """Nothing cached here; ``PathFinder`` keeps its own caches."""


class RunPathHook:
    """Instruments the user's scripts that ``runpy.run_path`` runs, as imports are.

    Such code never goes through the import system: multiprocessing's spawn and
    forkserver children re-run the program's main script this way (as
    ``__mp_main__``), and so do programs that run scripts of their own.  While
    recording, ``runpy._get_code_from_file`` (where ``run_path`` gets its code)
    answers with instrumented code for a file the selector calls the user's, and
    leaves every other file, and any it cannot instrument, to the original.
    """

    def __init__(self, selector: ModuleSelector, instrumenter: Instrumenter) -> None:
        self.selector = selector
        self.instrumenter = instrumenter
        self._patch = Patch(runpy, "_get_code_from_file", self.get_code)

    def install(self) -> None:
        """Answer for ``run_path`` from now on."""
        try:
            self._patch.install()
        except CapabilityMissing as exc:
            raise CapabilityMissing(
                f"{exc}: scripts run by runpy.run_path (multiprocessing's spawned "
                "children among them) run uninstrumented"
            ) from None

    def uninstall(self) -> None:
        """Put ``runpy`` back, unless the program replaced the function since."""
        self._patch.uninstall()

    def get_code(self, *args: Any) -> Any:
        """The code ``run_path`` runs: instrumented if the file is the user's.

        Called as ``runpy`` calls the original: ``(run_name, fname)``, answered
        with ``(code, fname)``, before 3.13; ``(fname)``, answered with the code,
        from 3.13, where ``run_name`` is read from ``run_path``'s own frame.
        """
        if PYBEHAVIOR.runpy_code_with_name:
            run_name, fname = args
        else:
            (fname,) = args
            run_name = _caller_run_name()
        name = os.fsdecode(fname)
        path = os.path.abspath(name)
        module = run_name or "<run_path>"
        decision = self.selector.decide(module, path) if path.endswith(".py") else None
        if decision is not None and decision.instrument:
            code = self.instrumenter.compile(module, name, file_reader(path), decision.functions)
            if code is not None:
                return (code, fname) if PYBEHAVIOR.runpy_code_with_name else code
        return self._patch.original(*args)


def _caller_run_name() -> str | None:
    """``run_name`` of the ``runpy.run_path`` call asking for code (3.13+), if it asks."""
    frame = sys._getframe(2)
    if frame.f_code is not getattr(runpy.run_path, "__code__", None):
        return None
    run_name = frame.f_locals.get("run_name")
    return run_name if isinstance(run_name, str) else None


def file_reader(path: str) -> Callable[[], bytes]:
    """Reads ``path``, once, when first asked."""

    def read() -> bytes:
        with open(path, "rb") as f:
            return f.read()

    return read_once(read)


def install(finder: ScopeFinder) -> None:
    """Put ``finder`` first on ``sys.meta_path``, behind pytest's assertion rewriter."""
    uninstall(finder)
    position = 0
    for i, existing in enumerate(sys.meta_path):
        if type(existing).__name__ == "AssertionRewritingHook":
            position = i + 1
    sys.meta_path.insert(position, finder)


def uninstall(finder: ScopeFinder) -> None:
    """Remove ``finder`` from ``sys.meta_path`` if it is there."""
    while finder in sys.meta_path:
        sys.meta_path.remove(finder)

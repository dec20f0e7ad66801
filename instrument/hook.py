"""The import hook: a meta-path finder that hands the user's modules to scope's loader.

The finder asks the standard ``PathFinder`` where a module is, and claims it only
when it is plain Python source (``SourceFileLoader``) that the selector calls the
user's; everything else (extension, frozen, zip, namespace and third-party
modules) is left to the usual machinery by returning ``None``.

The loader subclasses ``SourceFileLoader`` and changes one thing, ``get_code``:
the code comes from scope's own cache (``scope.instrument.cache``) or is
instrumented from the source; the standard ``__pycache__`` files are neither
read nor written for instrumented modules, so plain ``python`` runs never see
instrumented bytecode.  ``__file__``, ``__spec__``, ``inspect.getsource`` and
``-B`` work as usual because the rest is the standard loader.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
from types import CodeType, ModuleType

from scope.instrument import cache
from scope.instrument.plan import ModulePlan, PackedPlan, PlanSettings, make_plan
from scope.instrument.rewrite import instrument_source
from scope.instrument.select import ModuleSelector

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


class Instrumenter:
    """Turns a module's source into instrumented code, reporting plans and failures."""

    def __init__(
        self,
        settings: PlanSettings,
        on_plan: PlanListener | None = None,
        on_failure: FailureListener | None = None,
    ) -> None:
        self.settings = settings
        self.on_plan = on_plan
        self.on_failure = on_failure

    def plan(self, module: str, path: str, source: bytes | str) -> ModulePlan:
        """The plan for ``source`` (raises libcst's parser error if libcst cannot read it)."""
        from scope.instrument.analyze import analyze_source  # libcst: only on a cache miss

        return make_plan(module, path, analyze_source(source), self.settings)

    def compile(self, module: str, path: str, read_source: Callable[[], bytes]) -> CodeType | None:
        """Instrumented code for the module at ``path``, or ``None`` if scope could not.

        The plan and code come from ``scope.instrument.cache`` when a valid entry
        exists (``read_source`` is then called only if the file's size or time
        changed), and go there when they were made.  A ``SyntaxError`` is not
        scope's failure: the caller compiles the source normally so that Python
        raises its own error.
        """
        key = cache.entry_key(module, path, self.settings)
        facts = cache.SourceFacts.of(path)
        cached = cache.load(path, self.settings, key, facts, read_source)
        plan: PackedPlan
        if cached is not None:
            plan, code = cached
        else:
            source = read_source()
            try:
                code, made = instrument_source(source, path, self.plan(module, path, source))
            except SyntaxError:
                return None
            except Exception as exc:
                if self.on_failure is not None:
                    self.on_failure(module, path, exc)
                return None
            cache.store(path, self.settings, key, (facts, source), made, code)
            plan = made
        _loaded[module, path] = plan
        if self.on_plan is not None:
            self.on_plan(plan)
        return code


class ScopeLoader(SourceFileLoader):
    """A ``SourceFileLoader`` whose modules report their calls to scope."""

    def __init__(self, fullname: str, path: str, instrumenter: Instrumenter) -> None:
        super().__init__(fullname, path)
        self._instrumenter = instrumenter

    def get_code(self, fullname: str) -> CodeType:
        """The module's instrumented code, from scope's cache or made now.

        ``SourceLoader.get_code`` would look for a standard ``.pyc`` first; an
        instrumented module never has one.  The source is read only when the
        cache cannot answer without it.
        """
        source: bytes | None = None

        def read_source() -> bytes:
            nonlocal source
            if source is None:
                source = self.get_data(self.path)
            return source

        code = self._instrumenter.compile(self.name, self.path, read_source)
        if code is None:
            return super().source_to_code(read_source(), self.path)
        return code


class ScopeFinder:
    """A meta-path finder that claims the user's source modules for ``ScopeLoader``."""

    def __init__(self, selector: ModuleSelector, instrumenter: Instrumenter) -> None:
        self.selector = selector
        self.instrumenter = instrumenter

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        """Return a spec with scope's loader for a user module, else ``None``."""
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None or type(spec.loader) is not SourceFileLoader or not spec.origin:
            return None
        if not self.selector.decide(fullname, spec.origin).instrument:
            return None
        spec.loader = ScopeLoader(fullname, spec.origin, self.instrumenter)
        return spec

    def invalidate_caches(self) -> None:
        """Nothing cached here; ``PathFinder`` keeps its own caches."""


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

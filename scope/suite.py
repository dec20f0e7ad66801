"""Recording a test session: each test's phases as root calls, joined to their outcomes.

``SuiteRecorder`` is the plugin object ``scope.pytest_plugin`` registers once a
session records.  Every test gets a function of kind ``test`` (its id is a
hash of the node id, so it is the same in every session), and each of its
phases (setup, call, teardown) is one call of that function, made around
pytest's own hook: the calls the phase makes hang under it, an exception that
fails it leaves it (so the ``exception`` view follows it to the test), and its
row in the ``test`` table names it.  Once a test's teardown is reported, the
retention (``--scope-keep``) decides whether the calls under its phases stay.

The controller of a pytest-xdist session runs no tests: its workers are child
processes of the recorded session, each records into its own file, and the
controller merges them as the session ends (``scope.storage.children``).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from scope import native
from scope.config import Config, parse_retention
from scope.errors import ScopeError
from scope.instrument.plan import FunctionPlan, ModulePlan, function_id
from scope.session import Recorder
from scope.storage.rows import TestPhase

#: longest failure message or skip reason kept
MESSAGE_CHARS = 1000
#: failing tests the end-of-session line names (the rest: ``scope tests --failed``)
NAMED_FAILURES = 10


def start_recording(config: Config) -> Recorder:
    """Start a recorder for the session; a bad recording file is a usage error."""
    recorder = Recorder(config)
    try:
        recorder.start()
    except ScopeError as exc:
        raise pytest.UsageError(f"scope: {exc}") from None
    return recorder


def outcome_of(report: pytest.TestReport) -> str:
    """A phase's outcome in pytest's words: passed, failed, skipped, xfailed, xpassed, error."""
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.failed:
        return "failed" if report.when == "call" else "error"
    return str(report.outcome)


def message_of(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    """pytest's one-line account of a failure, or a skip's reason."""
    longrepr = report.longrepr
    if longrepr is None:
        return None
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        text = str(longrepr[2])
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = getattr(crash, "message", None) or _last_line(str(longrepr))
    return text[:MESSAGE_CHARS]


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


@dataclass
class _Test:
    """A test under way: its function's tag, and its phases reported so far."""

    tag: int
    phases: list[TestPhase] = field(default_factory=list)
    #: phase -> (start ns, root call)
    started: dict[str, tuple[int, int]] = field(default_factory=dict)


class SuiteRecorder:
    """Records each test's phases into ``recorder`` (a pytest plugin object)."""

    def __init__(self, config: pytest.Config, recorder: Recorder, keep: str, owned: bool) -> None:
        self.config = config
        self.recorder = recorder
        self.retention = parse_retention(keep)
        #: whether this plugin started the recording (and so stops it)
        self.owned = owned
        self.worker: str | None = os.environ.get("PYTEST_XDIST_WORKER")
        self._tests: dict[str, _Test] = {}
        self.tests_recorded = 0
        self.failed: list[str] = []
        self._summary: list[str] = []

    # -- each test's phases -------------------------------------------------

    def _test(self, item: pytest.Item) -> _Test:
        test = self._tests.get(item.nodeid)
        if test is None:
            plan = _function_of(item)
            self.recorder.add_functions(plan)
            test = self._tests[item.nodeid] = _Test(plan.functions[0].tagged_id)
        return test

    def _phase(self, item: pytest.Item, when: str) -> Generator[None, Any, Any]:
        test = self._test(item)
        start = native.now_ns()
        native.enter(test.tag)
        test.started[when] = (start, native.current_call())
        try:
            return (yield)
        except BaseException:
            native.unwind(test.tag)
            raise
        finally:
            native.exit(test.tag)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, Any]:
        """The setup phase (fixtures) as a root call."""
        return (yield from self._phase(item, "setup"))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        """The test itself as a root call."""
        return (yield from self._phase(item, "call"))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, Any, Any]:
        """The teardown phase as a root call."""
        return (yield from self._phase(item, "teardown"))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Note each phase's final report (after every other plugin changed it)."""
        report = yield
        try:
            self._note(item, call, report)
        except Exception as exc:  # never the session's problem
            self.recorder.event("not recorded", f"{item.nodeid} {call.when}: {exc!r}")
        return report

    def _note(
        self, item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
    ) -> None:
        test = self._test(item)
        start, root = test.started.pop(report.when, (native.now_ns(), 0))
        excinfo = call.excinfo
        test.phases.append(
            TestPhase(
                nodeid=item.nodeid,
                phase=report.when,
                outcome=outcome_of(report),
                start_ns=start,
                duration_ns=int(report.duration * 1e9),
                call=root,
                exception=excinfo.typename if excinfo is not None else None,
                message=message_of(report),
                raised_in=native.raised_in(excinfo.value) if excinfo is not None else 0,
                worker=self.worker,
            )
        )
        if report.when == "teardown":
            self._finish_test(item.nodeid)

    def _finish_test(self, nodeid: str) -> None:
        """The test's last phase is reported: store its rows, keep or drop its calls."""
        test = self._tests.pop(nodeid, None)
        if test is None or not test.phases:
            return
        failed = any(p.outcome in ("failed", "error") for p in test.phases)
        duration = sum(p.duration_ns for p in test.phases)
        kept = self.retention.keeps(failed, duration)
        phases = test.phases if kept else [replace(p, kept=False) for p in test.phases]
        self.recorder.add_test_phases(phases)
        if not kept:
            self.recorder.discard_calls_under([p.call for p in phases if p.call])
        self.tests_recorded += 1
        if failed:
            self.failed.append(nodeid)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A module or class that failed to collect is an error of its own; one skipped
        whole (``pytest.skip(allow_module_level=True)``, ``importorskip``) is skipped."""
        if not (report.failed or report.skipped):
            return
        if self.config.pluginmanager.hasplugin("dsession"):
            return  # an xdist controller hears its workers' reports: they record them
        self.recorder.add_test_phases(
            [
                TestPhase(
                    nodeid=report.nodeid,
                    phase="collect",
                    outcome="error" if report.failed else "skipped",
                    start_ns=native.now_ns(),
                    duration_ns=0,
                    message=message_of(report),
                    worker=self.worker,
                )
            ]
        )

    # -- the session's end --------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Store the session (after xdist has stopped its workers) and prepare the summary."""
        for nodeid in list(self._tests):  # interrupted: what was reported of them
            self._finish_test(nodeid)
        if not self.owned:
            self._summary = [
                f"scope: {self.tests_recorded} tests recorded into the running recording "
                f"(stored when it ends)"
            ]
            return
        self.recorder.exit_status = int(exitstatus)
        report = self.recorder.stop()
        if report is not None:
            self._summary = self._summarize(report.db, report.run_id)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """A session that never finished (a usage error) is stored all the same."""
        if self.owned:
            self.recorder.stop()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """One short line: where the recording is and how to look at each failing test."""
        for line in self._summary:
            terminalreporter.write_line(line)

    def _summarize(self, db: str, run: int) -> list[str]:
        from scope.query.api import Recording

        try:
            with Recording(db) as recording:
                tests = recording.tests(run)
                # the code's calls, not the phases' own root calls
                calls = recording.calls_in_run(run) - sum(
                    1 for t in tests for p in t.phases if p.call is not None
                )
        except ScopeError as exc:
            return [f"scope: the recording in {db} could not be read back: {exc}"]
        shown = _shown_path(db)
        failing = [t.nodeid for t in tests if t.failed]
        db_option = (
            "" if "db" not in self.recorder.config.sources else f" --db {shlex.quote(shown)}"
        )
        lines = [
            f"scope: {len(tests)} tests, {calls:,} calls recorded in {shown} (run {run})"
            + ("; why each failed:" if failing else "")
        ]
        lines += [f"  scope test{db_option} {shlex.quote(n)}" for n in failing[:NAMED_FAILURES]]
        if len(failing) > NAMED_FAILURES:
            lines.append(
                f"  and {len(failing) - NAMED_FAILURES} more: scope tests{db_option} --failed"
            )
        return lines


def _function_of(item: pytest.Item) -> ModulePlan:
    """The ``test`` function whose calls are the test's phases."""
    path = str(item.path)
    module = getattr(getattr(item, "module", None), "__name__", None) or item.location[0]
    _, _, inner = item.nodeid.partition("::")
    plan = FunctionPlan(
        id=function_id(item.nodeid, "<test>", 0),
        qualname=inner.replace("::", ".") or item.name,
        name=item.name,
        kind="test",
        index=0,
        level="calls",
        reason="a test's phases",
        line=(item.location[1] or 0) + 1,
    )
    return ModulePlan(module=module, path=path, functions=(plan,))


def _shown_path(path: str) -> str:
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path

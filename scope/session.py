"""A recording session: wires the stages together for one process.

``Recorder.start`` opens the recording (so a bad ``--db`` fails before the
program runs), inserts the run's row, binds the entry points, starts the writer
thread and installs the import hook.  ``Recorder.stop`` runs once, at exit
(registered first with ``atexit``, so it runs after the program's own exit
handlers; or before ``os._exit``, an exec, or death by SIGTERM), and stores
everything still in flight.  Nothing here ever raises into
the recorded program: a failure while stopping is reported on stderr in one
line and the program's exit status is left alone.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from dataclasses import asdict, dataclass, field, replace
from importlib.machinery import SourceFileLoader
from typing import TYPE_CHECKING, Any

from scope import __version__, interpreter, live, native
from scope.capture import forks, process_end, runtime
from scope.capture.messages import WarningWatch
from scope.capture.processes import ChildPropagation, ChildSettings
from scope.capture.service_link import ServiceLink
from scope.capture.threads import ThreadWatch
from scope.config import Config
from scope.errors import CapabilityMissing, ConfigError, RecordingError
from scope.instrument.cache import CodeCache
from scope.instrument.hook import (
    Instrumenter,
    RunPathHook,
    ScopeFinder,
    install,
    is_instrumented,
    loaded_plans,
    uninstall,
)
from scope.instrument.plan import PackedPlan
from scope.instrument.select import Decision, ModuleSelector, default_roots
from scope.redaction import native_patterns
from scope.storage.rows import Event, RunEnd, RunInfo, TestPhase

if TYPE_CHECKING:  # imported only when used: a recorded program must not find them loaded
    from scope.capture.log_watch import LogWatch
    from scope.capture.pipeline import Pipeline
    from scope.storage.recovery import Recovered
    from scope.storage.writer import RecordingWriter

#: how long a producer waits for the writer when its ring is full (overflow = "block")
BLOCK_TIMEOUT_NS = 1_000_000_000
MAX_STACK_DEPTH = 1 << 22


_current: Recorder | None = None


_fork_handler_registered = False


def _after_fork_in_child() -> None:
    """The rings and stacks are the parent's; a recording in progress follows into the child."""
    recorder = _current if _current is not None and _current.recording else None
    native.after_fork_child()
    if recorder is not None:
        recorder._forked()


def one_line(text: str) -> str:
    """``text`` on one line: a problem is a line of the run's warning (DuckDB's
    messages can run over several)."""
    return " ".join(text.split())


def current_recorder() -> Recorder | None:
    """The recorder recording this process now, if any."""
    return _current if _current is not None and _current.recording else None


def source_file(module: Any) -> str | None:
    """The ``.py`` file ``module`` was loaded from by the standard loader (not scope's), if any."""
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None)
    loader = getattr(spec, "loader", None)
    if type(loader) is SourceFileLoader and not is_instrumented(loader) and isinstance(origin, str):
        return origin if origin.endswith(".py") else None
    return None


@dataclass
class RecorderReport:
    """What a finished session stored and lost, for the user and the tests."""

    db: str
    run_id: int
    calls_stored: int = 0
    calls_unfinished: int = 0
    events_dropped: int = 0
    problems: list[str] = field(default_factory=list)


class Recorder:
    """Records the current process into ``config.db`` between ``start`` and ``stop``."""

    def __init__(
        self,
        config: Config,
        script: str | None = None,
        child: ChildSettings | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.config = config
        self.script = script
        #: the program as the user typed it (``-m app x``), else ``sys.argv`` is stored
        self.command = command
        #: set in a child process of a recorded program: the run's settings
        self.child = child
        self.exit_status: int | None = None
        self.report: RecorderReport | None = None
        self._pid = os.getpid()
        self._problems: list[str] = []
        #: problems stored with the run but not printed on the program's stderr
        self._quiet: set[str] = set()
        #: for the event table
        self._events: list[Event] = []
        self._ended_by = "exit"
        self._writer: RecordingWriter | None = None
        self._pipeline: Pipeline | None = None
        self._finder: ScopeFinder | None = None
        #: what follows the program's threads, warnings and log records
        self._watches: list[ThreadWatch | WarningWatch | LogWatch | RunPathHook] = []
        self._propagation: ChildPropagation | None = None
        self.instrumenter: Instrumenter | None = None
        self._started = False
        self._stopped = False
        #: held while stopping (only ever taken in this recorder's own process)
        self._stopping = threading.RLock()
        #: whether _pause_threads stopped the SIGTERM watcher
        self._paused_watcher = False
        #: this process's folder of ring files (``scope.live``), if it has one
        self._live: str | None = None
        #: the recording service storing this process, when one does (``service``)
        self._link: ServiceLink | None = None
        #: earlier runs stored from the rings their killed processes left
        self._recovered: list[Recovered] = []

    def start(self) -> None:
        """Begin recording; raises ``RecordingError`` if the file cannot be written.

        Raises ``UnsupportedInterpreter`` in an interpreter scope cannot record in.
        """
        untested = interpreter.check()
        if self.config.clock == "tsc" and not native.tsc_usable():
            raise ConfigError("clock 'tsc' was asked for, but this CPU has no invariant TSC")
        native.configure(
            self.config.ring_size,
            self.config.overflow,
            BLOCK_TIMEOUT_NS,
            MAX_STACK_DEPTH,
            arena_bytes=self.config.arena_size,
            clock=self.config.clock,
        )
        native.configure_values(
            self.config.value_bytes,
            self.config.value_items,
            self.config.call_repr,
            native_patterns(self.config.redact),
        )
        native.set_budget(self.config.max_calls_per_function)
        native.set_suspension_min(self.config.suspension_min_us * 1000)
        info = RunInfo(
            argv=list(self.command) if self.command is not None else list(sys.argv),
            cwd=os.getcwd(),
            python=f"{interpreter.implementation()} {interpreter.version_text()}",
            platform=interpreter.machine(),
            pid=os.getpid(),
            parent_pid=os.getppid(),
            executable=sys.executable,
            scope_version=__version__,
            start_ns=native.now_ns(),
        )
        if self.config.service:
            self._link_to_service(info)
        else:
            self._begin_writer(info)
        runtime.install_entry_points()
        if untested is not None:
            self._problem("unsupported", untested)
        if not native.capabilities()["frames"]:
            self._problem(
                "unsupported",
                f"scope cannot read {interpreter.describe()}'s frames: generators and "
                "coroutines are followed by function alone, so their parents, suspensions "
                "and asyncio tasks may be wrong",
            )
        if not native.configure_audit(self.config.audit):
            self._problem("audit", "another audit hook refused scope's: no audit events recorded")
        if self._writer is not None:
            from scope.capture.pipeline import Pipeline

            self._writer.audit_events = self.config.audit
            self._pipeline = Pipeline(self._writer)
            self._pipeline.start()
        self._started = True
        roots = (
            self.child.roots
            if self.child is not None
            else default_roots(self.config.project_root, self.script)
        )
        selector = ModuleSelector(
            roots, include=self.config.include, exclude=self.config.exclude, only=self.config.only
        )
        self.instrumenter = Instrumenter(
            self.config.plan_settings(),
            on_plan=self.add_functions,
            on_failure=self._instrument_failed,
            code_cache=CodeCache(self.config.code_cache_folder, self.config.cache_max_mb << 20),
        )
        for plan in loaded_plans():  # code instrumented for an earlier recording
            self.add_functions(plan)
        self._finder = ScopeFinder(selector, self.instrumenter)
        install(self._finder)
        self._watches = [
            ThreadWatch(self.event),
            WarningWatch(self.event),
            RunPathHook(selector, self.instrumenter),
        ]
        if self.config.log_level != "off":
            from scope.capture.log_watch import LogWatch

            self._watches.append(LogWatch(self.event, self.config.log_level))
        for watch in self._watches:
            try:
                watch.install()
            except CapabilityMissing as exc:
                self._problem("unsupported", str(exc))
        self._report_imported_before(selector)
        if self.child is None:
            children = os.path.join(
                os.path.dirname(os.path.abspath(self.config.db)), f"children-{os.getpid()}"
            )
            settings = {k: v for k, v in asdict(self.config).items() if k != "sources"}
            run_key = self._link.run_key if self._link is not None else None
            self._propagation = ChildPropagation(children, settings, list(roots), run_key)
            self._propagation.install()
        global _current, _fork_handler_registered
        _current = self
        if not _fork_handler_registered:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_handler_registered = True
        atexit.register(self.stop)
        process_end.install(self._exiting, self._executing)
        if self._pipeline is not None:  # scope's threads run in this process
            native.flush_on_sigterm(self._terminated)
            forks.install(self._pause_threads, self._resume_threads)
        else:  # the service stores: SIGTERM only leaves a note of itself
            native.note_sigterm()
        native.set_enabled(True)

    def _begin_writer(self, info: RunInfo) -> None:
        """Store the recording from this process: a writer thread drains into DuckDB."""
        from scope.storage import database
        from scope.storage.writer import DeferredWriter, RecordingWriter

        if self.child is None:
            con = database.open_for_writing(self.config.db)
            self._recover_left(con)
            self._writer = RecordingWriter(con)
        else:  # made only if the child records something
            self._writer = DeferredWriter(self.config.db)
        self._writer.begin(info)
        if self.child is None:
            self._share_rings()

    def _link_to_service(self, info: RunInfo) -> None:
        """Leave storing to the recording's service: this process only fills its rings."""
        run_key = self.child.run_key if self.child is not None else None
        self._link = ServiceLink(
            self.config.db,
            run_key or os.urandom(16).hex(),  # the run's processes share it
            self.child is None,
            asdict(info),
            self.config.audit,
            self.config.retain_runs,
        )
        try:
            self._link.start()
        except OSError as exc:
            raise RecordingError(
                f"cannot record into {self.config.db}: its live folder cannot be made ({exc})"
            ) from None

    def _recover_left(self, con: Any) -> None:
        """Store what earlier programs killed while recording into this file left behind."""
        from scope.storage.recovery import recover

        try:
            self._recovered = recover(con, self.config.db)
            for done in self._recovered:
                self.event(
                    "recovered",
                    f"run {done.run} (process {done.pid}, {done.ended_by}): "
                    f"{done.calls} calls stored from the rings it left",
                )
        except Exception as exc:  # the program runs whatever happened to earlier ones
            self._problem(
                "recovery failed",
                f"scope could not store what an earlier recording left in "
                f"{live.live_root(self.config.db)}: {type(exc).__name__}: {exc}",
            )

    def _share_rings(self) -> None:
        """Keep the rings in files, so a killed program leaves its records behind."""
        assert self._writer is not None
        try:
            self._live = live.make_process_folder(self.config.db, self._writer.run_id, self._pid)
            native.share_rings(self._live)
        except OSError as exc:
            if self._live is not None:
                live.remove_process_folder(self._live)
                self._live = None
            self._problem(
                "rings not shared",
                f"scope could not keep its rings in files ({exc}): what the program "
                "records is lost if it is killed",
            )

    def _unshare_rings(self, stored: bool) -> None:
        """The process has ended: say how in its header; remove its folder if all is stored."""
        if self._live is None:
            return
        native.note_process_end(self._ended_by, self.exit_status)
        native.stop_sharing(remove=stored)
        if stored:
            live.remove_process_folder(self._live)
        else:
            self._problems.append(f"the records not stored are kept in {self._live}")
        self._live = None

    def _report_imported_before(self, selector: ModuleSelector) -> None:
        """Name, once, the user's modules already imported: they run uninstrumented."""
        sources = {name: source_file(module) for name, module in list(sys.modules.items())}
        found = sorted(
            name
            for name, path in sources.items()
            if path and selector.decide(name, path).instrument
        )
        if found:
            shown = ", ".join(found[:10]) + (
                f" and {len(found) - 10} more" if len(found) > 10 else ""
            )
            self._problem(
                "imported before scope",
                f"{len(found)} of your modules were imported before scope's import hook "
                f"and are not instrumented: {shown}",
            )

    @property
    def recording(self) -> bool:
        """Whether this recorder has started and not yet stopped."""
        return self._started and not self._stopped

    def _instrument_failed(self, module: str, path: str, exc: BaseException) -> None:
        text = f"{module} ({path}) not instrumented: {type(exc).__name__}: {exc}"
        self._problem("not instrumented", text)

    def _problem(self, kind: str, text: str) -> None:
        """Something went wrong: said on stderr at the end, and kept as an event."""
        text = one_line(text)
        self._problems.append(text)
        self.event(kind, text)

    def event(self, kind: str, detail: str, call: int = 0) -> None:
        """Keep something that happened besides calls, for the event table (any thread)."""
        event = Event(native.now_ns(), kind, detail, call)
        if self._link is not None and self._link.folder is not None:
            self._link.event(event.time_ns, kind, detail, call)
        else:
            self._events.append(event)

    def add_functions(self, plan: PackedPlan) -> None:
        """Describe a module's functions (instrumented code, or a test's phases)."""
        if self._link is not None:
            self._link.add_plan(plan)
        elif self._writer is not None:
            self._writer.add_plan(plan)

    def add_test_phases(self, phases: list[TestPhase]) -> None:
        """Keep test phases for the ``test`` table (stored with the next batch)."""
        if self._link is not None:
            self._link.add_test_phases(phases)
        elif self._writer is not None:
            self._writer.add_test_phases(phases)

    def discard_calls_under(self, roots: list[int]) -> None:
        """Forget every call made under these root calls (kept: the roots themselves)."""
        if self._link is not None:
            self._link.discard_calls_under(roots)
        elif self._writer is not None:
            self._writer.discard_calls_under(roots)

    def _terminated(self) -> None:
        """SIGTERM with its default action: store everything, then the process dies of it."""
        with self._stopping:
            if not self._stopped:  # else a store already under way says how it ended
                self.exit_status = 128 + signal.SIGTERM  # what the shell reports
                self._ended_by = "SIGTERM"
            self.stop()

    def _exiting(self, status: int | None) -> None:
        """os._exit(status): store everything first; the status is the exit status."""
        if os.getpid() == self._pid:
            self.exit_status = status
            self._ended_by = "os._exit"
        self.stop()

    def _executing(self) -> None:
        """An exec replaces the program: store everything first."""
        if os.getpid() == self._pid:
            self._ended_by = "exec"
        self.stop()

    def decision_for(self, module: str, path: str) -> Decision:
        """Whether this recording instruments the module ``module`` at ``path``, and how."""
        if self._finder is None:
            return Decision(False, "not recording")
        return self._finder.selector.decide(module, path)

    def child_settings(self) -> ChildSettings | None:
        """What a child process of this recording records with."""
        if self.child is not None:
            return self.child
        return self._propagation.settings if self._propagation is not None else None

    def _pause_threads(self) -> None:
        """Before a fork: no thread of scope's runs (the rings keep what they hold).

        See ``scope.capture.forks``.
        """
        pipeline = self._pipeline
        if os.getpid() != self._pid or pipeline is None:
            return
        if native.pause_sigterm_watcher():
            self._paused_watcher = True
        pipeline.pause()

    def _resume_threads(self) -> None:
        """After a fork, in this process: scope's threads run again."""
        pipeline = self._pipeline
        if os.getpid() != self._pid or pipeline is None:
            return
        pipeline.resume()
        if self._paused_watcher:
            self._paused_watcher = False
            native.resume_sigterm_watcher()

    def _forked(self) -> None:
        """In a forked child: the parent's recording ends here, the child's begins."""
        self._stopped = True
        settings = self.child_settings()
        if self._finder is not None:
            uninstall(self._finder)
            self._note_unmatched_patterns(self._finder.selector)
        self._unwatch()
        self._propagation = None  # the environment and hook folder are the parent's
        if settings is not None:
            from scope.child import record_child  # scope.child imports this module

            record_child(settings)

    def stop(self) -> RecorderReport | None:
        """Stop recording and store everything captured; safe to call more than once.

        A second call from another thread waits for the first to have stored
        everything, and scope's SIGTERM handler stays until the store is done: a
        SIGTERM that arrives while ``os._exit`` is storing (a pool worker being
        terminated as it exits) kills the process once the store is complete.
        """
        if os.getpid() != self._pid:  # a forked child's copy: the parent stores it
            return self.report
        with self._stopping:
            return self._stop()

    def _stop(self) -> RecorderReport | None:
        if self._stopped or os.getpid() != self._pid:
            return self.report
        self._stopped = True
        native.set_enabled(False)
        native.configure_audit(())
        native.unfinish_open()
        process_end.uninstall()
        forks.uninstall()
        if self._finder is not None:
            uninstall(self._finder)
            self._note_unmatched_patterns(self._finder.selector)
        self._unwatch()
        if self._propagation is not None:
            self._propagation.uninstall()
        try:
            if self._link is not None:
                self._finish_through_service(self._link)
            else:
                self._finish()
        except Exception as exc:
            self._problems.append(
                one_line(f"could not finish the recording: {type(exc).__name__}: {exc}")
            )
            self._unshare_rings(stored=False)
        else:
            self._unshare_rings(stored=True)
        # Only now: a SIGTERM during the store waits for it (stop() blocks), then kills.
        native.no_flush_on_sigterm()
        self._release()
        loud = [problem for problem in self._problems if problem not in self._quiet]
        if loud and self.child is None:  # a child's go to the run, not its stderr
            sys.stderr.write(f"scope: warning: {'; '.join(loud)}\n")
            sys.stderr.flush()
        return self.report

    def _note_unmatched_patterns(self, selector: ModuleSelector) -> None:
        """Name in the run (not on stderr) each pattern that named nothing loaded.

        A child process would name again what its parent does: only the program's
        own process names them."""
        if self.child is not None:
            return
        from scope.instrument.plan import unpack_plan
        from scope.instrument.unmatched import describe, unmatched_patterns

        plans = [unpack_plan(plan) for plan in loaded_plans()]
        unmatched = unmatched_patterns(self.config.plan_settings(), selector.decided_by, plans)
        users = [(o, p) for o, p in unmatched if p not in self.config.added_by_scope]
        for line in describe(users, "that this run loaded"):
            self._problems.append(line)
            self._quiet.add(line)

    def _unwatch(self) -> None:
        for watch in reversed(self._watches):
            watch.uninstall()
        self._watches = []

    @staticmethod
    def _named(threads: list[native.ThreadInfo]) -> list[native.ThreadInfo]:
        """Threads as threading names them, where the rings did not say."""
        names = {t.ident: t.name for t in threading.enumerate()}
        return [t if t.name else replace(t, name=names.get(t.ident)) for t in threads]

    def _retain_runs(self) -> None:
        """Keep only the newest ``retain_runs`` runs now that this one is closed."""
        import duckdb

        from scope.storage.pruning import retain

        assert self._writer is not None
        try:
            retain(self._writer.con, self.config.retain_runs)
        except duckdb.Error as exc:
            self._problem("retain_runs", f"older runs could not be removed: {exc}")

    def _merge_children(self) -> None:
        """Bring the child processes' files into this run (see ``scope.storage.children``)."""
        from scope.storage.children import merge_children

        assert self._writer is not None and self._propagation is not None
        folder = self._propagation.children_dir
        if not os.path.isdir(folder):
            return
        report = merge_children(self._writer.con, self._writer.run_id, folder)
        problems = [one_line(problem) for problem in report.problems]
        if report.left:
            problems.append(
                f"{len(report.left)} child process recordings could not be merged (still "
                f"running?); they are in {folder}: merge them with scope combine"
            )
        for problem in problems:
            self._problems.append(problem)
        if problems:
            self._writer.con.execute(
                "UPDATE run SET problems = list_concat(coalesce(problems, []), ?) WHERE id = ?",
                [problems, self._writer.run_id],
            )

    def _release(self) -> None:
        """Let go of the writer and its DuckDB connection once the recording is stored.

        Instrumented modules outlive the recording (their loaders hold the
        instrumenter), and so does this recorder (``_current`` holds it); if
        they kept the connection alive until the interpreter tears its modules
        down, DuckDB's bindings would print leak warnings on the program's stderr.
        """
        if self.instrumenter is not None:
            self.instrumenter.on_plan = self.instrumenter.on_failure = None
        self._writer = None
        self._pipeline = None
        atexit.unregister(self.stop)

    def _finish_through_service(self, link: ServiceLink) -> None:
        """Tell the service how the process ended; wait until it has stored everything."""
        rings = native.stats()
        if rings.unshared:
            self._problem(
                "rings not shared",
                f"the rings of {rings.unshared} threads could not be made as files next to "
                "the recording (is its disk full?): the service could not store what they held",
            )
        if rings.dropped:
            self._problem("dropped", f"{rings.dropped} events dropped (rings full)")
        if rings.values_lost:
            self._problem("dropped", f"{rings.values_lost} values stored as lost (arena full)")
        if link.lost_records:
            self._problem("dropped", f"{link.lost_records} descriptions could not be logged")
        names = {str(t.ident): t.name for t in threading.enumerate() if t.ident is not None}
        answer = link.finish(
            self._ended_by,
            self.exit_status,
            list(self._problems),
            names,
            wait=self.config.wait,
            final=self.child is None or self._ended_by != "exit",
        )
        if answer is None:
            refusal = link.refusal() or link.failure
            cause = f" ({refusal})" if refusal else ""
            self._problems.append(
                f"the recording service did not confirm that it stored this run{cause}; what "
                f"was recorded is kept in {link.folder} for the next scope command to store"
            )
            return
        for problem in answer.get("problems") or ():  # type: ignore[attr-defined]
            if problem not in self._problems:
                self._problems.append(one_line(str(problem)))
        self.report = RecorderReport(
            db=self.config.db,
            run_id=int(str(answer.get("run", 0))),
            calls_stored=int(str(answer.get("calls", 0))),
            events_dropped=rings.dropped,
            problems=list(self._problems),
        )

    def _finish(self) -> None:
        assert self._writer is not None and self._pipeline is not None
        self._pipeline.stop()
        health = self._pipeline.health
        if health.failure:
            self._problem(
                "storage failed",
                f"the recording stopped storing calls ({health.failure}); "
                f"{health.records_lost} events lost",
            )
        if health.restarts:
            self._problem(
                "writer restarted",
                f"the writer thread was interrupted {health.restarts} times and restarted "
                f"(first: {health.restart_cause}); the batches in flight were lost",
            )
        if health.pause_timeouts:
            self._problem(
                "fork",
                f"scope's threads did not stop in time for {health.pause_timeouts} forks: "
                "the program may have been warned that it was multi-threaded",
            )
        rings = native.stats()
        if rings.dropped:
            self._problem("dropped", f"{rings.dropped} events dropped (rings full)")
        if rings.values_lost:
            self._problem("dropped", f"{rings.values_lost} values stored as lost (arena full)")
        self._writer.finish(
            RunEnd(
                exit_status=self.exit_status,
                end_ns=native.now_ns(),
                rings=rings,
                clock=native.clock(),
                threads=self._named(native.threads()),
                writer_batches=health.batches,
                records_lost=health.records_lost,
                problems=list(self._problems),
                ended_by=self._ended_by,
                events=list(self._events),
            )
        )
        if self._propagation is not None:
            self._merge_children()
        if self.child is None and self.config.retain_runs:
            self._retain_runs()
        self._writer.close()
        self.report = RecorderReport(
            db=self.config.db,
            run_id=self._writer.run_id,
            calls_stored=self._writer.calls_stored,
            calls_unfinished=self._writer.calls_unfinished,
            events_dropped=rings.dropped + health.records_lost,
            problems=list(self._problems),
        )

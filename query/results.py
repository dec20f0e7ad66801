"""The typed answers of the query API: what ``scope.query.Recording`` returns.

Plain dataclasses, so that the CLI's tables, ``--json`` and scripts share them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunSummary:
    """One run of the recording."""

    id: int
    argv: list[str]
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    status: str
    exit_status: int | None
    calls_stored: int | None
    calls_unfinished: int | None
    events_dropped: int | None
    problems: list[str]


@dataclass(frozen=True)
class FunctionStats:
    """How often one function was called in a run, and how long it took."""

    function_id: int
    module: str
    qualname: str
    calls: int
    raised: int
    total_ns: int
    mean_ns: float
    max_ns: int
    #: time in the function itself: its active time (suspensions left out) less
    #: the active time of the recorded calls it made; unfinished calls add none
    self_ns: int = 0
    #: time its calls were running: wall time less the time they spent suspended
    #: (a coroutine's awaits, a generator's yields)
    active_ns: int = 0
    #: its active time as a share of the run's wall time, in percent
    percent: float | None = None
    #: where it is defined
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class ThreadHealth:
    """What one thread of a run captured and lost."""

    id: int
    name: str | None
    native_id: int
    events_produced: int
    events_dropped: int
    ring_high_water: int
    blocked_ns: int
    stack_overflow: int
    unmatched_exits: int
    values_lost: int
    #: the thread that started it, and the innermost recorded call open there then
    parent: int | None = None
    started_by: int | None = None


@dataclass(frozen=True)
class ProcessHealth:
    """One recorded process of a run: who started it and how it ended."""

    pid: int
    parent_pid: int | None
    exit_status: int | None
    ended_by: str | None
    #: records that waited for the recording service: median and 99th percentile
    #: over its drains (None: stored from inside the program)
    lag_p50: int | None = None
    lag_p99: int | None = None


@dataclass(frozen=True)
class RunHealth:
    """A run's self-telemetry: what was captured, stored and lost, and by which thread."""

    run: int
    status: str
    events_captured: int | None
    events_stored: int | None
    events_dropped: int | None
    calls_stored: int | None
    calls_unfinished: int | None
    calls_summed: int | None
    values_stored: int
    writer_batches: int | None
    clock: str | None
    clock_ns_per_tick: float | None
    problems: list[str]
    threads: list[ThreadHealth]
    processes: list[ProcessHealth]
    #: processes a recording service took over from one that stopped before storing them
    recoveries: int = 0

    @property
    def writer_lag(self) -> int:
        """The most events that ever waited for the writer in one thread's ring."""
        return max((t.ring_high_water for t in self.threads), default=0)


@dataclass
class Call:
    """One stored call: where it sits, which function, when, how long, how it ended."""

    id: int
    thread: int
    parent: int | None
    depth: int
    module: str
    qualname: str
    start_ns: int
    duration_ns: int
    outcome: str
    #: where its function is defined
    file: str | None = None
    line: int | None = None


@dataclass
class CallNode(Call):
    """One call in a tree, with the calls it made (as far as the tree was fetched)."""

    children: list[CallNode] = field(default_factory=list)
    #: alike calls right after it, folded into it (``scope.query.folding``), their time,
    #: and the calls they stand for (themselves and the calls they made, as fetched)
    similar: int = 0
    similar_ns: int = 0
    similar_calls: int = 0
    #: calls under it that were not fetched (below the depth asked for)
    below: int = 0
    #: for a test's root call (pytest --scope): its phase, setup, call or teardown
    phase: str | None = None


@dataclass(frozen=True)
class CallTree:
    """The roots of a (possibly truncated) call tree and how many calls were left out."""

    run: int
    roots: list[CallNode]
    shown: int
    total: int


@dataclass(frozen=True)
class TestPhaseResult:
    """One phase of a recorded test (a row of the ``test`` table)."""

    phase: str
    outcome: str
    duration_ns: int
    #: the phase's root call (None: a collection error)
    call: int | None
    exception: str | None
    message: str | None
    #: the innermost recorded call the failure's exception left
    raised_in: int | None
    kept: bool
    #: calls the phase made on its thread (stored one by one or summed, or not kept): its
    #: root's preorder interval, where every call begun gets the next id
    calls: int


#: the outcomes pytest counts as failures
FAILING = ("failed", "error")


@dataclass(frozen=True)
class TestResult:
    """A recorded test: its outcome, its phases and how many calls it made."""

    nodeid: str
    outcome: str
    duration_ns: int
    worker: str | None
    phases: list[TestPhaseResult]

    @property
    def failed(self) -> bool:
        """Whether any phase failed (a failure, or an error in setup or teardown)."""
        return any(p.outcome in FAILING for p in self.phases)

    @property
    def calls(self) -> int:
        """Recorded calls under all its phases."""
        return sum(p.calls for p in self.phases)

    @property
    def roots(self) -> tuple[int, ...]:
        """Its phases' root calls: every call it made on its thread is under one of them."""
        return tuple(p.call for p in self.phases if p.call is not None)


def combined_outcome(phases: list[TestPhaseResult]) -> str:
    """A test's outcome from its phases, as pytest's summary counts it.

    The setup's outcome if it did not pass, else the call's; a failed teardown
    adds ``error`` (``failed+error``: the test failed and so did its teardown).
    """
    by_phase = {p.phase: p.outcome for p in phases}
    if "collect" in by_phase:  # a module that failed (error) or skipped collection
        return by_phase["collect"]
    setup = by_phase.get("setup", "passed")
    main = setup if setup != "passed" else by_phase.get("call", "passed")
    if by_phase.get("teardown") == "error":
        return "error" if main == "passed" else f"{main}+error"
    return main


@dataclass(frozen=True)
class TestUse:
    """How often one test called one function."""

    nodeid: str
    module: str
    qualname: str
    calls: int


@dataclass(frozen=True)
class TestDetail:
    """A test, the calls under each of its phases, and where its failure came from."""

    test: TestResult
    #: phase -> the calls under its root call
    trees: dict[str, CallTree]
    #: phase -> the calls from its root down to where its exception was raised
    exception_paths: dict[str, list[int]]


@dataclass
class CallRow(Call):
    """One listed call, with what it was given and gave back where those were recorded."""

    #: ``name=summary`` of each recorded argument, in order
    arguments: list[str] = field(default_factory=list)
    #: the recorded return value's summary, if any
    returned: str | None = None


@dataclass(frozen=True)
class CallList:
    """A page of the calls a filter keeps, and how many it keeps in all."""

    run: int
    calls: list[CallRow]
    #: stored calls the filter keeps (the page shows at most ``limit`` of them)
    matched: int
    #: calls of the matched functions past their budget: summed, so not listed (counted
    #: only when the filter names functions or modules alone: sums keep no arguments,
    #: durations or threads to check the other criteria against)
    summed: int


@dataclass(frozen=True)
class ExceptionPath:
    """One exception: what it was and the way it went through the program."""

    #: its type's name and its summary (type and message at args level)
    type: str | None
    summary: str | None
    #: the innermost recorded call it left (the call it was raised in, as far as recorded)
    raised_in: CallNode
    #: every recorded call it left, innermost first (``raised_in`` is the first)
    left: list[CallNode]
    #: the recorded call that caught it: the one it did not leave (None: none did)
    caught_in: CallNode | None
    #: whether it ended the program (it left every recorded call and nothing caught it)
    uncaught: bool
    #: the program's exit status, when this is the SystemExit that ended it
    exit_status: int | None = None


@dataclass(frozen=True)
class ExceptionKind:
    """Exceptions alike: the same type and message shape (numbers and addresses aside),
    raised in the same function and caught in the same one."""

    #: how many there were
    count: int
    #: the message with its numbers as N and addresses as 0x…
    shape: str
    #: the newest of them
    example: ExceptionPath


@dataclass(frozen=True)
class AttributeWrite:
    """One recorded ``self.attribute = value``: the call that made it and what was written."""

    call: int
    thread: int
    #: when the writing call began
    start_ns: int
    module: str
    qualname: str
    #: ``id()`` and type name of the object written to (the call's ``self``), where recorded
    object_id: int | None
    object_type: str | None
    attribute: str
    #: the written value's type name and summary
    type: str | None
    value: str | None


@dataclass(frozen=True)
class CountChange:
    """A function called a different number of times on the two sides of a diff."""

    function: str
    before: int
    after: int


@dataclass(frozen=True)
class ExceptionChange:
    """Exceptions of one type, raised in one function, counted differently on the two sides."""

    type: str
    raised_in: str
    before: int
    after: int


@dataclass(frozen=True)
class ReturnChange:
    """A function whose recorded return values differ: those found on one side only."""

    function: str
    #: distinct return summaries seen only before, only after (at most a few of each)
    only_before: list[str]
    only_after: list[str]


@dataclass(frozen=True)
class RecordingDiff:
    """What differs between two runs, or two tests: calls, exceptions, return values."""

    before: str
    after: str
    calls: list[CountChange]
    exceptions: list[ExceptionChange]
    returns: list[ReturnChange]
    #: for tests: each side's outcome
    outcomes: tuple[str, str] | None = None

    @property
    def same(self) -> bool:
        """Whether nothing that is compared differs."""
        return not (self.calls or self.exceptions or self.returns)


@dataclass(frozen=True)
class SqlResult:
    """The answer to a raw SQL query: column names and rows."""

    columns: list[str]
    rows: list[tuple[object, ...]]

"""A run's health (``scope status``): what was captured, stored and lost, where."""

from __future__ import annotations

from dataclasses import dataclass


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

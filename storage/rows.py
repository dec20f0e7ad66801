"""What a recording holds besides calls: events, test phases, a run's start and end.

Recorded processes fill these and writers store them; nothing here imports
DuckDB or numpy, so a process that only records can use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scope import native


@dataclass(frozen=True)
class Event:
    """Something that happened besides calls: a row of the ``event`` table."""

    time_ns: int
    kind: str
    detail: str
    #: the recorded call it happened in (0: none)
    call: int = 0


@dataclass(frozen=True)
class TestPhase:
    """One phase of a test as pytest reported it: a row of the ``test`` table."""

    nodeid: str
    phase: str
    outcome: str
    start_ns: int
    duration_ns: int
    #: the phase's root call (0: none, a collection error)
    call: int = 0
    exception: str | None = None
    message: str | None = None
    #: the innermost recorded call the failure's exception left (0: none)
    raised_in: int = 0
    worker: str | None = None
    kept: bool = True


@dataclass(frozen=True)
class RunInfo:
    """What is known about a run when it starts."""

    argv: Sequence[str]
    cwd: str
    python: str
    platform: str
    pid: int
    parent_pid: int
    executable: str
    scope_version: str
    start_ns: int


@dataclass(frozen=True)
class RunEnd:
    """What is known about a run when it ends."""

    exit_status: int | None
    end_ns: int
    rings: native.RingStats
    clock: native.ClockInfo
    #: every thread that reported an event, with its counters
    threads: Sequence[native.ThreadInfo]
    writer_batches: int
    records_lost: int
    problems: Sequence[str]
    #: exit, os._exit, exec or SIGTERM
    ended_by: str = "exit"
    #: what happened besides calls, for the event table
    events: Sequence[Event] = ()

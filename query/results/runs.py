"""A recording's runs, its functions' statistics, and the rows of raw SQL."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


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
class SqlResult:
    """The answer to a raw SQL query: column names and rows."""

    columns: list[str]
    rows: list[tuple[object, ...]]

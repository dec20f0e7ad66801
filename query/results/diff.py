"""What differs between two runs or two tests (``scope diff``)."""

from __future__ import annotations

from dataclasses import dataclass


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

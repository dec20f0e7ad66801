"""Recorded tests (``pytest --scope``): outcomes, phases and their calls."""

from __future__ import annotations

from dataclasses import dataclass

from scope.query.results.calls import CallTree


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

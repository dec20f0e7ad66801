"""Calls: in trees (``scope tree``, ``scope path``) and in lists (``scope calls``)."""

from __future__ import annotations

from dataclasses import dataclass, field


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

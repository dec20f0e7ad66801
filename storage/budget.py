"""Per-function budgets: the first N calls of a function are stored one row each, the rest summed.

A hot function called millions of times would fill the file with rows nobody
reads one by one.  Past its budget (``max_calls_per_function``; 0 means no
limit), a function's calls are summed per calling call into
``call_aggregate`` rows: count, raised count, total, minimum and maximum
duration.  Call counts and times stay exact; what is lost is the tree below
the budget line (the children of a summed call still name it as parent).

Calls count against the budget in the order they complete.  A pair of
(parent, function) may get an aggregate row in several batches: sum them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scope.storage.correlate import OUTCOME_RAISED, CallColumns


@dataclass
class AggregateColumns:
    """Summed calls, one row per (parent, function) in a batch."""

    parent: np.ndarray
    function: np.ndarray
    calls: np.ndarray
    raised: np.ndarray
    total_ns: np.ndarray
    min_ns: np.ndarray
    max_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.calls)

    def as_dict(self) -> dict[str, np.ndarray]:
        """The columns by name, in table order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Budget:
    """Splits each batch of calls into rows to store and calls to sum."""

    def __init__(self, max_calls_per_function: int) -> None:
        self.limit = max_calls_per_function
        self.functions = np.empty(0, np.int64)  # sorted
        self.stored = np.empty(0, np.int64)  # rows stored so far, per function
        #: function id -> calls summed instead of stored, over the whole run
        self.summed: dict[int, int] = {}

    def split(self, calls: CallColumns) -> tuple[CallColumns, AggregateColumns | None]:
        """The calls within budget, and the sums of the others."""
        if self.limit == 0 or len(calls) == 0:
            return calls, None
        self._learn(calls.function)
        slot = np.searchsorted(self.functions, calls.function)
        order = np.argsort(slot, kind="stable")
        sorted_slot = slot[order]
        starts = np.flatnonzero(np.r_[True, sorted_slot[1:] != sorted_slot[:-1]])
        run_lengths = np.diff(np.r_[starts, len(sorted_slot)])
        # Position of each call among this batch's calls of its function.
        rank_sorted = np.arange(len(sorted_slot)) - np.repeat(starts, run_lengths)
        rank = np.empty_like(rank_sorted)
        rank[order] = rank_sorted
        keep = self.stored[slot] + rank < self.limit
        self.stored += np.bincount(slot[keep], minlength=len(self.stored))
        if keep.all():
            return calls, None
        kept = CallColumns(**{f: v[keep] for f, v in calls.as_dict().items()})
        return kept, self._sum(calls, ~keep)

    def _learn(self, functions: np.ndarray) -> None:
        new = np.setdiff1d(np.unique(functions), self.functions, assume_unique=True)
        if len(new):
            merged = np.concatenate([self.functions, new])
            order = np.argsort(merged, kind="stable")
            self.functions = merged[order]
            self.stored = np.concatenate([self.stored, np.zeros(len(new), np.int64)])[order]

    def _sum(self, calls: CallColumns, over: np.ndarray) -> AggregateColumns:
        parent, function = calls.parent[over], calls.function[over]
        order = np.lexsort((function, parent))
        parent, function = parent[order], function[order]
        duration = calls.duration_ns[over][order]
        raised = (calls.outcome[over][order] == OUTCOME_RAISED).astype(np.int64)
        new_group = np.r_[True, (parent[1:] != parent[:-1]) | (function[1:] != function[:-1])]
        starts = np.flatnonzero(new_group)
        count = np.diff(np.r_[starts, len(parent)])
        for func, n in zip(function[starts].tolist(), count.tolist(), strict=True):
            self.summed[func] = self.summed.get(func, 0) + n
        return AggregateColumns(
            parent=parent[starts],
            function=function[starts],
            calls=count.astype(np.int64),
            raised=np.add.reduceat(raised, starts),
            total_ns=np.add.reduceat(duration, starts),
            min_ns=np.minimum.reduceat(duration, starts),
            max_ns=np.maximum.reduceat(duration, starts),
        )

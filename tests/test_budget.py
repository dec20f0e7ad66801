"""Budgets: past max_calls_per_function a function's calls are summed, and counts stay exact."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scope.storage.budget import Budget
from scope.storage.correlate import OUTCOME_RAISED, OUTCOME_RETURNED, CallColumns


def columns(calls: list[tuple[int, int, int, int]]) -> CallColumns:
    """(parent, function, duration, outcome) tuples as call columns."""
    n = len(calls)
    table = np.array(calls, dtype=np.int64).reshape(n, 4)
    return CallColumns(
        id=np.arange(1, n + 1, dtype=np.int64),
        thread=np.ones(n, np.int32),
        parent=table[:, 0].copy(),
        end_id=np.arange(1, n + 1, dtype=np.int64),
        depth=np.zeros(n, np.int32),
        function=table[:, 1].copy(),
        start_ns=np.zeros(n, np.int64),
        duration_ns=table[:, 2].copy(),
        outcome=table[:, 3].astype(np.uint8),
        suspended_ns=np.zeros(n, np.int64),
        suspensions=np.zeros(n, np.int32),
    )


call = st.tuples(
    st.integers(0, 3),  # parent
    st.integers(1, 4),  # function
    st.integers(0, 1000),  # duration
    st.sampled_from([OUTCOME_RETURNED, OUTCOME_RAISED]),
)


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(st.lists(call, max_size=30), max_size=6), limit=st.integers(0, 12))
def test_stored_rows_plus_sums_are_every_call_exactly(batches, limit):
    budget = Budget(limit)
    stored: Counter[int] = Counter()
    totals: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    summed: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0, 2**62, -1])
    for batch in batches:
        for parent, function, duration, outcome in batch:
            t = totals[(parent, function)]
            t[0] += 1
            t[1] += duration
            t[2] += outcome == OUTCOME_RAISED
        kept, sums = budget.split(columns(batch))
        for i in range(len(kept)):
            key = (int(kept.parent[i]), int(kept.function[i]))
            stored[key[1]] += 1
            s = summed[key]
            s[0] += 1
            s[1] += int(kept.duration_ns[i])
            s[2] += int(kept.outcome[i]) == OUTCOME_RAISED
        if sums is not None:
            for i in range(len(sums)):
                s = summed[(int(sums.parent[i]), int(sums.function[i]))]
                s[0] += int(sums.calls[i])
                s[1] += int(sums.total_ns[i])
                s[2] += int(sums.raised[i])
                assert sums.min_ns[i] <= sums.max_ns[i]
    if limit:
        assert all(n <= limit for n in stored.values())
    # Stored rows and sums together: every call once, every nanosecond counted.
    assert {k: v[:3] for k, v in summed.items()} == dict(totals)
    per_function_summed = Counter()
    for (_, function), t in totals.items():
        per_function_summed[function] += t[0]
    for function, n in per_function_summed.items():
        assert budget.summed.get(function, 0) == n - stored[function]


def test_fib_past_its_budget_keeps_exact_counts(write, scope, query):
    write(
        "fib.py",
        """
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        def main():
            return fib(20)

        print(main())
        """,
    )
    result = scope("run", "--max-calls-per-function", "1000", "fib.py")
    assert result.returncode == 0 and result.stdout == "6765\n"
    fib_rows = """SELECT count(*) FROM call
                  WHERE function = (SELECT id FROM function WHERE qualname = 'fib')"""
    assert query(fib_rows) == [(1000,)]
    ((summed, aggregated),) = query(
        """SELECT f.calls_summed, (SELECT sum(calls) FROM call_aggregate)
           FROM function f WHERE qualname = 'fib'"""
    )
    assert summed == aggregated == 21891 - 1000
    assert query("SELECT calls_summed FROM run") == [(20891,)]
    stats = {s["qualname"]: s for s in json.loads(scope("calls", "--json").stdout)}
    assert stats["fib"]["calls"] == 21891 and stats["main"]["calls"] == 1
    assert json.loads(scope("status", "--json").stdout)["calls_summed"] == 20891
    # With no limit every call is a row.
    scope("run", "--max-calls-per-function", "0", "fib.py")
    assert query("SELECT calls_stored, calls_summed FROM run WHERE id = 2") == [(21892, 0)]

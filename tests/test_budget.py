"""Budgets: past max_calls_per_function a function's calls are summed, and counts stay exact."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st
from scope.native.batch import Batch

from scope import native
from tests.calls import OUTCOME_RAISED, OUTCOME_RETURNED
from tests.harness import drain_everything

lib = native.lib

call = st.tuples(
    st.integers(0, 3),  # parent
    st.integers(1, 4),  # function
    st.integers(0, 1000),  # duration
    st.sampled_from([OUTCOME_RETURNED, OUTCOME_RAISED]),
)


def emit(
    parent: int, function: int, duration: int, outcome: int, call_id: int, summed: bool
) -> None:
    """Write one finished call's record into this thread's ring, as the recorder would."""
    record = native.ffi.new("scope_record *")
    record.call_id = call_id
    record.parent_id = parent
    record.end_id = call_id
    record.duration_ns = duration
    raised = outcome == OUTCOME_RAISED
    if summed:
        kind = native.lib.SCOPE_SUMMED_RAISE if raised else native.lib.SCOPE_SUMMED_RETURN
    else:
        kind = native.RAISE if raised else native.RETURN
    record.func_word = function | (kind << native.KIND_SHIFT)
    lib.scope_emit_record(record)


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(st.lists(call, max_size=30), max_size=6), limit=st.integers(0, 12))
def test_stored_rows_plus_sums_are_every_call_exactly(batches, limit):
    drain_everything()
    native.configure(1 << 12, "drop", 0, 1 << 16, clock="monotonic")
    native.set_budget(limit)
    # Batches name functions by number, handed out in the order they are first met.
    number = {function: native.function_number(function) for function in (3, 1, 4, 2)}
    assert sorted(number.values()) == [1, 2, 3, 4] and number[3] == 1
    batch = Batch(256, 1 << 12)
    stored: Counter[int] = Counter()
    totals: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    summed: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0, 2**62, -1])
    call_id = 0
    begun: Counter[int] = Counter()  # the recorder's count: past the limit, calls are summed
    for calls in batches:
        for parent, function, duration, outcome in calls:
            begun[function] += 1
            t = totals[(parent, number[function])]
            t[0] += 1
            t[1] += duration
            t[2] += outcome == OUTCOME_RAISED
            call_id += 1
            emit(parent, function, duration, outcome, call_id, 0 < limit < begun[function])
        counts = batch.drain()
        assert counts.records == len(calls) and counts.values == 0
        kept = {name: column[: counts.calls] for name, column in batch.calls.items()}
        for parent, function, duration, outcome in zip(
            kept["parent"].tolist(),
            kept["function"].tolist(),
            kept["duration_ns"].tolist(),
            kept["outcome"].tolist(),
            strict=True,
        ):
            stored[function] += 1
            s = summed[(parent, function)]
            s[0] += 1
            s[1] += duration
            s[2] += outcome == OUTCOME_RAISED
        sums = {name: column[: counts.aggregates] for name, column in batch.aggregates.items()}
        assert int(sums["calls"].sum()) == counts.summed
        for i in range(counts.aggregates):
            s = summed[(int(sums["parent"][i]), int(sums["function"][i]))]
            s[0] += int(sums["calls"][i])
            s[1] += int(sums["total_ns"][i])
            s[2] += int(sums["raised"][i])
            assert sums["min_ns"][i] <= sums["max_ns"][i]
    if limit:
        assert all(n <= limit for n in stored.values())
    # Stored rows and sums together: every call once, every nanosecond counted.
    assert {k: v[:3] for k, v in summed.items()} == dict(totals)
    per_function = Counter()
    for (_, function), t in totals.items():
        per_function[function] += t[0]
    summed_calls = native.summed_calls()
    for function, n in per_function.items():
        assert summed_calls.get(function, 0) == n - stored[function]
    assert native.function_number(3) == 1  # numbers stay put


NESTED = """
def leaf():
    pass

def mid():
    for _ in range(3):
        leaf()

def top():
    for _ in range(5):
        mid()

top()
"""


def test_summed_calls_hang_under_their_nearest_stored_ancestor(write, scope, query):
    write("nested.py", NESTED)
    assert scope("run", "--max-calls-per-function", "2", "nested.py").returncode == 0
    stored = query(
        """SELECT f.qualname, count(*) FROM call c JOIN function f ON f.id = c.function
           GROUP BY ALL ORDER BY ALL"""
    )
    assert stored == [("leaf", 2), ("mid", 2), ("top", 1)]  # the first two of each
    # Which stored mid a sum hangs under: its order among the stored mids.
    sums = query(
        """SELECT p.qualname, rank() OVER (PARTITION BY pc.function ORDER BY pc.id),
                  f.qualname, a.calls
           FROM call_aggregate a JOIN function f ON f.id = a.function
           JOIN call pc ON pc.id = a.parent JOIN function p ON p.id = pc.function
           ORDER BY ALL"""
    )
    assert sorted(sums) == [
        ("mid", 1, "leaf", 1),  # the third leaf, under the first mid
        ("mid", 2, "leaf", 3),  # every leaf of the second mid
        ("top", 1, "leaf", 9),  # the leaves of summed mids: under top
        ("top", 1, "mid", 3),
    ]


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
    stats = {s["qualname"]: s for s in json.loads(scope("top", "--json").stdout)}
    assert stats["fib"]["calls"] == 21891 and stats["main"]["calls"] == 1
    assert json.loads(scope("status", "--json").stdout)["calls_summed"] == 20891
    # With no limit every call is a row.
    scope("run", "--max-calls-per-function", "0", "fib.py")
    assert query("SELECT calls_stored, calls_summed FROM run WHERE id = 2") == [(21892, 0)]

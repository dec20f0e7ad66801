"""The correlator: any stream of records, split into any batches, yields each call exactly once."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scope.storage.correlate import (
    OUTCOME_RAISED,
    OUTCOME_RETURNED,
    OUTCOME_UNFINISHED,
    Correlator,
)

from scope import native

SHIFT = native.SLOT_SHIFT


def simulate(ops: list[tuple[int, str, int]]):
    """Produce records as the C recorder would, and the calls they must correlate to."""
    stacks: dict[int, list[tuple[int, int, int, int]]] = {}
    seqs: dict[int, int] = {}
    per_thread: dict[int, list[tuple]] = {}
    expected = {}
    clock = 0
    for slot, op, func in ops:
        clock += 10
        stack = stacks.setdefault(slot, [])
        if op == "enter":
            seqs[slot] = seqs.get(slot, 0) + 1
            call_id = (slot << SHIFT) | seqs[slot]
            parent = stack[-1][0] if stack else 0
            stack.append((call_id, func, clock, len(stack)))
            per_thread.setdefault(slot, []).append(
                (call_id, parent, clock, func, len(stack) - 1, native.ENTER)
            )
            expected[call_id] = [
                parent or None,
                len(stack) - 1,
                func,
                clock,
                -1,
                OUTCOME_UNFINISHED,
            ]
        elif stack:
            call_id, func, start, depth = stack.pop()
            kind = native.RAISE if op == "raise" else native.RETURN
            end_id = (slot << SHIFT) | seqs[slot]
            per_thread[slot].append((call_id, end_id, clock, func, depth, kind))
            outcome = OUTCOME_RAISED if op == "raise" else OUTCOME_RETURNED
            expected[call_id][4] = clock - start
            expected[call_id][5] = outcome
            expected[call_id].append(end_id)
    return per_thread, expected


op = st.tuples(
    st.integers(1, 3), st.sampled_from(["enter", "enter", "return", "raise"]), st.integers(1, 5)
)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(op, max_size=80), data=st.data())
def test_every_call_is_correlated_exactly_once(ops, data):
    per_thread, expected = simulate(ops)
    # Interleave threads arbitrarily, keeping each thread's order (as drains do).
    queues = {slot: list(records) for slot, records in per_thread.items()}
    stream = []
    while any(queues.values()):
        slot = data.draw(st.sampled_from(sorted(s for s, q in queues.items() if q)))
        stream.append(queues[slot].pop(0))
    records = (
        np.array(stream, dtype=native.RECORD_DTYPE) if stream else np.empty(0, native.RECORD_DTYPE)
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(records)), max_size=5)))
    correlator = Correlator()
    got = {}
    for batch in np.split(records, cuts):
        cols, _ = correlator.add(batch.copy())
        for i in range(len(cols)):
            assert int(cols.id[i]) not in got, "a call came out twice"
            got[int(cols.id[i])] = cols, i
    final = correlator.finish()
    for i in range(len(final)):
        assert int(final.id[i]) not in got
        got[int(final.id[i])] = final, i
    assert got.keys() == expected.keys()
    for call_id, (cols, i) in got.items():
        parent, depth, func, start, duration, outcome = expected[call_id][:6]
        assert (int(cols.parent[i]) or None) == parent
        assert int(cols.depth[i]) == depth
        assert int(cols.function[i]) == func
        assert int(cols.start_ns[i]) == start
        assert int(cols.duration_ns[i]) == duration
        assert int(cols.outcome[i]) == outcome
        assert int(cols.thread[i]) == call_id >> SHIFT
        if outcome != OUTCOME_UNFINISHED:
            assert int(cols.end_id[i]) == expected[call_id][6]
        else:
            assert int(cols.end_id[i]) >> SHIFT == call_id >> SHIFT
            assert int(cols.end_id[i]) >= call_id
    assert correlator.orphan_exits == 0
    assert len(correlator.pending) == 0


def test_exit_without_its_entry_is_counted_not_guessed():
    orphan = np.array(
        [((1 << SHIFT) | 7, (1 << SHIFT) | 7, 5, 1, 0, native.RETURN)], native.RECORD_DTYPE
    )
    correlator = Correlator()
    assert len(correlator.add(orphan)[0]) == 0
    assert correlator.orphan_exits == 1
    assert len(correlator.finish()) == 0

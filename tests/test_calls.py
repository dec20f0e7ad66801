"""Call records: any sequence of calls, ends and drains yields each call exactly once.

The native recorder writes one complete record per call (``tests.calls``
turns a batch of them into call rows).  A hypothesis-driven program of calls
runs on a thread of its own, in chunks with drains of random sizes between
them; at the end, the calls still open are written as unfinished, either by
stopping the recording (``unfinish_stacks``) or by the thread ending.  The rows
must match a model of the same program: ids, parents, depths, end ids,
functions, outcomes, and times that nest.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scope.native.batch import RECORD_DTYPE, drain

from scope import native
from tests.calls import (
    OUTCOME_RAISED,
    OUTCOME_RETURNED,
    OUTCOME_UNFINISHED,
    call_columns,
    split_batch,
)
from tests.harness import OwnThread, drain_everything

lib = native.lib
SHIFT = native.SLOT_SHIFT


def model(ops: list[tuple[str, int]]) -> dict[int, dict[str, int]]:
    """The rows a program of ops must produce, keyed by the call's sequence number."""
    stack: list[int] = []
    rows: dict[int, dict[str, int]] = {}
    seq = 0
    for op, func in ops:
        if op == "enter":
            seq += 1
            parent = stack[-1] if stack else 0
            rows[seq] = {"parent": parent, "depth": len(stack), "function": func}
            rows[seq]["outcome"] = OUTCOME_UNFINISHED
            stack.append(seq)
        elif stack:
            done = stack.pop()
            rows[done]["outcome"] = OUTCOME_RAISED if op == "raise" else OUTCOME_RETURNED
            rows[done]["end"] = seq
    for still_open in stack:
        rows[still_open]["end"] = seq
    return rows


class Worker:
    """A thread that runs chunks of ops on command, so drains can come between them."""

    def __init__(self) -> None:
        self.stack: list[int] = []
        self.thread = OwnThread()

    def _ops(self, chunk: list[tuple[str, int]]) -> None:
        for op, func in chunk:
            if op == "enter":
                lib.scope_emit_enter(func)
                self.stack.append(func)
            elif self.stack:
                lib.scope_emit_exit(self.stack.pop(), 1 if op == "raise" else 0)

    def run(self, chunk: list[tuple[str, int]]) -> None:
        self.thread.call(lambda: self._ops(chunk))

    def stop(self) -> None:
        self.thread.stop()


ops = st.lists(
    st.tuples(st.sampled_from(["enter", "enter", "return", "raise"]), st.integers(1, 5)),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(program=ops, data=st.data())
def test_every_call_is_stored_exactly_once_with_its_structure(program, data):
    drain_everything()
    native.configure(1 << 12, "drop", 0, 1 << 16)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(program)), max_size=4)))
    batches = []
    native.set_enabled(True)
    worker = Worker()
    try:
        for chunk in np.split(np.arange(len(program)), cuts):
            worker.run([program[i] for i in chunk])
            size = data.draw(st.integers(1, 64))
            buffer = np.zeros(size, RECORD_DTYPE)
            n = drain(buffer)[0]
            batches.append(call_columns(buffer[:n].copy()))
        if data.draw(st.booleans(), label="stop the recording while calls are open"):
            lib.scope_unfinish_stacks()
    finally:
        native.set_enabled(False)
        worker.stop()  # a thread that ends with open calls writes them unfinished
    rest, values = split_batch(drain_everything()[0])
    assert len(values) == 0
    got: dict[int, dict[str, int]] = {}
    for cols in [*batches, rest]:
        for row in zip(*(c.tolist() for c in cols.as_dict().values()), strict=True):
            named = dict(zip(cols.as_dict(), row, strict=True))
            assert named["id"] not in got, "a call came out twice"
            got[named["id"]] = named
    expected = model(program)
    if not got:
        assert not expected
        return
    base = min(got) - 1
    assert {i - base for i in got} == expected.keys()
    for call_id, row in got.items():
        want = expected[call_id - base]
        assert row["thread"] == call_id >> SHIFT
        assert (row["parent"] - base if row["parent"] else 0) == want["parent"]
        assert row["depth"] == want["depth"] and row["function"] == want["function"]
        assert row["outcome"] == want["outcome"]
        assert row["end_id"] - base == want["end"]
        if want["outcome"] == OUTCOME_UNFINISHED:
            assert row["duration_ns"] == -1 and row["suspended_ns"] == -1
        else:
            assert row["duration_ns"] >= 0 and row["suspended_ns"] == 0
            parent = got.get(row["parent"])
            if parent is not None and parent["duration_ns"] >= 0:
                # Times nest: a child runs inside its parent.
                assert parent["start_ns"] <= row["start_ns"]
                assert (
                    row["start_ns"] + row["duration_ns"]
                    <= parent["start_ns"] + parent["duration_ns"]
                )

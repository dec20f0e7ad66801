"""The native rings: per-thread FIFO, exact accounting, both overflow policies, thread exit.

Ring size and policy apply to rings created after ``configure``, so each test
produces from fresh threads.  Counters are process-wide: tests compare deltas.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from scope.native.batch import RECORD_DTYPE, drain, function_ids, kinds

from scope import native
from tests.harness import OwnThread, drain_everything

lib = native.lib


def drain_all() -> np.ndarray:
    """Every pending record (these tests produce no values)."""
    return drain_everything()[0]


def in_threads(work: Callable[[int], None], count: int = 1) -> None:
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def produce_pairs(n: int, first_func: int = 1) -> None:
    for i in range(n):
        lib.scope_emit_enter(first_func + i)
        lib.scope_emit_exit(first_func + i, 0)


class Recording:
    """Enable recording with a ring size and policy; yields counter deltas afterwards."""

    def __init__(self, ring: int, overflow: str, timeout_ns: int = 0) -> None:
        drain_all()
        native.configure(ring, overflow, timeout_ns, 1 << 16)
        self.before = native.stats()

    def __enter__(self) -> Recording:
        native.set_enabled(True)
        return self

    def __exit__(self, *exc: object) -> None:
        native.set_enabled(False)

    def delta(self, name: str) -> int:
        return getattr(native.stats(), name) - getattr(self.before, name)


def test_a_call_is_one_complete_record_written_when_it_ends():
    with Recording(1024, "drop"):

        def work(_: int) -> None:
            lib.scope_emit_enter(10)
            lib.scope_emit_enter(20)
            lib.scope_emit_exit(20, 1)
            lib.scope_emit_exit(10, 0)

        in_threads(work)
    records = drain_all()
    assert kinds(records).tolist() == [native.RAISE, native.RETURN]
    assert function_ids(records).tolist() == [20, 10]
    inner, outer = records
    assert int(inner["call_id"]) == int(outer["call_id"]) + 1
    assert int(outer["call_id"]) >> native.SLOT_SHIFT >= 1
    assert int(inner["parent_id"]) == int(outer["call_id"]) and int(outer["parent_id"]) == 0
    assert [int(d) for d in records["depth"]] == [1, 0]
    assert int(outer["end_id"]) == int(inner["call_id"])  # the last call begun inside
    assert int(inner["start_ns"]) >= int(outer["start_ns"])
    outer_end = int(outer["start_ns"]) + int(outer["duration_ns"])
    assert outer_end >= int(inner["start_ns"]) + int(inner["duration_ns"])
    assert records["suspended_ns"].tolist() == [0, 0] and records["suspensions"].tolist() == [0, 0]


def test_a_full_ring_drops_and_counts_and_keeps_the_oldest():
    with Recording(16, "drop") as rec:
        in_threads(lambda _: produce_pairs(40))
    records = drain_all()
    assert function_ids(records).tolist() == list(range(1, 17))
    assert rec.delta("dropped") == 24
    assert rec.delta("produced") == 16 and rec.delta("drained") == 16


def test_a_dead_threads_ring_is_drained_then_released():
    with Recording(64, "drop") as rec:
        in_threads(lambda _: produce_pairs(5), count=3)
        # The threads are gone; their records wait for the drainer.
        assert native.stats().pending == 15
        records = drain_all()
    assert len(records) == 15
    assert rec.delta("threads_seen") == 3
    # Released rings leave their counters behind.
    assert native.stats().pending == 0
    assert rec.delta("produced") == rec.delta("drained") == 15
    slots = {int(i) >> native.SLOT_SHIFT for i in records["call_id"]}
    # join() returns when the Python thread is done; the C thread-exit destructor
    # that stamps end_ns runs a moment later on the OS thread.  Wait for it (bounded).
    deadline = time.monotonic() + 10
    while True:
        infos = {t.slot: t for t in native.threads()}
        if all(infos[s].end_ns for s in slots) or time.monotonic() > deadline:
            break
        time.sleep(0.001)
    assert slots <= infos.keys() and all(infos[s].end_ns for s in slots)


CALLS_PER_THREAD = 1_000_000
STRESS_THREADS = 8


def stress(policy: str, ring: int) -> tuple[np.ndarray, Recording]:
    """8 threads each make 1M calls (in C, GIL released) while one thread drains.

    Returns the call ids drained (only they are kept: 8M whole records would
    take half a gigabyte).
    """
    collected: list[np.ndarray] = []
    done = threading.Event()
    buffer = np.zeros(1 << 18, dtype=RECORD_DTYPE)
    with Recording(ring, policy, timeout_ns=5_000_000_000) as rec:

        def drainer() -> None:
            while True:
                finished = done.is_set()
                while n := drain(buffer)[0]:
                    assert (kinds(buffer[:n]) == native.RETURN).all()
                    collected.append(buffer["call_id"][:n].copy())
                if finished:
                    return

        drain_thread = threading.Thread(target=drainer)
        drain_thread.start()
        calls = CALLS_PER_THREAD
        in_threads(lambda i: lib.scope_produce_pairs(calls, 1 + i * calls), count=STRESS_THREADS)
        done.set()
        drain_thread.join()
    return np.concatenate(collected), rec


def check_per_thread_fifo(call_ids: np.ndarray) -> None:
    """Per thread: calls in id order, each id once."""
    slots = call_ids >> np.uint64(native.SLOT_SHIFT)
    for slot in np.unique(slots):
        mine = call_ids[slots == slot]
        assert np.all(np.diff(mine.astype(np.int64)) > 0)


def test_stress_block_policy_loses_nothing():
    call_ids, rec = stress("block", ring=4096)
    assert len(call_ids) == STRESS_THREADS * CALLS_PER_THREAD
    assert rec.delta("dropped") == 0
    assert rec.delta("produced") == rec.delta("drained") == len(call_ids)
    check_per_thread_fifo(call_ids)


def test_stress_drop_policy_accounts_for_every_call():
    call_ids, rec = stress("drop", ring=256)
    assert rec.delta("dropped") + len(call_ids) == STRESS_THREADS * CALLS_PER_THREAD
    assert rec.delta("produced") == rec.delta("drained") == len(call_ids)
    check_per_thread_fifo(call_ids)


class Producer:
    """A thread that owns a ring and produces on command, so a test controls interleaving."""

    def __init__(self, first_func: int) -> None:
        self.next_func = first_func
        self.thread = OwnThread()

    def produce(self, pairs: int) -> None:
        first = self.next_func
        self.thread.call(lambda: lib.scope_produce_pairs(pairs, first))
        self.next_func += pairs

    def stop(self) -> None:
        self.thread.stop()


class RingMachine(RuleBasedStateMachine):
    """Any interleaving of writes from several threads and drains of any size,
    against an exact model of each ring: FIFO per thread, nothing duplicated,
    produced == drained + pending, and every drop counted."""

    @initialize(capacity=st.sampled_from([16, 32, 64, 128]), threads=st.integers(1, 3))
    def start(self, capacity: int, threads: int) -> None:
        # Suspended generators of earlier tests would report their exits from
        # whichever thread collects them: collect them now, while recording is off.
        gc.collect()
        drain_all()
        native.configure(capacity, "drop", 0, 1 << 16)
        native.set_enabled(True)
        self.capacity = capacity
        self.before = native.stats()
        # Distinct function ids per producer tell whose ring a record came from.
        self.producers = [Producer(1 + i * 1_000_000) for i in range(threads)]
        # Per producer: the function ids of the records the model expects in its
        # ring, oldest first.
        self.queues: list[list[int]] = [[] for _ in range(threads)]
        self.slot_of: dict[int, int] = {}
        self.dropped = 0
        self.produced = 0
        self.drained = 0

    def _push(self, queue: list[int], func: int) -> None:
        if len(queue) >= self.capacity:
            self.dropped += 1
        else:
            queue.append(func)
            self.produced += 1

    @rule(data=st.data(), pairs=st.integers(0, 40))
    def produce(self, data: st.DataObject, pairs: int) -> None:
        index = data.draw(st.integers(0, len(self.producers) - 1))
        producer, queue = self.producers[index], self.queues[index]
        first = producer.next_func
        producer.produce(pairs)
        for func in range(first, first + pairs):
            self._push(queue, func)

    @rule(capacity=st.integers(1, 100))
    def drain(self, capacity: int) -> None:
        buffer = np.zeros(capacity, dtype=RECORD_DTYPE)
        n = drain(buffer)[0]
        got = buffer[:n]
        assert n <= capacity
        for call_id, func in zip(got["call_id"].tolist(), function_ids(got).tolist(), strict=True):
            owner = self._owner(call_id >> native.SLOT_SHIFT, func)
            assert self.queues[owner] and self.queues[owner][0] == func
            self.queues[owner].pop(0)
        self.drained += n
        if n < capacity:
            assert all(not q for q in self.queues)

    def _owner(self, slot: int, func: int) -> int:
        if slot not in self.slot_of:
            # The first record seen from a slot: the producer whose queue it heads.
            heads = [i for i, q in enumerate(self.queues) if q and q[0] == func]
            free = [i for i in heads if i not in self.slot_of.values()]
            assert free
            self.slot_of[slot] = free[0]
        return self.slot_of[slot]

    @invariant()
    def accounts_balance(self) -> None:
        if not hasattr(self, "before"):
            return
        now = native.stats()
        assert now.produced - self.before.produced == self.produced
        assert now.dropped - self.before.dropped == self.dropped
        assert now.drained - self.before.drained == self.drained
        assert now.pending == sum(len(q) for q in self.queues)

    def teardown(self) -> None:
        if hasattr(self, "producers"):
            for producer in self.producers:
                producer.stop()
        native.set_enabled(False)
        drain_all()


TestRingMachine = RingMachine.TestCase
TestRingMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


# An xdist worker runs threads of its own: 3.12+ warns of them at this fork.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_with_fresh_empty_rings():
    with Recording(1024, "drop"):
        produce_pairs(10)  # pending in this thread's ring when the fork happens
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what it sees, then leave without cleanup
            native.after_fork_child()
            stats = native.stats()
            seen = drain(np.zeros(64, RECORD_DTYPE))[0]
            native.set_enabled(True)
            produce_pairs(3)
            child_ids = drain_all()["call_id"] >> np.uint64(native.SLOT_SHIFT)
            report = f"{stats.pending} {stats.produced} {stats.threads_seen} {seen} "
            report += f"{len(child_ids)} {set(child_ids.tolist())}"
            os.write(write, report.encode())
            os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        report = os.read(read, 1000).decode()
        os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    # Nothing pending, nothing produced, no threads: then its own calls, in slot 1.
    assert report == "0 0 0 0 3 {1}"
    assert len(drain_all()) == 10  # the parent's records are still the parent's


def test_the_mover_keeps_a_slow_drainers_rings_from_filling():
    """With nobody draining, the mover holds what a small ring cannot: nothing is dropped,
    and a drain afterwards hands every call out in order."""
    with Recording(1024, "drop") as rec:
        assert native.start_mover(1 << 26, interval=0.0002)
        try:

            def produce(_: int) -> None:
                # The mover takes a ring's records once it is a quarter full (256):
                # each batch of 400 is written only after it did, so a ring that
                # the mover keeps from filling never holds more than 655 of 1024.
                # Paced by the mover, not by sleeps: on a loaded machine the mover
                # can be descheduled for longer than any sleep here.
                deadline = time.monotonic() + 60  # without a mover: fails in a minute
                for start in range(0, 20_000, 400):
                    produce_pairs(400, 1 + start)
                    while native.stats().pending >= 256 and time.monotonic() < deadline:
                        time.sleep(0.0005)

            in_threads(produce)
        finally:
            native.stop_mover()
    assert native.stats().held > 0  # the mover moved them, no drain has yet
    records = drain_all()
    assert rec.delta("dropped") == 0
    assert function_ids(records).tolist() == list(range(1, 20_001))


def test_stress_with_the_mover_loses_nothing_and_keeps_order():
    native.start_mover(1 << 27, interval=0.0005)
    try:
        call_ids, rec = stress("block", ring=4096)
    finally:
        native.stop_mover()
    assert len(call_ids) == STRESS_THREADS * CALLS_PER_THREAD
    assert rec.delta("dropped") == 0
    check_per_thread_fifo(call_ids)


def test_stopping_the_mover_twice_and_starting_it_again_is_harmless():
    native.stop_mover()
    assert native.start_mover(1 << 20) and native.start_mover(1 << 21)  # retunes, one thread
    native.stop_mover()
    native.stop_mover()

"""The writer thread: every drained record is stored or counted lost, even when it is hit.

A sink that takes its time stands in for the database; exceptions raised into
the writer thread from outside (``PyThreadState_SetAsyncExc``, the nearest
Python has to killing a thread) end it mid-batch.  A new writer must take over,
and stored plus lost must equal what the program produced.
"""

from __future__ import annotations

import ctypes
import threading
import time

from scope.capture.pipeline import Pipeline
from scope.native.batch import Batch

from scope import native
from tests.harness import drain_everything


class SlowSink:
    """Counts the calls of every batch it stored, slowly."""

    def __init__(self) -> None:
        self.calls = 0
        self.batches = 0

    def attach(self, batch: Batch) -> None:
        """Nothing to prepare."""

    def write_batch(self, batch: Batch) -> None:
        time.sleep(0.01)  # most hits land mid-batch
        self.calls += batch.counts.calls
        self.batches += 1


class Interrupted(BaseException):
    """Raised into the writer thread by the test: like SystemExit, not an error of the sink."""


def interrupt(ident: int) -> bool:
    """Raise ``Interrupted`` in thread ``ident``; False if the thread is gone."""
    hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(Interrupted)
    )
    return hit == 1


def test_an_interrupted_writer_restarts_and_counts_what_it_lost():
    drain_everything()
    native.configure(1 << 12, "block", 2_000_000_000, 1 << 16, clock="monotonic")
    native.set_budget(0)
    sink = SlowSink()
    pipeline = Pipeline(sink, batch_records=512, interval=0.001)
    pipeline.start()
    produced = 0
    native.set_enabled(True)
    try:

        def produce() -> None:
            for _ in range(200):
                native.lib.scope_produce_pairs(500, 1)
                time.sleep(0.0005)

        producer = threading.Thread(target=produce)
        producer.start()
        hits = 0
        while producer.is_alive():
            assert pipeline._ident is not None
            # An exception raised into a thread before its first instruction inside
            # a try ends any Python thread; hit the writer once it is in its loop.
            if pipeline._serving != pipeline._ident:
                time.sleep(0.0005)
                continue
            if interrupt(pipeline._ident):
                hits += 1
                # One at a time: the next once a new writer has taken over.
                deadline = time.monotonic() + 10
                while pipeline.health.restarts < hits and time.monotonic() < deadline:
                    time.sleep(0.0005)
            time.sleep(0.003)
        producer.join()
        produced = 200 * 500
    finally:
        native.set_enabled(False)
        pipeline.stop()
    health = pipeline.health
    assert hits > 0 and health.restarts == hits
    assert health.restart_cause is not None and "Interrupted" in health.restart_cause
    assert health.failure is None  # the sink itself never failed
    assert health.records == produced
    assert health.records_stored + health.records_lost == produced
    # A hit between the sink's return and the bookkeeping counts a stored batch as
    # lost: counted twice, never not at all.
    assert health.records_stored <= sink.calls <= health.records_stored + 512 * hits
    assert health.records_lost > 0

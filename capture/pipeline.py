"""The pipeline manager: a writer thread that drains the rings into a sink.

The writer wakes every ``interval`` seconds, drains every ring into reusable
buffers (``Batch``: the copy and the scatter into columns run in C
without the GIL) and hands each batch to the sink.  It drains until the rings
are empty before sleeping again, so a burst never waits a whole interval.  If
the sink fails, the thread records the failure, stops handing batches to the
sink and keeps draining so that producers never block on a dead writer;
everything drained after the failure is counted as lost.  ``stop`` drains
what is left and returns.

If anything ends the writer thread early (an exception that is not the sink's,
such as one raised into the thread from outside), the batch in flight is
counted as lost and a new writer thread takes over: ``health.restarts`` says
how often.

The writer is a raw ``_thread`` thread rather than a ``threading.Thread``: the
recorded program's ``threading.enumerate()`` and ``active_count()`` must not
see it, and interpreter shutdown must not wait for it (``stop`` runs at exit).

While the writer stores a batch it drains nothing, and a fast program fills its
ring in tens of milliseconds (every function's first calls, stored one by one,
come in a burst at the start).  So a C thread, the mover (``native.start_mover``),
moves the records of any ring a quarter full into C memory, up to ``hold_bytes``;
drains hand those out first, in order.  The program waits for the writer only
once that much is waiting; the memory goes back when the burst is stored.

Around a fork the program makes, ``pause`` stops the writer and the mover (the
rings stay as they are) and ``resume`` starts them again in the parent: the
program forks with no thread of scope's running, as it would without scope.
That keeps CPython 3.12+ from warning that the process is multi-threaded, and
the child from inheriting a lock that one of them held.

While the program traces its own allocations with ``tracemalloc``, the writer
only moves records into C memory (``native.hold``, up to ``hold_bytes``): the
numpy arrays and Python objects of storing a batch would otherwise show up in
the program's measurements.  The held records are stored once tracing stops.
It checks before every batch, and the sink works through a batch's values in
small chunks (smaller still once tracing has begun), so that work already in
progress when tracing starts holds little traced memory and soon frees it.
"""

from __future__ import annotations

import _thread
import threading
import tracemalloc
from dataclasses import dataclass
from typing import Protocol

from scope.native.batch import Batch

from scope import native

#: DuckDB's row group size.  A batch of at most this many rows never leaves a
#: partial row group written ahead of its commit, which the next checkpoint
#: would rewrite and leave as free blocks: measured on richards, batches of 2^17
#: rows made the file 25 MB, 47 of its 101 blocks free; batches of 122,880
#: made it 14 MB with none free.
ROW_GROUP_ROWS = 122_880


class BatchSink(Protocol):
    """Where drained batches go (``scope.storage.writer.RecordingWriter``)."""

    def attach(self, batch: Batch) -> None:
        """Get ready for batches drained into ``batch`` (before the writer starts)."""

    def write_batch(self, batch: Batch) -> None:
        """Store what ``batch`` holds from its latest drain."""


@dataclass
class PipelineHealth:
    """What the writer thread did; reported in the run's row and by ``scope status``."""

    batches: int = 0
    #: records drained from the rings (the native counter: exact wherever the
    #: writer was interrupted)
    records: int = 0
    #: records of batches the sink stored, less those it could not number
    records_stored: int = 0
    failure: str | None = None
    #: times the writer loop was interrupted by an exception and started again
    restarts: int = 0
    #: why it was, the first time
    restart_cause: str | None = None
    #: forks for which the threads did not stop in time (CPython 3.12+ may have
    #: warned the program that it was multi-threaded)
    pause_timeouts: int = 0

    @property
    def records_lost(self) -> int:
        """Records drained but not stored: the sink failed, or the writer was hit."""
        return self.records - self.records_stored


class Pipeline:
    """Owns the writer thread between ``start`` and ``stop``."""

    def __init__(
        self,
        sink: BatchSink,
        batch_records: int = ROW_GROUP_ROWS,
        arena_bytes: int = 1 << 22,
        interval: float = 0.01,
        hold_bytes: int = 1 << 28,
    ):
        self.sink = sink
        self.hold_bytes = hold_bytes
        self.health = PipelineHealth()
        self._batch = Batch(batch_records, arena_bytes)
        self._interval = interval
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._ident: int | None = None
        #: the kernel's id of the writer thread (to know when it has ended)
        self._native_id = 0
        #: between pause and resume
        self._paused = False
        #: stop has begun: nothing starts the threads again
        self._closed = False
        #: held while the threads' state changes (never while waiting for them)
        self._transition = threading.RLock()
        #: the writer thread inside its loop (its try), where a hit is survived
        self._serving: int | None = None
        self._drained_before = 0

    @staticmethod
    def _drained() -> int:
        """Records drains have handed out: from the rings, and the unfinished calls
        written straight into held memory."""
        rings = native.stats()
        return rings.drained + rings.unfinished_held

    def start(self) -> None:
        """Start the writer thread."""
        self._drained_before = self._drained()
        self.sink.attach(self._batch)
        self._ident = _thread.start_new_thread(self._run, ())
        native.start_mover(self.hold_bytes)

    def _run(self) -> None:
        native.mark_scope_work(True)  # this thread is scope's, for its whole life
        self._native_id = threading.get_native_id()
        try:
            self._serving = _thread.get_ident()
            while not self._stop.wait(self._interval):
                self.drain_all(yield_to_tracing=True)
        except BaseException as exc:
            # Something killed the loop mid-batch (an exception raised into the
            # thread, a bug): the batch in flight was counted as lost.
            self.health.restart_cause = self.health.restart_cause or repr(exc)
        finally:
            if self._stop.is_set():
                self._stopped.set()
            else:
                self.health.restarts += 1
                self._ident = _thread.start_new_thread(self._run, ())

    def pause(self, timeout: float = 30.0) -> bool:
        """Stop the writer and mover threads until ``resume`` (the program is forking).

        Waits for the batch in flight to be stored, and for both threads to be
        gone as the kernel counts threads; a wait that runs out is counted in
        ``health.pause_timeouts``.  False if there was nothing to pause.  The
        state is set before anything waits, so that a signal handler raising
        meanwhile leaves a pause that ``resume`` (or ``stop``) completes.
        """
        with self._transition:
            if self._paused or self._closed or self._ident is None:
                return False
            self._paused = True
            native.stop_mover()
            self._stop.set()
            writer = self._ident
        if writer != _thread.get_ident():
            gone = self._stopped.wait(timeout) and native.wait_thread_gone(self._native_id, timeout)
            if not gone:
                self.health.pause_timeouts += 1
        return True

    def resume(self) -> None:
        """Start the threads ``pause`` stopped (in the process that paused them)."""
        with self._transition:
            if not self._paused or self._closed:
                return
            self._paused = False
            self._stop.clear()
            if not self._stopped.is_set():
                return  # the writer never stopped (its pause ran out): it goes on
            self._stopped.clear()
            self._ident = _thread.start_new_thread(self._run, ())
            native.start_mover(self.hold_bytes)

    def drain_all(self, timeout: float = -1, yield_to_tracing: bool = False) -> int:
        """Drain until the rings are empty; returns how many records moved.

        Gives up (returning 0) if another drain holds the buffer for longer than
        ``timeout`` seconds (-1 waits for ever).  With ``yield_to_tracing``, it
        checks before each batch whether the program traces its allocations,
        and if so holds the rest in C memory instead (see the module's doc).
        """
        if not self._lock.acquire(timeout=timeout):
            return 0
        moved = 0
        try:
            while True:
                if yield_to_tracing and tracemalloc.is_tracing() and native.hold(self.hold_bytes):
                    return moved
                n = self._batch.drain().records
                if n == 0:
                    return moved
                moved += n
                self._deliver(self._batch)
        finally:
            self._lock.release()

    def _deliver(self, batch: Batch) -> None:
        if self.health.failure is not None:
            return
        try:
            self.sink.write_batch(batch)
        except Exception as exc:  # the recorded program must never see scope fail
            self.health.failure = f"{type(exc).__name__}: {exc}"
            return
        self.health.batches += 1
        self.health.records_stored += batch.counts.records - batch.counts.lost

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread and drain everything still in the rings."""
        with self._transition:
            self._closed = True
            self._paused = False
            native.stop_mover()
            self._stop.set()
            waits = self._ident is not None and self._ident != _thread.get_ident()
        if waits and not self._stopped.wait(timeout):
            self.health.failure = self.health.failure or "writer thread did not stop"
        self.drain_all(timeout)
        self.health.records = self._drained() - self._drained_before

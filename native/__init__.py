"""The native recorder: per-thread C rings, value arenas, shadow call stacks and the clock.

``enter``, ``exit``, ``unwind``, ``returning``, ``wrote``, ``suspending``
and ``resumed`` are the ``METH_FASTCALL`` functions that instrumented code
calls (see ``scope.instrument.rewrite`` for where each goes); everything else is
bound through cffi and used by the writer threads (``drain`` copies records
out with the GIL released).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from scope import interpreter

if interpreter.free_threaded():
    # Loading the extension would turn the GIL back on for the whole program.
    raise interpreter.UnsupportedInterpreter(
        f"scope does not support free-threaded builds yet ({interpreter.describe()})"
    )

#: the cffi-built extension (no type information: everything in it is Any)
_native: Any = importlib.import_module("scope.native._native")

ffi: Any = _native.ffi
lib: Any = _native.lib

if lib.scope_install_entry_points(_native.__name__.encode()) != 0:  # pragma: no cover
    raise ImportError("scope.native: could not install the C entry points")

#: ``capabilities() -> dict``: whether interpreter frames can be read here
#: ("frames"), and the CPython version the extension was built for
capabilities: Any = _native.capabilities
enter: Any = _native.enter
exit: Any = _native.exit
#: the block instrumented bodies run in (``with __scope_call__:``): leaving it ends the call
call_body: Any = _native.call_body
leave: Any = _native.leave
unwind: Any = _native.unwind
returning: Any = _native.returning
wrote: Any = _native.wrote
suspending: Any = _native.suspending
resumed: Any = _native.resumed
set_runtime_objects: Any = _native.set_runtime_objects
#: ``flush_on_sigterm(callback) -> bool``: on SIGTERM (while it has its default
#: action), call ``callback`` on a watcher thread, then die of SIGTERM as python would.
flush_on_sigterm: Any = _native.flush_on_sigterm
#: ``no_flush_on_sigterm()``: SIGTERM's default action back (if scope's handler is
#: still there); the callback is dropped.
no_flush_on_sigterm: Any = _native.no_flush_on_sigterm
#: ``note_sigterm() -> bool``: on SIGTERM (while it has its default action), note the
#: signal in the process header and die of it at once: the service records it.
note_sigterm: Any = _native.note_sigterm
#: ``run_at_bottom(func, *args)``: call ``func`` with no Python frame below it.
run_at_bottom: Any = _native.run_at_bottom
#: ``wrap_builtin(builtin, before[, after])``: a builtin that looks like ``builtin``,
#: calls ``before`` with the same arguments first and ``after(result)`` last
#: (os._exit, os.exec*, os.fork)
wrap_builtin: Any = _native.wrap_builtin
#: stand in for ``threading._start_new_thread`` (3.11, 3.12) and
#: ``threading._start_joinable_thread`` (3.13+): note who starts each thread
start_new_thread: Any = _native.start_new_thread
start_joinable_thread: Any = _native.start_joinable_thread
#: raised_in(exception): the innermost recorded call it left on this thread, or 0
raised_in: Any = _native.raised_in
ROLE_EVENT: int = lib.SCOPE_ROLE_EVENT
ROLE_TASK: int = lib.SCOPE_ROLE_TASK
ROLE_SUSPENSION: int = lib.SCOPE_ROLE_SUSPENSION
#: current_call(): the innermost recorded call open on this thread, or 0
current_call: Any = _native.current_call
#: take_over_main(filename, compile) -> bool: run a child interpreter's program instrumented
take_over_main: Any = _native.take_over_main
#: note_exit_status(path) -> bool: write the exit status to path (None: only to the
#: process header) at exit (glibc only)
note_exit_status: Any = _native.note_exit_status
#: ``mark_scope_work(begin)``: scope's own work on this thread begins (True) or ends
mark_scope_work: Any = _native.scope_work


@contextmanager
def scope_work() -> Iterator[None]:
    """Scope's own work on this thread (instrumenting, storing): nothing in it is recorded."""
    mark_scope_work(True)
    try:
        yield
    finally:
        mark_scope_work(False)


def configure_audit(names: Sequence[str]) -> bool:
    """Record these audit events (PEP 578) from now on; False if a hook refused ours."""
    return bool(_native.configure_audit("\n".join(names)))


#: ``unfinish_open() -> int``: write every call still open as unfinished (at stop).
unfinish_open: Any = _native.unfinish_open

SLOT_SHIFT: int = lib.SCOPE_SLOT_SHIFT
PROCESS_SHIFT: int = lib.SCOPE_PROCESS_SHIFT
#: a thread's open calls its ring file keeps, for a reader once the process is dead
RING_FRAMES: int = lib.SCOPE_RING_FRAMES
#: the version of the ring and header files: a recording service reads only its own
SHARED_FORMAT: int = lib.SCOPE_SHARED_VERSION
RETURN: int = lib.SCOPE_RETURN
RAISE: int = lib.SCOPE_RAISE
UNFINISHED: int = lib.SCOPE_UNFINISHED
VALUE: int = lib.SCOPE_VALUE
KIND_SHIFT: int = lib.SCOPE_KIND_SHIFT
FUNCTION_MASK: int = (1 << KIND_SHIFT) - 1
FLAG_SHIFT: int = lib.SCOPE_FLAG_SHIFT
FLAG_ARGS: int = lib.SCOPE_FLAG_ARGS
FLAG_FULL: int = lib.SCOPE_FLAG_FULL
FLAG_RESUMABLE: int = lib.SCOPE_FLAG_RESUMABLE
FLAG_ASYNC: int = lib.SCOPE_FLAG_ASYNC
ATTR_REDACTED: int = lib.SCOPE_ATTR_REDACTED
OVERFLOW_POLICIES = {"drop": lib.SCOPE_OVERFLOW_DROP, "block": lib.SCOPE_OVERFLOW_BLOCK}
CLOCK_SOURCES = {"monotonic": lib.SCOPE_CLOCK_MONOTONIC, "tsc": lib.SCOPE_CLOCK_TSC}


@dataclass(frozen=True)
class RingStats:
    """Counters over every ring of the process, live and retired."""

    produced: int
    dropped: int
    drained: int
    pending: int
    held: int
    high_water: int
    blocked_ns: int
    stack_overflow: int
    unmatched_exits: int
    values_lost: int
    unfinished: int
    threads_seen: int
    threads_live: int
    #: rings kept in private memory while sharing: their file could not be made
    unshared: int = 0
    #: unfinished calls written straight into held memory, never into a ring:
    #: captured and drained, though no ring counted them
    unfinished_held: int = 0


@dataclass(frozen=True)
class ThreadInfo:
    """One OS thread that reported events: its identities and its own counters."""

    slot: int
    native_id: int
    ident: int
    start_ns: int
    end_ns: int | None
    produced: int
    dropped: int
    drained: int
    high_water: int
    blocked_ns: int
    stack_overflow: int
    unmatched_exits: int
    values_lost: int
    #: threading's name for it (None for threads threading did not start)
    name: str | None = None
    #: slot of the thread whose ``Thread.start()`` started it (0: unknown)
    parent_slot: int = 0
    #: the innermost recorded call open on that thread then (0: none)
    started_by: int = 0
    #: call records written
    calls: int = 0


@dataclass(frozen=True)
class ClockInfo:
    """How record timestamps became nanoseconds: stored with the run."""

    source: str
    ticks0: int
    ns0: int
    ns_per_tick: float
    calibrated_ns: int


def tsc_usable() -> bool:
    """Whether this CPU has an invariant TSC (a constant-rate clock in every core and state)."""
    return bool(lib.scope_tsc_usable())


def configure(
    ring_records: int,
    overflow: str,
    block_timeout_ns: int,
    max_depth: int,
    arena_bytes: int = 1 << 20,
    clock: str = "auto",
) -> None:
    """Set ring and arena sizes, overflow policy, stack bound and clock source.

    Sizes apply to rings created from now on.  ``clock="auto"`` picks the TSC
    where the CPU has an invariant one (a record then costs about 9 ns of clock
    instead of 20), else ``CLOCK_MONOTONIC``.
    """
    if clock == "auto":
        clock = "tsc" if tsc_usable() else "monotonic"
    rc = lib.scope_configure(
        ring_records,
        arena_bytes,
        OVERFLOW_POLICIES[overflow],
        block_timeout_ns,
        max_depth,
        CLOCK_SOURCES[clock],
    )
    if rc:
        raise ValueError(
            f"invalid native configuration: ring_records={ring_records}, "
            f"arena_bytes={arena_bytes}, clock={clock}"
        )


def configure_values(
    max_bytes: int, full_items: int, call_repr: bool, redact: tuple[str, ...]
) -> None:
    """Bound value summaries and name the secrets whose values never leave the process."""
    patterns = "\n".join(p.lower() for p in redact).encode()
    if lib.scope_configure_values(max_bytes, full_items, 1 if call_repr else 0, patterns):
        raise ValueError(f"invalid value settings: max_bytes={max_bytes}, items={full_items}")


def clock() -> ClockInfo:
    """The clock's source and latest calibration."""
    raw = ffi.new("scope_clock *")
    lib.scope_get_clock(raw)
    return _clock_info(raw)


def _clock_info(raw: Any) -> ClockInfo:
    source = {v: k for k, v in CLOCK_SOURCES.items()}[int(raw.source)]
    return ClockInfo(
        source, int(raw.ticks0), int(raw.ns0), float(raw.ns_per_tick), int(raw.calibrated_ns)
    )


def set_enabled(enabled: bool) -> None:
    """Start or stop accepting new calls (the ends of open calls are still recorded)."""
    lib.scope_set_enabled(1 if enabled else 0)


def is_enabled() -> bool:
    """Whether new calls are being recorded."""
    return bool(lib.scope_is_enabled())


def hold(max_bytes: int) -> bool:
    """Drain the rings into C memory, allocating nothing Python can see.

    For while the program traces its own allocations (``tracemalloc``): the
    writer's numpy and Python work would show up in them.  ``drain`` hands the
    held records out first.  False if ``max_bytes`` stopped it before the
    rings were empty.
    """
    return bool(lib.scope_hold(max_bytes))


def start_mover(max_bytes: int, interval: float = 0.001) -> bool:
    """Start the mover thread (C, no GIL): every ``interval`` seconds, rings a quarter
    full are moved into held memory (at most ``max_bytes``), so that the program does
    not wait for a full ring while the writer stores a batch.  False if it could not
    start."""
    return bool(lib.scope_start_mover(max_bytes, int(interval * 1e9)))


def stop_mover() -> None:
    """Stop the mover thread and wait for it (records it moved stay held for drains)."""
    lib.scope_stop_mover()


#: how a process ended, in its process header (``note_process_end``)
PROCESS_STATES = {
    "exit": lib.SCOPE_PROCESS_EXITED,
    "os._exit": lib.SCOPE_PROCESS_EXITED,
    "exec": lib.SCOPE_PROCESS_EXEC,
    "SIGTERM": lib.SCOPE_PROCESS_SIGNALLED,
}


def share_rings(folder: str, parent_pid: int = 0) -> None:
    """Keep this process's rings in files of ``folder`` from now on (``scope_shared.h``).

    ``folder`` must exist and be private (0700).  Each thread's ring becomes a
    file there, reserved in full and mapped shared, next to a process header:
    what the program records is in the files as soon as it is published, for
    whoever stores it, even if the program is killed.  A ring whose file cannot
    be made (a full disk) is kept in private memory and counted.  Raises
    ``OSError`` if the process header cannot be made.
    """
    if lib.scope_live_open(os.fsencode(folder), parent_pid) != 0:
        code = ffi.errno
        raise OSError(code, os.strerror(code), folder)


def note_process_end(ended_by: str, exit_status: int | None) -> None:
    """Say in the process header how the process ended (``PROCESS_STATES``' keys)."""
    status = -1 if exit_status is None else exit_status
    lib.scope_live_ended(PROCESS_STATES.get(ended_by, lib.SCOPE_PROCESS_EXITED), status)


def unfinished_into_rings(into_rings: bool) -> None:
    """Write calls left open into the rings (another process drains them), not held memory."""
    lib.scope_set_unfinished_into_rings(1 if into_rings else 0)


def stop_sharing(remove: bool) -> None:
    """Make rings in private memory again; ``remove`` the folder's files (everything
    in them is stored).  Rings in use stay mapped for their threads."""
    lib.scope_live_close(1 if remove else 0)


def wait_thread_gone(native_id: int, timeout: float = 0.1) -> bool:
    """Wait (GIL released) until thread ``native_id`` of this process has ended, as
    the kernel counts threads; False if it had not within ``timeout`` seconds."""
    return bool(lib.scope_wait_task_gone(native_id, int(timeout * 1e9)))


#: ``pause_sigterm_watcher() -> bool``: stop the SIGTERM watcher thread (a fork
#: is coming); ``resume_sigterm_watcher() -> bool`` starts it again.
pause_sigterm_watcher: Any = _native.pause_sigterm_watcher
resume_sigterm_watcher: Any = _native.resume_sigterm_watcher


def stats() -> RingStats:
    """A snapshot of the rings' counters."""
    raw = ffi.new("scope_stats *")
    lib.scope_get_stats(raw)
    return RingStats(**{name: int(getattr(raw, name)) for name in RingStats.__dataclass_fields__})


def threads() -> list[ThreadInfo]:
    """Every thread that has reported an event in this process, in slot order."""
    capacity = 64
    while True:
        buf = ffi.new("scope_thread_info[]", capacity)
        total = int(lib.scope_get_threads(buf, capacity))
        if total <= capacity:
            break
        capacity = total
    return [_thread_info(buf[i]) for i in range(total)]


def _thread_info(raw: Any) -> ThreadInfo:
    fields = [f for f in ThreadInfo.__dataclass_fields__ if f not in ("end_ns", "name")]
    return ThreadInfo(
        end_ns=int(raw.end_ns) or None,
        name=ffi.string(raw.name).decode("utf-8", "replace") or None,
        **{name: int(getattr(raw, name)) for name in fields},
    )


def now_ns() -> int:
    """CLOCK_MONOTONIC in nanoseconds: the time base drained records are converted to."""
    return int(lib.scope_now_ns())


def after_fork_child() -> None:
    """Forget the parent's rings in a forked child and stop recording there.

    The child also keeps, untouched, the parent's open recording objects: closing
    them could write to the parent's file.  They are left for the process's end,
    and the leak report their library would print there is silenced.
    """
    lib.scope_after_fork_child()
    _native.forked_child()


@dataclass(frozen=True)
class ProcessInfo:
    """What a recorded process's header says about it (``scope_shared.h``)."""

    pid: int
    parent_pid: int
    start_ns: int
    #: ``PROCESS_STATES``' values, or ``lib.SCOPE_PROCESS_RUNNING``: it never said it ended
    state: int
    exit_status: int
    end_ns: int
    setup_failures: int
    unfinished: int
    unshared: int
    #: suspended calls open (generators, coroutines), which no ring file keeps
    parked: int

    @property
    def ended_by(self) -> str:
        """How it ended, as the process table says: "killed" if it never said."""
        names = {
            lib.SCOPE_PROCESS_EXITED: "exit",
            lib.SCOPE_PROCESS_EXEC: "exec",
            lib.SCOPE_PROCESS_SIGNALLED: "SIGTERM",
        }
        return names.get(self.state, "killed")


class Reader:
    """Another process's rings, read from its folder (``share_rings``): for storing
    what a killed process left behind.  ``Batch.drain(reader)`` drains them."""

    def __init__(self, folder: str, numbering: Numbering | None = None, process: int = 0) -> None:
        handle = lib.scope_reader_open(os.fsencode(folder))
        if handle == ffi.NULL:
            code = ffi.errno
            raise OSError(code, os.strerror(code), folder)
        self._raw = handle
        self.handle: Any = ffi.gc(handle, lib.scope_reader_close)
        self.folder = folder
        #: how the run these records belong to numbers its functions
        self.numbering = numbering or OWN_NUMBERING
        lib.scope_reader_set_process_number(handle, process)

    def set_process(self, number: int) -> None:
        """Name the records drained from now on as those of the run's process ``number``."""
        lib.scope_reader_set_process_number(self.handle, number)

    def commit(self) -> None:
        """Free the rings' space of every record drained so far (they are stored)."""
        lib.scope_reader_commit(self.handle)

    def positions(self) -> list[tuple[int, int, int]]:
        """(slot, record, arena) each ring is drained to: what to note with the store
        of what was drained, for ``skip_to`` after a reader killed before ``commit``."""
        count = int(lib.scope_reader_positions(self.handle, ffi.NULL, 0))
        buf = ffi.new("scope_ring_position[]", max(count, 1))
        count = int(lib.scope_reader_positions(self.handle, buf, count))
        return [(int(buf[i].slot), int(buf[i].read), int(buf[i].arena_read)) for i in range(count)]

    def waiting(self) -> int:
        """Records the rings hold that were not drained yet (published ones only)."""
        return int(lib.scope_reader_waiting(self.handle))

    def skip_to(self, slot: int, read: int, arena: int) -> bool:
        """Pass over, and free, ring ``slot``'s records up to a position ``positions``
        gave (they are stored); False if no ring of that slot is mapped yet."""
        position = ffi.new(
            "scope_ring_position *", {"slot": slot, "read": read, "arena_read": arena}
        )
        return bool(lib.scope_reader_skip_to(self.handle, position))

    def unfinish(self) -> tuple[int, int]:
        """Once the process is dead: write the calls its threads still had open, which
        their ring files keep, into the rings as unfinished, for the next drain.
        Returns (written, missing): missing could not be (a stack deeper than a ring
        file keeps, or a full ring).  Done once: the stacks are emptied."""
        missing = ffi.new("size_t *")
        written = int(lib.scope_reader_unfinish(self.handle, missing))
        return written, int(missing[0])

    def refresh(self) -> int:
        """Map the ring files made since; returns how many."""
        return max(0, int(lib.scope_reader_refresh(self.handle)))

    def process(self) -> ProcessInfo:
        """What the process header says now."""
        raw = ffi.new("scope_process_info *")
        lib.scope_reader_process(self.handle, raw)
        return ProcessInfo(
            **{name: int(getattr(raw, name)) for name in ProcessInfo.__dataclass_fields__}
        )

    def clock(self) -> ClockInfo:
        """How this reader turns the records' timestamps into nanoseconds."""
        raw = ffi.new("scope_clock *")
        lib.scope_reader_clock(self.handle, raw)
        return _clock_info(raw)

    def threads(self) -> list[ThreadInfo]:
        """One row per ring, from its header."""
        count = int(lib.scope_reader_threads(self.handle, ffi.NULL, 0))
        buf = ffi.new("scope_thread_info[]", max(count, 1))
        count = int(lib.scope_reader_threads(self.handle, buf, count))
        return [_thread_info(buf[i]) for i in range(count)]

    def close(self) -> None:
        """Unmap the files now rather than when collected."""
        if self.handle is not None:
            ffi.gc(self.handle, None)
            self.handle = None
            lib.scope_reader_close(self._raw)


class Numbering:
    """How one run numbers its functions (1, 2, ... as first met) and sums the calls
    past their budget: this process's own, or a new one (a recording service keeps
    one per run)."""

    def __init__(self, own: bool = False) -> None:
        if own:
            self.handle: Any = ffi.NULL
        else:
            made = lib.scope_numbering_new()
            if made == ffi.NULL:  # pragma: no cover
                raise MemoryError("no memory for a numbering")
            self.handle = ffi.gc(made, lib.scope_numbering_free)

    def seed(self, function_id: int, number: int) -> None:
        """Number ``function_id`` as ``number`` from now on (a run being resumed)."""
        lib.scope_numbering_seed(self.handle, function_id, number)

    def number(self, function_id: int) -> int:
        """The number batches store for a function (0 if C memory ran out)."""
        return int(lib.scope_numbering_number(self.handle, function_id))

    def summed(self) -> dict[int, int]:
        """Function number -> calls summed past its budget so far."""
        capacity = 256
        while True:
            functions = ffi.new("uint64_t[]", capacity)
            counts = ffi.new("uint64_t[]", capacity)
            total = int(lib.scope_numbering_summed(self.handle, functions, counts, capacity))
            if total <= capacity:
                return {int(functions[i]): int(counts[i]) for i in range(total)}
            capacity = total


#: this process's own numbering (``set_budget`` starts it again)
OWN_NUMBERING = Numbering(own=True)


def set_budget(max_calls_per_function: int) -> None:
    """Store at most this many calls per function (0: all); forget earlier counts."""
    lib.scope_set_budget(max_calls_per_function)


def set_suspension_min(min_ns: int) -> None:
    """Write a record of each suspension (yield, await) at least ``min_ns`` long as
    its generator or coroutine resumes (negative: none).  After ``configure``: its
    clock turns the time into ticks."""
    lib.scope_set_suspension_min(min_ns)


def function_number(function_id: int) -> int:
    """The number this process's batches store for a function (see ``Numbering``).

    Numbers start again at each ``set_budget``.
    """
    return OWN_NUMBERING.number(function_id)


def summed_calls() -> dict[int, int]:
    """Function number -> calls this process summed past their budget so far."""
    return OWN_NUMBERING.summed()

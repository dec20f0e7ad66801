"""The native recorder: per-thread C rings, value arenas, shadow call stacks and the clock.

``enter``, ``exit``, ``unwind``, ``returning``, ``assigning``, ``suspending``
and ``resumed`` are the ``METH_FASTCALL`` functions that instrumented code
calls (see ``scope.instrument.rewrite`` for where each goes); everything else is
bound through cffi and used by the writer threads (``drain`` copies records
out with the GIL released).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the cffi-built extension (no type information: everything in it is Any)
_native: Any = importlib.import_module("scope.native._native")

ffi: Any = _native.ffi
lib: Any = _native.lib

if lib.scope_install_entry_points(_native.__name__.encode()) != 0:  # pragma: no cover
    raise ImportError("scope.native: could not install the C entry points")

enter: Any = _native.enter
exit: Any = _native.exit
unwind: Any = _native.unwind
returning: Any = _native.returning
assigning: Any = _native.assigning
suspending: Any = _native.suspending
resumed: Any = _native.resumed
set_runtime_objects: Any = _native.set_runtime_objects
#: ``flush_on_sigterm(callback) -> bool``: on SIGTERM (while it has its default
#: action), call ``callback`` on a watcher thread, then die of SIGTERM as python would.
flush_on_sigterm: Any = _native.flush_on_sigterm
#: ``no_flush_on_sigterm()``: SIGTERM's default action back; the callback is dropped.
no_flush_on_sigterm: Any = _native.no_flush_on_sigterm
#: ``run_at_bottom(func, *args)``: call ``func`` with no Python frame below it.
run_at_bottom: Any = _native.run_at_bottom

SLOT_SHIFT: int = lib.SCOPE_SLOT_SHIFT
ENTER: int = lib.SCOPE_ENTER
RETURN: int = lib.SCOPE_RETURN
RAISE: int = lib.SCOPE_RAISE
VALUE: int = lib.SCOPE_VALUE
FLAG_SHIFT: int = lib.SCOPE_FLAG_SHIFT
FLAG_ARGS: int = lib.SCOPE_FLAG_ARGS
FLAG_FULL: int = lib.SCOPE_FLAG_FULL
FLAG_RESUMABLE: int = lib.SCOPE_FLAG_RESUMABLE
FLAG_ASYNC: int = lib.SCOPE_FLAG_ASYNC
ATTR_REDACTED: int = lib.SCOPE_ATTR_REDACTED
OVERFLOW_POLICIES = {"drop": lib.SCOPE_OVERFLOW_DROP, "block": lib.SCOPE_OVERFLOW_BLOCK}
CLOCK_SOURCES = {"monotonic": lib.SCOPE_CLOCK_MONOTONIC, "tsc": lib.SCOPE_CLOCK_TSC}

#: numpy's view of ``scope_record``; field order and sizes match the C struct.
RECORD_DTYPE = np.dtype(
    [
        ("call_id", "<u8"),
        ("other_id", "<u8"),
        ("time_ns", "<i8"),
        ("func_id", "<u8"),
        ("depth", "<u4"),
        ("kind", "<u4"),
    ]
)
assert RECORD_DTYPE.itemsize == ffi.sizeof("scope_record")

#: numpy's view of ``scope_value_record`` (records whose kind is ``VALUE``).
VALUE_DTYPE = np.dtype(
    [
        ("call_id", "<u8"),
        ("payload", "<i8"),
        ("arena_pos", "<u4"),
        ("arena_len", "<u4"),
        ("func_id", "<u8"),
        ("index", "<u2"),
        ("tag", "u1"),
        ("role", "u1"),
        ("kind", "<u4"),
    ]
)
assert VALUE_DTYPE.itemsize == ffi.sizeof("scope_value_record")


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
    threads_seen: int
    threads_live: int


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
    #: threading's name for it at its first event (None for threads it did not start)
    name: str | None = None


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
    source = {v: k for k, v in CLOCK_SOURCES.items()}[int(raw.source)]
    return ClockInfo(
        source, int(raw.ticks0), int(raw.ns0), float(raw.ns_per_tick), int(raw.calibrated_ns)
    )


def set_enabled(enabled: bool) -> None:
    """Start or stop accepting new calls (exits of open calls are still recorded)."""
    lib.scope_set_enabled(1 if enabled else 0)


def is_enabled() -> bool:
    """Whether new calls are being recorded."""
    return bool(lib.scope_is_enabled())


def drain(out: np.ndarray, arena: np.ndarray | None = None) -> tuple[int, int]:
    """Copy pending records of every ring into ``out`` and their value bytes into ``arena``.

    Returns (records copied, arena bytes used).  Drained value records point
    into ``arena`` (``arena_pos``).  Without an arena, draining stops at the
    first value that has bytes.
    """
    used = ffi.new("size_t *")
    records = ffi.cast("scope_record *", ffi.from_buffer(out))
    if arena is None:
        n = lib.scope_drain(records, len(out), ffi.NULL, 0, used)
    else:
        n = lib.scope_drain(records, len(out), ffi.from_buffer(arena), len(arena), used)
    return int(n), int(used[0])


def hold(max_bytes: int) -> bool:
    """Drain the rings into C memory, allocating nothing Python can see.

    For while the program traces its own allocations (``tracemalloc``): the
    writer's numpy and Python work would show up in them.  ``drain`` hands the
    held records out first.  False if ``max_bytes`` stopped it before the
    rings were empty.
    """
    return bool(lib.scope_hold(max_bytes))


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
    fields = [f for f in ThreadInfo.__dataclass_fields__ if f not in ("end_ns", "name")]
    return [
        ThreadInfo(
            end_ns=int(buf[i].end_ns) or None,
            name=ffi.string(buf[i].name).decode("utf-8", "replace") or None,
            **{name: int(getattr(buf[i], name)) for name in fields},
        )
        for i in range(total)
    ]


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

"""The native recorder: per-thread C rings, shadow call stacks and the clock.

``enter``, ``exit`` and ``unwind`` are the ``METH_FASTCALL`` functions that
instrumented code calls; everything else is bound through cffi and used by the
writer threads (``drain`` copies records out with the GIL released).
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
#: ``run_at_bottom(func, *args)``: call ``func`` with no Python frame below it.
run_at_bottom: Any = _native.run_at_bottom

SLOT_SHIFT: int = lib.SCOPE_SLOT_SHIFT
ENTER: int = lib.SCOPE_ENTER
RETURN: int = lib.SCOPE_RETURN
RAISE: int = lib.SCOPE_RAISE
OVERFLOW_POLICIES = {"drop": lib.SCOPE_OVERFLOW_DROP, "block": lib.SCOPE_OVERFLOW_BLOCK}

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


@dataclass(frozen=True)
class RingStats:
    """Counters over every ring of the process, live and retired."""

    produced: int
    dropped: int
    drained: int
    pending: int
    high_water: int
    blocked_ns: int
    stack_overflow: int
    unmatched_exits: int
    threads_seen: int
    threads_live: int


@dataclass(frozen=True)
class ThreadInfo:
    """One OS thread that reported events: its slot in call ids and its identities."""

    slot: int
    native_id: int
    ident: int
    start_ns: int
    end_ns: int | None


def configure(ring_records: int, overflow: str, block_timeout_ns: int, max_depth: int) -> None:
    """Set ring size, overflow policy and stack bound for rings created from now on."""
    if lib.scope_configure(ring_records, OVERFLOW_POLICIES[overflow], block_timeout_ns, max_depth):
        raise ValueError(f"invalid native configuration: ring_records={ring_records}")


def set_enabled(enabled: bool) -> None:
    """Start or stop accepting new calls (exits of open calls are still recorded)."""
    lib.scope_set_enabled(1 if enabled else 0)


def is_enabled() -> bool:
    """Whether new calls are being recorded."""
    return bool(lib.scope_is_enabled())


def drain(out: np.ndarray) -> int:
    """Copy pending records of every ring into ``out``; returns how many were copied."""
    return int(lib.scope_drain(ffi.cast("scope_record *", ffi.from_buffer(out)), len(out)))


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
    return [
        ThreadInfo(
            slot=int(buf[i].slot),
            native_id=int(buf[i].native_id),
            ident=int(buf[i].ident),
            start_ns=int(buf[i].start_ns),
            end_ns=int(buf[i].end_ns) or None,
        )
        for i in range(total)
    ]


def now_ns() -> int:
    """The recorder's clock (CLOCK_MONOTONIC), in nanoseconds."""
    return int(lib.scope_now_ns())


def after_fork_child() -> None:
    """Forget the parent's rings in a forked child and stop recording there."""
    lib.scope_after_fork_child()

"""Drained records as numpy sees them, and the reusable buffers a batch drains into.

Only what stores a recording imports this (a writer thread, the recording
service): numpy is never loaded into a program that a service stores, where
its BLAS threads would be threads the program did not start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scope.native import Reader, ffi, lib

KIND_SHIFT: int = lib.SCOPE_KIND_SHIFT
FUNCTION_MASK: int = (1 << KIND_SHIFT) - 1

#: numpy's view of ``scope_record``: field order and sizes match the C struct.
RECORD_DTYPE = np.dtype(
    [
        ("call_id", "<u8"),
        ("parent_id", "<u8"),
        ("end_id", "<u8"),
        ("start_ns", "<i8"),
        ("duration_ns", "<i8"),
        ("func_word", "<u8"),
        ("suspended_ns", "<i8"),
        ("depth", "<u4"),
        ("suspensions", "<u4"),
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
        ("index", "<u2"),
        ("tag", "u1"),
        ("role", "u1"),
        ("unused0", "<u4"),
        ("raised_in", "<u8"),
        ("func_word", "<u8"),
        ("unused2", "<u8"),
        ("unused3", "<u8"),
    ]
)
assert VALUE_DTYPE.itemsize == ffi.sizeof("scope_value_record")


def kinds(records: np.ndarray) -> np.ndarray:
    """The kinds of records (either dtype): the high byte of ``func_word``."""
    return (records["func_word"] >> np.uint64(KIND_SHIFT)).astype(np.uint8)


def function_ids(records: np.ndarray) -> np.ndarray:
    """The function ids of records (either dtype): ``func_word`` without its kind, as int64."""
    return (records["func_word"] & np.uint64(FUNCTION_MASK)).view(np.int64)


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


#: the call table's columns as ``scope_drain_batch`` fills them, in table order
CALL_COLUMNS: dict[str, str] = {
    "id": "<i8",
    "thread": "<i4",
    "parent": "<i8",
    "end_id": "<i8",
    "depth": "<i4",
    "function": "<i8",
    "start_ns": "<i8",
    "duration_ns": "<i8",
    "outcome": "u1",
    "suspended_ns": "<i8",
    "suspensions": "<i4",
}
#: the call_aggregate table's columns, in table order
AGGREGATE_COLUMNS: dict[str, str] = dict.fromkeys(
    (
        "parent",
        "function",
        "calls",
        "raised",
        "total_ns",
        "min_ns",
        "max_ns",
        "self_ns",
        "direct_ns",
    ),
    "<i8",
)


@dataclass(frozen=True)
class BatchCounts:
    """What one ``Batch.drain`` produced (see ``scope_batch_counts``)."""

    records: int
    calls: int
    values: int
    aggregates: int
    summed: int
    unfinished: int
    lost: int
    arena_used: int


class Batch:
    """Reusable buffers that one drain fills: call columns, aggregate columns, values.

    ``drain`` runs in C without the GIL: it empties the rings (up to
    ``capacity`` records), scatters calls into ``calls`` (numpy arrays named
    like the call table's columns), sums calls past their function's budget
    into ``aggregates``, and leaves value records in ``values()`` with their
    bytes in ``arena``.  All of them name functions by ``function_number``.
    Only the first ``counts.calls`` (``counts.aggregates``) rows of the columns
    belong to the latest drain; the arrays themselves are never replaced, so a
    database may keep them registered.
    """

    def __init__(self, capacity: int, arena_bytes: int) -> None:
        self.capacity = capacity
        self.scratch = np.zeros(capacity, RECORD_DTYPE)
        self.arena = np.zeros(arena_bytes, np.uint8)
        self.calls = {name: np.zeros(capacity, dtype) for name, dtype in CALL_COLUMNS.items()}
        self.aggregates = {name: np.zeros(capacity, dt) for name, dt in AGGREGATE_COLUMNS.items()}
        self._keep: list[Any] = []
        self._call_struct = self._struct("scope_call_columns *", self.calls)
        self._aggregate_struct = self._struct("scope_aggregate_columns *", self.aggregates)
        self._counts = ffi.new("scope_batch_counts *")
        self.counts = BatchCounts(0, 0, 0, 0, 0, 0, 0, 0)

    def _struct(self, ctype: str, columns: dict[str, np.ndarray]) -> Any:
        struct = ffi.new(ctype)
        for name, array in columns.items():
            pointer = ffi.from_buffer(array)
            self._keep.append(pointer)
            setattr(struct, name, ffi.cast(ffi.typeof(getattr(struct, name)), pointer))
        return struct

    def drain(self, reader: Reader | None = None) -> BatchCounts:
        """Drain the rings (this process's, or ``reader``'s) into the buffers; returns
        what they now hold."""
        buffers = (
            ffi.cast("scope_record *", ffi.from_buffer(self.scratch)),
            self.capacity,
            ffi.from_buffer(self.arena),
            len(self.arena),
            self._call_struct,
            self._aggregate_struct,
            self._counts,
        )
        if reader is None:
            lib.scope_drain_batch(*buffers)
        else:
            lib.scope_reader_drain_batch(reader.handle, reader.numbering.handle, *buffers)
        raw = self._counts
        self.counts = BatchCounts(
            int(raw.records),
            int(raw.calls),
            int(raw.values),
            int(raw.aggregates),
            int(raw.summed),
            int(raw.unfinished),
            int(raw.lost),
            int(raw.arena_used),
        )
        return self.counts

    def values(self) -> np.ndarray:
        """The latest drain's value records (``VALUE_DTYPE``), a view of the scratch buffer."""
        return self.scratch[: self.counts.values].view(VALUE_DTYPE)

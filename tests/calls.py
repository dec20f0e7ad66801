"""Drained records as call rows: columns, for tests that read records without storing them.

The native recorder writes one complete record per call when the call ends
(see ``native/scope_native.h``), so nothing here pairs entries with exits:
a batch's call records already are its call rows, and the columns are views
of the drained array.  Value records ride in the same batches and are split
off untouched for ``scope.storage.values``.

A call that never ended (its thread or the recording stopped first) arrives as
an ``unfinished`` record with duration and suspended time -1.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scope.native.batch import VALUE_DTYPE, function_ids, kinds

from scope import native

OUTCOME_RETURNED = 0
OUTCOME_RAISED = 1
OUTCOME_UNFINISHED = 2


@dataclass
class CallColumns:
    """Call rows as columns (numpy arrays of equal length), in table order."""

    id: np.ndarray
    thread: np.ndarray
    parent: np.ndarray
    end_id: np.ndarray
    depth: np.ndarray
    function: np.ndarray
    start_ns: np.ndarray
    duration_ns: np.ndarray
    outcome: np.ndarray
    suspended_ns: np.ndarray
    suspensions: np.ndarray

    def __len__(self) -> int:
        return len(self.id)

    def as_dict(self) -> dict[str, np.ndarray]:
        """The columns by name, in table order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def call_columns(records: np.ndarray) -> CallColumns:
    """The call rows of call records (``RECORD_DTYPE``, no value records)."""
    ids = records["call_id"]
    return CallColumns(
        id=ids.view(np.int64),
        thread=(ids >> np.uint64(native.SLOT_SHIFT)).astype(np.int32),
        parent=records["parent_id"].view(np.int64),
        end_id=records["end_id"].view(np.int64),
        depth=records["depth"].view(np.int32),
        function=function_ids(records),
        start_ns=records["start_ns"],
        duration_ns=records["duration_ns"],
        outcome=kinds(records) - np.uint8(native.RETURN),
        suspended_ns=records["suspended_ns"],
        suspensions=records["suspensions"].view(np.int32),
    )


def split_batch(records: np.ndarray) -> tuple[CallColumns, np.ndarray]:
    """A drained batch as its call rows and its value records (``VALUE_DTYPE``).

    Both may be views of ``records``: store them before the buffer is reused.
    """
    is_value = kinds(records) == native.VALUE
    if not is_value.any():
        return call_columns(records), np.empty(0, VALUE_DTYPE)
    return call_columns(records[~is_value]), records[is_value].view(VALUE_DTYPE)

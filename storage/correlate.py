"""Pair entry and exit records into call rows, vectorised with numpy.

Call ids are unique within a process, so an exit finds its entry by id alone:
entries not yet closed are kept (``pending``) across batches and matched against
each new batch's exits with a sorted search.  A call whose exit never arrives is
reported by ``finish`` as unfinished, with duration -1.  An exit whose entry
was never seen (its entry was dropped) is counted, never guessed at.

An exit record also carries how long its call spent suspended and how many
times (generators and coroutines at ``yield`` and ``await``; the native side
adds it up), so a call row has both its wall time and how much of it the call
was running.  Value records are split off untouched for ``scope.storage.values``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scope import native

OUTCOME_RETURNED = 0
OUTCOME_RAISED = 1
OUTCOME_UNFINISHED = 2


@dataclass
class CallColumns:
    """Call rows as columns, ready for a columnar insert."""

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
        return dict(self.__dict__)


def _calls(
    entries: np.ndarray,
    end_id: np.ndarray,
    duration: np.ndarray,
    outcome: np.ndarray,
    suspended: tuple[np.ndarray, np.ndarray] | None = None,
) -> CallColumns:
    ids = entries["call_id"]
    if suspended is None:
        suspended = (np.zeros(len(ids), np.int64), np.zeros(len(ids), np.int32))
    return CallColumns(
        id=ids.view(np.int64),
        thread=(ids >> np.uint64(native.SLOT_SHIFT)).astype(np.int32),
        parent=entries["other_id"].view(np.int64),
        end_id=end_id.view(np.int64) if end_id.dtype == np.uint64 else end_id,
        depth=entries["depth"].astype(np.int32),
        function=entries["func_id"].view(np.int64),
        start_ns=entries["time_ns"],
        duration_ns=duration,
        outcome=outcome,
        suspended_ns=suspended[0],
        suspensions=suspended[1],
    )


class Correlator:
    """Turns a stream of record batches into call rows."""

    def __init__(self) -> None:
        self.pending = np.empty(0, dtype=native.RECORD_DTYPE)
        self.orphan_exits = 0
        self.records_seen = 0

    def add(self, records: np.ndarray) -> tuple[CallColumns, np.ndarray]:
        """Consume one batch; return the calls it completes and its value records.

        ``records`` is not kept; the value records are a view of it
        (``native.VALUE_DTYPE``).
        """
        self.records_seen += len(records)
        kinds = records["kind"]
        is_value = kinds == native.VALUE
        values = records[is_value].view(native.VALUE_DTYPE)
        if len(values):
            records = records[~is_value]
        return self._pair(records), values

    def _pair(self, records: np.ndarray) -> CallColumns:
        is_entry = records["kind"] == native.ENTER
        exits = records[~is_entry]
        candidates = np.concatenate([self.pending, records[is_entry]])
        candidates = candidates[np.argsort(candidates["call_id"], kind="stable")]
        ids = candidates["call_id"]
        if len(ids) == 0:
            self.orphan_exits += len(exits)
            return _calls(
                candidates, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8)
            )
        pos = np.minimum(np.searchsorted(ids, exits["call_id"]), len(ids) - 1)
        found = ids[pos] == exits["call_id"]
        self.orphan_exits += int(np.count_nonzero(~found))
        pos, exits = pos[found], exits[found]
        closed = np.zeros(len(candidates), dtype=bool)
        closed[pos] = True
        entries = candidates[pos]
        self.pending = candidates[~closed]
        outcome = np.where(exits["kind"] == native.RAISE, OUTCOME_RAISED, OUTCOME_RETURNED)
        return _calls(
            entries,
            exits["other_id"],
            exits["time_ns"] - entries["time_ns"],
            outcome.astype(np.uint8),
            (exits["func_id"].view(np.int64), exits["depth"].astype(np.int32)),
        )

    def finish(self) -> CallColumns:
        """The calls still open: duration -1, outcome unfinished; clears the pending set."""
        entries, self.pending = self.pending, np.empty(0, dtype=native.RECORD_DTYPE)
        n = len(entries)
        # It never ended, so everything its thread began afterwards is under it.
        thread_last_id = entries["call_id"] | np.uint64((1 << native.SLOT_SHIFT) - 1)
        return _calls(
            entries,
            thread_last_id,
            np.full(n, -1, dtype=np.int64),
            np.full(n, OUTCOME_UNFINISHED, dtype=np.uint8),
            (np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int32)),
        )

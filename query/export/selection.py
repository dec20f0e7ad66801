"""Which calls an export writes: ``scope calls``'s filters, as one SQL query.

A trace is only worth opening if what it draws hangs together, so the filters
do not all keep calls the same way:

* ``function``, ``module`` and ``test_roots`` name *anchors*: each call they
  match is kept with every call under it, so a slice in the viewer shows what
  it spent its time on;
* every other field of the ``CallFilter`` (thread, time window, duration, ...)
  *prunes*: a call that does not match it is left out, whatever its caller.

The calls under an anchor are its preorder interval on its thread,
``[id, end_id]``: every call begun there while it ran (for a generator, that
includes what its caller did while it was suspended).  Overlapping intervals
are merged first (window functions over the thread's anchors in id order: an
interval that begins after every earlier one ended starts a new island), which
leaves disjoint intervals; an ``ASOF`` join then finds each call's interval in
one ordered pass, where an interval join would compare every call with every
anchor.

``max_calls`` keeps the longest of the selected calls (a call that never ended
counts as longest: it ran to the end).  Callers of a call last at least as
long as it, so what is kept is the top of the tree, not a scatter of leaves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import duckdb
from scope.query.calls import CallFilter, where_clause

#: what no recorded duration or call id exceeds
_LARGEST = 9_223_372_036_854_775_807
_CALL_JOIN = "call c LEFT JOIN function f ON f.run = c.run AND f.id = c.function"
#: the filter that keeps every call
_EVERY_CALL = CallFilter()


@dataclass(frozen=True)
class Selection:
    """The calls of run ``run`` that ``where`` and ``max_calls`` keep (see the module's doc)."""

    run: int
    where: CallFilter = _EVERY_CALL
    #: at most this many calls, the longest; ``None`` keeps every selected call
    max_calls: int | None = None

    @property
    def filtered(self) -> bool:
        """Whether anything is left out on purpose (else it is the whole run)."""
        return self.where != _EVERY_CALL or self.max_calls is not None

    @property
    def _anchors(self) -> CallFilter | None:
        anchoring = CallFilter(
            function=self.where.function, module=self.where.module, test_roots=self.where.test_roots
        )
        return None if anchoring == _EVERY_CALL else anchoring

    def selected(self) -> tuple[str, dict[str, object]]:
        """SQL of the selected call rows (every column of ``call``) before ``max_calls``,
        and its parameters."""
        pruning = replace(self.where, function=None, module=None, test_roots=())
        pruned, params = where_clause(pruning, self.run)
        anchors = self._anchors
        if anchors is None:
            return f"SELECT c.* FROM call c WHERE {pruned}", params
        if anchors.function is None and anchors.module is None:
            params["roots"] = list(anchors.test_roots)
            anchored = """SELECT thread, id, end_id FROM call
                          WHERE run = $run AND id IN (SELECT unnest($roots::BIGINT[]))"""
        else:
            condition, more = where_clause(anchors, self.run)
            params.update(more)
            anchored = f"SELECT c.thread, c.id, c.end_id FROM {_CALL_JOIN} WHERE {condition}"
        sql = f"""
            WITH anchor AS (
                SELECT thread, id, coalesce(end_id, {_LARGEST}) AS end_id FROM ({anchored})
            ),
            flagged AS (
                SELECT thread, id, end_id,
                       CASE WHEN id <= max(end_id) OVER (PARTITION BY thread ORDER BY id
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                            THEN 0 ELSE 1 END AS begins
                FROM anchor
            ),
            island AS (
                SELECT thread, id, end_id,
                       sum(begins) OVER (PARTITION BY thread ORDER BY id) AS number
                FROM flagged
            ),
            merged AS (
                SELECT thread, min(id) AS id, max(end_id) AS end_id
                FROM island GROUP BY thread, number
            )
            SELECT c.* FROM (SELECT * FROM call WHERE run = $run) c
            ASOF JOIN merged o ON c.thread = o.thread AND c.id >= o.id
            WHERE c.id <= o.end_id AND {pruned}"""
        return sql, params

    def count(self, con: duckdb.DuckDBPyConnection) -> int:
        """How many calls the filter selects, before ``max_calls``."""
        sql, params = self.selected()
        row = con.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()
        return int(row[0]) if row else 0

    def rows(self, columns: str) -> tuple[str, dict[str, object]]:
        """SQL of ``columns`` (over ``c``) of the kept calls, thread by thread in call
        order, and its parameters."""
        sql, params = self.selected()
        if self.max_calls is not None:
            params["max_calls"] = self.max_calls
            longest = f"CASE WHEN duration_ns < 0 THEN {_LARGEST} ELSE duration_ns END"
            sql = f"SELECT * FROM ({sql}) ORDER BY {longest} DESC, id LIMIT $max_calls"
        return f"SELECT {columns} FROM ({sql}) c ORDER BY c.thread, c.id", params

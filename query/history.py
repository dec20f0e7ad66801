"""The history of objects' attributes: every recorded ``self.x = …``, in order.

Writes to attributes of ``self`` are recorded for functions at ``args`` or
``full`` level (``value`` rows of role ``attribute``).  The object written to
is the call's ``self``, its first argument, whose summary keeps the object's
``id()`` (and its type), so one object's history is the writes of calls whose
first argument has that id.  Writes on one thread are in the order they
happened (the order their records were stored); writes on different threads
are in the order the writer stored them, which follows time batch by batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scope.query.results.history import AttributeWrite

if TYPE_CHECKING:  # loaded only by the queries that open the file themselves
    import duckdb


def attribute_writes(
    con: duckdb.DuckDBPyConnection,
    run: int,
    object_id: int | None = None,
    attribute: str | None = None,
    owner_type: str | None = None,
    limit: int = 1000,
) -> list[AttributeWrite]:
    """Recorded attribute writes of a run, oldest first, at most ``limit``.

    ``object_id`` keeps one object's (its ``id()``), ``attribute`` one
    attribute's, ``owner_type`` those to objects of a type (by name).
    """
    rows = con.execute(
        """SELECT v.call, c.thread, c.start_ns, coalesce(f.module, '?'),
                  coalesce(f.qualname, printf('<function %d>', v.function)),
                  s.object_id, s.type, coalesce(v.name, '#' || v.position), v.type, v.value
           FROM value v
           JOIN call c ON c.run = v.run AND c.id = v.call
           LEFT JOIN function f ON f.run = v.run AND f.id = v.function
           LEFT JOIN value s ON s.run = v.run AND s.call = v.call
                            AND s.role = 'argument' AND s.position = 0
           WHERE v.run = $run AND v.role = 'attribute'
             AND ($object::BIGINT IS NULL OR s.object_id = $object)
             AND ($attribute::VARCHAR IS NULL OR v.name = $attribute)
             AND ($owner::VARCHAR IS NULL OR s.type = $owner)
           ORDER BY v.rowid
           LIMIT $limit""",
        {
            "run": run,
            "object": object_id,
            "attribute": attribute,
            "owner": owner_type,
            "limit": limit,
        },
    ).fetchall()
    return [AttributeWrite(*row) for row in rows]

"""Parquet: one file per table, the run's rows, for any engine that reads Parquet.

The folder holds ``<table>.parquet`` for every table of the schema that has
rows of the run (``call``, ``function``, ``value``, ...), with the schema's own
columns and types, and ``README.txt`` describing them (from
``scope.storage.schema``).  DuckDB's ``COPY`` writes each file; the folder can
be read back as ``read_parquet('folder/call.parquet')`` by DuckDB, or by
pandas, Polars, Spark or Arrow.
"""

from __future__ import annotations

import os

import duckdb
from scope.query.export import Progress
from scope.query.export.selection import Selection
from scope.storage.schema import TABLES


def _quoted(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def write(
    con: duckdb.DuckDBPyConnection, selection: Selection, path: str, progress: Progress
) -> int:
    """Write the run's rows under the folder ``path``; returns how many rows in all.
    Whole tables only: ``selection`` must leave nothing out (``export`` checks)."""
    assert not selection.filtered
    run = selection.run
    os.makedirs(path, exist_ok=True)
    tables = [t for t in TABLES if any(c.name == "run" for c in t.columns) or t.name == "run"]
    counts: dict[str, int] = {}
    for table in tables:
        key = "id" if table.name == "run" else "run"
        row = con.execute(f"SELECT count(*) FROM {table.name} WHERE {key} = ?", [run]).fetchone()
        counts[table.name] = int(row[0]) if row else 0
    total = sum(counts.values())
    done = 0
    described = []
    for table in tables:
        key = "id" if table.name == "run" else "run"
        # Absolute: a recording service that answers the query writes it, from its own cwd.
        target = os.path.abspath(os.path.join(path, f"{table.name}.parquet"))
        con.execute(
            f"COPY (SELECT * FROM {table.name} WHERE {key} = {int(run)}) "
            f"TO {_quoted(target)} (FORMAT parquet)"
        )
        done += counts[table.name]
        progress(done, total)
        columns = "\n".join(f"  {c.name} {c.type}: {c.doc}" for c in table.columns)
        described.append(
            f"{table.name}.parquet ({counts[table.name]:,} rows): {table.doc}\n{columns}"
        )
    with open(os.path.join(path, "README.txt"), "w", encoding="utf-8") as readme:
        readme.write(f"scope run {run}, one Parquet file per table.\n\n")
        readme.write("\n\n".join(described) + "\n")
    return total

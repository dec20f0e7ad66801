"""DuckDB as scope opens it: the engine's own module where it is one of its own.

From DuckDB 2 the engine is the extension module ``_duckdb``, and the
``duckdb`` package builds its Python relation and expression API on it, which
takes a query's process longer to import than the engine does (about 100 ms of
``scope top``'s start, ``benchmarks/query_startup.py``).  scope uses only what
the engine itself has: ``connect``, connections' ``execute`` and ``fetch*``,
and its errors, the very objects the package re-exports.  So it imports
``_duckdb`` where there is one, and ``duckdb`` where the engine lives inside
the package (DuckDB 1).  Code that imports ``duckdb`` itself gets the same
classes: a connection opened here is a ``duckdb.DuckDBPyConnection``.  Code
that looks for DuckDB's errors without loading it looks in ``sys.modules`` under
both names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
else:
    try:
        import _duckdb as duckdb
    except ImportError:  # DuckDB 1: the engine is duckdb.duckdb, loaded by the package
        import duckdb

#: every DuckDB scope starts loads no extension by itself, nor downloads one: a
#: SQLite file given as ``--db`` would otherwise fetch ``sqlite_scanner``, and a
#: query could ``INSTALL`` anything.  Scope needs none (Parquet is built in).
NO_EXTENSIONS: dict[str, str | bool | int | float | list[str]] = {
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
}

__all__ = ["NO_EXTENSIONS", "duckdb"]

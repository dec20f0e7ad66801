"""Exports: a run's calls in the formats of the viewers and engines people already use.

* ``chrome``: Chrome's Trace Event JSON, which Perfetto's UI and chrome://tracing open;
* ``speedscope``: speedscope's evented format (speedscope.app, or its CLI);
* ``parquet``: one Parquet file per table, for DuckDB, pandas, Spark or any engine;
* ``otlp``: OpenTelemetry's OTLP/JSON spans, for a collector's file receiver or its
  HTTP endpoint.

Each exporter streams the calls (``scope.query.export.stream``) rather than
holding a run in memory, and reports its progress in rows to a callback.  The
trace formats write a ``Selection`` of the calls (``scope.query.export.selection``:
``scope calls``'s filters and a cap); Parquet copies whole tables, so it takes none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from scope.errors import ExportError

if TYPE_CHECKING:
    from scope.query.export.selection import Selection

#: called with (rows done, rows in all) as an export goes
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Exported:
    """What an export wrote."""

    format: str
    path: str
    run: int
    #: calls written (Parquet: rows of every table)
    rows: int
    #: calls the filters selected that ``max_calls`` left out
    left_out: int = 0


#: format name -> (default file suffix, one-line description)
FORMATS: dict[str, tuple[str, str]] = {
    "chrome": (".trace.json", "Chrome Trace Event JSON (Perfetto UI, chrome://tracing)"),
    "speedscope": (".speedscope.json", "speedscope's evented format"),
    "parquet": ("-parquet", "a folder of Parquet files, one per table"),
    "otlp": (".otlp.json", "OpenTelemetry OTLP/JSON spans"),
}
#: names the design and other tools use for the same formats
ALIASES = {"perfetto": "chrome", "trace": "chrome", "opentelemetry": "otlp"}


def default_path(format: str, run: int) -> str:
    """Where an export goes when no output is named: ``scope-run<N><suffix>``."""
    return f"scope-run{run}{FORMATS[format][0]}"


def export(
    con: duckdb.DuckDBPyConnection,
    format: str,
    selection: Selection,
    path: str,
    progress: Progress | None = None,
) -> Exported:
    """Write the calls ``selection`` keeps, of the recording open on ``con``, to ``path``
    in ``format``.  Filters that select no call, or filters given to Parquet, are an
    ``ExportError`` raised before anything is written."""
    from scope.query.export import chrome, otlp, parquet, speedscope

    writers = {
        "chrome": chrome.write,
        "speedscope": speedscope.write,
        "parquet": parquet.write,
        "otlp": otlp.write,
    }
    run = selection.run
    report = progress or (lambda done, total: None)
    if not selection.filtered:
        return Exported(format, path, run, writers[format](con, selection, path, report))
    if format == "parquet":
        raise ExportError(
            "parquet copies whole tables and takes no filters or --max-calls "
            "(read the files with SQL and filter there, or choose a trace format)"
        )
    matched = selection.count(con)
    if matched == 0:
        raise ExportError(f"no call of run {run} matches the filters: nothing written")
    kept = min(matched, selection.max_calls or matched)
    rows = writers[format](con, selection, path, lambda done, _: report(done, kept))
    return Exported(format, path, run, rows, left_out=matched - kept)

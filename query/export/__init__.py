"""Exports: a run's calls in the formats of the viewers and engines people already use.

* ``chrome``: Chrome's Trace Event JSON, which Perfetto's UI and chrome://tracing open;
* ``speedscope``: speedscope's evented format (speedscope.app, or its CLI);
* ``parquet``: one Parquet file per table, for DuckDB, pandas, Spark or any engine;
* ``otlp``: OpenTelemetry's OTLP/JSON spans, for a collector's file receiver or its
  HTTP endpoint.

Each exporter streams the calls (``scope.query.export.stream``) rather than
holding a run in memory, and reports its progress in rows to a callback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb

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
    run: int,
    path: str,
    progress: Progress | None = None,
) -> Exported:
    """Write run ``run`` of the recording open on ``con`` to ``path`` in ``format``."""
    from scope.query.export import chrome, otlp, parquet, speedscope

    writers = {
        "chrome": chrome.write,
        "speedscope": speedscope.write,
        "parquet": parquet.write,
        "otlp": otlp.write,
    }
    rows = writers[format](con, run, path, progress or (lambda done, total: None))
    return Exported(format, path, run, rows)

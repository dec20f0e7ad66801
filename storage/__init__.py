"""The storage stage: drained batches persisted in DuckDB.

``schema`` is the single description of every table; ``database`` creates,
opens, validates and migrates recording files; ``calls`` reads call records as
columns (tests and tools; the writer gets its columns from ``native.Batch``);
``values`` renders value summaries; ``writer`` is the sink the pipeline's
writer thread feeds.
"""

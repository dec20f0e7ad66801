"""The storage stage: correlating records into calls and persisting them in DuckDB.

``schema`` is the single description of every table; ``database`` creates,
opens and validates recording files; ``correlate`` pairs entry and exit records
into calls; ``writer`` is the sink the pipeline's writer thread feeds.
"""

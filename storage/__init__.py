"""The storage stage: drained batches persisted in DuckDB.

``schema`` is the single description of every table; ``database`` creates,
opens, validates and migrates recording files; ``values`` renders value
summaries; ``writer`` stores batches (for the pipeline's writer thread, or the
recording service); ``service`` is the recording service; ``recovery`` stores
what killed programs left.
"""

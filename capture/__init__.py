"""The capture stage: what instrumented code calls, and the threads that drain it.

``runtime`` installs the entry points that rewritten modules call; ``pipeline``
starts, watches and stops the writer thread that moves records from the rings
to a storage sink.
"""

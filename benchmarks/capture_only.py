"""``scope run`` with storage taken out: what capture alone costs the program.

    python benchmarks/capture_only.py run [scope run's options] PROGRAM [ARGS]

Exactly ``python -m scope run`` storing from inside the program (``service =
false``), except that the writer thread drains the rings and numbers the
calls (``Batch``, in C) but hands DuckDB nothing:
the recording keeps its run row and counts, and no call rows.  Side by side
with plain python and the full ``scope run`` (``benchmarks/workloads.py``),
it splits scope's overhead into what the instrumented program pays for its
reports and what the program waits while DuckDB stores them.
"""

from __future__ import annotations

import os
import sys

from scope.native.batch import Batch
from scope.storage.writer import RecordingWriter


def count_only(self: RecordingWriter, batch: Batch) -> None:
    """A ``write_batch`` that stores nothing: the counts stay right, the rows are dropped."""
    counts = batch.counts
    self.records_stored += counts.records
    self.calls_stored += counts.calls
    self.calls_summed += counts.summed


if __name__ == "__main__":
    RecordingWriter.write_batch = count_only  # type: ignore[method-assign]
    os.environ["SCOPE_SERVICE"] = "0"  # the writer this patches runs in the program
    from scope.launch import main

    main(sys.argv[1:])

"""``python -m scope.service RECORDING``: the recording service of one recording file.

Started by the first recorded process of a recording (``scope.capture.service_link``);
see ``scope.storage.service``.
"""

from __future__ import annotations

import os
import sys

# The service never multiplies matrices, but numpy's BLAS starts a thread per
# core as numpy loads, and OpenBLAS's threads spin while idle: 5% of a 2-core
# machine's samples, taken from the recorded program (perf, raytrace).  Read
# once, as numpy loads: so before the import below.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"
# Every file the service makes (the recording, its write-ahead log and spill
# files) holds the program's arguments and values: this user's alone.
os.umask(0o077)

from scope.storage.service import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

"""The benchmark scripts run and print their tables (their numbers are read by people).

Speed is never asserted here: these machines are shared and noisy.  This only
keeps the scripts working, with a handful of calls.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_call_overhead_prints_every_row():
    script = str(ROOT / "benchmarks" / "call_overhead.py")
    result = subprocess.run(
        [sys.executable, script, "--calls", "2000", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    for row in (
        "plain call",
        "scope, calls level",
        "scope entry points bound by cffi",
        "scope, args level, 2 args",
        "cProfile",
        "VizTracer",
        "VizTracer, log_func_args",
    ):
        assert row in result.stdout
    assert "while another thread keeps the GIL busy" in result.stdout

"""How long ``scope export`` takes, and how big its file is, whole and filtered.

    python benchmarks/export_speed.py [--calls N] [--format F] [--max-calls M]
                                      [--repeat R] [--keep PATH]

Builds the synthetic recording of ``query_speed.py`` (batches of 100,000
calls under one root, and a recursion 1,000 deep; 1.2 million calls by
default, the size issue 20 measured), then runs ``scope export`` as a user
would, in a fresh process, for:

* the whole run;
* ``--max-calls M`` (the longest M calls, 100,000 by default);
* ``--function leaf_c`` (one function's calls, with what they called);
* ``--function item --max-calls 1000`` (subtrees, then a cap).

Prints a table of the best wall time of R runs, the calls written and the
file's size.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from query_speed import BATCH, build


def export(db: str, out: str, fmt: str, options: list[str]) -> tuple[float, int, int]:
    """Run one export; returns its wall time (s), the calls written and the file's bytes."""
    command = [sys.executable, "-m", "scope", "export", "--db", db, "-f", fmt, "-o", out]
    began = time.perf_counter()
    result = subprocess.run([*command, *options], capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command + options)} failed:\n{result.stderr}")
    written = re.search(r": ([\d,]+) calls written", result.stdout)
    assert written is not None, result.stdout
    return seconds, int(written.group(1).replace(",", "")), os.path.getsize(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_200_000, help="about this many calls")
    parser.add_argument("--format", default="chrome", choices=["chrome", "speedscope", "otlp"])
    parser.add_argument("--max-calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", metavar="PATH", help="build (or reuse) the recording here")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp()
    path = args.keep or os.path.join(folder, "synthetic.duckdb")
    if not os.path.exists(path):
        began = time.perf_counter()
        calls = build(path, max(args.calls // BATCH, 1))
        print(f"built {calls:,} calls in {time.perf_counter() - began:.1f} s: {path}")
    modes = [
        ("whole run", []),
        (f"--max-calls {args.max_calls}", ["--max-calls", str(args.max_calls)]),
        ("--function leaf_c", ["--function", "leaf_c"]),
        ("--function item --max-calls 1000", ["--function", "item", "--max-calls", "1000"]),
    ]
    out = os.path.join(folder, "export.out")
    print(f"scope export --format {args.format}")
    print(f"{'export':<36}{'best s':>10}{'calls':>12}{'MB':>10}")
    for name, options in modes:
        runs = [export(path, out, args.format, options) for _ in range(args.repeat)]
        seconds = min(r[0] for r in runs)
        _, written, size = runs[-1]
        print(f"{name:<36}{seconds:>10.2f}{written:>12,}{size / 1e6:>10.1f}")
        Path(out).unlink()
    if not args.keep:
        Path(path).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

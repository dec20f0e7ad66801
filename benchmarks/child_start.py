"""What recording costs a program that starts Python child processes, side by side.

    python benchmarks/child_start.py [--children 10]

Runs a program that starts ``--children`` interpreters (``python -c pass``), under
plain python and under ``python -m scope run``, and prints the time per child:
a recorded child imports scope (and, storing from inside the program, numpy and
DuckDB) before its program starts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PROGRAM = """
import subprocess, sys, time
start = time.perf_counter()
for _ in range({children}):
    subprocess.run([sys.executable, "-c", "pass"], check=True)
print((time.perf_counter() - start) / {children})
"""


def per_child(command: list[str], folder: Path, service: str = "0") -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOPE_")}
    env["SCOPE_SERVICE"] = service
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1]) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=10, help="interpreters to start")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scope-bench-") as name:
        folder = Path(name)
        (folder / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
        (folder / "spawn.py").write_text(PROGRAM.format(children=args.children))
        plain = per_child([sys.executable, "spawn.py"], folder)
        scope = [sys.executable, "-m", "scope", "run", "spawn.py"]
        recorded = per_child(scope, folder)
        serviced = per_child(scope, folder, service="1")
    print(f"{'start a python child (python -c pass)':<48} {'ms each':>8}")
    print(f"{'plain python':<48} {plain:>8.1f}")
    print(f"{'under scope run (the child recorded too)':<48} {recorded:>8.1f}")
    print(f"{'the same, with the recording service':<48} {serviced:>8.1f}")


if __name__ == "__main__":
    main()

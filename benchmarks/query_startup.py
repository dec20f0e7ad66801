"""How long a query command takes to start and answer, beside what Python and DuckDB cost.

    python benchmarks/query_startup.py [--repeat 15]

Records the README's example (``examples/calc.py``) in a temporary project,
then runs each command ``--repeat`` times as a fresh process, the commands
taking turns so that a busy moment of a shared machine spreads over all of
them, and prints the median and the fastest wall time of each.  The rows to
compare: ``scope --help`` against ``python -c pass`` (targets: 100 ms), and
``scope top`` against ``import duckdb`` and the engine alone (target: 150 ms; a
query cannot start faster than Python, DuckDB's engine and opening the file),
and against itself with the recording opened in turn rather than ahead, on a
thread while the command loads (``scope.storage.ahead``).

Python writes bytecode caches here, as an installed scope has them: without
them each start would compile scope's modules again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "calc.py"

#: (label, command): what each row runs, in the project folder
PYTHON = sys.executable
DB = ".scope/scope.duckdb"
COMMANDS = [
    ("python -c pass", [PYTHON, "-c", "pass"]),
    ("python -c 'import _duckdb' (the engine)", [PYTHON, "-c", "import _duckdb"]),
    ("python -c 'import duckdb'", [PYTHON, "-c", "import duckdb"]),
    (
        "import _duckdb, open the recording, one query",
        [
            PYTHON,
            "-c",
            f"import _duckdb; _duckdb.connect('{DB}', read_only=True)"
            ".execute('SELECT count(*) FROM call').fetchall()",
        ],
    ),
    ("scope --help", [PYTHON, "-m", "scope", "--help"]),
    ("scope top", [PYTHON, "-m", "scope", "top"]),
    (
        "scope top, the file not opened ahead",
        [
            PYTHON,
            "-c",
            "from scope import launch; launch.open_ahead = lambda words: None; "
            "launch.main(['top'])",
        ],
    ),
    ("scope top --json", [PYTHON, "-m", "scope", "top", "--json"]),
    ("scope runs", [PYTHON, "-m", "scope", "runs"]),
]


def environment() -> dict[str, str]:
    """The environment the commands run in: no scope settings, bytecode caches kept."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOPE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def has_engine_module() -> bool:
    """Whether this DuckDB has its engine as a module of its own (``_duckdb``, DuckDB 2)."""
    probe = subprocess.run([PYTHON, "-c", "import _duckdb"], capture_output=True)
    return probe.returncode == 0


def record(folder: Path, env: dict[str, str]) -> None:
    """Record the example in ``folder``, stored from inside the program: a recording
    service lingering after the run would answer the queries itself, and the rows
    are for a query's process on its own."""
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    (folder / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    subprocess.run(
        [PYTHON, "-m", "scope", "run", EXAMPLE.name],
        cwd=folder,
        env={**env, "SCOPE_SERVICE": "0"},
        capture_output=True,
        check=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs of each command")
    args = parser.parse_args(argv)
    env = environment()
    commands = COMMANDS if has_engine_module() else [c for c in COMMANDS if "_duckdb" not in c[0]]
    with tempfile.TemporaryDirectory(prefix="scope-bench-") as name:
        folder = Path(name)
        record(folder, env)
        for _, command in commands:  # once untimed: bytecode caches written, files cached
            subprocess.run(command, cwd=folder, env=env, capture_output=True, check=True)
        times: dict[str, list[float]] = {label: [] for label, _ in commands}
        for _ in range(args.repeat):
            for label, command in commands:
                start = time.perf_counter()
                subprocess.run(command, cwd=folder, env=env, capture_output=True, check=True)
                times[label].append((time.perf_counter() - start) * 1e3)
    width = max(len(label) for label in times)
    print(f"{'fresh process, wall time':<{width}} {'median ms':>10} {'fastest ms':>11}")
    for label, taken in times.items():
        print(f"{label:<{width}} {statistics.median(taken):>10.1f} {min(taken):>11.1f}")
    load = os.getloadavg()[0]
    print(f"({args.repeat} runs each; load average {load:.1f} on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How fast scope instruments code, cold and from its cache, side by side with plain Python.

    python benchmarks/instrument.py [--package asyncio] [--repeat 15]

Copies a pure-Python package of the standard library (``asyncio`` by default:
14,000 lines, relative imports only) into a scratch project under another name,
so that it is the user's code there, then prints two tables.

* **Cold instrumentation**, in this process: source lines per second of
  libcst's parse alone (the floor), of scope's analysis, and of the whole
  path a cache miss takes (analysis, plan, rewrite, compile), next to plain
  ``compile``.  Best of three passes over every file.
* **Warm import**: the import time of the copied package in a fresh process,
  ``--repeat`` times per variant, alternating; the median of each.  Three
  variants: plain Python (scope not even imported; its ``.pyc`` cached); the
  same with scope recording but its hook taken off ``sys.meta_path`` for the
  import (so the process holds exactly what it holds with the hook); and
  scope's hook on (its rewritten code cached).  The target ratio compares the
  last two: it is what the hook and the cached instrumented code cost, with
  scope's own start-up (numpy, DuckDB: measured by ``scope run``'s start-up)
  the same on both sides.  Every process imports the real package first, so
  that the standard-library modules it pulls in are loaded before the clock
  starts, and collects garbage just before it, so that no variant inherits
  another's half-full young generation: a collection more or less (the
  instrumented code allocates one constants tuple more per function) would
  otherwise move the figures by a tenth.
* **A recorded run with PYTHONDONTWRITEBYTECODE=1**, as container images set
  it: ``scope run`` of a program whose ``load()`` imports the copy, with
  scope's code cache emptied before each cold run, next to plain Python.
  scope keeps its cache in its own folder, so the warm runs read it all the
  same.  ``load()``'s active time (its time running, from the recording)
  leaves instrumenting out: cold and warm should be close, while its wall time
  carries the rewrite.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PROBE = """
import gc, importlib, sys, time
package, copy, mode = sys.argv[1:4]
importlib.import_module(package)
if mode != "plain":
    import scope
    scope.install(db=sys.argv[4])
    hook = next(f for f in sys.meta_path if type(f).__name__ == "ScopeFinder")
    if mode == "hook off":
        sys.meta_path.remove(hook)
gc.collect()
start = time.perf_counter()
importlib.import_module(copy)
elapsed = time.perf_counter() - start
from scope.instrument.hook import is_instrumented
instrumented = is_instrumented(sys.modules[copy].__loader__)
assert instrumented == (mode == "scope"), mode
if mode != "plain":
    scope.uninstall()
print(elapsed)
"""

#: (variant, what the table calls it)
VARIANTS = (
    ("plain", "plain python, .pyc cached"),
    ("hook off", "scope recording, hook off, .pyc cached"),
    ("scope", "scope hook, rewritten code cached"),
)


def copy_package(package: str, scratch: Path) -> tuple[str, list[Path]]:
    """Copy ``package`` into ``scratch`` as ``<package>_copy``; its name and source files."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not a package")
    source = Path(next(iter(spec.submodule_search_locations)))
    name = f"{package}_copy"
    shutil.copytree(source, scratch / name, ignore=shutil.ignore_patterns("__pycache__"))
    (scratch / "pyproject.toml").write_text("[project]\nname = 'benchmark'\n")
    return name, sorted((scratch / name).rglob("*.py"))


def best_of(passes: int, action: Callable[[], object]) -> float:
    timings = []
    for _ in range(passes):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return min(timings)


def cold_rows(files: list[Path], package: str) -> list[tuple[str, float]]:
    """(what, lines per second) for each stage of a cache miss."""
    import libcst
    from scope.instrument.analyze import analyze_source
    from scope.instrument.plan import PlanSettings, make_plan
    from scope.instrument.rewrite import instrument_source

    sources = [(f.read_bytes(), str(f)) for f in files]
    lines = sum(s.count(b"\n") for s, _ in sources)
    settings = PlanSettings()

    def whole() -> None:
        for source, path in sources:
            plan = make_plan(package, path, analyze_source(source), settings)
            instrument_source(source, path, plan)

    stages = {
        "plain compile (reference)": lambda: [compile(s, p, "exec") for s, p in sources],
        "libcst parse alone (floor)": lambda: [libcst.parse_module(s) for s, _ in sources],
        "scope analysis (parse + visit)": lambda: [analyze_source(s) for s, _ in sources],
        "scope cold path (analyse, plan, rewrite, compile)": whole,
    }
    return [(what, lines / best_of(3, action)) for what, action in stages.items()]


def import_times(package: str, copy: str, scratch: Path, repeat: int) -> dict[str, list[float]]:
    """Import times of the copy in each variant, alternating."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOPE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # both variants read their caches
    env["PYTHONPATH"] = str(scratch)
    probe = scratch / "probe.py"
    probe.write_text(PROBE)
    db = str(scratch / "bench.duckdb")

    def one(mode: str) -> float:
        result = subprocess.run(
            [sys.executable, str(probe), package, copy, mode, db],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"the {mode} import failed:\n{result.stderr}")
        return float(result.stdout.split()[-1])

    for mode, _ in VARIANTS:  # fill the caches
        one(mode)
    times: dict[str, list[float]] = {mode: [] for mode, _ in VARIANTS}
    for _ in range(repeat):
        for mode, _ in VARIANTS:
            times[mode].append(one(mode))
    return times


RECORDED_APP = """
import importlib, sys

def load():
    importlib.import_module(sys.argv[1])

load()
"""

LOAD_TIMES = (
    "SELECT c.duration_ns - c.suspended_ns, c.duration_ns FROM call c "
    "JOIN function f ON f.run = c.run AND f.id = c.function "
    "WHERE f.qualname = 'load' ORDER BY c.run DESC LIMIT 1"
)


def recorded_runs(copy: str, scratch: Path, repeat: int) -> list[tuple[str, float]]:
    """(row, median ms) of plain and recorded runs importing the copy, cache cold and warm."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOPE_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = str(scratch)
    app = scratch / "recorded_app.py"
    app.write_text(RECORDED_APP)
    db = str(scratch / "runs.duckdb")
    scope = [sys.executable, "-m", "scope"]

    def timed(args: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(args, cwd=scratch, env=env, check=True, capture_output=True)
        return time.perf_counter() - start

    def load_times() -> tuple[float, float]:
        found = subprocess.run(
            [*scope, "sql", "--db", db, "--json", LOAD_TIMES],
            cwd=scratch,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        ((active, wall),) = [tuple(row.values()) for row in json.loads(found.stdout)]
        return active / 1e9, wall / 1e9

    rows: dict[str, list[float]] = {}
    for _ in range(repeat):
        rows.setdefault("plain python", []).append(timed([sys.executable, str(app), copy]))
        for cache in ("cold", "warm"):
            if cache == "cold":
                shutil.rmtree(scratch / ".scope" / "cache", ignore_errors=True)
            took = timed([*scope, "run", "--db", db, str(app), copy])
            rows.setdefault(f"scope run, {cache} cache", []).append(took)
            active, wall = load_times()
            rows.setdefault(f"load() active time, {cache} cache", []).append(active)
            rows.setdefault(f"load() wall time, {cache} cache", []).append(wall)
    return [(row, statistics.median(runs) * 1e3) for row, runs in rows.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", default="asyncio", help="standard-library package to copy")
    parser.add_argument("--repeat", type=int, default=15, help="fresh processes per variant")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scope-bench-") as folder:
        scratch = Path(folder)
        copy, files = copy_package(args.package, scratch)
        lines = sum(f.read_bytes().count(b"\n") for f in files)
        print(f"{copy}: {len(files)} files, {lines:,} lines\n")
        print(f"{'cold instrumentation':<52} {'lines/s':>10}")
        for what, rate in cold_rows(files, copy):
            print(f"{what:<52} {rate:>10,.0f}")
        times = import_times(args.package, copy, scratch, args.repeat)
        ms = {mode: statistics.median(runs) * 1e3 for mode, runs in times.items()}
        print(f"\n{'warm import of ' + copy + f' (median of {args.repeat})':<52} {'ms':>10}")
        for mode, label in VARIANTS:
            print(f"{label:<52} {ms[mode]:>10.2f}")
        ratios = (
            ("ratio, hook on / hook off (target <= 1.2)", ms["scope"] / ms["hook off"]),
            ("ratio, hook on / plain python", ms["scope"] / ms["plain"]),
        )
        for label, ratio in ratios:
            print(f"{label:<52} {ratio:>10.2f}")
        title = f"PYTHONDONTWRITEBYTECODE=1 (median of {args.repeat})"
        print(f"\n{title:<52} {'ms':>10}")
        for label, ms_taken in recorded_runs(copy, scratch, args.repeat):
            print(f"{label:<52} {ms_taken:>10.2f}")


if __name__ == "__main__":
    main()

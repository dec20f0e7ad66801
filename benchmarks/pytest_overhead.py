"""What ``pytest --scope`` costs on real test suites: wall time with and without, side by side.

Runs each corpus project's own suite (``../shared/corpus``, projects already set
up by its ``setup.sh`` or by ``pytest -m corpus``) with plain pytest, with
``--scope``, and with ``--scope --scope-keep=failed``, alternating the variants
``--repeat`` times, and prints the median whole-process wall time of each, the
ratios to plain, the calls recorded and the recording's size.  ``--xdist N``
runs every variant with ``-n N``.

    python benchmarks/pytest_overhead.py --projects toolz,sqlparse --repeat 3

Nothing is asserted: the table is read by people (tests/test_benchmarks.py
keeps the script working).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus_runs import PROJECTS, corpus_env, corpus_scripts, overlay, work_dir

VARIANTS = {
    "plain": "",
    "--scope": "--scope --scope-db={out}/scope.duckdb",
    "--scope-keep=failed": "--scope --scope-keep=failed --scope-db={out}/scope.duckdb",
}


def run_once(scripts: Path, project: str, label: str, args: str, extra: list[str]) -> float:
    """Run the suite once; its wall time in seconds (the run script's own start included)."""
    command = ["bash", str(scripts / "run.sh"), "--label", f"bench-{label}"]
    if args:
        command += ["--args", args]
    command += [project, "--", *extra] if extra else [project]
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, text=True, env=corpus_env(""), timeout=3600)
    return time.perf_counter() - start


def recorded(project: str, label: str) -> tuple[int, int]:
    """Calls in the recording of the last run of ``label``, and the file's size in bytes."""
    path = work_dir() / project / "results" / f"bench-{label}" / "scope.duckdb"
    if not path.exists():
        return 0, 0
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute("SELECT calls_stored + calls_summed FROM run ORDER BY id DESC").fetchone()
    finally:
        con.close()
    return (int(row[0] or 0) if row else 0), path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", default=",".join(PROJECTS), help="comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--xdist", type=int, default=0, metavar="N", help="run with -n N")
    options = parser.parse_args()
    shared = corpus_scripts()
    if shared is None:
        sys.exit("pytest_overhead: the corpus scripts (../shared/corpus) are not on this machine")
    projects = [p for p in options.projects.split(",") if p]
    missing = [p for p in projects if not (work_dir() / p / "setup.env").exists()]
    if missing:
        sys.exit(f"pytest_overhead: not set up (run pytest -m corpus first): {', '.join(missing)}")
    extra = ["-n", str(options.xdist)] if options.xdist else []
    with tempfile.TemporaryDirectory() as folder:
        scripts = overlay(shared, Path(folder) / "corpus")
        rows = []
        for project in projects:
            times: dict[str, list[float]] = {name: [] for name in VARIANTS}
            for _ in range(options.repeat):
                for name, args in VARIANTS.items():
                    label = name.strip("-").replace("=", "-")
                    times[name].append(run_once(scripts, project, label, args, extra))
            medians = {name: statistics.median(values) for name, values in times.items()}
            calls, size = recorded(project, "scope")
            _, kept_size = recorded(project, "scope-keep-failed")
            rows.append((project, medians, calls, size, kept_size))
    title = f"pytest wall time, median of {options.repeat}" + (
        f", -n {options.xdist}" if options.xdist else ""
    )
    print(title)
    header = (
        f"{'project':16} {'plain':>8} {'--scope':>8} {'ratio':>6} {'keep=failed':>12} "
        f"{'ratio':>6} {'calls':>12} {'file MB':>8} {'kept MB':>8}"
    )
    print(header)
    print("-" * len(header))
    ratios, kept_ratios = [], []
    for project, medians, calls, size, kept_size in rows:
        plain, full, kept = (medians[name] for name in VARIANTS)
        ratios.append(full / plain)
        kept_ratios.append(kept / plain)
        print(
            f"{project:16} {plain:8.2f} {full:8.2f} {full / plain:6.2f} {kept:12.2f} "
            f"{kept / plain:6.2f} {calls:12,} {size / 1e6:8.1f} {kept_size / 1e6:8.1f}"
        )
    if rows:
        print(
            f"{'geometric mean':16} {'':8} {'':8} {statistics.geometric_mean(ratios):6.2f} "
            f"{'':12} {statistics.geometric_mean(kept_ratios):6.2f}"
        )


if __name__ == "__main__":
    main()

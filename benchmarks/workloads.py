"""Whole-process overhead on pyperformance workloads, side by side with the peers.

    python benchmarks/workloads.py [--workloads richards,go] [--variants plain,scope]
                                   [--loops N] [--repeat R]

Runs each workload of ``../shared/bench/pyperf_workloads.py`` (pyperformance's
CPU benchmarks as plain user modules) in its own process, R times round-robin,
and prints the best wall time of each variant and its ratio to plain python:

* plain python;
* ``benchmarks/capture_only.py``: ``scope run`` whose writer stores no call
  (what the instrumented program pays for its reports alone);
* ``python -m scope run`` with the default budget (100,000 calls stored per
  function, the rest summed);
* the same with ``--max-calls-per-function 0``: every call stored;
* both again with the recording service storing (``SCOPE_SERVICE=1``): the
  program only fills its rings, and its wall time includes waiting for the
  service to confirm the run is stored;
* VizTracer writing its JSON trace; cProfile writing its profile; pyinstrument
  (a sampling profiler, every millisecond by default) writing its session.

``--variants`` picks some of them, comma-separated, in the order given (plain
python is always run: the ratios are to it).  The last row is the geometric
mean.  A second table gives, for each every-call variant run, calls stored,
bytes of file per call, calls stored per second of wall time, and how long the
program waited for the writer (ring full, overflow = block).  ``--loops 5``
makes startup a smaller share of each run.  Bytecode caches are on for every
variant (``PYTHONDONTWRITEBYTECODE`` is dropped), so from the second round on
scope's rewritten code comes from its cache.  The
workloads are copied once with pyperformance (``pip install -e '.[bench]'``;
the script does it when they are missing).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = Path(os.environ.get("SCOPE_PYPERF_TOOL", ROOT.parent / "shared/bench/pyperf_workloads.py"))
DEFAULT_WORKLOADS = "richards,deltablue,raytrace,hexiom,go,chaos,float,generators"
VARIANTS = (
    "plain",
    "capture only",
    "scope",
    "scope, every call",
    "service",
    "service, every call",
    "VizTracer",
    "cProfile",
    "pyinstrument",
)
#: the variants that need a package of their own (the bench extra), by the module run
PEERS = {"VizTracer": "viztracer", "pyinstrument": "pyinstrument"}
#: the variants that store through the recording service (``SCOPE_SERVICE=1``)
SERVICE_VARIANTS = ("service", "service, every call")
CAPTURE_ONLY = Path(__file__).resolve().parent / "capture_only.py"


def workload_dir() -> Path:
    """Where the tool keeps the copied workloads (its own default)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import runpy; print(runpy.run_path({str(TOOL)!r})['default_dir']())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def command(variant: str, name: str, loops: int, scratch: Path) -> list[str]:
    """The command line of one run of one workload under one variant."""
    tool = [str(TOOL), "run", name, "--loops", str(loops), "--warmup", "0"]
    include = ["--include", f"{workload_dir()}/*"]
    db = ["--db", str(scratch / f"{name}.duckdb")]
    if variant == "plain":
        return [sys.executable, *tool]
    if variant == "capture only":
        return [sys.executable, str(CAPTURE_ONLY), "run", *db, *include, *tool]
    if variant in ("scope", "service"):
        return [sys.executable, "-m", "scope", "run", *db, *include, *tool]
    if variant in ("scope, every call", "service, every call"):
        every = ["--max-calls-per-function", "0"]
        return [sys.executable, "-m", "scope", "run", *db, *include, *every, *tool]
    if variant == "VizTracer":
        out = ["-o", str(scratch / f"{name}.json"), "--quiet"]
        return [sys.executable, "-m", "viztracer", *out, *tool]
    if variant == "pyinstrument":
        out = ["-r", "session", "-o", str(scratch / f"{name}.pyisession")]
        return [sys.executable, "-m", "pyinstrument", *out, *tool]
    return [sys.executable, "-m", "cProfile", "-o", str(scratch / f"{name}.prof"), *tool]


def run_once(variant: str, name: str, loops: int, scratch: Path) -> float:
    """Wall seconds of one whole process; raises if it failed."""
    for leftover in scratch.glob(f"{name}.*"):
        if not leftover.is_dir():  # a live folder is its recording service's, if one lingers
            leftover.unlink()
    # Bytecode caches are allowed, for every variant alike: after the first round a
    # workload's instrumented code comes from scope's cache, as when a developer re-runs.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["SCOPE_SERVICE"] = "1" if variant in SERVICE_VARIANTS else "0"
    began = time.perf_counter()
    result = subprocess.run(
        command(variant, name, loops, scratch), capture_output=True, text=True, env=env
    )
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"{variant} {name} failed:\n{result.stderr[-2000:]}")
    return elapsed


def storage_figures(name: str, scratch: Path) -> tuple[int, int, float]:
    """(calls stored, file bytes, seconds the program waited for the writer) of the
    last every-call recording of a workload."""
    import duckdb

    path = scratch / f"{name}.duckdb"
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute(
            """SELECT calls_stored, (SELECT sum(blocked_ns) FROM thread t WHERE t.run = r.id)
               FROM run r ORDER BY id DESC LIMIT 1"""
        ).fetchone()
    finally:
        con.close()
    wal = path.with_name(path.name + ".wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    calls, waited = (int(row[0]), int(row[1] or 0)) if row else (0, 0)
    return calls, size, waited / 1e9


def ensure_workloads() -> None:
    if not TOOL.exists():
        sys.exit(f"benchmarks/workloads.py: {TOOL} not found (set SCOPE_PYPERF_TOOL)")
    if not (workload_dir() / "richards").exists():
        subprocess.run([sys.executable, str(TOOL), "copy"], check=True)


def chosen_variants(spec: str) -> list[str]:
    """The variants ``--variants`` names, plain first; a peer that is not installed is
    left out with a note, an unknown name ends the script."""
    # "scope, every call" holds a comma of its own: only other commas separate names.
    names = [n.strip() for n in re.split(r",(?!\s*every call)", spec) if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(
            f"benchmarks/workloads.py: unknown variant {unknown[0]!r} (of: {', '.join(VARIANTS)})"
        )
    chosen = ["plain"] + [n for n in dict.fromkeys(names) if n != "plain"]
    for variant, module in PEERS.items():
        if variant in chosen and importlib.util.find_spec(module) is None:
            print(f"{variant} is not installed (pip install -e '.[bench]'): its column is left out")
            chosen.remove(variant)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=DEFAULT_WORKLOADS)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, of: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--loops", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    variants = chosen_variants(args.variants)
    ensure_workloads()
    names = [n for n in args.workloads.split(",") if n]
    best: dict[tuple[str, str], float] = {}
    storage: dict[tuple[str, str], tuple[int, int, float, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for _ in range(args.repeat):
            for name in names:
                for variant in variants:
                    elapsed = run_once(variant, name, args.loops, scratch)
                    key = (name, variant)
                    best[key] = min(best.get(key, math.inf), elapsed)
                    if variant.endswith("every call"):
                        calls, size, waited = storage_figures(name, scratch)
                        storage[(name, variant)] = (calls, size, elapsed, waited)
    print(f"Python {sys.version.split()[0]}; best wall time of {args.repeat}, seconds (x plain)")
    print(f"{'workload':<12}" + "".join(f"{v:>22}" for v in variants))
    ratios: dict[str, list[float]] = {v: [] for v in variants}
    for name in names:
        plain = best[(name, "plain")]
        cells = []
        for v in variants:
            ratio = best[(name, v)] / plain
            ratios[v].append(ratio)
            cells.append(f"{best[(name, v)]:>13.2f} ({ratio:>5.2f})")
        print(f"{name:<12}" + "".join(cells))
    geomean = {v: math.exp(sum(map(math.log, r)) / len(r)) for v, r in ratios.items()}
    print(f"{'geo. mean':<12}" + "".join(f"{'':>15}({geomean[v]:>5.2f})" for v in variants))
    for variant in (v for v in variants if v.endswith("every call")):
        print(f"\n{variant} stored (calls/s: over the whole process's wall time)")
        print(f"{'workload':<12}{'calls':>14}{'bytes/call':>12}{'calls/s':>14}{'waited s':>10}")
        for name in names:
            calls, size, elapsed, waited = storage[(name, variant)]
            per_call = size / calls if calls else float("nan")
            row = f"{name:<12}{calls:>14,}{per_call:>12.1f}{calls / elapsed:>14,.0f}"
            print(f"{row}{waited:>10.2f}")
    if args.json:
        data = {"best_s": {f"{n}|{v}": t for (n, v), t in best.items()}, "geomean": geomean}
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What recording costs a program that does nothing: start-up, memory, threads.

    python benchmarks/fixed_cost.py [--repeat 10]

Runs an empty program (it only reports its OS threads) R times round-robin under
plain python, ``scope run`` storing from inside the program, and ``scope run``
with the recording service (``SCOPE_SERVICE=1``), and prints the median wall
time to the shell prompt, the peak RSS of the recorded process (the service's
own memory is its own process's, shown apart) and the threads the program has.
The service rows are measured twice: with a service already running (a run
right after another into the same file, unchanged since) and with none (each run
starts one; the program's end waits for it to store the run).  Each variant
records into a file of its own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EMPTY = "import os\nprint(len(os.listdir('/proc/self/task')))\n"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without scope's settings, bytecode caches on (scope's rewritten
    code comes from its cache after the first run, as when a developer re-runs)."""
    drop = ("SCOPE_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def run_once(command: list[str], folder: Path, env: dict[str, str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in MB of the process, its OS threads) of one run."""
    began = time.perf_counter()
    process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command} failed with {process.returncode}")
    return elapsed, usage.ru_maxrss // 1024, int(out.split()[-1])


def wait_for_no_service(folder: Path, timeout: float = 30.0) -> None:
    """Wait until the recording's service has left (so the next run starts one)."""
    import fcntl

    lock = folder / ".scope" / "scope.duckdb.live" / "service.lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            descriptor = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:
            return  # removed by the service as it left
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError:
            time.sleep(0.05)
        finally:
            os.close(descriptor)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    scope = [sys.executable, "-m", "scope", "run", "empty.py"]
    variants = {
        "plain python": ([sys.executable, "empty.py"], clean_env(), None),
        "scope run, storing in the program": (scope, clean_env(SCOPE_SERVICE="0"), None),
        "scope run, service already running": (scope, clean_env(SCOPE_SERVICE="1"), "warm"),
        "scope run, service started by the run": (scope, clean_env(SCOPE_SERVICE="1"), "cold"),
    }
    results: dict[str, list[tuple[float, int, int]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="scope-bench-") as name:
        folders = {variant: Path(name) / str(i) for i, variant in enumerate(variants)}
        for folder in folders.values():
            folder.mkdir()
            (folder / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
            (folder / "empty.py").write_text(EMPTY)
        for variant, (command, env, _) in variants.items():  # warm the code cache and the OS
            run_once(command, folders[variant], env)
        for _ in range(args.repeat):
            for variant, (command, env, service) in variants.items():
                folder = folders[variant]
                if service == "cold":
                    wait_for_no_service(folder)
                elif service == "warm":  # the run before it, as when a developer re-runs
                    run_once(command, folder, env)
                results[variant].append(run_once(command, folder, env))
    plain = statistics.median(r[0] for r in results["plain python"])
    print(f"Python {sys.version.split()[0]}; medians of {args.repeat} runs of an empty program")
    print(f"{'variant':<40}{'wall ms':>9}{'+ms':>8}{'RSS MB':>8}{'threads':>9}")
    for variant, rows in results.items():
        wall = statistics.median(r[0] for r in rows)
        rss = statistics.median(r[1] for r in rows)
        threads = max(r[2] for r in rows)
        print(f"{variant:<40}{wall * 1e3:>9.1f}{(wall - plain) * 1e3:>8.1f}{rss:>8.0f}{threads:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

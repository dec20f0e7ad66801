"""How ``scope view`` fares on a real pytest session of about a million calls.

    python benchmarks/view_session.py [--keep PATH] [--repeat R] [--width PX] [--browser]
                                      [--project NAME] [--pytest-args ARGS]

Records sqlparse's own test suite (a regex lexer and recursive grouping:
540 tests, about 960,000 calls) with ``pytest --scope``: the project comes
from PyPI through the corpus scripts (``../shared/corpus``), set up once in
their cache under a lock (see ``corpus_runs.py``).  Then it measures what
``view_window.py`` measures on the synthetic 10-million-call run (the server's
answers for the first paint, zoom and pan steps; with ``--browser`` the page in
chromium: first paint, steps, memory), and selecting a test from the test list:
the server's list of tests and its answer for the longest test's window, and in
chromium the click on that test's row until its window is drawn.  Targets as for
10 million calls: first paint 1.5 s, a step 100 ms, memory 300 MB.

``--pytest-args`` selects part of a suite (more arguments to its pytest, split at
spaces: ``--ignore=tests/test_more.py``, ``-k recipes``), to record a session of
a given size; ``--keep`` a path per selection, as a kept recording is reused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scope.query.viewer.server import ViewServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.corpus_runs import (
    EXTRA_PIP,
    PROJECTS,
    corpus_env,
    corpus_scripts,
    overlay,
    project_lock,
    work_dir,
)
from benchmarks.view_window import (
    STEPS,
    Row,
    best,
    in_browser,
    measure,
    report,
    serving,
    window_route,
)

PROJECT = "sqlparse"
#: the label of the corpus run whose recording is copied out
LABEL = "view-session"


def record_session(path: str, project: str = PROJECT, pytest_args: str = "") -> int:
    """Record a corpus project's suite (sqlparse's) under ``pytest --scope`` into
    ``path``, with ``pytest_args`` added to its pytest's (split at spaces); its calls."""
    shared = corpus_scripts()
    if shared is None:
        raise SystemExit("view_session.py: the corpus scripts (../shared/corpus) are not here")
    with tempfile.TemporaryDirectory() as folder, project_lock(project):
        scripts = overlay(shared, Path(folder) / "corpus")
        for command in (
            ["bash", str(scripts / "setup.sh"), project],
            [
                "bash",
                str(scripts / "run.sh"),
                "--label",
                LABEL,
                "--args",
                " ".join(["--scope --scope-db={out}/scope.duckdb", pytest_args]).strip(),
                project,
            ],
        ):
            done = subprocess.run(
                command, capture_output=True, text=True, env=corpus_env(EXTRA_PIP), timeout=1800
            )
            if done.returncode != 0:
                raise SystemExit(
                    f"view_session.py: {' '.join(command[1:2])} failed:\n"
                    + done.stdout[-2000:]
                    + done.stderr[-2000:]
                )
        shutil.copyfile(work_dir() / project / "results" / LABEL / "scope.duckdb", path)
    return stored_calls(path)


def stored_calls(path: str) -> int:
    """The calls of the recording's latest run."""
    import duckdb

    con = duckdb.connect(path, read_only=True)
    try:
        row = con.execute("SELECT calls_stored FROM run ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def session(path: str | None, project: str = PROJECT, pytest_args: str = "") -> tuple[str, bool]:
    """The recording at ``path`` (recorded there if missing), or a temporary one;
    whether it is temporary."""
    target = path or os.path.join(tempfile.mkdtemp(), "session.duckdb")
    if not os.path.isdir(os.path.dirname(os.path.abspath(target))):
        raise SystemExit(f"view_session.py: no folder for {target}")
    if not os.path.exists(target):
        began = time.perf_counter()
        calls = record_session(target, project, pytest_args)
        print(f"recorded {calls:,} calls in {time.perf_counter() - began:.1f} s: {target}")
    return target, path is None


def longest_test(server: ViewServer, repeat: int, rows: list[Row]) -> tuple[int, dict[str, Any]]:
    """The row number and entry of the test whose phases span longest (the list's
    answer timed into ``rows``)."""
    tests = best(server, repeat, "tests: the list", "tests", rows)["tests"]

    def span(test: dict[str, Any]) -> int:
        timed = [p for p in test["phases"] if p["start"] is not None]
        if not timed:
            return -1
        return int(timed[-1]["start"] + max(timed[-1]["duration_ns"], 0) - timed[0]["start"])

    index = max(range(len(tests)), key=lambda i: span(tests[i]))
    return index, tests[index]


def test_window(test: dict[str, Any]) -> tuple[int, int]:
    """The window the page shows for a selected (passing) test: all its phases, 5 %
    either side."""
    timed = [p for p in test["phases"] if p["start"] is not None]
    start = int(timed[0]["start"])
    length = int(timed[-1]["start"] + max(timed[-1]["duration_ns"], 0)) - start
    return int(start - length * 0.05), int(start + length * 1.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--project", choices=PROJECTS, default=PROJECT, help="another suite")
    parser.add_argument("--keep", metavar="PATH", help="record (or reuse) the session here")
    parser.add_argument("--width", type=int, default=1500, help="the timeline's width in pixels")
    parser.add_argument("--browser", action="store_true", help="also measure the page in chromium")
    parser.add_argument(
        "--pytest-args",
        default="",
        metavar="ARGS",
        help="more arguments to the suite's pytest, split at spaces (a part of the suite)",
    )
    args = parser.parse_args(argv)
    if any(quote in args.pytest_args for quote in "'\""):
        parser.error("--pytest-args is split at spaces, without quoting: no quotes in it")
    path, temporary = session(args.keep, args.project, args.pytest_args)
    with serving(path) as server:
        rows = measure(server, args.repeat, args.width)
        index, test = longest_test(server, args.repeat, rows)
        since, until = test_window(test)
        name = "select the longest test: its window"
        best(server, args.repeat, name, window_route(max(since, 0), until, args.width), rows)
        browser_rows = []
        if args.browser:
            row = f"#panel-tests tbody tr:nth-child({index + 1})"
            listed = "document.querySelectorAll('#panel-tests tr[data-call]').length > 0"
            select = ("select the longest test (click, drawn)", listed, lambda p: p.click(row))
            steps = [*STEPS, select]
            browser_rows = in_browser(server, args.repeat, args.width, steps)
    print(f"longest test: {test['nodeid']}")
    report(rows, browser_rows)
    if temporary:
        Path(path).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

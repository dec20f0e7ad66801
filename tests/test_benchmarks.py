"""The benchmark scripts run and print their tables (their numbers are read by people).

Speed is never asserted here: these machines are shared and noisy.  This only
keeps the scripts working, with a handful of calls.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from .conftest import unavailable

#: the scripts' tables are checked once in CI's matrix: they measure, and a version's
#: behaviour is the other tests'
pytestmark = pytest.mark.matrix_once

ROOT = Path(__file__).resolve().parent.parent


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks/NAME`` with ``args``; it must succeed."""
    script = str(ROOT / "benchmarks" / name)
    result = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return result


def test_call_overhead_prints_every_row():
    result = run_script("call_overhead.py", "--calls", "2000", "--repeat", "1")
    for row in (
        "plain call",
        "scope, calls level",
        "scope body in try/finally (before)",
        "scope entry points bound by cffi",
        "scope, args level, 2 args",
        "cProfile",
        "VizTracer",
        "VizTracer, log_func_args",
    ):
        assert row in result.stdout
    assert "while another thread keeps the GIL busy" in result.stdout


def test_instrument_benchmark_prints_both_tables():
    result = run_script("instrument.py", "--package", "json", "--repeat", "1")
    for row in (
        "libcst parse alone",
        "scope cold path",
        "plain python",
        "hook off",
        "ratio",
        "scope run, cold cache",
        "load() active time, warm cache",
    ):
        assert row in result.stdout


def test_audit_benchmark_prints_its_table():
    result = run_script("audit_overhead.py")
    for row in ("sys._getframe()", "hooked ns", "added"):
        assert row in result.stdout


def test_child_start_benchmark_prints_its_table():
    result = run_script("child_start.py", "--children", "1")
    for row in ("plain python", "under scope run"):
        assert row in result.stdout


def test_query_speed_builds_its_recording_and_answers_every_question():
    result = run_script("query_speed.py", "--calls", "200000", "--repeat", "1")
    for row in (
        "calls of one function",
        "tree under a call with 100,000 descendants",
        "top 20 functions by self time",
        "path to a call 1001 deep",
        "scope --help",
    ):
        assert row in result.stdout
    # The synthetic shape: 2 batches of 11,111 items, one leaf_c each; root + 1,000 deep.
    assert "leaf_c matched 22,222 calls; the path holds 1,001 calls" in result.stdout


def test_export_speed_exports_whole_and_filtered():
    result = run_script("export_speed.py", "--calls", "100000", "--max-calls", "1000")
    lines = result.stdout.splitlines()
    for mode, calls in (
        ("whole run", "101,001"),
        ("--max-calls 1000", "1,000"),
        ("--function leaf_c", "11,111"),
        ("--function item --max-calls 1000", "1,000"),
    ):
        (row,) = [line for line in lines if line.startswith(mode + " ")]
        assert row.split()[-2] == calls, row


def test_capture_only_runs_the_program_and_stores_no_call(tmp_path):
    source = (ROOT / "benchmarks" / "workloads.py").read_text()
    assert '"capture only"' in source and "capture_only.py" in source
    (tmp_path / "app.py").write_text("def f(i):\n    return i\n\nprint(sum(map(f, range(10))))\n")
    db = str(tmp_path / "r.duckdb")
    capture = run_script("capture_only.py", "run", "--db", db, str(tmp_path / "app.py"))
    assert capture.stdout == "45\n"
    con = duckdb.connect(db, read_only=True)
    try:
        assert con.execute(
            "SELECT calls_stored, (SELECT count(*) FROM call) FROM run"
        ).fetchall() == [(10, 0)]
    finally:
        con.close()


def test_insert_rate_tries_every_variant():
    result = run_script("insert_rate.py", "--rows", "20000")
    assert "20,000 call rows (generated rows)" in result.stdout
    for row in ("as the writer does", "1,048,576 rows a batch", "no thread or suspension",
                "uncompressed", "2 threads"):  # fmt: skip
        assert row in result.stdout


def test_workloads_refuses_an_unknown_variant():
    script = str(ROOT / "benchmarks" / "workloads.py")
    result = subprocess.run(
        [sys.executable, script, "--variants", "scope,perf"], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "unknown variant 'perf'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.corpus  # pyperformance's workloads, fetched by ../shared/bench: not in CI
def test_workloads_runs_only_the_chosen_variants():
    from benchmarks import workloads

    copied = workloads.TOOL.exists() and (workloads.workload_dir() / "richards").exists()
    if not copied and not (workloads.TOOL.exists() and importlib.util.find_spec("pyperformance")):
        reason = f"the pyperformance workloads ({workloads.TOOL}) are not on this machine"
        unavailable(reason, required_by="SCOPE_TEST_REQUIRE_CORPUS")
    result = run_script(
        "workloads.py", "--workloads", "richards", "--variants", "scope,cProfile", "--repeat", "1"
    )
    header = next(line for line in result.stdout.splitlines() if line.startswith("workload"))
    assert header.split() == ["workload", "plain", "scope", "cProfile"]
    assert "geo. mean" in result.stdout


def test_view_window_benchmark_asks_the_server_every_question():
    result = run_script("view_window.py", "--calls", "200000", "--repeat", "1")
    for row in ("run: lanes and functions", "window: the whole run", "zoom: 0.0100%", "pan: 1%"):
        assert row in result.stdout


def test_query_startup_benchmark_prints_its_table():
    result = run_script("query_startup.py", "--repeat", "1")
    for row in ("python -c pass", "import duckdb", "scope --help", "scope top", "scope top --json"):
        assert row in result.stdout


def test_view_benchmarks_count_the_memory_of_the_page_s_own_process():
    # chromium's children rewrite their command line into one string: a sum that
    # matched the browser process alone missed the page's renderer (and its heap)
    import shutil

    from playwright.sync_api import sync_playwright

    from benchmarks.view_window import browser_memory

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        unavailable("no chromium (apt-get install chromium)", "SCOPE_TEST_REQUIRE_BROWSER")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto("about:blank")
            before = browser_memory()
            page.evaluate("window.kept = new Float64Array(40_000_000).fill(1.5); 0")  # 320 MB
            after = browser_memory()
        finally:
            browser.close()
    for was, now in zip(before, after, strict=True):
        assert now - was > 250 * 2**20


@pytest.mark.corpus  # records sqlparse's suite, fetched from PyPI by ../shared/corpus
def test_view_session_benchmark_records_a_real_suite_and_selects_a_test(tmp_path):
    from benchmarks.corpus_runs import corpus_scripts

    if corpus_scripts() is None:
        unavailable("the corpus scripts are not on this machine", "SCOPE_TEST_REQUIRE_CORPUS")
    result = run_script("view_session.py", "--repeat", "1", "--keep", str(tmp_path / "s.duckdb"))
    for row in ("window: the whole run", "tests: the list", "select the longest test"):
        assert row in result.stdout
    assert "longest test: tests/" in result.stdout

"""``pytest --scope``: every test's phases recorded and joined to their outcomes.

Each test here builds a small project with ``pytester`` (a package, a conftest
that imports it, and tests that pass, fail, error in setup and teardown, skip,
xfail, xpass and are parametrised) and runs pytest on it in a subprocess.  The
calls stored under each test phase are compared with what an independent
``sys.setprofile`` tracer (a plugin of its own, run on a plain session) saw
in the same phase.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from scope.query import CallFilter, Recording

PACKAGE = """
def add(a, b):
    return a + b


def div(a, b):
    return a / b


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def countdown(n):
    while n:
        yield n
        n -= 1


def broken():
    raise RuntimeError("cannot")


class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        return self.items.pop()
"""

CONFTEST = """
import pytest

import calc  # imported while pytest loads the initial conftests

calc.add(0, 0)  # made at import, outside every test


@pytest.fixture
def stack():
    s = calc.Stack()
    s.push(calc.fib(4))
    yield s
    s.pop()


@pytest.fixture
def broken_setup():
    calc.broken()


@pytest.fixture
def broken_teardown():
    yield
    calc.add(1, 1)
    calc.broken()


@pytest.fixture(scope="module")
def shared():
    return calc.fib(3)
"""

#: The suite the plugin records.  Its skip and xfail marks are not switches on
#: scope's own tests: they are the outcomes (skipped, xfailed, xpassed) the plugin
#: must tell apart and store, as EXPECTED_OUTCOMES lists them.
TESTS = """
import pytest

import calc


def test_passes():
    assert calc.add(2, 3) == 5


def test_fails():
    assert calc.div(1, 0)


def test_fails_in_test_code():
    assert calc.add(1, 1) == 3


def test_setup_error(broken_setup):
    calc.add(5, 5)


def test_teardown_error(broken_teardown):
    calc.add(2, 2)


def test_fixture(stack):
    assert stack.pop() == 3
    stack.push(1)


@pytest.mark.skip(reason="a marked skip: stored as skipped, with this reason")
def test_skipped():
    calc.add(0, 1)


def test_skips_inside():
    calc.add(1, 2)
    pytest.skip("skipped from inside: its calls until here are kept")


@pytest.mark.xfail(reason="an expected failure: stored as xfailed")
def test_xfails():
    calc.broken()


@pytest.mark.xfail(reason="expected to fail, yet passes: an xpass")
def test_xpasses():
    calc.add(1, 1)


@pytest.mark.parametrize("n", [0, 1, 5])
def test_param(n, shared):
    assert sum(calc.countdown(n)) == n * (n + 1) // 2
"""

#: A plugin that knows nothing of scope: during each phase it traces the package's
#: calls with sys.setprofile, as (node id, phase, calling function, function).
REFERENCE_PLUGIN = """
import json, os, sys

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calc")
seen = []


def tracing(item, when):
    stack, started = [], []

    def profile(frame, event, arg):
        code = frame.f_code
        if not code.co_filename.startswith(PACKAGE) or code.co_name.startswith("<"):
            return
        if event == "call":
            is_gen = bool(code.co_flags & 0x20)
            first = not is_gen or not any(f is frame for f in started)
            if first:
                seen.append((item.nodeid, when, stack[-1] if stack else None, code.co_qualname))
            if is_gen and first:
                started.append(frame)
            stack.append(code.co_qualname)
        elif event == "return":
            stack.pop()

    sys.setprofile(profile)
    try:
        return (yield)
    finally:
        sys.setprofile(None)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    return (yield from tracing(item, "setup"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item):
    return (yield from tracing(item, "call"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    return (yield from tracing(item, "teardown"))


def pytest_sessionfinish(session):
    with open(os.environ["REFERENCE_OUT"], "w") as f:
        json.dump(seen, f)
"""

EXPECTED_OUTCOMES = {
    "test_passes": {"setup": "passed", "call": "passed", "teardown": "passed"},
    "test_fails": {"setup": "passed", "call": "failed", "teardown": "passed"},
    "test_fails_in_test_code": {"setup": "passed", "call": "failed", "teardown": "passed"},
    "test_setup_error": {"setup": "error", "teardown": "passed"},
    "test_teardown_error": {"setup": "passed", "call": "passed", "teardown": "error"},
    "test_fixture": {"setup": "passed", "call": "passed", "teardown": "passed"},
    "test_skipped": {"setup": "skipped", "teardown": "passed"},
    "test_skips_inside": {"setup": "passed", "call": "skipped", "teardown": "passed"},
    "test_xfails": {"setup": "passed", "call": "xfailed", "teardown": "passed"},
    "test_xpasses": {"setup": "passed", "call": "xpassed", "teardown": "passed"},
    **{
        f"test_param[{n}]": {"setup": "passed", "call": "passed", "teardown": "passed"}
        for n in (0, 1, 5)
    },
}


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The small project: a package, a conftest importing it, and the tests."""
    for name in list(os.environ):
        if name.startswith("SCOPE_") and not name.startswith("SCOPE_TEST"):
            monkeypatch.delenv(name)
    pytester.makefile(".toml", pyproject="[project]\nname = 'calc'\n")
    pytester.makepyfile(**{"calc/__init__": PACKAGE, "tests/test_calc": TESTS})
    pytester.makeconftest(CONFTEST)
    conftest = pytester.path / "conftest.py"
    conftest.rename(pytester.path / "tests" / "conftest.py")
    return pytester


def run_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=180)


def read(pytester: pytest.Pytester, sql: str, db: str = ".scope/scope.duckdb") -> list:
    con = duckdb.connect(str(pytester.path / db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def short(nodeid: str) -> str:
    return nodeid.rpartition("::")[2]


def stored_phases(pytester: pytest.Pytester, db: str = ".scope/scope.duckdb") -> dict:
    rows = read(pytester, "SELECT nodeid, phase, outcome FROM test WHERE run = 1", db)
    phases: dict[str, dict[str, str]] = {}
    for nodeid, phase, outcome in rows:
        phases.setdefault(short(nodeid), {})[phase] = outcome
    return phases


def stored_calls(pytester: pytest.Pytester, db: str = ".scope/scope.duckdb") -> Counter:
    """(test, phase, calling function or None for the phase, function) of every stored call."""
    rows = read(
        pytester,
        """SELECT t.nodeid, t.phase, CASE WHEN c.parent = t.call THEN NULL ELSE pf.qualname END,
                  f.qualname
           FROM test t JOIN call r ON r.run = t.run AND r.id = t.call
           JOIN call c ON c.run = t.run AND c.id > r.id AND c.id <= r.end_id
           JOIN function f ON f.run = c.run AND f.id = c.function
           LEFT JOIN call p ON p.run = c.run AND p.id = c.parent
           LEFT JOIN function pf ON pf.run = p.run AND pf.id = p.function
           WHERE t.run = 1""",
        db,
    )
    return Counter((short(n), phase, parent, name) for n, phase, parent, name in rows)


def reference_calls(pytester: pytest.Pytester) -> Counter:
    """The same, seen by the setprofile plugin in a plain session."""
    (pytester.path / "reference_plugin.py").write_text(REFERENCE_PLUGIN)
    out = pytester.path / "reference.json"
    env = {**os.environ, "REFERENCE_OUT": str(out), "PYTHONPATH": str(pytester.path)}
    subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "reference_plugin", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        env=env,
        capture_output=True,
        timeout=180,
    )
    seen = json.loads(out.read_text())
    return Counter((short(n), phase, parent, name) for n, phase, parent, name in seen)


def test_every_test_phase_is_recorded_with_its_outcome_and_exactly_its_calls(suite):
    result = run_pytest(suite, "--scope")
    result.assert_outcomes(passed=6, failed=2, errors=2, skipped=2, xfailed=1, xpassed=1)
    assert stored_phases(suite) == EXPECTED_OUTCOMES
    reference = reference_calls(suite)
    assert reference, "the reference tracer saw nothing"
    assert stored_calls(suite) == reference
    # The call at the conftest's import is a root of its own, under no test.
    roots = read(
        suite,
        """SELECT f.qualname FROM call c JOIN function f ON f.run = c.run AND f.id = c.function
           WHERE c.run = 1 AND c.parent IS NULL AND f.kind <> 'test'""",
    )
    assert roots == [("add",)]


def test_a_failure_is_linked_to_the_call_its_exception_came_from(suite):
    run_pytest(suite, "--scope")
    rows = read(
        suite,
        """SELECT t.nodeid, t.phase, t.exception, t.message, f.qualname, t.raised_in = t.call,
                  e.propagated_through[-1] = t.call
           FROM test t JOIN call c ON c.run = t.run AND c.id = t.raised_in
           JOIN function f ON f.run = c.run AND f.id = c.function
           LEFT JOIN exception e ON e.run = t.run AND e.raised_in = t.raised_in
           WHERE t.run = 1 ORDER BY t.nodeid, t.phase""",
    )
    failures = {(short(n), phase): rest for n, phase, *rest in rows}
    assert failures[("test_fails", "call")] == [
        "ZeroDivisionError",
        "ZeroDivisionError: division by zero",
        "div",
        False,
        True,
    ]
    # Raised by the test's own code: the phase itself is where it came from.
    assert failures[("test_fails_in_test_code", "call")][0] == "AssertionError"
    assert failures[("test_fails_in_test_code", "call")][3] is True
    assert failures[("test_setup_error", "setup")][:3] == [
        "RuntimeError",
        "RuntimeError: cannot",
        "broken",
    ]
    assert failures[("test_teardown_error", "teardown")][2] == "broken"
    assert failures[("test_xfails", "call")][2] == "broken"
    skipped = read(suite, "SELECT nodeid, message FROM test WHERE outcome = 'skipped'")
    assert {short(n): m for n, m in skipped} == {
        "test_skipped": "Skipped: a marked skip: stored as skipped, with this reason",
        "test_skips_inside": "Skipped: skipped from inside: its calls until here are kept",
    }


def test_the_session_ends_with_one_line_and_a_command_per_failing_test(suite):
    result = run_pytest(suite, "--scope")
    calls = read(
        suite,
        "SELECT count(*) FROM call c JOIN function f ON f.id = c.function AND f.run = c.run "
        "WHERE f.kind <> 'test'",
    )[0][0]
    lines = [line for line in result.outlines if line.startswith("scope")]
    assert lines == [
        f"scope: 13 tests, {calls} calls recorded in .scope/scope.duckdb (run 1); why each failed:"
    ]
    commands = [line.strip() for line in result.outlines if line.startswith("  scope test ")]
    assert commands == [
        f"scope test tests/test_calc.py::{name}"
        for name in (
            "test_fails",
            "test_fails_in_test_code",
            "test_setup_error",
            "test_teardown_error",
        )
    ]


def test_keep_failed_keeps_every_outcome_but_only_the_failing_tests_calls(suite):
    run_pytest(suite, "--scope", "--scope-keep=failed")
    assert stored_phases(suite) == EXPECTED_OUTCOMES
    calls = stored_calls(suite)
    tests_with_calls = {test for test, *_ in calls}
    assert tests_with_calls == {
        "test_fails",
        "test_fails_in_test_code",
        "test_setup_error",
        "test_teardown_error",
    }
    full = reference_calls(suite)
    assert calls == Counter({k: v for k, v in full.items() if k[0] in tests_with_calls})
    kept = read(suite, "SELECT nodeid, bool_and(kept) FROM test GROUP BY nodeid")
    assert {short(n): k for n, k in kept} == {
        name: name in tests_with_calls for name in EXPECTED_OUTCOMES
    }
    # Every phase keeps its root call, with its duration.
    roots = read(suite, "SELECT count(*) FROM test t JOIN call c ON c.id = t.call")
    assert roots == [(sum(len(p) for p in EXPECTED_OUTCOMES.values()),)]


def test_xdist_workers_record_into_their_own_files_and_the_session_merges_them(suite):
    # One file per worker (--dist loadfile), so that a module-scoped fixture is set
    # up in the same test as in the serial reference run.
    suite.makepyfile(**{"tests/test_more": "import calc\n\ndef test_more():\n    calc.fib(2)\n"})
    result = run_pytest(suite, "--scope", "-n", "2", "--dist", "loadfile")
    result.assert_outcomes(passed=7, failed=2, errors=2, skipped=2, xfailed=1, xpassed=1)
    more = {"setup": "passed", "call": "passed", "teardown": "passed"}
    assert stored_phases(suite) == {**EXPECTED_OUTCOMES, "test_more": more}
    assert stored_calls(suite) == reference_calls(suite)
    workers = read(suite, "SELECT nodeid, worker FROM test ORDER BY 1")
    by_file = {(n.partition("::")[0], w) for n, w in workers}
    assert by_file in (
        {("tests/test_calc.py", "gw0"), ("tests/test_more.py", "gw1")},
        {("tests/test_calc.py", "gw1"), ("tests/test_more.py", "gw0")},
    )
    processes = read(suite, "SELECT count(*), count(DISTINCT pid) FROM process")
    assert processes == [(3, 3)]
    # No worker left a file of its own behind; the code cache is shared and stays.
    kept = {"scope.duckdb", "cache"}
    leftovers = [p.name for p in (suite.path / ".scope").iterdir() if p.name not in kept]
    assert leftovers == []


def test_scope_tests_and_scope_test_answer_about_the_recorded_session(suite):
    run_pytest(suite, "--scope")

    def scope(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scope", *args],
            cwd=suite.path,
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")},
        )

    listed = json.loads(scope("tests", "--json").stdout)
    assert [short(t["nodeid"]) for t in listed] == list(EXPECTED_OUTCOMES)
    assert {short(t["nodeid"]): t["outcome"] for t in listed}["test_teardown_error"] == "error"
    failed = json.loads(scope("tests", "--failed", "--json").stdout)
    assert sorted(short(t["nodeid"]) for t in failed) == [
        "test_fails",
        "test_fails_in_test_code",
        "test_setup_error",
        "test_teardown_error",
    ]
    slowest = json.loads(scope("tests", "--slowest", "3", "--json").stdout)
    durations = [t["duration_ns"] for t in listed]
    assert [t["duration_ns"] for t in slowest] == sorted(durations, reverse=True)[:3]
    users = json.loads(scope("tests", "--calls", "fib", "--json").stdout)
    # fib(4) is 9 calls, fib(3) 5: the module-scoped fixture runs in the first test using it.
    assert {short(u["nodeid"]): u["calls"] for u in users} == {
        "test_fixture": 9,
        "test_param[0]": 5,
    }
    shown = scope("test", "test_fails")
    assert shown.returncode == 0, shown.stderr
    assert "raised here: ZeroDivisionError" in shown.stdout
    assert "call: failed" in shown.stdout
    ambiguous = scope("test", "test_param")
    assert ambiguous.returncode == 1
    assert ambiguous.stderr.startswith("scope: error: 3 tests match 'test_param'")
    missing = scope("test", "test_nothing")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_the_plugin_records_only_when_asked(suite):
    result = run_pytest(suite)
    assert result.ret == 1
    assert not (suite.path / ".scope").exists()
    assert not [line for line in result.outlines if line.startswith("scope")]
    disabled = run_pytest(suite, "-p", "no:scope", "--scope")
    assert disabled.ret == 4  # the option does not exist then


def test_pyproject_can_ask_for_recording_and_no_scope_overrides_it(suite):
    suite.makefile(".toml", pyproject="[project]\nname = 'calc'\n[tool.scope]\npytest = true\n")
    run_pytest(suite, "--no-scope")
    assert not (suite.path / ".scope").exists()
    run_pytest(suite)
    assert stored_phases(suite) == EXPECTED_OUTCOMES


def test_bad_options_are_usage_errors_without_a_traceback(suite):
    result = run_pytest(suite, "--scope", "--scope-keep=sometimes")
    assert result.ret == 4
    assert "scope: keep on the command line: 'sometimes' is not all, failed or slow:SECONDS" in (
        result.stderr.str()
    )
    assert "Traceback" not in result.stderr.str()
    assert not (suite.path / ".scope").exists()


def test_a_bad_tool_scope_section_stops_only_a_session_that_asked_to_record(suite):
    bad = "[project]\nname = 'calc'\n[tool.scope]\nkeep = 'sometimes'\n"
    suite.makefile(".toml", pyproject=bad)
    unasked = run_pytest(suite)
    unasked.assert_outcomes(passed=6, failed=2, errors=2, skipped=2, xfailed=1, xpassed=1)
    assert not (suite.path / ".scope").exists()
    suite.makefile(".toml", pyproject=bad + "pytest = true\n")
    asked = run_pytest(suite)
    assert asked.ret == 4
    assert "scope: keep in [tool.scope]" in asked.stderr.str()
    assert "Traceback" not in asked.stderr.str()


def test_test_files_are_not_instrumented_unless_included(suite):
    run_pytest(suite, "--scope", "--assert=plain")
    modules = read(suite, "SELECT DISTINCT module FROM function WHERE kind <> 'test'")
    assert modules == [("calc",)]
    # pytest's assertion rewriter loads test modules unless --assert=plain.
    run_pytest(
        suite, "--scope", "--assert=plain", "--scope-include", "calc", "--scope-include", "tests/"
    )
    rows = read(
        suite,
        """SELECT DISTINCT f.kind, f.qualname FROM call c
           JOIN function f ON f.run = c.run AND f.id = c.function
           WHERE c.run = 2 AND f.qualname = 'test_passes'""",
    )
    assert sorted(rows) == [("plain", "test_passes"), ("test", "test_passes")]


def test_modules_imported_before_the_hook_are_named_once(suite):
    suite.makepyfile(early_plugin="import calc\n")
    result = run_pytest(suite, "--scope", "-p", "early_plugin")
    assert "1 of your modules were imported before scope's import hook" in result.stderr.str()
    problems = read(suite, "SELECT problems FROM run")
    assert "calc" in problems[0][0][0]


def test_a_module_that_fails_or_skips_collection_is_a_test_row_of_its_own(suite):
    suite.makepyfile(
        **{
            "tests/test_broken": "import calc\nimport nowhere\n",
            "tests/test_later": "import pytest\npytest.importorskip('nowhere_either')\n",
        }
    )
    result = run_pytest(suite, "--scope", "--continue-on-collection-errors")
    assert result.ret == 1
    rows = read(
        suite,
        "SELECT nodeid, phase, outcome, message FROM test WHERE phase = 'collect' ORDER BY 1",
    )
    assert rows == [
        (
            "tests/test_broken.py",
            "collect",
            "error",
            "E   ModuleNotFoundError: No module named 'nowhere'",
        ),
        (
            "tests/test_later.py",
            "collect",
            "skipped",
            "Skipped: could not import 'nowhere_either': No module named 'nowhere_either'",
        ),
    ]
    assert stored_phases(suite)["test_passes"] == EXPECTED_OUTCOMES["test_passes"]
    listed = subprocess.run(
        [sys.executable, "-m", "scope", "tests", "--json"],
        cwd=suite.path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    outcomes = {t["nodeid"]: t["outcome"] for t in json.loads(listed.stdout)}
    assert outcomes["tests/test_broken.py"] == "error"
    assert outcomes["tests/test_later.py"] == "skipped"


def test_under_scope_run_the_tests_go_into_the_programs_recording(suite):
    result = subprocess.run(
        [sys.executable, "-m", "scope", "run", "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=suite.path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1, result.stderr
    assert "scope: 13 tests recorded into the running recording" in result.stdout
    assert stored_phases(suite) == EXPECTED_OUTCOMES


def test_keep_is_read_as_all_failed_and_slow_thresholds():
    from scope.config import parse_retention

    assert parse_retention("all").keeps(failed=False, duration_ns=0)
    failed = parse_retention("failed")
    assert failed.keeps(True, 0) and not failed.keeps(False, 10**12)
    slow = parse_retention("slow:0.5")
    assert slow.keeps(False, 500_000_000) and not slow.keeps(True, 499_999_999)
    both = parse_retention("failed, slow:250ms")
    assert both.keeps(True, 0) and both.keeps(False, 250_000_000)
    assert not both.keeps(False, 249_999_999)
    for bad in ("", "slow", "slow:", "slow:x", "slow:-1", "fast", "all,sometimes"):
        with pytest.raises(ValueError):
            parse_retention(bad)


def test_the_plugin_module_imports_nothing_heavy_until_a_session_records():
    code = (
        "import sys, scope.pytest_plugin; "
        "print(sorted(m for m in ('numpy', 'duckdb', 'scope.session', 'libcst') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_entry_point_is_registered_as_scope():
    from importlib.metadata import entry_points

    (found,) = [e for e in entry_points(group="pytest11") if e.name == "scope"]
    assert found.value == "scope.pytest_plugin"
    assert Path(found.load().__file__).name == "pytest_plugin.py"


def test_two_tests_are_compared_and_a_tests_calls_listed(suite):
    run_pytest(suite, "--scope", "--scope-level", "args")
    with Recording(str(suite.path / ".scope" / "scope.duckdb")) as recording:
        values = recording.diff("test_passes", "test_fails_in_test_code@1")
        calls = recording.diff("test_passes", "test_fails")
        failing = recording.tests(nodeid=recording.find_test("test_fails"))[0]
        listed = recording.calls(CallFilter(test_roots=failing.roots))
    assert values.outcomes == ("passed", "failed") and values.calls == values.exceptions == []
    assert [(r.function, r.only_before, r.only_after) for r in values.returns] == [
        ("calc.add", ["5"], ["2"])
    ]
    assert [(c.function, c.before, c.after) for c in calls.calls] == [
        ("calc.add", 1, 0),
        ("calc.div", 0, 1),
    ]
    assert [(e.type, e.raised_in, e.before, e.after) for e in calls.exceptions] == [
        ("ZeroDivisionError", "calc.div", 0, 1)
    ]
    # Its three phases' root calls, and the one call its call phase made.
    assert [(c.qualname, c.arguments) for c in listed.calls] == [
        ("test_fails", []),
        ("test_fails", []),
        ("div", ["a=1", "b=0"]),
        ("test_fails", []),
    ]

"""Real projects' own test suites pass the same with scope on: the promise, on others' code.

``../shared/corpus`` fetches pure-Python projects from PyPI with their test
suites and compares every test's outcome between a plain run and a run under
``python -m scope run -m pytest`` (see its README for the traps each sets).
Every project runs at the ``calls`` and the ``args`` level behind the
``corpus`` marker (``pytest -m corpus``, several minutes); toolz, whose suite
takes a second yet exercises currying, ``inspect.signature`` and lazy
generators, runs in every test session as the representative slice.

Every project also runs under the pytest plugin (``pytest --scope``), serially
and with ``-n 2``: the same outcome for every test, and ``scope tests`` lists
every test of the JUnit report with that outcome.  toolz's serial run is in
the slice.

Three projects of scope's choosing join the shared seven, each for a trap the
others do not set (``tests/corpus/recipes.sh``): pyparsing, which predicts the
line of its own call and compares it with a traceback's; decorator, whose
signature-preserving wrappers are source compiled with ``exec``; and asgiref,
which hands coroutines between event loops and thread pools.  The shared
scripts read their recipes from beside themselves, so the tests run them
through an overlay (``benchmarks/corpus_runs.py``, which the overhead
benchmark shares).  decorator runs in the slice too.

The corpus scripts are found through ``SCOPE_CORPUS_SCRIPTS``, else next to
this checkout (``../shared/corpus``), else at ``/work/shared/corpus``; the
projects and their virtual environments go to the corpus cache
(``~/.cache/scope-corpus/work-py3.X``), never into this repository.  The
virtual environments are made with the interpreter running the tests, one work
folder per Python version, so the corpus tests the version under test; each
project's folder is locked while a test uses it, so test sessions and xdist
workers on one machine take turns.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from benchmarks.corpus_runs import (
    EXTRA_PIP,
    PROJECTS,
    PYTHON_TAG,
    corpus_env,
    corpus_scripts,
    extra_pip_for,
    note_installed,
    overlay,
    project_lock,
    work_dir,
)

from .conftest import unavailable

SLICE = ("toolz", "decorator")
#: the slice's projects CI's matrix runs in its first session only (decorator's suite
#: is a second, but setting it up takes a minute; toolz covers the other versions)
ONCE_IN_MATRIX = ("decorator",)


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus scripts with scope's own projects added."""
    shared = corpus_scripts()
    if shared is None:
        # Without the corpus scripts there is no suite to compare; CI sets the
        # variable, so there this fails instead.
        reason = "the corpus scripts (../shared/corpus) are not on this machine"
        unavailable(reason, required_by="SCOPE_TEST_REQUIRE_CORPUS")
    return overlay(shared, tmp_path_factory.mktemp("corpus"))


def set_up(scripts: Path, project: str) -> None:
    """Set ``project`` up with this checkout of scope (and pytest-xdist) installed
    (``project_lock`` held)."""
    setup = subprocess.run(
        ["bash", str(scripts / "setup.sh"), project],
        capture_output=True,
        text=True,
        env=corpus_env(extra_pip_for(project)),
        timeout=1800,
    )
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    note_installed(project)


def compare(scripts: Path, project: str, level: str) -> subprocess.CompletedProcess[str]:
    """Set ``project`` up, then compare a plain run with one under ``scope run -m pytest``."""
    set_up(scripts, project)
    return subprocess.run(
        [
            "bash",
            str(scripts / "compare.sh"),
            project,
            "--reuse-plain",
            "--label",
            f"scope-{level}",
            "--recorder-cmd",
            "python -m scope run -m pytest",
            "--recorder-env",
            f"SCOPE_LEVEL={level} SCOPE_DB={{out}}/scope.duckdb",
        ],
        capture_output=True,
        text=True,
        env=corpus_env(EXTRA_PIP),
        timeout=3600,
    )


def recording_of(project: str, level: str) -> Path:
    """Where the compare run of ``project`` at ``level`` left its recording."""
    return work_dir() / project / "results" / f"scope-{level}" / "scope.duckdb"


def assert_same(scripts: Path, project: str, level: str) -> None:
    with project_lock(project):
        result = compare(scripts, project, level)
        report = result.stdout[-4000:] + result.stderr[-2000:]
        assert result.returncode == 0, report
        assert "SAME" in result.stdout and "DIFFERENT" not in result.stdout, report
        assert_nothing_lost(recording_of(project, level))


def assert_nothing_lost(recording: Path) -> None:
    """Every module of the project was instrumented, and scope lost nothing."""
    con = duckdb.connect(str(recording), read_only=True)
    try:
        problems = con.execute("SELECT problems FROM run ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        con.close()
    assert problems == ([],), problems


def junit_id(nodeid: str) -> str:
    """The test id the corpus scripts list (JUnit's classname::name) of a pytest node id."""
    address, bracket, params = nodeid.partition("[")
    names = address.split("::")
    names[0] = names[0].replace("/", ".").removesuffix(".py")
    names[-1] += bracket + params
    return ".".join(names[:-1]) + "::" + names[-1]


def compare_plugin(scripts: Path, project: str, workers: int) -> Path:
    """Compare a plain run of ``project`` with ``pytest --scope`` (``-n workers``, if any).

    Returns the folder of the recorded run's results.
    """
    set_up(scripts, project)
    env = corpus_env(EXTRA_PIP)
    label = "scope-plugin" if not workers else f"scope-plugin-n{workers}"
    extra = ["--", "-n", str(workers)] if workers else []
    if workers:  # its plain run (-n too) must not replace the serial one
        env["SCOPE_CORPUS_RESULTS"] = str(work_dir().parent / f"results-{PYTHON_TAG}-n{workers}")
    result = subprocess.run(
        [
            "bash",
            str(scripts / "compare.sh"),
            project,
            "--reuse-plain",
            "--label",
            label,
            "--recorder-args",
            "--scope --scope-db={out}/scope.duckdb",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    report = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "SAME" in result.stdout and "DIFFERENT" not in result.stdout, report
    if workers:
        return Path(env["SCOPE_CORPUS_RESULTS"]) / project / label
    return work_dir() / project / "results" / label


def assert_every_test_listed(results: Path) -> None:
    """``scope tests`` lists every test the run's JUnit report has."""
    from scope.query.api import Recording

    assert_nothing_lost(results / "scope.duckdb")
    with Recording(str(results / "scope.duckdb")) as recording:
        recorded = {junit_id(t.nodeid): t for t in recording.tests()}
    expected = dict(
        line.split("\t")[:2] for line in (results / "outcomes.tsv").read_text().splitlines()
    )
    assert set(recorded) == set(expected)
    differing = {
        name: (recorded[name].outcome, outcome)
        for name, outcome in expected.items()
        if as_junit_outcome(recorded[name].outcome) != outcome
    }
    assert differing == {}


def as_junit_outcome(outcome: str) -> str:
    """A test's outcome as the corpus scripts name it from JUnit (an xpass is a pass there)."""
    return "+".join(sorted("passed" if o == "xpassed" else o for o in outcome.split("+")))


@pytest.mark.slow
@pytest.mark.parametrize("level", ["calls", "args"])
@pytest.mark.parametrize(
    "project",
    [pytest.param(p, marks=pytest.mark.matrix_once) if p in ONCE_IN_MATRIX else p for p in SLICE],
)
def test_a_real_suite_passes_the_same_under_scope(scripts, project, level):
    assert_same(scripts, project, level)


@pytest.mark.corpus
@pytest.mark.parametrize("level", ["calls", "args"])
@pytest.mark.parametrize("project", [p for p in PROJECTS if p not in SLICE])
def test_every_corpus_suite_passes_the_same_under_scope(scripts, project, level):
    assert_same(scripts, project, level)


@pytest.mark.slow
def test_a_real_suite_passes_the_same_under_the_pytest_plugin(scripts):
    with project_lock("toolz"):
        assert_every_test_listed(compare_plugin(scripts, "toolz", workers=0))


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("project", "workers"),
    [(p, n) for p in PROJECTS for n in (0, 2) if (p, n) != ("toolz", 0)],  # toolz, 0: the slice
)
def test_every_corpus_suite_passes_the_same_under_the_pytest_plugin(scripts, project, workers):
    with project_lock(project):
        assert_every_test_listed(compare_plugin(scripts, project, workers))


def test_the_overlay_adds_scopes_projects_to_the_shared_ones(scripts):
    listed = subprocess.run(
        ["bash", str(scripts / "setup.sh"), "--list"], capture_output=True, text=True, check=True
    )
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert set(PROJECTS) <= names


@pytest.mark.slow
@pytest.mark.matrix_once  # a benchmark's table, as tests/test_benchmarks.py's
def test_the_pytest_overhead_benchmark_prints_its_table(scripts):
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "pytest_overhead.py"
    with project_lock("toolz"):
        set_up(scripts, "toolz")
        result = subprocess.run(
            [sys.executable, str(script), "--projects", "toolz", "--repeat", "1"],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode == 0, result.stderr
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("toolz ")]
    plain, full, ratio, kept, kept_ratio, calls, size, kept_size = row.split()[1:]
    assert float(ratio) == pytest.approx(float(full) / float(plain), rel=0.1)
    assert float(kept_ratio) == pytest.approx(float(kept) / float(plain), rel=0.1)
    assert int(calls.replace(",", "")) > 1000 and float(kept_size) <= float(size)

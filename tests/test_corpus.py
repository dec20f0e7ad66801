"""Real projects' own test suites pass the same with scope on: the promise, on others' code.

``../shared/corpus`` fetches pure-Python projects from PyPI with their test
suites and compares every test's outcome between a plain run and a run under
``python -m scope run -m pytest`` (see its README for the traps each sets).
Every project runs at the ``calls`` and the ``args`` level behind the
``corpus`` marker (``pytest -m corpus``, several minutes); toolz, whose suite
takes a second yet exercises currying, ``inspect.signature`` and lazy
generators, runs in every test session as the representative slice.

The corpus scripts are found through ``SCOPE_CORPUS_SCRIPTS``, else next to
this checkout (``../shared/corpus``), else at ``/work/shared/corpus``; the
projects and their virtual environments go to the corpus cache
(``~/.cache/scope-corpus``), never into this repository.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import unavailable

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = ("more-itertools", "toolz", "attrs", "sqlparse", "click", "jinja2", "boltons")
SLICE = ("toolz",)


def corpus_scripts() -> Path | None:
    """The folder of the corpus scripts, if this machine has it."""
    candidates = [ROOT.parent / "shared" / "corpus", Path("/work/shared/corpus")]
    if "SCOPE_CORPUS_SCRIPTS" in os.environ:
        candidates.insert(0, Path(os.environ["SCOPE_CORPUS_SCRIPTS"]))
    return next((c for c in candidates if (c / "compare.sh").is_file()), None)


def compare(project: str, level: str) -> subprocess.CompletedProcess[str]:
    """Set ``project`` up with this checkout of scope installed, then compare its two runs."""
    scripts = corpus_scripts()
    if scripts is None:
        # Without the corpus scripts there is no suite to compare; CI sets the
        # variable, so there this fails instead.
        reason = "the corpus scripts (../shared/corpus) are not on this machine"
        unavailable(reason, required_by="SCOPE_TEST_REQUIRE_CORPUS")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOPE_") or "CORPUS" in k}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the corpus runs as users run: caches on
    env["SCOPE_CORPUS_EXTRA_PIP"] = f"-e {ROOT}"
    setup = subprocess.run(
        ["bash", str(scripts / "setup.sh"), project],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
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
        env=env,
        timeout=3600,
    )


def assert_same(project: str, level: str) -> None:
    result = compare(project, level)
    report = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "SAME" in result.stdout and "DIFFERENT" not in result.stdout, report


@pytest.mark.slow
@pytest.mark.parametrize("level", ["calls", "args"])
@pytest.mark.parametrize("project", SLICE)
def test_a_real_suite_passes_the_same_under_scope(project, level):
    assert_same(project, level)


@pytest.mark.corpus
@pytest.mark.parametrize("level", ["calls", "args"])
@pytest.mark.parametrize("project", [p for p in PROJECTS if p not in SLICE])
def test_every_corpus_suite_passes_the_same_under_scope(project, level):
    assert_same(project, level)

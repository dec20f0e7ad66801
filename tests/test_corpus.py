"""Real projects' own test suites pass the same with scope on: the promise, on others' code.

``../shared/corpus`` fetches pure-Python projects from PyPI with their test
suites and compares every test's outcome between a plain run and a run under
``python -m scope run -m pytest`` (see its README for the traps each sets).
Every project runs at the ``calls`` and the ``args`` level behind the
``corpus`` marker (``pytest -m corpus``, several minutes); toolz, whose suite
takes a second yet exercises currying, ``inspect.signature`` and lazy
generators, runs in every test session as the representative slice.

Three projects of scope's choosing join the shared seven, each for a trap the
others do not set (``tests/corpus/recipes.sh``): pyparsing, which predicts the
line of its own call and compares it with a traceback's; decorator, whose
signature-preserving wrappers are source compiled with ``exec``; and asgiref,
which hands coroutines between event loops and thread pools.  The shared
scripts read their recipes from beside themselves, so the tests run them
through an overlay: a folder of links to the shared scripts whose
``lib/recipes.sh`` adds ours to theirs.  decorator runs in the slice too.

The corpus scripts are found through ``SCOPE_CORPUS_SCRIPTS``, else next to
this checkout (``../shared/corpus``), else at ``/work/shared/corpus``; the
projects and their virtual environments go to the corpus cache
(``~/.cache/scope-corpus``), never into this repository.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import duckdb
import pytest

from .conftest import unavailable

ROOT = Path(__file__).resolve().parent.parent
SHARED_PROJECTS = ("more-itertools", "toolz", "attrs", "sqlparse", "click", "jinja2", "boltons")
OWN_PROJECTS = ("pyparsing", "decorator", "asgiref")
PROJECTS = SHARED_PROJECTS + OWN_PROJECTS
SLICE = ("toolz", "decorator")
#: scope's recipes and the pins of their test dependencies
OWN_RECIPES = ROOT / "tests" / "corpus"


def corpus_scripts() -> Path | None:
    """The folder of the corpus scripts, if this machine has it."""
    candidates = [ROOT.parent / "shared" / "corpus", Path("/work/shared/corpus")]
    if "SCOPE_CORPUS_SCRIPTS" in os.environ:
        candidates.insert(0, Path(os.environ["SCOPE_CORPUS_SCRIPTS"]))
    return next((c for c in candidates if (c / "compare.sh").is_file()), None)


def overlay(shared: Path, folder: Path) -> Path:
    """The shared scripts in ``folder``, linked, with scope's recipes added to theirs."""
    lib = folder / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    for name in ("setup.sh", "run.sh", "compare.sh"):
        (folder / name).symlink_to(shared / name)
    for name in ("common.sh", "junit_tool.py", "plugins"):
        (lib / name).symlink_to(shared / "lib" / name)
    (lib / "recipes.sh").write_text(
        f"SCOPE_CORPUS_SHARED_LIB={shared / 'lib'}\n. {OWN_RECIPES / 'recipes.sh'}\n"
    )
    pins = [(shared / "lib" / "constraints.txt"), (OWN_RECIPES / "constraints.txt")]
    (lib / "constraints.txt").write_text("".join(p.read_text() for p in pins))
    return folder


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


def compare(scripts: Path, project: str, level: str) -> subprocess.CompletedProcess[str]:
    """Set ``project`` up with this checkout of scope installed, then compare its two runs."""
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


def recording_of(project: str, level: str) -> Path:
    """Where the compare run of ``project`` at ``level`` left its recording."""
    cache = os.environ.get("SCOPE_CORPUS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "scope-corpus"
    )
    work = os.environ.get("SCOPE_CORPUS_WORK") or os.path.join(cache, "work")
    return Path(work) / project / "results" / f"scope-{level}" / "scope.duckdb"


def assert_same(scripts: Path, project: str, level: str) -> None:
    result = compare(scripts, project, level)
    report = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "SAME" in result.stdout and "DIFFERENT" not in result.stdout, report
    # And every module of the project was instrumented: scope lost nothing.
    con = duckdb.connect(str(recording_of(project, level)), read_only=True)
    try:
        problems = con.execute("SELECT problems FROM run ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        con.close()
    assert problems == ([],), problems


@pytest.mark.slow
@pytest.mark.parametrize("level", ["calls", "args"])
@pytest.mark.parametrize("project", SLICE)
def test_a_real_suite_passes_the_same_under_scope(scripts, project, level):
    assert_same(scripts, project, level)


@pytest.mark.corpus
@pytest.mark.parametrize("level", ["calls", "args"])
@pytest.mark.parametrize("project", [p for p in PROJECTS if p not in SLICE])
def test_every_corpus_suite_passes_the_same_under_scope(scripts, project, level):
    assert_same(scripts, project, level)


def test_the_overlay_adds_scopes_projects_to_the_shared_ones(scripts):
    listed = subprocess.run(
        ["bash", str(scripts / "setup.sh"), "--list"], capture_output=True, text=True, check=True
    )
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert set(PROJECTS) <= names

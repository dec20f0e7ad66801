"""A recorded program's child sees the ``sitecustomize`` and ``sys.path`` it would without scope.

scope puts its hook folder first on a child's PYTHONPATH (``scope/hook/sitecustomize.py``).
Each test runs a program that starts children plain and recorded, and compares what the
children printed: the hook must step aside in an interpreter that cannot import scope as
well as in one that records.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Result, clean_env, run, unavailable

#: what each child prints: its path, and the ``sitecustomize`` it has (or why none)
SHOW = """\
import sys
print(sys.path)
try:
    import sitecustomize
except ModuleNotFoundError as exc:
    print(exc)
else:
    print(sitecustomize.__file__)
"""

#: a user's start-up files; the function is there to be recorded
SITECUSTOMIZE = """\
def customize():
    print("USER SITECUSTOMIZE")


customize()
"""
USERCUSTOMIZE = 'print("USER USERCUSTOMIZE")\n'

#: CI runs the tests in a venv of its own, whose base interpreter has no scope
REQUIRE = "SCOPE_TEST_REQUIRE_MATRIX"


def scopeless_python(project: Path) -> str:
    """The interpreter this venv was made from, which cannot import scope in ``project``."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    python = os.path.join(sys.base_prefix, "bin", f"python{version}")
    if sys.base_prefix == sys.prefix or not os.path.exists(python):
        unavailable("the tests do not run in a venv: no interpreter without scope", REQUIRE)
    probe = subprocess.run(
        [python, "-c", "import scope"], cwd=project, capture_output=True, env=clean_env()
    )
    if probe.returncode == 0:
        unavailable(f"{python} imports scope: no interpreter without it", REQUIRE)
    return python


def write_app(write: Callable[[str, str], Path], python: str, flag_sets: list[list[str]]) -> None:
    """An app.py running ``python FLAGS -c SHOW`` for each of ``flag_sets``, printing it all."""
    write(
        "app.py",
        f"""
        import subprocess
        for flags in {flag_sets!r}:
            done = subprocess.run([{python!r}, *flags, "-c", {SHOW!r}],
                                  capture_output=True, text=True)
            print(flags, done.returncode, done.stdout, repr(done.stderr))
        """,
    )


def plain_and_recorded(project: Path, env: dict[str, str], *python_args: str) -> list[Result]:
    """The app run by ``python PYTHON_ARGS app.py``, then by ``python PYTHON_ARGS -m scope run``."""
    python = [sys.executable, *python_args]
    return [
        run([*python, "app.py"], project, env=env),
        run([*python, "-m", "scope", "run", "app.py"], project, env=env),
    ]


@pytest.mark.parametrize("child", ["scopeless", "same venv"])
def test_a_child_without_a_sitecustomize_has_none_as_under_python(project, write, query, child):
    python = scopeless_python(project) if child == "scopeless" else sys.executable
    write_app(write, python, [[], ["-s"], ["-E"], ["-I"]])
    plain, recorded = plain_and_recorded(project, clean_env())
    assert plain.returncode == 0, plain
    assert plain.stdout.count("No module named 'sitecustomize'") == 4, plain
    assert recorded == plain
    # The same venv's children are recorded, but the two told to ignore PYTHONPATH.
    processes = query("SELECT count(*) FROM process")
    assert processes == [(1,)] if child == "scopeless" else [(3,)]


def test_a_scopeless_child_runs_the_users_sitecustomize_and_usercustomize(
    project, write, tmp_path_factory
):
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (site / "usercustomize.py").write_text(USERCUSTOMIZE)
    write_app(write, scopeless_python(project), [[], ["-s"]])
    plain, recorded = plain_and_recorded(project, clean_env({"PYTHONPATH": str(site)}))
    assert plain.returncode == 0, plain
    children = plain.stdout.split("USER SITECUSTOMIZE\n", 1)[1]  # the program's own first
    assert children.count("USER SITECUSTOMIZE") == 2, plain
    assert children.count("USER USERCUSTOMIZE") == 1, plain  # not with -s
    assert children.count(str(site / "sitecustomize.py")) == 2, plain
    assert recorded == plain


def test_a_recorded_child_runs_the_users_sitecustomize_once_and_records_it(project, write, query):
    # In the project, the user's sitecustomize is the user's code.  python -E keeps it
    # out of the program's own start-up (scope starts after that): only its child runs it.
    write("site/sitecustomize.py", SITECUSTOMIZE)
    write_app(write, sys.executable, [[]])
    env = clean_env({"PYTHONPATH": str(project / "site")})
    plain, recorded = plain_and_recorded(project, env, "-E")
    assert plain.returncode == 0, plain
    assert plain.stdout.count("USER SITECUSTOMIZE") == 1, plain
    assert str(project / "site" / "sitecustomize.py") in plain.stdout, plain
    assert recorded == plain
    assert query("SELECT count(*) FROM process") == [(2,)]
    # It ran after the child's recording started: instrumented, nothing to warn about.
    calls = query(
        """SELECT c.id >> 52, f.module, f.qualname FROM call c
           JOIN function f ON f.id = c.function WHERE f.qualname = 'customize'"""
    )
    assert calls == [(1, "sitecustomize", "customize")]
    assert query("SELECT problems FROM run") == [([],)]

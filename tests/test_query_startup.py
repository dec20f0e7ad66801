"""What a query command loads: DuckDB and rich, never the recorder.

A query reads a recording; it has no use for the native extension (cffi),
the instrumentation (libcst) or the capture side, nor for numpy, and each of
them costs its start-up (``benchmarks/query_startup.py`` measures it).
``scope --help`` loads neither DuckDB nor rich.  Each command runs in a
subprocess, as ``scope`` runs it, and says at exit which modules it loaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from scope.cli import cli

from .conftest import clean_env, run, wait_for_service_to_leave

#: modules only recording needs: a query loading any of them (or one of theirs) is slower
RECORDER_ONLY = ("scope.native", "scope.instrument", "scope.capture", "libcst", "numpy", "cffi")
#: what ``--help`` needs none of
QUERY_ONLY = ("duckdb", "_duckdb", "rich", "scope.query", "scope.storage", "scope.config")

#: runs the command line in argv as the ``scope`` script does, then writes the
#: names of every module loaded (after everything else at exit) to the file named
#: in SCOPE_TEST_MODULES
LOADED = """
import atexit, json, os, sys

def note():
    with open(os.environ["SCOPE_TEST_MODULES"], "w") as f:
        json.dump(sorted(sys.modules), f)

atexit.register(note)
from scope.launch import main
main(sys.argv[1:])
"""

APP = """\
class Account:
    def __init__(self, balance):
        self.balance = balance

    def withdraw(self, amount):
        if amount > self.balance:
            raise ValueError("not enough")
        self.balance -= amount


def main():
    account = Account(100)
    account.withdraw(30)
    try:
        account.withdraw(500)
    except ValueError:
        pass


main()
"""

TESTS = """\
from app import Account


def test_withdraw():
    account = Account(10)
    account.withdraw(3)
    assert account.balance == 7
"""

#: each query command, with arguments that make it answer from the recording the
#: ``recording`` fixture makes (run 1: app.py at args level; run 2: a pytest session)
QUERIES = {
    "runs": ["runs"],
    "status": ["status"],
    "calls": ["calls", "--run", "1", "--arg", "amount"],
    "path": ["path", "1:2", "--run", "1"],
    "exceptions": ["exceptions", "--run", "1"],
    "history": ["history", "--run", "1", "--attribute", "balance"],
    "diff": ["diff", "1", "2"],
    "sql": ["sql", "SELECT count(*) FROM call"],
    "export": ["export", "--run", "1", "--format", "chrome", "-o", "run.trace.json"],
    "view": ["view", "--run", "1", "-o", "run.html"],
    "top": ["top", "--run", "1"],
    "tree": ["tree", "--run", "1"],
    "tests": ["tests"],
    "test": ["test", "test_withdraw"],
}
#: commands that are not queries, and why they may load the recorder's modules
NOT_QUERIES = {
    "run": "records a program",
    "plan": "says what the instrumentation would do: it runs its analysis",
    "combine": "writes a recording",
    "recover": "stores rings that killed programs left (the native reader)",
    "cache": "the instrumentation's code cache",
    "rm": "rewrites the recording (and would take runs from the queries here)",
    "prune": "rewrites the recording (and would take runs from the queries here)",
}


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a recorded run (args level) and a recorded pytest session."""
    project = tmp_path_factory.mktemp("startup")
    (project / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (project / "app.py").write_text(APP)
    (project / "test_app.py").write_text(TESTS)
    recorded = run([sys.executable, "-m", "scope", "run", "--level", "args", "app.py"], project)
    assert recorded.returncode == 0, recorded.stderr
    wait_for_service_to_leave(project)
    tested = run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--scope", "test_app.py"],
        project,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    wait_for_service_to_leave(project)
    return project


def loaded_by(args: list[str], project: Path) -> list[str]:
    """Run ``scope ARGS`` in ``project``; the modules it loaded (it must succeed)."""
    noted = project / "modules.json"
    noted.unlink(missing_ok=True)
    env = clean_env({"SCOPE_TEST_MODULES": str(noted)})
    result = run([sys.executable, "-c", LOADED, *args], project, env=env)
    assert result.returncode == 0, result.stderr
    return list(json.loads(noted.read_text()))


def within(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    """The modules that are one of ``packages`` or in one."""
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def test_every_command_is_a_query_or_says_why_not() -> None:
    # A new command is checked here once it is added to QUERIES (or to NOT_QUERIES).
    assert sorted(cli.commands) == sorted({*QUERIES, *NOT_QUERIES})


@pytest.mark.parametrize("command", sorted(QUERIES))
def test_a_query_loads_nothing_of_the_recorder(recording: Path, command: str) -> None:
    modules = loaded_by(QUERIES[command], recording)
    assert "scope.query.api" in modules  # it did ask the recording
    assert within(modules, RECORDER_ONLY) == []


@pytest.mark.parametrize("command", ["top", "calls", "tree", "runs"])
def test_json_loads_no_rich(recording: Path, command: str) -> None:
    modules = loaded_by([*QUERIES[command], "--json"], recording)
    assert within(modules, ("rich",)) == []
    assert within(modules, RECORDER_ONLY) == []


@pytest.mark.parametrize("args", [["--help"], ["top", "--help"], ["--version"]])
def test_help_loads_no_query_machinery(tmp_path: Path, args: list[str]) -> None:
    modules = loaded_by(args, tmp_path)
    assert "click" in modules
    assert within(modules, QUERY_ONLY + RECORDER_ONLY) == []


def test_the_live_folder_module_keeps_its_old_name() -> None:
    # It moved out of scope.native; code that imports it from there gets the same module.
    from scope.native import live

    import scope.live

    assert live is scope.live
    assert sys.modules["scope.native.live"] is scope.live

"""Recordings are private: they hold arguments and values, so only their owner reads them.

Under the usual umask (022) a new ``.scope/`` is made 0700 and a new recording
0600, whether the recording service or the program stores it, as ssh and gpg
keep their files.  What exists already keeps its permissions: scope never
loosens them, and does not change a folder the user made.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import clean_env, wait_for_service_to_leave

APP = "def f(n):\n    return n + 1\n\nf(1)\n"


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """Run the test's processes under umask 022 (they inherit it)."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def record(project: Path, service: str, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scope", "run", *args, "app.py"],
        cwd=project,
        env=clean_env({"SCOPE_SERVICE": service}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("service", ["1", "0"], ids=["by the service", "in the program"])
def test_a_new_recording_and_its_folder_are_the_users_alone(project, write, service):
    write("app.py", APP)
    project.chmod(0o755)
    record(project, service)
    folder = project / ".scope"
    assert mode(folder) == 0o700
    assert mode(folder / "scope.duckdb") == 0o600
    wait_for_service_to_leave(project)
    for leftover in folder.iterdir():  # a write-ahead log, if DuckDB left one
        if leftover.is_file():
            assert mode(leftover) & 0o077 == 0, leftover
    assert mode(project) == 0o755  # the project's own folder is not scope's to change


@pytest.mark.parametrize("service", ["1", "0"], ids=["by the service", "in the program"])
def test_a_recording_named_elsewhere_is_private_too(project, write, service):
    write("app.py", APP)
    record(project, service, "--db", "reports/run.duckdb")
    assert mode(project / "reports") == 0o700
    assert mode(project / "reports" / "run.duckdb") == 0o600


@pytest.mark.parametrize("service", ["1", "0"], ids=["by the service", "in the program"])
def test_what_exists_keeps_its_permissions(project, write, service):
    write("app.py", APP)
    record(project, service)
    wait_for_service_to_leave(project)
    folder, db = project / ".scope", project / ".scope" / "scope.duckdb"
    folder.chmod(0o750)  # as the user chose, or an older scope made it
    db.chmod(0o640)
    record(project, service)
    wait_for_service_to_leave(project)
    assert (mode(folder), mode(db)) == (0o750, 0o640)

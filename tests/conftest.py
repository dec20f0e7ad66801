"""Shared helpers: run programs with and without scope in subprocesses, read recordings."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from scope import live


@dataclass(frozen=True)
class Result:
    """What a finished process printed and returned."""

    returncode: int
    stdout: str
    stderr: str


#: set by .ci/run in each session of its matrix after the first, to that first
#: version: tests marked matrix_once ran there, and are left out here (CI's time
#: on 2 cores is bounded; each of them would only repeat what that session showed)
RAN_IN_MATRIX = "SCOPE_TEST_MATRIX_ONCE_RAN_ON"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In CI's later sessions, leave out what its first session ran (RAN_IN_MATRIX)."""
    if not os.environ.get(RAN_IN_MATRIX):
        return
    kept = [item for item in items if not item.get_closest_marker("matrix_once")]
    if len(kept) < len(items):
        config.hook.pytest_deselected(
            items=[item for item in items if item.get_closest_marker("matrix_once")]
        )
        items[:] = kept


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which tests a later session of CI's matrix left to its first."""
    ran_on = os.environ.get(RAN_IN_MATRIX)
    if ran_on:
        terminalreporter.write_line(
            f"tests marked matrix_once were deselected: they ran on CPython {ran_on} "
            f"in this CI matrix ({RAN_IN_MATRIX})"
        )


def unavailable(reason: str, required_by: str) -> None:
    """Skip a test this machine cannot run, or fail it where ``required_by`` is set to 1.

    Some tests need what a developer's machine may lack (root to mount a
    filesystem, the shared corpus scripts next to the checkout): there they
    are skipped with the reason, which ``-ra`` prints.  CI sets the variable
    ``required_by``, so there the same test fails instead of passing unseen.
    """
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{reason} ({required_by}=1 requires this test to run)")
    pytest.skip(reason)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without any SCOPE_* setting or terminal size, plus ``extra``.

    ``SCOPE_TESTS_SERVICE=0`` stores every recording a test starts from inside
    the recorded program (``SCOPE_SERVICE=0``), not by the recording service.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOPE_")}
    if os.environ.get("SCOPE_TESTS_SERVICE") == "0":
        env["SCOPE_SERVICE"] = "0"
    env.pop("PYTHONPATH", None)
    for size in ("COLUMNS", "LINES"):  # xdist's workers set them: output is piped here
        env.pop(size, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def run(
    args: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> Result:
    """Run ``args`` in ``cwd`` and collect its output."""
    proc = subprocess.run(
        list(args),
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def wait_for_service_to_leave(
    project: Path, timeout: float = 60.0, db: Path | None = None, stored: bool = True
) -> None:
    """Wait until every process folder is stored (unless not ``stored``: a disk that
    failed keeps them) and no service holds the recording (the project's, or ``db``)."""
    root = Path(f"{db or project / '.scope' / 'scope.duckdb'}.live")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            left = [n for n in os.listdir(root) if "-" in n]
        except FileNotFoundError:
            left = []  # the service removed the live folder as it left
        if not (left and stored) and lock_free(root / "service.lock"):
            return
        time.sleep(0.05)
    raise AssertionError(f"the service did not store everything and leave: {os.listdir(root)}")


def lock_free(lock: Path) -> bool:
    """Whether no process holds ``lock`` (a service's lock: it has left)."""
    return not live.lock_held(str(lock))


def assert_no_count_is_negative(query: Callable[..., list[tuple[object, ...]]]) -> None:
    """Every counter of the recording's runs and threads is 0 or more: a count made
    twice on the way (once by a signal's note, once at the end) once showed as -1."""
    counters = query(
        """SELECT events_captured, events_stored, events_dropped, calls_stored, calls_unfinished
           FROM run"""
    ) + query("SELECT events_produced, events_dropped, ring_high_water, blocked_ns FROM thread")
    assert counters and all(isinstance(n, int) and n >= 0 for row in counters for n in row), (
        counters
    )


@pytest.fixture
def in_program(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recordings this test starts are stored from inside the program, by scope's
    writer threads, not by the recording service (``service = false``)."""
    monkeypatch.setenv("SCOPE_TESTS_SERVICE", "0")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder (with a pyproject.toml, so it is its own project root)."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    return tmp_path


@pytest.fixture
def write(project: Path) -> Callable[[str, str], Path]:
    """Write a dedented file into the project and return its path."""

    def _write(name: str, text: str) -> Path:
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return _write


@pytest.fixture
def python(project: Path) -> Callable[..., Result]:
    """Run plain ``python ARGS`` in the project."""
    return lambda *args, **kw: run([sys.executable, *args], project, **kw)


@pytest.fixture
def scope(project: Path) -> Callable[..., Result]:
    """Run ``python -m scope ARGS`` in the project."""
    return lambda *args, **kw: run([sys.executable, "-m", "scope", *args], project, **kw)


@pytest.fixture
def query(project: Path) -> Callable[..., list[tuple[object, ...]]]:
    """Run SQL against the project's default recording (read-only)."""

    def _query(sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        # A recording service lingers a moment after the run it stored, holding the
        # file: the program's exit does not wait for it to let go.
        wait_for_service_to_leave(project, stored=False)
        con = duckdb.connect(str(project / ".scope" / "scope.duckdb"), read_only=True)
        try:
            return con.execute(sql, list(params)).fetchall()
        finally:
            con.close()

    return _query

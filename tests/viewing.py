"""What the viewer's tests share: a program recorded in a project, and a recording served
by ``scope view``'s server on a thread of the test's process."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from scope.query.api import Recording
from scope.query.viewer.server import ViewServer

from .conftest import clean_env, wait_for_service_to_leave


def record(project: Path, program: str, *flags: str) -> Path:
    """``scope run FLAGS app.py`` of ``program`` in ``project`` (made a project of its
    own); the recording's path, once the recording service has let go of it."""
    (project / "pyproject.toml").write_text(f"[project]\nname = '{project.name}'\n")
    (project / "app.py").write_text(program)
    subprocess.run(
        [sys.executable, "-m", "scope", "run", *flags, "app.py"],
        cwd=project,
        env=clean_env(),
        check=True,
        capture_output=True,
    )
    wait_for_service_to_leave(project)
    return project / ".scope" / "scope.duckdb"


@contextlib.contextmanager
def serving(recording: Recording, stop_within: float = 30.0) -> Iterator[ViewServer]:
    """A server of the recording's latest run, answering until the block ends."""
    running = ViewServer(recording, recording.resolve_run())
    thread = threading.Thread(target=running.serve, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.stop()
        thread.join(stop_within)

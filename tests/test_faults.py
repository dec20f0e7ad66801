"""When storage fails, the program does not notice; scope says once what it lost.

The disk filling up is simulated with a small tmpfs (mounting needs root; the
test says so when it cannot mount).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import clean_env

PROGRAM = """
def f(i):
    return i + 1

t = 0
for i in range(3_000_000):
    t = f(t)
print(t)
"""


@pytest.fixture
def tiny_disk(tmp_path):
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_loses_calls_not_the_program(project, write, python, tiny_disk):
    write("many.py", PROGRAM)
    plain = python("many.py")
    recorded = subprocess.run(
        [sys.executable, "-m", "scope", "run", "--db", str(tiny_disk / "rec.duckdb"), "many.py"],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (recorded.returncode, recorded.stdout) == (plain.returncode, plain.stdout)
    (warning,) = recorded.stderr.splitlines()
    # One line, naming the real cause and what was lost.
    assert warning.startswith("scope: warning: the recording stopped storing calls")
    assert "No space left on device" in warning or "disk" in warning.lower(), warning
    assert "events lost" in warning

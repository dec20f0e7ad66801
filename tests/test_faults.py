"""When storage fails, the program does not notice; scope says once what it lost.

The disk filling up is a real full filesystem: a 3 MiB tmpfs.  The disk turning
read-only mid-run is a real one too: an ext4 image on a loop device, made to
fail with ext4's own test switch (``trigger_fs_error``: with
``errors=remount-ro`` the filesystem turns read-only under open files, as after
a disk error).  Mounting one
needs root (CAP_SYS_ADMIN), which a developer's machine may not give the test
run; there the test is skipped and says why.  CI sets SCOPE_TEST_REQUIRE_MOUNT=1,
which turns that skip into a failure, so the fault is always exercised there.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import clean_env, run, unavailable, wait_for_service_to_leave

PROGRAM = """
def f(i):
    return i + 1

t = 0
for i in range(3_000_000):
    t = f(t)
print(t)
"""


#: CI sets it: there a machine that cannot mount filesystems fails these tests.
REQUIRE_MOUNT = "SCOPE_TEST_REQUIRE_MOUNT"


def unmount(mount_point: Path) -> None:
    """Unmount, once a service that has just left has closed its files there."""
    deadline = time.monotonic() + 10
    while subprocess.run(["umount", str(mount_point)], capture_output=True).returncode:
        if time.monotonic() > deadline:
            subprocess.run(["umount", str(mount_point)], check=True)
        time.sleep(0.05)


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
        unavailable(f"cannot mount a tmpfs without root: {mounted.stderr.strip()}", REQUIRE_MOUNT)
    yield mount_point
    unmount(mount_point)


@pytest.fixture
def failing_disk(tmp_path):
    """An ext4 filesystem and a function that turns it read-only under open files."""
    image, mount_point = tmp_path / "ext4.img", tmp_path / "ext4"
    mount_point.mkdir()
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    for command in (
        ["mkfs.ext4", "-q", "-F", str(image)],
        ["mount", "-o", "loop,errors=remount-ro", str(image), str(mount_point)],
    ):
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except FileNotFoundError as exc:
            unavailable(f"{command[0]} is not installed: {exc}", REQUIRE_MOUNT)
        if done.returncode != 0:
            unavailable(
                f"cannot make an ext4 loop filesystem: {done.stderr.strip()}", REQUIRE_MOUNT
            )
    source = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE", str(mount_point)], capture_output=True, text=True
    ).stdout.strip()
    trigger = Path("/sys/fs/ext4") / Path(source).name / "trigger_fs_error"

    def fail() -> None:
        trigger.write_text("scope test\n")

    yield mount_point, fail
    unmount(mount_point)


@pytest.mark.parametrize("service", ["0", "1"], ids=["in the program", "by the service"])
def test_a_full_disk_loses_calls_not_the_program(write, python, project, tiny_disk, service):
    write("many.py", PROGRAM)
    plain = python("many.py")
    db = tiny_disk / "rec.duckdb"
    recorded = run(
        [sys.executable, "-m", "scope", "run", "--db", str(db), "many.py"],
        project,
        clean_env({"SCOPE_SERVICE": service}),
        timeout=300,
    )
    wait_for_service_to_leave(project, db=db)  # before the disk is unmounted
    assert (recorded.returncode, recorded.stdout) == (plain.returncode, plain.stdout)
    (warning,) = recorded.stderr.splitlines()
    # One line, naming the real cause and what was lost.
    assert "No space left on device" in warning or "disk" in warning.lower(), warning
    if service == "0":
        assert warning.startswith("scope: warning: the recording stopped storing calls")
        assert "events lost" in warning
    else:  # the rings' files do not fit either: nothing drains them
        assert "could not be made as files" in warning and "events dropped" in warning


TWO_PHASES = """
import sys

def f(i):
    return i + 1

t = 0
for i in range(200_000):
    t = f(t)
print("first", t, flush=True)
sys.stdin.readline()  # the disk fails meanwhile
for i in range(2_000_000):
    t = f(t)
print("second", t)
"""


def two_phases(
    command: list[str], cwd: Path, between=lambda: None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run TWO_PHASES; ``between()`` runs once the first phase is done."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env or clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    between()
    out, err = process.communicate("go\n", timeout=300)
    return process.returncode, first + out, err


@pytest.mark.parametrize("service", ["0", "1"], ids=["in the program", "by the service"])
def test_a_disk_turned_read_only_mid_run_loses_calls_not_the_program(
    write, project, failing_disk, service
):
    mount_point, fail = failing_disk
    write("phases.py", TWO_PHASES)
    plain = two_phases([sys.executable, "phases.py"], project)
    db = mount_point / "rec.duckdb"
    live = mount_point / "rec.duckdb.live"

    def fail_once_stored() -> None:
        # The service may still be starting: the disk fails once it stores the run.
        deadline = time.monotonic() + 60
        stored = db.exists if service == "0" else lambda: any(live.glob("*/assigned.json"))
        while not stored() and time.monotonic() < deadline:
            time.sleep(0.01)
        fail()

    recorded = two_phases(
        [sys.executable, "-m", "scope", "run", "--db", str(db), "phases.py"],
        project,
        between=fail_once_stored,
        env=clean_env({"SCOPE_SERVICE": service}),
    )
    wait_for_service_to_leave(project, db=db, stored=False)  # before the disk is unmounted
    assert recorded[:2] == plain[:2] and plain[0] == 0
    (warning,) = recorded[2].splitlines()
    assert warning.startswith("scope: warning: the recording stopped storing calls"), warning
    # DuckDB meets the read-only disk as a failed write or a failed fsync, by timing
    failed = "Read-only file system" in warning or "fsync failed" in warning
    assert failed and "events lost" in warning, warning

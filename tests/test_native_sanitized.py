"""The ring core's own C unit tests, built and run under sanitizers.

``tests/native/test_core.c`` exercises native/scope_core.c without Python:
ids, parents and end ids, the value arena across its wrap, a full arena, partial
drains, thread exit, the TSC clock, and 8 threads x 1M events with a concurrent
drainer under both overflow policies.  It is compiled with AddressSanitizer +
UndefinedBehaviorSanitizer, with ThreadSanitizer, and once more with the TSC
switched off as on machines that have none; any report fails the test.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    ROOT / "tests" / "native" / "test_core.c",
    ROOT / "native" / "scope_core.c",
    ROOT / "native" / "scope_batch.c",
    ROOT / "native" / "scope_reader.c",
]
#: plain C, built without Python's headers: the same on every version
pytestmark = pytest.mark.matrix_once

SANITIZERS = {
    "address,undefined": ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
    "thread": ["-fsanitize=thread"],
    # The core as machines without x86's TSC build it: the clock is monotonic only.
    "address,undefined without TSC": [
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
        "-DSCOPE_NO_TSC",
    ],
}


@pytest.mark.parametrize("sanitizer", sorted(SANITIZERS))
def test_core_under_sanitizer(sanitizer, tmp_path):
    binary = tmp_path / "test_core"
    build = subprocess.run(
        [
            os.environ.get("CC", "gcc"),
            "-std=gnu11",
            "-O1",
            "-g",
            "-fno-omit-frame-pointer",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wno-unused-parameter",
            *SANITIZERS[sanitizer],
            f"-I{ROOT / 'native'}",
            *map(str, SOURCES),
            "-lpthread",
            "-o",
            str(binary),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", TSAN_OPTIONS="halt_on_error=1")
    result = subprocess.run([str(binary)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("all passed")
    if "-DSCOPE_NO_TSC" in SANITIZERS[sanitizer]:
        assert "monotonic only" in result.stdout
    assert "runtime error" not in result.stderr and "WARNING" not in result.stderr

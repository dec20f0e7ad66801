"""Packaging: the wheel holds the single import name ``scope``, with the stages as sub-packages."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scope.interpreter import TESTED

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_has_only_the_scope_package_and_the_extension(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("scope_recorder-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"scope"}
    for stage in ("instrument", "capture", "native", "storage", "query"):
        assert f"scope/{stage}/__init__.py" in names
    assert any(n.startswith("scope/native/_native.") and n.endswith(".so") for n in names)
    assert "scope/py.typed" in names
    # The metadata says what CI tests, and no more (scope.interpreter refuses the rest).
    (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    metadata = zipfile.ZipFile(wheel).read(metadata_name).decode()
    first, last = TESTED[0], TESTED[-1]
    (requires,) = re.findall(r"^Requires-Python: (.*)$", metadata, re.M)
    assert set(requires.split(",")) == {f">={first[0]}.{first[1]}", f"<{last[0]}.{last[1] + 1}"}
    classified = re.findall(r"Programming Language :: Python :: (3\.\d+)$", metadata, re.M)
    assert classified == [f"{major}.{minor}" for major, minor in TESTED]
    # Every header the extension is built from travels with its sources.
    for header in ("compat.h", "py_recorder.h", "scope_core.h", "scope_native.h"):
        assert f"scope/native/{header}" in names

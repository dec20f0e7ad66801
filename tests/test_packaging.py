"""Packaging: the wheel holds the single import name ``scope``, with the stages as sub-packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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

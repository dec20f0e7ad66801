"""Bytes that are not UTF-8 in argv, the cwd or a script's path: the program runs as
python runs it, and the run is stored, each such byte as its ``\\xNN`` escape.

Python holds these bytes as lone surrogates, which DuckDB refuses; a run given
``$'\\xff'`` was lost (its service failed on every statement).  Each case is
compared with plain python, stored by the recording service and from inside
the program.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from .conftest import clean_env, wait_for_service_to_leave

APP = """\
import sys

def echo(text):
    if text == "boom":
        raise ValueError("bad \\udcff text")
    return text

print(ascii(sys.argv), ascii(__file__))
echo(sys.argv[-1])
try:
    echo("boom")
except ValueError as exc:
    print("caught", ascii(str(exc)))
"""


def run(args: list[bytes], cwd: bytes, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, timeout=120)


def escaped(raw: bytes) -> str:
    """``raw`` as scope stores it: UTF-8, each byte that is not as ``\\xNN``."""
    return raw.decode("utf-8", "backslashreplace")


def stored(db: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


CASES = {
    "argv": (b"app.py", [b"\xff"], b""),
    "cwd": (b"app.py", [b"x"], b"d\xfe"),
    "script": (b"app\xfd.py", [b"x"], b""),
}


@pytest.mark.parametrize("service", ["1", "0"], ids=["by the service", "in the program"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_program_given_bytes_that_are_not_utf8_runs_and_is_stored(project, case, service):
    script, args, folder = CASES[case]
    where = os.path.join(bytes(project), folder) if folder else bytes(project)
    os.makedirs(where, exist_ok=True)
    with open(os.path.join(where, script), "w") as out:
        out.write(APP)
    env = clean_env({"SCOPE_SERVICE": service})
    plain = run([sys.executable.encode(), script, *args], where, env)
    recorded = run(
        [sys.executable.encode(), b"-m", b"scope", b"run", b"--level", b"args", script, *args],
        where,
        env,
    )
    assert (recorded.returncode, recorded.stdout, recorded.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )
    assert plain.returncode == 0 and b"caught" in plain.stdout
    db = project / ".scope" / "scope.duckdb"  # the project's root: its pyproject.toml
    wait_for_service_to_leave(project)
    (argv, cwd, status), *_ = stored(db, "SELECT argv, cwd, status FROM run")
    assert (argv, status) == ([escaped(a) for a in (script, *args)], "complete")
    assert cwd == escaped(where)
    calls = stored(db, "SELECT count(*) FROM call")
    assert calls == [(2,)]
    (message,), *_ = stored(db, "SELECT exception FROM exception")
    assert message == "ValueError('bad \\\\xff text')"
    (file,), *_ = stored(db, "SELECT file FROM function")
    assert file == escaped(os.path.join(where, script))


def test_a_recording_whose_path_duckdb_cannot_take_is_refused_clearly(project, write):
    write("app.py", "print('ran')\n")
    os.makedirs(bytes(project) + b"/x\xff")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scope",
            "runs",
            "--db",
            os.fsdecode(bytes(project) + b"/x\xff/r.duckdb"),
        ],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "only UTF-8 file names" in result.stderr or "no recording" in result.stderr

"""Every supported CPython, and the next one: the C side compiles, and the Python side knows.

The CPython side of the recorder (``native/py_*.c``) reaches CPython's internals
only through ``native/compat.h``.  These tests compile it against the headers of
each version CI tests (the interpreters pyenv holds) and against CPython 3.14's,
which no interpreter here runs: they come from Debian's ``libpython3.14-dev``,
fetched from deb.debian.org and checked against the archive's signed index.
Warnings are errors, so a shim that stops fitting a version fails here first.

``scope.interpreter`` refuses, in one line, the interpreters scope cannot
record in; a capability missing from an interpreter it records in is said once
and kept among the run's problems.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from scope import interpreter

from .conftest import unavailable
from .cross_version import CALLS, MIXED, TASKS, THREADS, compare, summary

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "native"
PYTHON_SIDE = sorted(NATIVE.glob("py_*.c"))
FLAGS = ["-std=gnu11", "-fsyntax-only", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"]

DEBIAN = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def compile_python_side(includes: list[str], *defines: str) -> None:
    """Compile every py_*.c against ``includes``; fail with the compiler's words."""
    for source in PYTHON_SIDE:
        command = ["gcc", *FLAGS, *defines, f"-I{NATIVE}", *(f"-I{i}" for i in includes)]
        result = subprocess.run([*command, str(source)], capture_output=True, text=True)
        assert result.returncode == 0, f"{source.name}:\n{result.stderr[-3000:]}"


def pyenv_python(version: tuple[int, int]) -> Path | None:
    """pyenv's interpreter of ``version`` (any patch level), if this machine has one."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = sorted((root / "versions").glob(f"{version[0]}.{version[1]}.*/bin/python"))
    return found[-1] if found else None


@pytest.mark.matrix_once  # every version's headers, from any version
@pytest.mark.parametrize("version", interpreter.TESTED, ids=lambda v: f"{v[0]}.{v[1]}")
def test_the_python_side_compiles_for_every_tested_version(version):
    python = pyenv_python(version) if version != sys.version_info[:2] else Path(sys.executable)
    if python is None:
        unavailable(
            f"no CPython {version[0]}.{version[1]} under pyenv", "SCOPE_TEST_REQUIRE_MATRIX"
        )
    include = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    compile_python_side([include])
    # the benchmark's build without the fast path for reading ints (call_overhead.py)
    compile_python_side([include], "-DSCOPE_NO_FAST_INT")


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        data: bytes = response.read()
    return data


#: where Debian keeps CPython 3.14's headers, newest first: a suite that has moved
#: on to a later Python still leaves 3.14 in the next
SUITES = ("sid", "forky", "trixie-backports")


def _verified_index(tmp: Path, suite: str) -> dict[str, dict[str, str]]:
    """A suite's amd64 package index, its signature and checksum verified."""
    release = tmp / f"{suite}.InRelease"
    release.write_bytes(_fetch(f"{DEBIAN}/dists/{suite}/InRelease"))
    signature = subprocess.run(
        ["gpgv", "--keyring", str(KEYRING), str(release)], capture_output=True, text=True
    )
    assert signature.returncode == 0, signature.stderr
    wanted = "main/binary-amd64/Packages.xz"
    sums = [line.split() for line in release.read_text().splitlines() if line.endswith(wanted)]
    packed = _fetch(f"{DEBIAN}/dists/{suite}/{wanted}")
    assert any(hashlib.sha256(packed).hexdigest() == s[0] for s in sums if len(s[0]) == 64)
    packages: dict[str, dict[str, str]] = {}
    for stanza in lzma.decompress(packed).decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line)
        if "Package" in fields:
            packages[fields["Package"]] = fields
    return packages


@pytest.fixture(scope="module")
def cpython_314_headers(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The include folders of Debian's CPython 3.14 headers (fetched for this session)."""
    if shutil.which("dpkg-deb") is None or shutil.which("gpgv") is None or not KEYRING.exists():
        unavailable("dpkg-deb, gpgv or Debian's keyring missing", "SCOPE_TEST_REQUIRE_HEADERS")
    tmp = tmp_path_factory.mktemp("cpython-3.14")
    try:
        found = (_verified_index(tmp, suite).get("libpython3.14-dev") for suite in SUITES)
        package = next((p for p in found if p is not None), None)
        assert package is not None, f"no libpython3.14-dev in Debian's {', '.join(SUITES)}"
        deb = _fetch(f"{DEBIAN}/{package['Filename']}")
    except OSError as exc:
        unavailable(f"deb.debian.org cannot be reached: {exc}", "SCOPE_TEST_REQUIRE_HEADERS")
    assert hashlib.sha256(deb).hexdigest() == package["SHA256"]
    (tmp / "dev.deb").write_bytes(deb)
    subprocess.run(["dpkg-deb", "-x", str(tmp / "dev.deb"), str(tmp / "root")], check=True)
    include = tmp / "root" / "usr" / "include"
    assert (include / "python3.14" / "internal" / "pycore_interpframe_structs.h").exists()
    return [str(include / "python3.14"), str(include)]


@pytest.mark.matrix_once
def test_the_python_side_compiles_for_cpython_3_14(cpython_314_headers):
    compile_python_side(cpython_314_headers)


@pytest.mark.matrix_once
def test_compat_h_finds_frames_in_3_14s_new_header(cpython_314_headers, tmp_path):
    probe = tmp_path / "probe.c"
    probe.write_text(
        '#include "compat.h"\n'
        "#if !SCOPE_HAVE_FRAMES\n#error no frames\n#endif\n"
        '_Static_assert(FRAME_OWNED_BY_GENERATOR == 1, "the owner compat.h compares");\n'
        "const void *probe(void) { return scope_frame_caller(scope_current_frame()); }\n"
    )
    command = ["gcc", *FLAGS, f"-I{NATIVE}", *(f"-I{i}" for i in cpython_314_headers)]
    result = subprocess.run([*command, str(probe)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---- scope.interpreter: who is refused, in one line ----


def test_a_tested_version_is_accepted_quietly():
    assert interpreter.VERSION in interpreter.TESTED
    assert interpreter.check({}) is None


def test_the_interpreter_and_machine_are_named_as_the_platform_module_names_them():
    import platform

    assert interpreter.implementation() == platform.python_implementation()
    assert interpreter.version_text() == platform.python_version()
    assert interpreter.machine() == platform.platform()


def test_a_free_threaded_build_is_refused(monkeypatch):
    monkeypatch.setattr(interpreter, "free_threaded", lambda: True)
    with pytest.raises(interpreter.UnsupportedInterpreter, match="free-threaded"):
        interpreter.check({})


def test_an_untested_version_is_refused_unless_asked_for(monkeypatch):
    monkeypatch.setattr(interpreter, "VERSION", (3, 14))
    with pytest.raises(interpreter.UnsupportedInterpreter) as refused:
        interpreter.check({})
    assert "supported: 3.11, 3.12, 3.13" in str(refused.value)
    assert "SCOPE_UNTESTED_PYTHON=1" in str(refused.value)
    notice = interpreter.check({"SCOPE_UNTESTED_PYTHON": "1"})
    assert notice is not None and "not tested" in notice


def test_a_version_nobody_prepared_for_is_refused_even_when_asked(monkeypatch):
    monkeypatch.setattr(interpreter, "VERSION", (3, 15))
    with pytest.raises(interpreter.UnsupportedInterpreter) as refused:
        interpreter.check({"SCOPE_UNTESTED_PYTHON": "1"})
    assert "SCOPE_UNTESTED_PYTHON" not in str(refused.value)


def test_the_extension_was_built_for_this_interpreter_and_reads_its_frames():
    from scope import native

    found = native.capabilities()
    assert (found["built_for_major"], found["built_for_minor"]) == sys.version_info[:2]
    assert found["frames"] is True


#: runs ``scope run app.py`` in a process whose interpreter is first made to look
#: unlike this one by PATCH
LAUNCH = """
import atexit, sys, sysconfig
atexit.register(lambda: open("loaded.txt", "w").write(str("scope.native._native" in sys.modules)))
{patch}
sys.argv = ["scope", "run", "app.py"]
from scope.launch import main
main()
"""


def launch_patched(python, patch: str):
    return python("-c", LAUNCH.format(patch=patch))


def test_scope_run_refuses_a_free_threaded_build_in_one_line(project, write, python):
    write("app.py", "print('ran')\n")
    result = launch_patched(
        python,
        "real = sysconfig.get_config_var\n"
        "sysconfig.get_config_var = lambda n: 1 if n == 'Py_GIL_DISABLED' else real(n)",
    )
    assert result.returncode == 1
    assert result.stdout == ""  # the program did not run
    assert result.stderr.startswith("scope: error: scope does not support free-threaded builds")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    # ... and the extension never loaded, so it cannot have turned the GIL on
    assert (project / "loaded.txt").read_text() == "False"


def test_scope_run_refuses_an_untested_version_in_one_line(write, python):
    write("app.py", "print('ran')\n")
    result = launch_patched(python, "import scope.interpreter as i; i.VERSION = (3, 14)")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("scope: error: scope does not support CPython")
    assert result.stderr.count("\n") == 1


def test_the_pytest_plugin_refuses_an_unsupported_interpreter_as_a_usage_error(write, python):
    write("test_app.py", "def test_it():\n    pass\n")
    result = python(
        "-c",
        "import scope.interpreter as i; i.VERSION = (3, 15)\n"
        "import sys, pytest; sys.exit(pytest.main(['--scope', '-q', '-p', 'no:cacheprovider']))",
    )
    assert result.returncode == 4  # pytest's usage error
    assert "scope: scope does not support CPython" in result.stderr
    assert "Traceback" not in result.stderr


#: an interpreter lacking what scope relies on, made so before ``scope run`` starts,
#: and what the warning says is lost
MISSING = {
    "thread API": (
        "import threading\n"
        "for name in ('_start_new_thread', '_start_joinable_thread'):\n"
        "    if hasattr(threading, name): delattr(threading, name)",
        "this Python has no threading._start_",
        "who started each thread is not recorded",
    ),
    "frames": (
        "from scope import native\n"
        "real = native.capabilities\n"
        "native.capabilities = lambda: {**real(), 'frames': False}",
        "scope cannot read",
        "parents, suspensions and asyncio tasks may be wrong",
    ),
}


@pytest.mark.parametrize("missing", sorted(MISSING))
def test_a_missing_capability_is_said_once_and_kept_as_a_problem(missing, write, python, scope):
    patch, begins, lost = MISSING[missing]
    write("app.py", "def f():\n    return 1\n\nprint(f())\n")
    result = launch_patched(python, patch)
    assert (result.returncode, result.stdout) == (0, "1\n")  # the program ran as ever
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"scope: warning: {begins}") and lost in line, line
    status = scope("status", "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["problems"] == [line.removeprefix("scope: warning: ")]


# ---- the same recording on every version ----


def test_a_mixed_program_records_what_python_runs_and_is_kept_for_comparison(
    write, python, scope, query
):
    write("mixed.py", textwrap.dedent(MIXED))
    plain, recorded = python("mixed.py"), scope("run", "mixed.py")
    assert recorded == plain and plain.returncode == 0
    found = summary({"calls": query(CALLS), "tasks": query(TASKS), "threads": query(THREADS)})
    # What any version must show: asyncio.run's task, and three more, each created by
    # gather_all and run by its own root fetch call; suspensions at yields and awaits.
    fetches = [[f"fetch-{i}", "fetch", "gather_all"] for i in range(3)]
    assert found["tasks"] == [["Task-1", "gather_all", ""], *fetches]
    assert ["worker", "MainThread", ""] in found["threads"]
    numbers = [row for row in found["calls"] if row[1] == "numbers"]
    assert sorted(row[5] for row in numbers) == [3, 4]  # one suspension per item yielded
    fetches = [row for row in found["calls"] if row[1] == "fetch"]
    assert len(fetches) == 3 and all(row[2] == "gather_all" and row[5] >= 1 for row in fetches)
    folder = os.environ.get("SCOPE_CROSS_VERSION_DIR")
    if folder:  # .ci/run compares every version's (tests/cross_version.py)
        name = f"{sys.version_info[0]}.{sys.version_info[1]}.json"
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_text(json.dumps(found, indent=1))


def test_the_cross_version_comparison_tells_a_difference(tmp_path, capsys):
    same = {"calls": [["", "f", "", 0, "returned", 0]], "tasks": [], "threads": []}
    (tmp_path / "3.11.json").write_text(json.dumps(same))
    (tmp_path / "3.12.json").write_text(json.dumps(same))
    assert compare(tmp_path) == 0
    (tmp_path / "3.13.json").write_text(json.dumps({**same, "tasks": [["t", "f", ""]]}))
    assert compare(tmp_path) == 1
    assert "3.13 recorded other tasks than 3.11" in capsys.readouterr().out

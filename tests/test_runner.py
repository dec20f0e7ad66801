"""``python -m scope run`` is like ``python``: the program cannot tell them apart.

In the spirit of coverage.py's ``test_process.py``: a probe program prints
everything the interpreter sets up for a program (``sys.argv``,
``sys.path[0]``, the ``__main__`` module's names, the working directory, its
standard streams, what it reads on stdin) and ends with a chosen exit status;
its output under ``python`` and under ``python -m scope run`` must be
identical, for a script, a ``-m`` module, a package's ``__main__`` (run by
name and as a folder) and ``-c``, with arguments that look like scope's own
options.  Then the ways a program ends, and the ways it fails to start.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import clean_env

PROBE = """
import builtins, os, sys

main = sys.modules["__main__"]
spec = main.__spec__
print("argv", sys.argv)
print("path0", repr(sys.path[0]))
print("name", __name__, main is sys.modules[__name__])
print("file", globals().get("__file__"), globals().get("__cached__", "-"))
print("package", repr(__package__))
print("spec", spec and (spec.name, spec.origin, spec.parent, spec.has_location))
loader = __loader__ if isinstance(__loader__, type) else type(__loader__)
print("loader", loader.__name__)
print("builtins", __builtins__ is builtins or __builtins__ is vars(builtins))
print("doc", repr(__doc__))
print("globals", sorted(globals()))
print("cwd", os.getcwd())
print("stdin", sys.stdin.read().strip(), sys.stdin.isatty(), sys.stdin.encoding)
print("streams", sys.stdout.encoding, sys.stderr.encoding, sys.stdout.line_buffering)
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[-1]))
"""

#: arguments for the program that look like scope's own options
ARGS = ["--db", "x.duckdb", "-m", "--level", "full", "-c", "--", "--help", "7"]


def run(args: list[str], cwd: Path, stdin: str = "") -> tuple[int, str, str]:
    proc = subprocess.run(
        args, cwd=cwd, env=clean_env(), input=stdin, capture_output=True, text=True, timeout=120
    )
    return proc.returncode, proc.stdout, proc.stderr


def both(project: Path, *args: str, stdin: str = "") -> tuple[tuple[int, str, str], ...]:
    """The program's (status, stdout, stderr) under python and under scope run."""
    plain = run([sys.executable, *args], project, stdin)
    recorded = run([sys.executable, "-m", "scope", "run", *args], project, stdin)
    return plain, recorded


@pytest.fixture
def probes(write):
    write("probe.py", PROBE)
    write("pkg/__init__.py", "")
    write("pkg/probe.py", PROBE)
    write("pkg/__main__.py", PROBE)
    write("folder/__main__.py", PROBE)


@pytest.mark.parametrize(
    "how",
    [["probe.py"], ["-m", "pkg.probe"], ["-m", "pkg"], ["folder"], ["-c", PROBE]],
    ids=["script", "module", "package-main", "folder-main", "code"],
)
def test_the_program_sees_what_python_shows_it(project, probes, how):
    plain, recorded = both(project, *how, *ARGS, stdin="from stdin\n")
    assert plain[0] == 7 and "argv" in plain[1], plain
    assert recorded == plain


def test_a_script_given_by_a_relative_path_from_elsewhere(project, probes):
    (project / "sub").mkdir()
    plain = run([sys.executable, "../probe.py", "0"], project / "sub")
    recorded = run([sys.executable, "-m", "scope", "run", "../probe.py", "0"], project / "sub")
    assert plain[0] == 0 and recorded == plain


@pytest.mark.parametrize(
    "body",
    [
        "raise SystemExit('a message for stderr')",
        "raise SystemExit(None)",
        "raise SystemExit(256 + 3)",
        "raise KeyboardInterrupt",
        "import os; os._exit(5)",
        "def f():\n    raise ValueError('deep')\ndef g():\n    f()\ng()",
        "raise RecursionError('made up')",
    ],
    ids=["message", "none", "wraps", "keyboard-interrupt", "os-exit", "traceback", "recursion"],
)
def test_every_ending_is_pythons(write, project, body):
    write("end.py", "print('started', flush=True)\n" + body + "\n")
    plain, recorded = both(project, "end.py")
    assert recorded == plain


def test_sigterm_mid_run_is_143_as_under_python(write, project):
    write(
        "slow.py",
        """
        import time

        def tick(i):
            return i

        print("ready", flush=True)
        for i in range(10**9):
            tick(i)
            time.sleep(0.001)
        """,
    )

    def terminated(args: list[str]) -> int:
        proc = subprocess.Popen(args, cwd=project, env=clean_env(), stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=60)

    plain = terminated([sys.executable, "slow.py"])
    recorded = terminated([sys.executable, "-m", "scope", "run", "slow.py"])
    assert plain == recorded == -signal.SIGTERM


@pytest.mark.parametrize(
    "files, how",
    [
        ({"folder/nothing.py": ""}, ["folder"]),
        ({"bad.py": "def f(:\n    pass\n"}, ["bad.py"]),
        ({"bad.py": "print('x')\n\tprint('tab')\n"}, ["bad.py"]),
        (
            {"pkg/__init__.py": "", "pkg/boom.py": "raise ImportError('at import')\n"},
            ["-m", "pkg.boom"],
        ),
        ({"pkg/__init__.py": "raise RuntimeError('parent')\n", "pkg/m.py": ""}, ["-m", "pkg.m"]),
        ({"pkg/__init__.py": ""}, ["-m", "pkg"]),
        ({}, ["missing.py"]),
        ({}, ["-m", "no_such_module_here"]),
        ({"app.py": "import bad\n", "bad.py": "def f(:\n    pass\n"}, ["app.py"]),
        ({"pkg/__init__.py": ""}, ["-m", "pkg.nothing"]),
    ],
    ids=[
        "folder-without-main",
        "syntax-error",
        "indentation-error",
        "module-raises-at-import",
        "parent-package-raises",
        "package-without-main",
        "no-such-script",
        "no-such-module",
        "imports-a-syntax-error",
        "no-such-submodule",
    ],
)
def test_programs_that_cannot_start_fail_as_under_python(write, project, files, how):
    for name, text in files.items():
        write(name, text)
    plain, recorded = both(project, *how)
    assert plain[0] != 0
    assert recorded == plain


def test_an_uncaught_exception_is_kept_against_the_call_it_was_raised_in(write, scope, query):
    write(
        "app.py", "def inner():\n    raise KeyError('k')\n\ndef outer():\n    inner()\n\nouter()\n"
    )
    assert scope("run", "app.py").returncode == 1
    ((detail, call),) = query("SELECT detail, call FROM event WHERE kind = 'uncaught exception'")
    assert detail == "KeyError: 'k'"
    assert query("SELECT f.qualname FROM call c JOIN function f ON f.id = c.function "
                 "WHERE c.id = ?", [call]) == [("inner",)]  # fmt: skip


@pytest.mark.parametrize(
    ("patterns", "recorded"),
    [
        ((), {"main_work", "lib_work"}),
        (("--only", "lib"), {"lib_work"}),
        (("--only", "app"), {"main_work"}),
        (("--only", "app:main_*"), {"main_work"}),
        (("--only", "app.py", "--only", "lib"), {"main_work", "lib_work"}),
        (("--only", "lib", "--include", "app"), {"main_work", "lib_work"}),
        (("--include", "lib"), {"main_work", "lib_work"}),
        (("--exclude", "app"), {"lib_work"}),
        (("--exclude", "*/app.py"), {"lib_work"}),
    ],
)
def test_patterns_decide_for_the_main_script_as_for_any_module(
    write, scope, query, patterns, recorded
):
    write("lib.py", "def lib_work():\n    return 1\n")
    write("app.py", "import lib\n\ndef main_work():\n    return lib.lib_work()\n\nmain_work()\n")
    assert scope("run", *patterns, "app.py").returncode == 0
    names = {name for (name,) in query("SELECT DISTINCT f.qualname FROM call c JOIN function f "
                                       "ON f.id = c.function AND f.run = c.run")}  # fmt: skip
    assert names == recorded

"""Sources at the edge of what Python reads run under scope exactly as under python.

Two kinds: modules nested too deep for scope's analysis (libcst's parser takes
time growing with the square of the nesting and crashes past a few thousand
levels), which run uninstrumented and are named once on stderr, or fail as
Python fails when Python refuses them too; and scripts that are not UTF-8 and
declare no encoding, which Python refuses with a message of its own when it
reads them from their file.  Each case runs under ``python`` and ``python -m
scope run`` and compares what they print and return.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Result

WARNING = "scope: warning: "

#: What a program does with the big expression, so that its output shows the value.
SHAPES: dict[str, Callable[[int], str]] = {
    "sum": lambda n: "x = " + " + ".join(["1"] * n) + "\nprint(x)\n",
    "and": lambda n: "a = 1\nx = " + " and ".join(["a"] * n) + "\nprint(x)\n",
    "subscripts": lambda n: "a = []\na.append(a)\nx = a" + "[0]" * n + "\nprint(x)\n",
}

FUNCTION = "def double(n):\n    return 2 * n\n\nprint(double(21))\n"


def without_warnings(stderr: str) -> str:
    return "".join(line for line in stderr.splitlines(True) if not line.startswith(WARNING))


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(WARNING)]


def assert_runs_as_python(plain: Result, recorded: Result) -> None:
    """Same status and stdout; the same stderr but for scope's warning line."""
    assert (recorded.returncode, recorded.stdout) == (plain.returncode, plain.stdout), (
        recorded.stderr[-2000:]
    )
    assert without_warnings(recorded.stderr) == plain.stderr


@pytest.mark.parametrize(
    "shape, size",
    [
        ("sum", 2000),
        ("sum", 5000),
        ("sum", 10000),
        ("sum", 20000),
        ("and", 20000),
        ("subscripts", 3000),
    ],
)
@pytest.mark.parametrize("where", ["script", "imported"])
def test_a_huge_expression_runs_as_under_python(write, python, scope, shape, size, where):
    source = FUNCTION + SHAPES[shape](size)
    if where == "script":
        path = write("app.py", source)
        module = "__main__"
    else:
        path = write("big.py", source)
        write("app.py", "import big\n")
        module = "big"
    plain = python("app.py", timeout=60)
    recorded = scope("run", "app.py", timeout=60)
    assert_runs_as_python(plain, recorded)
    if plain.returncode == 0:
        # Python compiles it; scope names it once, as too deep for its analysis.
        (warning,) = warnings_in(recorded.stderr)
        assert f"{module} ({path}) not instrumented: TooComplex: nested more than" in warning
    else:
        # Python refuses it (RecursionError, its one line): so does scope, with no word of its own.
        assert recorded.stderr == plain.stderr
        assert plain.stderr.splitlines()[-1].startswith("RecursionError: ")


def test_expressions_python_compiles_run_right(write, python, scope, query):
    """Within the budget a module is instrumented; beyond it, it runs as is and is a problem."""
    # Nesting libcst cannot parse (an 8,000-operand ``and`` crashed the process)
    # and nesting it parses in seconds (2,000 terms), both compiled by Python.
    write("chain.py", FUNCTION + SHAPES["and"](8000) + SHAPES["sum"](2000))
    # Big, but within the budget: still instrumented.
    fine = "def double(n):\n    return 2 * n\n\n"
    fine += "total = double(" + " + ".join(["1"] * 350) + ")\n"
    fine += "nested = " + "[" * 190 + "double(1)" + "]" * 190 + "\n"
    fine += "either = " + " or ".join(["0"] * 300) + " or double(2)\n"
    write("fine.py", fine)
    write("app.py", "import chain\nimport fine\nprint(fine.total, fine.either, fine.double(4))\n")
    plain = python("app.py", timeout=60)
    recorded = scope("run", "app.py", timeout=60)
    assert plain.returncode == 0, plain.stderr
    assert_runs_as_python(plain, recorded)
    (warning,) = warnings_in(recorded.stderr)
    assert "chain (" in warning and "TooComplex" in warning and "fine" not in warning
    calls = query(
        "SELECT f.module, f.qualname, count(*) FROM call c JOIN function f"
        " ON f.run = c.run AND f.id = c.function GROUP BY ALL"
    )
    assert calls == [("fine", "double", 4)]
    ((problems,),) = query("SELECT problems FROM run")
    assert len(problems) == 1 and "chain" in problems[0] and "TooComplex" in problems[0]


def test_analysis_refuses_what_is_beyond_its_budget_before_libcst(monkeypatch):
    from scope.instrument import analyze

    def no_libcst(source: object) -> None:
        raise AssertionError("libcst was asked")

    monkeypatch.setattr(analyze.cst, "parse_module", no_libcst)
    beyond = [
        "x = " + " + ".join(["1"] * 401),  # Python's own nesting
        "x = " + " or ".join(["a"] * 402),  # flat for Python, nested for libcst
        "import a" + ".b" * 400,
        "from a" + ".b" * 400 + " import c",
    ]
    for source in beyond:
        with pytest.raises(analyze.TooComplex):
            analyze.analyze_source(source)
    monkeypatch.setattr(analyze, "MAX_NODES", 1000)
    with pytest.raises(analyze.TooComplex, match="more than 1000 syntax nodes"):
        analyze.analyze_source("x = [" + "1, " * 1000 + "]")
    # What Python itself refuses raises Python's error, not scope's.
    with pytest.raises(SyntaxError):
        analyze.analyze_source("x = (" * 300 + ")" * 300)


#: Scripts that are not UTF-8 (one with a coding declaration Python ignores, on the
#: second line after a first that is not UTF-8 either).
NON_UTF8 = {
    "in a string": b'# comment\ns = "\xff"\nprint(s)\n',
    "in a comment only": b"print(1)\nprint(2)\n# caf\xe9\n",
    "carriage returns": b'# one\rs = "\xfe"\rprint(s)\r',
    "before a declaration": b"# \xff\n# coding: latin-1\nprint(1)\n",
    "truncated sequence": b"x = 1 + \\\n  2  # \xe2\x82\n",
    "surrogate": b'x = 1\ns = "\xed\xa0\x80"\n',
}


@pytest.mark.parametrize("case", NON_UTF8)
def test_a_script_not_utf8_fails_as_under_python(project, python, scope, case):
    (project / "bad.py").write_bytes(NON_UTF8[case])
    (project / "app.py").write_text("import bad\n")
    # Run, and imported: Python then compiles the bytes, and its error differs (or
    # it has none, for a bad byte in a comment).
    for script in ("bad.py", "app.py"):
        plain = python(script)
        recorded = scope("run", script)
        assert (recorded.returncode, recorded.stdout, recorded.stderr) == (
            plain.returncode,
            plain.stdout,
            plain.stderr,
        )
        if script == "bad.py":
            assert plain.returncode == 1 and "Non-UTF-8 code starting with" in plain.stderr


#: Sources Python reads from their file as ``undeclared_non_utf8`` must judge them.
ENCODINGS = {
    **NON_UTF8,
    "utf-8": "# café\nprint('€')\n".encode(),
    "bom": b'\xef\xbb\xbfs = "\xff"\n',
    "declared latin-1": b'# -*- coding: latin-1 -*-\nprint("\xff")\n',
    "declared on line 2": b'#!/usr/bin/env python\n# coding: latin-1\nprint("\xff")\n',
    "declared on line 3": b'#\n#\n# coding: latin-1\nprint("\xff")\n',
    "declared after code": b'print(1)\n# coding: latin-1\nprint("\xff")\n',
    "declared utf-8": b'# coding: utf-8\ns = "\xff"\n',
    "overlong": b'x = "\xc0\x80"\n',
    "beyond unicode": b"# \xf4\x90\x80\x80\n",
    "null byte first": b"x = 1\x00\n# \xff\n",
    "null byte after": b"# \xff\nx = 1\x00\n",
    "no final newline": b"print(1)\n# \xff",
    "in a triple-quoted string": b's = """\n\n\xff"""\n',
    "after a syntax error": b"x = = 1\nprint(1)\n# \xff\n",
}


def test_undeclared_non_utf8_says_what_python_says(tmp_path: Path):
    """The message, or its absence, is Python's for each source (in a subprocess each)."""
    import subprocess

    from scope.runner import undeclared_non_utf8

    for number, (case, source) in enumerate(ENCODINGS.items()):
        path = tmp_path / f"case{number}.py"
        path.write_bytes(source)
        plain = subprocess.run([sys.executable, str(path)], capture_output=True, text=True)
        error = undeclared_non_utf8(source, str(path))
        expected = plain.stderr if "Non-UTF-8 code" in plain.stderr else None
        assert (f"SyntaxError: {error.msg}\n" if error else None) == expected, case

"""``scope run``'s own reading of its command line, which keeps click out of the program.

``scope.launch`` reads ``run``'s options without click, so that a recorded
program imports click itself, instrumented.  Its reading must be click's: every
command line it accepts is compared with what click's ``run`` command parses,
and anything it declines goes to click.
"""

from __future__ import annotations

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scope.cli import cli
from scope.launch import read_run

WORDS = [
    "--db", "x.duckdb", "--db=y.duckdb", "--level", "args", "--level=full", "app:f=off",
    "--level", "loud", "--include", "pkg", "--only=app", "--exclude=pkg.tests",
    "--max-calls-per-function", "10", "-1", "--retain-runs", "-m", "-c", "--", "app.py",
    "print(1)", "--help", "-h", "--verbose", "-", "--dbx", "--le", "arg",
]  # fmt: skip


def clicks_reading(words: list[str]) -> dict[str, object] | None:
    """What click's ``run`` command makes of ``words`` (None: a usage error or help)."""
    try:
        context = cli.commands["run"].make_context("run", list(words))
    except (click.exceptions.Exit, click.UsageError):
        return None
    params = context.params
    if params["as_module"] and params["as_code"]:
        return None  # the command itself refuses this
    default, patterns = params["levels"]
    kind = "module" if params["as_module"] else "code" if params["as_code"] else "script"
    options = {"level": default, "levels": patterns}
    for key in ("include", "only", "exclude"):
        options[key] = params[key]
    for key in ("db", "max_calls_per_function", "retain_runs"):
        if params[key] is not None:
            options[key] = params[key]
    return {"kind": kind, "target": params["target"], "args": list(params["args"]), **options}


def ours(words: list[str]) -> dict[str, object] | None:
    request = read_run(words)
    if request is None:
        return None
    return {"kind": request.kind, "target": request.target, "args": request.args, **request.options}


@pytest.mark.parametrize(
    "words",
    [
        ["app.py"],
        ["app.py", "--db", "x", "-m", "--level", "full", "--", "plain"],
        ["--db", "x.duckdb", "--level", "args", "--level", "app:f=off", "app.py", "a"],
        ["--db=x", "--db", "y", "-m", "pkg.tool", "--help"],
        ["--include", "a", "--include=b", "--exclude", "c", "-c", "print(1)", "-c"],
        ["--only", "a", "--only=b:f", "--include", "c", "app.py"],
        ["--max-calls-per-function", "10", "--", "-weird-name.py"],
        ["-", "x"],
    ],
)
def test_command_lines_read_as_click_reads_them(words):
    assert ours(words) is not None
    assert ours(words) == clicks_reading(words)


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["--help"],
        ["-h"],
        ["--level", "loud", "app.py"],
        ["--max-calls-per-function", "-1", "app.py"],
        ["-m", "-c", "x"],
        ["--dbx", "app.py"],
        ["--db"],
        ["--le", "args", "app.py"],
    ],
)
def test_what_it_does_not_read_is_left_to_click(words):
    assert read_run(words) is None


@given(st.lists(st.sampled_from(WORDS), max_size=8))
def test_any_command_line_it_reads_click_reads_the_same(words):
    reading = ours(words)
    if reading is not None:
        assert reading == clicks_reading(words)


def test_scope_run_imports_neither_click_nor_rich_before_the_program(write, scope):
    write("app.py", "import sys\nprint(sorted(m for m in sys.modules if m in ('click', 'rich')))\n")
    result = scope("run", "app.py")
    assert (result.returncode, result.stdout, result.stderr) == (0, "[]\n", "")

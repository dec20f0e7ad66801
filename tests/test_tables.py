"""Tables keep numbers whole at any width, shorten names from the left, and pipe plainly."""

from __future__ import annotations

import io
import re
import sys

from hypothesis import example, given, settings
from hypothesis import strategies as st
from rich.console import Console
from scope.query.columns import LABEL, NAME, NUMBER, TEXT, Column, fitted_table, shorten_left

from .conftest import clean_env, run

names = st.text(st.sampled_from("abcdefghij._<>"), min_size=1, max_size=60)
numbers = st.integers(0, 10**12).map(lambda n: f"{n:,}")


def rendered(table: object, width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(table)
    return out.getvalue().splitlines()


@settings(max_examples=80, deadline=None)
@example(  # two 13-digit columns at 70: the names' headers must give way, not the outcome
    rows=[("<", "<", "0", "0", "ok"), ("<", "<", "1,000,000,000,000", "1,000,000,000,000", "ok")],
    width=70,
)
@given(
    rows=st.lists(st.tuples(names, names, numbers, numbers, st.sampled_from(["ok", "raised"])),
                  min_size=1, max_size=8),
    width=st.integers(70, 160),
)  # fmt: skip
def test_numbers_never_wrap_and_names_keep_their_ends(rows, width):
    columns = [
        Column("function", NAME),
        Column("module", NAME),
        Column("calls", NUMBER),
        Column("total", NUMBER),
        Column("outcome", LABEL),
    ]
    lines = rendered(fitted_table(columns, [list(r) for r in rows], width=width), width)
    assert all(len(line) <= width for line in lines)
    body = [line.split("│")[1:-1] for line in lines if line.startswith("│")]
    assert len(body) == len(rows)  # one line per row: nothing wrapped
    for (function, module, calls, total, outcome), cells in zip(rows, body, strict=True):
        shown = [cell.strip() for cell in cells]
        assert shown[2:] == [calls, total, outcome]
        for name, cell in ((function, shown[0]), (module, shown[1])):
            assert cell == name.strip() or (cell.startswith("…") and name.endswith(cell[1:]))


def test_text_takes_what_is_left_and_wraps():
    columns = [Column("call", NUMBER), Column("arguments", TEXT)]
    lines = rendered(fitted_table(columns, [["1099511627787", "x" * 200]], width=60), 60)
    assert all(len(line) <= 60 for line in lines)
    assert sum("1099511627787" in line for line in lines) == 1


def test_shorten_left_keeps_the_end():
    assert shorten_left("ParserElement._parseNoCache", 10) == "…seNoCache"
    assert shorten_left("short", 10) == "short"


def test_a_query_fits_its_width_and_a_pipe_gets_it_whole(write, scope):  # type: ignore[no-untyped-def]
    write(
        "app.py",
        """
        class AVeryLongClassNameForAParserThatNobodyWouldTypeTwice:
            def parse_the_whole_document_without_caching_anything(self, n):
                return sum(range(n))

        parser = AVeryLongClassNameForAParserThatNobodyWouldTypeTwice()
        for n in range(200):
            parser.parse_the_whole_document_without_caching_anything(n * 1000)
        """,
    )
    assert scope("run", "app.py").returncode == 0
    narrow = clean_env({"COLUMNS": "80"})  # as a terminal 80 columns wide says
    for command in (["top"], ["calls", "--limit", "5"], ["runs"]):
        answer = scope(*command, env=narrow)
        assert answer.returncode == 0, answer.stderr
        assert "\x1b[" not in answer.stdout  # no colour codes off a terminal
        lines = answer.stdout.splitlines()
        assert lines and all(len(line) <= 80 for line in lines), answer.stdout
    top = scope("top", env=narrow).stdout
    rows = [line.split("│")[1:-1] for line in top.splitlines() if "│" in line]
    assert len(rows) == 1  # one function, on one line
    function, where, calls, raised, total, percent, *times = (cell.strip() for cell in rows[0])
    assert function.startswith("…") and function.endswith("_anything")
    assert where == "app.py:3"  # relative to where the query runs
    assert (calls, raised) == ("200", "")
    assert re.fullmatch(r"\d+\.\d", percent)
    assert all(re.fullmatch(r"\d[\d.]* (ns|µs|ms|s)", time) for time in [total, *times]), times
    whole = scope("top").stdout
    qualname = "AVeryLongClassNameForAParserThatNobodyWouldTypeTwice.parse_the_whole_document"
    assert f"│ {qualname}_without_caching_anything │" in whole


BRACKETS = """
import pytest

from app import check


@pytest.mark.parametrize("word", ["[/]", "[bold]x"], ids=["[/]", "[bold]x"])
def test_words(word):
    check(word)
"""


def test_brackets_in_names_and_messages_print_as_they_are(project, write, scope):  # type: ignore[no-untyped-def]
    # rich reads "[bold]" as a style and fails on "[/]": a test id, an exception's
    # message or a value may hold either, and is printed as it is.
    write(
        "app.py",
        """
        def refuse(word):
            raise ValueError(f"bad {word} input")


        def check(word):
            try:
                refuse(word)
            except ValueError:
                return word

        check("[/]")
        """,
    )
    write("test_brackets.py", BRACKETS)
    assert scope("run", "--level", "args", "app.py").returncode == 0
    exceptions = scope("exceptions", "--all")
    assert exceptions.returncode == 0, exceptions.stderr
    assert "bad [/] input" in exceptions.stdout
    calls = scope("calls", "--function", "check", "--arg", "word=[/]")
    assert calls.returncode == 0, calls.stderr
    assert "'[/]'" in calls.stdout
    tested = run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--scope", "test_brackets.py"],
        project,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tests = scope("tests", env=clean_env({"COLUMNS": "200"}))
    assert tests.returncode == 0, tests.stderr
    assert "test_words[[/]]" in tests.stdout and "test_words[[bold]x]" in tests.stdout

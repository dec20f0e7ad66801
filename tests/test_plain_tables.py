"""``scope top`` piped draws its table without rich: the same lines, character for character.

rich is a third of a short query's start-up, and a pipe gets the table whole
and plain anyway.  Differential: for any functions (names short and long,
numbers of any size, a caption wider than the table), ``scope.query.plain``
must print exactly what rich prints for the same answer on a pipe.
"""

from __future__ import annotations

import io
import os
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from scope.query import plain, render
from scope.query.results.runs import FunctionStats

from .test_query_startup import loaded_by, recording  # noqa: F401  (a fixture)

names = st.text(
    # Brackets too: neither table reads markup ("[/]" and "[bold]" are names like others).
    alphabet=st.characters(min_codepoint=33, max_codepoint=126),
    min_size=1,
    max_size=40,
)
durations = st.integers(min_value=-1, max_value=10**13)
stats = st.builds(
    FunctionStats,
    function_id=st.integers(0, 10**6),
    module=names,
    qualname=names,
    calls=st.integers(0, 10**9),
    raised=st.integers(0, 10**6),
    total_ns=durations,
    mean_ns=st.floats(min_value=-1, max_value=1e13, allow_nan=False),
    max_ns=durations,
    self_ns=durations,
    active_ns=durations,
    percent=st.none() | st.floats(min_value=0, max_value=1000, allow_nan=False),
    file=st.none() | names,
    line=st.none() | st.integers(1, 10**5),
)


def drawn_by_rich(answer: list[FunctionStats], run: int, title: str) -> str:
    """What ``scope top`` printed through rich, on a pipe."""
    out = io.StringIO()
    with_no_width = {"COLUMNS": ""}  # as on a pipe, whatever the test runner says
    with mock.patch.dict(os.environ, with_no_width):
        table = render.function_table(answer, run, title)
        render.console(out, width=plain.UNBOUNDED).print(table)
    return out.getvalue()


@settings(max_examples=150, deadline=None)
@given(answer=st.lists(stats, max_size=6), run=st.integers(1, 10**4))
def test_the_plain_table_is_richs_table(answer: list[FunctionStats], run: int) -> None:
    drawn = plain.function_table(answer, run, "Most total time")
    assert drawn is not None
    assert drawn + "\n" == drawn_by_rich(answer, run, "Most total time")


def test_a_name_like_an_emoji_code_is_printed_as_it_is() -> None:
    coded = FunctionStats(1, "m", "f", 1, 0, 10, 10.0, 10, 10, 10, 1.0, ":x", 12)
    drawn = plain.function_table([coded], 1, "Most total time")
    assert drawn is not None and ":x:12" in drawn
    assert drawn + "\n" == drawn_by_rich([coded], 1, "Most total time")


def test_names_of_wide_characters_are_left_to_rich() -> None:
    wide = FunctionStats(1, "模块", "函数", 1, 0, 10, 10.0, 10, 10, 10, 1.0, None, None)
    assert plain.function_table([wide], 1, "Most total time") is None


def test_scope_top_piped_loads_no_rich(recording) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    assert not any(m == "rich" or m.startswith("rich.") for m in loaded_by(["top"], recording))

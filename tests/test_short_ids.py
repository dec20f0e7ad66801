"""Call ids are shown short (``1:42``, ``3:1:42`` in a child process) and every command
that takes one accepts the short form or the number; JSON and SQL keep the number."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scope.query.ids import (
    PROCESS_SHIFT,
    SLOT_PROCESS_SHIFT,
    THREAD_SHIFT,
    parse_call_id,
    short_id,
)
from scope.storage import children

from scope import native


def test_the_layout_is_the_recorders():
    assert (THREAD_SHIFT, PROCESS_SHIFT) == (native.SLOT_SHIFT, native.PROCESS_SHIFT)
    assert (PROCESS_SHIFT, SLOT_PROCESS_SHIFT) == (children.CALL_SHIFT, children.THREAD_SHIFT)


@given(
    process=st.integers(0, 2047),
    thread=st.integers(0, (1 << (PROCESS_SHIFT - THREAD_SHIFT)) - 1),
    n=st.integers(1, (1 << THREAD_SHIFT) - 1),
)
def test_a_short_id_names_the_same_call(process, thread, n):
    call_id = process << PROCESS_SHIFT | thread << THREAD_SHIFT | n
    text = short_id(call_id)
    assert text.count(":") == (2 if process else 1)
    assert (
        parse_call_id(text) == parse_call_id(str(call_id)) == parse_call_id(f"#{text}") == call_id
    )


@pytest.mark.parametrize("text", ["", "x", "1:", ":2", "1:2:3:4", "1:-2", "1:99999999999999"])
def test_what_is_not_a_call_id_is_refused(text):
    with pytest.raises(ValueError):
        parse_call_id(text)


APP = """
def leaf(n):
    return n + 1

def middle(n):
    return leaf(n) * 2

def main():
    return [middle(n) for n in range(3)]

main()
"""


def test_commands_show_short_ids_and_take_them_back(write, scope):  # type: ignore[no-untyped-def]
    write("app.py", APP)
    assert scope("run", "app.py").returncode == 0
    listed = scope("calls", "--function", "leaf", "--limit", "1")
    (short,) = re.findall(r"│ +(\d+:\d+) │ leaf", listed.stdout)
    raw = json.loads(scope("calls", "--function", "leaf", "--limit", "1", "--json").stdout)
    number = raw["calls"][0]["id"]
    assert isinstance(number, int) and short_id(number) == short
    by_short, by_number = scope("path", short), scope("path", str(number))
    assert by_short.returncode == 0 and by_short.stdout == by_number.stdout
    assert re.findall(r"#(\d+:\d+)", by_short.stdout)[-1] == short
    assert "__main__.middle" in by_short.stdout
    tree = scope("tree", short)
    assert tree.returncode == 0 and f"#{short}" in tree.stdout
    refused = scope("tree", "1:x")
    assert refused.returncode == 2 and "is not a call id" in refused.stderr

"""Folding: runs of alike sibling calls shown as their first, counting the others."""

from __future__ import annotations

import json
from itertools import count

from hypothesis import given
from hypothesis import strategies as st
from scope.query.folding import fold_similar
from scope.query.results import CallNode

_ids = count(1)


def node(name: str, *children: CallNode, duration: int = 10, outcome: str = "returned"):
    call = CallNode(next(_ids), 1, None, 0, "m", name, 0, duration, outcome)
    call.children = list(children)
    return call


def shape(nodes: list[CallNode]) -> list:
    return [(n.qualname, n.similar, shape(n.children)) for n in nodes]


def test_a_run_of_alike_calls_is_its_first_counting_the_rest():
    loop = node("f", *(node("g", node("h"), duration=5) for _ in range(1000)))
    (folded,) = fold_similar([loop])
    assert shape([folded]) == [("f", 0, [("g", 999, [("h", 0, [])])])]
    assert folded.children[0].similar_ns == 999 * 5
    assert folded.children[0].similar_calls == 999 * 2  # each g and the h it called


def test_calls_that_differ_in_function_outcome_or_callees_are_not_alike():
    first = node("f", node("g"), node("g", outcome="raised"), node("g", node("h")), node("k"))
    assert shape(fold_similar([first])) == [
        ("f", 0, [("g", 0, []), ("g", 0, []), ("g", 0, [("h", 0, [])]), ("k", 0, [])])
    ]


def test_alike_means_the_same_callees_however_often_each_repeated():
    a = node("f", node("g"), node("g"), node("h"))
    b = node("f", node("g"), node("h"))
    assert shape(fold_similar([node("main", a, b)])) == [
        ("main", 0, [("f", 1, [("g", 1, []), ("h", 0, [])])])
    ]


def test_calls_that_must_show_break_runs():
    calls = [node("g") for _ in range(5)]
    keep = {calls[2].id}
    folded = fold_similar([node("f", *calls)], keep=keep)[0].children
    assert [(n.id, n.similar) for n in folded] == [
        (calls[0].id, 1),
        (calls[2].id, 0),
        (calls[3].id, 1),
    ]


def test_deep_recursion_folds_without_recursing():
    deep = node("leaf")
    for _ in range(20_000):
        deep = node("r", deep)
    (folded,) = fold_similar([deep])
    assert folded.qualname == "r" and len(folded.children) == 1


trees = st.recursive(
    st.builds(lambda name: node(name), st.sampled_from("ab")),
    lambda kids: st.builds(lambda name, cs: node(name, *cs), st.sampled_from("ab"),
                           st.lists(kids, max_size=4)),
    max_leaves=30,
)  # fmt: skip


@given(st.lists(trees, max_size=6))
def test_folded_siblings_still_count_every_call_and_its_time(roots):
    calls, time = len(roots), sum(n.duration_ns for n in roots)
    folded = fold_similar(roots)
    assert sum(1 + n.similar for n in folded) == calls
    assert sum(n.duration_ns + n.similar_ns for n in folded) == time


def test_the_tree_command_shows_folded_loops(write, scope):
    write(
        "app.py",
        "def g(i):\n    return i\n\ndef f():\n    for i in range(300):\n        g(i)\n\nf()\n",
    )
    assert scope("run", "app.py").returncode == 0
    tree = json.loads(scope("tree", "--json").stdout)
    (f,) = tree["roots"]
    assert [(c["qualname"], c["similar"]) for c in f["children"]] == [("g", 299)]
    assert tree["shown"] == tree["total"] == 301
    shown = scope("tree").stdout
    assert "× 300 similar calls" in shown

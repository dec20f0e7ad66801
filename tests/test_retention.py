"""Dropping the calls of unkept tests (``scope.storage.retention``), on generated call trees."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st
from scope.storage.retention import discard_under
from scope.storage.schema import create_statements

THREAD = 1 << 40


def forest(shape: list[list[int]]) -> list[tuple[int, int | None, int]]:
    """(id, parent, end_id) of calls in preorder, one tree per item of ``shape``.

    ``shape[r]`` lists how many children each call of tree ``r`` has, in preorder
    (calls past the end of the list have none).
    """
    rows: list[tuple[int, int | None, int]] = []
    next_id = THREAD + 1

    def grow(parent: int | None, pending: Iterator[int]) -> int:
        nonlocal next_id
        me = next_id
        next_id += 1
        index = len(rows)
        rows.append((me, parent, me))
        for _ in range(next(pending, 0)):
            grow(me, pending)
        rows[index] = (me, parent, next_id - 1)
        return me

    for counts in shape:
        grow(None, iter(counts))
    return rows


def descendants(rows: list[tuple[int, int | None, int]], root: int) -> set[int]:
    parents = {call: parent for call, parent, _ in rows}
    found = set()
    for call in parents:
        up = parents[call]
        while up is not None:
            if up == root:
                found.add(call)
                break
            up = parents[up]
    return found


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(
        st.lists(st.integers(min_value=0, max_value=3), max_size=8), min_size=1, max_size=6
    ),
    data=st.data(),
)
def test_only_the_calls_under_discarded_roots_go(shape, data):
    rows = forest(shape)
    roots = [call for call, parent, _ in rows if parent is None]
    chosen = data.draw(st.lists(st.sampled_from(roots), unique=True))
    unstored = data.draw(st.lists(st.integers(min_value=1, max_value=THREAD - 1), max_size=2))
    con = duckdb.connect()
    for statement in create_statements():
        con.execute(statement)
    con.executemany(
        "INSERT INTO call (run, id, thread, parent, end_id, depth, function, start_ns, "
        "duration_ns, outcome, suspended_ns, suspensions) "
        "VALUES (1, ?, 1, ?, ?, 0, 7, 0, 1, 'returned', 0, 0)",
        rows,
    )
    con.executemany(
        "INSERT INTO value (run, call, function, role, position) VALUES (1, ?, 7, 'return', 0)",
        [(call,) for call, _, _ in rows],
    )
    con.executemany(
        "INSERT INTO call_aggregate VALUES (1, ?, 8, 2, 0, 10, 5, 5, 10, 10)",
        [(call,) for call, _, _ in rows],
    )
    con.executemany("INSERT INTO suspension VALUES (1, ?, 0, 1)", [(call,) for call, _, _ in rows])

    found = discard_under(con, 1, chosen + unstored)

    gone = set().union(*(descendants(rows, root) for root in chosen))
    expected = {call for call, _, _ in rows} - gone
    assert found == set(chosen)
    assert {r[0] for r in con.execute("SELECT id FROM call").fetchall()} == expected
    assert {r[0] for r in con.execute("SELECT call FROM value").fetchall()} == expected
    assert {r[0] for r in con.execute("SELECT call FROM suspension").fetchall()} == expected
    # Sums under a dropped call go with it; sums right under a kept root stay.
    aggregates = {r[0] for r in con.execute("SELECT parent FROM call_aggregate").fetchall()}
    assert aggregates == expected - set(chosen)


def test_subtrees_that_follow_each_other_are_one_span():
    from scope.storage.retention import spans

    # A test's three phases back to back, then a gap (a kept test), then another.
    found = [(20, 20), (10, 12), (13, 15), (16, 19), (30, 34)]
    assert spans(found) == [(10, 20, [10, 13, 16, 20]), (30, 34, [30])]

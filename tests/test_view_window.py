"""The viewer's zoomed-out windows, merged from the overview's buckets in numpy, against
the same merge written plainly: one block per lane, depth and pixel, then blocks of a
lane and depth less than a pixel apart as one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from scope.query.viewer import window as windows

#: (thread, depth, start, length, count, task lane or None)
blocks = st.lists(
    st.tuples(
        st.integers(1, 3),
        st.integers(0, 3),
        st.integers(-20, 120),
        st.integers(0, 30),
        st.integers(1, 5),
        st.one_of(st.none(), st.integers(0, 2)),
    ),
    max_size=60,
)


def plainly(kept: list[windows.Block], since: int, pixel: int) -> list[list[int | None]]:
    """The merge of the window's blocks, one block at a time."""
    merged: dict[tuple[int, int, int, int], list[int]] = {}
    for thread, depth, start, end, count, task in kept:
        key = (thread, -1 if task is None else task, depth, (start - since) // pixel)
        block = merged.get(key)
        if block is None:
            merged[key] = [thread, depth, start, end, count, key[1]]
        else:
            block[2], block[3] = min(block[2], start), max(block[3], end)
            block[4] += count
    ordered = sorted(merged.values(), key=lambda b: (b[0], b[5], b[1], b[2]))
    return windows._coalesced(
        [(b[0], b[1], b[2], b[3], b[4], None if b[5] < 0 else b[5]) for b in ordered], pixel
    )


@given(
    blocks,
    blocks,
    st.integers(0, 60),
    st.integers(1, 120),
    st.integers(1, 20),
)
def test_zoomed_out_blocks_are_merged_as_plainly(
    found: list[tuple[int, int, int, int, int, int | None]],
    extra: list[tuple[int, int, int, int, int, int | None]],
    since: int,
    length: int,
    pixel: int,
) -> None:
    as_blocks = [(t, d, s, s + n, c, k) for t, d, s, n, c, k in found]
    buckets = sorted(set(as_blocks), key=lambda b: (b[0], -1 if b[5] is None else b[5], b[1], b[2]))
    more = [(t, d, s, s + n, c, k) for t, d, s, n, c, k in extra]
    zoomed_out = windows.Overview(1, buckets, [], windows._as_table(buckets))
    until = since + length
    got = windows._regrouped(zoomed_out, more, since, until, pixel)
    want = plainly([b for b in buckets if b[2] < until and b[3] > since] + more, since, pixel)
    assert got == want


def test_blocks_a_pixel_apart_stay_apart_and_closer_ones_are_one() -> None:
    buckets = [(1, 0, 0, 10, 1, None), (1, 0, 20, 25, 2, None), (1, 0, 34, 40, 3, None)]
    zoomed_out = windows.Overview(1, buckets, [], windows._as_table(buckets))
    # A pixel of 10: the second begins 10 after the first ends, the third 9 after it.
    assert windows._regrouped(zoomed_out, [], 0, 100, 10) == [
        [1, 0, 0, 10, 1, None],
        [1, 0, 20, 40, 5, None],
    ]

"""Answers drawn for a pipe without rich: the same table, in a fraction of the start-up.

Piped output is whole and plain (see ``scope.query.columns``): no colour, no
width to fit.  rich draws such a table as it is, so drawing it here gives the
same lines, character for character, without importing rich (a third of a
short query's time).  ``tests/test_plain_tables.py`` holds the two to that.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scope.query.results.runs import FunctionStats

#: the width of output that goes to a pipe: as wide as its lines are
UNBOUNDED = 100_000

#: the columns of ``scope top``: header, and whether it holds numbers (right-aligned)
FUNCTION_COLUMNS = (
    ("function", False),
    ("where", False),
    *(
        (name, True)
        for name in ("calls", "raised", "total", "% run", "wall", "self", "mean", "max")
    ),
)
#: what ``scope top``'s table says under it
FUNCTION_CAPTION = "total: time running (suspensions left out); wall: from call to return"


def output_width() -> int:
    """The width output is laid out in: ``COLUMNS``, else the terminal's, else unbounded."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        from rich.console import Console

        return Console().width
    return UNBOUNDED


def format_ns(ns: float | None) -> str:
    """A duration for people: 812 ns, 3.41 µs, 12.0 ms, 2.31 s."""
    if ns is None or ns < 0:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            value = ns / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{ns:.0f} ns"


def where(module: str, file: str | None, line: int | None) -> str:
    """``file:line`` of a function, the file relative to the working folder when it is
    under it (its module when the file is not known)."""
    if not file:
        return module
    try:
        here = os.getcwd() + os.sep
    except FileNotFoundError:  # the working folder was removed: nothing is under it
        here = "\0"
    shown = file[len(here) :] if file.startswith(here) else file
    return f"{shown}:{line}" if line else shown


def function_rows(stats: Sequence[FunctionStats]) -> list[list[str]]:
    """``scope top``'s rows, in ``FUNCTION_COLUMNS``' order."""
    return [
        [
            s.qualname,
            where(s.module, s.file, s.line),
            f"{s.calls:,}",
            f"{s.raised:,}" if s.raised else "",
            format_ns(s.active_ns),
            "" if s.percent is None else f"{s.percent:.1f}",
            format_ns(s.total_ns),
            format_ns(s.self_ns),
            format_ns(s.mean_ns),
            format_ns(s.max_ns),
        ]
        for s in stats
    ]


def function_table(stats: Sequence[FunctionStats], run: int, title: str) -> str | None:
    """``scope top``'s table, as rich draws it for a pipe (None if a name holds a
    character this cannot measure as rich does: leave those to rich)."""
    rows = function_rows(stats)
    if not all(_one_cell_each(cell) for row in rows for cell in row):
        return None
    return box_table(f"{title} in run {run}", FUNCTION_COLUMNS, rows, FUNCTION_CAPTION)


def _one_cell_each(text: str) -> bool:
    """Whether every character of ``text`` takes one cell, as ``len`` counts it."""
    return all(ch == "µ" or (ch.isascii() and ch.isprintable()) for ch in text)


def box_table(
    title: str,
    columns: Sequence[tuple[str, bool]],
    rows: Sequence[Sequence[str]],
    caption: str,
) -> str:
    """A table with a heavy head, its title and caption centred (and wrapped) over it."""
    widths = [
        max([len(header), *(len(row[i]) for row in rows)]) for i, (header, _) in enumerate(columns)
    ]
    numbers = [number for _, number in columns]
    width = sum(widths) + 3 * len(widths) + 1

    def rule(left: str, fill: str, middle: str, right: str) -> str:
        return left + middle.join(fill * (w + 2) for w in widths) + right

    def cells(values: Sequence[str], edge: str) -> str:
        shown = [
            f" {v.rjust(w) if number else v.ljust(w)} "
            for v, w, number in zip(values, widths, numbers, strict=True)
        ]
        return edge + edge.join(shown) + edge

    lines = [*_centred(title, width), rule("┏", "━", "┳", "┓")]
    lines += [cells([header for header, _ in columns], "┃"), rule("┡", "━", "╇", "┩")]
    lines += [cells(row, "│") for row in rows]
    lines += [rule("└", "─", "┴", "┘"), *_centred(caption, width)]
    return "\n".join(lines)


def _centred(text: str, width: int) -> list[str]:
    """``text`` wrapped at ``width`` by words, each line centred in it."""
    out = []
    for line in textwrap.wrap(text, width) or [""]:
        left = (width - len(line)) // 2
        out.append(" " * left + line + " " * (width - len(line) - left))
    return out

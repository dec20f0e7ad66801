"""Tables that keep numbers whole: fitted to the output's width before rich lays them out.

rich shares a narrow width among all columns, so at 80 columns a duration
became "73.6" over "ms".  Here each column says what it holds: numbers and
short labels keep their width and never wrap; names (functions, modules,
test ids) give up width first, shortened from the left with an ellipsis,
since their ends say the most (``…Parser._parse``); free text takes what is
left and wraps.  The width is the terminal's, or ``COLUMNS``; a pipe has no
width, so piped output is whole and plain (no colour codes, nothing
shortened or wrapped), like ``coverage report``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text
from scope.query.plain import UNBOUNDED as UNBOUNDED
from scope.query.plain import output_width as output_width

#: right-aligned, never wrapped: counts, durations, ids
NUMBER = "number"
#: left-aligned, never wrapped: outcomes, dates, short words
LABEL = "label"
#: left-aligned, shortened from the left when the width is short
NAME = "name"
#: left-aligned, wrapped in whatever width is left
TEXT = "text"

#: the fewest characters a name is shortened to
NAME_MIN = 6
#: optional columns give way before a name is shortened below this
NAME_KEPT = 24
#: the least a text column is left
TEXT_MIN = 12

Cell = str | Text


@dataclass(frozen=True)
class Column:
    """One column: its header, what it holds (``NUMBER``, ``LABEL``, ``NAME``, ``TEXT``)."""

    header: str
    kind: str = LABEL
    style: str | None = None
    #: left out, last first, when the table cannot fit its width with it
    optional: bool = False


def shorten_left(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, its start given up for an ellipsis."""
    if len(text) <= width:
        return text
    return "…" + text[len(text) - width + 1 :]


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _name_widths(natural: list[int], floors: list[int], room: int) -> list[int]:
    """Widths for the name columns that fit ``room``, taken from the widest first."""
    widths = list(natural)
    while sum(widths) > room:
        widest = max(range(len(widths)), key=lambda i: widths[i] - floors[i])
        if widths[widest] <= floors[widest]:
            break  # as narrow as names go: the table runs over
        widths[widest] -= 1
    return widths


def _least_width(columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> int:
    """The narrowest the table may be before optional columns give way: whole numbers
    and labels, and names of ``NAME_KEPT`` characters at least."""
    least = 3 * len(columns) + 1
    for i, column in enumerate(columns):
        widest = max([len(column.header), *(len(_plain(row[i])) for row in rows)])
        if column.kind in (NUMBER, LABEL):
            least += widest
        elif column.kind == NAME:
            least += min(widest, max(NAME_KEPT, len(column.header)))
        else:
            least += TEXT_MIN
    return least


def _without_what_does_not_fit(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int
) -> tuple[list[Column], list[list[Cell]]]:
    """The columns (and cells) left once optional ones are dropped, last first, until
    the table fits ``width``."""
    keep = list(range(len(columns)))
    optional = [i for i, column in enumerate(columns) if column.optional]
    while (
        optional
        and _least_width([columns[i] for i in keep], [[r[i] for i in keep] for r in rows]) > width
    ):
        keep.remove(optional.pop())
    return [columns[i] for i in keep], [[row[i] for i in keep] for row in rows]


def fitted_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    width: int | None = None,
    **table_options: object,
) -> Table:
    """A rich table of ``rows`` whose numbers and labels never wrap, in ``width``."""
    width = output_width() if width is None else width
    columns, rows = _without_what_does_not_fit(columns, rows, width)
    natural = [
        max([len(column.header), *(len(_plain(row[i])) for row in rows)])
        for i, column in enumerate(columns)
    ]
    frame = 3 * len(columns) + 1  # a space each side of every cell, and the rules
    fixed = sum(w for w, c in zip(natural, columns, strict=True) if c.kind in (NUMBER, LABEL))
    texts = sum(1 for c in columns if c.kind == TEXT)
    names = [i for i, c in enumerate(columns) if c.kind == NAME]
    room = width - frame - fixed - TEXT_MIN * texts
    fitted = _name_widths(
        [natural[i] for i in names],
        # a name's header gives way too (rich ends it with an ellipsis): else a
        # table that cannot fit is squeezed by rich, which drops a column's cells
        [min(natural[i], NAME_MIN) for i in names],
        room,
    )
    name_width = dict(zip(names, fitted, strict=True))
    table = Table(**table_options)  # type: ignore[arg-type]
    for i, column in enumerate(columns):
        if column.kind == TEXT:
            table.add_column(column.header, overflow="fold", style=column.style)
            continue
        size = name_width.get(i, natural[i])
        table.add_column(
            column.header,
            justify="right" if column.kind == NUMBER else "left",
            no_wrap=True,
            min_width=size,
            max_width=size if column.kind == NAME else None,
            style=column.style,
        )
    for row in rows:
        cells: list[Cell] = []
        for i, cell in enumerate(row):
            if i in name_width and isinstance(cell, str):
                cell = shorten_left(cell, name_width[i])
            cells.append(cell)
        table.add_row(*cells)
    return table

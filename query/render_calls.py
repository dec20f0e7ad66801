"""Show calls to people: listings, the way to a call, exceptions' paths, attribute
writes, and the rows of raw SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text
from scope.query.columns import LABEL, NAME, NUMBER, TEXT, Column, fitted_table
from scope.query.ids import short_id
from scope.query.render import format_ns, outcome_text

if TYPE_CHECKING:  # only named here: a command loads the answers it gets, no others
    from scope.query.results import (
        AttributeWrite,
        CallList,
        CallNode,
        ExceptionKind,
        ExceptionPath,
        SqlResult,
    )


def calls_table(found: CallList) -> Table:
    """A page of calls: id, function, duration, outcome, thread (if several), then the
    arguments and return value, wrapped in the width the other columns leave."""
    shown = len(found.calls)
    title = f"{shown:,} of {found.matched:,} calls in run {found.run}"
    threads = len({call.thread for call in found.calls}) > 1
    columns = [
        Column("call", NUMBER),
        Column("function", NAME),
        Column("duration", NUMBER),
        Column("outcome", LABEL),
        *([Column("thread", NUMBER)] if threads else []),
        Column("arguments → return", TEXT),
    ]
    rows: list[list[str | Text]] = []
    for call in found.calls:
        given = ", ".join(call.arguments)
        flow = f"({given})" + (f" → {call.returned}" if call.returned is not None else "")
        cells: list[str | Text] = [
            short_id(call.id),
            call.qualname,
            format_ns(call.duration_ns),
            outcome_text(call.outcome),
        ]
        if threads:
            cells.append(str(call.thread))
        rows.append([*cells, flow if call.arguments or call.returned is not None else ""])
    return fitted_table(columns, rows, title=title, caption=_summed_caption(found.summed))


def _summed_caption(summed: int) -> str | None:
    if not summed:
        return None
    return f"and {summed:,} calls of these functions summed past their budget (scope top)"


def _call_line(node: CallNode, prefix: str = "") -> Text:
    text = Text(prefix)
    text.append(f"{node.module}.{node.qualname}", style="bold")
    text.append(f"  {format_ns(node.duration_ns)}", style="cyan")
    if node.outcome != "returned":
        text.append("  ")
        text.append_text(outcome_text(node.outcome))
    text.append(f"  #{short_id(node.id)}", style="dim")
    return text


def path_view(path: Sequence[CallNode]) -> Group:
    """The calls open when a call began, outermost first, each under its caller."""
    lines = [
        _call_line(node, "  " * depth + ("└─ " if depth else "")) for depth, node in enumerate(path)
    ]
    return Group(*lines)


def exceptions_view(found: Sequence[ExceptionPath]) -> Group:
    """Each exception: what it was, the calls it left, and where it was caught."""
    if not found:
        return Group(Text("No exception left a recorded call.", style="dim"))
    parts: list[Text] = []
    for exc in found:
        parts.append(Text(exc.summary or exc.type or "?", style="bold red"))
        parts.extend(_exception_way(exc))
    return Group(*parts)


def exception_kinds_view(kinds: Sequence[ExceptionKind]) -> Group:
    """Exceptions alike as one: how many, then the way the newest of them went."""
    if not kinds:
        return Group(Text("No exception left a recorded call.", style="dim"))
    parts: list[Text] = []
    for kind in kinds:
        header = Text(kind.example.summary or kind.example.type or "?", style="bold red")
        if kind.count > 1:
            shown = kind.example.summary or kind.example.type
            like = f" like {kind.shape}" if kind.shape != shown else ""
            header.append(f"  × {kind.count:,}{like}, the newest:", style="red")
        parts.append(header)
        parts.extend(_exception_way(kind.example))
    return Group(*parts)


def _exception_way(exc: ExceptionPath) -> list[Text]:
    """The calls an exception left, innermost first, and where it stopped."""
    lines = [
        _call_line(node, "  raised in " if i == 0 else "  left      ")
        for i, node in enumerate(exc.left)
    ]
    if exc.caught_in is not None:
        lines.append(_call_line(exc.caught_in, "  caught in "))
    elif exc.exit_status is not None:
        lines.append(Text(f"  ended the program with status {exc.exit_status}", style="red"))
    elif exc.uncaught:
        lines.append(Text("  ended the program (uncaught)", style="red"))
    else:
        lines.append(Text("  left every recorded call (caught outside your code)", style="dim"))
    return lines


def history_table(writes: Sequence[AttributeWrite]) -> Table:
    """Attribute writes in order: which object, which attribute, what value, by which call."""
    columns = [
        Column("object", NAME),
        Column("attribute", NAME),
        Column("value", TEXT),
        Column("written by", NAME),
        Column("call", NUMBER, style="dim"),
    ]
    rows = []
    for w in writes:
        owner = f"{w.object_type or '?'} {w.object_id:#x}" if w.object_id else "?"
        rows.append([owner, w.attribute, w.value or "", w.qualname, short_id(w.call)])
    return fitted_table(columns, rows, title=f"{len(writes):,} attribute writes")


def sql_table(result: SqlResult) -> Table:
    """Rows of a raw SQL query under their column names."""
    table = Table(caption=f"{len(result.rows):,} rows")
    for column in result.columns:
        table.add_column(column)
    for row in result.rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    return table

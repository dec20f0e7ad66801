"""Show query answers to people (rich tables and trees) and to scripts (JSON)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree
from scope.query.as_json import to_json as to_json
from scope.query.columns import LABEL, NAME, NUMBER, TEXT, Column, fitted_table, output_width
from scope.query.ids import short_id
from scope.query.plain import FUNCTION_CAPTION, FUNCTION_COLUMNS, function_rows
from scope.query.plain import format_ns as format_ns
from scope.query.plain import where as where

if TYPE_CHECKING:  # only named here: a command loads the answers it gets, no others
    from scope.instrument.explain import ModuleReport
    from scope.query.results import (
        CallNode,
        CallTree,
        FunctionStats,
        RecordingDiff,
        RunHealth,
        RunSummary,
        TestDetail,
        TestResult,
        TestUse,
    )

_OUTCOME_STYLES = {"returned": "", "raised": "bold red", "unfinished": "yellow"}
_TEST_STYLES = {
    "passed": "green",
    "failed": "bold red",
    "error": "bold red",
    "skipped": "yellow",
    "xfailed": "yellow",
    "xpassed": "yellow",
}


def outcome_text(outcome: str) -> Text:
    """A call's outcome, coloured: raised in red, unfinished in yellow."""
    return Text(outcome, style=_OUTCOME_STYLES.get(outcome, ""))


def plan_report(reports: Sequence[ModuleReport]) -> Group:
    """Each module's decision, then the plan of each instrumented one."""
    decisions = Table(title="Modules")
    for name in ("module", "instrumented", "why", "functions"):
        decisions.add_column(name)
    plans = []
    for report in reports:
        planned = [f for f in report.functions if f.level != "off"]
        summary = f"{len(planned)} of {len(report.functions)}" if report.instrumented else "-"
        why = report.reason if report.error is None else f"{report.reason}; {report.error}"
        decisions.add_row(
            report.module, "yes" if report.instrumented and not report.error else "no", why, summary
        )
        if report.functions:
            table = Table(title=f"{report.module} ({report.path})", title_justify="left")
            for name, justify in (
                ("line", "right"),
                ("function", "left"),
                ("kind", "left"),
                ("level", "left"),
                ("why", "left"),
            ):
                table.add_column(name, justify=justify)  # type: ignore[arg-type]
            for f in sorted(report.functions, key=lambda f: f.line):
                style = "dim" if f.level == "off" else ""
                table.add_row(str(f.line), f.qualname, f.kind, f.level, f.reason, style=style)
            plans.append(table)
    return Group(decisions, *plans)


def runs_table(runs: Sequence[RunSummary]) -> Table:
    """The runs of a recording, one row each."""
    columns = [
        Column("run", NUMBER),
        Column("started", LABEL),
        Column("program", NAME),
        Column("exit", NUMBER),
        Column("calls", NUMBER),
        Column("dropped", NUMBER),
        Column("status", TEXT),
    ]
    rows = [
        [
            str(run.id),
            run.started_at.strftime("%Y-%m-%d %H:%M:%S") if run.started_at else "-",
            shlex.join(run.argv),
            "-" if run.exit_status is None else str(run.exit_status),
            "-" if run.calls_stored is None else f"{run.calls_stored:,}",
            "-" if run.events_dropped is None else f"{run.events_dropped:,}",
            run.status + (" (" + "; ".join(run.problems) + ")" if run.problems else ""),
        ]
        for run in runs
    ]
    return fitted_table(columns, rows, title="Runs")


def count(value: int | None) -> str:
    """A count as a table shows it: with thousands separators, "-" when unknown."""
    return "-" if value is None else f"{value:,}"


def health_table(health: RunHealth) -> Table:
    """A run's telemetry: totals, then one row per thread."""
    table = Table(title=f"Run {health.run}: {health.status}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    clock = health.clock or "-"
    if health.clock == "tsc" and health.clock_ns_per_tick:
        clock += f" ({1 / health.clock_ns_per_tick:.3f} GHz, calibrated)"
    for name, value in (
        ("events captured", count(health.events_captured)),
        ("events stored", count(health.events_stored)),
        ("events dropped", count(health.events_dropped)),
        ("calls stored", count(health.calls_stored)),
        ("calls unfinished", count(health.calls_unfinished)),
        ("calls summed (past budget)", count(health.calls_summed)),
        ("values stored", count(health.values_stored)),
        ("writer batches", count(health.writer_batches)),
        ("writer lag (most events waiting)", count(health.writer_lag)),
        ("threads seen", count(len(health.threads))),
        ("processes seen", count(len(health.processes))),
        ("processes taken over from a stopped service", count(health.recoveries)),
        ("clock", clock),
    ):
        table.add_row(name, value)
    for problem in health.problems:
        table.add_row("problem", problem)
    return table


def threads_table(health: RunHealth) -> Table:
    """Per-thread counters of a run, and who started each thread."""
    table = Table(title="Threads")
    table.add_column("thread")
    table.add_column("started by")
    for name in ("produced", "dropped", "high water", "blocked", "values lost", "too deep"):
        table.add_column(name, justify="right")
    for t in health.threads:
        origin = f"thread {t.parent}" if t.parent else "-"
        if t.parent and t.started_by:
            origin += f", call {short_id(t.started_by)}"
        table.add_row(
            f"{t.id} {t.name or ''}".strip(),
            origin,
            f"{t.events_produced:,}",
            f"{t.events_dropped:,}",
            f"{t.ring_high_water:,}",
            format_ns(t.blocked_ns),
            f"{t.values_lost:,}",
            f"{t.stack_overflow:,}",
        )
    return table


def processes_table(health: RunHealth) -> Table:
    """The recorded processes of a run."""
    table = Table(title="Processes")
    for name in ("pid", "parent pid", "exit status", "ended by", "waiting p50", "waiting p99"):
        table.add_column(name, justify="right" if name != "ended by" else "left")
    for p in health.processes:
        status = "-" if p.exit_status is None else str(p.exit_status)
        table.add_row(
            str(p.pid),
            str(p.parent_pid or "-"),
            status,
            p.ended_by or "running",
            count(p.lag_p50),
            count(p.lag_p99),
        )
    table.caption = "waiting: records in its rings when the recording service drained them"
    return table


def function_table(stats: Sequence[FunctionStats], run: int, title: str = "Calls") -> Table:
    """Calls per function: where it is, its active time (suspensions left out) as the
    total and as a share of the run, its wall time, self, mean and longest time."""
    # On a narrow terminal, max, mean and wall give way, in that order.
    columns = [
        Column(header, NUMBER if number else NAME, optional=header in ("wall", "mean", "max"))
        for header, number in FUNCTION_COLUMNS
    ]
    rows: list[list[str | Text]] = [list(row) for row in function_rows(stats)]
    return fitted_table(columns, rows, title=f"{title} in run {run}", caption=FUNCTION_CAPTION)


#: levels of a call tree drawn indented; deeper calls say their depth instead
MAX_NESTING = 24


def _label(node: CallNode, on_path: bool = False) -> Text:
    text = Text(node.qualname, style="bold red" if on_path else "bold")
    if node.phase:
        text.append(f" [{node.phase}]", style="magenta")
    if node.file:
        text.append(f"  {os.path.basename(node.file)}:{node.line}", style="dim")
    text.append(f"  {format_ns(node.duration_ns)}", style="cyan")
    if node.similar:
        alike = f"{node.similar + 1:,} similar calls"
        text.append(f"  × {alike}, {format_ns(node.duration_ns + node.similar_ns)} in all")
    if node.outcome != "returned":
        text.append(f"  {node.outcome}", style=_OUTCOME_STYLES.get(node.outcome, ""))
    text.append(f"  #{short_id(node.id)}", style="dim")
    return text


def _descendants(node: CallNode) -> int:
    """How many fetched calls are under ``node``, folded ones included (iteratively:
    recorded trees can be very deep)."""
    count, pending = 0, list(node.children)
    while pending:
        below = pending.pop()
        count += 1 + below.similar_calls
        pending.extend(below.children)
    return count


def call_tree(
    tree: CallTree,
    max_depth: int | None = None,
    path: Sequence[int] = (),
    note: str | None = None,
    title: str | None = None,
) -> Tree:
    """A rich tree of calls; subtrees below ``max_depth`` levels are summarised.

    The calls of ``path`` (an exception's way from the root down to where it
    was raised) are highlighted and always shown, and its last call gets ``note``.
    Built without recursion, so a recording of deep recursion renders instead of
    hitting the recursion limit; calls nested deeper than ``MAX_NESTING`` are drawn
    at its indentation with their depth written out, so lines stay short and
    drawing stays linear (rich's guides cost depth² per line).
    """
    title = title or f"Run {tree.run}: {tree.shown:,} of {tree.total:,} calls"
    root = Tree(Text(title, style="italic"))
    on_path = set(path)
    last = path[-1] if path else None
    pending: list[tuple[Tree, CallNode, int]] = [(root, n, 1) for n in reversed(tree.roots)]
    while pending:
        branch, node, level = pending.pop()
        label = _label(node, node.id in on_path)
        if node.id == last and note:
            label.append(f"  ← {note}", style="red")
        if level > MAX_NESTING:
            label = Text(f"[depth {level}] ", style="dim") + label
        child = branch.add(label)
        below_path = any(sub.id in on_path for sub in node.children)
        below = node.below
        if max_depth is not None and level >= max_depth and node.children and not below_path:
            below += _descendants(node)
        else:
            # Past MAX_NESTING, calls go on at the same indentation, their depth said.
            under = child if level < MAX_NESTING else branch
            pending.extend((under, sub, level + 1) for sub in reversed(node.children))
        if below:
            calls = "call" if below == 1 else "calls"
            child.add(Text(f"… {below:,} more {calls} below", style="dim"))
    if tree.shown < tree.total:
        root.add(Text(f"… {tree.total - tree.shown:,} more calls (raise --limit)", style="dim"))
    return root


def tests_table(tests: Sequence[TestResult], run: int) -> Table:
    """The tests of a run: outcome, duration, calls recorded under each."""
    workers = any(t.worker for t in tests)
    columns = [
        Column("test", NAME),
        Column("outcome", LABEL),
        Column("duration", NUMBER),
        Column("calls", NUMBER),
        *([Column("worker", LABEL)] if workers else []),
    ]
    rows = []
    for t in tests:
        kept = all(p.kept for p in t.phases)
        cells: list[str | Text] = [
            t.nodeid,
            Text(t.outcome, style=_TEST_STYLES.get(t.outcome.split("+")[0], "")),
            format_ns(t.duration_ns),
            f"{t.calls:,}" if kept else f"{t.calls:,} (not kept)",
        ]
        if workers:
            cells.append(t.worker or "")
        rows.append(cells)
    return fitted_table(columns, rows, title=f"Tests in run {run}")


def test_uses_table(uses: Sequence[TestUse], function: str, run: int) -> Table:
    """Which tests called the functions matching ``function``, and how often."""
    columns = [Column("test", NAME), Column("function", NAME), Column("calls", NUMBER)]
    rows = [[use.nodeid, f"{use.module}.{use.qualname}", f"{use.calls:,}"] for use in uses]
    return fitted_table(columns, rows, title=f"Tests calling {function!r} in run {run}")


def test_detail(detail: TestDetail, max_depth: int | None = None) -> Group:
    """A test's outcome, then each phase's calls with the exception's path highlighted."""
    test = detail.test
    header = Text(test.nodeid, style="bold")
    header.append(f"  {test.outcome}", style=_TEST_STYLES.get(test.outcome.split("+")[0], ""))
    header.append(f"  {format_ns(test.duration_ns)}", style="cyan")
    if test.worker:
        header.append(f"  on {test.worker}", style="dim")
    parts: list[Text | Tree] = [header]
    for phase in test.phases:
        line = f"{phase.phase}: {phase.outcome}, {format_ns(phase.duration_ns)}"
        counted = f"{phase.calls:,} call" + ("" if phase.calls == 1 else "s")
        line += f", {counted}" if phase.kept else ", calls not kept (--scope-keep)"
        if phase.message and phase.outcome != "passed":
            line += f": {phase.message}"
        tree = detail.trees.get(phase.phase)
        if tree is None or (not phase.kept and not phase.raised_in):
            parts.append(Text(line, style=_TEST_STYLES.get(phase.outcome, "")))
            continue
        path = detail.exception_paths.get(phase.phase, [])
        note = f"raised here: {phase.exception}" if phase.exception and path else None
        parts.append(call_tree(tree, max_depth, path=path, note=note, title=line))
    return Group(*parts)


def diff_view(diff: RecordingDiff) -> Group:
    """What differs between two runs or tests: call counts, exceptions, return values."""
    heading = Text(f"{diff.before}  →  {diff.after}", style="bold")
    if diff.outcomes is not None:
        heading.append(f"   ({diff.outcomes[0]} → {diff.outcomes[1]})")
    parts: list[Text | Table] = [heading]
    if diff.same:
        parts.append(Text("Same calls, exceptions and return values.", style="green"))
    if diff.calls:
        calls = Table(title="Calls that differ")
        for name in ("function", "before", "after", "change"):
            calls.add_column(name, justify="left" if name == "function" else "right")
        for c in diff.calls:
            calls.add_row(c.function, f"{c.before:,}", f"{c.after:,}", f"{c.after - c.before:+,}")
        parts.append(calls)
    if diff.exceptions:
        raised = Table(title="Exceptions that differ")
        for name in ("exception", "raised in", "before", "after"):
            raised.add_column(name, justify="right" if name in ("before", "after") else "left")
        for e in diff.exceptions:
            raised.add_row(e.type, e.raised_in, f"{e.before:,}", f"{e.after:,}")
        parts.append(raised)
    if diff.returns:
        returns = Table(title="Return values seen on one side only")
        for name in ("function", "only before", "only after"):
            returns.add_column(name)
        for r in diff.returns:
            returns.add_row(r.function, ", ".join(r.only_before), ", ".join(r.only_after))
        parts.append(returns)
    return Group(*parts)


def console(file: IO[str] | None = None, width: int | None = None) -> Console:
    """A console for stdout (or ``file``); colours only on a terminal, and a pipe's lines
    as long as they are (see ``scope.query.columns``).  No emoji codes: a path such as
    ``:x:12`` is a path, not a cross mark.  No markup either: a test named
    ``test_x[/]`` or a message ``bad [bold] input`` is printed as it is, styles
    come from ``Text`` only."""
    return Console(
        file=file, highlight=False, emoji=False, markup=False, width=width or output_width()
    )

"""The ``scope`` command line: record a program, then ask about the recording.

``main`` runs it for ``scope.launch.main``, the console script, which reads
``scope run`` itself so that click is not imported before a recorded program
is.  It runs click in non-standalone mode so that
scope's errors become one line (``scope: error: …``, exit 1) and usage errors
click's usual message (exit 2), and so that a recorded program's ending
(``SystemExit``, an uncaught exception, ``KeyboardInterrupt``) is re-raised
outside click, which would otherwise turn ``KeyboardInterrupt`` into "Aborted!".
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from scope import __version__
from scope.errors import ExportError, QueryError, ScopeError
from scope.launch import fail, record, split_levels

if TYPE_CHECKING:
    # Each command imports what it uses (DuckDB, rich, the query API, the
    # configuration): ``scope --help`` needs none of them, and a query none of the
    # recorder's (tests/test_query_startup.py checks).
    from rich.console import RenderableType

    from scope.config import Config
    from scope.query.api import Recording
    from scope.storage.pruning import Removed

F = TypeVar("F", bound=Callable[..., Any])


class _ProgramToRun:
    """Returned by ``run``: the checked program, run by ``main`` once click is done.

    The program must not run inside click's command: click keeps the active
    context on a thread-local stack, and a program that uses click itself (or
    imports the same click) would find scope's context there.
    """

    def __init__(self, program: object, config: Config) -> None:
        self.program = program
        self.config = config


def _print_json(answer: object) -> None:
    """Print a query's answer as JSON, for scripts (rich is not loaded for it)."""
    from scope.query.as_json import to_json

    click.echo(to_json(answer))


def _print(shown: RenderableType) -> None:
    """Print a query's answer for people: a table, a tree, or a group of them.

    Each command imports its renderer after ``--json`` is ruled out, so that the
    JSON of an answer does not wait for rich to load.
    """
    from scope.query import render

    render.console().print(shown)


def _config(db: str | None = None, **flags: object) -> Config:
    from scope.config import load_config

    return load_config(overrides={"db": db, **flags})


def _recording(db: str | None, writable_folder: str | None = None) -> Recording:
    """The recording a query command reads.  On a terminal, a query that runs for more
    than a second shows DuckDB's progress bar.  Its SQL writes no file, except under
    ``writable_folder``."""
    from scope.query.api import Recording

    tty = sys.stdout.isatty() and sys.stderr.isatty()
    recording = Recording(_config(db).db, progress_bar=tty, writable_folder=writable_folder)
    context = click.get_current_context(silent=True)
    if context is not None:  # after the answer: why a run it read is empty
        context.call_on_close(lambda: _say_why_empty(recording))
    return recording


def _say_no_values(run: int, asked: str) -> None:
    click.echo(
        f"scope: run {run} recorded no values (every function at calls level), so "
        f"{asked} find nothing: record them with --level args (or "
        "--level 'PATTERN=args' for some functions)",
        err=True,
    )


def _say_why_empty(recording: Recording) -> None:
    if sys.exc_info()[0] is not None:
        return  # the command failed: its error is the one line to read
    for line in recording.why_empty.values():
        click.echo(f"scope: {line}", err=True)


db_option = click.option(
    "--db",
    metavar="PATH",
    help="Recording file (default: .scope/scope.duckdb in the project root).",
)
run_option = click.option("--run", "run_id", type=int, help="Run number (default: the latest).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def named_function_option(
    help: str = "Function name: a part, or a glob.", short: bool = True
) -> Callable[[F], F]:
    """``--function PATTERN`` (and ``-f``, unless the command gives ``-f`` another use)."""
    names = ("--function", "-f") if short else ("--function",)
    return click.option(*names, "function", metavar="PATTERN", help=help)


function_option = named_function_option()
depth_option = click.option(
    "--depth", type=click.IntRange(min=1), help="Summarise calls deeper than this."
)


def limit_option(default: int, what: str) -> Callable[[F], F]:
    """``--limit N``: at most N of what a command lists or fetches."""
    return click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        help=f"At most this many {what}.",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="scope")
def cli() -> None:
    """Record what a Python program does, then ask about it.

    \b
    Examples:
      python -m scope run app.py --app-flag     record a program
      scope calls --function parse              calls per function
      scope tree                                the call tree of the latest run
    """


def _split_levels(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """``--level LEVEL`` sets the default; ``--level PATTERN=LEVEL`` adds a pattern."""
    try:
        return split_levels(values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


level_option = click.option(
    "--level",
    "levels",
    multiple=True,
    metavar="[PATTERN=]LEVEL",
    callback=_split_levels,
    help="Capture level: off, calls (default), args or full; with PATTERN (a module, or "
    "module:function, fnmatch) only for what it names. Repeatable; the last match wins.",
)
include_option = click.option(
    "--include",
    multiple=True,
    metavar="PATTERN",
    help="Record these modules or paths too, besides your own code (module:function: "
    "those functions of a module otherwise left alone).",
)
only_option = click.option(
    "--only",
    multiple=True,
    metavar="PATTERN",
    help="Record only these modules, paths or module:function patterns, instead of your "
    "whole project (--include still adds to them).",
)
exclude_option = click.option(
    "--exclude",
    multiple=True,
    metavar="PATTERN",
    help="Never instrument these modules, paths or module:function patterns.",
)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@db_option
@level_option
@include_option
@only_option
@exclude_option
@click.option(
    "--max-calls-per-function",
    type=click.IntRange(min=0),
    metavar="N",
    help="Store the first N calls of each function one by one, sum the rest (0: no limit).",
)
@click.option(
    "--retain-runs",
    type=click.IntRange(min=0),
    metavar="N",
    help="Keep only the N newest runs in the recording: older ones are removed as this "
    "one closes (0: keep every run). See retain_runs in docs/configuration.md.",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="With the recording service: return as soon as the program ends, and leave the "
    "service storing the rest of the run.",
)
@click.option("-m", "as_module", is_flag=True, help="TARGET is a module name, as in python -m.")
@click.option("-c", "as_code", is_flag=True, help="TARGET is program text, as in python -c.")
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(
    db: str | None,
    levels: tuple[str | None, tuple[tuple[str, str], ...]],
    include: tuple[str, ...],
    only: tuple[str, ...],
    exclude: tuple[str, ...],
    max_calls_per_function: int | None,
    retain_runs: int | None,
    no_wait: bool,
    as_module: bool,
    as_code: bool,
    target: str,
    args: tuple[str, ...],
) -> _ProgramToRun:
    """Run a program as python would, recording every call of your code.

    Options stop at TARGET: everything after it belongs to the program.

    \b
    Examples:
      python -m scope run app.py --verbose
      python -m scope run -m package.tool input.txt
      python -m scope run -c "import app; app.main()"
    """
    from scope.runner import Program, prepare

    if as_module and as_code:
        raise click.UsageError("-m and -c cannot be used together")
    config = _config(
        db,
        level=levels[0],
        levels=levels[1],
        include=include,
        only=only,
        exclude=exclude,
        max_calls_per_function=max_calls_per_function,
        retain_runs=retain_runs,
        wait=False if no_wait else None,
    )
    kind = "module" if as_module else "code" if as_code else "script"
    program = Program(kind, target, args)
    prepare(program)
    return _ProgramToRun(program, config)


@cli.command()
@click.argument("targets", nargs=-1, required=True, metavar="PATH_OR_MODULE...")
@level_option
@include_option
@only_option
@exclude_option
@json_option
def plan(
    targets: tuple[str, ...],
    levels: tuple[str | None, tuple[tuple[str, str], ...]],
    include: tuple[str, ...],
    only: tuple[str, ...],
    exclude: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show what a recorded run would instrument, and how, without running anything.

    For each module (a file, every file of a folder, or a module name): whether
    it is your code and why, and each function's capture level and the reason.
    Takes the configuration of the project and the same options as run.

    \b
    Examples:
      scope plan src/
      scope plan app.py --level 'app:parse*=args'
      scope plan json            # the standard library: not instrumented
    """
    from scope.instrument.explain import explain, unmatched_in

    config = _config(level=levels[0], levels=levels[1], include=include, only=only, exclude=exclude)
    settings = config.plan_settings()
    reports = explain(targets, config.project_root, settings)
    if as_json:
        _print_json(reports)
    else:
        from scope.query import render

        _print(render.plan_report(reports))
        for line in unmatched_in(reports, settings):
            click.echo(f"note: {line}")


@cli.command()
@db_option
@json_option
def runs(db: str | None, as_json: bool) -> None:
    """List the runs in a recording: when, what, how it ended, what was stored.

    \b
    Examples:
      scope runs
      scope runs --db other.duckdb --json
    """
    with _recording(db) as recording:
        found = recording.runs()
    if as_json:
        _print_json(found)
    else:
        from scope.query import render

        _print(render.runs_table(found))


@cli.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=False))
@db_option
def combine(sources: tuple[str, ...], db: str | None) -> None:
    """Copy every run of other recordings (SOURCES) into this one, as new runs.

    \b
    Examples:
      scope combine ci-artifacts/*.duckdb
      scope combine old.duckdb --db .scope/all.duckdb
    """
    from scope.storage.combine import combine as combine_files

    with _progress("combining") as progress:
        combined = combine_files(_config(db).db, sources, progress)
    for copied in combined:
        click.echo(f"{copied.source} run {copied.source_run} -> run {copied.run}")


@cli.command()
@db_option
def recover(db: str | None) -> None:
    """Store what killed recorded programs left behind (``scope run`` does it by itself).

    A program killed while recording (SIGKILL, a crash) leaves its rings in the
    recording's live folder: every call it published and nobody stored.  This
    stores them into the runs they belong to, marked "recovered".  What a
    recording service stopped with its programs left, a service started for the
    purpose stores, and this waits until it has.

    \b
    Examples:
      scope recover
      scope recover --db .scope/other.duckdb
    """
    from scope.storage import database
    from scope.storage.recovery import left_to_a_service
    from scope.storage.recovery import recover as recover_runs

    path = _config(db).db
    by_service = _stored_by_a_service(path, left_to_a_service(path))
    for pid in by_service:
        click.echo(f"process {pid}: stored by the recording service")
    con = database.open_for_writing(path)
    try:
        recovered = recover_runs(con, path)
    finally:
        con.close()
    for done in recovered:
        click.echo(
            f"run {done.run}: process {done.pid} ({done.ended_by}), {done.calls:,} calls recovered"
        )
    if not recovered and not by_service:
        click.echo("nothing to recover")


@cli.command("rm")
@click.argument("runs", nargs=-1, required=True, metavar="RUN...")
@db_option
def remove(runs: tuple[str, ...], db: str | None) -> None:
    """Remove runs from a recording, and give the space they took back.

    Every row of each RUN goes, from every table; the other runs are left as
    they were.  Refused while a program records into the recording.

    \b
    Examples:
      scope rm 3
      scope rm 1 2 5 --db .scope/other.duckdb
    """
    from scope.storage.pruning import named, remove_runs

    numbers = []
    for text in runs:
        if not text.isdigit():
            raise ScopeError(f"{text!r} is not a run number (see 'scope runs')")
        numbers.append(int(text))
    path = _config(db).db
    _say_removed(remove_runs(path, named(numbers, path)))


@cli.command()
@click.option("--keep", metavar="N", help="Keep the N newest runs (the highest numbers).")
@click.option(
    "--older-than",
    metavar="AGE",
    help="Remove runs started more than AGE ago: 30m, 12h, 7d, 2w.",
)
@db_option
def prune(keep: str | None, older_than: str | None, db: str | None) -> None:
    """Remove old runs from a recording, and give the space they took back.

    Give exactly one of --keep and --older-than.  Refused while a program
    records into the recording.  To keep a recording to its newest runs as it
    is recorded into, set retain_runs (see docs/configuration.md).

    \b
    Examples:
      scope prune --keep 10
      scope prune --older-than 7d
    """
    from scope.storage.pruning import beyond_newest, parse_age, remove_runs, started_before

    if (keep is None) == (older_than is None):
        raise ScopeError("prune needs one of --keep N and --older-than AGE (not both)")
    if keep is not None:
        if not keep.strip().isdigit():
            raise ScopeError(f"--keep takes a number of runs (0 or more), not {keep!r}")
        select = beyond_newest(int(keep))
    else:
        assert older_than is not None
        try:
            select = started_before(parse_age(older_than))
        except ValueError as exc:
            raise ScopeError(f"--older-than: {exc}") from None
    _say_removed(remove_runs(_config(db).db, select))


def _say_removed(removed: Removed) -> None:
    """What ``scope rm`` or ``scope prune`` removed, and the file's size before and after."""
    if not removed.runs:
        click.echo(f"no run to remove in {removed.path} ({_file_size(removed.size_before)})")
        return
    plural = "s" if len(removed.runs) > 1 else ""
    listed = ", ".join(str(run) for run in removed.runs)
    click.echo(
        f"removed run{plural} {listed} from {removed.path}: "
        f"{_file_size(removed.size_before)} -> {_file_size(removed.size_after)} "
        f"({removed.size_before:,} -> {removed.size_after:,} bytes)"
    )


@cli.group()
def cache() -> None:
    """The cache of rewritten code: where it is, how big, and emptying it.

    scope keeps each instrumented module's code between runs, in
    ``.scope/cache`` of the project (the ``cache_dir`` setting), bounded by
    ``cache_max_mb``, so that a run instruments only what changed.
    """


@cache.command("info")
def cache_info() -> None:
    """Where the cache is, and how many entries and bytes it holds.

    \b
    Example:
      scope cache info
    """
    from scope.instrument.cache import summarize

    config = _config()
    held = summarize(config.code_cache_folder)
    click.echo(
        f"{held.folder}: {held.entries:,} entries, {_file_size(held.size)} "
        f"(at most {config.cache_max_mb:,} MB)"
    )


@cache.command("clear")
def cache_clear() -> None:
    """Remove every entry of the cache: the next run instruments each module afresh.

    \b
    Example:
      scope cache clear
    """
    from scope.instrument.cache import clear

    removed = clear(_config().code_cache_folder)
    click.echo(
        f"removed {removed.entries:,} entries ({_file_size(removed.size)}) from {removed.folder}"
    )


def _file_size(size: int) -> str:
    """``size`` bytes for people: 512 bytes, 13.8 kB, 4.2 MB."""
    if size < 1000:
        return f"{size} bytes"
    if size < 1_000_000:
        return f"{size / 1e3:.1f} kB"
    return f"{size / 1e6:.1f} MB"


def _stored_by_a_service(db: str, pids: list[int], timeout: float = 120.0) -> list[int]:
    """Have a recording service store what ``pids`` left (a service that was
    stopped with them left it), and wait until it has; returns the pids stored."""
    import time

    from scope import live
    from scope.capture.service_link import start_service
    from scope.storage.recovery import left_to_a_service

    if not pids:
        return []
    start_service(db)  # one that is running already keeps the lock: this one leaves
    deadline = time.monotonic() + timeout
    while left_to_a_service(db) or live.service_running(db):
        if time.monotonic() > deadline:
            raise ScopeError(
                f"the recording service did not store what was left in {live.live_root(db)} "
                f"in {timeout:.0f} s (see its service.log there)"
            )
        time.sleep(0.05)
    return pids


@cli.command()
@db_option
@run_option
@json_option
def status(db: str | None, run_id: int | None, as_json: bool) -> None:
    """A run's health: what was captured, stored and lost, the writer's lag, the
    processes and threads seen and who started each thread, how many records
    waited for the recording service (median and 99th percentile of each
    process's drains), and processes taken over from a service that stopped.

    \b
    Examples:
      scope status
      scope status --run 2 --json
    """
    with _recording(db) as recording:
        health = recording.health(run_id)
    if as_json:
        _print_json(health)
    else:
        from rich.console import Group

        from scope.query import render

        _print(
            Group(
                render.health_table(health),
                render.processes_table(health),
                render.threads_table(health),
            )
        )


class _CallId(click.ParamType[int]):
    """A call id: short (1:42, or 3:1:42 in a child process) or the whole number."""

    name = "call"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from scope.query.ids import parse_call_id

        if isinstance(value, int):
            return value
        try:
            return parse_call_id(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Duration(click.ParamType[int]):
    """A duration option: 250ms, 1.5s, 40us, 900ns (a bare number is seconds)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from scope.errors import QueryError
        from scope.query.calls import parse_duration

        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value))
        except QueryError as exc:
            self.fail(str(exc), param, ctx)


# The filters ``scope calls`` and ``scope export`` share (``scope.query.calls.CallFilter``).
slower_than_option = click.option(
    "--slower-than",
    "--min-duration",
    "slower_than",
    type=_Duration(),
    metavar="DURATION",
    help="Only calls at least this long (250ms, 1.5s, 40us).",
)
since_option = click.option(
    "--since",
    "since",
    type=_Duration(),
    metavar="TIME",
    help="Only calls still running this long after the run began (1.5s, 200ms), or begun later.",
)
until_option = click.option(
    "--until",
    "until",
    type=_Duration(),
    metavar="TIME",
    help="Only calls begun at most this long after the run began.",
)
thread_option = click.option(
    "--thread", type=int, metavar="N", help="Only thread N (see scope status)."
)
test_option = click.option(
    "--test", metavar="NAME", help="Only calls made by this test (pytest --scope)."
)


def _test_roots(recording: Recording, run: int, test: str | None) -> tuple[int, ...]:
    """The root calls of the phases of the test ``test`` names (none without a name)."""
    if test is None:
        return ()
    return recording.tests(run, nodeid=recording.find_test(test, run))[0].roots


@cli.command()
@db_option
@run_option
@function_option
@click.option("--module", "-m", metavar="PATTERN", help="Module name: a part, or a glob.")
@click.option(
    "--arg",
    "argument",
    metavar="[NAME=]TEXT",
    help="An argument's recorded value contains TEXT (args level).",
)
@click.option("--returned", metavar="TEXT", help="The recorded return value contains TEXT.")
@slower_than_option
@click.option("--faster-than", type=_Duration(), metavar="DURATION", help="At most this long.")
@since_option
@until_option
@click.option("--outcome", type=click.Choice(["returned", "raised", "unfinished"]))
@thread_option
@click.option("--task", type=int, metavar="CALL", help="Only calls made in this asyncio task.")
@click.option("--pid", type=int, help="Only calls of this process.")
@test_option
@click.option("--slowest", is_flag=True, help="Longest first, instead of in the order they began.")
@limit_option(50, "calls")
@json_option
def calls(
    db: str | None,
    run_id: int | None,
    function: str | None,
    module: str | None,
    argument: str | None,
    returned: str | None,
    slower_than: int | None,
    faster_than: int | None,
    since: int | None,
    until: int | None,
    outcome: str | None,
    thread: int | None,
    task: int | None,
    pid: int | None,
    test: str | None,
    slowest: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Find calls: by function, arguments, return value, duration, time, thread,
    task, process, test or outcome.  Each call comes with its id, for scope tree
    and scope path.

    \b
    Examples:
      scope calls --function 'Parser.*' --slowest
      scope calls --arg amount=500 --outcome raised
      scope calls --slower-than 10ms --limit 20
      scope calls --since 2s --until 2.5s --thread 1
      scope calls --test test_parse --json
    """
    from scope.query.calls import CallFilter

    with _recording(db) as recording:
        resolved = recording.resolve_run(run_id)
        where = CallFilter(
            function=function,
            module=module,
            argument=argument,
            returned=returned,
            min_ns=slower_than,
            max_ns=faster_than,
            since_ns=since,
            until_ns=until,
            thread=thread,
            task=task,
            pid=pid,
            test_roots=_test_roots(recording, resolved, test),
            outcome=outcome,
        )
        answer = recording.calls(where, resolved, limit=limit, slowest=slowest)
        asks_values = argument is not None or returned is not None
        without_values = asks_values and not recording.records_values(resolved)
    if as_json:
        _print_json(answer)
    else:
        from scope.query.render_calls import calls_table

        _print(calls_table(answer))
    if without_values:
        _say_no_values(resolved, "--arg and --returned")


@cli.command()
@db_option
@run_option
@click.argument("call_id", type=_CallId())
@json_option
def path(db: str | None, run_id: int | None, call_id: int, as_json: bool) -> None:
    """How the program got to a call: every call open when it began, outermost first.

    \b
    Examples:
      scope path 1:14
      scope calls --outcome raised --limit 1    # find a call id, then ask
    """
    with _recording(db) as recording:
        answer = recording.path_to(call_id, run_id)
    if as_json:
        _print_json(answer)
    else:
        from scope.query.render_calls import path_view

        _print(path_view(answer))


@cli.command()
@db_option
@run_option
@click.option(
    "--type", "type_pattern", metavar="PATTERN", help="Exception type: a part, or a glob."
)
@click.option("--all", "every", is_flag=True, help="Each exception, in the order raised.")
@limit_option(50, "exceptions (kinds of exception, without --all)")
@json_option
def exceptions(
    db: str | None,
    run_id: int | None,
    type_pattern: str | None,
    every: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Exceptions that left recorded calls: where each was raised, the calls it
    went through, and where it was caught (or that it ended the program).

    Exceptions alike (type, message with its numbers aside, raising and
    catching function) are one entry, counted, with the newest of them; the
    entry with the newest exception comes first.  --all lists each.

    \b
    Examples:
      scope exceptions
      scope exceptions --all --type KeyError --json
    """
    with _recording(db) as recording:
        if every:
            each = recording.exceptions(run_id, type=type_pattern, limit=limit)
        else:
            kinds = recording.exception_kinds(run_id, type=type_pattern, limit=limit)
    if as_json:
        _print_json(each if every else kinds)
        return
    from scope.query.render_calls import exception_kinds_view, exceptions_view

    _print(exceptions_view(each) if every else exception_kinds_view(kinds))


def _object_id(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an object id (decimal, or hex as 0x…)") from None


@cli.command()
@db_option
@run_option
@click.argument("object_id", required=False, metavar="[OBJECT_ID]")
@click.option("--attribute", "-a", metavar="NAME", help="Only writes to this attribute.")
@click.option("--type", "owner_type", metavar="CLASS", help="Only objects of this class (by name).")
@limit_option(1000, "writes")
@json_option
def history(
    db: str | None,
    run_id: int | None,
    object_id: str | None,
    attribute: str | None,
    owner_type: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Every recorded write to objects' attributes (self.x = ...), in order, with
    the call that made it.  OBJECT_ID (as values show it: 0x7f3a...) keeps one
    object's.  Needs functions recorded at args level or above.

    \b
    Examples:
      scope history --type Account --attribute balance
      scope history 0x7f3a1c2b9e50
    """
    wanted = _object_id(object_id)
    with _recording(db) as recording:
        answer = recording.history(wanted, attribute, owner_type, run=run_id, limit=limit)
        resolved = recording.resolve_run(run_id)
        without_values = not recording.records_values(resolved)
    if as_json:
        _print_json(answer)
    else:
        from scope.query.render_calls import history_table

        _print(history_table(answer))
    if without_values:
        _say_no_values(resolved, "history")


@cli.command()
@db_option
@run_option
@click.argument("before")
@click.argument("after")
@json_option
def diff(db: str | None, run_id: int | None, before: str, after: str, as_json: bool) -> None:
    """What differs between two runs, or two tests: call counts, exceptions and
    return values.  BEFORE and AFTER are run numbers, or tests (a node id or a
    part of one, in --run's run, or NAME@RUN).

    \b
    Examples:
      scope diff 1 2
      scope diff test_parse@3 test_parse@4
      scope diff test_ok test_broken
    """
    with _recording(db) as recording:
        answer = recording.diff(before, after, run_id)
    if as_json:
        _print_json(answer)
    else:
        from scope.query import render

        _print(render.diff_view(answer))


@cli.command()
@db_option
@click.argument("query")
@json_option
def sql(db: str | None, query: str, as_json: bool) -> None:
    """Run SQL on a recording (read-only).  The tables and their columns are
    documented in scope/storage/schema.py.

    \b
    Examples:
      scope sql "SELECT count(*) FROM call"
      scope sql "SELECT type, count(*) FROM exception GROUP BY type" --json
    """
    with _recording(db) as recording:
        answer = recording.sql(query)
    if as_json:
        click.echo(_rows_json(answer.columns, answer.rows))
        return
    from scope.query.render_calls import sql_table

    _print(sql_table(answer))


@cli.command()
@db_option
@run_option
@click.option(
    "--format",
    "-f",
    "format_name",
    type=click.Choice(["chrome", "perfetto", "speedscope", "parquet", "otlp"]),
    required=True,
    help="chrome (also perfetto): Trace Event JSON; speedscope; parquet: a folder, "
    "one file per table; otlp: OpenTelemetry spans as OTLP/JSON.",
)
@click.option(
    "--output",
    "-o",
    metavar="PATH",
    help="Where to write (default: scope-run<N>.trace.json, .speedscope.json, "
    ".otlp.json or -parquet/).",
)
@named_function_option(
    "Only calls of this function (a part of its name, or a glob), each with every call under it.",
    short=False,
)
@test_option
@thread_option
@since_option
@until_option
@slower_than_option
@click.option(
    "--max-calls",
    type=click.IntRange(min=1),
    metavar="N",
    help="At most N calls: the longest (what they called is left out first).",
)
def export(
    db: str | None,
    run_id: int | None,
    format_name: str,
    output: str | None,
    function: str | None,
    test: str | None,
    thread: int | None,
    since: int | None,
    until: int | None,
    slower_than: int | None,
    max_calls: int | None,
) -> None:
    """Export a run, or the calls you choose of it, for the viewers and engines you
    already use.

    --function and --test keep the calls they name with every call under them;
    --thread, --since, --until and --min-duration leave out each call that does
    not match; --max-calls keeps the longest of what is left.  Parquet copies
    whole tables, so it takes none of them.

    \b
    Examples:
      scope export --format chrome        # then open it in ui.perfetto.dev
      scope export --format chrome --function handle_request --max-calls 100000
      scope export --format speedscope --since 2s --until 3s -o run.json
      scope export --format parquet --run 2          # read with DuckDB, pandas, Spark
      scope export --format otlp --test test_login   # POST to a collector's /v1/traces
    """
    from scope.query.calls import CallFilter
    from scope.query.export import ALIASES, default_path
    from scope.query.export import export as write_export
    from scope.query.export.selection import Selection

    chosen = ALIASES.get(format_name, format_name)
    # DuckDB writes Parquet (COPY): there, and only there (the default is in the cwd).
    folder = (output or os.getcwd()) if chosen == "parquet" else None
    with _recording(db, folder) as recording, _progress("exporting") as progress:
        resolved = recording.resolve_run(run_id)
        where = CallFilter(
            function=function,
            test_roots=_test_roots(recording, resolved, test),
            thread=thread,
            since_ns=since,
            until_ns=until,
            min_ns=slower_than,
        )
        path = output or default_path(chosen, resolved)
        with _writing(path):
            done = write_export(
                recording.con, chosen, Selection(resolved, where, max_calls), path, progress
            )
    unit = "rows" if chosen == "parquet" else "calls"
    if done.left_out:
        click.echo(
            f"scope: --max-calls {max_calls:,} left out {done.left_out:,} shorter calls "
            f"of the {done.rows + done.left_out:,} selected",
            err=True,
        )
    click.echo(f"run {done.run}: {done.rows:,} {unit} written to {done.path} ({chosen})")


@cli.command()
@db_option
@run_option
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    help="Write one self-contained page to FILE instead, to share (capped: --max-calls).",
)
@click.option(
    "--max-calls",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="With -o: calls drawn on the page's timeline (the first ones).",
)
@click.option("--no-open", is_flag=True, help="Only print the page's address.")
@click.option(
    "--idle",
    type=click.FloatRange(min=0, min_open=True),
    default=30 * 60,
    show_default=True,
    metavar="SECONDS",
    help="Stop after this long without a request from the page.",
)
def view(
    db: str | None,
    run_id: int | None,
    output: str | None,
    max_calls: int,
    no_open: bool,
    idle: float,
) -> None:
    """Look at a run in your browser: a timeline per thread that zooms from the whole
    run down to one call, with search, each call's details, the tests, the
    exceptions and the functions with the most time.

    It starts a server on 127.0.0.1 that only this session's address (with its
    token) can ask, and which answers only the window on screen, so a run of
    millions of calls draws as fast as a small one.  It stops on Ctrl-C, or once
    the page has asked nothing for --idle seconds.  -o writes one self-contained
    page instead, for sharing (it holds at most --max-calls calls and says so).

    \b
    Examples:
      scope view                       # opens the page in your browser
      scope view --run 2 --no-open     # prints the address to open
      scope view -o run2.html          # one file, no server
    """
    if output is not None:
        from scope.query.view import write_view

        with _recording(db) as recording:
            resolved = recording.resolve_run(run_id)
            with _writing(output):
                drawn = write_view(recording, resolved, output, max_calls)
        click.echo(f"run {resolved}: {output} ({drawn:,} calls on the timeline)")
        return
    import webbrowser

    from scope.query.viewer.server import ViewServer

    with _recording(db) as recording:
        resolved = recording.resolve_run(run_id)
        server = ViewServer(recording, resolved, idle_seconds=idle, let_go=True)
        click.echo(f"scope view: run {resolved} at {server.url}  (Ctrl-C stops it)")
        sys.stdout.flush()
        # Without a display, webbrowser would start a text browser in this terminal.
        headless = sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        )
        with _opener(server.url) as opener:
            if not (no_open or headless):
                webbrowser.open(opener)
            why = server.serve()
    click.echo(f"scope view: stopped ({why})")


@contextlib.contextmanager
def _opener(url: str) -> Iterator[str]:
    """A page of the user's own (0600, in a 0700 folder) that sends the browser on to
    ``url``: given to the browser instead of ``url``, whose token every user of the
    machine could read on the browser's command line.  Removed once done."""
    import html
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="scope-view-")
    try:
        page = os.path.join(folder, "open.html")
        with open(page, "w", encoding="utf-8", opener=lambda p, f: os.open(p, f, 0o600)) as out:
            out.write(
                '<!doctype html><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
                f'<meta http-equiv="refresh" content="0;url={html.escape(url)}">'
                f'<a href="{html.escape(url)}">scope view</a>\n'
            )
        yield f"file://{page}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _writing(path: str) -> Iterator[None]:
    """Where an export or page cannot be written, one line saying so."""
    try:
        yield
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror}") from None


@contextlib.contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr while something long runs, when stderr is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda done, total: None
        return
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*Progress.get_default_columns()[:1], *columns, console=console) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _rows_json(columns: list[str], rows: list[tuple[object, ...]]) -> str:
    from scope.query.as_json import to_json

    return to_json([dict(zip(columns, row, strict=True)) for row in rows])


@cli.command()
@db_option
@run_option
@click.option(
    "--by",
    type=click.Choice(["total", "self"]),
    default="total",
    show_default=True,
    help="Order by total time (with the calls made) or self time (without).",
)
@function_option
@limit_option(20, "functions")
@json_option
def top(
    db: str | None,
    run_id: int | None,
    by: str,
    function: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The most expensive functions: calls, total and self time, mean and longest call.

    Self time is a function's own: its time less that of the recorded calls it
    made (and, for generators and coroutines, less the time they were suspended).

    \b
    Examples:
      scope top
      scope top --by self --limit 10
      scope top --function parse --json
    """
    # Loaded while DuckDB may still be opening the recording (scope.storage.ahead).
    import scope.query.results.runs  # noqa: F401
    from scope.query import plain

    with _recording(db) as recording:
        resolved = recording.resolve_run(run_id)
        stats = recording.function_stats(resolved, function=function, limit=limit, by=by)
    if as_json:
        _print_json(stats)
        return

    title = "Most self time" if by == "self" else "Most total time"
    # Piped: the same table, drawn without loading rich (a third of top's start-up).
    drawn = plain.function_table(stats, resolved, title)
    if plain.output_width() == plain.UNBOUNDED and drawn is not None:
        click.echo(drawn)
        return
    from scope.query import render

    _print(render.function_table(stats, resolved, title))


@cli.command()
@db_option
@run_option
@click.argument("call_id", type=_CallId(), required=False)
@depth_option
@limit_option(500, "calls")
@json_option
def tree(
    db: str | None,
    run_id: int | None,
    call_id: int | None,
    depth: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """The call tree of a run, or of one call (CALL_ID) and everything under it.

    \b
    Examples:
      scope tree
      scope tree 1:1 --depth 3
    """
    with _recording(db) as recording:
        answer = recording.tree(call_id, run=run_id, limit=limit, depth=depth)
    if as_json:
        _print_json(answer)
    else:
        from scope.query import render

        _print(render.call_tree(answer, max_depth=depth))


@cli.command()
@db_option
@run_option
@click.option("--failed", is_flag=True, help="Only tests that failed or errored.")
@click.option("--slowest", type=click.IntRange(min=1), metavar="N", help="The N longest tests.")
@click.option(
    "--calls",
    "function",
    metavar="FUNCTION",
    help="Which tests called the functions FUNCTION names (a part, or a glob), and how often.",
)
@json_option
def tests(
    db: str | None,
    run_id: int | None,
    failed: bool,
    slowest: int | None,
    function: str | None,
    as_json: bool,
) -> None:
    """The tests a recorded session (pytest --scope) ran, with outcomes and calls.

    \b
    Examples:
      scope tests
      scope tests --failed
      scope tests --slowest 10
      scope tests --calls parse_header
    """
    with _recording(db) as recording:
        resolved = recording.resolve_run(run_id)
        if function is not None:
            uses = recording.tests_calling(function, resolved)
        else:
            found = recording.tests(resolved, failed=failed, slowest=slowest)
    if as_json:
        _print_json(uses if function is not None else found)
        return
    from scope.query import render

    if function is not None:
        _print(render.test_uses_table(uses, function, resolved))
    else:
        _print(render.tests_table(found, resolved))


@cli.command()
@db_option
@run_option
@click.argument("nodeid")
@depth_option
@limit_option(500, "calls per phase (the exception's path always shows)")
@json_option
def test(
    db: str | None,
    run_id: int | None,
    nodeid: str,
    depth: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """One test's calls, phase by phase, with its exception's path highlighted.

    NODEID is pytest's node id, or any part of it that names one test.

    \b
    Examples:
      scope test tests/test_app.py::test_parse
      scope test test_parse --depth 3
    """
    with _recording(db) as recording:
        detail = recording.test(nodeid, run=run_id, limit=limit)
    if as_json:
        _print_json(detail)
    else:
        from scope.query import render

        _print(render.test_detail(detail, max_depth=depth))


def main(argv: Sequence[str] | None = None) -> None:
    """Run the click command line (``scope.launch.main`` hands it what it does not read)."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="scope", standalone_mode=False
        )
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ScopeError as exc:
        fail(exc)
    except Exception as exc:
        engine = sys.modules.get("_duckdb") or sys.modules.get("duckdb")  # storage/engine.py
        if engine is None or not isinstance(exc, engine.Error):
            raise
        # A query that a file changed by other tools fails: one line, not DuckDB's traceback.
        fail(QueryError(f"the recording could not answer: {str(exc).strip().splitlines()[0]}"))
    if isinstance(result, _ProgramToRun):
        try:
            record(result.program, result.config)
        except ScopeError as exc:
            fail(exc)
        return
    if isinstance(result, int) and result:
        sys.exit(result)

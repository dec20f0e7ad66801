"""The ``scope`` command's front door: ``scope run`` without click.

``scope run PROGRAM`` must import nothing the program might import itself
before its hook is in place: a program built with click (click's own test
suite among them) would otherwise find an uninstrumented click already in
``sys.modules``.  So ``main`` reads ``run``'s options itself, the way click
would, and hands anything else to ``scope.cli``: the other commands, ``--help``,
and any ``run`` command line it does not fully understand, for which click gives
the usual help text or usage error.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from scope.errors import ProgramCannotStart, ScopeError
from scope.levels import LEVELS

if TYPE_CHECKING:  # the configuration and the interpreter check load for run alone
    from scope.config import Config

#: ``run``'s options that take a value, by the keyword ``_options`` files them under
_VALUE_OPTIONS = {
    "--db": "db",
    "--level": "level",
    "--include": "include",
    "--only": "only",
    "--exclude": "exclude",
    "--max-calls-per-function": "max_calls_per_function",
    "--retain-runs": "retain_runs",
}
_REPEATABLE = frozenset({"level", "include", "only", "exclude"})
#: ``run``'s flags, and the setting each gives
_FLAG_OPTIONS = {"--no-wait": ("wait", False)}


class RunRequest(NamedTuple):
    """A ``scope run`` command line, read.  (A named tuple: ``dataclasses`` costs every
    command that imports this module, ``--help`` among them, milliseconds.)"""

    kind: str
    target: str
    args: list[str]
    options: dict[str, object]


def read_run(words: Sequence[str]) -> RunRequest | None:
    """``run``'s arguments read as click reads them, or None to let click read them.

    Options stop at the target: everything after it belongs to the program.
    """
    options: dict[str, object] = {}
    values: dict[str, list[str]] = {}
    kind = "script"
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        if word in ("-m", "-c"):
            if kind != "script":
                return None  # both: click's usage error
            kind = "module" if word == "-m" else "code"
            i += 1
            continue
        if word in _FLAG_OPTIONS:
            setting, flag_value = _FLAG_OPTIONS[word]
            options[setting] = flag_value
            i += 1
            continue
        name, equals, value = word.partition("=")
        key = _VALUE_OPTIONS.get(name)
        if key is None:
            return None  # --help, an unknown or abbreviated option: click decides
        if not equals:
            if i + 1 >= len(words):
                return None
            i += 1
            value = words[i]
        values.setdefault(key, []).append(value)
        i += 1
    if i >= len(words):
        return None  # no target: click's usage error
    for key, given in values.items():
        if key not in _REPEATABLE:
            options[key] = given[-1]  # as click: the last one given
    for counted in ("max_calls_per_function", "retain_runs"):
        if counted in options:
            text = str(options[counted])
            if not text.isdigit():
                return None  # click's usage error
            options[counted] = int(text)
    try:
        options["level"], options["levels"] = split_levels(values.get("level", []))
    except ValueError:
        return None
    options["include"] = tuple(values.get("include", []))
    options["only"] = tuple(values.get("only", []))
    options["exclude"] = tuple(values.get("exclude", []))
    return RunRequest(kind, words[i], list(words[i + 1 :]), options)


def split_levels(values: Sequence[str]) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """``--level LEVEL`` sets the default, ``--level PATTERN=LEVEL`` adds a pattern.

    Raises ``ValueError`` naming a level that is not one.
    """
    default, patterns = None, []
    for value in values:
        pattern, _, level = value.rpartition("=")
        if level not in LEVELS:
            raise ValueError(f"{level!r} is not one of {', '.join(LEVELS)}")
        if pattern:
            patterns.append((pattern, level))
        else:
            default = level
    return default, tuple(patterns)


def config_for(options: dict[str, object]) -> Config:
    """The configuration of a run: files and environment, then these options."""
    from scope.config import load_config

    return load_config(overrides=options)


def record(program: object, config: Config) -> None:
    """Record ``program`` (a prepared ``scope.runner.Program``); end as it ended."""
    from scope.runner import Program, run_program
    from scope.session import Recorder

    assert isinstance(program, Program)
    script = program.target if program.kind == "script" else None
    config = with_requested_package(config, program.kind, program.target)
    recorder = Recorder(config, script=script, command=program.command)
    recorder.start()
    try:
        outcome = run_program(program, recorder)
    except ScopeError:
        recorder.exit_status = 1
        raise
    outcome.finish(recorder)


#: packages ``-m`` runs that run the user's code rather than being it: pytest records
#: the tests into the program's recording through scope's plugin
_RUNNERS = frozenset({"pytest"})


def with_requested_package(config: Config, kind: str, target: str) -> Config:
    """``config``, recording the package ``python -m scope run -m PACKAGE`` names too:
    whether it is installed or the user's, it is what the user asked to look at."""
    from dataclasses import replace

    package = target.split(".")[0]
    if kind != "module" or package in _RUNNERS or package in config.include:
        return config
    return replace(
        config, include=(*config.include, package), added_by_scope=(*config.added_by_scope, package)
    )


def fail(exc: ScopeError) -> NoReturn:
    """Say what went wrong in one line and exit 1 (or as Python, if Python would refuse)."""
    if isinstance(exc, ProgramCannotStart):
        sys.stderr.write(f"{exc}\n")
        sys.stderr.flush()
        sys.exit(exc.exit_status)
    sys.stderr.write(f"scope: error: {exc}\n")
    sys.stderr.flush()
    sys.exit(1)


#: commands that read one recording and write nothing: the launcher opens it ahead
READING_COMMANDS = frozenset(
    [
        "calls",
        "diff",
        "exceptions",
        "history",
        "path",
        "runs",
        "sql",
        "status",
        "test",
        "tests",
        "top",
        "tree",
    ]
)


def open_ahead(words: Sequence[str]) -> None:
    """Start opening the recording a reading command will read, on a thread, so that
    DuckDB opens it while the command line loads (``scope.storage.ahead``): the file
    ``--db`` names, or the configured one.  Anything amiss is left for the command."""
    if not words or words[0] not in READING_COMMANDS or "-h" in words or "--help" in words:
        return
    db = None
    for i, word in enumerate(words):
        if word == "--db":
            if i + 1 == len(words):
                return
            db = words[i + 1]
        elif word.startswith("--db="):
            db = word[len("--db=") :]
    from scope.config import load_config
    from scope.storage import ahead

    try:
        ahead.start(load_config(overrides={"db": db}).db)
    except Exception:  # only a help: what is wrong, the command itself says
        return


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``scope`` command and of ``python -m scope``."""
    words = list(sys.argv[1:] if argv is None else argv)
    request = read_run(words[1:]) if words[:1] == ["run"] else None
    if request is None:
        open_ahead(words)
        from scope.cli import main as click_main

        click_main(words)
        return
    from scope.interpreter import check as check_interpreter

    try:
        check_interpreter()  # before the recorder's extension loads
        # Before the recorder's modules too: in a removed working folder CPython 3.13.0
        # fails to import socket ("error return without exception set").
        config = config_for(request.options)
        from scope.runner import Program, prepare

        if config.service:
            # A service that lingers after a run opens the file while this one starts.
            from scope import live

            live.ask_service(config.db, {"op": "hello", "open": True})
        program = Program(request.kind, request.target, request.args)
        prepare(program)
        record(program, config)
    except ScopeError as exc:
        fail(exc)

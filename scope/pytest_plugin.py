"""The pytest plugin: ``pytest --scope`` records every test of a session.

Registered through the ``pytest11`` entry point as ``scope`` (so ``-p no:scope``
disables it).  Until it is asked for, with ``--scope``, ``[tool.scope] pytest =
true`` or ``SCOPE_PYTEST=1``, it adds its options and nothing else: this module
imports only pytest, and scope's recorder loads only when a session records.

When asked for, it starts recording in ``pytest_load_initial_conftests``
(first), so that the code under test that ``conftest.py`` files import, and
everything imported during collection, is instrumented; its import hook sits
behind pytest's assertion rewriter, which keeps loading test modules and
conftests.  By default test files (``python_files``, ``conftest.py``) are not
instrumented: the project's own code is.  Inside a process scope already
records (``scope run -m pytest``, or a pytest-xdist worker of a recorded
session) it records the tests into that recording.  ``scope.suite`` does the
per-test work.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from scope.config import Config


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``--scope`` options (each also a ``[tool.scope]`` key and a SCOPE_* variable)."""
    group = parser.getgroup("scope", "recording with scope (see 'scope tests')")
    group.addoption(
        "--scope",
        action="store_true",
        default=None,
        help="Record every test: the calls of your code under each test's setup, call "
        "and teardown, joined to the outcome ([tool.scope] pytest = true does the same).",
    )
    group.addoption(
        "--no-scope",
        action="store_false",
        dest="scope",
        default=None,
        help="Do not record, whatever [tool.scope] or SCOPE_PYTEST say.",
    )
    group.addoption(
        "--scope-db", metavar="PATH", help="Recording file (default: .scope/scope.duckdb)."
    )
    group.addoption(
        "--scope-level",
        action="append",
        default=[],
        metavar="[PATTERN=]LEVEL",
        help="Capture level: off, calls (default), args or full; with PATTERN only for what "
        "it names. Repeatable.",
    )
    group.addoption(
        "--scope-include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="Instrument these modules or paths (given any, test files are no longer "
        "left out by default; pytest's assertion rewriter still loads them unless "
        "--assert=plain).",
    )
    group.addoption(
        "--scope-only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="Instrument only these modules, paths or module:function patterns "
        "(--scope-include adds to them).",
    )
    group.addoption(
        "--scope-exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="Never instrument these modules, paths or module:function patterns.",
    )
    group.addoption(
        "--scope-keep",
        metavar="WHICH",
        help="Whose calls to keep: all (default), failed, slow:SECONDS, or several "
        "comma-separated. Every test's outcome is kept.",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """Start recording before the initial conftests import the code under test."""
    options = early_config.known_args_namespace
    if options.scope is False:
        return
    from scope.session import current_recorder

    recorder = current_recorder()
    if recorder is None:
        try:
            config = _config(early_config, options)
        except pytest.UsageError:
            from scope.config import pytest_requested

            if options.scope or pytest_requested(os.getcwd(), os.environ):
                raise
            return  # not asked for: a bad [tool.scope] is for scope's commands to report
        if not (options.scope or config.pytest):
            return
        from scope.interpreter import UnsupportedInterpreter, check

        try:
            check()  # before the recorder's extension loads
        except UnsupportedInterpreter as exc:
            raise pytest.UsageError(f"scope: {exc}") from None
        from scope.suite import start_recording

        recorder = start_recording(config)
        owned = True
    else:
        owned = False
    from scope.suite import SuiteRecorder

    keep = options.scope_keep or recorder.config.keep
    early_config.pluginmanager.register(
        SuiteRecorder(early_config, recorder, keep, owned=owned), "scope-suite"
    )


def _config(early_config: pytest.Config, options: Any) -> Config:
    """The configuration: [tool.scope], SCOPE_* variables, then the --scope-* options."""
    from scope.config import load_config
    from scope.errors import ConfigError
    from scope.launch import split_levels

    try:
        level, levels = split_levels(options.scope_level)
        include = tuple(options.scope_include)
        only = tuple(options.scope_only)
        exclude = tuple(options.scope_exclude)
        config = load_config(
            overrides={
                "db": options.scope_db,
                "level": level,
                "levels": levels,
                "include": include,
                "only": only,
                "exclude": exclude,
                "keep": options.scope_keep,
            }
        )
    except (ConfigError, ValueError) as exc:
        raise pytest.UsageError(f"scope: {exc}") from None
    if config.include or config.only:
        return config
    from dataclasses import replace

    # Test files are pytest's to load (its assertion rewriter claims them first
    # anyway); left out here too, so that --assert=plain changes nothing.
    test_files = ("conftest.py", *early_config.getini("python_files"))
    return replace(
        config,
        exclude=config.exclude + tuple(test_files),
        added_by_scope=config.added_by_scope + tuple(test_files),
    )

"""The typed answers of the query API: what ``scope.query.Recording`` returns.

Plain dataclasses, so that the CLI's tables, ``--json`` and scripts share them.
They are grouped by the questions that return them, one module each, and a
module loads when one of its names is first asked for: a dataclass costs the
process that defines it a fraction of a millisecond, and ``scope top`` needs
one of these, not all (``benchmarks/query_startup.py``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scope.query.results.calls import Call, CallList, CallNode, CallRow, CallTree
    from scope.query.results.diff import CountChange, ExceptionChange, RecordingDiff, ReturnChange
    from scope.query.results.exceptions import ExceptionKind, ExceptionPath
    from scope.query.results.health import ProcessHealth, RunHealth, ThreadHealth
    from scope.query.results.history import AttributeWrite
    from scope.query.results.runs import FunctionStats, RunSummary, SqlResult
    from scope.query.results.tests import (
        FAILING,
        TestDetail,
        TestPhaseResult,
        TestResult,
        TestUse,
        combined_outcome,
    )

#: each name, and the module of this package it is defined in
_HOMES = {
    "RunSummary": "runs",
    "FunctionStats": "runs",
    "SqlResult": "runs",
    "ThreadHealth": "health",
    "ProcessHealth": "health",
    "RunHealth": "health",
    "Call": "calls",
    "CallNode": "calls",
    "CallTree": "calls",
    "CallRow": "calls",
    "CallList": "calls",
    "ExceptionPath": "exceptions",
    "ExceptionKind": "exceptions",
    "AttributeWrite": "history",
    "TestPhaseResult": "tests",
    "FAILING": "tests",
    "TestResult": "tests",
    "combined_outcome": "tests",
    "TestUse": "tests",
    "TestDetail": "tests",
    "CountChange": "diff",
    "ExceptionChange": "diff",
    "ReturnChange": "diff",
    "RecordingDiff": "diff",
}

__all__ = [
    "FAILING",
    "AttributeWrite",
    "Call",
    "CallList",
    "CallNode",
    "CallRow",
    "CallTree",
    "CountChange",
    "ExceptionChange",
    "ExceptionKind",
    "ExceptionPath",
    "FunctionStats",
    "ProcessHealth",
    "RecordingDiff",
    "ReturnChange",
    "RunHealth",
    "RunSummary",
    "SqlResult",
    "TestDetail",
    "TestPhaseResult",
    "TestResult",
    "TestUse",
    "ThreadHealth",
    "combined_outcome",
]


def __getattr__(name: str) -> object:
    """Load a name from its module when it is first asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value

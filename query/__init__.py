"""The query stage: ask a recording questions (``api``) and show the answers (``render``).

The names below load on first use: importing one module of the package (the
command line imports only what its command needs) does not import them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scope.query.api import Recording
    from scope.query.calls import CallFilter
    from scope.query.results import (
        CallList,
        CallNode,
        CallRow,
        CallTree,
        FunctionStats,
        RunSummary,
    )

#: each name this package exports, and the module it comes from
_HOMES = {
    "Recording": "scope.query.api",
    "CallFilter": "scope.query.calls",
    "CallList": "scope.query.results",
    "CallNode": "scope.query.results",
    "CallRow": "scope.query.results",
    "CallTree": "scope.query.results",
    "FunctionStats": "scope.query.results",
    "RunSummary": "scope.query.results",
}

__all__ = [
    "CallFilter",
    "CallList",
    "CallNode",
    "CallRow",
    "CallTree",
    "FunctionStats",
    "Recording",
    "RunSummary",
]


def __getattr__(name: str) -> object:
    """Load an exported name from its module when it is first asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value

"""The query stage: ask a recording questions (``api``) and show the answers (``render``)."""

from scope.query.api import Recording
from scope.query.calls import CallFilter
from scope.query.results import CallList, CallNode, CallRow, CallTree, FunctionStats, RunSummary

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

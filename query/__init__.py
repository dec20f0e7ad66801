"""The query stage: ask a recording questions (``api``) and show the answers (``render``)."""

from scope.query.api import CallNode, CallTree, FunctionStats, Recording, RunSummary

__all__ = ["CallNode", "CallTree", "FunctionStats", "Recording", "RunSummary"]

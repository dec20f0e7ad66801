"""Exceptions and the way each went through the program (``scope exceptions``)."""

from __future__ import annotations

from dataclasses import dataclass

from scope.query.results.calls import CallNode


@dataclass(frozen=True)
class ExceptionPath:
    """One exception: what it was and the way it went through the program."""

    #: its type's name and its summary (type and message at args level)
    type: str | None
    summary: str | None
    #: the innermost recorded call it left (the call it was raised in, as far as recorded)
    raised_in: CallNode
    #: every recorded call it left, innermost first (``raised_in`` is the first)
    left: list[CallNode]
    #: the recorded call that caught it: the one it did not leave (None: none did)
    caught_in: CallNode | None
    #: whether it ended the program (it left every recorded call and nothing caught it)
    uncaught: bool
    #: the program's exit status, when this is the SystemExit that ended it
    exit_status: int | None = None


@dataclass(frozen=True)
class ExceptionKind:
    """Exceptions alike: the same type and message shape (numbers and addresses aside),
    raised in the same function and caught in the same one."""

    #: how many there were
    count: int
    #: the message with its numbers as N and addresses as 0x…
    shape: str
    #: the newest of them
    example: ExceptionPath

"""scope's errors: one hierarchy, each class with a short code.

The CLI prints ``scope: error: <message>`` and exits 1 for any ``ScopeError``;
nothing here is ever raised into a recorded program.  This module imports
nothing of scope's, so every stage can raise these.
"""

from __future__ import annotations


class ScopeError(Exception):
    """Base of every error scope reports to its user."""

    code = "scope"


class ConfigError(ScopeError):
    """A configuration key or value is invalid (the message names the key)."""

    code = "config"


class ProgramError(ScopeError):
    """The program to record cannot be found or started."""

    code = "program"


class ProgramCannotStart(ProgramError):
    """Python itself would refuse to start the program: its message and exit status.

    The message is the whole line Python prints, so that ``scope run`` fails
    the way ``python`` does (``can't open file …``, exit status 2).
    """

    code = "cannot-start"

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class CapabilityMissing(ScopeError):
    """This interpreter lacks something scope follows the program through.

    Never raised to the user: the recording goes on without it and keeps the
    message among the run's problems.
    """

    code = "capability"


class RecordingError(ScopeError):
    """A recording file cannot be created, opened, read or written."""

    code = "recording"


class NotARecording(RecordingError):
    """A file exists but is not a scope recording (or is of an unknown version)."""

    code = "not-a-recording"


class RecordingInUse(RecordingError):
    """Another process writes the recording: DuckDB lets nobody else open it meanwhile."""

    code = "in-use"


class QueryError(ScopeError):
    """A question about a recording cannot be answered (unknown run or call, ...)."""

    code = "query"


class ExportError(ScopeError):
    """An export cannot be written as asked: where it goes, or what it keeps."""

    code = "export"

"""Log records, kept as events of the call that logged them (``log_level``).

A handler on the root logger keeps a ``log`` event for each record at or above
the level.  It is the one visible change (``logging.root.handlers`` lists it),
which is why it is off unless asked for; and this module is imported only then.
"""

from __future__ import annotations

import logging

from scope.capture.threads import EventSink

from scope import native


class LogWatch(logging.Handler):
    """A root-logger handler that keeps records at or above a level as events."""

    def __init__(self, on_event: EventSink, level: str) -> None:
        super().__init__(logging.getLevelName(level))
        self.on_event = on_event

    def install(self) -> None:
        """Add the handler to the root logger."""
        logging.getLogger().addHandler(self)

    def uninstall(self) -> None:
        """Take the handler off the root logger."""
        logging.getLogger().removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record as a ``log`` event of the call that logged it."""
        try:
            detail = f"{record.levelname} {record.name}: {record.getMessage()}"
        except Exception:  # a bad format: the program's own handlers say so
            return
        self.on_event("log", detail, native.current_call())

"""Warnings and log records, kept as events of the call that produced them.

Warnings: every warning Python shows goes through ``warnings._showwarnmsg``
(whether the program keeps the default ``showwarning`` or replaced it), which
scope wraps while recording to keep a ``warning`` event, against the innermost
recorded call (the one that warned), before showing it as before.  A warning
turned into an error is an exception, recorded as such; one caught by
``catch_warnings(record=True)`` is the program's to keep, not shown and not
kept here.

Log records (optional, off by default: ``log_level``): a handler on the root
logger keeps a ``log`` event for each record at or above the level.  It is the
one visible change (``logging.root.handlers`` lists it), which is why it is off
unless asked for.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from scope.capture.threads import EventSink

from scope import native
from scope.errors import CapabilityMissing
from scope.patching import Patch


class WarningWatch:
    """Wraps ``warnings._showwarnmsg`` while recording."""

    def __init__(self, on_event: EventSink) -> None:
        self.on_event = on_event
        self._patch = Patch(warnings, "_showwarnmsg", self.show)

    def install(self) -> None:
        """Keep an event for every warning shown from now on."""
        try:
            self._patch.install()
        except CapabilityMissing as exc:
            raise CapabilityMissing(f"{exc}: warnings are not kept as events") from None

    def uninstall(self) -> None:
        """Put ``warnings`` back, unless the program replaced the function since."""
        self._patch.uninstall()

    def show(self, message: Any) -> None:
        """Keep the event, then show the warning as Python would have."""
        try:
            category = getattr(message.category, "__name__", "Warning")
            detail = f"{category}: {message.message} ({message.filename}:{message.lineno})"
            self.on_event("warning", detail, native.current_call())
        except Exception:  # the warning is shown whatever happened here
            pass
        self._patch.original(message)


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

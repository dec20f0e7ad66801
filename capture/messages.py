"""Warnings and log records, kept as events of the call that produced them.

Warnings: every warning Python shows goes through ``warnings._showwarnmsg``
(whether the program keeps the default ``showwarning`` or replaced it), which
scope wraps while recording to keep a ``warning`` event, against the innermost
recorded call (the one that warned), before showing it as before.  A warning
turned into an error is an exception, recorded as such; one caught by
``catch_warnings(record=True)`` is the program's to keep, not shown and not
kept here.

Log records (optional, off by default: ``log_level``) are kept by
``scope.capture.log_watch``, which alone imports ``logging``: a program that
does not use it must not find it imported (its fork hooks would change what a
signal arriving during ``os.fork`` does).
"""

from __future__ import annotations

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

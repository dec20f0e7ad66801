"""The capture levels, weakest first: what ``--level`` and the ``level`` setting accept.

A module of its own so that the configuration and the command line can check a
level without importing the instrumentation (``scope.instrument.plan``), which
a query never needs.
"""

from __future__ import annotations

LEVELS = ("off", "calls", "args", "full")

"""scope records what a Python program did and lets you ask about it afterwards.

Run a program under it with ``python -m scope run app.py``; query the recording
with ``scope calls``, ``scope tree`` and friends.  From inside a program,
``scope.install()``/``scope.uninstall()`` or ``with scope.recording():`` do the
same (see ``scope.embedded``).  See README.md.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the recorder's modules load only when it is used
    from scope.session import Recorder, RecorderReport

__version__ = "0.1.0"


def install(**settings: Any) -> Recorder:
    """Start recording this process (see ``scope.embedded.install``)."""
    from scope import embedded

    return embedded.install(**settings)


def uninstall() -> RecorderReport | None:
    """Stop the recording ``install`` started and store it (see ``scope.embedded``)."""
    from scope import embedded

    return embedded.uninstall()


def recording(**settings: Any) -> AbstractContextManager[Recorder]:
    """``with scope.recording(): ...`` records the block (see ``scope.embedded``)."""
    from scope import embedded

    return embedded.recording(**settings)

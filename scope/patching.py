"""Standing in for an attribute of the standard library while recording, then putting it back.

scope follows a program through a few functions of the standard library
(``runpy._get_code_from_file``, ``warnings._showwarnmsg``,
``threading._start_new_thread``).  ``Patch`` replaces one of them and, when
recording ends, restores the original, unless the program has replaced the
attribute meanwhile: then the program's choice stays.
"""

from __future__ import annotations

from typing import Any

from scope.errors import CapabilityMissing


class Patch:
    """``owner.name`` replaced by ``replacement`` between ``install`` and ``uninstall``."""

    def __init__(self, owner: Any, name: str, replacement: Any) -> None:
        self.owner = owner
        self.name = name
        self.replacement = replacement
        #: what was there before ``install`` (None until then)
        self.original: Any = None

    def install(self) -> None:
        """Put the replacement in place, remembering the original.

        Raises ``CapabilityMissing`` if there is no such attribute in this interpreter.
        """
        if not hasattr(self.owner, self.name):
            owner = getattr(self.owner, "__name__", repr(self.owner))
            raise CapabilityMissing(f"this Python has no {owner}.{self.name}")
        self.original = getattr(self.owner, self.name)
        setattr(self.owner, self.name, self.replacement)

    def uninstall(self) -> None:
        """Put the original back, unless something else replaced the replacement since."""
        # == rather than is: a bound method is a new object at each attribute access
        if self.original is not None and getattr(self.owner, self.name) == self.replacement:
            setattr(self.owner, self.name, self.original)

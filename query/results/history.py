"""Writes to objects' attributes (``scope history``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AttributeWrite:
    """One recorded ``self.attribute = value``: the call that made it and what was written."""

    call: int
    thread: int
    #: when the writing call began
    start_ns: int
    module: str
    qualname: str
    #: ``id()`` and type name of the object written to (the call's ``self``), where recorded
    object_id: int | None
    object_type: str | None
    attribute: str
    #: the written value's type name and summary
    type: str | None
    value: str | None

"""Query results as JSON carries them, between the recording service and a query.

The service answers a query (``scope.query.remote``) with its rows as JSON lines
on its socket; a value JSON has no type for travels as ``{"$": kind, "v": text}``.
Kept apart from ``scope.live``, which recorded programs import: they never
answer a query, so they never pay for ``datetime``, ``decimal`` and ``uuid``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

#: the code of a service's answer that declines a query for its many rows (the
#: query then reads the file itself)
TOO_MANY_ROWS = "too-many-rows"

#: how a value that JSON has no type for travels: {"$": kind, "v": text}
_TAGGED: dict[str, Any] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(microseconds=int(v)),
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
    "bytes": bytes.fromhex,
}


def encode_value(value: object) -> object:
    """A query result's value as JSON carries it (``decode_value`` undoes it)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    if isinstance(value, dict):
        return {"$": "dict", "v": [[encode_value(k), encode_value(v)] for k, v in value.items()]}
    if isinstance(value, dt.datetime):
        return {"$": "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$": "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$": "time", "v": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$": "timedelta", "v": str(value // dt.timedelta(microseconds=1))}
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return {"$": type(value).__name__.lower(), "v": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$": "bytes", "v": bytes(value).hex()}
    return str(value)


def decode_value(value: object) -> object:
    """The value ``encode_value`` encoded."""
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if isinstance(value, dict):
        kind, text = value.get("$"), value.get("v")
        if kind == "dict" and isinstance(text, list):
            return {decode_value(k): decode_value(v) for k, v in text}
        parse = _TAGGED.get(str(kind))
        return parse(text) if parse is not None else text
    return value

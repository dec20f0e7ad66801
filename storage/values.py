"""Turn drained value records and their arena bytes into rows of the ``value`` table.

The native side summarises a value into a tag, a 64-bit payload and a few
bytes (see ``summarize`` in ``native/scope_python.c``): ints and floats by
value, strings and bytes truncated, containers by type and length (and their
first items at ``full`` level), other objects by type name and ``id()``.  This
module renders each summary as a short, Python-looking text (``'abc'``,
``list[3]``, ``<Foo at 0x7f…>``) and keeps the structured parts (type, length,
object id) in columns of their own for queries.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scope.native.batch import function_ids
from scope.storage.text import storable

from scope import native

TAG_NAMES = {
    native.lib.SCOPE_TAG_NONE: "none",
    native.lib.SCOPE_TAG_BOOL: "bool",
    native.lib.SCOPE_TAG_INT: "int",
    native.lib.SCOPE_TAG_BIGINT: "bigint",
    native.lib.SCOPE_TAG_FLOAT: "float",
    native.lib.SCOPE_TAG_STR: "str",
    native.lib.SCOPE_TAG_BYTES: "bytes",
    native.lib.SCOPE_TAG_CONTAINER: "container",
    native.lib.SCOPE_TAG_OBJECT: "object",
    native.lib.SCOPE_TAG_REDACTED: "redacted",
    native.lib.SCOPE_TAG_LOST: "lost",
    native.lib.SCOPE_TAG_CLASS: "class",
    native.lib.SCOPE_TAG_EXCEPTION: "exception",
    native.lib.SCOPE_TAG_REPR: "repr",
    native.lib.SCOPE_TAG_EXCEPTION_TYPE: "exception type",
}
ROLE_NAMES = {
    native.lib.SCOPE_ROLE_ARG: "argument",
    native.lib.SCOPE_ROLE_RETURN: "return",
    native.lib.SCOPE_ROLE_RAISE: "raise",
    native.lib.SCOPE_ROLE_ATTR: "attribute",
}
_FIXED_TYPES = {"none": "NoneType", "bool": "bool", "int": "int", "bigint": "int"}
_FIXED_TYPES.update({"float": "float", "str": "str", "bytes": "bytes", "class": "type"})
_ITEM_HEADER = struct.Struct("<BqH")


@dataclass(frozen=True)
class Summary:
    """One value as stored: its rendering and structured parts."""

    kind: str
    type: str | None
    text: str
    length: int | None
    object_id: int | None


def _float(payload: int) -> float:
    return float(np.array([payload], dtype=np.int64).view(np.float64)[0])


def _decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _items(raw: bytes) -> list[Summary]:
    items = []
    at = 0
    while at + _ITEM_HEADER.size <= len(raw):
        tag, payload, size = _ITEM_HEADER.unpack_from(raw, at)
        at += _ITEM_HEADER.size
        items.append(summarize(tag, payload, raw[at : at + size]))
        at += size
    return items


def _container(type_name: str, length: int, items: list[Summary] | None) -> str:
    if items is None:
        return f"{type_name}[{length}]"
    more = ", …" if len(items) < length * (2 if type_name == "dict" else 1) else ""
    if type_name == "dict":
        pairs = [f"{k.text}: {v.text}" for k, v in zip(items[::2], items[1::2], strict=False)]
        return "{" + ", ".join(pairs) + more + "}"
    texts = [i.text for i in items]
    if type_name == "tuple":
        return "(" + ", ".join(texts) + ("," if length == 1 else "") + more + ")"
    if type_name == "list":
        return "[" + ", ".join(texts) + more + "]"
    return f"{type_name}({{" + ", ".join(texts) + more + "})"


def summarize(tag: int, payload: int, raw: bytes) -> Summary:
    """Render one summary (tag, payload, arena bytes) as stored in the ``value`` table."""
    kind = TAG_NAMES.get(tag, "unknown")
    type_name: str | None = _FIXED_TYPES.get(kind)
    length: int | None = None
    object_id: int | None = None
    head, separator, rest = raw.partition(b"\0")
    if kind == "none":
        text = "None"
    elif kind == "bool":
        text = "True" if payload else "False"
    elif kind == "int":
        text = str(payload)
    elif kind == "bigint":
        text = f"<{'-' if payload < 0 else ''}int of {abs(payload)} bits>"
    elif kind == "float":
        text = repr(_float(payload))
    elif kind == "str":
        length = payload
        stored = _decode_text(raw)
        text = repr(stored) + ("…" if len(stored) < payload else "")
    elif kind == "bytes":
        length = payload
        text = repr(raw) + ("…" if len(raw) < payload else "")
    elif kind == "container":
        type_name, length = _decode_text(head), payload
        text = _container(type_name, payload, _items(rest) if separator else None)
    elif kind == "class":
        text = f"<class {_decode_text(raw)!r}>"
    elif kind == "exception type":
        type_name, object_id = _decode_text(raw), payload
        text = type_name
    elif kind in ("object", "exception", "repr"):
        type_name, object_id = _decode_text(head), payload
        if kind == "exception":
            text = f"{type_name}({_decode_text(rest)!r})" if separator else f"{type_name}()"
        elif kind == "repr":
            text = _decode_text(rest)
        else:
            text = f"<{type_name} at {payload & 0xFFFFFFFFFFFFFFFF:#x}>"
    elif kind == "redacted":
        text = "<redacted>"
    else:
        text = "<lost>"
    return Summary(kind, type_name, text, length, object_id)


#: (function id, role, index) -> the parameter or attribute name, if known
NameLookup = Callable[[int, str, int], str | None]


def _lookup(table: Mapping[int, str | None], codes: np.ndarray) -> np.ndarray:
    """Map small integer codes to strings (None where unknown), vectorised."""
    size = max([*table, int(codes.max(initial=0))]) + 1
    mapping = np.full(size, None, dtype=object)
    for code, text in table.items():
        mapping[code] = text
    mapped: np.ndarray = mapping[codes]
    return mapped


def _names(values: np.ndarray, roles: np.ndarray, name_of: NameLookup) -> np.ndarray:
    """Each value's parameter or attribute name, looked up once per distinct key."""
    functions, function_index = np.unique(function_ids(values), return_inverse=True)
    # One int64 per (function, role, index): sorting it is far faster than a record sort.
    keys = (
        (function_index.reshape(-1).astype(np.int64) << 24)
        | (roles.astype(np.int64) << 16)
        | values["index"].astype(np.int64)
    )
    distinct, where = np.unique(keys, return_inverse=True)
    found = np.array(
        [
            name_of(
                int(functions[key >> 24]),
                ROLE_NAMES.get((key >> 16) & 0xFF, "unknown"),
                key & 0xFFFF,
            )
            for key in distinct.tolist()
        ]
        + [None],
        dtype=object,
    )[:-1]
    named: np.ndarray = found[where.reshape(-1)]
    return named


#: tags rendered without arena bytes, in bulk
_BULK_TAGS = {native.lib.SCOPE_TAG_INT, native.lib.SCOPE_TAG_FLOAT, native.lib.SCOPE_TAG_NONE}
_BULK_TAGS |= {native.lib.SCOPE_TAG_BOOL, native.lib.SCOPE_TAG_REDACTED, native.lib.SCOPE_TAG_LOST}


def value_columns(
    values: np.ndarray, arena: np.ndarray, name_of: NameLookup
) -> Mapping[str, np.ndarray]:
    """Columns for the ``value`` table from drained value records (``VALUE_DTYPE``).

    The common summaries (ints, floats, None, bools, redacted and lost values)
    are rendered in bulk with numpy; the rest, which need their arena bytes,
    one by one.
    """
    n = len(values)
    tags = values["tag"]
    payload = values["payload"]
    text = np.full(n, None, dtype=object)
    length = np.full(n, None, dtype=object)
    object_id = np.full(n, None, dtype=object)
    kind = _lookup(TAG_NAMES, tags)
    types = _lookup({t: _FIXED_TYPES.get(k) for t, k in TAG_NAMES.items()}, tags)
    is_int = tags == native.lib.SCOPE_TAG_INT
    text[is_int] = payload[is_int].astype(str).astype(object)
    is_float = tags == native.lib.SCOPE_TAG_FLOAT
    if is_float.any():
        text[is_float] = [repr(f) for f in payload[is_float].view(np.float64).tolist()]
    is_bool = tags == native.lib.SCOPE_TAG_BOOL
    text[is_bool] = np.where(payload[is_bool] != 0, "True", "False").astype(object)
    text[tags == native.lib.SCOPE_TAG_NONE] = "None"
    text[tags == native.lib.SCOPE_TAG_REDACTED] = "<redacted>"
    text[tags == native.lib.SCOPE_TAG_LOST] = "<lost>"
    rest = np.flatnonzero(~np.isin(tags, list(_BULK_TAGS)))
    if len(rest):
        buffer = arena.tobytes()
        positions = values["arena_pos"][rest].tolist()
        sizes = values["arena_len"][rest].tolist()
        for i, tag, value, pos, size in zip(
            rest.tolist(),
            tags[rest].tolist(),
            payload[rest].tolist(),
            positions,
            sizes,
            strict=True,
        ):
            summary = summarize(tag, value, buffer[pos : pos + size])
            text[i], types[i] = storable(summary.text), summary.type
            length[i], object_id[i] = summary.length, summary.object_id
    return {
        "call": values["call_id"].view(np.int64),
        "function": function_ids(values),
        "role": _lookup(ROLE_NAMES, values["role"]),
        "position": values["index"].astype(np.int32),
        "name": _names(values, values["role"], name_of),
        "kind": kind,
        "type": types,
        "value": text,
        "length": length,
        "object_id": object_id,
        "raised_in": values["raised_in"].view(np.int64),
    }

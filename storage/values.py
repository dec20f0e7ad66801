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


def value_columns(
    values: np.ndarray, arena: np.ndarray, name_of: NameLookup
) -> Mapping[str, np.ndarray]:
    """Columns for the ``value`` table from drained value records (``VALUE_DTYPE``)."""
    n = len(values)
    rows = {
        "call": values["call_id"].view(np.int64),
        "function": values["func_id"].view(np.int64),
        "role": np.empty(n, dtype=object),
        "position": values["index"].astype(np.int32),
        "name": np.empty(n, dtype=object),
        "kind": np.empty(n, dtype=object),
        "type": np.empty(n, dtype=object),
        "value": np.empty(n, dtype=object),
        "length": np.empty(n, dtype=object),
        "object_id": np.empty(n, dtype=object),
    }
    buffer = arena.tobytes() if len(arena) else b""
    names: dict[tuple[int, int, int], str | None] = {}
    for i, (func, role, index, tag, payload, pos, size) in enumerate(
        zip(
            values["func_id"].tolist(),
            values["role"].tolist(),
            values["index"].tolist(),
            values["tag"].tolist(),
            values["payload"].tolist(),
            values["arena_pos"].tolist(),
            values["arena_len"].tolist(),
            strict=True,
        )
    ):
        role_name = ROLE_NAMES.get(role, "unknown")
        key = (func, role, index)
        if key not in names:
            names[key] = name_of(func, role_name, index)
        s = summarize(tag, payload, buffer[pos : pos + size])
        rows["role"][i] = role_name
        rows["name"][i] = names[key]
        rows["kind"][i] = s.kind
        rows["type"][i] = s.type
        rows["value"][i] = s.text
        rows["length"][i] = s.length
        rows["object_id"][i] = s.object_id
    return rows

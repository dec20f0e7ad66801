"""Strings DuckDB can store, made from any Python string without losing what it says
(but its secrets: ``scope.redaction``).

Python keeps bytes that are not UTF-8 (in ``sys.argv``, paths, the cwd, file
names, environment values) as lone surrogates (``surrogateescape``: byte 0xff
is ``'\\udcff'``), and user code can make lone surrogates of its own.  DuckDB
stores UTF-8 only and refuses such a string, which would lose the whole
statement: a run whose program was given ``$'\\xff'``.  Each lone surrogate is
stored as its escape instead: ``\\xff`` for an escaped byte, ``\\ud800`` for any
other, as Python's ``backslashreplace`` writes them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from scope.redaction import scrub

if TYPE_CHECKING:
    import duckdb

_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte surrogateescape kept
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def storable(value: Any) -> Any:
    """``value`` with every string in it storable (see the module's doc), and
    scrubbed of what looks like a secret (``scope.redaction.scrub``); lists,
    tuples and dicts are walked, anything else is returned as it is."""
    if isinstance(value, str):
        if not value.isascii():
            value = _SURROGATE.sub(_escape, value)
        return scrub(value)
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, tuple):
        return tuple(storable(item) for item in value)
    if isinstance(value, dict):
        return {key: storable(item) for key, item in value.items()}
    return value


class TextSafeConnection:
    """A DuckDB connection whose statements' parameters are made ``storable`` first:
    every row scope writes goes through one, so no string can fail a statement,
    and none stores a secret."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def execute(
        self, query: str, parameters: Sequence[Any] | dict[str, Any] | None = None
    ) -> duckdb.DuckDBPyConnection:
        """Run ``query`` (DuckDB's ``execute``) with storable parameters."""
        if parameters is None:
            return self._con.execute(query)
        return self._con.execute(query, storable(parameters))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def text_safe(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """``con``, writing only storable strings (it has every method DuckDB's has)."""
    return cast("duckdb.DuckDBPyConnection", TextSafeConnection(con))

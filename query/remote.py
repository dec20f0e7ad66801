"""Queries about a recording that is being written, answered by its recording service.

DuckDB lets no other process open a file while one writes it.  While a
recording service writes the recording (``scope.storage.service``), a query
command sends its SQL to the service over the live folder's socket instead, and
the service runs it in a transaction that it rolls back: the answer includes
every call stored so far, and nothing the query does is kept.
``ServiceConnection`` has the part of DuckDB's connection the query layer uses
(``execute`` and its result's ``fetchall``, ``fetchone``, ``fetchmany`` and
``description``).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from scope.native import live
from scope.storage.answers import decode_value, encode_value

from scope.errors import QueryError


class RemoteError(QueryError):
    """The service could not run a query (its message says why)."""


class ServiceResult:
    """Rows the service answered for one statement."""

    def __init__(self, columns: Sequence[str], rows: list[tuple[object, ...]]) -> None:
        self.description = [(name, None, None, None, None, None, None) for name in columns]
        self._rows = rows
        self._next = 0

    def fetchall(self) -> list[tuple[object, ...]]:
        """Every row not fetched yet."""
        rows, self._next = self._rows[self._next :], len(self._rows)
        return rows

    def fetchone(self) -> tuple[object, ...] | None:
        """The next row, or None after the last."""
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchmany(self, size: int = 1) -> list[tuple[object, ...]]:
        """The next ``size`` rows (fewer at the end)."""
        rows = self._rows[self._next : self._next + size]
        self._next += len(rows)
        return rows


class ServiceConnection:
    """Runs SQL in the recording service of ``db`` (see the module's doc)."""

    def __init__(self, db: str) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with live.socket_address(live.service_socket(db)) as address:
                self.socket.connect(address)
        except OSError:
            self.socket.close()
            raise
        self._stream = self.socket.makefile("rb")

    def execute(
        self, sql: str, params: Sequence[object] | dict[str, object] | None = None
    ) -> ServiceResult:
        """Run one statement; its rows."""
        request = {"op": "sql", "sql": sql, "params": encode_value(params or [])}
        try:
            live.send(self.socket, request)
            answer = live.receive(self._stream)
        except OSError as exc:
            raise RemoteError(f"the recording service did not answer: {exc}") from None
        if answer is None:
            raise RemoteError("the recording service closed the connection")
        if not answer.get("ok"):
            raise RemoteError(str(answer.get("error") or "the query failed"))
        columns = [str(c) for c in answer.get("columns") or ()]  # type: ignore[attr-defined]
        rows = [tuple(decode_value(v) for v in row) for row in answer.get("rows") or ()]  # type: ignore[attr-defined]
        return ServiceResult(columns, rows)

    def close(self) -> None:
        """Hang up."""
        self._stream.close()
        self.socket.close()

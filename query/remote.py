"""Queries about a recording, answered by its recording service while one runs.

DuckDB lets no other process open a file while one writes it.  While a
recording service writes the recording (``scope.storage.service``), a query
command sends its SQL to the service over the live folder's socket instead, and
the service runs it in a transaction that it rolls back: the answer includes
every call stored so far, and nothing the query does is kept.  A service that
lingers after its runs answers too, from the file attached read-only for the
statement: it has DuckDB loaded, which costs a query's own process more than a
short query takes.  It declines answers of many rows, and the connection then
opens the file itself.
``ServiceConnection`` has the part of DuckDB's connection the query layer uses
(``execute`` and its result's ``fetchall``, ``fetchone``, ``fetchmany`` and
``description``).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from scope.storage.answers import TOO_MANY_ROWS, decode_value, encode_value

from scope import live
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
    """Runs SQL in the recording service of ``db`` (see the module's doc).

    A service that stores no run declines to send many rows; from then on this
    connection reads the file itself (``direct``), opened read-only.
    """

    def __init__(self, db: str) -> None:
        self.db = db
        #: the file, opened read-only, once the service declined a query
        self.direct: Any = None
        self._result: ServiceResult | None = None
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with live.socket_address(live.service_socket(db)) as address:
                self.socket.connect(address)
        except OSError:
            self.socket.close()
            raise
        self._stream = self.socket.makefile("rb")

    def execute(self, sql: str, params: Sequence[object] | dict[str, object] | None = None) -> Any:
        """Run one statement; its result (rows to fetch)."""
        if self.direct is not None:
            return self.direct.execute(sql, params or [])
        request = {"op": "sql", "sql": sql, "params": encode_value(params or [])}
        try:
            live.send(self.socket, request)
            answer = live.receive(self._stream)
        except OSError as exc:
            raise RemoteError(f"the recording service did not answer: {exc}") from None
        if answer is None:
            raise RemoteError("the recording service closed the connection")
        if answer.get("code") == TOO_MANY_ROWS:
            from scope.storage.database import open_for_reading

            self.direct = open_for_reading(self.db)
            return self.direct.execute(sql, params or [])
        if not answer.get("ok"):
            raise RemoteError(str(answer.get("error") or "the query failed"))
        columns = [str(c) for c in answer.get("columns") or ()]  # type: ignore[attr-defined]
        rows = [tuple(decode_value(v) for v in row) for row in answer.get("rows") or ()]  # type: ignore[attr-defined]
        self._result = ServiceResult(columns, rows)
        return self._result

    def fetchall(self) -> list[tuple[object, ...]]:
        """The last statement's rows not fetched yet (as DuckDB's connection has it)."""
        return self._last().fetchall()  # type: ignore[no-any-return]

    def fetchone(self) -> tuple[object, ...] | None:
        """The last statement's next row."""
        return self._last().fetchone()  # type: ignore[no-any-return]

    def fetchmany(self, size: int = 1) -> list[tuple[object, ...]]:
        """The last statement's next ``size`` rows."""
        return self._last().fetchmany(size)  # type: ignore[no-any-return]

    @property
    def description(self) -> Any:
        """The last statement's columns."""
        return self._last().description

    def _last(self) -> Any:
        if self.direct is not None:
            return self.direct
        if self._result is None:
            raise RemoteError("no statement has been run")
        return self._result

    def cursor(self) -> Any:
        """Another connection to the same recording (for a result read alongside)."""
        if self.direct is not None:
            return self.direct.cursor()
        return ServiceConnection(self.db)

    def close(self) -> None:
        """Hang up (and close the file, if it was opened)."""
        self._stream.close()
        self.socket.close()
        if self.direct is not None:
            self.direct.close()

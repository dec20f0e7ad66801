"""Opening a recording ahead: on a thread, while a query command is still loading.

A query command such as ``scope top`` spends its first tens of milliseconds
importing click and its own modules, then waits about 30 ms for DuckDB to open
the file.  DuckDB lets other threads run while it opens one, so the launcher
starts that opening on a thread first (``start``), and ``open_for_reading``
takes the connection (``take``) when it is to the file it was about to open.

A connection opened ahead is only ever a plain read-only one, as
``open_for_reading`` would have made: that function still checks it and
confines it.  One that is not taken is closed (``discard``): before the command
asks a recording service anything (a service that is starting opens the file
before it answers its first question), and at exit in any case (the command
failed).  While it is open, no program can write the recording.  Anything
that goes wrong here is left for the command's own opening to meet and report.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb


class _Opening:
    """One file being opened on a thread, and what came of it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.con: duckdb.DuckDBPyConnection | None = None
        self.thread = threading.Thread(target=self._open, name="scope-open-ahead")

    def _open(self) -> None:
        # The engine's module imports nothing of scope's: this thread can hold its
        # import lock while the main thread imports the rest without a cycle.
        from scope.storage.engine import NO_EXTENSIONS, duckdb

        try:
            self.con = duckdb.connect(self.path, read_only=True, config=dict(NO_EXTENSIONS))
        except Exception:  # the command's own opening meets it and says why
            self.con = None

    def result(self) -> duckdb.DuckDBPyConnection | None:
        self.thread.join()
        con, self.con = self.con, None
        return con


_opening: _Opening | None = None
_lock = threading.Lock()


def start(path: str) -> None:
    """Begin opening the recording at ``path`` (absolute) read-only on a thread.

    Nothing is opened unless ``path`` is a regular file (a fifo could block the
    opening), its name is UTF-8 (DuckDB takes no other), and no recording service
    is answering for it (the query goes there)."""
    global _opening
    from scope import live

    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return
    if not os.path.isfile(path) or os.path.exists(live.service_socket(path)):
        return
    with _lock:
        if _opening is not None:
            return
        _opening = _Opening(path)
        _opening.thread.start()
        atexit.unregister(discard)  # once, however many are started
        atexit.register(discard)


def pending() -> str | None:
    """The file being opened ahead (or opened and not yet taken), if any."""
    with _lock:
        return None if _opening is None else _opening.path


def take(path: str) -> duckdb.DuckDBPyConnection | None:
    """The connection opened ahead, once it is open, if it is to ``path``; else None
    (and one opened ahead to another file is closed)."""
    global _opening
    with _lock:
        opening, _opening = _opening, None
    if opening is None:
        return None
    con = opening.result()
    if con is not None and opening.path != path:
        con.close()
        return None
    return con


def discard() -> None:
    """Close a connection opened ahead that no one took."""
    global _opening
    with _lock:
        opening, _opening = _opening, None
    if opening is not None:
        con = opening.result()
        if con is not None:
            con.close()

"""Create, open and validate recording files.

A recording is a DuckDB file.  ``open_for_writing`` creates it (and its folder)
on first use and checks the schema version of an existing one;
``open_for_reading`` opens read-only and refuses anything that is not a scope
recording.  Every failure becomes a ``RecordingError`` whose message names the
file, never a DuckDB traceback.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Callable, Mapping, Sequence

from scope.storage.engine import NO_EXTENSIONS, duckdb
from scope.storage.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    TABLES,
    create_statements,
    readable,
)
from scope.storage.text import storable, text_safe

from scope import live
from scope.errors import NotARecording, QueryError, RecordingError, RecordingInUse


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text


#: a recording's writer runs DuckDB on its own thread only.  DuckDB's workers
#: take the GIL to scan the object (str) columns of value rows, and a worker
#: without a Python thread state of its own makes one, which crashes CPython
#: 3.11 while the program traces its allocations (tracemalloc's traceback_new);
#: a recorded program must not find Python thread states it never made, nor OS
#: threads (CPython 3.12+ warns at every fork of a multi-threaded process).
#: DuckDB starts its worker and asynchronous I/O threads when the database
#: opens, so both counts are set there.
#:
#: DuckDB checkpoints (compresses what was appended into the file) whenever its
#: write-ahead log passes a threshold, and each checkpoint rewrites the row groups
#: the one before left half full.  At DuckDB's default of 16 MB, storing raytrace's
#: 1M calls took the recording service 0.61-0.63 s of inserting and checkpointing;
#: at 64 MB, 0.48-0.51 s (``benchmarks/workloads.py``), for at most 64 MB more of
#: the writer's memory.
#:
#: A new recording is made of 64 kB blocks, not DuckDB's default 256 kB: every
#: table, column and index takes at least a block of its own, so a recording of a
#: few hundred calls took 4.5 MB, nearly all of it empty.  With 64 kB blocks it
#: takes 1.1 MB, and a 147k-call run 2.5 MB instead of 5.3 MB.  The block size is
#: a property of the file (DuckDB reads it from the header), so a recording made
#: with other blocks opens, attaches and combines as before.
WRITER_THREADS = 1
#: bytes per block of a recording scope creates (DuckDB's ``default_block_size``)
BLOCK_SIZE = 64 * 1024
#: how scope opens a recording to write it (loading no extension: NO_EXTENSIONS)
WRITER_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    **NO_EXTENSIONS,
    "threads": WRITER_THREADS,
    "async_threads": 0,
    "checkpoint_threshold": "64MB",
    "default_block_size": BLOCK_SIZE,
}


def confine(
    con: duckdb.DuckDBPyConnection,
    paths: Sequence[str] = (),
    folders: Sequence[str] = (),
    lock: bool = True,
) -> None:
    """Let the DuckDB of ``con`` open no file but ``paths`` and what is under
    ``folders``, for good: ``COPY ... TO``, ``ATTACH``, ``read_text``, ``glob`` and
    ``EXPORT DATABASE`` fail on anything else.  With ``lock``, no setting can be
    changed after (DuckDB's ``lock_configuration``), so a query cannot undo it.

    The recording ``con`` has open stays readable: DuckDB checks paths as it
    opens files, and it has opened it.
    """
    if paths:
        con.execute("SET allowed_paths = ?", [list(paths)])
    if folders:
        con.execute("SET allowed_directories = ?", [[os.path.join(f, "") for f in folders]])
    con.execute("SET enable_external_access = false")
    if lock:
        con.execute("SET lock_configuration = true")


def sql_string(text: str) -> str:
    """``text`` as an SQL string literal (for statements that take no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def recording_files(path: str) -> tuple[list[str], list[str]]:
    """The files and folders DuckDB uses for the recording at ``path``: the file,
    its write-ahead log and the log's checkpoint copy; its spill folder.  For a
    recording reached through a link, the same beside its target as well: DuckDB
    puts the log there."""
    names = [path, os.path.realpath(path)] if os.path.islink(path) else [path]
    files = [f"{name}{suffix}" for name in names for suffix in ("", ".wal", ".wal.checkpoint")]
    return files, [f"{path}.tmp"]


def duckdb_path(path: str) -> str:
    """``path`` as DuckDB can take it.  DuckDB takes file names as UTF-8, and Python
    holds a folder's name that is not UTF-8 with surrogates: such a path is given
    relative to the cwd (a recording service works in its recording's folder).
    Raises ``RecordingError`` when neither is UTF-8."""
    for candidate in (path, os.path.relpath(path)):
        try:
            candidate.encode("utf-8")
        except UnicodeEncodeError:
            continue
        return candidate
    raise RecordingError(
        f"cannot open recording {storable(path)}: DuckDB takes only UTF-8 file names "
        "(name another with --db)"
    )


def _open(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    if read_only:
        from scope.storage import ahead

        opened = ahead.take(path)  # opened as below, while the command loaded
        if opened is not None:
            return opened
        return duckdb.connect(duckdb_path(path), read_only=True, config=dict(NO_EXTENSIONS))
    path = duckdb_path(path)
    try:
        return duckdb.connect(path, config=dict(WRITER_CONFIG))
    except duckdb.InvalidInputException as exc:
        if "async_threads" not in str(exc):
            raise
        # a DuckDB that has no asynchronous I/O threads to turn off
        config = {k: v for k, v in WRITER_CONFIG.items() if k != "async_threads"}
        return duckdb.connect(path, config=config)


def _connect(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return _open(path, read_only)
    except duckdb.Error as exc:
        raise _recording_error(path, exc) from None


def _recording_error(path: str, exc: duckdb.Error) -> RecordingError:
    """What DuckDB's failure to open ``path`` means for a recording."""
    message = _describe(exc)
    if "not a valid DuckDB database" in message or "Invalid Input Error" in message:
        return NotARecording(f"{path} is not a scope recording (not a DuckDB file)")
    if "sqlite_scanner" in message:  # DuckDB knows the format, and would load that
        return NotARecording(f"{path} is not a scope recording (a SQLite database)")
    if "checksum" in message.lower() or "corrupt" in message.lower():
        return NotARecording(f"{path} is a damaged recording (its checksums fail): {message}")
    if "Could not set lock" in message or "Conflicting lock" in message:
        return RecordingInUse(
            f"{path} is in use by another process (DuckDB allows one writer): {message}"
        )
    return RecordingError(f"cannot open recording {path}: {message}")


def next_run_id(con: duckdb.DuckDBPyConnection) -> int:
    """The number for a new run, noted as given (call inside the transaction that
    inserts it): one past any run's, the removed ones' too, so that ``scope rm``
    of the newest run never leaves its number to name another."""
    row = con.execute(
        """SELECT greatest(
               coalesce((SELECT max(id) FROM run), 0),
               coalesce((SELECT TRY_CAST(value AS BIGINT) FROM meta WHERE key = 'last_run'), 0)
           ) + 1"""
    ).fetchone()
    run = int(row[0]) if row else 1
    con.execute("DELETE FROM meta WHERE key = 'last_run'")
    con.execute("INSERT INTO meta VALUES ('last_run', ?)", [str(run)])
    return run


def schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The schema version stored in the file, or None if it has no ``meta`` table."""
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except duckdb.CatalogException:
        return None
    if not row:
        return None
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise NotARecording(f"its schema version is {str(row[0])[:40]!r}, not a number") from None


def _check_version(con: duckdb.DuckDBPyConnection, path: str, empty_ok: bool) -> None:
    try:
        version = schema_version(con)
    except NotARecording as exc:
        raise NotARecording(f"{path} is a damaged recording: {exc}") from None
    if version is None:
        tables = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchone()
        if empty_ok and tables is not None and tables[0] == 0:
            return
        raise NotARecording(f"{path} is a DuckDB file but not a scope recording")
    if not readable(version):
        raise NotARecording(
            f"{path} has recording schema version {version}; "
            f"this scope reads version {SCHEMA_VERSION}"
        )
    if version == SCHEMA_VERSION:
        _check_tables(con, path)


def _check_tables(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """Raise ``NotARecording`` unless every table of the schema is there with its
    columns: a file changed by other tools would fail each query on its own."""
    found: dict[str, set[str]] = {}
    for table, column in con.execute(
        """SELECT table_name, column_name FROM duckdb_columns()
           WHERE database_name = current_database() AND schema_name = 'main'"""
    ).fetchall():
        found.setdefault(table, set()).add(column)
    for table in TABLES:
        if table.name not in found:
            raise NotARecording(f"{path} is a damaged recording: it has no {table.name} table")
        missing = [c.name for c in table.columns if c.name not in found[table.name]]
        if missing:
            raise NotARecording(
                f"{path} is a damaged recording: its {table.name} table has no "
                f"{', '.join(missing)} column{'s' if len(missing) > 1 else ''}"
            )


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring an older file up to ``SCHEMA_VERSION``, one version at a time."""
    version = schema_version(con)
    while version is not None and version < SCHEMA_VERSION:
        con.execute("BEGIN")
        for statement in MIGRATIONS[version]:
            con.execute(statement)
        version += 1
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(version)])
        con.execute("COMMIT")


def _forget_if_empty(path: str) -> None:
    """Remove ``path`` if it is an empty regular file that no process holds: DuckDB
    leaves one when killed as it creates a database (a recording service killed as
    it starts), and then calls it "not a valid DuckDB database" for good.  An empty
    file holds nothing to lose.  Not a device, not a symlink, and not a file being
    created right now (DuckDB locks it the moment it makes it)."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        found = os.fstat(descriptor)
        if not stat.S_ISREG(found.st_mode) or found.st_size or os.path.exists(path + ".wal"):
            return
        fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # OSError: someone holds it
        if os.stat(path, follow_symlinks=False).st_ino == found.st_ino:
            os.unlink(path)
    except OSError:
        return
    finally:
        os.close(descriptor)  # lets go of the lock


def open_for_writing(path: str) -> duckdb.DuckDBPyConnection:
    """Open ``path`` for recording, creating the file, its folder and the schema if needed."""
    _writable(path)
    con = _connect(path, read_only=False)
    try:
        _prepare(con, path)
    except RecordingError:
        con.close()
        raise
    return text_safe(con)


def _writable(path: str) -> None:
    """Raise ``RecordingError`` unless a recording can be written at ``path`` (its
    folder is made); an empty file a killed writer left is removed."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        live.make_recording_folder(path)
    except OSError as exc:
        raise RecordingError(f"cannot create folder for recording {path}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise RecordingError(f"cannot write recording {path}: folder {folder} is not writable")
    if os.path.isdir(path):
        raise RecordingError(f"cannot write recording {path}: it is a directory")
    if os.path.exists(path) and not os.path.isfile(path):
        raise RecordingError(f"cannot write recording {path}: it is not a regular file")
    _forget_if_empty(path)


def _make_private(path: str) -> None:
    """Let only this user read the new recording at ``path`` (0600): it holds
    arguments and values.  A file that existed keeps its permissions."""
    for name in recording_files(path)[0]:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)


def _prepare(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """Check the open recording's schema version; create or migrate its schema."""
    try:
        _check_version(con, path, empty_ok=True)
        if schema_version(con) is None:
            _make_private(path)  # a new file: before anything is written into it
            con.execute("BEGIN")
            for statement in create_statements():
                con.execute(statement)
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            con.execute("COMMIT")
        _migrate(con)
    except duckdb.Error as exc:
        raise RecordingError(f"cannot write recording {path}: {_describe(exc)}") from None


class Engine:
    """One DuckDB instance that a long-lived process keeps, into which it attaches a
    recording to write it, and detaches it when done.

    Starting DuckDB costs about 13 ms whatever the file (it builds its catalog of
    built-in functions), and closing it as much again; attaching a file to a
    running instance costs about 2 ms, and detaching it checkpoints the file and
    lets go of its lock just as closing does.  A recording service that stores
    run after run keeps one engine and pays for DuckDB's start once.
    """

    #: the name the attached recording has in the engine's catalog
    ALIAS = "recording"

    def __init__(self) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None
        self.attached: str | None = None
        #: the attached recording is being written (not read)
        self._writing = False
        #: the threads DuckDB runs on (as started: WRITER_CONFIG's)
        self._threads = WRITER_THREADS
        #: the recording whose files alone DuckDB may open (``confine``)
        self._confined_to: str | None = None

    def open_for_writing(self, path: str) -> duckdb.DuckDBPyConnection:
        """Attach ``path`` (as ``open_for_writing`` opens it) and make it the default
        database of the connection returned; ``release`` it, never close it.
        DuckDB runs on one thread while it is attached (``WRITER_CONFIG``)."""
        _writable(path)
        return text_safe(self._attach(path, "", lambda con: _prepare(con, path)))

    def open_for_reading(self, path: str) -> duckdb.DuckDBPyConnection:
        """Attach ``path`` read-only (as ``open_for_reading`` opens it), as the default
        database of the connection returned; ``release`` it, never close it."""
        if not os.path.isfile(path):
            raise RecordingError(f"no recording at {path}")
        return self._attach(
            path, " (READ_ONLY)", lambda con: _check_version(con, path, empty_ok=False)
        )

    def _attach(
        self, path: str, options: str, check: Callable[[duckdb.DuckDBPyConnection], None]
    ) -> duckdb.DuckDBPyConnection:
        """Attach ``path`` with ``options`` as the default database, then ``check`` it
        (a ``RecordingError`` detaches it again)."""
        assert self.attached is None, "one recording at a time"
        if self._con is not None and self._confined_to != os.path.abspath(path):
            self.close()  # confined to another recording's files: DuckDB starts anew
        if self._con is None:
            self._con = _confined_engine(duckdb_path(os.path.abspath(path)))
            self._confined_to = os.path.abspath(path)
        if not options:
            self.use_threads(WRITER_THREADS)
        con = self._con
        quoted = duckdb_path(path).replace("'", "''")
        try:
            con.execute(f"ATTACH '{quoted}' AS {self.ALIAS}{options}")
        except duckdb.Error as exc:
            raise _recording_error(path, exc) from None
        self.attached = path
        self._writing = not options
        try:
            con.execute(f"USE {self.ALIAS}")
            check(con)
        except (RecordingError, duckdb.Error) as exc:
            self.release()
            if isinstance(exc, RecordingError):
                raise
            raise _recording_error(path, exc) from None
        return con

    def use_threads(self, threads: int) -> None:
        """Run DuckDB's work on ``threads`` threads from now on (kept until changed)."""
        if self._con is not None and threads != self._threads:
            self._con.execute(f"SET threads = {int(threads)}")
            self._threads = threads

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """Another connection to the attached recording (for a thread of its own)."""
        assert self._con is not None and self.attached is not None
        cursor = self._con.cursor()
        cursor.execute(f"USE {self.ALIAS}")
        return cursor

    def release(self) -> None:
        """Detach the recording: checkpointed, and its lock let go of.  Raises
        ``duckdb.Error`` if the checkpoint fails (a full disk); it is detached anyway.

        A recording written is released once its programs have ended, and whoever
        waits for it to be stored waits for this last checkpoint: it runs on every
        core (a third faster on two).
        """
        if self._con is None or self.attached is None:
            return
        self.attached = None
        con = self._con
        try:
            if self._writing:
                self.use_threads(os.cpu_count() or 1)
            con.execute("USE memory")
            con.execute(f"DETACH {self.ALIAS}")
        except duckdb.Error:
            with contextlib.suppress(duckdb.Error):
                self.close()  # whatever state the failure left: the next attach starts anew
            raise

    def close(self) -> None:
        """Detach what is attached and stop DuckDB."""
        con, self._con = self._con, None
        self.attached = None
        self._threads = WRITER_THREADS
        self._confined_to = None
        if con is not None:
            con.close()


def _confined_engine(path: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB of its own (in memory) that may open the recording at ``path`` and
    its files, and no other file: a query a recording service answers runs in it.
    Its settings stay open to the engine (threads); queries cannot change them, as
    the service runs none but ``SELECT`` (``query_statement``)."""
    con = _connect(":memory:", read_only=False)
    files, folders = recording_files(path)
    con.execute(f"SET temp_directory = {sql_string(folders[0])}")
    confine(con, files, folders, lock=False)
    return con


def open_for_reading(
    path: str,
    settings: Mapping[str, str | bool | int] | None = None,
    writable_folder: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open an existing recording read-only, checking that it is one.

    The connection is a sandbox (``confine``): it can read the recording and write
    nothing, except files under ``writable_folder`` (an export's folder).
    ``settings`` are DuckDB settings to make first (a progress bar): none can be
    changed after.
    """
    if not os.path.exists(path):
        raise RecordingError(f"no recording at {path} (record one with 'scope run')")
    if os.path.isdir(path):
        raise RecordingError(f"{path} is a directory, not a recording")
    if not os.path.isfile(path):  # a fifo or a device: opening it could block
        raise NotARecording(f"{path} is not a scope recording (not a regular file)")
    con = _connect(path, read_only=True)
    try:
        _check_version(con, path, empty_ok=False)
        for name, value in (settings or {}).items():
            con.execute(f"SET {name} = {sql_string(str(value))}")
        confine(con, folders=[os.path.abspath(writable_folder)] if writable_folder else ())
    except RecordingError:
        con.close()
        raise
    return con


#: what a recording service runs of a query's SQL: it holds the recording open
#: for writing, so nothing that could change it, or its settings, runs there
SERVICE_STATEMENTS = ("SELECT", "EXPLAIN")


def one_statement(con: duckdb.DuckDBPyConnection, sql: str, kinds: Sequence[str] = ()) -> None:
    """Raise ``QueryError`` unless ``sql`` is one statement (of one of ``kinds``, if
    given): a query runs one statement, so none can end its transaction (the
    service's, rolled back after) and run more."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc).strip()) from None
    if len(statements) != 1:
        raise QueryError(f"a query is one SQL statement; this has {len(statements)}")
    kind = statements[0].type.name
    if kinds and kind not in kinds:
        raise QueryError(
            f"read-only: the recording service runs {' and '.join(kinds)} statements, not {kind}"
        )

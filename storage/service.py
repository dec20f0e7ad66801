"""The recording service: one process per recording file stores what its programs record.

Recorded processes (producers) keep their rings in files of their own folders in
the recording's live folder and append everything else they learn (functions
planned, events, test phases) to a log there (``scope.live``).  They run
no thread of scope's and never touch DuckDB.  The service, started by the first
producer of a recording and shared by every process recording into it:

* finds producers' folders (a producer says hello on its socket; a scan finds
  the rest), gives each top process a run and each child process (same run key)
  the next process number of its parent's run;
* drains every producer's rings in batches into DuckDB, with its log's functions,
  events and tests in the same transactions (``RecordingWriter``);
* notices a producer's end however it comes: its "ended" message (it then waits
  for the answer, so ``scope run`` returns with its run stored), or its process
  gone (killed: it stores what the rings hold and says so);
* exits once no producer is left and nothing has asked anything for a while.

The service holds ``<db>.live/service.lock`` for its life: a second one started
for the same recording (as the first leaves) waits for it, then stores what is
left.  Its socket is in the live folder (0700), and it answers only processes of
its own user.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
from scope.native.batch import Batch
from scope.storage import database
from scope.storage.answers import TOO_MANY_ROWS, decode_value, encode_value
from scope.storage.pruning import retain
from scope.storage.recovery import recover
from scope.storage.rows import Event, RunEnd, RunInfo, TestPhase
from scope.storage.writer import RecordingWriter

from scope import live, native
from scope.errors import QueryError, RecordingError, RecordingInUse

#: seconds between two rounds of draining: long enough for a batch to be worth its
#: transaction (a few ms each), short enough for a ring (2^18 records) not to fill
INTERVAL = 0.01
#: seconds the service stays with nothing to do before it exits
LINGER = float(os.environ.get("SCOPE_SERVICE_LINGER", "1.0"))
#: seconds to wait for another process (a query reading it) to let go of the recording
READER_WAIT = float(os.environ.get("SCOPE_SERVICE_READER_WAIT", "10.0"))
#: rows the service answers a query with while it stores no run: more, and the
#: query is better off opening the file itself than reading them as JSON
QUERY_ROWS = 10_000
#: The service's own table: where it has drained each ring of each process to,
#: noted in the transaction that stores what it drained.  A service killed after
#: that commit but before it freed the rings' space leaves the records in the
#: rings; the next one passes over them instead of storing them twice.  A
#: process's rows go once it is stored.
DRAINED_DDL = """CREATE TABLE IF NOT EXISTS service_drained (
    run INTEGER, process INTEGER, slot INTEGER, position UBIGINT, arena UINTEGER,
    PRIMARY KEY (run, process, slot))"""
#: The service's own table of the run each run key was given: a child process
#: that starts after its service has left is stored in its parent's run.
RUNS_DDL = """CREATE TABLE IF NOT EXISTS service_runs (
    key VARCHAR PRIMARY KEY, run INTEGER)"""
#: the slot of ``service_drained`` rows that say how far a process's log is stored
LOG_SLOT = -1
#: records per batch (one DuckDB row group, as the in-process pipeline's)
BATCH_RECORDS = 122_880


@dataclass
class Producer:
    """One recorded process the service stores."""

    folder: str
    pid: int
    start: int | None
    #: its run: the key its processes share, the run's id, and the run itself while
    #: the recording is open (None once the service has let go of the file)
    key: str
    run_id: int
    run: RunFeed | None
    #: its process number in the run; None until it has recorded something (a
    #: process that runs none of the program's code, such as multiprocessing's
    #: helpers, gets none and leaves no row)
    number: int | None
    reader: native.Reader
    log: live.LogReader
    #: its run.json
    note: dict[str, Any] = field(default_factory=dict)
    #: log records read before it had a number
    pending: list[dict[str, Any]] = field(default_factory=list)
    #: what its log said about its end ({} until it says)
    end: dict[str, Any] = field(default_factory=dict)
    #: its producer asked to be told when it is stored
    waiters: list[threading.Event] = field(default_factory=list)
    finished: bool = False
    #: how far its log is stored (and noted in its folder)
    log_stored: int = 0
    #: (slot, record, arena): where a killed service had stored its rings to
    stored_to: list[tuple[int, int, int]] = field(default_factory=list)
    #: calls it left open, dying without a word: (written as unfinished, missing)
    left_open: tuple[int, int] | None = None
    #: records waiting in its rings each time a batch was drained (its lag)
    waiting: list[int] = field(default_factory=list)
    #: an earlier recording service had taken it up and stopped before storing it all
    taken_over: bool = False


@dataclass
class RunFeed:
    """One run: its writer and how it numbers functions, shared by its processes."""

    key: str
    writer: RecordingWriter
    numbering: native.Numbering
    audit: tuple[str, ...]
    processes: list[Producer] = field(default_factory=list)
    #: batches committed, for the run's row
    batches: int = 0
    #: the number the next child process to record something gets
    next_number: int = 1
    #: why storing stopped (the records drained since are lost), or None
    failure: str | None = None
    records_lost: int = 0


class Service:
    """Stores every producer of recording ``db`` until none is left."""

    def __init__(self, db: str) -> None:
        self.db = os.path.abspath(db)
        self.root = live.live_root(self.db)
        self.producers: dict[str, Producer] = {}
        self.runs: dict[str, RunFeed] = {}
        #: the run of every run key seen (``service_runs`` keeps them in the file)
        self.run_ids: dict[str, int] = {}
        #: child folders whose run is not known (yet): not waited for long
        self._orphans: set[str] = set()
        #: what to answer about each producer stored (its folder is gone by then)
        self.stored: dict[str, dict[str, object]] = {}
        self._lock = threading.Lock()
        #: held by the loop while it uses the recording, and to make a query's cursor
        self._db_lock = threading.Lock()
        self._hello = threading.Event()
        #: a run is starting: open the recording before its program asks
        self._open_asked = False
        #: when the recording was last opened because a run asked (0: not so)
        self._opened_asked_at = 0.0
        self._last_activity = time.monotonic()
        self._listener: socket.socket | None = None
        self._batch = Batch(BATCH_RECORDS, 1 << 22)
        self.con: duckdb.DuckDBPyConnection | None = None
        #: DuckDB, kept while the service lives: the recording is attached to it
        self._engine = database.Engine()
        #: the recording as this service last closed it (``_file_identity``): a
        #: file unchanged since is a recording, and a new run needs no wait to know
        self._closed_as: tuple[int, ...] | None = None
        #: the lock file this service holds, as (device, inode)
        self._lock_identity: tuple[int, int] | None = None
        #: the live folder at ``root`` is no longer this service's (it was removed,
        #: ``rm -rf .scope``, and maybe made again by a new run): touch nothing there
        self._evicted = False

    # ---- life ----

    def serve(self) -> int:
        """Run until no producer is left; returns the exit status."""
        try:
            lock = _take_lock(os.path.join(self.root, live.LOCK))
        except FileNotFoundError:
            return 0  # the live folder is gone: the service before stored everything
        held = os.fstat(lock)
        self._lock_identity = (held.st_dev, held.st_ino)
        try:
            self._listen()
            try:
                with self._db_lock:
                    self._open()
                while self._still_ours():
                    with self._db_lock:
                        self._open_if_asked()
                        moved = self._round()
                    if moved >= BATCH_RECORDS // 2:
                        continue  # a backlog: drain again at once, in full batches
                    if self._idle():
                        break
                    self._hello.wait(INTERVAL)
                    self._hello.clear()
            except RecordingError as exc:  # said by each producer at its end
                if self._still_ours():
                    _refuse(self.root, exc)
                raise
            return 0
        finally:
            self._close()
            self._tidy()
            os.close(lock)

    def _still_ours(self) -> bool:
        """Whether the live folder at ``root`` is still this service's: its lock file is
        the one this service holds.  Once it is not, the service leaves at once and
        never touches a path there again: those are another service's now."""
        if not self._evicted:
            try:
                current = os.stat(os.path.join(self.root, live.LOCK))
                self._evicted = (current.st_dev, current.st_ino) != self._lock_identity
            except FileNotFoundError:
                self._evicted = True
            except OSError:
                pass  # cannot tell (EIO, EACCES): keep going, as before the check
        return not self._evicted

    def _tidy(self) -> None:
        """Leave no trace in the live folder but what must stay (the lock is still held,
        so a service starting meanwhile finds the lock file gone and makes its own)."""
        if not self._still_ours():
            return
        log = os.path.join(self.root, live.SERVICE_LOG)
        with contextlib.suppress(OSError):
            if os.path.getsize(log) == 0:
                os.unlink(log)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.root, live.LOCK))
        with contextlib.suppress(OSError):
            os.rmdir(self.root)  # only if nothing is left in it

    def _open(self, wait: bool = True) -> duckdb.DuckDBPyConnection:
        """The recording, opened for writing (and what killed programs left, stored).

        A query may hold the file read-only a moment (between two runs, or as the
        first run starts): waited for, up to ``READER_WAIT`` seconds, after which
        the recording is refused and the producers' folders stay for the next
        command.  Without ``wait``, a file held by a reader raises ``RecordingInUse``.
        """
        if self.con is None:
            deadline = time.monotonic() + READER_WAIT
            while self.con is None:
                try:
                    con = self._engine.open_for_writing(self.db)
                    try:
                        con.execute(DRAINED_DDL)
                        con.execute(RUNS_DDL)
                    except duckdb.Error as exc:
                        with contextlib.suppress(duckdb.Error):
                            self._engine.release()
                        raise RecordingError(f"cannot write recording {self.db}: {exc}") from None
                    self.con = con
                except RecordingInUse:
                    if not wait or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.root, live.REFUSAL))  # an old refusal: past
            recover(self.con, self.db)
        return self.con

    def _open_if_asked(self) -> None:
        """Open the recording now if a run that is starting asked, and the file is as
        this service closed it: that run's own check and first records find it open.
        Anything else (a file changed since, or held by a reader) waits for the run."""
        if self._open_asked:
            self._open_asked = False
            if self.con is None and self._closed_as == _file_identity(self.db):
                with contextlib.suppress(RecordingError):
                    self._open(wait=False)
                    self._opened_asked_at = time.monotonic()
        elif self._opened_asked_at and time.monotonic() - self._opened_asked_at > LINGER / 2:
            # The run that asked never came (its program could not start): let go.
            self._opened_asked_at = 0.0
            with self._lock:
                unattached = not self.producers
            if unattached:
                self._release_file()

    def _release_file(self) -> None:
        """Close the recording once no producer is left that has rows in it: queries
        can open it.  Producers that recorded nothing yet (multiprocessing's helpers,
        which live as long as their parent) take it up again if they ever do."""
        self._opened_asked_at = 0.0
        if self.con is None:
            return
        with self._lock:
            if any(not p.finished and p.number is not None for p in self.producers.values()):
                return
            for folder in [f for f, p in self.producers.items() if p.finished]:
                del self.producers[folder]
            for producer in self.producers.values():
                producer.run = None
        self.runs.clear()
        self.con = None
        try:
            self._engine.release()
        except duckdb.Error:  # a disk gone read-only: it is let go of
            self._closed_as = None
        else:
            self._closed_as = _file_identity(self.db)

    def _idle(self) -> bool:
        with self._lock:
            busy = any(not p.finished for p in self.producers.values())
        if busy:
            self._last_activity = time.monotonic()
            return False
        if time.monotonic() - self._last_activity < LINGER:
            return False
        # Stop taking connections, then look once more: a producer that made its
        # folder meanwhile starts a service of its own if this one is gone.
        if not self._still_ours():
            return True
        self._stop_listening()
        with self._db_lock:
            self._scan()
        with self._lock:
            if not any(not p.finished for p in self.producers.values()):
                return True
        # A producer came meanwhile: it may ask to be told when it is stored.
        self._listen()
        return False

    def _close(self) -> None:
        self._stop_listening()
        for producer in self.producers.values():
            producer.reader.close()
        self.con = None
        # Not under a check or a query that is using DuckDB: closing it interrupts them.
        with self._db_lock, contextlib.suppress(duckdb.Error):
            self._engine.close()

    # ---- the socket ----

    def _listen(self) -> None:
        path = os.path.join(self.root, live.SOCKET)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a dead service's: this one holds the lock
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            with live.socket_address(path) as address:
                listener.bind(address)
        finally:
            os.umask(old_umask)
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            if self._still_ours():
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.root, live.SOCKET))
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            if not _same_user(connection):
                connection.close()
                continue
            self._last_activity = time.monotonic()
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as stream:
            while (message := live.receive(stream)) is not None:
                self._last_activity = time.monotonic()
                op = message.get("op")
                if op == "hello":
                    self._open_asked = self._open_asked or bool(message.get("open"))
                    self._hello.set()
                    writing = self.con is not None  # the file is open for writing
                    live.send(
                        connection,
                        {"ok": True, "format": native.SHARED_FORMAT, "writing": writing},
                    )
                elif op == "check":
                    live.send(connection, self._check())
                elif op == "ended":
                    end = message.get("end")
                    folder = str(message.get("folder", ""))
                    live.send(connection, self._wait_stored(folder, end))
                elif op == "sql":
                    live.send(connection, self._query(message))
                else:
                    live.send(connection, {"ok": False, "error": f"unknown request {op!r}"})

    def _check(self) -> dict[str, object]:
        """Whether the recording can be stored (a new run asks before its program runs).

        A file held by another process (a query) is no reason to refuse: the run's
        records wait in its rings until the file is free.
        """
        if self.con is not None:
            return {"ok": True}  # open for writing: it is a recording
        if self._closed_as is not None and _file_identity(self.db) == self._closed_as:
            self._hello.set()  # the loop opens it while the program starts
            return {"ok": True}  # as this service left it: a recording
        try:
            with self._db_lock:
                self._open()
        except RecordingError as exc:
            return {"ok": False, "code": exc.code, "error": str(exc)}
        return {"ok": True}

    def _query(self, message: dict[str, object]) -> dict[str, object]:
        """Run a query's SQL on what is stored so far, in a transaction rolled back after.

        While no run is being stored, the file is attached read-only for the one
        statement (other readers are not kept out), and an answer of more than
        ``QUERY_ROWS`` rows is declined: the query opens the file itself, which is
        faster for it than rows as JSON.  The service has DuckDB loaded already,
        so a short query (``scope top`` right after ``scope run``) is answered
        sooner than the query's own process could load it.
        """
        with self._db_lock:
            if self.con is None:
                return self._query_file(message)
            cursor = self._engine.cursor()
        return self._run_query(cursor, message, limit=None)

    def _query_file(self, message: dict[str, object]) -> dict[str, object]:
        """``_query`` while nothing is being stored (``_db_lock`` held)."""
        try:
            self._engine.open_for_reading(self.db)
        except RecordingError as exc:
            return {"ok": False, "code": exc.code, "error": str(exc)}
        try:
            # Every core for queries, as their own process would have; storing takes
            # one again (more is slower for inserts) when the next run is attached.
            self._engine.use_threads(os.cpu_count() or 1)
            return self._run_query(self._engine.cursor(), message, limit=QUERY_ROWS)
        finally:
            with contextlib.suppress(duckdb.Error):
                self._engine.release()

    def _run_query(
        self, cursor: duckdb.DuckDBPyConnection, message: dict[str, object], limit: int | None
    ) -> dict[str, object]:
        try:
            database.one_statement(cursor, str(message.get("sql")), database.SERVICE_STATEMENTS)
        except QueryError as exc:
            cursor.close()
            return {"ok": False, "error": str(exc)}
        try:
            cursor.execute("BEGIN TRANSACTION")
            try:
                params = decode_value(message.get("params"))
                result = cursor.execute(str(message.get("sql")), params or [])
                columns = [d[0] for d in result.description or []]
                if limit is None:
                    rows = result.fetchall() if columns else []
                else:
                    rows = result.fetchmany(limit + 1) if columns else []
                    if len(rows) > limit:
                        return {"ok": False, "code": TOO_MANY_ROWS, "error": "too many rows"}
            finally:
                cursor.execute("ROLLBACK")
        except duckdb.Error as exc:
            return {"ok": False, "error": str(exc).strip()}
        finally:
            cursor.close()
        encoded = [[encode_value(v) for v in row] for row in rows]
        return {"ok": True, "columns": columns, "rows": encoded}

    def _wait_stored(self, folder: str, end: object = None) -> dict[str, object]:
        """Wait until the producer in ``folder`` is stored; what to answer it.

        ``end`` is how it ended, as its log says it too: a log that could not take
        it (a disk turned read-only) does not leave the producer waiting forever.
        """
        done = threading.Event()
        deadline = time.monotonic() + 5.0
        while True:
            with self._lock:
                if folder in self.stored:
                    return self.stored[folder]
                producer = self.producers.get(folder)
                if producer is not None:
                    producer.waiters.append(done)
                    if isinstance(end, dict) and not producer.end:
                        producer.end = dict(end)
                    break
            # A folder not attached yet is waited for (the recording may be held by
            # a query for a while); one that is not there, for a few seconds.
            ours = (
                os.path.dirname(folder) == self.root
                and os.path.isdir(folder)
                and folder not in self._orphans
            )
            if time.monotonic() > deadline and not ours:
                return {"ok": False, "error": "no such producer"}
            self._hello.set()  # a producer not found yet: look now
            time.sleep(INTERVAL)
        self._hello.set()
        done.wait()
        with self._lock:
            return self.stored.get(folder, {"ok": False, "error": "not stored"})

    # ---- one round: find, read, drain, finish ----

    def _round(self) -> int:
        """Find, read, drain and finish every producer once; returns records drained."""
        self._scan()
        moved = 0
        stored: list[tuple[Producer, dict[str, object]]] = []
        for producer in list(self.producers.values()):
            if producer.finished:
                continue
            if producer.reader.refresh() and producer.stored_to:
                _pass_stored(producer)
            self._read_log(producer)
            gone = live.process_start(producer.pid) != producer.start
            if not gone and producer.end.get("how") is None:
                code = live.exit_code(producer.pid)  # a zombie: ended, not yet reaped
                if code is not None:
                    producer.end.setdefault("how", code)
                    gone = True
            if gone and "ended_by" not in producer.end and producer.left_open is None:
                producer.reader.refresh()  # a thread's ring made just before the end too
                producer.left_open = producer.reader.unfinish()  # its stacks, from its files
            # A child's end is its process's end: its exit status comes after its atexit.
            ended = (bool(producer.end) and producer.end.get("final", True)) or gone
            if producer.number is None and (_has_rows(producer.pending) or _produced(producer)):
                self._number(producer)
            if producer.number is not None:
                moved += self._drain(producer)
            if ended:
                stored.append((producer, self._finish(producer)))
        if stored:
            self._release_file()  # before the answers: a query may follow at once
        for producer, answer in stored:
            with self._lock:
                self.stored[producer.folder] = answer
                waiters, producer.waiters = producer.waiters, []
            for waiter in waiters:
                waiter.set()
        return moved

    def _scan(self) -> None:
        if not self._still_ours():
            return
        try:
            names = os.listdir(self.root)
        except OSError:
            return
        for name in sorted(names):
            folder = os.path.join(self.root, name)
            known = folder in self.producers or folder in self.stored
            if known or "-" not in name or not os.path.isdir(folder):
                continue
            try:
                self._attach(folder)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # Not what a producer writes (damaged, or not scope's): left alone.
                self.stored[folder] = {"ok": False, "error": "not a producer's folder"}
                _say(f"{folder} left alone: {type(exc).__name__}: {exc}")

    def _attach(self, folder: str) -> None:
        note = live.read_note(folder)
        if note is None or os.path.abspath(str(note.get("db"))) != self.db:
            return
        key = str(note.get("run_key") or "")
        if not key:
            return  # recorded by a process storing its own run
        assigned = live.read_assignment(folder)
        if assigned is not None and assigned["number"] > 0 and self._ended(assigned):
            live.remove_process_folder(folder)  # stored by a service killed as it tidied
            return
        run = self.runs.get(key)
        if run is None and assigned is not None and assigned["number"] >= 0:
            run = self._resume_run(key, assigned["run"], note)  # a killed service's run
            if run is None:
                live.remove_process_folder(folder)  # its run is closed: nothing to add
                return
        if run is None and assigned is None and note.get("top"):
            # A service killed between storing the run's row and noting it here.
            con = self._open()
            info = note["info"]
            row = _first(
                con.execute(
                    """SELECT r.id FROM run r JOIN process p ON p.run = r.id
                       WHERE r.status = 'running' AND p.number = 0 AND p.pid = ?
                         AND p.start_ns = ?""",
                    [info.get("pid"), info.get("start_ns")],
                ).fetchall()
            )
            if row is not None:
                assigned = {"run": int(row[0]), "number": 0, "log": 0}
                run = self._resume_run(key, assigned["run"], note)
        if run is None and assigned is None and not note.get("top"):
            run_id = self._run_for_key(key)
            if run_id is not None:
                run = self._resume_run(key, run_id, note)  # it outlived its top
        if run is None and assigned is None:
            if not note.get("top"):
                self._orphans.add(folder)
                return  # its run's first process is not here yet
            self._orphans.discard(folder)
            self._open()
            run = self._begin_run(key, note)
        if assigned is not None:
            run_id, number = assigned["run"], assigned["number"]
        else:
            assert run is not None
            run_id, number = run.writer.run_id, 0 if note.get("top") else -1
        try:
            reader = native.Reader(
                folder, run.numbering if run is not None else None, process=max(number, 0)
            )
        except OSError:
            return  # its header is not written yet: next round
        pid = int(str(note["pid"]))
        start = note.get("start")
        producer = Producer(
            folder,
            pid,
            None if start is None else int(str(start)),
            key,
            run_id,
            run,
            number if number >= 0 else None,
            reader,
            live.LogReader(folder),
            note,
        )
        if assigned is not None:
            producer.taken_over = True
            producer.log.offset = producer.log_stored = assigned["log"]
            # The end may be in what a killed service read already: it is read again.
            for record in live.LogReader(folder).read():
                if "end" in record:
                    producer.end = dict(record["end"])
            if number >= 0:
                stored_to = [
                    (int(slot), int(read), int(arena))
                    for slot, read, arena in self._open()
                    .execute(
                        """SELECT slot, position, arena FROM service_drained
                           WHERE run = ? AND process = ?""",
                        [run_id, number],
                    )
                    .fetchall()
                ]
                for slot, read, _ in stored_to:
                    if slot == LOG_SLOT and read > producer.log.offset:
                        producer.log.offset = producer.log_stored = read
                producer.stored_to = [p for p in stored_to if p[0] != LOG_SLOT]
                _pass_stored(producer)
        else:  # where a service taking over after this one finds the run
            _assign(folder, run_id, number, 0)
        with self._lock:
            self.producers[folder] = producer

    def _ended(self, assigned: dict[str, int]) -> bool:
        """Whether the child process a folder was assigned is stored to its end."""
        row = _first(
            self._open()
            .execute(
                "SELECT ended_by FROM process WHERE run = ? AND number = ?",
                [assigned["run"], assigned["number"]],
            )
            .fetchall()
        )
        return row is not None and row[0] is not None

    def _begin_run(self, key: str, note: dict[str, Any]) -> RunFeed:
        assert self.con is not None
        numbering = native.Numbering()
        writer = RecordingWriter(self.con, numbering)
        info = note["info"]
        con = self.con
        writer.begin(
            RunInfo(**info),
            lambda run_id: con.execute(
                "INSERT OR REPLACE INTO service_runs VALUES (?, ?)", [key, run_id]
            ),
        )
        self.run_ids[key] = writer.run_id
        run = RunFeed(key, writer, numbering, tuple(note.get("audit") or ()))
        writer.audit_events = run.audit
        writer.recount_summed = True
        self.runs[key] = run
        return run

    def _run_of(self, producer: Producer) -> RunFeed | None:
        """The producer's run, taken up again if the file was let go of meanwhile;
        None if the run is closed."""
        run = self.runs.get(producer.key)
        if run is None:
            run = self._resume_run(producer.key, producer.run_id, producer.note)
        if run is not None and producer.run is not run:
            producer.run = run
            producer.reader.numbering = run.numbering
        return run

    def _resume_run(self, key: str, run_id: int, note: dict[str, Any]) -> RunFeed | None:
        """Take up run ``run_id`` where a service that was killed, or let go of the file,
        left it; None if there is no such run, or it is closed and ``note`` is its top
        process's.  A child process may outlive its run's top one (a daemon, a
        ``Popen`` not waited for): what it records still goes to the run.
        """
        con = self._open()
        row = _first(con.execute("SELECT status FROM run WHERE id = ?", [run_id]).fetchall())
        if row is None or (row[0] != "running" and note.get("top")):
            return None
        numbering = native.Numbering()
        writer = RecordingWriter(con, numbering)
        writer.run_id = run_id
        writer.recount_summed = True
        for number, function, params, attributes in con.execute(
            "SELECT id, key, params, attributes FROM function WHERE run = ?", [run_id]
        ).fetchall():
            numbering.seed(function, number)
            writer._names[number] = (tuple(params or ()), tuple(attributes or ()))
        run = RunFeed(key, writer, numbering, tuple(note.get("audit") or ()))
        writer.audit_events = run.audit
        row = _first(
            con.execute("SELECT max(number) FROM process WHERE run = ?", [run_id]).fetchall()
        )
        run.next_number = int(row[0] or 0) + 1 if row else 1
        # The run's counters go on from what the killed service stored.
        counts = _first(
            con.execute(
                """SELECT (SELECT count(*) FROM call WHERE run = $run),
                          (SELECT count(*) FROM call WHERE run = $run AND outcome = 'unfinished'),
                          (SELECT coalesce(sum(calls), 0) FROM call_aggregate WHERE run = $run),
                          (SELECT count(*) FROM value WHERE run = $run)""",
                {"run": run_id},
            ).fetchall()
        )
        calls, unfinished, summed, values = (int(c) for c in counts)
        writer.calls_stored, writer.calls_unfinished = calls, unfinished
        writer.calls_summed, writer.values_stored = summed, values
        writer.records_stored = calls + summed + values
        self.runs[key] = run
        self.run_ids[key] = run_id
        return run

    def _run_for_key(self, key: str) -> int | None:
        """The run of run key ``key``, if a service began it."""
        if key not in self.run_ids:
            row = _first(
                self._open().execute("SELECT run FROM service_runs WHERE key = ?", [key]).fetchall()
            )
            if row is None:
                return None
            self.run_ids[key] = int(row[0])
        return self.run_ids[key]

    def _number(self, producer: Producer) -> None:
        """Give a child process that recorded something its number in the run, and a row."""
        run = self._run_of(producer)
        if run is None:
            return  # its run was closed: what it records has nowhere to go
        number = producer.number = run.next_number
        run.next_number += 1
        producer.reader.set_process(number)
        self._add_process(run, producer, producer.note)
        _assign(producer.folder, run.writer.run_id, number, producer.log_stored)
        pending, producer.pending = producer.pending, []
        self._apply_log(producer, pending)

    def _add_process(self, run: RunFeed, producer: Producer, note: dict[str, Any]) -> None:
        info = note["info"]
        run.writer.con.execute(
            """INSERT INTO process (run, pid, parent_pid, number, executable, start_ns)
               VALUES (?, ?, ?, ?, ?, ?)""",
            [
                run.writer.run_id,
                producer.pid,
                info.get("parent_pid"),
                producer.number,
                info.get("executable"),
                info.get("start_ns"),
            ],
        )

    def _read_log(self, producer: Producer) -> None:
        """Read what the producer appended to its log: kept until it has a number."""
        records = producer.log.read()
        for record in records:
            if "end" in record:
                producer.end = dict(record["end"])
        if producer.number is None:
            producer.pending += records
        else:
            self._apply_log(producer, records)

    def _apply_log(self, producer: Producer, records: list[dict[str, Any]]) -> None:
        run = self._run_of(producer)
        if run is None:
            return
        writer = run.writer
        number = producer.number or 0
        events: list[Event] = []
        for record in records:
            if "plan" in record:
                writer.add_plan(base64.b64decode(str(record["plan"])))
            elif "event" in record:
                events.append(_event(record["event"], number))
            elif "tests" in record:
                writer.add_test_phases([_test_phase(t, number) for t in record["tests"]])
            elif "discard" in record:
                writer.discard_calls_under([_in_run(int(c), number) for c in record["discard"]])
        moved = producer.number is not None and producer.log.offset != producer.log_stored
        if not (events or moved):
            return
        # The log's functions, test phases and events, with how far the log is
        # stored: a service killed after this goes on from there, one killed before
        # reads them all again.
        writer._pid = producer.pid
        offset = (
            (
                "INSERT OR REPLACE INTO service_drained VALUES (?, ?, ?, ?, 0)",
                [writer.run_id, producer.number, LOG_SLOT, producer.log.offset],
            )
            if moved
            else None
        )
        try:
            writer.flush_plans(events, offset)
        except Exception as exc:  # a full disk: as when storing calls fails
            run.failure = run.failure or f"{type(exc).__name__}: {exc}"
            run.records_lost += len(events)
            return
        if moved:
            assert producer.number is not None
            _assign(producer.folder, writer.run_id, producer.number, producer.log.offset)
            producer.log_stored = producer.log.offset

    def _drain(self, producer: Producer) -> int:
        """Store what the producer's rings hold; returns how many records.

        If storing fails (a full or read-only disk), the run stops storing calls but
        the rings are still drained, and what they held counted as lost: the
        program never waits for a service that cannot store.
        """
        run = self._run_of(producer)
        if run is None:
            return 0
        run.writer._pid = producer.pid
        moved = 0
        while waiting := producer.reader.waiting():
            if not self._batch.drain(producer.reader).records:
                break
            producer.waiting.append(waiting)
            # A module's functions are logged before any of them runs: read now, the
            # log has those of every call drained, for naming their values.
            self._read_log(producer)
            moved += self._batch.counts.records
            if run.failure is None:
                try:
                    run.writer.write_batch(self._batch, _drained_sql(run, producer))
                    run.batches += 1
                except Exception as exc:
                    run.failure = f"{type(exc).__name__}: {exc}"
            if run.failure is not None:
                run.records_lost += self._batch.counts.records
            producer.reader.commit()  # only now: a service killed before stores it again
        return moved

    def _finish(self, producer: Producer) -> dict[str, object]:
        """The producer has ended: store the rest of it and say so in its rows.

        Returns what to answer whoever asks about it (once the round is over).
        """
        if producer.reader.refresh() and producer.stored_to:
            _pass_stored(producer)
        self._read_log(producer)
        problems = [str(p) for p in producer.end.get("problems") or ()]
        if producer.number is None and (
            problems or _has_rows(producer.pending) or _produced(producer)
        ):
            self._number(producer)
        run = producer.run if producer.number is not None else None
        if run is not None:
            self._drain(producer)
            try:
                self._close_rows(run, producer, problems)
                run.writer.con.execute(
                    "DELETE FROM service_drained WHERE run = ? AND process = ?",
                    [run.writer.run_id, producer.number],
                )
            except Exception as exc:
                run.failure = run.failure or f"{type(exc).__name__}: {exc}"
            if producer.number == 0 and run.failure is None:
                problems += self._retain_runs(run, producer)
        if run is not None and run.failure is not None:
            problems.append(
                f"the recording stopped storing calls ({' '.join(run.failure.split())}); "
                f"{run.records_lost} events lost"
            )
        with self._lock:
            producer.finished = True
        producer.reader.close()
        if run is None or run.failure is None:
            live.remove_process_folder(producer.folder)
        return {
            "ok": True,
            "run": producer.run_id,
            "calls": run.writer.calls_stored if run is not None else 0,  # the run's so far
            "problems": problems,
        }

    def _retain_runs(self, run: RunFeed, producer: Producer) -> list[str]:
        """Keep only the newest runs its top process asked for (``retain_runs``), now
        that its run is closed; the problem, if older runs could not be removed.
        Runs this service still stores stay, whatever their number."""
        keep = producer.note.get("retain_runs")
        if not isinstance(keep, int) or keep <= 0:
            return []
        with self._lock:
            busy = {p.run_id for p in self.producers.values() if not p.finished}
        try:
            retain(run.writer.con, keep, busy)
        except duckdb.Error as exc:
            return [f"retain_runs: older runs could not be removed: {' '.join(str(exc).split())}"]
        return []

    def _close_rows(self, run: RunFeed, producer: Producer, problems: list[str]) -> None:
        """Store how the producer ended: its process, threads and (the top one's) run rows."""
        writer = run.writer
        process = producer.reader.process()
        end = producer.end
        ended_by, exit_status = _how_it_ended(process, end)
        threads = producer.reader.threads()
        for thread in threads:
            names = end.get("thread_names") or {}
            if not thread.name and str(thread.ident) in names:
                object.__setattr__(thread, "name", names[str(thread.ident)])
        problems = list(problems)
        missing = (producer.left_open[1] + process.parked) if producer.left_open else 0
        if "ended_by" not in end and missing:
            problems.append(
                f"process {producer.pid} ended ({ended_by}) before it said so: {missing:,} "
                f"calls still open then are missing (suspended generators or coroutines, "
                f"a stack that had grown past {native.RING_FRAMES:,} calls, or a full ring)"
            )
        events = [_event(e, producer.number or 0) for e in end.get("events") or ()]
        events += _service_events(producer, process.end_ns or native.now_ns())
        writer._pid = producer.pid
        rings = _ring_stats(threads, process)
        if producer.number == 0:
            writer.finish(
                RunEnd(
                    exit_status=exit_status,
                    end_ns=process.end_ns or native.now_ns(),
                    rings=rings,
                    clock=producer.reader.clock(),
                    threads=threads,
                    writer_batches=run.batches,
                    records_lost=run.records_lost,
                    problems=problems,
                    ended_by=ended_by,
                    events=events,
                )
            )
        else:
            _finish_child(writer, producer, threads, rings, exit_status, ended_by, problems, events)


def _refuse(root: str, why: RecordingError) -> None:
    """Leave why the recording cannot be stored where producers look for it: the
    error's code on the first line, its message on the second."""
    with contextlib.suppress(OSError):
        descriptor = os.open(
            os.path.join(root, live.REFUSAL),
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
            0o600,
        )
        with os.fdopen(descriptor, "w") as f:
            f.write(f"{why.code}\n{' '.join(str(why).split())}")


def _assign(folder: str, run: int, number: int, log: int) -> None:
    """Note in a producer's folder what it was given, if its disk lets it: on a disk
    that fails, storing fails too, and a service taking over has nothing to resume."""
    with contextlib.suppress(OSError):
        live.write_assignment(folder, run, number, log)


def _drained_sql(run: RunFeed, producer: Producer) -> str:
    """The statement noting where the producer's rings are drained to (all numbers)."""
    rows = ", ".join(
        f"({run.writer.run_id}, {producer.number}, {slot}, {read}, {arena})"
        for slot, read, arena in producer.reader.positions()
    )
    return f"INSERT OR REPLACE INTO service_drained VALUES {rows};" if rows else ""


def _pass_stored(producer: Producer) -> None:
    """Pass over what a killed service stored but did not free, ring by ring (a
    ring not mapped yet is passed over once it is)."""
    producer.stored_to = [
        position for position in producer.stored_to if not producer.reader.skip_to(*position)
    ]


def _say(text: str) -> None:
    """One line in the service's log (its stderr, the live folder's service.log)."""
    sys.stderr.write(f"scope service: {' '.join(text.split())}\n")
    sys.stderr.flush()


def _first(rows: list[Any]) -> Any:
    """The first row of a fetched result (fetched whole: DuckDB keeps a result that is
    not exhausted open on its connection), or None."""
    return rows[0] if rows else None


def _has_rows(records: list[dict[str, Any]]) -> bool:
    """Whether log records hold something for the run's tables (not functions alone)."""
    return any("event" in r or "tests" in r for r in records)


def _produced(producer: Producer) -> int:
    """Calls the producer's threads have written so far (audit events alone do not
    count: a process that ran none of the program's code leaves no row)."""
    return sum(t.calls for t in producer.reader.threads())


#: the event that says how far behind the service was with a process (``scope status``)
LAG_EVENT = "service lag"


def _service_events(producer: Producer, time_ns: int) -> list[Event]:
    """What the service itself has to say of a process it stored: how many records
    waited for it (median and 99th percentile over the batches it drained),
    and whether it took the process over from a service that stopped."""
    events = []
    if producer.waiting:
        waiting = sorted(producer.waiting)
        p50 = waiting[len(waiting) // 2]
        p99 = waiting[min(len(waiting) - 1, len(waiting) * 99 // 100)]
        detail = f"records waiting: p50 {p50}, p99 {p99}, over {len(waiting)} batches"
        events.append(Event(time_ns, LAG_EVENT, detail, 0))
    if producer.taken_over:
        detail = (
            f"process {producer.pid} was taken over from a recording service that stopped "
            "before storing all of it"
        )
        events.append(Event(time_ns, "recovered", detail, 0))
    return events


def _file_identity(path: str) -> tuple[int, ...] | None:
    """What changes if anyone else writes or replaces the file at ``path``."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _in_run(call: int, number: int) -> int:
    """A call id as the producer numbered it, as its run does: with the number of
    its process in the high bits (the rings' records get them in C, ``set_process``)."""
    return call | number << native.PROCESS_SHIFT if call else 0


def _event(fields: Any, number: int) -> Event:
    """An event as the log of process ``number`` carries it: [time_ns, kind, detail, call]."""
    time_ns, kind, detail, call = fields
    return Event(int(time_ns), str(kind), str(detail), _in_run(int(call), number))


def _test_phase(fields: dict[str, Any], number: int) -> TestPhase:
    """A test phase as the log of process ``number`` carries it."""
    phase = TestPhase(**fields)
    return replace(
        phase, call=_in_run(phase.call, number), raised_in=_in_run(phase.raised_in, number)
    )


def _how_it_ended(process: native.ProcessInfo, end: dict[str, Any]) -> tuple[str, int | None]:
    """(ended by, exit status as a shell sees it) from what the producer said, its
    header, or the kernel's word on a zombie (``how``: a ``wait`` status)."""
    if "ended_by" in end:
        status = end.get("exit_status")
        if status is None and process.state == native.lib.SCOPE_PROCESS_EXITED:
            status = process.exit_status if process.exit_status >= 0 else None  # from exit()
        return str(end["ended_by"]), None if status is None else int(str(status))
    if process.ended_by != "killed":
        return process.ended_by, process.exit_status if process.exit_status >= 0 else None
    how = end.get("how")
    if isinstance(how, int):
        if os.WIFSIGNALED(how):
            signal_number = os.WTERMSIG(how)
            return _signal_name(signal_number), 128 + signal_number
        if os.WIFEXITED(how):
            return "exit", os.WEXITSTATUS(how)
    return "killed", None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _ring_stats(threads: list[native.ThreadInfo], process: native.ProcessInfo) -> native.RingStats:
    """The run's ring counters, from its threads' ring headers."""
    return native.RingStats(
        produced=sum(t.produced for t in threads),
        dropped=sum(t.dropped for t in threads) + process.setup_failures,
        drained=sum(t.drained for t in threads),
        pending=0,
        held=0,
        high_water=max((t.high_water for t in threads), default=0),
        blocked_ns=sum(t.blocked_ns for t in threads),
        stack_overflow=sum(t.stack_overflow for t in threads),
        unmatched_exits=sum(t.unmatched_exits for t in threads),
        values_lost=sum(t.values_lost for t in threads),
        unfinished=process.unfinished,
        threads_seen=len(threads),
        threads_live=0,
        unshared=process.unshared,
    )


def _finish_child(
    writer: RecordingWriter,
    producer: Producer,
    threads: list[native.ThreadInfo],
    rings: native.RingStats,
    exit_status: int | None,
    ended_by: str,
    problems: list[str],
    events: list[Event],
) -> None:
    """Close a child process's rows, and add its counters to its run's."""
    con, run = writer.con, writer.run_id
    end_ns = producer.reader.process().end_ns or native.now_ns()
    con.execute("BEGIN")
    writer.store_threads(threads)
    writer._store_events([*events, Event(end_ns, "end", ended_by)])
    con.execute(
        "UPDATE process SET end_ns = ?, exit_status = ?, ended_by = ? WHERE run = ? AND pid = ?",
        [end_ns, exit_status, ended_by, run, producer.pid],
    )
    writer.store_summed()
    # The run's totals so far: a child ending after its top process adds to them.
    con.execute(
        """UPDATE run SET events_captured = coalesce(events_captured, 0) + ?,
               events_dropped = coalesce(events_dropped, 0) + ?,
               problems = list_concat(coalesce(problems, []), ?),
               events_stored = ?, calls_stored = ?, calls_unfinished = ?, calls_summed = ?
           WHERE id = ?""",
        [
            rings.produced + rings.dropped,
            rings.dropped,
            problems,
            writer.records_stored,
            writer.calls_stored,
            writer.calls_unfinished,
            writer.calls_summed,
            run,
        ],
    )
    con.execute("COMMIT")


def _same_user(connection: socket.socket) -> bool:
    """Whether the peer of a connection runs as this process's user (SO_PEERCRED)."""
    try:
        credentials = connection.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
        )
    except OSError:
        return False
    _, uid, _ = struct.unpack("3i", credentials)
    return bool(uid == os.getuid())


def _take_lock(path: str) -> int:
    """Hold the service lock of a recording, once no other process holds it.

    A service is started only when none answered, so one that holds the lock is
    leaving (it has stopped listening): this one waits for it to go, and then
    stores whatever came meanwhile.  A service that leaves removes the lock file
    while it still holds it: the lock taken is good only if the file locked is
    still the one at ``path``.
    """
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        held = os.fstat(descriptor)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(descriptor)  # removed by a service leaving: lock the new file
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())  # who stores the recording now
    return descriptor


def main(argv: list[str] | None = None) -> int:
    """``python -m scope.service DB``: store what is recorded into DB until nothing is."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m scope.service RECORDING\n")
        return 2
    db = os.path.abspath(args[0])
    try:
        # Its recording's folder: DuckDB is given a path from there where the
        # absolute one is not UTF-8 (``database.duckdb_path``).
        with contextlib.suppress(OSError):  # gone: the service finds nothing to do
            os.chdir(os.path.dirname(db))
        return Service(db).serve()
    except Exception as exc:  # said in the service's log, where producers point
        _say(f"{type(exc).__name__}: {exc}")
        return 1

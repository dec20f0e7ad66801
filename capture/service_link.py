"""This process's side of the recording service (``scope.storage.service``).

A producer keeps its rings in files of a folder of its own in the recording's
live folder and appends everything else it learns to a log there (functions as
they are planned, events, test phases), opening the file for each record: it
holds no descriptor of scope's while the program runs, so a program that
closes every descriptor it did not open harms nothing.  It talks to the
service twice, over a connection opened for the purpose: to say hello (the
run's first process starts the service if none answers) and, once the program
has ended, to ask it to store the rest and wait for its answer.
"""

from __future__ import annotations

import base64
import marshal
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from scope import live, native
from scope.errors import NotARecording, RecordingError, RecordingInUse

#: seconds to wait for a service to take a connection (it may be starting)
CONNECT_TIMEOUT = 10.0


class ServiceLink:
    """One recorded process's folder, log and requests to its recording's service."""

    def __init__(
        self,
        db: str,
        run_key: str,
        top: bool,
        info: dict[str, Any],
        audit: Sequence[str],
        retain_runs: int = 0,
    ) -> None:
        self.db = os.path.abspath(db)
        self.run_key = run_key
        self.top = top
        self.info = info
        self.audit = tuple(audit)
        #: runs the recording keeps once this run closes (0: every run)
        self.retain_runs = retain_runs
        self.folder: str | None = None
        #: records the log could not take (a full disk)
        self.lost_records = 0
        #: why the service did not confirm the end (``finish``), if it did not
        self.failure: str | None = None
        #: whether the last request found no service to connect to
        self._unreachable = False
        #: the service running is another scope's, which cannot read this one's rings
        self.foreign = False
        #: when this process began to record (a refusal from before is not about it)
        self._began = time.time()

    def start(self) -> None:
        """Make the folder, share the rings, and make sure a service stores them.

        Raises ``OSError`` if the folder or the rings' header cannot be made, and
        ``RecordingError`` for a recording path that can be none (what the service
        alone could tell, a DuckDB file that is not a recording, it says at the end).
        """
        refuse_unusable(self.db)
        pid = os.getpid()
        self.folder = live.make_process_folder(
            self.db,
            0,
            pid,
            run_key=self.run_key,
            top=self.top,
            info=self.info,
            audit=self.audit,
            retain_runs=self.retain_runs,
        )
        try:
            native.share_rings(self.folder, int(self.info.get("parent_pid") or 0))
        except OSError:
            live.remove_process_folder(self.folder)
            self.folder = None
            raise
        native.unfinished_into_rings(True)
        hello = self._request({"op": "hello"}, timeout=0)  # one try: none is running
        if hello is not None and hello.get("format") != native.SHARED_FORMAT:
            # Another scope's service (an upgrade while it lingers): ours waits for it to
            # leave, then stores this process; nothing can confirm that before it ends.
            self.foreign = True
        if hello is None or self.foreign:
            start_service(self.db)
        if self.top and _has_content(self.db) and not self.foreign:
            self._check()

    def _check(self) -> None:
        """Raise ``RecordingError`` if the service cannot store into the file (one
        that is not a recording), before the program runs: as without the service."""
        answer = self._request({"op": "check"}, timeout=None)
        if answer is not None:
            refused = (
                None if answer.get("ok") else (str(answer.get("code")), str(answer.get("error")))
            )
        else:  # the service left as it refused, or died: the end says what was lost
            refused = self._refused()
        if refused is None or refused[0] == RecordingInUse.code:
            return  # a file held by a query: the records wait in the rings
        native.stop_sharing(remove=True)
        assert self.folder is not None
        live.remove_process_folder(self.folder)
        self.folder = None
        code, why = refused
        raise (NotARecording if code == NotARecording.code else RecordingError)(why)

    def _log(self, record: dict[str, object]) -> None:
        if self.folder is None or not live.append_log(self.folder, record):
            self.lost_records += 1

    def add_plan(self, plan: object) -> None:
        """Describe a module's functions to the service (a ``PackedPlan``)."""
        packed = plan if isinstance(plan, bytes) else marshal.dumps(plan.to_data())  # type: ignore[attr-defined]
        self._log({"plan": base64.b64encode(packed).decode()})

    def add_test_phases(self, phases: Sequence[Any]) -> None:
        """Test phases for the ``test`` table (``TestPhase`` objects)."""
        self._log({"tests": [asdict(phase) for phase in phases]})

    def discard_calls_under(self, roots: Sequence[int]) -> None:
        """Ask the service to drop every call made under these root calls."""
        self._log({"discard": list(roots)})

    def event(self, time_ns: int, kind: str, detail: str, call: int) -> None:
        """Something that happened besides calls, for the ``event`` table."""
        self._log({"event": [time_ns, kind, detail, call]})

    def finish(
        self,
        ended_by: str,
        exit_status: int | None,
        problems: Sequence[str],
        thread_names: dict[str, str],
        wait: bool = True,
        final: bool = True,
    ) -> dict[str, object] | None:
        """Say how the process ended, and wait until the service has stored it all.

        Returns the service's answer (``run``, ``calls``), or None if no service
        answered: the folder then stays for the next one, which stores it.  With
        ``wait`` false it returns at once (``{"ok": True}``): the service finds the
        end in the log.  A child process is not ``final``: its exit status comes
        after this (the C library's exit writes it into the process header, kept
        mapped for it), and the service finishes it once the process is gone.
        """
        if self.folder is None:
            return None
        end: dict[str, object] = {
            "ended_by": ended_by,
            "exit_status": exit_status,
            "problems": list(problems),
            "thread_names": thread_names,
            "final": final,
        }
        self._log({"end": end})
        native.note_process_end(ended_by, exit_status)
        if not final:
            native.note_exit_status(None)
            return {"ok": True}
        if self.foreign:
            native.stop_sharing(remove=False)
            self.failure = (
                "a recording service of another scope version holds the recording; "
                "this one's stores it once that one has left"
            )
            return None
        if not wait:
            native.stop_sharing(remove=False)
            if self._request({"op": "hello"}, timeout=0.2) is None:
                start_service(self.db)  # one must store the rest
            return {"ok": True}
        message: dict[str, object] = {"op": "ended", "folder": self.folder, "end": end}
        answer = self._request(message, timeout=0.5)
        for _ in range(3):
            # No service (it was killed, or left, perhaps as it answered): a new one
            # stores the rest.  One that refused the recording is not asked again:
            # the next one would too.
            if answer is not None or self.refusal() is not None:
                break
            start_service(self.db)
            answer = self._request(message, timeout=None)
            if self._unreachable:
                break  # none came in CONNECT_TIMEOUT: none will
        native.stop_sharing(remove=False)
        if answer is None:
            self.failure = "no recording service answered"
            return None
        if not answer.get("ok"):
            self.failure = f"the recording service said: {answer.get('error')}"
            return None
        return answer

    def refusal(self) -> str | None:
        """Why the service said it cannot store the recording, if it said so."""
        refused = self._refused()
        return None if refused is None else refused[1]

    def _refused(self) -> tuple[str, str] | None:
        """The service's refusal: the error's code and message."""
        try:
            with open(os.path.join(live.live_root(self.db), live.REFUSAL)) as f:
                code, _, why = f.read(2000).partition("\n")
        except OSError:
            return None
        return (code, why.strip()) if why.strip() else None

    def _refused_lately(self) -> bool:
        """Whether a service has refused the recording since this process began."""
        try:
            written = os.stat(os.path.join(live.live_root(self.db), live.REFUSAL)).st_mtime
        except OSError:
            return False
        return written >= self._began

    def _request(
        self, message: dict[str, object], timeout: float | None
    ) -> dict[str, object] | None:
        """Send one request on a new connection; the answer, or None if none came.

        With ``timeout`` None, connecting waits up to ``CONNECT_TIMEOUT`` for a
        service that is starting, and the answer as long as the service lives.
        """
        path = live.service_socket(self.db)
        deadline = time.monotonic() + (CONNECT_TIMEOUT if timeout is None else timeout)
        self._unreachable = False
        while True:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with live.socket_address(path) as address:
                    connection.connect(address)
                break
            except OSError:
                connection.close()
                # A service that refused the recording since this process began has
                # left: none will answer.
                if time.monotonic() >= deadline or self._refused_lately():
                    self._unreachable = True
                    return None
                time.sleep(0.01)
        try:
            with connection, connection.makefile("rb") as stream:
                live.send(connection, message)
                return live.receive(stream)
        except OSError:
            return None


def _has_content(path: str) -> bool:
    """Whether the service must look at ``path`` before a run: a file with something
    in it, or a link (an empty plain file is made into the recording)."""
    try:
        return os.path.islink(path) or os.path.getsize(path) > 0
    except OSError:
        return False


#: where a DuckDB file says it is one (its header's magic bytes)
_DUCKDB_MAGIC = (8, b"DUCK")


def refuse_unusable(db: str) -> None:
    """Raise ``RecordingError`` if ``db`` is a folder, or a file that is not DuckDB's."""
    if os.path.isdir(db):
        raise RecordingError(f"cannot write recording {db}: it is a directory")
    if os.path.exists(db) and not os.path.isfile(db):  # a fifo: opening it would block
        raise RecordingError(f"cannot write recording {db}: it is not a regular file")
    try:
        with open(db, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RecordingError(f"cannot open recording {db}: {exc.strerror}") from None
    offset, magic = _DUCKDB_MAGIC
    if head and head[offset : offset + len(magic)] != magic:
        raise NotARecording(f"{db} is not a scope recording (not a DuckDB file)")


def start_service(db: str) -> None:
    """Start ``db``'s recording service, detached: not a child this program could wait for.

    ``sh`` starts it in the background and exits at once, so the service's
    parent is gone before the program runs; its errors go to the live folder's
    ``service.log``.
    """
    environment = {k: v for k, v in os.environ.items() if k != "SCOPE_CHILD_OF"}
    log = os.path.join(live.live_root(db), live.SERVICE_LOG)
    # Whatever goes wrong here goes to /dev/null, not to the program's stderr.
    script = '{ exec "$0" -m scope.service "$1" </dev/null >/dev/null 2>>"$2" & } 2>/dev/null'
    subprocess.run(
        ["/bin/sh", "-c", script, sys.executable, db, log],
        env=environment,
        start_new_session=True,
        close_fds=True,
        check=False,
    )

"""The live folder of a recording: where recorded processes keep their rings as files.

A recording ``<db>`` has a live folder ``<db>.live`` (0700), and each process
recording into it has a folder of its own there, ``<pid>-<random>`` (0700),
holding its ring files and process header (``native/scope_shared.h``) and
``run.json``: which recording and run the records belong to.  The folder goes
once everything in it is stored.  A folder left behind belongs to a process that
was killed, or whose storing failed; it still holds every record the process
published that was not stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:  # loaded by what talks to a service: a query without one never does
    import socket

#: the file of a process's folder that says what its records belong to
RUN_FILE = "run.json"


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat from the third on (after the command's name)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
    except OSError:
        return None
    return stat_line[stat_line.rfind(b")") + 2 :].split()


def exit_code(pid: int) -> int | None:
    """How process ``pid`` ended, as ``wait`` would say, while it is a zombie; else None.

    The kernel shows it (field 52 of /proc/<pid>/stat) until the process's parent
    reaps it: whoever is not the parent can still learn a signal's number this way.
    A main thread that ended by itself (``pthread_exit``) is a zombie too while
    the process's other threads run on (field 20 counts them): not ended.
    """
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 50 or fields[0] != b"Z" or int(fields[17]) > 1:
        return None
    return int(fields[49])


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if there is none.

    With the pid, it names one process: a pid can be reused, a start time with it cannot.
    """
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def live_root(db: str) -> str:
    """The live folder of recording ``db``."""
    return os.path.abspath(db) + ".live"


def _private_folder(path: str) -> None:
    """Make ``path`` a folder only this user can enter; raise ``OSError`` if it cannot be."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError(f"{path} is not a folder of this user's")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


def make_recording_folder(db: str) -> None:
    """Make the folder the recording ``db`` goes in, if it is not there: one only
    this user can enter (0700, as ssh and gpg keep theirs), for recordings hold
    arguments and values.  A folder that exists keeps its permissions."""
    os.makedirs(os.path.dirname(os.path.abspath(db)), mode=0o700, exist_ok=True)


def make_process_folder(db: str, run: int, pid: int, **more: object) -> str:
    """Create this process's folder in ``db``'s live folder; returns its path.

    Its ``run.json`` says which run it is (``run``: 0 when the recording service
    is to say) and holds ``more``.  Raises ``OSError`` if it cannot be made private.
    """
    root = live_root(db)
    make_recording_folder(db)
    for attempt in range(3):  # another process may remove the root as it empties
        _private_folder(root)
        try:
            folder = _new_folder(root, f"{pid}-")
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    note = {"db": os.path.abspath(db), "run": run, "pid": pid, "start": process_start(pid), **more}
    path = os.path.join(folder, RUN_FILE)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    descriptor = os.open(path + ".new", flags, 0o600)
    with os.fdopen(descriptor, "w") as f:
        json.dump(note, f)
    os.replace(path + ".new", path)  # whole or not there: a service may look at any time
    return folder


def read_note(folder: str, name: str = RUN_FILE) -> dict[str, Any] | None:
    """A process folder's ``run.json`` (or file ``name``), or None if it has none that
    is a JSON object."""
    try:
        with open(os.path.join(folder, name)) as f:
            note = json.load(f)
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


def service_running(db: str) -> bool:
    """Whether a recording service holds ``db``'s service lock (it is storing, or
    about to leave)."""
    return lock_held(os.path.join(live_root(db), LOCK))


def lock_held(path: str) -> bool:
    """Whether a process holds the ``flock`` of the file at ``path``."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(descriptor)
    return False


def producer_running(db: str) -> bool:
    """Whether a process recording into ``db`` is alive (a folder of its own in the
    live folder names it): its recording may not be in the file yet, but will be."""
    root = live_root(db)
    try:
        names = os.listdir(root)
    except OSError:
        return False
    for name in names:
        note = read_note(os.path.join(root, name))
        if note is None:
            continue
        try:
            pid, start = int(note["pid"]), note.get("start")
        except (KeyError, TypeError, ValueError):
            continue
        if start is not None and process_start(pid) == start:
            return True
    return False


#: the file of a process's folder where its recording service notes the run and
#: process number it gave it, and how far it has stored the log
ASSIGNED = "assigned.json"


def read_assignment(folder: str) -> dict[str, int] | None:
    """What a service gave a process folder (``run``, ``number``, ``log``), if it did."""
    note = read_note(folder, ASSIGNED)
    if note is None:
        return None
    try:
        return {key: int(note[key]) for key in ("run", "number", "log")}
    except (KeyError, TypeError, ValueError):
        return None


def write_assignment(folder: str, run: int, number: int, log: int) -> None:
    """Note what the service gave a process folder (replaced whole: never half-written)."""
    path = os.path.join(folder, ASSIGNED)
    temporary = path + ".new"
    with open(temporary, "w") as f:
        json.dump({"run": run, "number": number, "log": log}, f)
    os.replace(temporary, path)


def _new_folder(root: str, prefix: str) -> str:
    """A new folder (0700) in ``root`` whose name starts with ``prefix``: what
    ``tempfile.mkdtemp`` makes, without importing tempfile and random into every
    recorded process."""
    while True:
        path = os.path.join(root, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def remove_process_folder(folder: str) -> None:
    """Remove a process's folder, and the live folder once it is empty."""
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:  # files only, as scope makes them
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
    try:
        os.rmdir(folder)
    except FileNotFoundError:
        pass
    except OSError:  # something else was put in it
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(folder))


# ---- The recording service's side of the live folder ----

#: the service's socket, and the lock held by the one service of a recording
SOCKET = "service.sock"
LOCK = "service.lock"
#: where the service writes what goes wrong with it
SERVICE_LOG = "service.log"
#: why the service could not open the recording, for its producers to say
REFUSAL = "service.refused"
#: the file of a process's folder its producer appends records to (JSON lines)
LOG = "log"


def service_socket(db: str) -> str:
    """The path of ``db``'s recording service's socket."""
    return os.path.join(live_root(db), SOCKET)


#: the longest path a Unix socket address holds (sun_path, less its terminator)
_SOCKET_PATH_MAX = 107


@contextlib.contextmanager
def socket_address(path: str) -> Iterator[str]:
    """An address for the Unix socket at ``path`` that fits in ``sun_path``.

    A longer path is reached through a descriptor of its folder, held only
    while the address is in use (``/proc/self/fd/N/NAME``).
    """
    if len(os.fsencode(path)) <= _SOCKET_PATH_MAX:
        yield path
        return
    folder = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{folder}/{os.path.basename(path)}"
    finally:
        os.close(folder)


def append_log(folder: str, record: dict[str, object]) -> bool:
    """Append ``record`` as one JSON line to the process's log; False if it could not be.

    Opened and closed each time: the program may close any descriptor it did not
    open, and may be given the number of one scope kept.
    """
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        descriptor = os.open(os.path.join(folder, LOG), flags, 0o600)
    except OSError:
        return False
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(descriptor, view) :]
        return True
    except OSError:
        return False
    finally:
        os.close(descriptor)


class LogReader:
    """Reads the records a producer appended since the last read (complete lines only)."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, LOG)
        self.offset = 0
        #: lines that were not JSON objects (a write cut short by a full disk)
        self.damaged = 0

    def read(self) -> list[dict[str, Any]]:
        """The complete records appended since the last call."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        records = []
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                self.damaged += 1
        return records


def ask_service(db: str, message: dict[str, object]) -> dict[str, object] | None:
    """Send ``message`` to ``db``'s recording service if one is listening, and wait
    for its answer; None if none is listening or it did not answer."""
    import socket

    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with connection, socket_address(service_socket(db)) as address:
            connection.connect(address)
            with connection.makefile("rb") as stream:
                send(connection, message)
                return receive(stream)
    except OSError:
        return None


def send(connection: socket.socket, message: dict[str, object]) -> None:
    """Send one message (a JSON line) on a service connection."""
    connection.sendall((json.dumps(message, separators=(",", ":")) + "\n").encode())


def receive(stream: BinaryIO) -> dict[str, object] | None:
    """The next message on a connection's stream, or None at its end."""
    line = stream.readline(1 << 20)
    if not line.endswith(b"\n"):
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None

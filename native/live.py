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
import json
import os
import shutil
import stat
import tempfile

#: the file of a process's folder that says what its records belong to
RUN_FILE = "run.json"


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if there is none.

    With the pid, it names one process: a pid can be reused, a start time with it cannot.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
    except OSError:
        return None
    fields = stat_line[stat_line.rfind(b")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None


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


def make_process_folder(db: str, run: int, pid: int) -> str:
    """Create this process's folder in ``db``'s live folder; returns its path.

    Raises ``OSError`` if it cannot be made private.
    """
    root = live_root(db)
    for attempt in range(3):  # another process may remove the root as it empties
        _private_folder(root)
        try:
            folder = tempfile.mkdtemp(prefix=f"{pid}-", dir=root)  # 0700, a new name
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    note = {"db": os.path.abspath(db), "run": run, "pid": pid, "start": process_start(pid)}
    path = os.path.join(folder, RUN_FILE)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "w") as f:
        json.dump(note, f)
    return folder


def remove_process_folder(folder: str) -> None:
    """Remove a process's folder, and the live folder once it is empty."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(folder))

"""The cache of rewritten code: instrumenting a module once, not on every run.

Analysing a module takes libcst, whose import alone costs about 80 ms, and
rewriting it about as much again for a few hundred lines.  The result, the
module's plan and its instrumented code object, is kept in scope's own folder,
``.scope/cache`` of the project by default (the ``cache_dir`` setting), never
beside the module's ``.pyc``: plain ``python`` never runs instrumented code, and
the cache works where Python's own bytecode cache is off
(``PYTHONDONTWRITEBYTECODE``, common in container images, or ``python -B``).

An entry is valid only for the exact source and the exact settings that made
it.  Its name holds a key of the settings (scope's version, the rewriter's
revision, module name, path, the plan settings' digest, the optimisation level,
the interpreter's cache tag), so entries made under other settings live side by
side; its header holds the key again, then the source's size, modification time
and hash (SipHash, as hash-based ``.pyc`` files use).  When size and
modification time (in nanoseconds) match, the entry is used without reading the
source, as CPython trusts a timestamp ``.pyc``; when they do not (a checkout
touched the file), the source's hash decides.  Anything else (another key or
hash, a torn or corrupt file, another format) is ignored and the module is
instrumented afresh.  Entries are written to a temporary file and renamed into
place, so processes importing at once never read half an entry.

The folder is bounded (``cache_max_mb``): when a store takes it past the bound,
the entries used longest ago go first, down to four fifths of it.  Using an
entry refreshes its time at most once an hour, so that a warm import costs no
extra write.
"""

from __future__ import annotations

import contextlib
import importlib.util
import marshal
import os
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType

from scope.instrument.plan import ModulePlan, PlanSettings, blake2b
from scope.instrument.rewrite import REWRITE_REVISION

from scope import __version__

MAGIC = b"SCOPEPYC\x04"
_KEY_BYTES = 16
#: after the magic and the key: source size, source mtime in ns, source hash
_SOURCE_FIELDS = struct.Struct("<qq8s")
_HEADER_BYTES = len(MAGIC) + _KEY_BYTES + _SOURCE_FIELDS.size
ENTRY_SUFFIX = ".scope.pyc"
#: a used entry's time is refreshed when it is older than this (for trimming)
_REFRESH_NS = 3600 * 10**9
#: trimming removes entries until the folder holds at most this share of its bound
_TRIM_TO = 0.8


@dataclass(frozen=True)
class SourceFacts:
    """What an entry remembers of the source it was made from."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str) -> SourceFacts | None:
        """The facts of the file at ``path`` now (None if it cannot be read)."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_size, st.st_mtime_ns)


def entry_key(module: str, path: str, settings: PlanSettings) -> bytes:
    """The settings an entry must have been made with to be used."""
    made_from = repr(
        (
            __version__,
            REWRITE_REVISION,
            module,
            path,
            settings.digest(),
            sys.flags.optimize,
            sys.implementation.cache_tag,
        )
    ).encode()
    return blake2b(made_from, digest_size=_KEY_BYTES).digest()


@dataclass(frozen=True)
class CacheSummary:
    """What a cache folder holds: ``scope cache info`` and ``scope cache clear`` say it."""

    folder: str
    entries: int
    size: int


def _entries(folder: str) -> list[tuple[int, int, str]]:
    """(modification time in ns, size, path) of each entry in ``folder`` (none if it is missing)."""
    found = []
    try:
        scan = os.scandir(folder)
    except OSError:
        return []
    with scan:
        for entry in scan:
            if not entry.name.endswith((ENTRY_SUFFIX, ".tmp")):
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    found.append((st.st_mtime_ns, st.st_size, entry.path))
            except OSError:  # removed meanwhile by another process
                continue
    return found


def summarize(folder: str) -> CacheSummary:
    """How many entries ``folder`` holds, and their size in bytes."""
    found = [e for e in _entries(folder) if e[2].endswith(ENTRY_SUFFIX)]
    return CacheSummary(folder, len(found), sum(size for _, size, _ in found))


def clear(folder: str) -> CacheSummary:
    """Remove every entry (and leftover temporary file) in ``folder``; what was removed.

    Other files are left alone: the folder may be one the user named.
    """
    removed, size = 0, 0
    for _, entry_size, path in _entries(folder):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            if path.endswith(ENTRY_SUFFIX):
                removed, size = removed + 1, size + entry_size
    return CacheSummary(folder, removed, size)


class CodeCache:
    """One folder of cache entries, kept under ``max_bytes``.

    ``folder`` None (or a bound of 0) keeps nothing: every module is
    instrumented afresh.  Failing to read or write the folder is never an error:
    a miss, and the next run instruments the module again.
    """

    def __init__(self, folder: str | None, max_bytes: int) -> None:
        self.folder = folder if max_bytes > 0 else None
        self.max_bytes = max_bytes
        #: the folder's size as this process last saw it plus what it stored since
        self._estimated_size: int | None = None

    def entry_path(self, source_path: str, key: bytes) -> str | None:
        """Where the entry of ``source_path`` made with ``key`` lives (None: no cache)."""
        if self.folder is None:
            return None
        stem = os.path.splitext(os.path.basename(source_path))[0]
        return os.path.join(self.folder, f"{stem}-{key.hex()}{ENTRY_SUFFIX}")

    def load(
        self,
        source_path: str,
        key: bytes,
        facts: SourceFacts | None,
        read_source: Callable[[], bytes],
    ) -> tuple[bytes, CodeType] | None:
        """The cached plan (packed: see ``PackedPlan``) and code, or None if no entry is valid.

        ``read_source`` is called only if the source's size or time changed since
        the entry was made, to compare hashes.
        """
        path = self.entry_path(source_path, key)
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                data = f.read()
                used_ns = os.fstat(f.fileno()).st_mtime_ns
        except OSError:
            return None
        if data[: len(MAGIC)] != MAGIC or data[len(MAGIC) : len(MAGIC) + _KEY_BYTES] != key:
            return None
        try:
            size, mtime_ns, source_hash = _SOURCE_FIELDS.unpack_from(data, len(MAGIC) + _KEY_BYTES)
            changed = facts != SourceFacts(size, mtime_ns)
            if changed and importlib.util.source_hash(read_source()) != source_hash:
                return None
            code, packed_plan = marshal.loads(data[_HEADER_BYTES:])
        except Exception:  # a corrupt entry, or a source that cannot be read: a miss
            return None
        if not isinstance(code, CodeType) or not isinstance(packed_plan, bytes):
            return None
        self._refresh(path, used_ns)
        return packed_plan, code

    def store(
        self,
        source_path: str,
        key: bytes,
        made_from: tuple[SourceFacts | None, bytes],
        plan: ModulePlan,
        code: CodeType,
    ) -> None:
        """Keep ``plan`` and ``code``, made from ``made_from`` (facts, source), for the next run."""
        path = self.entry_path(source_path, key)
        facts, source = made_from
        if path is None or facts is None:
            return
        header = _SOURCE_FIELDS.pack(facts.size, facts.mtime_ns, importlib.util.source_hash(source))
        # The plan is marshalled on its own, so a warm import copies it without decoding.
        packed_plan = marshal.dumps(plan.to_data())
        data = MAGIC + key + header + marshal.dumps((code, packed_plan))
        if len(data) > self.max_bytes * _TRIM_TO:
            return  # it would push out everything else and then itself
        if self._estimated_size is None:
            self._trim()
        temporary = f"{path}.{os.getpid()}.tmp"
        try:
            _make_folder(os.path.dirname(path))
            with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(data)
            os.replace(temporary, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            return
        self._estimated_size = (self._estimated_size or 0) + len(data)
        if self._estimated_size > self.max_bytes:
            self._trim()

    def _refresh(self, path: str, used_ns: int) -> None:
        """Mark the entry at ``path`` as used now, unless it was within the hour."""
        if self.folder is None:
            return
        now_ns = time.time_ns()
        if now_ns - used_ns > _REFRESH_NS:
            with contextlib.suppress(OSError):
                os.utime(path, ns=(now_ns, now_ns))

    def _trim(self) -> None:
        """Remove the entries used longest ago until the folder is within its bound."""
        if self.folder is None:
            return
        found = _entries(self.folder)
        size = sum(entry_size for _, entry_size, _ in found)
        if size > self.max_bytes:
            found.sort()
            goal = self.max_bytes * _TRIM_TO
            for _, entry_size, path in found:
                if size <= goal:
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                size -= entry_size
        self._estimated_size = size


def _make_folder(folder: str) -> None:
    """Make ``folder`` (and the ``.scope`` above it) readable by its owner only."""
    if os.path.isdir(folder):
        return
    os.makedirs(os.path.dirname(folder), mode=0o700, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)

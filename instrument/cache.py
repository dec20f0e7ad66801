"""The cache of rewritten code: instrumenting a module once, not on every run.

Analysing a module takes libcst, whose import alone costs about 80 ms, and
rewriting it about as much again for a few hundred lines.  The result, the
module's plan and its instrumented code object, is kept next to the module's
normal bytecode, under the same ``__pycache__`` rules
(``importlib.util.cache_from_source``, so ``sys.pycache_prefix`` is honoured):
``mod.cpython-311.scope-<version>-<settings digest>.pyc`` beside
``mod.cpython-311.pyc`` (with ``.opt-N`` like it under ``-O``), never in its
place, so plain ``python`` never runs instrumented code.

An entry is valid only for the exact source and the exact settings that made
it.  Its header holds a key of the settings (scope's version, the rewriter's
revision, module name, path, the plan settings' digest, the optimisation
level), then the source's size, modification time and hash (SipHash, as
hash-based ``.pyc`` files use).
When size and modification time (in nanoseconds) match, the entry is used
without reading the source, as CPython trusts a timestamp ``.pyc``; when they
do not (a checkout touched the file), the source's hash decides.  Anything else
(another key or hash, a torn or corrupt file, another format) is ignored and
the module is instrumented afresh.  Entries are written to a temporary file and
renamed into place, so processes importing at once never read half an entry;
nothing is written when ``sys.dont_write_bytecode`` is set (``python -B``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import marshal
import os
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType

from scope.instrument.plan import ModulePlan, PlanSettings, blake2b
from scope.instrument.rewrite import REWRITE_REVISION

from scope import __version__

MAGIC = b"SCOPEPYC\x03"
_KEY_BYTES = 16
#: after the magic and the key: source size, source mtime in ns, source hash
_SOURCE_FIELDS = struct.Struct("<qq8s")
_HEADER_BYTES = len(MAGIC) + _KEY_BYTES + _SOURCE_FIELDS.size


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


def entry_path(source_path: str, settings: PlanSettings) -> str | None:
    """Where the cache entry of ``source_path`` for ``settings`` lives, or None if it has none.

    The name carries scope's version, the settings' digest and (through
    ``cache_from_source``) the optimisation level, so entries made under other
    settings stay valid side by side instead of replacing each other.
    """
    try:
        plain = importlib.util.cache_from_source(source_path)
    except (NotImplementedError, ValueError):  # no cache_tag, or a path it cannot use
        return None
    return f"{plain[: -len('.pyc')]}.scope-{__version__}-{settings.digest()}.pyc"


def entry_key(module: str, path: str, settings: PlanSettings) -> bytes:
    """The settings an entry must have been made with to be used."""
    made_from = repr(
        (__version__, REWRITE_REVISION, module, path, settings.digest(), sys.flags.optimize)
    ).encode()
    return blake2b(made_from, digest_size=_KEY_BYTES).digest()


def load(
    source_path: str,
    settings: PlanSettings,
    key: bytes,
    facts: SourceFacts | None,
    read_source: Callable[[], bytes],
) -> tuple[bytes, CodeType] | None:
    """The cached plan (packed: see ``PackedPlan``) and code, or None if no entry is valid.

    ``read_source`` is called only if the source's size or time changed since
    the entry was made, to compare hashes.
    """
    path = entry_path(source_path, settings)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
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
    return packed_plan, code


def store(
    source_path: str,
    settings: PlanSettings,
    key: bytes,
    made_from: tuple[SourceFacts | None, bytes],
    plan: ModulePlan,
    code: CodeType,
) -> None:
    """Keep ``plan`` and ``code``, made from ``made_from`` (facts, source), for the next run.

    Failing to is not an error: the next run instruments the module again.
    """
    path = entry_path(source_path, settings)
    facts, source = made_from
    if path is None or facts is None or sys.dont_write_bytecode:
        return
    header = _SOURCE_FIELDS.pack(facts.size, facts.mtime_ns, importlib.util.source_hash(source))
    # The plan is marshalled on its own, so a warm import copies it without decoding.
    packed_plan = marshal.dumps(plan.to_data())
    data = MAGIC + key + header + marshal.dumps((code, packed_plan))
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)

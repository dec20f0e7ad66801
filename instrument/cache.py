"""The cache of rewritten code: instrumenting a module once, not on every run.

Analysing a module takes libcst, whose import alone costs about 80 ms, and
rewriting it about as much again for a few hundred lines.  The result, the
module's plan and its instrumented code object, is kept next to the module's
normal bytecode, under the same ``__pycache__`` rules
(``importlib.util.cache_from_source``, so ``sys.pycache_prefix`` is honoured):
``mod.cpython-311.scope-<version>-<settings digest>.pyc`` beside
``mod.cpython-311.pyc`` (with ``.opt-N`` like it under ``-O``), never in its
place, so plain ``python`` never runs instrumented code.

An entry is valid only for the exact source bytes and the exact settings that
made it: its key is a hash of both (scope's version, module name, path, the
plan settings: levels, patterns and redaction, and the optimisation level).  Anything else (a
stale key, a torn or corrupt file, another format) is ignored and the module
is instrumented afresh.  Entries are written to a temporary file and renamed
into place, so processes importing at once never read half an entry; nothing
is written when ``sys.dont_write_bytecode`` is set (``python -B``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import marshal
import os
import pickle
import sys
from types import CodeType

from scope.instrument.plan import ModulePlan, PlanSettings

from scope import __version__

MAGIC = b"SCOPEPYC\x01"
_KEY_BYTES = 32


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


def entry_key(module: str, path: str, source: bytes, settings: PlanSettings) -> bytes:
    """What an entry must have been made from to be used."""
    h = hashlib.blake2b(digest_size=_KEY_BYTES)
    made_from = (__version__, module, path, settings, sys.flags.optimize)
    h.update(repr(made_from).encode())
    h.update(b"\0")
    h.update(source)
    return h.digest()


def load(
    source_path: str, settings: PlanSettings, key: bytes
) -> tuple[ModulePlan, CodeType] | None:
    """The cached plan and code for ``key``, or None if there is no valid entry."""
    path = entry_path(source_path, settings)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    header = len(MAGIC) + _KEY_BYTES
    if data[: len(MAGIC)] != MAGIC or data[len(MAGIC) : header] != key:
        return None
    try:
        code, plan_bytes = marshal.loads(data[header:])
        plan = pickle.loads(plan_bytes)
    except Exception:  # a corrupt entry is a cache miss
        return None
    if not isinstance(code, CodeType) or not isinstance(plan, ModulePlan):
        return None
    return plan, code


def store(
    source_path: str, settings: PlanSettings, key: bytes, plan: ModulePlan, code: CodeType
) -> None:
    """Keep ``plan`` and ``code`` for the next run; failing to is not an error."""
    path = entry_path(source_path, settings)
    if path is None or sys.dont_write_bytecode:
        return
    data = MAGIC + key + marshal.dumps((code, pickle.dumps(plan)))
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)

"""The interpreter scope runs in: which ones it supports, and how they differ.

Every difference between CPython versions that scope's Python code depends on is
named here once, as a field of ``PYBEHAVIOR`` (coverage.py's ``env.PYBEHAVIOR``
is the model); the C side keeps its own in ``native/compat.h``.  Code elsewhere
asks ``PYBEHAVIOR.joinable_threads``, never ``sys.version_info``.

``check`` refuses, in one line, an interpreter scope would misbehave in: a
free-threaded build (the recorder's C structures rely on the GIL, and loading its
extension there would turn the GIL back on behind the program's back), or a
version CI does not test.  ``SCOPE_UNTESTED_PYTHON=1`` lets an untested version
record anyway (3.14: native/compat.h is written for it and CI compiles it against
its headers, but no CI machine runs it); the run then says so among its problems.

This module imports nothing but the standard library: it runs before scope loads
its extension.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass

from scope.errors import ScopeError

#: the versions CI runs the whole test suite on (``.ci/run``): what scope supports
TESTED = ((3, 11), (3, 12), (3, 13))
#: versions native/compat.h compiles for but no test has run on
UNTESTED = ((3, 14),)
#: the variable that lets an untested version record
ALLOW_UNTESTED = "SCOPE_UNTESTED_PYTHON"

VERSION = sys.version_info[:2]


class UnsupportedInterpreter(ScopeError):
    """scope cannot record in this interpreter (the message says why, in one line)."""

    code = "interpreter"


@dataclass(frozen=True)
class Behavior:
    """How this interpreter differs from the others, where scope depends on it."""

    #: 3.11: list, set and dict comprehensions run in frames (and scopes) of their
    #: own; 3.12 inlines them (PEP 709), so a lambda inside one is qualified by the
    #: enclosing function alone (``f.<locals>.<lambda>``, not ``f.<locals>.<listcomp>...``)
    comprehension_scopes: bool
    #: 3.12+: ``os.fork`` warns (DeprecationWarning) when the process has other threads
    fork_warns_of_threads: bool
    #: 3.13+: ``Thread.start`` calls ``threading._start_joinable_thread(function,
    #: handle=, daemon=)``; before, ``threading._start_new_thread(function, args)``
    joinable_threads: bool
    #: before 3.13: ``runpy._get_code_from_file(run_name, fname)`` returns
    #: ``(code, fname)``; from 3.13 it takes ``fname`` alone and returns the code
    runpy_code_with_name: bool
    #: before 3.14: the interpreter gives ``__main__`` an empty ``__annotations__``
    #: dict; 3.14 (PEP 649) creates it only when the module annotates something
    main_annotations_dict: bool


PYBEHAVIOR = Behavior(
    comprehension_scopes=VERSION < (3, 12),
    fork_warns_of_threads=VERSION >= (3, 12),
    joinable_threads=VERSION >= (3, 13),
    runpy_code_with_name=VERSION < (3, 13),
    main_annotations_dict=VERSION < (3, 14),
)


def free_threaded() -> bool:
    """Whether this is a free-threaded build (3.13t and later)."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def implementation() -> str:
    """The interpreter's name as ``platform.python_implementation()`` says it
    (``CPython``), without importing ``platform`` into every recorded process."""
    name = sys.implementation.name
    return {"cpython": "CPython", "pypy": "PyPy", "ironpython": "IronPython"}.get(name, name)


def version_text() -> str:
    """The interpreter's version as ``platform.python_version()`` says it (``3.12.1``)."""
    return sys.version.split()[0]


def machine() -> str:
    """The machine as ``platform.platform()`` says it on Linux
    (``Linux-6.1.0-x86_64-with-glibc2.36``), without the subprocess and the scan of
    the executable it runs for that."""
    system = os.uname()
    text = f"{system.sysname}-{system.release}-{system.machine}"
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    name, _, number = libc.partition(" ")
    return f"{text}-with-{name}{number}" if number else text


def describe() -> str:
    """This interpreter in a few words: ``CPython 3.12.1``."""
    build = " (free-threaded)" if free_threaded() else ""
    return f"{implementation()} {version_text()}{build}"


def _supported_text() -> str:
    return ", ".join(f"{major}.{minor}" for major, minor in TESTED)


def check(environ: dict[str, str] | None = None) -> str | None:
    """Raise ``UnsupportedInterpreter`` unless scope can record here.

    Returns None on a tested interpreter, or a one-line notice to keep among the
    run's problems when an untested version is let through by ``ALLOW_UNTESTED``.
    """
    env = os.environ if environ is None else environ
    if implementation() != "CPython":
        raise UnsupportedInterpreter(
            f"scope records CPython only, not {describe()} (supported: {_supported_text()})"
        )
    if free_threaded():
        raise UnsupportedInterpreter(
            f"scope does not support free-threaded builds yet ({describe()}): "
            "use the default build of the same version"
        )
    if VERSION in TESTED:
        return None
    if VERSION in UNTESTED and env.get(ALLOW_UNTESTED) == "1":
        return f"{describe()} is not tested with scope; recorded because {ALLOW_UNTESTED}=1"
    hint = f"; {ALLOW_UNTESTED}=1 records anyway" if VERSION in UNTESTED else ""
    raise UnsupportedInterpreter(
        f"scope does not support {describe()} (supported: {_supported_text()}){hint}"
    )

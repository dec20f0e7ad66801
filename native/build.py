"""cffi build script for ``scope.native._native``.

setuptools runs it through ``cffi_modules`` in ``setup.py``; running it directly
(``python native/build.py``) builds the module in place for quick C iterations.
The C source is compiled into one extension that holds both cffi's bindings
(drain, statistics, configuration: called by writer threads, GIL released) and
the CPython ``METH_FASTCALL`` entry points that instrumented code calls.
"""

from __future__ import annotations

import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

HEADER = os.path.join(HERE, "scope_native.h")
C_SOURCES = (
    "scope_core.c",
    "scope_batch.c",
    "scope_reader.c",
    "py_parked.c",
    "py_stacks.c",
    "py_budget.c",
    "py_values.c",
    "py_entry.c",
    "py_threads.c",
    "py_process.c",
    "py_audit.c",
)


def header_declarations() -> str:
    """scope_native.h as cffi's cdef: the header without its include guard and includes."""
    with open(HEADER) as f:
        lines = f.read().splitlines()
    skipped = ("#ifndef SCOPE_NATIVE_H", "#define SCOPE_NATIVE_H", "#endif", "#include")
    return "\n".join(line for line in lines if not line.startswith(skipped))


def make_builder(relative: bool = True) -> FFI:
    """Describe the extension; paths are relative to the project root for setuptools."""
    base = "native" if relative else HERE
    builder = FFI()
    builder.cdef(header_declarations())
    builder.set_source(
        "scope.native._native",
        '#include "scope_native.h"',
        sources=[os.path.join(base, name) for name in C_SOURCES],
        include_dirs=[base],
        extra_compile_args=[
            "-O2",
            "-std=gnu11",
            "-Wall",
            "-Wno-unused-parameter",
            "-ftls-model=initial-exec",
        ],
        libraries=["pthread"],
        py_limited_api=False,
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    make_builder(relative=False).compile(tmpdir=os.path.dirname(HERE), verbose=True)

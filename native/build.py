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

CDEF = """
#define SCOPE_SLOT_SHIFT 40
#define SCOPE_ENTER 1
#define SCOPE_RETURN 2
#define SCOPE_RAISE 3
#define SCOPE_OVERFLOW_DROP 0
#define SCOPE_OVERFLOW_BLOCK 1

typedef struct {
    uint64_t call_id;
    uint64_t other_id;
    int64_t time_ns;
    uint64_t func_id;
    uint32_t depth;
    uint32_t kind;
} scope_record;

typedef struct {
    uint64_t produced;
    uint64_t dropped;
    uint64_t drained;
    uint64_t pending;
    uint64_t high_water;
    uint64_t blocked_ns;
    uint64_t stack_overflow;
    uint64_t unmatched_exits;
    uint64_t threads_seen;
    uint64_t threads_live;
} scope_stats;

typedef struct {
    uint32_t slot;
    int64_t native_id;
    uint64_t ident;
    int64_t start_ns;
    int64_t end_ns;
} scope_thread_info;

int scope_configure(uint64_t ring_records, int overflow, uint64_t block_timeout_ns,
                    uint32_t max_depth);
void scope_set_enabled(int enabled);
int scope_is_enabled(void);
size_t scope_drain(scope_record *out, size_t capacity);
void scope_get_stats(scope_stats *out);
size_t scope_get_threads(scope_thread_info *out, size_t capacity);
int64_t scope_now_ns(void);
void scope_after_fork_child(void);
void scope_emit_enter(uint64_t func_id);
void scope_emit_exit(uint64_t func_id, int raised);
int scope_install_entry_points(const char *module_name);
"""


def make_builder(relative: bool = True) -> FFI:
    """Describe the extension; paths are relative to the project root for setuptools."""
    base = "native" if relative else HERE
    builder = FFI()
    builder.cdef(CDEF)
    builder.set_source(
        "scope.native._native",
        '#include "scope_native.h"',
        sources=[os.path.join(base, "scope_native.c")],
        include_dirs=[base],
        extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wno-unused-parameter"],
        libraries=["pthread"],
        py_limited_api=False,
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    make_builder(relative=False).compile(tmpdir=os.path.dirname(HERE), verbose=True)

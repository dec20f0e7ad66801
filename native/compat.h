/* Every use scope makes of CPython's internals, and every API that differs
 * between the versions it supports, as one named shim each.
 *
 * Nothing else in native/ names a field of an interpreter structure or a
 * private function: a new CPython version is ported here, in one file.  Each
 * shim says which versions it serves and why it is needed; coverage.py's
 * ctracer/util.h is the model.  pythoncapi_compat.h would supply the
 * backfilled public functions below (Py_IsFinalizing, PyErr_GetRaisedException,
 * PyImport_AddModuleRef), but it is distributed only by copying it into a
 * project, and this project takes no copied code: the three are spelled out.
 *
 * Supported: CPython 3.11 to 3.14 with the GIL.  SCOPE_HAVE_FRAMES is 0 on
 * anything else (a free-threaded build, a version this file does not know);
 * the Python side then refuses to start (scope/interpreter.py), because
 * without frames generators, coroutines and tasks cannot be followed.
 */
#ifndef SCOPE_COMPAT_H
#define SCOPE_COMPAT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

#define SCOPE_PY_AT_LEAST(major, minor) (PY_VERSION_HEX >= (((major) << 24) | ((minor) << 16)))

/* ---- Interpreter frames: 3.11 to 3.14, builds with the GIL ----
 *
 * The recorder knows an open call by the address of its _PyInterpreterFrame
 * and walks `previous` links to find a call's callers (py_stacks.c).  The
 * struct is internal: it lives in pycore_frame.h up to 3.13 and in
 * pycore_interpframe_structs.h from 3.14.  Only `previous` and `owner` are
 * read, and a generator's frame is mapped to the generator that holds it. */
#if SCOPE_PY_AT_LEAST(3, 11) && !SCOPE_PY_AT_LEAST(3, 15) && !defined(Py_GIL_DISABLED)
#define SCOPE_HAVE_FRAMES 1
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#define SCOPE_DEFINED_BUILD_CORE 1
#endif
#if SCOPE_PY_AT_LEAST(3, 14)
#include "internal/pycore_interpframe_structs.h"
#else
#include "internal/pycore_frame.h"
#endif
#ifdef SCOPE_DEFINED_BUILD_CORE
#undef Py_BUILD_CORE
#undef SCOPE_DEFINED_BUILD_CORE
#endif
#else
#define SCOPE_HAVE_FRAMES 0
#endif

#if SCOPE_HAVE_FRAMES
/* The frame running on this thread.  3.11-3.12: through the thread's _PyCFrame;
 * 3.13 removed _PyCFrame and keeps the frame on the thread state itself. */
static inline const void *scope_current_frame(void) {
#if SCOPE_PY_AT_LEAST(3, 13)
    return PyThreadState_GET()->current_frame;
#else
    return PyThreadState_GET()->cframe->current_frame;
#endif
}

/* The frame below `frame` (its caller, or an entry frame of a C call in 3.12+). */
static inline const void *scope_frame_caller(const void *frame) {
    return ((const struct _PyInterpreterFrame *)frame)->previous;
}

/* The generator or coroutine object that owns `frame`, or NULL (borrowed).
 * The owner constant keeps its name and value (1) from 3.11 to 3.14; 3.14
 * renumbered the others (FRAME_OWNED_BY_INTERPRETER is new, CSTACK moved to 4),
 * so only this one is compared.  A generator's frame is embedded in the
 * generator object: 3.11-3.13 name the mapping _PyFrame_GetGenerator, 3.14
 * _PyGen_GetGeneratorFromFrame; both are the same offsetof, written here so that
 * 3.14's pycore_genobject.h (and what it pulls in) is not needed. */
static inline PyObject *scope_frame_generator(const void *frame) {
    const struct _PyInterpreterFrame *f = (const struct _PyInterpreterFrame *)frame;
    if (f->owner != FRAME_OWNED_BY_GENERATOR) return NULL;
    return (PyObject *)((char *)f - offsetof(PyGenObject, gi_iframe));
}

/* Whether `frame` runs a list, set or dict comprehension's own code object.
 * Only 3.11 gives comprehensions frames of their own; from 3.12 (PEP 709) they
 * are inlined into the function that contains them, so no frame is one. */
static inline int scope_frame_runs_comprehension(const void *frame) {
#if SCOPE_PY_AT_LEAST(3, 12)
    (void)frame;
    return 0;
#else
    PyObject *name = ((const struct _PyInterpreterFrame *)frame)->f_code->co_name;
    return PyUnicode_CompareWithASCIIString(name, "<listcomp>") == 0 ||
           PyUnicode_CompareWithASCIIString(name, "<setcomp>") == 0 ||
           PyUnicode_CompareWithASCIIString(name, "<dictcomp>") == 0;
#endif
}

/* run_at_bottom: the thread's frame chain and Python recursion depth, saved and
 * set so that code runs as if nothing were below it.  The counters were renamed
 * in 3.12 (recursion_* became py_recursion_*); the frame moved as above. */
typedef struct {
    const void *frame;
    int depth;
} scope_bottom;

static inline void scope_enter_bottom(scope_bottom *saved) {
    PyThreadState *ts = PyThreadState_GET();
#if SCOPE_PY_AT_LEAST(3, 12)
    saved->depth = ts->py_recursion_limit - ts->py_recursion_remaining;
    ts->py_recursion_remaining = ts->py_recursion_limit;
#else
    saved->depth = ts->recursion_limit - ts->recursion_remaining;
    ts->recursion_remaining = ts->recursion_limit;
#endif
#if SCOPE_PY_AT_LEAST(3, 13)
    saved->frame = ts->current_frame;
    ts->current_frame = NULL;
#else
    saved->frame = ts->cframe->current_frame;
    ts->cframe->current_frame = NULL;
#endif
}

static inline void scope_leave_bottom(const scope_bottom *saved) {
    PyThreadState *ts = PyThreadState_GET();
    struct _PyInterpreterFrame *frame = (struct _PyInterpreterFrame *)saved->frame;
#if SCOPE_PY_AT_LEAST(3, 13)
    ts->current_frame = frame;
#else
    ts->cframe->current_frame = frame;
#endif
#if SCOPE_PY_AT_LEAST(3, 12)
    ts->py_recursion_remaining = ts->py_recursion_limit - saved->depth;
#else
    ts->recursion_remaining = ts->recursion_limit - saved->depth;
#endif
}
#else
/* No frames: every caller checks SCOPE_HAVE_FRAMES (or a NULL frame) first. */
static inline const void *scope_current_frame(void) { return NULL; }
static inline const void *scope_frame_caller(const void *frame) {
    (void)frame;
    return NULL;
}
static inline PyObject *scope_frame_generator(const void *frame) {
    (void)frame;
    return NULL;
}
static inline int scope_frame_runs_comprehension(const void *frame) {
    (void)frame;
    return 0;
}
typedef struct {
    int unused;
} scope_bottom;
static inline void scope_enter_bottom(scope_bottom *saved) { (void)saved; }
static inline void scope_leave_bottom(const scope_bottom *saved) { (void)saved; }
#endif

/* ---- Integers ---- */

/* Reads a non-negative int below 2**64 without a conversion call.  The tagged
 * function id every entry point receives is 2 or 3 of CPython's 30-bit digits,
 * and the generic PyLong_AsUnsignedLongLong goes through _PyLong_AsByteArray,
 * which was half the cost of a recorded call on 3.11.  3.11 keeps the digit
 * count in ob_size; 3.12 changed the layout (PEP 683's lv_tag: digit count,
 * sign, and a compact form for one digit), read through PyUnstable_Long_IsCompact
 * and cpython/longintrepr.h, which 3.12 to 3.14 keep alike.  Returns 0 (with no
 * error set) when the fast path does not apply. */
static inline int scope_read_u64_fast(PyObject *o, uint64_t *out) {
    if (!PyLong_CheckExact(o)) return 0;
#if SCOPE_PY_AT_LEAST(3, 12) && !defined(SCOPE_NO_FAST_INT)
    const PyLongObject *v = (const PyLongObject *)o;
    if (PyUnstable_Long_IsCompact(v)) {
        Py_ssize_t value = PyUnstable_Long_CompactValue(v);
        if (value < 0) return 0;
        *out = (uint64_t)value;
        return 1;
    }
    uintptr_t tag = v->long_value.lv_tag;
    Py_ssize_t size = (Py_ssize_t)(tag >> _PyLong_NON_SIZE_BITS);
    const digit *d = v->long_value.ob_digit;
    if ((tag & _PyLong_SIGN_MASK) != 0) return 0; /* negative (zero is compact) */
#elif !defined(SCOPE_NO_FAST_INT)
    Py_ssize_t size = Py_SIZE(o);
    const digit *d = ((PyLongObject *)o)->ob_digit;
    if (size < 0) return 0;
#else
    Py_ssize_t size = 4; /* benchmarks: the generic conversion, for comparison */
    const digit *d = NULL;
#endif
    if (size > 3 || (size == 3 && d[2] >= ((uint64_t)1 << (64 - 2 * PyLong_SHIFT)))) return 0;
    uint64_t value = 0;
    for (Py_ssize_t i = size; i-- > 0;) value = (value << PyLong_SHIFT) | d[i];
    *out = value;
    return 1;
}

/* Bits in |o| (for a summary of an int too big for 64 bits).  A private function
 * exported from 3.11 to 3.14; its return type became int64_t in 3.14. */
static inline int64_t scope_long_bits(PyObject *o) { return (int64_t)_PyLong_NumBits(o); }

/* ---- Public functions backfilled for older versions ---- */

/* Whether the interpreter is finalizing: public from 3.13, _Py_IsFinalizing before
 * (3.13 removed the private name). */
static inline int scope_is_finalizing(void) {
#if SCOPE_PY_AT_LEAST(3, 13)
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

/* The exception being raised, taken (new reference), and put back: 3.12 made it
 * one object; PyErr_Fetch/PyErr_Restore are deprecated from 3.12. */
typedef struct {
#if SCOPE_PY_AT_LEAST(3, 12)
    PyObject *exception;
#else
    PyObject *type, *value, *traceback;
#endif
} scope_saved_error;

static inline void scope_error_save(scope_saved_error *saved) {
#if SCOPE_PY_AT_LEAST(3, 12)
    saved->exception = PyErr_GetRaisedException();
#else
    PyErr_Fetch(&saved->type, &saved->value, &saved->traceback);
#endif
}

static inline void scope_error_discard(scope_saved_error *saved) {
#if SCOPE_PY_AT_LEAST(3, 12)
    Py_CLEAR(saved->exception);
#else
    Py_CLEAR(saved->type);
    Py_CLEAR(saved->value);
    Py_CLEAR(saved->traceback);
#endif
}

static inline void scope_error_restore(scope_saved_error *saved) {
#if SCOPE_PY_AT_LEAST(3, 12)
    PyErr_SetRaisedException(saved->exception);
#else
    PyErr_Restore(saved->type, saved->value, saved->traceback);
#endif
}

/* __main__'s namespace (borrowed; NULL with an error set).  PyImport_AddModule,
 * which returns a borrowed module, is soft-deprecated from 3.13 in favour of
 * PyImport_AddModuleRef. */
static inline PyObject *scope_main_globals(void) {
#if SCOPE_PY_AT_LEAST(3, 13)
    PyObject *main = PyImport_AddModuleRef("__main__");
    PyObject *globals = main ? PyModule_GetDict(main) : NULL;
    Py_XDECREF(main); /* sys.modules keeps it alive */
    return globals;
#else
    PyObject *main = PyImport_AddModule("__main__");
    return main ? PyModule_GetDict(main) : NULL;
#endif
}

#endif

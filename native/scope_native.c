/* scope's native recorder: see scope_native.h for the model. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "scope_native.h"

typedef struct {
    uint64_t call_id;
    uint64_t func_id;
    uint8_t raised;
    uint8_t recorded; /* the entry went into the ring, so the exit must too */
} scope_frame;

typedef struct scope_thread {
    /* Producer side: touched only by the owning thread (head is read by the drainer). */
    _Atomic uint64_t head;
    uint64_t head_local;
    uint64_t tail_cache;
    uint64_t seq;
    uint64_t id_base;
    scope_frame *stack;
    uint32_t depth;
    uint32_t stack_capacity;
    uint32_t overflow_depth; /* calls entered beyond max_depth, not on the stack */
    _Atomic uint64_t dropped;
    _Atomic uint64_t blocked_ns;
    _Atomic uint64_t stack_overflow;
    _Atomic uint64_t unmatched_exits;
    char pad[64];
    /* Drainer side. */
    _Atomic uint64_t tail;
    uint64_t drained;
    uint64_t high_water;
    _Atomic int dead;
    uint32_t slot;
    uint64_t capacity;
    uint64_t mask;
    scope_record *records;
    struct scope_thread *next;
} scope_thread;

/* Configuration, set before recording starts. */
static uint64_t g_ring_records = 1u << 18;
static int g_overflow = SCOPE_OVERFLOW_DROP;
static uint64_t g_block_timeout_ns = 50u * 1000u * 1000u;
static uint32_t g_max_depth = 1u << 22;
static _Atomic int g_enabled = 0;

/* Registry of live rings, and what retired rings left behind. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static scope_thread *g_threads = NULL;
static uint32_t g_next_slot = 1;
static scope_stats g_retired;
static scope_thread_info *g_infos = NULL;
static size_t g_infos_len = 0, g_infos_cap = 0;
static _Atomic uint64_t g_setup_failures = 0;

static __thread scope_thread *tls_thread = NULL;
static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

int64_t scope_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t round_up_pow2(uint64_t v) {
    uint64_t p = 16;
    while (p < v) p <<= 1;
    return p;
}

int scope_configure(uint64_t ring_records, int overflow, uint64_t block_timeout_ns,
                    uint32_t max_depth) {
    if (ring_records < 16 || ring_records > (1ull << 32)) return -1;
    if (overflow != SCOPE_OVERFLOW_DROP && overflow != SCOPE_OVERFLOW_BLOCK) return -1;
    g_ring_records = round_up_pow2(ring_records);
    g_overflow = overflow;
    g_block_timeout_ns = block_timeout_ns;
    g_max_depth = max_depth ? max_depth : 1;
    return 0;
}

void scope_set_enabled(int enabled) { atomic_store(&g_enabled, enabled ? 1 : 0); }
int scope_is_enabled(void) { return atomic_load(&g_enabled); }

static void thread_died(void *arg) {
    scope_thread *t = (scope_thread *)arg;
    free(t->stack);
    t->stack = NULL;
    t->stack_capacity = 0;
    pthread_mutex_lock(&g_lock);
    if (t->slot - 1 < g_infos_len) g_infos[t->slot - 1].end_ns = scope_now_ns();
    pthread_mutex_unlock(&g_lock);
    atomic_store_explicit(&t->dead, 1, memory_order_release);
}

static void make_key(void) { pthread_key_create(&g_key, thread_died); }

static int record_info(scope_thread *t) {
    if (g_infos_len == g_infos_cap) {
        size_t cap = g_infos_cap ? g_infos_cap * 2 : 64;
        scope_thread_info *grown = realloc(g_infos, cap * sizeof *grown);
        if (!grown) return -1;
        g_infos = grown;
        g_infos_cap = cap;
    }
    scope_thread_info *info = &g_infos[g_infos_len++];
    info->slot = t->slot;
    info->native_id = (int64_t)syscall(SYS_gettid);
    info->ident = (uint64_t)pthread_self();
    info->start_ns = scope_now_ns();
    info->end_ns = 0;
    return 0;
}

static scope_thread *thread_create(void) {
    pthread_once(&g_key_once, make_key);
    scope_thread *t = calloc(1, sizeof *t);
    if (!t) goto fail;
    t->capacity = g_ring_records;
    t->mask = t->capacity - 1;
    t->records = malloc(t->capacity * sizeof(scope_record));
    t->stack_capacity = 256;
    t->stack = malloc(t->stack_capacity * sizeof(scope_frame));
    if (!t->records || !t->stack) goto fail;
    pthread_mutex_lock(&g_lock);
    t->slot = g_next_slot++;
    if (record_info(t) != 0) {
        pthread_mutex_unlock(&g_lock);
        goto fail;
    }
    t->next = g_threads;
    g_threads = t;
    pthread_mutex_unlock(&g_lock);
    t->id_base = (uint64_t)t->slot << SCOPE_SLOT_SHIFT;
    pthread_setspecific(g_key, t);
    tls_thread = t;
    return t;
fail:
    atomic_fetch_add(&g_setup_failures, 1);
    if (t) {
        free(t->records);
        free(t->stack);
        free(t);
    }
    return NULL;
}

/* Waits, without the GIL, until the drainer frees space or the timeout passes. */
static int wait_for_space(scope_thread *t, uint64_t head) {
    int64_t start = scope_now_ns();
    int64_t deadline = start + (int64_t)g_block_timeout_ns;
    int has_space = 0;
    int holds_gil = PyGILState_Check();
    PyThreadState *saved = holds_gil ? PyEval_SaveThread() : NULL;
    struct timespec pause = {0, 50000};
    for (;;) {
        t->tail_cache = atomic_load_explicit(&t->tail, memory_order_acquire);
        if (head - t->tail_cache < t->capacity) {
            has_space = 1;
            break;
        }
        if (scope_now_ns() >= deadline) break;
        nanosleep(&pause, NULL);
    }
    if (saved) PyEval_RestoreThread(saved);
    atomic_fetch_add_explicit(&t->blocked_ns, (uint64_t)(scope_now_ns() - start),
                              memory_order_relaxed);
    return has_space;
}

static inline int ring_push(scope_thread *t, uint64_t call_id, uint64_t other_id,
                            uint64_t func_id, uint32_t depth, uint32_t kind) {
    uint64_t head = t->head_local;
    if (head - t->tail_cache >= t->capacity) {
        t->tail_cache = atomic_load_explicit(&t->tail, memory_order_acquire);
        if (head - t->tail_cache >= t->capacity &&
            (g_overflow != SCOPE_OVERFLOW_BLOCK || !wait_for_space(t, head))) {
            atomic_fetch_add_explicit(&t->dropped, 1, memory_order_relaxed);
            return 0;
        }
    }
    scope_record *r = &t->records[head & t->mask];
    r->call_id = call_id;
    r->other_id = other_id;
    r->time_ns = scope_now_ns();
    r->func_id = func_id;
    r->depth = depth;
    r->kind = kind;
    t->head_local = head + 1;
    atomic_store_explicit(&t->head, head + 1, memory_order_release);
    return 1;
}

static int grow_stack(scope_thread *t) {
    if (t->stack_capacity >= g_max_depth) return 0;
    uint32_t cap = t->stack_capacity * 2;
    if (cap > g_max_depth) cap = g_max_depth;
    scope_frame *grown = realloc(t->stack, (size_t)cap * sizeof *grown);
    if (!grown) return 0;
    t->stack = grown;
    t->stack_capacity = cap;
    return 1;
}

static inline void emit_enter(uint64_t func_id) {
    scope_thread *t = tls_thread;
    if (!t && !(t = thread_create())) return;
    if (t->overflow_depth || (t->depth >= t->stack_capacity && !grow_stack(t))) {
        t->overflow_depth++;
        atomic_fetch_add_explicit(&t->stack_overflow, 1, memory_order_relaxed);
        return;
    }
    scope_frame *f = &t->stack[t->depth];
    uint64_t id = t->id_base | ++t->seq;
    uint64_t parent = t->depth ? t->stack[t->depth - 1].call_id : 0;
    f->call_id = id;
    f->func_id = func_id;
    f->raised = 0;
    f->recorded = (uint8_t)ring_push(t, id, parent, func_id, t->depth, SCOPE_ENTER);
    t->depth++;
}

/* Finds the frame an exit belongs to; frames above it lost their exits. */
static inline scope_frame *top_frame_for(scope_thread *t, uint64_t func_id) {
    if (t->depth && t->stack[t->depth - 1].func_id == func_id)
        return &t->stack[t->depth - 1];
    for (uint32_t i = t->depth; i-- > 0;) {
        if (t->stack[i].func_id == func_id) {
            atomic_fetch_add_explicit(&t->unmatched_exits, t->depth - 1 - i,
                                      memory_order_relaxed);
            t->depth = i + 1;
            return &t->stack[i];
        }
    }
    atomic_fetch_add_explicit(&t->unmatched_exits, 1, memory_order_relaxed);
    return NULL;
}

static inline void emit_exit(uint64_t func_id, int raised) {
    scope_thread *t = tls_thread;
    if (!t) return;
    if (t->overflow_depth) {
        t->overflow_depth--;
        return;
    }
    scope_frame *f = top_frame_for(t, func_id);
    if (!f) return;
    t->depth--;
    if (f->recorded && atomic_load_explicit(&g_enabled, memory_order_relaxed)) {
        uint32_t kind = (raised || f->raised) ? SCOPE_RAISE : SCOPE_RETURN;
        if (!ring_push(t, f->call_id, t->id_base | t->seq, func_id, t->depth, kind)) {
            /* The entry is stored but its exit is not: the call reads as unfinished. */
        }
    }
}

static inline void mark_raised(uint64_t func_id) {
    scope_thread *t = tls_thread;
    if (!t || t->overflow_depth || !t->depth) return;
    scope_frame *f = &t->stack[t->depth - 1];
    if (f->func_id == func_id) f->raised = 1;
}

void scope_emit_enter(uint64_t func_id) {
    if (atomic_load_explicit(&g_enabled, memory_order_relaxed)) emit_enter(func_id);
}

void scope_emit_exit(uint64_t func_id, int raised) { emit_exit(func_id, raised); }

size_t scope_drain(scope_record *out, size_t capacity) {
    size_t n = 0;
    pthread_mutex_lock(&g_lock);
    scope_thread **link = &g_threads;
    while (*link) {
        scope_thread *t = *link;
        int dead = atomic_load_explicit(&t->dead, memory_order_acquire);
        uint64_t tail = atomic_load_explicit(&t->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&t->head, memory_order_acquire);
        uint64_t avail = head - tail;
        if (avail > t->high_water) t->high_water = avail;
        uint64_t take = avail < capacity - n ? avail : capacity - n;
        if (take) {
            uint64_t start = tail & t->mask;
            uint64_t first = take < t->capacity - start ? take : t->capacity - start;
            memcpy(out + n, t->records + start, first * sizeof(scope_record));
            memcpy(out + n + first, t->records, (take - first) * sizeof(scope_record));
            n += take;
            t->drained += take;
            atomic_store_explicit(&t->tail, tail + take, memory_order_release);
        }
        if (dead && tail + take == head) {
            g_retired.produced += head;
            g_retired.dropped += atomic_load(&t->dropped);
            g_retired.drained += t->drained;
            g_retired.blocked_ns += atomic_load(&t->blocked_ns);
            g_retired.stack_overflow += atomic_load(&t->stack_overflow);
            g_retired.unmatched_exits += atomic_load(&t->unmatched_exits);
            if (t->high_water > g_retired.high_water) g_retired.high_water = t->high_water;
            *link = t->next;
            free(t->records);
            free(t);
            continue;
        }
        link = &t->next;
    }
    pthread_mutex_unlock(&g_lock);
    return n;
}

void scope_get_stats(scope_stats *out) {
    pthread_mutex_lock(&g_lock);
    *out = g_retired;
    out->dropped += atomic_load(&g_setup_failures);
    out->threads_seen = g_next_slot - 1;
    out->threads_live = 0;
    out->pending = 0;
    for (scope_thread *t = g_threads; t; t = t->next) {
        uint64_t head = atomic_load_explicit(&t->head, memory_order_acquire);
        uint64_t tail = atomic_load_explicit(&t->tail, memory_order_acquire);
        out->produced += head;
        out->dropped += atomic_load(&t->dropped);
        out->drained += t->drained;
        out->pending += head - tail;
        out->blocked_ns += atomic_load(&t->blocked_ns);
        out->stack_overflow += atomic_load(&t->stack_overflow);
        out->unmatched_exits += atomic_load(&t->unmatched_exits);
        if (t->high_water > out->high_water) out->high_water = t->high_water;
        if (!atomic_load(&t->dead)) out->threads_live++;
    }
    pthread_mutex_unlock(&g_lock);
}

size_t scope_get_threads(scope_thread_info *out, size_t capacity) {
    pthread_mutex_lock(&g_lock);
    size_t n = g_infos_len < capacity ? g_infos_len : capacity;
    memcpy(out, g_infos, n * sizeof *out);
    size_t total = g_infos_len;
    pthread_mutex_unlock(&g_lock);
    return total;
}

void scope_after_fork_child(void) {
    /* Only the forking thread survives; its parent's records belong to the parent. */
    atomic_store(&g_enabled, 0);
    pthread_mutex_init(&g_lock, NULL);
    scope_thread *t = g_threads;
    while (t) {
        scope_thread *next = t->next;
        free(t->records);
        if (t != tls_thread) free(t->stack);
        free(t);
        t = next;
    }
    if (tls_thread) pthread_setspecific(g_key, NULL);
    tls_thread = NULL;
    g_threads = NULL;
    memset(&g_retired, 0, sizeof g_retired);
    g_infos_len = 0;
    g_next_slot = 1;
}

/* ---- Entry points called by instrumented code (METH_FASTCALL, GIL held) ----
 * METH_FASTCALL rather than METH_O: CPython 3.11 charges METH_O calls against
 * the recursion limit, which would make a recorded program hit RecursionError
 * one frame earlier than it does without scope.
 */

static inline int func_id_arg(PyObject *const *args, Py_ssize_t nargs, uint64_t *out) {
    if (nargs != 1) return 0;
    *out = PyLong_AsUnsignedLongLong(args[0]);
    if (*out == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

static PyObject *py_enter(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t func_id;
    if (atomic_load_explicit(&g_enabled, memory_order_relaxed) &&
        func_id_arg(args, nargs, &func_id))
        emit_enter(func_id);
    Py_RETURN_NONE;
}

static PyObject *py_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t func_id;
    if (func_id_arg(args, nargs, &func_id)) emit_exit(func_id, 0);
    Py_RETURN_NONE;
}

static PyObject *py_unwind(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t func_id;
    if (func_id_arg(args, nargs, &func_id)) mark_raised(func_id);
    Py_RETURN_NONE;
}

/* Calls func(*rest), or evaluates a code object in a globals dict directly (as the
 * interpreter runs a script: going through the exec builtin would cost the
 * program one level of recursion depth). */
static PyObject *call_or_eval(PyObject *func, PyObject *rest) {
    if (PyCode_Check(func) && PyTuple_GET_SIZE(rest) == 1 && PyDict_Check(PyTuple_GET_ITEM(rest, 0)))
        return PyEval_EvalCode(func, PyTuple_GET_ITEM(rest, 0), PyTuple_GET_ITEM(rest, 0));
    return PyObject_Call(func, rest, NULL);
}

/* run_at_bottom(func, *args): call func(*args) as if nothing were below it on the
 * Python stack; run_at_bottom(code, globals) evaluates code in globals.  The first frame func creates has no f_back, and the thread's
 * recursion depth counts from zero while it runs, so the recorded program sees
 * the stack and the recursion limit that it sees under plain python, not
 * runpy's, click's and scope's frames below it.  Both are restored afterwards.
 */
static PyObject *py_run_at_bottom(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "run_at_bottom() needs a callable");
        return NULL;
    }
    PyObject *rest = PyTuple_New(nargs - 1);
    if (!rest) return NULL;
    for (Py_ssize_t i = 1; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(rest, i - 1, args[i]);
    }
    PyThreadState *ts = PyThreadState_Get();
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
    struct _PyInterpreterFrame *saved_frame = ts->cframe->current_frame;
    int depth = ts->recursion_limit - ts->recursion_remaining;
    ts->cframe->current_frame = NULL;
    ts->recursion_remaining = ts->recursion_limit;
    PyObject *result = call_or_eval(args[0], rest);
    ts->cframe->current_frame = saved_frame;
    ts->recursion_remaining = ts->recursion_limit - depth;
#elif PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
    struct _PyInterpreterFrame *saved_frame = ts->cframe->current_frame;
    int depth = ts->py_recursion_limit - ts->py_recursion_remaining;
    ts->cframe->current_frame = NULL;
    ts->py_recursion_remaining = ts->py_recursion_limit;
    PyObject *result = call_or_eval(args[0], rest);
    ts->cframe->current_frame = saved_frame;
    ts->py_recursion_remaining = ts->py_recursion_limit - depth;
#else
    (void)ts;
    PyObject *result = call_or_eval(args[0], rest);
#endif
    Py_DECREF(rest);
    return result;
}

static PyMethodDef entry_points[] = {
    {"run_at_bottom", (PyCFunction)(void (*)(void))py_run_at_bottom, METH_FASTCALL,
     "run_at_bottom(func, *args) or (code, globals): run with no Python frame below."},
    {"enter", (PyCFunction)(void (*)(void))py_enter, METH_FASTCALL,
     "enter(func_id): a call of func_id begins on this thread."},
    {"exit", (PyCFunction)(void (*)(void))py_exit, METH_FASTCALL,
     "exit(func_id): the innermost call of func_id ends on this thread."},
    {"unwind", (PyCFunction)(void (*)(void))py_unwind, METH_FASTCALL,
     "unwind(func_id): the innermost call of func_id is ending by an exception."},
    {NULL, NULL, 0, NULL},
};

int scope_install_entry_points(const char *module_name) {
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = -1;
    PyObject *module = PyImport_ImportModule(module_name);
    if (module) {
        rc = PyModule_AddFunctions(module, entry_points);
        Py_DECREF(module);
    }
    if (rc != 0) PyErr_Clear();
    PyGILState_Release(gil);
    return rc;
}

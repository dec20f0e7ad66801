/* The CPython side of the recorder: the entry points instrumented code calls,
 * value summaries, and the bookkeeping of suspended generators and coroutines.
 *
 * Every entry point is METH_FASTCALL and runs with the GIL held, so the
 * structures here (the table of parked calls, the summary settings) need no
 * lock of their own.  METH_FASTCALL rather than METH_O: CPython 3.11 charges
 * METH_O calls against the recursion limit, which would make a recorded
 * program hit RecursionError one frame earlier than it does without scope.
 *
 * Frames.  Each open call remembers its interpreter frame.  A generator or
 * coroutine that suspends (reported before each yield and await) is *parked*:
 * taken off its thread's stack into a table keyed by its frame, which lives
 * inside the generator object and never moves.  When it resumes (reported after
 * the yield or await, or noticed at its next event if the yield raised) it goes
 * back on top of the stack of whichever thread resumed it, with its call id,
 * parent and depth unchanged.  A new call whose direct caller is not the top of
 * the stack walks its callers' frames to settle the stack: a parked caller is a
 * coroutine delegating to it (``await child()``), and a resumable call on top
 * that is not among the callers suspended without reporting it (``async for``).
 * A coroutine's parent is the coroutine that created its task: coroutines set a
 * context variable, which asyncio copies into every task it creates.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scope_core.h"

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030D0000
#define Py_BUILD_CORE 1
#include "internal/pycore_frame.h"
#undef Py_BUILD_CORE
static inline const void *current_frame(void) {
    return PyThreadState_Get()->cframe->current_frame;
}
static inline const void *frame_caller(const void *frame) {
    return ((const struct _PyInterpreterFrame *)frame)->previous;
}
/* The generator or coroutine object that owns `frame`, or NULL (borrowed). */
static PyObject *frame_generator(const void *frame) {
    struct _PyInterpreterFrame *f = (struct _PyInterpreterFrame *)frame;
    if (f->owner != FRAME_OWNED_BY_GENERATOR) return NULL;
    return (PyObject *)_PyFrame_GetGenerator(f);
}
/* Whether `frame` runs a list, set or dict comprehension's own code object
 * (3.11; from 3.12 they are inlined into the function that contains them). */
static int runs_comprehension(const void *frame) {
    PyObject *name = ((const struct _PyInterpreterFrame *)frame)->f_code->co_name;
    return _PyUnicode_EqualToASCIIString(name, "<listcomp>") ||
           _PyUnicode_EqualToASCIIString(name, "<setcomp>") ||
           _PyUnicode_EqualToASCIIString(name, "<dictcomp>");
}
/* The thread state's Python recursion counters were renamed in 3.12. */
#if PY_VERSION_HEX < 0x030C0000
#define RECURSION_LIMIT recursion_limit
#define RECURSION_REMAINING recursion_remaining
#else
#define RECURSION_LIMIT py_recursion_limit
#define RECURSION_REMAINING py_recursion_remaining
#endif
#else
/* Other versions: calls are matched by function id and generators by order. */
static inline const void *current_frame(void) { return NULL; }
static inline const void *frame_caller(const void *frame) { return NULL; }
static inline int runs_comprehension(const void *frame) { return 0; }
static inline PyObject *frame_generator(const void *frame) { return NULL; }
#endif

static void sigterm_after_fork_child(void);

#define FUNC_MASK ((1ull << SCOPE_FLAG_SHIFT) - 1)
/* How many caller frames a new call inspects to settle the stack. */
#define WALK_LIMIT 256
#define SUMMARY_MAX 1024
#define ITEM_MAX 48

static PyObject *g_redacted = NULL; /* the sentinel instrumented code passes instead */
static PyObject *g_tasks = NULL;    /* list: (root call, name, created by, thread) per task */
static PyObject *g_current_task = NULL; /* asyncio.current_task */
static PyObject *g_call_var = NULL; /* ContextVar: (call id, depth) of the running coroutine */

/* ---- Parked calls: generators and coroutines suspended at a yield or await ---- */

typedef struct {
    const void *key; /* the call's frame; NULL = empty, TOMBSTONE = removed */
    scope_frame call;
} parked;

#define TOMBSTONE ((const void *)1)

static parked *g_parked = NULL;
static size_t g_parked_cap = 0, g_parked_len = 0, g_parked_used = 0;
/* Resumable calls open anywhere (on a stack or parked): while zero, no walks. */
static uint64_t g_resumables = 0;

static inline size_t parked_hash(const void *key) {
    return (size_t)(((uintptr_t)key >> 4) * 0x9E3779B97F4A7C15ull);
}

static parked *parked_find(const void *key) {
    if (!g_parked_len) return NULL;
    size_t mask = g_parked_cap - 1;
    for (size_t i = parked_hash(key) & mask;; i = (i + 1) & mask) {
        if (g_parked[i].key == key) return &g_parked[i];
        if (!g_parked[i].key) return NULL;
    }
}

static int parked_grow(void) {
    size_t cap = g_parked_cap ? g_parked_cap * 2 : 64;
    while (g_parked_len * 2 >= cap) cap *= 2;
    parked *table = calloc(cap, sizeof *table);
    if (!table) return 0;
    for (size_t j = 0; j < g_parked_cap; j++) {
        const void *key = g_parked[j].key;
        if (!key || key == TOMBSTONE) continue;
        size_t i = parked_hash(key) & (cap - 1);
        while (table[i].key) i = (i + 1) & (cap - 1);
        table[i] = g_parked[j];
    }
    free(g_parked);
    g_parked = table;
    g_parked_cap = cap;
    g_parked_used = g_parked_len;
    return 1;
}

static int parked_insert(scope_thread *t, const scope_frame *call) {
    if ((g_parked_used + 1) * 2 > g_parked_cap && !parked_grow()) return 0;
    size_t mask = g_parked_cap - 1;
    size_t i = parked_hash(call->frame) & mask;
    while (g_parked[i].key && g_parked[i].key != TOMBSTONE && g_parked[i].key != call->frame)
        i = (i + 1) & mask;
    if (g_parked[i].key == call->frame) {
        /* A stale entry for a reused frame: that call's end was never seen. */
        scope_record_unfinished(t, &g_parked[i].call);
        Py_XDECREF((PyObject *)g_parked[i].call.token);
        g_parked_len--;
    } else if (!g_parked[i].key) {
        g_parked_used++;
    }
    g_parked[i].key = call->frame;
    g_parked[i].call = *call;
    g_parked_len++;
    return 1;
}

static void parked_remove(parked *p) {
    p->key = TOMBSTONE;
    g_parked_len--;
}

/* ---- Stack operations that understand suspension ---- */

static inline scope_frame *top_of(scope_thread *t) {
    return t->depth ? &t->stack[t->depth - 1] : NULL;
}

static void release_token(scope_frame *f) {
    PyObject *token = (PyObject *)f->token;
    if (!token) return;
    f->token = NULL;
    /* Fails only if the coroutine ends in another context than it began in. */
    if (PyContextVar_Reset(g_call_var, token) != 0) PyErr_Clear();
    Py_DECREF(token);
}

/* A call leaves the stack for good: its record, its token and the resumable count. */
static void finish_call(scope_thread *t, scope_frame *f, int raised) {
    scope_record_exit(t, f, raised);
    release_token(f);
    if (f->flags & SCOPE_FLAG_RESUMABLE) g_resumables--;
}

/* Moves the top of the stack to the parked table: it suspended. */
static void park_top(scope_thread *t) {
    scope_frame *f = &t->stack[--t->depth];
    f->suspensions++;
    f->parked_at = scope_ticks();
    if ((f->call_id >> SCOPE_SLOT_SHIFT) == t->slot) f->last_own_id = t->id_base | t->seq;
    if (!f->frame || !parked_insert(t, f)) {
        atomic_fetch_add_explicit(&t->unmatched_exits, 1, memory_order_relaxed);
        scope_record_unfinished(t, f);
        release_token(f);
        g_resumables--;
    }
}

/* Puts a parked call back on top of this thread's stack: it resumed. */
static scope_frame *unpark(scope_thread *t, parked *p) {
    scope_frame call = p->call;
    parked_remove(p);
    if (t->depth >= t->stack_capacity && !scope_grow_stack(t)) {
        atomic_fetch_add_explicit(&t->stack_overflow, 1, memory_order_relaxed);
        scope_record_unfinished(t, &call);
        release_token(&call);
        g_resumables--;
        return NULL;
    }
    scope_frame *f = &t->stack[t->depth++];
    *f = call;
    f->suspended_ticks += (uint64_t)(scope_ticks() - f->parked_at);
    return f;
}

/* Takes entries above index i off the stack: suspended resumables are parked,
 * anything else lost its exit (counted). */
static void unwind_above(scope_thread *t, uint32_t i) {
    while (t->depth > i + 1) {
        scope_frame *top = top_of(t);
        if ((top->flags & SCOPE_FLAG_RESUMABLE) && top->frame) {
            park_top(t);
        } else if (top->flags & SCOPE_FLAG_EXPRESSION) {
            t->depth--; /* a lambda whose exception is now leaving a call below it */
            finish_call(t, top, 1);
        } else {
            atomic_fetch_add_explicit(&t->unmatched_exits, 1, memory_order_relaxed);
            scope_record_unfinished(t, top);
            t->depth--;
            release_token(top);
            if (top->flags & SCOPE_FLAG_RESUMABLE) g_resumables--;
        }
    }
}

/* The open call that the code running in `frame` belongs to, made the top of the
 * stack (resuming it if it was parked); NULL if scope does not know it. */
static scope_frame *running_call(scope_thread *t, const void *frame, uint64_t func_id) {
    scope_frame *top = top_of(t);
    if (top && (frame ? top->frame == frame : top->func_id == func_id)) return top;
    if (frame) {
        parked *p = parked_find(frame);
        if (p) return unpark(t, p);
    }
    for (uint32_t i = t->depth; i-- > 0;) {
        if (frame ? t->stack[i].frame == frame : t->stack[i].func_id == func_id) {
            unwind_above(t, i);
            return top_of(t);
        }
    }
    return NULL;
}

/* A lambda reports its return but not an exception (an expression has no
 * `finally`): a lambda on top of the stack whose frame is not among the callers
 * of `frame` ended by an exception, and is recorded as raised now. */
static void drop_raised_lambdas(scope_thread *t, const void *frame) {
    scope_frame *top;
    while ((top = top_of(t)) && (top->flags & SCOPE_FLAG_EXPRESSION) && top->frame) {
        const void *f = frame_caller(frame);
        for (int steps = 0; f && steps < WALK_LIMIT; f = frame_caller(f), steps++)
            if (f == top->frame) return;
        if (f) return; /* too deep to tell: assume it is still running */
        t->depth--;
        finish_call(t, top, 1);
    }
}

/* Settles the stack before a call in `frame` begins and returns its parent.
 * See the comment at the top of this file. */
static scope_frame *settle_for_call(scope_thread *t, const void *frame, int resumable,
                                    scope_frame *delegator, int *delegated) {
    const void *caller = frame_caller(frame);
    for (;;) {
        scope_frame *top = top_of(t);
        if (top && top->frame == caller) return top;
        const void *f = caller;
        int steps = 0;
        for (; f && steps < WALK_LIMIT; f = frame_caller(f), steps++) {
            if (top && f == top->frame) return top;
            parked *p = parked_find(f);
            if (!p) continue;
            if (resumable) {
                /* Its caller awaits it (or yields from it) while parked. */
                if (!*delegated) *delegator = p->call;
                *delegated = 1;
                continue;
            }
            /* A parked call is running again: its yield or await raised. */
            return unpark(t, p);
        }
        if (f || !top || !(top->flags & SCOPE_FLAG_RESUMABLE) || !top->frame) return top;
        park_top(t); /* not among the callers: it suspended without saying so */
    }
}

/* ---- Budgets: which calls are stored one row each ---- */

/* Calls begun per function, counted under the GIL; keys are id + 1 (0 = empty).
 * Emptied when scope_set_budget changes the generation. */
typedef struct {
    uint64_t key;
    uint64_t begun;
} begun_count;

static begun_count *g_begun = NULL;
static size_t g_begun_cap = 0, g_begun_len = 0;
static uint64_t g_begun_generation = 0;

static int begun_grow(void) {
    size_t cap = g_begun_cap ? g_begun_cap * 2 : 1024;
    begun_count *table = calloc(cap, sizeof *table);
    if (!table) return 0;
    for (size_t j = 0; j < g_begun_cap; j++) {
        if (!g_begun[j].key) continue;
        size_t i = parked_hash((const void *)(uintptr_t)g_begun[j].key) & (cap - 1);
        while (table[i].key) i = (i + 1) & (cap - 1);
        table[i] = g_begun[j];
    }
    free(g_begun);
    g_begun = table;
    g_begun_cap = cap;
    return 1;
}

/* Whether a call of func that begins now is past the budget (counts it). */
static int past_budget(uint64_t func) {
    uint64_t limit = scope_g_budget;
    if (!limit) return 0;
    uint64_t generation = atomic_load_explicit(&scope_g_budget_generation, memory_order_relaxed);
    if (generation != g_begun_generation) {
        if (g_begun) memset(g_begun, 0, g_begun_cap * sizeof *g_begun);
        g_begun_len = 0;
        g_begun_generation = generation;
    }
    if ((g_begun_len + 1) * 2 > g_begun_cap && !begun_grow()) return 0;
    uint64_t key = func + 1;
    size_t mask = g_begun_cap - 1;
    size_t i = parked_hash((const void *)(uintptr_t)key) & mask;
    while (g_begun[i].key && g_begun[i].key != key) i = (i + 1) & mask;
    if (!g_begun[i].key) {
        g_begun[i].key = key;
        g_begun_len++;
    }
    return g_begun[i].begun++ >= limit;
}

/* ---- Value summaries ---- */

typedef struct {
    uint8_t tag;
    int64_t payload;
    uint32_t len;
    uint8_t buf[SUMMARY_MAX];
} summary;

static uint32_t g_max_bytes = 64;
static uint32_t g_full_items = 4;
static int g_call_repr = 0;
static char **g_patterns = NULL;
static size_t g_pattern_count = 0;

static void put(summary *s, const void *bytes, size_t n) {
    if (n > SUMMARY_MAX - s->len) n = SUMMARY_MAX - s->len;
    memcpy(s->buf + s->len, bytes, n);
    s->len += (uint32_t)n;
}

static void put_type_name(summary *s, PyTypeObject *tp) { put(s, tp->tp_name, strlen(tp->tp_name)); }

/* UTF-8 of the first characters of a str, at most `limit` bytes, without asking
 * the str to build (and keep) its own UTF-8 copy. */
static void put_text(summary *s, PyObject *text, uint32_t limit) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (PyUnicode_IS_ASCII(text)) {
        put(s, PyUnicode_DATA(text), (size_t)n < limit ? (size_t)n : limit);
        return;
    }
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    uint8_t out[4];
    uint32_t used = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        uint32_t w;
        if (c < 0x80) {
            out[0] = (uint8_t)c;
            w = 1;
        } else if (c < 0x800) {
            out[0] = 0xC0 | (c >> 6);
            out[1] = 0x80 | (c & 0x3F);
            w = 2;
        } else if (c < 0x10000) {
            if (c >= 0xD800 && c <= 0xDFFF) c = 0xFFFD; /* lone surrogate */
            out[0] = 0xE0 | (c >> 12);
            out[1] = 0x80 | ((c >> 6) & 0x3F);
            out[2] = 0x80 | (c & 0x3F);
            w = 3;
        } else {
            out[0] = 0xF0 | (c >> 18);
            out[1] = 0x80 | ((c >> 12) & 0x3F);
            out[2] = 0x80 | ((c >> 6) & 0x3F);
            out[3] = 0x80 | (c & 0x3F);
            w = 4;
        }
        if (used + w > limit) break;
        put(s, out, w);
        used += w;
    }
}

static int is_secret_name(PyObject *key) {
    if (!PyUnicode_CheckExact(key) || !PyUnicode_IS_ASCII(key)) return 0;
    const char *name = (const char *)PyUnicode_DATA(key);
    size_t n = (size_t)PyUnicode_GET_LENGTH(key);
    for (size_t p = 0; p < g_pattern_count; p++) {
        size_t m = strlen(g_patterns[p]);
        for (size_t i = 0; m && i + m <= n; i++) {
            size_t j = 0;
            while (j < m && (char)tolower((unsigned char)name[i + j]) == g_patterns[p][j]) j++;
            if (j == m) return 1;
        }
    }
    return 0;
}

static void summarize(scope_thread *t, PyObject *o, int full, summary *s);

/* One item of a container, appended as [tag][payload: 8][len: 2][bytes]. */
static void put_item(scope_thread *t, summary *s, PyObject *item, int redact) {
    summary inner;
    if (redact) {
        inner.tag = SCOPE_TAG_REDACTED;
        inner.payload = 0;
        inner.len = 0;
    } else {
        summarize(t, item, 0, &inner);
    }
    uint16_t len = (uint16_t)(inner.len < ITEM_MAX ? inner.len : ITEM_MAX);
    put(s, &inner.tag, 1);
    put(s, &inner.payload, 8);
    put(s, &len, 2);
    put(s, inner.buf, len);
}

static void put_items(scope_thread *t, PyObject *o, summary *s) {
    uint8_t zero = 0;
    put(s, &zero, 1);
    uint32_t limit = g_full_items;
    if (PyList_CheckExact(o) || PyTuple_CheckExact(o)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
        PyObject **items = PySequence_Fast_ITEMS(o);
        for (Py_ssize_t i = 0; i < n && (uint32_t)i < limit; i++) put_item(t, s, items[i], 0);
    } else if (PyDict_CheckExact(o)) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        for (uint32_t i = 0; i < limit && PyDict_Next(o, &pos, &key, &value); i++) {
            put_item(t, s, key, 0);
            put_item(t, s, value, is_secret_name(key));
        }
    } else {
        Py_ssize_t pos = 0;
        PyObject *key;
        Py_hash_t hash;
        for (uint32_t i = 0; i < limit && _PySet_NextEntry(o, &pos, &key, &hash); i++)
            put_item(t, s, key, 0);
    }
}

/* Type, and a bounded value where that needs no user code (unless repr is asked for). */
static void summarize(scope_thread *t, PyObject *o, int full, summary *s) {
    PyTypeObject *tp = Py_TYPE(o);
    s->len = 0;
    s->payload = 0;
    if (o == Py_None) {
        s->tag = SCOPE_TAG_NONE;
    } else if (tp == &PyBool_Type) {
        s->tag = SCOPE_TAG_BOOL;
        s->payload = o == Py_True;
    } else if (tp == &PyLong_Type) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow) {
            s->tag = SCOPE_TAG_BIGINT;
            s->payload = (int64_t)_PyLong_NumBits(o) * overflow;
        } else {
            s->tag = SCOPE_TAG_INT;
            s->payload = v;
        }
    } else if (tp == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(o);
        s->tag = SCOPE_TAG_FLOAT;
        memcpy(&s->payload, &d, 8);
    } else if (tp == &PyUnicode_Type) {
        s->tag = SCOPE_TAG_STR;
        s->payload = PyUnicode_GET_LENGTH(o);
        put_text(s, o, g_max_bytes);
    } else if (tp == &PyBytes_Type) {
        s->tag = SCOPE_TAG_BYTES;
        s->payload = PyBytes_GET_SIZE(o);
        put(s, PyBytes_AS_STRING(o),
            (size_t)s->payload < g_max_bytes ? (size_t)s->payload : g_max_bytes);
    } else if (tp == &PyList_Type || tp == &PyTuple_Type || tp == &PyDict_Type ||
               tp == &PySet_Type || tp == &PyFrozenSet_Type) {
        s->tag = SCOPE_TAG_CONTAINER;
        s->payload = tp == &PyDict_Type ? PyDict_GET_SIZE(o)
                     : (tp == &PyList_Type || tp == &PyTuple_Type) ? Py_SIZE(o)
                                                                   : PySet_GET_SIZE(o);
        put_type_name(s, tp);
        if (full) put_items(t, o, s);
    } else if (PyType_Check(o)) {
        s->tag = SCOPE_TAG_CLASS;
        put_type_name(s, (PyTypeObject *)o);
    } else if (PyExceptionInstance_Check(o)) {
        s->tag = SCOPE_TAG_EXCEPTION;
        s->payload = (int64_t)(uintptr_t)o;
        put_type_name(s, tp);
        PyObject *args = ((PyBaseExceptionObject *)o)->args;
        if (args && PyTuple_CheckExact(args) && PyTuple_GET_SIZE(args) >= 1 &&
            PyUnicode_CheckExact(PyTuple_GET_ITEM(args, 0))) {
            uint8_t zero = 0;
            put(s, &zero, 1);
            put_text(s, PyTuple_GET_ITEM(args, 0), g_max_bytes);
        }
    } else if (full && g_call_repr && !t->suppressed) {
        /* The user asked for repr(): calls it makes are scope's, not the program's. */
        t->suppressed = 1;
        PyObject *text = PyObject_Repr(o);
        t->suppressed = 0;
        s->payload = (int64_t)(uintptr_t)o;
        put_type_name(s, tp);
        if (text && PyUnicode_Check(text)) {
            uint8_t zero = 0;
            s->tag = SCOPE_TAG_REPR;
            put(s, &zero, 1);
            put_text(s, text, g_max_bytes);
        } else {
            s->tag = SCOPE_TAG_OBJECT;
            PyErr_Clear();
        }
        Py_XDECREF(text);
    } else {
        s->tag = SCOPE_TAG_OBJECT;
        s->payload = (int64_t)(uintptr_t)o;
        put_type_name(s, tp);
    }
}

static void record_value(scope_thread *t, const scope_frame *call, uint8_t role, uint16_t index,
                         PyObject *o, int full, uint64_t raised_in) {
    if (!call->recorded || call->summed) return; /* a summed call has no row to hang it on */
    if (o == g_redacted) {
        scope_value_push(t, call->call_id, call->func_id, role, index, SCOPE_TAG_REDACTED, 0, NULL,
                         0, raised_in);
        return;
    }
    summary s;
    summarize(t, o, full, &s);
    scope_value_push(t, call->call_id, call->func_id, role, index, s.tag, s.payload, s.buf,
                     s.len, raised_in);
}

/* The innermost call that exception exc has left on this thread, given that it
 * is now leaving call f: the same as for the child it last left, if it just
 * left one of f's children, else f itself (it was raised in f, or in code that
 * is not recorded).  An exception is known by its object and by where it was
 * raised (its innermost traceback entry), so a new exception that reuses a freed
 * one's address is not taken for it. */
static uint64_t link_unwind(scope_thread *t, const scope_frame *f, PyObject *exc) {
    const void *origin_frame = NULL;
    int origin_lasti = -1;
    PyObject *tb = PyException_GetTraceback(exc);
    PyTracebackObject *inner = (PyTracebackObject *)tb;
    while (inner && inner->tb_next) inner = inner->tb_next;
    if (inner) {
        origin_frame = inner->tb_frame;
        origin_lasti = inner->tb_lasti;
    }
    Py_XDECREF(tb);
    uint64_t raised_in = f->call_id;
    for (uint32_t k = 1; k <= SCOPE_RECENT_UNWINDS; k++) {
        const scope_unwind *u =
            &t->recent_unwinds[(t->recent_next - k) % SCOPE_RECENT_UNWINDS];
        if (u->exception == exc && u->origin_frame == origin_frame &&
            u->origin_lasti == origin_lasti && u->parent_id == f->call_id) {
            raised_in = u->raised_in;
            break;
        }
    }
    scope_unwind *slot = &t->recent_unwinds[t->recent_next++ % SCOPE_RECENT_UNWINDS];
    slot->exception = exc;
    slot->origin_frame = origin_frame;
    slot->origin_lasti = origin_lasti;
    slot->call_id = f->call_id;
    slot->parent_id = f->parent_id;
    slot->raised_in = raised_in;
    return raised_in;
}

int scope_configure_values(uint32_t max_bytes, uint32_t full_items, int call_repr,
                           const char *redact_patterns) {
    if (max_bytes < 1 || max_bytes > SUMMARY_MAX / 2 || full_items > 64) return -1;
    for (size_t i = 0; i < g_pattern_count; i++) free(g_patterns[i]);
    free(g_patterns);
    g_patterns = NULL;
    g_pattern_count = 0;
    size_t count = 0;
    for (const char *c = redact_patterns; c && *c; c++) count += *c == '\n';
    g_patterns = calloc(count + 1, sizeof *g_patterns);
    if (!g_patterns) return -1;
    const char *start = redact_patterns;
    while (start && *start) {
        const char *end = strchr(start, '\n');
        size_t n = end ? (size_t)(end - start) : strlen(start);
        if (n) {
            char *p = malloc(n + 1);
            if (!p) return -1;
            for (size_t i = 0; i < n; i++) p[i] = (char)tolower((unsigned char)start[i]);
            p[n] = 0;
            g_patterns[g_pattern_count++] = p;
        }
        start = end ? end + 1 : NULL;
    }
    g_max_bytes = max_bytes;
    g_full_items = full_items;
    g_call_repr = call_repr;
    return 0;
}

/* ---- Entry points ---- */

static inline int read_tagged(PyObject *const *args, Py_ssize_t nargs, uint64_t *out) {
    if (nargs < 1) return 0;
#if PY_VERSION_HEX < 0x030C0000
    /* PyLong_AsUnsignedLongLong goes through _PyLong_AsByteArray on 3.11 and was
     * half the cost of a recorded call; the tag's digits are read directly. */
    PyObject *o = args[0];
    Py_ssize_t size = Py_SIZE(o);
    const digit *d = ((PyLongObject *)o)->ob_digit;
    if (PyLong_CheckExact(o) && size >= 0 && size <= 3 &&
        (size < 3 || d[2] < (1u << (64 - 2 * PyLong_SHIFT)))) {
        uint64_t v = 0;
        for (Py_ssize_t i = size; i-- > 0;) v = (v << PyLong_SHIFT) | d[i];
        *out = v;
        return 1;
    }
#endif
    *out = PyLong_AsUnsignedLongLong(args[0]);
    if (*out == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* The value argument of a pass-through entry point, returned as a new reference. */
static inline PyObject *passed(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t at) {
    PyObject *value = nargs > at ? args[at] : Py_None;
    Py_INCREF(value);
    return value;
}

/* The thread's recorder state when this event should be handled, else NULL. */
static inline scope_thread *active_thread(void) {
    scope_thread *t = scope_tls_thread;
    if (!t || t->suppressed) return NULL;
    return t;
}

static void set_call_var(scope_frame *f) {
    PyObject *value = Py_BuildValue("(KI)", (unsigned long long)f->call_id, f->depth);
    if (value) f->token = PyContextVar_Set(g_call_var, value);
    Py_XDECREF(value);
    if (!f->token) PyErr_Clear();
}

/* The coroutine that created this task, from the context variable; 0 if none. */
static int call_var_parent(uint64_t *parent, uint32_t *depth) {
    PyObject *value = NULL;
    if (!g_call_var || PyContextVar_Get(g_call_var, NULL, &value) != 0) {
        PyErr_Clear();
        return 0;
    }
    int found = 0;
    unsigned long long id;
    unsigned int d;
    if (value && PyArg_ParseTuple(value, "KI", &id, &d)) {
        *parent = id;
        *depth = d + 1;
        found = 1;
    }
    PyErr_Clear();
    Py_XDECREF(value);
    return found;
}

/* A coroutine call that did not begin inside a recorded coroutine's await: if it
 * is the coroutine of the running asyncio task, the task is noted, named by its
 * root call (this one) and with the call that created it. */
static void note_task(scope_thread *t, scope_frame *f, uint64_t created_by) {
    PyObject *coro = f->frame ? frame_generator(f->frame) : NULL;
    if (!g_tasks || !coro) return;
    if (!g_current_task) {
        PyObject *module_name = PyUnicode_FromString("asyncio");
        PyObject *asyncio = module_name ? PyImport_GetModule(module_name) : NULL;
        g_current_task = asyncio ? PyObject_GetAttrString(asyncio, "current_task") : NULL;
        Py_XDECREF(asyncio);
        Py_XDECREF(module_name);
        if (!g_current_task) {
            PyErr_Clear();
            return;
        }
    }
    /* A Task subclass may answer in Python: its calls are scope's, not the program's. */
    t->suppressed = 1;
    PyObject *task = PyObject_CallNoArgs(g_current_task); /* RuntimeError: no loop */
    PyObject *task_coro = task && task != Py_None ? PyObject_CallMethod(task, "get_coro", NULL)
                                                  : NULL;
    PyObject *name = task_coro == coro ? PyObject_CallMethod(task, "get_name", NULL) : NULL;
    if (name) {
        PyObject *row = Py_BuildValue("(KOKI)", (unsigned long long)f->call_id, name,
                                      (unsigned long long)created_by, t->slot);
        if (row) PyList_Append(g_tasks, row);
        Py_XDECREF(row);
    }
    t->suppressed = 0;
    PyErr_Clear();
    Py_XDECREF(name);
    Py_XDECREF(task_coro);
    Py_XDECREF(task);
}

/* Notes threading's name for this thread, without running any of its code
 * (threading.current_thread() would make a dummy Thread for a raw thread). */
static void name_thread(scope_thread *t) {
    t->named = 1;
    PyObject *module_name = PyUnicode_FromString("threading");
    PyObject *threading = module_name ? PyImport_GetModule(module_name) : NULL;
    PyObject *active = threading ? PyObject_GetAttrString(threading, "_active") : NULL;
    PyObject *ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    PyObject *thread = active && ident && PyDict_Check(active) ? PyDict_GetItem(active, ident)
                                                                : NULL;
    PyObject *name = thread ? PyObject_GetAttrString(thread, "_name") : NULL;
    if (name && PyUnicode_Check(name)) {
        const char *text = PyUnicode_AsUTF8(name);
        if (text) scope_set_thread_name(text);
    }
    PyErr_Clear();
    Py_XDECREF(name);
    Py_XDECREF(ident);
    Py_XDECREF(active);
    Py_XDECREF(threading);
    Py_XDECREF(module_name);
}

/* enter(tagged_id, *args): a call begins; args are its parameters at args level. */
static PyObject *py_enter(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    if (!scope_enabled() || !read_tagged(args, nargs, &tagged)) Py_RETURN_NONE;
    scope_thread *t = scope_current_thread();
    if (!t) Py_RETURN_NONE;
    if (t->suppressed) {
        t->suppressed++;
        Py_RETURN_NONE;
    }
    if (!t->named) name_thread(t);
    uint8_t flags = (uint8_t)(tagged >> SCOPE_FLAG_SHIFT);
    const void *frame = current_frame();
    scope_frame *parent = top_of(t);
    if (frame && parent && (parent->flags & SCOPE_FLAG_EXPRESSION)) {
        drop_raised_lambdas(t, frame);
        parent = top_of(t);
    }
    scope_frame delegator;
    int delegated = 0;
    uint64_t created_by = 0; /* for a task's coroutine: the coroutine that created it */
    if (frame && (g_resumables || (flags & SCOPE_FLAG_RESUMABLE)))
        parent = settle_for_call(t, frame, flags & SCOPE_FLAG_RESUMABLE, &delegator, &delegated);
    uint64_t parent_id = parent ? parent->call_id : 0;
    uint32_t depth = parent ? parent->depth + 1 : 0;
    if (delegated) {
        parent_id = delegator.call_id;
        depth = delegator.depth + 1;
    } else if (flags & SCOPE_FLAG_ASYNC) {
        if (call_var_parent(&parent_id, &depth)) created_by = parent_id;
    }
    /* Read before the push, which may move the stack. */
    int parent_summed = parent && parent->call_id == parent_id && parent->summed;
    uint64_t parent_stored = parent_summed ? parent->stored_ancestor : parent_id;
    scope_frame *f = scope_push_call(t, tagged & FUNC_MASK, parent_id, depth, frame, flags);
    if (!f) Py_RETURN_NONE;
    if (past_budget(f->func_id)) {
        /* Summed, not stored: its sum goes to the nearest stored call around it. */
        f->summed = 1;
        f->stored_ancestor = parent_stored;
    }
    if (flags & SCOPE_FLAG_RESUMABLE) g_resumables++;
    if ((flags & SCOPE_FLAG_ASYNC) && !delegated && g_tasks) {
        note_task(t, f, created_by);
        f = top_of(t);
    }
    if ((flags & SCOPE_FLAG_ASYNC) && g_call_var) set_call_var(f);
    if (flags & SCOPE_FLAG_ARGS) {
        for (Py_ssize_t i = 1; i < nargs; i++) {
            record_value(t, f, SCOPE_ROLE_ARG, (uint16_t)(i - 1), args[i],
                         flags & SCOPE_FLAG_FULL, 0);
            f = top_of(t); /* a user repr may have grown the stack */
        }
    }
    Py_RETURN_NONE;
}

/* The innermost call of this frame returns; `value` is its return value when the
 * call reports one (a lambda at args level), else NULL. */
static void end_call(uint64_t tagged, PyObject *value) {
    scope_thread *t = scope_tls_thread;
    if (!t) return;
    if (t->suppressed) {
        if (t->suppressed > 1) t->suppressed--;
        return;
    }
    if (t->overflow_depth) {
        t->overflow_depth--;
        return;
    }
    scope_frame *f = running_call(t, current_frame(), tagged & FUNC_MASK);
    if (!f) {
        atomic_fetch_add_explicit(&t->unmatched_exits, 1, memory_order_relaxed);
        return;
    }
    uint8_t flags = (uint8_t)(tagged >> SCOPE_FLAG_SHIFT);
    if (value && (flags & SCOPE_FLAG_ARGS) && scope_enabled()) {
        record_value(t, f, SCOPE_ROLE_RETURN, 0, value, flags & SCOPE_FLAG_FULL, 0);
        f = top_of(t); /* a user repr may have grown the stack */
    }
    t->depth--;
    finish_call(t, f, 0);
}

/* exit(tagged_id): the innermost call of this frame ends (from its finally block). */
static PyObject *py_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    if (read_tagged(args, nargs, &tagged)) end_call(tagged, NULL);
    Py_RETURN_NONE;
}

/* leave(tagged_id, value) -> value: a lambda returns value (it has no finally
 * block, so an exception leaving it is noticed later: see drop_raised_lambdas). */
static PyObject *py_leave(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    if (nargs == 2 && read_tagged(args, nargs, &tagged)) end_call(tagged, args[1]);
    return passed(args, nargs, 1);
}

/* unwind(tagged_id): the call is ending by an exception (from its except block). */
static PyObject *py_unwind(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    scope_thread *t = active_thread();
    if (!t || t->overflow_depth || !read_tagged(args, nargs, &tagged)) Py_RETURN_NONE;
    scope_frame *f = running_call(t, current_frame(), tagged & FUNC_MASK);
    if (!f) Py_RETURN_NONE;
    f->raised = 1;
    uint8_t flags = (uint8_t)(tagged >> SCOPE_FLAG_SHIFT);
    if (scope_enabled() && f->recorded && !f->summed) {
        /* Every level keeps which exception left the call (its id links the calls
         * it passed through); its message is a value, kept from args level on. */
        PyObject *exc = PyErr_GetHandledException();
        if (exc && PyExceptionInstance_Check(exc)) {
            uint64_t raised_in = link_unwind(t, f, exc);
            if (flags & SCOPE_FLAG_ARGS) {
                record_value(t, f, SCOPE_ROLE_RAISE, 0, exc, flags & SCOPE_FLAG_FULL, raised_in);
            } else {
                const char *name = Py_TYPE(exc)->tp_name;
                scope_value_push(t, f->call_id, f->func_id, SCOPE_ROLE_RAISE, 0,
                                 SCOPE_TAG_EXCEPTION_TYPE, (int64_t)(uintptr_t)exc,
                                 (const uint8_t *)name, (uint32_t)strlen(name), raised_in);
            }
        }
        Py_XDECREF(exc);
    }
    Py_RETURN_NONE;
}

/* returning(tagged_id, value) -> value: the call returns value (args level). */
static PyObject *py_returning(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    scope_thread *t = active_thread();
    if (t && !t->overflow_depth && scope_enabled() && read_tagged(args, nargs, &tagged) &&
        nargs == 2) {
        scope_frame *f = running_call(t, current_frame(), tagged & FUNC_MASK);
        if (f)
            record_value(t, f, SCOPE_ROLE_RETURN, 0, args[1],
                         (tagged >> SCOPE_FLAG_SHIFT) & SCOPE_FLAG_FULL, 0);
    }
    return passed(args, nargs, 1);
}

/* assigning(tagged_id, index, value) -> value: self.<attribute index> = value. */
static PyObject *py_assigning(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    scope_thread *t = active_thread();
    if (t && !t->overflow_depth && scope_enabled() && nargs == 3 &&
        read_tagged(args, nargs, &tagged)) {
        long index = PyLong_AsLong(args[1]);
        scope_frame *f = index >= 0 ? running_call(t, current_frame(), tagged & FUNC_MASK) : NULL;
        if (f && f->summed) f = NULL; /* a summed call has no row to hang it on */
        if (f && (index & SCOPE_ATTR_REDACTED))
            scope_value_push(t, f->call_id, f->func_id, SCOPE_ROLE_ATTR,
                             (uint16_t)(index & (SCOPE_ATTR_REDACTED - 1)), SCOPE_TAG_REDACTED, 0,
                             NULL, 0, 0);
        else if (f && f->recorded)
            record_value(t, f, SCOPE_ROLE_ATTR, (uint16_t)index, args[2],
                         (tagged >> SCOPE_FLAG_SHIFT) & SCOPE_FLAG_FULL, 0);
        PyErr_Clear();
    }
    return passed(args, nargs, 2);
}

/* The frame of the call a suspension report belongs to: the current one, or for
 * an await inside comprehensions, the frame that runs the outermost of them. */
static const void *suspending_frame(uint64_t tagged) {
    const void *frame = current_frame();
    if (!((tagged >> SCOPE_FLAG_SHIFT) & SCOPE_FLAG_IN_COMPREHENSION)) return frame;
    for (int steps = 0; frame && steps < WALK_LIMIT && runs_comprehension(frame); steps++)
        frame = frame_caller(frame);
    return frame;
}

/* suspending(tagged_id, value) -> value: the generator or coroutine is about to yield
 * or await value. */
static PyObject *py_suspending(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    scope_thread *t = active_thread();
    if (t && !t->overflow_depth && read_tagged(args, nargs, &tagged)) {
        const void *frame = suspending_frame(tagged);
        if (frame && running_call(t, frame, tagged & FUNC_MASK)) park_top(t);
    }
    return passed(args, nargs, 1);
}

/* resumed(tagged_id, value) -> value: it continues after its yield or await. */
static PyObject *py_resumed(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged = 0;
    scope_thread *t = active_thread();
    const void *frame = read_tagged(args, nargs, &tagged) ? suspending_frame(tagged) : NULL;
    if (!t && frame && g_parked_len) t = scope_current_thread(); /* resumed on a new thread */
    if (t && !t->suppressed && !t->overflow_depth && frame) {
        scope_frame *top = top_of(t);
        parked *p = (top && top->frame == frame) ? NULL : parked_find(frame);
        if (p) {
            scope_frame ignored;
            int delegated = 0;
            settle_for_call(t, frame, 1, &ignored, &delegated);
            p = parked_find(frame); /* settling may have grown the table */
            if (p) unpark(t, p);
        }
    }
    return passed(args, nargs, 1);
}

/* unfinish_open() -> int: writes every call still open (on a stack or parked) as
 * unfinished and stops recording their ends; for when recording stops.  Holding
 * the GIL, it sees every stack and the parked table at rest. */
static PyObject *py_unfinish_open(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    size_t n = scope_unfinish_stacks();
    for (size_t i = 0; i < g_parked_cap; i++) {
        parked *p = &g_parked[i];
        if (!p->key || p->key == TOMBSTONE || !p->call.recorded) continue;
        scope_hold_unfinished(&p->call, p->call.last_own_id);
        p->call.recorded = 0;
        n++;
    }
    return PyLong_FromSize_t(n);
}

/* ---- Builtins that end the process: flush first ---- */

/* os._exit and the exec functions end the process without atexit handlers.
 * wrap_builtin(original, callback) returns a builtin that calls callback with
 * the same arguments, then original: the recorder stores everything first.  It
 * keeps the original's name, module, __self__ (the posix module), doc and text
 * signature, so the program sees the same kind of object with the same
 * answers to inspect. */
#define MAX_WRAPPED 8
static PyObject *g_wrapped_original[MAX_WRAPPED];
static PyObject *g_wrapped_callback[MAX_WRAPPED];
static PyMethodDef g_wrapped_def[MAX_WRAPPED];
static int g_wrapped_count = 0;

static PyObject *call_wrapped(int i, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *done = PyObject_Vectorcall(g_wrapped_callback[i], args, nargs, kwnames);
    if (!done) PyErr_Clear(); /* scope failing must not change what the call does */
    Py_XDECREF(done);
    return PyObject_Vectorcall(g_wrapped_original[i], args, nargs, kwnames);
}

#define WRAPPED(i)                                                                          \
    static PyObject *wrapped_##i(PyObject *self, PyObject *const *args, Py_ssize_t nargs, \
                                 PyObject *kwnames) {                                    \
        return call_wrapped(i, args, (Py_ssize_t)PyVectorcall_NARGS(nargs), kwnames);   \
    }
WRAPPED(0)
WRAPPED(1)
WRAPPED(2)
WRAPPED(3)
WRAPPED(4)
WRAPPED(5)
WRAPPED(6)
WRAPPED(7)
typedef PyObject *(*fast_with_keywords)(PyObject *, PyObject *const *, Py_ssize_t, PyObject *);
static fast_with_keywords g_wrappers[MAX_WRAPPED] = {
    wrapped_0, wrapped_1, wrapped_2, wrapped_3, wrapped_4, wrapped_5, wrapped_6, wrapped_7};

/* "name(sig)\n--\n\ndoc": how CPython stores a builtin's text signature in its doc. */
static char *builtin_doc(PyObject *original, const char *name) {
    PyObject *doc = PyObject_GetAttrString(original, "__doc__");
    PyObject *signature = PyObject_GetAttrString(original, "__text_signature__");
    PyErr_Clear();
    PyObject *text = NULL;
    if (signature && signature != Py_None && doc && doc != Py_None)
        text = PyUnicode_FromFormat("%s%U\n--\n\n%U", name, signature, doc);
    else if (doc && doc != Py_None)
        text = Py_NewRef(doc);
    char *copy = NULL;
    const char *utf8 = text ? PyUnicode_AsUTF8(text) : NULL;
    if (utf8) copy = strdup(utf8);
    PyErr_Clear();
    Py_XDECREF(text);
    Py_XDECREF(signature);
    Py_XDECREF(doc);
    return copy;
}

static PyObject *py_wrap_builtin(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyCFunction_Check(args[0]) || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "wrap_builtin(builtin, callback)");
        return NULL;
    }
    if (g_wrapped_count == MAX_WRAPPED) {
        PyErr_SetString(PyExc_RuntimeError, "wrap_builtin: no wrapper left");
        return NULL;
    }
    PyObject *original = args[0];
    PyMethodDef *def = ((PyCFunctionObject *)original)->m_ml;
    PyObject *owner = PyCFunction_GET_SELF(original);
    PyObject *module = ((PyCFunctionObject *)original)->m_module;
    int i = g_wrapped_count;
    char *name = strdup(def->ml_name);
    if (!name) return PyErr_NoMemory();
    g_wrapped_def[i].ml_name = name;
    g_wrapped_def[i].ml_meth = (PyCFunction)(void (*)(void))g_wrappers[i];
    g_wrapped_def[i].ml_flags = METH_FASTCALL | METH_KEYWORDS;
    g_wrapped_def[i].ml_doc = builtin_doc(original, name);
    PyObject *wrapper = PyCFunction_NewEx(&g_wrapped_def[i], owner, module);
    if (!wrapper) return NULL;
    g_wrapped_original[i] = Py_NewRef(original);
    g_wrapped_callback[i] = Py_NewRef(args[1]);
    g_wrapped_count++;
    return wrapper;
}

/* Calls func(*rest), or evaluates a code object in a globals dict directly (as the
 * interpreter runs a script: going through the exec builtin would cost the
 * program one level of recursion depth). */
static PyObject *call_or_eval(PyObject *func, PyObject *rest) {
    if (PyCode_Check(func) && PyTuple_GET_SIZE(rest) == 1 &&
        PyDict_Check(PyTuple_GET_ITEM(rest, 0)))
        return PyEval_EvalCode(func, PyTuple_GET_ITEM(rest, 0), PyTuple_GET_ITEM(rest, 0));
    return PyObject_Call(func, rest, NULL);
}

/* run_at_bottom(func, *args): call func(*args) as if nothing were below it on the
 * Python stack; run_at_bottom(code, globals) evaluates code in globals.  The
 * first frame func creates has no f_back, and the thread's recursion depth
 * counts from zero while it runs, so the recorded program sees the stack and
 * the recursion limit that it sees under plain python, not runpy's, click's and
 * scope's frames below it.  Both are restored afterwards.
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
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030D0000
    PyThreadState *ts = PyThreadState_Get();
    struct _PyInterpreterFrame *saved_frame = ts->cframe->current_frame;
    int depth = ts->RECURSION_LIMIT - ts->RECURSION_REMAINING;
    ts->cframe->current_frame = NULL;
    ts->RECURSION_REMAINING = ts->RECURSION_LIMIT;
    PyObject *result = call_or_eval(args[0], rest);
    ts->cframe->current_frame = saved_frame;
    ts->RECURSION_REMAINING = ts->RECURSION_LIMIT - depth;
#else
    PyObject *result = call_or_eval(args[0], rest);
#endif
    Py_DECREF(rest);
    return result;
}

/* set_runtime_objects(redacted, context_var): objects the entry points compare with. */
static PyObject *py_set_runtime_objects(PyObject *self, PyObject *const *args,
                                        Py_ssize_t nargs) {
    if (nargs != 3 || !PyContextVar_CheckExact(args[1]) || !PyList_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "set_runtime_objects(redacted, ContextVar, list)");
        return NULL;
    }
    Py_XSETREF(g_redacted, Py_NewRef(args[0]));
    Py_XSETREF(g_call_var, Py_NewRef(args[1]));
    Py_XSETREF(g_tasks, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

/* The last exit function of a forked child: it runs after the interpreter has
 * finalized everything the program could print, and points C's stderr at
 * /dev/null for the exit functions registered before it.  The child inherited
 * the parent's open recording (DuckDB objects it must never close: that could
 * write to the parent's file), and nanobind reports such objects as leaks on
 * stderr at exit, output the program would not have produced without scope. */
static void quiet_inherited_objects(void) {
    FILE *null = fopen("/dev/null", "w");
    if (null) stderr = null;
}

/* forked_child(): called in a forked child; arranges quiet_inherited_objects. */
static PyObject *py_forked_child(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    static int registered = 0;
    sigterm_after_fork_child();
    if (!registered && Py_AtExit(quiet_inherited_objects) == 0) registered = 1;
    return PyBool_FromLong(registered);
}

/* ---- SIGTERM: store what was captured, then die of the signal as python would ----
 *
 * Installed with sigaction, not the signal module, and only while SIGTERM has
 * its default action: signal.getsignal() keeps answering SIG_DFL, and a
 * program that sets its own handler replaces this one.  The handler only
 * writes a byte to a pipe; a watcher thread takes the GIL, runs the flush
 * callback, restores the default action and raises SIGTERM again. */

static int g_term_pipe[2] = {-1, -1};
static PyObject *g_term_callback = NULL;

static void on_sigterm(int signum) {
    int saved = errno;
    char byte = 1;
    ssize_t ignored = write(g_term_pipe[1], &byte, 1);
    (void)ignored;
    errno = saved;
}

static void *watch_sigterm(void *arg) {
    char byte;
    while (read(g_term_pipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
    if (!_Py_IsFinalizing()) {
        PyGILState_STATE gil = PyGILState_Ensure();
        PyObject *callback = g_term_callback; /* the callback may drop the global reference */
        Py_XINCREF(callback);
        PyObject *result = callback ? PyObject_CallNoArgs(callback) : NULL;
        Py_XDECREF(result);
        Py_XDECREF(callback);
        PyErr_Clear();
        PyGILState_Release(gil);
    }
    signal(SIGTERM, SIG_DFL);
    raise(SIGTERM);
    return NULL;
}

static int sigterm_is_ours(void) {
    struct sigaction current;
    return sigaction(SIGTERM, NULL, &current) == 0 && current.sa_handler == on_sigterm;
}

/* flush_on_sigterm(callback) -> bool: installed (SIGTERM had its default action). */
static PyObject *py_flush_on_sigterm(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    struct sigaction current;
    if (nargs != 1 || !PyCallable_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "flush_on_sigterm(callback)");
        return NULL;
    }
    if (sigaction(SIGTERM, NULL, &current) != 0 || current.sa_handler != SIG_DFL ||
        g_term_pipe[0] >= 0)
        Py_RETURN_FALSE;
    if (pipe2(g_term_pipe, O_CLOEXEC) != 0) Py_RETURN_FALSE;
    pthread_t watcher;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int started = pthread_create(&watcher, &attr, watch_sigterm, NULL) == 0;
    pthread_attr_destroy(&attr);
    if (!started) {
        close(g_term_pipe[0]);
        close(g_term_pipe[1]);
        g_term_pipe[0] = g_term_pipe[1] = -1;
        Py_RETURN_FALSE;
    }
    Py_INCREF(args[0]);
    Py_XSETREF(g_term_callback, args[0]);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_sigterm;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, NULL);
    Py_RETURN_TRUE;
}

/* no_flush_on_sigterm(): SIGTERM's default action back (if still ours), callback dropped. */
static PyObject *py_no_flush_on_sigterm(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (sigterm_is_ours()) signal(SIGTERM, SIG_DFL);
    Py_CLEAR(g_term_callback);
    Py_RETURN_NONE;
}

/* The watcher thread does not survive fork: a child gets SIGTERM's default back. */
static void sigterm_after_fork_child(void) {
    if (sigterm_is_ours()) signal(SIGTERM, SIG_DFL);
    if (g_term_pipe[0] >= 0) {
        close(g_term_pipe[0]);
        close(g_term_pipe[1]);
        g_term_pipe[0] = g_term_pipe[1] = -1;
    }
}

static void *release_gil(void) { return PyGILState_Check() ? PyEval_SaveThread() : NULL; }

static void reacquire_gil(void *saved) {
    if (saved) PyEval_RestoreThread((PyThreadState *)saved);
}

/* ---- Threads: who started each one ---- */

static PyObject *g_start_new_thread = NULL; /* _thread.start_new_thread */
static PyObject *g_thread_main = NULL;      /* py_thread_main as a function object */

/* thread_main(function, args, kwargs, parent_slot, started_by): runs in the new
 * thread, as its first and only C frame below threading's bootstrap; notes the
 * thread's origin and name, then runs function(*args, **kwargs). */
static PyObject *py_thread_main(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "thread_main(function, args, kwargs, slot, call)");
        return NULL;
    }
    if (scope_enabled()) {
        scope_thread *t = scope_current_thread();
        unsigned long slot = PyLong_AsUnsignedLong(args[3]);
        unsigned long long call = PyLong_AsUnsignedLongLong(args[4]);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            slot = 0;
            call = 0;
        }
        if (t) {
            scope_set_thread_origin((uint32_t)slot, (uint64_t)call);
            /* threading.Thread._bootstrap: its Thread's name, before run() begins */
            PyObject *owner = PyMethod_Check(args[0]) ? PyMethod_GET_SELF(args[0]) : NULL;
            PyObject *name = owner ? PyObject_GetAttrString(owner, "_name") : NULL;
            if (name && PyUnicode_Check(name)) {
                const char *text = PyUnicode_AsUTF8(name);
                if (text) {
                    scope_set_thread_name(text);
                    t->named = 1;
                }
            }
            Py_XDECREF(name);
            PyErr_Clear();
        }
    }
    PyObject *kwargs = args[2] == Py_None ? NULL : args[2];
    return PyObject_Call(args[0], args[1], kwargs);
}

static PyMethodDef g_thread_main_def = {"thread_main", (PyCFunction)(void (*)(void))py_thread_main,
                                        METH_FASTCALL, "Runs a thread scope follows."};

/* start_new_thread(function, args[, kwargs]): _thread.start_new_thread, noting the
 * calling thread and its innermost open call as the new thread's origin.  It
 * stands in for threading._start_new_thread while recording. */
static PyObject *py_start_new_thread(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!g_start_new_thread) {
        PyObject *thread = PyImport_ImportModule("_thread");
        g_start_new_thread = thread ? PyObject_GetAttrString(thread, "start_new_thread") : NULL;
        Py_XDECREF(thread);
        if (!g_start_new_thread) return NULL;
    }
    if (!g_thread_main) g_thread_main = PyCFunction_New(&g_thread_main_def, NULL);
    if (!g_thread_main || nargs < 2 || nargs > 3)
        return PyObject_Vectorcall(g_start_new_thread, args, (size_t)nargs, NULL);
    uint32_t slot = 0;
    uint64_t call = 0;
    scope_thread *t = scope_enabled() ? scope_current_thread() : NULL;
    if (t) {
        slot = t->slot;
        for (uint32_t i = t->depth; i-- > 0;) {
            if (t->stack[i].recorded) {
                call = t->stack[i].call_id;
                break;
            }
        }
    }
    PyObject *inner = Py_BuildValue("(OOOkK)", args[0], args[1], nargs == 3 ? args[2] : Py_None,
                                    (unsigned long)slot, (unsigned long long)call);
    if (!inner) return NULL;
    PyObject *result = PyObject_CallFunctionObjArgs(g_start_new_thread, g_thread_main, inner, NULL);
    Py_DECREF(inner);
    return result;
}

/* ---- A child's exit status, which only the C library sees ----
 *
 * Python code cannot learn the status a process exits with (a script's end,
 * sys.exit, raise SystemExit, an uncaught exception): the interpreter hands it
 * to exit() after finalizing.  glibc's on_exit() passes it to its handlers, and
 * this one writes it to a file the run's top process reads when it merges the
 * child's recording.  Forked children inherit the handler, so it writes only
 * for the process that last named a file (the pid is kept with the path). */

static char *g_status_path = NULL;
static pid_t g_status_pid = 0;
static int g_status_handler = 0;

static void write_exit_status(int status, void *arg) {
    (void)arg;
    if (!g_status_path || getpid() != g_status_pid) return;
    int fd = open(g_status_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    char text[16];
    int n = snprintf(text, sizeof text, "%d\n", status & 0xFF);
    if (n > 0 && write(fd, text, (size_t)n) < 0) { /* nothing to be done at exit */
    }
    close(fd);
}

/* note_exit_status(path): write this process's exit status to path when it exits. */
static PyObject *py_note_exit_status(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *path = nargs == 1 && PyUnicode_Check(args[0]) ? PyUnicode_AsUTF8(args[0]) : NULL;
    if (!path) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "note_exit_status(path)");
        return NULL;
    }
    char *copy = strdup(path);
    if (!copy) return PyErr_NoMemory();
    free(g_status_path);
    g_status_path = copy;
    g_status_pid = getpid();
#ifdef __GLIBC__
    if (!g_status_handler && on_exit(write_exit_status, NULL) == 0) g_status_handler = 1;
#endif
    return PyBool_FromLong(g_status_handler);
}

/* current_call() -> int: the innermost recorded call open on this thread, or 0. */
static PyObject *py_current_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    scope_thread *t = scope_tls_thread;
    for (uint32_t d = t ? t->depth : 0; d-- > 0;)
        if (t->stack[d].recorded && !t->stack[d].summed)
            return PyLong_FromUnsignedLongLong(t->stack[d].call_id);
    return PyLong_FromLong(0);
}

/* raised_in(exception) -> int: the innermost recorded call `exception` left on this
 * thread, lately; 0 if it left none scope saw. */
static PyObject *py_raised_in(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    scope_thread *t = scope_tls_thread;
    if (nargs != 1 || !t) return PyLong_FromLong(0);
    for (uint32_t k = 1; k <= SCOPE_RECENT_UNWINDS; k++) {
        const scope_unwind *u = &t->recent_unwinds[(t->recent_next - k) % SCOPE_RECENT_UNWINDS];
        if (u->exception == args[0]) return PyLong_FromUnsignedLongLong(u->raised_in);
    }
    return PyLong_FromLong(0);
}

/* ---- Audit events (PEP 578): recorded against the call that caused them ---- */

#define MAX_AUDITED 64
/* Nonzero while this thread does scope's own work (see py_scope_work). */
static __thread unsigned tls_scope_work = 0;
static char *g_audited[MAX_AUDITED];
static size_t g_audited_count = 0;
static int g_audit_hook_added = 0;

/* An audit hook cannot be removed: it stays for the life of the process and does
 * nothing once the configured list is empty.  It never fails the event. */
/* A child interpreter's own program (its script, or its -c text) is compiled by
 * the interpreter, not imported, so no hook sees it.  The interpreter raises the
 * "exec" audit event with the compiled code just before running it, with no
 * Python frame on the stack; scope_child.take_over_main asks for that moment.
 * The program then runs here instead, instrumented, in __main__'s namespace, as
 * the bottom frame; its exception (SystemExit included) is handed back to the
 * interpreter, which reports it as its own, and a normal end becomes
 * SystemExit(None), which ends the process as the end of the program would. */
static PyObject *g_main_filename = NULL; /* the co_filename of the program's code */
static PyObject *g_main_compile = NULL;  /* callback(code) -> instrumented code or None */

static int run_main_instrumented(PyObject *args) {
    PyObject *code = PyTuple_Check(args) && PyTuple_GET_SIZE(args) == 1 ? PyTuple_GET_ITEM(args, 0)
                                                                         : NULL;
    if (!code || !PyCode_Check(code) || current_frame() != NULL) return 0;
    int same = PyUnicode_Compare(((PyCodeObject *)code)->co_filename, g_main_filename) == 0;
    if (PyErr_Occurred()) PyErr_Clear();
    if (!same) return 0;
    PyObject *compile = g_main_compile;
    g_main_compile = NULL;
    Py_CLEAR(g_main_filename);
    PyObject *instrumented = PyObject_CallOneArg(compile, code);
    Py_DECREF(compile);
    if (!instrumented || !PyCode_Check(instrumented)) {
        PyErr_Clear();
        Py_XDECREF(instrumented);
        return 0; /* the interpreter runs its own code */
    }
    PyObject *main = PyImport_AddModule("__main__"); /* borrowed */
    PyObject *globals = main ? PyModule_GetDict(main) : NULL;
    PyObject *result = globals ? PyEval_EvalCode(instrumented, globals, globals) : NULL;
    Py_DECREF(instrumented);
    if (!result && PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        /* Python reports it, runs the exit functions, then dies of SIGINT (130);
         * the flag that makes it do so is set only on its own path. */
        PyErr_Print();
        PyObject *atexit = PyImport_ImportModule("atexit");
        PyObject *done = atexit ? PyObject_CallMethod(atexit, "_run_exitfuncs", NULL) : NULL;
        Py_XDECREF(done);
        Py_XDECREF(atexit);
        PyErr_Clear();
        const char *streams[] = {"stdout", "stderr"};
        for (int k = 0; k < 2; k++) {
            PyObject *stream = PySys_GetObject(streams[k]); /* borrowed */
            PyObject *flushed = stream ? PyObject_CallMethod(stream, "flush", NULL) : NULL;
            Py_XDECREF(flushed);
            PyErr_Clear();
        }
        write_exit_status(128 + SIGINT, NULL); /* no exit() to tell the handler */
        signal(SIGINT, SIG_DFL);
        kill(getpid(), SIGINT);
    }
    if (!result) return -1;
    Py_DECREF(result);
    PyErr_SetObject(PyExc_SystemExit, Py_None);
    return -1;
}

static int audit_hook(const char *event, PyObject *args, void *data) {
    if (g_main_compile && strcmp(event, "exec") == 0) {
        int outcome = run_main_instrumented(args);
        if (outcome) return outcome;
    }
    size_t n = g_audited_count;
    if (!n || tls_scope_work || !scope_enabled()) return 0;
    size_t i = 0;
    while (i < n && strcmp(event, g_audited[i]) != 0) i++;
    if (i == n) return 0;
    scope_thread *t = scope_tls_thread ? scope_tls_thread : scope_current_thread();
    if (!t || t->suppressed || t->overflow_depth) return 0;
    uint64_t call = 0, func = 0;
    for (uint32_t d = t->depth; d-- > 0;) {
        if (t->stack[d].recorded && !t->stack[d].summed) {
            call = t->stack[d].call_id;
            func = t->stack[d].func_id;
            break;
        }
    }
    PyObject *saved_type, *saved_value, *saved_tb;
    PyErr_Fetch(&saved_type, &saved_value, &saved_tb);
    PyObject *subject = Py_NewRef(args);
    if (strcmp(event, "import") == 0 && PyTuple_Check(args) && PyTuple_GET_SIZE(args) >= 1) {
        /* (name, filename, sys.path, sys.meta_path, sys.path_hooks): the name says it */
        Py_SETREF(subject, Py_NewRef(PyTuple_GET_ITEM(args, 0)));
    } else if (strcmp(event, "sys.unraisablehook") == 0 && PyTuple_Check(args) &&
               PyTuple_GET_SIZE(args) >= 2) {
        /* (hook, UnraisableHookArgs): what matters is the exception */
        PyObject *exc = PyObject_GetAttrString(PyTuple_GET_ITEM(args, 1), "exc_value");
        if (exc) Py_SETREF(subject, exc);
        PyErr_Clear();
    }
    t->suppressed = 1; /* a repr() asked for by call_repr may raise events of its own */
    summary s;
    summarize(t, subject, 1, &s);
    t->suppressed = 0;
    Py_DECREF(subject);
    scope_value_push(t, call, func, SCOPE_ROLE_EVENT, (uint16_t)i, s.tag, s.payload, s.buf, s.len,
                     (uint64_t)scope_now_ns());
    PyErr_Restore(saved_type, saved_value, saved_tb);
    return 0;
}

/* scope_work(begin): scope's own work on this thread (instrumenting a module, the
 * writer) starts (True) or ends (False): nothing it does is the program's. */
static PyObject *py_scope_work(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "scope_work(begin)");
        return NULL;
    }
    if (PyObject_IsTrue(args[0]))
        tls_scope_work++;
    else if (tls_scope_work)
        tls_scope_work--;
    Py_RETURN_NONE;
}

static int add_audit_hook(void) {
    if (!g_audit_hook_added && PySys_AddAuditHook(audit_hook, NULL) == 0) g_audit_hook_added = 1;
    if (!g_audit_hook_added) PyErr_Clear();
    return g_audit_hook_added;
}

/* take_over_main(filename, compile) -> bool: when the interpreter is about to run
 * code compiled from `filename` as its program, run compile(code) instead. */
static PyObject *py_take_over_main(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "take_over_main(filename, compile)");
        return NULL;
    }
    Py_XSETREF(g_main_filename, Py_NewRef(args[0]));
    Py_XSETREF(g_main_compile, Py_NewRef(args[1]));
    return PyBool_FromLong(add_audit_hook());
}

/* configure_audit(names) -> bool: record these audit events (a newline-separated
 * string; empty: none).  The hook is added at the first non-empty list. */
static PyObject *py_configure_audit(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 1 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "configure_audit(names)");
        return NULL;
    }
    const char *text = PyUnicode_AsUTF8(args[0]);
    if (!text) return NULL;
    size_t count = 0;
    char *names[MAX_AUDITED];
    for (const char *start = text; *start && count < MAX_AUDITED;) {
        const char *end = strchr(start, '\n');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        if (len) {
            names[count] = strndup(start, len);
            if (!names[count]) break;
            count++;
        }
        if (!end) break;
        start = end + 1;
    }
    /* The hook reads the list with the GIL held, as this does. */
    size_t old = g_audited_count;
    g_audited_count = 0;
    for (size_t i = 0; i < old; i++) free(g_audited[i]);
    for (size_t i = 0; i < count; i++) g_audited[i] = names[i];
    g_audited_count = count;
    if (count && !add_audit_hook()) {
        g_audited_count = 0; /* another hook refused ours: say so, record without events */
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

#define FASTCALL(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL

static PyMethodDef entry_points[] = {
    {"run_at_bottom", FASTCALL(py_run_at_bottom),
     "run_at_bottom(func, *args) or (code, globals): run with no Python frame below."},
    {"enter", FASTCALL(py_enter), "enter(tagged_id, *args): a call begins on this thread."},
    {"exit", FASTCALL(py_exit), "exit(tagged_id): the call running in this frame ends."},
    {"leave", FASTCALL(py_leave), "leave(tagged_id, value) -> value: a lambda returns value."},
    {"unwind", FASTCALL(py_unwind), "unwind(tagged_id): the call is ending by an exception."},
    {"returning", FASTCALL(py_returning), "returning(tagged_id, value) -> value: it returns."},
    {"assigning", FASTCALL(py_assigning),
     "assigning(tagged_id, index, value) -> value: it sets an attribute of self."},
    {"suspending", FASTCALL(py_suspending),
     "suspending(tagged_id, value) -> value: it yields or awaits value."},
    {"resumed", FASTCALL(py_resumed), "resumed(tagged_id, value) -> value: it continues."},
    {"wrap_builtin", FASTCALL(py_wrap_builtin),
     "wrap_builtin(builtin, callback): a look-alike that calls callback first."},
    {"unfinish_open", FASTCALL(py_unfinish_open),
     "unfinish_open() -> int: write every open call as unfinished."},
    {"flush_on_sigterm", FASTCALL(py_flush_on_sigterm),
     "flush_on_sigterm(callback) -> bool: on SIGTERM, call it, then die of SIGTERM."},
    {"no_flush_on_sigterm", FASTCALL(py_no_flush_on_sigterm),
     "no_flush_on_sigterm(): undo flush_on_sigterm (if the program has not replaced it)."},
    {"forked_child", FASTCALL(py_forked_child),
     "forked_child() -> bool: quiet the inherited recording's objects at this child's exit."},
    {"start_new_thread", FASTCALL(py_start_new_thread),
     "start_new_thread(function, args[, kwargs]): _thread's, noting who started the thread."},
    {"scope_work", FASTCALL(py_scope_work),
     "scope_work(begin): scope's own work on this thread begins or ends (not recorded)."},
    {"take_over_main", FASTCALL(py_take_over_main),
     "take_over_main(filename, compile) -> bool: run the interpreter's program instrumented."},
    {"configure_audit", FASTCALL(py_configure_audit),
     "configure_audit(names) -> bool: record these audit events (newline-separated)."},
    {"note_exit_status", FASTCALL(py_note_exit_status),
     "note_exit_status(path) -> bool: write the process's exit status to path at exit."},
    {"current_call", FASTCALL(py_current_call),
     "current_call() -> int: the innermost recorded call open on this thread, or 0."},
    {"raised_in", FASTCALL(py_raised_in),
     "raised_in(exception) -> int: the innermost recorded call it left on this thread, or 0."},
    {"set_runtime_objects", FASTCALL(py_set_runtime_objects),
     "set_runtime_objects(redacted, context_var, tasks): the sentinel, the call variable "
     "and the list asyncio tasks are noted in."},
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
    scope_before_wait = release_gil;
    scope_after_wait = reacquire_gil;
    PyGILState_Release(gil);
    return rc;
}

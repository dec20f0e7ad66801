/* Value summaries: arguments, return values, exceptions, attribute writes and
 * audit events, described without running the program's code.
 *
 * A summary is a type and, for primitives, a bounded value; containers by type
 * and length (at full level, their first few items); other objects by type and
 * identity.  User __repr__ runs only when the configuration asks for it, and
 * values under names that look like secrets are redacted.
 */

#include "py_recorder.h"

#include <ctype.h>

#define SUMMARY_MAX 1024
#define ITEM_MAX 48

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
    static const char hex[] = "0123456789abcdef";
    uint8_t out[6];
    uint32_t used = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        uint32_t w;
        if (c >= 0xDC80 && c <= 0xDCFF) { /* a byte surrogateescape kept: \xNN, as storage/text.py */
            out[0] = '\\';
            out[1] = 'x';
            out[2] = (uint8_t)hex[((c - 0xDC00) >> 4) & 0xF];
            out[3] = (uint8_t)hex[c & 0xF];
            w = 4;
        } else if (c >= 0xD800 && c <= 0xDFFF) { /* any other lone surrogate: \uNNNN */
            out[0] = '\\';
            out[1] = 'u';
            for (int d = 0; d < 4; d++) out[2 + d] = (uint8_t)hex[(c >> (12 - 4 * d)) & 0xF];
            w = 6;
        } else if (c < 0x80) {
            out[0] = (uint8_t)c;
            w = 1;
        } else if (c < 0x800) {
            out[0] = 0xC0 | (c >> 6);
            out[1] = 0x80 | (c & 0x3F);
            w = 2;
        } else if (c < 0x10000) {
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

/* Whether the whole of name[0..n) matches pattern, ignoring case: '*' stands for
 * any characters, every other character for itself (scope/redaction.py's rule). */
static int glob_matches(const char *pattern, const char *name, size_t n) {
    size_t p = 0, i = 0, star = SIZE_MAX, resume = 0;
    while (i < n) {
        if (pattern[p] == '*') {
            star = p++;
            resume = i;
        } else if (pattern[p] && pattern[p] == (char)tolower((unsigned char)name[i])) {
            p++;
            i++;
        } else if (star != SIZE_MAX) {
            p = star + 1;
            i = ++resume;
        } else {
            return 0;
        }
    }
    while (pattern[p] == '*') p++;
    return pattern[p] == 0;
}

/* A dict key that names a secret: a str (a subclass too, read without running
 * its code) that one of the patterns matches. */
static int is_secret_name(PyObject *key) {
    if (!PyUnicode_Check(key) || !PyUnicode_IS_ASCII(key)) return 0;
    const char *name = (const char *)PyUnicode_DATA(key);
    size_t n = (size_t)PyUnicode_GET_LENGTH(key);
    for (size_t p = 0; p < g_pattern_count; p++)
        if (glob_matches(g_patterns[p], name, n)) return 1;
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
        /* An exact set or frozenset: its iterator is C and runs no program code
         * (public API; _PySet_NextEntry became internal in 3.13). */
        PyObject *items = PyObject_GetIter(o);
        PyObject *key;
        for (uint32_t i = 0; items && i < limit && (key = PyIter_Next(items)); i++) {
            put_item(t, s, key, 0);
            Py_DECREF(key);
        }
        Py_XDECREF(items);
        PyErr_Clear();
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
            s->payload = scope_long_bits(o) * overflow;
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

void scope_record_value(scope_thread *t, const scope_frame *call, uint8_t role, uint16_t index,
                         PyObject *o, int full, uint64_t raised_in) {
    if (!call->recorded || call->summed) return; /* a summed call has no row to hang it on */
    if (o == scope_g_redacted) {
        scope_value_push(t, call->call_id, call->func_id, role, index, SCOPE_TAG_REDACTED, 0, NULL,
                         0, raised_in);
        return;
    }
    summary s;
    summarize(t, o, full, &s);
    scope_value_push(t, call->call_id, call->func_id, role, index, s.tag, s.payload, s.buf,
                     s.len, raised_in);
}

void scope_record_event_value(scope_thread *t, uint64_t call, uint64_t func, uint16_t index,
                              PyObject *o) {
    t->suppressed = 1; /* a repr() asked for by call_repr may raise events of its own */
    summary s;
    summarize(t, o, 1, &s);
    t->suppressed = 0;
    scope_value_push(t, call, func, SCOPE_ROLE_EVENT, index, s.tag, s.payload, s.buf, s.len,
                     (uint64_t)scope_now_ns());
}

/* The innermost call that exception exc has left on this thread, given that it
 * is now leaving call f: the same as for the child it last left, if it just
 * left one of f's children, else f itself (it was raised in f, or in code that
 * is not recorded).  An exception is known by its object and by where it was
 * raised (its innermost traceback entry), so a new exception that reuses a freed
 * one's address is not taken for it. */
uint64_t scope_link_unwind(scope_thread *t, const scope_frame *f, PyObject *exc) {
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


/* Audit events (PEP 578), recorded against the call that caused them, and a
 * child interpreter's own program, which the "exec" audit event hands over.
 */

#include "py_recorder.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_AUDITED 64
/* Nonzero while this thread does scope's own work (see py_scope_work). */
static __thread unsigned tls_scope_work = 0;
/* The clock when this thread's outermost piece of scope's work began. */
static __thread int64_t tls_scope_work_began = 0;
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
    if (!code || !PyCode_Check(code) || scope_current_frame() != NULL) return 0;
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
    PyObject *globals = scope_main_globals(); /* borrowed */
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
        scope_write_exit_status(128 + SIGINT, NULL); /* no exit() to tell the handler */
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
    scope_thread *t = scope_current_thread();
    if (!t || t->suppressed || t->overflow_depth) return 0;
    uint64_t call = 0, func = 0;
    for (uint32_t d = t->depth; d-- > 0;) {
        if (t->stack[d].recorded && !t->stack[d].summed) {
            call = t->stack[d].call_id;
            func = t->stack[d].func_id;
            break;
        }
    }
    scope_saved_error saved;
    scope_error_save(&saved);
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
    scope_record_event_value(t, call, func, (uint16_t)i, subject);
    Py_DECREF(subject);
    scope_error_restore(&saved);
    return 0;
}

/* Leaves `ticks` of scope's own work out of the active time of the calls open on
 * this thread: it is counted as time they were suspended, so that instrumenting a
 * module imported inside a call (libcst, on a cold cache) is not charged to it. */
static void leave_out_of_open_calls(int64_t ticks) {
    scope_thread *t = scope_tls_thread;
    if (!t || ticks <= 0 ||
        t->generation != atomic_load_explicit(&scope_g_ring_generation, memory_order_relaxed))
        return;
    for (uint32_t i = 0; i < t->depth; i++) t->stack[i].suspended_ticks += (uint64_t)ticks;
}

/* scope_work(begin): scope's own work on this thread (instrumenting a module, the
 * writer) starts (True) or ends (False): nothing it does is the program's, neither
 * its audit events nor its time. */
static PyObject *py_scope_work(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "scope_work(begin)");
        return NULL;
    }
    if (PyObject_IsTrue(args[0])) {
        if (tls_scope_work++ == 0) tls_scope_work_began = scope_ticks();
    } else if (tls_scope_work && --tls_scope_work == 0) {
        leave_out_of_open_calls(scope_ticks() - tls_scope_work_began);
    }
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

PyMethodDef scope_audit_methods[] = {
    {"scope_work", SCOPE_FASTCALL(py_scope_work),
     "scope_work(begin): scope's own work on this thread begins or ends (not recorded)."},
    {"take_over_main", SCOPE_FASTCALL(py_take_over_main),
     "take_over_main(filename, compile) -> bool: run the interpreter's program instrumented."},
    {"configure_audit", SCOPE_FASTCALL(py_configure_audit),
     "configure_audit(names) -> bool: record these audit events (newline-separated)."},
    {NULL, NULL, 0, NULL},
};

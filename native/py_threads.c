/* Threads: who started each one.
 *
 * While recording, threading's _start_new_thread (3.11, 3.12) or
 * _start_joinable_thread (3.13+) is replaced by a C function here that notes
 * the starting thread and its innermost open call, and runs the new thread
 * under thread_main, which records them with the thread's name before the
 * thread's function begins.  Being C, neither adds a frame to the new thread's
 * stack.
 */
#include "py_recorder.h"

/* The origin of a thread scope starts for the program: what it runs, and who
 * started it.  It is the `self` of the C function the new thread runs first. */
typedef struct {
    PyObject *function, *args, *kwargs; /* kwargs: NULL for none */
    uint32_t parent_slot;
    uint64_t started_by;
} origin;

/* Runs in the new thread, as its first and only C frame below threading's
 * bootstrap: notes the thread's origin and name, then runs the function. */
static PyObject *thread_entry(PyObject *capsule, PyObject *unused) {
    origin *o = PyCapsule_GetPointer(capsule, "scope.thread_origin");
    if (!o) return NULL;
    scope_thread *t = scope_enabled() ? scope_current_thread() : NULL;
    if (t) {
        scope_set_thread_origin(o->parent_slot, o->started_by);
        /* threading.Thread._bootstrap: its Thread's name, before run() begins */
        PyObject *owner = PyMethod_Check(o->function) ? PyMethod_GET_SELF(o->function) : NULL;
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
    return PyObject_Call(o->function, o->args, o->kwargs);
}

static PyMethodDef g_thread_entry_def = {"thread_entry", thread_entry, METH_NOARGS,
                                         "Runs a thread scope follows."};

static void free_origin(PyObject *capsule) {
    origin *o = PyCapsule_GetPointer(capsule, "scope.thread_origin");
    if (!o) return;
    Py_XDECREF(o->function);
    Py_XDECREF(o->args);
    Py_XDECREF(o->kwargs);
    PyMem_Free(o);
}

/* A function of no arguments that runs function(*args, **kwargs) in a new
 * thread, noting the calling thread and its innermost open call as its origin. */
static PyObject *followed(PyObject *function, PyObject *args, PyObject *kwargs) {
    origin *o = PyMem_Calloc(1, sizeof *o);
    if (!o) return PyErr_NoMemory();
    o->function = Py_NewRef(function);
    o->args = Py_NewRef(args);
    o->kwargs = kwargs && kwargs != Py_None ? Py_NewRef(kwargs) : NULL;
    scope_thread *t = scope_enabled() ? scope_current_thread() : NULL;
    if (t) {
        o->parent_slot = t->slot;
        for (uint32_t i = t->depth; i-- > 0;) {
            if (t->stack[i].recorded) {
                o->started_by = t->stack[i].call_id;
                break;
            }
        }
    }
    PyObject *capsule = PyCapsule_New(o, "scope.thread_origin", free_origin);
    if (!capsule) {
        Py_DECREF(o->function);
        Py_DECREF(o->args);
        Py_XDECREF(o->kwargs);
        PyMem_Free(o);
        return NULL;
    }
    PyObject *entry = PyCFunction_New(&g_thread_entry_def, capsule);
    Py_DECREF(capsule);
    return entry;
}

/* _thread's function `name`, looked up once (new reference kept in *cache). */
static PyObject *thread_function(PyObject **cache, const char *name) {
    if (!*cache) {
        PyObject *module = PyImport_ImportModule("_thread");
        *cache = module ? PyObject_GetAttrString(module, name) : NULL;
        Py_XDECREF(module);
    }
    return *cache;
}

/* start_new_thread(function, args[, kwargs]): _thread.start_new_thread, following
 * the thread.  It stands in for threading._start_new_thread (3.11, 3.12). */
static PyObject *py_start_new_thread(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    static PyObject *original = NULL;
    if (!thread_function(&original, "start_new_thread")) return NULL;
    /* What the original refuses, it refuses in its own words. */
    if (nargs < 2 || nargs > 3 || !PyTuple_Check(args[1]) || (nargs == 3 && !PyDict_Check(args[2])))
        return PyObject_Vectorcall(original, args, (size_t)nargs, NULL);
    PyObject *entry = followed(args[0], args[1], nargs == 3 ? args[2] : NULL);
    if (!entry) return NULL;
    PyObject *no_args = PyTuple_New(0);
    PyObject *result = no_args ? PyObject_CallFunctionObjArgs(original, entry, no_args, NULL) : NULL;
    Py_XDECREF(no_args);
    Py_DECREF(entry);
    return result;
}

/* start_joinable_thread(function, handle=None, daemon=True): _thread's, following
 * the thread.  It stands in for threading._start_joinable_thread (3.13+), which
 * Thread.start calls with the bootstrap function and keyword arguments. */
static PyObject *py_start_joinable_thread(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                          PyObject *kwnames) {
    static PyObject *original = NULL;
    if (!thread_function(&original, "start_joinable_thread")) return NULL;
    nargs = PyVectorcall_NARGS(nargs);
    if (nargs < 1) return PyObject_Vectorcall(original, args, (size_t)nargs, kwnames);
    PyObject *no_args = PyTuple_New(0);
    PyObject *entry = no_args ? followed(args[0], no_args, NULL) : NULL;
    Py_XDECREF(no_args);
    if (!entry) return NULL;
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject **call_args = PyMem_Malloc((size_t)total * sizeof *call_args);
    if (!call_args) {
        Py_DECREF(entry);
        return PyErr_NoMemory();
    }
    call_args[0] = entry;
    for (Py_ssize_t i = 1; i < total; i++) call_args[i] = args[i];
    PyObject *result = PyObject_Vectorcall(original, call_args, (size_t)nargs, kwnames);
    PyMem_Free(call_args);
    Py_DECREF(entry);
    return result;
}

PyMethodDef scope_thread_methods[] = {
    {"start_new_thread", SCOPE_FASTCALL(py_start_new_thread),
     "start_new_thread(function, args[, kwargs]): _thread's, noting who started the thread."},
    {"start_joinable_thread", (PyCFunction)(void (*)(void))py_start_joinable_thread,
     METH_FASTCALL | METH_KEYWORDS,
     "start_joinable_thread(function, handle=None, daemon=True): _thread's, noting who "
     "started the thread."},
    {NULL, NULL, 0, NULL},
};

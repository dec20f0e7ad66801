/* The entry points instrumented code calls (enter, exit, leave, unwind,
 * returning, wrote, suspending, resumed), the questions the Python side
 * asks about open calls, and the installation of every file's functions into
 * the extension module.  See py_recorder.h for the model.
 */
#include "py_recorder.h"
#include "structmember.h"

PyObject *scope_g_redacted = NULL;
PyObject *scope_g_call_var = NULL;
static PyObject *g_current_task = NULL; /* asyncio.current_task */

static inline int read_tagged(PyObject *const *args, Py_ssize_t nargs, uint64_t *out) {
    if (nargs < 1) return 0;
    if (scope_read_u64_fast(args[0], out)) return 1;
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
    if (value) f->token = PyContextVar_Set(scope_g_call_var, value);
    Py_XDECREF(value);
    if (!f->token) PyErr_Clear();
}

/* The coroutine that created this task, from the context variable; 0 if none. */
static int call_var_parent(uint64_t *parent, uint32_t *depth) {
    PyObject *value = NULL;
    if (!scope_g_call_var || PyContextVar_Get(scope_g_call_var, NULL, &value) != 0) {
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
    PyObject *coro = f->frame ? scope_frame_generator(f->frame) : NULL;
    if (!coro) return;
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
    Py_ssize_t len = 0;
    const char *text = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8AndSize(name, &len) : NULL;
    if (text) {
        if (len > SCOPE_TASK_NAME_BYTES) len = SCOPE_TASK_NAME_BYTES;
        scope_value_push(t, f->call_id, f->func_id, SCOPE_ROLE_TASK, 0, SCOPE_TAG_STR, len,
                         (const uint8_t *)text, (uint32_t)len, created_by);
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

/* A call begins: args are its tagged id, then its parameters at args level. */
static void enter_call(PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    if (!scope_enabled() || !read_tagged(args, nargs, &tagged)) return;
    scope_thread *t = scope_current_thread();
    if (!t) return;
    if (t->suppressed) {
        t->suppressed++;
        return;
    }
    if (!t->named) name_thread(t);
    uint8_t flags = (uint8_t)(tagged >> SCOPE_FLAG_SHIFT);
    const void *frame = scope_current_frame();
    scope_frame *parent = scope_top_of(t);
    if (frame && parent && (parent->flags & SCOPE_FLAG_EXPRESSION)) {
        scope_drop_raised_lambdas(t, frame);
        parent = scope_top_of(t);
    }
    /* A debugger jumped back to the body's first line, which begins with the block:
     * the call running in this frame goes on.  (Only a lambda that raised, dropped
     * above, can stay open after its frame is gone, whose memory a new frame reuses.) */
    if (frame && parent && parent->frame == frame && !(parent->flags & SCOPE_FLAG_EXPRESSION))
        return;
    scope_frame delegator;
    int delegated = 0;
    uint64_t created_by = 0; /* for a task's coroutine: the coroutine that created it */
    if (frame && (scope_g_resumables || (flags & SCOPE_FLAG_RESUMABLE)))
        parent = scope_settle_for_call(t, frame, flags & SCOPE_FLAG_RESUMABLE, &delegator, &delegated);
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
    scope_frame *f = scope_push_call(t, tagged & SCOPE_FUNC_MASK, parent_id, depth, frame, flags);
    if (!f) return;
    if (scope_past_budget(f->func_id)) {
        /* Summed, not stored: its sum goes to the nearest stored call around it. */
        f->summed = 1;
        f->stored_ancestor = parent_stored;
    }
    if (flags & SCOPE_FLAG_RESUMABLE) scope_g_resumables++;
    if ((flags & SCOPE_FLAG_ASYNC) && !delegated && scope_g_call_var) {
        note_task(t, f, created_by);
        f = scope_top_of(t);
    }
    if ((flags & SCOPE_FLAG_ASYNC) && scope_g_call_var) set_call_var(f);
    if (flags & SCOPE_FLAG_ARGS) {
        for (Py_ssize_t i = 1; i < nargs; i++) {
            scope_record_value(t, f, SCOPE_ROLE_ARG, (uint16_t)(i - 1), args[i],
                         flags & SCOPE_FLAG_FULL, 0);
            f = scope_top_of(t); /* a user repr may have grown the stack */
        }
    }
}

/* enter(tagged_id, *args): a call begins; args are its parameters at args level. */
static PyObject *py_enter(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    enter_call(args, nargs);
    Py_RETURN_NONE;
}

/* A call's return value, or "redacted" if its function's name is a secret's. */
static void record_return(scope_thread *t, scope_frame *f, PyObject *value, uint8_t flags) {
    if (!(flags & SCOPE_FLAG_SECRET)) {
        scope_record_value(t, f, SCOPE_ROLE_RETURN, 0, value, flags & SCOPE_FLAG_FULL, 0);
    } else if (f->recorded && !f->summed) {
        scope_value_push(t, f->call_id, f->func_id, SCOPE_ROLE_RETURN, 0, SCOPE_TAG_REDACTED, 0,
                         NULL, 0, 0);
    }
}

/* The innermost call of `frame` returns; `value` is its return value when the
 * call reports one (a lambda at args level), else NULL. */
static void end_call(const void *frame, uint64_t tagged, PyObject *value) {
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
    scope_frame *f = scope_running_call(t, frame, tagged & SCOPE_FUNC_MASK);
    if (!f) {
        atomic_fetch_add_explicit(&t->h->unmatched_exits, 1, memory_order_relaxed);
        return;
    }
    uint8_t flags = (uint8_t)(tagged >> SCOPE_FLAG_SHIFT);
    if (value && (flags & SCOPE_FLAG_ARGS) && scope_enabled()) {
        record_return(t, f, value, flags);
        f = scope_top_of(t); /* a user repr may have grown the stack */
    }
    scope_set_depth(t, t->depth - 1);
    scope_finish_call(t, f, 0);
}

/* exit(tagged_id): the innermost call of this frame ends (a call scope makes itself,
 * such as a test's phase; instrumented code leaves its block instead). */
static PyObject *py_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    if (read_tagged(args, nargs, &tagged)) end_call(scope_current_frame(), tagged, NULL);
    Py_RETURN_NONE;
}

/* leave(tagged_id, value) -> value: a lambda returns value (it has no finally
 * block, so an exception leaving it is noticed later: see drop_raised_lambdas). */
static PyObject *py_leave(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    if (nargs == 2 && read_tagged(args, nargs, &tagged))
        end_call(scope_current_frame(), tagged, args[1]);
    return passed(args, nargs, 1);
}

/* Records that `exc` is leaving call f, which ends by it. */
static void record_unwind(scope_thread *t, scope_frame *f, PyObject *exc, uint8_t flags) {
    f->raised = 1;
    if (!scope_enabled() || !f->recorded || f->summed || !PyExceptionInstance_Check(exc)) return;
    /* Every level keeps which exception left the call (its id links the calls it
     * passed through); its message is a value, kept from args level on. */
    uint64_t raised_in = scope_link_unwind(t, f, exc);
    if (flags & SCOPE_FLAG_ARGS) {
        scope_record_value(t, f, SCOPE_ROLE_RAISE, 0, exc, flags & SCOPE_FLAG_FULL, raised_in);
    } else {
        const char *name = Py_TYPE(exc)->tp_name;
        scope_value_push(t, f->call_id, f->func_id, SCOPE_ROLE_RAISE, 0, SCOPE_TAG_EXCEPTION_TYPE,
                         (int64_t)(uintptr_t)exc, (const uint8_t *)name, (uint32_t)strlen(name),
                         raised_in);
    }
}

/* unwind(tagged_id): the call is ending by the exception being handled (for calls
 * scope makes itself, such as a test's phases). */
static PyObject *py_unwind(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    scope_thread *t = active_thread();
    if (!t || t->overflow_depth || !read_tagged(args, nargs, &tagged)) Py_RETURN_NONE;
    scope_frame *f = scope_running_call(t, scope_current_frame(), tagged & SCOPE_FUNC_MASK);
    PyObject *exc = f ? PyErr_GetHandledException() : NULL;
    if (exc) record_unwind(t, f, exc, (uint8_t)(tagged >> SCOPE_FLAG_SHIFT));
    Py_XDECREF(exc);
    Py_RETURN_NONE;
}

/* ---- The body of an instrumented function: `with __scope_call__: <body>` ----
 *
 * Leaving the block by any path ends the call running in this frame, and an
 * exception leaving it is recorded first.  A `with` rather than try/finally: its
 * exceptional exit (RERAISE with the lasti it saved) puts the frame back on the
 * instruction that raised, so a tracer's 'return' event reports the line that
 * raised, as without scope.  BEFORE_WITH looks __enter__ and __exit__ up on the
 * type and binds neither when they are not descriptors: both are plain builtin
 * functions in the type's dict, so entering and leaving allocate nothing.
 */

static PyObject *body_enter(PyObject *self, PyObject *const *args, size_t nargsf,
                            PyObject *kwnames) {
    Py_RETURN_NONE;
}

/* __exit__(type, exc, traceback) -> None: never suppresses the exception. */
static PyObject *body_exit(PyObject *self, PyObject *const *args, size_t nargsf,
                           PyObject *kwnames) {
    PyObject *exc = PyVectorcall_NARGS(nargsf) == 3 ? args[1] : Py_None;
    scope_thread *t = scope_tls_thread;
    if (!t) Py_RETURN_NONE;
    const void *frame = scope_current_frame();
    /* Without frames, calls are known by function: the innermost is the one ending. */
    scope_frame *top = scope_top_of(t);
    uint64_t func = frame || !top ? 0 : top->func_id;
    if (exc != Py_None && !t->suppressed && !t->overflow_depth) {
        scope_frame *f = scope_running_call(t, frame, func);
        if (f) record_unwind(t, f, exc, f->flags);
        PyErr_Clear(); /* a value's repr may have failed; the program's exception stands */
    }
    end_call(frame, func, NULL);
    Py_RETURN_NONE;
}

/* __enter__ and __exit__: callables with their own vectorcall, unlike builtin
 * functions, which count a level of recursion: a recorded function must reach
 * the same depth as without scope. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
} body_hook;

static PyMemberDef body_hook_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(body_hook, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};
static PyType_Slot body_hook_slots[] = {
    {Py_tp_doc, "__enter__ or __exit__ of scope's CallBody."},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, body_hook_members},
    {0, NULL},
};
static PyType_Spec body_hook_spec = {"scope.native.CallBodyHook", sizeof(body_hook), 0,
                                     Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
                                     body_hook_slots};

static PyObject *new_body_hook(PyObject *type, vectorcallfunc call) {
    body_hook *hook = (body_hook *)PyType_GenericAlloc((PyTypeObject *)type, 0);
    if (hook) hook->vectorcall = call;
    return (PyObject *)hook;
}

/* call_body[tagged_id] or call_body[tagged_id, *args] -> call_body: the call begins
 * (as enter() would), and the block it runs in is entered next. */
static PyObject *body_begin(PyObject *self, PyObject *key) {
    if (PyTuple_CheckExact(key))
        enter_call(&PyTuple_GET_ITEM(key, 0), PyTuple_GET_SIZE(key));
    else
        enter_call(&key, 1);
    return Py_NewRef(self);
}

static PyType_Slot body_slots[] = {
    {Py_tp_doc, "The block an instrumented function's body runs in: leaving it ends the call."},
    {Py_mp_subscript, body_begin},
    {0, NULL},
};
static PyType_Spec body_spec = {"scope.native.CallBody", sizeof(PyObject), 0, Py_TPFLAGS_DEFAULT,
                                body_slots};

/* The one CallBody object, added to the module as `call_body`; -1 on failure. */
static int add_call_body(PyObject *module) {
    PyObject *type = PyType_FromSpec(&body_spec);
    PyObject *hook_type = type ? PyType_FromSpec(&body_hook_spec) : NULL;
    PyObject *enter = hook_type ? new_body_hook(hook_type, body_enter) : NULL;
    PyObject *exit = enter ? new_body_hook(hook_type, body_exit) : NULL;
    int rc = exit && PyObject_SetAttrString(type, "__enter__", enter) == 0 &&
                     PyObject_SetAttrString(type, "__exit__", exit) == 0
                 ? 0
                 : -1;
    PyObject *body = rc == 0 ? PyType_GenericAlloc((PyTypeObject *)type, 0) : NULL;
    if (!body || PyModule_AddObjectRef(module, "call_body", body) != 0) rc = -1;
    Py_XDECREF(body);
    Py_XDECREF(exit);
    Py_XDECREF(enter);
    Py_XDECREF(hook_type);
    Py_XDECREF(type);
    return rc;
}

/* returning(tagged_id, value) -> value: the call returns value (args level). */
static PyObject *py_returning(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    scope_thread *t = active_thread();
    if (t && !t->overflow_depth && scope_enabled() && read_tagged(args, nargs, &tagged) &&
        nargs == 2) {
        scope_frame *f = scope_running_call(t, scope_current_frame(), tagged & SCOPE_FUNC_MASK);
        if (f) record_return(t, f, args[1], (uint8_t)(tagged >> SCOPE_FLAG_SHIFT));
    }
    return passed(args, nargs, 1);
}

/* What a write records when the value does not stay on the instance (a property's
 * setter, a __setattr__ that keeps it elsewhere). */
static const char NOT_KEPT[] = "\0<not kept on the instance>"; /* no type name, then text */

/* obj's own stored value for attribute name, as a new reference, without running
 * Python code: a slot through its member descriptor, else the instance dict.
 * NULL (no error set) when the value is not kept there. */
static PyObject *stored_attribute(PyObject *obj, PyObject *name) {
    PyObject *descr = _PyType_Lookup(Py_TYPE(obj), name);
    if (descr && Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyObject *value = PyMember_GetOne((const char *)obj, ((PyMemberDescrObject *)descr)->d_member);
        if (!value) PyErr_Clear();
        return value;
    }
    if (descr && Py_TYPE(descr)->tp_descr_set) return NULL; /* a property or the like */
    PyObject *dict = PyObject_GenericGetDict(obj, NULL);
    if (!dict) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *value = PyDict_Check(dict) ? PyDict_GetItemWithError(dict, name) : NULL;
    Py_XINCREF(value);
    Py_DECREF(dict);
    PyErr_Clear();
    return value;
}

/* wrote(tagged_id, index, obj, name): the statement just run set obj.<name>, the
 * attribute numbered index; its value is read back from where it is stored. */
static PyObject *py_wrote(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    scope_thread *t = active_thread();
    if (t && !t->overflow_depth && scope_enabled() && nargs == 4 &&
        read_tagged(args, nargs, &tagged) && PyUnicode_CheckExact(args[3])) {
        long index = PyLong_AsLong(args[1]);
        scope_frame *f = index >= 0 ? scope_running_call(t, scope_current_frame(), tagged & SCOPE_FUNC_MASK) : NULL;
        if (f && (f->summed || !f->recorded)) f = NULL; /* no row to hang it on */
        uint16_t position = (uint16_t)(index & (SCOPE_ATTR_REDACTED - 1));
        if (f && (index & SCOPE_ATTR_REDACTED)) {
            scope_value_push(t, f->call_id, f->func_id, SCOPE_ROLE_ATTR, position,
                             SCOPE_TAG_REDACTED, 0, NULL, 0, 0);
        } else if (f) {
            PyObject *value = stored_attribute(args[2], args[3]);
            if (value) {
                scope_record_value(t, f, SCOPE_ROLE_ATTR, position, value,
                                   (tagged >> SCOPE_FLAG_SHIFT) & SCOPE_FLAG_FULL, 0);
                Py_DECREF(value);
            } else {
                scope_value_push(t, f->call_id, f->func_id, SCOPE_ROLE_ATTR, position,
                                 SCOPE_TAG_REPR, 0, (const uint8_t *)NOT_KEPT,
                                 (uint32_t)(sizeof NOT_KEPT - 1), 0);
            }
        }
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

/* The frame of the call a suspension report belongs to: the current one, or for
 * an await inside comprehensions, the frame that runs the outermost of them. */
static const void *suspending_frame(uint64_t tagged) {
    const void *frame = scope_current_frame();
    if (!((tagged >> SCOPE_FLAG_SHIFT) & SCOPE_FLAG_IN_COMPREHENSION)) return frame;
    for (int steps = 0; frame && steps < SCOPE_WALK_LIMIT && scope_frame_runs_comprehension(frame); steps++)
        frame = scope_frame_caller(frame);
    return frame;
}

/* suspending(tagged_id, value) -> value: the generator or coroutine is about to yield
 * or await value. */
static PyObject *py_suspending(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged;
    scope_thread *t = active_thread();
    if (t && !t->overflow_depth && read_tagged(args, nargs, &tagged)) {
        const void *frame = suspending_frame(tagged);
        if (frame && scope_running_call(t, frame, tagged & SCOPE_FUNC_MASK)) scope_park_top(t);
    }
    return passed(args, nargs, 1);
}

/* resumed(tagged_id, value) -> value: it continues after its yield or await. */
static PyObject *py_resumed(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t tagged = 0;
    scope_thread *t = active_thread();
    const void *frame = read_tagged(args, nargs, &tagged) ? suspending_frame(tagged) : NULL;
    if (!t && frame && scope_g_parked_len) t = scope_current_thread(); /* resumed on a new thread */
    if (t && !t->suppressed && !t->overflow_depth && frame) {
        scope_frame *top = scope_top_of(t);
        scope_parked *p = (top && top->frame == frame) ? NULL : scope_parked_find(frame);
        if (p) {
            scope_frame ignored;
            int delegated = 0;
            scope_settle_for_call(t, frame, 1, &ignored, &delegated);
            p = scope_parked_find(frame); /* settling may have grown the table */
            if (p) scope_unpark(t, p);
        }
    }
    return passed(args, nargs, 1);
}

/* unfinish_open() -> int: writes every call still open (on a stack or parked) as
 * unfinished and stops recording their ends; for when recording stops.  Holding
 * the GIL, it sees every stack and the parked table at rest. */
static PyObject *py_unfinish_open(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return PyLong_FromSize_t(scope_unfinish_stacks() + scope_parked_unfinish_all());
}

/* set_runtime_objects(redacted, context_var): objects the entry points compare with. */
static PyObject *py_set_runtime_objects(PyObject *self, PyObject *const *args,
                                        Py_ssize_t nargs) {
    if (nargs != 2 || !PyContextVar_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "set_runtime_objects(redacted, ContextVar)");
        return NULL;
    }
    Py_XSETREF(scope_g_redacted, Py_NewRef(args[0]));
    Py_XSETREF(scope_g_call_var, Py_NewRef(args[1]));
    Py_RETURN_NONE;
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

static void *release_gil(void) { return PyGILState_Check() ? PyEval_SaveThread() : NULL; }

static void reacquire_gil(void *saved) {
    if (saved) PyEval_RestoreThread((PyThreadState *)saved);
}


/* capabilities() -> dict: what this build can do in this interpreter (compat.h). */
static PyObject *py_capabilities(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return Py_BuildValue("{s:O,s:i,s:i}", "frames", SCOPE_HAVE_FRAMES ? Py_True : Py_False,
                         "built_for_major", PY_MAJOR_VERSION, "built_for_minor", PY_MINOR_VERSION);
}

PyMethodDef scope_entry_methods[] = {
    {"capabilities", SCOPE_FASTCALL(py_capabilities),
     "capabilities() -> dict: what this build can do here (frames, the version built for)."},
    {"enter", SCOPE_FASTCALL(py_enter), "enter(tagged_id, *args): a call begins on this thread."},
    {"exit", SCOPE_FASTCALL(py_exit), "exit(tagged_id): the call running in this frame ends."},
    {"leave", SCOPE_FASTCALL(py_leave),
     "leave(tagged_id, value) -> value: a lambda returns value."},
    {"unwind", SCOPE_FASTCALL(py_unwind),
     "unwind(tagged_id): the call is ending by an exception."},
    {"returning", SCOPE_FASTCALL(py_returning),
     "returning(tagged_id, value) -> value: it returns."},
    {"wrote", SCOPE_FASTCALL(py_wrote),
     "wrote(tagged_id, index, obj, name): the statement just run set obj.<name>."},
    {"suspending", SCOPE_FASTCALL(py_suspending),
     "suspending(tagged_id, value) -> value: it yields or awaits value."},
    {"resumed", SCOPE_FASTCALL(py_resumed), "resumed(tagged_id, value) -> value: it continues."},
    {"unfinish_open", SCOPE_FASTCALL(py_unfinish_open),
     "unfinish_open() -> int: write every open call as unfinished."},
    {"current_call", SCOPE_FASTCALL(py_current_call),
     "current_call() -> int: the innermost recorded call open on this thread, or 0."},
    {"raised_in", SCOPE_FASTCALL(py_raised_in),
     "raised_in(exception) -> int: the innermost recorded call it left on this thread, or 0."},
    {"set_runtime_objects", SCOPE_FASTCALL(py_set_runtime_objects),
     "set_runtime_objects(redacted, context_var): the sentinel and the call variable."},
    {NULL, NULL, 0, NULL},
};

int scope_install_entry_points(const char *module_name) {
    static PyMethodDef *const tables[] = {scope_entry_methods, scope_thread_methods,
                                          scope_process_methods, scope_audit_methods};
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = -1;
    PyObject *module = PyImport_ImportModule(module_name);
    if (module) {
        rc = 0;
        for (size_t i = 0; rc == 0 && i < sizeof tables / sizeof *tables; i++)
            rc = PyModule_AddFunctions(module, tables[i]);
        if (rc == 0) rc = add_call_body(module);
        Py_DECREF(module);
    }
    if (rc != 0) PyErr_Clear();
    scope_before_wait = release_gil;
    scope_after_wait = reacquire_gil;
    PyGILState_Release(gil);
    return rc;
}

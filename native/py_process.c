/* How the process ends, and where the program starts: builtins that end the
 * process (os._exit, the exec functions) flush first; SIGTERM stores what was
 * captured, then kills as python would; a child's exit status, which only the C
 * library sees, is written where the run's top process finds it; a forked
 * child quiets what it inherited; and the program runs at the bottom of the
 * Python stack, as under plain python.
 */

#include "py_recorder.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Look-alike builtins: flush before the process ends, pause around a fork ---- */

/* os._exit and the exec functions end the process without atexit handlers, and
 * os.fork must find no thread of scope's running (see capture/forks.py).
 * wrap_builtin(original, before[, after]) returns a builtin that calls
 * before(*args), then original(*args), then after(result) (None if it
 * raised).  It keeps the original's name, module, __self__ (the posix module),
 * doc and text signature, so the program sees the same kind of object with the
 * same answers to inspect; what the callbacks raise is dropped, and what the
 * original raises is what the program sees. */
#define MAX_WRAPPED 16
static PyObject *g_wrapped_original[MAX_WRAPPED];
static PyObject *g_wrapped_before[MAX_WRAPPED];
static PyObject *g_wrapped_after[MAX_WRAPPED];
static PyMethodDef g_wrapped_def[MAX_WRAPPED];
static int g_wrapped_count = 0;

/* Whether the exception being raised goes to the program: a callback is scope's
 * code, and what it raises is dropped, unless it is what a signal handler of the
 * program raised while the callback ran (KeyboardInterrupt, SystemExit: not
 * Exception subclasses), which the program would have met at this call anyway. */
static int raised_for_the_program(void) {
    return !PyErr_ExceptionMatches(PyExc_Exception);
}

static PyObject *call_wrapped(int i, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *done = PyObject_Vectorcall(g_wrapped_before[i], args, nargs, kwnames);
    if (!done) {
        if (raised_for_the_program()) return NULL; /* as if it came before the call */
        PyErr_Clear(); /* scope failing must not change what the call does */
    }
    Py_XDECREF(done);
    PyObject *result = PyObject_Vectorcall(g_wrapped_original[i], args, nargs, kwnames);
    if (g_wrapped_after[i]) {
        scope_saved_error raised;
        scope_error_save(&raised);
        done = PyObject_CallOneArg(g_wrapped_after[i], result ? result : Py_None);
        if (!done && raised_for_the_program()) { /* as if it came just after the call */
            Py_XDECREF(result);
            scope_error_discard(&raised);
            return NULL;
        }
        if (!done) PyErr_Clear();
        Py_XDECREF(done);
        scope_error_restore(&raised);
    }
    return result;
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
WRAPPED(8)
WRAPPED(9)
WRAPPED(10)
WRAPPED(11)
WRAPPED(12)
WRAPPED(13)
WRAPPED(14)
WRAPPED(15)
typedef PyObject *(*fast_with_keywords)(PyObject *, PyObject *const *, Py_ssize_t, PyObject *);
static fast_with_keywords g_wrappers[MAX_WRAPPED] = {
    wrapped_0,  wrapped_1,  wrapped_2,  wrapped_3,  wrapped_4,  wrapped_5,
    wrapped_6,  wrapped_7,  wrapped_8,  wrapped_9,  wrapped_10, wrapped_11,
    wrapped_12, wrapped_13, wrapped_14, wrapped_15};

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
    if (nargs < 2 || nargs > 3 || !PyCFunction_Check(args[0]) || !PyCallable_Check(args[1]) ||
        (nargs == 3 && args[2] != Py_None && !PyCallable_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError, "wrap_builtin(builtin, before[, after])");
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
    g_wrapped_before[i] = Py_NewRef(args[1]);
    g_wrapped_after[i] = nargs == 3 && args[2] != Py_None ? Py_NewRef(args[2]) : NULL;
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
    scope_bottom saved;
    scope_enter_bottom(&saved);
    PyObject *result = call_or_eval(args[0], rest);
    scope_leave_bottom(&saved);
    Py_DECREF(rest);
    return result;
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
    scope_sigterm_after_fork_child();
    if (!registered && Py_AtExit(quiet_inherited_objects) == 0) registered = 1;
    return PyBool_FromLong(registered);
}

/* ---- SIGTERM: store what was captured, then die of the signal as python would ----
 *
 * Installed with sigaction, not the signal module, and only while SIGTERM has
 * its default action: signal.getsignal() keeps answering SIG_DFL, and a
 * program that sets its own handler replaces this one.  The handler only
 * writes a byte to a pipe; a watcher thread takes the GIL, runs the flush
 * callback, restores the default action and raises SIGTERM again.
 *
 * Around a fork the watcher stops (a zero byte tells it to) and starts again
 * after, so that the program forks with no thread of scope's running (see
 * capture/forks.py); a SIGTERM that comes meanwhile waits in the pipe.  If the
 * pipe is closed under it (a daemonising program closes every fd it inherited),
 * the watcher puts SIGTERM's default action back and ends, and the handler,
 * finding the pipe's fd no longer the pipe, dies of the signal at once rather
 * than write into whatever the program opened under that number. */

#define SIGTERM_BYTE 1
#define QUIT_BYTE 0

static int g_term_pipe[2] = {-1, -1};
static struct stat g_term_pipe_stat; /* the write end, to know it is still ours */
static PyObject *g_term_callback = NULL;
static pthread_t g_watcher;
static int g_watcher_running = 0;            /* changed only with the GIL held */
static _Atomic int g_watcher_ended = 0;      /* it ended by itself: its pipe is gone */
static _Atomic int64_t g_watcher_tid = 0;

/* Whether the pipe's write end is still the pipe scope made: a program that closes
 * every inherited fd may have reused its number for a file of its own. */
static int pipe_is_ours(void) {
    struct stat now;
    return g_term_pipe[1] >= 0 && fstat(g_term_pipe[1], &now) == 0 &&
           now.st_dev == g_term_pipe_stat.st_dev && now.st_ino == g_term_pipe_stat.st_ino;
}

static void on_sigterm(int signum) {
    int saved = errno;
    char byte = SIGTERM_BYTE;
    if (!pipe_is_ours() || write(g_term_pipe[1], &byte, 1) != 1) {
        /* No watcher can hear it: die of the signal now, as without scope. */
        signal(SIGTERM, SIG_DFL);
        raise(SIGTERM);
    }
    errno = saved;
}

/* With a recording service, nothing is stored in the dying process: the
 * handler notes the signal in the process header, for the service to record how
 * the process ended, and dies of it at once, as without scope. */
static void on_sigterm_note(int signum) {
    scope_live_signalled(signum);
    signal(signum, SIG_DFL);
    raise(signum); /* blocked until this handler returns, then fatal */
}

static int sigterm_is_ours(void) {
    struct sigaction current;
    return sigaction(SIGTERM, NULL, &current) == 0 &&
           (current.sa_handler == on_sigterm || current.sa_handler == on_sigterm_note);
}

/* Installs handler for SIGTERM if it still has its default action. */
static int take_sigterm(void (*handler)(int)) {
    struct sigaction current;
    if (sigaction(SIGTERM, NULL, &current) != 0 || current.sa_handler != SIG_DFL) return 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    return sigaction(SIGTERM, &action, NULL) == 0;
}

static void *watch_sigterm(void *arg) {
    atomic_store(&g_watcher_tid, scope_os_thread_id());
    char byte = QUIT_BYTE;
    ssize_t n;
    while ((n = read(g_term_pipe[0], &byte, 1)) < 0 && errno == EINTR) {
    }
    if (n == 1 && byte == QUIT_BYTE) return NULL;
    if (n != 1) { /* the pipe is gone: SIGTERM kills as it would without scope */
        if (sigterm_is_ours()) signal(SIGTERM, SIG_DFL);
        atomic_store(&g_watcher_ended, 1);
        return NULL;
    }
    if (!scope_is_finalizing()) {
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
    /* This thread blocks every signal (start_watcher): unblocked, the signal it
     * raises is its own to receive, and kills the process at once. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &term, NULL);
    raise(SIGTERM);
    return NULL;
}

/* Starts the watcher thread with every signal blocked: the program's signals
 * (SIGTERM included) go to the program's own threads. */
static int start_watcher(void) {
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    g_watcher_running = pthread_create(&g_watcher, NULL, watch_sigterm, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    return g_watcher_running;
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
    fstat(g_term_pipe[1], &g_term_pipe_stat);
    atomic_store(&g_watcher_ended, 0);
    if (!start_watcher()) {
        close(g_term_pipe[0]);
        close(g_term_pipe[1]);
        g_term_pipe[0] = g_term_pipe[1] = -1;
        Py_RETURN_FALSE;
    }
    Py_INCREF(args[0]);
    Py_XSETREF(g_term_callback, args[0]);
    return PyBool_FromLong(take_sigterm(on_sigterm));
}

/* note_sigterm() -> bool: installed (SIGTERM had its default action). */
static PyObject *py_note_sigterm(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    return PyBool_FromLong(take_sigterm(on_sigterm_note));
}

/* no_flush_on_sigterm(): SIGTERM's default action back (if still ours), callback dropped. */
static PyObject *py_no_flush_on_sigterm(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (sigterm_is_ours()) signal(SIGTERM, SIG_DFL);
    Py_CLEAR(g_term_callback);
    Py_RETURN_NONE;
}

int scope_pause_sigterm_watcher(void) {
    if (!g_watcher_running) return 0;
    int ended = atomic_load(&g_watcher_ended); /* it only needs reaping */
    char quit = QUIT_BYTE;
    if (!ended && (!pipe_is_ours() || write(g_term_pipe[1], &quit, 1) != 1)) return 0;
    Py_BEGIN_ALLOW_THREADS /* a SIGTERM being handled needs the GIL to end the process */
    pthread_join(g_watcher, NULL);
    scope_wait_task_gone(atomic_load(&g_watcher_tid), 1000000000);
    Py_END_ALLOW_THREADS
    g_watcher_running = 0;
    return !ended;
}

int scope_resume_sigterm_watcher(void) {
    if (g_watcher_running || g_term_pipe[0] < 0 || !sigterm_is_ours() || !pipe_is_ours())
        return 0;
    return start_watcher();
}

/* The watcher thread does not survive fork: a child gets SIGTERM's default back. */
void scope_sigterm_after_fork_child(void) {
    if (sigterm_is_ours()) signal(SIGTERM, SIG_DFL);
    g_watcher_running = 0;
    if (g_term_pipe[0] >= 0) {
        close(g_term_pipe[0]);
        close(g_term_pipe[1]);
        g_term_pipe[0] = g_term_pipe[1] = -1;
    }
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

void scope_write_exit_status(int status, void *arg) {
    (void)arg;
    if (getpid() != g_status_pid) return;
    scope_live_exited(status & 0xFF);
    if (!g_status_path) return;
    int fd = open(g_status_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    char text[16];
    int n = snprintf(text, sizeof text, "%d\n", status & 0xFF);
    if (n > 0 && write(fd, text, (size_t)n) < 0) { /* nothing to be done at exit */
    }
    close(fd);
}

/* note_exit_status(path): write this process's exit status to path when it exits,
 * and into its process header (path None: only there). */
static PyObject *py_note_exit_status(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int none = nargs == 1 && args[0] == Py_None;
    const char *path = nargs == 1 && PyUnicode_Check(args[0]) ? PyUnicode_AsUTF8(args[0]) : NULL;
    if (!path && !none) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "note_exit_status(path)");
        return NULL;
    }
    char *copy = path ? strdup(path) : NULL;
    if (path && !copy) return PyErr_NoMemory();
    free(g_status_path);
    g_status_path = copy;
    g_status_pid = getpid();
#ifdef __GLIBC__
    if (!g_status_handler && on_exit(scope_write_exit_status, NULL) == 0) g_status_handler = 1;
#endif
    return PyBool_FromLong(g_status_handler);
}


/* pause_sigterm_watcher() -> bool: stop the watcher thread until resumed. */
static PyObject *py_pause_sigterm_watcher(PyObject *self, PyObject *const *args,
                                          Py_ssize_t nargs) {
    return PyBool_FromLong(scope_pause_sigterm_watcher());
}

/* resume_sigterm_watcher() -> bool: start it again (if SIGTERM is still ours). */
static PyObject *py_resume_sigterm_watcher(PyObject *self, PyObject *const *args,
                                           Py_ssize_t nargs) {
    return PyBool_FromLong(scope_resume_sigterm_watcher());
}

PyMethodDef scope_process_methods[] = {
    {"pause_sigterm_watcher", SCOPE_FASTCALL(py_pause_sigterm_watcher),
     "pause_sigterm_watcher() -> bool: stop the SIGTERM watcher thread (before a fork)."},
    {"resume_sigterm_watcher", SCOPE_FASTCALL(py_resume_sigterm_watcher),
     "resume_sigterm_watcher() -> bool: start the SIGTERM watcher again (after a fork)."},
    {"run_at_bottom", SCOPE_FASTCALL(py_run_at_bottom),
     "run_at_bottom(func, *args) or (code, globals): run with no Python frame below."},
    {"wrap_builtin", SCOPE_FASTCALL(py_wrap_builtin),
     "wrap_builtin(builtin, before[, after]): a look-alike that calls before(*args) first "
     "and after(result) last."},
    {"flush_on_sigterm", SCOPE_FASTCALL(py_flush_on_sigterm),
     "flush_on_sigterm(callback) -> bool: on SIGTERM, call it, then die of SIGTERM."},
    {"no_flush_on_sigterm", SCOPE_FASTCALL(py_no_flush_on_sigterm),
     "no_flush_on_sigterm(): undo flush_on_sigterm or note_sigterm (if the program has not "
     "replaced it)."},
    {"note_sigterm", SCOPE_FASTCALL(py_note_sigterm),
     "note_sigterm() -> bool: on SIGTERM, note it in the process header, then die of it."},
    {"forked_child", SCOPE_FASTCALL(py_forked_child),
     "forked_child() -> bool: quiet the inherited recording's objects at this child's exit."},
    {"note_exit_status", SCOPE_FASTCALL(py_note_exit_status),
     "note_exit_status(path) -> bool: write the process's exit status to path at exit."},
    {NULL, NULL, 0, NULL},
};

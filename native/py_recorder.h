/* What the CPython side of the recorder (the py_*.c files) shares.
 *
 * Every entry point is METH_FASTCALL and runs with the GIL held, so the
 * structures here (the table of parked calls, the budget counts, the summary
 * settings) need no lock of their own.  METH_FASTCALL rather than METH_O:
 * CPython 3.11 charges METH_O calls against the recursion limit, which would
 * make a recorded program hit RecursionError one frame earlier than it does
 * without scope.
 *
 * Frames.  Each open call remembers its interpreter frame.  A generator or
 * coroutine that suspends (reported before each yield and await) is *parked*:
 * taken off its thread's stack into a table keyed by its frame, which lives
 * inside the generator object and never moves (py_parked.c).  When it resumes
 * (reported after the yield or await, or noticed at its next event if the
 * yield raised) it goes back on top of the stack of whichever thread resumed
 * it, with its call id, parent and depth unchanged.  A new call whose direct
 * caller is not the top of the stack walks its callers' frames to settle the
 * stack (py_stacks.c): a parked caller is a coroutine delegating to it
 * (``await child()``), and a resumable call on top that is not among the
 * callers suspended without reporting it (``async for``).  A coroutine's
 * parent is the coroutine that created its task: coroutines set a context
 * variable, which asyncio copies into every task it creates.
 *
 * The files, one job each: py_parked.c (the parked table), py_stacks.c
 * (stack operations that understand suspension), py_budget.c (which calls are
 * stored one row each), py_values.c (value summaries and redaction),
 * py_entry.c (the entry points instrumented code calls), py_threads.c (who
 * started each thread), py_process.c (SIGTERM and its watcher thread, exit
 * status, look-alike builtins for os._exit, exec and fork, running at the
 * bottom of the stack), py_audit.c (audit events and a child's main program).
 * All CPython internals go through compat.h.
 */
#ifndef SCOPE_PY_RECORDER_H
#define SCOPE_PY_RECORDER_H

#include "compat.h"
#include "scope_core.h"

#define SCOPE_FUNC_MASK ((1ull << SCOPE_FLAG_SHIFT) - 1)
/* How many caller frames a new call inspects to settle the stack. */
#define SCOPE_WALK_LIMIT 256

#define SCOPE_FASTCALL(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL

/* Objects the entry points compare with or report into (py_entry.c). */
extern PyObject *scope_g_redacted; /* the sentinel instrumented code passes instead */
/* The longest task name a record keeps. */
#define SCOPE_TASK_NAME_BYTES 200
extern PyObject *scope_g_call_var; /* ContextVar: (call id, depth) of the running coroutine */

/* ---- py_parked.c: generators and coroutines suspended at a yield or await ---- */

typedef struct {
    const void *key; /* the call's frame; NULL = empty, SCOPE_TOMBSTONE = removed */
    scope_frame call;
} scope_parked;

#define SCOPE_TOMBSTONE ((const void *)1)

/* Parked calls right now; resumable calls open anywhere (on a stack or parked):
 * while that is zero, no new call walks its callers. */
extern size_t scope_g_parked_len;
extern uint64_t scope_g_resumables;

scope_parked *scope_parked_find(const void *key);
int scope_parked_insert(scope_thread *t, const scope_frame *call);
void scope_parked_remove(scope_parked *p);
/* Writes every parked call as unfinished (into held memory); returns how many. */
size_t scope_parked_unfinish_all(void);

/* Mixes a pointer-sized key for the open-addressing tables here. */
static inline size_t scope_hash(uint64_t key) {
    return (size_t)((key >> 4) * 0x9E3779B97F4A7C15ull);
}

/* ---- py_stacks.c: stack operations that understand suspension ---- */

static inline scope_frame *scope_top_of(scope_thread *t) {
    return t->depth ? &t->stack[t->depth - 1] : NULL;
}

/* Drops a coroutine's context-variable token (it stops being the running one). */
void scope_release_token(scope_frame *f);

/* A call leaves the stack for good: its record, its token and the resumable count. */
static inline void scope_finish_call(scope_thread *t, scope_frame *f, int raised) {
    scope_record_exit(t, f, raised);
    if (f->token) scope_release_token(f);
    if (f->flags & SCOPE_FLAG_RESUMABLE) scope_g_resumables--;
}

/* Moves the top of the stack to the parked table: it suspended. */
void scope_park_top(scope_thread *t);
/* Puts a parked call back on top of this thread's stack: it resumed. */
scope_frame *scope_unpark(scope_thread *t, scope_parked *p);
/* The open call that the code running in `frame` belongs to when it is not the
 * top of the stack (see scope_running_call). */
scope_frame *scope_running_call_slow(scope_thread *t, const void *frame, uint64_t func_id);

/* The open call that the code running in `frame` belongs to, made the top of
 * the stack (resuming it if it was parked); NULL if scope does not know it.
 * Without frames, calls are known by their function id. */
static inline scope_frame *scope_running_call(scope_thread *t, const void *frame,
                                              uint64_t func_id) {
    scope_frame *top = scope_top_of(t);
    if (top && (frame ? top->frame == frame : top->func_id == func_id)) return top;
    return scope_running_call_slow(t, frame, func_id);
}

/* Records lambdas on top of the stack that an exception ended (see py_stacks.c). */
void scope_drop_raised_lambdas(scope_thread *t, const void *frame);
/* Settles the stack before a call in `frame` begins and returns its parent. */
scope_frame *scope_settle_for_call(scope_thread *t, const void *frame, int resumable,
                                   scope_frame *delegator, int *delegated);

/* ---- py_budget.c: which calls are stored one row each ---- */

/* Whether a call of func that begins now is past the budget (counts it). */
int scope_past_budget(uint64_t func);

/* ---- py_values.c: value summaries ---- */

void scope_record_value(scope_thread *t, const scope_frame *call, uint8_t role, uint16_t index,
                        PyObject *o, int full, uint64_t raised_in);
/* Summarises o (at full detail) and pushes it as an audit event's value. */
void scope_record_event_value(scope_thread *t, uint64_t call, uint64_t func, uint16_t index,
                              PyObject *o);
/* The innermost call that exception exc has left on this thread (see py_values.c). */
uint64_t scope_link_unwind(scope_thread *t, const scope_frame *f, PyObject *exc);

/* ---- py_process.c, py_audit.c: state the entry points consult ---- */

void scope_sigterm_after_fork_child(void);
/* Stops the SIGTERM watcher thread (returns 1 if it was running), and starts it
 * again; for a fork (see py_threads.c). */
int scope_pause_sigterm_watcher(void);
int scope_resume_sigterm_watcher(void);
/* Writes `status` as this process's exit status, if a file was named for it. */
void scope_write_exit_status(int status, void *arg);

/* ---- Each file's functions, added to the module by scope_install_entry_points ---- */

extern PyMethodDef scope_entry_methods[];
extern PyMethodDef scope_thread_methods[];
extern PyMethodDef scope_process_methods[];
extern PyMethodDef scope_audit_methods[];

#endif

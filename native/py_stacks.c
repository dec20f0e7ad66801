/* Stack operations that understand suspension: parking, resuming, unwinding,
 * and settling a thread's stack before a call begins.  See py_recorder.h.
 */
#include "py_recorder.h"

void scope_release_token(scope_frame *f) {
    PyObject *token = (PyObject *)f->token;
    if (!token) return;
    f->token = NULL;
    /* Fails only if the coroutine ends in another context than it began in. */
    if (PyContextVar_Reset(scope_g_call_var, token) != 0) PyErr_Clear();
    Py_DECREF(token);
}

/* Writes an open call as unfinished: its end will never be seen. */
static void lose_call(scope_thread *t, scope_frame *f) {
    scope_record_unfinished(t, f);
    scope_release_token(f);
    if (f->flags & SCOPE_FLAG_RESUMABLE) scope_g_resumables--;
}

void scope_park_top(scope_thread *t) {
    scope_frame *f = &t->stack[scope_set_depth(t, t->depth - 1)];
    f->suspensions++;
    f->parked_at = scope_ticks();
    if ((f->call_id >> SCOPE_SLOT_SHIFT) == t->slot) f->last_own_id = t->id_base | t->seq;
    if (!f->frame || !scope_parked_insert(t, f)) {
        atomic_fetch_add_explicit(&t->h->unmatched_exits, 1, memory_order_relaxed);
        lose_call(t, f);
    }
}

scope_frame *scope_unpark(scope_thread *t, scope_parked *p) {
    scope_frame call = p->call;
    scope_parked_remove(p);
    if (t->depth >= t->stack_capacity && !scope_grow_stack(t)) {
        atomic_fetch_add_explicit(&t->h->stack_overflow, 1, memory_order_relaxed);
        lose_call(t, &call);
        return NULL;
    }
    scope_frame *f = &t->stack[t->depth];
    *f = call;
    int64_t parked = scope_ticks() - f->parked_at;
    f->suspended_ticks += (uint64_t)parked;
    scope_set_depth(t, t->depth + 1);
    /* Long enough to show as a gap in its call on a timeline: when and how long. */
    if (parked >= scope_g_suspension_min_ticks && f->recorded && !f->summed)
        scope_value_push(t, f->call_id, f->func_id, SCOPE_ROLE_SUSPENSION, 0, SCOPE_TAG_NONE,
                         f->parked_at, NULL, 0, (uint64_t)parked);
    return f;
}

/* Takes entries above index i off the stack: suspended resumables are parked,
 * anything else lost its exit (counted). */
static void unwind_above(scope_thread *t, uint32_t i) {
    while (t->depth > i + 1) {
        scope_frame *top = scope_top_of(t);
        if ((top->flags & SCOPE_FLAG_RESUMABLE) && top->frame) {
            scope_park_top(t);
        } else if (top->flags & SCOPE_FLAG_EXPRESSION) {
            scope_set_depth(t, t->depth - 1); /* a lambda whose exception leaves a call below */
            scope_finish_call(t, top, 1);
        } else {
            atomic_fetch_add_explicit(&t->h->unmatched_exits, 1, memory_order_relaxed);
            scope_set_depth(t, t->depth - 1);
            lose_call(t, top);
        }
    }
}

scope_frame *scope_running_call_slow(scope_thread *t, const void *frame, uint64_t func_id) {
    if (frame) {
        scope_parked *p = scope_parked_find(frame);
        if (p) return scope_unpark(t, p);
    }
    for (uint32_t i = t->depth; i-- > 0;) {
        if (frame ? t->stack[i].frame == frame : t->stack[i].func_id == func_id) {
            unwind_above(t, i);
            return scope_top_of(t);
        }
    }
    return NULL;
}

/* A lambda reports its return but not an exception (an expression has no
 * `finally`): a lambda on top of the stack whose frame is not among the callers
 * of `frame` ended by an exception, and is recorded as raised now. */
void scope_drop_raised_lambdas(scope_thread *t, const void *frame) {
    scope_frame *top;
    while ((top = scope_top_of(t)) && (top->flags & SCOPE_FLAG_EXPRESSION) && top->frame) {
        const void *f = scope_frame_caller(frame);
        for (int steps = 0; f && steps < SCOPE_WALK_LIMIT; f = scope_frame_caller(f), steps++)
            if (f == top->frame) return;
        if (f) return; /* too deep to tell: assume it is still running */
        scope_set_depth(t, t->depth - 1);
        scope_finish_call(t, top, 1);
    }
}

/* See py_recorder.h: a parked caller delegates to a new resumable call; a
 * parked caller of a plain call is running again (its yield or await raised);
 * a resumable on top that is not among the callers suspended unreported. */
scope_frame *scope_settle_for_call(scope_thread *t, const void *frame, int resumable,
                                   scope_frame *delegator, int *delegated) {
    const void *caller = scope_frame_caller(frame);
    for (;;) {
        scope_frame *top = scope_top_of(t);
        if (top && top->frame == caller) return top;
        const void *f = caller;
        int steps = 0;
        for (; f && steps < SCOPE_WALK_LIMIT; f = scope_frame_caller(f), steps++) {
            if (top && f == top->frame) return top;
            scope_parked *p = scope_parked_find(f);
            if (!p) continue;
            if (resumable) {
                /* Its caller awaits it (or yields from it) while parked. */
                if (!*delegated) *delegator = p->call;
                *delegated = 1;
                continue;
            }
            /* A parked call is running again: its yield or await raised. */
            return scope_unpark(t, p);
        }
        if (f || !top || !(top->flags & SCOPE_FLAG_RESUMABLE) || !top->frame) return top;
        scope_park_top(t); /* not among the callers: it suspended without saying so */
    }
}

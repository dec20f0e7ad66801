/* Internals shared by the ring core (scope_core.c, plain C, no Python) and the
 * CPython entry points (scope_python.c).  The hot producer operations are
 * static inline here so that an entry point compiles into one straight path.
 */
#ifndef SCOPE_CORE_H
#define SCOPE_CORE_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
/* The TSC clock is x86's; -DSCOPE_NO_TSC builds without it, as on other machines
 * (tests/test_native_sanitized.py builds the core so). */
#if (defined(__x86_64__) || defined(__i386__)) && !defined(SCOPE_NO_TSC)
#include <x86intrin.h>
#define SCOPE_HAVE_TSC 1
#else
#define SCOPE_HAVE_TSC 0
#endif

#include "scope_native.h"
#include "scope_shared.h"

/* In a summed call's record: it was called by its stored ancestor itself, not by
 * another summed call (end_id's other bits hold its self time). */
#define SCOPE_DIRECT_CHILD (1ull << 63)


/* An exception seen leaving a call (scope_python.c links the calls one exception
 * left, innermost first, by these). */
typedef struct {
    const void *exception; /* the exception object */
    const void *origin_frame; /* the frame of its innermost traceback entry */
    int origin_lasti;
    uint64_t call_id;   /* the call it left */
    uint64_t parent_id; /* that call's parent */
    uint64_t raised_in; /* the innermost call it left */
} scope_unwind;

#define SCOPE_RECENT_UNWINDS 8

typedef struct scope_thread {
    /* Producer side, private: touched only by the owning thread. */
    uint64_t head_local;
    uint64_t tail_cache;
    uint64_t seq;
    uint64_t id_base;
    scope_frame *stack; /* in its ring's mapping (stack_in_ring), else malloc'd */
    uint32_t depth;     /* published as h->open_calls (scope_set_depth) */
    uint32_t stack_capacity;
    uint8_t stack_in_ring;
    uint32_t overflow_depth; /* calls entered beyond max_depth, not on the stack */
    uint32_t suppressed;     /* calls made by scope itself (user repr), not recorded */
    uint8_t named;           /* its name was looked up (scope_python.c) */
    uint8_t stalled;         /* a wait for space ran out: drop until space appears */
    uint32_t recent_next;    /* next slot of recent_unwinds to write */
    scope_unwind recent_unwinds[SCOPE_RECENT_UNWINDS];
    uint32_t arena_head;
    uint32_t arena_tail_cache;
    uint64_t calls_written; /* call records written, published as h->calls */
    uint32_t generation;    /* scope_g_ring_generation when its ring was made */
    /* The ring itself, shared with the drainer (scope_shared.h); these copy its
     * header's sizes so the hot path reads no shared line for them. */
    scope_ring_header *h;
    scope_record *records;
    uint8_t *arena;
    uint64_t capacity;
    uint64_t mask;
    uint32_t arena_capacity;
    uint32_t slot;
    uint64_t map_bytes;
    char *path; /* its file, or NULL for private memory */
    struct scope_thread *next;
} scope_thread;

/* Configuration, set before recording starts. */
extern uint64_t scope_g_ring_records;
extern uint32_t scope_g_arena_bytes;
extern int scope_g_overflow;
extern uint64_t scope_g_block_timeout_ns;
extern uint32_t scope_g_max_depth;
/* Suspensions at least this many ticks long are written as records (see
 * scope_set_suspension_min); INT64_MAX: none. */
extern int64_t scope_g_suspension_min_ticks;
extern int scope_g_clock_source;
extern _Atomic int scope_g_enabled;
/* max_calls_per_function (0: none), and a number that changes with every setting */
extern uint64_t scope_g_budget;
extern _Atomic uint64_t scope_g_budget_generation;
extern __thread scope_thread *scope_tls_thread;
/* Changes whenever rings are to be made somewhere else (scope_live_open): a thread
 * whose ring is older makes a new one at its next call. */
extern _Atomic uint32_t scope_g_ring_generation;

/* Called around a blocking wait so the Python layer can release the GIL. */
extern void *(*scope_before_wait)(void);
extern void (*scope_after_wait)(void *);

scope_thread *scope_thread_create(void);
void scope_batch_after_fork(void);
int scope_wait_for_space(scope_thread *t, uint64_t head, uint32_t arena_needed);
int scope_grow_stack(scope_thread *t);
/* Moves a stack that grew onto the heap back into the ring file, once it is
 * shallow again (the caller's frame pointers are stale after, as after a grow). */
void scope_stack_to_ring(scope_thread *t);

static inline int64_t scope_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The raw timestamp stored in a record: TSC ticks or monotonic ns (drain converts). */
static inline int64_t scope_ticks(void) {
#if SCOPE_HAVE_TSC
    if (scope_g_clock_source == SCOPE_CLOCK_TSC) return (int64_t)__rdtsc();
#endif
    return scope_monotonic_ns();
}

static inline scope_thread *scope_current_thread(void) {
    scope_thread *t = scope_tls_thread;
    if (t && t->generation == atomic_load_explicit(&scope_g_ring_generation, memory_order_relaxed))
        return t;
    return scope_thread_create();
}

static inline int scope_enabled(void) {
    return atomic_load_explicit(&scope_g_enabled, memory_order_relaxed);
}

static inline int scope_ring_full(const scope_thread *t, uint64_t head, uint32_t arena_needed) {
    return head - t->tail_cache >= t->capacity ||
           (arena_needed &&
            (uint32_t)(t->arena_head - t->arena_tail_cache) + arena_needed > t->arena_capacity);
}

/* Room for one record (and arena_needed arena bytes), waiting under the block policy. */
static inline int scope_make_room(scope_thread *t, uint32_t arena_needed) {
    uint64_t head = t->head_local;
    if (!scope_ring_full(t, head, arena_needed)) return 1;
    t->tail_cache = atomic_load_explicit(&t->h->tail, memory_order_acquire);
    t->arena_tail_cache = atomic_load_explicit(&t->h->arena_tail, memory_order_acquire);
    if (!scope_ring_full(t, head, arena_needed)) {
        t->stalled = 0;
        return 1;
    }
    return scope_g_overflow == SCOPE_OVERFLOW_BLOCK && scope_wait_for_space(t, head, arena_needed);
}

/* A free record slot, or NULL: the record is counted as dropped. */
static inline scope_record *scope_ring_reserve(scope_thread *t) {
    if (!scope_make_room(t, 0)) {
        atomic_fetch_add_explicit(&t->h->dropped, 1, memory_order_relaxed);
        return NULL;
    }
    return &t->records[t->head_local & t->mask];
}

static inline void scope_ring_publish(scope_thread *t) {
    t->head_local++;
    atomic_store_explicit(&t->h->head, t->head_local, memory_order_release);
}

/* Copies bytes into the arena at the producer's head (space already reserved). */
static inline uint32_t scope_arena_write(scope_thread *t, const uint8_t *bytes, uint32_t len) {
    uint32_t pos = t->arena_head;
    uint32_t start = pos & (t->arena_capacity - 1);
    uint32_t first = len < t->arena_capacity - start ? len : t->arena_capacity - start;
    memcpy(t->arena + start, bytes, first);
    memcpy(t->arena, bytes + first, len - first);
    t->arena_head = pos + len;
    return pos;
}

/* Writes one value record; bytes (the summary's variable part) go to the arena. */
static inline void scope_value_push(scope_thread *t, uint64_t call_id, uint64_t func_id,
                                    uint8_t role, uint16_t index, uint8_t tag, int64_t payload,
                                    const uint8_t *bytes, uint32_t len, uint64_t raised_in) {
    if (len && (len > t->arena_capacity / 4 || !scope_make_room(t, len))) {
        /* The value's presence is kept; its content is counted as lost. */
        atomic_fetch_add_explicit(&t->h->values_lost, 1, memory_order_relaxed);
        tag = SCOPE_TAG_LOST;
        len = 0;
    }
    scope_value_record *r = (scope_value_record *)scope_ring_reserve(t);
    if (!r) return;
    r->call_id = call_id;
    r->payload = payload;
    r->arena_pos = len ? scope_arena_write(t, bytes, len) : 0;
    r->arena_len = len;
    r->func_word = func_id | (uint64_t)SCOPE_VALUE << SCOPE_KIND_SHIFT;
    r->index = index;
    r->tag = tag;
    r->role = role;
    r->raised_in = raised_in;
    scope_ring_publish(t);
}

/* Sets thread t's stack depth, and publishes it for a reader of a dead process
 * (h->open_calls); returns it. */
static inline uint32_t scope_set_depth(scope_thread *t, uint32_t depth) {
    t->depth = depth;
    atomic_store_explicit(&t->h->open_calls, depth, memory_order_relaxed);
    return depth;
}

/* Pushes a new call on the stack; NULL when over the bound.  Nothing is written
 * until it ends. */
static inline scope_frame *scope_push_call(scope_thread *t, uint64_t func_id, uint64_t parent_id,
                                           uint32_t depth, const void *frame, uint8_t flags) {
    if (__builtin_expect(!t->stack_in_ring, 0) && t->depth < SCOPE_RING_FRAMES / 2 && t->stack)
        scope_stack_to_ring(t); /* a reader of its file sees its open calls again */
    if (t->overflow_depth || (t->depth >= t->stack_capacity && !scope_grow_stack(t))) {
        t->overflow_depth++;
        atomic_fetch_add_explicit(&t->h->stack_overflow, 1, memory_order_relaxed);
        return NULL;
    }
    scope_frame *f = &t->stack[t->depth];
    uint64_t id = t->id_base | ++t->seq;
    f->call_id = id;
    f->parent_id = parent_id;
    f->func_id = func_id;
    f->frame = frame;
    f->token = NULL;
    f->depth = depth;
    f->suspensions = 0;
    f->suspended_ticks = 0;
    f->last_own_id = id;
    f->raised = 0;
    f->recorded = 1;
    f->flags = flags;
    f->summed = 0;
    f->stored_ancestor = parent_id;
    f->child_ticks = 0;
    f->start = scope_ticks();
    scope_set_depth(t, t->depth + 1); /* after the entry: a reader never sees it half made */
    return f;
}

/* The end id of a call leaving thread t's stack: the last call begun on its own
 * thread while it was open.  A generator that ends on another thread than it
 * began on: its subtree on its own thread ended when it last left that thread. */
static inline uint64_t scope_end_id(const scope_thread *t, const scope_frame *f) {
    return (f->call_id >> SCOPE_SLOT_SHIFT) == t->slot ? t->id_base | t->seq : f->last_own_id;
}

static inline void scope_fill_record(scope_record *r, const scope_frame *f, uint64_t end_id,
                                     uint32_t kind, int64_t duration, int64_t suspended) {
    r->call_id = f->call_id;
    r->parent_id = f->summed ? f->stored_ancestor : f->parent_id;
    r->end_id = end_id;
    r->start_ns = f->start;
    r->duration_ns = duration;
    r->func_word = f->func_id | (uint64_t)kind << SCOPE_KIND_SHIFT;
    r->suspended_ns = suspended;
    r->depth = f->depth;
    r->suspensions = f->suspensions;
}

/* Writes the record of frame f, which the caller has just taken off the stack. */
static inline void scope_record_exit(scope_thread *t, const scope_frame *f, int raised) {
    int64_t duration = scope_ticks() - f->start;
    int64_t active = duration - (int64_t)f->suspended_ticks;
    /* Its caller's self time leaves this call's active time out. */
    if (t->depth && t->stack[t->depth - 1].call_id == f->parent_id)
        t->stack[t->depth - 1].child_ticks += (uint64_t)active;
    if (!f->recorded) return;
    scope_record *r = scope_ring_reserve(t);
    if (!r) return;
    int any_raised = raised || f->raised;
    uint32_t kind = f->summed ? (any_raised ? SCOPE_SUMMED_RAISE : SCOPE_SUMMED_RETURN)
                              : (any_raised ? SCOPE_RAISE : SCOPE_RETURN);
    uint64_t end_id = scope_end_id(t, f);
    if (f->summed) { /* no row needs its end id: the record carries its self time */
        int64_t self = active - (int64_t)f->child_ticks;
        end_id = (uint64_t)(self > 0 ? self : 0);
        if (f->parent_id == f->stored_ancestor) end_id |= SCOPE_DIRECT_CHILD;
    }
    scope_fill_record(r, f, end_id, kind, duration, (int64_t)f->suspended_ticks);
    scope_ring_publish(t);
    atomic_store_explicit(&t->h->calls, ++t->calls_written, memory_order_relaxed);
}

/* Starts clock c on source: for the TSC, an origin and a first rate from a short
 * interval.  scope_clock_update refines the rate over the whole interval since. */
void scope_clock_start(scope_clock *c, int source);
void scope_clock_update(scope_clock *c);

/* A record timestamp as CLOCK_MONOTONIC ns, by a clock's calibration. */
static inline int64_t scope_ticks_to_ns(const scope_clock *clock, int64_t ticks) {
    if (clock->source != SCOPE_CLOCK_TSC) return ticks;
    return clock->ns0 +
           (int64_t)((double)(int64_t)((uint64_t)ticks - clock->ticks0) * clock->ns_per_tick);
}

/* Where a drainer has read a ring to, ahead of the tail it has published. */
typedef struct {
    uint64_t read;
    uint32_t arena_read;
    int arena_moved;
} scope_ring_cursor;

/* Copies ring h's records out from the cursor on (see scope_core.c); any process
 * may drain a ring, one drainer at a time.  scope_publish_cursor frees what was
 * read. */
uint64_t scope_drain_ring(scope_ring_header *h, const scope_clock *clock,
                          scope_ring_cursor *cursor, scope_record *out, uint64_t room,
                          uint8_t *arena_out, size_t arena_room, size_t *arena_used);
void scope_publish_cursor(scope_ring_header *h, scope_ring_cursor *cursor);
/* Copies ring h's counters (produced, dropped, drained, ...) into info. */
void scope_ring_counters(const scope_ring_header *h, scope_thread_info *info);

/* Writes frame f as unfinished into thread t's ring (t is the calling thread):
 * its end will never be seen (its exit was lost, or it cannot be kept open). */
void scope_record_unfinished(scope_thread *t, const scope_frame *f);
/* Writes frame f as unfinished into held memory; any thread may call it. */
void scope_hold_unfinished(const scope_frame *f, uint64_t end_id);
/* How many suspended calls are open (the GIL held): said in the process header,
 * for a reader of a process that dies with them. */
void scope_live_parked(size_t parked);
/* The process exits with status: said in its process header, if it has one. */
void scope_live_exited(int status);
/* The same for a death by signal signum, from its handler: async-signal-safe. */
void scope_live_signalled(int signum);

#endif

/* scope's native recorder: per-thread rings of fixed-size event records.
 *
 * Every OS thread that reports an event gets its own single-producer ring and
 * shadow call stack, created on its first event.  The thread that owns a ring is
 * its only producer; one drainer (a writer thread) at a time copies records out
 * in bulk.  Head and tail are C11 atomics: the producer publishes a record with
 * a release store of head, the drainer frees space with a release store of tail.
 *
 * A call id is (thread slot << 40) | per-thread sequence number: unique within
 * the process, handed out in entry order on each thread (a preorder numbering),
 * and found without any shared counter.
 */
#ifndef SCOPE_NATIVE_H
#define SCOPE_NATIVE_H

#include <stdint.h>
#include <stddef.h>

#define SCOPE_SLOT_SHIFT 40

/* Record kinds. */
#define SCOPE_ENTER 1
#define SCOPE_RETURN 2
#define SCOPE_RAISE 3

/* Overflow policies when a ring is full. */
#define SCOPE_OVERFLOW_DROP 0
#define SCOPE_OVERFLOW_BLOCK 1

typedef struct {
    uint64_t call_id;
    uint64_t other_id; /* ENTER: parent call id (0 for a root); exits: end id */
    int64_t time_ns;   /* CLOCK_MONOTONIC */
    uint64_t func_id;
    uint32_t depth; /* 0 for a root call */
    uint32_t kind;
} scope_record;

typedef struct {
    uint64_t produced;   /* records written into rings */
    uint64_t dropped;    /* records lost to full rings or exhausted memory */
    uint64_t drained;    /* records copied out by drains */
    uint64_t pending;    /* records in rings right now */
    uint64_t high_water; /* most records ever seen waiting in one ring */
    uint64_t blocked_ns; /* time producers waited under the block policy */
    uint64_t stack_overflow; /* calls not recorded: shadow stack at its bound */
    uint64_t unmatched_exits; /* exits whose entry was not on the stack */
    uint64_t threads_seen;
    uint64_t threads_live;
} scope_stats;

typedef struct {
    uint32_t slot;
    int64_t native_id; /* the kernel's thread id */
    uint64_t ident;    /* pthread_self(), what threading.get_ident() returns */
    int64_t start_ns;
    int64_t end_ns; /* 0 while the thread lives */
} scope_thread_info;

int scope_configure(uint64_t ring_records, int overflow, uint64_t block_timeout_ns,
                    uint32_t max_depth);
void scope_set_enabled(int enabled);
int scope_is_enabled(void);
size_t scope_drain(scope_record *out, size_t capacity);
void scope_get_stats(scope_stats *out);
size_t scope_get_threads(scope_thread_info *out, size_t capacity);
int64_t scope_now_ns(void);
void scope_after_fork_child(void);
/* Direct producer API for tests and benchmarks, without Python objects. */
void scope_emit_enter(uint64_t func_id);
void scope_emit_exit(uint64_t func_id, int raised);
/* Adds the METH_FASTCALL entry points to the named, already imported module. */
int scope_install_entry_points(const char *module_name);

#endif

/* scope's native recorder: per-thread rings of fixed-size event records.
 *
 * Every OS thread that reports an event gets its own single-producer ring, a
 * byte arena for variable-length value summaries, and a shadow call stack, all
 * created on its first event.  The thread that owns a ring is its only
 * producer; one drainer (a writer thread) at a time copies records out in bulk.
 * Head and tail are C11 atomics: the producer publishes a record (and the arena
 * bytes it points to) with a release store of head, the drainer frees space
 * with a release store of tail.
 *
 * A call id is (thread slot << 40) | per-thread sequence number: unique within
 * the process, handed out in entry order on each thread (a preorder numbering),
 * and found without any shared counter.
 *
 * This header is also cffi's cdef (native/build.py reads it), so it holds only
 * declarations cffi understands: integer #defines, structs and prototypes.
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
#define SCOPE_VALUE 6

/* What a value record describes (scope_value_record.role). */
#define SCOPE_ROLE_ARG 1
#define SCOPE_ROLE_RETURN 2
#define SCOPE_ROLE_RAISE 3
#define SCOPE_ROLE_ATTR 4

/* How a value was summarised (scope_value_record.tag); see storage/values.py. */
#define SCOPE_TAG_NONE 1
#define SCOPE_TAG_BOOL 2
#define SCOPE_TAG_INT 3
#define SCOPE_TAG_BIGINT 4
#define SCOPE_TAG_FLOAT 5
#define SCOPE_TAG_STR 6
#define SCOPE_TAG_BYTES 7
#define SCOPE_TAG_CONTAINER 8
#define SCOPE_TAG_OBJECT 9
#define SCOPE_TAG_REDACTED 10
#define SCOPE_TAG_LOST 11
#define SCOPE_TAG_CLASS 12
#define SCOPE_TAG_EXCEPTION 13
#define SCOPE_TAG_REPR 14

/* The high byte of the function id instrumented code passes: how to record it. */
#define SCOPE_FLAG_SHIFT 56
#define SCOPE_FLAG_ARGS 1
#define SCOPE_FLAG_FULL 2
#define SCOPE_FLAG_RESUMABLE 4
#define SCOPE_FLAG_ASYNC 8
/* An attribute index with this bit set names a redacted attribute. */
#define SCOPE_ATTR_REDACTED 32768

/* Overflow policies when a ring is full. */
#define SCOPE_OVERFLOW_DROP 0
#define SCOPE_OVERFLOW_BLOCK 1

/* Clock sources. */
#define SCOPE_CLOCK_MONOTONIC 0
#define SCOPE_CLOCK_TSC 1

/* ENTER and exit (RETURN, RAISE) records.  An exit repeats nothing its entry
 * holds: its func_id field carries the time the call spent suspended (a
 * generator or coroutine at yield or await; 0 for other calls) and its depth
 * field how many times it suspended, so suspensions cost no records. */
typedef struct {
    uint64_t call_id;
    uint64_t other_id; /* ENTER: parent call id (0 for a root); exits: end id */
    int64_t time_ns;   /* recorder clock, in CLOCK_MONOTONIC nanoseconds once drained */
    uint64_t func_id;  /* ENTER: function id; exits: time suspended, ns once drained */
    uint32_t depth;    /* ENTER: 0 for a root call; exits: number of suspensions */
    uint32_t kind;
} scope_record;

/* A SCOPE_VALUE record: the same size and the same func_id and kind offsets. */
typedef struct {
    uint64_t call_id;
    int64_t payload;    /* int value, float bits, length, or id() (see the tag) */
    uint32_t arena_pos; /* drained: offset of its bytes in the drain's arena buffer */
    uint32_t arena_len;
    uint64_t func_id;
    uint16_t index; /* argument position or attribute number */
    uint8_t tag;
    uint8_t role;
    uint32_t kind;
} scope_value_record;

typedef struct {
    uint64_t produced;        /* records written into rings */
    uint64_t dropped;         /* records lost to full rings or exhausted memory */
    uint64_t drained;         /* records copied out by drains */
    uint64_t pending;         /* records in rings right now */
    uint64_t held;            /* records drained into C memory by scope_hold, not yet out */
    uint64_t high_water;      /* most records ever seen waiting in one ring */
    uint64_t blocked_ns;      /* time producers waited under the block policy */
    uint64_t stack_overflow;  /* calls not recorded: shadow stack at its bound */
    uint64_t unmatched_exits; /* exits whose entry was not on the stack */
    uint64_t values_lost;     /* value summaries stored as 'lost': arena full */
    uint64_t threads_seen;
    uint64_t threads_live;
} scope_stats;

typedef struct {
    uint32_t slot;
    int64_t native_id; /* the kernel's thread id */
    uint64_t ident;    /* pthread_self(), what threading.get_ident() returns */
    int64_t start_ns;
    int64_t end_ns; /* 0 while the thread lives */
    /* This thread's share of scope_stats. */
    uint64_t produced;
    uint64_t dropped;
    uint64_t drained;
    uint64_t high_water;
    uint64_t blocked_ns;
    uint64_t stack_overflow;
    uint64_t unmatched_exits;
    uint64_t values_lost;
    char name[64]; /* threading's name for it at its first event, if it had one */
} scope_thread_info;

typedef struct {
    int source;           /* SCOPE_CLOCK_MONOTONIC or SCOPE_CLOCK_TSC */
    uint64_t ticks0;      /* TSC reading at the calibration origin */
    int64_t ns0;          /* CLOCK_MONOTONIC at the same moment */
    double ns_per_tick;   /* latest calibration (1.0 for the monotonic clock) */
    int64_t calibrated_ns; /* length of the calibration interval */
} scope_clock;

int scope_configure(uint64_t ring_records, uint64_t arena_bytes, int overflow,
                    uint64_t block_timeout_ns, uint32_t max_depth, int clock_source);
int scope_configure_values(uint32_t max_bytes, uint32_t full_items, int call_repr,
                           const char *redact_patterns);
void scope_set_enabled(int enabled);
int scope_is_enabled(void);
size_t scope_drain(scope_record *out, size_t capacity, uint8_t *arena_out,
                   size_t arena_capacity, size_t *arena_used);
void scope_get_stats(scope_stats *out);
/* Drains the rings into C memory (at most max_bytes of it), for when the program
 * measures its own allocations; scope_drain hands these records out first.
 * Returns 1 if the rings were emptied, 0 if the bound stopped it. */
int scope_hold(size_t max_bytes);
size_t scope_get_threads(scope_thread_info *out, size_t capacity);
void scope_set_thread_name(const char *name);
int64_t scope_now_ns(void);
void scope_get_clock(scope_clock *out);
int scope_tsc_usable(void);
void scope_after_fork_child(void);
/* Direct producer API for tests and benchmarks, without Python objects. */
void scope_emit_enter(uint64_t func_id);
void scope_emit_exit(uint64_t func_id, int raised);
void scope_emit_value(uint64_t func_id, uint16_t index, const uint8_t *bytes, uint32_t len);
void scope_produce_pairs(uint64_t pairs, uint64_t first_func);
/* Adds the METH_FASTCALL entry points to the named, already imported module. */
int scope_install_entry_points(const char *module_name);

#endif

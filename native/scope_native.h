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
/* The process of a run a call id belongs to: id | k << SCOPE_PROCESS_SHIFT for its
 * k-th process (0: the first), so (id >> SCOPE_SLOT_SHIFT) is still its thread,
 * slot | k << (SCOPE_PROCESS_SHIFT - SCOPE_SLOT_SHIFT): room for 2,047 processes of
 * 4,095 threads each. */
#define SCOPE_PROCESS_SHIFT 52

/* Record kinds, in the high byte of a record's func_word. */
#define SCOPE_RETURN 2
#define SCOPE_RAISE 3
#define SCOPE_UNFINISHED 4
#define SCOPE_VALUE 6
/* A call past its function's budget (max_calls_per_function): its record names
 * its nearest stored ancestor as parent, and the writer sums it. */
#define SCOPE_SUMMED_RETURN 7
#define SCOPE_SUMMED_RAISE 8
#define SCOPE_KIND_SHIFT 56

/* What a value record describes (scope_value_record.role). */
#define SCOPE_ROLE_ARG 1
#define SCOPE_ROLE_RETURN 2
#define SCOPE_ROLE_RAISE 3
#define SCOPE_ROLE_ATTR 4
/* An audit event (PEP 578): index is the event's place in the configured list,
 * call_id the innermost recorded call (0: none), raised_in the time in ns, and
 * the summary that of the event's arguments. */
#define SCOPE_ROLE_EVENT 5
/* An asyncio task began: call_id is its root call, raised_in the call that created
 * it (0: none), and the summary its name. */
#define SCOPE_ROLE_TASK 6
/* A generator or coroutine resumed after a suspension at least
 * scope_set_suspension_min long: call_id is the call, payload when it suspended
 * and raised_in how long (ticks; ns once drained); tag SCOPE_TAG_NONE, no bytes. */
#define SCOPE_ROLE_SUSPENSION 7

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
#define SCOPE_TAG_EXCEPTION_TYPE 15 /* calls level: an exception's type and id(), no message */

/* The high byte of the function id instrumented code passes: how to record it. */
#define SCOPE_FLAG_SHIFT 56
#define SCOPE_FLAG_ARGS 1
#define SCOPE_FLAG_FULL 2
#define SCOPE_FLAG_RESUMABLE 4
#define SCOPE_FLAG_ASYNC 8
/* a lambda: it reports its return only; an exception leaves it unreported */
#define SCOPE_FLAG_EXPRESSION 16
/* a suspension reported from inside a comprehension: the call is the frame
 * that runs the comprehension (on 3.11 a comprehension has a frame of its own) */
#define SCOPE_FLAG_IN_COMPREHENSION 32
/* its name is a secret's (scope/redaction.py): its return value is redacted */
#define SCOPE_FLAG_SECRET 64
/* An attribute index with this bit set names a redacted attribute. */
#define SCOPE_ATTR_REDACTED 32768

/* Overflow policies when a ring is full. */
#define SCOPE_OVERFLOW_DROP 0
#define SCOPE_OVERFLOW_BLOCK 1

/* The version of the shared-memory file formats (scope_shared.h). */
#define SCOPE_SHARED_VERSION 2
#define SCOPE_RING_FRAMES 1024 /* a thread's first open calls, kept in its ring file */

/* How a recorded process ended, as its process header says (scope_shared.h). */
#define SCOPE_PROCESS_RUNNING 1
#define SCOPE_PROCESS_EXITED 2   /* exit status known: exit, os._exit, SystemExit */
#define SCOPE_PROCESS_EXEC 3     /* replaced by an exec */
#define SCOPE_PROCESS_SIGNALLED 4 /* died of a signal scope saw coming (SIGTERM) */

/* Clock sources. */
#define SCOPE_CLOCK_MONOTONIC 0
#define SCOPE_CLOCK_TSC 1

/* A call record: one complete call, written when it ends (RETURN or RAISE), or
 * when recording stops while it is still open (UNFINISHED, duration -1).  Being
 * complete, a record can be stored as it is: nothing pairs entries with exits,
 * and any thread may write any call's record. */
typedef struct {
    uint64_t call_id;
    uint64_t parent_id;    /* 0 for a root */
    uint64_t end_id;       /* largest id begun on the call's thread before it ended; for a
                            * summed call, its self time | SCOPE_DIRECT_CHILD (scope_core.h) */
    int64_t start_ns;      /* recorder clock at entry; CLOCK_MONOTONIC ns once drained */
    int64_t duration_ns;   /* wall time, ns once drained; -1 if unfinished */
    uint64_t func_word;    /* function id | kind << SCOPE_KIND_SHIFT */
    int64_t suspended_ns;  /* time suspended at yield or await; -1 if unfinished */
    uint32_t depth;        /* recorded calls above it */
    uint32_t suspensions;  /* times it suspended */
} scope_record;

/* A SCOPE_VALUE record: the same size, func_word at the same offset. */
typedef struct {
    uint64_t call_id;
    int64_t payload;    /* int value, float bits, length, or id() (see the tag) */
    uint32_t arena_pos; /* drained: offset of its bytes in the drain's arena buffer */
    uint32_t arena_len;
    uint16_t index; /* argument position or attribute number */
    uint8_t tag;
    uint8_t role;
    uint32_t unused0;
    uint64_t raised_in; /* SCOPE_ROLE_RAISE: the innermost call the exception left */
    uint64_t func_word;
    uint64_t unused2;
    uint64_t unused3;
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
    uint64_t unfinished;      /* calls written as unfinished */
    uint64_t threads_seen;
    uint64_t threads_live;
    uint64_t unshared;        /* rings kept in private memory: their file could not be made */
    uint64_t unfinished_held; /* unfinished calls written straight into held memory, never
                                 into a ring: captured, though no ring counted them */
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
    uint32_t parent_slot; /* the thread that started it (threading.Thread.start), or 0 */
    uint64_t started_by;  /* the innermost recorded call open there at the time, or 0 */
    uint64_t calls;       /* call records written */
} scope_thread_info;

typedef struct {
    int source;           /* SCOPE_CLOCK_MONOTONIC or SCOPE_CLOCK_TSC */
    uint64_t ticks0;      /* TSC reading at the calibration origin */
    int64_t ns0;          /* CLOCK_MONOTONIC at the same moment */
    double ns_per_tick;   /* latest calibration (1.0 for the monotonic clock) */
    int64_t calibrated_ns; /* length of the calibration interval */
} scope_clock;

/* Columns a batch of calls is scattered into (scope_drain_batch): one array per
 * column of the call table, each with room for the batch's capacity. */
typedef struct {
    int64_t *id;
    int32_t *thread;
    int64_t *parent;
    int64_t *end_id;
    int32_t *depth;
    int64_t *function; /* the function's number (scope_numbering_number) */
    int64_t *start_ns;
    int64_t *duration_ns;
    uint8_t *outcome; /* kind - SCOPE_RETURN: 0 returned, 1 raised, 2 unfinished */
    int64_t *suspended_ns;
    int32_t *suspensions;
} scope_call_columns;

/* Calls past their function's budget, summed per (parent call, function). */
typedef struct {
    int64_t *parent;
    int64_t *function;
    int64_t *calls;
    int64_t *raised;
    int64_t *total_ns;
    int64_t *min_ns;
    int64_t *max_ns;
    int64_t *self_ns;   /* their active time less their recorded callees' */
    int64_t *direct_ns; /* active time of those called by the parent call itself */
} scope_aggregate_columns;

typedef struct {
    size_t records;    /* drained */
    size_t calls;      /* rows in the call columns */
    size_t values;     /* value records, compacted at the front of the scratch buffer */
    size_t aggregates; /* rows in the aggregate columns */
    size_t summed;     /* calls summed into them */
    size_t unfinished; /* call rows that are unfinished */
    size_t lost;       /* records dropped: no memory to number their function */
    size_t arena_used; /* bytes of the arena the values use */
} scope_batch_counts;

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
/* Starts (or retunes) the mover: a C thread that every interval_ns moves the rings'
 * records into held memory (scope_hold, at most max_bytes) once a ring is a quarter
 * full, so that producers do not wait while the writer stores a batch.  Returns 0 if
 * the thread could not start.  scope_stop_mover stops and joins it. */
int scope_start_mover(size_t max_bytes, uint64_t interval_ns);
void scope_stop_mover(void);
/* Keeps this process's rings in files of folder dir (which must exist, 0700) from
 * now on, with a process header; parent_pid is the recorded parent, or 0.  Returns
 * 0, or -1 with errno set if the header could not be made (rings stay private). */
int scope_live_open(const char *dir, int64_t parent_pid);
/* Notes in the process header how the process ended (SCOPE_PROCESS_*). */
void scope_live_ended(uint32_t state, int32_t exit_status);
/* Forgets the folder, removing its files if remove is set: rings made from now on
 * are private memory again (rings still in use stay mapped). */
void scope_live_close(int remove);
/* A process folder's rings, mapped by another process to drain them (scope_reader.c). */
typedef struct scope_reader scope_reader;

/* What a process header says (scope_shared.h). */
typedef struct {
    int64_t pid;
    int64_t parent_pid;
    int64_t start_ns;
    uint32_t state; /* SCOPE_PROCESS_* */
    int32_t exit_status;
    int64_t end_ns;
    uint64_t setup_failures;
    uint64_t unfinished;
    uint64_t unshared;
    uint64_t parked; /* suspended calls open */
} scope_process_info;

/* Maps the process header and ring files of folder dir; NULL with errno set if
 * it holds no valid process header. */
scope_reader *scope_reader_open(const char *dir);
/* Maps ring files that appeared since; returns how many, or -1. */
int scope_reader_refresh(scope_reader *r);
/* Drains every mapped ring, as scope_drain does the process's own, except that
 * the space is freed only by scope_reader_commit: until then a reader opened
 * anew (the last one was killed) reads the same records again. */
size_t scope_reader_drain(scope_reader *r, scope_record *out, size_t capacity, uint8_t *arena_out,
                          size_t arena_capacity, size_t *arena_used);
/* Frees the space of every record drained so far: they are stored. */
void scope_reader_commit(scope_reader *r);
void scope_reader_process(const scope_reader *r, scope_process_info *out);
/* How the reader converts the records' timestamps (its own calibration). */
void scope_reader_clock(scope_reader *r, scope_clock *out);
/* Fills at most capacity rows, one per mapped ring; returns how many rings. */
size_t scope_reader_threads(const scope_reader *r, scope_thread_info *out, size_t capacity);
void scope_reader_close(scope_reader *r);
/* Once the process is dead: writes every thread's open calls, which it left in
 * its ring files, into its rings as unfinished calls, for the next drain.
 * Returns how many; *missing gets those it could not write.  Only for a process
 * that is gone: it writes as the producer would. */
size_t scope_reader_unfinish(scope_reader *r, size_t *missing);
/* Where a reader has drained one ring to: what a store of the records drained so
 * far notes in the same transaction, so that a reader opened after one killed
 * between storing and scope_reader_commit does not store them again. */
typedef struct {
    uint32_t slot;
    uint32_t arena_read;
    uint64_t read;
} scope_ring_position;
/* Fills at most capacity positions, one per mapped ring; returns how many rings. */
size_t scope_reader_positions(const scope_reader *r, scope_ring_position *out, size_t capacity);
/* Records published in the mapped rings and not drained yet: how far behind the
 * reader is (the recording service's lag). */
uint64_t scope_reader_waiting(const scope_reader *r);
/* Moves the cursor of ring p->slot on to p (records up to there are stored) and
 * frees their space; a cursor already past p stays.  Returns 0 if no ring of that
 * slot is mapped, 1 otherwise. */
int scope_reader_skip_to(scope_reader *r, const scope_ring_position *p);
/* How one run numbers its functions and sums calls past their budget
 * (scope_batch.c); NULL arguments below mean this process's own. */
typedef struct scope_numbering scope_numbering;
scope_numbering *scope_numbering_new(void);
void scope_numbering_free(scope_numbering *n);
/* Gives function id func the number number from now on (a run resumed where its
 * functions are numbered already). */
void scope_numbering_seed(scope_numbering *n, uint64_t func, uint64_t number);
/* The number of function id func (numbered now if it had none); 0 if out of memory. */
uint64_t scope_numbering_number(scope_numbering *n, uint64_t func);
size_t scope_numbering_summed(scope_numbering *n, uint64_t *functions, uint64_t *summed,
                              size_t capacity);
/* scope_drain_batch, draining reader r's rings into numbering n. */
size_t scope_reader_drain_batch(scope_reader *r, scope_numbering *n, scope_record *scratch,
                                size_t capacity, uint8_t *arena, size_t arena_capacity,
                                const scope_call_columns *calls,
                                const scope_aggregate_columns *aggregates,
                                scope_batch_counts *counts);
/* Puts process number k (0: the run's first process) in the high bits of every
 * id the reader drains from now on: SCOPE_PROCESS_SHIFT. */
void scope_reader_set_process_number(scope_reader *r, uint64_t k);
/* The kernel's id of the calling thread. */
int64_t scope_os_thread_id(void);
/* Waits (at most timeout_ns) until thread tid of this process has left the
 * kernel's list of its threads; returns 0 if it had not by then. */
int scope_wait_task_gone(int64_t tid, uint64_t timeout_ns);
size_t scope_get_threads(scope_thread_info *out, size_t capacity);
void scope_set_thread_name(const char *name);
/* Notes which thread, and which call on it, started the current thread. */
void scope_set_thread_origin(uint32_t parent_slot, uint64_t started_by);
int64_t scope_now_ns(void);
void scope_get_clock(scope_clock *out);
int scope_tsc_usable(void);
void scope_after_fork_child(void);
/* Writes every call still open on a thread's stack as unfinished (into held
 * memory, which the next drain hands out first) and stops recording their exits.
 * Only while no thread can change its stack: with the GIL held, or in tests. */
size_t scope_unfinish_stacks(void);
/* Whether calls written as unfinished (scope_unfinish_stacks, a thread's end)
 * go into the calling thread's ring instead of held memory: for a process whose
 * rings another process drains. */
void scope_set_unfinished_into_rings(int into_rings);
/* Sets max_calls_per_function (0: no limit) and forgets every count and number.
 * Calls are counted as they begin: the first max_calls_per_function of each
 * function are stored, the rest summed. */
void scope_set_budget(uint64_t max_calls_per_function);
/* Suspensions at least this long (ns) are written as SCOPE_ROLE_SUSPENSION records
 * as their call resumes (negative: none); set after scope_configure, whose clock
 * turns it into ticks. */
void scope_set_suspension_min(int64_t min_ns);
/* Drains up to capacity records and scatters them (see scope_batch.c); the
 * call and aggregate columns need room for capacity rows. */
size_t scope_drain_batch(scope_record *scratch, size_t capacity, uint8_t *arena,
                         size_t arena_capacity, const scope_call_columns *calls,
                         const scope_aggregate_columns *aggregates, scope_batch_counts *counts);
/* Direct producer API for tests and benchmarks, without Python objects. */
void scope_emit_enter(uint64_t func_id);
void scope_emit_exit(uint64_t func_id, int raised);
void scope_emit_value(uint64_t func_id, uint16_t index, const uint8_t *bytes, uint32_t len);
void scope_produce_pairs(uint64_t pairs, uint64_t first_func);
/* Writes a ready-made record into this thread's ring, as the recorder would. */
void scope_emit_record(const scope_record *record);
/* Adds the METH_FASTCALL entry points to the named, already imported module. */
int scope_install_entry_points(const char *module_name);

#endif

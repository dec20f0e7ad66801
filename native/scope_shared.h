/* The files a recorded process shares with whoever stores its recording.
 *
 * A recording process keeps its rings in a folder of its own (0700, files
 * 0600): one file per thread, "ring-<slot>", and one header for the process,
 * "process".  Each is mapped MAP_SHARED, so the records a producer publishes
 * are in the page cache the moment its release store of head lands: a process
 * that is killed, or that loses the process storing its records, leaves them
 * all behind in the file for the next reader (scope_reader.c).  Files are
 * reserved in full when made (posix_fallocate), so a full disk is met once,
 * when a ring is made, and never as SIGBUS on a later write.
 *
 * A ring file: a SCOPE_RING_HEADER_BYTES header, then capacity records of 64
 * bytes, then the value arena, then the first SCOPE_RING_FRAMES entries of the
 * thread's stack of open calls.  The producer writes the header's producer line
 * and publishes records with a release store of head; whoever drains writes the
 * drainer line and frees space with a release store of tail.  Atomics of 4 and
 * 8 bytes are lock-free here, so they work across processes.
 *
 * Plain C for both sides; cffi never sees it (the formats' numbers that Python
 * needs are in scope_native.h).
 */
#ifndef SCOPE_SHARED_H
#define SCOPE_SHARED_H

#include <stdatomic.h>
#include <stdint.h>

#include "scope_native.h"

#define SCOPE_RING_MAGIC 0x31676e6972706373ull    /* "scpring1" */
#define SCOPE_PROCESS_MAGIC 0x31636f7270706373ull /* "scpproc1" */
#define SCOPE_RING_HEADER_BYTES 4096
#define SCOPE_PROCESS_HEADER_BYTES 4096

/* One open call on a thread's shadow stack (or parked while suspended).  The
 * first SCOPE_RING_FRAMES of a thread's stack live in its ring file: a reader
 * of a process that died without ending its calls finds them there. */
typedef struct {
    uint64_t call_id;
    uint64_t parent_id;
    uint64_t func_id;
    int64_t start;     /* clock reading at entry */
    const void *frame; /* the call's interpreter frame, NULL when not known */
    void *token;       /* owned context-variable token of a coroutine, or NULL */
    uint32_t depth;    /* recorded calls above it, across suspensions */
    uint32_t suspensions;
    int64_t parked_at;        /* clock reading when it last suspended */
    uint64_t suspended_ticks; /* clock ticks spent suspended so far */
    uint64_t last_own_id;     /* largest id begun on its own thread while it ran there */
    uint8_t raised;
    uint8_t recorded; /* its record is still to be written (cleared once unfinished) */
    uint8_t flags;    /* SCOPE_FLAG_* of the function */
    uint8_t summed;   /* past its function's budget: written as SCOPE_SUMMED_* */
    uint64_t stored_ancestor; /* summed: the nearest enclosing call that is stored */
    uint64_t child_ticks;     /* active time of the recorded calls it made, so far */
} scope_frame;

typedef struct {
    /* Written once, before the ring is linked anywhere. */
    uint64_t magic;
    uint32_t version; /* SCOPE_SHARED_VERSION */
    uint32_t header_bytes;
    uint64_t capacity;       /* records, a power of two */
    uint32_t arena_capacity; /* bytes after the records, a power of two */
    uint32_t slot;
    int64_t native_id; /* the kernel's thread id */
    uint64_t ident;    /* pthread_self() */
    int64_t start_ns;
    /* Written by the producer over the thread's life. */
    uint32_t parent_slot;
    uint64_t started_by;
    char name[64];
    _Atomic int64_t end_ns; /* 0 while the thread lives */
    _Atomic int dead;
    /* The producer's counters: head publishes records. */
    _Alignas(64) _Atomic uint64_t head;
    _Atomic uint64_t calls; /* call records written (head counts values too) */
    _Atomic uint64_t dropped;
    _Atomic uint64_t blocked_ns;
    _Atomic uint64_t stack_overflow;
    _Atomic uint64_t unmatched_exits;
    _Atomic uint64_t values_lost;
    /* The thread's open calls (its stack's depth); the first SCOPE_RING_FRAMES are
     * in the file while stack_in_ring is set.  Relaxed stores: read once the
     * process is dead. */
    _Atomic uint32_t open_calls;
    _Atomic uint32_t stack_in_ring;
    /* The drainer's: tail and arena_tail free space. */
    _Alignas(64) _Atomic uint64_t tail;
    _Atomic uint32_t arena_tail;
    uint64_t drained;
    uint64_t high_water;
} scope_ring_header;

typedef struct {
    uint64_t magic;
    uint32_t version;
    uint32_t header_bytes;
    int64_t pid;
    int64_t parent_pid;
    int64_t start_ns;    /* CLOCK_MONOTONIC when recording began */
    int32_t clock_source; /* SCOPE_CLOCK_*: what record timestamps count */
    uint32_t unused0;
    _Atomic uint32_t state; /* SCOPE_PROCESS_* */
    _Atomic int32_t exit_status;
    _Atomic int64_t end_ns;
    _Atomic uint64_t setup_failures; /* events lost: a ring could not be made */
    _Atomic uint64_t unfinished;     /* calls written as unfinished */
    _Atomic uint64_t unshared;       /* rings kept in private memory: no file could be made */
    _Atomic uint64_t parked;         /* suspended calls open (generators, coroutines): not in
                                      * any ring file, lost if the process dies */
} scope_process_header;

_Static_assert(sizeof(scope_ring_header) <= SCOPE_RING_HEADER_BYTES, "ring header too big");
_Static_assert(sizeof(scope_process_header) <= SCOPE_PROCESS_HEADER_BYTES,
               "process header too big");
_Static_assert(sizeof(scope_record) == 64, "records are 64 bytes");

/* The bytes of a ring file (or private mapping) with these sizes: header,
 * records, value arena, stack entries. */
static inline uint64_t scope_ring_bytes(uint64_t capacity, uint32_t arena_capacity) {
    return SCOPE_RING_HEADER_BYTES + capacity * sizeof(scope_record) + arena_capacity +
           SCOPE_RING_FRAMES * sizeof(scope_frame);
}

/* Where a ring's stack entries begin in its mapping. */
static inline scope_frame *scope_ring_frames(void *ring, uint64_t capacity, uint32_t arena_capacity) {
    return (scope_frame *)((uint8_t *)ring + SCOPE_RING_HEADER_BYTES +
                           capacity * sizeof(scope_record) + arena_capacity);
}

#endif

/* The ring core: configuration, the clock, thread registration, draining and
 * counters.  Plain C with no Python: native/tests/test_core.c builds it alone,
 * with AddressSanitizer and UBSan.  See scope_native.h for the model.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "scope_core.h"

uint64_t scope_g_ring_records = 1u << 18;
uint32_t scope_g_arena_bytes = 1u << 20;
int scope_g_overflow = SCOPE_OVERFLOW_DROP;
uint64_t scope_g_block_timeout_ns = 50u * 1000u * 1000u;
uint32_t scope_g_max_depth = 1u << 22;
int64_t scope_g_suspension_min_ticks = INT64_MAX;
int scope_g_clock_source = SCOPE_CLOCK_MONOTONIC;
_Atomic int scope_g_enabled = 0;
uint64_t scope_g_budget = 0;
_Atomic uint64_t scope_g_budget_generation = 0;
__thread scope_thread *scope_tls_thread = NULL;
_Atomic uint32_t scope_g_ring_generation = 0;
void *(*scope_before_wait)(void) = NULL;
void (*scope_after_wait)(void *) = NULL;

/* Registry of live rings, and per-thread rows that outlive them. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static scope_thread *g_threads = NULL;
static uint32_t g_next_slot = 1;
static scope_thread_info *g_infos = NULL;
static size_t g_infos_len = 0, g_infos_cap = 0;
static _Atomic uint64_t g_setup_failures = 0;
static _Atomic uint64_t g_unfinished = 0;
static _Atomic uint64_t g_unfinished_held = 0;
static _Atomic uint64_t g_unshared = 0;
static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

/* Clock calibration: updated by drains (under g_lock), read by drains. */
static scope_clock g_clock = {SCOPE_CLOCK_MONOTONIC, 0, 0, 1.0, 0};

int64_t scope_now_ns(void) { return scope_monotonic_ns(); }

int scope_tsc_usable(void) {
#if SCOPE_HAVE_TSC
    unsigned int eax, ebx, ecx, edx;
    __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0x80000000u), "c"(0));
    if (eax < 0x80000007u) return 0;
    __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0x80000007u), "c"(0));
    return (edx >> 8) & 1; /* invariant TSC: constant rate, runs in every C-state */
#else
    return 0;
#endif
}

#if SCOPE_HAVE_TSC
/* Reads the TSC and CLOCK_MONOTONIC as close together as the machine allows. */
static void read_clock_pair(uint64_t *ticks, int64_t *ns) {
    int64_t best_gap = INT64_MAX;
    for (int i = 0; i < 5; i++) {
        int64_t before = (int64_t)__rdtsc();
        int64_t mono = scope_monotonic_ns();
        int64_t after = (int64_t)__rdtsc();
        if (after - before < best_gap) {
            best_gap = after - before;
            *ticks = (uint64_t)(before + (after - before) / 2);
            *ns = mono;
        }
    }
}
#endif

void scope_clock_start(scope_clock *c, int source) {
    c->source = source;
    c->ns_per_tick = 1.0;
    c->calibrated_ns = 0;
    c->ticks0 = 0;
    c->ns0 = 0;
#if SCOPE_HAVE_TSC
    if (source != SCOPE_CLOCK_TSC) return;
    read_clock_pair(&c->ticks0, &c->ns0);
    uint64_t ticks;
    int64_t ns;
    do read_clock_pair(&ticks, &ns);
    while (ns - c->ns0 < 2000000); /* 2 ms: a first estimate good to ~1e-5 */
    c->ns_per_tick = (double)(ns - c->ns0) / (double)(ticks - c->ticks0);
    c->calibrated_ns = ns - c->ns0;
#endif
}

void scope_clock_update(scope_clock *c) {
#if SCOPE_HAVE_TSC
    if (c->source != SCOPE_CLOCK_TSC) return;
    uint64_t ticks;
    int64_t ns;
    read_clock_pair(&ticks, &ns);
    if (ticks > c->ticks0 && ns - c->ns0 > c->calibrated_ns) {
        c->ns_per_tick = (double)(ns - c->ns0) / (double)(ticks - c->ticks0);
        c->calibrated_ns = ns - c->ns0;
    }
#endif
}

void scope_get_clock(scope_clock *out) {
    pthread_mutex_lock(&g_lock);
    scope_clock_update(&g_clock);
    *out = g_clock;
    pthread_mutex_unlock(&g_lock);
}

static uint64_t round_up_pow2(uint64_t v) {
    uint64_t p = 16;
    while (p < v) p <<= 1;
    return p;
}

int scope_configure(uint64_t ring_records, uint64_t arena_bytes, int overflow,
                    uint64_t block_timeout_ns, uint32_t max_depth, int clock_source) {
    if (ring_records < 16 || ring_records > (1ull << 32)) return -1;
    if (arena_bytes < 1024 || arena_bytes > (1ull << 31)) return -1;
    if (overflow != SCOPE_OVERFLOW_DROP && overflow != SCOPE_OVERFLOW_BLOCK) return -1;
    if (clock_source != SCOPE_CLOCK_MONOTONIC &&
        (clock_source != SCOPE_CLOCK_TSC || !scope_tsc_usable()))
        return -1;
    scope_g_ring_records = round_up_pow2(ring_records);
    scope_g_arena_bytes = (uint32_t)round_up_pow2(arena_bytes);
    scope_g_overflow = overflow;
    scope_g_block_timeout_ns = block_timeout_ns;
    scope_g_max_depth = max_depth ? max_depth : 1;
    pthread_mutex_lock(&g_lock);
    /* Keep an existing TSC origin: the longer the interval, the better the rate. */
    if (clock_source != g_clock.source || g_clock.ns0 == 0) {
        scope_g_clock_source = clock_source;
        scope_clock_start(&g_clock, clock_source);
    }
    pthread_mutex_unlock(&g_lock);
    return 0;
}

void scope_set_suspension_min(int64_t min_ns) {
    pthread_mutex_lock(&g_lock);
    double ticks = min_ns < 0 ? -1.0 : (double)min_ns / g_clock.ns_per_tick;
    scope_g_suspension_min_ticks = ticks < 0 || ticks >= 9e18 ? INT64_MAX : (int64_t)ticks;
    pthread_mutex_unlock(&g_lock);
}

void scope_set_enabled(int enabled) { atomic_store(&scope_g_enabled, enabled ? 1 : 0); }
int scope_is_enabled(void) { return atomic_load(&scope_g_enabled); }

static void hold_unfinished_locked(scope_thread *into, const scope_frame *f, uint64_t end_id);

/* The thread is done with its stack: it has no open call left. */
static void release_stack(scope_thread *t) {
    if (!t->stack_in_ring) free(t->stack);
    t->stack = NULL;
    t->stack_capacity = 0;
    t->stack_in_ring = 0;
    scope_set_depth(t, 0);
}

static void thread_died(void *arg) {
    scope_thread *t = (scope_thread *)arg;
    pthread_mutex_lock(&g_lock);
    /* Calls a thread still had open when it ended never return. */
    for (uint32_t i = 0; i < t->depth; i++) {
        if (!t->stack[i].recorded) continue;
        hold_unfinished_locked(t, &t->stack[i], scope_end_id(t, &t->stack[i]));
        t->stack[i].recorded = 0; /* a reader of its ring file must not write it again */
    }
    release_stack(t);
    int64_t now = scope_monotonic_ns();
    if (t->slot - 1 < g_infos_len) g_infos[t->slot - 1].end_ns = now;
    atomic_store_explicit(&t->h->end_ns, now, memory_order_relaxed);
    pthread_mutex_unlock(&g_lock);
    atomic_store_explicit(&t->h->dead, 1, memory_order_release);
}

static int g_key_made = 0;

static void make_key(void) { g_key_made = pthread_key_create(&g_key, thread_died) == 0; }

static int record_info(scope_thread *t) {
    if (g_infos_len == g_infos_cap) {
        size_t cap = g_infos_cap ? g_infos_cap * 2 : 64;
        scope_thread_info *grown = realloc(g_infos, cap * sizeof *grown);
        if (!grown) return -1;
        g_infos = grown;
        g_infos_cap = cap;
    }
    scope_thread_info *info = &g_infos[g_infos_len++];
    memset(info, 0, sizeof *info);
    info->slot = t->slot;
    info->native_id = t->h->native_id;
    info->ident = t->h->ident;
    info->start_ns = t->h->start_ns;
    return 0;
}

/* ---- Where rings live: files of the process's folder, or private memory ---- */

/* The folder of this process's ring files ("" while rings are private), and its
 * process header.  A path, not a descriptor: the program may close any fd. */
static char g_live_dir[4096] = "";
static scope_process_header *_Atomic g_process = NULL; /* read by signal handlers too */

static int g_atfork_registered = 0;
static void atfork_child(void);

/* Creates file path (0600, never an existing one) reserved to bytes and maps it
 * shared; NULL with errno set if any step fails (the file is then removed). */
static void *map_new_file(const char *path, uint64_t bytes) {
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return NULL;
    void *map = MAP_FAILED;
    int err = posix_fallocate(fd, 0, (off_t)bytes);
    if (err == 0)
        map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    else
        errno = err;
    int saved = errno;
    close(fd);
    if (map == MAP_FAILED) {
        unlink(path);
        errno = saved;
        return NULL;
    }
    /* A forked child does not inherit it: it must never write into its parent's files. */
    madvise(map, bytes, MADV_DONTFORK);
    return map;
}

/* Maps a new, zeroed ring of bytes (g_lock held); NULL if there is no memory.  A
 * file of the folder when there is one, else (or if the file cannot be made)
 * private memory.  *path gets the file's path (malloc'd) or NULL. */
static void *map_ring(uint32_t slot, uint64_t bytes, char **path) {
    *path = NULL;
    if (g_live_dir[0]) {
        char name[sizeof g_live_dir + 32];
        snprintf(name, sizeof name, "%s/ring-%u", g_live_dir, slot);
        void *map = map_new_file(name, bytes);
        if (map && (*path = strdup(name))) return map;
        if (map) munmap(map, bytes);
        atomic_fetch_add(&g_unshared, 1);
        if (g_process) atomic_fetch_add(&g_process->unshared, 1);
    }
    void *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return NULL;
    madvise(map, bytes, MADV_DONTFORK);
    return map;
}

/* Lets go of a ring's memory, and of its file (removed if remove is set). */
static void unmap_ring(scope_thread *t, int remove) {
    if (t->path && remove) unlink(t->path);
    free(t->path);
    t->path = NULL;
    if (t->h) munmap(t->h, t->map_bytes);
    t->h = NULL;
}

/* The thread's ring of an earlier generation (g_lock held): it is done with.  Its
 * open calls were written as unfinished when their recording stopped; the drainer
 * frees the ring once it is empty. */
static void retire_old_ring(scope_thread *old) {
    release_stack(old);
    atomic_store_explicit(&old->h->end_ns, scope_monotonic_ns(), memory_order_relaxed);
    atomic_store_explicit(&old->h->dead, 1, memory_order_release);
}

scope_thread *scope_thread_create(void) {
    pthread_once(&g_key_once, make_key);
    scope_thread *t = calloc(1, sizeof *t);
    if (!t) goto fail;
    pthread_mutex_lock(&g_lock);
    if (!g_atfork_registered) g_atfork_registered = pthread_atfork(NULL, NULL, atfork_child) == 0;
    if (scope_tls_thread) retire_old_ring(scope_tls_thread);
    t->generation = atomic_load(&scope_g_ring_generation);
    t->slot = g_next_slot++;
    t->capacity = scope_g_ring_records;
    t->arena_capacity = scope_g_arena_bytes;
    t->map_bytes = scope_ring_bytes(t->capacity, t->arena_capacity);
    t->h = map_ring(t->slot, t->map_bytes, &t->path);
    if (!t->h) {
        pthread_mutex_unlock(&g_lock);
        goto fail;
    }
    t->mask = t->capacity - 1;
    t->records = (scope_record *)((uint8_t *)t->h + SCOPE_RING_HEADER_BYTES);
    t->arena = (uint8_t *)(t->records + t->capacity);
    t->stack = scope_ring_frames(t->h, t->capacity, t->arena_capacity);
    t->stack_capacity = scope_g_max_depth < SCOPE_RING_FRAMES ? scope_g_max_depth : SCOPE_RING_FRAMES;
    t->stack_in_ring = 1;
    scope_ring_header *h = t->h;
    atomic_store_explicit(&h->stack_in_ring, 1, memory_order_relaxed);
    h->magic = SCOPE_RING_MAGIC;
    h->version = SCOPE_SHARED_VERSION;
    h->header_bytes = SCOPE_RING_HEADER_BYTES;
    h->capacity = t->capacity;
    h->arena_capacity = t->arena_capacity;
    h->slot = t->slot;
    h->native_id = scope_os_thread_id();
    h->ident = (uint64_t)pthread_self();
    h->start_ns = scope_monotonic_ns();
    if (record_info(t) != 0) {
        unmap_ring(t, 1);
        pthread_mutex_unlock(&g_lock);
        goto fail;
    }
    t->next = g_threads;
    g_threads = t;
    pthread_mutex_unlock(&g_lock);
    t->id_base = (uint64_t)t->slot << SCOPE_SLOT_SHIFT;
    pthread_setspecific(g_key, t);
    scope_tls_thread = t;
    return t;
fail:
    atomic_fetch_add(&g_setup_failures, 1);
    free(t); /* its stack was in the ring it could not have */
    return NULL;
}

int scope_live_open(const char *dir, int64_t parent_pid) {
    if (strlen(dir) >= sizeof g_live_dir) {
        errno = ENAMETOOLONG;
        return -1;
    }
    char path[sizeof g_live_dir + 32];
    snprintf(path, sizeof path, "%s/process", dir);
    scope_process_header *p = map_new_file(path, SCOPE_PROCESS_HEADER_BYTES);
    if (!p) return -1;
    p->magic = SCOPE_PROCESS_MAGIC;
    p->version = SCOPE_SHARED_VERSION;
    p->header_bytes = SCOPE_PROCESS_HEADER_BYTES;
    p->pid = getpid();
    p->parent_pid = parent_pid;
    p->start_ns = scope_monotonic_ns();
    p->clock_source = scope_g_clock_source;
    atomic_store(&p->state, SCOPE_PROCESS_RUNNING);
    pthread_mutex_lock(&g_lock);
    /* A signal handler may read g_process at any moment (scope_live_signalled):
     * it never sees a header that is already unmapped. */
    scope_process_header *old = g_process;
    g_process = p;
    if (old) munmap(old, SCOPE_PROCESS_HEADER_BYTES);
    strcpy(g_live_dir, dir);
    atomic_fetch_add(&scope_g_ring_generation, 1); /* every thread's next ring: in dir */
    pthread_mutex_unlock(&g_lock);
    return 0;
}

void scope_live_ended(uint32_t state, int32_t exit_status) {
    pthread_mutex_lock(&g_lock);
    if (g_process) {
        atomic_store(&g_process->exit_status, exit_status);
        atomic_store(&g_process->end_ns, scope_monotonic_ns());
        atomic_store(&g_process->setup_failures, atomic_load(&g_setup_failures));
        atomic_store(&g_process->unfinished, atomic_load(&g_unfinished));
        atomic_store_explicit(&g_process->state, state, memory_order_release);
    }
    pthread_mutex_unlock(&g_lock);
}

/* Notes an end in the header with no lock: called from the C library's exit
 * handlers and from a signal handler (a thread may hold the lock, and this
 * process is ending).  Only atomic stores and getpid: async-signal-safe. */
static void note_end_unlocked(uint32_t state, int32_t exit_status) {
    scope_process_header *p = g_process;
    if (!p || p->pid != getpid()) return; /* a forked child's inherited mapping */
    atomic_store(&p->exit_status, exit_status);
    atomic_store(&p->end_ns, scope_monotonic_ns());
    atomic_store_explicit(&p->state, state, memory_order_release);
}

void scope_live_parked(size_t parked) {
    scope_process_header *p = g_process; /* changed only with the GIL held, as here */
    if (p) atomic_store_explicit(&p->parked, parked, memory_order_relaxed);
}

void scope_live_exited(int status) { note_end_unlocked(SCOPE_PROCESS_EXITED, status); }

void scope_live_signalled(int signum) { note_end_unlocked(SCOPE_PROCESS_SIGNALLED, 128 + signum); }

void scope_live_close(int remove) {
    pthread_mutex_lock(&g_lock);
    if (g_live_dir[0]) {
        for (scope_thread *t = g_threads; t; t = t->next) {
            if (!t->path) continue;
            if (remove) unlink(t->path);
            free(t->path); /* the ring stays mapped while its thread may still write */
            t->path = NULL;
        }
        char path[sizeof g_live_dir + 32];
        snprintf(path, sizeof path, "%s/process", g_live_dir);
        if (remove) unlink(path);
        scope_process_header *old = g_process;
        g_process = NULL; /* before the unmap: see scope_live_open */
        if (old) munmap(old, SCOPE_PROCESS_HEADER_BYTES);
        if (remove) rmdir(g_live_dir);
        g_live_dir[0] = 0;
    }
    pthread_mutex_unlock(&g_lock);
}

int scope_wait_for_space(scope_thread *t, uint64_t head, uint32_t arena_needed) {
    /* The drainer has not freed space for a whole timeout (it is stuck, or gone):
     * waiting again for every record would stall the program for good.  Records
     * are dropped, and counted, until space appears. */
    if (t->stalled) return 0;
    int64_t start = scope_monotonic_ns();
    int64_t deadline = start + (int64_t)scope_g_block_timeout_ns;
    int has_space = 0;
    void *saved = scope_before_wait ? scope_before_wait() : NULL;
    struct timespec pause = {0, 50000};
    for (;;) {
        t->tail_cache = atomic_load_explicit(&t->h->tail, memory_order_acquire);
        t->arena_tail_cache = atomic_load_explicit(&t->h->arena_tail, memory_order_acquire);
        if (!scope_ring_full(t, head, arena_needed)) {
            has_space = 1;
            break;
        }
        if (scope_monotonic_ns() >= deadline) break;
        nanosleep(&pause, NULL);
    }
    if (scope_after_wait) scope_after_wait(saved);
    t->stalled = !has_space;
    atomic_fetch_add_explicit(&t->h->blocked_ns, (uint64_t)(scope_monotonic_ns() - start),
                              memory_order_relaxed);
    return has_space;
}

void scope_stack_to_ring(scope_thread *t) {
    scope_frame *frames = scope_ring_frames(t->h, t->capacity, t->arena_capacity);
    memcpy(frames, t->stack, (size_t)t->depth * sizeof *frames);
    free(t->stack);
    t->stack = frames;
    t->stack_capacity = scope_g_max_depth < SCOPE_RING_FRAMES ? scope_g_max_depth : SCOPE_RING_FRAMES;
    t->stack_in_ring = 1;
    atomic_store_explicit(&t->h->stack_in_ring, 1, memory_order_release);
}

int scope_grow_stack(scope_thread *t) {
    if (t->stack_capacity >= scope_g_max_depth || !t->stack) return 0;
    uint32_t cap = t->stack_capacity * 2;
    if (cap > scope_g_max_depth) cap = scope_g_max_depth;
    scope_frame *grown;
    if (t->stack_in_ring) { /* deeper than the ring holds: a reader sees only the count */
        grown = malloc((size_t)cap * sizeof *grown);
        if (!grown) return 0;
        memcpy(grown, t->stack, (size_t)t->depth * sizeof *grown);
        t->stack_in_ring = 0;
        atomic_store_explicit(&t->h->stack_in_ring, 0, memory_order_relaxed);
    } else {
        grown = realloc(t->stack, (size_t)cap * sizeof *grown);
        if (!grown) return 0;
    }
    t->stack = grown;
    t->stack_capacity = cap;
    return 1;
}

/* Copies ring h's records from cursor->read on (and their arena bytes) out,
 * converting timestamps with clock, and moves the cursor past them; returns how
 * many.  Stops early when either output buffer is full.  Space is freed only when
 * the caller publishes the cursor (scope_publish_cursor).  The ring may be another
 * process's file, perhaps left half-written by a crash: nothing it says is
 * trusted to stay in bounds. */
uint64_t scope_drain_ring(scope_ring_header *h, const scope_clock *clock,
                          scope_ring_cursor *cursor, scope_record *out, uint64_t room,
                          uint8_t *arena_out, size_t arena_room, size_t *arena_used) {
    scope_record *records = (scope_record *)((uint8_t *)h + h->header_bytes);
    uint8_t *arena = (uint8_t *)(records + h->capacity);
    uint64_t mask = h->capacity - 1;
    uint32_t arena_capacity = h->arena_capacity;
    uint64_t tail = cursor->read;
    uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);
    uint64_t avail = head - tail;
    if (avail > h->capacity) { /* only a corrupt file: keep its newest records */
        tail = head - h->capacity;
        avail = h->capacity;
    }
    if (avail > h->high_water) h->high_water = avail;
    uint64_t take = avail < room ? avail : room;
    uint64_t start = tail & mask;
    uint64_t first = take < h->capacity - start ? take : h->capacity - start;
    memcpy(out, records + start, first * sizeof(scope_record));
    memcpy(out + first, records, (take - first) * sizeof(scope_record));
    int tsc = clock->source == SCOPE_CLOCK_TSC;
    for (uint64_t i = 0; i < take; i++) {
        uint32_t kind = (uint32_t)(out[i].func_word >> SCOPE_KIND_SHIFT);
        if (kind != SCOPE_VALUE) {
            out[i].start_ns = scope_ticks_to_ns(clock, out[i].start_ns);
            if (kind != SCOPE_UNFINISHED && tsc) {
                out[i].duration_ns = (int64_t)((double)out[i].duration_ns * clock->ns_per_tick);
                out[i].suspended_ns = (int64_t)((double)out[i].suspended_ns * clock->ns_per_tick);
                if (kind == SCOPE_SUMMED_RETURN || kind == SCOPE_SUMMED_RAISE) {
                    uint64_t self = out[i].end_id & ~SCOPE_DIRECT_CHILD;
                    uint64_t ns = (uint64_t)((double)self * clock->ns_per_tick);
                    out[i].end_id = ns | (out[i].end_id & SCOPE_DIRECT_CHILD);
                }
            }
            continue;
        }
        scope_value_record *v = (scope_value_record *)&out[i];
        if (v->role == SCOPE_ROLE_SUSPENSION) {
            v->payload = scope_ticks_to_ns(clock, v->payload);
            if (tsc) v->raised_in = (uint64_t)((double)v->raised_in * clock->ns_per_tick);
        }
        if (!v->arena_len) continue;
        if (v->arena_len > arena_capacity) { /* only a corrupt file */
            v->arena_len = 0;
            v->tag = SCOPE_TAG_LOST;
            continue;
        }
        if (v->arena_len > arena_room - *arena_used) {
            take = i; /* the rest waits for the next drain */
            break;
        }
        uint32_t pos = v->arena_pos & (arena_capacity - 1);
        uint32_t part = v->arena_len < arena_capacity - pos ? v->arena_len : arena_capacity - pos;
        memcpy(arena_out + *arena_used, arena + pos, part);
        memcpy(arena_out + *arena_used + part, arena, v->arena_len - part);
        cursor->arena_read = v->arena_pos + v->arena_len;
        cursor->arena_moved = 1;
        v->arena_pos = (uint32_t)*arena_used;
        *arena_used += v->arena_len;
    }
    h->drained += take;
    cursor->read = tail + take;
    return take;
}

void scope_publish_cursor(scope_ring_header *h, scope_ring_cursor *cursor) {
    if (cursor->arena_moved)
        atomic_store_explicit(&h->arena_tail, cursor->arena_read, memory_order_release);
    cursor->arena_moved = 0;
    atomic_store_explicit(&h->tail, cursor->read, memory_order_release);
}

void scope_ring_counters(const scope_ring_header *h, scope_thread_info *info) {
    info->produced = atomic_load_explicit(&h->head, memory_order_acquire);
    info->dropped = atomic_load(&h->dropped);
    info->drained = h->drained;
    info->high_water = h->high_water;
    info->blocked_ns = atomic_load(&h->blocked_ns);
    info->stack_overflow = atomic_load(&h->stack_overflow);
    info->unmatched_exits = atomic_load(&h->unmatched_exits);
    info->values_lost = atomic_load(&h->values_lost);
    info->calls = atomic_load_explicit(&h->calls, memory_order_relaxed);
}

/* Drains every ring into out (g_lock held); returns how many records. */
static size_t drain_rings(scope_record *out, size_t capacity, uint8_t *arena_out,
                          size_t arena_capacity, size_t *arena_used) {
    size_t n = 0;
    scope_clock_update(&g_clock);
    scope_thread **link = &g_threads;
    while (*link && n < capacity) {
        scope_thread *t = *link;
        scope_ring_header *h = t->h;
        int dead = atomic_load_explicit(&h->dead, memory_order_acquire);
        /* This process's own drainer frees space at once: what it copies out is
         * in its own memory from then on, held or in a batch. */
        scope_ring_cursor cursor = {atomic_load_explicit(&h->tail, memory_order_relaxed), 0, 0};
        n += scope_drain_ring(h, &g_clock, &cursor, out + n, capacity - n, arena_out,
                              arena_out ? arena_capacity : 0, arena_used);
        scope_publish_cursor(h, &cursor);
        uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);
        if (dead && atomic_load_explicit(&h->tail, memory_order_relaxed) == head) {
            /* Its owner is gone and nothing is left: keep the counters, free the ring. */
            if (t->slot - 1 < g_infos_len) scope_ring_counters(h, &g_infos[t->slot - 1]);
            *link = t->next;
            unmap_ring(t, 1);
            free(t);
            continue;
        }
        link = &t->next;
    }
    return n;

}

/* Records held in C memory by scope_hold, handed out first by scope_drain (g_lock). */
static scope_record *g_held = NULL;
static size_t g_held_start = 0, g_held_len = 0, g_held_cap = 0;
static uint8_t *g_held_arena = NULL;
static size_t g_held_arena_len = 0, g_held_arena_cap = 0;

#define HOLD_CHUNK 65536

static int hold_reserve(size_t max_bytes) {
    if (g_held_start && g_held_start + g_held_len + HOLD_CHUNK > g_held_cap) {
        memmove(g_held, g_held + g_held_start, g_held_len * sizeof *g_held);
        g_held_start = 0;
    }
    if (g_held_len + HOLD_CHUNK > g_held_cap) {
        size_t cap = g_held_cap ? g_held_cap * 2 : 4 * HOLD_CHUNK;
        if (cap * sizeof *g_held + g_held_arena_cap > max_bytes) return 0;
        scope_record *grown = realloc(g_held, cap * sizeof *grown);
        if (!grown) return 0;
        g_held = grown;
        g_held_cap = cap;
    }
    if (g_held_arena_len + (1u << 20) > g_held_arena_cap) {
        size_t cap = g_held_arena_cap ? g_held_arena_cap * 2 : 4u << 20;
        if (g_held_cap * sizeof *g_held + cap > max_bytes) return 0;
        uint8_t *grown = realloc(g_held_arena, cap);
        if (!grown) return 0;
        g_held_arena = grown;
        g_held_arena_cap = cap;
    }
    return 1;
}

int scope_hold(size_t max_bytes) {
    pthread_mutex_lock(&g_lock);
    int all = 1;
    for (;;) {
        if (!hold_reserve(max_bytes)) {
            all = 0;
            break;
        }
        size_t room = g_held_cap - g_held_start - g_held_len;
        size_t n = drain_rings(g_held + g_held_start + g_held_len, room, g_held_arena,
                               g_held_arena_cap, &g_held_arena_len);
        g_held_len += n;
        if (n < room) break; /* every ring is empty, or the arena needs room */
    }
    pthread_mutex_unlock(&g_lock);
    return all;
}

/* Appends one record to the held store (g_lock held); 0 if out of memory. */
static int hold_append(const scope_record *r) {
    if (g_held_start + g_held_len == g_held_cap) {
        if (g_held_start) {
            memmove(g_held, g_held + g_held_start, g_held_len * sizeof *g_held);
            g_held_start = 0;
        } else {
            size_t cap = g_held_cap ? g_held_cap * 2 : 4 * HOLD_CHUNK;
            scope_record *grown = realloc(g_held, cap * sizeof *grown);
            if (!grown) return 0;
            g_held = grown;
            g_held_cap = cap;
        }
    }
    g_held[g_held_start + g_held_len++] = *r;
    return 1;
}

/* Unfinished calls go into the rings rather than held memory: set when no
 * drainer of this process's own would ever hand held records out. */
static int g_unfinished_into_rings = 0;

void scope_set_unfinished_into_rings(int into_rings) { g_unfinished_into_rings = into_rings; }

/* Writes frame f as unfinished (g_lock held): into ring into, whose producer is
 * the calling thread, when unfinished calls go into rings; else into held memory. */
static void hold_unfinished_locked(scope_thread *into, const scope_frame *f, uint64_t end_id) {
    if (g_unfinished_into_rings && into && into->h) {
        scope_record *slot = scope_ring_reserve(into);
        if (!slot) return; /* counted as dropped */
        scope_fill_record(slot, f, end_id, SCOPE_UNFINISHED, -1, -1);
        scope_ring_publish(into);
        atomic_store_explicit(&into->h->calls, ++into->calls_written, memory_order_relaxed);
        atomic_fetch_add(&g_unfinished, 1);
        return;
    }
    scope_record r;
    scope_fill_record(&r, f, end_id, SCOPE_UNFINISHED, -1, -1);
    r.start_ns = scope_ticks_to_ns(&g_clock, r.start_ns);
    if (hold_append(&r)) {
        atomic_fetch_add(&g_unfinished, 1);
        atomic_fetch_add(&g_unfinished_held, 1);
    } else
        atomic_fetch_add(&g_setup_failures, 1);
}

void scope_hold_unfinished(const scope_frame *f, uint64_t end_id) {
    scope_thread *into = g_unfinished_into_rings ? scope_current_thread() : NULL;
    pthread_mutex_lock(&g_lock);
    hold_unfinished_locked(into, f, end_id);
    pthread_mutex_unlock(&g_lock);
}

void scope_record_unfinished(scope_thread *t, const scope_frame *f) {
    if (!f->recorded) return;
    scope_record *r = scope_ring_reserve(t);
    if (!r) return;
    scope_fill_record(r, f, scope_end_id(t, f), SCOPE_UNFINISHED, -1, -1);
    scope_ring_publish(t);
    atomic_store_explicit(&t->h->calls, ++t->calls_written, memory_order_relaxed);
    atomic_fetch_add(&g_unfinished, 1);
}

size_t scope_unfinish_stacks(void) {
    size_t n = 0;
    scope_thread *into = g_unfinished_into_rings ? scope_current_thread() : NULL;
    pthread_mutex_lock(&g_lock);
    /* A live thread's stack is its owner's: the caller guarantees that no owner
     * runs meanwhile (it holds the GIL). */
    for (scope_thread *t = g_threads; t; t = t->next) {
        if (atomic_load_explicit(&t->h->dead, memory_order_acquire)) continue;
        for (uint32_t i = 0; i < t->depth; i++) {
            scope_frame *f = &t->stack[i];
            if (!f->recorded) continue;
            hold_unfinished_locked(into, f, scope_end_id(t, f));
            f->recorded = 0;
            n++;
        }
    }
    pthread_mutex_unlock(&g_lock);
    return n;
}

/* Moves held records (and their arena bytes) to out, oldest first (g_lock held). */
static size_t release_held(scope_record *out, size_t capacity, uint8_t *arena_out,
                           size_t arena_capacity, size_t *arena_used) {
    size_t n = 0;
    while (n < capacity && n < g_held_len) {
        scope_record *r = &g_held[g_held_start + n];
        if (r->func_word >> SCOPE_KIND_SHIFT == SCOPE_VALUE) {
            scope_value_record *v = (scope_value_record *)r;
            if (v->arena_len > arena_capacity - *arena_used) break;
            memcpy(arena_out + *arena_used, g_held_arena + v->arena_pos, v->arena_len);
            out[n] = *r;
            ((scope_value_record *)&out[n])->arena_pos = (uint32_t)*arena_used;
            *arena_used += v->arena_len;
        } else {
            out[n] = *r;
        }
        n++;
    }
    g_held_start += n;
    g_held_len -= n;
    if (!g_held_len) {
        g_held_start = 0;
        g_held_arena_len = 0;
        if (g_held_cap > 16 * HOLD_CHUNK) { /* a burst is over: give its memory back */
            free(g_held);
            free(g_held_arena);
            g_held = NULL;
            g_held_arena = NULL;
            g_held_cap = g_held_arena_cap = 0;
        }
    }
    return n;
}

size_t scope_drain(scope_record *out, size_t capacity, uint8_t *arena_out, size_t arena_capacity,
                   size_t *arena_used) {
    size_t arena_dummy = 0;
    if (!arena_used) arena_used = &arena_dummy;
    *arena_used = 0;
    if (!arena_out) arena_capacity = 0;
    pthread_mutex_lock(&g_lock);
    size_t n = release_held(out, capacity, arena_out, arena_capacity, arena_used);
    /* Rings only once nothing is held, so each thread's records stay in order. */
    if (!g_held_len)
        n += drain_rings(out + n, capacity - n, arena_out, arena_capacity, arena_used);
    pthread_mutex_unlock(&g_lock);
    return n;
}

static int is_live(uint32_t slot) {
    for (scope_thread *t = g_threads; t; t = t->next)
        if (t->slot == slot) return 1;
    return 0;
}

void scope_get_stats(scope_stats *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&g_lock);
    out->dropped = atomic_load(&g_setup_failures);
    out->threads_seen = g_next_slot - 1;
    out->held = g_held_len;
    out->unfinished = atomic_load(&g_unfinished);
    out->unfinished_held = atomic_load(&g_unfinished_held);
    out->unshared = atomic_load(&g_unshared);
    for (size_t i = 0; i < g_infos_len; i++) {
        if (is_live(g_infos[i].slot)) continue;
        scope_thread_info *info = &g_infos[i];
        out->produced += info->produced;
        out->dropped += info->dropped;
        out->drained += info->drained;
        out->blocked_ns += info->blocked_ns;
        out->stack_overflow += info->stack_overflow;
        out->unmatched_exits += info->unmatched_exits;
        out->values_lost += info->values_lost;
        if (info->high_water > out->high_water) out->high_water = info->high_water;
    }
    for (scope_thread *t = g_threads; t; t = t->next) {
        uint64_t head = atomic_load_explicit(&t->h->head, memory_order_acquire);
        uint64_t tail = atomic_load_explicit(&t->h->tail, memory_order_acquire);
        out->produced += head;
        out->dropped += atomic_load(&t->h->dropped);
        out->drained += t->h->drained;
        out->pending += head - tail;
        out->blocked_ns += atomic_load(&t->h->blocked_ns);
        out->stack_overflow += atomic_load(&t->h->stack_overflow);
        out->unmatched_exits += atomic_load(&t->h->unmatched_exits);
        out->values_lost += atomic_load(&t->h->values_lost);
        if (t->h->high_water > out->high_water) out->high_water = t->h->high_water;
        if (!atomic_load(&t->h->dead)) out->threads_live++;
    }
    pthread_mutex_unlock(&g_lock);
}

void scope_set_thread_name(const char *name) {
    scope_thread *t = scope_tls_thread;
    if (!t || !name) return;
    pthread_mutex_lock(&g_lock);
    if (t->slot - 1 < g_infos_len) {
        scope_thread_info *info = &g_infos[t->slot - 1];
        strncpy(info->name, name, sizeof info->name - 1);
        info->name[sizeof info->name - 1] = 0;
        memcpy(t->h->name, info->name, sizeof t->h->name);
    }
    pthread_mutex_unlock(&g_lock);
}

void scope_set_thread_origin(uint32_t parent_slot, uint64_t started_by) {
    scope_thread *t = scope_tls_thread;
    if (!t) return;
    pthread_mutex_lock(&g_lock);
    if (t->slot - 1 < g_infos_len) {
        g_infos[t->slot - 1].parent_slot = parent_slot;
        g_infos[t->slot - 1].started_by = started_by;
    }
    t->h->parent_slot = parent_slot;
    t->h->started_by = started_by;
    pthread_mutex_unlock(&g_lock);
}

size_t scope_get_threads(scope_thread_info *out, size_t capacity) {
    pthread_mutex_lock(&g_lock);
    size_t n = g_infos_len < capacity ? g_infos_len : capacity;
    memcpy(out, g_infos, n * sizeof *out);
    for (scope_thread *t = g_threads; t; t = t->next)
        if (t->slot - 1 < n) scope_ring_counters(t->h, &out[t->slot - 1]);
    size_t total = g_infos_len;
    pthread_mutex_unlock(&g_lock);
    return total;
}

/* ---- The mover: rings into held memory while the writer is busy storing ---- */

static pthread_t g_mover;
static int g_mover_running = 0; /* only the thread that starts and stops recording touches it */
static _Atomic int g_mover_stop = 0;
static _Atomic size_t g_mover_max_bytes = 0;
static _Atomic uint64_t g_mover_interval_ns = 1000000;
static _Atomic int64_t g_mover_tid = 0;

/* Whether any ring is at least a quarter full (g_lock held). */
static int rings_filling(void) {
    for (scope_thread *t = g_threads; t; t = t->next) {
        uint64_t head = atomic_load_explicit(&t->h->head, memory_order_acquire);
        uint64_t tail = atomic_load_explicit(&t->h->tail, memory_order_relaxed);
        if (head - tail >= t->capacity / 4) return 1;
    }
    return 0;
}

static void *mover_main(void *unused) {
    (void)unused;
    atomic_store(&g_mover_tid, scope_os_thread_id());
    while (!atomic_load(&g_mover_stop)) {
        uint64_t interval = atomic_load(&g_mover_interval_ns);
        struct timespec pause = {(time_t)(interval / 1000000000u), (long)(interval % 1000000000u)};
        nanosleep(&pause, NULL);
        pthread_mutex_lock(&g_lock);
        int filling = rings_filling();
        pthread_mutex_unlock(&g_lock);
        if (filling) scope_hold(atomic_load(&g_mover_max_bytes));
    }
    return NULL;
}

int scope_start_mover(size_t max_bytes, uint64_t interval_ns) {
    atomic_store(&g_mover_max_bytes, max_bytes);
    atomic_store(&g_mover_interval_ns, interval_ns ? interval_ns : 1000000);
    if (g_mover_running) return 1;
    atomic_store(&g_mover_stop, 0);
    sigset_t all, previous;
    sigfillset(&all);
    /* The program's signals go to its own threads, never to this one. */
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    int failed = pthread_create(&g_mover, NULL, mover_main, NULL);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    g_mover_running = !failed;
    return g_mover_running;
}

void scope_stop_mover(void) {
    if (!g_mover_running) return;
    atomic_store(&g_mover_stop, 1);
    pthread_join(g_mover, NULL);
    scope_wait_task_gone(atomic_load(&g_mover_tid), 1000000000);
    g_mover_running = 0;
}

int64_t scope_os_thread_id(void) { return (int64_t)syscall(SYS_gettid); }

int scope_wait_task_gone(int64_t tid, uint64_t timeout_ns) {
    /* pthread_join returns once the thread's stack may be freed, which the
     * kernel signals before it unlists the thread: for a few microseconds the
     * thread still counts (in /proc/self/stat, which CPython 3.12+ reads to
     * decide whether os.fork warns). */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%lld", (long long)tid);
    int64_t deadline = scope_monotonic_ns() + (int64_t)timeout_ns;
    while (tid > 0 && access(path, F_OK) == 0) {
        if (scope_monotonic_ns() > deadline) return 0;
        struct timespec pause = {0, 20000};
        nanosleep(&pause, NULL);
    }
    return 1;
}

/* The parent's rings, as a forked child found them: not mapped here
 * (MADV_DONTFORK), their structures freed by scope_after_fork_child. */
static scope_thread *g_forked_away = NULL;

/* Inside fork(), in the child, before anything else runs there: the rings and
 * the folder are the parent's, and nothing here may write to them. */
static void atfork_child(void) {
    atomic_store(&scope_g_enabled, 0);
    scope_tls_thread = NULL;
    if (g_key_made) pthread_setspecific(g_key, NULL); /* no destructor for a ring not here */
    g_forked_away = g_threads;
    g_threads = NULL;
    g_process = NULL;
    g_live_dir[0] = 0;
}

void scope_after_fork_child(void) {
    /* Only the forking thread survives; its parent's records belong to the parent.
     * The child starts with no rings, slot numbering from 1, and recording off. */
    atomic_store(&scope_g_enabled, 0);
    pthread_mutex_init(&g_lock, NULL);
    scope_batch_after_fork();
    scope_thread *t = g_forked_away ? g_forked_away : g_threads;
    while (t) {
        scope_thread *next = t->next;
        free(t->path);
        if (!t->stack_in_ring) free(t->stack); /* else in a ring not mapped here */
        free(t);
        t = next;
    }
    if (g_key_made) pthread_setspecific(g_key, NULL);
    scope_tls_thread = NULL;
    g_forked_away = NULL;
    g_threads = NULL;
    g_process = NULL;
    g_live_dir[0] = 0;
    g_infos_len = 0;
    g_next_slot = 1;
    atomic_store(&g_setup_failures, 0);
    atomic_store(&g_unfinished, 0);
    atomic_store(&g_unfinished_held, 0);
    atomic_store(&g_unshared, 0);
    g_unfinished_into_rings = 0;
    g_held_start = g_held_len = g_held_arena_len = 0; /* the parent's, not ours */
    g_mover_running = 0; /* the parent's thread is not in this process */
    atomic_store(&g_mover_stop, 0);
}

/* ---- Producer API without Python: tests, benchmarks and the sanitizer build ---- */

void scope_emit_enter(uint64_t func_id) {
    if (!scope_enabled()) return;
    scope_thread *t = scope_current_thread();
    if (!t) return;
    uint64_t parent = t->depth ? t->stack[t->depth - 1].call_id : 0;
    scope_push_call(t, func_id, parent, t->depth, NULL, 0);
}

void scope_emit_exit(uint64_t func_id, int raised) {
    scope_thread *t = scope_tls_thread;
    if (!t) return;
    if (t->overflow_depth) {
        t->overflow_depth--;
        return;
    }
    if (!t->depth || t->stack[t->depth - 1].func_id != func_id) {
        atomic_fetch_add_explicit(&t->h->unmatched_exits, 1, memory_order_relaxed);
        return;
    }
    scope_frame *f = &t->stack[scope_set_depth(t, t->depth - 1)];
    scope_record_exit(t, f, raised);
}

void scope_emit_value(uint64_t func_id, uint16_t index, const uint8_t *bytes, uint32_t len) {
    scope_thread *t = scope_tls_thread;
    if (!t || !t->depth || !scope_enabled()) return;
    scope_frame *f = &t->stack[t->depth - 1];
    if (f->recorded)
        scope_value_push(t, f->call_id, func_id, SCOPE_ROLE_ARG, index, SCOPE_TAG_BYTES, len,
                         bytes, len, 0);
}

void scope_emit_record(const scope_record *record) {
    scope_thread *t = scope_current_thread();
    if (!t) return;
    scope_record *r = scope_ring_reserve(t);
    if (!r) return;
    *r = *record;
    scope_ring_publish(t);
}

void scope_produce_pairs(uint64_t pairs, uint64_t first_func) {
    for (uint64_t i = 0; i < pairs; i++) {
        scope_emit_enter(first_func + i);
        scope_emit_exit(first_func + i, 0);
    }
}

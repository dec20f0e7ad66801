/* Reading a recorded process's rings from its folder, from any process.
 *
 * A process folder (scope_shared.h) holds a process header and one ring file
 * per thread.  scope_reader_open maps them all, checking each file against
 * what its header claims, and drains them like the recording process's own
 * drainer would: the same records, the same clock conversion (calibrated here:
 * the TSC and CLOCK_MONOTONIC are the machine's, not the process's).  This is
 * how records a killed process left behind are stored, and what a recording
 * service drains while the program runs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scope_core.h"

typedef struct {
    scope_ring_header *h;
    uint64_t bytes;
    scope_ring_cursor cursor; /* read past what is published as the tail */
} mapped_ring;

struct scope_reader {
    char *dir;
    scope_process_header *process;
    mapped_ring *rings;
    size_t count, cap;
    scope_clock clock;
    uint64_t process_bits; /* k << SCOPE_PROCESS_SHIFT */
};

void scope_reader_set_process_number(scope_reader *r, uint64_t k) {
    r->process_bits = k << SCOPE_PROCESS_SHIFT;
}

static inline uint64_t with_process(uint64_t id, uint64_t bits) { return id ? id | bits : 0; }

/* Names the records' calls in the run: their process's number in the high bits. */
static void number_process(scope_record *records, size_t n, uint64_t bits) {
    for (size_t i = 0; i < n; i++) {
        scope_record *r = &records[i];
        uint32_t kind = (uint32_t)(r->func_word >> SCOPE_KIND_SHIFT);
        r->call_id = with_process(r->call_id, bits);
        if (kind == SCOPE_VALUE) {
            scope_value_record *v = (scope_value_record *)r;
            if (v->role == SCOPE_ROLE_RAISE || v->role == SCOPE_ROLE_TASK)
                v->raised_in = with_process(v->raised_in, bits);
            continue;
        }
        r->parent_id = with_process(r->parent_id, bits);
        if (kind != SCOPE_SUMMED_RETURN && kind != SCOPE_SUMMED_RAISE)
            r->end_id = with_process(r->end_id, bits); /* a summed call's is its self time */
    }
}

/* Maps file path whole, shared; NULL unless it is a regular file of at least min bytes. */
static void *map_existing(const char *path, uint64_t min_bytes, uint64_t *bytes) {
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return NULL;
    struct stat st;
    void *map = MAP_FAILED;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size >= min_bytes) {
        *bytes = (uint64_t)st.st_size;
        map = mmap(NULL, *bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    } else {
        errno = EINVAL;
    }
    close(fd);
    return map == MAP_FAILED ? NULL : map;
}

static int power_of_two(uint64_t v) { return v && !(v & (v - 1)); }

/* Whether a mapped ring file is what its header says (sizes that fit the file). */
static int ring_valid(const scope_ring_header *h, uint64_t bytes) {
    return h->magic == SCOPE_RING_MAGIC && h->version == SCOPE_SHARED_VERSION &&
           h->header_bytes == SCOPE_RING_HEADER_BYTES && power_of_two(h->capacity) &&
           h->capacity <= (1ull << 32) && power_of_two(h->arena_capacity) &&
           scope_ring_bytes(h->capacity, h->arena_capacity) == bytes;
}

static int has_ring(const scope_reader *r, uint32_t slot) {
    for (size_t i = 0; i < r->count; i++)
        if (r->rings[i].h->slot == slot) return 1;
    return 0;
}

int scope_reader_refresh(scope_reader *r) {
    DIR *d = opendir(r->dir);
    if (!d) return -1;
    int added = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned slot;
        char tail;
        if (sscanf(e->d_name, "ring-%u%c", &slot, &tail) != 1 || has_ring(r, slot)) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", r->dir, e->d_name);
        uint64_t bytes = 0;
        scope_ring_header *h = map_existing(path, SCOPE_RING_HEADER_BYTES, &bytes);
        if (!h) continue;
        /* A ring whose producer has not finished its header yet is taken next time. */
        if (!ring_valid(h, bytes) || h->slot != slot) {
            munmap(h, bytes);
            continue;
        }
        if (r->count == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 16;
            mapped_ring *grown = realloc(r->rings, cap * sizeof *grown);
            if (!grown) {
                munmap(h, bytes);
                break;
            }
            r->rings = grown;
            r->cap = cap;
        }
        r->rings[r->count].h = h;
        r->rings[r->count].bytes = bytes;
        r->rings[r->count].cursor.read = atomic_load_explicit(&h->tail, memory_order_acquire);
        r->rings[r->count].cursor.arena_read = 0;
        r->rings[r->count].cursor.arena_moved = 0;
        r->count++;
        added++;
    }
    closedir(d);
    return added;
}

scope_reader *scope_reader_open(const char *dir) {
    scope_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->dir = strdup(dir))) goto fail;
    char path[4200];
    snprintf(path, sizeof path, "%s/process", dir);
    uint64_t bytes = 0;
    r->process = map_existing(path, SCOPE_PROCESS_HEADER_BYTES, &bytes);
    if (!r->process) goto fail;
    if (bytes != SCOPE_PROCESS_HEADER_BYTES || r->process->magic != SCOPE_PROCESS_MAGIC ||
        r->process->version != SCOPE_SHARED_VERSION) {
        munmap(r->process, bytes);
        r->process = NULL;
        errno = EPROTO;
        goto fail;
    }
    int source = r->process->clock_source;
    if (source == SCOPE_CLOCK_TSC && !scope_tsc_usable()) source = SCOPE_CLOCK_MONOTONIC;
    scope_clock_start(&r->clock, source);
    if (scope_reader_refresh(r) < 0) goto fail;
    return r;
fail:
    if (r) {
        int saved = errno;
        scope_reader_close(r);
        errno = saved;
    }
    return NULL;
}

void scope_reader_close(scope_reader *r) {
    if (!r) return;
    for (size_t i = 0; i < r->count; i++) munmap(r->rings[i].h, r->rings[i].bytes);
    if (r->process) munmap(r->process, SCOPE_PROCESS_HEADER_BYTES);
    free(r->rings);
    free(r->dir);
    free(r);
}

size_t scope_reader_drain(scope_reader *r, scope_record *out, size_t capacity, uint8_t *arena_out,
                          size_t arena_capacity, size_t *arena_used) {
    size_t arena_dummy = 0;
    if (!arena_used) arena_used = &arena_dummy;
    *arena_used = 0;
    if (!arena_out) arena_capacity = 0;
    scope_clock_update(&r->clock);
    size_t n = 0;
    for (size_t i = 0; i < r->count && n < capacity; i++)
        n += scope_drain_ring(r->rings[i].h, &r->clock, &r->rings[i].cursor, out + n,
                              capacity - n, arena_out, arena_capacity, arena_used);
    if (r->process_bits) number_process(out, n, r->process_bits);
    return n;
}

void scope_reader_commit(scope_reader *r) {
    for (size_t i = 0; i < r->count; i++) scope_publish_cursor(r->rings[i].h, &r->rings[i].cursor);
}

void scope_reader_clock(scope_reader *r, scope_clock *out) {
    scope_clock_update(&r->clock);
    *out = r->clock;
}

void scope_reader_process(const scope_reader *r, scope_process_info *out) {
    const scope_process_header *p = r->process;
    out->pid = p->pid;
    out->parent_pid = p->parent_pid;
    out->start_ns = p->start_ns;
    out->state = atomic_load_explicit(&p->state, memory_order_acquire);
    out->exit_status = atomic_load(&p->exit_status);
    out->end_ns = atomic_load(&p->end_ns);
    out->setup_failures = atomic_load(&p->setup_failures);
    out->unfinished = atomic_load(&p->unfinished);
    out->unshared = atomic_load(&p->unshared);
    out->parked = atomic_load(&p->parked);
}

size_t scope_reader_threads(const scope_reader *r, scope_thread_info *out, size_t capacity) {
    for (size_t i = 0; i < r->count && i < capacity; i++) {
        const scope_ring_header *h = r->rings[i].h;
        scope_thread_info *info = &out[i];
        memset(info, 0, sizeof *info);
        info->slot = h->slot | (uint32_t)(r->process_bits >> SCOPE_SLOT_SHIFT);
        info->native_id = h->native_id;
        info->ident = h->ident;
        info->start_ns = h->start_ns;
        info->end_ns = atomic_load(&h->end_ns);
        scope_ring_counters(h, info);
        info->calls = atomic_load_explicit(&h->calls, memory_order_relaxed);
        memcpy(info->name, h->name, sizeof info->name);
        info->name[sizeof info->name - 1] = 0;
        info->parent_slot = h->parent_slot;
        info->started_by = with_process(h->started_by, r->process_bits);
        if (info->parent_slot)
            info->parent_slot |= (uint32_t)(r->process_bits >> SCOPE_SLOT_SHIFT);
    }
    return r->count;
}

/* Writes a dead thread's open calls into its ring as unfinished, as its process
 * would have at its end; returns those written, and adds to *missing those it
 * could not (its stack was deeper than its file holds, or its ring was full). */
static size_t unfinish_ring(scope_ring_header *h, scope_process_header *p, size_t *missing) {
    uint32_t open = atomic_load_explicit(&h->open_calls, memory_order_relaxed);
    if (!open) return 0;
    size_t written = 0;
    if (atomic_load_explicit(&h->stack_in_ring, memory_order_relaxed) && open <= SCOPE_RING_FRAMES) {
        const scope_frame *frames = scope_ring_frames(h, h->capacity, h->arena_capacity);
        scope_record *records = (scope_record *)((uint8_t *)h + SCOPE_RING_HEADER_BYTES);
        uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);
        uint64_t tail = atomic_load_explicit(&h->tail, memory_order_acquire);
        uint64_t slot_ids = (uint64_t)h->slot << SCOPE_SLOT_SHIFT;
        for (uint32_t i = 0; i < open; i++) {
            const scope_frame *f = &frames[i];
            if (!f->recorded) continue; /* written as unfinished already, or never kept */
            if (head - tail >= h->capacity) {
                (*missing)++;
                continue;
            }
            /* It never ended: every call its thread began after it is under it. */
            uint64_t end_id = (f->call_id >> SCOPE_SLOT_SHIFT) == h->slot
                                  ? slot_ids | ((1ull << SCOPE_SLOT_SHIFT) - 1)
                                  : f->last_own_id;
            scope_fill_record(&records[head & (h->capacity - 1)], f, end_id, SCOPE_UNFINISHED, -1,
                              -1);
            head++;
            written++;
        }
        atomic_fetch_add_explicit(&h->calls, written, memory_order_relaxed);
        atomic_store_explicit(&h->head, head, memory_order_release);
    } else {
        *missing += open;
    }
    atomic_store_explicit(&h->open_calls, 0, memory_order_relaxed); /* once */
    atomic_fetch_add(&p->unfinished, written);
    return written;
}

size_t scope_reader_unfinish(scope_reader *r, size_t *missing) {
    size_t written = 0;
    *missing = 0;
    for (size_t i = 0; i < r->count; i++) written += unfinish_ring(r->rings[i].h, r->process, missing);
    return written;
}

size_t scope_reader_positions(const scope_reader *r, scope_ring_position *out, size_t capacity) {
    for (size_t i = 0; i < r->count && i < capacity; i++) {
        const mapped_ring *m = &r->rings[i];
        out[i].slot = m->h->slot;
        out[i].read = m->cursor.read;
        out[i].arena_read = m->cursor.arena_moved
                                ? m->cursor.arena_read
                                : atomic_load_explicit(&m->h->arena_tail, memory_order_acquire);
    }
    return r->count;
}

uint64_t scope_reader_waiting(const scope_reader *r) {
    uint64_t waiting = 0;
    for (size_t i = 0; i < r->count; i++) {
        const mapped_ring *m = &r->rings[i];
        uint64_t head = atomic_load_explicit(&m->h->head, memory_order_acquire);
        if (head > m->cursor.read) waiting += head - m->cursor.read;
    }
    return waiting;
}

int scope_reader_skip_to(scope_reader *r, const scope_ring_position *p) {
    for (size_t i = 0; i < r->count; i++) {
        mapped_ring *m = &r->rings[i];
        if (m->h->slot != p->slot) continue;
        uint64_t head = atomic_load_explicit(&m->h->head, memory_order_acquire);
        /* Positions count up without wrapping: behind the cursor is stored already,
         * past head was never published (not this ring's position: left alone). */
        if (p->read > m->cursor.read && p->read <= head) {
            m->cursor.read = p->read;
            m->cursor.arena_read = p->arena_read;
            m->cursor.arena_moved = 1;
            scope_publish_cursor(m->h, &m->cursor);
        }
        return 1;
    }
    return 0;
}

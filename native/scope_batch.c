/* Drained records into insertable columns, with per-function budgets.
 *
 * scope_drain_batch drains the rings (scope_drain) into a scratch buffer and
 * scatters it in the same call, without the GIL: call records go to call
 * columns, value records are compacted at the front of the scratch buffer for
 * the Python side to render, and calls past their function's budget (marked so
 * by the recorder when they began) are summed per (nearest stored ancestor,
 * function) into aggregate columns.  The writer thread then
 * stores the columns with one SQL statement, so a batch costs it few trips
 * through the GIL whatever its size.  Functions are stored by number (see
 * n->last_number); values and sums name them by number too.
 *
 * Numbering and sums belong to a scope_numbering: the process's own (g_own),
 * or one per run in a recording service; its lock keeps two drainers apart.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "scope_core.h"

#define FUNC_MASK ((1ull << SCOPE_KIND_SHIFT) - 1)
/* Chunks of summed calls one batch may take before it is committed. */
#define MAX_ROUNDS 64


/* Per function: its number in the run and its calls summed so far.
 * Keys are id + 1 (0 = empty). */
typedef struct {
    uint64_t key;
    uint64_t number;
    uint64_t summed;
} budget_entry;

/* Per (parent, function) in the current batch: the summed calls. */
typedef struct {
    uint64_t parent;
    uint64_t key; /* function id + 1; 0 = empty */
    int64_t calls, raised, total, min, max, self, direct;
} aggregate_entry;

/* One run's numbering: functions are numbered 1, 2, ... in the order its
 * batches first meet them, so the call table's function column takes a few bits
 * a row where a 56-bit id would take seven bytes.  A recording process has one
 * (g_own); a recording service one per run it stores. */
struct scope_numbering {
    pthread_mutex_t lock; /* keeps two drainers apart */
    budget_entry *budgets;
    size_t budgets_cap, budgets_len;
    uint64_t last_number;
    aggregate_entry *aggs;
    size_t aggs_cap, aggs_len;
    /* The aggregate slots in use, in the order they were taken: emitting and
     * clearing touch only them, not the whole table. */
    size_t *agg_slots;
};

static scope_numbering g_own = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0, NULL, 0, 0, NULL};

/* In a forked child: the writer thread that may have held the lock is gone. */
void scope_batch_after_fork(void) { pthread_mutex_init(&g_own.lock, NULL); }

scope_numbering *scope_numbering_new(void) {
    scope_numbering *n = calloc(1, sizeof *n);
    if (n) pthread_mutex_init(&n->lock, NULL);
    return n;
}

static void forget_numbers(scope_numbering *n) {
    free(n->budgets);
    n->budgets = NULL;
    n->budgets_cap = n->budgets_len = 0;
    n->last_number = 0;
}

void scope_numbering_free(scope_numbering *n) {
    if (!n || n == &g_own) return;
    forget_numbers(n);
    free(n->aggs);
    free(n->agg_slots);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

static inline size_t mix(uint64_t a, uint64_t b) {
    uint64_t h = (a ^ (b * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull;
    return (size_t)(h ^ (h >> 31));
}

static int budgets_grow(scope_numbering *n) {
    size_t cap = n->budgets_cap ? n->budgets_cap * 2 : 1024;
    budget_entry *table = calloc(cap, sizeof *table);
    if (!table) return 0;
    for (size_t j = 0; j < n->budgets_cap; j++) {
        if (!n->budgets[j].key) continue;
        size_t i = mix(n->budgets[j].key, 0) & (cap - 1);
        while (table[i].key) i = (i + 1) & (cap - 1);
        table[i] = n->budgets[j];
    }
    free(n->budgets);
    n->budgets = table;
    n->budgets_cap = cap;
    return 1;
}

/* The entry of function func, made (numbered 0) if it has none; NULL if out of memory. */
static budget_entry *budget_slot(scope_numbering *n, uint64_t func) {
    if ((n->budgets_len + 1) * 2 > n->budgets_cap && !budgets_grow(n)) return NULL;
    uint64_t key = func + 1;
    size_t mask = n->budgets_cap - 1;
    size_t i = mix(key, 0) & mask;
    while (n->budgets[i].key && n->budgets[i].key != key) i = (i + 1) & mask;
    if (!n->budgets[i].key) {
        n->budgets[i].key = key;
        n->budgets_len++;
    }
    return &n->budgets[i];
}

/* The entry of function func, numbered; NULL if out of memory. */
static budget_entry *budget_of(scope_numbering *n, uint64_t func) {
    budget_entry *b = budget_slot(n, func);
    if (b && !b->number) b->number = ++n->last_number;
    return b;
}

static int aggs_grow(scope_numbering *n) {
    size_t cap = n->aggs_cap ? n->aggs_cap * 2 : 4096;
    aggregate_entry *table = calloc(cap, sizeof *table);
    size_t *slots = malloc(cap / 2 * sizeof *slots);
    if (!table || !slots) {
        free(table);
        free(slots);
        return 0;
    }
    for (size_t k = 0; k < n->aggs_len; k++) {
        const aggregate_entry *old = &n->aggs[n->agg_slots[k]];
        size_t i = mix(old->key, old->parent) & (cap - 1);
        while (table[i].key) i = (i + 1) & (cap - 1);
        table[i] = *old;
        slots[k] = i;
    }
    free(n->aggs);
    free(n->agg_slots);
    n->aggs = table;
    n->agg_slots = slots;
    n->aggs_cap = cap;
    return 1;
}

/* Adds one call to its (parent, function) sum; 0 if out of memory. */
static int aggregate(scope_numbering *n, uint64_t parent, uint64_t number, const scope_record *r, int raised) {
    int64_t duration = r->duration_ns;
    if ((n->aggs_len + 1) * 2 > n->aggs_cap && !aggs_grow(n)) return 0;
    uint64_t key = number + 1;
    size_t mask = n->aggs_cap - 1;
    size_t i = mix(key, parent) & mask;
    while (n->aggs[i].key && (n->aggs[i].key != key || n->aggs[i].parent != parent))
        i = (i + 1) & mask;
    aggregate_entry *a = &n->aggs[i];
    if (!a->key) {
        a->key = key;
        a->parent = parent;
        a->min = duration;
        a->max = duration;
        n->agg_slots[n->aggs_len++] = i;
    }
    a->calls++;
    a->raised += raised;
    a->total += duration;
    a->self += (int64_t)(r->end_id & ~SCOPE_DIRECT_CHILD);
    if (r->end_id & SCOPE_DIRECT_CHILD) a->direct += duration - r->suspended_ns;
    if (duration < a->min) a->min = duration;
    if (duration > a->max) a->max = duration;
    return 1;
}

/* Moves the batch's sums to the aggregate columns and empties the table. */
static size_t emit_aggregates(scope_numbering *n, const scope_aggregate_columns *out) {
    size_t count = n->aggs_len;
    for (size_t k = 0; k < count; k++) {
        aggregate_entry *a = &n->aggs[n->agg_slots[k]];
        out->parent[k] = (int64_t)a->parent;
        out->function[k] = (int64_t)(a->key - 1);
        out->calls[k] = a->calls;
        out->raised[k] = a->raised;
        out->total_ns[k] = a->total;
        out->min_ns[k] = a->min;
        out->max_ns[k] = a->max;
        out->self_ns[k] = a->self;
        out->direct_ns[k] = a->direct;
        memset(a, 0, sizeof *a);
    }
    n->aggs_len = 0;
    return count;
}

static inline void put_call(const scope_call_columns *c, size_t i, const scope_record *r,
                            uint32_t kind, uint64_t number) {
    c->id[i] = (int64_t)r->call_id;
    c->thread[i] = (int32_t)(r->call_id >> SCOPE_SLOT_SHIFT);
    c->parent[i] = (int64_t)r->parent_id;
    c->end_id[i] = (int64_t)r->end_id;
    c->depth[i] = (int32_t)r->depth;
    c->function[i] = (int64_t)number;
    c->start_ns[i] = r->start_ns;
    c->duration_ns[i] = r->duration_ns;
    c->outcome[i] = (uint8_t)(kind - SCOPE_RETURN);
    c->suspended_ns[i] = r->suspended_ns;
    c->suspensions[i] = (int32_t)r->suspensions;
}

void scope_set_budget(uint64_t max_calls_per_function) {
    scope_numbering *n = &g_own;
    pthread_mutex_lock(&n->lock);
    scope_g_budget = max_calls_per_function;
    atomic_fetch_add(&scope_g_budget_generation, 1);
    forget_numbers(n);
    for (size_t k = 0; k < n->aggs_len; k++) memset(&n->aggs[n->agg_slots[k]], 0, sizeof *n->aggs);
    n->aggs_len = 0;
    pthread_mutex_unlock(&n->lock);
}

/* Scatters count drained records (the numbering's lock held); values are
 * compacted to the front of scratch. */
static void scatter(scope_numbering *n, scope_record *scratch, size_t count,
                    const scope_call_columns *calls, scope_batch_counts *counts) {
    for (size_t i = 0; i < count; i++) {
        const scope_record *r = &scratch[i];
        uint32_t kind = (uint32_t)(r->func_word >> SCOPE_KIND_SHIFT);
        budget_entry *b = budget_of(n, r->func_word & FUNC_MASK);
        if (!b) { /* out of memory: the call cannot be numbered */
            counts->lost++;
            continue;
        }
        if (kind == SCOPE_VALUE) {
            size_t at = counts->values++;
            scratch[at] = *r;
            scratch[at].func_word = b->number | (uint64_t)SCOPE_VALUE << SCOPE_KIND_SHIFT;
            continue;
        }
        if (kind == SCOPE_SUMMED_RETURN || kind == SCOPE_SUMMED_RAISE) {
            if (aggregate(n, r->parent_id, b->number, r, kind == SCOPE_SUMMED_RAISE)) {
                b->summed++;
                counts->summed++;
            } else {
                counts->lost++;
            }
            continue;
        }
        if (kind < SCOPE_RETURN || kind > SCOPE_UNFINISHED) { /* only from a damaged file */
            counts->lost++;
            continue;
        }
        if (kind == SCOPE_UNFINISHED) counts->unfinished++;
        put_call(calls, counts->calls++, r, kind, b->number);
    }
}

/* Where a batch drains from: this process's rings, or a reader's. */
typedef size_t (*drain_source)(void *source, scope_record *out, size_t capacity,
                               uint8_t *arena_out, size_t arena_capacity, size_t *arena_used);

static size_t drain_own(void *unused, scope_record *out, size_t capacity, uint8_t *arena_out,
                        size_t arena_capacity, size_t *arena_used) {
    return scope_drain(out, capacity, arena_out, arena_capacity, arena_used);
}

static size_t drain_reader(void *reader, scope_record *out, size_t capacity, uint8_t *arena_out,
                           size_t arena_capacity, size_t *arena_used) {
    return scope_reader_drain(reader, out, capacity, arena_out, arena_capacity, arena_used);
}

static size_t drain_batch(scope_numbering *n, drain_source drain, void *source,
                          scope_record *scratch, size_t capacity, uint8_t *arena,
                          size_t arena_capacity, const scope_call_columns *calls,
                          const scope_aggregate_columns *aggregates, scope_batch_counts *counts) {
    memset(counts, 0, sizeof *counts);
    /* Summed calls make no rows: while the rings hold mostly those, keep draining
     * in chunks (a batch costs the writer trips through the GIL, not records),
     * until rows or sums could overflow the columns, a value needs rendering, the
     * rings are empty, or MAX_ROUNDS chunks have gone by (a commit is due). */
    size_t chunk = capacity / 4 ? capacity / 4 : capacity;
    pthread_mutex_lock(&n->lock);
    for (int round = 0; round < MAX_ROUNDS; round++) {
        size_t want = round ? chunk : capacity;
        size_t got = drain(source, scratch, want, arena, arena_capacity, &counts->arena_used);
        counts->records += got;
        scatter(n, scratch, got, calls, counts);
        if (got < want || counts->values || counts->calls + chunk > capacity ||
            n->aggs_len + chunk > capacity)
            break;
    }
    counts->aggregates = emit_aggregates(n, aggregates);
    pthread_mutex_unlock(&n->lock);
    return counts->records;
}

size_t scope_drain_batch(scope_record *scratch, size_t capacity, uint8_t *arena,
                         size_t arena_capacity, const scope_call_columns *calls,
                         const scope_aggregate_columns *aggregates, scope_batch_counts *counts) {
    return drain_batch(&g_own, drain_own, NULL, scratch, capacity, arena, arena_capacity, calls,
                       aggregates, counts);
}

size_t scope_reader_drain_batch(scope_reader *r, scope_numbering *n, scope_record *scratch,
                                size_t capacity, uint8_t *arena, size_t arena_capacity,
                                const scope_call_columns *calls,
                                const scope_aggregate_columns *aggregates,
                                scope_batch_counts *counts) {
    return drain_batch(n ? n : &g_own, drain_reader, r, scratch, capacity, arena, arena_capacity,
                       calls, aggregates, counts);
}

void scope_numbering_seed(scope_numbering *n, uint64_t func, uint64_t number) {
    if (!n) n = &g_own;
    pthread_mutex_lock(&n->lock);
    budget_entry *b = budget_slot(n, func & FUNC_MASK);
    if (b) {
        b->number = number;
        if (number > n->last_number) n->last_number = number;
    }
    pthread_mutex_unlock(&n->lock);
}

uint64_t scope_numbering_number(scope_numbering *n, uint64_t func) {
    if (!n) n = &g_own;
    pthread_mutex_lock(&n->lock);
    budget_entry *b = budget_of(n, func & FUNC_MASK);
    uint64_t number = b ? b->number : 0;
    pthread_mutex_unlock(&n->lock);
    return number;
}

size_t scope_numbering_summed(scope_numbering *n, uint64_t *functions, uint64_t *summed,
                              size_t capacity) {
    if (!n) n = &g_own;
    pthread_mutex_lock(&n->lock);
    size_t count = 0;
    for (size_t i = 0; i < n->budgets_cap; i++) {
        if (!n->budgets[i].key || !n->budgets[i].summed) continue;
        if (count < capacity) {
            functions[count] = n->budgets[i].number;
            summed[count] = n->budgets[i].summed;
        }
        count++;
    }
    pthread_mutex_unlock(&n->lock);
    return count;
}

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
 * g_last_number); values and sums name them by number too.
 *
 * The tables here belong to whichever thread drains; g_batch_lock keeps two
 * drainers apart.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "scope_core.h"

#define FUNC_MASK ((1ull << SCOPE_KIND_SHIFT) - 1)
/* Chunks of summed calls one batch may take before it is committed. */
#define MAX_ROUNDS 64

static pthread_mutex_t g_batch_lock = PTHREAD_MUTEX_INITIALIZER;

/* In a forked child: the writer thread that may have held the lock is gone. */
void scope_batch_after_fork(void) { pthread_mutex_init(&g_batch_lock, NULL); }

/* Per function: its number in the run and its calls summed so far.
 * Keys are id + 1 (0 = empty). */
typedef struct {
    uint64_t key;
    uint64_t number;
    uint64_t summed;
} budget_entry;

static budget_entry *g_budgets = NULL;
static size_t g_budgets_cap = 0, g_budgets_len = 0;
/* The last function number handed out: functions are numbered 1, 2, ... in the
 * order the writer first meets them, so the call table's function column takes
 * a few bits a row where a 56-bit id would take seven bytes. */
static uint64_t g_last_number = 0;

/* Per (parent, function) in the current batch: the summed calls. */
typedef struct {
    uint64_t parent;
    uint64_t key; /* function id + 1; 0 = empty */
    int64_t calls, raised, total, min, max, self, direct;
} aggregate_entry;

static aggregate_entry *g_aggs = NULL;
static size_t g_aggs_cap = 0, g_aggs_len = 0;
/* The slots in use, in the order they were taken: emitting and clearing touch
 * only them, not the whole table. */
static size_t *g_agg_slots = NULL;

static inline size_t mix(uint64_t a, uint64_t b) {
    uint64_t h = (a ^ (b * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull;
    return (size_t)(h ^ (h >> 31));
}

static int budgets_grow(void) {
    size_t cap = g_budgets_cap ? g_budgets_cap * 2 : 1024;
    budget_entry *table = calloc(cap, sizeof *table);
    if (!table) return 0;
    for (size_t j = 0; j < g_budgets_cap; j++) {
        if (!g_budgets[j].key) continue;
        size_t i = mix(g_budgets[j].key, 0) & (cap - 1);
        while (table[i].key) i = (i + 1) & (cap - 1);
        table[i] = g_budgets[j];
    }
    free(g_budgets);
    g_budgets = table;
    g_budgets_cap = cap;
    return 1;
}

/* The entry of function func, made (numbered 0) if it has none; NULL if out of memory. */
static budget_entry *budget_slot(uint64_t func) {
    if ((g_budgets_len + 1) * 2 > g_budgets_cap && !budgets_grow()) return NULL;
    uint64_t key = func + 1;
    size_t mask = g_budgets_cap - 1;
    size_t i = mix(key, 0) & mask;
    while (g_budgets[i].key && g_budgets[i].key != key) i = (i + 1) & mask;
    if (!g_budgets[i].key) {
        g_budgets[i].key = key;
        g_budgets_len++;
    }
    return &g_budgets[i];
}

/* The entry of function func, numbered; NULL if out of memory. */
static budget_entry *budget_of(uint64_t func) {
    budget_entry *b = budget_slot(func);
    if (b && !b->number) b->number = ++g_last_number;
    return b;
}

static int aggs_grow(void) {
    size_t cap = g_aggs_cap ? g_aggs_cap * 2 : 4096;
    aggregate_entry *table = calloc(cap, sizeof *table);
    size_t *slots = malloc(cap / 2 * sizeof *slots);
    if (!table || !slots) {
        free(table);
        free(slots);
        return 0;
    }
    for (size_t k = 0; k < g_aggs_len; k++) {
        const aggregate_entry *old = &g_aggs[g_agg_slots[k]];
        size_t i = mix(old->key, old->parent) & (cap - 1);
        while (table[i].key) i = (i + 1) & (cap - 1);
        table[i] = *old;
        slots[k] = i;
    }
    free(g_aggs);
    free(g_agg_slots);
    g_aggs = table;
    g_agg_slots = slots;
    g_aggs_cap = cap;
    return 1;
}

/* Adds one call to its (parent, function) sum; 0 if out of memory. */
static int aggregate(uint64_t parent, uint64_t number, const scope_record *r, int raised) {
    int64_t duration = r->duration_ns;
    if ((g_aggs_len + 1) * 2 > g_aggs_cap && !aggs_grow()) return 0;
    uint64_t key = number + 1;
    size_t mask = g_aggs_cap - 1;
    size_t i = mix(key, parent) & mask;
    while (g_aggs[i].key && (g_aggs[i].key != key || g_aggs[i].parent != parent))
        i = (i + 1) & mask;
    aggregate_entry *a = &g_aggs[i];
    if (!a->key) {
        a->key = key;
        a->parent = parent;
        a->min = duration;
        a->max = duration;
        g_agg_slots[g_aggs_len++] = i;
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
static size_t emit_aggregates(const scope_aggregate_columns *out) {
    size_t n = g_aggs_len;
    for (size_t k = 0; k < n; k++) {
        aggregate_entry *a = &g_aggs[g_agg_slots[k]];
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
    g_aggs_len = 0;
    return n;
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
    pthread_mutex_lock(&g_batch_lock);
    scope_g_budget = max_calls_per_function;
    atomic_fetch_add(&scope_g_budget_generation, 1);
    free(g_budgets);
    g_budgets = NULL;
    g_budgets_cap = g_budgets_len = 0;
    g_last_number = 0;
    for (size_t k = 0; k < g_aggs_len; k++) memset(&g_aggs[g_agg_slots[k]], 0, sizeof *g_aggs);
    g_aggs_len = 0;
    pthread_mutex_unlock(&g_batch_lock);
}

/* Scatters n drained records (g_batch_lock held); values are compacted to the
 * front of scratch after the values already there. */
static void scatter(scope_record *scratch, size_t n, const scope_call_columns *calls,
                    scope_batch_counts *counts) {
    for (size_t i = 0; i < n; i++) {
        const scope_record *r = &scratch[i];
        uint32_t kind = (uint32_t)(r->func_word >> SCOPE_KIND_SHIFT);
        budget_entry *b = budget_of(r->func_word & FUNC_MASK);
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
            if (aggregate(r->parent_id, b->number, r, kind == SCOPE_SUMMED_RAISE)) {
                b->summed++;
                counts->summed++;
            } else {
                counts->lost++;
            }
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

static size_t drain_batch(drain_source drain, void *source, scope_record *scratch,
                          size_t capacity, uint8_t *arena, size_t arena_capacity,
                          const scope_call_columns *calls,
                          const scope_aggregate_columns *aggregates, scope_batch_counts *counts) {
    memset(counts, 0, sizeof *counts);
    /* Summed calls make no rows: while the rings hold mostly those, keep draining
     * in chunks (a batch costs the writer trips through the GIL, not records),
     * until rows or sums could overflow the columns, a value needs rendering, the
     * rings are empty, or MAX_ROUNDS chunks have gone by (a commit is due). */
    size_t chunk = capacity / 4 ? capacity / 4 : capacity;
    pthread_mutex_lock(&g_batch_lock);
    for (int round = 0; round < MAX_ROUNDS; round++) {
        size_t want = round ? chunk : capacity;
        size_t n = drain(source, scratch, want, arena, arena_capacity, &counts->arena_used);
        counts->records += n;
        scatter(scratch, n, calls, counts);
        if (n < want || counts->values || counts->calls + chunk > capacity ||
            g_aggs_len + chunk > capacity)
            break;
    }
    counts->aggregates = emit_aggregates(aggregates);
    pthread_mutex_unlock(&g_batch_lock);
    return counts->records;
}

size_t scope_drain_batch(scope_record *scratch, size_t capacity, uint8_t *arena,
                         size_t arena_capacity, const scope_call_columns *calls,
                         const scope_aggregate_columns *aggregates, scope_batch_counts *counts) {
    return drain_batch(drain_own, NULL, scratch, capacity, arena, arena_capacity, calls,
                       aggregates, counts);
}

size_t scope_reader_drain_batch(scope_reader *r, scope_record *scratch, size_t capacity,
                                uint8_t *arena, size_t arena_capacity,
                                const scope_call_columns *calls,
                                const scope_aggregate_columns *aggregates,
                                scope_batch_counts *counts) {
    return drain_batch(drain_reader, r, scratch, capacity, arena, arena_capacity, calls,
                       aggregates, counts);
}

void scope_seed_function_number(uint64_t func, uint64_t number) {
    pthread_mutex_lock(&g_batch_lock);
    budget_entry *b = budget_slot(func & FUNC_MASK);
    if (b) {
        b->number = number;
        if (number > g_last_number) g_last_number = number;
    }
    pthread_mutex_unlock(&g_batch_lock);
}

uint64_t scope_function_number(uint64_t func) {
    pthread_mutex_lock(&g_batch_lock);
    budget_entry *b = budget_of(func & FUNC_MASK);
    uint64_t number = b ? b->number : 0;
    pthread_mutex_unlock(&g_batch_lock);
    return number;
}

size_t scope_get_summed(uint64_t *functions, uint64_t *summed, size_t capacity) {
    pthread_mutex_lock(&g_batch_lock);
    size_t n = 0;
    for (size_t i = 0; i < g_budgets_cap; i++) {
        if (!g_budgets[i].key || !g_budgets[i].summed) continue;
        if (n < capacity) {
            functions[n] = g_budgets[i].number;
            summed[n] = g_budgets[i].summed;
        }
        n++;
    }
    pthread_mutex_unlock(&g_batch_lock);
    return n;
}

/* Budgets: which calls are stored one row each (max_calls_per_function).
 *
 * Calls begun per function are counted here, under the GIL, as they begin; the
 * first max_calls_per_function of each function are stored, the rest summed
 * (scope_batch.c).  The counts are emptied whenever scope_set_budget changes
 * the generation.
 */
#include "py_recorder.h"

/* Keys are id + 1 (0 = empty). */
typedef struct {
    uint64_t key;
    uint64_t begun;
} begun_count;

static begun_count *g_begun = NULL;
static size_t g_begun_cap = 0, g_begun_len = 0;
static uint64_t g_begun_generation = 0;

static int begun_grow(void) {
    size_t cap = g_begun_cap ? g_begun_cap * 2 : 1024;
    begun_count *table = calloc(cap, sizeof *table);
    if (!table) return 0;
    for (size_t j = 0; j < g_begun_cap; j++) {
        if (!g_begun[j].key) continue;
        size_t i = scope_hash(g_begun[j].key) & (cap - 1);
        while (table[i].key) i = (i + 1) & (cap - 1);
        table[i] = g_begun[j];
    }
    free(g_begun);
    g_begun = table;
    g_begun_cap = cap;
    return 1;
}

int scope_past_budget(uint64_t func) {
    uint64_t limit = scope_g_budget;
    if (!limit) return 0;
    uint64_t generation = atomic_load_explicit(&scope_g_budget_generation, memory_order_relaxed);
    if (generation != g_begun_generation) {
        if (g_begun) memset(g_begun, 0, g_begun_cap * sizeof *g_begun);
        g_begun_len = 0;
        g_begun_generation = generation;
    }
    if ((g_begun_len + 1) * 2 > g_begun_cap && !begun_grow()) return 0;
    uint64_t key = func + 1;
    size_t mask = g_begun_cap - 1;
    size_t i = scope_hash(key) & mask;
    while (g_begun[i].key && g_begun[i].key != key) i = (i + 1) & mask;
    if (!g_begun[i].key) {
        g_begun[i].key = key;
        g_begun_len++;
    }
    return g_begun[i].begun++ >= limit;
}

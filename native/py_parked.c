/* The parked calls: generators and coroutines suspended at a yield or await.
 *
 * An open-addressing table keyed by the call's interpreter frame, which lives
 * inside the generator object and never moves while the generator does.  Only
 * entry points use it, with the GIL held.  See py_recorder.h for the model.
 */
#include "py_recorder.h"

static scope_parked *g_parked = NULL;
static size_t g_parked_cap = 0, g_parked_used = 0;
size_t scope_g_parked_len = 0;
uint64_t scope_g_resumables = 0;

scope_parked *scope_parked_find(const void *key) {
    if (!scope_g_parked_len) return NULL;
    size_t mask = g_parked_cap - 1;
    for (size_t i = scope_hash((uintptr_t)key) & mask;; i = (i + 1) & mask) {
        if (g_parked[i].key == key) return &g_parked[i];
        if (!g_parked[i].key) return NULL;
    }
}

static int parked_grow(void) {
    size_t cap = g_parked_cap ? g_parked_cap * 2 : 64;
    while (scope_g_parked_len * 2 >= cap) cap *= 2;
    scope_parked *table = calloc(cap, sizeof *table);
    if (!table) return 0;
    for (size_t j = 0; j < g_parked_cap; j++) {
        const void *key = g_parked[j].key;
        if (!key || key == SCOPE_TOMBSTONE) continue;
        size_t i = scope_hash((uintptr_t)key) & (cap - 1);
        while (table[i].key) i = (i + 1) & (cap - 1);
        table[i] = g_parked[j];
    }
    free(g_parked);
    g_parked = table;
    g_parked_cap = cap;
    g_parked_used = scope_g_parked_len;
    return 1;
}

int scope_parked_insert(scope_thread *t, const scope_frame *call) {
    if ((g_parked_used + 1) * 2 > g_parked_cap && !parked_grow()) return 0;
    size_t mask = g_parked_cap - 1;
    size_t i = scope_hash((uintptr_t)call->frame) & mask;
    while (g_parked[i].key && g_parked[i].key != SCOPE_TOMBSTONE && g_parked[i].key != call->frame)
        i = (i + 1) & mask;
    if (g_parked[i].key == call->frame) {
        /* A stale entry for a reused frame: that call's end was never seen. */
        scope_record_unfinished(t, &g_parked[i].call);
        Py_XDECREF((PyObject *)g_parked[i].call.token);
        scope_g_parked_len--;
    } else if (!g_parked[i].key) {
        g_parked_used++;
    }
    g_parked[i].key = call->frame;
    g_parked[i].call = *call;
    scope_live_parked(++scope_g_parked_len);
    return 1;
}

void scope_parked_remove(scope_parked *p) {
    p->key = SCOPE_TOMBSTONE;
    scope_live_parked(--scope_g_parked_len);
}

size_t scope_parked_unfinish_all(void) {
    size_t n = 0;
    for (size_t i = 0; i < g_parked_cap; i++) {
        scope_parked *p = &g_parked[i];
        if (!p->key || p->key == SCOPE_TOMBSTONE || !p->call.recorded) continue;
        scope_hold_unfinished(&p->call, p->call.last_own_id);
        p->call.recorded = 0;
        n++;
    }
    return n;
}

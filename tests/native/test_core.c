/* Unit tests of the ring core (native/scope_core.c), without Python.
 *
 * tests/test_native_sanitized.py builds this file with scope_core.c under
 * -fsanitize=address,undefined (and a ThreadSanitizer build where available)
 * and runs it; each test prints its name and the program exits non-zero on
 * the first failed check.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scope_core.h"

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

static scope_record out[1 << 16];
static uint8_t arena_out[1 << 20];

static size_t drain_all(void) {
    size_t total = 0, used = 0, n;
    while ((n = scope_drain(out, sizeof out / sizeof out[0], arena_out, sizeof arena_out, &used)))
        total += n;
    return total;
}

typedef struct {
    uint64_t pairs;
    uint64_t first;
} work;

static _Atomic int producers_done = 0;

static void *produce(void *arg) {
    work *w = arg;
    scope_produce_pairs(w->pairs, w->first);
    atomic_fetch_add(&producers_done, 1);
    return NULL;
}

static void run_threads(int count, uint64_t pairs) {
    pthread_t threads[16];
    work w[16];
    for (int i = 0; i < count; i++) {
        w[i].pairs = pairs;
        w[i].first = 1 + (uint64_t)i * pairs;
        CHECK(pthread_create(&threads[i], NULL, produce, &w[i]) == 0);
    }
    for (int i = 0; i < count; i++) pthread_join(threads[i], NULL);
}

static void test_nested_calls_get_ids_parents_depths_and_end_ids(void) {
    puts("nested calls");
    scope_emit_enter(10);
    scope_emit_enter(20);
    scope_emit_exit(20, 1);
    scope_emit_exit(10, 0);
    size_t used = 0;
    size_t n = scope_drain(out, 64, arena_out, sizeof arena_out, &used);
    CHECK(n == 4);
    CHECK(out[0].kind == SCOPE_ENTER && out[1].kind == SCOPE_ENTER);
    CHECK(out[2].kind == SCOPE_RAISE && out[3].kind == SCOPE_RETURN);
    CHECK(out[1].call_id == out[0].call_id + 1 && out[1].other_id == out[0].call_id);
    CHECK(out[0].other_id == 0 && out[0].depth == 0 && out[1].depth == 1);
    CHECK(out[3].other_id == out[1].call_id); /* end id: the last call begun inside */
    for (int i = 1; i < 4; i++) CHECK(out[i].time_ns >= out[i - 1].time_ns);
}

static void test_unmatched_exit_is_counted_not_recorded(void) {
    puts("unmatched exit");
    scope_stats before, after;
    scope_get_stats(&before);
    scope_emit_exit(99, 0);
    scope_get_stats(&after);
    CHECK(after.unmatched_exits == before.unmatched_exits + 1);
    CHECK(after.produced == before.produced);
}

static void test_values_travel_with_their_bytes_across_the_arena_wrap(void) {
    puts("values and arena");
    uint8_t payload[300];
    for (int i = 0; i < 300; i++) payload[i] = (uint8_t)i;
    scope_emit_enter(7);
    /* 4 KiB arena: 40 values of 300 bytes wrap it several times if drained as we go. */
    for (int round = 0; round < 40; round++) {
        payload[0] = (uint8_t)round;
        scope_emit_value(7, (uint16_t)round, payload, 300);
        size_t used = 0;
        size_t n = scope_drain(out, 64, arena_out, sizeof arena_out, &used);
        CHECK(n == 1 || (round == 0 && n == 2));
        scope_value_record *v = (scope_value_record *)&out[n - 1];
        CHECK(v->kind == SCOPE_VALUE && v->index == round && v->arena_len == 300);
        CHECK(v->tag == SCOPE_TAG_BYTES && v->payload == 300 && used == 300);
        CHECK(arena_out[v->arena_pos] == (uint8_t)round);
        CHECK(memcmp(arena_out + v->arena_pos + 1, payload + 1, 299) == 0);
    }
    scope_emit_exit(7, 0);
    CHECK(drain_all() == 1);
}

static void test_a_full_arena_keeps_the_value_as_lost(void) {
    puts("full arena");
    uint8_t payload[1000] = {0};
    scope_stats before, after;
    scope_get_stats(&before);
    scope_emit_enter(8);
    for (int i = 0; i < 10; i++) scope_emit_value(8, (uint16_t)i, payload, 1000);
    scope_emit_exit(8, 0);
    scope_get_stats(&after);
    size_t used = 0, n = scope_drain(out, 64, arena_out, sizeof arena_out, &used);
    CHECK(n == 12);
    int lost = 0, kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (out[i].kind != SCOPE_VALUE) continue;
        scope_value_record *v = (scope_value_record *)&out[i];
        if (v->tag == SCOPE_TAG_LOST) {
            lost++;
            CHECK(v->arena_len == 0);
        } else {
            kept++;
            CHECK(v->arena_len == 1000);
        }
    }
    CHECK(kept == 4 && lost == 6); /* a 4 KiB arena holds four */
    CHECK(after.values_lost - before.values_lost == 6);
    CHECK(used == 4000);
}

static void test_a_small_arena_buffer_drains_in_several_goes(void) {
    puts("partial drain");
    uint8_t payload[100] = {1};
    scope_emit_enter(9);
    for (int i = 0; i < 10; i++) scope_emit_value(9, (uint16_t)i, payload, 100);
    scope_emit_exit(9, 0);
    size_t used = 0, total = 0, n, rounds = 0;
    while ((n = scope_drain(out, 64, arena_out, 250, &used))) {
        CHECK(used <= 250);
        total += n;
        rounds++;
    }
    CHECK(total == 12 && rounds >= 5);
}

static void test_held_records_come_out_first_and_in_order(void) {
    puts("hold");
    drain_all();
    uint8_t payload[200];
    memset(payload, 7, sizeof payload);
    scope_emit_enter(1);
    scope_emit_value(1, 0, payload, 200);
    scope_emit_exit(1, 0);
    CHECK(scope_hold((size_t)1 << 30) == 1);
    scope_stats stats;
    scope_get_stats(&stats);
    CHECK(stats.held == 3 && stats.pending == 0);
    scope_emit_enter(2); /* after the hold: must come out after the held three */
    scope_emit_exit(2, 0);
    size_t used = 0;
    size_t n = scope_drain(out, 2, arena_out, sizeof arena_out, &used);
    CHECK(n == 2 && out[0].kind == SCOPE_ENTER && out[0].func_id == 1);
    scope_value_record *v = (scope_value_record *)&out[1];
    CHECK(v->kind == SCOPE_VALUE && v->arena_len == 200 && v->arena_pos == 0 && used == 200);
    CHECK(arena_out[199] == 7);
    n = scope_drain(out, 64, arena_out, sizeof arena_out, &used);
    CHECK(n == 3 && out[0].kind == SCOPE_RETURN && out[1].func_id == 2);
    CHECK(scope_hold(0) == 0 || stats.held == 3); /* a zero bound holds nothing */
    CHECK(drain_all() == 0);
}

static void stress(int policy, uint64_t ring) {
    const int threads = 8;
    const uint64_t pairs = 500000; /* 1M events per thread */
    scope_stats before, after;
    drain_all();
    CHECK(scope_configure(ring, 4096, policy, 5000000000ull, 1024, SCOPE_CLOCK_MONOTONIC) == 0);
    scope_get_stats(&before);
    uint64_t drained = 0;
    atomic_store(&producers_done, 0);
    /* Producers run on their own threads while this one drains. */
    pthread_t ts[8];
    work ws[8];
    for (int i = 0; i < threads; i++) {
        ws[i].pairs = pairs;
        ws[i].first = 1 + (uint64_t)i * pairs;
        CHECK(pthread_create(&ts[i], NULL, produce, &ws[i]) == 0);
    }
    uint64_t last_entry[64] = {0};
    for (;;) {
        int finished = atomic_load(&producers_done) == threads;
        size_t used = 0;
        size_t n = scope_drain(out, sizeof out / sizeof out[0], arena_out, sizeof arena_out, &used);
        for (size_t i = 0; i < n; i++) {
            if (out[i].kind != SCOPE_ENTER) continue;
            uint64_t slot = out[i].call_id >> SCOPE_SLOT_SHIFT;
            CHECK(slot < 64 && out[i].call_id > last_entry[slot]); /* FIFO, no duplicates */
            last_entry[slot] = out[i].call_id;
        }
        drained += n;
        if (n == 0 && finished) break;
    }
    for (int i = 0; i < threads; i++) pthread_join(ts[i], NULL);
    drained += drain_all();
    scope_get_stats(&after);
    uint64_t produced = after.produced - before.produced;
    uint64_t dropped = after.dropped - before.dropped;
    CHECK(after.drained - before.drained == drained);
    CHECK(produced == drained && after.pending == 0);
    if (policy == SCOPE_OVERFLOW_BLOCK) CHECK(dropped == 0 && produced == threads * pairs * 2);
    CHECK(produced + dropped >= threads * pairs); /* every call stored or counted */
}

static void test_stress_both_policies(void) {
    puts("stress: block");
    stress(SCOPE_OVERFLOW_BLOCK, 4096);
    puts("stress: drop");
    stress(SCOPE_OVERFLOW_DROP, 256);
}

static void test_dead_threads_rings_retire_and_keep_their_counters(void) {
    puts("thread exit");
    drain_all();
    CHECK(scope_configure(64, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_MONOTONIC) == 0);
    scope_stats before, after;
    scope_get_stats(&before);
    run_threads(3, 100); /* 200 events each into 64-record rings: drops */
    CHECK(drain_all() == 3 * 64);
    scope_get_stats(&after);
    CHECK(after.threads_seen - before.threads_seen == 3);
    CHECK(after.produced - before.produced == 3 * 64);
    CHECK(after.dropped - before.dropped > 0);
    scope_thread_info infos[256];
    size_t total = scope_get_threads(infos, 256);
    int ended = 0;
    for (size_t i = total - 3; i < total; i++) {
        CHECK(infos[i].produced == 64 && infos[i].drained == 64 && infos[i].dropped > 0);
        ended += infos[i].end_ns != 0;
    }
    CHECK(ended == 3);
}

static void test_the_tsc_clock_converts_to_monotonic_nanoseconds(void) {
    puts("clock");
    if (!scope_tsc_usable()) {
        puts("  no invariant TSC here: monotonic only");
        return;
    }
    CHECK(scope_configure(1024, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_TSC) == 0);
    int64_t before = scope_now_ns();
    scope_emit_enter(5);
    scope_emit_exit(5, 0);
    int64_t after = scope_now_ns();
    size_t used = 0;
    CHECK(scope_drain(out, 64, arena_out, sizeof arena_out, &used) == 2);
    /* Converted to CLOCK_MONOTONIC, within the calibration's error. */
    CHECK(out[0].time_ns >= before - 100000 && out[1].time_ns <= after + 100000);
    CHECK(out[1].time_ns >= out[0].time_ns);
    scope_clock clock;
    scope_get_clock(&clock);
    CHECK(clock.source == SCOPE_CLOCK_TSC && clock.ns_per_tick > 0.01 && clock.ns_per_tick < 10);
    CHECK(scope_configure(1024, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_MONOTONIC) == 0);
}

static void test_bad_configuration_is_refused(void) {
    puts("configuration");
    CHECK(scope_configure(8, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_MONOTONIC) != 0);
    CHECK(scope_configure(64, 16, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_MONOTONIC) != 0);
    CHECK(scope_configure(64, 4096, 7, 0, 1024, SCOPE_CLOCK_MONOTONIC) != 0);
    CHECK(scope_configure(64, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, 9) != 0);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK(scope_configure(1024, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_MONOTONIC) == 0);
    scope_set_enabled(1);
    test_nested_calls_get_ids_parents_depths_and_end_ids();
    test_unmatched_exit_is_counted_not_recorded();
    test_values_travel_with_their_bytes_across_the_arena_wrap();
    test_a_full_arena_keeps_the_value_as_lost();
    test_a_small_arena_buffer_drains_in_several_goes();
    test_bad_configuration_is_refused();
    test_the_tsc_clock_converts_to_monotonic_nanoseconds();
    test_held_records_come_out_first_and_in_order();
    test_dead_threads_rings_retire_and_keep_their_counters();
    test_stress_both_policies();
    puts("all passed");
    return 0;
}

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
#include <unistd.h>

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

static uint32_t kind_of(const scope_record *r) { return (uint32_t)(r->func_word >> SCOPE_KIND_SHIFT); }
static uint64_t func_of(const scope_record *r) {
    return r->func_word & ((1ull << SCOPE_KIND_SHIFT) - 1);
}

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
    CHECK(n == 2); /* one complete record per call, written when it ends */
    scope_record *inner = &out[0], *outer = &out[1];
    CHECK(kind_of(inner) == SCOPE_RAISE && kind_of(outer) == SCOPE_RETURN);
    CHECK(func_of(inner) == 20 && func_of(outer) == 10);
    CHECK(inner->call_id == outer->call_id + 1 && inner->parent_id == outer->call_id);
    CHECK(outer->parent_id == 0 && outer->depth == 0 && inner->depth == 1);
    CHECK(outer->end_id == inner->call_id); /* end id: the last call begun inside */
    CHECK(inner->end_id == inner->call_id);
    CHECK(inner->start_ns >= outer->start_ns && inner->duration_ns >= 0);
    CHECK(outer->start_ns + outer->duration_ns >= inner->start_ns + inner->duration_ns);
    CHECK(outer->suspended_ns == 0 && outer->suspensions == 0);
}

static void test_open_calls_come_out_unfinished(void) {
    puts("unfinished");
    drain_all();
    scope_stats before, after;
    scope_get_stats(&before);
    scope_emit_enter(30);
    scope_emit_enter(31);
    CHECK(scope_unfinish_stacks() == 2);
    CHECK(scope_unfinish_stacks() == 0); /* each once */
    scope_emit_exit(31, 0);              /* ends after the stop: not written again */
    scope_emit_exit(30, 0);
    CHECK(drain_all() == 2);
    scope_get_stats(&after);
    CHECK(after.unfinished - before.unfinished == 2);
    for (int i = 0; i < 2; i++) {
        CHECK(kind_of(&out[i]) == SCOPE_UNFINISHED);
        CHECK(out[i].duration_ns == -1 && out[i].suspended_ns == -1);
    }
    CHECK(func_of(&out[0]) == 30 && func_of(&out[1]) == 31);
    CHECK(out[1].parent_id == out[0].call_id && out[0].end_id == out[1].call_id);
}

static void *enter_and_leave(void *arg) {
    (void)arg;
    scope_emit_enter(40);
    scope_emit_enter(41);
    return NULL; /* the thread ends with both calls open */
}

static void test_a_thread_ending_with_open_calls_writes_them_unfinished(void) {
    puts("thread ends with open calls");
    drain_all();
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, enter_and_leave, NULL) == 0);
    pthread_join(thread, NULL);
    CHECK(drain_all() == 2);
    CHECK(kind_of(&out[0]) == SCOPE_UNFINISHED && func_of(&out[0]) == 40);
    CHECK(kind_of(&out[1]) == SCOPE_UNFINISHED && func_of(&out[1]) == 41);
    CHECK(out[1].parent_id == out[0].call_id);
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
        CHECK(n == 1);
        scope_value_record *v = (scope_value_record *)&out[0];
        CHECK(kind_of(&out[0]) == SCOPE_VALUE && v->index == round && v->arena_len == 300);
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
    CHECK(n == 11);
    int lost = 0, kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (kind_of(&out[i]) != SCOPE_VALUE) continue;
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
    CHECK(total == 11 && rounds >= 5);
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
    CHECK(stats.held == 2 && stats.pending == 0);
    scope_emit_enter(2); /* after the hold: must come out after the held two */
    scope_emit_exit(2, 0);
    size_t used = 0;
    size_t n = scope_drain(out, 1, arena_out, sizeof arena_out, &used);
    scope_value_record *v = (scope_value_record *)&out[0];
    CHECK(n == 1 && kind_of(&out[0]) == SCOPE_VALUE && func_of(&out[0]) == 1);
    CHECK(v->arena_len == 200 && v->arena_pos == 0 && used == 200);
    CHECK(arena_out[199] == 7);
    n = scope_drain(out, 64, arena_out, sizeof arena_out, &used);
    CHECK(n == 2 && kind_of(&out[0]) == SCOPE_RETURN && func_of(&out[0]) == 1);
    CHECK(func_of(&out[1]) == 2);
    CHECK(scope_hold(0) == 0 || stats.held == 2); /* a zero bound holds nothing */
    CHECK(drain_all() == 0);
}

static void stress(int policy, uint64_t ring) {
    const int threads = 8;
    const uint64_t pairs = 500000; /* calls per thread */
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
    uint64_t last_call[64] = {0};
    for (;;) {
        int finished = atomic_load(&producers_done) == threads;
        size_t used = 0;
        size_t n = scope_drain(out, sizeof out / sizeof out[0], arena_out, sizeof arena_out, &used);
        for (size_t i = 0; i < n; i++) {
            uint64_t slot = out[i].call_id >> SCOPE_SLOT_SHIFT;
            CHECK(slot < 64 && out[i].call_id > last_call[slot]); /* FIFO, no duplicates */
            CHECK(kind_of(&out[i]) == SCOPE_RETURN && out[i].end_id == out[i].call_id);
            last_call[slot] = out[i].call_id;
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
    if (policy == SCOPE_OVERFLOW_BLOCK) CHECK(dropped == 0 && produced == threads * pairs);
    CHECK(produced + dropped == threads * pairs); /* every call stored or counted */
}

static void test_stress_both_policies(void) {
    puts("stress: block");
    stress(SCOPE_OVERFLOW_BLOCK, 4096);
    puts("stress: drop");
    stress(SCOPE_OVERFLOW_DROP, 256);
}

/* The mover moves rings into held memory while this thread drains: nothing lost,
 * each thread's calls still in order, held memory empty at the end. */
static void test_stress_with_the_mover(void) {
    puts("stress: block, with the mover");
    CHECK(scope_start_mover(1u << 27, 200000));
    CHECK(scope_start_mover(1u << 27, 200000)); /* a second start retunes the one thread */
    stress(SCOPE_OVERFLOW_BLOCK, 4096);
    scope_stop_mover();
    scope_stop_mover();
    scope_stats after;
    scope_get_stats(&after);
    CHECK(after.held == 0);
}

static void test_dead_threads_rings_retire_and_keep_their_counters(void) {
    puts("thread exit");
    drain_all();
    CHECK(scope_configure(64, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_MONOTONIC) == 0);
    scope_stats before, after;
    scope_get_stats(&before);
    run_threads(3, 100); /* 100 calls each into 64-record rings: drops */
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
        /* No TSC (another machine, or built with -DSCOPE_NO_TSC): asked for, it is refused. */
        CHECK(scope_configure(1024, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_TSC) == -1);
        puts("  no invariant TSC here: monotonic only");
        return;
    }
    CHECK(scope_configure(1024, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_TSC) == 0);
    int64_t before = scope_now_ns();
    scope_emit_enter(5);
    scope_emit_exit(5, 0);
    int64_t after = scope_now_ns();
    size_t used = 0;
    CHECK(scope_drain(out, 64, arena_out, sizeof arena_out, &used) == 1);
    /* Converted to CLOCK_MONOTONIC, within the calibration's error. */
    CHECK(out[0].start_ns >= before - 100000);
    CHECK(out[0].start_ns + out[0].duration_ns <= after + 100000 && out[0].duration_ns >= 0);
    scope_clock clock;
    scope_get_clock(&clock);
    CHECK(clock.source == SCOPE_CLOCK_TSC && clock.ns_per_tick > 0.01 && clock.ns_per_tick < 10);
    CHECK(scope_configure(1024, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_MONOTONIC) == 0);
}

/* A suspension record's times are the clock's ticks until drained, ns after, as a
 * call's are; the threshold is set in ns and kept in ticks. */
static void test_a_suspension_is_drained_in_nanoseconds(int clock_source) {
    printf("suspension records (clock %d)\n", clock_source);
    CHECK(scope_configure(1024, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, clock_source) == 0);
    scope_clock clock;
    scope_get_clock(&clock);
    scope_set_suspension_min(-1);
    CHECK(scope_g_suspension_min_ticks == INT64_MAX);
    scope_set_suspension_min(100000);
    int64_t want = (int64_t)(100000 / clock.ns_per_tick);
    CHECK(scope_g_suspension_min_ticks >= want - 1 && scope_g_suspension_min_ticks <= want + 1);
    int64_t before = scope_now_ns();
    int64_t parked_at = scope_ticks();
    int64_t ticks = (int64_t)(2000000 / clock.ns_per_tick); /* 2 ms */
    scope_value_record v = {0};
    v.call_id = 42;
    v.payload = parked_at;
    v.raised_in = (uint64_t)ticks;
    v.tag = SCOPE_TAG_NONE;
    v.role = SCOPE_ROLE_SUSPENSION;
    v.func_word = 5 | (uint64_t)SCOPE_VALUE << SCOPE_KIND_SHIFT;
    scope_emit_record((const scope_record *)&v);
    int64_t after = scope_now_ns();
    size_t used = 0;
    CHECK(scope_drain(out, 64, arena_out, sizeof arena_out, &used) == 1 && used == 0);
    scope_value_record *got = (scope_value_record *)&out[0];
    CHECK(got->call_id == 42 && got->role == SCOPE_ROLE_SUSPENSION && got->arena_len == 0);
    CHECK(got->payload >= before - 100000 && got->payload <= after + 100000);
    CHECK(got->raised_in >= 1990000 && got->raised_in <= 2010000);
    scope_set_suspension_min(-1);
    CHECK(scope_configure(1024, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_MONOTONIC) == 0);
}

static void test_bad_configuration_is_refused(void) {
    puts("configuration");
    CHECK(scope_configure(8, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_MONOTONIC) != 0);
    CHECK(scope_configure(64, 16, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_MONOTONIC) != 0);
    CHECK(scope_configure(64, 4096, 7, 0, 1024, SCOPE_CLOCK_MONOTONIC) != 0);
    CHECK(scope_configure(64, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, 9) != 0);
}

static void *produce_in_files(void *arg) {
    scope_produce_pairs(*(uint64_t *)arg, 1);
    return NULL;
}

/* Rings in files, read by a reader as another process would (here, the same
 * one): every record once, a damaged file left out, space freed only on commit. */
static void test_a_reader_drains_shared_rings_and_refuses_damaged_files(void) {
    puts("shared rings and the reader");
    char dir[] = "/tmp/scope-test-core-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(scope_live_open(dir, 0) == 0);
    uint64_t pairs = 500;
    pthread_t thread; /* a new thread: its ring is made in the folder */
    CHECK(pthread_create(&thread, NULL, produce_in_files, &pairs) == 0);
    pthread_join(thread, NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/ring-999", dir);
    FILE *damaged = fopen(path, "wb");
    CHECK(damaged != NULL);
    for (int i = 0; i < 5000; i++) fputc(0xff, damaged);
    fclose(damaged);
    scope_reader *reader = scope_reader_open(dir);
    CHECK(reader != NULL);
    scope_thread_info threads[4];
    CHECK(scope_reader_threads(reader, threads, 4) == 1); /* ring-999 is not a ring */
    size_t used = 0, n = scope_reader_drain(reader, out, 1 << 16, arena_out, sizeof arena_out, &used);
    CHECK(n == pairs);
    for (size_t i = 0; i < n; i++) CHECK(kind_of(&out[i]) == SCOPE_RETURN);
    CHECK(scope_reader_drain(reader, out, 1 << 16, arena_out, sizeof arena_out, &used) == 0);
    scope_reader_close(reader); /* not committed: a new reader reads them again */
    reader = scope_reader_open(dir);
    CHECK(scope_reader_drain(reader, out, 1 << 16, arena_out, sizeof arena_out, &used) == pairs);
    scope_reader_commit(reader);
    scope_reader_close(reader);
    reader = scope_reader_open(dir);
    CHECK(scope_reader_drain(reader, out, 1 << 16, arena_out, sizeof arena_out, &used) == 0);
    scope_process_info process;
    scope_reader_process(reader, &process);
    CHECK(process.pid == getpid() && process.state == SCOPE_PROCESS_RUNNING);
    scope_reader_close(reader);
    unlink(path);
    drain_all(); /* this process's own drainer still sees the (now empty) ring */
    scope_live_close(1);
    CHECK(rmdir(dir) != 0); /* scope_live_close removed it already */
}

typedef struct {
    uint32_t open;                /* calls to leave open */
    _Atomic int entered, release; /* handshakes with the reader */
} open_calls_work;

static void *enter_and_wait(void *arg) {
    open_calls_work *w = arg;
    for (uint32_t i = 0; i < w->open; i++) scope_emit_enter(100 + i);
    scope_emit_enter(99); /* ended: not open */
    scope_emit_exit(99, 0);
    atomic_store(&w->entered, 1);
    while (!atomic_load(&w->release)) usleep(1000);
    for (uint32_t i = w->open; i-- > 0;) scope_emit_exit(100 + i, 0);
    return NULL;
}

/* A reader finds a thread's open calls in its ring file, as it would those of a
 * process that died: written once as unfinished, under one another; a stack
 * deeper than the file keeps is only counted. */
static void test_a_reader_writes_the_open_calls_a_ring_file_keeps(void) {
    puts("open calls from the ring file");
    CHECK(scope_configure(1024, 4096, SCOPE_OVERFLOW_DROP, 0, 1 << 16, SCOPE_CLOCK_MONOTONIC) == 0);
    char dir[] = "/tmp/scope-test-core-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(scope_live_open(dir, 0) == 0);
    uint32_t depths[] = {3, SCOPE_RING_FRAMES + 10};
    for (int k = 0; k < 2; k++) {
        open_calls_work w = {.open = depths[k]};
        pthread_t thread;
        CHECK(pthread_create(&thread, NULL, enter_and_wait, &w) == 0);
        while (!atomic_load(&w.entered)) usleep(1000);
        scope_reader *reader = scope_reader_open(dir);
        CHECK(reader != NULL);
        size_t used = 0, missing = 0;
        while (scope_reader_drain(reader, out, 1 << 16, arena_out, sizeof arena_out, &used))
            scope_reader_commit(reader);
        size_t written = scope_reader_unfinish(reader, &missing);
        size_t again = 0;
        CHECK(scope_reader_unfinish(reader, &again) == 0 && again == 0); /* once */
        if (k == 0) {
            CHECK(written == 3 && missing == 0);
            CHECK(scope_reader_drain(reader, out, 1 << 16, arena_out, sizeof arena_out, &used) == 3);
            for (int i = 0; i < 3; i++) {
                CHECK(kind_of(&out[i]) == SCOPE_UNFINISHED && func_of(&out[i]) == 100u + i);
                CHECK(out[i].duration_ns == -1 && out[i].depth == (uint32_t)i);
                if (i) CHECK(out[i].parent_id == out[i - 1].call_id);
                /* every later call of its thread is under it, 99's too */
                CHECK(out[i].end_id > out[i].call_id && (out[i].end_id >> SCOPE_SLOT_SHIFT) ==
                                                            (out[i].call_id >> SCOPE_SLOT_SHIFT));
            }
        } else {
            CHECK(written == 0 && missing == SCOPE_RING_FRAMES + 10);
        }
        scope_reader_commit(reader);
        scope_reader_close(reader);
        atomic_store(&w.release, 1);
        pthread_join(thread, NULL);
        drain_all();
    }
    scope_live_close(1);
    CHECK(scope_configure(1024, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_MONOTONIC) == 0);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK(scope_configure(1024, 4096, SCOPE_OVERFLOW_DROP, 0, 1024, SCOPE_CLOCK_MONOTONIC) == 0);
    scope_set_enabled(1);
    test_nested_calls_get_ids_parents_depths_and_end_ids();
    test_open_calls_come_out_unfinished();
    test_a_thread_ending_with_open_calls_writes_them_unfinished();
    test_unmatched_exit_is_counted_not_recorded();
    test_values_travel_with_their_bytes_across_the_arena_wrap();
    test_a_full_arena_keeps_the_value_as_lost();
    test_a_small_arena_buffer_drains_in_several_goes();
    test_bad_configuration_is_refused();
    test_the_tsc_clock_converts_to_monotonic_nanoseconds();
    test_a_suspension_is_drained_in_nanoseconds(SCOPE_CLOCK_MONOTONIC);
    if (scope_tsc_usable()) test_a_suspension_is_drained_in_nanoseconds(SCOPE_CLOCK_TSC);
    test_held_records_come_out_first_and_in_order();
    test_dead_threads_rings_retire_and_keep_their_counters();
    test_stress_both_policies();
    test_stress_with_the_mover();
    test_a_reader_drains_shared_rings_and_refuses_damaged_files();
    test_a_reader_writes_the_open_calls_a_ring_file_keeps();
    puts("all passed");
    return 0;
}

/*
 * check_async.c - stele_append_async: thousands of appends in flight from
 * one thread, each completed exactly once, in LSN order, with the same
 * answers the blocking call gives (SPEC.md §11).
 *
 * How: callbacks record (code, receipt) per request into an array indexed by
 * the request's ordinal; the test waits until all arrived, then checks
 * density and order of LSNs, reads the records back, and checks what a
 * failed sync does to the requests in flight (fault backend).
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define N 20000

struct tracker {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t done;
    size_t calls[N];
    int codes[N];
    stele_receipt receipts[N];
    size_t order[N]; /* ordinals in callback order */
};

struct ticket {
    struct tracker *t;
    size_t ordinal;
};

static void on_done(void *ctx, int code, const stele_receipt *receipts, size_t count)
{
    struct ticket *k = ctx;
    struct tracker *t = k->t;
    pthread_mutex_lock(&t->lock);
    t->calls[k->ordinal]++;
    t->codes[k->ordinal] = code;
    t->receipts[k->ordinal] = receipts[count - 1];
    t->order[t->done++] = k->ordinal;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

static void wait_all(struct tracker *t, size_t n)
{
    pthread_mutex_lock(&t->lock);
    while (t->done < n)
        pthread_cond_wait(&t->cond, &t->lock);
    pthread_mutex_unlock(&t->lock);
}

static struct tracker *tracker_new(void)
{
    struct tracker *t = calloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    return t;
}

static void tracker_free(struct tracker *t)
{
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    free(t);
}

static stele_log *open_with(const char *dir, stele_durability d, struct io *io)
{
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.durability = d;
    o.segment_size = 1024 * 1024;
    o.payload_size_max = 65536;
    o.queue_records_max = 8192;
    stele_log *log = NULL;
    int rc = io ? stele_open_io(dir, &o, io, &log) : stele_open(dir, &o, &log);
    ck_assert_msg(rc == STELE_OK, "open: %s", stele_errmsg());
    return log;
}

/* Appends n single events asynchronously, each with a distinct key and payload. */
static void append_all(stele_log *log, struct tracker *t, stele_event *ev, struct ticket *tk, char (*keys)[24], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(keys[i], sizeof keys[i], "async-%zu", i);
        memset(&ev[i], 0, sizeof ev[i]);
        ev[i].key = keys[i];
        ev[i].key_size = (size_t)len;
        ev[i].payload = keys[i];
        ev[i].payload_size = (size_t)len;
        ev[i].type = "t";
        ev[i].type_size = 1;
        tk[i] = (struct ticket){t, i};
        int code = stele_append_async(log, &ev[i], 1, on_done, &tk[i]);
        ck_assert_msg(code == STELE_OK, "append_async %zu: %s", i, stele_errmsg());
    }
}

static void check_mode(stele_durability d)
{
    char *dir = tu_tmpdir("async");
    stele_log *log = open_with(dir, d, NULL);
    struct tracker *t = tracker_new();
    stele_event *ev = calloc(N, sizeof *ev);
    struct ticket *tk = calloc(N, sizeof *tk);
    char (*keys)[24] = calloc(N, sizeof *keys);
    append_all(log, t, ev, tk, keys, N);
    wait_all(t, N);
    for (size_t i = 0; i < N; i++) {
        ck_assert_uint_eq(t->calls[i], 1);
        ck_assert_int_eq(t->codes[i], STELE_OK);
        ck_assert_int_eq(t->receipts[i].decision, STELE_DECISION_NEW);
        ck_assert_uint_eq(t->receipts[i].lsn, i + 1); /* one thread: LSNs follow the calls */
        ck_assert_uint_eq(t->order[i], i);            /* completions in LSN order */
    }
    /* Duplicates asynchronously: same keys, same payloads. */
    memset(t->calls, 0, sizeof t->calls);
    t->done = 0;
    append_all(log, t, ev, tk, keys, 100);
    wait_all(t, 100);
    for (size_t i = 0; i < 100; i++) {
        ck_assert_int_eq(t->receipts[i].decision, STELE_DECISION_DUPLICATE);
        ck_assert_uint_eq(t->receipts[i].lsn, i + 1);
    }
    stele_stats s;
    ck_assert_int_eq(stele_stats_get(log, &s), STELE_OK);
    ck_assert_uint_eq(s.last_lsn, N);
    if (d == STELE_DURABILITY_SYNC) {
        ck_assert_uint_eq(s.durable_lsn, N);
        ck_assert_uint_lt(s.syncs, N / 4); /* group commit: far fewer syncs than appends */
    }
    ck_assert_int_eq(stele_close(log), STELE_OK);
    stele_verify_report rep;
    ck_assert_int_eq(stele_verify(dir, NULL, NULL, &rep), STELE_OK);
    ck_assert_uint_eq(rep.records, N);
    tracker_free(t);
    free(ev);
    free(tk);
    free(keys);
    tu_rmrf(dir);
    free(dir);
}

START_TEST(async_sync_mode)
{
    check_mode(STELE_DURABILITY_SYNC);
}
END_TEST

START_TEST(async_none_mode)
{
    check_mode(STELE_DURABILITY_NONE);
}
END_TEST

START_TEST(async_batches_and_bad_input)
{
    char *dir = tu_tmpdir("asyncb");
    stele_log *log = open_with(dir, STELE_DURABILITY_SYNC, NULL);
    struct tracker *t = tracker_new();
    stele_event ev[3];
    memset(ev, 0, sizeof ev);
    for (int i = 0; i < 3; i++) {
        ev[i].stream = "s";
        ev[i].stream_size = 1;
    }
    struct ticket tk = {t, 0};
    ck_assert_int_eq(stele_append_async(log, ev, 3, on_done, &tk), STELE_OK);
    wait_all(t, 1);
    ck_assert_int_eq(t->codes[0], STELE_OK);
    ck_assert_uint_eq(t->receipts[0].lsn, 3);
    ck_assert_uint_eq(t->receipts[0].stream_version, 3);
    /* Invalid input: refused at once, the function is never called. */
    stele_event bad = {0};
    bad.type_size = 300;
    bad.type = "x";
    struct ticket tk2 = {t, 1};
    ck_assert_int_eq(stele_append_async(log, &bad, 1, on_done, &tk2), STELE_ERR_TOO_LARGE);
    ck_assert_int_eq(stele_append_async(log, ev, 1, NULL, NULL), STELE_ERR_INVALID);
    /* A stream-version conflict comes back through the function. */
    ev[0].has_expect_version = 1;
    ev[0].expect_version = 1;
    ck_assert_int_eq(stele_append_async(log, ev, 1, on_done, &tk2), STELE_OK);
    wait_all(t, 2);
    ck_assert_int_eq(t->codes[1], STELE_ERR_STREAM_VERSION);
    ck_assert_uint_eq(t->receipts[1].stream_version, 3);
    ck_assert_int_eq(stele_close(log), STELE_OK);
    ck_assert_uint_eq(t->calls[1], 1);
    tracker_free(t);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* The events are copied before stele_append_async returns: one buffer,
 * overwritten for every call before the previous call's record is even
 * written, and every record comes back with its own bytes. */
START_TEST(async_events_reused_at_once)
{
    char *dir = tu_tmpdir("asyncr");
    stele_log *log = open_with(dir, STELE_DURABILITY_SYNC, NULL);
    struct tracker *t = tracker_new();
    enum { CALLS = 2000 };
    struct ticket *tk = calloc(CALLS, sizeof *tk);
    char key[24], payload[64];
    stele_event ev;
    for (size_t i = 0; i < CALLS; i++) {
        memset(&ev, 0, sizeof ev);
        int klen = snprintf(key, sizeof key, "reuse-%zu", i);
        int plen = snprintf(payload, sizeof payload, "payload of call %zu", i);
        ev.key = key;
        ev.key_size = (size_t)klen;
        ev.payload = payload;
        ev.payload_size = (size_t)plen;
        ev.type = "t";
        ev.type_size = 1;
        tk[i] = (struct ticket){t, i};
        ck_assert_int_eq(stele_append_async(log, &ev, 1, on_done, &tk[i]), STELE_OK);
        memset(key, 'x', sizeof key); /* the engine must not read these again */
        memset(payload, 'y', sizeof payload);
    }
    wait_all(t, CALLS);
    for (size_t i = 0; i < CALLS; i++) {
        ck_assert_int_eq(t->codes[i], STELE_OK);
        stele_record *rec;
        ck_assert_int_eq(stele_get(log, t->receipts[i].lsn, &rec), STELE_OK);
        char want_key[24], want[64];
        int klen = snprintf(want_key, sizeof want_key, "reuse-%zu", i);
        int plen = snprintf(want, sizeof want, "payload of call %zu", i);
        ck_assert_uint_eq(rec->key_size, (size_t)klen);
        ck_assert(memcmp(rec->key, want_key, (size_t)klen) == 0);
        ck_assert_uint_eq(rec->payload_size, (size_t)plen);
        ck_assert(memcmp(rec->payload, want, (size_t)plen) == 0);
        stele_record_free(rec);
    }
    ck_assert_int_eq(stele_close(log), STELE_OK);
    tracker_free(t);
    free(tk);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(async_failed_sync_fails_everything_in_flight)
{
    /* One sync fails while thousands of appends are in flight: none of them
     * may be reported as done unless a sync that covered it succeeded before,
     * and every one gets its function called exactly once. */
    char *dir = tu_tmpdir("asyncf");
    struct io *io = io_fault_create(io_posix_create());
    stele_log *log = open_with(dir, STELE_DURABILITY_SYNC, io);
    /* Syncs: two create the first segment; fail the third, the first
     * sync of data, or later ones. */
    io_fault_arm(io, IO_FAULT_SYNC, io_fault_count(io, IO_FAULT_SYNC) + 3 + (size_t)(tu_seed("async fault") % 4), EIO, 0);
    struct tracker *t = tracker_new();
    stele_event *ev = calloc(N, sizeof *ev);
    struct ticket *tk = calloc(N, sizeof *tk);
    char (*keys)[24] = calloc(N, sizeof *keys);
    size_t queued = 0;
    for (size_t i = 0; i < N; i++, queued++) {
        int len = snprintf(keys[i], sizeof keys[i], "f-%zu", i);
        ev[i].key = keys[i];
        ev[i].key_size = (size_t)len;
        tk[i] = (struct ticket){t, i};
        int code = stele_append_async(log, &ev[i], 1, on_done, &tk[i]);
        if (code != STELE_OK) {
            ck_assert_int_eq(code, STELE_ERR_FENCED);
            break;
        }
    }
    wait_all(t, queued);
    stele_stats s;
    ck_assert_int_eq(stele_stats_get(log, &s), STELE_OK);
    ck_assert_int_eq(s.fenced, 1);
    size_t ok = 0;
    for (size_t i = 0; i < queued; i++) {
        ck_assert_uint_eq(t->calls[i], 1);
        if (t->codes[i] == STELE_OK) {
            ok++;
            ck_assert_uint_le(t->receipts[i].lsn, s.durable_lsn);
        } else {
            /* Unknown when written; FENCED when queued behind the failure;
             * the I/O code itself when the failure came before its write
             * (creating the first segment syncs too). */
            ck_assert_msg(t->codes[i] == STELE_ERR_OUTCOME_UNKNOWN || t->codes[i] == STELE_ERR_FENCED ||
                              t->codes[i] == STELE_ERR_IO,
                          "request %zu: %s", i, stele_strerror(t->codes[i]));
        }
    }
    ck_assert_uint_eq(ok, s.durable_lsn);
    ck_assert_int_ne(stele_close(log), STELE_OK);
    /* Everything acknowledged is there after reopening. */
    stele_options o;
    stele_options_init(&o);
    o.io_backend = STELE_IO_POSIX;
    ck_assert_int_eq(stele_open(dir, &o, &log), STELE_OK);
    for (size_t i = 0; i < queued; i++) {
        if (t->codes[i] != STELE_OK)
            continue;
        stele_record *r;
        ck_assert_int_eq(stele_get(log, t->receipts[i].lsn, &r), STELE_OK);
        ck_assert_mem_eq(r->key, keys[i], r->key_size);
        stele_record_free(r);
    }
    ck_assert_int_eq(stele_close(log), STELE_OK);
    tracker_free(t);
    free(ev);
    free(tk);
    free(keys);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("async");
    TCase *tc = tcase_create("async");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, async_sync_mode);
    tcase_add_test(tc, async_none_mode);
    tcase_add_test(tc, async_batches_and_bad_input);
    tcase_add_test(tc, async_events_reused_at_once);
    tcase_add_test(tc, async_failed_sync_fails_everything_in_flight);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

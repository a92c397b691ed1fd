/*
 * check_outcomes.c - proves the decision rules of stele.h ("keys, outcomes,
 * streams"; PRODUCT.md guarantees 3-6; RELIABILITY S26-S28, S30): what each
 * append is answered (new, duplicate, CONFLICT, INVALID, NOT_FOUND,
 * STREAM_VERSION), that a refused append appends nothing, and that the index
 * answers the same from the live handle, after a reopen that loads the
 * checkpoint and after a reopen that rebuilds it from the log.
 *
 * How:
 *  - Races: 64 threads x 2,000 single appends over 5,000 keys (the same
 *    payload per key); then batch appenders (a key repeated inside a batch,
 *    many batches in flight) and async appenders over one shared key pool.
 *    Every answer is collected per key: exactly one `new` per key, every
 *    other answer `duplicate` with the winner's LSN (and only once that LSN
 *    is durable), and the log (read back record by record) holds each key
 *    exactly once.
 *  - Conflicts: the same key with another payload, type, stream or kind is
 *    CONFLICT with the original's LSN and the log does not move; the fields
 *    the fingerprint does not cover (actor, times, content, flags) are a
 *    duplicate.
 *  - State transitions: one straight-line scenario walks every allowed and
 *    refused transition of intents, outcomes and compensations, checking the
 *    receipt, stele_status_get, stele_get_key and stele_pending at each
 *    point. It is replayed (every `new` becoming a duplicate of the same LSN)
 *    on the live handle, after a reopen (checkpoint: nothing scanned) and
 *    after a reopen with the index file deleted (rebuilt): the answers are
 *    identical each time. Every refused append carries a message. Inside
 *    one call an outcome may resolve the call's intent; a compensation of
 *    the call's own record is NOT_FOUND (not acknowledged yet).
 *  - Query arguments: keys and streams of 0 or 256 bytes are INVALID.
 *  - Time: the recorded-time clock is injected (log_set_clock). Pending
 *    intents are listed oldest first, filtered by age and limited; keys are
 *    a duplicate up to the window and new after it, a pending intent never
 *    expires, window 0 is forever, and expiry survives a reopen.
 *  - Streams: versions 1, 2, 3; expect_version checks; threads racing with
 *    expect_version = the version each of them read: one winner per version,
 *    dense; stream iterators over interleaved streams, from any version.
 *  - S30: with the index's hash forced to a constant (idx_set_hash through
 *    the log's index), different keys never answer for each other.
 * Randomness is seeded by tu_seed (STELE_TEST_SEED replays).
 */
#include <check.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "idx.h"
#include "internal.h"
#include "stele.h"
#include "testutil.h"

#define NS_PER_S UINT64_C(1000000000)

/* ------------------------------------------------------------ helpers */

static stele_options opts_new(uint64_t window_ns)
{
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.idem_window_ns = window_ns;
    return o;
}

static stele_log *open_log(const char *dir, const stele_options *o)
{
    stele_log *log = NULL;
    int rc = stele_open(dir, o, &log);
    REQUIRE(rc == STELE_OK && log, "open %s: %s: %s", dir, stele_strerror(rc), stele_errmsg());
    return log;
}

static stele_stats stats_of(stele_log *log)
{
    stele_stats s;
    OK(stele_stats_get(log, &s));
    return s;
}

static uint64_t last_lsn(stele_log *log)
{
    return stats_of(log).last_lsn;
}

/* An event of kind with the given strings (NULL = absent). */
static stele_event mk(stele_kind kind, const char *key, const char *stream, const char *type, const char *payload)
{
    stele_event e;
    memset(&e, 0, sizeof e);
    e.kind = kind;
    e.key = key, e.key_size = key ? strlen(key) : 0;
    e.stream = stream, e.stream_size = stream ? strlen(stream) : 0;
    e.type = type, e.type_size = type ? strlen(type) : 0;
    e.payload = payload, e.payload_size = payload ? strlen(payload) : 0;
    return e;
}

static stele_event mk_outcome(const char *key, stele_outcome outcome, uint64_t ref, const char *payload)
{
    stele_event e = mk(STELE_KIND_OUTCOME, key, NULL, "resolved", payload);
    e.outcome = outcome;
    e.ref = ref;
    return e;
}

static stele_event mk_comp(uint64_t ref, const char *payload)
{
    stele_event e = mk(STELE_KIND_COMPENSATION, NULL, NULL, "undo", payload);
    e.ref = ref;
    return e;
}

static void delete_index(const char *dir)
{
    char *p = tu_index_file(dir);
    REQUIRE(p != NULL, "no index file (a name starting with \"index\") in %s after a clean close", dir);
    REQUIRE(unlink(p) == 0, "unlink %s", p);
    free(p);
}

/* The injected clock: recorded times are whatever ns holds. */
struct tclock {
    _Atomic uint64_t ns;
};

static uint64_t tclock_read(void *ctx)
{
    return atomic_load(&((struct tclock *)ctx)->ns);
}

/* A base time a day ahead of the real clock, so that an engine falling back
 * on the real clock (say at open) never sees time pass backwards past it. */
static uint64_t base_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec + 86400) * NS_PER_S;
}

/* Opens dir and checks what stats say about how the index was obtained:
 * want_rebuilt 0 = the checkpoint was used and nothing scanned (a clean
 * close), 1 = rebuilt from the whole log. */
static stele_log *reopen_expect(const char *dir, uint64_t window_ns, int want_rebuilt)
{
    stele_options o = opts_new(window_ns);
    o.create = 0;
    stele_log *log = open_log(dir, &o);
    stele_stats s = stats_of(log);
    if (want_rebuilt) {
        REQUIRE(s.index_rebuilt == 1, "reopen without the index file: index_rebuilt %d", s.index_rebuilt);
        REQUIRE(s.index_scanned == s.last_lsn, "rebuild scanned %llu records of %llu",
                (unsigned long long)s.index_scanned, (unsigned long long)s.last_lsn);
    } else {
        REQUIRE(s.index_rebuilt == 0, "reopen after a clean close: index_rebuilt %d (note: %s)", s.index_rebuilt,
                s.index_note);
        REQUIRE(s.index_note[0] == '\0', "reopen after a clean close: index_note \"%s\"", s.index_note);
        REQUIRE(s.index_scanned == 0, "reopen after a clean close scanned %llu records",
                (unsigned long long)s.index_scanned);
        REQUIRE(s.index_checkpoint_lsn == s.last_lsn, "checkpoint covers %llu, log ends at %llu",
                (unsigned long long)s.index_checkpoint_lsn, (unsigned long long)s.last_lsn);
    }
    return log;
}

/* The first refused append that came back without a message (guarantee 7:
 * a code plus a message). Noted, not fatal at once, so that the checks after
 * it still run; messages_check fails the test at its end. */
static char g_nomsg[1024];

static void messages_check(void)
{
    REQUIRE(g_nomsg[0] == '\0', "refused without a message (stele_errmsg() empty): %s", g_nomsg);
}

/* Appends e expecting (code, decision, lsn); lsn 0 with decision new = the
 * next LSN. Checks that nothing was appended unless the decision is new.
 * Returns the receipt. */
static stele_receipt expect_append(stele_log *log, const stele_event *e, int want, stele_decision dec, uint64_t lsn,
                                   const char *what)
{
    uint64_t before = last_lsn(log);
    stele_receipt rc;
    memset(&rc, 0xA5, sizeof rc);
    int code = stele_append(log, e, &rc);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", stele_errmsg()); /* before any other stele call clears it */
    REQUIRE(code == want, "%s: append returned %d (%s), want %d (%s); errmsg: %s", what, code,
            stele_strerror(code), want, stele_strerror(want), msg);
    REQUIRE(rc.code == (stele_code)want, "%s: receipt code %d, want %d", what, rc.code, want);
    REQUIRE(rc.decision == dec, "%s: decision %d, want %d (lsn %llu)", what, rc.decision, dec,
            (unsigned long long)rc.lsn);
    uint64_t after = last_lsn(log);
    if (dec == STELE_DECISION_NEW) {
        REQUIRE(rc.lsn == before + 1 && after == before + 1, "%s: new at LSN %llu, the log went %llu -> %llu", what,
                (unsigned long long)rc.lsn, (unsigned long long)before, (unsigned long long)after);
    } else {
        REQUIRE(after == before, "%s: refused or duplicate, yet the log moved %llu -> %llu", what,
                (unsigned long long)before, (unsigned long long)after);
    }
    if (lsn && (dec == STELE_DECISION_DUPLICATE || dec == STELE_DECISION_CONFLICT || dec == STELE_DECISION_NEW))
        REQUIRE(rc.lsn == lsn, "%s: lsn %llu, want %llu", what, (unsigned long long)rc.lsn, (unsigned long long)lsn);
    if (want != STELE_OK && want != STELE_ERR_CONFLICT && want != STELE_ERR_STREAM_VERSION &&
        msg[0] == '\0' && strlen(g_nomsg) + strlen(what) + 4 < sizeof g_nomsg)
        snprintf(g_nomsg + strlen(g_nomsg), sizeof g_nomsg - strlen(g_nomsg), "%s%s (%s)", g_nomsg[0] ? "; " : "",
                 what, stele_strerror(want));
    return rc;
}

/* Checks what key holds, and that stele_get_key reads that record. */
static stele_status expect_status(stele_log *log, const char *key, stele_state state, uint64_t lsn,
                                  uint64_t outcome_lsn, uint64_t comp_lsn)
{
    stele_status st;
    memset(&st, 0, sizeof st);
    int code = stele_status_get(log, key, strlen(key), &st);
    REQUIRE(code == STELE_OK, "status of %s: %s: %s", key, stele_strerror(code), stele_errmsg());
    REQUIRE(st.state == state && st.lsn == lsn && st.outcome_lsn == outcome_lsn && st.compensation_lsn == comp_lsn,
            "status of %s: state %d lsn %llu outcome %llu compensation %llu; want %d %llu %llu %llu", key, st.state,
            (unsigned long long)st.lsn, (unsigned long long)st.outcome_lsn, (unsigned long long)st.compensation_lsn,
            state, (unsigned long long)lsn, (unsigned long long)outcome_lsn, (unsigned long long)comp_lsn);
    stele_record *r = NULL;
    OK(stele_get_key(log, key, strlen(key), &r));
    REQUIRE(r->lsn == lsn && r->key_size == strlen(key) && memcmp(r->key, key, r->key_size) == 0,
            "get_key %s: LSN %llu", key, (unsigned long long)r->lsn);
    REQUIRE(st.recorded_at_ns == r->recorded_at_ns && st.stream_version == r->stream_version,
            "status of %s: recorded_at %llu stream_version %llu; the record says %llu %llu", key,
            (unsigned long long)st.recorded_at_ns, (unsigned long long)st.stream_version,
            (unsigned long long)r->recorded_at_ns, (unsigned long long)r->stream_version);
    stele_record_free(r);
    return st;
}

static void expect_no_key(stele_log *log, const char *key)
{
    stele_status st;
    EXPECT(stele_status_get(log, key, strlen(key), &st), STELE_ERR_NOT_FOUND);
    stele_record *r = NULL;
    EXPECT(stele_get_key(log, key, strlen(key), &r), STELE_ERR_NOT_FOUND);
}

/* The pending intents' keys, oldest first, joined with ',' into dst. */
static size_t pending_keys(stele_log *log, uint64_t older_than_ns, size_t limit, char *dst, size_t cap)
{
    stele_pending_item *items = NULL;
    size_t n = 99;
    OK(stele_pending(log, older_than_ns, limit, &items, &n));
    dst[0] = '\0';
    size_t len = 0;
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        REQUIRE(items[i].lsn > prev, "pending: LSN %llu after %llu (not oldest first)",
                (unsigned long long)items[i].lsn, (unsigned long long)prev);
        prev = items[i].lsn;
        int w = snprintf(dst + len, cap - len, "%s%.*s", i ? "," : "", (int)items[i].key_size, items[i].key);
        REQUIRE(w > 0 && (size_t)w < cap - len, "pending list too long");
        len += (size_t)w;
    }
    stele_pending_free(items);
    return n;
}

static void expect_pending(stele_log *log, uint64_t older_than_ns, size_t limit, const char *want)
{
    char got[4096];
    pending_keys(log, older_than_ns, limit, got, sizeof got);
    REQUIRE(strcmp(got, want) == 0, "pending(older_than %llu, limit %zu) = [%s], want [%s]",
            (unsigned long long)older_than_ns, limit, got, want);
}

static uint64_t stream_ver(stele_log *log, const char *stream, uint64_t *out_lsn)
{
    uint64_t v = 99, l = 99;
    OK(stele_stream_version(log, stream, strlen(stream), &v, &l));
    if (out_lsn)
        *out_lsn = l;
    return v;
}

/* First failure seen by a worker thread (Check asserts only in the main one). */
struct failure {
    pthread_mutex_t lock;
    _Atomic uint64_t count;
    char msg[512];
};

static void fail_note(struct failure *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_note(struct failure *f, const char *fmt, ...)
{
    if (atomic_fetch_add(&f->count, 1) != 0)
        return;
    pthread_mutex_lock(&f->lock);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof f->msg, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&f->lock);
}

static void fail_check(struct failure *f)
{
    pthread_mutex_lock(&f->lock);
    REQUIRE(atomic_load(&f->count) == 0, "%llu failures in worker threads; the first: %s",
            (unsigned long long)atomic_load(&f->count), f->msg);
    pthread_mutex_unlock(&f->lock);
}

/* ------------------------------------------------- 1. racing on keys */

#define RACE_THREADS 64
#define RACE_APPENDS 2000
#define RACE_KEYS 5000
#define KEY_SIZE 32
#define PAYLOAD_SIZE 40

/* Answers per key, from every thread. */
struct keytab {
    size_t nkeys;
    char (*key)[KEY_SIZE];
    char (*payload)[PAYLOAD_SIZE];
    _Atomic uint64_t *lsn;     /* the first LSN answered for the key */
    _Atomic uint32_t *news;
    _Atomic uint32_t *answers;
    struct failure fail;
};

static void keytab_init(struct keytab *t, size_t nkeys, const char *prefix, uint64_t salt)
{
    memset(t, 0, sizeof *t);
    t->nkeys = nkeys;
    t->key = calloc(nkeys, sizeof *t->key);
    t->payload = calloc(nkeys, sizeof *t->payload);
    t->lsn = calloc(nkeys, sizeof *t->lsn);
    t->news = calloc(nkeys, sizeof *t->news);
    t->answers = calloc(nkeys, sizeof *t->answers);
    ck_assert(t->key && t->payload && t->lsn && t->news && t->answers);
    pthread_mutex_init(&t->fail.lock, NULL);
    for (size_t k = 0; k < nkeys; k++) {
        snprintf(t->key[k], KEY_SIZE, "%s%05zu", prefix, k);
        snprintf(t->payload[k], PAYLOAD_SIZE, "payload of %zu salt %llu", k, (unsigned long long)salt);
    }
}

static void keytab_free(struct keytab *t)
{
    free(t->key);
    free(t->payload);
    free((void *)t->lsn);
    free((void *)t->news);
    free((void *)t->answers);
    pthread_mutex_destroy(&t->fail.lock);
}

static stele_event key_event(const struct keytab *t, size_t k)
{
    return mk(STELE_KIND_EVENT, t->key[k], NULL, "race", t->payload[k]);
}

/* Notes one answer for key k. */
static void keytab_note(struct keytab *t, size_t k, int code, const stele_receipt *rc, const char *how)
{
    atomic_fetch_add(&t->answers[k], 1);
    if (code != STELE_OK || rc->code != STELE_OK) {
        fail_note(&t->fail, "%s, key %s: code %d (%s), receipt code %d", how, t->key[k], code, stele_strerror(code),
                  rc->code);
        return;
    }
    if (rc->decision == STELE_DECISION_NEW)
        atomic_fetch_add(&t->news[k], 1);
    else if (rc->decision != STELE_DECISION_DUPLICATE)
        fail_note(&t->fail, "%s, key %s: decision %d", how, t->key[k], rc->decision);
    uint64_t expected = 0;
    if (!atomic_compare_exchange_strong(&t->lsn[k], &expected, rc->lsn) && expected != rc->lsn)
        fail_note(&t->fail, "%s, key %s: answered LSN %llu and LSN %llu", how, t->key[k],
                  (unsigned long long)expected, (unsigned long long)rc->lsn);
}

/* Exactly one new per key answered; the log holds each such key once, at
 * the LSN every answer gave, and nothing else. */
static void keytab_check(struct keytab *t, stele_log *log, uint64_t answers_total)
{
    fail_check(&t->fail);
    uint64_t touched = 0, total = 0;
    for (size_t k = 0; k < t->nkeys; k++) {
        uint32_t a = atomic_load(&t->answers[k]);
        total += a;
        if (a == 0)
            continue;
        touched++;
        REQUIRE(atomic_load(&t->news[k]) == 1, "key %s: %u answers `new` out of %u", t->key[k],
                atomic_load(&t->news[k]), a);
    }
    ck_assert_uint_eq(total, answers_total);
    stele_stats s = stats_of(log);
    REQUIRE(s.last_lsn == touched, "%llu records for %llu distinct keys", (unsigned long long)s.last_lsn,
            (unsigned long long)touched);
    REQUIRE(s.appends_new == touched && s.appends_duplicate == answers_total - touched,
            "stats: %llu new, %llu duplicate; want %llu, %llu", (unsigned long long)s.appends_new,
            (unsigned long long)s.appends_duplicate, (unsigned long long)touched,
            (unsigned long long)(answers_total - touched));
    uint8_t *seen = calloc(t->nkeys, 1);
    stele_iter *it;
    OK(stele_iter_open(log, 1, &it));
    const stele_record *r;
    uint64_t n = 0;
    size_t plen = strlen(t->key[0]) - 5;
    for (;;) {
        OK(stele_iter_next(it, 0, &r));
        if (!r)
            break;
        n++;
        REQUIRE(r->key_size == plen + 5 && memcmp(r->key, t->key[0], plen) == 0, "LSN %llu: a record without a race key",
                (unsigned long long)r->lsn);
        char num[8] = {0};
        memcpy(num, r->key + plen, 5);
        size_t k = (size_t)strtoul(num, NULL, 10);
        REQUIRE(k < t->nkeys && !seen[k], "key %.*s twice in the log (again at LSN %llu)", (int)r->key_size, r->key,
                (unsigned long long)r->lsn);
        seen[k] = 1;
        REQUIRE(r->lsn == atomic_load(&t->lsn[k]), "key %s is at LSN %llu, the answers said %llu", t->key[k],
                (unsigned long long)r->lsn, (unsigned long long)atomic_load(&t->lsn[k]));
        REQUIRE(r->payload_size == strlen(t->payload[k]) && memcmp(r->payload, t->payload[k], r->payload_size) == 0,
                "key %s: payload differs", t->key[k]);
    }
    stele_iter_close(it);
    free(seen);
    ck_assert_uint_eq(n, touched);
}

struct race_arg {
    struct keytab *t;
    stele_log *log;
    uint64_t seed;
    int appends;
};

static void *race_single(void *p)
{
    struct race_arg *a = p;
    uint64_t s = a->seed;
    for (int i = 0; i < a->appends; i++) {
        size_t k = (size_t)(tu_rand(&s) % a->t->nkeys);
        stele_event e = key_event(a->t, k);
        stele_receipt rc;
        memset(&rc, 0, sizeof rc);
        int code = stele_append(a->log, &e, &rc);
        keytab_note(a->t, k, code, &rc, "stele_append");
        /* A duplicate is answered only once the original is durable (sync mode). */
        stele_stats st;
        if (rc.decision == STELE_DECISION_DUPLICATE && i % 16 == 0 && stele_stats_get(a->log, &st) == STELE_OK &&
            st.durable_lsn < rc.lsn)
            fail_note(&a->t->fail, "key %s: duplicate of LSN %llu while durable_lsn is %llu", a->t->key[k],
                      (unsigned long long)rc.lsn, (unsigned long long)st.durable_lsn);
    }
    return NULL;
}

START_TEST(test_race_single_appends)
{
    char *dir = tu_tmpdir("out-race");
    stele_options o = opts_new(0);
    stele_log *log = open_log(dir, &o);
    uint64_t seed = tu_seed("race single appends");
    struct keytab t;
    keytab_init(&t, RACE_KEYS, "race-", seed);
    pthread_t th[RACE_THREADS];
    struct race_arg args[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        args[i] = (struct race_arg){&t, log, seed * 131 + (uint64_t)i + 1, RACE_APPENDS};
        ck_assert_int_eq(pthread_create(&th[i], NULL, race_single, &args[i]), 0);
    }
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_join(th[i], NULL);
    keytab_check(&t, log, (uint64_t)RACE_THREADS * RACE_APPENDS);
    /* The winners stay the winners after a reopen (checkpoint). */
    OK(stele_close(log));
    log = reopen_expect(dir, 0, 0);
    for (size_t k = 0; k < t.nkeys; k += 97) {
        stele_event e = key_event(&t, k);
        uint64_t want = atomic_load(&t.lsn[k]);
        expect_append(log, &e, STELE_OK, want ? STELE_DECISION_DUPLICATE : STELE_DECISION_NEW, want, t.key[k]);
    }
    OK(stele_close(log));
    keytab_free(&t);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* Batches of 8 in which event 5 repeats event 0's key and event 7 event 2's. */
#define BATCH_THREADS 16
#define BATCH_CALLS 150
#define BATCH_SIZE 8
#define ASYNC_THREADS 2
#define ASYNC_CALLS 500
#define ASYNC_SIZE 4
#define POOL_KEYS 2000

static void *race_batches(void *p)
{
    struct race_arg *a = p;
    uint64_t s = a->seed;
    for (int c = 0; c < a->appends; c++) {
        stele_event ev[BATCH_SIZE];
        size_t ks[BATCH_SIZE];
        for (int j = 0; j < BATCH_SIZE; j++) {
            ks[j] = j == 5 ? ks[0] : j == 7 ? ks[2] : (size_t)(tu_rand(&s) % a->t->nkeys);
            ev[j] = key_event(a->t, ks[j]);
        }
        stele_receipt rc[BATCH_SIZE];
        memset(rc, 0, sizeof rc);
        int code = stele_append_batch(a->log, ev, BATCH_SIZE, rc);
        for (int j = 0; j < BATCH_SIZE; j++)
            keytab_note(a->t, ks[j], code, &rc[j], "stele_append_batch");
        /* Inside one call a repeated key is answered from its first occurrence. */
        for (int j = 1; j < BATCH_SIZE; j++)
            for (int i = 0; i < j; i++)
                if (ks[i] == ks[j] && (rc[j].lsn != rc[i].lsn || rc[j].decision != STELE_DECISION_DUPLICATE))
                    fail_note(&a->t->fail, "batch: key %s at %d and %d: LSN %llu/%llu, decision of the second %d",
                              a->t->key[ks[j]], i, j, (unsigned long long)rc[i].lsn, (unsigned long long)rc[j].lsn,
                              rc[j].decision);
    }
    return NULL;
}

struct async_call {
    struct keytab *t;
    stele_event ev[ASYNC_SIZE];
    size_t ks[ASYNC_SIZE];
    int calls;
};

struct async_state {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t done;
};
static struct async_state g_async = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void async_done(void *ctx, int code, const stele_receipt *receipts, size_t count)
{
    struct async_call *c = ctx;
    c->calls++;
    if (count != ASYNC_SIZE)
        fail_note(&c->t->fail, "async: %zu receipts", count);
    for (size_t j = 0; j < count && j < ASYNC_SIZE; j++)
        keytab_note(c->t, c->ks[j], code, &receipts[j], "stele_append_async");
    if (receipts[3].lsn != receipts[0].lsn || receipts[3].decision != STELE_DECISION_DUPLICATE)
        fail_note(&c->t->fail, "async: key %s twice in one call: LSN %llu/%llu decision %d", c->t->key[c->ks[0]],
                  (unsigned long long)receipts[0].lsn, (unsigned long long)receipts[3].lsn, receipts[3].decision);
    pthread_mutex_lock(&g_async.lock);
    g_async.done++;
    pthread_cond_broadcast(&g_async.cond);
    pthread_mutex_unlock(&g_async.lock);
}

static void *race_async(void *p)
{
    struct race_arg *a = p;
    uint64_t s = a->seed;
    struct async_call *calls = calloc((size_t)a->appends, sizeof *calls);
    for (int c = 0; c < a->appends; c++) {
        struct async_call *ac = &calls[c];
        ac->t = a->t;
        for (int j = 0; j < ASYNC_SIZE; j++) {
            ac->ks[j] = j == 3 ? ac->ks[0] : (size_t)(tu_rand(&s) % a->t->nkeys);
            ac->ev[j] = key_event(a->t, ac->ks[j]);
        }
        int code = stele_append_async(a->log, ac->ev, ASYNC_SIZE, async_done, ac);
        if (code != STELE_OK) {
            fail_note(&a->t->fail, "stele_append_async: %s", stele_strerror(code));
            pthread_mutex_lock(&g_async.lock);
            g_async.done++;
            pthread_mutex_unlock(&g_async.lock);
        }
    }
    return calls; /* freed by the main thread once every callback ran */
}

START_TEST(test_race_batches_and_async)
{
    char *dir = tu_tmpdir("out-raceb");
    stele_options o = opts_new(0);
    stele_log *log = open_log(dir, &o);
    uint64_t seed = tu_seed("race batches and async");
    struct keytab t;
    keytab_init(&t, POOL_KEYS, "pool-", seed);
    g_async.done = 0;
    pthread_t th[BATCH_THREADS + ASYNC_THREADS];
    struct race_arg args[BATCH_THREADS + ASYNC_THREADS];
    for (int i = 0; i < BATCH_THREADS + ASYNC_THREADS; i++) {
        int is_async = i >= BATCH_THREADS;
        args[i] = (struct race_arg){&t, log, seed * 7919 + (uint64_t)i + 1, is_async ? ASYNC_CALLS : BATCH_CALLS};
        ck_assert_int_eq(pthread_create(&th[i], NULL, is_async ? race_async : race_batches, &args[i]), 0);
    }
    void *bufs[ASYNC_THREADS];
    for (int i = 0; i < BATCH_THREADS + ASYNC_THREADS; i++) {
        void *ret = NULL;
        pthread_join(th[i], &ret);
        if (i >= BATCH_THREADS)
            bufs[i - BATCH_THREADS] = ret;
    }
    pthread_mutex_lock(&g_async.lock);
    while (g_async.done < (size_t)ASYNC_THREADS * ASYNC_CALLS)
        pthread_cond_wait(&g_async.cond, &g_async.lock);
    pthread_mutex_unlock(&g_async.lock);
    for (int i = 0; i < ASYNC_THREADS; i++) {
        struct async_call *calls = bufs[i];
        for (int c = 0; c < ASYNC_CALLS; c++)
            REQUIRE(calls[c].calls == 1, "async call %d of thread %d completed %d times", c, i, calls[c].calls);
        free(calls);
    }
    keytab_check(&t, log,
                 (uint64_t)BATCH_THREADS * BATCH_CALLS * BATCH_SIZE + (uint64_t)ASYNC_THREADS * ASYNC_CALLS * ASYNC_SIZE);
    OK(stele_close(log));
    keytab_free(&t);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------ 2. conflicts */

START_TEST(test_conflicts)
{
    char *dir = tu_tmpdir("out-conflict");
    stele_options o = opts_new(0);
    stele_log *log = open_log(dir, &o);
    stele_event orig = mk(STELE_KIND_EVENT, "c-1", "st-1", "t.a", "p1");
    uint64_t l1 = expect_append(log, &orig, STELE_OK, STELE_DECISION_NEW, 1, "original").lsn;
    stele_event e;

    e = orig, e.payload = "p2";
    expect_append(log, &e, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, l1, "another payload");
    e = orig, e.payload_size = 0;
    expect_append(log, &e, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, l1, "no payload");
    e = orig, e.type = "t.b";
    expect_append(log, &e, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, l1, "another type");
    e = orig, e.stream = "st-2";
    expect_append(log, &e, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, l1, "another stream");
    e = orig, e.stream = NULL, e.stream_size = 0;
    expect_append(log, &e, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, l1, "no stream");
    e = orig, e.kind = STELE_KIND_INTENT;
    expect_append(log, &e, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, l1, "another kind (intent)");
    ck_assert_uint_eq(stream_ver(log, "st-1", NULL), 1);
    ck_assert_uint_eq(stream_ver(log, "st-2", NULL), 0);

    /* What the fingerprint does not cover (SPEC.md §5.2) is the same request. */
    e = orig, e.actor = "bob", e.actor_size = 3;
    expect_append(log, &e, STELE_OK, STELE_DECISION_DUPLICATE, l1, "another actor");
    e = orig, e.event_time_ns = 12345;
    expect_append(log, &e, STELE_OK, STELE_DECISION_DUPLICATE, l1, "another event time");
    e = orig, e.content = STELE_CONTENT_TEXT;
    expect_append(log, &e, STELE_OK, STELE_DECISION_DUPLICATE, l1, "another content");
    e = orig, e.flags = STELE_FLAG_BACKFILLED;
    expect_append(log, &e, STELE_OK, STELE_DECISION_DUPLICATE, l1, "backfilled");

    /* An intent's key: an event or another intent on it conflicts. */
    stele_event in = mk(STELE_KIND_INTENT, "c-2", NULL, "pay", "x");
    uint64_t l2 = expect_append(log, &in, STELE_OK, STELE_DECISION_NEW, 2, "intent").lsn;
    e = in, e.kind = STELE_KIND_EVENT;
    expect_append(log, &e, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, l2, "event on an intent's key");
    e = in, e.payload = "y";
    expect_append(log, &e, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, l2, "intent with another payload");
    expect_append(log, &in, STELE_OK, STELE_DECISION_DUPLICATE, l2, "the same intent");

    /* In a batch: the conflicting record is refused, the others decided. */
    stele_event b[3] = {mk(STELE_KIND_EVENT, "c-3", NULL, "t", "z"), orig, mk(STELE_KIND_EVENT, "c-1", "st-1", "t.a", "zz")};
    stele_receipt rc[3];
    EXPECT(stele_append_batch(log, b, 3, rc), STELE_ERR_CONFLICT);
    ck_assert_int_eq(rc[0].decision, STELE_DECISION_NEW);
    ck_assert_uint_eq(rc[0].lsn, 3);
    ck_assert_int_eq(rc[1].decision, STELE_DECISION_DUPLICATE);
    ck_assert_uint_eq(rc[1].lsn, l1);
    ck_assert_int_eq(rc[2].decision, STELE_DECISION_CONFLICT);
    ck_assert_int_eq(rc[2].code, STELE_ERR_CONFLICT);
    ck_assert_uint_eq(rc[2].lsn, l1);
    ck_assert_uint_eq(last_lsn(log), 3);
    stele_stats s = stats_of(log);
    ck_assert_uint_eq(s.appends_conflict, 9);
    expect_status(log, "c-1", STELE_STATE_EVENT, l1, 0, 0);

    /* The same answers from the checkpoint and from a rebuild. */
    for (int phase = 0; phase < 2; phase++) {
        OK(stele_close(log));
        if (phase)
            delete_index(dir);
        log = reopen_expect(dir, 0, phase);
        e = orig, e.payload = "p2";
        expect_append(log, &e, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, l1, "another payload, reopened");
        e = orig, e.kind = STELE_KIND_INTENT;
        expect_append(log, &e, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, l1, "another kind, reopened");
        e = in, e.kind = STELE_KIND_EVENT;
        expect_append(log, &e, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, l2, "event on intent key, reopened");
        expect_append(log, &orig, STELE_OK, STELE_DECISION_DUPLICATE, l1, "original, reopened");
        ck_assert_uint_eq(stream_ver(log, "st-2", NULL), 0);
    }
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
    messages_check();
}
END_TEST

/* ---------------------------------------------- 3. state transitions */

#define ANSWERS_MAX 96

/* One run of the scenario: first (everything decided for the first time) or
 * a replay (every `new` is now a duplicate of the same LSN). */
struct scen {
    stele_log *log;
    int replay;
    int n;
    int codes[ANSWERS_MAX];
    stele_receipt ans[ANSWERS_MAX];
    /* LSNs the first run assigned. */
    struct {
        uint64_t e1, ic, oc, iff, of, ip, cmp1, cmp2, e3, cmp3, ev2;
    } L;
};

static uint64_t step(struct scen *s, const char *what, const stele_event *e, int want, stele_decision dec, uint64_t lsn)
{
    if (dec == STELE_DECISION_NEW && s->replay)
        dec = STELE_DECISION_DUPLICATE; /* lsn holds what the first run assigned */
    stele_receipt rc = expect_append(s->log, e, want, dec, dec == STELE_DECISION_NEW ? 0 : lsn, what);
    REQUIRE(s->n < ANSWERS_MAX, "too many steps");
    s->codes[s->n] = rc.code;
    s->ans[s->n++] = rc;
    return dec == STELE_DECISION_NEW ? rc.lsn : lsn;
}

#define NEW_(s, what, e, var) ((s)->L.var = step((s), (what), (e), STELE_OK, STELE_DECISION_NEW, (s)->L.var))
#define DUP_(s, what, e, lsn) step((s), (what), (e), STELE_OK, STELE_DECISION_DUPLICATE, (lsn))
#define CONFLICT_(s, what, e, lsn) step((s), (what), (e), STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, (lsn))
#define REFUSED_(s, what, e, code) step((s), (what), (e), (code), STELE_DECISION_NONE, 0)

/* The state every key reaches at the end of the scenario. */
static void scen_final(struct scen *s)
{
    stele_log *log = s->log;
    expect_status(log, "ev-1", STELE_STATE_COMPENSATED, s->L.e1, 0, s->L.cmp1);
    expect_status(log, "int-c", STELE_STATE_COMPENSATED, s->L.ic, s->L.oc, s->L.cmp2);
    expect_status(log, "int-f", STELE_STATE_FAILED, s->L.iff, s->L.of, 0);
    expect_status(log, "int-p", STELE_STATE_PENDING, s->L.ip, 0, 0);
    expect_status(log, "ev-2", STELE_STATE_EVENT, s->L.ev2, 0, 0);
    expect_no_key(log, "nokey-x");
    expect_pending(log, 0, 0, "int-p");
    uint64_t lsn;
    ck_assert_uint_eq(stream_ver(log, "acct-1", &lsn), 3);
    ck_assert_uint_eq(lsn, s->L.oc);
    /* The outcome record points at its intent though it was appended with ref 0. */
    stele_record *r;
    OK(stele_get(log, s->L.oc, &r));
    ck_assert_int_eq(r->kind, STELE_KIND_OUTCOME);
    ck_assert_uint_eq(r->ref, s->L.ic);
    stele_record_free(r);
    stele_stats stats = stats_of(log);
    ck_assert_uint_eq(stats.index_pending, 1);
    ck_assert_uint_eq(stats.index_keys, 5);
    ck_assert_uint_eq(stats.last_lsn, s->L.cmp3);
}

static void scenario(struct scen *s)
{
    stele_log *log = s->log;
    int first = !s->replay;
    stele_event e;

    /* An event with a key, and its retry. */
    stele_event e1 = mk(STELE_KIND_EVENT, "ev-1", "acct-1", "t.a", "one");
    NEW_(s, "event ev-1", &e1, e1);
    DUP_(s, "event ev-1 again", &e1, s->L.e1);

    /* intent -> pending -> confirmed. */
    stele_event ic = mk(STELE_KIND_INTENT, "int-c", "acct-1", "pay", "pay 10");
    NEW_(s, "intent int-c", &ic, ic);
    if (first) {
        expect_status(log, "int-c", STELE_STATE_PENDING, s->L.ic, 0, 0);
        expect_pending(log, 0, 0, "int-c");
    }
    DUP_(s, "intent int-c again", &ic, s->L.ic);
    stele_event oc = mk_outcome("int-c", STELE_OUTCOME_CONFIRMED, 0, "ok");
    oc.stream = "acct-1", oc.stream_size = 6;
    NEW_(s, "outcome confirmed of int-c", &oc, oc);
    if (first) {
        expect_status(log, "int-c", STELE_STATE_CONFIRMED, s->L.ic, s->L.oc, 0);
        expect_pending(log, 0, 0, "");
    }
    DUP_(s, "the same outcome again", &oc, s->L.oc);
    e = oc, e.ref = s->L.ic;
    DUP_(s, "the same outcome with ref = the intent's LSN", &e, s->L.oc);
    e = mk_outcome("int-c", STELE_OUTCOME_FAILED, 0, "ok");
    e.stream = "acct-1", e.stream_size = 6;
    CONFLICT_(s, "the other outcome", &e, s->L.oc);
    e = mk_outcome("int-c", STELE_OUTCOME_CONFIRMED, 0, "other payload");
    e.stream = "acct-1", e.stream_size = 6;
    CONFLICT_(s, "the same outcome with another payload", &e, s->L.oc);
    e = oc, e.ref = s->L.e1;
    REFUSED_(s, "outcome with a wrong ref (resolved intent)", &e, STELE_ERR_INVALID);

    /* Refused outcomes and intents. */
    e = mk_outcome("nokey-x", STELE_OUTCOME_CONFIRMED, 0, "ok");
    REFUSED_(s, "outcome with no intent", &e, STELE_ERR_NOT_FOUND);
    e = mk_outcome("ev-1", STELE_OUTCOME_CONFIRMED, 0, "ok");
    REFUSED_(s, "outcome on an event's key", &e, STELE_ERR_INVALID);
    e = mk_outcome(NULL, STELE_OUTCOME_CONFIRMED, s->L.ic, "ok");
    REFUSED_(s, "outcome without a key", &e, STELE_ERR_INVALID);
    e = mk(STELE_KIND_INTENT, NULL, NULL, "pay", "no key");
    REFUSED_(s, "intent without a key", &e, STELE_ERR_INVALID);

    /* intent -> failed, after a refused wrong ref. */
    stele_event iff = mk(STELE_KIND_INTENT, "int-f", NULL, "pay", "pay 20");
    NEW_(s, "intent int-f", &iff, iff);
    e = mk_outcome("int-f", STELE_OUTCOME_FAILED, s->L.ic, "declined");
    REFUSED_(s, "outcome of int-f with the ref of another intent", &e, STELE_ERR_INVALID);
    e = mk_outcome("int-f", STELE_OUTCOME_FAILED, s->L.iff + 1000, "declined");
    REFUSED_(s, "outcome of int-f with a ref beyond the log", &e, STELE_ERR_INVALID);
    if (first)
        expect_status(log, "int-f", STELE_STATE_PENDING, s->L.iff, 0, 0);
    stele_event of = mk_outcome("int-f", STELE_OUTCOME_FAILED, 0, "declined");
    NEW_(s, "outcome failed of int-f", &of, of);
    DUP_(s, "outcome failed of int-f again", &of, s->L.of);
    e = mk_outcome("int-f", STELE_OUTCOME_CONFIRMED, 0, "declined");
    CONFLICT_(s, "int-f: confirmed after failed", &e, s->L.of);

    /* A pending intent that stays pending. */
    stele_event ip = mk(STELE_KIND_INTENT, "int-p", NULL, "pay", "pay 30");
    NEW_(s, "intent int-p", &ip, ip);

    /* Compensations. */
    stele_event c1 = mk_comp(s->L.e1, "undo one");
    NEW_(s, "compensation of ev-1", &c1, cmp1);
    if (first)
        expect_status(log, "ev-1", STELE_STATE_COMPENSATED, s->L.e1, 0, s->L.cmp1);
    DUP_(s, "the same compensation again", &c1, s->L.cmp1);
    e = mk_comp(s->L.e1, "undo differently");
    CONFLICT_(s, "another compensation of ev-1", &e, s->L.cmp1);
    e = mk_comp(s->L.e1, "undo one"), e.type = "undo.other", e.type_size = 10;
    CONFLICT_(s, "a compensation of ev-1 with another type", &e, s->L.cmp1);
    stele_event c2 = mk_comp(s->L.oc, "refund");
    NEW_(s, "compensation of int-c's confirmed outcome", &c2, cmp2);
    if (first)
        expect_status(log, "int-c", STELE_STATE_COMPENSATED, s->L.ic, s->L.oc, s->L.cmp2);
    DUP_(s, "compensation of the outcome again", &c2, s->L.cmp2);
    e = mk_comp(s->L.of, "undo a failure");
    REFUSED_(s, "compensation of a failed outcome", &e, STELE_ERR_INVALID);
    e = mk_comp(s->L.ic, "undo an intent");
    REFUSED_(s, "compensation of a resolved intent", &e, STELE_ERR_INVALID);
    e = mk_comp(s->L.ip, "undo a pending intent");
    REFUSED_(s, "compensation of a pending intent", &e, STELE_ERR_INVALID);
    e = mk_comp(s->L.cmp1, "undo the undo");
    REFUSED_(s, "compensation of a compensation", &e, STELE_ERR_INVALID);
    e = mk_comp(first ? last_lsn(log) + 1 : s->L.cmp3 + 1, "undo the future");
    REFUSED_(s, "compensation of the next LSN", &e, STELE_ERR_NOT_FOUND);
    e = mk_comp(UINT64_C(1) << 40, "undo far future");
    REFUSED_(s, "compensation of an LSN far beyond the log", &e, STELE_ERR_NOT_FOUND);
    e = mk_comp(s->L.e1, "undo one"), e.key = "comp-key", e.key_size = 8;
    REFUSED_(s, "compensation with a key", &e, STELE_ERR_INVALID);
    e = mk_comp(0, "undo nothing");
    REFUSED_(s, "compensation without ref", &e, STELE_ERR_INVALID);

    /* An event that nobody compensates, and a keyless one that is. */
    stele_event ev2 = mk(STELE_KIND_EVENT, "ev-2", NULL, "t.b", "two");
    NEW_(s, "event ev-2", &ev2, ev2);
    e = mk_outcome("ev-2", STELE_OUTCOME_FAILED, 0, "x");
    REFUSED_(s, "outcome on ev-2 (an event)", &e, STELE_ERR_INVALID);
    stele_event e3 = mk(STELE_KIND_EVENT, NULL, NULL, "t.c", "three");
    if (first)
        s->L.e3 = step(s, "keyless event", &e3, STELE_OK, STELE_DECISION_NEW, 0);
    stele_event c3 = mk_comp(s->L.e3, "undo three");
    NEW_(s, "compensation of a keyless event", &c3, cmp3);
    DUP_(s, "compensation of a keyless event again", &c3, s->L.cmp3);
}

static void scen_compare(const struct scen *a, const struct scen *b, const char *what)
{
    ck_assert_int_eq(a->n, b->n);
    for (int i = 0; i < a->n; i++)
        REQUIRE(a->codes[i] == b->codes[i] && a->ans[i].decision == b->ans[i].decision &&
                    a->ans[i].lsn == b->ans[i].lsn && a->ans[i].stream_version == b->ans[i].stream_version,
                "%s: answer %d differs: code %d/%d decision %d/%d lsn %llu/%llu stream_version %llu/%llu", what, i,
                a->codes[i], b->codes[i], a->ans[i].decision, b->ans[i].decision, (unsigned long long)a->ans[i].lsn,
                (unsigned long long)b->ans[i].lsn, (unsigned long long)a->ans[i].stream_version,
                (unsigned long long)b->ans[i].stream_version);
}

START_TEST(test_transitions)
{
    char *dir = tu_tmpdir("out-trans");
    stele_options o = opts_new(0);
    struct scen *first = calloc(1, sizeof *first), *live = calloc(1, sizeof *live);
    struct scen *ckpt = calloc(1, sizeof *ckpt), *rebuilt = calloc(1, sizeof *rebuilt);
    first->log = open_log(dir, &o);
    scenario(first);
    scen_final(first);

    /* Replayed on the live handle, from the checkpoint, and from a rebuild. */
    struct scen *runs[3] = {live, ckpt, rebuilt};
    for (int phase = 0; phase < 3; phase++) {
        struct scen *s = runs[phase];
        s->L = first->L;
        s->replay = 1;
        if (phase == 0) {
            s->log = first->log;
        } else {
            OK(stele_close(runs[phase - 1]->log));
            if (phase == 2)
                delete_index(dir);
            s->log = reopen_expect(dir, 0, phase == 2);
        }
        scenario(s);
        scen_final(s);
        if (phase)
            scen_compare(live, s, phase == 1 ? "checkpoint vs live" : "rebuild vs live");
    }
    OK(stele_close(rebuilt->log));
    stele_verify_report rep;
    OK(stele_verify(dir, NULL, NULL, &rep));
    ck_assert_uint_eq(rep.records, first->L.cmp3);
    free(first);
    free(live);
    free(ckpt);
    free(rebuilt);
    tu_rmrf(dir);
    free(dir);
    messages_check();
}
END_TEST

/* An outcome may resolve an intent of the same call (found by key); a
 * compensation may not reverse a record of the same call, which is not
 * acknowledged yet (NOT_FOUND, the whole call refused). */
START_TEST(test_transitions_in_one_batch)
{
    char *dir = tu_tmpdir("out-trans1");
    stele_options o = opts_new(0);
    stele_log *log = open_log(dir, &o);
    stele_event b[3] = {mk(STELE_KIND_INTENT, "b-i", NULL, "pay", "1"),
                        mk_outcome("b-i", STELE_OUTCOME_CONFIRMED, 0, "ok"), mk(STELE_KIND_EVENT, "b-e", NULL, "t", "2")};
    stele_receipt rc[4];
    OK(stele_append_batch(log, b, 3, rc));
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(rc[i].decision, STELE_DECISION_NEW);
        ck_assert_uint_eq(rc[i].lsn, (uint64_t)i + 1);
    }
    expect_status(log, "b-i", STELE_STATE_CONFIRMED, 1, 2, 0);
    stele_event c[2] = {mk(STELE_KIND_EVENT, "b-f", NULL, "t", "3"), mk_comp(4, "undo")};
    EXPECT(stele_append_batch(log, c, 2, rc), STELE_ERR_NOT_FOUND);
    for (int i = 0; i < 2; i++)
        REQUIRE(rc[i].decision == STELE_DECISION_NONE && rc[i].code != STELE_OK,
                "refused call: receipt %d decision %d code %d", i, rc[i].decision, rc[i].code);
    ck_assert_uint_eq(last_lsn(log), 3);
    expect_no_key(log, "b-f");
    /* An outcome and a conflicting one in the same call: the second conflicts. */
    stele_event b2[3] = {mk(STELE_KIND_INTENT, "b-j", NULL, "pay", "1"), mk_outcome("b-j", STELE_OUTCOME_FAILED, 0, "no"),
                         mk_outcome("b-j", STELE_OUTCOME_CONFIRMED, 0, "yes")};
    EXPECT(stele_append_batch(log, b2, 3, rc), STELE_ERR_CONFLICT);
    ck_assert_int_eq(rc[0].decision, STELE_DECISION_NEW);
    ck_assert_int_eq(rc[1].decision, STELE_DECISION_NEW);
    ck_assert_int_eq(rc[2].decision, STELE_DECISION_CONFLICT);
    ck_assert_uint_eq(rc[2].lsn, rc[1].lsn);
    ck_assert_uint_eq(last_lsn(log), 5);
    expect_status(log, "b-j", STELE_STATE_FAILED, 4, 5, 0);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
    messages_check();
}
END_TEST

/* The queries' argument checks: a key or stream is 1..255 bytes (stele.h:
 * INVALID otherwise). */
START_TEST(test_query_arguments)
{
    char *dir = tu_tmpdir("out-args");
    stele_options o = opts_new(0);
    stele_log *log = open_log(dir, &o);
    stele_event e = mk(STELE_KIND_EVENT, "k", "s", "t", "p");
    expect_append(log, &e, STELE_OK, STELE_DECISION_NEW, 1, "one record");
    static const char big[256] = {'x'};
    stele_status st;
    stele_record *r = NULL;
    uint64_t v;
    stele_iter *it = NULL;
    EXPECT(stele_status_get(log, NULL, 0, &st), STELE_ERR_INVALID);
    EXPECT(stele_status_get(log, "k", 0, &st), STELE_ERR_INVALID);
    EXPECT(stele_get_key(log, NULL, 0, &r), STELE_ERR_INVALID);
    EXPECT(stele_stream_version(log, NULL, 3, &v, NULL), STELE_ERR_INVALID);
    EXPECT(stele_status_get(log, big, 255, &st), STELE_ERR_NOT_FOUND);
    EXPECT(stele_stream_version(log, big, 255, &v, NULL), STELE_OK);
    ck_assert_uint_eq(v, 0);
    /* Longer than 255 bytes: stele.h documents INVALID for these queries. */
    EXPECT(stele_status_get(log, big, sizeof big, &st), STELE_ERR_INVALID);
    EXPECT(stele_get_key(log, big, sizeof big, &r), STELE_ERR_INVALID);
    EXPECT(stele_stream_version(log, big, sizeof big, &v, NULL), STELE_ERR_INVALID);
    int code = stele_iter_open_stream(log, big, sizeof big, 0, &it);
    REQUIRE(code == STELE_ERR_INVALID || code == STELE_ERR_TOO_LARGE, "stream iterator, 256-byte name: %s",
            stele_strerror(code));
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
    messages_check();
}
END_TEST

/* -------------------------------------------------------- 4. pending */

#define PEND_N 10

static void pending_checks(stele_log *log, uint64_t t0, const uint64_t *lsn)
{
    /* p1 (confirmed) and p3 (failed) are resolved; the rest pending. */
    expect_pending(log, 0, 0, "p0,p2,p4,p5,p6,p7,p8,p9");
    expect_pending(log, t0 + 4000, 0, "p0,p2,p4"); /* at or before */
    expect_pending(log, t0 + 3999, 0, "p0,p2");
    expect_pending(log, t0 + 4000, 2, "p0,p2");
    expect_pending(log, 0, 3, "p0,p2,p4");
    expect_pending(log, t0 - 1, 0, "");
    expect_pending(log, UINT64_MAX, 1, "p0");
    stele_pending_item *items = NULL;
    size_t n = 0;
    OK(stele_pending(log, 0, 0, &items, &n));
    ck_assert_uint_eq(n, 8);
    static const int which[8] = {0, 2, 4, 5, 6, 7, 8, 9};
    for (size_t i = 0; i < n; i++) {
        int p = which[i];
        REQUIRE(items[i].lsn == lsn[p] && items[i].recorded_at_ns == t0 + (uint64_t)p * 1000,
                "pending item %zu: LSN %llu recorded at %llu; want p%d at LSN %llu, %llu", i,
                (unsigned long long)items[i].lsn, (unsigned long long)items[i].recorded_at_ns, p,
                (unsigned long long)lsn[p], (unsigned long long)(t0 + (uint64_t)p * 1000));
    }
    stele_pending_free(items);
    stele_pending_free(NULL);
    ck_assert_uint_eq(stats_of(log).index_pending, 8);
}

START_TEST(test_pending)
{
    char *dir = tu_tmpdir("out-pending");
    stele_options o = opts_new(0);
    stele_log *log = open_log(dir, &o);
    struct tclock clk;
    uint64_t t0 = base_time();
    atomic_store(&clk.ns, t0);
    log_set_clock(log, tclock_read, &clk);
    uint64_t lsn[PEND_N];
    char key[8], pay[16];
    /* Intents p9 ... p0 are appended newest time last, but with an event
     * between each, at times t0 + i * 1000. */
    for (int i = 0; i < PEND_N; i++) {
        atomic_store(&clk.ns, t0 + (uint64_t)i * 1000);
        snprintf(key, sizeof key, "p%d", i);
        snprintf(pay, sizeof pay, "intent %d", i);
        stele_event in = mk(STELE_KIND_INTENT, key, NULL, "pay", pay);
        lsn[i] = expect_append(log, &in, STELE_OK, STELE_DECISION_NEW, 0, key).lsn;
        stele_event ev = mk(STELE_KIND_EVENT, NULL, NULL, "noise", pay);
        expect_append(log, &ev, STELE_OK, STELE_DECISION_NEW, 0, "noise");
        stele_record *r;
        OK(stele_get(log, lsn[i], &r));
        REQUIRE(r->recorded_at_ns == t0 + (uint64_t)i * 1000, "intent %d recorded at %llu, the clock said %llu", i,
                (unsigned long long)r->recorded_at_ns, (unsigned long long)(t0 + (uint64_t)i * 1000));
        stele_record_free(r);
    }
    expect_pending(log, 0, 0, "p0,p1,p2,p3,p4,p5,p6,p7,p8,p9");
    atomic_store(&clk.ns, t0 + 20000);
    stele_event out = mk_outcome("p1", STELE_OUTCOME_CONFIRMED, 0, "ok");
    expect_append(log, &out, STELE_OK, STELE_DECISION_NEW, 0, "resolve p1");
    out = mk_outcome("p3", STELE_OUTCOME_FAILED, lsn[3], "no");
    expect_append(log, &out, STELE_OK, STELE_DECISION_NEW, 0, "resolve p3");
    pending_checks(log, t0, lsn);
    /* A refused outcome does not resolve anything. */
    out = mk_outcome("p5", STELE_OUTCOME_FAILED, lsn[4], "no");
    expect_append(log, &out, STELE_ERR_INVALID, STELE_DECISION_NONE, 0, "outcome of p5 with p4's ref");
    pending_checks(log, t0, lsn);
    for (int phase = 0; phase < 2; phase++) {
        OK(stele_close(log));
        if (phase)
            delete_index(dir);
        log = reopen_expect(dir, 0, phase);
        pending_checks(log, t0, lsn);
    }
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
    messages_check();
}
END_TEST

/* ------------------------------------------------- 5. window expiry */

#define WINDOW_NS (10 * NS_PER_S)

/* What the window test leaves, checked live, from the checkpoint and rebuilt. */
struct win_state {
    uint64_t t_end;
    uint64_t k1_new;   /* the second record of key k1 */
    uint64_t k1_first;
    uint64_t p_intent;
    uint64_t q_intent, q_outcome;
    uint64_t ev_c, comp_c;
    uint64_t edge;
};

static void window_checks(stele_log *log, const struct win_state *w)
{
    /* k1 holds its second record, a duplicate of which is answered with it. */
    expect_status(log, "k1", STELE_STATE_EVENT, w->k1_new, 0, 0);
    stele_event k1 = mk(STELE_KIND_EVENT, "k1", NULL, "t", "same");
    expect_append(log, &k1, STELE_OK, STELE_DECISION_DUPLICATE, w->k1_new, "k1 after the expiry");
    /* p: pending for 5 windows, never forgotten. */
    expect_status(log, "p", STELE_STATE_PENDING, w->p_intent, 0, 0);
    stele_event p = mk(STELE_KIND_INTENT, "p", NULL, "pay", "p");
    expect_append(log, &p, STELE_OK, STELE_DECISION_DUPLICATE, w->p_intent, "old pending intent");
    expect_pending(log, 0, 0, "p");
    /* q: resolved 2 windows ago: forgotten with its outcome. */
    expect_no_key(log, "q");
    stele_event qo = mk_outcome("q", STELE_OUTCOME_CONFIRMED, 0, "ok");
    expect_append(log, &qo, STELE_ERR_NOT_FOUND, STELE_DECISION_NONE, 0, "outcome of a forgotten intent");
    /* c: the key is forgotten, its compensation is not. */
    expect_no_key(log, "c");
    stele_event comp = mk_comp(w->ev_c, "undo c");
    expect_append(log, &comp, STELE_OK, STELE_DECISION_DUPLICATE, w->comp_c, "compensation after the window");
    comp = mk_comp(w->ev_c, "undo c otherwise");
    expect_append(log, &comp, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, w->comp_c,
                  "another compensation after the window");
    /* A key recorded window - 1 ns ago is still remembered. */
    expect_status(log, "edge", STELE_STATE_EVENT, w->edge, 0, 0);
    stele_event edge = mk(STELE_KIND_EVENT, "edge", NULL, "t", "edge");
    expect_append(log, &edge, STELE_OK, STELE_DECISION_DUPLICATE, w->edge, "edge at window - 1 ns");
}

START_TEST(test_window)
{
    char *dir = tu_tmpdir("out-window");
    stele_options o = opts_new(WINDOW_NS);
    stele_log *log = open_log(dir, &o);
    ck_assert_uint_eq(stats_of(log).idem_window_ns, WINDOW_NS);
    struct tclock clk;
    uint64_t t0 = base_time();
    atomic_store(&clk.ns, t0);
    log_set_clock(log, tclock_read, &clk);
    struct win_state w;
    memset(&w, 0, sizeof w);

    stele_event k1 = mk(STELE_KIND_EVENT, "k1", NULL, "t", "same");
    w.k1_first = expect_append(log, &k1, STELE_OK, STELE_DECISION_NEW, 0, "k1").lsn;
    stele_event p = mk(STELE_KIND_INTENT, "p", NULL, "pay", "p");
    w.p_intent = expect_append(log, &p, STELE_OK, STELE_DECISION_NEW, 0, "intent p").lsn;
    stele_event q = mk(STELE_KIND_INTENT, "q", NULL, "pay", "q");
    w.q_intent = expect_append(log, &q, STELE_OK, STELE_DECISION_NEW, 0, "intent q").lsn;
    stele_event c = mk(STELE_KIND_EVENT, "c", NULL, "t", "c");
    w.ev_c = expect_append(log, &c, STELE_OK, STELE_DECISION_NEW, 0, "event c").lsn;
    stele_event comp = mk_comp(w.ev_c, "undo c");
    w.comp_c = expect_append(log, &comp, STELE_OK, STELE_DECISION_NEW, 0, "compensation of c").lsn;

    /* 1 ns before the window ends: still a duplicate. */
    atomic_store(&clk.ns, t0 + WINDOW_NS - 1);
    expect_append(log, &k1, STELE_OK, STELE_DECISION_DUPLICATE, w.k1_first, "k1 at window - 1 ns");
    expect_status(log, "k1", STELE_STATE_EVENT, w.k1_first, 0, 0);
    stele_event k1x = mk(STELE_KIND_EVENT, "k1", NULL, "t", "other");
    expect_append(log, &k1x, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, w.k1_first, "k1 conflict at window - 1 ns");
    /* q resolved now: its window restarts from the outcome. */
    stele_event qo = mk_outcome("q", STELE_OUTCOME_CONFIRMED, 0, "ok");
    w.q_outcome = expect_append(log, &qo, STELE_OK, STELE_DECISION_NEW, 0, "outcome of q").lsn;

    /* After the window: new again, a second record with the same key. */
    atomic_store(&clk.ns, t0 + WINDOW_NS + 1);
    w.k1_new = expect_append(log, &k1, STELE_OK, STELE_DECISION_NEW, 0, "k1 after the window").lsn;
    ck_assert_uint_gt(w.k1_new, w.k1_first);
    expect_status(log, "k1", STELE_STATE_EVENT, w.k1_new, 0, 0);
    expect_status(log, "q", STELE_STATE_CONFIRMED, w.q_intent, w.q_outcome, 0); /* resolved 2 ns ago */
    expect_no_key(log, "c");

    /* Much later: q's outcome is out of the window too; p never expires. */
    w.t_end = t0 + 5 * WINDOW_NS;
    atomic_store(&clk.ns, w.t_end + 1 - (WINDOW_NS - 1));
    stele_event edge = mk(STELE_KIND_EVENT, "edge", NULL, "t", "edge");
    w.edge = expect_append(log, &edge, STELE_OK, STELE_DECISION_NEW, 0, "edge").lsn;
    atomic_store(&clk.ns, w.t_end);
    stele_event tick = mk(STELE_KIND_EVENT, NULL, NULL, "tick", NULL);
    expect_append(log, &tick, STELE_OK, STELE_DECISION_NEW, 0, "a record at t_end");
    /* k1's second record (t0 + W + 1) is out of the window by now: make it
     * fresh again so that the checks below see a remembered event key. */
    atomic_store(&clk.ns, w.t_end + 1);
    w.k1_new = expect_append(log, &k1, STELE_OK, STELE_DECISION_NEW, 0, "k1, a third time").lsn;
    window_checks(log, &w);
    /* ... also after reopens: the clock is injected again before any append. */
    for (int phase = 0; phase < 2; phase++) {
        OK(stele_close(log));
        if (phase)
            delete_index(dir);
        stele_options ro = opts_new(WINDOW_NS);
        ro.create = 0;
        log = open_log(dir, &ro);
        log_set_clock(log, tclock_read, &clk);
        stele_stats s = stats_of(log);
        REQUIRE(s.index_rebuilt == phase, "window: reopen %d: index_rebuilt %d (%s)", phase, s.index_rebuilt,
                s.index_note);
        window_checks(log, &w);
    }
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
    messages_check();
}
END_TEST

/* Keys coming faster than one round's fixed share of expiry could forget
 * them: the expiry sweep (SPEC.md §15.2, a step per round sized by the
 * round) keeps the index at about a window's worth of keys, and every key
 * older than the window is forgotten. 256 keys per call, 64 calls per
 * window, 40 windows. */
START_TEST(test_window_steady)
{
    enum { PER_CALL = 256, CALLS_PER_WINDOW = 64, WINDOWS = 40 };
    const uint64_t window = NS_PER_S;
    char *dir = tu_tmpdir("out-window-steady");
    stele_options o = opts_new(window);
    /* One batch per call, no sync until close: interval mode with an interval
     * longer than the test (none mode acknowledges on encoding, and its
     * background writer groups calls into batches, SPEC.md §11.1). */
    o.durability = STELE_DURABILITY_INTERVAL;
    o.sync_interval_ms = 60000;
    stele_log *log = open_log(dir, &o);
    struct tclock clk;
    uint64_t t0 = base_time();
    atomic_store(&clk.ns, t0);
    log_set_clock(log, tclock_read, &clk);
    static char keys[PER_CALL][32];
    static stele_event ev[PER_CALL];
    static stele_receipt rc[PER_CALL];
    uint64_t appended = 0, most = 0;
    for (unsigned call = 0; call < CALLS_PER_WINDOW * WINDOWS; call++) {
        atomic_store(&clk.ns, t0 + (uint64_t)call * (window / CALLS_PER_WINDOW));
        for (unsigned i = 0; i < PER_CALL; i++) {
            snprintf(keys[i], sizeof keys[i], "steady-%07u", call * PER_CALL + i);
            ev[i] = mk(STELE_KIND_EVENT, keys[i], NULL, "t", "x");
        }
        int code = stele_append_batch(log, ev, PER_CALL, rc);
        REQUIRE(code == STELE_OK, "call %u: %s: %s", call, stele_strerror(code), stele_errmsg());
        appended += PER_CALL;
        stele_stats st = stats_of(log);
        if (st.index_keys > most)
            most = st.index_keys;
        ck_assert_uint_eq(st.index_keys + st.index_expired, appended);
    }
    /* A window holds 64 calls of 256 keys; the sweep, due every 1/16 of
     * the window, may lag by a few calls. */
    const uint64_t in_window = (uint64_t)CALLS_PER_WINDOW * PER_CALL;
    REQUIRE(most <= in_window + in_window / 4, "the index held up to %llu keys; a window holds %llu",
            (unsigned long long)most, (unsigned long long)in_window);
    stele_stats st = stats_of(log);
    REQUIRE(st.index_expired >= appended - in_window - in_window / 4, "%llu of %llu keys forgotten",
            (unsigned long long)st.index_expired, (unsigned long long)appended);
    /* The oldest keys are new again; the last call's are duplicates. */
    stele_event first = mk(STELE_KIND_EVENT, "steady-0000000", NULL, "t", "x");
    expect_append(log, &first, STELE_OK, STELE_DECISION_NEW, 0, "the first key, many windows later");
    stele_event last = ev[PER_CALL - 1];
    expect_append(log, &last, STELE_OK, STELE_DECISION_DUPLICATE, rc[PER_CALL - 1].lsn, "the last key");
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
    messages_check();
}
END_TEST

START_TEST(test_window_forever)
{
    char *dir = tu_tmpdir("out-forever");
    stele_options o = opts_new(0);
    stele_log *log = open_log(dir, &o);
    ck_assert_uint_eq(stats_of(log).idem_window_ns, 0);
    struct tclock clk;
    uint64_t t0 = base_time();
    atomic_store(&clk.ns, t0);
    log_set_clock(log, tclock_read, &clk);
    stele_event k = mk(STELE_KIND_EVENT, "forever", NULL, "t", "x");
    uint64_t l = expect_append(log, &k, STELE_OK, STELE_DECISION_NEW, 0, "forever").lsn;
    atomic_store(&clk.ns, t0 + UINT64_C(100) * 365 * 86400 * NS_PER_S); /* a century later */
    expect_append(log, &k, STELE_OK, STELE_DECISION_DUPLICATE, l, "a century later");
    ck_assert_uint_eq(stats_of(log).index_expired, 0);
    OK(stele_close(log));
    log = reopen_expect(dir, 0, 0);
    log_set_clock(log, tclock_read, &clk);
    expect_append(log, &k, STELE_OK, STELE_DECISION_DUPLICATE, l, "a century later, reopened");
    expect_status(log, "forever", STELE_STATE_EVENT, l, 0, 0);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
    messages_check();
}
END_TEST

/* -------------------------------------------------------- 6. streams */

START_TEST(test_stream_versions)
{
    char *dir = tu_tmpdir("out-stream");
    stele_options o = opts_new(0);
    stele_log *log = open_log(dir, &o);
    stele_event e = mk(STELE_KIND_EVENT, NULL, "acct", "t", "1");
    e.has_expect_version = 1;
    e.expect_version = 0;
    stele_receipt rc = expect_append(log, &e, STELE_OK, STELE_DECISION_NEW, 1, "expect 0 on a new stream");
    ck_assert_uint_eq(rc.stream_version, 1);
    rc = expect_append(log, &e, STELE_ERR_STREAM_VERSION, STELE_DECISION_NONE, 0, "expect 0 on an existing stream");
    ck_assert_uint_eq(rc.stream_version, 1);
    e.has_expect_version = 0;
    ck_assert_uint_eq(expect_append(log, &e, STELE_OK, STELE_DECISION_NEW, 2, "no check").stream_version, 2);
    e.has_expect_version = 1;
    e.expect_version = 2;
    ck_assert_uint_eq(expect_append(log, &e, STELE_OK, STELE_DECISION_NEW, 3, "expect 2").stream_version, 3);
    e.expect_version = 2;
    rc = expect_append(log, &e, STELE_ERR_STREAM_VERSION, STELE_DECISION_NONE, 0, "expect 2 at 3");
    ck_assert_uint_eq(rc.stream_version, 3);
    e.expect_version = 9;
    rc = expect_append(log, &e, STELE_ERR_STREAM_VERSION, STELE_DECISION_NONE, 0, "expect 9 at 3");
    ck_assert_uint_eq(rc.stream_version, 3);
    stele_event other = mk(STELE_KIND_EVENT, NULL, "other", "t", "1");
    other.has_expect_version = 1;
    other.expect_version = 1;
    rc = expect_append(log, &other, STELE_ERR_STREAM_VERSION, STELE_DECISION_NONE, 0, "expect 1 on a new stream");
    ck_assert_uint_eq(rc.stream_version, 0);
    uint64_t lsn = 0;
    ck_assert_uint_eq(stream_ver(log, "acct", &lsn), 3);
    ck_assert_uint_eq(lsn, 3);
    ck_assert_uint_eq(stream_ver(log, "other", NULL), 0);
    /* In a batch the versions count up inside the call, and a wrong one fails it. */
    stele_event b[3] = {mk(STELE_KIND_EVENT, NULL, "acct", "t", "a"), mk(STELE_KIND_EVENT, NULL, "acct", "t", "b"),
                        mk(STELE_KIND_EVENT, NULL, "acct", "t", "c")};
    b[0].has_expect_version = 1, b[0].expect_version = 3;
    b[1].has_expect_version = 1, b[1].expect_version = 4;
    stele_receipt r3[3];
    OK(stele_append_batch(log, b, 3, r3));
    ck_assert_uint_eq(r3[2].stream_version, 6);
    ck_assert_uint_eq(stats_of(log).index_streams, 1);
    OK(stele_close(log));
    log = reopen_expect(dir, 0, 0);
    ck_assert_uint_eq(stream_ver(log, "acct", &lsn), 6);
    ck_assert_uint_eq(lsn, 6);
    e.expect_version = 6;
    ck_assert_uint_eq(expect_append(log, &e, STELE_OK, STELE_DECISION_NEW, 7, "expect 6 reopened").stream_version, 7);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
    messages_check();
}
END_TEST

#define VRACE_THREADS 8
#define VRACE_TARGET 300

struct vrace {
    stele_log *log;
    _Atomic uint32_t wins[VRACE_TARGET + VRACE_THREADS + 2];
    _Atomic uint64_t attempts;
    struct failure fail;
};

struct vrace_arg {
    struct vrace *v;
    int id;
};

static void *vrace_thread(void *p)
{
    struct vrace_arg *a = p;
    struct vrace *v = a->v;
    char pay[32];
    for (int i = 0;; i++) {
        uint64_t ver = 0;
        int code = stele_stream_version(v->log, "hot", 3, &ver, NULL);
        if (code != STELE_OK) {
            fail_note(&v->fail, "stream_version: %s", stele_strerror(code));
            return NULL;
        }
        if (ver >= VRACE_TARGET)
            return NULL;
        snprintf(pay, sizeof pay, "t%d-%d", a->id, i);
        stele_event e = mk(STELE_KIND_EVENT, NULL, "hot", "t", pay);
        e.has_expect_version = 1;
        e.expect_version = ver;
        stele_receipt rc;
        memset(&rc, 0, sizeof rc);
        code = stele_append(v->log, &e, &rc);
        atomic_fetch_add(&v->attempts, 1);
        if (code == STELE_OK) {
            if (rc.decision != STELE_DECISION_NEW || rc.stream_version != ver + 1)
                fail_note(&v->fail, "expect %llu: decision %d, version %llu", (unsigned long long)ver, rc.decision,
                          (unsigned long long)rc.stream_version);
            else
                atomic_fetch_add(&v->wins[ver + 1], 1);
        } else if (code == STELE_ERR_STREAM_VERSION) {
            if (rc.stream_version <= ver || rc.decision != STELE_DECISION_NONE)
                fail_note(&v->fail, "expect %llu refused with current version %llu, decision %d",
                          (unsigned long long)ver, (unsigned long long)rc.stream_version, rc.decision);
        } else {
            fail_note(&v->fail, "append expect %llu: %s", (unsigned long long)ver, stele_strerror(code));
            return NULL;
        }
    }
}

/* The records of stream, through a stream iterator from from_version,
 * must be exactly want[from_version - 1 .. n - 1] (LSNs), versions dense. */
static void expect_stream_iter(stele_log *log, const char *stream, uint64_t from_version, const uint64_t *want,
                               uint64_t n)
{
    stele_iter *it = NULL;
    OK(stele_iter_open_stream(log, stream, strlen(stream), from_version, &it));
    uint64_t start = from_version ? from_version : 1, v = start;
    const stele_record *r;
    for (;; v++) {
        OK(stele_iter_next(it, 0, &r));
        if (!r)
            break;
        REQUIRE(v <= n, "stream %s from %llu: a record beyond version %llu (LSN %llu)", stream,
                (unsigned long long)from_version, (unsigned long long)n, (unsigned long long)r->lsn);
        REQUIRE(r->lsn == want[v - 1] && r->stream_version == v && r->stream_size == strlen(stream) &&
                    memcmp(r->stream, stream, r->stream_size) == 0,
                "stream %s from %llu: version %llu is LSN %llu (stream version %llu), want LSN %llu", stream,
                (unsigned long long)from_version, (unsigned long long)v, (unsigned long long)r->lsn,
                (unsigned long long)r->stream_version, (unsigned long long)want[v - 1]);
    }
    REQUIRE(v - start == (n >= start ? n - start + 1 : 0), "stream %s from %llu: ended at version %llu of %llu", stream, (unsigned long long)from_version,
            (unsigned long long)(v - 1), (unsigned long long)n);
    stele_iter_close(it);
}

START_TEST(test_stream_race)
{
    char *dir = tu_tmpdir("out-vrace");
    stele_options o = opts_new(0);
    struct vrace *v = calloc(1, sizeof *v);
    pthread_mutex_init(&v->fail.lock, NULL);
    v->log = open_log(dir, &o);
    pthread_t th[VRACE_THREADS];
    struct vrace_arg args[VRACE_THREADS];
    for (int i = 0; i < VRACE_THREADS; i++) {
        args[i] = (struct vrace_arg){v, i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, vrace_thread, &args[i]), 0);
    }
    for (int i = 0; i < VRACE_THREADS; i++)
        pthread_join(th[i], NULL);
    fail_check(&v->fail);
    uint64_t n = stream_ver(v->log, "hot", NULL);
    ck_assert_uint_ge(n, VRACE_TARGET);
    ck_assert_uint_le(n, VRACE_TARGET + VRACE_THREADS);
    for (uint64_t ver = 1; ver <= n; ver++)
        REQUIRE(atomic_load(&v->wins[ver]) == 1, "version %llu was won %u times", (unsigned long long)ver,
                atomic_load(&v->wins[ver]));
    ck_assert_uint_eq(last_lsn(v->log), n);
    uint64_t *want = malloc(n * sizeof *want);
    for (uint64_t i = 0; i < n; i++)
        want[i] = i + 1; /* the only stream of the log */
    expect_stream_iter(v->log, "hot", 0, want, n);
    fprintf(stderr, "stream race: %llu versions, %llu attempts\n", (unsigned long long)n,
            (unsigned long long)atomic_load(&v->attempts));
    OK(stele_close(v->log));
    free(want);
    pthread_mutex_destroy(&v->fail.lock);
    free(v);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

#define ITER_RECORDS 90

static void stream_iter_checks(stele_log *log, uint64_t (*lsns)[ITER_RECORDS], const uint64_t *count)
{
    static const char *names[3] = {"sa", "sb", "sc"};
    for (int s = 0; s < 3; s++) {
        uint64_t n = count[s], last = 0;
        ck_assert_uint_eq(stream_ver(log, names[s], &last), n);
        ck_assert_uint_eq(last, lsns[s][n - 1]);
        uint64_t froms[] = {0, 1, 2, n / 2, n - 1, n, n + 1, n + 50};
        for (size_t f = 0; f < sizeof froms / sizeof froms[0]; f++)
            expect_stream_iter(log, names[s], froms[f], lsns[s], n);
    }
    /* A stream that does not exist: nothing to read. */
    stele_iter *it = NULL;
    int code = stele_iter_open_stream(log, "nope", 4, 0, &it);
    REQUIRE(code == STELE_OK || code == STELE_ERR_NOT_FOUND, "stream iterator on an unknown stream: %s",
            stele_strerror(code));
    if (code == STELE_OK) {
        const stele_record *r;
        OK(stele_iter_next(it, 0, &r));
        REQUIRE(r == NULL, "unknown stream: a record (LSN %llu)", (unsigned long long)r->lsn);
        stele_iter_close(it);
    }
}

START_TEST(test_stream_iterators)
{
    char *dir = tu_tmpdir("out-siter");
    stele_options o = opts_new(0);
    o.segment_size = 64 * 1024; /* a few segments */
    o.payload_size_max = 4096;
    stele_log *log = open_log(dir, &o);
    static const char *names[3] = {"sa", "sb", "sc"};
    static uint64_t lsns[3][ITER_RECORDS];
    uint64_t count[3] = {0, 0, 0};
    static char pay[2048];
    memset(pay, 'x', sizeof pay - 1);
    for (int i = 0; i < ITER_RECORDS; i++) {
        int s = (i * 7 + i / 5) % 4; /* 3 = no stream */
        stele_event e = mk(STELE_KIND_EVENT, NULL, s < 3 ? names[s] : NULL, "t", pay);
        e.payload_size = 1000 + (size_t)i * 10;
        stele_receipt rc = expect_append(log, &e, STELE_OK, STELE_DECISION_NEW, 0, "interleaved");
        if (s < 3) {
            lsns[s][count[s]++] = rc.lsn;
            ck_assert_uint_eq(rc.stream_version, count[s]);
        } else {
            ck_assert_uint_eq(rc.stream_version, 0);
        }
    }
    ck_assert_uint_gt(stats_of(log).segment_count, 1);
    stream_iter_checks(log, lsns, count);
    for (int phase = 0; phase < 2; phase++) {
        OK(stele_close(log));
        if (phase)
            delete_index(dir);
        log = reopen_expect(dir, 0, phase);
        stream_iter_checks(log, lsns, count);
    }
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* --------------------------------------------------- 7. collisions */

static uint64_t constant_hash(const void *key, size_t key_size)
{
    (void)key;
    (void)key_size;
    return 42;
}

START_TEST(test_forced_collisions)
{
    char *dir = tu_tmpdir("out-collide");
    stele_options o = opts_new(0);
    stele_log *log = open_log(dir, &o);
    REQUIRE(log->idx != NULL, "the log has no index");
    idx_set_hash(log->idx, constant_hash);
    /* Every key has the same hash: only a full compare tells them apart. */
    char key[16], pay[16];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "col-%d", i);
        stele_event e = mk(STELE_KIND_EVENT, key, NULL, "t", "same payload"); /* equal fingerprints too */
        expect_append(log, &e, STELE_OK, STELE_DECISION_NEW, (uint64_t)i + 1, key);
    }
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "col-%d", i);
        stele_event e = mk(STELE_KIND_EVENT, key, NULL, "t", "same payload");
        expect_append(log, &e, STELE_OK, STELE_DECISION_DUPLICATE, (uint64_t)i + 1, key);
        snprintf(pay, sizeof pay, "other %d", i);
        e.payload = pay, e.payload_size = strlen(pay);
        expect_append(log, &e, STELE_ERR_CONFLICT, STELE_DECISION_CONFLICT, (uint64_t)i + 1, key);
        expect_status(log, key, STELE_STATE_EVENT, (uint64_t)i + 1, 0, 0);
    }
    /* Intents and outcomes under collisions. */
    stele_event in = mk(STELE_KIND_INTENT, "col-int", NULL, "pay", "same payload");
    uint64_t li = expect_append(log, &in, STELE_OK, STELE_DECISION_NEW, 51, "intent").lsn;
    stele_event out = mk_outcome("col-int", STELE_OUTCOME_CONFIRMED, 0, "ok");
    expect_append(log, &out, STELE_OK, STELE_DECISION_NEW, 52, "outcome");
    out = mk_outcome("col-nope", STELE_OUTCOME_CONFIRMED, 0, "ok");
    expect_append(log, &out, STELE_ERR_NOT_FOUND, STELE_DECISION_NONE, 0, "outcome of a colliding unknown key");
    expect_status(log, "col-int", STELE_STATE_CONFIRMED, li, 52, 0);
    expect_no_key(log, "col-nope");
    /* Streams under collisions. */
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "strm-%d", i % 4);
        stele_event e = mk(STELE_KIND_EVENT, NULL, key, "t", "s");
        ck_assert_uint_eq(expect_append(log, &e, STELE_OK, STELE_DECISION_NEW, 0, key).stream_version,
                          (uint64_t)i / 4 + 1);
    }
    ck_assert_uint_eq(stats_of(log).index_keys, 51);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
    messages_check();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("outcomes");
    TCase *tc = tcase_create("races");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_race_single_appends);
    tcase_add_test(tc, test_race_batches_and_async);
    tcase_add_test(tc, test_stream_race);
    suite_add_tcase(s, tc);
    tc = tcase_create("rules");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_conflicts);
    tcase_add_test(tc, test_transitions);
    tcase_add_test(tc, test_transitions_in_one_batch);
    tcase_add_test(tc, test_query_arguments);
    tcase_add_test(tc, test_pending);
    tcase_add_test(tc, test_window);
    tcase_add_test(tc, test_window_steady);
    tcase_add_test(tc, test_window_forever);
    tcase_add_test(tc, test_stream_versions);
    tcase_add_test(tc, test_stream_iterators);
    tcase_add_test(tc, test_forced_collisions);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

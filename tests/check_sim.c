/*
 * check_sim.c - crash-state exploration on simulated storage (RELIABILITY §2
 * goals G1 and G2; invariants I0-I7; scenarios S1-S8).
 *
 * How: a workload runs through the simulated-storage backend (engine/io.h,
 * io_sim.c: the POSIX backend over a scratch directory in /dev/shm, plus a
 * model of what a power loss would leave). A workload is a seeded list of
 * calls against a log of 64 KiB segments (payloads up to 16 KiB, so segments
 * roll every few calls): single appends, append_batch calls of 2-5 records,
 * retries of earlier records (same key, same payload), same key with another
 * payload (also inside one call), stream appends with the right and a wrong
 * expect_version. Workloads rotate through sync mode, `none` mode (a
 * stele_sync every fourth call), zstd compression, and async mode (waves of
 * up to 12 stele_append_async calls in flight, so the pipelined writer has
 * several batches written and not yet synced). What each call returned (ok,
 * failed, outcome unknown) is recorded.
 *
 * A clean run counts the I/O steps (every mutating call of the seam; a write
 * and its sync are two). Then for N = 1, 2, ... every step, the workload runs
 * again and the simulator "loses power" right after step N: every later
 * mutating call fails, so the engine fences and the remaining calls fail. From
 * that frozen run, crash states are written out: unsynced data dropped, kept,
 * kept for a random subset of 512-byte sectors or 4 KiB blocks (S4), or the
 * last write torn after 1, 3, or a 512- or 4096-aligned number of bytes with
 * zeros, garbage or the old bytes after the tear (S3); each also with the
 * directory changes since the last directory sync lost or partly kept (S5,
 * S6). Identical states of one crash point are checked once. Each state is
 * reopened by a fresh writer (through another simulator, so its acks are
 * checked too) and must satisfy:
 *  - I0: every batch the engine acknowledged in sync mode was durable, with
 *    every byte before it in its segment, the segment's directory entry and
 *    the meta block, when the ack hook ran;
 *  - the open succeeds (a crash never makes a log unopenable);
 *  - I1: every append acknowledged (sync mode, or in `none` mode covered by a
 *    successful stele_sync) is there at its LSN, byte for byte; every
 *    duplicate answer points at a record that is there;
 *  - I2, I3: every record is one that was submitted (no phantom, and nothing
 *    from a call refused before it was written), at most once, LSNs dense,
 *    stream versions dense; an append_batch call is all there or not at all;
 *  - I4, I5: no key twice; a `conflict` answer points at a record with that
 *    key that is there; retrying the calls that failed gives `new`, or
 *    `duplicate` of the record already there, or `conflict` when the key
 *    holds another payload - never a second record;
 *  - I7: stele_verify finds no problem, on the state as the crash left it
 *    (read-only, ending the log where recovery then does) and after recovery.
 * G2, S7: for a sample of states, recovery itself is crashed at each of its
 * steps (and the state after that crash written out in several modes), or
 * that step fails with EIO (io_fault over the simulator); the log reopened
 * from there must hold exactly what the first recovery found (I6:
 * recover(crash(recover(S))) = recover(S)).
 * S8: for a sample of crash points, the process dies but the machine does not
 * (the page cache survives): a new writer recovers from the page-cache view,
 * retries the failed calls, and then the power goes at each of its steps; no
 * record it acknowledged or answered `duplicate` for may be missing after that.
 *
 * Smaller tests keep the oracle honest: test_sim_* check the simulator's
 * bookkeeping on known sequences (what a sync makes durable, also when a
 * write overlaps it; what each crash mode leaves; directory entries, the
 * directory's own included; freezing; process crashes), and test_lying_storage
 * runs the exploration on storage that skips fdatasync or directory syncs
 * while claiming them, which must be caught (by I0, and with the hook ignored
 * by the crash states).
 *
 * Scale: at least STELE_SIM_STATES crash states, all kinds counted (default
 * 100000; 25000 under AddressSanitizer), split over STELE_SIM_JOBS worker processes (default:
 * the number of CPUs, at most 4). Workload seeds start at STELE_TEST_SEED
 * (default 1). STELE_SIM_SOAK=1 runs outside Check with a random seed (or
 * STELE_TEST_SEED) until STELE_SIM_STATES states (default 5000000), printing
 * progress; tests/soak/sim_soak.sh wraps it. Any failure prints the workload
 * seed, the crash point, the crash mode and the state's directory (left in
 * place), so it can be replayed.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"
#include "io.h"
#include "stele.h"
#include "testutil.h"

#define SEG_SIZE (64u * 1024u)
#define PAYLOAD_MAX (16u * 1024u)
#define EVENTS_MAX 256
#define CALLS_MAX 64
#define CALL_EVENTS_MAX 5
#define HIST_MAX (CALLS_MAX * 3)
#define STREAMS 3
#define STEPS_MAX 4096
#define JOBS_MAX 4
#define RETRY_CALLS_MAX 4
#define TAG_SIZE 8 /* "E%06d;" at the start of every payload */

#if defined(__SANITIZE_ADDRESS__)
#define STATES_DEFAULT 25000
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STATES_DEFAULT 25000
#endif
#endif
#ifndef STATES_DEFAULT
#define STATES_DEFAULT 100000
#endif

/* ------------------------------------------------------------ failures */

/* Counters and the first failure, shared by the worker processes. */
struct tally {
    uint64_t states;        /* crash states checked (distinct within their crash point) */
    uint64_t repeats;       /* states skipped because another mode of the point gave the same bytes */
    uint64_t nested;        /* states after a crash inside recovery (S7) */
    uint64_t process;       /* states after a process crash then a power loss (S8) */
    uint64_t points;        /* crash points */
    uint64_t workloads;
    uint64_t torn_cut;      /* states where recovery cut a torn tail */
    uint64_t in_flight;     /* crash points with two or more unsynced writes (S4) */
    uint64_t recovery_eio;  /* recoveries failed with EIO, then rerun (not counted as states) */
    int failed;
    char msg[4096];
};

static struct tally *g_tally;  /* this worker's slot */
static char g_where[1024];     /* what is being explored, for failure messages */
static int g_quiet;            /* a failure is expected (the lying-storage tests) */
static uint64_t g_seed;        /* the workload being explored */

/* LeakSanitizer's check, when built with it: workers leave with _exit. */
extern void __lsan_do_leak_check(void) __attribute__((weak));

static void fail_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void fail_at(int line, const char *fmt, ...)
{
    char what[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(g_tally->msg, sizeof g_tally->msg,
             "check_sim.c:%d: %s\n  at: %s\n  replay: STELE_SIM_SOAK=1 STELE_SIM_JOBS=1 STELE_SIM_STATES=1 "
             "STELE_TEST_SEED=%llu tests/check_sim",
             line, what, g_where, (unsigned long long)g_seed);
    g_tally->failed = 1;
    if (!g_quiet)
        fprintf(stderr, "FAIL %s\n", g_tally->msg);
    fflush(stderr);
    _exit(1);
}

/* Says what is being explored (vsnprintf: a long message is cut, never an error). */
static void where_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void where_set(const char *fmt, ...)
{
    char buf[sizeof g_where];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(g_where, buf, sizeof buf);
}

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond))                                                           \
            fail_at(__LINE__, __VA_ARGS__);                                    \
    } while (0)

/* ------------------------------------------------------------ workloads */

enum { CALL_APPEND, CALL_SYNC };
enum { EXPECT_NONE, EXPECT_RIGHT, EXPECT_WRONG };

/* A logical event: what one append asks for. Retries re-send the same one. */
struct lev {
    char key[32];
    size_t key_size;      /* 0: no key */
    int group;            /* events with the same key share a group */
    int stream;           /* -1: none */
    uint8_t *payload;     /* starts with the tag "E<id>;" */
    size_t payload_size;
};

struct call {
    int kind;
    int n;
    int ev[CALL_EVENTS_MAX];
    int expect;           /* EXPECT_*, for a single stream event */
    int fresh;            /* every event submitted for the first time: all there or none */
};

struct workload {
    uint64_t seed;
    stele_durability durability;
    int zstd;
    int async;            /* calls go in waves through stele_append_async */
    int nev;
    struct lev ev[EVENTS_MAX];
    int ncall;
    struct call call[CALLS_MAX];
};

static const char *stream_names[STREAMS] = {"s0", "s1", "s2"};

static int new_event(struct workload *w, uint64_t *rng, int group, int big)
{
    int id = w->nev++;
    struct lev *e = &w->ev[id];
    memset(e, 0, sizeof *e);
    uint64_t r = tu_rand(rng);
    if (group >= 0 || r % 4 != 0) {
        e->group = group >= 0 ? group : id;
        e->key_size = (size_t)snprintf(e->key, sizeof e->key, "key-%llu-%d", (unsigned long long)(w->seed % 1000),
                                       e->group);
    } else {
        e->group = -1;
    }
    e->stream = (r >> 8) % 5 < 2 ? (int)((r >> 16) % STREAMS) : -1;
    uint64_t p = (r >> 24) % 100;
    size_t size = p < 70 ? 16 + (size_t)((r >> 32) % 2000)
                  : p < 90 ? 2000 + (size_t)((r >> 32) % 6000) : 8000 + (size_t)((r >> 32) % (PAYLOAD_MAX - 8000));
    if (!big && size > 6000)
        size = 6000;
    if (size < TAG_SIZE)
        size = TAG_SIZE;
    e->payload_size = size;
    e->payload = malloc(size);
    if (!e->payload)
        abort();
    char tag[TAG_SIZE + 1];
    snprintf(tag, sizeof tag, "E%06d;", id);
    memcpy(e->payload, tag, TAG_SIZE);
    uint64_t s = w->seed * 1000003u + (uint64_t)id + 1;
    for (size_t i = TAG_SIZE; i < size; i++) {
        /* zstd workloads get compressible payloads, the others random bytes. */
        if (w->zstd)
            e->payload[i] = (uint8_t)("abcdefgh "[(i / 7 + (size_t)id) % 9]);
        else
            e->payload[i] = (uint8_t)(tu_rand(&s) >> 56);
    }
    return id;
}

/* An earlier event with a key, or -1. */
static int keyed_event(const struct workload *w, uint64_t *rng)
{
    for (int tries = 0; tries < 8 && w->nev; tries++) {
        int e = (int)(tu_rand(rng) % (uint64_t)w->nev);
        if (w->ev[e].key_size)
            return e;
    }
    return -1;
}

static void workload_init(struct workload *w, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->seed = seed;
    uint64_t rng = seed * 0x9e3779b97f4a7c15u + 7;
    tu_rand(&rng);
    int variant = (int)(seed % 6);
    w->durability = variant == 3 ? STELE_DURABILITY_NONE : STELE_DURABILITY_SYNC;
    w->zstd = variant == 4;
    w->async = variant == 5;
    w->ncall = 30 + (int)(tu_rand(&rng) % 20);
    for (int i = 0; i < w->ncall; i++) {
        struct call *c = &w->call[i];
        memset(c, 0, sizeof *c);
        if (w->durability == STELE_DURABILITY_NONE && (i % 4 == 3 || i == w->ncall - 1)) {
            c->kind = CALL_SYNC;
            continue;
        }
        uint64_t r = tu_rand(&rng) % 100;
        int prior = keyed_event(w, &rng);
        c->fresh = 1;
        if (r < 45 || prior < 0 || w->nev + CALL_EVENTS_MAX > EVENTS_MAX) {
            c->n = 1;
            c->ev[0] = new_event(w, &rng, -1, 1);
        } else if (r < 65) {
            c->n = 2 + (int)(tu_rand(&rng) % (CALL_EVENTS_MAX - 1));
            for (int j = 0; j < c->n; j++)
                c->ev[j] = new_event(w, &rng, -1, 0);
        } else if (r < 75) {
            c->n = 1; /* a retry: same key, same payload */
            c->ev[0] = prior;
            c->fresh = 0;
        } else if (r < 82) {
            c->n = 1; /* the same key with another payload */
            c->ev[0] = new_event(w, &rng, w->ev[prior].group, 1);
            c->fresh = 0;
        } else if (r < 95) {
            c->n = 1;
            c->ev[0] = new_event(w, &rng, -1, 1);
            if (w->ev[c->ev[0]].stream < 0)
                w->ev[c->ev[0]].stream = (int)(r % STREAMS);
            c->expect = r < 90 ? EXPECT_RIGHT : EXPECT_WRONG;
            c->fresh = c->expect == EXPECT_RIGHT;
        } else if (r < 98) {
            c->n = 2; /* a retry and a new event in one call */
            c->ev[0] = prior;
            c->ev[1] = new_event(w, &rng, -1, 0);
            c->fresh = 0;
        } else {
            c->n = 2; /* a new key, and the same key with another payload, in one call */
            c->ev[0] = new_event(w, &rng, -1, 0);
            if (!w->ev[c->ev[0]].key_size) {
                w->ev[c->ev[0]].key_size = (size_t)snprintf(w->ev[c->ev[0]].key, sizeof w->ev[c->ev[0]].key,
                                                            "key-%llu-%d", (unsigned long long)(seed % 1000),
                                                            c->ev[0]);
                w->ev[c->ev[0]].group = c->ev[0];
            }
            c->ev[1] = new_event(w, &rng, w->ev[c->ev[0]].group, 0);
            c->fresh = 0;
        }
    }
}

static void workload_free(struct workload *w)
{
    for (int i = 0; i < w->nev; i++)
        free(w->ev[i].payload);
}

static void event_of(const struct workload *w, int id, stele_event *ev)
{
    const struct lev *e = &w->ev[id];
    memset(ev, 0, sizeof *ev);
    ev->type = "sim.event";
    ev->type_size = 9;
    ev->key = e->key_size ? e->key : NULL;
    ev->key_size = e->key_size;
    if (e->stream >= 0) {
        ev->stream = stream_names[e->stream];
        ev->stream_size = 2;
    }
    ev->payload = e->payload;
    ev->payload_size = e->payload_size;
}

/* ------------------------------------------------------------ histories */

/* One call as made, and what it returned. */
struct entry {
    const struct call *call;
    int code;
    stele_receipt rc[CALL_EVENTS_MAX];
    int promised;         /* its ok receipts were promised durable */
};

struct hist {
    int n;
    struct entry e[HIST_MAX];
};

/* The I0 assertion, run by the engine just before it acknowledges a batch. */
struct hook {
    struct io *sim;
    char meta[4200 + 32];
    int bad;
    char msg[1024];
};

static void ack_hook(void *ctx, const char *seg_path, uint64_t offset, uint64_t size, uint64_t first_lsn,
                     uint64_t last_lsn)
{
    struct hook *k = ctx;
    if (k->bad)
        return;
    /* Everything up to the batch's end must be durable (the watermark covers
     * a prefix), with the segment's directory entry, and the meta block. */
    const char *what = !io_sim_check_durable(k->sim, seg_path, 0, offset + size) ? "its segment's bytes"
                       : !io_sim_check_durable(k->sim, k->meta, 0, STELE_META_SIZE) ? "the meta block"
                                                                                       : NULL;
    if (!what)
        return;
    char step[600];
    io_sim_last_step(k->sim, step, sizeof step);
    snprintf(k->msg, sizeof k->msg,
             "I0: LSN %llu-%llu acknowledged, but %s [0, %llu) of %s or the directory entry are not durable "
             "(last %s)",
             (unsigned long long)first_lsn, (unsigned long long)last_lsn, what,
             (unsigned long long)(offset + size), seg_path, step);
    k->bad = 1;
}

static void hook_attach(struct hook *k, stele_log *log, struct io *sim, const char *dir)
{
    memset(k, 0, sizeof *k);
    k->sim = sim;
    snprintf(k->meta, sizeof k->meta, "%s/stele.meta", dir);
    pthread_mutex_lock(&log->q_lock);
    log->ack_hook = ack_hook;
    log->ack_ctx = k;
    /* None mode writes a batch when its calls say so, never on a timer:
     * the order of writes and syncs, which the crash states enumerate,
     * then follows from the workload alone. */
    log->linger_ns = UINT64_MAX;
    pthread_mutex_unlock(&log->q_lock);
}

static stele_options opts_for(const struct workload *w, stele_durability d)
{
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.segment_size = SEG_SIZE;
    o.payload_size_max = PAYLOAD_MAX;
    o.io_backend = STELE_IO_POSIX;
    o.durability = d;
    o.compression = w->zstd ? STELE_COMPRESSION_ZSTD : STELE_COMPRESSION_NONE;
    o.default_durability = w->durability;
    return o;
}

/* Builds the events of call c (with its expectation unless retrying). */
static void call_events(const struct workload *w, const struct call *c, int retrying, const uint64_t ver[STREAMS],
                        stele_event *evs)
{
    for (int j = 0; j < c->n; j++)
        event_of(w, c->ev[j], &evs[j]);
    if (c->expect != EXPECT_NONE && !retrying) {
        int s = w->ev[c->ev[0]].stream;
        evs[0].has_expect_version = 1;
        evs[0].expect_version = ver[s] + (c->expect == EXPECT_WRONG ? 7 : 0);
    }
}

static void note_versions(const struct workload *w, const struct entry *en, uint64_t ver[STREAMS])
{
    for (int j = 0; j < en->call->n && en->call->kind == CALL_APPEND; j++) {
        int s = w->ev[en->call->ev[j]].stream;
        if (s >= 0 && en->rc[j].decision == STELE_DECISION_NEW && en->rc[j].code == STELE_OK &&
            en->rc[j].stream_version > ver[s])
            ver[s] = en->rc[j].stream_version;
    }
}

static struct entry *entry_new(struct hist *h, const struct call *c)
{
    CHECK(h->n < HIST_MAX, "history full");
    struct entry *en = &h->e[h->n++];
    memset(en, 0, sizeof *en);
    en->call = c;
    return en;
}

/* Async calls in flight, and a place for their answers. */
struct wave {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int outstanding;
};

struct ticket {
    struct wave *wv;
    struct entry *en;
};

static void on_done(void *ctx, int code, const stele_receipt *receipts, size_t count)
{
    struct ticket *t = ctx;
    pthread_mutex_lock(&t->wv->lock);
    t->en->code = code;
    for (size_t j = 0; j < count && j < CALL_EVENTS_MAX; j++)
        t->en->rc[j] = receipts[j];
    t->wv->outstanding--;
    pthread_cond_broadcast(&t->wv->cond);
    pthread_mutex_unlock(&t->wv->lock);
}

static void wave_drain(struct wave *wv)
{
    pthread_mutex_lock(&wv->lock);
    while (wv->outstanding)
        pthread_cond_wait(&wv->cond, &wv->lock);
    pthread_mutex_unlock(&wv->lock);
}

/* The async form: waves of 1-12 calls in flight at once, 50 us apart (a
 * call with an expectation goes alone, after the calls before it are done,
 * since its expected version depends on them). */
static void run_calls_async(stele_log *log, const struct workload *w, const struct call *const *calls, int ncalls,
                            struct hist *h, uint64_t ver[STREAMS])
{
    static stele_event evs[CALLS_MAX][CALL_EVENTS_MAX];
    static struct ticket tickets[CALLS_MAX];
    struct wave wv = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    uint64_t rng = w->seed ^ 0xa5a5;
    for (int i = 0; i < ncalls;) {
        int first = h->n, size = 1 + (int)(tu_rand(&rng) % 12);
        for (int k = 0; k < size && i < ncalls; k++, i++) {
            const struct call *c = calls[i];
            if (c->expect != EXPECT_NONE && k > 0)
                break;
            struct entry *en = entry_new(h, c);
            call_events(w, c, 0, ver, evs[i % CALLS_MAX]);
            tickets[i % CALLS_MAX] = (struct ticket){&wv, en};
            pthread_mutex_lock(&wv.lock);
            wv.outstanding++;
            pthread_mutex_unlock(&wv.lock);
            int code = stele_append_async(log, evs[i % CALLS_MAX], (size_t)c->n, on_done, &tickets[i % CALLS_MAX]);
            if (code != STELE_OK) {
                pthread_mutex_lock(&wv.lock);
                wv.outstanding--;
                en->code = code;
                for (int j = 0; j < c->n; j++)
                    en->rc[j] = (stele_receipt){0, 0, STELE_DECISION_NONE, (stele_code)code};
                pthread_mutex_unlock(&wv.lock);
            }
            if (c->expect != EXPECT_NONE) {
                i++;
                break;
            }
            /* Spaced out (syncs take 200 us here): the writer writes the
             * next batch while the last one's sync runs. */
            struct timespec gap = {0, 50 * 1000L};
            nanosleep(&gap, NULL);
        }
        wave_drain(&wv);
        for (int e = first; e < h->n; e++)
            note_versions(w, &h->e[e], ver);
    }
}

/* Runs calls in order, appending their entries to h. ver[] is each stream's
 * version as the caller believes it (right and wrong expectations use it). */
static void run_calls(stele_log *log, const struct workload *w, const struct call *const *calls, int ncalls,
                      int retrying, struct hist *h, uint64_t ver[STREAMS])
{
    if (w->async && !retrying) {
        run_calls_async(log, w, calls, ncalls, h, ver);
        return;
    }
    for (int i = 0; i < ncalls; i++) {
        const struct call *c = calls[i];
        struct entry *en = entry_new(h, c);
        if (c->kind == CALL_SYNC) {
            en->code = stele_sync(log);
            continue;
        }
        stele_event evs[CALL_EVENTS_MAX];
        call_events(w, c, retrying, ver, evs);
        en->code = stele_append_batch(log, evs, (size_t)c->n, en->rc);
        note_versions(w, en, ver);
    }
}

/* Marks the entries [from, h->n) of one handle's life whose ok answers were
 * promised durable: all of them in sync mode, else those a later successful
 * stele_sync of the same life covered. */
static void mark_promised(struct hist *h, int from, stele_durability d)
{
    int synced = d == STELE_DURABILITY_SYNC;
    for (int i = h->n - 1; i >= from; i--) {
        if (h->e[i].call->kind == CALL_SYNC && h->e[i].code == STELE_OK)
            synced = 1;
        h->e[i].promised = synced;
    }
}

/* ------------------------------------------------------------ checking a log */

/* What a reopened log holds. */
struct content {
    uint64_t last;
    uint64_t lsn_of[EVENTS_MAX];    /* event -> its LSN, 0 when absent */
    uint64_t group_lsn[EVENTS_MAX]; /* key group -> the LSN holding that key */
    int ev_at[EVENTS_MAX + 1];      /* LSN -> event */
    uint64_t ver[STREAMS];
    uint64_t digest;                /* of every record, for recover(crash(recover)) = recover */
};

static void read_records(stele_log *log, const struct workload *w, struct content *c)
{
    memset(c, 0, sizeof *c);
    XXH3_state_t *hs = XXH3_createState();
    XXH3_64bits_reset(hs);
    stele_iter *it;
    int code = stele_iter_open(log, 1, &it);
    CHECK(code == STELE_OK, "iter_open: %s", stele_errmsg());
    for (;;) {
        const stele_record *r;
        code = stele_iter_next(it, 0, &r);
        CHECK(code == STELE_OK, "reading after LSN %llu: %s: %s", (unsigned long long)c->last, stele_strerror(code),
              stele_errmsg());
        if (!r)
            break;
        CHECK(r->lsn == c->last + 1, "I2: LSN %llu follows %llu", (unsigned long long)r->lsn,
              (unsigned long long)c->last);
        c->last = r->lsn;
        int id = -1;
        CHECK(r->payload_size >= TAG_SIZE && sscanf((const char *)r->payload, "E%6d;", &id) == 1 && id >= 0 &&
                  id < w->nev,
              "I2: LSN %llu holds a record never submitted (payload of %zu bytes)", (unsigned long long)r->lsn,
              r->payload_size);
        const struct lev *e = &w->ev[id];
        CHECK(r->payload_size == e->payload_size && memcmp(r->payload, e->payload, e->payload_size) == 0 &&
                  r->key_size == e->key_size && (!e->key_size || memcmp(r->key, e->key, e->key_size) == 0) &&
                  r->type_size == 9 && memcmp(r->type, "sim.event", 9) == 0 &&
                  r->stream_size == (e->stream >= 0 ? 2u : 0u) &&
                  (e->stream < 0 || memcmp(r->stream, stream_names[e->stream], 2) == 0),
              "I1/I2: LSN %llu (event %d) differs from what was appended", (unsigned long long)r->lsn, id);
        CHECK(c->lsn_of[id] == 0, "I3: event %d is in the log twice (LSN %llu and %llu)", id,
              (unsigned long long)c->lsn_of[id], (unsigned long long)r->lsn);
        c->lsn_of[id] = r->lsn;
        c->ev_at[r->lsn] = id;
        if (e->key_size) {
            CHECK(c->group_lsn[e->group] == 0, "I4: key %s is in the log twice (LSN %llu and %llu)", e->key,
                  (unsigned long long)c->group_lsn[e->group], (unsigned long long)r->lsn);
            c->group_lsn[e->group] = r->lsn;
        }
        uint64_t want = e->stream >= 0 ? ++c->ver[e->stream] : 0;
        CHECK(r->stream_version == want, "LSN %llu: stream version %llu, want %llu", (unsigned long long)r->lsn,
              (unsigned long long)r->stream_version, (unsigned long long)want);
        uint64_t fields[5] = {r->lsn, r->recorded_at_ns, r->event_time_ns, r->fingerprint, (uint64_t)id};
        XXH3_64bits_update(hs, fields, sizeof fields);
    }
    stele_iter_close(it);
    c->digest = XXH3_64bits_digest(hs);
    XXH3_freeState(hs);
}

/* The log against the history: nothing acknowledged missing, nothing that
 * was never written present, every batch whole or absent. */
static void check_history(const struct workload *w, const struct hist *h, const struct content *c)
{
    uint8_t may[EVENTS_MAX] = {0};
    for (int i = 0; i < h->n; i++) {
        const struct entry *en = &h->e[i];
        const struct call *cl = en->call;
        if (cl->kind != CALL_APPEND)
            continue;
        int present = 0;
        for (int j = 0; j < cl->n; j++) {
            int id = cl->ev[j];
            const stele_receipt *rc = &en->rc[j];
            if (en->code == STELE_ERR_OUTCOME_UNKNOWN || rc->decision == STELE_DECISION_NEW)
                may[id] = 1;
            present += c->lsn_of[id] != 0;
            if (!en->promised || (rc->code != STELE_OK && rc->decision != STELE_DECISION_CONFLICT))
                continue;
            if (rc->decision == STELE_DECISION_NEW || rc->decision == STELE_DECISION_DUPLICATE)
                CHECK(c->lsn_of[id] == rc->lsn,
                      "I1: call %d event %d was acknowledged (%s) at LSN %llu but the log has it at %llu "
                      "(log ends at %llu)",
                      i, id, rc->decision == STELE_DECISION_NEW ? "new" : "duplicate", (unsigned long long)rc->lsn,
                      (unsigned long long)c->lsn_of[id], (unsigned long long)c->last);
            if (rc->decision == STELE_DECISION_CONFLICT)
                CHECK(rc->lsn && rc->lsn <= c->last && w->ev[c->ev_at[rc->lsn]].group == w->ev[id].group,
                      "I5: call %d event %d was told conflict with LSN %llu (the call returned %s), but that LSN "
                      "is not there with that key (log ends at %llu)",
                      i, id, (unsigned long long)rc->lsn, stele_strerror(en->code), (unsigned long long)c->last);
        }
        int resent = 0; /* a later call (a retry) may have written some of them */
        for (int k = i + 1; k < h->n && !resent; k++)
            for (int a = 0; a < h->e[k].call->n && !resent; a++)
                for (int b = 0; b < cl->n && !resent; b++)
                    resent = h->e[k].call->ev[a] == cl->ev[b];
        if (cl->fresh && !resent && (en->code == STELE_OK || en->code == STELE_ERR_OUTCOME_UNKNOWN))
            CHECK(present == 0 || present == cl->n, "a batch of %d records (call %d) is only partly there (%d)",
                  cl->n, i, present);
    }
    for (int id = 0; id < w->nev; id++)
        CHECK(!c->lsn_of[id] || may[id],
              "I2: event %d is at LSN %llu, but no call that could have written it was made (phantom)", id,
              (unsigned long long)c->lsn_of[id]);
}

/* What a retried call must get: duplicate of what is there, conflict with
 * another payload under the key, else new (never a second record). */
static void check_retry(const struct workload *w, const struct entry *en, struct content *c, int i)
{
    const struct call *cl = en->call;
    for (int j = 0; j < cl->n; j++) {
        int id = cl->ev[j];
        const struct lev *e = &w->ev[id];
        const stele_receipt *rc = &en->rc[j];
        if (c->lsn_of[id]) {
            CHECK(rc->decision == STELE_DECISION_DUPLICATE && rc->code == STELE_OK && rc->lsn == c->lsn_of[id],
                  "I4: retry %d: event %d at LSN %llu came back decision %d code %d LSN %llu, want duplicate", i, id,
                  (unsigned long long)c->lsn_of[id], rc->decision, rc->code, (unsigned long long)rc->lsn);
        } else if (e->key_size && c->group_lsn[e->group]) {
            CHECK(rc->decision == STELE_DECISION_CONFLICT && rc->lsn == c->group_lsn[e->group],
                  "I5: retry %d: event %d, key %s held by LSN %llu: decision %d LSN %llu, want conflict", i, id,
                  e->key, (unsigned long long)c->group_lsn[e->group], rc->decision, (unsigned long long)rc->lsn);
        } else {
            CHECK(rc->decision == STELE_DECISION_NEW && rc->code == STELE_OK && rc->lsn > c->last,
                  "I4: retry %d: event %d (absent) came back decision %d code %d (%s) LSN %llu, log ends at %llu", i,
                  id, rc->decision, rc->code, stele_strerror(rc->code), (unsigned long long)rc->lsn,
                  (unsigned long long)c->last);
            c->lsn_of[id] = rc->lsn;
            if (e->key_size)
                c->group_lsn[e->group] = rc->lsn;
        }
    }
    for (int j = 0; j < cl->n; j++)
        if (c->last < en->rc[j].lsn && en->rc[j].decision == STELE_DECISION_NEW)
            c->last = en->rc[j].lsn;
}

/* The calls to retry after a crash: those that failed (but not one with a
 * deliberately wrong expectation), and the first that succeeded; only their
 * keyed events (a retry without a key is a new record, by design). Built in
 * buf; returns how many. */
static int retry_calls(const struct workload *w, const struct hist *h, struct call *buf, const struct call **out)
{
    int n = 0, ok = 0;
    for (int i = 0; i < h->n && n < RETRY_CALLS_MAX; i++) {
        const struct entry *en = &h->e[i];
        if (en->call->kind != CALL_APPEND || en->call->expect == EXPECT_WRONG)
            continue;
        if (en->code == STELE_OK && (ok || i == 0))
            continue;
        ok |= en->code == STELE_OK;
        struct call *c = &buf[n];
        memset(c, 0, sizeof *c);
        c->kind = CALL_APPEND;
        for (int j = 0; j < en->call->n; j++)
            if (w->ev[en->call->ev[j]].key_size)
                c->ev[c->n++] = en->call->ev[j];
        if (c->n)
            out[n++] = c;
    }
    return n;
}

/* ------------------------------------------------------------ lying storage */

/* Proves the checks are not vacuous: storage that claims syncs it never did
 * must be caught. Forwards to a simulator, but fdatasync (LIE_DATASYNC) or
 * the directory sync (LIE_DIRSYNC) return success without happening. */
enum { LIE_NONE, LIE_DATASYNC, LIE_DIRSYNC };

struct liar {
    struct io io;
    struct io *in;
    int lie;
    /* A gate for writes (the model test of overlapping calls): a write
     * waits inside until opened. */
    int gated;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int inside;
    int open;
};

#define IN(io) (((struct liar *)(io))->in)
#define LIE(io) (((struct liar *)(io))->lie)

static int l_open(struct io *io, const char *path, int flags, mode_t mode)
{
    return IN(io)->ops->open(IN(io), path, flags, mode);
}
static int l_close(struct io *io, int fd)
{
    return IN(io)->ops->close(IN(io), fd);
}
static ssize_t l_pread(struct io *io, int fd, void *buf, size_t len, uint64_t off)
{
    return IN(io)->ops->pread(IN(io), fd, buf, len, off);
}
static int l_write(struct io *io, int fd, const void *buf, size_t len, uint64_t off, int datasync)
{
    struct liar *l = (struct liar *)io;
    if (l->gated) {
        pthread_mutex_lock(&l->lock);
        l->inside = 1;
        pthread_cond_broadcast(&l->cond);
        while (!l->open)
            pthread_cond_wait(&l->cond, &l->lock);
        pthread_mutex_unlock(&l->lock);
    }
    return IN(io)->ops->write(IN(io), fd, buf, len, off, LIE(io) == LIE_DATASYNC ? 0 : datasync);
}
static int l_fdatasync(struct io *io, int fd)
{
    return LIE(io) == LIE_DATASYNC ? 0 : IN(io)->ops->fdatasync(IN(io), fd);
}
static int l_fsync(struct io *io, int fd)
{
    return IN(io)->ops->fsync(IN(io), fd);
}
static int l_fallocate(struct io *io, int fd, uint64_t len)
{
    return IN(io)->ops->fallocate(IN(io), fd, len);
}
static int l_ftruncate(struct io *io, int fd, uint64_t len)
{
    return IN(io)->ops->ftruncate(IN(io), fd, len);
}
static int l_fchmod(struct io *io, int fd, mode_t mode)
{
    return IN(io)->ops->fchmod(IN(io), fd, mode);
}
static int l_rename(struct io *io, const char *from, const char *to)
{
    return IN(io)->ops->rename(IN(io), from, to);
}
static int l_unlink(struct io *io, const char *path)
{
    return IN(io)->ops->unlink(IN(io), path);
}
static int l_sync_dir(struct io *io, const char *dir)
{
    return LIE(io) == LIE_DIRSYNC ? 0 : IN(io)->ops->sync_dir(IN(io), dir);
}
static void l_destroy(struct io *io)
{
    struct liar *l = (struct liar *)io;
    IN(io)->ops->destroy(IN(io));
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
    free(io);
}

static const struct io_ops liar_ops = {
    l_open, l_close, l_pread, l_write, l_fdatasync, l_fsync, l_fallocate,
    l_ftruncate, l_fchmod, l_rename, l_unlink, l_sync_dir, l_destroy,
};

static struct io *liar_create(struct io *in, int lie)
{
    struct liar *l = calloc(1, sizeof *l);
    if (!l)
        abort();
    l->io.ops = &liar_ops;
    l->in = in;
    l->lie = lie;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    return &l->io;
}

/* ------------------------------------------------------------ exploring */

struct explorer {
    struct workload w;
    char base[4096];
    char run[4200], state[4200], nest[4200], nest2[4200], proc[4200];
    char *trace[STEPS_MAX + 1];
    struct call retry_buf[RETRY_CALLS_MAX]; /* the retries of a process-crash life */
    int lie;              /* LIE_*: the workload runs on lying storage */
    int hook_off;         /* ... and the I0 hook is not consulted */
    uint64_t steps;
};

static void record_trace(void *ctx, uint64_t step, const char *what)
{
    struct explorer *x = ctx;
    if (step <= STEPS_MAX) {
        free(x->trace[step]);
        x->trace[step] = strdup(what);
    }
}

/* Opens dir as a restarted writer (sync mode, through a simulator so that
 * its acks are checked too), checks it against h, verifies it and, with
 * retry, retries the failed calls. Returns the steps the open took. */
static uint64_t check_state(struct explorer *x, const char *dir, const struct hist *h, int retry, struct content *c)
{
    /* verify first, on the state as the crash left it: read-only, it must
     * see no problem and end the log where recovery will (I7). */
    stele_verify_report raw = {0};
    int raw_code = stele_verify(dir, NULL, NULL, &raw);
    CHECK(raw_code == STELE_OK || raw_code == STELE_ERR_NOT_FOUND, "I7: verify of the crash state %s: %s: %s", dir,
          stele_strerror(raw_code), stele_errmsg());
    int code;
    struct io *sim = io_sim_create(io_posix_create(), dir);
    CHECK(sim != NULL, "io_sim_create");
    io_sim_retain(sim);
    stele_options o = opts_for(&x->w, STELE_DURABILITY_SYNC);
    stele_log *log = NULL;
    code = stele_open_io(dir, &o, sim, &log);
    CHECK(code == STELE_OK, "reopening the crash state %s: %s: %s", dir, stele_strerror(code), stele_errmsg());
    uint64_t steps = io_sim_steps(sim);
    struct hook hook;
    hook_attach(&hook, log, sim, dir);
    read_records(log, &x->w, c);
    check_history(&x->w, h, c);
    CHECK(raw.problems == 0 && raw.last_lsn == c->last, /* no log (NOT_FOUND): both 0 */
          "I7: verify of the crash state saw %llu problems and LSNs up to %llu, recovery %llu",
          (unsigned long long)raw.problems, (unsigned long long)raw.last_lsn, (unsigned long long)c->last);
    stele_stats st;
    CHECK(stele_stats_get(log, &st) == STELE_OK, "stats");
    g_tally->torn_cut += st.recovery_torn_bytes != 0;
    stele_verify_report rep;
    code = stele_verify(dir, NULL, NULL, &rep);
    CHECK(code == STELE_OK && rep.problems == 0 && rep.last_lsn == c->last,
          "I7: verify after recovery: %s (%llu problems, last LSN %llu vs %llu): %s", stele_strerror(code),
          (unsigned long long)rep.problems, (unsigned long long)rep.last_lsn, (unsigned long long)c->last,
          stele_errmsg());
    if (retry) {
        const struct call *calls[RETRY_CALLS_MAX];
        struct call buf[RETRY_CALLS_MAX];
        int n = retry_calls(&x->w, h, buf, calls);
        struct hist *rh = calloc(1, sizeof *rh);
        uint64_t ver[STREAMS];
        memcpy(ver, c->ver, sizeof ver);
        run_calls(log, &x->w, calls, n, 1, rh, ver);
        struct content *after = malloc(sizeof *after);
        CHECK(after != NULL, "malloc");
        *after = *c;
        for (int i = 0; i < rh->n; i++)
            check_retry(&x->w, &rh->e[i], after, i);
        free(after);
        free(rh);
    }
    code = stele_close(log);
    CHECK(code == STELE_OK, "close after the checks: %s: %s", stele_strerror(code), stele_errmsg());
    CHECK(!hook.bad, "%s", hook.msg);
    sim->ops->destroy(sim);
    return steps;
}

/* The crash modes worth trying given what is pending. */
static int modes_for(uint64_t data_ops, uint64_t dir_ops, unsigned *modes, int cap)
{
    int n = 0;
    static const unsigned data_all[] = {
        IO_SIM_DATA_DROP,
        IO_SIM_DATA_KEEP,
        IO_SIM_DATA_SECTORS,
        IO_SIM_DATA_SECTORS,
        IO_SIM_DATA_BLOCKS,
        IO_SIM_DATA_BLOCKS,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_1 | IO_SIM_FILL_ZERO,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_1 | IO_SIM_FILL_GARBAGE,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_1 | IO_SIM_FILL_OLD,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_3 | IO_SIM_FILL_ZERO,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_3 | IO_SIM_FILL_GARBAGE,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_3 | IO_SIM_FILL_OLD,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_512 | IO_SIM_FILL_ZERO,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_512 | IO_SIM_FILL_GARBAGE,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_512 | IO_SIM_FILL_OLD,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_4096 | IO_SIM_FILL_ZERO,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_4096 | IO_SIM_FILL_GARBAGE,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_4096 | IO_SIM_FILL_OLD,
    };
    static const unsigned data_few[] = {
        IO_SIM_DATA_DROP,
        IO_SIM_DATA_KEEP,
        IO_SIM_DATA_SECTORS,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_512 | IO_SIM_FILL_GARBAGE,
    };
    size_t nd = data_ops ? sizeof data_all / sizeof data_all[0] : 1;
    for (size_t i = 0; i < nd && n < cap; i++)
        modes[n++] = data_all[i] | IO_SIM_DIR_KEEP;
    if (!dir_ops)
        return n;
    size_t nf = data_ops ? sizeof data_few / sizeof data_few[0] : 1;
    for (unsigned dm = IO_SIM_DIR_DROP; dm <= IO_SIM_DIR_PREFIX; dm += IO_SIM_DIR_DROP)
        for (size_t i = 0; i < nf && n < cap; i++)
            modes[n++] = data_few[i] | dm;
    return n;
}

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t s = a * 0x9e3779b97f4a7c15u ^ (b + 0x632be59bd9b4e019u);
    return tu_rand(&s);
}

/* S7: recovery of the state (mode, seed) of sim is crashed at each of its
 * steps; whatever that leaves must recover to what ref holds. */
static void explore_nested(struct explorer *x, struct io *run_sim, unsigned mode, uint64_t seed,
                           uint64_t recovery_steps, const struct hist *h, const struct content *ref)
{
    char where[sizeof g_where];
    memcpy(where, g_where, sizeof where);
    for (uint64_t m = 1; m <= recovery_steps; m++) {
        CHECK(io_sim_crash_into(run_sim, mode, seed, x->nest, NULL) == 0, "crash_into %s", x->nest);
        struct io *sim = io_sim_create(io_posix_create(), x->nest);
        CHECK(sim != NULL, "io_sim_create");
        io_sim_retain(sim);
        io_sim_crash_after(sim, m);
        stele_options o = opts_for(&x->w, STELE_DURABILITY_SYNC);
        stele_log *log = NULL;
        if (stele_open_io(x->nest, &o, sim, &log) == STELE_OK)
            (void)stele_close(log);
        char step[600];
        io_sim_last_step(sim, step, sizeof step);
        uint64_t data_ops, dir_ops;
        io_sim_pending(sim, &data_ops, &dir_ops);
        unsigned modes[64];
        int nm = modes_for(data_ops, dir_ops, modes, 64);
        int pick[2] = {0, nm > 1 ? 1 + (int)(mix(seed, m) % (uint64_t)(nm - 1)) : -1};
        for (int p = 0; p < 2 && pick[p] >= 0; p++) {
            int k = pick[p];
            uint64_t seed2 = mix(seed, m * 64 + (uint64_t)k);
            where_set("%s; then recovery crashed after its %s, mode 0x%x seed %llu", where,
                     step, modes[k], (unsigned long long)seed2);
            CHECK(io_sim_crash_into(sim, modes[k], seed2, x->nest2, NULL) == 0, "crash_into %s", x->nest2);
            struct content c;
            check_state(x, x->nest2, h, 0, &c);
            CHECK(c.last == ref->last && c.digest == ref->digest,
                  "I6: recovery crashed and rerun ends at LSN %llu, the first recovery at %llu (or records differ)",
                  (unsigned long long)c.last, (unsigned long long)ref->last);
            g_tally->nested++;
        }
        sim->ops->destroy(sim);
        /* The same state, but recovery's mth mutating call fails with EIO
         * (once) instead of the power going: the open fails or copes, and
         * the next open finds the same log. */
        CHECK(io_sim_crash_into(run_sim, mode, seed, x->nest, NULL) == 0, "crash_into %s", x->nest);
        struct io *faulty = io_fault_create(io_sim_create(io_posix_create(), x->nest));
        CHECK(faulty != NULL, "io_fault_create");
        io_fault_arm(faulty, IO_FAULT_WRITE | IO_FAULT_SYNC | IO_FAULT_META, m, EIO, 0);
        int code = stele_open_io(x->nest, &o, faulty, &log);
        where_set("%s; then recovery's mutating call %llu failed with EIO (open: %s)", where, (unsigned long long)m,
                  stele_strerror(code));
        if (code == STELE_OK)
            (void)stele_close(log);
        struct content c;
        check_state(x, x->nest, h, 0, &c);
        CHECK(c.last == ref->last && c.digest == ref->digest,
              "I6: recovery failed and rerun ends at LSN %llu, the first recovery at %llu (or records differ)",
              (unsigned long long)c.last, (unsigned long long)ref->last);
        g_tally->recovery_eio++;
    }
    memcpy(g_where, where, sizeof where);
}

/* S8: the process dies at the crash point but the machine lives on. A new
 * writer recovers from the page-cache view and retries the failed calls; the
 * power goes after each of its steps. Whatever it acknowledged, or answered
 * duplicate for, must survive. */
static void explore_process_crash(struct explorer *x, struct io *run_sim, const struct hist *h, uint64_t point_seed)
{
    char where[sizeof g_where];
    memcpy(where, g_where, sizeof where);
    struct hist *h2 = malloc(sizeof *h2);
    CHECK(h2 != NULL, "malloc");
    for (uint64_t m = 1;; m++) {
        struct io *sim = io_sim_process_crash(run_sim, x->proc);
        CHECK(sim != NULL, "io_sim_process_crash: %s", strerror(errno));
        io_sim_retain(sim);
        io_sim_crash_after(sim, m);
        stele_options o = opts_for(&x->w, STELE_DURABILITY_SYNC);
        stele_log *log = NULL;
        memcpy(h2, h, sizeof *h2);
        int code = stele_open_io(x->proc, &o, sim, &log);
        CHECK(code == STELE_OK || io_sim_frozen(sim), "open after a process crash: %s: %s", stele_strerror(code),
              stele_errmsg());
        if (code == STELE_OK) {
            struct hook hook;
            hook_attach(&hook, log, sim, x->proc);
            struct content c;
            read_records(log, &x->w, &c);
            check_history(&x->w, h, &c);
            const struct call *calls[RETRY_CALLS_MAX];
            int n = retry_calls(&x->w, h, x->retry_buf, calls);
            int from = h2->n;
            run_calls(log, &x->w, calls, n, 1, h2, c.ver);
            mark_promised(h2, from, STELE_DURABILITY_SYNC);
            (void)stele_close(log);
            CHECK(!hook.bad, "%s", hook.msg);
        }
        if (!io_sim_frozen(sim)) {
            sim->ops->destroy(sim);
            break;
        }
        char step[600];
        io_sim_last_step(sim, step, sizeof step);
        uint64_t data_ops, dir_ops;
        io_sim_pending(sim, &data_ops, &dir_ops);
        unsigned modes[64];
        int nm = modes_for(data_ops, dir_ops, modes, 64);
        int pick[2] = {0, nm > 1 ? 1 + (int)(mix(point_seed, m) % (uint64_t)(nm - 1)) : -1};
        for (int p = 0; p < 2 && pick[p] >= 0; p++) {
            int k = pick[p];
            uint64_t seed2 = mix(point_seed, m * 128 + (uint64_t)k);
            where_set("%s; process crash, then the next writer lost power after its %s, "
                     "mode 0x%x seed %llu", where, step, modes[k], (unsigned long long)seed2);
            CHECK(io_sim_crash_into(sim, modes[k], seed2, x->state, NULL) == 0, "crash_into %s", x->state);
            struct content c;
            check_state(x, x->state, h2, 0, &c);
            g_tally->process++;
        }
        sim->ops->destroy(sim);
    }
    free(h2);
    memcpy(g_where, where, sizeof where);
}

/* Runs the workload, crashing after step n (0: never); returns the frozen
 * simulator (retained) with the history in *h, or NULL when the run ended
 * before step n. */
static struct io *run_workload(struct explorer *x, uint64_t n, struct hist *h)
{
    tu_rmrf(x->run); /* the engine makes the directory (and must sync its parent) */
    struct io *sim = io_sim_create(io_posix_create(), x->run);
    CHECK(sim != NULL, "io_sim_create");
    io_sim_retain(sim);
    io_sim_crash_after(sim, n);
    if (x->w.async)
        io_sim_sync_delay(sim, 200); /* lets the writer get batches ahead of the syncer */
    if (n == 0)
        io_sim_trace(sim, record_trace, x);
    stele_options o = opts_for(&x->w, x->w.durability);
    stele_log *log = NULL;
    h->n = 0;
    int code = stele_open_io(x->run, &o, x->lie ? liar_create(sim, x->lie) : sim, &log);
    CHECK(code == STELE_OK || io_sim_frozen(sim), "open of a new log: %s: %s", stele_strerror(code), stele_errmsg());
    if (code == STELE_OK) {
        struct hook hook;
        hook_attach(&hook, log, sim, x->run);
        const struct call *calls[CALLS_MAX];
        for (int i = 0; i < x->w.ncall; i++)
            calls[i] = &x->w.call[i];
        uint64_t ver[STREAMS] = {0};
        run_calls(log, &x->w, calls, x->w.ncall, 0, h, ver);
        mark_promised(h, 0, x->w.durability);
        (void)stele_close(log);
        CHECK(!hook.bad || x->hook_off, "%s", hook.msg);
    }
    io_sim_trace(sim, NULL, NULL);
    if (n && !io_sim_frozen(sim)) {
        sim->ops->destroy(sim);
        return NULL;
    }
    return sim;
}

/* The clean run: nothing fails but what the workload makes fail on purpose
 * (a wrong expected version; a known key with another payload). */
static void check_clean_run(const struct hist *h)
{
    for (int i = 0; i < h->n; i++) {
        const struct entry *en = &h->e[i];
        int want = en->call->expect == EXPECT_WRONG ? STELE_ERR_STREAM_VERSION
                   : en->code == STELE_ERR_CONFLICT ? STELE_ERR_CONFLICT
                                                    : STELE_OK;
        CHECK(en->code == want, "clean run: call %d returned %d (%s): %s", i, en->code, stele_strerror(en->code),
              stele_errmsg());
    }
}

/* Explores every crash point of one workload. */
static void explore_workload(struct explorer *x, uint64_t seed, int nested_every, int process_every)
{
    workload_init(&x->w, seed);
    g_seed = seed;
    struct hist *h = malloc(sizeof *h);
    CHECK(h != NULL, "malloc");
    where_set("workload seed %llu, clean run", (unsigned long long)seed);
    struct io *sim = run_workload(x, 0, h);
    x->steps = io_sim_steps(sim);
    CHECK(x->steps <= STEPS_MAX, "%llu steps", (unsigned long long)x->steps);
    sim->ops->destroy(sim);
    check_clean_run(h);
    struct content c;
    uint64_t *seen = malloc(64 * sizeof *seen);
    for (uint64_t n = 1; n <= x->steps; n++) {
        where_set("workload seed %llu (STELE_TEST_SEED), crash after step %llu of %llu (%s)",
                 (unsigned long long)seed, (unsigned long long)n, (unsigned long long)x->steps, x->trace[n]);
        sim = run_workload(x, n, h);
        /* Async runs depend on thread timing: each is checked on its own
         * terms, and a run may end before step n. Blocking runs must repeat
         * the clean run step for step, or crash points would be missed. */
        if (!sim && x->w.async) {
            if (getenv("STELE_SIM_DEBUG"))
                fprintf(stderr, "async seed %llu: run ended before step %llu\n", (unsigned long long)seed,
                        (unsigned long long)n);
            continue;
        }
        CHECK(sim != NULL, "the run ended before step %llu", (unsigned long long)n);
        char step[600];
        io_sim_last_step(sim, step, sizeof step);
        CHECK(x->w.async || strstr(step, x->trace[n]) != NULL,
              "not deterministic: step %llu is '%s' in the clean run, '%s' now", (unsigned long long)n, x->trace[n],
              step);
        where_set("workload seed %llu (STELE_TEST_SEED)%s, crash after %s of %llu", (unsigned long long)seed,
                  x->w.async ? " (async)" : "", step, (unsigned long long)x->steps);
        g_tally->points++;
        uint64_t data_ops, dir_ops;
        io_sim_pending(sim, &data_ops, &dir_ops);
        g_tally->in_flight += io_sim_pending_writes(sim) >= 2;
        unsigned modes[64];
        int nm = modes_for(data_ops, dir_ops, modes, 64), nseen = 0;
        char where[sizeof g_where];
        memcpy(where, g_where, sizeof where);
        for (int k = 0; k < nm; k++) {
            uint64_t st_seed = mix(seed, n * 64 + (uint64_t)k), digest;
            where_set("%s, mode 0x%x seed %llu, state in %s", where, modes[k],
                     (unsigned long long)st_seed, x->state);
            CHECK(io_sim_crash_into(sim, modes[k], st_seed, NULL, &digest) == 0, "crash digest");
            int dup = 0;
            for (int i = 0; i < nseen && !dup; i++)
                dup = seen[i] == digest;
            if (dup) {
                g_tally->repeats++;
                continue;
            }
            seen[nseen++] = digest;
            CHECK(io_sim_crash_into(sim, modes[k], st_seed, x->state, NULL) == 0, "crash_into %s", x->state);
            uint64_t rsteps = check_state(x, x->state, h, 1, &c);
            g_tally->states++;
            if (nested_every && mix(st_seed, 1) % (uint64_t)nested_every == 0)
                explore_nested(x, sim, modes[k], st_seed, rsteps, h, &c);
        }
        memcpy(g_where, where, sizeof where);
        if (process_every && n % (uint64_t)process_every == 0)
            explore_process_crash(x, sim, h, mix(seed, n));
        sim->ops->destroy(sim);
    }
    free(seen);
    free(h);
    workload_free(&x->w);
    g_tally->workloads++;
}

static void explorer_init(struct explorer *x, const char *base, int worker)
{
    memset(x, 0, sizeof *x);
    snprintf(x->base, sizeof x->base, "%s/w%d", base, worker);
    snprintf(x->run, sizeof x->run, "%s/run", x->base);
    snprintf(x->state, sizeof x->state, "%s/state", x->base);
    snprintf(x->nest, sizeof x->nest, "%s/nest", x->base);
    snprintf(x->nest2, sizeof x->nest2, "%s/nest2", x->base);
    snprintf(x->proc, sizeof x->proc, "%s/proc", x->base);
    mkdir(x->base, 0755);
}

static void explorer_free(struct explorer *x)
{
    for (int i = 0; i <= STEPS_MAX; i++)
        free(x->trace[i]);
    tu_rmrf(x->base);
}

/* ------------------------------------------------------------ driver */

struct plan {
    uint64_t seed;
    uint64_t states;
    int jobs;
    int nested_every;    /* 1 in nested_every states also gets S7 */
    int process_every;   /* every process_every-th crash point also gets S8 */
    int progress;
    int lie;             /* the lying-storage tests */
    int hook_off;
};

static void worker_main(const struct plan *p, const char *base, int worker)
{
    struct explorer *x = malloc(sizeof *x);
    if (!x)
        _exit(2);
    explorer_init(x, base, worker);
    x->lie = p->lie;
    x->hook_off = p->hook_off;
    g_quiet = p->lie != LIE_NONE;
    uint64_t want = (p->states + (uint64_t)p->jobs - 1) / (uint64_t)p->jobs;
    time_t last = time(NULL);
    for (uint64_t i = (uint64_t)worker; g_tally->states + g_tally->nested + g_tally->process < want;
         i += (uint64_t)p->jobs) {
        explore_workload(x, p->seed + i, p->nested_every, p->process_every);
        if (p->progress && time(NULL) - last >= 10) {
            last = time(NULL);
            fprintf(stderr, "sim worker %d: %llu workloads, %llu states (+%llu nested, +%llu process-crash)\n", worker,
                    (unsigned long long)g_tally->workloads, (unsigned long long)g_tally->states,
                    (unsigned long long)g_tally->nested, (unsigned long long)g_tally->process);
        }
    }
    explorer_free(x);
    free(x);
    if (__lsan_do_leak_check)
        __lsan_do_leak_check();
    _exit(0);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : dflt;
}

/* Runs the plan in p->jobs worker processes; returns 0 or 1 with *out the totals. */
static int explore(const struct plan *p, struct tally *out, char *msg, size_t msg_capacity)
{
    if (access("/dev/shm", W_OK) == 0 && !getenv("STELE_SIM_TMP"))
        setenv("STELE_TEST_TMP", "/dev/shm", 1);
    else if (getenv("STELE_SIM_TMP"))
        setenv("STELE_TEST_TMP", getenv("STELE_SIM_TMP"), 1);
    char *base = tu_tmpdir("sim");
    if (!base) {
        snprintf(msg, msg_capacity, "no scratch directory");
        return 1;
    }
    struct tally *t = mmap(NULL, JOBS_MAX * sizeof *t, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED) {
        snprintf(msg, msg_capacity, "mmap: %s", strerror(errno));
        return 1;
    }
    memset(t, 0, JOBS_MAX * sizeof *t);
    pid_t pids[JOBS_MAX];
    for (int k = 0; k < p->jobs; k++) {
        fflush(NULL);
        pids[k] = fork();
        if (pids[k] == 0) {
            g_tally = &t[k];
            worker_main(p, base, k);
        }
    }
    int failed = 0;
    memset(out, 0, sizeof *out);
    msg[0] = '\0';
    for (int k = 0; k < p->jobs; k++) {
        int status = 0;
        waitpid(pids[k], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            if (!failed)
                snprintf(msg, msg_capacity, "worker %d %s %d: %s", k,
                         WIFSIGNALED(status) ? "killed by signal" : "exited with",
                         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                         t[k].failed ? t[k].msg : "(no message)");
            failed = 1;
        }
        out->states += t[k].states;
        out->repeats += t[k].repeats;
        out->nested += t[k].nested;
        out->process += t[k].process;
        out->points += t[k].points;
        out->workloads += t[k].workloads;
        out->torn_cut += t[k].torn_cut;
        out->in_flight += t[k].in_flight;
        out->recovery_eio += t[k].recovery_eio;
    }
    munmap(t, JOBS_MAX * sizeof *t);
    if (!failed || p->lie != LIE_NONE)
        tu_rmrf(base);
    else
        fprintf(stderr, "sim: scratch directories kept in %s\n", base);
    free(base);
    return failed;
}

static struct plan plan_from_env(int soak)
{
    struct plan p = {0};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    p.jobs = (int)env_u64("STELE_SIM_JOBS", cpus > 0 ? (uint64_t)cpus : 1);
    if (p.jobs < 1)
        p.jobs = 1;
    if (p.jobs > JOBS_MAX)
        p.jobs = JOBS_MAX;
    p.states = env_u64("STELE_SIM_STATES", soak ? 5000000 : STATES_DEFAULT);
    p.nested_every = (int)env_u64("STELE_SIM_NESTED_EVERY", 10);
    p.process_every = (int)env_u64("STELE_SIM_PROCESS_EVERY", 12);
    p.progress = soak || getenv("STELE_SIM_PROGRESS") != NULL;
    if (soak)
        p.seed = tu_seed("sim soak");
    else
        p.seed = env_u64("STELE_TEST_SEED", 1);
    return p;
}

static void report(const struct plan *p, const struct tally *t, double secs)
{
    fprintf(stderr,
            "check_sim: %llu crash states explored in %.1f s (%d workers, seeds %llu..%llu): %llu workloads, %llu "
            "crash points, %llu states after a crash inside recovery (S7), %llu after a process crash and power "
            "loss (S8); also %llu recoveries failed with EIO and rerun; %llu states had a torn tail cut; %llu crash "
            "points had 2+ unsynced writes; %llu repeated states skipped\n",
            (unsigned long long)(t->states + t->nested + t->process), secs, p->jobs, (unsigned long long)p->seed,
            (unsigned long long)(p->seed + t->workloads - 1), (unsigned long long)t->workloads,
            (unsigned long long)t->points, (unsigned long long)t->nested, (unsigned long long)t->process,
            (unsigned long long)t->recovery_eio, (unsigned long long)t->torn_cut, (unsigned long long)t->in_flight,
            (unsigned long long)t->repeats);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ the simulator itself */

static char *model_dir(const char *tag)
{
    if (access("/dev/shm", W_OK) == 0)
        setenv("STELE_TEST_TMP", "/dev/shm", 1);
    char *d = tu_tmpdir(tag);
    ck_assert_ptr_nonnull(d);
    return d;
}

/* The file name in dir after a crash in mode: its bytes (NULL if absent). */
static uint8_t *crashed(struct io *io, unsigned mode, uint64_t seed, const char *dst, const char *name,
                        size_t *out_size, mode_t *out_mode)
{
    ck_assert_int_eq(io_sim_crash_into(io, mode, seed, dst, NULL), 0);
    char *path = tu_path(dst, name);
    struct stat st;
    uint8_t *buf = NULL;
    if (stat(path, &st) == 0) {
        buf = tu_read_file(path, out_size);
        ck_assert_ptr_nonnull(buf);
        if (out_mode)
            *out_mode = st.st_mode & 0777;
    }
    free(path);
    return buf;
}

static int sim_write_str(struct io *io, int fd, const char *s, uint64_t off, int datasync)
{
    return io->ops->write(io, fd, s, strlen(s), off, datasync);
}

/* A simulator over a fresh directory, a second one for crash states, and a
 * file "a" created, written ("hello"), synced and its entry synced. */
struct fixture {
    char *dir, *dst, *a;
    struct io *io;
    int fd;
};

static void fixture_open(struct fixture *fx, const char *tag)
{
    fx->dir = model_dir(tag);
    fx->dst = model_dir("simmodel-crash");
    fx->a = tu_path(fx->dir, "a");
    fx->io = io_sim_create(io_posix_create(), fx->dir);
    ck_assert_ptr_nonnull(fx->io);
    fx->fd = fx->io->ops->open(fx->io, fx->a, O_RDWR | O_CREAT, 0644);
    ck_assert_int_ge(fx->fd, 3);
    ck_assert_int_eq(sim_write_str(fx->io, fx->fd, "hello", 0, 1), 0);
    ck_assert_int_eq(fx->io->ops->sync_dir(fx->io, fx->dir), 0);
}

static void fixture_close(struct fixture *fx)
{
    fx->io->ops->close(fx->io, fx->fd);
    fx->io->ops->destroy(fx->io);
    tu_rmrf(fx->dir);
    tu_rmrf(fx->dst);
    free(fx->a);
    free(fx->dir);
    free(fx->dst);
}

/* Exactly the bytes want (size n) are in name after a crash in mode. */
static void expect_crashed(struct fixture *fx, unsigned mode, uint64_t seed, const char *name, const char *want,
                           size_t n)
{
    size_t got_n = 0;
    uint8_t *got = crashed(fx->io, mode, seed, fx->dst, name, &got_n, NULL);
    ck_assert_msg(got && got_n == n && memcmp(got, want, n) == 0, "mode 0x%x: %s is %zu bytes '%.*s'", mode, name,
                  got_n, (int)got_n, got ? (const char *)got : "");
    free(got);
}

/* A created file is durable only after its data sync and a directory sync. */
START_TEST(test_sim_durable)
{
    char *dir = model_dir("simmodel"), *dst = model_dir("simmodel-crash"), *a = tu_path(dir, "a");
    struct io *io = io_sim_create(io_posix_create(), dir);
    ck_assert_ptr_nonnull(io);
    size_t n;
    int fd = io->ops->open(io, a, O_RDWR | O_CREAT, 0644);
    ck_assert_int_ge(fd, 3);
    ck_assert_int_eq(sim_write_str(io, fd, "hello", 0, 0), 0);
    ck_assert_int_eq(io_sim_check_durable(io, a, 0, 5), 0);
    ck_assert_int_eq(io->ops->fdatasync(io, fd), 0);
    ck_assert_int_eq(io_sim_check_durable(io, a, 0, 5), 0); /* the entry is not durable yet */
    ck_assert_ptr_null(crashed(io, IO_SIM_DATA_KEEP | IO_SIM_DIR_DROP, 1, dst, "a", &n, NULL));
    ck_assert_int_eq(io->ops->sync_dir(io, dir), 0);
    ck_assert_int_eq(io_sim_check_durable(io, a, 0, 5), 1);
    ck_assert_int_eq(io_sim_check_durable(io, a, 0, 6), 0); /* past the durable size */
    ck_assert_uint_eq(io_sim_steps(io), 4);
    ck_assert_int_eq(sim_write_str(io, fd, "WORLD", 5, 0), 0);
    ck_assert_int_eq(io_sim_check_durable(io, a, 0, 5), 1);
    ck_assert_int_eq(io_sim_check_durable(io, a, 4, 2), 0);
    io->ops->close(io, fd);
    io->ops->destroy(io);
    tu_rmrf(dir);
    tu_rmrf(dst);
    free(a);
    free(dir);
    free(dst);
}
END_TEST

/* Unsynced data dropped, kept, torn after 1 or 3 bytes with each fill, or
 * kept sector by sector; the same mode and seed give the same state. */
START_TEST(test_sim_crash_modes)
{
    struct fixture fx;
    fixture_open(&fx, "simmodes");
    ck_assert_int_eq(sim_write_str(fx.io, fx.fd, "WORLD", 5, 0), 0);
    expect_crashed(&fx, IO_SIM_DATA_DROP, 1, "a", "hello", 5);
    expect_crashed(&fx, IO_SIM_DATA_KEEP, 1, "a", "helloWORLD", 10);
    expect_crashed(&fx, IO_SIM_DATA_TEAR | IO_SIM_TEAR_1 | IO_SIM_FILL_ZERO, 1, "a", "helloW\0\0\0\0", 10);
    expect_crashed(&fx, IO_SIM_DATA_TEAR | IO_SIM_TEAR_3 | IO_SIM_FILL_OLD, 1, "a", "helloWOR\0\0", 10);
    size_t n;
    uint8_t *got = crashed(fx.io, IO_SIM_DATA_TEAR | IO_SIM_TEAR_3 | IO_SIM_FILL_GARBAGE, 1, fx.dst, "a", &n, NULL);
    ck_assert(got && n == 10 && memcmp(got, "helloWOR", 8) == 0);
    free(got);
    /* A tear of an overwrite with old fill shows the old bytes after the tear. */
    ck_assert_int_eq(fx.io->ops->fdatasync(fx.io, fx.fd), 0);
    ck_assert_int_eq(sim_write_str(fx.io, fx.fd, "abcdefghij", 0, 0), 0);
    expect_crashed(&fx, IO_SIM_DATA_TEAR | IO_SIM_TEAR_3 | IO_SIM_FILL_OLD, 1, "a", "abcloWORLD", 10);
    /* Sectors: each unsynced 512-byte sector is all new or all old. */
    static uint8_t zeros[4096], ones[4096];
    memset(ones, 1, sizeof ones);
    ck_assert_int_eq(fx.io->ops->write(fx.io, fx.fd, zeros, sizeof zeros, 0, 1), 0);
    ck_assert_int_eq(fx.io->ops->write(fx.io, fx.fd, ones, sizeof ones, 0, 0), 0);
    int mixed = 0;
    for (uint64_t seed = 1; seed < 20; seed++) {
        got = crashed(fx.io, IO_SIM_DATA_SECTORS, seed, fx.dst, "a", &n, NULL);
        ck_assert_uint_eq(n, 4096);
        int news = 0;
        for (int sct = 0; sct < 8; sct++) {
            for (int i = 0; i < 512; i++)
                ck_assert_int_eq(got[sct * 512 + i], got[sct * 512]);
            news += got[sct * 512];
        }
        mixed |= news > 0 && news < 8;
        free(got);
    }
    ck_assert(mixed);
    uint64_t d1, d2, d3;
    ck_assert_int_eq(io_sim_crash_into(fx.io, IO_SIM_DATA_SECTORS, 7, fx.dst, &d1), 0);
    ck_assert_int_eq(io_sim_crash_into(fx.io, IO_SIM_DATA_SECTORS, 7, NULL, &d2), 0);
    ck_assert_int_eq(io_sim_crash_into(fx.io, IO_SIM_DATA_KEEP, 7, NULL, &d3), 0);
    ck_assert(d1 == d2 && d1 != d3);
    fixture_close(&fx);
}
END_TEST

/* Creates, renames and unlinks revert unless the directory was synced; a
 * mode is durable with fsync, not fdatasync; a directory made after the
 * simulator started needs its parent synced. */
START_TEST(test_sim_directory)
{
    struct fixture fx;
    fixture_open(&fx, "simdir");
    char *b = tu_path(fx.dir, "b"), *c = tu_path(fx.dir, "c");
    int fb = fx.io->ops->open(fx.io, b, O_RDWR | O_CREAT | O_EXCL, 0644);
    ck_assert_int_ge(fb, 3);
    ck_assert_int_eq(sim_write_str(fx.io, fb, "x", 0, 1), 0);
    ck_assert_int_eq(fx.io->ops->rename(fx.io, b, c), 0);
    ck_assert_int_eq(io_sim_check_durable(fx.io, c, 0, 1), 0);
    size_t n;
    mode_t mo;
    ck_assert_ptr_null(crashed(fx.io, IO_SIM_DATA_KEEP | IO_SIM_DIR_DROP, 1, fx.dst, "c", &n, NULL));
    ck_assert_ptr_null(crashed(fx.io, IO_SIM_DATA_KEEP | IO_SIM_DIR_DROP, 1, fx.dst, "b", &n, NULL));
    expect_crashed(&fx, IO_SIM_DATA_DROP | IO_SIM_DIR_KEEP, 1, "c", "x", 1);
    ck_assert_int_eq(fx.io->ops->sync_dir(fx.io, fx.dir), 0);
    ck_assert_int_eq(io_sim_check_durable(fx.io, c, 0, 1), 1);
    ck_assert_int_eq(fx.io->ops->unlink(fx.io, fx.a), 0);
    expect_crashed(&fx, IO_SIM_DATA_DROP | IO_SIM_DIR_DROP, 1, "a", "hello", 5);
    ck_assert_ptr_null(crashed(fx.io, IO_SIM_DATA_DROP | IO_SIM_DIR_KEEP, 1, fx.dst, "a", &n, NULL));
    ck_assert_int_eq(fx.io->ops->fchmod(fx.io, fb, 0444), 0);
    ck_assert_int_eq(fx.io->ops->ftruncate(fx.io, fb, 8192), 0);
    ck_assert_int_eq(fx.io->ops->fdatasync(fx.io, fb), 0);
    free(crashed(fx.io, IO_SIM_DATA_DROP, 1, fx.dst, "c", &n, &mo));
    ck_assert(n == 8192 && mo == 0644);
    ck_assert_int_eq(fx.io->ops->fsync(fx.io, fb), 0);
    free(crashed(fx.io, IO_SIM_DATA_DROP, 1, fx.dst, "c", &n, &mo));
    ck_assert(n == 8192 && mo == 0444);
    fx.io->ops->close(fx.io, fb);

    char *sub = tu_path(fx.dst, "log"), *f = tu_path(sub, "f"), *dst2 = model_dir("simmodel-crash2");
    struct io *io2 = io_sim_create(io_posix_create(), sub);
    ck_assert_ptr_nonnull(io2);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    int ff = io2->ops->open(io2, f, O_RDWR | O_CREAT, 0644);
    ck_assert_int_ge(ff, 3);
    ck_assert_int_eq(sim_write_str(io2, ff, "q", 0, 1), 0);
    ck_assert_int_eq(io2->ops->sync_dir(io2, sub), 0);
    ck_assert_int_eq(io_sim_check_durable(io2, f, 0, 1), 0);
    ck_assert_ptr_null(crashed(io2, IO_SIM_DATA_KEEP | IO_SIM_DIR_DROP, 1, dst2, "f", &n, NULL));
    ck_assert_int_eq(io2->ops->sync_dir(io2, fx.dst), 0);
    ck_assert_int_eq(io_sim_check_durable(io2, f, 0, 1), 1);
    uint8_t *got = crashed(io2, IO_SIM_DATA_DROP | IO_SIM_DIR_DROP, 1, dst2, "f", &n, NULL);
    ck_assert(got && n == 1 && got[0] == 'q');
    free(got);
    io2->ops->close(io2, ff);
    io2->ops->destroy(io2);
    tu_rmrf(dst2);
    free(dst2);
    free(f);
    free(sub);
    free(b);
    free(c);
    fixture_close(&fx);
}
END_TEST

/* A process crash: the next process sees the page cache, and a power loss
 * later still takes what was never synced. Frozen after step n: later
 * mutating calls fail and change nothing. In place: the directory itself
 * then holds the crash state. */
START_TEST(test_sim_freeze)
{
    struct fixture fx;
    fixture_open(&fx, "simfreeze");
    ck_assert_int_eq(sim_write_str(fx.io, fx.fd, "yy", 0, 0), 0);
    struct io *next = io_sim_process_crash(fx.io, fx.dst);
    ck_assert_ptr_nonnull(next);
    char *da = tu_path(fx.dst, "a"), *dst2 = model_dir("simmodel-crash2");
    size_t n;
    uint8_t *got = tu_read_file(da, &n);
    ck_assert(got && n == 5 && memcmp(got, "yyllo", 5) == 0);
    free(got);
    got = crashed(next, IO_SIM_DATA_DROP, 1, dst2, "a", &n, NULL);
    ck_assert(got && n == 5 && memcmp(got, "hello", 5) == 0);
    free(got);
    next->ops->destroy(next);

    io_sim_crash_after(fx.io, io_sim_steps(fx.io) + 1);
    ck_assert_int_eq(sim_write_str(fx.io, fx.fd, "z", 0, 0), 0);
    ck_assert_int_eq(io_sim_frozen(fx.io), 1);
    ck_assert_int_eq(sim_write_str(fx.io, fx.fd, "Q", 1, 0), -EIO);
    ck_assert_int_eq(fx.io->ops->fdatasync(fx.io, fx.fd), -EIO);
    ck_assert_int_eq(fx.io->ops->sync_dir(fx.io, fx.dir), -EIO);
    char *b = tu_path(fx.dir, "b");
    ck_assert_int_lt(fx.io->ops->open(fx.io, b, O_RDWR | O_CREAT, 0644), 0);
    got = tu_read_file(fx.a, &n);
    ck_assert(got && n == 5 && memcmp(got, "zyllo", 5) == 0);
    free(got);
    char desc[600];
    io_sim_last_step(fx.io, desc, sizeof desc);
    ck_assert_ptr_nonnull(strstr(desc, "write a offset 0 size 1"));
    ck_assert_int_eq(io_sim_crash(fx.io, IO_SIM_DATA_DROP | IO_SIM_DIR_DROP, 1), 0);
    got = tu_read_file(fx.a, &n);
    ck_assert(got && n == 5 && memcmp(got, "hello", 5) == 0);
    free(got);
    tu_rmrf(dst2);
    free(dst2);
    free(da);
    free(b);
    fixture_close(&fx);
}
END_TEST

/* The last LSN a plain writer open of dir finds (verify must agree). */
static uint64_t recovered_last(const char *dir)
{
    stele_options o;
    stele_options_init(&o);
    o.io_backend = STELE_IO_POSIX;
    stele_log *log = NULL;
    int code = stele_open(dir, &o, &log);
    ck_assert_msg(code == STELE_OK, "open %s: %s", dir, stele_errmsg());
    stele_stats st;
    ck_assert_int_eq(stele_stats_get(log, &st), STELE_OK);
    ck_assert_int_eq(stele_close(log), STELE_OK);
    stele_verify_report rep;
    ck_assert_int_eq(stele_verify(dir, NULL, NULL, &rep), STELE_OK);
    ck_assert_uint_eq(rep.last_lsn, st.last_lsn);
    return st.last_lsn;
}

/* S7 regression (found by the exploration, workload seed 82): the last
 * batch torn after its first sector, the rest garbage. Recovery cuts it and
 * zeroes the tail; a crash while it zeroes, with the sectors of that write
 * reaching the disk in any subset, must never make the cut batch whole again
 * (its padding is zeros, so zeroing the garbage alone would). */
START_TEST(test_zeroing_idempotent)
{
    char *dir = model_dir("simzero"), *run = model_dir("simzero-run"), *dst = model_dir("simzero-crash");
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.segment_size = SEG_SIZE;
    o.payload_size_max = PAYLOAD_MAX;
    o.io_backend = STELE_IO_POSIX;
    stele_log *log = NULL;
    ck_assert_int_eq(stele_open(dir, &o, &log), STELE_OK);
    for (int i = 0; i < 5; i++) { /* one small batch per block, at 4096 * (i + 1) */
        stele_event ev = {0};
        ev.payload = "a small payload";
        ev.payload_size = 15;
        stele_receipt rc;
        ck_assert_int_eq(stele_append(log, &ev, &rc), STELE_OK);
    }
    ck_assert_int_eq(stele_close(log), STELE_OK);
    char *seg = tu_path(dir, "00000000000000000001.seg");
    size_t n;
    uint8_t *bytes = tu_read_file(seg, &n);
    ck_assert(bytes && n == SEG_SIZE);
    uint64_t rng = 82;
    for (size_t i = 5 * 4096 + 512; i < 6 * 4096; i++)
        bytes[i] = (uint8_t)(tu_rand(&rng) >> 40);
    ck_assert_int_eq(tu_write_file(seg, bytes, n), 0);
    free(bytes);
    /* How many steps recovery takes here (a copy, run to the end). */
    o.create = 0;
    ck_assert_int_eq(tu_copy_dir(dir, run), 0);
    struct io *sim = io_sim_create(io_posix_create(), run);
    io_sim_retain(sim);
    ck_assert_int_eq(stele_open_io(run, &o, sim, &log), STELE_OK);
    uint64_t steps = io_sim_steps(sim);
    ck_assert_int_eq(stele_close(log), STELE_OK);
    sim->ops->destroy(sim);
    ck_assert_uint_ge(steps, 3); /* directory sync, data sync, zeroing */
    for (uint64_t m = 1; m <= steps; m++) {
        tu_rmrf(run);
        ck_assert_int_eq(tu_copy_dir(dir, run), 0);
        sim = io_sim_create(io_posix_create(), run);
        io_sim_retain(sim);
        io_sim_crash_after(sim, m);
        if (stele_open_io(run, &o, sim, &log) == STELE_OK)
            (void)stele_close(log);
        for (uint64_t seed = 1; seed <= 256; seed++) {
            ck_assert_int_eq(io_sim_crash_into(sim, IO_SIM_DATA_SECTORS, seed, dst, NULL), 0);
            ck_assert_msg(recovered_last(dst) == 4, "recovery crashed after its step %llu (sectors seed %llu) and "
                          "the rerun kept LSN 5, which it had cut", (unsigned long long)m, (unsigned long long)seed);
        }
        sim->ops->destroy(sim);
    }
    ck_assert_uint_eq(recovered_last(dir), 4);
    tu_rmrf(dir);
    tu_rmrf(run);
    tu_rmrf(dst);
    free(seg);
    free(dir);
    free(run);
    free(dst);
}
END_TEST

struct overlap {
    struct io *io;
    int fd;
    int r;
};

static void *overlap_write(void *arg)
{
    struct overlap *o = arg;
    o->r = sim_write_str(o->io, o->fd, "abc", 0, 0);
    return NULL;
}

/* S15: a write still running when a sync starts is not covered by it, even
 * if it completes before the sync returns. */
START_TEST(test_sim_overlap)
{
    char *dir = model_dir("simoverlap");
    char *a = tu_path(dir, "a");
    struct io *gate = liar_create(io_posix_create(), LIE_NONE);
    struct liar *l = (struct liar *)gate;
    struct io *io = io_sim_create(gate, dir);
    ck_assert_ptr_nonnull(io);
    int fd = io->ops->open(io, a, O_RDWR | O_CREAT, 0644);
    ck_assert_int_ge(fd, 3);
    ck_assert_int_eq(io->ops->fdatasync(io, fd), 0);
    ck_assert_int_eq(io->ops->sync_dir(io, dir), 0);
    l->gated = 1;
    struct overlap o = {io, fd, 1};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, overlap_write, &o), 0);
    pthread_mutex_lock(&l->lock);
    while (!l->inside)
        pthread_cond_wait(&l->cond, &l->lock);
    pthread_mutex_unlock(&l->lock);
    /* The write is inside the file system; this sync starts now. */
    ck_assert_int_eq(io->ops->fdatasync(io, fd), 0);
    pthread_mutex_lock(&l->lock);
    l->open = 1;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
    pthread_join(t, NULL);
    ck_assert_int_eq(o.r, 0);
    ck_assert_int_eq(io_sim_check_durable(io, a, 0, 3), 0);
    ck_assert_int_eq(io->ops->fdatasync(io, fd), 0);
    ck_assert_int_eq(io_sim_check_durable(io, a, 0, 3), 1);
    io->ops->close(io, fd);
    io->ops->destroy(io);
    tu_rmrf(dir);
    free(a);
    free(dir);
}
END_TEST

/* Storage that skips fdatasync or the directory sync while claiming them:
 * the ack hook (I0) must catch it, and with the hook ignored, the crash
 * states must (I1, or a log that no longer opens). */
static const struct {
    int lie;
    int hook_off;
    const char *want[3];
} lies[] = {
    {LIE_DATASYNC, 0, {"I0:", "I0:", "I0:"}},
    {LIE_DATASYNC, 1, {"I1:", "I7:", "reopening the crash state"}},
    {LIE_DIRSYNC, 0, {"I0:", "I0:", "I0:"}},
    {LIE_DIRSYNC, 1, {"I1:", "I7:", "reopening the crash state"}},
};

START_TEST(test_lying_storage)
{
    struct plan p = {.seed = 1, .states = 5000, .jobs = 1, .lie = lies[_i].lie, .hook_off = lies[_i].hook_off};
    struct tally t;
    char msg[4096 + 256];
    int failed = explore(&p, &t, msg, sizeof msg);
    ck_assert_msg(failed, "storage lying (%d, hook %s) went unnoticed over %llu states", lies[_i].lie,
                  lies[_i].hook_off ? "off" : "on", (unsigned long long)t.states);
    ck_assert_msg(strstr(msg, lies[_i].want[0]) || strstr(msg, lies[_i].want[1]) || strstr(msg, lies[_i].want[2]),
                  "lying storage (%d) caught, but not as expected: %s", lies[_i].lie, msg);
    char *nl = strchr(msg, '\n');
    fprintf(stderr, "check_sim: storage skipping %s (I0 hook %s) caught after %llu states: %.*s\n",
            lies[_i].lie == LIE_DATASYNC ? "fdatasync" : "directory syncs", lies[_i].hook_off ? "ignored" : "on",
            (unsigned long long)(t.states + t.nested + t.process), nl ? (int)(nl - msg) : (int)strlen(msg), msg);
}
END_TEST

START_TEST(test_crash_states)
{
    struct plan p = plan_from_env(0);
    fprintf(stderr, "check_sim: exploring at least %llu crash states from workload seed %llu "
            "(STELE_SIM_STATES, STELE_TEST_SEED)\n", (unsigned long long)p.states, (unsigned long long)p.seed);
    struct tally t;
    char msg[4096 + 256];
    double t0 = now_s();
    int failed = explore(&p, &t, msg, sizeof msg);
    report(&p, &t, now_s() - t0);
    ck_assert_msg(!failed, "%s", msg);
    ck_assert_uint_ge(t.states + t.nested + t.process, p.states);
}
END_TEST

int main(void)
{
    if (getenv("STELE_SIM_SOAK") && *getenv("STELE_SIM_SOAK") && strcmp(getenv("STELE_SIM_SOAK"), "0") != 0) {
        struct plan p = plan_from_env(1);
        struct tally t;
        char msg[4096 + 256];
        double t0 = now_s();
        int failed = explore(&p, &t, msg, sizeof msg);
        report(&p, &t, now_s() - t0);
        if (failed)
            fprintf(stderr, "sim soak FAILED (seed %llu): %s\n", (unsigned long long)p.seed, msg);
        return failed;
    }
    Suite *s = suite_create("sim");
    TCase *tc = tcase_create("model");
    tcase_add_test(tc, test_sim_durable);
    tcase_add_test(tc, test_sim_crash_modes);
    tcase_add_test(tc, test_sim_directory);
    tcase_add_test(tc, test_sim_freeze);
    tcase_add_test(tc, test_sim_overlap);
    tcase_add_test(tc, test_zeroing_idempotent);
    tcase_add_loop_test(tc, test_lying_storage, 0, (int)(sizeof lies / sizeof lies[0]));
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    tc = tcase_create("crash_states");
    tcase_add_test(tc, test_crash_states);
    tcase_set_timeout(tc, 1200);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/*
 * check_fault.c - proves that a failed write, sync or metadata operation is
 * never reported as success, fences the handle, and is recovered from by
 * reopening, without losing an acknowledged record or letting a key in twice
 * (RELIABILITY S9-S11, S13; SPEC.md §11.2).
 *
 * How: the log is opened with the internal stele_open_io() on the
 * fault-injecting backend (engine/io.h: io_fault_create wrapping the POSIX
 * backend), which counts calls per class and fails the Nth one.
 *  - The I/O-error loop. A fixed workload of keyed appends (singles, batches of
 *    3, and re-appends of earlier keys) runs with 64 KiB segments, so segments
 *    roll (seal, create, rename, directory sync) every few appends. For
 *    N = 1, 2, 3, ... the Nth write (then, separately, the Nth sync and the Nth
 *    metadata operation) fails with EIO or ENOSPC, once or forever, until a run
 *    completes without reaching the Nth call. After each run:
 *      - the append that met the fault got STELE_ERR_OUTCOME_UNKNOWN, or the
 *        I/O code when nothing of it was written; every later one got
 *        STELE_ERR_FENCED with a message carrying the original errno text;
 *        stats say fenced; no sync is issued after the fence; reads of every
 *        acknowledged record still work on the fenced handle; stele_close
 *        reports an error;
 *      - reopened with a plain POSIX backend, recovery succeeds: every append
 *        that was acknowledged is there at its LSN, byte for byte; none that
 *        was refused (FENCED, or the I/O code) is; LSNs are dense; no key is
 *        in the log twice;
 *      - retrying every failed key gives `new` or `duplicate` (pointing at the
 *        record already there), never a second record; verify is clean; every
 *        segment but the last is sealed read-only (0444), also when the fault
 *        came between a seal's sync and its chmod.
 *    The same loop runs in durability none (a stele_sync every 5 appends):
 *    durable_lsn then stops at the last successful stele_sync.
 *  - S9/S10: with 4 threads appending, one EIO on the Nth sync and successful
 *    syncs afterwards: no append of the failed batch or any later one is
 *    acknowledged, durable_lsn stops below it, and the engine issues no sync
 *    after the failure. In none and interval modes, a failed stele_sync or
 *    timer sync is never followed by a successful stele_sync.
 *  - S13: a short write (io_fault_short_write) at every write of the workload,
 *    keeping 0 bytes, part of a block, whole blocks, or everything: never
 *    acknowledged, same invariants; a torn batch is cut at reopen.
 *  - Opening (creating, recovering a torn tail) with the Nth I/O call failing:
 *    the open fails cleanly or works, and a later plain open finds the log whole.
 *  - Read-only handles expose durable batches only (SPEC.md §10.2): their
 *    open syncs the active segment; a refresh whose sync fails returns the
 *    errno and path, makes nothing new visible and fences the handle; a batch
 *    written while a refresh's sync runs (a hook in the backend's fdatasync
 *    appends through the writer) is not exposed by that refresh.
 */
#include <check.h>
#include <dirent.h>
#include <sys/stat.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"
#include "stele.h"
#include "testutil.h"

#define SEG_SMALL (64u * 1024u)
#define PAYLOAD_SMALL (16u * 1024u)
#define RUNS_MAX 400 /* a loop that never stops hitting its fault is a bug */

static stele_options opts_small(void)
{
    stele_options o;
    stele_options_init(&o);
    o.segment_size = SEG_SMALL;
    o.payload_size_max = PAYLOAD_SMALL;
    o.io_backend = STELE_IO_POSIX;
    return o;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* The payload every append of key carries: its size and bytes follow from the key. */
static size_t key_payload(const char *key, uint8_t *buf)
{
    uint64_t h = hash_str(key), s = h | 1;
    size_t n = 100 + (size_t)(h % 12000);
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0)
            s = tu_rand(&s);
        buf[i] = (uint8_t)(s >> (8 * (i % 8)));
    }
    return n;
}

static stele_log *open_plain(const char *dir)
{
    stele_options o = opts_small();
    stele_log *log = NULL;
    int rc = stele_open(dir, &o, &log);
    REQUIRE(rc == STELE_OK, "reopen %s with the POSIX backend: %s: %s", dir, stele_strerror(rc), stele_errmsg());
    return log;
}

static stele_stats stats_of(stele_log *log)
{
    stele_stats s;
    OK(stele_stats_get(log, &s));
    return s;
}

/* ------------------------------------------------------------ workload */

#define OPS 40
_Static_assert((OPS - 1) % 5 == 4, "in none mode the workload ends with a stele_sync");
#define KEYS_MAX (OPS * 3)

struct op {
    int nev;
    char keys[3][16];
    stele_receipt rc[3];
    int code;
    char msg[600];
    int synced;        /* a stele_sync followed this op */
    int sync_code;
    char sync_msg[600];
};

struct workload {
    struct op ops[OPS];
    stele_durability durability;
    uint64_t durable_expect; /* the LSN durable_lsn must show (check_run_codes) */
    uint64_t durable_seen;   /* none mode: what the fenced handle said was durable, at least durable_expect */
    int fault_err;           /* the errno the run injects */
};

/* Op i: a batch of 3 new keys every 4th, a re-append of an earlier key every
 * 7th, else one new key. Payload sizes 100..12100 bytes: a 64 KiB segment
 * holds a few batches, so the workload rolls 7 times. */
static void workload_init(struct workload *w, stele_durability durability)
{
    memset(w, 0, sizeof *w);
    w->durability = durability;
    for (int i = 0; i < OPS; i++) {
        struct op *op = &w->ops[i];
        if (i % 7 == 6) {
            op->nev = 1;
            memcpy(op->keys[0], w->ops[i - 3].keys[0], sizeof op->keys[0]);
        } else if (i % 4 == 3) {
            op->nev = 3;
            for (int j = 0; j < 3; j++)
                snprintf(op->keys[j], sizeof op->keys[j], "k%d%c", i, 'a' + j);
        } else {
            op->nev = 1;
            snprintf(op->keys[0], sizeof op->keys[0], "k%d", i);
        }
        /* In none mode, nothing is durable until stele_sync: one every 5 ops. */
        op->synced = durability == STELE_DURABILITY_NONE && i % 5 == 4;
    }
}

static int append_keys(stele_log *log, char (*keys)[16], int n, stele_receipt *rcs)
{
    static _Thread_local uint8_t bufs[3][PAYLOAD_SMALL]; /* appenders run in threads */
    stele_event evs[3];
    for (int j = 0; j < n; j++) {
        memset(&evs[j], 0, sizeof evs[j]);
        evs[j].key = keys[j];
        evs[j].key_size = strlen(keys[j]);
        evs[j].stream = "fault";
        evs[j].stream_size = 5;
        evs[j].payload = bufs[j];
        evs[j].payload_size = key_payload(keys[j], bufs[j]);
    }
    return stele_append_batch(log, evs, (size_t)n, rcs);
}

static void workload_run(stele_log *log, struct workload *w)
{
    for (int i = 0; i < OPS; i++) {
        struct op *op = &w->ops[i];
        op->code = append_keys(log, op->keys, op->nev, op->rc);
        snprintf(op->msg, sizeof op->msg, "%s", stele_errmsg());
        if (op->synced) {
            op->sync_code = stele_sync(log);
            snprintf(op->sync_msg, sizeof op->sync_msg, "%s", stele_errmsg());
        }
    }
}

/* What a reopened log holds: key -> LSN, checked byte for byte on the way. */
struct content {
    char keys[KEYS_MAX * 2][16];
    uint64_t lsns[KEYS_MAX * 2];
    int count;
    uint64_t last_lsn;
};

static uint64_t content_lsn(const struct content *c, const char *key)
{
    for (int i = 0; i < c->count; i++)
        if (strcmp(c->keys[i], key) == 0)
            return c->lsns[i];
    return 0;
}

static void content_read(stele_log *log, struct content *c)
{
    memset(c, 0, sizeof *c);
    static uint8_t buf[PAYLOAD_SMALL];
    stele_iter *it;
    OK(stele_iter_open(log, 1, &it));
    const stele_record *r;
    while (1) {
        OK(stele_iter_next(it, 0, &r));
        if (!r)
            break;
        REQUIRE(r->lsn == c->last_lsn + 1, "LSN %llu follows %llu: not dense", (unsigned long long)r->lsn,
                (unsigned long long)c->last_lsn);
        c->last_lsn = r->lsn;
        char key[16];
        REQUIRE(r->key_size > 0 && r->key_size < sizeof key, "LSN %llu: key of %zu bytes", (unsigned long long)r->lsn,
                r->key_size);
        memcpy(key, r->key, r->key_size);
        key[r->key_size] = '\0';
        REQUIRE(content_lsn(c, key) == 0, "key %s is in the log twice (LSN %llu and %llu)", key,
                (unsigned long long)content_lsn(c, key), (unsigned long long)r->lsn);
        size_t n = key_payload(key, buf);
        REQUIRE(r->payload_size == n && memcmp(r->payload, buf, n) == 0, "LSN %llu (key %s): payload differs",
                (unsigned long long)r->lsn, key);
        REQUIRE(r->stream_version == r->lsn, "LSN %llu: stream version %llu", (unsigned long long)r->lsn,
                (unsigned long long)r->stream_version);
        ck_assert_int_lt(c->count, KEYS_MAX * 2);
        snprintf(c->keys[c->count], sizeof c->keys[c->count], "%s", key);
        c->lsns[c->count++] = r->lsn;
    }
    stele_iter_close(it);
}

static int is_io_code(int code)
{
    return code == STELE_ERR_IO || code == STELE_ERR_NOSPACE;
}

/* The first failure of a run: the call that met the fault. An append gets
 * OUTCOME_UNKNOWN, or the I/O code when nothing of it was written (a failed
 * roll); a stele_sync the I/O code. In none mode a background thread writes
 * the acknowledged records (SPEC.md §11.1), so the fault may strike between
 * calls: the next call is then refused, FENCED, and names the fault. */
static void check_first_failure(int code, const char *msg, int err, const char *what, const char *call, int i,
                                int lazy)
{
    REQUIRE(code == STELE_ERR_OUTCOME_UNKNOWN || code == err_code_from_errno(err) || (lazy && code == STELE_ERR_FENCED),
            "%s: %s %d met the fault and returned %d (%s): %s", what, call, i, code, stele_strerror(code), msg);
    REQUIRE(strstr(msg, strerror(err)) != NULL, "%s: %s %d: message '%s' does not say '%s'", what, call, i, msg,
            strerror(err));
}

/* Checks the calls of a run: all OK until the fault, one failed call, then
 * FENCED. Sets w->durable_expect to the LSN the last successful sync covered. */
static void check_run_codes(struct workload *w, int hit, int err, const char *what)
{
    int failed = 0;
    uint64_t acked = 0;
    w->durable_expect = 0;
    for (int i = 0; i < OPS; i++) {
        const struct op *op = &w->ops[i];
        if (!failed && op->code == STELE_OK) {
            for (int j = 0; j < op->nev; j++) {
                REQUIRE(op->rc[j].code == STELE_OK, "%s: op %d: receipt %d code %d", what, i, j, op->rc[j].code);
                REQUIRE(op->rc[j].decision == (i % 7 == 6 ? STELE_DECISION_DUPLICATE : STELE_DECISION_NEW),
                        "%s: op %d: decision %d", what, i, op->rc[j].decision);
                if (i % 7 == 6)
                    REQUIRE(op->rc[0].lsn == w->ops[i - 3].rc[0].lsn, "%s: op %d: duplicate of LSN %llu, want %llu",
                            what, i, (unsigned long long)op->rc[0].lsn, (unsigned long long)w->ops[i - 3].rc[0].lsn);
                if (op->rc[j].lsn > acked)
                    acked = op->rc[j].lsn;
            }
            if (w->durability == STELE_DURABILITY_SYNC)
                w->durable_expect = acked;
        } else {
            REQUIRE(hit, "%s: op %d failed (%d: %s) but the fault was never reached", what, i, op->code, op->msg);
            if (!failed)
                check_first_failure(op->code, op->msg, err, what, "op", i, w->durability == STELE_DURABILITY_NONE);
            else
                REQUIRE(op->code == STELE_ERR_FENCED, "%s: op %d after the fault returned %d (%s), want FENCED: %s",
                        what, i, op->code, stele_strerror(op->code), op->msg);
            REQUIRE(strstr(op->msg, strerror(err)) != NULL, "%s: op %d: message '%s' does not say '%s'", what, i,
                    op->msg, strerror(err));
            for (int j = 0; j < op->nev; j++)
                REQUIRE((int)op->rc[j].code == op->code && op->rc[j].decision == STELE_DECISION_NONE,
                        "%s: op %d: receipt %d says code %d decision %d, the call %d", what, i, j, op->rc[j].code,
                        op->rc[j].decision, op->code);
            failed = 1;
        }
        if (!op->synced)
            continue;
        if (!failed && op->sync_code == STELE_OK) {
            w->durable_expect = acked;
            continue;
        }
        REQUIRE(hit, "%s: sync after op %d failed (%s) but the fault was never reached", what, i, op->sync_msg);
        if (!failed)
            check_first_failure(op->sync_code, op->sync_msg, err, what, "sync after op", i,
                                w->durability == STELE_DURABILITY_NONE);
        else
            REQUIRE(op->sync_code == STELE_ERR_FENCED, "%s: sync after op %d returned %d after the fault", what, i,
                    op->sync_code);
        failed = 1;
    }
    REQUIRE(hit == failed, "%s: fault reached %d, a call failed %d", what, hit, failed);
}

/* The fenced handle: appends and syncs refused, no more sync calls, reads
 * work. In none mode the records acknowledged after the last sync may not
 * have been written when the fault fenced the log: reading one is refused,
 * FENCED, and the durable LSN may be past the last successful stele_sync
 * (a background write and sync covered more), never past the acknowledged. */
static void check_fenced_handle(stele_log *log, struct io *io, struct workload *w, const char *what)
{
    stele_stats s = stats_of(log);
    int lazy = w->durability == STELE_DURABILITY_NONE;
    w->durable_seen = s.durable_lsn;
    REQUIRE(s.fenced == 1, "%s: stats do not say fenced", what);
    uint64_t syncs = io_fault_count(io, IO_FAULT_SYNC), writes = io_fault_count(io, IO_FAULT_WRITE);
    char key[1][16] = {"after-fence"};
    stele_receipt rc;
    EXPECT(append_keys(log, key, 1, &rc), STELE_ERR_FENCED);
    ck_assert_int_eq(rc.code, STELE_ERR_FENCED);
    EXPECT(stele_sync(log), STELE_ERR_FENCED);
    REQUIRE(io_fault_count(io, IO_FAULT_SYNC) == syncs && io_fault_count(io, IO_FAULT_WRITE) == writes,
            "%s: the fenced handle still writes or syncs", what);
    /* Reads keep working: every acknowledged record, and the iterator. */
    static uint8_t buf[PAYLOAD_SMALL];
    uint64_t acked = 0;
    for (int i = 0; i < OPS; i++) {
        const struct op *op = &w->ops[i];
        if (op->code != STELE_OK)
            break;
        for (int j = 0; j < op->nev; j++) {
            stele_record *r;
            int code = stele_get(log, op->rc[j].lsn, &r);
            if (lazy && op->rc[j].lsn > s.durable_lsn && code == STELE_ERR_FENCED) {
                REQUIRE(strstr(stele_errmsg(), strerror(w->fault_err)) != NULL,
                        "%s: get %llu on the fenced handle: message '%s' does not name the fault", what,
                        (unsigned long long)op->rc[j].lsn, stele_errmsg());
                if (op->rc[j].lsn > acked)
                    acked = op->rc[j].lsn;
                continue;
            }
            REQUIRE(code == STELE_OK, "%s: get %llu on the fenced handle: %s", what,
                    (unsigned long long)op->rc[j].lsn, stele_errmsg());
            size_t n = key_payload(op->keys[j], buf);
            REQUIRE(r->payload_size == n && memcmp(r->payload, buf, n) == 0, "%s: LSN %llu differs", what,
                    (unsigned long long)op->rc[j].lsn);
            stele_record_free(r);
            if (op->rc[j].lsn > acked)
                acked = op->rc[j].lsn;
        }
    }
    REQUIRE((lazy ? s.durable_lsn >= w->durable_expect && s.durable_lsn <= acked : s.durable_lsn == w->durable_expect) &&
                s.last_lsn == acked,
            "%s: fenced handle: durable LSN %llu (want %llu), last %llu, acked %llu", what,
            (unsigned long long)s.durable_lsn, (unsigned long long)w->durable_expect, (unsigned long long)s.last_lsn,
            (unsigned long long)acked);
    stele_iter *it;
    OK(stele_iter_open(log, 1, &it));
    const stele_record *r;
    uint64_t n = 0;
    int code;
    while ((code = stele_iter_next(it, 0, &r)) == STELE_OK && r)
        n++;
    stele_iter_close(it);
    if (lazy && code == STELE_ERR_FENCED)
        REQUIRE(n >= s.durable_lsn && n < acked, "%s: the iterator read %llu records, then FENCED (durable %llu, acked %llu)",
                what, (unsigned long long)n, (unsigned long long)s.durable_lsn, (unsigned long long)acked);
    else
        ck_assert_uint_eq(n, acked);
}

/* Every segment but the last is sealed, so read-only (SPEC.md §7.3), also
 * when the fault struck between a seal's sync and its chmod (§10.1 step 6). */
static void check_sealed_modes(const char *dir, const char *what)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    uint64_t last = 0, first;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (fmt_segment_name_parse(e->d_name, &first) && first > last)
            last = first;
    rewinddir(d);
    while ((e = readdir(d)) != NULL) {
        if (!fmt_segment_name_parse(e->d_name, &first) || first == last)
            continue;
        struct stat st;
        char *path = tu_path(dir, e->d_name);
        ck_assert_int_eq(stat(path, &st), 0);
        REQUIRE((st.st_mode & 0777) == 0444, "%s: sealed segment %s has mode %o", what, e->d_name,
                st.st_mode & 0777);
        free(path);
    }
    closedir(d);
}

/* After reopening: acknowledged appends there, refused ones not; retries
 * never double a key. In none mode an acknowledged append is only promised
 * once a sync covered it: after the durable LSN it is at its LSN or gone,
 * and gone ones are retried like the refused. */
static void check_reopened(const char *dir, struct workload *w, const char *what)
{
    stele_log *log = open_plain(dir);
    struct content c;
    content_read(log, &c);
    uint64_t promised = w->durability == STELE_DURABILITY_NONE ? w->durable_seen : UINT64_MAX;
    for (int i = 0; i < OPS; i++) {
        const struct op *op = &w->ops[i];
        for (int j = 0; j < op->nev; j++) {
            uint64_t at = content_lsn(&c, op->keys[j]);
            if (op->code == STELE_OK && op->rc[j].lsn > promised)
                REQUIRE(at == 0 || at == op->rc[j].lsn, "%s: op %d key %s acknowledged (not synced) at LSN %llu, found at %llu",
                        what, i, op->keys[j], (unsigned long long)op->rc[j].lsn, (unsigned long long)at);
            else if (op->code == STELE_OK)
                REQUIRE(at == op->rc[j].lsn, "%s: op %d key %s acknowledged at LSN %llu, found at %llu", what, i,
                        op->keys[j], (unsigned long long)op->rc[j].lsn, (unsigned long long)at);
            else if ((op->code == STELE_ERR_FENCED || is_io_code(op->code)) && i % 7 != 6)
                REQUIRE(at == 0, "%s: op %d key %s was refused (%s) but is in the log at LSN %llu", what, i,
                        op->keys[j], stele_strerror(op->code), (unsigned long long)at);
        }
    }
    /* Retry everything that failed: new or duplicate, never twice. */
    for (int i = 0; i < OPS; i++) {
        struct op *op = &w->ops[i];
        int gone = 0;
        for (int j = 0; j < op->nev; j++)
            gone |= op->code == STELE_OK && op->rc[j].lsn > promised && content_lsn(&c, op->keys[j]) == 0;
        if (op->code == STELE_OK && !gone)
            continue;
        stele_receipt rcs[3];
        int code = append_keys(log, op->keys, op->nev, rcs);
        REQUIRE(code == STELE_OK, "%s: retrying op %d after reopen: %s: %s", what, i, stele_strerror(code),
                stele_errmsg());
        for (int j = 0; j < op->nev; j++) {
            uint64_t at = content_lsn(&c, op->keys[j]);
            if (at)
                REQUIRE(rcs[j].decision == STELE_DECISION_DUPLICATE && rcs[j].lsn == at,
                        "%s: retry of %s (at LSN %llu): decision %d LSN %llu", what, op->keys[j],
                        (unsigned long long)at, rcs[j].decision, (unsigned long long)rcs[j].lsn);
            else
                REQUIRE(rcs[j].decision == STELE_DECISION_NEW || rcs[j].decision == STELE_DECISION_DUPLICATE,
                        "%s: retry of %s: decision %d", what, op->keys[j], rcs[j].decision);
        }
    }
    content_read(log, &c); /* every key once, every payload intact */
    int distinct = 0;
    for (int i = 0; i < OPS; i++)
        if (i % 7 != 6)
            distinct += w->ops[i].nev;
    ck_assert_int_eq(c.count, distinct);
    ck_assert_int_eq(stats_of(log).fenced, 0);
    OK(stele_close(log));
    stele_verify_report rep;
    int code = stele_verify(dir, NULL, NULL, &rep);
    REQUIRE(code == STELE_OK && rep.problems == 0, "%s: verify: %s (%llu problems): %s", what, stele_strerror(code),
            (unsigned long long)rep.problems, stele_errmsg());
    ck_assert_uint_eq(rep.records, (uint64_t)distinct);
    ck_assert_uint_eq(rep.torn_bytes, 0);
    check_sealed_modes(dir, what);
}

/* Opens a fresh log in dir on the fault backend. */
/* options.direct_io for the handles open_faulty_mode opens. */
static int faulty_direct_io = 1;

static stele_log *open_faulty_mode(const char *dir, stele_durability durability, struct io **out_io)
{
    stele_options o = opts_small();
    o.create = 1;
    o.durability = durability;
    o.direct_io = faulty_direct_io;
    struct io *io = io_fault_create(io_posix_create());
    ck_assert_ptr_nonnull(io);
    stele_log *log = NULL;
    int rc = stele_open_io(dir, &o, io, &log);
    REQUIRE(rc == STELE_OK, "open on the fault backend: %s", stele_errmsg());
    *out_io = io;
    return log;
}

static stele_log *open_faulty(const char *dir, struct io **out_io)
{
    return open_faulty_mode(dir, STELE_DURABILITY_SYNC, out_io);
}

/* Closes a healthy handle whose armed fault may strike the index checkpoint
 * close writes: then close fails with the fault's code and says so, and the
 * log stays whole (the callers reopen and check). Returns 1 when it struck. */
static int check_close_checkpoint(stele_log *log, int err, const char *what)
{
    int code = stele_close(log);
    if (code == STELE_OK)
        return 0;
    int want = err == ENOSPC ? STELE_ERR_NOSPACE : STELE_ERR_IO;
    REQUIRE(code == want && strstr(stele_errmsg(), "index checkpoint not written"),
            "%s: close failed with %s: %s", what, stele_strerror(code), stele_errmsg());
    return 1;
}

/* One run of the I/O-error loop; returns whether the fault was reached. */
static int fault_run(const char *base, stele_durability durability, unsigned ops, uint64_t nth, int err, int forever,
                     const char *name)
{
    char what[160], sub[32];
    snprintf(what, sizeof what, "%s nth=%llu", name, (unsigned long long)nth);
    snprintf(sub, sizeof sub, "run%llu", (unsigned long long)nth);
    char *dir = tu_path(base, sub);
    struct io *io;
    stele_log *log = open_faulty_mode(dir, durability, &io);
    uint64_t before = io_fault_count(io, ops);
    io_fault_arm(io, ops, nth, err, forever);
    static struct workload w;
    workload_init(&w, durability);
    w.fault_err = err;
    workload_run(log, &w);
    /* Counted before close. The only I/O of close here is the index
     * checkpoint (sync mode has nothing to sync, and in none mode the
     * workload ends with a stele_sync): a fault reached there fails close
     * and leaves the log intact. */
    int hit = io_fault_count(io, ops) - before >= nth;
    check_run_codes(&w, hit, err, what);
    if (hit) {
        check_fenced_handle(log, io, &w, what);
        int code = stele_close(log);
        REQUIRE(code != STELE_OK, "%s: stele_close of a fenced handle returned OK", what);
    } else {
        stele_stats s = stats_of(log);
        ck_assert_int_eq(s.fenced, 0);
        ck_assert_uint_eq(s.durable_lsn, w.durable_expect);
        ck_assert_uint_ge(s.sealed_segment_count, 6); /* the workload rolls */
        w.durable_seen = s.durable_lsn;
        hit = check_close_checkpoint(log, err, what);
    }
    check_reopened(dir, &w, what);
    tu_rmrf(dir);
    free(dir);
    return hit;
}

#define SYNC_ STELE_DURABILITY_SYNC
#define NONE_ STELE_DURABILITY_NONE
static const struct {
    stele_durability durability;
    unsigned ops;
    int err;
    int forever;
    const char *name;
} loops[] = {
    {SYNC_, IO_FAULT_WRITE, EIO, 0, "write EIO once"},
    {SYNC_, IO_FAULT_WRITE, EIO, 1, "write EIO forever"},
    {SYNC_, IO_FAULT_WRITE, ENOSPC, 0, "write ENOSPC once"},
    {SYNC_, IO_FAULT_WRITE, ENOSPC, 1, "write ENOSPC forever"},
    {SYNC_, IO_FAULT_SYNC, EIO, 0, "sync EIO once"},
    {SYNC_, IO_FAULT_SYNC, EIO, 1, "sync EIO forever"},
    {SYNC_, IO_FAULT_SYNC, ENOSPC, 0, "sync ENOSPC once"},
    {SYNC_, IO_FAULT_SYNC, ENOSPC, 1, "sync ENOSPC forever"},
    {SYNC_, IO_FAULT_META, EIO, 0, "meta EIO once"},
    {SYNC_, IO_FAULT_META, EIO, 1, "meta EIO forever"},
    {SYNC_, IO_FAULT_META, ENOSPC, 0, "meta ENOSPC once"},
    {SYNC_, IO_FAULT_META, ENOSPC, 1, "meta ENOSPC forever"},
    /* durability none: acknowledged when written, durable at stele_sync */
    {NONE_, IO_FAULT_WRITE, EIO, 0, "none mode: write EIO once"},
    {NONE_, IO_FAULT_SYNC, EIO, 0, "none mode: sync EIO once"},
    {NONE_, IO_FAULT_SYNC, ENOSPC, 1, "none mode: sync ENOSPC forever"},
    {NONE_, IO_FAULT_META, EIO, 0, "none mode: meta EIO once"},
};

/* STELE_FAULT_STRIDE=N makes the two step loops below fault every Nth step
 * only (1, 1 + N, ...): .ci/run's ThreadSanitizer pass, which looks for
 * races on the fault paths, not for the step that breaks. Default 1. */
static uint64_t step_stride(void)
{
    const char *env = getenv("STELE_FAULT_STRIDE");
    uint64_t n = env && *env ? strtoull(env, NULL, 10) : 1;
    return n ? n : 1;
}

START_TEST(test_io_error_loop)
{
    char *base = tu_tmpdir("fault-loop");
    uint64_t nth, stride = step_stride(), runs = 0;
    for (nth = 1; nth <= RUNS_MAX; nth += stride, runs++)
        if (!fault_run(base, loops[_i].durability, loops[_i].ops, nth, loops[_i].err, loops[_i].forever,
                       loops[_i].name))
            break;
    REQUIRE(nth > 5 && nth <= RUNS_MAX, "%s: the loop ended after %llu runs", loops[_i].name,
            (unsigned long long)nth);
    fprintf(stderr, "%s: %llu runs\n", loops[_i].name, (unsigned long long)(runs + 1));
    tu_rmrf(base);
    free(base);
}
END_TEST

/* ---------------------------------------------------- short writes (S13) */

START_TEST(test_short_write_loop)
{
    static const size_t keeps[] = {0, 1, 100, 4095, 4096, 5000, 1u << 20};
    char *base = tu_tmpdir("fault-short");
    uint64_t nth, stride = step_stride(), runs = 0;
    for (nth = 1; nth <= RUNS_MAX; nth += stride, runs++) {
        size_t keep = keeps[nth % (sizeof keeps / sizeof keeps[0])];
        char what[96], sub[32];
        snprintf(what, sizeof what, "short write nth=%llu keep=%zu", (unsigned long long)nth, keep);
        snprintf(sub, sizeof sub, "run%llu", (unsigned long long)nth);
        char *dir = tu_path(base, sub);
        struct io *io;
        stele_log *log = open_faulty(dir, &io);
        uint64_t before = io_fault_count(io, IO_FAULT_WRITE);
        io_fault_short_write(io, nth, keep);
        static struct workload w;
        workload_init(&w, STELE_DURABILITY_SYNC);
        workload_run(log, &w);
        int hit = io_fault_count(io, IO_FAULT_WRITE) - before >= nth;
        check_run_codes(&w, hit, EIO, what);
        if (hit) {
            check_fenced_handle(log, io, &w, what);
            REQUIRE(stele_close(log) != STELE_OK, "%s: close of a fenced handle returned OK", what);
        } else {
            hit = check_close_checkpoint(log, EIO, what);
        }
        check_reopened(dir, &w, what);
        tu_rmrf(dir);
        free(dir);
        if (!hit)
            break;
    }
    REQUIRE(nth > 5 && nth <= RUNS_MAX, "short writes: the loop ended after %llu runs", (unsigned long long)nth);
    fprintf(stderr, "short writes: %llu runs\n", (unsigned long long)(runs + 1));
    tu_rmrf(base);
    free(base);
}
END_TEST

/* Where O_DIRECT is refused (as on a file system without it) the log is
 * written through the page cache and says so, for every segment; it reads
 * back whole, and a reopen where O_DIRECT works uses it again. */
START_TEST(test_direct_io_refused)
{
    char *dir = tu_tmpdir("fault-direct");
    struct io *io = io_fault_create(io_posix_create());
    ck_assert_ptr_nonnull(io);
    io_fault_refuse_direct(io, 1);
    stele_options o = opts_small();
    o.create = 1;
    stele_log *log = NULL;
    OK(stele_open_io(dir, &o, io, &log));
    enum { N = 3000, PER_CALL = 100 }; /* several segments of opts_small's size */
    for (int i = 0; i < N; i += PER_CALL) {
        char keys[PER_CALL][32];
        stele_event evs[PER_CALL];
        stele_receipt rcs[PER_CALL];
        for (int j = 0; j < PER_CALL; j++) {
            snprintf(keys[j], sizeof keys[j], "k-%d", i + j);
            evs[j] = (stele_event){.type = "t", .type_size = 1, .key = keys[j], .key_size = strlen(keys[j]),
                                   .payload = "0123456789012345678901234567890123456789", .payload_size = 40};
        }
        OK(stele_append_batch(log, evs, PER_CALL, rcs));
    }
    stele_stats s = stats_of(log);
    ck_assert_int_eq(s.direct_io, 0);
    REQUIRE(s.segment_count >= 2, "the workload should roll segments (got %llu)",
            (unsigned long long)s.segment_count);
    ck_assert_uint_eq(s.direct_io_fallbacks, s.segment_count);
    REQUIRE(strstr(s.io_note, "buffered writes") && strstr(s.io_note, "O_DIRECT") &&
                strstr(s.io_note, strerror(EINVAL)),
            "io_note '%s' does not say why", s.io_note);
    OK(stele_close(log));
    stele_verify_report rep;
    OK(stele_verify(dir, NULL, NULL, &rep));
    ck_assert_uint_eq(rep.records, N);

    /* Asked not to use it: no fallback to report. */
    o.create = 0;
    o.direct_io = 0;
    OK(stele_open(dir, &o, &log));
    stele_event ev = {.type = "t", .type_size = 1, .payload = "x", .payload_size = 1};
    stele_receipt rc;
    OK(stele_append(log, &ev, &rc));
    s = stats_of(log);
    ck_assert_int_eq(s.direct_io, 0);
    ck_assert_uint_eq(s.direct_io_fallbacks, 0);
    ck_assert_str_eq(s.io_note, "");
    OK(stele_close(log));

    /* Direct again where the file system has it: either it is used or the note says why not. */
    o.direct_io = 1;
    OK(stele_open(dir, &o, &log));
    OK(stele_append(log, &ev, &rc));
    s = stats_of(log);
    REQUIRE(s.direct_io == 1 ? s.io_note[0] == 0 && s.direct_io_fallbacks == 0 : s.io_note[0] != 0,
            "direct_io %d with note '%s'", s.direct_io, s.io_note);
    OK(stele_close(log));
    OK(stele_verify(dir, NULL, NULL, &rep));
    ck_assert_uint_eq(rep.records, N + 2);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* A short batch write is cut at reopen; a "short" write that in fact wrote
 * everything is found there; neither was acknowledged. */
START_TEST(test_short_write_torn_tail)
{
    for (int c = 0; c < 4; c++) {
        int whole = c & 1;
        faulty_direct_io = c >> 1; /* buffered, then direct where the file system allows it */
        char *dir = tu_tmpdir("fault-torn");
        struct io *io;
        stele_log *log = open_faulty(dir, &io);
        char keys[2][16] = {"first", "second"};
        stele_receipt rc;
        OK(append_keys(log, keys, 1, &rc));
        /* A direct write stops at a block boundary: its 1000 bytes are none. */
        int direct = stats_of(log).direct_io;
        unsigned torn = whole || direct ? 0 : STELE_BLOCK_SIZE;
        io_fault_short_write(io, 1, whole ? (1u << 20) : 1000);
        EXPECT(append_keys(log, &keys[1], 1, &rc), STELE_ERR_OUTCOME_UNKNOWN);
        ck_assert_int_eq(rc.code, STELE_ERR_OUTCOME_UNKNOWN);
        ck_assert_int_eq(rc.decision, STELE_DECISION_NONE);
        stele_stats s = stats_of(log);
        ck_assert_int_eq(s.fenced, 1);
        ck_assert_uint_eq(s.durable_lsn, 1);
        ck_assert_uint_eq(s.last_lsn, 1);
        stele_record *r;
        EXPECT(stele_get(log, 2, &r), STELE_ERR_NOT_FOUND);
        ck_assert_int_ne(stele_close(log), STELE_OK);

        /* verify before reopening: the torn batch is a tail, not a problem. */
        stele_verify_report rep;
        OK(stele_verify(dir, NULL, NULL, &rep));
        ck_assert_uint_eq(rep.records, whole ? 2 : 1);
        ck_assert_uint_eq(rep.torn_bytes, torn);

        log = open_plain(dir);
        s = stats_of(log);
        ck_assert_uint_eq(s.last_lsn, whole ? 2 : 1);
        ck_assert_uint_eq(s.recovery_torn_bytes, torn);
        OK(append_keys(log, &keys[1], 1, &rc));
        ck_assert_int_eq(rc.decision, whole ? STELE_DECISION_DUPLICATE : STELE_DECISION_NEW);
        ck_assert_uint_eq(rc.lsn, 2);
        OK(stele_close(log));
        OK(stele_verify(dir, NULL, NULL, &rep));
        ck_assert_uint_eq(rep.records, 2);
        ck_assert_uint_eq(rep.torn_bytes, 0);
        tu_rmrf(dir);
        free(dir);
    }
    faulty_direct_io = 1;
}
END_TEST

/* --------------------------------------------------------- S9 and S10 */

#define S9_THREADS 16
#define S9_PER 12

struct s9_thread {
    stele_log *log;
    int tid;
    char keys[S9_PER][16];
    stele_receipt rc[S9_PER];
    int code[S9_PER];
};

static void *s9_main(void *arg)
{
    struct s9_thread *t = arg;
    for (int i = 0; i < S9_PER; i++) {
        snprintf(t->keys[i], sizeof t->keys[i], "t%d-%d", t->tid, i);
        t->code[i] = append_keys(t->log, &t->keys[i], 1, &t->rc[i]);
    }
    return NULL;
}

/* Sixteen appending threads, so that batches are written while earlier
 * ones are being synced and the threads take turns at writing and syncing;
 * then one EIO on the nth sync (_i 0) or the nth write (_i 1), every later
 * call would succeed. Whoever held the role that failed, and whoever waited
 * on it: nothing of the failed batch, nor after it, is acknowledged, every
 * record made durable before it is (its appender may look only after the
 * fence: it gets OK, not OUTCOME_UNKNOWN), no thread gets OK after its own
 * failure, and no sync is even tried again. */
START_TEST(test_eio_once_group_commit)
{
    static const uint64_t nths[] = {1, 2, 3, 7, 15, 30};
    const unsigned op = _i ? IO_FAULT_WRITE : IO_FAULT_SYNC;
    for (size_t k = 0; k < sizeof nths / sizeof nths[0]; k++) {
        char *dir = tu_tmpdir("fault-s10");
        struct io *io;
        stele_log *log = open_faulty(dir, &io);
        uint64_t before = io_fault_count(io, IO_FAULT_SYNC);
        io_fault_arm(io, op, nths[k], EIO, 0);
        static struct s9_thread ts[S9_THREADS];
        pthread_t th[S9_THREADS];
        for (int i = 0; i < S9_THREADS; i++) {
            ts[i].log = log;
            ts[i].tid = i;
            pthread_create(&th[i], NULL, s9_main, &ts[i]);
        }
        for (int i = 0; i < S9_THREADS; i++)
            pthread_join(th[i], NULL);
        stele_stats s = stats_of(log);
        ck_assert_int_eq(s.fenced, 1);
        uint64_t syncs = io_fault_count(io, IO_FAULT_SYNC) - before;
        if (op == IO_FAULT_SYNC)
            REQUIRE(syncs == nths[k], "nth=%llu: %llu syncs issued: the engine synced again after the failure",
                    (unsigned long long)nths[k], (unsigned long long)syncs);
        uint64_t max_ok = 0;
        int unknown = 0;
        for (int i = 0; i < S9_THREADS; i++)
            for (int j = 0; j < S9_PER; j++) {
                int c = ts[i].code[j];
                ck_assert(c == STELE_OK || c == STELE_ERR_OUTCOME_UNKNOWN || c == STELE_ERR_FENCED ||
                          c == STELE_ERR_IO);
                if (c == STELE_OK && ts[i].rc[j].lsn > max_ok)
                    max_ok = ts[i].rc[j].lsn;
                unknown += c == STELE_ERR_OUTCOME_UNKNOWN || c == STELE_ERR_IO;
                /* A thread's appends after its failed one are all refused. */
                if (j > 0 && ts[i].code[j - 1] != STELE_OK)
                    ck_assert_int_eq(c, STELE_ERR_FENCED);
            }
        ck_assert_int_ge(unknown, 1);
        ck_assert_uint_eq(s.durable_lsn, max_ok);
        ck_assert_uint_eq(s.last_lsn, max_ok);
        ck_assert_int_ne(stele_close(log), STELE_OK);

        /* The failed batch was written (only its sync failed): after reopen it
         * may be there, but all of it lies after every acknowledged record. */
        log = open_plain(dir);
        for (int i = 0; i < S9_THREADS; i++)
            for (int j = 0; j < S9_PER; j++) {
                stele_receipt rc;
                OK(append_keys(log, &ts[i].keys[j], 1, &rc));
                if (ts[i].code[j] == STELE_OK)
                    REQUIRE(rc.decision == STELE_DECISION_DUPLICATE && rc.lsn == ts[i].rc[j].lsn,
                            "acknowledged %s lost or moved", ts[i].keys[j]);
                else if (rc.decision == STELE_DECISION_DUPLICATE)
                    REQUIRE(rc.lsn > max_ok, "unacknowledged %s sits at LSN %llu, below the acknowledged %llu",
                            ts[i].keys[j], (unsigned long long)rc.lsn, (unsigned long long)max_ok);
                else
                    ck_assert_int_eq(rc.decision, STELE_DECISION_NEW);
            }
        ck_assert_uint_eq(stats_of(log).last_lsn, S9_THREADS * S9_PER);
        OK(stele_close(log));
        stele_verify_report rep;
        OK(stele_verify(dir, NULL, NULL, &rep));
        ck_assert_uint_eq(rep.records, S9_THREADS * S9_PER);
        tu_rmrf(dir);
        free(dir);
    }
}
END_TEST

/* none and interval modes: a failed sync is final; no later stele_sync succeeds. */
START_TEST(test_sync_eio_once_lazy_modes)
{
    for (int interval = 0; interval < 2; interval++) {
        char *dir = tu_tmpdir("fault-lazy");
        stele_options o = opts_small();
        o.create = 1;
        o.durability = interval ? STELE_DURABILITY_INTERVAL : STELE_DURABILITY_NONE;
        o.sync_interval_ms = 30;
        struct io *io = io_fault_create(io_posix_create());
        stele_log *log = NULL;
        OK(stele_open_io(dir, &o, io, &log));
        char keys[4][16] = {"a", "b", "c", "d"};
        stele_receipt rc;
        OK(append_keys(log, keys, 1, &rc)); /* creates the first segment (syncs) */
        OK(stele_sync(log));
        ck_assert_uint_eq(stats_of(log).durable_lsn, 1);
        io_fault_arm(io, IO_FAULT_SYNC, 1, EIO, 0);
        int c1 = append_keys(log, &keys[1], 1, &rc);
        int c2 = append_keys(log, &keys[2], 1, &rc);
        ck_assert(c1 == STELE_OK || c1 == STELE_ERR_OUTCOME_UNKNOWN);
        ck_assert(c2 == STELE_OK || c2 == STELE_ERR_OUTCOME_UNKNOWN || c2 == STELE_ERR_FENCED);
        if (!interval) {
            ck_assert_int_eq(c1, STELE_OK);
            ck_assert_int_eq(c2, STELE_OK);
            ck_assert_uint_eq(stats_of(log).durable_lsn, 1);
            int c = stele_sync(log);
            REQUIRE(c == STELE_ERR_IO, "failed stele_sync returned %d (%s)", c, stele_strerror(c));
            REQUIRE(strstr(stele_errmsg(), strerror(EIO)) != NULL, "message: %s", stele_errmsg());
        } else {
            /* the timer's sync fails in the background */
            for (int i = 0; i < 3000 && !stats_of(log).fenced; i++) /* a poll, 30 s at most */
                usleep(10000);
        }
        stele_stats s = stats_of(log);
        ck_assert_int_eq(s.fenced, 1);
        ck_assert_uint_eq(s.durable_lsn, 1);
        uint64_t syncs = io_fault_count(io, IO_FAULT_SYNC);
        /* The sync would succeed now; it must not be tried, nor reported done. */
        EXPECT(stele_sync(log), STELE_ERR_FENCED);
        EXPECT(stele_sync(log), STELE_ERR_FENCED);
        EXPECT(append_keys(log, &keys[3], 1, &rc), STELE_ERR_FENCED);
        ck_assert_uint_eq(io_fault_count(io, IO_FAULT_SYNC), syncs);
        ck_assert_uint_eq(stats_of(log).durable_lsn, 1);
        ck_assert_int_ne(stele_close(log), STELE_OK);
        log = open_plain(dir);
        ck_assert_uint_ge(stats_of(log).last_lsn, 1);
        OK(stele_close(log));
        OK(stele_verify(dir, NULL, NULL, NULL));
        tu_rmrf(dir);
        free(dir);
    }
}
END_TEST

/* ------------------------------------------------ opening under faults */

/* A log of 20 records over several segments with a torn tail (a batch cut
 * short by a short write), then: fail the nth I/O call of any class during
 * open (which recovers: lists, syncs, scans, zeroes the tail) and one append.
 * Whatever happens, a later plain open finds the 20 records whole. */
START_TEST(test_open_under_faults)
{
    char *base = tu_tmpdir("fault-open");
    char *orig = tu_path(base, "orig");
    struct io *io;
    stele_log *log = open_faulty(orig, &io);
    char keys[21][16];
    stele_receipt rc;
    for (int i = 0; i < 21; i++) {
        snprintf(keys[i], sizeof keys[i], "o%d", i);
        if (i == 20)
            io_fault_short_write(io, 1, 5000);
        int code = append_keys(log, &keys[i], 1, &rc);
        if (i < 20)
            ck_assert_int_eq(code, STELE_OK);
        else
            ck_assert_int_ne(code, STELE_OK);
    }
    ck_assert_int_ne(stele_close(log), STELE_OK);

    const unsigned all = IO_FAULT_WRITE | IO_FAULT_SYNC | IO_FAULT_READ | IO_FAULT_META;
    uint64_t nth;
    for (nth = 1; nth <= RUNS_MAX; nth++) {
        char sub[32];
        snprintf(sub, sizeof sub, "run%llu", (unsigned long long)nth);
        char *dir = tu_path(base, sub);
        ck_assert_int_eq(tu_copy_dir(orig, dir), 0);
        io = io_fault_create(io_posix_create());
        io_fault_arm(io, all, nth, EIO, 0);
        stele_options o = opts_small();
        log = NULL;
        int code = stele_open_io(dir, &o, io, &log);
        int hit;
        if (code == STELE_OK) {
            int ac = append_keys(log, &keys[20], 1, &rc);
            ck_assert(ac == STELE_OK || ac == STELE_ERR_OUTCOME_UNKNOWN || is_io_code(ac));
            hit = io_fault_count(io, all) >= nth;
            if (!hit) {
                ck_assert_int_eq(ac, STELE_OK);
                hit = check_close_checkpoint(log, EIO, "open under faults");
            } else {
                stele_close(log);
            }
        } else {
            REQUIRE(*stele_errmsg() != '\0', "nth=%llu: open failed (%d) without a message",
                    (unsigned long long)nth, code);
            hit = 1;
        }
        log = open_plain(dir);
        struct content c;
        content_read(log, &c);
        REQUIRE(c.count == 20 || c.count == 21, "nth=%llu: %d records after reopen", (unsigned long long)nth, c.count);
        for (int i = 0; i < 20; i++)
            REQUIRE(c.lsns[i] == (uint64_t)i + 1 && strcmp(c.keys[i], keys[i]) == 0, "nth=%llu: record %d lost",
                    (unsigned long long)nth, i);
        OK(append_keys(log, &keys[20], 1, &rc));
        ck_assert_uint_eq(rc.lsn, 21);
        OK(stele_close(log));
        stele_verify_report rep;
        OK(stele_verify(dir, NULL, NULL, &rep));
        ck_assert_uint_eq(rep.records, 21);
        tu_rmrf(dir);
        free(dir);
        if (!hit)
            break;
    }
    REQUIRE(nth > 5 && nth <= RUNS_MAX, "open loop ended after %llu runs", (unsigned long long)nth);
    fprintf(stderr, "open under faults: %llu runs\n", (unsigned long long)nth);

    /* Creating under faults: the create fails cleanly or works; either way a
     * later open with create=1 gives a working, empty (or one-record) log. */
    for (nth = 1; nth <= RUNS_MAX; nth++) {
        char sub[32];
        snprintf(sub, sizeof sub, "new%llu", (unsigned long long)nth);
        char *dir = tu_path(base, sub);
        io = io_fault_create(io_posix_create());
        io_fault_arm(io, all, nth, EIO, 0);
        stele_options o = opts_small();
        o.create = 1;
        log = NULL;
        int code = stele_open_io(dir, &o, io, &log);
        int hit = 1;
        if (code == STELE_OK) {
            int ac = append_keys(log, keys, 1, &rc);
            hit = io_fault_count(io, all) >= nth;
            (void)stele_close(log);
            if (!hit)
                ck_assert_int_eq(ac, STELE_OK);
        }
        log = NULL;
        code = stele_open(dir, &o, &log);
        REQUIRE(code == STELE_OK, "nth=%llu: open after a failed create: %s", (unsigned long long)nth, stele_errmsg());
        OK(append_keys(log, keys, 1, &rc));
        ck_assert_uint_eq(rc.lsn, 1);
        OK(stele_close(log));
        OK(stele_verify(dir, NULL, NULL, NULL));
        tu_rmrf(dir);
        free(dir);
        if (!hit)
            break;
    }
    REQUIRE(nth > 3 && nth <= RUNS_MAX, "create loop ended after %llu runs", (unsigned long long)nth);
    fprintf(stderr, "create under faults: %llu runs\n", (unsigned long long)nth);
    free(orig);
    tu_rmrf(base);
    free(base);
}
END_TEST

/* ------------------------------------------------------- S12 and S33 */

/* A read error in a sealed segment (RELIABILITY S12): the reader gets
 * STELE_ERR_IO naming the segment and the offset, nothing is cut or fenced,
 * and once the disk reads again everything is there. */
START_TEST(test_sealed_read_eio)
{
    char *dir = tu_tmpdir("fault-s12");
    static char keys[200][16];
    stele_receipt rc;
    stele_options co = opts_small();
    co.create = 1;
    stele_log *log = NULL;
    OK(stele_open(dir, &co, &log));
    for (int i = 0; i < 200; i++) {
        snprintf(keys[i], sizeof keys[i], "s12-%d", i);
        OK(append_keys(log, &keys[i], 1, &rc));
    }
    stele_stats before = stats_of(log);
    ck_assert_uint_ge(before.sealed_segment_count, 2);
    OK(stele_close(log));

    struct io *io = io_fault_create(io_posix_create());
    stele_options o = opts_small();
    log = NULL;
    OK(stele_open_io(dir, &o, io, &log));
    io_fault_arm(io, IO_FAULT_READ, 1, EIO, 1);
    stele_record *r = NULL;
    EXPECT(stele_get(log, 1, &r), STELE_ERR_IO);
    REQUIRE(strstr(stele_errmsg(), "00000000000000000001.seg") && strstr(stele_errmsg(), "offset"),
            "the message names neither the segment nor the offset: %s", stele_errmsg());
    stele_iter *it;
    OK(stele_iter_open(log, 1, &it));
    const stele_record *ir;
    EXPECT(stele_iter_next(it, 0, &ir), STELE_ERR_IO);
    stele_iter_close(it);
    stele_stats during = stats_of(log);
    ck_assert_int_eq(during.fenced, 0);
    ck_assert_uint_eq(during.last_lsn, before.last_lsn);
    /* Appends need no reads: they go on. */
    char fresh[1][16] = {"s12-fresh"};
    OK(append_keys(log, fresh, 1, &rc));
    io_fault_arm(io, IO_FAULT_READ, UINT64_MAX, EIO, 0); /* the disk reads again */
    OK(stele_get(log, 1, &r));
    ck_assert_uint_eq(r->lsn, 1);
    stele_record_free(r);
    OK(stele_close(log));

    stele_verify_report rep;
    OK(stele_verify(dir, NULL, NULL, &rep));
    ck_assert_uint_eq(rep.records, before.last_lsn + 1);
    log = open_plain(dir);
    ck_assert_uint_eq(stats_of(log).last_lsn, before.last_lsn + 1);
    for (int i = 0; i < 200; i += 37) {
        OK(append_keys(log, &keys[i], 1, &rc));
        ck_assert_int_eq(rc.decision, STELE_DECISION_DUPLICATE);
    }
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* A host program that closed fds 0-2 (RELIABILITY S33): the engine's files
 * get descriptors above 2, so a stray write(2, ...) by the host cannot land
 * in a segment. Runs in a child, whose standard descriptors it closes. */
START_TEST(test_low_fds_closed)
{
    char *dir = tu_tmpdir("fault-s33");
    char *logdir = tu_path(dir, "log");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(0);
        close(1);
        close(2);
        stele_options o = opts_small();
        o.create = 1;
        stele_log *log = NULL;
        if (stele_open(logdir, &o, &log) != STELE_OK)
            _exit(10);
        static char keys[60][16];
        stele_receipt rc;
        for (int i = 0; i < 60; i++) {
            snprintf(keys[i], sizeof keys[i], "s33-%d", i);
            if (append_keys(log, &keys[i], 1, &rc) != STELE_OK)
                _exit(11);
            /* The host's stray writes to its standard descriptors. */
            static const char junk[] = "stray write by the host program\n";
            for (int fd = 0; fd <= 2; fd++)
                if (write(fd, junk, sizeof junk - 1) >= 0)
                    _exit(12); /* a descriptor 0-2 is open: it can only be the engine's */
        }
        _exit(stele_close(log) == STELE_OK ? 0 : 13);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %d (10 open, 11 append, 12 an engine "
            "file at fd 0-2, 13 close)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    stele_verify_report rep;
    OK(stele_verify(logdir, NULL, NULL, &rep));
    ck_assert_uint_eq(rep.records, 60);
    ck_assert_uint_eq(rep.problems, 0);
    tu_rmrf(dir);
    free(logdir);
    free(dir);
}
END_TEST

/* ---------------------------------------- read-only handles: durable only */

/* Appends n events without keys to log. */
static void append_plain(stele_log *log, int n)
{
    for (int i = 0; i < n; i++) {
        stele_event e = {.type = "t", .type_size = 1, .payload = "x", .payload_size = 1};
        OK(stele_append(log, &e, NULL));
    }
}

static uint64_t visible_of(stele_log *log)
{
    return __atomic_load_n(&log->visible_lsn, __ATOMIC_ACQUIRE);
}

/* A read-only handle makes a batch visible only after syncing the segment
 * through its own descriptor (SPEC.md §10.2): when that sync fails, the
 * refresh fails with the errno and the segment's path, nothing new becomes
 * visible, and the handle stays so (FENCED) until reopened; a reopened
 * handle sees everything. Opening syncs too, and a refresh that finds
 * nothing new does not sync. */
START_TEST(test_read_only_sync_fails)
{
    char *dir = tu_tmpdir("fault-ro-sync");
    stele_options wo = opts_small();
    wo.create = 1;
    stele_log *w = NULL;
    OK(stele_open(dir, &wo, &w));
    append_plain(w, 3);

    struct io *io = io_fault_create(io_posix_create());
    stele_options ro = opts_small();
    ro.read_only = 1;
    stele_log *r = NULL;
    OK(stele_open_io(dir, &ro, io, &r));
    ck_assert_uint_eq(visible_of(r), 3);
    ck_assert_uint_eq(io_fault_count(io, IO_FAULT_SYNC), 1); /* the open synced the active segment */
    ck_assert_uint_eq(stats_of(r).last_lsn, 3);
    ck_assert_uint_eq(io_fault_count(io, IO_FAULT_SYNC), 1); /* nothing new: no sync */

    append_plain(w, 2);
    io_fault_arm(io, IO_FAULT_SYNC, 1, EIO, 0);
    stele_record *rec = NULL;
    EXPECT(stele_get(r, 4, &rec), STELE_ERR_IO);
    REQUIRE(strstr(stele_errmsg(), "00000000000000000001.seg") && strstr(stele_errmsg(), "Input/output error") &&
            strstr(stele_errmsg(), "sync"), "the message names neither the segment, the sync nor errno: %s",
            stele_errmsg());
    ck_assert_uint_eq(visible_of(r), 3);
    io_fault_arm(io, 0, 0, 0, 0);
    /* A later sync that succeeds proves nothing about pages whose write-back
     * failed: the handle exposes nothing new until it is reopened. */
    EXPECT(stele_get(r, 4, &rec), STELE_ERR_FENCED);
    ck_assert(strstr(stele_errmsg(), "Input/output error"));
    stele_iter *it;
    OK(stele_iter_open(r, 4, &it));
    const stele_record *ir = NULL;
    EXPECT(stele_iter_next(it, 0, &ir), STELE_ERR_FENCED);
    ck_assert_ptr_null(ir);
    stele_iter_close(it);
    stele_stats st = stats_of(r);
    ck_assert_uint_eq(st.last_lsn, 3);
    ck_assert_int_eq(st.fenced, 1);
    OK(stele_get(r, 3, &rec)); /* what was visible stays readable */
    stele_record_free(rec);
    OK(stele_close(r));

    /* Opening syncs: a failed sync fails the open. */
    io = io_fault_create(io_posix_create());
    io_fault_arm(io, IO_FAULT_SYNC, 1, EIO, 0);
    r = NULL;
    EXPECT(stele_open_io(dir, &ro, io, &r), STELE_ERR_IO);
    ck_assert(strstr(stele_errmsg(), "00000000000000000001.seg"));

    OK(stele_open(dir, &ro, &r));
    ck_assert_uint_eq(visible_of(r), 5);
    OK(stele_close(r));
    OK(stele_close(w));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* The POSIX backend with a hook run at the start of the first armed
 * fdatasync (the backend ignores its io argument, so its ops can be reused). */
struct hook_io {
    struct io io;
    struct io_ops ops;
    struct io *base;
    stele_log *writer;       /* appended to by the hook */
    int armed;
};

static int hook_fdatasync(struct io *io, int fd)
{
    struct hook_io *h = (struct hook_io *)io;
    if (h->armed) {
        h->armed = 0;
        append_plain(h->writer, 1); /* written and synced while the reader's sync runs */
    }
    return h->base->ops->fdatasync(h->base, fd);
}

static void hook_destroy(struct io *io)
{
    struct hook_io *h = (struct hook_io *)io;
    h->base->ops->destroy(h->base);
    free(h);
}

/* A refresh exposes the batches it read before its sync started, never one
 * written meanwhile: that one waits for the next refresh (and its sync). */
START_TEST(test_read_only_sync_order)
{
    char *dir = tu_tmpdir("fault-ro-order");
    stele_options wo = opts_small();
    wo.create = 1;
    stele_log *w = NULL;
    OK(stele_open(dir, &wo, &w));
    append_plain(w, 3);
    struct hook_io *h = calloc(1, sizeof *h);
    h->base = io_posix_create();
    h->ops = *h->base->ops;
    h->ops.fdatasync = hook_fdatasync;
    h->ops.destroy = hook_destroy;
    h->io.ops = &h->ops;
    h->writer = w;
    stele_options ro = opts_small();
    ro.read_only = 1;
    stele_log *r = NULL;
    OK(stele_open_io(dir, &ro, &h->io, &r));
    ck_assert_uint_eq(visible_of(r), 3);
    append_plain(w, 2);
    h->armed = 1;
    stele_record *rec = NULL;
    OK(stele_get(r, 5, &rec));
    stele_record_free(rec);
    ck_assert_int_eq(h->armed, 0);
    ck_assert_uint_eq(stats_of(w).last_lsn, 6);
    ck_assert_uint_eq(visible_of(r), 5); /* LSN 6 was written after the sync started */
    OK(stele_get(r, 6, &rec));
    ck_assert_uint_eq(rec->lsn, 6);
    stele_record_free(rec);
    OK(stele_close(r));
    OK(stele_close(w));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

static Suite *fault_suite(void)
{
    Suite *s = suite_create("fault");
    TCase *tc = tcase_create("io_error_loop");
    tcase_add_loop_test(tc, test_io_error_loop, 0, (int)(sizeof loops / sizeof loops[0]));
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);

    tc = tcase_create("short_write");
    tcase_add_test(tc, test_short_write_loop);
    tcase_add_test(tc, test_short_write_torn_tail);
    tcase_add_test(tc, test_direct_io_refused);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);

    tc = tcase_create("sync");
    tcase_add_loop_test(tc, test_eio_once_group_commit, 0, 2);
    tcase_add_test(tc, test_sync_eio_once_lazy_modes);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("reads_and_fds");
    tcase_add_test(tc, test_sealed_read_eio);
    tcase_add_test(tc, test_low_fds_closed);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("read_only");
    tcase_add_test(tc, test_read_only_sync_fails);
    tcase_add_test(tc, test_read_only_sync_order);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("open");
    tcase_add_test(tc, test_open_under_faults);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fault_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

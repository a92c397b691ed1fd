/*
 * check_index_ckpt.c - proves that the index checkpoint (SPEC.md §15) only
 * ever saves work: whatever state the index file is in, the answers of the
 * index (stele_status_get, stele_pending, stele_stream_version, and the
 * decisions of appends) are those the log itself implies (RELIABILITY S29).
 *
 * How: a deterministic workload of "units" (an event with a key in a stream;
 * an intent left pending, confirmed or failed; an event and its
 * compensation; a keyless stream event; a confirmed intent and the
 * compensation of its outcome) builds a log whose expected index is known
 * (the oracle: every unit's LSNs). A snapshot of the answers for every key,
 * stream and pending intent is compared across opens.
 *  - Damaged checkpoint (a byte flipped at the start, middle and end,
 *    truncated to half, by one byte and to nothing, zeroed): the open works,
 *    stats say index_rebuilt with a note, the whole log is scanned and the
 *    answers are identical; the next clean close writes a good checkpoint.
 *  - Stale checkpoint (an older index file put back after more appends): it
 *    is trusted and only the later records are scanned.
 *  - A checkpoint newer than the log (a copy of the log taken earlier, with
 *    the later index file), one from a log whose history forked, and one from
 *    another log (same workload, so same LSNs and keys): rebuilt, with a
 *    note; keys only the newer log holds are not known (no false duplicate).
 *  - Crashes while checkpointing, fault backend: for N = 1, 2, ... the Nth
 *    metadata, write or sync call during stele_close fails (once, or from
 *    then on) until a close completes without reaching it; the log reopened
 *    with the plain backend opens, knows every key at its LSN, answers every
 *    retry `duplicate` with the original LSN, and verifies.
 *  - Crashes while checkpointing, simulated disk: a run in durability `none`
 *    (stele_sync now and then) with small segments and checkpoint_records
 *    small, so checkpoints are written at seals and at close; the power goes
 *    after every I/O step of the run, and each crash state (unsynced data
 *    dropped, kept, kept by sectors, torn; directory changes lost) is
 *    reopened: every record covered by a successful sync is there, the index
 *    answers exactly what a scan of the recovered log implies, a record the
 *    crash took is appended as `new` again (no false duplicate) and one that
 *    survived is a duplicate; verify is clean.
 *  - Live: seal checkpoints, serialised by their thread from a snapshot while
 *    the writer resolves old intents, compensates old events and adds keys
 *    and stream records; copies of the log taken along the way open with
 *    the checkpoint trusted and answer exactly as with the index rebuilt.
 *  - Scale: 200,000 keys reopen with nothing scanned after a clean close, and
 *    with all 200,000 scanned (and identical answers) without the index file.
 * Scratch logs live in /dev/shm when it is writable. Seeds for the crash
 * modes come from tu_seed (STELE_TEST_SEED replays).
 */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"
#include "stele.h"
#include "testutil.h"

#define UNITS_MAX 256
#define STREAMS 7
#define PAYLOAD_MAX 4096
#define RUNS_MAX 200

static char g_where[512]; /* what the test is doing, for failure messages */

static void where(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void where(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_where, sizeof g_where, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ helpers */

static stele_options opts_for(size_t segment_size)
{
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.io_backend = STELE_IO_POSIX;
    o.idem_window_ns = 0;
    if (segment_size) {
        o.segment_size = segment_size;
        o.payload_size_max = PAYLOAD_MAX;
    }
    return o;
}

static stele_log *open_log(const char *dir, const stele_options *o)
{
    stele_log *log = NULL;
    int rc = stele_open(dir, o, &log);
    REQUIRE(rc == STELE_OK && log, "%s: open %s: %s: %s", g_where, dir, stele_strerror(rc), stele_errmsg());
    return log;
}

static stele_stats stats_of(stele_log *log)
{
    stele_stats s;
    OK(stele_stats_get(log, &s));
    return s;
}

static char *index_file_required(const char *dir)
{
    char *p = tu_index_file(dir);
    REQUIRE(p != NULL, "%s: no index file (a name starting with \"index\") in %s", g_where, dir);
    return p;
}

static uint8_t *read_index(const char *dir, size_t *out_size)
{
    char *p = index_file_required(dir);
    uint8_t *b = tu_read_file(p, out_size);
    REQUIRE(b != NULL, "read %s", p);
    free(p);
    return b;
}

/* Puts bytes in place of dir's index file (the same name as src's, when dir has none). */
static void write_index(const char *dir, const uint8_t *bytes, size_t size)
{
    char *p = index_file_required(dir);
    REQUIRE(tu_write_file(p, bytes, size) == 0, "write %s", p);
    free(p);
}

static void copy_index(const char *from_dir, const char *to_dir)
{
    size_t n;
    uint8_t *b = read_index(from_dir, &n);
    char *src = index_file_required(from_dir);
    const char *name = strrchr(src, '/') + 1;
    char *dst = tu_path(to_dir, name);
    REQUIRE(tu_write_file(dst, b, n) == 0, "write %s", dst);
    free(dst);
    free(src);
    free(b);
}

static void delete_index(const char *dir)
{
    char *p = index_file_required(dir);
    REQUIRE(unlink(p) == 0, "unlink %s", p);
    free(p);
}

/* ---------------------------------------------------------- workload */

/* Unit i of a workload (by i % 5):
 *  0  event, key, stream
 *  1  intent, key: confirmed (i % 3 == 0), failed (1) or left pending (2)
 *  2  event, key, then its compensation
 *  3  event without key, in a stream
 *  4  intent, key, confirmed, then the compensation of the outcome */
struct unit {
    int done;            /* every record of the unit appended */
    uint64_t lsn;        /* the first record */
    uint64_t outcome_lsn;
    uint64_t comp_lsn;
};

struct workload {
    char prefix[8];
    uint64_t salt;
    size_t payload_size;
    struct unit u[UNITS_MAX];
};

static void workload_init(struct workload *w, const char *prefix, uint64_t salt, size_t payload_size)
{
    memset(w, 0, sizeof *w);
    snprintf(w->prefix, sizeof w->prefix, "%s", prefix);
    w->salt = salt;
    w->payload_size = payload_size;
}

static int unit_has_key(int i)
{
    return i % 5 != 3;
}

static void unit_key(const struct workload *w, int i, char *dst, size_t cap)
{
    snprintf(dst, cap, "%s-k%04d", w->prefix, i);
}

static void stream_name(const struct workload *w, int s, char *dst, size_t cap)
{
    snprintf(dst, cap, "%s-s%d", w->prefix, s);
}

/* Record j of unit i: its event, with buffers in b. Returns 0 when the unit
 * has no record j. refs come from u (the LSNs appended before). */
struct evbuf {
    char key[32], stream[32];
    uint8_t payload[PAYLOAD_MAX];
};

static int unit_event(const struct workload *w, int i, int j, const struct unit *u, struct evbuf *b, stele_event *e)
{
    int kind = i % 5;
    int nrec = kind == 0 || kind == 3 ? 1 : kind == 1 ? (i % 3 == 2 ? 1 : 2) : kind == 2 ? 2 : 3;
    if (j >= nrec)
        return 0;
    memset(e, 0, sizeof *e);
    unit_key(w, i, b->key, sizeof b->key);
    stream_name(w, i % STREAMS, b->stream, sizeof b->stream);
    uint64_t s = (w->salt + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)(i * 8 + j + 1);
    size_t n = w->payload_size - w->payload_size / 16 * (size_t)(i % 7);
    for (size_t k = 0; k < n; k++) {
        if (k % 8 == 0)
            s = tu_rand(&s) | 1;
        b->payload[k] = (uint8_t)(s >> (8 * (k % 8)));
    }
    if (n > 32)
        snprintf((char *)b->payload, 32, "%05d.%d", i % 100000, j % 10);
    e->payload = b->payload;
    e->payload_size = n;
    e->type = "unit", e->type_size = 4;
    if (j == 0) {
        e->kind = kind == 1 || kind == 4 ? STELE_KIND_INTENT : STELE_KIND_EVENT;
        if (kind != 3)
            e->key = b->key, e->key_size = strlen(b->key);
        if (kind == 0 || kind == 3)
            e->stream = b->stream, e->stream_size = strlen(b->stream);
    } else if (j == 1 && (kind == 1 || kind == 4)) {
        e->kind = STELE_KIND_OUTCOME;
        e->outcome = kind == 4 || i % 3 == 0 ? STELE_OUTCOME_CONFIRMED : STELE_OUTCOME_FAILED;
        e->key = b->key, e->key_size = strlen(b->key);
        e->ref = u->lsn;
    } else {
        e->kind = STELE_KIND_COMPENSATION;
        e->ref = kind == 2 ? u->lsn : u->outcome_lsn;
    }
    return 1;
}

/* Appends the records of unit i, each expected `new`, noting their LSNs.
 * Returns STELE_OK, or at the first record refused its code (-1 for an
 * answer other than `new`); the unit is done only when all went in. */
static int unit_append(stele_log *log, struct workload *w, int i)
{
    static struct evbuf b;
    struct unit *u = &w->u[i];
    stele_event e;
    for (int j = 0; unit_event(w, i, j, u, &b, &e); j++) {
        stele_receipt rc;
        int code = stele_append(log, &e, &rc);
        if (code != STELE_OK || rc.decision != STELE_DECISION_NEW)
            return code != STELE_OK ? code : -1;
        if (j == 0)
            u->lsn = rc.lsn;
        else if (e.kind == STELE_KIND_OUTCOME)
            u->outcome_lsn = rc.lsn;
        else
            u->comp_lsn = rc.lsn;
    }
    u->done = 1;
    return STELE_OK;
}

/* Appends units [from, to). */
static void workload_append(stele_log *log, struct workload *w, int from, int to)
{
    for (int i = from; i < to; i++) {
        int code = unit_append(log, w, i);
        REQUIRE(code == STELE_OK, "%s: unit %d: %s: %s", g_where, i, code < 0 ? "not new" : stele_strerror(code),
                stele_errmsg());
    }
}

/* Every record of the done units again: each a duplicate of the original. */
static void workload_retry(stele_log *log, const struct workload *w, int to)
{
    static struct evbuf b;
    for (int i = 0; i < to; i++) {
        const struct unit *u = &w->u[i];
        if (!u->done || !unit_has_key(i))
            continue; /* a keyless event would be new again */
        stele_event e;
        for (int j = 0; unit_event(w, i, j, u, &b, &e); j++) {
            uint64_t want = j == 0 ? u->lsn : e.kind == STELE_KIND_OUTCOME ? u->outcome_lsn : u->comp_lsn;
            stele_receipt rc;
            int code = stele_append(log, &e, &rc);
            REQUIRE(code == STELE_OK && rc.decision == STELE_DECISION_DUPLICATE && rc.lsn == want,
                    "%s: retry of unit %d record %d: %s, decision %d, LSN %llu; want duplicate of %llu: %s", g_where,
                    i, j, stele_strerror(code), rc.decision, (unsigned long long)rc.lsn, (unsigned long long)want,
                    stele_errmsg());
        }
    }
}

/* What the oracle says key i holds. */
static void unit_expect(const struct workload *w, int i, int *code, stele_status *st)
{
    const struct unit *u = &w->u[i];
    memset(st, 0, sizeof *st);
    *code = u->done && unit_has_key(i) ? STELE_OK : STELE_ERR_NOT_FOUND;
    if (*code)
        return;
    st->lsn = u->lsn;
    st->outcome_lsn = u->outcome_lsn;
    st->compensation_lsn = u->comp_lsn;
    switch (i % 5) {
    case 0:
        st->state = STELE_STATE_EVENT;
        break;
    case 1:
        st->state = i % 3 == 0 ? STELE_STATE_CONFIRMED : i % 3 == 1 ? STELE_STATE_FAILED : STELE_STATE_PENDING;
        break;
    default:
        st->state = STELE_STATE_COMPENSATED;
        break;
    }
}

/* Every key's status against the oracle. */
static void workload_check(stele_log *log, const struct workload *w, int to)
{
    char key[32];
    for (int i = 0; i < to; i++) {
        if (!unit_has_key(i))
            continue;
        unit_key(w, i, key, sizeof key);
        int want;
        stele_status exp, got;
        unit_expect(w, i, &want, &exp);
        memset(&got, 0, sizeof got);
        int code = stele_status_get(log, key, strlen(key), &got);
        REQUIRE(code == want, "%s: status of %s: %s, want %s", g_where, key, stele_strerror(code),
                stele_strerror(want));
        if (code)
            continue;
        REQUIRE(got.state == exp.state && got.lsn == exp.lsn && got.outcome_lsn == exp.outcome_lsn &&
                    got.compensation_lsn == exp.compensation_lsn,
                "%s: status of %s: state %d lsn %llu outcome %llu compensation %llu; want %d %llu %llu %llu",
                g_where, key, got.state, (unsigned long long)got.lsn, (unsigned long long)got.outcome_lsn,
                (unsigned long long)got.compensation_lsn, exp.state, (unsigned long long)exp.lsn,
                (unsigned long long)exp.outcome_lsn, (unsigned long long)exp.compensation_lsn);
    }
}

/* ---------------------------------------------------------- snapshots */

static int status_eq(const stele_status *a, const stele_status *b)
{
    return a->state == b->state && a->lsn == b->lsn && a->recorded_at_ns == b->recorded_at_ns &&
           a->stream_version == b->stream_version && a->outcome_lsn == b->outcome_lsn &&
           a->compensation_lsn == b->compensation_lsn;
}

/* Everything the index answers about a workload's names. */
struct snap {
    uint64_t last_lsn;
    int codes[UNITS_MAX];
    stele_status st[UNITS_MAX];
    uint64_t sver[STREAMS], slsn[STREAMS];
    size_t pending_count;
    uint64_t pending_lsn[UNITS_MAX];
    uint64_t pending_at[UNITS_MAX];
    uint64_t keys, pending, streams;
};

static void snap_take(stele_log *log, const struct workload *w, struct snap *s)
{
    memset(s, 0, sizeof *s);
    stele_stats st = stats_of(log);
    s->last_lsn = st.last_lsn;
    s->keys = st.index_keys;
    s->pending = st.index_pending;
    s->streams = st.index_streams;
    char name[32];
    for (int i = 0; i < UNITS_MAX; i++) {
        unit_key(w, i, name, sizeof name);
        s->codes[i] = stele_status_get(log, name, strlen(name), &s->st[i]);
        REQUIRE(s->codes[i] == STELE_OK || s->codes[i] == STELE_ERR_NOT_FOUND, "%s: status of %s: %s", g_where,
                name, stele_strerror(s->codes[i]));
        if (s->codes[i])
            memset(&s->st[i], 0, sizeof s->st[i]);
    }
    for (int k = 0; k < STREAMS; k++) {
        stream_name(w, k, name, sizeof name);
        OK(stele_stream_version(log, name, strlen(name), &s->sver[k], &s->slsn[k]));
    }
    stele_pending_item *items;
    size_t n;
    OK(stele_pending(log, 0, 0, &items, &n));
    REQUIRE(n <= UNITS_MAX, "%zu pending", n);
    s->pending_count = n;
    for (size_t i = 0; i < n; i++) {
        s->pending_lsn[i] = items[i].lsn;
        s->pending_at[i] = items[i].recorded_at_ns;
    }
    stele_pending_free(items);
}

static void snap_same(const struct snap *a, const struct snap *b, const char *what)
{
    REQUIRE(a->last_lsn == b->last_lsn, "%s: %s: last LSN %llu vs %llu", g_where, what,
            (unsigned long long)a->last_lsn, (unsigned long long)b->last_lsn);
    for (int i = 0; i < UNITS_MAX; i++)
        REQUIRE(a->codes[i] == b->codes[i] && status_eq(&a->st[i], &b->st[i]),
                "%s: %s: key %d: code %d/%d state %d/%d lsn %llu/%llu recorded_at %llu/%llu outcome %llu/%llu "
                "compensation %llu/%llu",
                g_where, what, i, a->codes[i], b->codes[i], a->st[i].state, b->st[i].state,
                (unsigned long long)a->st[i].lsn, (unsigned long long)b->st[i].lsn,
                (unsigned long long)a->st[i].recorded_at_ns, (unsigned long long)b->st[i].recorded_at_ns,
                (unsigned long long)a->st[i].outcome_lsn, (unsigned long long)b->st[i].outcome_lsn,
                (unsigned long long)a->st[i].compensation_lsn, (unsigned long long)b->st[i].compensation_lsn);
    for (int k = 0; k < STREAMS; k++)
        REQUIRE(a->sver[k] == b->sver[k] && a->slsn[k] == b->slsn[k], "%s: %s: stream %d at %llu (LSN %llu) vs %llu (%llu)",
                g_where, what, k, (unsigned long long)a->sver[k], (unsigned long long)a->slsn[k],
                (unsigned long long)b->sver[k], (unsigned long long)b->slsn[k]);
    REQUIRE(a->pending_count == b->pending_count, "%s: %s: %zu vs %zu pending", g_where, what, a->pending_count,
            b->pending_count);
    for (size_t i = 0; i < a->pending_count; i++)
        REQUIRE(a->pending_lsn[i] == b->pending_lsn[i] && a->pending_at[i] == b->pending_at[i],
                "%s: %s: pending %zu: LSN %llu vs %llu", g_where, what, i, (unsigned long long)a->pending_lsn[i],
                (unsigned long long)b->pending_lsn[i]);
    REQUIRE(a->keys == b->keys && a->pending == b->pending && a->streams == b->streams,
            "%s: %s: stats index keys/pending/streams %llu/%llu/%llu vs %llu/%llu/%llu", g_where, what,
            (unsigned long long)a->keys, (unsigned long long)a->pending, (unsigned long long)a->streams,
            (unsigned long long)b->keys, (unsigned long long)b->pending, (unsigned long long)b->streams);
}

/* Opens dir expecting the index rebuilt from the whole log, with a note. */
static stele_log *open_rebuilt(const char *dir)
{
    stele_options o = opts_for(0);
    o.create = 0;
    stele_log *log = open_log(dir, &o);
    stele_stats s = stats_of(log);
    REQUIRE(s.index_rebuilt == 1 && s.index_note[0] != '\0', "%s: index_rebuilt %d, note \"%s\"", g_where,
            s.index_rebuilt, s.index_note);
    REQUIRE(s.index_scanned == s.last_lsn, "%s: rebuilt from %llu records of %llu", g_where,
            (unsigned long long)s.index_scanned, (unsigned long long)s.last_lsn);
    return log;
}

/* Opens dir expecting the checkpoint trusted and scanned records after it. */
static stele_log *open_trusted(const char *dir, uint64_t scanned)
{
    stele_options o = opts_for(0);
    o.create = 0;
    stele_log *log = open_log(dir, &o);
    stele_stats s = stats_of(log);
    REQUIRE(s.index_rebuilt == 0 && s.index_note[0] == '\0', "%s: index_rebuilt %d, note \"%s\"", g_where,
            s.index_rebuilt, s.index_note);
    REQUIRE(s.index_scanned == scanned, "%s: scanned %llu records after the checkpoint, want %llu", g_where,
            (unsigned long long)s.index_scanned, (unsigned long long)scanned);
    REQUIRE(s.index_checkpoint_lsn == s.last_lsn - scanned, "%s: checkpoint covers %llu, want %llu", g_where,
            (unsigned long long)s.index_checkpoint_lsn, (unsigned long long)(s.last_lsn - scanned));
    return log;
}

/* A log holding units [0, n) of w, closed. */
static void make_log(const char *dir, struct workload *w, int n)
{
    stele_options o = opts_for(0);
    stele_log *log = open_log(dir, &o);
    workload_append(log, w, 0, n);
    OK(stele_close(log));
}

/* ----------------------------------------------- damaged checkpoints */

enum damage { FLIP_FIRST, FLIP_MIDDLE, FLIP_LAST, TRUNC_HALF, TRUNC_ONE, TRUNC_ALL, ZERO, DAMAGE_COUNT };
static const char *damage_names[DAMAGE_COUNT] = {"first byte flipped", "middle byte flipped", "last byte flipped",
                                                 "truncated to half", "one byte short", "truncated to nothing",
                                                 "zeroed"};

START_TEST(test_damaged_checkpoint)
{
    char *base = tu_tmpdir("ckpt-dmg"), *run = tu_path(base, "run"), *tpl = tu_path(base, "tpl");
    static struct workload w;
    workload_init(&w, "d", 1, 64);
    where("damaged checkpoint, template");
    make_log(tpl, &w, 150);
    struct snap *ref = malloc(sizeof *ref), *got = malloc(sizeof *got);
    stele_log *log = open_trusted(tpl, 0);
    workload_check(log, &w, 150);
    snap_take(log, &w, ref);
    OK(stele_close(log));
    for (int d = 0; d < DAMAGE_COUNT; d++) {
        where("damaged checkpoint: %s", damage_names[d]);
        tu_rmrf(run);
        REQUIRE(tu_copy_dir(tpl, run) == 0, "copy");
        size_t n;
        uint8_t *b = read_index(run, &n);
        REQUIRE(n > 16, "index file of %zu bytes", n);
        switch (d) {
        case FLIP_FIRST: b[0] ^= 0x01; break;
        case FLIP_MIDDLE: b[n / 2] ^= 0x40; break;
        case FLIP_LAST: b[n - 1] ^= 0x80; break;
        case TRUNC_HALF: n /= 2; break;
        case TRUNC_ONE: n -= 1; break;
        case TRUNC_ALL: n = 0; break;
        case ZERO: memset(b, 0, n); break;
        }
        write_index(run, b, n);
        free(b);
        log = open_rebuilt(run);
        snap_take(log, &w, got);
        snap_same(ref, got, "rebuilt vs checkpoint");
        workload_check(log, &w, 150);
        workload_retry(log, &w, 150);
        OK(stele_close(log));
        /* The close wrote a good checkpoint again. */
        log = open_trusted(run, 0);
        snap_take(log, &w, got);
        snap_same(ref, got, "after the rewrite");
        OK(stele_close(log));
    }
    free(ref);
    free(got);
    tu_rmrf(base);
    free(base);
    free(run);
    free(tpl);
}
END_TEST

/* ------------------------------------------------- stale checkpoints */

START_TEST(test_stale_checkpoint)
{
    char *dir = tu_tmpdir("ckpt-stale");
    static struct workload w;
    workload_init(&w, "s", 2, 64);
    where("stale checkpoint");
    make_log(dir, &w, 100);
    size_t old_size;
    uint8_t *old = read_index(dir, &old_size);
    stele_log *log = open_trusted(dir, 0);
    uint64_t old_last = stats_of(log).last_lsn;
    workload_append(log, &w, 100, 200);
    OK(stele_close(log));
    struct snap *ref = malloc(sizeof *ref), *got = malloc(sizeof *got);
    log = open_trusted(dir, 0);
    uint64_t last = stats_of(log).last_lsn;
    snap_take(log, &w, ref);
    OK(stele_close(log));
    /* The older checkpoint back in place: trusted, the rest scanned. */
    write_index(dir, old, old_size);
    log = open_trusted(dir, last - old_last);
    snap_take(log, &w, got);
    snap_same(ref, got, "stale checkpoint vs current");
    workload_check(log, &w, 200);
    workload_retry(log, &w, 200);
    OK(stele_close(log));
    free(old);
    free(ref);
    free(got);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* ------------------------------------- newer, forked, foreign checkpoints */

START_TEST(test_newer_checkpoint)
{
    char *base = tu_tmpdir("ckpt-newer"), *x = tu_path(base, "x"), *y = tu_path(base, "y"), *f = tu_path(base, "f");
    static struct workload w, wy;
    workload_init(&w, "n", 3, 64);
    where("newer checkpoint");
    make_log(x, &w, 100);
    REQUIRE(tu_copy_dir(x, y) == 0 && tu_copy_dir(x, f) == 0, "copy");
    wy = w;
    stele_log *log = open_trusted(x, 0);
    workload_append(log, &w, 100, 200);
    OK(stele_close(log));

    /* y: the log as it was at the copy, with x's later checkpoint. */
    struct snap *ref = malloc(sizeof *ref), *got = malloc(sizeof *got);
    log = open_trusted(y, 0);
    snap_take(log, &wy, ref);
    OK(stele_close(log));
    copy_index(x, y);
    log = open_rebuilt(y);
    snap_take(log, &wy, got);
    snap_same(ref, got, "newer checkpoint vs the log's own");
    workload_check(log, &wy, 200); /* units 100..199 are unknown here */
    workload_retry(log, &wy, 100);
    /* A key only the newer log holds is new here. */
    workload_append(log, &wy, 100, 110);
    workload_check(log, &wy, 200);
    OK(stele_close(log));

    /* f: forked at the copy with other records, more of them than x has
     * after the copy, so the checkpoint's LSN is in the log but names
     * another record. */
    log = open_trusted(f, 0);
    struct workload *wfork = malloc(sizeof *wfork);
    workload_init(wfork, "n", 77, 96); /* the fork's own units: same keys, other payloads */
    memcpy(wfork->u, w.u, 100 * sizeof w.u[0]);
    workload_append(log, wfork, 100, 230);
    uint64_t flast = stats_of(log).last_lsn;
    OK(stele_close(log));
    log = open_trusted(f, 0);
    REQUIRE(stats_of(log).last_lsn == flast, "fork");
    snap_take(log, wfork, ref);
    OK(stele_close(log));
    copy_index(x, f);
    where("forked checkpoint");
    log = open_rebuilt(f);
    snap_take(log, wfork, got);
    snap_same(ref, got, "forked checkpoint vs the log's own");
    workload_check(log, wfork, 230);
    OK(stele_close(log));
    free(wfork);
    free(ref);
    free(got);
    tu_rmrf(base);
    free(base);
    free(x);
    free(y);
    free(f);
}
END_TEST

START_TEST(test_foreign_checkpoint)
{
    char *base = tu_tmpdir("ckpt-foreign"), *x = tu_path(base, "x"), *z = tu_path(base, "z"), *v = tu_path(base, "v");
    static struct workload wx, wz, wv;
    /* z: the same workload in another log: same keys, LSNs and payloads. */
    workload_init(&wx, "f", 4, 64);
    workload_init(&wz, "f", 4, 64);
    workload_init(&wv, "g", 5, 64);
    where("foreign checkpoint, same workload");
    make_log(x, &wx, 120);
    make_log(z, &wz, 120);
    make_log(v, &wv, 160); /* another log with other keys and more records */
    struct snap *ref = malloc(sizeof *ref), *got = malloc(sizeof *got);
    stele_log *log = open_trusted(x, 0);
    snap_take(log, &wx, ref);
    OK(stele_close(log));
    copy_index(z, x);
    log = open_rebuilt(x);
    snap_take(log, &wx, got);
    snap_same(ref, got, "z's checkpoint in x vs x's own"); /* recorded times are x's */
    OK(stele_close(log));
    where("foreign checkpoint, other workload");
    copy_index(v, x);
    log = open_rebuilt(x);
    snap_take(log, &wx, got);
    snap_same(ref, got, "v's checkpoint in x vs x's own");
    char key[32];
    unit_key(&wv, 0, key, sizeof key);
    stele_status st;
    EXPECT(stele_status_get(log, key, strlen(key), &st), STELE_ERR_NOT_FOUND);
    workload_retry(log, &wx, 120);
    OK(stele_close(log));
    free(ref);
    free(got);
    tu_rmrf(base);
    free(base);
    free(x);
    free(z);
    free(v);
}
END_TEST

/* ------------------------------------------ faults while checkpointing */

static const struct {
    unsigned op;
    int forever;
    const char *name;
} fault_loops[] = {
    {IO_FAULT_META, 0, "metadata call, once"},  {IO_FAULT_META, 1, "metadata calls, from then on"},
    {IO_FAULT_WRITE, 0, "write, once"},         {IO_FAULT_WRITE, 1, "writes, from then on"},
    {IO_FAULT_SYNC, 0, "sync, once"},           {IO_FAULT_SYNC, 1, "syncs, from then on"},
};

/* A pass-through backend over an io_fault one that keeps the fault
 * backend's call counts when the log destroys it at close, so that the loop
 * can tell whether the close reached the armed call. */
struct keep_io {
    struct io io;
    struct io *inner;
    uint64_t counts[4]; /* WRITE, SYNC, READ, META at destroy */
    int destroyed;
};

#define INNER(io) (((struct keep_io *)(io))->inner)
static int k_open(struct io *io, const char *p, int f, mode_t m) { return INNER(io)->ops->open(INNER(io), p, f, m); }
static int k_close(struct io *io, int fd) { return INNER(io)->ops->close(INNER(io), fd); }
static ssize_t k_pread(struct io *io, int fd, void *b, size_t n, uint64_t off)
{
    return INNER(io)->ops->pread(INNER(io), fd, b, n, off);
}
static int k_write(struct io *io, int fd, const void *b, size_t n, uint64_t off, int ds)
{
    return INNER(io)->ops->write(INNER(io), fd, b, n, off, ds);
}
static int k_fdatasync(struct io *io, int fd) { return INNER(io)->ops->fdatasync(INNER(io), fd); }
static int k_fsync(struct io *io, int fd) { return INNER(io)->ops->fsync(INNER(io), fd); }
static int k_fallocate(struct io *io, int fd, uint64_t n) { return INNER(io)->ops->fallocate(INNER(io), fd, n); }
static int k_ftruncate(struct io *io, int fd, uint64_t n) { return INNER(io)->ops->ftruncate(INNER(io), fd, n); }
static int k_fchmod(struct io *io, int fd, mode_t m) { return INNER(io)->ops->fchmod(INNER(io), fd, m); }
static int k_rename(struct io *io, const char *a, const char *b) { return INNER(io)->ops->rename(INNER(io), a, b); }
static int k_unlink(struct io *io, const char *p) { return INNER(io)->ops->unlink(INNER(io), p); }
static int k_sync_dir(struct io *io, const char *d) { return INNER(io)->ops->sync_dir(INNER(io), d); }
static void k_destroy(struct io *io)
{
    struct keep_io *k = (struct keep_io *)io;
    static const unsigned ops[4] = {IO_FAULT_WRITE, IO_FAULT_SYNC, IO_FAULT_READ, IO_FAULT_META};
    for (int i = 0; i < 4; i++)
        k->counts[i] = io_fault_count(k->inner, ops[i]);
    k->inner->ops->destroy(k->inner);
    k->destroyed = 1;
}
static const struct io_ops keep_ops = {k_open,  k_close,  k_pread,  k_write,  k_fdatasync, k_fsync,  k_fallocate,
                                       k_ftruncate, k_fchmod, k_rename, k_unlink, k_sync_dir, k_destroy};

static int op_index(unsigned op)
{
    return op == IO_FAULT_WRITE ? 0 : op == IO_FAULT_SYNC ? 1 : op == IO_FAULT_READ ? 2 : 3;
}

#define FAULT_UNITS_BASE 30
#define FAULT_UNITS 60

START_TEST(test_fault_close)
{
    char *base = tu_tmpdir("ckpt-fault"), *run = tu_path(base, "run"), *tpl = tu_path(base, "tpl");
    static struct workload w0, w;
    workload_init(&w0, "c", 6, 200);
    where("fault template");
    make_log(tpl, &w0, FAULT_UNITS_BASE); /* a checkpoint covering those */
    unsigned op = fault_loops[_i].op;
    int reached = 1;
    uint64_t nth;
    for (nth = 1; nth <= RUNS_MAX && reached; nth++) {
        where("close with the call %llu of class %s failing", (unsigned long long)nth, fault_loops[_i].name);
        tu_rmrf(run);
        REQUIRE(tu_copy_dir(tpl, run) == 0, "copy");
        w = w0;
        static struct keep_io k;
        memset(&k, 0, sizeof k);
        k.io.ops = &keep_ops;
        k.inner = io_fault_create(io_posix_create());
        REQUIRE(k.inner != NULL, "io_fault_create");
        stele_options o = opts_for(0);
        o.create = 0;
        stele_log *log = NULL;
        int code = stele_open_io(run, &o, &k.io, &log);
        REQUIRE(code == STELE_OK, "%s: open: %s: %s", g_where, stele_strerror(code), stele_errmsg());
        workload_append(log, &w, FAULT_UNITS_BASE, FAULT_UNITS);
        uint64_t last = stats_of(log).last_lsn;
        uint64_t before = io_fault_count(k.inner, op);
        io_fault_arm(k.inner, op, nth, EIO, fault_loops[_i].forever);
        int close_code = stele_close(log);
        REQUIRE(k.destroyed, "%s: stele_close did not destroy the backend", g_where);
        reached = k.counts[op_index(op)] - before >= nth;
        REQUIRE(reached || close_code == STELE_OK, "%s: close failed (%s: %s) without reaching the fault", g_where,
                stele_strerror(close_code), stele_errmsg());
        /* Reopen with the plain backend: whatever the close left, the log
         * is the truth. */
        log = open_log(run, &o);
        stele_stats s = stats_of(log);
        REQUIRE(s.last_lsn == last, "%s: the log ends at %llu, %llu were acknowledged", g_where,
                (unsigned long long)s.last_lsn, (unsigned long long)last);
        REQUIRE(s.index_rebuilt == 0 || s.index_note[0] != '\0', "%s: rebuilt without a note", g_where);
        if (!reached)
            REQUIRE(s.index_rebuilt == 0 && s.index_scanned == 0, "%s: after a clean close: rebuilt %d, scanned %llu (%s)",
                    g_where, s.index_rebuilt, (unsigned long long)s.index_scanned, s.index_note);
        workload_check(log, &w, FAULT_UNITS);
        workload_retry(log, &w, FAULT_UNITS);
        OK(stele_close(log));
        stele_verify_report rep;
        int vcode = stele_verify(run, NULL, NULL, &rep);
        REQUIRE(vcode == STELE_OK && rep.problems == 0, "%s: verify: %s, %llu problems", g_where,
                stele_strerror(vcode), (unsigned long long)rep.problems);
    }
    REQUIRE(!reached, "%s: still reaching the fault after %d runs", fault_loops[_i].name, RUNS_MAX);
    fprintf(stderr, "fault loop (%s): %llu runs\n", fault_loops[_i].name, (unsigned long long)(nth - 1));
    tu_rmrf(base);
    free(base);
    free(run);
    free(tpl);
}
END_TEST

/* ---------------------------------------- crashes, simulated storage */

#define SIM_SEG (64u * 1024u)
#define SIM_UNITS_BASE 20
#define SIM_UNITS 52
#define SIM_SYNC_EVERY 7

/* What one run did: which units were appended, and up to which LSN a
 * successful stele_sync (or close) made the log durable. */
struct sim_run {
    struct workload w;
    int appended_to;       /* units [0, appended_to) were acknowledged */
    uint64_t synced_lsn;
    int close_ok;
};

static stele_options sim_opts(void)
{
    stele_options o = opts_for(SIM_SEG);
    o.create = 0;
    o.durability = STELE_DURABILITY_NONE;
    o.checkpoint_records = 16;
    return o;
}

/* Runs units [SIM_UNITS_BASE, SIM_UNITS) over dir through sim, in durability
 * none with a stele_sync every SIM_SYNC_EVERY units; stops at the first
 * failure (the simulator froze). */
static void sim_workload(struct io *sim, const char *dir, struct sim_run *r)
{
    stele_options o = sim_opts();
    stele_log *log = NULL;
    r->close_ok = 0;
    r->appended_to = SIM_UNITS_BASE;
    if (stele_open_io(dir, &o, sim, &log) != STELE_OK)
        return;
    int failed = 0;
    for (int i = SIM_UNITS_BASE; i < SIM_UNITS && !failed; i++) {
        if (unit_append(log, &r->w, i) != STELE_OK) {
            failed = 1;
            break;
        }
        r->appended_to = i + 1;
        if (i % SIM_SYNC_EVERY == 0) {
            stele_stats s;
            uint64_t last = stele_stats_get(log, &s) == STELE_OK ? s.last_lsn : 0;
            if (stele_sync(log) != STELE_OK)
                failed = 1;
            else
                r->synced_lsn = last;
        }
    }
    stele_stats s;
    uint64_t last = stele_stats_get(log, &s) == STELE_OK ? s.last_lsn : 0;
    r->close_ok = stele_close(log) == STELE_OK && !failed;
    if (r->close_ok)
        r->synced_lsn = last;
}

/* Per key, what a scan of the log implies. */
struct truth {
    int present[UNITS_MAX];
    stele_status st[UNITS_MAX];
};

static int key_unit(const struct workload *w, const char *key, size_t size)
{
    char buf[32];
    if (size >= sizeof buf)
        return -1;
    memcpy(buf, key, size);
    buf[size] = 0;
    size_t plen = strlen(w->prefix);
    if (strncmp(buf, w->prefix, plen) != 0 || strncmp(buf + plen, "-k", 2) != 0)
        return -1;
    return atoi(buf + plen + 2);
}

static void truth_scan(stele_log *log, const struct workload *w, struct truth *t)
{
    memset(t, 0, sizeof *t);
    /* LSN -> unit for the compensation targets. */
    uint64_t last = stats_of(log).last_lsn;
    int *owner = calloc(last + 2, sizeof *owner);
    stele_iter *it;
    OK(stele_iter_open(log, 1, &it));
    const stele_record *r;
    for (;;) {
        OK(stele_iter_next(it, 0, &r));
        if (!r)
            break;
        if (r->kind == STELE_KIND_COMPENSATION) {
            REQUIRE(r->ref <= last && owner[r->ref] > 0, "%s: compensation at %llu of %llu, no key there", g_where,
                    (unsigned long long)r->lsn, (unsigned long long)r->ref);
            int i = owner[r->ref] - 1;
            t->st[i].state = STELE_STATE_COMPENSATED;
            t->st[i].compensation_lsn = r->lsn;
            continue;
        }
        int i = r->key_size ? key_unit(w, r->key, r->key_size) : -1;
        if (i < 0)
            continue;
        REQUIRE(i < UNITS_MAX, "unit %d", i);
        if (r->kind == STELE_KIND_OUTCOME) {
            REQUIRE(t->present[i] && t->st[i].lsn == r->ref, "%s: outcome at %llu without its intent", g_where,
                    (unsigned long long)r->lsn);
            t->st[i].state = r->outcome == STELE_OUTCOME_CONFIRMED ? STELE_STATE_CONFIRMED : STELE_STATE_FAILED;
            t->st[i].outcome_lsn = r->lsn;
            owner[r->lsn] = i + 1;
            continue;
        }
        REQUIRE(!t->present[i], "%s: key of unit %d twice in the log (LSN %llu and %llu)", g_where, i,
                (unsigned long long)t->st[i].lsn, (unsigned long long)r->lsn);
        t->present[i] = 1;
        t->st[i].lsn = r->lsn;
        t->st[i].recorded_at_ns = r->recorded_at_ns;
        t->st[i].stream_version = r->stream_version;
        t->st[i].state = r->kind == STELE_KIND_INTENT ? STELE_STATE_PENDING : STELE_STATE_EVENT;
        owner[r->lsn] = i + 1;
    }
    stele_iter_close(it);
    free(owner);
}

/* What the crash states covered. */
static struct {
    uint64_t lost;      /* states in which the crash took acknowledged records */
    uint64_t trusted;   /* ... in which a checkpoint was trusted and the rest scanned */
    uint64_t rebuilt;   /* ... in which the index was rebuilt from the whole log */
} g_tally;

/* One crash state: recovered, checked against the log's own content and the
 * run's promises, and retried. */
static void sim_check_state(const char *dir, const struct sim_run *r)
{
    stele_options o = sim_opts();
    o.durability = STELE_DURABILITY_SYNC;
    stele_log *log = open_log(dir, &o);
    stele_stats s0 = stats_of(log);
    uint64_t last = s0.last_lsn;
    g_tally.rebuilt += s0.index_rebuilt == 1;
    g_tally.trusted += s0.index_rebuilt == 0 && s0.index_checkpoint_lsn > 0;
    REQUIRE(s0.index_rebuilt == 1 || s0.index_checkpoint_lsn + s0.index_scanned == last,
            "%s: checkpoint at %llu plus %llu scanned, the log ends at %llu", g_where,
            (unsigned long long)s0.index_checkpoint_lsn, (unsigned long long)s0.index_scanned,
            (unsigned long long)last);
    REQUIRE(last >= r->synced_lsn, "%s: the log ends at %llu, %llu were synced", g_where, (unsigned long long)last,
            (unsigned long long)r->synced_lsn);
    static struct truth t;
    truth_scan(log, &r->w, &t);
    for (int i = 0; i < SIM_UNITS; i++) {
        if (!unit_has_key(i))
            continue;
        const struct unit *u = &r->w.u[i];
        /* Acknowledged and covered by a sync: there, at its LSN. */
        if (u->done && u->lsn <= r->synced_lsn)
            REQUIRE(t.present[i] && t.st[i].lsn == u->lsn, "%s: unit %d (LSN %llu) was synced and is missing",
                    g_where, i, (unsigned long long)u->lsn);
        char key[32];
        unit_key(&r->w, i, key, sizeof key);
        stele_status st;
        memset(&st, 0, sizeof st);
        int code = stele_status_get(log, key, strlen(key), &st);
        if (!t.present[i]) {
            REQUIRE(code == STELE_ERR_NOT_FOUND, "%s: %s is not in the log, yet status says %s (state %d, LSN %llu)",
                    g_where, key, stele_strerror(code), st.state, (unsigned long long)st.lsn);
            continue;
        }
        REQUIRE(code == STELE_OK && status_eq(&st, &t.st[i]),
                "%s: status of %s: %s state %d lsn %llu outcome %llu compensation %llu; the log says state %d lsn %llu "
                "outcome %llu compensation %llu",
                g_where, key, stele_strerror(code), st.state, (unsigned long long)st.lsn,
                (unsigned long long)st.outcome_lsn, (unsigned long long)st.compensation_lsn, t.st[i].state,
                (unsigned long long)t.st[i].lsn, (unsigned long long)t.st[i].outcome_lsn,
                (unsigned long long)t.st[i].compensation_lsn);
    }
    /* Retry every unit's first record: a duplicate of what is there, or new
     * when the crash took it (never a false duplicate). */
    static struct evbuf b;
    int lost = 0;
    for (int i = 0; i < SIM_UNITS; i++) {
        if (!unit_has_key(i))
            continue;
        lost |= r->w.u[i].done && !t.present[i];
        stele_event e;
        unit_event(&r->w, i, 0, &r->w.u[i], &b, &e);
        stele_receipt rc;
        int code = stele_append(log, &e, &rc);
        uint64_t before = last;
        if (t.present[i]) {
            REQUIRE(code == STELE_OK && rc.decision == STELE_DECISION_DUPLICATE && rc.lsn == t.st[i].lsn,
                    "%s: retry of unit %d: %s decision %d LSN %llu; want a duplicate of %llu", g_where, i,
                    stele_strerror(code), rc.decision, (unsigned long long)rc.lsn, (unsigned long long)t.st[i].lsn);
        } else {
            REQUIRE(code == STELE_OK && rc.decision == STELE_DECISION_NEW && rc.lsn == before + 1,
                    "%s: retry of unit %d, which the crash took: %s decision %d LSN %llu; want new at %llu", g_where,
                    i, stele_strerror(code), rc.decision, (unsigned long long)rc.lsn,
                    (unsigned long long)(before + 1));
            last++;
        }
    }
    g_tally.lost += lost;
    OK(stele_close(log));
    stele_verify_report rep;
    int vcode = stele_verify(dir, NULL, NULL, &rep);
    REQUIRE(vcode == STELE_OK && rep.problems == 0, "%s: verify: %s, %llu problems", g_where, stele_strerror(vcode),
            (unsigned long long)rep.problems);
}

/* Counts the steps that touch the index file (for the trace: they must be
 * among the crash points). */
static void count_index_step(void *ctx, uint64_t step, const char *what)
{
    (void)step;
    if (strstr(what, "index"))
        ++*(uint64_t *)ctx;
    if (getenv("STELE_CKPT_TRACE"))
        fprintf(stderr, "step %llu: %s\n", (unsigned long long)step, what);
}

START_TEST(test_sim_crash)
{
    char *base = tu_tmpdir("ckpt-sim"), *run = tu_path(base, "run"), *tpl = tu_path(base, "tpl"),
         *state = tu_path(base, "state");
    uint64_t seed = tu_seed("checkpoint crash states");
    static struct sim_run r0, r;
    workload_init(&r0.w, "m", 8, 2500);
    where("sim template");
    {
        stele_options o = opts_for(SIM_SEG);
        o.checkpoint_records = 16;
        stele_log *log = open_log(tpl, &o);
        workload_append(log, &r0.w, 0, SIM_UNITS_BASE);
        OK(stele_close(log));
    }
    /* The clean run: how many steps, and which of them touch the index. */
    REQUIRE(tu_copy_dir(tpl, run) == 0, "copy");
    r = r0;
    struct io *sim = io_sim_create(io_posix_create(), run);
    io_sim_retain(sim);
    uint64_t index_steps = 0;
    io_sim_trace(sim, count_index_step, &index_steps);
    sim_workload(sim, run, &r);
    io_sim_trace(sim, NULL, NULL);
    REQUIRE(r.close_ok && r.appended_to == SIM_UNITS, "clean run: %d units, close %d", r.appended_to, r.close_ok);
    uint64_t steps = io_sim_steps(sim);
    sim->ops->destroy(sim);
    REQUIRE(index_steps >= 10, "only %llu steps of the run touch the index file: no checkpoints at seals?",
            (unsigned long long)index_steps);
    {
        stele_options o = sim_opts();
        stele_log *log = open_log(run, &o);
        stele_stats s = stats_of(log);
        REQUIRE(s.index_rebuilt == 0 && s.index_scanned == 0, "clean run: rebuilt %d scanned %llu (%s)",
                s.index_rebuilt, (unsigned long long)s.index_scanned, s.index_note);
        OK(stele_close(log));
    }
    static const unsigned modes[] = {
        IO_SIM_DATA_DROP | IO_SIM_DIR_KEEP,
        IO_SIM_DATA_KEEP | IO_SIM_DIR_KEEP,
        IO_SIM_DATA_SECTORS | IO_SIM_DIR_KEEP,
        IO_SIM_DATA_TEAR | IO_SIM_TEAR_512 | IO_SIM_FILL_GARBAGE | IO_SIM_DIR_KEEP,
        IO_SIM_DATA_DROP | IO_SIM_DIR_DROP,
        IO_SIM_DATA_KEEP | IO_SIM_DIR_PREFIX,
    };
    uint64_t states = 0;
    for (uint64_t n = 1; n <= steps; n++) {
        tu_rmrf(run);
        REQUIRE(tu_copy_dir(tpl, run) == 0, "copy");
        r = r0;
        sim = io_sim_create(io_posix_create(), run);
        io_sim_retain(sim);
        io_sim_crash_after(sim, n);
        sim_workload(sim, run, &r);
        char step[600];
        io_sim_last_step(sim, step, sizeof step);
        uint64_t digests[sizeof modes / sizeof modes[0]];
        for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
            uint64_t st_seed = seed * 1000003u + n * 16 + k;
            where("power lost after step %llu of %llu (%s), mode 0x%x seed %llu (STELE_TEST_SEED %llu), state in %s",
                  (unsigned long long)n, (unsigned long long)steps, step, modes[k], (unsigned long long)st_seed,
                  (unsigned long long)seed, state);
            REQUIRE(io_sim_crash_into(sim, modes[k], st_seed, NULL, &digests[k]) == 0, "%s: crash digest", g_where);
            int dup = 0;
            for (size_t i = 0; i < k && !dup; i++)
                dup = digests[i] == digests[k];
            if (dup)
                continue;
            tu_rmrf(state);
            REQUIRE(io_sim_crash_into(sim, modes[k], st_seed, state, NULL) == 0, "%s: crash_into", g_where);
            sim_check_state(state, &r);
            states++;
        }
        sim->ops->destroy(sim);
    }
    fprintf(stderr,
            "checkpoint crash states: %llu steps, %llu states; acknowledged records lost in %llu, checkpoint "
            "trusted in %llu, rebuilt in %llu\n",
            (unsigned long long)steps, (unsigned long long)states, (unsigned long long)g_tally.lost,
            (unsigned long long)g_tally.trusted, (unsigned long long)g_tally.rebuilt);
    /* The exploration is worth something only if it reached these cases. */
    ck_assert_uint_gt(g_tally.lost, 0);
    ck_assert_uint_gt(g_tally.trusted, 0);
    tu_rmrf(base);
    free(base);
    free(run);
    free(tpl);
    free(state);
}
END_TEST

/* ------------------------------------------------------------- scale */

#define BIG_KEYS 200000
#define BIG_BATCH 1000

START_TEST(test_many_keys)
{
    char *dir = tu_tmpdir("ckpt-big");
    where("200,000 keys");
    stele_options o = opts_for(0);
    stele_log *log = open_log(dir, &o);
    static char keys[BIG_BATCH][16];
    static stele_event ev[BIG_BATCH];
    static stele_receipt rc[BIG_BATCH];
    for (int b = 0; b < BIG_KEYS / BIG_BATCH; b++) {
        for (int i = 0; i < BIG_BATCH; i++) {
            int n = snprintf(keys[i], sizeof keys[i], "big-%06d", b * BIG_BATCH + i);
            memset(&ev[i], 0, sizeof ev[i]);
            ev[i].key = keys[i], ev[i].key_size = (size_t)n;
            ev[i].payload = keys[i], ev[i].payload_size = (size_t)n;
            if (i % 10 == 0)
                ev[i].kind = STELE_KIND_INTENT;
        }
        OK(stele_append_batch(log, ev, BIG_BATCH, rc));
    }
    ck_assert_uint_eq(stats_of(log).last_lsn, BIG_KEYS);
    OK(stele_close(log));
    for (int phase = 0; phase < 2; phase++) {
        if (phase)
            delete_index(dir);
        o.create = 0;
        log = open_log(dir, &o);
        stele_stats s = stats_of(log);
        if (phase == 0)
            REQUIRE(s.index_scanned == 0 && s.index_rebuilt == 0 && s.index_checkpoint_lsn == BIG_KEYS,
                    "after a clean close: scanned %llu, rebuilt %d, checkpoint at %llu (%s)",
                    (unsigned long long)s.index_scanned, s.index_rebuilt,
                    (unsigned long long)s.index_checkpoint_lsn, s.index_note);
        else
            REQUIRE(s.index_scanned == BIG_KEYS && s.index_rebuilt == 1,
                    "without the index file: scanned %llu, rebuilt %d", (unsigned long long)s.index_scanned,
                    s.index_rebuilt);
        ck_assert_uint_eq(s.index_keys, BIG_KEYS);
        ck_assert_uint_eq(s.index_pending, BIG_KEYS / 10);
        char key[16];
        for (int i = 0; i < BIG_KEYS; i++) {
            int n = snprintf(key, sizeof key, "big-%06d", i);
            stele_status st;
            int code = stele_status_get(log, key, (size_t)n, &st);
            REQUIRE(code == STELE_OK && st.lsn == (uint64_t)i + 1 &&
                        st.state == (i % 10 == 0 ? STELE_STATE_PENDING : STELE_STATE_EVENT),
                    "phase %d: status of %s: %s, LSN %llu state %d", phase, key, stele_strerror(code),
                    (unsigned long long)st.lsn, st.state);
        }
        /* Retries of a sample: duplicates. */
        for (int i = 0; i < BIG_KEYS; i += 997) {
            int n = snprintf(key, sizeof key, "big-%06d", i);
            stele_event e;
            memset(&e, 0, sizeof e);
            e.key = key, e.key_size = (size_t)n, e.payload = key, e.payload_size = (size_t)n;
            if (i % 10 == 0)
                e.kind = STELE_KIND_INTENT;
            stele_receipt r1;
            OK(stele_append(log, &e, &r1));
            REQUIRE(r1.decision == STELE_DECISION_DUPLICATE && r1.lsn == (uint64_t)i + 1,
                    "phase %d: retry of %s: decision %d LSN %llu", phase, key, r1.decision, (unsigned long long)r1.lsn);
        }
        stele_pending_item *items;
        size_t count;
        OK(stele_pending(log, 0, 5, &items, &count));
        ck_assert_uint_eq(count, 5);
        ck_assert_uint_eq(items[0].lsn, 1);
        ck_assert_uint_eq(items[4].lsn, 41);
        stele_pending_free(items);
        OK(stele_close(log));
    }
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------ checkpoints under a live writer */

/* Seal checkpoints are serialised by stele-ckpt from a snapshot while the
 * writer goes on changing the index (SPEC.md §15.5). A workload that
 * changes what the snapshots share - outcomes for intents made long
 * before, compensations of old events, new keys and stream records - runs
 * with small segments, so seal checkpoints overlap it; at intervals the log
 * is synced and copied. Each copy opens with its checkpoint trusted, and
 * answers exactly as the same copy with the index rebuilt from its log:
 * every key's status, every stream's version, the pending list. A
 * snapshot that missed a change made before the LSN it covers, or that
 * held a torn one, would be refused or answer differently. ThreadSanitizer
 * (build-tsan) watches the writer and the checkpoint thread. */
#define LIVE_OPS 40000
#define LIVE_LAG 401
#define LIVE_STREAMS 13
#define LIVE_BATCH 16

static void live_key(int i, char *dst, size_t cap)
{
    snprintf(dst, cap, "%c%06d", i % 4 == 0 ? 'I' : 'E', i);
}

static void live_compare(stele_log *a, stele_log *b, int ops)
{
    char key[32];
    for (int i = 0; i < ops; i++) {
        if (i % 4 != 0 && i % 4 != 2)
            continue;
        live_key(i, key, sizeof key);
        stele_status sa, sb;
        memset(&sa, 0, sizeof sa);
        memset(&sb, 0, sizeof sb);
        int ca = stele_status_get(a, key, strlen(key), &sa), cb = stele_status_get(b, key, strlen(key), &sb);
        REQUIRE(ca == STELE_OK && cb == STELE_OK && status_eq(&sa, &sb),
                "%s: key %s: %s state %d lsn %llu outcome %llu compensation %llu (checkpoint) against %s %d %llu %llu "
                "%llu (rebuilt)", g_where, key, stele_strerror(ca), sa.state, (unsigned long long)sa.lsn,
                (unsigned long long)sa.outcome_lsn, (unsigned long long)sa.compensation_lsn, stele_strerror(cb),
                sb.state, (unsigned long long)sb.lsn, (unsigned long long)sb.outcome_lsn,
                (unsigned long long)sb.compensation_lsn);
    }
    for (int k = 0; k < LIVE_STREAMS; k++) {
        char name[16];
        snprintf(name, sizeof name, "S%d", k);
        uint64_t va, la, vb, lb;
        OK(stele_stream_version(a, name, strlen(name), &va, &la));
        OK(stele_stream_version(b, name, strlen(name), &vb, &lb));
        REQUIRE(va == vb && la == lb, "%s: stream %s: version %llu (LSN %llu) against %llu (%llu)", g_where, name,
                (unsigned long long)va, (unsigned long long)la, (unsigned long long)vb, (unsigned long long)lb);
    }
    stele_pending_item *pa, *pb;
    size_t na, nb;
    OK(stele_pending(a, 0, 0, &pa, &na));
    OK(stele_pending(b, 0, 0, &pb, &nb));
    REQUIRE(na == nb, "%s: %zu pending against %zu", g_where, na, nb);
    for (size_t i = 0; i < na; i++)
        REQUIRE(pa[i].lsn == pb[i].lsn && pa[i].recorded_at_ns == pb[i].recorded_at_ns,
                "%s: pending %zu: LSN %llu against %llu", g_where, i, (unsigned long long)pa[i].lsn,
                (unsigned long long)pb[i].lsn);
    stele_pending_free(pa);
    stele_pending_free(pb);
}

START_TEST(test_live_seal_checkpoints)
{
    char *dir = tu_tmpdir("ckpt-live");
    char *src = tu_path(dir, "log"), *copy = tu_path(dir, "copy"), *bare = tu_path(dir, "bare");
    stele_options o = opts_for(STELE_SEGMENT_SIZE_MIN);
    o.durability = STELE_DURABILITY_NONE;
    o.checkpoint_records = 500;
    stele_log *log = open_log(src, &o);
    static uint64_t lsn[LIVE_OPS];
    uint8_t payload[120];
    memset(payload, 'p', sizeof payload);
    /* Ops go in batches of LIVE_BATCH (fewer, fuller batches: a small log
     * to copy); an op changes only units at least LIVE_LAG ops older. */
    stele_event ev[LIVE_BATCH];
    stele_receipt rc[LIVE_BATCH];
    int op_of[LIVE_BATCH];
    char keys[LIVE_BATCH][32], streams[LIVE_BATCH][16];
    size_t n = 0;
    int copies = 0;
    for (int i = 0; i < LIVE_OPS; i++) {
        stele_event e = {.type = "live", .type_size = 4, .payload = payload, .payload_size = sizeof payload};
        char *key = keys[n];
        int j = i - LIVE_LAG; /* the older unit this op changes */
        int skip = 0;
        switch (i % 4) {
        case 0: /* an intent; two in three get an outcome LIVE_LAG ops later */
            e.kind = STELE_KIND_INTENT;
            break;
        case 1:
            if ((skip = j < 0 || j % 4 != 0 || (j / 4) % 3 == 2))
                break;
            live_key(j, key, sizeof keys[n]);
            e.kind = STELE_KIND_OUTCOME;
            e.outcome = (j / 4) % 3 ? STELE_OUTCOME_FAILED : STELE_OUTCOME_CONFIRMED;
            e.ref = lsn[j];
            e.key = key, e.key_size = strlen(key);
            break;
        case 2: /* an event in a stream */
            e.kind = STELE_KIND_EVENT;
            snprintf(streams[n], sizeof streams[n], "S%d", i % LIVE_STREAMS);
            e.stream = streams[n], e.stream_size = strlen(streams[n]);
            break;
        default: /* the compensation of one event in three, LIVE_LAG ops later */
            if ((skip = j < 0 || j % 4 != 2 || (j / 4) % 3 != 0))
                break;
            e.kind = STELE_KIND_COMPENSATION;
            e.ref = lsn[j];
            break;
        }
        if (e.kind == STELE_KIND_INTENT || e.kind == STELE_KIND_EVENT) {
            live_key(i, key, sizeof keys[n]);
            e.key = key, e.key_size = strlen(key);
        }
        if (!skip) {
            op_of[n] = i;
            ev[n++] = e;
        }
        if (n == LIVE_BATCH || (n > 0 && (i % 4000 == 3999 || i + 1 == LIVE_OPS))) {
            int code = stele_append_batch(log, ev, n, rc);
            REQUIRE(code == STELE_OK, "ops up to %d: %s: %s", i, stele_strerror(code), stele_errmsg());
            for (size_t k = 0; k < n; k++) {
                REQUIRE(rc[k].code == STELE_OK && rc[k].decision == STELE_DECISION_NEW, "op %d: %s, decision %d",
                        op_of[k], stele_strerror(rc[k].code), rc[k].decision);
                lsn[op_of[k]] = rc[k].lsn;
            }
            n = 0;
        }
        if (i % 4000 != 3999)
            continue;
        /* Everything appended is written; a checkpoint may be in flight
         * (its file is renamed into place whole, so the copy has the
         * previous one or this one). */
        OK(stele_sync(log));
        where("copy after op %d", i);
        /* From the 6th copy on, the first seal checkpoint (made by its own
         * thread, at its own pace) is waited for, so that at least 5 copies
         * hold one however loaded the machine is. */
        char *src_ckpt = tu_path(src, "index.ckpt");
        for (int waited_ms = 0; i / 4000 >= 5 && access(src_ckpt, F_OK) != 0; waited_ms++) {
            REQUIRE(waited_ms < 60000, "%s: no seal checkpoint in %s after 60 s", g_where, src);
            usleep(1000);
        }
        free(src_ckpt);
        tu_rmrf(copy);
        tu_rmrf(bare);
        /* The bare copy is made from the copy, not from the live log: both are
         * then the same instant (a checkpoint renamed into place between two
         * copies of the live log gave one a checkpoint and not the other). */
        REQUIRE(tu_copy_dir(src, copy) == 0 && tu_copy_dir(copy, bare) == 0, "copy %s", src);
        char *tmp = tu_path(bare, "index.ckpt.tmp");
        unlink(tmp);
        free(tmp);
        char *ckpt = tu_path(bare, "index.ckpt");
        int have = access(ckpt, F_OK) == 0;
        if (have)
            unlink(ckpt);
        free(ckpt);
        stele_options ro = opts_for(0);
        ro.create = 0;
        stele_log *a = open_log(copy, &ro);
        stele_stats sa = stats_of(a);
        REQUIRE(!have || (sa.index_rebuilt == 0 && sa.index_checkpoint_lsn > 0),
                "%s: the seal checkpoint was not trusted: %s", g_where, sa.index_note);
        stele_log *b = open_rebuilt(bare);
        live_compare(a, b, i + 1);
        OK(stele_close(a));
        OK(stele_close(b));
        copies += have;
    }
    stele_stats st = stats_of(log);
    fprintf(stderr, "check_index_ckpt: %d live copies with a seal checkpoint; %llu seal checkpoints, %llu failed\n",
            copies, (unsigned long long)st.index_checkpoints, (unsigned long long)st.index_checkpoint_failures);
    REQUIRE(copies >= 5 && st.index_checkpoints >= 3 && st.index_checkpoint_failures == 0,
            "%d copies with a checkpoint, %llu checkpoints, %llu failures", copies,
            (unsigned long long)st.index_checkpoints, (unsigned long long)st.index_checkpoint_failures);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(src);
    free(copy);
    free(bare);
    free(dir);
}
END_TEST

int main(void)
{
    /* Durability here is the simulator's and the fault backend's business:
     * scratch logs live in memory when they can (fsync costs nothing). */
    if (access("/dev/shm", W_OK) == 0)
        setenv("STELE_TEST_TMP", "/dev/shm", 1);
    Suite *s = suite_create("index_ckpt");
    TCase *tc = tcase_create("trust");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_damaged_checkpoint);
    tcase_add_test(tc, test_stale_checkpoint);
    tcase_add_test(tc, test_newer_checkpoint);
    tcase_add_test(tc, test_foreign_checkpoint);
    suite_add_tcase(s, tc);
    tc = tcase_create("crashes");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_fault_close, 0, (int)(sizeof fault_loops / sizeof fault_loops[0]));
    tcase_add_test(tc, test_sim_crash);
    suite_add_tcase(s, tc);
    tc = tcase_create("live");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_live_seal_checkpoints);
    suite_add_tcase(s, tc);
    tc = tcase_create("scale");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_many_keys);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/*
 * check_uring.c - proves RELIABILITY S14 and S16 through the real io_uring
 * backend (engine/io_uring.c): a write or sync that the ring reports short,
 * cancelled, interrupted, refused or lost is resumed or retried boundedly,
 * or fences the log; it is never acknowledged; and what was acknowledged
 * reads back byte for byte after reopening (SPEC.md §11.2, §14).
 *
 * How:
 *  - A real short write in a linked write→fdatasync chain (S14). A forked
 *    child lowers RLIMIT_FSIZE (SIGXFSZ ignored) to 40 or 100 bytes past the
 *    data of a segment about to be sealed, so the kernel itself writes only
 *    that much of the footer and cancels the fdatasync linked to it
 *    (-ECANCELED); the backend resumes at offset + written, which the kernel
 *    refuses (EFBIG). (The limit applies to the write's offset, not to the
 *    file's size, so it bites inside the preallocated, zero-filled segment.)
 *    The same with a batch write, buffered (short at a byte) and O_DIRECT
 *    (short at a block). A hook that only watches proves the kernel did so.
 *    The append gets IO (footer: nothing of it written) or OUTCOME_UNKNOWN
 *    with a message naming the segment, the offset or the footer, and
 *    EFBIG; the next one FENCED. The parent reopens without the limit: the
 *    acknowledged records are there; a torn batch or footer (40 bytes) is
 *    cut; a footer whose fields all made it (100 bytes: the rest of its
 *    block is zeros, which the file already held) is an interrupted seal
 *    that recovery completes; appends work; verify is clean.
 *  - A sweep of injected ring faults (S14, S16). The backend's test hook
 *    (io.h, io_uring_hook_set) replaces results the ring gave: a write's
 *    completion (short at a sector, 0 bytes, -EAGAIN, -EINTR, -EIO; the sync
 *    linked to it then -ECANCELED, as the kernel would), a sync's completion
 *    (-ECANCELED, -EAGAIN, -EINTR, -EIO; linked or not), io_uring_enter when
 *    submitting (EAGAIN, EBUSY, EINTR, EBADR) or waiting (EINTR, EBADR). A
 *    small workload (sync durability; keyed and keyless appends, a batch of
 *    3, a duplicate; 64 KiB segments, so it seals a segment and creates the
 *    next) runs with the nth event of the fault's class faulted, once, and
 *    for retried faults also forever after, for n = 1, 2, ... until n is past
 *    the workload's events. Then:
 *      - a retried fault once, or a short write even forever: every append
 *        acknowledged with the right LSN and decision, nothing fenced,
 *        durable_lsn covers them all;
 *      - a failure (EIO, a cancelled sync, EBADR) or a retried fault that
 *        never stops: the append that met it gets OUTCOME_UNKNOWN or IO with
 *        a message naming the operation, a file of the log and the error;
 *        every later one FENCED; stats say fenced; the handle does no more
 *        ring I/O; acknowledged records read back on it; close fails; the
 *        fault was retried a bounded number of times (attempts are counted:
 *        no timeouts);
 *      - reopened: every acknowledged record at its LSN byte for byte, none
 *        that was refused, dense LSNs, no name twice; retried keys new or
 *        duplicate, never twice; verify clean.
 *  - A ring that lost its way (S16): after a submit or wait fails for good
 *    (EBADR), the next write on that ring fails without touching it, instead
 *    of taking the earlier write's completions for its own.
 *  - A signal storm (S16): four threads append while another sends SIGUSR1
 *    (handler installed without SA_RESTART) to every other thread of the
 *    process, so that io_uring_enter returns -EINTR while waiting (the
 *    watching hook counts them, up to 64 in a row on one wait): every append
 *    succeeds, nothing is fenced, and the log reads back and verifies.
 *  - The spare segment (SPEC.md §7.2): a roll takes over the file prepared
 *    ahead (the same inode), a new one is prepared, close removes it, a
 *    stale one is removed at open, one that cannot be made is counted in
 *    stats (the roll makes its file), the POSIX backend makes none.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"
#include "stele.h"
#include "testutil.h"

#define SEG_SIZE (64u * 1024u)
#define PAYLOAD_MAX (32u * 1024u)
#define RUNS_MAX 300    /* a sweep that never gets past its fault is a bug */
#define HITS_MAX 1000   /* a fault that never stops is retried at most this often */

static stele_options opts_uring(void)
{
    stele_options o;
    stele_options_init(&o);
    o.segment_size = SEG_SIZE;
    o.payload_size_max = PAYLOAD_MAX;
    o.io_backend = STELE_IO_URING;
    return o;
}

static stele_log *open_uring(const char *dir, int create)
{
    stele_options o = opts_uring();
    o.create = create;
    stele_log *log = NULL;
    int rc = stele_open(dir, &o, &log);
    REQUIRE(rc == STELE_OK, "open %s on io_uring: %s: %s", dir, stele_strerror(rc), stele_errmsg());
    return log;
}

static stele_stats stats_of(stele_log *log)
{
    stele_stats s;
    OK(stele_stats_get(log, &s));
    return s;
}

static void verify_clean(const char *dir, uint64_t records, const char *what)
{
    stele_verify_report rep;
    int code = stele_verify(dir, NULL, NULL, &rep);
    REQUIRE(code == STELE_OK && rep.problems == 0, "%s: verify: %s (%llu problems): %s", what, stele_strerror(code),
            (unsigned long long)rep.problems, stele_errmsg());
    REQUIRE(rep.records == records, "%s: verify counts %llu records, want %llu", what,
            (unsigned long long)rep.records, (unsigned long long)records);
}

/* ------------------------------------------------------------ records */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* The payload of the record called name: its size (8000..16000 bytes unless
 * size is given) and bytes follow from the name. */
static size_t name_payload(const char *name, uint8_t *buf, size_t size)
{
    uint64_t h = hash_str(name), s = h | 1;
    size_t n = size ? size : 8000 + (size_t)(h % 8000);
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0)
            s = tu_rand(&s);
        buf[i] = (uint8_t)(s >> (8 * (i % 8)));
    }
    return n;
}

/* Record names: "k..." carry their name as idempotency key, "n..." no key.
 * The type field holds the name, so every record read back says what it is. */
static void event_of(const char *name, uint8_t *buf, size_t size, stele_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->type = name;
    ev->type_size = strlen(name);
    if (name[0] == 'k') {
        ev->key = name;
        ev->key_size = strlen(name);
    }
    ev->payload = buf;
    ev->payload_size = name_payload(name, buf, size);
}

static int append_names(stele_log *log, char (*names)[16], int n, stele_receipt *rcs)
{
    static _Thread_local uint8_t bufs[3][PAYLOAD_MAX];
    stele_event evs[3];
    for (int j = 0; j < n; j++)
        event_of(names[j], bufs[j], 0, &evs[j]);
    return stele_append_batch(log, evs, (size_t)n, rcs);
}

/* What a log holds: name -> LSN, each record checked byte for byte on the way. */
#define CONTENT_MAX 4096
struct content {
    char names[CONTENT_MAX][16];
    uint64_t lsns[CONTENT_MAX];
    int count;
    uint64_t last_lsn;
};

static uint64_t content_lsn(const struct content *c, const char *name)
{
    for (int i = 0; i < c->count; i++)
        if (strcmp(c->names[i], name) == 0)
            return c->lsns[i];
    return 0;
}

static void content_read(stele_log *log, struct content *c, const char *what)
{
    static uint8_t buf[PAYLOAD_MAX];
    memset(c, 0, sizeof *c);
    stele_iter *it;
    OK(stele_iter_open(log, 1, &it));
    const stele_record *r;
    for (;;) {
        OK(stele_iter_next(it, 0, &r));
        if (!r)
            break;
        REQUIRE(r->lsn == c->last_lsn + 1, "%s: LSN %llu follows %llu: not dense", what, (unsigned long long)r->lsn,
                (unsigned long long)c->last_lsn);
        c->last_lsn = r->lsn;
        char name[16];
        REQUIRE(r->type_size > 0 && r->type_size < sizeof name, "%s: LSN %llu: type of %zu bytes", what,
                (unsigned long long)r->lsn, r->type_size);
        memcpy(name, r->type, r->type_size);
        name[r->type_size] = '\0';
        REQUIRE(content_lsn(c, name) == 0, "%s: %s is in the log twice (LSN %llu and %llu)", what, name,
                (unsigned long long)content_lsn(c, name), (unsigned long long)r->lsn);
        REQUIRE((name[0] == 'k') == (r->key_size > 0), "%s: LSN %llu (%s): key of %zu bytes", what,
                (unsigned long long)r->lsn, name, r->key_size);
        REQUIRE(r->key_size == 0 || (r->key_size == strlen(name) && memcmp(r->key, name, r->key_size) == 0),
                "%s: LSN %llu (%s): wrong key", what, (unsigned long long)r->lsn, name);
        /* Sizes up to PAYLOAD_MAX: the big records of the limit test say theirs in the name. */
        size_t size = name[1] == 'B' ? strtoul(name + 2, NULL, 10) : 0;
        size_t n = name_payload(name, buf, size);
        REQUIRE(r->payload_size == n && memcmp(r->payload, buf, n) == 0, "%s: LSN %llu (%s): payload differs", what,
                (unsigned long long)r->lsn, name);
        ck_assert_int_lt(c->count, CONTENT_MAX);
        snprintf(c->names[c->count], sizeof c->names[c->count], "%s", name);
        c->lsns[c->count++] = r->lsn;
    }
    stele_iter_close(it);
}

/* ------------------------------------------------------- the ring hook */

enum fault_class { CL_WRITE, CL_SYNC, CL_SUBMIT, CL_WAIT };
enum { RES_HALF = 1, RES_ZERO = 2 }; /* write results: about half of what was written, none */

struct fault_kind {
    const char *name;
    enum fault_class cls;
    int res;       /* the result put in place: -errno, or RES_HALF / RES_ZERO for writes */
    int retried;   /* 2: resumed whatever happens; 1: once is retried, forever fences; 0: fences */
    int err_said;  /* the errno the failure's message names */
};

struct ring_fault {
    pthread_mutex_t lock;
    const struct fault_kind *kind; /* NULL: only watch */
    uint64_t nth;
    int forever;
    uint64_t seen;               /* events of the kind's class since armed */
    uint64_t hits;               /* results replaced */
    uint64_t events[5];          /* every event, by enum io_uring_event */
    uint64_t eintr_waits;        /* real -EINTR results of waits (before any replacement) */
    uint64_t eintr_run_max;      /* the most of them in a row on one thread */
    /* the completions seen while `record` is set (the limit test) */
    int record;
    int log_n;
    int log_event[32];
    int log_res[32];
    size_t log_len[32];
};

/* A write made to fail or stop short cancels the sync linked to it, as the
 * kernel would; that completion comes next on the same thread. */
static _Thread_local int cancel_linked;
static _Thread_local uint64_t eintr_run; /* interrupted waits in a row */

static enum fault_class class_of(enum io_uring_event e)
{
    switch (e) {
    case IO_URING_SUBMIT: return CL_SUBMIT;
    case IO_URING_WAIT: return CL_WAIT;
    case IO_URING_CQE_WRITE: return CL_WRITE;
    default: return CL_SYNC;
    }
}

static int inject(const struct fault_kind *k, int res)
{
    if (k->res == RES_HALF) /* at a sector, as a direct write stops */
        return res > 512 ? (res / 2 + 511) / 512 * 512 : res;
    if (k->res == RES_ZERO)
        return res > 0 ? 0 : res;
    return k->res;
}

static int ring_hook(void *ctx, enum io_uring_event ev, int res, size_t len)
{
    struct ring_fault *f = ctx;
    pthread_mutex_lock(&f->lock);
    f->events[ev]++;
    if (ev == IO_URING_WAIT) {
        eintr_run = res == -EINTR ? eintr_run + 1 : 0;
        f->eintr_waits += res == -EINTR;
        if (eintr_run > f->eintr_run_max)
            f->eintr_run_max = eintr_run;
    }
    if (ev == IO_URING_CQE_LINKED_SYNC && cancel_linked && f->kind) {
        res = -ECANCELED;
    } else if (f->kind && class_of(ev) == f->kind->cls) {
        f->seen++;
        if (f->seen == f->nth || (f->forever && f->seen > f->nth)) {
            f->hits++;
            res = inject(f->kind, res);
        }
    }
    if (ev == IO_URING_CQE_WRITE || ev == IO_URING_SUBMIT)
        cancel_linked = ev == IO_URING_CQE_WRITE && res != (int)len;
    if (f->record && ev >= IO_URING_CQE_WRITE && f->log_n < 32) {
        f->log_event[f->log_n] = ev;
        f->log_res[f->log_n] = res;
        f->log_len[f->log_n++] = len;
    }
    pthread_mutex_unlock(&f->lock);
    return res;
}

static void fault_init(struct ring_fault *f, const struct fault_kind *k, uint64_t nth, int forever)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->lock, NULL);
    f->kind = k;
    f->nth = nth;
    f->forever = forever;
}

static struct io_uring_hook hook_of(struct ring_fault *f)
{
    return (struct io_uring_hook){ring_hook, f};
}

static uint64_t fault_get(struct ring_fault *f, uint64_t *field)
{
    pthread_mutex_lock(&f->lock);
    uint64_t v = *field;
    pthread_mutex_unlock(&f->lock);
    return v;
}

static uint64_t fault_events(struct ring_fault *f)
{
    pthread_mutex_lock(&f->lock);
    uint64_t n = 0;
    for (int i = 0; i < 5; i++)
        n += f->events[i];
    pthread_mutex_unlock(&f->lock);
    return n;
}

/* ------------------------------------------------------------ workload */

#define OPS 6
#define BATCH_OP 2 /* a batch of 3 */
#define DUP_OP 3   /* re-appends op 0's record: duplicate */

struct op {
    int nev;
    char names[3][16];
    stele_receipt rc[3];
    int code;
    char msg[600];
};

/* Ops 1 and 5 have no key, op 2 is a batch of 3, op 3 repeats op 0. About
 * 20 blocks of batch frames: the workload seals its first segment (footer,
 * truncate, chmod) and creates a second (zero-fill, header, rename). */
static void workload_init(struct op *ops)
{
    memset(ops, 0, OPS * sizeof *ops);
    for (int i = 0; i < OPS; i++) {
        struct op *op = &ops[i];
        op->nev = i == BATCH_OP ? 3 : 1;
        for (int j = 0; j < op->nev; j++) {
            if (i == DUP_OP)
                snprintf(op->names[j], sizeof op->names[j], "k0");
            else
                snprintf(op->names[j], sizeof op->names[j], "%c%d%c", i % 4 == 1 ? 'n' : 'k', i,
                         op->nev > 1 ? 'a' + j : '\0');
        }
    }
}

static void workload_run(stele_log *log, struct op *ops)
{
    for (int i = 0; i < OPS; i++) {
        ops[i].code = append_names(log, ops[i].names, ops[i].nev, ops[i].rc);
        snprintf(ops[i].msg, sizeof ops[i].msg, "%s", stele_errmsg());
    }
}

/* The codes of a run: OK up to the fault; when it fences, the op that met it
 * OUTCOME_UNKNOWN or IO, every later one FENCED, each saying why. Returns the
 * highest acknowledged LSN. */
static uint64_t check_codes(const struct op *ops, int fences, const char *dir, const struct fault_kind *k,
                            const char *what)
{
    int failed = 0;
    uint64_t acked = 0;
    const char *said = strerror(k->err_said);
    for (int i = 0; i < OPS; i++) {
        const struct op *op = &ops[i];
        if (!failed && op->code == STELE_OK) {
            for (int j = 0; j < op->nev; j++) {
                REQUIRE(op->rc[j].code == STELE_OK, "%s: op %d receipt %d: code %d", what, i, j, op->rc[j].code);
                int want = i == DUP_OP ? STELE_DECISION_DUPLICATE : STELE_DECISION_NEW;
                REQUIRE(op->rc[j].decision == (stele_decision)want, "%s: op %d: decision %d, want %d", what, i,
                        op->rc[j].decision, want);
                if (i == DUP_OP)
                    REQUIRE(op->rc[0].lsn == ops[0].rc[0].lsn, "%s: duplicate points at LSN %llu, want %llu", what,
                            (unsigned long long)op->rc[0].lsn, (unsigned long long)ops[0].rc[0].lsn);
                else
                    REQUIRE(op->rc[j].lsn == acked + 1, "%s: op %d: LSN %llu after %llu", what, i,
                            (unsigned long long)op->rc[j].lsn, (unsigned long long)acked);
                if (op->rc[j].lsn > acked)
                    acked = op->rc[j].lsn;
            }
            continue;
        }
        REQUIRE(fences, "%s: op %d failed (%s) although the fault is retried: %s", what, i,
                stele_strerror(op->code), op->msg);
        if (!failed) {
            REQUIRE(op->code == STELE_ERR_OUTCOME_UNKNOWN || op->code == STELE_ERR_IO,
                    "%s: op %d met the fault and returned %d (%s): %s", what, i, op->code, stele_strerror(op->code),
                    op->msg);
            REQUIRE(strstr(op->msg, dir) != NULL, "%s: op %d: message '%s' names no file of %s", what, i, op->msg,
                    dir);
            REQUIRE(strstr(op->msg, "write") || strstr(op->msg, "sync") || strstr(op->msg, "zero-fill"),
                    "%s: op %d: message '%s' does not say which operation failed", what, i, op->msg);
        } else {
            REQUIRE(op->code == STELE_ERR_FENCED, "%s: op %d after the fault returned %d (%s), want FENCED: %s", what,
                    i, op->code, stele_strerror(op->code), op->msg);
        }
        REQUIRE(strstr(op->msg, said) != NULL, "%s: op %d: message '%s' does not say '%s'", what, i, op->msg, said);
        for (int j = 0; j < op->nev; j++)
            REQUIRE((int)op->rc[j].code == op->code && op->rc[j].decision == STELE_DECISION_NONE,
                    "%s: op %d receipt %d: code %d decision %d, the call %d", what, i, j, op->rc[j].code,
                    op->rc[j].decision, op->code);
        failed = 1;
    }
    REQUIRE(failed == fences, "%s: the fault should fence the log (%d) but every op succeeded", what, fences);
    return acked;
}

/* The fenced handle: no more ring I/O, appends and syncs FENCED, reads work. */
static void check_fenced_handle(stele_log *log, struct ring_fault *f, const struct op *ops, uint64_t acked,
                                const char *what)
{
    stele_stats s = stats_of(log);
    REQUIRE(s.fenced == 1, "%s: stats do not say fenced", what);
    REQUIRE(s.durable_lsn == acked && s.last_lsn == acked, "%s: durable LSN %llu, last %llu, acknowledged %llu", what,
            (unsigned long long)s.durable_lsn, (unsigned long long)s.last_lsn, (unsigned long long)acked);
    uint64_t events = fault_events(f);
    char name[1][16] = {"k-after"};
    stele_receipt rc;
    EXPECT(append_names(log, name, 1, &rc), STELE_ERR_FENCED);
    EXPECT(stele_sync(log), STELE_ERR_FENCED);
    REQUIRE(fault_events(f) == events, "%s: the fenced handle still does ring I/O", what);
    static uint8_t buf[PAYLOAD_MAX];
    for (int i = 0; i < OPS && ops[i].code == STELE_OK; i++) {
        for (int j = 0; j < ops[i].nev; j++) {
            stele_record *r;
            int code = stele_get(log, ops[i].rc[j].lsn, &r);
            REQUIRE(code == STELE_OK, "%s: get %llu on the fenced handle: %s", what,
                    (unsigned long long)ops[i].rc[j].lsn, stele_errmsg());
            size_t n = name_payload(ops[i].names[j], buf, 0);
            REQUIRE(r->payload_size == n && memcmp(r->payload, buf, n) == 0, "%s: LSN %llu differs", what,
                    (unsigned long long)ops[i].rc[j].lsn);
            stele_record_free(r);
        }
    }
}

/* Reopened: acknowledged records at their LSNs, refused ones absent, retried
 * keys new or duplicate, each once; verify clean. */
static void check_reopened(const char *dir, struct op *ops, const char *what)
{
    stele_log *log = open_uring(dir, 0);
    static struct content c;
    content_read(log, &c, what);
    for (int i = 0; i < OPS; i++) {
        const struct op *op = &ops[i];
        for (int j = 0; j < op->nev; j++) {
            uint64_t at = content_lsn(&c, op->names[j]);
            if (op->code == STELE_OK)
                REQUIRE(at == op->rc[j].lsn, "%s: op %d: %s acknowledged at LSN %llu, found at %llu", what, i,
                        op->names[j], (unsigned long long)op->rc[j].lsn, (unsigned long long)at);
            else if (op->code != STELE_ERR_OUTCOME_UNKNOWN && i != DUP_OP)
                REQUIRE(at == 0, "%s: op %d: %s was refused (%s) but is in the log at LSN %llu", what, i,
                        op->names[j], stele_strerror(op->code), (unsigned long long)at);
        }
    }
    /* Retry the keyed appends that failed: new or duplicate, never twice. (A
     * keyless one whose outcome is unknown would be appended again: that is
     * what keys are for.) */
    for (int i = 0; i < OPS; i++) {
        struct op *op = &ops[i];
        if (op->code == STELE_OK || op->names[0][0] != 'k')
            continue;
        stele_receipt rcs[3];
        int code = append_names(log, op->names, op->nev, rcs);
        REQUIRE(code == STELE_OK, "%s: retrying op %d after reopening: %s: %s", what, i, stele_strerror(code),
                stele_errmsg());
        for (int j = 0; j < op->nev; j++) {
            uint64_t at = content_lsn(&c, op->names[j]);
            REQUIRE(at ? rcs[j].decision == STELE_DECISION_DUPLICATE && rcs[j].lsn == at
                       : rcs[j].decision == STELE_DECISION_NEW,
                    "%s: retry of %s (at LSN %llu): decision %d LSN %llu", what, op->names[j],
                    (unsigned long long)at, rcs[j].decision, (unsigned long long)rcs[j].lsn);
            if (!at) { /* now it is there (the duplicate op retries op 0's key) */
                ck_assert_int_lt(c.count, CONTENT_MAX);
                snprintf(c.names[c.count], sizeof c.names[c.count], "%s", op->names[j]);
                c.lsns[c.count++] = rcs[j].lsn;
            }
        }
    }
    int count = c.count;
    content_read(log, &c, what); /* every name once, every payload intact */
    ck_assert_int_eq(c.count, count);
    ck_assert_int_eq(stats_of(log).fenced, 0);
    OK(stele_close(log));
    verify_clean(dir, (uint64_t)c.count, what);
}

/* ------------------------------------------------------------ the sweep */

static const struct fault_kind kinds[] = {
    {"write short", CL_WRITE, RES_HALF, 2, 0},
    {"write 0 bytes", CL_WRITE, RES_ZERO, 1, EIO},
    {"write -EAGAIN", CL_WRITE, -EAGAIN, 1, EIO},
    {"write -EINTR", CL_WRITE, -EINTR, 1, EIO},
    {"write -EIO", CL_WRITE, -EIO, 0, EIO},
    {"sync -ECANCELED", CL_SYNC, -ECANCELED, 0, ECANCELED},
    {"sync -EAGAIN", CL_SYNC, -EAGAIN, 1, EIO},
    {"sync -EINTR", CL_SYNC, -EINTR, 1, EIO},
    {"sync -EIO", CL_SYNC, -EIO, 0, EIO},
    {"submit EAGAIN", CL_SUBMIT, -EAGAIN, 1, EIO},
    {"submit EBUSY", CL_SUBMIT, -EBUSY, 1, EIO},
    {"submit EINTR", CL_SUBMIT, -EINTR, 1, EIO},
    {"submit EBADR", CL_SUBMIT, -EBADR, 0, EIO},
    {"wait EINTR", CL_WAIT, -EINTR, 1, EIO},
    {"wait EBADR", CL_WAIT, -EBADR, 0, EIO},
};
#define KINDS ((int)(sizeof kinds / sizeof kinds[0]))

/* Each kind once; the retried ones forever too (a failure fences at its
 * first hit, so forever would fault nothing more: the fenced handle does no
 * more ring I/O, which every run checks). */
struct sweep {
    int kind, forever;
};
static struct sweep sweeps[2 * KINDS];
static int sweep_count;

static void sweeps_init(void)
{
    for (int k = 0; k < KINDS; k++) {
        sweeps[sweep_count++] = (struct sweep){k, 0};
        if (kinds[k].retried)
            sweeps[sweep_count++] = (struct sweep){k, 1};
    }
}

/* One run with the nth event of k's class faulted; returns whether it was reached. */
static int sweep_run(const char *base, const struct fault_kind *k, uint64_t nth, int forever)
{
    char what[160], sub[32];
    snprintf(what, sizeof what, "%s %s nth=%llu", k->name, forever ? "forever" : "once", (unsigned long long)nth);
    snprintf(sub, sizeof sub, "run%llu", (unsigned long long)nth);
    char *dir = tu_path(base, sub);
    stele_log *log = open_uring(dir, 1);
    static struct ring_fault f;
    fault_init(&f, k, nth, forever);
    struct io_uring_hook h = hook_of(&f);
    io_uring_hook_set(&h);
    static struct op ops[OPS];
    workload_init(ops);
    workload_run(log, ops);
    uint64_t hits = fault_get(&f, &f.hits);
    int fences = hits && (k->retried == 0 || (k->retried == 1 && forever));
    uint64_t acked = check_codes(ops, fences, dir, k, what);
    if (!forever && hits)
        REQUIRE(hits == 1, "%s: faulted %llu times", what, (unsigned long long)hits);
    REQUIRE(hits <= HITS_MAX, "%s: retried %llu times: not bounded", what, (unsigned long long)hits);
    if (fences) {
        check_fenced_handle(log, &f, ops, acked, what);
        REQUIRE(stele_close(log) != STELE_OK, "%s: stele_close of a fenced handle returned OK", what);
    } else {
        stele_stats s = stats_of(log);
        REQUIRE(!s.fenced && s.durable_lsn == acked && s.sealed_segment_count >= 1,
                "%s: fenced %d, durable LSN %llu of %llu, %llu sealed segments", what, s.fenced,
                (unsigned long long)s.durable_lsn, (unsigned long long)acked,
                (unsigned long long)s.sealed_segment_count);
        OK(stele_close(log));
    }
    io_uring_hook_set(NULL);
    check_reopened(dir, ops, what);
    tu_rmrf(dir);
    free(dir);
    return hits > 0;
}

/* Where the sweep's 400-odd logs go: $STELE_URING_SWEEP_TMP, else a RAM
 * file system when there is one (/dev/shm), else $STELE_TEST_TMP. The
 * faults are injected at the ring, so the file system only adds fsync
 * latency, which on a busy disk tripled the sweep's time. (The batches are
 * then written buffered: tmpfs has no O_DIRECT; the limit test above covers
 * a real short direct write.) */
static char *sweep_tmpdir(void)
{
    const char *base = getenv("STELE_URING_SWEEP_TMP");
    if (!base || !*base)
        base = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : NULL;
    if (!base)
        return tu_tmpdir("uring-sweep");
    char *p = tu_path(base, "stele-uring-sweep.XXXXXX");
    if (p && !mkdtemp(p)) {
        free(p);
        return tu_tmpdir("uring-sweep");
    }
    return p;
}

START_TEST(test_ring_fault_sweep)
{
    const struct fault_kind *k = &kinds[sweeps[_i].kind];
    int forever = sweeps[_i].forever;
    char *base = sweep_tmpdir();
    ck_assert_ptr_nonnull(base);
    uint64_t nth;
    for (nth = 1; nth <= RUNS_MAX; nth++)
        if (!sweep_run(base, k, nth, forever))
            break;
    REQUIRE(nth > 4 && nth <= RUNS_MAX, "%s %s: the sweep ended after %llu runs", k->name,
            forever ? "forever" : "once", (unsigned long long)nth);
    fprintf(stderr, "uring sweep: %s %s: %llu runs\n", k->name, forever ? "forever" : "once",
            (unsigned long long)nth);
    tu_rmrf(base);
    free(base);
}
END_TEST

/* ------------------------------------------- a ring that lost its way */

/* The backend's promise (io.h: a write is complete or fails). A submit or a
 * wait that failed for good (EBADR: a completion may be lost) can leave that
 * write's completions in the ring; a later write taking them for its own
 * would be reported written and synced while its bytes are still in flight.
 * So the ring is not used again: the next write fails without touching it,
 * and the sync ring, which lost nothing, still works. */
START_TEST(test_ring_poisoned)
{
    static const struct fault_kind lost[] = {
        {"wait EBADR", CL_WAIT, -EBADR, 0, EIO},
        {"submit EBADR", CL_SUBMIT, -EBADR, 0, EIO},
    };
    const struct fault_kind *k = &lost[_i];
    char *dir = tu_tmpdir("uring-poison");
    char *path = tu_path(dir, "file");
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    ck_assert_int_ge(fd, 0);
    struct io *io = io_uring_create(8);
    ck_assert_ptr_nonnull(io);
    static struct ring_fault f;
    fault_init(&f, k, 1, 0);
    struct io_uring_hook h = hook_of(&f);
    io_uring_hook_set(&h);
    static uint8_t a[STELE_BLOCK_SIZE], b[STELE_BLOCK_SIZE];
    memset(a, 'a', sizeof a);
    memset(b, 'b', sizeof b);
    int r = io->ops->write(io, fd, a, sizeof a, 0, 1);
    REQUIRE(r == -EIO, "%s: the write returned %d", k->name, r);
    uint64_t events = fault_events(&f);
    r = io->ops->write(io, fd, b, sizeof b, sizeof a, 1);
    REQUIRE(r == -EIO, "%s: the next write on that ring returned %d (%s), want -EIO", k->name, r,
            r < 0 ? strerror(-r) : "reported written and synced");
    REQUIRE(fault_events(&f) == events, "%s: the next write still used the ring", k->name);
    OK(io->ops->fdatasync(io, fd));
    io_uring_hook_set(NULL);
    io->ops->destroy(io);
    close(fd);
    free(path);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* ------------------------------------- a real short write (RLIMIT_FSIZE) */

enum limit_case {
    LIMIT_FOOTER_TORN = 0,  /* the footer's write, linked to its fdatasync, stops within its fields */
    LIMIT_FOOTER_WHOLE = 1, /* ... stops after them (SPEC.md §7.1: the rest is zeros, already there) */
    LIMIT_BATCH = 2,        /* a batch, written buffered, stops at a byte */
    LIMIT_DIRECT = 3,       /* a batch, written O_DIRECT, stops at a block */
};
#define LIMIT_FOOTER(lc) ((lc) <= LIMIT_FOOTER_WHOLE)

/* Bytes the kernel writes before the limit. */
static uint64_t limit_cut(enum limit_case lc)
{
    static const uint64_t cuts[] = {40, 100, 100, STELE_BLOCK_SIZE};
    return cuts[lc];
}

/* What the child reports through shared memory. */
struct limit_report {
    int done;
    char fail[600];
    int direct_io;
    uint64_t data_end, limit;
    char names[4][16];
    int codes[4];
    stele_receipt rcs[4];
    char msgs[4][600];
    int fenced;
    struct ring_fault f;
};

#define CHILD_REQUIRE(rep, cond, ...)                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            snprintf((rep)->fail, sizeof (rep)->fail, __VA_ARGS__);            \
            return;                                                            \
        }                                                                      \
    } while (0)

static int append_sized(stele_log *log, const char *name, size_t size, stele_receipt *rc)
{
    static uint8_t buf[PAYLOAD_MAX];
    stele_event ev;
    event_of(name, buf, size, &ev);
    return stele_append(log, &ev, rc);
}

/* The child: two records, then a limit just past the end of the active
 * segment's data, then the record that meets it and one more. */
static void limit_child(const char *dir, enum limit_case lc, struct limit_report *rep)
{
    signal(SIGXFSZ, SIG_IGN);
    stele_options o = opts_uring();
    o.create = 1;
    o.direct_io = lc == LIMIT_DIRECT;
    stele_log *log = NULL;
    int code = stele_open(dir, &o, &log);
    CHILD_REQUIRE(rep, code == STELE_OK, "open: %s", stele_errmsg());
    for (int i = 0; i < 2; i++) {
        snprintf(rep->names[i], sizeof rep->names[i], "kB%d-%d", 10000, i);
        rep->codes[i] = append_sized(log, rep->names[i], 10000, &rep->rcs[i]);
        CHILD_REQUIRE(rep, rep->codes[i] == STELE_OK, "append %d: %s", i, stele_errmsg());
    }
    stele_stats s = stats_of(log);
    rep->direct_io = s.direct_io; /* known once a batch was written */
    CHILD_REQUIRE(rep, s.segment_count == 1 && s.data_size % STELE_BLOCK_SIZE == 0, "%llu segments, data %llu",
                  (unsigned long long)s.segment_count, (unsigned long long)s.data_size);
    rep->data_end = s.data_size; /* the first segment: its header and batches */
    uint64_t room = SEG_SIZE - STELE_FOOTER_SIZE - rep->data_end;
    /* The footer case: a record too big for the room left seals the segment,
     * whose footer is written at data_end. The batch cases: one that fits. */
    size_t size = LIMIT_FOOTER(lc) ? (size_t)room : 2 * STELE_BLOCK_SIZE;
    rep->limit = rep->data_end + limit_cut(lc);
    snprintf(rep->names[2], sizeof rep->names[2], "kB%zu", size);
    snprintf(rep->names[3], sizeof rep->names[3], "k-after");
    pthread_mutex_lock(&rep->f.lock);
    rep->f.record = 1;
    pthread_mutex_unlock(&rep->f.lock);
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    struct rlimit low = {rep->limit, rl.rlim_max};
    CHILD_REQUIRE(rep, setrlimit(RLIMIT_FSIZE, &low) == 0, "setrlimit: %s", strerror(errno));
    rep->codes[2] = append_sized(log, rep->names[2], size, &rep->rcs[2]);
    snprintf(rep->msgs[2], sizeof rep->msgs[2], "%s", stele_errmsg());
    rep->codes[3] = append_sized(log, rep->names[3], 0, &rep->rcs[3]);
    snprintf(rep->msgs[3], sizeof rep->msgs[3], "%s", stele_errmsg());
    setrlimit(RLIMIT_FSIZE, &rl);
    pthread_mutex_lock(&rep->f.lock);
    rep->f.record = 0;
    pthread_mutex_unlock(&rep->f.lock);
    rep->fenced = stats_of(log).fenced;
    (void)stele_close(log);
    rep->done = 1;
}

static const char *event_name(int ev)
{
    static const char *names[] = {"submit", "wait", "write", "linked sync", "sync"};
    return ev >= 0 && ev < 5 ? names[ev] : "?";
}

/* The completions the child saw around the limit, for messages. */
static void describe_cqes(const struct ring_fault *f, char *dst, size_t cap)
{
    size_t n = 0;
    dst[0] = '\0';
    for (int i = 0; i < f->log_n && n + 64 < cap; i++)
        n += (size_t)snprintf(dst + n, cap - n, "%s%s(%zu)=%d", i ? ", " : "", event_name(f->log_event[i]),
                              f->log_len[i], f->log_res[i]);
}

/* Index of the first completion at or after from of event ev with result res (len: 0 = any); -1 if none. */
static int find_cqe(const struct ring_fault *f, int from, int ev, int res, size_t len)
{
    for (int i = from; i < f->log_n; i++)
        if (f->log_event[i] == ev && f->log_res[i] == res && (!len || f->log_len[i] == len))
            return i;
    return -1;
}

START_TEST(test_real_short_write)
{
    enum limit_case lc = (enum limit_case)_i;
    static const char *case_names[] = {"footer cut in its fields (linked write + fdatasync)",
                                       "footer cut after its fields (linked write + fdatasync)", "batch, buffered",
                                       "batch, O_DIRECT"};
    const char *what = case_names[lc];
    char *dir = tu_tmpdir("uring-limit");
    struct limit_report *rep = mmap(NULL, sizeof *rep, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(rep, MAP_FAILED);
    memset(rep, 0, sizeof *rep);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&rep->f.lock, &ma);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct io_uring_hook h = hook_of(&rep->f); /* watches, changes nothing */
        io_uring_hook_set(&h);
        limit_child(dir, lc, rep);
        _exit(0);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the child died (status %d)", what, status);
    REQUIRE(rep->done, "%s: the child stopped: %s", what, rep->fail);
    char cqes[1024];
    describe_cqes(&rep->f, cqes, sizeof cqes);
    fprintf(stderr, "%s: data end %llu, limit %llu, direct %d: %s; completions: %s\n", what,
            (unsigned long long)rep->data_end, (unsigned long long)rep->limit, rep->direct_io, rep->msgs[2], cqes);

    /* The kernel stopped the write short, and the backend went on from there. */
    size_t asked = LIMIT_FOOTER(lc) ? STELE_FOOTER_SIZE : 0;
    int got = (int)(rep->limit - rep->data_end);
    int at = find_cqe(&rep->f, 0, IO_URING_CQE_WRITE, got, asked);
    REQUIRE(at >= 0 && (lc != LIMIT_DIRECT || rep->direct_io), "%s: no write stopped at %d bytes: %s", what, got,
            cqes);
    if (LIMIT_FOOTER(lc))
        REQUIRE(at + 1 < rep->f.log_n && rep->f.log_event[at + 1] == IO_URING_CQE_LINKED_SYNC &&
                    rep->f.log_res[at + 1] == -ECANCELED,
                "%s: the sync linked to the short footer write was not cancelled: %s", what, cqes);
    REQUIRE(find_cqe(&rep->f, at + 1, IO_URING_CQE_WRITE, -EFBIG, 0) > at, "%s: the rest was not resubmitted: %s",
            what, cqes);

    /* Nothing after the limit is acknowledged; the log is fenced and says where. */
    int want = LIMIT_FOOTER(lc) ? STELE_ERR_IO : STELE_ERR_OUTCOME_UNKNOWN;
    REQUIRE(rep->codes[2] == want, "%s: the append that met the limit returned %s, want %s: %s", what,
            stele_strerror(rep->codes[2]), stele_strerror(want), rep->msgs[2]);
    REQUIRE((int)rep->rcs[2].code == want && rep->rcs[2].decision == STELE_DECISION_NONE, "%s: receipt %d/%d", what,
            rep->rcs[2].code, rep->rcs[2].decision);
    REQUIRE(strstr(rep->msgs[2], dir) && strstr(rep->msgs[2], ".seg") && strstr(rep->msgs[2], strerror(EFBIG)),
            "%s: message '%s' does not name the segment and the error", what, rep->msgs[2]);
    char off[32];
    snprintf(off, sizeof off, "%llu", (unsigned long long)rep->data_end);
    REQUIRE(LIMIT_FOOTER(lc) ? strstr(rep->msgs[2], "footer") != NULL : strstr(rep->msgs[2], off) != NULL,
            "%s: message '%s' does not say what was written where (offset %s)", what, rep->msgs[2], off);
    REQUIRE(rep->codes[3] == STELE_ERR_FENCED && strstr(rep->msgs[3], strerror(EFBIG)),
            "%s: the append after the fault returned %s: %s", what, stele_strerror(rep->codes[3]), rep->msgs[3]);
    REQUIRE(rep->fenced, "%s: stats do not say fenced", what);

    /* Reopened without the limit: what was acknowledged is there, the rest
     * not. A torn footer or batch is cut; a footer whose fields all made it
     * is a seal a crash interrupted, which recovery completes (§10.3). */
    stele_log *log = open_uring(dir, 0);
    static struct content c;
    content_read(log, &c, what);
    REQUIRE(c.count == 2 && content_lsn(&c, rep->names[0]) == rep->rcs[0].lsn &&
                content_lsn(&c, rep->names[1]) == rep->rcs[1].lsn,
            "%s: reopened log holds %d records", what, c.count);
    stele_stats s = stats_of(log);
    int sealed = lc == LIMIT_FOOTER_WHOLE;
    REQUIRE(s.last_lsn == 2 && (s.recovery_torn_bytes > 0) == !sealed && s.sealed_segment_count == (uint64_t)sealed,
            "%s: reopened: last LSN %llu, %llu torn bytes cut, %llu sealed segments", what,
            (unsigned long long)s.last_lsn, (unsigned long long)s.recovery_torn_bytes,
            (unsigned long long)s.sealed_segment_count);
    stele_receipt rc;
    size_t size = strtoul(rep->names[2] + 2, NULL, 10);
    OK(append_sized(log, rep->names[2], size, &rc));
    ck_assert_int_eq(rc.decision, STELE_DECISION_NEW);
    ck_assert_uint_eq(rc.lsn, 3);
    OK(append_sized(log, rep->names[3], 0, &rc));
    ck_assert_uint_eq(rc.lsn, 4);
    content_read(log, &c, what);
    ck_assert_int_eq(c.count, 4);
    if (LIMIT_FOOTER(lc))
        ck_assert_uint_eq(stats_of(log).sealed_segment_count, 1);
    OK(stele_close(log));
    verify_clean(dir, 4, what);
    pthread_mutex_destroy(&rep->f.lock);
    munmap(rep, sizeof *rep);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* --------------------------------------------------------- signal storm */

#define STORM_THREADS 4
#define STORM_PER 120

struct storm_appender {
    stele_log *log;
    int tid;
    char names[STORM_PER][16];
    stele_receipt rc[STORM_PER];
    int code[STORM_PER];
    char msg[600];
};

static volatile sig_atomic_t storm_signals;

static void on_sigusr1(int sig)
{
    (void)sig;
    storm_signals++;
}

static void *storm_append_main(void *arg)
{
    struct storm_appender *t = arg;
    for (int i = 0; i < STORM_PER; i++) {
        snprintf(t->names[i], sizeof t->names[i], "k%d-%d", t->tid, i);
        t->code[i] = append_names(t->log, &t->names[i], 1, &t->rc[i]);
        if (t->code[i] != STELE_OK && !t->msg[0])
            snprintf(t->msg, sizeof t->msg, "%s", stele_errmsg());
    }
    return NULL;
}

struct storm {
    volatile int stop;
    uint64_t sent;
};

/* Sends SIGUSR1 to every other thread of the process, over and over. */
static void *storm_main(void *arg)
{
    struct storm *st = arg;
    pid_t self = (pid_t)syscall(SYS_gettid), pid = getpid();
    while (!__atomic_load_n(&st->stop, __ATOMIC_ACQUIRE)) {
        DIR *d = opendir("/proc/self/task");
        if (!d)
            break;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            pid_t tid = (pid_t)atoi(e->d_name);
            if (tid > 0 && tid != self && syscall(SYS_tgkill, pid, tid, SIGUSR1) == 0)
                st->sent++;
        }
        closedir(d);
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

START_TEST(test_signal_storm)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: interrupted system calls return EINTR */
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
    char *dir = tu_tmpdir("uring-storm");
    stele_log *log = open_uring(dir, 1);
    static struct ring_fault f;
    fault_init(&f, NULL, 0, 0); /* watches: counts the waits a signal interrupted */
    struct io_uring_hook h = hook_of(&f);
    io_uring_hook_set(&h);
    struct storm st = {0, 0};
    pthread_t storm_thread;
    ck_assert_int_eq(pthread_create(&storm_thread, NULL, storm_main, &st), 0);
    static struct storm_appender ap[STORM_THREADS];
    pthread_t threads[STORM_THREADS];
    for (int t = 0; t < STORM_THREADS; t++) {
        ap[t] = (struct storm_appender){.log = log, .tid = t};
        ck_assert_int_eq(pthread_create(&threads[t], NULL, storm_append_main, &ap[t]), 0);
    }
    for (int t = 0; t < STORM_THREADS; t++)
        pthread_join(threads[t], NULL);
    __atomic_store_n(&st.stop, 1, __ATOMIC_RELEASE);
    pthread_join(storm_thread, NULL);
    io_uring_hook_set(NULL);
    uint64_t eintr = fault_get(&f, &f.eintr_waits), waits = fault_get(&f, &f.events[IO_URING_WAIT]);
    fprintf(stderr,
            "signal storm: %llu signals sent, %d handled, %llu of %llu ring waits interrupted, at most %llu in a row\n",
            (unsigned long long)st.sent, (int)storm_signals, (unsigned long long)eintr, (unsigned long long)waits,
            (unsigned long long)fault_get(&f, &f.eintr_run_max));
    for (int t = 0; t < STORM_THREADS; t++)
        for (int i = 0; i < STORM_PER; i++)
            REQUIRE(ap[t].code[i] == STELE_OK && ap[t].rc[i].decision == STELE_DECISION_NEW,
                    "thread %d append %d under the signal storm: %s: %s", t, i, stele_strerror(ap[t].code[i]),
                    ap[t].msg);
    REQUIRE(eintr > 0, "no ring wait was interrupted by the %llu signals: the test proves nothing",
            (unsigned long long)st.sent);
    stele_stats s = stats_of(log);
    REQUIRE(!s.fenced && s.durable_lsn == STORM_THREADS * STORM_PER, "fenced %d, durable LSN %llu", s.fenced,
            (unsigned long long)s.durable_lsn);
    OK(stele_close(log));
    ck_assert_int_eq(sigaction(SIGUSR1, &old, NULL), 0);

    log = open_uring(dir, 0);
    static struct content c;
    content_read(log, &c, "signal storm");
    ck_assert_int_eq(c.count, STORM_THREADS * STORM_PER);
    for (int t = 0; t < STORM_THREADS; t++)
        for (int i = 0; i < STORM_PER; i++)
            REQUIRE(content_lsn(&c, ap[t].names[i]) == ap[t].rc[i].lsn, "%s acknowledged at %llu, found at %llu",
                    ap[t].names[i], (unsigned long long)ap[t].rc[i].lsn,
                    (unsigned long long)content_lsn(&c, ap[t].names[i]));
    OK(stele_close(log));
    verify_clean(dir, STORM_THREADS * STORM_PER, "signal storm");
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------ spare segment */

#define SPARE_FILE "segment.spare.tmp"

/* stat of dir's spare segment file: 0, or -1 with errno. */
static int spare_stat(const char *dir, struct stat *st)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" SPARE_FILE, dir);
    return stat(path, st);
}

/* Waits (boundedly) for the spare's file at its full size, other than the
 * file open as fd_before (or any, with -1), and opens it: the descriptor
 * keeps its inode from being reused, so that an inode that turns up again
 * under a segment's name is the very file. */
static int wait_spare(const char *dir, int fd_before, const char *what)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" SPARE_FILE, dir);
    struct stat before = {0}, st;
    if (fd_before >= 0)
        REQUIRE(fstat(fd_before, &before) == 0, "fstat: %s", strerror(errno));
    for (int i = 0; i < 12000; i++) { /* a poll, 60 s at most */
        int fd = open(path, O_RDONLY);
        if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size == SEG_SIZE &&
            (fd_before < 0 || st.st_ino != before.st_ino))
            return fd;
        if (fd >= 0)
            close(fd);
        usleep(5000);
    }
    ck_abort_msg("%s: no spare segment file in %s after 60 s", what, dir);
    return -1;
}

/* The segment open as fd is the newest segment file of dir (inode ino),
 * under its name only, and begins with a segment header. */
static void check_adopted(int fd, ino_t ino, const char *what)
{
    struct stat st;
    REQUIRE(fstat(fd, &st) == 0, "fstat: %s", strerror(errno));
    REQUIRE(st.st_ino == ino && st.st_nlink == 1, "%s: the spare (inode %llu, %llu links) is not the new segment "
            "(inode %llu)", what, (unsigned long long)st.st_ino, (unsigned long long)st.st_nlink,
            (unsigned long long)ino);
    uint8_t block[STELE_SEGMENT_HEADER_SIZE];
    REQUIRE(pread(fd, block, sizeof block, 0) == (ssize_t)sizeof block, "%s: read the header", what);
    struct fmt_segment_header h;
    REQUIRE(fmt_segment_header_decode(block, sizeof block, &h) == FMT_OK, "%s: no segment header", what);
    close(fd);
}

/* The segment files of dir: how many, and the newest's inode and size. */
static size_t segments_of(const char *dir, ino_t *out_ino, off_t *out_size)
{
    DIR *d = opendir(dir);
    REQUIRE(d, "opendir %s: %s", dir, strerror(errno));
    size_t n = 0;
    uint64_t newest = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t first;
        if (!fmt_segment_name_parse(e->d_name, &first))
            continue;
        n++;
        if (first < newest)
            continue;
        newest = first;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        REQUIRE(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
        *out_ino = st.st_ino;
        *out_size = st.st_size;
    }
    closedir(d);
    return n;
}

static void append_payload(stele_log *log, uint64_t i)
{
    char payload[2048];
    memset(payload, 'a' + (int)(i % 26), sizeof payload);
    stele_event ev = {.payload = payload, .payload_size = sizeof payload};
    stele_receipt rc;
    int code = stele_append(log, &ev, &rc);
    REQUIRE(code == STELE_OK && rc.lsn == i, "append %llu: %s: %s", (unsigned long long)i, stele_strerror(code),
            stele_errmsg());
}

/* The next segment's file is made ahead (SPEC.md §7.2): a roll takes over
 * the very file (its inode) that was prepared while the last segment
 * filled, and a new one is prepared; none is left after close; a stale one
 * is removed at open and never used; one that cannot be made is counted in
 * stats with its error, and the roll makes its file itself; a log on the
 * POSIX backend makes none. */
START_TEST(test_spare_segment)
{
    char *dir = tu_tmpdir("uring-spare");
    stele_log *log = open_uring(dir, 1);
    OK(stele_close(log));
    struct stat st;
    REQUIRE(spare_stat(dir, &st) != 0 && errno == ENOENT, "a log that appended nothing left a spare");

    /* A stale spare, as a crash would leave it: removed at open. */
    char path[4200];
    snprintf(path, sizeof path, "%s/" SPARE_FILE, dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f && fputs("not a segment", f) >= 0 && fclose(f) == 0, "write %s", path);
    log = open_uring(dir, 0);
    REQUIRE(spare_stat(dir, &st) != 0 && errno == ENOENT, "the stale spare is still there after open");

    uint64_t lsn = 1;
    append_payload(log, lsn++);
    int spare = wait_spare(dir, -1, "after the first append");
    ino_t ino;
    off_t size;
    ck_assert_uint_eq(segments_of(dir, &ino, &size), 1);
    /* 2 KiB records in 64 KiB segments: a roll within 40 appends. */
    while (segments_of(dir, &ino, &size) == 1) {
        REQUIRE(lsn < 40, "no roll after %llu appends", (unsigned long long)lsn);
        append_payload(log, lsn++);
    }
    ck_assert_int_eq(size, SEG_SIZE);
    int next = wait_spare(dir, spare, "after the roll");
    check_adopted(spare, ino, "first roll");
    /* A second roll takes the second spare. */
    while (segments_of(dir, &ino, &size) == 2) {
        REQUIRE(lsn < 80, "no second roll after %llu appends", (unsigned long long)lsn);
        append_payload(log, lsn++);
    }
    check_adopted(next, ino, "second roll");
    OK(stele_close(log));
    REQUIRE(spare_stat(dir, &st) != 0 && errno == ENOENT, "close left the spare");
    verify_clean(dir, lsn - 1, "spare segments");
    log = open_uring(dir, 0);
    for (uint64_t i = 1; i < lsn; i++) {
        stele_record *rec;
        OK(stele_get(log, i, &rec));
        REQUIRE(rec->payload_size == 2048 && ((const char *)rec->payload)[2047] == 'a' + (int)(i % 26),
                "LSN %llu reads back wrong", (unsigned long long)i);
        stele_record_free(rec);
    }
    OK(stele_close(log));

    /* A spare that cannot be made (its name taken by a directory): the
     * roll makes its file itself, and stats say what failed. */
    log = open_uring(dir, 0); /* first: open removes every *.tmp, and fails on a directory */
    REQUIRE(mkdir(path, 0755) == 0, "mkdir %s: %s", path, strerror(errno));
    size_t segs = segments_of(dir, &ino, &size);
    while (segments_of(dir, &ino, &size) == segs) {
        REQUIRE(lsn < 120, "no roll with the spare's name taken");
        append_payload(log, lsn++);
    }
    stele_stats s = stats_of(log);
    REQUIRE(s.segment_spare_failures == 1 && strstr(s.spare_note, SPARE_FILE) && strstr(s.spare_note, strerror(EISDIR)),
            "spare failures %llu, note '%s'", (unsigned long long)s.segment_spare_failures, s.spare_note);
    ck_assert_int_eq(s.fenced, 0);
    OK(stele_close(log));
    REQUIRE(rmdir(path) == 0, "rmdir %s: %s", path, strerror(errno));
    verify_clean(dir, lsn - 1, "spare segment not made");

    /* The POSIX backend rolls without a spare. */
    stele_options o = opts_uring();
    o.io_backend = STELE_IO_POSIX;
    OK(stele_open(dir, &o, &log));
    size_t before = segments_of(dir, &ino, &size);
    while (segments_of(dir, &ino, &size) == before) {
        REQUIRE(lsn < 200, "no roll on the POSIX backend");
        append_payload(log, lsn++);
    }
    REQUIRE(spare_stat(dir, &st) != 0 && errno == ENOENT, "the POSIX backend made a spare");
    OK(stele_close(log));
    verify_clean(dir, lsn - 1, "spare segments, then POSIX");
    tu_rmrf(dir);
    free(dir);
}
END_TEST

static Suite *uring_suite(void)
{
    Suite *s = suite_create("uring");
    TCase *tc = tcase_create("real_short_write");
    tcase_add_loop_test(tc, test_real_short_write, LIMIT_FOOTER_TORN, LIMIT_DIRECT + 1);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("fault_sweep");
    sweeps_init();
    tcase_add_loop_test(tc, test_ring_fault_sweep, 0, sweep_count);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("poisoned");
    tcase_add_loop_test(tc, test_ring_poisoned, 0, 2);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("signals");
    tcase_add_test(tc, test_signal_storm);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("spare");
    tcase_add_test(tc, test_spare_segment);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(uring_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

/*
 * check_killloop.c - proves that a writer killed with SIGKILL at any moment
 * loses no acknowledged record, invents none, and never lets a retried key be
 * appended twice (RELIABILITY G3, G8), on the real kernel: the default
 * io_uring backend, sync durability, the file system STELE_TEST_TMP is on.
 *
 * How: one log (64 KiB segments, 16 KiB payload limit, so segments roll and
 * seal all the time) lives through STELE_KILLLOOP_CYCLES cycles (default
 * 300). In each cycle a forked child opens the log and appends keyed records
 * flat out, from one thread or four, with stele_append or stele_append_batch
 * (1-6 records a call). Every payload is derived from its key alone. Before
 * each call the child tells the parent, through a pipe, which keys it starts;
 * after the call returns it reports each key's LSN (the acknowledgement).
 * The parent kills the child with SIGKILL right after fork, after a random
 * delay of 0-5 ms (from fork, or from the end of the child's open), or right
 * after the Nth acknowledgement; so kills land in open and recovery, in
 * segment rolls and seals, and between a write and its sync. Then it:
 *  - runs stele_verify on the log as the kill left it: no problem allowed
 *    (a torn tail is not one);
 *  - reopens it for writing (the engine waits ~1 s for the flock, which
 *    io_uring can keep briefly after kill -9) and iterates every record:
 *    LSNs are dense from 1, every key was started by some child and occurs
 *    once in the whole log, every payload is the one its key derives, and
 *    every acknowledged key is at its acknowledged LSN (also via stele_get);
 *    the records of one stele_append_batch call are all there or none;
 *  - retries every started but unacknowledged call, like a client that lost
 *    its connection: each key must come back `new` if it was not in the log
 *    and `duplicate` with the LSN it has there if it was, never a second
 *    record; a retried batch is all new or all duplicate.
 * The log grows across cycles. The seed (STELE_TEST_SEED) fixes the kill
 * schedule and the children's choices, not the kernel's timing.
 * tests/soak/kill_soak.sh runs thousands of cycles.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stele.h"
#include "testutil.h"

#define CYCLES_DEFAULT 300
#define SEGMENT_SIZE (64u * 1024u)
#define PAYLOAD_SIZE_MAX (16u * 1024u)
#define BATCH_COUNT_MAX 6
#define BATCH_PAYLOAD_BUDGET (36u * 1024u) /* a batch must fit one frame in a 64 KiB segment */
#define CHILD_THREADS_MAX 4
#define KILL_DELAY_US_MAX 5000
#define ACK_WAIT_MS 20000 /* a child that acknowledges nothing for this long is stuck */
#define KEY_TEXT_SIZE 24
#define TYPE_TEXT "killloop.event"

/* ------------------------------------------------------------ the records */

static void key_text(uint64_t key, char out[KEY_TEXT_SIZE])
{
    snprintf(out, KEY_TEXT_SIZE, "kl-%012" PRIu64, key);
}

static int key_parse(const char *s, size_t n, uint64_t *out)
{
    if (n != 15 || memcmp(s, "kl-", 3) != 0)
        return 0;
    uint64_t v = 0;
    for (size_t i = 3; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 1;
}

static uint64_t mix(uint64_t x)
{
    x += UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* Mostly small payloads, one in eight up to the 16 KiB limit, some empty. */
static size_t payload_size_of(uint64_t key)
{
    uint64_t r = mix(key);
    if (r % 8 == 0)
        return (size_t)(r >> 8) % (PAYLOAD_SIZE_MAX + 1);
    if (r % 8 == 1)
        return 0;
    return (size_t)(r >> 8) % 600;
}

/* Writes the payload key derives into buf (PAYLOAD_SIZE_MAX bytes). */
static size_t payload_of(uint64_t key, uint8_t *buf)
{
    size_t n = payload_size_of(key);
    uint64_t s = mix(key ^ UINT64_C(0x5eed));
    for (size_t i = 0; i < n; i += 8) {
        s = mix(s);
        for (size_t j = 0; j < 8 && i + j < n; j++)
            buf[i + j] = (uint8_t)(s >> (8 * j));
    }
    return n;
}

/* One append request for key; text and payload are the caller's buffers. */
static stele_event event_of(uint64_t key, char text[KEY_TEXT_SIZE], uint8_t *payload)
{
    key_text(key, text);
    stele_event ev = {0};
    ev.content = STELE_CONTENT_BINARY;
    ev.type = TYPE_TEXT;
    ev.type_size = strlen(TYPE_TEXT);
    ev.key = text;
    ev.key_size = strlen(text);
    ev.payload = payload;
    ev.payload_size = payload_of(key, payload);
    return ev;
}

/* ------------------------------------------------------- child <-> parent */

enum { MSG_OPENED = 1, MSG_START = 2, MSG_ACK = 3 };

/* Written whole (it is far below PIPE_BUF, so a kill never tears one). */
struct msg {
    uint32_t type;
    uint32_t count;   /* MSG_START: keys [key, key + count) in one call */
    uint64_t key;
    uint64_t lsn;     /* MSG_ACK */
    uint32_t batch;   /* MSG_START: 1 when the call is stele_append_batch */
    uint32_t unused;
};

struct plan {
    uint64_t first_key; /* the child numbers its keys from here */
    uint64_t seed;
    int threads;
    int batches;        /* use stele_append_batch */
};

struct child {
    const char *dir;
    const struct plan *plan;
    int fd;
    stele_log *log;
    pthread_mutex_t lock;
    uint64_t next_key;
    uint64_t rng;
};

static void send_msg(int fd, const struct msg *m)
{
    if (write(fd, m, sizeof *m) != (ssize_t)sizeof *m)
        _exit(4);
}

static void child_fail(const char *what, int code)
{
    fprintf(stderr, "killloop child: %s: %s: %s\n", what, stele_strerror(code), stele_errmsg());
    _exit(3);
}

/* Reserves the keys of the next call: one, or a batch that fits a frame. */
static uint64_t take_keys(struct child *c, uint32_t *out_count)
{
    pthread_mutex_lock(&c->lock);
    uint64_t first = c->next_key;
    uint32_t want = c->plan->batches ? 1 + (uint32_t)(tu_rand(&c->rng) % BATCH_COUNT_MAX) : 1, n = 0;
    size_t total = 0;
    while (n < want && (n == 0 || total + payload_size_of(first + n) <= BATCH_PAYLOAD_BUDGET))
        total += payload_size_of(first + n++);
    c->next_key += n;
    pthread_mutex_unlock(&c->lock);
    *out_count = n;
    return first;
}

static void *child_thread(void *arg)
{
    struct child *c = arg;
    stele_event evs[BATCH_COUNT_MAX];
    stele_receipt rcs[BATCH_COUNT_MAX];
    char texts[BATCH_COUNT_MAX][KEY_TEXT_SIZE];
    uint8_t *payloads = malloc((size_t)BATCH_COUNT_MAX * PAYLOAD_SIZE_MAX);
    if (!payloads)
        _exit(5);
    for (;;) {
        uint32_t n;
        uint64_t first = take_keys(c, &n);
        for (uint32_t i = 0; i < n; i++)
            evs[i] = event_of(first + i, texts[i], payloads + (size_t)i * PAYLOAD_SIZE_MAX);
        struct msg m = {.type = MSG_START, .count = n, .key = first, .batch = (uint32_t)c->plan->batches};
        send_msg(c->fd, &m);
        int rc = c->plan->batches ? stele_append_batch(c->log, evs, n, rcs) : stele_append(c->log, evs, rcs);
        if (rc != STELE_OK)
            child_fail("append", rc);
        for (uint32_t i = 0; i < n; i++) {
            if (rcs[i].decision != STELE_DECISION_NEW)
                child_fail("append of a fresh key was not new", STELE_OK);
            struct msg a = {.type = MSG_ACK, .count = 1, .key = first + i, .lsn = rcs[i].lsn};
            send_msg(c->fd, &a);
        }
    }
    return NULL;
}

/* The child: open (recovering what the last one left), then append until killed. */
static void child_main(const char *dir, const struct plan *plan, int fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
    struct child c = {.dir = dir, .plan = plan, .fd = fd, .next_key = plan->first_key, .rng = plan->seed};
    pthread_mutex_init(&c.lock, NULL);
    stele_options o;
    stele_options_init(&o); /* io_uring, the log's sync durability */
    int rc = stele_open(dir, &o, &c.log);
    if (rc != STELE_OK)
        child_fail("open", rc);
    struct msg m = {.type = MSG_OPENED};
    send_msg(fd, &m);
    pthread_t t[CHILD_THREADS_MAX];
    for (int i = 1; i < plan->threads; i++)
        if (pthread_create(&t[i], NULL, child_thread, &c) != 0)
            _exit(6);
    child_thread(&c);
}

/* ----------------------------------------------------------- the parent */

enum { KEY_UNUSED = 0, KEY_STARTED = 1, KEY_ACKED = 2 };

struct key_state {
    uint8_t state;
    uint8_t seen;       /* found by the current cycle's scan */
    uint64_t lsn;       /* acknowledged LSN (KEY_ACKED) */
    uint64_t found_lsn; /* where the scan found it */
};

struct call {
    uint64_t first;
    uint32_t count;
    int batch;
};

struct loop {
    char *dir;
    uint64_t seed;
    uint64_t rng;
    int cycle;
    struct key_state *keys;
    size_t key_cap;
    uint64_t next_key;
    struct call *calls;     /* the current cycle's started calls */
    size_t call_count, call_cap;
    uint8_t *payload;
    char fail[1024];
    /* figures */
    uint64_t acks, retried_new, retried_dup, records, kills_in_open, lock_retries, torn_bytes, torn_batches;
};

static int failf(struct loop *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int failf(struct loop *L, const char *fmt, ...)
{
    if (L->fail[0])
        return -1;
    int n = snprintf(L->fail, sizeof L->fail, "cycle %d (seed %" PRIu64 "): ", L->cycle, L->seed);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->fail + n, sizeof L->fail - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static struct key_state *key_at(struct loop *L, uint64_t key)
{
    if (key >= L->key_cap) {
        size_t cap = L->key_cap ? L->key_cap : 4096;
        while (cap <= key)
            cap *= 2;
        L->keys = realloc(L->keys, cap * sizeof *L->keys);
        ck_assert_ptr_nonnull(L->keys);
        memset(L->keys + L->key_cap, 0, (cap - L->key_cap) * sizeof *L->keys);
        L->key_cap = cap;
    }
    return &L->keys[key];
}

static int take_msg(struct loop *L, const struct msg *m, int *opened, uint64_t *acks)
{
    if (m->type == MSG_OPENED) {
        *opened = 1;
    } else if (m->type == MSG_START) {
        if (m->count == 0 || m->count > BATCH_COUNT_MAX || m->key < L->next_key)
            return failf(L, "bad start message (key %" PRIu64 ", count %u)", m->key, m->count);
        if (L->call_count == L->call_cap) {
            L->call_cap = L->call_cap ? 2 * L->call_cap : 64;
            L->calls = realloc(L->calls, L->call_cap * sizeof *L->calls);
            ck_assert_ptr_nonnull(L->calls);
        }
        L->calls[L->call_count++] = (struct call){m->key, m->count, (int)m->batch};
        for (uint32_t i = 0; i < m->count; i++)
            key_at(L, m->key + i)->state = KEY_STARTED;
    } else if (m->type == MSG_ACK) {
        struct key_state *k = key_at(L, m->key);
        if (k->state != KEY_STARTED || m->lsn == 0)
            return failf(L, "acknowledgement of key %" PRIu64 " that was not started", m->key);
        k->state = KEY_ACKED;
        k->lsn = m->lsn;
        (*acks)++;
    } else {
        return failf(L, "unknown message %u", m->type);
    }
    return 0;
}

/* Reads whatever the pipe holds now (non-blocking). Returns -1 on a failure. */
static int drain(struct loop *L, int fd, int *opened, uint64_t *acks, int *eof)
{
    struct msg m;
    for (;;) {
        ssize_t r = read(fd, &m, sizeof m);
        if (r == (ssize_t)sizeof m) {
            if (take_msg(L, &m, opened, acks) < 0)
                return -1;
            continue;
        }
        if (r == 0)
            *eof = 1;
        else if (r > 0)
            return failf(L, "partial message (%zd bytes) from the child", r);
        else if (errno != EAGAIN && errno != EINTR)
            return failf(L, "read from child: %s", strerror(errno));
        return 0;
    }
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

enum kill_when { KILL_AT_FORK, KILL_AFTER_FORK, KILL_AFTER_OPEN, KILL_AFTER_ACKS };

/* Reads the child's messages until the kill moment has come. */
static int wait_kill_moment(struct loop *L, int fd, enum kill_when when, int64_t delay_us, uint64_t acks_want,
                            int *opened, uint64_t *acks)
{
    int64_t start = mono_us(), deadline = start + (int64_t)ACK_WAIT_MS * 1000;
    int64_t kill_at = when == KILL_AFTER_FORK ? start + delay_us : INT64_MAX;
    int eof = 0;
    for (;;) {
        if (drain(L, fd, opened, acks, &eof) < 0)
            return -1;
        if (when == KILL_AFTER_OPEN && *opened && kill_at == INT64_MAX)
            kill_at = mono_us() + delay_us;
        if (when == KILL_AFTER_ACKS && *acks >= acks_want)
            return 0;
        int64_t now = mono_us();
        if (now >= kill_at)
            return 0;
        if (eof)
            return failf(L, "the child exited before it was killed");
        if (now >= deadline)
            return failf(L, "the child made no progress for %d ms", ACK_WAIT_MS);
        int64_t wait_us = (kill_at == INT64_MAX ? deadline : kill_at) - now;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, (int)((wait_us + 999) / 1000));
    }
}

/* One child: fork, let it append, kill it; leaves this cycle's calls in L. */
static int run_child(struct loop *L)
{
    struct plan plan = {.first_key = L->next_key, .seed = tu_rand(&L->rng) | 1};
    uint64_t r = tu_rand(&L->rng);
    plan.threads = r % 4 == 0 ? CHILD_THREADS_MAX : 1;
    plan.batches = (r >> 8) % 3 == 0;
    uint64_t w = (r >> 16) % 8;
    enum kill_when when = w == 0 ? KILL_AT_FORK : w <= 2 ? KILL_AFTER_FORK : w <= 5 ? KILL_AFTER_OPEN : KILL_AFTER_ACKS;
    int64_t delay_us = (int64_t)((r >> 24) % (KILL_DELAY_US_MAX + 1));
    uint64_t acks_want = 1 + (r >> 40) % 40;

    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    fcntl(p[0], F_SETPIPE_SZ, 1 << 20); /* a child never blocks on a full pipe */
    L->call_count = 0;
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        child_main(L->dir, &plan, p[1]);
        _exit(7);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    int opened = 0, eof = 0, rc = 0;
    uint64_t acks = 0;
    if (when != KILL_AT_FORK)
        rc = wait_kill_moment(L, p[0], when, delay_us, acks_want, &opened, &acks);
    kill(pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (rc == 0)
        rc = drain(L, p[0], &opened, &acks, &eof);
    close(p[0]);
    if (rc == 0 && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
        rc = failf(L, "the child was not killed but ended with status 0x%x", (unsigned)status);
    L->acks += acks;
    L->kills_in_open += !opened;
    for (size_t i = 0; i < L->call_count; i++) {
        uint64_t end = L->calls[i].first + L->calls[i].count;
        if (end > L->next_key)
            L->next_key = end;
    }
    return rc;
}

static int open_writer(struct loop *L, stele_log **out)
{
    stele_options o;
    stele_options_init(&o);
    int rc;
    for (int attempt = 0; (rc = stele_open(L->dir, &o, out)) == STELE_ERR_LOCKED && attempt < 5; attempt++)
        L->lock_retries++; /* the engine already waited ~1 s; io_uring may still hold the dead child's lock */
    if (rc != STELE_OK)
        return failf(L, "reopen: %s: %s", stele_strerror(rc), stele_errmsg());
    return 0;
}

/* Every record: dense LSNs, a started key seen once, its own payload, its acknowledged LSN. */
static int scan_log(struct loop *L, stele_log *log, uint64_t *out_last)
{
    for (uint64_t k = 0; k < L->next_key; k++)
        key_at(L, k)->seen = 0;
    stele_iter *it = NULL;
    int rc = stele_iter_open(log, 1, &it);
    if (rc != STELE_OK)
        return failf(L, "iter_open: %s: %s", stele_strerror(rc), stele_errmsg());
    uint64_t expect = 1;
    for (;;) {
        const stele_record *rec = NULL;
        if ((rc = stele_iter_next(it, 0, &rec)) != STELE_OK) {
            failf(L, "iter_next at LSN %" PRIu64 ": %s: %s", expect, stele_strerror(rc), stele_errmsg());
            break;
        }
        if (!rec)
            break;
        uint64_t key;
        if (rec->lsn != expect) {
            failf(L, "LSN %" PRIu64 " where %" PRIu64 " was expected", rec->lsn, expect);
            break;
        }
        if (!key_parse(rec->key, rec->key_size, &key) || key >= L->next_key || L->keys[key].state == KEY_UNUSED) {
            failf(L, "LSN %" PRIu64 ": key %.*s was never started", rec->lsn, (int)rec->key_size, rec->key);
            break;
        }
        struct key_state *k = &L->keys[key];
        if (k->seen) {
            failf(L, "key %" PRIu64 " occurs twice: LSN %" PRIu64 " and %" PRIu64, key, k->found_lsn, rec->lsn);
            break;
        }
        k->seen = 1;
        k->found_lsn = rec->lsn;
        size_t n = payload_of(key, L->payload);
        if (rec->payload_size != n || (n && memcmp(rec->payload, L->payload, n) != 0) ||
            rec->type_size != strlen(TYPE_TEXT) || memcmp(rec->type, TYPE_TEXT, rec->type_size) != 0 ||
            rec->kind != STELE_KIND_EVENT || rec->content != STELE_CONTENT_BINARY) {
            failf(L, "LSN %" PRIu64 " (key %" PRIu64 "): the record differs from what was appended", rec->lsn, key);
            break;
        }
        if (k->state == KEY_ACKED && k->lsn != rec->lsn) {
            failf(L, "key %" PRIu64 " acknowledged at LSN %" PRIu64 " but found at %" PRIu64, key, k->lsn, rec->lsn);
            break;
        }
        expect++;
    }
    stele_iter_close(it);
    if (L->fail[0])
        return -1;
    for (uint64_t key = 0; key < L->next_key; key++)
        if (L->keys[key].state == KEY_ACKED && !L->keys[key].seen)
            return failf(L, "acknowledged key %" PRIu64 " (LSN %" PRIu64 ") is missing", key, L->keys[key].lsn);
    L->records = expect - 1;
    *out_last = expect - 1;
    return 0;
}

/* This cycle's acknowledgements, read again one by one with stele_get. */
static int check_gets(struct loop *L, stele_log *log)
{
    for (size_t i = 0; i < L->call_count; i++) {
        for (uint64_t key = L->calls[i].first; key < L->calls[i].first + L->calls[i].count; key++) {
            if (L->keys[key].state != KEY_ACKED)
                continue;
            stele_record *rec = NULL;
            int rc = stele_get(log, L->keys[key].lsn, &rec);
            if (rc != STELE_OK)
                return failf(L, "get LSN %" PRIu64 ": %s: %s", L->keys[key].lsn, stele_strerror(rc), stele_errmsg());
            uint64_t got;
            size_t n = payload_of(key, L->payload);
            int same = key_parse(rec->key, rec->key_size, &got) && got == key && rec->payload_size == n &&
                       (n == 0 || memcmp(rec->payload, L->payload, n) == 0);
            stele_record_free(rec);
            if (!same)
                return failf(L, "get LSN %" PRIu64 ": not the record of key %" PRIu64, L->keys[key].lsn, key);
        }
    }
    return 0;
}

/* Retries one started call that was not wholly acknowledged. */
static int retry_call(struct loop *L, stele_log *log, const struct call *c)
{
    stele_event evs[BATCH_COUNT_MAX];
    stele_receipt rcs[BATCH_COUNT_MAX];
    char texts[BATCH_COUNT_MAX][KEY_TEXT_SIZE];
    static uint8_t payloads[BATCH_COUNT_MAX][PAYLOAD_SIZE_MAX];
    int present = 0;
    for (uint32_t i = 0; i < c->count; i++) {
        evs[i] = event_of(c->first + i, texts[i], payloads[i]);
        present += L->keys[c->first + i].seen;
    }
    if (c->batch && present != 0 && present != (int)c->count)
        return failf(L, "batch of keys %" PRIu64 "..%" PRIu64 " is torn: %d of %u records present", c->first,
                     c->first + c->count - 1, present, c->count);
    int rc = c->batch ? stele_append_batch(log, evs, c->count, rcs) : stele_append(log, evs, rcs);
    if (rc != STELE_OK)
        return failf(L, "retry of key %" PRIu64 ": %s: %s", c->first, stele_strerror(rc), stele_errmsg());
    for (uint32_t i = 0; i < c->count; i++) {
        struct key_state *k = &L->keys[c->first + i];
        if (k->seen && (rcs[i].decision != STELE_DECISION_DUPLICATE || rcs[i].lsn != k->found_lsn))
            return failf(L, "retry of key %" PRIu64 " (in the log at LSN %" PRIu64 "): decision %d, LSN %" PRIu64
                         " instead of duplicate", c->first + i, k->found_lsn, (int)rcs[i].decision, rcs[i].lsn);
        if (!k->seen && rcs[i].decision != STELE_DECISION_NEW)
            return failf(L, "retry of key %" PRIu64 " (not in the log): decision %d, LSN %" PRIu64
                         " instead of new", c->first + i, (int)rcs[i].decision, rcs[i].lsn);
        L->retried_new += rcs[i].decision == STELE_DECISION_NEW;
        L->retried_dup += rcs[i].decision == STELE_DECISION_DUPLICATE;
        k->state = KEY_ACKED;
        k->lsn = rcs[i].lsn;
        k->seen = 1;
        k->found_lsn = rcs[i].lsn;
    }
    return 0;
}

static int verify_clean(struct loop *L, const char *when)
{
    stele_verify_report rep;
    memset(&rep, 0, sizeof rep);
    int rc = stele_verify(L->dir, NULL, NULL, &rep);
    if (rc != STELE_OK || rep.problems != 0)
        return failf(L, "verify %s: %s (%" PRIu64 " problems): %s", when, stele_strerror(rc), rep.problems,
                     stele_errmsg());
    return 0;
}

/* After the kill: verify, reopen, check everything, retry what was cut off. */
static int check_and_retry(struct loop *L)
{
    if (verify_clean(L, "after the kill") < 0)
        return -1;
    stele_log *log = NULL;
    if (open_writer(L, &log) < 0)
        return -1;
    stele_stats st;
    uint64_t last = 0;
    int rc = 0;
    if (stele_stats_get(log, &st) != STELE_OK)
        rc = failf(L, "stats: %s", stele_errmsg());
    if (rc == 0) {
        L->torn_bytes += st.recovery_torn_bytes;
        L->torn_batches += st.recovery_torn_batches;
        rc = scan_log(L, log, &last);
    }
    if (rc == 0 && last != st.last_lsn)
        rc = failf(L, "iteration ends at LSN %" PRIu64 ", stats say %" PRIu64, last, st.last_lsn);
    if (rc == 0)
        rc = check_gets(L, log);
    for (size_t i = 0; rc == 0 && i < L->call_count; i++) {
        const struct call *c = &L->calls[i];
        int all_acked = 1;
        for (uint32_t j = 0; j < c->count; j++)
            all_acked &= L->keys[c->first + j].state == KEY_ACKED;
        if (!all_acked)
            rc = retry_call(L, log, c);
    }
    int close_rc = stele_close(log);
    if (rc == 0 && close_rc != STELE_OK)
        rc = failf(L, "close: %s: %s", stele_strerror(close_rc), stele_errmsg());
    return rc;
}

static int cycles_wanted(void)
{
    const char *env = getenv("STELE_KILLLOOP_CYCLES");
    int n = env && *env ? atoi(env) : CYCLES_DEFAULT;
    return n > 0 ? n : CYCLES_DEFAULT;
}

START_TEST(test_kill_loop)
{
    struct loop L;
    memset(&L, 0, sizeof L);
    L.seed = tu_seed("check_killloop");
    L.rng = L.seed;
    L.dir = tu_tmpdir("killloop");
    L.payload = malloc(PAYLOAD_SIZE_MAX);
    ck_assert_ptr_nonnull(L.dir);
    ck_assert_ptr_nonnull(L.payload);
    stele_options o;
    stele_options_init(&o);
    o.segment_size = SEGMENT_SIZE;
    o.payload_size_max = PAYLOAD_SIZE_MAX;
    o.default_durability = STELE_DURABILITY_SYNC;
    ck_assert_int_eq(stele_create(L.dir, &o), STELE_OK);

    int cycles = cycles_wanted();
    int64_t start = mono_us();
    for (L.cycle = 0; L.cycle < cycles; L.cycle++) {
        if (run_child(&L) < 0 || check_and_retry(&L) < 0)
            break;
    }
    if (!L.fail[0])
        verify_clean(&L, "at the end");
    stele_stats st = {0};
    stele_log *log = NULL;
    if (!L.fail[0] && open_writer(&L, &log) == 0) {
        if (stele_stats_get(log, &st) != STELE_OK)
            failf(&L, "stats: %s", stele_errmsg());
        stele_close(log);
    }
    fprintf(stderr,
            "check_killloop: %d cycles in %.1f s: %" PRIu64 " acknowledged, %" PRIu64 " retried (%" PRIu64
            " new, %" PRIu64 " duplicate), %" PRIu64 " records, %" PRIu64 " segments, %" PRIu64
            " kills before the open finished, %" PRIu64 " torn tails cut (%" PRIu64 " bytes), %" PRIu64
            " extra lock waits\n",
            L.cycle, (double)(mono_us() - start) / 1e6, L.acks, L.retried_new + L.retried_dup, L.retried_new,
            L.retried_dup, L.records, st.segment_count, L.kills_in_open, L.torn_batches, L.torn_bytes,
            L.lock_retries);
    if (L.fail[0])
        ck_abort_msg("%s (log kept in %s)", L.fail, L.dir);
    tu_rmrf(L.dir);
    free(L.dir);
    free(L.keys);
    free(L.calls);
    free(L.payload);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("killloop");
    TCase *tc = tcase_create("kill -9");
    tcase_add_test(tc, test_kill_loop);
    /* About 0.2 s a cycle (more under sanitizers); generous, since a kill loop
     * that is merely slow is still worth finishing. */
    tcase_set_timeout(tc, 120 + cycles_wanted());
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

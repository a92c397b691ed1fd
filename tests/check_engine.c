/*
 * check_engine.c - proves that the engine keeps the promises stele.h makes,
 * observed only through the public API, the way a user of the library would
 * check them (plus reading the segment files and their mode from disk).
 *
 * How:
 *  - Lifecycle: create, open, close; open of a missing log (NOT_FOUND), create
 *    over an existing or damaged one (EXISTS); every option just outside its
 *    documented bounds is refused with STELE_ERR_INVALID and a message naming
 *    the field, and nothing is created; the bounds themselves are accepted.
 *  - The writer lock: a second writer in this process and one in a forked
 *    child get STELE_ERR_LOCKED after the ~1 s retry, naming the holder's pid;
 *    a read-only handle works alongside the writer, in both processes, and an
 *    iterator on it follows the writer across segment rolls. Read-only opens
 *    made while the writer appends flat out (batches landing and segments
 *    sealing under the reader's recovery scan) all succeed.
 *  - Appends and receipts, with the io_uring backend and again with POSIX:
 *    LSNs dense from 1, stream versions 1, 2, 3 per stream, expected-version
 *    checks, idempotency keys (duplicate -> the original LSN, another payload ->
 *    CONFLICT, repeated keys inside one batch -> one new record). Invalid input
 *    (each oversized field, bad kind/outcome/content/flags, type or actor not
 *    UTF-8, a ref to the future) fails with its code in the return value and
 *    in every receipt of the call, and the log's last LSN does not move. The
 *    largest payload (1 MiB default, 16 MiB ceiling, also with zstd) and the
 *    most records per call (65536) work; one more of either is refused.
 *  - Every field read back by stele_get equals what was appended, for empty
 *    and maximum-size fields; LSN 0 and beyond the end are NOT_FOUND.
 *  - Many segments (64 KiB segments, 16 KiB payloads): iterators from every
 *    segment boundary and other LSNs; iterators that wait time out with NULL
 *    and wake for a record appended by another thread. Every segment but the
 *    last is 0444 and ends in a footer that decodes (format/ decoders), the
 *    segments chain by LSN, stele_verify finds no problem and counts every
 *    record, recorded_at_ns never decreases, and reopening keeps every byte,
 *    the keys and the stream versions, and continues the LSNs.
 *  - Durability modes: durable_lsn and the sync counter follow sync, interval
 *    (timer) and none (explicit stele_sync) as documented.
 *  - Concurrency: 8 appending threads with private and shared keys (same and
 *    different payloads) racing, plus 2 iterating readers, with small segments
 *    so rounds of group commit cross segment boundaries. All LSNs are dense and
 *    unique, every key has exactly one `new`, the losers point at the winner,
 *    and readers see only records already durable (sync mode), in order, with
 *    their bytes intact.
 *  - zstd: compressible batches read back identical (before and after reopen),
 *    verify is clean, batches on disk are marked compressed, and the log takes
 *    fewer bytes and segments than the same workload without compression.
 * Payloads are generated from a seed printed by tu_seed (STELE_TEST_SEED replays).
 */
#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "checksum.h"
#include "limits.h"
#include "segment.h"
#include "stele.h"
#include "testutil.h"

#define SEG_SMALL (64u * 1024u)
#define PAYLOAD_SMALL (16u * 1024u)

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static stele_options opts_default(stele_io_backend backend)
{
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.io_backend = backend;
    return o;
}

/* 64 KiB segments and 16 KiB payloads: a segment rolls every few records. */
static stele_options opts_small(stele_io_backend backend)
{
    stele_options o = opts_default(backend);
    o.segment_size = SEG_SMALL;
    o.payload_size_max = PAYLOAD_SMALL;
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

/* Deterministic payload bytes for (seed, n). */
static void fill(uint8_t *dst, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0)
            s = tu_rand(&s) | 1;
        dst[i] = (uint8_t)(s >> (8 * (i % 8)));
    }
}

static stele_event ev_str(const char *stream, const char *key, const void *payload, size_t payload_size)
{
    stele_event e;
    memset(&e, 0, sizeof e);
    e.type = "t";
    e.type_size = 1;
    if (stream) {
        e.stream = stream;
        e.stream_size = strlen(stream);
    }
    if (key) {
        e.key = key;
        e.key_size = strlen(key);
    }
    e.payload = payload;
    e.payload_size = payload_size;
    return e;
}

static int bytes_eq(const void *a, size_t an, const void *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* Every field a user set must come back; zero kind/content/event_time read back as their defaults. */
static void check_record(const stele_record *r, const stele_event *e, uint64_t lsn)
{
    REQUIRE(r->lsn == lsn, "lsn %llu, want %llu", (unsigned long long)r->lsn, (unsigned long long)lsn);
    REQUIRE(bytes_eq(r->type, r->type_size, e->type, e->type_size), "LSN %llu: type differs", (unsigned long long)lsn);
    REQUIRE(bytes_eq(r->stream, r->stream_size, e->stream, e->stream_size), "LSN %llu: stream differs",
            (unsigned long long)lsn);
    REQUIRE(bytes_eq(r->key, r->key_size, e->key, e->key_size), "LSN %llu: key differs", (unsigned long long)lsn);
    REQUIRE(bytes_eq(r->actor, r->actor_size, e->actor, e->actor_size), "LSN %llu: actor differs",
            (unsigned long long)lsn);
    REQUIRE(bytes_eq(r->payload, r->payload_size, e->payload, e->payload_size),
            "LSN %llu: payload differs (%zu vs %zu bytes)", (unsigned long long)lsn, r->payload_size, e->payload_size);
    REQUIRE(r->kind == (e->kind ? e->kind : STELE_KIND_EVENT), "LSN %llu: kind %d", (unsigned long long)lsn, r->kind);
    REQUIRE(r->outcome == e->outcome, "LSN %llu: outcome %d", (unsigned long long)lsn, r->outcome);
    REQUIRE(r->content == (e->content ? e->content : STELE_CONTENT_BINARY), "LSN %llu: content %d",
            (unsigned long long)lsn, r->content);
    REQUIRE(r->flags == e->flags, "LSN %llu: flags %u", (unsigned long long)lsn, r->flags);
    REQUIRE(r->ref == e->ref, "LSN %llu: ref %llu", (unsigned long long)lsn, (unsigned long long)r->ref);
    REQUIRE(r->event_time_ns == (e->event_time_ns ? e->event_time_ns : r->recorded_at_ns),
            "LSN %llu: event_time_ns %llu", (unsigned long long)lsn, (unsigned long long)r->event_time_ns);
    REQUIRE(r->recorded_at_ns > 0, "LSN %llu: no recorded time", (unsigned long long)lsn);
}

static int file_exists(const char *dir, const char *name)
{
    char *p = tu_path(dir, name);
    struct stat st;
    int r = stat(p, &st) == 0;
    free(p);
    return r;
}

/* ------------------------------------------------------------ lifecycle */

START_TEST(test_create_open_close)
{
    char *base = tu_tmpdir("eng-life");
    char *dir = tu_path(base, "log"); /* does not exist yet: create makes it */
    stele_options o = opts_default(STELE_IO_URING);
    o.create = 0;
    stele_log *log = NULL;

    EXPECT(stele_open(dir, &o, &log), STELE_ERR_NOT_FOUND);
    ck_assert_ptr_null(log);
    EXPECT(stele_open(base, &o, &log), STELE_ERR_NOT_FOUND); /* a directory without a log */
    o.read_only = 1;
    EXPECT(stele_open(base, &o, &log), STELE_ERR_NOT_FOUND);
    o.read_only = 0;

    o.segment_size = 1024 * 1024;
    o.payload_size_max = 4096;
    o.idem_window_ns = 12345;
    o.default_durability = STELE_DURABILITY_NONE;
    OK(stele_create(dir, &o));
    ck_assert(file_exists(dir, "stele.meta"));
    EXPECT(stele_create(dir, &o), STELE_ERR_EXISTS);
    EXPECT(stele_create(dir, NULL), STELE_ERR_EXISTS);

    log = open_log(dir, &o);
    stele_stats s = stats_of(log);
    ck_assert_uint_eq(s.last_lsn, 0);
    ck_assert_uint_eq(s.first_lsn, 0);
    ck_assert_uint_eq(s.durable_lsn, 0);
    ck_assert_uint_eq(s.segment_size, 1024 * 1024);
    ck_assert_uint_eq(s.payload_size_max, 4096);
    ck_assert_uint_eq(s.idem_window_ns, 12345);
    ck_assert_int_eq(s.durability, STELE_DURABILITY_NONE); /* the log's default */
    ck_assert_int_eq(s.read_only, 0);
    ck_assert_int_eq(s.fenced, 0);
    OK(stele_close(log));
    OK(stele_close(NULL));

    /* Creation-time options are ignored when opening an existing log; the
     * handle's durability may be overridden. */
    stele_options o2 = opts_default(STELE_IO_URING);
    o2.create = 1;
    o2.durability = STELE_DURABILITY_SYNC;
    log = open_log(dir, &o2);
    s = stats_of(log);
    ck_assert_uint_eq(s.segment_size, 1024 * 1024);
    ck_assert_uint_eq(s.payload_size_max, 4096);
    ck_assert_int_eq(s.durability, STELE_DURABILITY_SYNC);
    OK(stele_close(log));

    /* A damaged meta block is an existing log: reported, never replaced. */
    char *meta = tu_path(dir, "stele.meta");
    size_t n;
    uint8_t *m = tu_read_file(meta, &n);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(n, STELE_META_SIZE);
    m[40] ^= 0x01;
    ck_assert_int_eq(tu_write_file(meta, m, n), 0);
    EXPECT(stele_create(dir, &o), STELE_ERR_EXISTS);
    size_t n2;
    uint8_t *m2 = tu_read_file(meta, &n2);
    ck_assert(m2 && bytes_eq(m, n, m2, n2));
    EXPECT(stele_open(dir, &o2, &log), STELE_ERR_CORRUPT);
    free(m);
    free(m2);
    free(meta);

    /* Segment files without a meta block are a log too: not overwritten. */
    char *dir3 = tu_path(base, "log3");
    stele_options o3 = opts_default(STELE_IO_URING);
    log = open_log(dir3, &o3);
    stele_event e = ev_str(NULL, NULL, "x", 1);
    stele_receipt rc;
    OK(stele_append(log, &e, &rc));
    OK(stele_close(log));
    char *meta3 = tu_path(dir3, "stele.meta");
    ck_assert_int_eq(unlink(meta3), 0);
    EXPECT(stele_create(dir3, &o3), STELE_ERR_EXISTS);
    ck_assert(!file_exists(dir3, "stele.meta"));
    free(meta3);
    free(dir3);

    /* Bad arguments. */
    EXPECT(stele_open(NULL, &o, &log), STELE_ERR_INVALID);
    EXPECT(stele_open("", &o, &log), STELE_ERR_INVALID);
    EXPECT(stele_open(dir, &o, NULL), STELE_ERR_INVALID);
    EXPECT(stele_create(NULL, &o), STELE_ERR_INVALID);

    /* Codes have stable texts; unknown ones too. */
    for (int c = 0; c <= STELE_ERR_CLOSED + 3; c++)
        ck_assert(stele_strerror(c) != NULL && *stele_strerror(c));
    ck_assert(stele_strerror(-1) != NULL);
    ck_assert_str_eq(stele_version(), STELE_VERSION_STRING);

    tu_rmrf(base);
    free(dir);
    free(base);
}
END_TEST

/* One option out of range: a name the message must contain and a mutator. */
struct bad_option {
    const char *field;
    void (*set)(stele_options *o);
};

static void bad_durability(stele_options *o) { o->durability = (stele_durability)4; }
static void bad_default_durability_0(stele_options *o) { o->default_durability = STELE_DURABILITY_DEFAULT; }
static void bad_default_durability_4(stele_options *o) { o->default_durability = (stele_durability)4; }
static void bad_interval_0(stele_options *o) { o->sync_interval_ms = 0; }
static void bad_interval_hi(stele_options *o) { o->sync_interval_ms = 60001; }
static void bad_backend(stele_options *o) { o->io_backend = (stele_io_backend)2; }
static void bad_queue_0(stele_options *o) { o->queue_records_max = 0; }
static void bad_queue_hi(stele_options *o) { o->queue_records_max = 1048577; }
static void bad_segment_lo(stele_options *o) { o->segment_size = 60 * 1024; }
static void bad_segment_hi(stele_options *o) { o->segment_size = 4ull * 1024 * 1024 * 1024 + 4096; }
static void bad_segment_align(stele_options *o) { o->segment_size = 64 * 1024 + 512; }
static void bad_payload_hi(stele_options *o)
{
    o->segment_size = 64ull * 1024 * 1024;
    o->payload_size_max = 16u * 1024 * 1024 + 1;
}
static void bad_payload_fit(stele_options *o)
{
    o->segment_size = SEG_SMALL;
    o->payload_size_max = SEG_SMALL;
}
static void bad_compression(stele_options *o) { o->compression = (stele_compression)2; }
static void bad_level_0(stele_options *o) { o->compression_level = 0; }
static void bad_level_hi(stele_options *o) { o->compression_level = 20; }

static const struct bad_option bad_options[] = {
    {"durability", bad_durability},
    {"default_durability", bad_default_durability_0},
    {"default_durability", bad_default_durability_4},
    {"sync_interval_ms", bad_interval_0},
    {"sync_interval_ms", bad_interval_hi},
    {"io_backend", bad_backend},
    {"queue_records_max", bad_queue_0},
    {"queue_records_max", bad_queue_hi},
    {"segment_size", bad_segment_lo},
    {"segment_size", bad_segment_hi},
    {"segment_size", bad_segment_align},
    {"payload_size_max", bad_payload_hi},
    {"payload_size_max", bad_payload_fit},
    {"compression", bad_compression},
    {"compression_level", bad_level_0},
    {"compression_level", bad_level_hi},
};

START_TEST(test_options_invalid)
{
    char *base = tu_tmpdir("eng-opts");
    for (size_t i = 0; i < sizeof bad_options / sizeof bad_options[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "log%zu", i);
        char *dir = tu_path(base, name);
        stele_options o = opts_default(STELE_IO_URING);
        bad_options[i].set(&o);
        EXPECT(stele_create(dir, &o), STELE_ERR_INVALID);
        REQUIRE(strstr(stele_errmsg(), bad_options[i].field) != NULL, "create, %s: message '%s' does not name it",
                bad_options[i].field, stele_errmsg());
        ck_assert(!file_exists(dir, "stele.meta"));
        stele_log *log = NULL;
        EXPECT(stele_open(dir, &o, &log), STELE_ERR_INVALID);
        REQUIRE(strstr(stele_errmsg(), bad_options[i].field) != NULL, "open, %s: message '%s' does not name it",
                bad_options[i].field, stele_errmsg());
        ck_assert_ptr_null(log);
        ck_assert(!file_exists(dir, "stele.meta"));
        free(dir);
    }

    /* The bounds themselves are accepted. */
    struct {
        uint64_t segment_size;
        uint32_t payload_size_max;
        uint32_t interval, queue;
        int level;
        stele_durability def;
        stele_compression comp;
    } good[] = {
        {SEG_SMALL, 0, 1, 1, 1, STELE_DURABILITY_SYNC, STELE_COMPRESSION_NONE},
        {4ull * 1024 * 1024 * 1024, STELE_PAYLOAD_SIZE_MAX, 60000, 1048576, 19, STELE_DURABILITY_NONE,
         STELE_COMPRESSION_ZSTD},
        {32ull * 1024 * 1024, STELE_PAYLOAD_SIZE_MAX, 100, 65536, 3, STELE_DURABILITY_INTERVAL, STELE_COMPRESSION_NONE},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "good%zu", i);
        char *dir = tu_path(base, name);
        stele_options o = opts_default(STELE_IO_URING);
        o.segment_size = good[i].segment_size;
        o.payload_size_max = good[i].payload_size_max;
        o.sync_interval_ms = good[i].interval;
        o.queue_records_max = good[i].queue;
        o.compression_level = good[i].level;
        o.default_durability = good[i].def;
        o.compression = good[i].comp;
        OK(stele_create(dir, &o));
        if (o.segment_size <= 32ull * 1024 * 1024) {
            stele_log *log = open_log(dir, &o);
            ck_assert_int_eq(stats_of(log).durability, good[i].def);
            OK(stele_close(log));
        }
        free(dir);
    }
    tu_rmrf(base);
    free(base);
}
END_TEST

/* ---------------------------------------------------------------- locks */

START_TEST(test_lock_same_process)
{
    char *dir = tu_tmpdir("eng-lock");
    stele_options o = opts_default(STELE_IO_URING);
    stele_log *w = open_log(dir, &o);
    stele_event e = ev_str(NULL, NULL, "x", 1);
    stele_receipt rc;
    OK(stele_append(w, &e, &rc));

    char want[64];
    snprintf(want, sizeof want, "pid %ld", (long)getpid());
    stele_log *w2 = NULL;
    uint64_t t0 = mono_ms();
    EXPECT(stele_open(dir, &o, &w2), STELE_ERR_LOCKED);
    uint64_t waited = mono_ms() - t0;
    ck_assert_ptr_null(w2);
    REQUIRE(strstr(stele_errmsg(), want) != NULL, "LOCKED message '%s' does not name '%s'", stele_errmsg(), want);
    REQUIRE(waited >= 800 && waited < 5000, "second writer gave up after %llu ms, want about 1000",
            (unsigned long long)waited);
    o.io_backend = STELE_IO_POSIX;
    EXPECT(stele_open(dir, &o, &w2), STELE_ERR_LOCKED);

    /* A reader takes no lock. */
    stele_options ro = opts_default(STELE_IO_URING);
    ro.create = 0;
    ro.read_only = 1;
    stele_log *r = open_log(dir, &ro);
    ck_assert_uint_eq(last_lsn(r), 1);
    ck_assert_int_eq(stats_of(r).read_only, 1);

    /* The writer is unaffected by the refused opens. */
    OK(stele_append(w, &e, &rc));
    ck_assert_uint_eq(rc.lsn, 2);
    OK(stele_close(w));

    /* Released on close. */
    w2 = open_log(dir, &o);
    ck_assert_uint_eq(last_lsn(w2), 2);
    OK(stele_close(w2));
    OK(stele_close(r));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(test_lock_forked_child)
{
    char *dir = tu_tmpdir("eng-lockfork");
    stele_options o = opts_default(STELE_IO_URING);
    stele_log *w = open_log(dir, &o);
    uint8_t payload[100];
    fill(payload, sizeof payload, 7);
    for (int i = 0; i < 3; i++) {
        stele_event e = ev_str("s", NULL, payload, sizeof payload);
        stele_receipt rc;
        OK(stele_append(w, &e, &rc));
    }
    fflush(NULL);
    pid_t parent = getpid();
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        /* Exit codes: 0 all good, 1 open not LOCKED, 2 message lacks the pid,
         * 3 read-only open failed, 4 read-only content wrong. */
        stele_options co = opts_default(STELE_IO_URING);
        stele_log *l = NULL;
        if (stele_open(dir, &co, &l) != STELE_ERR_LOCKED)
            _exit(1);
        char want[64];
        snprintf(want, sizeof want, "pid %ld", (long)parent);
        if (!strstr(stele_errmsg(), want))
            _exit(2);
        co.read_only = 1;
        co.create = 0;
        if (stele_open(dir, &co, &l) != STELE_OK)
            _exit(3);
        stele_record *rec = NULL;
        stele_stats s;
        int ok = stele_stats_get(l, &s) == STELE_OK && s.last_lsn == 3 && stele_get(l, 3, &rec) == STELE_OK &&
                 bytes_eq(rec->payload, rec->payload_size, payload, sizeof payload) && rec->stream_version == 3;
        stele_record_free(rec);
        ok = ok && stele_close(l) == STELE_OK;
        _exit(ok ? 0 : 4);
    }
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %d (see the exit codes)", status);
    OK(stele_close(w));

    /* With the parent's handle closed, a child may write. */
    child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        stele_options co = opts_default(STELE_IO_URING);
        stele_log *l = NULL;
        stele_event e = ev_str("s", NULL, "y", 1);
        stele_receipt rc;
        int ok = stele_open(dir, &co, &l) == STELE_OK && stele_append(l, &e, &rc) == STELE_OK && rc.lsn == 4 &&
                 rc.stream_version == 4 && stele_close(l) == STELE_OK;
        _exit(ok ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writing child: status %d", status);
    w = open_log(dir, &o);
    ck_assert_uint_eq(last_lsn(w), 4);
    OK(stele_close(w));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* ----------------------------------------------------- a reader follows */

struct slow_writer {
    stele_log *log;
    int count;
    unsigned gap_ms;
    uint64_t seed;
    int failed;
};

static void *slow_writer_main(void *arg)
{
    struct slow_writer *sw = arg;
    uint8_t *buf = malloc(PAYLOAD_SMALL);
    for (int i = 0; i < sw->count && !sw->failed; i++) {
        size_t n = (size_t)(i * 977u) % PAYLOAD_SMALL;
        fill(buf, n, sw->seed + (uint64_t)i);
        stele_event e = ev_str("follow", NULL, buf, n);
        stele_receipt rc;
        if (stele_append(sw->log, &e, &rc) != STELE_OK)
            sw->failed = 1;
        if (sw->gap_ms)
            sleep_ms(sw->gap_ms);
    }
    free(buf);
    return NULL;
}

START_TEST(test_read_only_follows_writer)
{
    char *dir = tu_tmpdir("eng-follow");
    stele_options o = opts_small(STELE_IO_URING);
    stele_log *w = open_log(dir, &o);
    uint64_t seed = 1000;
    struct slow_writer sw = {w, 5, 0, seed, 0};
    slow_writer_main(&sw);
    ck_assert_int_eq(sw.failed, 0);

    stele_options ro = o;
    ro.read_only = 1;
    ro.create = 0;
    stele_log *r = open_log(dir, &ro);
    stele_event e = ev_str(NULL, NULL, "z", 1);
    stele_receipt rc;
    EXPECT(stele_append(r, &e, &rc), STELE_ERR_READ_ONLY);
    ck_assert_int_eq(rc.code, STELE_ERR_READ_ONLY);
    ck_assert_int_eq(rc.decision, STELE_DECISION_NONE);
    OK(stele_sync(r));

    stele_iter *it;
    OK(stele_iter_open(r, 1, &it));
    const stele_record *rec;
    uint8_t *buf = malloc(PAYLOAD_SMALL);
    for (int i = 0; i < 5; i++) {
        OK(stele_iter_next(it, 0, &rec));
        REQUIRE(rec && rec->lsn == (uint64_t)i + 1, "record %d missing", i + 1);
    }
    OK(stele_iter_next(it, 0, &rec));
    ck_assert_ptr_null(rec);

    /* The writer goes on through many segment rolls; the reader, in another
     * handle, waits for and follows every record. */
    struct slow_writer sw2 = {w, 60, 2, seed + 5, 0};
    pthread_t t;
    pthread_create(&t, NULL, slow_writer_main, &sw2);
    for (int i = 5; i < 65; i++) {
        OK(stele_iter_next(it, 10000, &rec));
        REQUIRE(rec != NULL, "reader timed out waiting for LSN %d", i + 1);
        size_t n = (size_t)((i - 5) * 977u) % PAYLOAD_SMALL;
        fill(buf, n, seed + (uint64_t)i);
        REQUIRE(rec->lsn == (uint64_t)i + 1 && bytes_eq(rec->payload, rec->payload_size, buf, n),
                "LSN %d read by the follower differs", i + 1);
        REQUIRE(rec->stream_version == (uint64_t)i + 1, "stream version %llu", (unsigned long long)rec->stream_version);
    }
    pthread_join(t, NULL);
    ck_assert_int_eq(sw2.failed, 0);
    stele_iter_close(it);
    stele_stats s = stats_of(r);
    ck_assert_uint_eq(s.last_lsn, 65);
    ck_assert_uint_ge(s.segment_count, 10);
    stele_record *g;
    OK(stele_get(r, 65, &g));
    ck_assert_uint_eq(g->lsn, 65);
    stele_record_free(g);
    OK(stele_close(w));
    OK(stele_close(r));
    free(buf);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

struct busy_writer {
    stele_log *log;
    atomic_int stop;
    atomic_int code;
    uint64_t appended;
};

static void *busy_writer_main(void *arg)
{
    struct busy_writer *bw = arg;
    char p[300];
    memset(p, 'b', sizeof p);
    while (!atomic_load(&bw->stop)) {
        stele_event e = ev_str("busy", NULL, p, 1 + bw->appended % sizeof p);
        stele_receipt rc;
        int code = stele_append(bw->log, &e, &rc);
        atomic_store(&bw->code, code);
        if (code != STELE_OK)
            break;
        bw->appended++;
    }
    return NULL;
}

/* Read-only opens while the writer appends as fast as it can: the reader's
 * recovery scan meets batches being written and segments being sealed under
 * it; that is never corruption, and every open must work. */
START_TEST(test_read_only_open_races_writer)
{
    char *dir = tu_tmpdir("eng-rorace");
    stele_options o = opts_default(STELE_IO_URING);
    o.segment_size = 1024 * 1024;
    o.payload_size_max = 64 * 1024;
    stele_log *w = open_log(dir, &o);
    struct busy_writer bw = {.log = w};
    pthread_t t;
    pthread_create(&t, NULL, busy_writer_main, &bw);
    stele_options ro = opts_default(STELE_IO_URING);
    ro.create = 0;
    ro.read_only = 1;
    uint64_t prev = 0, t0 = mono_ms();
    int opens = 0;
    while (mono_ms() - t0 < 2500 && atomic_load(&bw.code) == STELE_OK) {
        stele_log *r = NULL;
        int code = stele_open(dir, &ro, &r);
        REQUIRE(code == STELE_OK, "read-only open %d next to a busy writer: %s: %s", opens, stele_strerror(code),
                stele_errmsg());
        uint64_t last = last_lsn(r);
        REQUIRE(last >= prev, "read-only handle sees LSN %llu after %llu", (unsigned long long)last,
                (unsigned long long)prev);
        if (last) {
            stele_record *g;
            OK(stele_get(r, last, &g));
            stele_record_free(g);
        }
        prev = last;
        OK(stele_close(r));
        opens++;
    }
    atomic_store(&bw.stop, 1);
    pthread_join(t, NULL);
    ck_assert_int_eq(atomic_load(&bw.code), STELE_OK);
    ck_assert_uint_gt(bw.appended, 100);
    OK(stele_close(w));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------- appends and receipts */

static const stele_io_backend backends[] = {STELE_IO_URING, STELE_IO_POSIX};

START_TEST(test_append_receipts)
{
    char *dir = tu_tmpdir("eng-append");
    stele_options o = opts_default(backends[_i]);
    stele_log *log = open_log(dir, &o);
    stele_receipt rc;

    /* LSNs dense from 1; stream versions count per stream. */
    const char *streams[] = {"a", "b", "a", NULL, "a", "b"};
    const uint64_t versions[] = {1, 1, 2, 0, 3, 2};
    for (int i = 0; i < 6; i++) {
        stele_event e = ev_str(streams[i], NULL, "p", 1);
        OK(stele_append(log, &e, &rc));
        ck_assert_uint_eq(rc.lsn, (uint64_t)i + 1);
        ck_assert_uint_eq(rc.stream_version, versions[i]);
        ck_assert_int_eq(rc.decision, STELE_DECISION_NEW);
        ck_assert_int_eq(rc.code, STELE_OK);
    }
    stele_event batch[4] = {ev_str("a", NULL, "1", 1), ev_str("c", NULL, "2", 1), ev_str("a", NULL, "3", 1),
                            ev_str(NULL, NULL, NULL, 0)};
    stele_receipt rcs[4];
    OK(stele_append_batch(log, batch, 4, rcs));
    const uint64_t bv[] = {4, 1, 5, 0};
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq(rcs[i].lsn, 7u + (uint64_t)i);
        ck_assert_uint_eq(rcs[i].stream_version, bv[i]);
        ck_assert_int_eq(rcs[i].decision, STELE_DECISION_NEW);
    }
    ck_assert_uint_eq(last_lsn(log), 10);

    /* Expected versions. */
    stele_event e = ev_str("a", NULL, "x", 1);
    e.has_expect_version = 1;
    e.expect_version = 5;
    OK(stele_append(log, &e, &rc));
    ck_assert_uint_eq(rc.lsn, 11);
    ck_assert_uint_eq(rc.stream_version, 6);
    e.expect_version = 5; /* stale now */
    EXPECT(stele_append(log, &e, &rc), STELE_ERR_STREAM_VERSION);
    ck_assert_int_eq(rc.code, STELE_ERR_STREAM_VERSION);
    ck_assert_int_eq(rc.decision, STELE_DECISION_NONE);
    ck_assert_uint_eq(rc.stream_version, 6);
    ck_assert_uint_eq(last_lsn(log), 11);
    e.expect_version = 0; /* "must not exist" */
    EXPECT(stele_append(log, &e, &rc), STELE_ERR_STREAM_VERSION);
    ck_assert_uint_eq(rc.stream_version, 6);
    stele_event fresh = ev_str("new-stream", NULL, "y", 1);
    fresh.has_expect_version = 1;
    fresh.expect_version = 0;
    OK(stele_append(log, &fresh, &rc));
    ck_assert_uint_eq(rc.lsn, 12);
    ck_assert_uint_eq(rc.stream_version, 1);
    fresh.expect_version = UINT64_C(7);
    EXPECT(stele_append(log, &fresh, &rc), STELE_ERR_STREAM_VERSION);
    ck_assert_uint_eq(rc.stream_version, 1);
    ck_assert_uint_eq(last_lsn(log), 12);

    /* Idempotency keys. */
    stele_event k = ev_str("ks", "key-1", "payload", 7);
    OK(stele_append(log, &k, &rc));
    ck_assert_int_eq(rc.decision, STELE_DECISION_NEW);
    uint64_t orig = rc.lsn;
    ck_assert_uint_eq(orig, 13);
    k.actor = "someone else"; /* not part of the request's identity */
    k.actor_size = 12;
    k.event_time_ns = 42;
    OK(stele_append(log, &k, &rc));
    ck_assert_int_eq(rc.decision, STELE_DECISION_DUPLICATE);
    ck_assert_int_eq(rc.code, STELE_OK);
    ck_assert_uint_eq(rc.lsn, orig);
    ck_assert_uint_eq(rc.stream_version, 1);
    stele_event k2 = ev_str("ks", "key-1", "other", 5);
    EXPECT(stele_append(log, &k2, &rc), STELE_ERR_CONFLICT);
    ck_assert_int_eq(rc.decision, STELE_DECISION_CONFLICT);
    ck_assert_int_eq(rc.code, STELE_ERR_CONFLICT);
    ck_assert_uint_eq(rc.lsn, orig);
    ck_assert_uint_eq(last_lsn(log), 13);
    /* A stream-version check does not override the key: a retry is a duplicate. */
    stele_event k3 = ev_str("ks", "key-1", "payload", 7);
    k3.has_expect_version = 1;
    k3.expect_version = 0;
    OK(stele_append(log, &k3, &rc));
    ck_assert_int_eq(rc.decision, STELE_DECISION_DUPLICATE);

    /* Repeated keys inside one call: exactly one new record. */
    stele_event kb[5] = {ev_str(NULL, "key-2", "P", 1), ev_str(NULL, "key-2", "P", 1), ev_str(NULL, "key-3", "Q", 1),
                         ev_str(NULL, "key-2", "P", 1), ev_str("ks", "key-1", "payload", 7)};
    stele_receipt kr[5];
    OK(stele_append_batch(log, kb, 5, kr));
    ck_assert_int_eq(kr[0].decision, STELE_DECISION_NEW);
    ck_assert_uint_eq(kr[0].lsn, 14);
    ck_assert_int_eq(kr[1].decision, STELE_DECISION_DUPLICATE);
    ck_assert_uint_eq(kr[1].lsn, 14);
    ck_assert_int_eq(kr[2].decision, STELE_DECISION_NEW);
    ck_assert_uint_eq(kr[2].lsn, 15);
    ck_assert_int_eq(kr[3].decision, STELE_DECISION_DUPLICATE);
    ck_assert_uint_eq(kr[3].lsn, 14);
    ck_assert_int_eq(kr[4].decision, STELE_DECISION_DUPLICATE);
    ck_assert_uint_eq(kr[4].lsn, orig);
    ck_assert_uint_eq(last_lsn(log), 15);
    stele_event kc[2] = {ev_str(NULL, "key-4", "P", 1), ev_str(NULL, "key-4", "R", 1)};
    EXPECT(stele_append_batch(log, kc, 2, kr), STELE_ERR_CONFLICT);
    ck_assert_int_eq(kr[0].decision, STELE_DECISION_NEW);
    ck_assert_uint_eq(kr[0].lsn, 16);
    ck_assert_int_eq(kr[1].decision, STELE_DECISION_CONFLICT);
    ck_assert_uint_eq(kr[1].lsn, 16);
    ck_assert_uint_eq(last_lsn(log), 16);

    /* An outcome may name an intent of the same call. */
    stele_event io[2] = {ev_str(NULL, "op-1", "intent", 6), ev_str(NULL, "op-1", "done", 4)};
    io[0].kind = STELE_KIND_INTENT;
    io[1].kind = STELE_KIND_OUTCOME;
    io[1].outcome = STELE_OUTCOME_CONFIRMED;
    OK(stele_append_batch(log, io, 2, kr));
    ck_assert_uint_eq(kr[1].lsn, 18);
    stele_record *o18;
    OK(stele_get(log, 18, &o18));
    ck_assert_uint_eq(o18->ref, 17); /* the engine set the outcome's ref to its intent */
    stele_record_free(o18);

    stele_stats s = stats_of(log);
    ck_assert_uint_eq(s.last_lsn, 18);
    ck_assert_uint_eq(s.appends_new, 18);
    ck_assert_uint_eq(s.appends_duplicate, 5);
    ck_assert_uint_eq(s.appends_conflict, 2);

    /* Everything reads back, also after reopening with the other backend,
     * which remembers the keys and the stream versions. */
    stele_record *g;
    OK(stele_get(log, 13, &g));
    check_record(g, &(stele_event){.type = "t", .type_size = 1, .stream = "ks", .stream_size = 2, .key = "key-1",
                                   .key_size = 5, .payload = "payload", .payload_size = 7},
                 13);
    stele_record_free(g);
    OK(stele_close(log));
    o.io_backend = backends[1 - _i];
    log = open_log(dir, &o);
    ck_assert_uint_eq(last_lsn(log), 18);
    OK(stele_append(log, &k, &rc));
    ck_assert_int_eq(rc.decision, STELE_DECISION_DUPLICATE);
    ck_assert_uint_eq(rc.lsn, orig);
    EXPECT(stele_append(log, &k2, &rc), STELE_ERR_CONFLICT);
    e.expect_version = 6;
    OK(stele_append(log, &e, &rc));
    ck_assert_uint_eq(rc.lsn, 19);
    ck_assert_uint_eq(rc.stream_version, 7);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* Expects one invalid append to fail with want, in the return and the receipt, changing nothing. */
static void expect_rejected(stele_log *log, const stele_event *e, int want, const char *what)
{
    uint64_t before = last_lsn(log);
    stele_receipt rc = {99, 99, STELE_DECISION_NEW, STELE_OK};
    int code = stele_append(log, e, &rc);
    REQUIRE(code == want, "%s: append returned %d (%s), want %d; %s", what, code, stele_strerror(code), want,
            stele_errmsg());
    REQUIRE(*stele_errmsg() != '\0', "%s: no error message", what);
    REQUIRE(rc.code == (stele_code)want, "%s: receipt code %d, want %d", what, rc.code, want);
    REQUIRE(rc.decision == STELE_DECISION_NONE, "%s: receipt decision %d", what, rc.decision);
    REQUIRE(last_lsn(log) == before, "%s: the log moved from %llu to %llu", what, (unsigned long long)before,
            (unsigned long long)last_lsn(log));
}

START_TEST(test_invalid_input)
{
    char *dir = tu_tmpdir("eng-invalid");
    stele_options o = opts_small(STELE_IO_URING);
    stele_log *log = open_log(dir, &o);
    static char big[300];
    memset(big, 'x', sizeof big);
    static uint8_t payload[PAYLOAD_SMALL + 1];
    fill(payload, sizeof payload, 3);
    stele_receipt rc;

    /* Fields at their limits are fine. */
    stele_event max = ev_str(NULL, NULL, payload, PAYLOAD_SMALL);
    max.type = max.stream = max.key = max.actor = big;
    max.type_size = max.stream_size = max.key_size = max.actor_size = 255;
    OK(stele_append(log, &max, &rc));
    ck_assert_uint_eq(rc.lsn, 1);

    stele_event e;
    e = max, e.type_size = 256;
    expect_rejected(log, &e, STELE_ERR_TOO_LARGE, "type of 256 bytes");
    e = max, e.stream_size = 256;
    expect_rejected(log, &e, STELE_ERR_TOO_LARGE, "stream of 256 bytes");
    e = max, e.key_size = 256;
    expect_rejected(log, &e, STELE_ERR_TOO_LARGE, "key of 256 bytes");
    e = max, e.actor_size = 256;
    expect_rejected(log, &e, STELE_ERR_TOO_LARGE, "actor of 256 bytes");
    e = max, e.key = "fresh-key", e.key_size = 9, e.payload_size = PAYLOAD_SMALL + 1;
    expect_rejected(log, &e, STELE_ERR_TOO_LARGE, "payload over payload_size_max");

    stele_event base = ev_str(NULL, NULL, "p", 1);
    e = base, e.kind = STELE_KIND_OUTCOME, e.ref = 1;
    expect_rejected(log, &e, STELE_ERR_INVALID, "outcome kind without an outcome");
    e = base, e.outcome = STELE_OUTCOME_CONFIRMED;
    expect_rejected(log, &e, STELE_ERR_INVALID, "an outcome on an event");
    e = base, e.kind = STELE_KIND_OUTCOME, e.outcome = (stele_outcome)3, e.ref = 1;
    expect_rejected(log, &e, STELE_ERR_INVALID, "unknown outcome");
    e = base, e.kind = (stele_kind)9;
    expect_rejected(log, &e, STELE_ERR_INVALID, "unknown kind");
    e = base, e.content = (stele_content)7;
    expect_rejected(log, &e, STELE_ERR_INVALID, "unknown content");
    e = base, e.flags = 0x80;
    expect_rejected(log, &e, STELE_ERR_INVALID, "unknown flag");
    e = base, e.kind = STELE_KIND_COMPENSATION;
    expect_rejected(log, &e, STELE_ERR_INVALID, "compensation without ref");
    e = base, e.kind = STELE_KIND_OUTCOME, e.outcome = STELE_OUTCOME_FAILED, e.ref = 2;
    expect_rejected(log, &e, STELE_ERR_INVALID, "ref to its own (future) LSN");
    e = base, e.ref = 1000;
    expect_rejected(log, &e, STELE_ERR_INVALID, "ref far in the future");
    e = base, e.has_expect_version = 1;
    expect_rejected(log, &e, STELE_ERR_INVALID, "expect_version without a stream");
    e = base, e.type = "caf\xc3", e.type_size = 4;
    expect_rejected(log, &e, STELE_ERR_INVALID, "type cut inside a UTF-8 sequence");
    e = base, e.actor = "\xc0\xaf", e.actor_size = 2;
    expect_rejected(log, &e, STELE_ERR_INVALID, "actor with an overlong UTF-8 form");
    e = base, e.type = "\xed\xa0\x80", e.type_size = 3;
    expect_rejected(log, &e, STELE_ERR_INVALID, "type with a UTF-16 surrogate");
    e = base, e.payload = NULL, e.payload_size = 3;
    expect_rejected(log, &e, STELE_ERR_INVALID, "payload size without a pointer");
    e = base, e.key = NULL, e.key_size = 3;
    expect_rejected(log, &e, STELE_ERR_INVALID, "key size without a pointer");

    /* One bad event fails the whole call: nothing of it is appended, and
     * every receipt says so. */
    stele_event b3[3] = {ev_str(NULL, "bk1", "a", 1), base, ev_str(NULL, "bk2", "b", 1)};
    b3[1].kind = (stele_kind)9;
    stele_receipt r3[3];
    EXPECT(stele_append_batch(log, b3, 3, r3), STELE_ERR_INVALID);
    for (int i = 0; i < 3; i++) {
        REQUIRE(r3[i].code != STELE_OK && r3[i].decision == STELE_DECISION_NONE,
                "batch with a bad event: receipt %d says code %d decision %d", i, r3[i].code, r3[i].decision);
    }
    /* A batch too big for one segment. */
    stele_event b4[4];
    for (int i = 0; i < 4; i++)
        b4[i] = ev_str(NULL, NULL, payload, PAYLOAD_SMALL);
    stele_receipt r4[4];
    EXPECT(stele_append_batch(log, b4, 4, r4), STELE_ERR_TOO_LARGE);
    EXPECT(stele_append_batch(log, b4, 0, r4), STELE_ERR_INVALID);
    EXPECT(stele_append_batch(log, NULL, 1, r4), STELE_ERR_INVALID);
    EXPECT(stele_append_batch(log, b4, 1, NULL), STELE_ERR_INVALID);
    EXPECT(stele_append(NULL, &base, &rc), STELE_ERR_INVALID);
    ck_assert_uint_eq(last_lsn(log), 1);

    /* The keys of refused events are free: they can still be appended. */
    stele_event ok1 = ev_str(NULL, "bk1", "a", 1);
    OK(stele_append(log, &ok1, &rc));
    ck_assert_int_eq(rc.decision, STELE_DECISION_NEW);
    ck_assert_uint_eq(rc.lsn, 2);
    stele_event ok2 = ev_str(NULL, "fresh-key", payload, 10);
    OK(stele_append(log, &ok2, &rc));
    ck_assert_int_eq(rc.decision, STELE_DECISION_NEW);
    stele_stats s = stats_of(log);
    ck_assert_uint_eq(s.last_lsn, 3);
    ck_assert_int_eq(s.fenced, 0);
    OK(stele_close(log));
    stele_verify_report rep;
    OK(stele_verify(dir, NULL, NULL, &rep));
    ck_assert_uint_eq(rep.records, 3);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------ every field back */

START_TEST(test_get_fields)
{
    char *dir = tu_tmpdir("eng-get");
    stele_options o = opts_small(STELE_IO_URING);
    stele_log *log = open_log(dir, &o);
    static uint8_t maxp[PAYLOAD_SMALL];
    fill(maxp, sizeof maxp, 11);
    static char s255[255], u255[256];
    for (int i = 0; i < 255; i++)
        s255[i] = (char)(i + 1); /* stream and key are bytes */
    for (int i = 0; i < 85; i++)
        memcpy(u255 + 3 * i, "\xe2\x82\xac", 3); /* type and actor are UTF-8: 85 euro signs */
    const char nul[] = {'a', 0, 'b', 0};

    stele_event evs[12];
    memset(evs, 0, sizeof evs);
    evs[0] = ev_str(NULL, NULL, NULL, 0); /* everything empty */
    evs[0].type = NULL, evs[0].type_size = 0;
    evs[1] = ev_str("orders", "k-1", "{\"a\":1}", 7);
    evs[1].kind = STELE_KIND_INTENT, evs[1].content = STELE_CONTENT_JSON, evs[1].actor = "alice", evs[1].actor_size = 5;
    evs[1].event_time_ns = 1234567890123456789ull;
    evs[1].type = "card.\xf0\x9f\x92\xb3", evs[1].type_size = 9; /* a 4-byte UTF-8 character */
    evs[2] = ev_str("orders", "k-1", "ok", 2); /* the outcome of intent k-1 */
    evs[2].kind = STELE_KIND_OUTCOME, evs[2].outcome = STELE_OUTCOME_CONFIRMED, evs[2].ref = 2;
    evs[2].content = STELE_CONTENT_TEXT;
    evs[3] = ev_str("orders", NULL, "no", 2); /* an event may ref any earlier record */
    evs[3].ref = 2;
    evs[4] = ev_str(NULL, NULL, "undo", 4);
    evs[4].kind = STELE_KIND_COMPENSATION, evs[4].ref = 1, evs[4].flags = STELE_FLAG_BACKFILLED;
    evs[4].content = STELE_CONTENT_BINARY, evs[4].event_time_ns = 1;
    evs[5] = ev_str(NULL, NULL, maxp, sizeof maxp); /* maximum payload */
    evs[6] = ev_str(NULL, NULL, NULL, 0);
    evs[6].stream = evs[6].key = s255;
    evs[6].type = evs[6].actor = u255;
    evs[6].type_size = evs[6].stream_size = evs[6].key_size = evs[6].actor_size = 255;
    evs[6].payload = maxp, evs[6].payload_size = sizeof maxp;
    evs[7] = ev_str(NULL, NULL, nul, sizeof nul);
    evs[7].type = nul, evs[7].type_size = sizeof nul, evs[7].key = nul, evs[7].key_size = sizeof nul;
    evs[8] = ev_str("x", "k-8", maxp, 1);
    evs[9] = ev_str("x", "k-9", maxp, 7);
    evs[10] = ev_str("x", "k-10", maxp, 8);
    evs[11] = ev_str("x", "k-11", maxp, 9);

    stele_receipt rc;
    for (int i = 0; i < 12; i++) {
        OK(stele_append(log, &evs[i], &rc));
        ck_assert_uint_eq(rc.lsn, (uint64_t)i + 1);
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 12; i++) {
            stele_record *r = NULL;
            OK(stele_get(log, (uint64_t)i + 1, &r));
            check_record(r, &evs[i], (uint64_t)i + 1);
            stele_record_free(r);
        }
        stele_record *r = (stele_record *)1;
        EXPECT(stele_get(log, 0, &r), STELE_ERR_NOT_FOUND);
        EXPECT(stele_get(log, 13, &r), STELE_ERR_NOT_FOUND);
        EXPECT(stele_get(log, UINT64_MAX, &r), STELE_ERR_NOT_FOUND);
        EXPECT(stele_get(log, 1, NULL), STELE_ERR_INVALID);
        stele_record_free(NULL);
        OK(stele_close(log));
        log = open_log(dir, &o); /* the same from disk, through recovery */
    }
    /* Stream versions of the "orders" stream: 1, 2, 3. */
    stele_record *r;
    OK(stele_get(log, 4, &r));
    ck_assert_uint_eq(r->stream_version, 3);
    stele_record_free(r);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* The limits of stele.h: the largest payload (default and hard maximum),
 * the most records per call, and one more of each is refused. */
START_TEST(test_limits)
{
    char *base = tu_tmpdir("eng-limits");
    static const struct {
        uint64_t segment_size;
        uint32_t payload_size_max;
        stele_compression compression;
    } cases[] = {
        {STELE_SEGMENT_SIZE_DEFAULT, STELE_PAYLOAD_SIZE_DEFAULT, STELE_COMPRESSION_NONE},
        {STELE_SEGMENT_SIZE_DEFAULT, STELE_PAYLOAD_SIZE_DEFAULT, STELE_COMPRESSION_ZSTD},
        {32ull * 1024 * 1024, STELE_PAYLOAD_SIZE_MAX, STELE_COMPRESSION_NONE},
    };
    uint8_t *payload = malloc(STELE_PAYLOAD_SIZE_MAX + 1);
    fill(payload, STELE_PAYLOAD_SIZE_MAX + 1, 99);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char name[16];
        snprintf(name, sizeof name, "log%zu", c);
        char *dir = tu_path(base, name);
        stele_options o = opts_default(STELE_IO_URING);
        o.segment_size = cases[c].segment_size;
        o.payload_size_max = cases[c].payload_size_max;
        o.compression = cases[c].compression;
        stele_log *log = open_log(dir, &o);
        stele_event e = ev_str("big", "big", payload, cases[c].payload_size_max);
        stele_receipt rc;
        OK(stele_append(log, &e, &rc));
        e.payload_size++;
        e.key = "bigger";
        e.key_size = 6;
        expect_rejected(log, &e, STELE_ERR_TOO_LARGE, "payload one byte over payload_size_max");
        for (int pass = 0; pass < 2; pass++) {
            stele_record *g;
            OK(stele_get(log, 1, &g));
            REQUIRE(bytes_eq(g->payload, g->payload_size, payload, cases[c].payload_size_max),
                    "case %zu: the maximum payload differs", c);
            stele_record_free(g);
            OK(stele_close(log));
            log = open_log(dir, &o);
        }
        OK(stele_close(log));
        OK(stele_verify(dir, NULL, NULL, NULL));
        free(dir);
    }
    free(payload);

    /* STELE_BATCH_RECORD_COUNT_MAX records in one call, in one batch. */
    char *dir = tu_path(base, "count");
    stele_options o = opts_default(STELE_IO_URING);
    stele_log *log = open_log(dir, &o);
    size_t n = STELE_BATCH_RECORD_COUNT_MAX;
    stele_event *evs = calloc(n + 1, sizeof *evs);
    stele_receipt *rcs = calloc(n + 1, sizeof *rcs);
    EXPECT(stele_append_batch(log, evs, n + 1, rcs), STELE_ERR_INVALID);
    ck_assert_uint_eq(last_lsn(log), 0);
    OK(stele_append_batch(log, evs, n, rcs));
    for (size_t i = 0; i < n; i++)
        REQUIRE(rcs[i].lsn == i + 1 && rcs[i].decision == STELE_DECISION_NEW, "record %zu", i);
    stele_stats s = stats_of(log);
    ck_assert_uint_eq(s.last_lsn, n);
    ck_assert_uint_eq(s.batches_written, 1);
    stele_record *g;
    OK(stele_get(log, n, &g));
    ck_assert_uint_eq(g->payload_size, 0);
    stele_record_free(g);
    OK(stele_close(log));
    free(evs);
    free(rcs);
    free(dir);
    tu_rmrf(base);
    free(base);
}
END_TEST

/* -------------------------------------------- many segments, iterators */

#define MANY 300

/* The payload of record i in the many-segment workload. */
static size_t many_payload(uint64_t seed, int i, uint8_t *buf)
{
    uint64_t s = seed + (uint64_t)i;
    size_t n = (size_t)(tu_rand(&s) % (PAYLOAD_SMALL + 1));
    if (i % 17 == 0)
        n = 0;
    if (i % 23 == 0)
        n = PAYLOAD_SMALL;
    fill(buf, n, seed ^ (uint64_t)i);
    return n;
}

/* Appends MANY records (singles and batches of 3) with stream "s<i%3>" and key "m<i>". */
static void append_many(stele_log *log, uint64_t seed, int from, int to)
{
    uint8_t *bufs[3];
    for (int j = 0; j < 3; j++)
        bufs[j] = malloc(PAYLOAD_SMALL);
    char keys[3][16], streams[3][8];
    for (int i = from; i < to;) {
        int n = (i % 5 == 0 && i + 3 <= to) ? 3 : 1;
        stele_event evs[3];
        stele_receipt rcs[3];
        for (int j = 0; j < n; j++) {
            size_t len = many_payload(seed, i + j, bufs[j]);
            snprintf(keys[j], sizeof keys[j], "m%d", i + j);
            snprintf(streams[j], sizeof streams[j], "s%d", (i + j) % 3);
            evs[j] = ev_str(streams[j], keys[j], bufs[j], len);
        }
        OK(stele_append_batch(log, evs, (size_t)n, rcs));
        for (int j = 0; j < n; j++)
            REQUIRE(rcs[j].lsn == (uint64_t)(i + j) + 1 && rcs[j].decision == STELE_DECISION_NEW,
                    "record %d: LSN %llu decision %d", i + j, (unsigned long long)rcs[j].lsn, rcs[j].decision);
        i += n;
    }
    for (int j = 0; j < 3; j++)
        free(bufs[j]);
}

static void check_many_record(const stele_record *r, uint64_t seed, uint8_t *buf)
{
    int i = (int)r->lsn - 1;
    size_t n = many_payload(seed, i, buf);
    char key[16], stream[8];
    snprintf(key, sizeof key, "m%d", i);
    snprintf(stream, sizeof stream, "s%d", i % 3);
    REQUIRE(bytes_eq(r->payload, r->payload_size, buf, n), "LSN %llu: payload differs", (unsigned long long)r->lsn);
    REQUIRE(bytes_eq(r->key, r->key_size, key, strlen(key)), "LSN %llu: key differs", (unsigned long long)r->lsn);
    REQUIRE(bytes_eq(r->stream, r->stream_size, stream, strlen(stream)), "LSN %llu: stream differs",
            (unsigned long long)r->lsn);
    REQUIRE(r->stream_version == (uint64_t)(i / 3) + 1, "LSN %llu: stream version %llu", (unsigned long long)r->lsn,
            (unsigned long long)r->stream_version);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The first LSNs of the segment files in dir, sorted. */
static size_t list_segments(const char *dir, uint64_t *firsts, size_t cap)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t first;
        if (fmt_segment_name_parse(e->d_name, &first)) {
            ck_assert_uint_lt(n, cap);
            firsts[n++] = first;
        }
    }
    closedir(d);
    qsort(firsts, n, sizeof *firsts, cmp_u64);
    return n;
}

START_TEST(test_iterators_many_segments)
{
    char *dir = tu_tmpdir("eng-iter");
    uint64_t seed = tu_seed("test_iterators_many_segments");
    stele_options o = opts_small(STELE_IO_URING);
    stele_log *log = open_log(dir, &o);
    append_many(log, seed, 0, MANY);
    stele_stats s = stats_of(log);
    ck_assert_uint_eq(s.last_lsn, MANY);
    ck_assert_uint_ge(s.segment_count, 30);
    ck_assert_uint_eq(s.sealed_segment_count, s.segment_count - 1);

    uint64_t firsts[MANY];
    size_t nseg = list_segments(dir, firsts, MANY);
    ck_assert_uint_eq(nseg, s.segment_count);
    uint8_t *buf = malloc(PAYLOAD_SMALL);

    /* Start points: 0 and 1, every segment's first and last LSN, some others, the end. */
    uint64_t starts[2 * MANY + 8];
    size_t ns = 0;
    starts[ns++] = 0;
    starts[ns++] = 1;
    for (size_t i = 0; i < nseg; i++) {
        starts[ns++] = firsts[i];
        if (firsts[i] > 1)
            starts[ns++] = firsts[i] - 1;
    }
    starts[ns++] = 150;
    starts[ns++] = MANY;
    starts[ns++] = MANY + 1;
    starts[ns++] = MANY + 50;
    for (size_t k = 0; k < ns; k++) {
        stele_iter *it;
        OK(stele_iter_open(log, starts[k], &it));
        uint64_t want = starts[k] ? starts[k] : 1;
        /* Read at most 40 records from most start points, everything from a few. */
        int limit = (k < 2 || k == ns / 2) ? MANY + 1 : 40;
        const stele_record *r;
        for (int got = 0; got < limit; got++) {
            OK(stele_iter_next(it, 0, &r));
            if (!r)
                break;
            REQUIRE(r->lsn == want, "iterator from %llu: got LSN %llu, want %llu", (unsigned long long)starts[k],
                    (unsigned long long)r->lsn, (unsigned long long)want);
            check_many_record(r, seed, buf);
            want++;
        }
        if (limit > MANY || want > MANY) {
            OK(stele_iter_next(it, 0, &r));
            REQUIRE(r == NULL, "iterator from %llu: a record past the end", (unsigned long long)starts[k]);
            ck_assert_uint_eq(want, starts[k] > MANY ? starts[k] : MANY + 1);
        }
        stele_iter_close(it);
    }
    stele_iter_close(NULL);
    const stele_record *r;
    EXPECT(stele_iter_next(NULL, 0, &r), STELE_ERR_INVALID);
    stele_iter *it;
    EXPECT(stele_iter_open(NULL, 1, &it), STELE_ERR_INVALID);

    /* Random gets. */
    uint64_t rng = seed;
    for (int k = 0; k < 200; k++) {
        uint64_t lsn = tu_rand(&rng) % MANY + 1;
        stele_record *g;
        OK(stele_get(log, lsn, &g));
        REQUIRE(g->lsn == lsn, "get %llu", (unsigned long long)lsn);
        check_many_record(g, seed, buf);
        stele_record_free(g);
    }
    OK(stele_close(log));
    free(buf);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

struct delayed_append {
    stele_log *log;
    unsigned delay_ms;
    int code;
};

static void *delayed_append_main(void *arg)
{
    struct delayed_append *d = arg;
    sleep_ms(d->delay_ms);
    stele_event e = ev_str("late", NULL, "late", 4);
    stele_receipt rc;
    d->code = stele_append(d->log, &e, &rc);
    return NULL;
}

START_TEST(test_iter_wait)
{
    char *dir = tu_tmpdir("eng-wait");
    stele_options o = opts_default(STELE_IO_URING);
    stele_log *log = open_log(dir, &o);
    stele_event e = ev_str(NULL, NULL, "first", 5);
    stele_receipt rc;
    OK(stele_append(log, &e, &rc));
    stele_iter *it;
    OK(stele_iter_open(log, 0, &it));
    const stele_record *r;
    OK(stele_iter_next(it, 0, &r));
    ck_assert(r && r->lsn == 1);

    /* Nothing comes: NULL after about the timeout. */
    uint64_t t0 = mono_ms();
    OK(stele_iter_next(it, 0, &r));
    ck_assert_ptr_null(r);
    OK(stele_iter_next(it, 200, &r));
    uint64_t waited = mono_ms() - t0;
    ck_assert_ptr_null(r);
    REQUIRE(waited >= 180 && waited < 3000, "waited %llu ms for a 200 ms timeout", (unsigned long long)waited);

    /* Another thread appends while we wait: we get the record, early. */
    for (int forever = 0; forever < 2; forever++) {
        struct delayed_append d = {log, 100, -1};
        pthread_t t;
        pthread_create(&t, NULL, delayed_append_main, &d);
        t0 = mono_ms();
        OK(stele_iter_next(it, forever ? -1 : 20000, &r));
        waited = mono_ms() - t0;
        pthread_join(t, NULL);
        ck_assert_int_eq(d.code, STELE_OK);
        REQUIRE(r != NULL, "no record after waiting %llu ms", (unsigned long long)waited);
        ck_assert_uint_eq(r->lsn, 2u + (uint64_t)forever);
        ck_assert(bytes_eq(r->payload, r->payload_size, "late", 4));
        REQUIRE(waited < 5000, "woken only after %llu ms", (unsigned long long)waited);
    }
    stele_iter_close(it);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------- roll, seal, verify, reopen */

struct verify_count {
    uint64_t problems;
    uint64_t progress_calls;
};

static int verify_cb(void *ctx, const stele_verify_problem *p, uint64_t done, uint64_t total)
{
    struct verify_count *c = ctx;
    if (p)
        c->problems++;
    else
        c->progress_calls++;
    (void)done;
    (void)total;
    return 0;
}

/* Checks every segment file: all but the last sealed (0444, footer at the end, chained by LSN). */
static void check_segment_files(const char *dir, uint64_t last)
{
    uint64_t firsts[MANY * 2];
    size_t n = list_segments(dir, firsts, MANY * 2);
    ck_assert_uint_ge(n, 2);
    for (size_t i = 0; i < n; i++) {
        char name[STELE_SEGMENT_NAME_SIZE + 1];
        fmt_segment_name(firsts[i], name, sizeof name);
        char *path = tu_path(dir, name);
        struct stat st;
        ck_assert_int_eq(stat(path, &st), 0);
        size_t size;
        uint8_t *bytes = tu_read_file(path, &size);
        ck_assert_ptr_nonnull(bytes);
        struct fmt_segment_header h;
        ck_assert_int_eq(fmt_segment_header_decode(bytes, size, &h), FMT_OK);
        ck_assert_uint_eq(h.first_lsn, firsts[i]);
        ck_assert_uint_eq(h.seq, i + 1);
        if (i + 1 < n) {
            REQUIRE((st.st_mode & 0777) == 0444, "%s: sealed segment has mode %o", name, st.st_mode & 0777);
            REQUIRE(size % STELE_BLOCK_SIZE == 0 && size >= 2 * STELE_BLOCK_SIZE, "%s: size %zu", name, size);
            struct fmt_footer f;
            uint64_t seed = stele_segment_seed(h.log_id, h.seq, h.first_lsn);
            REQUIRE(fmt_footer_decode(bytes + size - STELE_FOOTER_SIZE, STELE_FOOTER_SIZE, seed, &f) == FMT_OK,
                    "%s: does not end in a footer", name);
            ck_assert_uint_eq(f.data_end, size - STELE_FOOTER_SIZE);
            ck_assert_uint_eq(f.last_lsn + 1, firsts[i + 1]);
            ck_assert_uint_eq(f.record_count, f.last_lsn + 1 - h.first_lsn);
        } else {
            REQUIRE((st.st_mode & 0222) != 0, "%s: the active segment is read-only", name);
            ck_assert_uint_eq((uint64_t)size, SEG_SMALL); /* preallocated */
            ck_assert_uint_le(h.first_lsn, last + 1);
        }
        free(bytes);
        free(path);
    }
}

START_TEST(test_roll_seal_verify_reopen)
{
    char *dir = tu_tmpdir("eng-roll");
    uint64_t seed = tu_seed("test_roll_seal_verify_reopen");
    stele_options o = opts_small(STELE_IO_URING);
    stele_log *log = open_log(dir, &o);
    append_many(log, seed, 0, MANY);
    stele_stats s1 = stats_of(log);
    OK(stele_close(log));

    check_segment_files(dir, MANY);
    struct verify_count vc = {0, 0};
    stele_verify_report rep;
    OK(stele_verify(dir, verify_cb, &vc, &rep));
    ck_assert_uint_eq(rep.problems, 0);
    ck_assert_uint_eq(vc.problems, 0);
    ck_assert_uint_ge(vc.progress_calls, 1);
    ck_assert_uint_eq(rep.records, MANY);
    ck_assert_uint_eq(rep.last_lsn, MANY);
    ck_assert_uint_eq(rep.segments, s1.segment_count);
    ck_assert_uint_eq(rep.torn_bytes, 0);

    /* Reopen: everything is there and the log continues. */
    log = open_log(dir, &o);
    stele_stats s2 = stats_of(log);
    ck_assert_uint_eq(s2.last_lsn, MANY);
    ck_assert_uint_eq(s2.durable_lsn, MANY);
    ck_assert_uint_eq(s2.segment_count, s1.segment_count);
    ck_assert_uint_eq(s2.recovery_torn_bytes, 0);
    ck_assert(memcmp(s1.log_id, s2.log_id, sizeof s1.log_id) == 0);
    stele_iter *it;
    OK(stele_iter_open(log, 1, &it));
    const stele_record *r;
    uint8_t *buf = malloc(PAYLOAD_SMALL);
    uint64_t prev_at = 0, n = 0;
    while (stele_iter_next(it, 0, &r) == STELE_OK && r) {
        ck_assert_uint_eq(r->lsn, ++n);
        check_many_record(r, seed, buf);
        REQUIRE(r->recorded_at_ns >= prev_at, "recorded_at_ns decreases at LSN %llu", (unsigned long long)r->lsn);
        prev_at = r->recorded_at_ns;
    }
    ck_assert_uint_eq(n, MANY);
    stele_iter_close(it);
    /* Keys and stream versions survive; the next LSN follows. */
    append_many(log, seed, MANY, MANY + 10);
    stele_event dup = ev_str(NULL, "m7", buf, many_payload(seed, 7, buf));
    dup.stream = "s1", dup.stream_size = 2;
    stele_receipt rc;
    OK(stele_append(log, &dup, &rc));
    ck_assert_int_eq(rc.decision, STELE_DECISION_DUPLICATE);
    ck_assert_uint_eq(rc.lsn, 8);
    stele_record *g;
    OK(stele_get(log, MANY + 1, &g));
    REQUIRE(g->recorded_at_ns >= prev_at, "recorded_at_ns went back across the reopen");
    stele_record_free(g);
    OK(stele_close(log));

    check_segment_files(dir, MANY + 10);
    OK(stele_verify(dir, NULL, NULL, &rep));
    ck_assert_uint_eq(rep.records, MANY + 10);
    ck_assert_uint_eq(rep.problems, 0);
    free(buf);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------- durability */

START_TEST(test_durability_modes)
{
    char *dir = tu_tmpdir("eng-dur");
    stele_options o = opts_default(STELE_IO_URING);
    stele_receipt rc;
    stele_event e = ev_str(NULL, NULL, "d", 1);

    /* sync: every acknowledged record is durable; one sync per batch. */
    stele_log *log = open_log(dir, &o);
    for (int i = 0; i < 5; i++) {
        OK(stele_append(log, &e, &rc));
        stele_stats s = stats_of(log);
        ck_assert_uint_eq(s.durable_lsn, rc.lsn);
        ck_assert_uint_eq(s.last_lsn, rc.lsn);
    }
    stele_stats s = stats_of(log);
    ck_assert_int_eq(s.durability, STELE_DURABILITY_SYNC);
    ck_assert_uint_eq(s.batches_written, 5);
    ck_assert_uint_ge(s.syncs, 5);
    OK(stele_sync(log));
    OK(stele_close(log));

    /* none: written, visible, not durable until stele_sync. */
    o.durability = STELE_DURABILITY_NONE;
    log = open_log(dir, &o);
    ck_assert_uint_eq(stats_of(log).durable_lsn, 5);
    for (int i = 0; i < 5; i++)
        OK(stele_append(log, &e, &rc));
    s = stats_of(log);
    ck_assert_int_eq(s.durability, STELE_DURABILITY_NONE);
    ck_assert_uint_eq(s.last_lsn, 10);
    ck_assert_uint_eq(s.durable_lsn, 5);
    ck_assert_uint_eq(s.syncs, 0);
    stele_record *g;
    OK(stele_get(log, 10, &g)); /* readers see every acknowledged record */
    stele_record_free(g);
    /* Acknowledged once encoded (SPEC.md §11.1): at once, before any sync
     * or write is asked for, every query of the handle shows the record. */
    stele_event ke = ev_str("acct-1", "none-key", "k", 1);
    OK(stele_append(log, &ke, &rc));
    ck_assert_uint_eq(rc.lsn, 11);
    stele_status st;
    OK(stele_status_get(log, "none-key", 8, &st));
    ck_assert_uint_eq(st.lsn, 11);
    uint64_t ver = 0, vlsn = 0;
    OK(stele_stream_version(log, "acct-1", 6, &ver, &vlsn));
    ck_assert_uint_eq(ver, 1);
    ck_assert_uint_eq(vlsn, 11);
    OK(stele_get_key(log, "none-key", 8, &g));
    ck_assert_uint_eq(g->lsn, 11);
    stele_record_free(g);
    stele_cursor *cur;
    OK(stele_cursor_open(log, "none-reader", &cur));
    OK(stele_cursor_commit(cur, 11));
    stele_cursor_close(cur);
    ck_assert_uint_eq(stats_of(log).last_lsn, 11);
    OK(stele_sync(log));
    s = stats_of(log);
    ck_assert_uint_eq(s.durable_lsn, 11);
    ck_assert_uint_eq(s.syncs, 1);
    /* Nobody waits for this one: the background threads write it once it
     * has lingered (1 ms), without a read, sync or close asking. */
    uint64_t written = stats_of(log).batches_written;
    OK(stele_append(log, &e, &rc));
    ck_assert_uint_eq(stats_of(log).durable_lsn, 11);
    uint64_t w0 = mono_ms();
    while ((s = stats_of(log)).batches_written == written && mono_ms() - w0 < 30000) /* 30 s only when stuck */
        sleep_ms(1);
    REQUIRE(s.batches_written == written + 1, "none mode: LSN %llu not written after 30 s",
            (unsigned long long)rc.lsn);
    OK(stele_close(log)); /* close makes it durable */

    /* interval, long: nothing synced by the timer within the test; stele_sync works. */
    o.durability = STELE_DURABILITY_INTERVAL;
    o.sync_interval_ms = 60000;
    log = open_log(dir, &o);
    ck_assert_uint_eq(stats_of(log).durable_lsn, 12);
    OK(stele_append(log, &e, &rc));
    ck_assert_uint_eq(rc.lsn, 13);
    s = stats_of(log);
    ck_assert_uint_eq(s.last_lsn, 13);
    ck_assert_uint_eq(s.durable_lsn, 12);
    OK(stele_sync(log));
    ck_assert_uint_eq(stats_of(log).durable_lsn, 13);
    OK(stele_close(log));

    /* interval, short: the timer syncs without being asked. */
    o.sync_interval_ms = 20;
    log = open_log(dir, &o);
    for (int i = 0; i < 3; i++)
        OK(stele_append(log, &e, &rc));
    uint64_t t0 = mono_ms();
    while ((s = stats_of(log)).durable_lsn < rc.lsn && mono_ms() - t0 < 30000) /* a poll: 30 s only on a stuck syncer */
        sleep_ms(5);
    REQUIRE(s.durable_lsn == rc.lsn, "interval mode: durable_lsn %llu after 30 s, want %llu",
            (unsigned long long)s.durable_lsn, (unsigned long long)rc.lsn);
    ck_assert_uint_ge(s.syncs, 1);
    OK(stele_close(log));

    /* The log's default mode is the one set at creation. */
    char *dir2 = tu_path(dir, "interval-default");
    stele_options c = opts_default(STELE_IO_URING);
    c.default_durability = STELE_DURABILITY_INTERVAL;
    c.sync_interval_ms = 60000;
    log = open_log(dir2, &c);
    ck_assert_int_eq(stats_of(log).durability, STELE_DURABILITY_INTERVAL);
    OK(stele_append(log, &e, &rc));
    ck_assert_uint_eq(stats_of(log).durable_lsn, 0);
    OK(stele_close(log));
    c.durability = STELE_DURABILITY_SYNC;
    log = open_log(dir2, &c);
    ck_assert_int_eq(stats_of(log).durability, STELE_DURABILITY_SYNC);
    ck_assert_uint_eq(stats_of(log).durable_lsn, 1);
    OK(stele_close(log));

    OK(stele_verify(dir, NULL, NULL, NULL));
    free(dir2);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(test_idem_window)
{
    char *dir = tu_tmpdir("eng-window");
    stele_options o = opts_default(STELE_IO_URING);
    o.idem_window_ns = 1000000; /* 1 ms */
    stele_log *log = open_log(dir, &o);
    stele_event e = ev_str(NULL, "w", "p", 1);
    stele_receipt rc;
    OK(stele_append(log, &e, &rc));
    ck_assert_uint_eq(rc.lsn, 1);
    sleep_ms(20);
    OK(stele_append(log, &e, &rc)); /* the key expired */
    ck_assert_int_eq(rc.decision, STELE_DECISION_NEW);
    ck_assert_uint_eq(rc.lsn, 2);
    OK(stele_append(log, &e, &rc)); /* remembered again, for 1 ms: usually a duplicate */
    ck_assert(rc.decision == STELE_DECISION_DUPLICATE || rc.decision == STELE_DECISION_NEW);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* -------------------------------------------------------- concurrency */

#define WRITERS 8
#define PER_WRITER 250
#define SHARED_KEYS 16

/* A request: key, variant (0 = shared by all threads), payload size. */
static size_t conc_payload(const char *key, int variant, uint8_t *buf)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h ^= (uint64_t)variant * 0x9E3779B97F4A7C15ull;
    uint64_t s = h | 1;
    size_t n = 8 + (size_t)(tu_rand(&s) % 8000);
    memcpy(buf, &variant, sizeof variant);
    memset(buf + 4, 0, 4);
    fill(buf + 8, n - 8, h);
    return n;
}

struct conc_op {
    char key[24];
    int variant;
    stele_receipt rc;
    int code;
};

struct conc_writer {
    stele_log *log;
    int tid;
    uint64_t seed;
    struct conc_op ops[PER_WRITER];
};

static void *conc_writer_main(void *arg)
{
    struct conc_writer *w = arg;
    uint8_t *bufs[3];
    for (int j = 0; j < 3; j++)
        bufs[j] = malloc(8200);
    uint64_t s = w->seed + (uint64_t)w->tid;
    for (int i = 0; i < PER_WRITER;) {
        int n = tu_rand(&s) % 4 == 0 && i + 3 <= PER_WRITER ? 3 : 1;
        stele_event evs[3];
        stele_receipt rcs[3];
        for (int j = 0; j < n; j++) {
            struct conc_op *op = &w->ops[i + j];
            uint64_t r = tu_rand(&s) % 10;
            if (r == 0) { /* shared, identical payload: dup */
                snprintf(op->key, sizeof op->key, "same-%d", (int)(tu_rand(&s) % SHARED_KEYS));
                op->variant = 0;
            } else if (r == 1) { /* shared, payload per thread: conflict */
                snprintf(op->key, sizeof op->key, "diff-%d", (int)(tu_rand(&s) % SHARED_KEYS));
                op->variant = w->tid + 1;
            } else {
                snprintf(op->key, sizeof op->key, "own-%d-%d", w->tid, i + j);
                op->variant = w->tid + 1;
            }
            size_t len = conc_payload(op->key, op->variant, bufs[j]);
            evs[j] = ev_str(NULL, op->key, bufs[j], len);
        }
        int code = stele_append_batch(w->log, evs, (size_t)n, rcs);
        for (int j = 0; j < n; j++) {
            w->ops[i + j].rc = rcs[j];
            w->ops[i + j].code = code;
        }
        i += n;
    }
    for (int j = 0; j < 3; j++)
        free(bufs[j]);
    return NULL;
}

struct conc_reader {
    stele_log *log;
    atomic_int *stop;
    uint64_t seen;
    char err[256];
};

static void *conc_reader_main(void *arg)
{
    struct conc_reader *rd = arg;
    stele_iter *it;
    uint8_t *buf = malloc(8200);
    if (stele_iter_open(rd->log, 1, &it) != STELE_OK) {
        snprintf(rd->err, sizeof rd->err, "iter_open failed");
        free(buf);
        return NULL;
    }
    for (;;) {
        const stele_record *r;
        int code = stele_iter_next(it, 20, &r);
        if (code != STELE_OK) {
            snprintf(rd->err, sizeof rd->err, "iter_next: %s", stele_errmsg());
            break;
        }
        if (!r) {
            if (atomic_load(rd->stop))
                break;
            continue;
        }
        stele_stats s;
        if (stele_stats_get(rd->log, &s) != STELE_OK || r->lsn > s.durable_lsn) {
            snprintf(rd->err, sizeof rd->err, "reader saw LSN %llu beyond the durable LSN %llu",
                     (unsigned long long)r->lsn, (unsigned long long)s.durable_lsn);
            break;
        }
        if (r->lsn != rd->seen + 1) {
            snprintf(rd->err, sizeof rd->err, "reader saw LSN %llu after %llu", (unsigned long long)r->lsn,
                     (unsigned long long)rd->seen);
            break;
        }
        rd->seen = r->lsn;
        char key[32];
        int variant;
        snprintf(key, sizeof key, "%.*s", (int)r->key_size, r->key);
        memcpy(&variant, r->payload, sizeof variant);
        size_t n = conc_payload(key, variant, buf);
        if (!bytes_eq(r->payload, r->payload_size, buf, n)) {
            snprintf(rd->err, sizeof rd->err, "LSN %llu: payload does not match key %s", (unsigned long long)r->lsn,
                     key);
            break;
        }
    }
    stele_iter_close(it);
    free(buf);
    return NULL;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(a, b);
}

START_TEST(test_concurrency)
{
    char *dir = tu_tmpdir("eng-conc");
    uint64_t seed = tu_seed("test_concurrency");
    stele_options o = opts_small(STELE_IO_URING);
    stele_log *log = open_log(dir, &o);
    static struct conc_writer ws[WRITERS];
    struct conc_reader rs[2];
    atomic_int stop = 0;
    pthread_t wt[WRITERS], rt[2];
    for (int i = 0; i < 2; i++) {
        rs[i] = (struct conc_reader){.log = log, .stop = &stop};
        pthread_create(&rt[i], NULL, conc_reader_main, &rs[i]);
    }
    for (int i = 0; i < WRITERS; i++) {
        ws[i].log = log;
        ws[i].tid = i;
        ws[i].seed = seed;
        pthread_create(&wt[i], NULL, conc_writer_main, &ws[i]);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(wt[i], NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(rt[i], NULL);

    stele_stats s = stats_of(log);
    uint64_t last = s.last_lsn;
    ck_assert_int_eq(s.fenced, 0);
    ck_assert_uint_ge(s.segment_count, 10);
    for (int i = 0; i < 2; i++) {
        REQUIRE(rs[i].err[0] == '\0', "reader %d: %s", i, rs[i].err);
        ck_assert_uint_eq(rs[i].seen, last);
    }

    /* Every LSN from 1 to last was handed out exactly once, as `new`. */
    uint8_t *owner = calloc(last + 1, 1);
    uint64_t news = 0, dups = 0, conflicts = 0;
    for (int t = 0; t < WRITERS; t++) {
        for (int i = 0; i < PER_WRITER; i++) {
            const struct conc_op *op = &ws[t].ops[i];
            REQUIRE(op->code == STELE_OK || op->code == STELE_ERR_CONFLICT, "thread %d op %d: code %d", t, i,
                    op->code);
            REQUIRE(op->rc.lsn >= 1 && op->rc.lsn <= last, "thread %d op %d: LSN %llu", t, i,
                    (unsigned long long)op->rc.lsn);
            if (op->rc.decision == STELE_DECISION_NEW) {
                REQUIRE(!owner[op->rc.lsn], "LSN %llu handed out twice", (unsigned long long)op->rc.lsn);
                owner[op->rc.lsn] = 1;
                news++;
            } else {
                dups += op->rc.decision == STELE_DECISION_DUPLICATE;
                conflicts += op->rc.decision == STELE_DECISION_CONFLICT;
            }
        }
    }
    ck_assert_uint_eq(news, last);
    ck_assert_uint_eq(news + dups + conflicts, WRITERS * PER_WRITER);
    ck_assert_uint_eq(s.appends_new, news);
    ck_assert_uint_eq(s.appends_duplicate, dups);
    ck_assert_uint_eq(s.appends_conflict, conflicts);

    /* Each key: one record; every other request for it points there and is
     * a duplicate exactly when its payload matches the winner's. */
    uint8_t *buf = malloc(8200);
    for (int t = 0; t < WRITERS; t++) {
        for (int i = 0; i < PER_WRITER; i++) {
            const struct conc_op *op = &ws[t].ops[i];
            stele_record *g;
            OK(stele_get(log, op->rc.lsn, &g));
            REQUIRE(bytes_eq(g->key, g->key_size, op->key, strlen(op->key)), "LSN %llu holds another key",
                    (unsigned long long)op->rc.lsn);
            int winner;
            memcpy(&winner, g->payload, sizeof winner);
            size_t n = conc_payload(op->key, winner, buf);
            REQUIRE(bytes_eq(g->payload, g->payload_size, buf, n), "LSN %llu: payload damaged",
                    (unsigned long long)op->rc.lsn);
            if (op->rc.decision != STELE_DECISION_NEW)
                REQUIRE(op->rc.decision == (winner == op->variant ? STELE_DECISION_DUPLICATE : STELE_DECISION_CONFLICT),
                        "key %s: decision %d with variant %d, winner %d", op->key, op->rc.decision, op->variant,
                        winner);
            else
                ck_assert_int_eq(winner, op->variant);
            stele_record_free(g);
        }
    }
    free(buf);
    free(owner);

    /* Read the log itself: no key appears in two records. */
    char (*keys)[24] = calloc(last, sizeof *keys);
    stele_iter *it;
    OK(stele_iter_open(log, 1, &it));
    const stele_record *r;
    uint64_t n = 0;
    while (stele_iter_next(it, 0, &r) == STELE_OK && r) {
        ck_assert_uint_lt(n, last);
        ck_assert_uint_lt(r->key_size, sizeof keys[0]);
        memcpy(keys[n++], r->key, r->key_size);
    }
    stele_iter_close(it);
    ck_assert_uint_eq(n, last);
    qsort(keys, n, sizeof keys[0], cmp_key);
    for (uint64_t i = 1; i < n; i++)
        REQUIRE(strcmp(keys[i - 1], keys[i]) != 0, "key %s is in the log twice", keys[i]);
    free(keys);

    OK(stele_close(log));
    stele_verify_report rep;
    OK(stele_verify(dir, NULL, NULL, &rep));
    ck_assert_uint_eq(rep.records, last);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* --------------------------------------------------------------- zstd */

/* A compressible JSON-ish payload for record i. */
static size_t json_payload(int i, char *buf, size_t cap)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "{\"order\":%d,\"items\":[", i);
    for (int j = 0; j < 20 && n + 100 < cap; j++)
        n += (size_t)snprintf(buf + n, cap - n, "{\"sku\":\"SKU-%05d\",\"qty\":%d,\"price\":\"%d.99\"},", (i * 7 + j) % 50,
                              j % 4 + 1, 10 + j);
    n += (size_t)snprintf(buf + n, cap - n, "{}]}");
    return n;
}

/* 30 batches of 16 JSON records, 20 single 12 KiB text records, 5 random ones. */
static void zstd_workload(stele_log *log)
{
    static char bufs[16][2048];
    stele_event evs[16];
    stele_receipt rcs[16];
    int i = 0;
    for (int b = 0; b < 30; b++) {
        for (int j = 0; j < 16; j++, i++) {
            size_t n = json_payload(i, bufs[j], sizeof bufs[j]);
            evs[j] = ev_str("orders", NULL, bufs[j], n);
            evs[j].content = STELE_CONTENT_JSON;
        }
        OK(stele_append_batch(log, evs, 16, rcs));
    }
    static char text[12288];
    for (int k = 0; k < 20; k++, i++) {
        for (size_t j = 0; j < sizeof text; j++)
            text[j] = "the quick brown fox jumps over the lazy dog "[(j + (size_t)k) % 44];
        stele_event e = ev_str("text", NULL, text, sizeof text);
        OK(stele_append(log, &e, &rcs[0]));
    }
    static uint8_t noise[12288];
    for (int k = 0; k < 5; k++, i++) {
        fill(noise, sizeof noise, (uint64_t)k);
        stele_event e = ev_str("noise", NULL, noise, sizeof noise);
        OK(stele_append(log, &e, &rcs[0]));
    }
}

static void zstd_check(stele_log *log)
{
    static char buf[12288];
    stele_iter *it;
    OK(stele_iter_open(log, 1, &it));
    const stele_record *r;
    uint64_t n = 0;
    while (stele_iter_next(it, 0, &r) == STELE_OK && r) {
        n++;
        int i = (int)r->lsn - 1;
        size_t len;
        if (i < 480) {
            len = json_payload(i, buf, 2048);
        } else if (i < 500) {
            len = sizeof buf;
            for (size_t j = 0; j < len; j++)
                buf[j] = "the quick brown fox jumps over the lazy dog "[(j + (size_t)(i - 480)) % 44];
        } else {
            len = sizeof buf;
            fill((uint8_t *)buf, len, (uint64_t)(i - 500));
        }
        REQUIRE(bytes_eq(r->payload, r->payload_size, buf, len), "LSN %llu differs", (unsigned long long)r->lsn);
    }
    stele_iter_close(it);
    ck_assert_uint_eq(n, 505);
}

/* Counts the batches of the first segment file by their compression byte. */
static void count_compressed(const char *dir, int *out_zstd, int *out_raw)
{
    char name[STELE_SEGMENT_NAME_SIZE + 1];
    fmt_segment_name(1, name, sizeof name);
    char *path = tu_path(dir, name);
    size_t size;
    uint8_t *bytes = tu_read_file(path, &size);
    ck_assert_ptr_nonnull(bytes);
    struct fmt_segment_header h;
    ck_assert_int_eq(fmt_segment_header_decode(bytes, size, &h), FMT_OK);
    uint64_t seed = stele_segment_seed(h.log_id, h.seq, h.first_lsn);
    *out_zstd = *out_raw = 0;
    for (size_t off = STELE_SEGMENT_HEADER_SIZE; off + STELE_BATCH_HEADER_SIZE <= size;) {
        struct fmt_batch_header b;
        uint64_t chain;
        if (fmt_batch_header_decode(bytes + off, STELE_BATCH_HEADER_SIZE, seed, &b, &chain) != FMT_OK)
            break;
        if (b.compression == FMT_COMPRESSION_ZSTD)
            ++*out_zstd;
        else
            ++*out_raw;
        off += fmt_batch_frame_size(b.stored_size);
    }
    free(bytes);
    free(path);
}

START_TEST(test_zstd)
{
    char *base = tu_tmpdir("eng-zstd");
    char *dz = tu_path(base, "zstd"), *dn = tu_path(base, "none");
    stele_options o = opts_default(STELE_IO_URING);
    o.segment_size = 256 * 1024;
    o.payload_size_max = 64 * 1024;
    stele_log *ln = open_log(dn, &o);
    o.compression = STELE_COMPRESSION_ZSTD;
    o.compression_level = 5;
    stele_log *lz = open_log(dz, &o);
    ck_assert_int_eq(stats_of(lz).compression, STELE_COMPRESSION_ZSTD);
    zstd_workload(ln);
    zstd_workload(lz);
    zstd_check(lz);
    stele_stats sn = stats_of(ln), sz = stats_of(lz);
    REQUIRE(sz.data_size * 2 < sn.data_size, "zstd log holds %llu bytes, uncompressed %llu",
            (unsigned long long)sz.data_size, (unsigned long long)sn.data_size);
    REQUIRE(sz.segment_count < sn.segment_count, "zstd log has %llu segments, uncompressed %llu",
            (unsigned long long)sz.segment_count, (unsigned long long)sn.segment_count);
    OK(stele_close(ln));
    OK(stele_close(lz));

    int zb, rb;
    count_compressed(dz, &zb, &rb);
    ck_assert_int_gt(zb, 0);
    count_compressed(dn, &zb, &rb);
    ck_assert_int_eq(zb, 0);
    ck_assert_int_gt(rb, 0);

    stele_verify_report rep;
    OK(stele_verify(dz, NULL, NULL, &rep));
    ck_assert_uint_eq(rep.records, 505);
    ck_assert_uint_eq(rep.problems, 0);
    /* Sum of segment bytes on disk (the active one up to its data). */
    stele_verify_report repn;
    OK(stele_verify(dn, NULL, NULL, &repn));
    REQUIRE(rep.bytes < repn.bytes, "verify checked %llu bytes of zstd log vs %llu uncompressed",
            (unsigned long long)rep.bytes, (unsigned long long)repn.bytes);

    lz = open_log(dz, &o); /* recovery decompresses the active segment's batches */
    zstd_check(lz);
    stele_event e = ev_str("orders", NULL, "{}", 2);
    stele_receipt rc;
    OK(stele_append(lz, &e, &rc));
    ck_assert_uint_eq(rc.lsn, 506);
    ck_assert_uint_eq(rc.stream_version, 481);
    OK(stele_close(lz));
    free(dz);
    free(dn);
    tu_rmrf(base);
    free(base);
}
END_TEST

static Suite *engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("lifecycle");
    tcase_add_test(tc, test_create_open_close);
    tcase_add_test(tc, test_options_invalid);
    tcase_add_test(tc, test_lock_same_process);
    tcase_add_test(tc, test_lock_forked_child);
    tcase_add_test(tc, test_read_only_follows_writer);
    tcase_add_test(tc, test_read_only_open_races_writer);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("append");
    tcase_add_loop_test(tc, test_append_receipts, 0, 2);
    tcase_add_test(tc, test_invalid_input);
    tcase_add_test(tc, test_get_fields);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_idem_window);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("segments");
    tcase_add_test(tc, test_iterators_many_segments);
    tcase_add_test(tc, test_iter_wait);
    tcase_add_test(tc, test_roll_seal_verify_reopen);
    tcase_add_test(tc, test_durability_modes);
    tcase_add_test(tc, test_zstd);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("concurrency");
    tcase_add_test(tc, test_concurrency);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(engine_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

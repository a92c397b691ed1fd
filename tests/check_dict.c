/*
 * check_dict.c - proves the promises of zstd compression with trained
 * dictionaries (SPEC.md §4, §18; RELIABILITY S24), through the public API
 * and by damaging the files on disk.
 *
 * How:
 *  - Round trip: a zstd log gets seeded, varied JSON events in small batches,
 *    a dictionary is trained from them, more events follow; every record
 *    reads back byte for byte (before and after reopen), batches before the
 *    training carry no dictionary and the ones after carry id 1, the bytes
 *    stored per raw byte drop after the training, stats name the dictionary
 *    in use, verify is clean. The same workload on an uncompressed log
 *    stores every byte raw.
 *  - Old dictionaries stay in use for old batches: batches written with
 *    dictionary 1 read back after dictionary 2 exists and the writer moved
 *    on to it; a reopened writer keeps using the newest.
 *  - A missing dictionary file: reading a batch that names it is
 *    STELE_ERR_CORRUPT with a message naming the dictionary file, the
 *    segment and the batch offset; verify reports it; when such a batch is in
 *    the active segment, the open fails and nothing is cut (putting the file
 *    back brings every record back).
 *  - A damaged dictionary (each header byte, and seeded body bytes, flipped
 *    in turn) is detected by its checksum: reads of its batches fail naming
 *    the file, verify reports the file itself.
 *  - A flipped byte in a compressed body fails the body checksum before any
 *    decompression (the message is the checksum's, not zstd's).
 *  - A batch header whose raw_size lies (checksum fixed up) is refused from
 *    the frame's declared size before the output buffer is allocated: under
 *    an address-space limit that a 64 MiB allocation would break (when not
 *    under ASan, which reserves its own address space), the read is CORRUPT,
 *    never NOMEM or a crash.
 *  - The dictionary file format: every byte flipped and every truncation of
 *    an encoded file is refused by fmt_dict_decode; names parse strictly.
 *  - Automatic training (options.dict_train_records): once the log holds
 *    that many records a dictionary is made and later batches use it; not
 *    again after a reopen that finds one; a close during it waits for it.
 *  - Making a dictionary durable under I/O faults (EIO, ENOSPC at every
 *    write, sync and metadata call): the error names the file, no .tmp is
 *    left, a failed dictionary is never handed to the writer, and the log
 *    verifies clean.
 *  - Training refuses an empty log, a read-only handle and options out of
 *    bounds (naming the option); ids go 1, 2, 3; the level override is
 *    checked and reported.
 * Events are generated from a seed printed by tu_seed (STELE_TEST_SEED replays).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "batch.h"
#include "checksum.h"
#include "dict_file.h"
#include "internal.h" /* stele_open_io */
#include "io.h"
#include "limits.h"
#include "segment.h"
#include "stele.h"
#include "testutil.h"

#define SEG_SMALL (256u * 1024u)
#define BATCH_RECORDS 4
#define PAYLOAD_CAP 1024

/* ------------------------------------------------------------- events */

/* A varied JSON event for (seed, i): payment, order or webhook. */
static size_t event_json(uint64_t seed, uint64_t i, char *buf, size_t cap, const char **out_type)
{
    uint64_t s = seed ^ (i * 0x9e3779b97f4a7c15ull) ^ 0x5bd1e995u;
    uint64_t r1 = tu_rand(&s), r2 = tu_rand(&s), r3 = tu_rand(&s);
    static const char *cur[] = {"EUR", "USD", "GBP", "JPY", "CHF"};
    static const char *country[] = {"DE", "FR", "US", "GB", "JP", "NL"};
    int n;
    switch (r1 % 3) {
    case 0:
        *out_type = "payment.captured";
        n = snprintf(buf, cap,
                     "{\"id\":\"pay_%016llx\",\"amount\":%llu,\"currency\":\"%s\",\"status\":\"succeeded\","
                     "\"customer\":{\"id\":\"cus_%08llx\",\"country\":\"%s\"},\"created\":%llu}",
                     (unsigned long long)r2, (unsigned long long)(r3 % 100000), cur[r3 % 5],
                     (unsigned long long)(r2 % 1000000), country[r2 % 6],
                     (unsigned long long)(1760000000 + i));
        break;
    case 1:
        *out_type = "order.placed";
        n = snprintf(buf, cap,
                     "{\"order_id\":\"ord_%llu\",\"items\":[{\"sku\":\"SKU-%05llu\",\"qty\":%llu,\"price\":%llu}],"
                     "\"shipping\":{\"method\":\"standard\",\"country\":\"%s\"},\"total\":%llu}",
                     (unsigned long long)(r2 % 10000000), (unsigned long long)(r3 % 5000),
                     (unsigned long long)(r3 % 4 + 1), (unsigned long long)(r2 % 20000), country[r3 % 6],
                     (unsigned long long)(r2 % 90000));
        break;
    default:
        *out_type = "webhook.delivered";
        n = snprintf(buf, cap,
                     "{\"webhook_id\":\"wh_%08llx\",\"endpoint\":\"https://api.example.com/hooks/%llu\","
                     "\"attempt\":%llu,\"response\":{\"status\":%d,\"latency_ms\":%llu}}",
                     (unsigned long long)r2, (unsigned long long)(r3 % 1000), (unsigned long long)(r1 % 5 + 1),
                     r3 % 10 ? 200 : 503, (unsigned long long)(r2 % 900));
        break;
    }
    return (size_t)n;
}

static stele_log *open_log(const char *dir, const stele_options *o)
{
    stele_log *log = NULL;
    int rc = stele_open(dir, o, &log);
    REQUIRE(rc == STELE_OK && log, "open %s: %s: %s", dir, stele_strerror(rc), stele_errmsg());
    return log;
}

static stele_options opts_zstd(void)
{
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.compression = STELE_COMPRESSION_ZSTD;
    o.segment_size = SEG_SMALL;
    o.payload_size_max = 16 * 1024;
    /* One batch per call, no sync until close: interval mode with an interval
     * longer than the test (none mode acknowledges on encoding, and its
     * background writer groups calls into batches, SPEC.md §11.1). */
    o.durability = STELE_DURABILITY_INTERVAL;
    o.sync_interval_ms = 60000;
    return o;
}

static stele_options opts_read_only(void)
{
    stele_options o;
    stele_options_init(&o);
    o.read_only = 1;
    return o;
}

/* Appends events [from, to) of seed in batches of BATCH_RECORDS. */
static void append_events_sync(stele_log *log, uint64_t seed, uint64_t from, uint64_t to, int sync)
{
    static char bufs[BATCH_RECORDS][PAYLOAD_CAP];
    stele_event evs[BATCH_RECORDS];
    stele_receipt rcs[BATCH_RECORDS];
    for (uint64_t i = from; i < to;) {
        size_t k = 0;
        for (; k < BATCH_RECORDS && i < to; k++, i++) {
            const char *type;
            size_t n = event_json(seed, i, bufs[k], sizeof bufs[k], &type);
            memset(&evs[k], 0, sizeof evs[k]);
            evs[k].type = type;
            evs[k].type_size = strlen(type);
            evs[k].payload = bufs[k];
            evs[k].payload_size = n;
            evs[k].content = STELE_CONTENT_JSON;
        }
        OK(stele_append_batch(log, evs, k, rcs));
        REQUIRE(rcs[0].lsn == i - k + 1, "LSN %llu for event %llu", (unsigned long long)rcs[0].lsn,
                (unsigned long long)(i - k));
    }
    if (sync)
        OK(stele_sync(log));
}

static void append_events(stele_log *log, uint64_t seed, uint64_t from, uint64_t to)
{
    append_events_sync(log, seed, from, to, 1);
}

/* Every record from LSN 1 equals event lsn-1 of seed; count of them. */
static uint64_t check_events(stele_log *log, uint64_t seed)
{
    static char buf[PAYLOAD_CAP];
    stele_iter *it;
    OK(stele_iter_open(log, 1, &it));
    const stele_record *r;
    uint64_t n = 0;
    int rc;
    while ((rc = stele_iter_next(it, 0, &r)) == STELE_OK && r) {
        const char *type;
        size_t len = event_json(seed, r->lsn - 1, buf, sizeof buf, &type);
        REQUIRE(r->payload_size == len && memcmp(r->payload, buf, len) == 0 && r->type_size == strlen(type) &&
                    memcmp(r->type, type, r->type_size) == 0,
                "LSN %llu differs", (unsigned long long)r->lsn);
        n++;
    }
    REQUIRE(rc == STELE_OK, "iterating: %s: %s", stele_strerror(rc), stele_errmsg());
    stele_iter_close(it);
    return n;
}

static stele_dict_info train(stele_log *log, uint64_t sample)
{
    stele_dict_options d;
    stele_dict_options_init(&d);
    d.sample_records = sample;
    d.dict_size_max = 16 * 1024;
    stele_dict_info info;
    OK(stele_dict_train(log, &d, &info));
    return info;
}

/* ------------------------------------------------- batches on disk */

struct batch_list {
    char path[1024][4096 + 32];
    uint64_t offset[1024];
    uint64_t first_lsn[1024];
    uint32_t dict_id[1024];
    int compressed[1024];
    size_t count;
    const char *cur;
};

static int list_batch(void *ctx, const stele_batch_info *b, const stele_record *rec, uint64_t off, uint64_t size)
{
    (void)off;
    (void)size;
    struct batch_list *l = ctx;
    if (rec || l->count == 1024)
        return 0;
    snprintf(l->path[l->count], sizeof l->path[0], "%s", l->cur);
    l->offset[l->count] = b->offset;
    l->first_lsn[l->count] = b->first_lsn;
    l->dict_id[l->count] = b->dict_id;
    l->compressed[l->count] = b->compression == STELE_COMPRESSION_ZSTD;
    l->count++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every batch of every segment of dir, in LSN order (before any damage). */
static struct batch_list *list_batches(const char *dir)
{
    struct batch_list *l = calloc(1, sizeof *l);
    ck_assert_ptr_nonnull(l);
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    char *names[4096];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 4096)
        if (strlen(e->d_name) == 24 && strcmp(e->d_name + 20, ".seg") == 0)
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_str);
    for (size_t i = 0; i < n; i++) {
        char *path = tu_path(dir, names[i]);
        l->cur = path;
        stele_segment_info info;
        int rc = stele_segment_inspect(path, list_batch, l, &info);
        REQUIRE(rc == STELE_OK, "inspect %s: %s", path, stele_errmsg());
        free(path);
        free(names[i]);
    }
    return l;
}

/* Index in l of the first batch compressed with dictionary id, or -1. */
static long find_dict_batch(const struct batch_list *l, uint32_t id)
{
    for (size_t i = 0; i < l->count; i++)
        if (l->dict_id[i] == id)
            return (long)i;
    return -1;
}

static char *dict_file(const char *dir, uint32_t id)
{
    char name[STELE_DICT_NAME_SIZE];
    fmt_dict_name(id, name, sizeof name);
    return tu_path(dir, name);
}

/* Flips one byte of a file (made writable first: dictionaries and sealed segments are 0444). */
static void flip_byte(const char *path, uint64_t offset)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(chmod(path, 0644), 0);
    size_t size;
    uint8_t *b = tu_read_file(path, &size);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_lt(offset, size);
    b[offset] ^= 0x40;
    ck_assert_int_eq(tu_write_file(path, b, size), 0);
    ck_assert_int_eq(chmod(path, st.st_mode & 07777), 0);
    free(b);
}

static void write_all(const char *path, const uint8_t *b, size_t size);

static int contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

/* Reading lsn from a fresh read-only handle fails with CORRUPT naming every one of want[]. */
static void expect_read_corrupt(const char *dir, uint64_t lsn, const char *const *want, size_t want_count)
{
    stele_options ro = opts_read_only();
    stele_log *log = open_log(dir, &ro);
    stele_record *rec = NULL;
    EXPECT(stele_get(log, lsn, &rec), STELE_ERR_CORRUPT);
    const char *msg = stele_errmsg();
    for (size_t i = 0; i < want_count; i++)
        REQUIRE(contains(msg, want[i]), "message \"%s\" does not name \"%s\"", msg, want[i]);
    stele_close(log);
}

struct problems {
    char first[1024];
    char all[8192];
    size_t count;
};

static int collect_problem(void *ctx, const stele_verify_problem *p, uint64_t done, uint64_t total)
{
    (void)done;
    (void)total;
    struct problems *pr = ctx;
    if (!p)
        return 0;
    if (pr->count++ == 0)
        snprintf(pr->first, sizeof pr->first, "%s: %s", p->path, p->what);
    size_t len = strlen(pr->all);
    snprintf(pr->all + len, sizeof pr->all - len, "%s @%llu: %s\n", p->path, (unsigned long long)p->offset, p->what);
    return 0;
}

/* verify finds problems and one of them mentions needle. */
static void expect_verify_reports(const char *dir, const char *needle)
{
    struct problems pr = {0};
    stele_verify_report rep;
    EXPECT(stele_verify(dir, collect_problem, &pr, &rep), STELE_ERR_CORRUPT);
    REQUIRE(rep.problems >= 1 && pr.count == rep.problems, "%llu problems, %zu seen",
            (unsigned long long)rep.problems, pr.count);
    REQUIRE(contains(pr.all, needle), "no problem names \"%s\"; the first: %.500s", needle, pr.all);
}

static void expect_verify_clean(const char *dir, uint64_t records)
{
    struct problems pr = {0};
    stele_verify_report rep;
    int rc = stele_verify(dir, collect_problem, &pr, &rep);
    REQUIRE(rc == STELE_OK && rep.problems == 0, "verify: %s; %.500s", stele_strerror(rc), pr.all);
    ck_assert_uint_eq(rep.records, records);
}

/* A zstd log in dir with events [0, n1) before dictionary 1 and [n1, n2) after it. */
static void make_dict_log(const char *dir, uint64_t seed, uint64_t n1, uint64_t n2)
{
    stele_options o = opts_zstd();
    stele_log *log = open_log(dir, &o);
    append_events(log, seed, 0, n1);
    stele_dict_info info = train(log, n1);
    ck_assert_uint_eq(info.dict_id, 1);
    append_events(log, seed, n1, n2);
    OK(stele_close(log));
}

/* ----------------------------------------------------------- the tests */

START_TEST(test_round_trip)
{
    uint64_t seed = tu_seed("check_dict round trip");
    char *base = tu_tmpdir("dict-rt");
    char *dz = tu_path(base, "zstd"), *dn = tu_path(base, "none");
    stele_options o = opts_zstd();
    stele_log *log = open_log(dz, &o);
    append_events(log, seed, 0, 2000);
    stele_compression_report before, after;
    OK(stele_compression_get(log, &before));
    ck_assert_uint_eq(before.batches_dict, 0);
    ck_assert_uint_eq(before.batches_zstd, before.batches); /* JSON in 4-record batches compresses */
    stele_stats st;
    OK(stele_stats_get(log, &st));
    ck_assert_uint_eq(st.dict_in_use, 0);
    ck_assert_uint_eq(st.dict_count, 0);
    ck_assert_int_eq(st.compression_level, 3);

    stele_dict_info info = train(log, 2000);
    ck_assert_uint_eq(info.dict_id, 1);
    ck_assert_uint_eq(info.sample_records, 2000);
    ck_assert_uint_eq(info.trained_through_lsn, 2000);
    REQUIRE(info.dict_size >= STELE_DICT_SIZE_MIN && info.dict_size <= 16 * 1024, "dict size %u", info.dict_size);
    append_events(log, seed, 2000, 4000);
    OK(stele_compression_get(log, &after));
    OK(stele_stats_get(log, &st));
    ck_assert_uint_eq(st.dict_in_use, 1);
    ck_assert_uint_eq(st.dict_newest, 1);
    ck_assert_uint_eq(st.dict_count, 1);
    ck_assert_uint_eq(after.dict_id_max, 1);
    ck_assert_uint_eq(after.batches_dict, after.batches - before.batches);
    double ratio_before = (double)before.raw_size / (double)before.stored_size;
    double ratio_after = (double)(after.raw_size - before.raw_size) / (double)(after.stored_size - before.stored_size);
    REQUIRE(ratio_after > 1.5 * ratio_before, "ratio %.2f with the dictionary, %.2f without", ratio_after,
            ratio_before);
    ck_assert_uint_eq(check_events(log, seed), 4000);
    OK(stele_close(log));

    expect_verify_clean(dz, 4000);
    log = open_log(dz, &o);
    ck_assert_uint_eq(check_events(log, seed), 4000);
    OK(stele_stats_get(log, &st));
    ck_assert_uint_eq(st.dict_in_use, 1); /* a reopened writer finds the dictionary */
    OK(stele_close(log));
    stele_options ro = opts_read_only();
    log = open_log(dz, &ro);
    ck_assert_uint_eq(check_events(log, seed), 4000);
    OK(stele_close(log));

    /* The uncompressed log stores every byte raw, and reads back the same. */
    stele_options on = opts_zstd();
    on.compression = STELE_COMPRESSION_NONE;
    log = open_log(dn, &on);
    append_events(log, seed, 0, 2000);
    OK(stele_compression_get(log, &after));
    ck_assert_uint_eq(after.batches_zstd, 0);
    ck_assert_uint_eq(after.raw_size, after.stored_size);
    ck_assert_uint_eq(after.raw_size, before.raw_size);
    ck_assert_uint_eq(check_events(log, seed), 2000);
    OK(stele_close(log));
    tu_rmrf(base);
    free(dz);
    free(dn);
    free(base);
}
END_TEST

/* In none mode an append is acknowledged before it is written (SPEC.md
 * §11.1): a training right after the appends samples every acknowledged
 * record (§18.2), written or not. */
START_TEST(test_train_none_mode)
{
    uint64_t seed = tu_seed("check_dict none mode");
    char *base = tu_tmpdir("dict-none");
    stele_options o = opts_zstd();
    o.durability = STELE_DURABILITY_NONE;
    stele_log *log = open_log(base, &o);
    pthread_mutex_lock(&log->q_lock); /* internal.h: the open batch stays unwritten until someone waits */
    log->linger_ns = UINT64_MAX;
    pthread_mutex_unlock(&log->q_lock);
    append_events_sync(log, seed, 0, 500, 0);
    stele_stats st;
    OK(stele_stats_get(log, &st));
    REQUIRE(st.batches_written == 0, "%llu batches written before the training",
            (unsigned long long)st.batches_written);
    stele_dict_info info = train(log, 500);
    ck_assert_uint_eq(info.trained_through_lsn, 500);
    ck_assert_uint_eq(info.sample_records, 500);
    append_events(log, seed, 500, 1000);
    ck_assert_uint_eq(check_events(log, seed), 1000);
    OK(stele_close(log));
    expect_verify_clean(base, 1000);
    tu_rmrf(base);
    free(base);
}
END_TEST

START_TEST(test_old_dict_stays_readable)
{
    uint64_t seed = tu_seed("check_dict old dictionary");
    char *dir = tu_tmpdir("dict-old");
    stele_options o = opts_zstd();
    stele_log *log = open_log(dir, &o);
    append_events(log, seed, 0, 1000);
    ck_assert_uint_eq(train(log, 1000).dict_id, 1);
    append_events(log, seed, 1000, 1500);
    ck_assert_uint_eq(train(log, 1500).dict_id, 2);
    append_events(log, seed, 1500, 2000);
    stele_stats st;
    OK(stele_stats_get(log, &st));
    ck_assert_uint_eq(st.dict_in_use, 2);
    ck_assert_uint_eq(st.dict_count, 2);
    ck_assert_uint_eq(check_events(log, seed), 2000);
    OK(stele_close(log));

    struct batch_list *l = list_batches(dir);
    for (size_t i = 0; i < l->count; i++) {
        uint32_t want = l->first_lsn[i] <= 1000 ? 0 : l->first_lsn[i] <= 1500 ? 1 : 2;
        REQUIRE(l->dict_id[i] == want, "batch at LSN %llu names dictionary %u, want %u",
                (unsigned long long)l->first_lsn[i], l->dict_id[i], want);
    }
    free(l);
    expect_verify_clean(dir, 2000);
    log = open_log(dir, &o);
    ck_assert_uint_eq(check_events(log, seed), 2000);
    append_events(log, seed, 2000, 2100);
    OK(stele_close(log));
    l = list_batches(dir);
    ck_assert_uint_eq(l->dict_id[l->count - 1], 2);
    free(l);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* Rolls until the active segment holds only incompressible (raw) batches,
 * so that opening the log decompresses nothing. */
static void roll_past_dict_batches(const char *dir)
{
    stele_options o = opts_zstd();
    stele_log *log = open_log(dir, &o);
    stele_stats st;
    OK(stele_stats_get(log, &st));
    uint64_t segs = st.segment_count;
    static uint8_t noise[8192];
    uint64_t s = 42;
    for (int k = 0; k < 200; k++) {
        for (size_t j = 0; j < sizeof noise; j += 8) {
            uint64_t v = tu_rand(&s);
            memcpy(noise + j, &v, 8);
        }
        stele_event e = {.payload = noise, .payload_size = sizeof noise};
        stele_receipt rc;
        OK(stele_append(log, &e, &rc));
        OK(stele_stats_get(log, &st));
        if (st.segment_count == segs + 2)
            break;
    }
    ck_assert_uint_eq(st.segment_count, segs + 2);
    OK(stele_close(log));
}

START_TEST(test_missing_dict)
{
    uint64_t seed = tu_seed("check_dict missing dictionary");
    char *dir = tu_tmpdir("dict-missing");
    make_dict_log(dir, seed, 1000, 3000);
    roll_past_dict_batches(dir);
    struct batch_list *l = list_batches(dir);
    long b = find_dict_batch(l, 1);
    ck_assert_int_ge(b, 0);
    char *df = dict_file(dir, 1), *away = tu_path(dir, "away");
    ck_assert_int_eq(rename(df, away), 0);

    char off[64];
    snprintf(off, sizeof off, "offset %llu", (unsigned long long)l->offset[b]);
    const char *want[] = {"0000000001.dict", "missing", l->path[b], off};
    expect_read_corrupt(dir, l->first_lsn[b], want, 4);
    expect_verify_reports(dir, "0000000001.dict: dictionary file is missing");
    /* Records in batches without a dictionary still read. */
    stele_options ro = opts_read_only();
    stele_log *log = open_log(dir, &ro);
    stele_record *rec;
    OK(stele_get(log, 1, &rec));
    stele_record_free(rec);
    OK(stele_close(log));
    ck_assert_int_eq(rename(away, df), 0);
    expect_verify_clean(dir, l->first_lsn[l->count - 1]);
    free(l);
    free(df);
    free(away);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* A dictionary batch in the active segment: the open decompresses it, so a
 * missing dictionary fails the open, and nothing is cut as a torn tail. */
START_TEST(test_missing_dict_active_segment)
{
    uint64_t seed = tu_seed("check_dict missing dictionary, active segment");
    char *dir = tu_tmpdir("dict-active");
    make_dict_log(dir, seed, 1000, 1200);
    char *df = dict_file(dir, 1), *away = tu_path(dir, "away");
    ck_assert_int_eq(rename(df, away), 0);
    stele_options o = opts_zstd();
    stele_log *log = NULL;
    EXPECT(stele_open(dir, &o, &log), STELE_ERR_CORRUPT);
    REQUIRE(contains(stele_errmsg(), "0000000001.dict") && contains(stele_errmsg(), "offset"),
            "message: %s", stele_errmsg());
    stele_options ro = opts_read_only();
    EXPECT(stele_open(dir, &ro, &log), STELE_ERR_CORRUPT);
    expect_verify_reports(dir, "0000000001.dict");
    ck_assert_int_eq(rename(away, df), 0);
    log = open_log(dir, &o);
    ck_assert_uint_eq(check_events(log, seed), 1200);
    stele_stats st;
    OK(stele_stats_get(log, &st));
    ck_assert_uint_eq(st.recovery_torn_batches, 0);
    OK(stele_close(log));
    free(df);
    free(away);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(test_damaged_dict)
{
    uint64_t seed = tu_seed("check_dict damaged dictionary");
    char *dir = tu_tmpdir("dict-damaged");
    make_dict_log(dir, seed, 1000, 2000);
    roll_past_dict_batches(dir);
    struct batch_list *l = list_batches(dir);
    long b = find_dict_batch(l, 1);
    ck_assert_int_ge(b, 0);
    char *df = dict_file(dir, 1);
    size_t size;
    uint8_t *orig = tu_read_file(df, &size);
    ck_assert_ptr_nonnull(orig);
    uint64_t s = seed;
    const char *want[] = {"0000000001.dict", l->path[b]};
    for (int k = 0; k < 64 + 16; k++) {
        uint64_t at = k < 64 ? (uint64_t)k : STELE_DICT_HEADER_SIZE + tu_rand(&s) % (size - STELE_DICT_HEADER_SIZE);
        flip_byte(df, at);
        expect_read_corrupt(dir, l->first_lsn[b], want, 2);
        if (k % 8 == 0)
            expect_verify_reports(dir, "0000000001.dict offset");
        flip_byte(df, at);
    }
    /* Truncated, and grown by one byte. */
    ck_assert_int_eq(truncate(df, (off_t)size - 1), 0);
    expect_read_corrupt(dir, l->first_lsn[b], want, 2);
    ck_assert_int_eq(truncate(df, (off_t)size + 1), 0);
    expect_read_corrupt(dir, l->first_lsn[b], want, 2);
    write_all(df, orig, size);
    expect_verify_clean(dir, l->first_lsn[l->count - 1]);
    free(orig);
    free(df);
    free(l);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* The stored body's checksum fails before zstd sees a byte. */
START_TEST(test_flipped_compressed_body)
{
    uint64_t seed = tu_seed("check_dict flipped body");
    char *dir = tu_tmpdir("dict-body");
    make_dict_log(dir, seed, 1000, 2000);
    roll_past_dict_batches(dir);
    struct batch_list *l = list_batches(dir);
    long b = find_dict_batch(l, 1), p = -1;
    for (size_t i = 0; i < l->count && p < 0; i++)
        if (l->compressed[i] && l->dict_id[i] == 0)
            p = (long)i;
    ck_assert_int_ge(b, 0);
    ck_assert_int_ge(p, 0);
    long which[] = {b, p};
    for (int k = 0; k < 2; k++) {
        long i = which[k];
        for (uint64_t at = STELE_BATCH_HEADER_SIZE; at < STELE_BATCH_HEADER_SIZE + 40; at += 13) {
            flip_byte(l->path[i], l->offset[i] + at);
            const char *want[] = {"checksum mismatch", l->path[i]};
            expect_read_corrupt(dir, l->first_lsn[i], want, 2);
            stele_options ro = opts_read_only();
            stele_log *log = open_log(dir, &ro);
            stele_record *rec = NULL;
            EXPECT(stele_get(log, l->first_lsn[i], &rec), STELE_ERR_CORRUPT);
            REQUIRE(!contains(stele_errmsg(), "decompress") && !contains(stele_errmsg(), "zstd"),
                    "decompressed before the checksum: %s", stele_errmsg());
            stele_close(log);
            expect_verify_reports(dir, "batch body checksum mismatch");
            flip_byte(l->path[i], l->offset[i] + at);
        }
    }
    expect_verify_clean(dir, l->first_lsn[l->count - 1]);
    free(l);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

static uint8_t *read_all(const char *path, size_t *out_size)
{
    uint8_t *b = tu_read_file(path, out_size);
    ck_assert_ptr_nonnull(b);
    return b;
}

static void write_all(const char *path, const uint8_t *b, size_t size)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(chmod(path, 0644), 0);
    ck_assert_int_eq(tu_write_file(path, b, size), 0);
    ck_assert_int_eq(chmod(path, st.st_mode & 07777), 0);
}

/* Forges a lie: sets raw_size of batch i (the last of a sealed segment, not
 * the log's last segment) and fixes up everything that would notice before
 * the body is opened: the header checksum, which is also the batch's chain
 * value, so the footer's chain and checksum, and the next segment header's
 * prev_chain and checksum. Only the footer's whole-file hash (which verify
 * checks) still tells. */
static void forge_raw_size(const struct batch_list *l, size_t i, uint32_t raw_size)
{
    ck_assert_uint_lt(i + 1, l->count);
    ck_assert_str_ne(l->path[i], l->path[i + 1]);
    size_t size, nsize;
    uint8_t *bytes = read_all(l->path[i], &size);
    struct fmt_segment_header sh;
    ck_assert_int_eq(fmt_segment_header_decode(bytes, size, &sh), FMT_OK);
    uint64_t seed = stele_segment_seed(sh.log_id, sh.seq, sh.first_lsn);
    struct fmt_batch_header h;
    uint64_t chain;
    uint8_t *hb = bytes + l->offset[i];
    ck_assert_int_eq(fmt_batch_header_decode(hb, STELE_BATCH_HEADER_SIZE, seed, &h, &chain), FMT_OK);
    h.raw_size = raw_size;
    chain = fmt_batch_header_encode(&h, seed, hb, STELE_BATCH_HEADER_SIZE);
    struct fmt_footer f;
    uint8_t *fb = bytes + size - STELE_FOOTER_SIZE;
    ck_assert_int_eq(fmt_footer_decode(fb, STELE_FOOTER_SIZE, seed, &f), FMT_OK);
    f.chain = chain;
    fmt_footer_encode(&f, seed, fb, STELE_FOOTER_SIZE);
    write_all(l->path[i], bytes, size);
    free(bytes);
    bytes = read_all(l->path[i + 1], &nsize);
    ck_assert_int_eq(fmt_segment_header_decode(bytes, nsize, &sh), FMT_OK);
    sh.prev_chain = chain;
    fmt_segment_header_encode(&sh, bytes, STELE_SEGMENT_HEADER_SIZE);
    write_all(l->path[i + 1], bytes, nsize);
    free(bytes);
}

/* The last batch of a sealed segment that is compressed with dictionary
 * dict_id (0: without one), or -1. */
static long find_last_in_segment(const struct batch_list *l, uint32_t dict_id)
{
    for (size_t i = 0; i + 1 < l->count; i++)
        if (strcmp(l->path[i], l->path[i + 1]) != 0 && l->compressed[i] && l->dict_id[i] == dict_id &&
            i + 2 < l->count)
            return (long)i;
    return -1;
}

/* Limits the address space to what the process maps now plus extra bytes. */
static void limit_address_space(uint64_t extra)
{
#if defined(__SANITIZE_ADDRESS__)
    (void)extra; /* ASan reserves terabytes of shadow memory: no limit applies */
#else
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    rlim_t lim = (rlim_t)(pages * (uint64_t)sysconf(_SC_PAGESIZE) + extra);
    struct rlimit rl = {lim, lim};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
#endif
}

/* A zstd log whose segments end in compressed batches of both kinds: 2000
 * events before the dictionary, then 2000 with it. */
static struct batch_list *make_lie_log(const char *dir, uint64_t seed, long *out_plain, long *out_dict)
{
    make_dict_log(dir, seed, 2000, 4000);
    roll_past_dict_batches(dir);
    struct batch_list *l = list_batches(dir);
    *out_plain = find_last_in_segment(l, 0);
    *out_dict = find_last_in_segment(l, 1);
    ck_assert_int_ge(*out_plain, 0);
    ck_assert_int_ge(*out_dict, 0);
    return l;
}

START_TEST(test_raw_size_lies)
{
    uint64_t seed = tu_seed("check_dict raw_size lies");
    const uint32_t lies[] = {STELE_BATCH_BODY_SIZE_MAX, STELE_BATCH_BODY_SIZE_MAX / 2 + 7, 64u * BATCH_RECORDS};
    for (int k = 0; k < 2; k++) {
        for (size_t j = 0; j < sizeof lies / sizeof lies[0]; j++) {
            char *dir = tu_tmpdir("dict-bomb");
            long p, b;
            struct batch_list *l = make_lie_log(dir, seed, &p, &b);
            long i = k ? b : p;
            forge_raw_size(l, (size_t)i, lies[j]);
            stele_options ro = opts_read_only();
            stele_log *log = open_log(dir, &ro);
            stele_record *rec;
            /* The dictionary is loaded before the limit, from a batch the forgery left alone. */
            size_t pre = 0;
            while (pre < l->count && (l->dict_id[pre] != 1 || pre == (size_t)i || !strcmp(l->path[pre], l->path[i + 1])))
                pre++;
            ck_assert_uint_lt(pre, l->count);
            OK(stele_get(log, l->first_lsn[pre], &rec));
            stele_record_free(rec);
            /* In a child: the limit stays there. Check forks each test, but
             * this loop would otherwise carry the limit to the next case. */
            pid_t pid = fork();
            ck_assert_int_ge(pid, 0);
            if (pid == 0) {
                limit_address_space(24u * 1024 * 1024);
                int rc = stele_get(log, l->first_lsn[i], &rec);
                int named = contains(stele_errmsg(), "declares");
                if (rc != STELE_ERR_CORRUPT || !named)
                    fprintf(stderr, "raw_size %u: %s: %s\n", lies[j], stele_strerror(rc), stele_errmsg());
                _exit(rc == STELE_ERR_CORRUPT && named ? 0 : 1);
            }
            int status;
            ck_assert_int_eq(waitpid(pid, &status, 0), pid);
            REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "batch %s with raw_size %u was not refused",
                    k ? "with a dictionary" : "without a dictionary", lies[j]);
            stele_close(log);
            expect_verify_reports(dir, "declares");
            free(l);
            tu_rmrf(dir);
            free(dir);
        }
    }
}
END_TEST

START_TEST(test_dict_file_format)
{
    uint8_t dict[STELE_DICT_SIZE_MIN + 64];
    for (size_t i = 0; i < sizeof dict; i++)
        dict[i] = (uint8_t)(i * 31 + 7);
    struct fmt_dict_header h = {.dict_id = 7, .dict_size = sizeof dict, .created_at_ns = 123456789,
                                .trained_through_lsn = 4242};
    for (int i = 0; i < 16; i++)
        h.log_id[i] = (uint8_t)(0xa0 + i);
    static uint8_t file[STELE_DICT_HEADER_SIZE + sizeof dict];
    ck_assert_uint_eq(fmt_dict_encode(&h, dict, file, sizeof file), sizeof file);
    struct fmt_dict_header out;
    const uint8_t *body;
    ck_assert_int_eq(fmt_dict_decode(file, sizeof file, &out, &body), FMT_OK);
    ck_assert_uint_eq(out.dict_id, 7);
    ck_assert_uint_eq(out.dict_size, sizeof dict);
    ck_assert_uint_eq(out.created_at_ns, 123456789);
    ck_assert_uint_eq(out.trained_through_lsn, 4242);
    ck_assert_mem_eq(out.log_id, h.log_id, 16);
    ck_assert_ptr_eq(body, file + STELE_DICT_HEADER_SIZE);
    ck_assert_mem_eq(body, dict, sizeof dict);
    for (size_t at = 0; at < sizeof file; at++) {
        file[at] ^= 0x01;
        REQUIRE(fmt_dict_decode(file, sizeof file, &out, &body) != FMT_OK, "byte %zu flipped accepted", at);
        file[at] ^= 0x01;
    }
    for (size_t n = 0; n < sizeof file; n++)
        REQUIRE(fmt_dict_decode(file, n, &out, &body) != FMT_OK, "truncated to %zu accepted", n);
    ck_assert_int_eq(fmt_dict_decode(file, STELE_DICT_FILE_SIZE_MAX + 1, &out, &body), FMT_BAD_FIELD);

    char name[STELE_DICT_NAME_SIZE];
    fmt_dict_name(7, name, sizeof name);
    ck_assert_str_eq(name, "0000000007.dict");
    uint32_t id;
    ck_assert_int_eq(fmt_dict_name_parse("0000000007.dict", &id), 1);
    ck_assert_uint_eq(id, 7);
    ck_assert_int_eq(fmt_dict_name_parse("4294967295.dict", &id), 1);
    ck_assert_uint_eq(id, UINT32_MAX);
    const char *bad[] = {"0000000000.dict", "4294967296.dict", "000000007.dict", "0000000007.dict.tmp",
                         "0000000007.dic", "00000000x7.dict", "00000000000000000001.seg", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        REQUIRE(!fmt_dict_name_parse(bad[i], &id), "\"%s\" parsed", bad[i]);
}
END_TEST

START_TEST(test_train_errors)
{
    char *dir = tu_tmpdir("dict-errors");
    stele_options o = opts_zstd();
    stele_log *log = open_log(dir, &o);
    stele_dict_info info;
    EXPECT(stele_dict_train(log, NULL, &info), STELE_ERR_INVALID);
    REQUIRE(contains(stele_errmsg(), "no records"), "%s", stele_errmsg());
    stele_dict_options d;
    stele_dict_options_init(&d);
    d.sample_records = 15;
    EXPECT(stele_dict_train(log, &d, &info), STELE_ERR_INVALID);
    REQUIRE(contains(stele_errmsg(), "sample_records"), "%s", stele_errmsg());
    stele_dict_options_init(&d);
    d.dict_size_max = STELE_DICT_SIZE_MAX + 1;
    EXPECT(stele_dict_train(log, &d, &info), STELE_ERR_INVALID);
    REQUIRE(contains(stele_errmsg(), "dict_size_max"), "%s", stele_errmsg());
    stele_dict_options_init(&d);
    d.sample_size_max = 1000;
    EXPECT(stele_dict_train(log, &d, &info), STELE_ERR_INVALID);
    REQUIRE(contains(stele_errmsg(), "sample_size_max"), "%s", stele_errmsg());
    /* A handful of identical records is too little for zstd: refused, no file. */
    stele_event e = {.type = "x", .type_size = 1, .payload = "{\"a\":1}", .payload_size = 7};
    stele_receipt rc;
    for (int i = 0; i < 3; i++)
        OK(stele_append(log, &e, &rc));
    EXPECT(stele_dict_train(log, NULL, &info), STELE_ERR_INVALID);
    REQUIRE(contains(stele_errmsg(), "3 records"), "%s", stele_errmsg());
    stele_stats st;
    OK(stele_stats_get(log, &st));
    ck_assert_uint_eq(st.dict_count, 0);
    OK(stele_close(log));

    stele_options ro = opts_read_only();
    log = open_log(dir, &ro);
    EXPECT(stele_dict_train(log, NULL, &info), STELE_ERR_READ_ONLY);
    OK(stele_close(log));
    EXPECT(stele_dict_train(NULL, NULL, &info), STELE_ERR_INVALID);

    /* The level override: checked, and reported. */
    o.compression_level_override = 20;
    EXPECT(stele_open(dir, &o, &log), STELE_ERR_INVALID);
    REQUIRE(contains(stele_errmsg(), "compression_level_override"), "%s", stele_errmsg());
    o.compression_level_override = 19;
    log = open_log(dir, &o);
    OK(stele_stats_get(log, &st));
    ck_assert_int_eq(st.compression_level, 19);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* options.dict_train_records: a dictionary is trained once the log holds
 * that many records, on a thread of its own, and later batches use it; not
 * before, not again after a reopen that finds one, never on a log without
 * compression. */
START_TEST(test_auto_train)
{
    uint64_t seed = tu_seed("check_dict automatic training");
    char *dir = tu_tmpdir("dict-auto");
    stele_options o = opts_zstd();
    o.dict_train_records = 1000;
    stele_log *log = open_log(dir, &o);
    append_events(log, seed, 0, 996);
    stele_stats st;
    OK(stele_stats_get(log, &st));
    ck_assert_int_eq(st.dict_auto_train_code, -1);
    ck_assert_uint_eq(st.dict_count, 0);
    append_events(log, seed, 996, 1000);
    for (int i = 0; i < 600 && st.dict_auto_train_code == -1; i++) {
        usleep(50 * 1000);
        OK(stele_stats_get(log, &st));
    }
    REQUIRE(st.dict_auto_train_code == STELE_OK, "automatic training: code %d, note %s", st.dict_auto_train_code,
            st.dict_note);
    ck_assert_uint_eq(st.dict_count, 1);
    append_events(log, seed, 1000, 1200);
    OK(stele_stats_get(log, &st));
    ck_assert_uint_eq(st.dict_in_use, 1);
    ck_assert_uint_eq(check_events(log, seed), 1200);
    OK(stele_close(log));
    log = open_log(dir, &o); /* a dictionary exists: no second one */
    append_events(log, seed, 1200, 1300);
    OK(stele_stats_get(log, &st));
    ck_assert_int_eq(st.dict_auto_train_code, -1);
    OK(stele_close(log));
    expect_verify_clean(dir, 1300);
    struct batch_list *l = list_batches(dir);
    ck_assert_uint_eq(l->dict_id[l->count - 1], 1);
    free(l);

    /* Closing while the training may still run waits for it. */
    char *d2 = tu_path(dir, "closing");
    log = open_log(d2, &o);
    append_events(log, seed, 0, 1000);
    OK(stele_close(log));
    stele_options ro = opts_read_only();
    log = open_log(d2, &ro);
    OK(stele_stats_get(log, &st));
    ck_assert_uint_eq(st.dict_count, 1); /* the training finished before close returned */
    OK(stele_close(log));
    char *tmp = tu_path(d2, "0000000001.dict.tmp");
    ck_assert_int_ne(access(tmp, F_OK), 0);
    free(tmp);
    free(d2);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

static int dict_files(const char *dir, uint32_t *out_newest)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0, tmp = 0;
    uint32_t id, newest = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (fmt_dict_name_parse(e->d_name, &id)) {
            n++;
            newest = id > newest ? id : newest;
        }
        tmp += strstr(e->d_name, ".dict.tmp") != NULL;
    }
    closedir(d);
    REQUIRE(tmp == 0, "a dictionary .tmp file was left in %s", dir);
    *out_newest = newest;
    return n;
}

/* The durable creation (SPEC.md §18.5) under I/O faults: the nth write,
 * sync or metadata call of a training fails (EIO, then ENOSPC), for every n
 * until a training passes untouched. A failure before the rename leaves no
 * file, one at the directory sync a complete file the writer does not use;
 * no .tmp is left; the error names the file; the writer keeps compressing
 * with the dictionary it had, and everything verifies. */
START_TEST(test_train_faults)
{
    uint64_t seed = tu_seed("check_dict training under faults");
    char *dir = tu_tmpdir("dict-faults");
    const int errs[] = {EIO, ENOSPC};
    for (int e = 0; e < 2; e++) {
        char sub[32];
        snprintf(sub, sizeof sub, "log%d", e);
        char *ldir = tu_path(dir, sub);
        struct io *io = io_fault_create(io_posix_create());
        ck_assert_ptr_nonnull(io);
        stele_options o = opts_zstd();
        stele_log *log = NULL;
        OK(stele_open_io(ldir, &o, io, &log));
        append_events(log, seed, 0, 1000);
        uint64_t n = 1, lsn = 1000;
        int passed = 0, failures = 0, kept_files = 0;
        for (; n < 20 && !passed; n++) {
            uint32_t before_newest, after_newest;
            int before = dict_files(ldir, &before_newest);
            stele_stats st;
            OK(stele_stats_get(log, &st));
            uint32_t in_use = st.dict_in_use;
            io_fault_arm(io, IO_FAULT_WRITE | IO_FAULT_SYNC | IO_FAULT_META, n, errs[e], 0);
            stele_dict_options d;
            stele_dict_options_init(&d);
            d.dict_size_max = 8192;
            stele_dict_info info;
            int rc = stele_dict_train(log, &d, &info);
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", stele_errmsg());
            io_fault_arm(io, 0, 0, 0, 0);
            int after = dict_files(ldir, &after_newest);
            append_events(log, seed, lsn, lsn + 8);
            lsn += 8;
            OK(stele_stats_get(log, &st));
            if (rc == STELE_OK) {
                ck_assert_int_eq(after, before + 1);
                ck_assert_uint_eq(info.dict_id, after_newest);
                ck_assert_uint_eq(st.dict_in_use, info.dict_id);
                passed = n >= 6; /* unlink of a stray .tmp (call 1) may fail harmlessly */
                continue;
            }
            REQUIRE(rc == (errs[e] == EIO ? STELE_ERR_IO : STELE_ERR_NOSPACE), "n=%llu: %s: %s",
                    (unsigned long long)n, stele_strerror(rc), msg);
            REQUIRE(contains(msg, ".dict") || contains(msg, "sync directory"), "n=%llu: the error names no file: %s",
                    (unsigned long long)n, msg);
            REQUIRE(after == before || after == before + 1, "n=%llu: %d files, %d before", (unsigned long long)n,
                    after, before);
            ck_assert_uint_eq(st.dict_in_use, in_use); /* not handed to the writer */
            failures++;
            kept_files += after == before + 1;
        }
        REQUIRE(passed, "no training passed in %llu tries", (unsigned long long)n);
        /* open, write, its sync, rename fail with no file; the directory sync with one. */
        REQUIRE(failures >= 5 && kept_files == 1, "%d failed trainings, %d kept their file", failures, kept_files);
        ck_assert_uint_eq(check_events(log, seed), lsn);
        OK(stele_close(log));
        expect_verify_clean(ldir, lsn);
        free(ldir);
    }
    tu_rmrf(dir);
    free(dir);
}
END_TEST

static Suite *dict_suite(void)
{
    Suite *s = suite_create("dict");
    TCase *tc = tcase_create("dict");
    tcase_add_test(tc, test_dict_file_format);
    tcase_add_test(tc, test_train_errors);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_train_none_mode);
    tcase_add_test(tc, test_old_dict_stays_readable);
    tcase_add_test(tc, test_missing_dict);
    tcase_add_test(tc, test_missing_dict_active_segment);
    tcase_add_test(tc, test_damaged_dict);
    tcase_add_test(tc, test_flipped_compressed_body);
    tcase_add_test(tc, test_raw_size_lies);
    tcase_add_test(tc, test_auto_train);
    tcase_add_test(tc, test_train_faults);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(dict_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

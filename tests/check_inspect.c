/*
 * check_inspect.c - proves stele_segment_inspect (stele.h "inspection",
 * SPEC.md §17.3): it walks a segment file without a log handle and shows
 * every record exactly once, in LSN order, with its batch; it stops an
 * unsealed segment at the first position holding no valid batch and never
 * shows a byte of a batch that fails a check; a sealed segment that fails a
 * check is CORRUPT; it reports the durable watermark the batch headers carry.
 *
 * How:
 *  - a log with 64 KiB segments gets batches of 1 to 37 records (seeded
 *    sizes), then is closed; every segment is walked and the records seen
 *    must be 1..N with the keys written, offsets 8-aligned and increasing
 *    within a batch, sizes as SPEC.md §5 computes them; sealed segments end
 *    at their footer, the active one at "all zero";
 *  - corruption matrix on a copy of the active segment: every byte of its
 *    last batch frame is flipped in turn; each walk returns OK, shows exactly
 *    the batches before it, and names why it stopped; the same for every
 *    truncation on a 256-byte grid;
 *  - a flipped byte in a sealed segment's batch is CORRUPT naming the file;
 *    a damaged header is CORRUPT; no file is NOT_FOUND; the callback can stop
 *    the walk.
 * Randomness is seeded by tu_seed (STELE_TEST_SEED replays).
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stele.h"
#include "testutil.h"

#define SEGMENTS_MAX 64

/* What a walk showed. */
struct seen {
    uint64_t next_lsn;       /* the next record expected */
    uint64_t batches, records;
    uint64_t batch_first, batch_count;
    uint64_t batch_offset;   /* of the last batch shown */
    uint64_t last_offset;
    int in_batch_records;
    uint64_t stop_after;     /* stop when this many records were seen (0 = never) */
    char bad[256];           /* the first thing that was wrong */
};

static int on_item(void *ctx, const stele_batch_info *b, const stele_record *r, uint64_t off, uint64_t size)
{
    struct seen *s = ctx;
    if (s->bad[0])
        return 1;
    if (!r) {
        if (b->first_lsn != s->next_lsn || b->record_count == 0 || b->offset % 4096 != 0 || b->frame_size % 4096)
            snprintf(s->bad, sizeof s->bad, "batch at %llu: first LSN %llu, expected %llu",
                     (unsigned long long)b->offset, (unsigned long long)b->first_lsn,
                     (unsigned long long)s->next_lsn);
        s->batches++;
        s->batch_offset = b->offset;
        s->batch_first = b->first_lsn;
        s->batch_count = b->record_count;
        s->in_batch_records = 0;
        return 0;
    }
    char key[32];
    snprintf(key, sizeof key, "k-%llu", (unsigned long long)r->lsn);
    uint64_t want_size = 64 + r->type_size + r->stream_size + r->key_size + r->actor_size + r->payload_size;
    if (r->lsn != s->next_lsn || r->key_size != strlen(key) || memcmp(r->key, key, r->key_size) != 0 ||
        off % 8 != 0 || (s->in_batch_records && off <= s->last_offset) || size != want_size ||
        r->lsn >= s->batch_first + s->batch_count)
        snprintf(s->bad, sizeof s->bad, "record LSN %llu (expected %llu) at +%llu size %llu",
                 (unsigned long long)r->lsn, (unsigned long long)s->next_lsn, (unsigned long long)off,
                 (unsigned long long)size);
    s->in_batch_records = 1;
    s->last_offset = off;
    s->next_lsn++;
    s->records++;
    return s->stop_after && s->records >= s->stop_after;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The segment paths of dir in LSN order; returns their count. */
static size_t segments_of(const char *dir, char *paths[SEGMENTS_MAX])
{
    DIR *d = opendir(dir);
    REQUIRE(d, "opendir %s", dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len == 24 && strcmp(e->d_name + 20, ".seg") == 0) {
            REQUIRE(n < SEGMENTS_MAX, "too many segments");
            paths[n++] = tu_path(dir, e->d_name);
        }
    }
    closedir(d);
    qsort(paths, n, sizeof *paths, cmp_str);
    return n;
}

/* A log of 64 KiB segments holding *out_n records with keys k-<lsn>, closed. */
static char *make_log(uint64_t *out_n)
{
    char *dir = tu_tmpdir("inspect");
    uint64_t seed = tu_seed("check_inspect"), lsn = 0;
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.segment_size = 64 * 1024;
    o.payload_size_max = 4096;
    stele_log *log;
    OK(stele_open(dir, &o, &log));
    static char keys[1000][32];
    static const char payload[64] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde";
    _Static_assert(20 + 37 <= sizeof payload, "payload sizes fit");
    stele_event ev[40];
    stele_receipt rc[40];
    while (lsn < 700) {
        size_t count = 1 + tu_rand(&seed) % 37;
        for (size_t i = 0; i < count; i++) {
            snprintf(keys[lsn + i], sizeof keys[0], "k-%llu", (unsigned long long)(lsn + i + 1));
            ev[i] = (stele_event){.type = "t", .type_size = 1, .stream = "s", .stream_size = 1,
                                  .key = keys[lsn + i], .key_size = strlen(keys[lsn + i]),
                                  .payload = payload, .payload_size = 20 + i};
        }
        OK(stele_append_batch(log, ev, count, rc));
        lsn += count;
    }
    OK(stele_close(log));
    /* Whatever the seed, the active segment ends up with at least two
     * batches (the corruption matrix needs them): one more batch of one
     * record at a time until it has. */
    for (;;) {
        char *paths[SEGMENTS_MAX];
        size_t nseg = segments_of(dir, paths);
        stele_segment_info info;
        OK(stele_segment_inspect(paths[nseg - 1], NULL, NULL, &info));
        for (size_t i = 0; i < nseg; i++)
            free(paths[i]);
        if (info.batch_count >= 2 && !info.sealed)
            break;
        o.create = 0;
        OK(stele_open(dir, &o, &log));
        snprintf(keys[lsn], sizeof keys[0], "k-%llu", (unsigned long long)(lsn + 1));
        ev[0] = (stele_event){.type = "t", .type_size = 1, .stream = "s", .stream_size = 1, .key = keys[lsn],
                              .key_size = strlen(keys[lsn]), .payload = payload, .payload_size = 20};
        OK(stele_append_batch(log, ev, 1, rc));
        lsn++;
        OK(stele_close(log));
    }
    *out_n = lsn;
    return dir;
}

START_TEST(test_walk)
{
    uint64_t n;
    char *dir = make_log(&n), *paths[SEGMENTS_MAX];
    size_t count = segments_of(dir, paths);
    REQUIRE(count >= 3, "expected several segments, got %zu", count);
    struct seen s = {.next_lsn = 1};
    for (size_t i = 0; i < count; i++) {
        stele_segment_info info;
        OK(stele_segment_inspect(paths[i], on_item, &s, &info));
        REQUIRE(!s.bad[0], "%s: %s", paths[i], s.bad);
        ck_assert_uint_eq(info.seq, i + 1);
        ck_assert_uint_eq(info.last_lsn, s.next_lsn - 1);
        ck_assert_int_eq(info.sealed, i + 1 < count);
        if (info.sealed) {
            ck_assert_str_eq(info.stop_note, "footer");
            ck_assert_uint_eq(info.durable_lsn, info.last_lsn);
            ck_assert_uint_eq(info.durable_end, info.data_end);
            ck_assert_uint_eq(info.file_size, info.data_end + 4096);
        } else {
            /* A full active segment ends where its footer would go. */
            if (info.data_end + 4096 == 64 * 1024)
                ck_assert_str_eq(info.stop_note, "end of the batch area");
            else
                ck_assert_str_eq(info.stop_note, "all zero (end of written data)");
            ck_assert_uint_eq(info.file_size, 64 * 1024);
            REQUIRE(info.durable_end <= info.data_end && info.durable_lsn <= info.last_lsn, "durable past the end");
        }
        free(paths[i]);
    }
    ck_assert_uint_eq(s.records, n);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* Walks path (a damaged copy); the batches shown must be a prefix of the
 * original's, and nothing of a failed batch is shown. */
static void walk_damaged(const char *path, uint64_t first_lsn, uint64_t want_batches, const char *what)
{
    struct seen s = {.next_lsn = first_lsn};
    stele_segment_info info;
    int rc = stele_segment_inspect(path, on_item, &s, &info);
    REQUIRE(rc == STELE_OK, "%s: %s: %s", what, stele_strerror(rc), stele_errmsg());
    REQUIRE(!s.bad[0], "%s: %s", what, s.bad);
    REQUIRE(s.batches == info.batch_count && info.batch_count <= want_batches, "%s: %llu batches shown", what,
            (unsigned long long)s.batches);
    REQUIRE(info.stop_note[0] != '\0', "%s: no reason given for stopping", what);
}

START_TEST(test_active_corruption_matrix)
{
    uint64_t n;
    char *dir = make_log(&n), *paths[SEGMENTS_MAX];
    size_t count = segments_of(dir, paths);
    stele_segment_info info;
    OK(stele_segment_inspect(paths[count - 1], NULL, NULL, &info));
    REQUIRE(info.batch_count >= 2, "the active segment needs two batches");
    size_t size;
    uint8_t *orig = tu_read_file(paths[count - 1], &size);
    char *copy = tu_path(dir, "copy.seg");
    struct seen whole = {.next_lsn = info.first_lsn};
    OK(stele_segment_inspect(paths[count - 1], on_item, &whole, &info));
    uint64_t last_off = whole.batch_offset;
    REQUIRE(last_off >= 4096, "last batch not found");
    uint8_t *buf = malloc(size);
    for (uint64_t at = last_off; at < info.data_end; at++) {
        memcpy(buf, orig, size);
        buf[at] ^= 0xff;
        REQUIRE(tu_write_file(copy, buf, size) == 0, "write");
        char what[64];
        snprintf(what, sizeof what, "byte %llu flipped", (unsigned long long)at);
        walk_damaged(copy, info.first_lsn, info.batch_count - 1, what);
    }
    for (uint64_t cut = 0; cut < size; cut += 256) {
        REQUIRE(tu_write_file(copy, orig, cut) == 0, "write");
        char what[64];
        snprintf(what, sizeof what, "truncated at %llu", (unsigned long long)cut);
        if (cut < 4096) {
            stele_segment_info i3;
            int rc = stele_segment_inspect(copy, NULL, NULL, &i3);
            REQUIRE(rc == STELE_ERR_CORRUPT, "%s: %d", what, rc);
        } else {
            walk_damaged(copy, info.first_lsn, info.batch_count, what);
        }
    }
    free(buf);
    free(orig);
    free(copy);
    for (size_t i = 0; i < count; i++)
        free(paths[i]);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(test_sealed_and_errors)
{
    uint64_t n;
    char *dir = make_log(&n), *paths[SEGMENTS_MAX];
    size_t count = segments_of(dir, paths);
    size_t size;
    uint8_t *orig = tu_read_file(paths[0], &size);
    char *copy = tu_path(dir, "sealed-copy.seg");
    stele_segment_info info;
    /* A byte of the first batch's body. */
    orig[4096 + 64 + 10] ^= 0x01;
    REQUIRE(tu_write_file(copy, orig, size) == 0, "write");
    int rc = stele_segment_inspect(copy, NULL, NULL, &info);
    REQUIRE(rc == STELE_ERR_CORRUPT, "damaged sealed segment: %d", rc);
    REQUIRE(strstr(stele_errmsg(), "sealed-copy.seg") && strstr(stele_errmsg(), "offset"), "message: %s",
            stele_errmsg());
    ck_assert_int_eq(info.sealed, 1);
    ck_assert_uint_eq(info.batch_count, 0);
    /* A damaged header. */
    orig[4096 + 64 + 10] ^= 0x01;
    orig[20] ^= 0x01;
    REQUIRE(tu_write_file(copy, orig, size) == 0, "write");
    ck_assert_int_eq(stele_segment_inspect(copy, NULL, NULL, &info), STELE_ERR_CORRUPT);
    char *missing = tu_path(dir, "nosuch.seg");
    ck_assert_int_eq(stele_segment_inspect(missing, NULL, NULL, &info), STELE_ERR_NOT_FOUND);
    ck_assert_int_eq(stele_segment_inspect(NULL, NULL, NULL, &info), STELE_ERR_INVALID);
    /* The callback stops the walk. */
    struct seen s = {.next_lsn = 1, .stop_after = 3};
    OK(stele_segment_inspect(paths[0], on_item, &s, &info));
    ck_assert_uint_eq(s.records, 3);
    ck_assert_str_eq(info.stop_note, "stopped by the caller");
    free(missing);
    free(copy);
    free(orig);
    for (size_t i = 0; i < count; i++)
        free(paths[i]);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("inspect");
    TCase *tc = tcase_create("walk");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_walk);
    tcase_add_test(tc, test_active_corruption_matrix);
    tcase_add_test(tc, test_sealed_and_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/*
 * check_segidx.c - proves the per-segment read indexes (SPEC.md §19): they
 * are written when a segment is sealed, reads by LSN and by time use them
 * (and read only the batch they need), and an index file that is missing,
 * damaged or stale is never trusted: the table is rebuilt from the segment,
 * stats say so, results are identical, and only a writable handle writes the
 * file again.
 *
 * How:
 *  - A log of 64 KiB segments and 1-4 KiB payloads in batches of 1-3 records
 *    (seeded) spans many segments. After close every sealed segment has
 *    `<segment>.idx`, which decodes (format/segidx.c) and lists exactly the
 *    batches stele_segment_inspect walks, with their recorded times.
 *  - On a fresh read-only handle: stele_get at every LSN reads exactly its
 *    batch's frame (stats.read_bytes), loads each segment's index once and
 *    rebuilds none; an iterator from an LSN reads one frame for its first
 *    record; stele_lsn_at_time at every batch's time and around it equals a
 *    brute-force scan and reads no segment byte. Each of these fails if the
 *    index is ignored (a rebuild reads the whole segment) or wrong.
 *  - Missing, every byte flipped, truncated at every 8th offset, and a stale
 *    index (another segment's file in its place): rebuilt, counted, the note
 *    says why, every record of the segment identical; a read-only handle
 *    leaves the file as it is, a writable one rewrites it byte for byte as
 *    the seal wrote it.
 *  - An index that checks out but lies (an entry moved by a block, its
 *    checksum fixed up): the read finds no batch there, the table is
 *    rebuilt from the segment and the read answers right.
 *  - Faults (engine/io_fault.c on the index files' I/O, segidx_set_io): the
 *    1st, 2nd, ... call of a rewrite fails and every later one too, as in a
 *    crash (among them: between the temporary file's sync and its rename).
 *    Reads still succeed, the failure is counted and named, the log is not
 *    fenced; reopening removes the stray temporary file, rebuilds, rewrites
 *    the same file, and reads the same records.
 *  - A read-only handle on a log without index files rebuilds every table
 *    and creates no file in the directory.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "checksum.h"
#include "segidx.h"
#include "stele.h"
#include "testutil.h"

#define SEG_SIZE (64u * 1024u)
#define RECORDS 600
#define SEGS_MAX 256
#define BATCHES_MAX 1024

/* What the test log holds, gathered once per test from the files. */
struct batch {
    uint64_t offset, frame_size, first_lsn, record_count, recorded_at_ns;
};
struct seg {
    uint64_t first_lsn, last_lsn;
    char path[4200];
    struct batch *b;
    size_t nb;
};
struct fixture {
    char *base;
    char *dir;
    uint64_t last_lsn;
    struct seg segs[SEGS_MAX];
    size_t nseg;             /* sealed segments */
    uint64_t seed;
};

static size_t payload_of(uint64_t lsn, uint8_t *buf)
{
    uint64_t s = lsn * 0x9E3779B97F4A7C15ull + 1;
    size_t n = 1000 + (size_t)(tu_rand(&s) % 3000);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(tu_rand(&s) >> 56);
    return n;
}

static stele_options opts(int read_only)
{
    stele_options o;
    stele_options_init(&o);
    o.segment_size = SEG_SIZE;
    o.payload_size_max = 8192;
    o.io_backend = STELE_IO_POSIX;
    /* One batch per call, no sync until close: interval mode with an interval
     * longer than the test (none mode acknowledges on encoding, and its
     * background writer groups calls into batches, SPEC.md §11.1). */
    o.durability = STELE_DURABILITY_INTERVAL;
    o.sync_interval_ms = 60000;
    o.read_only = read_only;
    return o;
}

static stele_log *open_log(const char *dir, int read_only)
{
    stele_options o = opts(read_only);
    stele_log *log = NULL;
    int rc = stele_open(dir, &o, &log);
    REQUIRE(rc == STELE_OK, "open %s: %s", dir, stele_errmsg());
    return log;
}

static stele_stats stats_of(stele_log *log)
{
    stele_stats s;
    OK(stele_stats_get(log, &s));
    return s;
}

static int on_batch(void *ctx, const stele_batch_info *b, const stele_record *rec, uint64_t off, uint64_t size)
{
    (void)off, (void)size;
    struct seg *s = ctx;
    if (!rec) {
        ck_assert_uint_lt(s->nb, BATCHES_MAX);
        s->b[s->nb++] = (struct batch){b->offset, b->frame_size, b->first_lsn, b->record_count, 0};
    } else if (rec->lsn == s->b[s->nb - 1].first_lsn) {
        s->b[s->nb - 1].recorded_at_ns = rec->recorded_at_ns;
    }
    return 0;
}

/* Builds the log (seeded batches), closes it, and walks its sealed segments. */
static void fixture_make(struct fixture *f, const char *tag)
{
    memset(f, 0, sizeof *f);
    f->base = tu_tmpdir(tag);
    f->dir = tu_path(f->base, "log");
    f->seed = tu_seed(tag);
    stele_options o = opts(0);
    o.create = 1;
    stele_log *log = NULL;
    OK(stele_open(f->dir, &o, &log));
    static uint8_t buf[3][4096];
    uint64_t lsn = 1, s = f->seed;
    while (lsn <= RECORDS) {
        stele_event ev[3];
        stele_receipt rc[3];
        size_t n = 1 + (size_t)(tu_rand(&s) % 3);
        for (size_t i = 0; i < n; i++)
            ev[i] = (stele_event){.type = "t", .type_size = 1, .payload = buf[i],
                                  .payload_size = payload_of(lsn + i, buf[i])};
        OK(stele_append_batch(log, ev, n, rc));
        ck_assert_uint_eq(rc[0].lsn, lsn);
        lsn += n;
    }
    f->last_lsn = lsn - 1;
    OK(stele_close(log));
    DIR *d = opendir(f->dir);
    ck_assert_ptr_nonnull(d);
    uint64_t firsts[SEGS_MAX], first;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (fmt_segment_name_parse(e->d_name, &first)) {
            ck_assert_uint_lt(n, SEGS_MAX);
            firsts[n++] = first;
        }
    closedir(d);
    for (size_t i = 0; i < n; i++) /* sort */
        for (size_t j = i + 1; j < n; j++)
            if (firsts[j] < firsts[i]) {
                uint64_t t = firsts[i];
                firsts[i] = firsts[j];
                firsts[j] = t;
            }
    ck_assert_uint_ge(n, 8);
    f->nseg = n - 1; /* the last one is active */
    for (size_t i = 0; i < f->nseg; i++) {
        struct seg *sg = &f->segs[i];
        char name[32];
        fmt_segment_name(firsts[i], name, sizeof name);
        snprintf(sg->path, sizeof sg->path, "%s/%s", f->dir, name);
        sg->b = calloc(BATCHES_MAX, sizeof *sg->b);
        stele_segment_info info;
        OK(stele_segment_inspect(sg->path, on_batch, sg, &info));
        ck_assert_int_eq(info.sealed, 1);
        sg->first_lsn = info.first_lsn;
        sg->last_lsn = info.last_lsn;
        ck_assert_uint_ge(sg->nb, 2);
    }
}

static void fixture_free(struct fixture *f)
{
    for (size_t i = 0; i < f->nseg; i++)
        free(f->segs[i].b);
    tu_rmrf(f->base);
    free(f->dir);
    free(f->base);
}

static char *idx_of(const struct seg *s)
{
    size_t n = strlen(s->path) + 16;
    char *p = malloc(n);
    snprintf(p, n, "%s" STELE_SEGIDX_SUFFIX, s->path);
    return p;
}

static const struct batch *batch_of(const struct fixture *f, uint64_t lsn)
{
    for (size_t i = 0; i < f->nseg; i++)
        for (size_t j = 0; j < f->segs[i].nb; j++) {
            const struct batch *b = &f->segs[i].b[j];
            if (lsn >= b->first_lsn && lsn < b->first_lsn + b->record_count)
                return b;
        }
    return NULL;
}

/* stele_get(lsn) returns the payload appended at lsn. */
static void check_get(stele_log *log, uint64_t lsn)
{
    static uint8_t want[4096];
    size_t n = payload_of(lsn, want);
    stele_record *r = NULL;
    int rc = stele_get(log, lsn, &r);
    REQUIRE(rc == STELE_OK, "get %llu: %s", (unsigned long long)lsn, stele_errmsg());
    REQUIRE(r->lsn == lsn && r->payload_size == n && memcmp(r->payload, want, n) == 0, "LSN %llu differs",
            (unsigned long long)lsn);
    stele_record_free(r);
}

static void check_segment_reads(stele_log *log, const struct seg *s)
{
    for (uint64_t lsn = s->first_lsn; lsn <= s->last_lsn; lsn++)
        check_get(log, lsn);
}

/* ------------------------------------------------------------- tests */

START_TEST(test_written_at_seal)
{
    struct fixture f;
    fixture_make(&f, "segidx-seal");
    for (size_t i = 0; i < f.nseg; i++) {
        const struct seg *s = &f.segs[i];
        char *p = idx_of(s);
        size_t size;
        uint8_t *buf = tu_read_file(p, &size);
        REQUIRE(buf != NULL, "segment %s has no index file", s->path);
        struct fmt_segidx_header h;
        uint64_t bad = 0;
        ck_assert_int_eq(fmt_segidx_decode(buf, size, &h, &bad), FMT_OK);
        ck_assert_uint_eq(h.first_lsn, s->first_lsn);
        ck_assert_uint_eq(h.last_lsn, s->last_lsn);
        ck_assert_uint_eq(h.entry_count, s->nb);
        for (size_t j = 0; j < s->nb; j++) {
            struct fmt_segidx_entry e;
            fmt_segidx_entry_get(buf, j, &e);
            REQUIRE(e.first_lsn == s->b[j].first_lsn && e.offset == s->b[j].offset &&
                    e.recorded_at_ns == s->b[j].recorded_at_ns, "%s entry %zu differs from the batch", p, j);
        }
        free(buf);
        free(p);
    }
    /* The active segment has none (its table is in memory). */
    fixture_free(&f);
}
END_TEST

START_TEST(test_reads_use_index)
{
    struct fixture f;
    fixture_make(&f, "segidx-reads");
    stele_log *log = open_log(f.dir, 1);
    stele_stats s0 = stats_of(log);
    /* Every LSN of every sealed segment: exactly its batch's bytes. */
    for (size_t i = 0; i < f.nseg; i++)
        for (uint64_t lsn = f.segs[i].first_lsn; lsn <= f.segs[i].last_lsn; lsn++) {
            stele_stats a = stats_of(log);
            check_get(log, lsn);
            stele_stats b = stats_of(log);
            const struct batch *bt = batch_of(&f, lsn);
            REQUIRE(b.read_bytes - a.read_bytes == bt->frame_size && b.read_batches - a.read_batches == 1,
                    "get %llu read %llu bytes in %llu batches; its batch is %llu bytes", (unsigned long long)lsn,
                    (unsigned long long)(b.read_bytes - a.read_bytes),
                    (unsigned long long)(b.read_batches - a.read_batches), (unsigned long long)bt->frame_size);
        }
    stele_stats s1 = stats_of(log);
    ck_assert_uint_eq(s1.read_index_loaded - s0.read_index_loaded, f.nseg);
    ck_assert_uint_eq(s1.read_index_rebuilt, 0);
    ck_assert_uint_eq(s1.read_index_written, 0);
    stele_close(log);

    /* An iterator from the middle of a segment: one frame for its first record. */
    log = open_log(f.dir, 1);
    const struct seg *mid = &f.segs[f.nseg / 2];
    uint64_t from = mid->b[mid->nb / 2].first_lsn + mid->b[mid->nb / 2].record_count - 1;
    stele_stats a = stats_of(log);
    stele_iter *it;
    OK(stele_iter_open(log, from, &it));
    const stele_record *r;
    OK(stele_iter_next(it, 0, &r));
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->lsn, from);
    stele_stats b = stats_of(log);
    ck_assert_uint_eq(b.read_bytes - a.read_bytes, batch_of(&f, from)->frame_size);
    ck_assert_uint_eq(b.read_index_loaded - a.read_index_loaded, 1);
    stele_iter_close(it);

    /* By time: every batch's time, one ns before and after, before the
     * first and after the last, against a brute-force answer, reading no
     * segment byte once the indexes are loaded. */
    a = stats_of(log);
    for (size_t i = 0; i < f.nseg; i++)
        for (size_t j = 0; j < f.segs[i].nb; j++)
            for (int d = -1; d <= 1; d++) {
                uint64_t t = f.segs[i].b[j].recorded_at_ns + (uint64_t)(int64_t)d, want = 0, got;
                for (size_t k = 0; k < f.nseg && !want; k++)
                    for (size_t m = 0; m < f.segs[k].nb && !want; m++)
                        if (f.segs[k].b[m].recorded_at_ns >= t)
                            want = f.segs[k].b[m].first_lsn;
                for (uint64_t l = f.segs[f.nseg - 1].last_lsn + 1; l <= f.last_lsn && !want; l++) {
                    stele_record *rec; /* the active segment's records */
                    OK(stele_get(log, l, &rec));
                    if (rec->recorded_at_ns >= t)
                        want = l;
                    stele_record_free(rec);
                }
                if (!want)
                    want = f.last_lsn + 1;
                stele_stats g0 = stats_of(log);
                OK(stele_lsn_at_time(log, t, &got));
                stele_stats g1 = stats_of(log);
                REQUIRE(g1.read_bytes == g0.read_bytes, "lsn_at_time(%llu) read %llu segment bytes",
                        (unsigned long long)t, (unsigned long long)(g1.read_bytes - g0.read_bytes));
                REQUIRE(got == want, "lsn_at_time(%llu) = %llu, want %llu", (unsigned long long)t,
                        (unsigned long long)got, (unsigned long long)want);
            }
    b = stats_of(log);
    ck_assert_uint_eq(b.read_index_rebuilt, 0);
    uint64_t got;
    OK(stele_lsn_at_time(log, 0, &got));
    ck_assert_uint_eq(got, 1);
    OK(stele_lsn_at_time(log, UINT64_MAX, &got));
    ck_assert_uint_eq(got, f.last_lsn + 1);
    stele_close(log);
    fixture_free(&f);
}
END_TEST

/* The active segment's table is in memory: a writable handle answers by
 * time for records it just appended, and never for what is not visible. */
START_TEST(test_active_segment_in_memory)
{
    struct fixture f;
    fixture_make(&f, "segidx-active");
    stele_log *log = open_log(f.dir, 0);
    stele_record *last;
    OK(stele_get(log, f.last_lsn, &last));
    uint64_t t_last = last->recorded_at_ns;
    stele_record_free(last);
    stele_event ev = {.type = "t", .type_size = 1, .payload = "x", .payload_size = 1};
    stele_receipt rc;
    OK(stele_append(log, &ev, &rc));
    OK(stele_sync(log));
    stele_record *r;
    OK(stele_get(log, rc.lsn, &r));
    uint64_t got;
    OK(stele_lsn_at_time(log, r->recorded_at_ns, &got));
    ck_assert_uint_le(got, rc.lsn);
    OK(stele_lsn_at_time(log, r->recorded_at_ns + 1, &got));
    ck_assert_uint_eq(got, rc.lsn + 1);
    OK(stele_lsn_at_time(log, t_last + 1, &got));
    ck_assert_uint_eq(got, r->recorded_at_ns > t_last ? rc.lsn : f.last_lsn + 1);
    stele_record_free(r);
    OK(stele_close(log));
    fixture_free(&f);
}
END_TEST

/* Damages seg's index with fn, then: read-only rebuilds without writing,
 * writable rebuilds and rewrites the original bytes. note_has is what the
 * note must say. */
static void check_untrusted(struct fixture *f, size_t si, const uint8_t *orig, size_t orig_size,
                            const char *note_has, const char *what)
{
    const struct seg *s = &f->segs[si];
    char *p = idx_of(s);
    size_t before_size;
    uint8_t *before = tu_read_file(p, &before_size);
    for (int writable = 0; writable <= 1; writable++) {
        stele_log *log = open_log(f->dir, !writable);
        check_segment_reads(log, s);
        stele_stats st = stats_of(log);
        /* A writable open also checks the newest sealed segment's index (loaded). */
        REQUIRE(st.read_index_rebuilt == 1 && st.read_index_loaded == (uint64_t)writable, "%s: rebuilt %llu, loaded %llu", what,
                (unsigned long long)st.read_index_rebuilt, (unsigned long long)st.read_index_loaded);
        REQUIRE(strstr(st.read_index_note, note_has) != NULL, "%s: note '%s' does not say '%s'", what,
                st.read_index_note, note_has);
        REQUIRE(st.read_index_written == (uint64_t)writable && st.read_index_write_failures == 0,
                "%s: written %llu, failures %llu (writable %d)", what, (unsigned long long)st.read_index_written,
                (unsigned long long)st.read_index_write_failures, writable);
        OK(stele_close(log));
        size_t now_size;
        uint8_t *now = tu_read_file(p, &now_size);
        if (!writable)
            REQUIRE((now == NULL && before == NULL) ||
                    (now && before && now_size == before_size && memcmp(now, before, now_size) == 0),
                    "%s: a read-only handle changed %s", what, p);
        else
            REQUIRE(now && now_size == orig_size && memcmp(now, orig, orig_size) == 0,
                    "%s: the rewritten index differs from the one the seal wrote", what);
        free(now);
    }
    free(before);
    free(p);
}

START_TEST(test_untrusted_rebuilt)
{
    struct fixture f;
    fixture_make(&f, "segidx-untrusted");
    const size_t si = 2;
    char *p = idx_of(&f.segs[si]);
    size_t size;
    uint8_t *orig = tu_read_file(p, &size);
    ck_assert_ptr_nonnull(orig);
    uint8_t *bad = malloc(size);
    char what[96];

    ck_assert_int_eq(unlink(p), 0);
    check_untrusted(&f, si, orig, size, "missing", "missing");

    for (size_t i = 0; i < size; i++) {
        memcpy(bad, orig, size);
        bad[i] ^= (uint8_t)(1u << (i % 8));
        ck_assert_int_eq(tu_write_file(p, bad, size), 0);
        snprintf(what, sizeof what, "bit flip at byte %zu", i);
        check_untrusted(&f, si, orig, size, "damaged", what);
    }
    for (size_t cut = 0; cut < size; cut += 8) {
        ck_assert_int_eq(tu_write_file(p, orig, cut), 0);
        snprintf(what, sizeof what, "truncated to %zu bytes", cut);
        check_untrusted(&f, si, orig, size, "damaged", what);
    }
    /* Another segment's (valid) index in its place. */
    char *other = idx_of(&f.segs[si + 1]);
    size_t osize;
    uint8_t *obuf = tu_read_file(other, &osize);
    ck_assert_int_eq(tu_write_file(p, obuf, osize), 0);
    check_untrusted(&f, si, orig, size, "stale", "another segment's index");
    free(obuf);
    free(other);
    free(bad);
    free(orig);
    free(p);
    fixture_free(&f);
}
END_TEST

/* An index that checks out but lies (an entry moved one block, the checksum
 * fixed up): the read finds no batch there, the table is rebuilt from the
 * segment, the read answers right, and stats say so. */
START_TEST(test_tampered_index_distrusted)
{
    struct fixture f;
    fixture_make(&f, "segidx-tampered");
    size_t si = 3, j = 0;
    const struct seg *s = &f.segs[si];
    while (j + 2 < s->nb && s->b[j + 1].offset + STELE_BLOCK_SIZE >= s->b[j + 2].offset)
        j++;
    REQUIRE(j + 2 < s->nb, "no batch of segment %zu spans two blocks (seed %llu)", si, (unsigned long long)f.seed);
    char *p = idx_of(s);
    size_t size;
    uint8_t *buf = tu_read_file(p, &size);
    ck_assert_ptr_nonnull(buf);
    uint8_t *e = buf + STELE_SEGIDX_HEADER_SIZE + (j + 1) * STELE_SEGIDX_ENTRY_SIZE + 8;
    uint64_t off = s->b[j + 1].offset + STELE_BLOCK_SIZE;
    for (int i = 0; i < 8; i++)
        e[i] = (uint8_t)(off >> (8 * i));
    uint64_t ck = stele_checksum(buf + 8, size - 8, STELE_SEED_SEGIDX);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(ck >> (8 * i));
    struct fmt_segidx_header h;
    uint64_t bad;
    ck_assert_int_eq(fmt_segidx_decode(buf, size, &h, &bad), FMT_OK); /* it checks out */
    ck_assert_int_eq(tu_write_file(p, buf, size), 0);
    stele_log *log = open_log(f.dir, 1);
    check_get(log, s->b[j + 1].first_lsn);
    stele_stats st = stats_of(log);
    REQUIRE(st.read_index_loaded == 1 && st.read_index_rebuilt == 1, "loaded %llu rebuilt %llu",
            (unsigned long long)st.read_index_loaded, (unsigned long long)st.read_index_rebuilt);
    REQUIRE(strstr(st.read_index_note, "disagreed"), "note: %s", st.read_index_note);
    check_segment_reads(log, s);
    ck_assert_uint_eq(stats_of(log).read_index_rebuilt, 1);
    OK(stele_close(log));
    free(buf);
    free(p);
    fixture_free(&f);
}
END_TEST

START_TEST(test_read_only_never_writes)
{
    struct fixture f;
    fixture_make(&f, "segidx-ro");
    for (size_t i = 0; i < f.nseg; i++) {
        char *p = idx_of(&f.segs[i]);
        ck_assert_int_eq(unlink(p), 0);
        free(p);
    }
    stele_log *log = open_log(f.dir, 1);
    for (size_t i = 0; i < f.nseg; i++)
        check_segment_reads(log, &f.segs[i]);
    uint64_t got;
    OK(stele_lsn_at_time(log, f.segs[1].b[0].recorded_at_ns, &got));
    stele_stats st = stats_of(log);
    ck_assert_uint_eq(st.read_index_rebuilt, f.nseg);
    ck_assert_uint_eq(st.read_index_written, 0);
    OK(stele_close(log));
    DIR *d = opendir(f.dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        REQUIRE(!(n > 4 && (strcmp(e->d_name + n - 4, ".idx") == 0 || strcmp(e->d_name + n - 4, ".tmp") == 0)),
                "a read-only handle created %s", e->d_name);
    }
    closedir(d);
    fixture_free(&f);
}
END_TEST

START_TEST(test_fault_during_rewrite)
{
    struct fixture f;
    fixture_make(&f, "segidx-fault");
    const size_t si = 1;
    char *p = idx_of(&f.segs[si]);
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    size_t size;
    uint8_t *orig = tu_read_file(p, &size);
    ck_assert_ptr_nonnull(orig);
    int saw_tmp_left = 0;
    uint64_t nth;
    for (nth = 1; nth < 50; nth++) {
        char what[64];
        snprintf(what, sizeof what, "fault from call %llu", (unsigned long long)nth);
        unlink(p);
        stele_log *log = open_log(f.dir, 0);
        struct io *io = io_fault_create(io_posix_create());
        ck_assert_ptr_nonnull(io);
        segidx_set_io(log, io);
        io_fault_arm(io, IO_FAULT_META | IO_FAULT_WRITE | IO_FAULT_SYNC | IO_FAULT_READ, nth, EIO, 1);
        check_segment_reads(log, &f.segs[si]);
        int hit = io_fault_count(io, IO_FAULT_META) + io_fault_count(io, IO_FAULT_WRITE) +
                  io_fault_count(io, IO_FAULT_SYNC) + io_fault_count(io, IO_FAULT_READ) >= nth;
        stele_stats st = stats_of(log);
        ck_assert_int_eq(st.fenced, 0);
        ck_assert_uint_eq(st.read_index_rebuilt, 1);
        if (hit) {
            /* A failure on the loaded file's open is a missing index, and
             * the rewrite then fails too: either way one failure counted. */
            REQUIRE(st.read_index_write_failures == 1 && st.read_index_written == 0, "%s: written %llu failed %llu",
                    what, (unsigned long long)st.read_index_written,
                    (unsigned long long)st.read_index_write_failures);
            REQUIRE(strstr(st.read_index_note, "not written") && strstr(st.read_index_note, strerror(EIO)),
                    "%s: note '%s'", what, st.read_index_note);
        } else {
            ck_assert_uint_eq(st.read_index_written, 1);
        }
        /* The log's own I/O is untouched: appends still work. */
        stele_event ev = {.type = "t", .type_size = 1, .payload = "x", .payload_size = 1};
        stele_receipt rc;
        OK(stele_append(log, &ev, &rc));
        OK(stele_close(log));
        io->ops->destroy(io);
        saw_tmp_left |= access(tmp, F_OK) == 0 && access(p, F_OK) != 0;
        /* Reopen: the stray temporary file goes, the index comes back. */
        log = open_log(f.dir, 0);
        REQUIRE(access(tmp, F_OK) != 0, "%s: %s left after a writable open", what, tmp);
        check_segment_reads(log, &f.segs[si]);
        st = stats_of(log);
        ck_assert_uint_eq(st.read_index_loaded + st.read_index_rebuilt, 2); /* and the newest one's, at open */
        OK(stele_close(log));
        size_t now_size;
        uint8_t *now = tu_read_file(p, &now_size);
        REQUIRE(now && now_size == size && memcmp(now, orig, size) == 0, "%s: index differs after reopen", what);
        free(now);
        if (!hit)
            break;
    }
    REQUIRE(nth > 5 && nth < 50, "the fault loop ended after %llu runs", (unsigned long long)nth);
    REQUIRE(saw_tmp_left, "no run left the temporary file written but not renamed");
    free(orig);
    free(p);
    fixture_free(&f);
}
END_TEST

static Suite *segidx_suite(void)
{
    Suite *s = suite_create("segidx");
    TCase *tc = tcase_create("segidx");
    tcase_add_test(tc, test_written_at_seal);
    tcase_add_test(tc, test_reads_use_index);
    tcase_add_test(tc, test_active_segment_in_memory);
    tcase_add_test(tc, test_untrusted_rebuilt);
    tcase_add_test(tc, test_tampered_index_distrusted);
    tcase_add_test(tc, test_read_only_never_writes);
    tcase_add_test(tc, test_fault_during_rewrite);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(segidx_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

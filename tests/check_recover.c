/*
 * check_recover.c - what recovery keeps, what it cuts, and what it refuses
 * (SPEC.md §10, RELIABILITY S3, S4, S18-S22).
 *
 * How: logs are written through the public API, then their files are
 * damaged the way crashes and disks damage them, and reopened.
 *  - A torn tail: the last batches were written with durability `none`
 *    (never synced, so never known durable); the active segment is cut at
 *    every byte offset of its last two batches (the rest zeroed, as an
 *    unwritten preallocated region reads) and, at a stride, overwritten with
 *    garbage. Recovery must keep exactly the batches wholly before the cut,
 *    read them back byte for byte, count what it cut, accept new appends and
 *    leave a log that verify passes.
 *  - Damage to durable bytes: in sync mode a later batch records the damaged
 *    one as durable; open must fail with STELE_ERR_CORRUPT naming the file and
 *    offset, and change nothing.
 *  - Sealed segments: a flipped bit anywhere makes verify fail and either the
 *    open or the read of the affected records fail.
 *  - Missing, truncated and foreign segments; interrupted seals; stray files.
 * Scratch logs live in /dev/shm when it exists: the sweeps reopen logs
 * thousands of times, and fsync there is free.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "endian.h"
#include "internal.h"
#include "testutil.h"

#define SEG_SIZE (64u * 1024u)
#define SEG1 "00000000000000000001.seg"

static char *scratch(const char *tag)
{
    if (access("/dev/shm", W_OK) == 0)
        setenv("STELE_TEST_TMP", "/dev/shm", 1);
    char *d = tu_tmpdir(tag);
    ck_assert_ptr_nonnull(d);
    return d;
}

/* The payload of record lsn: deterministic, of varying length. */
static size_t payload_of(uint64_t lsn, char *dst, size_t cap)
{
    size_t n = 10 + (size_t)(lsn * 37 % 700);
    ck_assert_uint_le(n, cap);
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)('a' + (lsn * 7 + i) % 26);
    return n;
}

static stele_log *open_log(const char *dir, stele_durability d, int create)
{
    stele_options o;
    stele_options_init(&o);
    o.create = create;
    o.segment_size = SEG_SIZE;
    o.payload_size_max = 16384;
    o.durability = d;
    /* Interval mode for one batch per call and no sync until close: the
     * interval is longer than any test (none mode groups calls, SPEC.md §11.1). */
    o.sync_interval_ms = 60000;
    o.io_backend = STELE_IO_POSIX;
    stele_log *log = NULL;
    int rc = stele_open(dir, &o, &log);
    ck_assert_msg(rc == STELE_OK, "open %s: %s: %s", dir, stele_strerror(rc), stele_errmsg());
    return log;
}

static int try_open(const char *dir, int read_only)
{
    stele_options o;
    stele_options_init(&o);
    o.read_only = read_only;
    o.io_backend = STELE_IO_POSIX;
    stele_log *log = NULL;
    int rc = stele_open(dir, &o, &log);
    if (rc == STELE_OK)
        ck_assert_int_eq(stele_close(log), STELE_OK);
    return rc;
}

/* Appends `batches` calls of `per` keyed records each, LSNs continuing from first. */
static void append_batches(stele_log *log, uint64_t first, int batches, int per)
{
    stele_event ev[16];
    stele_receipt rc[16];
    char keys[16][32];
    char payloads[16][1024];
    uint64_t lsn = first;
    for (int b = 0; b < batches; b++) {
        for (int i = 0; i < per; i++, lsn++) {
            memset(&ev[i], 0, sizeof ev[i]);
            snprintf(keys[i], sizeof keys[i], "key-%llu", (unsigned long long)lsn);
            ev[i].key = keys[i];
            ev[i].key_size = strlen(keys[i]);
            ev[i].type = "test.event";
            ev[i].type_size = 10;
            ev[i].payload_size = payload_of(lsn, payloads[i], sizeof payloads[i]);
            ev[i].payload = payloads[i];
            ev[i].content = STELE_CONTENT_TEXT;
        }
        int code = stele_append_batch(log, ev, (size_t)per, rc);
        ck_assert_msg(code == STELE_OK, "append: %s", stele_errmsg());
        for (int i = 0; i < per; i++)
            ck_assert_uint_eq(rc[i].lsn, lsn - (uint64_t)per + (uint64_t)i);
    }
}

/* Every record 1..last reads back exactly as appended. */
static void check_records(stele_log *log, uint64_t last)
{
    stele_stats s;
    ck_assert_int_eq(stele_stats_get(log, &s), STELE_OK);
    ck_assert_uint_eq(s.last_lsn, last);
    for (uint64_t lsn = 1; lsn <= last; lsn++) {
        stele_record *r;
        int code = stele_get(log, lsn, &r);
        ck_assert_msg(code == STELE_OK, "get %llu: %s", (unsigned long long)lsn, stele_errmsg());
        char want[1024];
        size_t n = payload_of(lsn, want, sizeof want);
        ck_assert_uint_eq(r->payload_size, n);
        ck_assert_mem_eq(r->payload, want, n);
        char key[32];
        snprintf(key, sizeof key, "key-%llu", (unsigned long long)lsn);
        ck_assert_uint_eq(r->key_size, strlen(key));
        ck_assert_mem_eq(r->key, key, r->key_size);
        stele_record_free(r);
    }
}

static uint64_t verify_records(const char *dir)
{
    stele_verify_report rep;
    int code = stele_verify(dir, NULL, NULL, &rep);
    ck_assert_msg(code == STELE_OK, "verify %s: %s", dir, stele_errmsg());
    ck_assert_uint_eq(rep.problems, 0);
    return rep.records;
}

/* Writes img into dir/name keeping the given mode. */
static void put_file(const char *dir, const char *name, const uint8_t *img, size_t size, mode_t mode)
{
    char *p = tu_path(dir, name);
    ck_assert_int_eq(tu_write_file(p, img, size), 0);
    ck_assert_int_eq(chmod(p, mode), 0);
    free(p);
}

static uint8_t *get_file(const char *dir, const char *name, size_t *size)
{
    char *p = tu_path(dir, name);
    uint8_t *img = tu_read_file(p, size);
    ck_assert_ptr_nonnull(img);
    free(p);
    return img;
}

/* Batch frame offsets of a single-segment image: walks the headers' sizes. */
static int frame_offsets(const uint8_t *img, size_t size, uint64_t *offs, uint64_t *stored_end, int max)
{
    int n = 0;
    uint64_t off = STELE_SEGMENT_HEADER_SIZE;
    while (off + STELE_BATCH_HEADER_SIZE <= size && n < max && !fmt_is_zero(img + off, STELE_BATCH_HEADER_SIZE)) {
        uint32_t stored = le32_load(img + off + 48);
        offs[n] = off;
        stored_end[n] = off + STELE_BATCH_HEADER_SIZE + stored;
        n++;
        off += fmt_batch_frame_size(stored);
    }
    offs[n] = off;
    return n;
}

/* One torn-tail case: image with [cut, end) replaced, reopened and checked. */
static void torn_case(const char *base, const uint8_t *meta, size_t meta_size, const uint8_t *img, size_t size,
                      uint64_t cut, int garbage, uint64_t expect_last, uint64_t *rng)
{
    char *dir = tu_path(base, "case");
    tu_rmrf(dir);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    uint8_t *copy = malloc(size);
    memcpy(copy, img, size);
    for (uint64_t i = cut; i < size; i++)
        copy[i] = garbage && i < cut + 4096 ? (uint8_t)(img[i] ^ (1 + tu_rand(rng) % 255)) : 0;
    put_file(dir, "stele.meta", meta, meta_size, 0644);
    put_file(dir, SEG1, copy, size, 0644);
    stele_log *log = open_log(dir, STELE_DURABILITY_SYNC, 0);
    if (getenv("DEBUG_TORN"))
        fprintf(stderr, "cut %llu garbage %d expect %llu\n", (unsigned long long)cut, garbage, (unsigned long long)expect_last);
    check_records(log, expect_last);
    stele_stats s;
    ck_assert_int_eq(stele_stats_get(log, &s), STELE_OK);
    int had_tail = 0;
    for (uint64_t i = cut; i < size; i++)
        had_tail |= copy[i] != 0;
    if (had_tail)
        ck_assert_uint_gt(s.recovery_torn_bytes, 0);
    append_batches(log, expect_last + 1, 1, 1);
    ck_assert_int_eq(stele_close(log), STELE_OK);
    ck_assert_uint_eq(verify_records(dir), expect_last + 1);
    free(copy);
    tu_rmrf(dir);
    free(dir);
}

START_TEST(torn_tail_every_offset)
{
    char *base = scratch("torn");
    char *dir = tu_path(base, "log");
    stele_log *log = open_log(dir, STELE_DURABILITY_INTERVAL, 1);
    append_batches(log, 1, 10, 3);
    ck_assert_int_eq(stele_close(log), STELE_OK);
    size_t meta_size, size;
    uint8_t *meta = get_file(dir, "stele.meta", &meta_size);
    uint8_t *img = get_file(dir, SEG1, &size);
    uint64_t offs[16], stored_end[16];
    int n = frame_offsets(img, size, offs, stored_end, 15);
    ck_assert_int_eq(n, 10);
    uint64_t rng = tu_seed("torn_tail_every_offset");
    for (uint64_t cut = offs[n - 2]; cut <= offs[n]; cut++) {
        /* Zeroed from cut: a batch survives when its stored bytes all do
         * (zero padding, in the frame or a record's tail, was zero anyway). */
        uint64_t keep = 0;
        for (int b = 0; b < n; b++)
            keep += stored_end[b] <= cut || fmt_is_zero(img + cut, stored_end[b] - cut) ? 3 : 0;
        torn_case(base, meta, meta_size, img, size, cut, 0, keep, &rng);
        if (cut % 7 != 0)
            continue;
        /* Garbage from cut (every byte changed): a batch survives only when
         * its whole frame does. */
        keep = 0;
        for (int b = 0; b < n; b++)
            keep += offs[b + 1] <= cut ? 3 : 0;
        torn_case(base, meta, meta_size, img, size, cut, 1, keep, &rng);
    }
    free(meta);
    free(img);
    tu_rmrf(base);
    free(dir);
    free(base);
}
END_TEST

/* A log of `batches` single-record batches written in sync mode. */
static char *sync_log(const char *base, int batches)
{
    char *dir = tu_path(base, "log");
    stele_log *log = open_log(dir, STELE_DURABILITY_SYNC, 1);
    append_batches(log, 1, batches, 1);
    ck_assert_int_eq(stele_close(log), STELE_OK);
    return dir;
}

START_TEST(durable_damage_is_refused)
{
    char *base = scratch("durable");
    char *dir = sync_log(base, 10);
    size_t size;
    uint8_t *img = get_file(dir, SEG1, &size);
    uint64_t offs[16], stored_end[16];
    int n = frame_offsets(img, size, offs, stored_end, 15);
    ck_assert_int_eq(n, 10);
    for (int b = 0; b < n; b++) {
        const uint64_t where[] = {offs[b], offs[b] + 8, offs[b] + 20, offs[b] + 40, offs[b] + 64,
                                  (offs[b] + stored_end[b]) / 2, stored_end[b] - 1, stored_end[b] + 1};
        for (size_t w = 0; w < sizeof where / sizeof where[0]; w++) {
            uint8_t *copy = malloc(size);
            memcpy(copy, img, size);
            copy[where[w]] ^= 0x10;
            put_file(dir, SEG1, copy, size, 0644);
            int rc = try_open(dir, 0);
            if (b < n - 1) {
                /* A later batch records this one as durable: corruption. */
                ck_assert_msg(rc == STELE_ERR_CORRUPT, "batch %d byte %llu: open gave %s", b,
                              (unsigned long long)where[w], stele_strerror(rc));
                ck_assert_ptr_nonnull(strstr(stele_errmsg(), SEG1));
                ck_assert_ptr_nonnull(strstr(stele_errmsg(), "offset"));
                ck_assert_int_eq(try_open(dir, 1), STELE_ERR_CORRUPT);
                ck_assert_int_eq(stele_verify(dir, NULL, NULL, NULL), STELE_ERR_CORRUPT);
                size_t after_size;
                uint8_t *after = get_file(dir, SEG1, &after_size);
                ck_assert_uint_eq(after_size, size);
                ck_assert_mem_eq(after, copy, size); /* nothing was cut or "repaired" */
                free(after);
            } else {
                /* The documented limit (SPEC.md §11): damage to the last
                 * batch, which no later batch vouches for, looks exactly like
                 * a torn write and is cut. */
                ck_assert_int_eq(rc, STELE_OK);
            }
            free(copy);
        }
    }
    free(img);
    tu_rmrf(base);
    free(dir);
    free(base);
}
END_TEST

/* Flip one bit of the first (sealed) segment at byte i; expect detection. */
static void sealed_flip(const char *dir, const uint8_t *img, size_t size, size_t i, uint64_t seg1_last)
{
    uint8_t *copy = malloc(size);
    memcpy(copy, img, size);
    copy[i] ^= (uint8_t)(1u << (i % 8));
    put_file(dir, SEG1, copy, size, 0444);
    stele_verify_report rep;
    ck_assert_int_eq(stele_verify(dir, NULL, NULL, &rep), STELE_ERR_CORRUPT);
    ck_assert_uint_ge(rep.problems, 1);
    stele_options o;
    stele_options_init(&o);
    o.read_only = 1;
    stele_log *log = NULL;
    int rc = stele_open(dir, &o, &log);
    if (rc == STELE_OK) {
        int failed = 0;
        for (uint64_t lsn = 1; lsn <= seg1_last && !failed; lsn++) {
            stele_record *r = NULL;
            int g = stele_get(log, lsn, &r);
            if (g != STELE_OK) {
                ck_assert_int_eq(g, STELE_ERR_CORRUPT);
                failed = 1;
            }
            stele_record_free(r);
        }
        ck_assert_msg(failed, "flip at byte %zu of a sealed segment went unnoticed by reads", i);
        stele_close(log);
    } else {
        ck_assert_int_eq(rc, STELE_ERR_CORRUPT);
    }
    free(copy);
}

/* A closed log in dir whose first segment is sealed (20 batches of 2). */
static void make_sealed_log(const char *dir)
{
    stele_log *log = open_log(dir, STELE_DURABILITY_SYNC, 1);
    append_batches(log, 1, 20, 2);
    stele_stats s;
    ck_assert_int_eq(stele_stats_get(log, &s), STELE_OK);
    ck_assert_uint_ge(s.sealed_segment_count, 1);
    ck_assert_int_eq(stele_close(log), STELE_OK);
}

START_TEST(sealed_bit_flips_are_detected)
{
    char *base = scratch("sealed");
    char *dir = tu_path(base, "log");
    make_sealed_log(dir);
    size_t size;
    uint8_t *img = get_file(dir, SEG1, &size);
    uint64_t seg1_last = le64_load(img + size - STELE_FOOTER_SIZE + 16);
    /* Every byte of the header block, the first batch and the footer block;
     * a stride through the rest. */
    for (size_t i = 0; i < size; i += (i < 2 * STELE_BLOCK_SIZE || i >= size - STELE_FOOTER_SIZE) ? 1 : 13)
        sealed_flip(dir, img, size, i, seg1_last);
    free(img);
    tu_rmrf(base);
    free(dir);
    free(base);
}
END_TEST

/* Every single-bit flip of a sealed segment (RELIABILITY G5), all
 * 8 x 65,536 of them by default, then random bursts and every truncation: each is made in place in the file and
 * undone after stele_verify, which must report the segment corrupt. A flip
 * anywhere (header, batch headers and bodies, the zero padding of frames and
 * of the space before the footer, the footer) is caught: by a checksum, the
 * hash chain, the footer's hash of the whole file, or the rule that unused
 * bytes are zero. STELE_BITFLIP_STRIDE=N flips only every Nth byte's bits
 * and cuts to every Nth length (the sanitizer pass uses it to stay within
 * CI's time). */
START_TEST(sealed_every_bit_flip)
{
    char *base = scratch("bits");
    char *dir = tu_path(base, "log");
    make_sealed_log(dir);
    ck_assert_int_eq(stele_verify(dir, NULL, NULL, NULL), STELE_OK);
    char *path = tu_path(dir, SEG1);
    ck_assert_int_eq(chmod(path, 0644), 0);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_uint_eq((uint64_t)st.st_size, SEG_SIZE);
    const char *env = getenv("STELE_BITFLIP_STRIDE");
    size_t stride = env && atoi(env) > 0 ? (size_t)atoi(env) : 1;
    uint64_t flips = 0;
    for (size_t i = 0; i < (size_t)st.st_size; i += stride) {
        uint8_t orig;
        ck_assert_int_eq(pread(fd, &orig, 1, (off_t)i), 1);
        for (int bit = 0; bit < 8; bit++) {
            uint8_t b = (uint8_t)(orig ^ (1u << bit));
            ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)i), 1);
            stele_verify_report rep;
            int rc = stele_verify(dir, NULL, NULL, &rep);
            ck_assert_msg(rc == STELE_ERR_CORRUPT && rep.problems >= 1,
                          "flip of bit %d at byte %zu of a sealed segment: verify returned %d with %llu problems",
                          bit, i, rc, (unsigned long long)rep.problems);
            flips++;
        }
        ck_assert_int_eq(pwrite(fd, &orig, 1, (off_t)i), 1);
    }
    ck_assert_int_eq(stele_verify(dir, NULL, NULL, NULL), STELE_OK);
    /* Random bursts: 2-64 consecutive bytes, each XORed with a random
     * non-zero value, at random offsets (seeded; the seed is printed). */
    uint64_t rng = tu_seed("sealed_every_bit_flip bursts");
    uint8_t saved[64];
    int bursts = 2000;
    for (int k = 0; k < bursts; k++) {
        size_t len = 2 + (size_t)(tu_rand(&rng) % 63);
        size_t at = (size_t)(tu_rand(&rng) % ((uint64_t)st.st_size - len + 1));
        ck_assert_int_eq(pread(fd, saved, len, (off_t)at), (ssize_t)len);
        uint8_t burst[64];
        for (size_t j = 0; j < len; j++)
            burst[j] = (uint8_t)(saved[j] ^ (1 + tu_rand(&rng) % 255));
        ck_assert_int_eq(pwrite(fd, burst, len, (off_t)at), (ssize_t)len);
        stele_verify_report rep;
        int rc = stele_verify(dir, NULL, NULL, &rep);
        ck_assert_msg(rc == STELE_ERR_CORRUPT && rep.problems >= 1,
                      "a burst of %zu bytes at byte %zu of a sealed segment: verify returned %d", len, at, rc);
        ck_assert_int_eq(pwrite(fd, saved, len, (off_t)at), (ssize_t)len);
    }
    /* Every truncation of the sealed segment, from one byte short down to
     * empty (S19): never a torn tail to cut, always CORRUPT. Both verify and
     * a read-only open, which must not "repair" anything. */
    uint8_t *whole = malloc((size_t)st.st_size);
    ck_assert_ptr_nonnull(whole);
    ck_assert_int_eq(pread(fd, whole, (size_t)st.st_size, 0), st.st_size);
    uint64_t cuts = 0;
    for (off_t n = st.st_size - 1; n >= 0; n -= (off_t)stride) {
        ck_assert_int_eq(ftruncate(fd, n), 0);
        stele_verify_report rep;
        int rc = stele_verify(dir, NULL, NULL, &rep);
        ck_assert_msg(rc == STELE_ERR_CORRUPT && rep.problems >= 1,
                      "sealed segment cut to %lld bytes: verify returned %d", (long long)n, rc);
        if (n % 4096 == 0 || n % 4096 == 4095) {
            stele_options o;
            stele_options_init(&o);
            o.read_only = 1;
            stele_log *ro = NULL;
            rc = stele_open(dir, &o, &ro);
            ck_assert_msg(rc == STELE_ERR_CORRUPT, "sealed segment cut to %lld bytes: open returned %d",
                          (long long)n, rc);
            ck_assert_int_eq(fstat(fd, &st), 0);
            ck_assert_int_eq(st.st_size, n); /* nothing was cut or grown */
        }
        cuts++;
    }
    ck_assert_int_eq(pwrite(fd, whole, SEG_SIZE, 0), SEG_SIZE);
    free(whole);
    ck_assert_int_eq(close(fd), 0);
    ck_assert_int_eq(stele_verify(dir, NULL, NULL, NULL), STELE_OK);
    printf("check_recover: %llu single-bit flips of a %u-byte sealed segment (every %zu byte%s), %d random "
           "bursts and %llu truncations of it, all detected\n",
           (unsigned long long)flips, SEG_SIZE, stride, stride == 1 ? "" : "s", bursts, (unsigned long long)cuts);
    free(path);
    tu_rmrf(base);
    free(dir);
    free(base);
}
END_TEST

START_TEST(missing_truncated_foreign_segments)
{
    char *base = scratch("segs");
    char *dir = tu_path(base, "log");
    stele_log *log = open_log(dir, STELE_DURABILITY_SYNC, 1);
    append_batches(log, 1, 60, 1);
    ck_assert_int_eq(stele_close(log), STELE_OK);
    char *copy = tu_path(base, "copy");
    /* A missing middle segment. */
    ck_assert_int_eq(tu_copy_dir(dir, copy), 0);
    char *seg1 = tu_path(copy, SEG1);
    size_t size;
    uint8_t *img = tu_read_file(seg1, &size);
    uint64_t second = le64_load(img + size - STELE_FOOTER_SIZE + 16) + 1;
    char name[32];
    fmt_segment_name(second, name, sizeof name);
    char *seg2 = tu_path(copy, name);
    ck_assert_int_eq(unlink(seg2), 0);
    ck_assert_int_eq(try_open(copy, 0), STELE_ERR_CORRUPT);
    ck_assert_int_eq(stele_verify(copy, NULL, NULL, NULL), STELE_ERR_CORRUPT);
    tu_rmrf(copy);
    /* A sealed segment cut short (by a block, and by one byte). */
    for (size_t cut = 1; cut <= STELE_BLOCK_SIZE; cut += STELE_BLOCK_SIZE - 1) {
        ck_assert_int_eq(tu_copy_dir(dir, copy), 0);
        put_file(copy, SEG1, img, size - cut, 0444);
        ck_assert_int_eq(try_open(copy, 0), STELE_ERR_CORRUPT);
        ck_assert_int_eq(stele_verify(copy, NULL, NULL, NULL), STELE_ERR_CORRUPT);
        tu_rmrf(copy);
    }
    /* A segment from another log with the same name. */
    char *other = tu_path(base, "other");
    log = open_log(other, STELE_DURABILITY_SYNC, 1);
    append_batches(log, 1, 60, 1);
    ck_assert_int_eq(stele_close(log), STELE_OK);
    ck_assert_int_eq(tu_copy_dir(dir, copy), 0);
    size_t osize;
    char *oseg = tu_path(other, name);
    uint8_t *oimg = tu_read_file(oseg, &osize);
    put_file(copy, name, oimg, osize, 0444);
    ck_assert_int_eq(try_open(copy, 0), STELE_ERR_CORRUPT);
    ck_assert_int_eq(stele_verify(copy, NULL, NULL, NULL), STELE_ERR_CORRUPT);
    tu_rmrf(copy);
    free(oimg);
    free(oseg);
    free(other);
    free(img);
    free(seg1);
    free(seg2);
    free(copy);
    tu_rmrf(base);
    free(dir);
    free(base);
}
END_TEST

START_TEST(interrupted_seal_and_stray_files)
{
    char *base = scratch("seal");
    char *dir = tu_path(base, "log");
    stele_log *log = open_log(dir, STELE_DURABILITY_SYNC, 1);
    append_batches(log, 1, 13, 1); /* 13 one-block frames */
    append_batches(log, 14, 1, 16); /* a multi-block frame does not fit: roll */
    ck_assert_int_eq(stele_close(log), STELE_OK);
    /* Crash after the footer was written but before the file was cut and
     * made read-only: the sealed segment, padded back to full size, is the
     * last one, and the segment after it was never created. */
    size_t size;
    uint8_t *img = get_file(dir, SEG1, &size);
    ck_assert_uint_lt(size, SEG_SIZE);
    uint8_t *full = calloc(1, SEG_SIZE);
    memcpy(full, img, size);
    char *seg1 = tu_path(dir, SEG1);
    char name[32];
    fmt_segment_name(14, name, sizeof name);
    char *seg2 = tu_path(dir, name);
    ck_assert_int_eq(unlink(seg2), 0);
    put_file(dir, SEG1, full, SEG_SIZE, 0644);
    /* And a half-created next segment. */
    char *tmp = tu_path(dir, "00000000000000000014.seg.tmp");
    ck_assert_int_eq(tu_write_file(tmp, "partial", 7), 0);
    log = open_log(dir, STELE_DURABILITY_SYNC, 0);
    stele_stats s;
    ck_assert_int_eq(stele_stats_get(log, &s), STELE_OK);
    ck_assert_uint_eq(s.last_lsn, 13);
    ck_assert_uint_eq(s.recovery_stray_files, 1);
    ck_assert_int_eq(access(tmp, F_OK), -1);
    struct stat st;
    ck_assert_int_eq(stat(seg1, &st), 0);
    ck_assert_uint_eq((uint64_t)st.st_size, size); /* the seal was finished */
    ck_assert_uint_eq(st.st_mode & 0777, 0444);
    append_batches(log, 14, 3, 1);
    check_records(log, 16);
    ck_assert_int_eq(stele_close(log), STELE_OK);
    ck_assert_uint_eq(verify_records(dir), 16);
    free(img);
    free(full);
    free(seg1);
    free(seg2);
    free(tmp);
    tu_rmrf(base);
    free(dir);
    free(base);
}
END_TEST

START_TEST(reopen_keeps_everything_and_recovery_is_idempotent)
{
    char *base = scratch("reopen");
    char *dir = tu_path(base, "log");
    stele_log *log = open_log(dir, STELE_DURABILITY_INTERVAL, 1);
    append_batches(log, 1, 40, 2);
    ck_assert_int_eq(stele_close(log), STELE_OK);
    for (int round = 0; round < 3; round++) {
        log = open_log(dir, STELE_DURABILITY_INTERVAL, 0);
        check_records(log, 80);
        stele_stats s;
        ck_assert_int_eq(stele_stats_get(log, &s), STELE_OK);
        ck_assert_uint_eq(s.recovery_torn_bytes, 0);
        ck_assert_int_eq(stele_close(log), STELE_OK);
    }
    ck_assert_uint_eq(verify_records(dir), 80);
    tu_rmrf(base);
    free(dir);
    free(base);
}
END_TEST

START_TEST(active_segment_cut_short_is_corrupt)
{
    /* An active segment is created at its full size; one that is shorter
     * and has no footer was cut by something other than a crash. */
    char *base = scratch("short");
    char *dir = sync_log(base, 5);
    size_t size;
    uint8_t *img = get_file(dir, SEG1, &size);
    ck_assert_uint_eq(size, SEG_SIZE);
    put_file(dir, SEG1, img, size - STELE_BLOCK_SIZE, 0644);
    ck_assert_int_eq(try_open(dir, 0), STELE_ERR_CORRUPT);
    ck_assert_ptr_nonnull(strstr(stele_errmsg(), "truncated"));
    ck_assert_int_eq(try_open(dir, 1), STELE_ERR_CORRUPT);
    free(img);
    tu_rmrf(base);
    free(dir);
    free(base);
}
END_TEST

START_TEST(many_segments_within_fd_limit)
{
    /* Sealed segments keep no fd unless in use or recently used, so a log
     * with far more segments than the process may open files stays usable:
     * 300 segments under a limit of 128 descriptors. */
    struct rlimit rl = {128, 128};
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    char *base = scratch("fds");
    char *dir = tu_path(base, "log");
    stele_log *log = open_log(dir, STELE_DURABILITY_INTERVAL, 1);
    append_batches(log, 1, 300 * 14, 1);
    stele_stats s;
    ck_assert_int_eq(stele_stats_get(log, &s), STELE_OK);
    ck_assert_uint_ge(s.segment_count, 300);
    check_records(log, 300 * 14);
    ck_assert_int_eq(stele_close(log), STELE_OK);
    log = open_log(dir, STELE_DURABILITY_INTERVAL, 0);
    check_records(log, 300 * 14);
    ck_assert_int_eq(stele_close(log), STELE_OK);
    ck_assert_uint_eq(verify_records(dir), 300 * 14);
    tu_rmrf(base);
    free(dir);
    free(base);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("recover");
    TCase *tc = tcase_create("recover");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, torn_tail_every_offset);
    tcase_add_test(tc, durable_damage_is_refused);
    tcase_add_test(tc, sealed_bit_flips_are_detected);
    tcase_add_test(tc, sealed_every_bit_flip);
    tcase_add_test(tc, missing_truncated_foreign_segments);
    tcase_add_test(tc, interrupted_seal_and_stray_files);
    tcase_add_test(tc, reopen_keeps_everything_and_recovery_is_idempotent);
    tcase_add_test(tc, active_segment_cut_short_is_corrupt);
    tcase_add_test(tc, many_segments_within_fd_limit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

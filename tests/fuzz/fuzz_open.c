/*
 * fuzz_open.c - recovery, reads and verify over an arbitrary log directory:
 * the input becomes a meta file and one or two segment files in a scratch
 * directory, which is then verified (stele_verify), opened read-only and
 * iterated, opened for writing (recovery: cutting a torn tail, finishing a
 * seal) and iterated again, appended to, closed and verified again. All
 * through STELE_IO_POSIX, in a scratch directory under $STELE_FUZZ_TMP, or
 * /dev/shm, or $TMPDIR, or /tmp.
 *
 * Input:
 *   byte 0      flags: 1 and 2 extend segment 1 and 2 with zeros to the
 *               segment size their header states (so seeds can leave out
 *               the zero tail of an active segment); 4 and 8 make segment
 *               1 and 2 read-only (0444, as sealing does); 16 adds a stray
 *               segment .tmp file; 32 leaves out the meta file; 64 opens
 *               the writer with create = 1
 *   u32 (LE)    n, then n bytes: stele.meta
 *   u32 (LE)    n, then n bytes: segment 1; the rest of the input: segment 2
 * A segment file is named after the first LSN in its header (bytes 48..56),
 * or 1 and 2 when that is 0 or missing.
 *
 * What must hold, besides no crash, leak, hang or sanitizer report: verify
 * returns OK exactly when it reports no problem; every record that open
 * offers is read back with dense LSNs up to stats' last_lsn, and LSN 0 and
 * last_lsn + 1 are NOT_FOUND; a second append with the same key is a
 * duplicate of the first. When verify finds the log clean, both opens
 * succeed and see verify's last LSN, the append gets the next one, and
 * verify is still clean after close, with one record more.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stele.h"

#define EXTEND_SIZE_MAX (1u << 20)  /* cap on extending a segment file with zeros */
#define APPEND_SEGMENT_SIZE_MAX (1u << 20) /* larger segment sizes would make the append create huge files */

static char scratch[4096];
static char logdir[4200];

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (e->d_type == DT_DIR) {
            remove_tree(p);
            rmdir(p);
        } else {
            unlink(p);
        }
    }
    closedir(d);
}

static void cleanup(void)
{
    if (scratch[0]) {
        remove_tree(scratch);
        rmdir(scratch);
    }
}

static int setup(void)
{
    if (scratch[0])
        return 0;
    const char *base = getenv("STELE_FUZZ_TMP");
    if (!base || !*base)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(scratch, sizeof scratch, "%s/stele-fuzz-open.XXXXXX", base);
    if (!mkdtemp(scratch)) {
        fprintf(stderr, "fuzz_open: mkdtemp %s: %s\n", scratch, strerror(errno));
        abort();
    }
    snprintf(logdir, sizeof logdir, "%s/log", scratch);
    atexit(cleanup);
    return 0;
}

static void write_file(const char *name, const uint8_t *data, size_t size, uint64_t extend_to, int read_only)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", logdir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    FUZZ_CHECK(fd >= 0, "create %s: %s", path, strerror(errno));
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        FUZZ_CHECK(w > 0, "write %s: %s", path, strerror(errno));
        done += (size_t)w;
    }
    if (extend_to > size)
        FUZZ_CHECK(ftruncate(fd, (off_t)extend_to) == 0, "extend %s", path);
    if (read_only)
        fchmod(fd, 0444);
    close(fd);
}

/* The segment size a segment's header states, if sane, for extending it. */
static uint64_t stated_size(const uint8_t *seg, size_t size)
{
    uint64_t v = fuzz_le(seg + 56, size > 56 ? size - 56 : 0, 8);
    return v >= 65536 && v <= EXTEND_SIZE_MAX && v % 4096 == 0 ? v : 65536;
}

static uint64_t first_lsn_of(const uint8_t *seg, size_t size, uint64_t otherwise)
{
    uint64_t v = fuzz_le(seg + 48, size > 48 ? size - 48 : 0, 8);
    return v ? v : otherwise;
}

struct verified {
    int code;
    stele_verify_report rep;
    uint64_t problems_seen;
};

static int verify_cb(void *ctx, const stele_verify_problem *p, uint64_t bytes_done, uint64_t bytes_total)
{
    struct verified *v = ctx;
    (void)bytes_done;
    (void)bytes_total;
    if (p) {
        FUZZ_CHECK(p->path != NULL && p->what != NULL, "a verify problem without path or description");
        v->problems_seen++;
    }
    return 0;
}

static struct verified verify(void)
{
    struct verified v;
    memset(&v, 0, sizeof v);
    v.code = stele_verify(logdir, verify_cb, &v, &v.rep);
    FUZZ_CHECK(v.rep.problems == v.problems_seen, "report counts %llu problems, callback saw %llu",
               (unsigned long long)v.rep.problems, (unsigned long long)v.problems_seen);
    if (v.code == STELE_OK)
        FUZZ_CHECK(v.rep.problems == 0, "verify OK with %llu problems", (unsigned long long)v.rep.problems);
    if (v.code == STELE_ERR_CORRUPT)
        FUZZ_CHECK(v.rep.problems > 0 || v.rep.segments == 0, "verify CORRUPT without a problem");
    return v;
}

/* Reads everything an open handle offers. Returns the last LSN read, or UINT64_MAX
 * when a read failed (which hostile bytes may well cause). */
static uint64_t read_all(stele_log *log)
{
    stele_stats st;
    FUZZ_CHECK(stele_stats_get(log, &st) == STELE_OK, "stats: %s", stele_errmsg());
    stele_iter *it = NULL;
    FUZZ_CHECK(stele_iter_open(log, 1, &it) == STELE_OK, "iter_open: %s", stele_errmsg());
    uint64_t expect = 1;
    int failed = 0;
    for (;;) {
        const stele_record *rec = NULL;
        if (stele_iter_next(it, 0, &rec) != STELE_OK) {
            failed = 1;
            break;
        }
        if (!rec)
            break;
        FUZZ_CHECK(rec->lsn == expect, "iterator gave LSN %llu, expected %llu", (unsigned long long)rec->lsn,
                   (unsigned long long)expect);
        FUZZ_CHECK(rec->type_size <= 255 && rec->stream_size <= 255 && rec->key_size <= 255 && rec->actor_size <= 255,
                   "oversized field");
        expect++;
    }
    stele_iter_close(it);
    if (!failed)
        FUZZ_CHECK(expect - 1 == st.last_lsn, "iteration ended at LSN %llu, stats say %llu",
                   (unsigned long long)(expect - 1), (unsigned long long)st.last_lsn);
    stele_record *rec = NULL;
    FUZZ_CHECK(stele_get(log, 0, &rec) == STELE_ERR_NOT_FOUND, "get LSN 0 is not NOT_FOUND");
    FUZZ_CHECK(stele_get(log, st.last_lsn + 1, &rec) == STELE_ERR_NOT_FOUND, "get beyond the end is not NOT_FOUND");
    if (st.last_lsn && stele_get(log, st.last_lsn, &rec) == STELE_OK) {
        FUZZ_CHECK(rec->lsn == st.last_lsn, "get returned another LSN");
        stele_record_free(rec);
    } else if (st.last_lsn) {
        failed = 1;
    }
    if (st.last_lsn > 2) {
        FUZZ_CHECK(stele_iter_open(log, st.last_lsn / 2, &it) == STELE_OK, "iter_open mid: %s", stele_errmsg());
        const stele_record *r = NULL;
        if (stele_iter_next(it, 0, &r) == STELE_OK)
            FUZZ_CHECK(r && r->lsn == st.last_lsn / 2, "mid-log iterator starts elsewhere");
        stele_iter_close(it);
    }
    return failed ? UINT64_MAX : st.last_lsn;
}

static int open_log(int read_only, int create, stele_log **out)
{
    stele_options o;
    stele_options_init(&o);
    o.io_backend = STELE_IO_POSIX;
    o.read_only = read_only;
    o.create = create;
    o.segment_size = 65536; /* these two are used only when create makes a new log */
    o.payload_size_max = 16384;
    return stele_open(logdir, &o, out);
}

/* Appends one keyed record twice; returns the LSN of the first, or 0 when appends fail. */
static uint64_t append_twice(stele_log *log)
{
    /* No payload: the hostile meta block may allow none. */
    static const char key[] = "fuzz-key";
    stele_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = "fuzz.append";
    ev.type_size = strlen(ev.type);
    ev.key = key;
    ev.key_size = strlen(key);
    stele_receipt a, b;
    if (stele_append(log, &ev, &a) != STELE_OK)
        return 0;
    if (a.decision != STELE_DECISION_NEW)
        return 0; /* the hostile log may already hold the key */
    FUZZ_CHECK(stele_append(log, &ev, &b) == STELE_OK && b.decision == STELE_DECISION_DUPLICATE && b.lsn == a.lsn,
               "a repeated key is not a duplicate of LSN %llu", (unsigned long long)a.lsn);
    return a.lsn;
}

/* ------------------------------------------------ structure-aware mutation */

#ifdef STELE_LIBFUZZER
#include "checksum.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

static void put_le(uint8_t *p, uint64_t v, size_t width)
{
    for (size_t i = 0; i < width; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void seal_block(uint8_t *p, size_t encoded_size, uint64_t seed)
{
    put_le(p, stele_checksum(p + 8, encoded_size - 8, seed), 8);
}

/* Makes the checksums (and, with link, the LSNs and the hash chain) of one
 * segment image agree with its possibly mutated content, so that mutations
 * get past the checksums to the checks behind them: record checksums, body
 * checksums, batch headers, and a footer found where the batches end. */
static uint64_t fix_segment(uint8_t *seg, size_t len, const uint8_t *log_id, uint64_t chain_in, int link)
{
    if (len < 128)
        return chain_in;
    if (link)
        put_le(seg + 72, chain_in, 8);
    seal_block(seg, 128, STELE_SEED_BASE);
    uint64_t seq = fuzz_le(seg + 40, 8, 8), first = fuzz_le(seg + 48, 8, 8), lsn = first, batches = 0;
    uint64_t seed = stele_segment_seed(log_id, seq, first), chain = fuzz_le(seg + 72, 8, 8);
    size_t off = 4096;
    while (off + 64 <= len) {
        uint8_t *h = seg + off;
        if (memcmp(h + 8, "STELEEND", 8) == 0 && off + 128 <= len) {
            put_le(h + 16, lsn - 1, 8);
            put_le(h + 24, lsn - first, 8);
            put_le(h + 32, batches, 8);
            put_le(h + 40, off, 8);
            put_le(h + 48, chain, 8);
            put_le(h + 56, stele_checksum(seg, off, seed), 8);
            seal_block(h, 128, seed);
            break;
        }
        if (memcmp(h + 8, "STBA", 4) != 0)
            break;
        uint32_t count = (uint32_t)fuzz_le(h + 12, 4, 4), stored = (uint32_t)fuzz_le(h + 48, 4, 4);
        if (link) {
            put_le(h + 16, lsn, 8);
            put_le(h + 32, chain, 8);
        }
        if ((uint64_t)stored > len - off - 64)
            break;
        if (h[56] == 0) {
            size_t roff = 0;
            for (uint32_t i = 0; i < count && stored - roff >= 64; i++) {
                uint8_t *r = h + 64 + roff;
                size_t rs = (size_t)fuzz_le(r + 8, 4, 4), padded = (rs + 7) & ~(size_t)7;
                if (rs < 64 || padded > stored - roff)
                    break;
                seal_block(r, padded, seed ^ (fuzz_le(h + 16, 8, 8) + i));
                roff += padded;
            }
        }
        put_le(h + 40, stele_checksum(h + 64, stored, seed), 8);
        seal_block(h, 64, seed);
        chain = fuzz_le(h, 8, 8);
        lsn = fuzz_le(h + 16, 8, 8) + count;
        batches++;
        off += (64 + (size_t)stored + 4095) / 4096 * 4096;
    }
    return chain;
}

/* libFuzzer's mutations, then (three times in four) the checksums fixed up. */
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    size = LLVMFuzzerMutate(data, size, max_size);
    if (seed % 4 == 0 || size < 5)
        return size;
    int link = seed % 8 >= 2;
    size_t meta_len = (size_t)fuzz_le(data + 1, 4, 4);
    if (meta_len > size - 5)
        return size;
    uint8_t *meta = data + 5, *p = meta + meta_len;
    if (meta_len >= 128)
        seal_block(meta, 128, STELE_SEED_BASE);
    uint8_t log_id[16] = {0};
    if (meta_len >= 40)
        memcpy(log_id, meta + 24, 16);
    size_t rest = size - 5 - meta_len;
    if (rest < 4)
        return size;
    size_t seg1_len = (size_t)fuzz_le(p, 4, 4);
    if (seg1_len > rest - 4)
        seg1_len = rest - 4;
    uint64_t chain = fix_segment(p + 4, seg1_len, log_id, 0, link);
    fix_segment(p + 4 + seg1_len, rest - 4 - seg1_len, log_id, chain, link);
    return size;
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    remove_tree(logdir);
    rmdir(logdir);
    FUZZ_CHECK(mkdir(logdir, 0755) == 0, "mkdir %s: %s", logdir, strerror(errno));

    struct fuzz_in in = {data, size};
    unsigned flags = (unsigned)fuzz_take(&in, 1);
    size_t meta_size, seg1_size = 0, seg2_size = 0;
    const uint8_t *meta = fuzz_bytes(&in, (size_t)fuzz_take(&in, 4), &meta_size);
    int have_seg1 = in.n >= 4;
    const uint8_t *seg1 = fuzz_bytes(&in, (size_t)fuzz_take(&in, 4), &seg1_size);
    const uint8_t *seg2 = fuzz_bytes(&in, in.n, &seg2_size);
    uint64_t meta_segment_size = fuzz_le(meta + 48, meta_size > 48 ? meta_size - 48 : 0, 8);

    if (!(flags & 32))
        write_file("stele.meta", meta, meta_size, 0, 0);
    char name[64];
    uint64_t first1 = first_lsn_of(seg1, seg1_size, 1), first2 = first_lsn_of(seg2, seg2_size, 2);
    if (have_seg1) {
        snprintf(name, sizeof name, "%020llu.seg", (unsigned long long)first1);
        write_file(name, seg1, seg1_size, flags & 1 ? stated_size(seg1, seg1_size) : 0, flags & 4);
    }
    if (seg2_size && first2 != first1) {
        snprintf(name, sizeof name, "%020llu.seg", (unsigned long long)first2);
        write_file(name, seg2, seg2_size, flags & 2 ? stated_size(seg2, seg2_size) : 0, flags & 8);
    }
    if (flags & 16) {
        snprintf(name, sizeof name, "%020llu.seg.tmp", (unsigned long long)(first2 + 1));
        write_file(name, seg2, seg2_size, 0, 0);
    }

    struct verified before = verify();
    int clean = before.code == STELE_OK;

    stele_log *log = NULL;
    int rc = open_log(1, 0, &log);
    FUZZ_CHECK(!clean || rc == STELE_OK, "verify finds the log clean, but a read-only open fails: %s: %s",
               stele_strerror(rc), stele_errmsg());
    if (rc == STELE_OK) {
        uint64_t last = read_all(log);
        FUZZ_CHECK(!clean || last == before.rep.last_lsn, "read-only: verify says last LSN %llu, reads give %llu",
                   (unsigned long long)before.rep.last_lsn, (unsigned long long)last);
        stele_close(log);
    }

    rc = open_log(0, (flags & 64) != 0, &log);
    FUZZ_CHECK(!clean || rc == STELE_OK, "verify finds the log clean, but a writable open fails: %s: %s",
               stele_strerror(rc), stele_errmsg());
    if (rc != STELE_OK) {
        if (getenv("STELE_FUZZ_VERBOSE"))
            fprintf(stderr, "fuzz_open: verify %d (%llu problems), writable open: %s: %s\n", before.code,
                    (unsigned long long)before.rep.problems, stele_strerror(rc), stele_errmsg());
        return 0;
    }
    uint64_t last = read_all(log);
    if (getenv("STELE_FUZZ_VERBOSE")) {
        stele_stats st;
        if (stele_stats_get(log, &st) == STELE_OK)
            fprintf(stderr, "fuzz_open: verify %d (%llu problems, last LSN %llu), writable open: last LSN %llu, "
                    "%llu segments, torn %llu bytes in %llu batches, %llu stray files\n", before.code,
                    (unsigned long long)before.rep.problems, (unsigned long long)before.rep.last_lsn,
                    (unsigned long long)st.last_lsn, (unsigned long long)st.segment_count,
                    (unsigned long long)st.recovery_torn_bytes, (unsigned long long)st.recovery_torn_batches,
                    (unsigned long long)st.recovery_stray_files);
    }
    FUZZ_CHECK(!clean || last == before.rep.last_lsn, "writable: verify says last LSN %llu, reads give %llu",
               (unsigned long long)before.rep.last_lsn, (unsigned long long)last);
    uint64_t appended = 0;
    int small_segments = meta_segment_size <= APPEND_SEGMENT_SIZE_MAX || (flags & 32);
    if (small_segments)
        appended = append_twice(log);
    int close_rc = stele_close(log);
    if (!clean)
        return 0;
    FUZZ_CHECK(close_rc == STELE_OK, "close: %s", stele_errmsg());
    if (small_segments)
        FUZZ_CHECK(appended == last + 1, "append to a clean log got LSN %llu after %llu", (unsigned long long)appended,
                   (unsigned long long)last);
    struct verified after = verify();
    FUZZ_CHECK(after.code == STELE_OK, "a clean log is no longer clean after recovery and an append: %s",
               stele_errmsg());
    FUZZ_CHECK(after.rep.last_lsn == last + (appended != 0), "verify after the append: last LSN %llu, expected %llu",
               (unsigned long long)after.rep.last_lsn, (unsigned long long)(last + (appended != 0)));
    return 0;
}

/*
 * verify.c - checks every byte of a log without writing (SPEC.md §8, §10).
 *
 * Independent of open and recovery on purpose: it reports every problem it
 * can find instead of stopping at the first, and it shares only the format
 * decoders with the engine, so a bug in recovery cannot hide itself here.
 * Per segment: the header, every batch (header checksum, LSN continuity,
 * hash chain, body checksum, zero padding, decompression, every record's
 * checksum and fields), then for a sealed segment the footer and its hash of
 * every byte before it; for the last, unsealed segment the tail after the
 * last batch is classified as recovery would (torn or corrupt).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

struct verifier {
    const char *dir;
    stele_verify_fn fn;
    void *ctx;
    stele_verify_report rep;
    struct fmt_meta meta;
    uint64_t bytes_total;
    int stop;
    struct batch_buf b;
    char what[512];
    struct idx *streams;     /* every stream's versions so far: they must be dense (SPEC.md §5) */
    const char *cur_path;    /* the batch being walked, for problems found per record */
    uint64_t cur_off;
    /* Large reads (SPEC.md §19.5): bytes [chunk_off, chunk_off + chunk_len)
     * of the segment being walked, so that its batches cost one pread per
     * VERIFY_CHUNK_SIZE instead of two each. */
    int chunk_fd;
    uint8_t *chunk;
    size_t chunk_cap;
    uint64_t chunk_off;
    size_t chunk_len;
};

#define VERIFY_CHUNK_SIZE (8u << 20)

static void problem(struct verifier *v, const char *path, uint64_t offset, uint64_t lsn, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void problem(struct verifier *v, const char *path, uint64_t offset, uint64_t lsn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->what, sizeof v->what, fmt, ap);
    va_end(ap);
    v->rep.problems++;
    if (v->rep.problems == 1)
        err_set(STELE_ERR_CORRUPT, "%s offset %llu (LSN %llu): %s", path, (unsigned long long)offset,
                (unsigned long long)lsn, v->what);
    stele_verify_problem p = {path, offset, lsn, v->what};
    if (v->fn && v->fn(v->ctx, &p, v->rep.bytes, v->bytes_total))
        v->stop = 1;
}

static void progress(struct verifier *v)
{
    if (v->fn && v->fn(v->ctx, NULL, v->rep.bytes, v->bytes_total))
        v->stop = 1;
}

/* Segment-walk state carried across segments. */
struct walk {
    uint64_t next_lsn;
    uint64_t chain;
    uint64_t seq;
};

static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
    return posix_pread(NULL, fd, buf, len, off) == (ssize_t)len ? 0 : -1;
}

/* Bytes [off, off + len) of fd, which must lie before limit (the end of
 * what the walk may read), from the chunk or a new large read; NULL (errno
 * set) when they cannot be read. */
static const uint8_t *chunk_at(struct verifier *v, int fd, uint64_t off, size_t len, uint64_t limit)
{
    if (fd == v->chunk_fd && off >= v->chunk_off && off + len <= v->chunk_off + v->chunk_len)
        return v->chunk + (off - v->chunk_off);
    size_t want = limit - off < VERIFY_CHUNK_SIZE ? (size_t)(limit - off) : VERIFY_CHUNK_SIZE;
    if (want < len)
        want = len;
    if (want > v->chunk_cap) {
        uint8_t *p = realloc(v->chunk, want);
        if (!p) {
            errno = ENOMEM;
            return NULL;
        }
        v->chunk = p;
        v->chunk_cap = want;
    }
    v->chunk_fd = -1;
    ssize_t got = posix_pread(NULL, fd, v->chunk, want, off);
    if (got < 0 || (size_t)got < len) {
        if (got >= 0)
            errno = ENODATA; /* the file ends early */
        return NULL;
    }
    v->chunk_fd = fd;
    v->chunk_off = off;
    v->chunk_len = (size_t)got;
    return v->chunk;
}

/* A record's stream version is its position in its stream: 1, 2, 3, ...
 * in LSN order (SPEC.md §5). The engine's index relies on it, so verify
 * checks it too: a log verify finds clean always opens. */
static int check_stream(void *ctx, uint64_t lsn, const struct fmt_record *rec, size_t offset)
{
    (void)offset;
    struct verifier *v = ctx;
    if (!rec->stream_size || !v->streams)
        return 0;
    uint64_t want = idx_stream_append(v->streams, rec->stream, rec->stream_size, lsn);
    if (want == 0) {
        problem(v, v->cur_path, v->cur_off, lsn, "out of memory tracking stream versions: not checked further");
        idx_free(v->streams);
        v->streams = NULL;
    } else if (rec->stream_version != want) {
        problem(v, v->cur_path, v->cur_off, lsn, "stream version %llu where the stream's records make it %llu",
                (unsigned long long)rec->stream_version, (unsigned long long)want);
    }
    return 0;
}

/* Accounts for a batch frame the walk has passed; returns its size. */
static uint64_t frame_walked(struct verifier *v, const struct fmt_batch_header *h, const uint8_t *fr,
                             uint64_t frame, uint64_t chain, struct walk *w, XXH3_state_t *hash)
{
    if (hash)
        XXH3_64bits_update(hash, fr, frame);
    w->next_lsn += h->record_count;
    w->chain = chain;
    v->rep.batches++;
    v->rep.records += h->record_count;
    v->rep.bytes += frame;
    return frame;
}

/* Reports a dictionary file that fails its checks (SPEC.md §18.3). */
static void dict_problem(void *ctx, const char *path, const char *what)
{
    problem(ctx, path, 0, 0, "%s", what);
}

/* Checks one batch at off; returns its frame size, or 0 when there is no valid batch there. */
static uint64_t check_batch(struct verifier *v, const char *path, int fd, uint64_t off, uint64_t file_size,
                            uint64_t seed, struct walk *w, XXH3_state_t *hash, int report)
{
    const uint8_t *hb;
    struct fmt_batch_header h;
    uint64_t chain;
    if (off + STELE_BATCH_HEADER_SIZE > file_size)
        return 0;
    if ((hb = chunk_at(v, fd, off, STELE_BATCH_HEADER_SIZE, file_size)) == NULL) {
        /* Never silent: a sealed segment's footer check relies on a
         * problem having been reported when the walk stops early. */
        problem(v, path, off, w->next_lsn, "read failed: %s", strerror(errno));
        return 0;
    }
    enum fmt_status st = fmt_batch_header_decode(hb, STELE_BATCH_HEADER_SIZE, seed, &h, &chain);
    if (st != FMT_OK) {
        if (report)
            problem(v, path, off, w->next_lsn, "batch header %s", fmt_status_str(st));
        return 0;
    }
    uint64_t frame = fmt_batch_frame_size(h.stored_size);
    const char *bad = h.first_lsn != w->next_lsn ? "batch LSN does not continue the log"
                      : h.prev_chain != w->chain ? "hash chain broken (batch does not follow its predecessor)"
                      : off + frame > file_size ? "batch extends past the end of the file" : NULL;
    if (bad) {
        if (report)
            problem(v, path, off, w->next_lsn, "%s", bad);
        return 0;
    }
    const uint8_t *fr = chunk_at(v, fd, off, (size_t)frame, file_size);
    if (!fr) {
        if (report)
            problem(v, path, off, w->next_lsn, "read failed: %s", strerror(errno));
        return 0;
    }
    v->b.header = h;
    const uint8_t *stored = fr + STELE_BATCH_HEADER_SIZE;
    st = fmt_batch_body_check(&h, stored, frame - STELE_BATCH_HEADER_SIZE, seed);
    if (st == FMT_OK && !fmt_is_zero(stored + h.stored_size, frame - STELE_BATCH_HEADER_SIZE - h.stored_size))
        st = FMT_BAD_FIELD;
    if (st != FMT_OK) {
        if (report)
            problem(v, path, off, w->next_lsn, "batch body %s", fmt_status_str(st));
        return 0;
    }
    if (batch_body_open(&v->b, stored, path, off) != STELE_OK) {
        if (!v->b.dict_error) {
            if (report)
                problem(v, path, off, w->next_lsn, "%s", stele_errmsg());
            return 0;
        }
        /* SPEC.md §18.4: the frame passed its checksum, so it was written
         * whole; only its dictionary is missing or damaged. Always a
         * problem (never a torn tail), and the walk goes on past it. */
        problem(v, path, off, w->next_lsn, "%s", stele_errmsg());
        return frame_walked(v, &h, fr, frame, chain, w, hash);
    }
    uint64_t bad_lsn = h.first_lsn;
    v->cur_path = path;
    v->cur_off = off;
    st = fmt_batch_records(&h, v->b.body, h.raw_size, seed, check_stream, v, &bad_lsn);
    if (st != FMT_OK) {
        if (report)
            problem(v, path, off, bad_lsn, "record %s", fmt_status_str(st));
        return 0;
    }
    return frame_walked(v, &h, fr, frame, chain, w, hash);
}

/* After the last batch of the unsealed segment: a torn tail, or damage that
 * a later batch proves was durable (the rule recovery applies, SPEC.md §10). */
static void check_tail(struct verifier *v, const char *path, int fd, uint64_t off, uint64_t file_size,
                       uint64_t seed, const struct walk *w)
{
    uint8_t block[STELE_BLOCK_SIZE];
    uint64_t nonzero_end = off;
    for (uint64_t at = off; at < file_size && !v->stop; at += STELE_BLOCK_SIZE) {
        size_t len = file_size - at < STELE_BLOCK_SIZE ? (size_t)(file_size - at) : STELE_BLOCK_SIZE;
        if (read_at(fd, block, len, at) != 0) {
            problem(v, path, at, 0, "read failed: %s", strerror(errno));
            return;
        }
        if (!fmt_is_zero(block, len))
            nonzero_end = at + len;
        struct fmt_batch_header h;
        uint64_t chain;
        if (at > off && fmt_batch_header_decode(block, len, seed, &h, &chain) == FMT_OK && h.durable_lsn >= w->next_lsn) {
            problem(v, path, off, w->next_lsn, "damaged batch below the durable watermark (the batch at offset "
                    "%llu records LSNs up to %llu as durable)", (unsigned long long)at,
                    (unsigned long long)h.durable_lsn);
            return;
        }
    }
    v->rep.torn_bytes += nonzero_end - off;
}

static int check_header(struct verifier *v, const char *path, int fd, uint64_t first_lsn, struct walk *w,
                        uint64_t *out_seed, uint64_t *out_capacity, XXH3_state_t *hash)
{
    uint8_t block[STELE_SEGMENT_HEADER_SIZE];
    struct fmt_segment_header h;
    if (read_at(fd, block, sizeof block, 0) != 0) {
        problem(v, path, 0, first_lsn, "segment shorter than its header");
        return -1;
    }
    enum fmt_status st = fmt_segment_header_decode(block, sizeof block, &h);
    if (st != FMT_OK) {
        problem(v, path, 0, first_lsn, "segment header %s", fmt_status_str(st));
        return -1;
    }
    if (memcmp(h.log_id, v->meta.log_id, sizeof h.log_id) != 0)
        problem(v, path, 0, first_lsn, "segment belongs to another log (log id differs)");
    if (h.first_lsn != first_lsn || first_lsn != w->next_lsn)
        problem(v, path, 0, first_lsn, "gap or overlap: expected a segment starting at LSN %llu",
                (unsigned long long)w->next_lsn);
    if (h.seq != w->seq + 1)
        problem(v, path, 0, first_lsn, "segment sequence %llu, expected %llu", (unsigned long long)h.seq,
                (unsigned long long)(w->seq + 1));
    if (h.prev_chain != w->chain)
        problem(v, path, 0, first_lsn, "hash chain broken across segments");
    w->seq = h.seq;
    w->next_lsn = h.first_lsn;
    w->chain = h.prev_chain;
    *out_seed = stele_segment_seed(h.log_id, h.seq, h.first_lsn);
    *out_capacity = h.segment_size;
    XXH3_64bits_reset_withSeed(hash, *out_seed);
    XXH3_64bits_update(hash, block, sizeof block);
    v->rep.bytes += sizeof block;
    return 0;
}

static void check_footer(struct verifier *v, const char *path, const struct fmt_footer *f, uint64_t off,
                         struct walk *w, XXH3_state_t *hash)
{
    if (off != f->data_end)
        return; /* a batch problem was already reported */
    if (f->last_lsn + 1 != w->next_lsn || f->chain != w->chain)
        problem(v, path, f->data_end, f->last_lsn, "footer disagrees with the batches (last LSN or chain)");
    else if (XXH3_64bits_digest(hash) != f->file_hash)
        problem(v, path, f->data_end, f->last_lsn, "footer hash mismatch: a byte of the sealed segment changed");
}

static void verify_segment(struct verifier *v, const char *path, uint64_t first_lsn, int is_last, struct walk *w,
                           XXH3_state_t *hash)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        problem(v, path, 0, first_lsn, "cannot open: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    uint64_t seed, capacity, size = (uint64_t)st.st_size;
    v->chunk_fd = -1; /* fd numbers are reused: the chunk held another file's bytes */
    v->rep.segments++;
    if (check_header(v, path, fd, first_lsn, w, &seed, &capacity, hash) != 0) {
        close(fd);
        return;
    }
    uint8_t block[STELE_FOOTER_SIZE];
    struct fmt_footer f;
    int sealed = size >= 2 * STELE_BLOCK_SIZE && size % STELE_BLOCK_SIZE == 0 &&
                 read_at(fd, block, sizeof block, size - STELE_FOOTER_SIZE) == 0 &&
                 fmt_footer_decode(block, sizeof block, seed, &f) == FMT_OK && f.data_end == size - STELE_FOOTER_SIZE;
    /* The rules recovery applies (SPEC.md §8.5 B1, §10.1 step 7): an active
     * segment has exactly its capacity, and no batch reaches its last block. */
    uint64_t active_end = size < capacity - STELE_FOOTER_SIZE ? size : capacity - STELE_FOOTER_SIZE;
    uint64_t off = STELE_SEGMENT_HEADER_SIZE, limit = sealed ? f.data_end : active_end, frame;
    while (off < limit && !v->stop &&
           (frame = check_batch(v, path, fd, off, limit, seed, w, hash, sealed)) != 0) {
        off += frame;
        if (v->rep.batches % 256 == 0)
            progress(v);
    }
    if (sealed) {
        check_footer(v, path, &f, off, w, hash);
        v->rep.bytes += STELE_FOOTER_SIZE;
        w->next_lsn = f.last_lsn + 1; /* resynchronise so later segments are still checked */
        w->chain = f.chain;
    } else if (!is_last || !(st.st_mode & 0222)) {
        problem(v, path, size, w->next_lsn, "segment has no valid footer at its end (truncated?) but %s",
                is_last ? "its read-only mode says it was sealed" : "another segment follows it");
    } else if (size != capacity) {
        problem(v, path, size, w->next_lsn, "active segment is %llu bytes without a footer, but was created with "
                "%llu: truncated or damaged", (unsigned long long)size, (unsigned long long)capacity);
    } else {
        check_tail(v, path, fd, off, size, seed, w);
    }
    close(fd);
}

static int load_meta(struct verifier *v)
{
    char path[4096 + 16];
    snprintf(path, sizeof path, "%s/stele.meta", v->dir);
    uint8_t block[STELE_META_SIZE];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? err_set(STELE_ERR_NOT_FOUND, "no log in %s (%s is missing)", v->dir, path)
                               : err_sys(errno, "open", path);
    ssize_t got = posix_pread(NULL, fd, block, sizeof block, 0);
    close(fd);
    enum fmt_status st = got < 0 ? FMT_SHORT : fmt_meta_decode(block, (size_t)got, &v->meta);
    if (st == FMT_BAD_VERSION)
        return err_set(STELE_ERR_FORMAT, "%s: unsupported format version", path);
    if (st != FMT_OK)
        return err_set(STELE_ERR_CORRUPT, "%s offset 0: meta block %s", path, fmt_status_str(st));
    return STELE_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The segment files of dir, sorted by first LSN, and their total size. */
static int list_dir(struct verifier *v, uint64_t **out, size_t *out_count)
{
    DIR *d = opendir(v->dir);
    if (!d)
        return err_sys(errno, "open directory", v->dir);
    uint64_t *firsts = NULL, first;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!fmt_segment_name_parse(e->d_name, &first))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            uint64_t *p = realloc(firsts, cap * sizeof *p);
            if (!p) {
                closedir(d);
                free(firsts);
                return err_set(STELE_ERR_NOMEM, "out of memory listing %s", v->dir);
            }
            firsts = p;
        }
        firsts[n++] = first;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, 0) == 0)
            v->bytes_total += (uint64_t)st.st_size;
    }
    closedir(d);
    if (n > 1)
        qsort(firsts, n, sizeof *firsts, cmp_u64);
    *out = firsts;
    *out_count = n;
    return STELE_OK;
}

int stele_verify(const char *dir, stele_verify_fn fn, void *ctx, stele_verify_report *out)
{
    err_clear();
    if (!dir)
        return err_set(STELE_ERR_INVALID, "verify: no directory given");
    struct verifier v = {.dir = dir, .fn = fn, .ctx = ctx, .chunk_fd = -1};
    uint64_t *firsts = NULL;
    size_t n = 0;
    int code = load_meta(&v);
    if (code == STELE_OK)
        code = list_dir(&v, &firsts, &n);
    XXH3_state_t *hash = code == STELE_OK ? XXH3_createState() : NULL;
    v.streams = code == STELE_OK ? idx_new(0) : NULL;
    v.b.dicts = code == STELE_OK ? dict_cache_new(dir, v.meta.log_id) : NULL;
    if (code == STELE_OK && (!hash || !v.streams || !v.b.dicts))
        code = err_set(STELE_ERR_NOMEM, "out of memory");
    if (code == STELE_OK)
        code = dict_check_all(dir, v.meta.log_id, dict_problem, &v);
    struct walk w = {.next_lsn = 1, .chain = 0, .seq = 0};
    for (size_t i = 0; code == STELE_OK && i < n && !v.stop; i++) {
        char path[4096 + 32];
        char name[STELE_SEGMENT_NAME_SIZE + 1];
        fmt_segment_name(firsts[i], name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        verify_segment(&v, path, firsts[i], i + 1 == n, &w, hash);
    }
    progress(&v);
    v.rep.last_lsn = w.next_lsn - 1;
    XXH3_freeState(hash);
    idx_free(v.streams);
    dict_cache_free(v.b.dicts);
    batch_buf_free(&v.b);
    free(v.chunk);
    free(firsts);
    if (out)
        *out = v.rep;
    if (code == STELE_OK && v.rep.problems)
        code = STELE_ERR_CORRUPT; /* the message of the first problem is already set */
    return code;
}

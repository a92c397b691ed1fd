/*
 * segidx.c - per-segment read indexes (SPEC.md §19): where each batch of a
 * segment starts and when it was recorded, so that a read by LSN or by time
 * binary-searches a table and reads one batch instead of scanning.
 *
 * The active segment's table lives in memory (the writer and recovery add to
 * it, segment_index_add). When a segment is sealed, the writer hands a copy
 * of its table to a thread of its own, which writes `<segment>.idx`:
 *   1. write the whole file to `<segment>.idx.tmp` (created or truncated),
 *      fdatasync it and close it;
 *   2. rename it to `<segment>.idx`;
 *   3. fsync the directory.
 * The rename is the commit point: a crash leaves no index, the old one, or
 * the new one, and at worst a stray .tmp that the next writable open deletes.
 * The file is derived from the segment, never the truth, so a failure to
 * write it is counted in stats and changes nothing else: the log is not
 * fenced, and the next reader rebuilds the table from the segment.
 *
 * A sealed segment's table is loaded on first use. The file is trusted only
 * if it passes every check of fmt_segidx_decode and describes exactly this
 * segment (seed, LSNs, batch count, data_end and the footer's checksum);
 * otherwise the table is rebuilt from the segment with large reads, checking
 * every batch and the footer's whole-file hash on the way, and (writable
 * handles only) the file is written again. Stats count loads, rebuilds,
 * writes and failures, and read_index_note says why the last file was not
 * used or not written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "endian.h"
#include "internal.h"
#include "segidx.h"

/* Large reads when rebuilding: a whole segment of 64 MiB in 8 reads. */
#define REBUILD_CHUNK_SIZE (8u << 20)

static void count(uint64_t *counter, uint64_t n)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

void segidx_count_read(stele_log *log, uint64_t bytes)
{
    count(&log->rstats.read_batches, 1);
    count(&log->rstats.read_bytes, bytes);
}

static void note(stele_log *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(stele_log *log, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&log->q_lock);
    va_start(ap, fmt);
    vsnprintf(log->rstats.note, sizeof log->rstats.note, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&log->q_lock);
}

void segidx_set_io(stele_log *log, struct io *io)
{
    if (log->segidx_io_owned)
        log->segidx_io->ops->destroy(log->segidx_io);
    log->segidx_io = io;
    log->segidx_io_owned = 0;
}

void segidx_stats(stele_log *log, stele_stats *out)
{
    out->read_index_loaded = __atomic_load_n(&log->rstats.loaded, __ATOMIC_RELAXED);
    out->read_index_rebuilt = __atomic_load_n(&log->rstats.rebuilt, __ATOMIC_RELAXED);
    out->read_index_written = __atomic_load_n(&log->rstats.written, __ATOMIC_RELAXED);
    out->read_index_write_failures = __atomic_load_n(&log->rstats.write_failures, __ATOMIC_RELAXED);
    out->read_batches = __atomic_load_n(&log->rstats.read_batches, __ATOMIC_RELAXED);
    out->read_bytes = __atomic_load_n(&log->rstats.read_bytes, __ATOMIC_RELAXED);
    pthread_mutex_lock(&log->q_lock);
    memcpy(out->read_index_note, log->rstats.note, sizeof out->read_index_note);
    pthread_mutex_unlock(&log->q_lock);
}

int batch_recorded_at(const uint8_t *raw, size_t raw_size, uint64_t first_lsn, uint64_t seed, uint64_t *out_ns)
{
    struct fmt_record r;
    size_t size;
    if (fmt_record_decode(raw, raw_size, first_lsn, seed, &r, &size) != FMT_OK)
        return -1;
    *out_ns = r.recorded_at_ns;
    return 0;
}

static void idx_path(const struct segment *seg, char *dst, size_t dst_capacity, int tmp)
{
    snprintf(dst, dst_capacity, "%s" STELE_SEGIDX_SUFFIX "%s", seg->path, tmp ? ".tmp" : "");
}

/* The footer block's checksum (its first 8 bytes): the index file names it. */
static int footer_checksum(stele_log *log, struct segment *seg, int fd, uint64_t *out)
{
    uint8_t b[8];
    int r = io_read_full(log->io, fd, b, sizeof b, seg->data_end);
    if (r < 0)
        return err_set(err_code_from_errno(-r) == STELE_ERR_NOT_FOUND ? STELE_ERR_CORRUPT : err_code_from_errno(-r),
                       "read footer of %s offset %llu: %s", seg->path, (unsigned long long)seg->data_end,
                       r == -ENODATA ? "file ends early" : strerror(-r));
    *out = le64_load(b);
    return STELE_OK;
}

/* ------------------------------------------------------------- loading */

/* The table in the index file next to seg, if it can be trusted; otherwise
 * *out_refs stays NULL and why says what was wrong. Only NOMEM is an error:
 * an unreadable index file is just not used. */
static int load_file(stele_log *log, const struct segment *seg, uint64_t footer_ck, struct batch_ref **out_refs,
                     char *why, size_t why_size)
{
    char path[sizeof seg->path + 8];
    idx_path(seg, path, sizeof path, 0);
    *out_refs = NULL;
    struct io *io = log->segidx_io;
    int fd = io->ops->open(io, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, why_size, "%s: %s", path, fd == -ENOENT ? "missing" : strerror(-fd));
        return STELE_OK;
    }
    struct stat st;
    uint8_t *buf = NULL;
    int code = STELE_OK;
    if (fstat(fd, &st) != 0) {
        snprintf(why, why_size, "%s: stat: %s", path, strerror(errno));
        goto done;
    }
    if ((uint64_t)st.st_size > STELE_SEGIDX_FILE_SIZE_MAX || st.st_size < (off_t)STELE_SEGIDX_HEADER_SIZE) {
        snprintf(why, why_size, "%s: damaged: %lld bytes is not the size of an index file", path,
                 (long long)st.st_size);
        goto done;
    }
    size_t size = (size_t)st.st_size;
    if (!(buf = malloc(size))) {
        code = err_set(STELE_ERR_NOMEM, "out of memory for the %zu-byte index %s", size, path);
        goto done;
    }
    int r = io_read_full(io, fd, buf, size, 0);
    if (r < 0) {
        snprintf(why, why_size, "%s: read: %s", path, r == -ENODATA ? "file ends early" : strerror(-r));
        goto done;
    }
    struct fmt_segidx_header h;
    uint64_t bad = 0;
    enum fmt_status s = fmt_segidx_decode(buf, size, &h, &bad);
    if (s != FMT_OK) {
        if (s == FMT_BAD_FIELD && bad < (size - STELE_SEGIDX_HEADER_SIZE) / STELE_SEGIDX_ENTRY_SIZE)
            snprintf(why, why_size, "%s offset %llu: damaged: entry %llu %s", path,
                     (unsigned long long)(STELE_SEGIDX_HEADER_SIZE + bad * STELE_SEGIDX_ENTRY_SIZE),
                     (unsigned long long)bad, fmt_status_str(s));
        else
            snprintf(why, why_size, "%s offset 0: damaged: %s", path, fmt_status_str(s));
        goto done;
    }
    if (h.segment_seed != seg->seed || h.first_lsn != seg->first_lsn || h.last_lsn != seg->last_lsn ||
        h.batch_count != seg->batch_count || h.data_end != seg->data_end || h.footer_checksum != footer_ck) {
        snprintf(why, why_size, "%s: stale: it describes LSN %llu-%llu (%llu bytes%s), the segment holds "
                 "LSN %llu-%llu (%llu bytes)", path, (unsigned long long)h.first_lsn, (unsigned long long)h.last_lsn,
                 (unsigned long long)h.data_end,
                 h.segment_seed != seg->seed ? ", of another segment" : h.footer_checksum != footer_ck
                 ? ", another footer" : "", (unsigned long long)seg->first_lsn, (unsigned long long)seg->last_lsn,
                 (unsigned long long)seg->data_end);
        goto done;
    }
    struct batch_ref *refs = malloc((h.entry_count ? h.entry_count : 1) * sizeof *refs);
    if (!refs) {
        code = err_set(STELE_ERR_NOMEM, "out of memory for the index of %s", seg->path);
        goto done;
    }
    for (uint64_t i = 0; i < h.entry_count; i++) {
        struct fmt_segidx_entry e, next = {h.last_lsn + 1, h.data_end, 0};
        fmt_segidx_entry_get(buf, i, &e);
        if (i + 1 < h.entry_count)
            fmt_segidx_entry_get(buf, i + 1, &next);
        refs[i] = (struct batch_ref){e.first_lsn, e.offset, (uint32_t)(next.first_lsn - e.first_lsn),
                                     (uint32_t)(next.offset - e.offset), e.recorded_at_ns};
    }
    *out_refs = refs;
done:
    free(buf);
    io->ops->close(io, fd);
    return code;
}

/* ---------------------------------------------------------- rebuilding */

struct rebuild {
    stele_log *log;
    struct segment *seg;
    int fd;
    uint8_t *chunk;          /* bytes [chunk_off, chunk_off + chunk_len) of the file */
    size_t chunk_cap;
    uint64_t chunk_off;
    size_t chunk_len;
    struct batch_buf b;      /* for decompressing a body */
    XXH3_state_t *hash;
    int damaged;             /* a batch body or the file hash failed its check */
    char damage[400];        /* the first such problem */
    struct batch_ref *refs;
    size_t count;
};

/* Makes [off, off + len) of the file present in r->chunk. */
static int chunk_cover(struct rebuild *r, uint64_t off, size_t len)
{
    if (off >= r->chunk_off && off + len <= r->chunk_off + r->chunk_len)
        return STELE_OK;
    uint64_t end = r->seg->data_end;
    size_t want = end - off < REBUILD_CHUNK_SIZE ? (size_t)(end - off) : REBUILD_CHUNK_SIZE;
    if (want < len)
        want = len;
    if (want > r->chunk_cap) {
        uint8_t *p = realloc(r->chunk, want);
        if (!p)
            return err_set(STELE_ERR_NOMEM, "out of memory rebuilding the index of %s", r->seg->path);
        r->chunk = p;
        r->chunk_cap = want;
    }
    int e = io_read_full(r->log->io, r->fd, r->chunk, want, off);
    if (e < 0)
        return err_set(e == -ENODATA ? STELE_ERR_CORRUPT : err_code_from_errno(-e),
                       "read %s offset %llu (rebuilding its index): %s", r->seg->path, (unsigned long long)off,
                       e == -ENODATA ? "file ends early" : strerror(-e));
    count(&r->log->rstats.read_bytes, want);
    r->chunk_off = off;
    r->chunk_len = want;
    return STELE_OK;
}

/* Notes the first damage found in a segment whose batches still chain. */
static void damage(struct rebuild *r)
{
    if (!r->damaged)
        snprintf(r->damage, sizeof r->damage, "%s", stele_errmsg());
    r->damaged = 1;
    err_clear();
}

/* Checks the batch at off (§8.5 B1-B13 but the records after the first) and
 * appends its entry; *out_frame is its size. A header that does not decode
 * or does not continue the chain ends the walk (CORRUPT); a body that fails
 * its checks does not: the batch is indexed from its header, with the
 * previous batch's time, so that the segment's other batches stay readable
 * and a read of this one reports the damage (r->damaged). */
static int rebuild_batch(struct rebuild *r, uint64_t off, uint64_t lsn, uint64_t *chain, uint64_t *out_frame)
{
    struct segment *seg = r->seg;
    int code = chunk_cover(r, off, STELE_BATCH_HEADER_SIZE);
    if (code)
        return code;
    struct fmt_batch_header h;
    uint64_t next_chain, frame = 0;
    enum fmt_status st = fmt_batch_header_decode(r->chunk + (off - r->chunk_off), STELE_BATCH_HEADER_SIZE, seg->seed,
                                                 &h, &next_chain);
    if (st == FMT_OK) {
        frame = fmt_batch_frame_size(h.stored_size);
        if (h.first_lsn != lsn || h.prev_chain != *chain || off + frame > seg->data_end)
            st = FMT_BAD_FIELD;
    }
    if (st == FMT_OK && (code = chunk_cover(r, off, (size_t)frame)) != STELE_OK)
        return code;
    if (st != FMT_OK)
        return err_set(STELE_ERR_CORRUPT, "%s offset %llu: batch at LSN %llu %s", seg->path,
                       (unsigned long long)off, (unsigned long long)lsn, fmt_status_str(st));
    const uint8_t *stored = r->chunk + (off - r->chunk_off) + STELE_BATCH_HEADER_SIZE;
    st = fmt_batch_body_check(&h, stored, frame - STELE_BATCH_HEADER_SIZE, seg->seed);
    if (st == FMT_OK && !fmt_is_zero(stored + h.stored_size, frame - STELE_BATCH_HEADER_SIZE - h.stored_size))
        st = FMT_BAD_FIELD;
    uint64_t at = r->count ? r->refs[r->count - 1].recorded_at_ns : 0;
    if (st != FMT_OK) {
        err_set(STELE_ERR_CORRUPT, "%s offset %llu: batch at LSN %llu %s", seg->path, (unsigned long long)off,
                (unsigned long long)lsn, fmt_status_str(st));
        damage(r);
    } else {
        r->b.header = h;
        if ((code = batch_body_open(&r->b, stored, seg->path, off)) == STELE_ERR_NOMEM)
            return code;
        if (code != STELE_OK)
            damage(r);
        else if (batch_recorded_at(r->b.body, h.raw_size, lsn, seg->seed, &at) != 0) {
            err_set(STELE_ERR_CORRUPT, "%s offset %llu: record LSN %llu fails its checks", seg->path,
                    (unsigned long long)off, (unsigned long long)lsn);
            damage(r);
        }
    }
    XXH3_64bits_update(r->hash, r->chunk + (off - r->chunk_off), (size_t)frame);
    if (r->count % 1024 == 0) {
        struct batch_ref *p = realloc(r->refs, (r->count + 1024) * sizeof *p);
        if (!p)
            return err_set(STELE_ERR_NOMEM, "out of memory rebuilding the index of %s", seg->path);
        r->refs = p;
    }
    r->refs[r->count++] = (struct batch_ref){lsn, off, h.record_count, (uint32_t)frame, at};
    *chain = next_chain;
    *out_frame = frame;
    return STELE_OK;
}

/* Rebuilds seg's table from the segment: every batch from the header to the
 * footer (SPEC.md §8.4 F9, and F10: the whole-file hash), read in large chunks.
 * *out_damage is "" or, when a batch body or the file hash failed its check
 * (the table is still right: the batches chain), what failed first. */
static int rebuild(stele_log *log, struct segment *seg, int fd, struct batch_ref **out_refs, size_t *out_count,
                   char *out_damage, size_t damage_size)
{
    struct rebuild r = {.log = log, .seg = seg, .fd = fd, .hash = XXH3_createState(), .b = {.dicts = log->dicts}};
    int code = r.hash ? chunk_cover(&r, 0, STELE_SEGMENT_HEADER_SIZE)
                      : err_set(STELE_ERR_NOMEM, "out of memory rebuilding the index of %s", seg->path);
    if (code == STELE_OK) {
        XXH3_64bits_reset_withSeed(r.hash, seg->seed);
        XXH3_64bits_update(r.hash, r.chunk, STELE_SEGMENT_HEADER_SIZE);
    }
    uint64_t off = STELE_SEGMENT_HEADER_SIZE, lsn = seg->first_lsn, chain = seg->prev_chain, frame = 0;
    while (code == STELE_OK && off < seg->data_end) {
        if ((code = rebuild_batch(&r, off, lsn, &chain, &frame)) != STELE_OK)
            break;
        lsn += r.refs[r.count - 1].record_count;
        off += frame;
    }
    if (code == STELE_OK && (lsn != seg->last_lsn + 1 || chain != seg->chain || r.count != seg->batch_count))
        code = err_set(STELE_ERR_CORRUPT, "%s: batches end at LSN %llu but the footer says %llu", seg->path,
                       (unsigned long long)(lsn - 1), (unsigned long long)seg->last_lsn);
    if (code == STELE_OK) {
        uint8_t fb[STELE_FOOTER_SIZE];
        struct fmt_footer f;
        int e = io_read_full(log->io, fd, fb, sizeof fb, seg->data_end);
        if (e < 0 || fmt_footer_decode(fb, sizeof fb, seg->seed, &f) != FMT_OK)
            code = err_set(STELE_ERR_CORRUPT, "%s offset %llu: footer unreadable or damaged", seg->path,
                           (unsigned long long)seg->data_end);
        else if (f.file_hash != XXH3_64bits_digest(r.hash)) {
            err_set(STELE_ERR_CORRUPT, "%s offset %llu: footer hash mismatch: a byte of the sealed segment changed",
                    seg->path, (unsigned long long)seg->data_end);
            damage(&r);
        }
    }
    snprintf(out_damage, damage_size, "%s", r.damaged ? r.damage : "");
    XXH3_freeState(r.hash);
    free(r.chunk);
    batch_buf_free(&r.b);
    if (code) {
        free(r.refs);
        return code;
    }
    *out_refs = r.refs;
    *out_count = r.count;
    return STELE_OK;
}

/* ------------------------------------------------------------- writing */

struct write_job {
    stele_log *log;
    struct segment *seg;
    struct batch_ref *refs;
    size_t count;
    struct fmt_segidx_header h;
};

/* Writes seg's index file from j (the protocol is in the head comment);
 * returns the code, the message saying what failed. Removes the temporary
 * file on failure. */
/* Like err_sys, but the message leads with the reason, so that it survives
 * the 160 bytes of stats.read_index_note whatever the path's length. */
static int write_fail(int e, const char *op, const char *path)
{
    return err_set(err_code_from_errno(e), "%s: %s %s", strerror(e), op, path);
}

static int write_file(struct write_job *j)
{
    stele_log *log = j->log;
    struct io *io = log->segidx_io;
    char path[sizeof j->seg->path + 8], tmp[sizeof j->seg->path + 16];
    idx_path(j->seg, path, sizeof path, 0);
    idx_path(j->seg, tmp, sizeof tmp, 1);
    size_t size = (size_t)fmt_segidx_size(j->count);
    struct fmt_segidx_entry *e = malloc((j->count ? j->count : 1) * sizeof *e);
    uint8_t *buf = malloc(size);
    int code = STELE_OK, fd = -1, r;
    if (!e || !buf) {
        code = err_set(STELE_ERR_NOMEM, "out of memory writing %s", path);
        goto done;
    }
    for (size_t i = 0; i < j->count; i++)
        e[i] = (struct fmt_segidx_entry){j->refs[i].first_lsn, j->refs[i].offset, j->refs[i].recorded_at_ns};
    j->h.entry_count = j->count;
    if (fmt_segidx_encode(&j->h, e, buf, size) != size) {
        code = err_set(STELE_ERR_TOO_LARGE, "%s: %zu entries do not fit an index file", path, j->count);
        goto done;
    }
    if ((fd = io->ops->open(io, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        code = write_fail(-fd, "create", tmp);
        goto done;
    }
    if ((r = io->ops->write(io, fd, buf, size, 0, 1)) < 0) {
        code = write_fail(-r, "write and sync", tmp);
        goto done;
    }
    io->ops->close(io, fd);
    fd = -1;
    if ((r = io->ops->rename(io, tmp, path)) < 0) {
        code = write_fail(-r, "rename into place", tmp);
        goto done;
    }
    if ((r = io->ops->sync_dir(io, log->dir)) < 0)
        code = write_fail(-r, "sync directory", log->dir);
done:
    if (fd >= 0)
        io->ops->close(io, fd);
    if (code != STELE_OK)
        io->ops->unlink(io, tmp); /* best effort: a writable open deletes any *.tmp left */
    free(buf);
    free(e);
    return code;
}

static void account_write(stele_log *log, int code)
{
    if (code == STELE_OK) {
        count(&log->rstats.written, 1);
        return;
    }
    count(&log->rstats.write_failures, 1);
    note(log, "read index not written (segment intact): %s", stele_errmsg());
}

/* Fills j's header for seg; reads the footer's checksum. */
static int job_header(stele_log *log, struct segment *seg, struct write_job *j)
{
    int fd;
    int code = segment_fd_acquire(log, seg, &fd);
    if (code)
        return code;
    uint64_t ck = 0;
    code = footer_checksum(log, seg, fd, &ck);
    segment_fd_release(log, seg);
    j->h = (struct fmt_segidx_header){.segment_seed = seg->seed, .first_lsn = seg->first_lsn,
                                      .last_lsn = seg->last_lsn, .batch_count = seg->batch_count,
                                      .data_end = seg->data_end, .footer_checksum = ck};
    return code;
}

static void write_job_run(struct write_job *j)
{
    int code = job_header(j->log, j->seg, j);
    if (code == STELE_OK)
        code = write_file(j);
    account_write(j->log, code);
    free(j->refs);
    free(j);
}

static void *write_main(void *arg)
{
    pthread_setname_np(pthread_self(), "stele-segidx");
    write_job_run(arg);
    return NULL;
}

void segidx_write_wait(stele_log *log)
{
    if (!log->segidx_started)
        return;
    pthread_join(log->segidx_thread, NULL);
    log->segidx_started = 0;
}

void segidx_write_start(stele_log *log, struct segment *seg)
{
    segidx_write_wait(log);
    struct write_job *j = calloc(1, sizeof *j);
    pthread_mutex_lock(&seg->index_lock);
    size_t n = seg->index_count;
    struct batch_ref *refs = j ? malloc((n ? n : 1) * sizeof *refs) : NULL;
    if (refs)
        memcpy(refs, seg->index, n * sizeof *refs);
    pthread_mutex_unlock(&seg->index_lock);
    if (!j || !refs) {
        free(j);
        free(refs);
        err_set(STELE_ERR_NOMEM, "out of memory copying the index of %s", seg->path);
        account_write(log, STELE_ERR_NOMEM);
        err_clear();
        return;
    }
    *j = (struct write_job){.log = log, .seg = seg, .refs = refs, .count = n};
    if (pthread_create(&log->segidx_thread, NULL, write_main, j) != 0) {
        write_job_run(j); /* no thread: written here, the writer waits */
        err_clear();
        return;
    }
    log->segidx_started = 1;
}

/* ------------------------------------------------------------- lookups */

/* Installs refs as seg's table unless another thread did first. */
static void install(struct segment *seg, struct batch_ref *refs, size_t n, int from_file)
{
    pthread_mutex_lock(&seg->index_lock);
    if (!seg->indexed) {
        free(seg->index);
        seg->index = refs;
        seg->index_count = seg->index_cap = n;
        seg->indexed = 1;
        seg->index_from_file = from_file;
        refs = NULL;
    }
    pthread_mutex_unlock(&seg->index_lock);
    free(refs);
}

/* Loads or rebuilds seg's table; segidx_lock held, seg sealed and not indexed. */
static int ensure_locked(stele_log *log, struct segment *seg, int fd)
{
    uint64_t ck = 0;
    int code = footer_checksum(log, seg, fd, &ck);
    if (code)
        return code;
    char why[sizeof seg->path + 400];
    struct batch_ref *refs = NULL;
    size_t n = seg->batch_count;
    if (seg->index_distrusted)
        snprintf(why, sizeof why, "%s" STELE_SEGIDX_SUFFIX ": disagreed with the segment", seg->path);
    else if ((code = load_file(log, seg, ck, &refs, why, sizeof why)) != STELE_OK)
        return code;
    if (refs) {
        count(&log->rstats.loaded, 1);
        install(seg, refs, n, 1);
        return STELE_OK;
    }
    char damaged[400];
    if ((code = rebuild(log, seg, fd, &refs, &n, damaged, sizeof damaged)) != STELE_OK)
        return code;
    count(&log->rstats.rebuilt, 1);
    if (damaged[0])
        /* Derived from a damaged segment: kept in memory for the batches
         * that are fine, never written to a file (SPEC.md §19.3). */
        note(log, "read index rebuilt from a damaged segment, not written: %s", damaged);
    else
        note(log, "read index rebuilt from its segment: %s", why);
    if (!log->opts.read_only && !damaged[0]) {
        struct write_job j = {.log = log, .seg = seg, .refs = refs, .count = n,
                              .h = {.segment_seed = seg->seed, .first_lsn = seg->first_lsn,
                                    .last_lsn = seg->last_lsn, .batch_count = seg->batch_count,
                                    .data_end = seg->data_end, .footer_checksum = ck}};
        account_write(log, write_file(&j));
        err_clear();
    }
    install(seg, refs, n, 0);
    return STELE_OK;
}

int segidx_distrust(stele_log *log, struct segment *seg, uint64_t offset)
{
    pthread_mutex_lock(&log->segidx_lock);
    pthread_mutex_lock(&seg->index_lock);
    int from_file = seg->indexed && seg->index_from_file;
    if (from_file) {
        free(seg->index);
        seg->index = NULL;
        seg->index_count = seg->index_cap = 0;
        seg->indexed = 0;
        seg->index_from_file = 0;
        seg->index_distrusted = 1;
    }
    pthread_mutex_unlock(&seg->index_lock);
    pthread_mutex_unlock(&log->segidx_lock);
    if (from_file)
        note(log, "read index of %s disagreed with the segment at offset %llu: rebuilding", seg->path,
             (unsigned long long)offset);
    return from_file;
}

int segment_ensure_index(stele_log *log, struct segment *seg)
{
    pthread_mutex_lock(&seg->index_lock);
    int indexed = seg->indexed;
    pthread_mutex_unlock(&seg->index_lock);
    if (indexed)
        return STELE_OK;
    /* One load or rebuild at a time (they are rare: once per segment and
     * handle), so two readers never write the same temporary file. Readers
     * of segments already indexed, and the writer, do not wait for it. */
    pthread_mutex_lock(&log->segidx_lock);
    pthread_mutex_lock(&seg->index_lock);
    indexed = seg->indexed;
    pthread_mutex_unlock(&seg->index_lock);
    int code = STELE_OK, fd;
    if (!indexed && (code = segment_fd_acquire(log, seg, &fd)) == STELE_OK) {
        code = ensure_locked(log, seg, fd);
        segment_fd_release(log, seg);
    }
    pthread_mutex_unlock(&log->segidx_lock);
    return code;
}

void segidx_open_check(stele_log *log)
{
    /* The newest sealed segment is the one whose index a crash may have
     * kept from being written (the seal is durable before the index is
     * written). Its table is in memory when recovery finished its seal. */
    struct segment *seg = NULL;
    pthread_rwlock_rdlock(&log->seg_lock);
    for (size_t i = log->seg_count; i-- > 0 && !seg;)
        if (segment_sealed(log->segs[i]))
            seg = log->segs[i];
    pthread_rwlock_unlock(&log->seg_lock);
    if (!seg)
        return;
    pthread_mutex_lock(&seg->index_lock);
    int indexed = seg->indexed;
    pthread_mutex_unlock(&seg->index_lock);
    if (!indexed) {
        if (segment_ensure_index(log, seg) != STELE_OK)
            note(log, "read index of %s not checked at open: %.400s", seg->path, stele_errmsg());
        err_clear();
        return;
    }
    char path[sizeof seg->path + 8];
    idx_path(seg, path, sizeof path, 0);
    struct stat st;
    if (stat(path, &st) == 0)
        return; /* checked when first used */
    segidx_write_start(log, seg);
    segidx_write_wait(log);
}

/* First index i of seg's table whose batch was recorded at or after t
 * (index_count when none); index_lock held. */
static size_t first_at_or_after(const struct segment *seg, uint64_t t)
{
    size_t lo = 0, hi = seg->index_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (seg->index[mid].recorded_at_ns < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The first LSN of seg recorded at or after t, 0 when none is. */
static int segment_lsn_at_time(stele_log *log, struct segment *seg, uint64_t t, uint64_t *out_lsn)
{
    int code = segment_ensure_index(log, seg);
    if (code)
        return code;
    pthread_mutex_lock(&seg->index_lock);
    size_t i = first_at_or_after(seg, t);
    *out_lsn = i < seg->index_count ? seg->index[i].first_lsn : 0;
    pthread_mutex_unlock(&seg->index_lock);
    return STELE_OK;
}

int stele_lsn_at_time(stele_log *log, uint64_t time_ns, uint64_t *out_lsn)
{
    err_clear();
    if (!log || !out_lsn)
        return err_set(STELE_ERR_INVALID, "lsn_at_time: log and out_lsn are required");
    if (log->opts.read_only) {
        int code = log_refresh(log);
        if (code)
            return code;
    }
    uint64_t vis = __atomic_load_n(&log->visible_lsn, __ATOMIC_ACQUIRE);
    /* Binary search over the segments for the first one holding a batch
     * recorded at or after time_ns (recorded time never decreases along the
     * log, SPEC.md §4), then over that segment's table. Segments are only
     * ever added, so a snapshot of the count is enough. */
    pthread_rwlock_rdlock(&log->seg_lock);
    size_t n = log->seg_count;
    pthread_rwlock_unlock(&log->seg_lock);
    size_t lo = 0, hi = n;
    uint64_t found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        pthread_rwlock_rdlock(&log->seg_lock);
        struct segment *seg = log->segs[mid];
        pthread_rwlock_unlock(&log->seg_lock);
        uint64_t lsn;
        int code = segment_lsn_at_time(log, seg, time_ns, &lsn);
        if (code)
            return code;
        if (lsn) {
            found = lsn;
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    *out_lsn = found && found <= vis ? found : vis + 1;
    return STELE_OK;
}

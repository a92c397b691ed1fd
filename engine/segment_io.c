/*
 * segment_io.c - creating, sealing and reading segment files (SPEC.md §3, §4, §7).
 *
 * Creating a segment (a roll) is done so that a crash at any step leaves
 * either no new segment or a complete one, and so that no record in it can be
 * acknowledged before its directory entry is durable (RELIABILITY S5, S6):
 *   1. open <name>.tmp with O_EXCL;
 *   2. fallocate the whole segment, so the file system has reserved the space
 *      (ENOSPC surfaces here, at the roll, not in the middle of a batch), and
 *      write zeros over it (see zero_fill);
 *   3. write the header block and fdatasync;
 *   4. rename <name>.tmp to <name>, then fsync the directory.
 * A stray .tmp left by a crash is deleted at the next open.
 *
 * Sealing writes and syncs the footer after the last batch, cuts the
 * preallocated tail (ftruncate to the footer's end), fsyncs and makes the file
 * read-only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>
#include <zstd.h>

#include "internal.h"

struct segment *segment_new(const char *path)
{
    struct segment *seg = calloc(1, sizeof *seg);
    if (!seg)
        return NULL;
    snprintf(seg->path, sizeof seg->path, "%s", path);
    seg->fd = -1;
    seg->dio_fd = -2;
    pthread_mutex_init(&seg->index_lock, NULL);
    return seg;
}

void segment_free(stele_log *log, struct segment *seg)
{
    if (!seg)
        return;
    if (seg->dio_fd >= 0)
        log->io->ops->close(log->io, seg->dio_fd);
    if (seg->fd >= 0) {
        log->io->ops->close(log->io, seg->fd);
        pthread_mutex_lock(&log->fd_lock);
        log->open_fds--;
        pthread_mutex_unlock(&log->fd_lock);
    }
    pthread_mutex_destroy(&seg->index_lock);
    free(seg->index);
    free(seg);
}

/* Open fds of sealed segments kept for reuse; well below the usual 1024 limit. */
#define SEALED_FDS_MAX 64

/* Closes the least recently used idle sealed fds while over the cap. */
static void evict_locked(stele_log *log)
{
    while (log->open_fds > SEALED_FDS_MAX) {
        struct segment *lru = NULL;
        pthread_rwlock_rdlock(&log->seg_lock);
        for (size_t i = 0; i < log->seg_count; i++) {
            struct segment *s = log->segs[i];
            if (s->fd >= 0 && s->fd_users == 0 && segment_sealed(s) && (!lru || s->fd_last_use < lru->fd_last_use))
                lru = s;
        }
        pthread_rwlock_unlock(&log->seg_lock);
        if (!lru)
            return;
        log->io->ops->close(log->io, lru->fd);
        lru->fd = -1;
        log->open_fds--;
    }
}

void segment_fd_adopt(stele_log *log, struct segment *seg, int fd)
{
    pthread_mutex_lock(&log->fd_lock);
    evict_locked(log);
    seg->fd = fd;
    seg->fd_last_use = ++log->fd_tick;
    log->open_fds++;
    pthread_mutex_unlock(&log->fd_lock);
}

int segment_fd_acquire(stele_log *log, struct segment *seg, int *out_fd)
{
    int code = STELE_OK;
    pthread_mutex_lock(&log->fd_lock);
    if (seg->fd < 0) {
        evict_locked(log);
        int fd = log->io->ops->open(log->io, seg->path, O_RDONLY, 0);
        if (fd < 0) {
            code = err_sys(-fd, "reopen segment", seg->path);
        } else {
            seg->fd = fd;
            log->open_fds++;
        }
    }
    if (code == STELE_OK) {
        seg->fd_users++;
        seg->fd_last_use = ++log->fd_tick;
        *out_fd = seg->fd;
    }
    pthread_mutex_unlock(&log->fd_lock);
    return code;
}

void segment_fd_release(stele_log *log, struct segment *seg)
{
    pthread_mutex_lock(&log->fd_lock);
    seg->fd_users--;
    evict_locked(log);
    pthread_mutex_unlock(&log->fd_lock);
}

static int refs_push(struct batch_ref **refs, size_t *count, size_t *cap, const struct batch_ref *ref)
{
    if (*count == *cap) {
        size_t n = *cap ? *cap * 2 : 256;
        struct batch_ref *p = realloc(*refs, n * sizeof *p);
        if (!p)
            return err_set(STELE_ERR_NOMEM, "out of memory growing a batch index");
        *refs = p;
        *cap = n;
    }
    (*refs)[(*count)++] = *ref;
    return STELE_OK;
}

int segment_index_add(struct segment *seg, const struct batch_ref *ref)
{
    pthread_mutex_lock(&seg->index_lock);
    int code = refs_push(&seg->index, &seg->index_count, &seg->index_cap, ref);
    pthread_mutex_unlock(&seg->index_lock);
    return code;
}

static int io_fail(int neg_errno, const char *op, const char *path)
{
    return err_sys(-neg_errno, op, path);
}

/* Opens the O_DIRECT descriptor batches are written through (path: the
 * segment's file, under whatever name it has now) and checks that the file
 * system takes the engine's 4096-byte alignment (SPEC.md §7.5): *out_fd, or
 * -1 with why it cannot be used in why (the segment is then written
 * buffered). Fails only on a real failure to open. */
static int direct_fd(struct io *io, const char *path, int *out_fd, char *why, size_t why_size)
{
    *out_fd = -1;
    why[0] = '\0';
    int fd = io->ops->open(io, path, O_WRONLY | O_DIRECT, 0);
    if (fd < 0 && fd != -EINVAL && fd != -EOPNOTSUPP) /* not "unsupported": a real failure */
        return err_sys(-fd, "open for direct writes", path);
    if (fd < 0) {
        snprintf(why, why_size, "open with O_DIRECT: %s", strerror(-fd));
        return STELE_OK;
    }
    struct statx stx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0)
        snprintf(why, why_size, "statx: %s", strerror(errno));
    else if (!(stx.stx_mask & STATX_DIOALIGN) || stx.stx_dio_mem_align == 0)
        snprintf(why, why_size, "the file system does not say its direct I/O alignment");
    else if (STELE_BLOCK_SIZE % stx.stx_dio_mem_align != 0 || STELE_BLOCK_SIZE % stx.stx_dio_offset_align != 0)
        snprintf(why, why_size, "direct I/O alignment %u (memory) / %u (offset) does not divide %u",
                 stx.stx_dio_mem_align, stx.stx_dio_offset_align, STELE_BLOCK_SIZE);
    if (why[0])
        io->ops->close(io, fd);
    else
        *out_fd = fd;
    return STELE_OK;
}

/* seg is written through dio_fd (or buffered, for the reason why): stats
 * say which, and why (RELIABILITY S17: never a silent fallback). */
static void direct_adopt(stele_log *log, struct segment *seg, int dio_fd, const char *why)
{
    seg->dio_fd = dio_fd;
    pthread_mutex_lock(&log->q_lock);
    log->stats.direct_io = dio_fd >= 0;
    if (why[0]) {
        /* The segment's file name (not its directory) and why, within the note's size. */
        const char *name = strrchr(seg->path, '/');
        log->stats.direct_io_fallbacks++;
        snprintf(log->stats.io_note, sizeof log->stats.io_note, "%.40s: buffered writes: %.100s",
                 name ? name + 1 : seg->path, why);
    }
    pthread_mutex_unlock(&log->q_lock);
}

static int open_direct(stele_log *log, struct segment *seg, const char *path)
{
    seg->dio_fd = -1;
    if (!log->opts.direct_io || log->opts.read_only)
        return STELE_OK;
    char why[200];
    int fd, code = direct_fd(log->io, path, &fd, why, sizeof why);
    if (code == STELE_OK)
        direct_adopt(log, seg, fd, why);
    return code;
}

int segment_write_fd(stele_log *log, struct segment *seg, int *out_fd)
{
    int code = seg->dio_fd == -2 ? open_direct(log, seg, seg->path) : STELE_OK;
    *out_fd = seg->dio_fd >= 0 ? seg->dio_fd : seg->fd;
    return code;
}

/* Writes zeros over the whole preallocated segment. fallocate leaves
 * "unwritten" extents, and the first write into one makes every later
 * fdatasync also commit an extent conversion to the file system journal;
 * written zeros make those syncs pure data flushes (measured on ext4: 139 us
 * instead of 315 us per 4 KiB write + fdatasync). The sync after the header
 * makes the zeros durable too. */
static int zero_fill(struct io *io, int fd, uint64_t capacity, const char *path)
{
    size_t chunk = capacity < (1u << 20) ? (size_t)capacity : (1u << 20);
    uint8_t *zeros = aligned_alloc(STELE_BLOCK_SIZE, chunk); /* capacity is a multiple of the block */
    if (!zeros)
        return err_set(STELE_ERR_NOMEM, "out of memory zero-filling %s", path);
    memset(zeros, 0, chunk);
    int r = 0;
    for (uint64_t off = STELE_SEGMENT_HEADER_SIZE; off < capacity && r == 0; off += chunk) {
        size_t len = capacity - off < chunk ? (size_t)(capacity - off) : chunk;
        r = io->ops->write(io, fd, zeros, len, off, 0);
    }
    free(zeros);
    return r < 0 ? io_fail(r, "zero-fill", path) : STELE_OK;
}

/* Preallocates the file fd (path) to capacity bytes and writes zeros over
 * all but its header block, through dio_fd when there is one: 64 MiB of
 * zeros need not pass through the page cache. */
static int prepare_file(struct io *io, int fd, int dio_fd, uint64_t capacity, const char *path)
{
    int r = io->ops->fallocate(io, fd, capacity);
    if (r < 0) {
        /* Without fallocate (some file systems) the size is set instead; the
         * space is then not reserved, so ENOSPC may come at a later write,
         * which fences the log like any failed write. */
        if (r != -EOPNOTSUPP || (r = io->ops->ftruncate(io, fd, capacity)) < 0)
            return io_fail(r, "preallocate", path);
    }
    return zero_fill(io, dio_fd >= 0 ? dio_fd : fd, capacity, path);
}

/* ------------------------------------------------------ the spare segment */

/* The next segment's file, made ahead (SPEC.md §7.2): while the active
 * segment fills, a thread of its own (stele-spare) creates SPARE_NAME,
 * preallocates it and writes its zeros, so that a roll only writes the
 * header, renames the file into place and syncs the directory, instead of
 * making the writer wait for 64 MiB of zeros (about 40 ms, the p99 of a
 * busy log). Its name, header and place in the chain are only known at the
 * roll; until then it is a .tmp file like any other, deleted at the next
 * open after a crash. Only logs with a second, plain I/O backend for
 * background work (log->aux_io: io_uring logs) make one; with the others a
 * roll makes its file itself, as before, in one thread, so that a test's
 * injected faults and crash steps come in a fixed order. */
#define SPARE_NAME "segment.spare.tmp"

struct seg_spare {
    pthread_t thread;
    struct io *io;
    uint64_t capacity;       /* the log's segment_size, fixed at creation */
    int direct;              /* open an O_DIRECT fd too */
    int fd;                  /* -1 when not open */
    int dio_fd;              /* -1: none (why says why, when direct) */
    int code;                /* STELE_OK once made */
    char msg[160];           /* else what failed */
    char why[200];
    char path[4096 + 40];
};

static void *spare_main(void *arg)
{
    struct seg_spare *sp = arg;
    pthread_setname_np(pthread_self(), "stele-spare");
    struct io *io = sp->io;
    /* A spare left by an earlier handle of this log (which holds its lock)
     * is only ever ours: truncated and made again. */
    int r = io->ops->open(io, sp->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (r < 0) {
        sp->code = io_fail(r, "create", sp->path);
    } else {
        sp->fd = r;
        sp->code = sp->direct ? direct_fd(io, sp->path, &sp->dio_fd, sp->why, sizeof sp->why) : STELE_OK;
        if (sp->code == STELE_OK)
            sp->code = prepare_file(io, sp->fd, sp->dio_fd, sp->capacity, sp->path);
    }
    if (sp->code != STELE_OK) /* the message is this thread's: kept for the roll (spare_take) */
        snprintf(sp->msg, sizeof sp->msg, "%s", stele_errmsg());
    return NULL;
}

/* Closes the spare's files and removes it. */
static void spare_free(struct seg_spare *sp)
{
    if (sp->dio_fd >= 0)
        sp->io->ops->close(sp->io, sp->dio_fd);
    if (sp->fd >= 0) {
        sp->io->ops->close(sp->io, sp->fd);
        sp->io->ops->unlink(sp->io, sp->path); /* a leftover is removed at the next open anyway */
    }
    free(sp);
}

void segment_spare_start(stele_log *log)
{
    if (log->spare || !log->aux_io || log->opts.read_only)
        return;
    struct seg_spare *sp = calloc(1, sizeof *sp);
    if (!sp)
        return; /* the next roll makes its file itself */
    *sp = (struct seg_spare){.io = log->aux_io, .capacity = log->meta.segment_size,
                             .direct = log->opts.direct_io, .fd = -1, .dio_fd = -1};
    snprintf(sp->path, sizeof sp->path, "%s/" SPARE_NAME, log->dir);
    if (pthread_create(&sp->thread, NULL, spare_main, sp) != 0) {
        free(sp);
        return;
    }
    log->spare = sp;
}

/* The spare, made, once its thread is done; NULL when there is none or it
 * could not be made. Then the roll makes its file itself and reports what
 * fails; a spare's failure is counted in stats, with its message, never
 * dropped silently. */
static struct seg_spare *spare_take(stele_log *log)
{
    struct seg_spare *sp = log->spare;
    if (!sp)
        return NULL;
    log->spare = NULL;
    pthread_join(sp->thread, NULL);
    if (sp->code != STELE_OK) {
        pthread_mutex_lock(&log->q_lock);
        log->stats.segment_spare_failures++;
        snprintf(log->stats.spare_note, sizeof log->stats.spare_note, "%s", sp->msg);
        pthread_mutex_unlock(&log->q_lock);
        spare_free(sp);
        return NULL;
    }
    return sp;
}

void segment_spare_discard(stele_log *log)
{
    struct seg_spare *sp = log->spare;
    if (!sp)
        return;
    log->spare = NULL;
    pthread_join(sp->thread, NULL);
    spare_free(sp);
}

int segment_create(stele_log *log, uint64_t seq, uint64_t first_lsn, uint64_t prev_chain,
                   struct segment **out_seg)
{
    struct io *io = log->io;
    char path[4096 + 32], tmp[4096 + 40];
    int code = log_seg_path(log, first_lsn, path, sizeof path);
    if (code)
        return code;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    struct segment *seg = segment_new(path);
    if (!seg)
        return err_set(STELE_ERR_NOMEM, "out of memory creating %s", path);
    seg->seq = seq;
    seg->first_lsn = first_lsn;
    seg->last_lsn = first_lsn - 1;
    seg->seed = stele_segment_seed(log->meta.log_id, seq, first_lsn);
    seg->capacity = log->meta.segment_size;
    seg->data_end = STELE_SEGMENT_HEADER_SIZE;
    seg->prev_chain = seg->chain = prev_chain;
    seg->indexed = 1;

    struct fmt_segment_header h;
    memcpy(h.log_id, log->meta.log_id, sizeof h.log_id);
    h.seq = seq;
    h.first_lsn = first_lsn;
    h.segment_size = seg->capacity;
    h.created_at_ns = now_ns();
    h.prev_chain = prev_chain;
    uint8_t block[STELE_SEGMENT_HEADER_SIZE];
    fmt_segment_header_encode(&h, block, sizeof block);

    int r;
    struct seg_spare *sp = spare_take(log);
    if (sp) {
        /* Made ahead: the file takes the segment's name from here on. */
        snprintf(tmp, sizeof tmp, "%s", sp->path);
        segment_fd_adopt(log, seg, sp->fd);
        if (sp->direct)
            direct_adopt(log, seg, sp->dio_fd, sp->why);
        else
            seg->dio_fd = -1;
        sp->fd = sp->dio_fd = -1;
        free(sp);
    } else {
        r = io->ops->open(io, tmp, O_RDWR | O_CREAT | O_EXCL, 0644);
        if (r < 0) {
            code = io_fail(r, "create", tmp);
            goto fail;
        }
        segment_fd_adopt(log, seg, r);
        if ((code = open_direct(log, seg, tmp)) != STELE_OK)
            goto fail;
        if ((code = prepare_file(io, seg->fd, seg->dio_fd, seg->capacity, tmp)) != STELE_OK)
            goto fail;
    }
    if ((r = io->ops->write(io, seg->fd, block, sizeof block, 0, 1)) < 0) {
        code = io_fail(r, "write header of", tmp);
        goto fail;
    }
    if ((r = io->ops->rename(io, tmp, path)) < 0) {
        code = io_fail(r, "rename into place", tmp);
        goto fail;
    }
    if ((r = io->ops->sync_dir(io, log->dir)) < 0) {
        code = io_fail(r, "sync directory", log->dir);
        goto fail;
    }
    XXH3_64bits_reset_withSeed(log->file_hash, seg->seed);
    XXH3_64bits_update(log->file_hash, block, sizeof block);
    *out_seg = seg;
    return STELE_OK;
fail:
    segment_free(log, seg);
    return code;
}

int segment_seal(stele_log *log, struct segment *seg)
{
    struct io *io = log->io;
    struct fmt_footer f = {
        .last_lsn = seg->last_lsn,
        .record_count = seg->last_lsn + 1 - seg->first_lsn,
        .batch_count = seg->batch_count,
        .data_end = seg->data_end,
        .chain = seg->chain,
        .file_hash = XXH3_64bits_digest(log->file_hash),
        .sealed_at_ns = now_ns(),
    };
    uint8_t block[STELE_FOOTER_SIZE];
    fmt_footer_encode(&f, seg->seed, block, sizeof block);
    /* The footer vouches for every batch before it, so those are made
     * durable first: in interval and none modes some may not be yet, and the
     * footer's own sync would race them to the disk (a crash in between could
     * keep a footer whose batches are lost). The footer is made durable
     * before the file is cut to it, and the file is made read-only only
     * after both are durable: so a segment whose mode says sealed always
     * ends in its footer, and a crash in between leaves a footer that
     * recovery finds by scanning (SPEC.md §7). */
    int r = io->ops->fdatasync(io, seg->fd);
    if (r < 0)
        return io_fail(r, "sync before sealing", seg->path);
    if (seg->dio_fd >= 0) {
        io->ops->close(io, seg->dio_fd); /* everything it wrote is durable: nothing to lose */
        seg->dio_fd = -1;
    }
    r = io->ops->write(io, seg->fd, block, sizeof block, seg->data_end, 1);
    if (r < 0)
        return io_fail(r, "write footer of", seg->path);
    if ((r = io->ops->ftruncate(io, seg->fd, seg->data_end + STELE_FOOTER_SIZE)) < 0)
        return io_fail(r, "truncate sealed", seg->path);
    if ((r = io->ops->fsync(io, seg->fd)) < 0)
        return io_fail(r, "sync sealed", seg->path);
    if ((r = io->ops->fchmod(io, seg->fd, 0444)) < 0)
        return io_fail(r, "make read-only", seg->path);
    segment_set_sealed(seg);
    return STELE_OK;
}

int segment_open_sealed(stele_log *log, struct segment *seg, uint64_t file_size)
{
    uint8_t block[STELE_FOOTER_SIZE];
    if (file_size < STELE_SEGMENT_HEADER_SIZE + STELE_FOOTER_SIZE || file_size % STELE_BLOCK_SIZE != 0)
        return err_set(STELE_ERR_CORRUPT, "%s: sealed segment has size %llu, not a whole number of blocks "
                       "with a footer (truncated?)", seg->path, (unsigned long long)file_size);
    int r = io_read_full(log->io, seg->fd, block, sizeof block, file_size - STELE_FOOTER_SIZE);
    if (r < 0)
        return io_fail(r, "read footer of", seg->path);
    struct fmt_footer f;
    enum fmt_status st = fmt_footer_decode(block, sizeof block, seg->seed, &f);
    if (st != FMT_OK)
        return err_set(STELE_ERR_CORRUPT, "%s offset %llu: footer %s (a sealed segment must end with "
                       "its footer; truncated or damaged?)", seg->path,
                       (unsigned long long)(file_size - STELE_FOOTER_SIZE), fmt_status_str(st));
    if (f.data_end != file_size - STELE_FOOTER_SIZE || f.last_lsn + 1 < seg->first_lsn ||
        f.record_count != f.last_lsn + 1 - seg->first_lsn)
        return err_set(STELE_ERR_CORRUPT, "%s offset %llu: footer fields disagree with the file "
                       "(data_end %llu, last LSN %llu)", seg->path,
                       (unsigned long long)(file_size - STELE_FOOTER_SIZE), (unsigned long long)f.data_end,
                       (unsigned long long)f.last_lsn);
    segment_set_sealed(seg);
    seg->last_lsn = f.last_lsn;
    seg->data_end = f.data_end;
    seg->chain = f.chain;
    seg->batch_count = f.batch_count;
    return STELE_OK;
}

void batch_buf_free(struct batch_buf *b)
{
    free(b->frame);
    free(b->raw);
    ZSTD_freeDCtx(b->dctx);
    struct dict_cache *dicts = b->dicts;
    memset(b, 0, sizeof *b);
    b->dicts = dicts; /* not owned: the buffer can be reused */
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return STELE_OK;
    uint8_t *p = realloc(*buf, need);
    if (!p)
        return err_set(STELE_ERR_NOMEM, "out of memory for a %zu-byte read buffer", need);
    *buf = p;
    *cap = need;
    return STELE_OK;
}

int batch_body_open(struct batch_buf *b, const uint8_t *stored, const char *path, uint64_t offset)
{
    const struct fmt_batch_header *h = &b->header;
    if (h->compression == FMT_COMPRESSION_NONE) {
        b->body = stored;
        return STELE_OK;
    }
    /* RELIABILITY S24: the stored bytes passed their checksum before we get
     * here, and the output is bounded by the declared raw size, itself
     * bounded by STELE_BATCH_BODY_SIZE_MAX, so a hostile frame cannot make us
     * allocate or write more than that. */
    unsigned long long declared = ZSTD_getFrameContentSize(stored, h->stored_size);
    if (declared != h->raw_size)
        return err_set(STELE_ERR_CORRUPT, "%s offset %llu: zstd frame declares %llu bytes, batch says %u",
                       path, (unsigned long long)offset, declared, h->raw_size);
    int code = grow(&b->raw, &b->raw_cap, h->raw_size ? h->raw_size : 1);
    if (code)
        return code;
    b->dict_error = 0;
    if (h->dict_id != 0) /* SPEC.md §18.4 */
        return dict_body_decompress(b, stored, path, offset);
    size_t n = ZSTD_decompress(b->raw, h->raw_size, stored, h->stored_size);
    if (ZSTD_isError(n) || n != h->raw_size)
        return err_set(STELE_ERR_CORRUPT, "%s offset %llu: zstd body does not decompress to %u bytes (%s)",
                       path, (unsigned long long)offset, h->raw_size,
                       ZSTD_isError(n) ? ZSTD_getErrorName(n) : "size mismatch");
    b->body = b->raw;
    return STELE_OK;
}

int batch_check(stele_log *log, struct segment *seg, const struct batch_ref *ref, const uint8_t *frame,
                struct batch_buf *b)
{
    b->dicts = log->dicts; /* a body may name a dictionary (SPEC.md §18) */
    (void)log;
    uint64_t chain;
    enum fmt_status st = fmt_batch_header_decode(frame, ref->frame_size, seg->seed, &b->header, &chain);
    if (st == FMT_OK && (b->header.first_lsn != ref->first_lsn || b->header.record_count != ref->record_count ||
                         fmt_batch_frame_size(b->header.stored_size) != ref->frame_size))
        st = FMT_BAD_FIELD;
    if (st == FMT_OK)
        st = fmt_batch_body_check(&b->header, frame + STELE_BATCH_HEADER_SIZE,
                                  ref->frame_size - STELE_BATCH_HEADER_SIZE, seg->seed);
    /* The padding after the body must be zero too: it is part of the frame,
     * and garbage there would be a torn or misdirected write. */
    if (st == FMT_OK && !fmt_is_zero(frame + STELE_BATCH_HEADER_SIZE + b->header.stored_size,
                                     ref->frame_size - STELE_BATCH_HEADER_SIZE - b->header.stored_size))
        st = FMT_BAD_FIELD;
    if (st != FMT_OK)
        return err_set(STELE_ERR_CORRUPT, "%s offset %llu: batch at LSN %llu %s", seg->path,
                       (unsigned long long)ref->offset, (unsigned long long)ref->first_lsn, fmt_status_str(st));
    return batch_body_open(b, frame + STELE_BATCH_HEADER_SIZE, seg->path, ref->offset);
}

int batch_read(stele_log *log, struct segment *seg, const struct batch_ref *ref, struct batch_buf *b)
{
    int code = grow(&b->frame, &b->frame_cap, ref->frame_size);
    if (code)
        return code;
    int fd;
    if ((code = segment_fd_acquire(log, seg, &fd)) != STELE_OK)
        return code;
    int r = io_read_full(log->io, fd, b->frame, ref->frame_size, ref->offset);
    segment_fd_release(log, seg);
    segidx_count_read(log, ref->frame_size);
    if (r < 0)
        return err_set(err_code_from_errno(-r) == STELE_ERR_NOT_FOUND ? STELE_ERR_IO : err_code_from_errno(-r),
                       "read batch at %s offset %llu (LSN %llu): %s", seg->path,
                       (unsigned long long)ref->offset, (unsigned long long)ref->first_lsn,
                       r == -ENODATA ? "file ends early" : strerror(-r));
    return batch_check(log, seg, ref, b->frame, b);
}

/*
 * recover.c - opening the segments of a log and finding where it ends
 * (SPEC.md §10). The end is found by scanning batches, never from file sizes.
 *
 * Every segment but the last must be sealed: its footer is checked, never
 * "repaired". The last segment, if not sealed, is first fdatasync'ed, so that
 * recovery only decides on bytes that are durable (RELIABILITY S8), then
 * scanned batch by batch. At the first position X that does not hold the
 * next valid batch, the rest of the file decides what X is:
 *  - a footer for exactly this content: a crash interrupted sealing; the
 *    seal is finished;
 *  - a later valid batch whose durable_lsn covers the LSN expected at X: the
 *    damaged bytes had been synced (and maybe acknowledged), so this is
 *    corruption; open fails naming file, offset and LSN, nothing is cut;
 *  - otherwise a torn tail, bytes never known durable: a writer zeroes them,
 *    syncs, counts them, and the next batch is written at X. A read-only
 *    handle just stops at X.
 * Zeroing only ever removes invalid bytes, so a crash during recovery leaves
 * a state that recovery classifies the same way (RELIABILITY S7).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "internal.h"

#define SCAN_CHUNK_SIZE (1u << 20)

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists the first LSNs of the segment files in dir, sorted; a writer also
 * deletes stray *.tmp files left by an interrupted segment creation. */
static int list_segments(stele_log *log, uint64_t **out, size_t *out_count)
{
    DIR *d = opendir(log->dir);
    if (!d)
        return err_sys(errno, "open directory", log->dir);
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    int code = STELE_OK, removed = 0;
    struct dirent *e;
    while (code == STELE_OK && (e = readdir(d)) != NULL) {
        uint64_t first;
        size_t len = strlen(e->d_name);
        if (!log->opts.read_only && len > 4 && strcmp(e->d_name + len - 4, ".tmp") == 0) {
            char path[4096 + 300];
            snprintf(path, sizeof path, "%s/%s", log->dir, e->d_name);
            int r = log->io->ops->unlink(log->io, path);
            if (r < 0)
                code = err_sys(-r, "remove stray", path);
            removed++;
            continue;
        }
        if (!fmt_segment_name_parse(e->d_name, &first))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            uint64_t *p = realloc(v, cap * sizeof *p);
            if (!p) {
                code = err_set(STELE_ERR_NOMEM, "out of memory listing %s", log->dir);
                break;
            }
            v = p;
        }
        v[n++] = first;
    }
    closedir(d);
    if (code == STELE_OK && removed) {
        log->stats.recovery_stray_files += (uint64_t)removed;
        int r = log->io->ops->sync_dir(log->io, log->dir);
        if (r < 0)
            code = err_sys(-r, "sync directory", log->dir);
    }
    if (code) {
        free(v);
        return code;
    }
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_u64);
    *out = v;
    *out_count = n;
    return STELE_OK;
}

/* Opens one segment file and checks its header against the log and its predecessor. */
static int open_segment(stele_log *log, uint64_t first_lsn, uint64_t seq, uint64_t prev_chain,
                        struct segment **out_seg, uint64_t *out_size)
{
    char path[4096 + 32];
    int code = log_seg_path(log, first_lsn, path, sizeof path);
    if (code)
        return code;
    struct segment *seg = segment_new(path);
    if (!seg)
        return err_set(STELE_ERR_NOMEM, "out of memory opening %s", path);
    int fd = log->io->ops->open(log->io, path, log->opts.read_only ? O_RDONLY : O_RDWR, 0);
    if (fd < 0 && fd == -EACCES && !log->opts.read_only) /* sealed files are 0444 */
        fd = log->io->ops->open(log->io, path, O_RDONLY, 0);
    if (fd < 0) {
        code = err_sys(-fd, "open segment", path);
        goto fail;
    }
    segment_fd_adopt(log, seg, fd);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        code = err_sys(errno, "stat", path);
        goto fail;
    }
    uint8_t block[STELE_SEGMENT_HEADER_SIZE];
    ssize_t got = log->io->ops->pread(log->io, fd, block, sizeof block, 0);
    if (got < 0) {
        code = err_sys((int)-got, "read header of", path);
        goto fail;
    }
    struct fmt_segment_header h;
    enum fmt_status stt = fmt_segment_header_decode(block, (size_t)got, &h);
    if (stt == FMT_BAD_VERSION) {
        code = err_set(STELE_ERR_FORMAT, "%s: unsupported format version", path);
        goto fail;
    }
    if (stt != FMT_OK) {
        code = err_set(STELE_ERR_CORRUPT, "%s offset 0: segment header %s", path, fmt_status_str(stt));
        goto fail;
    }
    if (memcmp(h.log_id, log->meta.log_id, sizeof h.log_id) != 0 || h.first_lsn != first_lsn ||
        h.seq != seq || h.prev_chain != prev_chain) {
        code = err_set(STELE_ERR_CORRUPT,
                       "%s offset 0: header does not continue the log (log id, seq %llu vs %llu, "
                       "first LSN %llu, or chain differs): a segment is missing, foreign or out of order",
                       path, (unsigned long long)h.seq, (unsigned long long)seq, (unsigned long long)h.first_lsn);
        goto fail;
    }
    seg->seq = seq;
    seg->first_lsn = first_lsn;
    seg->last_lsn = first_lsn - 1;
    seg->seed = stele_segment_seed(log->meta.log_id, seq, first_lsn);
    seg->capacity = h.segment_size;
    seg->prev_chain = seg->chain = prev_chain;
    seg->data_end = STELE_SEGMENT_HEADER_SIZE;
    seg->mode = st.st_mode;
    *out_seg = seg;
    *out_size = (uint64_t)st.st_size;
    return STELE_OK;
fail:
    segment_free(log, seg);
    return code;
}

struct scan {
    uint8_t *frame;
    size_t frame_cap;
    struct batch_buf b;
};

/* Checks the batch at seg->data_end; on success indexes it and advances.
 * Returns 1 when a batch was taken, 0 when the position holds none, <0 never
 * (errors come back as codes through *out_code). */
static int take_batch(stele_log *log, struct segment *seg, uint64_t file_size, int hash, int *out_code)
{
    uint64_t off = seg->data_end, lsn = seg->last_lsn + 1;
    uint8_t hb[STELE_BATCH_HEADER_SIZE];
    *out_code = STELE_OK;
    if (off + STELE_BATCH_HEADER_SIZE > file_size)
        return 0;
    int r = io_read_full(log->io, seg->fd, hb, sizeof hb, off);
    if (r < 0) {
        *out_code = err_sys(-r, "read", seg->path);
        return 0;
    }
    struct fmt_batch_header h;
    uint64_t chain;
    if (fmt_batch_header_decode(hb, sizeof hb, seg->seed, &h, &chain) != FMT_OK || h.first_lsn != lsn ||
        h.prev_chain != seg->chain)
        return 0;
    uint64_t frame = fmt_batch_frame_size(h.stored_size);
    if (off + frame > file_size || off + frame + STELE_FOOTER_SIZE > seg->capacity)
        return 0;
    struct batch_ref ref = {lsn, off, h.record_count, (uint32_t)frame, 0};
    struct batch_buf b = {0};
    int code = batch_read(log, seg, &ref, &b);
    if (code == STELE_OK && fmt_batch_records(&b.header, b.body, b.header.raw_size, seg->seed, NULL, NULL, NULL) != FMT_OK)
        code = STELE_ERR_CORRUPT;
    /* The batch's recorded time, for reads by time (SPEC.md §19): its
     * first record's, which fmt_batch_records has just checked. */
    if (code == STELE_OK && batch_recorded_at(b.body, b.header.raw_size, lsn, seg->seed, &ref.recorded_at_ns) != 0)
        code = STELE_ERR_CORRUPT;
    if (code == STELE_OK && hash)
        XXH3_64bits_update(log->file_hash, b.frame, frame);
    int dict_error = b.dict_error;
    batch_buf_free(&b);
    /* SPEC.md §18.4: its stored bytes passed their checksum, so the batch
     * was written whole: a missing or damaged dictionary is damage to the
     * log, never a torn tail to cut. */
    if (code == STELE_ERR_CORRUPT && dict_error) {
        *out_code = code;
        return 0;
    }
    if (code == STELE_ERR_CORRUPT) {
        err_clear();
        return 0;
    }
    if (code == STELE_OK)
        code = segment_index_add(seg, &ref);
    if (code) {
        *out_code = code;
        return 0;
    }
    __atomic_store_n(&seg->data_end, off + frame, __ATOMIC_RELAXED);
    seg->last_lsn = lsn + h.record_count - 1;
    seg->chain = chain;
    seg->batch_count++;
    return 1;
}

/* Is there a footer at seg->data_end for exactly the content scanned? */
static int footer_here(stele_log *log, struct segment *seg, uint64_t file_size)
{
    uint8_t block[STELE_FOOTER_SIZE];
    struct fmt_footer f;
    if (seg->data_end + STELE_FOOTER_SIZE > file_size ||
        io_read_full(log->io, seg->fd, block, sizeof block, seg->data_end) < 0 ||
        fmt_footer_decode(block, sizeof block, seg->seed, &f) != FMT_OK)
        return 0;
    /* A writer has hashed every byte it scanned; a read-only handle has not
     * and relies on the chain (SPEC.md §10.2 rule 1). */
    int hash_ok = log->opts.read_only || f.file_hash == XXH3_64bits_digest(log->file_hash);
    return f.data_end == seg->data_end && f.last_lsn == seg->last_lsn && f.chain == seg->chain &&
           f.batch_count == seg->batch_count && f.record_count == seg->last_lsn + 1 - seg->first_lsn && hash_ok;
}

/* Looks past X for evidence that X was durable, and for the end of non-zero bytes. */
static int classify_tail(stele_log *log, struct segment *seg, uint64_t file_size, uint64_t *out_nonzero_end)
{
    uint64_t x = seg->data_end, lsn = seg->last_lsn + 1, nonzero_end = x;
    uint8_t *chunk = malloc(SCAN_CHUNK_SIZE);
    if (!chunk)
        return err_set(STELE_ERR_NOMEM, "out of memory scanning %s", seg->path);
    int code = STELE_OK;
    for (uint64_t base = x; base < file_size && code == STELE_OK; base += SCAN_CHUNK_SIZE) {
        size_t len = file_size - base < SCAN_CHUNK_SIZE ? (size_t)(file_size - base) : SCAN_CHUNK_SIZE;
        int r = io_read_full(log->io, seg->fd, chunk, len, base);
        if (r < 0) {
            code = err_sys(-r, "read tail of", seg->path);
            break;
        }
        for (size_t at = 0; at < len; at += STELE_BLOCK_SIZE) {
            size_t blen = len - at < STELE_BLOCK_SIZE ? len - at : STELE_BLOCK_SIZE;
            if (!fmt_is_zero(chunk + at, blen))
                nonzero_end = base + at + blen;
            struct fmt_batch_header h;
            uint64_t chain;
            if (base + at > x &&
                fmt_batch_header_decode(chunk + at, blen, seg->seed, &h, &chain) == FMT_OK && h.durable_lsn >= lsn) {
                code = err_set(STELE_ERR_CORRUPT,
                               "%s offset %llu: batch at LSN %llu is damaged, but the batch at offset %llu "
                               "records LSNs up to %llu as durable; refusing to cut durable records",
                               seg->path, (unsigned long long)x, (unsigned long long)lsn,
                               (unsigned long long)(base + at), (unsigned long long)h.durable_lsn);
                break;
            }
        }
    }
    free(chunk);
    *out_nonzero_end = nonzero_end;
    return code;
}

/* Zeroes [from, to) and syncs: the torn tail must not be mistaken later for data. */
static int zero_range(stele_log *log, struct segment *seg, uint64_t from, uint64_t to)
{
    uint8_t *zeros = calloc(1, SCAN_CHUNK_SIZE);
    if (!zeros)
        return err_set(STELE_ERR_NOMEM, "out of memory zeroing %s", seg->path);
    /* The batch header at from is zeroed first, on its own, and synced.
     * Zeroing everything in one go is not idempotent (RELIABILITY S7):
     * sectors reach the disk in any order, and a crash that kept the
     * header's sector while the garbage after it became zeros could make the
     * cut batch whole again, so that the next recovery would keep what this
     * one cut. Once the header is zero, no crash brings the batch back. */
    uint64_t head_end = to - from < STELE_BATCH_HEADER_SIZE ? to : from + STELE_BATCH_HEADER_SIZE;
    int r = log->io->ops->write(log->io, seg->fd, zeros, (size_t)(head_end - from), from, 1);
    for (uint64_t off = head_end; off < to && r == 0; off += SCAN_CHUNK_SIZE) {
        size_t len = to - off < SCAN_CHUNK_SIZE ? (size_t)(to - off) : SCAN_CHUNK_SIZE;
        r = log->io->ops->write(log->io, seg->fd, zeros, len, off, 0);
    }
    free(zeros);
    if (r == 0 && head_end < to)
        r = log->io->ops->fdatasync(log->io, seg->fd);
    return r < 0 ? err_sys(-r, "zero torn tail of", seg->path) : STELE_OK;
}

static int finish_seal(stele_log *log, struct segment *seg)
{
    segment_set_sealed(seg);
    if (log->opts.read_only)
        return STELE_OK;
    int r = log->io->ops->ftruncate(log->io, seg->fd, seg->data_end + STELE_FOOTER_SIZE);
    if (r == 0)
        r = log->io->ops->fdatasync(log->io, seg->fd);
    if (r == 0)
        r = log->io->ops->fchmod(log->io, seg->fd, 0444);
    return r < 0 ? err_sys(-r, "finish sealing", seg->path) : STELE_OK;
}

/* Scans the unsealed last segment from seg->data_end (SPEC.md §10.1 steps 7-8, §10.2). */
static int scan_active(stele_log *log, struct segment *seg, uint64_t file_size, int recovering)
{
    int code = STELE_OK, hash = !log->opts.read_only;
    if (recovering && hash) {
        int r = log->io->ops->fdatasync(log->io, seg->fd);
        if (r < 0)
            return err_sys(-r, "sync before recovery", seg->path);
        uint8_t block[STELE_SEGMENT_HEADER_SIZE];
        if ((r = io_read_full(log->io, seg->fd, block, sizeof block, 0)) < 0)
            return err_sys(-r, "read header of", seg->path);
        XXH3_64bits_reset_withSeed(log->file_hash, seg->seed);
        XXH3_64bits_update(log->file_hash, block, sizeof block);
    }
    uint64_t nonzero_end;
    for (;;) {
        while (take_batch(log, seg, file_size, hash, &code))
            ;
        if (code)
            return code;
        if (footer_here(log, seg, file_size))
            return finish_seal(log, seg);
        nonzero_end = seg->data_end;
        if ((code = classify_tail(log, seg, file_size, &nonzero_end)) == STELE_OK)
            break;
        /* A read-only handle races the writing process: the batch at X may
         * have been written, or the segment sealed and truncated, after X was
         * read, which looks like damage below a durable batch or like a file
         * that ends early. Only what is still wrong on a second look is. */
        int retry_code;
        if (!log->opts.read_only ||
            (!take_batch(log, seg, file_size, hash, &retry_code) && !footer_here(log, seg, file_size)))
            return code;
        err_clear();
    }
    if (!recovering || log->opts.read_only || nonzero_end <= seg->data_end)
        return STELE_OK;
    log->stats.recovery_torn_bytes += nonzero_end - seg->data_end;
    log->stats.recovery_torn_batches++;
    return zero_range(log, seg, seg->data_end, nonzero_end);
}

static int load_segment(stele_log *log, uint64_t first, uint64_t seq, uint64_t prev_chain, int last)
{
    struct segment *seg;
    uint64_t size;
    int code = open_segment(log, first, seq, prev_chain, &seg, &size);
    if (code)
        return code;
    code = segment_open_sealed(log, seg, size);
    if (code != STELE_OK && last && !(seg->mode & 0222)) {
        /* Read-only means it was sealed, and sealing makes the footer durable
         * before the mode changes: a sealed segment that lost its footer was
         * truncated or damaged, never torn (RELIABILITY S19). */
    } else if (code != STELE_OK && last && size != seg->capacity) {
        /* An active segment is created at its full size (§7.1) and only
         * sealing changes that: a shorter or longer one without a footer
         * was cut or damaged, not torn (SPEC.md §10.1 step 7). */
        code = err_set(STELE_ERR_CORRUPT, "%s: %llu bytes without a footer, but an active segment is %llu "
                       "bytes: truncated or damaged", seg->path, (unsigned long long)size,
                       (unsigned long long)seg->capacity);
    } else if (code != STELE_OK && last) {
        /* The last segment is the active one unless a footer ends it. */
        err_clear();
        seg->indexed = 1;
        code = scan_active(log, seg, size, 1);
    } else if (code == STELE_OK && last && !log->opts.read_only && (seg->mode & 0222)) {
        /* SPEC.md §10.1 step 6: sealed, but a crash or a failed chmod came
         * between the seal's sync and its chmod - or before that sync: after
         * a process crash the footer (when it fills the last block) or the
         * truncation may be only in the page cache (RELIABILITY S8). So the
         * file is synced before anything relies on the seal, and before its
         * mode says sealed: a read-only segment must end in a durable footer. */
        int r = log->io->ops->fsync(log->io, seg->fd);
        if (r == 0)
            r = log->io->ops->fchmod(log->io, seg->fd, 0444);
        if (r < 0)
            code = err_sys(-r, "sync and make read-only", seg->path);
    }
    if (code == STELE_OK)
        code = log_add_segment(log, seg);
    if (code)
        segment_free(log, seg);
    return code;
}

/* A read-only handle's sync of the segment it scanned (SPEC.md §10.2): the
 * writing process may have written batches into the page cache that it has
 * not synced yet, and a power loss would take them back after a reader acted
 * on them. fdatasync through our own O_RDONLY descriptor writes back the
 * file's dirty pages whoever wrote them, so every batch read before the call
 * is durable once it returns. A failure poisons the handle like a writer's
 * failed sync (RELIABILITY S9): a later sync that succeeds proves nothing
 * about pages whose write-back failed, so nothing new is exposed until the
 * log is reopened. */
static int sync_scanned(stele_log *log, struct segment *seg)
{
    int fd, code = segment_fd_acquire(log, seg, &fd);
    if (code)
        return code;
    int r = log->io->ops->fdatasync(log->io, fd);
    segment_fd_release(log, seg);
    if (r == 0)
        return STELE_OK;
    code = err_set(err_code_from_errno(-r), "sync %s before exposing LSNs up to %llu (read-only handle): %s",
                   seg->path, (unsigned long long)seg->last_lsn, strerror(-r));
    pthread_mutex_lock(&log->q_lock);
    if (!log->fenced) {
        log->fenced = 1;
        log->fence_code = code;
        snprintf(log->fence_msg, sizeof log->fence_msg, "%s", stele_errmsg());
    }
    log->stats.fenced = 1;
    pthread_mutex_unlock(&log->q_lock);
    return code;
}

int recover_segments(stele_log *log)
{
    uint64_t *firsts = NULL;
    size_t n = 0;
    if (!log->opts.read_only) {
        /* Decide only on what is durable (RELIABILITY S8): a previous
         * process may have crashed with directory entries not yet synced. */
        int r = log->io->ops->sync_dir(log->io, log->dir);
        if (r < 0)
            return err_sys(-r, "sync directory", log->dir);
    }
    int code = list_segments(log, &firsts, &n);
    if (code)
        return code;
    uint64_t expect_first = 1, chain = 0;
    for (size_t i = 0; i < n && code == STELE_OK; i++) {
        if (firsts[i] != expect_first) {
            code = err_set(STELE_ERR_CORRUPT, "%s: segment starting at LSN %llu found where LSN %llu was "
                           "expected: a segment is missing or does not belong", log->dir,
                           (unsigned long long)firsts[i], (unsigned long long)expect_first);
            break;
        }
        code = load_segment(log, firsts[i], i + 1, chain, i + 1 == n);
        if (code == STELE_OK) {
            struct segment *seg = log_active(log);
            expect_first = seg->last_lsn + 1;
            chain = seg->chain;
        }
    }
    free(firsts);
    if (code)
        return code;
    struct segment *act = log_active(log);
    uint64_t last = act ? act->last_lsn : 0;
    /* A read-only handle exposes durable batches only (SPEC.md §10.2): the
     * last segment is synced unless it is sealed and read-only (sealing
     * syncs the footer before the mode changes, §7.3). */
    int settled = act && segment_sealed(act) && !(act->mode & 0222);
    if (log->opts.read_only && act && act->last_lsn >= act->first_lsn && !settled &&
        (code = sync_scanned(log, act)) != STELE_OK)
        return code;
    log->durable_lsn = log->written_lsn = last;
    __atomic_store_n(&log->visible_lsn, last, __ATOMIC_RELEASE); /* index.c reads it without q_lock */
    return STELE_OK;
}

/* Read-only handles: picks up what the writing process appended since the
 * last look, following it into new segments. Only batches that are durable
 * are made visible: each segment holding batches read in this call is synced
 * (sync_scanned) after they were read and before the visible LSN covers them,
 * so a batch written while the sync runs waits for the next refresh. */
int log_refresh(stele_log *log)
{
    pthread_mutex_lock(&log->refresh_lock);
    int code = STELE_OK;
    pthread_mutex_lock(&log->q_lock);
    uint64_t upto = log->visible_lsn;
    if (log->fenced)
        code = err_set(STELE_ERR_FENCED, "%s: refreshing %s: %s (reopen the log)", stele_strerror(STELE_ERR_FENCED),
                       log->dir, log->fence_msg);
    pthread_mutex_unlock(&log->q_lock);
    while (code == STELE_OK) {
        struct segment *seg = log_active(log);
        if (seg && !segment_sealed(seg)) {
            struct stat st;
            if (fstat(seg->fd, &st) != 0) {
                code = err_sys(errno, "stat", seg->path);
                break;
            }
            while (take_batch(log, seg, (uint64_t)st.st_size, 0, &code))
                ;
            if (code)
                break;
            int sealed = footer_here(log, seg, (uint64_t)st.st_size);
            if (seg->last_lsn > upto) {
                if ((code = sync_scanned(log, seg)) != STELE_OK)
                    break;
                upto = seg->last_lsn;
            }
            if (!sealed)
                break;
            segment_set_sealed(seg);
        }
        uint64_t first = seg ? seg->last_lsn + 1 : 1, seq = seg ? seg->seq + 1 : 1;
        struct segment *next;
        uint64_t size;
        code = open_segment(log, first, seq, seg ? seg->chain : 0, &next, &size);
        if (code == STELE_ERR_NOT_FOUND) {
            err_clear();
            code = STELE_OK;
            break;
        }
        if (code)
            break;
        next->indexed = 1;
        if ((code = log_add_segment(log, next)) != STELE_OK) {
            segment_free(log, next);
            break;
        }
    }
    pthread_mutex_lock(&log->q_lock);
    if (upto > log->visible_lsn) {
        log->durable_lsn = log->written_lsn = upto;
        __atomic_store_n(&log->visible_lsn, upto, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&log->q_lock);
    pthread_mutex_unlock(&log->refresh_lock);
    return code;
}

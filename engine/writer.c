/*
 * writer.c - the write pipeline: batches from the appenders to the disk,
 * group commit, acknowledgements, rolls and fences (SPEC.md §11).
 *
 * No thread stands between an appender and the disk. Appenders decide and
 * encode their own records into the open batch (append.c), then wait in
 * the await list for their acknowledgement. Two roles move the batches on,
 * each held by one thread at a time:
 *  - the write role takes the oldest batch not yet written (closing the
 *    open one when no full one waits: whatever came while the previous
 *    write ran is this group), frames it (zstd, checksums, chain), writes
 *    it and, at a segment's end, rolls;
 *  - the sync role takes the highest LSN whose write has returned, calls
 *    fdatasync on its segment and, when that succeeds, moves the durable
 *    watermark there and acknowledges every request up to it.
 * A thread that is waiting anyway and finds a role vacant with work for it
 * takes it: in sync mode that is a blocking appender, so a batch is written
 * while the previous one's sync is in flight (pipelining) and no record
 * waits for a hand-over to another thread. A thread whose request is done
 * and that leaves work nobody holds wakes one sleeping appender (who was
 * to be woken anyway) or one of the two background threads, which drive
 * what no appender waits for: async appends, none and interval mode.
 *
 * Acknowledgements go in LSN order: the await list is kept in ack_lsn
 * order and the watermarks only move forward over a contiguous prefix.
 * Each blocking appender sleeps on a condition variable of its own and is
 * woken once, by whoever acknowledges it (no broadcast to every waiter).
 *
 * A failed write or sync fences the log: requests whose records may be on
 * disk learn STELE_ERR_OUTCOME_UNKNOWN, the rest STELE_ERR_FENCED, and no
 * sync is ever retried (a second fsync can "succeed" over pages the kernel
 * already dropped, RELIABILITY S9, S10). One sync at a time, never during a
 * seal.
 *
 * Locks: idx_lock (the index, the open batch, the full list, LSN
 * assignment) is taken before q_lock (everything else here) when both are
 * held; the roles are flags under q_lock, and their work runs without
 * either lock.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>
#include <zstd.h>

#include "internal.h"

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static int rolling(const stele_log *log)
{
    return __atomic_load_n(&log->roll_wanted, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------ requests */

/* Counts r's receipts and sets r->code: the first failing receipt's code,
 * or code itself when the request failed as a whole. A failed request
 * reports nothing as decided, conflicts and version mismatches included:
 * they may rest on a record that never became durable (RELIABILITY S28). */
static void request_result(stele_log *log, struct request *r, int code)
{
    r->code = code;
    for (size_t i = 0; i < r->count && code != STELE_OK; i++) {
        r->receipts[i].code = (stele_code)code;
        r->receipts[i].decision = STELE_DECISION_NONE;
    }
    uint64_t n[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < r->count; i++) {
        const stele_receipt *rc = &r->receipts[i];
        n[rc->decision == STELE_DECISION_NEW ? 0 : rc->decision == STELE_DECISION_DUPLICATE ? 1
          : rc->decision == STELE_DECISION_CONFLICT ? 2 : 3]++;
        if (r->code == STELE_OK && rc->code != STELE_OK)
            r->code = rc->code;
    }
    uint64_t *counters[4] = {&log->stats.appends_new, &log->stats.appends_duplicate, &log->stats.appends_conflict,
                             &log->stats.appends_failed};
    for (int k = 0; k < 4; k++)
        if (n[k])
            __atomic_add_fetch(counters[k], n[k], __ATOMIC_RELAXED);
}

/* r is done: its thread is woken, or its callback queued. */
static void complete_locked(stele_log *log, struct request *r, int code)
{
    request_result(log, r, code);
    r->done = 1;
    if (r->fn) {
        /* Called by whoever completed it, after dropping q_lock. */
        r->next = log->callbacks;
        log->callbacks = r;
    } else if (r->cond) {
        /* r lives on its thread's stack: nothing touches it after this. */
        pthread_cond_signal(r->cond);
    }
}

/* Runs the completed async requests' callbacks (without q_lock) and returns
 * the requests to the pool. Callbacks run in LSN order: requests complete
 * in LSN order under q_lock, and only one thread runs callbacks at a time.
 * A thread that finds another one running leaves its completions to it; the
 * runner drains the list until it finds it empty under the lock. */
static void run_callbacks(stele_log *log)
{
    pthread_mutex_lock(&log->q_lock);
    if (log->callbacks_running) {
        pthread_mutex_unlock(&log->q_lock);
        return;
    }
    log->callbacks_running = 1;
    while (log->callbacks) {
        struct request *list = log->callbacks, *rev = NULL;
        log->callbacks = NULL;
        pthread_mutex_unlock(&log->q_lock);
        while (list) { /* the list was built newest first */
            struct request *next = list->next;
            list->next = rev;
            rev = list;
            list = next;
        }
        struct request *last = NULL;
        for (struct request *r = rev; r; r = r->next) {
            r->fn(r->fn_ctx, r->code, r->receipts, r->count);
            last = r;
        }
        pthread_mutex_lock(&log->q_lock);
        last->next = log->pool;
        log->pool = rev;
        pthread_cond_broadcast(&log->done_cond);
    }
    log->callbacks_running = 0;
    pthread_mutex_unlock(&log->q_lock);
}

/* Adds r to the await list in ack_lsn order (usually at the tail: requests
 * come in about the order their records were encoded). */
static void await_insert_locked(stele_log *log, struct request *r)
{
    r->next = NULL;
    if (!log->await_tail || log->await_tail->ack_lsn <= r->ack_lsn) {
        if (log->await_tail)
            log->await_tail->next = r;
        else
            log->await_head = r;
        log->await_tail = r;
        return;
    }
    struct request **pp = &log->await_head;
    while ((*pp)->ack_lsn <= r->ack_lsn)
        pp = &(*pp)->next;
    r->next = *pp;
    *pp = r;
}

/* What r needs acknowledged: durable in sync mode and for stele_sync,
 * written otherwise. */
static uint64_t acked_for(const stele_log *log, const struct request *r)
{
    return log->durability == STELE_DURABILITY_SYNC || r->sync ? log->durable_lsn : log->written_lsn;
}

/* Completes the awaiting requests the watermarks now cover, in order. In
 * interval and none mode a stele_sync waits for more than the appends after
 * it, which go on without it. */
static void complete_acked_locked(stele_log *log)
{
    struct request **pp = &log->await_head, *prev = NULL;
    while (*pp) {
        struct request *r = *pp;
        if (r->ack_lsn <= acked_for(log, r)) {
            *pp = r->next;
            if (log->await_tail == r)
                log->await_tail = prev;
            complete_locked(log, r, STELE_OK);
            continue;
        }
        if (log->durability == STELE_DURABILITY_SYNC || !r->sync)
            break;
        prev = r;
        pp = &r->next;
    }
}

/* --------------------------------------------------------------- fences */

/* Fences the log: no batch is written or synced again. Every awaiting
 * request learns how it ended: OUTCOME_UNKNOWN when it rests on a record
 * whose write was started (it may be on disk or not), own_code up to
 * own_hi (a batch that failed before its write started), FENCED after; a
 * waiting stele_sync, which has no record of its own, learns the failed
 * operation's io_code (IO or NOSPACE). */
/* How a request whose records are encoded ends on a fenced log: OK when
 * they were acknowledged before the fence (a batch synced while a later
 * one failed: the appender had not yet looked), unknown when their write
 * was started, own_code up to own_hi, FENCED after. */
static int fenced_code_locked(const stele_log *log, const struct request *r, uint64_t own_hi, int own_code)
{
    if (r->ack_lsn <= acked_for(log, r))
        return STELE_OK;
    uint64_t unknown = load(&log->attempted_lsn);
    if (log->written_lsn > unknown)
        unknown = log->written_lsn;
    return r->ack_lsn <= unknown ? STELE_ERR_OUTCOME_UNKNOWN : r->ack_lsn <= own_hi ? own_code : STELE_ERR_FENCED;
}

static void fence_locked(stele_log *log, uint64_t own_hi, int own_code, int io_code)
{
    if (!log->fenced) {
        /* fence_msg and fence_code before fenced: the write role and encode
         * read them without q_lock once they see fenced, and they are
         * written once. */
        snprintf(log->fence_msg, sizeof log->fence_msg, "%s", stele_errmsg());
        __atomic_store_n(&log->fence_code, own_code, __ATOMIC_SEQ_CST);
        __atomic_store_n(&log->fenced, 1, __ATOMIC_SEQ_CST);
    }
    for (struct request *r = log->await_head, *next; r; r = next) {
        next = r->next;
        complete_locked(log, r, r->sync && !r->count ? io_code : fenced_code_locked(log, r, own_hi, own_code));
    }
    log->await_head = log->await_tail = NULL;
    log->inflight_count = 0;
    log->stats.fenced = 1;
    pthread_cond_broadcast(&log->done_cond);
    pthread_cond_broadcast(&log->pipe_cond);
    pthread_cond_broadcast(&log->bg_cond);
}

void writer_fence(stele_log *log, int code)
{
    pthread_mutex_lock(&log->q_lock);
    fence_locked(log, UINT64_MAX, code, code);
    pthread_mutex_unlock(&log->q_lock);
}

/* ------------------------------------------------------------ the roles */

/* None mode writes a batch once it is closed (full, or at the segment's
 * end), when someone waits for it (a stele_sync, a read of this handle, an
 * async append), when the queue bound or the batch pool is reached, at a
 * roll or close, or once it has lingered linger_ns: many appends per write
 * call, and the order of writes and syncs follows from the calls alone. */
static int none_write_due_locked(const stele_log *log, uint64_t assigned, uint64_t taken)
{
    return log->stopping || rolling(log) || load(&log->closed_lsn) > taken || log->await_head ||
           assigned - taken >= log->opts.queue_records_max || !log->free_batches ||
           now_ns() - load(&log->fill_since_ns) >= log->linger_ns;
}

/* Work for the write role: a batch to write (within the in-flight window),
 * or the roll the appenders wait for. */
static int write_due_locked(const stele_log *log)
{
    if (log->w_busy || log->fenced)
        return 0;
    uint64_t assigned = load(&log->assigned_lsn), taken = load(&log->taken_lsn);
    if (assigned > taken)
        return log->durability == STELE_DURABILITY_SYNC   ? log->inflight_count < WRITER_INFLIGHT_MAX
               : log->durability == STELE_DURABILITY_NONE ? none_write_due_locked(log, assigned, taken)
                                                          : 1;
    return rolling(log);
}

/* Work for the sync role: written batches that sync mode, a stele_sync, a
 * roll, a close or the interval wants durable. A stele_sync or a close in
 * interval and none mode waits until all it covers is written: one sync
 * for it, not one per batch written meanwhile. */
static int sync_due_locked(const stele_log *log)
{
    if (log->s_busy || log->fenced || log->written_lsn <= log->durable_lsn)
        return 0;
    if (log->durability == STELE_DURABILITY_SYNC)
        return 1;
    if (log->stopping)
        return log->written_lsn >= load(&log->assigned_lsn);
    if (log->sync_wanted_lsn > log->durable_lsn && log->written_lsn >= log->sync_wanted_lsn)
        return 1;
    return log->durability == STELE_DURABILITY_INTERVAL &&
           now_ns() - log->last_sync_ns >= (uint64_t)log->opts.sync_interval_ms * 1000000u;
}

/* Work nobody holds: wakes a sleeping appender for each role that has
 * some (it was to be woken anyway, and takes the role instead of a hop to
 * another thread), else a background thread. */
static void kick_locked(stele_log *log)
{
    int need = write_due_locked(log) + sync_due_locked(log);
    for (struct request *r = log->await_head; r && need; r = r->next)
        if (r->cond && r->sleeping && !r->kicked) {
            r->kicked = 1;
            pthread_cond_signal(r->cond);
            need--;
        }
    /* Callbacks run on the background threads only, never on an
     * appender's thread inside its stele_append (its caller may hold a
     * lock the callback takes). */
    if (log->callbacks && !log->callbacks_running)
        need++;
    for (; need > 0 && log->bg_idle; need--)
        pthread_cond_signal(&log->bg_cond);
}

/* The watermark is now target: the batches it covers are acknowledged. */
static void durable_advance_locked(stele_log *log, uint64_t target)
{
    if (target > log->durable_lsn) {
        __atomic_store_n(&log->durable_lsn, target, __ATOMIC_SEQ_CST);
        if (log->durability == STELE_DURABILITY_SYNC) {
            __atomic_store_n(&log->visible_lsn, target, __ATOMIC_RELEASE); /* read without q_lock too */
            pthread_cond_broadcast(&log->done_cond);
        }
    }
    while (log->inflight_count && log->inflight[log->inflight_head].last_lsn <= log->durable_lsn) {
        const struct inflight *f = &log->inflight[log->inflight_head];
        if (log->ack_hook)
            log->ack_hook(log->ack_ctx, f->seg->path, f->offset, f->size, f->first_lsn, f->last_lsn);
        log->inflight_head = (log->inflight_head + 1) % WRITER_INFLIGHT_MAX;
        log->inflight_count--;
    }
    complete_acked_locked(log);
}

/* Syncs what the writer has written, for every batch written before the
 * sync started. The write calls have returned before written_lsn moves, so
 * the fdatasync is ordered after them (RELIABILITY S15); batches in earlier
 * segments were synced when their segment was sealed. */
static int sync_written(stele_log *log, struct segment *seg)
{
    int fd, code = segment_fd_acquire(log, seg, &fd);
    if (code)
        return code;
    int r = log->io->ops->fdatasync(log->io, fd);
    segment_fd_release(log, seg);
    if (r < 0)
        return err_set(err_code_from_errno(-r), "sync %s: %s", seg->path, strerror(-r));
    return STELE_OK;
}

/* The sync role: one fdatasync of everything written when it starts.
 * The write calls it covers have returned before written_lsn moved, so the
 * fdatasync is ordered after them (RELIABILITY S15); batches of earlier
 * segments were made durable by their seal. */
static void sync_role_locked(stele_log *log)
{
    log->s_busy = 1;
    uint64_t target = log->written_lsn;
    struct segment *seg = log->written_seg;
    pthread_mutex_unlock(&log->q_lock);
    int code = sync_written(log, seg);
    pthread_mutex_lock(&log->q_lock);
    log->s_busy = 0;
    log->stats.syncs++;
    log->last_sync_ns = now_ns();
    if (code != STELE_OK)
        fence_locked(log, 0, STELE_ERR_OUTCOME_UNKNOWN, code);
    else if (!log->fenced)
        durable_advance_locked(log, target);
    if (log->stalled)
        pthread_cond_broadcast(&log->pipe_cond);
}

/* At a seal, with everything written durable: reaps the last checkpoint
 * (expiry waits until then, index_expire_round) and checkpoints the index
 * when enough records came since the last checkpoint. A failed checkpoint
 * is counted and logged in stats, not fatal: the log is the truth and the
 * next open indexes what the checkpoint lacks. */
static void index_maintain(stele_log *log)
{
    pthread_mutex_lock(&log->idx_lock);
    index_checkpoint_reap(log);
    /* A checkpoint costs time in proportion to the index, and the scan it
     * saves at the next open is in proportion to the records since the last
     * one: checkpointing only once at least as many records came as the
     * index holds keys keeps the cost per record bounded (about two keys
     * written per record appended, for an index that only grows) however
     * large the index grows, and the scan at most as long as the load. */
    uint64_t every = log->opts.checkpoint_records, keys = idx_key_count(log->idx);
    if (every && log->idx_lsn - log->idx_ckpt_lsn >= (every > keys ? every : keys)) {
        index_checkpoint_start(log);
        err_clear();
    }
    pthread_mutex_unlock(&log->idx_lock);
}

/* Seals the active segment (if any) and makes the next one the active
 * one (segment_io.c has the protocol): the write role, with every batch
 * written and the sync role held, so no sync runs during the seal. The
 * seal's own fdatasync makes every batch of the segment durable. */
static int roll(stele_log *log)
{
    struct segment *seg = log_active(log);
    int code = STELE_OK;
    if (seg && !segment_sealed(seg)) {
        if ((code = segment_seal(log, seg)) != STELE_OK)
            return code;
        segidx_write_start(log, seg); /* SPEC.md §19.2: after the seal is durable; never fatal */
        index_maintain(log);
    }
    struct segment *next;
    code = segment_create(log, seg ? seg->seq + 1 : 1, seg ? seg->last_lsn + 1 : 1, seg ? seg->chain : 0, &next);
    if (code)
        return code;
    /* Under idx_lock, so that an appender sees the new segment and the
     * cleared flag together, never the sealed one and no flag. */
    pthread_mutex_lock(&log->idx_lock);
    code = log_add_segment(log, next);
    if (code == STELE_OK) {
        /* Every batch is written: only an open batch that holds nothing
         * can be left, bound to the old segment. */
        struct wbatch *b = log->fill;
        assert(!log->full_head && (!b || b->next_lsn == b->first_lsn));
        log->fill = NULL;
        __atomic_store_n(&log->seg_reserved, 0, __ATOMIC_SEQ_CST);
        __atomic_store_n(&log->roll_wanted, 0, __ATOMIC_SEQ_CST);
        if (b) {
            pthread_mutex_lock(&log->q_lock);
            b->reserved = 0;
            b->next = log->free_batches;
            log->free_batches = b;
            pthread_mutex_unlock(&log->q_lock);
        }
    }
    pthread_mutex_unlock(&log->idx_lock);
    if (code)
        segment_free(log, next);
    else
        segment_spare_start(log); /* the next roll's file, made while this segment fills */
    return code;
}

/* The write role's roll, once every batch encoded is written. */
static void roll_role_locked(stele_log *log)
{
    while (!log->fenced && log->s_busy) {
        log->stalled++;
        pthread_cond_wait(&log->pipe_cond, &log->q_lock);
        log->stalled--;
    }
    if (log->fenced)
        return;
    log->s_busy = 1;
    uint64_t target = log->written_lsn;
    pthread_mutex_unlock(&log->q_lock);
    int code = roll(log);
    pthread_mutex_lock(&log->q_lock);
    log->s_busy = 0;
    if (code != STELE_OK)
        fence_locked(log, 0, code, code);
    else if (!log->fenced)
        durable_advance_locked(log, target);
    pthread_cond_broadcast(&log->pipe_cond);
}

/* A frame buffer of at least need bytes, aligned for O_DIRECT writes (its
 * contents are not kept when it grows). */
static int ensure_buf(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return STELE_OK;
    size_t n = (need + STELE_BLOCK_SIZE - 1) / STELE_BLOCK_SIZE * STELE_BLOCK_SIZE;
    uint8_t *p = aligned_alloc(STELE_BLOCK_SIZE, n);
    if (!p)
        return err_set(STELE_ERR_NOMEM, "out of memory for a %zu-byte batch buffer", need);
    free(*buf);
    *buf = p;
    *cap = n;
    return STELE_OK;
}

/* Compresses the body when the log asks for it and it saves space; returns
 * the frame to write (log->buf or log->zbuf) with its header still to fill. */
static uint8_t *maybe_compress(stele_log *log, uint8_t *buf, struct fmt_batch_header *h)
{
    if (!log->cctx)
        return buf;
    size_t bound = ZSTD_compressBound(h->raw_size);
    if (ensure_buf(&log->zbuf, &log->zbuf_cap, STELE_BATCH_HEADER_SIZE + bound + STELE_BLOCK_SIZE) != STELE_OK) {
        err_clear();
        return buf; /* compression is an optimisation: fall back to raw */
    }
    /* SPEC.md §18.2: the newest dictionary, once it is durable, for batches
     * up to DICT_BATCH_RAW_SIZE_MAX: a larger batch is its own history
     * (a dictionary made it only 1.1x smaller at 64 events), and for it zstd
     * copies the dictionary's tables (about 0.75 MiB at level 3) instead of
     * referencing them, which doubled the writer's compression time. */
    uint32_t dict_id;
    const ZSTD_CDict *cdict = dict_writer_current(log, &dict_id);
    if (h->raw_size > DICT_BATCH_RAW_SIZE_MAX)
        cdict = NULL;
    uint8_t *dst = log->zbuf + STELE_BATCH_HEADER_SIZE;
    const uint8_t *src = buf + STELE_BATCH_HEADER_SIZE;
    size_t n;
    if (cdict) {
        /* ZSTD_compress2 with the sticky parameters set at start: the frame
         * declares its content size and does not repeat the dictionary's id,
         * which the batch header carries (4 bytes a batch, SPEC.md §18.2). */
        n = ZSTD_CCtx_refCDict(log->cctx, cdict);
        if (!ZSTD_isError(n))
            n = ZSTD_compress2(log->cctx, dst, bound, src, h->raw_size);
    } else {
        n = ZSTD_compressCCtx(log->cctx, dst, bound, src, h->raw_size, log->compression_level);
    }
    if (ZSTD_isError(n) || n >= h->raw_size)
        return buf;
    h->stored_size = (uint32_t)n;
    h->compression = FMT_COMPRESSION_ZSTD;
    h->dict_id = cdict ? dict_id : 0;
    return log->zbuf;
}

/* Takes the next batch to write, oldest first: a full one, else the open
 * one, closing it (what came while the previous write ran is this group).
 * Expiry goes a bounded step per batch (SPEC.md §15.2). */
static struct wbatch *batch_take(stele_log *log)
{
    pthread_mutex_lock(&log->idx_lock);
    struct wbatch *b = log->full_head;
    if (b) {
        log->full_head = b->next;
        if (!log->full_head)
            log->full_tail = NULL;
    } else if (log->fill && log->fill->next_lsn > log->fill->first_lsn) {
        b = log->fill;
        log->fill = NULL;
    }
    if (b) {
        __atomic_store_n(&log->taken_lsn, b->next_lsn - 1, __ATOMIC_SEQ_CST);
        index_expire_round(log, b->recorded_at_ns, b->next_lsn - b->first_lsn);
    }
    pthread_mutex_unlock(&log->idx_lock);
    return b;
}

/* Frames b and writes it after the segment's last batch; on success the
 * segment has advanced. *out_started says whether the write was issued. */
static int batch_write(stele_log *log, struct wbatch *b, uint64_t durable, struct inflight *out, int *out_started)
{
    struct segment *seg = b->seg;
    *out_started = 0;
    struct fmt_batch_header h = {
        .record_count = (uint32_t)(b->next_lsn - b->first_lsn),
        .first_lsn = b->first_lsn,
        .durable_lsn = durable,
        .prev_chain = seg->chain,
        .stored_size = (uint32_t)b->body_size,
        .raw_size = (uint32_t)b->body_size,
        .compression = FMT_COMPRESSION_NONE,
    };
    uint8_t *frame = maybe_compress(log, b->buf, &h);
    h.body_checksum = stele_checksum(frame + STELE_BATCH_HEADER_SIZE, h.stored_size, seg->seed);
    uint64_t chain = fmt_batch_header_encode(&h, seg->seed, frame, STELE_BATCH_HEADER_SIZE);
    uint64_t frame_size = fmt_batch_frame_size(h.stored_size);
    memset(frame + STELE_BATCH_HEADER_SIZE + h.stored_size, 0, frame_size - STELE_BATCH_HEADER_SIZE - h.stored_size);
    assert(frame_size <= b->reserved);
    assert(seg->data_end + frame_size + STELE_FOOTER_SIZE <= seg->capacity);
    *out = (struct inflight){seg, seg->data_end, frame_size, b->first_lsn, b->next_lsn - 1};
    int fd, code = segment_write_fd(log, seg, &fd);
    if (code)
        return code;
    /* From here the outcome of b's records is unknown until the write
     * returns: a fence meanwhile must say so (fence_locked reads this). */
    __atomic_store_n(&log->attempted_lsn, b->next_lsn - 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&log->fenced, __ATOMIC_SEQ_CST))
        return err_set(STELE_ERR_FENCED, "%s: %s", seg->path, log->fence_msg);
    *out_started = 1;
    int r = log->io->ops->write(log->io, fd, frame, frame_size, seg->data_end, 0);
    if (r < 0)
        return err_set(err_code_from_errno(-r), "write %s offset %llu (LSN %llu-%llu): %s", seg->path,
                       (unsigned long long)seg->data_end, (unsigned long long)b->first_lsn,
                       (unsigned long long)(b->next_lsn - 1), strerror(-r));
    XXH3_64bits_update(log->file_hash, frame, frame_size);
    struct batch_ref ref = {b->first_lsn, seg->data_end, h.record_count, (uint32_t)frame_size, b->recorded_at_ns};
    code = segment_index_add(seg, &ref);
    __atomic_store_n(&seg->data_end, seg->data_end + frame_size, __ATOMIC_SEQ_CST);
    seg->last_lsn = b->next_lsn - 1;
    seg->chain = chain;
    seg->batch_count++;
    return code;
}

/* b was written (code OK) or failed: the watermarks, the in-flight window
 * and the requests it acknowledges; b goes back to the pool. */
static void write_done_locked(stele_log *log, struct wbatch *b, const struct inflight *f, int code, int started)
{
    if (started) {
        log->stats.bytes_written += f->size;
        log->stats.batches_written++;
    }
    if (code != STELE_OK && !log->fenced)
        fence_locked(log, b->next_lsn - 1, started ? STELE_ERR_OUTCOME_UNKNOWN : code, code);
    if (code == STELE_OK && !log->fenced) {
        log->written_lsn = b->next_lsn - 1;
        log->written_seg = b->seg;
        if (log->durability == STELE_DURABILITY_SYNC) {
            log->inflight[(log->inflight_head + log->inflight_count) % WRITER_INFLIGHT_MAX] = *f;
            log->inflight_count++;
        } else {
            /* The interval's timer is a background thread's timed wait:
             * the first batch after a sync starts it. */
            if (log->durability == STELE_DURABILITY_INTERVAL && f->first_lsn == log->durable_lsn + 1 && log->bg_idle)
                pthread_cond_signal(&log->bg_cond);
            __atomic_store_n(&log->visible_lsn, log->written_lsn, __ATOMIC_RELEASE);
            pthread_cond_broadcast(&log->done_cond);
            complete_acked_locked(log);
        }
    }
    __atomic_sub_fetch(&log->seg_reserved, b->reserved, __ATOMIC_SEQ_CST);
    b->reserved = 0;
    b->next = log->free_batches;
    log->free_batches = b;
    if (log->stalled)
        pthread_cond_broadcast(&log->pipe_cond);
    dict_auto_train_check_locked(log);
}

/* The write role: one batch, or the roll once all are written. */
static void write_role_locked(stele_log *log)
{
    __atomic_store_n(&log->w_busy, 1, __ATOMIC_SEQ_CST);
    if (load(&log->assigned_lsn) == load(&log->taken_lsn)) {
        roll_role_locked(log);
        __atomic_store_n(&log->w_busy, 0, __ATOMIC_SEQ_CST);
        return;
    }
    uint64_t durable = log->durable_lsn;
    pthread_mutex_unlock(&log->q_lock);
    struct wbatch *b = batch_take(log);
    struct inflight f = {0};
    int started = 0, code = b ? batch_write(log, b, durable, &f, &started) : STELE_OK;
    if (b)
        segment_spare_start(log); /* the next roll's file, made while this segment fills */
    pthread_mutex_lock(&log->q_lock);
    if (b)
        write_done_locked(log, b, &f, code, started);
    __atomic_store_n(&log->w_busy, 0, __ATOMIC_SEQ_CST);
}

/* One step for a thread that waits anyway: a vacant role with work, the
 * sync first when the thread's own records are written. Returns 0 when
 * there was nothing to take. */
static int role_step_locked(stele_log *log, int prefer_sync)
{
    if (prefer_sync && sync_due_locked(log))
        sync_role_locked(log);
    else if (write_due_locked(log))
        write_role_locked(log);
    else if (sync_due_locked(log))
        sync_role_locked(log);
    else
        return 0;
    if (log->callbacks && !log->callbacks_running && log->bg_idle)
        pthread_cond_signal(&log->bg_cond); /* callbacks run on the background threads */
    return 1;
}

/* A blocking caller until r is done: it takes the roles while it waits. */
static void drive_locked(stele_log *log, struct request *r)
{
    while (!r->done) {
        if (role_step_locked(log, r->ack_lsn <= log->written_lsn))
            continue;
        r->sleeping = 1;
        pthread_cond_wait(r->cond, &log->q_lock);
        r->sleeping = 0;
        r->kicked = 0;
    }
    kick_locked(log);
}

/* An appender that found no room (a roll wanted, every batch in use, or
 * queue_records_max records not yet taken by the write role): one step of
 * the pipeline, or a wait for it to move. */
static void make_room(stele_log *log)
{
    pthread_mutex_lock(&log->q_lock);
    if (!role_step_locked(log, 0) && !log->fenced && !log->stopping &&
        (rolling(log) || !log->free_batches ||
         load(&log->assigned_lsn) - load(&log->taken_lsn) >= log->opts.queue_records_max)) {
        log->stalled++;
        pthread_cond_wait(&log->pipe_cond, &log->q_lock);
        log->stalled--;
    }
    pthread_mutex_unlock(&log->q_lock);
}

struct wbatch *writer_batch_get(stele_log *log)
{
    pthread_mutex_lock(&log->q_lock);
    struct wbatch *b = log->free_batches;
    if (b)
        log->free_batches = b->next;
    pthread_mutex_unlock(&log->q_lock);
    return b;
}

/* Work for the background threads after an append no thread waits for:
 * an idle one writes it, or starts the none mode's linger (an awake one
 * finds it when it looks again, bg_main). */
static void kick_after_encode(stele_log *log, int linger_started)
{
    if (!__atomic_load_n(&log->bg_idle, __ATOMIC_SEQ_CST))
        return;
    pthread_mutex_lock(&log->q_lock);
    kick_locked(log);
    /* A linger that just started is no work yet (kick_locked woke nobody
     * for it): an idle background thread must still learn of it, to wait
     * for its end rather than for the next kick. */
    if (linger_started && log->bg_idle)
        pthread_cond_signal(&log->bg_cond);
    pthread_mutex_unlock(&log->q_lock);
}

static int closed_code(const stele_log *log)
{
    return __atomic_load_n(&log->fenced, __ATOMIC_SEQ_CST) ? STELE_ERR_FENCED
           : log->stopping                                  ? STELE_ERR_CLOSED
                                                            : STELE_OK;
}

/* Encodes r's records, making room first when they do not fit. An append
 * that waited for a roll which failed learns why (SPEC.md §11.2: nothing of
 * it is on disk), not just that the log is fenced. */
static int encode(stele_log *log, struct request *r)
{
    for (int waited = 0;; waited = 1) {
        pthread_mutex_lock(&log->idx_lock);
        int code = closed_code(log);
        int fence_code = __atomic_load_n(&log->fence_code, __ATOMIC_SEQ_CST);
        if (code == STELE_ERR_FENCED && waited && fence_code != STELE_ERR_OUTCOME_UNKNOWN)
            code = fence_code;
        if (code == STELE_OK)
            code = r->count ? append_encode_locked(log, r) : STELE_OK;
        if (code == STELE_OK && !r->count)
            r->ack_lsn = log->next_lsn - 1; /* a sync covers every record encoded before it */
        if (code == STELE_OK && r->fn) {
            /* Async requests join the await list in encoding order, so
             * that their callbacks come in LSN order. */
            pthread_mutex_lock(&log->q_lock);
            if (log->fenced) /* since the check above: the fence completed the await list already */
                complete_locked(log, r, fenced_code_locked(log, r, 0, STELE_ERR_FENCED));
            else if (r->ack_lsn <= acked_for(log, r))
                complete_locked(log, r, STELE_OK); /* duplicates of acknowledged records */
            else
                await_insert_locked(log, r);
            pthread_mutex_unlock(&log->q_lock);
        }
        pthread_mutex_unlock(&log->idx_lock);
        if (code != APPEND_WANT_ROOM)
            return code;
        make_room(log);
    }
}

int writer_submit(stele_log *log, struct request *r)
{
    r->batch_changed = 0;
    /* Read before encoding: an async r, once encoded, may be completed,
     * returned to the pool and reused by another thread (TSan). */
    int async = r->fn != NULL;
    int code = encode(log, r);
    if (code == STELE_OK && async) {
        kick_after_encode(log, 0);
        return STELE_OK;
    }
    if (code == STELE_OK && log->durability == STELE_DURABILITY_NONE && !r->sync) {
        /* SPEC.md §11.1: a none-mode append is acknowledged once encoded;
         * the background threads write it. They are woken when a batch
         * opens (its linger starts) or closes, not for every append. */
        request_result(log, r, STELE_OK);
        if (r->batch_changed)
            kick_after_encode(log, 1);
        return r->code;
    }
    if (code != STELE_OK) {
        r->code = code;
    } else {
        pthread_cond_t cond;
        pthread_cond_init(&cond, NULL);
        pthread_mutex_lock(&log->q_lock);
        if (log->fenced) {
            /* Fenced since encode: its records may be in the write that failed. */
            request_result(log, r, fenced_code_locked(log, r, 0, STELE_ERR_FENCED));
        } else if (r->ack_lsn <= acked_for(log, r)) {
            request_result(log, r, STELE_OK);
        } else {
            r->cond = &cond;
            if (r->sync && r->ack_lsn > log->sync_wanted_lsn)
                log->sync_wanted_lsn = r->ack_lsn;
            await_insert_locked(log, r);
            drive_locked(log, r);
        }
        pthread_mutex_unlock(&log->q_lock);
        pthread_cond_destroy(&cond);
    }
    code = r->code;
    if (code == STELE_ERR_FENCED || code == STELE_ERR_OUTCOME_UNKNOWN ||
        (code != STELE_OK && __atomic_load_n(&log->fenced, __ATOMIC_SEQ_CST))) {
        pthread_mutex_lock(&log->q_lock);
        err_set(code, "%s: %s", stele_strerror(code), log->fence_msg);
        pthread_mutex_unlock(&log->q_lock);
    }
    return code;
}

int writer_flush_to(stele_log *log, uint64_t lsn)
{
    if (lsn > load(&log->assigned_lsn))
        return STELE_OK;
    struct request r = {.ack_lsn = lsn};
    pthread_cond_t cond;
    pthread_cond_init(&cond, NULL);
    pthread_mutex_lock(&log->q_lock);
    int code = closed_code(log);
    if (code == STELE_OK && lsn > log->written_lsn) {
        r.cond = &cond;
        await_insert_locked(log, &r);
        drive_locked(log, &r);
        code = r.code;
    }
    pthread_mutex_unlock(&log->q_lock);
    pthread_cond_destroy(&cond);
    return code;
}

/* ----------------------------------------------------- background threads */

/* Drives what no appender waits for: async appends, none mode, the
 * interval's syncs, and what is left at close. */
static void *bg_main(void *arg)
{
    stele_log *log = arg;
    pthread_setname_np(pthread_self(), "stele-writer"); /* for top, perf and gdb */
    pthread_mutex_lock(&log->q_lock);
    for (;;) {
        int stepped = role_step_locked(log, 0);
        if (log->callbacks && !log->callbacks_running) {
            pthread_mutex_unlock(&log->q_lock);
            run_callbacks(log);
            pthread_mutex_lock(&log->q_lock);
            continue;
        }
        if (stepped)
            continue;
        /* A fenced log keeps its background threads until close: an async
         * append encoded as the fence came completes with the fence's code,
         * and its callback runs here. */
        if (log->stopping && (log->fenced || (!log->w_busy && !log->s_busy &&
                                              load(&log->assigned_lsn) == load(&log->taken_lsn))))
            break;
        /* Idle before the last look for work: an appender that encodes
         * after this look sees the count and wakes us (kick_after_encode). */
        __atomic_add_fetch(&log->bg_idle, 1, __ATOMIC_SEQ_CST);
        if (write_due_locked(log) || sync_due_locked(log) || (log->callbacks && !log->callbacks_running)) {
            __atomic_sub_fetch(&log->bg_idle, 1, __ATOMIC_SEQ_CST);
            continue;
        }
        uint64_t due = UINT64_MAX;
        if (log->fenced)
            ; /* nothing is written or synced again: only callbacks wake us */
        else if (log->durability == STELE_DURABILITY_INTERVAL && log->written_lsn > log->durable_lsn && !log->s_busy)
            due = log->last_sync_ns + (uint64_t)log->opts.sync_interval_ms * 1000000u;
        else if (log->durability == STELE_DURABILITY_NONE && log->linger_ns != UINT64_MAX &&
                 load(&log->assigned_lsn) > load(&log->taken_lsn) && !log->w_busy)
            due = load(&log->fill_since_ns) + log->linger_ns;
        if (due != UINT64_MAX) {
            struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
            if (now_ns() < due)
                pthread_cond_timedwait(&log->bg_cond, &log->q_lock, &ts);
        } else {
            pthread_cond_wait(&log->bg_cond, &log->q_lock);
        }
        __atomic_sub_fetch(&log->bg_idle, 1, __ATOMIC_SEQ_CST);
    }
    pthread_mutex_unlock(&log->q_lock);
    run_callbacks(log);
    return NULL;
}

int writer_start(stele_log *log)
{
    int code = index_open(log);
    if (code)
        goto fail;
    if (log->meta.compression == FMT_COMPRESSION_ZSTD && !(log->cctx = ZSTD_createCCtx())) {
        code = err_set(STELE_ERR_NOMEM, "out of memory for a zstd context");
        goto fail;
    }
    if (log->cctx && (ZSTD_isError(ZSTD_CCtx_setParameter(log->cctx, ZSTD_c_contentSizeFlag, 1)) ||
                      ZSTD_isError(ZSTD_CCtx_setParameter(log->cctx, ZSTD_c_dictIDFlag, 0)))) {
        code = err_set(STELE_ERR_NOMEM, "zstd refuses the frame parameters of %s", log->dir);
        goto fail;
    }
    if ((code = dict_writer_open(log)) != STELE_OK)
        goto fail;
    /* SPEC.md §4: recorded time never decreases, also across restarts: the
     * floor is the log's last record (the active segment may be empty). */
    log->last_recorded_at_ns = 0;
    if (log->written_lsn) {
        stele_record *last;
        if ((code = stele_get(log, log->written_lsn, &last)) != STELE_OK)
            goto fail;
        log->last_recorded_at_ns = last->recorded_at_ns;
        stele_record_free(last);
    }
    log->last_sync_ns = now_ns();
    log->next_lsn = log->written_lsn + 1;
    log->assigned_lsn = log->taken_lsn = log->attempted_lsn = log->written_lsn;
    log->closed_lsn = log->written_lsn;
    log->fill_since_ns = 0;
    if (!log->linger_ns)
        log->linger_ns = NONE_LINGER_NS;
    log->free_batches = NULL;
    for (int i = WRITER_BATCHES - 1; i >= 0; i--) {
        log->batches[i].next = log->free_batches;
        log->free_batches = &log->batches[i];
    }
    log->writer_started = 1;
    for (int i = 0; i < 2; i++) {
        int r = pthread_create(&log->bg[i], NULL, bg_main, log);
        if (r != 0) {
            writer_stop(log);
            return err_set(STELE_ERR_IO, "start writer thread for %s: %s", log->dir, strerror(r));
        }
        log->bg_started = i + 1;
    }
    return STELE_OK;
fail:
    /* The open fails and log_free knows nothing of the writer's state. */
    index_free(log);
    ZSTD_freeCCtx(log->cctx);
    log->cctx = NULL;
    dict_writer_close(log);
    return code;
}

void writer_stop(stele_log *log)
{
    pthread_mutex_lock(&log->q_lock);
    log->stopping = 1;
    pthread_cond_broadcast(&log->bg_cond);
    pthread_cond_broadcast(&log->pipe_cond);
    pthread_mutex_unlock(&log->q_lock);
    for (int i = 0; i < log->bg_started; i++)
        pthread_join(log->bg[i], NULL);
    log->bg_started = 0;
    log->writer_started = 0;
    /* Nothing is left unless the log was closed while appends ran. */
    pthread_mutex_lock(&log->q_lock);
    for (struct request *r = log->await_head, *next; r; r = next) {
        next = r->next;
        complete_locked(log, r, STELE_ERR_CLOSED);
    }
    log->await_head = log->await_tail = NULL;
    pthread_mutex_unlock(&log->q_lock);
    segment_spare_discard(log);
    run_callbacks(log);
    while (log->pool_blocks) {
        struct request *next = log->pool_blocks->next;
        for (int i = 1; i < REQUEST_BLOCK; i++)
            free(log->pool_blocks[i].spare);
        free(log->pool_blocks);
        log->pool_blocks = next;
    }
    log->pool = NULL;
    ZSTD_freeCCtx(log->cctx);
    log->cctx = NULL;
    dict_writer_close(log);
    free(log->zbuf);
    log->zbuf = NULL;
    writer_free_batches(log);
}

void writer_free_batches(stele_log *log)
{
    for (int i = 0; i < WRITER_BATCHES; i++) {
        free(log->batches[i].buf);
        log->batches[i].buf = NULL;
        log->batches[i].cap = 0;
    }
}

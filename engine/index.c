/*
 * index.c - the index derived from the log (SPEC.md §15): applying records,
 * the checkpoint file (written and loaded through the I/O seam), and the
 * queries of the public API (status, get by key, pending, stream versions).
 *
 * The log is the truth. The checkpoint only saves the scan: it is trusted
 * when its header names this log, its window, an LSN the log holds, and the
 * record the log holds there; otherwise the index is rebuilt from the log and
 * stats say why.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

uint64_t log_now(const stele_log *log)
{
    return log->clock_fn ? log->clock_fn(log->clock_ctx) : now_ns();
}

void log_set_clock(stele_log *log, uint64_t (*fn)(void *ctx), void *ctx)
{
    log->clock_fn = fn;
    log->clock_ctx = ctx;
}

int index_key_live(const stele_log *log, const struct idx_key *k, uint64_t now)
{
    uint64_t window = log->meta.idem_window_ns;
    if (window == 0 || (k->kind == STELE_KIND_INTENT && k->outcome_lsn == 0))
        return 1;
    return !(now > k->last_at_ns && now - k->last_at_ns > window); /* no overflow for huge windows */
}

int index_apply(stele_log *log, const struct fmt_record *rec, uint64_t lsn, const uint32_t *key_hash,
                const struct idx_hint *hint)
{
    struct idx *x = log->idx;
    uint32_t h = key_hash ? *key_hash : rec->key_size ? idx_key_hash(x, rec->key, rec->key_size) : 0;
    if (rec->stream_size) {
        uint64_t v = idx_stream_append(x, rec->stream, rec->stream_size, lsn);
        if (v == 0)
            return err_set(STELE_ERR_NOMEM, "out of memory indexing stream of LSN %llu", (unsigned long long)lsn);
        if (v != rec->stream_version)
            return err_set(STELE_ERR_CORRUPT, "LSN %llu has stream version %llu, the index expected %llu",
                           (unsigned long long)lsn, (unsigned long long)rec->stream_version,
                           (unsigned long long)v);
    }
    if (rec->kind == STELE_KIND_COMPENSATION) {
        if (idx_comp_put(x, rec->ref, lsn, rec->fingerprint) != 0)
            return err_set(STELE_ERR_NOMEM, "out of memory indexing compensation LSN %llu", (unsigned long long)lsn);
    } else if (rec->key_size && rec->kind == STELE_KIND_OUTCOME) {
        /* The engine appends an outcome only for the pending intent its key
         * holds. One that does not match (a log written by an engine before
         * these rules) decides nothing: it is not indexed. */
        struct idx_key k;
        struct idx_hint at;
        if (!idx_key_get_h(x, h, rec->key, rec->key_size, &k, &at) || k.kind != STELE_KIND_INTENT ||
            k.lsn != rec->ref || k.outcome_lsn) {
            log->idx_lsn = lsn;
            return STELE_OK;
        }
        k.outcome = rec->outcome;
        k.outcome_lsn = lsn;
        k.outcome_fingerprint = rec->fingerprint;
        k.last_at_ns = rec->recorded_at_ns;
        if (idx_key_put_h(x, h, rec->key, rec->key_size, &k, &at) != 0)
            return err_set(STELE_ERR_NOMEM, "out of memory indexing outcome LSN %llu", (unsigned long long)lsn);
    } else if (rec->key_size) {
        struct idx_key k = {
            .lsn = lsn,
            .fingerprint = rec->fingerprint,
            .recorded_at_ns = rec->recorded_at_ns,
            .stream_version = rec->stream_version,
            .last_at_ns = rec->recorded_at_ns,
            .kind = rec->kind,
        };
        if (idx_key_put_h(x, h, rec->key, rec->key_size, &k, hint) != 0)
            return err_set(STELE_ERR_NOMEM, "out of memory indexing key of LSN %llu", (unsigned long long)lsn);
    }
    log->idx_lsn = lsn;
    return STELE_OK;
}

void index_expire(stele_log *log, uint64_t now, uint64_t budget)
{
    int done = 1;
    uint64_t n = budget ? idx_expire_step(log->idx, now, budget, &done) : idx_expire(log->idx, now);
    /* A sweep in progress goes on at the next round whatever the time. */
    log->idx_sweeping = !done;
    if (!log->idx_sweeping)
        log->idx_expired_at = now;
    if (n) {
        pthread_mutex_lock(&log->q_lock);
        log->stats.index_expired += n;
        pthread_mutex_unlock(&log->q_lock);
    }
}

void index_expire_round(stele_log *log, uint64_t now, uint64_t records)
{
    uint64_t window = log->meta.idem_window_ns;
    /* Expiry deletes keys all over the index: while a checkpoint's snapshot
     * is being written that would copy most of it, so it waits. */
    if (window && !log->ckpt_started &&
        (log->idx_sweeping || (now > log->idx_expired_at && now - log->idx_expired_at >= window / 16)))
        index_expire(log, now, INDEX_EXPIRE_STEP + INDEX_EXPIRE_PER_RECORD * records);
}

uint64_t index_stream_version_of(stele_log *log, const void *stream, size_t stream_size, uint64_t lsn)
{
    uint64_t lo = 1, hi = idx_stream_version(log->idx, stream, stream_size, NULL);
    while (lo <= hi) { /* the stream's LSNs increase with its versions */
        uint64_t mid = lo + (hi - lo) / 2, at = idx_stream_lsn(log->idx, stream, stream_size, mid);
        if (at == lsn)
            return mid;
        if (at < lsn)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return 0;
}

/* ------------------------------------------------------------ checkpoint */

/* A checkpoint is made in two parts. The index is serialised straight into
 * index.ckpt.tmp, through the page cache; then the file is synced, renamed
 * over index.ckpt and the directory synced. At close both run inline, on
 * the index itself. At a seal both run on a thread of its own (stele-ckpt),
 * which serialises a snapshot of the index (idx_snapshot): the writer takes
 * it under idx_lock, in time proportional to the index's chunk count, not
 * its keys, and goes on appending while the thread writes; what the writer
 * changes meanwhile is copied first, a chunk at a time. Writing the file
 * while serialising costs one copy of the bytes (into the page cache)
 * instead of two. */
struct ckpt_job {
    stele_log *log;
    struct io *io;
    struct idx_ckpt_info info;
    const struct idx *snap;  /* what the thread serialises; NULL when done inline */
    int fd;
    uint64_t off;
    char path[4096], tmp[4200];
    int code;                /* of the serialisation */
};

static int job_write(void *ctx, const void *buf, size_t size)
{
    struct ckpt_job *j = ctx;
    int r = j->io->ops->write(j->io, j->fd, buf, size, j->off, 0);
    if (r < 0)
        return err_set(err_code_from_errno(-r), "write %s offset %llu: %s", j->tmp, (unsigned long long)j->off,
                       strerror(-r));
    j->off += size;
    return STELE_OK;
}

static void job_free(struct ckpt_job *j)
{
    free(j);
}

struct ckpt_io {
    stele_log *log;
    int fd;
    const char *path;
    uint64_t off;
};

/* idx_load reads in pieces of about a megabyte itself: straight through. */
static int ckpt_read(void *ctx, void *buf, size_t size)
{
    struct ckpt_io *c = ctx;
    int r = io_read_full(c->log->io, c->fd, buf, size, c->off);
    if (r == -ENODATA)
        return err_set(STELE_ERR_CORRUPT, "%s: ends at offset %llu, inside its contents", c->path,
                       (unsigned long long)c->off);
    if (r < 0)
        return err_set(err_code_from_errno(-r), "read %s offset %llu: %s", c->path, (unsigned long long)c->off,
                       strerror(-r));
    c->off += size;
    return STELE_OK;
}

/* The record at lsn, for the checkpoint's cross-check with the log. */
static int record_mark(stele_log *log, uint64_t lsn, uint64_t *fp, uint64_t *at)
{
    *fp = *at = 0;
    if (lsn == 0)
        return STELE_OK;
    stele_record *r;
    int code = stele_get(log, lsn, &r);
    if (code)
        return code;
    *fp = r->fingerprint;
    *at = r->recorded_at_ns;
    stele_record_free(r);
    return STELE_OK;
}

static void ckpt_join(void *ctx);

/* idx_lock held: the job of a checkpoint of the index as it is now, its
 * temporary file created. With snapshot, the index is frozen for the
 * thread to serialise (if that cannot be had, it is serialised now);
 * without, it is serialised now. */
static struct ckpt_job *ckpt_prepare(stele_log *log, int snapshot)
{
    struct ckpt_job *j = calloc(1, sizeof *j);
    if (!j) {
        err_set(STELE_ERR_NOMEM, "out of memory for an index checkpoint");
        return NULL;
    }
    j->log = log;
    j->io = log->aux_io ? log->aux_io : log->io;
    j->fd = -1;
    snprintf(j->path, sizeof j->path, "%s/" INDEX_FILE_NAME, log->dir);
    snprintf(j->tmp, sizeof j->tmp, "%s.tmp", j->path);
    struct idx_ckpt_info *info = &j->info;
    *info = (struct idx_ckpt_info){.covered_lsn = log->idx_lsn, .window_ns = log->meta.idem_window_ns,
                                   .written_at_ns = now_ns()};
    memcpy(info->log_id, log->meta.log_id, sizeof info->log_id);
    j->code = record_mark(log, info->covered_lsn, &info->covered_fingerprint, &info->covered_recorded_at_ns);
    if (j->code == STELE_OK &&
        (j->fd = j->io->ops->open(j->io, j->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        j->code = err_sys(-j->fd, "create", j->tmp);
    if (j->code == STELE_OK && snapshot)
        j->snap = idx_snapshot(log->idx, ckpt_join, log);
    if (j->code == STELE_OK && !j->snap)
        j->code = idx_save(log->idx, info, job_write, j);
    return j;
}

/* Counts the end of a checkpoint in stats: stored, covering covered, or
 * failed (stele_errmsg() says why). */
static void ckpt_account(stele_log *log, int code, uint64_t covered)
{
    pthread_mutex_lock(&log->q_lock);
    if (code == STELE_OK) {
        log->stats.index_checkpoints++;
        log->stats.index_checkpoint_lsn = covered;
        log->ckpt_stored_lsn = covered;
    } else {
        log->stats.index_checkpoint_failures++;
        snprintf(log->stats.index_note, sizeof log->stats.index_note, "%s", stele_errmsg());
    }
    pthread_mutex_unlock(&log->q_lock);
}

/* Part two, no lock needed: the temporary file durably in place. The file
 * I/O goes through log->aux_io when there is one (io_uring logs: plain
 * calls, so that a large checkpoint never holds the rings the segments'
 * writes and syncs use). */
static int ckpt_store(struct ckpt_job *j)
{
    stele_log *log = j->log;
    struct io *io = j->io;
    int code = j->code, r = 0;
    if (code == STELE_OK && (r = io->ops->fdatasync(io, j->fd)) < 0)
        code = err_sys(-r, "sync", j->tmp);
    if (j->fd >= 0 && (r = io->ops->close(io, j->fd)) < 0 && code == STELE_OK)
        code = err_sys(-r, "close", j->tmp);
    if (code == STELE_OK && (r = io->ops->rename(io, j->tmp, j->path)) < 0)
        code = err_sys(-r, "rename to " INDEX_FILE_NAME, j->tmp);
    if (code == STELE_OK && (r = io->ops->sync_dir(io, log->dir)) < 0)
        code = err_sys(-r, "sync directory", log->dir);
    if (code) {
        /* The previous checkpoint (if the rename did not happen) or this one
         * (if only the directory sync failed) stays: either is consistent. */
        int saved = code;
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", stele_errmsg());
        if (j->fd >= 0)
            io->ops->unlink(io, j->tmp);
        code = err_set(saved, "index checkpoint not written (the log itself is intact): %s", msg);
    }
    j->fd = -1;
    ckpt_account(log, code, j->info.covered_lsn);
    return code;
}

/* The rest of a prepared job: its snapshot serialised (if it has one),
 * then the file stored; counted in stats either way. Frees j. */
static int ckpt_finish(struct ckpt_job *j)
{
    if (j->snap && j->code == STELE_OK)
        j->code = idx_save(j->snap, &j->info, job_write, j);
    int code = ckpt_store(j);
    job_free(j);
    return code;
}

int index_checkpoint(stele_log *log)
{
    index_checkpoint_wait(log);
    log->idx_ckpt_lsn = log->idx_lsn;
    struct ckpt_job *j = ckpt_prepare(log, 0);
    if (!j) {
        ckpt_account(log, STELE_ERR_NOMEM, 0);
        return STELE_ERR_NOMEM;
    }
    return ckpt_finish(j);
}

static void *ckpt_main(void *arg)
{
    struct ckpt_job *j = arg;
    pthread_setname_np(pthread_self(), "stele-ckpt");
    stele_log *log = j->log;
    ckpt_finish(j);
    pthread_mutex_lock(&log->q_lock);
    log->ckpt_done = 1;
    pthread_mutex_unlock(&log->q_lock);
    return NULL;
}

void index_checkpoint_start(stele_log *log)
{
    if (log->ckpt_started) {
        /* One at a time: the one still being written will do for now. */
        int done;
        pthread_mutex_lock(&log->q_lock);
        done = log->ckpt_done;
        pthread_mutex_unlock(&log->q_lock);
        if (!done)
            return;
        index_checkpoint_wait(log);
    }
    log->idx_ckpt_lsn = log->idx_lsn;
    struct ckpt_job *j = ckpt_prepare(log, 1);
    if (!j) {
        ckpt_account(log, STELE_ERR_NOMEM, 0);
        return;
    }
    log->ckpt_done = 0;
    if (j->code != STELE_OK || pthread_create(&log->ckpt_thread, NULL, ckpt_main, j) != 0) {
        /* A failed preparation is recorded; without a thread, the file is
         * written here. */
        ckpt_finish(j);
        idx_snapshot_release(log->idx);
        return;
    }
    log->ckpt_started = 1;
}

/* Joins the checkpoint thread if there is one (idx_snapshot's wait). */
static void ckpt_join(void *ctx)
{
    stele_log *log = ctx;
    if (!log->ckpt_started)
        return;
    pthread_join(log->ckpt_thread, NULL);
    log->ckpt_started = 0;
}

void index_checkpoint_wait(stele_log *log)
{
    ckpt_join(log);
    if (log->idx)
        idx_snapshot_release(log->idx);
}

void index_checkpoint_reap(stele_log *log)
{
    if (!log->ckpt_started)
        return;
    pthread_mutex_lock(&log->q_lock);
    int done = log->ckpt_done;
    pthread_mutex_unlock(&log->q_lock);
    if (done)
        index_checkpoint_wait(log);
}

/* Loads the checkpoint if it can be trusted; otherwise says why in note. */
static int ckpt_load(stele_log *log, struct idx **out, uint64_t *out_lsn, char *note, size_t note_size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/" INDEX_FILE_NAME, log->dir);
    struct io *io = log->io;
    int fd = io->ops->open(io, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd == -ENOENT) {
        snprintf(note, note_size, "no checkpoint file");
        return STELE_OK;
    }
    if (fd < 0) {
        snprintf(note, note_size, "checkpoint not readable: %s", strerror(-fd));
        return STELE_OK;
    }
    struct ckpt_io c = {.log = log, .fd = fd, .path = path};
    struct idx_ckpt_info info;
    struct idx *x = NULL;
    int code = idx_load(log->meta.idem_window_ns, ckpt_read, &c, &x, &info);
    io->ops->close(io, fd);
    if (code == STELE_ERR_NOMEM)
        return code;
    if (code) {
        snprintf(note, note_size, "checkpoint not trusted: %s", stele_errmsg());
        err_clear();
        return STELE_OK;
    }
    uint64_t fp = 0, at = 0;
    const char *why = NULL;
    if (memcmp(info.log_id, log->meta.log_id, sizeof info.log_id) != 0)
        why = "it belongs to another log";
    else if (info.window_ns != log->meta.idem_window_ns)
        why = "it was written with another idempotency window";
    else if (info.covered_lsn > log->visible_lsn)
        why = "it covers LSNs the log does not hold (newer than the log)";
    else if ((code = record_mark(log, info.covered_lsn, &fp, &at)) != STELE_OK)
        why = stele_errmsg();
    else if (fp != info.covered_fingerprint || at != info.covered_recorded_at_ns)
        why = "the log holds another record at the LSN it covers";
    if (why) {
        snprintf(note, note_size, "checkpoint not trusted: %s", why);
        err_clear();
        idx_free(x);
        return STELE_OK;
    }
    *out = x;
    *out_lsn = info.covered_lsn;
    return STELE_OK;
}

static int apply_cb(void *ctx, uint64_t lsn, const struct fmt_record *rec)
{
    return index_apply(ctx, rec, lsn, NULL, NULL);
}

/* Builds log->idx: the checkpoint plus the records after it, or the whole
 * log when the checkpoint is missing, untrusted or contradicted. */
static int index_build(stele_log *log)
{
    char note[sizeof log->stats.index_note] = "";
    struct idx *x = NULL;
    uint64_t from = 0;
    int code = ckpt_load(log, &x, &from, note, sizeof note);
    if (code)
        return code;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!x) {
            from = 0;
            if (!(x = idx_new(log->meta.idem_window_ns)))
                return err_set(STELE_ERR_NOMEM, "out of memory for the index of %s", log->dir);
        }
        log->idx = x;
        log->idx_lsn = from;
        code = log_scan(log, from + 1, apply_cb, log);
        if (code == STELE_OK)
            break;
        idx_free(x);
        x = log->idx = NULL;
        if (code != STELE_ERR_CORRUPT || from == 0)
            return code;
        /* The log contradicts the checkpoint: rebuild from the log alone. */
        snprintf(note, sizeof note, "checkpoint not trusted: %s", stele_errmsg());
        err_clear();
    }
    pthread_mutex_lock(&log->q_lock);
    log->stats.index_scanned = log->idx_lsn - from;
    log->stats.index_rebuilt = from == 0 && note[0] != 0;
    log->stats.index_checkpoint_lsn = from;
    snprintf(log->stats.index_note, sizeof log->stats.index_note, "%s", note);
    pthread_mutex_unlock(&log->q_lock);
    log->idx_ckpt_lsn = log->ckpt_stored_lsn = from;
    return STELE_OK;
}

int index_open(stele_log *log)
{
    pthread_mutex_lock(&log->idx_lock);
    int code = index_build(log);
    pthread_mutex_unlock(&log->idx_lock);
    return code;
}

int index_lock_current(stele_log *log)
{
    pthread_mutex_lock(&log->idx_lock);
    int code = STELE_OK;
    if (log->opts.read_only) {
        if ((code = log_refresh(log)) == STELE_OK) {
            if (!log->idx)
                code = index_build(log);
            else if (log->idx_lsn < log->visible_lsn)
                code = log_scan(log, log->idx_lsn + 1, apply_cb, log);
        }
    }
    if (code)
        pthread_mutex_unlock(&log->idx_lock);
    return code;
}

void index_unlock(stele_log *log)
{
    pthread_mutex_unlock(&log->idx_lock);
}

void index_free(stele_log *log)
{
    idx_free(log->idx);
    log->idx = NULL;
}

/* --------------------------------------------------------------- queries */

static uint64_t visible_now(stele_log *log)
{
    return log_acked_lsn(log);
}

static int check_name(const char *what, const void *p, size_t n)
{
    if (!p || n == 0)
        return err_set(STELE_ERR_INVALID, "%s: a %s is required", what, what);
    if (n > 255)
        return err_set(STELE_ERR_INVALID, "%s is %zu bytes, the limit is 255", what, n);
    return STELE_OK;
}

/* What key holds as acknowledged records show it; idx_lock held. */
static int status_locked(stele_log *log, const void *key, size_t key_size, stele_status *out)
{
    struct idx_key k;
    uint64_t vis = visible_now(log);
    if (!idx_key_get(log->idx, key, key_size, &k) || k.lsn > vis || !index_key_live(log, &k, log_now(log)))
        return err_set(STELE_ERR_NOT_FOUND, "key \"%.*s\" is not in %s (never appended, or older than the window)",
                       (int)key_size, (const char *)key, log->dir);
    *out = (stele_status){.lsn = k.lsn, .recorded_at_ns = k.recorded_at_ns, .stream_version = k.stream_version};
    uint64_t target = k.lsn;
    if (k.kind == STELE_KIND_INTENT) {
        out->state = STELE_STATE_PENDING;
        if (k.outcome_lsn && k.outcome_lsn <= vis) {
            out->outcome_lsn = k.outcome_lsn;
            out->state = k.outcome == STELE_OUTCOME_CONFIRMED ? STELE_STATE_CONFIRMED : STELE_STATE_FAILED;
            target = k.outcome_lsn;
        }
    } else {
        out->state = STELE_STATE_EVENT;
    }
    uint64_t comp, fp;
    if ((out->state == STELE_STATE_EVENT || out->state == STELE_STATE_CONFIRMED) &&
        idx_comp_get(log->idx, target, &comp, &fp) && comp <= vis) {
        out->state = STELE_STATE_COMPENSATED;
        out->compensation_lsn = comp;
    }
    return STELE_OK;
}

int stele_status_get(stele_log *log, const void *key, size_t key_size, stele_status *out)
{
    err_clear();
    if (!log || !out)
        return err_set(STELE_ERR_INVALID, "status: log and out are required");
    int code = check_name("key", key, key_size);
    if (code || (code = index_lock_current(log)) != STELE_OK)
        return code;
    code = status_locked(log, key, key_size, out);
    index_unlock(log);
    return code;
}

int stele_get_key(stele_log *log, const void *key, size_t key_size, stele_record **out_rec)
{
    stele_status st;
    int code = stele_status_get(log, key, key_size, &st);
    if (code)
        return code;
    if (!out_rec)
        return err_set(STELE_ERR_INVALID, "get: out_rec is required");
    return stele_get(log, st.lsn, out_rec);
}

struct pending_ctx {
    stele_log *log;
    uint64_t older_than_ns, vis;
    size_t limit, count, key_bytes, cap;
    stele_pending_item *items;
    char *keys; /* key bytes gathered here, copied after the items at the end */
    size_t keys_cap;
};

static int pending_cb(void *ctx, const void *key, size_t key_size, const struct idx_key *v)
{
    struct pending_ctx *p = ctx;
    if (v->lsn > p->vis || (p->limit && p->count == p->limit))
        return 1; /* oldest first: everything after is newer still */
    if (p->older_than_ns && v->recorded_at_ns > p->older_than_ns)
        return 1;
    if (p->count == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        stele_pending_item *n = realloc(p->items, cap * sizeof *n);
        if (!n)
            return -1;
        p->items = n;
        p->cap = cap;
    }
    if (p->key_bytes + key_size > p->keys_cap) {
        size_t cap = p->keys_cap ? p->keys_cap * 2 : 4096;
        while (cap < p->key_bytes + key_size)
            cap *= 2;
        char *n = realloc(p->keys, cap);
        if (!n)
            return -1;
        p->keys = n;
        p->keys_cap = cap;
    }
    memcpy(p->keys + p->key_bytes, key, key_size);
    p->items[p->count++] = (stele_pending_item){v->lsn, v->recorded_at_ns, (const char *)(uintptr_t)p->key_bytes,
                                                key_size};
    p->key_bytes += key_size;
    return 0;
}

int stele_pending(stele_log *log, uint64_t older_than_ns, size_t limit, stele_pending_item **out_items,
                  size_t *out_count)
{
    err_clear();
    if (!log || !out_items || !out_count)
        return err_set(STELE_ERR_INVALID, "pending: log, out_items and out_count are required");
    int code = index_lock_current(log);
    if (code)
        return code;
    struct pending_ctx p = {.log = log, .older_than_ns = older_than_ns, .vis = visible_now(log), .limit = limit};
    int r = idx_pending_each(log->idx, pending_cb, &p);
    index_unlock(log);
    stele_pending_item *out = NULL;
    if (r >= 0)
        out = malloc(p.count * sizeof *out + p.key_bytes + 1);
    if (out) {
        /* One allocation: the items, then the key bytes they point to. */
        char *keys = (char *)(out + p.count);
        if (p.key_bytes)
            memcpy(keys, p.keys, p.key_bytes);
        for (size_t i = 0; i < p.count; i++) {
            out[i] = p.items[i];
            out[i].key = keys + (uintptr_t)p.items[i].key;
        }
    }
    free(p.items);
    free(p.keys);
    if (!out)
        return err_set(STELE_ERR_NOMEM, "out of memory listing %zu pending intents", p.count);
    *out_items = out;
    *out_count = p.count;
    return STELE_OK;
}

void stele_pending_free(stele_pending_item *items)
{
    free(items);
}

int stele_stream_version(stele_log *log, const void *stream, size_t stream_size, uint64_t *out_version,
                         uint64_t *out_lsn)
{
    err_clear();
    if (!log || !out_version)
        return err_set(STELE_ERR_INVALID, "stream_version: log and out_version are required");
    int code = check_name("stream", stream, stream_size);
    if (code || (code = index_lock_current(log)) != STELE_OK)
        return code;
    uint64_t vis = visible_now(log), last = 0;
    uint64_t v = idx_stream_version(log->idx, stream, stream_size, &last);
    /* Versions still in flight are not acknowledged: step back to the last
     * visible one (the stream's LSNs increase with its versions). */
    while (v && last > vis)
        last = --v ? idx_stream_lsn(log->idx, stream, stream_size, v) : 0;
    index_unlock(log);
    *out_version = v;
    if (out_lsn)
        *out_lsn = last;
    return STELE_OK;
}

/* For stream iterators: LSN of the stream's record at version, 0 when it is
 * not there (yet) or not acknowledged. */
int index_stream_lsn(stele_log *log, const void *stream, size_t stream_size, uint64_t version, uint64_t *out_lsn)
{
    int code = index_lock_current(log);
    if (code)
        return code;
    uint64_t lsn = idx_stream_lsn(log->idx, stream, stream_size, version);
    index_unlock(log);
    *out_lsn = lsn <= visible_now(log) ? lsn : 0;
    return STELE_OK;
}

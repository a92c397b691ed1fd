/*
 * reader.c - reading records back: get by LSN, iterators that can wait for
 * new records, and the internal full scan (SPEC.md §8).
 *
 * Readers see only LSNs up to the visible watermark: in sync mode that is
 * the durable LSN, so no reader ever sees a record that a crash could take
 * back. Every batch read is checked (header, body checksum, then each
 * record's own checksum) before a byte of it is returned.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct stele_iter {
    stele_log *log;
    uint64_t next_lsn;
    struct batch_buf b;
    struct readahead ra;     /* sequential batches in one large read */
    struct segment *seg;
    struct batch_ref ref;
    size_t rec_off;          /* offset of record next_lsn in the current batch body */
    int have_batch;
    stele_record rec;
    /* stream iterators (stele_iter_open_stream): the stream and the next version */
    size_t stream_size;      /* 0 = a plain iterator */
    uint64_t next_version;
    char stream[256];
};

void record_from_fmt(const struct fmt_record *r, uint64_t lsn, stele_record *out)
{
    *out = (stele_record){
        .lsn = lsn,
        .recorded_at_ns = r->recorded_at_ns,
        .event_time_ns = r->event_time_ns,
        .stream_version = r->stream_version,
        .fingerprint = r->fingerprint,
        .ref = r->ref,
        .kind = (stele_kind)r->kind,
        .outcome = (stele_outcome)r->outcome,
        .content = (stele_content)r->content,
        .flags = r->flags,
        .type = (const char *)r->type, .type_size = r->type_size,
        .stream = (const char *)r->stream, .stream_size = r->stream_size,
        .key = (const char *)r->key, .key_size = r->key_size,
        .actor = (const char *)r->actor, .actor_size = r->actor_size,
        .payload = r->payload, .payload_size = r->payload_size,
    };
}

/* Every store of visible_lsn is atomic, so readers need no lock to see it:
 * a scan asks once per record and must not contend with the writer. */
static uint64_t visible(stele_log *log)
{
    return __atomic_load_n(&log->visible_lsn, __ATOMIC_ACQUIRE);
}

uint64_t log_acked_lsn(stele_log *log)
{
    uint64_t v = visible(log);
    if (!log->opts.read_only && log->durability == STELE_DURABILITY_NONE) {
        uint64_t a = __atomic_load_n(&log->assigned_lsn, __ATOMIC_SEQ_CST);
        if (a > v)
            v = a;
    }
    return v;
}

/* None mode acknowledges an append once it is encoded, and the background
 * threads write it soon after (SPEC.md §11.1): a reader of this handle that
 * asks for such a record waits for its write, so that every acknowledged
 * record can be read back at once. A record acknowledged but not written
 * when the log was fenced cannot be: that is said (FENCED, with the fence's
 * cause), not passed off as the end of the log. */
int log_catch_up(stele_log *log, uint64_t lsn)
{
    if (log->opts.read_only || log->durability != STELE_DURABILITY_NONE || lsn <= visible(log))
        return STELE_OK;
    int code = writer_flush_to(log, lsn);
    if (code == STELE_OK || lsn <= visible(log))
        return STELE_OK;
    pthread_mutex_lock(&log->q_lock);
    code = err_set(code, "LSN %llu was acknowledged (durability none) but not written to %s before %s: %s",
                   (unsigned long long)lsn, log->dir,
                   code == STELE_ERR_FENCED ? "the log was fenced" : "the handle closed", log->fence_msg);
    pthread_mutex_unlock(&log->q_lock);
    return code;
}

/* Finds the batch holding lsn (which must be visible). */
static int locate(stele_log *log, uint64_t lsn, struct segment **out_seg, struct batch_ref *out_ref)
{
    struct segment *seg = log_find_segment(log, lsn);
    if (!seg)
        return err_set(STELE_ERR_NOT_FOUND, "LSN %llu is not in %s", (unsigned long long)lsn, log->dir);
    int code = segment_ensure_index(log, seg);
    if (code)
        return code;
    pthread_mutex_lock(&seg->index_lock);
    size_t lo = 0, hi = seg->index_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (seg->index[mid].first_lsn <= lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    int found = lo > 0 && lsn < seg->index[lo - 1].first_lsn + seg->index[lo - 1].record_count;
    if (found)
        *out_ref = seg->index[lo - 1];
    pthread_mutex_unlock(&seg->index_lock);
    if (!found)
        return err_set(STELE_ERR_NOT_FOUND, "LSN %llu is not in %s", (unsigned long long)lsn, seg->path);
    *out_seg = seg;
    return STELE_OK;
}

/* Decodes the record at it->rec_off, which must be LSN it->next_lsn. */
static int decode_at(struct stele_iter *it, struct fmt_record *out)
{
    size_t size;
    const struct fmt_batch_header *h = &it->b.header;
    enum fmt_status st = fmt_record_decode(it->b.body + it->rec_off, h->raw_size - it->rec_off, it->next_lsn,
                                           it->seg->seed, out, &size);
    if (st != FMT_OK)
        return err_set(STELE_ERR_CORRUPT, "%s batch at offset %llu: record LSN %llu %s", it->seg->path,
                       (unsigned long long)it->ref.offset, (unsigned long long)it->next_lsn, fmt_status_str(st));
    it->rec_off += size;
    return STELE_OK;
}

/* Loads the batch holding it->next_lsn and positions rec_off on it. */
static int load_batch(struct stele_iter *it)
{
    it->have_batch = 0;
    int code = locate(it->log, it->next_lsn, &it->seg, &it->ref);
    if (code)
        return code; /* it->seg is not set */
    code = batch_read_ahead(it->log, it->seg, &it->ref, &it->b, &it->ra);
    /* A table loaded from an index file that points at no such batch is
     * wrong, not the segment (SPEC.md §19.3): once rebuilt from the
     * segment, the read is tried again and its verdict stands. */
    if (code == STELE_ERR_CORRUPT && segidx_distrust(it->log, it->seg, it->ref.offset)) {
        err_clear();
        it->ra.len = 0;
        code = locate(it->log, it->next_lsn, &it->seg, &it->ref);
        if (code == STELE_OK)
            code = batch_read_ahead(it->log, it->seg, &it->ref, &it->b, &it->ra);
    }
    if (code)
        return code;
    it->rec_off = 0;
    uint64_t target = it->next_lsn;
    for (it->next_lsn = it->ref.first_lsn; it->next_lsn < target; it->next_lsn++) {
        struct fmt_record r;
        if ((code = decode_at(it, &r)) != STELE_OK)
            return code;
    }
    it->have_batch = 1;
    return STELE_OK;
}

/* The next record at or below the visible watermark; *out NULL at the end. */
static int iter_step(struct stele_iter *it, struct fmt_record *rec, int *out_got)
{
    *out_got = 0;
    if (it->next_lsn > visible(it->log))
        return STELE_OK;
    if (!it->have_batch || it->next_lsn >= it->ref.first_lsn + it->ref.record_count) {
        int code = load_batch(it);
        if (code)
            return code;
    }
    int code = decode_at(it, rec);
    if (code)
        return code;
    it->next_lsn++;
    *out_got = 1;
    return STELE_OK;
}

int log_scan(stele_log *log, uint64_t from_lsn, int (*fn)(void *ctx, uint64_t lsn, const struct fmt_record *rec),
             void *ctx)
{
    struct stele_iter it = {.log = log, .next_lsn = from_lsn ? from_lsn : 1};
    int code = STELE_OK, got;
    struct fmt_record rec;
    while ((code = iter_step(&it, &rec, &got)) == STELE_OK && got)
        if ((code = fn(ctx, it.next_lsn - 1, &rec)) != STELE_OK)
            break;
    batch_buf_free(&it.b);
    readahead_free(&it.ra);
    return code;
}

int stele_get(stele_log *log, uint64_t lsn, stele_record **out_rec)
{
    err_clear();
    if (!log || !out_rec)
        return err_set(STELE_ERR_INVALID, "get: log and out_rec are required");
    if (lsn > visible(log) && log->opts.read_only) {
        int code = log_refresh(log);
        if (code)
            return code;
    }
    int caught = lsn ? log_catch_up(log, lsn) : STELE_OK;
    if (caught)
        return caught;
    if (lsn == 0 || lsn > visible(log))
        return err_set(STELE_ERR_NOT_FOUND, "LSN %llu is not in %s (last LSN %llu)", (unsigned long long)lsn,
                       log->dir, (unsigned long long)visible(log));
    struct stele_iter it = {.log = log, .next_lsn = lsn};
    struct fmt_record rec;
    int got, code = iter_step(&it, &rec, &got);
    if (code == STELE_OK) {
        size_t strings = (size_t)rec.type_size + rec.stream_size + rec.key_size + rec.actor_size;
        stele_record *out = malloc(sizeof *out + strings + rec.payload_size + 1);
        if (!out) {
            code = err_set(STELE_ERR_NOMEM, "out of memory for a %u-byte payload", rec.payload_size);
        } else {
            /* One allocation: the struct, then the variable fields copied after it. */
            uint8_t *p = (uint8_t *)(out + 1);
            memcpy(p, rec.type, strings + rec.payload_size);
            p[strings + rec.payload_size] = 0;
            record_from_fmt(&rec, lsn, out);
            out->type = (const char *)p;
            out->stream = out->type + rec.type_size;
            out->key = out->stream + rec.stream_size;
            out->actor = out->key + rec.key_size;
            out->payload = out->actor + rec.actor_size;
            *out_rec = out;
        }
    }
    batch_buf_free(&it.b);
    readahead_free(&it.ra);
    return code;
}

void stele_record_free(stele_record *rec)
{
    free(rec);
}

int stele_iter_open(stele_log *log, uint64_t from_lsn, stele_iter **out_iter)
{
    err_clear();
    if (!log || !out_iter)
        return err_set(STELE_ERR_INVALID, "iter_open: log and out_iter are required");
    stele_iter *it = calloc(1, sizeof *it);
    if (!it)
        return err_set(STELE_ERR_NOMEM, "out of memory for an iterator");
    it->log = log;
    it->next_lsn = from_lsn ? from_lsn : 1;
    *out_iter = it;
    return STELE_OK;
}

/* Waits until lsn is visible or the deadline passes (deadline 0 = forever). */
static void wait_visible(stele_log *log, uint64_t lsn, uint64_t deadline_ns)
{
    if (log->opts.read_only) {
        /* Another process writes: poll the files. */
        while (visible(log) < lsn && (deadline_ns == 0 || now_ns() < deadline_ns)) {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
            if (log_refresh(log) != STELE_OK)
                return;
        }
        return;
    }
    pthread_mutex_lock(&log->q_lock);
    while (log->visible_lsn < lsn && !log->stopping) {
        if (deadline_ns == 0) {
            pthread_cond_wait(&log->done_cond, &log->q_lock);
            continue;
        }
        struct timespec ts = {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)};
        if (pthread_cond_timedwait(&log->done_cond, &log->q_lock, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&log->q_lock);
}

int stele_iter_open_stream(stele_log *log, const void *stream, size_t stream_size, uint64_t from_version,
                           stele_iter **out_iter)
{
    err_clear();
    if (!log || !out_iter || !stream || stream_size == 0 || stream_size > 255)
        return err_set(STELE_ERR_INVALID, "iter_open_stream: log, out_iter and a stream of 1 to 255 bytes are required");
    stele_iter *it = calloc(1, sizeof *it);
    if (!it)
        return err_set(STELE_ERR_NOMEM, "out of memory for an iterator");
    it->log = log;
    it->next_lsn = 1;
    memcpy(it->stream, stream, stream_size);
    it->stream_size = stream_size;
    it->next_version = from_version ? from_version : 1;
    *out_iter = it;
    return STELE_OK;
}

/* Positions a stream iterator on its next version's record; *out_got is 0
 * when that version is not there (yet) after waiting up to timeout_ms. */
static int stream_seek(stele_iter *it, int timeout_ms, int *out_got)
{
    uint64_t deadline = timeout_ms > 0 ? now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
    uint64_t lsn;
    for (;;) {
        uint64_t vis = visible(it->log);
        int code = index_stream_lsn(it->log, it->stream, it->stream_size, it->next_version, &lsn);
        if (code)
            return code;
        if (lsn)
            break;
        if (timeout_ms == 0 || (deadline && now_ns() >= deadline)) {
            *out_got = 0;
            return STELE_OK;
        }
        wait_visible(it->log, vis + 1, deadline);
    }
    /* Within the batch in hand, decode forward to it; otherwise load its batch. */
    if (it->have_batch && lsn >= it->next_lsn && lsn < it->ref.first_lsn + it->ref.record_count) {
        struct fmt_record skip;
        while (it->next_lsn < lsn) {
            int code = decode_at(it, &skip);
            if (code)
                return code;
            it->next_lsn++;
        }
    } else {
        it->have_batch = 0;
        it->next_lsn = lsn;
    }
    it->next_version++;
    *out_got = 1;
    return STELE_OK;
}

int stele_iter_next(stele_iter *it, int timeout_ms, const stele_record **out_rec)
{
    err_clear();
    if (!it || !out_rec)
        return err_set(STELE_ERR_INVALID, "iter_next: iterator and out_rec are required");
    *out_rec = NULL;
    if (it->stream_size) {
        int got, code = stream_seek(it, timeout_ms, &got);
        if (code || !got)
            return code;
        timeout_ms = 0;
    }
    int caught = log_catch_up(it->log, it->next_lsn);
    if (caught)
        return caught;
    if (it->next_lsn > visible(it->log)) {
        if (it->log->opts.read_only) {
            int code = log_refresh(it->log);
            if (code)
                return code;
        }
        if (it->next_lsn > visible(it->log) && timeout_ms != 0)
            wait_visible(it->log, it->next_lsn, timeout_ms < 0 ? 0 : now_ns() + (uint64_t)timeout_ms * 1000000u);
    }
    struct fmt_record rec;
    int got, code = iter_step(it, &rec, &got);
    if (code == STELE_OK && got) {
        record_from_fmt(&rec, it->next_lsn - 1, &it->rec);
        *out_rec = &it->rec;
    }
    return code;
}

void stele_iter_close(stele_iter *it)
{
    if (!it)
        return;
    batch_buf_free(&it->b);
    readahead_free(&it->ra);
    free(it);
}

int stele_stats_get(stele_log *log, stele_stats *out)
{
    err_clear();
    if (!log || !out)
        return err_set(STELE_ERR_INVALID, "stats: log and out are required");
    if (log->opts.read_only) {
        /* A fenced read-only handle still reports what it shows (fenced = 1). */
        int code = log_refresh(log);
        if (code && code != STELE_ERR_FENCED)
            return code;
        err_clear();
    }
    stele_stats ix = {0};
    if (index_lock_current(log) == STELE_OK) {
        if (log->idx) {
            ix.index_keys = idx_key_count(log->idx);
            ix.index_pending = idx_pending_count(log->idx);
            ix.index_streams = idx_stream_count(log->idx);
            ix.index_memory = idx_memory(log->idx);
        }
        index_unlock(log);
    } else {
        /* The rest of the stats still reports; the index counts say they
         * are missing, and why, instead of passing for zeros. */
        snprintf(ix.index_note, sizeof ix.index_note, "index not available: %s", stele_errmsg());
        err_clear();
    }
    pthread_mutex_lock(&log->q_lock);
    *out = log->stats;
    out->index_keys = ix.index_keys;
    out->index_pending = ix.index_pending;
    out->index_streams = ix.index_streams;
    out->index_memory = ix.index_memory;
    if (ix.index_note[0])
        memcpy(out->index_note, ix.index_note, sizeof out->index_note);
    out->last_lsn = log_acked_lsn(log); /* in none mode records not yet written too: catch_up reads them */
    out->durable_lsn = log->durable_lsn;
    out->first_lsn = log->visible_lsn ? 1 : 0;
    out->fenced = log->fenced;
    pthread_mutex_unlock(&log->q_lock);
    segidx_stats(log, out);
    pthread_rwlock_rdlock(&log->seg_lock);
    out->segment_count = log->seg_count;
    for (size_t i = 0; i < log->seg_count; i++) {
        const struct segment *s = log->segs[i];
        /* The writer moves these while we look: atomic loads, a snapshot. */
        uint64_t data_end = __atomic_load_n(&s->data_end, __ATOMIC_RELAXED);
        int sealed = segment_sealed(s);
        out->sealed_segment_count += sealed != 0;
        out->disk_size += sealed ? data_end + STELE_FOOTER_SIZE : s->capacity;
        out->data_size += data_end;
    }
    pthread_rwlock_unlock(&log->seg_lock);
    dict_stats(log, out);
    return STELE_OK;
}

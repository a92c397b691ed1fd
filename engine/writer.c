/*
 * writer.c - the append path: the request queue, the writer thread, batching
 * and group commit (SPEC.md §4, §11).
 *
 * Appenders validate their records, queue a request and sleep. The single
 * writer thread takes everything queued (up to a batch's limits), decides
 * each record (idempotency key, expected stream version), assigns LSNs and
 * the recorded time, encodes one batch frame and writes it with one call; in
 * sync mode that call is a write linked to an fdatasync, so every appender in
 * the batch shares one sync (group commit) and none is woken before the sync
 * has completed. Requests that arrive meanwhile form the next batch.
 *
 * A failed write or sync fences the log: the requests of that round learn
 * STELE_ERR_OUTCOME_UNKNOWN, queued and later ones STELE_ERR_FENCED, and the
 * writer never retries the sync (a second fsync can "succeed" over pages the
 * kernel already dropped).
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

/* A batch grows to about this many bytes of records before it is cut; a
 * single append_batch call may exceed it (it is never split). */
#define WRITER_BATCH_TARGET_SIZE (4u * 1024u * 1024u)

static size_t event_record_size(const stele_event *ev)
{
    struct fmt_record r = {
        .type_size = (uint8_t)ev->type_size,
        .stream_size = (uint8_t)ev->stream_size,
        .key_size = (uint8_t)ev->key_size,
        .actor_size = (uint8_t)ev->actor_size,
        .payload_size = (uint32_t)ev->payload_size,
    };
    return fmt_record_size(&r);
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n)
            return 0;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

/* Static checks of one event: everything that does not depend on the log's state. */
static int check_event(const stele_log *log, const stele_event *ev, size_t i)
{
    static const char *names[] = {"type", "stream", "key", "actor"};
    const size_t sizes[] = {ev->type_size, ev->stream_size, ev->key_size, ev->actor_size};
    const void *ptrs[] = {ev->type, ev->stream, ev->key, ev->actor};
    for (int f = 0; f < 4; f++) {
        if (sizes[f] > 255)
            return err_set(STELE_ERR_TOO_LARGE, "event %zu: %s is %zu bytes, the limit is 255", i, names[f], sizes[f]);
        if (sizes[f] && !ptrs[f])
            return err_set(STELE_ERR_INVALID, "event %zu: %s has a size but no pointer", i, names[f]);
    }
    if (!utf8_valid((const unsigned char *)ev->type, ev->type_size) ||
        !utf8_valid((const unsigned char *)ev->actor, ev->actor_size))
        return err_set(STELE_ERR_INVALID, "event %zu: %s is not valid UTF-8", i,
                       utf8_valid((const unsigned char *)ev->type, ev->type_size) ? "actor" : "type");
    if (ev->payload_size > log->meta.payload_size_max)
        return err_set(STELE_ERR_TOO_LARGE, "event %zu: payload is %zu bytes, the log's limit is %u", i,
                       ev->payload_size, log->meta.payload_size_max);
    if (ev->payload_size && !ev->payload)
        return err_set(STELE_ERR_INVALID, "event %zu: payload has a size but no pointer", i);
    stele_kind kind = ev->kind ? ev->kind : STELE_KIND_EVENT;
    if (kind < STELE_KIND_EVENT || kind > STELE_KIND_COMPENSATION)
        return err_set(STELE_ERR_INVALID, "event %zu: kind %d is not a stele_kind", i, (int)ev->kind);
    if ((kind == STELE_KIND_OUTCOME) != (ev->outcome != STELE_OUTCOME_NONE) || ev->outcome > STELE_OUTCOME_FAILED)
        return err_set(STELE_ERR_INVALID, "event %zu: outcome must be confirmed or failed exactly for kind outcome", i);
    if (ev->content > STELE_CONTENT_BINARY || (int)ev->content < 0)
        return err_set(STELE_ERR_INVALID, "event %zu: content %d is not a stele_content", i, (int)ev->content);
    if (ev->flags & ~STELE_FLAG_BACKFILLED)
        return err_set(STELE_ERR_INVALID, "event %zu: unknown flags 0x%x", i, ev->flags);
    if ((kind == STELE_KIND_INTENT || kind == STELE_KIND_OUTCOME) && ev->key_size == 0)
        return err_set(STELE_ERR_INVALID, "event %zu: an %s needs a key", i,
                       kind == STELE_KIND_INTENT ? "intent" : "outcome (its intent's key)");
    if (kind == STELE_KIND_COMPENSATION && (ev->ref == 0 || ev->key_size))
        return err_set(STELE_ERR_INVALID, "event %zu: a compensation needs ref (what it reverses) and no key", i);
    if (ev->has_expect_version && ev->stream_size == 0)
        return err_set(STELE_ERR_INVALID, "event %zu: expect_version needs a stream", i);
    return STELE_OK;
}

/* Largest body a batch frame may carry in this log's segments. */
static uint64_t body_size_limit(const stele_log *log)
{
    uint64_t room = log->meta.segment_size - STELE_SEGMENT_HEADER_SIZE - STELE_FOOTER_SIZE - STELE_BATCH_HEADER_SIZE;
    return room < STELE_BATCH_BODY_SIZE_MAX ? room : STELE_BATCH_BODY_SIZE_MAX;
}

static void complete_locked(stele_log *log, struct request *r, int code)
{
    r->code = code;
    /* A failed round reports nothing as decided, conflicts and version
     * mismatches included: they may rest on a record of this batch or of
     * one in flight that never became durable (RELIABILITY S28). */
    for (size_t i = 0; i < r->count && code != STELE_OK; i++) {
        r->receipts[i].code = (stele_code)code;
        r->receipts[i].decision = STELE_DECISION_NONE;
    }
    for (size_t i = 0; i < r->count; i++) {
        const stele_receipt *rc = &r->receipts[i];
        if (rc->decision == STELE_DECISION_NEW)
            log->stats.appends_new++;
        else if (rc->decision == STELE_DECISION_DUPLICATE)
            log->stats.appends_duplicate++;
        else if (rc->decision == STELE_DECISION_CONFLICT)
            log->stats.appends_conflict++;
        else
            log->stats.appends_failed++;
        if (r->code == STELE_OK && rc->code != STELE_OK)
            r->code = rc->code;
    }
    r->done = 1;
    if (r->fn) {
        /* Called by whoever completed it, after dropping q_lock. */
        r->next = log->callbacks;
        log->callbacks = r;
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

/* Fences the log: the round's requests get code, everything queued FENCED. */
static void fence_locked(stele_log *log, struct request *round, int code)
{
    if (!log->fenced) {
        log->fenced = 1;
        snprintf(log->fence_msg, sizeof log->fence_msg, "%s", stele_errmsg());
    }
    for (struct request *r = round, *next; r; r = next) {
        next = r->next;
        complete_locked(log, r, code);
    }
    /* Written batches still waiting for their sync: whether they reached the
     * disk is unknown now (RELIABILITY S9: every later batch in flight too). */
    for (struct request *r = log->await_head, *next; r; r = next) {
        next = r->next;
        complete_locked(log, r, STELE_ERR_OUTCOME_UNKNOWN);
    }
    log->await_head = log->await_tail = NULL;
    log->inflight_count = 0;
    for (struct request *r = log->q_head, *next; r; r = next) {
        next = r->next;
        complete_locked(log, r, STELE_ERR_FENCED);
    }
    log->q_head = log->q_tail = NULL;
    log->q_records = 0;
    log->stats.fenced = 1;
    pthread_cond_broadcast(&log->done_cond);
    pthread_cond_broadcast(&log->sync_cond);
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

/* The batch being assembled by the writer thread. */
struct round {
    uint64_t first_lsn;
    uint64_t next_lsn;
    uint64_t recorded_at_ns;
    size_t body_size;
    uint64_t durable_lsn;    /* durable watermark when the round was taken */
    uint64_t bytes_written;  /* counters, added to stats under q_lock */
    uint64_t syncs;
    const struct segment *seg; /* where the batch went, for the ack hook */
    uint64_t frame_offset;
    uint64_t frame_size;
};

/* The receipt of a request that repeats the record at lsn: a duplicate
 * (same fingerprint, so same stream) or a conflict. version is the
 * original's stream version when the index knows it (keys), UINT64_MAX when
 * it is to be looked up (outcomes, compensations: a duplicate names the
 * original's stream; a conflict may not, and gets 0). */
static stele_receipt repeat_of(stele_log *log, const stele_event *ev, uint64_t lsn, int same, uint64_t version)
{
    if (version == UINT64_MAX)
        version = same && ev->stream_size ? index_stream_version_of(log, ev->stream, ev->stream_size, lsn) : 0;
    return (stele_receipt){lsn, version, same ? STELE_DECISION_DUPLICATE : STELE_DECISION_CONFLICT,
                           same ? STELE_OK : STELE_ERR_CONFLICT};
}

static stele_receipt refused(int code)
{
    return (stele_receipt){0, 0, STELE_DECISION_NONE, (stele_code)code};
}

/* Decides one event against the index (SPEC.md §15.3, RELIABILITY S26-S30):
 * returns 1 when it is to be appended (rec completed: an outcome's ref is
 * its intent), 0 when its receipt is final. idx_lock held. */
static int decide(stele_log *log, const stele_event *ev, struct fmt_record *rec, struct round *rd,
                  stele_receipt *rc, uint32_t key_hash, struct idx_hint *hint)
{
    struct idx_key k;
    int live = ev->key_size && idx_key_get_h(log->idx, key_hash, ev->key, ev->key_size, &k, hint) &&
               index_key_live(log, &k, rd->recorded_at_ns);
    if (rec->kind == STELE_KIND_OUTCOME) {
        if (!live) {
            *rc = refused(STELE_ERR_NOT_FOUND);
            return 0;
        }
        if (k.kind != STELE_KIND_INTENT || (ev->ref && ev->ref != k.lsn)) {
            *rc = refused(STELE_ERR_INVALID);
            rc->lsn = k.lsn;
            return 0;
        }
        rec->ref = k.lsn;
        rec->fingerprint = fmt_fingerprint(rec);
        if (k.outcome_lsn) {
            *rc = repeat_of(log, ev, k.outcome_lsn, k.outcome_fingerprint == rec->fingerprint, UINT64_MAX);
            return 0;
        }
    } else if (live) {
        *rc = repeat_of(log, ev, k.lsn, k.kind == rec->kind && k.fingerprint == rec->fingerprint, k.stream_version);
        return 0;
    }
    if (ev->ref >= rd->next_lsn) {
        *rc = refused(STELE_ERR_INVALID);
        return 0;
    }
    uint64_t comp, comp_fp;
    if (rec->kind == STELE_KIND_COMPENSATION && idx_comp_get(log->idx, ev->ref, &comp, &comp_fp)) {
        *rc = repeat_of(log, ev, comp, comp_fp == rec->fingerprint, UINT64_MAX);
        return 0;
    }
    uint64_t current = 0, last = 0;
    if (ev->stream_size) {
        current = idx_stream_version(log->idx, ev->stream, ev->stream_size, &last);
        if (ev->has_expect_version && ev->expect_version != current) {
            *rc = (stele_receipt){last, current, STELE_DECISION_NONE, STELE_ERR_STREAM_VERSION};
            return 0;
        }
    }
    *rc = (stele_receipt){rd->next_lsn, ev->stream_size ? current + 1 : 0, STELE_DECISION_NEW, STELE_OK};
    return 1;
}

static void fill_record(const stele_event *ev, uint64_t fingerprint, uint64_t recorded_at_ns, struct fmt_record *r)
{
    *r = (struct fmt_record){
        .recorded_at_ns = recorded_at_ns,
        .event_time_ns = ev->event_time_ns ? ev->event_time_ns : recorded_at_ns,
        .ref = ev->ref,
        .kind = (uint8_t)(ev->kind ? ev->kind : STELE_KIND_EVENT),
        .outcome = (uint8_t)ev->outcome,
        .content = (uint8_t)(ev->content ? ev->content : STELE_CONTENT_BINARY),
        .flags = (uint8_t)ev->flags,
        .type = (const uint8_t *)ev->type,
        .stream = (const uint8_t *)ev->stream,
        .key = (const uint8_t *)ev->key,
        .actor = (const uint8_t *)ev->actor,
        .payload = (const uint8_t *)ev->payload,
        .type_size = (uint8_t)ev->type_size,
        .stream_size = (uint8_t)ev->stream_size,
        .key_size = (uint8_t)ev->key_size,
        .actor_size = (uint8_t)ev->actor_size,
        .payload_size = (uint32_t)ev->payload_size,
        .fingerprint = fingerprint,
    };
}

/* The fingerprint of the record ev makes (before an outcome's ref is known). */
static uint64_t event_fingerprint(const stele_event *ev)
{
    struct fmt_record r;
    fill_record(ev, 0, 0, &r);
    return fmt_fingerprint(&r);
}

#define REQUEST_BLOCK 256 /* requests per pool block; block[0] only links the blocks */
#define PREFETCH_AHEAD 16u /* a power of two */

/* The round's events, walked PREFETCH_AHEAD ahead of deciding them: the
 * index slot each key will probe is prefetched (with millions of keys every
 * probe would otherwise miss the cache). */
struct ahead {
    struct request *r;
    size_t i;
};

static void ahead_step(stele_log *log, struct ahead *a)
{
    while (a->r && a->i == a->r->count) {
        a->r = a->r->next;
        a->i = 0;
    }
    if (!a->r)
        return;
    /* A hash of 0 means no key (or, once in 2^32 keys, skips a prefetch):
     * the event itself is not touched here. */
    if (a->r->prep[a->i].key_hash)
        idx_prefetch(log->idx, a->r->prep[a->i].key_hash);
    a->i++;
}

/* Encodes the round's new records into log->buf after the header space. The
 * segment seed is needed for the record checksums, so the segment the batch
 * goes to must be known: the caller rolls first if needed. */
static int encode_round(stele_log *log, struct request *head, struct segment *seg, struct round *rd)
{
    uint8_t *body = log->buf + STELE_BATCH_HEADER_SIZE;
    struct ahead a = {.r = head};
    for (unsigned n = 0; n < PREFETCH_AHEAD; n++)
        ahead_step(log, &a);
    for (struct request *r = head; r; r = r->next) {
        for (size_t i = 0; i < r->count; i++) {
            uint32_t h = r->prep[i].key_hash;
            ahead_step(log, &a);
            const stele_event *ev = &r->events[i];
            struct fmt_record rec;
            fill_record(ev, r->prep[i].fingerprint, rd->recorded_at_ns, &rec);
            struct idx_hint hint; /* where the key's lookup ended, for its insert */
            if (!decide(log, ev, &rec, rd, &r->receipts[i], h, &hint))
                continue;
            rec.stream_version = r->receipts[i].stream_version;
            rd->body_size += fmt_record_encode(&rec, rd->next_lsn, seg->seed, body + rd->body_size,
                                               log->buf_cap - STELE_BATCH_HEADER_SIZE - rd->body_size);
            /* Later records of this round already see this one (S27). */
            int code = index_apply(log, &rec, rd->next_lsn, &h, ev->key_size ? &hint : NULL);
            if (code)
                return code;
            rd->next_lsn++;
        }
    }
    return STELE_OK;
}

/* Before a seal: every batch written to the segment has been synced by the
 * syncer, or the log is fenced. A seal after a failed sync could otherwise
 * succeed (the kernel reports a writeback error once) and put a footer over
 * bytes that never reached the disk (RELIABILITY S10); nor may the seal's
 * syncs run while the syncer's sync is in flight. Costs one sync latency per
 * segment. */
static int drain_syncs(stele_log *log)
{
    pthread_mutex_lock(&log->q_lock);
    while (!log->fenced && log->inflight_count)
        pthread_cond_wait(&log->done_cond, &log->q_lock);
    int fenced = log->fenced;
    pthread_mutex_unlock(&log->q_lock);
    if (fenced)
        return err_set(STELE_ERR_FENCED, "%s: not sealed: a sync of the log failed", log_active(log)->path);
    return STELE_OK;
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

/* Seals the active segment and creates the next one (segment_io.c has the protocol). */
static int roll(stele_log *log)
{
    struct segment *seg = log_active(log);
    int code = drain_syncs(log);
    if (code == STELE_OK)
        code = segment_seal(log, seg);
    if (code)
        return code;
    segidx_write_start(log, seg); /* SPEC.md §19.2: after the seal is durable; never fatal */
    index_maintain(log);
    struct segment *next;
    code = segment_create(log, seg->seq + 1, seg->last_lsn + 1, seg->chain, &next);
    if (code)
        return code;
    code = log_add_segment(log, next);
    if (code)
        segment_free(log, next);
    return code;
}

/* The active segment a frame of up to frame_max bytes can go to, rolling if needed. */
static int segment_for(stele_log *log, uint64_t frame_max, struct segment **out_seg)
{
    struct segment *seg = log_active(log);
    int code = STELE_OK;
    if (!seg || segment_sealed(seg)) {
        uint64_t first = seg ? seg->last_lsn + 1 : 1;
        struct segment *next;
        code = segment_create(log, seg ? seg->seq + 1 : 1, first, seg ? seg->chain : 0, &next);
        if (code == STELE_OK && (code = log_add_segment(log, next)) != STELE_OK)
            segment_free(log, next);
    } else if (seg->data_end + frame_max + STELE_FOOTER_SIZE > seg->capacity) {
        code = roll(log);
    }
    if (code == STELE_OK) {
        *out_seg = log_active(log);
        segment_spare_start(log); /* the next roll's file, made while this segment fills */
    }
    return code;
}

/* Compresses the body when the log asks for it and it saves space; returns
 * the frame to write (log->buf or log->zbuf) with its header still to fill. */
static uint8_t *maybe_compress(stele_log *log, struct fmt_batch_header *h)
{
    if (!log->cctx)
        return log->buf;
    size_t bound = ZSTD_compressBound(h->raw_size);
    if (ensure_buf(&log->zbuf, &log->zbuf_cap, STELE_BATCH_HEADER_SIZE + bound + STELE_BLOCK_SIZE) != STELE_OK) {
        err_clear();
        return log->buf; /* compression is an optimisation: fall back to raw */
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
    const uint8_t *src = log->buf + STELE_BATCH_HEADER_SIZE;
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
        return log->buf;
    h->stored_size = (uint32_t)n;
    h->compression = FMT_COMPRESSION_ZSTD;
    h->dict_id = cdict ? dict_id : 0;
    return log->zbuf;
}

/* Writes the round's batch; on success the segment and LSNs have advanced. */
static int write_round(stele_log *log, struct segment *seg, struct round *rd, int datasync)
{
    struct fmt_batch_header h = {
        .record_count = (uint32_t)(rd->next_lsn - rd->first_lsn),
        .first_lsn = rd->first_lsn,
        .durable_lsn = rd->durable_lsn,
        .prev_chain = seg->chain,
        .stored_size = (uint32_t)rd->body_size,
        .raw_size = (uint32_t)rd->body_size,
        .compression = FMT_COMPRESSION_NONE,
    };
    uint8_t *frame = maybe_compress(log, &h);
    h.body_checksum = stele_checksum(frame + STELE_BATCH_HEADER_SIZE, h.stored_size, seg->seed);
    uint64_t chain = fmt_batch_header_encode(&h, seg->seed, frame, STELE_BATCH_HEADER_SIZE);
    uint64_t frame_size = fmt_batch_frame_size(h.stored_size);
    memset(frame + STELE_BATCH_HEADER_SIZE + h.stored_size, 0,
           frame_size - STELE_BATCH_HEADER_SIZE - h.stored_size);
    assert(seg->data_end + frame_size + STELE_FOOTER_SIZE <= seg->capacity);
    rd->seg = seg;
    rd->frame_offset = seg->data_end;
    rd->frame_size = frame_size;
    int fd, code = segment_write_fd(log, seg, &fd);
    if (code)
        return code;
    int r = log->io->ops->write(log->io, fd, frame, frame_size, seg->data_end, datasync);
    if (r < 0)
        return err_set(err_code_from_errno(-r), "%s %s offset %llu (LSN %llu-%llu): %s",
                       datasync ? "write and sync" : "write", seg->path, (unsigned long long)seg->data_end,
                       (unsigned long long)rd->first_lsn, (unsigned long long)(rd->next_lsn - 1), strerror(-r));
    XXH3_64bits_update(log->file_hash, frame, frame_size);
    struct batch_ref ref = {rd->first_lsn, seg->data_end, h.record_count, (uint32_t)frame_size, rd->recorded_at_ns};
    code = segment_index_add(seg, &ref);
    __atomic_store_n(&seg->data_end, seg->data_end + frame_size, __ATOMIC_RELAXED);
    seg->last_lsn = rd->next_lsn - 1;
    seg->chain = chain;
    seg->batch_count++;
    rd->bytes_written += frame_size;
    rd->syncs += datasync != 0;
    return code;
}

/* fdatasync of the active segment, for interval mode and stele_sync. */
static int sync_active(stele_log *log, struct round *rd)
{
    struct segment *seg = log_active(log);
    if (!seg)
        return STELE_OK;
    int r = log->io->ops->fdatasync(log->io, seg->fd);
    if (r < 0)
        return err_set(err_code_from_errno(-r), "sync %s: %s", seg->path, strerror(-r));
    rd->syncs++;
    log->last_sync_ns = now_ns();
    return STELE_OK;
}

/* Detaches the requests that form the next batch (at least one). */
static struct request *take_locked(stele_log *log, uint64_t *out_body_size, int *out_sync)
{
    struct request *head = log->q_head, *last = NULL, *r = head;
    uint64_t body = 0, records = 0;
    int sync = 0;
    while (r) {
        /* A batch must also fit an empty segment: requests are checked one by
         * one against body_size_limit, so the round as a whole is bounded too. */
        if (last && (body + r->body_size > WRITER_BATCH_TARGET_SIZE || body + r->body_size > body_size_limit(log) ||
                     records + r->count > STELE_BATCH_RECORD_COUNT_MAX))
            break;
        body += r->body_size;
        records += r->count;
        sync |= r->sync;
        log->q_records -= r->count;
        last = r;
        r = r->next;
    }
    last->next = NULL;
    log->q_head = r;
    if (!r)
        log->q_tail = NULL;
    *out_body_size = body;
    *out_sync = sync;
    pthread_cond_broadcast(&log->done_cond); /* room in the queue */
    return head;
}

/* One round: decide, encode and write the batch (in interval and none mode
 * also sync when due); returns the code for the round's requests. Runs
 * without q_lock. In sync mode the sync is the syncer thread's job. */
static int run_round(stele_log *log, struct request *head, uint64_t body_max, int want_sync, struct round *rd,
                     int *out_wrote)
{
    *out_wrote = 0;
    uint64_t now = log_now(log);
    rd->recorded_at_ns = now > log->last_recorded_at_ns ? now : log->last_recorded_at_ns;
    rd->first_lsn = rd->next_lsn = log->written_lsn + 1;
    int code = STELE_OK;
    struct segment *seg = NULL;
    if (body_max) {
        code = ensure_buf(&log->buf, &log->buf_cap, STELE_BATCH_HEADER_SIZE + body_max + STELE_BLOCK_SIZE);
        if (code == STELE_OK)
            code = segment_for(log, fmt_batch_frame_size((uint32_t)body_max), &seg);
        if (code == STELE_OK) {
            pthread_mutex_lock(&log->idx_lock);
            code = encode_round(log, head, seg, rd);
            /* Expiry goes a bounded step per round (SPEC.md §15.2): never
             * one walk of the whole index while appends wait. */
            if (code == STELE_OK)
                index_expire_round(log, rd->recorded_at_ns, rd->next_lsn - rd->first_lsn);
            pthread_mutex_unlock(&log->idx_lock);
        }
    }
    if (code == STELE_OK && rd->next_lsn > rd->first_lsn) {
        *out_wrote = 1;
        log->last_recorded_at_ns = rd->recorded_at_ns;
        code = write_round(log, seg, rd, 0);
    }
    int unsynced = log->durability != STELE_DURABILITY_SYNC && rd->next_lsn - 1 > rd->durable_lsn;
    if (code == STELE_OK && unsynced && (want_sync || (log->durability == STELE_DURABILITY_INTERVAL &&
        now_ns() - log->last_sync_ns >= (uint64_t)log->opts.sync_interval_ms * 1000000u)))
        code = sync_active(log, rd);
    return code;
}

/* Sync mode: the round's requests wait for a sync covering ack_lsn. */
static void await_locked(stele_log *log, struct request *head, struct round *rd)
{
    if (rd->seg) {
        struct inflight *f = &log->inflight[(log->inflight_head + log->inflight_count) % WRITER_INFLIGHT_MAX];
        *f = (struct inflight){rd->seg, rd->frame_offset, rd->frame_size, rd->first_lsn, rd->next_lsn - 1};
        log->inflight_count++;
        log->written_seg = (struct segment *)rd->seg;
    }
    for (struct request *r = head, *next; r; r = next) {
        next = r->next;
        /* Duplicates wait for their originals, which are at or below this. */
        r->ack_lsn = log->written_lsn;
        r->next = NULL;
        if (log->await_tail)
            log->await_tail->next = r;
        else
            log->await_head = r;
        log->await_tail = r;
    }
    /* With nothing else queued and the syncer idle, handing the sync over
     * would only add a thread hop: the writer syncs inline (sync_inline). */
    log->sync_inline = !log->q_head && log->syncer_idle;
    if (!log->sync_inline) {
        /* Woken but not yet running is not idle: never two syncs at once. */
        log->syncer_idle = 0;
        pthread_cond_signal(&log->sync_cond);
    }
}

static void finish_round_locked(stele_log *log, struct request *head, struct round *rd, int code, int wrote)
{
    log->stats.bytes_written += rd->bytes_written;
    log->stats.batches_written += rd->bytes_written != 0;
    log->stats.syncs += rd->syncs;
    /* The syncer may have fenced the log while this round was written
     * without the lock: the round then shares the fate of the batches in
     * flight, and nobody would ever sync it. */
    if (code == STELE_OK && log->fenced)
        code = STELE_ERR_FENCED;
    if (code != STELE_OK) {
        /* Nothing in the round may be reported as done: if bytes went out,
         * they may or may not be on disk (outcome unknown). */
        fence_locked(log, head, wrote ? STELE_ERR_OUTCOME_UNKNOWN : code);
        return;
    }
    log->written_lsn = rd->next_lsn - 1;
    if (log->durability == STELE_DURABILITY_SYNC) {
        await_locked(log, head, rd);
        return;
    }
    if (rd->syncs)
        log->durable_lsn = log->written_lsn;
    __atomic_store_n(&log->visible_lsn, log->written_lsn, __ATOMIC_RELEASE); /* read without q_lock too */
    for (struct request *r = head, *next; r; r = next) {
        next = r->next;
        complete_locked(log, r, STELE_OK);
    }
    pthread_cond_broadcast(&log->done_cond);
}

/* How long the idle writer may sleep: until the next interval sync is due. */
static int wait_idle_locked(stele_log *log)
{
    int pending_sync = log->durability == STELE_DURABILITY_INTERVAL && log->written_lsn > log->durable_lsn;
    log->writer_idle = 1;
    int timer = 0;
    if (!pending_sync) {
        pthread_cond_wait(&log->q_cond, &log->q_lock);
    } else {
        uint64_t due = log->last_sync_ns + (uint64_t)log->opts.sync_interval_ms * 1000000u;
        struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
        timer = now_ns() >= due || pthread_cond_timedwait(&log->q_cond, &log->q_lock, &ts) == ETIMEDOUT;
    }
    log->writer_idle = 0;
    return timer;
}

static void sync_and_ack_locked(stele_log *log);

static void *writer_main(void *arg)
{
    stele_log *log = arg;
    pthread_setname_np(pthread_self(), "stele-writer"); /* for top, perf and gdb */
    pthread_mutex_lock(&log->q_lock);
    for (;;) {
        int timer = 0;
        if (!log->q_head && !log->stopping && !log->fenced)
            timer = wait_idle_locked(log);
        if (log->fenced || (log->stopping && !log->q_head))
            break;
        if (!log->q_head && !timer)
            continue;
        /* The in-flight window is bounded: wait for the syncer to catch up. */
        if (log->inflight_count == WRITER_INFLIGHT_MAX) {
            pthread_cond_wait(&log->done_cond, &log->q_lock);
            continue;
        }
        uint64_t body_max = 0;
        int want_sync = 0;
        struct request *head = log->q_head ? take_locked(log, &body_max, &want_sync) : NULL;
        struct round rd = {.durable_lsn = log->durable_lsn};
        pthread_mutex_unlock(&log->q_lock);
        int wrote;
        int code = run_round(log, head, body_max, want_sync || timer, &rd, &wrote);
        pthread_mutex_lock(&log->q_lock);
        finish_round_locked(log, head, &rd, code, wrote);
        dict_auto_train_check_locked(log);
        if (log->sync_inline) {
            log->sync_inline = 0;
            sync_and_ack_locked(log);
        }
        if (log->callbacks) {
            pthread_mutex_unlock(&log->q_lock);
            run_callbacks(log);
            pthread_mutex_lock(&log->q_lock);
        }
    }
    log->writer_done = 1;
    pthread_cond_broadcast(&log->sync_cond);
    pthread_mutex_unlock(&log->q_lock);
    return NULL;
}

/* Completes the awaiting requests the durable watermark now covers. */
static void ack_durable_locked(stele_log *log)
{
    while (log->inflight_count && log->inflight[log->inflight_head].last_lsn <= log->durable_lsn) {
        const struct inflight *f = &log->inflight[log->inflight_head];
        if (log->ack_hook)
            log->ack_hook(log->ack_ctx, f->seg->path, f->offset, f->size, f->first_lsn, f->last_lsn);
        log->inflight_head = (log->inflight_head + 1) % WRITER_INFLIGHT_MAX;
        log->inflight_count--;
    }
    while (log->await_head && log->await_head->ack_lsn <= log->durable_lsn) {
        struct request *r = log->await_head;
        log->await_head = r->next;
        if (!log->await_head)
            log->await_tail = NULL;
        complete_locked(log, r, STELE_OK);
    }
    pthread_cond_broadcast(&log->done_cond);
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

/* One sync of everything written so far, then the acknowledgements it
 * allows. Called with q_lock held by the syncer, or by the writer when it
 * syncs inline; both may run it, so the watermark only moves forward. */
static void sync_and_ack_locked(stele_log *log)
{
    uint64_t target = log->written_lsn;
    struct segment *seg = log->written_seg;
    if (target > log->durable_lsn) {
        log->sync_running = 1;
        pthread_mutex_unlock(&log->q_lock);
        int code = sync_written(log, seg);
        pthread_mutex_lock(&log->q_lock);
        log->sync_running = 0;
        log->stats.syncs++;
        if (code != STELE_OK)
            fence_locked(log, NULL, STELE_ERR_OUTCOME_UNKNOWN);
        else if (!log->fenced && target > log->durable_lsn) {
            log->durable_lsn = target;
            __atomic_store_n(&log->visible_lsn, target, __ATOMIC_RELEASE); /* read without q_lock too */
        }
    }
    if (!log->fenced)
        ack_durable_locked(log);
}

static void *syncer_main(void *arg)
{
    stele_log *log = arg;
    pthread_setname_np(pthread_self(), "stele-syncer");
    pthread_mutex_lock(&log->q_lock);
    for (;;) {
        log->syncer_idle = 1;
        /* The writer may be syncing inline: one sync at a time, so that a
         * failed one is never followed by another (RELIABILITY S10). */
        while (!log->fenced && (!log->await_head || log->sync_running) && !log->writer_done)
            pthread_cond_wait(&log->sync_cond, &log->q_lock);
        log->syncer_idle = 0;
        if (log->fenced || (!log->await_head && log->writer_done))
            break;
        sync_and_ack_locked(log);
        if (log->callbacks) {
            pthread_mutex_unlock(&log->q_lock);
            run_callbacks(log);
            pthread_mutex_lock(&log->q_lock);
        }
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
    int r = pthread_create(&log->writer, NULL, writer_main, log);
    if (r != 0) {
        code = err_set(STELE_ERR_IO, "start writer thread for %s: %s", log->dir, strerror(r));
        goto fail;
    }
    log->writer_started = 1;
    if (log->durability == STELE_DURABILITY_SYNC) {
        r = pthread_create(&log->syncer, NULL, syncer_main, log);
        if (r != 0) {
            writer_stop(log);
            return err_set(STELE_ERR_IO, "start syncer thread for %s: %s", log->dir, strerror(r));
        }
        log->syncer_started = 1;
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
    pthread_cond_broadcast(&log->q_cond);
    pthread_mutex_unlock(&log->q_lock);
    pthread_join(log->writer, NULL);
    log->writer_started = 0;
    segment_spare_discard(log);
    if (log->syncer_started) {
        pthread_join(log->syncer, NULL);
        log->syncer_started = 0;
    }
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
}

/* Queues r; a blocking caller (r->fn NULL) then sleeps until it completed. */
static int submit(stele_log *log, struct request *r)
{
    pthread_mutex_lock(&log->q_lock);
    /* Backpressure: when the disk is slower than the appenders, they wait
     * here instead of growing the queue without bound. */
    while (!log->fenced && !log->stopping && log->q_records > 0 &&
           log->q_records + r->count > log->opts.queue_records_max)
        pthread_cond_wait(&log->done_cond, &log->q_lock);
    int code = log->fenced ? STELE_ERR_FENCED : log->stopping ? STELE_ERR_CLOSED : STELE_OK;
    if (code == STELE_OK) {
        r->next = NULL;
        if (log->q_tail)
            log->q_tail->next = r;
        else
            log->q_head = r;
        log->q_tail = r;
        log->q_records += r->count;
        if (log->writer_idle)
            pthread_cond_signal(&log->q_cond);
        while (!r->fn && !r->done)
            pthread_cond_wait(&log->done_cond, &log->q_lock);
        code = r->fn ? STELE_OK : r->code;
    }
    if (code == STELE_ERR_FENCED || code == STELE_ERR_OUTCOME_UNKNOWN || (code != STELE_OK && log->fenced))
        err_set(code, "%s: %s", stele_strerror(code), log->fence_msg);
    pthread_mutex_unlock(&log->q_lock);
    return code;
}

/* What a compensation reverses must be an acknowledged event or confirmed
 * outcome. The kind of a record never changes, so this is checked here,
 * before queuing; whether it is compensated already is the writer's to
 * decide. */
static int check_compensated(stele_log *log, const stele_event *ev, size_t i)
{
    stele_record *target;
    int code = stele_get(log, ev->ref, &target);
    if (code == STELE_ERR_NOT_FOUND)
        return err_set(code, "event %zu: compensation of LSN %llu: no such acknowledged record", i,
                       (unsigned long long)ev->ref);
    if (code)
        return code;
    int ok = target->kind == STELE_KIND_EVENT ||
             (target->kind == STELE_KIND_OUTCOME && target->outcome == STELE_OUTCOME_CONFIRMED);
    static const char *what[] = {"?", "an event", "an intent (compensate its confirmed outcome)",
                                 "a failed outcome", "a compensation"};
    int k = target->kind == STELE_KIND_OUTCOME ? 3 : target->kind <= 4 ? (int)target->kind : 0;
    stele_record_free(target);
    if (!ok)
        return err_set(STELE_ERR_INVALID, "event %zu: compensation of LSN %llu: it is %s; only an event or a "
                       "confirmed outcome can be compensated", i, (unsigned long long)ev->ref, what[k]);
    return STELE_OK;
}

/* Checks a call's events; on success *out_body is their encoded size and
 * prep[i] what the writer needs of event i. */
static int check_call(stele_log *log, const stele_event *events, size_t count, uint64_t *out_body,
                      struct event_prep *prep)
{
    if (log->opts.read_only)
        return err_set(STELE_ERR_READ_ONLY, "append: %s is open read-only", log->dir);
    uint64_t body = 0;
    for (size_t i = 0; i < count; i++) {
        int code = check_event(log, &events[i], i);
        if (code == STELE_OK && events[i].kind == STELE_KIND_COMPENSATION)
            code = check_compensated(log, &events[i], i);
        if (code)
            return code;
        body += event_record_size(&events[i]);
        prep[i].fingerprint = event_fingerprint(&events[i]);
        prep[i].key_hash = events[i].key_size ? idx_key_hash(log->idx, events[i].key, events[i].key_size) : 0;
    }
    if (body > body_size_limit(log))
        return err_set(STELE_ERR_TOO_LARGE, "append: %zu records of %llu bytes do not fit one batch (limit %llu)",
                       count, (unsigned long long)body, (unsigned long long)body_size_limit(log));
    *out_body = body;
    return STELE_OK;
}

/* The calling thread's preparation buffer, freed when the thread exits. */
struct prep_buf {
    size_t cap;
    struct event_prep v[];
};

static pthread_key_t prep_key;
static int prep_key_ok;
static pthread_once_t prep_once = PTHREAD_ONCE_INIT;

static void prep_key_make(void)
{
    prep_key_ok = pthread_key_create(&prep_key, free) == 0;
}

/* NULL when out of memory (or of thread keys): the call fails with NOMEM. */
static struct event_prep *thread_prep(size_t count)
{
    pthread_once(&prep_once, prep_key_make);
    if (!prep_key_ok)
        return NULL;
    struct prep_buf *b = pthread_getspecific(prep_key);
    if (b && b->cap >= count)
        return b->v;
    struct prep_buf *n = malloc(sizeof *n + count * sizeof n->v[0]);
    if (!n || pthread_setspecific(prep_key, n) != 0) {
        free(n);
        return NULL; /* b (if any) stays the thread's */
    }
    free(b);
    n->cap = count;
    return n->v;
}

int stele_append_batch(stele_log *log, const stele_event *events, size_t count, stele_receipt *out_receipts)
{
    err_clear();
    if (!log || !events || !out_receipts || count == 0 || count > STELE_BATCH_RECORD_COUNT_MAX)
        return err_set(STELE_ERR_INVALID, "append: need a log, 1 to %u events and receipts", STELE_BATCH_RECORD_COUNT_MAX);
    for (size_t i = 0; i < count; i++)
        out_receipts[i] = (stele_receipt){0, 0, STELE_DECISION_NONE, STELE_OK};
    /* The preparations of small calls live on the stack, larger ones in a
     * buffer of the calling thread's that only grows: no allocation per call. */
    struct event_prep stack_prep[64];
    struct event_prep *prep = count <= 64 ? stack_prep : thread_prep(count);
    uint64_t body = 0;
    int code = prep ? check_call(log, events, count, &body, prep)
                    : err_set(STELE_ERR_NOMEM, "append: out of memory for %zu events", count);
    if (code == STELE_OK) {
        struct request r = {.events = events, .prep = prep, .receipts = out_receipts, .count = count,
                            .body_size = body};
        code = submit(log, &r);
    }
    if (code == STELE_ERR_CONFLICT || code == STELE_ERR_STREAM_VERSION || code == STELE_ERR_INVALID ||
        code == STELE_ERR_NOT_FOUND) {
        for (size_t i = 0; i < count; i++)
            if ((int)out_receipts[i].code == code) {
                err_set(code, "append: event %zu: %s (LSN %llu, stream version %llu)", i, stele_strerror(code),
                        (unsigned long long)out_receipts[i].lsn, (unsigned long long)out_receipts[i].stream_version);
                break;
            }
    }
    /* A receipt the writer never decided (the call was refused before it was
     * queued, or the log was fenced or closing) carries the call's code, so
     * that the receipt and the return value never disagree. */
    for (size_t i = 0; code != STELE_OK && i < count; i++)
        if (out_receipts[i].decision == STELE_DECISION_NONE && out_receipts[i].code == STELE_OK)
            out_receipts[i].code = (stele_code)code;
    return code;
}

/* A request from the pool (allocated in blocks, kept until close). */
static struct request *request_get(stele_log *log)
{
    pthread_mutex_lock(&log->q_lock);
    struct request *r = log->pool;
    if (r)
        log->pool = r->next;
    pthread_mutex_unlock(&log->q_lock);
    if (r)
        return r;
    struct request *block = calloc(REQUEST_BLOCK, sizeof *block);
    if (!block)
        return NULL;
    pthread_mutex_lock(&log->q_lock);
    block[0].next = log->pool_blocks; /* block[0] only links the blocks */
    log->pool_blocks = block;
    for (int i = 2; i < REQUEST_BLOCK; i++) {
        block[i].next = log->pool;
        log->pool = &block[i];
    }
    pthread_mutex_unlock(&log->q_lock);
    return &block[1];
}

/* A request that was never queued, back to the pool. */
static void request_put(stele_log *log, struct request *r)
{
    pthread_mutex_lock(&log->q_lock);
    r->next = log->pool;
    log->pool = r;
    pthread_mutex_unlock(&log->q_lock);
}

int stele_append_async(stele_log *log, const stele_event *events, size_t count, stele_append_fn fn, void *ctx)
{
    err_clear();
    if (!log || !events || !fn || count == 0 || count > STELE_BATCH_RECORD_COUNT_MAX)
        return err_set(STELE_ERR_INVALID, "append_async: need a log, 1 to %u events and a function",
                       STELE_BATCH_RECORD_COUNT_MAX);
    struct request *r = request_get(log);
    /* Several events: their receipts and preparations in the request's
     * spare buffer, which stays with it in the pool. */
    if (r && count > 1 && r->spare_count < count) {
        void *p = realloc(r->spare, count * (sizeof(stele_receipt) + sizeof(struct event_prep)));
        if (!p) {
            request_put(log, r);
            r = NULL;
        } else {
            r->spare = p;
            r->spare_count = count;
        }
    }
    if (!r)
        return err_set(STELE_ERR_NOMEM, "append_async: out of memory");
    void *spare = r->spare;
    size_t spare_count = r->spare_count;
    *r = (struct request){.events = events, .count = count, .fn = fn, .fn_ctx = ctx, .spare = spare,
                          .spare_count = spare_count};
    stele_receipt *receipts = spare;
    r->receipts = count == 1 ? &r->inline_receipt : receipts;
    struct event_prep *prep = count == 1 ? &r->inline_prep : (struct event_prep *)(receipts + count);
    r->prep = prep;
    int code = check_call(log, events, count, &r->body_size, prep);
    if (code) {
        request_put(log, r);
        return code;
    }
    for (size_t i = 0; i < count; i++)
        r->receipts[i] = (stele_receipt){0, 0, STELE_DECISION_NONE, STELE_OK};
    code = submit(log, r);
    if (code != STELE_OK)
        request_put(log, r);
    return code;
}

int stele_append(stele_log *log, const stele_event *event, stele_receipt *out)
{
    stele_receipt rc = {0, 0, STELE_DECISION_NONE, STELE_OK};
    int code = stele_append_batch(log, event, 1, &rc);
    if (out)
        *out = rc;
    return code;
}

int stele_sync(stele_log *log)
{
    err_clear();
    if (!log)
        return err_set(STELE_ERR_INVALID, "sync: no log");
    if (log->opts.read_only)
        return STELE_OK;
    struct request r = {.sync = 1};
    return submit(log, &r);
}

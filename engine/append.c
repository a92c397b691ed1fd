/*
 * append.c - the appending thread's half of the write path (SPEC.md §4,
 * §11.1, §15.3).
 *
 * An appender checks its events (no lock), then, holding idx_lock, decides
 * each record against the index (idempotency key, expected stream version,
 * outcome and compensation rules), assigns its LSN and encodes it, checksum
 * included, straight into the batch being filled (log->fill), and indexes
 * it, so that a later record, of this call or another, already sees it
 * (RELIABILITY S27, S28). Nothing here waits for I/O: writer.c takes the
 * filled batches, writes and syncs them and acknowledges the requests.
 *
 * Every record of one call lands in one batch (a call is atomic); a call
 * that does not fit the open batch closes it and opens the next, and one
 * that does not fit the active segment asks for a roll (APPEND_WANT_ROOM),
 * which writer_submit performs before the call is encoded.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A batch grows to about this many bytes of records before it is closed; a
 * single append_batch call may exceed it (it is never split). */
#define APPEND_BATCH_TARGET_SIZE (4u * 1024u * 1024u)
/* A new batch buffer's first size; it doubles as records come. */
#define APPEND_BATCH_INITIAL_SIZE (64u * 1024u)

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
static int decide(stele_log *log, const stele_event *ev, struct fmt_record *rec, uint64_t now, uint64_t next_lsn,
                  stele_receipt *rc, uint32_t key_hash, struct idx_hint *hint)
{
    struct idx_key k;
    int live = ev->key_size && idx_key_get_h(log->idx, key_hash, ev->key, ev->key_size, &k, hint) &&
               index_key_live(log, &k, now);
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
    if (ev->ref >= next_lsn) {
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
    *rc = (stele_receipt){next_lsn, ev->stream_size ? current + 1 : 0, STELE_DECISION_NEW, STELE_OK};
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


/* Grows b's buffer to hold a body of need bytes, keeping the body so far.
 * Aligned for O_DIRECT writes. */
static int batch_reserve(struct wbatch *b, size_t need)
{
    size_t want = STELE_BATCH_HEADER_SIZE + need + STELE_BLOCK_SIZE;
    if (b->cap >= want)
        return STELE_OK;
    size_t n = b->cap ? b->cap : APPEND_BATCH_INITIAL_SIZE;
    while (n < want)
        n *= 2;
    n = (n + STELE_BLOCK_SIZE - 1) / STELE_BLOCK_SIZE * STELE_BLOCK_SIZE;
    uint8_t *p = aligned_alloc(STELE_BLOCK_SIZE, n);
    if (!p)
        return err_set(STELE_ERR_NOMEM, "out of memory for a %zu-byte batch buffer", n);
    if (b->body_size)
        memcpy(p + STELE_BATCH_HEADER_SIZE, b->buf + STELE_BATCH_HEADER_SIZE, b->body_size);
    free(b->buf);
    b->buf = p;
    b->cap = n;
    return STELE_OK;
}

/* Bytes of the active segment still free for new frames: what is written,
 * the footer and what unwritten batches reserved are taken. */
static uint64_t segment_room(const stele_log *log, const struct segment *seg)
{
    uint64_t used = __atomic_load_n(&seg->data_end, __ATOMIC_SEQ_CST) +
                    __atomic_load_n(&log->seg_reserved, __ATOMIC_SEQ_CST) + STELE_FOOTER_SIZE;
    return used < seg->capacity ? seg->capacity - used : 0;
}

/* Moves the fill to the full list, for the write role; r, whose call closed
 * it, learns that the background threads must be told. */
static void fill_close(stele_log *log, struct request *r)
{
    r->batch_changed = 1;
    struct wbatch *b = log->fill;
    log->fill = NULL;
    b->next = NULL;
    __atomic_store_n(&log->closed_lsn, b->next_lsn - 1, __ATOMIC_SEQ_CST);
    if (log->full_tail)
        log->full_tail->next = b;
    else
        log->full_head = b;
    log->full_tail = b;
}

/* Makes log->fill a batch with room for r's body (growing its reservation in
 * the segment), or returns APPEND_WANT_ROOM: a roll is needed (roll_wanted
 * set) or every batch is in use. A batch that holds records is closed when
 * r would take it past the target size or does not fit; an empty one is
 * never closed (nor written). */
static int fill_for(stele_log *log, struct request *r)
{
    struct segment *seg = log_active(log);
    if (!seg || segment_sealed(seg)) {
        __atomic_store_n(&log->roll_wanted, 1, __ATOMIC_SEQ_CST);
        return APPEND_WANT_ROOM;
    }
    struct wbatch *b = log->fill;
    int empty = !b || b->next_lsn == b->first_lsn;
    if (!empty && (b->body_size + r->body_size > APPEND_BATCH_TARGET_SIZE ||
                   b->next_lsn - b->first_lsn + r->count > STELE_BATCH_RECORD_COUNT_MAX)) {
        fill_close(log, r);
        b = NULL;
        empty = 1;
    }
    uint64_t old_frame = b ? b->reserved : 0;
    uint64_t new_frame = fmt_batch_frame_size((uint32_t)((b ? b->body_size : 0) + r->body_size));
    if (new_frame > old_frame && new_frame - old_frame > segment_room(log, seg)) {
        if (!empty)
            fill_close(log, r); /* a batch of its own would need even more room: this segment is full */
        __atomic_store_n(&log->roll_wanted, 1, __ATOMIC_SEQ_CST);
        return APPEND_WANT_ROOM;
    }
    if (!b) {
        if (!(b = writer_batch_get(log)))
            return APPEND_WANT_ROOM;
        b->seg = seg;
        b->body_size = 0;
        b->first_lsn = b->next_lsn = log->next_lsn;
        b->reserved = 0;
        log->fill = b;
    }
    if (new_frame > old_frame) { /* a call that appended nothing reserved some room for nothing */
        __atomic_add_fetch(&log->seg_reserved, new_frame - old_frame, __ATOMIC_SEQ_CST);
        b->reserved = new_frame;
    }
    return STELE_OK;
}

int append_encode_locked(stele_log *log, struct request *r)
{
    if (__atomic_load_n(&log->roll_wanted, __ATOMIC_SEQ_CST))
        return APPEND_WANT_ROOM;
    int code = fill_for(log, r);
    if (code)
        return code;
    struct wbatch *b = log->fill;
    if ((code = batch_reserve(b, b->body_size + r->body_size)) != STELE_OK)
        return code;
    if (b->next_lsn == b->first_lsn) {
        /* SPEC.md §4: every record of a batch has its recorded time, which
         * never decreases along the log; an open batch that holds nothing
         * yet (its calls were all duplicates) takes the time now. */
        uint64_t now = log_now(log);
        b->recorded_at_ns = now > log->last_recorded_at_ns ? now : log->last_recorded_at_ns;
        __atomic_store_n(&log->fill_since_ns, now_ns(), __ATOMIC_SEQ_CST); /* the linger starts */
        r->batch_changed = 1;
    }
    for (size_t i = 0; i < r->count; i++) {
        uint32_t h = r->prep[i].key_hash;
        if (i + 1 < r->count && r->prep[i + 1].key_hash)
            idx_prefetch(log->idx, r->prep[i + 1].key_hash);
        const stele_event *ev = &r->events[i];
        struct fmt_record rec;
        fill_record(ev, r->prep[i].fingerprint, b->recorded_at_ns, &rec);
        struct idx_hint hint; /* where the key's lookup ended, for its insert */
        if (!decide(log, ev, &rec, b->recorded_at_ns, log->next_lsn, &r->receipts[i], h, &hint))
            continue;
        rec.stream_version = r->receipts[i].stream_version;
        b->body_size += fmt_record_encode(&rec, log->next_lsn, b->seg->seed,
                                          b->buf + STELE_BATCH_HEADER_SIZE + b->body_size,
                                          b->cap - STELE_BATCH_HEADER_SIZE - b->body_size);
        /* Later records, of this call and others, already see this one (S27). */
        if ((code = index_apply(log, &rec, log->next_lsn, &h, ev->key_size ? &hint : NULL)) != STELE_OK) {
            /* The index and the batch hold part of the call: nothing more
             * may be written (its records, and later ones, fail). */
            writer_fence(log, code);
            return code;
        }
        b->next_lsn = ++log->next_lsn;
    }
    if (b->next_lsn > b->first_lsn)
        log->last_recorded_at_ns = b->recorded_at_ns;
    /* Whatever was decided (a duplicate or a conflict too) may rest on any
     * record encoded so far: acknowledged once all of them are (S28). */
    r->ack_lsn = log->next_lsn - 1;
    __atomic_store_n(&log->assigned_lsn, log->next_lsn - 1, __ATOMIC_SEQ_CST);
    return STELE_OK;
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
        code = writer_submit(log, &r);
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
    code = writer_submit(log, r);
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
    return writer_submit(log, &r);
}

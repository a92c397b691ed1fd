/*
 * index.c - encode and decode the fixed-size parts of the index (checkpoint)
 * file (SPEC.md §15.6). Decoders take hostile input: length first, then the
 * header checksum, magic and version, then every field's range. The file
 * hash in the footer is computed by the engine as it streams the file.
 */
#include "index.h"

#include <assert.h>
#include <string.h>

#include "endian.h"

static const uint8_t HEADER_MAGIC[8] = {'S', 'T', 'E', 'L', 'E', 'i', 'd', 'x'};
static const uint8_t FOOTER_MAGIC[8] = {'S', 'T', 'E', 'L', 'E', 'i', 'x', 'e'};

/* SPEC.md §5.1 values, repeated here so format/ needs no engine header. */
enum { KIND_EVENT = 1, KIND_INTENT = 2, OUTCOME_MAX = 2 };

/* The header's encoded fields end here; [136, 192) is reserved (zero). */
#define HEADER_FIELDS_END 136u

/* acc += count * unit, 0 when the result would exceed the file size limit. */
static int add_scaled(uint64_t *acc, uint64_t count, uint64_t unit)
{
    if (count > (STELE_INDEX_FILE_SIZE_MAX - *acc) / unit)
        return 0;
    *acc += count * unit;
    return 1;
}

uint64_t fmt_index_size_min(const struct fmt_index_header *h)
{
    uint64_t size = STELE_INDEX_HEADER_SIZE + STELE_INDEX_FOOTER_SIZE;
    /* Every key has a head and at least one key byte; intents 16 bytes more. */
    if (!add_scaled(&size, h->key_count, STELE_INDEX_EVENT_HEAD_SIZE + 1) ||
        !add_scaled(&size, h->intent_count, STELE_INDEX_INTENT_HEAD_SIZE - STELE_INDEX_EVENT_HEAD_SIZE) ||
        !add_scaled(&size, h->stream_count, STELE_INDEX_STREAM_HEAD_SIZE + 1) ||
        !add_scaled(&size, h->stream_lsn_count, 8) || !add_scaled(&size, h->comp_count, STELE_INDEX_COMP_SIZE))
        return 0;
    return size;
}

size_t fmt_index_header_encode(const struct fmt_index_header *h, uint8_t *dst, size_t dst_capacity)
{
    assert(dst_capacity >= STELE_INDEX_HEADER_SIZE);
    assert(h->intent_count <= h->key_count && h->pending_count <= h->intent_count);
    (void)dst_capacity;
    memset(dst, 0, STELE_INDEX_HEADER_SIZE);
    memcpy(dst + 8, HEADER_MAGIC, 8);
    le32_store(dst + 16, STELE_FORMAT_VERSION);
    le32_store(dst + 20, STELE_INDEX_HEADER_SIZE);
    memcpy(dst + 24, h->log_id, STELE_LOG_ID_SIZE);
    le64_store(dst + 40, h->covered_lsn);
    le64_store(dst + 48, h->covered_fingerprint);
    le64_store(dst + 56, h->covered_recorded_at_ns);
    le64_store(dst + 64, h->window_ns);
    le64_store(dst + 72, h->written_at_ns);
    le64_store(dst + 80, h->file_size);
    le64_store(dst + 88, h->key_count);
    le64_store(dst + 96, h->intent_count);
    le64_store(dst + 104, h->pending_count);
    le64_store(dst + 112, h->stream_count);
    le64_store(dst + 120, h->stream_lsn_count);
    le64_store(dst + 128, h->comp_count);
    le64_store(dst, stele_checksum(dst + 8, STELE_INDEX_HEADER_SIZE - 8, STELE_SEED_INDEX));
    return STELE_INDEX_HEADER_SIZE;
}

/* The count rules of SPEC.md §15.6.7 check X7: what is wrong, or NULL. */
static const char *header_problem(const struct fmt_index_header *h)
{
    if (h->intent_count > h->key_count || h->pending_count > h->intent_count)
        return "more intents than keys or more pending intents than intents";
    if (h->stream_count > h->stream_lsn_count)
        return "more streams than stream LSNs";
    /* Every key, stream LSN and compensation names a distinct record <= covered_lsn. */
    if (h->key_count > h->covered_lsn || h->stream_lsn_count > h->covered_lsn || h->comp_count > h->covered_lsn)
        return "more keys, stream LSNs or compensations than covered LSNs";
    if (h->covered_lsn == 0 && (h->covered_fingerprint != 0 || h->covered_recorded_at_ns != 0))
        return "covered fingerprint or time without a covered LSN";
    uint64_t size_min = fmt_index_size_min(h);
    if (size_min == 0 || h->file_size < size_min || h->file_size > STELE_INDEX_FILE_SIZE_MAX)
        return "file_size too small for the counts, or above 2^62";
    return NULL;
}

enum fmt_status fmt_index_header_decode(const uint8_t *src, size_t src_size, struct fmt_index_header *out,
                                        const char **out_why)
{
    const char **why = out_why;
    *why = NULL;
    if (src_size < STELE_INDEX_HEADER_SIZE)
        return FMT_SHORT;
    if (fmt_is_zero(src, STELE_INDEX_HEADER_SIZE))
        return FMT_ZERO;
    if (le64_load(src) != stele_checksum(src + 8, STELE_INDEX_HEADER_SIZE - 8, STELE_SEED_INDEX))
        return FMT_BAD_CHECKSUM;
    if (memcmp(src + 8, HEADER_MAGIC, 8) != 0)
        return FMT_BAD_MAGIC;
    if (le32_load(src + 16) != STELE_FORMAT_VERSION)
        return FMT_BAD_VERSION;
    struct fmt_index_header h;
    memcpy(h.log_id, src + 24, STELE_LOG_ID_SIZE);
    h.covered_lsn = le64_load(src + 40);
    h.covered_fingerprint = le64_load(src + 48);
    h.covered_recorded_at_ns = le64_load(src + 56);
    h.window_ns = le64_load(src + 64);
    h.written_at_ns = le64_load(src + 72);
    h.file_size = le64_load(src + 80);
    h.key_count = le64_load(src + 88);
    h.intent_count = le64_load(src + 96);
    h.pending_count = le64_load(src + 104);
    h.stream_count = le64_load(src + 112);
    h.stream_lsn_count = le64_load(src + 120);
    h.comp_count = le64_load(src + 128);
    if (le32_load(src + 20) != STELE_INDEX_HEADER_SIZE)
        *why = "header_size is not 192";
    else if (!fmt_is_zero(src + HEADER_FIELDS_END, STELE_INDEX_HEADER_SIZE - HEADER_FIELDS_END))
        *why = "reserved bytes are not zero";
    else
        *why = header_problem(&h);
    if (*why)
        return FMT_BAD_FIELD;
    *out = h;
    return FMT_OK;
}

size_t fmt_index_key_head_size(const uint8_t *src)
{
    switch (src[1]) {
    case KIND_EVENT: return STELE_INDEX_EVENT_HEAD_SIZE;
    case KIND_INTENT: return STELE_INDEX_INTENT_HEAD_SIZE;
    }
    return 0;
}

size_t fmt_index_key_encode(const struct fmt_index_key *k, uint8_t *dst, size_t dst_capacity)
{
    assert(k->kind == KIND_EVENT || k->kind == KIND_INTENT);
    assert(k->key_size >= 1);
    size_t size = k->kind == KIND_INTENT ? STELE_INDEX_INTENT_HEAD_SIZE : STELE_INDEX_EVENT_HEAD_SIZE;
    assert(dst_capacity >= size);
    (void)dst_capacity;
    memset(dst, 0, 8);
    dst[0] = k->key_size;
    dst[1] = k->kind;
    dst[2] = k->outcome;
    le64_store(dst + 8, k->lsn);
    le64_store(dst + 16, k->fingerprint);
    le64_store(dst + 24, k->recorded_at_ns);
    le64_store(dst + 32, k->stream_version);
    le64_store(dst + 40, k->last_at_ns);
    if (k->kind == KIND_INTENT) {
        le64_store(dst + 48, k->outcome_lsn);
        le64_store(dst + 56, k->outcome_fingerprint);
    }
    return size;
}

/* SPEC.md §15.6.7 check X8: what is wrong, or NULL. */
static const char *key_problem(const struct fmt_index_key *k, uint64_t covered_lsn)
{
    if (k->key_size == 0)
        return "key_size is 0";
    if (k->lsn == 0 || k->lsn > covered_lsn)
        return "lsn is 0 or past the covered LSN";
    if (k->stream_version > k->lsn)
        return "stream_version is above lsn";
    if (k->kind == KIND_EVENT)
        return k->outcome == 0 ? NULL : "an event with an outcome";
    if (k->outcome > OUTCOME_MAX)
        return "outcome is not 0, 1 or 2";
    if (k->outcome == 0)
        return k->outcome_lsn == 0 && k->outcome_fingerprint == 0 ? NULL
                                                                   : "a pending intent with an outcome LSN or fingerprint";
    if (k->outcome_lsn <= k->lsn || k->outcome_lsn > covered_lsn)
        return "outcome_lsn is not after lsn or is past the covered LSN";
    return NULL;
}

enum fmt_status fmt_index_key_decode(const uint8_t *src, size_t src_size, uint64_t covered_lsn,
                                     struct fmt_index_key *out, const char **out_why)
{
    const char **why = out_why;
    *why = NULL;
    if (src_size < STELE_INDEX_KEY_HEAD_PEEK)
        return FMT_SHORT;
    size_t size = fmt_index_key_head_size(src);
    if (size == 0) {
        *why = "kind is not 1 (event) or 2 (intent)";
        return FMT_BAD_FIELD;
    }
    if (src_size < size)
        return FMT_SHORT;
    struct fmt_index_key k;
    k.key_size = src[0];
    k.kind = src[1];
    k.outcome = src[2];
    k.lsn = le64_load(src + 8);
    k.fingerprint = le64_load(src + 16);
    k.recorded_at_ns = le64_load(src + 24);
    k.stream_version = le64_load(src + 32);
    k.last_at_ns = le64_load(src + 40);
    k.outcome_lsn = size == STELE_INDEX_INTENT_HEAD_SIZE ? le64_load(src + 48) : 0;
    k.outcome_fingerprint = size == STELE_INDEX_INTENT_HEAD_SIZE ? le64_load(src + 56) : 0;
    *why = fmt_is_zero(src + 3, 5) ? key_problem(&k, covered_lsn) : "reserved bytes are not zero";
    if (*why)
        return FMT_BAD_FIELD;
    *out = k;
    return FMT_OK;
}

size_t fmt_index_stream_encode(const struct fmt_index_stream *s, uint8_t *dst, size_t dst_capacity)
{
    assert(dst_capacity >= STELE_INDEX_STREAM_HEAD_SIZE);
    assert(s->name_size >= 1 && s->lsn_count >= 1);
    (void)dst_capacity;
    memset(dst, 0, 8);
    dst[0] = s->name_size;
    le64_store(dst + 8, s->lsn_count);
    return STELE_INDEX_STREAM_HEAD_SIZE;
}

enum fmt_status fmt_index_stream_decode(const uint8_t *src, size_t src_size, struct fmt_index_stream *out,
                                        const char **out_why)
{
    const char **why = out_why;
    *why = NULL;
    if (src_size < STELE_INDEX_STREAM_HEAD_SIZE)
        return FMT_SHORT;
    struct fmt_index_stream s = {.name_size = src[0], .lsn_count = le64_load(src + 8)};
    if (s.name_size == 0)
        *why = "name_size is 0";
    else if (s.lsn_count == 0)
        *why = "lsn_count is 0";
    else if (!fmt_is_zero(src + 1, 7))
        *why = "reserved bytes are not zero";
    if (*why)
        return FMT_BAD_FIELD;
    *out = s;
    return FMT_OK;
}

size_t fmt_index_comp_encode(const struct fmt_index_comp *c, uint8_t *dst, size_t dst_capacity)
{
    assert(dst_capacity >= STELE_INDEX_COMP_SIZE);
    assert(c->target_lsn >= 1 && c->comp_lsn > c->target_lsn);
    (void)dst_capacity;
    le64_store(dst, c->target_lsn);
    le64_store(dst + 8, c->comp_lsn);
    le64_store(dst + 16, c->fingerprint);
    return STELE_INDEX_COMP_SIZE;
}

enum fmt_status fmt_index_comp_decode(const uint8_t *src, size_t src_size, uint64_t covered_lsn,
                                      struct fmt_index_comp *out, const char **out_why)
{
    const char **why = out_why;
    *why = NULL;
    if (src_size < STELE_INDEX_COMP_SIZE)
        return FMT_SHORT;
    struct fmt_index_comp c = {
        .target_lsn = le64_load(src), .comp_lsn = le64_load(src + 8), .fingerprint = le64_load(src + 16)};
    if (c.target_lsn == 0)
        *why = "target_lsn is 0";
    else if (c.comp_lsn <= c.target_lsn || c.comp_lsn > covered_lsn)
        *why = "comp_lsn is not after target_lsn or is past the covered LSN";
    if (*why)
        return FMT_BAD_FIELD;
    *out = c;
    return FMT_OK;
}

size_t fmt_index_footer_encode(const struct fmt_index_footer *f, uint8_t *dst, size_t dst_capacity)
{
    assert(dst_capacity >= STELE_INDEX_FOOTER_SIZE);
    (void)dst_capacity;
    memcpy(dst, FOOTER_MAGIC, 8);
    le64_store(dst + 8, f->file_size);
    le64_store(dst + 16, f->file_hash);
    return STELE_INDEX_FOOTER_SIZE;
}

enum fmt_status fmt_index_footer_decode(const uint8_t *src, size_t src_size, struct fmt_index_footer *out)
{
    if (src_size < STELE_INDEX_FOOTER_SIZE)
        return FMT_SHORT;
    if (memcmp(src, FOOTER_MAGIC, 8) != 0)
        return FMT_BAD_MAGIC;
    out->file_size = le64_load(src + 8);
    out->file_hash = le64_load(src + 16);
    return FMT_OK;
}

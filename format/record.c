/*
 * record.c - encode, decode and fingerprint records (SPEC.md §5).
 *
 * The decoder treats every byte as hostile: lengths are checked against the
 * buffer before anything is read through them, and the checksum is checked
 * before any field is believed.
 */
#include "record.h"

#include <assert.h>
#include <string.h>

#include "checksum.h"
#include "endian.h"

static size_t align8(size_t n)
{
    return (n + (STELE_RECORD_ALIGN - 1)) & ~(size_t)(STELE_RECORD_ALIGN - 1);
}

static size_t unpadded_size(const struct fmt_record *r)
{
    return STELE_RECORD_HEADER_SIZE + (size_t)r->type_size + r->stream_size + r->key_size +
           r->actor_size + r->payload_size;
}

size_t fmt_record_size(const struct fmt_record *r)
{
    return align8(unpadded_size(r));
}

enum fmt_status fmt_record_check(const struct fmt_record *r, uint64_t lsn)
{
    if (r->kind < FMT_KIND_EVENT || r->kind > FMT_KIND_COMPENSATION)
        return FMT_BAD_FIELD;
    if ((r->kind == FMT_KIND_OUTCOME) != (r->outcome != FMT_OUTCOME_NONE) ||
        r->outcome > FMT_OUTCOME_FAILED)
        return FMT_BAD_FIELD;
    if (r->content < FMT_CONTENT_JSON || r->content > FMT_CONTENT_BINARY)
        return FMT_BAD_FIELD;
    if ((r->flags & ~FMT_FLAG_BACKFILLED) != 0)
        return FMT_BAD_FIELD;
    if (r->ref >= lsn)
        return FMT_BAD_FIELD;
    if ((r->stream_size == 0) != (r->stream_version == 0))
        return FMT_BAD_FIELD;
    if (r->payload_size > STELE_PAYLOAD_SIZE_MAX)
        return FMT_BAD_FIELD;
    return FMT_OK;
}

static uint8_t *put(uint8_t *p, const uint8_t *src, size_t n)
{
    if (n != 0)
        memcpy(p, src, n);
    return p + n;
}

/* Writes the record into dst, which must hold fmt_record_size(r) bytes. */
static void encode_into(const struct fmt_record *r, uint64_t lsn, uint64_t seed, uint8_t *dst, size_t size)
{
    le32_store(dst + 8, (uint32_t)unpadded_size(r));
    le32_store(dst + 12, r->payload_size);
    dst[16] = r->kind;
    dst[17] = r->outcome;
    dst[18] = r->content;
    dst[19] = r->flags;
    dst[20] = r->type_size;
    dst[21] = r->stream_size;
    dst[22] = r->key_size;
    dst[23] = r->actor_size;
    le64_store(dst + 24, r->recorded_at_ns);
    le64_store(dst + 32, r->event_time_ns);
    le64_store(dst + 40, r->stream_version);
    le64_store(dst + 48, r->fingerprint);
    le64_store(dst + 56, r->ref);
    uint8_t *p = dst + STELE_RECORD_HEADER_SIZE;
    p = put(p, r->type, r->type_size);
    p = put(p, r->stream, r->stream_size);
    p = put(p, r->key, r->key_size);
    p = put(p, r->actor, r->actor_size);
    p = put(p, r->payload, r->payload_size);
    memset(p, 0, (size_t)(dst + size - p));
    le64_store(dst, stele_checksum(dst + 8, size - 8, seed ^ lsn));
}

/* Records up to this size are assembled in a buffer on the stack and then
 * copied to dst. A writer's batch buffer is larger than the cache, so its
 * lines are rarely cached: assembled in place, the checksum's loads waited
 * for the stores of the same bytes to get their lines, record after
 * record; copied, the stores drain while the next record is assembled. */
#define ENCODE_STAGED_MAX 1024u

size_t fmt_record_encode(const struct fmt_record *r, uint64_t lsn, uint64_t seed, uint8_t *dst,
                         size_t dst_capacity)
{
    size_t size = fmt_record_size(r);
    assert(dst_capacity >= size);
    assert(fmt_record_check(r, lsn) == FMT_OK);
    (void)dst_capacity;
    if (size > ENCODE_STAGED_MAX) {
        encode_into(r, lsn, seed, dst, size);
        return size;
    }
    uint8_t staged[ENCODE_STAGED_MAX];
    encode_into(r, lsn, seed, staged, size);
    memcpy(dst, staged, size);
    return size;
}

enum fmt_status fmt_record_decode(const uint8_t *src, size_t src_size, uint64_t lsn, uint64_t seed,
                                  struct fmt_record *out, size_t *out_size)
{
    if (src_size < STELE_RECORD_HEADER_SIZE)
        return FMT_SHORT;
    uint32_t record_size = le32_load(src + 8);
    if (record_size < STELE_RECORD_HEADER_SIZE || record_size > STELE_RECORD_SIZE_MAX)
        return FMT_BAD_FIELD;
    size_t padded = align8(record_size);
    if (padded > src_size)
        return FMT_SHORT;
    if (le64_load(src) != stele_checksum(src + 8, padded - 8, seed ^ lsn))
        return FMT_BAD_CHECKSUM;
    struct fmt_record r;
    r.payload_size = le32_load(src + 12);
    r.kind = src[16];
    r.outcome = src[17];
    r.content = src[18];
    r.flags = src[19];
    r.type_size = src[20];
    r.stream_size = src[21];
    r.key_size = src[22];
    r.actor_size = src[23];
    r.recorded_at_ns = le64_load(src + 24);
    r.event_time_ns = le64_load(src + 32);
    r.stream_version = le64_load(src + 40);
    r.fingerprint = le64_load(src + 48);
    r.ref = le64_load(src + 56);
    if (unpadded_size(&r) != record_size || !fmt_is_zero(src + record_size, padded - record_size))
        return FMT_BAD_FIELD;
    const uint8_t *p = src + STELE_RECORD_HEADER_SIZE;
    r.type = p;
    p += r.type_size;
    r.stream = p;
    p += r.stream_size;
    r.key = p;
    p += r.key_size;
    r.actor = p;
    p += r.actor_size;
    r.payload = p;
    enum fmt_status st = fmt_record_check(&r, lsn);
    if (st != FMT_OK)
        return st;
    *out = r;
    *out_size = padded;
    return FMT_OK;
}

uint64_t fmt_fingerprint(const struct fmt_record *r)
{
    /* Identity fields first, each length-prefixed so that no two different
     * requests encode alike; the payload hash is seeded with their hash. */
    uint8_t id[2 + 8 + 1 + STELE_TYPE_SIZE_MAX + 1 + STELE_STREAM_SIZE_MAX];
    uint8_t *p = id;
    *p++ = r->kind;
    *p++ = r->outcome;
    le64_store(p, r->ref);
    p += 8;
    *p++ = r->type_size;
    p = put(p, r->type, r->type_size);
    *p++ = r->stream_size;
    p = put(p, r->stream, r->stream_size);
    uint64_t id_hash = stele_checksum(id, (size_t)(p - id), STELE_SEED_FINGERPRINT);
    return stele_checksum(r->payload, r->payload_size, id_hash);
}

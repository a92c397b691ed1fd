/*
 * batch.c - encode and decode batch frames (SPEC.md §4) and walk their records.
 */
#include "batch.h"

#include <assert.h>
#include <string.h>

#include "checksum.h"
#include "endian.h"
#include "record.h"

#define BATCH_MAGIC UINT32_C(0x41425453) /* "STBA" little-endian */

uint64_t fmt_batch_frame_size(uint32_t stored_size)
{
    uint64_t n = (uint64_t)STELE_BATCH_HEADER_SIZE + stored_size;
    return (n + STELE_BLOCK_SIZE - 1) / STELE_BLOCK_SIZE * STELE_BLOCK_SIZE;
}

uint64_t fmt_batch_header_encode(const struct fmt_batch_header *h, uint64_t seed, uint8_t *dst,
                                 size_t dst_capacity)
{
    assert(dst_capacity >= STELE_BATCH_HEADER_SIZE);
    assert(h->record_count >= 1 && h->record_count <= STELE_BATCH_RECORD_COUNT_MAX);
    assert(h->durable_lsn < h->first_lsn);
    (void)dst_capacity;
    le32_store(dst + 8, BATCH_MAGIC);
    le32_store(dst + 12, h->record_count);
    le64_store(dst + 16, h->first_lsn);
    le64_store(dst + 24, h->durable_lsn);
    le64_store(dst + 32, h->prev_chain);
    le64_store(dst + 40, h->body_checksum);
    le32_store(dst + 48, h->stored_size);
    le32_store(dst + 52, h->raw_size);
    dst[56] = h->compression;
    dst[57] = 0;
    le16_store(dst + 58, 0);
    le32_store(dst + 60, h->dict_id);
    uint64_t chain = stele_checksum(dst + 8, STELE_BATCH_HEADER_SIZE - 8, seed);
    le64_store(dst, chain);
    return chain;
}

enum fmt_status fmt_batch_header_decode(const uint8_t *src, size_t src_size, uint64_t seed,
                                        struct fmt_batch_header *out, uint64_t *out_chain)
{
    if (src_size < STELE_BATCH_HEADER_SIZE)
        return FMT_SHORT;
    if (fmt_is_zero(src, STELE_BATCH_HEADER_SIZE))
        return FMT_ZERO;
    uint64_t chain = le64_load(src);
    if (chain != stele_checksum(src + 8, STELE_BATCH_HEADER_SIZE - 8, seed))
        return FMT_BAD_CHECKSUM;
    if (le32_load(src + 8) != BATCH_MAGIC)
        return FMT_BAD_MAGIC;
    struct fmt_batch_header h;
    h.record_count = le32_load(src + 12);
    h.first_lsn = le64_load(src + 16);
    h.durable_lsn = le64_load(src + 24);
    h.prev_chain = le64_load(src + 32);
    h.body_checksum = le64_load(src + 40);
    h.stored_size = le32_load(src + 48);
    h.raw_size = le32_load(src + 52);
    h.compression = src[56];
    h.dict_id = le32_load(src + 60);
    if (src[57] != 0 || le16_load(src + 58) != 0)
        return FMT_BAD_FIELD;
    if (h.record_count == 0 || h.record_count > STELE_BATCH_RECORD_COUNT_MAX || h.first_lsn == 0 ||
        h.first_lsn > UINT64_MAX - h.record_count || h.durable_lsn >= h.first_lsn)
        return FMT_BAD_FIELD;
    if (h.compression > FMT_COMPRESSION_ZSTD || h.raw_size > STELE_BATCH_BODY_SIZE_MAX ||
        h.stored_size > STELE_BATCH_BODY_SIZE_MAX ||
        (uint64_t)h.record_count * STELE_RECORD_HEADER_SIZE > h.raw_size)
        return FMT_BAD_FIELD;
    if (h.compression == FMT_COMPRESSION_NONE && (h.stored_size != h.raw_size || h.dict_id != 0))
        return FMT_BAD_FIELD;
    *out = h;
    *out_chain = chain;
    return FMT_OK;
}

enum fmt_status fmt_batch_body_check(const struct fmt_batch_header *h, const uint8_t *body,
                                     size_t body_size, uint64_t seed)
{
    if (body_size < h->stored_size)
        return FMT_SHORT;
    if (stele_checksum(body, h->stored_size, seed) != h->body_checksum)
        return FMT_BAD_CHECKSUM;
    return FMT_OK;
}

enum fmt_status fmt_batch_records(const struct fmt_batch_header *h, const uint8_t *raw, size_t raw_size,
                                  uint64_t seed, fmt_record_fn fn, void *ctx, uint64_t *out_bad_lsn)
{
    if (raw_size != h->raw_size)
        return FMT_BAD_FIELD;
    size_t off = 0;
    for (uint32_t i = 0; i < h->record_count; i++) {
        uint64_t lsn = h->first_lsn + i;
        struct fmt_record r;
        size_t size;
        enum fmt_status st = fmt_record_decode(raw + off, raw_size - off, lsn, seed, &r, &size);
        if (st != FMT_OK) {
            if (out_bad_lsn)
                *out_bad_lsn = lsn;
            return st;
        }
        if (fn && fn(ctx, lsn, &r, off))
            return FMT_OK;
        off += size;
    }
    if (off != raw_size) {
        if (out_bad_lsn)
            *out_bad_lsn = h->first_lsn + h->record_count - 1;
        return FMT_BAD_FIELD;
    }
    return FMT_OK;
}

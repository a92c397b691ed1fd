/*
 * segidx.c - encoding and checking a segment's read index file (SPEC.md §19).
 *
 * The file is derived from its segment and never trusted blindly: the
 * decoder checks every byte it is given (the reader treats it as hostile,
 * like any byte from disk), and the engine then checks that the header
 * describes the very segment it sits next to (§19.3 X1-X3).
 */
#include "segidx.h"

#include <string.h>

#include "batch.h"
#include "endian.h"

static const uint8_t magic[8] = {'S', 'T', 'E', 'L', 'E', 'S', 'I', 'X'};

size_t fmt_segidx_encode(const struct fmt_segidx_header *h, const struct fmt_segidx_entry *entries, uint8_t *dst,
                         size_t dst_capacity)
{
    uint64_t size = fmt_segidx_size(h->entry_count);
    if (h->entry_count > STELE_SEGIDX_ENTRY_COUNT_MAX || size > dst_capacity)
        return 0;
    memset(dst, 0, STELE_SEGIDX_HEADER_SIZE);
    memcpy(dst + 8, magic, sizeof magic);
    le32_store(dst + 16, STELE_SEGIDX_VERSION);
    le32_store(dst + 20, STELE_SEGIDX_HEADER_SIZE);
    le32_store(dst + 24, STELE_SEGIDX_ENTRY_SIZE);
    le64_store(dst + 32, h->segment_seed);
    le64_store(dst + 40, h->first_lsn);
    le64_store(dst + 48, h->last_lsn);
    le64_store(dst + 56, h->batch_count);
    le64_store(dst + 64, h->data_end);
    le64_store(dst + 72, h->footer_checksum);
    le64_store(dst + 80, h->entry_count);
    for (uint64_t i = 0; i < h->entry_count; i++) {
        uint8_t *p = dst + STELE_SEGIDX_HEADER_SIZE + i * STELE_SEGIDX_ENTRY_SIZE;
        le64_store(p, entries[i].first_lsn);
        le64_store(p + 8, entries[i].offset);
        le64_store(p + 16, entries[i].recorded_at_ns);
    }
    le64_store(dst, stele_checksum(dst + 8, (size_t)size - 8, STELE_SEED_SEGIDX));
    return (size_t)size;
}

void fmt_segidx_entry_get(const uint8_t *src, uint64_t i, struct fmt_segidx_entry *out)
{
    const uint8_t *p = src + STELE_SEGIDX_HEADER_SIZE + i * STELE_SEGIDX_ENTRY_SIZE;
    out->first_lsn = le64_load(p);
    out->offset = le64_load(p + 8);
    out->recorded_at_ns = le64_load(p + 16);
}

/* X-checks of one entry against the one after it (or the header's end). */
static int entry_ok(const struct fmt_segidx_entry *e, uint64_t next_lsn, uint64_t next_offset,
                    uint64_t prev_recorded_at_ns)
{
    uint64_t frame_max = fmt_batch_frame_size(STELE_BATCH_BODY_SIZE_MAX);
    return e->offset % STELE_BLOCK_SIZE == 0 && e->offset < next_offset && next_offset - e->offset <= frame_max &&
           e->first_lsn < next_lsn && next_lsn - e->first_lsn <= STELE_BATCH_RECORD_COUNT_MAX &&
           e->recorded_at_ns >= prev_recorded_at_ns;
}

enum fmt_status fmt_segidx_decode(const uint8_t *src, size_t src_size, struct fmt_segidx_header *out,
                                  uint64_t *out_bad_entry)
{
    if (src_size < STELE_SEGIDX_HEADER_SIZE)
        return FMT_SHORT;
    if (fmt_is_zero(src, STELE_SEGIDX_HEADER_SIZE))
        return FMT_ZERO;
    if (src_size > STELE_SEGIDX_FILE_SIZE_MAX ||
        le64_load(src) != stele_checksum(src + 8, src_size - 8, STELE_SEED_SEGIDX))
        return FMT_BAD_CHECKSUM;
    if (memcmp(src + 8, magic, sizeof magic) != 0)
        return FMT_BAD_MAGIC;
    if (le32_load(src + 16) != STELE_SEGIDX_VERSION)
        return FMT_BAD_VERSION;
    struct fmt_segidx_header h = {
        .segment_seed = le64_load(src + 32),
        .first_lsn = le64_load(src + 40),
        .last_lsn = le64_load(src + 48),
        .batch_count = le64_load(src + 56),
        .data_end = le64_load(src + 64),
        .footer_checksum = le64_load(src + 72),
        .entry_count = le64_load(src + 80),
    };
    if (le32_load(src + 20) != STELE_SEGIDX_HEADER_SIZE || le32_load(src + 24) != STELE_SEGIDX_ENTRY_SIZE ||
        le32_load(src + 28) != 0 || !fmt_is_zero(src + 88, STELE_SEGIDX_HEADER_SIZE - 88))
        return FMT_BAD_FIELD;
    if (h.first_lsn == 0 || h.last_lsn + 1 < h.first_lsn || h.last_lsn == UINT64_MAX ||
        h.data_end % STELE_BLOCK_SIZE != 0 || h.data_end < STELE_SEGMENT_HEADER_SIZE ||
        h.data_end > STELE_SEGMENT_SIZE_MAX - STELE_FOOTER_SIZE || h.entry_count != h.batch_count ||
        h.entry_count > STELE_SEGIDX_ENTRY_COUNT_MAX || src_size != fmt_segidx_size(h.entry_count) ||
        h.batch_count > h.last_lsn + 1 - h.first_lsn || (h.batch_count == 0) != (h.last_lsn + 1 == h.first_lsn) ||
        (h.batch_count == 0) != (h.data_end == STELE_SEGMENT_HEADER_SIZE))
        return FMT_BAD_FIELD;
    uint64_t prev_time = 0;
    for (uint64_t i = 0; i < h.entry_count; i++) {
        struct fmt_segidx_entry e, next = {h.last_lsn + 1, h.data_end, 0};
        fmt_segidx_entry_get(src, i, &e);
        if (i + 1 < h.entry_count)
            fmt_segidx_entry_get(src, i + 1, &next);
        int first_ok = i > 0 || (e.first_lsn == h.first_lsn && e.offset == STELE_SEGMENT_HEADER_SIZE);
        if (!first_ok || !entry_ok(&e, next.first_lsn, next.offset, prev_time)) {
            *out_bad_entry = i;
            return FMT_BAD_FIELD;
        }
        prev_time = e.recorded_at_ns;
    }
    *out = h;
    return FMT_OK;
}

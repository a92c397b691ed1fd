/*
 * segment.c - encode and decode the meta block, the segment header and the
 * footer (SPEC.md §2.1, §3, §7). Every decoder checks length, then checksum,
 * then magic and version, then field ranges, in the order SPEC.md §8 lists.
 */
#include "segment.h"

#include <assert.h>
#include <string.h>

#include "endian.h"

static const uint8_t META_MAGIC[8] = {'S', 'T', 'E', 'L', 'E', 'L', 'O', 'G'};
static const uint8_t HEADER_MAGIC[8] = {'S', 'T', 'E', 'L', 'E', 'S', 'E', 'G'};
static const uint8_t FOOTER_MAGIC[8] = {'S', 'T', 'E', 'L', 'E', 'E', 'N', 'D'};

const char *fmt_status_str(enum fmt_status status)
{
    switch (status) {
    case FMT_OK: return "ok";
    case FMT_ZERO: return "all zero (never written)";
    case FMT_SHORT: return "truncated";
    case FMT_BAD_MAGIC: return "bad magic";
    case FMT_BAD_CHECKSUM: return "checksum mismatch";
    case FMT_BAD_VERSION: return "unsupported format version";
    case FMT_BAD_FIELD: return "field out of range";
    }
    return "unknown status";
}

int fmt_is_zero(const uint8_t *buf, size_t size)
{
    /* Recovery runs this over whole preallocated segments: comparing the
     * buffer with itself shifted by one byte lets libc's vectorised memcmp
     * do the work (all bytes equal, and the first is zero). */
    return size == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, size - 1) == 0);
}

/* Seals an encoded block: the checksum over [8, encoded_size) goes first. */
static void seal(uint8_t *dst, size_t encoded_size, uint64_t seed)
{
    le64_store(dst, stele_checksum(dst + 8, encoded_size - 8, seed));
}

/* The checks every fixed block shares: size, all-zero, checksum, magic, zero tail. */
static enum fmt_status open_block(const uint8_t *src, size_t src_size, size_t block_size,
                                  size_t encoded_size, uint64_t seed, const uint8_t magic[8])
{
    if (src_size < block_size)
        return FMT_SHORT;
    if (fmt_is_zero(src, block_size))
        return FMT_ZERO;
    if (le64_load(src) != stele_checksum(src + 8, encoded_size - 8, seed))
        return FMT_BAD_CHECKSUM;
    if (memcmp(src + 8, magic, 8) != 0)
        return FMT_BAD_MAGIC;
    if (!fmt_is_zero(src + encoded_size, block_size - encoded_size))
        return FMT_BAD_FIELD;
    return FMT_OK;
}

size_t fmt_meta_encode(const struct fmt_meta *m, uint8_t *dst, size_t dst_capacity)
{
    assert(dst_capacity >= STELE_META_SIZE);
    (void)dst_capacity;
    memset(dst, 0, STELE_META_SIZE);
    memcpy(dst + 8, META_MAGIC, 8);
    le32_store(dst + 16, STELE_FORMAT_VERSION);
    le32_store(dst + 20, STELE_META_SIZE);
    memcpy(dst + 24, m->log_id, STELE_LOG_ID_SIZE);
    le64_store(dst + 40, m->created_at_ns);
    le64_store(dst + 48, m->segment_size);
    le64_store(dst + 56, m->idem_window_ns);
    le32_store(dst + 64, m->payload_size_max);
    dst[68] = m->compression;
    dst[69] = (uint8_t)m->compression_level;
    dst[70] = m->durability;
    seal(dst, STELE_META_ENCODED_SIZE, STELE_SEED_BASE);
    return STELE_META_SIZE;
}

enum fmt_status fmt_meta_decode(const uint8_t *src, size_t src_size, struct fmt_meta *out)
{
    enum fmt_status st = open_block(src, src_size, STELE_META_SIZE, STELE_META_ENCODED_SIZE,
                                    STELE_SEED_BASE, META_MAGIC);
    if (st != FMT_OK)
        return st;
    if (le32_load(src + 16) != STELE_FORMAT_VERSION)
        return FMT_BAD_VERSION;
    struct fmt_meta m;
    memcpy(m.log_id, src + 24, STELE_LOG_ID_SIZE);
    m.created_at_ns = le64_load(src + 40);
    m.segment_size = le64_load(src + 48);
    m.idem_window_ns = le64_load(src + 56);
    m.payload_size_max = le32_load(src + 64);
    m.compression = src[68];
    m.compression_level = (int8_t)src[69];
    m.durability = src[70];
    if (le32_load(src + 20) != STELE_META_SIZE || src[71] != 0 ||
        !fmt_is_zero(src + 72, STELE_META_ENCODED_SIZE - 72))
        return FMT_BAD_FIELD;
    if (m.segment_size < STELE_SEGMENT_SIZE_MIN || m.segment_size > STELE_SEGMENT_SIZE_MAX ||
        m.segment_size % STELE_BLOCK_SIZE != 0 || m.payload_size_max > STELE_PAYLOAD_SIZE_MAX ||
        m.compression > 1 || m.durability < 1 || m.durability > 3)
        return FMT_BAD_FIELD;
    *out = m;
    return FMT_OK;
}

size_t fmt_segment_header_encode(const struct fmt_segment_header *h, uint8_t *dst, size_t dst_capacity)
{
    assert(dst_capacity >= STELE_SEGMENT_HEADER_SIZE);
    assert(h->seq >= 1 && h->first_lsn >= 1);
    (void)dst_capacity;
    memset(dst, 0, STELE_SEGMENT_HEADER_SIZE);
    memcpy(dst + 8, HEADER_MAGIC, 8);
    le32_store(dst + 16, STELE_FORMAT_VERSION);
    le32_store(dst + 20, STELE_SEGMENT_HEADER_SIZE);
    memcpy(dst + 24, h->log_id, STELE_LOG_ID_SIZE);
    le64_store(dst + 40, h->seq);
    le64_store(dst + 48, h->first_lsn);
    le64_store(dst + 56, h->segment_size);
    le64_store(dst + 64, h->created_at_ns);
    le64_store(dst + 72, h->prev_chain);
    seal(dst, STELE_SEGMENT_HEADER_ENCODED_SIZE, STELE_SEED_BASE);
    return STELE_SEGMENT_HEADER_SIZE;
}

enum fmt_status fmt_segment_header_decode(const uint8_t *src, size_t src_size,
                                          struct fmt_segment_header *out)
{
    enum fmt_status st = open_block(src, src_size, STELE_SEGMENT_HEADER_SIZE,
                                    STELE_SEGMENT_HEADER_ENCODED_SIZE, STELE_SEED_BASE, HEADER_MAGIC);
    if (st != FMT_OK)
        return st;
    if (le32_load(src + 16) != STELE_FORMAT_VERSION)
        return FMT_BAD_VERSION;
    struct fmt_segment_header h;
    memcpy(h.log_id, src + 24, STELE_LOG_ID_SIZE);
    h.seq = le64_load(src + 40);
    h.first_lsn = le64_load(src + 48);
    h.segment_size = le64_load(src + 56);
    h.created_at_ns = le64_load(src + 64);
    h.prev_chain = le64_load(src + 72);
    if (le32_load(src + 20) != STELE_SEGMENT_HEADER_SIZE ||
        !fmt_is_zero(src + 80, STELE_SEGMENT_HEADER_ENCODED_SIZE - 80))
        return FMT_BAD_FIELD;
    if (h.seq == 0 || h.first_lsn == 0 || h.segment_size < STELE_SEGMENT_SIZE_MIN ||
        h.segment_size > STELE_SEGMENT_SIZE_MAX || h.segment_size % STELE_BLOCK_SIZE != 0)
        return FMT_BAD_FIELD;
    *out = h;
    return FMT_OK;
}

size_t fmt_footer_encode(const struct fmt_footer *f, uint64_t seed, uint8_t *dst, size_t dst_capacity)
{
    assert(dst_capacity >= STELE_FOOTER_SIZE);
    assert(f->data_end >= STELE_SEGMENT_HEADER_SIZE && f->data_end % STELE_BLOCK_SIZE == 0);
    (void)dst_capacity;
    memset(dst, 0, STELE_FOOTER_SIZE);
    memcpy(dst + 8, FOOTER_MAGIC, 8);
    le64_store(dst + 16, f->last_lsn);
    le64_store(dst + 24, f->record_count);
    le64_store(dst + 32, f->batch_count);
    le64_store(dst + 40, f->data_end);
    le64_store(dst + 48, f->chain);
    le64_store(dst + 56, f->file_hash);
    le64_store(dst + 64, f->sealed_at_ns);
    seal(dst, STELE_FOOTER_ENCODED_SIZE, seed);
    return STELE_FOOTER_SIZE;
}

enum fmt_status fmt_footer_decode(const uint8_t *src, size_t src_size, uint64_t seed, struct fmt_footer *out)
{
    enum fmt_status st = open_block(src, src_size, STELE_FOOTER_SIZE, STELE_FOOTER_ENCODED_SIZE, seed,
                                    FOOTER_MAGIC);
    if (st != FMT_OK)
        return st;
    struct fmt_footer f;
    f.last_lsn = le64_load(src + 16);
    f.record_count = le64_load(src + 24);
    f.batch_count = le64_load(src + 32);
    f.data_end = le64_load(src + 40);
    f.chain = le64_load(src + 48);
    f.file_hash = le64_load(src + 56);
    f.sealed_at_ns = le64_load(src + 64);
    if (!fmt_is_zero(src + 72, STELE_FOOTER_ENCODED_SIZE - 72))
        return FMT_BAD_FIELD;
    if (f.data_end < STELE_SEGMENT_HEADER_SIZE || f.data_end % STELE_BLOCK_SIZE != 0 ||
        f.data_end > STELE_SEGMENT_SIZE_MAX || f.batch_count > f.record_count)
        return FMT_BAD_FIELD;
    *out = f;
    return FMT_OK;
}

size_t fmt_segment_name(uint64_t first_lsn, char *dst, size_t dst_capacity)
{
    assert(dst_capacity >= STELE_SEGMENT_NAME_SIZE + 1);
    char digits[20];
    for (int i = 19; i >= 0; i--) {
        digits[i] = (char)('0' + first_lsn % 10);
        first_lsn /= 10;
    }
    (void)dst_capacity;
    memcpy(dst, digits, 20);
    memcpy(dst + 20, ".seg", 5);
    return STELE_SEGMENT_NAME_SIZE;
}

int fmt_segment_name_parse(const char *name, uint64_t *out_first_lsn)
{
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (strcmp(name + 20, ".seg") != 0 || v == 0)
        return 0;
    *out_first_lsn = v;
    return 1;
}

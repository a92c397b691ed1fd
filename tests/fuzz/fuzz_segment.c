/*
 * fuzz_segment.c - the decoders of the fixed blocks (format/segment.h): the
 * meta block, the segment header, the footer, and segment file names.
 *
 * Input: byte 0 selects the mode, bytes [1, 9) are a segment seed (used by
 * the footer), the rest is the block (or the name) under test.
 *   mode % 4: 0 meta block, 1 segment header, 2 footer, 3 file name;
 *   mode & 4: fix up the block's checksum first, so that mutations reach
 *             the magic, version and field checks behind it.
 * What must hold: a decoded block lies within the input and re-encodes to
 * exactly its 4096 bytes, with its fields in the ranges SPEC.md §8 states; a
 * parsed name is the name fmt_segment_name gives for its LSN.
 */
#include "fuzz.h"

#include "checksum.h"
#include "segment.h"

#define PREFIX_SIZE 9

static void fix_block(uint8_t *buf, size_t n, size_t encoded_size, uint64_t seed)
{
    if (n < encoded_size)
        return;
    uint64_t c = stele_checksum(buf + 8, encoded_size - 8, seed);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(c >> (8 * i));
}

static void meta(uint8_t *buf, size_t n, int fix)
{
    if (fix)
        fix_block(buf, n, STELE_META_ENCODED_SIZE, STELE_SEED_BASE);
    struct fmt_meta m;
    enum fmt_status st = fmt_meta_decode(buf, n, &m);
    if (n < STELE_META_SIZE)
        FUZZ_CHECK(st == FMT_SHORT, "a %zu-byte meta block is not FMT_SHORT but %d", n, (int)st);
    if (st != FMT_OK)
        return;
    FUZZ_CHECK(m.segment_size >= STELE_SEGMENT_SIZE_MIN && m.segment_size <= STELE_SEGMENT_SIZE_MAX &&
                   m.segment_size % STELE_BLOCK_SIZE == 0 && m.payload_size_max <= STELE_PAYLOAD_SIZE_MAX &&
                   m.compression <= 1 && m.durability >= 1 && m.durability <= 3,
               "meta field out of range accepted");
    uint8_t again[STELE_META_SIZE];
    FUZZ_CHECK(fmt_meta_encode(&m, again, sizeof again) == STELE_META_SIZE, "meta encode size");
    FUZZ_CHECK(memcmp(again, buf, sizeof again) == 0, "re-encoding the decoded meta block gives other bytes");
}

static void header(uint8_t *buf, size_t n, int fix)
{
    if (fix)
        fix_block(buf, n, STELE_SEGMENT_HEADER_ENCODED_SIZE, STELE_SEED_BASE);
    struct fmt_segment_header h;
    enum fmt_status st = fmt_segment_header_decode(buf, n, &h);
    if (n < STELE_SEGMENT_HEADER_SIZE)
        FUZZ_CHECK(st == FMT_SHORT, "a %zu-byte header is not FMT_SHORT but %d", n, (int)st);
    if (st != FMT_OK)
        return;
    FUZZ_CHECK(h.seq >= 1 && h.first_lsn >= 1 && h.segment_size >= STELE_SEGMENT_SIZE_MIN &&
                   h.segment_size <= STELE_SEGMENT_SIZE_MAX && h.segment_size % STELE_BLOCK_SIZE == 0,
               "header field out of range accepted");
    uint8_t again[STELE_SEGMENT_HEADER_SIZE];
    FUZZ_CHECK(fmt_segment_header_encode(&h, again, sizeof again) == STELE_SEGMENT_HEADER_SIZE, "header size");
    FUZZ_CHECK(memcmp(again, buf, sizeof again) == 0, "re-encoding the decoded header gives other bytes");
}

static void footer(uint8_t *buf, size_t n, uint64_t seed, int fix)
{
    if (fix)
        fix_block(buf, n, STELE_FOOTER_ENCODED_SIZE, seed);
    struct fmt_footer f;
    enum fmt_status st = fmt_footer_decode(buf, n, seed, &f);
    if (n < STELE_FOOTER_SIZE)
        FUZZ_CHECK(st == FMT_SHORT, "a %zu-byte footer is not FMT_SHORT but %d", n, (int)st);
    if (st != FMT_OK)
        return;
    FUZZ_CHECK(f.data_end >= STELE_SEGMENT_HEADER_SIZE && f.data_end % STELE_BLOCK_SIZE == 0 &&
                   f.data_end <= STELE_SEGMENT_SIZE_MAX && f.batch_count <= f.record_count,
               "footer field out of range accepted");
    uint8_t again[STELE_FOOTER_SIZE];
    FUZZ_CHECK(fmt_footer_encode(&f, seed, again, sizeof again) == STELE_FOOTER_SIZE, "footer size");
    FUZZ_CHECK(memcmp(again, buf, sizeof again) == 0, "re-encoding the decoded footer gives other bytes");
    struct fmt_footer other;
    FUZZ_CHECK(fmt_footer_decode(buf, n, seed ^ 1, &other) != FMT_OK, "a footer is valid under another seed");
}

static void name(const uint8_t *data, size_t n)
{
    char text[64];
    size_t len = n < sizeof text - 1 ? n : sizeof text - 1;
    memcpy(text, data, len);
    text[len] = '\0';
    uint64_t first;
    if (!fmt_segment_name_parse(text, &first))
        return;
    char again[STELE_SEGMENT_NAME_SIZE + 1];
    FUZZ_CHECK(first != 0, "name of LSN 0 accepted");
    FUZZ_CHECK(fmt_segment_name(first, again, sizeof again) == STELE_SEGMENT_NAME_SIZE, "name size");
    FUZZ_CHECK(strcmp(again, text) == 0, "name \"%s\" parses to %llu, which is named \"%s\"", text,
               (unsigned long long)first, again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < PREFIX_SIZE)
        return 0;
    unsigned mode = data[0];
    uint64_t seed = fuzz_le(data + 1, 8, 8);
    size_t n = size - PREFIX_SIZE;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + PREFIX_SIZE, n);
    int fix = (mode & 4) != 0;
    switch (mode % 4) {
    case 0:
        meta(buf, n, fix);
        break;
    case 1:
        header(buf, n, fix);
        break;
    case 2:
        footer(buf, n, seed, fix);
        break;
    default:
        name(buf, n);
        break;
    }
    free(buf);
    return 0;
}

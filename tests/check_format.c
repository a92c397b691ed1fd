/*
 * check_format.c - proves that the format v1 encoders and decoders in format/
 * write the bytes SPEC.md describes, read them back exactly, and treat every
 * other byte string as hostile: rejected with a status code, never OK, never
 * read past the end of the buffer they were given.
 *
 * How:
 *  - Round trips. Each structure (meta block, segment header, footer, batch
 *    header, record) is encoded from known values, its fields are checked at
 *    their byte offsets with this file's own little-endian helpers (so the
 *    layout is tested independently of format/endian.h), then decoded and
 *    compared field by field. Records cover every kind, outcome, content and
 *    flag, empty and maximum variable fields, payloads of 0, 1, 7, 8, 9 bytes
 *    up to the maximum; fmt_batch_records walks a multi-record body; segment
 *    file names round-trip and malformed names are refused.
 *  - Corruption matrix, per structure: every bit and every byte flipped;
 *    every truncation; lengths that are zero, huge or point past the buffer;
 *    and "tamper, then fix up the checksum exactly as the encoder computes it"
 *    (XXH3 over [8, encoded size) with the seed, little-endian at offset 0;
 *    records use seed ^ lsn over [8, padded size)), which gets past the
 *    checksum and shows each field check fires with the documented status.
 *    Every tamper table also holds in-range "controls" that must decode, so
 *    a rejection is due to the field and not to a wrong fix-up. Records read
 *    at the wrong LSN or with the wrong seed, and batch headers read with
 *    another segment's seed, are refused.
 *  - Damaged bytes are always decoded from a heap copy of exactly the bytes
 *    given, so AddressSanitizer (CI runs this suite under it) reports any
 *    read past the end.
 *  - A seeded fuzz loop (seed printed by tu_seed; STELE_TEST_SEED replays)
 *    decodes random bytes and mutated valid encodings of every structure;
 *    whatever decodes OK must re-encode to exactly the bytes it came from.
 *  - The request fingerprint is equal for identical requests, changes with
 *    every identity field and ignores every other field.
 *  - tests/golden/v1_segment_head.hex holds a segment header and a two-record
 *    batch written once by the v1 encoder. The encoder must still produce it
 *    byte for byte, and it must decode to the literal values it was written
 *    from: format v1 is read by every later version, forever. The worked
 *    example of SPEC.md §12 is rebuilt from its stated inputs and every
 *    checksum it prints is compared, so the spec and the code cannot drift.
 */
#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "checksum.h"
#include "limits.h"
#include "record.h"
#include "segment.h"
#include "status.h"
#include "testutil.h"

#define ST(s) fmt_status_str(s)

/* Any 64-bit value is a valid segment seed; these two stand for two segments. */
#define SEED_A UINT64_C(0x5eed5eed12345678)
#define SEED_B UINT64_C(0x0badc0ffee15900d)

static uint64_t g_seed;

static const uint8_t LOG_ID[STELE_LOG_ID_SIZE] = {'g', 'o', 'l', 'd', 'e', 'n', '-', 'l',
                                                  'o', 'g', '-', 'i', 'd', '-', 'v', '1'};

/* ---- helpers --------------------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t v, unsigned width)
{
    for (unsigned i = 0; i < width; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned width)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < width; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* A heap copy of exactly n bytes: AddressSanitizer flags any read past them.
 * Kept out of line: inlined, GCC -O3 splits off the n == 0 path into callers
 * and warns (falsely) about writes into a zero-sized object there. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static uint8_t *exact_copy(const uint8_t *src, size_t n)
{
    uint8_t *p = malloc(n); /* may be NULL when n is 0: decoders must not touch it then */
    REQUIRE(p != NULL || n == 0, "out of memory");
    if (n)
        memcpy(p, src, n);
    return p;
}

static int bytes_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
    return n == 0 || memcmp(a, b, n) == 0;
}

/* A fuzz stream per test, derived from the printed seed; never zero (xorshift). */
static uint64_t rng_init(uint64_t tag)
{
    uint64_t s = g_seed * UINT64_C(0x9e3779b97f4a7c15) + tag;
    return s ? s : 1;
}

static void fill_random(uint64_t *rng, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = tu_rand(rng);
        for (size_t j = 0; j < 8 && i + j < n; j++)
            p[i + j] = (uint8_t)(v >> (8 * j));
    }
}

/* Deterministic, non-repeating-looking bytes for variable fields and payloads. */
#define PATTERN_SIZE 8192u
static const uint8_t *pattern(void)
{
    static uint8_t bytes[PATTERN_SIZE];
    static int filled;
    if (!filled) {
        uint64_t s = 0x9e3779b97f4a7c15u;
        fill_random(&s, bytes, sizeof bytes);
        filled = 1;
    }
    return bytes;
}

static uint8_t *payload_new(size_t n, uint32_t salt)
{
    uint8_t *p = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 131u + salt * 17u + (i >> 8) + 7u);
    return p;
}

/* Recomputes a fixed structure's checksum exactly as the encoder does. */
static void fixup(uint8_t *buf, size_t encoded_size, uint64_t seed)
{
    put_le(buf, stele_checksum(buf + 8, encoded_size - 8, seed), 8);
}

/* Recomputes a record's checksum as the encoder does: seed ^ lsn over
 * [8, align8(record_size)); the caller guarantees that range is in buf. */
static void record_fixup(uint8_t *buf, uint64_t lsn, uint64_t seed)
{
    size_t padded = align8((size_t)get_le(buf + 8, 4));
    put_le(buf, stele_checksum(buf + 8, padded - 8, seed ^ lsn), 8);
}

/* ---- sample and random valid structures ----------------------------------- */

static struct fmt_meta meta_sample(uint64_t *rng)
{
    struct fmt_meta m;
    memset(&m, 0, sizeof m);
    memcpy(m.log_id, LOG_ID, sizeof m.log_id);
    m.created_at_ns = UINT64_C(1700000000123456789);
    m.segment_size = STELE_SEGMENT_SIZE_DEFAULT;
    m.idem_window_ns = UINT64_C(86400000000000);
    m.payload_size_max = STELE_PAYLOAD_SIZE_DEFAULT;
    m.compression = 1;
    m.compression_level = -3;
    m.durability = 2;
    if (rng) {
        fill_random(rng, m.log_id, sizeof m.log_id);
        m.created_at_ns = tu_rand(rng);
        m.segment_size = STELE_SEGMENT_SIZE_MIN +
                         tu_rand(rng) % ((STELE_SEGMENT_SIZE_MAX - STELE_SEGMENT_SIZE_MIN) / STELE_BLOCK_SIZE + 1) *
                             STELE_BLOCK_SIZE;
        m.idem_window_ns = tu_rand(rng);
        m.payload_size_max = (uint32_t)(tu_rand(rng) % (STELE_PAYLOAD_SIZE_MAX + 1u));
        m.compression = (uint8_t)(tu_rand(rng) % 2);
        m.compression_level = (int8_t)(uint8_t)tu_rand(rng);
        m.durability = (uint8_t)(1 + tu_rand(rng) % 3);
    }
    return m;
}

static struct fmt_segment_header header_sample(uint64_t *rng)
{
    struct fmt_segment_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.log_id, LOG_ID, sizeof h.log_id);
    h.seq = 3;
    h.first_lsn = 1001;
    h.segment_size = STELE_SEGMENT_SIZE_DEFAULT;
    h.created_at_ns = UINT64_C(1700000000987654321);
    h.prev_chain = UINT64_C(0x0123456789abcdef);
    if (rng) {
        fill_random(rng, h.log_id, sizeof h.log_id);
        h.seq = tu_rand(rng) | 1;
        h.first_lsn = tu_rand(rng) | 1;
        h.segment_size = STELE_SEGMENT_SIZE_MIN +
                         tu_rand(rng) % ((STELE_SEGMENT_SIZE_MAX - STELE_SEGMENT_SIZE_MIN) / STELE_BLOCK_SIZE + 1) *
                             STELE_BLOCK_SIZE;
        h.created_at_ns = tu_rand(rng);
        h.prev_chain = tu_rand(rng);
    }
    return h;
}

static struct fmt_footer footer_sample(uint64_t *rng)
{
    struct fmt_footer f;
    memset(&f, 0, sizeof f);
    f.last_lsn = 2000;
    f.record_count = 1000;
    f.batch_count = 10;
    f.data_end = 50u * STELE_BLOCK_SIZE;
    f.chain = UINT64_C(0xfedcba9876543210);
    f.file_hash = UINT64_C(0x1122334455667788);
    f.sealed_at_ns = UINT64_C(1700000001000000000);
    if (rng) {
        f.last_lsn = tu_rand(rng);
        f.record_count = tu_rand(rng) >> 1;
        f.batch_count = tu_rand(rng) % (f.record_count + 1);
        f.data_end = (1 + tu_rand(rng) % (STELE_SEGMENT_SIZE_MAX / STELE_BLOCK_SIZE)) * STELE_BLOCK_SIZE;
        f.chain = tu_rand(rng);
        f.file_hash = tu_rand(rng);
        f.sealed_at_ns = tu_rand(rng);
    }
    return f;
}

static struct fmt_batch_header batch_sample(uint64_t *rng)
{
    struct fmt_batch_header h;
    memset(&h, 0, sizeof h);
    h.record_count = 3;
    h.first_lsn = 100;
    h.durable_lsn = 99;
    h.prev_chain = UINT64_C(0xa5a5a5a5a5a5a5a5);
    h.body_checksum = UINT64_C(0x5a5a5a5a5a5a5a5a);
    h.stored_size = 600;
    h.raw_size = 600;
    h.compression = FMT_COMPRESSION_NONE;
    h.dict_id = 0;
    if (rng) {
        h.record_count = (uint32_t)(1 + tu_rand(rng) % STELE_BATCH_RECORD_COUNT_MAX);
        h.first_lsn = (tu_rand(rng) >> 1) + 1;
        h.durable_lsn = tu_rand(rng) % h.first_lsn;
        h.prev_chain = tu_rand(rng);
        h.body_checksum = tu_rand(rng);
        uint32_t raw_min = h.record_count * STELE_RECORD_HEADER_SIZE;
        h.raw_size = raw_min + (uint32_t)(tu_rand(rng) % (STELE_BATCH_BODY_SIZE_MAX - raw_min + 1));
        h.compression = (uint8_t)(tu_rand(rng) % 2);
        h.stored_size = h.compression ? (uint32_t)(tu_rand(rng) % (STELE_BATCH_BODY_SIZE_MAX + 1u)) : h.raw_size;
        h.dict_id = h.compression ? (uint32_t)tu_rand(rng) : 0;
    }
    return h;
}

/* ---- the fixed structures as one table ------------------------------------ */

/* Encodes the fixed sample (rng NULL) or a random valid instance. */
typedef void (*fixed_encode_fn)(uint64_t *rng, uint8_t *dst);
/* Decodes; on FMT_OK re-encodes the decoded value into reencoded unless NULL. */
typedef enum fmt_status (*fixed_decode_fn)(const uint8_t *src, size_t src_size, uint8_t *reencoded);

struct fixed {
    const char *name;
    size_t size;         /* bytes the decoder needs */
    size_t encoded_size; /* the checksum covers [8, encoded_size); the rest must be zero */
    uint64_t seed;
    fixed_encode_fn encode;
    fixed_decode_fn decode;
};

static void meta_enc(uint64_t *rng, uint8_t *dst)
{
    struct fmt_meta m = meta_sample(rng);
    REQUIRE(fmt_meta_encode(&m, dst, STELE_META_SIZE) == STELE_META_SIZE, "meta encode size");
}

static enum fmt_status meta_dec(const uint8_t *src, size_t src_size, uint8_t *re)
{
    struct fmt_meta m;
    enum fmt_status st = fmt_meta_decode(src, src_size, &m);
    if (st == FMT_OK && re)
        fmt_meta_encode(&m, re, STELE_META_SIZE);
    return st;
}

static void header_enc(uint64_t *rng, uint8_t *dst)
{
    struct fmt_segment_header h = header_sample(rng);
    REQUIRE(fmt_segment_header_encode(&h, dst, STELE_SEGMENT_HEADER_SIZE) == STELE_SEGMENT_HEADER_SIZE,
            "segment header encode size");
}

static enum fmt_status header_dec(const uint8_t *src, size_t src_size, uint8_t *re)
{
    struct fmt_segment_header h;
    enum fmt_status st = fmt_segment_header_decode(src, src_size, &h);
    if (st == FMT_OK && re)
        fmt_segment_header_encode(&h, re, STELE_SEGMENT_HEADER_SIZE);
    return st;
}

static void footer_enc(uint64_t *rng, uint8_t *dst)
{
    struct fmt_footer f = footer_sample(rng);
    REQUIRE(fmt_footer_encode(&f, SEED_A, dst, STELE_FOOTER_SIZE) == STELE_FOOTER_SIZE, "footer encode size");
}

static enum fmt_status footer_dec(const uint8_t *src, size_t src_size, uint8_t *re)
{
    struct fmt_footer f;
    enum fmt_status st = fmt_footer_decode(src, src_size, SEED_A, &f);
    if (st == FMT_OK && re)
        fmt_footer_encode(&f, SEED_A, re, STELE_FOOTER_SIZE);
    return st;
}

static void batch_enc(uint64_t *rng, uint8_t *dst)
{
    struct fmt_batch_header h = batch_sample(rng);
    fmt_batch_header_encode(&h, SEED_A, dst, STELE_BATCH_HEADER_SIZE);
}

static enum fmt_status batch_dec(const uint8_t *src, size_t src_size, uint8_t *re)
{
    struct fmt_batch_header h;
    uint64_t chain = 0;
    enum fmt_status st = fmt_batch_header_decode(src, src_size, SEED_A, &h, &chain);
    if (st == FMT_OK && re) {
        uint64_t chain_again = fmt_batch_header_encode(&h, SEED_A, re, STELE_BATCH_HEADER_SIZE);
        REQUIRE(chain_again == chain, "batch header: chain changes on re-encode");
    }
    return st;
}

enum { FIXED_META, FIXED_HEADER, FIXED_FOOTER, FIXED_BATCH, FIXED_COUNT };

static const struct fixed FIXED[FIXED_COUNT] = {
    {"meta", STELE_META_SIZE, STELE_META_ENCODED_SIZE, STELE_SEED_BASE, meta_enc, meta_dec},
    {"segment header", STELE_SEGMENT_HEADER_SIZE, STELE_SEGMENT_HEADER_ENCODED_SIZE, STELE_SEED_BASE,
     header_enc, header_dec},
    {"footer", STELE_FOOTER_SIZE, STELE_FOOTER_ENCODED_SIZE, SEED_A, footer_enc, footer_dec},
    {"batch header", STELE_BATCH_HEADER_SIZE, STELE_BATCH_HEADER_SIZE, SEED_A, batch_enc, batch_dec},
};

static uint8_t *fixed_valid(const struct fixed *f)
{
    uint8_t *buf = malloc(f->size);
    ck_assert_ptr_nonnull(buf);
    f->encode(NULL, buf);
    return buf;
}

/* ---- records --------------------------------------------------------------- */

/* A record whose variable fields point into pattern(); payload is the caller's. */
static struct fmt_record record_make(uint8_t kind, uint8_t outcome, uint8_t content, uint8_t flags,
                                     size_t type_size, size_t stream_size, size_t key_size,
                                     size_t actor_size, const uint8_t *payload, uint32_t payload_size,
                                     uint64_t ref)
{
    const uint8_t *pat = pattern();
    struct fmt_record r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    r.outcome = outcome;
    r.content = content;
    r.flags = flags;
    r.type = pat + 1;
    r.stream = pat + 1001;
    r.key = pat + 2002;
    r.actor = pat + 3003;
    r.type_size = (uint8_t)type_size;
    r.stream_size = (uint8_t)stream_size;
    r.key_size = (uint8_t)key_size;
    r.actor_size = (uint8_t)actor_size;
    r.payload = payload;
    r.payload_size = payload_size;
    r.recorded_at_ns = UINT64_C(1700000000000000000) + type_size;
    r.event_time_ns = UINT64_C(1690000000000000000) + payload_size;
    r.stream_version = stream_size ? 7 + key_size : 0;
    r.ref = ref;
    r.fingerprint = fmt_fingerprint(&r);
    return r;
}

static struct fmt_record record_random(uint64_t *rng, uint64_t lsn)
{
    const uint8_t *pat = pattern();
    struct fmt_record r;
    memset(&r, 0, sizeof r);
    r.kind = (uint8_t)(FMT_KIND_EVENT + tu_rand(rng) % 4);
    r.outcome = r.kind == FMT_KIND_OUTCOME ? (uint8_t)(1 + tu_rand(rng) % 2) : FMT_OUTCOME_NONE;
    r.content = (uint8_t)(FMT_CONTENT_JSON + tu_rand(rng) % 3);
    r.flags = (uint8_t)(tu_rand(rng) % 2);
    uint8_t *sizes[4] = {&r.type_size, &r.stream_size, &r.key_size, &r.actor_size};
    for (int i = 0; i < 4; i++)
        *sizes[i] = tu_rand(rng) % 3 == 0 ? 0 : (uint8_t)(tu_rand(rng) % 256);
    r.type = pat + tu_rand(rng) % (PATTERN_SIZE - 256);
    r.stream = pat + tu_rand(rng) % (PATTERN_SIZE - 256);
    r.key = pat + tu_rand(rng) % (PATTERN_SIZE - 256);
    r.actor = pat + tu_rand(rng) % (PATTERN_SIZE - 256);
    r.payload_size = (uint32_t)(tu_rand(rng) % 8 == 0 ? tu_rand(rng) % 4096 : tu_rand(rng) % 64);
    r.payload = pat + tu_rand(rng) % (PATTERN_SIZE - 4096);
    r.recorded_at_ns = tu_rand(rng);
    r.event_time_ns = tu_rand(rng);
    r.stream_version = r.stream_size ? (tu_rand(rng) | 1) : 0;
    r.ref = tu_rand(rng) % lsn;
    r.fingerprint = fmt_fingerprint(&r);
    return r;
}

static size_t record_unpadded(const struct fmt_record *r)
{
    return STELE_RECORD_HEADER_SIZE + (size_t)r->type_size + r->stream_size + r->key_size + r->actor_size +
           r->payload_size;
}

/* Encodes r into a fresh buffer of exactly its size. */
static uint8_t *record_encode_new(const struct fmt_record *r, uint64_t lsn, uint64_t seed, size_t *out_size)
{
    size_t size = fmt_record_size(r);
    uint8_t *buf = malloc(size);
    ck_assert_ptr_nonnull(buf);
    REQUIRE(fmt_record_encode(r, lsn, seed, buf, size) == size, "encode returns the record size");
    *out_size = size;
    return buf;
}

static void record_require_equal(const struct fmt_record *a, const struct fmt_record *b)
{
    REQUIRE(a->recorded_at_ns == b->recorded_at_ns && a->event_time_ns == b->event_time_ns &&
                a->stream_version == b->stream_version && a->fingerprint == b->fingerprint && a->ref == b->ref,
            "record: a 64-bit field differs");
    REQUIRE(a->kind == b->kind && a->outcome == b->outcome && a->content == b->content && a->flags == b->flags,
            "record: kind/outcome/content/flags differ");
    REQUIRE(a->type_size == b->type_size && a->stream_size == b->stream_size && a->key_size == b->key_size &&
                a->actor_size == b->actor_size && a->payload_size == b->payload_size,
            "record: a variable field size differs");
    REQUIRE(bytes_eq(a->type, b->type, a->type_size) && bytes_eq(a->stream, b->stream, a->stream_size) &&
                bytes_eq(a->key, b->key, a->key_size) && bytes_eq(a->actor, b->actor, a->actor_size) &&
                bytes_eq(a->payload, b->payload, a->payload_size),
            "record: variable field bytes differ");
}

/* Encodes r, checks its layout byte by byte, decodes it from an exact copy and
 * compares every field. */
static void record_roundtrip(const struct fmt_record *r, uint64_t lsn, uint64_t seed)
{
    size_t unpadded = record_unpadded(r);
    size_t size = fmt_record_size(r);
    REQUIRE(size == align8(unpadded) && size <= STELE_RECORD_SIZE_MAX, "record size %zu for %zu bytes", size,
            unpadded);
    uint8_t *buf = malloc(size + 16);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 0xa5, size + 16);
    REQUIRE(fmt_record_encode(r, lsn, seed, buf, size) == size, "encode returns its size");
    for (size_t i = size; i < size + 16; i++)
        REQUIRE(buf[i] == 0xa5, "encoder wrote past the record at +%zu", i - size);

    REQUIRE(get_le(buf, 8) == stele_checksum(buf + 8, size - 8, seed ^ lsn), "record checksum");
    REQUIRE(get_le(buf + 8, 4) == unpadded && get_le(buf + 12, 4) == r->payload_size, "record sizes");
    REQUIRE(buf[16] == r->kind && buf[17] == r->outcome && buf[18] == r->content && buf[19] == r->flags,
            "record kind/outcome/content/flags bytes");
    REQUIRE(buf[20] == r->type_size && buf[21] == r->stream_size && buf[22] == r->key_size &&
                buf[23] == r->actor_size,
            "record size bytes");
    REQUIRE(get_le(buf + 24, 8) == r->recorded_at_ns && get_le(buf + 32, 8) == r->event_time_ns &&
                get_le(buf + 40, 8) == r->stream_version && get_le(buf + 48, 8) == r->fingerprint &&
                get_le(buf + 56, 8) == r->ref,
            "record 64-bit fields");
    const uint8_t *p = buf + STELE_RECORD_HEADER_SIZE;
    REQUIRE(bytes_eq(p, r->type, r->type_size), "type bytes at 64");
    p += r->type_size;
    REQUIRE(bytes_eq(p, r->stream, r->stream_size), "stream bytes follow type");
    p += r->stream_size;
    REQUIRE(bytes_eq(p, r->key, r->key_size), "key bytes follow stream");
    p += r->key_size;
    REQUIRE(bytes_eq(p, r->actor, r->actor_size), "actor bytes follow key");
    p += r->actor_size;
    REQUIRE(bytes_eq(p, r->payload, r->payload_size), "payload bytes follow actor");
    for (size_t i = unpadded; i < size; i++)
        REQUIRE(buf[i] == 0, "padding byte %zu is not zero", i);

    uint8_t *copy = exact_copy(buf, size);
    struct fmt_record out;
    size_t out_size = 0;
    enum fmt_status st = fmt_record_decode(copy, size, lsn, seed, &out, &out_size);
    REQUIRE(st == FMT_OK, "decode: %s", ST(st));
    REQUIRE(out_size == size, "decoded size %zu, want %zu", out_size, size);
    record_require_equal(&out, r);
    REQUIRE(out.type == copy + 64 && out.stream == out.type + out.type_size &&
                out.key == out.stream + out.stream_size && out.actor == out.key + out.key_size &&
                out.payload == out.actor + out.actor_size,
            "decoded fields point into the source buffer, in order");
    REQUIRE(fmt_fingerprint(&out) == r->fingerprint, "fingerprint of the decoded record");
    free(copy);
    free(buf);
}

/* ---- round trips ----------------------------------------------------------- */

START_TEST(test_limits_pinned)
{
    /* Values that define format v1 on disk; changing one is a new format version. */
    ck_assert_uint_eq(STELE_FORMAT_VERSION, 1);
    ck_assert_uint_eq(STELE_BLOCK_SIZE, 4096);
    ck_assert_uint_eq(STELE_META_SIZE, 4096);
    ck_assert_uint_eq(STELE_SEGMENT_HEADER_SIZE, 4096);
    ck_assert_uint_eq(STELE_FOOTER_SIZE, 4096);
    ck_assert_uint_eq(STELE_META_ENCODED_SIZE, 128);
    ck_assert_uint_eq(STELE_SEGMENT_HEADER_ENCODED_SIZE, 128);
    ck_assert_uint_eq(STELE_FOOTER_ENCODED_SIZE, 128);
    ck_assert_uint_eq(STELE_BATCH_HEADER_SIZE, 64);
    ck_assert_uint_eq(STELE_RECORD_HEADER_SIZE, 64);
    ck_assert_uint_eq(STELE_RECORD_ALIGN, 8);
    ck_assert_uint_eq(STELE_SEGMENT_NAME_SIZE, 25);
    ck_assert_uint_eq(STELE_SEED_BASE, UINT64_C(0x313076454c455453));
    ck_assert_uint_eq(STELE_SEED_FINGERPRINT, UINT64_C(0x317066454c455453));
    ck_assert_uint_eq(FMT_KIND_EVENT, 1);
    ck_assert_uint_eq(FMT_KIND_COMPENSATION, 4);
    ck_assert_uint_eq(FMT_OUTCOME_FAILED, 2);
    ck_assert_uint_eq(FMT_CONTENT_BINARY, 3);
    ck_assert_uint_eq(FMT_FLAG_BACKFILLED, 1);
}
END_TEST

START_TEST(test_status_str)
{
    for (int s = FMT_OK; s <= FMT_BAD_FIELD; s++) {
        const char *text = fmt_status_str((enum fmt_status)s);
        ck_assert_ptr_nonnull(text);
        ck_assert_str_ne(text, "unknown status");
    }
    ck_assert_str_eq(fmt_status_str((enum fmt_status)99), "unknown status");
    uint8_t zeros[9] = {0};
    ck_assert(fmt_is_zero(zeros, sizeof zeros));
    ck_assert(fmt_is_zero(zeros, 0));
    zeros[8] = 1;
    ck_assert(!fmt_is_zero(zeros, sizeof zeros));
    ck_assert(fmt_is_zero(zeros, 8));
}
END_TEST

START_TEST(test_checksum_and_seed)
{
    /* The segment seed depends on every input, and not on anything else. */
    uint64_t s = stele_segment_seed(LOG_ID, 1, 1);
    ck_assert_uint_eq(s, stele_segment_seed(LOG_ID, 1, 1));
    ck_assert_uint_ne(s, STELE_SEED_BASE);
    ck_assert_uint_ne(s, stele_segment_seed(LOG_ID, 2, 1));
    ck_assert_uint_ne(s, stele_segment_seed(LOG_ID, 1, 2));
    for (unsigned i = 0; i < STELE_LOG_ID_SIZE; i++) {
        uint8_t other[STELE_LOG_ID_SIZE];
        memcpy(other, LOG_ID, sizeof other);
        other[i] ^= 1;
        ck_assert_uint_ne(s, stele_segment_seed(other, 1, 1));
    }
    const uint8_t bytes[] = "stele";
    ck_assert_uint_eq(stele_checksum(bytes, 5, 1), stele_checksum(bytes, 5, 1));
    ck_assert_uint_ne(stele_checksum(bytes, 5, 1), stele_checksum(bytes, 5, 2));
    ck_assert_uint_ne(stele_checksum(bytes, 5, 1), stele_checksum(bytes, 4, 1));
}
END_TEST

START_TEST(test_meta_roundtrip)
{
    struct fmt_meta m = meta_sample(NULL);
    uint8_t buf[STELE_META_SIZE + 16];
    memset(buf, 0xa5, sizeof buf);
    ck_assert_uint_eq(fmt_meta_encode(&m, buf, STELE_META_SIZE), STELE_META_SIZE);
    for (size_t i = STELE_META_SIZE; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0xa5);
    /* SPEC.md §2.1 layout. */
    ck_assert_uint_eq(get_le(buf, 8), stele_checksum(buf + 8, STELE_META_ENCODED_SIZE - 8, STELE_SEED_BASE));
    ck_assert(memcmp(buf + 8, "STELELOG", 8) == 0);
    ck_assert_uint_eq(get_le(buf + 16, 4), STELE_FORMAT_VERSION);
    ck_assert_uint_eq(get_le(buf + 20, 4), STELE_META_SIZE);
    ck_assert(memcmp(buf + 24, LOG_ID, 16) == 0);
    ck_assert_uint_eq(get_le(buf + 40, 8), m.created_at_ns);
    ck_assert_uint_eq(get_le(buf + 48, 8), m.segment_size);
    ck_assert_uint_eq(get_le(buf + 56, 8), m.idem_window_ns);
    ck_assert_uint_eq(get_le(buf + 64, 4), m.payload_size_max);
    ck_assert_uint_eq(buf[68], 1);
    ck_assert_uint_eq(buf[69], 0xfd); /* -3 as a two's-complement byte */
    ck_assert_uint_eq(buf[70], 2);
    ck_assert(fmt_is_zero(buf + 71, STELE_META_SIZE - 71));

    struct fmt_meta out;
    uint8_t *copy = exact_copy(buf, STELE_META_SIZE);
    ck_assert_int_eq(fmt_meta_decode(copy, STELE_META_SIZE, &out), FMT_OK);
    ck_assert(memcmp(out.log_id, m.log_id, 16) == 0);
    ck_assert_uint_eq(out.created_at_ns, m.created_at_ns);
    ck_assert_uint_eq(out.segment_size, m.segment_size);
    ck_assert_uint_eq(out.idem_window_ns, m.idem_window_ns);
    ck_assert_uint_eq(out.payload_size_max, m.payload_size_max);
    ck_assert_uint_eq(out.compression, m.compression);
    ck_assert_int_eq(out.compression_level, -3);
    ck_assert_uint_eq(out.durability, m.durability);
    free(copy);
    /* A longer buffer is fine: the decoder reads only its block. */
    ck_assert_int_eq(fmt_meta_decode(buf, sizeof buf, &out), FMT_OK);
}
END_TEST

START_TEST(test_segment_header_roundtrip)
{
    struct fmt_segment_header h = header_sample(NULL);
    uint8_t buf[STELE_SEGMENT_HEADER_SIZE + 16];
    memset(buf, 0xa5, sizeof buf);
    ck_assert_uint_eq(fmt_segment_header_encode(&h, buf, STELE_SEGMENT_HEADER_SIZE), STELE_SEGMENT_HEADER_SIZE);
    for (size_t i = STELE_SEGMENT_HEADER_SIZE; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0xa5);
    /* SPEC.md §3 layout. */
    ck_assert_uint_eq(get_le(buf, 8),
                      stele_checksum(buf + 8, STELE_SEGMENT_HEADER_ENCODED_SIZE - 8, STELE_SEED_BASE));
    ck_assert(memcmp(buf + 8, "STELESEG", 8) == 0);
    ck_assert_uint_eq(get_le(buf + 16, 4), STELE_FORMAT_VERSION);
    ck_assert_uint_eq(get_le(buf + 20, 4), STELE_SEGMENT_HEADER_SIZE);
    ck_assert(memcmp(buf + 24, LOG_ID, 16) == 0);
    ck_assert_uint_eq(get_le(buf + 40, 8), h.seq);
    ck_assert_uint_eq(get_le(buf + 48, 8), h.first_lsn);
    ck_assert_uint_eq(get_le(buf + 56, 8), h.segment_size);
    ck_assert_uint_eq(get_le(buf + 64, 8), h.created_at_ns);
    ck_assert_uint_eq(get_le(buf + 72, 8), h.prev_chain);
    ck_assert(fmt_is_zero(buf + 80, STELE_SEGMENT_HEADER_SIZE - 80));

    struct fmt_segment_header out;
    uint8_t *copy = exact_copy(buf, STELE_SEGMENT_HEADER_SIZE);
    ck_assert_int_eq(fmt_segment_header_decode(copy, STELE_SEGMENT_HEADER_SIZE, &out), FMT_OK);
    ck_assert(memcmp(out.log_id, h.log_id, 16) == 0);
    ck_assert_uint_eq(out.seq, h.seq);
    ck_assert_uint_eq(out.first_lsn, h.first_lsn);
    ck_assert_uint_eq(out.segment_size, h.segment_size);
    ck_assert_uint_eq(out.created_at_ns, h.created_at_ns);
    ck_assert_uint_eq(out.prev_chain, h.prev_chain);
    free(copy);
}
END_TEST

START_TEST(test_footer_roundtrip)
{
    struct fmt_footer f = footer_sample(NULL);
    uint8_t buf[STELE_FOOTER_SIZE + 16];
    memset(buf, 0xa5, sizeof buf);
    ck_assert_uint_eq(fmt_footer_encode(&f, SEED_A, buf, STELE_FOOTER_SIZE), STELE_FOOTER_SIZE);
    for (size_t i = STELE_FOOTER_SIZE; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0xa5);
    /* SPEC.md §7 layout: sealed with the segment's seed, not the base seed. */
    ck_assert_uint_eq(get_le(buf, 8), stele_checksum(buf + 8, STELE_FOOTER_ENCODED_SIZE - 8, SEED_A));
    ck_assert(memcmp(buf + 8, "STELEEND", 8) == 0);
    ck_assert_uint_eq(get_le(buf + 16, 8), f.last_lsn);
    ck_assert_uint_eq(get_le(buf + 24, 8), f.record_count);
    ck_assert_uint_eq(get_le(buf + 32, 8), f.batch_count);
    ck_assert_uint_eq(get_le(buf + 40, 8), f.data_end);
    ck_assert_uint_eq(get_le(buf + 48, 8), f.chain);
    ck_assert_uint_eq(get_le(buf + 56, 8), f.file_hash);
    ck_assert_uint_eq(get_le(buf + 64, 8), f.sealed_at_ns);
    ck_assert(fmt_is_zero(buf + 72, STELE_FOOTER_SIZE - 72));

    struct fmt_footer out;
    uint8_t *copy = exact_copy(buf, STELE_FOOTER_SIZE);
    ck_assert_int_eq(fmt_footer_decode(copy, STELE_FOOTER_SIZE, SEED_A, &out), FMT_OK);
    ck_assert_uint_eq(out.last_lsn, f.last_lsn);
    ck_assert_uint_eq(out.record_count, f.record_count);
    ck_assert_uint_eq(out.batch_count, f.batch_count);
    ck_assert_uint_eq(out.data_end, f.data_end);
    ck_assert_uint_eq(out.chain, f.chain);
    ck_assert_uint_eq(out.file_hash, f.file_hash);
    ck_assert_uint_eq(out.sealed_at_ns, f.sealed_at_ns);
    free(copy);

    /* An empty sealed segment: no records, no batches, data ends after the header. */
    struct fmt_footer empty = {.last_lsn = 1000, .data_end = STELE_SEGMENT_HEADER_SIZE, .chain = 5};
    fmt_footer_encode(&empty, SEED_A, buf, STELE_FOOTER_SIZE);
    ck_assert_int_eq(fmt_footer_decode(buf, STELE_FOOTER_SIZE, SEED_A, &out), FMT_OK);
    ck_assert_uint_eq(out.record_count, 0);
    ck_assert_uint_eq(out.data_end, STELE_SEGMENT_HEADER_SIZE);
}
END_TEST

START_TEST(test_batch_header_roundtrip)
{
    struct fmt_batch_header h = batch_sample(NULL);
    uint8_t buf[STELE_BATCH_HEADER_SIZE + 16];
    memset(buf, 0xa5, sizeof buf);
    uint64_t chain = fmt_batch_header_encode(&h, SEED_A, buf, STELE_BATCH_HEADER_SIZE);
    for (size_t i = STELE_BATCH_HEADER_SIZE; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0xa5);
    /* SPEC.md §4 layout; the header's checksum is the batch's chain value. */
    ck_assert_uint_eq(chain, stele_checksum(buf + 8, STELE_BATCH_HEADER_SIZE - 8, SEED_A));
    ck_assert_uint_eq(get_le(buf, 8), chain);
    ck_assert(memcmp(buf + 8, "STBA", 4) == 0);
    ck_assert_uint_eq(get_le(buf + 12, 4), h.record_count);
    ck_assert_uint_eq(get_le(buf + 16, 8), h.first_lsn);
    ck_assert_uint_eq(get_le(buf + 24, 8), h.durable_lsn);
    ck_assert_uint_eq(get_le(buf + 32, 8), h.prev_chain);
    ck_assert_uint_eq(get_le(buf + 40, 8), h.body_checksum);
    ck_assert_uint_eq(get_le(buf + 48, 4), h.stored_size);
    ck_assert_uint_eq(get_le(buf + 52, 4), h.raw_size);
    ck_assert_uint_eq(buf[56], h.compression);
    ck_assert_uint_eq(get_le(buf + 57, 3), 0);
    ck_assert_uint_eq(get_le(buf + 60, 4), h.dict_id);

    struct fmt_batch_header out;
    uint64_t out_chain = 0;
    uint8_t *copy = exact_copy(buf, STELE_BATCH_HEADER_SIZE);
    ck_assert_int_eq(fmt_batch_header_decode(copy, STELE_BATCH_HEADER_SIZE, SEED_A, &out, &out_chain), FMT_OK);
    ck_assert_uint_eq(out_chain, chain);
    ck_assert_uint_eq(out.record_count, h.record_count);
    ck_assert_uint_eq(out.first_lsn, h.first_lsn);
    ck_assert_uint_eq(out.durable_lsn, h.durable_lsn);
    ck_assert_uint_eq(out.prev_chain, h.prev_chain);
    ck_assert_uint_eq(out.body_checksum, h.body_checksum);
    ck_assert_uint_eq(out.stored_size, h.stored_size);
    ck_assert_uint_eq(out.raw_size, h.raw_size);
    ck_assert_uint_eq(out.compression, h.compression);
    ck_assert_uint_eq(out.dict_id, h.dict_id);
    free(copy);

    /* A compressed batch: stored and raw sizes differ and a dictionary is named. */
    h.compression = FMT_COMPRESSION_ZSTD;
    h.stored_size = 100;
    h.dict_id = 77;
    chain = fmt_batch_header_encode(&h, SEED_A, buf, STELE_BATCH_HEADER_SIZE);
    ck_assert_int_eq(fmt_batch_header_decode(buf, STELE_BATCH_HEADER_SIZE, SEED_A, &out, &out_chain), FMT_OK);
    ck_assert_uint_eq(out_chain, chain);
    ck_assert_uint_eq(out.compression, FMT_COMPRESSION_ZSTD);
    ck_assert_uint_eq(out.stored_size, 100);
    ck_assert_uint_eq(out.dict_id, 77);
}
END_TEST

START_TEST(test_fixed_random_roundtrip)
{
    /* Random valid values of every field survive encode, decode, re-encode. */
    const struct fixed *f = &FIXED[_i];
    uint64_t rng = rng_init(0x1000u + (uint64_t)_i);
    uint8_t *buf = malloc(f->size), *re = malloc(f->size);
    for (int iter = 0; iter < 2000; iter++) {
        f->encode(&rng, buf);
        enum fmt_status st = f->decode(buf, f->size, re);
        REQUIRE(st == FMT_OK, "%s: random valid value decoded as %s (seed %llu, iteration %d)", f->name, ST(st),
                (unsigned long long)g_seed, iter);
        REQUIRE(memcmp(buf, re, f->size) == 0, "%s: re-encoding differs (seed %llu, iteration %d)", f->name,
                (unsigned long long)g_seed, iter);
    }
    free(re);
    free(buf);
}
END_TEST

START_TEST(test_batch_frame_size)
{
    ck_assert_uint_eq(fmt_batch_frame_size(0), STELE_BLOCK_SIZE);
    ck_assert_uint_eq(fmt_batch_frame_size(1), STELE_BLOCK_SIZE);
    ck_assert_uint_eq(fmt_batch_frame_size(STELE_BLOCK_SIZE - STELE_BATCH_HEADER_SIZE), STELE_BLOCK_SIZE);
    ck_assert_uint_eq(fmt_batch_frame_size(STELE_BLOCK_SIZE - STELE_BATCH_HEADER_SIZE + 1), 2 * STELE_BLOCK_SIZE);
    ck_assert_uint_eq(fmt_batch_frame_size(STELE_BATCH_BODY_SIZE_MAX),
                      STELE_BATCH_BODY_SIZE_MAX + STELE_BLOCK_SIZE);
    ck_assert_uint_eq(fmt_batch_frame_size(UINT32_MAX), (uint64_t)UINT32_MAX + 1 + STELE_BLOCK_SIZE);
    for (uint32_t n = 0; n < 3 * STELE_BLOCK_SIZE; n += 61) {
        uint64_t frame = fmt_batch_frame_size(n);
        ck_assert_uint_eq(frame % STELE_BLOCK_SIZE, 0);
        ck_assert(frame >= STELE_BATCH_HEADER_SIZE + (uint64_t)n);
        ck_assert(frame < STELE_BATCH_HEADER_SIZE + (uint64_t)n + STELE_BLOCK_SIZE);
    }
}
END_TEST

START_TEST(test_record_roundtrip_kinds)
{
    /* Every kind with every outcome it may carry, every content type, both flag values. */
    static const uint8_t outcomes[4][3] = {
        {FMT_OUTCOME_NONE}, {FMT_OUTCOME_NONE}, {FMT_OUTCOME_CONFIRMED, FMT_OUTCOME_FAILED}, {FMT_OUTCOME_NONE}};
    static const int outcome_count[4] = {1, 1, 2, 1};
    uint8_t *payload = payload_new(33, 1);
    int n = 0;
    for (uint8_t kind = FMT_KIND_EVENT; kind <= FMT_KIND_COMPENSATION; kind++)
        for (int o = 0; o < outcome_count[kind - 1]; o++)
            for (uint8_t content = FMT_CONTENT_JSON; content <= FMT_CONTENT_BINARY; content++)
                for (uint8_t flags = 0; flags <= FMT_FLAG_BACKFILLED; flags++)
                    for (int stream = 0; stream < 2; stream++) {
                        uint64_t lsn = 500 + (uint64_t)n++;
                        struct fmt_record r = record_make(kind, outcomes[kind - 1][o], content, flags, 10,
                                                          stream ? 12u : 0u, 5, 6, payload, 33, lsn - 1 - kind);
                        ck_assert_int_eq(fmt_record_check(&r, lsn), FMT_OK);
                        record_roundtrip(&r, lsn, SEED_A);
                    }
    ck_assert_int_eq(n, 5 * 3 * 2 * 2);
    free(payload);
}
END_TEST

START_TEST(test_record_roundtrip_sizes)
{
    /* Each variable field empty, one byte and at its maximum, with payloads
     * around the 8-byte alignment and beyond a block. */
    static const size_t var_sizes[3] = {0, 1, STELE_TYPE_SIZE_MAX};
    static const uint32_t payload_sizes[] = {0, 1, 7, 8, 9, 255, 4096, 65537};
    enum { PAYLOAD_COUNT = sizeof payload_sizes / sizeof payload_sizes[0] };
    ck_assert_uint_eq(STELE_TYPE_SIZE_MAX, 255);
    ck_assert_uint_eq(STELE_STREAM_SIZE_MAX, 255);
    ck_assert_uint_eq(STELE_KEY_SIZE_MAX, 255);
    ck_assert_uint_eq(STELE_ACTOR_SIZE_MAX, 255);
    uint8_t *payload = payload_new(65537, 2);
    uint64_t lsn = 1;
    for (int t = 0; t < 3; t++)
        for (int s = 0; s < 3; s++)
            for (int k = 0; k < 3; k++)
                for (int a = 0; a < 3; a++)
                    for (int p = 0; p < PAYLOAD_COUNT; p++) {
                        struct fmt_record r = record_make(FMT_KIND_EVENT, FMT_OUTCOME_NONE, FMT_CONTENT_BINARY, 0,
                                                          var_sizes[t], var_sizes[s], var_sizes[k], var_sizes[a],
                                                          payload, payload_sizes[p], 0);
                        record_roundtrip(&r, lsn++, SEED_B);
                    }
    /* A NULL payload pointer is fine when the payload is empty. */
    struct fmt_record r = record_make(FMT_KIND_EVENT, FMT_OUTCOME_NONE, FMT_CONTENT_TEXT, 0, 0, 0, 0, 0, NULL, 0, 0);
    ck_assert_uint_eq(fmt_record_size(&r), STELE_RECORD_HEADER_SIZE);
    record_roundtrip(&r, 1, SEED_A);
    free(payload);
}
END_TEST

START_TEST(test_record_roundtrip_large)
{
    /* 1 MiB, and every variable field at its maximum with the largest payload. */
    uint8_t *payload = payload_new(STELE_PAYLOAD_SIZE_MAX, 3);
    struct fmt_record r = record_make(FMT_KIND_EVENT, FMT_OUTCOME_NONE, FMT_CONTENT_JSON, 0, 100, 10, 0, 0, payload,
                                      1024u * 1024u, 0);
    record_roundtrip(&r, UINT64_C(1) << 40, SEED_A);
    r = record_make(FMT_KIND_INTENT, FMT_OUTCOME_NONE, FMT_CONTENT_BINARY, FMT_FLAG_BACKFILLED, 255, 255, 255, 255,
                    payload, STELE_PAYLOAD_SIZE_MAX, 41);
    ck_assert_uint_le(fmt_record_size(&r), STELE_RECORD_SIZE_MAX);
    record_roundtrip(&r, UINT64_MAX, SEED_B);
    free(payload);
}
END_TEST

START_TEST(test_record_check)
{
    /* What fmt_record_check refuses is what the decoder refuses (see the tamper test). */
    uint8_t pl[4] = {1, 2, 3, 4};
    struct fmt_record ok = record_make(FMT_KIND_EVENT, FMT_OUTCOME_NONE, FMT_CONTENT_JSON, 0, 3, 3, 3, 3, pl, 4, 5);
    ck_assert_int_eq(fmt_record_check(&ok, 6), FMT_OK);
    struct fmt_record r = ok;
    r.kind = 0;
    ck_assert_int_eq(fmt_record_check(&r, 6), FMT_BAD_FIELD);
    r.kind = FMT_KIND_COMPENSATION + 1;
    ck_assert_int_eq(fmt_record_check(&r, 6), FMT_BAD_FIELD);
    r = ok;
    r.kind = FMT_KIND_OUTCOME; /* an outcome record must say which outcome */
    ck_assert_int_eq(fmt_record_check(&r, 6), FMT_BAD_FIELD);
    r.outcome = FMT_OUTCOME_FAILED + 1;
    ck_assert_int_eq(fmt_record_check(&r, 6), FMT_BAD_FIELD);
    r.outcome = FMT_OUTCOME_FAILED;
    ck_assert_int_eq(fmt_record_check(&r, 6), FMT_OK);
    r = ok;
    r.outcome = FMT_OUTCOME_CONFIRMED; /* only outcome records carry an outcome */
    ck_assert_int_eq(fmt_record_check(&r, 6), FMT_BAD_FIELD);
    r = ok;
    r.content = 0;
    ck_assert_int_eq(fmt_record_check(&r, 6), FMT_BAD_FIELD);
    r.content = FMT_CONTENT_BINARY + 1;
    ck_assert_int_eq(fmt_record_check(&r, 6), FMT_BAD_FIELD);
    r = ok;
    r.flags = 2;
    ck_assert_int_eq(fmt_record_check(&r, 6), FMT_BAD_FIELD);
    r = ok;
    ck_assert_int_eq(fmt_record_check(&r, 5), FMT_BAD_FIELD); /* ref must be below the record's own LSN */
    ck_assert_int_eq(fmt_record_check(&r, 4), FMT_BAD_FIELD);
    r.ref = 0;
    ck_assert_int_eq(fmt_record_check(&r, 1), FMT_OK);
    r = ok;
    r.stream_version = 0; /* a stream record has a version */
    ck_assert_int_eq(fmt_record_check(&r, 6), FMT_BAD_FIELD);
    r = ok;
    r.stream_size = 0; /* and a record without a stream has none */
    ck_assert_int_eq(fmt_record_check(&r, 6), FMT_BAD_FIELD);
    r = ok;
    r.payload_size = STELE_PAYLOAD_SIZE_MAX + 1;
    ck_assert_int_eq(fmt_record_check(&r, 6), FMT_BAD_FIELD);
    r.payload_size = STELE_PAYLOAD_SIZE_MAX;
    ck_assert_int_eq(fmt_record_check(&r, 6), FMT_OK);
}
END_TEST

/* ---- batches --------------------------------------------------------------- */

#define WALK_RECORDS 5

/* The records of the walking tests, at LSNs first_lsn .. first_lsn + 4. */
static void walk_records(struct fmt_record recs[WALK_RECORDS], uint64_t first_lsn, const uint8_t *payload)
{
    recs[0] = record_make(FMT_KIND_EVENT, FMT_OUTCOME_NONE, FMT_CONTENT_JSON, 0, 5, 3, 0, 2, payload, 0, 0);
    recs[1] = record_make(FMT_KIND_INTENT, FMT_OUTCOME_NONE, FMT_CONTENT_TEXT, 0, 1, 0, 7, 0, payload, 7, first_lsn);
    recs[2] = record_make(FMT_KIND_OUTCOME, FMT_OUTCOME_CONFIRMED, FMT_CONTENT_BINARY, 0, 9, 9, 9, 9, payload, 8,
                          first_lsn + 1);
    recs[3] = record_make(FMT_KIND_COMPENSATION, FMT_OUTCOME_NONE, FMT_CONTENT_JSON, FMT_FLAG_BACKFILLED, 2, 0, 255,
                          0, payload, 9, first_lsn);
    recs[4] = record_make(FMT_KIND_OUTCOME, FMT_OUTCOME_FAILED, FMT_CONTENT_TEXT, 0, 255, 1, 0, 0, payload, 300,
                          first_lsn + 1);
}

/* Encodes n records back to back from first_lsn; returns the body size. */
static size_t body_build(const struct fmt_record *recs, size_t n, uint64_t first_lsn, uint64_t seed, uint8_t *dst,
                         size_t dst_capacity, size_t *offsets)
{
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t size = fmt_record_size(&recs[i]);
        ck_assert_uint_le(off + size, dst_capacity);
        if (offsets)
            offsets[i] = off;
        off += fmt_record_encode(&recs[i], first_lsn + i, seed, dst + off, dst_capacity - off);
    }
    return off;
}

struct walk {
    size_t count;
    size_t stop_at; /* return non-zero from the callback at this count, 0 = never */
    const uint8_t *raw;
    size_t raw_size;
    uint64_t lsn[64];
    size_t offset[64];
    struct fmt_record rec[64];
};

static int walk_fn(void *ctx, uint64_t lsn, const struct fmt_record *r, size_t offset)
{
    struct walk *w = ctx;
    REQUIRE(w->count < 64, "walk: too many records");
    REQUIRE(offset < w->raw_size && r->payload + r->payload_size <= w->raw + w->raw_size && r->type >= w->raw,
            "walk: record %llu outside the body", (unsigned long long)lsn);
    w->lsn[w->count] = lsn;
    w->offset[w->count] = offset;
    w->rec[w->count] = *r;
    w->count++;
    return w->stop_at != 0 && w->count == w->stop_at;
}

static struct fmt_batch_header batch_for_body(const uint8_t *body, size_t size, uint32_t count, uint64_t first_lsn,
                                              uint64_t seed)
{
    struct fmt_batch_header h;
    memset(&h, 0, sizeof h);
    h.record_count = count;
    h.first_lsn = first_lsn;
    h.durable_lsn = first_lsn - 1;
    h.prev_chain = 42;
    h.body_checksum = stele_checksum(body, size, seed);
    h.stored_size = (uint32_t)size;
    h.raw_size = (uint32_t)size;
    h.compression = FMT_COMPRESSION_NONE;
    return h;
}

START_TEST(test_batch_frame_roundtrip)
{
    /* A whole frame as the writer lays it out: header, body, zeros to the block. */
    uint8_t *payload = payload_new(300, 4);
    struct fmt_record recs[WALK_RECORDS];
    walk_records(recs, 1000, payload);
    uint8_t body[8192];
    size_t offsets[WALK_RECORDS];
    size_t body_size = body_build(recs, WALK_RECORDS, 1000, SEED_A, body, sizeof body, offsets);
    struct fmt_batch_header h = batch_for_body(body, body_size, WALK_RECORDS, 1000, SEED_A);

    size_t frame_size = (size_t)fmt_batch_frame_size(h.stored_size);
    uint8_t *frame = calloc(1, frame_size);
    ck_assert_ptr_nonnull(frame);
    uint64_t chain = fmt_batch_header_encode(&h, SEED_A, frame, frame_size);
    memcpy(frame + STELE_BATCH_HEADER_SIZE, body, body_size);

    struct fmt_batch_header out;
    uint64_t out_chain;
    ck_assert_int_eq(fmt_batch_header_decode(frame, frame_size, SEED_A, &out, &out_chain), FMT_OK);
    ck_assert_uint_eq(out_chain, chain);
    const uint8_t *stored = frame + STELE_BATCH_HEADER_SIZE;
    ck_assert_int_eq(fmt_batch_body_check(&out, stored, frame_size - STELE_BATCH_HEADER_SIZE, SEED_A), FMT_OK);
    ck_assert_int_eq(fmt_batch_body_check(&out, stored, out.stored_size, SEED_A), FMT_OK);

    struct walk w = {.raw = stored, .raw_size = out.raw_size};
    uint64_t bad = 0;
    ck_assert_int_eq(fmt_batch_records(&out, stored, out.raw_size, SEED_A, walk_fn, &w, &bad), FMT_OK);
    ck_assert_uint_eq(w.count, WALK_RECORDS);
    for (size_t i = 0; i < WALK_RECORDS; i++) {
        ck_assert_uint_eq(w.lsn[i], 1000 + i);
        ck_assert_uint_eq(w.offset[i], offsets[i]);
        record_require_equal(&w.rec[i], &recs[i]);
    }
    free(frame);
    free(payload);
}
END_TEST

START_TEST(test_batch_records_walk)
{
    uint8_t *payload = payload_new(300, 5);
    struct fmt_record recs[WALK_RECORDS];
    walk_records(recs, 77, payload);
    uint8_t body[8192];
    size_t offsets[WALK_RECORDS];
    size_t size = body_build(recs, WALK_RECORDS, 77, SEED_B, body, sizeof body, offsets);
    uint8_t *raw = exact_copy(body, size);
    struct fmt_batch_header h = batch_for_body(raw, size, WALK_RECORDS, 77, SEED_B);
    uint64_t bad = 0;

    /* No callback: a pure validity check. */
    ck_assert_int_eq(fmt_batch_records(&h, raw, size, SEED_B, NULL, NULL, &bad), FMT_OK);
    ck_assert_int_eq(fmt_batch_records(&h, raw, size, SEED_B, NULL, NULL, NULL), FMT_OK);

    /* A callback that says stop ends the walk with FMT_OK after that record. */
    struct walk w = {.stop_at = 2, .raw = raw, .raw_size = size};
    ck_assert_int_eq(fmt_batch_records(&h, raw, size, SEED_B, walk_fn, &w, &bad), FMT_OK);
    ck_assert_uint_eq(w.count, 2);
    ck_assert_uint_eq(w.lsn[1], 78);
    ck_assert_uint_eq(w.offset[1], offsets[1]);

    /* A body shorter or longer than the header says. */
    ck_assert_int_eq(fmt_batch_records(&h, raw, size - 8, SEED_B, NULL, NULL, &bad), FMT_BAD_FIELD);
    ck_assert_int_eq(fmt_batch_records(&h, body, size + 8, SEED_B, NULL, NULL, &bad), FMT_BAD_FIELD);

    /* More records claimed than the body holds: the one past the end is short. */
    struct fmt_batch_header more = h;
    more.record_count = WALK_RECORDS + 1;
    bad = 0;
    ck_assert_int_eq(fmt_batch_records(&more, raw, size, SEED_B, NULL, NULL, &bad), FMT_SHORT);
    ck_assert_uint_eq(bad, 77 + WALK_RECORDS);
    more.record_count = STELE_BATCH_RECORD_COUNT_MAX;
    ck_assert_int_eq(fmt_batch_records(&more, raw, size, SEED_B, NULL, NULL, &bad), FMT_SHORT);

    /* Fewer records claimed: the bytes left over are an error, blamed on the last record. */
    struct fmt_batch_header fewer = h;
    fewer.record_count = WALK_RECORDS - 1;
    ck_assert_int_eq(fmt_batch_records(&fewer, raw, size, SEED_B, NULL, NULL, &bad), FMT_BAD_FIELD);
    ck_assert_uint_eq(bad, 77 + WALK_RECORDS - 2);

    /* The wrong first LSN or the wrong segment seed fails the first record's checksum. */
    struct fmt_batch_header shifted = h;
    shifted.first_lsn = 78;
    ck_assert_int_eq(fmt_batch_records(&shifted, raw, size, SEED_B, NULL, NULL, &bad), FMT_BAD_CHECKSUM);
    ck_assert_uint_eq(bad, 78);
    ck_assert_int_eq(fmt_batch_records(&h, raw, size, SEED_A, NULL, NULL, &bad), FMT_BAD_CHECKSUM);
    ck_assert_uint_eq(bad, 77);

    /* A damaged record is reported by its LSN. */
    for (size_t i = 0; i < WALK_RECORDS; i++) {
        uint8_t *copy = exact_copy(body, size);
        copy[offsets[i] + 20] ^= 0x10;
        ck_assert_int_ne(fmt_batch_records(&h, copy, size, SEED_B, NULL, NULL, &bad), FMT_OK);
        ck_assert_uint_eq(bad, 77 + i);
        free(copy);
    }

    free(raw);
    free(payload);
}
END_TEST

START_TEST(test_batch_records_swapped)
{
    /* Two records swapped: each is valid, but not at the other's LSN. */
    uint8_t *payload = payload_new(300, 5);
    struct fmt_record recs[WALK_RECORDS];
    walk_records(recs, 77, payload);
    uint8_t body[8192], swapped[8192];
    size_t size = body_build(recs, WALK_RECORDS, 77, SEED_B, body, sizeof body, NULL);
    struct fmt_batch_header h = batch_for_body(body, size, WALK_RECORDS, 77, SEED_B);
    uint64_t bad = 0;
    ck_assert_int_eq(fmt_batch_records(&h, body, size, SEED_B, NULL, NULL, &bad), FMT_OK);
    static const uint64_t lsn_of[WALK_RECORDS] = {78, 77, 79, 80, 81};
    size_t swapped_size = 0;
    for (size_t i = 0; i < WALK_RECORDS; i++) {
        size_t from = i == 0 ? 1 : i == 1 ? 0 : i;
        swapped_size += fmt_record_encode(&recs[from], lsn_of[i], SEED_B, swapped + swapped_size,
                                          sizeof swapped - swapped_size);
    }
    ck_assert_uint_eq(swapped_size, size);
    ck_assert_int_eq(fmt_batch_records(&h, swapped, size, SEED_B, NULL, NULL, &bad), FMT_BAD_CHECKSUM);
    ck_assert_uint_eq(bad, 77);
    free(payload);
}
END_TEST

START_TEST(test_batch_records_truncated)
{
    /* A body cut at every length, with the header's raw_size cut to match, so
     * only the records themselves can notice: never OK, always FMT_SHORT. */
    uint8_t *payload = payload_new(300, 6);
    struct fmt_record recs[WALK_RECORDS];
    walk_records(recs, 10, payload);
    uint8_t body[8192];
    size_t size = body_build(recs, WALK_RECORDS, 10, SEED_A, body, sizeof body, NULL);
    struct fmt_batch_header h = batch_for_body(body, size, WALK_RECORDS, 10, SEED_A);
    for (size_t n = 0; n < size; n++) {
        uint8_t *copy = exact_copy(body, n);
        struct fmt_batch_header cut = h;
        cut.raw_size = (uint32_t)n;
        cut.stored_size = (uint32_t)n;
        uint64_t bad = 0;
        enum fmt_status st = fmt_batch_records(&cut, copy, n, SEED_A, NULL, NULL, &bad);
        REQUIRE(st == FMT_SHORT, "body cut at %zu: %s", n, ST(st));
        REQUIRE(bad >= 10 && bad < 10 + WALK_RECORDS, "body cut at %zu: bad lsn %llu", n, (unsigned long long)bad);
        /* And against the real header, the short body is refused up front. */
        st = fmt_batch_records(&h, copy, n, SEED_A, NULL, NULL, &bad);
        REQUIRE(st == FMT_BAD_FIELD, "body cut at %zu, full header: %s", n, ST(st));
        st = fmt_batch_body_check(&h, copy, n, SEED_A);
        REQUIRE(st == FMT_SHORT, "body check cut at %zu: %s", n, ST(st));
        free(copy);
    }
    free(payload);
}
END_TEST

START_TEST(test_batch_body_check)
{
    uint8_t *payload = payload_new(300, 7);
    struct fmt_record recs[WALK_RECORDS];
    walk_records(recs, 10, payload);
    uint8_t body[8192];
    size_t size = body_build(recs, WALK_RECORDS, 10, SEED_A, body, sizeof body, NULL);
    struct fmt_batch_header h = batch_for_body(body, size, WALK_RECORDS, 10, SEED_A);
    uint8_t *copy = exact_copy(body, size);
    ck_assert_int_eq(fmt_batch_body_check(&h, copy, size, SEED_A), FMT_OK);
    /* The body checksum is seeded: another segment's body does not pass. */
    ck_assert_int_eq(fmt_batch_body_check(&h, copy, size, SEED_B), FMT_BAD_CHECKSUM);
    /* Every byte of the stored body is covered. */
    for (size_t i = 0; i < size; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            copy[i] ^= (uint8_t)(1u << bit);
            enum fmt_status st = fmt_batch_body_check(&h, copy, size, SEED_A);
            REQUIRE(st == FMT_BAD_CHECKSUM, "body byte %zu bit %u: %s", i, bit, ST(st));
            copy[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* A stored size larger than the bytes at hand is short, and nothing is read. */
    struct fmt_batch_header huge = h;
    huge.stored_size = UINT32_MAX;
    ck_assert_int_eq(fmt_batch_body_check(&huge, copy, size, SEED_A), FMT_SHORT);
    huge.stored_size = (uint32_t)size + 1;
    ck_assert_int_eq(fmt_batch_body_check(&huge, copy, size, SEED_A), FMT_SHORT);
    /* An empty stored body (possible only with compression) checks too. */
    struct fmt_batch_header empty = h;
    empty.stored_size = 0;
    empty.body_checksum = stele_checksum(copy, 0, SEED_A);
    ck_assert_int_eq(fmt_batch_body_check(&empty, copy, 0, SEED_A), FMT_OK);
    free(copy);
    free(payload);
}
END_TEST

/* ---- corruption matrix: fixed structures ---------------------------------- */

START_TEST(test_fixed_flip_every_bit)
{
    /* Every bit and every whole byte of the block: inside the checksummed part
     * it is a checksum mismatch; in the zero padding it is a bad field. */
    const struct fixed *f = &FIXED[_i];
    uint8_t *valid = fixed_valid(f);
    uint8_t *buf = exact_copy(valid, f->size);
    ck_assert_int_eq(f->decode(buf, f->size, NULL), FMT_OK);
    for (size_t at = 0; at < f->size; at++) {
        enum fmt_status want = at < f->encoded_size ? FMT_BAD_CHECKSUM : FMT_BAD_FIELD;
        for (unsigned x = 0; x < 10; x++) {
            uint8_t mask = x < 8 ? (uint8_t)(1u << x) : x == 8 ? 0xff : (uint8_t)(valid[at] ^ 0x5c);
            if (mask == 0)
                continue;
            buf[at] = (uint8_t)(valid[at] ^ mask);
            enum fmt_status st = f->decode(buf, f->size, NULL);
            REQUIRE(st == want, "%s: byte %zu ^ 0x%02x decoded as %s, want %s", f->name, at, mask, ST(st),
                    ST(want));
        }
        buf[at] = valid[at];
    }
    free(buf);
    free(valid);
}
END_TEST

START_TEST(test_fixed_truncated)
{
    const struct fixed *f = &FIXED[_i];
    uint8_t *valid = fixed_valid(f);
    for (size_t n = 0; n < f->size; n++) {
        uint8_t *copy = exact_copy(valid, n);
        enum fmt_status st = f->decode(copy, n, NULL);
        REQUIRE(st == FMT_SHORT, "%s cut at %zu: %s", f->name, n, ST(st));
        free(copy);
    }
    /* A NULL pointer with no bytes is simply short. */
    ck_assert_int_eq(f->decode(NULL, 0, NULL), FMT_SHORT);
    free(valid);
}
END_TEST

START_TEST(test_fixed_zero_and_seed)
{
    const struct fixed *f = &FIXED[_i];
    /* Never written: all zero is its own status, not corruption. */
    uint8_t *zero = calloc(1, f->size);
    ck_assert_int_eq(f->decode(zero, f->size, NULL), FMT_ZERO);
    /* All zero except the checksum: not "never written". */
    zero[0] = 1;
    ck_assert_int_ne(f->decode(zero, f->size, NULL), FMT_OK);
    ck_assert_int_ne(f->decode(zero, f->size, NULL), FMT_ZERO);
    free(zero);

    uint8_t *valid = fixed_valid(f);
    uint8_t *buf = exact_copy(valid, f->size);
    /* The fix-up this suite uses is exactly the encoder's. */
    memset(buf, 0, 8);
    fixup(buf, f->encoded_size, f->seed);
    ck_assert(memcmp(buf, valid, f->size) == 0);
    /* Sealed with another seed (another segment, another log): refused. */
    fixup(buf, f->encoded_size, f->seed ^ 1);
    ck_assert_int_eq(f->decode(buf, f->size, NULL), FMT_BAD_CHECKSUM);
    fixup(buf, f->encoded_size, SEED_B);
    ck_assert_int_eq(f->decode(buf, f->size, NULL), FMT_BAD_CHECKSUM);
    /* A checksum over the whole block instead of the encoded part: refused. */
    put_le(buf, stele_checksum(buf + 8, f->size - 8, f->seed), 8);
    if (f->size != f->encoded_size)
        ck_assert_int_eq(f->decode(buf, f->size, NULL), FMT_BAD_CHECKSUM);
    free(buf);
    free(valid);
}
END_TEST

START_TEST(test_fixed_wrong_structure)
{
    /* Each structure's magic keeps it from being read as another one. */
    uint8_t meta[STELE_META_SIZE], header[STELE_SEGMENT_HEADER_SIZE], footer[STELE_FOOTER_SIZE];
    meta_enc(NULL, meta);
    header_enc(NULL, header);
    footer_enc(NULL, footer);
    struct fmt_meta m;
    struct fmt_segment_header h;
    struct fmt_footer f;
    struct fmt_batch_header b;
    uint64_t chain;
    /* Meta and header share the base seed, so only the magic tells them apart. */
    ck_assert_int_eq(fmt_meta_decode(header, sizeof header, &m), FMT_BAD_MAGIC);
    ck_assert_int_eq(fmt_segment_header_decode(meta, sizeof meta, &h), FMT_BAD_MAGIC);
    ck_assert_int_eq(fmt_meta_decode(footer, sizeof footer, &m), FMT_BAD_CHECKSUM);
    ck_assert_int_eq(fmt_segment_header_decode(footer, sizeof footer, &h), FMT_BAD_CHECKSUM);
    ck_assert_int_eq(fmt_footer_decode(meta, sizeof meta, SEED_A, &f), FMT_BAD_CHECKSUM);
    ck_assert_int_eq(fmt_footer_decode(meta, sizeof meta, STELE_SEED_BASE, &f), FMT_BAD_MAGIC);
    ck_assert_int_ne(fmt_batch_header_decode(footer, sizeof footer, SEED_A, &b, &chain), FMT_OK);
}
END_TEST

/* One field change applied before the checksum is fixed up. */
struct edit {
    size_t offset;
    unsigned width; /* 0: unused */
    uint64_t value;
};

struct tamper {
    const char *what;
    enum fmt_status want;
    struct edit e[3];
};

static void tamper_apply(const struct fixed *f, const struct tamper *t, size_t count)
{
    uint8_t *valid = fixed_valid(f);
    for (size_t i = 0; i < count; i++) {
        uint8_t *buf = exact_copy(valid, f->size);
        for (int j = 0; j < 3 && t[i].e[j].width; j++)
            put_le(buf + t[i].e[j].offset, t[i].e[j].value, t[i].e[j].width);
        fixup(buf, f->encoded_size, f->seed);
        uint8_t *re = malloc(f->size);
        enum fmt_status st = f->decode(buf, f->size, re);
        ck_assert_msg(st == t[i].want, "%s: %s: decoded as %s, want %s", f->name, t[i].what, ST(st),
                      ST(t[i].want));
        if (st == FMT_OK)
            ck_assert_msg(memcmp(re, buf, f->size) == 0, "%s: %s: re-encoding differs", f->name, t[i].what);
        free(re);
        free(buf);
    }
    free(valid);
}

/* Sets each byte of [from, to) in turn to a non-zero value, fixing the checksum. */
static void tamper_reserved(const struct fixed *f, size_t from, size_t to, enum fmt_status want)
{
    uint8_t *valid = fixed_valid(f);
    uint8_t *buf = exact_copy(valid, f->size);
    for (size_t at = from; at < to; at++) {
        memcpy(buf, valid, f->size);
        buf[at] = 0x80;
        fixup(buf, f->encoded_size, f->seed);
        enum fmt_status st = f->decode(buf, f->size, NULL);
        REQUIRE(st == want, "%s: reserved byte %zu set: %s, want %s", f->name, at, ST(st), ST(want));
    }
    free(buf);
    free(valid);
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

START_TEST(test_meta_tamper)
{
    const struct tamper t[] = {
        {"control: created_at", FMT_OK, {{40, 8, 12345}}},
        {"control: segment_size at its minimum", FMT_OK, {{48, 8, STELE_SEGMENT_SIZE_MIN}}},
        {"control: segment_size at its maximum", FMT_OK, {{48, 8, STELE_SEGMENT_SIZE_MAX}}},
        {"control: payload_size_max at its maximum", FMT_OK, {{64, 4, STELE_PAYLOAD_SIZE_MAX}}},
        {"control: no compression", FMT_OK, {{68, 1, 0}}},
        {"control: level -128", FMT_OK, {{69, 1, 0x80}}},
        {"control: durability 1", FMT_OK, {{70, 1, 1}}},
        {"control: durability 3", FMT_OK, {{70, 1, 3}}},
        {"magic", FMT_BAD_MAGIC, {{8, 1, 'X'}}},
        {"magic of a segment header", FMT_BAD_MAGIC, {{8, 8, UINT64_C(0x474553454c455453) /* "STELESEG" */}}},
        {"version 0", FMT_BAD_VERSION, {{16, 4, 0}}},
        {"version 2", FMT_BAD_VERSION, {{16, 4, 2}}},
        {"version max", FMT_BAD_VERSION, {{16, 4, UINT32_MAX}}},
        {"block size 0", FMT_BAD_FIELD, {{20, 4, 0}}},
        {"block size 4095", FMT_BAD_FIELD, {{20, 4, 4095}}},
        {"block size 8192", FMT_BAD_FIELD, {{20, 4, 8192}}},
        {"segment_size 0", FMT_BAD_FIELD, {{48, 8, 0}}},
        {"segment_size below the minimum", FMT_BAD_FIELD, {{48, 8, STELE_SEGMENT_SIZE_MIN - STELE_BLOCK_SIZE}}},
        {"segment_size above the maximum", FMT_BAD_FIELD, {{48, 8, STELE_SEGMENT_SIZE_MAX + STELE_BLOCK_SIZE}}},
        {"segment_size not whole blocks", FMT_BAD_FIELD, {{48, 8, STELE_SEGMENT_SIZE_MIN + 1}}},
        {"segment_size max u64", FMT_BAD_FIELD, {{48, 8, UINT64_MAX}}},
        {"payload_size_max above the ceiling", FMT_BAD_FIELD, {{64, 4, STELE_PAYLOAD_SIZE_MAX + 1}}},
        {"payload_size_max max u32", FMT_BAD_FIELD, {{64, 4, UINT32_MAX}}},
        {"compression 2", FMT_BAD_FIELD, {{68, 1, 2}}},
        {"compression 255", FMT_BAD_FIELD, {{68, 1, 255}}},
        {"durability 0", FMT_BAD_FIELD, {{70, 1, 0}}},
        {"durability 4", FMT_BAD_FIELD, {{70, 1, 4}}},
        {"durability 255", FMT_BAD_FIELD, {{70, 1, 255}}},
        {"version and a bad field: version wins", FMT_BAD_VERSION, {{16, 4, 2}, {70, 1, 0}}},
    };
    tamper_apply(&FIXED[FIXED_META], t, COUNT(t));
    tamper_reserved(&FIXED[FIXED_META], 71, STELE_META_ENCODED_SIZE, FMT_BAD_FIELD);
}
END_TEST

START_TEST(test_segment_header_tamper)
{
    const struct tamper t[] = {
        {"control: seq max", FMT_OK, {{40, 8, UINT64_MAX}}},
        {"control: first_lsn max", FMT_OK, {{48, 8, UINT64_MAX}}},
        {"control: seq 1, first_lsn 1, prev_chain 0", FMT_OK, {{40, 8, 1}, {48, 8, 1}, {72, 8, 0}}},
        {"control: segment_size at its minimum", FMT_OK, {{56, 8, STELE_SEGMENT_SIZE_MIN}}},
        {"control: segment_size at its maximum", FMT_OK, {{56, 8, STELE_SEGMENT_SIZE_MAX}}},
        {"control: another log id", FMT_OK, {{24, 8, 1}, {32, 8, 2}}},
        {"magic", FMT_BAD_MAGIC, {{15, 1, 'X'}}},
        {"version 0", FMT_BAD_VERSION, {{16, 4, 0}}},
        {"version 2", FMT_BAD_VERSION, {{16, 4, 2}}},
        {"block size 512", FMT_BAD_FIELD, {{20, 4, 512}}},
        {"block size max", FMT_BAD_FIELD, {{20, 4, UINT32_MAX}}},
        {"seq 0", FMT_BAD_FIELD, {{40, 8, 0}}},
        {"first_lsn 0", FMT_BAD_FIELD, {{48, 8, 0}}},
        {"segment_size 0", FMT_BAD_FIELD, {{56, 8, 0}}},
        {"segment_size below the minimum", FMT_BAD_FIELD, {{56, 8, STELE_SEGMENT_SIZE_MIN - STELE_BLOCK_SIZE}}},
        {"segment_size above the maximum", FMT_BAD_FIELD, {{56, 8, STELE_SEGMENT_SIZE_MAX + STELE_BLOCK_SIZE}}},
        {"segment_size not whole blocks", FMT_BAD_FIELD, {{56, 8, STELE_SEGMENT_SIZE_DEFAULT - 1}}},
        {"segment_size max u64", FMT_BAD_FIELD, {{56, 8, UINT64_MAX}}},
    };
    tamper_apply(&FIXED[FIXED_HEADER], t, COUNT(t));
    tamper_reserved(&FIXED[FIXED_HEADER], 80, STELE_SEGMENT_HEADER_ENCODED_SIZE, FMT_BAD_FIELD);
}
END_TEST

START_TEST(test_footer_tamper)
{
    const struct tamper t[] = {
        {"control: last_lsn, chain, file_hash, sealed_at", FMT_OK, {{16, 8, 7}, {48, 8, 8}, {56, 8, 9}}},
        {"control: as many batches as records", FMT_OK, {{24, 8, 10}, {32, 8, 10}}},
        {"control: data_end right after the header", FMT_OK, {{40, 8, STELE_SEGMENT_HEADER_SIZE}}},
        {"control: data_end at the largest segment", FMT_OK, {{40, 8, STELE_SEGMENT_SIZE_MAX}}},
        {"magic", FMT_BAD_MAGIC, {{8, 8, 0}}},
        {"more batches than records", FMT_BAD_FIELD, {{24, 8, 10}, {32, 8, 11}}},
        {"batches without records", FMT_BAD_FIELD, {{24, 8, 0}, {32, 8, 1}}},
        {"data_end 0", FMT_BAD_FIELD, {{40, 8, 0}}},
        {"data_end inside the header", FMT_BAD_FIELD, {{40, 8, STELE_SEGMENT_HEADER_SIZE - 1}}},
        {"data_end not on a block", FMT_BAD_FIELD, {{40, 8, 2 * STELE_BLOCK_SIZE + 1}}},
        {"data_end past the largest segment", FMT_BAD_FIELD, {{40, 8, STELE_SEGMENT_SIZE_MAX + STELE_BLOCK_SIZE}}},
        {"data_end max u64", FMT_BAD_FIELD, {{40, 8, UINT64_MAX}}},
        {"data_end max aligned", FMT_BAD_FIELD, {{40, 8, UINT64_MAX & ~(uint64_t)(STELE_BLOCK_SIZE - 1)}}},
    };
    tamper_apply(&FIXED[FIXED_FOOTER], t, COUNT(t));
    tamper_reserved(&FIXED[FIXED_FOOTER], 72, STELE_FOOTER_ENCODED_SIZE, FMT_BAD_FIELD);
}
END_TEST

START_TEST(test_batch_header_tamper)
{
    /* The sample: 3 records from LSN 100, durable 99, 600 bytes, not compressed. */
    const struct tamper t[] = {
        {"control: prev_chain and body_checksum", FMT_OK, {{32, 8, 1}, {40, 8, 2}}},
        {"control: the most records", FMT_OK,
         {{12, 4, STELE_BATCH_RECORD_COUNT_MAX}, {48, 4, 64u * STELE_BATCH_RECORD_COUNT_MAX},
          {52, 4, 64u * STELE_BATCH_RECORD_COUNT_MAX}}},
        {"control: the largest body", FMT_OK, {{48, 4, STELE_BATCH_BODY_SIZE_MAX}, {52, 4, STELE_BATCH_BODY_SIZE_MAX}}},
        {"control: smallest raw body", FMT_OK, {{48, 4, 3 * 64}, {52, 4, 3 * 64}}},
        {"control: last LSN one below max", FMT_OK, {{16, 8, UINT64_MAX - 3}}},
        {"control: nothing durable yet", FMT_OK, {{24, 8, 0}}},
        {"control: zstd, smaller stored body, dictionary", FMT_OK, {{56, 1, 1}, {48, 4, 10}, {60, 4, 99}}},
        {"control: zstd, empty stored body", FMT_OK, {{56, 1, 1}, {48, 4, 0}}},
        {"magic", FMT_BAD_MAGIC, {{8, 4, 0x41425454}}},
        {"reserved byte 57", FMT_BAD_FIELD, {{57, 1, 1}}},
        {"reserved byte 58", FMT_BAD_FIELD, {{58, 1, 1}}},
        {"reserved byte 59", FMT_BAD_FIELD, {{59, 1, 0x80}}},
        {"record_count 0", FMT_BAD_FIELD, {{12, 4, 0}}},
        {"record_count above the maximum", FMT_BAD_FIELD,
         {{12, 4, STELE_BATCH_RECORD_COUNT_MAX + 1}, {48, 4, STELE_BATCH_BODY_SIZE_MAX},
          {52, 4, STELE_BATCH_BODY_SIZE_MAX}}},
        {"record_count max u32", FMT_BAD_FIELD, {{12, 4, UINT32_MAX}}},
        {"first_lsn 0", FMT_BAD_FIELD, {{16, 8, 0}, {24, 8, 0}}},
        {"LSNs overflow", FMT_BAD_FIELD, {{16, 8, UINT64_MAX - 2}}},
        {"first_lsn max", FMT_BAD_FIELD, {{16, 8, UINT64_MAX}}},
        {"durable_lsn equals first_lsn", FMT_BAD_FIELD, {{24, 8, 100}}},
        {"durable_lsn above first_lsn", FMT_BAD_FIELD, {{24, 8, 101}}},
        {"durable_lsn max", FMT_BAD_FIELD, {{24, 8, UINT64_MAX}}},
        {"compression 2", FMT_BAD_FIELD, {{56, 1, 2}}},
        {"compression 255", FMT_BAD_FIELD, {{56, 1, 255}}},
        {"raw body too large", FMT_BAD_FIELD,
         {{48, 4, STELE_BATCH_BODY_SIZE_MAX + 1}, {52, 4, STELE_BATCH_BODY_SIZE_MAX + 1}}},
        {"raw body max u32", FMT_BAD_FIELD, {{48, 4, UINT32_MAX}, {52, 4, UINT32_MAX}}},
        {"raw body 0", FMT_BAD_FIELD, {{48, 4, 0}, {52, 4, 0}}},
        {"raw body smaller than the record headers", FMT_BAD_FIELD, {{48, 4, 3 * 64 - 1}, {52, 4, 3 * 64 - 1}}},
        {"zstd, stored body too large", FMT_BAD_FIELD, {{56, 1, 1}, {48, 4, STELE_BATCH_BODY_SIZE_MAX + 1}}},
        {"zstd, stored body max u32", FMT_BAD_FIELD, {{56, 1, 1}, {48, 4, UINT32_MAX}}},
        {"uncompressed, stored differs from raw", FMT_BAD_FIELD, {{48, 4, 599}}},
        {"uncompressed, with a dictionary", FMT_BAD_FIELD, {{60, 4, 1}}},
    };
    tamper_apply(&FIXED[FIXED_BATCH], t, COUNT(t));
}
END_TEST

START_TEST(test_batch_header_seed)
{
    /* A batch header is bound to its segment: copied into another segment
     * (another seed) it fails, at every position it could be read from. */
    struct fmt_batch_header h = batch_sample(NULL), out;
    uint8_t buf[STELE_BATCH_HEADER_SIZE];
    uint64_t a = stele_segment_seed(LOG_ID, 1, 1), b = stele_segment_seed(LOG_ID, 2, 1000);
    uint64_t chain_a = fmt_batch_header_encode(&h, a, buf, sizeof buf), chain;
    ck_assert_int_eq(fmt_batch_header_decode(buf, sizeof buf, a, &out, &chain), FMT_OK);
    ck_assert_uint_eq(chain, chain_a);
    ck_assert_int_eq(fmt_batch_header_decode(buf, sizeof buf, b, &out, &chain), FMT_BAD_CHECKSUM);
    ck_assert_int_eq(fmt_batch_header_decode(buf, sizeof buf, STELE_SEED_BASE, &out, &chain), FMT_BAD_CHECKSUM);
    /* The same header in segment B has another chain value. */
    uint8_t other[STELE_BATCH_HEADER_SIZE];
    ck_assert_uint_ne(fmt_batch_header_encode(&h, b, other, sizeof other), chain_a);
    /* The chain value covers every field: change one and the chain changes. */
    struct fmt_batch_header h2 = h;
    h2.prev_chain ^= 1;
    ck_assert_uint_ne(fmt_batch_header_encode(&h2, a, other, sizeof other), chain_a);
}
END_TEST

/* ---- corruption matrix: records ------------------------------------------- */

#define TAMPER_LSN 10u

/* 64 + 1 + 1 + 1 + 1 + 5 = 73 bytes, padded to 80: seven padding bytes. */
static struct fmt_record tamper_record(void)
{
    static const uint8_t payload[5] = {'h', 'e', 'l', 'l', 'o'};
    struct fmt_record r =
        record_make(FMT_KIND_EVENT, FMT_OUTCOME_NONE, FMT_CONTENT_JSON, 0, 1, 1, 1, 1, payload, 5, 4);
    return r;
}

struct record_tamper {
    const char *what;
    enum fmt_status want;
    struct edit e[3];
};

static void record_tamper_apply(const uint8_t *valid, size_t size, const struct record_tamper *t, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        uint8_t *buf = exact_copy(valid, size);
        for (int j = 0; j < 3 && t[i].e[j].width; j++)
            put_le(buf + t[i].e[j].offset, t[i].e[j].value, t[i].e[j].width);
        ck_assert_uint_le(align8((size_t)get_le(buf + 8, 4)), size);
        record_fixup(buf, TAMPER_LSN, SEED_A);
        struct fmt_record out;
        size_t out_size = 0;
        enum fmt_status st = fmt_record_decode(buf, size, TAMPER_LSN, SEED_A, &out, &out_size);
        ck_assert_msg(st == t[i].want, "record: %s: decoded as %s, want %s", t[i].what, ST(st), ST(t[i].want));
        if (st == FMT_OK) {
            ck_assert_uint_le(out_size, size);
            uint8_t *re = malloc(out_size);
            fmt_record_encode(&out, TAMPER_LSN, SEED_A, re, out_size);
            ck_assert_msg(memcmp(re, buf, out_size) == 0, "record: %s: re-encoding differs", t[i].what);
            free(re);
        }
        free(buf);
    }
}

START_TEST(test_record_tamper)
{
    struct fmt_record r = tamper_record();
    size_t size;
    uint8_t *valid = record_encode_new(&r, TAMPER_LSN, SEED_A, &size);
    ck_assert_uint_eq(size, 80);
    /* The fix-up is exactly the encoder's. */
    uint8_t *again = exact_copy(valid, size);
    memset(again, 0, 8);
    record_fixup(again, TAMPER_LSN, SEED_A);
    ck_assert(memcmp(again, valid, size) == 0);
    free(again);

    const struct record_tamper t[] = {
        {"control: recorded_at and event_time", FMT_OK, {{24, 8, 1}, {32, 8, 2}}},
        {"control: stream_version max", FMT_OK, {{40, 8, UINT64_MAX}}},
        {"control: ref one below the LSN", FMT_OK, {{56, 8, TAMPER_LSN - 1}}},
        {"control: no ref", FMT_OK, {{56, 8, 0}}},
        {"control: backfilled", FMT_OK, {{19, 1, FMT_FLAG_BACKFILLED}}},
        {"control: outcome record, failed", FMT_OK, {{16, 1, FMT_KIND_OUTCOME}, {17, 1, FMT_OUTCOME_FAILED}}},
        {"control: compensation, binary", FMT_OK, {{16, 1, FMT_KIND_COMPENSATION}, {18, 1, FMT_CONTENT_BINARY}}},
        {"control: a byte moved from payload to type", FMT_OK, {{20, 1, 2}, {12, 4, 4}}},
        {"control: stream dropped, no version, key grows", FMT_OK, {{21, 1, 0}, {40, 8, 0}, {22, 1, 2}}},
        {"kind 0", FMT_BAD_FIELD, {{16, 1, 0}}},
        {"kind 5", FMT_BAD_FIELD, {{16, 1, FMT_KIND_COMPENSATION + 1}}},
        {"kind 255", FMT_BAD_FIELD, {{16, 1, 255}}},
        {"outcome record without an outcome", FMT_BAD_FIELD, {{16, 1, FMT_KIND_OUTCOME}}},
        {"event with an outcome", FMT_BAD_FIELD, {{17, 1, FMT_OUTCOME_CONFIRMED}}},
        {"outcome 3", FMT_BAD_FIELD, {{16, 1, FMT_KIND_OUTCOME}, {17, 1, 3}}},
        {"content 0", FMT_BAD_FIELD, {{18, 1, 0}}},
        {"content 4", FMT_BAD_FIELD, {{18, 1, FMT_CONTENT_BINARY + 1}}},
        {"content 255", FMT_BAD_FIELD, {{18, 1, 255}}},
        {"flags 2", FMT_BAD_FIELD, {{19, 1, 2}}},
        {"flags 0x80", FMT_BAD_FIELD, {{19, 1, 0x80}}},
        {"flags 0xff", FMT_BAD_FIELD, {{19, 1, 0xff}}},
        {"ref equals the LSN", FMT_BAD_FIELD, {{56, 8, TAMPER_LSN}}},
        {"ref above the LSN", FMT_BAD_FIELD, {{56, 8, TAMPER_LSN + 1}}},
        {"ref max", FMT_BAD_FIELD, {{56, 8, UINT64_MAX}}},
        {"stream without a version", FMT_BAD_FIELD, {{40, 8, 0}}},
        {"version without a stream", FMT_BAD_FIELD, {{21, 1, 0}, {22, 1, 2}}},
        {"record_size one short of its fields", FMT_BAD_FIELD, {{8, 4, 72}}},
        {"record_size one past its fields", FMT_BAD_FIELD, {{8, 4, 74}}},
        {"record_size at the padded size", FMT_BAD_FIELD, {{8, 4, 80}}},
        {"record_size the header only", FMT_BAD_FIELD, {{8, 4, 64}}},
        {"payload_size one more", FMT_BAD_FIELD, {{12, 4, 6}}},
        {"payload_size one less", FMT_BAD_FIELD, {{12, 4, 4}}},
        {"payload_size max u32", FMT_BAD_FIELD, {{12, 4, UINT32_MAX}}},
        {"payload_size above the maximum", FMT_BAD_FIELD, {{12, 4, STELE_PAYLOAD_SIZE_MAX + 1}}},
        {"type_size 255", FMT_BAD_FIELD, {{20, 1, 255}}},
        {"stream_size 0", FMT_BAD_FIELD, {{21, 1, 0}}},
        {"key_size 2", FMT_BAD_FIELD, {{22, 1, 2}}},
        {"actor_size 255", FMT_BAD_FIELD, {{23, 1, 255}}},
        {"padding byte 73", FMT_BAD_FIELD, {{73, 1, 1}}},
        {"padding byte 79", FMT_BAD_FIELD, {{79, 1, 0x80}}},
        {"padding bytes 73..79", FMT_BAD_FIELD, {{73, 7, 0x01020304050607}}},
    };
    record_tamper_apply(valid, size, t, COUNT(t));
    free(valid);
}
END_TEST

START_TEST(test_record_wrong_lsn_or_seed)
{
    uint8_t *payload = payload_new(50, 8);
    struct fmt_record r = record_make(FMT_KIND_EVENT, FMT_OUTCOME_NONE, FMT_CONTENT_JSON, 0, 4, 4, 4, 4, payload,
                                      50, 0);
    size_t size;
    uint8_t *buf = record_encode_new(&r, 1000, SEED_A, &size);
    struct fmt_record out;
    size_t out_size;
    ck_assert_int_eq(fmt_record_decode(buf, size, 1000, SEED_A, &out, &out_size), FMT_OK);
    /* A record is valid only at its own LSN in its own segment. */
    static const uint64_t lsns[] = {1, 999, 1001, 1000 + (UINT64_C(1) << 32), UINT64_MAX};
    for (size_t i = 0; i < COUNT(lsns); i++)
        ck_assert_int_eq(fmt_record_decode(buf, size, lsns[i], SEED_A, &out, &out_size), FMT_BAD_CHECKSUM);
    ck_assert_int_eq(fmt_record_decode(buf, size, 1000, SEED_B, &out, &out_size), FMT_BAD_CHECKSUM);
    ck_assert_int_eq(fmt_record_decode(buf, size, 1000, SEED_A ^ 1, &out, &out_size), FMT_BAD_CHECKSUM);
    ck_assert_int_eq(fmt_record_decode(buf, size, 1000, STELE_SEED_BASE, &out, &out_size), FMT_BAD_CHECKSUM);
    uint8_t seg_a[STELE_LOG_ID_SIZE] = {0}, seg_b[STELE_LOG_ID_SIZE] = {0};
    seg_b[15] = 1;
    uint64_t seed_a = stele_segment_seed(seg_a, 1, 1), seed_b = stele_segment_seed(seg_b, 1, 1);
    free(buf);
    buf = record_encode_new(&r, 5, seed_a, &size);
    ck_assert_int_eq(fmt_record_decode(buf, size, 5, seed_a, &out, &out_size), FMT_OK);
    ck_assert_int_eq(fmt_record_decode(buf, size, 5, seed_b, &out, &out_size), FMT_BAD_CHECKSUM);
    ck_assert_int_eq(fmt_record_decode(buf, size, 5, stele_segment_seed(seg_a, 2, 1), &out, &out_size),
                     FMT_BAD_CHECKSUM);
    free(buf);
    free(payload);
}
END_TEST

/* Flips every bit and byte of an encoded record, and cuts it at every length. */
static void record_matrix(const struct fmt_record *r, uint64_t lsn, uint64_t seed)
{
    size_t size;
    uint8_t *valid = record_encode_new(r, lsn, seed, &size);
    uint8_t *buf = exact_copy(valid, size);
    struct fmt_record out;
    size_t out_size;
    for (size_t at = 0; at < size; at++) {
        for (unsigned x = 0; x < 9; x++) {
            uint8_t mask = x < 8 ? (uint8_t)(1u << x) : 0xff;
            buf[at] = (uint8_t)(valid[at] ^ mask);
            enum fmt_status st = fmt_record_decode(buf, size, lsn, seed, &out, &out_size);
            /* A damaged record_size may be out of range or point past the
             * buffer; any other damage is a checksum mismatch. */
            if (at >= 8 && at < 12)
                REQUIRE(st != FMT_OK, "record of %zu: size byte %zu ^ 0x%02x decoded", size, at, mask);
            else
                REQUIRE(st == FMT_BAD_CHECKSUM, "record of %zu: byte %zu ^ 0x%02x: %s", size, at, mask, ST(st));
        }
        buf[at] = valid[at];
    }
    for (size_t n = 0; n < size; n++) {
        uint8_t *cut = exact_copy(valid, n);
        enum fmt_status st = fmt_record_decode(cut, n, lsn, seed, &out, &out_size);
        REQUIRE(st == FMT_SHORT, "record of %zu cut at %zu: %s", size, n, ST(st));
        free(cut);
    }
    /* Followed by other bytes, the record still decodes to its own size. */
    uint8_t *longer = malloc(size + 100);
    memcpy(longer, valid, size);
    memset(longer + size, 0xee, 100);
    ck_assert_int_eq(fmt_record_decode(longer, size + 100, lsn, seed, &out, &out_size), FMT_OK);
    ck_assert_uint_eq(out_size, size);
    free(longer);
    free(buf);
    free(valid);
}

START_TEST(test_record_flip_and_truncate)
{
    uint8_t *payload = payload_new(300, 9);
    static const uint32_t payload_sizes[] = {0, 1, 7, 8, 9, 300};
    for (size_t i = 0; i < COUNT(payload_sizes); i++) {
        struct fmt_record r = record_make(FMT_KIND_OUTCOME, FMT_OUTCOME_CONFIRMED, FMT_CONTENT_TEXT, 0, 3, 5, 0,
                                          2, payload, payload_sizes[i], 1);
        record_matrix(&r, 2 + i, SEED_A);
    }
    /* Every variable field at its maximum. */
    struct fmt_record big = record_make(FMT_KIND_EVENT, FMT_OUTCOME_NONE, FMT_CONTENT_BINARY, FMT_FLAG_BACKFILLED,
                                        255, 255, 255, 255, payload, 9, 0);
    record_matrix(&big, 1, SEED_B);
    /* The smallest record: a header and nothing else. */
    struct fmt_record empty = record_make(FMT_KIND_EVENT, FMT_OUTCOME_NONE, FMT_CONTENT_JSON, 0, 0, 0, 0, 0, NULL,
                                          0, 0);
    record_matrix(&empty, 1, SEED_B);
    free(payload);
}
END_TEST

START_TEST(test_record_bad_lengths)
{
    struct fmt_record r = tamper_record();
    size_t size;
    uint8_t *valid = record_encode_new(&r, TAMPER_LSN, SEED_A, &size);
    struct fmt_record out;
    size_t out_size;
    /* record_size is read before the checksum can be; its range is checked first. */
    static const uint32_t out_of_range[] = {0, 1, 8, 63, STELE_RECORD_SIZE_MAX + 1, UINT32_MAX - 7, UINT32_MAX};
    for (size_t i = 0; i < COUNT(out_of_range); i++) {
        uint8_t *buf = exact_copy(valid, size);
        put_le(buf + 8, out_of_range[i], 4);
        ck_assert_msg(fmt_record_decode(buf, size, TAMPER_LSN, SEED_A, &out, &out_size) == FMT_BAD_FIELD,
                      "record_size %u", out_of_range[i]);
        free(buf);
    }
    /* In range but past the buffer: short, and nothing past the buffer is read. */
    static const uint32_t past_end[] = {81, 88, 4096, STELE_RECORD_SIZE_MAX};
    for (size_t i = 0; i < COUNT(past_end); i++) {
        uint8_t *buf = exact_copy(valid, size);
        put_le(buf + 8, past_end[i], 4);
        ck_assert_msg(fmt_record_decode(buf, size, TAMPER_LSN, SEED_A, &out, &out_size) == FMT_SHORT,
                      "record_size %u", past_end[i]);
        free(buf);
    }
    /* Variable lengths that disagree with record_size, without a checksum fix-up. */
    uint8_t *buf = exact_copy(valid, size);
    put_le(buf + 12, UINT32_MAX, 4);
    ck_assert_int_eq(fmt_record_decode(buf, size, TAMPER_LSN, SEED_A, &out, &out_size), FMT_BAD_CHECKSUM);
    memcpy(buf, valid, size);
    buf[20] = 255;
    ck_assert_int_eq(fmt_record_decode(buf, size, TAMPER_LSN, SEED_A, &out, &out_size), FMT_BAD_CHECKSUM);
    free(buf);
    /* A buffer of exactly a header whose record_size claims just that, all other
     * fields zero: well-formed lengths, but the checksum is wrong. */
    uint8_t header[STELE_RECORD_HEADER_SIZE] = {0};
    put_le(header + 8, STELE_RECORD_HEADER_SIZE, 4);
    buf = exact_copy(header, sizeof header);
    ck_assert_int_eq(fmt_record_decode(buf, sizeof header, TAMPER_LSN, SEED_A, &out, &out_size), FMT_BAD_CHECKSUM);
    /* And with the checksum fixed up, the zero kind is refused. */
    record_fixup(buf, TAMPER_LSN, SEED_A);
    ck_assert_int_eq(fmt_record_decode(buf, sizeof header, TAMPER_LSN, SEED_A, &out, &out_size), FMT_BAD_FIELD);
    free(buf);
    /* All zero (a never-written tail): record_size 0 is out of range. */
    uint8_t zeros[128] = {0};
    ck_assert_int_eq(fmt_record_decode(zeros, sizeof zeros, 1, SEED_A, &out, &out_size), FMT_BAD_FIELD);
    free(valid);
}
END_TEST

START_TEST(test_record_oversize_payload)
{
    /* The largest payload decodes; one byte more, with every length and the
     * checksum consistent, is refused as a field out of range. */
    size_t cap = align8(STELE_RECORD_HEADER_SIZE + (size_t)STELE_PAYLOAD_SIZE_MAX + 1);
    uint8_t *buf = calloc(1, cap);
    ck_assert_ptr_nonnull(buf);
    struct fmt_record out;
    size_t out_size;
    for (uint32_t extra = 0; extra < 2; extra++) {
        uint32_t payload_size = STELE_PAYLOAD_SIZE_MAX + extra;
        size_t record_size = STELE_RECORD_HEADER_SIZE + (size_t)payload_size;
        memset(buf, 0, cap);
        put_le(buf + 8, record_size, 4);
        put_le(buf + 12, payload_size, 4);
        buf[16] = FMT_KIND_EVENT;
        buf[18] = FMT_CONTENT_BINARY;
        ck_assert_uint_le(record_size, STELE_RECORD_SIZE_MAX);
        record_fixup(buf, 1, SEED_A);
        enum fmt_status st = fmt_record_decode(buf, align8(record_size), 1, SEED_A, &out, &out_size);
        ck_assert_int_eq(st, extra ? FMT_BAD_FIELD : FMT_OK);
        if (st == FMT_OK)
            ck_assert_uint_eq(out.payload_size, STELE_PAYLOAD_SIZE_MAX);
    }
    free(buf);
}
END_TEST

/* ---- segment file names ---------------------------------------------------- */

static int name_parse(const char *name, uint64_t *out)
{
    /* Parse from an exact heap copy so a read past the terminator is caught. */
    char *copy = strdup(name);
    ck_assert_ptr_nonnull(copy);
    int ok = fmt_segment_name_parse(copy, out);
    free(copy);
    return ok;
}

START_TEST(test_segment_name)
{
    char name[STELE_SEGMENT_NAME_SIZE + 8];
    memset(name, 'Z', sizeof name);
    ck_assert_uint_eq(fmt_segment_name(1, name, STELE_SEGMENT_NAME_SIZE + 1), STELE_SEGMENT_NAME_SIZE);
    ck_assert_str_eq(name, "00000000000000000001.seg");
    ck_assert_uint_eq(strlen(name), 24); /* 20 digits and ".seg" */
    for (size_t i = 25; i < sizeof name; i++)
        ck_assert_int_eq(name[i], 'Z'); /* nothing written past the terminator */
    fmt_segment_name(UINT64_MAX, name, sizeof name);
    ck_assert_str_eq(name, "18446744073709551615.seg");
    fmt_segment_name(1234567890, name, sizeof name);
    ck_assert_str_eq(name, "00000000001234567890.seg");

    /* Names sort like their LSNs, and round-trip. */
    static const uint64_t lsns[] = {1, 9, 10, 99, 100, 4096, 1234567890123, UINT64_MAX / 10, UINT64_MAX - 1,
                                    UINT64_MAX};
    char prev[STELE_SEGMENT_NAME_SIZE + 1] = "";
    for (size_t i = 0; i < COUNT(lsns); i++) {
        fmt_segment_name(lsns[i], name, sizeof name);
        ck_assert_uint_eq(strlen(name), 24);
        ck_assert_int_lt(strcmp(prev, name), 0);
        memcpy(prev, name, sizeof prev);
        uint64_t back = 0;
        ck_assert_int_eq(name_parse(name, &back), 1);
        ck_assert_uint_eq(back, lsns[i]);
    }
}
END_TEST

START_TEST(test_segment_name_rejects)
{
    static const char *const bad[] = {
        "",
        "1.seg",
        ".seg",
        "0000000000000000001.seg",   /* 19 digits */
        "000000000000000000001.seg", /* 21 digits */
        "00000000000000000000.seg",  /* LSN 0 does not exist */
        "18446744073709551616.seg",  /* UINT64_MAX + 1 */
        "20000000000000000000.seg",
        "99999999999999999999.seg",
        "0000000000000000000a.seg",
        "a0000000000000000001.seg",
        "0000000000 000000001.seg",
        " 0000000000000000001.seg",
        "+0000000000000000001.seg",
        "-0000000000000000001.seg",
        "0x000000000000000001.seg",
        "00000000000000000001",
        "00000000000000000001.",
        "00000000000000000001.se",
        "00000000000000000001.seq",
        "00000000000000000001.SEG",
        "00000000000000000001.seg ",
        "00000000000000000001.seg.tmp",
        "00000000000000000001.segx",
        "00000000000000000001_seg",
        "00000000000000000001.idx",
        "meta",
    };
    for (size_t i = 0; i < COUNT(bad); i++) {
        uint64_t out = 0xdeadbeef;
        ck_assert_msg(name_parse(bad[i], &out) == 0, "accepted \"%s\"", bad[i]);
        ck_assert_msg(out == 0xdeadbeef, "\"%s\": output written on failure", bad[i]);
    }
    uint64_t out = 0;
    ck_assert_int_eq(name_parse("18446744073709551615.seg", &out), 1);
    ck_assert_uint_eq(out, UINT64_MAX);
    ck_assert_int_eq(name_parse("00000000000000000001.seg", &out), 1);
    ck_assert_uint_eq(out, 1);
}
END_TEST

/* ---- fingerprint ------------------------------------------------------------ */

static struct fmt_record fp_base(uint8_t *type, uint8_t *stream, uint8_t *payload)
{
    memcpy(type, "order.placed", 12);
    memcpy(stream, "order-42", 8);
    memcpy(payload, "{\"sku\":\"A1\",\"qty\":2}", 20);
    struct fmt_record r;
    memset(&r, 0, sizeof r);
    r.kind = FMT_KIND_EVENT;
    r.outcome = FMT_OUTCOME_NONE;
    r.content = FMT_CONTENT_JSON;
    r.type = type;
    r.type_size = 12;
    r.stream = stream;
    r.stream_size = 8;
    r.stream_version = 3;
    r.key = (const uint8_t *)"req-1";
    r.key_size = 5;
    r.actor = (const uint8_t *)"alice";
    r.actor_size = 5;
    r.payload = payload;
    r.payload_size = 20;
    r.ref = 0;
    r.recorded_at_ns = 1;
    r.event_time_ns = 2;
    return r;
}

START_TEST(test_fingerprint)
{
    uint8_t type[64], stream[64], payload[64], type2[64], stream2[64], payload2[64];
    struct fmt_record base = fp_base(type, stream, payload);
    uint64_t fp = fmt_fingerprint(&base);

    /* Identical requests in other buffers: the same fingerprint. */
    struct fmt_record same = fp_base(type2, stream2, payload2);
    ck_assert_uint_eq(fmt_fingerprint(&same), fp);
    ck_assert_uint_eq(fmt_fingerprint(&base), fp);

    /* Fields outside the identity do not change it. */
    struct fmt_record r = same;
    r.recorded_at_ns = 999;
    r.event_time_ns = 998;
    r.stream_version = 77;
    r.flags = FMT_FLAG_BACKFILLED;
    r.content = FMT_CONTENT_TEXT;
    r.key = (const uint8_t *)"another-key";
    r.key_size = 11;
    r.actor = NULL;
    r.actor_size = 0;
    r.fingerprint = 12345;
    ck_assert_uint_eq(fmt_fingerprint(&r), fp);

    /* Each identity field does. */
    r = same;
    r.kind = FMT_KIND_INTENT;
    ck_assert_uint_ne(fmt_fingerprint(&r), fp);
    r.kind = FMT_KIND_COMPENSATION;
    ck_assert_uint_ne(fmt_fingerprint(&r), fp);
    r.kind = FMT_KIND_OUTCOME;
    r.outcome = FMT_OUTCOME_CONFIRMED;
    uint64_t confirmed = fmt_fingerprint(&r);
    r.outcome = FMT_OUTCOME_FAILED;
    ck_assert_uint_ne(fmt_fingerprint(&r), confirmed);
    ck_assert_uint_ne(confirmed, fp);
    r = same;
    type2[11] = 'D';
    ck_assert_uint_ne(fmt_fingerprint(&r), fp);
    type2[11] = 'd';
    r.type_size = 11;
    ck_assert_uint_ne(fmt_fingerprint(&r), fp);
    r = same;
    stream2[0] = 'O';
    ck_assert_uint_ne(fmt_fingerprint(&r), fp);
    stream2[0] = 'o';
    r.stream_size = 0;
    r.stream_version = 0;
    ck_assert_uint_ne(fmt_fingerprint(&r), fp);
    r = same;
    r.ref = 1;
    ck_assert_uint_ne(fmt_fingerprint(&r), fp);
    r.ref = UINT64_C(1) << 63;
    ck_assert_uint_ne(fmt_fingerprint(&r), fp);
    r = same;
    payload2[19] ^= 1;
    ck_assert_uint_ne(fmt_fingerprint(&r), fp);
    payload2[19] ^= 1;
    r.payload_size = 19;
    ck_assert_uint_ne(fmt_fingerprint(&r), fp);
    r.payload_size = 0;
    ck_assert_uint_ne(fmt_fingerprint(&r), fp);
    r = same;
    ck_assert_uint_eq(fmt_fingerprint(&r), fp);
}
END_TEST

START_TEST(test_fingerprint_boundaries)
{
    /* Bytes moved across a field boundary make a different request. */
    const uint8_t *ab = (const uint8_t *)"abc";
    struct fmt_record x, y;
    memset(&x, 0, sizeof x);
    x.kind = FMT_KIND_EVENT;
    y = x;
    x.type = ab, x.type_size = 2, x.stream = ab + 2, x.stream_size = 1;
    y.type = ab, y.type_size = 1, y.stream = ab + 1, y.stream_size = 2;
    ck_assert_uint_ne(fmt_fingerprint(&x), fmt_fingerprint(&y));
    x.type_size = 0, x.stream = ab, x.stream_size = 2;
    y.type = ab, y.type_size = 2, y.stream_size = 0;
    ck_assert_uint_ne(fmt_fingerprint(&x), fmt_fingerprint(&y));
    memset(&x, 0, sizeof x);
    x.kind = FMT_KIND_EVENT;
    y = x;
    x.stream = ab, x.stream_size = 1;
    y.payload = ab, y.payload_size = 1;
    ck_assert_uint_ne(fmt_fingerprint(&x), fmt_fingerprint(&y));
    x.stream_size = 0, x.type = ab, x.type_size = 1;
    ck_assert_uint_ne(fmt_fingerprint(&x), fmt_fingerprint(&y));
    /* The ref is a number, not bytes that could slide into the type. */
    memset(&x, 0, sizeof x);
    x.kind = FMT_KIND_EVENT;
    y = x;
    x.ref = 1;
    y.type = (const uint8_t *)"\x01", y.type_size = 1;
    ck_assert_uint_ne(fmt_fingerprint(&x), fmt_fingerprint(&y));
    /* Empty everything is still a well-defined fingerprint. */
    memset(&x, 0, sizeof x);
    ck_assert_uint_eq(fmt_fingerprint(&x), fmt_fingerprint(&x));
}
END_TEST

/* ---- fuzz -------------------------------------------------------------------- */

/* Sized so the whole suite stays well under 10 s under ASan. */
#define FUZZ_FIXED_ITERATIONS 60000
#define FUZZ_RECORD_ITERATIONS 150000
#define FUZZ_WALK_ITERATIONS 40000
#define FUZZ_NAME_ITERATIONS 150000

START_TEST(test_fuzz_fixed)
{
    const struct fixed *f = &FIXED[_i];
    uint64_t rng = rng_init((uint64_t)_i + 1);
    uint8_t *valid = malloc(f->size), *buf = malloc(f->size + 64), *re = malloc(f->size);
    int decoded_ok = 0;
    for (int iter = 0; iter < FUZZ_FIXED_ITERATIONS; iter++) {
        f->encode(&rng, valid);
        size_t n = f->size;
        int changed = 0; /* 1 when buf is known to differ from a valid encoding */
        unsigned mode = (unsigned)(tu_rand(&rng) % 5);
        if (mode == 0) { /* random bytes of a random length */
            n = (size_t)(tu_rand(&rng) % (f->size + 64));
            fill_random(&rng, buf, n);
        } else if (mode == 1) { /* a few bytes overwritten anywhere */
            memcpy(buf, valid, n);
            for (unsigned k = 1 + (unsigned)(tu_rand(&rng) % 4); k > 0; k--) {
                size_t at = (size_t)(tu_rand(&rng) % (tu_rand(&rng) % 2 ? f->encoded_size : n));
                buf[at] = (uint8_t)tu_rand(&rng);
            }
            changed = memcmp(buf, valid, n) != 0;
        } else if (mode == 2) { /* truncated */
            n = (size_t)(tu_rand(&rng) % f->size);
            memcpy(buf, valid, n);
        } else { /* fields overwritten, checksum fixed up: reaches the field checks */
            memcpy(buf, valid, n);
            for (unsigned k = 1 + (unsigned)(tu_rand(&rng) % 3); k > 0; k--) {
                size_t at = 8 + (size_t)(tu_rand(&rng) % (f->encoded_size - 8));
                unsigned width = 1u << (tu_rand(&rng) % 4);
                if (at + width > f->encoded_size)
                    width = (unsigned)(f->encoded_size - at);
                uint64_t v = tu_rand(&rng);
                put_le(buf + at, tu_rand(&rng) % 2 ? v : v % 4, width);
            }
            fixup(buf, f->encoded_size, f->seed);
        }
        uint8_t *copy = exact_copy(buf, n);
        enum fmt_status st = f->decode(copy, n, re);
        REQUIRE(st >= FMT_OK && st <= FMT_BAD_FIELD, "%s: unknown status %d (seed %llu, iteration %d)", f->name,
                (int)st, (unsigned long long)g_seed, iter);
        if (mode == 2)
            REQUIRE(st == FMT_SHORT, "%s: truncated to %zu: %s (seed %llu, iteration %d)", f->name, n, ST(st),
                    (unsigned long long)g_seed, iter);
        if (changed)
            REQUIRE(st != FMT_OK, "%s: damaged bytes decoded (seed %llu, iteration %d)", f->name,
                    (unsigned long long)g_seed, iter);
        if (st == FMT_OK) {
            decoded_ok++;
            REQUIRE(n >= f->size && memcmp(re, copy, f->size) == 0,
                    "%s: decoded but does not re-encode to the same bytes (seed %llu, iteration %d)", f->name,
                    (unsigned long long)g_seed, iter);
        }
        free(copy);
    }
    /* The fix-up mode must reach the OK path often enough to mean something. */
    ck_assert_int_gt(decoded_ok, FUZZ_FIXED_ITERATIONS / 100);
    free(re);
    free(buf);
    free(valid);
}
END_TEST

/* Decodes n bytes as a record; if it decodes, checks bounds and canonical form. */
static enum fmt_status fuzz_record_decode(const uint8_t *bytes, size_t n, uint64_t lsn, uint64_t seed, int iter)
{
    uint8_t *copy = exact_copy(bytes, n);
    struct fmt_record out;
    size_t out_size = 0;
    enum fmt_status st = fmt_record_decode(copy, n, lsn, seed, &out, &out_size);
    REQUIRE(st >= FMT_OK && st <= FMT_BAD_FIELD, "record: unknown status %d (seed %llu, iteration %d)", (int)st,
            (unsigned long long)g_seed, iter);
    if (st == FMT_OK) {
        REQUIRE(out_size <= n && out_size % 8 == 0 && out_size >= STELE_RECORD_HEADER_SIZE,
                "record: decoded size %zu of %zu (seed %llu, iteration %d)", out_size, n,
                (unsigned long long)g_seed, iter);
        REQUIRE(out.type == copy + 64 && out.payload + out.payload_size <= copy + out_size,
                "record: fields outside the record (seed %llu, iteration %d)", (unsigned long long)g_seed, iter);
        REQUIRE(fmt_record_check(&out, lsn) == FMT_OK, "record: decoded an invalid record (seed %llu, iteration %d)",
                (unsigned long long)g_seed, iter);
        uint8_t *re = malloc(out_size);
        fmt_record_encode(&out, lsn, seed, re, out_size);
        REQUIRE(memcmp(re, copy, out_size) == 0, "record: not canonical (seed %llu, iteration %d)",
                (unsigned long long)g_seed, iter);
        free(re);
    }
    free(copy);
    return st;
}

START_TEST(test_fuzz_record)
{
    uint64_t rng = rng_init(101);
    size_t cap = 8192;
    uint8_t *buf = malloc(cap), *valid = malloc(cap);
    int decoded_ok = 0;
    for (int iter = 0; iter < FUZZ_RECORD_ITERATIONS; iter++) {
        uint64_t lsn = 1 + tu_rand(&rng) % 1000000;
        uint64_t seed = tu_rand(&rng);
        struct fmt_record r = record_random(&rng, lsn);
        size_t size = fmt_record_size(&r);
        ck_assert_uint_le(size, cap);
        fmt_record_encode(&r, lsn, seed, valid, cap);
        size_t n = size;
        unsigned mode = (unsigned)(tu_rand(&rng) % 5);
        int changed = 0;
        if (mode == 0) { /* random bytes, sometimes with a plausible size and checksum */
            n = (size_t)(tu_rand(&rng) % 600);
            fill_random(&rng, buf, n);
            if (n >= 64 && tu_rand(&rng) % 2) {
                put_le(buf + 8, 64 + tu_rand(&rng) % (n - 63), 4);
                if (align8((size_t)get_le(buf + 8, 4)) <= n)
                    record_fixup(buf, lsn, seed);
            }
        } else if (mode == 1) { /* bytes overwritten */
            memcpy(buf, valid, n);
            for (unsigned k = 1 + (unsigned)(tu_rand(&rng) % 4); k > 0; k--)
                buf[tu_rand(&rng) % n] = (uint8_t)tu_rand(&rng);
            changed = memcmp(buf, valid, n) != 0;
        } else if (mode == 2) { /* truncated */
            n = (size_t)(tu_rand(&rng) % size);
            memcpy(buf, valid, n);
        } else { /* header fields or body bytes overwritten, checksum fixed up */
            memcpy(buf, valid, n);
            for (unsigned k = 1 + (unsigned)(tu_rand(&rng) % 3); k > 0; k--) {
                size_t at = 8 + (size_t)(tu_rand(&rng) % (tu_rand(&rng) % 2 ? 56 : n - 8));
                unsigned width = 1u << (tu_rand(&rng) % 4);
                if (at + width > n)
                    width = (unsigned)(n - at);
                uint64_t v = tu_rand(&rng);
                put_le(buf + at, tu_rand(&rng) % 2 ? v : v % 4, width);
            }
            /* Fix up only when the (possibly edited) record_size stays in the buffer. */
            size_t record_size = (size_t)get_le(buf + 8, 4);
            if (record_size >= 8 && align8(record_size) <= n)
                record_fixup(buf, lsn, seed);
        }
        enum fmt_status st = fuzz_record_decode(buf, n, lsn, seed, iter);
        if (mode == 2)
            REQUIRE(st == FMT_SHORT, "record truncated to %zu: %s (seed %llu, iteration %d)", n, ST(st),
                    (unsigned long long)g_seed, iter);
        if (changed)
            REQUIRE(st != FMT_OK, "record: damaged bytes decoded (seed %llu, iteration %d)",
                    (unsigned long long)g_seed, iter);
        decoded_ok += st == FMT_OK;
        /* The undamaged record never decodes at a neighbouring LSN. */
        if (iter % 16 == 0)
            REQUIRE(fuzz_record_decode(valid, size, lsn + 1, seed, iter) == FMT_BAD_CHECKSUM,
                    "record: decoded at the next LSN (seed %llu, iteration %d)", (unsigned long long)g_seed, iter);
    }
    ck_assert_int_gt(decoded_ok, FUZZ_RECORD_ITERATIONS / 100);
    free(valid);
    free(buf);
}
END_TEST

START_TEST(test_fuzz_batch_walk)
{
    uint64_t rng = rng_init(202);
    size_t cap = 64 * 1024;
    uint8_t *body = malloc(cap);
    for (int iter = 0; iter < FUZZ_WALK_ITERATIONS; iter++) {
        uint64_t first = 1 + tu_rand(&rng) % 1000;
        uint64_t seed = tu_rand(&rng);
        size_t count = 1 + (size_t)(tu_rand(&rng) % 6);
        size_t size = 0;
        for (size_t i = 0; i < count; i++) {
            struct fmt_record r = record_random(&rng, first + i);
            size += fmt_record_encode(&r, first + i, seed, body + size, cap - size);
        }
        struct fmt_batch_header h = batch_for_body(body, size, (uint32_t)count, first, seed);
        size_t n = size;
        unsigned mode = (unsigned)(tu_rand(&rng) % 4);
        uint8_t *raw;
        if (mode == 0) { /* random bytes */
            n = (size_t)(tu_rand(&rng) % 2048);
            raw = malloc(n ? n : 1);
            fill_random(&rng, raw, n);
            h.raw_size = (uint32_t)n;
        } else if (mode == 1) { /* bytes overwritten */
            raw = exact_copy(body, n);
            for (unsigned k = 1 + (unsigned)(tu_rand(&rng) % 4); k > 0; k--)
                raw[tu_rand(&rng) % n] = (uint8_t)tu_rand(&rng);
        } else if (mode == 2) { /* cut, the header agreeing */
            n = (size_t)(tu_rand(&rng) % size);
            raw = exact_copy(body, n);
            h.raw_size = (uint32_t)n;
        } else { /* a wrong record count */
            raw = exact_copy(body, n);
            h.record_count = (uint32_t)(1 + tu_rand(&rng) % (tu_rand(&rng) % 2 ? 12 : STELE_BATCH_RECORD_COUNT_MAX));
        }
        struct walk w = {.raw = raw, .raw_size = n};
        uint64_t bad = 0;
        enum fmt_status st = fmt_batch_records(&h, raw, n, seed, walk_fn, &w, &bad);
        int same = n == size && memcmp(raw, body, n) == 0 && h.record_count == count;
        REQUIRE((st == FMT_OK) == same, "walk mode %u: %s (seed %llu, iteration %d)", mode, ST(st),
                (unsigned long long)g_seed, iter);
        if (st != FMT_OK)
            REQUIRE(bad >= first && bad < first + h.record_count, "walk: bad lsn %llu (seed %llu, iteration %d)",
                    (unsigned long long)bad, (unsigned long long)g_seed, iter);
        else
            REQUIRE(w.count == count, "walk: %zu records of %zu", w.count, count);
        free(raw);
    }
    free(body);
}
END_TEST

START_TEST(test_fuzz_segment_name)
{
    static const char alphabet[] = "0000000000111112345678899.segx ";
    uint64_t rng = rng_init(303);
    char s[40], back[STELE_SEGMENT_NAME_SIZE + 1];
    int accepted = 0;
    for (int iter = 0; iter < FUZZ_NAME_ITERATIONS; iter++) {
        size_t len;
        if (tu_rand(&rng) % 2) { /* a real name with one character changed, or none */
            fmt_segment_name(tu_rand(&rng) >> (tu_rand(&rng) % 64), s, sizeof s);
            len = STELE_SEGMENT_NAME_SIZE - 1;
            if (tu_rand(&rng) % 2)
                s[tu_rand(&rng) % len] = alphabet[tu_rand(&rng) % (sizeof alphabet - 1)];
        } else {
            len = (size_t)(tu_rand(&rng) % 30);
            for (size_t i = 0; i < len; i++)
                s[i] = alphabet[tu_rand(&rng) % (sizeof alphabet - 1)];
            s[len] = 0;
        }
        uint64_t lsn = 0;
        if (name_parse(s, &lsn)) {
            /* Anything accepted is exactly the name of the LSN it parsed to. */
            accepted++;
            fmt_segment_name(lsn, back, sizeof back);
            REQUIRE(lsn != 0 && strcmp(back, s) == 0, "accepted \"%s\" as %llu (seed %llu)", s,
                    (unsigned long long)lsn, (unsigned long long)g_seed);
        }
    }
    ck_assert_int_gt(accepted, FUZZ_NAME_ITERATIONS / 10);
}
END_TEST

/* ---- golden ----------------------------------------------------------------- */

/*
 * The golden image: the first two blocks of the first segment of a log.
 * Block 0 is the segment header; block 1 is the first batch frame: its header,
 * two records (an intent at LSN 1 and its outcome at LSN 2), zero padding.
 * Every input is a literal here and in the decode test below, so neither
 * depends on defaults that may change.
 */
#define GOLDEN_NAME "v1_segment_head.hex"
#define GOLDEN_SIZE (2u * STELE_BLOCK_SIZE)
#define GOLDEN_CREATED_AT UINT64_C(1700000000000000000)
#define GOLDEN_SEGMENT_SIZE UINT64_C(67108864)

static const char GOLDEN_R1_TYPE[] = "order.place";
static const char GOLDEN_R1_STREAM[] = "order-42";
static const char GOLDEN_R1_KEY[] = "req-1";
static const char GOLDEN_R1_ACTOR[] = "alice";
static const char GOLDEN_R1_PAYLOAD[] = "{\"sku\":\"A1\",\"qty\":2}";
static const char GOLDEN_R2_TYPE[] = "order.placed";
static const char GOLDEN_R2_PAYLOAD[] = "ok";

#define STR_FIELD(r, field, s) ((r).field = (const uint8_t *)(s), (r).field##_size = (uint8_t)(sizeof(s) - 1))

static void golden_records(struct fmt_record r[2])
{
    memset(r, 0, 2 * sizeof r[0]);
    r[0].kind = FMT_KIND_INTENT;
    r[0].outcome = FMT_OUTCOME_NONE;
    r[0].content = FMT_CONTENT_JSON;
    r[0].flags = 0;
    STR_FIELD(r[0], type, GOLDEN_R1_TYPE);
    STR_FIELD(r[0], stream, GOLDEN_R1_STREAM);
    STR_FIELD(r[0], key, GOLDEN_R1_KEY);
    STR_FIELD(r[0], actor, GOLDEN_R1_ACTOR);
    r[0].payload = (const uint8_t *)GOLDEN_R1_PAYLOAD;
    r[0].payload_size = sizeof GOLDEN_R1_PAYLOAD - 1;
    r[0].recorded_at_ns = GOLDEN_CREATED_AT + 1;
    r[0].event_time_ns = GOLDEN_CREATED_AT - 1000000;
    r[0].stream_version = 1;
    r[0].ref = 0;
    r[0].fingerprint = fmt_fingerprint(&r[0]);

    r[1].kind = FMT_KIND_OUTCOME;
    r[1].outcome = FMT_OUTCOME_CONFIRMED;
    r[1].content = FMT_CONTENT_TEXT;
    r[1].flags = FMT_FLAG_BACKFILLED;
    STR_FIELD(r[1], type, GOLDEN_R2_TYPE);
    r[1].payload = (const uint8_t *)GOLDEN_R2_PAYLOAD;
    r[1].payload_size = sizeof GOLDEN_R2_PAYLOAD - 1;
    r[1].recorded_at_ns = GOLDEN_CREATED_AT + 2;
    r[1].event_time_ns = GOLDEN_CREATED_AT + 2;
    r[1].stream_version = 0;
    r[1].ref = 1;
    r[1].fingerprint = fmt_fingerprint(&r[1]);
}

static void golden_build(uint8_t out[GOLDEN_SIZE])
{
    memset(out, 0, GOLDEN_SIZE);
    struct fmt_segment_header sh;
    memset(&sh, 0, sizeof sh);
    memcpy(sh.log_id, LOG_ID, sizeof sh.log_id);
    sh.seq = 1;
    sh.first_lsn = 1;
    sh.segment_size = GOLDEN_SEGMENT_SIZE;
    sh.created_at_ns = GOLDEN_CREATED_AT;
    sh.prev_chain = 0;
    fmt_segment_header_encode(&sh, out, STELE_SEGMENT_HEADER_SIZE);

    uint64_t seed = stele_segment_seed(LOG_ID, 1, 1);
    struct fmt_record recs[2];
    golden_records(recs);
    uint8_t *frame = out + STELE_SEGMENT_HEADER_SIZE;
    uint8_t *body = frame + STELE_BATCH_HEADER_SIZE;
    size_t cap = STELE_BLOCK_SIZE - STELE_BATCH_HEADER_SIZE;
    size_t size = fmt_record_encode(&recs[0], 1, seed, body, cap);
    size += fmt_record_encode(&recs[1], 2, seed, body + size, cap - size);

    struct fmt_batch_header bh;
    memset(&bh, 0, sizeof bh);
    bh.record_count = 2;
    bh.first_lsn = 1;
    bh.durable_lsn = 0;
    bh.prev_chain = 0;
    bh.body_checksum = stele_checksum(body, size, seed);
    bh.stored_size = (uint32_t)size;
    bh.raw_size = (uint32_t)size;
    bh.compression = FMT_COMPRESSION_NONE;
    bh.dict_id = 0;
    fmt_batch_header_encode(&bh, seed, frame, STELE_BATCH_HEADER_SIZE);
}

static char *golden_path(void)
{
    const char *dir = getenv("STELE_GOLDEN_DIR");
    if (dir && *dir)
        return tu_path(dir, GOLDEN_NAME);
    /* Next to this source file: tests/golden/. */
    const char *file = __FILE__;
    const char *slash = strrchr(file, '/');
    size_t len = slash ? (size_t)(slash - file) : 1;
    char *src_dir = malloc(len + 1);
    ck_assert_ptr_nonnull(src_dir);
    memcpy(src_dir, slash ? file : ".", len);
    src_dir[len] = 0;
    char *golden_dir = tu_path(src_dir, "golden");
    char *path = tu_path(golden_dir, GOLDEN_NAME);
    free(golden_dir);
    free(src_dir);
    return path;
}

/*
 * The hex format: '#' lines are comments; "size <decimal>" comes first; then
 * "<hex offset>: <up to 16 space-separated hex bytes>" in increasing order,
 * optionally followed by "|ascii|". Bytes on no line are zero.
 */
static void golden_write(FILE *out, const uint8_t *bytes, size_t size)
{
    fprintf(out, "# %s - format v1 golden bytes: the first two blocks of a segment.\n", GOLDEN_NAME);
    fprintf(out, "# Written once by the v1 encoder; never edit. tests/check_format.c re-encodes\n");
    fprintf(out, "# it byte for byte and decodes it to literal values, forever.\n");
    fprintf(out, "#\n");
    fprintf(out, "# Block 0, segment header: log_id \"golden-log-id-v1\", seq 1, first_lsn 1,\n");
    fprintf(out, "#   segment_size 67108864, created_at_ns 1700000000000000000, prev_chain 0.\n");
    fprintf(out, "# Block 1, batch frame (seed = stele_segment_seed(log_id, 1, 1)): header with\n");
    fprintf(out, "#   record_count 2, first_lsn 1, durable_lsn 0, prev_chain 0, uncompressed,\n");
    fprintf(out, "#   then the records, then zeros to the block:\n");
    fprintf(out, "#   LSN 1: intent, json, type \"order.place\", stream \"order-42\" version 1,\n");
    fprintf(out, "#          key \"req-1\", actor \"alice\", payload {\"sku\":\"A1\",\"qty\":2},\n");
    fprintf(out, "#          recorded_at 1700000000000000001, event_time 1699999999999000000.\n");
    fprintf(out, "#   LSN 2: outcome confirmed of LSN 1, text, backfilled, type \"order.placed\",\n");
    fprintf(out, "#          no stream/key/actor, payload \"ok\", recorded_at = event_time =\n");
    fprintf(out, "#          1700000000000000002.\n");
    fprintf(out, "#\n");
    fprintf(out, "# Format: \"size N\", then \"offset: 16 hex bytes |ascii|\"; lines absent are zero.\n");
    fprintf(out, "size %zu\n", size);
    for (size_t off = 0; off < size; off += 16) {
        size_t n = size - off < 16 ? size - off : 16;
        if (fmt_is_zero(bytes + off, n))
            continue;
        fprintf(out, "%08zx:", off);
        for (size_t i = 0; i < n; i++)
            fprintf(out, " %02x", bytes[off + i]);
        fprintf(out, "%*s  |", (int)(3 * (16 - n)), "");
        for (size_t i = 0; i < n; i++)
            fputc(isprint(bytes[off + i]) ? bytes[off + i] : '.', out);
        fprintf(out, "|\n");
    }
}

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parses one "offset: bytes |ascii|" line into bytes[0, size); 0 on success. */
static int golden_parse_line(const char *line, uint8_t *bytes, size_t size, size_t *next_off)
{
    char *end;
    unsigned long long off = strtoull(line, &end, 16);
    if (end == line || *end != ':' || off % 16 != 0 || off < *next_off || off >= size)
        return -1;
    const char *p = end + 1;
    size_t n = 0;
    while (p[0] == ' ' && hex_digit((unsigned char)p[1]) >= 0 && hex_digit((unsigned char)p[2]) >= 0 &&
           (p[3] == ' ' || p[3] == '\n' || p[3] == 0)) {
        if (n == 16 || off + n >= size)
            return -1;
        bytes[off + n++] = (uint8_t)(hex_digit((unsigned char)p[1]) << 4 | hex_digit((unsigned char)p[2]));
        p += 3;
    }
    while (*p == ' ')
        p++;
    if (n == 0 || (*p != '|' && *p != '\n' && *p != 0))
        return -1;
    *next_off = (size_t)off + 16;
    return 0;
}

/* Reads and parses the golden file; NULL when it cannot be opened (and
 * missing_ok), a test failure when it is malformed. */
static uint8_t *golden_read(size_t *out_size, int missing_ok)
{
    char *path = golden_path();
    FILE *f = fopen(path, "r");
    if (!f && missing_ok) {
        free(path);
        return NULL;
    }
    ck_assert_msg(f != NULL, "cannot open %s (set STELE_GOLDEN_DIR)", path);
    char line[256];
    uint8_t *bytes = NULL;
    size_t size = 0, next_off = 0;
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (!bytes) {
            unsigned long long n;
            ck_assert_msg(sscanf(line, "size %llu", &n) == 1 && n > 0 && n <= (1u << 20),
                          "%s:%d: expected \"size N\"", path, lineno);
            size = (size_t)n;
            bytes = calloc(1, size);
            ck_assert_ptr_nonnull(bytes);
            continue;
        }
        ck_assert_msg(golden_parse_line(line, bytes, size, &next_off) == 0, "%s:%d: malformed line", path,
                      lineno);
    }
    fclose(f);
    ck_assert_msg(bytes != NULL, "%s: no size line", path);
    free(path);
    *out_size = size;
    return bytes;
}

START_TEST(test_golden_encode)
{
    /* Today's encoder must write the v1 bytes exactly. On a mismatch the
     * actual dump is left in $STELE_TEST_TMP (or /tmp) for a diff. */
    uint8_t actual[GOLDEN_SIZE];
    golden_build(actual);
    size_t size = 0;
    uint8_t *expected = golden_read(&size, 1);
    size_t diff = 0;
    while (expected && diff < size && diff < GOLDEN_SIZE && expected[diff] == actual[diff])
        diff++;
    if (size != GOLDEN_SIZE || diff != GOLDEN_SIZE) {
        const char *dir = getenv("STELE_TEST_TMP");
        char *out_path = tu_path(dir && *dir ? dir : "/tmp", GOLDEN_NAME ".actual");
        FILE *out = fopen(out_path, "w");
        if (out) {
            golden_write(out, actual, GOLDEN_SIZE);
            fclose(out);
        }
        ck_abort_msg("golden: %zu bytes expected, %u encoded; first difference at offset %zu; actual in %s", size,
                     GOLDEN_SIZE, diff, out_path);
    }
    free(expected);
}
END_TEST

struct golden_walk {
    int count;
    struct fmt_record rec[2];
    uint64_t lsn[2];
    size_t offset[2];
};

static int golden_walk_fn(void *ctx, uint64_t lsn, const struct fmt_record *r, size_t offset)
{
    struct golden_walk *w = ctx;
    ck_assert_int_lt(w->count, 2);
    w->lsn[w->count] = lsn;
    w->offset[w->count] = offset;
    w->rec[w->count] = *r;
    w->count++;
    return 0;
}

static void require_str(const uint8_t *p, size_t n, const char *s)
{
    ck_assert_uint_eq(n, strlen(s));
    ck_assert(bytes_eq(p, (const uint8_t *)s, n));
}

/* The two golden records, against literals only. */
static void golden_require_records(const struct golden_walk *w)
{
    ck_assert_int_eq(w->count, 2);
    const struct fmt_record *r = &w->rec[0];
    ck_assert_uint_eq(w->lsn[0], 1);
    ck_assert_uint_eq(w->offset[0], 0);
    ck_assert_uint_eq(r->kind, 2);    /* intent */
    ck_assert_uint_eq(r->outcome, 0); /* none */
    ck_assert_uint_eq(r->content, 1); /* json */
    ck_assert_uint_eq(r->flags, 0);
    require_str(r->type, r->type_size, "order.place");
    require_str(r->stream, r->stream_size, "order-42");
    require_str(r->key, r->key_size, "req-1");
    require_str(r->actor, r->actor_size, "alice");
    require_str(r->payload, r->payload_size, "{\"sku\":\"A1\",\"qty\":2}");
    ck_assert_uint_eq(r->recorded_at_ns, UINT64_C(1700000000000000001));
    ck_assert_uint_eq(r->event_time_ns, UINT64_C(1699999999999000000));
    ck_assert_uint_eq(r->stream_version, 1);
    ck_assert_uint_eq(r->ref, 0);
    ck_assert_uint_eq(r->fingerprint, fmt_fingerprint(r)); /* the fingerprint function is pinned too */

    r = &w->rec[1];
    ck_assert_uint_eq(w->lsn[1], 2);
    ck_assert_uint_eq(w->offset[1], 120);
    ck_assert_uint_eq(r->kind, 3);    /* outcome */
    ck_assert_uint_eq(r->outcome, 1); /* confirmed */
    ck_assert_uint_eq(r->content, 2); /* text */
    ck_assert_uint_eq(r->flags, 1);   /* backfilled */
    require_str(r->type, r->type_size, "order.placed");
    ck_assert_uint_eq(r->stream_size, 0);
    ck_assert_uint_eq(r->key_size, 0);
    ck_assert_uint_eq(r->actor_size, 0);
    require_str(r->payload, r->payload_size, "ok");
    ck_assert_uint_eq(r->recorded_at_ns, UINT64_C(1700000000000000002));
    ck_assert_uint_eq(r->event_time_ns, UINT64_C(1700000000000000002));
    ck_assert_uint_eq(r->stream_version, 0);
    ck_assert_uint_eq(r->ref, 1);
    ck_assert_uint_eq(r->fingerprint, fmt_fingerprint(r));
}

START_TEST(test_golden_decode)
{
    /* The reader's view of the golden bytes, checked against literals only. */
    size_t size;
    uint8_t *bytes = golden_read(&size, 0);
    ck_assert_uint_eq(size, 8192);
    uint8_t *file = exact_copy(bytes, size);
    free(bytes);

    struct fmt_segment_header sh;
    ck_assert_int_eq(fmt_segment_header_decode(file, size, &sh), FMT_OK);
    ck_assert(memcmp(sh.log_id, "golden-log-id-v1", 16) == 0);
    ck_assert_uint_eq(sh.seq, 1);
    ck_assert_uint_eq(sh.first_lsn, 1);
    ck_assert_uint_eq(sh.segment_size, 67108864);
    ck_assert_uint_eq(sh.created_at_ns, UINT64_C(1700000000000000000));
    ck_assert_uint_eq(sh.prev_chain, 0);

    uint64_t seed = stele_segment_seed(sh.log_id, sh.seq, sh.first_lsn);
    const uint8_t *frame = file + 4096;
    struct fmt_batch_header bh;
    uint64_t chain = 0;
    ck_assert_int_eq(fmt_batch_header_decode(frame, size - 4096, seed, &bh, &chain), FMT_OK);
    ck_assert_uint_eq(chain, get_le(frame, 8));
    ck_assert_uint_eq(bh.record_count, 2);
    ck_assert_uint_eq(bh.first_lsn, 1);
    ck_assert_uint_eq(bh.durable_lsn, 0);
    ck_assert_uint_eq(bh.prev_chain, 0);
    ck_assert_uint_eq(bh.compression, FMT_COMPRESSION_NONE);
    ck_assert_uint_eq(bh.dict_id, 0);
    /* 64 + 11 + 8 + 5 + 5 + 20 = 113 -> 120; 64 + 12 + 2 = 78 -> 80. */
    ck_assert_uint_eq(bh.raw_size, 200);
    ck_assert_uint_eq(bh.stored_size, 200);
    ck_assert_uint_eq(fmt_batch_frame_size(bh.stored_size), 4096);
    const uint8_t *body = frame + 64;
    ck_assert_int_eq(fmt_batch_body_check(&bh, body, bh.stored_size, seed), FMT_OK);
    ck_assert(fmt_is_zero(body + 200, 4096 - 64 - 200));

    struct golden_walk w = {0};
    uint64_t bad = 0;
    ck_assert_int_eq(fmt_batch_records(&bh, body, bh.raw_size, seed, golden_walk_fn, &w, &bad), FMT_OK);
    golden_require_records(&w);

    /* Read at the wrong segment (seq 2) the batch is someone else's. */
    ck_assert_int_eq(fmt_batch_header_decode(frame, size - 4096, stele_segment_seed(sh.log_id, 2, 1), &bh, &chain),
                     FMT_BAD_CHECKSUM);
    free(file);
}
END_TEST


START_TEST(test_golden_corrupt)
{
    /* Every byte of the golden image matters: each flip is caught by the
     * structure it belongs to (header block, batch header, body, padding). */
    size_t size;
    uint8_t *bytes = golden_read(&size, 0);
    ck_assert_uint_eq(size, GOLDEN_SIZE);
    uint8_t *file = exact_copy(bytes, size);
    uint64_t seed = stele_segment_seed(LOG_ID, 1, 1);
    for (size_t at = 0; at < size; at++) {
        file[at] ^= 0x01;
        struct fmt_segment_header sh;
        struct fmt_batch_header bh;
        uint64_t chain;
        enum fmt_status st = fmt_segment_header_decode(file, size, &sh);
        if (st == FMT_OK)
            st = fmt_batch_header_decode(file + 4096, 4096, seed, &bh, &chain);
        if (st == FMT_OK)
            st = fmt_batch_body_check(&bh, file + 4096 + 64, 4096 - 64, seed);
        if (st == FMT_OK)
            st = fmt_batch_records(&bh, file + 4096 + 64, bh.raw_size, seed, NULL, NULL, NULL);
        if (st == FMT_OK && !fmt_is_zero(file + 4096 + 64 + bh.stored_size, 4096 - 64 - bh.stored_size))
            st = FMT_BAD_FIELD; /* the engine's check: frame padding is zero */
        REQUIRE(st != FMT_OK, "golden byte %zu flipped, still reads", at);
        file[at] ^= 0x01;
    }
    free(file);
    free(bytes);
}
END_TEST

/* ---- SPEC.md §12 worked example --------------------------------------------- */

static struct fmt_record spec_record(uint8_t kind, uint8_t outcome, uint8_t content, const char *type,
                                     const char *stream, const char *key, const char *actor, const char *payload,
                                     uint64_t at_ns, uint64_t ref)
{
    struct fmt_record r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    r.outcome = outcome;
    r.content = content;
    r.type = (const uint8_t *)type, r.type_size = (uint8_t)strlen(type);
    r.stream = (const uint8_t *)stream, r.stream_size = (uint8_t)strlen(stream);
    r.key = (const uint8_t *)key, r.key_size = (uint8_t)strlen(key);
    r.actor = (const uint8_t *)actor, r.actor_size = (uint8_t)strlen(actor);
    r.payload = (const uint8_t *)payload, r.payload_size = (uint32_t)strlen(payload);
    r.recorded_at_ns = at_ns;
    r.event_time_ns = at_ns;
    r.stream_version = r.stream_size ? 1 : 0;
    r.ref = ref;
    r.fingerprint = fmt_fingerprint(&r);
    return r;
}

/* Writes one uncompressed batch frame at dst; returns its chain value. */
static uint64_t spec_batch(const struct fmt_record *recs, uint32_t count, uint64_t first_lsn, uint64_t durable_lsn,
                           uint64_t prev_chain, uint64_t seed, uint8_t *dst)
{
    uint8_t *body = dst + STELE_BATCH_HEADER_SIZE;
    size_t size = body_build(recs, count, first_lsn, seed, body, STELE_BLOCK_SIZE - STELE_BATCH_HEADER_SIZE, NULL);
    struct fmt_batch_header h = batch_for_body(body, size, count, first_lsn, seed);
    h.durable_lsn = durable_lsn;
    h.prev_chain = prev_chain;
    return fmt_batch_header_encode(&h, seed, dst, STELE_BATCH_HEADER_SIZE);
}

START_TEST(test_spec_worked_example)
{
    /* The values SPEC.md §12 prints, rebuilt from the inputs it states: the
     * spec's example and the code must not drift apart. */
    const uint64_t t0 = UINT64_C(1700000000000000000);
    uint8_t log_id[STELE_LOG_ID_SIZE];
    for (unsigned i = 0; i < sizeof log_id; i++)
        log_id[i] = (uint8_t)(0xa0 + i);
    struct fmt_meta m = {.created_at_ns = t0, .segment_size = 65536, .idem_window_ns = UINT64_C(86400000000000),
                         .payload_size_max = 1048576, .compression = 0, .compression_level = 3, .durability = 1};
    memcpy(m.log_id, log_id, sizeof log_id);
    uint8_t meta[STELE_META_SIZE];
    fmt_meta_encode(&m, meta, sizeof meta);
    ck_assert_uint_eq(get_le(meta, 8), UINT64_C(0xc9fc24cecf54df43));

    uint8_t *file = calloc(1, 16384);
    ck_assert_ptr_nonnull(file);
    struct fmt_segment_header sh = {.seq = 1, .first_lsn = 1, .segment_size = 65536, .created_at_ns = t0};
    memcpy(sh.log_id, log_id, sizeof log_id);
    fmt_segment_header_encode(&sh, file, STELE_SEGMENT_HEADER_SIZE);
    ck_assert_uint_eq(get_le(file, 8), UINT64_C(0x2557b652a843fc09));
    uint64_t seed = stele_segment_seed(log_id, 1, 1);
    ck_assert_uint_eq(seed, UINT64_C(0x8af1ed407e2d2852));

    struct fmt_record b1[2] = {
        spec_record(FMT_KIND_EVENT, FMT_OUTCOME_NONE, FMT_CONTENT_JSON, "order.placed", "order-7", "k1", "",
                    "{\"total\":42}", t0 + 1000, 0),
        spec_record(FMT_KIND_INTENT, FMT_OUTCOME_NONE, FMT_CONTENT_TEXT, "pay", "", "p1", "ann", "", t0 + 1000, 0),
    };
    ck_assert_uint_eq(b1[0].fingerprint, UINT64_C(0x1e9094396192ced3));
    ck_assert_uint_eq(b1[1].fingerprint, UINT64_C(0x46e47ad9f9668f51));
    uint64_t chain1 = spec_batch(b1, 2, 1, 0, 0, seed, file + 4096);
    ck_assert_uint_eq(chain1, UINT64_C(0xae249b0367ae11bc));
    ck_assert_uint_eq(get_le(file + 4096 + 40, 8), UINT64_C(0x778853569c2dd726));
    ck_assert_uint_eq(get_le(file + 4096 + 64, 8), UINT64_C(0xc736c69d7a0d00ab));
    ck_assert_uint_eq(get_le(file + 4096 + 64 + 104, 8), UINT64_C(0x5acf1d39fa2410bf));

    struct fmt_record b2 = spec_record(FMT_KIND_OUTCOME, FMT_OUTCOME_CONFIRMED, FMT_CONTENT_BINARY, "pay", "", "p1",
                                       "", "", t0 + 2000, 2);
    ck_assert_uint_eq(b2.fingerprint, UINT64_C(0xba0555aaa6eeb4ac));
    uint64_t chain2 = spec_batch(&b2, 1, 3, 2, chain1, seed, file + 8192);
    ck_assert_uint_eq(chain2, UINT64_C(0x9b72ada2e01bdf88));
    ck_assert_uint_eq(get_le(file + 8192 + 40, 8), UINT64_C(0x087951b43693b400));
    ck_assert_uint_eq(get_le(file + 8192 + 64, 8), UINT64_C(0x1fc1db763df060a4));

    struct fmt_footer f = {.last_lsn = 3, .record_count = 3, .batch_count = 2, .data_end = 12288, .chain = chain2,
                           .file_hash = stele_checksum(file, 12288, seed), .sealed_at_ns = t0 + 5000};
    ck_assert_uint_eq(f.file_hash, UINT64_C(0x86e4d710f94bda10));
    fmt_footer_encode(&f, seed, file + 12288, STELE_FOOTER_SIZE);
    ck_assert_uint_eq(get_le(file + 12288, 8), UINT64_C(0xd9c78c4dadc68e23));
    free(file);
}
END_TEST

/* ---- suite -------------------------------------------------------------------- */

static Suite *format_suite(void)
{
    Suite *s = suite_create("format");
    TCase *tc = tcase_create("roundtrip");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_limits_pinned);
    tcase_add_test(tc, test_status_str);
    tcase_add_test(tc, test_checksum_and_seed);
    tcase_add_test(tc, test_meta_roundtrip);
    tcase_add_test(tc, test_segment_header_roundtrip);
    tcase_add_test(tc, test_footer_roundtrip);
    tcase_add_test(tc, test_batch_header_roundtrip);
    tcase_add_loop_test(tc, test_fixed_random_roundtrip, 0, FIXED_COUNT);
    tcase_add_test(tc, test_batch_frame_size);
    tcase_add_test(tc, test_record_roundtrip_kinds);
    tcase_add_test(tc, test_record_roundtrip_sizes);
    tcase_add_test(tc, test_record_roundtrip_large);
    tcase_add_test(tc, test_record_check);
    tcase_add_test(tc, test_batch_frame_roundtrip);
    tcase_add_test(tc, test_batch_records_walk);
    tcase_add_test(tc, test_batch_records_swapped);
    tcase_add_test(tc, test_segment_name);
    tcase_add_test(tc, test_segment_name_rejects);
    suite_add_tcase(s, tc);

    tc = tcase_create("corruption");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_fixed_flip_every_bit, 0, FIXED_COUNT);
    tcase_add_loop_test(tc, test_fixed_truncated, 0, FIXED_COUNT);
    tcase_add_loop_test(tc, test_fixed_zero_and_seed, 0, FIXED_COUNT);
    tcase_add_test(tc, test_fixed_wrong_structure);
    tcase_add_test(tc, test_meta_tamper);
    tcase_add_test(tc, test_segment_header_tamper);
    tcase_add_test(tc, test_footer_tamper);
    tcase_add_test(tc, test_batch_header_tamper);
    tcase_add_test(tc, test_batch_header_seed);
    tcase_add_test(tc, test_batch_records_truncated);
    tcase_add_test(tc, test_batch_body_check);
    tcase_add_test(tc, test_record_tamper);
    tcase_add_test(tc, test_record_wrong_lsn_or_seed);
    tcase_add_test(tc, test_record_flip_and_truncate);
    tcase_add_test(tc, test_record_bad_lengths);
    tcase_add_test(tc, test_record_oversize_payload);
    suite_add_tcase(s, tc);

    tc = tcase_create("fingerprint");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fingerprint);
    tcase_add_test(tc, test_fingerprint_boundaries);
    suite_add_tcase(s, tc);

    tc = tcase_create("fuzz");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_fuzz_fixed, 0, FIXED_COUNT);
    tcase_add_test(tc, test_fuzz_record);
    tcase_add_test(tc, test_fuzz_batch_walk);
    tcase_add_test(tc, test_fuzz_segment_name);
    suite_add_tcase(s, tc);

    tc = tcase_create("golden");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_golden_encode);
    tcase_add_test(tc, test_golden_decode);
    tcase_add_test(tc, test_golden_corrupt);
    tcase_add_test(tc, test_spec_worked_example);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    g_seed = tu_seed("check_format");
    SRunner *sr = srunner_create(format_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

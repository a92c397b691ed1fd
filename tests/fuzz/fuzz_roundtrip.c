/*
 * fuzz_roundtrip.c - encode -> decode round trips of format version 1: the
 * input is not decoded but read as a recipe for valid values (records with
 * every field in range, a batch of them, zstd-compressed or not, a meta
 * block, a segment header, a footer), which are encoded, decoded and
 * compared field by field and byte by byte.
 *
 * What must hold: every valid value survives its round trip exactly; the
 * batch walk gives back the records in order at their LSNs; any one byte
 * changed in an encoded record or batch (header or stored body) is caught by
 * the decoders; the fingerprint tells apart requests whose type and stream
 * differ only in where one ends and the other begins (SPEC.md §5.2).
 */
#include "fuzz.h"

#include <zstd.h>

#include "batch.h"
#include "checksum.h"
#include "internal.h"
#include "record.h"
#include "segment.h"

#define RECORDS_MAX 8
#define PAYLOAD_FUZZ_MAX (64u * 1024u)

static const uint8_t *take_field(struct fuzz_in *in, size_t max, uint8_t *out_size)
{
    size_t want = (size_t)fuzz_take(in, 1) % (max + 1), n;
    const uint8_t *p = fuzz_bytes(in, want, &n);
    *out_size = (uint8_t)n;
    return p;
}

/* A valid record for lsn from the input. */
static struct fmt_record make_record(struct fuzz_in *in, uint64_t lsn)
{
    struct fmt_record r;
    memset(&r, 0, sizeof r);
    uint64_t bits = fuzz_take(in, 2);
    r.kind = (uint8_t)(FMT_KIND_EVENT + bits % 4);
    r.outcome = r.kind == FMT_KIND_OUTCOME ? (uint8_t)(1 + (bits >> 2) % 2) : FMT_OUTCOME_NONE;
    r.content = (uint8_t)(FMT_CONTENT_JSON + (bits >> 3) % 3);
    r.flags = (uint8_t)((bits >> 5) & FMT_FLAG_BACKFILLED);
    r.recorded_at_ns = fuzz_take(in, 8);
    r.event_time_ns = fuzz_take(in, 8);
    r.fingerprint = fuzz_take(in, 8);
    r.ref = fuzz_take(in, 8) % lsn;
    r.type = take_field(in, STELE_TYPE_SIZE_MAX, &r.type_size);
    r.stream = take_field(in, STELE_STREAM_SIZE_MAX, &r.stream_size);
    r.stream_version = r.stream_size ? fuzz_take(in, 8) | 1 : 0;
    r.key = take_field(in, STELE_KEY_SIZE_MAX, &r.key_size);
    r.actor = take_field(in, STELE_ACTOR_SIZE_MAX, &r.actor_size);
    size_t n;
    r.payload = fuzz_bytes(in, (size_t)fuzz_take(in, 2) % (PAYLOAD_FUZZ_MAX + 1), &n);
    r.payload_size = (uint32_t)n;
    return r;
}

static int same_bytes(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static void check_same(const struct fmt_record *a, const struct fmt_record *b, uint64_t lsn)
{
    FUZZ_CHECK(a->recorded_at_ns == b->recorded_at_ns && a->event_time_ns == b->event_time_ns &&
                   a->stream_version == b->stream_version && a->fingerprint == b->fingerprint && a->ref == b->ref &&
                   a->kind == b->kind && a->outcome == b->outcome && a->content == b->content && a->flags == b->flags,
               "record at LSN %llu: a fixed field changed in the round trip", (unsigned long long)lsn);
    FUZZ_CHECK(same_bytes(a->type, a->type_size, b->type, b->type_size) &&
                   same_bytes(a->stream, a->stream_size, b->stream, b->stream_size) &&
                   same_bytes(a->key, a->key_size, b->key, b->key_size) &&
                   same_bytes(a->actor, a->actor_size, b->actor, b->actor_size) &&
                   same_bytes(a->payload, a->payload_size, b->payload, b->payload_size),
               "record at LSN %llu: a variable field changed in the round trip", (unsigned long long)lsn);
}

/* One record alone: round trip, then every position flipped in turn must be caught. */
static void record_alone(const struct fmt_record *r, uint64_t lsn, uint64_t seed, size_t flip)
{
    size_t size = fmt_record_size(r);
    uint8_t *buf = malloc(size);
    FUZZ_CHECK(buf != NULL, "out of memory");
    FUZZ_CHECK(fmt_record_encode(r, lsn, seed, buf, size) == size, "encode size");
    struct fmt_record d;
    size_t dsize;
    FUZZ_CHECK(fmt_record_decode(buf, size, lsn, seed, &d, &dsize) == FMT_OK && dsize == size,
               "a freshly encoded record does not decode");
    check_same(r, &d, lsn);
    FUZZ_CHECK(fmt_record_decode(buf, size - 1, lsn, seed, &d, &dsize) != FMT_OK, "a truncated record decodes");
    size_t at = flip % size;
    buf[at] ^= (uint8_t)(1u << (flip / size % 8));
    FUZZ_CHECK(fmt_record_decode(buf, size, lsn, seed, &d, &dsize) != FMT_OK,
               "record with byte %zu of %zu flipped still decodes", at, size);
    free(buf);
}

struct expect {
    const struct fmt_record *recs;
    uint32_t count;
    uint32_t seen;
    uint64_t first_lsn;
};

static int expect_cb(void *ctx, uint64_t lsn, const struct fmt_record *r, size_t offset)
{
    struct expect *e = ctx;
    (void)offset;
    FUZZ_CHECK(e->seen < e->count && lsn == e->first_lsn + e->seen, "walk out of order at LSN %llu",
               (unsigned long long)lsn);
    check_same(&e->recs[e->seen], r, lsn);
    e->seen++;
    return 0;
}

/* A batch of the records: encode (maybe compress), decode, walk, then one flipped byte. */
static void batch(const struct fmt_record *recs, uint32_t count, uint64_t first_lsn, uint64_t seed, int zstd,
                  size_t flip, uint64_t durable_back, uint64_t prev_chain)
{
    size_t raw_size = 0;
    for (uint32_t i = 0; i < count; i++)
        raw_size += fmt_record_size(&recs[i]);
    uint8_t *raw = malloc(raw_size);
    FUZZ_CHECK(raw != NULL, "out of memory");
    for (size_t i = 0, off = 0; i < count; i++)
        off += fmt_record_encode(&recs[i], first_lsn + i, seed, raw + off, raw_size - off);
    size_t bound = zstd ? ZSTD_compressBound(raw_size) : raw_size;
    uint8_t *frame = calloc(1, (size_t)fmt_batch_frame_size((uint32_t)bound));
    FUZZ_CHECK(frame != NULL, "out of memory");
    size_t stored = raw_size;
    if (zstd) {
        stored = ZSTD_compress(frame + STELE_BATCH_HEADER_SIZE, bound, raw, raw_size, 1);
        FUZZ_CHECK(!ZSTD_isError(stored), "zstd: %s", ZSTD_getErrorName(stored));
    } else {
        memcpy(frame + STELE_BATCH_HEADER_SIZE, raw, raw_size);
    }
    struct fmt_batch_header h = {
        .record_count = count,
        .first_lsn = first_lsn,
        .durable_lsn = durable_back % first_lsn,
        .prev_chain = prev_chain,
        .body_checksum = stele_checksum(frame + STELE_BATCH_HEADER_SIZE, stored, seed),
        .stored_size = (uint32_t)stored,
        .raw_size = (uint32_t)raw_size,
        .compression = zstd ? FMT_COMPRESSION_ZSTD : FMT_COMPRESSION_NONE,
    };
    uint64_t chain = fmt_batch_header_encode(&h, seed, frame, STELE_BATCH_HEADER_SIZE);
    size_t frame_size = (size_t)fmt_batch_frame_size(h.stored_size);

    struct fmt_batch_header d;
    uint64_t dchain;
    FUZZ_CHECK(fmt_batch_header_decode(frame, frame_size, seed, &d, &dchain) == FMT_OK && dchain == chain,
               "a freshly encoded batch header does not decode");
    FUZZ_CHECK(d.record_count == h.record_count && d.first_lsn == h.first_lsn && d.durable_lsn == h.durable_lsn &&
                   d.prev_chain == h.prev_chain && d.body_checksum == h.body_checksum &&
                   d.stored_size == h.stored_size && d.raw_size == h.raw_size && d.compression == h.compression &&
                   d.dict_id == h.dict_id,
               "batch header fields changed in the round trip");
    const uint8_t *body = frame + STELE_BATCH_HEADER_SIZE;
    FUZZ_CHECK(fmt_batch_body_check(&d, body, frame_size - STELE_BATCH_HEADER_SIZE, seed) == FMT_OK,
               "a freshly encoded body fails its checksum");
    struct batch_buf b;
    memset(&b, 0, sizeof b);
    b.header = d;
    FUZZ_CHECK(batch_body_open(&b, body, "fuzz", 0) == STELE_OK, "a fresh body does not open: %s", stele_errmsg());
    struct expect e = {recs, count, 0, first_lsn};
    FUZZ_CHECK(fmt_batch_records(&d, b.body, d.raw_size, seed, expect_cb, &e, NULL) == FMT_OK && e.seen == count,
               "the walk of a fresh batch fails");
    batch_buf_free(&b);

    /* One changed byte in the header or the stored body. */
    size_t covered = STELE_BATCH_HEADER_SIZE + stored, at = flip % covered;
    frame[at] ^= (uint8_t)(1u << (flip / covered % 8));
    int header_ok = fmt_batch_header_decode(frame, frame_size, seed, &d, &dchain) == FMT_OK;
    FUZZ_CHECK(!header_ok || fmt_batch_body_check(&d, frame + STELE_BATCH_HEADER_SIZE,
                                                  frame_size - STELE_BATCH_HEADER_SIZE, seed) != FMT_OK,
               "batch with byte %zu of %zu flipped passes header and body checks", at, covered);
    free(frame);
    free(raw);
}

/* Type and stream that differ only in where the one ends and the other begins. */
static void fingerprint_split(const struct fmt_record *r)
{
    uint8_t joined[STELE_TYPE_SIZE_MAX + STELE_STREAM_SIZE_MAX];
    size_t n = (size_t)r->type_size + r->stream_size;
    if (n == 0 || r->type_size == 0 || r->stream_size == STELE_STREAM_SIZE_MAX)
        return;
    memcpy(joined, r->type, r->type_size);
    if (r->stream_size)
        memcpy(joined + r->type_size, r->stream, r->stream_size);
    struct fmt_record moved = *r;
    moved.type = joined;
    moved.type_size = (uint8_t)(r->type_size - 1);
    moved.stream = joined + moved.type_size;
    moved.stream_size = (uint8_t)(r->stream_size + 1);
    FUZZ_CHECK(fmt_fingerprint(&moved) != fmt_fingerprint(r),
               "two requests with type and stream split differently share a fingerprint");
}

static void blocks(struct fuzz_in *in)
{
    struct fmt_meta m;
    memset(&m, 0, sizeof m);
    for (size_t i = 0; i < sizeof m.log_id; i++)
        m.log_id[i] = (uint8_t)fuzz_take(in, 1);
    m.created_at_ns = fuzz_take(in, 8);
    m.segment_size = STELE_SEGMENT_SIZE_MIN +
                     fuzz_take(in, 4) % ((STELE_SEGMENT_SIZE_MAX - STELE_SEGMENT_SIZE_MIN) / STELE_BLOCK_SIZE + 1) *
                         STELE_BLOCK_SIZE;
    m.idem_window_ns = fuzz_take(in, 8);
    m.payload_size_max = (uint32_t)(fuzz_take(in, 4) % (STELE_PAYLOAD_SIZE_MAX + 1));
    m.compression = (uint8_t)(fuzz_take(in, 1) % 2);
    m.compression_level = (int8_t)(1 + fuzz_take(in, 1) % 19);
    m.durability = (uint8_t)(1 + fuzz_take(in, 1) % 3);
    uint8_t block[STELE_BLOCK_SIZE];
    fmt_meta_encode(&m, block, sizeof block);
    struct fmt_meta dm;
    FUZZ_CHECK(fmt_meta_decode(block, sizeof block, &dm) == FMT_OK && memcmp(dm.log_id, m.log_id, sizeof m.log_id) == 0 &&
                   dm.created_at_ns == m.created_at_ns && dm.segment_size == m.segment_size &&
                   dm.idem_window_ns == m.idem_window_ns && dm.payload_size_max == m.payload_size_max &&
                   dm.compression == m.compression && dm.compression_level == m.compression_level &&
                   dm.durability == m.durability,
               "meta block round trip");

    struct fmt_segment_header h;
    memcpy(h.log_id, m.log_id, sizeof h.log_id);
    h.seq = fuzz_take(in, 8) | 1;
    h.first_lsn = fuzz_take(in, 8) | 1;
    h.segment_size = m.segment_size;
    h.created_at_ns = fuzz_take(in, 8);
    h.prev_chain = fuzz_take(in, 8);
    fmt_segment_header_encode(&h, block, sizeof block);
    struct fmt_segment_header dh;
    FUZZ_CHECK(fmt_segment_header_decode(block, sizeof block, &dh) == FMT_OK && dh.seq == h.seq &&
                   dh.first_lsn == h.first_lsn && dh.segment_size == h.segment_size &&
                   dh.created_at_ns == h.created_at_ns && dh.prev_chain == h.prev_chain &&
                   memcmp(dh.log_id, h.log_id, sizeof h.log_id) == 0,
               "segment header round trip");

    uint64_t seed = stele_segment_seed(h.log_id, h.seq, h.first_lsn);
    struct fmt_footer f;
    f.last_lsn = fuzz_take(in, 8);
    f.record_count = fuzz_take(in, 8);
    f.batch_count = f.record_count ? fuzz_take(in, 8) % f.record_count : 0;
    f.data_end = STELE_BLOCK_SIZE * (1 + fuzz_take(in, 4) % (STELE_SEGMENT_SIZE_MAX / STELE_BLOCK_SIZE));
    f.chain = fuzz_take(in, 8);
    f.file_hash = fuzz_take(in, 8);
    f.sealed_at_ns = fuzz_take(in, 8);
    fmt_footer_encode(&f, seed, block, sizeof block);
    struct fmt_footer df;
    FUZZ_CHECK(fmt_footer_decode(block, sizeof block, seed, &df) == FMT_OK && memcmp(&df, &f, sizeof f) == 0,
               "footer round trip");
    char name[STELE_SEGMENT_NAME_SIZE + 1];
    uint64_t first;
    fmt_segment_name(h.first_lsn, name, sizeof name);
    FUZZ_CHECK(fmt_segment_name_parse(name, &first) && first == h.first_lsn, "segment name round trip");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    unsigned mode = (unsigned)fuzz_take(&in, 1);
    uint64_t seed = fuzz_take(&in, 8);
    uint64_t first_lsn = fuzz_take(&in, 8) % (UINT64_MAX - RECORDS_MAX) + 1;
    size_t flip = (size_t)fuzz_take(&in, 4);
    uint64_t durable_back = fuzz_take(&in, 8), prev_chain = fuzz_take(&in, 8);
    if (mode & 0x80) {
        blocks(&in);
        return 0;
    }
    uint32_t count = 1 + mode % RECORDS_MAX;
    struct fmt_record recs[RECORDS_MAX];
    for (uint32_t i = 0; i < count; i++)
        recs[i] = make_record(&in, first_lsn + i);
    record_alone(&recs[0], first_lsn, seed, flip);
    fingerprint_split(&recs[0]);
    batch(recs, count, first_lsn, seed, (mode & 8) != 0, flip, durable_back, prev_chain);
    return 0;
}

/*
 * fuzz_record.c - the record decoder and the batch walk (format/record.h,
 * format/batch.h, and the engine's zstd body decoder, batch_body_open).
 *
 * Input: byte 0 selects the mode, bytes [1, 9) are an LSN and [9, 17) a
 * segment seed (little-endian), the rest are the bytes under test.
 *   mode & 3 == 0: one record at that LSN (fmt_record_decode);
 *   mode & 3 == 1: a batch frame, header then stored body (header decode,
 *                  body check, zstd decompression, record walk);
 *   mode & 3 >= 2: a raw batch body of 1 + (mode >> 4) records from that LSN
 *                  (fmt_batch_records), without a header to pass first.
 *   mode & 4:      fix up the checksums first, so that mutations reach the
 *                  field checks behind them instead of dying at the checksum.
 * What must hold: whatever a decoder accepts lies inside the input and
 * re-encodes to exactly the bytes it was decoded from (the format has one
 * encoding per value); a record is valid only at its own LSN; a batch walk
 * that succeeds visits exactly record_count records in order.
 */
#include "fuzz.h"

#include "batch.h"
#include "checksum.h"
#include "internal.h"
#include "record.h"

#define PREFIX_SIZE 17

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static void store_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A decoded record: inside [base, base + size), valid, and encoded exactly as found. */
static void check_record(const struct fmt_record *r, uint64_t lsn, uint64_t seed, const uint8_t *base,
                         size_t size)
{
    FUZZ_CHECK(size >= STELE_RECORD_HEADER_SIZE && size % 8 == 0, "record size %zu", size);
    FUZZ_CHECK(fmt_record_size(r) == size, "fmt_record_size %zu, decoded %zu", fmt_record_size(r), size);
    FUZZ_CHECK(fmt_record_check(r, lsn) == FMT_OK, "a decoded record fails fmt_record_check");
    FUZZ_CHECK(r->type == base + STELE_RECORD_HEADER_SIZE, "type does not follow the header");
    FUZZ_CHECK(r->payload + r->payload_size <= base + size, "payload runs past the record");
    uint8_t *again = malloc(size);
    FUZZ_CHECK(again != NULL, "out of memory");
    FUZZ_CHECK(fmt_record_encode(r, lsn, seed, again, size) == size, "re-encoded size differs");
    FUZZ_CHECK(memcmp(again, base, size) == 0, "re-encoding the decoded record gives other bytes");
    free(again);
    FUZZ_CHECK(fmt_fingerprint(r) == fmt_fingerprint(r), "fingerprint is not deterministic");
}

static void one_record(uint8_t *buf, size_t n, uint64_t lsn, uint64_t seed, int fix)
{
    if (fix && n >= STELE_RECORD_HEADER_SIZE) {
        uint32_t record_size = (uint32_t)fuzz_le(buf + 8, 4, 4);
        size_t padded = align8(record_size);
        if (record_size >= STELE_RECORD_HEADER_SIZE && padded <= n)
            store_le64(buf, stele_checksum(buf + 8, padded - 8, seed ^ lsn));
    }
    struct fmt_record r;
    size_t size = 0;
    if (fmt_record_decode(buf, n, lsn, seed, &r, &size) != FMT_OK)
        return;
    FUZZ_CHECK(size <= n, "decoded size %zu beyond the %zu bytes given", size, n);
    check_record(&r, lsn, seed, buf, size);
    struct fmt_record other;
    size_t other_size;
    FUZZ_CHECK(fmt_record_decode(buf, n, lsn + 1, seed, &other, &other_size) != FMT_OK,
               "a record is also valid at the next LSN");
}

struct walk {
    const uint8_t *raw;
    size_t raw_size;
    uint64_t seed;
    uint64_t next_lsn;
    size_t next_off;
    uint32_t visited;
    uint32_t stop_at; /* the callback asks to stop at this visit (0 = never) */
};

static int walk_cb(void *ctx, uint64_t lsn, const struct fmt_record *r, size_t offset)
{
    struct walk *w = ctx;
    FUZZ_CHECK(lsn == w->next_lsn, "walk gave LSN %llu, expected %llu", (unsigned long long)lsn,
               (unsigned long long)w->next_lsn);
    FUZZ_CHECK(offset == w->next_off && offset < w->raw_size, "walk gave offset %zu", offset);
    size_t size = fmt_record_size(r);
    FUZZ_CHECK(size <= w->raw_size - offset, "record runs past the body");
    check_record(r, lsn, w->seed, w->raw + offset, size);
    w->next_lsn++;
    w->next_off += size;
    w->visited++;
    return w->stop_at && w->visited == w->stop_at;
}

static void walk(const struct fmt_batch_header *h, const uint8_t *raw, size_t raw_size, uint64_t seed,
                 uint32_t stop_at)
{
    struct walk w = {raw, raw_size, seed, h->first_lsn, 0, 0, 0};
    uint64_t bad = 0;
    enum fmt_status st = fmt_batch_records(h, raw, raw_size, seed, walk_cb, &w, &bad);
    if (st == FMT_OK) {
        FUZZ_CHECK(w.visited == h->record_count && w.next_off == raw_size,
                   "a successful walk visited %u of %u records, %zu of %zu bytes", w.visited, h->record_count,
                   w.next_off, raw_size);
        FUZZ_CHECK(fmt_batch_records(h, raw, raw_size, seed, NULL, NULL, NULL) == FMT_OK,
                   "the walk depends on its callback");
    } else {
        FUZZ_CHECK(bad >= h->first_lsn && bad < h->first_lsn + h->record_count, "bad LSN %llu outside the batch",
                   (unsigned long long)bad);
    }
    if (stop_at && stop_at <= w.visited) {
        struct walk w2 = {raw, raw_size, seed, h->first_lsn, 0, 0, stop_at};
        FUZZ_CHECK(fmt_batch_records(h, raw, raw_size, seed, walk_cb, &w2, NULL) == FMT_OK && w2.visited == stop_at,
                   "a walk stopped by its callback did not return FMT_OK at once");
    }
}

static void batch_frame(uint8_t *buf, size_t n, uint64_t seed, int fix, uint32_t stop_at)
{
    if (n < STELE_BATCH_HEADER_SIZE)
        return;
    if (fix) {
        uint32_t stored = (uint32_t)fuzz_le(buf + 48, 4, 4);
        if (stored <= n - STELE_BATCH_HEADER_SIZE)
            store_le64(buf + 40, stele_checksum(buf + STELE_BATCH_HEADER_SIZE, stored, seed));
        store_le64(buf, stele_checksum(buf + 8, STELE_BATCH_HEADER_SIZE - 8, seed));
    }
    struct fmt_batch_header h;
    uint64_t chain;
    if (fmt_batch_header_decode(buf, n, seed, &h, &chain) != FMT_OK)
        return;
    uint8_t again[STELE_BATCH_HEADER_SIZE];
    FUZZ_CHECK(fmt_batch_header_encode(&h, seed, again, sizeof again) == chain, "re-encoded chain differs");
    FUZZ_CHECK(memcmp(again, buf, sizeof again) == 0, "re-encoding the decoded batch header gives other bytes");
    FUZZ_CHECK(fmt_batch_frame_size(h.stored_size) % STELE_BLOCK_SIZE == 0 &&
                   fmt_batch_frame_size(h.stored_size) >= STELE_BATCH_HEADER_SIZE + (uint64_t)h.stored_size,
               "frame size");
    const uint8_t *body = buf + STELE_BATCH_HEADER_SIZE;
    size_t avail = n - STELE_BATCH_HEADER_SIZE;
    if (fmt_batch_body_check(&h, body, avail, seed) != FMT_OK)
        return;
    FUZZ_CHECK(h.stored_size <= avail, "body check passed a body longer than the input");
    struct batch_buf b;
    memset(&b, 0, sizeof b);
    b.header = h;
    if (batch_body_open(&b, body, "fuzz", 0) == STELE_OK)
        walk(&h, b.body, h.raw_size, seed, stop_at);
    batch_buf_free(&b);
}

static void raw_walk(uint8_t *buf, size_t n, uint64_t lsn, uint64_t seed, int fix, uint32_t count)
{
    struct fmt_batch_header h = {.record_count = count, .first_lsn = lsn ? lsn : 1, .raw_size = (uint32_t)n,
                                 .stored_size = (uint32_t)n};
    if (n > STELE_BATCH_BODY_SIZE_MAX || h.first_lsn > UINT64_MAX - count)
        return;
    for (size_t off = 0, i = 0; fix && i < count && n - off >= STELE_RECORD_HEADER_SIZE; i++) {
        uint32_t record_size = (uint32_t)fuzz_le(buf + off + 8, 4, 4);
        size_t padded = align8(record_size);
        if (record_size < STELE_RECORD_HEADER_SIZE || padded > n - off)
            break;
        store_le64(buf + off, stele_checksum(buf + off + 8, padded - 8, seed ^ (h.first_lsn + i)));
        off += padded;
    }
    walk(&h, buf, n, seed, count > 1 ? count / 2 : 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < PREFIX_SIZE)
        return 0;
    unsigned mode = data[0];
    uint64_t lsn = fuzz_le(data + 1, 8, 8), seed = fuzz_le(data + 9, 8, 8);
    size_t n = size - PREFIX_SIZE;
    /* A private copy of exactly n bytes: fix-ups write to it, and ASan sees any overread. */
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + PREFIX_SIZE, n);
    int fix = (mode & 4) != 0;
    switch (mode & 3) {
    case 0:
        one_record(buf, n, lsn, seed, fix);
        break;
    case 1:
        batch_frame(buf, n, seed, fix, 1 + (mode >> 4));
        break;
    default:
        raw_walk(buf, n, lsn, seed, fix, 1 + (mode >> 4));
        break;
    }
    free(buf);
    return 0;
}

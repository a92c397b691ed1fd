/*
 * fuzz_segidx.c - fmt_segidx_decode (format/segidx.c) on hostile read index
 * files, SPEC.md §19.
 *
 * Input: byte 0 selects the mode, the rest is the file.
 *   mode & 1: fix up the checksum (bytes [0, 8)), so that mutations reach
 *             the field, count and order checks behind it.
 * What must hold: the decoder returns FMT_OK or a failure status (never
 * reads outside the input: the sanitizers watch), and on a bad entry names
 * an entry inside the file. A file it accepts is exactly 128 + 24 x
 * entry_count bytes, describes batches that tile [4096, data_end) and
 * [first_lsn, last_lsn] in order with frame sizes and record counts in their
 * limits, and encodes back to the very same bytes.
 */
#include "fuzz.h"

#include "batch.h"
#include "checksum.h"
#include "segidx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size - 1 > STELE_SEGIDX_FILE_SIZE_MAX)
        return 0;
    uint8_t mode = data[0];
    size_t n = size - 1;
    uint8_t *file = malloc(n ? n : 1);
    FUZZ_CHECK(file != NULL, "out of memory");
    memcpy(file, data + 1, n);
    if ((mode & 1) && n >= 8) {
        uint64_t ck = stele_checksum(file + 8, n - 8, STELE_SEED_SEGIDX);
        for (int i = 0; i < 8; i++)
            file[i] = (uint8_t)(ck >> (8 * i));
    }
    struct fmt_segidx_header h;
    uint64_t bad = UINT64_MAX;
    enum fmt_status st = fmt_segidx_decode(file, n, &h, &bad);
    if (st != FMT_OK) {
        FUZZ_CHECK(bad == UINT64_MAX || (n >= STELE_SEGIDX_HEADER_SIZE &&
                                         bad < (n - STELE_SEGIDX_HEADER_SIZE) / STELE_SEGIDX_ENTRY_SIZE),
                   "bad entry %llu outside a %zu-byte file", (unsigned long long)bad, n);
        free(file);
        return 0;
    }
    FUZZ_CHECK(n == fmt_segidx_size(h.entry_count), "accepted %zu bytes for %llu entries", n,
               (unsigned long long)h.entry_count);
    struct fmt_segidx_entry *e = malloc((h.entry_count ? h.entry_count : 1) * sizeof *e);
    FUZZ_CHECK(e != NULL, "out of memory");
    uint64_t lsn = h.first_lsn, off = STELE_SEGMENT_HEADER_SIZE;
    for (uint64_t i = 0; i < h.entry_count; i++) {
        fmt_segidx_entry_get(file, i, &e[i]);
        FUZZ_CHECK(i > 0 || (e[i].first_lsn == lsn && e[i].offset == off), "entry 0 is not the segment's start");
        FUZZ_CHECK(e[i].first_lsn >= lsn && e[i].offset >= off, "entry %llu goes back", (unsigned long long)i);
        uint64_t next_lsn = i + 1 < h.entry_count ? 0 : h.last_lsn + 1;
        uint64_t next_off = i + 1 < h.entry_count ? 0 : h.data_end;
        if (i + 1 < h.entry_count) {
            struct fmt_segidx_entry nx;
            fmt_segidx_entry_get(file, i + 1, &nx);
            next_lsn = nx.first_lsn;
            next_off = nx.offset;
        }
        FUZZ_CHECK(next_lsn > e[i].first_lsn && next_lsn - e[i].first_lsn <= STELE_BATCH_RECORD_COUNT_MAX,
                   "entry %llu: record count out of range", (unsigned long long)i);
        FUZZ_CHECK(next_off > e[i].offset && (next_off - e[i].offset) % STELE_BLOCK_SIZE == 0 &&
                       next_off - e[i].offset <= fmt_batch_frame_size(STELE_BATCH_BODY_SIZE_MAX),
                   "entry %llu: frame size out of range", (unsigned long long)i);
        lsn = next_lsn;
        off = next_off;
    }
    FUZZ_CHECK(lsn == h.last_lsn + 1 && off == h.data_end, "entries do not tile the segment");
    uint8_t *again = malloc(n);
    FUZZ_CHECK(again != NULL, "out of memory");
    FUZZ_CHECK(fmt_segidx_encode(&h, e, again, n) == n && memcmp(again, file, n) == 0,
               "an accepted file does not encode back to itself");
    free(again);
    free(e);
    free(file);
    return 0;
}

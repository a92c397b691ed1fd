/*
 * segidx.h - the byte layout of a segment's read index file, `<segment>.idx`
 * (SPEC.md §19). Pure: encoded into and decoded from caller buffers.
 *
 * file  = header(128) entry(24){entry_count}
 * entry = first_lsn(u64) offset(u64) recorded_at_ns(u64)     ; one per batch, in file order
 *
 * One table serves both lookups: LSN -> batch offset (binary search on
 * first_lsn) and recorded time -> LSN (binary search on recorded_at_ns, which
 * never decreases along the log, SPEC.md §4). An entry's frame size and
 * record count are implied by the next entry (or the header's data_end and
 * last_lsn for the last one).
 */
#ifndef STELE_FORMAT_SEGIDX_H
#define STELE_FORMAT_SEGIDX_H

#include <stddef.h>
#include <stdint.h>

#include "checksum.h"
#include "limits.h"
#include "status.h"

/* "STELEsx1" read as a little-endian u64: seed of the file checksum (SPEC.md §19.1). */
#define STELE_SEED_SEGIDX UINT64_C(0x317873454c455453)
#define STELE_SEGIDX_VERSION 1u
#define STELE_SEGIDX_HEADER_SIZE 128u
#define STELE_SEGIDX_ENTRY_SIZE 24u
#define STELE_SEGIDX_SUFFIX ".idx"
/* A batch frame is at least one block, so a segment holds at most this many. */
#define STELE_SEGIDX_ENTRY_COUNT_MAX (STELE_SEGMENT_SIZE_MAX / STELE_BLOCK_SIZE)
#define STELE_SEGIDX_FILE_SIZE_MAX \
    (STELE_SEGIDX_HEADER_SIZE + STELE_SEGIDX_ENTRY_COUNT_MAX * STELE_SEGIDX_ENTRY_SIZE)

_Static_assert(STELE_SEGIDX_FILE_SIZE_MAX < (UINT64_C(1) << 32), "an index file fits a size_t on every target");

struct fmt_segidx_header {
    uint64_t segment_seed;    /* the segment's seed (SPEC.md §6): log id, seq and first LSN */
    uint64_t first_lsn;
    uint64_t last_lsn;        /* first_lsn - 1 when the segment holds no record */
    uint64_t batch_count;
    uint64_t data_end;        /* the footer's offset */
    uint64_t footer_checksum; /* the footer block's checksum: binds the index to those exact bytes */
    uint64_t entry_count;     /* = batch_count in version 1 */
};

struct fmt_segidx_entry {
    uint64_t first_lsn;
    uint64_t offset;
    uint64_t recorded_at_ns;
};

/* Bytes of a file with entry_count entries. */
static inline uint64_t fmt_segidx_size(uint64_t entry_count)
{
    return STELE_SEGIDX_HEADER_SIZE + entry_count * STELE_SEGIDX_ENTRY_SIZE;
}

/* Writes the whole file (fmt_segidx_size(h->entry_count) bytes) and its
 * checksum. Returns the size, or 0 when dst_capacity is too small. */
size_t fmt_segidx_encode(const struct fmt_segidx_header *h, const struct fmt_segidx_entry *entries, uint8_t *dst,
                         size_t dst_capacity);

/* Checks a whole file, in order (SPEC.md §19.3): size, checksum, magic,
 * version, sizes, reserved bytes, counts, then every entry (the first at the
 * segment's first LSN and offset 4096, LSNs and offsets strictly increasing,
 * offsets on block boundaries and before data_end, frame sizes and record
 * counts within their limits, recorded times never decreasing). On FMT_OK
 * *out is the header and *out_bad_entry is untouched; on a bad entry it is
 * that entry's index (else entry_count). */
enum fmt_status fmt_segidx_decode(const uint8_t *src, size_t src_size, struct fmt_segidx_header *out,
                                  uint64_t *out_bad_entry);

/* Entry i of a file fmt_segidx_decode accepted. */
void fmt_segidx_entry_get(const uint8_t *src, uint64_t i, struct fmt_segidx_entry *out);

#endif

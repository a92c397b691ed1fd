/*
 * segment.h - the meta file, the segment header and the segment footer
 * (SPEC.md §2, §3, §7). Pure: bytes in caller buffers in, structs out, and back.
 */
#ifndef STELE_FORMAT_SEGMENT_H
#define STELE_FORMAT_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "checksum.h"
#include "limits.h"
#include "status.h"

/* SPEC.md §2.1: the log's identity and the options fixed at init. */
struct fmt_meta {
    uint8_t log_id[STELE_LOG_ID_SIZE];
    uint64_t created_at_ns;
    uint64_t segment_size;
    uint64_t idem_window_ns;
    uint32_t payload_size_max;
    uint8_t compression;       /* 0 none, 1 zstd */
    int8_t compression_level;  /* zstd level when compression is zstd */
    uint8_t durability;        /* default durability: 1 sync, 2 interval, 3 none (public enum values) */
};

/* SPEC.md §3: the first block of every segment file. */
struct fmt_segment_header {
    uint8_t log_id[STELE_LOG_ID_SIZE];
    uint64_t seq;            /* 1-based position of the segment in the log */
    uint64_t first_lsn;      /* LSN of the segment's first record */
    uint64_t segment_size;   /* capacity the segment was created with */
    uint64_t created_at_ns;
    uint64_t prev_chain;     /* chain value at the end of the previous segment, 0 for the first */
};

/* SPEC.md §7: the block that seals a segment. */
struct fmt_footer {
    uint64_t last_lsn;       /* first_lsn - 1 when the segment holds no record */
    uint64_t record_count;
    uint64_t batch_count;
    uint64_t data_end;       /* offset of the footer block: header plus every batch frame */
    uint64_t chain;          /* chain value of the last batch (prev_chain if none) */
    uint64_t file_hash;      /* XXH3 of bytes [0, data_end) with the segment seed */
    uint64_t sealed_at_ns;
};

/* Encoders write the whole block (zero padded); dst_capacity must be >= the block size. */
size_t fmt_meta_encode(const struct fmt_meta *meta, uint8_t *dst, size_t dst_capacity);
enum fmt_status fmt_meta_decode(const uint8_t *src, size_t src_size, struct fmt_meta *out);

size_t fmt_segment_header_encode(const struct fmt_segment_header *h, uint8_t *dst, size_t dst_capacity);
enum fmt_status fmt_segment_header_decode(const uint8_t *src, size_t src_size, struct fmt_segment_header *out);

size_t fmt_footer_encode(const struct fmt_footer *f, uint64_t seed, uint8_t *dst, size_t dst_capacity);
enum fmt_status fmt_footer_decode(const uint8_t *src, size_t src_size, uint64_t seed, struct fmt_footer *out);

/* SPEC.md §2: "%020llu.seg" of the segment's first LSN; dst_capacity >= STELE_SEGMENT_NAME_SIZE + 1. */
size_t fmt_segment_name(uint64_t first_lsn, char *dst, size_t dst_capacity);
/* Parses a segment file name; 0 when name is not one. */
int fmt_segment_name_parse(const char *name, uint64_t *out_first_lsn);

#endif

/*
 * batch.h - the batch frame (SPEC.md §4): the unit of atomic write. A 64-byte
 * header, the body (records, possibly zstd-compressed) and zero padding to the
 * next block boundary, so the next batch never shares a block with this one
 * and a torn write cannot touch acknowledged bytes.
 */
#ifndef STELE_FORMAT_BATCH_H
#define STELE_FORMAT_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "limits.h"
#include "status.h"

enum { FMT_COMPRESSION_NONE = 0, FMT_COMPRESSION_ZSTD = 1 };

struct fmt_batch_header {
    uint32_t record_count;
    uint64_t first_lsn;
    uint64_t durable_lsn;   /* every LSN <= this was on stable storage before this batch was written */
    uint64_t prev_chain;    /* chain value of the previous batch in the log */
    uint64_t body_checksum; /* XXH3 of the stored body, segment seed */
    uint32_t stored_size;   /* body bytes as stored */
    uint32_t raw_size;      /* body bytes after decompression */
    uint8_t compression;
    uint32_t dict_id;       /* zstd dictionary id, 0 = none */
};

/* Bytes the frame occupies on disk: header plus stored body, rounded up to a block. */
uint64_t fmt_batch_frame_size(uint32_t stored_size);

/* Writes the 64-byte header; returns its checksum, which is the batch's chain value. */
uint64_t fmt_batch_header_encode(const struct fmt_batch_header *h, uint64_t seed, uint8_t *dst,
                                 size_t dst_capacity);

/* Decodes and checks a header; on FMT_OK *out_chain is the batch's chain value. */
enum fmt_status fmt_batch_header_decode(const uint8_t *src, size_t src_size, uint64_t seed,
                                        struct fmt_batch_header *out, uint64_t *out_chain);

/* Checks the stored body against the header's checksum (before any decompression). */
enum fmt_status fmt_batch_body_check(const struct fmt_batch_header *h, const uint8_t *body,
                                     size_t body_size, uint64_t seed);

/* Walks the raw (decompressed) body: checks that it holds exactly record_count
 * valid records filling raw_size bytes. Calls fn for each unless fn is NULL;
 * a non-zero return from fn stops the walk and is returned as FMT_OK. */
struct fmt_record;
typedef int (*fmt_record_fn)(void *ctx, uint64_t lsn, const struct fmt_record *record, size_t offset);
enum fmt_status fmt_batch_records(const struct fmt_batch_header *h, const uint8_t *raw, size_t raw_size,
                                  uint64_t seed, fmt_record_fn fn, void *ctx, uint64_t *out_bad_lsn);

#endif

/*
 * index.h - the byte layout of the index (checkpoint) file (SPEC.md §15.6).
 * Pure: fixed-size parts are encoded into and decoded from caller buffers;
 * the engine (engine/idx.c) streams the file, feeds every byte to the
 * running file hash and checks what needs context (order, duplicates).
 *
 * file   = header(192) key* stream* comp* footer(24)
 * key    = key-head(48 for an event, 64 for an intent) key-bytes
 * stream = stream-head(16) name-bytes lsn(u64)*lsn_count
 * comp   = comp(24)
 */
#ifndef STELE_FORMAT_INDEX_H
#define STELE_FORMAT_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "checksum.h"
#include "limits.h"
#include "status.h"

/* "STELEix1" read as a little-endian u64: seed of the header checksum and of
 * the file hash (SPEC.md §15.6). */
#define STELE_SEED_INDEX UINT64_C(0x317869454c455453)

#define STELE_INDEX_HEADER_SIZE 192u
#define STELE_INDEX_FOOTER_SIZE 24u
#define STELE_INDEX_KEY_HEAD_PEEK 8u      /* bytes that tell a key record's kind and sizes */
#define STELE_INDEX_EVENT_HEAD_SIZE 48u
#define STELE_INDEX_INTENT_HEAD_SIZE 64u
#define STELE_INDEX_STREAM_HEAD_SIZE 16u
#define STELE_INDEX_COMP_SIZE 24u

/* The largest index file a reader accepts (2^62 bytes): every count is then
 * bounded by the file size, and sums of sizes cannot overflow a u64. */
#define STELE_INDEX_FILE_SIZE_MAX (UINT64_C(1) << 62)

_Static_assert(STELE_KEY_SIZE_MAX <= UINT8_MAX && STELE_STREAM_SIZE_MAX <= UINT8_MAX,
               "key and stream sizes are stored in one byte");

/* SPEC.md §15.6.1: the header; fmt_index_header_decode checks the counts
 * against each other and against file_size. */
struct fmt_index_header {
    uint8_t log_id[STELE_LOG_ID_SIZE];
    uint64_t covered_lsn;
    uint64_t covered_fingerprint;
    uint64_t covered_recorded_at_ns;
    uint64_t window_ns;
    uint64_t written_at_ns;
    uint64_t file_size;         /* the whole file, header to footer */
    uint64_t key_count;         /* key records */
    uint64_t intent_count;      /* of which intents */
    uint64_t pending_count;     /* of which pending (outcome_lsn 0) */
    uint64_t stream_count;      /* stream records */
    uint64_t stream_lsn_count;  /* LSNs of all streams together */
    uint64_t comp_count;        /* compensation records */
};

/* SPEC.md §15.6.2: one key record's fixed part; key_size bytes of key follow. */
struct fmt_index_key {
    uint8_t key_size;           /* 1..255 */
    uint8_t kind;               /* 1 event, 2 intent */
    uint8_t outcome;            /* intents: 0 pending, 1 confirmed, 2 failed; events 0 */
    uint64_t lsn;
    uint64_t fingerprint;
    uint64_t recorded_at_ns;
    uint64_t stream_version;
    uint64_t last_at_ns;
    uint64_t outcome_lsn;       /* intents only */
    uint64_t outcome_fingerprint; /* intents only */
};

/* SPEC.md §15.6.3: a stream record's fixed part; name, then lsn_count LSNs follow. */
struct fmt_index_stream {
    uint8_t name_size;          /* 1..255 */
    uint64_t lsn_count;         /* >= 1 */
};

/* SPEC.md §15.6.4 */
struct fmt_index_comp {
    uint64_t target_lsn;
    uint64_t comp_lsn;
    uint64_t fingerprint;
};

/* SPEC.md §15.6.5 */
struct fmt_index_footer {
    uint64_t file_size;
    uint64_t file_hash;         /* XXH3-64 of file bytes [0, file_size - 8), seed STELE_SEED_INDEX */
};

/* Smallest file that can hold the header's counts (0 when it overflows). */
uint64_t fmt_index_size_min(const struct fmt_index_header *h);

/* The decoders below return FMT_OK, FMT_SHORT, or FMT_BAD_FIELD with
 * *out_why naming the rule broken (a static string; NULL otherwise). */

size_t fmt_index_header_encode(const struct fmt_index_header *h, uint8_t *dst, size_t dst_capacity);
/* Also FMT_ZERO, FMT_BAD_CHECKSUM, FMT_BAD_MAGIC, FMT_BAD_VERSION, in that order. */
enum fmt_status fmt_index_header_decode(const uint8_t *src, size_t src_size, struct fmt_index_header *out,
                                        const char **out_why);

/* Size of a key record's fixed part from its first STELE_INDEX_KEY_HEAD_PEEK
 * bytes: 48 or 64, 0 when the kind is invalid. */
size_t fmt_index_key_head_size(const uint8_t *src);
/* Encodes the fixed part (48 or 64 bytes); returns its size. */
size_t fmt_index_key_encode(const struct fmt_index_key *k, uint8_t *dst, size_t dst_capacity);
/* Decodes and range-checks a fixed part: every LSN within [1, covered_lsn],
 * outcome fields consistent with kind and pending state. */
enum fmt_status fmt_index_key_decode(const uint8_t *src, size_t src_size, uint64_t covered_lsn,
                                     struct fmt_index_key *out, const char **out_why);

size_t fmt_index_stream_encode(const struct fmt_index_stream *s, uint8_t *dst, size_t dst_capacity);
enum fmt_status fmt_index_stream_decode(const uint8_t *src, size_t src_size, struct fmt_index_stream *out,
                                        const char **out_why);

size_t fmt_index_comp_encode(const struct fmt_index_comp *c, uint8_t *dst, size_t dst_capacity);
/* target in [1, covered_lsn), comp_lsn in (target, covered_lsn]. */
enum fmt_status fmt_index_comp_decode(const uint8_t *src, size_t src_size, uint64_t covered_lsn,
                                      struct fmt_index_comp *out, const char **out_why);

size_t fmt_index_footer_encode(const struct fmt_index_footer *f, uint8_t *dst, size_t dst_capacity);
/* Checks the magic; the caller compares file_size and file_hash. */
enum fmt_status fmt_index_footer_decode(const uint8_t *src, size_t src_size, struct fmt_index_footer *out);

#endif

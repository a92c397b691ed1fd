/*
 * limits.h - every size and count limit of format version 1 (SPEC.md §2 and §9).
 *
 * Each limit is named here once, checked with _Static_assert where two of them
 * must agree, and listed in SPEC.md. Hitting a limit is its own error.
 */
#ifndef STELE_FORMAT_LIMITS_H
#define STELE_FORMAT_LIMITS_H

#include <stdint.h>

/* SPEC.md §1: the format version this code writes and the only one it reads. */
#define STELE_FORMAT_VERSION 1u

/* SPEC.md §3: every segment starts with a header block of this size; batches
 * and the footer start at multiples of STELE_BLOCK_SIZE. */
#define STELE_BLOCK_SIZE 4096u

/* SPEC.md §2: the meta file, the segment header and the footer each occupy one block. */
#define STELE_META_SIZE STELE_BLOCK_SIZE
#define STELE_SEGMENT_HEADER_SIZE STELE_BLOCK_SIZE
#define STELE_FOOTER_SIZE STELE_BLOCK_SIZE

/* The encoded (checksummed) part of each fixed structure. */
#define STELE_META_ENCODED_SIZE 128u
#define STELE_SEGMENT_HEADER_ENCODED_SIZE 128u
#define STELE_FOOTER_ENCODED_SIZE 128u
#define STELE_BATCH_HEADER_SIZE 64u
#define STELE_RECORD_HEADER_SIZE 64u

/* SPEC.md §5: variable fields of a record. */
#define STELE_TYPE_SIZE_MAX 255u
#define STELE_STREAM_SIZE_MAX 255u
#define STELE_KEY_SIZE_MAX 255u
#define STELE_ACTOR_SIZE_MAX 255u
#define STELE_RECORD_ALIGN 8u

/* SPEC.md §9: the hard ceiling for the configurable payload maximum. */
#define STELE_PAYLOAD_SIZE_MAX (16u * 1024u * 1024u)
#define STELE_PAYLOAD_SIZE_DEFAULT (1024u * 1024u)

/* SPEC.md §9: a record with every variable field at its maximum. */
#define STELE_RECORD_SIZE_MAX                                                  \
    (STELE_RECORD_HEADER_SIZE + STELE_TYPE_SIZE_MAX + STELE_STREAM_SIZE_MAX +  \
     STELE_KEY_SIZE_MAX + STELE_ACTOR_SIZE_MAX + STELE_PAYLOAD_SIZE_MAX +      \
     STELE_RECORD_ALIGN)

/* SPEC.md §4: a batch body (the records, before compression) and its count. */
#define STELE_BATCH_BODY_SIZE_MAX (64u * 1024u * 1024u)
#define STELE_BATCH_RECORD_COUNT_MAX 65536u

/* SPEC.md §3: segment sizes a log may be created with. */
#define STELE_SEGMENT_SIZE_MIN (64u * 1024u)
#define STELE_SEGMENT_SIZE_MAX (4ull * 1024u * 1024u * 1024u)
#define STELE_SEGMENT_SIZE_DEFAULT (64ull * 1024u * 1024u)

/* SPEC.md §2: segment file names are 20 decimal digits plus ".seg". */
#define STELE_SEGMENT_NAME_SIZE 25u

_Static_assert(STELE_SEGMENT_HEADER_ENCODED_SIZE <= STELE_BLOCK_SIZE, "header fits its block");
_Static_assert(STELE_FOOTER_ENCODED_SIZE <= STELE_BLOCK_SIZE, "footer fits its block");
_Static_assert(STELE_META_ENCODED_SIZE <= STELE_META_SIZE, "meta fits its block");
_Static_assert(STELE_RECORD_SIZE_MAX <= STELE_BATCH_BODY_SIZE_MAX, "one record fits a batch");
_Static_assert(STELE_BATCH_BODY_SIZE_MAX <= UINT32_MAX - STELE_BLOCK_SIZE, "sizes fit u32");
_Static_assert(STELE_SEGMENT_SIZE_MIN % STELE_BLOCK_SIZE == 0, "segment sizes are whole blocks");
_Static_assert(STELE_TYPE_SIZE_MAX <= UINT8_MAX && STELE_KEY_SIZE_MAX <= UINT8_MAX &&
                   STELE_STREAM_SIZE_MAX <= UINT8_MAX && STELE_ACTOR_SIZE_MAX <= UINT8_MAX,
               "variable lengths are stored in one byte");

#endif

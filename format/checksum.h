/*
 * checksum.h - the XXH3 checksums and seeds of format version 1 (SPEC.md §6).
 *
 * Every checksum is XXH3-64. Structures that exist before a segment does (the
 * meta file, the segment header) use STELE_SEED_BASE; everything inside a
 * segment uses that segment's seed, derived from the log id, the segment's
 * sequence number and its first LSN, so bytes copied from another log or
 * another segment (stale, recycled or misdirected) fail their checksum.
 */
#ifndef STELE_FORMAT_CHECKSUM_H
#define STELE_FORMAT_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* "STELEv01" read as a little-endian u64. */
#define STELE_SEED_BASE UINT64_C(0x313076454c455453)
/* "STELEfp1": seed of the request fingerprint (SPEC.md §5.2). */
#define STELE_SEED_FINGERPRINT UINT64_C(0x317066454c455453)

/* "STELEcu1": seed of a consumer cursor record (SPEC.md §16.5). */
#define STELE_SEED_CURSOR UINT64_C(0x317563454c455453)
/* "STELEdl1": hashed with the log id into the dead-letter seed (SPEC.md §16.5). */
#define STELE_SEED_DEAD UINT64_C(0x316c64454c455453)

#define STELE_LOG_ID_SIZE 16u

uint64_t stele_checksum(const void *buf, size_t buf_size, uint64_t seed);
uint64_t stele_segment_seed(const uint8_t log_id[STELE_LOG_ID_SIZE], uint64_t seq, uint64_t first_lsn);

#endif

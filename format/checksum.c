/*
 * checksum.c - XXH3 checksums and per-segment seeds (SPEC.md §6).
 */
#include "checksum.h"

#include <xxhash.h>

#include "endian.h"

uint64_t stele_checksum(const void *buf, size_t buf_size, uint64_t seed)
{
    return XXH3_64bits_withSeed(buf, buf_size, seed);
}

uint64_t stele_segment_seed(const uint8_t log_id[STELE_LOG_ID_SIZE], uint64_t seq, uint64_t first_lsn)
{
    uint8_t in[STELE_LOG_ID_SIZE + 16];
    for (unsigned i = 0; i < STELE_LOG_ID_SIZE; i++)
        in[i] = log_id[i];
    le64_store(in + STELE_LOG_ID_SIZE, seq);
    le64_store(in + STELE_LOG_ID_SIZE + 8, first_lsn);
    return XXH3_64bits_withSeed(in, sizeof in, STELE_SEED_BASE);
}

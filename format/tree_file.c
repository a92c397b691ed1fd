/*
 * tree_file.c - encoding and checking the Merkle tree's derived files
 * (SPEC.md §20.3). The files are derived from the log and never its truth:
 * every byte read back is checked here before the engine believes it.
 */
#include "tree_file.h"

#include <string.h>

#include "checksum.h"
#include "endian.h"

static const uint8_t frontier_magic[8] = {'S', 'T', 'E', 'L', 'E', 'T', 'R', 'F'};
static const uint8_t tiles_magic[8] = {'S', 'T', 'E', 'L', 'E', 'T', 'R', 'T'};

size_t fmt_tree_frontier_encode(const uint8_t log_id[STELE_LOG_ID_SIZE], const struct fmt_frontier *f, uint8_t *dst,
                                size_t dst_capacity)
{
    if (dst_capacity < FMT_TREE_FRONTIER_SIZE || f->size >> 63)
        return 0;
    memset(dst, 0, FMT_TREE_FRONTIER_SIZE);
    memcpy(dst + 8, frontier_magic, sizeof frontier_magic);
    le32_store(dst + 16, FMT_TREE_VERSION);
    le32_store(dst + 20, FMT_TREE_TILE_HEIGHT);
    memcpy(dst + 24, log_id, STELE_LOG_ID_SIZE);
    le64_store(dst + 40, f->size);
    for (unsigned level = 0; level < FMT_MERKLE_LEVEL_COUNT_MAX; level++)
        if (f->size >> level & 1)
            memcpy(dst + FMT_TREE_HEADER_SIZE + level * FMT_HASH_SIZE, f->hash[level], FMT_HASH_SIZE);
    le64_store(dst, stele_checksum(dst + 8, FMT_TREE_FRONTIER_SIZE - 8, STELE_SEED_TREE));
    return FMT_TREE_FRONTIER_SIZE;
}

enum fmt_status fmt_tree_frontier_decode(const uint8_t *src, size_t src_size, uint8_t out_log_id[STELE_LOG_ID_SIZE],
                                         struct fmt_frontier *out)
{
    if (src_size != FMT_TREE_FRONTIER_SIZE)
        return FMT_SHORT;
    if (fmt_is_zero(src, src_size))
        return FMT_ZERO;
    if (le64_load(src) != stele_checksum(src + 8, FMT_TREE_FRONTIER_SIZE - 8, STELE_SEED_TREE))
        return FMT_BAD_CHECKSUM;
    if (memcmp(src + 8, frontier_magic, sizeof frontier_magic) != 0)
        return FMT_BAD_MAGIC;
    if (le32_load(src + 16) != FMT_TREE_VERSION)
        return FMT_BAD_VERSION;
    uint64_t size = le64_load(src + 40);
    if (le32_load(src + 20) != FMT_TREE_TILE_HEIGHT || size >> 63 || !fmt_is_zero(src + 48, 16))
        return FMT_BAD_FIELD;
    memset(out, 0, sizeof *out);
    for (unsigned level = 0; level < FMT_MERKLE_LEVEL_COUNT_MAX; level++) {
        const uint8_t *h = src + FMT_TREE_HEADER_SIZE + level * FMT_HASH_SIZE;
        if (size >> level & 1)
            memcpy(out->hash[level], h, FMT_HASH_SIZE);
        else if (!fmt_is_zero(h, FMT_HASH_SIZE))
            return FMT_BAD_FIELD; /* a slot of a clear bit is zero */
    }
    out->size = size;
    memcpy(out_log_id, src + 24, STELE_LOG_ID_SIZE);
    return FMT_OK;
}

void fmt_tree_tiles_header_encode(const uint8_t log_id[STELE_LOG_ID_SIZE], unsigned level,
                                  uint8_t dst[FMT_TREE_HEADER_SIZE])
{
    memset(dst, 0, FMT_TREE_HEADER_SIZE);
    memcpy(dst + 8, tiles_magic, sizeof tiles_magic);
    le32_store(dst + 16, FMT_TREE_VERSION);
    le32_store(dst + 20, FMT_TREE_TILE_HEIGHT);
    memcpy(dst + 24, log_id, STELE_LOG_ID_SIZE);
    le32_store(dst + 40, level);
    le64_store(dst, stele_checksum(dst + 8, FMT_TREE_HEADER_SIZE - 8, STELE_SEED_TREE));
}

enum fmt_status fmt_tree_tiles_header_decode(const uint8_t src[FMT_TREE_HEADER_SIZE],
                                             uint8_t out_log_id[STELE_LOG_ID_SIZE], unsigned *out_level)
{
    if (fmt_is_zero(src, FMT_TREE_HEADER_SIZE))
        return FMT_ZERO;
    if (le64_load(src) != stele_checksum(src + 8, FMT_TREE_HEADER_SIZE - 8, STELE_SEED_TREE))
        return FMT_BAD_CHECKSUM;
    if (memcmp(src + 8, tiles_magic, sizeof tiles_magic) != 0)
        return FMT_BAD_MAGIC;
    if (le32_load(src + 16) != FMT_TREE_VERSION)
        return FMT_BAD_VERSION;
    uint32_t level = le32_load(src + 40);
    if (le32_load(src + 20) != FMT_TREE_TILE_HEIGHT || level >= FMT_TREE_TILE_LEVEL_COUNT_MAX ||
        !fmt_is_zero(src + 44, 20))
        return FMT_BAD_FIELD;
    memcpy(out_log_id, src + 24, STELE_LOG_ID_SIZE);
    *out_level = level;
    return FMT_OK;
}

uint64_t fmt_tree_tile_checksum(const uint8_t hashes[FMT_TREE_TILE_WIDTH * FMT_HASH_SIZE], unsigned level,
                                uint64_t index)
{
    return stele_checksum(hashes, FMT_TREE_TILE_WIDTH * FMT_HASH_SIZE,
                          STELE_SEED_TREE ^ ((uint64_t)level << 56) ^ index);
}

void fmt_tree_tile_seal(uint8_t tile[FMT_TREE_TILE_SIZE], unsigned level, uint64_t index)
{
    le64_store(tile + FMT_TREE_TILE_WIDTH * FMT_HASH_SIZE, fmt_tree_tile_checksum(tile, level, index));
}

enum fmt_status fmt_tree_tile_check(const uint8_t tile[FMT_TREE_TILE_SIZE], unsigned level, uint64_t index)
{
    if (fmt_is_zero(tile, FMT_TREE_TILE_SIZE))
        return FMT_ZERO;
    if (le64_load(tile + FMT_TREE_TILE_WIDTH * FMT_HASH_SIZE) != fmt_tree_tile_checksum(tile, level, index))
        return FMT_BAD_CHECKSUM;
    return FMT_OK;
}

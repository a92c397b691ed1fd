/*
 * tree_file.h - the byte layout of the Merkle tree's derived files (SPEC.md
 * §20.3): the frontier, `tree.frontier`, and one tile file per tile level,
 * `tree-LL.tiles`. Pure: encoded into and decoded from caller buffers.
 *
 * frontier   = header(64) hash(32){64}                       ; 2112 bytes
 * tiles file = header(64) tile(520)*
 * tile       = hash(32){16} checksum(u64)
 *
 * Tile level L holds the tree's nodes of level 4L, 16 to a tile (tiles of
 * height 4, in the manner of C2SP tlog-tiles, whose tiles have height 8).
 */
#ifndef STELE_FORMAT_TREE_FILE_H
#define STELE_FORMAT_TREE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "checksum.h"
#include "merkle.h"
#include "status.h"

/* "STELEtr1" read as a little-endian u64: seed of every tree file checksum. */
#define STELE_SEED_TREE UINT64_C(0x317274454c455453)
#define FMT_TREE_VERSION 1u
#define FMT_TREE_HEADER_SIZE 64u
#define FMT_TREE_TILE_HEIGHT 4u
#define FMT_TREE_TILE_WIDTH 16u /* 2^FMT_TREE_TILE_HEIGHT */
#define FMT_TREE_TILE_SIZE (FMT_TREE_TILE_WIDTH * FMT_HASH_SIZE + 8u)
/* Levels 0, 4, ..., 60 of a tree of at most 2^63 leaves. */
#define FMT_TREE_TILE_LEVEL_COUNT_MAX 16u
#define FMT_TREE_FRONTIER_SIZE (FMT_TREE_HEADER_SIZE + FMT_MERKLE_LEVEL_COUNT_MAX * FMT_HASH_SIZE)
_Static_assert(FMT_TREE_TILE_WIDTH == 1u << FMT_TREE_TILE_HEIGHT, "tile width");
_Static_assert(FMT_TREE_TILE_LEVEL_COUNT_MAX * FMT_TREE_TILE_HEIGHT >= FMT_MERKLE_LEVEL_COUNT_MAX, "tile levels");

/* The frontier file: the tree's size and its compact frontier. */
size_t fmt_tree_frontier_encode(const uint8_t log_id[STELE_LOG_ID_SIZE], const struct fmt_frontier *f, uint8_t *dst,
                                size_t dst_capacity);
enum fmt_status fmt_tree_frontier_decode(const uint8_t *src, size_t src_size, uint8_t out_log_id[STELE_LOG_ID_SIZE],
                                         struct fmt_frontier *out);

/* The header of tile level `level`'s file. */
void fmt_tree_tiles_header_encode(const uint8_t log_id[STELE_LOG_ID_SIZE], unsigned level,
                                  uint8_t dst[FMT_TREE_HEADER_SIZE]);
enum fmt_status fmt_tree_tiles_header_decode(const uint8_t src[FMT_TREE_HEADER_SIZE],
                                             uint8_t out_log_id[STELE_LOG_ID_SIZE], unsigned *out_level);

/* A tile's checksum: XXH3-64 of its 512 hash bytes, seed STELE_SEED_TREE
 * XOR (level << 56) XOR index. */
uint64_t fmt_tree_tile_checksum(const uint8_t hashes[FMT_TREE_TILE_WIDTH * FMT_HASH_SIZE], unsigned level,
                                uint64_t index);
/* Fills in tile[512, 520) (the checksum) of tile `index` of `level`. */
void fmt_tree_tile_seal(uint8_t tile[FMT_TREE_TILE_SIZE], unsigned level, uint64_t index);
/* FMT_OK, or FMT_BAD_CHECKSUM (FMT_ZERO for a tile never written). */
enum fmt_status fmt_tree_tile_check(const uint8_t tile[FMT_TREE_TILE_SIZE], unsigned level, uint64_t index);

#endif

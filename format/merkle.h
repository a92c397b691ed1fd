/*
 * merkle.h - the Merkle tree of a log (SPEC.md §20): RFC 9162 §2.1 hashing,
 * roots, and inclusion and consistency proofs, generated and verified.
 *
 * Pure: the tree's stored hashes are reached through a caller's callback
 * (node), so the same code proves from files, from memory or in tests. A
 * leaf is SHA-256(0x00 || record bytes [8, record_size)) (§20.1), an
 * interior node SHA-256(0x01 || left || right).
 */
#ifndef STELE_FORMAT_MERKLE_H
#define STELE_FORMAT_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#define FMT_HASH_SIZE 32u
/* A tree of at most 2^63 leaves: an inclusion proof holds at most 63
 * hashes, a consistency proof at most 2 * 63 (SPEC.md §20.2). */
#define FMT_MERKLE_LEVEL_COUNT_MAX 64u
#define FMT_PROOF_HASH_COUNT_MAX 128u
_Static_assert(FMT_PROOF_HASH_COUNT_MAX >= 2 * (FMT_MERKLE_LEVEL_COUNT_MAX - 1), "consistency proof bound");

void fmt_merkle_leaf(const void *data, size_t data_size, uint8_t out[FMT_HASH_SIZE]);
void fmt_merkle_node(const uint8_t left[FMT_HASH_SIZE], const uint8_t right[FMT_HASH_SIZE],
                     uint8_t out[FMT_HASH_SIZE]);

/* The compact frontier: the roots of the complete subtrees of a tree of
 * `size` leaves, one per set bit of size, largest (leftmost) first in
 * hash[level] for each set bit `level`. */
struct fmt_frontier {
    uint64_t size;
    uint8_t hash[FMT_MERKLE_LEVEL_COUNT_MAX][FMT_HASH_SIZE];
};

/* Appends a leaf hash; calls emit(ctx, level, index, hash) for every complete
 * subtree the leaf completes (level 0 first: the leaf itself). */
typedef void (*fmt_merkle_emit_fn)(void *ctx, unsigned level, uint64_t index, const uint8_t hash[FMT_HASH_SIZE]);
void fmt_frontier_push(struct fmt_frontier *f, const uint8_t leaf[FMT_HASH_SIZE], fmt_merkle_emit_fn emit, void *ctx);
/* The root of the frontier's tree; SHA-256 of nothing for the empty tree. */
void fmt_frontier_root(const struct fmt_frontier *f, uint8_t out[FMT_HASH_SIZE]);

/* Fetches the stored hash of the complete subtree at (level, index): leaves
 * [index << level, (index + 1) << level). Returns 0, or the caller's non-zero
 * code, which the proof functions return unchanged. */
typedef int (*fmt_merkle_node_fn)(void *ctx, unsigned level, uint64_t index, uint8_t out[FMT_HASH_SIZE]);

/* RFC 9162 §2.1.1: the hash of leaves [lo, hi), hi > lo, from stored nodes. */
int fmt_merkle_range(fmt_merkle_node_fn node, void *ctx, uint64_t lo, uint64_t hi, uint8_t out[FMT_HASH_SIZE]);

/* RFC 9162 §2.1.3.1: the inclusion proof of leaf index (0-based) in the tree
 * of `size` leaves, index < size. *out_count hashes, in RFC order. */
int fmt_merkle_prove_inclusion(fmt_merkle_node_fn node, void *ctx, uint64_t index, uint64_t size,
                               uint8_t out[][FMT_HASH_SIZE], size_t *out_count);
/* RFC 9162 §2.1.4.1: the consistency proof from the tree of `from` leaves to
 * the tree of `size` leaves, 0 < from <= size. */
int fmt_merkle_prove_consistency(fmt_merkle_node_fn node, void *ctx, uint64_t from, uint64_t size,
                                 uint8_t out[][FMT_HASH_SIZE], size_t *out_count);

/* RFC 9162 §2.1.3.2: 1 when the proof shows leaf at index in the tree of
 * size leaves whose root is root, else 0. */
int fmt_merkle_verify_inclusion(const uint8_t leaf[FMT_HASH_SIZE], uint64_t index, uint64_t size,
                                const uint8_t proof[][FMT_HASH_SIZE], size_t count,
                                const uint8_t root[FMT_HASH_SIZE]);
/* RFC 9162 §2.1.4.2: 1 when the proof shows the tree of `from` leaves with
 * root old_root is a prefix of the tree of `size` leaves with root root. */
int fmt_merkle_verify_consistency(uint64_t from, uint64_t size, const uint8_t old_root[FMT_HASH_SIZE],
                                  const uint8_t root[FMT_HASH_SIZE], const uint8_t proof[][FMT_HASH_SIZE],
                                  size_t count);

#endif

/*
 * merkle.c - RFC 9162 §2.1 Merkle tree hashing and proofs (SPEC.md §20).
 *
 * SHA-256 is libsodium's crypto_hash_sha256: a state on the stack, no
 * allocation, no global, which keeps format/ pure. The proof generators
 * follow RFC 9162's recursive definitions (PATH, SUBPROOF) literally, over
 * a callback that fetches complete subtrees, so that every hash they emit
 * is either a stored node or a combination of stored nodes (range).
 */
#include "merkle.h"

#include <string.h>

#include <sodium.h>

void fmt_merkle_leaf(const void *data, size_t data_size, uint8_t out[FMT_HASH_SIZE])
{
    static const uint8_t prefix = 0x00;
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, &prefix, 1);
    crypto_hash_sha256_update(&st, data, data_size);
    crypto_hash_sha256_final(&st, out);
}

void fmt_merkle_node(const uint8_t left[FMT_HASH_SIZE], const uint8_t right[FMT_HASH_SIZE],
                     uint8_t out[FMT_HASH_SIZE])
{
    uint8_t in[1 + 2 * FMT_HASH_SIZE];
    in[0] = 0x01;
    memcpy(in + 1, left, FMT_HASH_SIZE);
    memcpy(in + 1 + FMT_HASH_SIZE, right, FMT_HASH_SIZE);
    crypto_hash_sha256(out, in, sizeof in);
}

void fmt_frontier_push(struct fmt_frontier *f, const uint8_t leaf[FMT_HASH_SIZE], fmt_merkle_emit_fn emit, void *ctx)
{
    uint8_t cur[FMT_HASH_SIZE];
    memcpy(cur, leaf, FMT_HASH_SIZE);
    uint64_t n = f->size + 1; /* the size once this leaf is in */
    unsigned level = 0;
    if (emit)
        emit(ctx, 0, f->size, cur);
    while (f->size >> level & 1) {
        fmt_merkle_node(f->hash[level], cur, cur);
        level++;
        if (emit)
            emit(ctx, level, (n >> level) - 1, cur);
    }
    memcpy(f->hash[level], cur, FMT_HASH_SIZE);
    f->size = n;
}

void fmt_frontier_root(const struct fmt_frontier *f, uint8_t out[FMT_HASH_SIZE])
{
    if (f->size == 0) {
        crypto_hash_sha256(out, NULL, 0);
        return;
    }
    unsigned level = (unsigned)__builtin_ctzll(f->size);
    uint8_t r[FMT_HASH_SIZE];
    memcpy(r, f->hash[level], FMT_HASH_SIZE);
    for (level++; level < FMT_MERKLE_LEVEL_COUNT_MAX; level++)
        if (f->size >> level & 1)
            fmt_merkle_node(f->hash[level], r, r);
    memcpy(out, r, FMT_HASH_SIZE);
}

/* The largest power of two below n, n >= 2 (RFC 9162's k). */
static uint64_t split(uint64_t n)
{
    return UINT64_C(1) << (63 - __builtin_clzll(n - 1));
}

int fmt_merkle_range(fmt_merkle_node_fn node, void *ctx, uint64_t lo, uint64_t hi, uint8_t out[FMT_HASH_SIZE])
{
    uint64_t n = hi - lo;
    if ((n & (n - 1)) == 0 && lo % n == 0)
        return node(ctx, (unsigned)__builtin_ctzll(n), lo / n, out);
    uint64_t k = split(n);
    uint8_t left[FMT_HASH_SIZE];
    int code = fmt_merkle_range(node, ctx, lo, lo + k, left);
    if (code == 0)
        code = fmt_merkle_range(node, ctx, lo + k, hi, out);
    if (code == 0)
        fmt_merkle_node(left, out, out);
    return code;
}

/* PATH(m, D[lo:hi]); the deepest hash comes first. */
static int path(fmt_merkle_node_fn node, void *ctx, uint64_t m, uint64_t lo, uint64_t hi,
                uint8_t out[][FMT_HASH_SIZE], size_t *count)
{
    if (hi - lo <= 1)
        return 0;
    uint64_t k = split(hi - lo);
    int code;
    if (m < k) {
        if ((code = path(node, ctx, m, lo, lo + k, out, count)) == 0)
            code = fmt_merkle_range(node, ctx, lo + k, hi, out[(*count)++]);
    } else {
        if ((code = path(node, ctx, m - k, lo + k, hi, out, count)) == 0)
            code = fmt_merkle_range(node, ctx, lo, lo + k, out[(*count)++]);
    }
    return code;
}

int fmt_merkle_prove_inclusion(fmt_merkle_node_fn node, void *ctx, uint64_t index, uint64_t size,
                               uint8_t out[][FMT_HASH_SIZE], size_t *out_count)
{
    *out_count = 0;
    return path(node, ctx, index, 0, size, out, out_count);
}

/* SUBPROOF(m, D[lo:hi], b). */
static int subproof(fmt_merkle_node_fn node, void *ctx, uint64_t m, uint64_t lo, uint64_t hi, int b,
                    uint8_t out[][FMT_HASH_SIZE], size_t *count)
{
    uint64_t n = hi - lo;
    if (m == n)
        return b ? 0 : fmt_merkle_range(node, ctx, lo, hi, out[(*count)++]);
    uint64_t k = split(n);
    int code;
    if (m <= k) {
        if ((code = subproof(node, ctx, m, lo, lo + k, b, out, count)) == 0)
            code = fmt_merkle_range(node, ctx, lo + k, hi, out[(*count)++]);
    } else {
        if ((code = subproof(node, ctx, m - k, lo + k, hi, 0, out, count)) == 0)
            code = fmt_merkle_range(node, ctx, lo, lo + k, out[(*count)++]);
    }
    return code;
}

int fmt_merkle_prove_consistency(fmt_merkle_node_fn node, void *ctx, uint64_t from, uint64_t size,
                                 uint8_t out[][FMT_HASH_SIZE], size_t *out_count)
{
    *out_count = 0;
    return subproof(node, ctx, from, 0, size, 1, out, out_count);
}

int fmt_merkle_verify_inclusion(const uint8_t leaf[FMT_HASH_SIZE], uint64_t index, uint64_t size,
                                const uint8_t proof[][FMT_HASH_SIZE], size_t count,
                                const uint8_t root[FMT_HASH_SIZE])
{
    if (index >= size)
        return 0;
    uint64_t fn = index, sn = size - 1;
    uint8_t r[FMT_HASH_SIZE];
    memcpy(r, leaf, FMT_HASH_SIZE);
    for (size_t i = 0; i < count; i++) {
        if (sn == 0)
            return 0;
        if ((fn & 1) || fn == sn) {
            fmt_merkle_node(proof[i], r, r);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            fmt_merkle_node(r, proof[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(r, root, FMT_HASH_SIZE) == 0;
}

int fmt_merkle_verify_consistency(uint64_t from, uint64_t size, const uint8_t old_root[FMT_HASH_SIZE],
                                  const uint8_t root[FMT_HASH_SIZE], const uint8_t proof[][FMT_HASH_SIZE],
                                  size_t count)
{
    if (from == 0 || from > size)
        return 0;
    if (from == size)
        return count == 0 && memcmp(old_root, root, FMT_HASH_SIZE) == 0;
    if (count == 0)
        return 0;
    size_t i = 0;
    uint8_t fr[FMT_HASH_SIZE], sr[FMT_HASH_SIZE];
    if ((from & (from - 1)) == 0) {
        memcpy(fr, old_root, FMT_HASH_SIZE); /* RFC step 2: the first hash is the old root */
    } else {
        memcpy(fr, proof[0], FMT_HASH_SIZE);
        i = 1;
    }
    memcpy(sr, fr, FMT_HASH_SIZE);
    uint64_t fn = from - 1, sn = size - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    for (; i < count; i++) {
        if (sn == 0)
            return 0;
        if ((fn & 1) || fn == sn) {
            fmt_merkle_node(proof[i], fr, fr);
            fmt_merkle_node(proof[i], sr, sr);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            fmt_merkle_node(sr, proof[i], sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(fr, old_root, FMT_HASH_SIZE) == 0 && memcmp(sr, root, FMT_HASH_SIZE) == 0;
}

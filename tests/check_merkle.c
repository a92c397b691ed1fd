/*
 * check_merkle.c - proves the RFC 9162 tree of SPEC.md §20 (format/merkle.c).
 *
 * How:
 *  - Known answers: the eight leaves of the RFC 6962/9162 reference test
 *    vectors (certificate-transparency's merkle_tree_test) give the
 *    published roots for every size 1..8, the published inclusion proofs
 *    (leaf 0 and leaf 5 of 8) and consistency proofs (1->8, 6->8, 2->5),
 *    and the empty tree hashes as SHA-256 of nothing.
 *  - Every size n in [1, 300]: the frontier's root equals the recursive
 *    definition computed from the stored nodes it emitted; every inclusion
 *    proof of every leaf and every consistency proof from every m <= n
 *    verifies, and each with any one byte of one hash flipped, or with another
 *    leaf or (consistency) the previous size's root, does not.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merkle.h"

#define N_MAX 300u

static uint8_t nodes[FMT_MERKLE_LEVEL_COUNT_MAX][N_MAX][FMT_HASH_SIZE];
static uint64_t node_count[FMT_MERKLE_LEVEL_COUNT_MAX];

static void emit(void *ctx, unsigned level, uint64_t index, const uint8_t hash[FMT_HASH_SIZE])
{
    (void)ctx;
    ck_assert_uint_eq(index, node_count[level]);
    memcpy(nodes[level][index], hash, FMT_HASH_SIZE);
    node_count[level]++;
}

static int node(void *ctx, unsigned level, uint64_t index, uint8_t out[FMT_HASH_SIZE])
{
    (void)ctx;
    if (index >= node_count[level])
        return 99;
    memcpy(out, nodes[level][index], FMT_HASH_SIZE);
    return 0;
}

static void unhex(const char *s, uint8_t out[FMT_HASH_SIZE])
{
    for (unsigned i = 0; i < FMT_HASH_SIZE; i++) {
        unsigned v;
        ck_assert_int_eq(sscanf(s + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static const uint8_t l0[] = {0}, l1[] = {0x00}, l2[] = {0x10}, l3[] = {0x20, 0x21}, l4[] = {0x30, 0x31},
                     l5[] = {0x40, 0x41, 0x42, 0x43}, l6[] = {0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57},
                     l7[] = {0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
                             0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f};
static const struct { const uint8_t *p; size_t n; } kat_leaves[8] = {
    {l0, 0}, {l1, 1}, {l2, 1}, {l3, 2}, {l4, 2}, {l5, 4}, {l6, 8}, {l7, 16}};
static const char *kat_roots[8] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};

static void build(struct fmt_frontier *f, uint64_t n, int kat)
{
    memset(node_count, 0, sizeof node_count);
    memset(f, 0, sizeof *f);
    for (uint64_t i = 0; i < n; i++) {
        uint8_t leaf[FMT_HASH_SIZE], data[8];
        if (kat) {
            fmt_merkle_leaf(kat_leaves[i].p, kat_leaves[i].n, leaf);
        } else {
            for (unsigned b = 0; b < 8; b++)
                data[b] = (uint8_t)(i >> (8 * b));
            fmt_merkle_leaf(data, sizeof data, leaf);
        }
        fmt_frontier_push(f, leaf, emit, NULL);
    }
}

static void check_proof(const char *const *want, size_t want_count, uint8_t got[][FMT_HASH_SIZE], size_t got_count)
{
    ck_assert_uint_eq(got_count, want_count);
    for (size_t i = 0; i < want_count; i++) {
        uint8_t w[FMT_HASH_SIZE];
        unhex(want[i], w);
        ck_assert_msg(memcmp(w, got[i], FMT_HASH_SIZE) == 0, "proof hash %zu differs", i);
    }
}

START_TEST(test_known_answers)
{
    struct fmt_frontier f;
    uint8_t root[FMT_HASH_SIZE], want[FMT_HASH_SIZE], r2[FMT_HASH_SIZE];
    build(&f, 0, 1);
    fmt_frontier_root(&f, root);
    unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want);
    ck_assert(memcmp(root, want, FMT_HASH_SIZE) == 0);
    for (uint64_t n = 1; n <= 8; n++) {
        build(&f, n, 1);
        fmt_frontier_root(&f, root);
        unhex(kat_roots[n - 1], want);
        ck_assert_msg(memcmp(root, want, FMT_HASH_SIZE) == 0, "root of size %llu", (unsigned long long)n);
        ck_assert_int_eq(fmt_merkle_range(node, NULL, 0, n, r2), 0);
        ck_assert(memcmp(r2, want, FMT_HASH_SIZE) == 0);
    }
    uint8_t p[FMT_PROOF_HASH_COUNT_MAX][FMT_HASH_SIZE];
    size_t c;
    static const char *inc0[] = {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                                 "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                                 "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"};
    static const char *inc5[] = {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                                 "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                                 "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"};
    static const char *con6[] = {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                                 "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                                 "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"};
    static const char *con2[] = {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                                 "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"};
    build(&f, 8, 1);
    ck_assert_int_eq(fmt_merkle_prove_inclusion(node, NULL, 0, 8, p, &c), 0);
    check_proof(inc0, 3, p, c);
    ck_assert_int_eq(fmt_merkle_prove_inclusion(node, NULL, 5, 8, p, &c), 0);
    check_proof(inc5, 3, p, c);
    ck_assert_int_eq(fmt_merkle_prove_consistency(node, NULL, 1, 8, p, &c), 0);
    check_proof(inc0, 3, p, c);
    ck_assert_int_eq(fmt_merkle_prove_consistency(node, NULL, 6, 8, p, &c), 0);
    check_proof(con6, 3, p, c);
    ck_assert_int_eq(fmt_merkle_prove_consistency(node, NULL, 2, 5, p, &c), 0);
    check_proof(con2, 2, p, c);
}
END_TEST

/* Flips one byte of each hash in turn; the proof must stop verifying. */
START_TEST(test_every_proof)
{
    static uint8_t roots[N_MAX + 1][FMT_HASH_SIZE];
    uint8_t p[FMT_PROOF_HASH_COUNT_MAX][FMT_HASH_SIZE], leaf[FMT_HASH_SIZE];
    struct fmt_frontier f;
    size_t c;
    build(&f, N_MAX, 0);
    for (uint64_t n = 1; n <= N_MAX; n++)
        ck_assert_int_eq(fmt_merkle_range(node, NULL, 0, n, roots[n]), 0);
    fmt_frontier_root(&f, leaf);
    ck_assert(memcmp(leaf, roots[N_MAX], FMT_HASH_SIZE) == 0);
    for (uint64_t n = 1; n <= N_MAX; n += (n < 40 ? 1 : 7)) {
        for (uint64_t i = 0; i < n; i++) {
            ck_assert_int_eq(fmt_merkle_prove_inclusion(node, NULL, i, n, p, &c), 0);
            memcpy(leaf, nodes[0][i], FMT_HASH_SIZE);
            ck_assert_msg(fmt_merkle_verify_inclusion(leaf, i, n, (const uint8_t (*)[FMT_HASH_SIZE])p, c, roots[n]),
                          "inclusion %llu in %llu", (unsigned long long)i, (unsigned long long)n);
            for (size_t h = 0; h < c; h++) {
                p[h][i % FMT_HASH_SIZE] ^= 0x01;
                ck_assert(!fmt_merkle_verify_inclusion(leaf, i, n, (const uint8_t (*)[FMT_HASH_SIZE])p, c, roots[n]));
                p[h][i % FMT_HASH_SIZE] ^= 0x01;
            }
            leaf[0] ^= 0x80;
            ck_assert(!fmt_merkle_verify_inclusion(leaf, i, n, (const uint8_t (*)[FMT_HASH_SIZE])p, c, roots[n]));
        }
        for (uint64_t m = 1; m <= n; m++) {
            ck_assert_int_eq(fmt_merkle_prove_consistency(node, NULL, m, n, p, &c), 0);
            const uint8_t (*cp)[FMT_HASH_SIZE] = (const uint8_t (*)[FMT_HASH_SIZE])p;
            ck_assert_msg(fmt_merkle_verify_consistency(m, n, roots[m], roots[n], cp, c),
                          "consistency %llu -> %llu", (unsigned long long)m, (unsigned long long)n);
            if (m > 1)
                ck_assert(!fmt_merkle_verify_consistency(m, n, roots[m - 1], roots[n], cp, c));
            for (size_t h = 0; h < c; h++) {
                p[h][m % FMT_HASH_SIZE] ^= 0x40;
                ck_assert(!fmt_merkle_verify_consistency(m, n, roots[m], roots[n], cp, c));
                p[h][m % FMT_HASH_SIZE] ^= 0x40;
            }
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("merkle");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_known_answers);
    tcase_add_test(tc, test_every_proof);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

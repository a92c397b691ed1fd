/*
 * check_tree.c - proves the log's Merkle tree as a user of stele.h would
 * check it (SPEC.md §20): roots, inclusion and consistency proofs, the tree
 * files across close, reopen and crashes, and the audit against a rewritten
 * history.
 *
 * How:
 *  - A log of 64 KiB segments (so several are sealed) gets 300 records in
 *    seeded batches of 1-9. The test rebuilds every record's bytes [8,
 *    record_size) from stele_get's fields as SPEC.md §5 lays them out, hashes
 *    each leaf with libsodium itself (0x00 || bytes) and folds them with
 *    format/merkle.c's frontier: the tree's root equals that at every size
 *    0..300 (stele_tree_root_at), and each proof's leaf equals the test's.
 *  - Inclusion proofs of every LSN against the current tree and against
 *    several earlier sizes verify; each with one byte of a hash, the leaf or
 *    the root flipped, with the LSN moved by one, or against another size's
 *    root, does not. Consistency proofs between every pair of a set of sizes
 *    (1..300, both tile boundaries of 16 and 256 and either side of them)
 *    verify, and fail with a byte flipped or the roots swapped. Bad arguments
 *    get their documented codes.
 *  - The tree caught up piece by piece while the log grows has the root of
 *    one built at once. After close and reopen the files are reused (no leaf
 *    rehashed); deleted, truncated mid-tile or with a byte flipped they are
 *    rebuilt from the log (counted, the note says why) to the same root; an
 *    old frontier (its rename lost in a crash) is caught up from.
 *  - Crash: a torn batch is left after the log's last record; the reopen cuts
 *    it, and the tree follows the log (same root, then extended by new
 *    records with a consistency proof from the old size). A tree that covers
 *    records the log no longer holds is CORRUPT naming both sizes.
 *  - Audit, with an attacker: a record's payload byte in the last batch is
 *    changed and its record, body and batch-header checksums recomputed, so
 *    stele_verify calls the log clean; stele_audit against the checkpoint
 *    (size, root) taken before names that LSN (the tree files are the
 *    evidence). With the tree files rebuilt from the rewritten log too, the
 *    audit still fails but cannot name the LSN. A copy holding only a prefix
 *    of the history fails naming the first missing LSN. A clean log passes,
 *    also on a read-only handle in a directory it cannot write.
 *  - Every inclusion proof of a 10,000-record log verifies, and fails with
 *    any one of its hashes flipped.
 *  - Tree calls on one thread while another appends on the same handle:
 *    each root seen is the test's root of that size, and the tree ends at
 *    the log's end.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checksum.h"
#include "merkle.h"
#include "stele.h"
#include "testutil.h"

#define SEG_SIZE (64u * 1024u)
#define RECORDS 300
#define HS STELE_HASH_SIZE

static stele_log *open_log(const char *dir, int create, int read_only)
{
    stele_options o;
    stele_options_init(&o);
    o.create = create;
    o.read_only = read_only;
    o.segment_size = SEG_SIZE;
    o.payload_size_max = 8192;
    o.io_backend = STELE_IO_POSIX;
    /* One batch per call and one sync per append_records (the tree covers
     * durable records only): interval mode with an interval longer than the
     * test, and stele_sync. */
    o.durability = STELE_DURABILITY_INTERVAL;
    o.sync_interval_ms = 60000;
    stele_log *log = NULL;
    int rc = stele_open(dir, &o, &log);
    REQUIRE(rc == STELE_OK, "open %s: %s", dir, stele_errmsg());
    return log;
}

/* Appends records first..first+count-1 in seeded batches of 1-9. */
static void append_records(stele_log *log, uint64_t first, uint64_t count, uint64_t *seed)
{
    static char payload[9][600];
    stele_event ev[9];
    stele_receipt rc[9];
    uint64_t lsn = first;
    while (lsn < first + count) {
        size_t n = 1 + (size_t)(tu_rand(seed) % 9);
        if (n > first + count - lsn)
            n = (size_t)(first + count - lsn);
        memset(ev, 0, sizeof ev);
        for (size_t i = 0; i < n; i++) {
            int len = snprintf(payload[i], sizeof payload[i], "{\"n\":%llu,\"pad\":\"%.*s\"}",
                               (unsigned long long)(lsn + i), (int)(tu_rand(seed) % 500),
                               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                               "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                               "xxxxxxxxxxxxxxxxxxxx");
            ev[i].type = "tree.test";
            ev[i].type_size = 9;
            ev[i].content = STELE_CONTENT_JSON;
            ev[i].payload = payload[i];
            ev[i].payload_size = (size_t)len;
            if ((lsn + i) % 5 == 0) { /* some records with a stream and an actor */
                ev[i].stream = "acct-1";
                ev[i].stream_size = 6;
                ev[i].actor = "alice";
                ev[i].actor_size = 5;
            }
        }
        OK(stele_append_batch(log, ev, n, rc));
        for (size_t i = 0; i < n; i++)
            ck_assert_uint_eq(rc[i].lsn, lsn + i);
        lsn += n;
    }
    OK(stele_sync(log));
}

static void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The leaf of record lsn, from its fields laid out as SPEC.md §5 says and
 * hashed here: SHA-256(0x00 || record bytes [8, record_size)). */
static void leaf_of(stele_log *log, uint64_t lsn, uint8_t out[HS])
{
    stele_record *r = NULL;
    OK(stele_get(log, lsn, &r));
    size_t var = r->type_size + r->stream_size + r->key_size + r->actor_size + r->payload_size;
    uint8_t *b = calloc(1, 64 + var);
    ck_assert_ptr_nonnull(b);
    le32(b + 8, (uint32_t)(64 + var));
    le32(b + 12, (uint32_t)r->payload_size);
    b[16] = (uint8_t)r->kind;
    b[17] = (uint8_t)r->outcome;
    b[18] = (uint8_t)r->content;
    b[19] = (uint8_t)r->flags;
    b[20] = (uint8_t)r->type_size;
    b[21] = (uint8_t)r->stream_size;
    b[22] = (uint8_t)r->key_size;
    b[23] = (uint8_t)r->actor_size;
    le64(b + 24, r->recorded_at_ns);
    le64(b + 32, r->event_time_ns);
    le64(b + 40, r->stream_version);
    le64(b + 48, r->fingerprint);
    le64(b + 56, r->ref);
    uint8_t *p = b + 64;
    memcpy(p, r->type, r->type_size), p += r->type_size;
    memcpy(p, r->stream, r->stream_size), p += r->stream_size;
    memcpy(p, r->key, r->key_size), p += r->key_size;
    memcpy(p, r->actor, r->actor_size), p += r->actor_size;
    memcpy(p, r->payload, r->payload_size);
    b[7] = 0x00; /* the leaf prefix, in the byte before [8, ...) */
    crypto_hash_sha256(out, b + 7, 1 + 56 + var);
    free(b);
    stele_record_free(r);
}

/* The test's own tree: leaf[i] = leaf of LSN i + 1, roots[n] = MTH of the
 * first n (format/merkle.c's frontier folding the test's leaves). */
struct expect {
    uint64_t n;
    uint8_t leaf[RECORDS + 64][HS];
    uint8_t roots[RECORDS + 65][HS];
};

static void expect_build(stele_log *log, uint64_t n, struct expect *e)
{
    struct fmt_frontier f;
    memset(&f, 0, sizeof f);
    e->n = n;
    fmt_frontier_root(&f, e->roots[0]);
    for (uint64_t i = 0; i < n; i++) {
        leaf_of(log, i + 1, e->leaf[i]);
        fmt_frontier_push(&f, e->leaf[i], NULL, NULL);
        fmt_frontier_root(&f, e->roots[i + 1]);
    }
}

struct fixture {
    char *base, *dir;
    uint64_t seed;
    struct expect *e;
};

static void fixture_make(struct fixture *fx, const char *tag, uint64_t records)
{
    fx->base = tu_tmpdir(tag);
    fx->dir = tu_path(fx->base, "log");
    fx->seed = tu_seed(tag);
    fx->e = calloc(1, sizeof *fx->e);
    ck_assert_ptr_nonnull(fx->e);
    stele_log *log = open_log(fx->dir, 1, 0);
    append_records(log, 1, records, &fx->seed);
    expect_build(log, records, fx->e);
    OK(stele_close(log));
}

static void fixture_free(struct fixture *fx)
{
    tu_rmrf(fx->base);
    free(fx->base);
    free(fx->dir);
    free(fx->e);
}

static void flip(uint8_t *p, size_t i)
{
    p[i] ^= 0x40;
}

/* ------------------------------------------------------------ roots */

START_TEST(test_root_matches_merkle)
{
    struct fixture fx;
    fixture_make(&fx, "tree-root", RECORDS);
    stele_log *log = open_log(fx.dir, 0, 0);
    stele_tree_info info;
    OK(stele_tree_info_get(log, &info));
    ck_assert_uint_eq(info.size, RECORDS);
    ck_assert_uint_eq(info.leaves_hashed, RECORDS);
    ck_assert_uint_eq(info.rebuilt, 0);
    ck_assert_mem_eq(info.root, fx.e->roots[RECORDS], HS);
    uint64_t size;
    uint8_t root[HS];
    OK(stele_tree_root(log, &size, root));
    ck_assert_uint_eq(size, RECORDS);
    ck_assert_mem_eq(root, fx.e->roots[RECORDS], HS);
    for (uint64_t n = 0; n <= RECORDS; n++) {
        OK(stele_tree_root_at(log, n, root));
        REQUIRE(memcmp(root, fx.e->roots[n], HS) == 0, "root of size %llu differs", (unsigned long long)n);
    }
    EXPECT(stele_tree_root_at(log, RECORDS + 1, root), STELE_ERR_NOT_FOUND);
    /* The empty tree's root is SHA-256 of nothing (RFC 9162 §2.1.1). */
    uint8_t empty[HS];
    crypto_hash_sha256(empty, (const uint8_t *)"", 0);
    ck_assert_mem_eq(fx.e->roots[0], empty, HS);
    OK(stele_close(log));
    fixture_free(&fx);
}
END_TEST

/* An empty log has the empty tree, and it grows as records arrive. */
START_TEST(test_empty_and_growing)
{
    char *base = tu_tmpdir("tree-grow");
    char *dir = tu_path(base, "log");
    uint64_t seed = tu_seed("tree-grow");
    struct expect *e = calloc(1, sizeof *e);
    ck_assert_ptr_nonnull(e);
    stele_log *log = open_log(dir, 1, 0);
    stele_tree_info info;
    OK(stele_tree_info_get(log, &info));
    ck_assert_uint_eq(info.size, 0);
    uint8_t empty[HS];
    crypto_hash_sha256(empty, (const uint8_t *)"", 0);
    ck_assert_mem_eq(info.root, empty, HS);
    stele_proof p;
    EXPECT(stele_prove_inclusion(log, 1, 0, &p), STELE_ERR_NOT_FOUND);
    /* Caught up a few records at a time, across tile boundaries (16, 256). */
    static const uint64_t steps[] = {1, 2, 13, 16, 17, 31, 32, 33, 255, 256, 257, 290};
    uint64_t have = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        append_records(log, have + 1, steps[i] - have, &seed);
        have = steps[i];
        OK(stele_tree_info_get(log, &info));
        ck_assert_uint_eq(info.size, have);
    }
    ck_assert_uint_eq(info.leaves_hashed, have);
    expect_build(log, have, e);
    ck_assert_mem_eq(info.root, e->roots[have], HS);
    for (uint64_t n = 0; n <= have; n++) {
        uint8_t root[HS];
        OK(stele_tree_root_at(log, n, root));
        REQUIRE(memcmp(root, e->roots[n], HS) == 0, "root of size %llu differs", (unsigned long long)n);
    }
    OK(stele_close(log));
    tu_rmrf(base);
    free(base);
    free(dir);
    free(e);
}
END_TEST

/* ------------------------------------------------------------ proofs */

static void check_inclusion(stele_log *log, const struct expect *e, uint64_t lsn, uint64_t size)
{
    stele_proof p;
    OK(stele_prove_inclusion(log, lsn, size, &p));
    uint64_t n = size ? size : e->n;
    REQUIRE(p.lsn == lsn && p.size == n && p.from_size == 0, "proof of %llu in %llu: fields", (unsigned long long)lsn,
            (unsigned long long)n);
    REQUIRE(memcmp(p.leaf, e->leaf[lsn - 1], HS) == 0, "proof of LSN %llu: leaf differs", (unsigned long long)lsn);
    REQUIRE(memcmp(p.root, e->roots[n], HS) == 0, "proof of LSN %llu in %llu: root differs", (unsigned long long)lsn,
            (unsigned long long)n);
    REQUIRE(stele_proof_verify(&p) == 1, "proof of LSN %llu in %llu does not verify", (unsigned long long)lsn,
            (unsigned long long)n);
    /* The independent check: RFC 9162 §2.1.3.2 in format/merkle.c on the test's leaf and root. */
    REQUIRE(fmt_merkle_verify_inclusion(e->leaf[lsn - 1], lsn - 1, n, (const uint8_t(*)[HS])p.hashes, p.hash_count,
                                        e->roots[n]) == 1,
            "proof of LSN %llu fails the format's verifier", (unsigned long long)lsn);
    for (size_t h = 0; h < p.hash_count; h++) {
        stele_proof q = p;
        flip(q.hashes[h], (h * 7) % HS);
        REQUIRE(stele_proof_verify(&q) == 0, "LSN %llu: flipped hash %zu verifies", (unsigned long long)lsn, h);
    }
    stele_proof q = p;
    flip(q.leaf, lsn % HS);
    REQUIRE(stele_proof_verify(&q) == 0, "LSN %llu: flipped leaf verifies", (unsigned long long)lsn);
    q = p;
    flip(q.root, lsn % HS);
    REQUIRE(stele_proof_verify(&q) == 0, "LSN %llu: flipped root verifies", (unsigned long long)lsn);
    if (n > 1) {
        q = p;
        q.lsn = lsn == n ? lsn - 1 : lsn + 1;
        REQUIRE(stele_proof_verify(&q) == 0, "LSN %llu: proof verifies for LSN %llu", (unsigned long long)lsn,
                (unsigned long long)q.lsn);
        q = p;
        memcpy(q.root, e->roots[n - 1], HS);
        REQUIRE(stele_proof_verify(&q) == 0, "LSN %llu: proof verifies against the root of size %llu",
                (unsigned long long)lsn, (unsigned long long)(n - 1));
    }
    if (p.hash_count > 0) {
        q = p;
        q.hash_count--;
        REQUIRE(stele_proof_verify(&q) == 0, "LSN %llu: a proof short of a hash verifies", (unsigned long long)lsn);
    }
}

START_TEST(test_inclusion_every_lsn)
{
    struct fixture fx;
    fixture_make(&fx, "tree-incl", RECORDS);
    stele_log *log = open_log(fx.dir, 0, 0);
    for (uint64_t lsn = 1; lsn <= RECORDS; lsn++)
        check_inclusion(log, fx.e, lsn, 0);
    static const uint64_t sizes[] = {1, 2, 3, 15, 16, 17, 100, 255, 256, 257, 299};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (uint64_t lsn = 1; lsn <= sizes[i]; lsn += 1 + lsn / 8)
            check_inclusion(log, fx.e, lsn, sizes[i]);
    check_inclusion(log, fx.e, RECORDS, RECORDS); /* size = the current tree, given explicitly */
    stele_proof p;
    EXPECT(stele_prove_inclusion(log, 0, 0, &p), STELE_ERR_NOT_FOUND);
    EXPECT(stele_prove_inclusion(log, RECORDS + 1, 0, &p), STELE_ERR_NOT_FOUND);
    EXPECT(stele_prove_inclusion(log, 10, 5, &p), STELE_ERR_INVALID);
    EXPECT(stele_prove_inclusion(log, 1, RECORDS + 1, &p), STELE_ERR_NOT_FOUND);
    EXPECT(stele_prove_inclusion(NULL, 1, 0, &p), STELE_ERR_INVALID);
    ck_assert_int_eq(stele_proof_verify(NULL), 0);
    OK(stele_close(log));
    fixture_free(&fx);
}
END_TEST

static void check_consistency(stele_log *log, const struct expect *e, uint64_t from, uint64_t size)
{
    stele_proof p;
    OK(stele_prove_consistency(log, from, size, &p));
    REQUIRE(p.lsn == 0 && p.from_size == from && p.size == size, "consistency %llu..%llu: fields",
            (unsigned long long)from, (unsigned long long)size);
    REQUIRE(memcmp(p.from_root, e->roots[from], HS) == 0 && memcmp(p.root, e->roots[size], HS) == 0,
            "consistency %llu..%llu: roots differ", (unsigned long long)from, (unsigned long long)size);
    REQUIRE(stele_proof_verify(&p) == 1, "consistency %llu..%llu does not verify", (unsigned long long)from,
            (unsigned long long)size);
    REQUIRE(fmt_merkle_verify_consistency(from, size, e->roots[from], e->roots[size],
                                          (const uint8_t(*)[HS])p.hashes, p.hash_count) == 1,
            "consistency %llu..%llu fails the format's verifier", (unsigned long long)from, (unsigned long long)size);
    for (size_t h = 0; h < p.hash_count; h++) {
        stele_proof q = p;
        flip(q.hashes[h], (h * 5) % HS);
        REQUIRE(stele_proof_verify(&q) == 0, "consistency %llu..%llu: flipped hash %zu verifies",
                (unsigned long long)from, (unsigned long long)size, h);
    }
    stele_proof q = p;
    flip(q.from_root, 3);
    REQUIRE(stele_proof_verify(&q) == 0, "consistency %llu..%llu: flipped old root verifies",
            (unsigned long long)from, (unsigned long long)size);
    q = p;
    flip(q.root, 30);
    REQUIRE(stele_proof_verify(&q) == 0, "consistency %llu..%llu: flipped root verifies", (unsigned long long)from,
            (unsigned long long)size);
    if (from < size) {
        q = p;
        memcpy(q.from_root, p.root, HS);
        memcpy(q.root, p.from_root, HS);
        REQUIRE(stele_proof_verify(&q) == 0, "consistency %llu..%llu: swapped roots verify",
                (unsigned long long)from, (unsigned long long)size);
        q = p;
        q.from_size = from + 1 < size ? from + 1 : from - 1;
        if (q.from_size > 0)
            REQUIRE(stele_proof_verify(&q) == 0, "consistency %llu..%llu: verifies for from_size %llu",
                    (unsigned long long)from, (unsigned long long)size, (unsigned long long)q.from_size);
    }
}

START_TEST(test_consistency)
{
    struct fixture fx;
    fixture_make(&fx, "tree-cons", RECORDS);
    stele_log *log = open_log(fx.dir, 0, 0);
    static const uint64_t sizes[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 255, 256, 257, 299, 300};
    size_t ns = sizeof sizes / sizeof sizes[0];
    for (size_t i = 0; i < ns; i++)
        for (size_t j = i; j < ns; j++)
            check_consistency(log, fx.e, sizes[i], sizes[j]);
    for (uint64_t from = 1; from <= RECORDS; from++)
        check_consistency(log, fx.e, from, RECORDS);
    stele_proof p;
    OK(stele_prove_consistency(log, 10, 0, &p)); /* 0 = the current tree */
    ck_assert_uint_eq(p.size, RECORDS);
    EXPECT(stele_prove_consistency(log, 0, 0, &p), STELE_ERR_INVALID);
    EXPECT(stele_prove_consistency(log, 20, 10, &p), STELE_ERR_INVALID);
    EXPECT(stele_prove_consistency(log, 1, RECORDS + 1, &p), STELE_ERR_NOT_FOUND);
    OK(stele_close(log));
    fixture_free(&fx);
}
END_TEST

/* ------------------------------------------------------------ files */

static char *file_in(const char *dir, const char *name)
{
    return tu_path(dir, name);
}

static void info_expect(stele_log *log, const struct expect *e, uint64_t hashed, uint64_t rebuilt, const char *note)
{
    stele_tree_info info;
    OK(stele_tree_info_get(log, &info));
    ck_assert_uint_eq(info.size, e->n);
    ck_assert_mem_eq(info.root, e->roots[e->n], HS);
    ck_assert_uint_eq(info.leaves_hashed, hashed);
    ck_assert_uint_eq(info.rebuilt, rebuilt);
    if (note)
        REQUIRE(strstr(info.note, note) != NULL, "note \"%s\" does not say \"%s\"", info.note, note);
    /* Proofs from the (re)built files hold. */
    for (uint64_t lsn = 1; lsn <= e->n; lsn += 37)
        check_inclusion(log, e, lsn, 0);
}

START_TEST(test_reopen_and_rebuild)
{
    struct fixture fx;
    fixture_make(&fx, "tree-files", RECORDS);
    stele_log *log = open_log(fx.dir, 0, 0);
    info_expect(log, fx.e, RECORDS, 0, NULL);
    OK(stele_close(log));

    /* Reopened: the files are trusted, nothing is rehashed. */
    log = open_log(fx.dir, 0, 0);
    info_expect(log, fx.e, 0, 0, NULL);
    OK(stele_close(log));
    /* A read-only handle uses them too. */
    log = open_log(fx.dir, 0, 1);
    info_expect(log, fx.e, 0, 0, NULL);
    OK(stele_close(log));

    char *frontier = file_in(fx.dir, "tree.frontier");
    char *tiles0 = file_in(fx.dir, "tree-00.tiles");
    char *tiles1 = file_in(fx.dir, "tree-01.tiles");
    char *tiles2 = file_in(fx.dir, "tree-02.tiles");
    struct stat st;
    ck_assert_int_eq(stat(tiles2, &st), 0); /* 300 leaves: one node of level 8 */

    /* The frontier deleted: rebuilt from the log. */
    ck_assert_int_eq(unlink(frontier), 0);
    log = open_log(fx.dir, 0, 0);
    info_expect(log, fx.e, RECORDS, 1, "missing");
    OK(stele_close(log));

    /* Every tree file deleted: a new tree, built from the log (not a rebuild). */
    ck_assert_int_eq(unlink(frontier), 0);
    ck_assert_int_eq(unlink(tiles0), 0);
    ck_assert_int_eq(unlink(tiles1), 0);
    ck_assert_int_eq(unlink(tiles2), 0);
    log = open_log(fx.dir, 0, 0);
    info_expect(log, fx.e, RECORDS, 0, NULL);
    OK(stele_close(log));

    /* A level-0 tile cut in the middle (a torn write): rebuilt. */
    size_t size;
    uint8_t *buf = tu_read_file(tiles0, &size);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(truncate(tiles0, (off_t)(64 + 3 * 520 + 100)), 0);
    log = open_log(fx.dir, 0, 0);
    info_expect(log, fx.e, RECORDS, 1, "tree-00.tiles");
    OK(stele_close(log));
    uint8_t *again = tu_read_file(tiles0, &size);
    ck_assert_ptr_nonnull(again);
    ck_assert_mem_eq(again, buf, size); /* rebuilt byte for byte */
    free(again);

    /* One byte flipped in each file, in turn: rebuilt, same root. */
    const char *files[] = {frontier, tiles0, tiles1, tiles2};
    for (size_t f = 0; f < 4; f++) {
        size_t fsize;
        uint8_t *fb = tu_read_file(files[f], &fsize);
        ck_assert_ptr_nonnull(fb);
        for (size_t off = 3; off < fsize; off += fsize / 5 + 1) {
            uint8_t *copy = malloc(fsize);
            memcpy(copy, fb, fsize);
            flip(copy, off);
            ck_assert_int_eq(tu_write_file(files[f], copy, fsize), 0);
            log = open_log(fx.dir, 0, 0);
            /* A damaged full tile is found when a proof reads it (the load
             * checks the frontier, the headers, the tiles being filled and
             * the root, §20.3); proving every LSN reads every tile. */
            stele_tree_info info;
            OK(stele_tree_info_get(log, &info));
            REQUIRE(info.size == RECORDS && memcmp(info.root, fx.e->roots[RECORDS], HS) == 0,
                    "%s byte %zu flipped: size %llu", files[f], off, (unsigned long long)info.size);
            for (uint64_t lsn = 1; lsn <= RECORDS; lsn++)
                check_inclusion(log, fx.e, lsn, 0);
            OK(stele_tree_info_get(log, &info));
            REQUIRE(info.rebuilt == 1, "%s byte %zu flipped: rebuilt %llu times", files[f], off,
                    (unsigned long long)info.rebuilt);
            OK(stele_close(log));
            free(copy);
        }
        free(fb);
    }
    free(buf);
    free(frontier);
    free(tiles0);
    free(tiles1);
    free(tiles2);
    fixture_free(&fx);
}
END_TEST

/* A crash between the tiles' sync and the frontier's rename leaves the older
 * frontier with newer tiles: the tree is caught up from it, not rebuilt. */
START_TEST(test_old_frontier)
{
    struct fixture fx;
    fixture_make(&fx, "tree-oldfr", 100);
    char *frontier = file_in(fx.dir, "tree.frontier");
    stele_log *log = open_log(fx.dir, 0, 0);
    stele_tree_info info;
    OK(stele_tree_info_get(log, &info));
    ck_assert_uint_eq(info.size, 100);
    size_t old_size;
    uint8_t *old = tu_read_file(frontier, &old_size);
    ck_assert_ptr_nonnull(old);
    append_records(log, 101, RECORDS - 100, &fx.seed);
    expect_build(log, RECORDS, fx.e);
    info_expect(log, fx.e, RECORDS, 0, NULL);
    OK(stele_close(log));
    ck_assert_int_eq(tu_write_file(frontier, old, old_size), 0);
    log = open_log(fx.dir, 0, 0);
    info_expect(log, fx.e, RECORDS - 100, 0, NULL);
    OK(stele_close(log));
    free(old);
    free(frontier);
    fixture_free(&fx);
}
END_TEST

/* The newest segment file of dir (the active one): its path, malloc'd. */
static char *newest_segment(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    char best[64] = "";
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n == 24 && strcmp(de->d_name + 20, ".seg") == 0 && strcmp(de->d_name, best) > 0)
            memcpy(best, de->d_name, n + 1); /* n == 24 */
    }
    closedir(d);
    ck_assert_str_ne(best, "");
    return tu_path(dir, best);
}

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld64(const uint8_t *p)
{
    return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32;
}

/* The offset of the last batch of the active segment in buf (its end in
 * *out_end). */
static size_t last_batch(const uint8_t *buf, size_t size, size_t *out_end)
{
    size_t off = 4096, last = 0;
    while (off + 64 <= size && ld32(buf + off + 8) == 0x41425453u) {
        last = off;
        off += (64 + ld32(buf + off + 48) + 4095) / 4096 * 4096;
    }
    ck_assert_uint_ne(last, 0);
    *out_end = off;
    return last;
}

START_TEST(test_crash_torn_tail)
{
    struct fixture fx;
    fixture_make(&fx, "tree-crash", 120);
    stele_log *log = open_log(fx.dir, 0, 0);
    info_expect(log, fx.e, 120, 0, NULL);
    OK(stele_close(log));

    /* A batch torn in the crash: the next frame's header and part of a body,
     * copied from the last batch with its LSN moved on. */
    char *seg = newest_segment(fx.dir);
    size_t size;
    uint8_t *buf = tu_read_file(seg, &size);
    ck_assert_ptr_nonnull(buf);
    size_t end, lb = last_batch(buf, size, &end);
    ck_assert_uint_lt(end + 4096, size);
    memcpy(buf + end, buf + lb, 64 + 100);
    le64(buf + end + 16, ld64(buf + lb + 16) + 1000);
    ck_assert_int_eq(tu_write_file(seg, buf, size), 0);
    free(buf);

    log = open_log(fx.dir, 0, 0);
    stele_stats s;
    OK(stele_stats_get(log, &s));
    info_expect(log, fx.e, 0, 0, NULL); /* the torn batch never reached the tree */
    uint8_t old_root[HS];
    memcpy(old_root, fx.e->roots[120], HS);
    append_records(log, 121, 60, &fx.seed);
    expect_build(log, 180, fx.e);
    info_expect(log, fx.e, 60, 0, NULL);
    stele_proof p;
    OK(stele_prove_consistency(log, 120, 0, &p));
    ck_assert_mem_eq(p.from_root, old_root, HS);
    ck_assert_int_eq(stele_proof_verify(&p), 1);
    OK(stele_close(log));

    /* The log loses its last batch (zeroed, as a disk that lied about a sync
     * would leave it): the reopen cuts it as a torn tail, and the tree,
     * which covers those records, is reported rather than followed. */
    free(seg);
    seg = newest_segment(fx.dir);
    buf = tu_read_file(seg, &size);
    ck_assert_ptr_nonnull(buf);
    lb = last_batch(buf, size, &end);
    uint64_t first_cut = ld64(buf + lb + 16);
    memset(buf + lb, 0, end - lb);
    ck_assert_int_eq(tu_write_file(seg, buf, size), 0);
    free(buf);
    log = open_log(fx.dir, 0, 0);
    stele_tree_info info;
    stele_stats st;
    OK(stele_stats_get(log, &st));
    int trc = stele_tree_info_get(log, &info);
    REQUIRE(trc == STELE_ERR_CORRUPT, "tree info after the loss: %d, size %llu, cut from %llu, last LSN %llu",
            trc, (unsigned long long)info.size, (unsigned long long)first_cut, (unsigned long long)st.last_lsn);
    char want[64];
    snprintf(want, sizeof want, "cover %d records but the log holds %llu", 180, (unsigned long long)(first_cut - 1));
    REQUIRE(strstr(stele_errmsg(), want) != NULL, "message \"%s\" lacks \"%s\"", stele_errmsg(), want);
    EXPECT(stele_prove_inclusion(log, 1, 0, &p), STELE_ERR_CORRUPT);
    OK(stele_close(log));
    free(seg);
    fixture_free(&fx);
}
END_TEST

/* ------------------------------------------------------------ the audit */

/* The attacker: changes one payload byte of record lsn, which must be in
 * the log's last batch, and recomputes the record's checksum, the body's
 * and the batch header's (= the chain value, which nothing later holds). */
static void rewrite_record(const char *dir, uint64_t lsn)
{
    char *seg = newest_segment(dir);
    size_t size;
    uint8_t *buf = tu_read_file(seg, &size);
    ck_assert_ptr_nonnull(buf);
    size_t end, lb = last_batch(buf, size, &end);
    uint8_t *h = buf + lb;
    uint64_t first = ld64(h + 16);
    uint32_t count = ld32(h + 12), stored = ld32(h + 48);
    REQUIRE(lsn >= first && lsn < first + count, "LSN %llu is not in the last batch (%llu + %u)",
            (unsigned long long)lsn, (unsigned long long)first, count);
    ck_assert_uint_eq(h[56], 0); /* not compressed */
    uint64_t seed = stele_segment_seed(buf + 24, ld64(buf + 40), ld64(buf + 48));
    uint8_t *r = h + 64;
    for (uint64_t l = first; l < lsn; l++)
        r += (ld32(r + 8) + 7u) / 8u * 8u;
    uint32_t rsize = ld32(r + 8), psize = ld32(r + 12);
    ck_assert_uint_gt(psize, 4);
    r[rsize - 2] ^= 0x01; /* a byte near the payload's end: "n":123 becomes another number or letter */
    uint32_t padded = (rsize + 7u) / 8u * 8u;
    le64(r, stele_checksum(r + 8, padded - 8, seed ^ lsn));
    le64(h + 40, stele_checksum(h + 64, stored, seed));
    le64(h, stele_checksum(h + 8, 56, seed));
    ck_assert_int_eq(tu_write_file(seg, buf, size), 0);
    free(buf);
    free(seg);
}

static int count_problem(void *ctx, const stele_verify_problem *p, uint64_t done, uint64_t total)
{
    (void)done, (void)total;
    if (p)
        ++*(int *)ctx;
    return 0;
}

START_TEST(test_audit_rewrite)
{
    struct fixture fx;
    fixture_make(&fx, "tree-audit", RECORDS);
    /* The last batch: 4 records, so the rewritten one is not the last LSN. */
    stele_log *log = open_log(fx.dir, 0, 0);
    stele_event ev[4];
    stele_receipt rc[4];
    memset(ev, 0, sizeof ev);
    for (int i = 0; i < 4; i++) {
        ev[i].type = "pay";
        ev[i].type_size = 3;
        ev[i].payload = "{\"amount\":100}";
        ev[i].payload_size = 14;
    }
    OK(stele_append_batch(log, ev, 4, rc));
    OK(stele_sync(log));
    const uint64_t n = RECORDS + 4, target = RECORDS + 2;
    expect_build(log, n, fx.e);
    /* The checkpoint an outsider keeps: (size, root). */
    uint64_t ck_size;
    uint8_t ck_root[HS];
    OK(stele_tree_root(log, &ck_size, ck_root));
    ck_assert_uint_eq(ck_size, n);
    ck_assert_mem_eq(ck_root, fx.e->roots[n], HS);
    stele_audit_report a;
    OK(stele_audit(log, ck_size, ck_root, &a));
    ck_assert_uint_eq(a.records, n);
    ck_assert_uint_eq(a.size, n);
    ck_assert_uint_eq(a.first_bad_lsn, 0);
    ck_assert_int_eq(a.evidence, 1);
    ck_assert_uint_gt(a.bytes, n * 64);
    ck_assert_mem_eq(a.root, ck_root, HS);
    /* An earlier checkpoint passes too, and a wrong root does not. */
    OK(stele_audit(log, 100, fx.e->roots[100], &a));
    ck_assert_uint_eq(a.records, n);
    uint8_t wrong[HS];
    memcpy(wrong, fx.e->roots[100], HS);
    flip(wrong, 0);
    EXPECT(stele_audit(log, 100, wrong, &a), STELE_ERR_CORRUPT);
    OK(stele_close(log));

    rewrite_record(fx.dir, target);
    int problems = 0;
    stele_verify_report vr;
    OK(stele_verify(fx.dir, count_problem, &problems, &vr)); /* the checksums all agree */
    ck_assert_int_eq(problems, 0);
    ck_assert_uint_eq(vr.last_lsn, n);

    log = open_log(fx.dir, 0, 0);
    stele_record *r = NULL;
    OK(stele_get(log, target, &r)); /* the log serves the rewritten record as good */
    ck_assert_int_ne(memcmp(r->payload, ev[2].payload, 14), 0);
    stele_record_free(r);
    EXPECT(stele_audit(log, ck_size, ck_root, &a), STELE_ERR_CORRUPT);
    ck_assert_uint_eq(a.first_bad_lsn, target);
    ck_assert_int_eq(a.evidence, 1);
    ck_assert_uint_eq(a.records, n);
    ck_assert_mem_ne(a.root, ck_root, HS);
    char want[32];
    snprintf(want, sizeof want, "LSN %llu ", (unsigned long long)target);
    REQUIRE(strstr(stele_errmsg(), want) != NULL, "message \"%s\" lacks \"%s\"", stele_errmsg(), want);
    /* A checkpoint from before the rewritten record still holds. */
    OK(stele_audit(log, RECORDS, fx.e->roots[RECORDS], &a));
    OK(stele_close(log));

    /* The attacker rewrites the tree files too (here: rebuilt from the
     * rewritten log): the audit still fails, but cannot name the LSN. */
    char *frontier = file_in(fx.dir, "tree.frontier");
    ck_assert_int_eq(unlink(frontier), 0);
    free(frontier);
    log = open_log(fx.dir, 0, 0);
    stele_tree_info info;
    OK(stele_tree_info_get(log, &info));
    ck_assert_uint_eq(info.rebuilt, 1);
    ck_assert_mem_ne(info.root, ck_root, HS);
    EXPECT(stele_audit(log, ck_size, ck_root, &a), STELE_ERR_CORRUPT);
    ck_assert_uint_eq(a.first_bad_lsn, 0);
    ck_assert_int_eq(a.evidence, 0);
    REQUIRE(strstr(stele_errmsg(), "do not hash to the checkpoint's root") != NULL, "message: %s", stele_errmsg());
    OK(stele_close(log));
    fixture_free(&fx);
}
END_TEST

static size_t dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    size_t n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

/* A copy holding a prefix of the history (the newest records dropped) fails
 * the audit of a later checkpoint, naming the first missing LSN; a clean
 * log passes on a read-only handle in a directory it cannot write. */
START_TEST(test_audit_truncated_and_read_only)
{
    struct fixture fx;
    fixture_make(&fx, "tree-trunc", 150);
    char *copy = tu_path(fx.base, "copy");
    ck_assert_int_eq(tu_copy_dir(fx.dir, copy), 0);
    stele_log *log = open_log(fx.dir, 0, 0);
    append_records(log, 151, 50, &fx.seed);
    uint64_t ck_size;
    uint8_t ck_root[HS];
    OK(stele_tree_root(log, &ck_size, ck_root));
    ck_assert_uint_eq(ck_size, 200);
    OK(stele_close(log));

    log = open_log(copy, 0, 0);
    stele_audit_report a;
    EXPECT(stele_audit(log, ck_size, ck_root, &a), STELE_ERR_CORRUPT);
    ck_assert_uint_eq(a.records, 150);
    ck_assert_uint_eq(a.first_bad_lsn, 151);
    REQUIRE(strstr(stele_errmsg(), "LSN 151 and after are missing") != NULL, "message: %s", stele_errmsg());
    OK(stele_close(log));

    /* The original, read-only, in a directory without write permission (as
     * an auditor's copy may be): the audit reads and passes. Root may write
     * anywhere, so the permission part is checked only where it binds. */
    ck_assert_int_eq(chmod(fx.dir, 0555), 0);
    int binds = access(fx.dir, W_OK) != 0;
    log = open_log(fx.dir, 0, 1);
    int rc = stele_audit(log, ck_size, ck_root, &a);
    REQUIRE(rc == STELE_OK, "read-only audit (directory writable: %d): %s", !binds, stele_errmsg());
    ck_assert_uint_eq(a.records, 200);
    ck_assert_int_eq(a.evidence, 1);
    OK(stele_close(log));
    ck_assert_int_eq(chmod(fx.dir, 0755), 0);

    /* Without tree files the audit still recomputes and passes, with no
     * evidence, and creates no file. */
    char *bare = tu_path(fx.base, "bare");
    ck_assert_int_eq(tu_copy_dir(fx.dir, bare), 0);
    static const char *const tree_files[] = {"tree.frontier", "tree-00.tiles", "tree-01.tiles"};
    for (size_t i = 0; i < 3; i++) {
        char *f = tu_path(bare, tree_files[i]);
        ck_assert_int_eq(unlink(f), 0);
        free(f);
    }
    size_t before = dir_entries(bare);
    log = open_log(bare, 0, 1);
    OK(stele_audit(log, ck_size, ck_root, &a));
    ck_assert_int_eq(a.evidence, 0);
    ck_assert_uint_eq(a.records, 200);
    EXPECT(stele_audit(log, ck_size, fx.e->roots[0], &a), STELE_ERR_CORRUPT);
    OK(stele_close(log));
    ck_assert_uint_eq(dir_entries(bare), before);
    free(bare);
    free(copy);
    fixture_free(&fx);
}
END_TEST

/* Every inclusion proof of a 10,000-record log (the bar) verifies
 * and carries the test's own leaf; each with any one hash flipped fails. */
#define BIG 10000
START_TEST(test_every_proof_of_10000)
{
    char *base = tu_tmpdir("tree-big");
    char *dir = tu_path(base, "log");
    stele_log *log = open_log(dir, 1, 0);
    static stele_event ev[100];
    static stele_receipt rc[100];
    static char text[100][32];
    for (uint64_t lsn = 1; lsn <= BIG; lsn += 100) {
        memset(ev, 0, sizeof ev);
        for (int i = 0; i < 100; i++) {
            int len = snprintf(text[i], sizeof text[i], "{\"n\":%llu}", (unsigned long long)(lsn + (uint64_t)i));
            ev[i].type = "big";
            ev[i].type_size = 3;
            ev[i].payload = text[i];
            ev[i].payload_size = (size_t)len;
        }
        OK(stele_append_batch(log, ev, 100, rc));
    }
    OK(stele_sync(log));
    uint8_t(*leaf)[HS] = malloc((size_t)BIG * HS);
    ck_assert_ptr_nonnull(leaf);
    struct fmt_frontier f;
    memset(&f, 0, sizeof f);
    for (uint64_t i = 0; i < BIG; i++) {
        leaf_of(log, i + 1, leaf[i]);
        fmt_frontier_push(&f, leaf[i], NULL, NULL);
    }
    uint8_t root[HS];
    fmt_frontier_root(&f, root);
    static stele_proof p;
    for (uint64_t lsn = 1; lsn <= BIG; lsn++) {
        OK(stele_prove_inclusion(log, lsn, 0, &p));
        REQUIRE(p.size == BIG && memcmp(p.leaf, leaf[lsn - 1], HS) == 0 && memcmp(p.root, root, HS) == 0,
                "proof of LSN %llu: leaf or root differs", (unsigned long long)lsn);
        REQUIRE(stele_proof_verify(&p) == 1, "proof of LSN %llu does not verify", (unsigned long long)lsn);
        for (size_t h = 0; h < p.hash_count; h++) {
            p.hashes[h][h % HS] ^= 1;
            REQUIRE(stele_proof_verify(&p) == 0, "LSN %llu: verifies with hash %zu flipped", (unsigned long long)lsn,
                    h);
            p.hashes[h][h % HS] ^= 1;
        }
    }
    OK(stele_close(log));
    free(leaf);
    tu_rmrf(base);
    free(base);
    free(dir);
}
END_TEST

/* Tree calls on one thread while another appends on the same handle: every
 * answer is a tree of the durable records at that moment (its root is the
 * test's for that size, afterwards), and the tree ends at the log's end. */
struct appender {
    stele_log *log;
    uint64_t seed;
    _Atomic uint64_t tree_seen; /* the largest tree size the main thread got */
};

static void *append_thread(void *arg)
{
    struct appender *a = arg;
    for (uint64_t lsn = 1; lsn <= RECORDS; lsn += 10) { /* each chunk ends with a sync: durable in steps */
        append_records(a->log, lsn, 10, &a->seed);
        /* Halfway, wait until a tree call saw it (so that at least one size
         * between 0 and the end is seen, however the threads are scheduled). */
        while (lsn + 9 == RECORDS / 2 && atomic_load(&a->tree_seen) < RECORDS / 2)
            sched_yield();
    }
    return NULL;
}

START_TEST(test_concurrent_appends)
{
    char *base = tu_tmpdir("tree-conc");
    char *dir = tu_path(base, "log");
    struct appender a = {open_log(dir, 1, 0), tu_seed("tree-conc"), 0};
    static uint8_t seen[RECORDS + 1][HS];
    static int have[RECORDS + 1];
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, append_thread, &a), 0);
    stele_stats st;
    do {
        stele_tree_info info;
        OK(stele_stats_get(a.log, &st));
        OK(stele_tree_info_get(a.log, &info));
        REQUIRE(info.size <= RECORDS, "tree size %llu", (unsigned long long)info.size);
        memcpy(seen[info.size], info.root, HS);
        have[info.size] = 1;
        if (info.size > atomic_load(&a.tree_seen))
            atomic_store(&a.tree_seen, info.size);
        if (info.size > 0) {
            stele_proof p;
            OK(stele_prove_inclusion(a.log, info.size, info.size, &p));
            ck_assert_int_eq(stele_proof_verify(&p), 1);
        }
    } while (st.durable_lsn < RECORDS);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    struct expect *e = calloc(1, sizeof *e);
    ck_assert_ptr_nonnull(e);
    expect_build(a.log, RECORDS, e);
    info_expect(a.log, e, RECORDS, 0, NULL);
    int sizes = 0;
    for (uint64_t n = 0; n <= RECORDS; n++)
        if (have[n]) {
            sizes++;
            REQUIRE(memcmp(seen[n], e->roots[n], HS) == 0, "root seen at size %llu differs", (unsigned long long)n);
        }
    REQUIRE(sizes >= 2 && have[RECORDS], "sizes seen: %d", sizes); /* halfway (at least) and the end */
    OK(stele_close(a.log));
    free(e);
    tu_rmrf(base);
    free(base);
    free(dir);
}
END_TEST

static Suite *tree_suite(void)
{
    Suite *s = suite_create("tree");
    TCase *tc = tcase_create("tree");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_root_matches_merkle);
    tcase_add_test(tc, test_empty_and_growing);
    tcase_add_test(tc, test_inclusion_every_lsn);
    tcase_add_test(tc, test_consistency);
    tcase_add_test(tc, test_reopen_and_rebuild);
    tcase_add_test(tc, test_old_frontier);
    tcase_add_test(tc, test_crash_torn_tail);
    tcase_add_test(tc, test_audit_rewrite);
    tcase_add_test(tc, test_audit_truncated_and_read_only);
    tcase_add_test(tc, test_every_proof_of_10000);
    tcase_add_test(tc, test_concurrent_appends);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tree_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

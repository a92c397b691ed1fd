/*
 * testutil.h - small helpers the Check suites share: scratch directories,
 * whole-file reads and writes, seeded randomness with the seed printed, and
 * the assertion macros REQUIRE, EXPECT and OK.
 */
#ifndef STELE_TESTUTIL_H
#define STELE_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "stele.h"

/* ck_assert marks a point on every pass; hot loops use REQUIRE, which only
 * calls into Check when the condition fails. */
#define REQUIRE(cond, ...)                                                     \
    do {                                                                       \
        if (!(cond))                                                           \
            ck_abort_msg(__VA_ARGS__);                                         \
    } while (0)

/* Asserts that expr returns the stele code want, with the thread's error
 * message when it does not. */
#define EXPECT(expr, want)                                                     \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        REQUIRE(rc_ == (int)(want), "%s = %d (%s), want %d (%s); errmsg: %s", #expr, rc_, \
                stele_strerror(rc_), (int)(want), stele_strerror((int)(want)), stele_errmsg()); \
    } while (0)
#define OK(expr) EXPECT(expr, STELE_OK)

/* A fresh, empty directory under $STELE_TEST_TMP (or /tmp); the caller frees the path. */
char *tu_tmpdir(const char *tag);
/* rm -rf path. */
void tu_rmrf(const char *path);
/* Reads a whole file into a malloc'd buffer; NULL on failure. */
uint8_t *tu_read_file(const char *path, size_t *out_size);
/* Writes buf to path (created or truncated); 0 on success. */
int tu_write_file(const char *path, const void *buf, size_t size);
/* Copies directory src (flat, files only) to dst (created); 0 on success. A file
 * that disappears between listing and reading is skipped. */
int tu_copy_dir(const char *src, const char *dst);
/* Path of a file inside dir; the caller frees it. */
char *tu_path(const char *dir, const char *name);

/* The log dir's index checkpoint (SPEC.md §2, index.ckpt), malloc'd; NULL when there is none. */
char *tu_index_file(const char *dir);
/* Seed from $STELE_TEST_SEED or the clock, printed to stderr so a failure can be replayed. */
uint64_t tu_seed(const char *what);
/* xorshift64* step. */
uint64_t tu_rand(uint64_t *state);

#endif

/*
 * check_cursor.c - proves the consumer cursors and dead letters of stele.h
 * (engine/cursor.c, SPEC.md §16).
 *
 * How:
 *  - Commit and reopen: positions survive closing the cursor and the log;
 *    committing the same position again writes nothing; a position below the
 *    current one or beyond the last acknowledged LSN is INVALID and changes
 *    nothing; a handle on a read-only log changes the consumer too (catching
 *    up with the writer to commit its new records), while a second handle of
 *    the same consumer reads the holder's commits and gets LOCKED, naming the
 *    consumer and the pid, for every change, until the holder closes.
 *  - Names: every name outside 1..64 characters of [A-Za-z0-9._-] is INVALID.
 *  - Faults: on the fault-injecting backend the Nth metadata operation
 *    (create of the .tmp, rename), the Nth sync (directory, fdatasync) and the
 *    Nth write of a commit fail, for N = 1, 2, ... until a commit gets
 *    through. Each failure is reported with its code and the path, fences the
 *    handle (FENCED next), and a reopened cursor holds the old position (or
 *    the new one only when just the final directory sync failed, i.e. after
 *    the rename), with no .tmp left behind. A crash between write and rename
 *    is also staged directly: a stray NAME.cursor.tmp holding a later
 *    position is ignored and removed at open.
 *  - Damage: every single-byte flip and every truncation of a cursor file is
 *    CORRUPT naming the path and an offset, and the file is left as it was;
 *    records with a fixed-up checksum but a position beyond the log, another
 *    log's id or another version are CORRUPT, CORRUPT and FORMAT.
 *  - Dead letters: a round trip of add, re-add (the latest wins), resolve,
 *    list with and without resolved ones, across reopens; invalid arguments;
 *    every flipped byte of the file (last record included) is CORRUPT with its
 *    record's offset and the file is left as it was; a
 *    torn tail (a truncated last record, or zeros) is cut by a writable open
 *    and appends continue after it; a failed append fences the handle and
 *    leaves nothing visible.
 *  - Other processes (fork): while this process holds a consumer, a child
 *    opens it through a read-only log handle, reads its position and dead
 *    letters, and gets LOCKED naming the consumer and this pid for every
 *    change; once the holder closes, a child takes the lock (its pid in the
 *    lock file) and commits. A consumer commits through a read-only log
 *    handle, record by record, while a child process holds the log writable
 *    and appends; every record is seen once, in order, and a commit past what
 *    the handle shows is INVALID. Where no lock file can be made (an
 *    immutable consumers/ directory stands in for a read-only file system),
 *    the consumer opens for reading and changes are READ_ONLY naming the path
 *    and errno.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checksum.h"
#include "endian.h"
#include "internal.h"
#include "io.h"
#include "stele.h"
#include "testutil.h"

/* SPEC.md §16.5: the cursor record's seed, "STELEcu1" as a little-endian u64. */
#define SPEC_SEED_CURSOR UINT64_C(0x317563454c455453)
#define RECORDS 10

static stele_options opts_posix(int create)
{
    stele_options o;
    stele_options_init(&o);
    o.io_backend = STELE_IO_POSIX;
    o.create = create;
    return o;
}

/* Appends n new events (each with a key never used before in this process). */
static void append_events(stele_log *log, int n)
{
    static int next;
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "key-%d", next++);
        stele_event e = {.type = "t", .type_size = 1, .key = key, .key_size = strlen(key)};
        OK(stele_append(log, &e, NULL));
    }
}

/* A fresh log in a new directory holding RECORDS events. */
static stele_log *new_log(char **out_dir)
{
    char *dir = tu_tmpdir("cursor");
    stele_options o = opts_posix(1);
    stele_log *log;
    OK(stele_open(dir, &o, &log));
    append_events(log, RECORDS);
    *out_dir = dir;
    return log;
}

static stele_log *reopen(const char *dir, int read_only)
{
    stele_options o = opts_posix(0);
    o.read_only = read_only;
    stele_log *log;
    OK(stele_open(dir, &o, &log));
    return log;
}

static void expect_list(stele_cursor *c, int include_resolved, const char *want);

static uint64_t position_of(stele_log *log, const char *name)
{
    stele_cursor *c;
    uint64_t pos = 0;
    OK(stele_cursor_open(log, name, &c));
    OK(stele_cursor_position(c, &pos));
    stele_cursor_close(c);
    return pos;
}

static char *consumer_file(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 32);
    sprintf(p, "%s/consumers/%s", dir, name);
    return p;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

START_TEST(test_commit_reopen)
{
    char *dir;
    stele_log *log = new_log(&dir);
    stele_cursor *c;
    uint64_t pos = 99;
    OK(stele_cursor_open(log, "c1", &c));
    OK(stele_cursor_position(c, &pos));
    ck_assert_uint_eq(pos, 0);
    char *file = consumer_file(dir, "c1.cursor");
    ck_assert(!file_exists(file)); /* nothing is created before the first commit */
    OK(stele_cursor_commit(c, 3));
    OK(stele_cursor_commit(c, 3));
    EXPECT(stele_cursor_commit(c, 2), STELE_ERR_INVALID);
    ck_assert(strstr(stele_errmsg(), "below its position 3"));
    EXPECT(stele_cursor_commit(c, RECORDS + 1), STELE_ERR_INVALID);
    ck_assert(strstr(stele_errmsg(), "beyond the log's last acknowledged LSN 10"));
    OK(stele_cursor_position(c, &pos));
    ck_assert_uint_eq(pos, 3);
    ck_assert_uint_eq(position_of(log, "c2"), 0); /* cursors are independent */
    OK(stele_cursor_commit(c, RECORDS));
    stele_cursor_close(c);
    OK(stele_close(log));
    size_t size;
    uint8_t *bytes = tu_read_file(file, &size);
    ck_assert_ptr_nonnull(bytes);
    ck_assert_uint_eq(size, 64);
    ck_assert_uint_eq(le64_load(bytes + 40), RECORDS);
    free(bytes);

    log = reopen(dir, 0);
    ck_assert_uint_eq(position_of(log, "c1"), RECORDS);
    /* Through a read-only log handle the consumer changes too: its handle
     * holds the consumer's lock, so a second handle (here on the writable
     * log, in the same process) reads and every change of it is LOCKED. */
    stele_log *ro = reopen(dir, 1);
    stele_cursor *rc;
    OK(stele_cursor_open(ro, "c1", &rc));
    OK(stele_cursor_exclusive(rc));
    OK(stele_cursor_position(rc, &pos));
    ck_assert_uint_eq(pos, RECORDS);
    append_events(log, 2);
    OK(stele_cursor_open(log, "c1", &c));
    EXPECT(stele_cursor_exclusive(c), STELE_ERR_LOCKED);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld holds", (long)getpid());
    REQUIRE(strstr(stele_errmsg(), "consumer c1") && strstr(stele_errmsg(), pid) &&
            strstr(stele_errmsg(), "consumers/c1.lock"), "LOCKED names neither consumer, pid nor lock: %s",
            stele_errmsg());
    EXPECT(stele_cursor_commit(c, RECORDS + 2), STELE_ERR_LOCKED);
    REQUIRE(strstr(stele_errmsg(), "commit consumer c1") && strstr(stele_errmsg(), pid), "%s", stele_errmsg());
    stele_dead_letter dl = {.lsn = 1, .attempts = 1};
    EXPECT(stele_dead_letter_add(c, &dl), STELE_ERR_LOCKED);
    EXPECT(stele_dead_letter_resolve(c, 1), STELE_ERR_LOCKED);
    /* The read-only handle catches up with the writer's appends to commit. */
    OK(stele_cursor_commit(rc, RECORDS + 2));
    EXPECT(stele_cursor_commit(rc, RECORDS + 3), STELE_ERR_INVALID);
    OK(stele_cursor_position(c, &pos)); /* the other handle reads the holder's commit */
    ck_assert_uint_eq(pos, RECORDS + 2);
    OK(stele_dead_letter_add(rc, &dl));
    expect_list(c, 0, "1:::1::dead");
    stele_cursor_close(rc);
    stele_cursor_close(c);
    OK(stele_cursor_open(log, "c1", &c)); /* closing released the lock */
    OK(stele_cursor_exclusive(c));
    OK(stele_dead_letter_resolve(c, 1));
    stele_cursor_close(c);
    OK(stele_close(ro));
    OK(stele_close(log));
    free(file);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(test_names)
{
    char *dir;
    stele_log *log = new_log(&dir);
    char long_name[80];
    memset(long_name, 'a', sizeof long_name);
    long_name[64] = '\0';
    const char *good[] = {"a", "A.b_c-9", long_name};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        stele_cursor *c;
        OK(stele_cursor_open(log, good[i], &c));
        OK(stele_cursor_commit(c, 1));
        stele_cursor_close(c);
    }
    long_name[64] = 'a';
    long_name[65] = '\0';
    const char *bad[] = {"", ".", "..", "a/b", "../x", "a b", "caf\xc3\xa9", "x\n", "a:b", long_name};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        stele_cursor *c = NULL;
        EXPECT(stele_cursor_open(log, bad[i], &c), STELE_ERR_INVALID);
        ck_assert_ptr_null(c);
        ck_assert(strstr(stele_errmsg(), "consumer name"));
    }
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* One commit of 5 -> 8 with the nth call among ops failing; returns whether
 * the fault was reached. */
static int fault_commit_run(const char *base, unsigned ops, uint64_t nth)
{
    char sub[64];
    snprintf(sub, sizeof sub, "run-%u-%llu", ops, (unsigned long long)nth);
    char *dir = tu_path(base, sub);
    stele_options o = opts_posix(1);
    struct io *io = io_fault_create(io_posix_create());
    stele_log *log;
    OK(stele_open_io(dir, &o, io, &log));
    append_events(log, RECORDS);
    stele_cursor *c;
    OK(stele_cursor_open(log, "c", &c));
    OK(stele_cursor_commit(c, 5));
    stele_cursor_close(c);
    OK(stele_cursor_open(log, "c", &c)); /* a fresh handle: its first commit makes sure of the directory */
    uint64_t before = io_fault_count(io, ops);
    io_fault_arm(io, ops, nth, EIO, 0);
    int code = stele_cursor_commit(c, 8);
    int reached = io_fault_count(io, ops) - before >= nth;
    io_fault_arm(io, ops, 0, 0, 0);
    if (!reached) {
        OK(code);
    } else {
        REQUIRE(code == STELE_ERR_IO && strstr(stele_errmsg(), dir) && strstr(stele_errmsg(), "Input/output"),
                "ops %u nth %llu: commit gave %s: %s", ops, (unsigned long long)nth, stele_strerror(code),
                stele_errmsg());
        int after_rename = strstr(stele_errmsg(), "sync directory") && strstr(stele_errmsg(), "/consumers:");
        EXPECT(stele_cursor_commit(c, 9), STELE_ERR_FENCED);
        ck_assert(strstr(stele_errmsg(), "reopen the cursor"));
        stele_cursor_close(c);
        uint64_t pos;
        OK(stele_cursor_open(log, "c", &c));
        OK(stele_cursor_position(c, &pos));
        /* The final directory sync is the only step after the rename. */
        REQUIRE(pos == 5 || (pos == 8 && after_rename), "ops %u nth %llu: position %llu after a failed commit (%s)",
                ops, (unsigned long long)nth, (unsigned long long)pos, stele_errmsg());
        char *tmp = consumer_file(dir, "c.cursor.tmp");
        ck_assert(!file_exists(tmp));
        free(tmp);
        OK(stele_cursor_commit(c, 9));
    }
    stele_cursor_close(c);
    OK(stele_close(log));
    log = reopen(dir, 0);
    ck_assert_uint_eq(position_of(log, "c"), reached ? 9 : 8);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
    return reached;
}

START_TEST(test_commit_faults)
{
    char *base = tu_tmpdir("cursor-faults");
    const unsigned classes[] = {IO_FAULT_META, IO_FAULT_SYNC, IO_FAULT_WRITE};
    for (size_t k = 0; k < 3; k++) {
        uint64_t nth = 1;
        while (fault_commit_run(base, classes[k], nth))
            REQUIRE(++nth < 20, "class %u: the commit never got past its faults", classes[k]);
        /* Each class was reached at least once: meta twice (create, rename),
         * sync twice (fdatasync, directory), write once. */
        ck_assert_uint_ge(nth, 2);
    }
    tu_rmrf(base);
    free(base);
}
END_TEST

/* A crash after the new record was written to the .tmp and before the
 * rename: the old position holds and the .tmp goes. */
START_TEST(test_crash_before_rename)
{
    char *dir;
    stele_log *log = new_log(&dir);
    stele_cursor *c;
    OK(stele_cursor_open(log, "c", &c));
    OK(stele_cursor_commit(c, 7));
    stele_cursor_close(c);
    char *file = consumer_file(dir, "c.cursor"), *tmp = consumer_file(dir, "c.cursor.tmp");
    size_t size;
    uint8_t *seven = tu_read_file(file, &size);
    OK(stele_cursor_open(log, "c", &c));
    OK(stele_cursor_commit(c, 9));
    stele_cursor_close(c);
    uint8_t *nine = tu_read_file(file, &size);
    /* Stage it: the file holds 7, the .tmp the complete record of 9. */
    ck_assert_int_eq(tu_write_file(file, seven, 64), 0);
    ck_assert_int_eq(tu_write_file(tmp, nine, 64), 0);
    OK(stele_close(log));
    log = reopen(dir, 0);
    ck_assert_uint_eq(position_of(log, "c"), 7);
    ck_assert(!file_exists(tmp));
    OK(stele_close(log));
    free(seven);
    free(nine);
    free(file);
    free(tmp);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

static void fix_checksum(uint8_t *rec)
{
    le64_store(rec, stele_checksum(rec + 8, 56, SPEC_SEED_CURSOR));
}

/* Opening the cursor over bytes must fail with want, name the file and an
 * offset, and leave the bytes as they were. */
static void expect_damaged(stele_log *log, const char *file, const uint8_t *bytes, size_t size, int want,
                           const char *what)
{
    ck_assert_int_eq(tu_write_file(file, bytes, size), 0);
    stele_cursor *c = NULL;
    int code = stele_cursor_open(log, "c", &c);
    REQUIRE(code == want && strstr(stele_errmsg(), file) && strstr(stele_errmsg(), "offset"),
            "%s: open gave %s: %s", what, stele_strerror(code), stele_errmsg());
    size_t got_size;
    uint8_t *got = tu_read_file(file, &got_size);
    REQUIRE(got && got_size == size && memcmp(got, bytes, size) == 0, "%s: the file was changed", what);
    free(got);
}

START_TEST(test_damaged_cursor)
{
    char *dir;
    stele_log *log = new_log(&dir);
    stele_cursor *c;
    OK(stele_cursor_open(log, "c", &c));
    OK(stele_cursor_commit(c, 5));
    stele_cursor_close(c);
    char *file = consumer_file(dir, "c.cursor");
    size_t size;
    uint8_t *good = tu_read_file(file, &size);
    ck_assert_uint_eq(size, 64);
    uint8_t rec[72];
    for (size_t i = 0; i < 64; i++) {
        memcpy(rec, good, 64);
        rec[i] ^= 0x5a;
        char what[64];
        snprintf(what, sizeof what, "byte %zu flipped", i);
        expect_damaged(log, file, rec, 64, STELE_ERR_CORRUPT, what);
    }
    for (size_t n = 0; n < 64; n++)
        expect_damaged(log, file, good, n, STELE_ERR_CORRUPT, "truncated");
    memcpy(rec, good, 64);
    rec[64] = 0;
    expect_damaged(log, file, rec, 65, STELE_ERR_CORRUPT, "one byte longer");
    memcpy(rec, good, 64);
    le64_store(rec + 40, RECORDS + 1);
    fix_checksum(rec);
    expect_damaged(log, file, rec, 64, STELE_ERR_CORRUPT, "position beyond the log");
    ck_assert(strstr(stele_errmsg(), "offset 40"));
    memcpy(rec, good, 64);
    rec[24] ^= 1;
    fix_checksum(rec);
    expect_damaged(log, file, rec, 64, STELE_ERR_CORRUPT, "another log's id");
    ck_assert(strstr(stele_errmsg(), "another log"));
    memcpy(rec, good, 64);
    le32_store(rec + 16, 2);
    fix_checksum(rec);
    expect_damaged(log, file, rec, 64, STELE_ERR_FORMAT, "version 2");
    /* The good bytes open again. */
    ck_assert_int_eq(tu_write_file(file, good, 64), 0);
    ck_assert_uint_eq(position_of(log, "c"), 5);
    OK(stele_close(log));
    free(good);
    free(file);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

static stele_dead_letter dl_make(uint64_t lsn, const char *key, const char *reason, uint32_t attempts,
                                 const char *err)
{
    return (stele_dead_letter){.lsn = lsn, .attempts = attempts, .key = key, .key_size = strlen(key),
                               .reason = reason, .reason_size = strlen(reason), .last_stderr = err,
                               .last_stderr_size = strlen(err)};
}

static void expect_list(stele_cursor *c, int include_resolved, const char *want)
{
    stele_dead_letter *items;
    size_t n;
    OK(stele_dead_letter_list(c, include_resolved, &items, &n));
    char got[512] = "";
    for (size_t i = 0; i < n; i++) {
        char one[160];
        snprintf(one, sizeof one, "%s%llu:%s:%s:%u:%s:%s", i ? " " : "", (unsigned long long)items[i].lsn,
                 items[i].key, items[i].reason, items[i].attempts, items[i].last_stderr,
                 items[i].resolved_at_ns ? "resolved" : "dead");
        ck_assert_uint_gt(items[i].dead_at_ns, 0);
        strcat(got, one);
    }
    stele_dead_letter_free(items);
    REQUIRE(strcmp(got, want) == 0, "dead letters: got '%s', want '%s'", got, want);
}

START_TEST(test_dead_letters)
{
    char *dir;
    stele_log *log = new_log(&dir);
    stele_cursor *c;
    OK(stele_cursor_open(log, "c", &c));
    expect_list(c, 1, "");
    stele_dead_letter d = dl_make(5, "k5", "exit 1", 1, "boom");
    OK(stele_dead_letter_add(c, &d));
    d = dl_make(3, "k3", "timeout", 4, "");
    OK(stele_dead_letter_add(c, &d));
    d = dl_make(5, "k5", "exit 2", 3, "bang");
    OK(stele_dead_letter_add(c, &d));
    expect_list(c, 0, "3:k3:timeout:4::dead 5:k5:exit 2:3:bang:dead");
    OK(stele_dead_letter_resolve(c, 3));
    EXPECT(stele_dead_letter_resolve(c, 3), STELE_ERR_NOT_FOUND);
    EXPECT(stele_dead_letter_resolve(c, 4), STELE_ERR_NOT_FOUND);
    expect_list(c, 0, "5:k5:exit 2:3:bang:dead");
    expect_list(c, 1, "3:k3:timeout:4::resolved 5:k5:exit 2:3:bang:dead");
    d = dl_make(0, "", "x", 1, "");
    EXPECT(stele_dead_letter_add(c, &d), STELE_ERR_INVALID);
    d = dl_make(RECORDS + 1, "", "x", 1, "");
    EXPECT(stele_dead_letter_add(c, &d), STELE_ERR_INVALID);
    char big[STELE_DEAD_REASON_SIZE_MAX + 2];
    memset(big, 'r', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    d = dl_make(1, "", big, 1, "");
    EXPECT(stele_dead_letter_add(c, &d), STELE_ERR_INVALID);
    big[STELE_DEAD_REASON_SIZE_MAX] = '\0'; /* exactly the limit */
    d = dl_make(1, "k1", big, 2, "");
    OK(stele_dead_letter_add(c, &d));
    uint64_t pos;
    OK(stele_cursor_position(c, &pos));
    ck_assert_uint_eq(pos, 0); /* dead letters do not move the cursor */
    stele_cursor_close(c);
    OK(stele_close(log));

    log = reopen(dir, 1);
    OK(stele_cursor_open(log, "c", &c));
    stele_dead_letter *items;
    size_t n;
    OK(stele_dead_letter_list(c, 1, &items, &n));
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(items[0].lsn, 1);
    ck_assert_uint_eq(items[0].reason_size, STELE_DEAD_REASON_SIZE_MAX);
    stele_dead_letter_free(items);
    stele_cursor_close(c);
    OK(stele_close(log));
    log = reopen(dir, 0);
    OK(stele_cursor_open(log, "c", &c));
    d = dl_make(3, "k3", "exit 1", 1, "again"); /* dead again after being resolved */
    OK(stele_dead_letter_add(c, &d));
    OK(stele_dead_letter_list(c, 0, &items, &n));
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(items[1].lsn, 3);
    ck_assert_uint_eq(items[1].resolved_at_ns, 0);
    stele_dead_letter_free(items);
    stele_cursor_close(c);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(test_dead_damage_and_torn_tail)
{
    char *dir;
    stele_log *log = new_log(&dir);
    stele_cursor *c;
    OK(stele_cursor_open(log, "c", &c));
    for (uint64_t lsn = 1; lsn <= 3; lsn++) {
        stele_dead_letter d = dl_make(lsn, "key", "exit 1", 1, "err");
        OK(stele_dead_letter_add(c, &d));
    }
    stele_cursor_close(c);
    char *file = consumer_file(dir, "c.dead");
    size_t size;
    uint8_t *good = tu_read_file(file, &size);
    size_t rec = size / 3;
    ck_assert_uint_eq(rec * 3, size);

    /* Any flipped byte, in any record, the last one included: corruption,
     * named by the record's offset (never taken for a torn tail, never cut). */
    for (size_t at = 0; at < size; at++) {
        uint8_t *bad = malloc(size);
        memcpy(bad, good, size);
        bad[at] ^= 0x40;
        ck_assert_int_eq(tu_write_file(file, bad, size), 0);
        int code = stele_cursor_open(log, "c", &c);
        char want[64];
        snprintf(want, sizeof want, "offset %zu", at / rec * rec);
        REQUIRE(code == STELE_ERR_CORRUPT && strstr(stele_errmsg(), file) && strstr(stele_errmsg(), want),
                "byte %zu flipped: %s: %s", at, stele_strerror(code), stele_errmsg());
        size_t after;
        uint8_t *now = tu_read_file(file, &after);
        REQUIRE(now && after == size && memcmp(now, bad, size) == 0, "byte %zu flipped: the file was changed", at);
        free(now);
        free(bad);
    }
    /* A torn last append: cut at a writable open, appends continue. */
    for (size_t keep = 2 * rec; keep < size; keep += 5) {
        ck_assert_int_eq(tu_write_file(file, good, keep), 0);
        OK(stele_cursor_open(log, "c", &c));
        expect_list(c, 0, "1:key:exit 1:1:err:dead 2:key:exit 1:1:err:dead");
        stele_cursor_close(c);
        size_t now;
        free(tu_read_file(file, &now));
        ck_assert_uint_eq(now, 2 * rec);
    }
    uint8_t *zeros = calloc(1, size + 100);
    memcpy(zeros, good, size);
    ck_assert_int_eq(tu_write_file(file, zeros, size + 100), 0);
    OK(stele_cursor_open(log, "c", &c));
    stele_dead_letter d = dl_make(4, "key", "exit 1", 1, "err");
    OK(stele_dead_letter_add(c, &d));
    expect_list(c, 0,
                "1:key:exit 1:1:err:dead 2:key:exit 1:1:err:dead 3:key:exit 1:1:err:dead 4:key:exit 1:1:err:dead");
    stele_cursor_close(c);
    free(tu_read_file(file, &size));
    ck_assert_uint_eq(size, 4 * rec);
    OK(stele_close(log));
    free(zeros);
    free(good);
    free(file);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(test_dead_letter_fault)
{
    char *dir = tu_tmpdir("cursor-dead-fault");
    stele_options o = opts_posix(1);
    struct io *io = io_fault_create(io_posix_create());
    stele_log *log;
    OK(stele_open_io(dir, &o, io, &log));
    append_events(log, RECORDS);
    stele_cursor *c;
    OK(stele_cursor_open(log, "c", &c));
    stele_dead_letter d = dl_make(2, "k", "exit 1", 1, "");
    OK(stele_dead_letter_add(c, &d));
    io_fault_arm(io, IO_FAULT_SYNC, 1, ENOSPC, 0);
    d.lsn = 3;
    EXPECT(stele_dead_letter_add(c, &d), STELE_ERR_NOSPACE);
    ck_assert(strstr(stele_errmsg(), "c.dead"));
    EXPECT(stele_dead_letter_add(c, &d), STELE_ERR_FENCED);
    EXPECT(stele_cursor_commit(c, 4), STELE_ERR_FENCED);
    stele_cursor_close(c);
    /* The write itself reached the file (only its sync failed): reopening
     * reads what the file holds, whole. */
    OK(stele_cursor_open(log, "c", &c));
    expect_list(c, 0, "2:k:exit 1:1::dead 3:k:exit 1:1::dead");
    io_fault_arm(io, IO_FAULT_WRITE, 1, EIO, 0);
    d.lsn = 4;
    EXPECT(stele_dead_letter_add(c, &d), STELE_ERR_IO);
    stele_cursor_close(c);
    OK(stele_cursor_open(log, "c", &c));
    expect_list(c, 0, "2:k:exit 1:1::dead 3:k:exit 1:1::dead");
    OK(stele_dead_letter_add(c, &d));
    expect_list(c, 0, "2:k:exit 1:1::dead 3:k:exit 1:1::dead 4:k:exit 1:1::dead");
    stele_cursor_close(c);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------- other processes */

/* Runs fn(dir) in a child process; its exit status (0 = every check held). */
static int in_child(const char *dir, int (*fn)(const char *dir))
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(fn(dir));
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* In a child: says which check failed, and why, on stderr. */
static int child_fail(int code, const char *what)
{
    fprintf(stderr, "child check %d failed: %s: %s\n", code, what, stele_errmsg());
    return code;
}

/* The parent holds consumer c (position 3, a dead letter at LSN 2): this
 * process opens it for reading; every change is LOCKED naming the parent. */
static int child_sees_locked(const char *dir)
{
    stele_options o = opts_posix(0);
    o.read_only = 1;
    stele_log *log;
    stele_cursor *c;
    if (stele_open(dir, &o, &log) != STELE_OK)
        return child_fail(10, "open read-only");
    if (stele_cursor_open(log, "c", &c) != STELE_OK)
        return child_fail(11, "cursor open");
    char holder[64];
    snprintf(holder, sizeof holder, "pid %ld holds", (long)getppid());
    if (stele_cursor_exclusive(c) != STELE_ERR_LOCKED || !strstr(stele_errmsg(), "consumer c:") ||
        !strstr(stele_errmsg(), holder))
        return child_fail(12, "exclusive is LOCKED naming the consumer and the parent's pid");
    uint64_t pos = 0;
    if (stele_cursor_position(c, &pos) != STELE_OK || pos != 3)
        return child_fail(13, "position reads 3");
    if (stele_cursor_commit(c, 4) != STELE_ERR_LOCKED || !strstr(stele_errmsg(), holder))
        return child_fail(14, "commit is LOCKED");
    stele_dead_letter d = dl_make(5, "k5", "exit 1", 1, "");
    if (stele_dead_letter_add(c, &d) != STELE_ERR_LOCKED)
        return child_fail(15, "dead letter add is LOCKED");
    if (stele_dead_letter_resolve(c, 2) != STELE_ERR_LOCKED)
        return child_fail(16, "resolve is LOCKED");
    stele_dead_letter *items;
    size_t n;
    if (stele_dead_letter_list(c, 1, &items, &n) != STELE_OK || n != 1 || items[0].lsn != 2)
        return child_fail(17, "the dead letters read");
    stele_dead_letter_free(items);
    stele_cursor_close(c);
    return stele_close(log) == STELE_OK ? 0 : child_fail(18, "close");
}

/* The parent has closed its handle: this process gets the lock and commits. */
static int child_takes_over(const char *dir)
{
    stele_options o = opts_posix(0);
    o.read_only = 1;
    stele_log *log;
    stele_cursor *c;
    if (stele_open(dir, &o, &log) != STELE_OK || stele_cursor_open(log, "c", &c) != STELE_OK)
        return child_fail(20, "open");
    if (stele_cursor_exclusive(c) != STELE_OK)
        return child_fail(21, "exclusive once the holder closed");
    if (stele_cursor_commit(c, 5) != STELE_OK || stele_dead_letter_resolve(c, 2) != STELE_OK)
        return child_fail(22, "commit and resolve through a read-only log handle");
    char *lock = consumer_file(dir, "c.lock");
    size_t size;
    uint8_t *text = tu_read_file(lock, &size);
    char want[32];
    int n = snprintf(want, sizeof want, "%ld\n", (long)getpid());
    int pid_ok = text && size == (size_t)n && memcmp(text, want, size) == 0;
    free(text);
    free(lock);
    if (!pid_ok)
        return child_fail(23, "the lock file holds the holder's pid as text");
    stele_cursor_close(c);
    return stele_close(log) == STELE_OK ? 0 : child_fail(24, "close");
}

/* A consumer that took its lock and never committed leaves consumers/ with
 * a lock file alone: the list is empty, not an error (it once sorted a NULL
 * array, which UBSan stops). */
START_TEST(test_consumers_lock_only)
{
    char *dir;
    stele_log *log = new_log(&dir);
    stele_cursor *c;
    OK(stele_cursor_open(log, "c", &c));
    OK(stele_cursor_exclusive(c));
    char *lock = consumer_file(dir, "c.lock");
    REQUIRE(file_exists(lock), "no lock file at %s", lock);
    stele_consumer_info *items = (stele_consumer_info *)1;
    size_t count = 99;
    OK(stele_consumers(log, &items, &count));
    ck_assert_uint_eq(count, 0);
    stele_consumers_free(items);
    stele_cursor_close(c);
    free(lock);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(test_lock_other_process)
{
    char *dir;
    stele_log *log = new_log(&dir);
    stele_cursor *c;
    OK(stele_cursor_open(log, "c", &c));
    OK(stele_cursor_exclusive(c));
    OK(stele_cursor_commit(c, 3));
    stele_dead_letter d = dl_make(2, "k2", "exit 1", 1, "");
    OK(stele_dead_letter_add(c, &d));
    int status = in_child(dir, child_sees_locked);
    REQUIRE(status == 0, "child beside the holder: status %d (see its stderr)", status);
    OK(stele_cursor_commit(c, 4)); /* the holder is unaffected */
    uint64_t pos;
    OK(stele_cursor_position(c, &pos));
    ck_assert_uint_eq(pos, 4);
    stele_cursor_close(c);
    status = in_child(dir, child_takes_over);
    REQUIRE(status == 0, "child after the holder closed: status %d (see its stderr)", status);
    ck_assert_uint_eq(position_of(log, "c"), 5);
    OK(stele_cursor_open(log, "c", &c));
    expect_list(c, 0, "");
    stele_cursor_close(c);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

/* A consumer whose lock file cannot be made (here consumers/ is immutable,
 * as on a read-only file system) still opens for reading; changes are
 * READ_ONLY naming the lock file and errno. Skipped where the immutable flag
 * cannot be set (not root, or a file system without it). */
START_TEST(test_lock_file_unavailable)
{
    char *dir;
    stele_log *log = new_log(&dir);
    stele_cursor *c = NULL;
    OK(stele_cursor_open(log, "a", &c)); /* makes consumers/ */
    stele_cursor_close(c);
    char *consumers = consumer_file(dir, "");
    int fd = open(consumers, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(fd, 0);
    int flags = 0;
    int immutable = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    flags |= FS_IMMUTABLE_FL;
    if (!immutable || ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0) {
        fprintf(stderr, "test_lock_file_unavailable skipped: cannot make %s immutable: %s\n", consumers,
                strerror(errno));
        close(fd);
    } else {
        /* Everything is observed before the flag goes, so a failure leaves
         * no directory that cannot be removed. */
        char msg_open[512], msg_excl[512], msg_commit[512];
        c = NULL;
        int open_code = stele_cursor_open(log, "b", &c);
        snprintf(msg_open, sizeof msg_open, "%s", stele_errmsg());
        int excl_code = c ? stele_cursor_exclusive(c) : -1;
        snprintf(msg_excl, sizeof msg_excl, "%s", stele_errmsg());
        int commit_code = c ? stele_cursor_commit(c, 1) : -1;
        snprintf(msg_commit, sizeof msg_commit, "%s", stele_errmsg());
        uint64_t pos = 99;
        int pos_code = c ? stele_cursor_position(c, &pos) : -1;
        stele_cursor_close(c);
        flags &= ~FS_IMMUTABLE_FL;
        int cleared = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
        close(fd);
        ck_assert_msg(cleared, "cannot clear the immutable flag of %s", consumers);
        REQUIRE(open_code == STELE_OK, "open without a lock file: %s: %s", stele_strerror(open_code), msg_open);
        REQUIRE(excl_code == STELE_ERR_READ_ONLY && strstr(msg_excl, "consumer b") && strstr(msg_excl, "b.lock") &&
                strstr(msg_excl, "Operation not permitted"), "exclusive gave %d: %s", excl_code, msg_excl);
        REQUIRE(commit_code == STELE_ERR_READ_ONLY && strstr(msg_commit, "commit consumer b"), "commit gave %d: %s",
                commit_code, msg_commit);
        ck_assert_int_eq(pos_code, STELE_OK);
        ck_assert_uint_eq(pos, 0);
    }
    free(consumers);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

#define BESIDE_RECORDS 300

/* The writer process: holds the log writable, says so on ready, appends
 * BESIDE_RECORDS events one by one, and half-way waits for a byte on go, so
 * that the consumer provably commits while this process holds the log. */
static int child_writer(const char *dir, int ready, int go)
{
    stele_options o = opts_posix(0);
    stele_log *log;
    if (stele_open(dir, &o, &log) != STELE_OK)
        return child_fail(30, "open writable");
    if (write(ready, "w", 1) != 1)
        return child_fail(31, "signal ready");
    for (int i = 0; i < BESIDE_RECORDS; i++) {
        char byte;
        if (i == BESIDE_RECORDS / 2 && read(go, &byte, 1) != 1)
            return child_fail(34, "wait for the consumer");
        stele_event e = {.type = "t", .type_size = 1, .payload = &i, .payload_size = sizeof i};
        if (stele_append(log, &e, NULL) != STELE_OK)
            return child_fail(32, "append");
        if (i % 16 == 0) {
            struct timespec ts = {0, 2 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    return stele_close(log) == STELE_OK ? 0 : child_fail(33, "close");
}

/* A consumer commits through a read-only log handle while another process
 * holds the log writable and appends: every record is seen once, in order,
 * each commit succeeds, and none may point past what the handle shows. */
START_TEST(test_commit_beside_writer)
{
    char *dir = tu_tmpdir("cursor-beside");
    stele_options o = opts_posix(1);
    stele_log *log;
    OK(stele_open(dir, &o, &log));
    OK(stele_close(log));
    int ready[2], go[2];
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        _exit(child_writer(dir, ready[1], go[0]));
    }
    close(ready[1]);
    close(go[0]);
    char byte;
    REQUIRE(read(ready[0], &byte, 1) == 1, "the writer process did not start");
    close(ready[0]);
    stele_log *ro = reopen(dir, 1);
    stele_cursor *c;
    OK(stele_cursor_open(ro, "c", &c));
    OK(stele_cursor_exclusive(c));
    stele_iter *it;
    OK(stele_iter_open(ro, 1, &it));
    uint64_t committed = 0, beside = 0;
    int status = 0, exited = 0;
    uint64_t deadline = now_ns() + UINT64_C(60) * 1000000000u;
    while (committed < BESIDE_RECORDS && now_ns() < deadline) {
        const stele_record *rec = NULL;
        OK(stele_iter_next(it, 100, &rec));
        if (!rec)
            continue;
        REQUIRE(rec->lsn == committed + 1, "record %llu after %llu", (unsigned long long)rec->lsn,
                (unsigned long long)committed);
        if (!exited && waitpid(pid, &status, WNOHANG) == pid)
            exited = 1;
        OK(stele_cursor_commit(c, rec->lsn));
        committed = rec->lsn;
        beside += !exited;
        EXPECT(stele_cursor_commit(c, BESIDE_RECORDS + 1), STELE_ERR_INVALID);
        ck_assert(strstr(stele_errmsg(), "beyond the log's last acknowledged LSN"));
        if (committed == BESIDE_RECORDS / 2) {
            /* The writer waits for this byte, holding the log writable. */
            ck_assert_int_eq(exited, 0);
            REQUIRE(write(go[1], "g", 1) == 1, "cannot wake the writer process");
        }
    }
    close(go[1]);
    stele_iter_close(it);
    ck_assert_uint_eq(committed, BESIDE_RECORDS);
    if (!exited)
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer process: status %d (see its stderr)", status);
    ck_assert_uint_ge(beside, BESIDE_RECORDS / 2); /* commits while the other process held the log */
    uint64_t pos;
    OK(stele_cursor_position(c, &pos));
    ck_assert_uint_eq(pos, BESIDE_RECORDS);
    stele_cursor_close(c);
    OK(stele_close(ro));
    log = reopen(dir, 0);
    ck_assert_uint_eq(position_of(log, "c"), BESIDE_RECORDS);
    OK(stele_close(log));
    tu_rmrf(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cursor");
    TCase *tc = tcase_create("cursor");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_commit_reopen);
    tcase_add_test(tc, test_consumers_lock_only);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_commit_faults);
    tcase_add_test(tc, test_crash_before_rename);
    tcase_add_test(tc, test_damaged_cursor);
    tcase_add_test(tc, test_dead_letters);
    tcase_add_test(tc, test_dead_damage_and_torn_tail);
    tcase_add_test(tc, test_dead_letter_fault);
    tcase_add_test(tc, test_lock_other_process);
    tcase_add_test(tc, test_commit_beside_writer);
    tcase_add_test(tc, test_lock_file_unavailable);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

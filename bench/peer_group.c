/*
 * peer_group.c - the textbook group commit, in the bench's own code: what a
 * careful programmer writes for durable appends from many blocking threads,
 * and the peer a log engine's write path must beat.
 *
 *   - An appender frames its records (peer_fdatasync.c's frame: 4-byte
 *     length, payload) and copies them into the open batch under a mutex.
 *   - Whoever finds no write in progress becomes the leader: it takes the
 *     whole open batch (a fresh one opens for later appenders), and outside
 *     the mutex writes it with one write() and syncs it with one fdatasync(),
 *     then marks the batch done and wakes the appenders that batch covered
 *     (they return), and one appender of the next batch, if there is one, to
 *     lead it.
 *   - The file is preallocated as PostgreSQL does its WAL segments: with
 *     --durability sync, open (outside the timed part) writes 64 MiB of zeros
 *     and syncs them, so a batch's fdatasync there commits data and no file
 *     size. Past 64 MiB the file grows with each write. Measured here
 *     (2026-12-07, 64 threads, 3 s, 3 alternating pairs): 66.6k/61.6k/54.1k
 *     appends/s preallocated against 26.4k/47.5k/41.4k appending, so the peer
 *     gets the faster of the two.
 *   - Appenders of a batch wait on one of two condition variables (by the
 *     batch's parity), so finishing a batch wakes its own appenders and not
 *     those queued for the next one.
 *
 * One write is in flight at a time; while it runs, the next batch fills.
 * A failed write or sync is sticky: the batch it carried and every later one
 * fail (its appenders get the error, never success), as a log must behave
 * after a failed fdatasync (STYLE.md: never retry a sync and carry on).
 *
 * With --durability interval or none there is no fdatasync: the leader only
 * writes (one write() per batch into the page cache).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define BATCH_CAPACITY_MIN (64u * 1024u)

struct grp_db {
    int fd;
    int sync;
    pthread_mutex_t mu;
    pthread_cond_t cv[2];            /* appenders of batch b wait on cv[b % 2] */
    unsigned char *open_buf;         /* the open batch: frames appended under mu */
    size_t open_size, open_capacity;
    unsigned char *write_buf;        /* the leader's: the batch being written */
    size_t write_capacity;
    uint64_t open_batch;             /* the number the open batch will be written as */
    uint64_t done_batch;             /* every batch up to this one is written (and synced) */
    int writing;                     /* a leader is writing a batch */
    uint64_t failed_batch;           /* the first batch whose write or sync failed; 0 = none (batches start at 1) */
    int failed_errno;
    uint64_t syncs;
};

#define PREALLOC_SIZE (64u * 1024u * 1024u)
#define PREALLOC_CHUNK (1u << 20)

/* Zero-fills the first PREALLOC_SIZE bytes and syncs them (size included),
 * so that a batch's fdatasync inside them commits data only, no file size. */
static int prealloc(int fd)
{
    static const unsigned char zeros[PREALLOC_CHUNK];
    for (size_t off = 0; off < PREALLOC_SIZE; off += PREALLOC_CHUNK)
        if (bench_write_all(fd, zeros, PREALLOC_CHUNK) != 0)
            return -1;
    return fdatasync(fd) == 0 && lseek(fd, 0, SEEK_SET) == 0 ? 0 : -1;
}

static int fail(const char *what, int err)
{
    fprintf(stderr, "stele-bench: group: %s: %s\n", what, strerror(err));
    return -1;
}

static int grp_open(const struct config *cfg, const char *dir, void **out_db)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/log", dir);
    struct grp_db *db = calloc(1, sizeof *db);
    if (!db)
        return fail("open", ENOMEM);
    db->open_buf = malloc(BATCH_CAPACITY_MIN);
    db->write_buf = malloc(BATCH_CAPACITY_MIN);
    db->open_capacity = db->write_capacity = BATCH_CAPACITY_MIN;
    db->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (!db->open_buf || !db->write_buf || db->fd < 0) {
        int err = db->fd < 0 ? errno : ENOMEM;
        if (db->fd >= 0)
            close(db->fd);
        free(db->open_buf);
        free(db->write_buf);
        free(db);
        return fail(path, err);
    }
    db->sync = cfg->durability == STELE_DURABILITY_SYNC;
    if (db->sync && prealloc(db->fd) != 0) {
        int err = errno;
        close(db->fd);
        free(db->open_buf);
        free(db->write_buf);
        free(db);
        return fail(path, err);
    }
    db->open_batch = 1;
    pthread_mutex_init(&db->mu, NULL);
    pthread_cond_init(&db->cv[0], NULL);
    pthread_cond_init(&db->cv[1], NULL);
    *out_db = db;
    return 0;
}

/* An appender needs nothing of its own: the open batch is the database's. */
static int grp_thread_open(void *db, int thread_id, void **out_thread)
{
    (void)thread_id;
    *out_thread = db;
    return 0;
}

/* Under mu: makes room for size more bytes in the open batch; 0 or -1 (out of memory). */
static int reserve(struct grp_db *db, size_t size)
{
    if (db->open_size + size <= db->open_capacity)
        return 0;
    size_t cap = db->open_capacity;
    while (cap < db->open_size + size)
        cap *= 2;
    unsigned char *nb = realloc(db->open_buf, cap);
    if (!nb)
        return -1;
    db->open_buf = nb;
    db->open_capacity = cap;
    return 0;
}

/* Under mu, with no write in progress and a batch open: writes it as the
 * leader (the mutex is released during the write and sync), then wakes its
 * appenders and one of the next batch's. */
static void lead(struct grp_db *db)
{
    uint64_t batch = db->open_batch++;
    unsigned char *buf = db->open_buf;
    size_t size = db->open_size, cap = db->open_capacity;
    db->open_buf = db->write_buf;
    db->open_capacity = db->write_capacity;
    db->open_size = 0;
    db->write_buf = buf;
    db->write_capacity = cap;
    db->writing = 1;
    int failed = db->failed_batch != 0; /* after a failure nothing more is written */
    pthread_mutex_unlock(&db->mu);

    int err = 0;
    if (!failed && bench_write_all(db->fd, buf, size) != 0)
        err = errno;
    if (!failed && !err && db->sync && fdatasync(db->fd) != 0)
        err = errno;

    pthread_mutex_lock(&db->mu);
    if (db->sync && !failed)
        db->syncs++;
    if (err && !db->failed_batch) {
        db->failed_batch = batch;
        db->failed_errno = err;
    }
    db->done_batch = batch;
    db->writing = 0;
    pthread_cond_broadcast(&db->cv[batch % 2]);
    if (db->open_size > 0)
        pthread_cond_signal(&db->cv[(batch + 1) % 2]);
}

static int grp_append(void *thread, const struct bench_record *recs, int count)
{
    struct grp_db *db = thread;
    size_t size = bench_frame_size(recs, count);
    pthread_mutex_lock(&db->mu);
    if (reserve(db, size) != 0) {
        pthread_mutex_unlock(&db->mu);
        return fail("append", ENOMEM);
    }
    bench_frame_put(db->open_buf + db->open_size, recs, count);
    db->open_size += size;
    uint64_t mine = db->open_batch;
    while (db->done_batch < mine) {
        if (!db->writing)
            lead(db); /* takes the open batch, which holds ours unless an earlier leader took it */
        else
            pthread_cond_wait(&db->cv[mine % 2], &db->mu);
    }
    int err = db->failed_batch && db->failed_batch <= mine ? db->failed_errno : 0;
    pthread_mutex_unlock(&db->mu);
    return err ? fail(db->sync ? "write+fdatasync" : "write", err) : 0;
}

static void grp_thread_close(void *thread)
{
    (void)thread;
}

static int grp_close(void *dbp, struct target_stats *out_stats)
{
    struct grp_db *db = dbp;
    out_stats->syncs = db->syncs;
    out_stats->syncs_known = 1;
    int rc = close(db->fd) == 0 ? 0 : fail("close", errno);
    pthread_cond_destroy(&db->cv[0]);
    pthread_cond_destroy(&db->cv[1]);
    pthread_mutex_destroy(&db->mu);
    free(db->open_buf);
    free(db->write_buf);
    free(db);
    return rc;
}

const struct target peer_group = {
    .name = "group",
    .open = grp_open,
    .thread_open = grp_thread_open,
    .append = grp_append,
    .thread_close = grp_thread_close,
    .close = grp_close,
};

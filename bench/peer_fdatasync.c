/*
 * peer_fdatasync.c - the naive durable log: one file, and for every append a
 * write() of the record followed by fdatasync(), both under one mutex.
 *
 * This is what a program gets without a log engine, and the floor a group
 * commit must beat: every appender pays a whole sync, and appenders queue on
 * the mutex, so throughput is about 1 / (write + fdatasync) whatever the
 * number of threads. The file grows with every write and is not
 * preallocated, as a naive log would do, so each fdatasync also commits the
 * file size. With --durability interval or none there is no fdatasync at
 * all: a plain write() per append, the fastest any store can acknowledge.
 *
 * Each record is framed as a 4-byte little-endian length and the payload, so
 * the file could be read back; there is no key (nothing checks uniqueness).
 *
 * The peer "write" is the same file never synced whatever --durability says:
 * a plain buffered write() per append under the mutex, the rate at which the
 * page cache takes appends from this many threads (the ceiling for `none`).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define FRAME_HEADER_SIZE 4
#define WRITE_ATTEMPTS_MAX 16

struct fds_db {
    int fd;
    int sync;
    pthread_mutex_t mu;
    uint64_t syncs;                  /* under mu */
};

struct fds_thread {
    struct fds_db *db;
    unsigned char *buf;              /* one batch of frames, written with one write() */
    size_t buf_capacity;
};

static int fail(const char *what)
{
    fprintf(stderr, "stele-bench: fdatasync/write: %s: %s\n", what, strerror(errno));
    return -1;
}

static int open_log(const char *dir, int sync, void **out_db)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/log", dir);
    struct fds_db *db = calloc(1, sizeof *db);
    if (!db)
        return fail("open");
    db->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (db->fd < 0) {
        free(db);
        return fail(path);
    }
    db->sync = sync;
    pthread_mutex_init(&db->mu, NULL);
    *out_db = db;
    return 0;
}

static int fds_open(const struct config *cfg, const char *dir, void **out_db)
{
    return open_log(dir, cfg->durability == STELE_DURABILITY_SYNC, out_db);
}

static int write_open(const struct config *cfg, const char *dir, void **out_db)
{
    (void)cfg;
    return open_log(dir, 0, out_db);
}

static int fds_thread_open(void *db, int thread_id, void **out_thread)
{
    (void)thread_id;
    struct fds_thread *t = calloc(1, sizeof *t);
    if (!t)
        return fail("thread");
    t->db = db;
    *out_thread = t;
    return 0;
}

size_t bench_frame_size(const struct bench_record *recs, int count)
{
    size_t need = 0;
    for (int i = 0; i < count; i++)
        need += FRAME_HEADER_SIZE + recs[i].payload_size;
    return need;
}

void bench_frame_put(unsigned char *dst, const struct bench_record *recs, int count)
{
    size_t off = 0;
    for (int i = 0; i < count; i++) {
        uint32_t n = (uint32_t)recs[i].payload_size;
        unsigned char hdr[FRAME_HEADER_SIZE] = {(unsigned char)n, (unsigned char)(n >> 8),
                                                (unsigned char)(n >> 16), (unsigned char)(n >> 24)};
        memcpy(dst + off, hdr, sizeof hdr);
        memcpy(dst + off + sizeof hdr, recs[i].payload, n);
        off += sizeof hdr + n;
    }
}

/* Frames the records into the thread's buffer; returns the byte count, or 0 when out of memory. */
static size_t frame_batch(struct fds_thread *t, const struct bench_record *recs, int count)
{
    size_t need = bench_frame_size(recs, count);
    if (need > t->buf_capacity) {
        unsigned char *nb = realloc(t->buf, need);
        if (!nb)
            return 0;
        t->buf = nb;
        t->buf_capacity = need;
    }
    bench_frame_put(t->buf, recs, count);
    return need;
}

/* Writes all of buf: a short write is continued, EINTR retried, zero progress is an error. */
int bench_write_all(int fd, const unsigned char *buf, size_t size)
{
    for (int attempt = 0; size > 0 && attempt < WRITE_ATTEMPTS_MAX; attempt++) {
        ssize_t n = write(fd, buf, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        buf += n;
        size -= (size_t)n;
    }
    if (size == 0)
        return 0;
    errno = EIO; /* no progress, or too many short writes */
    return -1;
}

static int fds_append(void *thread, const struct bench_record *recs, int count)
{
    struct fds_thread *t = thread;
    struct fds_db *db = t->db;
    size_t size = frame_batch(t, recs, count);
    if (size == 0) {
        errno = ENOMEM;
        return fail("append");
    }
    /* The mutex keeps frames whole and in order, and makes each appender's sync cover its own write. */
    pthread_mutex_lock(&db->mu);
    int rc = bench_write_all(db->fd, t->buf, size);
    if (rc == 0 && db->sync) {
        rc = fdatasync(db->fd);
        db->syncs++;
    }
    pthread_mutex_unlock(&db->mu);
    return rc == 0 ? 0 : fail(db->sync ? "write+fdatasync" : "write");
}

static void fds_thread_close(void *thread)
{
    struct fds_thread *t = thread;
    free(t->buf);
    free(t);
}

static int fds_close(void *dbp, struct target_stats *out_stats)
{
    struct fds_db *db = dbp;
    out_stats->syncs = db->syncs;
    out_stats->syncs_known = 1;
    int rc = close(db->fd) == 0 ? 0 : fail("close");
    pthread_mutex_destroy(&db->mu);
    free(db);
    return rc;
}

const struct target peer_fdatasync = {
    .name = "fdatasync",
    .open = fds_open,
    .thread_open = fds_thread_open,
    .append = fds_append,
    .thread_close = fds_thread_close,
    .close = fds_close,
};

const struct target peer_write = {
    .name = "write",
    .never_syncs = 1,
    .open = write_open,
    .thread_open = fds_thread_open,
    .append = fds_append,
    .thread_close = fds_thread_close,
    .close = fds_close,
};

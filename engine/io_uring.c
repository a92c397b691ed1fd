/*
 * io_uring.c - the io_uring backend of the I/O seam (io.h): the engine's
 * write path. A write and the fdatasync that makes it durable are submitted
 * together as a linked chain (IOSQE_IO_LINK), so the sync starts only after
 * the write completed in full.
 *
 * Why LINK and never HARDLINK (RELIABILITY S14): with LINK, a short or failed
 * write breaks the chain and the sync completes with -ECANCELED, which we
 * never take as success; with HARDLINK the sync would run and "succeed"
 * without covering the missing bytes. A short write is resubmitted from where
 * it stopped, together with a new sync.
 *
 * What the ring may say, and what we do (RELIABILITY S13, S14, S16; SPEC.md
 * §11.2), every retry bounded by URING_RETRY_MAX:
 *  - a write completion short, of 0 bytes, -EAGAIN or -EINTR: the rest is
 *    resubmitted with a new linked sync; without progress it ends in -EIO;
 *  - a sync completion of -EAGAIN or -EINTR (the sync did not run, or was
 *    stopped before it reported anything): a new sync; -ECANCELED or any
 *    other error: returned, never retried (the log fences);
 *  - io_uring_enter refusing to submit (EAGAIN, EBUSY, EINTR) or taking part
 *    of the queue: submitted again; EBADR (a completion was lost): -EIO;
 *  - a wait interrupted by a signal: waited again, in the end with signals
 *    blocked, since the kernel owns the buffers until the completions come.
 * A ring whose submit or wait failed may still owe completions that a later
 * call would take for its own, so it is never used again ("broken").
 *
 * Everything else (open, rename, reads) uses the POSIX functions: reads come
 * from many threads and a ring is not thread-safe, while writes come from the
 * single writer thread (and each ring has its lock). Tests can see and replace every result through a hook
 * (io.h, io_uring_hook_set).
 */
#include <assert.h>
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

#define URING_RETRY_MAX 64

/* Two rings: the writer thread writes through one while the syncer thread
 * waits for an fdatasync on the other, so a sync in flight never holds up
 * the next write (the pipelining of SPEC.md §11.1). Each ring is used by one
 * thread at a time (its lock). */
struct ring {
    struct io_uring ring;
    pthread_mutex_t lock;
    int broken; /* -errno once a submit or wait failed: the ring is not used again */
};

struct uring_io {
    struct io io;
    struct ring write;
    struct ring sync;
};

enum { TAG_WRITE = 1, TAG_LINKED_SYNC = 2, TAG_SYNC = 3 };

/* The test hook (io.h); NULL in production. */
static const struct io_uring_hook *hook;

void io_uring_hook_set(const struct io_uring_hook *h)
{
    __atomic_store_n(&hook, h, __ATOMIC_RELEASE);
}

/* What the backend acts on: res, or what the test hook makes of it. */
static int hooked(enum io_uring_event event, int res, size_t len)
{
    const struct io_uring_hook *h = __atomic_load_n(&hook, __ATOMIC_ACQUIRE);
    return h ? h->fn(h->ctx, event, res, len) : res;
}

static void backoff(int attempt)
{
    struct timespec ts = {0, 1000L * (attempt < 10 ? (1L << attempt) : 1024L)};
    nanosleep(&ts, NULL);
}

/* Submits everything queued. io_uring_enter may refuse for a while (EAGAIN:
 * no resources; EBUSY: the completion queue is full; EINTR) or take only
 * part of the queue: it is called again, a bounded number of times, with a
 * backoff. (Reaping first would not help EBUSY: every call of this backend
 * reaps all its completions before it returns, so none of ours are queued.)
 * EBADR means a completion was lost: fatal. */
static int submit(struct io_uring *ring)
{
    for (int attempt = 0; attempt < URING_RETRY_MAX; attempt++) {
        int r = hooked(IO_URING_SUBMIT, io_uring_submit(ring), 0);
        if (r >= 0 && io_uring_sq_ready(ring) == 0)
            return 0;
        if (r < 0 && r != -EAGAIN && r != -EBUSY && r != -EINTR)
            return r == -EBADR ? -EIO : r;
        if (r != -EINTR) /* a signal needs no waiting for */
            backoff(attempt);
    }
    return -EIO;
}

/* Waits for `want` completions and reports the write's (of len bytes) and
 * the sync's results. A wait a signal interrupted (EINTR) is waited again:
 * the completions are still coming, and the buffers are the kernel's until
 * they do, so we cannot leave. After URING_RETRY_MAX interruptions in a row
 * the wait blocks every signal (they are delivered when it returns), so a
 * storm of signals slows a write down but cannot fail it; a wait that still
 * does not complete is an error. EBADR means a completion was lost: fatal. */
static int reap(struct io_uring *ring, int want, size_t len, int *out_write_res, int *out_sync_res)
{
    sigset_t all;
    sigfillset(&all);
    for (int got = 0, tries = 0; got < want;) {
        struct io_uring_cqe *cqe = NULL;
        int r = tries < URING_RETRY_MAX ? io_uring_wait_cqe(ring, &cqe)
                                        : io_uring_wait_cqes(ring, &cqe, 1, NULL, &all);
        r = hooked(IO_URING_WAIT, r, 0);
        if (r == -EINTR || r == -EAGAIN) {
            if (++tries >= 2 * URING_RETRY_MAX)
                return -EIO;
            continue;
        }
        if (r < 0)
            return r == -EBADR ? -EIO : r;
        tries = 0;
        uint64_t tag = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(ring, cqe);
        if (tag == TAG_WRITE)
            *out_write_res = hooked(IO_URING_CQE_WRITE, res, len);
        else
            *out_sync_res = hooked(tag == TAG_LINKED_SYNC ? IO_URING_CQE_LINKED_SYNC : IO_URING_CQE_SYNC, res, 0);
        got++;
    }
    return 0;
}

/* One attempt: queue write [+ linked sync], submit, reap. A negative return
 * means the ring itself failed (the caller poisons it). */
static int write_once(struct io_uring *ring, int fd, const char *buf, size_t len, uint64_t off, int datasync,
                      int *out_write_res, int *out_sync_res)
{
    /* Every call leaves the queue empty, so there is room; but never queue a
     * write whose sync cannot follow it. */
    if (io_uring_sq_space_left(ring) < (datasync ? 2u : 1u))
        return -EBUSY;
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
    io_uring_sqe_set_data64(sqe, TAG_WRITE);
    if (datasync) {
        sqe->flags |= IOSQE_IO_LINK;
        sqe = io_uring_get_sqe(ring);
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sqe, TAG_LINKED_SYNC);
    }
    int r = submit(ring);
    if (r < 0)
        return r;
    *out_sync_res = 0;
    return reap(ring, datasync ? 2 : 1, len, out_write_res, out_sync_res);
}

/* One fdatasync on its own; a completion of -EAGAIN or -EINTR is submitted
 * again, boundedly. Unlike a failed fsync (EIO: the kernel may have marked
 * the pages clean, so a second one proves nothing, RELIABILITY S9), these
 * mean the sync did not run or was stopped before it could report a
 * write-back error (an error not yet reported stays for the next fsync of
 * the file), so a new one covers the same bytes. */
static int sync_locked(struct ring *rg, int fd)
{
    for (int attempt = 0;; attempt++) {
        int wres = 0, sres = 0;
        if (io_uring_sq_space_left(&rg->ring) < 1)
            return rg->broken = -EIO;
        struct io_uring_sqe *sqe = io_uring_get_sqe(&rg->ring);
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sqe, TAG_SYNC);
        int r = submit(&rg->ring);
        if (r == 0)
            r = reap(&rg->ring, 1, 0, &wres, &sres);
        if (r < 0)
            return rg->broken = r;
        if (sres != -EAGAIN && sres != -EINTR)
            return sres;
        if (attempt + 1 >= URING_RETRY_MAX)
            return -EIO;
        if (sres == -EAGAIN)
            backoff(attempt);
    }
}

static int uring_write_locked(struct ring *rg, int fd, const void *buf, size_t len, uint64_t off, int datasync)
{
    size_t done = 0;
    int stalls = 0;
    /* A single SQE moves at most UINT_MAX bytes; batches are far smaller. */
    assert(len > 0 && len <= UINT32_MAX);
    for (;;) {
        int wres = 0, sres = 0;
        int r = write_once(&rg->ring, fd, (const char *)buf + done, len - done, off + done, datasync, &wres, &sres);
        if (r < 0)
            return rg->broken = r;
        if (wres < 0 && wres != -EAGAIN && wres != -EINTR)
            return wres;
        if (wres > 0) {
            if ((size_t)wres > len - done)
                return -EIO; /* more than was asked: nothing this ring says can be trusted */
            done += (size_t)wres;
        }
        if (done == len) {
            /* The write is whole; only now can the linked sync count. A
             * cancelled or failed sync is an error, never retried; one that
             * did not run (-EAGAIN, -EINTR) is submitted again. */
            if (!datasync || sres == 0)
                return 0;
            return sres == -EAGAIN || sres == -EINTR ? sync_locked(rg, fd) : sres;
        }
        /* Short write, or EAGAIN/EINTR leaked into the CQE (liburing #766):
         * resubmit the rest with a new sync, boundedly (RELIABILITY S13, S16).
         * The sync linked to the short write was cancelled: it counts for
         * nothing. */
        if (++stalls >= URING_RETRY_MAX)
            return -EIO;
        if (wres == 0 || wres == -EAGAIN)
            backoff(stalls);
    }
}

/* A ring whose submit or wait failed may still hold our entries or owe us
 * completions, which a later call would take for its own: it is poisoned,
 * every later call fails (the log is fenced by then anyway). */
static int uring_write(struct io *io, int fd, const void *buf, size_t len, uint64_t off, int datasync)
{
    struct uring_io *u = (struct uring_io *)io;
    pthread_mutex_lock(&u->write.lock);
    int r = u->write.broken ? -EIO : uring_write_locked(&u->write, fd, buf, len, off, datasync);
    pthread_mutex_unlock(&u->write.lock);
    return r;
}

static int uring_fdatasync(struct io *io, int fd)
{
    struct uring_io *u = (struct uring_io *)io;
    pthread_mutex_lock(&u->sync.lock);
    int r = u->sync.broken ? -EIO : sync_locked(&u->sync, fd);
    pthread_mutex_unlock(&u->sync.lock);
    return r;
}

static void uring_destroy(struct io *io)
{
    struct uring_io *u = (struct uring_io *)io;
    io_uring_queue_exit(&u->write.ring);
    io_uring_queue_exit(&u->sync.ring);
    pthread_mutex_destroy(&u->write.lock);
    pthread_mutex_destroy(&u->sync.lock);
    free(u);
}

static const struct io_ops io_uring_ops = {
    .open = posix_open,
    .close = posix_close,
    .pread = posix_pread,
    .write = uring_write,
    .fdatasync = uring_fdatasync,
    .fsync = posix_fsync,
    .fallocate = posix_fallocate_,
    .ftruncate = posix_ftruncate,
    .fchmod = posix_fchmod,
    .rename = posix_rename,
    .unlink = posix_unlink,
    .sync_dir = posix_sync_dir,
    .destroy = uring_destroy,
};

struct io *io_uring_create(unsigned entries)
{
    struct uring_io *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    int r = io_uring_queue_init(entries, &u->write.ring, 0);
    if (r == 0) {
        r = io_uring_queue_init(entries, &u->sync.ring, 0);
        if (r < 0)
            io_uring_queue_exit(&u->write.ring);
    }
    if (r < 0) {
        free(u);
        errno = -r;
        return NULL;
    }
    pthread_mutex_init(&u->write.lock, NULL);
    pthread_mutex_init(&u->sync.lock, NULL);
    u->io.ops = &io_uring_ops;
    return &u->io;
}

/*
 * io_fault.c - a fault-injecting wrapper around another backend (tests).
 *
 * It counts calls per class (write, sync, read, metadata) and fails the nth
 * call of the armed classes with a chosen errno, once or from then on, or
 * makes the nth write short. This is how the tests prove that a failed write
 * or sync fences the log and is never reported as success (RELIABILITY S9-S13).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

struct fault_io {
    struct io io;
    struct io *base;
    pthread_mutex_t lock;
    uint64_t count[4];
    unsigned armed_ops;
    uint64_t nth;     /* 1-based among armed classes; 0 = disarmed */
    uint64_t armed_seen;
    int err;
    int forever;
    uint64_t short_nth;
    size_t short_keep;
    int refuse_direct;
    uint64_t writes;
};

static int class_index(unsigned op)
{
    return op == IO_FAULT_WRITE ? 0 : op == IO_FAULT_SYNC ? 1 : op == IO_FAULT_READ ? 2 : 3;
}

/* Counts one call of class op; returns the injected -errno or 0. */
static int tick(struct io *io, unsigned op)
{
    struct fault_io *f = (struct fault_io *)io;
    int r = 0;
    pthread_mutex_lock(&f->lock);
    f->count[class_index(op)]++;
    if (f->nth != 0 && (f->armed_ops & op)) {
        f->armed_seen++;
        if (f->armed_seen == f->nth || (f->forever && f->armed_seen > f->nth))
            r = -f->err;
    }
    pthread_mutex_unlock(&f->lock);
    return r;
}

#define BASE(io) (((struct fault_io *)(io))->base)

static int f_open(struct io *io, const char *path, int flags, mode_t mode)
{
    struct fault_io *f = (struct fault_io *)io;
    int r = tick(io, IO_FAULT_META);
    pthread_mutex_lock(&f->lock);
    if (!r && (flags & O_DIRECT) && f->refuse_direct)
        r = -EINVAL;
    pthread_mutex_unlock(&f->lock);
    return r ? r : BASE(io)->ops->open(BASE(io), path, flags, mode);
}

static int f_close(struct io *io, int fd)
{
    return BASE(io)->ops->close(BASE(io), fd);
}

static ssize_t f_pread(struct io *io, int fd, void *buf, size_t len, uint64_t off)
{
    int r = tick(io, IO_FAULT_READ);
    return r ? r : BASE(io)->ops->pread(BASE(io), fd, buf, len, off);
}

static int f_write(struct io *io, int fd, const void *buf, size_t len, uint64_t off, int datasync)
{
    struct fault_io *f = (struct fault_io *)io;
    int r = tick(io, IO_FAULT_WRITE);
    if (r)
        return r;
    pthread_mutex_lock(&f->lock);
    uint64_t n = ++f->writes;
    pthread_mutex_unlock(&f->lock);
    if (n == f->short_nth) {
        /* Part of the bytes reach the file, then the device gives up. A
         * direct write can only stop at a block boundary. */
        size_t keep = f->short_keep < len ? f->short_keep : len;
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && (fl & O_DIRECT))
            keep -= keep % 4096;
        if (keep)
            (void)BASE(io)->ops->write(BASE(io), fd, buf, keep, off, 0);
        return -EIO;
    }
    r = BASE(io)->ops->write(BASE(io), fd, buf, len, off, 0);
    if (r || !datasync)
        return r;
    r = tick(io, IO_FAULT_SYNC);
    return r ? r : BASE(io)->ops->fdatasync(BASE(io), fd);
}

static int f_fdatasync(struct io *io, int fd)
{
    int r = tick(io, IO_FAULT_SYNC);
    return r ? r : BASE(io)->ops->fdatasync(BASE(io), fd);
}

static int f_fsync(struct io *io, int fd)
{
    int r = tick(io, IO_FAULT_SYNC);
    return r ? r : BASE(io)->ops->fsync(BASE(io), fd);
}

static int f_fallocate(struct io *io, int fd, uint64_t len)
{
    int r = tick(io, IO_FAULT_META);
    return r ? r : BASE(io)->ops->fallocate(BASE(io), fd, len);
}

static int f_ftruncate(struct io *io, int fd, uint64_t len)
{
    int r = tick(io, IO_FAULT_META);
    return r ? r : BASE(io)->ops->ftruncate(BASE(io), fd, len);
}

static int f_fchmod(struct io *io, int fd, mode_t mode)
{
    int r = tick(io, IO_FAULT_META);
    return r ? r : BASE(io)->ops->fchmod(BASE(io), fd, mode);
}

static int f_rename(struct io *io, const char *from, const char *to)
{
    int r = tick(io, IO_FAULT_META);
    return r ? r : BASE(io)->ops->rename(BASE(io), from, to);
}

static int f_unlink(struct io *io, const char *path)
{
    int r = tick(io, IO_FAULT_META);
    return r ? r : BASE(io)->ops->unlink(BASE(io), path);
}

static int f_sync_dir(struct io *io, const char *dir)
{
    int r = tick(io, IO_FAULT_SYNC);
    return r ? r : BASE(io)->ops->sync_dir(BASE(io), dir);
}

static void f_destroy(struct io *io)
{
    struct fault_io *f = (struct fault_io *)io;
    f->base->ops->destroy(f->base);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

static const struct io_ops io_fault_ops = {
    .open = f_open,
    .close = f_close,
    .pread = f_pread,
    .write = f_write,
    .fdatasync = f_fdatasync,
    .fsync = f_fsync,
    .fallocate = f_fallocate,
    .ftruncate = f_ftruncate,
    .fchmod = f_fchmod,
    .rename = f_rename,
    .unlink = f_unlink,
    .sync_dir = f_sync_dir,
    .destroy = f_destroy,
};

struct io *io_fault_create(struct io *base)
{
    struct fault_io *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->base = base;
    pthread_mutex_init(&f->lock, NULL);
    f->io.ops = &io_fault_ops;
    return &f->io;
}

void io_fault_arm(struct io *io, unsigned ops, uint64_t nth, int err, int forever)
{
    struct fault_io *f = (struct fault_io *)io;
    pthread_mutex_lock(&f->lock);
    f->armed_ops = ops;
    f->nth = nth;
    f->armed_seen = 0;
    f->err = err;
    f->forever = forever;
    pthread_mutex_unlock(&f->lock);
}

uint64_t io_fault_count(struct io *io, unsigned ops)
{
    struct fault_io *f = (struct fault_io *)io;
    uint64_t n = 0;
    pthread_mutex_lock(&f->lock);
    for (unsigned bit = 0; bit < 4; bit++)
        if (ops & (1u << bit))
            n += f->count[bit];
    pthread_mutex_unlock(&f->lock);
    return n;
}

void io_fault_refuse_direct(struct io *io, int refuse)
{
    struct fault_io *f = (struct fault_io *)io;
    pthread_mutex_lock(&f->lock);
    f->refuse_direct = refuse;
    pthread_mutex_unlock(&f->lock);
}

void io_fault_short_write(struct io *io, uint64_t nth, size_t keep)
{
    struct fault_io *f = (struct fault_io *)io;
    pthread_mutex_lock(&f->lock);
    f->short_nth = f->writes + nth;
    f->short_keep = keep;
    pthread_mutex_unlock(&f->lock);
}

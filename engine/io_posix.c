/*
 * io_posix.c - the plain POSIX backend of the I/O seam (io.h): pread, pwrite,
 * fdatasync. The io_uring and fault backends reuse its functions for the
 * operations they do not override.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Bounded retries for zero-progress writes and EINTR storms (STYLE.md). */
#define IO_RETRY_MAX 64

int posix_open(struct io *io, const char *path, int flags, mode_t mode)
{
    (void)io;
    int fd;
    do {
        fd = open(path, flags | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -errno;
    if (fd < 3) {
        /* RELIABILITY S33: fds 0-2 belong to stdio; a host that closed them
         * must not get a segment there, or a stray print would land in it.
         * The file moves above 2 and /dev/null, read-only, takes the slot
         * (as SQLite does): no later open, on any of the engine's threads,
         * lands there even for the moment before its move, and a stray
         * write to the slot fails (EBADF) instead of reaching a file. */
        int hi = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        int e = errno;
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0 && nul != fd) {
            if (dup2(nul, fd) < 0)
                close(fd);
            if (nul > 2)
                close(nul); /* else it filled another empty slot: keep it */
        } else if (nul < 0) {
            close(fd);
        }
        if (hi < 0)
            return -e;
        fd = hi;
    }
    return fd;
}

int posix_close(struct io *io, int fd)
{
    (void)io;
    /* No retry on EINTR: Linux releases the fd even when close is interrupted. */
    return close(fd) == 0 ? 0 : -errno;
}

ssize_t posix_pread(struct io *io, int fd, void *buf, size_t len, uint64_t off)
{
    (void)io;
    size_t done = 0;
    int retries = 0;
    while (done < len) {
        ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR && ++retries < IO_RETRY_MAX)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

int posix_fdatasync(struct io *io, int fd)
{
    (void)io;
    /* A failed fdatasync is never retried (fsyncgate): its error is final. */
    return fdatasync(fd) == 0 ? 0 : -errno;
}

static int posix_write(struct io *io, int fd, const void *buf, size_t len, uint64_t off, int datasync)
{
    size_t done = 0;
    int stalls = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
        if (w < 0 && errno != EINTR)
            return -errno;
        if (w <= 0) {
            /* A short write is resumed at off + done; a loop that makes no
             * progress is bounded and then fails (RELIABILITY S13). */
            if (++stalls >= IO_RETRY_MAX)
                return -EIO;
            continue;
        }
        done += (size_t)w;
    }
    return datasync ? posix_fdatasync(io, fd) : 0;
}

int posix_fsync(struct io *io, int fd)
{
    (void)io;
    return fsync(fd) == 0 ? 0 : -errno;
}

int posix_fallocate_(struct io *io, int fd, uint64_t len)
{
    (void)io;
    int r;
    do {
        r = fallocate(fd, 0, 0, (off_t)len);
    } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : -errno;
}

int posix_ftruncate(struct io *io, int fd, uint64_t len)
{
    (void)io;
    return ftruncate(fd, (off_t)len) == 0 ? 0 : -errno;
}

int posix_fchmod(struct io *io, int fd, mode_t mode)
{
    (void)io;
    return fchmod(fd, mode) == 0 ? 0 : -errno;
}

int posix_rename(struct io *io, const char *from, const char *to)
{
    (void)io;
    return rename(from, to) == 0 ? 0 : -errno;
}

int posix_unlink(struct io *io, const char *path)
{
    (void)io;
    return unlink(path) == 0 ? 0 : -errno;
}

int posix_sync_dir(struct io *io, const char *dir)
{
    /* fsync on a file does not make its directory entry durable; creating,
     * renaming or deleting a file is durable only after the directory's fsync. */
    int fd = posix_open(io, dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    int r = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return r;
}

static void posix_destroy(struct io *io)
{
    free(io);
}

const struct io_ops io_posix_ops = {
    .open = posix_open,
    .close = posix_close,
    .pread = posix_pread,
    .write = posix_write,
    .fdatasync = posix_fdatasync,
    .fsync = posix_fsync,
    .fallocate = posix_fallocate_,
    .ftruncate = posix_ftruncate,
    .fchmod = posix_fchmod,
    .rename = posix_rename,
    .unlink = posix_unlink,
    .sync_dir = posix_sync_dir,
    .destroy = posix_destroy,
};

struct io *io_posix_create(void)
{
    struct io *io = malloc(sizeof *io);
    if (io)
        io->ops = &io_posix_ops;
    return io;
}

int io_read_full(struct io *io, int fd, void *buf, size_t len, uint64_t off)
{
    ssize_t r = io->ops->pread(io, fd, buf, len, off);
    if (r < 0)
        return (int)r;
    return (size_t)r == len ? 0 : -ENODATA;
}

/*
 * io.h - the one seam every file operation of the engine goes through.
 *
 * Backends: io_uring.c (the real write path), io_posix.c (pwrite + fdatasync,
 * and the base of the others) and io_fault.c (fails chosen calls, for tests).
 * Every function returns 0 (or a byte count) on success and -errno on failure;
 * none of them retries a failed sync. Writes are complete or fail: a backend
 * resubmits short writes itself and gives up with -EIO when a write makes no
 * progress.
 */
#ifndef STELE_IO_H
#define STELE_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct io;

struct io_ops {
    /* Returns an fd >= 3 (lower ones are re-dup'ed: a stray write(2, ...) by
     * the host program must never land in a segment) or -errno. */
    int (*open)(struct io *io, const char *path, int flags, mode_t mode);
    int (*close)(struct io *io, int fd);
    /* Reads up to len bytes; returns the count (short only at EOF) or -errno. */
    ssize_t (*pread)(struct io *io, int fd, void *buf, size_t len, uint64_t off);
    /* Writes all of buf at off and, when datasync is set, makes it durable
     * with fdatasync ordered after the write. */
    int (*write)(struct io *io, int fd, const void *buf, size_t len, uint64_t off, int datasync);
    int (*fdatasync)(struct io *io, int fd);
    int (*fsync)(struct io *io, int fd);
    int (*fallocate)(struct io *io, int fd, uint64_t len);
    int (*ftruncate)(struct io *io, int fd, uint64_t len);
    int (*fchmod)(struct io *io, int fd, mode_t mode);
    int (*rename)(struct io *io, const char *from, const char *to);
    int (*unlink)(struct io *io, const char *path);
    int (*sync_dir)(struct io *io, const char *dir);
    void (*destroy)(struct io *io);
};

struct io {
    const struct io_ops *ops;
};

/* Each returns NULL with errno set on failure. */
struct io *io_posix_create(void);
struct io *io_uring_create(unsigned entries);

/* The fault-injecting wrapper (tests): wraps base, which it owns. */
enum io_fault_op {
    IO_FAULT_WRITE = 1u << 0,
    IO_FAULT_SYNC = 1u << 1,      /* fdatasync, fsync, sync_dir, and the sync of a datasync write */
    IO_FAULT_READ = 1u << 2,
    IO_FAULT_META = 1u << 3,      /* open, fallocate, ftruncate, rename, unlink, fchmod */
};
struct io *io_fault_create(struct io *base);
/* From the nth (1-based) call among ops on, fail with -err: once, or forever. */
void io_fault_arm(struct io *io, unsigned ops, uint64_t nth, int err, int forever);
/* Calls counted so far among ops. */
uint64_t io_fault_count(struct io *io, unsigned ops);
/* Makes the nth write short: only `keep` bytes reach the file, then -EIO. */
void io_fault_short_write(struct io *io, uint64_t nth, size_t keep);

/* Whole-buffer helpers on top of the ops. */
int io_read_full(struct io *io, int fd, void *buf, size_t len, uint64_t off);

#endif

/*
 * io.h - the one seam every file operation of the engine goes through.
 *
 * Backends: io_uring.c (the real write path), io_posix.c (pwrite + fdatasync,
 * and the base of the others), io_fault.c (fails chosen calls, for tests) and
 * io_sim.c (simulated storage: what a power loss would leave, for tests).
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

/* A test hook of the io_uring backend (tests only: unset in production,
 * where it costs a load and a branch per event). The backend passes every
 * result it is about to act on through fn and acts on what fn returns:
 *  - IO_URING_SUBMIT, IO_URING_WAIT: the result of io_uring_submit (count or
 *    -errno) and of io_uring_wait_cqe (0 or -errno), after the call. A
 *    replaced wait leaves its completion in the queue for the next wait; a
 *    replaced submit leaves the entries submitted, so the backend's retry
 *    submits nothing new, as a retry after a failed io_uring_enter that took
 *    nothing would submit them once;
 *  - IO_URING_CQE_*: a completion's res; len is the byte count the write
 *    asked for (0 for syncs).
 * Replacing a result does not change what the kernel did: a write reported
 * short was whole, and the backend writes its rest again with the same
 * bytes. A hook that fails or shortens a write should also turn the sync
 * linked to it into -ECANCELED, as the kernel would (IO_URING_CQE_LINKED_SYNC
 * comes right after its write's completion). fn runs on the thread doing the
 * I/O (the writer's and the syncer's rings: two threads at once). */
enum io_uring_event {
    IO_URING_SUBMIT = 0,
    IO_URING_WAIT = 1,
    IO_URING_CQE_WRITE = 2,
    IO_URING_CQE_LINKED_SYNC = 3, /* the fdatasync linked after a write (IOSQE_IO_LINK) */
    IO_URING_CQE_SYNC = 4,        /* an fdatasync on its own */
};
struct io_uring_hook {
    int (*fn)(void *ctx, enum io_uring_event event, int res, size_t len);
    void *ctx;
};
/* Installs hook for every io_uring backend of the process (NULL: none); hook
 * must stay valid until it is replaced. */
void io_uring_hook_set(const struct io_uring_hook *hook);

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
/* From now on (refuse 1) every open asking for O_DIRECT fails with EINVAL,
 * as on a file system without direct I/O. */
void io_fault_refuse_direct(struct io *io, int refuse);

/* Simulated storage (tests; io_sim.c has the model). Wraps base (which it
 * owns) over the real directory dir and tracks, per file, what is durable
 * apart from what is only written, and which entries of dir are durable
 * (and dir's own entry, when dir did not exist yet: made durable by a
 * sync_dir of its parent).
 * Every mutating call that succeeds is one step (a write with datasync is
 * two: the write, then the sync). */
struct io *io_sim_create(struct io *base, const char *dir);
/* One more owner: io is freed by the last of its destroy calls. A test
 * retains the simulator it hands to stele_open_io, which destroys it on
 * close or on a failed open, so the model outlives the log. */
void io_sim_retain(struct io *io);
/* Calls fn (under the simulator's lock) after every step, with its number
 * and a description. */
void io_sim_trace(struct io *io, void (*fn)(void *ctx, uint64_t step, const char *what), void *ctx);
/* Makes every sync take at least usec microseconds (slept without the
 * simulator's lock), so that a pipelined writer gets several batches ahead
 * of its syncs, as on a real disk. */
void io_sim_sync_delay(struct io *io, unsigned usec);
/* Freezes right after step n (1-based; 0 = never): every later mutating call
 * fails with -EIO and changes nothing, as if the power went there. */
void io_sim_crash_after(struct io *io, uint64_t n);
void io_sim_freeze(struct io *io);
int io_sim_frozen(struct io *io);
/* Steps taken so far; the last one described (for messages). */
uint64_t io_sim_steps(struct io *io);
void io_sim_last_step(struct io *io, char *dst, size_t dst_capacity);
/* Changes not yet durable: file changes (writes, sizes, modes) and entry changes. */
void io_sim_pending(struct io *io, uint64_t *out_data_ops, uint64_t *out_dir_ops);
/* Of those, the writes. */
uint64_t io_sim_pending_writes(struct io *io);
/* 1 if bytes [off, off + len) of path and path's directory entry would
 * survive any crash the simulator can make now, else 0 (RELIABILITY I0). */
int io_sim_check_durable(struct io *io, const char *path, uint64_t off, uint64_t len);

/* Crash modes: one data mode | for IO_SIM_DATA_TEAR a tear point and a fill |
 * one directory mode. */
enum io_sim_mode {
    IO_SIM_DATA_DROP = 0,       /* unsynced file changes are lost */
    IO_SIM_DATA_KEEP = 1,       /* every change made it (written back in time) */
    IO_SIM_DATA_SECTORS = 2,    /* a random subset of unsynced 512-byte sectors made it (S4) */
    IO_SIM_DATA_BLOCKS = 3,     /* the same with 4096-byte blocks */
    IO_SIM_DATA_TEAR = 4,       /* all made it but the last write, which is torn (S3) */
    IO_SIM_DATA_MASK = 7,
    IO_SIM_TEAR_1 = 0 << 3,     /* ... after 1 byte */
    IO_SIM_TEAR_3 = 1 << 3,     /* ... after 3 bytes */
    IO_SIM_TEAR_512 = 2 << 3,   /* ... after a random multiple of 512 bytes */
    IO_SIM_TEAR_4096 = 3 << 3,  /* ... after a random multiple of 4096 bytes */
    IO_SIM_TEAR_MASK = 3 << 3,
    IO_SIM_FILL_ZERO = 0 << 5,  /* the rest of the torn write reads as zeros */
    IO_SIM_FILL_GARBAGE = 1 << 5, /* ... as random bytes */
    IO_SIM_FILL_OLD = 2 << 5,   /* ... as what was there before */
    IO_SIM_FILL_MASK = 3 << 5,
    IO_SIM_DIR_KEEP = 0 << 7,   /* every entry change made it */
    IO_SIM_DIR_DROP = 1 << 7,   /* entry changes since the last directory sync are lost (S6), and dir
                                   itself if its parent was not synced since dir was made */
    IO_SIM_DIR_PREFIX = 2 << 7, /* a random prefix of them made it (they are journalled in order) */
    IO_SIM_DIR_MASK = 3 << 7,
};
/* Makes dir hold a state a power loss could leave now (deterministic in
 * seed) and freezes; the handle must not be used afterwards except to be
 * closed (its log freed). Returns 0 or -errno. */
int io_sim_crash(struct io *io, unsigned mode, uint64_t seed);
/* The same state written to dst_dir instead (created; its files replaced),
 * leaving dir and the simulator as they are, so that one frozen run yields
 * many states. *out_digest (may be NULL) identifies the state's names, modes
 * and bytes; with dst_dir NULL only the digest is computed. */
int io_sim_crash_into(struct io *io, unsigned mode, uint64_t seed, const char *dst_dir, uint64_t *out_digest);
/* A process crash without power loss (RELIABILITY S8): the page cache
 * survives, so the next process sees every write, but a later power loss can
 * still take what was never synced. Returns a new simulator (on a new POSIX
 * base) carrying a copy of io's model: over dst_dir, into which the files as
 * the page cache has them are written (io is left as it is, so one frozen
 * run yields many), or over io's own directory when dst_dir is NULL (io is
 * then frozen). NULL with errno set on failure. */
struct io *io_sim_process_crash(struct io *io, const char *dst_dir);

/* Whole-buffer helpers on top of the ops. */
int io_read_full(struct io *io, int fd, void *buf, size_t len, uint64_t off);

#endif

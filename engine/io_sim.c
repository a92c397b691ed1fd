/*
 * io_sim.c - simulated storage for crash-state exploration (tests; RELIABILITY
 * §2 "simfs", goals G1, G2; the LevelDB FaultInjectionTestEnv and RocksDB
 * FaultInjectionTestFS approach).
 *
 * It wraps another backend (the POSIX one) over a real directory: every
 * operation really happens, so the engine sees what a page cache would show
 * it. Beside that, the simulator keeps a model of what a power loss would
 * leave:
 *  - per file (an inode, whatever its names): its content, size and mode as
 *    of its last successful fdatasync (content and size) or fsync (also the
 *    mode), plus the ordered list of changes since: writes (with their bytes),
 *    truncations, preallocations, a chmod;
 *  - for the one directory it watches: the entries made durable by the last
 *    directory sync, plus the ordered list of entry changes since (creates,
 *    renames, unlinks). A file's own fsync does not make its entry durable;
 *    a directory that did not exist when the simulator started is itself
 *    durable only after a sync of its parent.
 * A sync covers the changes that were complete when it started: writes and
 * syncs run without the simulator's lock, so a pipelined writer's write can
 * overlap a sync of the same file, as on a real file system (RELIABILITY
 * S15). Every mutating call that succeeds is one numbered step; a write with
 * datasync counts as two (the write, then its sync), so a crash can fall
 * between them. io_sim_crash_after(n) freezes the simulator right after step
 * n: from then on every mutating call fails with -EIO without touching
 * anything, as if the machine had lost power there, while reads still work.
 *
 * From the model, io_sim_crash* builds one state a power loss could leave
 * (deterministically from a seed) and writes it to a directory: unsynced data
 * dropped, kept, kept for a random subset of 512-byte sectors or 4 KiB blocks
 * (RELIABILITY S4), or the last unsynced write torn after 1, 3 or a 512- or
 * 4096-aligned number of bytes with zeros, garbage or the old bytes after the
 * tear (S3); combined with directory entry changes kept, lost (S6), or kept
 * up to a random point (they are journalled in order). The model is weaker
 * than any real file system on purpose: anything not ordered by a sync may be
 * lost or reordered.
 *
 * io_sim_process_crash models a process crash without power loss (S8): the
 * next process sees the page cache, and a later power loss can still take
 * what nobody synced. io_sim_check_durable answers whether bytes and their
 * directory entry would survive any crash; the tests call it when the engine
 * acknowledges a batch (RELIABILITY I0). Files found in the directory when the
 * simulator is created, or met later without having been created through it,
 * are taken as durable. Pure bookkeeping: the only syncs are those the wrapped
 * backend does.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

enum { OP_WRITE, OP_TRUNCATE, OP_ALLOCATE, OP_CHMOD };

/* One change to a file since its last sync. */
struct sim_op {
    int kind;
    uint64_t seq;  /* order among every file's changes */
    uint64_t off;  /* OP_WRITE: where; OP_TRUNCATE, OP_ALLOCATE: the size; OP_CHMOD: the mode */
    uint64_t len;
    uint8_t *data; /* OP_WRITE: a copy of the bytes */
};

struct sim_file {
    uint8_t *dur;  /* content as of the last sync */
    uint64_t dur_size;
    uint64_t dur_cap;
    mode_t dur_mode;
    struct sim_op *ops;
    size_t op_count;
    size_t op_cap;
};

enum { DOP_LINK, DOP_UNLINK, DOP_RENAME };

struct sim_entry {
    char *name;
    int file;
};

struct sim_dirop {
    int kind;
    char *name;
    char *to;      /* DOP_RENAME */
    int file;      /* DOP_LINK */
};

struct sim_dir {
    struct sim_entry *e;
    size_t count;
    size_t cap;
};

/* What a power loss would leave, apart from the real directory. */
struct sim_model {
    struct sim_file **files;
    size_t file_count;
    size_t file_cap;
    struct sim_dir durable;  /* entries as of the last directory sync */
    struct sim_dir current;  /* entries now (= durable + pending) */
    struct sim_dirop *dirops;
    size_t dirop_count;
    size_t dirop_cap;
    uint64_t seq;
    int dir_durable;         /* the directory's own entry in its parent */
};

struct sim_io {
    struct io io;
    struct io *base;
    pthread_mutex_t lock;
    char *dir;
    struct sim_model *m;     /* NULL once handed on by io_sim_process_crash */
    int *fd_file;            /* fd -> file index + 1 (0: not watched) */
    size_t fd_cap;
    uint64_t steps;
    uint64_t crash_after;
    int frozen;
    int refs;                /* io_sim_retain; the last destroy frees */
    unsigned sync_delay_us;  /* io_sim_sync_delay */
    void (*trace)(void *ctx, uint64_t step, const char *what);
    void *trace_ctx;
    char last[512];          /* the last step, for messages */
};

#define SIM(io) ((struct sim_io *)(io))

/* ------------------------------------------------------------ helpers */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        abort(); /* a test harness: running out of memory is not a case it handles */
    return q;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: any seed, including 0, gives a good sequence. */
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* The name of path inside the watched directory, or NULL when it lies elsewhere. */
static const char *name_in_dir(const struct sim_io *s, const char *path)
{
    size_t n = strlen(s->dir);
    if (strncmp(path, s->dir, n) != 0 || path[n] != '/')
        return NULL;
    const char *name = path + n + 1;
    return *name && !strchr(name, '/') ? name : NULL;
}

static int same_dir(const struct sim_io *s, const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    return n == strlen(s->dir) && strncmp(dir, s->dir, n) == 0;
}

/* Is dir the parent of the watched directory? */
static int parent_dir(const struct sim_io *s, const char *dir)
{
    const char *slash = strrchr(s->dir, '/');
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (!slash)
        return n == 1 && dir[0] == '.';
    size_t pn = slash == s->dir ? 1 : (size_t)(slash - s->dir);
    return n == pn && strncmp(dir, s->dir, n) == 0;
}

static ssize_t dir_find(const struct sim_dir *d, const char *name)
{
    for (size_t i = 0; i < d->count; i++)
        if (strcmp(d->e[i].name, name) == 0)
            return (ssize_t)i;
    return -1;
}

static void dir_set(struct sim_dir *d, const char *name, int file)
{
    ssize_t i = dir_find(d, name);
    if (i >= 0) {
        d->e[i].file = file;
        return;
    }
    if (d->count == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 16;
        d->e = xrealloc(d->e, d->cap * sizeof *d->e);
    }
    d->e[d->count++] = (struct sim_entry){xstrdup(name), file};
}

static void dir_remove(struct sim_dir *d, const char *name)
{
    ssize_t i = dir_find(d, name);
    if (i < 0)
        return;
    free(d->e[i].name);
    d->e[i] = d->e[--d->count];
}

static void dir_free(struct sim_dir *d)
{
    for (size_t i = 0; i < d->count; i++)
        free(d->e[i].name);
    free(d->e);
    memset(d, 0, sizeof *d);
}

static void dir_copy(struct sim_dir *dst, const struct sim_dir *src)
{
    dir_free(dst);
    for (size_t i = 0; i < src->count; i++)
        dir_set(dst, src->e[i].name, src->e[i].file);
}

static void dirop_apply(struct sim_dir *d, const struct sim_dirop *op)
{
    if (op->kind == DOP_LINK) {
        dir_set(d, op->name, op->file);
    } else if (op->kind == DOP_UNLINK) {
        dir_remove(d, op->name);
    } else {
        ssize_t i = dir_find(d, op->name);
        if (i < 0)
            return;
        int file = d->e[i].file;
        dir_remove(d, op->name);
        dir_set(d, op->to, file);
    }
}

/* Records an entry change: applied to the current entries, pending for the durable ones. */
static void dirop_add(struct sim_model *m, int kind, const char *name, const char *to, int file)
{
    if (m->dirop_count == m->dirop_cap) {
        m->dirop_cap = m->dirop_cap ? m->dirop_cap * 2 : 16;
        m->dirops = xrealloc(m->dirops, m->dirop_cap * sizeof *m->dirops);
    }
    struct sim_dirop *op = &m->dirops[m->dirop_count++];
    *op = (struct sim_dirop){kind, xstrdup(name), to ? xstrdup(to) : NULL, file};
    dirop_apply(&m->current, op);
}

static void dirops_clear(struct sim_model *m)
{
    for (size_t i = 0; i < m->dirop_count; i++) {
        free(m->dirops[i].name);
        free(m->dirops[i].to);
    }
    m->dirop_count = 0;
}

/* ------------------------------------------------------------ file images */

struct image {
    uint8_t *buf;
    uint64_t size;
    uint64_t cap;
    mode_t mode;
};

static void image_reserve(struct image *im, uint64_t size)
{
    if (size <= im->cap)
        return;
    uint64_t cap = im->cap ? im->cap : 4096;
    while (cap < size)
        cap *= 2;
    im->buf = xrealloc(im->buf, (size_t)cap);
    im->cap = cap;
}

/* Sets the size; bytes that appear read as zeros. */
static void image_resize(struct image *im, uint64_t size)
{
    image_reserve(im, size);
    if (size > im->size)
        memset(im->buf + im->size, 0, (size_t)(size - im->size));
    im->size = size;
}

static void image_apply(struct image *im, const struct sim_op *op)
{
    switch (op->kind) {
    case OP_WRITE:
        if (op->off + op->len > im->size)
            image_resize(im, op->off + op->len);
        memcpy(im->buf + op->off, op->data, (size_t)op->len);
        break;
    case OP_TRUNCATE:
        image_resize(im, op->off);
        break;
    case OP_ALLOCATE:
        if (op->off > im->size)
            image_resize(im, op->off);
        break;
    case OP_CHMOD:
        im->mode = (mode_t)op->off;
        break;
    }
}

static void image_from_durable(struct image *im, const struct sim_file *f)
{
    im->size = 0;
    image_resize(im, f->dur_size);
    if (f->dur_size)
        memcpy(im->buf, f->dur, (size_t)f->dur_size);
    im->mode = f->dur_mode;
}

static void image_free(struct image *im)
{
    free(im->buf);
    memset(im, 0, sizeof *im);
}

static void file_free(struct sim_file *f)
{
    for (size_t i = 0; i < f->op_count; i++)
        free(f->ops[i].data);
    free(f->ops);
    free(f->dur);
    free(f);
}

/* A sync: the changes made before it started (seq <= upto) become durable,
 * the mode only with fsync. */
static void file_commit(struct sim_file *f, int with_mode, uint64_t upto)
{
    struct image im = {f->dur, f->dur_size, f->dur_cap, f->dur_mode};
    size_t kept = 0;
    for (size_t i = 0; i < f->op_count; i++) {
        struct sim_op *op = &f->ops[i];
        if ((op->kind == OP_CHMOD && !with_mode) || op->seq > upto) {
            f->ops[kept++] = *op;
            continue;
        }
        image_apply(&im, op);
        free(op->data);
    }
    f->op_count = kept;
    f->dur = im.buf;
    f->dur_size = im.size;
    f->dur_cap = im.cap;
    f->dur_mode = im.mode;
}

static void file_op(struct sim_model *m, struct sim_file *f, int kind, uint64_t off, uint64_t len, const void *data)
{
    if (f->op_count == f->op_cap) {
        f->op_cap = f->op_cap ? f->op_cap * 2 : 8;
        f->ops = xrealloc(f->ops, f->op_cap * sizeof *f->ops);
    }
    uint8_t *copy = NULL;
    if (kind == OP_WRITE) {
        copy = xrealloc(NULL, (size_t)len);
        memcpy(copy, data, (size_t)len);
    }
    f->ops[f->op_count++] = (struct sim_op){kind, ++m->seq, off, len, copy};
}

static int file_new(struct sim_model *m, mode_t mode)
{
    struct sim_file *f = calloc(1, sizeof *f);
    if (!f)
        abort();
    f->dur_mode = mode & 07777;
    if (m->file_count == m->file_cap) {
        m->file_cap = m->file_cap ? m->file_cap * 2 : 16;
        m->files = xrealloc(m->files, m->file_cap * sizeof *m->files);
    }
    m->files[m->file_count] = f;
    return (int)m->file_count++;
}

/* Takes a file that exists but was not created through us as durable. */
static int file_adopt(struct sim_model *m, const char *path, const char *name)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return -1;
    int id = file_new(m, st.st_mode);
    struct sim_file *f = m->files[id];
    f->dur = xrealloc(NULL, (size_t)st.st_size);
    f->dur_size = f->dur_cap = (uint64_t)st.st_size;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? pread(fd, f->dur, (size_t)st.st_size, 0) : -1;
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)st.st_size)
        memset(f->dur, 0, (size_t)st.st_size);
    dir_set(&m->durable, name, id);
    dir_set(&m->current, name, id);
    return id;
}

static void model_free(struct sim_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->file_count; i++)
        file_free(m->files[i]);
    free(m->files);
    dir_free(&m->durable);
    dir_free(&m->current);
    dirops_clear(m);
    free(m->dirops);
    free(m);
}

/* ------------------------------------------------------------ steps */

static void fd_set_file(struct sim_io *s, int fd, int file)
{
    if (fd < 0)
        return;
    if ((size_t)fd >= s->fd_cap) {
        size_t cap = s->fd_cap ? s->fd_cap : 64;
        while (cap <= (size_t)fd)
            cap *= 2;
        s->fd_file = xrealloc(s->fd_file, cap * sizeof *s->fd_file);
        memset(s->fd_file + s->fd_cap, 0, (cap - s->fd_cap) * sizeof *s->fd_file);
        s->fd_cap = cap;
    }
    s->fd_file[fd] = file + 1;
}

static struct sim_file *fd_file(struct sim_io *s, int fd)
{
    if (!s->m || fd < 0 || (size_t)fd >= s->fd_cap || s->fd_file[fd] == 0)
        return NULL;
    return s->m->files[s->fd_file[fd] - 1];
}

/* Counts a step that happened; freezes when it is the one to crash after. */
static void step_done(struct sim_io *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void step_done(struct sim_io *s, const char *fmt, ...)
{
    s->steps++;
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(s->last, sizeof s->last, "step %llu: ", (unsigned long long)s->steps);
    vsnprintf(s->last + n, sizeof s->last - (size_t)n, fmt, ap);
    va_end(ap);
    if (s->trace)
        s->trace(s->trace_ctx, s->steps, s->last + n);
    if (s->crash_after && s->steps >= s->crash_after)
        s->frozen = 1;
}

static const char *fd_name(struct sim_io *s, int fd)
{
    if (!s->m || fd < 0 || (size_t)fd >= s->fd_cap || s->fd_file[fd] == 0)
        return "(unwatched)";
    int file = s->fd_file[fd] - 1;
    for (size_t i = 0; i < s->m->current.count; i++)
        if (s->m->current.e[i].file == file)
            return s->m->current.e[i].name;
    return "(unlinked)";
}

/* ------------------------------------------------------------ the ops */

static int sim_open(struct io *io, const char *path, int flags, mode_t mode)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    const char *name = name_in_dir(s, path);
    int mutating = (flags & (O_CREAT | O_TRUNC)) != 0;
    int fd;
    if (mutating && s->frozen) {
        fd = -EIO;
        goto out;
    }
    ssize_t at = name && s->m ? dir_find(&s->m->current, name) : -1;
    if (name && s->m && at < 0 && access(path, F_OK) == 0) {
        /* There, but not made through us: taken as durable before opening. */
        (void)file_adopt(s->m, path, name);
        at = dir_find(&s->m->current, name);
    }
    fd = s->base->ops->open(s->base, path, flags, mode);
    if (fd < 0 || !name || !s->m)
        goto out;
    int file;
    if (at < 0) {
        /* Not there before the open, so the open created it. */
        struct stat st;
        file = file_new(s->m, fstat(fd, &st) == 0 ? st.st_mode : mode);
        dirop_add(s->m, DOP_LINK, name, NULL, file);
        step_done(s, "create %s", name);
    } else {
        file = s->m->current.e[at].file;
        if (flags & O_TRUNC) {
            file_op(s->m, s->m->files[file], OP_TRUNCATE, 0, 0, NULL);
            step_done(s, "truncate %s at open", name);
        }
    }
    if (file >= 0)
        fd_set_file(s, fd, file);
out:
    pthread_mutex_unlock(&s->lock);
    return fd;
}

static int sim_close(struct io *io, int fd)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    if (fd >= 0 && (size_t)fd < s->fd_cap)
        s->fd_file[fd] = 0;
    pthread_mutex_unlock(&s->lock);
    return s->base->ops->close(s->base, fd);
}

static ssize_t sim_pread(struct io *io, int fd, void *buf, size_t len, uint64_t off)
{
    return SIM(io)->base->ops->pread(SIM(io)->base, fd, buf, len, off);
}

/* fdatasync (with_mode 0) or fsync (1) of fd, as one step; called and
 * returns with s->lock held. The lock is let go while the real call runs, so
 * that writes from another thread can overlap it as they would on a real
 * file system: a sync covers only the changes that were complete when it
 * started (RELIABILITY S15), and one the power interrupted covers nothing. */
static int sync_step(struct sim_io *s, int fd, int with_mode)
{
    if (s->frozen)
        return -EIO;
    uint64_t upto = s->m ? s->m->seq : 0;
    struct sim_file *f = fd_file(s, fd); /* files are never freed before the model */
    unsigned delay_us = s->sync_delay_us;
    pthread_mutex_unlock(&s->lock);
    if (delay_us) {
        struct timespec ts = {0, (long)delay_us * 1000L};
        nanosleep(&ts, NULL);
    }
    int r = with_mode ? s->base->ops->fsync(s->base, fd) : s->base->ops->fdatasync(s->base, fd);
    pthread_mutex_lock(&s->lock);
    if (r < 0)
        return r;
    if (s->frozen)
        return -EIO;
    if (f && s->m)
        file_commit(f, with_mode, upto);
    step_done(s, "%s %s", with_mode ? "fsync" : "fdatasync", fd_name(s, fd));
    return 0;
}

static int sim_write(struct io *io, int fd, const void *buf, size_t len, uint64_t off, int datasync)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    int r = -EIO;
    if (s->frozen)
        goto out;
    /* Unlocked while it runs (see sync_step); a change counts from when it
     * completed. The write and its sync are separate steps: a crash can come
     * between. */
    struct sim_file *f = fd_file(s, fd);
    pthread_mutex_unlock(&s->lock);
    r = s->base->ops->write(s->base, fd, buf, len, off, 0);
    pthread_mutex_lock(&s->lock);
    if (r < 0)
        goto out;
    if (s->frozen) {
        r = -EIO; /* the power went while it ran: it never completed */
        goto out;
    }
    if (f && s->m)
        file_op(s->m, f, OP_WRITE, off, len, buf);
    step_done(s, "write %s offset %llu size %zu", fd_name(s, fd), (unsigned long long)off, len);
    if (datasync)
        r = sync_step(s, fd, 0);
out:
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int sim_fdatasync(struct io *io, int fd)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    int r = sync_step(s, fd, 0);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int sim_fsync(struct io *io, int fd)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    int r = sync_step(s, fd, 1);
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* fallocate, ftruncate and fchmod: one recorded change each. */
static int size_step(struct io *io, int fd, int kind, uint64_t arg)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    int r = -EIO;
    if (s->frozen)
        goto out;
    r = kind == OP_ALLOCATE   ? s->base->ops->fallocate(s->base, fd, arg)
        : kind == OP_TRUNCATE ? s->base->ops->ftruncate(s->base, fd, arg)
                              : s->base->ops->fchmod(s->base, fd, (mode_t)arg);
    if (r < 0)
        goto out;
    struct sim_file *f = fd_file(s, fd);
    if (f)
        file_op(s->m, f, kind, arg, 0, NULL);
    step_done(s, "%s %s %llo", kind == OP_ALLOCATE ? "fallocate" : kind == OP_TRUNCATE ? "ftruncate" : "fchmod",
              fd_name(s, fd), (unsigned long long)arg);
out:
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int sim_fallocate(struct io *io, int fd, uint64_t len)
{
    return size_step(io, fd, OP_ALLOCATE, len);
}

static int sim_ftruncate(struct io *io, int fd, uint64_t len)
{
    return size_step(io, fd, OP_TRUNCATE, len);
}

static int sim_fchmod(struct io *io, int fd, mode_t mode)
{
    return size_step(io, fd, OP_CHMOD, mode & 07777);
}

/* The model's file for name, adopting one that was created behind our back. */
static int current_file(struct sim_io *s, const char *path, const char *name)
{
    ssize_t at = dir_find(&s->m->current, name);
    return at >= 0 ? s->m->current.e[at].file : file_adopt(s->m, path, name);
}

static int sim_rename(struct io *io, const char *from, const char *to)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    int r = -EIO;
    if (s->frozen)
        goto out;
    const char *nf = name_in_dir(s, from), *nt = name_in_dir(s, to);
    if (nf && nt && s->m)
        (void)current_file(s, from, nf);
    r = s->base->ops->rename(s->base, from, to);
    if (r < 0)
        goto out;
    if (nf && nt && s->m)
        dirop_add(s->m, DOP_RENAME, nf, nt, -1);
    step_done(s, "rename %s to %s", nf ? nf : from, nt ? nt : to);
out:
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int sim_unlink(struct io *io, const char *path)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    int r = -EIO;
    if (s->frozen)
        goto out;
    const char *name = name_in_dir(s, path);
    if (name && s->m)
        (void)current_file(s, path, name);
    r = s->base->ops->unlink(s->base, path);
    if (r < 0)
        goto out;
    if (name && s->m)
        dirop_add(s->m, DOP_UNLINK, name, NULL, -1);
    step_done(s, "unlink %s", name ? name : path);
out:
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int sim_sync_dir(struct io *io, const char *dir)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    int r = -EIO;
    if (s->frozen)
        goto out;
    r = s->base->ops->sync_dir(s->base, dir);
    if (r < 0)
        goto out;
    if (same_dir(s, dir) && s->m) {
        dir_copy(&s->m->durable, &s->m->current);
        dirops_clear(s->m);
    } else if (parent_dir(s, dir) && s->m) {
        s->m->dir_durable = 1;
    }
    step_done(s, "sync directory%s", same_dir(s, dir) ? "" : parent_dir(s, dir) ? " (the parent)" : " (elsewhere)");
out:
    pthread_mutex_unlock(&s->lock);
    return r;
}

static void sim_destroy(struct io *io)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    int last = --s->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (!last)
        return;
    model_free(s->m);
    s->base->ops->destroy(s->base);
    pthread_mutex_destroy(&s->lock);
    free(s->fd_file);
    free(s->dir);
    free(s);
}

static const struct io_ops io_sim_ops = {
    .open = sim_open,
    .close = sim_close,
    .pread = sim_pread,
    .write = sim_write,
    .fdatasync = sim_fdatasync,
    .fsync = sim_fsync,
    .fallocate = sim_fallocate,
    .ftruncate = sim_ftruncate,
    .fchmod = sim_fchmod,
    .rename = sim_rename,
    .unlink = sim_unlink,
    .sync_dir = sim_sync_dir,
    .destroy = sim_destroy,
};

static struct sim_io *sim_alloc(struct io *base, const char *dir)
{
    struct sim_io *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->dir = strdup(dir);
    if (!s->dir) {
        free(s);
        return NULL;
    }
    size_t n = strlen(s->dir);
    while (n > 1 && s->dir[n - 1] == '/')
        s->dir[--n] = '\0';
    s->base = base;
    s->refs = 1;
    s->io.ops = &io_sim_ops;
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

struct io *io_sim_create(struct io *base, const char *dir)
{
    if (!base)
        return NULL;
    struct sim_io *s = sim_alloc(base, dir);
    struct sim_model *m = s ? calloc(1, sizeof *m) : NULL;
    if (!m) {
        if (s) {
            free(s->dir);
            free(s);
        }
        base->ops->destroy(base);
        errno = ENOMEM;
        return NULL;
    }
    s->m = m;
    /* What is already there counts as durable, the directory included; a
     * directory made later (by the engine) needs a sync of its parent. */
    DIR *d = opendir(s->dir);
    m->dir_durable = d != NULL;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0')))
            continue;
        char path[4096 + 300];
        snprintf(path, sizeof path, "%s/%s", s->dir, e->d_name);
        (void)file_adopt(m, path, e->d_name);
    }
    if (d)
        closedir(d);
    return &s->io;
}

/* ------------------------------------------------------------ control */

void io_sim_crash_after(struct io *io, uint64_t step)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    s->crash_after = step;
    if (step && s->steps >= step)
        s->frozen = 1;
    pthread_mutex_unlock(&s->lock);
}

uint64_t io_sim_steps(struct io *io)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->steps;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void io_sim_retain(struct io *io)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    s->refs++;
    pthread_mutex_unlock(&s->lock);
}

void io_sim_trace(struct io *io, void (*fn)(void *ctx, uint64_t step, const char *what), void *ctx)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    s->trace = fn;
    s->trace_ctx = ctx;
    pthread_mutex_unlock(&s->lock);
}

void io_sim_sync_delay(struct io *io, unsigned usec)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    s->sync_delay_us = usec < 1000000 ? usec : 999999;
    pthread_mutex_unlock(&s->lock);
}

void io_sim_freeze(struct io *io)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    s->frozen = 1;
    pthread_mutex_unlock(&s->lock);
}

int io_sim_frozen(struct io *io)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    int f = s->frozen;
    pthread_mutex_unlock(&s->lock);
    return f;
}

void io_sim_last_step(struct io *io, char *dst, size_t dst_capacity)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    snprintf(dst, dst_capacity, "%s", s->steps ? s->last : "no step");
    pthread_mutex_unlock(&s->lock);
}

void io_sim_pending(struct io *io, uint64_t *out_data_ops, uint64_t *out_dir_ops)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    uint64_t data = 0;
    for (size_t i = 0; s->m && i < s->m->file_count; i++)
        data += s->m->files[i]->op_count;
    *out_data_ops = data;
    *out_dir_ops = s->m ? s->m->dirop_count + !s->m->dir_durable : 0;
    pthread_mutex_unlock(&s->lock);
}

uint64_t io_sim_pending_writes(struct io *io)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    uint64_t n = 0;
    for (size_t i = 0; s->m && i < s->m->file_count; i++)
        for (size_t k = 0; k < s->m->files[i]->op_count; k++)
            n += s->m->files[i]->ops[k].kind == OP_WRITE;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int io_sim_check_durable(struct io *io, const char *path, uint64_t off, uint64_t len)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    int ok = 0;
    const char *name = name_in_dir(s, path);
    if (!name || !s->m)
        goto out;
    ssize_t cur = dir_find(&s->m->current, name), dur = dir_find(&s->m->durable, name);
    if (!s->m->dir_durable || cur < 0 || dur < 0 || s->m->current.e[cur].file != s->m->durable.e[dur].file)
        goto out;
    const struct sim_file *f = s->m->files[s->m->current.e[cur].file];
    if (off + len > f->dur_size)
        goto out;
    for (size_t i = 0; i < f->op_count; i++) {
        const struct sim_op *op = &f->ops[i];
        if (op->kind == OP_WRITE && op->off < off + len && off < op->off + op->len)
            goto out;
        if (op->kind == OP_TRUNCATE && op->off < off + len)
            goto out;
    }
    ok = 1;
out:
    pthread_mutex_unlock(&s->lock);
    return ok;
}

/* ------------------------------------------------------------ crash states */

/* The file holding the last pending write, and that write's index. */
static int last_write(const struct sim_model *m, size_t *out_op)
{
    int file = -1;
    uint64_t best = 0;
    for (size_t i = 0; i < m->file_count; i++)
        for (size_t k = 0; k < m->files[i]->op_count; k++) {
            const struct sim_op *op = &m->files[i]->ops[k];
            if (op->kind == OP_WRITE && op->seq > best) {
                best = op->seq;
                file = (int)i;
                *out_op = k;
            }
        }
    return file;
}

/* The last write torn: a prefix reaches the file, the rest reads as zeros,
 * garbage or the bytes that were there before. */
static void tear_write(struct image *im, const struct sim_op *w, unsigned mode, uint64_t *rng)
{
    uint64_t len = w->len, keep;
    switch (mode & IO_SIM_TEAR_MASK) {
    case IO_SIM_TEAR_1:
        keep = 1;
        break;
    case IO_SIM_TEAR_3:
        keep = 3;
        break;
    case IO_SIM_TEAR_512:
        keep = len > 512 ? rng_next(rng) % (len / 512) * 512 : 0;
        break;
    default:
        keep = len > 4096 ? rng_next(rng) % (len / 4096) * 4096 : 0;
        break;
    }
    if (keep >= len)
        keep = len ? len - 1 : 0;
    uint64_t old_size = im->size;
    uint8_t *old = xrealloc(NULL, (size_t)len);
    for (uint64_t i = 0; i < len; i++)
        old[i] = w->off + i < old_size ? im->buf[w->off + i] : 0;
    if (w->off + len > im->size)
        image_resize(im, w->off + len);
    memcpy(im->buf + w->off, w->data, (size_t)keep);
    uint8_t *rest = im->buf + w->off + keep;
    size_t rest_len = (size_t)(len - keep);
    switch (mode & IO_SIM_FILL_MASK) {
    case IO_SIM_FILL_ZERO:
        memset(rest, 0, rest_len);
        break;
    case IO_SIM_FILL_GARBAGE:
        for (size_t i = 0; i < rest_len; i++)
            rest[i] = (uint8_t)(rng_next(rng) >> 24);
        break;
    default:
        memcpy(rest, old + keep, rest_len);
        break;
    }
    free(old);
}

/* Some units (sectors or blocks) of the pending writes reach the file, others not. */
static void keep_units(struct image *im, const struct sim_file *f, uint64_t unit, uint64_t *rng)
{
    struct image cur = {0};
    image_from_durable(&cur, f);
    for (size_t i = 0; i < f->op_count; i++)
        image_apply(&cur, &f->ops[i]);
    /* The size (a metadata change) either made it or not; the mode likewise. */
    uint64_t size = rng_next(rng) & 1 ? cur.size : im->size;
    if (rng_next(rng) & 1)
        im->mode = cur.mode;
    uint64_t keep_pct = 10 + rng_next(rng) % 81;
    image_resize(im, size);
    for (uint64_t u = 0; u * unit < size; u++) {
        uint64_t lo = u * unit, hi = lo + unit < size ? lo + unit : size;
        int dirty = 0;
        for (size_t i = 0; i < f->op_count && !dirty; i++)
            dirty = f->ops[i].kind == OP_WRITE && f->ops[i].off < hi && lo < f->ops[i].off + f->ops[i].len;
        if (!dirty || rng_next(rng) % 100 >= keep_pct)
            continue;
        for (uint64_t b = lo; b < hi; b++)
            im->buf[b] = b < cur.size ? cur.buf[b] : 0;
    }
    image_free(&cur);
}

/* The content file would have after the crash. */
static void crash_image(const struct sim_model *m, int file, unsigned mode, int tear_file, size_t tear_op,
                        uint64_t *rng, struct image *im)
{
    const struct sim_file *f = m->files[file];
    image_from_durable(im, f);
    switch (mode & IO_SIM_DATA_MASK) {
    case IO_SIM_DATA_DROP:
        break;
    case IO_SIM_DATA_SECTORS:
    case IO_SIM_DATA_BLOCKS:
        keep_units(im, f, (mode & IO_SIM_DATA_MASK) == IO_SIM_DATA_SECTORS ? 512 : 4096, rng);
        break;
    case IO_SIM_DATA_TEAR:
        for (size_t i = 0; i < f->op_count; i++) {
            if (file == tear_file && i == tear_op)
                tear_write(im, &f->ops[i], mode, rng);
            else
                image_apply(im, &f->ops[i]);
        }
        break;
    default: /* IO_SIM_DATA_KEEP */
        for (size_t i = 0; i < f->op_count; i++)
            image_apply(im, &f->ops[i]);
        break;
    }
}

/* The directory entries after the crash. */
static void crash_dir(const struct sim_model *m, unsigned mode, uint64_t *rng, struct sim_dir *out)
{
    unsigned dm = mode & IO_SIM_DIR_MASK;
    if (dm == IO_SIM_DIR_KEEP) {
        dir_copy(out, &m->current);
        return;
    }
    size_t keep = dm == IO_SIM_DIR_PREFIX ? (size_t)(rng_next(rng) % (m->dirop_count + 1)) : 0;
    /* A directory whose own entry is not durable vanishes with everything in
     * it, unless a later change inside it made it (they are journalled in
     * order, after the directory's creation). */
    dir_free(out);
    if (m->dir_durable || keep > 0)
        dir_copy(out, &m->durable);
    for (size_t i = 0; i < keep; i++)
        dirop_apply(out, &m->dirops[i]);
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct sim_entry *)a)->name, ((const struct sim_entry *)b)->name);
}

static int write_file(const char *path, const struct image *im)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int r = 0;
    for (uint64_t done = 0; done < im->size && r == 0;) {
        ssize_t w = pwrite(fd, im->buf + done, (size_t)(im->size - done), (off_t)done);
        if (w <= 0)
            r = w < 0 ? -errno : -EIO;
        else
            done += (uint64_t)w;
    }
    if (r == 0 && fchmod(fd, im->mode & 07777) != 0)
        r = -errno;
    close(fd);
    return r;
}

/* Empties dst of regular files (all of them, or only the names the model knows). */
static int clear_dir(const char *dst, const struct sim_model *m)
{
    DIR *d = opendir(dst);
    if (!d)
        return -errno;
    struct dirent *e;
    int r = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0')))
            continue;
        if (m && dir_find(&m->current, e->d_name) < 0 && dir_find(&m->durable, e->d_name) < 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) != 0 && errno != ENOENT)
            r = -errno;
    }
    closedir(d);
    return r;
}

/* Writes the crash state into dst; its digest (names, modes, contents) to *out_digest. */
static int crash_write(struct sim_io *s, unsigned mode, uint64_t seed, const char *dst, int in_place,
                       uint64_t *out_digest)
{
    struct sim_model *m = s->m;
    if (!m)
        return -EINVAL;
    uint64_t rng = seed ^ UINT64_C(0x5157e1e5);
    struct sim_dir d = {0};
    crash_dir(m, mode, &rng, &d);
    if (d.count > 1)
        qsort(d.e, d.count, sizeof *d.e, cmp_entry);
    size_t tear_op = 0;
    int tear_file = last_write(m, &tear_op);
    int r = 0;
    if (dst && mkdir(dst, 0755) != 0 && errno != EEXIST)
        r = -errno;
    if (dst && r == 0)
        r = clear_dir(dst, in_place ? m : NULL);
    XXH3_state_t *h = XXH3_createState();
    if (!h)
        abort();
    XXH3_64bits_reset(h);
    struct image im = {0};
    for (size_t i = 0; i < d.count && r == 0; i++) {
        crash_image(m, d.e[i].file, mode, tear_file, tear_op, &rng, &im);
        if (dst) {
            char path[4096 + 300];
            snprintf(path, sizeof path, "%s/%s", dst, d.e[i].name);
            r = write_file(path, &im);
        }
        uint32_t mo = (uint32_t)im.mode;
        XXH3_64bits_update(h, d.e[i].name, strlen(d.e[i].name) + 1);
        XXH3_64bits_update(h, &mo, sizeof mo);
        XXH3_64bits_update(h, &im.size, sizeof im.size);
        XXH3_64bits_update(h, im.buf, (size_t)im.size);
    }
    if (out_digest)
        *out_digest = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    image_free(&im);
    dir_free(&d);
    return r;
}

static struct sim_model *model_copy(const struct sim_model *m)
{
    struct sim_model *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    for (size_t i = 0; i < m->file_count; i++) {
        const struct sim_file *f = m->files[i];
        int id = file_new(c, f->dur_mode); /* may move c->files */
        struct sim_file *g = c->files[id];
        g->dur = xrealloc(NULL, (size_t)f->dur_size);
        if (f->dur_size)
            memcpy(g->dur, f->dur, (size_t)f->dur_size);
        g->dur_size = g->dur_cap = f->dur_size;
        for (size_t k = 0; k < f->op_count; k++) {
            const struct sim_op *op = &f->ops[k];
            file_op(c, g, op->kind, op->off, op->len, op->data);
            g->ops[g->op_count - 1].seq = op->seq;
        }
    }
    c->seq = m->seq;
    c->dir_durable = m->dir_durable;
    dir_copy(&c->durable, &m->durable);
    dir_copy(&c->current, &m->current);
    c->dirop_count = c->dirop_cap = m->dirop_count;
    c->dirops = xrealloc(NULL, c->dirop_cap * sizeof *c->dirops);
    for (size_t i = 0; i < m->dirop_count; i++) {
        const struct sim_dirop *op = &m->dirops[i];
        c->dirops[i] = (struct sim_dirop){op->kind, xstrdup(op->name), op->to ? xstrdup(op->to) : NULL, op->file};
    }
    return c;
}

struct io *io_sim_process_crash(struct io *io, const char *dst_dir)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    struct sim_io *n = NULL;
    struct io *base = NULL;
    int r = s->m ? 0 : -EINVAL;
    if (r == 0 && dst_dir)
        r = crash_write(s, IO_SIM_DATA_KEEP | IO_SIM_DIR_KEEP, 0, dst_dir, 0, NULL);
    if (r == 0 && !dst_dir)
        s->frozen = 1; /* the process that used io is gone */
    if (r == 0 && (base = io_posix_create()) != NULL && (n = sim_alloc(base, dst_dir ? dst_dir : s->dir)) != NULL)
        n->m = model_copy(s->m);
    else if (base)
        base->ops->destroy(base);
    pthread_mutex_unlock(&s->lock);
    if (!n)
        errno = r ? -r : ENOMEM;
    return n ? &n->io : NULL;
}

int io_sim_crash(struct io *io, unsigned mode, uint64_t seed)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    s->frozen = 1;
    int r = crash_write(s, mode, seed, s->dir, 1, NULL);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int io_sim_crash_into(struct io *io, unsigned mode, uint64_t seed, const char *dst_dir, uint64_t *out_digest)
{
    struct sim_io *s = SIM(io);
    pthread_mutex_lock(&s->lock);
    int r = crash_write(s, mode, seed, dst_dir, 0, out_digest);
    pthread_mutex_unlock(&s->lock);
    return r;
}

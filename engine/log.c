/*
 * log.c - options, creating a log, opening and closing it, the writer lock
 * and the segment table (SPEC.md §2, §10).
 *
 * Creating a log writes the meta block to stele.meta.tmp, syncs it, renames
 * it into place and syncs the directory: a crash leaves either no log or a
 * whole one. Opening for writing takes an exclusive flock on stele.lock, so a
 * second writer gets STELE_ERR_LOCKED naming the holder's pid.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "internal.h"

#define META_NAME "stele.meta"
#define LOCK_NAME "stele.lock"
/* io_uring can keep a killed writer's files (and its flock) alive briefly
 * after kill -9 (RELIABILITY S32), so a busy lock is retried this long. */
#define LOCK_WAIT_MS 1000
#define URING_ENTRIES 64

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void stele_options_init(stele_options *o)
{
    memset(o, 0, sizeof *o);
    o->durability = STELE_DURABILITY_DEFAULT;
    o->sync_interval_ms = 100;
    o->io_backend = STELE_IO_URING;
    o->queue_records_max = 65536;
    o->checkpoint_records = 1000000;
    o->direct_io = 1;
    o->segment_size = STELE_SEGMENT_SIZE_DEFAULT;
    o->idem_window_ns = UINT64_C(24) * 3600 * 1000000000;
    o->payload_size_max = STELE_PAYLOAD_SIZE_DEFAULT;
    o->compression = STELE_COMPRESSION_NONE;
    o->compression_level = 3;
    o->default_durability = STELE_DURABILITY_SYNC;
}

/* The biggest batch frame one record can need, for the fit check below. */
static uint64_t record_frame_max(uint32_t payload_size_max)
{
    uint64_t rec = STELE_RECORD_HEADER_SIZE + 4u * 255u + payload_size_max + STELE_RECORD_ALIGN;
    return fmt_batch_frame_size((uint32_t)rec);
}

static int check_options(const stele_options *o)
{
    if (o->durability > STELE_DURABILITY_NONE)
        return err_set(STELE_ERR_INVALID, "option durability: %d is not a stele_durability", (int)o->durability);
    if (o->default_durability < STELE_DURABILITY_SYNC || o->default_durability > STELE_DURABILITY_NONE)
        return err_set(STELE_ERR_INVALID, "option default_durability: %d is not sync, interval or none",
                       (int)o->default_durability);
    if (o->sync_interval_ms < 1 || o->sync_interval_ms > 60000)
        return err_set(STELE_ERR_INVALID, "option sync_interval_ms: %u is outside [1, 60000]", o->sync_interval_ms);
    if (o->io_backend != STELE_IO_URING && o->io_backend != STELE_IO_POSIX)
        return err_set(STELE_ERR_INVALID, "option io_backend: %d is not a stele_io_backend", (int)o->io_backend);
    if (o->queue_records_max < 1 || o->queue_records_max > 1048576)
        return err_set(STELE_ERR_INVALID, "option queue_records_max: %u is outside [1, 1048576]",
                       o->queue_records_max);
    if (o->segment_size < STELE_SEGMENT_SIZE_MIN || o->segment_size > STELE_SEGMENT_SIZE_MAX ||
        o->segment_size % STELE_BLOCK_SIZE != 0)
        return err_set(STELE_ERR_INVALID, "option segment_size: %llu is not a multiple of %u in [%u, %llu]",
                       (unsigned long long)o->segment_size, STELE_BLOCK_SIZE, STELE_SEGMENT_SIZE_MIN,
                       (unsigned long long)STELE_SEGMENT_SIZE_MAX);
    if (o->payload_size_max > STELE_PAYLOAD_SIZE_MAX)
        return err_set(STELE_ERR_INVALID, "option payload_size_max: %u is above %u", o->payload_size_max,
                       STELE_PAYLOAD_SIZE_MAX);
    if (record_frame_max(o->payload_size_max) > o->segment_size - STELE_SEGMENT_HEADER_SIZE - STELE_FOOTER_SIZE)
        return err_set(STELE_ERR_INVALID,
                       "option payload_size_max: %u does not fit a segment of segment_size %llu",
                       o->payload_size_max, (unsigned long long)o->segment_size);
    if (o->compression != STELE_COMPRESSION_NONE && o->compression != STELE_COMPRESSION_ZSTD)
        return err_set(STELE_ERR_INVALID, "option compression: %d is not none or zstd", (int)o->compression);
    if (o->compression_level < 1 || o->compression_level > 19)
        return err_set(STELE_ERR_INVALID, "option compression_level: %d is outside [1, 19]", o->compression_level);
    if (o->compression_level_override != 0 && (o->compression_level_override < 1 || o->compression_level_override > 19))
        return err_set(STELE_ERR_INVALID, "option compression_level_override: %d is neither 0 nor in [1, 19]",
                       o->compression_level_override);
    return STELE_OK;
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int log_seg_path(const stele_log *log, uint64_t first_lsn, char *dst, size_t dst_capacity)
{
    char name[STELE_SEGMENT_NAME_SIZE + 1];
    fmt_segment_name(first_lsn, name, sizeof name);
    int n = snprintf(dst, dst_capacity, "%s/%s", log->dir, name);
    if (n < 0 || (size_t)n >= dst_capacity)
        return err_set(STELE_ERR_INVALID, "log directory path too long: %s", log->dir);
    return STELE_OK;
}

/* Writes the meta block durably: temp file, data sync, rename, directory sync. */
static int write_meta(struct io *io, const char *dir, const struct fmt_meta *meta)
{
    uint8_t block[STELE_META_SIZE];
    fmt_meta_encode(meta, block, sizeof block);
    char *tmp = join(dir, META_NAME ".tmp"), *path = join(dir, META_NAME);
    int code = STELE_ERR_NOMEM, fd = -1, r;
    if (!tmp || !path)
        goto out;
    fd = io->ops->open(io, tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        code = err_sys(-fd, "create", tmp);
        goto out;
    }
    if ((r = io->ops->write(io, fd, block, sizeof block, 0, 1)) < 0) {
        code = err_sys(-r, "write and sync", tmp);
        goto out;
    }
    if ((r = io->ops->rename(io, tmp, path)) < 0) {
        code = err_sys(-r, "rename to " META_NAME, tmp);
        goto out;
    }
    if ((r = io->ops->sync_dir(io, dir)) < 0) {
        code = err_sys(-r, "sync directory", dir);
        goto out;
    }
    code = STELE_OK;
out:
    if (fd >= 0)
        io->ops->close(io, fd);
    free(tmp);
    free(path);
    return code;
}

static int read_meta(struct io *io, const char *dir, struct fmt_meta *out)
{
    char *path = join(dir, META_NAME);
    if (!path)
        return err_set(STELE_ERR_NOMEM, "out of memory");
    uint8_t block[STELE_META_SIZE];
    int code = STELE_OK;
    int fd = io->ops->open(io, path, O_RDONLY, 0);
    if (fd < 0) {
        code = fd == -ENOENT ? err_set(STELE_ERR_NOT_FOUND, "no log in %s (%s is missing)", dir, path)
                             : err_sys(-fd, "open", path);
        goto out;
    }
    ssize_t got = io->ops->pread(io, fd, block, sizeof block, 0);
    io->ops->close(io, fd);
    if (got < 0) {
        code = err_sys((int)-got, "read", path);
        goto out;
    }
    enum fmt_status st = fmt_meta_decode(block, (size_t)got, out);
    if (st == FMT_BAD_VERSION)
        code = err_set(STELE_ERR_FORMAT, "%s: format version %u is not supported (this library reads %u)",
                       path, (unsigned)block[16], STELE_FORMAT_VERSION);
    else if (st != FMT_OK)
        code = err_set(STELE_ERR_CORRUPT, "%s offset 0: meta block %s", path, fmt_status_str(st));
out:
    free(path);
    return code;
}

/* EXISTS when dir holds a segment file (a log whose meta block is missing). */
static int has_segments(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return err_sys(errno, "open directory", dir);
    struct dirent *e;
    uint64_t first;
    int found = 0;
    while (!found && (e = readdir(d)) != NULL)
        found = fmt_segment_name_parse(e->d_name, &first);
    closedir(d);
    return found ? err_set(STELE_ERR_EXISTS, "%s holds segment files but no %s", dir, META_NAME) : STELE_OK;
}

/* The directory holding dir ("." for a name without a slash); NULL without memory. */
static char *parent_of(const char *dir)
{
    char *p = strdup(dir);
    if (!p)
        return NULL;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    char *slash = strrchr(p, '/');
    if (!slash) {
        free(p);
        return strdup(".");
    }
    slash[slash == p ? 1 : 0] = '\0';
    return p;
}

/* Makes dir's own entry durable: creating a directory is durable only once
 * its parent is synced (RELIABILITY anchor 4b). Done whether or not this
 * call made dir: an earlier attempt may have made it and crashed. */
static int sync_parent(struct io *io, const char *dir)
{
    char *parent = parent_of(dir);
    if (!parent)
        return err_set(STELE_ERR_NOMEM, "out of memory");
    int r = io->ops->sync_dir(io, parent);
    int code = r < 0 ? err_sys(-r, "sync directory", parent) : STELE_OK;
    free(parent);
    return code;
}

static int create_with(struct io *io, const char *dir, const stele_options *o)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return err_sys(errno, "create directory", dir);
    /* SPEC.md §2: EXISTS whenever stele.meta exists, whatever its content (a
     * damaged meta block is reported, never replaced), or a segment does. */
    struct fmt_meta meta;
    int code = read_meta(io, dir, &meta);
    if (code == STELE_OK || code == STELE_ERR_CORRUPT || code == STELE_ERR_FORMAT)
        return err_set(STELE_ERR_EXISTS, "%s already holds a log", dir);
    if (code != STELE_ERR_NOT_FOUND)
        return code;
    if ((code = has_segments(dir)) != STELE_OK)
        return code;
    memset(&meta, 0, sizeof meta);
    if (getrandom(meta.log_id, sizeof meta.log_id, 0) != (ssize_t)sizeof meta.log_id)
        return err_sys(errno, "getrandom for the log id of", dir);
    meta.created_at_ns = now_ns();
    meta.segment_size = o->segment_size;
    meta.idem_window_ns = o->idem_window_ns;
    meta.payload_size_max = o->payload_size_max;
    meta.compression = (uint8_t)o->compression;
    meta.compression_level = (int8_t)o->compression_level;
    meta.durability = (uint8_t)o->default_durability;
    if ((code = sync_parent(io, dir)) != STELE_OK)
        return code;
    return write_meta(io, dir, &meta);
}

int stele_create(const char *dir, const stele_options *opts)
{
    err_clear();
    stele_options defaults;
    if (!opts) {
        stele_options_init(&defaults);
        opts = &defaults;
    }
    if (!dir || !*dir)
        return err_set(STELE_ERR_INVALID, "create: no directory given");
    int code = check_options(opts);
    if (code)
        return code;
    struct io *io = io_posix_create();
    if (!io)
        return err_set(STELE_ERR_NOMEM, "out of memory");
    code = create_with(io, dir, opts);
    io->ops->destroy(io);
    return code;
}

static int take_lock(stele_log *log)
{
    char *path = join(log->dir, LOCK_NAME);
    if (!path)
        return err_set(STELE_ERR_NOMEM, "out of memory");
    int code = STELE_OK;
    int fd = posix_open(NULL, path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) {
        code = err_sys(-fd, "open lock file", path);
        goto out;
    }
    for (int waited_ms = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; waited_ms += 10) {
        if (errno != EWOULDBLOCK || waited_ms >= LOCK_WAIT_MS) {
            char holder[32] = {0};
            ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
            holder[n > 0 ? n : 0] = '\0';
            holder[strcspn(holder, "\n")] = '\0';
            code = errno == EWOULDBLOCK
                       ? err_set(STELE_ERR_LOCKED, "%s is locked by another writer (pid %s)", log->dir,
                                 *holder ? holder : "unknown")
                       : err_sys(errno, "lock", path);
            close(fd);
            goto out;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        code = err_sys(errno, "write pid to", path);
        close(fd);
        goto out;
    }
    log->lock_fd = fd;
out:
    free(path);
    return code;
}

struct segment *log_active(stele_log *log)
{
    pthread_rwlock_rdlock(&log->seg_lock);
    struct segment *seg = log->seg_count ? log->segs[log->seg_count - 1] : NULL;
    pthread_rwlock_unlock(&log->seg_lock);
    return seg;
}

struct segment *log_find_segment(stele_log *log, uint64_t lsn)
{
    /* Binary search for the last segment whose first LSN is <= lsn. */
    pthread_rwlock_rdlock(&log->seg_lock);
    size_t lo = 0, hi = log->seg_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (log->segs[mid]->first_lsn <= lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    struct segment *seg = lo ? log->segs[lo - 1] : NULL;
    pthread_rwlock_unlock(&log->seg_lock);
    return seg;
}

int log_add_segment(stele_log *log, struct segment *seg)
{
    pthread_rwlock_wrlock(&log->seg_lock);
    if (log->seg_count == log->seg_cap) {
        size_t cap = log->seg_cap ? log->seg_cap * 2 : 16;
        struct segment **p = realloc(log->segs, cap * sizeof *p);
        if (!p) {
            pthread_rwlock_unlock(&log->seg_lock);
            return err_set(STELE_ERR_NOMEM, "out of memory adding segment %s", seg->path);
        }
        log->segs = p;
        log->seg_cap = cap;
    }
    log->segs[log->seg_count++] = seg;
    pthread_rwlock_unlock(&log->seg_lock);
    return STELE_OK;
}

static stele_log *log_alloc(const char *dir, const stele_options *opts, struct io *io)
{
    stele_log *log = calloc(1, sizeof *log);
    if (!log)
        return NULL;
    log->dir = strdup(dir);
    log->file_hash = XXH3_createState();
    if (!log->dir || !log->file_hash) {
        free(log->dir);
        XXH3_freeState(log->file_hash);
        free(log);
        return NULL;
    }
    log->opts = *opts;
    log->io = io;
    log->lock_fd = -1;
    pthread_rwlock_init(&log->seg_lock, NULL);
    pthread_mutex_init(&log->refresh_lock, NULL);
    pthread_mutex_init(&log->fd_lock, NULL);
    pthread_mutex_init(&log->q_lock, NULL);
    pthread_cond_init(&log->done_cond, NULL);
    pthread_cond_init(&log->pipe_cond, NULL);
    pthread_cond_init(&log->bg_cond, NULL);
    pthread_mutex_init(&log->idx_lock, NULL);
    pthread_mutex_init(&log->segidx_lock, NULL);
    pthread_mutex_init(&log->dict_lock, NULL);
    pthread_mutex_init(&log->dict_train_lock, NULL);
    pthread_mutex_init(&log->tree_lock, NULL);
    log->auto_train_code = -1;
    return log;
}

static void log_free(stele_log *log)
{
    index_checkpoint_wait(log);
    segidx_write_wait(log);
    if (log->segidx_io_owned)
        log->segidx_io->ops->destroy(log->segidx_io);
    if (log->aux_io)
        log->aux_io->ops->destroy(log->aux_io);
    for (size_t i = 0; i < log->seg_count; i++)
        segment_free(log, log->segs[i]);
    free(log->segs);
    if (log->lock_fd >= 0)
        close(log->lock_fd); /* releases the flock */
    if (log->io)
        log->io->ops->destroy(log->io);
    pthread_rwlock_destroy(&log->seg_lock);
    pthread_mutex_destroy(&log->refresh_lock);
    pthread_mutex_destroy(&log->fd_lock);
    pthread_mutex_destroy(&log->q_lock);
    pthread_cond_destroy(&log->done_cond);
    pthread_cond_destroy(&log->pipe_cond);
    pthread_cond_destroy(&log->bg_cond);
    index_free(log);
    pthread_mutex_destroy(&log->idx_lock);
    pthread_mutex_destroy(&log->segidx_lock);
    dict_cache_free(log->dicts);
    pthread_mutex_destroy(&log->dict_lock);
    pthread_mutex_destroy(&log->dict_train_lock);
    tree_free(log);
    pthread_mutex_destroy(&log->tree_lock);
    XXH3_freeState(log->file_hash);
    writer_free_batches(log);
    free(log->dir);
    free(log);
}

static void stats_from_meta(stele_log *log)
{
    stele_stats *s = &log->stats;
    memcpy(s->log_id, log->meta.log_id, sizeof s->log_id);
    s->created_at_ns = log->meta.created_at_ns;
    s->segment_size = log->meta.segment_size;
    s->idem_window_ns = log->meta.idem_window_ns;
    s->payload_size_max = log->meta.payload_size_max;
    s->compression = (stele_compression)log->meta.compression;
    s->durability = log->durability;
    s->read_only = log->opts.read_only;
}

int stele_open_io(const char *dir, const stele_options *opts, struct io *io, stele_log **out_log)
{
    int code = check_options(opts);
    if (code) {
        io->ops->destroy(io);
        return code;
    }
    stele_log *log = log_alloc(dir, opts, io);
    if (!log) {
        io->ops->destroy(io);
        return err_set(STELE_ERR_NOMEM, "out of memory opening %s", dir);
    }
    /* The read indexes' files (SPEC.md §19) have an I/O backend of their
     * own: plain POSIX, used from reader threads and the index writer's. */
    if (!(log->segidx_io = io_posix_create())) {
        code = err_set(STELE_ERR_NOMEM, "out of memory opening %s", dir);
        goto fail;
    }
    log->segidx_io_owned = 1;
    code = read_meta(io, dir, &log->meta);
    if (code == STELE_ERR_NOT_FOUND && opts->create && !opts->read_only) {
        code = create_with(io, dir, opts);
        if (code == STELE_OK)
            code = read_meta(io, dir, &log->meta);
    }
    if (code)
        goto fail;
    log->durability = opts->durability != STELE_DURABILITY_DEFAULT ? opts->durability
                                                                    : (stele_durability)log->meta.durability;
    log->compression_level = opts->compression_level_override ? opts->compression_level_override
                                                              : log->meta.compression_level;
    if (!(log->dicts = dict_cache_new(dir, log->meta.log_id))) {
        code = err_set(STELE_ERR_NOMEM, "out of memory opening %s", dir);
        goto fail;
    }
    stats_from_meta(log);
    if (!opts->read_only && (code = take_lock(log)) != STELE_OK)
        goto fail;
    if ((code = recover_segments(log)) != STELE_OK)
        goto fail;
    if (!opts->read_only)
        segidx_open_check(log); /* SPEC.md §19.2; never fails the open */
    if (!opts->read_only && (code = writer_start(log)) != STELE_OK)
        goto fail;
    *out_log = log;
    return STELE_OK;
fail:
    log_free(log);
    return code;
}

int stele_open(const char *dir, const stele_options *opts, stele_log **out_log)
{
    err_clear();
    stele_options defaults;
    if (!opts) {
        stele_options_init(&defaults);
        opts = &defaults;
    }
    if (!dir || !*dir || !out_log)
        return err_set(STELE_ERR_INVALID, "open: dir and out_log are required");
    struct io *io = NULL;
    struct io *aux = NULL;
    if (opts->io_backend == STELE_IO_URING && !opts->read_only) {
        io = io_uring_create(URING_ENTRIES);
        if (!io)
            return err_sys(errno, "io_uring_queue_init for", dir);
        if (!(aux = io_posix_create())) {
            io->ops->destroy(io);
            return err_set(STELE_ERR_NOMEM, "out of memory");
        }
    } else {
        io = io_posix_create();
        if (!io)
            return err_set(STELE_ERR_NOMEM, "out of memory");
    }
    int code = stele_open_io(dir, opts, io, out_log);
    if (code == STELE_OK)
        (*out_log)->aux_io = aux;
    else if (aux)
        aux->ops->destroy(aux);
    return code;
}

int stele_close(stele_log *log)
{
    if (!log)
        return STELE_OK;
    err_clear();
    int code = STELE_OK;
    dict_auto_train_join(log); /* it appends nothing, but reads the log and hands the writer a dictionary */
    if (log->writer_started) {
        code = stele_sync(log);
        writer_stop(log);
        /* Everything written is durable now: checkpoint the index so that
         * the next open does not rescan the log (unless nothing changed). */
        index_checkpoint_wait(log);
        if (code == STELE_OK && !log->fenced && log->idx && log->idx_lsn > log->ckpt_stored_lsn) {
            index_expire(log, log->last_recorded_at_ns, 0); /* whole; nothing with window 0 */
            code = index_checkpoint(log);
        }
    }
    log_free(log);
    return code;
}

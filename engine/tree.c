/*
 * tree.c - the log's Merkle tree (SPEC.md §20): its derived files (the
 * frontier and the tiles, §20.3), caught up lazily with the durable records,
 * the roots and proofs the public API gives, and the audit.
 *
 * Nothing here is on the appenders' path: the writer knows nothing of the
 * tree. When a root, a proof or an audit is asked for, the caller's thread
 * reads the records the files do not cover yet through the ordinary scan
 * (log_scan: every batch and record checked as a reader checks them), hashes
 * them, writes the completed tiles and then the frontier. The files are
 * derived, never the truth: one that fails a check is rebuilt from the log
 * (counted, with the reason in the note), except that files covering more
 * records than the log holds are reported, not rebuilt, because that is what
 * a log that lost or dropped history looks like, and the files are then the
 * evidence.
 *
 * Locking: tree_lock serialises a handle's calls; an flock on tree-00.tiles
 * serialises handles and processes (read-only handles write these files too:
 * they are not the log, SPEC.md §20.4).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "merkle.h"
#include "tree_file.h"

#define TREE_FRONTIER_NAME "tree.frontier"
#define TREE_SCAN_DONE (-1) /* not a stele_code: ends log_scan at the bound */
#define LEVELS FMT_TREE_TILE_LEVEL_COUNT_MAX
#define HASHES_SIZE (FMT_TREE_TILE_WIDTH * FMT_HASH_SIZE)

struct tree {
    struct io *io;                       /* plain POSIX I/O, owned */
    int fd[LEVELS];                      /* tile files, -1 = not open */
    int have_state;                      /* f and cur describe the files */
    uint8_t frontier_bytes[FMT_TREE_FRONTIER_SIZE]; /* the frontier file as last read or written */
    struct fmt_frontier f;
    uint8_t cur[LEVELS][FMT_TREE_TILE_SIZE]; /* the tile being filled at each level */
    uint64_t cur_index[LEVELS];
    int cur_dirty[LEVELS];
    int written[LEVELS];                 /* written since the last sync */
    uint8_t cache[LEVELS][FMT_TREE_TILE_SIZE]; /* the last full tile read at each level */
    uint64_t cache_index[LEVELS];
    int cache_valid[LEVELS];
    int err;                             /* a failure inside a callback */
    int ro;                              /* the audit: files opened read-only, nothing written */
    uint64_t leaves_hashed, rebuilt;
    char note[160];
};

static void tree_path(const stele_log *log, const char *name, char *dst, size_t cap)
{
    snprintf(dst, cap, "%s/%s", log->dir, name);
}

static void tiles_path(const stele_log *log, unsigned level, char *dst, size_t cap)
{
    char name[32];
    snprintf(name, sizeof name, "tree-%02u.tiles", level);
    tree_path(log, name, dst, cap);
}

static uint64_t level_count(uint64_t size, unsigned level)
{
    return level * FMT_TREE_TILE_HEIGHT >= 64 ? 0 : size >> (level * FMT_TREE_TILE_HEIGHT);
}

static uint64_t tile_offset(uint64_t index)
{
    return FMT_TREE_HEADER_SIZE + index * FMT_TREE_TILE_SIZE;
}

/* Opens tile file level; with create set (never in the audit) creates it,
 * or gives a file shorter than a header its header. */
static int tiles_open(stele_log *log, struct tree *t, unsigned level, int create)
{
    if (t->fd[level] >= 0)
        return STELE_OK;
    char path[4200];
    tiles_path(log, level, path, sizeof path);
    create = create && !t->ro;
    int fd = t->io->ops->open(t->io, path, t->ro ? O_RDONLY : O_RDWR | (create ? O_CREAT : 0), 0644);
    if (fd < 0)
        return err_sys(-fd, "open", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        t->io->ops->close(t->io, fd);
        return err_sys(e, "stat", path);
    }
    if (create && st.st_size < FMT_TREE_HEADER_SIZE) {
        uint8_t h[FMT_TREE_HEADER_SIZE];
        fmt_tree_tiles_header_encode(log->meta.log_id, level, h);
        int rc = t->io->ops->ftruncate(t->io, fd, 0);
        if (rc == 0)
            rc = t->io->ops->write(t->io, fd, h, sizeof h, 0, 0);
        if (rc < 0) {
            t->io->ops->close(t->io, fd);
            return err_sys(-rc, "write", path);
        }
    }
    t->fd[level] = fd;
    return STELE_OK;
}

/* Reads and checks tile index of level into dst; CORRUPT names what failed. */
static int tile_read(stele_log *log, struct tree *t, unsigned level, uint64_t index, uint8_t dst[FMT_TREE_TILE_SIZE])
{
    char path[4200];
    tiles_path(log, level, path, sizeof path);
    int code = tiles_open(log, t, level, 0);
    if (code == STELE_ERR_NOT_FOUND || code == STELE_ERR_IO)
        return err_set(STELE_ERR_CORRUPT, "%s: missing", path);
    if (code)
        return code;
    ssize_t n = t->io->ops->pread(t->io, t->fd[level], dst, FMT_TREE_TILE_SIZE, tile_offset(index));
    if (n < 0)
        return err_sys((int)-n, "read", path);
    if (n != FMT_TREE_TILE_SIZE)
        return err_set(STELE_ERR_CORRUPT, "%s: tile %llu missing (file too short)", path, (unsigned long long)index);
    enum fmt_status st = fmt_tree_tile_check(dst, level, index);
    if (st != FMT_OK)
        return err_set(STELE_ERR_CORRUPT, "%s: tile %llu at offset %llu: %s", path, (unsigned long long)index,
                       (unsigned long long)tile_offset(index), fmt_status_str(st));
    return STELE_OK;
}

/* The hashes of tile index of level (the one being filled, or read). */
static int tile_get(stele_log *log, struct tree *t, unsigned level, uint64_t index, const uint8_t **out)
{
    if (index == t->cur_index[level]) {
        *out = t->cur[level];
        return STELE_OK;
    }
    if (!t->cache_valid[level] || t->cache_index[level] != index) {
        t->cache_valid[level] = 0;
        int code = tile_read(log, t, level, index, t->cache[level]);
        if (code)
            return code;
        t->cache_index[level] = index;
        t->cache_valid[level] = 1;
    }
    *out = t->cache[level];
    return STELE_OK;
}

struct node_ctx {
    stele_log *log;
    struct tree *t;
};

/* fmt_merkle_node_fn: node (level, index) from tile level level / 4,
 * hashing up level % 4 levels of it (at most 8 entries, within one tile). */
static int node_cb(void *ctx, unsigned level, uint64_t index, uint8_t out[FMT_HASH_SIZE])
{
    struct node_ctx *c = ctx;
    unsigned tl = level / FMT_TREE_TILE_HEIGHT, r = level % FMT_TREE_TILE_HEIGHT;
    uint64_t first = index << r;
    const uint8_t *tile;
    int code = tile_get(c->log, c->t, tl, first / FMT_TREE_TILE_WIDTH, &tile);
    if (code)
        return code;
    uint8_t h[8][FMT_HASH_SIZE];
    size_t n = (size_t)1 << r;
    memcpy(h, tile + (first % FMT_TREE_TILE_WIDTH) * FMT_HASH_SIZE, n * FMT_HASH_SIZE);
    for (; n > 1; n /= 2)
        for (size_t i = 0; i < n / 2; i++)
            fmt_merkle_node(h[2 * i], h[2 * i + 1], h[i]);
    memcpy(out, h[0], FMT_HASH_SIZE);
    return STELE_OK;
}

static void state_reset(struct tree *t)
{
    memset(&t->f, 0, sizeof t->f);
    memset(t->cur, 0, sizeof t->cur);
    memset(t->cur_index, 0, sizeof t->cur_index);
    memset(t->cur_dirty, 0, sizeof t->cur_dirty);
    memset(t->cache_valid, 0, sizeof t->cache_valid);
}

/* Loads the state the files describe, frontier bytes fb: every check of
 * SPEC.md §20.3 T1-T5. CORRUPT (the message says why) when they fail. */
static int state_load(stele_log *log, struct tree *t, const uint8_t *fb, size_t fb_size)
{
    uint8_t id[STELE_LOG_ID_SIZE];
    state_reset(t);
    enum fmt_status st = fmt_tree_frontier_decode(fb, fb_size, id, &t->f);
    if (st != FMT_OK)
        return err_set(STELE_ERR_CORRUPT, "%s: %s", TREE_FRONTIER_NAME, fmt_status_str(st));
    if (memcmp(id, log->meta.log_id, STELE_LOG_ID_SIZE) != 0)
        return err_set(STELE_ERR_CORRUPT, "%s: belongs to another log", TREE_FRONTIER_NAME);
    for (unsigned level = 0; level < LEVELS; level++) {
        uint64_t count = level_count(t->f.size, level);
        t->cur_index[level] = count / FMT_TREE_TILE_WIDTH;
        if (count == 0)
            continue;
        char path[4200];
        tiles_path(log, level, path, sizeof path);
        int code = tiles_open(log, t, level, 0);
        if (code)
            return err_set(STELE_ERR_CORRUPT, "%s: missing", path);
        uint8_t h[FMT_TREE_HEADER_SIZE], hid[STELE_LOG_ID_SIZE];
        unsigned hl;
        ssize_t n = t->io->ops->pread(t->io, t->fd[level], h, sizeof h, 0);
        if (n != (ssize_t)sizeof h || fmt_tree_tiles_header_decode(h, hid, &hl) != FMT_OK || hl != level ||
            memcmp(hid, log->meta.log_id, STELE_LOG_ID_SIZE) != 0)
            return err_set(STELE_ERR_CORRUPT, "%s: header damaged or of another log", path);
        if (count % FMT_TREE_TILE_WIDTH && (code = tile_read(log, t, level, t->cur_index[level], t->cur[level])))
            return code;
    }
    /* T5: the tiles hash to the frontier's root. */
    if (t->f.size > 0) {
        uint8_t a[FMT_HASH_SIZE], b[FMT_HASH_SIZE];
        struct node_ctx c = {log, t};
        int code = fmt_merkle_range(node_cb, &c, 0, t->f.size, a);
        if (code)
            return code;
        fmt_frontier_root(&t->f, b);
        if (memcmp(a, b, FMT_HASH_SIZE) != 0)
            return err_set(STELE_ERR_CORRUPT, "the tiles do not hash to %s's root", TREE_FRONTIER_NAME);
    }
    return STELE_OK;
}

/* Reads the frontier file into t->frontier_bytes; *out_size 0 when absent. */
static int frontier_read(stele_log *log, struct tree *t, uint8_t *dst, size_t *out_size)
{
    char path[4200];
    tree_path(log, TREE_FRONTIER_NAME, path, sizeof path);
    *out_size = 0;
    int fd = t->io->ops->open(t->io, path, O_RDONLY, 0);
    if (fd == -ENOENT)
        return STELE_OK;
    if (fd < 0)
        return err_sys(-fd, "open", path);
    ssize_t n = t->io->ops->pread(t->io, fd, dst, FMT_TREE_FRONTIER_SIZE, 0);
    t->io->ops->close(t->io, fd);
    if (n < 0)
        return err_sys((int)-n, "read", path);
    *out_size = n == 0 ? 1 : (size_t)n; /* an empty file is a damaged one, not a missing one */
    return STELE_OK;
}

/* Truncates every tile file to its header and forgets the frontier: the
 * tree is rebuilt from LSN 1 by the next catch-up. */
static int tree_reset_files(stele_log *log, struct tree *t, const char *why)
{
    /* Level 0's file is truncated in place: its descriptor holds the flock. */
    for (unsigned level = 0; level < LEVELS; level++) {
        int code = tiles_open(log, t, level, level == 0);
        if (code != STELE_OK) {
            if (level == 0)
                return code;
            err_clear();
            continue;
        }
        int rc = t->io->ops->ftruncate(t->io, t->fd[level], level == 0 ? FMT_TREE_HEADER_SIZE : 0);
        if (rc < 0)
            return err_sys(-rc, "truncate", "tree tiles");
        if (level > 0) {
            t->io->ops->close(t->io, t->fd[level]);
            t->fd[level] = -1;
        }
    }
    state_reset(t);
    t->have_state = 1;
    memset(t->frontier_bytes, 0, sizeof t->frontier_bytes);
    t->rebuilt++;
    snprintf(t->note, sizeof t->note, "%s: rebuilt from the log", why);
    return STELE_OK;
}

/* Brings t up to date with the files (another handle may have moved them
 * on), rebuilding them when they fail a check and rebuild is set; with
 * rebuild clear a failed check is returned (CORRUPT) and nothing written. */
static int state_sync(stele_log *log, struct tree *t, int rebuild)
{
    uint8_t fb[FMT_TREE_FRONTIER_SIZE];
    size_t fb_size;
    int code = frontier_read(log, t, fb, &fb_size);
    if (code)
        return code;
    if (fb_size == 0) {
        struct stat st;
        if (fstat(t->fd[0], &st) == 0 && st.st_size <= FMT_TREE_HEADER_SIZE) {
            if (!t->have_state || t->f.size != 0)
                state_reset(t);
            t->have_state = 1;
            return STELE_OK; /* no tree yet */
        }
        return rebuild ? tree_reset_files(log, t, TREE_FRONTIER_NAME " missing")
                       : err_set(STELE_ERR_CORRUPT, "%s missing", TREE_FRONTIER_NAME);
    }
    if (t->have_state && fb_size == sizeof fb && memcmp(fb, t->frontier_bytes, sizeof fb) == 0)
        return STELE_OK;
    t->have_state = 0;
    code = state_load(log, t, fb, fb_size);
    if (code == STELE_ERR_CORRUPT && rebuild) {
        char why[160];
        snprintf(why, sizeof why, "%s", stele_errmsg());
        err_clear();
        return tree_reset_files(log, t, why);
    }
    if (code)
        return code;
    memcpy(t->frontier_bytes, fb, sizeof fb);
    t->have_state = 1;
    return STELE_OK;
}

/* Writes the tile being filled at level, when it changed. */
static int tile_flush(stele_log *log, struct tree *t, unsigned level)
{
    if (!t->cur_dirty[level])
        return STELE_OK;
    int code = tiles_open(log, t, level, 1);
    if (code)
        return code;
    fmt_tree_tile_seal(t->cur[level], level, t->cur_index[level]);
    int rc = t->io->ops->write(t->io, t->fd[level], t->cur[level], FMT_TREE_TILE_SIZE,
                               tile_offset(t->cur_index[level]), 0);
    if (rc < 0) {
        char path[4200];
        tiles_path(log, level, path, sizeof path);
        return err_sys(-rc, "write", path);
    }
    t->cur_dirty[level] = 0;
    t->written[level] = 1;
    return STELE_OK;
}

/* fmt_merkle_emit_fn: keeps the nodes of levels 0, 4, 8, ... in tiles. */
static void emit_cb(void *ctx, unsigned level, uint64_t index, const uint8_t hash[FMT_HASH_SIZE])
{
    struct node_ctx *c = ctx;
    struct tree *t = c->t;
    if (level % FMT_TREE_TILE_HEIGHT || t->err)
        return;
    unsigned tl = level / FMT_TREE_TILE_HEIGHT;
    uint64_t ti = index / FMT_TREE_TILE_WIDTH;
    if (ti != t->cur_index[tl]) {
        if ((t->err = tile_flush(c->log, t, tl)) != STELE_OK)
            return;
        memset(t->cur[tl], 0, FMT_TREE_TILE_SIZE);
        t->cur_index[tl] = ti;
    }
    memcpy(t->cur[tl] + (index % FMT_TREE_TILE_WIDTH) * FMT_HASH_SIZE, hash, FMT_HASH_SIZE);
    t->cur_dirty[tl] = 1;
}

/* SPEC.md §20.1: the leaf of a decoded record, whose fields point into its
 * frame: the header is the 64 bytes before the type, and the unpadded size
 * is 64 plus the variable fields. */
static void record_leaf(const struct fmt_record *rec, uint8_t out[FMT_HASH_SIZE], uint64_t *out_size)
{
    const uint8_t *frame = rec->type - 64;
    size_t size = 64u + rec->type_size + rec->stream_size + rec->key_size + rec->actor_size + rec->payload_size;
    fmt_merkle_leaf(frame + 8, size - 8, out);
    *out_size = size;
}

struct catch_up {
    struct node_ctx nc;
    uint64_t bound;
};

static int catch_up_cb(void *ctx, uint64_t lsn, const struct fmt_record *rec)
{
    struct catch_up *cu = ctx;
    if (lsn > cu->bound)
        return TREE_SCAN_DONE;
    uint8_t leaf[FMT_HASH_SIZE];
    uint64_t size;
    record_leaf(rec, leaf, &size);
    fmt_frontier_push(&cu->nc.t->f, leaf, emit_cb, &cu->nc);
    cu->nc.t->leaves_hashed++;
    return cu->nc.t->err;
}

/* The highest LSN the tree may cover: the durable records. */
static int durable_bound(stele_log *log, uint64_t *out)
{
    if (log->opts.read_only) {
        int code = log_refresh(log);
        if (code)
            return code;
    }
    pthread_mutex_lock(&log->q_lock);
    uint64_t d = log->durable_lsn, v = log->visible_lsn;
    pthread_mutex_unlock(&log->q_lock);
    *out = d < v ? d : v;
    return STELE_OK;
}

/* Writes the frontier (temp file, fdatasync, rename) after the tiles it
 * describes are durable, so that a crash leaves a frontier no newer than
  * its tiles (SPEC.md §20.4). */
static int frontier_write(stele_log *log, struct tree *t)
{
    for (unsigned level = 0; level < LEVELS; level++) {
        if (!t->written[level])
            continue;
        int rc = t->io->ops->fdatasync(t->io, t->fd[level]);
        if (rc < 0)
            return err_sys(-rc, "fdatasync", "tree tiles");
        t->written[level] = 0;
    }
    uint8_t fb[FMT_TREE_FRONTIER_SIZE];
    fmt_tree_frontier_encode(log->meta.log_id, &t->f, fb, sizeof fb);
    char path[4200], tmp[4210];
    tree_path(log, TREE_FRONTIER_NAME, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = t->io->ops->open(t->io, tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return err_sys(-fd, "open", tmp);
    int rc = t->io->ops->write(t->io, fd, fb, sizeof fb, 0, 1);
    t->io->ops->close(t->io, fd);
    if (rc == 0)
        rc = t->io->ops->rename(t->io, tmp, path);
    if (rc < 0) {
        t->io->ops->unlink(t->io, tmp);
        return err_sys(-rc, "write", tmp);
    }
    memcpy(t->frontier_bytes, fb, sizeof fb);
    return STELE_OK;
}

/* Catches the files up with the durable records. */
static int catch_up(stele_log *log, struct tree *t)
{
    uint64_t bound;
    int code = durable_bound(log, &bound);
    if (code)
        return code;
    if (t->f.size > bound)
        return err_set(STELE_ERR_CORRUPT,
                       "the tree files of %s cover %llu records but the log holds %llu durable ones: records were "
                       "lost or the log replaced (the files are kept as evidence; remove tree.frontier and "
                       "tree-*.tiles to start a new tree)",
                       log->dir, (unsigned long long)t->f.size, (unsigned long long)bound);
    if (t->f.size == bound)
        return STELE_OK;
    struct catch_up cu = {{log, t}, bound};
    t->err = STELE_OK;
    code = log_scan(log, t->f.size + 1, catch_up_cb, &cu);
    if (code == TREE_SCAN_DONE)
        code = STELE_OK;
    for (unsigned level = 0; code == STELE_OK && level < LEVELS; level++)
        code = tile_flush(log, t, level);
    if (code == STELE_OK)
        code = frontier_write(log, t);
    if (code)
        t->have_state = 0; /* reload from the files next time */
    return code;
}

/* Takes the handle's and the files' locks, loads and catches up. Returns
 * with both held on success (tree_leave releases them). */
/* Makes the handle's tree state on first use; tree_lock held. */
static int tree_alloc(stele_log *log)
{
    if (log->tree)
        return STELE_OK;
    struct tree *t = calloc(1, sizeof *t);
    if (!t || !(t->io = io_posix_create())) {
        free(t);
        return err_set(STELE_ERR_NOMEM, "out of memory for the Merkle tree");
    }
    for (unsigned i = 0; i < LEVELS; i++)
        t->fd[i] = -1;
    log->tree = t;
    return STELE_OK;
}

static void tree_close_files(struct tree *t)
{
    for (unsigned i = 0; i < LEVELS; i++)
        if (t->fd[i] >= 0) {
            t->io->ops->close(t->io, t->fd[i]);
            t->fd[i] = -1;
        }
}

static int tree_enter(stele_log *log, struct tree **out, int rebuild, int up)
{
    pthread_mutex_lock(&log->tree_lock);
    int code = tree_alloc(log);
    if (code) {
        pthread_mutex_unlock(&log->tree_lock);
        return code;
    }
    struct tree *t = log->tree;
    if ((code = tiles_open(log, t, 0, 1)) == STELE_OK) {
        while (flock(t->fd[0], LOCK_EX) != 0 && errno == EINTR)
            ;
        code = state_sync(log, t, rebuild);
        if (code == STELE_OK && up)
            code = catch_up(log, t);
        if (code)
            flock(t->fd[0], LOCK_UN);
    }
    if (code) {
        pthread_mutex_unlock(&log->tree_lock);
        return code;
    }
    *out = t;
    return STELE_OK;
}

static void tree_leave(stele_log *log, struct tree *t)
{
    flock(t->fd[0], LOCK_UN);
    pthread_mutex_unlock(&log->tree_lock);
}

/* A read of a stored tile failed its check in the middle of an operation:
 * the files are rebuilt and the operation tried once more. */
static int tree_retry(stele_log *log, struct tree *t, int code)
{
    if (code != STELE_ERR_CORRUPT)
        return code;
    char why[160];
    snprintf(why, sizeof why, "%s", stele_errmsg());
    err_clear();
    if ((code = tree_reset_files(log, t, why)) == STELE_OK)
        code = catch_up(log, t);
    return code == STELE_OK ? -1 : code; /* -1: try again */
}

void tree_free(stele_log *log)
{
    struct tree *t = log->tree;
    if (!t)
        return;
    tree_close_files(t);
    t->io->ops->destroy(t->io);
    free(t);
    log->tree = NULL;
}

static int root_at(stele_log *log, struct tree *t, uint64_t size, uint8_t out[FMT_HASH_SIZE])
{
    if (size == t->f.size) {
        fmt_frontier_root(&t->f, out);
        return STELE_OK;
    }
    if (size == 0) {
        fmt_frontier_root(&(struct fmt_frontier){0}, out);
        return STELE_OK;
    }
    struct node_ctx c = {log, t};
    return fmt_merkle_range(node_cb, &c, 0, size, out);
}

int stele_tree_info_get(stele_log *log, stele_tree_info *out)
{
    err_clear();
    if (!log || !out)
        return err_set(STELE_ERR_INVALID, "tree info: log and out are required");
    struct tree *t;
    int code = tree_enter(log, &t, 1, 1);
    if (code)
        return code;
    memset(out, 0, sizeof *out);
    out->size = t->f.size;
    fmt_frontier_root(&t->f, out->root);
    out->leaves_hashed = t->leaves_hashed;
    out->rebuilt = t->rebuilt;
    snprintf(out->note, sizeof out->note, "%s", t->note);
    tree_leave(log, t);
    return STELE_OK;
}

int stele_tree_root(stele_log *log, uint64_t *out_size, uint8_t out_root[STELE_HASH_SIZE])
{
    stele_tree_info info;
    int code = stele_tree_info_get(log, &info);
    if (code)
        return code;
    if (out_size)
        *out_size = info.size;
    if (out_root)
        memcpy(out_root, info.root, STELE_HASH_SIZE);
    return STELE_OK;
}

/* The size argument of the root and proof calls: 0 = the current tree. */
static int size_check(const struct tree *t, uint64_t *size)
{
    if (*size == 0)
        *size = t->f.size;
    if (*size > t->f.size)
        return err_set(STELE_ERR_NOT_FOUND, "tree size %llu: the log holds %llu durable records",
                       (unsigned long long)*size, (unsigned long long)t->f.size);
    return STELE_OK;
}

int stele_tree_root_at(stele_log *log, uint64_t size, uint8_t out_root[STELE_HASH_SIZE])
{
    err_clear();
    if (!log || !out_root)
        return err_set(STELE_ERR_INVALID, "tree root: log and out_root are required");
    struct tree *t;
    int code = tree_enter(log, &t, 1, 1);
    if (code)
        return code;
    if (size > t->f.size)
        code = size_check(t, &size);
    for (int tries = 0; (code == STELE_OK || code == -1) && tries < 2; tries++)
        if ((code = root_at(log, t, size, out_root)) == STELE_OK || (code = tree_retry(log, t, code)) != -1)
            break;
    tree_leave(log, t);
    return code == -1 ? err_set(STELE_ERR_CORRUPT, "tree files damaged again after a rebuild") : code;
}

static int prove(stele_log *log, struct tree *t, stele_proof *p)
{
    struct node_ctx c = {log, t};
    int code;
    if (p->lsn) {
        if ((code = fmt_merkle_prove_inclusion(node_cb, &c, p->lsn - 1, p->size, p->hashes, &p->hash_count)))
            return code;
        if ((code = node_cb(&c, 0, p->lsn - 1, p->leaf)))
            return code;
    } else {
        if ((code = fmt_merkle_prove_consistency(node_cb, &c, p->from_size, p->size, p->hashes, &p->hash_count)))
            return code;
        if ((code = root_at(log, t, p->from_size, p->from_root)))
            return code;
    }
    return root_at(log, t, p->size, p->root);
}

static int prove_call(stele_log *log, uint64_t lsn, uint64_t from, uint64_t size, stele_proof *out)
{
    err_clear();
    if (!log || !out)
        return err_set(STELE_ERR_INVALID, "prove: log and out are required");
    struct tree *t;
    int code = tree_enter(log, &t, 1, 1);
    if (code)
        return code;
    if ((code = size_check(t, &size)) == STELE_OK) {
        if (lsn == 0 && from == 0)
            code = err_set(STELE_ERR_INVALID, "consistency proof: from_size 0 (every tree is consistent with "
                                              "the empty one)");
        else if (lsn > t->f.size)
            code = err_set(STELE_ERR_NOT_FOUND, "LSN %llu: the tree covers LSNs 1..%llu", (unsigned long long)lsn,
                           (unsigned long long)t->f.size);
        else if (lsn > size || from > size)
            code = err_set(STELE_ERR_INVALID, "%s %llu is beyond the tree of size %llu", lsn ? "LSN" : "from_size",
                           (unsigned long long)(lsn ? lsn : from), (unsigned long long)size);
    }
    for (int tries = 0; (code == STELE_OK || code == -1) && tries < 2; tries++) {
        memset(out, 0, sizeof *out);
        out->lsn = lsn;
        out->from_size = from;
        out->size = size;
        if ((code = prove(log, t, out)) == STELE_OK || (code = tree_retry(log, t, code)) != -1)
            break;
    }
    tree_leave(log, t);
    return code == -1 ? err_set(STELE_ERR_CORRUPT, "tree files damaged again after a rebuild") : code;
}

int stele_prove_inclusion(stele_log *log, uint64_t lsn, uint64_t size, stele_proof *out)
{
    if (lsn == 0) {
        err_clear();
        return err_set(STELE_ERR_NOT_FOUND, "inclusion proof: LSN 0 names no record");
    }
    return prove_call(log, lsn, 0, size, out);
}

int stele_prove_consistency(stele_log *log, uint64_t from_size, uint64_t size, stele_proof *out)
{
    if (from_size == 0) {
        err_clear();
        return err_set(STELE_ERR_INVALID, "consistency proof: from_size must be at least 1");
    }
    return prove_call(log, 0, from_size, size, out);
}

int stele_proof_verify(const stele_proof *p)
{
    if (!p || p->hash_count > STELE_PROOF_HASH_COUNT_MAX)
        return 0;
    if (p->lsn)
        return p->lsn <= p->size &&
               fmt_merkle_verify_inclusion(p->leaf, p->lsn - 1, p->size, p->hashes, p->hash_count, p->root);
    return fmt_merkle_verify_consistency(p->from_size, p->size, p->from_root, p->root, p->hashes, p->hash_count);
}

/* ------------------------------------------------------------ the audit */

struct audit {
    struct node_ctx nc;
    struct fmt_frontier f;   /* recomputed from the records */
    uint64_t size, bound;
    uint8_t root_at_size[FMT_HASH_SIZE];
    int evidence;
    stele_audit_report *out;
};

static int audit_cb(void *ctx, uint64_t lsn, const struct fmt_record *rec)
{
    struct audit *a = ctx;
    if (lsn > a->bound)
        return TREE_SCAN_DONE;
    uint8_t leaf[FMT_HASH_SIZE], stored[FMT_HASH_SIZE];
    uint64_t size;
    record_leaf(rec, leaf, &size);
    fmt_frontier_push(&a->f, leaf, NULL, NULL);
    a->out->records++;
    a->out->bytes += size;
    if (lsn == a->size)
        fmt_frontier_root(&a->f, a->root_at_size);
    if (a->evidence && lsn <= a->size && a->out->first_bad_lsn == 0) {
        if (node_cb(&a->nc, 0, lsn - 1, stored) != STELE_OK) {
            err_clear();
            a->evidence = 0; /* a stored tile fails its check now: no evidence after all */
        } else if (memcmp(stored, leaf, FMT_HASH_SIZE) != 0) {
            a->out->first_bad_lsn = lsn;
        }
    }
    return STELE_OK;
}

/* Whether the stored files reproduce the checkpoint: then their leaves are
 * the ones it committed to (SPEC.md §20.5). */
static int audit_evidence(stele_log *log, struct tree *t, uint64_t size, const uint8_t root[FMT_HASH_SIZE])
{
    if (state_sync(log, t, 0) != STELE_OK || t->f.size < size) {
        err_clear();
        t->have_state = 0;
        return 0;
    }
    uint8_t r[FMT_HASH_SIZE];
    if (root_at(log, t, size, r) != STELE_OK) {
        err_clear();
        return 0;
    }
    return memcmp(r, root, FMT_HASH_SIZE) == 0;
}

static int audit_verdict(stele_log *log, struct audit *a, const uint8_t root[FMT_HASH_SIZE])
{
    stele_audit_report *o = a->out;
    o->size = a->f.size;
    fmt_frontier_root(&a->f, o->root);
    if (a->size == 0)
        fmt_frontier_root(&(struct fmt_frontier){0}, a->root_at_size);
    if (o->records < a->size) {
        if (o->first_bad_lsn == 0)
            o->first_bad_lsn = o->records + 1;
        if (o->first_bad_lsn > o->records)
            return err_set(STELE_ERR_CORRUPT,
                           "%s holds %llu durable records but the checkpoint committed to %llu: LSN %llu and "
                           "after are missing (history was truncated)",
                           log->dir, (unsigned long long)o->records, (unsigned long long)a->size,
                           (unsigned long long)o->first_bad_lsn);
    }
    if (o->first_bad_lsn)
        return err_set(STELE_ERR_CORRUPT,
                       "LSN %llu of %s differs from what the checkpoint of size %llu committed to (its leaf hash "
                       "is not the one the checkpoint's tree holds)",
                       (unsigned long long)o->first_bad_lsn, log->dir, (unsigned long long)a->size);
    if (memcmp(a->root_at_size, root, FMT_HASH_SIZE) != 0)
        return err_set(STELE_ERR_CORRUPT,
                       "the first %llu records of %s do not hash to the checkpoint's root: history was "
                       "rewritten; the stored tree files do not reproduce the checkpoint either (rewritten "
                       "or missing), so the first differing LSN cannot be named",
                       (unsigned long long)a->size, log->dir);
    return STELE_OK;
}

int stele_audit(stele_log *log, uint64_t size, const uint8_t root[STELE_HASH_SIZE], stele_audit_report *out)
{
    err_clear();
    if (!log || !root || !out)
        return err_set(STELE_ERR_INVALID, "audit: log, root and out are required");
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&log->tree_lock);
    int code = tree_alloc(log);
    if (code) {
        pthread_mutex_unlock(&log->tree_lock);
        return code;
    }
    /* The audit writes nothing and needs no write permission: the tree files
     * are reopened read-only (shared lock), and without them there is no
     * evidence, only the recomputed root. */
    struct tree *t = log->tree;
    tree_close_files(t);
    t->ro = 1;
    t->have_state = 0;
    int locked = tiles_open(log, t, 0, 0) == STELE_OK;
    if (locked)
        while (flock(t->fd[0], LOCK_SH) != 0 && errno == EINTR)
            ;
    err_clear();
    struct audit a = {.nc = {log, t}, .size = size, .out = out};
    a.evidence = locked && audit_evidence(log, t, size, root);
    out->evidence = a.evidence;
    code = durable_bound(log, &a.bound);
    if (code == STELE_OK) {
        code = log_scan(log, 1, audit_cb, &a);
        if (code == TREE_SCAN_DONE)
            code = STELE_OK;
    }
    if (code == STELE_OK)
        code = audit_verdict(log, &a, root);
    if (locked)
        flock(t->fd[0], LOCK_UN);
    tree_close_files(t); /* opened read-only: the next tree call reopens them for writing */
    t->ro = 0;
    t->have_state = 0; /* the audit may have left the state half loaded */
    pthread_mutex_unlock(&log->tree_lock);
    return code;
}

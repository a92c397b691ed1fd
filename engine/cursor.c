/*
 * cursor.c - consumer cursors and dead letters (SPEC.md §16).
 *
 * A consumer's state lives in DIR/consumers/ beside the log and is derived
 * from nothing: it is the consumer's own truth, so it is checksummed like the
 * log and a damaged file is reported, never reset.
 *
 *  - NAME.cursor holds one 64-byte record: the committed position. It is
 *    replaced whole. A commit writes the new record to NAME.cursor.tmp
 *    (created or truncated), fdatasyncs it, renames it over NAME.cursor and
 *    fsyncs the consumers directory. The rename is the commit point: a crash
 *    before it leaves the old file (and a stray .tmp, removed at the next
 *    open that gets the lock), a crash after it the new one; the directory
 *    sync makes the rename itself durable before the commit is reported done.
 *  - NAME.dead is append-only: one checksummed record per dead letter or per
 *    resolution, each written at the end of the file with an fdatasync before
 *    the call returns. A crash can only leave a torn last append, which
 *    readers stop at and the lock holder's open cuts; anything else that
 *    fails a check is corruption.
 *
 * The files go through the log's I/O seam (log->aux_io when the log has one,
 * as the index checkpoint does, else log->io), so the fault-injecting
 * backend reaches them. A failed commit or append fences the cursor handle:
 * what the files hold is then known only by reading them again (reopen).
 *
 * The consumer's state is the consumer's, not the log writer's: a handle on
 * a read-only log changes it as well as one on a writable log. What makes
 * changes safe is NAME.lock: the handle that holds its flock is the only one
 * that writes NAME.cursor and NAME.dead, removes a stray .tmp or cuts a torn
 * tail. Another handle (another process, or a second handle of this one)
 * still opens, reads the files afresh at each look, and gets LOCKED naming
 * the holder's pid for every change. Commits never point past what the log
 * handle shows, and a read-only log handle shows only durable records
 * (SPEC.md §10.2), so a cursor never survives a crash its record does not.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checksum.h"
#include "endian.h"
#include "internal.h"

/* SPEC.md §16.2: the cursor record. */
#define CURSOR_RECORD_SIZE 64u
#define CURSOR_MAGIC UINT64_C(0x524f535255434c53)   /* "SLCURSOR" little-endian */
#define CURSOR_VERSION 1u
/* SPEC.md §16.3: the dead-letter record. */
#define DEAD_HEADER_SIZE 48u
#define DEAD_MAGIC UINT32_C(0x31444c53)             /* "SLD1" */
#define DEAD_KIND_LETTER 1u
#define DEAD_KIND_RESOLVED 2u
#define DEAD_RECORD_SIZE_MAX                                                                         \
    (DEAD_HEADER_SIZE + STELE_KEY_SIZE_MAX + STELE_DEAD_REASON_SIZE_MAX + STELE_DEAD_STDERR_SIZE_MAX + 8u)
/* A dead-letter file larger than this is refused rather than read into memory. */
#define DEAD_FILE_SIZE_MAX (256u * 1024u * 1024u)
#define CONSUMERS_DIR "consumers"
/* As for the writer lock (engine/log.c): io_uring can keep a killed
 * process's files, and so its flock, alive briefly after kill -9
 * (RELIABILITY S32), so a busy consumer lock is retried this long before the
 * handle settles for reading. */
#define LOCK_WAIT_MS 1000
#define LOCK_POLL_MS 10

_Static_assert(STELE_CURSOR_NAME_SIZE_MAX == 64, "SPEC.md §16.1 names at most 64 bytes");
_Static_assert(DEAD_RECORD_SIZE_MAX < 4096, "a dead-letter record is one small write");
_Static_assert(STELE_DEAD_REASON_SIZE_MAX <= UINT16_MAX && STELE_DEAD_STDERR_SIZE_MAX <= UINT16_MAX,
               "string sizes are u16 on disk");

struct stele_cursor {
    stele_log *log;
    struct io *io;
    char name[STELE_CURSOR_NAME_SIZE_MAX + 1];
    char dir[4200];          /* DIR/consumers */
    char path[4300];         /* DIR/consumers/NAME.cursor */
    char tmp[4300];          /* ... .tmp */
    char dead_path[4300];    /* DIR/consumers/NAME.dead */
    char lock_path[4300];    /* DIR/consumers/NAME.lock */
    int lock_fd;             /* holds the flock on lock_path; -1 when not exclusive */
    int exclusive;           /* this handle holds the consumer's lock: it may change the files */
    int lock_code;           /* when not exclusive: LOCKED, or READ_ONLY (no lock file could be made) */
    char lock_msg[4608];     /* ... and why, naming the holder's pid or the errno */
    uint64_t position;
    uint64_t dead_seed;      /* STELE_SEED_DEAD bound to the log's id */
    uint64_t dead_end;       /* where the next dead-letter record goes */
    int dir_ready;           /* consumers/ exists and its entry is durable */
    int fenced;              /* an earlier commit or append failed */
    char fence_msg[512];
};

static struct io *cursor_io(const stele_log *log)
{
    return log->aux_io ? log->aux_io : log->io;
}

static int name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > STELE_CURSOR_NAME_SIZE_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static uint64_t last_acked_lsn(stele_log *log)
{
    return log_acked_lsn(log);
}

/* The log handle's last LSN in *out_last, caught up with the files first
 * when it is read-only and lsn is beyond it (another process writes). */
static int log_shows(const stele_cursor *c, uint64_t lsn, uint64_t *out_last)
{
    uint64_t last = last_acked_lsn(c->log);
    if (lsn > last && c->log->opts.read_only) {
        int code = log_refresh(c->log);
        if (code)
            return code;
        last = last_acked_lsn(c->log);
    }
    *out_last = last;
    return STELE_OK;
}

static uint64_t durable_lsn(stele_log *log)
{
    pthread_mutex_lock(&log->q_lock);
    uint64_t d = log->durable_lsn;
    pthread_mutex_unlock(&log->q_lock);
    return d;
}

/* Reads the whole of path (at most size_max bytes) into *out (malloc'd).
 * A missing file is NOT_FOUND with nothing allocated. */
static int read_whole(struct io *io, const char *path, size_t size_max, uint8_t **out, size_t *out_size)
{
    int fd = io->ops->open(io, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd == -ENOENT)
        return STELE_ERR_NOT_FOUND;
    if (fd < 0)
        return err_sys(-fd, "open", path);
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    int code = buf ? STELE_OK : err_set(STELE_ERR_NOMEM, "out of memory reading %s", path);
    while (code == STELE_OK) {
        if (n == cap) {
            uint8_t *b = cap >= size_max ? NULL : realloc(buf, cap * 2);
            if (!b) {
                code = cap >= size_max ? err_set(STELE_ERR_TOO_LARGE, "%s: larger than %zu bytes", path, size_max)
                                       : err_set(STELE_ERR_NOMEM, "out of memory reading %s", path);
                break;
            }
            buf = b;
            cap *= 2;
        }
        ssize_t r = io->ops->pread(io, fd, buf + n, cap - n, n);
        if (r < 0)
            code = err_set(err_code_from_errno((int)-r), "read %s offset %zu: %s", path, n, strerror((int)-r));
        else if (r == 0)
            break;
        else
            n += (size_t)r;
    }
    io->ops->close(io, fd);
    if (code) {
        free(buf);
        return code;
    }
    *out = buf;
    *out_size = n;
    return STELE_OK;
}

/* ------------------------------------------------------------ the cursor */

static void cursor_encode(const stele_cursor *c, uint64_t position, uint8_t rec[CURSOR_RECORD_SIZE])
{
    memset(rec, 0, CURSOR_RECORD_SIZE);
    le64_store(rec + 8, CURSOR_MAGIC);
    le32_store(rec + 16, CURSOR_VERSION);
    le32_store(rec + 20, CURSOR_RECORD_SIZE);
    memcpy(rec + 24, c->log->meta.log_id, STELE_LOG_ID_SIZE);
    le64_store(rec + 40, position);
    le64_store(rec + 48, now_ns());
    le64_store(rec + 0, stele_checksum(rec + 8, CURSOR_RECORD_SIZE - 8, STELE_SEED_CURSOR));
}

/* The checks of SPEC.md §16.2, in order. */
static int cursor_decode(const stele_cursor *c, const uint8_t *buf, size_t size, uint64_t *out_position)
{
    if (size != CURSOR_RECORD_SIZE)
        return err_set(STELE_ERR_CORRUPT, "%s offset %u: the file is %zu bytes, a cursor file exactly %u", c->path,
                       size > CURSOR_RECORD_SIZE ? CURSOR_RECORD_SIZE : 0, size, CURSOR_RECORD_SIZE);
    if (le64_load(buf) != stele_checksum(buf + 8, CURSOR_RECORD_SIZE - 8, STELE_SEED_CURSOR))
        return err_set(STELE_ERR_CORRUPT, "%s offset 0: checksum mismatch", c->path);
    if (le64_load(buf + 8) != CURSOR_MAGIC)
        return err_set(STELE_ERR_CORRUPT, "%s offset 8: bad magic", c->path);
    if (le32_load(buf + 16) != CURSOR_VERSION)
        return err_set(STELE_ERR_FORMAT, "%s offset 16: cursor format version %u (this library reads %u)", c->path,
                       le32_load(buf + 16), CURSOR_VERSION);
    if (le32_load(buf + 20) != CURSOR_RECORD_SIZE || le64_load(buf + 56) != 0)
        return err_set(STELE_ERR_CORRUPT, "%s offset 20: bad size or reserved bytes", c->path);
    if (memcmp(buf + 24, c->log->meta.log_id, STELE_LOG_ID_SIZE) != 0)
        return err_set(STELE_ERR_CORRUPT, "%s offset 24: the cursor belongs to another log (log id differs)",
                       c->path);
    *out_position = le64_load(buf + 40);
    return STELE_OK;
}

static int cursor_load(stele_cursor *c)
{
    uint8_t *buf = NULL;
    size_t size = 0;
    int code = read_whole(c->io, c->path, 4096, &buf, &size);
    if (code == STELE_ERR_NOT_FOUND) {
        c->position = 0;
        return STELE_OK;
    }
    if (code == STELE_ERR_TOO_LARGE)
        code = err_set(STELE_ERR_CORRUPT, "%s offset %u: longer than a cursor record", c->path, CURSOR_RECORD_SIZE);
    if (code)
        return code;
    uint64_t pos = 0;
    code = cursor_decode(c, buf, size, &pos);
    free(buf);
    if (code)
        return code;
    /* Every commit was of a durable record, so a cursor beyond the log would
     * skip records appended from now on. A read-only log handle may be
     * behind another process's commit: it catches up first. */
    uint64_t last;
    if ((code = log_shows(c, pos, &last)) != STELE_OK)
        return code;
    if (pos > last)
        return err_set(STELE_ERR_CORRUPT, "%s offset 40: position %llu is beyond the log's last LSN %llu", c->path,
                       (unsigned long long)pos, (unsigned long long)last);
    c->position = pos;
    return STELE_OK;
}

/* Makes DIR/consumers exist with a durable entry in DIR. mkdir is not an
 * operation of the I/O seam (nothing else makes directories); the sync of
 * DIR that makes the entry durable is. */
static int ensure_dir(stele_cursor *c)
{
    if (c->dir_ready)
        return STELE_OK;
    if (mkdir(c->dir, 0755) != 0 && errno != EEXIST)
        return err_sys(errno, "mkdir", c->dir);
    int r = c->io->ops->sync_dir(c->io, c->log->dir);
    if (r < 0)
        return err_sys(-r, "sync directory", c->log->dir);
    c->dir_ready = 1;
    return STELE_OK;
}

static int fence(stele_cursor *c, int code)
{
    c->fenced = 1;
    snprintf(c->fence_msg, sizeof c->fence_msg, "%s", stele_errmsg());
    return code;
}

static int check_writable(stele_cursor *c, const char *op)
{
    if (!c->exclusive)
        return err_set(c->lock_code, "%s consumer %s: %s", op, c->name, c->lock_msg);
    if (c->fenced)
        return err_set(STELE_ERR_FENCED, "%s consumer %s: an earlier write failed (%s); reopen the cursor", op,
                       c->name, c->fence_msg);
    return STELE_OK;
}

/* The durable replacement described at the top of this file. */
static int cursor_store(stele_cursor *c, uint64_t lsn)
{
    uint8_t rec[CURSOR_RECORD_SIZE];
    cursor_encode(c, lsn, rec);
    struct io *io = c->io;
    int code = ensure_dir(c), r;
    if (code)
        return code;
    int fd = io->ops->open(io, c->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_sys(-fd, "create", c->tmp);
    if ((r = io->ops->write(io, fd, rec, sizeof rec, 0, 1)) < 0)
        code = err_sys(-r, "write and sync", c->tmp);
    if ((r = io->ops->close(io, fd)) < 0 && code == STELE_OK)
        code = err_sys(-r, "close", c->tmp);
    if (code == STELE_OK && (r = io->ops->rename(io, c->tmp, c->path)) < 0)
        code = err_sys(-r, "rename over the cursor file", c->tmp);
    if (code == STELE_OK && (r = io->ops->sync_dir(io, c->dir)) < 0)
        code = err_sys(-r, "sync directory", c->dir);
    if (code) {
        /* Best effort: a stray .tmp is harmless (the next open holding the
         * lock removes it); the code already says what failed. */
        io->ops->unlink(io, c->tmp);
        return code;
    }
    return STELE_OK;
}

int stele_cursor_commit(stele_cursor *c, uint64_t lsn)
{
    err_clear();
    if (!c)
        return err_set(STELE_ERR_INVALID, "cursor commit: cursor is required");
    int code = check_writable(c, "commit");
    if (code)
        return code;
    if (lsn < c->position)
        return err_set(STELE_ERR_INVALID,
                       "commit consumer %s: LSN %llu is below its position %llu (cursors never go back)", c->name,
                       (unsigned long long)lsn, (unsigned long long)c->position);
    if (lsn == c->position)
        return STELE_OK;
    uint64_t last;
    if ((code = log_shows(c, lsn, &last)) != STELE_OK)
        return code;
    if (lsn > last)
        return err_set(STELE_ERR_INVALID, "commit consumer %s: LSN %llu is beyond the log's last acknowledged LSN %llu",
                       c->name, (unsigned long long)lsn, (unsigned long long)last);
    /* In modes interval and none an acknowledged record may not be durable
     * yet; a cursor must never survive a crash that the record does not. (A
     * read-only log handle shows durable records only: durable_lsn is its
     * last LSN, and no sync is needed.) */
    if (lsn > durable_lsn(c->log) && (code = stele_sync(c->log)) != STELE_OK)
        return code;
    if ((code = cursor_store(c, lsn)) != STELE_OK)
        return fence(c, code);
    c->position = lsn;
    return STELE_OK;
}

int stele_cursor_position(stele_cursor *c, uint64_t *out_lsn)
{
    err_clear();
    if (!c || !out_lsn)
        return err_set(STELE_ERR_INVALID, "cursor position: cursor and out_lsn are required");
    /* Only the lock holder changes the file: another handle reads it afresh. */
    if (!c->exclusive) {
        int code = cursor_load(c);
        if (code)
            return code;
    }
    *out_lsn = c->position;
    return STELE_OK;
}

/* ---------------------------------------------------------- dead letters */

struct dead_scan {
    stele_dead_letter *items; /* one per LSN, in LSN order, strings pointing into buf */
    size_t count;
    uint8_t *buf;
    size_t size;
    uint64_t valid_end;       /* end of the last whole record */
};

/* A checked record: its LSN and offset (the offset is its order in the file). */
struct dead_ref {
    uint64_t lsn, off;
};

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static int ref_order(const void *a, const void *b)
{
    const struct dead_ref *x = a, *y = b;
    if (x->lsn != y->lsn)
        return x->lsn < y->lsn ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* The dead letter of lsn in s (binary search), NULL if none. */
static stele_dead_letter *dead_slot(struct dead_scan *s, uint64_t lsn)
{
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->items[mid].lsn < lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->count && s->items[lo].lsn == lsn ? &s->items[lo] : NULL;
}

/* Folds the records, sorted by LSN and then file order, into one dead letter
 * per LSN (SPEC.md §16.3: a dead letter sets it and makes it unresolved, a
 * resolution resolves it; a resolution with no dead letter before it means
 * nothing). items has room for n. */
static void dead_fold(struct dead_scan *s, const struct dead_ref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = s->buf + refs[i].off;
        uint64_t t = le64_load(p + 32);
        stele_dead_letter *d = s->count && s->items[s->count - 1].lsn == refs[i].lsn ? &s->items[s->count - 1]
                                                                                      : NULL;
        if (p[16] == DEAD_KIND_RESOLVED) {
            if (d && !d->resolved_at_ns)
                d->resolved_at_ns = t ? t : 1;
            continue;
        }
        if (!d)
            d = &s->items[s->count++];
        uint16_t ks = le16_load(p + 18), rs = le16_load(p + 20), es = le16_load(p + 22);
        const char *str = (const char *)p + DEAD_HEADER_SIZE;
        *d = (stele_dead_letter){.lsn = refs[i].lsn, .dead_at_ns = t, .attempts = le32_load(p + 40),
                                 .key = str, .key_size = ks, .reason = str + ks, .reason_size = rs,
                                 .last_stderr = str + ks + rs, .last_stderr_size = es};
    }
}

/* SPEC.md §16.3: the low 32 bits of XXH3-64 of header bytes [8, 44). */
static uint32_t dead_header_check(const stele_cursor *c, const uint8_t *p)
{
    return (uint32_t)stele_checksum(p + 8, 36, c->dead_seed);
}

/* The checks of SPEC.md §16.3 on the record at offset o; sets *torn when the
 * file ends inside it (an append that never completed). */
static int dead_check(const stele_cursor *c, const struct dead_scan *s, uint64_t o, int *torn, uint32_t *out_size)
{
    const uint8_t *p = s->buf + o;
    size_t left = s->size - o;
    *torn = 0;
    if (left < DEAD_HEADER_SIZE || all_zero(p, left)) {
        *torn = 1;
        return STELE_OK;
    }
    uint32_t size = le32_load(p + 12);
    if (le32_load(p + 8) != DEAD_MAGIC || size < DEAD_HEADER_SIZE || size > DEAD_RECORD_SIZE_MAX || size % 8)
        return err_set(STELE_ERR_CORRUPT, "%s offset %llu: not a dead-letter record (bad magic or size)",
                       c->dead_path, (unsigned long long)o);
    /* The header's own check: only a size that is believed can say "the
     * file ends inside this record", so a damaged size is never taken for a
     * torn append (which would cut an acknowledged record). */
    if (le32_load(p + 44) != dead_header_check(c, p))
        return err_set(STELE_ERR_CORRUPT, "%s offset %llu: header check mismatch", c->dead_path,
                       (unsigned long long)o);
    if (size > left) {
        *torn = 1;
        return STELE_OK;
    }
    if (le64_load(p) != stele_checksum(p + 8, size - 8, c->dead_seed))
        return err_set(STELE_ERR_CORRUPT, "%s offset %llu: checksum mismatch", c->dead_path, (unsigned long long)o);
    uint64_t strings = (uint64_t)le16_load(p + 18) + le16_load(p + 20) + le16_load(p + 22);
    int kind_ok = p[16] == DEAD_KIND_LETTER || (p[16] == DEAD_KIND_RESOLVED && strings == 0);
    int sizes_ok = le16_load(p + 18) <= STELE_KEY_SIZE_MAX && le16_load(p + 20) <= STELE_DEAD_REASON_SIZE_MAX &&
                   le16_load(p + 22) <= STELE_DEAD_STDERR_SIZE_MAX && DEAD_HEADER_SIZE + strings <= size;
    uint64_t pad = sizes_ok ? size - DEAD_HEADER_SIZE - strings : 0;
    if (!kind_ok || !sizes_ok || p[17] != 0 || le64_load(p + 24) == 0 || pad >= 8 ||
        !all_zero(p + DEAD_HEADER_SIZE + strings, pad))
        return err_set(STELE_ERR_CORRUPT, "%s offset %llu: invalid dead-letter record (kind, sizes or padding)",
                       c->dead_path, (unsigned long long)o);
    *out_size = size;
    return STELE_OK;
}

static void dead_scan_free(struct dead_scan *s)
{
    free(s->items);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

/* Reads and checks the whole file: s->items as the list says it, in LSN
 * order. Sorting the records first keeps this O(n log n) in the records. */
static int dead_scan(const stele_cursor *c, struct dead_scan *s)
{
    memset(s, 0, sizeof *s);
    int code = read_whole(c->io, c->dead_path, DEAD_FILE_SIZE_MAX, &s->buf, &s->size);
    if (code == STELE_ERR_NOT_FOUND)
        return STELE_OK;
    if (code)
        return code;
    /* Every record is at least DEAD_HEADER_SIZE bytes: this many refs suffice. */
    size_t cap = s->size / DEAD_HEADER_SIZE + 1, n = 0;
    struct dead_ref *refs = malloc(cap * sizeof *refs);
    s->items = malloc(cap * sizeof *s->items);
    if (!refs || !s->items)
        code = err_set(STELE_ERR_NOMEM, "out of memory reading %s", c->dead_path);
    uint64_t o = 0;
    while (code == STELE_OK && o < s->size) {
        int torn;
        uint32_t size = 0;
        if ((code = dead_check(c, s, o, &torn, &size)) != STELE_OK || torn)
            break;
        refs[n++] = (struct dead_ref){le64_load(s->buf + o + 24), o};
        o += size;
    }
    s->valid_end = o;
    if (code == STELE_OK) {
        qsort(refs, n, sizeof *refs, ref_order);
        dead_fold(s, refs, n);
    }
    free(refs);
    if (code)
        dead_scan_free(s);
    return code;
}

/* An open holding the lock cuts a torn tail so that the next append follows
 * the last whole record (the cut bytes were never acknowledged). */
static int dead_open(stele_cursor *c)
{
    struct dead_scan s;
    int code = dead_scan(c, &s);
    if (code)
        return code;
    c->dead_end = s.valid_end;
    if (c->exclusive && s.valid_end < s.size) {
        int fd = c->io->ops->open(c->io, c->dead_path, O_WRONLY | O_CLOEXEC, 0);
        int r = fd < 0 ? fd : c->io->ops->ftruncate(c->io, fd, s.valid_end);
        if (r >= 0)
            r = c->io->ops->fdatasync(c->io, fd);
        if (fd >= 0)
            c->io->ops->close(c->io, fd);
        if (r < 0)
            code = err_set(err_code_from_errno(-r), "cutting the torn tail of %s at offset %llu: %s", c->dead_path,
                           (unsigned long long)s.valid_end, strerror(-r));
    }
    dead_scan_free(&s);
    return code;
}

/* Appends one encoded record at the end of the file, durably; a new file's
 * directory entry is made durable too. */
static int dead_append(stele_cursor *c, const uint8_t *rec, uint32_t size)
{
    struct io *io = c->io;
    int code = ensure_dir(c), r;
    if (code)
        return code;
    int created = c->dead_end == 0;
    int fd = io->ops->open(io, c->dead_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_sys(-fd, "open", c->dead_path);
    if ((r = io->ops->write(io, fd, rec, size, c->dead_end, 1)) < 0)
        code = err_set(err_code_from_errno(-r), "write and sync %s offset %llu: %s", c->dead_path,
                       (unsigned long long)c->dead_end, strerror(-r));
    if ((r = io->ops->close(io, fd)) < 0 && code == STELE_OK)
        code = err_sys(-r, "close", c->dead_path);
    if (code == STELE_OK && created && (r = io->ops->sync_dir(io, c->dir)) < 0)
        code = err_sys(-r, "sync directory", c->dir);
    if (code)
        return fence(c, code);
    c->dead_end += size;
    return STELE_OK;
}

static uint32_t dead_encode(const stele_cursor *c, unsigned kind, const stele_dead_letter *dl, uint8_t *rec)
{
    size_t strings = dl->key_size + dl->reason_size + dl->last_stderr_size;
    uint32_t size = (uint32_t)((DEAD_HEADER_SIZE + strings + 7u) & ~(size_t)7u);
    memset(rec, 0, size);
    le32_store(rec + 8, DEAD_MAGIC);
    le32_store(rec + 12, size);
    rec[16] = (uint8_t)kind;
    le16_store(rec + 18, (uint16_t)dl->key_size);
    le16_store(rec + 20, (uint16_t)dl->reason_size);
    le16_store(rec + 22, (uint16_t)dl->last_stderr_size);
    le64_store(rec + 24, dl->lsn);
    le64_store(rec + 32, dl->dead_at_ns ? dl->dead_at_ns : now_ns());
    le32_store(rec + 40, dl->attempts);
    le32_store(rec + 44, dead_header_check(c, rec));
    uint8_t *p = rec + DEAD_HEADER_SIZE;
    if (dl->key_size)
        memcpy(p, dl->key, dl->key_size);
    if (dl->reason_size)
        memcpy(p + dl->key_size, dl->reason, dl->reason_size);
    if (dl->last_stderr_size)
        memcpy(p + dl->key_size + dl->reason_size, dl->last_stderr, dl->last_stderr_size);
    le64_store(rec, stele_checksum(rec + 8, size - 8, c->dead_seed));
    return size;
}

int stele_dead_letter_add(stele_cursor *c, const stele_dead_letter *dl)
{
    err_clear();
    if (!c || !dl)
        return err_set(STELE_ERR_INVALID, "dead letter: cursor and dead letter are required");
    int code = check_writable(c, "dead letter for");
    if (code)
        return code;
    uint64_t last;
    if ((code = log_shows(c, dl->lsn, &last)) != STELE_OK)
        return code;
    if (dl->lsn == 0 || dl->lsn > last)
        return err_set(STELE_ERR_INVALID, "dead letter for consumer %s: LSN %llu is not an acknowledged record",
                       c->name, (unsigned long long)dl->lsn);
    if (dl->key_size > STELE_KEY_SIZE_MAX || dl->reason_size > STELE_DEAD_REASON_SIZE_MAX ||
        dl->last_stderr_size > STELE_DEAD_STDERR_SIZE_MAX || (dl->key_size && !dl->key) ||
        (dl->reason_size && !dl->reason) || (dl->last_stderr_size && !dl->last_stderr))
        return err_set(STELE_ERR_INVALID, "dead letter for consumer %s: key, reason or last_stderr over its limit "
                       "(255, %u, %u bytes) or NULL with a size", c->name, STELE_DEAD_REASON_SIZE_MAX,
                       STELE_DEAD_STDERR_SIZE_MAX);
    uint8_t rec[DEAD_RECORD_SIZE_MAX];
    uint32_t size = dead_encode(c, DEAD_KIND_LETTER, dl, rec);
    return dead_append(c, rec, size);
}

int stele_dead_letter_resolve(stele_cursor *c, uint64_t lsn)
{
    err_clear();
    if (!c)
        return err_set(STELE_ERR_INVALID, "dead letter resolve: cursor is required");
    int code = check_writable(c, "resolve dead letter of");
    if (code)
        return code;
    struct dead_scan s;
    if ((code = dead_scan(c, &s)) != STELE_OK)
        return code;
    stele_dead_letter *d = dead_slot(&s, lsn);
    int live = d && !d->resolved_at_ns;
    dead_scan_free(&s);
    if (!live)
        return err_set(STELE_ERR_NOT_FOUND, "consumer %s has no unresolved dead letter at LSN %llu", c->name,
                       (unsigned long long)lsn);
    uint8_t rec[DEAD_HEADER_SIZE];
    stele_dead_letter r = {.lsn = lsn};
    uint32_t size = dead_encode(c, DEAD_KIND_RESOLVED, &r, rec);
    return dead_append(c, rec, size);
}

/* One allocation: the items, then their strings. */
int stele_dead_letter_list(stele_cursor *c, int include_resolved, stele_dead_letter **out_items, size_t *out_count)
{
    err_clear();
    if (!c || !out_items || !out_count)
        return err_set(STELE_ERR_INVALID, "dead letter list: cursor, out_items and out_count are required");
    struct dead_scan s;
    int code = dead_scan(c, &s);
    if (code)
        return code;
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i < s.count; i++)
        if (include_resolved || !s.items[i].resolved_at_ns) {
            s.items[n++] = s.items[i];
            bytes += s.items[n - 1].key_size + s.items[n - 1].reason_size + s.items[n - 1].last_stderr_size + 3;
        }
    stele_dead_letter *out = malloc(n * sizeof *out + bytes + 1);
    if (!out) {
        dead_scan_free(&s);
        return err_set(STELE_ERR_NOMEM, "out of memory listing %s", c->dead_path);
    }
    char *p = (char *)(out + n);
    for (size_t i = 0; i < n; i++) {
        out[i] = s.items[i];
        const char **f[3] = {&out[i].key, &out[i].reason, &out[i].last_stderr};
        size_t z[3] = {out[i].key_size, out[i].reason_size, out[i].last_stderr_size};
        for (int k = 0; k < 3; k++) {
            memcpy(p, *f[k], z[k]);
            p[z[k]] = '\0'; /* NUL-terminated too, for convenience */
            *f[k] = p;
            p += z[k] + 1;
        }
    }
    dead_scan_free(&s);
    *out_items = out;
    *out_count = n;
    return STELE_OK;
}

void stele_dead_letter_free(stele_dead_letter *items)
{
    free(items);
}

/* -------------------------------------------------------- open and close */

/* The handle cannot make the lock file (a directory it may not write, a
 * read-only file system): it reads, and changes are READ_ONLY, naming why. */
static int lock_unavailable(stele_cursor *c, int e, const char *op, const char *path)
{
    if (e != EACCES && e != EPERM && e != EROFS)
        return err_sys(e, op, path);
    c->lock_code = STELE_ERR_READ_ONLY;
    snprintf(c->lock_msg, sizeof c->lock_msg, "cannot be changed from this process: %s %s: %s", op, path,
             strerror(e));
    return STELE_OK;
}

/* The pid the holder wrote into the lock file, as text ("unknown" if none). */
static void lock_holder(int fd, char *dst, size_t dst_capacity)
{
    ssize_t n = pread(fd, dst, dst_capacity - 1, 0);
    dst[n > 0 ? n : 0] = '\0';
    dst[strcspn(dst, "\n")] = '\0';
    if (!*dst)
        snprintf(dst, dst_capacity, "unknown");
}

/* SPEC.md §16.1: one process changes a consumer at a time. Takes
 * flock(LOCK_EX | LOCK_NB) on NAME.lock, retrying a busy lock for up to
 * LOCK_WAIT_MS, and writes our pid there for the message another handle
 * gets. A lock held elsewhere is not an error: the handle reads. The file is
 * never deleted (deleting a lock file while another process waits on it lets
 * two holders in). mkdir and the lock file are outside the I/O seam, as the
 * writer lock is: neither holds data. */
static int lock_take(stele_cursor *c)
{
    if (mkdir(c->dir, 0755) != 0 && errno != EEXIST)
        return lock_unavailable(c, errno, "create directory", c->dir);
    int fd = posix_open(NULL, c->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return lock_unavailable(c, -fd, "open", c->lock_path);
    for (int waited_ms = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; waited_ms += LOCK_POLL_MS) {
        int e = errno;
        if (e != EWOULDBLOCK && e != EINTR) {
            close(fd);
            return err_sys(e, "lock", c->lock_path);
        }
        if (waited_ms >= LOCK_WAIT_MS) {
            char holder[32];
            lock_holder(fd, holder, sizeof holder);
            close(fd);
            c->lock_code = STELE_ERR_LOCKED;
            snprintf(c->lock_msg, sizeof c->lock_msg, "locked by another process (pid %s holds %s)", holder,
                     c->lock_path);
            return STELE_OK;
        }
        struct timespec ts = {0, LOCK_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        int code = err_sys(errno, "write pid to", c->lock_path);
        close(fd);
        return code;
    }
    c->lock_fd = fd;
    c->exclusive = 1;
    return STELE_OK;
}

static int cursor_paths(stele_cursor *c)
{
    const char *d = c->log->dir;
    int n1 = snprintf(c->dir, sizeof c->dir, "%s/" CONSUMERS_DIR, d);
    int n2 = snprintf(c->path, sizeof c->path, "%s/%s.cursor", c->dir, c->name);
    int n3 = snprintf(c->tmp, sizeof c->tmp, "%s.tmp", c->path);
    int n4 = snprintf(c->dead_path, sizeof c->dead_path, "%s/%s.dead", c->dir, c->name);
    int n5 = snprintf(c->lock_path, sizeof c->lock_path, "%s/%s.lock", c->dir, c->name);
    if (n1 < 0 || (size_t)n1 >= sizeof c->dir || n2 < 0 || (size_t)n2 >= sizeof c->path || n3 < 0 ||
        (size_t)n3 >= sizeof c->tmp || n4 < 0 || (size_t)n4 >= sizeof c->dead_path || n5 < 0 ||
        (size_t)n5 >= sizeof c->lock_path)
        return err_set(STELE_ERR_INVALID, "cursor %s: the log's path %s is too long", c->name, d);
    return STELE_OK;
}

int stele_cursor_open(stele_log *log, const char *name, stele_cursor **out_cursor)
{
    err_clear();
    if (!log || !name || !out_cursor)
        return err_set(STELE_ERR_INVALID, "cursor open: log, name and out_cursor are required");
    if (!name_valid(name))
        return err_set(STELE_ERR_INVALID, "consumer name '%.80s%s': must be 1 to %u characters of A-Z a-z 0-9 . _ - "
                       "(and not . or ..)", name, strlen(name) > 80 ? "..." : "", STELE_CURSOR_NAME_SIZE_MAX);
    stele_cursor *c = calloc(1, sizeof *c);
    if (!c)
        return err_set(STELE_ERR_NOMEM, "out of memory opening cursor %s", name);
    c->log = log;
    c->io = cursor_io(log);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->lock_fd = -1;
    c->dead_seed = stele_checksum(log->meta.log_id, STELE_LOG_ID_SIZE, STELE_SEED_DEAD);
    int code = cursor_paths(c);
    if (code == STELE_OK)
        code = lock_take(c);
    if (code == STELE_OK && c->exclusive) {
        /* A commit that crashed before its rename left this; the cursor
         * file itself is whole either way. */
        int r = c->io->ops->unlink(c->io, c->tmp);
        if (r < 0 && r != -ENOENT)
            code = err_sys(-r, "remove", c->tmp);
    }
    if (code == STELE_OK)
        code = cursor_load(c);
    if (code == STELE_OK)
        code = dead_open(c);
    if (code) {
        stele_cursor_close(c);
        return code;
    }
    struct stat st;
    c->dir_ready = stat(c->dir, &st) == 0 && S_ISDIR(st.st_mode) && c->dead_end + c->position > 0;
    *out_cursor = c;
    return STELE_OK;
}

int stele_cursor_exclusive(stele_cursor *c)
{
    err_clear();
    if (!c)
        return err_set(STELE_ERR_INVALID, "cursor exclusive: cursor is required");
    if (c->exclusive)
        return STELE_OK;
    return err_set(c->lock_code, "consumer %s: %s", c->name, c->lock_msg);
}

void stele_cursor_close(stele_cursor *c)
{
    if (!c)
        return;
    if (c->lock_fd >= 0)
        close(c->lock_fd); /* releases the flock */
    free(c);
}

/* ------------------------------------------------------------ monitoring */

static int info_order(const void *a, const void *b)
{
    return strcmp(((const stele_consumer_info *)a)->name, ((const stele_consumer_info *)b)->name);
}

/* The name of consumer file f (NAME.cursor or NAME.dead), or 0. */
static int consumer_of(const char *f, char name[STELE_CURSOR_NAME_SIZE_MAX + 1])
{
    const char *dot = strrchr(f, '.');
    if (!dot || (strcmp(dot, ".cursor") != 0 && strcmp(dot, ".dead") != 0))
        return 0;
    size_t n = (size_t)(dot - f);
    if (n == 0 || n > STELE_CURSOR_NAME_SIZE_MAX)
        return 0;
    memcpy(name, f, n);
    name[n] = '\0';
    return name_valid(name);
}

/* One consumer's position and unresolved dead letters, through a cursor
 * that never takes the lock. */
static int consumer_read(stele_log *log, stele_consumer_info *ci)
{
    stele_cursor c = {.log = log, .io = cursor_io(log), .lock_fd = -1,
                      .dead_seed = stele_checksum(log->meta.log_id, STELE_LOG_ID_SIZE, STELE_SEED_DEAD)};
    snprintf(c.name, sizeof c.name, "%s", ci->name);
    int code = cursor_paths(&c);
    if (code == STELE_OK)
        code = cursor_load(&c);
    struct dead_scan s;
    if (code == STELE_OK && (code = dead_scan(&c, &s)) == STELE_OK) {
        for (size_t i = 0; i < s.count; i++)
            ci->dead_letters += s.items[i].resolved_at_ns == 0;
        dead_scan_free(&s);
    }
    ci->position = c.position;
    return code;
}

int stele_consumers(stele_log *log, stele_consumer_info **out_items, size_t *out_count)
{
    err_clear();
    if (!log || !out_items || !out_count)
        return err_set(STELE_ERR_INVALID, "consumers: log, out_items and out_count are required");
    *out_items = NULL;
    *out_count = 0;
    char dir[4200];
    if (snprintf(dir, sizeof dir, "%s/" CONSUMERS_DIR, log->dir) >= (int)sizeof dir)
        return err_set(STELE_ERR_INVALID, "consumers: the log's path %s is too long", log->dir);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? STELE_OK : err_sys(errno, "open directory", dir);
    stele_consumer_info *v = NULL;
    size_t n = 0, cap = 0;
    int code = STELE_OK;
    errno = 0;
    for (struct dirent *e; code == STELE_OK && (e = readdir(d)); errno = 0) {
        char name[STELE_CURSOR_NAME_SIZE_MAX + 1];
        if (!consumer_of(e->d_name, name))
            continue;
        int seen = 0;
        for (size_t i = 0; i < n && !seen; i++)
            seen = strcmp(v[i].name, name) == 0;
        if (seen)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            stele_consumer_info *p = realloc(v, nc * sizeof *p);
            if (!p) {
                code = err_set(STELE_ERR_NOMEM, "out of memory listing %s", dir);
                break;
            }
            v = p;
            cap = nc;
        }
        v[n] = (stele_consumer_info){0};
        snprintf(v[n].name, sizeof v[n].name, "%s", name);
        n++;
    }
    /* readdir returns NULL at the end and on an error: a list cut short
     * must not be shown as whole. */
    if (code == STELE_OK && errno != 0)
        code = err_sys(errno, "read directory", dir);
    closedir(d);
    if (n > 1) /* v is NULL when no consumer is found */
        qsort(v, n, sizeof *v, info_order);
    for (size_t i = 0; code == STELE_OK && i < n; i++)
        code = consumer_read(log, &v[i]);
    if (code) {
        free(v);
        return code;
    }
    *out_items = v;
    *out_count = n;
    return STELE_OK;
}

void stele_consumers_free(stele_consumer_info *items)
{
    free(items);
}

/*
 * dict.c - zstd dictionaries trained from a log's own records (SPEC.md §18).
 *
 * Small JSON events barely compress one batch at a time: most of what they
 * repeat (field names, types, currencies) repeats across batches, not within
 * one. A dictionary trained on the log's records gives zstd that history.
 *
 * Files: `<id as 10 digits>.dict` in the log directory, a 64-byte header
 * (format/dict_file.h) and the dictionary. Written once and never changed or
 * deleted, so every batch that names an id stays readable. Creating one
 * is durable before any batch can name it: the file is written to
 * `<name>.tmp` and fdatasync'ed, renamed into place, and the directory is
 * fsync'ed; only then is it handed to the writer thread. A crash before the
 * rename leaves a .tmp that the next writable open deletes (SPEC.md §10).
 *
 * Readers load a dictionary on first use, check it (size bounded before
 * reading, checksum, id, log id, zstd's own structure) and cache its
 * ZSTD_DDict for the life of the handle. A batch whose dictionary is missing
 * or damaged is corruption, never a torn tail: its stored bytes passed their
 * checksum, so it was written whole (SPEC.md §18.4).
 */
#include "dict.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zdict.h>
#include <zstd.h>

#include "dict_file.h"
#include "internal.h"

#define DICT_PATH_SIZE (4096 + 32)

/* Defaults and bounds of stele_dict_options (stele.h). */
#define SAMPLE_RECORDS_DEFAULT 100000u
#define SAMPLE_RECORDS_MIN 16u
#define SAMPLE_RECORDS_MAX 10000000u
#define SAMPLE_SIZE_DEFAULT (16u * 1024u * 1024u)
#define SAMPLE_SIZE_MIN (64u * 1024u)
#define SAMPLE_SIZE_MAX (256u * 1024u * 1024u)
#define DICT_SIZE_DEFAULT 112640u /* zstd's own default: 110 KiB */

_Static_assert(SAMPLE_SIZE_MAX <= SIZE_MAX / 2, "sample sizes fit size_t");

static int dict_path(const char *dir, uint32_t id, char *dst, size_t dst_capacity)
{
    char name[STELE_DICT_NAME_SIZE];
    fmt_dict_name(id, name, sizeof name);
    int n = snprintf(dst, dst_capacity, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= dst_capacity)
        return err_set(STELE_ERR_INVALID, "log directory path too long: %s", dir);
    return STELE_OK;
}

/* Reads dictionary file id of dir and checks it (SPEC.md §18.3 D1-D8). On
 * success *out_file is the whole file (free it) and *out_dict, *out_h point
 * into it. Failures are CORRUPT naming the file, or IO, NOMEM; the message
 * is "<path>: <why>" so that callers can prefix where the id came from. */
static int dict_read(const char *dir, const uint8_t log_id[STELE_LOG_ID_SIZE], uint32_t id, uint8_t **out_file,
                     const uint8_t **out_dict, struct fmt_dict_header *out_h)
{
    char path[DICT_PATH_SIZE];
    int code = dict_path(dir, id, path, sizeof path);
    if (code)
        return code;
    int fd = posix_open(NULL, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return fd == -ENOENT ? err_set(STELE_ERR_CORRUPT, "%s: dictionary file is missing", path)
                             : err_sys(-fd, "open dictionary", path);
    struct stat st;
    uint8_t *file = NULL;
    if (fstat(fd, &st) != 0) {
        code = err_sys(errno, "stat dictionary", path);
        goto out;
    }
    /* D2: bounded before anything is allocated for it. */
    if ((uint64_t)st.st_size < STELE_DICT_HEADER_SIZE + STELE_DICT_SIZE_MIN ||
        (uint64_t)st.st_size > STELE_DICT_FILE_SIZE_MAX) {
        code = err_set(STELE_ERR_CORRUPT, "%s: dictionary file is %lld bytes, outside [%u, %u]", path,
                       (long long)st.st_size, STELE_DICT_HEADER_SIZE + STELE_DICT_SIZE_MIN,
                       STELE_DICT_FILE_SIZE_MAX);
        goto out;
    }
    size_t size = (size_t)st.st_size;
    if (!(file = malloc(size))) {
        code = err_set(STELE_ERR_NOMEM, "out of memory for dictionary %s", path);
        goto out;
    }
    ssize_t got = posix_pread(NULL, fd, file, size, 0);
    if (got < 0 || (size_t)got != size) {
        code = got < 0 ? err_sys((int)-got, "read dictionary", path)
                       : err_set(STELE_ERR_CORRUPT, "%s: dictionary file shrank while read", path);
        goto out;
    }
    enum fmt_status fs = fmt_dict_decode(file, size, out_h, out_dict);
    if (fs == FMT_BAD_VERSION)
        code = err_set(STELE_ERR_FORMAT, "%s: dictionary format version %u is not supported", path, file[16]);
    else if (fs != FMT_OK)
        code = err_set(STELE_ERR_CORRUPT, "%s offset 0: dictionary file %s", path, fmt_status_str(fs));
    else if (out_h->dict_id != id)
        code = err_set(STELE_ERR_CORRUPT, "%s offset 20: dictionary id %u does not match its name", path,
                       out_h->dict_id);
    else if (memcmp(out_h->log_id, log_id, STELE_LOG_ID_SIZE) != 0)
        code = err_set(STELE_ERR_CORRUPT, "%s offset 32: dictionary belongs to another log (log id differs)", path);
    else if (ZSTD_getDictID_fromDict(*out_dict, out_h->dict_size) == 0)
        code = err_set(STELE_ERR_CORRUPT, "%s offset %u: not a zstd dictionary", path, STELE_DICT_HEADER_SIZE);
out:
    close(fd);
    if (code) {
        free(file);
        return code;
    }
    *out_file = file;
    return STELE_OK;
}

/* ---------------------------------------------------------------- cache */

struct dict_entry {
    uint32_t id;
    ZSTD_DDict *ddict;
};

struct dict_cache {
    pthread_mutex_t lock;
    char *dir;
    uint8_t log_id[STELE_LOG_ID_SIZE];
    struct dict_entry *e;
    size_t count;
    size_t cap;
};

struct dict_cache *dict_cache_new(const char *dir, const uint8_t log_id[STELE_LOG_ID_SIZE])
{
    struct dict_cache *c = calloc(1, sizeof *c);
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        return NULL;
    }
    memcpy(c->log_id, log_id, STELE_LOG_ID_SIZE);
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void dict_cache_free(struct dict_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->count; i++)
        ZSTD_freeDDict(c->e[i].ddict);
    free(c->e);
    free(c->dir);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static ZSTD_DDict *cache_find(struct dict_cache *c, uint32_t id)
{
    for (size_t i = 0; i < c->count; i++)
        if (c->e[i].id == id)
            return c->e[i].ddict;
    return NULL;
}

/* The DDict for id; loaded under the lock, so two readers never load the
 * same file twice. Errors as dict_read. */
static int cache_get(struct dict_cache *c, uint32_t id, const ZSTD_DDict **out)
{
    pthread_mutex_lock(&c->lock);
    ZSTD_DDict *d = cache_find(c, id);
    int code = STELE_OK;
    if (!d) {
        uint8_t *file = NULL;
        const uint8_t *dict;
        struct fmt_dict_header h;
        code = dict_read(c->dir, c->log_id, id, &file, &dict, &h);
        if (code == STELE_OK && c->count == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 8;
            struct dict_entry *p = realloc(c->e, cap * sizeof *p);
            if (!p)
                code = err_set(STELE_ERR_NOMEM, "out of memory caching dictionary %u", id);
            else {
                c->e = p;
                c->cap = cap;
            }
        }
        if (code == STELE_OK && !(d = ZSTD_createDDict(dict, h.dict_size)))
            code = err_set(STELE_ERR_CORRUPT, "%s/%010u.dict offset %u: zstd rejects the dictionary", c->dir, id,
                           STELE_DICT_HEADER_SIZE);
        if (code == STELE_OK)
            c->e[c->count++] = (struct dict_entry){id, d};
        free(file);
    }
    pthread_mutex_unlock(&c->lock);
    if (code == STELE_OK)
        *out = d;
    return code;
}

int dict_body_decompress(struct batch_buf *b, const uint8_t *stored, const char *path, uint64_t offset)
{
    const struct fmt_batch_header *h = &b->header;
    const ZSTD_DDict *ddict = NULL;
    int code = b->dicts ? cache_get(b->dicts, h->dict_id, &ddict)
                        : err_set(STELE_ERR_CORRUPT, "no dictionary directory known");
    if (code) {
        char why[512]; /* the message is rewritten below: keep what it said */
        snprintf(why, sizeof why, "%s", stele_errmsg());
        b->dict_error = code == STELE_ERR_CORRUPT || code == STELE_ERR_FORMAT;
        return err_set(code, "%s offset %llu: batch at LSN %llu names dictionary %u: %s", path,
                       (unsigned long long)offset, (unsigned long long)h->first_lsn, h->dict_id, why);
    }
    if (!b->dctx && !(b->dctx = ZSTD_createDCtx()))
        return err_set(STELE_ERR_NOMEM, "out of memory for a zstd decompression context");
    /* RELIABILITY S24: the output is bounded by raw_size (itself at most
     * STELE_BATCH_BODY_SIZE_MAX), and the caller checked the stored bytes'
     * checksum and the frame's declared size before we got here. */
    size_t n = ZSTD_decompress_usingDDict(b->dctx, b->raw, h->raw_size, stored, h->stored_size, ddict);
    if (ZSTD_isError(n) || n != h->raw_size)
        return err_set(STELE_ERR_CORRUPT,
                       "%s offset %llu: zstd body does not decompress to %u bytes with dictionary %u (%s)", path,
                       (unsigned long long)offset, h->raw_size, h->dict_id,
                       ZSTD_isError(n) ? ZSTD_getErrorName(n) : "size mismatch");
    b->body = b->raw;
    return STELE_OK;
}

int dict_scan(const char *dir, uint32_t *out_newest, uint32_t *out_count)
{
    DIR *d = opendir(dir);
    if (!d)
        return err_sys(errno, "open directory", dir);
    uint32_t newest = 0, count = 0, id;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!fmt_dict_name_parse(e->d_name, &id))
            continue;
        count++;
        if (id > newest)
            newest = id;
    }
    closedir(d);
    *out_newest = newest;
    *out_count = count;
    return STELE_OK;
}

/* Calls fn for every dictionary file of dir that fails a check (verify). */
int dict_check_all(const char *dir, const uint8_t log_id[STELE_LOG_ID_SIZE],
                   void (*fn)(void *ctx, const char *path, const char *what), void *ctx)
{
    DIR *d = opendir(dir);
    if (!d)
        return err_sys(errno, "open directory", dir);
    struct dirent *e;
    uint32_t id;
    while ((e = readdir(d)) != NULL) {
        if (!fmt_dict_name_parse(e->d_name, &id))
            continue;
        uint8_t *file = NULL;
        const uint8_t *dict;
        struct fmt_dict_header h;
        char path[DICT_PATH_SIZE];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int code = dict_read(dir, log_id, id, &file, &dict, &h);
        ZSTD_DDict *dd = code == STELE_OK ? ZSTD_createDDict(dict, h.dict_size) : NULL;
        if (code != STELE_OK)
            fn(ctx, path, stele_errmsg());
        else if (!dd)
            fn(ctx, path, "zstd rejects the dictionary");
        ZSTD_freeDDict(dd);
        free(file);
    }
    closedir(d);
    err_clear();
    return STELE_OK;
}

/* --------------------------------------------------------------- writer */

/* The compression dictionary for file id at the handle's level. */
static int cdict_load(stele_log *log, uint32_t id, ZSTD_CDict **out)
{
    uint8_t *file = NULL;
    const uint8_t *dict;
    struct fmt_dict_header h;
    int code = dict_read(log->dir, log->meta.log_id, id, &file, &dict, &h);
    if (code)
        return code;
    ZSTD_CDict *cd = ZSTD_createCDict(dict, h.dict_size, log->compression_level);
    free(file);
    if (!cd)
        return err_set(STELE_ERR_NOMEM, "out of memory for zstd dictionary %u of %s", id, log->dir);
    *out = cd;
    return STELE_OK;
}

int dict_writer_open(stele_log *log)
{
    if (log->meta.compression != FMT_COMPRESSION_ZSTD)
        return STELE_OK;
    uint32_t newest = 0, count = 0;
    int code = dict_scan(log->dir, &newest, &count);
    if (code || newest == 0)
        return code;
    ZSTD_CDict *cd = NULL;
    if ((code = cdict_load(log, newest, &cd)) != STELE_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", stele_errmsg());
        return err_set(code, "the newest dictionary, which later batches would use: %s", why);
    }
    log->cdict = cd;
    log->cdict_id = newest;
    __atomic_store_n(&log->dict_in_use, newest, __ATOMIC_RELAXED);
    return STELE_OK;
}

const void *dict_writer_current(stele_log *log, uint32_t *out_id)
{
    if (__atomic_load_n(&log->cdict_pending, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&log->dict_lock);
        ZSTD_freeCDict(log->cdict);
        log->cdict = log->cdict_next;
        log->cdict_id = log->cdict_next_id;
        log->cdict_next = NULL;
        __atomic_store_n(&log->cdict_pending, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&log->dict_in_use, log->cdict_id, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&log->dict_lock);
    }
    *out_id = log->cdict_id;
    return log->cdict;
}

void dict_writer_close(stele_log *log)
{
    ZSTD_freeCDict(log->cdict);
    ZSTD_freeCDict(log->cdict_next);
    log->cdict = log->cdict_next = NULL;
    log->cdict_id = 0;
    log->cdict_pending = 0;
}

/* ------------------------------------------------------------- training */

void stele_dict_options_init(stele_dict_options *o)
{
    memset(o, 0, sizeof *o);
    o->sample_records = SAMPLE_RECORDS_DEFAULT;
    o->sample_size_max = SAMPLE_SIZE_DEFAULT;
    o->dict_size_max = DICT_SIZE_DEFAULT;
}

static int check_dict_options(const stele_dict_options *o)
{
    if (o->sample_records < SAMPLE_RECORDS_MIN || o->sample_records > SAMPLE_RECORDS_MAX)
        return err_set(STELE_ERR_INVALID, "option sample_records: %llu is outside [%u, %u]",
                       (unsigned long long)o->sample_records, SAMPLE_RECORDS_MIN, SAMPLE_RECORDS_MAX);
    if (o->sample_size_max < SAMPLE_SIZE_MIN || o->sample_size_max > SAMPLE_SIZE_MAX)
        return err_set(STELE_ERR_INVALID, "option sample_size_max: %llu is outside [%u, %u]",
                       (unsigned long long)o->sample_size_max, SAMPLE_SIZE_MIN, SAMPLE_SIZE_MAX);
    if (o->dict_size_max < STELE_DICT_SIZE_MIN || o->dict_size_max > STELE_DICT_SIZE_MAX)
        return err_set(STELE_ERR_INVALID, "option dict_size_max: %u is outside [%u, %u]", o->dict_size_max,
                       STELE_DICT_SIZE_MIN, STELE_DICT_SIZE_MAX);
    return STELE_OK;
}

struct sample {
    uint8_t *buf;
    size_t size;
    size_t cap;
    size_t *sizes;
    size_t count;
    size_t sizes_cap;
    uint64_t last_lsn;
};

static int grow_to(void **p, size_t *cap, size_t need, size_t elem, size_t limit)
{
    if (need <= *cap)
        return STELE_OK;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    if (c > limit)
        c = limit;
    void *q = realloc(*p, c * elem);
    if (!q)
        return err_set(STELE_ERR_NOMEM, "out of memory for a training sample of %zu bytes", c * elem);
    *p = q;
    *cap = c;
    return STELE_OK;
}

/* Appends one record, as encoded in a batch body (SPEC.md §5: the 64-byte
 * header, then type, stream, key, actor and payload, contiguous), as one
 * sample: what the compressor sees, headers included, since their constant
 * bytes (sizes, kinds, the high bytes of times) repeat too. Sets *out_full
 * instead when it would take the sample past cap bytes. */
static int sample_add(struct sample *s, const struct fmt_record *r, uint64_t lsn, size_t cap, int *out_full)
{
    size_t n = STELE_RECORD_HEADER_SIZE + (size_t)r->type_size + r->stream_size + r->key_size + r->actor_size +
               r->payload_size;
    if (s->size + n > cap) {
        *out_full = 1;
        return STELE_OK;
    }
    int code = grow_to((void **)&s->buf, &s->cap, s->size + n, 1, cap);
    if (code == STELE_OK)
        code = grow_to((void **)&s->sizes, &s->sizes_cap, s->count + 1, sizeof *s->sizes, SIZE_MAX / sizeof(size_t));
    if (code)
        return code;
    /* fmt_record_decode points type at the byte after the header, and the
     * variable fields follow one another (stele_get copies them as one). */
    memcpy(s->buf + s->size, r->type - STELE_RECORD_HEADER_SIZE, n);
    s->sizes[s->count++] = n;
    s->size += n;
    s->last_lsn = lsn;
    return STELE_OK;
}

struct sample_scan {
    struct sample *s;
    uint64_t last;
    size_t cap;
    int full;
};

#define SCAN_DONE (-1) /* not a stele_code: ends log_scan early */

static int sample_one(void *ctx, uint64_t lsn, const struct fmt_record *rec)
{
    struct sample_scan *sc = ctx;
    if (lsn > sc->last)
        return SCAN_DONE;
    int code = sample_add(sc->s, rec, lsn, sc->cap, &sc->full);
    return code ? code : sc->full ? SCAN_DONE : STELE_OK;
}

/* The sample (SPEC.md §18.2): the newest sample_records acknowledged
 * records, oldest first, until sample_size_max bytes. */
static int sample_collect(stele_log *log, const stele_dict_options *o, struct sample *s)
{
    /* Acknowledged, not only written: in none mode the records acknowledged
     * but not yet written are written first, for the scan to read them. */
    uint64_t last = log_acked_lsn(log);
    if (last == 0)
        return err_set(STELE_ERR_INVALID, "train a dictionary for %s: the log holds no records", log->dir);
    int code = log_catch_up(log, last);
    if (code)
        return code;
    uint64_t from = last > o->sample_records ? last - o->sample_records + 1 : 1;
    struct sample_scan sc = {.s = s, .last = last, .cap = (size_t)o->sample_size_max};
    code = log_scan(log, from, sample_one, &sc);
    return code == SCAN_DONE ? STELE_OK : code;
}

/* Writes the file durably (module comment) through the log's I/O seam. */
static int dict_write(stele_log *log, uint32_t id, const uint8_t *file, size_t size)
{
    struct io *io = log->aux_io ? log->aux_io : log->io;
    char path[DICT_PATH_SIZE], tmp[DICT_PATH_SIZE + 4];
    int code = dict_path(log->dir, id, path, sizeof path);
    if (code)
        return code;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    (void)io->ops->unlink(io, tmp); /* a stray one from a failed attempt; ENOENT is fine */
    int fd = io->ops->open(io, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0)
        return err_sys(-fd, "create dictionary", tmp);
    int r = io->ops->write(io, fd, file, size, 0, 1);
    io->ops->close(io, fd);
    if (r < 0) {
        code = err_sys(-r, "write and sync dictionary", tmp);
        goto fail;
    }
    if ((r = io->ops->rename(io, tmp, path)) < 0) {
        code = err_sys(-r, "rename dictionary into place:", tmp);
        goto fail;
    }
    /* After the rename only the directory sync is missing: on failure the
     * file stays (it is complete and checked like any other) but is not
     * handed to the writer, so no batch names a dictionary whose entry may
     * not survive a crash. */
    if ((r = io->ops->sync_dir(io, log->dir)) < 0)
        return err_sys(-r, "sync directory after creating dictionary", log->dir);
    return STELE_OK;
fail:
    (void)io->ops->unlink(io, tmp);
    return code;
}

/* Trains on s, writes dictionary file id; fills out. */
static int train_and_store(stele_log *log, const stele_dict_options *o, struct sample *s, uint32_t id,
                           stele_dict_info *out)
{
    uint8_t *file = malloc(STELE_DICT_HEADER_SIZE + (size_t)o->dict_size_max);
    if (!file)
        return err_set(STELE_ERR_NOMEM, "out of memory for a %u-byte dictionary", o->dict_size_max);
    size_t n = ZDICT_trainFromBuffer(file + STELE_DICT_HEADER_SIZE, o->dict_size_max, s->buf, s->sizes,
                                     (unsigned)s->count);
    int code = STELE_OK;
    if (ZDICT_isError(n) || n < STELE_DICT_SIZE_MIN) {
        code = err_set(STELE_ERR_INVALID,
                       "train a dictionary for %s from %zu records (%zu bytes): %s; zstd needs more (or more "
                       "varied) records",
                       log->dir, s->count, s->size, ZDICT_isError(n) ? ZDICT_getErrorName(n) : "dictionary too small");
        goto out;
    }
    struct fmt_dict_header h = {.dict_id = id, .dict_size = (uint32_t)n, .created_at_ns = now_ns(),
                                .trained_through_lsn = s->last_lsn};
    memcpy(h.log_id, log->meta.log_id, STELE_LOG_ID_SIZE);
    size_t size = fmt_dict_encode(&h, file + STELE_DICT_HEADER_SIZE, file, STELE_DICT_HEADER_SIZE + n);
    if ((code = dict_write(log, id, file, size)) != STELE_OK)
        goto out;
    *out = (stele_dict_info){.dict_id = id, .dict_size = (uint32_t)n, .created_at_ns = h.created_at_ns,
                             .trained_through_lsn = s->last_lsn, .sample_records = s->count,
                             .sample_size = s->size};
out:
    free(file);
    return code;
}

/* Hands dictionary id to the writer thread: batches it assembles from now on use it. */
static int writer_adopt(stele_log *log, uint32_t id)
{
    if (log->meta.compression != FMT_COMPRESSION_ZSTD)
        return STELE_OK;
    ZSTD_CDict *cd = NULL;
    int code = cdict_load(log, id, &cd);
    if (code)
        return code;
    pthread_mutex_lock(&log->dict_lock);
    ZSTD_freeCDict(log->cdict_next);
    log->cdict_next = cd;
    log->cdict_next_id = id;
    __atomic_store_n(&log->cdict_pending, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&log->dict_lock);
    return STELE_OK;
}

int stele_dict_train(stele_log *log, const stele_dict_options *opts, stele_dict_info *out)
{
    err_clear();
    stele_dict_options defaults;
    if (!opts) {
        stele_dict_options_init(&defaults);
        opts = &defaults;
    }
    if (!log)
        return err_set(STELE_ERR_INVALID, "dict train: log is required");
    if (log->opts.read_only)
        return err_set(STELE_ERR_READ_ONLY, "dict train: %s is open read-only", log->dir);
    int code = check_dict_options(opts);
    if (code)
        return code;
    struct sample s = {0};
    stele_dict_info info = {0};
    uint32_t newest = 0, count = 0;
    /* One training at a time: the id is the newest file's plus one, and this
     * process, holding the writer lock, is the only one that makes files. */
    pthread_mutex_lock(&log->dict_train_lock);
    if ((code = sample_collect(log, opts, &s)) != STELE_OK)
        goto out;
    if ((code = dict_scan(log->dir, &newest, &count)) != STELE_OK)
        goto out;
    if (newest == STELE_DICT_ID_MAX) {
        code = err_set(STELE_ERR_TOO_LARGE, "%s holds dictionary %u, the last id there is", log->dir, newest);
        goto out;
    }
    if ((code = train_and_store(log, opts, &s, newest + 1, &info)) != STELE_OK)
        goto out;
    if ((code = writer_adopt(log, info.dict_id)) != STELE_OK)
        goto out;
    if (out)
        *out = info;
out:
    pthread_mutex_unlock(&log->dict_train_lock);
    free(s.buf);
    free(s.sizes);
    return code;
}

/* ------------------------------------------------- automatic training */

static void *auto_train_main(void *arg)
{
    stele_log *log = arg;
    pthread_setname_np(pthread_self(), "stele-dict");
    int code = stele_dict_train(log, NULL, NULL);
    pthread_mutex_lock(&log->dict_lock);
    log->auto_train_code = code;
    snprintf(log->auto_train_note, sizeof log->auto_train_note, "%s", code ? stele_errmsg() : "");
    pthread_mutex_unlock(&log->dict_lock);
    return NULL;
}

void dict_auto_train_check_locked(stele_log *log)
{
    /* Once per open, and only for a zstd log that has no dictionary: the
     * writer found none at open (cdict_id) and none was handed to it. */
    if (!log->opts.dict_train_records || log->auto_train_started || log->meta.compression != FMT_COMPRESSION_ZSTD ||
        log->visible_lsn < log->opts.dict_train_records)
        return;
    log->auto_train_started = 1;
    if (log->cdict_id != 0 || __atomic_load_n(&log->cdict_pending, __ATOMIC_ACQUIRE))
        return;
    int r = pthread_create(&log->auto_train_thread, NULL, auto_train_main, log);
    if (r == 0) {
        log->auto_train_joinable = 1;
        return;
    }
    pthread_mutex_lock(&log->dict_lock);
    log->auto_train_code = STELE_ERR_IO;
    snprintf(log->auto_train_note, sizeof log->auto_train_note, "start a training thread: %s", strerror(r));
    pthread_mutex_unlock(&log->dict_lock);
}

void dict_auto_train_join(stele_log *log)
{
    /* The flag is the writer thread's; joinable once set stays so until here. */
    pthread_mutex_lock(&log->q_lock);
    int joinable = log->auto_train_joinable;
    log->auto_train_joinable = 0;
    pthread_mutex_unlock(&log->q_lock);
    if (joinable)
        pthread_join(log->auto_train_thread, NULL);
}

/* ---------------------------------------------------------------- stats */

void dict_stats(stele_log *log, stele_stats *out)
{
    uint32_t newest = 0, count = 0;
    if (dict_scan(log->dir, &newest, &count) != STELE_OK)
        err_clear(); /* the directory vanished under us: report none */
    out->dict_newest = newest;
    out->dict_count = count;
    out->dict_in_use = __atomic_load_n(&log->dict_in_use, __ATOMIC_RELAXED);
    out->compression_level = log->compression_level;
    pthread_mutex_lock(&log->dict_lock);
    out->dict_auto_train_code = log->auto_train_code;
    snprintf(out->dict_note, sizeof out->dict_note, "%s", log->auto_train_note);
    pthread_mutex_unlock(&log->dict_lock);
}

/* Adds the batch headers of seg up to data_end to out. */
static int report_segment(stele_log *log, struct segment *seg, uint64_t data_end, stele_compression_report *out)
{
    int fd;
    int code = segment_fd_acquire(log, seg, &fd);
    if (code)
        return code;
    uint8_t hb[STELE_BATCH_HEADER_SIZE];
    for (uint64_t off = STELE_SEGMENT_HEADER_SIZE; off < data_end && code == STELE_OK;) {
        int r = io_read_full(log->io, fd, hb, sizeof hb, off);
        struct fmt_batch_header h;
        uint64_t chain;
        enum fmt_status st = r < 0 ? FMT_OK : fmt_batch_header_decode(hb, sizeof hb, seg->seed, &h, &chain);
        if (r < 0)
            code = err_set(err_code_from_errno(-r), "read batch header at %s offset %llu: %s", seg->path,
                           (unsigned long long)off, r == -ENODATA ? "file ends early" : strerror(-r));
        else if (st != FMT_OK)
            code = err_set(STELE_ERR_CORRUPT, "%s offset %llu: batch header %s", seg->path,
                           (unsigned long long)off, fmt_status_str(st));
        if (code)
            break;
        out->batches++;
        out->batches_zstd += h.compression == FMT_COMPRESSION_ZSTD;
        out->batches_dict += h.dict_id != 0;
        out->raw_size += h.raw_size;
        out->stored_size += h.stored_size;
        out->frame_size += fmt_batch_frame_size(h.stored_size);
        if (h.dict_id > out->dict_id_max)
            out->dict_id_max = h.dict_id;
        off += fmt_batch_frame_size(h.stored_size);
    }
    segment_fd_release(log, seg);
    return code;
}

int stele_compression_get(stele_log *log, stele_compression_report *out)
{
    err_clear();
    if (!log || !out)
        return err_set(STELE_ERR_INVALID, "compression report: log and out are required");
    int code = log->opts.read_only ? log_refresh(log) : STELE_OK;
    if (code)
        return code;
    stele_compression_report rep = {0};
    /* Segments are never removed from an open log: a snapshot of the table
     * stays valid without the lock. */
    pthread_rwlock_rdlock(&log->seg_lock);
    size_t n = log->seg_count;
    struct segment **segs = malloc((n ? n : 1) * sizeof *segs);
    uint64_t *ends = malloc((n ? n : 1) * sizeof *ends);
    for (size_t i = 0; segs && ends && i < n; i++) {
        segs[i] = log->segs[i];
        ends[i] = __atomic_load_n(&log->segs[i]->data_end, __ATOMIC_RELAXED);
    }
    pthread_rwlock_unlock(&log->seg_lock);
    if (!segs || !ends)
        code = err_set(STELE_ERR_NOMEM, "out of memory");
    for (size_t i = 0; code == STELE_OK && i < n; i++)
        code = report_segment(log, segs[i], ends[i], &rep);
    free(segs);
    free(ends);
    if (code == STELE_OK)
        *out = rep;
    return code;
}

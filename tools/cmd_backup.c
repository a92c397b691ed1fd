/*
 * cmd_backup.c - `stele backup DIR DEST`: an online, consistent, verified
 * copy of a log while a writer may be appending to it (PRODUCT.md, "Command
 * line"; RELIABILITY S31; SPEC.md §17.2, which states the protocol).
 *
 * We never take the writer lock and never write to DIR. The copy is a prefix
 * of the log: every record the writer had acknowledged before the backup
 * listed the segments, and nothing the writer might still lose.
 *
 *  1. DEST must not exist (it is created) or be an empty directory.
 *  2. Open DIR read-only (it must be a log) and copy stele.meta.
 *  3. List the segment files once. Every one but the last is sealed (the
 *     writer seals a segment before it creates the next, SPEC.md §7.3) and
 *     immutable: copy it whole; the copy must inspect as sealed.
 *  4. The last one may be active. Walk it in DIR (stele_segment_inspect):
 *     its valid batches end at V. Then fdatasync the file through our own
 *     read-only descriptor: every batch that was complete at V is now on
 *     stable storage, so the writer can no longer lose it to a crash (a
 *     batch written but not yet synced, and so not yet acknowledged, could
 *     otherwise be in the copy and later vanish from the log, its LSNs then
 *     reused for other records). Copy bytes [0, V) only - or, if the walk
 *     found the segment sealed, the whole file - and inspect the copy: it
 *     must hold exactly the batches up to V. Extend an unsealed copy to the
 *     segment's capacity with zeros (fallocate, so the copy's own writer
 *     has its space reserved, as SPEC.md §7.2 wants), which is how an
 *     active segment ends.
 *  5. Copy the dictionary files (SPEC.md §18) that appeared since step 2,
 *     where the ones there then were copied (the inspections of step 4
 *     decompress with them; a batch of the active segment naming one
 *     trained during the copy stops that inspection, and the backup fails
 *     loudly rather than copy short). fsync every file, then DEST itself (and its parent when we created
 *     it), so the copy survives a crash once we report success.
 *  6. Verify DEST with stele_verify (every byte, as `stele verify` does)
 *     and open it read-only: the copy is a valid log, or the backup fails
 *     with exit 5 and leaves DEST for inspection.
 *
 * The index checkpoint is not copied: it is derived from the log, and the
 * copy's first open rebuilds its index from the segments (a checkpoint of
 * the source may cover records after the copy's end). Records appended
 * after step 3 are not in the copy. Sealed copies get mode 0444, as sealed
 * segments have; the active copy 0644.
 *
 * Output: {"dest","segments","bytes","last_lsn","records","verified":true}.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

#define SEGMENT_NAME_DIGITS 20
#define SEGMENT_NAME_SIZE 25
#define COPY_CHUNK_SIZE (1u << 20)
#define PATH_SIZE (4096 + 64)

struct backup {
    const struct cli_ctx *ctx;
    const char *dir, *dest;
    char *buf;               /* COPY_CHUNK_SIZE */
    uint64_t segments, bytes;
};

static const struct option backup_options[] = {
    CLI_COMMON_OPTIONS,
};

static int sys_fail(const struct backup *b, const char *op, const char *path)
{
    return cli_error(b->ctx, CLI_EXIT_FAILURE, "%s %s: %s", op, path, strerror(errno));
}

/* Copies [0, size) of src to a new file dst (mode 0644), fsyncs it and
 * leaves it open in *out_fd. size UINT64_MAX = the whole file. */
static int copy_file(struct backup *b, const char *src, const char *dst, uint64_t size, int *out_fd)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return sys_fail(b, "opening", src);
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        int rc = sys_fail(b, "creating", dst);
        close(in);
        return rc;
    }
    uint64_t done = 0;
    int rc = 0;
    while (done < size) {
        size_t want = size - done < COPY_CHUNK_SIZE ? (size_t)(size - done) : COPY_CHUNK_SIZE;
        ssize_t got = pread(in, b->buf, want, (off_t)done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = sys_fail(b, "reading", src);
            break;
        }
        if (got == 0) {
            if (size != UINT64_MAX)
                rc = cli_error(b->ctx, CLI_EXIT_FAILURE, "reading %s: the file ends at %" PRIu64 ", before %" PRIu64,
                               src, done, size);
            break;
        }
        for (ssize_t put = 0; put < got && rc == 0;) {
            ssize_t n = pwrite(out, b->buf + put, (size_t)(got - put), (off_t)(done + (uint64_t)put));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) /* zero progress is an error too (STYLE.md) */
                rc = n < 0 ? sys_fail(b, "writing", dst) : cli_error(b->ctx, 1, "writing %s: no progress", dst);
            else
                put += n;
        }
        if (rc != 0)
            break;
        done += (uint64_t)got;
    }
    close(in);
    b->bytes += done;
    if (rc == 0 && fsync(out) != 0)
        rc = sys_fail(b, "fsync", dst);
    if (rc != 0) {
        close(out);
        return rc;
    }
    *out_fd = out;
    return 0;
}

/* Inspects the copy at path; 0 with *out filled, or the exit code. */
static int inspect(const struct backup *b, const char *path, stele_segment_info *out)
{
    int code = stele_segment_inspect(path, NULL, NULL, out);
    return code == STELE_OK ? 0 : cli_fail(b->ctx, code, "checking %s", path);
}

/* Step 3: a segment that another follows. */
static int copy_sealed(struct backup *b, const char *name)
{
    char src[PATH_SIZE], dst[PATH_SIZE];
    stele_segment_info info;
    int fd, rc;
    snprintf(src, sizeof src, "%s/%s", b->dir, name);
    snprintf(dst, sizeof dst, "%s/%s", b->dest, name);
    if ((rc = copy_file(b, src, dst, UINT64_MAX, &fd)) != 0)
        return rc;
    if ((rc = inspect(b, dst, &info)) == 0 && !info.sealed)
        rc = cli_error(b->ctx, CLI_EXIT_CORRUPT, "%s is not sealed, but another segment follows it", src);
    if (rc == 0 && (fchmod(fd, 0444) != 0 || fsync(fd) != 0))
        rc = sys_fail(b, "making read-only", dst);
    close(fd);
    return rc;
}

/* Step 4: the last segment, up to what the writer can no longer lose. */
static int copy_last(struct backup *b, const char *name)
{
    char src[PATH_SIZE], dst[PATH_SIZE];
    stele_segment_info at_src, copy;
    int fd, rc;
    snprintf(src, sizeof src, "%s/%s", b->dir, name);
    snprintf(dst, sizeof dst, "%s/%s", b->dest, name);
    if ((rc = inspect(b, src, &at_src)) != 0)
        return rc;
    int sfd = open(src, O_RDONLY | O_CLOEXEC);
    if (sfd < 0)
        return sys_fail(b, "opening", src);
    rc = fdatasync(sfd) != 0 ? sys_fail(b, "fdatasync", src) : 0;
    close(sfd);
    if (rc != 0 || (rc = copy_file(b, src, dst, at_src.sealed ? UINT64_MAX : at_src.data_end, &fd)) != 0)
        return rc;
    if ((rc = inspect(b, dst, &copy)) != 0)
        goto out;
    if (copy.sealed) {
        if (fchmod(fd, 0444) != 0 || fsync(fd) != 0)
            rc = sys_fail(b, "making read-only", dst);
        goto out;
    }
    if (copy.data_end != at_src.data_end || copy.last_lsn != at_src.last_lsn) {
        rc = cli_error(b->ctx, CLI_EXIT_CORRUPT, "%s: the copy's batches end at offset %" PRIu64 " (LSN %" PRIu64
                       "), the source's at %" PRIu64 " (LSN %" PRIu64 "): bytes changed under the copy",
                       src, copy.data_end, copy.last_lsn, at_src.data_end, at_src.last_lsn);
        goto out;
    }
    /* Zeros after the last batch, up to the capacity, with the space
     * reserved; ftruncate where the file system cannot fallocate. */
    int e = posix_fallocate(fd, 0, (off_t)copy.segment_size);
    if (e == EOPNOTSUPP || e == EINVAL)
        e = ftruncate(fd, (off_t)copy.segment_size) == 0 ? 0 : errno;
    if (e != 0) {
        errno = e;
        rc = sys_fail(b, "extending", dst);
    } else if (fsync(fd) != 0) {
        rc = sys_fail(b, "fsync", dst);
    }
out:
    close(fd);
    return rc;
}

static int sync_dir(const struct backup *b, const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return sys_fail(b, "opening directory", path);
    int rc = fsync(fd) != 0 ? sys_fail(b, "fsync directory", path) : 0;
    close(fd);
    return rc;
}

static int is_segment_name(const char *name)
{
    if (strlen(name) != SEGMENT_NAME_SIZE - 1 || strcmp(name + SEGMENT_NAME_DIGITS, ".seg") != 0)
        return 0;
    return strspn(name, "0123456789") == SEGMENT_NAME_DIGITS;
}

static int cmp_names(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Step 3's listing: the segment names of dir in LSN order. */
static int list_segments(const struct backup *b, char ***out, size_t *out_count)
{
    DIR *d = opendir(b->dir);
    if (!d)
        return sys_fail(b, "opening directory", b->dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!is_segment_name(e->d_name))
            continue;
        if (n == cap) {
            char **p = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *p);
            if (!p) {
                rc = cli_error(b->ctx, CLI_EXIT_FAILURE, "out of memory");
                break;
            }
            names = p;
        }
        if ((names[n] = strdup(e->d_name)) == NULL)
            rc = cli_error(b->ctx, CLI_EXIT_FAILURE, "out of memory");
        else
            n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_names);
    *out = names;
    *out_count = n;
    return rc;
}

/* "<10 digits>.dict": a zstd dictionary file (SPEC.md §18). */
static int is_dict_name(const char *name)
{
    return strlen(name) == 15 && strcmp(name + 10, ".dict") == 0 && strspn(name, "0123456789") == 10;
}

/* Steps 2 and 5: the dictionary files not copied yet. They never change
 * once in the directory. Before the segments, so that the inspection of the
 * copies can decompress; after them again, for one trained meanwhile. */
static int copy_dicts(struct backup *b)
{
    DIR *d = opendir(b->dir);
    if (!d)
        return sys_fail(b, "opening directory", b->dir);
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!is_dict_name(e->d_name))
            continue;
        char src[PATH_SIZE], dst[PATH_SIZE];
        int fd;
        snprintf(src, sizeof src, "%s/%s", b->dir, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", b->dest, e->d_name);
        if (access(dst, F_OK) == 0)
            continue;
        if ((rc = copy_file(b, src, dst, UINT64_MAX, &fd)) != 0)
            break;
        if (fchmod(fd, 0444) != 0)
            rc = sys_fail(b, "making read-only", dst);
        close(fd);
    }
    closedir(d);
    return rc;
}

/* Step 1: DEST is created, or an existing empty directory. *out_created
 * says which (the parent directory is synced then too). */
static int prepare_dest(const struct backup *b, int *out_created)
{
    *out_created = 0;
    if (mkdir(b->dest, 0755) == 0) {
        *out_created = 1;
        return 0;
    }
    if (errno != EEXIST)
        return sys_fail(b, "creating directory", b->dest);
    DIR *d = opendir(b->dest);
    if (!d)
        return errno == ENOTDIR ? cli_usage_error(b->ctx, "DEST %s exists and is not a directory", b->dest)
                                : sys_fail(b, "opening directory", b->dest);
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)) != NULL)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty ? 0 : cli_usage_error(b->ctx, "DEST %s is not empty: a backup goes into a new or empty directory",
                                       b->dest);
}

static int copy_meta(struct backup *b)
{
    char src[PATH_SIZE], dst[PATH_SIZE];
    int fd, rc;
    snprintf(src, sizeof src, "%s/stele.meta", b->dir);
    snprintf(dst, sizeof dst, "%s/stele.meta", b->dest);
    if ((rc = copy_file(b, src, dst, UINT64_MAX, &fd)) == 0)
        close(fd);
    return rc;
}

/* Step 6, and the summary. */
static int verify_copy(struct backup *b)
{
    stele_verify_report rep;
    int code = stele_verify(b->dest, NULL, NULL, &rep);
    if (code != STELE_OK)
        return cli_fail(b->ctx, code, "verifying the copy %s (left there for inspection)", b->dest);
    stele_options opts;
    stele_log *log = NULL;
    stele_stats st;
    stele_options_init(&opts);
    opts.read_only = 1;
    if ((code = stele_open(b->dest, &opts, &log)) == STELE_OK)
        code = stele_stats_get(log, &st);
    int rc = 0;
    if (code != STELE_OK)
        rc = cli_fail(b->ctx, code, "opening the copy %s", b->dest);
    else if (st.last_lsn != rep.last_lsn)
        rc = cli_error(b->ctx, CLI_EXIT_CORRUPT, "the copy %s opens at LSN %" PRIu64 " but verifies to LSN %" PRIu64,
                       b->dest, st.last_lsn, rep.last_lsn);
    stele_close(log);
    if (rc != 0)
        return rc;
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:b}", "dest", b->dest, "segments", (json_int_t)b->segments,
                          "bytes", (json_int_t)b->bytes, "last_lsn", (json_int_t)rep.last_lsn, "records",
                          (json_int_t)rep.records, "verified", 1);
    if (!o)
        return cli_error(b->ctx, CLI_EXIT_FAILURE, "out of memory");
    if (b->ctx->human)
        printf("backup %s: %" PRIu64 " segments, %" PRIu64 " bytes, LSN 1-%" PRIu64 ", verified\n", b->dest,
               b->segments, b->bytes, rep.last_lsn);
    else
        json_write_line(stdout, o);
    json_decref(o);
    return 0;
}

static int run(struct backup *b)
{
    stele_log *log;
    char **names = NULL;
    size_t n = 0;
    int created, rc = cli_open_read_only(b->ctx, b->dir, &log);
    if (rc != 0)
        return rc;
    stele_close(log); /* it was a log; the copy works on its files */
    if ((rc = prepare_dest(b, &created)) != 0 || (rc = copy_meta(b)) != 0 || (rc = copy_dicts(b)) != 0 ||
        (rc = list_segments(b, &names, &n)) != 0)
        goto out;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = i + 1 < n ? copy_sealed(b, names[i]) : copy_last(b, names[i]);
        b->segments++;
    }
    if (rc == 0)
        rc = copy_dicts(b);
    if (rc == 0)
        rc = sync_dir(b, b->dest);
    if (rc == 0 && created) {
        char parent[PATH_SIZE];
        snprintf(parent, sizeof parent, "%s/..", b->dest);
        rc = sync_dir(b, parent);
    }
    if (rc == 0)
        rc = verify_copy(b);
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int cmd_backup(struct cli_ctx *ctx, int argc, char **argv)
{
    int c;
    while ((c = cli_next_opt(ctx, argc, argv, backup_options)) != -1)
        return c == CLI_OPT_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (ctx->arg_count != 2 || !ctx->args[0][0] || !ctx->args[1][0])
        return cli_usage_error(ctx, "expected DIR and DEST (see stele backup --help)");
    struct backup b = {.ctx = ctx, .dir = ctx->args[0], .dest = ctx->args[1]};
    if (!(b.buf = malloc(COPY_CHUNK_SIZE)))
        return cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    int rc = run(&b);
    free(b.buf);
    return rc;
}

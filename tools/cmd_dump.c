/*
 * cmd_dump.c - `stele dump DIR [--segment N]`: a listing of a log's files for
 * people debugging them (PRODUCT.md, "Command line"; SPEC.md §17.3).
 *
 * Always text (it is for reading, not for programs; `stele read` is the
 * machine interface). One "log" line from a read-only open (when the log
 * does not open, the reason is printed instead and the segments are listed
 * anyway: a damaged log is when dump is needed most), then per segment file
 * in LSN order:
 *
 *   segment NAME seq=.. first_lsn=.. file_size=.. capacity=.. created=.. sealed|active
 *     batch @OFFSET frame=.. lsns=F-L records=.. compression=.. stored=.. raw=.. dict=.. durable_lsn=.. chain=..
 *       record lsn=.. +OFFSET size=.. kind=.. type=.. key=.. stream=S@V payload=..B content=.. [backfilled]
 *     end data_end=.. batches=.. records=.. last_lsn=.. durable_lsn=.. durable_end=..: WHY THE WALK STOPPED
 *
 * Offsets: a batch's within the file, a record's within its batch's raw
 * (decompressed) body. Strings are shown as UTF-8 with control characters,
 * invalid bytes, spaces and backslashes escaped as \xNN. The walk is
 * stele_segment_inspect's: a sealed segment that fails a check is listed up
 * to the problem, reported on stderr, and makes the exit status 5.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

/* A segment file name: the first LSN as 20 digits, then ".seg" (SPEC.md §2). */
#define SEGMENT_NAME_DIGITS 20
#define SEGMENT_NAME_SIZE 25

enum { OPT_SEGMENT = 256 };

static const struct option dump_options[] = {
    {"segment", required_argument, NULL, OPT_SEGMENT},
    CLI_COMMON_OPTIONS,
};

/* Prints s[0, n) with everything that is not printable UTF-8 escaped. */
static void put_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c >= 0x80 ? cli_utf8_sequence(s + i, n - i) : 1;
        if (c >= 0x80 && len > 0) {
            fwrite(s + i, 1, len, stdout);
            i += len;
        } else if (c > ' ' && c < 0x7f && c != '\\') {
            putchar(c);
            i++;
        } else {
            printf("\\x%02x", c);
            i++;
        }
    }
}

static void put_field(const char *name, const char *s, size_t n)
{
    if (!n)
        return;
    printf(" %s=", name);
    put_text(s, n);
}

static const char *content_name(int content)
{
    return content == STELE_CONTENT_JSON ? "json" : content == STELE_CONTENT_TEXT ? "text" : "binary";
}

static int show(void *ctx, const stele_batch_info *b, const stele_record *r, uint64_t off, uint64_t size)
{
    (void)ctx;
    if (!r) {
        printf("  batch @%" PRIu64 " frame=%" PRIu64 " lsns=%" PRIu64 "-%" PRIu64 " records=%" PRIu32
               " compression=%s stored=%" PRIu32 " raw=%" PRIu32 " dict=%" PRIu32 " durable_lsn=%" PRIu64
               " chain=%016" PRIx64 "\n",
               b->offset, b->frame_size, b->first_lsn, b->first_lsn + b->record_count - 1, b->record_count,
               cli_compression_name(b->compression), b->stored_size, b->raw_size, b->dict_id, b->durable_lsn,
               b->chain);
        return 0;
    }
    printf("    record lsn=%" PRIu64 " +%" PRIu64 " size=%" PRIu64 " kind=%s", r->lsn, off, size,
           event_kind_name(r->kind));
    if (r->kind == STELE_KIND_OUTCOME)
        printf(" outcome=%s", event_outcome_name(r->outcome));
    put_field("type", r->type, r->type_size);
    put_field("key", r->key, r->key_size);
    if (r->stream_size) {
        put_field("stream", r->stream, r->stream_size);
        printf("@%" PRIu64, r->stream_version);
    }
    put_field("actor", r->actor, r->actor_size);
    if (r->ref)
        printf(" ref=%" PRIu64, r->ref);
    printf(" payload=%zuB content=%s%s\n", r->payload_size, content_name(r->content),
           r->flags & STELE_FLAG_BACKFILLED ? " backfilled" : "");
    return 0;
}

static void show_log(const char *dir)
{
    stele_options opts;
    stele_log *log = NULL;
    stele_stats st;
    stele_options_init(&opts);
    opts.read_only = 1;
    int code = stele_open(dir, &opts, &log);
    if (code == STELE_OK)
        code = stele_stats_get(log, &st);
    if (code == STELE_OK) {
        char created[CLI_TIME_TEXT_SIZE];
        cli_time_format(st.created_at_ns, created, sizeof created);
        printf("log %s id=", dir);
        for (int i = 0; i < 16; i++)
            printf("%02x", st.log_id[i]);
        printf(" created=%s segment_size=%" PRIu64 " payload_size_max=%" PRIu32 " compression=%s last_lsn=%" PRIu64
               " segments=%" PRIu64 "\n", created, st.segment_size, st.payload_size_max,
               cli_compression_name(st.compression), st.last_lsn, st.segment_count);
    } else {
        /* Not an error of dump's: the segments are listed all the same. */
        printf("log %s: does not open read-only (%s: %s); listing its segment files\n", dir, stele_strerror(code),
               stele_errmsg());
    }
    stele_close(log);
}

/* Lists one segment; returns 0 or the exit code of its failure. */
static int dump_segment(const struct cli_ctx *ctx, const char *dir, const char *name)
{
    char path[4096 + SEGMENT_NAME_SIZE + 2];
    stele_segment_info info;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int code = stele_segment_inspect(path, NULL, NULL, &info);
    if (code != STELE_OK && info.seq == 0)
        return cli_fail(ctx, code, "segment %s", path);
    char created[CLI_TIME_TEXT_SIZE];
    cli_time_format(info.created_at_ns, created, sizeof created);
    printf("segment %s seq=%" PRIu64 " first_lsn=%" PRIu64 " file_size=%" PRIu64 " capacity=%" PRIu64
           " created=%s prev_chain=%016" PRIx64 " %s", name, info.seq, info.first_lsn, info.file_size,
           info.segment_size, created, info.prev_chain, info.sealed ? "sealed" : "active");
    if (info.sealed) {
        char sealed[CLI_TIME_TEXT_SIZE];
        cli_time_format(info.sealed_at_ns, sealed, sizeof sealed);
        printf(" sealed_at=%s", sealed);
    }
    printf("\n");
    /* Walk again with the listing: the first walk only read the header and
     * footer fields printed above, so that they come first. */
    code = stele_segment_inspect(path, show, NULL, &info);
    printf("  end data_end=%" PRIu64 " batches=%" PRIu64 " records=%" PRIu64 " last_lsn=%" PRIu64
           " durable_lsn=%" PRIu64 " durable_end=%" PRIu64 ": %s\n", info.data_end, info.batch_count,
           info.record_count, info.last_lsn, info.durable_lsn, info.durable_end, info.stop_note);
    return code == STELE_OK ? 0 : cli_fail(ctx, code, "segment %s", path);
}

static int is_segment_name(const char *name)
{
    if (strlen(name) != SEGMENT_NAME_SIZE - 1 || strcmp(name + SEGMENT_NAME_DIGITS, ".seg") != 0)
        return 0;
    for (int i = 0; i < SEGMENT_NAME_DIGITS; i++)
        if (name[i] < '0' || name[i] > '9')
            return 0;
    return 1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The segment file names of dir in LSN order (lexical order, SPEC.md §2). */
static int list_segments(const struct cli_ctx *ctx, const char *dir, char ***out_names, size_t *out_count)
{
    DIR *d = opendir(dir);
    if (!d)
        return cli_error(ctx, errno == ENOENT ? CLI_EXIT_NOT_FOUND : CLI_EXIT_FAILURE, "opening directory %s: %s",
                         dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!is_segment_name(e->d_name))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) {
                rc = cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
                break;
            }
            names = p;
        }
        if (!(names[n] = strdup(e->d_name)))
            rc = cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
        else
            n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_names);
    *out_names = names;
    *out_count = n;
    return rc;
}

int cmd_dump(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *dir;
    uint64_t segment = 0;
    int c, rc, only = 0;
    while ((c = cli_next_opt(ctx, argc, argv, dump_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c != OPT_SEGMENT || cli_opt_u64(ctx, "segment", optarg, &segment) != 0)
            return CLI_EXIT_USAGE;
        if (segment == 0)
            return cli_usage_error(ctx, "--segment: a segment's first LSN (its file name), starting at 1");
        only = 1;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    char **names = NULL;
    size_t n = 0;
    if ((rc = list_segments(ctx, dir, &names, &n)) != 0)
        return rc;
    show_log(dir);
    char want[SEGMENT_NAME_SIZE + 8];
    snprintf(want, sizeof want, "%020" PRIu64 ".seg", segment);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (only && strcmp(names[i], want) != 0)
            continue;
        found = 1;
        int seg_rc = dump_segment(ctx, dir, names[i]);
        if (seg_rc != 0 && (rc == 0 || seg_rc == CLI_EXIT_FAILURE))
            rc = seg_rc;
    }
    if (only && !found)
        rc = cli_error(ctx, CLI_EXIT_NOT_FOUND, "no segment %s in %s", want, dir);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

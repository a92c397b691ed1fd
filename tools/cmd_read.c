/*
 * cmd_read.c - `stele read DIR`: print records as event objects, one per
 * line, in LSN order, filtered (PRODUCT.md, "Command line").
 *
 * --from/--to bound the LSN (both inclusive). --since/--until bound the
 * recorded time (inclusive): recorded_at never decreases along the log, so
 * --since starts where stele_lsn_at_time says (a binary search in the
 * segments' read indexes, SPEC.md §19, reading no record), and --until ends
 * the read at the first later record. --type matches exactly.
 * --stream S reads only S's records, in version order (which is LSN order),
 * from the engine's stream index instead of filtering a scan of the whole
 * log; the other filters apply to them as usual. --limit stops after that
 * many printed records. --follow waits for new records until SIGINT or
 * SIGTERM, then exits 0.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

/* How long one wait for new records lasts in --follow, so that a signal is
 * noticed promptly even if the engine's wait is not interrupted by it. */
#define FOLLOW_WAIT_MS 200

enum { OPT_FROM = 256, OPT_TO, OPT_SINCE, OPT_UNTIL, OPT_TYPE, OPT_STREAM, OPT_LIMIT, OPT_FOLLOW };

static const struct option read_options[] = {
    {"from", required_argument, NULL, OPT_FROM},
    {"to", required_argument, NULL, OPT_TO},
    {"since", required_argument, NULL, OPT_SINCE},
    {"until", required_argument, NULL, OPT_UNTIL},
    {"type", required_argument, NULL, OPT_TYPE},
    {"stream", required_argument, NULL, OPT_STREAM},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"follow", no_argument, NULL, OPT_FOLLOW},
    CLI_COMMON_OPTIONS,
};

struct read_args {
    uint64_t from, to, since, until, limit;
    const char *type, *stream;
    int follow;
};

static int read_option(struct cli_ctx *ctx, int c, struct read_args *a)
{
    switch (c) {
    case OPT_FROM:
        return cli_opt_u64(ctx, "from", optarg, &a->from);
    case OPT_TO:
        return cli_opt_u64(ctx, "to", optarg, &a->to);
    case OPT_SINCE:
        return cli_opt_time(ctx, "since", optarg, &a->since);
    case OPT_UNTIL:
        return cli_opt_time(ctx, "until", optarg, &a->until);
    case OPT_LIMIT:
        return cli_opt_u64(ctx, "limit", optarg, &a->limit);
    case OPT_TYPE:
        a->type = optarg;
        return cli_opt_field(ctx, "type", optarg);
    case OPT_STREAM:
        a->stream = optarg;
        return cli_opt_field(ctx, "stream", optarg);
    case OPT_FOLLOW:
        a->follow = 1;
        return 0;
    default:
        return CLI_EXIT_USAGE;
    }
}

static int field_is(const char *want, const char *s, size_t n)
{
    return !want || (strlen(want) == n && memcmp(want, s, n) == 0);
}

/* The first LSN >= lo whose recorded time is >= since (last + 1 if none). */
static int seek_since(const struct cli_ctx *ctx, stele_log *log, uint64_t lo, uint64_t since,
                      uint64_t *out_lsn)
{
    uint64_t lsn;
    int code = stele_lsn_at_time(log, since, &lsn);
    if (code != STELE_OK)
        return cli_fail(ctx, code, "finding the first record at --since");
    *out_lsn = lsn > lo ? lsn : lo;
    return 0;
}

/* 1: past the end of what was asked for (stop); 0: keep going. */
static int beyond_range(const struct read_args *a, const stele_record *rec)
{
    return rec->lsn > a->to || rec->recorded_at_ns > a->until;
}

/* --from matters to a stream read, which starts at the stream's first record. */
static int wanted(const struct read_args *a, const stele_record *rec)
{
    return rec->lsn >= a->from && rec->recorded_at_ns >= a->since && field_is(a->type, rec->type, rec->type_size) &&
           field_is(a->stream, rec->stream, rec->stream_size);
}

/* Prints the matching records from iter until the range, the limit or (with
 * --follow) a stop signal ends it. */
static int read_loop(const struct cli_ctx *ctx, const struct read_args *a, stele_iter *iter)
{
    uint64_t printed = 0;
    while (printed < a->limit && !cli_stop_requested()) {
        const stele_record *rec = NULL;
        int code = stele_iter_next(iter, a->follow ? FOLLOW_WAIT_MS : 0, &rec);
        if (code != STELE_OK)
            return cli_fail(ctx, code, "reading");
        if (!rec) {
            if (!a->follow)
                break;
            /* Nothing new: what we printed should be seen now. */
            if (fflush(stdout) != 0)
                return cli_error(ctx, CLI_EXIT_FAILURE, "writing output: %s", strerror(errno));
            continue;
        }
        if (beyond_range(a, rec))
            break;
        if (wanted(a, rec)) {
            int rc = cli_print_record(ctx, rec);
            if (rc != 0)
                return rc;
            if (a->follow && fflush(stdout) != 0)
                return cli_error(ctx, CLI_EXIT_FAILURE, "writing output: %s", strerror(errno));
            printed++;
        }
        if (rec->lsn >= a->to) /* --follow must not wait for records nobody asked for */
            break;
    }
    return CLI_EXIT_OK;
}

/* The iterator the read walks: one stream from its first version, or the
 * whole log from --from (or the first record at --since). */
static int open_iter(const struct cli_ctx *ctx, stele_log *log, const struct read_args *a, stele_iter **out_iter)
{
    uint64_t start = a->from ? a->from : 1;
    int rc, code;
    if (a->stream) {
        code = stele_iter_open_stream(log, a->stream, strlen(a->stream), 1, out_iter);
        return code == STELE_OK ? 0 : cli_fail(ctx, code, "reading stream %s", a->stream);
    }
    if (a->since && (rc = seek_since(ctx, log, start, a->since, &start)) != 0)
        return rc;
    code = stele_iter_open(log, start, out_iter);
    return code == STELE_OK ? 0 : cli_fail(ctx, code, "reading from LSN %llu", (unsigned long long)start);
}

static int read_log(const struct cli_ctx *ctx, const char *dir, const struct read_args *a)
{
    stele_log *log;
    stele_iter *iter = NULL;
    int rc;
    if ((rc = cli_open_read_only(ctx, dir, &log)) != 0)
        return rc;
    if ((rc = open_iter(ctx, log, a, &iter)) != 0)
        goto done;
    if (a->follow)
        cli_stop_install(0); /* --follow ends on SIGINT or SIGTERM */
    rc = read_loop(ctx, a, iter);
done:
    stele_iter_close(iter);
    stele_close(log); /* read-only: nothing to flush, nothing to report */
    return rc;
}

int cmd_read(struct cli_ctx *ctx, int argc, char **argv)
{
    struct read_args a = {.limit = UINT64_MAX, .to = UINT64_MAX, .until = UINT64_MAX};
    const char *dir;
    int c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, read_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c == CLI_OPT_INVALID)
            return CLI_EXIT_USAGE;
        if ((rc = read_option(ctx, c, &a)) != 0)
            return rc;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    return read_log(ctx, dir, &a);
}

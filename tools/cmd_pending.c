/*
 * cmd_pending.c - `stele pending DIR [--older-than DURATION] [--limit N]`:
 * the intents whose outcome is still unknown, oldest first (PRODUCT.md,
 * guarantee 4), answered from the engine's index on a read-only handle:
 *
 *   {"key":K, "lsn":N, "recorded_at":TIME, "age_s":SECONDS}
 *
 * one per pending intent. --older-than D lists only intents recorded at
 * least D ago (by this machine's clock, the one the engine stamps records
 * with); age_s is how long ago, in seconds with millisecond precision. None
 * pending is not an error: nothing is printed and the exit status is 0.
 */
#include <inttypes.h>
#include <stdio.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

#define NS_PER_MS 1000000u

enum { OPT_OLDER_THAN = 256, OPT_LIMIT };

static const struct option pending_options[] = {
    {"older-than", required_argument, NULL, OPT_OLDER_THAN},
    {"limit", required_argument, NULL, OPT_LIMIT},
    CLI_COMMON_OPTIONS,
};

struct pending_args {
    uint64_t older_than_ns; /* 0 = every pending intent */
    uint64_t limit;         /* UINT64_MAX = no limit */
};

static int print_item(const struct cli_ctx *ctx, const stele_pending_item *it, uint64_t now_ns)
{
    char recorded[CLI_TIME_TEXT_SIZE];
    /* A record stamped after our "now" (another clock, or a clock step) is age 0. */
    uint64_t age_ms = now_ns > it->recorded_at_ns ? (now_ns - it->recorded_at_ns) / NS_PER_MS : 0;
    cli_time_format(it->recorded_at_ns, recorded, sizeof recorded);
    if (ctx->human) {
        printf("%.*s  lsn=%" PRIu64 "  recorded_at=%s  age=%" PRIu64 ".%03" PRIu64 "s\n", (int)it->key_size,
               it->key, it->lsn, recorded, age_ms / 1000, age_ms % 1000);
        return 0;
    }
    json_t *o = json_pack("{s:o, s:I, s:s, s:f}", "key", json_string_lossy(it->key, it->key_size), "lsn",
                          (json_int_t)it->lsn, "recorded_at", recorded, "age_s", (double)age_ms / 1000.0);
    int rc = o ? json_write_line(stdout, o) : -1;
    json_decref(o);
    return rc == 0 ? 0 : cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
}

static int list_pending(const struct cli_ctx *ctx, stele_log *log, const struct pending_args *a)
{
    uint64_t now_ns = cli_now_ns();
    stele_pending_item *items = NULL;
    size_t count = 0;
    /* Recorded at or before now - D; a D longer than the epoch's age leaves none. */
    if (a->limit == 0 || (a->older_than_ns && a->older_than_ns >= now_ns))
        return CLI_EXIT_OK;
    uint64_t before_ns = a->older_than_ns ? now_ns - a->older_than_ns : 0;
    size_t limit = a->limit > SIZE_MAX ? 0 : (size_t)a->limit; /* 0 = no limit */
    int code = stele_pending(log, before_ns, limit, &items, &count);
    if (code != STELE_OK)
        return cli_fail(ctx, code, "listing pending intents");
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < count && rc == CLI_EXIT_OK; i++)
        rc = print_item(ctx, &items[i], now_ns);
    stele_pending_free(items);
    return rc;
}

int cmd_pending(struct cli_ctx *ctx, int argc, char **argv)
{
    struct pending_args a = {.older_than_ns = 0, .limit = UINT64_MAX};
    const char *dir;
    stele_log *log;
    int c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, pending_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c == OPT_OLDER_THAN)
            rc = cli_opt_duration(ctx, "older-than", optarg, &a.older_than_ns);
        else if (c == OPT_LIMIT)
            rc = cli_opt_u64(ctx, "limit", optarg, &a.limit);
        else
            rc = CLI_EXIT_USAGE;
        if (rc != 0)
            return rc;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    if ((rc = cli_open_read_only(ctx, dir, &log)) != 0)
        return rc;
    rc = list_pending(ctx, log, &a);
    stele_close(log); /* read-only: nothing to flush, nothing to report */
    return rc;
}

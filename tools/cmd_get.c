/*
 * cmd_get.c - `stele get DIR --lsn N`: print one record as an event object
 * (PRODUCT.md, "Command line"). No record at N exits 4.
 *
 * Lookup by idempotency key (`--key K`) belongs to a later change: it needs a
 * key lookup in the public API first.
 */
#include <stdio.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

enum { OPT_LSN = 256 };

static const struct option get_options[] = {
    {"lsn", required_argument, NULL, OPT_LSN},
    CLI_COMMON_OPTIONS,
};

static int get_lsn(struct cli_ctx *ctx, const char *dir, uint64_t lsn)
{
    stele_options opts;
    stele_log *log;
    stele_record *rec = NULL;
    int rc;
    stele_options_init(&opts);
    opts.read_only = 1;
    if ((rc = cli_open_log(ctx, dir, &opts, &log)) != 0)
        return rc;
    int code = stele_get(log, lsn, &rec);
    if (code != STELE_OK)
        rc = cli_fail(ctx, code, "reading LSN %llu", (unsigned long long)lsn);
    else
        rc = cli_print_record(ctx, rec);
    stele_record_free(rec);
    stele_close(log); /* read-only: nothing to flush, nothing to report */
    return rc;
}

int cmd_get(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *dir;
    uint64_t lsn = 0;
    int has_lsn = 0, c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, get_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c != OPT_LSN)
            return CLI_EXIT_USAGE;
        if ((rc = cli_opt_u64(ctx, "lsn", optarg, &lsn)) != 0)
            return rc;
        has_lsn = 1;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    if (!has_lsn)
        return cli_usage_error(ctx, "--lsn N is required (see stele get --help)");
    return get_lsn(ctx, dir, lsn);
}

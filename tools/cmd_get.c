/*
 * cmd_get.c - `stele get DIR (--lsn N | --key K)`: print one record as an
 * event object (PRODUCT.md, "Command line"): the record at LSN N, or the
 * record idempotency key K holds (the event, or the intent: its outcome is
 * at the LSN `stele status` names). No such record exits 4.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

enum { OPT_LSN = 256, OPT_KEY };

static const struct option get_options[] = {
    {"lsn", required_argument, NULL, OPT_LSN},
    {"key", required_argument, NULL, OPT_KEY},
    CLI_COMMON_OPTIONS,
};

/* Reads the record by key when key is not NULL, else by lsn, and prints it. */
static int get_record(struct cli_ctx *ctx, const char *dir, uint64_t lsn, const char *key)
{
    stele_log *log;
    stele_record *rec = NULL;
    int rc, code;
    if ((rc = cli_open_read_only(ctx, dir, &log)) != 0)
        return rc;
    if (key) {
        code = stele_get_key(log, key, strlen(key), &rec);
        rc = code == STELE_OK ? 0 : cli_fail(ctx, code, "reading key %s", key);
    } else {
        code = stele_get(log, lsn, &rec);
        rc = code == STELE_OK ? 0 : cli_fail(ctx, code, "reading LSN %llu", (unsigned long long)lsn);
    }
    if (rc == 0)
        rc = cli_print_record(ctx, rec);
    stele_record_free(rec);
    stele_close(log); /* read-only: nothing to flush, nothing to report */
    return rc;
}

int cmd_get(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *dir, *key = NULL;
    uint64_t lsn = 0;
    int has_lsn = 0, c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, get_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c == OPT_LSN) {
            if ((rc = cli_opt_u64(ctx, "lsn", optarg, &lsn)) != 0)
                return rc;
            has_lsn = 1;
        } else if (c == OPT_KEY) {
            if ((rc = cli_opt_key(ctx, "key", optarg)) != 0)
                return rc;
            key = optarg;
        } else {
            return CLI_EXIT_USAGE;
        }
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    if (has_lsn == (key != NULL))
        return cli_usage_error(ctx, "give exactly one of --lsn N and --key K (see stele get --help)");
    return get_record(ctx, dir, lsn, key);
}

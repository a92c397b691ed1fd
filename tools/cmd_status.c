/*
 * cmd_status.c - `stele status DIR --key K`: what an idempotency key holds
 * (PRODUCT.md, guarantee 4, and "Command line"), answered from the engine's
 * index (stele_status_get) on a read-only handle:
 *
 *   {"key":K, "state":"event"|"pending"|"confirmed"|"failed"|"compensated",
 *    "lsn":N, "recorded_at":TIME, "stream_version":V|null,
 *    "outcome_lsn":N|null, "compensation_lsn":N|null}
 *
 * lsn, recorded_at and stream_version describe the key's own record (the
 * event or the intent); absent values are null, as in event objects. A key
 * the log does not hold (never seen, or forgotten after the idempotency
 * window) exits 4.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

enum { OPT_KEY = 256 };

static const struct option status_options[] = {
    {"key", required_argument, NULL, OPT_KEY},
    CLI_COMMON_OPTIONS,
};

static json_t *lsn_or_null(uint64_t lsn)
{
    return lsn ? json_integer((json_int_t)lsn) : json_null();
}

static int print_json(const struct cli_ctx *ctx, const char *key, const stele_status *st)
{
    char recorded[CLI_TIME_TEXT_SIZE];
    cli_time_format(st->recorded_at_ns, recorded, sizeof recorded);
    const struct { const char *name; json_t *value; } fields[] = {
        {"key", json_string_lossy(key, strlen(key))},
        {"state", json_string(event_state_name(st->state))},
        {"lsn", json_integer((json_int_t)st->lsn)},
        {"recorded_at", json_string(recorded)},
        {"stream_version", lsn_or_null(st->stream_version)},
        {"outcome_lsn", lsn_or_null(st->outcome_lsn)},
        {"compensation_lsn", lsn_or_null(st->compensation_lsn)},
    };
    json_t *o = json_object();
    int rc = o ? 0 : -1;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) /* each value is taken, even on failure */
        if (!o || json_object_set_new(o, fields[i].name, fields[i].value) != 0)
            rc = -1;
    if (rc == 0)
        rc = json_write_line(stdout, o);
    json_decref(o);
    return rc == 0 ? CLI_EXIT_OK : cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
}

/* One line: "K  state  lsn=N  recorded_at=T" and the optional parts. */
static void print_human(const char *key, const stele_status *st)
{
    char recorded[CLI_TIME_TEXT_SIZE];
    cli_time_format(st->recorded_at_ns, recorded, sizeof recorded);
    printf("%s  %s  lsn=%" PRIu64 "  recorded_at=%s", key, event_state_name(st->state), st->lsn, recorded);
    if (st->stream_version)
        printf("  stream_version=%" PRIu64, st->stream_version);
    if (st->outcome_lsn)
        printf("  outcome_lsn=%" PRIu64, st->outcome_lsn);
    if (st->compensation_lsn)
        printf("  compensation_lsn=%" PRIu64, st->compensation_lsn);
    printf("\n");
}

int cmd_status(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *dir, *key = NULL;
    stele_log *log;
    stele_status st;
    int c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, status_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c != OPT_KEY)
            return CLI_EXIT_USAGE;
        if (cli_opt_key(ctx, "key", optarg) != 0)
            return CLI_EXIT_USAGE;
        key = optarg;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    if (!key)
        return cli_usage_error(ctx, "--key K is required (see stele status --help)");
    if ((rc = cli_open_read_only(ctx, dir, &log)) != 0)
        return rc;
    int code = stele_status_get(log, key, strlen(key), &st);
    if (code != STELE_OK)
        rc = cli_fail(ctx, code, "key %s", key);
    else if (ctx->human)
        print_human(key, &st);
    else
        rc = print_json(ctx, key, &st);
    stele_close(log); /* read-only: nothing to flush, nothing to report */
    return rc;
}

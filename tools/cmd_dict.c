/*
 * cmd_dict.c - `stele dict train DIR [--sample N] [--sample-bytes BYTES]
 * [--dict-size BYTES]`: trains a zstd dictionary from the log's own records
 * and stores it in the log directory (stele_dict_train; SPEC.md §18).
 *
 * It opens the log for writing (it takes the writer lock: the dictionary's
 * id is the newest one's plus one, and only the lock holder makes files),
 * so it cannot run beside a writer process; an embedding program calls
 * stele_dict_train on its own handle instead. Batches written after this
 * command by any writer that opens the log afterwards use the new
 * dictionary (when the log compresses).
 *
 * Output: {"dict_id","dict_size","sample_records","sample_bytes",
 * "trained_through_lsn","file"}.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

enum { OPT_SAMPLE = 256, OPT_SAMPLE_BYTES, OPT_DICT_SIZE };

static const struct option dict_options[] = {
    {"sample", required_argument, NULL, OPT_SAMPLE},
    {"sample-bytes", required_argument, NULL, OPT_SAMPLE_BYTES},
    {"dict-size", required_argument, NULL, OPT_DICT_SIZE},
    CLI_COMMON_OPTIONS,
};

static int dict_option(struct cli_ctx *ctx, int c, stele_dict_options *o)
{
    uint64_t v;
    int rc;
    switch (c) {
    case OPT_SAMPLE:
        return cli_opt_u64(ctx, "sample", optarg, &o->sample_records);
    case OPT_SAMPLE_BYTES:
        return cli_opt_size(ctx, "sample-bytes", optarg, &o->sample_size_max);
    case OPT_DICT_SIZE:
        if ((rc = cli_opt_size(ctx, "dict-size", optarg, &v)) != 0)
            return rc;
        if (v > UINT32_MAX)
            return cli_usage_error(ctx, "--dict-size: %s is too large", optarg);
        o->dict_size_max = (uint32_t)v;
        return 0;
    default:
        return CLI_EXIT_USAGE;
    }
}

static void print_trained(const struct cli_ctx *ctx, const char *dir, const stele_dict_info *d)
{
    char file[64];
    snprintf(file, sizeof file, "%010" PRIu32 ".dict", d->dict_id);
    if (ctx->human) {
        printf("trained dictionary %" PRIu32 " (%s/%s): %" PRIu32 " bytes from %" PRIu64 " records (%" PRIu64
               " bytes) up to LSN %" PRIu64 "\n",
               d->dict_id, dir, file, d->dict_size, d->sample_records, d->sample_size, d->trained_through_lsn);
        return;
    }
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:s}", "dict_id", (json_int_t)d->dict_id, "dict_size",
                          (json_int_t)d->dict_size, "sample_records", (json_int_t)d->sample_records, "sample_bytes",
                          (json_int_t)d->sample_size, "trained_through_lsn", (json_int_t)d->trained_through_lsn,
                          "file", file);
    if (o)
        json_write_line(stdout, o);
    json_decref(o);
}

int cmd_dict(struct cli_ctx *ctx, int argc, char **argv)
{
    stele_dict_options dopts;
    stele_dict_options_init(&dopts);
    int c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, dict_options)) != -1) {
        if (c == CLI_OPT_HELP)
            return CLI_EXIT_OK;
        if (c == CLI_OPT_INVALID)
            return CLI_EXIT_USAGE;
        if ((rc = dict_option(ctx, c, &dopts)) != 0)
            return rc;
    }
    if (ctx->arg_count < 1 || strcmp(ctx->args[0], "train") != 0)
        return cli_usage_error(ctx, "expected 'train DIR' (the only dict subcommand)");
    if (ctx->arg_count != 2)
        return cli_usage_error(ctx, "dict train takes exactly one log directory");
    const char *dir = ctx->args[1];
    stele_options opts;
    stele_options_init(&opts);
    stele_log *log;
    if ((rc = cli_open_log(ctx, dir, &opts, &log)) != 0)
        return rc;
    stele_dict_info info;
    int code = stele_dict_train(log, &dopts, &info);
    rc = code == STELE_OK ? CLI_EXIT_OK : cli_fail(ctx, code, "training a dictionary for %s", dir);
    if (code == STELE_OK)
        print_trained(ctx, dir, &info);
    return cli_close_log(ctx, log, dir, rc);
}

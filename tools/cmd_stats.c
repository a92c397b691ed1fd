/*
 * cmd_stats.c - `stele stats DIR`: every field of stele_stats as one JSON
 * object (PRODUCT.md, "Command line"): log_id as 32 hex digits, created_at as
 * RFC 3339, enums by name, flags as booleans, index_note as a string ("" when
 * the index checkpoint was used), everything else as numbers under the
 * field's own name.
 *
 * Compression (SPEC.md §18): the level and dictionaries from stele_stats,
 * the ratio from every batch header (stele_compression_get), see
 * add_compression.
 *
 * The log is opened read-only, so the counters "since open" are this
 * process's (zero) and recovery figures describe no recovery: a read-only
 * open does not recover.
 *
 * --prometheus prints the same figures in the Prometheus text exposition
 * format 0.0.4; they are gathered and rendered by stats_report.c (shared
 * with `stele serve`), whose head comment says what each family is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "stats_report.h"
#include "stele.h"

enum { OPT_PROMETHEUS = 256 };

static const struct option stats_options[] = {
    {"prometheus", no_argument, NULL, OPT_PROMETHEUS},
    CLI_COMMON_OPTIONS,
};

/* Compression figures (SPEC.md §18): the level and dictionary in use from
 * stele_stats, the ratio from the batch headers (stele_compression_get: one
 * 64-byte read per batch, so this costs in proportion to the log's batch
 * count; --prometheus leaves it out for that reason). */
static void add_compression(json_t *o, const stele_stats *st, const stele_compression_report *c)
{
    json_object_set_new(o, "compression_level", json_integer(st->compression_level));
    json_object_set_new(o, "dict_in_use", json_integer(st->dict_in_use));
    json_object_set_new(o, "dict_newest", json_integer(st->dict_newest));
    json_object_set_new(o, "dict_count", json_integer(st->dict_count));
    json_object_set_new(o, "batches", json_integer((json_int_t)c->batches));
    json_object_set_new(o, "batches_zstd", json_integer((json_int_t)c->batches_zstd));
    json_object_set_new(o, "batches_dict", json_integer((json_int_t)c->batches_dict));
    json_object_set_new(o, "raw_bytes", json_integer((json_int_t)c->raw_size));
    json_object_set_new(o, "stored_bytes", json_integer((json_int_t)c->stored_size));
    json_object_set_new(o, "frame_bytes", json_integer((json_int_t)c->frame_size));
    json_object_set_new(o, "compression_ratio",
                        json_real(c->stored_size ? (double)c->raw_size / (double)c->stored_size : 1.0));
}

static int print_stats(const struct cli_ctx *ctx, const stele_stats *st, const stele_compression_report *c)
{
    json_t *o = stats_json(st);
    if (!o)
        return cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
    add_compression(o, st, c);
    if (!ctx->human) {
        json_write_line(stdout, o);
    } else {
        /* One "name  value" line per field, values as in the JSON. */
        const char *key;
        json_t *value;
        json_object_foreach(o, key, value) {
            size_t len;
            char *text = json_is_string(value) ? NULL : json_compact(value, &len);
            printf("%-22s %s\n", key, json_is_string(value) ? json_string_value(value) : text ? text : "?");
            free(text);
        }
    }
    json_decref(o);
    return CLI_EXIT_OK;
}

/* --prometheus: the figures of stats_report.c, without a log label. */
static int print_prometheus(const struct cli_ctx *ctx, stele_log *log, const char *dir)
{
    struct stats_snapshot snap;
    int code = stats_snapshot_collect(log, dir, NULL, &snap);
    if (code != STELE_OK)
        return cli_error(ctx, cli_exit_for(code), "%s", snap.error);
    stats_prometheus_write(stdout, &snap, 1);
    stats_snapshot_release(&snap);
    return CLI_EXIT_OK;
}

int cmd_stats(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *dir;
    stele_options opts;
    stele_log *log;
    stele_stats st;
    int c, rc, prometheus = 0;
    while ((c = cli_next_opt(ctx, argc, argv, stats_options)) != -1) {
        if (c == OPT_PROMETHEUS)
            prometheus = 1;
        else
            return c == CLI_OPT_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    }
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    stele_options_init(&opts);
    opts.read_only = 1;
    if ((rc = cli_open_log(ctx, dir, &opts, &log)) != 0)
        return rc;
    stele_compression_report comp;
    int code = stele_stats_get(log, &st);
    if (code != STELE_OK)
        rc = cli_fail(ctx, code, "reading stats of %s", dir);
    else if (prometheus)
        rc = print_prometheus(ctx, log, dir);
    else if ((code = stele_compression_get(log, &comp)) != STELE_OK)
        rc = cli_fail(ctx, code, "reading the batch headers of %s", dir);
    else
        rc = print_stats(ctx, &st, &comp);
    stele_close(log);
    return rc;
}

/*
 * cmd_stats.c - `stele stats DIR`: every field of stele_stats as one JSON
 * object (PRODUCT.md, "Command line"): log_id as 32 hex digits, created_at as
 * RFC 3339, enums by name, flags as booleans, index_note as a string ("" when
 * the index checkpoint was used), everything else as numbers under the
 * field's own name.
 *
 * The log is opened read-only, so the counters "since open" are this
 * process's (zero) and recovery figures describe no recovery: a read-only
 * open does not recover.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"
#include "stele.h"

static const struct option stats_options[] = {
    CLI_COMMON_OPTIONS,
};

/* The numeric fields, in stele_stats order. */
struct stat_number {
    const char *name;
    uint64_t value;
};

static json_t *stats_json(const stele_stats *st, const struct stat_number *n, size_t count)
{
    char id[33], created[CLI_TIME_TEXT_SIZE];
    for (int i = 0; i < 16; i++)
        snprintf(id + 2 * i, 3, "%02x", st->log_id[i]);
    cli_time_format(st->created_at_ns, created, sizeof created);
    json_t *o = json_pack("{s:s, s:s}", "log_id", id, "created_at", created);
    for (size_t i = 0; o && i < count; i++)
        json_object_set_new(o, n[i].name, json_integer((json_int_t)n[i].value));
    if (o) {
        json_object_set_new(o, "compression", json_string(cli_compression_name(st->compression)));
        json_object_set_new(o, "durability", json_string(cli_durability_name(st->durability)));
        json_object_set_new(o, "read_only", json_boolean(st->read_only));
        json_object_set_new(o, "fenced", json_boolean(st->fenced));
        json_object_set_new(o, "index_rebuilt", json_boolean(st->index_rebuilt));
        /* The engine fills the note from paths and messages: it may be cut anywhere. */
        json_object_set_new(o, "index_note",
                            json_string_lossy(st->index_note, strnlen(st->index_note, sizeof st->index_note)));
    }
    return o;
}

static int print_stats(const struct cli_ctx *ctx, const stele_stats *st)
{
    const struct stat_number n[] = {
        {"first_lsn", st->first_lsn}, {"last_lsn", st->last_lsn}, {"durable_lsn", st->durable_lsn},
        {"segment_count", st->segment_count}, {"sealed_segment_count", st->sealed_segment_count},
        {"disk_size", st->disk_size}, {"data_size", st->data_size}, {"segment_size", st->segment_size},
        {"idem_window_ns", st->idem_window_ns}, {"payload_size_max", st->payload_size_max},
        {"appends_new", st->appends_new}, {"appends_duplicate", st->appends_duplicate},
        {"appends_conflict", st->appends_conflict}, {"appends_failed", st->appends_failed},
        {"batches_written", st->batches_written}, {"syncs", st->syncs}, {"bytes_written", st->bytes_written},
        {"index_keys", st->index_keys}, {"index_pending", st->index_pending}, {"index_streams", st->index_streams},
        {"index_memory", st->index_memory}, {"index_checkpoint_lsn", st->index_checkpoint_lsn},
        {"index_checkpoints", st->index_checkpoints}, {"index_expired", st->index_expired},
        {"index_scanned", st->index_scanned},
        {"recovery_torn_bytes", st->recovery_torn_bytes}, {"recovery_torn_batches", st->recovery_torn_batches},
        {"recovery_stray_files", st->recovery_stray_files},
    };
    json_t *o = stats_json(st, n, sizeof n / sizeof n[0]);
    if (!o)
        return cli_error(ctx, CLI_EXIT_FAILURE, "out of memory");
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

int cmd_stats(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *dir;
    stele_options opts;
    stele_log *log;
    stele_stats st;
    int c, rc;
    while ((c = cli_next_opt(ctx, argc, argv, stats_options)) != -1)
        return c == CLI_OPT_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if ((rc = cli_take_dir(ctx, &dir)) != 0)
        return rc;
    stele_options_init(&opts);
    opts.read_only = 1;
    if ((rc = cli_open_log(ctx, dir, &opts, &log)) != 0)
        return rc;
    int code = stele_stats_get(log, &st);
    rc = code == STELE_OK ? print_stats(ctx, &st) : cli_fail(ctx, code, "reading stats of %s", dir);
    stele_close(log);
    return rc;
}

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
 * format 0.0.4 (print_prometheus): "stele_" names with units last
 * (_bytes, _seconds, _total for counters), # HELP and # TYPE before each
 * family. Two kinds of figure, and the HELP text says which each is:
 *  - figures of the log, true whoever asks: records (last LSN), durable
 *    LSN, segments, bytes, the index (keys, streams, pending intents and the
 *    age of the oldest, from stele_pending), and a histogram of the batches
 *    of the active segment (records and bytes per batch, from
 *    stele_segment_inspect: bounded by one segment's size, so a scrape
 *    costs the same on any log);
 *  - counters of this process's handle since it opened the log (appends by
 *    idempotency decision, batches, syncs, bytes written, checkpoints,
 *    expired keys, and what recovery cut). A read-only `stele stats`
 *    appends nothing and recovers nothing, so from here they are 0: the
 *    writer's own counters are in its stele_stats_get.
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

enum { OPT_PROMETHEUS = 256 };

static const struct option stats_options[] = {
    {"prometheus", no_argument, NULL, OPT_PROMETHEUS},
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
        json_object_set_new(o, "direct_io", json_boolean(st->direct_io));
        json_object_set_new(o, "io_note", json_string_lossy(st->io_note, strnlen(st->io_note, sizeof st->io_note)));
        json_object_set_new(o, "spare_note",
                            json_string_lossy(st->spare_note, strnlen(st->spare_note, sizeof st->spare_note)));
    }
    return o;
}

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
    const struct stat_number n[] = {
        {"first_lsn", st->first_lsn}, {"last_lsn", st->last_lsn}, {"durable_lsn", st->durable_lsn},
        {"segment_count", st->segment_count}, {"sealed_segment_count", st->sealed_segment_count},
        {"disk_size", st->disk_size}, {"data_size", st->data_size}, {"segment_size", st->segment_size},
        {"idem_window_ns", st->idem_window_ns}, {"payload_size_max", st->payload_size_max},
        {"appends_new", st->appends_new}, {"appends_duplicate", st->appends_duplicate},
        {"appends_conflict", st->appends_conflict}, {"appends_failed", st->appends_failed},
        {"batches_written", st->batches_written}, {"syncs", st->syncs}, {"bytes_written", st->bytes_written},
        {"direct_io_fallbacks", st->direct_io_fallbacks}, {"segment_spare_failures", st->segment_spare_failures},
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

/* ------------------------------------------------------------ --prometheus */

/* Histogram buckets: batch records are powers of 4 up to the batch maximum
 * of 65536; batch bytes (frame sizes) powers of 4 from one block to 64 MiB. */
#define RECORD_BUCKETS 9
#define BYTE_BUCKETS 8

struct histogram {
    uint64_t le[RECORD_BUCKETS > BYTE_BUCKETS ? RECORD_BUCKETS : BYTE_BUCKETS];
    uint64_t counts[RECORD_BUCKETS > BYTE_BUCKETS ? RECORD_BUCKETS : BYTE_BUCKETS];
    size_t bucket_count;
    uint64_t count;
    uint64_t sum;
};

struct batch_hist {
    struct histogram records, bytes;
};

static void hist_init(struct histogram *h, uint64_t first, size_t n)
{
    memset(h, 0, sizeof *h);
    h->bucket_count = n;
    for (size_t i = 0; i < n; i++)
        h->le[i] = first << (2 * i);
}

static void hist_add(struct histogram *h, uint64_t v)
{
    for (size_t i = 0; i < h->bucket_count; i++)
        if (v <= h->le[i])
            h->counts[i]++; /* cumulative, as the format wants */
    h->count++;
    h->sum += v;
}

static int count_batch(void *ctx, const stele_batch_info *b, const stele_record *rec, uint64_t off, uint64_t size)
{
    (void)off;
    (void)size;
    struct batch_hist *bh = ctx;
    if (!rec) {
        hist_add(&bh->records, b->record_count);
        hist_add(&bh->bytes, b->frame_size);
    }
    return 0;
}

/* The last segment file of dir (lexically largest name, SPEC.md §2) into
 * path; 0, or -1 when there is none (errno set on failure). */
static int last_segment(const char *dir, char *path, size_t path_size)
{
    DIR *d = opendir(dir);
    char best[32] = "";
    struct dirent *e;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n == 24 && strcmp(e->d_name + 20, ".seg") == 0 && strspn(e->d_name, "0123456789") == 20 &&
            strcmp(e->d_name, best) > 0)
            memcpy(best, e->d_name, 25); /* 24 characters and the NUL */
    }
    closedir(d);
    if (!best[0]) {
        errno = 0;
        return -1;
    }
    snprintf(path, path_size, "%s/%s", dir, best);
    return 0;
}

static void prom_family(const char *name, const char *type, const char *help)
{
    printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_one(const char *name, const char *type, const char *help, uint64_t value)
{
    prom_family(name, type, help);
    printf("%s %" PRIu64 "\n", name, value);
}

static void prom_histogram(const char *name, const char *help, const struct histogram *h)
{
    prom_family(name, "histogram", help);
    for (size_t i = 0; i < h->bucket_count; i++)
        printf("%s_bucket{le=\"%" PRIu64 "\"} %" PRIu64 "\n", name, h->le[i], h->counts[i]);
    printf("%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %" PRIu64 "\n%s_count %" PRIu64 "\n", name, h->count, name,
           h->sum, name, h->count);
}

/* Per consumer (stele replay's cursors): position, lag and dead letters.
 * Consumer names are [A-Za-z0-9._-], so they need no escaping in a label. */
static void prom_consumers(const stele_stats *st, const stele_consumer_info *c, size_t n)
{
    if (n == 0)
        return;
    prom_family("stele_consumer_position", "gauge", "The last LSN the consumer committed (finished).");
    for (size_t i = 0; i < n; i++)
        printf("stele_consumer_position{consumer=\"%s\"} %" PRIu64 "\n", c[i].name, c[i].position);
    prom_family("stele_consumer_lag_records", "gauge",
                "Records in the log after the consumer's committed position (last LSN minus position).");
    for (size_t i = 0; i < n; i++)
        printf("stele_consumer_lag_records{consumer=\"%s\"} %" PRIu64 "\n", c[i].name,
               st->last_lsn > c[i].position ? st->last_lsn - c[i].position : 0);
    prom_family("stele_consumer_dead_letters", "gauge", "The consumer's dead letters not resolved (redriven).");
    for (size_t i = 0; i < n; i++)
        printf("stele_consumer_dead_letters{consumer=\"%s\"} %" PRIu64 "\n", c[i].name, c[i].dead_letters);
}

/* Figures of the log itself (see the head comment). */
static void prom_log(const stele_stats *st, uint64_t pending_oldest_ns, const struct batch_hist *bh)
{
    prom_one("stele_records_total", "counter", "Records in the log: its last LSN (every new append, since creation).",
             st->last_lsn);
    prom_one("stele_durable_lsn", "gauge", "Highest LSN known to be on stable storage, as this handle sees it.",
             st->durable_lsn);
    prom_one("stele_segments", "gauge", "Segment files.", st->segment_count);
    prom_one("stele_sealed_segments", "gauge", "Sealed (read-only) segment files.", st->sealed_segment_count);
    prom_one("stele_disk_bytes", "gauge", "Bytes of segment files, preallocation included.", st->disk_size);
    prom_one("stele_data_bytes", "gauge", "Bytes of segment headers and batch frames written.", st->data_size);
    prom_one("stele_index_keys", "gauge", "Idempotency keys the index remembers (within the window).",
             st->index_keys);
    prom_one("stele_index_streams", "gauge", "Streams in the index.", st->index_streams);
    prom_one("stele_index_memory_bytes", "gauge", "Memory the index holds in this process.", st->index_memory);
    prom_one("stele_index_checkpoint_lsn", "gauge", "LSN the index checkpoint covers (0 = none).",
             st->index_checkpoint_lsn);
    prom_one("stele_index_rebuilt", "gauge", "1 when the index checkpoint was missing or untrusted at open.",
             (uint64_t)st->index_rebuilt);
    prom_one("stele_pending_intents", "gauge", "Intents whose outcome is not recorded yet.", st->index_pending);
    prom_family("stele_pending_oldest_age_seconds", "gauge",
                "Age of the oldest pending intent (recorded time), 0 when none is pending.");
    printf("stele_pending_oldest_age_seconds %.3f\n", (double)pending_oldest_ns / 1e9);
    prom_one("stele_fenced", "gauge", "1 after a failed write or sync on this handle.", (uint64_t)st->fenced);
    prom_histogram("stele_active_segment_batch_records",
                   "Records per batch, over the batches of the active (last) segment.", &bh->records);
    prom_histogram("stele_active_segment_batch_bytes",
                   "Frame bytes per batch, over the batches of the active (last) segment.", &bh->bytes);
}

/* Counters of this process's handle (see the head comment). */
static void prom_process(const stele_stats *st)
{
    prom_family("stele_appends_total", "counter",
                "Appends by idempotency decision, by this process since it opened the log.");
    printf("stele_appends_total{decision=\"new\"} %" PRIu64 "\n", st->appends_new);
    printf("stele_appends_total{decision=\"duplicate\"} %" PRIu64 "\n", st->appends_duplicate);
    printf("stele_appends_total{decision=\"conflict\"} %" PRIu64 "\n", st->appends_conflict);
    prom_one("stele_appends_failed_total", "counter", "Appends that failed, by this process since open.",
             st->appends_failed);
    prom_one("stele_batches_written_total", "counter", "Batches written by this process since open.",
             st->batches_written);
    prom_one("stele_syncs_total", "counter", "fdatasync calls by this process since open.", st->syncs);
    prom_one("stele_bytes_written_total", "counter", "Bytes written to segments by this process since open.",
             st->bytes_written);
    prom_one("stele_direct_io_fallbacks_total", "counter",
             "Segments this process wrote through the page cache although direct_io asked for O_DIRECT.",
             st->direct_io_fallbacks);
    prom_one("stele_segment_spare_failures_total", "counter",
             "Rolls by this process that found the next segment's file could not be made ahead.",
             st->segment_spare_failures);
    prom_one("stele_index_checkpoints_total", "counter", "Index checkpoints written by this process since open.",
             st->index_checkpoints);
    prom_one("stele_index_checkpoint_failures_total", "counter", "Index checkpoints that failed since open.",
             st->index_checkpoint_failures);
    prom_one("stele_index_expired_keys_total", "counter", "Keys forgotten (older than the window) since open.",
             st->index_expired);
    prom_one("stele_recovery_torn_bytes_total", "counter", "Bytes of torn tail cut by this handle's recovery.",
             st->recovery_torn_bytes);
    prom_one("stele_recovery_torn_batches_total", "counter", "Torn batches cut by this handle's recovery.",
             st->recovery_torn_batches);
    prom_one("stele_recovery_stray_files_total", "counter", "Unfinished segment files removed by recovery.",
             st->recovery_stray_files);
}

static int print_prometheus(const struct cli_ctx *ctx, stele_log *log, const char *dir, const stele_stats *st)
{
    stele_pending_item *items = NULL;
    size_t count = 0;
    int code = stele_pending(log, 0, 1, &items, &count);
    if (code != STELE_OK)
        return cli_fail(ctx, code, "listing the pending intents of %s", dir);
    uint64_t now = cli_now_ns(), oldest_ns = 0;
    if (count > 0 && now > items[0].recorded_at_ns)
        oldest_ns = now - items[0].recorded_at_ns;
    stele_pending_free(items);
    struct batch_hist bh;
    hist_init(&bh.records, 1, RECORD_BUCKETS);
    hist_init(&bh.bytes, 4096, BYTE_BUCKETS);
    char path[4096 + 32];
    if (last_segment(dir, path, sizeof path) == 0) {
        stele_segment_info info;
        code = stele_segment_inspect(path, count_batch, &bh, &info);
        if (code != STELE_OK)
            return cli_fail(ctx, code, "reading the batches of %s", path);
    } else if (errno != 0) {
        return cli_error(ctx, CLI_EXIT_FAILURE, "listing %s: %s", dir, strerror(errno));
    }
    stele_consumer_info *cons = NULL;
    size_t ncons = 0;
    if ((code = stele_consumers(log, &cons, &ncons)) != STELE_OK)
        return cli_fail(ctx, code, "reading the consumers of %s", dir);
    prom_log(st, oldest_ns, &bh);
    prom_process(st);
    prom_consumers(st, cons, ncons);
    stele_consumers_free(cons);
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
        rc = print_prometheus(ctx, log, dir, &st);
    else if ((code = stele_compression_get(log, &comp)) != STELE_OK)
        rc = cli_fail(ctx, code, "reading the batch headers of %s", dir);
    else
        rc = print_stats(ctx, &st, &comp);
    stele_close(log);
    return rc;
}

/*
 * stats_report.c - the figures of `stele stats` (SPEC.md §17.4), gathered
 * from one open log (stats_snapshot_collect) and rendered as the JSON object
 * of `stele stats` (stats_json) or in the Prometheus text exposition format
 * 0.0.4 (stats_prometheus_write), for `stele stats --prometheus` (one log, no
 * label) and `stele serve` (one log="DIR" label per log, every family's
 * samples of all logs together, as the format requires).
 *
 * Prometheus names are "stele_" with units last (_bytes, _seconds, _total
 * for counters), # HELP and # TYPE before each family. Two kinds of figure,
 * and the HELP text says which each is:
 *  - figures of the log, true whoever asks: records (last LSN), durable
 *    LSN, segments, bytes, the index (keys, streams, pending intents and the
 *    age of the oldest, from stele_pending; the oldest few are kept in the
 *    snapshot for `stele serve`), and a histogram of the batches
 *    of the active segment (records and bytes per batch, from
 *    stele_segment_inspect: bounded by one segment's size, so a scrape
 *    costs the same on any log);
 *  - counters of this process's handle since it opened the log (appends by
 *    idempotency decision, batches, syncs, bytes written, checkpoints,
 *    expired keys, and what recovery cut). A read-only handle appends
 *    nothing and recovers nothing, so from `stele stats` and `stele serve`
 *    they are 0: the writer's own counters are in its stele_stats_get.
 */
#include "stats_report.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "event_json.h"

/* ------------------------------------------------------------------ JSON */

/* The numeric fields, in stele_stats order. */
struct stat_number {
    const char *name;
    uint64_t value;
};

json_t *stats_json(const stele_stats *st)
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
    char id[33], created[CLI_TIME_TEXT_SIZE];
    cli_hex(st->log_id, sizeof st->log_id, id);
    cli_time_format(st->created_at_ns, created, sizeof created);
    json_t *o = json_pack("{s:s, s:s}", "log_id", id, "created_at", created);
    if (!o)
        return NULL;
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++)
        json_object_set_new(o, n[i].name, json_integer((json_int_t)n[i].value));
    json_object_set_new(o, "compression", json_string(cli_compression_name(st->compression)));
    json_object_set_new(o, "durability", json_string(cli_durability_name(st->durability)));
    json_object_set_new(o, "read_only", json_boolean(st->read_only));
    json_object_set_new(o, "fenced", json_boolean(st->fenced));
    json_object_set_new(o, "index_rebuilt", json_boolean(st->index_rebuilt));
    /* The engine fills the notes from paths and messages: they may be cut anywhere. */
    json_object_set_new(o, "index_note",
                        json_string_lossy(st->index_note, strnlen(st->index_note, sizeof st->index_note)));
    json_object_set_new(o, "direct_io", json_boolean(st->direct_io));
    json_object_set_new(o, "io_note", json_string_lossy(st->io_note, strnlen(st->io_note, sizeof st->io_note)));
    json_object_set_new(o, "spare_note",
                        json_string_lossy(st->spare_note, strnlen(st->spare_note, sizeof st->spare_note)));
    return o;
}

/* ------------------------------------------------------------- collecting */

static void hist_init(struct stats_histogram *h, uint64_t first, size_t n)
{
    memset(h, 0, sizeof *h);
    h->bucket_count = n;
    for (size_t i = 0; i < n; i++)
        h->le[i] = first << (2 * i);
}

static void hist_add(struct stats_histogram *h, uint64_t v)
{
    for (size_t i = 0; i < h->bucket_count; i++)
        if (v <= h->le[i])
            h->counts[i]++;
    h->count++;
    h->sum += v;
}

static int count_batch(void *ctx, const stele_batch_info *b, const stele_record *rec, uint64_t off, uint64_t size)
{
    (void)off;
    (void)size;
    struct stats_snapshot *s = ctx;
    if (!rec) {
        hist_add(&s->batch_records, b->record_count);
        hist_add(&s->batch_bytes, b->frame_size);
    }
    return 0;
}

/* The last segment file of dir (lexically largest name, SPEC.md §2) into
 * path; 0, or -1 when there is none (errno set on failure, 0 otherwise). */
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

/* Fills s->error with "<what>: <strerror(code)>[: <engine message>]", the
 * line cli_fail prints, right after the failing stele call; returns code. */
static int collect_fail(struct stats_snapshot *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int collect_fail(struct stats_snapshot *s, int code, const char *fmt, ...)
{
    char what[512];
    const char *msg = stele_errmsg();
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (msg && msg[0])
        snprintf(s->error, sizeof s->error, "%s: %s: %s", what, stele_strerror(code), msg);
    else
        snprintf(s->error, sizeof s->error, "%s: %s", what, stele_strerror(code));
    return code;
}

/* The oldest pending intents (stele_pending, oldest first), each with the
 * stream its intent record names (stele_get: the index keeps no stream per
 * key); the age of the oldest. */
static int collect_pending(stele_log *log, const char *dir, struct stats_snapshot *out)
{
    stele_pending_item *items = NULL;
    size_t count = 0;
    int code = stele_pending(log, 0, STATS_PENDING_LIST_MAX, &items, &count);
    if (code != STELE_OK)
        return collect_fail(out, code, "listing the pending intents of %s", dir);
    out->collected_at_ns = cli_now_ns();
    if (count > 0 && out->collected_at_ns > items[0].recorded_at_ns)
        out->pending_oldest_ns = out->collected_at_ns - items[0].recorded_at_ns;
    for (size_t i = 0; i < count && i < STATS_PENDING_LIST_MAX; i++) {
        struct stats_pending *p = &out->pending[i];
        stele_record *rec = NULL;
        if ((code = stele_get(log, items[i].lsn, &rec)) != STELE_OK) {
            code = collect_fail(out, code, "reading pending intent %" PRIu64 " of %s", items[i].lsn, dir);
            break;
        }
        p->lsn = items[i].lsn;
        p->recorded_at_ns = items[i].recorded_at_ns;
        p->key_size = items[i].key_size < sizeof p->key ? items[i].key_size : sizeof p->key - 1;
        memcpy(p->key, items[i].key, p->key_size);
        p->key[p->key_size] = '\0';
        p->stream_size = rec->stream_size < sizeof p->stream ? rec->stream_size : sizeof p->stream - 1;
        memcpy(p->stream, rec->stream, p->stream_size);
        p->stream[p->stream_size] = '\0';
        stele_record_free(rec);
        out->pending_count = i + 1;
    }
    stele_pending_free(items);
    return code;
}

int stats_snapshot_collect(stele_log *log, const char *dir, const char *label, struct stats_snapshot *out)
{
    memset(out, 0, sizeof *out);
    out->label = label;
    int code = stele_stats_get(log, &out->st);
    if (code != STELE_OK)
        return collect_fail(out, code, "reading stats of %s", dir);
    if ((code = collect_pending(log, dir, out)) != STELE_OK)
        return code;
    hist_init(&out->batch_records, 1, STATS_RECORD_BUCKETS);
    hist_init(&out->batch_bytes, 4096, STATS_BYTE_BUCKETS);
    char path[4096 + 32];
    if (last_segment(dir, path, sizeof path) == 0) {
        stele_segment_info info;
        if ((code = stele_segment_inspect(path, count_batch, out, &info)) != STELE_OK)
            return collect_fail(out, code, "reading the batches of %s", path);
    } else if (errno != 0) {
        snprintf(out->error, sizeof out->error, "listing %s: %s", dir, strerror(errno));
        return STELE_ERR_IO;
    }
    if ((code = stele_consumers(log, &out->consumers, &out->consumer_count)) != STELE_OK) {
        out->consumers = NULL;
        out->consumer_count = 0;
        return collect_fail(out, code, "reading the consumers of %s", dir);
    }
    return STELE_OK;
}

void stats_snapshot_release(struct stats_snapshot *s)
{
    stele_consumers_free(s->consumers);
    s->consumers = NULL;
    s->consumer_count = 0;
}

/* ------------------------------------------------------------- Prometheus */

static void prom_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped, as the format wants. */
static void prom_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f), fputc(*s, f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

/* name{log="LABEL",MORE} with the braces left out when there is no label. */
static void prom_name(FILE *f, const char *name, const struct stats_snapshot *s, const char *more)
{
    fputs(name, f);
    if (!s->label && !more)
        return;
    fputc('{', f);
    if (s->label) {
        fputs("log=\"", f);
        prom_escaped(f, s->label);
        fputs(more ? "\"," : "\"", f);
    }
    if (more)
        fputs(more, f);
    fputc('}', f);
}

static void prom_u64(FILE *f, const char *name, const struct stats_snapshot *s, const char *more, uint64_t v)
{
    prom_name(f, name, s, more);
    fprintf(f, " %" PRIu64 "\n", v);
}

/* The families that are one stele_stats field per log, in output order. */
enum field_kind { FIELD_U64, FIELD_INT };
static const struct prom_field {
    const char *name, *type, *help;
    size_t offset;
    enum field_kind kind;
} log_fields[] = {
    {"stele_records_total", "counter", "Records in the log: its last LSN (every new append, since creation).",
     offsetof(stele_stats, last_lsn), FIELD_U64},
    {"stele_durable_lsn", "gauge", "Highest LSN known to be on stable storage, as this handle sees it.",
     offsetof(stele_stats, durable_lsn), FIELD_U64},
    {"stele_segments", "gauge", "Segment files.", offsetof(stele_stats, segment_count), FIELD_U64},
    {"stele_sealed_segments", "gauge", "Sealed (read-only) segment files.", offsetof(stele_stats, sealed_segment_count),
     FIELD_U64},
    {"stele_disk_bytes", "gauge", "Bytes of segment files, preallocation included.", offsetof(stele_stats, disk_size),
     FIELD_U64},
    {"stele_data_bytes", "gauge", "Bytes of segment headers and batch frames written.",
     offsetof(stele_stats, data_size), FIELD_U64},
    {"stele_index_keys", "gauge", "Idempotency keys the index remembers (within the window).",
     offsetof(stele_stats, index_keys), FIELD_U64},
    {"stele_index_streams", "gauge", "Streams in the index.", offsetof(stele_stats, index_streams), FIELD_U64},
    {"stele_index_memory_bytes", "gauge", "Memory the index holds in this process.",
     offsetof(stele_stats, index_memory), FIELD_U64},
    {"stele_index_checkpoint_lsn", "gauge", "LSN the index checkpoint covers (0 = none).",
     offsetof(stele_stats, index_checkpoint_lsn), FIELD_U64},
    {"stele_index_rebuilt", "gauge", "1 when the index checkpoint was missing or untrusted at open.",
     offsetof(stele_stats, index_rebuilt), FIELD_INT},
    {"stele_pending_intents", "gauge", "Intents whose outcome is not recorded yet.",
     offsetof(stele_stats, index_pending), FIELD_U64},
}, fenced_field = {"stele_fenced", "gauge", "1 after a failed write or sync on this handle.",
                   offsetof(stele_stats, fenced), FIELD_INT},
  process_fields[] = {
    {"stele_appends_failed_total", "counter", "Appends that failed, by this process since open.",
     offsetof(stele_stats, appends_failed), FIELD_U64},
    {"stele_batches_written_total", "counter", "Batches written by this process since open.",
     offsetof(stele_stats, batches_written), FIELD_U64},
    {"stele_syncs_total", "counter", "fdatasync calls by this process since open.", offsetof(stele_stats, syncs),
     FIELD_U64},
    {"stele_bytes_written_total", "counter", "Bytes written to segments by this process since open.",
     offsetof(stele_stats, bytes_written), FIELD_U64},
    {"stele_direct_io_fallbacks_total", "counter",
     "Segments this process wrote through the page cache although direct_io asked for O_DIRECT.",
     offsetof(stele_stats, direct_io_fallbacks), FIELD_U64},
    {"stele_segment_spare_failures_total", "counter",
     "Rolls by this process that found the next segment's file could not be made ahead.",
     offsetof(stele_stats, segment_spare_failures), FIELD_U64},
    {"stele_index_checkpoints_total", "counter", "Index checkpoints written by this process since open.",
     offsetof(stele_stats, index_checkpoints), FIELD_U64},
    {"stele_index_checkpoint_failures_total", "counter", "Index checkpoints that failed since open.",
     offsetof(stele_stats, index_checkpoint_failures), FIELD_U64},
    {"stele_index_expired_keys_total", "counter", "Keys forgotten (older than the window) since open.",
     offsetof(stele_stats, index_expired), FIELD_U64},
    {"stele_recovery_torn_bytes_total", "counter", "Bytes of torn tail cut by this handle's recovery.",
     offsetof(stele_stats, recovery_torn_bytes), FIELD_U64},
    {"stele_recovery_torn_batches_total", "counter", "Torn batches cut by this handle's recovery.",
     offsetof(stele_stats, recovery_torn_batches), FIELD_U64},
    {"stele_recovery_stray_files_total", "counter", "Unfinished segment files removed by recovery.",
     offsetof(stele_stats, recovery_stray_files), FIELD_U64},
};

static uint64_t field_value(const struct prom_field *fl, const stele_stats *st)
{
    const char *p = (const char *)st + fl->offset;
    if (fl->kind == FIELD_INT) {
        int v;
        memcpy(&v, p, sizeof v);
        return (uint64_t)v;
    }
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static void prom_fields(FILE *f, const struct prom_field *fl, size_t nf, const struct stats_snapshot *s, size_t n)
{
    for (size_t k = 0; k < nf; k++) {
        prom_family(f, fl[k].name, fl[k].type, fl[k].help);
        for (size_t i = 0; i < n; i++)
            prom_u64(f, fl[k].name, &s[i], NULL, field_value(&fl[k], &s[i].st));
    }
}

static void prom_histogram(FILE *f, const char *name, const char *help, const struct stats_snapshot *s, size_t n,
                           size_t which)
{
    char sub[128], le[48];
    prom_family(f, name, "histogram", help);
    for (size_t i = 0; i < n; i++) {
        const struct stats_histogram *h = which == 0 ? &s[i].batch_records : &s[i].batch_bytes;
        snprintf(sub, sizeof sub, "%s_bucket", name);
        for (size_t b = 0; b < h->bucket_count; b++) {
            snprintf(le, sizeof le, "le=\"%" PRIu64 "\"", h->le[b]);
            prom_u64(f, sub, &s[i], le, h->counts[b]);
        }
        prom_u64(f, sub, &s[i], "le=\"+Inf\"", h->count);
        snprintf(sub, sizeof sub, "%s_sum", name);
        prom_u64(f, sub, &s[i], NULL, h->sum);
        snprintf(sub, sizeof sub, "%s_count", name);
        prom_u64(f, sub, &s[i], NULL, h->count);
    }
}

/* Per consumer (stele replay's cursors): position, lag and dead letters.
 * Consumer names are [A-Za-z0-9._-], so they need no escaping in a label. */
static void prom_consumers(FILE *f, const struct stats_snapshot *s, size_t n)
{
    static const struct {
        const char *name, *help;
    } fam[] = {
        {"stele_consumer_position", "The last LSN the consumer committed (finished)."},
        {"stele_consumer_lag_records",
         "Records in the log after the consumer's committed position (last LSN minus position)."},
        {"stele_consumer_dead_letters", "The consumer's dead letters not resolved (redriven)."},
    };
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += s[i].consumer_count;
    if (total == 0)
        return;
    char label[STELE_CURSOR_NAME_SIZE_MAX + 16];
    for (size_t k = 0; k < sizeof fam / sizeof fam[0]; k++) {
        prom_family(f, fam[k].name, "gauge", fam[k].help);
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < s[i].consumer_count; j++) {
                const stele_consumer_info *c = &s[i].consumers[j];
                uint64_t last = s[i].st.last_lsn;
                uint64_t v = k == 0 ? c->position : k == 1 ? (last > c->position ? last - c->position : 0)
                                                           : c->dead_letters;
                snprintf(label, sizeof label, "consumer=\"%s\"", c->name);
                prom_u64(f, fam[k].name, &s[i], label, v);
            }
        }
    }
}

void stats_prometheus_write(FILE *f, const struct stats_snapshot *s, size_t n)
{
    if (n == 0)
        return; /* a family without samples is not valid */
    /* Figures of the log itself (see the head comment). */
    prom_fields(f, log_fields, sizeof log_fields / sizeof log_fields[0], s, n);
    prom_family(f, "stele_pending_oldest_age_seconds", "gauge",
                "Age of the oldest pending intent (recorded time), 0 when none is pending.");
    for (size_t i = 0; i < n; i++) {
        prom_name(f, "stele_pending_oldest_age_seconds", &s[i], NULL);
        fprintf(f, " %.3f\n", (double)s[i].pending_oldest_ns / 1e9);
    }
    prom_fields(f, &fenced_field, 1, s, n);
    prom_histogram(f, "stele_active_segment_batch_records",
                   "Records per batch, over the batches of the active (last) segment.", s, n, 0);
    prom_histogram(f, "stele_active_segment_batch_bytes",
                   "Frame bytes per batch, over the batches of the active (last) segment.", s, n, 1);
    /* Counters of this process's handle (see the head comment). */
    prom_family(f, "stele_appends_total", "counter",
                "Appends by idempotency decision, by this process since it opened the log.");
    for (size_t i = 0; i < n; i++) {
        prom_u64(f, "stele_appends_total", &s[i], "decision=\"new\"", s[i].st.appends_new);
        prom_u64(f, "stele_appends_total", &s[i], "decision=\"duplicate\"", s[i].st.appends_duplicate);
        prom_u64(f, "stele_appends_total", &s[i], "decision=\"conflict\"", s[i].st.appends_conflict);
    }
    prom_fields(f, process_fields, sizeof process_fields / sizeof process_fields[0], s, n);
    prom_consumers(f, s, n);
}

void stats_prometheus_up(FILE *f, const char *const *labels, const int *up, const int *fenced, size_t n)
{
    prom_family(f, "stele_log_up", "gauge",
                "1 when the log was opened and its figures read for this scrape, 0 when not (see /healthz).");
    for (size_t i = 0; i < n; i++) {
        struct stats_snapshot s = {.label = labels[i]};
        prom_u64(f, "stele_log_up", &s, NULL, up[i] ? 1u : 0u);
    }
    prom_family(f, "stele_log_fenced", "gauge",
                "1 when this scrape found the handle serve reads the log with fenced (its other samples are then "
                "absent; the next scrape reopens it).");
    for (size_t i = 0; i < n; i++) {
        struct stats_snapshot s = {.label = labels[i]};
        prom_u64(f, "stele_log_fenced", &s, NULL, fenced[i] ? 1u : 0u);
    }
}

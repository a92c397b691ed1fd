/*
 * stats_report.h - the figures `stele stats` prints, gathered once and
 * rendered as JSON or in the Prometheus text format, shared by `stele stats`
 * (one log, on stdout) and `stele serve` (several logs, per HTTP request).
 * Only the public header is used (stele.h).
 */
#ifndef STELE_TOOLS_STATS_REPORT_H
#define STELE_TOOLS_STATS_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "stele.h"

/* Histogram buckets: batch records are powers of 4 up to the batch maximum
 * of 65536; batch bytes (frame sizes) powers of 4 from one block to 64 MiB. */
#define STATS_RECORD_BUCKETS 9
#define STATS_BYTE_BUCKETS 8
#define STATS_BUCKETS_MAX 9
_Static_assert(STATS_RECORD_BUCKETS <= STATS_BUCKETS_MAX && STATS_BYTE_BUCKETS <= STATS_BUCKETS_MAX,
               "histogram buckets");

/* The longest error text a snapshot keeps (what failed, the code's text and
 * the engine's message). */
#define STATS_ERROR_SIZE 1200

struct stats_histogram {
    uint64_t le[STATS_BUCKETS_MAX];
    uint64_t counts[STATS_BUCKETS_MAX]; /* cumulative, as the format wants */
    size_t bucket_count;
    uint64_t count;
    uint64_t sum;
};

/* The oldest pending intents a snapshot lists (`stele serve`'s /api/status
 * and status page), and the room for a key or stream name: at most 255
 * bytes each (SPEC.md §5, stream_size and key_size), and a NUL. */
#define STATS_PENDING_LIST_MAX 10
#define STATS_NAME_SIZE 256

struct stats_pending {
    uint64_t lsn;
    uint64_t recorded_at_ns;
    char key[STATS_NAME_SIZE];    /* NUL-terminated; key_size says how long (a key may hold NULs) */
    size_t key_size;
    char stream[STATS_NAME_SIZE]; /* "" when the intent has no stream */
    size_t stream_size;
};

/* One log's figures at one moment. */
struct stats_snapshot {
    const char *label;                 /* the log="..." label of every sample, NULL = none */
    stele_stats st;
    uint64_t pending_oldest_ns;        /* age of the oldest pending intent, 0 = none pending */
    uint64_t collected_at_ns;          /* the clock the ages were taken from */
    struct stats_pending pending[STATS_PENDING_LIST_MAX]; /* the oldest pending intents, oldest first */
    size_t pending_count;
    struct stats_histogram batch_records, batch_bytes; /* the active segment's batches */
    stele_consumer_info *consumers;    /* stele_consumers' allocation, NULL when none */
    size_t consumer_count;
    char error[STATS_ERROR_SIZE];      /* after a failed collect: "<what failed>: <why>" */
};

/* Reads the figures of the open log in dir into *out (label set to label):
 * stele_stats_get, the oldest pending intents (up to STATS_PENDING_LIST_MAX,
 * each with its stream from its record, stele_get), the batches of the last
 * segment and the consumers. Returns a stele_code; on failure out->error
 * says what failed and why, and nothing needs releasing. */
int stats_snapshot_collect(stele_log *log, const char *dir, const char *label, struct stats_snapshot *out);

/* Releases what a successful collect allocated; accepts a zeroed snapshot. */
void stats_snapshot_release(struct stats_snapshot *s);

/* Writes the snapshots in the Prometheus text exposition format 0.0.4: one
 * # HELP and # TYPE per family, followed by the samples of every snapshot
 * (with its log label when it has one). */
void stats_prometheus_write(FILE *out, const struct stats_snapshot *snaps, size_t count);

/* Writes the families stele_log_up and stele_log_fenced (`stele serve`):
 * one sample each per log (labels[i]). stele_log_up is 1 when its figures
 * were read (up[i]), 0 when the log could not be opened or read or its
 * handle is fenced (/healthz says why); stele_log_fenced is 1 when the
 * handle was found fenced at this scrape (fenced[i]; the log's other samples
 * are then absent, and the next scrape opens it again). */
void stats_prometheus_up(FILE *out, const char *const *labels, const int *up, const int *fenced, size_t count);

/* Every field of *st as one JSON object (`stele stats`, cmd_stats.c head
 * comment), or NULL when out of memory. */
json_t *stats_json(const stele_stats *st);

#endif

/*
 * index_bench.c - stele-bench --index N: what the index costs at N keys
 * (SPEC.md §15), through the public API only.
 *
 * Appends N events with distinct keys (mode none, batches of 1,000, a sync
 * at the end), then reports: the index's memory per key (stats.index_memory
 * / stats.index_keys), the close time (which writes the checkpoint), the
 * reopen time with the checkpoint (nothing rescanned), and the reopen time
 * after deleting it (the index rebuilt from the whole log), each the median
 * of --runs reopens.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define INDEX_BATCH 1000
#define INDEX_CKPT_NAME "index.ckpt" /* SPEC.md §2 */

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, int code)
{
    fprintf(stderr, "stele-bench: index: %s: %s: %s\n", what, stele_strerror(code), stele_errmsg());
    return -1;
}

/* Opens dir, checks what the index says, closes; *out_s is the open time. */
static int timed_open(const char *dir, uint64_t keys, int expect_scanned, double *out_s, stele_stats *out_st)
{
    stele_options o;
    stele_options_init(&o);
    o.durability = STELE_DURABILITY_NONE;
    stele_log *log;
    double t0 = seconds_now();
    int code = stele_open(dir, &o, &log);
    *out_s = seconds_now() - t0;
    if (code)
        return fail("reopen", code);
    if ((code = stele_stats_get(log, out_st)) != STELE_OK) {
        stele_close(log);
        return fail("stats", code);
    }
    int bad = out_st->index_keys != keys || (expect_scanned ? out_st->index_scanned != keys
                                                            : out_st->index_scanned != 0);
    if ((code = stele_close(log)) != STELE_OK)
        return fail("close", code);
    if (bad) {
        fprintf(stderr, "stele-bench: index: reopened with %llu keys, %llu records scanned (expected %llu, %llu)\n",
                (unsigned long long)out_st->index_keys, (unsigned long long)out_st->index_scanned,
                (unsigned long long)keys, (unsigned long long)(expect_scanned ? keys : 0));
        return -1;
    }
    return 0;
}

/* The median of runs timed reopens; deletes the checkpoint before each when rebuild. */
static int median_open(const char *dir, uint64_t keys, int rebuild, int runs, double *out_s)
{
    double t[BENCH_RUNS_MAX];
    char path[4096];
    snprintf(path, sizeof path, "%s/" INDEX_CKPT_NAME, dir);
    for (int i = 0; i < runs; i++) {
        if (rebuild && unlink(path) != 0) {
            fprintf(stderr, "stele-bench: index: unlink %s: %s\n", path, strerror(errno));
            return -1;
        }
        stele_stats st;
        if (timed_open(dir, keys, rebuild, &t[i], &st) != 0)
            return -1;
    }
    *out_s = bench_median(t, runs);
    return 0;
}

int index_bench(const struct config *cfg, uint64_t keys, const char *dir)
{
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.durability = STELE_DURABILITY_NONE;
    o.idem_window_ns = 0; /* remember every key: the figure is for N live keys */
    o.checkpoint_records = 0;
    o.io_backend = cfg->backend;
    stele_log *log;
    int code = stele_open(dir, &o, &log);
    if (code)
        return fail("create", code);
    size_t payload_size = cfg->record_size;
    char *payload = calloc(1, payload_size + 1);
    stele_event *ev = calloc(INDEX_BATCH, sizeof *ev);
    stele_receipt *rc = calloc(INDEX_BATCH, sizeof *rc);
    char (*k)[24] = calloc(INDEX_BATCH, sizeof *k);
    if (!payload || !ev || !rc || !k) {
        fprintf(stderr, "stele-bench: index: out of memory\n");
        stele_close(log);
        free(payload), free(ev), free(rc), free(k);
        return -1;
    }
    double t0 = seconds_now();
    for (uint64_t done = 0; done < keys && code == STELE_OK;) {
        size_t n = keys - done < INDEX_BATCH ? (size_t)(keys - done) : INDEX_BATCH;
        for (size_t i = 0; i < n; i++) {
            int len = snprintf(k[i], sizeof k[i], "key-%012llu", (unsigned long long)(done + i));
            ev[i] = (stele_event){.key = k[i], .key_size = (size_t)len, .payload = payload,
                                  .payload_size = payload_size, .type = "bench", .type_size = 5};
        }
        code = stele_append_batch(log, ev, n, rc);
        done += n;
    }
    if (code == STELE_OK)
        code = stele_sync(log);
    double append_s = seconds_now() - t0;
    stele_stats st;
    if (code == STELE_OK)
        code = stele_stats_get(log, &st);
    free(payload), free(ev), free(rc), free(k);
    if (code) {
        stele_close(log);
        return fail("append", code);
    }
    t0 = seconds_now();
    if ((code = stele_close(log)) != STELE_OK)
        return fail("close", code);
    double close_s = seconds_now() - t0;
    double ckpt_open_s, rebuild_open_s;
    if (median_open(dir, keys, 0, cfg->runs, &ckpt_open_s) != 0 ||
        median_open(dir, keys, 1, cfg->runs, &rebuild_open_s) != 0)
        return -1;
    double per_key = st.index_keys ? (double)st.index_memory / (double)st.index_keys : 0;
    if (cfg->json) {
        printf("{\"bench\":\"index\",\"keys\":%llu,\"key_size\":16,\"record_size\":%zu,\"index_memory\":%llu,"
               "\"bytes_per_key\":%.1f,\"append_s\":%.3f,\"close_with_checkpoint_s\":%.3f,"
               "\"reopen_checkpoint_s\":%.4f,\"reopen_rebuild_s\":%.4f,\"runs\":%d}\n",
               (unsigned long long)keys, cfg->record_size, (unsigned long long)st.index_memory, per_key, append_s,
               close_s, ckpt_open_s, rebuild_open_s, cfg->runs);
    } else {
        printf("index: %llu keys of 16 bytes, %zu-byte records (%.1f s to append, mode none)\n",
               (unsigned long long)keys, cfg->record_size, append_s);
        printf("  index memory          %12llu bytes  %.1f bytes per key (16 of them the key)\n",
               (unsigned long long)st.index_memory, per_key);
        printf("  close + checkpoint    %12.3f s\n", close_s);
        printf("  reopen, checkpoint    %12.4f s  (median of %d; nothing rescanned)\n", ckpt_open_s, cfg->runs);
        printf("  reopen, rebuilt       %12.4f s  (median of %d; checkpoint deleted, whole log scanned)\n",
               rebuild_open_s, cfg->runs);
        printf("  rebuilt / checkpoint  %12.1fx\n", ckpt_open_s > 0 ? rebuild_open_s / ckpt_open_s : 0);
    }
    return 0;
}

/*
 * stele_bench.c - measures stele's append throughput and latency through the
 * public API only.
 *
 * N threads append records of a fixed size for a fixed time, each append
 * blocking until acknowledged per the durability mode; every latency goes
 * into a per-thread histogram (no sampling). Syncs and records per sync come
 * from the log's own stats, so group commit is visible. Output: a table, or
 * one JSON object per result with --json.
 */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "histogram.h"
#include "stele.h"

#define THREADS_MAX 1024

struct config {
    size_t record_size;
    int threads;
    int batch;
    stele_durability durability;
    int keys;
    double duration_s;
    const char *dir;
    int json;
    stele_io_backend backend;
};

struct worker {
    const struct config *cfg;
    stele_log *log;
    int id;
    volatile int *stop;
    uint64_t records;
    int failed;
    struct histogram hist;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct config *cfg = w->cfg;
    stele_event ev[64];
    stele_receipt rc[64];
    char keys[64][48];
    char *payload = malloc(cfg->record_size ? cfg->record_size : 1);
    if (!payload) {
        w->failed = 1;
        return NULL;
    }
    for (size_t i = 0; i < cfg->record_size; i++)
        payload[i] = (char)('a' + (i + (size_t)w->id) % 26);
    uint64_t seq = 0;
    while (!*w->stop) {
        for (int i = 0; i < cfg->batch; i++) {
            memset(&ev[i], 0, sizeof ev[i]);
            ev[i].type = "bench.event";
            ev[i].type_size = 11;
            ev[i].payload = payload;
            ev[i].payload_size = cfg->record_size;
            if (cfg->keys) {
                int n = snprintf(keys[i], sizeof keys[i], "bench-%d-%" PRIu64, w->id, seq++);
                ev[i].key = keys[i];
                ev[i].key_size = (size_t)n;
            }
        }
        uint64_t t0 = mono_ns();
        int code = stele_append_batch(w->log, ev, (size_t)cfg->batch, rc);
        uint64_t t1 = mono_ns();
        if (code != STELE_OK) {
            fprintf(stderr, "stele-bench: append: %s: %s\n", stele_strerror(code), stele_errmsg());
            w->failed = 1;
            break;
        }
        hist_record(&w->hist, (t1 - t0) / 1000u);
        w->records += (uint64_t)cfg->batch;
    }
    free(payload);
    return NULL;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static const char *durability_name(stele_durability d)
{
    return d == STELE_DURABILITY_SYNC ? "sync" : d == STELE_DURABILITY_INTERVAL ? "interval" : "none";
}

static void usage(void)
{
    fprintf(stderr,
            "usage: stele-bench [--record-size BYTES] [--threads N] [--batch N] [--durability sync|interval|none]\n"
            "                   [--keys] [--duration SECONDS] [--dir PATH] [--posix] [--json]\n");
}

static int parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option opts[] = {
        {"record-size", required_argument, 0, 's'}, {"threads", required_argument, 0, 't'},
        {"batch", required_argument, 0, 'b'},       {"durability", required_argument, 0, 'd'},
        {"keys", no_argument, 0, 'k'},              {"duration", required_argument, 0, 'D'},
        {"dir", required_argument, 0, 'p'},         {"json", no_argument, 0, 'j'},
        {"posix", no_argument, 0, 'P'},             {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': cfg->record_size = (size_t)strtoull(optarg, NULL, 10); break;
        case 't': cfg->threads = atoi(optarg); break;
        case 'b': cfg->batch = atoi(optarg); break;
        case 'k': cfg->keys = 1; break;
        case 'D': cfg->duration_s = strtod(optarg, NULL); break;
        case 'p': cfg->dir = optarg; break;
        case 'j': cfg->json = 1; break;
        case 'P': cfg->backend = STELE_IO_POSIX; break;
        case 'd':
            if (strcmp(optarg, "sync") == 0)
                cfg->durability = STELE_DURABILITY_SYNC;
            else if (strcmp(optarg, "interval") == 0)
                cfg->durability = STELE_DURABILITY_INTERVAL;
            else if (strcmp(optarg, "none") == 0)
                cfg->durability = STELE_DURABILITY_NONE;
            else
                return -1;
            break;
        default: return -1;
        }
    }
    if (cfg->threads < 1 || cfg->threads > THREADS_MAX || cfg->batch < 1 || cfg->batch > 64 ||
        cfg->duration_s <= 0 || cfg->record_size > 1024 * 1024)
        return -1;
    return optind == argc ? 0 : -1;
}

/* Runs the workload on an open log; fills the merged histogram and totals. */
static int run(const struct config *cfg, stele_log *log, struct histogram *all, uint64_t *out_records,
               double *out_elapsed_s)
{
    struct worker *w = calloc((size_t)cfg->threads, sizeof *w);
    pthread_t *tid = calloc((size_t)cfg->threads, sizeof *tid);
    volatile int stop = 0;
    int failed = !w || !tid;
    int started = 0;
    uint64_t t0 = mono_ns();
    for (int i = 0; !failed && i < cfg->threads; i++, started++) {
        w[i] = (struct worker){.cfg = cfg, .log = log, .id = i, .stop = &stop};
        if (pthread_create(&tid[i], NULL, worker_main, &w[i]) != 0)
            failed = 1;
    }
    struct timespec ts = {(time_t)cfg->duration_s, (long)((cfg->duration_s - (double)(time_t)cfg->duration_s) * 1e9)};
    if (!failed)
        nanosleep(&ts, NULL);
    stop = 1;
    for (int i = 0; i < started; i++) {
        pthread_join(tid[i], NULL);
        hist_merge(all, &w[i].hist);
        *out_records += w[i].records;
        failed |= w[i].failed;
    }
    *out_elapsed_s = (double)(mono_ns() - t0) / 1e9;
    free(w);
    free(tid);
    return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
    struct config cfg = {.record_size = 100, .threads = 1, .batch = 1, .durability = STELE_DURABILITY_SYNC,
                         .duration_s = 5, .backend = STELE_IO_URING};
    if (parse_args(argc, argv, &cfg) != 0) {
        usage();
        return 2;
    }
    char tmpl[] = "/tmp/stele-bench.XXXXXX";
    const char *dir = cfg.dir;
    if (!dir && !(dir = mkdtemp(tmpl))) {
        fprintf(stderr, "stele-bench: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char logdir[4096];
    snprintf(logdir, sizeof logdir, "%s/log-%ld", dir, (long)getpid());
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.durability = cfg.durability;
    o.io_backend = cfg.backend;
    stele_log *log;
    int code = stele_open(logdir, &o, &log);
    if (code != STELE_OK) {
        fprintf(stderr, "stele-bench: open %s: %s: %s\n", logdir, stele_strerror(code), stele_errmsg());
        return 1;
    }
    static struct histogram all;
    uint64_t records = 0;
    double elapsed;
    int rc = run(&cfg, log, &all, &records, &elapsed);
    stele_stats st;
    if (stele_stats_get(log, &st) != STELE_OK)
        memset(&st, 0, sizeof st);
    if (stele_close(log) != STELE_OK)
        rc = -1;
    double rps = (double)records / elapsed;
    double syncs = (double)st.syncs / elapsed;
    double per_sync = st.syncs ? (double)records / (double)st.syncs : 0;
    if (cfg.json) {
        printf("{\"engine\":\"stele\",\"durability\":\"%s\",\"record_size\":%zu,\"threads\":%d,\"batch\":%d,"
               "\"keys\":%s,\"records\":%" PRIu64 ",\"seconds\":%.3f,\"records_per_s\":%.0f,\"mb_per_s\":%.2f,"
               "\"p50_us\":%" PRIu64 ",\"p99_us\":%" PRIu64 ",\"p999_us\":%" PRIu64 ",\"syncs_per_s\":%.0f,"
               "\"records_per_sync\":%.1f}\n",
               durability_name(cfg.durability), cfg.record_size, cfg.threads, cfg.batch, cfg.keys ? "true" : "false",
               records, elapsed, rps, rps * (double)cfg.record_size / 1e6, hist_quantile(&all, 0.5),
               hist_quantile(&all, 0.99), hist_quantile(&all, 0.999), syncs, per_sync);
    } else {
        printf("%-8s %-9s %7s %7s %5s %12s %9s %8s %8s %8s %9s %8s\n", "engine", "durabil.", "size", "threads",
               "batch", "records/s", "MB/s", "p50 us", "p99 us", "p999 us", "syncs/s", "rec/sync");
        printf("%-8s %-9s %7zu %7d %5d %12.0f %9.2f %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %9.0f %8.1f\n", "stele",
               durability_name(cfg.durability), cfg.record_size, cfg.threads, cfg.batch, rps,
               rps * (double)cfg.record_size / 1e6, hist_quantile(&all, 0.5), hist_quantile(&all, 0.99),
               hist_quantile(&all, 0.999), syncs, per_sync);
    }
    if (!cfg.dir && nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "stele-bench: could not remove %s: %s\n", dir, strerror(errno));
    return rc == 0 ? 0 : 1;
}

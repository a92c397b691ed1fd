/*
 * runner.c - one run: a store opened in a fresh directory, N appender threads
 * appending for --duration seconds, every append timed into a per-thread
 * histogram (no sampling), then the store closed and its directory removed.
 *
 * The clock starts only once every thread has opened its per-thread context
 * (a SQLite connection, say), so connection set-up is not counted against a
 * store. It stops when the last thread has returned from its last append:
 * an append in flight when time is up is waited for and counted, so slow
 * appends are never dropped from the latency tail.
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "histogram.h"

#define PROGRESS_INTERVAL_NS 250000000u
#define TICK_NS 50000000u

/* The start gate: workers wait on it until every one of them is ready. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;
    int state;                       /* 0 wait, 1 go, -1 abort */
};

struct run {
    const struct config *cfg;
    const struct target *target;
    void *db;
    struct gate gate;
    atomic_int stop;
    atomic_int failed;
};

struct worker {
    struct run *run;
    int id;
    _Atomic uint64_t records;        /* read by the progress display while the run goes on */
    struct histogram hist;
};

uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int gate_wait(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->ready++;
    pthread_cond_broadcast(&g->cv);
    while (g->state == 0)
        pthread_cond_wait(&g->cv, &g->mu);
    int state = g->state;
    pthread_mutex_unlock(&g->mu);
    return state;
}

/* Opens the gate once `count` workers are waiting at it (or aborts them). */
static void gate_open(struct gate *g, int count, int state)
{
    pthread_mutex_lock(&g->mu);
    while (state > 0 && g->ready < count)
        pthread_cond_wait(&g->cv, &g->mu);
    g->state = state;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Fills recs with the next batch; keys are unique within the run ("k<thread>-<seq>"). */
static void make_batch(struct worker *w, int keyed, const void *payload, char (*keys)[BENCH_KEY_SIZE_MAX],
                       uint64_t *seq, struct bench_record *recs)
{
    const struct config *cfg = w->run->cfg;
    for (int i = 0; i < cfg->batch; i++) {
        recs[i] = (struct bench_record){.payload = payload, .payload_size = cfg->record_size};
        if (keyed) {
            recs[i].key = keys[i];
            recs[i].key_size = bench_format_key(keys[i], w->id, (*seq)++);
        }
    }
}

static void append_loop(struct worker *w, void *ctx, const void *payload)
{
    struct run *r = w->run;
    int keyed = r->cfg->keys || r->target->always_keyed;
    struct bench_record recs[BENCH_BATCH_MAX];
    char keys[BENCH_BATCH_MAX][BENCH_KEY_SIZE_MAX];
    uint64_t seq = 0;
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        make_batch(w, keyed, payload, keys, &seq, recs);
        uint64_t t0 = mono_ns();
        int rc = r->target->append(ctx, recs, r->cfg->batch);
        uint64_t t1 = mono_ns();
        if (rc != 0) {
            atomic_store(&r->failed, 1);
            atomic_store(&r->stop, 1);
            return;
        }
        hist_record(&w->hist, t1 - t0);
        atomic_fetch_add_explicit(&w->records, (uint64_t)r->cfg->batch, memory_order_relaxed);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    size_t size = r->cfg->record_size;
    /* Pseudo-random bytes (xorshift), not zeros: no store gets a free ride by compressing a constant payload. */
    unsigned char *payload = malloc(size ? size : 1);
    uint64_t x = 0x9e3779b97f4a7c15u ^ (uint64_t)(w->id + 1);
    for (size_t i = 0; payload && i < size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        payload[i] = (unsigned char)x;
    }
    void *ctx = NULL;
    if (!payload || r->target->thread_open(r->db, w->id, &ctx) != 0) {
        if (!payload)
            fprintf(stderr, "stele-bench: out of memory\n");
        atomic_store(&r->failed, 1);
        ctx = NULL;
    }
    /* Every worker reaches the gate, even a failed one: main waits for all of them. */
    if (gate_wait(&r->gate) > 0 && ctx) {
        if (r->cfg->inflight > 1) {
            if (r->target->append_inflight(ctx, r->cfg, payload, w->id, &r->stop, &w->hist, &w->records) != 0) {
                atomic_store(&r->failed, 1);
                atomic_store(&r->stop, 1);
            }
        } else {
            append_loop(w, ctx, payload);
        }
    }
    if (ctx)
        r->target->thread_close(ctx);
    free(payload);
    return NULL;
}

static uint64_t records_so_far(struct worker *w, int count)
{
    uint64_t sum = 0;
    for (int i = 0; i < count; i++)
        sum += atomic_load_explicit(&w[i].records, memory_order_relaxed);
    return sum;
}

static void progress_show(const struct progress *pg, double elapsed_s, double duration_s, uint64_t records)
{
    fprintf(stderr, "\r\033[Kstele-bench: [%d/%d] %s, %d thread%s, run %d/%d: %.1f/%.1f s, %.0f records/s",
            pg->step, pg->step_count, pg->engine, pg->threads, pg->threads == 1 ? "" : "s", pg->run, pg->runs,
            elapsed_s, duration_s, elapsed_s > 0 ? (double)records / elapsed_s : 0.0);
}

/* Sleeps until the run's time is up (or a worker failed), showing progress. */
static void wait_for_end(struct run *r, struct worker *w, int count, uint64_t t0, const struct progress *pg)
{
    uint64_t duration_ns = (uint64_t)(r->cfg->duration_s * 1e9), last_shown = 0;
    for (;;) {
        uint64_t now = mono_ns() - t0;
        if (now >= duration_ns || atomic_load(&r->failed))
            break;
        if (pg->enabled && now - last_shown >= PROGRESS_INTERVAL_NS) {
            progress_show(pg, (double)now / 1e9, r->cfg->duration_s, records_so_far(w, count));
            last_shown = now;
        }
        uint64_t left = duration_ns - now, nap = left < TICK_NS ? left : TICK_NS;
        nanosleep(&(struct timespec){0, (long)nap}, NULL);
    }
    if (pg->enabled)
        fprintf(stderr, "\r\033[K");
}

/* CPU time (user and system) this process's threads have used so far, ns. */
static double process_cpu_ns(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return ((double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec) * 1e9 +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e3;
}

/* Starts the workers, lets them run, joins them; merges their histograms
 * into all. *out_cpu_ns: the process's CPU time from the start to the stop
 * signal (the workers', the store's threads', the kernel's on their behalf). */
static int drive(struct run *r, int threads, const struct progress *pg, struct histogram *all,
                 uint64_t *out_records, double *out_seconds, double *out_cpu_ns)
{
    struct worker *w = calloc((size_t)threads, sizeof *w);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    int started = 0;
    if (!w || !tid)
        fprintf(stderr, "stele-bench: out of memory\n");
    for (; w && tid && started < threads; started++) {
        w[started].run = r;
        w[started].id = started;
        if (pthread_create(&tid[started], NULL, worker_main, &w[started]) != 0) {
            fprintf(stderr, "stele-bench: pthread_create: thread %d of %d failed\n", started + 1, threads);
            break;
        }
    }
    int ok = w && tid && started == threads;
    double cpu0 = process_cpu_ns();
    gate_open(&r->gate, started, ok ? 1 : -1);
    uint64_t t0 = mono_ns();
    if (ok)
        wait_for_end(r, w, started, t0, pg);
    atomic_store(&r->stop, 1);
    double cpu1 = process_cpu_ns();
    *out_cpu_ns = cpu0 >= 0 && cpu1 >= cpu0 ? cpu1 - cpu0 : -1;
    for (int i = 0; i < started; i++) {
        pthread_join(tid[i], NULL);
        hist_merge(all, &w[i].hist);
    }
    *out_seconds = (double)(mono_ns() - t0) / 1e9;
    *out_records = w ? records_so_far(w, started) : 0;
    free(w);
    free(tid);
    return ok && !atomic_load(&r->failed) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void summarise(const struct histogram *all, uint64_t records, double seconds, double cpu_ns,
                      const struct target_stats *ts, struct run_result *out)
{
    out->records = records;
    out->seconds = seconds;
    out->records_per_s = seconds > 0 ? (double)records / seconds : 0;
    out->p50_us = (double)hist_quantile(all, 0.5) / 1e3;
    out->p99_us = (double)hist_quantile(all, 0.99) / 1e3;
    out->p999_us = (double)hist_quantile(all, 0.999) / 1e3;
    out->syncs_per_s = ts->syncs_known && seconds > 0 ? (double)ts->syncs / seconds : -1;
    out->records_per_sync = ts->syncs_known && ts->syncs ? (double)records / (double)ts->syncs : -1;
    out->writer_ns_per_record = ts->writer_ns_per_record;
    out->cpu_ns_per_record = cpu_ns >= 0 && records ? cpu_ns / (double)records : -1;
}

int run_once(const struct config *cfg, const struct target *t, int threads, const char *parent_dir,
             const struct progress *pg, struct run_result *out)
{
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/%s-XXXXXX", parent_dir, t->name) >= (int)sizeof dir || !mkdtemp(dir)) {
        fprintf(stderr, "stele-bench: cannot create a directory in %s: %s\n", parent_dir, strerror(errno));
        return -1;
    }
    struct histogram *all = calloc(1, sizeof *all);
    struct run r = {.cfg = cfg, .target = t, .gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0}};
    struct target_stats ts = {.writer_ns_per_record = -1};
    uint64_t records = 0;
    double seconds = 0, cpu_ns = -1;
    int rc = -1;
    if (!all)
        fprintf(stderr, "stele-bench: out of memory\n");
    else if (t->open(cfg, dir, &r.db) == 0) {
        rc = drive(&r, threads, pg, all, &records, &seconds, &cpu_ns);
        if (t->close(r.db, &ts) != 0)
            rc = -1;
    }
    if (rc == 0)
        summarise(all, records, seconds, cpu_ns, &ts, out);
    free(all);
    /* Each run starts from an empty store and leaves nothing behind, so a sweep does not fill the disk. */
    bench_remove_tree(dir);
    return rc;
}

int bench_by_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_by_double);
    return v[(n - 1) / 2];
}

int bench_remove_tree(const char *dir)
{
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0)
        return 0;
    fprintf(stderr, "stele-bench: could not remove %s: %s\n", dir, strerror(errno));
    return -1;
}

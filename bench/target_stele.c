/*
 * target_stele.c - stele itself behind the bench's store interface, through
 * the public header only: one log per run, every thread appending to the
 * same handle (the engine's writer batches them into shared syncs).
 */
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define TYPE_NAME "bench.event"

struct stele_db {
    stele_log *log;
    int batch;
};

struct stele_thread {
    struct stele_db *db;
    stele_event ev[BENCH_BATCH_MAX];
    stele_receipt receipts[BENCH_BATCH_MAX];
};

static int fail(const char *what, int code)
{
    fprintf(stderr, "stele-bench: stele: %s: %s: %s\n", what, stele_strerror(code), stele_errmsg());
    return -1;
}

static int stele_db_open(const struct config *cfg, const char *dir, void **out_db)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/log", dir);
    struct stele_db *db = calloc(1, sizeof *db);
    if (!db)
        return fail("open", STELE_ERR_NOMEM);
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.durability = cfg->durability;
    o.io_backend = cfg->backend;
    o.direct_io = !cfg->buffered;
    if (cfg->checkpoint_records >= 0)
        o.checkpoint_records = (uint64_t)cfg->checkpoint_records;
    if (cfg->window_ns >= 0)
        o.idem_window_ns = (uint64_t)cfg->window_ns;
    /* Large records must fit: payload_size_max is fixed at creation. */
    if (cfg->record_size > o.payload_size_max)
        o.payload_size_max = (uint32_t)cfg->record_size;
    int code = stele_open(path, &o, &db->log);
    if (code != STELE_OK) {
        free(db);
        return fail("open", code);
    }
    db->batch = cfg->batch;
    *out_db = db;
    return 0;
}

static int stele_thread_open(void *db, int thread_id, void **out_thread)
{
    (void)thread_id;
    struct stele_thread *t = calloc(1, sizeof *t);
    if (!t)
        return fail("thread", STELE_ERR_NOMEM);
    t->db = db;
    *out_thread = t;
    return 0;
}

static int stele_target_append(void *thread, const struct bench_record *recs, int count)
{
    struct stele_thread *t = thread;
    for (int i = 0; i < count; i++) {
        t->ev[i] = (stele_event){.type = TYPE_NAME, .type_size = sizeof TYPE_NAME - 1,
                                 .key = recs[i].key, .key_size = recs[i].key_size,
                                 .payload = recs[i].payload, .payload_size = recs[i].payload_size};
    }
    /* One record goes through stele_append, the call an application makes per event. */
    int code = count == 1 ? stele_append(t->db->log, t->ev, t->receipts)
                          : stele_append_batch(t->db->log, t->ev, (size_t)count, t->receipts);
    if (code != STELE_OK)
        return fail("append", code);
    return 0;
}

/* One append in flight: its event and key live here until completed. */
struct slot {
    struct inflight *owner;
    stele_event ev;
    char key[BENCH_KEY_SIZE_MAX];
    uint64_t t0;
    int index;
};

/* A thread's in-flight appends; completions arrive on an engine thread. */
struct inflight {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int *free_slots;
    int free_count;
    int failed;
    struct histogram *hist;
    _Atomic uint64_t *records;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_done(void *ctx, int code, const stele_receipt *receipts, size_t count)
{
    (void)receipts;
    (void)count;
    struct slot *sl = ctx;
    struct inflight *f = sl->owner;
    uint64_t t1 = now_ns();
    pthread_mutex_lock(&f->mu);
    if (code != STELE_OK) {
        f->failed = code;
    } else {
        hist_record(f->hist, t1 - sl->t0);
        atomic_fetch_add_explicit(f->records, 1, memory_order_relaxed);
    }
    f->free_slots[f->free_count++] = sl->index;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* Keeps cfg->inflight appends queued from this one thread (stele_append_async). */
static int stele_append_inflight(void *thread, const struct config *cfg, const void *payload, int thread_id,
                                 _Atomic int *stop, struct histogram *hist, _Atomic uint64_t *records)
{
    struct stele_thread *t = thread;
    int n = cfg->inflight, rc = 0;
    struct slot *slots = calloc((size_t)n, sizeof *slots);
    struct inflight f = {.hist = hist, .records = records, .free_slots = calloc((size_t)n, sizeof(int))};
    if (!slots || !f.free_slots) {
        free(slots);
        free(f.free_slots);
        return fail("in-flight slots", STELE_ERR_NOMEM);
    }
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    for (int i = 0; i < n; i++)
        f.free_slots[f.free_count++] = i;
    uint64_t seq = 0;
    int keyed = cfg->keys;
    while (!atomic_load_explicit(stop, memory_order_relaxed)) {
        pthread_mutex_lock(&f.mu);
        while (f.free_count == 0 && !f.failed)
            pthread_cond_wait(&f.cv, &f.mu);
        int idx = f.free_slots[--f.free_count], failed = f.failed;
        pthread_mutex_unlock(&f.mu);
        if (failed) {
            rc = fail("append (async)", failed);
            break;
        }
        struct slot *sl = &slots[idx];
        sl->owner = &f;
        sl->index = idx;
        sl->ev = (stele_event){.type = TYPE_NAME, .type_size = sizeof TYPE_NAME - 1, .payload = payload,
                               .payload_size = cfg->record_size};
        if (keyed) {
            sl->ev.key = sl->key;
            sl->ev.key_size = bench_format_key(sl->key, thread_id, seq++);
        }
        sl->t0 = now_ns();
        int code = stele_append_async(t->db->log, &sl->ev, 1, on_done, sl);
        if (code != STELE_OK) {
            rc = fail("append_async", code);
            break;
        }
    }
    /* Every queued append completes before its slot can go away. */
    pthread_mutex_lock(&f.mu);
    while (f.free_count < n)
        pthread_cond_wait(&f.cv, &f.mu);
    pthread_mutex_unlock(&f.mu);
    pthread_mutex_destroy(&f.mu);
    pthread_cond_destroy(&f.cv);
    free(slots);
    free(f.free_slots);
    return rc;
}

static void stele_thread_close(void *thread)
{
    free(thread);
}

/* CPU time so far of this process's thread named name (the engine names its
 * threads: stele-writer, stele-syncer, ...), from /proc; -1 when there is none. */
double bench_thread_cpu_ns(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    double ns = -1;
    for (struct dirent *e; ns < 0 && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int named = fgets(comm, sizeof comm, f) && strcspn(comm, "\n") == strlen(name) &&
                    strncmp(comm, name, strlen(name)) == 0;
        fclose(f);
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
        unsigned long long run = 0;
        if (named && (f = fopen(path, "r"))) {
            if (fscanf(f, "%llu", &run) == 1) /* first field: time on a CPU, ns */
                ns = (double)run;
            fclose(f);
        }
    }
    closedir(d);
    return ns;
}

static int stele_db_close(void *dbp, struct target_stats *out_stats)
{
    struct stele_db *db = dbp;
    stele_stats st;
    int rc = 0;
    out_stats->writer_ns_per_record = -1;
    if (stele_stats_get(db->log, &st) == STELE_OK) {
        out_stats->syncs = st.syncs;
        out_stats->syncs_known = 1;
        double ns = bench_thread_cpu_ns("stele-writer");
        if (ns >= 0 && st.appends_new > 0)
            out_stats->writer_ns_per_record = ns / (double)st.appends_new;
    }
    int code = stele_close(db->log);
    if (code != STELE_OK)
        rc = fail("close", code);
    free(db);
    return rc;
}

const struct target target_stele = {
    .name = "stele",
    .open = stele_db_open,
    .thread_open = stele_thread_open,
    .append = stele_target_append,
    .append_inflight = stele_append_inflight,
    .thread_close = stele_thread_close,
    .close = stele_db_close,
};

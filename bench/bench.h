/*
 * bench.h - what the parts of stele-bench share: the configuration parsed from
 * the command line, the interface every measured store implements (stele
 * itself and each peer), and the result of one run.
 *
 * A store ("target") is driven the same way whatever it is: opened once per
 * run in a fresh directory, one context per appender thread, then each thread
 * appends `batch` records per call, blocking until the store acknowledges
 * them under the configured durability. Keeping the workload in one place
 * (runner.c) and the stores behind this interface is what makes the side by
 * side numbers comparable.
 */
#ifndef STELE_BENCH_H
#define STELE_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "histogram.h"
#include "stele.h"

#define BENCH_THREADS_MAX 1024
#define BENCH_THREAD_LIST_MAX 32     /* entries in --threads 1,4,16,64 */
#define BENCH_PEERS_MAX 12           /* --peer given this many times at most */
#define BENCH_BATCH_MAX 64
#define BENCH_RUNS_MAX 99
#define BENCH_RECORD_SIZE_MAX (1024u * 1024u) /* stele's default payload_size_max */
#define BENCH_KEY_SIZE_MAX 48

struct config {
    size_t record_size;
    int thread_list[BENCH_THREAD_LIST_MAX];
    int thread_list_count;
    int threads_given;               /* --threads was on the command line (--plot sweeps 1..64 otherwise) */
    int inflight;
    int batch;
    stele_durability durability;
    int keys;                        /* stele appends carry an idempotency key */
    int key_cost;                    /* --key-cost: stele without and with keys, interleaved */
    int buffered;                    /* --buffered: stele writes through the page cache (direct_io 0) */
    double duration_s;
    const char *dir;                 /* where runs create their stores; a temporary dir when NULL */
    int json;
    int runs;
    const char *plot_path;
    const char *peer_names[BENCH_PEERS_MAX];
    int peer_count;
    stele_io_backend backend;
    uint64_t index_keys;             /* --index N: the index benchmark (index_bench.c) instead of a sweep */
    long long checkpoint_records;    /* --checkpoint-records N for stele; -1 = the engine's default */
    long long window_ns;             /* --window SECONDS for stele, in ns; -1 = the engine's default */
    int read_scan, read_get, read_since; /* --read-*: the read benchmark (read_bench.c) instead of a sweep */
    uint64_t read_size;              /* --read-size BYTES: the log it builds */
    int compression_ratio;           /* --compression-ratio: the compression workload (compress_bench.c) */
    size_t events;                   /* --events N: realistic events it generates */
    uint64_t seed;                   /* --seed N: their seed */
    int level;                       /* --level N: the zstd level */
    uint32_t dict_size;              /* --dict-size BYTES: the dictionary's capacity, 0 = the engine's default */
};

/* One record to append; key_size is 0 when the record has no key. */
struct bench_record {
    const char *key;
    size_t key_size;
    const void *payload;
    size_t payload_size;
};

/* What a store reports about itself after a run. */
struct target_stats {
    uint64_t syncs;
    int syncs_known;                 /* 0: the store does not say how often it synced */
    /* stele: CPU time of its writer thread, the one every append goes
     * through, per record appended; < 0 when unknown */
    double writer_ns_per_record;
};

/* A store under measurement. Every function returns 0 or -1 after printing
 * "stele-bench: <name>: <what failed>: <why>" to stderr. */
struct target {
    const char *name;
    int always_keyed;                /* every record carries a key whatever --keys says */
    int never_syncs;                 /* never syncs whatever --durability says (its rows say "none") */
    int (*open)(const struct config *cfg, const char *dir, void **out_db);
    int (*thread_open)(void *db, int thread_id, void **out_thread);
    int (*append)(void *thread, const struct bench_record *recs, int count);
    /* Optional: keeps cfg->inflight appends of one record in flight until
     * *stop, recording each one's latency (submit to completion, ns) in hist
     * and counting them in *records. NULL when the store has no async API. */
    int (*append_inflight)(void *thread, const struct config *cfg, const void *payload, int thread_id,
                           _Atomic int *stop, struct histogram *hist, _Atomic uint64_t *records);
    void (*thread_close)(void *thread);
    int (*close)(void *db, struct target_stats *out_stats);
};

/* The measurements of one run of one store at one thread count. */
struct run_result {
    uint64_t records;
    double seconds;
    double records_per_s;
    double p50_us, p99_us, p999_us;
    double syncs_per_s;              /* < 0 when unknown */
    double records_per_sync;         /* < 0 when unknown */
    double writer_ns_per_record;     /* < 0 when unknown (target_stats) */
    double cpu_ns_per_record;        /* the whole process's CPU time in the run, per record; < 0 unknown */
};

/* One configuration's runs, summarised: the median run by records_per_s, and
 * the spread of records_per_s over all runs. */
struct result {
    const char *engine;
    int keyed;
    int never_syncs;                 /* the target's never_syncs */
    int threads;
    struct run_result median;
    double records_per_s_min, records_per_s_max;
    double stele_ratio;              /* stele's records_per_s / this one's; 0 for stele itself */
    double stele_p99_us;             /* stele's p99 at the same cell, beside this one's; 0 for stele itself */
    double ratio_min, ratio_max;     /* the range of the rounds' stele/peer records_per_s ratios */
};

extern const struct target target_stele;
extern const struct target peer_fdatasync;
extern const struct target peer_write;
extern const struct target peer_group;
#ifdef BENCH_HAVE_SQLITE
extern const struct target peer_sqlite;
extern const struct target peer_sqlite_per_thread;
#endif
#ifdef BENCH_HAVE_LEVELDB
extern const struct target peer_leveldb;
#endif
#ifdef BENCH_HAVE_ROCKSDB
extern const struct target peer_rocksdb;
#endif

/* Progress shown on a terminal while a run goes on. */
struct progress {
    int enabled;
    int step, step_count;            /* which of all the runs this is */
    const char *engine;
    int threads, run, runs;
};

/* runner.c: runs one store once, in a fresh directory under parent_dir. */
/* Writes the key "k<id>-<seq>" (no NUL) into dst, which holds
 * BENCH_KEY_SIZE_MAX bytes, and returns its length. Faster than snprintf,
 * which would otherwise be a visible part of the cost of a key. */
static inline size_t bench_format_key(char *dst, int id, uint64_t seq)
{
    char digits[20];
    size_t n = 0, len = 0;
    dst[len++] = 'k';
    unsigned u = (unsigned)id;
    do
        digits[n++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    while (n)
        dst[len++] = digits[--n];
    dst[len++] = '-';
    do
        digits[n++] = (char)('0' + seq % 10);
    while ((seq /= 10) != 0);
    while (n)
        dst[len++] = digits[--n];
    return len;
}

/* peer_fdatasync.c: the frame the file peers write, a 4-byte little-endian
 * length and the payload per record: the bytes recs take, and the frames put
 * at dst (which holds that many). */
size_t bench_frame_size(const struct bench_record *recs, int count);
void bench_frame_put(unsigned char *dst, const struct bench_record *recs, int count);
/* Writes all of buf: a short write is continued, EINTR retried; 0, or -1 with errno (EIO for no progress). */
int bench_write_all(int fd, const unsigned char *buf, size_t size);

/* compress_bench.c: the --compression-ratio workload in dir; 0, or -1 after printing why. */
int compress_bench(const struct config *cfg, const char *dir);
/* index_bench.c: the index's memory per key and reopen times at keys keys, in dir. */
int index_bench(const struct config *cfg, uint64_t keys, const char *dir);
/* read_bench.c: verified scans, gets by LSN and --since lookups on a log of cfg->read_size bytes built in dir. */
int read_bench(const struct config *cfg, const char *dir);
/* Removes dir and everything under it; 0 or -1 after printing why. */
int bench_remove_tree(const char *dir);
/* qsort's comparison of doubles, ascending. */
int bench_by_double(const void *a, const void *b);
/* The median of v[0..n) (the lower one for even n); sorts v in place. */
double bench_median(double *v, int n);
int run_once(const struct config *cfg, const struct target *t, int threads, const char *parent_dir,
             const struct progress *pg, struct run_result *out);

/* report.c */
const char *durability_name(stele_durability d);
void report_header(const struct config *cfg);
void report_result(const struct config *cfg, const struct result *r);
/* After a cell's rows (stele's first, then count - 1 peers'): stele/peer for each peer, p99s side by side. */
void report_ratios(const struct config *cfg, const struct result *cell, int count);

/* plot.c: writes an SVG of records/s against threads for every engine; 0, or -1 with a message. */
int plot_write(const struct config *cfg, const struct result *results, int result_count);

uint64_t mono_ns(void);
/* target_stele.c: CPU time so far of this process's thread named name (ns), -1 when there is none. */
double bench_thread_cpu_ns(const char *name);

#endif

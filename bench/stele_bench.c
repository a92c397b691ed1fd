/*
 * stele_bench.c - stele-bench: append throughput and latency of stele,
 * measured through the public API only, side by side with the stores people
 * would otherwise use (PRODUCT.md, "Performance targets").
 *
 * For every thread count of --threads, stele and each --peer run the same
 * workload (record size, threads, duration, durability), --runs rounds of
 * one run each, every run on a fresh store. The rounds interleave the stores
 * (stele, then each peer; the next round in the reverse order), so that the
 * machine's noise falls on all of them alike. The median run by records/s is
 * reported, with the min and max, and each peer's row says how many times
 * faster stele was; a block after each cell gives every ratio again with
 * both p99s side by side. runner.c drives a run, target_stele.c and
 * peer_<name>.c are the stores, report.c prints, plot.c draws the SVG.
 *
 * Exit codes: 0 ok, 2 usage (including a peer or feature not in this build),
 * 1 a store failed during a run.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "bench.h"

#define TMPFS_MAGIC_NUMBER 0x01021994
#define DURATION_S_MAX 86400.0
#define RESULTS_MAX (BENCH_THREAD_LIST_MAX * (BENCH_PEERS_MAX + 1))

/* Every peer stele-bench knows; those whose library was missing at build time have no target. */
static const struct peer_entry {
    const char *name;
    const struct target *target;
    const char *package;
} peer_table[] = {
    {"group", &peer_group, NULL},
    {"write", &peer_write, NULL},
    {"fdatasync", &peer_fdatasync, NULL},
#ifdef BENCH_HAVE_SQLITE
    {"sqlite", &peer_sqlite, "libsqlite3-dev"},
    {"sqlite-conn-per-thread", &peer_sqlite_per_thread, "libsqlite3-dev"},
#else
    {"sqlite", NULL, "libsqlite3-dev"},
    {"sqlite-conn-per-thread", NULL, "libsqlite3-dev"},
#endif
#ifdef BENCH_HAVE_ROCKSDB
    {"rocksdb", &peer_rocksdb, "librocksdb-dev"},
#else
    {"rocksdb", NULL, "librocksdb-dev"},
#endif
#ifdef BENCH_HAVE_LEVELDB
    {"leveldb", &peer_leveldb, "libleveldb-dev"},
#else
    {"leveldb", NULL, "libleveldb-dev"},
#endif
};
#define PEER_TABLE_COUNT (sizeof peer_table / sizeof peer_table[0])

static void usage(FILE *f)
{
    fprintf(f,
            "usage: stele-bench [--record-size BYTES] [--threads N[,N...]] [--inflight N] [--batch N]\n"
            "                   [--durability sync|interval|none] [--keys] [--duration SECONDS] [--runs N]\n"
            "                   [--dir PATH] [--peer NAME|all]... [--json] [--plot FILE.svg] [--posix]\n"
            "                   [--checkpoint-records N]   (stele's option; 0 = index checkpoint only at close)\n"
            "                   [--window SECONDS]   stele's idempotency window (default 24 h; 0 = forever);\n"
            "                                  a short one keeps the index at a steady size\n"
            "                   [--buffered]   stele's option direct_io 0: batches written through the page cache\n"
            "                   [--key-cost]   stele alone, without and with a key on every append, runs\n"
            "                                  interleaved; prints the keyed/unkeyed ratio\n"
            "       stele-bench --index KEYS [--record-size BYTES] [--runs N] [--dir PATH] [--json]\n"
            "                   the index at KEYS keys: memory per key, reopen with its checkpoint vs rebuilt\n"
            "       stele-bench [--read-scan] [--read-get] [--read-since] [--read-size BYTES] [--batch N] [--runs N]\n"
            "                   [--dir PATH] [--json]   reads on a log of BYTES (default 1 GiB) of realistic JSON\n"
            "                   events (--batch per append, default 64): verified scan GB/s, get by LSN and\n"
            "                   --since latency (median, p99), from the page cache\n"
            "       stele-bench --compression-ratio [--events N] [--seed N] [--level L] [--dict-size BYTES] [--batch N]\n"
            "                   [--durability D] [--duration SECONDS] [--runs N] [--dir PATH] [--json]\n"
            "                   realistic JSON events (seeded): stored bytes without compression, with zstd\n"
            "                   at level L, with zstd and a dictionary trained on the first fifth; then\n"
            "                   append throughput with compression off and on, runs interleaved\n"
            "                   (defaults: --events 100000 --seed 1 --level 3)\n"
            "defaults: --record-size 100 --threads 1 --inflight 1 --batch 1 --durability sync --duration 5 --runs 1\n"
            "peers (--peer all: every one built in), each measured in the same sweep as stele, rounds interleaved:\n"
            "  group      the textbook group commit: appenders queue under a mutex, the one that finds no write\n"
            "             in progress leads: one write() and one fdatasync() for all queued, then wakes them\n"
            "             (sync: the file's first 64 MiB are zero-filled and synced before the clock starts)\n"
            "  write      one plain buffered write() per append under a mutex, never synced (the page cache's rate)\n"
            "  fdatasync  one write() + fdatasync() per append under a mutex (no grouping)\n"
            "  sqlite     one connection shared by all threads under a mutex, WAL, synchronous=FULL, a\n"
            "             transaction per event, a UNIQUE key column with --keys\n"
            "  sqlite-conn-per-thread  the same with a connection per thread and a busy handler\n"
            "  rocksdb    sync writes (its own write group); leveldb  sync writes, 64 MiB write buffer, snappy\n"
            "  with --durability interval or none no peer syncs per event (sqlite: synchronous NORMAL / OFF)\n"
            "--plot FILE.svg writes an SVG chart (made by the bench, no gnuplot) of records/s against threads for\n"
            "       stele and every peer; without --threads it sweeps 1,2,4,8,16,32,64\n"
            "peers built in:");
    for (size_t i = 0; i < PEER_TABLE_COUNT; i++)
        if (peer_table[i].target)
            fprintf(f, " %s", peer_table[i].name);
    fprintf(f, "\n");
}

/* A whole decimal number in [min, max]; -1 otherwise. */
static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* "1,4,16,64": thread counts to sweep, in the order given. */
static int parse_thread_list(const char *s, struct config *cfg)
{
    cfg->thread_list_count = 0;
    char buf[512];
    if (snprintf(buf, sizeof buf, "%s", s) >= (int)sizeof buf)
        return -1;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long n;
        if (cfg->thread_list_count == BENCH_THREAD_LIST_MAX || parse_long(tok, 1, BENCH_THREADS_MAX, &n) != 0)
            return -1;
        cfg->thread_list[cfg->thread_list_count++] = (int)n;
    }
    return cfg->thread_list_count > 0 ? 0 : -1;
}

static int parse_durability(const char *s, stele_durability *out)
{
    static const stele_durability all[] = {STELE_DURABILITY_SYNC, STELE_DURABILITY_INTERVAL, STELE_DURABILITY_NONE};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, durability_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    return -1;
}

static int parse_duration(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v > 0 && v <= DURATION_S_MAX))
        return -1;
    *out = v;
    return 0;
}

/* Applies one option; -1 when its value is out of range or malformed. */
static int apply_option(int c, const char *arg, struct config *cfg)
{
    long n = 0;
    switch (c) {
    case 's':
        if (parse_long(arg, 0, BENCH_RECORD_SIZE_MAX, &n) != 0)
            return -1;
        cfg->record_size = (size_t)n;
        return 0;
    case 'i': /* accepted whatever the build; main() refuses > 1 while there is no async API */
        if (parse_long(arg, 1, 1 << 20, &n) != 0)
            return -1;
        cfg->inflight = (int)n;
        return 0;
    case 'b':
        if (parse_long(arg, 1, BENCH_BATCH_MAX, &n) != 0)
            return -1;
        cfg->batch = (int)n;
        return 0;
    case 'r':
        if (parse_long(arg, 1, BENCH_RUNS_MAX, &n) != 0)
            return -1;
        cfg->runs = (int)n;
        return 0;
    case 't': cfg->threads_given = 1; return parse_thread_list(arg, cfg);
    case 'd': return parse_durability(arg, &cfg->durability);
    case 'D': return parse_duration(arg, &cfg->duration_s);
    case 'e':
        if (cfg->peer_count == BENCH_PEERS_MAX)
            return -1;
        cfg->peer_names[cfg->peer_count++] = arg;
        return 0;
    case 'k': cfg->keys = 1; return 0;
    case 'K': cfg->key_cost = 1; return 0;
    case 'B': cfg->buffered = 1; return 0;
    case 'c':
        if (parse_long(arg, 0, 1000000000000L, &n) != 0)
            return -1;
        cfg->checkpoint_records = n;
        return 0;
    case 'w': {
        char *end;
        double w = strtod(arg, &end);
        if (end == arg || *end || !(w >= 0 && w <= 365.0 * 86400))
            return -1;
        cfg->window_ns = (long long)(w * 1e9);
        return 0;
    }
    case 'x':
        if (parse_long(arg, 1, 1000000000L, &n) != 0)
            return -1;
        cfg->index_keys = (uint64_t)n;
        return 0;
    case 'C': cfg->compression_ratio = 1; return 0;
    case 'E':
        if (parse_long(arg, 1000, 10000000L, &n) != 0)
            return -1;
        cfg->events = (size_t)n;
        return 0;
    case 'S':
        if (parse_long(arg, 0, 1000000000000L, &n) != 0)
            return -1;
        cfg->seed = (uint64_t)n;
        return 0;
    case 'L':
        if (parse_long(arg, 1, 19, &n) != 0)
            return -1;
        cfg->level = (int)n;
        return 0;
    case 'Z':
        if (parse_long(arg, 256, 1048576, &n) != 0)
            return -1;
        cfg->dict_size = (uint32_t)n;
        return 0;
    case 'p': cfg->dir = arg; return 0;
    case '1': cfg->read_scan = 1; return 0;
    case '2': cfg->read_get = 1; return 0;
    case '3': cfg->read_since = 1; return 0;
    case '4':
        if (parse_long(arg, 1 << 20, 1L << 42, &n) != 0)
            return -1;
        cfg->read_size = (uint64_t)n;
        return 0;
    case 'j': cfg->json = 1; return 0;
    case 'g': cfg->plot_path = arg; return 0;
    case 'P': cfg->backend = STELE_IO_POSIX; return 0;
    default: return -1;
    }
}

static int parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option opts[] = {
        {"record-size", required_argument, 0, 's'}, {"threads", required_argument, 0, 't'},
        {"inflight", required_argument, 0, 'i'},    {"batch", required_argument, 0, 'b'},
        {"durability", required_argument, 0, 'd'},  {"keys", no_argument, 0, 'k'},
        {"key-cost", no_argument, 0, 'K'},          {"buffered", no_argument, 0, 'B'},
        {"duration", required_argument, 0, 'D'},    {"runs", required_argument, 0, 'r'},
        {"dir", required_argument, 0, 'p'},         {"peer", required_argument, 0, 'e'},
        {"json", no_argument, 0, 'j'},              {"plot", required_argument, 0, 'g'},
        {"posix", no_argument, 0, 'P'},             {"help", no_argument, 0, 'h'},
        {"index", required_argument, 0, 'x'},       {"checkpoint-records", required_argument, 0, 'c'},
        {"window", required_argument, 0, 'w'},
        {"read-scan", no_argument, 0, '1'},         {"read-get", no_argument, 0, '2'},
        {"read-since", no_argument, 0, '3'},        {"read-size", required_argument, 0, '4'},
        {"compression-ratio", no_argument, 0, 'C'}, {"events", required_argument, 0, 'E'},
        {"seed", required_argument, 0, 'S'},        {"level", required_argument, 0, 'L'},
        {"dict-size", required_argument, 0, 'Z'},
        {0, 0, 0, 0}};
    int c, idx = -1;
    while ((c = getopt_long(argc, argv, "", opts, &idx)) != -1) {
        if (c == 'h') {
            usage(stdout);
            exit(0);
        }
        if (apply_option(c, optarg, cfg) != 0) {
            if (c != '?' && idx >= 0)
                fprintf(stderr, "stele-bench: invalid --%s: %s\n", opts[idx].name, optarg ? optarg : "");
            return -1;
        }
        idx = -1;
    }
    if (optind != argc)
        fprintf(stderr, "stele-bench: unexpected argument: %s\n", argv[optind]);
    return optind == argc ? 0 : -1;
}

static int seen_target(const struct target **targets, int count, const struct target *t)
{
    for (int k = 0; k < count; k++)
        if (targets[k] == t)
            return 1;
    return 0;
}

/* Resolves --peer names into targets after stele itself; exit code 2 for a name not built or not known. */
static int resolve_targets(const struct config *cfg, const struct target **targets, int *out_count)
{
    int count = 0;
    targets[count++] = &target_stele;
    for (int i = 0; i < cfg->peer_count; i++) {
        const struct peer_entry *e = NULL;
        for (size_t j = 0; j < PEER_TABLE_COUNT && !e; j++)
            if (strcmp(cfg->peer_names[i], peer_table[j].name) == 0)
                e = &peer_table[j];
        if (strcmp(cfg->peer_names[i], "all") == 0) {
            for (size_t j = 0; j < PEER_TABLE_COUNT; j++)
                if (peer_table[j].target && !seen_target(targets, count, peer_table[j].target))
                    targets[count++] = peer_table[j].target;
            continue;
        }
        if (!e) {
            fprintf(stderr, "stele-bench: unknown peer '%s' (known: all", cfg->peer_names[i]);
            for (size_t j = 0; j < PEER_TABLE_COUNT; j++)
                fprintf(stderr, ", %s", peer_table[j].name);
            fprintf(stderr, ")\n");
            return 2;
        }
        if (!e->target) {
            fprintf(stderr, "stele-bench: peer '%s' is not built in: %s was not installed when stele-bench was "
                            "compiled (install it and rebuild)\n", e->name, e->package);
            return 2;
        }
        if (!seen_target(targets, count, e->target))
            targets[count++] = e->target;
    }
    *out_count = count;
    return 0;
}

/* Checks that dir is usable, and warns when it is on tmpfs: syncs cost nothing
 * there, so a durable-append benchmark would measure nothing useful. */
static int check_dir(const char *dir)
{
    struct statfs sf;
    if (statfs(dir, &sf) != 0 || access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr, "stele-bench: --dir %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if ((unsigned long)sf.f_type == TMPFS_MAGIC_NUMBER)
        fprintf(stderr, "stele-bench: warning: %s is on tmpfs, where a sync costs nothing: "
                        "use --dir on the disk you mean to measure\n", dir);
    return 0;
}

static int by_records_per_s(const void *a, const void *b)
{
    double x = ((const struct run_result *)a)->records_per_s, y = ((const struct run_result *)b)->records_per_s;
    return (x > y) - (x < y);
}

/* out gets the median of runs (sorted here) and the spread. With an even
 * number of runs the lower middle one is reported: a run that happened,
 * latencies and all. */
static void summarise(const struct config *cfg, const struct target *t, int threads, struct run_result *runs,
                      struct result *out)
{
    qsort(runs, (size_t)cfg->runs, sizeof runs[0], by_records_per_s);
    *out = (struct result){.engine = t->name, .keyed = cfg->keys || t->always_keyed,
                           .never_syncs = t->never_syncs, .threads = threads,
                           .median = runs[(cfg->runs - 1) / 2], .records_per_s_min = runs[0].records_per_s,
                           .records_per_s_max = runs[cfg->runs - 1].records_per_s};
}

/* --key-cost: stele without keys and with a unique key on every append, at
 * each thread count, the runs interleaved (unkeyed, keyed; keyed, unkeyed;
 * ...) so that both see the same machine. The cost is the median of the
 * rounds' keyed/unkeyed ratios: each round's two runs ran back to back. */
static int key_cost(const struct config *cfg, const char *dir)
{
    struct config plain = *cfg, keyed = *cfg;
    plain.keys = 0;
    keyed.keys = 1;
    struct progress pg = {.enabled = isatty(STDERR_FILENO), .step_count = cfg->thread_list_count * 2 * cfg->runs,
                          .engine = "stele", .runs = cfg->runs};
    report_header(cfg);
    for (int i = 0; i < cfg->thread_list_count; i++) {
        int threads = cfg->thread_list[i];
        struct run_result a[BENCH_RUNS_MAX], b[BENCH_RUNS_MAX];
        double ratio[BENCH_RUNS_MAX];
        pg.threads = threads;
        for (int r = 0; r < cfg->runs; r++) {
            pg.run = r + 1;
            /* Every other round the keyed run goes first, so that neither
             * always runs after the other (and after its close: a keyed
             * run's checkpoint, its freed index). */
            for (int k = 0; k < 2; k++) {
                int keyed_now = (k == 0) == (r % 2 == 1);
                pg.step++;
                if (run_once(keyed_now ? &keyed : &plain, &target_stele, threads, dir, &pg,
                             keyed_now ? &b[r] : &a[r]) != 0)
                    return -1;
            }
            ratio[r] = a[r].records_per_s > 0 ? b[r].records_per_s / a[r].records_per_s : 0;
        }
        struct result ra, rb;
        summarise(&plain, &target_stele, threads, a, &ra);
        summarise(&keyed, &target_stele, threads, b, &rb);
        report_result(&plain, &ra);
        report_result(&keyed, &rb);
        double med = bench_median(ratio, cfg->runs); /* sorted: ratio[0] and ratio[runs - 1] are the range */
        /* The writer thread's CPU time per record: what a key adds on the
         * path every append takes, steadier than appends/s on a busy machine. */
        double wa[BENCH_RUNS_MAX], wb[BENCH_RUNS_MAX], ca[BENCH_RUNS_MAX], cb[BENCH_RUNS_MAX];
        for (int r = 0; r < cfg->runs; r++) {
            wa[r] = a[r].writer_ns_per_record;
            wb[r] = b[r].writer_ns_per_record;
            ca[r] = a[r].cpu_ns_per_record;
            cb[r] = b[r].cpu_ns_per_record;
        }
        double wmed_a = bench_median(wa, cfg->runs), wmed_b = bench_median(wb, cfg->runs);
        /* And the whole process's: what a key costs on every thread (the
         * appender's, the index's background threads'), which on a machine
         * with few cores takes CPU from the writer. */
        double cmed_a = bench_median(ca, cfg->runs), cmed_b = bench_median(cb, cfg->runs);
        if (cfg->json)
            printf("{\"key_cost\":{\"threads\":%d,\"inflight\":%d,\"runs\":%d,\"keyed_over_unkeyed\":%.4f,"
                   "\"min\":%.4f,\"max\":%.4f,\"fewer_appends_pct\":%.2f,"
                   "\"writer_ns_per_record_unkeyed\":%.1f,\"writer_ns_per_record_keyed\":%.1f,"
                   "\"cpu_ns_per_record_unkeyed\":%.1f,\"cpu_ns_per_record_keyed\":%.1f}}\n",
                   threads, cfg->inflight, cfg->runs, med, ratio[0], ratio[cfg->runs - 1], (1 - med) * 100,
                   wmed_a, wmed_b, cmed_a, cmed_b);
        else
            printf("key cost at %d thread%s: keyed/unkeyed appends/s = %.3f (median of %d paired rounds, "
                   "range %.3f-%.3f): %.1f%% fewer appends per second with a key on every append; "
                   "writer thread CPU per record %.0f ns unkeyed, %.0f ns keyed; process CPU per record "
                   "%.0f ns unkeyed, %.0f ns keyed (medians)\n",
                   threads, threads == 1 ? "" : "s", med, cfg->runs, ratio[0], ratio[cfg->runs - 1], (1 - med) * 100,
                   wmed_a, wmed_b, cmed_a, cmed_b);
        fflush(stdout);
    }
    return 0;
}

/* Every thread count, every store, cfg->runs rounds of one run each, the
 * rounds interleaved: stele and then each peer in even rounds, the reverse in
 * odd ones, so that neither always runs first (or right after the other's
 * close). Results are stele's first at each count, then the peers' in the
 * order given, each with stele's ratio: the ratio of the medians, and the
 * range of the rounds' ratios (each round's runs ran back to back). */
static int sweep(const struct config *cfg, const struct target **targets, int target_count, const char *dir,
                 struct result *results, int *out_count)
{
    static struct run_result runs[BENCH_PEERS_MAX + 1][BENCH_RUNS_MAX];
    struct progress pg = {.enabled = isatty(STDERR_FILENO),
                          .step_count = cfg->thread_list_count * target_count * cfg->runs, .runs = cfg->runs};
    int n = 0;
    report_header(cfg);
    for (int i = 0; i < cfg->thread_list_count; i++) {
        int threads = cfg->thread_list[i];
        pg.threads = threads;
        for (int r = 0; r < cfg->runs; r++) {
            pg.run = r + 1;
            for (int j = 0; j < target_count; j++) {
                int k = r % 2 == 0 ? j : target_count - 1 - j;
                pg.engine = targets[k]->name;
                pg.step++;
                if (run_once(cfg, targets[k], threads, dir, &pg, &runs[k][r]) != 0) {
                    fprintf(stderr, "stele-bench: %s at %d thread%s: the run failed\n", targets[k]->name, threads,
                            threads == 1 ? "" : "s");
                    *out_count = n;
                    return -1;
                }
            }
        }
        for (int k = 0; k < target_count; k++) {
            double ratio[BENCH_RUNS_MAX];
            for (int r = 0; r < cfg->runs; r++)
                ratio[r] = runs[k][r].records_per_s > 0 ? runs[0][r].records_per_s / runs[k][r].records_per_s : 0;
            qsort(ratio, (size_t)cfg->runs, sizeof ratio[0], bench_by_double);
            summarise(cfg, targets[k], threads, runs[k], &results[n + k]);
            if (k > 0 && results[n + k].median.records_per_s > 0) {
                results[n + k].stele_ratio = results[n].median.records_per_s / results[n + k].median.records_per_s;
                results[n + k].stele_p99_us = results[n].median.p99_us;
                results[n + k].ratio_min = ratio[0];
                results[n + k].ratio_max = ratio[cfg->runs - 1];
            }
            report_result(cfg, &results[n + k]);
        }
        report_ratios(cfg, &results[n], target_count);
        n += target_count;
    }
    *out_count = n;
    return 0;
}

int main(int argc, char **argv)
{
    struct config cfg = {.record_size = 100, .thread_list = {1}, .thread_list_count = 1, .inflight = 1, .batch = 1,
                         .durability = STELE_DURABILITY_SYNC, .duration_s = 5, .runs = 1,
                         .backend = STELE_IO_URING, .checkpoint_records = -1, .window_ns = -1, .read_size = 1ull << 30,
                         .events = 100000, .seed = 1, .level = 3};
    const struct target *targets[BENCH_PEERS_MAX + 1];
    int target_count = 0;
    if (parse_args(argc, argv, &cfg) != 0) {
        usage(stderr);
        return 2;
    }
    if (cfg.key_cost && (cfg.peer_count || cfg.index_keys || cfg.plot_path)) {
        fprintf(stderr, "stele-bench: --key-cost measures stele alone: no --peer, --index or --plot with it\n");
        return 2;
    }
    int rc = resolve_targets(&cfg, targets, &target_count);
    if (rc != 0)
        return rc;
    /* Only stores with an asynchronous append can keep several in flight
     * from one thread; the peers would need a thread per append instead. */
    for (int i = 0; cfg.inflight > 1 && i < target_count; i++)
        if (!targets[i]->append_inflight) {
            fprintf(stderr, "stele-bench: --inflight %d: %s has no asynchronous append; use --threads\n",
                    cfg.inflight, targets[i]->name);
            return 2;
        }
    if (cfg.plot_path && !cfg.threads_given) {
        static const int plot_threads[] = {1, 2, 4, 8, 16, 32, 64};
        cfg.thread_list_count = (int)(sizeof plot_threads / sizeof plot_threads[0]);
        memcpy(cfg.thread_list, plot_threads, sizeof plot_threads);
    }
    char tmpl[] = "/tmp/stele-bench.XXXXXX";
    const char *dir = cfg.dir ? cfg.dir : mkdtemp(tmpl);
    if (!dir) {
        fprintf(stderr, "stele-bench: mkdtemp %s: %s\n", tmpl, strerror(errno));
        return 1;
    }
    if (cfg.compression_ratio) {
        if (cfg.key_cost || cfg.peer_count || cfg.index_keys || cfg.plot_path) {
            fprintf(stderr, "stele-bench: --compression-ratio measures stele alone: no --key-cost, --peer, --index "
                            "or --plot with it\n");
            return 2;
        }
        rc = check_dir(dir) == 0 && compress_bench(&cfg, dir) == 0 ? 0 : 1;
        if (!cfg.dir)
            rmdir(dir);
        return rc;
    }
    if (cfg.index_keys) {
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/index-XXXXXX", dir);
        if (check_dir(dir) != 0 || !mkdtemp(sub)) {
            fprintf(stderr, "stele-bench: cannot create a directory in %s: %s\n", dir, strerror(errno));
            return 1;
        }
        rc = index_bench(&cfg, cfg.index_keys, sub) == 0 ? 0 : 1;
        bench_remove_tree(sub);
        if (!cfg.dir)
            rmdir(dir);
        return rc;
    }
    if (cfg.read_scan || cfg.read_get || cfg.read_since) {
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/read-XXXXXX", dir);
        if (check_dir(dir) != 0 || !mkdtemp(sub)) {
            fprintf(stderr, "stele-bench: cannot create a directory in %s: %s\n", dir, strerror(errno));
            return 1;
        }
        rc = read_bench(&cfg, sub) == 0 ? 0 : 1;
        bench_remove_tree(sub);
        if (!cfg.dir)
            rmdir(dir);
        return rc;
    }
    static struct result results[RESULTS_MAX];
    int result_count = 0;
    if (cfg.key_cost)
        rc = check_dir(dir) == 0 && key_cost(&cfg, dir) == 0 ? 0 : 1;
    else
        rc = check_dir(dir) == 0 && sweep(&cfg, targets, target_count, dir, results, &result_count) == 0 ? 0 : 1;
    if (rc == 0 && cfg.plot_path && plot_write(&cfg, results, result_count) != 0)
        rc = 1;
    if (!cfg.dir && rmdir(dir) != 0)
        fprintf(stderr, "stele-bench: could not remove %s: %s\n", dir, strerror(errno));
    return rc;
}

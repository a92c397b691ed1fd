/*
 * read_bench.c - stele-bench --read-scan / --read-get / --read-since: the read
 * path on a large log (SPEC.md §19), through the public API only.
 *
 * Builds a log of --read-size bytes of realistic events (JSON payment, order
 * and webhook events, generated from a fixed seed; mode none, --batch events
 * per append, a sync at the end), closes it, and reopens it read-only. Then,
 * from the page cache (the first pass of the scan warms it, and is not
 * counted):
 *  - scan: stele_verify over the whole log (every checksum, the chain, the
 *    footers' whole-file hashes), and a full iteration with stele_iter (every
 *    batch and record checksum), in GB/s of stored bytes (wall clock, and
 *    per CPU-second of this process: on a shared machine the second is what
 *    the code costs), medians of --runs;
 *  - get: stele_get at 100,000 random LSNs on a freshly opened handle (the
 *    first touch of each segment loads its index file), median and p99 us;
 *  - since: stele_lsn_at_time at 10,000 random times, then the first record
 *    there (what `stele read --since` does), median and p99 us.
 * The log is removed afterwards.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define READ_GETS 100000
#define READ_SINCES 10000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this process (the scans are single-threaded): on a machine
 * shared with other work, bytes per CPU-second is what the code costs, wall
 * time what it got. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, int code)
{
    fprintf(stderr, "stele-bench: read: %s: %s: %s\n", what, stele_strerror(code), stele_errmsg());
    return -1;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

/* One realistic event: a payment, order or webhook JSON object of a few
 * hundred bytes, with the ids, amounts and names varying. */
static size_t make_event(uint64_t *seed, uint64_t n, char *dst, size_t cap, const char **out_type)
{
    static const char *currencies[] = {"EUR", "USD", "GBP", "JPY", "CHF"};
    static const char *statuses[] = {"authorized", "captured", "refunded", "failed", "pending"};
    static const char *names[] = {"Alice Martin", "Bob Chen", "Chiara Rossi", "Dmitri Ivanov", "Emma Dubois",
                                  "Farid Haddad", "Grace Kim", "Hugo Silva"};
    uint64_t r = rnd(seed);
    int kind = (int)(r % 3);
    int len;
    if (kind == 0) {
        *out_type = "payment.captured";
        len = snprintf(dst, cap,
                       "{\"payment_id\":\"pay_%016llx\",\"order_id\":\"ord_%08llu\",\"amount\":%llu,"
                       "\"currency\":\"%s\",\"status\":\"%s\",\"method\":{\"type\":\"card\",\"brand\":\"visa\","
                       "\"last4\":\"%04llu\",\"exp\":\"%02llu/%02llu\"},\"customer\":{\"id\":\"cus_%06llu\","
                       "\"name\":\"%s\",\"email\":\"user%llu@example.com\"},\"attempt\":%llu,\"seq\":%llu}",
                       (unsigned long long)rnd(seed), (unsigned long long)(r >> 20) % 100000000,
                       (unsigned long long)(rnd(seed) % 500000), currencies[r % 5], statuses[(r >> 8) % 5],
                       (unsigned long long)(r >> 12) % 10000, (unsigned long long)(r >> 30) % 12 + 1,
                       (unsigned long long)(r >> 40) % 10 + 25, (unsigned long long)(r >> 16) % 1000000,
                       names[(r >> 24) % 8], (unsigned long long)(r >> 32) % 100000,
                       (unsigned long long)(r >> 50) % 3 + 1, (unsigned long long)n);
    } else if (kind == 1) {
        *out_type = "order.created";
        int items = (int)(r % 4) + 1;
        len = snprintf(dst, cap, "{\"order_id\":\"ord_%08llu\",\"customer_id\":\"cus_%06llu\",\"items\":[",
                       (unsigned long long)(r >> 20) % 100000000, (unsigned long long)(r >> 16) % 1000000);
        for (int i = 0; i < items && len > 0 && (size_t)len < cap; i++)
            len += snprintf(dst + len, cap - (size_t)len, "%s{\"sku\":\"SKU-%05llu\",\"qty\":%llu,\"price\":%llu}",
                            i ? "," : "", (unsigned long long)rnd(seed) % 100000,
                            (unsigned long long)rnd(seed) % 5 + 1, (unsigned long long)rnd(seed) % 20000);
        if (len > 0 && (size_t)len < cap)
            len += snprintf(dst + len, cap - (size_t)len,
                            "],\"shipping\":{\"country\":\"%s\",\"method\":\"standard\"},\"currency\":\"%s\","
                            "\"seq\":%llu}", r % 2 ? "FR" : "DE", currencies[r % 5], (unsigned long long)n);
    } else {
        *out_type = "webhook.delivered";
        len = snprintf(dst, cap,
                       "{\"webhook_id\":\"wh_%012llx\",\"endpoint\":\"https://hooks.example.com/%llu/events\","
                       "\"event\":\"%s\",\"http_status\":%d,\"latency_ms\":%llu,\"attempt\":%llu,"
                       "\"headers\":{\"content-type\":\"application/json\",\"x-signature\":\"sha256=%016llx%016llx\"},"
                       "\"seq\":%llu}",
                       (unsigned long long)rnd(seed) & 0xffffffffffffull, (unsigned long long)(r >> 20) % 5000,
                       statuses[(r >> 8) % 5], (r >> 4) % 10 ? 200 : 503, (unsigned long long)(r >> 28) % 2000,
                       (unsigned long long)(r >> 50) % 3 + 1, (unsigned long long)rnd(seed),
                       (unsigned long long)rnd(seed), (unsigned long long)n);
    }
    return len > 0 && (size_t)len < cap ? (size_t)len : cap - 1;
}

#define EVENT_CAP 1024

static int build_log(const struct config *cfg, const char *dir, uint64_t size, uint64_t *out_records)
{
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.durability = STELE_DURABILITY_NONE;
    o.io_backend = cfg->backend;
    o.checkpoint_records = 0;
    stele_log *log;
    int code = stele_open(dir, &o, &log);
    if (code)
        return fail("create", code);
    int batch = cfg->batch > 1 ? cfg->batch : BENCH_BATCH_MAX;
    stele_event *ev = calloc((size_t)batch, sizeof *ev);
    stele_receipt *rc = calloc((size_t)batch, sizeof *rc);
    char *text = malloc((size_t)batch * EVENT_CAP);
    if (!ev || !rc || !text) {
        free(ev), free(rc), free(text);
        stele_close(log);
        fprintf(stderr, "stele-bench: read: out of memory\n");
        return -1;
    }
    uint64_t seed = UINT64_C(0x5EED0F5E1E5), n = 0;
    stele_stats st = {0};
    while (code == STELE_OK && st.data_size < size) {
        for (int i = 0; i < batch; i++) {
            const char *type;
            char *p = text + (size_t)i * EVENT_CAP;
            size_t len = make_event(&seed, n + (uint64_t)i, p, EVENT_CAP, &type);
            ev[i] = (stele_event){.type = type, .type_size = strlen(type), .content = STELE_CONTENT_JSON,
                                  .payload = p, .payload_size = len};
        }
        code = stele_append_batch(log, ev, (size_t)batch, rc);
        n += (uint64_t)batch;
        if (code == STELE_OK && n % (uint64_t)(batch * 256) == 0)
            code = stele_stats_get(log, &st);
    }
    if (code == STELE_OK)
        code = stele_sync(log);
    free(ev), free(rc), free(text);
    if (code) {
        stele_close(log);
        return fail("append", code);
    }
    if ((code = stele_close(log)) != STELE_OK)
        return fail("close", code);
    *out_records = n;
    return 0;
}

static int open_ro(const char *dir, stele_log **out)
{
    stele_options o;
    stele_options_init(&o);
    o.read_only = 1;
    int code = stele_open(dir, &o, out);
    return code ? fail("open read-only", code) : 0;
}

/* One full iteration; *out_bytes is the log's stored bytes. */
static int iterate_all(const char *dir, uint64_t records, double *out_s, double *out_cpu_s, uint64_t *out_bytes)
{
    stele_log *log;
    if (open_ro(dir, &log) != 0)
        return -1;
    stele_iter *it;
    double t0 = now_s(), c0 = cpu_s();
    int code = stele_iter_open(log, 1, &it);
    uint64_t seen = 0, sum = 0;
    const stele_record *r;
    while (code == STELE_OK && (code = stele_iter_next(it, 0, &r)) == STELE_OK && r) {
        seen++;
        sum += r->payload_size;
    }
    stele_iter_close(it);
    *out_s = now_s() - t0;
    *out_cpu_s = cpu_s() - c0;
    stele_stats st;
    if (code == STELE_OK)
        code = stele_stats_get(log, &st);
    stele_close(log);
    if (code)
        return fail("iterate", code);
    if (seen != records || sum == 0) {
        fprintf(stderr, "stele-bench: read: iterated %llu records, expected %llu\n", (unsigned long long)seen,
                (unsigned long long)records);
        return -1;
    }
    *out_bytes = st.data_size + st.sealed_segment_count * 4096;
    return 0;
}

struct scan_result {
    double verify_gbs, iterate_gbs;          /* wall clock */
    double verify_cpu_gbs, iterate_cpu_gbs;  /* per CPU-second */
};

static int scan_bench(const struct config *cfg, const char *dir, uint64_t records, struct scan_result *out)
{
    double v[BENCH_RUNS_MAX], vc[BENCH_RUNS_MAX], it[BENCH_RUNS_MAX], itc[BENCH_RUNS_MAX];
    for (int i = -1; i < cfg->runs; i++) { /* run -1 warms the page cache */
        stele_verify_report rep;
        double t0 = now_s(), c0 = cpu_s();
        int code = stele_verify(dir, NULL, NULL, &rep);
        double s = now_s() - t0, c = cpu_s() - c0;
        if (code)
            return fail("verify", code);
        uint64_t bytes;
        double is, ic;
        if (iterate_all(dir, records, &is, &ic, &bytes) != 0)
            return -1;
        if (i >= 0) {
            v[i] = (double)rep.bytes / s / 1e9;
            vc[i] = (double)rep.bytes / c / 1e9;
            it[i] = (double)bytes / is / 1e9;
            itc[i] = (double)bytes / ic / 1e9;
        }
    }
    *out = (struct scan_result){bench_median(v, cfg->runs), bench_median(it, cfg->runs), bench_median(vc, cfg->runs),
                                bench_median(itc, cfg->runs)};
    return 0;
}

static void percentiles(double *t, size_t n, double *out_median, double *out_p99)
{
    qsort(t, n, sizeof t[0], bench_by_double);
    *out_median = t[(n - 1) / 2];
    *out_p99 = t[(n * 99) / 100];
}

static int get_bench(const char *dir, uint64_t records, double *out_med, double *out_p99, stele_stats *out_st)
{
    double *t = malloc(READ_GETS * sizeof *t);
    stele_log *log;
    if (!t || open_ro(dir, &log) != 0) {
        free(t);
        return -1;
    }
    uint64_t seed = UINT64_C(0x6E7BEEF);
    int code = STELE_OK;
    for (size_t i = 0; i < READ_GETS && code == STELE_OK; i++) {
        uint64_t lsn = 1 + rnd(&seed) % records;
        stele_record *r;
        double t0 = now_s();
        code = stele_get(log, lsn, &r);
        t[i] = (now_s() - t0) * 1e6;
        if (code == STELE_OK && r->lsn != lsn)
            code = STELE_ERR_CORRUPT;
        if (code == STELE_OK)
            stele_record_free(r);
    }
    if (code == STELE_OK)
        code = stele_stats_get(log, out_st);
    stele_close(log);
    if (code) {
        free(t);
        return fail("get", code);
    }
    percentiles(t, READ_GETS, out_med, out_p99);
    free(t);
    return 0;
}

static int since_bench(const char *dir, uint64_t records, double *out_med, double *out_p99)
{
    double *t = malloc(READ_SINCES * sizeof *t);
    stele_log *log;
    if (!t || open_ro(dir, &log) != 0) {
        free(t);
        return -1;
    }
    stele_record *first = NULL, *last = NULL;
    int code = stele_get(log, 1, &first);
    if (code == STELE_OK)
        code = stele_get(log, records, &last);
    uint64_t t_lo = first ? first->recorded_at_ns : 0, t_hi = last ? last->recorded_at_ns : 0;
    stele_record_free(first);
    stele_record_free(last);
    uint64_t seed = UINT64_C(0x51CE);
    for (size_t i = 0; i < READ_SINCES && code == STELE_OK; i++) {
        uint64_t when = t_lo + (t_hi > t_lo ? rnd(&seed) % (t_hi - t_lo + 1) : 0), lsn;
        double t0 = now_s();
        code = stele_lsn_at_time(log, when, &lsn);
        stele_iter *it = NULL;
        const stele_record *r = NULL;
        if (code == STELE_OK)
            code = stele_iter_open(log, lsn, &it);
        if (code == STELE_OK)
            code = stele_iter_next(it, 0, &r);
        t[i] = (now_s() - t0) * 1e6;
        if (code == STELE_OK && (!r || r->recorded_at_ns < when))
            code = STELE_ERR_CORRUPT;
        stele_iter_close(it);
    }
    stele_close(log);
    if (code) {
        free(t);
        return fail("since", code);
    }
    percentiles(t, READ_SINCES, out_med, out_p99);
    free(t);
    return 0;
}

int read_bench(const struct config *cfg, const char *dir)
{
    uint64_t records;
    double t0 = now_s();
    if (build_log(cfg, dir, cfg->read_size, &records) != 0)
        return -1;
    double build_s = now_s() - t0;
    stele_log *log;
    stele_stats st;
    if (open_ro(dir, &log) != 0)
        return -1;
    int code = stele_stats_get(log, &st);
    stele_close(log);
    if (code)
        return fail("stats", code);
    if (cfg->json)
        printf("{\"bench\":\"read\",\"records\":%llu,\"data_size\":%llu,\"segments\":%llu,\"build_s\":%.1f",
               (unsigned long long)records, (unsigned long long)st.data_size, (unsigned long long)st.segment_count,
               build_s);
    else
        printf("read: %llu realistic JSON events, %llu bytes stored in %llu segments (%.1f s to build, mode none)\n",
               (unsigned long long)records, (unsigned long long)st.data_size, (unsigned long long)st.segment_count,
               build_s);
    fflush(stdout);
    if (cfg->read_scan) {
        struct scan_result r;
        if (scan_bench(cfg, dir, records, &r) != 0)
            return -1;
        if (cfg->json)
            printf(",\"runs\":%d,\"verify_gbs\":%.2f,\"verify_gb_per_cpu_s\":%.2f,\"iterate_gbs\":%.2f,"
                   "\"iterate_gb_per_cpu_s\":%.2f", cfg->runs, r.verify_gbs, r.verify_cpu_gbs, r.iterate_gbs,
                   r.iterate_cpu_gbs);
        else
            printf("  verified scan, stele_verify    %8.2f GB/s  %6.2f GB per CPU-second  (medians of %d, page cache)\n"
                   "  verified scan, iterator        %8.2f GB/s  %6.2f GB per CPU-second\n", r.verify_gbs,
                   r.verify_cpu_gbs, cfg->runs, r.iterate_gbs, r.iterate_cpu_gbs);
        fflush(stdout);
    }
    if (cfg->read_get) {
        double med, p99;
        stele_stats gs;
        if (get_bench(dir, records, &med, &p99, &gs) != 0)
            return -1;
        double per_get = (double)gs.read_bytes / READ_GETS;
        if (cfg->json)
            printf(",\"gets\":%d,\"get_median_us\":%.2f,\"get_p99_us\":%.2f,\"get_index_loaded\":%llu,"
                   "\"get_index_rebuilt\":%llu,\"get_bytes_read_per_get\":%.0f", READ_GETS, med, p99,
                   (unsigned long long)gs.read_index_loaded, (unsigned long long)gs.read_index_rebuilt, per_get);
        else
            printf("  get by LSN                     %8.2f us median %8.2f us p99  (%d random LSNs; %llu index "
                   "files loaded, %llu rebuilt; %.0f bytes read per get)\n", med, p99, READ_GETS,
                   (unsigned long long)gs.read_index_loaded, (unsigned long long)gs.read_index_rebuilt, per_get);
        fflush(stdout);
    }
    if (cfg->read_since) {
        double med, p99;
        if (since_bench(dir, records, &med, &p99) != 0)
            return -1;
        if (cfg->json)
            printf(",\"sinces\":%d,\"since_median_us\":%.2f,\"since_p99_us\":%.2f", READ_SINCES, med, p99);
        else
            printf("  --since: lookup + first record %8.2f us median %8.2f us p99  (%d random times)\n", med, p99,
                   READ_SINCES);
    }
    if (cfg->json)
        printf("}\n");
    return 0;
}

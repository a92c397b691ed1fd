/*
 * compress_bench.c - stele-bench --compression-ratio: how small realistic
 * JSON events get with zstd and with a dictionary trained on the log's own
 * events (SPEC.md §18), and what compression costs the append path.
 *
 * The events are generated from a seed (--seed, default 1), deterministic:
 * payments (captured, refunded, failed), orders (placed, shipped, with 1-4
 * line items) and webhook deliveries (endpoint, attempt, nested request and
 * response), with ids, amounts, currencies, RFC 3339 timestamps, nested
 * objects, an idempotency key, a stream and an actor - about 250-600 bytes
 * of payload each.
 *
 * Ratio: for each records-per-append (1, 16 and --batch when it is another
 * value) three logs get the same N events (--events, default 100000) in
 * appends of that many: no compression, zstd at --level L (default 3)
 * without a dictionary, and zstd at L with a dictionary trained on the first
 * fifth of the events (stele_dict_train over exactly those; --dict-size,
 * default the engine's 110 KiB). Only the last four fifths are counted in all three
 * (stele_compression_get before and after them): raw bytes (the records as
 * encoded), stored bytes (the batch bodies as written) and frame bytes (what
 * the batches occupy in the segment files: 64-byte header, body, padding to
 * 4096 bytes). The dictionary log's training is excluded from its figures.
 *
 * Throughput: one thread appends the same events (cycling, without their
 * keys so that every append is new) in appends of
 * --batch records (default 1) under --durability (default sync) for
 * --duration seconds, on an uncompressed log, a zstd log and a zstd log with
 * a dictionary (trained before the clock starts); the three runs are
 * interleaved, --runs rounds, and each round's compressed/uncompressed
 * ratio of appends/s is taken; the median of those is reported, with the
 * median CPU time the writer thread (which compresses) spent per record:
 * steadier than appends/s on a shared machine.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

#define EVENT_PAYLOAD_MAX 2048
#define BATCH_SIZES_MAX 3

struct event_pool {
    char *text;          /* every event's type, key, stream, actor and payload, back to back */
    stele_event *events;
    size_t count;
    uint64_t payload_bytes;
};

static uint64_t next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(0x2545F4914F6CDD1D);
}

/* 2026-01-01T00:00:00Z plus seconds, as RFC 3339. */
static void stamp(uint64_t seconds, char *dst, size_t cap)
{
    uint64_t d = seconds / 86400, s = seconds % 86400;
    snprintf(dst, cap, "2026-%02u-%02uT%02u:%02u:%02uZ", (unsigned)(d / 28 % 12 + 1), (unsigned)(d % 28 + 1),
             (unsigned)(s / 3600), (unsigned)(s / 60 % 60), (unsigned)(s % 60));
}

static const char *const currencies[] = {"EUR", "USD", "GBP", "JPY", "CHF", "SEK"};
static const char *const countries[] = {"DE", "FR", "US", "GB", "NL", "SE", "JP", "ES"};
static const char *const methods[] = {"card", "sepa_debit", "ideal", "paypal"};
static const char *const brands[] = {"visa", "mastercard", "amex"};
static const char *const carriers[] = {"dhl", "ups", "fedex", "postnl"};
static const char *const hosts[] = {"api.acme.example", "hooks.shop.example", "erp.partner.example"};

static int payment(uint64_t *s, uint64_t i, char *p, size_t cap, const char **type)
{
    static const char *const types[] = {"payment.captured", "payment.captured", "payment.refunded", "payment.failed"};
    uint64_t r = next(s);
    *type = types[r % 4];
    char ts[32];
    stamp(i * 3 + r % 3, ts, sizeof ts);
    uint64_t amount = next(s) % 250000 + 100;
    return snprintf(p, cap,
                    "{\"id\":\"pay_%016" PRIx64 "\",\"object\":\"payment\",\"amount\":%" PRIu64 ",\"amount_captured\":%"
                    PRIu64 ",\"currency\":\"%s\",\"created\":\"%s\",\"customer\":{\"id\":\"cus_%010" PRIu64
                    "\",\"email\":\"user%" PRIu64 "@mail.example\",\"country\":\"%s\"},\"payment_method\":{\"type\":\"%s\","
                    "\"card\":{\"brand\":\"%s\",\"last4\":\"%04" PRIu64 "\",\"exp_month\":%" PRIu64 ",\"exp_year\":%" PRIu64
                    "}},\"status\":\"%s\",\"livemode\":true,\"metadata\":{\"order_id\":\"ord_%08" PRIu64 "\"}%s}",
                    next(s), amount, r % 4 == 3 ? 0 : amount, currencies[r % 6], ts, next(s) % UINT64_C(10000000000),
                    next(s) % 1000000, countries[next(s) % 8], methods[r % 4], brands[next(s) % 3], next(s) % 10000,
                    next(s) % 12 + 1, 2027 + next(s) % 6, r % 4 == 3 ? "failed" : "succeeded", next(s) % 100000000,
                    r % 4 == 3 ? ",\"failure\":{\"code\":\"card_declined\",\"decline_code\":\"insufficient_funds\"}"
                               : "");
}

static int order(uint64_t *s, uint64_t i, char *p, size_t cap, const char **type)
{
    uint64_t r = next(s);
    *type = r % 3 ? "order.placed" : "order.shipped";
    char ts[32];
    stamp(i * 3 + 1, ts, sizeof ts);
    int n = snprintf(p, cap, "{\"order_id\":\"ord_%08" PRIu64 "\",\"created_at\":\"%s\",\"currency\":\"%s\",\"items\":[",
                     next(s) % 100000000, ts, currencies[r % 6]);
    uint64_t items = next(s) % 4 + 1, total = 0;
    for (uint64_t k = 0; k < items && n < (int)cap - 200; k++) {
        uint64_t price = next(s) % 20000 + 99, qty = next(s) % 3 + 1;
        total += price * qty;
        n += snprintf(p + n, cap - (size_t)n, "%s{\"sku\":\"SKU-%05" PRIu64 "\",\"quantity\":%" PRIu64
                      ",\"unit_price\":%" PRIu64 "}", k ? "," : "", next(s) % 30000, qty, price);
    }
    n += snprintf(p + n, cap - (size_t)n,
                  "],\"total\":%" PRIu64 ",\"shipping\":{\"carrier\":\"%s\",\"country\":\"%s\",\"postal_code\":\"%05" PRIu64
                  "\"%s}}",
                  total, carriers[next(s) % 4], countries[next(s) % 8], next(s) % 100000,
                  r % 3 ? "" : ",\"tracking\":\"1Z999AA10123456784\"");
    return n;
}

static int webhook(uint64_t *s, uint64_t i, char *p, size_t cap, const char **type)
{
    uint64_t r = next(s);
    int ok = r % 10 != 0;
    *type = ok ? "webhook.delivered" : "webhook.failed";
    char ts[32];
    stamp(i * 3 + 2, ts, sizeof ts);
    return snprintf(p, cap,
                    "{\"webhook_id\":\"wh_%012" PRIx64 "\",\"endpoint\":\"https://%s/hooks/%" PRIu64 "\",\"event\":"
                    "\"payment.captured\",\"attempt\":%" PRIu64 ",\"sent_at\":\"%s\",\"request\":{\"method\":\"POST\","
                    "\"headers\":{\"content-type\":\"application/json\",\"x-signature\":\"t=%" PRIu64 ",v1=%016" PRIx64
                    "\"}},\"response\":{\"status\":%d,\"latency_ms\":%" PRIu64 "}}",
                    next(s) & UINT64_C(0xffffffffffff), hosts[r % 3], next(s) % 1000, next(s) % 5 + 1, ts,
                    1767225600 + i, next(s), ok ? 200 : 503, next(s) % 1500 + 5);
}

/* The pool of count events of seed (deterministic). NULL text on failure. */
static struct event_pool pool_make(uint64_t seed, size_t count)
{
    struct event_pool p = {0};
    size_t per = EVENT_PAYLOAD_MAX + 128;
    p.text = malloc(count * per);
    p.events = calloc(count, sizeof *p.events);
    if (!p.text || !p.events) {
        free(p.text);
        free(p.events);
        p.text = NULL;
        p.events = NULL;
        return p;
    }
    static const char *const actors[] = {"svc-payments", "svc-orders", "svc-webhooks"};
    uint64_t s = seed * UINT64_C(0x9E3779B97F4A7C15) + 1;
    for (size_t i = 0; i < count; i++) {
        char *base = p.text + i * per, *payload = base + 128;
        const char *type;
        uint64_t kind = next(&s) % 3;
        int n = kind == 0 ? payment(&s, i, payload, EVENT_PAYLOAD_MAX, &type)
                : kind == 1 ? order(&s, i, payload, EVENT_PAYLOAD_MAX, &type)
                            : webhook(&s, i, payload, EVENT_PAYLOAD_MAX, &type);
        int kn = snprintf(base, 64, "idem-%016" PRIx64, next(&s));
        int sn = snprintf(base + 64, 64, "%s-%" PRIu64, kind == 0 ? "payment" : kind == 1 ? "order" : "endpoint",
                          next(&s) % 50000);
        p.events[i] = (stele_event){.kind = STELE_KIND_EVENT, .content = STELE_CONTENT_JSON, .type = type,
                                    .type_size = strlen(type), .key = base, .key_size = (size_t)kn,
                                    .stream = base + 64, .stream_size = (size_t)sn, .actor = actors[kind],
                                    .actor_size = strlen(actors[kind]), .payload = payload,
                                    .payload_size = (size_t)n};
        p.payload_bytes += (uint64_t)n;
    }
    p.count = count;
    return p;
}

static void pool_free(struct event_pool *p)
{
    free(p->text);
    free(p->events);
}

enum mode { MODE_NONE, MODE_ZSTD, MODE_DICT, MODE_COUNT };
static const char *const mode_names[] = {"none", "zstd", "zstd+dict"};

static int fail(const char *what, const char *dir, int code)
{
    fprintf(stderr, "stele-bench: %s %s: %s: %s\n", what, dir, stele_strerror(code), stele_errmsg());
    return -1;
}

static int open_mode(const struct config *cfg, const char *dir, enum mode m, int level, stele_durability d,
                     stele_log **out)
{
    stele_options o;
    stele_options_init(&o);
    o.create = 1;
    o.io_backend = cfg->backend;
    o.durability = d;
    o.compression = m == MODE_NONE ? STELE_COMPRESSION_NONE : STELE_COMPRESSION_ZSTD;
    o.compression_level = level;
    o.idem_window_ns = 0; /* keys forever: nothing expires during the run */
    int code = stele_open(dir, &o, out);
    return code == STELE_OK ? 0 : fail("opening", dir, code);
}

/* Appends events [from, to) of p (cycling) in calls of batch records. */
static int append_range(stele_log *log, const struct event_pool *p, uint64_t from, uint64_t to, int batch)
{
    static stele_receipt receipts[BENCH_BATCH_MAX];
    for (uint64_t i = from; i < to;) {
        size_t at = (size_t)(i % p->count), n = (size_t)batch;
        if (n > to - i)
            n = (size_t)(to - i);
        if (n > p->count - at)
            n = p->count - at;
        int code = stele_append_batch(log, p->events + at, n, receipts);
        if (code != STELE_OK) {
            fprintf(stderr, "stele-bench: append: %s: %s\n", stele_strerror(code), stele_errmsg());
            return -1;
        }
        i += n;
    }
    return 0;
}

static uint32_t dict_size_max; /* --dict-size, 0 = the engine's default */

static int train_on(stele_log *log, uint64_t records, const char *dir, stele_dict_info *out)
{
    stele_dict_options d;
    stele_dict_options_init(&d);
    d.sample_records = records;
    if (dict_size_max)
        d.dict_size_max = dict_size_max;
    int code = stele_dict_train(log, &d, out);
    return code == STELE_OK ? 0 : fail("training a dictionary for", dir, code);
}

struct ratio_row {
    int batch;
    stele_compression_report r[MODE_COUNT]; /* over the measured events only */
    stele_dict_info dict;
};

static void report_sub(stele_compression_report *a, const stele_compression_report *b)
{
    a->batches -= b->batches;
    a->raw_size -= b->raw_size;
    a->stored_size -= b->stored_size;
    a->frame_size -= b->frame_size;
}

/* One log per mode for one batch size; row gets the measured part's figures. */
static int ratio_batch(const struct config *cfg, const struct event_pool *p, int level, const char *dir,
                       struct ratio_row *row)
{
    uint64_t train_n = p->count / 5 / 64 * 64;
    for (int m = 0; m < MODE_COUNT; m++) {
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/ratio-%d-%s", dir, row->batch, mode_names[m]);
        stele_log *log;
        stele_compression_report before, after;
        if (open_mode(cfg, sub, (enum mode)m, level, STELE_DURABILITY_NONE, &log) != 0)
            return -1;
        int rc = append_range(log, p, 0, train_n, row->batch);
        if (rc == 0 && m == MODE_DICT)
            rc = train_on(log, train_n, sub, &row->dict);
        int code = rc == 0 ? stele_compression_get(log, &before) : STELE_OK;
        if (rc == 0 && code == STELE_OK)
            rc = append_range(log, p, train_n, p->count, row->batch);
        if (rc == 0 && code == STELE_OK)
            code = stele_compression_get(log, &after);
        if (code != STELE_OK)
            rc = fail("reading the batch headers of", sub, code);
        int close_code = stele_close(log);
        if (rc == 0 && close_code != STELE_OK)
            rc = fail("closing", sub, close_code);
        bench_remove_tree(sub);
        if (rc != 0)
            return -1;
        report_sub(&after, &before);
        row->r[m] = after;
    }
    return 0;
}

static void print_ratio(const struct config *cfg, const struct ratio_row *row, int level, uint64_t measured)
{
    const stele_compression_report *n = &row->r[MODE_NONE], *z = &row->r[MODE_ZSTD], *d = &row->r[MODE_DICT];
    double rz = (double)n->raw_size / (double)z->stored_size, rd = (double)n->raw_size / (double)d->stored_size;
    double fz = (double)n->frame_size / (double)z->frame_size, fd = (double)n->frame_size / (double)d->frame_size;
    double gain = (double)z->stored_size / (double)d->stored_size;
    if (cfg->json) {
        printf("{\"compression_ratio\":{\"records_per_append\":%d,\"level\":%d,\"events_measured\":%" PRIu64
               ",\"raw_bytes\":%" PRIu64 ",\"stored_bytes\":{\"none\":%" PRIu64 ",\"zstd\":%" PRIu64
               ",\"zstd_dict\":%" PRIu64 "},\"frame_bytes\":{\"none\":%" PRIu64 ",\"zstd\":%" PRIu64
               ",\"zstd_dict\":%" PRIu64 "},\"raw_over_stored\":{\"zstd\":%.3f,\"zstd_dict\":%.3f},"
               "\"disk_none_over\":{\"zstd\":%.3f,\"zstd_dict\":%.3f},\"dict_gain_over_zstd\":%.3f,"
               "\"dict_size\":%" PRIu32 "}}\n",
               row->batch, level, measured, n->raw_size, n->stored_size, z->stored_size, d->stored_size,
               n->frame_size, z->frame_size, d->frame_size, rz, rd, fz, fd, gain, row->dict.dict_size);
        return;
    }
    printf("%6d %12" PRIu64 " %12" PRIu64 " %12" PRIu64 " %8.2fx %8.2fx %8.2fx %14" PRIu64 " %14" PRIu64
           " %14" PRIu64 " %7.2fx %7.2fx\n",
           row->batch, n->raw_size, z->stored_size, d->stored_size, rz, rd, gain, n->frame_size, z->frame_size,
           d->frame_size, fz, fd);
}

static int ratio_table(const struct config *cfg, const struct event_pool *p, int level, const char *dir)
{
    int batches[BATCH_SIZES_MAX] = {1, 16, 0}, count = 2;
    if (cfg->batch != 1 && cfg->batch != 16)
        batches[count++] = cfg->batch;
    uint64_t measured = p->count - p->count / 5 / 64 * 64;
    if (!cfg->json)
        printf("compression of %" PRIu64 " realistic JSON events (payload %.0f bytes on average; the dictionary "
               "is trained on the %zu before them), zstd level %d\n"
               "%6s %12s %12s %12s %9s %9s %9s %14s %14s %14s %8s %8s\n",
               measured, (double)p->payload_bytes / (double)p->count, (size_t)(p->count - measured), level,
               "rec/ap", "raw B", "zstd B", "dict B", "raw/zstd", "raw/dict", "dict gain", "disk none B",
               "disk zstd B", "disk dict B", "dsk/zstd", "dsk/dict");
    for (int i = 0; i < count; i++) {
        struct ratio_row row = {.batch = batches[i]};
        if (ratio_batch(cfg, p, level, dir, &row) != 0)
            return -1;
        print_ratio(cfg, &row, level, measured);
        fflush(stdout);
    }
    return 0;
}

/* One timed run: appends/s of mode m, and the writer thread's CPU time per
 * record appended (where compression runs), ns. */
static int throughput_run(const struct config *cfg, const struct event_pool *p, enum mode m, int level,
                          const char *dir, double *out_rps, double *out_cpu_ns)
{
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/speed-%s", dir, mode_names[m]);
    stele_log *log;
    if (open_mode(cfg, sub, m, level, cfg->durability, &log) != 0)
        return -1;
    uint64_t warm = p->count / 5 / 64 * 64, done = warm;
    stele_dict_info info;
    /* Every mode appends the training part first, so all three start timing
     * on a log of the same length; only the dictionary log trains on it. */
    int rc = append_range(log, p, 0, warm, 64);
    if (rc == 0 && m == MODE_DICT)
        rc = train_on(log, warm, sub, &info);
    double cpu0 = bench_thread_cpu_ns("stele-writer");
    uint64_t t0 = mono_ns(), limit = (uint64_t)(cfg->duration_s * 1e9), t = 0;
    while (rc == 0 && (t = mono_ns() - t0) < limit) {
        rc = append_range(log, p, done, done + (uint64_t)cfg->batch * 16, cfg->batch);
        done += (uint64_t)cfg->batch * 16;
    }
    if (rc == 0)
        rc = stele_sync(log) == STELE_OK ? 0 : fail("syncing", sub, STELE_ERR_IO);
    double cpu1 = bench_thread_cpu_ns("stele-writer");
    int code = stele_close(log);
    bench_remove_tree(sub);
    if (rc == 0 && code != STELE_OK)
        return fail("closing", sub, code);
    *out_rps = (double)(done - warm) / ((double)t / 1e9);
    *out_cpu_ns = cpu0 >= 0 && cpu1 >= cpu0 ? (cpu1 - cpu0) / (double)(done - warm) : -1;
    return rc;
}

static int throughput(const struct config *cfg, const struct event_pool *keyed, int level, const char *dir)
{
    /* The timed runs cycle through the pool: without keys, or every event
     * after the first pass would be a duplicate (nothing appended). */
    struct event_pool p = *keyed;
    if (!(p.events = malloc(p.count * sizeof *p.events))) {
        fprintf(stderr, "stele-bench: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < p.count; i++) {
        p.events[i] = keyed->events[i];
        p.events[i].key = NULL;
        p.events[i].key_size = 0;
    }
    double rps[MODE_COUNT][BENCH_RUNS_MAX], rel[MODE_COUNT][BENCH_RUNS_MAX], cpu[MODE_COUNT][BENCH_RUNS_MAX];
    for (int r = 0; r < cfg->runs; r++) {
        for (int m = 0; m < MODE_COUNT; m++)
            if (throughput_run(cfg, &p, (enum mode)m, level, dir, &rps[m][r], &cpu[m][r]) != 0) {
                free(p.events);
                return -1;
            }
        for (int m = 0; m < MODE_COUNT; m++)
            rel[m][r] = rps[m][r] / rps[MODE_NONE][r];
    }
    double med[MODE_COUNT], relmed[MODE_COUNT], cpumed[MODE_COUNT];
    for (int m = 0; m < MODE_COUNT; m++) {
        relmed[m] = bench_median(rel[m], cfg->runs);
        med[m] = bench_median(rps[m], cfg->runs);
        cpumed[m] = bench_median(cpu[m], cfg->runs);
    }
    if (cfg->json)
        printf("{\"compression_throughput\":{\"durability\":\"%s\",\"records_per_append\":%d,\"level\":%d,"
               "\"runs\":%d,\"seconds\":%.2f,\"records_per_s\":{\"none\":%.0f,\"zstd\":%.0f,\"zstd_dict\":%.0f},"
               "\"over_none\":{\"zstd\":%.4f,\"zstd_dict\":%.4f},"
               "\"writer_cpu_ns_per_record\":{\"none\":%.0f,\"zstd\":%.0f,\"zstd_dict\":%.0f}}}\n",
               durability_name(cfg->durability), cfg->batch, level, cfg->runs, cfg->duration_s, med[0], med[1],
               med[2], relmed[1], relmed[2], cpumed[0], cpumed[1], cpumed[2]);
    else
        printf("append throughput, 1 thread, %d record%s per append, durability %s, %d interleaved round%s of "
               "%.1f s: none %.0f/s, zstd %.0f/s, zstd+dict %.0f/s (medians); compressed/uncompressed = %.3f "
               "(zstd), %.3f (zstd+dict), medians of the rounds' ratios; writer thread CPU per record %.0f ns "
               "none, %.0f ns zstd, %.0f ns zstd+dict (medians)\n",
               cfg->batch, cfg->batch == 1 ? "" : "s", durability_name(cfg->durability), cfg->runs,
               cfg->runs == 1 ? "" : "s", cfg->duration_s, med[0], med[1], med[2], relmed[1], relmed[2], cpumed[0],
               cpumed[1], cpumed[2]);
    fflush(stdout);
    free(p.events);
    return 0;
}

int compress_bench(const struct config *cfg, const char *dir)
{
    dict_size_max = cfg->dict_size;
    struct event_pool p = pool_make(cfg->seed, cfg->events);
    if (!p.text) {
        fprintf(stderr, "stele-bench: out of memory for %zu events\n", cfg->events);
        return -1;
    }
    int rc = ratio_table(cfg, &p, cfg->level, dir);
    if (rc == 0)
        rc = throughput(cfg, &p, cfg->level, dir);
    pool_free(&p);
    return rc;
}

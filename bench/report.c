/*
 * report.c - prints results: a table for people, or with --json one object
 * per line for programs. Rows are printed as each configuration finishes, so
 * a long sweep shows its results as it goes.
 *
 * records/s is the median run's (by records/s), min and max the spread over
 * all runs; the latencies, syncs and MB/s are the median run's. MB/s counts
 * payload bytes only (10^6 bytes), what the application asked to store.
 * "stele x" is stele's records/s divided by the row's, at the same thread
 * count: above 1 stele is faster. After each cell (a thread count), a block
 * gives every peer's ratio again with the range of the rounds' ratios and
 * stele's p99 beside the peer's (with --json: stele_ratio, stele_ratio_min,
 * stele_ratio_max and stele_p99_us on each peer's line).
 */
#include <stdio.h>

#include "bench.h"

const char *durability_name(stele_durability d)
{
    return d == STELE_DURABILITY_SYNC ? "sync" : d == STELE_DURABILITY_INTERVAL ? "interval" : "none";
}

#define TABLE_FORMAT "%-22s %-8s %4s %8s %7s %8s %10s %10s %10s %8s %9s %9s %9s %8s %8s %7s\n"

void report_header(const struct config *cfg)
{
    if (cfg->json)
        return;
    printf(TABLE_FORMAT, "engine", "durabil.", "keys", "size", "threads", "inflight", "records/s", "min", "max",
           "MB/s", "p50 us", "p99 us", "p99.9 us", "syncs/s", "rec/sync", "stele x");
    fflush(stdout);
}

/* A number, or "-" when unknown (negative). */
static const char *num(char *buf, size_t size, double v, int decimals)
{
    if (v < 0)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%.*f", decimals, v);
    return buf;
}

/* A ratio to digits significant digits (0.00215, 0.56, 17.3), or unknown ("-", "null") when negative. */
static const char *ratio_text(char *buf, size_t size, double v, int digits, const char *unknown)
{
    if (v < 0)
        snprintf(buf, size, "%s", unknown);
    else
        snprintf(buf, size, "%.*g", digits, v);
    return buf;
}

/* A JSON number, or null when unknown (negative). */
static const char *jnum(char *buf, size_t size, double v, int decimals)
{
    if (v < 0)
        snprintf(buf, size, "null");
    else
        snprintf(buf, size, "%.*f", decimals, v);
    return buf;
}

static void print_json(const struct config *cfg, const struct result *r, double mb_per_s)
{
    const struct run_result *m = &r->median;
    char sps[32], rps[32], ratio[32], rmin[32], rmax[32], sp99[32];
    printf("{\"engine\":\"%s\",\"durability\":\"%s\",\"record_size\":%zu,\"threads\":%d,\"inflight\":%d,"
           "\"batch\":%d,\"keys\":%s,\"runs\":%d,\"seconds\":%.3f,\"records\":%llu,"
           "\"records_per_s\":%.0f,\"records_per_s_min\":%.0f,\"records_per_s_max\":%.0f,\"mb_per_s\":%.3f,"
           "\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"syncs_per_s\":%s,\"records_per_sync\":%s,"
           "\"stele_ratio\":%s,\"stele_ratio_min\":%s,\"stele_ratio_max\":%s,\"stele_p99_us\":%s}\n",
           r->engine, r->never_syncs ? "none" : durability_name(cfg->durability), cfg->record_size, r->threads,
           cfg->inflight, cfg->batch, r->keyed ? "true" : "false", cfg->runs, m->seconds,
           (unsigned long long)m->records, m->records_per_s, r->records_per_s_min, r->records_per_s_max, mb_per_s,
           m->p50_us, m->p99_us, m->p999_us,
           jnum(sps, sizeof sps, m->syncs_per_s, 0), jnum(rps, sizeof rps, m->records_per_sync, 2),
           ratio_text(ratio, sizeof ratio, r->stele_ratio > 0 ? r->stele_ratio : -1, 4, "null"),
           ratio_text(rmin, sizeof rmin, r->stele_ratio > 0 ? r->ratio_min : -1, 4, "null"),
           ratio_text(rmax, sizeof rmax, r->stele_ratio > 0 ? r->ratio_max : -1, 4, "null"),
           jnum(sp99, sizeof sp99, r->stele_ratio > 0 ? r->stele_p99_us : -1, 2));
}

static void print_row(const struct config *cfg, const struct result *r, double mb_per_s)
{
    const struct run_result *m = &r->median;
    char size[24], threads[16], inflight[16], rps[24], rmin[24], rmax[24], mbps[24], p50[24], p99[24], p999[24],
        sps[24], per_sync[24], ratio[24];
    snprintf(size, sizeof size, "%zu", cfg->record_size);
    snprintf(threads, sizeof threads, "%d", r->threads);
    snprintf(inflight, sizeof inflight, "%d", cfg->inflight);
    printf(TABLE_FORMAT, r->engine, r->never_syncs ? "none" : durability_name(cfg->durability),
           r->keyed ? "yes" : "no", size, threads, inflight, num(rps, sizeof rps, m->records_per_s, 0),
           num(rmin, sizeof rmin, r->records_per_s_min, 0),
           num(rmax, sizeof rmax, r->records_per_s_max, 0), num(mbps, sizeof mbps, mb_per_s, 2),
           num(p50, sizeof p50, m->p50_us, 1), num(p99, sizeof p99, m->p99_us, 1),
           num(p999, sizeof p999, m->p999_us, 1), num(sps, sizeof sps, m->syncs_per_s, 0),
           num(per_sync, sizeof per_sync, m->records_per_sync, 1),
           ratio_text(ratio, sizeof ratio, r->stele_ratio > 0 ? r->stele_ratio : -1, 3, "-"));
}

void report_result(const struct config *cfg, const struct result *r)
{
    double mb_per_s = r->median.records_per_s * (double)cfg->record_size / 1e6;
    if (cfg->json)
        print_json(cfg, r, mb_per_s);
    else
        print_row(cfg, r, mb_per_s);
    fflush(stdout);
}

void report_ratios(const struct config *cfg, const struct result *cell, int count)
{
    if (cfg->json || count < 2)
        return;
    printf("stele/peer, %s, %d thread%s, inflight %d: records/s ratio of the medians of %d interleaved round%s "
           "(range of the rounds' ratios); p99 us stele | peer\n",
           durability_name(cfg->durability), cell[0].threads, cell[0].threads == 1 ? "" : "s", cfg->inflight,
           cfg->runs, cfg->runs == 1 ? "" : "s");
    for (int i = 1; i < count; i++) {
        const struct result *r = &cell[i];
        char ratio[24], lo[24], hi[24];
        if (r->stele_ratio > 0)
            printf("  stele/%-22s %8sx (%s-%s)   p99 %9.1f | %9.1f\n", r->engine,
                   ratio_text(ratio, sizeof ratio, r->stele_ratio, 3, "-"),
                   ratio_text(lo, sizeof lo, r->ratio_min, 3, "-"), ratio_text(hi, sizeof hi, r->ratio_max, 3, "-"),
                   r->stele_p99_us, r->median.p99_us);
        else
            printf("  stele/%-22s        -  (the peer appended nothing)\n", r->engine);
    }
    fflush(stdout);
}

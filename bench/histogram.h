/*
 * histogram.h - a latency histogram with bounded relative error: values are
 * bucketed by their power of two and 64 linear sub-buckets within it, so any
 * percentile is exact to within 1/64 (1.6 %) of its value, every value is
 * counted (no sampling), and merging per-thread histograms is a sum.
 */
#ifndef STELE_BENCH_HISTOGRAM_H
#define STELE_BENCH_HISTOGRAM_H

#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
#define HIST_BUCKET_COUNT (64u - HIST_SUB_BITS + 1u)

struct histogram {
    uint64_t count[HIST_BUCKET_COUNT][HIST_SUB_COUNT];
    uint64_t total;
    uint64_t max;
};

void hist_record(struct histogram *h, uint64_t value);
void hist_merge(struct histogram *dst, const struct histogram *src);
/* The value at quantile q in [0, 1] (the bucket's upper bound); 0 when empty. */
uint64_t hist_quantile(const struct histogram *h, double q);

#endif

/*
 * histogram.c - see histogram.h.
 */
#include "histogram.h"

static void locate(uint64_t v, unsigned *out_bucket, unsigned *out_sub)
{
    if (v < HIST_SUB_COUNT) {
        *out_bucket = 0;
        *out_sub = (unsigned)v;
        return;
    }
    unsigned top = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS */
    *out_bucket = top - HIST_SUB_BITS + 1u;
    *out_sub = (unsigned)(v >> (top - HIST_SUB_BITS)) & (HIST_SUB_COUNT - 1u);
}

static uint64_t upper_bound(unsigned bucket, unsigned sub)
{
    if (bucket == 0)
        return sub;
    unsigned shift = bucket - 1u;
    uint64_t base = (uint64_t)HIST_SUB_COUNT << shift;
    return base + (((uint64_t)sub + 1u) << shift) - 1u;
}

void hist_record(struct histogram *h, uint64_t value)
{
    unsigned b, s;
    locate(value, &b, &s);
    h->count[b][s]++;
    h->total++;
    if (value > h->max)
        h->max = value;
}

void hist_merge(struct histogram *dst, const struct histogram *src)
{
    for (unsigned b = 0; b < HIST_BUCKET_COUNT; b++)
        for (unsigned s = 0; s < HIST_SUB_COUNT; s++)
            dst->count[b][s] += src->count[b][s];
    dst->total += src->total;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_quantile(const struct histogram *h, double q)
{
    if (h->total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)(h->total - 1)) + 1u, seen = 0;
    for (unsigned b = 0; b < HIST_BUCKET_COUNT; b++)
        for (unsigned s = 0; s < HIST_SUB_COUNT; s++) {
            seen += h->count[b][s];
            if (seen >= rank) {
                uint64_t ub = upper_bound(b, s);
                return ub < h->max ? ub : h->max;
            }
        }
    return h->max;
}

/*
 * backoff.c - exponential backoff with full jitter (see backoff.h).
 */
#include "backoff.h"

uint64_t backoff_cap_ms(uint64_t base_ms, uint64_t max_ms, unsigned attempt)
{
    uint64_t cap = base_ms;
    for (unsigned i = 1; i < attempt && cap < max_ms; i++)
        cap = cap > UINT64_MAX / 2 ? UINT64_MAX : cap * 2;
    return cap < max_ms ? cap : max_ms;
}

uint64_t backoff_rand(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

uint64_t backoff_delay_ms(uint64_t base_ms, uint64_t max_ms, unsigned attempt, uint64_t *state)
{
    uint64_t cap = backoff_cap_ms(base_ms, max_ms, attempt);
    uint64_t r = backoff_rand(state);
    /* cap + 1 values; the modulo bias is below 2^-40 for caps under 2^24 ms. */
    return cap == UINT64_MAX ? r : r % (cap + 1);
}

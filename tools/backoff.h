/*
 * backoff.h - exponential backoff with full jitter for `stele replay`
 * (PRODUCT.md: "exponential backoff with full jitter, capped attempts").
 *
 * After failed attempt a (1-based) the wait is drawn uniformly from
 * [0, min(max_ms, base_ms * 2^(a-1))] ms: the cap doubles with every
 * failure up to max_ms, and the whole range down to 0 is used ("full
 * jitter") so that many consumers failing together do not retry together.
 * The random numbers come from a seeded generator (splitmix64), so a seed
 * makes a run's waits reproducible.
 */
#ifndef STELE_TOOLS_BACKOFF_H
#define STELE_TOOLS_BACKOFF_H

#include <stdint.h>

/* The upper bound of the wait after failed attempt (1-based): min(max_ms,
 * base_ms * 2^(attempt-1)), without overflow. */
uint64_t backoff_cap_ms(uint64_t base_ms, uint64_t max_ms, unsigned attempt);

/* One wait in [0, backoff_cap_ms(...)], advancing *state. */
uint64_t backoff_delay_ms(uint64_t base_ms, uint64_t max_ms, unsigned attempt, uint64_t *state);

/* splitmix64: the next pseudo-random number from *state. */
uint64_t backoff_rand(uint64_t *state);

#endif

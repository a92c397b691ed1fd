/*
 * check_backoff.c - proves the retry waits of `stele replay` (tools/backoff.c,
 * linked into this suite alone): exponential backoff with full jitter.
 *
 * How: the cap after attempt a is exactly min(max, base * 2^(a-1)) for a
 * table of cases, overflow included; 20,000 waits per attempt all lie in
 * [0, cap] and spread uniformly over it (each tenth of the range gets
 * 10% +- 2% of them, so a wait of "cap/2 + jitter" or a constant one fails);
 * the same seed gives the same waits and another seed different ones.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "backoff.h"

START_TEST(test_caps)
{
    static const struct { uint64_t base, max; unsigned attempt; uint64_t cap; } cases[] = {
        {100, 30000, 1, 100}, {100, 30000, 2, 200}, {100, 30000, 3, 400}, {100, 30000, 9, 25600},
        {100, 30000, 10, 30000}, {100, 30000, 1000, 30000}, {0, 0, 5, 0}, {7, 7, 1, 7}, {5, 100, 0, 5},
        {UINT64_C(1) << 62, UINT64_MAX, 4, UINT64_MAX}, {1, UINT64_MAX, 64, UINT64_C(1) << 63},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(backoff_cap_ms(cases[i].base, cases[i].max, cases[i].attempt) == cases[i].cap,
                      "case %zu: cap %llu, want %llu", i,
                      (unsigned long long)backoff_cap_ms(cases[i].base, cases[i].max, cases[i].attempt),
                      (unsigned long long)cases[i].cap);
}
END_TEST

START_TEST(test_full_jitter)
{
    uint64_t state = 12345;
    for (unsigned attempt = 1; attempt <= 6; attempt++) {
        uint64_t cap = backoff_cap_ms(100, 3000, attempt), buckets[10] = {0};
        const unsigned n = 20000;
        for (unsigned i = 0; i < n; i++) {
            uint64_t d = backoff_delay_ms(100, 3000, attempt, &state);
            ck_assert_uint_le(d, cap);
            buckets[d * 10 / (cap + 1)]++;
        }
        for (int b = 0; b < 10; b++)
            ck_assert_msg(buckets[b] > n / 10 - n / 50 && buckets[b] < n / 10 + n / 50,
                          "attempt %u: tenth %d of [0, %llu] got %llu of %u waits", attempt, b,
                          (unsigned long long)cap, (unsigned long long)buckets[b], n);
    }
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(backoff_delay_ms(0, 0, 3, &state), 0);
}
END_TEST

START_TEST(test_seed)
{
    uint64_t a = 42, b = 42, c = 43;
    int differ = 0;
    for (unsigned attempt = 1; attempt <= 20; attempt++) {
        uint64_t x = backoff_delay_ms(50, 100000, attempt, &a), y = backoff_delay_ms(50, 100000, attempt, &b);
        ck_assert_uint_eq(x, y);
        differ |= x != backoff_delay_ms(50, 100000, attempt, &c);
    }
    ck_assert(differ);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backoff");
    TCase *tc = tcase_create("backoff");
    tcase_add_test(tc, test_caps);
    tcase_add_test(tc, test_full_jitter);
    tcase_add_test(tc, test_seed);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

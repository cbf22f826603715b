/* test_rng.c — the seeded generator: splitmix64's published stream for seed 0 (Vigna's
 * splitmix64.c), random access that agrees with stepping, and bounded draws in range. */
#include <check.h>
#include <stdint.h>

#include "engine/base/rng.h"

START_TEST(seed_zero_gives_the_reference_splitmix64_stream)
{
    static const uint64_t want[] = { 0xe220a8397b1dcdafull, 0x6e789e6aa1b965f4ull,
                                     0x06c45d188009454full };
    uint64_t s = 0;

    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(rng_next(&s), want[i]);
    ck_assert_uint_eq(s, 3 * RNG_GOLDEN);
}
END_TEST

START_TEST(random_access_agrees_with_stepping)
{
    uint64_t seed = 12345, s = seed;

    ck_assert_uint_eq(rng_at(seed, 0), rng_mix(seed));
    for (uint64_t i = 1; i <= 1000; i++)
        ck_assert_uint_eq(rng_next(&s), rng_at(seed, i));
}
END_TEST

START_TEST(bounded_draws_stay_below_n_and_reach_every_value)
{
    uint64_t s = 7;
    int seen[10] = { 0 };

    for (int i = 0; i < 1000; i++) {
        uint64_t v = rng_below(&s, 10);

        ck_assert_uint_lt(v, 10);
        seen[v]++;
    }
    for (int v = 0; v < 10; v++)
        ck_assert_int_gt(seen[v], 50);   /* 100 expected; below 50 is p < 1e-6 */
    ck_assert_uint_eq(rng_below(&s, 1), 0);
}
END_TEST

Suite *rng_suite(void)
{
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("rng");

    tcase_add_test(tc, seed_zero_gives_the_reference_splitmix64_stream);
    tcase_add_test(tc, random_access_agrees_with_stepping);
    tcase_add_test(tc, bounded_draws_stay_below_n_and_reach_every_value);
    suite_add_tcase(s, tc);
    return s;
}

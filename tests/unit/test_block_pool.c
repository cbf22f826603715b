/* test_block_pool.c — the block pool: allocation and ref counts, LRU order of the free list,
 * prefix-cache hits on freed blocks, eviction dropping the hash, the map under collisions,
 * the hash chain against a direct XXH3 call, and a double free caught as an invariant. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "scheduler/block_pool.h"

static struct block_hash H(uint64_t lo, uint64_t hi)
{
    return (struct block_hash){ .lo = lo, .hi = hi };
}

START_TEST(alloc_hands_out_every_block_once_then_none)
{
    struct block_pool p;
    int seen[5] = { 0 };

    ck_assert_int_eq(block_pool_init(&p, 5), 0);
    ck_assert_int_eq(block_pool_num_free(&p), 5);
    for (int i = 0; i < 5; i++) {
        int id = block_pool_alloc(&p);

        ck_assert(id >= 0 && id < 5);
        ck_assert_int_eq(seen[id]++, 0);
        ck_assert_int_eq(block_pool_ref_count(&p, id), 1);
    }
    ck_assert_int_eq(block_pool_num_free(&p), 0);
    ck_assert_int_eq(block_pool_alloc(&p), -1);
    block_pool_fini(&p);
}
END_TEST

START_TEST(block_returns_to_free_list_only_at_zero_refs)
{
    struct block_pool p;
    int id;

    ck_assert_int_eq(block_pool_init(&p, 3), 0);
    id = block_pool_alloc(&p);
    block_pool_ref(&p, id);
    ck_assert_int_eq(block_pool_ref_count(&p, id), 2);
    block_pool_free(&p, id);
    ck_assert_int_eq(block_pool_ref_count(&p, id), 1);
    ck_assert_int_eq(block_pool_num_free(&p), 2);
    block_pool_free(&p, id);
    ck_assert_int_eq(block_pool_ref_count(&p, id), 0);
    ck_assert_int_eq(block_pool_num_free(&p), 3);
    block_pool_fini(&p);
}
END_TEST

START_TEST(allocation_takes_the_least_recently_freed_cached_block)
{
    struct block_pool p;
    int order[4] = { 2, 0, 3, 1 };

    ck_assert_int_eq(block_pool_init(&p, 4), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(block_pool_alloc(&p), i);   /* a fresh pool hands out ids in order */
        ck_assert(block_pool_register(&p, i, 0, H(100 + i, 7)));
    }
    for (int i = 0; i < 4; i++)
        block_pool_free(&p, order[i]);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(block_pool_alloc(&p), order[i]);
        /* evicted: its hash is gone, the later ones are still cached */
        ck_assert_int_eq(block_pool_lookup(&p, 0, H(100 + order[i], 7)), -1);
        if (i + 1 < 4)
            ck_assert_int_eq(block_pool_lookup(&p, 0, H(100 + order[i + 1], 7)), order[i + 1]);
    }
    block_pool_fini(&p);
}
END_TEST

START_TEST(unhashed_free_block_goes_before_cached_ones)
{
    struct block_pool p;
    int a, b;

    ck_assert_int_eq(block_pool_init(&p, 2), 0);
    a = block_pool_alloc(&p);
    b = block_pool_alloc(&p);
    ck_assert(block_pool_register(&p, a, 0, H(1, 1)));
    block_pool_free(&p, a);   /* cached, freed first */
    block_pool_free(&p, b);   /* holds nothing */
    ck_assert_int_eq(block_pool_alloc(&p), b);
    ck_assert_int_eq(block_pool_lookup(&p, 0, H(1, 1)), a);
    block_pool_fini(&p);
}
END_TEST

START_TEST(freed_cached_block_is_revived_by_a_hit)
{
    struct block_pool p;
    int a, other;

    ck_assert_int_eq(block_pool_init(&p, 3), 0);
    a = block_pool_alloc(&p);
    ck_assert(block_pool_register(&p, a, 1, H(42, 43)));
    block_pool_free(&p, a);
    ck_assert_int_eq(block_pool_num_free(&p), 3);
    ck_assert_int_eq(block_pool_lookup(&p, 1, H(42, 43)), a);
    block_pool_ref(&p, a);   /* the hit */
    ck_assert_int_eq(block_pool_ref_count(&p, a), 1);
    ck_assert_int_eq(block_pool_num_free(&p), 2);
    /* it left the free list: the other two go first, then nothing */
    other = block_pool_alloc(&p);
    ck_assert_int_ne(other, a);
    ck_assert_int_ne(block_pool_alloc(&p), a);
    ck_assert_int_eq(block_pool_alloc(&p), -1);
    ck_assert_int_eq(block_pool_lookup(&p, 1, H(42, 43)), a);
    block_pool_fini(&p);
}
END_TEST

START_TEST(eviction_removes_the_hash)
{
    struct block_pool p;
    int a;

    ck_assert_int_eq(block_pool_init(&p, 1), 0);
    a = block_pool_alloc(&p);
    ck_assert(block_pool_register(&p, a, 0, H(5, 6)));
    block_pool_free(&p, a);
    ck_assert(block_pool_hash_of(&p, a, NULL, NULL));
    ck_assert_int_eq(block_pool_alloc(&p), a);
    ck_assert_int_eq(block_pool_lookup(&p, 0, H(5, 6)), -1);
    ck_assert(!block_pool_hash_of(&p, a, NULL, NULL));
    ck_assert(p.num_hashed == 0);
    block_pool_fini(&p);
}
END_TEST

START_TEST(map_key_is_group_and_hash)
{
    struct block_pool p;
    int a, b, g;
    struct block_hash h;

    ck_assert_int_eq(block_pool_init(&p, 4), 0);
    a = block_pool_alloc(&p);
    b = block_pool_alloc(&p);
    ck_assert(block_pool_register(&p, a, 0, H(9, 9)));
    ck_assert_int_eq(block_pool_lookup(&p, 1, H(9, 9)), -1);
    ck_assert(block_pool_register(&p, b, 1, H(9, 9)));
    ck_assert_int_eq(block_pool_lookup(&p, 0, H(9, 9)), a);
    ck_assert_int_eq(block_pool_lookup(&p, 1, H(9, 9)), b);
    ck_assert(block_pool_hash_of(&p, b, &g, &h));
    ck_assert_int_eq(g, 1);
    ck_assert(h.lo == 9 && h.hi == 9);
    block_pool_fini(&p);
}
END_TEST

START_TEST(second_block_with_a_taken_key_stays_unhashed)
{
    struct block_pool p;
    int a, b;

    ck_assert_int_eq(block_pool_init(&p, 2), 0);
    a = block_pool_alloc(&p);
    b = block_pool_alloc(&p);
    ck_assert(block_pool_register(&p, a, 0, H(3, 4)));
    ck_assert(!block_pool_register(&p, b, 0, H(3, 4)));
    ck_assert(!block_pool_hash_of(&p, b, NULL, NULL));
    ck_assert_int_eq(block_pool_lookup(&p, 0, H(3, 4)), a);
    block_pool_fini(&p);
}
END_TEST

/* Keys built to share one bucket (same lo and group, hi differing only above bit 20): the
 * chain must survive removals from its middle. */
START_TEST(colliding_keys_survive_evictions_in_the_middle)
{
    struct block_pool p;
    int ids[8];

    ck_assert_int_eq(block_pool_init(&p, 8), 0);
    for (int i = 0; i < 8; i++) {
        ids[i] = block_pool_alloc(&p);
        ck_assert(block_pool_register(&p, ids[i], 0, H(77, (uint64_t)(i + 1) << 20)));
    }
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(block_pool_lookup(&p, 0, H(77, (uint64_t)(i + 1) << 20)), ids[i]);
    /* free 3, 5, 1 (cached, in that LRU order), then evict them by allocating */
    block_pool_free(&p, ids[3]);
    block_pool_free(&p, ids[5]);
    block_pool_free(&p, ids[1]);
    ck_assert_int_eq(block_pool_alloc(&p), ids[3]);
    ck_assert_int_eq(block_pool_alloc(&p), ids[5]);
    ck_assert_int_eq(block_pool_alloc(&p), ids[1]);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(block_pool_lookup(&p, 0, H(77, (uint64_t)(i + 1) << 20)),
                         i == 1 || i == 3 || i == 5 ? -1 : ids[i]);
    block_pool_fini(&p);
}
END_TEST

START_TEST(hash_chains_parent_then_tokens_as_xxh3_128)
{
    struct block_pool p;
    int32_t t[4] = { 10, 20, 30, 40 }, u[4] = { 10, 20, 30, 41 };
    unsigned char buf[16 + sizeof t];
    struct block_hash h0, h1, h2;
    XXH128_hash_t want;

    ck_assert_int_eq(block_pool_init(&p, 1), 0);
    h0 = block_pool_hash(&p, NULL, t, 4);
    /* first block: 16 zero bytes, then the tokens */
    memset(buf, 0, 16);
    memcpy(buf + 16, t, sizeof t);
    want = XXH3_128bits(buf, sizeof buf);
    ck_assert(h0.lo == want.low64 && h0.hi == want.high64);
    /* second block: the parent's lo and hi words, then the tokens */
    h1 = block_pool_hash(&p, &h0, t, 4);
    memcpy(buf, &h0.lo, 8);
    memcpy(buf + 8, &h0.hi, 8);
    want = XXH3_128bits(buf, sizeof buf);
    ck_assert(h1.lo == want.low64 && h1.hi == want.high64);
    ck_assert(h1.lo != h0.lo || h1.hi != h0.hi);
    h2 = block_pool_hash(&p, NULL, u, 4);
    ck_assert(h2.lo != h0.lo || h2.hi != h0.hi);
    block_pool_fini(&p);
}
END_TEST

START_TEST(double_free_is_caught_as_an_invariant)
{
    struct block_pool p;
    int status, id;
    pid_t pid;

    ck_assert_int_eq(block_pool_init(&p, 2), 0);
    id = block_pool_alloc(&p);
    block_pool_free(&p, id);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr))
            _exit(2);
        /* The hash state sits behind an aligned (interior) pointer: under valgrind the
         * aborting child would report it as possibly lost. */
        XXH3_freeState(p.xxh_state);
        p.xxh_state = NULL;
        block_pool_free(&p, id);   /* ref count would go below zero */
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    ck_assert_int_eq(block_pool_num_free(&p), 2);   /* the parent's pool is untouched */
    block_pool_fini(&p);
}
END_TEST

START_TEST(bad_sizes_are_refused)
{
    struct block_pool p;

    ck_assert_int_eq(block_pool_init(&p, 0), -EINVAL);
    ck_assert_int_eq(block_pool_init(&p, -3), -EINVAL);
}
END_TEST

Suite *block_pool_suite(void)
{
    Suite *s = suite_create("block_pool");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, alloc_hands_out_every_block_once_then_none);
    tcase_add_test(tc, block_returns_to_free_list_only_at_zero_refs);
    tcase_add_test(tc, allocation_takes_the_least_recently_freed_cached_block);
    tcase_add_test(tc, unhashed_free_block_goes_before_cached_ones);
    tcase_add_test(tc, freed_cached_block_is_revived_by_a_hit);
    tcase_add_test(tc, eviction_removes_the_hash);
    tcase_add_test(tc, map_key_is_group_and_hash);
    tcase_add_test(tc, second_block_with_a_taken_key_stays_unhashed);
    tcase_add_test(tc, colliding_keys_survive_evictions_in_the_middle);
    tcase_add_test(tc, hash_chains_parent_then_tokens_as_xxh3_128);
    tcase_add_test(tc, double_free_is_caught_as_an_invariant);
    tcase_add_test(tc, bad_sizes_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

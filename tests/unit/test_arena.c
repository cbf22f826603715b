/* test_arena.c — the one pool: zeroed and aligned allocations, large ones beside small
 * ones without losing the current block's room, overflow refused, strings copied and
 * packed, the block size and the ceiling of arena_init_sized, reuse after arena_fini. */
#include <check.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "engine/base/arena.h"

START_TEST(allocations_are_zeroed_aligned_and_distinct)
{
    struct arena a;
    unsigned char *p[100];

    arena_init(&a);
    for (int i = 0; i < 100; i++) {
        p[i] = arena_alloc(&a, (size_t)i * 7 + 1);
        ck_assert_ptr_nonnull(p[i]);
        ck_assert_uint_eq((uintptr_t)p[i] % 16, 0);
        for (int k = 0; k < i * 7 + 1; k++)
            ck_assert_uint_eq(p[i][k], 0);
        memset(p[i], 0xAB, (size_t)i * 7 + 1);
    }
    for (int i = 1; i < 100; i++)              /* nothing overlapped: each still holds 0xAB */
        ck_assert_uint_eq(p[i][i * 7], 0xAB);
    arena_fini(&a);
    ck_assert_ptr_null(a.head);
    ck_assert_uint_eq(a.total_bytes, 0);
}
END_TEST

START_TEST(a_large_allocation_keeps_the_current_blocks_room)
{
    struct arena a;
    char *small1, *big, *small2;

    arena_init(&a);
    small1 = arena_alloc(&a, 16);
    big = arena_alloc(&a, 1 << 20);
    small2 = arena_alloc(&a, 16);
    ck_assert_ptr_nonnull(big);
    /* The second small one still comes from the first block, right after the first. */
    ck_assert_ptr_eq(small2, small1 + 16);
    memset(big, 1, 1 << 20);
    arena_fini(&a);
}
END_TEST

START_TEST(overflowing_sizes_are_refused)
{
    struct arena a;

    arena_init(&a);
    ck_assert_ptr_null(arena_alloc(&a, SIZE_MAX));
    ck_assert_ptr_null(arena_calloc(&a, SIZE_MAX / 2, 4));
    ck_assert_ptr_nonnull(arena_calloc(&a, 0, 8));
    arena_fini(&a);
}
END_TEST

START_TEST(strings_are_copied_with_their_terminator)
{
    struct arena a;
    const char src[] = "abc\0def";
    char *s, *t;

    arena_init(&a);
    s = arena_strndup(&a, src, 7);
    ck_assert_mem_eq(s, src, 8);
    t = arena_strdup(&a, "hello");
    ck_assert_str_eq(t, "hello");
    arena_fini(&a);
}
END_TEST

START_TEST(strings_are_packed_and_objects_after_them_are_aligned)
{
    struct arena a;
    char *s1, *s2, *s3;
    void *p;

    arena_init(&a);
    s1 = arena_strndup(&a, "ab", 2);
    s2 = arena_strndup(&a, "cde", 3);
    s3 = arena_strndup(&a, "", 0);
    ck_assert_ptr_eq(s2, s1 + 3);           /* "ab\0" then "cde\0", no padding between */
    ck_assert_ptr_eq(s3, s2 + 4);
    ck_assert_str_eq(s1, "ab");
    ck_assert_str_eq(s3, "");
    p = arena_alloc(&a, 8);
    ck_assert_uint_eq((uintptr_t)p % 16, 0);
    ck_assert_ptr_eq(p, s1 + 16);           /* the next 16-byte boundary of the block */
    arena_fini(&a);
}
END_TEST

START_TEST(the_ceiling_refuses_what_would_pass_it_and_keeps_the_rest)
{
    struct arena a;
    size_t n = 0;
    char *first;

    arena_init_sized(&a, 1024, 4096);
    first = arena_alloc(&a, 100);
    memset(first, 7, 100);
    while (arena_alloc(&a, 200))
        n++;
    ck_assert_uint_gt(n, 8);                /* three or four blocks of 1 KiB were given */
    ck_assert_uint_le(a.total_bytes, 4096);
    ck_assert_ptr_null(arena_alloc(&a, 5000));
    ck_assert_uint_eq((unsigned char)first[99], 7);
    arena_fini(&a);
    /* The sizes survive fini: the arena takes up to the ceiling again. */
    ck_assert_uint_eq(a.max_bytes, 4096);
    ck_assert_uint_eq(a.block_bytes, 1024);
    ck_assert_ptr_nonnull(arena_alloc(&a, 3000));
    ck_assert_ptr_null(arena_alloc(&a, 3000));
    arena_fini(&a);
}
END_TEST

START_TEST(a_big_block_size_takes_fewer_blocks)
{
    struct arena small, big;
    char word[8];

    arena_init(&small);
    arena_init_sized(&big, 1 << 20, SIZE_MAX);
    for (int i = 0; i < 100000; i++) {
        int len = snprintf(word, sizeof word, "w%d", i);

        ck_assert_ptr_nonnull(arena_strndup(&small, word, (size_t)len));
        ck_assert_ptr_nonnull(arena_strndup(&big, word, (size_t)len));
    }
    /* About 690 kB of strings: one block of 1 MiB, or some 170 blocks of 4 KiB. */
    ck_assert_uint_lt(big.total_bytes, (1 << 20) + 64);
    ck_assert_uint_gt(small.total_bytes, 160 * 4096);
    arena_fini(&small);
    arena_fini(&big);
}
END_TEST

Suite *arena_suite(void)
{
    Suite *s = suite_create("arena");
    TCase *tc = tcase_create("arena");

    tcase_add_test(tc, allocations_are_zeroed_aligned_and_distinct);
    tcase_add_test(tc, a_large_allocation_keeps_the_current_blocks_room);
    tcase_add_test(tc, overflowing_sizes_are_refused);
    tcase_add_test(tc, strings_are_copied_with_their_terminator);
    tcase_add_test(tc, strings_are_packed_and_objects_after_them_are_aligned);
    tcase_add_test(tc, the_ceiling_refuses_what_would_pass_it_and_keeps_the_rest);
    tcase_add_test(tc, a_big_block_size_takes_fewer_blocks);
    suite_add_tcase(s, tc);
    return s;
}

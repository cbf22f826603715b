/* test_arena.c — the per-request pool: zeroed and aligned allocations, large ones beside
 * small ones without losing the current block's room, overflow refused, strings copied. */
#include <check.h>
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

Suite *arena_suite(void)
{
    Suite *s = suite_create("arena");
    TCase *tc = tcase_create("arena");

    tcase_add_test(tc, allocations_are_zeroed_aligned_and_distinct);
    tcase_add_test(tc, a_large_allocation_keeps_the_current_blocks_room);
    tcase_add_test(tc, overflowing_sizes_are_refused);
    tcase_add_test(tc, strings_are_copied_with_their_terminator);
    suite_add_tcase(s, tc);
    return s;
}

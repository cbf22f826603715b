/* test_buf.c — the growable byte string: appends across many doublings keep every byte and
 * the NUL, reserving 0 still gives a string, sizes past size_t are refused with the buffer
 * untouched, the front drop and the hand-over. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/buf.h"

START_TEST(appends_keep_every_byte_and_a_nul_across_growth)
{
    struct buf b = BUF_INIT;
    char want[5000];

    for (int i = 0; i < 5000; i++) {
        want[i] = (char)('a' + i % 26);
        ck_assert_int_eq(buf_put(&b, &want[i], 1), 0);
        ck_assert_uint_eq(b.len, (size_t)i + 1);
        ck_assert_uint_eq(b.p[b.len], '\0');
        ck_assert_uint_gt(b.cap, b.len);
    }
    ck_assert_mem_eq(b.p, want, 5000);
    ck_assert_uint_le(b.cap, 2 * 5001);              /* doubling, not one byte at a time */
    ck_assert_int_eq(buf_put(&b, NULL, 0), 0);
    ck_assert_int_eq(buf_put(&b, "xyz", 3), 0);
    ck_assert_str_eq(b.p + 5000, "xyz");
    buf_fini(&b);
    ck_assert_ptr_null(b.p);
    ck_assert_uint_eq(b.len + b.cap, 0);
}
END_TEST

START_TEST(reserving_nothing_still_gives_an_empty_string)
{
    struct buf b;

    buf_init(&b);
    ck_assert_int_eq(buf_reserve(&b, 0), 0);
    ck_assert_ptr_nonnull(b.p);
    ck_assert_str_eq(b.p, "");
    buf_fini(&b);
}
END_TEST

START_TEST(sizes_past_size_t_are_refused_and_change_nothing)
{
    struct buf b = BUF_INIT;
    char *p;

    ck_assert_int_eq(buf_put(&b, "keep", 4), 0);
    p = b.p;
    ck_assert_int_eq(buf_reserve(&b, SIZE_MAX), -ENOMEM);
    ck_assert_int_eq(buf_reserve(&b, SIZE_MAX - 4), -ENOMEM);
    ck_assert_ptr_eq(b.p, p);
    ck_assert_uint_eq(b.len, 4);
    ck_assert_str_eq(b.p, "keep");
    buf_fini(&b);
}
END_TEST

START_TEST(consume_drops_the_front_and_take_hands_the_bytes_over)
{
    struct buf b = BUF_INIT;
    size_t len, cap;
    char *s;

    ck_assert_int_eq(buf_put(&b, "data: 1\n\ndata: 2\n\n", 18), 0);
    buf_consume(&b, 9);
    ck_assert_str_eq(b.p, "data: 2\n\n");
    ck_assert_uint_eq(b.len, 9);
    cap = b.cap;
    buf_clear(&b);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, cap);                   /* clear keeps the memory */
    ck_assert_int_eq(buf_put(&b, "abc", 3), 0);
    buf_consume(&b, 3);
    ck_assert_str_eq(b.p, "");
    ck_assert_int_eq(buf_put(&b, "last", 4), 0);
    s = buf_take(&b, &len);
    ck_assert_str_eq(s, "last");
    ck_assert_uint_eq(len, 4);
    ck_assert_ptr_null(b.p);
    free(s);
    s = buf_take(&b, &len);                          /* nothing put: "", not NULL */
    ck_assert_str_eq(s, "");
    ck_assert_uint_eq(len, 0);
    free(s);
}
END_TEST

Suite *buf_suite(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = tcase_create("buf");

    tcase_add_test(tc, appends_keep_every_byte_and_a_nul_across_growth);
    tcase_add_test(tc, reserving_nothing_still_gives_an_empty_string);
    tcase_add_test(tc, sizes_past_size_t_are_refused_and_change_nothing);
    tcase_add_test(tc, consume_drops_the_front_and_take_hands_the_bytes_over);
    suite_add_tcase(s, tc);
    return s;
}

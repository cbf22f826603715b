/* test_json_out.c — server/json_out.c: JSON text written straight into a bounded buffer.
 * Strings and numbers are checked against what a JSON parser (cJSON) reads back and, for
 * numbers, against cJSON's own printing (the renderer replaced cJSON trees and must not
 * change a byte of the answers); the bound is exact and sticky. */
#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "server/json_out.h"

static char *take(struct json_out *o, size_t *len)
{
    int rc = 1;
    char *s = json_out_take(o, len, &rc);

    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(strlen(s), *len);
    return s;
}

START_TEST(strings_escape_what_json_needs_and_read_back)
{
    static const char text[] = "a\"b\\c\n\t\x01\x1f \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80/";
    struct json_out o;
    size_t len;
    char *s;
    cJSON *back;

    json_out_init(&o, 0);
    json_out_str(&o, text, sizeof text - 1);
    s = take(&o, &len);
    ck_assert_str_eq(s, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80/\"");
    back = cJSON_Parse(s);
    ck_assert(cJSON_IsString(back));
    ck_assert_str_eq(back->valuestring, text);
    cJSON_Delete(back);
    free(s);
    /* NUL inside, bytes that are not UTF-8 (one U+FFFD each), NULL as null, parts joined. */
    json_out_init(&o, 0);
    json_out_str(&o, "x\0y", 3);
    json_out_raw(&o, ",", 1);
    json_out_str(&o, "\xff\xe2\x82", 3);
    json_out_raw(&o, ",", 1);
    json_out_str(&o, NULL, 0);
    json_out_raw(&o, ",\"", 2);
    json_out_str_part(&o, "ab", 2);
    json_out_str_part(&o, "", 0);
    json_out_str_part(&o, "\"c", 2);
    json_out_raw(&o, "\"", 1);
    s = take(&o, &len);
    ck_assert_str_eq(s, "\"x\\u0000y\",\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\",null,\"ab\\\"c\"");
    free(s);
}
END_TEST

START_TEST(numbers_print_as_cjson_prints_them)
{
    static const double v[] = { 0, -2, 1700000000, -0.5, -1.25, -0.1234567910432816, 3.0e-7, -1e300,
                                2147483648.0, -2147483648.0, (double)-0.693147182f, 1e-320 };
    struct json_out o;
    size_t len;
    char *s;

    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        cJSON *n = cJSON_CreateNumber(v[i]);
        char *want = cJSON_PrintUnformatted(n);

        json_out_init(&o, 0);
        json_out_num(&o, v[i]);
        s = take(&o, &len);
        ck_assert_msg(!strcmp(s, want), "%.17g: got %s, cJSON prints %s", v[i], s, want);
        free(want);
        free(s);
        cJSON_Delete(n);
    }
    json_out_init(&o, 0);
    json_out_num(&o, NAN);
    json_out_raw(&o, ",", 1);
    json_out_num(&o, -INFINITY);
    json_out_raw(&o, ",", 1);
    json_out_int(&o, -9223372036854775807LL - 1);
    s = take(&o, &len);
    ck_assert_str_eq(s, "null,null,-9223372036854775808");
    free(s);
}
END_TEST

START_TEST(the_bound_is_exact_and_a_write_past_it_fails_for_good)
{
    struct json_out o;
    size_t len;
    char *s;
    int rc = 0;

    json_out_init(&o, 8);
    json_out_str(&o, "abc\n", 4);     /* "abc\n" escaped: 8 bytes, exactly the bound */
    s = take(&o, &len);
    ck_assert_str_eq(s, "\"abc\\n\"");
    free(s);
    json_out_init(&o, 8);
    json_out_str(&o, "abcde\n", 6);   /* 10 bytes */
    ck_assert_int_eq(o.err, -E2BIG);
    json_out_lit(&o, "x");            /* sticky: nothing more is written */
    ck_assert_ptr_null(json_out_take(&o, &len, &rc));
    ck_assert_int_eq(rc, -E2BIG);
    ck_assert_uint_eq(len, 0);
    /* Nothing written at all is an error too, not an empty answer. */
    json_out_init(&o, 0);
    ck_assert_ptr_null(json_out_take(&o, &len, &rc));
    ck_assert_int_eq(rc, -ENOMEM);
    /* A long text grows the buffer as needed. */
    json_out_init(&o, 0);
    for (int i = 0; i < 100000; i++)
        json_out_lit(&o, "0123456789");
    s = take(&o, &len);
    ck_assert_uint_eq(len, 1000000);
    free(s);
}
END_TEST

Suite *json_out_suite(void)
{
    Suite *s = suite_create("json_out");
    TCase *tc = tcase_create("json_out");

    tcase_add_test(tc, strings_escape_what_json_needs_and_read_back);
    tcase_add_test(tc, numbers_print_as_cjson_prints_them);
    tcase_add_test(tc, the_bound_is_exact_and_a_write_past_it_fails_for_good);
    suite_add_tcase(s, tc);
    return s;
}

/* test_auth.c — Bearer parsing, the key comparison (equal, unequal, prefix, longer) and the
 * masked form for logs. */
#include <check.h>
#include <string.h>

#include "server/auth.h"

START_TEST(bearer_token_is_found_in_any_case_with_blanks)
{
    const char *t;
    size_t n;

    ck_assert_int_eq(auth_bearer("Bearer sk-123", &t, &n), 0);
    ck_assert_uint_eq(n, 6);
    ck_assert(!strncmp(t, "sk-123", n));
    ck_assert_int_eq(auth_bearer("  bearer \t sk-1 \t", &t, &n), 0);
    ck_assert_uint_eq(n, 4);
    ck_assert(!strncmp(t, "sk-1", n));
    ck_assert_int_eq(auth_bearer("BEARER x", &t, &n), 0);
    ck_assert_uint_eq(n, 1);
}
END_TEST

START_TEST(other_schemes_and_empty_tokens_are_refused)
{
    const char *t;
    size_t n;

    ck_assert_int_ne(auth_bearer(NULL, &t, &n), 0);
    ck_assert_int_ne(auth_bearer("", &t, &n), 0);
    ck_assert_int_ne(auth_bearer("Bearer", &t, &n), 0);
    ck_assert_int_ne(auth_bearer("Bearer   ", &t, &n), 0);
    ck_assert_int_ne(auth_bearer("Basic dXNlcjpwYXNz", &t, &n), 0);
    ck_assert_int_ne(auth_bearer("Bearersk-1", &t, &n), 0);
    ck_assert_int_ne(auth_bearer("sk-1", &t, &n), 0);
}
END_TEST

START_TEST(keys_match_only_when_equal)
{
    ck_assert(auth_equal("secret", 6, "secret", 6));
    ck_assert(!auth_equal("secreT", 6, "secret", 6));
    ck_assert(!auth_equal("secre", 5, "secret", 6));            /* a prefix */
    ck_assert(!auth_equal("secrets", 7, "secret", 6));          /* longer */
    ck_assert(!auth_equal("", 0, "secret", 6));
    ck_assert(!auth_equal("secret\0", 7, "secret", 6));
    ck_assert(auth_check("Bearer secret", "secret"));
    ck_assert(!auth_check("Bearer secret2", "secret"));
    ck_assert(!auth_check(NULL, "secret"));
}
END_TEST

START_TEST(masked_keys_show_the_last_four_characters_only_of_keys_of_16_or_more)
{
    char out[32];

    auth_mask("sk-abcdefghijklm", out, sizeof out);
    ck_assert_str_eq(out, "****jklm");
    /* Shorter than 16: no character at all (4 of 10 would leave 6 to guess). */
    auth_mask("sk-abcdefghijkl", out, sizeof out);
    ck_assert_str_eq(out, "****");
    auth_mask("sk-abcdef", out, sizeof out);
    ck_assert_str_eq(out, "****");
    auth_mask("short", out, sizeof out);
    ck_assert_str_eq(out, "****");
    auth_mask("12345678", out, sizeof out);
    ck_assert_str_eq(out, "****");
    auth_mask(NULL, out, sizeof out);
    ck_assert_str_eq(out, "(none)");
    auth_mask("", out, sizeof out);
    ck_assert_str_eq(out, "(none)");
}
END_TEST

Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");

    tcase_add_test(tc, bearer_token_is_found_in_any_case_with_blanks);
    tcase_add_test(tc, other_schemes_and_empty_tokens_are_refused);
    tcase_add_test(tc, keys_match_only_when_equal);
    tcase_add_test(tc, masked_keys_show_the_last_four_characters_only_of_keys_of_16_or_more);
    suite_add_tcase(s, tc);
    return s;
}

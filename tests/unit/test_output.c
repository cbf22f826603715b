/* test_output.c — engine/output.c: a request's text as its tokens arrive, with stop strings.
 * A hand-written tokenizer whose pieces are plain letters (and three byte-fallback tokens
 * spelling "€") makes every expected text obvious; a random test checks the whole contract
 * against a reference written from the definition: the text released, all takes joined,
 * is the text before the first stop string to appear, and a take never hands out text a
 * later token would have cut. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/output.h"
#include "engine/base/util.h"   /* ERR_LEN */

enum {
    T_UNK, T_X, T_Y, T_S, T_T, T_O, T_P, T_ST, T_OP, T_TO, T_E2, T_82, T_AC, T_Z, T_A, T_B, T_C,
    T_END,
};

static const char tok_json[] =
    "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"unk_token\": \"<unk>\","
    " \"vocab\": {\"<unk>\": 0, \"x\": 1, \"y\": 2, \"S\": 3, \"T\": 4, \"O\": 5, \"P\": 6, \"ST\": 7,"
    " \"OP\": 8, \"TO\": 9, \"<0xE2>\": 10, \"<0x82>\": 11, \"<0xAC>\": 12, \"z\": 13, \"a\": 14,"
    " \"b\": 15, \"c\": 16, \"<|end|>\": 17}, \"merges\": []},"
    " \"added_tokens\": [{\"id\": 17, \"content\": \"<|end|>\", \"single_word\": false, \"lstrip\": false,"
    " \"rstrip\": false, \"normalized\": false, \"special\": true}],"
    " \"normalizer\": null, \"pre_tokenizer\": null, \"post_processor\": null,"
    " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]}}";

static struct tokenizer *tok;

static void setup(void)
{
    char err[ERR_LEN] = "";

    ck_assert_msg(tokenizer_load_json(&tok, tok_json, strlen(tok_json), NULL, 0, err) == 0, "%s", err);
}

static void teardown(void)
{
    tokenizer_destroy(tok);
    tok = NULL;
}

/* What a run hands out: every take joined, and each take on its own. */
struct run {
    char text[256];
    size_t len;
    char takes[32][64];
    int num_takes;
    size_t starts[32];      /* token_start after each push */
};

static void take(struct out_text *o, bool final, struct run *r)
{
    const char *t;
    size_t n;

    out_text_take(o, final, &t, &n);
    ck_assert_uint_lt(r->len + n, sizeof r->text);
    memcpy(r->text + r->len, t, n);
    r->len += n;
    r->text[r->len] = '\0';
    ck_assert_int_lt(r->num_takes, 32);
    ck_assert_uint_lt(n, sizeof r->takes[0]);
    memcpy(r->takes[r->num_takes], t, n);
    r->takes[r->num_takes++][n] = '\0';
}

/* Pushes ids (stopping where the text stops, as the engine does), taking after each push,
 * then takes the final rest. Returns how many ids were pushed. */
static int run(const int32_t *ids, int n, char *const *stop, int num_stop, struct run *r)
{
    struct out_text o;
    int pushed = 0;

    memset(r, 0, sizeof *r);
    out_text_init(&o, tok, true, stop, num_stop);
    while (pushed < n && !o.stopped) {
        ck_assert_int_eq(out_text_push(&o, ids[pushed]), 0);
        r->starts[pushed++] = o.token_start;
        if (!o.stopped)
            take(&o, false, r);
    }
    take(&o, true, r);
    out_text_fini(&o);
    return pushed;
}

START_TEST(a_stop_string_across_two_tokens_is_found_and_cut_before)
{
    char *stop[] = { "STOP" };
    const int32_t ids[] = { T_X, T_ST, T_OP, T_Y };
    struct run r;

    ck_assert_int_eq(run(ids, 4, stop, 1, &r), 3);   /* stopped at OP: y never goes in */
    ck_assert_str_eq(r.text, "x");
}
END_TEST

START_TEST(a_stop_string_across_three_and_four_tokens_is_found)
{
    char *stop[] = { "STOP" };
    const int32_t three[] = { T_X, T_S, T_TO, T_P, T_Y };
    const int32_t four[] = { T_Y, T_X, T_S, T_T, T_O, T_P, T_Y };
    struct run r;

    ck_assert_int_eq(run(three, 5, stop, 1, &r), 4);
    ck_assert_str_eq(r.text, "x");
    ck_assert_int_eq(run(four, 7, stop, 1, &r), 6);
    ck_assert_str_eq(r.text, "yx");
}
END_TEST

START_TEST(held_back_text_is_released_as_soon_as_it_cannot_begin_a_stop_string)
{
    char *stop[] = { "STOP" };   /* 4 bytes: the last 3 are held while running */
    const int32_t ids[] = { T_X, T_S, T_T, T_Y, T_Z, T_Z, T_Z };
    const int32_t unfinished[] = { T_X, T_ST, T_O };
    static const char *want[] = { "", "", "", "x", "S", "T", "y", "zzz" };
    struct run r;

    ck_assert_int_eq(run(ids, 7, stop, 1, &r), 7);
    ck_assert_int_eq(r.num_takes, 8);
    for (int i = 0; i < 8; i++)
        ck_assert_str_eq(r.takes[i], want[i]);
    ck_assert_str_eq(r.text, "xSTyzzz");
    /* A partial match at the end is no match: the final take releases it. */
    ck_assert_int_eq(run(unfinished, 3, stop, 1, &r), 3);
    ck_assert_str_eq(r.text, "xSTO");
    ck_assert_str_eq(r.takes[r.num_takes - 1], "STO");
}
END_TEST

START_TEST(the_stop_string_that_appears_first_cuts_at_its_start)
{
    char *stop[] = { "zzz", "TO", "OPx" };
    const int32_t ids[] = { T_A, T_S, T_T, T_O, T_P, T_X };
    char *overlap[] = { "STOP", "TO" };
    struct run r;

    ck_assert_int_eq(run(ids, 6, stop, 3, &r), 4);   /* "TO" completes first */
    ck_assert_str_eq(r.text, "aS");
    /* Both end in the same token: the one that starts earlier wins. */
    ck_assert_int_eq(run(ids, 6, overlap, 2, &r), 4);
    ck_assert_str_eq(r.text, "aS");
    ck_assert_int_eq(run((const int32_t[]){ T_A, T_ST, T_OP }, 3, overlap, 2, &r), 3);
    ck_assert_str_eq(r.text, "a");
}
END_TEST

START_TEST(a_stop_string_spelled_in_byte_tokens_is_found_once_its_character_is_whole)
{
    char *stop[] = { "\xe2\x82\xac" };   /* "€" */
    const int32_t ids[] = { T_X, T_E2, T_82, T_AC, T_Y, T_Z };
    struct run r;

    ck_assert_int_le(run(ids, 6, stop, 1, &r), 5);
    ck_assert_str_eq(r.text, "x");
    /* Without the stop string the character comes out whole, never a part of it. */
    ck_assert_int_eq(run(ids, 6, NULL, 0, &r), 6);
    ck_assert_str_eq(r.text, "x\xe2\x82\xacyz");
    for (int i = 0; i < r.num_takes; i++)
        ck_assert_msg(!strchr(r.takes[i], '\xe2') || strstr(r.takes[i], "\xe2\x82\xac"), "take %d split", i);
}
END_TEST

START_TEST(token_starts_point_into_the_text_never_inside_a_character)
{
    char *stop[] = { "STOP" };
    const int32_t ids[] = { T_X, T_END, T_Y, T_E2, T_82, T_AC };
    const int32_t cut[] = { T_A, T_ST, T_OP };
    const int32_t cut_late[] = { T_A, T_S, T_T, T_O, T_P };
    static const size_t want[] = { 0, 1, 1, 2, 2, 2 };
    struct run r;

    /* The skipped special token points where the next text goes; the three bytes of "€"
     * all point at the character's start. */
    run(ids, 6, NULL, 0, &r);
    ck_assert_str_eq(r.text, "xy\xe2\x82\xac");
    for (int i = 0; i < 6; i++)
        ck_assert_msg(r.starts[i] == want[i], "token %d starts at %zu, want %zu", i, r.starts[i], want[i]);
    /* The token that completes a stop string points at the cut: the end of the text. */
    run(cut, 3, stop, 1, &r);
    ck_assert_str_eq(r.text, "a");
    ck_assert_uint_eq(r.starts[0], 0);
    ck_assert_uint_eq(r.starts[2], 1);
    run(cut_late, 5, stop, 1, &r);
    ck_assert_uint_eq(r.starts[4], 1);
    /* A whole token that comes out with a byte run before it points at its own text. */
    run((const int32_t[]){ T_X, T_E2, T_82, T_AC, T_Y }, 5, NULL, 0, &r);
    ck_assert_str_eq(r.text, "x\xe2\x82\xacy");
    ck_assert_uint_eq(r.starts[1], 1);
    ck_assert_uint_eq(r.starts[3], 1);
    ck_assert_uint_eq(r.starts[4], 4);
    /* A stray byte: one U+FFFD, and the next token after it. */
    run((const int32_t[]){ T_X, T_E2, T_Y, T_Z }, 4, NULL, 0, &r);
    ck_assert_str_eq(r.text, "x\xef\xbf\xbdyz");
    ck_assert_uint_eq(r.starts[1], 1);
    ck_assert_uint_eq(r.starts[2], 4);
    ck_assert_uint_eq(r.starts[3], 5);
}
END_TEST

/* What own_start (and logprobs' "bytes") read: a byte token's raw byte, where decoding
 * gives U+FFFD. */
START_TEST(token_bytes_are_raw_where_decoding_is_lossy)
{
    char *b = NULL, *text = NULL;
    size_t n = 0, tn = 0;
    int32_t id = T_E2;

    ck_assert_int_eq(tokenizer_token_bytes(tok, T_E2, &b, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq((unsigned char)b[0], 0xe2);
    ck_assert_int_eq(tokenizer_decode(tok, &id, 1, false, &text, &tn, NULL), 0);
    ck_assert_str_eq(text, "\xef\xbf\xbd");
    free(b);
    free(text);
    ck_assert_int_eq(tokenizer_token_bytes(tok, T_ST, &b, &n), 0);
    ck_assert_str_eq(b, "ST");
    free(b);
    ck_assert_int_eq(tokenizer_token_bytes(tok, T_END, &b, &n), 0);   /* specials are not skipped */
    ck_assert_str_eq(b, "<|end|>");
    free(b);
}
END_TEST

static uint64_t next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* The reference, from the definition: decode each prefix of the tokens (pieces are plain
 * letters, so the text is their concatenation); the first prefix where some stop string
 * occurs ends the text at the earliest start among the stop strings occurring in it. */
static size_t reference(const int32_t *ids, int n, char *const *stop, int num_stop, char *out, int *pushed)
{
    static const char *piece[] = { "", "x", "y", "S", "T", "O", "P", "ST", "OP", "TO", "", "", "", "z",
                                   "a", "b", "c", "" };
    size_t len = 0;

    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t best = SIZE_MAX;

        strcat(out, piece[ids[i]]);
        len = strlen(out);
        for (int s = 0; s < num_stop; s++) {
            const char *at = strstr(out, stop[s]);

            if (at && (size_t)(at - out) < best)
                best = (size_t)(at - out);
        }
        if (best != SIZE_MAX) {
            out[best] = '\0';
            *pushed = i + 1;
            return best;
        }
    }
    *pushed = n;
    return len;
}

START_TEST(random_token_streams_release_exactly_the_text_before_the_first_stop_string)
{
    static const int32_t alphabet[] = { T_X, T_S, T_T, T_O, T_P, T_ST, T_OP, T_TO, T_Z, T_END };
    static char *stops[] = { "STOP", "TOT", "zSz", "OPS", "xx", "TTOO" };
    uint64_t x = 0x9e3779b97f4a7c15ull;

    for (int iter = 0; iter < 3000; iter++) {
        int32_t ids[24];
        char *stop[3], want[256];
        int n = 1 + (int)(next(&x) % 24), num_stop = (int)(next(&x) % 4), want_pushed, pushed;
        struct run r;

        for (int i = 0; i < n; i++)
            ids[i] = alphabet[next(&x) % ARRAY_LEN(alphabet)];
        for (int s = 0; s < num_stop; s++)
            stop[s] = stops[next(&x) % ARRAY_LEN(stops)];
        reference(ids, n, stop, num_stop, want, &want_pushed);
        pushed = run(ids, n, stop, num_stop, &r);
        ck_assert_msg(!strcmp(r.text, want), "iteration %d: got \"%s\", want \"%s\"", iter, r.text, want);
        ck_assert_int_eq(pushed, want_pushed);
        /* Starts grow with the text; the token that completes a stop string points at the
         * cut. (Tokens before it may point past the cut: the server clamps them.) */
        for (int i = 1; i < pushed - 1; i++)
            ck_assert_uint_ge(r.starts[i], r.starts[i - 1]);
        ck_assert_uint_le(r.starts[pushed - 1], strlen(want));
    }
}
END_TEST

Suite *output_suite(void)
{
    Suite *s = suite_create("output");
    TCase *tc = tcase_create("output");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, a_stop_string_across_two_tokens_is_found_and_cut_before);
    tcase_add_test(tc, a_stop_string_across_three_and_four_tokens_is_found);
    tcase_add_test(tc, held_back_text_is_released_as_soon_as_it_cannot_begin_a_stop_string);
    tcase_add_test(tc, the_stop_string_that_appears_first_cuts_at_its_start);
    tcase_add_test(tc, a_stop_string_spelled_in_byte_tokens_is_found_once_its_character_is_whole);
    tcase_add_test(tc, token_starts_point_into_the_text_never_inside_a_character);
    tcase_add_test(tc, token_bytes_are_raw_where_decoding_is_lossy);
    tcase_add_test(tc, random_token_streams_release_exactly_the_text_before_the_first_stop_string);
    suite_add_tcase(s, tc);
    return s;
}

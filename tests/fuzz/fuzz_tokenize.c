/* fuzz_tokenize.c — one of four fixed tokenizers (tests/fuzz/data/: cut-down Llama 3, Qwen3
 * and Llama 2, and a gen-model tokenizer), loaded once, then the input's bytes after the
 * first through tokenizer_encode, and the same bytes read as int32 ids through
 * tokenizer_decode and the incremental detok_push/detok_flush. The first byte picks the
 * tokenizer and the flags. Checked, from tokenizer.h's promises:
 *   - every encoded id is in the vocabulary;
 *   - decode(encode(text)) == text for valid UTF-8 where the tokenizer keeps it (Llama 3,
 *     gen-model, and Llama 2 for text without U+2581);
 *   - decoded text is valid UTF-8, and so is every detok delta;
 *   - the detok deltas plus flush concatenate to tokenizer_decode of the same ids. */
#include "tests/fuzz/fuzz.h"

#include "engine/tokenizer/tokenizer.h"

static const char *const names[] = { "llama3", "qwen3", "llama2", "gen-tiny" };
/* Whether decode(encode(text)) gives the text back: not through Qwen3's NFC, and for Llama 2
 * only without U+2581 (its decoder makes it a space) and without added tokens (the text after
 * one gets its own prepended U+2581): as Hugging Face's tokenizers does both. */
static const bool round_trips[] = { true, false, true, true };
static const char *const llama2_breakers[] = { "\xe2\x96\x81", "<unk>", "<s>", "</s>", NULL };
static const char *const *const round_trip_breakers[] = { NULL, NULL, llama2_breakers, NULL };
static struct tokenizer *toks[ARRAY_LEN(names)];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[128], err[ERR_LEN];

    fuzz_quiet();
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        size_t len, clen;
        char *json, *config;

        snprintf(path, sizeof path, "tests/fuzz/data/%s/tokenizer.json", names[i]);
        json = fuzz_read(path, &len);
        snprintf(path, sizeof path, "tests/fuzz/data/%s/tokenizer_config.json", names[i]);
        config = fuzz_read(path, &clen);
        if (tokenizer_load_json(&toks[i], json, len, config, clen, err) != 0) {
            fprintf(stderr, "fuzz_tokenize: %s: %s\n", names[i], err);
            abort();
        }
        free(json);
        free(config);
    }
    return 0;
}

static bool contains_any(const char *text, size_t len, const char *const *needles)
{
    for (; needles && *needles; needles++)
        if (memmem(text, len, *needles, strlen(*needles)))
            return true;
    return false;
}

#define CHECK(x) FUZZ_CHECK(x, "tokenizer %s", names[which])

static void check_encode(size_t which, const char *text, size_t len, bool add_special)
{
    const struct tokenizer *t = toks[which];
    int32_t *ids = NULL;
    char err[ERR_LEN], *back = NULL;
    size_t back_len;
    int n = 0;

    CHECK(tokenizer_encode(t, text, len, add_special, &ids, &n, err) == 0);
    for (int i = 0; i < n; i++)
        CHECK(ids[i] >= 0 && ids[i] < tokenizer_vocab_size(t));
    if (!add_special && round_trips[which] && fuzz_utf8_valid(text, len) &&
        !contains_any(text, len, round_trip_breakers[which])) {
        CHECK(tokenizer_decode(t, ids, n, false, &back, &back_len, err) == 0);
        CHECK(back_len == len && !memcmp(back, text, len));
        free(back);
    }
    free(ids);
}

static void check_decode(size_t which, const int32_t *ids, int n, bool skip_special)
{
    const struct tokenizer *t = toks[which];
    struct detok d;
    char err[ERR_LEN], *text = NULL, *delta, *joined;
    size_t len, dlen, jlen = 0;

    CHECK(tokenizer_decode(t, ids, n, skip_special, &text, &len, err) == 0);
    CHECK(text[len] == 0 && fuzz_utf8_valid(text, len));
    joined = malloc(len + 1);
    CHECK(joined);
    detok_init(&d, skip_special);
    for (int i = 0; i <= n; i++) {
        CHECK((i < n ? detok_push(t, &d, ids[i], &delta, &dlen) : detok_flush(t, &d, &delta, &dlen)) == 0);
        if (!delta)
            continue;
        CHECK(fuzz_utf8_valid(delta, dlen) && jlen + dlen <= len);
        memcpy(joined + jlen, delta, dlen);
        jlen += dlen;
        free(delta);
    }
    CHECK(jlen == len && !memcmp(joined, text, len));
    detok_fini(&d);
    free(joined);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t which;
    int32_t *ids;
    int n, vocab;
    bool add_special, skip_special, raw;

    if (size < 1)
        return 0;
    which = data[0] & 3;
    add_special = data[0] & 4;
    skip_special = data[0] & 8;
    raw = data[0] & 16;   /* ids as they come; else folded into [-4, vocab + 4) */
    data++;
    size--;
    check_encode(which, (const char *)data, size, add_special);

    n = (int)(size / 4);
    vocab = tokenizer_vocab_size(toks[which]);
    if (!(ids = malloc((size_t)n * sizeof *ids + 1)))
        abort();
    for (int i = 0; i < n; i++) {
        uint32_t u;

        memcpy(&u, data + 4 * i, 4);
        ids[i] = raw ? (int32_t)u : (int32_t)(u % (uint32_t)(vocab + 8)) - 4;
    }
    check_decode(which, ids, n, skip_special);
    free(ids);
    return 0;
}

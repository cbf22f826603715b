/* fuzz_tokenizer.c — tokenizer_load_json on arbitrary tokenizer.json text (up to the first
 * NUL) and tokenizer_config.json text (after it, when there is a NUL). A tokenizer that
 * loads is then used once: a fixed string through encode and decode, and every id of its
 * vocabulary decoded, so a loader that accepts something its encoder or decoder cannot
 * handle shows up here rather than on the first request. */
#include "tests/fuzz/fuzz.h"

#include "engine/tokenizer/tokenizer.h"

#define FUZZ_MAX_DECODED_IDS 4096

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet();
    return 0;
}

static void use(const struct tokenizer *t)
{
    static const char text[] = "Hello, world! 123  caf\xc3\xa9 \xe2\x96\x81x <s></s><|begin_of_text|>"
                               "\xf0\x9f\x98\x80\xff\n\t";
    int32_t *ids = NULL, all[FUZZ_MAX_DECODED_IDS];
    char err[ERR_LEN], *out = NULL;
    size_t len;
    int n = 0, vocab = tokenizer_vocab_size(t);

    if (tokenizer_encode(t, text, sizeof text - 1, true, &ids, &n, err) == 0) {
        for (int i = 0; i < n; i++)
            FUZZ_CHECK(ids[i] >= 0 && ids[i] < vocab, "encoded id %d of %d, vocabulary %d", ids[i], i, vocab);
        if (tokenizer_decode(t, ids, n, false, &out, &len, err) == 0)
            FUZZ_CHECK(out[len] == 0, "decode output not NUL-terminated");
        free(out);
        out = NULL;
    }
    free(ids);
    n = MIN(vocab, FUZZ_MAX_DECODED_IDS);
    for (int i = 0; i < n; i++) {
        all[i] = i;
        (void)tokenizer_id_to_token(t, i);
        (void)tokenizer_is_special(t, i);
    }
    if (tokenizer_decode(t, all, n, true, &out, &len, err) == 0)
        free(out);
    (void)tokenizer_chat_template(t);
    (void)tokenizer_token_to_id(t, "<s>");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tokenizer *t = NULL;
    const char *json, *config;
    size_t len, config_len;
    char err[ERR_LEN];

    fuzz_split(data, size, &json, &len, &config, &config_len);
    if (tokenizer_load_json(&t, json, len, config, config_len, err) != 0)
        return 0;
    use(t);
    tokenizer_destroy(t);
    return 0;
}

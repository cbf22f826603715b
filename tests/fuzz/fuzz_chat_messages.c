/* fuzz_chat_messages.c — arbitrary messages (and extra variables) rendered by real chat
 * templates: the first byte picks the template (its low 7 bits) and add_generation_prompt
 * (its high bit); the rest up to the first NUL is the messages JSON, the rest after it the
 * extra variables JSON. The server hands chat_template_render whatever JSON array a client
 * sent, so any shape of message must render or fail with an error. */
#include "tests/fuzz/fuzz.h"

#include "engine/chat_template/chat_template.h"

struct tpl {
    const char *path, *bos, *eos;
    struct chat_template *t;
};

static struct tpl tpls[] = {
    { "tests/fuzz/data/llama3/chat_template.jinja", "<|begin_of_text|>", "<|end_of_text|>", NULL },
    { "tests/fuzz/data/qwen3/chat_template.jinja", NULL, "<|im_end|>", NULL },
    { "tests/data/chat_template/templates/llama31.jinja", "<|begin_of_text|>", "<|eot_id|>", NULL },
    { "tests/data/chat_template/templates/llama32.jinja", "<|begin_of_text|>", "<|eot_id|>", NULL },
    { "tests/data/chat_template/templates/qwen25.jinja", NULL, "<|im_end|>", NULL },
    { "tests/data/chat_template/templates/mistral_v03.jinja", "<s>", "</s>", NULL },
    { "tests/data/chat_template/templates/gemma.jinja", "<bos>", "<eos>", NULL },
    { "tests/data/chat_template/templates/phi3.jinja", "<s>", "<|endoftext|>", NULL },
    { "tests/data/chat_template/templates/deepseek_r1.jinja",
      "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
      "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", NULL },
    { "tests/data/chat_template/templates/llama2.jinja", "<s>", "</s>", NULL },
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[ERR_LEN];

    fuzz_quiet();
    for (size_t i = 0; i < ARRAY_LEN(tpls); i++) {
        size_t len;
        char *source = fuzz_read(tpls[i].path, &len);

        if (chat_template_create(&tpls[i].t, source, tpls[i].bos, tpls[i].eos, err) != 0) {
            fprintf(stderr, "fuzz_chat_messages: %s: %s\n", tpls[i].path, err);
            abort();
        }
        free(source);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct chat_template *t;
    const char *mj, *ej;
    size_t mlen, elen, len;
    cJSON *messages, *extra = NULL;
    char *out, err[ERR_LEN];

    if (size < 1)
        return 0;
    t = tpls[(data[0] & 0x7f) % ARRAY_LEN(tpls)].t;
    fuzz_split(data + 1, size - 1, &mj, &mlen, &ej, &elen);
    if (!(messages = cJSON_ParseWithLength(mj, mlen)))
        return 0;
    if (ej && !(extra = cJSON_ParseWithLength(ej, elen))) {
        cJSON_Delete(messages);
        return 0;
    }
    if (chat_template_render(t, messages, extra, data[0] & 0x80, &out, &len, err) == 0) {
        if (out[len] != 0)
            abort();
        free(out);
    }
    cJSON_Delete(extra);
    cJSON_Delete(messages);
    return 0;
}

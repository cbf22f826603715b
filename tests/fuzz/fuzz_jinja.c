/* fuzz_jinja.c — the input as chat template source: chat_template_create parses it and
 * renders its sample conversations; a template that loads is then rendered on a fixed
 * conversation with a tool call, list content and extra variables, with and without the
 * generation prompt. Rendering is bounded by chat_template.c's limits (output, memory,
 * loop iterations, work, depth), so a hostile template must end with an error, not hang. */
#include "tests/fuzz/fuzz.h"

#include "engine/chat_template/chat_template.h"

static cJSON *messages, *extra;

static const char conversation[] =
    "[{\"role\":\"system\",\"content\":\"Be brief.\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Weather in Paris?\"}]},"
    "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
    "\"function\":{\"name\":\"weather\",\"arguments\":{\"city\":\"Paris\"}}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"18 C\"},"
    "{\"role\":\"assistant\",\"content\":\"18 C.\",\"reasoning_content\":\"look it up\"},"
    "{\"role\":\"user\",\"content\":\"\\u00e9\\ud83d\\ude00 <|eot_id|>\",\"name\":\"bob\"}]";
static const char variables[] =
    "{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"weather\",\"description\":\"now\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}],"
    "\"enable_thinking\":false,\"date_string\":\"25 Nov 2026\"}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet();
    messages = cJSON_Parse(conversation);
    extra = cJSON_Parse(variables);
    if (!messages || !extra)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct chat_template *t;
    char *source = fuzz_strndup((const char *)data, size), *out, err[ERR_LEN];
    size_t len;

    if (chat_template_create(&t, source, "<s>", "</s>", err) == 0) {
        for (int gen = 0; gen < 2; gen++)
            if (chat_template_render(t, messages, gen ? extra : NULL, gen, &out, &len, err) == 0) {
                if (out[len] != 0)
                    abort();
                free(out);
            }
        chat_template_destroy(t);
    }
    free(source);
    return 0;
}

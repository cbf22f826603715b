/* fuzz_responses_request.c — /v1/responses bodies through responses_parse (server/responses.c,
 * then openai_parse_chat) with the daemon's default limits, a Llama 3.1 8B model and the
 * hermes parser; an accepted request is then rendered as a response object and as the whole
 * event stream, with its own instructions and tools echoed. Checked beyond "no crash": an
 * accepted body is a chat request (messages with roles, tool calls with object arguments,
 * tools as chat tools) and everything rendered is JSON that parses back with the fields
 * OpenAI's reference names; a refusal renders as an OpenAI error with its message. */
#include "tests/fuzz/fuzz.h"

#include <cjson/cJSON.h>

#include "config/config.h"
#include "server/responses.h"

static struct oai_config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct osprey_config c;

    (void)argc;
    (void)argv;
    fuzz_quiet();
    config_init(&c);
    cfg = (struct oai_config){
        .served_model = "llama-3.1-8b-instruct", .max_model_len = 131072, .vocab_size = 128256,
        .max_prompt_tokens = c.max_prompt_tokens, .max_tokens_limit = c.max_tokens_limit, .max_n = c.max_n,
        .max_stop_strings = c.max_stop_strings, .max_stop_length = c.max_stop_length,
        .max_logprobs = MIN(c.max_logprobs, SAMPLE_MAX_LOGPROBS), .default_temperature = 0.6f,
        .default_top_p = 0.9f, .tool_parser = TOOL_PARSER_HERMES,
    };
    config_fini(&c);
    return 0;
}

#define CHECK(x) FUZZ_CHECK(x, "responses")

static void check_json(const char *s, size_t len, const char *field)
{
    cJSON *o;

    CHECK(s && fuzz_utf8_valid(s, len));
    o = cJSON_ParseWithLength(s, len);
    CHECK(cJSON_IsObject(o) && cJSON_GetObjectItemCaseSensitive(o, field));
    cJSON_Delete(o);
}

static void check_events(char **ev, size_t *lens, int n)
{
    for (int i = 0; i < n; i++)
        check_json(ev[i], lens[i], "sequence_number");
    resp_events_free(ev, lens, n);
}

static void render_all(const struct oai_request *r)
{
    struct tool_call call = { "chatcmpl-tool-0", "f", "{\"a\":1}" };
    struct resp_head h = { "resp_0", 1, cfg.served_model, r };
    struct resp_output out = { "Hi \xc3\xa9", 4, &call, 1, "tool_calls", "Think", 5 };
    struct oai_usage u = { 3, 2, 0 };
    struct resp_stream s;
    char *json, **ev;
    size_t len, *lens;
    int n;

    CHECK(responses_render(&h, &out, &u, 0, &json, &len) == 0);
    check_json(json, len, "output");
    free(json);
    resp_stream_init(&s, false);
    CHECK(resp_stream_open(&s, &h, &ev, &lens, &n) == 0 && n == 4);
    check_events(ev, lens, n);
    CHECK(resp_stream_delta(&s, "Hi", 2, &ev, &lens, &n) == 0 && n == 1);
    check_events(ev, lens, n);
    CHECK(resp_stream_close(&s, &h, &out, &u, &ev, &lens, &n) == 0 && n == 8);
    check_events(ev, lens, n);
    resp_stream_fini(&s);
    /* gpt-oss: reasoning first (its item: added, delta, then done when the message opens) */
    resp_stream_init(&s, true);
    CHECK(resp_stream_open(&s, &h, &ev, &lens, &n) == 0 && n == 2);
    check_events(ev, lens, n);
    CHECK(resp_stream_reasoning(&s, "Think", 5, &ev, &lens, &n) == 0 && n == 2);
    check_events(ev, lens, n);
    CHECK(resp_stream_delta(&s, "Hi", 2, &ev, &lens, &n) == 0 && n == 5);
    check_events(ev, lens, n);
    CHECK(resp_stream_close(&s, &h, &out, &u, &ev, &lens, &n) == 0 && n == 8);
    check_events(ev, lens, n);
    resp_stream_fini(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct oai_request r;
    struct oai_error e;
    const cJSON *m, *t;
    char *json;
    size_t len;

    openai_request_init(&r);
    if (responses_parse(&r, (const char *)data, size, &cfg, &e) != 0) {
        CHECK(e.status >= 400 && e.message[0]);
        json = openai_render_error(&e, &len);
        check_json(json, len, "error");
        free(json);
        openai_request_fini(&r);
        return 0;
    }
    CHECK(r.responses && r.kind == OAI_CHAT && cJSON_IsObject(r.resp_root) && r.n == 1);
    CHECK(cJSON_IsArray(r.messages) && r.messages->child);
    cJSON_ArrayForEach(m, r.messages) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *c;

        CHECK(cJSON_IsString(role));
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(m, "tool_calls"))
            CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(c, "function"), "arguments")));
    }
    cJSON_ArrayForEach(t, r.tools)
        CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name")));
    render_all(&r);
    openai_request_fini(&r);
    return 0;
}

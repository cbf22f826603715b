/* test_responses.c — /v1/responses without the daemon: a Responses body becomes the chat
 * request it means (messages, tools, tool_choice, limits), what a stateless server cannot
 * do is refused by name, and the response object and event stream carry function_call
 * items in OpenAI's shapes (expectations from OpenAI's API reference). */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "server/responses.h"

static const struct oai_config config = {
    .served_model = "tiny", .max_model_len = 4096, .vocab_size = 512, .max_n = 4,
    .max_stop_strings = 4, .max_stop_length = 16, .max_logprobs = 20,
    .default_temperature = -1, .default_top_p = -1, .tool_parser = TOOL_PARSER_HERMES,
};

static struct oai_request req;
static struct oai_error err;

/* A body parsed as a daemon with this tool-call parser would. */
static int parse_as(const char *body, enum tool_parser_kind k)
{
    struct oai_config c = config;

    c.tool_parser = k;
    openai_request_fini(&req);
    openai_request_init(&req);
    memset(&err, 0, sizeof err);
    return responses_parse(&req, body, strlen(body), &c, &err);
}

static int parse(const char *body)
{
    return parse_as(body, config.tool_parser);
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const cJSON *msg(int i)
{
    return cJSON_GetArrayItem(req.messages, i);
}

START_TEST(a_body_becomes_the_chat_request_it_means)
{
    const cJSON *calls, *fn;

    ck_assert_msg(parse("{\"model\":\"tiny\",\"instructions\":\"Be brief.\",\"input\":\"Hi\",\"max_output_tokens\":7,"
                        "\"temperature\":0.5,\"top_p\":0.9}") == 0, "%s", err.message);
    ck_assert(req.responses && req.kind == OAI_CHAT);
    ck_assert_int_eq(cJSON_GetArraySize(req.messages), 2);
    ck_assert_str_eq(str(msg(0), "role"), "system");
    ck_assert_str_eq(str(msg(0), "content"), "Be brief.");
    ck_assert_str_eq(str(msg(1), "role"), "user");
    ck_assert_str_eq(str(msg(1), "content"), "Hi");
    ck_assert(req.max_tokens_set);
    ck_assert_int_eq(req.params.max_tokens, 7);
    ck_assert_float_eq(req.params.temperature, 0.5f);

    ck_assert_msg(parse("{\"input\":[{\"role\":\"developer\",\"content\":\"d\"},"
                        "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"a\"},"
                        "{\"type\":\"input_text\",\"text\":\"b\"}]},"
                        "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"},"
                        "{\"type\":\"function_call\",\"call_id\":\"c2\",\"name\":\"g\",\"arguments\":\"{}\"},"
                        "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"one\"}],"
                        "\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"parameters\":{\"type\":\"object\"}},"
                        "{\"type\":\"function\",\"name\":\"g\"}],\"tool_choice\":\"auto\",\"parallel_tool_calls\":false}") == 0,
                  "%s", err.message);
    ck_assert_int_eq(cJSON_GetArraySize(req.messages), 4);
    ck_assert_str_eq(str(msg(0), "role"), "system");              /* developer → system */
    ck_assert_str_eq(str(msg(1), "content"), "a\nb");              /* parts joined as chat's */
    calls = cJSON_GetObjectItemCaseSensitive(msg(2), "tool_calls");   /* both calls, one message */
    ck_assert_int_eq(cJSON_GetArraySize(calls), 2);
    fn = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(calls, 0), "function");
    ck_assert_str_eq(str(cJSON_GetArrayItem(calls, 0), "id"), "c1");
    ck_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(fn, "arguments")));   /* decoded for the template */
    ck_assert_str_eq(str(msg(3), "role"), "tool");
    ck_assert_str_eq(str(msg(3), "tool_call_id"), "c1");
    ck_assert_int_eq(cJSON_GetArraySize(req.tools), 2);
    ck_assert_str_eq(str(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(req.tools, 0), "function"), "name"), "f");
    ck_assert_int_eq(req.tool_choice, OAI_TOOLS_AUTO);
    ck_assert(!req.parallel_tool_calls);

    /* a named function is chat's {"type", "function": {"name"}}, held by the grammar */
    ck_assert_msg(parse("{\"input\":\"a\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"},"
                        "{\"type\":\"function\",\"name\":\"g\"}],\"tool_choice\":{\"type\":\"function\",\"name\":\"f\"}}") == 0,
                  "%s", err.message);
    ck_assert_int_eq(req.tool_choice, OAI_TOOLS_NAMED);
    ck_assert_str_eq(req.tool_name, "f");
    ck_assert(req.has_grammar && req.grammar_kind == GRAMMAR_GBNF);
    ck_assert_msg(parse("{\"input\":\"a\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}],"
                        "\"tool_choice\":\"required\"}") == 0, "%s", err.message);
    ck_assert_int_eq(req.tool_choice, OAI_TOOLS_REQUIRED);
    ck_assert(req.has_grammar);
}
END_TEST

/* text.format (flat: {type, name, schema, strict}) is chat's response_format; errors name
 * text.format's fields, and so does a schema the grammar refuses (at compile time). */
START_TEST(text_format_becomes_the_grammar)
{
    static const struct { const char *body, *param; } bad[] = {
        { "{\"input\":\"a\",\"text\":{\"format\":{\"type\":\"xml\"}}}", "text.format.type" },
        { "{\"input\":\"a\",\"text\":{\"format\":\"json\"}}", "text.format" },
        { "{\"input\":\"a\",\"text\":{\"format\":{\"type\":\"json_schema\",\"schema\":{}}}}", "text.format.name" },
        { "{\"input\":\"a\",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"x\"}}}", "text.format.schema" },
        { "{\"input\":\"a\",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"x\",\"schema\":\"s\"}}}",
          "text.format.schema" },
        { "{\"input\":\"a\",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"x\",\"schema\":{},"
          "\"strict\":1}}}", "text.format.strict" },
        { "{\"input\":\"a\",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"x\",\"schema\":{},"
          "\"whitespace\":\" \"}}}", "text.format" },
        { "{\"input\":\"a\",\"text\":{\"format\":{\"type\":\"json_object\"}},\"tools\":[{\"type\":\"function\","
          "\"name\":\"f\"}],\"tool_choice\":\"required\"}", "tool_choice" },
    };

    ck_assert_msg(parse("{\"input\":\"a\",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"p\","
                        "\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}}}}}}") == 0,
                  "%s", err.message);
    ck_assert(req.has_grammar);
    ck_assert_int_eq(req.grammar_kind, GRAMMAR_JSON_SCHEMA);
    ck_assert_str_eq(req.grammar_param, "text.format.schema");
    ck_assert_ptr_nonnull(strstr(req.grammar_src, "\"n\""));
    ck_assert_int_eq(parse("{\"input\":\"a\",\"text\":{\"format\":{\"type\":\"json_object\"}}}"), 0);
    ck_assert(req.has_grammar);
    ck_assert_int_eq(req.grammar_kind, GRAMMAR_JSON_OBJECT);
    ck_assert_int_eq(parse("{\"input\":\"a\",\"text\":{\"format\":{\"type\":\"text\"}}}"), 0);
    ck_assert(!req.has_grammar);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        ck_assert_msg(parse(bad[i].body) < 0, "accepted: %s", bad[i].body);
        ck_assert_msg(err.status == 400 && !strcmp(err.param, bad[i].param), "%s: %d '%s' (%s)",
                      bad[i].body, err.status, err.param, err.message);
    }
}
END_TEST

START_TEST(what_needs_state_or_a_schema_is_refused_by_name)
{
    static const struct { const char *body, *param; int status; } bad[] = {
        { "{\"input\":\"a\",\"previous_response_id\":\"resp_1\"}", "previous_response_id", 400 },
        { "{\"input\":\"a\",\"store\":true}", "store", 400 },
        { "{\"input\":\"a\",\"background\":true}", "background", 400 },
        { "{\"input\":\"a\",\"conversation\":\"c\"}", "conversation", 400 },
        { "{\"input\":\"a\",\"text\":{\"verbosity\":\"low\"}}", "text.verbosity", 400 },
        /* reasoning.effort is chat's reasoning_effort, which only gpt-oss's template takes */
        { "{\"input\":\"a\",\"reasoning\":{\"effort\":\"low\"}}", "reasoning.effort", 400 },
        { "{\"input\":\"a\",\"reasoning\":{\"summary\":\"auto\"}}", "reasoning", 400 },
        { "{\"input\":\"a\",\"reasoning\":\"low\"}", "reasoning", 400 },
        { "{\"input\":\"a\",\"include\":[\"x\"]}", "include", 400 },
        { "{\"input\":\"a\",\"truncation\":\"auto\"}", "truncation", 400 },
        { "{\"input\":\"a\",\"tools\":[{\"type\":\"file_search\"}]}", "tools", 400 },
        { "{\"input\":[{\"type\":\"input_image\"}]}", "input", 400 },
        { "{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"image_url\":\"x\"}]}]}", "input", 400 },
        { "{\"input\":[]}", "input", 400 },
        { "{\"input\":5}", "input", 400 },
        { "{\"input\":\"a\",\"max_output_tokens\":1.5}", "max_output_tokens", 400 },
        { "{\"input\":\"a\",\"instructions\":[1]}", "instructions", 400 },
        { "{\"input\":\"a\",\"temperature\":3}", "temperature", 400 },
        { "{\"input\":\"a\",\"model\":\"gpt-4o\"}", "model", 404 },
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        ck_assert_msg(parse(bad[i].body) < 0, "accepted: %s", bad[i].body);
        ck_assert_msg(err.status == bad[i].status && !strcmp(err.param, bad[i].param), "%s: %d '%s' (%s)",
                      bad[i].body, err.status, err.param, err.message);
    }
    ck_assert_int_eq(parse("{\"input\":\"a\",\"store\":false,\"truncation\":\"disabled\",\"include\":[],"
                           "\"text\":{\"format\":{\"type\":\"text\"}},\"metadata\":{\"k\":\"v\"}}"), 0);
}
END_TEST

START_TEST(calls_render_as_function_call_items)
{
    struct tool_call calls[] = { { "chatcmpl-tool-1", "get_weather", "{\"city\":\"Paris\"}" } };
    struct oai_usage u = { 10, 3, 0, 2 };   /* 2 of the 3 output tokens reasoned */
    struct resp_head h = { "resp_x", 5, "tiny", &req };
    struct resp_output out = { "", 0, calls, 1, "tool_calls", NULL, 0 };
    size_t len;
    char *s;
    cJSON *o, *item;

    ck_assert_int_eq(parse("{\"input\":\"w?\",\"tools\":[{\"type\":\"function\",\"name\":\"get_weather\"}],"
                           "\"metadata\":{\"k\":\"v\"}}"), 0);
    ck_assert_int_eq(responses_render(&h, &out, &u, 0, &s, &len), 0);
    o = cJSON_Parse(s);
    ck_assert_str_eq(str(o, "status"), "completed");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "output")), 1);  /* no empty message */
    item = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "output"), 0);
    ck_assert_str_eq(str(item, "type"), "function_call");
    ck_assert_str_eq(str(item, "call_id"), "chatcmpl-tool-1");
    ck_assert_str_eq(str(item, "name"), "get_weather");
    ck_assert_str_eq(str(item, "arguments"), "{\"city\":\"Paris\"}");
    ck_assert_int_eq(strncmp(str(item, "id"), "fc_", 3), 0);
    ck_assert_str_eq(str(cJSON_GetObjectItemCaseSensitive(o, "metadata"), "k"), "v");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "usage"), "total_tokens")->valueint, 13);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
        o, "usage"), "output_tokens_details"), "reasoning_tokens")->valueint, 2);
    cJSON_Delete(o);
    free(s);

    /* cut by max_output_tokens: incomplete, with the reason */
    out = (struct resp_output){ "Hel", 3, NULL, 0, "length", NULL, 0 };
    ck_assert_int_eq(responses_render(&h, &out, &u, 0, &s, &len), 0);
    o = cJSON_Parse(s);
    ck_assert_str_eq(str(o, "status"), "incomplete");
    ck_assert_str_eq(str(cJSON_GetObjectItemCaseSensitive(o, "incomplete_details"), "reason"), "max_output_tokens");
    ck_assert_str_eq(str(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "output"), 0), "content"), 0), "text"), "Hel");
    cJSON_Delete(o);
    free(s);
}
END_TEST

/* Renders a whole stream from the steps given (reasoning deltas 'r', text deltas 't', then
 * the close with out), checking the event types against want, the sequence numbers and the
 * call's arguments. Returns the last event (the final object). */
static cJSON *run_stream(struct resp_stream *rs, const struct resp_head *h, const char *steps,
                         const struct resp_output *out, const char *const *want, int num_want)
{
    struct oai_usage u = { 4, 2, 0, 0 };
    cJSON *last = NULL;
    char **ev;
    size_t *lens;
    int n, k = 0;

    for (size_t step = 0; step <= strlen(steps) + 1; step++) {
        int rc = step == 0 ? resp_stream_open(rs, h, &ev, &lens, &n)
               : step > strlen(steps) ? resp_stream_close(rs, h, out, &u, &ev, &lens, &n)
               : steps[step - 1] == 'r' ? resp_stream_reasoning(rs, "Hm. ", 4, &ev, &lens, &n)
                                        : resp_stream_delta(rs, "Hi", 2, &ev, &lens, &n);

        ck_assert_int_eq(rc, 0);
        for (int i = 0; i < n; i++) {
            cJSON *o = cJSON_ParseWithLength(ev[i], lens[i]);

            ck_assert_ptr_nonnull(o);
            ck_assert_int_lt(k, num_want);
            ck_assert_msg(!strcmp(str(o, "type"), want[k]), "event %d: %s, not %s", k, str(o, "type"), want[k]);
            ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(o, "sequence_number")->valueint, k);
            if (!strcmp(want[k], "response.function_call_arguments.done"))
                ck_assert_str_eq(str(o, "arguments"), out->calls[0].arguments);
            k++;
            cJSON_Delete(last);
            last = o;
        }
        resp_events_free(ev, lens, n);
    }
    ck_assert_int_eq(k, num_want);
    return last;
}

START_TEST(the_stream_sends_the_calls_after_the_message_then_completed)
{
    static const char *const want[] = {
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed",
    };
    struct tool_call calls[] = { { "chatcmpl-tool-1", "f", "{\"a\":1}" } };
    struct resp_head h = { "resp_y", 5, "tiny", &req };
    struct resp_output out = { NULL, 0, calls, 1, "tool_calls", NULL, 0 };
    struct resp_stream rs;
    const cJSON *output;
    cJSON *last;

    ck_assert_int_eq(parse("{\"input\":\"w?\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}]}"), 0);
    resp_stream_init(&rs, false);
    last = run_stream(&rs, &h, "t", &out, want, (int)ARRAY_LEN(want));
    /* the final object: the message that was streamed, then the call */
    output = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(last, "response"), "output");
    ck_assert_int_eq(cJSON_GetArraySize(output), 2);
    ck_assert_str_eq(str(cJSON_GetArrayItem(output, 0), "id"), rs.msg_id);
    ck_assert_str_eq(str(cJSON_GetArrayItem(output, 1), "type"), "function_call");
    cJSON_Delete(last);
    resp_stream_fini(&rs);
}
END_TEST

static void setup(void)
{
    openai_request_init(&req);
}

static void teardown(void)
{
    openai_request_fini(&req);
}

START_TEST(reasoning_comes_as_an_item_before_the_message)
{
    static const char *const want[] = {
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_text.delta", "response.reasoning_text.delta",
        "response.reasoning_text.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed",
    };
    static const char *const calls_only[] = {
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_text.delta", "response.reasoning_text.done",
        "response.output_item.done", "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed",
    };
    struct tool_call calls[] = { { "chatcmpl-tool-1", "f", "{\"a\":1}" } };
    struct oai_usage u = { 4, 2, 0, 0 };
    struct resp_head h = { "resp_z", 5, "tiny", &req };
    struct resp_output out = { "Hi", 2, calls, 1, "tool_calls", "Hm. Hm. ", 8 };
    struct resp_stream rs;
    const cJSON *output, *item, *part;
    cJSON *o;
    size_t len;
    char *s;

    ck_assert_int_eq(parse("{\"input\":\"w?\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}]}"), 0);
    /* whole: reasoning, message, call */
    ck_assert_int_eq(responses_render(&h, &out, &u, 0, &s, &len), 0);
    o = cJSON_Parse(s);
    output = cJSON_GetObjectItemCaseSensitive(o, "output");
    ck_assert_int_eq(cJSON_GetArraySize(output), 3);
    item = cJSON_GetArrayItem(output, 0);
    part = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(item, "content"), 0);
    ck_assert_str_eq(str(item, "type"), "reasoning");
    ck_assert_int_eq(strncmp(str(item, "id"), "rs_", 3), 0);
    ck_assert_str_eq(str(part, "type"), "reasoning_text");
    ck_assert_str_eq(str(part, "text"), "Hm. Hm. ");
    ck_assert_str_eq(str(cJSON_GetArrayItem(output, 1), "type"), "message");
    ck_assert_str_eq(str(cJSON_GetArrayItem(output, 2), "type"), "function_call");
    cJSON_Delete(o);
    free(s);

    /* streamed: the reasoning item (index 0) opens and closes before the message (1), the
     * call last (2); the final object lists them in that order, the reasoning as sent */
    resp_stream_init(&rs, true);
    o = run_stream(&rs, &h, "rrt", &out, want, (int)ARRAY_LEN(want));
    output = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "response"), "output");
    ck_assert_int_eq(cJSON_GetArraySize(output), 3);
    item = cJSON_GetArrayItem(output, 0);
    ck_assert_str_eq(str(item, "id"), rs.rs_id);
    ck_assert_str_eq(str(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(item, "content"), 0), "text"), "Hm. Hm. ");
    ck_assert_str_eq(str(cJSON_GetArrayItem(output, 1), "id"), rs.msg_id);
    ck_assert_int_eq(rs.msg_index, 1);
    cJSON_Delete(o);
    resp_stream_fini(&rs);

    /* reasoning, then only a call: no empty message item */
    resp_stream_init(&rs, true);
    o = run_stream(&rs, &h, "r", &out, calls_only, (int)ARRAY_LEN(calls_only));
    output = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "response"), "output");
    ck_assert_int_eq(cJSON_GetArraySize(output), 2);
    ck_assert_str_eq(str(cJSON_GetArrayItem(output, 0), "type"), "reasoning");
    ck_assert_str_eq(str(cJSON_GetArrayItem(output, 1), "type"), "function_call");
    cJSON_Delete(o);
    resp_stream_fini(&rs);
}
END_TEST

/* A previous output sent back whole (input: [...input, ...response.output, outputs]) as the
 * SDKs' tool loops do: for gpt-oss its reasoning item is the analysis of the assistant turn
 * it opens (the template's thinking), with the calls or the message after it. */
START_TEST(reasoning_items_sent_back_join_their_turn)
{
    static const char loop[] =
        "{\"input\":[{\"role\":\"user\",\"content\":\"w?\"},"
        "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[],\"content\":[{\"type\":\"reasoning_text\","
        "\"text\":\"Need weather.\"}]},"
        "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"{}\"},"
        "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"21 C\"},"
        "{\"type\":\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"Say it.\"}]},"
        "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"21 C.\"}]},"
        "{\"role\":\"user\",\"content\":\"thanks\"}],"
        "\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"description\":\"d\"}]}";

    ck_assert_msg(parse_as(loop, TOOL_PARSER_OPENAI) == 0, "%s", err.message);
    ck_assert_int_eq(cJSON_GetArraySize(req.messages), 5);
    ck_assert_str_eq(str(msg(1), "role"), "assistant");
    ck_assert_str_eq(str(msg(1), "thinking"), "Need weather.");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(msg(1), "tool_calls")), 1);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(msg(1), "content"));   /* not null: gone */
    ck_assert_str_eq(str(msg(2), "role"), "tool");
    ck_assert_str_eq(str(msg(3), "thinking"), "Say it.");                       /* the summary's text */
    ck_assert_str_eq(str(msg(3), "content"), "21 C.");
    ck_assert_str_eq(str(msg(4), "content"), "thanks");
    /* another model has no use for them: left out */
    ck_assert_msg(parse_as(loop, TOOL_PARSER_HERMES) == 0, "%s", err.message);
    ck_assert_int_eq(cJSON_GetArraySize(req.messages), 5);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(msg(1), "reasoning"));
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(msg(1), "tool_calls")), 1);
    ck_assert_str_eq(str(msg(3), "content"), "21 C.");
    /* reasoning alone says nothing to such a model */
    ck_assert_int_ne(parse_as("{\"input\":[{\"type\":\"reasoning\",\"summary\":[]}]}", TOOL_PARSER_HERMES), 0);
    ck_assert_str_eq(err.param, "input");
}
END_TEST

Suite *responses_suite(void)
{
    Suite *s = suite_create("responses");
    TCase *tc = tcase_create("responses");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, a_body_becomes_the_chat_request_it_means);
    tcase_add_test(tc, what_needs_state_or_a_schema_is_refused_by_name);
    tcase_add_test(tc, text_format_becomes_the_grammar);
    tcase_add_test(tc, calls_render_as_function_call_items);
    tcase_add_test(tc, the_stream_sends_the_calls_after_the_message_then_completed);
    tcase_add_test(tc, reasoning_comes_as_an_item_before_the_message);
    tcase_add_test(tc, reasoning_items_sent_back_join_their_turn);
    suite_add_tcase(s, tc);
    return s;
}

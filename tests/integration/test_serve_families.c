/* test_serve_families.c — the real daemon on a tiny generated model of each family added for
 * issue 11 (Gemma 2, Gemma 3, Mixtral, Qwen2-MoE, Qwen3-MoE, Phi-3, gpt-oss): it starts, answers a
 * completion whose prompt is longer than the sliding windows (32 tokens) with exactly the
 * text `osprey generate` gives offline, answers a chat completion, and stops cleanly. On the
 * GPU machine (OSPREY_TEST_BACKEND=cuda) a family the CUDA backend does not run yet must
 * instead be refused at start-up with its one-line reason. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/base/util.h"          /* ERR_LEN */
#include "engine/model/gen_model.h"
#include "tests/integration/it_util.h"

static const struct {
    const char *preset;
    bool cuda;                 /* the CUDA backend runs it in this build */
    bool tp;                   /* tensor parallelism (OSPREY_TEST_TP_SIZE > 1) shards it */
} families[] = {
    { "tiny-gemma2", true, true }, { "tiny-gemma3", true, true }, { "tiny-phi3", true, true },
    /* the MoE families run on cuda since its moe op, gpt-oss since its sinks and MoE */
    { "tiny-mixtral", true, true }, { "tiny-qwen2-moe", true, true },
    { "tiny-qwen3-moe", true, true }, { "tiny-gpt-oss", true, true },
};

#define PROMPT "The quick brown fox jumps over the lazy dog while seven wizards quietly " \
               "hex the jovial bookkeepers, and the long prompt keeps going past every " \
               "sliding window these tiny models have, so that window blocks get freed"

static const char *backend(void)
{
    const char *b = getenv("OSPREY_TEST_BACKEND");

    return b && *b ? b : "cpu";
}

/* `osprey generate` on dir with the same prompt, greedy, n tokens; its stdout. */
static char *offline(const char *dir, int n)
{
    char cmd[2048], *out;

    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --backend %s --threads 1 --prompt '%s' "
             "--max-tokens %d --ignore-eos 2>/dev/null", daemon_bin(), dir, backend(), PROMPT, n);
    ck_assert_msg(it_run(cmd, &out) == 0, "%s: %s", cmd, out);
    return out;
}

/* refusal: NULL when the family runs here, else the one line's words that the daemon's log
 * must hold after it refused to start */
static void serve_one(const char *preset, const char *refusal, const char *dir)
{
    const char *extra[] = { "--model", dir, NULL };
    struct gen_model_opts o = { .config = preset, .seed = 3, .out_dir = dir };
    char err[ERR_LEN] = "", *off;
    struct daemon d;
    cJSON *j;
    int status;

    ck_assert_msg(gen_model_write(&o, NULL, err) == 0, "%s: %s", preset, err);
    if (refusal) {
        /* refused at start-up, in one line that names the missing piece (daemon_start
         * has reaped it) */
        ck_assert_int_ne(daemon_start(&d, extra), 0);
        ck_assert_msg(daemon_log_has(&d, refusal), "%s: no one-line refusal", preset);
        return;
    }
    it_up(&d, extra);
    j = it_post(&d, "/v1/completions", "{\"prompt\":\"" PROMPT "\",\"max_tokens\":16,"
                "\"ignore_eos\":true,\"temperature\":0}", &status);
    ck_assert_msg(status == 200 && j, "%s: /v1/completions status %d", preset, status);
    ck_assert_int_gt(it_usage(j, "prompt_tokens"), 32);   /* past the windows */
    off = offline(dir, 16);
    ck_assert_msg(!strcmp(it_choice_text(j, 0), off), "%s: daemon '%s', offline '%s'", preset,
                  it_choice_text(j, 0), off);
    free(off);
    cJSON_Delete(j);
    j = it_post(&d, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":"
                "\"Hello there\"}],\"max_tokens\":8}", &status);
    ck_assert_msg(status == 200 && j, "%s: /v1/chat/completions status %d", preset, status);
    cJSON_Delete(j);
    it_down(&d);
}

START_TEST(every_new_family_serves_what_osprey_generate_gives)
{
    bool cuda = !strcmp(backend(), "cuda");
    const char *tp = getenv("OSPREY_TEST_TP_SIZE");
    bool sharded = tp && atoi(tp) > 1;

    for (size_t i = 0; i < sizeof families / sizeof *families; i++) {
        char dir[512], cmd[600];

        snprintf(dir, sizeof dir, "%s/family-%s.%d", getenv("OSPREY_TEST_TMP") ?
                 getenv("OSPREY_TEST_TMP") : "/tmp", families[i].preset, (int)getpid());
        serve_one(families[i].preset,
                  sharded && !families[i].tp ? "is not sharded yet"
                  : cuda && !families[i].cuda ? "runs on the CPU backend only in this build"
                  : NULL, dir);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
}
END_TEST

Suite *serve_families_suite(void)
{
    Suite *s = suite_create("serve_families");
    TCase *tc = tcase_create("families");

    tcase_add_test(tc, every_new_family_serves_what_osprey_generate_gives);
    tcase_set_timeout(tc, 300);
    suite_add_tcase(s, tc);
    return s;
}

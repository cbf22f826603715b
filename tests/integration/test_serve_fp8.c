/* test_serve_fp8.c — the real daemon with FP8: an fp8 KV cache chosen through the
 * environment (OSPREY_KV_CACHE_DTYPE), reported in the start-up log and /metrics and
 * answering as `osprey generate --kv-cache-dtype fp8` does offline; an FP8 block-wise
 * checkpoint written by gen-model served the same way, and taken by the CUDA backend too
 * (its FP8 GEMMs): without a device it fails for the device alone. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "engine/base/util.h"
#include "engine/model/gen_model.h"
#include "tests/integration/it_util.h"
#include "tests/unit/fixtures.h"

static struct daemon d;

/* `osprey generate` offline, greedy, on model with extra flags: its stdout. */
static char *offline(const char *model, const char *args)
{
    char cmd[3 * FIXTURE_PATH], *out;

    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --backend cpu --threads 1 %s 2>/dev/null",
             daemon_bin(), model, args);
    ck_assert_msg(it_run(cmd, &out) == 0, "%s: %s", cmd, out);
    return out;
}

/* The greedy completion of token ids [5, 77, 300, 41], 24 tokens. */
static char *served(void)
{
    int status;
    cJSON *j = it_post(&d, "/v1/completions", "{\"prompt\":[5, 77, 300, 41],\"max_tokens\":24,"
                       "\"ignore_eos\":true,\"temperature\":0}", &status);
    char *t;

    ck_assert_msg(status == 200 && j, "status %d", status);
    t = strdup(it_choice_text(j, 0));
    cJSON_Delete(j);
    return t;
}

START_TEST(an_fp8_kv_cache_is_reported_and_answers_like_generate_offline)
{
    const char *const env[] = { "OSPREY_KV_CACHE_DTYPE=fp8", NULL };
    char *on, *off;

    ck_assert_int_eq(daemon_start_env(&d, NULL, env), 0);
    ck_assert(daemon_log_has(&d, "KV cache fp8_e4m3"));
    ck_assert(it_metric(&d, "osprey_kv_cache_info{dtype=\"fp8_e4m3\"}") == 1);
    /* --kv-cache-memory 32MiB; tiny: 2 layers x (K, V) x 2 KV heads x 16 = 128 bytes a token */
    ck_assert(it_metric(&d, "osprey_kv_cache_capacity_tokens") == 262144);
    on = served();
    off = offline(daemon_model_dir(), "--prompt-ids '[5, 77, 300, 41]' --max-tokens 24 "
                  "--ignore-eos --kv-cache-dtype fp8");
    ck_assert_str_eq(on, off);
    free(on);
    free(off);
    it_down(&d);
}
END_TEST

START_TEST(an_fp8_checkpoint_is_served_on_cpu_and_taken_by_cuda)
{
    char root[FIXTURE_PATH], model[FIXTURE_PATH + 16], cmd[3 * FIXTURE_PATH], *out;
    struct gen_model_opts o = { .config = "tiny", .seed = 1, .quantize = "fp8-block" };
    const char *extra[] = { "--model", model, NULL };
    char err[ERR_LEN] = "", *on, *off;
    int status;

    ck_assert_int_eq(fixture_tmpdir(root), 0);
    snprintf(model, sizeof model, "%s/fp8", root);
    o.out_dir = model;
    ck_assert_msg(gen_model_write(&o, NULL, err) == 0, "%s", err);
    it_up(&d, extra);
    ck_assert(daemon_log_has(&d, "quantization fp8 block-wise"));
    on = served();
    off = offline(model, "--prompt-ids '[5, 77, 300, 41]' --max-tokens 24 --ignore-eos");
    ck_assert_str_eq(on, off);
    free(on);
    free(off);
    it_down(&d);

    /* generate, not serve: it ends on its own where a GPU is present */
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --backend cuda --prompt-ids '[5]' "
             "--max-tokens 1", daemon_bin(), model);
    status = it_run(cmd, &out);
    ck_assert_msg(status == 0 || (status != 128 && strstr(out, "backend cuda:") &&
                                  !strstr(out, "fp8 weights")), "exit %d: %s", status, out);
    free(out);
    fixture_rmtree(root);
}
END_TEST

Suite *serve_fp8_suite(void)
{
    Suite *s = suite_create("serve_fp8");
    TCase *tc = tcase_create("fp8");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, an_fp8_kv_cache_is_reported_and_answers_like_generate_offline);
    tcase_add_test(tc, an_fp8_checkpoint_is_served_on_cpu_and_taken_by_cuda);
    suite_add_tcase(s, tc);
    return s;
}

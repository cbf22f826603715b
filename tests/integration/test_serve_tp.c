/* test_serve_tp.c — the real daemon with tensor parallelism on the CPU backend:
 * `--tensor-parallel-size 2` (and OSPREY_TENSOR_PARALLEL_SIZE=4) serve a request end to end,
 * log each rank's share, report each rank's KV cache in /metrics, and answer with `osprey generate`'s greedy text at TP = 1 (which
 * `osprey generate --tensor-parallel-size 2` gives too); a size
 * that does not divide the heads stops the start with one line and a non-zero exit. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/integration/it_util.h"

static struct daemon d;

#define PROMPT "[5, 77, 300, 41]"

/* `osprey generate` offline, greedy, with extra flags: its stdout. */
static char *offline(const char *extra)
{
    char cmd[4096], *out;

    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --backend cpu --threads 1 "
             "--prompt-ids '" PROMPT "' --max-tokens 24 --ignore-eos %s 2>/dev/null",
             daemon_bin(), daemon_model_dir(), extra);
    ck_assert_msg(it_run(cmd, &out) == 0, "%s: %s", cmd, out);
    return out;
}

static char *served(void)
{
    int status;
    cJSON *j = it_post(&d, "/v1/completions", "{\"prompt\":" PROMPT ",\"max_tokens\":24,"
                       "\"ignore_eos\":true,\"temperature\":0}", &status);
    char *t;

    ck_assert_msg(status == 200 && j, "status %d", status);
    t = strdup(it_choice_text(j, 0));
    cJSON_Delete(j);
    return t;
}

START_TEST(tp_2_and_4_serve_the_greedy_text_of_tp_1)
{
    const char *const flag[] = { "--tensor-parallel-size", "2", NULL };
    const char *const env[] = { "OSPREY_TENSOR_PARALLEL_SIZE=4", NULL };
    char *off = offline(""), *on = offline("--tensor-parallel-size 2");
    double cap0, cap1;

    ck_assert_str_eq(on, off);     /* generate takes the flag as serve does */
    free(on);

    it_up(&d, flag);
    ck_assert(daemon_log_has(&d, "tensor parallel rank 1 of 2 on cpu: 2 heads, 1 KV heads"));
    on = served();
    ck_assert_str_eq(on, off);
    free(on);
    /* /metrics: each rank's KV cache (its KV heads' share, the same on both) */
    cap0 = it_metric(&d, "osprey_kv_cache_rank_capacity_bytes{rank=\"0\",device=\"0\"}");
    cap1 = it_metric(&d, "osprey_kv_cache_rank_capacity_bytes{rank=\"1\",device=\"0\"}");
    ck_assert_msg(cap0 > 0 && cap1 == cap0, "rank capacities %g %g", cap0, cap1);
    ck_assert(it_metric(&d, "osprey_kv_cache_rank_usage_bytes{rank=\"1\",device=\"0\"}") >= 0);
    it_down(&d);

    ck_assert_int_eq(daemon_start_env(&d, NULL, env), 0);
    ck_assert(daemon_log_has(&d, "tensor parallel rank 3 of 4 on cpu: 1 heads, 1 KV heads"));
    on = served();
    ck_assert_str_eq(on, off);
    free(on);
    it_down(&d);
    free(off);
}
END_TEST

START_TEST(a_size_that_does_not_divide_the_heads_stops_the_start)
{
    char cmd[4096], *out;
    int status;

    snprintf(cmd, sizeof cmd, "'%s' serve --model '%s' --backend cpu --threads 1 --port 0 "
             "--kv-cache-memory 32MiB --tensor-parallel-size 3", daemon_bin(), daemon_model_dir());
    status = it_run(cmd, &out);
    ck_assert_msg(status != 0 && status != 128, "exit %d: %s", status, out);
    ck_assert_msg(strstr(out, "--tensor-parallel-size 3 does not divide the model's 4 attention "
                         "heads"), "%s", out);
    free(out);
}
END_TEST

/* A rank that fails mid-serving (the test fault point: rank 1's third step fails as its
 * device would, before its collectives, leaving rank 0 waiting in one) takes the daemon
 * down as any dead engine does: the stream under way ends with an error, a new request
 * gets 503, the daemon exits 1 by itself, for systemd to restart it. Never a hang. */
START_TEST(a_failing_rank_takes_the_daemon_down_with_exit_1)
{
    const char *const flag[] = { "--tensor-parallel-size", "2", NULL };
    const char *env[] = { "OSPREY_FAULT_TP_RANK=1", "OSPREY_FAULT_TP_STEP=3", NULL };
    struct it_stream s;
    struct hc_response r;
    const cJSON *ev;
    bool error_event = false;
    int status;

    ck_assert(daemon_start_env(&d, flag, env) == 0);
    ck_assert(daemon_log_has(&d, "test fault point armed: tensor parallel rank 1 fails step 3"));
    it_stream(&d, "/v1/completions", "{\"prompt\":\"device\",\"max_tokens\":20,"
              "\"ignore_eos\":true,\"stream\":true}", &s);
    ck_assert_int_eq(s.status, 200);
    ck_assert(s.done);
    cJSON_ArrayForEach(ev, s.events)
        error_event = error_event || cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(ev, "error"));
    ck_assert(error_event);
    it_stream_fini(&s);
    hc_request(d.port, "GET", "/health", NULL, NULL, &r, 10);
    ck_assert_msg(r.status == 503 || r.status == 0, "/health of a dead engine: %d", r.status);
    hc_response_fini(&r);
    status = daemon_stop(&d, 0, 10);       /* it exits by itself */
    if (status != 1)
        daemon_print_log(&d);
    ck_assert_int_eq(status, 1);
    ck_assert(daemon_log_has(&d, "the engine failed"));
}
END_TEST

Suite *serve_tp_suite(void)
{
    Suite *s = suite_create("serve_tp");
    TCase *tc = tcase_create("tp");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, tp_2_and_4_serve_the_greedy_text_of_tp_1);
    tcase_add_test(tc, a_size_that_does_not_divide_the_heads_stops_the_start);
    tcase_add_test(tc, a_failing_rank_takes_the_daemon_down_with_exit_1);
    suite_add_tcase(s, tc);
    return s;
}

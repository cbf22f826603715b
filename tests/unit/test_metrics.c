/* test_metrics.c — /metrics text against hand-written Prometheus exposition lines: gauges
 * and counters from the engine, finish reasons, HTTP statuses, and cumulative histogram
 * buckets with their le boundaries (a value on a bound counts in that bucket). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "server/metrics.h"

static struct metrics m;
static const struct metrics_engine eng = {
    .num_running = 3, .num_waiting = 1, .kv_cache_usage = 0.25, .prefix_queries = 100,
    .prefix_hits = 40, .prompt_tokens = 1234, .generation_tokens = 567, .preemptions = 2,
    .healthy = true, .num_kv_groups = 2, .kv_group_window = { 0, 1024 },
    .kv_group_usage = { 0.5, 0.125 }, .kv_group_blocks = { 4096, 512 },
    .num_ranks = 2, .rank_device = (const int[]){ 0, 1 },
    .rank_kv_cache_bytes = (const uint64_t[]){ 1 << 20, 1 << 20 },
};

static void setup(void) { metrics_init(&m); }
static void teardown(void) { metrics_fini(&m); }

static char *render(void)
{
    size_t len;
    char *s = metrics_render(&m, &eng, &len);

    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(strlen(s), len);
    return s;
}

/* The line must appear whole: preceded by a newline (or the start) and followed by one. */
static void has_line(const char *text, const char *line)
{
    size_t n = strlen(line);

    for (const char *p = strstr(text, line); p; p = strstr(p + 1, line))
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    ck_abort_msg("no line \"%s\"", line);
}

START_TEST(engine_figures_are_gauges_and_counters)
{
    char *s = render();

    has_line(s, "# HELP osprey_engine_healthy 1 while the engine runs steps, 0 once it failed.");
    has_line(s, "# TYPE osprey_engine_healthy gauge");
    has_line(s, "osprey_engine_healthy 1");
    has_line(s, "osprey_requests_running 3");
    has_line(s, "osprey_requests_waiting 1");
    has_line(s, "osprey_kv_cache_usage_ratio 0.25");
    has_line(s, "# TYPE osprey_kv_cache_group_usage_ratio gauge");
    has_line(s, "osprey_kv_cache_group_usage_ratio{group=\"0\",window=\"0\"} 0.5");
    has_line(s, "osprey_kv_cache_group_usage_ratio{group=\"1\",window=\"1024\"} 0.125");
    has_line(s, "osprey_kv_cache_group_blocks{group=\"1\",window=\"1024\"} 512");
    /* tensor parallelism: each rank's device, its KV cache and the bytes in use on it */
    has_line(s, "# TYPE osprey_kv_cache_rank_usage_bytes gauge");
    has_line(s, "osprey_kv_cache_rank_capacity_bytes{rank=\"1\",device=\"1\"} 1048576");
    has_line(s, "osprey_kv_cache_rank_usage_bytes{rank=\"0\",device=\"0\"} 262144");
    has_line(s, "osprey_kv_cache_rank_usage_bytes{rank=\"1\",device=\"1\"} 262144");
    has_line(s, "# TYPE osprey_prefix_cache_queries_total counter");
    has_line(s, "osprey_prefix_cache_queries_total 100");
    has_line(s, "osprey_prefix_cache_hits_total 40");
    has_line(s, "osprey_prompt_tokens_total 1234");
    has_line(s, "osprey_generation_tokens_total 567");
    has_line(s, "osprey_preemptions_total 2");
    free(s);
}
END_TEST

START_TEST(finish_reasons_and_statuses_are_labelled_counters)
{
    char *s;

    metrics_request_done(&m, METRICS_STOP, -1, -1, -1);
    metrics_request_done(&m, METRICS_STOP, -1, -1, -1);
    metrics_request_done(&m, METRICS_ABORT, -1, -1, -1);
    metrics_http_status(&m, 200);
    metrics_http_status(&m, 200);
    metrics_http_status(&m, 503);
    metrics_http_status(&m, 42);       /* ignored */
    metrics_http_status(&m, 600);      /* ignored */
    s = render();
    has_line(s, "# TYPE osprey_requests_finished_total counter");
    has_line(s, "osprey_requests_finished_total{finish_reason=\"stop\"} 2");
    has_line(s, "osprey_requests_finished_total{finish_reason=\"length\"} 0");
    has_line(s, "osprey_requests_finished_total{finish_reason=\"abort\"} 1");
    has_line(s, "osprey_requests_finished_total{finish_reason=\"error\"} 0");
    has_line(s, "osprey_http_requests_total{status=\"200\"} 2");
    has_line(s, "osprey_http_requests_total{status=\"503\"} 1");
    ck_assert_ptr_null(strstr(s, "status=\"404\""));
    free(s);
}
END_TEST

START_TEST(histograms_are_cumulative_with_sum_and_count)
{
    char *s;

    metrics_request_done(&m, METRICS_LENGTH, 0.25, 0.001, 0.5);    /* on bounds: le includes */
    metrics_request_done(&m, METRICS_LENGTH, 0.0625, -1, 2000);    /* e2e past the last bound */
    s = render();
    has_line(s, "# TYPE osprey_time_to_first_token_seconds histogram");
    has_line(s, "osprey_time_to_first_token_seconds_bucket{le=\"0.001\"} 0");
    has_line(s, "osprey_time_to_first_token_seconds_bucket{le=\"0.06\"} 0");
    has_line(s, "osprey_time_to_first_token_seconds_bucket{le=\"0.08\"} 1");
    has_line(s, "osprey_time_to_first_token_seconds_bucket{le=\"0.1\"} 1");
    has_line(s, "osprey_time_to_first_token_seconds_bucket{le=\"0.25\"} 2");
    has_line(s, "osprey_time_to_first_token_seconds_bucket{le=\"640\"} 2");
    has_line(s, "osprey_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2");
    has_line(s, "osprey_time_to_first_token_seconds_sum 0.3125");
    has_line(s, "osprey_time_to_first_token_seconds_count 2");
    has_line(s, "osprey_time_per_output_token_seconds_bucket{le=\"0.001\"} 1");
    has_line(s, "osprey_time_per_output_token_seconds_count 1");
    has_line(s, "osprey_e2e_request_latency_seconds_bucket{le=\"0.1\"} 0");
    has_line(s, "osprey_e2e_request_latency_seconds_bucket{le=\"0.3\"} 0");
    has_line(s, "osprey_e2e_request_latency_seconds_bucket{le=\"0.5\"} 1");
    has_line(s, "osprey_e2e_request_latency_seconds_bucket{le=\"1920\"} 1");
    has_line(s, "osprey_e2e_request_latency_seconds_bucket{le=\"+Inf\"} 2");
    has_line(s, "osprey_e2e_request_latency_seconds_sum 2000.5");
    free(s);
}
END_TEST

START_TEST(every_sample_line_is_well_formed)
{
    /* Each non-comment line is "name{labels} value" or "name value"; each metric has one
     * HELP and one TYPE line before its samples. */
    char *s, *save = NULL;
    int helps = 0, types = 0, samples = 0;

    metrics_http_status(&m, 200);
    s = render();
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "# HELP osprey_", 14))
            helps++;
        else if (!strncmp(line, "# TYPE osprey_", 14))
            types++;
        else {
            char *sp = strrchr(line, ' ');

            ck_assert_msg(!strncmp(line, "osprey_", 7), "%s", line);
            ck_assert_ptr_nonnull(sp);
            ck_assert_msg(strspn(sp + 1, "0123456789.e+-") == strlen(sp + 1), "%s", line);
            samples++;
        }
    }
    ck_assert_int_eq(helps, types);
    ck_assert_int_eq(helps, 18);
    ck_assert_int_gt(samples, helps);
    free(s);
}
END_TEST

Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, engine_figures_are_gauges_and_counters);
    tcase_add_test(tc, finish_reasons_and_statuses_are_labelled_counters);
    tcase_add_test(tc, histograms_are_cumulative_with_sum_and_count);
    tcase_add_test(tc, every_sample_line_is_well_formed);
    suite_add_tcase(s, tc);
    return s;
}

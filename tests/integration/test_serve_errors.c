/* test_serve_errors.c — every error case of the real daemon with its status and OpenAI error
 * object, the API key where it is needed, a full queue answered 503 with Retry-After, and a
 * bad request that disturbs no other. Each test starts its own daemon and ends with a clean
 * SIGTERM stop (exit 0). */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/integration/it_util.h"

static struct daemon d;

static void up(const char *const *extra)
{
    it_up(&d, extra);
}

static void down(void)
{
    it_down(&d);
}

static const char *fails(const char *method, const char *path, const char *headers,
                         const char *body, int status, const char *param, const char *code)
{
    return it_fails(&d, method, path, headers, body, status, param, code);
}

START_TEST(bad_bodies_are_400_naming_the_param)
{
    up(NULL);
    fails("POST", "/v1/completions", NULL, "{\"prompt\": \"x\"", 400, NULL, "invalid_json");
    fails("POST", "/v1/completions", NULL, "[]", 400, NULL, "invalid_json");
    fails("POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"max_tokens\":\"3\"}", 400, "max_tokens", "invalid_type");
    fails("POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"temperature\":9}", 400, "temperature", "invalid_value");
    fails("POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"n\":0}", 400, "n", NULL);
    fails("POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"n\":17}", 400, "n", NULL);        /* max-n 16 */
    fails("POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"logprobs\":21}", 400, "logprobs", NULL);
    fails("POST", "/v1/completions", NULL, "{\"prompt\":[1,2,99999]}", 400, "prompt", NULL);
    fails("POST", "/v1/completions", NULL, "{}", 400, "prompt", NULL);
    fails("POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"stop\":[\"\"]}", 400, "stop", NULL);
    fails("POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"stream_options\":{\"include_usage\":true}}", 400,
          "stream_options", NULL);
    fails("POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"logit_bias\":{\"1\":500}}", 400, "logit_bias",
          "invalid_value");
    fails("POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"bad_words\":[\"a\"]}", 400, "bad_words",
          "unsupported_parameter");
    fails("POST", "/v1/chat/completions", NULL, "{\"messages\":[]}", 400, "messages", NULL);
    fails("POST", "/v1/chat/completions", NULL, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
          "\"top_logprobs\":2}", 400, "top_logprobs", NULL);
    fails("POST", "/tokenize", NULL, "{\"prompt\":5}", 400, "prompt", NULL);
    fails("POST", "/detokenize", NULL, "{\"tokens\":[-1]}", 400, "tokens", NULL);
    down();
}
END_TEST

START_TEST(another_model_is_404)
{
    up(NULL);
    ck_assert_str_eq(fails("POST", "/v1/completions", NULL, "{\"model\":\"gpt-4o\",\"prompt\":\"x\"}", 404, "model",
                           "model_not_found"), "The model 'gpt-4o' does not exist.");
    fails("POST", "/v1/chat/completions", NULL, "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
          404, "model", "model_not_found");
    down();
}
END_TEST

START_TEST(a_prompt_longer_than_the_context_is_400_with_both_lengths)
{
    const char *args[] = { "--max-model-len", "64", NULL };
    char body[8192], *msg;
    int n;

    up(args);
    n = snprintf(body, sizeof body, "{\"prompt\":[");
    for (int i = 0; i < 100; i++)
        n += snprintf(body + n, sizeof body - (size_t)n, i ? ",%d" : "%d", 5 + i);
    snprintf(body + n, sizeof body - (size_t)n, "]}");
    msg = strdup(fails("POST", "/v1/completions", NULL, body, 400, "prompt", "context_length_exceeded"));
    ck_assert_ptr_nonnull(strstr(msg, "64"));
    ck_assert_ptr_nonnull(strstr(msg, "100"));
    free(msg);
    /* Fits alone, not with max_tokens: both numbers named too. */
    msg = strdup(fails("POST", "/v1/completions", NULL, "{\"prompt\":[5,6,7,8,9,10,11,12,13,14],\"max_tokens\":60}",
                       400, "max_tokens", "context_length_exceeded"));
    ck_assert_ptr_nonnull(strstr(msg, "10 in the prompt"));
    ck_assert_ptr_nonnull(strstr(msg, "60 in the completion"));
    free(msg);
    down();
}
END_TEST

START_TEST(a_body_over_the_limit_is_413)
{
    const char *args[] = { "--max-body-bytes", "2KiB", NULL };
    char body[4096];

    up(args);
    memset(body, ' ', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    memcpy(body, "{\"prompt\":\"x\"}", 14);
    fails("POST", "/v1/completions", NULL, body, 413, NULL, "request_too_large");
    body[2000] = '\0';                                /* under the limit: served */
    {
        int status;
        cJSON *j = it_post(&d, "/v1/completions", body, &status);

        ck_assert_int_eq(status, 200);
        cJSON_Delete(j);
    }
    down();
}
END_TEST

START_TEST(unknown_routes_are_404_and_wrong_methods_405_with_allow)
{
    struct hc_response r;
    char v[64];

    up(NULL);
    fails("GET", "/v1/engines", NULL, NULL, 404, NULL, "not_found");
    fails("POST", "/v1/completions/x", NULL, "{}", 404, NULL, "not_found");
    fails("GET", "/v1/completions", NULL, NULL, 405, NULL, "method_not_allowed");
    hc_request(d.port, "POST", "/v1/models", NULL, "{}", &r, 10);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(hc_header(&r, "Allow", v, sizeof v), "GET, HEAD, OPTIONS");
    hc_response_fini(&r);
    down();
}
END_TEST

START_TEST(the_api_key_guards_every_route_but_health)
{
    const char *args[] = { "--api-key", "sk-test-abcdefgh1234", NULL };
    const char *good = "Authorization: Bearer sk-test-abcdefgh1234\r\n";
    int status;
    cJSON *j;

    up(args);
    fails("POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"max_tokens\":1}", 401, NULL, "invalid_api_key");
    fails("POST", "/v1/completions", "Authorization: Bearer sk-test-abcdefgh123\r\n",
          "{\"prompt\":\"x\",\"max_tokens\":1}", 401, NULL, "invalid_api_key");
    fails("GET", "/v1/models", NULL, NULL, 401, NULL, "invalid_api_key");
    fails("POST", "/tokenize", NULL, "{\"prompt\":\"x\"}", 401, NULL, NULL);
    fails("GET", "/metrics", NULL, NULL, 401, NULL, NULL);            /* metrics-require-key: on */
    j = it_post_h(&d, "/v1/completions", good, "{\"prompt\":\"x\",\"max_tokens\":1}", &status);
    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);
    j = it_post_h(&d, "/v1/models", good, NULL, &status);
    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);
    j = it_post(&d, "/health", NULL, &status);
    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);
    ck_assert(!daemon_log_has(&d, "sk-test-abcdefgh1234"));          /* never logged */
    ck_assert(daemon_log_has(&d, "****1234"));
    down();
}
END_TEST

START_TEST(metrics_can_be_open_while_the_api_needs_the_key)
{
    const char *args[] = { "--api-key", "sk-test-abcdefgh1234", "--no-metrics-require-key", NULL };
    struct hc_response r;

    up(args);
    hc_request(d.port, "GET", "/metrics", NULL, NULL, &r, 10);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "osprey_engine_healthy 1"));
    hc_response_fini(&r);
    fails("GET", "/v1/models", NULL, NULL, 401, NULL, NULL);
    down();
}
END_TEST

struct long_req {
    int port;
    int status;
    char retry_after[16];
};

static void *send_long(void *p)
{
    struct long_req *l = p;
    struct hc_response r;

    hc_request(l->port, "POST", "/v1/completions", NULL,
               "{\"prompt\":\"queue\",\"max_tokens\":300,\"ignore_eos\":true}", &r, 60);
    l->status = r.status;
    if (!hc_header(&r, "Retry-After", l->retry_after, sizeof l->retry_after))
        l->retry_after[0] = '\0';
    hc_response_fini(&r);
    return NULL;
}

START_TEST(a_full_queue_answers_503_with_retry_after_and_recovers)
{
    const char *args[] = { "--max-num-seqs", "1", "--max-num-batched-tokens", "64", "--max-waiting-requests", "1", NULL };
    enum { N = 6 };
    struct long_req reqs[N];
    pthread_t t[N];
    int ok = 0, busy = 0, status;
    cJSON *j;

    up(args);
    for (int i = 0; i < N; i++) {
        reqs[i] = (struct long_req){ .port = d.port };
        pthread_create(&t[i], NULL, send_long, &reqs[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        if (reqs[i].status == 200)
            ok++;
        if (reqs[i].status == 503) {
            busy++;
            ck_assert_str_eq(reqs[i].retry_after, "1");
        }
    }
    ck_assert_int_ge(ok, 1);
    ck_assert_int_ge(busy, 1);          /* 6 at once, room for 1 running + 1 waiting */
    ck_assert_int_eq(ok + busy, N);
    j = it_post(&d, "/v1/completions", "{\"prompt\":\"after\",\"max_tokens\":2}", &status);
    ck_assert_int_eq(status, 200);      /* and it goes on serving */
    cJSON_Delete(j);
    ck_assert(it_metric(&d, "osprey_http_requests_total{status=\"503\"}") == busy);
    down();
}
END_TEST

static void *stream_one(void *p)
{
    struct it_stream *s = p;

    it_stream(&d, "/v1/completions", "{\"prompt\":\"undisturbed\",\"max_tokens\":200,\"temperature\":0,"
              "\"ignore_eos\":true,\"stream\":true}", s);
    return NULL;
}

START_TEST(bad_requests_disturb_no_running_stream)
{
    struct it_stream s;
    pthread_t t;
    cJSON *j;
    int status;
    char *want;

    up(NULL);
    j = it_post(&d, "/v1/completions", "{\"prompt\":\"undisturbed\",\"max_tokens\":200,\"temperature\":0,\"ignore_eos\":true}",
                &status);
    want = strdup(it_choice_text(j, 0));
    cJSON_Delete(j);
    pthread_create(&t, NULL, stream_one, &s);
    for (int i = 0; i < 20; i++) {
        fails("POST", "/v1/completions", NULL, "{\"prompt\":", 400, NULL, NULL);
        fails("POST", "/v1/chat/completions", NULL, "{\"messages\":[{\"role\":5}]}", 400, "messages", NULL);
        fails("POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"top_p\":0}", 400, "top_p", NULL);
    }
    pthread_join(t, NULL);
    ck_assert(s.done);
    ck_assert_str_eq(s.text[0], want);
    ck_assert_str_eq(s.finish[0], "length");
    it_stream_fini(&s);
    free(want);
    down();
}
END_TEST

/* The brief's request: 16 choices of 2000 tokens with 20 top logprobs each (a 45 MB body
 * on the tiny model). With the default --max-response-bytes (32MiB) it is refused before it
 * starts, naming the bound; the same streamed is not (streams are bounded otherwise). */
START_TEST(an_answer_that_could_pass_max_response_bytes_is_400_before_it_starts)
{
    static const char big[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2000,"
                              "\"ignore_eos\":true,\"n\":16,\"logprobs\":true,\"top_logprobs\":20";
    char body[512];
    const char *msg;
    struct it_stream s;

    up(NULL);
    snprintf(body, sizeof body, "%s}", big);
    msg = fails("POST", "/v1/chat/completions", NULL, body, 400, "max_tokens", "response_too_large");
    ck_assert_msg(strstr(msg, "max-response-bytes (33554432 bytes)") && strstr(msg, "stream"), "%s", msg);
    ck_assert(it_metric(&d, "osprey_requests_finished_total{finish_reason=\"length\"}") == 0);
    /* Streamed, it is served (2 tokens here, to keep the test short). */
    snprintf(body, sizeof body, "%.*s2%s,\"stream\":true}", (int)(strstr(big, "2000") - big), big,
             strstr(big, "2000") + 4);
    ck_assert_int_eq(it_stream(&d, "/v1/chat/completions", body, &s), 0);
    ck_assert(s.done);
    it_stream_fini(&s);
    down();
}
END_TEST

/* An answer let in whose text then grows past the bound (1KiB here; 500 tokens were
 * estimated at 2 bytes each) ends with a clear 400 before its max_tokens, frees what it
 * held, and the daemon serves the next request. */
START_TEST(an_answer_that_grows_past_max_response_bytes_ends_with_400)
{
    const char *args[] = { "--max-response-bytes", "1KiB", NULL };
    const char *msg;
    int n = -1, status;
    cJSON *j;

    up(args);
    msg = fails("POST", "/v1/chat/completions", NULL, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                "\"max_tokens\":500,\"ignore_eos\":true,\"seed\":1}", 400, NULL, "response_too_large");
    ck_assert_msg(strstr(msg, "max-response-bytes (1024 bytes) after "), "%s", msg);
    ck_assert_int_eq(sscanf(strstr(msg, " after ") + 7, "%d", &n), 1);
    ck_assert_msg(n > 0 && n < 500, "%s", msg);               /* cut while it was generated */
    it_assert_idle(&d);
    j = it_post(&d, "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":3}", &status);
    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);
    down();
}
END_TEST

/* One whose estimate fits but whose rendered body does not (100 tokens with 20 top
 * logprobs: about 118 KB estimated, 143 KB rendered): refused whole, never cut short. */
START_TEST(an_answer_rendered_past_max_response_bytes_is_400_not_a_cut_body)
{
    const char *args[] = { "--max-response-bytes", "130000", NULL };
    const char *msg;

    up(args);
    msg = fails("POST", "/v1/chat/completions", NULL, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                "\"max_tokens\":100,\"ignore_eos\":true,\"seed\":1,\"logprobs\":true,\"top_logprobs\":20}",
                400, NULL, "response_too_large");
    ck_assert_msg(strstr(msg, "(130000 bytes) after 100 tokens"), "%s", msg);
    it_assert_idle(&d);
    down();
}
END_TEST

/* A KV cache of 32 blocks (256 KiB on the tiny model: 512 tokens) below the context
 * (2048): a request that fits the context but not the cache is 400 before it starts,
 * naming what the cache holds, streamed or not; it is no engine error, and what fits runs. */
START_TEST(a_request_the_kv_cache_cannot_hold_is_400_naming_its_size)
{
    /* 256 KiB holds 512 tokens of the tiny model in f32 (cpu) and 1024 in bf16 (cuda): the
     * figures below follow what this backend's cache holds, read from /metrics. */
    const char *args[] = { "--kv-cache-memory", "256KiB", NULL };
    char body[256], want[96];
    const char *msg;
    cJSON *j;
    int status, cap;

    up(args);
    cap = (int)it_metric(&d, "osprey_kv_cache_capacity_tokens");
    ck_assert_msg(cap == 512 || cap == 1024, "capacity %d", cap);
    snprintf(body, sizeof body, "{\"prompt\":\"hi\",\"max_tokens\":%d}", cap + 88);
    msg = fails("POST", "/v1/completions", NULL, body, 400, "max_tokens", "context_length_exceeded");
    snprintf(want, sizeof want, "KV cache holds %d tokens for one request", cap);
    ck_assert_msg(strstr(msg, want) && strstr(msg, "2048"), "%s", msg);
    snprintf(body, sizeof body, "{\"prompt\":\"hi\",\"max_tokens\":%d,\"stream\":true}", cap + 88);
    fails("POST", "/v1/completions", NULL, body, 400, "max_tokens", "context_length_exceeded");
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
             "\"max_tokens\":%d}", cap - 2);
    fails("POST", "/v1/chat/completions", NULL, body, 400, "max_tokens", "context_length_exceeded");
    /* Without max_tokens, chat takes the rest of what the cache holds. */
    j = it_post(&d, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                "\"ignore_eos\":true}", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_int_eq(it_usage(j, "total_tokens"), cap);
    cJSON_Delete(j);
    snprintf(body, sizeof body, "{\"prompt\":\"hi\",\"max_tokens\":%d}", cap - 112);
    j = it_post(&d, "/v1/completions", body, &status);
    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);
    ck_assert(it_metric(&d, "osprey_requests_finished_total{finish_reason=\"error\"}") == 0);
    down();
}
END_TEST

Suite *serve_errors_suite(void)
{
    Suite *s = suite_create("serve_errors");
    TCase *tc = tcase_create("errors");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, bad_bodies_are_400_naming_the_param);
    tcase_add_test(tc, another_model_is_404);
    tcase_add_test(tc, a_prompt_longer_than_the_context_is_400_with_both_lengths);
    tcase_add_test(tc, a_body_over_the_limit_is_413);
    tcase_add_test(tc, unknown_routes_are_404_and_wrong_methods_405_with_allow);
    tcase_add_test(tc, the_api_key_guards_every_route_but_health);
    tcase_add_test(tc, metrics_can_be_open_while_the_api_needs_the_key);
    tcase_add_test(tc, a_full_queue_answers_503_with_retry_after_and_recovers);
    tcase_add_test(tc, bad_requests_disturb_no_running_stream);
    tcase_add_test(tc, a_request_the_kv_cache_cannot_hold_is_400_naming_its_size);
    tcase_add_test(tc, an_answer_that_could_pass_max_response_bytes_is_400_before_it_starts);
    tcase_add_test(tc, an_answer_that_grows_past_max_response_bytes_ends_with_400);
    tcase_add_test(tc, an_answer_rendered_past_max_response_bytes_is_400_not_a_cut_body);
    suite_add_tcase(s, tc);
    return s;
}

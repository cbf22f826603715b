/* test_serve_lifecycle.c — the daemon's lifetimes: a client that disconnects mid-stream or
 * while waiting frees its request (running 0, waiting 0, KV usage 0 in /metrics), a client
 * that stops reading is cut off at stream-buffer-bytes without holding up anyone else,
 * SIGTERM drains (the stream in flight completes, new requests get 503, exit 0), and past
 * shutdown-grace a stream ends with finish_reason "abort" and [DONE]. */
#include <check.h>
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

/* Sends a POST on a raw connection and returns the socket. */
static int open_request(const char *path, const char *body, int rcvbuf)
{
    int fd = hc_open_post(d.port, path, body, rcvbuf);

    ck_assert_int_ge(fd, 0);
    return fd;
}

static void assert_all_freed(void)
{
    it_assert_idle(&d);
}

START_TEST(a_client_gone_mid_stream_frees_its_request)
{
    int fd;

    up(NULL);
    fd = open_request("/v1/completions", "{\"prompt\":\"long\",\"max_tokens\":1900,\"ignore_eos\":true,\"stream\":true}", 0);
    ck_assert(hc_read_until(fd, "data: {", 10));       /* it is streaming */
    close(fd);
    ck_assert(it_wait_metric(&d, "osprey_requests_finished_total{finish_reason=\"abort\"}", 1, 10));
    assert_all_freed();
    ck_assert(it_metric(&d, "osprey_requests_finished_total{finish_reason=\"length\"}") == 0);
    down();
}
END_TEST

/* The access-log line of the first `method path` request: its token counts. Waits for the
 * line (it is written when the connection ends); false when it never comes. */
static bool access_log_tokens(const char *route, int *prompt, int *completion)
{
    for (int tries = 0; tries < 100; tries++) {
        FILE *f = fopen(d.log_path, "r");
        char line[1024];

        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof line, f)) {
            const char *at = strstr(line, route);

            if (at && sscanf(strstr(at, "prompt_tokens=") ? strstr(at, "prompt_tokens=") : "",
                             "prompt_tokens=%d completion_tokens=%d", prompt, completion) == 2) {
                fclose(f);
                return true;
            }
        }
        fclose(f);
        usleep(100 * 1000);
    }
    return false;
}

START_TEST(a_stream_the_client_left_logs_the_tokens_it_had)
{
    int fd, prompt = -1, completion = -1, want_prompt;
    cJSON *j;
    int status;

    up(NULL);
    j = it_post(&d, "/tokenize", "{\"prompt\":\"long\"}", &status);
    ck_assert_int_eq(status, 200);
    want_prompt = cJSON_GetObjectItemCaseSensitive(j, "count")->valueint;
    cJSON_Delete(j);
    fd = open_request("/v1/completions", "{\"prompt\":\"long\",\"max_tokens\":1900,\"ignore_eos\":true,\"stream\":true}", 0);
    ck_assert(hc_read_until(fd, "data: {", 10));       /* a token chunk: one token at least */
    close(fd);
    ck_assert(it_wait_metric(&d, "osprey_requests_finished_total{finish_reason=\"abort\"}", 1, 10));
    ck_assert_msg(access_log_tokens("POST /v1/completions", &prompt, &completion), "no access-log line");
    ck_assert_int_eq(prompt, want_prompt);
    ck_assert_int_ge(completion, 1);
    ck_assert_int_lt(completion, 1900);
    down();
}
END_TEST

START_TEST(a_client_gone_while_waiting_frees_its_request)
{
    int fd;

    up(NULL);
    fd = open_request("/v1/completions", "{\"prompt\":\"long\",\"max_tokens\":1900,\"ignore_eos\":true}", 0);
    ck_assert(it_wait_metric(&d, "osprey_requests_running", 1, 10));
    close(fd);
    ck_assert(it_wait_metric(&d, "osprey_requests_finished_total{finish_reason=\"abort\"}", 1, 10));
    assert_all_freed();
    down();
}
END_TEST

START_TEST(a_client_that_stops_reading_is_cut_off_and_others_go_on)
{
    const char *args[] = { "--stream-buffer-bytes", "4KiB", NULL };
    struct it_stream s;
    int fd;

    up(args);
    /* A tiny receive window and no reading: once the kernel's buffers (a few MB on loopback)
     * are full the daemon's writes stall and its own buffer fills. 16 choices with logprobs
     * make tens of MB, well past them. */
    fd = open_request("/v1/completions", "{\"prompt\":\"flood\",\"max_tokens\":1900,\"ignore_eos\":true,"
                      "\"logprobs\":5,\"n\":16,\"stream\":true}", 2048);
    ck_assert_msg(it_wait_metric(&d, "osprey_requests_finished_total{finish_reason=\"abort\"}", 16, 30),
                  "the stalled stream was not aborted");
    assert_all_freed();
    ck_assert_int_eq(it_stream(&d, "/v1/completions", "{\"prompt\":\"meanwhile\",\"max_tokens\":8,\"stream\":true}", &s), 0);
    ck_assert(s.done);
    it_stream_fini(&s);
    close(fd);
    down();
}
END_TEST

START_TEST(sigterm_lets_the_stream_in_flight_finish_and_refuses_new_requests)
{
    struct hc_response r;
    size_t len;
    int fd, closed, status;
    char *rest;

    up(NULL);
    fd = open_request("/v1/completions", "{\"prompt\":\"drain\",\"max_tokens\":400,\"ignore_eos\":true,\"stream\":true}", 0);
    ck_assert(hc_read_until(fd, "data: {", 10));
    kill(d.pid, SIGTERM);
    /* the daemon logs this once its listener drains: a fixed sleep was too short under
     * valgrind, whose daemon took the signal later than the late request */
    for (int i = 0; i < 3000 && !daemon_log_has(&d, "SIGTERM: draining"); i++)
        usleep(10000);
    ck_assert(daemon_log_has(&d, "SIGTERM: draining"));
    hc_request(d.port, "POST", "/v1/completions", NULL, "{\"prompt\":\"late\",\"max_tokens\":2}", &r, 10);
    ck_assert_msg(r.status == 503 || r.status == 0, "a new request during the drain got %d", r.status);
    if (r.status)
        ck_assert_ptr_nonnull(strstr(r.body, "shutting_down"));
    hc_response_fini(&r);
    rest = hc_read_all(fd, 30, &len, &closed);
    ck_assert_ptr_nonnull(strstr(rest, "\"finish_reason\":\"length\""));
    ck_assert_ptr_nonnull(strstr(rest, "data: [DONE]\n\n"));
    free(rest);
    close(fd);
    status = daemon_stop(&d, SIGTERM, 20);       /* already going: just reap it */
    if (status)
        daemon_print_log(&d);
    ck_assert_int_eq(status, 0);
}
END_TEST

START_TEST(past_the_grace_a_stream_ends_with_abort_and_done)
{
    /* a grace far shorter than 1900 tokens take on any backend (the GPU makes ~10k tokens/s
     * of the tiny model) */
    const char *args[] = { "--shutdown-grace", "0.05", NULL };
    size_t len;
    int fd, closed, status;
    char *rest;

    up(args);
    fd = open_request("/v1/completions", "{\"prompt\":\"endless\",\"max_tokens\":1900,\"ignore_eos\":true,"
                      "\"stream\":true}", 0);
    ck_assert(hc_read_until(fd, "data: {", 10));
    kill(d.pid, SIGTERM);
    rest = hc_read_all(fd, 30, &len, &closed);
    ck_assert_ptr_nonnull(strstr(rest, "\"finish_reason\":\"abort\""));
    ck_assert_ptr_nonnull(strstr(rest, "data: [DONE]\n\n"));
    free(rest);
    close(fd);
    status = daemon_stop(&d, SIGTERM, 20);
    ck_assert_int_eq(status, 0);
    ck_assert(daemon_log_has(&d, "draining"));
}
END_TEST

START_TEST(a_failed_step_fails_its_request_with_500_and_serving_goes_on)
{
    const char *env[] = { "OSPREY_FAULT_STEP=3", NULL };
    struct hc_response r;

    ck_assert(daemon_start_env(&d, NULL, env) == 0);
    hc_request(d.port, "POST", "/v1/completions", NULL, "{\"prompt\":\"fault\",\"max_tokens\":20,\"ignore_eos\":true}",
               &r, 10);
    ck_assert_int_eq(r.status, 500);
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"internal_error\""));
    hc_response_fini(&r);
    hc_request(d.port, "POST", "/v1/completions", NULL, "{\"prompt\":\"again\",\"max_tokens\":20,\"ignore_eos\":true}",
               &r, 10);
    ck_assert_int_eq(r.status, 200);
    hc_response_fini(&r);
    ck_assert(it_metric(&d, "osprey_requests_finished_total{finish_reason=\"error\"}") == 1);
    down();
}
END_TEST

START_TEST(a_dead_engine_fails_in_flight_requests_and_exits_1)
{
    const char *env[] = { "OSPREY_FAULT_STEP=3", "OSPREY_FAULT_STICKY=1", NULL };
    struct it_stream s;
    struct hc_response r;
    int status;
    const cJSON *ev;
    bool error_event = false;

    ck_assert(daemon_start_env(&d, NULL, env) == 0);
    it_stream(&d, "/v1/completions", "{\"prompt\":\"device\",\"max_tokens\":20,\"ignore_eos\":true,"
              "\"stream\":true}", &s);
    /* The stream was under way: an error event, then its end. */
    ck_assert_int_eq(s.status, 200);
    ck_assert(s.done);
    cJSON_ArrayForEach(ev, s.events)
        error_event = error_event || cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(ev, "error"));
    ck_assert(error_event);
    it_stream_fini(&s);
    hc_request(d.port, "POST", "/v1/completions", NULL, "{\"prompt\":\"after\",\"max_tokens\":2}", &r, 10);
    ck_assert_msg(r.status == 503 || r.status == 0, "a request to a dead engine got %d", r.status);
    hc_response_fini(&r);
    status = daemon_stop(&d, 0, 10);       /* it exits by itself, for systemd to restart it */
    if (status != 1)
        daemon_print_log(&d);
    ck_assert_int_eq(status, 1);
    ck_assert(daemon_log_has(&d, "the engine failed"));
}
END_TEST

START_TEST(sigint_stops_an_idle_daemon_cleanly)
{
    int status;

    up(NULL);
    status = daemon_stop(&d, SIGINT, 20);
    if (status)
        daemon_print_log(&d);
    ck_assert_int_eq(status, 0);
    ck_assert(daemon_log_has(&d, "stopped"));
}
END_TEST

START_TEST(the_effective_configuration_is_logged_at_start)
{
    up(NULL);
    ck_assert(daemon_log_has(&d, "listening on http://127.0.0.1:"));
    ck_assert(daemon_log_has(&d, "max_num_seqs"));
    down();
}
END_TEST

Suite *serve_lifecycle_suite(void)
{
    Suite *s = suite_create("serve_lifecycle");
    TCase *tc = tcase_create("lifecycle");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_client_gone_mid_stream_frees_its_request);
    tcase_add_test(tc, a_stream_the_client_left_logs_the_tokens_it_had);
    tcase_add_test(tc, a_client_gone_while_waiting_frees_its_request);
    tcase_add_test(tc, a_client_that_stops_reading_is_cut_off_and_others_go_on);
    tcase_add_test(tc, sigterm_lets_the_stream_in_flight_finish_and_refuses_new_requests);
    tcase_add_test(tc, past_the_grace_a_stream_ends_with_abort_and_done);
    tcase_add_test(tc, a_failed_step_fails_its_request_with_500_and_serving_goes_on);
    tcase_add_test(tc, a_dead_engine_fails_in_flight_requests_and_exits_1);
    tcase_add_test(tc, sigint_stops_an_idle_daemon_cleanly);
    tcase_add_test(tc, the_effective_configuration_is_logged_at_start);
    suite_add_tcase(s, tc);
    return s;
}

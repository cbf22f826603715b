/* test_stress_clients.c — slow and bad clients. Clients that send their head or body byte by
 * byte, or stop half way, are cut at --request-timeout while others are served meanwhile; an
 * idle keep-alive connection is closed at --idle-timeout; a stream whose reader stops holds
 * up no one (the engine finishes its tokens into the bounded buffer). Malformed HTTP and
 * JSON get the right status (an OpenAI error object wherever osprey answers), and after each
 * the daemon answers /health and gives the same greedy text. */
#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/base/util.h"   /* MIN, MAX */
#include "tests/stress/stress_util.h"

static struct daemon d;

static const char greedy_body[] = "{\"prompt\":\"The quick brown fox\",\"max_tokens\":24,\"temperature\":0,"
                                  "\"ignore_eos\":true}";

static void assert_health(void)
{
    int status;
    cJSON *j = it_post(&d, "/health", NULL, &status);

    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);
}

/* The daemon serves as before: /health, nothing left in the engine, the same greedy text. */
static void assert_unharmed(const char *want)
{
    char *text;

    assert_health();
    it_assert_idle(&d);
    text = stress_solo(&d, "/v1/completions", greedy_body);
    ck_assert_str_eq(text, want);
    free(text);
}

/* ---- slow senders ---- */

enum slow_kind { SLOW_HEAD, SLOW_BODY, HALF_BODY, SILENT, NUM_SLOW_KINDS, NORMAL = NUM_SLOW_KINDS };

static const char *const slow_names[NUM_SLOW_KINDS] = {
    "head byte by byte", "body byte by byte", "half a body, then nothing", "connected, nothing sent",
};

struct slow_client {
    int port;
    enum slow_kind kind;
    const char *want;                /* NORMAL: the greedy text */
    double start_s, cut_s;           /* cut_s: when the server closed the connection, 0: never */
    int served;                      /* NORMAL: requests answered right */
    double done_s;                   /* NORMAL: when the last was answered */
    char why[256];
};

/* Sends what its kind sends, a byte every 50 ms where it dribbles, until the server closes
 * the connection (or 15 s pass). */
static void slow_main(struct slow_client *c)
{
    static const char head[] = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               "Content-Length: 1000\r\n\r\n{\"prompt\":\"";
    int fd = hc_connect(c->port);

    c->start_s = stress_now();
    if (fd < 0)
        return;
    if (c->kind == SLOW_BODY || c->kind == HALF_BODY)
        hc_send(fd, head, strlen(head));
    else if (c->kind == SLOW_HEAD)
        hc_send(fd, head, 20);
    while (stress_now() - c->start_s < 15) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        char buf[512];

        if ((c->kind == SLOW_HEAD || c->kind == SLOW_BODY) && hc_send(fd, c->kind == SLOW_HEAD ? "X" : "a", 1)) {
            c->cut_s = stress_now();
            break;
        }
        if (poll(&p, 1, 50) > 0 && recv(fd, buf, sizeof buf, 0) <= 0) {
            c->cut_s = stress_now();
            break;
        }
    }
    close(fd);
}

static void normal_main(struct slow_client *c)
{
    c->start_s = stress_now();
    usleep(300000);                  /* the slow ones are connected and dribbling */
    for (int i = 0; i < 10; i++) {
        struct stress_answer a;

        stress_call(c->port, "/v1/completions", greedy_body, &a);
        if (a.status == 200 && a.text[0] && !strcmp(a.text[0], c->want))
            c->served++;
        else if (!c->why[0])
            snprintf(c->why, sizeof c->why, "status %d, text '%s'", a.status, a.text[0] ? a.text[0] : "");
        stress_answer_fini(&a);
    }
    c->done_s = stress_now();
}

static void *client_main(void *p)
{
    struct slow_client *c = p;

    if (c->kind == NORMAL)
        normal_main(c);
    else
        slow_main(c);
    return NULL;
}

START_TEST(slow_senders_are_cut_at_the_request_timeout_while_others_are_served)
{
    const char *args[] = { "--request-timeout", "1", NULL };
    enum { PER_KIND = 3, NUM = NUM_SLOW_KINDS * PER_KIND + 1 };
    struct slow_client c[NUM];
    double first_cut = 1e30, last_cut = 0;
    char *want;

    it_up(&d, args);
    want = stress_solo(&d, "/v1/completions", greedy_body);
    for (int i = 0; i < NUM; i++)
        c[i] = (struct slow_client){ .port = d.port, .kind = i < NUM - 1 ? (enum slow_kind)(i % NUM_SLOW_KINDS) : NORMAL,
                                     .want = want };
    stress_run(NUM, client_main, c, sizeof c[0]);
    for (int i = 0; i < NUM - 1; i++) {
        double after = c[i].cut_s - c[i].start_s;

        ck_assert_msg(c[i].cut_s > 0, "%s: never cut", slow_names[c[i].kind]);
        ck_assert_msg(after >= 0.9, "%s: cut after %.2f s, before the 1 s timeout", slow_names[c[i].kind], after);
        first_cut = MIN(first_cut, c[i].cut_s);
        last_cut = MAX(last_cut, after);
    }
    ck_assert_msg(!c[NUM - 1].why[0], "a normal client: %s", c[NUM - 1].why);
    ck_assert_int_eq(c[NUM - 1].served, 10);
    /* Served while every slow connection was still open: they starve no one. */
    ck_assert_msg(c[NUM - 1].done_s < first_cut, "the normal requests ended %.2f s after the first cut",
                  c[NUM - 1].done_s - first_cut);
    printf("slow clients: %d (%d each: head byte by byte, body byte by byte, half a body, silent) cut "
           "%.2f to %.2f s after connecting (request-timeout 1 s); 10 normal requests served in %.2f s "
           "meanwhile\n", NUM - 1, PER_KIND, first_cut - c[0].start_s, last_cut,
           c[NUM - 1].done_s - c[NUM - 1].start_s - 0.3);
    assert_unharmed(want);
    free(want);
    it_down(&d);
}
END_TEST

START_TEST(an_idle_keep_alive_connection_is_closed_at_the_idle_timeout)
{
    const char *args[] = { "--idle-timeout", "1", NULL };
    const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    double t0, idle;
    size_t len;
    int fd, closed;
    char *rest;

    it_up(&d, args);
    ck_assert_int_ge(fd = hc_connect(d.port), 0);
    ck_assert_int_eq(hc_send(fd, req, strlen(req)), 0);
    ck_assert(hc_read_until(fd, "{\"status\":\"ok\"}", 5));
    t0 = stress_now();
    rest = hc_read_all(fd, 10, &len, &closed);
    idle = stress_now() - t0;
    free(rest);
    close(fd);
    ck_assert_msg(closed, "an idle connection was still open after 10 s");
    ck_assert_msg(idle >= 0.5, "closed after %.2f s, before the 1 s idle timeout", idle);
    printf("idle keep-alive connection closed %.2f s after its answer (idle-timeout 1 s)\n", idle);
    it_down(&d);
}
END_TEST

/* ---- a reader that stops ---- */

START_TEST(a_stream_reader_that_stops_holds_up_neither_the_engine_nor_others)
{
    const char *args[] = { "--stream-buffer-bytes", "64MiB", NULL };
    const char *stalled = "{\"prompt\":\"stall\",\"max_tokens\":1000,\"ignore_eos\":true,\"logprobs\":5,\"n\":8,"
                          "\"stream\":true}";
    double length0;
    char *want;
    int fd;

    it_up(&d, args);
    want = stress_solo(&d, "/v1/completions", greedy_body);
    length0 = it_metric(&d, "osprey_requests_finished_total{finish_reason=\"length\"}");
    /* A 2 KiB receive window and no reading: once the kernel's buffers are full every write
     * the daemon tries would block. 8 choices with logprobs make megabytes. */
    ck_assert_int_ge(fd = hc_open_post(d.port, "/v1/completions", stalled, 2048), 0);
    for (int t = 0; t < 200 && !(it_metric(&d, "osprey_requests_running") > 0); t++)
        usleep(50000);
    ck_assert(it_metric(&d, "osprey_requests_running") > 0);
    for (int i = 0; i < 5; i++) {
        char *text = stress_solo(&d, "/v1/completions", greedy_body);

        ck_assert_str_eq(text, want);
        free(text);
    }
    /* The engine generated every token of the stalled request into its buffer: 8 + 5 done. */
    ck_assert_msg(it_wait_metric(&d, "osprey_requests_finished_total{finish_reason=\"length\"}", length0 + 13, 30),
                  "the stalled request's choices did not finish");
    ck_assert(it_metric(&d, "osprey_requests_finished_total{finish_reason=\"abort\"}") == 0);
    printf("a stream reader that stopped (8 choices x 1000 tokens with logprobs, 2 KiB window): "
           "5 other requests served and all 8 choices generated while it read nothing\n");
    close(fd);
    assert_unharmed(want);
    free(want);
    it_down(&d);
}
END_TEST

/* ---- malformed HTTP ---- */

/* Sends raw bytes on a connection of their own; the answer's status (0: none) and, when the
 * body is an OpenAI error object, its code. libmicrohttpd answers some requests itself (an
 * HTML body, code ""). */
static int raw_exchange(const char *data, size_t len, char *code, size_t code_cap)
{
    int fd = hc_connect(d.port), status = 0, closed;
    size_t got;
    char *answer, *body;

    ck_assert_int_ge(fd, 0);
    hc_send(fd, data, len);
    answer = hc_read_all(fd, 5, &got, &closed);
    close(fd);
    code[0] = '\0';
    if (answer && sscanf(answer, "HTTP/1.%*d %d", &status) == 1 && (body = strstr(answer, "\r\n\r\n"))) {
        cJSON *j = cJSON_Parse(body + 4);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "code");

        snprintf(code, code_cap, "%s", cJSON_IsString(c) ? c->valuestring : "");
        cJSON_Delete(j);
    }
    free(answer);
    return status;
}

static int num_raw;

static void expect_raw(const char *what, const char *data, size_t len, int status, const char *code)
{
    char got[64];
    int s = raw_exchange(data, len, got, sizeof got);

    ck_assert_msg(s == status, "%s: status %d, want %d", what, s, status);
    if (code)
        ck_assert_msg(!strcmp(got, code), "%s: code '%s', want '%s'", what, got, code);
    assert_health();
    num_raw++;
}

static void expect_raw_str(const char *what, const char *data, int status, const char *code)
{
    expect_raw(what, data, strlen(data), status, code);
}

/* "GET /health HTTP/1.1" with `count` headers of `size` bytes each. */
static char *big_head(int count, size_t size, size_t *len)
{
    size_t cap = 64 + (size_t)count * (size + 16);
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap, "GET /health HTTP/1.1\r\nHost: x\r\n");

    for (int i = 0; i < count; i++) {
        n += (size_t)snprintf(s + n, cap - n, "X-%d: ", i);
        memset(s + n, 'a', size);
        n += size;
        n += (size_t)snprintf(s + n, cap - n, "\r\n");
    }
    n += (size_t)snprintf(s + n, cap - n, "\r\n");
    *len = n;
    return s;
}

START_TEST(malformed_http_gets_its_status_and_the_daemon_serves_on)
{
    const char *args[] = { "--max-header-bytes", "4KiB", "--request-timeout", "2", NULL };
    char *want, *s, url[8192];
    size_t len;

    it_up(&d, args);
    want = stress_solo(&d, "/v1/completions", greedy_body);
    s = big_head(1, 5000, &len);
    expect_raw("a header past --max-header-bytes", s, len, 431, "request_header_fields_too_large");
    free(s);
    s = big_head(1, 200000, &len);
    expect_raw("a header past the connection's buffer", s, len, 431, NULL);
    free(s);
    s = big_head(3000, 1, &len);
    expect_raw("3000 headers", s, len, 431, NULL);
    free(s);
    snprintf(url, sizeof url, "GET /%0*d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 6000, 0);
    expect_raw_str("a URL past --max-header-bytes", url, 431, "request_header_fields_too_large");
    expect_raw_str("two Content-Lengths", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                   "Content-Length: 5\r\n\r\n{}", 400, "invalid_request");
    expect_raw_str("Content-Length and chunked", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400, "invalid_request");
    expect_raw_str("Content-Length not a number", "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: abc\r\n\r\n{}", 400, NULL);
    expect_raw_str("Content-Length negative", "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: -5\r\n\r\n{}", 400, NULL);
    expect_raw_str("Content-Length past 2^64", "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: 99999999999999999999999\r\n\r\n{}", 413, NULL);
    expect_raw_str("Content-Length past --max-body-bytes", "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: 2000000\r\n\r\n{}", 413, "request_too_large");
    expect_raw_str("no Content-Length", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                   "{\"prompt\":\"x\"}", 400, "invalid_json");
    expect_raw_str("Content-Length shorter than the body", "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                   "Connection: close\r\nContent-Length: 5\r\n\r\n{\"prompt\":\"x\"}", 400, "invalid_json");
    expect_raw_str("a broken chunk size", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                   "Connection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, NULL);
    expect_raw_str("a header line without a colon", "GET /health HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400, NULL);
    expect_raw_str("HTTP/9.9", "GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 505, NULL);
    expect_raw_str("an unknown method", "BREW /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                   405, "method_not_allowed");
    /* Not HTTP at all: nothing to answer; the request timeout ends it. */
    expect_raw("binary noise", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15, 0, NULL);
    printf("malformed HTTP: %d requests, each its status, /health 200 after each\n", num_raw);
    assert_unharmed(want);
    free(want);
    it_down(&d);
}
END_TEST

/* ---- bad JSON ---- */

static char *nested(const char *before, int depth, const char *after)
{
    size_t n = strlen(before), cap = n + 2 * (size_t)depth + strlen(after) + 1;
    char *s = malloc(cap);

    memcpy(s, before, n);
    memset(s + n, '[', (size_t)depth);
    memset(s + n + (size_t)depth, ']', (size_t)depth);
    snprintf(s + n + 2 * (size_t)depth, cap - n - 2 * (size_t)depth, "%s", after);
    return s;
}

START_TEST(bad_json_is_an_openai_error_and_the_daemon_serves_on)
{
    static const struct { const char *path, *body, *param, *code; int status; } cases[] = {
        /* not UTF-8, or NUL: refused, not changed */
        { "/v1/completions", "{\"prompt\":\"a\xff\xfe b\"}", NULL, "invalid_json", 400 },
        { "/v1/completions", "{\"prompt\":\"\xc0\xaf\"}", NULL, "invalid_json", 400 },
        { "/v1/completions", "{\"prompt\":\"\xed\xa0\x80\"}", NULL, "invalid_json", 400 },
        { "/v1/completions", "{\"prompt\":\"ab\",\"stop\":[\"\xc3\"]}", NULL, "invalid_json", 400 },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"\xe2\x82\"}]}", NULL, "invalid_json", 400 },
        { "/tokenize", "{\"prompt\":\"\xf8\x88\x80\x80\x80\"}", NULL, "invalid_json", 400 },
        { "/v1/completions", "{\"prompt\":\"ab\\u0000cd\"}", NULL, "invalid_value", 400 },
        { "/v1/completions", "{\"prompt\":\"ab\\ud800\"}", NULL, "invalid_json", 400 },
        /* numbers JSON has not, or a double cannot hold */
        { "/v1/completions", "{\"prompt\":\"a\",\"temperature\":NaN}", NULL, "invalid_json", 400 },
        { "/v1/completions", "{\"prompt\":\"a\",\"temperature\":Infinity}", NULL, "invalid_json", 400 },
        { "/v1/completions", "{\"prompt\":\"a\",\"top_p\":-Infinity}", NULL, "invalid_json", 400 },
        { "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":1e999}", "max_tokens", "invalid_value", 400 },
        { "/v1/completions", "{\"prompt\":\"a\",\"temperature\":-1e999}", "temperature", "invalid_value", 400 },
        { "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":1e300}", "max_tokens", "invalid_value", 400 },
        { "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":2147483648}", "max_tokens", "invalid_value", 400 },
        { "/v1/completions", "{\"prompt\":\"a\",\"n\":1e9}", "n", "invalid_value", 400 },
        { "/v1/completions", "{\"prompt\":\"a\",\"seed\":1e30}", "seed", "invalid_value", 400 },
        { "/v1/completions", "{\"prompt\":\"a\",\"logprobs\":1000}", "logprobs", "invalid_value", 400 },
        { "/v1/completions", "{\"prompt\":[1,2,1e999]}", "prompt", "invalid_value", 400 },
        { "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":2048}", "max_tokens", "context_length_exceeded", 400 },
        /* repeated keys, at the top and inside */
        { "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":2,\"max_tokens\":3}", NULL, "invalid_json", 400 },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"role\":\"system\",\"content\":\"a\"}]}", NULL,
          "invalid_json", 400 },
        /* empty arrays: a prompt must hold something; empty stop lists are no stop */
        { "/v1/completions", "{\"prompt\":[]}", "prompt", "invalid_value", 400 },
        { "/v1/completions", "{\"prompt\":[[]]}", "prompt", "invalid_value", 400 },
        { "/v1/completions", "{\"prompt\":[\"a\",[1]]}", "prompt", "invalid_type", 400 },
        { "/v1/chat/completions", "{\"messages\":[]}", "messages", "invalid_value", 400 },
        { "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":{\"a\":1}}]}", "messages",
          "invalid_type", 400 },
        { "/v1/completions", "", NULL, "invalid_json", 400 },
        { "/v1/completions", "null", NULL, "invalid_json", 400 },
    };
    static const char *const accepted[] = {
        "{\"prompt\":\"a\",\"max_tokens\":2,\"stop\":[],\"stop_token_ids\":[]}",
        "{\"prompt\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\",\"max_tokens\":2}",
        "{\"prompt\":\"a\\\\u0000\",\"max_tokens\":2}",
        "{\"prompt\":\"a\",\"max_tokens\":2,\"x\":{\"k\":1},\"y\":{\"k\":1}}",
    };
    char *want, *deep, *huge;
    size_t at;
    int status;
    cJSON *j;

    it_up(&d, NULL);
    want = stress_solo(&d, "/v1/completions", greedy_body);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        it_fails(&d, "POST", cases[i].path, NULL, cases[i].body, cases[i].status, cases[i].param, cases[i].code);
        assert_health();
    }
    for (size_t i = 0; i < sizeof accepted / sizeof *accepted; i++) {
        j = it_post(&d, "/v1/completions", accepted[i], &status);
        ck_assert_msg(status == 200, "%s: %d", accepted[i], status);
        cJSON_Delete(j);
    }
    deep = nested("{\"prompt\":\"a\",\"x\":", 5000, "}");
    ck_assert_ptr_nonnull(strstr(it_fails(&d, "POST", "/v1/completions", NULL, deep, 400, NULL, "invalid_json"),
                                 "nested deeper"));
    free(deep);
    /* Deep enough for cJSON, too deep for the template's values. */
    deep = nested("{\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"x\":", 900, "}]}");
    it_fails(&d, "POST", "/v1/chat/completions", NULL, deep, 400, "messages", NULL);
    free(deep);
    /* A 900 KB prompt (under the 1 MiB body limit): tokenized, then refused with its length. */
    ck_assert_ptr_nonnull(huge = malloc(900 * 1024 + 32));
    at = (size_t)snprintf(huge, 32, "{\"prompt\":\"");
    for (int i = 0; i < 900 * 1024 / 5; i++, at += 5)
        memcpy(huge + at, "word ", 5);
    snprintf(huge + at, 32, "\"}");
    ck_assert_ptr_nonnull(strstr(it_fails(&d, "POST", "/v1/completions", NULL, huge, 400, "prompt",
                                          "context_length_exceeded"), "maximum context length is 2048"));
    free(huge);
    printf("bad JSON: %d bodies, each its OpenAI error (or accepted), /health 200 after each\n",
           (int)(sizeof cases / sizeof *cases + sizeof accepted / sizeof *accepted) + 3);
    assert_unharmed(want);
    free(want);
    it_down(&d);
}
END_TEST

Suite *stress_clients_suite(void)
{
    Suite *s = suite_create("stress_clients");
    TCase *tc = tcase_create("clients");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, slow_senders_are_cut_at_the_request_timeout_while_others_are_served);
    tcase_add_test(tc, an_idle_keep_alive_connection_is_closed_at_the_idle_timeout);
    tcase_add_test(tc, a_stream_reader_that_stops_holds_up_neither_the_engine_nor_others);
    tcase_add_test(tc, malformed_http_gets_its_status_and_the_daemon_serves_on);
    tcase_add_test(tc, bad_json_is_an_openai_error_and_the_daemon_serves_on);
    suite_add_tcase(s, tc);
    return s;
}

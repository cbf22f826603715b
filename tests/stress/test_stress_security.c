/* test_stress_security.c — the security basics. With an API key every route but /health
 * needs it (HEAD and /metrics too), whichever way the key is given; the key never reaches
 * the log, even at debug with --log-prompts; prompts and outputs reach it only with
 * --log-prompts at debug; the default listener is 127.0.0.1 alone (read from
 * /proc/net/tcp*); and every client-controlled axis has an option that holds at its value
 * and refuses one past it. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/stress/stress_util.h"

static struct daemon d;

static const char key[] = "sk-stress-9f2c41d0e7b3a8c6";

/* ---- the key ---- */

static int status_of(const char *method, const char *path, const char *headers, const char *body)
{
    struct hc_response r;
    int status;

    hc_request(d.port, method, path, headers, body, &r, 30);
    status = r.status;
    hc_response_fini(&r);
    return status;
}

/* Every route of the README's table, with a body it accepts. */
static const struct { const char *method, *path, *body; } routes[] = {
    { "POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1}" },
    { "POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1}" },
    { "GET", "/v1/models", NULL },
    { "HEAD", "/v1/models", NULL },
    { "POST", "/tokenize", "{\"prompt\":\"x\"}" },
    { "POST", "/detokenize", "{\"tokens\":[300]}" },
    { "GET", "/metrics", NULL },
};

static void assert_key_guards_every_route(void)
{
    char good[128], wrong[128], basic[128];

    snprintf(good, sizeof good, "Authorization: Bearer %s\r\n", key);
    snprintf(wrong, sizeof wrong, "Authorization: Bearer %.*sX\r\n", (int)strlen(key) - 1, key);
    snprintf(basic, sizeof basic, "Authorization: Basic %s\r\n", key);
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        const char *m = routes[i].method, *p = routes[i].path, *b = routes[i].body;

        if (strcmp(m, "HEAD")) {
            it_fails(&d, m, p, NULL, b, 401, NULL, "invalid_api_key");
            it_fails(&d, m, p, wrong, b, 401, NULL, "invalid_api_key");
            it_fails(&d, m, p, basic, b, 401, NULL, "invalid_api_key");
        } else {
            ck_assert_int_eq(status_of(m, p, NULL, b), 401);
        }
        ck_assert_msg(status_of(m, p, good, b) == 200, "%s %s with the key", m, p);
    }
    ck_assert_int_eq(status_of("GET", "/health", NULL, NULL), 200);
    ck_assert_int_eq(status_of("HEAD", "/health", NULL, NULL), 200);
}

/* The key, or any 8 characters of it, nowhere in the log; its mask is. */
static void assert_key_not_logged(void)
{
    char piece[9], mask[16];

    for (size_t at = 0; at + 8 <= strlen(key); at++) {
        memcpy(piece, key + at, 8);
        piece[8] = '\0';
        ck_assert_msg(!daemon_log_has(&d, piece), "'%s' of the key is in the log", piece);
    }
    snprintf(mask, sizeof mask, "****%s", key + strlen(key) - 4);
    ck_assert(daemon_log_has(&d, mask));
}

START_TEST(every_route_but_health_needs_the_key_however_it_is_given)
{
    char file[600], flag[600], env[128];
    const char *tmp = getenv("OSPREY_TEST_TMP");
    FILE *f;

    snprintf(file, sizeof file, "%s/api-key-%d", tmp && tmp[0] ? tmp : "/tmp", (int)getpid());
    ck_assert_ptr_nonnull(f = fopen(file, "w"));
    fprintf(f, "%s\n", key);
    fclose(f);
    snprintf(flag, sizeof flag, "%s", file);
    {
        /* by flag, at debug with prompts logged: the most a log ever holds */
        const char *args[] = { "--api-key", key, "--log-level", "debug", "--log-prompts", NULL };

        it_up(&d, args);
        assert_key_guards_every_route();
        it_down(&d);
        assert_key_not_logged();
    }
    {
        const char *args[] = { "--api-key-file", flag, "--log-level", "debug", NULL };

        it_up(&d, args);
        assert_key_guards_every_route();
        it_down(&d);
        assert_key_not_logged();
    }
    {
        const char *env_list[] = { env, NULL };

        snprintf(env, sizeof env, "OSPREY_API_KEY=%s", key);
        ck_assert(daemon_start_env(&d, NULL, env_list) == 0);
        assert_key_guards_every_route();
        it_down(&d);
        assert_key_not_logged();
    }
    unlink(file);
    printf("API key (flag, file, environment): %d routes x 3 refusals (none, wrong, Basic) = 401, "
           "200 with it, /health open; no 8 characters of it in the log\n", (int)(sizeof routes / sizeof *routes));
}
END_TEST

/* ---- prompts in the log ---- */

static void send_marked(void)
{
    int status;
    cJSON *j;

    j = it_post(&d, "/v1/completions", "{\"prompt\":\"zebra-7731 crossing\",\"max_tokens\":4}", &status);
    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);
    j = it_post(&d, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"okapi-5120 grazing\"}],"
                "\"max_tokens\":4}", &status);
    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);
    j = it_post(&d, "/tokenize", "{\"prompt\":\"quokka-8812 smiling\"}", &status);
    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);
}

START_TEST(prompts_reach_the_log_only_with_log_prompts_at_debug)
{
    static const struct { const char *args[6]; bool logged; } runs[] = {
        { { NULL }, false },
        { { "--log-level", "debug", NULL }, false },
        { { "--log-level", "debug", "--log-prompts", NULL }, true },
    };

    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        it_up(&d, runs[i].args);
        send_marked();
        it_down(&d);
        ck_assert_msg(daemon_log_has(&d, "zebra-7731") == runs[i].logged, "run %zu: completion prompt", i);
        ck_assert_msg(daemon_log_has(&d, "okapi-5120") == runs[i].logged, "run %zu: chat prompt", i);
        ck_assert_msg(!daemon_log_has(&d, "quokka-8812"), "run %zu: /tokenize logged its text", i);
        ck_assert(daemon_log_has(&d, "POST /v1/completions 200"));       /* the access log is there */
    }
    printf("prompts in the log: only with --log-prompts at --log-level debug (3 configurations)\n");
}
END_TEST

/* ---- the listener ---- */

/* The local addresses of the sockets listening on port, from /proc/net/tcp or tcp6. */
static int listeners(const char *table, int port, char addrs[][40], int max)
{
    char line[512], local[40];
    unsigned p, st;
    int n = 0;
    FILE *f = fopen(table, "r");

    if (!f)
        return 0;
    while (fgets(line, sizeof line, f) && n < max)
        if (sscanf(line, " %*d: %39[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", local, &p, &st) == 3 &&
            (int)p == port && st == 0x0A)
            snprintf(addrs[n++], 40, "%s", local);
    fclose(f);
    return n;
}

START_TEST(the_default_listener_is_loopback_only)
{
    char v4[4][40], v6[4][40];
    int n4, n6;

    it_up(&d, NULL);                 /* no --host */
    n4 = listeners("/proc/net/tcp", d.port, v4, 4);
    n6 = listeners("/proc/net/tcp6", d.port, v6, 4);
    ck_assert_int_eq(n4, 1);
    ck_assert_str_eq(v4[0], "0100007F");                   /* 127.0.0.1, little-endian */
    ck_assert_int_eq(n6, 0);
    it_down(&d);
    printf("default listener: 127.0.0.1:%d only (/proc/net/tcp), no IPv6 socket\n", d.port);
}
END_TEST

/* ---- limits ---- */

static void expect_ok(const char *path, const char *body)
{
    int status;
    cJSON *j = it_post(&d, path, body, &status);

    ck_assert_msg(status == 200, "%s %s: %d", path, body, status);
    cJSON_Delete(j);
}

/* A body of exactly len bytes: a small request padded with spaces. */
static char *padded(size_t len)
{
    static const char req[] = "{\"prompt\":\"x\",\"max_tokens\":1}";
    char *b = malloc(len + 1);

    memset(b, ' ', len);
    memcpy(b, req, sizeof req - 1);
    b[len] = '\0';
    return b;
}

START_TEST(every_client_limit_holds_at_its_value_and_refuses_one_past_it)
{
    const char *args[] = { "--max-body-bytes", "4KiB", "--max-header-bytes", "2KiB", "--max-prompt-tokens", "32",
                           "--max-tokens-limit", "5", "--max-n", "2", "--max-stop-strings", "2",
                           "--max-stop-length", "4", "--max-logprobs", "2", "--max-connections", "4", NULL };
    char hdr[2100], *b;
    int held[4], extra, limits = 0;

    it_up(&d, args);
    /* body bytes */
    b = padded(4096);
    expect_ok("/v1/completions", b);
    free(b);
    b = padded(4097);
    it_fails(&d, "POST", "/v1/completions", NULL, b, 413, NULL, "request_too_large");
    free(b);
    limits++;
    /* header bytes: the request line and Host, Connection, Content-* come to about 150 */
    memset(hdr, 0, sizeof hdr);
    snprintf(hdr, sizeof hdr, "X-Pad: %0*d\r\n", 1700, 0);
    ck_assert_int_eq(status_of("GET", "/health", hdr, NULL), 200);
    snprintf(hdr, sizeof hdr, "X-Pad: %0*d\r\n", 2048, 0);
    it_fails(&d, "GET", "/health", hdr, NULL, 431, NULL, "request_header_fields_too_large");
    limits++;
    /* prompt tokens */
    for (int n = 32; n <= 33; n++) {
        char body[256];
        int at = snprintf(body, sizeof body, "{\"prompt\":[");

        for (int i = 0; i < n; i++)
            at += snprintf(body + at, sizeof body - (size_t)at, "%s%d", i ? "," : "", 1 + i);
        snprintf(body + at, sizeof body - (size_t)at, "],\"max_tokens\":1}");
        if (n == 32)
            expect_ok("/v1/completions", body);
        else
            it_fails(&d, "POST", "/v1/completions", NULL, body, 400, "prompt", "context_length_exceeded");
    }
    limits++;
    /* max_tokens */
    expect_ok("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":5}");
    it_fails(&d, "POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"max_tokens\":6}", 400, "max_tokens", NULL);
    it_fails(&d, "POST", "/v1/chat/completions", NULL, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
             "\"max_completion_tokens\":6}", 400, "max_completion_tokens", NULL);
    limits++;
    /* n, over every prompt */
    expect_ok("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1,\"n\":2}");
    it_fails(&d, "POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"max_tokens\":1,\"n\":3}", 400, "n", NULL);
    it_fails(&d, "POST", "/v1/completions", NULL, "{\"prompt\":[\"x\",\"y\",\"z\"],\"max_tokens\":1}", 400, "n", NULL);
    limits++;
    /* stop strings: count and length */
    expect_ok("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1,\"stop\":[\"abcd\",\"efgh\"]}");
    it_fails(&d, "POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\"]}", 400, "stop", NULL);
    it_fails(&d, "POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"stop\":\"abcde\"}", 400, "stop", NULL);
    limits += 2;
    /* logprobs */
    expect_ok("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1,\"logprobs\":2}");
    it_fails(&d, "POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"logprobs\":3}", 400, "logprobs", NULL);
    expect_ok("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1,"
              "\"logprobs\":true,\"top_logprobs\":2}");
    it_fails(&d, "POST", "/v1/chat/completions", NULL, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
             "\"logprobs\":true,\"top_logprobs\":3}", 400, "top_logprobs", NULL);
    limits++;
    /* connections: four held, a fifth waits in the backlog until one closes */
    for (int i = 0; i < 4; i++) {
        ck_assert_int_ge(held[i] = hc_connect(d.port), 0);
        ck_assert_int_eq(hc_send(held[i], "GET /health HTTP/1.1\r\n", 22), 0);
    }
    usleep(200000);
    ck_assert_int_ge(extra = hc_connect(d.port), 0);
    ck_assert_int_eq(hc_send(extra, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 33), 0);
    ck_assert(!hc_read_until(extra, "HTTP/1.1 200", 0.5));
    close(held[0]);
    ck_assert(hc_read_until(extra, "HTTP/1.1 200", 5));
    close(extra);
    for (int i = 1; i < 4; i++)
        close(held[i]);
    limits++;
    it_assert_idle(&d);
    it_down(&d);
    printf("client limits: %d options (body, head, prompt tokens, max_tokens, n, stop count, stop length, "
           "logprobs, connections), each served at its value and refused one past it\n", limits);
}
END_TEST

Suite *stress_security_suite(void)
{
    Suite *s = suite_create("stress_security");
    TCase *tc = tcase_create("security");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, every_route_but_health_needs_the_key_however_it_is_given);
    tcase_add_test(tc, prompts_reach_the_log_only_with_log_prompts_at_debug);
    tcase_add_test(tc, the_default_listener_is_loopback_only);
    tcase_add_test(tc, every_client_limit_holds_at_its_value_and_refuses_one_past_it);
    suite_add_tcase(s, tc);
    return s;
}

/* test_stress_load.c — the daemon under more clients than it admits and under clients that
 * leave at random points. Overload: ten times more concurrent clients than the waiting
 * queue holds; every answer is 200 or 503 with Retry-After, every admitted request gives
 * the tokens it gives alone (greedy), RSS stays bounded (before, peak, after printed) and the
 * daemon serves afterwards. Disconnect storm: seeded cuts mid-head, mid-body, while waiting,
 * mid-stream; afterwards nothing runs or waits, every KV block is free, the descriptors are
 * back to where they were and greedy output is unchanged. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/stress/stress_util.h"

static struct daemon d;

/* ---- what the clients ask ---- */

enum { NUM_PROMPTS = 4, MAX_TOKENS = 24 };

static const char *const prompts[NUM_PROMPTS] = {
    "The quick brown fox", "Once upon a time", "In the beginning", "Hello, world",
};

/* A greedy request for prompt p: completions or chat, n choices, streamed or not. */
static void body_of(char *buf, size_t cap, int p, bool chat, int n, bool stream, int max_tokens)
{
    if (chat)
        snprintf(buf, cap, "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":%d,"
                 "\"temperature\":0,\"ignore_eos\":true,\"n\":%d,\"stream\":%s}", prompts[p], max_tokens,
                 n, stream ? "true" : "false");
    else
        snprintf(buf, cap, "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0,\"ignore_eos\":true,"
                 "\"n\":%d,\"stream\":%s}", prompts[p], max_tokens, n, stream ? "true" : "false");
}

static const char *path_of(bool chat)
{
    return chat ? "/v1/chat/completions" : "/v1/completions";
}

/* solo[p][chat]: the text each prompt gives alone, before any load. */
static char *solo[NUM_PROMPTS][2];

static void take_solo_texts(void)
{
    char body[512];

    for (int p = 0; p < NUM_PROMPTS; p++)
        for (int chat = 0; chat < 2; chat++) {
            body_of(body, sizeof body, p, chat, 1, false, MAX_TOKENS);
            solo[p][chat] = stress_solo(&d, path_of(chat), body);
        }
}

static void free_solo_texts(void)
{
    for (int p = 0; p < NUM_PROMPTS; p++)
        for (int chat = 0; chat < 2; chat++) {
            free(solo[p][chat]);
            solo[p][chat] = NULL;
        }
}

/* After the load: nothing left in the engine, greedy output unchanged, /health 200. */
static void assert_unharmed(void)
{
    char body[512], *text;
    int status;
    cJSON *j;

    it_assert_idle(&d);
    j = it_post(&d, "/health", NULL, &status);
    ck_assert_int_eq(status, 200);
    cJSON_Delete(j);
    for (int p = 0; p < NUM_PROMPTS; p++) {
        body_of(body, sizeof body, p, p % 2, 1, false, MAX_TOKENS);
        text = stress_solo(&d, path_of(p % 2), body);
        ck_assert_str_eq(text, solo[p][p % 2]);
        free(text);
    }
}

static void print_mem(const char *what, const struct stress_mem *before, const struct stress_mem *after)
{
    printf("%s: daemon RSS before %.1f MiB, peak %.1f MiB, after %.1f MiB\n", what,
           before->rss_kib / 1024.0, after->hwm_kib / 1024.0, after->rss_kib / 1024.0);
    fflush(stdout);
}

/* ---- overload ---- */

enum { SEQS = 2, WAITING = 4, CLIENTS = 10 * WAITING, ROUNDS = 3 };

struct burst_client {
    int port;
    int fd;
    int status;
    char retry_after[16];
};

/* Opens a long stream and reads its status; the socket stays open (admitted requests keep
 * their slot) until the test has counted. */
static void *burst_main(void *p)
{
    struct burst_client *c = p;
    char *head, body[8192];
    int n = snprintf(body, sizeof body, "{\"prompt\":[");

    /* Long prompts: each step's prefill takes a while, as a real model's steps do. */
    for (int i = 0; i < 1500; i++)
        n += snprintf(body + n, sizeof body - (size_t)n, "%s%d", i ? "," : "", 1 + (i * 7 + c->port) % 400);
    snprintf(body + n, sizeof body - (size_t)n, "],\"max_tokens\":500,\"ignore_eos\":true,\"stream\":true}");
    c->fd = hc_open_post(c->port, "/v1/completions", body, 0);
    if (c->fd < 0 || !(head = stress_read_head(c->fd, 30)))
        return NULL;
    sscanf(head, "HTTP/1.%*d %d", &c->status);
    for (char *h = strcasestr(head, "\r\nRetry-After:"); h; h = NULL)
        sscanf(h + 14, " %15[^\r]", c->retry_after);
    free(head);
    return NULL;
}

struct load_client {
    int port;
    int index;
    int ok, busy;
    char why[512];                  /* the first answer that was neither right nor 503 */
};

/* One answer against the solo texts: NULL when right, else what was wrong. */
static const char *check_answer(const struct stress_answer *a, int p, bool chat, int n, bool stream,
                                char *why, size_t cap)
{
    if (a->status == 503) {
        if (strcmp(a->retry_after, "1") || strcmp(a->code, "overloaded"))
            snprintf(why, cap, "503 with Retry-After '%s' and code '%s'", a->retry_after, a->code);
        return why[0] ? why : NULL;
    }
    if (a->status != 200) {
        snprintf(why, cap, "status %d (code '%s')", a->status, a->code);
        return why;
    }
    if (stream && !(a->stream_done && a->stream_clean))
        snprintf(why, cap, "a stream without [DONE] or badly framed");
    for (int i = 0; i < n && !why[0]; i++)
        if (!a->text[i] || strcmp(a->text[i], solo[p][chat]) || strcmp(a->finish[i], "length"))
            snprintf(why, cap, "%s prompt %d choice %d: '%s' (%s), alone: '%s'", chat ? "chat" : "completion",
                     p, i, a->text[i] ? a->text[i] : "(none)", a->finish[i], solo[p][chat]);
    return why[0] ? why : NULL;
}

/* Three requests in a row, each retried until admitted (after 2 to 12 ms, not the second
 * Retry-After asks: the test wants load, not politeness), 1000 refusals at most. */
static void *load_main(void *arg)
{
    struct load_client *c = arg;
    uint64_t rng = (uint64_t)c->index;

    for (int r = 0; r < ROUNDS; r++) {
        int k = c->index * ROUNDS + r, p = k % NUM_PROMPTS, n = 1 + (k % 3 == 0);
        bool chat = k % 5 == 0, stream = (k / 2) % 2;
        char body[512];

        body_of(body, sizeof body, p, chat, n, stream, MAX_TOKENS);
        for (int attempt = 0; attempt < 1000; attempt++) {
            struct stress_answer a;
            char why[512] = "";
            int status;

            stress_call(c->port, path_of(chat), body, &a);
            status = a.status;
            if (check_answer(&a, p, chat, n, stream, why, sizeof why) && !c->why[0])
                snprintf(c->why, sizeof c->why, "%s", why);
            c->ok += status == 200;
            c->busy += status == 503;
            stress_answer_fini(&a);
            if (status != 503)
                break;
            usleep(2000 + (useconds_t)stress_below(&rng, 10000));
        }
    }
    return NULL;
}

START_TEST(ten_times_the_queue_gets_200_or_503_and_exact_greedy_tokens)
{
    const char *args[] = { "--max-num-seqs", "2", "--max-waiting-requests", "4", NULL };
    struct burst_client burst[CLIENTS];
    struct load_client load[CLIENTS];
    struct stress_mem before, after;
    int ok = 0, busy = 0;
    double finished, t0;

    it_up(&d, args);
    take_solo_texts();
    ck_assert_int_eq(stress_mem(d.pid, &before), 0);

    /* A burst of long streams, all at once. A refusal means WAITING requests were waiting
     * then, so at least that many got in; at most running + waiting did, plus one for each
     * request that finished meanwhile (the finished counter shows those). */
    finished = it_metric(&d, "osprey_requests_finished_total{finish_reason=\"length\"}");
    for (int i = 0; i < CLIENTS; i++)
        burst[i] = (struct burst_client){ .port = d.port, .fd = -1 };
    stress_run(CLIENTS, burst_main, burst, sizeof burst[0]);
    finished = it_metric(&d, "osprey_requests_finished_total{finish_reason=\"length\"}") - finished;
    for (int i = 0; i < CLIENTS; i++) {
        ck_assert_msg(burst[i].status == 200 || burst[i].status == 503, "burst: status %d", burst[i].status);
        if (burst[i].status == 503)
            ck_assert_str_eq(burst[i].retry_after, "1");
        ok += burst[i].status == 200;
    }
    printf("overload burst: %d streams at once, %d admitted (running %d + waiting %d), %d refused; %.0f finished meanwhile\n",
           CLIENTS, ok, SEQS, WAITING, CLIENTS - ok, finished);
    ck_assert_int_ge(ok, WAITING);
    ck_assert_int_le(ok, SEQS + WAITING + (int)finished);
    for (int i = 0; i < CLIENTS; i++)
        if (burst[i].fd >= 0)
            close(burst[i].fd);
    it_assert_idle(&d);

    /* Then every client asks three times in a row, greedy, mixed shapes. */
    t0 = stress_now();
    for (int i = 0; i < CLIENTS; i++)
        load[i] = (struct load_client){ .port = d.port, .index = i };
    stress_run(CLIENTS, load_main, load, sizeof load[0]);
    ok = 0;
    for (int i = 0; i < CLIENTS; i++) {
        ck_assert_msg(!load[i].why[0], "client %d: %s", i, load[i].why);
        ok += load[i].ok;
        busy += load[i].busy;
    }
    ck_assert_int_eq(ok, CLIENTS * ROUNDS);         /* each admitted in the end */
    ck_assert_int_gt(busy, 0);                      /* it was overloaded */
    ck_assert_int_gt(ok, 0);
    ck_assert_int_eq(stress_mem(d.pid, &after), 0);
    printf("overload: %d clients x %d requests (retried on 503) in %.2f s: %d answered 200 with "
           "the solo tokens, %d refused 503 + Retry-After\n", CLIENTS, ROUNDS, stress_now() - t0, ok, busy);
    assert_unharmed();
    ck_assert_int_eq(stress_mem(d.pid, &after), 0);
    print_mem("overload", &before, &after);
    /* Bounded: the KV cache (32 MiB, touched as blocks are first used) and buffers that
     * come and go; far from what 160 requests' worth of unbounded queues would take. */
    ck_assert_int_lt(after.hwm_kib - before.rss_kib, 96 * 1024);
    free_solo_texts();
    it_down(&d);
}
END_TEST

/* ---- the disconnect storm ---- */

enum { STORM_THREADS = 12, STORM_PER_THREAD = 8, STORM_ROUNDS = 2 };
enum cut { CUT_HEAD, CUT_BODY, CUT_WAITING, CUT_STREAM, CUT_NONE, NUM_CUTS };

static const char *const cut_names[NUM_CUTS] = {
    "mid-head", "mid-body", "after the request", "mid-stream", "none (read to the end)",
};

struct storm_client {
    int port;
    uint64_t seed;
    int cuts[NUM_CUTS];
    int resets;                     /* closed with RST rather than FIN */
    char why[512];
};

static void storm_one(struct storm_client *c, uint64_t *rng)
{
    int p = stress_below(rng, NUM_PROMPTS), n = 1 + stress_below(rng, 2);
    bool chat = stress_below(rng, 2), stream = stress_below(rng, 2), rst = stress_below(rng, 2);
    enum cut cut = (enum cut)stress_below(rng, NUM_CUTS);
    char body[512], req[1024];
    size_t head_len, len;
    int fd;

    if (cut == CUT_STREAM && !stream)
        cut = CUT_WAITING;
    body_of(body, sizeof body, p, chat, n, stream, 8 + stress_below(rng, 200));
    c->cuts[cut]++;
    if (cut == CUT_NONE) {
        struct stress_answer a;

        stress_call(c->port, path_of(chat), body, &a);
        if (a.status != 200 && !c->why[0])
            snprintf(c->why, sizeof c->why, "an uncut request got %d", a.status);
        stress_answer_fini(&a);
        return;
    }
    head_len = (size_t)snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                                path_of(chat), strlen(body));
    len = (size_t)snprintf(req + head_len, sizeof req - head_len, "%s", body) + head_len;
    if ((fd = hc_connect(c->port)) < 0) {
        snprintf(c->why, sizeof c->why, "cannot connect");
        return;
    }
    if (cut == CUT_HEAD)
        len = 1 + (size_t)stress_below(rng, (int)head_len - 1);
    else if (cut == CUT_BODY)
        len = head_len + (size_t)stress_below(rng, (int)(len - head_len));
    hc_send(fd, req, len);
    if (cut == CUT_STREAM) {
        int events = 1 + stress_below(rng, 8);

        for (int i = 0; i < events && hc_read_until(fd, "data: ", 10); i++)
            ;
    } else {
        usleep((useconds_t)stress_below(rng, 30000));
    }
    if (rst) {
        struct linger l = { .l_onoff = 1, .l_linger = 0 };

        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        c->resets++;
    }
    close(fd);
}

static void *storm_main(void *arg)
{
    struct storm_client *c = arg;
    uint64_t rng = c->seed;

    for (int i = 0; i < STORM_PER_THREAD; i++)
        storm_one(c, &rng);
    return NULL;
}

START_TEST(a_seeded_disconnect_storm_leaves_no_request_block_or_socket_behind)
{
    const char *args[] = { "--max-num-seqs", "4", NULL };
    uint64_t seed = stress_seed(20261125);
    struct storm_client c[STORM_THREADS];
    struct stress_mem before, after;
    int fds, cuts[NUM_CUTS] = { 0 }, resets = 0;

    it_up(&d, args);
    take_solo_texts();
    ck_assert_int_eq(stress_mem(d.pid, &before), 0);
    usleep(200000);                 /* the solo requests' connections closed */
    fds = stress_fds(d.pid);
    ck_assert_int_gt(fds, 0);
    for (int round = 0; round < STORM_ROUNDS; round++) {
        double t0 = stress_now();

        for (int i = 0; i < STORM_THREADS; i++)
            c[i] = (struct storm_client){ .port = d.port, .seed = seed * 1000003u + (uint64_t)(round * STORM_THREADS + i) };
        stress_run(STORM_THREADS, storm_main, c, sizeof c[0]);
        for (int i = 0; i < STORM_THREADS; i++) {
            ck_assert_msg(!c[i].why[0], "storm client %d: %s", i, c[i].why);
            for (int k = 0; k < NUM_CUTS; k++)
                cuts[k] += c[i].cuts[k];
            resets += c[i].resets;
        }
        printf("disconnect storm (seed %llu) round %d: %d clients in %.2f s\n", (unsigned long long)seed,
               round + 1, STORM_THREADS * STORM_PER_THREAD, stress_now() - t0);
        /* Nothing left: no request, no block, no connection. */
        assert_unharmed();
        for (int t = 0; t < 100 && stress_fds(d.pid) > fds; t++)
            usleep(100000);
        ck_assert_int_le(stress_fds(d.pid), fds);
        ck_assert_int_eq(stress_mem(d.pid, &after), 0);
        print_mem("disconnect storm", &before, &after);
    }
    for (int k = 0; k < NUM_CUTS; k++)
        printf("  cut %s: %d\n", cut_names[k], cuts[k]);
    printf("  closed with RST: %d; descriptors before and after: %d\n", resets, fds);
    for (int k = 0; k < NUM_CUTS; k++)
        ck_assert_int_gt(cuts[k], 0);
    ck_assert(it_metric(&d, "osprey_requests_finished_total{finish_reason=\"abort\"}") > 0);
    ck_assert_int_lt(after.hwm_kib - before.rss_kib, 96 * 1024);
    free_solo_texts();
    it_down(&d);
}
END_TEST

Suite *stress_load_suite(void)
{
    Suite *s = suite_create("stress_load");
    TCase *tc = tcase_create("load");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, ten_times_the_queue_gets_200_or_503_and_exact_greedy_tokens);
    tcase_add_test(tc, a_seeded_disconnect_storm_leaves_no_request_block_or_socket_behind);
    suite_add_tcase(s, tc);
    return s;
}

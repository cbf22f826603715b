/* test_deploy_nginx.c — osprey replicas behind the real nginx with the repository's site
 * (config/nginx/osprey.conf): prefix-affine routing keeps a conversation on one replica so
 * the prefix cache hits as on one daemon (round robin does not); streams pass through
 * chunk by chunk; a rolling restart (SIGTERM, drain, restart, rejoin) under load fails no
 * request; a replica killed with SIGKILL fails only its streams and serves again after a
 * restart; requests without a key go to the least_conn pool; no replica at all is an
 * OpenAI error. Daemons on the CPU backend with the tiny model, nginx on loopback ports. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/deploy/deploy_util.h"

enum { REPLICAS = 3, FAIL_TIMEOUT_S = 2 };

/* A grace long enough for the drained streams even on a sanitized, loaded machine. */
static const char *const replica_args[] = { "--kv-cache-memory", "64MiB", "--shutdown-grace", "60", NULL };

static void replicas_up(struct daemon *d, int num)
{
    for (int i = 0; i < num; i++)
        it_up(&d[i], replica_args);
}

static void replicas_down(struct daemon *d, int num)
{
    for (int i = 0; i < num; i++)
        if (d[i].pid)
            it_down(&d[i]);
}

/* Starts replica i again on its port, as systemd would after it exited. */
static void replica_restart(struct daemon *d)
{
    char port[16];
    const char *args[] = { "--kv-cache-memory", "64MiB", "--shutdown-grace", "60", "--port", port, NULL };

    snprintf(port, sizeof port, "%d", d->port);
    it_up(d, args);
}

static void addr_of(const struct daemon *d, char *buf, size_t cap)
{
    snprintf(buf, cap, "127.0.0.1:%d", d->port);
}

/* The replica that finally answered: the last address of X-Osprey-Upstream. */
static const char *answered_by(const char *upstream)
{
    const char *last = strrchr(upstream, ' ');

    return last ? last + 1 : upstream;
}

/* ---- prefix-affine routing ---- */

enum { CONVS = 30, TURNS = 5, CLIENTS = 3 };

static const char *const words[] = {
    "river", "stone", "light", "paper", "window", "garden", "silver", "engine", "market", "winter",
    "orange", "castle", "forest", "bridge", "letter", "summer", "pocket", "mirror", "ladder", "cotton",
    "harbor", "candle", "rocket", "meadow", "island", "velvet", "anchor", "falcon", "copper", "lantern",
    "thunder", "marble",
};

/* About len characters of words drawn from seed, after a head line. */
static void words_into(cJSON *arr, const char *role, const char *head, uint64_t seed, size_t len)
{
    char *text = malloc(len + 64);
    size_t n;
    cJSON *m = cJSON_CreateObject();

    ck_assert_ptr_nonnull(text);
    n = (size_t)snprintf(text, len + 64, "%s", head);
    while (n < len)
        n += (size_t)snprintf(text + n, len + 64 - n, " %s", words[stress_below(&seed, 32)]);
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", text);
    cJSON_AddItemToArray(arr, m);
    free(text);
}

static uint64_t tag_seed(const char *tag)
{
    uint64_t h = 1469598103934665603ull;

    for (; *tag; tag++)
        h = (h ^ (uint8_t)*tag) * 1099511628211ull;
    return h;
}

/* Turn t (1..TURNS) of conversation c of run tag: a system prompt shared by the run's
 * conversations (~400 characters), the conversation's document (~800), then per earlier
 * turn an answer and a question (~40 each). Greedy, 2 tokens. */
static char *convo_body(const char *tag, int c, int t)
{
    cJSON *req = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(req, "messages");
    char head[128];
    char *body;

    snprintf(head, sizeof head, "You answer questions about documents (run %s).", tag);
    words_into(msgs, "system", head, tag_seed(tag), 400);
    snprintf(head, sizeof head, "Document %d of run %s:", c, tag);
    words_into(msgs, "user", head, tag_seed(tag) * 31 + (uint64_t)c, 800);
    for (int k = 1; k < t; k++) {
        snprintf(head, sizeof head, "Answer %d about document %d.", k, c);
        words_into(msgs, "assistant", head, tag_seed(tag) + 7 * (uint64_t)k + 1000 * (uint64_t)c, 40);
        snprintf(head, sizeof head, "Question %d about document %d:", k + 1, c);
        words_into(msgs, "user", head, tag_seed(tag) + 13 * (uint64_t)k + 1000 * (uint64_t)c, 40);
    }
    cJSON_AddNumberToObject(req, "max_tokens", 2);
    cJSON_AddNumberToObject(req, "temperature", 0);
    body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    ck_assert_ptr_nonnull(body);
    return body;
}

struct convo_client {
    int port, index;
    const char *tag;
    int failed;
    char failure[160];
    char upstream[CONVS][TURNS][64];   /* who answered each turn ("" direct) */
};

static void *convo_main(void *p)
{
    struct convo_client *x = p;

    for (int c = x->index; c < CONVS; c += CLIENTS)
        for (int t = 1; t <= TURNS; t++) {
            char *body = convo_body(x->tag, c, t);
            struct deploy_answer r;

            deploy_call(x->port, "/v1/chat/completions", NULL, body, &r);
            if (r.status != 200 && !x->failed++)
                snprintf(x->failure, sizeof x->failure, "conversation %d turn %d: %d", c, t, r.status);
            snprintf(x->upstream[c][t - 1], sizeof x->upstream[c][t - 1], "%.63s", answered_by(r.upstream));
            deploy_answer_fini(&r);
            free(body);
        }
    return NULL;
}

/* Runs the workload against port; returns the prefix-cache hit rate it added to d[0..num). */
static double run_workload(int port, const char *tag, struct daemon *d, int num, struct convo_client *x)
{
    struct deploy_prefix before, after;

    deploy_prefix_read(d, num, &before);
    for (int i = 0; i < CLIENTS; i++) {
        memset(&x[i], 0, sizeof x[i]);
        x[i] = (struct convo_client){ .port = port, .index = i, .tag = tag };
    }
    stress_run(CLIENTS, convo_main, x, sizeof x[0]);
    for (int i = 0; i < CLIENTS; i++)
        ck_assert_msg(x[i].failed == 0, "%s: %d failed requests, first %s", tag, x[i].failed, x[i].failure);
    deploy_prefix_read(d, num, &after);
    ck_assert(after.queries > before.queries);
    return (after.hits - before.hits) / (after.queries - before.queries);
}

START_TEST(prefix_affine_routing_keeps_one_daemons_prefix_cache_hit_rate_and_round_robin_does_not)
{
    static struct convo_client x[CLIENTS];
    struct daemon d[REPLICAS];
    struct deploy_nginx n;
    int ports[REPLICAS], per_replica[REPLICAS] = { 0 };
    double single, affine, rr;
    char addr[REPLICAS][64];

    replicas_up(d, REPLICAS);
    for (int i = 0; i < REPLICAS; i++) {
        ports[i] = d[i].port;
        addr_of(&d[i], addr[i], sizeof addr[i]);
    }
    deploy_nginx_start(&n, ports, REPLICAS, FAIL_TIMEOUT_S);

    /* Each run has prompts of its own, so that no run finds another's blocks. */
    single = run_workload(d[0].port, "single", d, REPLICAS, x);
    affine = run_workload(n.port, "affine", d, REPLICAS, x);
    /* Every turn of a conversation went to the replica of its first turn. */
    for (int c = 0; c < CONVS; c++) {
        const struct convo_client *cl = &x[c % CLIENTS];

        for (int t = 1; t < TURNS; t++)
            ck_assert_msg(!strcmp(cl->upstream[c][t], cl->upstream[c][0]),
                          "conversation %d: turn 1 on %s, turn %d on %s", c, cl->upstream[c][0], t + 1,
                          cl->upstream[c][t]);
        for (int i = 0; i < REPLICAS; i++)
            per_replica[i] += !strcmp(cl->upstream[c][0], addr[i]);
    }
    rr = run_workload(n.rr_port, "round-robin", d, REPLICAS, x);
    printf("prefix-cache hit rate, %d conversations x %d turns: one daemon %.3f; %d replicas behind "
           "nginx, prefix-affine %.3f (%.1f%% of one daemon; conversations per replica %d/%d/%d), "
           "round robin %.3f\n", CONVS, TURNS, single, REPLICAS, affine, 100 * affine / single,
           per_replica[0], per_replica[1], per_replica[2], rr);
    ck_assert_msg(affine >= 0.9 * single, "prefix-affine %.3f < 90%% of one daemon's %.3f", affine, single);
    ck_assert_msg(rr < 0.9 * affine, "round robin %.3f not measurably below prefix-affine %.3f", rr, affine);
    for (int i = 0; i < REPLICAS; i++)
        ck_assert_msg(per_replica[i] > 0, "replica %s got no conversation", addr[i]);

    deploy_nginx_stop(&n);
    replicas_down(d, REPLICAS);
}
END_TEST

/* ---- streams ---- */

static const char *const stream_body =
    "{\"prompt\":\"Once upon a time\",\"max_tokens\":12,\"temperature\":0,\"ignore_eos\":true,\"stream\":true}";

START_TEST(streams_through_nginx_arrive_chunk_by_chunk)
{
    /* The daemon's third engine step (the second decode) hangs for 300 ms: the first tokens
     * are out before it, the rest after. Buffered by nginx, they would arrive together. */
    const char *env[] = { "OSPREY_FAULT_STEP=3", "OSPREY_FAULT_HANG_MS=300", NULL };
    struct daemon d;
    struct deploy_nginx n;
    struct deploy_stream s;
    struct deploy_answer r;
    double ttft[2];
    char addr[64];

    ck_assert_int_eq(daemon_start_env(&d, replica_args, env), 0);
    deploy_nginx_start(&n, &d.port, 1, FAIL_TIMEOUT_S);
    addr_of(&d, addr, sizeof addr);

    deploy_stream_open(&s, n.port, "/v1/completions", NULL, stream_body);
    ck_assert(deploy_stream_first(&s, 30));
    deploy_stream_finish(&s, 30, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.upstream, addr);
    ck_assert(r.a.stream_done && r.a.stream_clean);
    ck_assert_str_eq(r.a.finish[0], "length");
    printf("a stream of 12 tokens through nginx (a 300 ms pause after the second): %d reads with "
           "events, %d events before the read with [DONE]\n", s.reads_with_events, s.events_before_done);
    ck_assert_msg(s.reads_with_events >= 2 && s.events_before_done >= 1,
                  "the stream came in %d read(s), %d event(s) before [DONE]: held back by nginx",
                  s.reads_with_events, s.events_before_done);
    deploy_answer_fini(&r);

    /* Time to first token, the pause spent: through nginx and straight to the daemon. */
    for (int i = 0; i < 2; i++) {
        deploy_stream_open(&s, i ? d.port : n.port, "/v1/completions", NULL, stream_body);
        ck_assert(deploy_stream_first(&s, 30));
        ttft[i] = s.first_event_s - s.sent_s;
        deploy_stream_finish(&s, 30, &r);
        ck_assert(r.status == 200 && r.a.stream_done);
        if (i)                   /* what tells any nginx in front not to buffer it */
            ck_assert_str_eq(r.accel_buffering, "no");
        deploy_answer_fini(&r);
    }
    printf("time to first token: %.2f ms through nginx, %.2f ms direct\n", 1e3 * ttft[0], 1e3 * ttft[1]);

    deploy_nginx_stop(&n);
    it_down(&d);
}
END_TEST

/* ---- restarts and failures under load ---- */

/* Non-streamed requests, one every 5 ms or so per loader until stop, each with a prompt of its own. */
struct load {
    int port, index;
    atomic_int *stop;
    int sent, failed;
    char failure[200];
};

static void *load_main(void *p)
{
    struct load *x = p;
    uint64_t seed = 77 + (uint64_t)x->index;

    while (!atomic_load(x->stop)) {
        char body[256];
        struct deploy_answer r;

        snprintf(body, sizeof body, "{\"prompt\":\"load %d %s %s %d\",\"max_tokens\":4,\"temperature\":0}",
                 x->index, words[stress_below(&seed, 32)], words[stress_below(&seed, 32)], x->sent);
        deploy_call(x->port, "/v1/completions", NULL, body, &r);
        x->sent++;
        if (r.status != 200 && !x->failed++)
            snprintf(x->failure, sizeof x->failure, "%d from %s", r.status, r.upstream);
        deploy_answer_fini(&r);
        usleep(5000);            /* steady, not flat out: the machine is shared */
    }
    return NULL;
}

enum { LOADERS = 2, STREAMS = 2 };

struct load_run {
    struct load x[LOADERS];
    pthread_t t[LOADERS];
    atomic_int stop;
};

static void load_start(struct load_run *l, int port)
{
    memset(l, 0, sizeof *l);
    for (int i = 0; i < LOADERS; i++) {
        l->x[i] = (struct load){ .port = port, .index = i, .stop = &l->stop };
        ck_assert_int_eq(pthread_create(&l->t[i], NULL, load_main, &l->x[i]), 0);
    }
}

/* Stops the load; returns the requests sent, *failed the failures (first one in failure). */
static int load_stop(struct load_run *l, int *failed, char *failure, size_t cap)
{
    int sent = 0;

    atomic_store(&l->stop, 1);
    *failed = 0;
    failure[0] = 0;
    for (int i = 0; i < LOADERS; i++) {
        pthread_join(l->t[i], NULL);
        sent += l->x[i].sent;
        if (l->x[i].failed && !*failed)
            snprintf(failure, cap, "%s", l->x[i].failure);
        *failed += l->x[i].failed;
    }
    return sent;
}

/* A session id that nginx sends to replica addr (found by asking). */
static void session_for(const struct deploy_nginx *n, const char *addr, int nth, char *id, size_t cap)
{
    int found = 0;

    for (int s = 0; s < 400; s++) {
        char headers[128];
        struct deploy_answer r;
        bool hit;

        snprintf(id, cap, "session-%d", s);
        snprintf(headers, sizeof headers, "X-Session-Id: %s\r\n", id);
        deploy_call(n->port, "/v1/completions", headers, "{\"prompt\":\"probe\",\"max_tokens\":1}", &r);
        hit = r.status == 200 && !strcmp(r.upstream, addr);
        deploy_answer_fini(&r);
        if (hit && found++ == nth)
            return;
    }
    ck_abort_msg("no session id among 400 goes to %s", addr);
}

/* Waits (at most 30 s) until nginx sends session id's requests to addr again. */
static void wait_rejoined(const struct deploy_nginx *n, const char *id, const char *addr)
{
    char headers[128];

    snprintf(headers, sizeof headers, "X-Session-Id: %s\r\n", id);
    for (double end = stress_now() + 30; stress_now() < end; usleep(100000)) {
        struct deploy_answer r;
        bool back;

        deploy_call(n->port, "/v1/completions", headers, "{\"prompt\":\"probe\",\"max_tokens\":1}", &r);
        back = r.status == 200 && !strcmp(r.upstream, addr);
        deploy_answer_fini(&r);
        if (back)
            return;
    }
    ck_abort_msg("nginx did not send requests to %s again within 30 s", addr);
}

/* A long greedy stream pinned to a replica by its session id. */
struct pinned_stream {
    int port;
    char session[64];
    atomic_int started;
    struct deploy_stream s;
    struct deploy_answer r;
    pthread_t t;
};

static const char *const long_body =
    "{\"prompt\":\"Once upon a time\",\"max_tokens\":600,\"temperature\":0,\"ignore_eos\":true,\"stream\":true}";

static void *pinned_main(void *p)
{
    struct pinned_stream *x = p;
    char headers[128];

    snprintf(headers, sizeof headers, "X-Session-Id: %s\r\n", x->session);
    deploy_stream_open(&x->s, x->port, "/v1/completions", headers, long_body);
    deploy_stream_first(&x->s, 30);
    atomic_store(&x->started, 1);
    deploy_stream_finish(&x->s, 60, &x->r);
    return NULL;
}

static void pinned_start(struct pinned_stream *x, const struct deploy_nginx *n, const char *session)
{
    memset(x, 0, sizeof *x);
    x->port = n->port;
    snprintf(x->session, sizeof x->session, "%s", session);
    ck_assert_int_eq(pthread_create(&x->t, NULL, pinned_main, x), 0);
}

static void pinned_wait_started(struct pinned_stream *x, int num)
{
    for (int i = 0; i < num; i++) {
        for (double end = stress_now() + 30; !atomic_load(&x[i].started) && stress_now() < end;)
            usleep(1000);
        ck_assert_msg(atomic_load(&x[i].started) && x[i].s.first_event_s > 0, "stream %d never started", i);
    }
}

/* The same request not streamed, pinned to a replica by its session id. */
struct pinned_plain {
    int port;
    char session[64];
    struct deploy_answer r;
    pthread_t t;
};

static const char *const long_plain_body =
    "{\"prompt\":\"Once upon a time\",\"max_tokens\":600,\"temperature\":0,\"ignore_eos\":true}";

static void *plain_main(void *p)
{
    struct pinned_plain *x = p;
    char headers[128];

    snprintf(headers, sizeof headers, "X-Session-Id: %s\r\n", x->session);
    deploy_call(x->port, "/v1/completions", headers, long_plain_body, &x->r);
    return NULL;
}

/* The greedy text of long_body, asked of a replica alone and not streamed. */
static char *long_text(const struct daemon *d)
{
    struct deploy_answer r;
    char *text;

    deploy_call(d->port, "/v1/completions", NULL, long_plain_body, &r);
    ck_assert_int_eq(r.status, 200);
    text = r.a.text[0];
    r.a.text[0] = NULL;
    deploy_answer_fini(&r);
    return text;
}

START_TEST(a_rolling_restart_under_load_fails_no_request_and_drained_streams_finish)
{
    struct daemon d[REPLICAS];
    struct deploy_nginx n;
    struct load_run l;
    int ports[REPLICAS], sent, failed, streams = 0;
    char addr[REPLICAS][64], session[REPLICAS][STREAMS][64], failure[200], *want;

    replicas_up(d, REPLICAS);
    for (int i = 0; i < REPLICAS; i++) {
        ports[i] = d[i].port;
        addr_of(&d[i], addr[i], sizeof addr[i]);
    }
    deploy_nginx_start(&n, ports, REPLICAS, FAIL_TIMEOUT_S);
    want = long_text(&d[0]);
    for (int i = 0; i < REPLICAS; i++)
        for (int k = 0; k < STREAMS; k++)
            session_for(&n, addr[i], k, session[i][k], sizeof session[i][k]);

    load_start(&l, n.port);
    for (int i = 0; i < REPLICAS; i++) {
        struct pinned_stream x[STREAMS];
        double signal_s;
        int status;

        /* Streams in flight on replica i when it is told to stop. */
        for (int k = 0; k < STREAMS; k++)
            pinned_start(&x[k], &n, session[i][k]);
        pinned_wait_started(x, STREAMS);
        signal_s = stress_now();
        status = daemon_stop(&d[i], SIGTERM, 30);
        ck_assert_msg(status == 0, "replica %s exited %d after SIGTERM", addr[i], status);
        for (int k = 0; k < STREAMS; k++) {
            pthread_join(x[k].t, NULL);
            ck_assert_msg(x[k].r.status == 200, "stream on %s: %d", addr[i], x[k].r.status);
            ck_assert_str_eq(x[k].r.upstream, addr[i]);
            ck_assert_msg(x[k].s.done_s > signal_s, "stream %d on %s ended before the signal: not drained",
                          k, addr[i]);
            ck_assert(x[k].r.a.stream_done && x[k].r.a.stream_clean);
            ck_assert_str_eq(x[k].r.a.finish[0], "length");
            ck_assert_str_eq(x[k].r.a.text[0], want);
            deploy_answer_fini(&x[k].r);
            streams++;
        }
        /* Back on the same port, then back in nginx's rotation before the next one goes. */
        replica_restart(&d[i]);
        wait_rejoined(&n, session[i][0], addr[i]);
    }
    sent = load_stop(&l, &failed, failure, sizeof failure);
    printf("rolling restart of %d replicas under load: %d non-streamed requests, %d failed; %d "
           "streams drained with their full text\n", REPLICAS, sent, failed, streams);
    ck_assert_msg(failed == 0, "%d of %d requests failed during the rolling restart (first: %s)", failed,
                  sent, failure);
    ck_assert_int_gt(sent, 0);
    free(want);
    deploy_nginx_stop(&n);
    replicas_down(d, REPLICAS);
}
END_TEST

START_TEST(a_killed_replica_fails_only_its_streams_and_serves_again_after_a_restart)
{
    struct daemon d[REPLICAS];
    struct deploy_nginx n;
    struct load_run l;
    struct pinned_stream x[STREAMS + 1];
    struct pinned_plain y[STREAMS];
    int ports[REPLICAS], sent, failed, tried_dead = 0;
    char addr[REPLICAS][64], session[STREAMS + 1][64], failure[200], *want, line[128];
    const int dead = 1;

    replicas_up(d, REPLICAS);
    for (int i = 0; i < REPLICAS; i++) {
        ports[i] = d[i].port;
        addr_of(&d[i], addr[i], sizeof addr[i]);
    }
    deploy_nginx_start(&n, ports, REPLICAS, FAIL_TIMEOUT_S);
    want = long_text(&d[0]);
    for (int k = 0; k < STREAMS; k++)
        session_for(&n, addr[dead], k, session[k], sizeof session[k]);
    session_for(&n, addr[0], 0, session[STREAMS], sizeof session[STREAMS]);   /* a bystander */

    load_start(&l, n.port);
    for (int k = 0; k <= STREAMS; k++)
        pinned_start(&x[k], &n, session[k]);
    for (int k = 0; k < STREAMS; k++) {
        y[k] = (struct pinned_plain){ .port = n.port };
        snprintf(y[k].session, sizeof y[k].session, "%.63s", session[k]);
        ck_assert_int_eq(pthread_create(&y[k].t, NULL, plain_main, &y[k]), 0);
    }
    pinned_wait_started(x, STREAMS + 1);
    /* The non-streamed ones running there too (the load's come and go in a millisecond). */
    for (double end = stress_now() + 30;
         it_metric(&d[dead], "osprey_requests_running") < 2 * STREAMS && stress_now() < end;)
        usleep(1000);
    ck_assert_int_eq(daemon_stop(&d[dead], SIGKILL, 10), 128 + SIGKILL);
    for (int k = 0; k <= STREAMS; k++)
        pthread_join(x[k].t, NULL);
    for (int k = 0; k < STREAMS; k++)
        pthread_join(y[k].t, NULL);
    /* Requests after the kill: every one answered, none by the dead replica. */
    for (int i = 0; i < 20; i++) {
        char headers[128];
        struct deploy_answer r;

        snprintf(headers, sizeof headers, "X-Session-Id: %s\r\n", session[i % STREAMS]);
        deploy_call(n.port, "/v1/completions", headers, "{\"prompt\":\"after\",\"max_tokens\":1}", &r);
        ck_assert_msg(r.status == 200, "a request after the kill: %d via %s", r.status, r.upstream);
        ck_assert_str_ne(answered_by(r.upstream), addr[dead]);
        tried_dead += strstr(r.upstream, addr[dead]) != NULL;
        deploy_answer_fini(&r);
    }
    sent = load_stop(&l, &failed, failure, sizeof failure);

    /* Its streams were cut: they had begun, nginx cannot send them elsewhere. */
    for (int k = 0; k < STREAMS; k++) {
        ck_assert_str_eq(x[k].r.upstream, addr[dead]);
        ck_assert_msg(!x[k].r.a.stream_done, "stream %d on the killed replica ended with [DONE]", k);
        deploy_answer_fini(&x[k].r);
    }
    /* The bystander and every non-streamed request went through (those in flight on the
     * killed replica were sent to another: nothing of them had reached their client). */
    ck_assert_int_eq(x[STREAMS].r.status, 200);
    ck_assert_str_eq(x[STREAMS].r.upstream, addr[0]);
    ck_assert(x[STREAMS].r.a.stream_done);
    ck_assert_str_eq(x[STREAMS].r.a.text[0], want);
    deploy_answer_fini(&x[STREAMS].r);
    ck_assert_msg(failed == 0, "%d of %d non-streamed requests failed (first: %s)", failed, sent, failure);
    for (int k = 0; k < STREAMS; k++) {
        char first[80];

        snprintf(first, sizeof first, "%s, ", addr[dead]);
        ck_assert_msg(y[k].r.status == 200, "non-streamed request %d: %d via %s", k, y[k].r.status,
                      y[k].r.upstream);
        ck_assert_msg(!strncmp(y[k].r.upstream, first, strlen(first)), "non-streamed request %d went "
                      "%s, not to the killed replica first", k, y[k].r.upstream);
        ck_assert_str_eq(y[k].r.a.text[0], want);
        deploy_answer_fini(&y[k].r);
    }
    /* nginx took it out: a failed connection and the "temporarily disabled" that max_fails=1
     * brings, in its error log. */
    snprintf(line, sizeof line, "upstream: \"http://%s", addr[dead]);
    ck_assert(deploy_nginx_log_has(&n, line));
    ck_assert(deploy_nginx_log_has(&n, "upstream server temporarily disabled"));
    printf("SIGKILL of one of %d replicas under load: %d non-streamed requests, %d failed; its %d "
           "streams cut, its %d non-streamed requests answered whole by another, the bystander stream "
           "whole; %d of 20 requests after it tried it first\n", REPLICAS, sent, failed, STREAMS, STREAMS,
           tried_dead);

    replica_restart(&d[dead]);
    wait_rejoined(&n, session[0], addr[dead]);
    free(want);
    deploy_nginx_stop(&n);
    replicas_down(d, REPLICAS);
}
END_TEST

/* ---- requests without a key, and no replica at all ---- */

/* Counts the answer r in seen[i] when replica i gave it. */
static void count_replica(const struct hc_response *r, const struct daemon *d, int num, int *seen)
{
    char up[128] = "", addr[64];

    hc_header(r, "X-Osprey-Upstream", up, sizeof up);
    for (int k = 0; k < num; k++) {
        addr_of(&d[k], addr, sizeof addr);
        seen[k] += !strcmp(up, addr);
    }
}

START_TEST(keyless_requests_go_to_the_least_conn_pool_and_no_replica_is_a_json_503)
{
    struct daemon d[2];
    struct deploy_nginx n;
    struct hc_response r;
    char pool[64] = "";
    int ports[2], seen[2] = { 0 };
    cJSON *j;

    replicas_up(d, 2);
    for (int i = 0; i < 2; i++)
        ports[i] = d[i].port;
    deploy_nginx_start(&n, ports, 2, FAIL_TIMEOUT_S);
    /* No body, or a body that is not JSON: no key, the least_conn pool, each replica in
     * turn while they are equally idle. A prompt or a session id: the consistent-hash pool. */
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(hc_request(n.port, "GET", "/v1/models", NULL, NULL, &r, 30), 0);
        ck_assert_int_eq(r.status, 200);
        ck_assert_str_eq(hc_header(&r, "X-Osprey-Pool", pool, sizeof pool) ? pool : "", "osprey_least_conn");
        count_replica(&r, d, 2, seen);
        hc_response_fini(&r);
        ck_assert_int_eq(hc_request(n.port, "POST", "/v1/completions", NULL, "not json", &r, 30), 0);
        ck_assert_int_eq(r.status, 400);
        ck_assert_str_eq(hc_header(&r, "X-Osprey-Pool", pool, sizeof pool) ? pool : "", "osprey_least_conn");
        count_replica(&r, d, 2, seen);
        hc_response_fini(&r);
    }
    ck_assert_msg(seen[0] > 0 && seen[1] > 0, "keyless requests: %d and %d per replica", seen[0], seen[1]);
    ck_assert_int_eq(hc_request(n.port, "POST", "/v1/completions", NULL, "{\"prompt\":\"x\",\"max_tokens\":1}",
                                &r, 30), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(hc_header(&r, "X-Osprey-Pool", pool, sizeof pool) ? pool : "", "osprey_affine");
    hc_response_fini(&r);
    ck_assert_int_eq(hc_request(n.port, "GET", "/v1/models", "X-Session-Id: s1\r\n", NULL, &r, 30), 0);
    ck_assert_str_eq(hc_header(&r, "X-Osprey-Pool", pool, sizeof pool) ? pool : "", "osprey_affine");
    hc_response_fini(&r);

    /* /metrics is per replica: not through nginx. */
    ck_assert_int_eq(hc_request(n.port, "GET", "/metrics", NULL, NULL, &r, 30), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_ptr_nonnull(j = cJSON_Parse(r.body));
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code")->valuestring, "not_found");
    cJSON_Delete(j);
    hc_response_fini(&r);

    /* Every replica gone: an OpenAI error object, not nginx's HTML page. */
    replicas_down(d, 2);
    ck_assert_int_eq(hc_request(n.port, "POST", "/v1/completions", NULL, "{\"prompt\":\"x\"}", &r, 30), 0);
    ck_assert_int_eq(r.status, 503);
    ck_assert_ptr_nonnull(j = cJSON_Parse(r.body));
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code")->valuestring, "no_replica");
    cJSON_Delete(j);
    hc_response_fini(&r);
    deploy_nginx_stop(&n);
}
END_TEST

Suite *deploy_nginx_suite(void)
{
    const struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        { "affinity", prefix_affine_routing_keeps_one_daemons_prefix_cache_hit_rate_and_round_robin_does_not },
        { "streams", streams_through_nginx_arrive_chunk_by_chunk },
        { "rolling_restart", a_rolling_restart_under_load_fails_no_request_and_drained_streams_finish },
        { "sigkill", a_killed_replica_fails_only_its_streams_and_serves_again_after_a_restart },
        { "keyless", keyless_requests_go_to_the_least_conn_pool_and_no_replica_is_a_json_503 },
    };
    Suite *s = suite_create("deploy_nginx");

    /* One case each, so that CK_RUN_CASE picks one. */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);

        tcase_set_timeout(tc, 240);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

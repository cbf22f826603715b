/* test_http.c — the HTTP layer on its own, with test routes instead of the engine: routing
 * (404, 405 with Allow), CORS preflights, the API key, body limits (413 before the body is
 * sent), draining (503), deferred answers woken from another thread, streams, a client that
 * leaves while its request waits, a client that sends too slowly, and stopping with a request
 * still waiting. Expectations come from RFC 9110 and OpenAI's error shape. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/base/util.h"
#include "server/http.h"
#include "tests/integration/http_client.h"

/* ---- a job driven by a thread of its own, standing in for the engine ---- */

struct job {
    struct http_request *r;
    pthread_mutex_t lock;
    int events;              /* produced so far */
    int sent;                /* read so far */
    int total;               /* events to produce; 0: never finishes by itself */
    bool done;
};

static atomic_int closed_calls, freed_jobs;

static void job_resume(void *p, struct http_request *r)
{
    struct job *j = p;
    bool done;

    pthread_mutex_lock(&j->lock);
    done = j->done;
    pthread_mutex_unlock(&j->lock);
    if (done)
        http_respond(r, 200, "text/plain", strdup("done"), 4);
}

static ssize_t job_read(void *p, char *buf, size_t max)
{
    struct job *j = p;
    ssize_t n = 0;

    pthread_mutex_lock(&j->lock);
    if (j->sent < j->events)
        n = snprintf(buf, max, "data: %d\n\n", j->sent++);
    else if (j->done)
        n = HTTP_STREAM_END;
    pthread_mutex_unlock(&j->lock);
    return n;
}

static void job_closed(void *p)
{
    struct job *j = p;

    atomic_fetch_add(&closed_calls, 1);
    /* As the engine would: the abort finishes the work, and the job wakes the connection. */
    pthread_mutex_lock(&j->lock);
    j->done = true;
    pthread_mutex_unlock(&j->lock);
    http_wake(j->r);
}

static void job_free(void *p)
{
    struct job *j = p;

    pthread_mutex_destroy(&j->lock);
    free(j);
    atomic_fetch_add(&freed_jobs, 1);
}

static const struct http_job_ops job_ops = { job_resume, job_read, job_closed, job_free };

/* Produces j->total events 20 ms apart, waking the connection after each. */
static void *producer(void *p)
{
    struct job *j = p;

    for (int i = 0; i < j->total; i++) {
        usleep(20000);
        pthread_mutex_lock(&j->lock);
        j->events++;
        j->done = j->events == j->total;
        pthread_mutex_unlock(&j->lock);
        http_wake(j->r);
    }
    http_unref(j->r);
    return NULL;
}

static struct job *job_new(struct http_request *r, int total)
{
    struct job *j = calloc(1, sizeof *j);

    j->r = r;
    j->total = total;
    pthread_mutex_init(&j->lock, NULL);
    if (total) {
        pthread_t t;

        http_ref(r);                 /* the producer's */
        pthread_create(&t, NULL, producer, j);
        pthread_detach(t);
    }
    return j;
}

/* ---- routes ---- */

static void h_hello(struct http_request *r, void *app)
{
    size_t len;
    const char *body = http_request_body(r, &len);
    char *out = malloc(len + 16);
    int n = snprintf(out, len + 16, "hello %zu", len);

    (void)app;
    (void)body;
    http_respond(r, 200, "text/plain", out, (size_t)n);
}

static void h_deferred(struct http_request *r, void *app)
{
    (void)app;
    http_defer(r, &job_ops, job_new(r, 3));
}

static void h_forever(struct http_request *r, void *app)
{
    (void)app;
    http_defer(r, &job_ops, job_new(r, 0));
}

static void h_stream(struct http_request *r, void *app)
{
    (void)app;
    http_stream(r, &job_ops, job_new(r, 5));
}

static void h_busy(struct http_request *r, void *app)
{
    (void)app;
    http_add_header(r, "Retry-After", "1");
    http_respond(r, 503, "application/json", strdup("{}"), 2);
}

/* A handler held on its worker until the test lets it go (held_release): the client can
 * leave while the connection is suspended for the worker, before any answer is queued. */
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t held_cond = PTHREAD_COND_INITIALIZER;
static bool held_in, held_go;

static void hold(void)
{
    pthread_mutex_lock(&held_lock);
    held_in = true;
    pthread_cond_broadcast(&held_cond);
    while (!held_go)
        pthread_cond_wait(&held_cond, &held_lock);
    pthread_mutex_unlock(&held_lock);
}

static void held_wait_in(void)
{
    pthread_mutex_lock(&held_lock);
    while (!held_in)
        pthread_cond_wait(&held_cond, &held_lock);
    pthread_mutex_unlock(&held_lock);
}

static void held_release(void)
{
    pthread_mutex_lock(&held_lock);
    held_go = true;
    pthread_cond_broadcast(&held_cond);
    pthread_mutex_unlock(&held_lock);
}

static void h_held_stream(struct http_request *r, void *app)
{
    (void)app;
    hold();
    http_stream(r, &job_ops, job_new(r, 0));
}

static void h_held_deferred(struct http_request *r, void *app)
{
    (void)app;
    hold();
    http_defer(r, &job_ops, job_new(r, 0));
}

static void h_held_answer(struct http_request *r, void *app)
{
    (void)app;
    hold();
    http_respond(r, 200, "text/plain", strdup("late"), 4);
}

static const struct http_route routes[] = {
    { "/hello", "POST", HTTP_NEEDS_KEY, h_hello },
    { "/health", "GET", HTTP_PUBLIC, h_hello },
    { "/metrics", "GET", HTTP_METRICS_ACCESS, h_hello },
    { "/deferred", "POST", HTTP_NEEDS_KEY, h_deferred },
    { "/forever", "POST", HTTP_NEEDS_KEY, h_forever },
    { "/stream", "POST", HTTP_NEEDS_KEY, h_stream },
    { "/busy", "GET", HTTP_NEEDS_KEY, h_busy },
    { "/held-stream", "POST", HTTP_NEEDS_KEY, h_held_stream },
    { "/held-deferred", "POST", HTTP_NEEDS_KEY, h_held_deferred },
    { "/held-answer", "POST", HTTP_NEEDS_KEY, h_held_answer },
};

static struct http_server *srv;
static int port;

static int max_connections = 16;
static int num_threads = 2;

static void start(const char *key, const char *origins, double request_timeout_s)
{
    static char a[] = "https://a.example", b[] = "https://b.example", star[] = "*";
    static char *two[] = { a, b }, *any[] = { star };
    struct http_options o = {
        .host = "127.0.0.1", .port = 0, .num_threads = num_threads, .max_connections = max_connections,
        .max_body_bytes = 1000, .request_timeout_s = request_timeout_s, .idle_timeout_s = 5,
        .api_key = key, .metrics_require_key = false,
        .cors_origins = !origins ? NULL : !strcmp(origins, "*") ? any : two,
        .num_cors_origins = !origins ? 0 : !strcmp(origins, "*") ? 1 : 2,
        .routes = routes, .num_routes = (int)ARRAY_LEN(routes),
    };
    char err[ERR_LEN];

    atomic_store(&closed_calls, 0);
    atomic_store(&freed_jobs, 0);
    ck_assert_msg(http_server_start(&srv, &o, err) == 0, "%s", err);
    port = http_server_port(srv);
    ck_assert_int_gt(port, 0);
}

static void stop(void)
{
    http_server_stop(srv);
    srv = NULL;
}

static struct hc_response get(const char *method, const char *path, const char *headers, const char *body)
{
    struct hc_response r;

    hc_request(port, method, path, headers, body, &r, 5);
    return r;
}

static int hc_send_str(int fd, const char *s)
{
    return hc_send(fd, s, strlen(s));
}

static void wait_for(atomic_int *v, int want, double timeout_s)
{
    for (double t = 0; t < timeout_s && atomic_load(v) < want; t += 0.01)
        usleep(10000);
    ck_assert_int_ge(atomic_load(v), want);
}

START_TEST(a_route_answers_with_its_handler)
{
    struct hc_response r;

    start(NULL, NULL, 0);
    r = get("POST", "/hello", NULL, "{\"a\":1}");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "hello 7");
    hc_response_fini(&r);
    stop();
}
END_TEST

START_TEST(unknown_route_is_404_with_an_openai_error)
{
    struct hc_response r;

    start(NULL, NULL, 0);
    r = get("GET", "/v1/nothing", NULL, NULL);
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(r.body, "{\"error\":{\"message\":\"Not found: /v1/nothing\",\"type\":"
                             "\"invalid_request_error\",\"param\":null,\"code\":\"not_found\"}}");
    hc_response_fini(&r);
    stop();
}
END_TEST

START_TEST(wrong_method_is_405_with_allow)
{
    struct hc_response r;
    char v[64];

    start(NULL, NULL, 0);
    r = get("GET", "/hello", NULL, NULL);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(hc_header(&r, "Allow", v, sizeof v), "POST, OPTIONS");
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"method_not_allowed\""));
    hc_response_fini(&r);
    r = get("DELETE", "/health", NULL, NULL);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(hc_header(&r, "Allow", v, sizeof v), "GET, HEAD, OPTIONS");
    hc_response_fini(&r);
    r = get("HEAD", "/health", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 0);
    hc_response_fini(&r);
    stop();
}
END_TEST

START_TEST(cors_preflight_names_the_allowed_origin_only)
{
    struct hc_response r;
    char v[64];

    start("sekrit-key-123", "a and b", 0);
    r = get("OPTIONS", "/hello", "Origin: https://b.example\r\nAccess-Control-Request-Method: POST\r\n", NULL);
    ck_assert_int_eq(r.status, 204);           /* no key needed for a preflight */
    ck_assert_str_eq(hc_header(&r, "Access-Control-Allow-Origin", v, sizeof v), "https://b.example");
    ck_assert_str_eq(hc_header(&r, "Access-Control-Allow-Methods", v, sizeof v), "POST, OPTIONS");
    ck_assert_ptr_nonnull(strstr(hc_header(&r, "Access-Control-Allow-Headers", v, sizeof v), "Authorization"));
    hc_response_fini(&r);
    r = get("OPTIONS", "/hello", "Origin: https://evil.example\r\n", NULL);
    ck_assert_int_eq(r.status, 204);
    ck_assert_ptr_null(hc_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    hc_response_fini(&r);
    /* Actual responses carry it too. */
    r = get("GET", "/health", "Origin: https://a.example\r\n", NULL);
    ck_assert_str_eq(hc_header(&r, "Access-Control-Allow-Origin", v, sizeof v), "https://a.example");
    hc_response_fini(&r);
    stop();
}
END_TEST

START_TEST(cors_preflight_allows_the_headers_the_page_asks_for)
{
    /* What a browser sends before the official openai-node client's first call. */
    static const char asked[] = "authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,"
                                "x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,"
                                "x-stainless-runtime-version,x-stainless-timeout";
    struct hc_response r;
    char h[1024], v[1024];

    start("sekrit-key-123", "a and b", 0);
    snprintf(h, sizeof h, "Origin: https://a.example\r\nAccess-Control-Request-Method: POST\r\n"
             "Access-Control-Request-Headers: %s\r\n", asked);
    r = get("OPTIONS", "/hello", h, NULL);
    ck_assert_int_eq(r.status, 204);
    ck_assert_str_eq(hc_header(&r, "Access-Control-Allow-Headers", v, sizeof v), asked);
    ck_assert_str_eq(hc_header(&r, "Access-Control-Allow-Origin", v, sizeof v), "https://a.example");
    hc_response_fini(&r);
    /* Blanks after the commas are a list too. */
    r = get("OPTIONS", "/hello", "Origin: https://a.example\r\nAccess-Control-Request-Headers: Authorization, X-Custom\r\n",
            NULL);
    ck_assert_int_eq(r.status, 204);
    ck_assert_str_eq(hc_header(&r, "Access-Control-Allow-Headers", v, sizeof v), "Authorization, X-Custom");
    hc_response_fini(&r);
    /* Not a list of names: refused, never echoed. */
    r = get("OPTIONS", "/hello", "Origin: https://a.example\r\nAccess-Control-Request-Headers: x-a, x b\r\n", NULL);
    ck_assert_int_eq(r.status, 400);
    ck_assert_ptr_null(hc_header(&r, "Access-Control-Allow-Headers", v, sizeof v));
    hc_response_fini(&r);
    r = get("OPTIONS", "/hello", "Origin: https://a.example\r\nAccess-Control-Request-Headers: x-a,,x-b\r\n", NULL);
    ck_assert_int_eq(r.status, 400);
    hc_response_fini(&r);
    stop();
}
END_TEST

START_TEST(any_origin_is_a_star)
{
    struct hc_response r;
    char v[64];

    start(NULL, "*", 0);
    r = get("GET", "/health", "Origin: http://x\r\n", NULL);
    ck_assert_str_eq(hc_header(&r, "Access-Control-Allow-Origin", v, sizeof v), "*");
    hc_response_fini(&r);
    stop();
}
END_TEST

START_TEST(api_key_is_required_except_on_public_routes)
{
    struct hc_response r;
    char v[64];

    start("sekrit-key-123", NULL, 0);
    r = get("POST", "/hello", NULL, "{}");
    ck_assert_int_eq(r.status, 401);
    ck_assert_str_eq(hc_header(&r, "WWW-Authenticate", v, sizeof v), "Bearer");
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"invalid_api_key\""));
    ck_assert_ptr_null(strstr(r.body, "sekrit"));
    hc_response_fini(&r);
    r = get("POST", "/hello", "Authorization: Bearer sekrit-key-12\r\n", "{}");
    ck_assert_int_eq(r.status, 401);
    hc_response_fini(&r);
    r = get("POST", "/hello", "Authorization: Bearer sekrit-key-123\r\n", "{}");
    ck_assert_int_eq(r.status, 200);
    hc_response_fini(&r);
    r = get("GET", "/health", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    hc_response_fini(&r);
    r = get("GET", "/metrics", NULL, NULL);    /* metrics_require_key is false here */
    ck_assert_int_eq(r.status, 200);
    hc_response_fini(&r);
    stop();
}
END_TEST

START_TEST(content_length_over_the_limit_is_413_before_the_body)
{
    int fd, closed;
    size_t len;
    char *resp;

    start(NULL, NULL, 0);
    fd = hc_connect(port);
    ck_assert_int_ge(fd, 0);
    /* Headers only: the server must answer without waiting for the 5000 bytes announced. */
    ck_assert_int_eq(hc_send_str(fd, "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"), 0);
    resp = hc_read_all(fd, 2, &len, &closed);
    ck_assert_ptr_nonnull(strstr(resp, "HTTP/1.1 413"));
    ck_assert_ptr_nonnull(strstr(resp, "\"code\":\"request_too_large\""));
    free(resp);
    close(fd);
    stop();
}
END_TEST

START_TEST(chunked_body_over_the_limit_is_413)
{
    int fd, closed;
    size_t len;
    char *resp, chunk[700];

    start(NULL, NULL, 0);
    memset(chunk, 'x', sizeof chunk);
    fd = hc_connect(port);
    hc_send_str(fd, "POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for (int i = 0; i < 2; i++) {
        hc_send_str(fd, "2bc\r\n");
        hc_send(fd, chunk, sizeof chunk);
        hc_send_str(fd, "\r\n");
    }
    hc_send_str(fd, "0\r\n\r\n");
    resp = hc_read_all(fd, 2, &len, &closed);
    ck_assert_ptr_nonnull(strstr(resp, "HTTP/1.1 413"));
    free(resp);
    close(fd);
    stop();
}
END_TEST

START_TEST(a_draining_server_answers_503)
{
    struct hc_response r;

    start(NULL, NULL, 0);
    http_server_drain(srv);
    r = get("POST", "/hello", NULL, "{}");
    ck_assert_int_eq(r.status, 503);
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"shutting_down\""));
    hc_response_fini(&r);
    stop();
}
END_TEST

START_TEST(handler_headers_reach_the_client)
{
    struct hc_response r;
    char v[16];

    start(NULL, NULL, 0);
    r = get("GET", "/busy", NULL, NULL);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(hc_header(&r, "Retry-After", v, sizeof v), "1");
    hc_response_fini(&r);
    stop();
}
END_TEST

START_TEST(a_deferred_answer_comes_once_the_job_wakes_it)
{
    struct hc_response r;

    start(NULL, NULL, 0);
    r = get("POST", "/deferred", NULL, "{}");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "done");
    hc_response_fini(&r);
    wait_for(&freed_jobs, 1, 2);
    ck_assert_int_eq(atomic_load(&closed_calls), 1);   /* told once, at completion */
    stop();
}
END_TEST

START_TEST(a_stream_delivers_every_event_then_ends)
{
    struct hc_response r;
    char v[32];

    start(NULL, NULL, 0);
    r = get("POST", "/stream", NULL, "{}");
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(hc_header(&r, "Content-Type", v, sizeof v), "text/event-stream");
    ck_assert_str_eq(r.body, "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n");
    hc_response_fini(&r);
    wait_for(&freed_jobs, 1, 2);
    stop();
}
END_TEST

START_TEST(many_concurrent_streams_all_complete)
{
    enum { N = 8 };
    int fds[N], closed;
    size_t len;

    start(NULL, NULL, 0);
    for (int i = 0; i < N; i++) {
        fds[i] = hc_connect(port);
        hc_send_str(fds[i], "POST /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    }
    for (int i = 0; i < N; i++) {
        char *resp = hc_read_all(fds[i], 5, &len, &closed);

        ck_assert(closed);
        ck_assert_ptr_nonnull(strstr(resp, "data: 4\n\n"));
        free(resp);
        close(fds[i]);
    }
    wait_for(&freed_jobs, N, 2);
    stop();
}
END_TEST

/* A server with one request that waits for ever (until its client leaves or the server
 * stops); returns the client's socket. */
static int start_forever(void)
{
    int fd;

    start(NULL, NULL, 0);
    fd = hc_connect(port);
    hc_send_str(fd, "POST /forever HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
    usleep(200000);
    return fd;
}

START_TEST(a_client_leaving_a_waiting_request_stops_its_job)
{
    int fd;

    fd = start_forever();
    ck_assert_int_eq(atomic_load(&closed_calls), 0);
    close(fd);
    wait_for(&closed_calls, 1, 2);             /* the watcher noticed */
    wait_for(&freed_jobs, 1, 2);               /* and everything was released */
    ck_assert_int_eq(http_server_active(srv), 0);
    stop();
}
END_TEST

/* The disconnect storm's leak, forced: the client leaves (a reset, or a close) while a
 * worker still runs the handler, its connection suspended with nothing queued. On resume
 * MHD reads the socket before it calls the access handler again, provided the connection
 * is not the oldest of its thread (then its timeout pass would call the handler first): an
 * idle connection opened before makes sure, on a server of one MHD thread. MHD then closes
 * the connection and the worker's captured answer — a stream whose response holds a
 * reference on the request, a deferred job, a plain answer — is never queued. Everything
 * must still be released, the job closed and freed exactly once. */
START_TEST(a_client_leaving_while_its_handler_runs_leaves_nothing_behind)
{
    static const char *paths[] = { "/held-stream", "/held-deferred", "/held-answer" };
    static const int jobs[] = { 1, 1, 0 };

    num_threads = 1;
    for (int k = 0; k < 2 * (int)ARRAY_LEN(paths); k++) {
        const char *path = paths[k / 2];
        int want = jobs[k / 2], idle, fd;
        bool rst = k % 2 == 0;
        char req[160];

        held_in = held_go = false;
        start(NULL, NULL, 0);
        idle = hc_connect(port);
        usleep(20000);
        fd = hc_connect(port);
        snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", path);
        hc_send_str(fd, req);
        held_wait_in();
        if (rst) {
            struct linger l = { .l_onoff = 1, .l_linger = 0 };

            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        close(fd);
        usleep(50000);                         /* the RST or FIN is in */
        held_release();
        for (int t = 0; t < 200 && (http_server_active(srv) || atomic_load(&freed_jobs) < want); t++)
            usleep(10000);
        ck_assert_msg(http_server_active(srv) == 0, "%s: the request never completed", path);
        ck_assert_msg(atomic_load(&freed_jobs) == want, "%s (%s): %d jobs freed, not %d", path,
                      rst ? "reset" : "closed", atomic_load(&freed_jobs), want);
        ck_assert_int_eq(atomic_load(&closed_calls), want);
        close(idle);
        stop();
        ck_assert_int_eq(atomic_load(&freed_jobs), want);      /* not again at the end */
    }
    num_threads = 2;
}
END_TEST

START_TEST(a_client_sending_too_slowly_is_cut_off)
{
    const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    int fd, cut = 0;

    start(NULL, NULL, 0.3);
    fd = hc_connect(port);
    /* One byte every 100 ms keeps MHD's idle timer happy but passes the 0.3 s deadline. */
    for (size_t i = 0; i < strlen(req) && !cut; i++) {
        cut = hc_send(fd, req + i, 1) != 0;
        usleep(100000);
        if (i > 8) {
            size_t len;
            int closed;
            char *got = hc_read_all(fd, 0.01, &len, &closed);

            cut = cut || closed;
            free(got);
        }
    }
    ck_assert_msg(cut, "a request sent over 3 s was still being read with a 0.3 s deadline");
    close(fd);
    stop();
}
END_TEST

START_TEST(stopping_ends_a_waiting_request_cleanly)
{
    int fd;

    fd = start_forever();
    stop();                                    /* must not trip MHD's suspended-connection panic */
    ck_assert_int_eq(atomic_load(&closed_calls), 1);
    ck_assert_int_eq(atomic_load(&freed_jobs), 1);
    close(fd);
}
END_TEST

START_TEST(connections_past_the_limit_wait_until_one_closes)
{
    int held[2], extra;

    max_connections = 2;
    start(NULL, NULL, 0);
    for (int i = 0; i < 2; i++)
        held[i] = hc_connect(port);
    usleep(100000);
    /* At the limit MHD stops accepting: the kernel holds the third in its backlog. */
    extra = hc_connect(port);
    hc_send_str(extra, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert(!hc_read_until(extra, "HTTP/1.1 200", 0.5));
    close(held[0]);                            /* a slot frees: the waiting one is served */
    ck_assert(hc_read_until(extra, "HTTP/1.1 200", 5));
    close(extra);
    close(held[1]);
    stop();
    max_connections = 16;
}
END_TEST

START_TEST(a_busy_port_is_an_error_naming_it)
{
    struct http_options o = { .host = "127.0.0.1", .num_threads = 1, .max_connections = 4,
                              .max_body_bytes = 10, .routes = routes, .num_routes = 1 };
    struct http_server *other;
    char err[ERR_LEN];

    start(NULL, NULL, 0);
    o.port = port;
    ck_assert_int_lt(http_server_start(&other, &o, err), 0);
    ck_assert_ptr_null(other);
    ck_assert_ptr_nonnull(strstr(err, "127.0.0.1"));
    o.host = "not-a-host.invalid";
    o.port = 0;
    ck_assert_int_lt(http_server_start(&other, &o, err), 0);
    stop();
}
END_TEST

Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("http");

    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, a_route_answers_with_its_handler);
    tcase_add_test(tc, unknown_route_is_404_with_an_openai_error);
    tcase_add_test(tc, wrong_method_is_405_with_allow);
    tcase_add_test(tc, cors_preflight_names_the_allowed_origin_only);
    tcase_add_test(tc, cors_preflight_allows_the_headers_the_page_asks_for);
    tcase_add_test(tc, any_origin_is_a_star);
    tcase_add_test(tc, api_key_is_required_except_on_public_routes);
    tcase_add_test(tc, content_length_over_the_limit_is_413_before_the_body);
    tcase_add_test(tc, chunked_body_over_the_limit_is_413);
    tcase_add_test(tc, a_draining_server_answers_503);
    tcase_add_test(tc, handler_headers_reach_the_client);
    tcase_add_test(tc, a_deferred_answer_comes_once_the_job_wakes_it);
    tcase_add_test(tc, a_stream_delivers_every_event_then_ends);
    tcase_add_test(tc, many_concurrent_streams_all_complete);
    tcase_add_test(tc, a_client_leaving_a_waiting_request_stops_its_job);
    tcase_add_test(tc, a_client_leaving_while_its_handler_runs_leaves_nothing_behind);
    tcase_add_test(tc, a_client_sending_too_slowly_is_cut_off);
    tcase_add_test(tc, stopping_ends_a_waiting_request_cleanly);
    tcase_add_test(tc, connections_past_the_limit_wait_until_one_closes);
    tcase_add_test(tc, a_busy_port_is_an_error_naming_it);
    suite_add_tcase(s, tc);
    return s;
}

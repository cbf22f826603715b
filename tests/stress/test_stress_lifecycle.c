/* test_stress_lifecycle.c — stopping and failing under load. SIGTERM or SIGINT while
 * requests stream: new requests are refused, those in flight (running and waiting) finish
 * with their full greedy text within the grace period, exit 0; past a short grace they end
 * with finish_reason "abort" (streams) or 503 (the rest), exit 0. A failed engine step fails
 * only the requests in that step (500); a device error stops the systemd watchdog
 * heartbeats (read from NOTIFY_SOCKET, a datagram socket of the test's), /health answers
 * 503 and the daemon exits 1; a step that hangs stops them too, until it ends, but a long
 * step that makes progress (a CPU prefill over many layers) does not, and the first
 * heartbeat comes with READY=1. SIGTERM/SIGINT during the model load end it at once;
 * SIGHUP, SIGUSR1, SIGUSR2 and SIGALRM are logged and change nothing. serve, generate and
 * bench read an engine option (a size) alike. */
#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/base/util.h"   /* read_file, MAX */
#include "engine/model/gen_model.h"
#include "tests/stress/stress_util.h"

static struct daemon d;

static const char *const prompts[] = { "Once upon a time", "The quick brown fox" };

static void body_of(char *buf, size_t cap, int p, bool stream, int max_tokens)
{
    snprintf(buf, cap, "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0,\"ignore_eos\":true,\"stream\":%s}",
             prompts[p], max_tokens, stream ? "true" : "false");
}

static int health(void)
{
    struct hc_response r;
    int status;

    hc_request(d.port, "GET", "/health", NULL, NULL, &r, 10);
    status = r.status;
    hc_response_fini(&r);
    return status;
}

/* ---- shutdown under load ---- */

/* Actor 0 sends the signal once every other actor's request is in the engine (running or
 * waiting), then a request that must be refused; the others each send one long greedy
 * request (half of them streamed). */
struct actor {
    int index, sig, max_tokens, inflight;
    const char *want;                /* the request's text alone; NULL: not compared */
    struct stress_answer a;
    double signal_s;
    int late_status;
    char late_code[48];
};

static void *actor_main(void *p)
{
    struct actor *x = p;
    char body[512];

    if (x->index == 0) {
        for (int t = 0; t < 500 && it_metric(&d, "osprey_requests_running") +
                                   it_metric(&d, "osprey_requests_waiting") < x->inflight; t++)
            usleep(10000);
        x->signal_s = stress_now();
        kill(d.pid, x->sig);
        for (int t = 0; t < 500 && health() == 200; t++)      /* the drain has begun */
            usleep(10000);
        body_of(body, sizeof body, 0, false, 4);
        stress_call(d.port, "/v1/completions", body, &x->a);
        x->late_status = x->a.status;
        snprintf(x->late_code, sizeof x->late_code, "%s", x->a.code);
        stress_answer_fini(&x->a);
        return NULL;
    }
    body_of(body, sizeof body, x->index % 2, x->index % 2, x->max_tokens);
    stress_call(d.port, "/v1/completions", body, &x->a);
    return NULL;
}

enum { SEQS = 3, INFLIGHT = 6 };

START_TEST(a_signal_under_load_refuses_new_requests_and_lets_every_one_in_flight_finish)
{
    static const int sigs[] = { SIGTERM, SIGINT };
    static const char *const names[] = { "SIGTERM", "SIGINT" };
    const char *args[] = { "--max-num-seqs", "3", "--shutdown-grace", "20", NULL };

    for (int s = 0; s < 2; s++) {
        struct actor x[INFLIGHT + 1];
        char body[512], *want[2];
        int status;

        it_up(&d, args);
        for (int p = 0; p < 2; p++) {
            body_of(body, sizeof body, p, false, 1000);
            want[p] = stress_solo(&d, "/v1/completions", body);
        }
        for (int i = 0; i <= INFLIGHT; i++)
            x[i] = (struct actor){ .index = i, .sig = sigs[s], .max_tokens = 1000, .inflight = INFLIGHT,
                                   .want = want[i % 2] };
        stress_run(INFLIGHT + 1, actor_main, x, sizeof x[0]);
        status = daemon_stop(&d, 0, 30);
        if (status)
            daemon_print_log(&d);
        ck_assert_int_eq(status, 0);
        ck_assert_msg(x[0].late_status == 503 || x[0].late_status == 0, "a request after %s got %d",
                      names[s], x[0].late_status);
        if (x[0].late_status)
            ck_assert_str_eq(x[0].late_code, "shutting_down");
        for (int i = 1; i <= INFLIGHT; i++) {
            ck_assert_msg(x[i].a.status == 200, "request %d: %d (%s)", i, x[i].a.status, x[i].a.code);
            ck_assert_str_eq(x[i].a.finish[0], "length");
            ck_assert_str_eq(x[i].a.text[0], x[i].want);
            if (i % 2)
                ck_assert(x[i].a.stream_done && x[i].a.stream_clean);
            stress_answer_fini(&x[i].a);
        }
        printf("%s with %d requests of 1000 tokens in flight (%d running, the rest waiting; 3 streamed): "
               "a new request got %d, all %d finished whole, exit 0 %.2f s after the signal\n",
               names[s], INFLIGHT, SEQS, x[0].late_status, INFLIGHT, stress_now() - x[0].signal_s);
        ck_assert(daemon_log_has(&d, "draining"));
        free(want[0]);
        free(want[1]);
    }
}
END_TEST

START_TEST(past_the_grace_under_load_streams_end_with_abort_and_the_rest_get_503)
{
    const char *args[] = { "--max-num-seqs", "3", "--shutdown-grace", "0.3", NULL };
    struct actor x[INFLIGHT + 1];
    int status, aborted = 0, refused = 0;

    it_up(&d, args);
    for (int i = 0; i <= INFLIGHT; i++)
        x[i] = (struct actor){ .index = i, .sig = SIGTERM, .max_tokens = 1900, .inflight = INFLIGHT };
    stress_run(INFLIGHT + 1, actor_main, x, sizeof x[0]);
    status = daemon_stop(&d, 0, 30);
    ck_assert_int_eq(status, 0);
    for (int i = 1; i <= INFLIGHT; i++) {
        if (i % 2) {                 /* streamed: the stream had begun, it ends cleanly */
            ck_assert_msg(x[i].a.status == 200, "stream %d: %d", i, x[i].a.status);
            ck_assert_str_eq(x[i].a.finish[0], "abort");
            ck_assert(x[i].a.stream_done && x[i].a.stream_clean);
            aborted++;
        } else {
            ck_assert_msg(x[i].a.status == 503, "request %d: %d", i, x[i].a.status);
            ck_assert_str_eq(x[i].a.code, "shutting_down");
            refused++;
        }
        stress_answer_fini(&x[i].a);
    }
    printf("SIGTERM past a 0.3 s grace with %d requests of 1900 tokens in flight: %d streams ended "
           "\"abort\" + [DONE], %d others 503, exit 0 %.2f s after the signal\n", INFLIGHT, aborted, refused,
           stress_now() - x[0].signal_s);
}
END_TEST

/* ---- signals at start-up and while serving ---- */

/* `osprey serve` on the tiny model with env added, stderr into log; not waited for. */
static pid_t spawn_serve(const char *const *env, const char *log)
{
    pid_t pid = fork();

    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644), out = open("/dev/null", O_WRONLY);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (int i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        if (fd < 0 || out < 0 || dup2(out, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execl(daemon_bin(), daemon_bin(), "serve", "--model", daemon_model_dir(), "--port", "0", "--backend",
              "cpu", "--kv-cache-memory", "32MiB", "--threads", "1", (char *)NULL);
        _exit(127);
    }
    ck_assert_int_gt(pid, 0);
    return pid;
}

/* Lines of the file holding needle. */
static int log_count(const char *log, const char *needle)
{
    char *text = NULL, err[ERR_LEN];
    size_t len;
    int n = 0;

    if (read_file(log, &text, &len, err) != 0)
        return 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(text);
    return n;
}

/* The exit status (128 + signal when killed by one), or -1 after timeout_s (then killed). */
static int wait_exit(pid_t pid, double timeout_s)
{
    double end = stress_now() + timeout_s;
    int status;

    while (stress_now() < end) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

START_TEST(a_signal_during_the_model_load_ends_it_at_once_with_one_line)
{
    /* The load waits 60 s (a slow disk, a device that takes its time): SIGTERM or SIGINT must
     * not wait for it. Before, both were blocked until the load ended and the daemon then
     * served, drained and exited 0. SIGHUP during the load is logged and changes nothing. */
    static const int sigs[] = { SIGTERM, SIGINT };
    static const char *const names[] = { "SIGTERM", "SIGINT" };
    const char *env[] = { "OSPREY_FAULT_LOAD_MS=60000", NULL };

    for (int s = 0; s < 2; s++) {
        char log[600], line[64];
        double armed_s, sent_s;
        pid_t pid;
        int status;

        snprintf(log, sizeof log, "/tmp/osprey-load-signal-%d-%d.log", (int)getpid(), s);
        pid = spawn_serve(env, log);
        for (int t = 0; t < 1000 && !log_count(log, "test fault point armed"); t++)
            usleep(10000);
        ck_assert_int_eq(log_count(log, "test fault point armed"), 1);
        armed_s = stress_now();
        kill(pid, SIGHUP);
        for (int t = 0; t < 500 && !log_count(log, "SIGHUP"); t++)
            usleep(10000);
        sent_s = stress_now();
        kill(pid, sigs[s]);
        status = wait_exit(pid, 20);
        snprintf(line, sizeof line, "%s while loading", names[s]);
        if (status != 128 + sigs[s] || log_count(log, line) != 1) {
            char *text = NULL;
            size_t len;

            if (read_file(log, &text, &len, NULL) == 0)
                fprintf(stderr, "---- %s ----\n%s---- end ----\n", log, text);
            free(text);
        }
        ck_assert_msg(status == 128 + sigs[s], "%s during the load: status %d (want %d; -1: still loading after "
                      "20 s)", names[s], status, 128 + sigs[s]);
        ck_assert_int_eq(log_count(log, line), 1);
        ck_assert_int_eq(log_count(log, "SIGHUP: nothing is reloaded"), 1);
        ck_assert_int_eq(log_count(log, "listening on"), 0);
        printf("%s %.2f s into a 60 s load (after a SIGHUP, logged): ended by the signal (status %d) %.2f s "
               "later, one line \"%s ...\"\n", names[s], sent_s - armed_s, status, stress_now() - sent_s, line);
        unlink(log);
    }
}
END_TEST

START_TEST(hup_usr1_usr2_and_alrm_are_logged_and_serving_goes_on)
{
    /* Each used to kill the daemon at once: no drain, no log line. */
    static const int sigs[] = { SIGHUP, SIGUSR1, SIGUSR2, SIGALRM };
    static const char *const lines[] = { "SIGHUP: nothing is reloaded", "SIGUSR1 ignored", "SIGUSR2 ignored",
                                         "SIGALRM ignored" };
    char body[512];

    it_up(&d, NULL);
    body_of(body, sizeof body, 0, false, 8);
    for (int i = 0; i < 4; i++) {
        struct stress_answer a;

        ck_assert_int_eq(kill(d.pid, sigs[i]), 0);
        for (int t = 0; t < 500 && !daemon_log_has(&d, lines[i]); t++)
            usleep(10000);
        ck_assert_msg(daemon_log_has(&d, lines[i]), "no \"%s\" line", lines[i]);
        stress_call(d.port, "/v1/completions", body, &a);
        ck_assert_msg(a.status == 200, "after %s: %d", lines[i], a.status);
        ck_assert_str_eq(a.finish[0], "length");
        stress_answer_fini(&a);
        ck_assert_int_eq(health(), 200);
    }
    ck_assert_int_eq(daemon_stop(&d, SIGTERM, 20), 0);
    printf("SIGHUP, SIGUSR1, SIGUSR2, SIGALRM: each logged once, a completion served after each, then SIGTERM: "
           "exit 0\n");
}
END_TEST

/* ---- one configuration for every command ---- */

/* Runs argv (argv[0] a path) with stderr into log; returns its exit status, -1 on a hang. */
static int run_logged(const char *const *argv, const char *log)
{
    pid_t pid = fork();

    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644), out = open("/dev/null", O_WRONLY);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd < 0 || out < 0 || dup2(out, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    ck_assert_int_gt(pid, 0);
    return wait_exit(pid, 120);
}

/* The KV blocks the engine reported in a log for its first KV-cache group
 * ("engine_create: … group 0 (full, 2 layers): N blocks"), or -1. */
static int kv_blocks(const char *log)
{
    char *text = NULL;
    const char *p;
    size_t len;
    int n = -1;

    if (read_file(log, &text, &len, NULL) != 0)
        return -1;
    for (p = strstr(text, "engine_create: "); p; p = strstr(p + 1, "engine_create: ")) {
        const char *end = strchr(p, '\n'), *g = strstr(p, "group 0 ("), *k = g ? strstr(g, "): ") : NULL;

        if (k && (!end || k < end))
            n = atoi(k + 3);
    }
    free(text);
    return n;
}

START_TEST(serve_generate_and_bench_read_a_size_alike)
{
    /* "3M" was 3 MiB to serve and 3,000,000 bytes to bench and generate (two parsers): 384
     * KV blocks of the tiny model's 8 KiB against 366. One parser, one filler now. */
    const char *args[] = { "--kv-cache-memory", "3M", NULL };
    const char *gen[] = { daemon_bin(), "generate", "--model", daemon_model_dir(), "--prompt", "hello",
                          "--max-tokens", "2", "--backend", "cpu", "--threads", "1", "--kv-cache-memory", "3M",
                          NULL };
    const char *bench[] = { daemon_bin(), "bench", "--model", daemon_model_dir(), "--num-prompts", "1",
                            "--input-len", "4", "--output-len", "2", "--backend", "cpu", "--threads", "1",
                            "--kv-cache-memory", "3M", NULL };
    char log[600];
    int served, generated, benched;

    it_up(&d, args);
    served = kv_blocks(d.log_path);
    it_down(&d);
    snprintf(log, sizeof log, "/tmp/osprey-size-%d.log", (int)getpid());
    ck_assert_int_eq(run_logged(gen, log), 0);
    generated = kv_blocks(log);
    ck_assert_int_eq(run_logged(bench, log), 0);
    benched = kv_blocks(log);
    unlink(log);
    ck_assert_int_eq(served, 384);       /* 3 MiB / (2 layers x K,V x 2 heads x 16 dims x 16 tokens x 4 bytes) */
    ck_assert_msg(generated == served && benched == served, "--kv-cache-memory 3M: serve %d KV blocks, generate %d, "
                  "bench %d", served, generated, benched);
    printf("--kv-cache-memory 3M: %d KV blocks to serve, %d to generate, %d to bench\n", served, generated, benched);
}
END_TEST

/* ---- engine faults ---- */

/* Request i of the fault test: 100 prompt tokens of its own, 8 greedy tokens. */
static void fault_body(char *buf, size_t cap, int i, bool stream)
{
    int n = snprintf(buf, cap, "{\"prompt\":[");

    for (int t = 0; t < 100; t++)
        n += snprintf(buf + n, cap - (size_t)n, "%s%d", t ? "," : "", 1 + (t * 13 + i * 7) % 400);
    snprintf(buf + n, cap - (size_t)n, "],\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true,"
             "\"stream\":%s}", stream ? "true" : "false");
}

static void *fault_main(void *p)
{
    struct actor *x = p;
    char body[1024];

    usleep((useconds_t)x->index * 2000);     /* in order, while the first ones prefill */
    fault_body(body, sizeof body, x->index, x->index >= 4);
    stress_call(d.port, "/v1/completions", body, &x->a);
    return NULL;
}

START_TEST(a_failed_step_fails_only_the_requests_in_it)
{
    /* Long prompts in 16-token chunks and two requests a step: step 5 holds the first one or
     * two requests' prefill, never the later ones. */
    const char *args[] = { "--max-num-seqs", "2", "--max-num-batched-tokens", "16", NULL };
    const char *env[] = { "OSPREY_FAULT_STEP=5", NULL };
    enum { N = 6 };
    struct actor x[N];
    char body[1024], *want[N];
    int failed = 0, served = 0;

    /* What each gives alone, from a daemon without the fault (the fault counts steps). */
    it_up(&d, args);
    for (int i = 0; i < N; i++) {
        fault_body(body, sizeof body, i, false);
        want[i] = stress_solo(&d, "/v1/completions", body);
    }
    it_down(&d);

    ck_assert(daemon_start_env(&d, args, env) == 0);
    for (int i = 0; i < N; i++)
        x[i] = (struct actor){ .index = i };
    stress_run(N, fault_main, x, sizeof x[0]);
    for (int i = 0; i < N; i++) {
        bool stream = i >= 4, bad = stream ? x[i].a.stream_error : x[i].a.status == 500;

        if (bad) {
            failed++;
            if (!stream)
                ck_assert_str_eq(x[i].a.code, "internal_error");
        } else {
            ck_assert_msg(x[i].a.status == 200, "request %d: %d", i, x[i].a.status);
            ck_assert_str_eq(x[i].a.text[0], want[i]);
            served++;
        }
        stress_answer_fini(&x[i].a);
        free(want[i]);
    }
    ck_assert_int_ge(failed, 1);
    ck_assert_int_le(failed, 2);     /* at most max-num-seqs were in the step */
    ck_assert(it_metric(&d, "osprey_requests_finished_total{finish_reason=\"error\"}") == failed);
    ck_assert_int_eq(health(), 200);
    it_assert_idle(&d);
    printf("a failed step (step 5, %d concurrent requests, 2 a step): %d failed with 500, %d served "
           "their solo tokens, /health 200 after\n", N, failed, served);
    it_down(&d);
}
END_TEST

/* ---- systemd notifications ---- */

struct notify {
    int fd;
    char path[108];
    int num;
    char msg[512][256];              /* each datagram, newlines as ';' */
    double at[512];
};

static void notify_open(struct notify *n)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    static int counter;

    memset(n, 0, sizeof *n);
    snprintf(n->path, sizeof n->path, "/tmp/osprey-notify-%d-%d.sock", (int)getpid(), counter++);
    unlink(n->path);
    snprintf(a.sun_path, sizeof a.sun_path, "%s", n->path);
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(n->fd, 0);
    ck_assert_int_eq(bind(n->fd, (struct sockaddr *)&a, sizeof a), 0);
}

static void notify_close(struct notify *n)
{
    close(n->fd);
    unlink(n->path);
}

/* Takes the datagrams that come within timeout_s. */
static void notify_read(struct notify *n, double timeout_s)
{
    double end = stress_now() + timeout_s;

    for (double left; (left = end - stress_now()) > 0;) {
        struct pollfd p = { .fd = n->fd, .events = POLLIN };
        char buf[256];
        ssize_t got;

        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        if ((got = recv(n->fd, buf, sizeof buf - 1, 0)) <= 0 || n->num == 512)
            continue;
        buf[got] = '\0';
        for (char *c = buf; *c; c++)
            *c = *c == '\n' ? ';' : *c;
        snprintf(n->msg[n->num], sizeof n->msg[0], "%s", buf);
        n->at[n->num++] = stress_now();
    }
}

/* Datagrams from index `from` on holding needle. */
static int notify_count(const struct notify *n, int from, const char *needle)
{
    int c = 0;

    for (int i = from; i < n->num; i++)
        c += strstr(n->msg[i], needle) != NULL;
    return c;
}

START_TEST(the_watchdog_beats_while_healthy_and_stopping_is_announced)
{
    struct notify n;
    char sock[160];
    const char *env[] = { sock, "WATCHDOG_USEC=200000", NULL };
    int beats;

    notify_open(&n);
    snprintf(sock, sizeof sock, "NOTIFY_SOCKET=%s", n.path);
    ck_assert(daemon_start_env(&d, NULL, env) == 0);
    notify_read(&n, 1.0);
    beats = notify_count(&n, 0, "WATCHDOG=1");
    ck_assert_int_eq(notify_count(&n, 0, "READY=1"), 1);
    ck_assert_msg(beats >= 4, "%d heartbeats in 1 s with WATCHDOG_USEC=200000", beats);
    kill(d.pid, SIGTERM);
    notify_read(&n, 0.5);
    ck_assert_int_eq(daemon_stop(&d, 0, 20), 0);
    ck_assert_int_eq(notify_count(&n, 0, "STOPPING=1"), 1);
    /* A fresh engine has just turned: no "has not turned for <uptime> s" at start. */
    ck_assert(!daemon_log_has(&d, "has not turned"));
    ck_assert(!daemon_log_has(&d, "turns again"));
    printf("watchdog: READY=1, %d WATCHDOG=1 in the first second (WATCHDOG_USEC 200 ms), STOPPING=1 on "
           "SIGTERM, exit 0\n", beats);
    notify_close(&n);
}
END_TEST

START_TEST(the_first_heartbeat_comes_with_ready)
{
    /* A 4 s watchdog beats every second. The first heartbeat used to be skipped (the engine's
     * alive time started at 0, so the daemon saw a silence as long as the uptime and logged
     * it), leaving systemd a full period without one right after READY=1. */
    struct notify n;
    char sock[160];
    const char *env[] = { sock, "WATCHDOG_USEC=4000000", NULL };
    int ready = -1;

    notify_open(&n);
    snprintf(sock, sizeof sock, "NOTIFY_SOCKET=%s", n.path);
    ck_assert(daemon_start_env(&d, NULL, env) == 0);
    for (int t = 0; t < 100 && ready < 0; t++) {
        notify_read(&n, 0.1);
        for (int i = 0; i < n.num && ready < 0; i++)
            if (strstr(n.msg[i], "READY=1"))
                ready = i;
    }
    ck_assert_int_ge(ready, 0);
    /* Half a period after READY=1: the heartbeat sent with it must be there. */
    while (stress_now() < n.at[ready] + 0.5)
        notify_read(&n, n.at[ready] + 0.5 - stress_now());
    ck_assert_msg(notify_count(&n, ready, "WATCHDOG=1") >= 1, "no heartbeat within 0.5 s of READY=1 (period 1 s)");
    ck_assert(!daemon_log_has(&d, "has not turned"));
    ck_assert_int_eq(daemon_stop(&d, SIGTERM, 20), 0);
    printf("watchdog 4 s (a beat a second): the first WATCHDOG=1 %.3f s after READY=1, no stall logged at start\n",
           n.at[ready + 1] - n.at[ready]);
    notify_close(&n);
}
END_TEST

/* A model of 32 thin layers (hidden 128): a 1500-token CPU prefill takes seconds, each layer
 * a small part of it. */
static const char deep_config[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 128, \"intermediate_size\": 256, "
    "\"num_hidden_layers\": 32, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
    "\"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-05, \"rope_theta\": 500000, "
    "\"vocab_size\": 512, \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", "
    "\"bos_token_id\": 496, \"eos_token_id\": [505, 497]}";

START_TEST(a_long_step_that_makes_progress_keeps_the_heartbeats_going)
{
    /* Before, the watchdog took any step longer than half its interval for a hang: one long
     * CPU prefill stopped the heartbeats (systemd would have killed a healthy daemon). The
     * runner now bumps a counter per layer, and a counter that moves is an answer. A step
     * that hangs without progress still stops them (a_hung_step_... above). */
    /* Under ASan or a wrapper (valgrind) every layer runs 20-50 times slower: a shorter
     * prompt and a 10 s watchdog (stall limit 5 s) keep a layer well inside the limit and
     * the step still well past it. */
#ifdef __SANITIZE_ADDRESS__
    bool slow = true;
#else
    bool slow = getenv("OSPREY_TEST_WRAPPER") != NULL;
#endif
    int prompt = slow ? 400 : 1500;
    struct notify n;
    struct gen_model_opts o = { .config = NULL, .seed = 1 };
    char sock[160], dir[300], cfg[340], err[ERR_LEN], *body = malloc(16 * 1000 + 200);
    const char *env[] = { sock, slow ? "WATCHDOG_USEC=10000000" : "WATCHDOG_USEC=1000000", NULL };
    const char *args[] = { "--model", dir, "--kv-cache-memory", "64MiB", "--max-num-batched-tokens", "2048",
                           "--max-model-len", "2048", NULL };
    double sent_s, done_s, gap = 0, last;
    int fd, from, beats, len;
    FILE *f;

    snprintf(dir, sizeof dir, "/tmp/osprey-deep-%d", (int)getpid());
    snprintf(cfg, sizeof cfg, "%s.json", dir);
    ck_assert_ptr_nonnull(f = fopen(cfg, "w"));
    fputs(deep_config, f);
    fclose(f);
    o.config = cfg;
    o.out_dir = dir;
    ck_assert_msg(gen_model_write(&o, NULL, err) == 0, "%s", err);
    notify_open(&n);
    snprintf(sock, sizeof sock, "NOTIFY_SOCKET=%s", n.path);
    ck_assert(daemon_start_env(&d, args, env) == 0);
    notify_read(&n, 1.2);
    ck_assert_int_ge(notify_count(&n, 0, "WATCHDOG=1"), 1);
    ck_assert_ptr_nonnull(body);

    len = snprintf(body, 200, "{\"max_tokens\":1,\"temperature\":0,\"prompt\":[");
    for (int t = 0; t < prompt; t++)
        len += snprintf(body + len, 16, "%s%d", t ? "," : "", 1 + (t * 37) % 490);
    snprintf(body + len, 16, "]}");
    ck_assert_int_ge(fd = hc_open_post(d.port, "/v1/completions", body, 0), 0);
    sent_s = stress_now();
    from = n.num;
    /* Heartbeats while the one prefill step runs, until the answer starts to come. */
    for (double end = sent_s + 300; stress_now() < end;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        notify_read(&n, 0.05);
        if (poll(&p, 1, 0) > 0)
            break;
    }
    done_s = stress_now();
    ck_assert(hc_read_until(fd, "\"finish_reason\"", 10));
    close(fd);
    beats = notify_count(&n, from, "WATCHDOG=1");
    last = sent_s;
    for (int i = from; i < n.num; i++)
        if (strstr(n.msg[i], "WATCHDOG=1")) {
            gap = MAX(gap, n.at[i] - last);
            last = n.at[i];
        }
    gap = MAX(gap, done_s - last);
    if (daemon_log_has(&d, "has not turned"))
        daemon_print_log(&d);
    ck_assert_msg(!daemon_log_has(&d, "has not turned"), "a %.1f s step that makes progress was taken for a hang",
                  done_s - sent_s);
    ck_assert_int_ge(beats, 1);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM, 20), 0);
    printf("a %d-token prefill on 32 layers (one step of %.1f s, watchdog %d s: stall limit %d s): %d heartbeats "
           "during it, longest gap %.2f s, no stall logged\n", prompt, done_s - sent_s, slow ? 10 : 1, slow ? 5 : 1,
           beats, gap);
    notify_close(&n);
    free(body);
    unlink(cfg);
    snprintf(cfg, sizeof cfg, "rm -rf '%s'", dir);
    if (system(cfg)) {}
}
END_TEST

START_TEST(a_device_error_stops_the_heartbeats_fails_health_and_exits_1)
{
    struct notify n;
    char sock[160];
    const char *env[] = { sock, "WATCHDOG_USEC=200000", "OSPREY_FAULT_STEP=3", "OSPREY_FAULT_STICKY=1", NULL };
    const char *held = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n";
    struct stress_answer a;
    int fd, before, after_failure, status, health_status;
    double failed_s;

    notify_open(&n);
    snprintf(sock, sizeof sock, "NOTIFY_SOCKET=%s", n.path);
    ck_assert(daemon_start_env(&d, NULL, env) == 0);
    notify_read(&n, 0.6);
    before = notify_count(&n, 0, "WATCHDOG=1");
    ck_assert_int_ge(before, 2);
    /* A request whose body never comes keeps the daemon's listener open for the 2 s it lets
     * answers drain before it exits: long enough to ask /health. */
    ck_assert_int_ge(fd = hc_connect(d.port), 0);
    ck_assert_int_eq(hc_send(fd, held, strlen(held)), 0);
    stress_call(d.port, "/v1/completions", "{\"prompt\":\"device\",\"max_tokens\":20,\"ignore_eos\":true}", &a);
    failed_s = stress_now();
    ck_assert_int_eq(a.status, 503);
    ck_assert_str_eq(a.code, "engine_dead");
    stress_answer_fini(&a);
    health_status = health();
    ck_assert_int_eq(health_status, 503);
    after_failure = n.num;
    notify_read(&n, 1.0);
    close(fd);
    status = daemon_stop(&d, 0, 10);
    notify_read(&n, 0.1);
    if (status != 1)
        daemon_print_log(&d);
    ck_assert_int_eq(status, 1);
    ck_assert(daemon_log_has(&d, "the engine failed"));
    ck_assert_int_eq(notify_count(&n, 0, "STATUS=engine failed"), 1);
    /* One heartbeat may have been on its way when the engine died; none came after that. */
    ck_assert_int_le(notify_count(&n, after_failure, "WATCHDOG=1"), 1);
    for (int i = 0, stopped = 0; i < n.num; i++) {
        stopped = stopped || strstr(n.msg[i], "STATUS=engine failed");
        ck_assert_msg(!(stopped && strstr(n.msg[i], "WATCHDOG=1")), "a heartbeat after the engine failed");
    }
    printf("device error: %d heartbeats before, %d after the failed request (%.1f s watched), /health %d, "
           "exit 1\n", before, notify_count(&n, after_failure, "WATCHDOG=1"), stress_now() - failed_s,
           health_status);
    notify_close(&n);
}
END_TEST

START_TEST(a_hung_step_stops_the_heartbeats_until_it_ends)
{
    struct notify n;
    char sock[160];
    const char *env[] = { sock, "WATCHDOG_USEC=200000", "OSPREY_FAULT_STEP=3", "OSPREY_FAULT_HANG_MS=1500", NULL };
    int fd, before, during, after, hung_from;
    double sent_s, hung_s;

    notify_open(&n);
    snprintf(sock, sizeof sock, "NOTIFY_SOCKET=%s", n.path);
    ck_assert(daemon_start_env(&d, NULL, env) == 0);
    notify_read(&n, 0.6);
    before = notify_count(&n, 0, "WATCHDOG=1");
    ck_assert_int_ge(before, 2);
    /* Step 3 sleeps 1.5 s: a stuck device, as the main thread sees it. */
    fd = hc_open_post(d.port, "/v1/completions", "{\"prompt\":\"hang\",\"max_tokens\":8,\"ignore_eos\":true}", 0);
    ck_assert_int_ge(fd, 0);
    sent_s = stress_now();
    notify_read(&n, 0.4);            /* up to the 0.2 s stall limit, beats may still come */
    hung_from = n.num;
    notify_read(&n, 0.9);
    during = notify_count(&n, hung_from, "WATCHDOG=1");
    hung_s = stress_now() - sent_s;
    ck_assert(hc_read_until(fd, "\"finish_reason\":\"length\"", 10));   /* the step ends; served */
    close(fd);
    after = n.num;
    notify_read(&n, 0.6);
    ck_assert_msg(during == 0, "%d heartbeats while the step hung", during);
    ck_assert_int_ge(notify_count(&n, after, "WATCHDOG=1"), 2);
    ck_assert(daemon_log_has(&d, "the engine thread has not turned"));
    ck_assert_int_eq(daemon_stop(&d, SIGTERM, 20), 0);
    printf("hung step (1.5 s, WATCHDOG_USEC 200 ms): %d heartbeats in the 0.6 s before, none from 0.4 s "
           "to %.1f s into the hang, %d in the 0.6 s after it ended\n", before, hung_s,
           notify_count(&n, after, "WATCHDOG=1"));
    notify_close(&n);
}
END_TEST

Suite *stress_lifecycle_suite(void)
{
    Suite *s = suite_create("stress_lifecycle");
    TCase *tc = tcase_create("lifecycle");

    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, a_signal_under_load_refuses_new_requests_and_lets_every_one_in_flight_finish);
    tcase_add_test(tc, a_signal_during_the_model_load_ends_it_at_once_with_one_line);
    tcase_add_test(tc, hup_usr1_usr2_and_alrm_are_logged_and_serving_goes_on);
    tcase_add_test(tc, serve_generate_and_bench_read_a_size_alike);
    tcase_add_test(tc, past_the_grace_under_load_streams_end_with_abort_and_the_rest_get_503);
    tcase_add_test(tc, a_failed_step_fails_only_the_requests_in_it);
    tcase_add_test(tc, the_watchdog_beats_while_healthy_and_stopping_is_announced);
    tcase_add_test(tc, the_first_heartbeat_comes_with_ready);
    tcase_add_test(tc, a_long_step_that_makes_progress_keeps_the_heartbeats_going);
    tcase_add_test(tc, a_device_error_stops_the_heartbeats_fails_health_and_exits_1);
    tcase_add_test(tc, a_hung_step_stops_the_heartbeats_until_it_ends);
    suite_add_tcase(s, tc);
    return s;
}

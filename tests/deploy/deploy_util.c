/* deploy_util.c — nginx as the test's own process over the repository's site, replicas'
 * prefix-cache counters, and requests that report which replica answered. */
#include "tests/deploy/deploy_util.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/base/util.h"

/* Debian's dynamic njs module (libnginx-mod-http-js); an nginx built with njs inside
 * needs no load_module line. */
#define NJS_MODULE "/usr/lib/nginx/modules/ngx_http_js_module.so"
/* The line of the site that the test points at its own loopback port. */
#define SITE_LISTEN "    listen 8080;\n"

const char *deploy_which(const char *name, char *buf, size_t cap)
{
    const char *path = getenv("PATH");
    char dirs[4096];

    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/sbin", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(buf, cap, "%s/%s", d, name);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    return NULL;
}

const char *deploy_repo_file(const char *rel, char *buf, size_t cap)
{
    char cwd[1024];

    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    snprintf(buf, cap, "%s/%s", cwd, rel);
    ck_assert_msg(access(buf, R_OK) == 0, "%s: %s (run the tests from the repository's root)", buf,
                  strerror(errno));
    return buf;
}

int deploy_free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    ck_assert_msg(port > 0, "no free loopback port: %s", strerror(errno));
    return port;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

static char *read_text(const char *path)
{
    char *text = NULL;
    size_t len;

    if (read_file(path, &text, &len, NULL))
        return NULL;
    return text;
}

/* The site as the repository has it, listening on the test's port instead of 8080. */
static void write_site(const char *dir, int port)
{
    char src[1024], dst[1024], listen[64];
    char *site, *at, *out;

    site = read_text(deploy_repo_file("config/nginx/osprey.conf", src, sizeof src));
    ck_assert_ptr_nonnull(site);
    at = strstr(site, SITE_LISTEN);
    ck_assert_msg(at && !strstr(at + 1, SITE_LISTEN), "%s: one \"%.*s\" line expected", src,
                  (int)strlen(SITE_LISTEN) - 1, SITE_LISTEN);
    snprintf(listen, sizeof listen, "    listen 127.0.0.1:%d;\n", port);
    out = malloc(strlen(site) + sizeof listen);
    ck_assert_ptr_nonnull(out);
    sprintf(out, "%.*s%s%s", (int)(at - site), site, listen, at + strlen(SITE_LISTEN));
    snprintf(dst, sizeof dst, "%s/osprey-site.conf", dir);
    write_text(dst, out);
    free(out);
    free(site);
}

static void write_config(struct deploy_nginx *n, const int *ports, int num, int fail_timeout_s)
{
    char path[1024], src[1024], line[256], replicas[2048] = "", conf[8192], *js;
    size_t len = 0;

    snprintf(path, sizeof path, "%s/osprey", n->dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    for (int i = 0; i < num; i++) {
        snprintf(line, sizeof line, "server 127.0.0.1:%d max_fails=1 fail_timeout=%ds;\n", ports[i],
                 fail_timeout_s);
        len += (size_t)snprintf(replicas + len, sizeof replicas - len, "%s", line);
    }
    snprintf(path, sizeof path, "%s/osprey/replicas.conf", n->dir);
    write_text(path, replicas);
    js = read_text(deploy_repo_file("config/nginx/osprey_route.js", src, sizeof src));
    ck_assert_ptr_nonnull(js);
    snprintf(path, sizeof path, "%s/osprey/osprey_route.js", n->dir);
    write_text(path, js);
    free(js);
    write_site(n->dir, n->port);
    /* One process (no master, no user switch): the test's own, killed with it. The temp
     * paths are nginx's compiled-in /var/lib/nginx otherwise. */
    snprintf(conf, sizeof conf,
             "%s"
             "daemon off;\nmaster_process off;\npid %s/nginx.pid;\nerror_log %s/error.log info;\n"
             "events { worker_connections 1024; }\n"
             "http {\n"
             "    client_body_temp_path %s/body;\n    proxy_temp_path %s/proxy;\n"
             "    fastcgi_temp_path %s/fastcgi;\n    uwsgi_temp_path %s/uwsgi;\n    scgi_temp_path %s/scgi;\n"
             "    # test-only: which replicas were tried, in order, and from which pool\n"
             "    add_header X-Osprey-Upstream $upstream_addr always;\n"
             "    add_header X-Osprey-Pool $osprey_pool always;\n"
             "    include osprey-site.conf;\n"
             "    access_log %s/access.log osprey_upstream;\n"
             "    # round robin over the same replicas, for the prefix-cache comparison\n"
             "    upstream osprey_round_robin { include osprey/replicas.conf; }\n"
             "    server {\n"
             "        listen 127.0.0.1:%d;\n"
             "        proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n"
             "        proxy_buffering off;\n"
             "        proxy_next_upstream error timeout http_503 non_idempotent;\n"
             "        location / { proxy_pass http://osprey_round_robin; }\n"
             "    }\n"
             "}\n",
             access(NJS_MODULE, R_OK) == 0 ? "load_module " NJS_MODULE ";\n" : "",
             n->dir, n->dir, n->dir, n->dir, n->dir, n->dir, n->dir, n->dir, n->rr_port);
    snprintf(path, sizeof path, "%s/nginx.conf", n->dir);
    write_text(path, conf);
}

static bool accepts(int port)
{
    int fd = hc_connect(port);

    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static void print_error_log(const struct deploy_nginx *n)
{
    char path[600], *text;

    snprintf(path, sizeof path, "%s/error.log", n->dir);
    text = read_text(path);
    fprintf(stderr, "---- %s ----\n%s---- end ----\n", path, text ? text : "(none)\n");
    free(text);
}

void deploy_nginx_start(struct deploy_nginx *n, const int *ports, int num, int fail_timeout_s)
{
    const char *tmp = getenv("OSPREY_TEST_TMP");
    char bin[1024], conf[600], log[600];
    int status;

    memset(n, 0, sizeof *n);
    ck_assert_msg(deploy_which("nginx", bin, sizeof bin) != NULL,
                  "nginx is not installed: make deps (scripts/install-deps.sh) installs it");
    ck_assert_msg(access(NJS_MODULE, R_OK) == 0, "%s is missing: make deps installs libnginx-mod-http-js",
                  NJS_MODULE);
    snprintf(n->dir, sizeof n->dir, "%s/osprey-nginx.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    ck_assert_msg(mkdtemp(n->dir) != NULL, "mkdtemp %s: %s", n->dir, strerror(errno));
    n->port = deploy_free_port();
    n->rr_port = deploy_free_port();
    write_config(n, ports, num, fail_timeout_s);
    snprintf(conf, sizeof conf, "%s/nginx.conf", n->dir);
    snprintf(log, sizeof log, "%s/stderr.log", n->dir);
    if ((n->pid = fork()) == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execl(bin, "nginx", "-p", n->dir, "-c", conf, (char *)NULL);
        _exit(127);
    }
    ck_assert_int_gt(n->pid, 0);
    for (double end = stress_now() + 10; stress_now() < end; usleep(10000)) {
        if (waitpid(n->pid, &status, WNOHANG) == n->pid) {
            char *text = read_text(log);

            n->pid = 0;
            fprintf(stderr, "nginx exited at start:\n%s\n", text ? text : "");
            free(text);
            print_error_log(n);
            ck_abort_msg("nginx -p %s did not start", n->dir);
        }
        if (accepts(n->port) && accepts(n->rr_port))
            return;
    }
    print_error_log(n);
    ck_abort_msg("nginx -p %s does not accept on %d within 10 s", n->dir, n->port);
}

void deploy_nginx_stop(struct deploy_nginx *n)
{
    char cmd[600];
    int status;

    if (n->pid > 0) {
        kill(n->pid, SIGQUIT);
        for (double end = stress_now() + 10; stress_now() < end; usleep(10000))
            if (waitpid(n->pid, &status, WNOHANG) == n->pid) {
                n->pid = 0;
                break;
            }
        if (n->pid > 0) {
            kill(n->pid, SIGKILL);
            waitpid(n->pid, &status, 0);
            n->pid = 0;
        }
    }
    if (n->dir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", n->dir);
        ck_assert_int_eq(system(cmd), 0);
        n->dir[0] = 0;
    }
}

bool deploy_nginx_log_has(const struct deploy_nginx *n, const char *needle)
{
    char path[600], *text;
    bool has;

    snprintf(path, sizeof path, "%s/error.log", n->dir);
    text = read_text(path);
    has = text && strstr(text, needle);
    free(text);
    return has;
}

void deploy_call(int port, const char *path, const char *headers, const char *body, struct deploy_answer *r)
{
    struct hc_response resp;
    char type[64] = "";

    memset(r, 0, sizeof *r);
    hc_request(port, "POST", path, headers, body, &resp, 120);
    r->status = r->a.status = resp.status;
    hc_header(&resp, "X-Osprey-Upstream", r->upstream, sizeof r->upstream);
    hc_header(&resp, "Content-Type", type, sizeof type);
    if (resp.status == 200 && !strncmp(type, "text/event-stream", 17)) {
        struct it_stream s;

        it_stream_parse(&resp, &s);
        r->a.stream_done = s.done;
        r->a.stream_clean = s.clean;
        for (int i = 0; i < STRESS_MAX_CHOICES; i++) {
            if (!s.text[i])
                continue;
            r->a.num_choices = i + 1;
            r->a.text[i] = strdup(s.text[i]);
            snprintf(r->a.finish[i], sizeof r->a.finish[i], "%s", s.finish[i] ? s.finish[i] : "");
        }
        it_stream_fini(&s);
    } else if (resp.status == 200 && resp.body) {
        cJSON *j = cJSON_Parse(resp.body);
        const char *text = j ? it_choice_text(j, 0) : NULL;

        const char *finish = j ? it_choice_finish(j, 0) : NULL;

        if (text) {
            r->a.num_choices = 1;
            r->a.text[0] = strdup(text);
            snprintf(r->a.finish[0], sizeof r->a.finish[0], "%s", finish ? finish : "");
        }
        cJSON_Delete(j);
    }
    hc_response_fini(&resp);
}

void deploy_answer_fini(struct deploy_answer *r)
{
    stress_answer_fini(&r->a);
}

void deploy_prefix_read(const struct daemon *d, int num, struct deploy_prefix *p)
{
    memset(p, 0, sizeof *p);
    for (int i = 0; i < num; i++) {
        double q = it_metric(&d[i], "osprey_prefix_cache_queries_total");
        double h = it_metric(&d[i], "osprey_prefix_cache_hits_total");

        ck_assert_msg(!isnan(q) && !isnan(h), "%s/metrics: no prefix-cache counters", d[i].url);
        p->queries += q;
        p->hits += h;
    }
}

void deploy_stream_open(struct deploy_stream *s, int port, const char *path, const char *headers,
                        const char *body)
{
    size_t cap = strlen(path) + strlen(body) + (headers ? strlen(headers) : 0) + 256;
    char *req = malloc(cap);
    int n;

    memset(s, 0, sizeof *s);
    ck_assert_ptr_nonnull(req);
    n = snprintf(req, cap, "POST %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "%sContent-Length: %zu\r\n\r\n%s", path, headers ? headers : "", strlen(body), body);
    s->fd = hc_connect(port);
    ck_assert_msg(s->fd >= 0, "connect to 127.0.0.1:%d: %s", port, strerror(errno));
    s->sent_s = stress_now();
    ck_assert_int_eq(hc_send(s->fd, req, (size_t)n), 0);
    free(req);
    s->cap = 65536;
    s->buf = malloc(s->cap);
    ck_assert_ptr_nonnull(s->buf);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *at = hay; (at = strstr(at, needle)); at += strlen(needle))
        n++;
    return n;
}

/* One read into the buffer, bookkept; returns false when the server closed or time is up. */
static bool stream_read(struct deploy_stream *s, double end)
{
    struct pollfd p = { .fd = s->fd, .events = POLLIN };
    double left = end - stress_now();
    int before, after;
    ssize_t got;

    if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0)
        return false;
    if (s->len + 4096 >= s->cap) {
        s->cap *= 2;
        ck_assert_ptr_nonnull(s->buf = realloc(s->buf, s->cap));
    }
    s->buf[s->len] = 0;
    before = count(s->buf, "data: ");
    if ((got = recv(s->fd, s->buf + s->len, s->cap - s->len - 1, 0)) <= 0)
        return false;
    s->len += (size_t)got;
    s->buf[s->len] = 0;
    after = count(s->buf, "data: ");
    if (after > before) {
        s->reads_with_events++;
        if (!s->first_event_s)
            s->first_event_s = stress_now();
    }
    if (!s->done_s && strstr(s->buf, "data: [DONE]")) {
        s->done_s = stress_now();
        s->events_before_done = before;
    }
    return true;
}

bool deploy_stream_first(struct deploy_stream *s, double timeout_s)
{
    double end = stress_now() + timeout_s;

    while (!s->first_event_s && stream_read(s, end)) {}
    return s->first_event_s > 0;
}

void deploy_stream_finish(struct deploy_stream *s, double timeout_s, struct deploy_answer *r)
{
    double end = stress_now() + timeout_s;
    struct hc_response resp = { 0 };
    char *body;

    while (stream_read(s, end)) {}
    close(s->fd);
    memset(r, 0, sizeof *r);
    body = strstr(s->buf ? s->buf : "", "\r\n\r\n");
    if (s->buf && !strncmp(s->buf, "HTTP/1.", 7) && body) {
        resp.status = atoi(s->buf + 9);
        resp.head = strndup(s->buf, (size_t)(body - s->buf));
        resp.body = strdup(body + 4);
        resp.body_len = strlen(resp.body);
        r->status = r->a.status = resp.status;
        hc_header(&resp, "X-Osprey-Upstream", r->upstream, sizeof r->upstream);
        hc_header(&resp, "X-Accel-Buffering", r->accel_buffering, sizeof r->accel_buffering);
        if (resp.status == 200) {
            struct it_stream st;

            it_stream_parse(&resp, &st);
            r->a.stream_done = st.done;
            r->a.stream_clean = st.clean;
            for (int i = 0; i < STRESS_MAX_CHOICES; i++) {
                if (!st.text[i])
                    continue;
                r->a.num_choices = i + 1;
                r->a.text[i] = strdup(st.text[i]);
                snprintf(r->a.finish[i], sizeof r->a.finish[i], "%s", st.finish[i] ? st.finish[i] : "");
            }
            it_stream_fini(&st);
        }
    }
    hc_response_fini(&resp);
    free(s->buf);
    s->buf = NULL;
}

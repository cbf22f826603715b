/* it_util.c — JSON and SSE helpers for the integration suites. */
#include "tests/integration/it_util.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void it_up(struct daemon *d, const char *const *extra)
{
    ck_assert_msg(daemon_start(d, extra) == 0, "the daemon did not start");
}

void it_down(struct daemon *d)
{
    int status = daemon_stop(d, SIGTERM, 20);

    if (status != 0)
        daemon_print_log(d);
    ck_assert_int_eq(status, 0);
}

/* cJSON strings end at a NUL: show \u0000 (which generated text may hold) as U+2400. */
static void visible_nuls(char *body)
{
    for (char *p = body ? strstr(body, "\\u0000") : NULL; p; p = strstr(p, "\\u0000"))
        memcpy(p, "\\u2400", 6);
}

cJSON *it_post_h(const struct daemon *d, const char *path, const char *headers, const char *body,
                 int *status)
{
    struct hc_response r;
    cJSON *j;

    hc_request(d->port, body ? "POST" : "GET", path, headers, body, &r, 60);
    *status = r.status;
    visible_nuls(r.body);
    j = r.body ? cJSON_Parse(r.body) : NULL;
    hc_response_fini(&r);
    return j;
}

cJSON *it_post(const struct daemon *d, const char *path, const char *body, int *status)
{
    return it_post_h(d, path, NULL, body, status);
}

static void append(char **dst, const char *s)
{
    size_t a = *dst ? strlen(*dst) : 0, b = strlen(s);
    char *p = realloc(*dst, a + b + 1);

    memcpy(p + a, s, b + 1);
    *dst = p;
}

int it_stream_parse(struct hc_response *r, struct it_stream *s)
{
    char *p;

    memset(s, 0, sizeof *s);
    s->events = cJSON_CreateArray();
    s->status = r->status;
    s->clean = r->body != NULL;
    visible_nuls(r->body);
    for (p = r->body; p && *p;) {
        char *end = strstr(p, "\n\n");
        cJSON *ev;

        if (!end || strncmp(p, "data: ", 6)) {
            s->clean = false;
            break;
        }
        *end = '\0';
        if (!strcmp(p + 6, "[DONE]")) {
            s->done = end[2] == '\0';
        } else if ((ev = cJSON_Parse(p + 6))) {
            const cJSON *c;

            cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(ev, "choices")) {
                int i = cJSON_GetObjectItemCaseSensitive(c, "index")->valueint;
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "text");
                const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "finish_reason");

                if (i < 0 || i >= 16)
                    continue;
                if (!t)
                    t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "delta"), "content");
                append(&s->text[i], cJSON_IsString(t) ? t->valuestring : "");
                if (cJSON_IsString(f)) {
                    free(s->finish[i]);
                    s->finish[i] = strdup(f->valuestring);
                }
            }
            cJSON_AddItemToArray(s->events, ev);
        } else {
            s->clean = false;
        }
        p = end + 2;
    }
    return s->status == 200 ? 0 : -1;
}

int it_stream(const struct daemon *d, const char *path, const char *body, struct it_stream *s)
{
    struct hc_response r;
    int rc;

    hc_request(d->port, "POST", path, NULL, body, &r, 120);
    rc = it_stream_parse(&r, s);
    hc_response_fini(&r);
    return rc;
}

void it_stream_fini(struct it_stream *s)
{
    cJSON_Delete(s->events);
    for (int i = 0; i < 16; i++) {
        free(s->text[i]);
        free(s->finish[i]);
    }
    memset(s, 0, sizeof *s);
}

static const cJSON *choice(const cJSON *resp, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp, "choices"), i);
}

const char *it_choice_text(const cJSON *resp, int i)
{
    const cJSON *c = choice(resp, i), *t = cJSON_GetObjectItemCaseSensitive(c, "text");

    if (!t)
        t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "message"), "content");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

const char *it_choice_finish(const cJSON *resp, int i)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(choice(resp, i), "finish_reason");

    return cJSON_IsString(f) ? f->valuestring : NULL;
}

cJSON *it_message(const cJSON *resp, int i)
{
    return cJSON_GetObjectItemCaseSensitive(choice(resp, i), "message");
}

const char *it_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int it_usage(const cJSON *resp, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(resp, "usage"), field);

    return cJSON_IsNumber(v) ? v->valueint : -1;
}

double it_metric(const struct daemon *d, const char *sample)
{
    struct hc_response r;
    double v = NAN;
    size_t n = strlen(sample);

    hc_request(d->port, "GET", "/metrics", NULL, NULL, &r, 10);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, sample, n) && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    hc_response_fini(&r);
    return v;
}

bool it_wait_metric(const struct daemon *d, const char *sample, double want, double timeout_s)
{
    for (double t = 0; t < timeout_s; t += 0.05) {
        if (it_metric(d, sample) == want)
            return true;
        usleep(50000);
    }
    return false;
}

const char *it_fails(const struct daemon *d, const char *method, const char *path, const char *headers,
                     const char *body, int status, const char *param, const char *code)
{
    static __thread char msg[1024];
    struct hc_response r;
    cJSON *j, *e, *p, *c, *m, *t;

    hc_request(d->port, method, path, headers, body, &r, 30);
    ck_assert_msg(r.status == status, "%s %s %.300s: %d, want %d: %s", method, path, body ? body : "",
                  r.status, status, r.body);
    j = cJSON_Parse(r.body);
    e = cJSON_GetObjectItemCaseSensitive(j, "error");
    ck_assert_msg(cJSON_IsObject(e), "not an error object: %s", r.body);
    m = cJSON_GetObjectItemCaseSensitive(e, "message");
    t = cJSON_GetObjectItemCaseSensitive(e, "type");
    p = cJSON_GetObjectItemCaseSensitive(e, "param");
    c = cJSON_GetObjectItemCaseSensitive(e, "code");
    ck_assert(cJSON_IsString(m) && m->valuestring[0]);
    ck_assert_str_eq(t->valuestring, status >= 500 ? "server_error" : "invalid_request_error");
    if (param)
        ck_assert_str_eq(p->valuestring, param);
    else
        ck_assert(cJSON_IsNull(p));
    if (code)
        ck_assert_str_eq(c->valuestring, code);
    snprintf(msg, sizeof msg, "%s", m->valuestring);
    cJSON_Delete(j);
    hc_response_fini(&r);
    return msg;
}

void it_assert_idle(const struct daemon *d)
{
    ck_assert_msg(it_wait_metric(d, "osprey_requests_running", 0, 10), "requests still running");
    ck_assert_msg(it_wait_metric(d, "osprey_requests_waiting", 0, 10), "requests still waiting");
    ck_assert_msg(it_wait_metric(d, "osprey_kv_cache_usage_ratio", 0, 10), "KV blocks still in use");
}

int it_run(const char *cmd, char **out)
{
    char full[8192];
    FILE *f;
    size_t cap = 4096, n = 0;
    int status;

    snprintf(full, sizeof full, "(%s) 2>&1", cmd);
    *out = malloc(cap);
    ck_assert_ptr_nonnull(*out);
    ck_assert_msg((f = popen(full, "r")) != NULL, "popen %s: %s", cmd, strerror(errno));
    for (size_t got; (got = fread(*out + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            ck_assert_ptr_nonnull(*out = realloc(*out, cap *= 2));
        }
    }
    (*out)[n] = 0;
    status = pclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

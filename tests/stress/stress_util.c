/* stress_util.c — /proc readings, the seeded generator, client threads and answers for the
 * stress suites. */
#include "tests/stress/stress_util.h"

#include <check.h>
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "engine/base/rng.h"   /* stress_rand is rng_next */

int stress_mem(pid_t pid, struct stress_mem *m)
{
    char path[64], line[256];
    FILE *f;

    memset(m, 0, sizeof *m);
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "VmRSS: %ld kB", &m->rss_kib);
        sscanf(line, "VmHWM: %ld kB", &m->hwm_kib);
    }
    fclose(f);
    return m->rss_kib > 0 ? 0 : -1;
}

int stress_fds(pid_t pid)
{
    char path[64];
    struct dirent *e;
    DIR *dir;
    int n = 0;

    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    if (!(dir = opendir(path)))
        return -1;
    while ((e = readdir(dir)))
        n += e->d_name[0] != '.';
    closedir(dir);
    return n;
}

uint64_t stress_seed(uint64_t fallback)
{
    const char *s = getenv("OSPREY_STRESS_SEED");

    return s && s[0] ? strtoull(s, NULL, 0) : fallback;
}

uint64_t stress_rand(uint64_t *state)
{
    return rng_next(state);
}

int stress_below(uint64_t *state, int n)
{
    return (int)(stress_rand(state) % (uint64_t)n);
}

double stress_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct thread_start {
    pthread_barrier_t *go;
    void *(*fn)(void *);
    void *arg;
};

static void *thread_main(void *p)
{
    struct thread_start *t = p;

    pthread_barrier_wait(t->go);
    return t->fn(t->arg);
}

void stress_run(int num_threads, void *(*fn)(void *), void *args, size_t arg_size)
{
    pthread_t *th = calloc((size_t)num_threads, sizeof *th);
    struct thread_start *ts = calloc((size_t)num_threads, sizeof *ts);
    pthread_barrier_t go;
    pthread_attr_t attr;

    ck_assert(th && ts);
    pthread_barrier_init(&go, NULL, (unsigned)num_threads);
    /* Small stacks: tens of client threads that only hold a socket and a few buffers. */
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < num_threads; i++) {
        ts[i] = (struct thread_start){ &go, fn, (char *)args + (size_t)i * arg_size };
        ck_assert_int_eq(pthread_create(&th[i], &attr, thread_main, &ts[i]), 0);
    }
    for (int i = 0; i < num_threads; i++)
        pthread_join(th[i], NULL);
    pthread_attr_destroy(&attr);
    pthread_barrier_destroy(&go);
    free(th);
    free(ts);
}

static void copy_str(char *dst, size_t cap, const cJSON *v)
{
    snprintf(dst, cap, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

/* A non-streamed answer: choices' texts and finish reasons, or the error's code. */
static void take_json(struct stress_answer *a, const char *body)
{
    cJSON *j = cJSON_Parse(body);
    const cJSON *c, *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    int k = 0;

    if (err)
        copy_str(a->code, sizeof a->code, cJSON_GetObjectItemCaseSensitive(err, "code"));
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(j, "choices")) {
        const cJSON *ix = cJSON_GetObjectItemCaseSensitive(c, "index");
        const char *t = it_choice_text(j, k++);
        int i = cJSON_IsNumber(ix) ? ix->valueint : -1;

        if (i < 0 || i >= STRESS_MAX_CHOICES)
            continue;
        a->num_choices = i + 1 > a->num_choices ? i + 1 : a->num_choices;
        copy_str(a->finish[i], sizeof a->finish[i], cJSON_GetObjectItemCaseSensitive(c, "finish_reason"));
        free(a->text[i]);
        a->text[i] = strdup(t ? t : "");
    }
    cJSON_Delete(j);
}

void stress_call(int port, const char *path, const char *body, struct stress_answer *a)
{
    struct hc_response r;
    char type[64] = "";

    memset(a, 0, sizeof *a);
    hc_request(port, "POST", path, NULL, body, &r, 120);
    a->status = r.status;
    hc_header(&r, "Retry-After", a->retry_after, sizeof a->retry_after);
    hc_header(&r, "Content-Type", type, sizeof type);
    if (r.status == 200 && !strncmp(type, "text/event-stream", 17)) {
        struct it_stream s;
        const cJSON *ev;

        it_stream_parse(&r, &s);
        a->stream_done = s.done;
        a->stream_clean = s.clean;
        cJSON_ArrayForEach(ev, s.events)
            a->stream_error = a->stream_error || cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(ev, "error"));
        for (int i = 0; i < STRESS_MAX_CHOICES; i++) {
            if (!s.text[i])
                continue;
            a->num_choices = i + 1;
            a->text[i] = strdup(s.text[i]);
            snprintf(a->finish[i], sizeof a->finish[i], "%s", s.finish[i] ? s.finish[i] : "");
        }
        it_stream_fini(&s);
    } else if (r.body) {
        take_json(a, r.body);
    }
    hc_response_fini(&r);
}

void stress_answer_fini(struct stress_answer *a)
{
    for (int i = 0; i < STRESS_MAX_CHOICES; i++)
        free(a->text[i]);
    memset(a, 0, sizeof *a);
}

char *stress_solo(const struct daemon *d, const char *path, const char *body)
{
    struct stress_answer a;
    char *text;

    stress_call(d->port, path, body, &a);
    ck_assert_msg(a.status == 200 && a.text[0], "%s %s: %d", path, body, a.status);
    text = a.text[0];
    a.text[0] = NULL;
    stress_answer_fini(&a);
    return text;
}

char *stress_read_head(int fd, double timeout_s)
{
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    double end = stress_now() + timeout_s;

    while (buf && n + 1 < cap) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        double left = end - stress_now();
        ssize_t got;

        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0)
            break;
        if ((got = recv(fd, buf + n, cap - n - 1, 0)) <= 0)
            break;
        n += (size_t)got;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    if (buf && n == 0) {
        free(buf);
        return NULL;
    }
    if (buf)
        buf[n] = '\0';
    return buf;
}

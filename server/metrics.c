/* metrics.c — counters and fixed-bucket histograms, rendered in Prometheus' text format:
 * "# HELP", "# TYPE", then one sample per line; histograms as cumulative _bucket{le=…}
 * lines ending in le="+Inf", then _sum and _count. */
#include "server/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Seconds. TTFT and end-to-end span a CPU test model to a long GPU prefill; TPOT goes down
 * to a millisecond (a small model on an H100). */
static const double ttft_bounds[] = { 0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                      0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640 };
static const double tpot_bounds[] = { 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1,
                                      0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10 };
static const double e2e_bounds[] = { 0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20,
                                     30, 40, 50, 60, 120, 240, 480, 960, 1920 };

static const char *const finish_names[METRICS_NUM_FINISH] = { "stop", "length", "abort", "error" };

static void hist_init(struct metrics_hist *h, const double *bounds, int n)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->num_bounds = n;
}

void metrics_init(struct metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    hist_init(&m->ttft, ttft_bounds, (int)(sizeof ttft_bounds / sizeof *ttft_bounds));
    hist_init(&m->tpot, tpot_bounds, (int)(sizeof tpot_bounds / sizeof *tpot_bounds));
    hist_init(&m->e2e, e2e_bounds, (int)(sizeof e2e_bounds / sizeof *e2e_bounds));
}

void metrics_fini(struct metrics *m)
{
    pthread_mutex_destroy(&m->lock);
}

/* Bucket i holds values v with bounds[i-1] < v <= bounds[i] (Prometheus' "le"). */
static void hist_observe(struct metrics_hist *h, double v)
{
    int i = 0;

    while (i < h->num_bounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

void metrics_request_done(struct metrics *m, enum metrics_finish f, double ttft_s, double tpot_s,
                          double e2e_s)
{
    pthread_mutex_lock(&m->lock);
    if (f >= 0 && f < METRICS_NUM_FINISH)
        m->finished[f]++;
    if (ttft_s >= 0)
        hist_observe(&m->ttft, ttft_s);
    if (tpot_s >= 0)
        hist_observe(&m->tpot, tpot_s);
    if (e2e_s >= 0)
        hist_observe(&m->e2e, e2e_s);
    pthread_mutex_unlock(&m->lock);
}

void metrics_http_status(struct metrics *m, int status)
{
    if (status < 100 || status > 599)
        return;
    pthread_mutex_lock(&m->lock);
    m->http_status[status]++;
    pthread_mutex_unlock(&m->lock);
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The shortest of %.15g and %.17g that reads back as v. */
static void number(FILE *f, double v)
{
    char buf[32];

    snprintf(buf, sizeof buf, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, sizeof buf, "%.17g", v);
    fputs(buf, f);
}

static void gauge(FILE *f, const char *name, const char *help, double v)
{
    head(f, name, "gauge", help);
    fprintf(f, "%s ", name);
    number(f, v);
    fputc('\n', f);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v)
{
    head(f, name, "counter", help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

static void histogram(FILE *f, const char *name, const char *help, const struct metrics_hist *h)
{
    uint64_t cum = 0;

    head(f, name, "histogram", help);
    for (int i = 0; i < h->num_bounds; i++) {
        cum += h->counts[i];
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[h->num_bounds];
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    fprintf(f, "%s_sum ", name);
    number(f, h->sum);
    fprintf(f, "\n%s_count %llu\n", name, (unsigned long long)h->count);
}

char *metrics_render(struct metrics *m, const struct metrics_engine *e, size_t *len)
{
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    struct metrics snap;

    if (!f)
        return NULL;
    /* Copy under the lock, format outside it: a scrape never holds up a request. */
    pthread_mutex_lock(&m->lock);
    memcpy(snap.finished, m->finished, sizeof snap.finished);
    memcpy(snap.http_status, m->http_status, sizeof snap.http_status);
    snap.ttft = m->ttft;
    snap.tpot = m->tpot;
    snap.e2e = m->e2e;
    pthread_mutex_unlock(&m->lock);

    gauge(f, "osprey_engine_healthy", "1 while the engine runs steps, 0 once it failed.", e->healthy);
    gauge(f, "osprey_requests_running", "Requests in the running batch.", e->num_running);
    gauge(f, "osprey_requests_waiting", "Requests waiting to be scheduled.", e->num_waiting);
    gauge(f, "osprey_kv_cache_usage_ratio", "Fraction of the KV cache's bytes in use (0 to 1).",
          e->kv_cache_usage);
    if (e->num_kv_groups > 0) {
        head(f, "osprey_kv_cache_group_usage_ratio", "gauge", "Fraction of a KV-cache group's "
             "blocks in use (0 to 1); each group has its own pool (label window: 0 = full).");
        for (int g = 0; g < e->num_kv_groups && g < 4; g++)
        {
            fprintf(f, "osprey_kv_cache_group_usage_ratio{group=\"%d\",window=\"%d\"} ", g,
                    e->kv_group_window[g]);
            number(f, e->kv_group_usage[g]);
            fputc('\n', f);
        }
        head(f, "osprey_kv_cache_group_blocks", "gauge", "Blocks of a KV-cache group's pool.");
        for (int g = 0; g < e->num_kv_groups && g < 4; g++)
            fprintf(f, "osprey_kv_cache_group_blocks{group=\"%d\",window=\"%d\"} %llu\n", g,
                    e->kv_group_window[g], (unsigned long long)e->kv_group_blocks[g]);
    }
    if (e->kv_cache_dtype) {
        /* an info metric: the value is 1, the label says which element type the cache holds */
        head(f, "osprey_kv_cache_info", "gauge", "The KV cache's element type (label dtype).");
        fprintf(f, "osprey_kv_cache_info{dtype=\"%s\"} 1\n", e->kv_cache_dtype);
        gauge(f, "osprey_kv_cache_capacity_tokens", "Tokens the KV cache holds (blocks x block size).",
              (double)e->kv_cache_tokens);
    }
    if (e->num_ranks > 0) {
        /* the ranks hold the same blocks, each of its own KV heads: the usage ratio is every
         * rank's, the bytes are each device's own */
        head(f, "osprey_kv_cache_rank_capacity_bytes", "gauge", "KV-cache bytes of each "
             "tensor-parallel rank on its device (labels rank, device).");
        for (int i = 0; i < e->num_ranks; i++)
            fprintf(f, "osprey_kv_cache_rank_capacity_bytes{rank=\"%d\",device=\"%d\"} %llu\n",
                    i, e->rank_device[i], (unsigned long long)e->rank_kv_cache_bytes[i]);
        head(f, "osprey_kv_cache_rank_usage_bytes", "gauge", "KV-cache bytes in use on each "
             "tensor-parallel rank's device (labels rank, device).");
        for (int i = 0; i < e->num_ranks; i++) {
            fprintf(f, "osprey_kv_cache_rank_usage_bytes{rank=\"%d\",device=\"%d\"} ", i,
                    e->rank_device[i]);
            number(f, (double)(uint64_t)(e->kv_cache_usage * (double)e->rank_kv_cache_bytes[i]));
            fputc('\n', f);
        }
    }
    counter(f, "osprey_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.",
            e->prefix_queries);
    counter(f, "osprey_prefix_cache_hits_total", "Prompt tokens found in the prefix cache.",
            e->prefix_hits);
    counter(f, "osprey_prompt_tokens_total", "Prompt tokens processed.", e->prompt_tokens);
    counter(f, "osprey_generation_tokens_total", "Tokens generated.", e->generation_tokens);
    counter(f, "osprey_preemptions_total", "Requests preempted for lack of KV-cache blocks.",
            e->preemptions);

    head(f, "osprey_requests_finished_total", "counter",
         "Engine requests (one per choice) by finish reason.");
    for (int i = 0; i < METRICS_NUM_FINISH; i++)
        fprintf(f, "osprey_requests_finished_total{finish_reason=\"%s\"} %llu\n", finish_names[i],
                (unsigned long long)snap.finished[i]);
    head(f, "osprey_http_requests_total", "counter", "HTTP responses by status code.");
    for (int s = 100; s < 600; s++)
        if (snap.http_status[s])
            fprintf(f, "osprey_http_requests_total{status=\"%d\"} %llu\n", s,
                    (unsigned long long)snap.http_status[s]);

    histogram(f, "osprey_time_to_first_token_seconds",
              "Time from arrival to the first generated token.", &snap.ttft);
    histogram(f, "osprey_time_per_output_token_seconds",
              "Mean time between generated tokens after the first, per request.", &snap.tpot);
    histogram(f, "osprey_e2e_request_latency_seconds", "Time from arrival to the last token.",
              &snap.e2e);
    if (fclose(f) || !out) {
        free(out);
        return NULL;
    }
    *len = n;
    return out;
}

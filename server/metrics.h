/* metrics.h — the daemon's Prometheus counters and histograms and the text exposition format
 * served at /metrics (names osprey_*, listed in README.md). Updated from any thread under one
 * mutex: a few increments per request, never per token. Engine gauges (running, waiting,
 * KV-cache usage, token counters) are read at scrape time and passed in by the caller. */
#ifndef OSPREY_METRICS_H
#define OSPREY_METRICS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum metrics_finish { METRICS_STOP, METRICS_LENGTH, METRICS_ABORT, METRICS_ERROR, METRICS_NUM_FINISH };

#define METRICS_MAX_BUCKETS 32

struct metrics_hist {
    const double *bounds;                      /* [num_bounds] ascending upper bounds, seconds */
    int num_bounds;
    uint64_t counts[METRICS_MAX_BUCKETS + 1];  /* per bucket, not cumulative; last: +Inf */
    double sum;                                /* seconds */
    uint64_t count;
};

struct metrics {
    pthread_mutex_t lock;
    uint64_t finished[METRICS_NUM_FINISH];     /* requests (choices) by finish reason */
    uint64_t http_status[600];                 /* HTTP responses by status code */
    struct metrics_hist ttft, tpot, e2e;       /* seconds */
};

/* Engine figures at scrape time (engine_get_stats). */
struct metrics_engine {
    int num_running, num_waiting;
    double kv_cache_usage;                     /* 0..1: bytes of used blocks / of the cache */
    int num_kv_groups;                         /* per KV-cache group (its own pool): */
    int kv_group_window[4];                    /* 0 = full attention */
    double kv_group_usage[4];                  /* 0..1: used blocks / its blocks */
    uint64_t kv_group_blocks[4];
    uint64_t prefix_queries, prefix_hits;      /* tokens */
    uint64_t prompt_tokens, generation_tokens;
    uint64_t preemptions;
    bool healthy;
    const char *kv_cache_dtype;                /* "f32", "bf16", "fp8_e4m3"; NULL: not reported */
    uint64_t kv_cache_tokens;                  /* tokens the KV cache holds */
    int num_ranks;                             /* tensor-parallel ranks; 0: not reported */
    const int *rank_device;                    /* [num_ranks] borrowed */
    const uint64_t *rank_kv_cache_bytes;       /* [num_ranks] borrowed */
};

void metrics_init(struct metrics *m);
void metrics_fini(struct metrics *m);

/* One finished engine request. ttft_s / tpot_s < 0: not observed (no token, or one). */
void metrics_request_done(struct metrics *m, enum metrics_finish f, double ttft_s, double tpot_s,
                          double e2e_s);
/* One HTTP response (status 100..599; others are ignored). */
void metrics_http_status(struct metrics *m, int status);

/* The text exposition format (version 0.0.4): malloc'd, *len bytes, NULL when out of memory. */
char *metrics_render(struct metrics *m, const struct metrics_engine *e, size_t *len);

#endif

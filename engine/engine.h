/* engine.h — the engine: model + backend + runner + scheduler driven by one thread with a
 * libuv loop (DESIGN.md "Threads"). Any thread submits and aborts requests; the engine
 * thread runs steps and hands each request's new tokens and text to its callback.
 * Usable without HTTP: `osprey bench` and `osprey generate` are built on it.
 *
 * Lifetime of a request: engine_submit() copies everything it needs; the callback runs on
 * the engine thread after every step that produced output for the request, and exactly
 * once with `finished` set — for every accepted request, whatever ends it (stop, length,
 * abort, error, shutdown). After that call the engine never touches `user` again. */
#ifndef OSPREY_ENGINE_H
#define OSPREY_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gen_params.h"  /* struct gen_params */
#include "engine/sampler.h"     /* struct sample_result */
#include "engine/base/finish_reason.h"   /* enum finish_reason */

struct backend;
struct engine;
struct tokenizer;
struct model_config;

struct engine_options {
    const char *model_dir;
    const char *backend;              /* "cpu", "cuda", or NULL/"auto": cuda when present */
    const struct tokenizer *tokenizer;   /* borrowed; detokenizes outputs; NULL: no text */
    int tensor_parallel_size;         /* 1 = none; N: the model sharded over N ranks */
    int num_threads;                  /* cpu backend workers, 0 = all cores */
    /* KV cache: explicit bytes, or (0) a fraction of free GPU memory / a CPU default */
    size_t kv_cache_bytes;
    float gpu_memory_utilization;
    int block_size;
    int max_num_seqs;
    int max_num_batched_tokens;
    int max_model_len;                /* 0 = the model's max_position_embeddings */
    bool enable_prefix_caching;
    bool enforce_eager;               /* no CUDA graphs */
    const int *graph_sizes;           /* decode batch sizes to capture (borrowed) */
    int num_graph_sizes;
    const int *piece_sizes;           /* token counts of the piecewise graphs of mixed and
                                       * prefill steps (engine/runner_pieces.h; borrowed) */
    int num_piece_sizes;
    bool fused_rope_cache;
    int max_waiting;                  /* submit answers -EAGAIN past this many waiting */
    uint64_t seed;                    /* base for requests without a seed; 0 = from the clock */
    const char *kv_cache_dtype;       /* NULL/"auto" (the backend's), "bf16", "fp8" (e4m3, cpu) */
    const char *quantization;         /* NULL, or "fp8": float linear weights to fp8 at load */
    bool dummy_weights;               /* --load-format dummy: random weights, config.json only */
    bool calculate_kv_scales;         /* fp8 cache: scales from the first prefill (vLLM's) */
    int grammar_threads;              /* threads that fill a step's grammar masks (the engine
                                         thread counts); 0 = auto: num_threads when set, else
                                         the online CPUs, at most 8 */
    void (*patch_backend)(struct backend *be);   /* tests: swaps the backend's ops (a fake
                                      * graph backend on cpu) before the runner exists;
                                      * NULL, not a flag */
};

/* Defaults: cpu/auto backend, block 16, 256 seqs, 8192 tokens, prefix caching on, graphs on,
 * max_waiting 1024. */
void engine_options_init(struct engine_options *o);

/* One delivery to a request's callback. Pointers are valid during the call only. */
struct engine_output {
    uint64_t id;
    const int32_t *token_ids;         /* [num_tokens] new tokens since the last delivery */
    const struct sample_result *samples;   /* [num_tokens] logprobs (when asked) */
    const size_t *text_offsets;       /* [num_tokens] bytes into the request's whole text where
                                         each token's text starts (engine/output.h); one that
                                         came before a stop string's cut may point past it */
    int num_tokens;
    const char *text;                 /* new text: complete UTF-8, stop strings cut */
    size_t text_len;
    bool finished;
    enum finish_reason finish_reason;
    const char *error;                /* FINISH_ERROR: why; else NULL */
    int num_prompt_tokens;
    int num_output_tokens;            /* so far */
    int num_cached_tokens;            /* prompt tokens served from the prefix cache */
    double arrival_s, first_token_s, now_s;   /* now_s() clock */
};

typedef void (*engine_output_cb)(void *user, const struct engine_output *out);

struct engine_request_desc {
    const int32_t *prompt;            /* copied */
    int num_prompt;
    const struct gen_params *params;  /* deep-copied (stop strings, stop ids) */
    engine_output_cb cb;
    void *user;
};

/* Loads the model, creates backend, runner (captures graphs) and scheduler. Returns 0 or a
 * negative errno with a message. Does not start the thread. */
int engine_create(struct engine **out, const struct engine_options *o, char *err);
/* Starts the engine thread. */
int engine_start(struct engine *e, char *err);
/* Stops accepting, lets running and waiting requests finish for up to grace_s seconds,
 * aborts the rest (finish_reason FINISH_ABORT), stops and joins the thread. */
void engine_shutdown(struct engine *e, double grace_s);
/* Shuts down if needed and frees everything. NULL-safe. */
void engine_destroy(struct engine *e);

/* Thread-safe. Returns 0 with *id set, or: -EAGAIN (waiting queue full; retry later),
 * -E2BIG (prompt + max_tokens can never fit), -EINVAL (bad request), -ESHUTDOWN
 * (draining), -EIO (engine dead). The callback is called only after a 0 return. */
int engine_submit(struct engine *e, const struct engine_request_desc *d, uint64_t *id, char *err);
/* Thread-safe, idempotent; an unknown or finished id is ignored. The request ends with
 * FINISH_ABORT and its blocks are freed before the next step. */
void engine_abort(struct engine *e, uint64_t id);

#define ENGINE_MAX_KV_GROUPS 4   /* == KV_MAX_GROUPS (scheduler/batch.h), checked in engine.c */
#define ENGINE_MAX_RANKS 64      /* tensor_parallel_size's bound (config/options.c) */

struct engine_stats {
    int num_running, num_waiting;
    int num_blocks, num_free_blocks;          /* over every group's pool */
    double kv_cache_usage;                    /* 0..1: bytes of the blocks in use / the cache's
                                                 (a block costs its group's layers) */
    int num_kv_groups;                        /* each with its own pool of blocks: */
    int kv_group_window[ENGINE_MAX_KV_GROUPS];   /* 0 = full attention */
    int kv_group_blocks[ENGINE_MAX_KV_GROUPS], kv_group_free_blocks[ENGINE_MAX_KV_GROUPS];
    uint64_t prefix_queries, prefix_hits;     /* tokens */
    uint64_t num_preemptions;
    uint64_t prompt_tokens, generation_tokens;   /* counters since start */
    uint64_t num_steps;
    uint64_t num_decode_steps;                /* decode-only steps and the seconds they took */
    double decode_step_s;                     /* (in the runner: its launch and finish, the
                                                 graph replay on cuda) */
    double decode_mask_s;                     /* of those steps: making the masks between the
                                                 runner's launch and finish (while the device
                                                 runs the forward, on cuda) */
    double decode_mask_hidden_s;              /* of decode_mask_s, the steps whose forward was
                                                 still running when their masks were done:
                                                 wholly hidden (0 on cpu, whose forward is
                                                 done when launch returns) */
    double decode_host_s;                     /* of those steps: the engine thread's own work
                                                 (scheduling, the rows, the scheduler's update,
                                                 deliveries), outside the runner and the masks:
                                                 time the device idles unless it is overlapped */
    bool healthy;                             /* false once a step failed beyond recovery */
    bool ready;                               /* model loaded, graphs captured, thread running */
    double alive_s;                           /* now_s() when the engine thread last ended a
                                                 step or answered engine_ping (engine_start
                                                 sets it: a new engine has just turned) */
    uint64_t progress;                        /* layers run since start, bumped inside a step:
                                                 while it moves, a long step is not a hung one */
    const char *kv_cache_dtype;               /* static: "f32", "bf16", "fp8_e4m3" */
    int64_t kv_cache_tokens;                  /* tokens the KV cache holds: blocks * block_size */
    int num_ranks;                            /* static: tensor-parallel ranks (1 without); the
                                                 first ENGINE_MAX_RANKS of them each: */
    int rank_device[ENGINE_MAX_RANKS];        /* its device (cuda ordinal; cpu: 0) */
    uint64_t rank_kv_cache_bytes[ENGINE_MAX_RANKS];   /* its KV cache: every block of its KV
                                                 heads (the usage ratio holds on every rank:
                                                 the ranks hold the same blocks) */
};
void engine_get_stats(struct engine *e, struct engine_stats *st);
/* Asks the engine thread to show that it still turns: it sets alive_s as soon as it is
 * between steps. For the watchdog, which must stop on a hung step, not only a failed one.
 * Thread-safe, cheap. */
void engine_ping(struct engine *e);

const struct model_config *engine_model_config(const struct engine *e);
int engine_max_model_len(const struct engine *e);
/* Prompt + max_tokens the KV cache holds for one request (at most max_model_len): a longer
 * request is refused at submit (-E2BIG), since it could never run. */
int engine_max_request_tokens(const struct engine *e);

#endif

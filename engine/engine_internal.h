/* engine_internal.h — the engine's own state, shared by engine.c (the engine thread and
 * the API other threads call) and engine_create.c (building an engine: model, KV budget,
 * backend, runner, scheduler). Nothing outside those two files includes it. */
#ifndef OSPREY_ENGINE_INTERNAL_H
#define OSPREY_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "engine/engine.h"
#include "engine/grammar/grammar.h"
#include "engine/model/model.h"
#include "engine/output.h"
#include "scheduler/scheduler.h"

struct engine_request {
    struct sched_request sr;         /* the scheduler's view; sr.user points back here */
    uint64_t id;
    struct gen_params params;        /* deep copy: stop strings and ids owned here */
    int32_t *tokens;                 /* [num_prompt + max_tokens]: sr.token_ids */
    int32_t *banned;                 /* EOS + stop ids, banned before min_tokens */
    int num_banned;
    struct grammar_matcher *matcher; /* the grammar's state, or NULL: unconstrained */
    bool grammar_failed;             /* its mask could not be made: the request ends */
    int accept_rc;                   /* the step's advance over its sampled token (0 = fits) */
    int grammar_words;               /* words of its mask the grammar fills (<= mask_words) */
    uint64_t seed;
    engine_output_cb cb;
    void *user;
    struct out_text text;
    double arrival_s, first_token_s;
    int num_delivered;               /* output tokens handed to the callback */
    struct engine_request *next, *prev;   /* inbox, then the live list */
};

struct engine {
    struct engine_options opt;
    struct model model;
    struct backend *be;
    struct runner *runner;
    struct scheduler *sched;
    const struct tokenizer *tok;     /* borrowed */
    int max_model_len;
    int max_request_tokens;           /* prompt + max_tokens the KV cache holds for one request */
    int32_t eos_ids[MODEL_MAX_EOS];
    int num_eos;

    /* shared with other threads, under lock */
    pthread_mutex_t lock;
    struct engine_request *inbox, *inbox_tail;
    int inbox_len;
    uint64_t *aborts;
    int num_aborts, cap_aborts;
    uint64_t next_id;
    bool started, draining, dead;
    double drain_deadline_s;
    struct engine_stats stats;

    /* engine thread only */
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wakeup;
    uv_idle_t stepper;
    bool stepping;
    struct engine_request *live;     /* admitted to the scheduler */
    struct sample_row *rows;         /* [cap_reqs]: backend_options.max_reqs */
    struct sample_result *results;   /* [cap_reqs] */
    int32_t *sampled;                /* [cap_reqs] */
    uint32_t *masks;                 /* [cap_reqs * mask_words] masks of a step's rows (grammars,
                                      * allowed_token_ids): the runner's mask rows, borrowed */
    int mask_words;                  /* words per row: covers the model's and grammars' vocab */
    uint32_t *ids_mask;              /* [mask_words] allowed_token_ids as a mask, to AND into a grammar's */
    struct threadpool *mask_pool;    /* fills the step's grammar masks, a row per task */
    int *graph_sizes;                /* the options' sizes within max_num_seqs */
    int num_graph_sizes;
    uv_timer_t drain_timer;          /* wakes the loop when the grace period ends */
    uint64_t num_steps, num_decode_steps;
    double decode_step_s;            /* in the runner (launch and finish) */
    double decode_mask_s;            /* making masks between launch and finish */
    double decode_mask_hidden_s;     /* of it, in steps whose forward still ran after them */
    double decode_host_s;            /* the rest of those steps: the engine thread's own work */
    uint64_t rng;
    long fault_step;                 /* test-only fault point: fail step N (0 = off) */
    bool fault_sticky;
    long fault_hang_ms;              /* ... or let it hang this long, then run it */
    uint64_t progress;               /* layers run (forward() bumps it, atomically): read by
                                        engine_get_stats for the watchdog */
};

#endif

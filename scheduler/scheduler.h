/* scheduler.h — the continuous-batching scheduler (DESIGN.md "Scheduler"): decides every
 * engine step which requests run and how many tokens each, owns the KV block pool, and
 * builds the step batch (batch.h) for the model runner. Pure C: no CUDA, no HTTP, no threads
 * (the engine thread alone calls it).
 *
 * A step: decodes of running requests first (oldest first), then the remaining prefill
 * chunks of running requests, then new admissions from the waiting queue, all within one
 * token budget (max_num_batched_tokens) and max_num_seqs requests; a long prompt is split
 * into chunks over several steps so that it never stalls the decodes.
 *
 * Order is (priority, arrival): FCFS within a priority, lower priority values first. When a
 * running request needs a block and none is free, the request last in that order is
 * preempted (blocks freed, back to the waiting queue where its order puts it, recomputed
 * later with its generated tokens). The first request in order is therefore never
 * preempted while others run, and on its own it always fits: sched_add refuses a request
 * whose worst case exceeds the pool. A step that preempted admits nobody new.
 *
 * Prefix caching works for every KV group, sliding-window groups included (kv_cache.h). */
#ifndef OSPREY_SCHEDULER_H
#define OSPREY_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "scheduler/batch.h"     /* struct step_batch, KV_MAX_GROUPS */
#include "scheduler/kv_cache.h"  /* struct kv_cache (sched_kv_cache) */
#include "scheduler/request.h"   /* struct sched_request, enum finish_reason */

struct scheduler;

struct sched_config {
    int block_size;                   /* tokens per block, default 16 */
    int num_blocks;                   /* blocks of each group's pool (the engine sizes it) */
    int group_num_blocks[KV_MAX_GROUPS];  /* group g's pool instead, when > 0 (kv_budget.c) */
    int max_num_seqs;                 /* requests per step */
    int max_num_batched_tokens;       /* token budget per step, >= max_num_seqs */
    int max_model_len;                /* context limit per request, tokens */
    bool enable_prefix_caching;
    int num_kv_groups;                /* 1 for a plain Llama */
    int group_window[KV_MAX_GROUPS];  /* 0 = full attention, else sliding window in tokens */
    const int32_t *eos_ids;           /* [num_eos_ids] model-wide EOS ids, borrowed */
    int num_eos_ids;
    /* Capacity of the step batch, for padding to a captured graph size larger than the
     * limits above (batch_pad); 0 = the limits. */
    int batch_capacity_tokens, batch_capacity_reqs;
};

struct sched_stats {
    int num_running, num_waiting;
    int num_blocks, num_free_blocks;   /* over all groups; free includes prefix-cached blocks
                                          nobody holds */
    int num_kv_groups;
    int group_blocks[KV_MAX_GROUPS], group_free_blocks[KV_MAX_GROUPS];   /* per group's pool */
    uint64_t prefix_queries, prefix_hits;   /* tokens looked up / served, at each admission */
    uint64_t num_preemptions;
};

/* Returns 0, or -EINVAL (message naming the field and value in err) or -ENOMEM. */
int sched_create(struct scheduler **out, const struct sched_config *c, char *err);
void sched_destroy(struct scheduler *s);

/* Queues r (status SCHED_WAITING). The engine fills id, token_ids, num_prompt_tokens,
 * num_tokens (= num_prompt_tokens for a new request), max_tokens, min_tokens, ignore_eos,
 * stop ids, priority and user; the scheduler sets the rest. Returns 0; -E2BIG with a message
 * when it can never fit (prompt + max_tokens beyond max_model_len, or a worst case of more
 * blocks than the whole pool); -EINVAL on a bad request; -ENOMEM. */
int sched_add(struct scheduler *s, struct sched_request *r, char *err);

/* In any state, between steps (never between sched_schedule and its sched_update): frees
 * every block at once and removes r (status SCHED_FINISHED, FINISH_ABORT); it is in no later
 * batch and the engine may free it on return. A request the scheduler no longer holds is
 * left as it is. */
void sched_abort(struct scheduler *s, struct sched_request *r);

/* Builds the next step into a batch the scheduler owns (valid until the next call; the
 * runner may batch_pad it); NULL when nothing is left to run. Every non-NULL batch must be
 * followed by sched_update before the next call. */
struct step_batch *sched_schedule(struct scheduler *s);

/* After the runner: sampled[i] is the token of batch row b->sample_req[i] (b is the batch
 * sched_schedule returned). Appends the tokens, advances num_computed_tokens, applies the
 * stop checks (request_check_stop), frees finished requests' blocks (full blocks stay in the
 * prefix cache) and returns them in *finished (array valid until the next call; the
 * scheduler no longer holds them). Returns 0. */
int sched_update(struct scheduler *s, const struct step_batch *b, const int32_t *sampled,
                 struct sched_request ***finished, int *num_finished);

/* The engine found a stop string (FINISH_STOP) or failed r (FINISH_ERROR): finishes r now,
 * between steps, and frees its blocks. No-op for a request the scheduler no longer holds. */
void sched_finish(struct scheduler *s, struct sched_request *r, enum finish_reason why);
/* The runner failed the step that sched_schedule built: every request in it ends with
 * FINISH_ERROR (blocks freed, their prefix-cache hashes from the step dropped), and the
 * scheduler is ready for the next step. The engine reports the error to each request. */
void sched_fail_step(struct scheduler *s, struct step_batch *b);

void sched_get_stats(const struct scheduler *s, struct sched_stats *st);

/* Read-only view of the pool and geometry, for tests and /metrics. */
const struct kv_cache *sched_kv_cache(const struct scheduler *s);

#endif

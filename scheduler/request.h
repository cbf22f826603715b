/* request.h — a request as the scheduler sees it (struct sched_request): its tokens, limits,
 * state and finish reason, plus the scheduler's own bookkeeping (block tables, queue links).
 * The engine allocates and owns it; the scheduler borrows it from sched_add until it reports
 * it finished (sched_update), or until sched_finish / sched_abort return.
 *
 *   WAITING ──admitted──▶ RUNNING ──stop / length / sched_finish──▶ FINISHED
 *      ▲                    │
 *      └── PREEMPTED ◀──────┘  (blocks freed; prompt + output recomputed on re-admission)
 *   any state ──sched_abort──▶ FINISHED (FINISH_ABORT) */
#ifndef OSPREY_REQUEST_H
#define OSPREY_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/base/finish_reason.h"   /* enum finish_reason */
#include "scheduler/kv_cache.h"            /* struct kv_req */

enum sched_status {
    SCHED_WAITING,     /* queued, holds no block */
    SCHED_RUNNING,     /* admitted: holds blocks, may be mid-prefill */
    SCHED_PREEMPTED,   /* waiting again after preemption; keeps its generated tokens */
    SCHED_FINISHED,    /* done (finish_reason says why); the scheduler no longer holds it */
};

struct sched_request {
    uint64_t id;
    int32_t *token_ids;        /* [num_prompt_tokens + max_tokens] prompt then output; the
                                  engine owns the memory, the scheduler appends outputs */
    int num_prompt_tokens;     /* >= 1 */
    int num_tokens;            /* prompt + output so far */
    int max_tokens;            /* output tokens, >= 1 */
    int min_tokens;            /* EOS and stop ids do not finish before this many outputs */
    bool ignore_eos;
    const int32_t *stop_token_ids;   /* [num_stop_token_ids] borrowed */
    int num_stop_token_ids;
    int priority;              /* lower runs first; FCFS within a priority */

    /* Set by the scheduler. */
    enum sched_status status;
    enum finish_reason finish_reason;
    int num_computed_tokens;   /* tokens whose KV is in the cache (or is written this step) */
    int num_cached_tokens;     /* prompt tokens the prefix cache served at first admission */
    int num_preemptions;
    void *user;                /* the engine's request; the scheduler never touches it */

    /* The scheduler's own, valid while it holds the request. */
    struct kv_req kv;                    /* block tables per KV group, block hashes */
    struct sched_request *prev, *next;   /* links in the waiting or the running queue */
    uint64_t arrival;                    /* sched_add order: FCFS key after priority */
    bool held;                           /* between sched_add and finish or abort */
    bool admitted_once;                  /* num_cached_tokens is set */
};

/* A queue ordered by (priority, arrival): the waiting queue and the running set. */
struct request_queue {
    struct sched_request *head, *tail;
    int len;
};

/* Inserts r at its place in (priority, arrival) order. O(1) for the newest arrival and for
 * one that goes first (a preempted request); otherwise a walk from the tail. */
void request_queue_insert(struct request_queue *q, struct sched_request *r);
void request_queue_remove(struct request_queue *q, struct sched_request *r);

/* Checks what the engine filled in. Returns 0, or -EINVAL with a message naming the field. */
int request_validate(const struct sched_request *r, char *err);

static inline int request_num_output_tokens(const struct sched_request *r)
{
    return r->num_tokens - r->num_prompt_tokens;
}

/* Why r finishes after its newest token, or FINISH_NONE. A stop token (EOS unless
 * ignore_eos, or a stop id), once min_tokens outputs exist, is FINISH_STOP even when it is
 * also the last allowed token; then max_tokens and max_model_len give FINISH_LENGTH. */
enum finish_reason request_check_stop(const struct sched_request *r, const int32_t *eos_ids,
                                      int num_eos_ids, int max_model_len);

#endif

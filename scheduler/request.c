/* request.c — the request's own rules: validation at sched_add, the stop checks after each
 * sampled token, and the (priority, arrival)-ordered queues the scheduler keeps its
 * waiting and running requests in. */
#include <errno.h>
#include <stddef.h>

#include "engine/base/util.h"         /* errf, ASSERT */
#include "scheduler/request.h"

static bool runs_before(const struct sched_request *a, const struct sched_request *b)
{
    return a->priority != b->priority ? a->priority < b->priority : a->arrival < b->arrival;
}

void request_queue_insert(struct request_queue *q, struct sched_request *r)
{
    struct sched_request *at = q->tail;   /* r goes right after `at` (NULL: at the head) */

    if (q->head && runs_before(r, q->head))
        at = NULL;
    else
        while (at && runs_before(r, at))
            at = at->prev;
    r->prev = at;
    r->next = at ? at->next : q->head;
    if (r->next)
        r->next->prev = r;
    else
        q->tail = r;
    if (at)
        at->next = r;
    else
        q->head = r;
    q->len++;
}

void request_queue_remove(struct request_queue *q, struct sched_request *r)
{
    ASSERT(q->len > 0);
    if (r->prev)
        r->prev->next = r->next;
    else
        q->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        q->tail = r->prev;
    r->prev = r->next = NULL;
    q->len--;
}

int request_validate(const struct sched_request *r, char *err)
{
    if (!r->token_ids || r->num_prompt_tokens < 1) {
        errf(err, "request %llu: prompt is empty (num_prompt_tokens %d)",
             (unsigned long long)r->id, r->num_prompt_tokens);
        return -EINVAL;
    }
    if (r->max_tokens < 1) {
        errf(err, "request %llu: max_tokens %d must be at least 1",
             (unsigned long long)r->id, r->max_tokens);
        return -EINVAL;
    }
    if (r->min_tokens < 0 || r->min_tokens > r->max_tokens) {
        errf(err, "request %llu: min_tokens %d must lie in [0, max_tokens %d]",
             (unsigned long long)r->id, r->min_tokens, r->max_tokens);
        return -EINVAL;
    }
    if (r->num_tokens < r->num_prompt_tokens ||
        r->num_tokens - r->num_prompt_tokens >= r->max_tokens) {
        errf(err, "request %llu: num_tokens %d must lie in [num_prompt_tokens %d, %d)",
             (unsigned long long)r->id, r->num_tokens, r->num_prompt_tokens,
             r->num_prompt_tokens + r->max_tokens);
        return -EINVAL;
    }
    if (r->num_stop_token_ids < 0 || (r->num_stop_token_ids > 0 && !r->stop_token_ids)) {
        errf(err, "request %llu: bad stop_token_ids (%d ids)", (unsigned long long)r->id,
             r->num_stop_token_ids);
        return -EINVAL;
    }
    return 0;
}

static bool contains(const int32_t *ids, int n, int32_t tok)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == tok)
            return true;
    return false;
}

enum finish_reason request_check_stop(const struct sched_request *r, const int32_t *eos_ids,
                                      int num_eos_ids, int max_model_len)
{
    int32_t last = r->token_ids[r->num_tokens - 1];
    int num_out = request_num_output_tokens(r);

    if (num_out >= 1 && num_out >= r->min_tokens) {
        if (!r->ignore_eos && contains(eos_ids, num_eos_ids, last))
            return FINISH_STOP;
        if (contains(r->stop_token_ids, r->num_stop_token_ids, last))
            return FINISH_STOP;
    }
    if (num_out >= r->max_tokens || r->num_tokens >= max_model_len)
        return FINISH_LENGTH;
    return FINISH_NONE;
}

/* scheduler.c — one engine step at a time: picks the rows (request, new tokens) within the
 * budget, preempting the last request in (priority, arrival) order when blocks run out,
 * admits waiting requests with their cached prefix, writes the step batch, and after the
 * runner appends sampled tokens and finishes requests. Request rules live in request.c,
 * block tables in kv_cache.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/base/util.h"            /* errf, ASSERT, MIN, MAX */
#include "scheduler/scheduler.h"

/* One row of the step being built: a request and how many new tokens it runs. */
struct sched_row {
    struct sched_request *r;
    int num_new;
};

struct scheduler {
    struct sched_config cfg;
    struct kv_cache kv;
    struct step_batch batch;
    struct request_queue waiting;   /* WAITING and PREEMPTED, in (priority, arrival) order */
    struct request_queue running;   /* RUNNING, same order; len <= max_num_seqs */
    uint64_t next_arrival;

    struct sched_row *rows;         /* [max_num_seqs] this step, in batch order */
    int num_rows;
    int budget;                     /* tokens left in this step */
    bool in_step;                   /* a batch is out: sched_update comes next */

    struct sched_request **finished;  /* [max_num_seqs] reported by the last sched_update */

    uint64_t prefix_queries, prefix_hits, num_preemptions;
};

static int check_config(const struct sched_config *c, char *err)
{
#define BAD(cond, ...) do { if (cond) { errf(err, "scheduler config: " __VA_ARGS__); return -EINVAL; } } while (0)
    BAD(c->block_size < 1, "block_size %d must be at least 1", c->block_size);
    BAD(c->num_blocks < 1, "num_blocks %d must be at least 1", c->num_blocks);
    for (int g = 0; g < KV_MAX_GROUPS; g++)
        BAD(c->group_num_blocks[g] < 0, "group_num_blocks[%d] %d is negative", g,
            c->group_num_blocks[g]);
    BAD(c->max_num_seqs < 1, "max_num_seqs %d must be at least 1", c->max_num_seqs);
    BAD(c->max_num_batched_tokens < c->max_num_seqs,
        "max_num_batched_tokens %d is below max_num_seqs %d", c->max_num_batched_tokens,
        c->max_num_seqs);
    BAD(c->max_model_len < 2, "max_model_len %d must be at least 2", c->max_model_len);
    BAD(c->num_kv_groups < 1 || c->num_kv_groups > KV_MAX_GROUPS,
        "num_kv_groups %d must lie in [1, %d]", c->num_kv_groups, KV_MAX_GROUPS);
    for (int g = 0; g < c->num_kv_groups; g++)
        BAD(c->group_window[g] < 0, "group_window[%d] %d is negative", g, c->group_window[g]);
    BAD(c->num_eos_ids < 0 || (c->num_eos_ids > 0 && !c->eos_ids), "bad eos_ids (%d ids)",
        c->num_eos_ids);
    BAD(c->batch_capacity_tokens < 0 || c->batch_capacity_reqs < 0,
        "batch capacity %d tokens, %d requests is negative", c->batch_capacity_tokens,
        c->batch_capacity_reqs);
#undef BAD
    return 0;
}

int sched_create(struct scheduler **out, const struct sched_config *c, char *err)
{
    struct scheduler *s;
    int rc;

    *out = NULL;
    rc = check_config(c, err);
    if (rc)
        return rc;
    s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->cfg = *c;
    for (int g = 0; g < c->num_kv_groups; g++)
        if (s->cfg.group_num_blocks[g] == 0)
            s->cfg.group_num_blocks[g] = c->num_blocks;
    rc = kv_cache_init(&s->kv, c->block_size, s->cfg.group_num_blocks, c->num_kv_groups, c->group_window,
                       c->max_model_len, c->enable_prefix_caching);
    if (rc)
        goto fail;
    rc = batch_init(&s->batch, MAX(c->batch_capacity_tokens, c->max_num_batched_tokens),
                    MAX(c->batch_capacity_reqs, c->max_num_seqs), c->num_kv_groups,
                    s->kv.max_blocks_per_req);
    if (rc)
        goto fail;
    s->rows = calloc(c->max_num_seqs, sizeof *s->rows);
    s->finished = calloc(c->max_num_seqs, sizeof *s->finished);
    if (!s->rows || !s->finished) {
        rc = -ENOMEM;
        goto fail;
    }
    *out = s;
    return 0;
fail:
    errf(err, "scheduler: cannot set up %d blocks of %d tokens (%s)", c->num_blocks,
         c->block_size, rc == -ENOMEM ? "out of memory" : "bad size");
    sched_destroy(s);
    return rc;
}

/* Removes r from the scheduler: blocks and tables freed, status FINISHED. */
static void release(struct scheduler *s, struct sched_request *r, enum finish_reason why)
{
    if (r->status == SCHED_RUNNING)
        request_queue_remove(&s->running, r);
    else
        request_queue_remove(&s->waiting, r);
    kv_cache_req_fini(&s->kv, &r->kv);
    r->status = SCHED_FINISHED;
    r->finish_reason = why;
    r->held = false;
    LOG(LL_DEBUG, "sched", "req %llu finished (%s): %d tokens, %d output",
        (unsigned long long)r->id, finish_reason_name(why), r->num_tokens,
        request_num_output_tokens(r));
}

void sched_destroy(struct scheduler *s)
{
    if (!s)
        return;
    /* Requests still held belong to the engine; only our part of them goes. */
    while (s->running.head)
        release(s, s->running.head, FINISH_ABORT);
    while (s->waiting.head)
        release(s, s->waiting.head, FINISH_ABORT);
    batch_fini(&s->batch);
    kv_cache_fini(&s->kv);
    free(s->rows);
    free(s->finished);
    free(s);
}

int sched_add(struct scheduler *s, struct sched_request *r, char *err)
{
    int rc, len, need, max_chunk;

    if (r->held) {
        errf(err, "request %llu: already queued", (unsigned long long)r->id);
        return -EINVAL;
    }
    rc = request_validate(r, err);
    if (rc)
        return rc;
    /* Compare each part first so that the sum cannot overflow. */
    if (r->num_prompt_tokens > s->cfg.max_model_len || r->max_tokens > s->cfg.max_model_len ||
        r->num_prompt_tokens + r->max_tokens > s->cfg.max_model_len) {
        errf(err, "request %llu: prompt (%d tokens) + max_tokens (%d) exceeds max_model_len %d",
             (unsigned long long)r->id, r->num_prompt_tokens, r->max_tokens,
             s->cfg.max_model_len);
        return -E2BIG;
    }
    len = r->num_prompt_tokens + r->max_tokens;
    max_chunk = MIN(len, s->cfg.max_num_batched_tokens);
    for (int g = 0; g < s->cfg.num_kv_groups; g++) {
        need = kv_cache_max_blocks(&s->kv, g, len, max_chunk);
        if (need > s->cfg.group_num_blocks[g]) {
            errf(err, "request %llu: %d tokens need up to %d KV blocks of %d tokens in KV-cache "
                 "group %d; its pool has %d", (unsigned long long)r->id, len, need,
                 s->cfg.block_size, g, s->cfg.group_num_blocks[g]);
            return -E2BIG;
        }
    }
    rc = kv_cache_req_init(&s->kv, &r->kv, len);
    if (rc) {
        errf(err, "request %llu: out of memory for its block tables", (unsigned long long)r->id);
        return rc;
    }
    r->status = SCHED_WAITING;
    r->finish_reason = FINISH_NONE;
    r->num_computed_tokens = r->num_cached_tokens = r->num_preemptions = 0;
    r->arrival = s->next_arrival++;
    r->held = true;
    r->admitted_once = false;
    request_queue_insert(&s->waiting, r);
    LOG(LL_DEBUG, "sched", "req %llu queued: prompt=%d max_tokens=%d priority=%d",
        (unsigned long long)r->id, r->num_prompt_tokens, r->max_tokens, r->priority);
    return 0;
}

void sched_abort(struct scheduler *s, struct sched_request *r)
{
    ASSERT(!s->in_step);
    if (r->held)
        release(s, r, FINISH_ABORT);
}

void sched_finish(struct scheduler *s, struct sched_request *r, enum finish_reason why)
{
    ASSERT(!s->in_step);
    if (r->held)
        release(s, r, why);
}

/* Takes r out of this step's rows (it is being preempted), returning its tokens to the budget. */
static void unschedule(struct scheduler *s, struct sched_request *r)
{
    for (int i = 0; i < s->num_rows; i++) {
        if (s->rows[i].r != r)
            continue;
        s->budget += s->rows[i].num_new;
        memmove(&s->rows[i], &s->rows[i + 1], (s->num_rows - i - 1) * sizeof *s->rows);
        s->num_rows--;
        return;
    }
}

static void preempt(struct scheduler *s, struct sched_request *r)
{
    unschedule(s, r);
    request_queue_remove(&s->running, r);
    kv_cache_free(&s->kv, &r->kv);
    r->num_computed_tokens = 0;
    r->status = SCHED_PREEMPTED;
    r->num_preemptions++;
    s->num_preemptions++;
    request_queue_insert(&s->waiting, r);
    LOG(LL_DEBUG, "sched", "req %llu preempted: %d tokens to recompute, %d free blocks in "
        "group 0", (unsigned long long)r->id, r->num_tokens, kv_cache_num_free(&s->kv, 0));
}

static void add_row(struct scheduler *s, struct sched_request *r, int n)
{
    ASSERT(s->num_rows < s->cfg.max_num_seqs && n <= s->budget);
    s->rows[s->num_rows++] = (struct sched_row){ .r = r, .num_new = n };
    s->budget -= n;
}

/* Gives running request r blocks for n new tokens, preempting from the back of the running
 * order until they fit. Returns false when r itself had to go. */
static bool schedule_running(struct scheduler *s, struct sched_request *r, int n)
{
    while (kv_cache_allocate(&s->kv, &r->kv, r->token_ids, 0, r->num_computed_tokens, n) != 0) {
        struct sched_request *victim = s->running.tail;

        /* Alone it would always fit (sched_add's bound): someone else must hold blocks. */
        ASSERT(victim != r || s->running.len > 1);
        preempt(s, victim);
        if (victim == r)
            return false;
    }
    add_row(s, r, n);
    return true;
}

/* Schedules running requests with one token to compute (decodes: decode_pass) or with more
 * (prefill chunks). Returns whether anybody was preempted. */
static bool schedule_running_pass(struct scheduler *s, bool decode_pass)
{
    bool preempted = false;

    for (struct sched_request *r = s->running.head; r && s->budget > 0; r = r->next) {
        int left = r->num_tokens - r->num_computed_tokens;
        int before = s->running.len;

        ASSERT(left >= 1);
        if ((left == 1) != decode_pass)
            continue;
        if (!schedule_running(s, r, MIN(left, s->budget))) {
            preempted = true;
            break;   /* r was the back of the running order: nobody after it is left */
        }
        preempted |= s->running.len != before;
    }
    return preempted;
}

/* Admits waiting requests in order while the budget, max_num_seqs and the pool allow; stops
 * at the first that does not fit, so that nobody overtakes it. */
static void admit_waiting(struct scheduler *s)
{
    while (s->waiting.head && s->budget > 0 && s->running.len < s->cfg.max_num_seqs) {
        struct sched_request *r = s->waiting.head;
        int cached = kv_cache_lookup(&s->kv, &r->kv, r->token_ids, r->num_tokens);
        int n = MIN(r->num_tokens - cached, s->budget);

        if (kv_cache_allocate(&s->kv, &r->kv, r->token_ids, cached, cached, n) != 0)
            break;
        if (s->kv.prefix_caching) {
            s->prefix_queries += r->num_tokens;
            s->prefix_hits += cached;
        }
        if (!r->admitted_once) {
            r->num_cached_tokens = MIN(cached, r->num_prompt_tokens);
            r->admitted_once = true;
        }
        request_queue_remove(&s->waiting, r);
        r->status = SCHED_RUNNING;
        r->num_computed_tokens = cached;
        request_queue_insert(&s->running, r);
        add_row(s, r, n);
        LOG(LL_DEBUG, "sched", "req %llu admitted: %d tokens, %d cached, chunk %d",
            (unsigned long long)r->id, r->num_tokens, cached, n);
    }
}

/* Writes the rows into the step batch. */
static void build_batch(struct scheduler *s)
{
    struct step_batch *b = &s->batch;
    int mbr = b->max_blocks_per_req, t = 0;

    b->num_reqs = s->num_rows;
    b->num_sample = 0;
    b->decode_only = true;
    b->max_query_len = b->max_seq_len = 0;
    for (int i = 0; i < s->num_rows; i++) {
        struct sched_request *r = s->rows[i].r;
        int n = s->rows[i].num_new, c = r->num_computed_tokens;

        b->reqs[i] = r;
        b->query_start_loc[i] = t;
        b->seq_lens[i] = c + n;
        for (int k = 0; k < n; k++) {
            b->input_ids[t + k] = r->token_ids[c + k];
            b->positions[t + k] = c + k;
        }
        for (int g = 0; g < s->cfg.num_kv_groups; g++) {
            int32_t *row = b->block_table[g] + (size_t)i * mbr;
            int nb = r->kv.num_blocks[g];

            memcpy(row, r->kv.block_table[g], nb * sizeof *row);
            for (int j = nb; j < mbr; j++)
                row[j] = KV_NO_BLOCK;
            for (int k = 0; k < n; k++)
                b->slot_mapping[g][t + k] = kv_cache_slot(&s->kv, &r->kv, g, c + k);
        }
        if (c + n == r->num_tokens) {   /* the last known token runs: sample the next one */
            b->logits_indices[b->num_sample] = t + n - 1;
            b->sample_req[b->num_sample] = i;
            b->num_sample++;
        }
        b->decode_only &= n == 1;
        b->max_query_len = MAX(b->max_query_len, n);
        b->max_seq_len = MAX(b->max_seq_len, c + n);
        t += n;
    }
    b->query_start_loc[s->num_rows] = t;
    b->num_tokens = t;
    b->num_tokens_padded = t;
    b->num_reqs_padded = b->num_reqs;
    b->num_sample_padded = b->num_sample;
}

struct step_batch *sched_schedule(struct scheduler *s)
{
    bool preempted;

    ASSERT(!s->in_step);
    s->num_rows = 0;
    s->budget = s->cfg.max_num_batched_tokens;
    preempted = schedule_running_pass(s, true);
    preempted |= schedule_running_pass(s, false);
    /* After a preemption the pool is short: admitting now would only preempt again. */
    if (!preempted)
        admit_waiting(s);
    if (s->num_rows == 0)
        return NULL;
    build_batch(s);
    s->in_step = true;
    return &s->batch;
}

int sched_update(struct scheduler *s, const struct step_batch *b, const int32_t *sampled,
                 struct sched_request ***finished, int *num_finished)
{
    int nf = 0;

    ASSERT(s->in_step && b == &s->batch);
    s->in_step = false;
    for (int i = 0; i < b->num_reqs; i++)
        b->reqs[i]->num_computed_tokens += b->query_start_loc[i + 1] - b->query_start_loc[i];
    for (int k = 0; k < b->num_sample; k++) {
        struct sched_request *r = b->reqs[b->sample_req[k]];
        enum finish_reason why;

        ASSERT(r->num_tokens < r->num_prompt_tokens + r->max_tokens);
        r->token_ids[r->num_tokens++] = sampled[k];
        why = request_check_stop(r, s->cfg.eos_ids, s->cfg.num_eos_ids, s->cfg.max_model_len);
        if (why != FINISH_NONE) {
            release(s, r, why);
            s->finished[nf++] = r;
        }
    }
    *finished = s->finished;
    *num_finished = nf;
    return 0;
}

void sched_fail_step(struct scheduler *s, struct step_batch *b)
{
    ASSERT(s->in_step && b == &s->batch);
    s->in_step = false;
    for (int i = 0; i < b->num_reqs; i++) {
        struct sched_request *r = b->reqs[i];
        if (!r->held)
            continue;
        kv_cache_forget(&s->kv, &r->kv);
        release(s, r, FINISH_ERROR);
    }
}

void sched_get_stats(const struct scheduler *s, struct sched_stats *st)
{
    st->num_running = s->running.len;
    st->num_waiting = s->waiting.len;
    st->num_blocks = st->num_free_blocks = 0;
    st->num_kv_groups = s->cfg.num_kv_groups;
    for (int g = 0; g < s->cfg.num_kv_groups; g++) {
        st->group_blocks[g] = kv_cache_num_blocks(&s->kv, g);
        st->group_free_blocks[g] = kv_cache_num_free(&s->kv, g);
        st->num_blocks += st->group_blocks[g];
        st->num_free_blocks += st->group_free_blocks[g];
    }
    st->prefix_queries = s->prefix_queries;
    st->prefix_hits = s->prefix_hits;
    st->num_preemptions = s->num_preemptions;
}

const struct kv_cache *sched_kv_cache(const struct scheduler *s)
{
    return &s->kv;
}

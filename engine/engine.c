/* engine.c — the engine thread: a libuv loop that takes new and aborted requests from a
 * locked inbox (woken by uv_async_send), runs scheduler → runner → scheduler update steps
 * while there is work (an idle handle keeps the loop spinning only then), and hands each
 * request's new tokens and text to its callback; and the API other threads call. In struct
 * engine (engine_internal.h) everything below "engine thread only" is touched by that thread
 * alone; the inbox, the abort list, flags and stats sit behind e->lock. engine_create.c
 * builds the engine. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>   /* usleep: the test-only hang */
#include <uv.h>

#include "engine/backend.h"
#include "engine/cpu/threadpool.h"
#include "engine/engine_internal.h"
#include "engine/base/log.h"
#include "engine/base/rng.h"
#include "engine/runner.h"
#include "engine/base/util.h"

/* ---- requests ---------------------------------------------------------------------- */

static void request_free(struct engine_request *r)
{
    if (!r)
        return;
    out_text_fini(&r->text);
    for (int i = 0; i < r->params.num_stop; i++)
        free(r->params.stop[i]);
    free(r->params.stop);
    free(r->params.stop_token_ids);
    free(r->params.logit_bias_ids);
    free(r->params.logit_bias);
    free(r->params.allowed_token_ids);
    free(r->tokens);
    free(r->banned);
    grammar_matcher_destroy(r->matcher);
    free(r);
}

static struct engine_request *request_create(struct engine *e, const struct engine_request_desc *d)
{
    const struct gen_params *p = d->params;
    struct engine_request *r = calloc(1, sizeof *r);

    if (!r)
        return NULL;
    r->params = *p;
    r->params.stop = NULL;
    r->params.num_stop = 0;
    r->params.stop_token_ids = NULL;
    r->params.num_stop_token_ids = 0;
    r->params.logit_bias_ids = NULL;
    r->params.logit_bias = NULL;
    r->params.num_logit_bias = 0;
    r->params.allowed_token_ids = NULL;
    r->params.num_allowed_token_ids = 0;
    r->params.grammar = NULL;        /* the matcher holds the reference */
    if (p->num_logit_bias) {
        r->params.logit_bias_ids = malloc((size_t)p->num_logit_bias * sizeof(int32_t));
        r->params.logit_bias = malloc((size_t)p->num_logit_bias * sizeof(float));
        if (!r->params.logit_bias_ids || !r->params.logit_bias)
            goto fail;
        memcpy(r->params.logit_bias_ids, p->logit_bias_ids, (size_t)p->num_logit_bias * sizeof(int32_t));
        memcpy(r->params.logit_bias, p->logit_bias, (size_t)p->num_logit_bias * sizeof(float));
        r->params.num_logit_bias = p->num_logit_bias;
    }
    if (p->num_allowed_token_ids) {
        r->params.allowed_token_ids = malloc((size_t)p->num_allowed_token_ids * sizeof(int32_t));
        if (!r->params.allowed_token_ids)
            goto fail;
        memcpy(r->params.allowed_token_ids, p->allowed_token_ids, (size_t)p->num_allowed_token_ids * sizeof(int32_t));
        r->params.num_allowed_token_ids = p->num_allowed_token_ids;
    }
    if (p->grammar && grammar_matcher_create(&r->matcher, p->grammar))
        goto fail;
    r->grammar_words = p->grammar ? grammar_mask_words(p->grammar) : 0;
    r->tokens = malloc(((size_t)d->num_prompt + p->max_tokens) * sizeof *r->tokens);
    r->banned = malloc(((size_t)e->num_eos + p->num_stop_token_ids + 1) * sizeof *r->banned);
    if (!r->tokens || !r->banned)
        goto fail;
    if (p->num_stop) {
        r->params.stop = calloc(p->num_stop, sizeof *r->params.stop);
        if (!r->params.stop)
            goto fail;
        for (int i = 0; i < p->num_stop; i++) {
            if (!(r->params.stop[i] = strdup(p->stop[i])))
                goto fail;
            r->params.num_stop = i + 1;
        }
    }
    if (p->num_stop_token_ids) {
        r->params.stop_token_ids = malloc(p->num_stop_token_ids * sizeof(int32_t));
        if (!r->params.stop_token_ids)
            goto fail;
        memcpy(r->params.stop_token_ids, p->stop_token_ids, p->num_stop_token_ids * sizeof(int32_t));
        r->params.num_stop_token_ids = p->num_stop_token_ids;
    }
    memcpy(r->tokens, d->prompt, (size_t)d->num_prompt * sizeof *r->tokens);
    for (int i = 0; i < e->num_eos; i++)
        r->banned[r->num_banned++] = e->eos_ids[i];
    for (int i = 0; i < r->params.num_stop_token_ids; i++)
        r->banned[r->num_banned++] = r->params.stop_token_ids[i];

    r->cb = d->cb;
    r->user = d->user;
    r->arrival_s = now_s();
    r->sr.token_ids = r->tokens;
    r->sr.num_prompt_tokens = d->num_prompt;
    r->sr.num_tokens = d->num_prompt;
    r->sr.max_tokens = p->max_tokens;
    r->sr.min_tokens = p->min_tokens;
    r->sr.ignore_eos = p->ignore_eos;
    r->sr.stop_token_ids = r->params.stop_token_ids;
    r->sr.num_stop_token_ids = r->params.num_stop_token_ids;
    r->sr.priority = p->priority;
    r->sr.user = r;
    out_text_init(&r->text, e->tok, p->skip_special_tokens, r->params.stop, r->params.num_stop);
    r->text.include_stop = p->include_stop_str_in_output;
    return r;
fail:
    request_free(r);
    return NULL;
}

/* Hands the request's news to its callback. `tokens` are the new output tokens (their
 * samples alongside); final delivers the rest of the text and ends the request. */
static void deliver(struct engine *e, struct engine_request *r, const int32_t *tokens,
                    const struct sample_result *samples, int n, bool final,
                    enum finish_reason why, const char *error)
{
    struct engine_output out = {
        .id = r->id,
        .token_ids = tokens,
        .samples = samples,
        .text_offsets = n > 0 ? &r->text.token_start : NULL,   /* n is 0 or 1: the last push */
        .num_tokens = n,
        .finished = final,
        .finish_reason = final ? why : FINISH_NONE,
        .error = error,
        .num_prompt_tokens = r->sr.num_prompt_tokens,
        .num_output_tokens = r->num_delivered + n,
        .num_cached_tokens = r->sr.num_cached_tokens,
        .arrival_s = r->arrival_s,
        .now_s = now_s(),
    };

    if (n > 0 && r->first_token_s == 0)
        r->first_token_s = out.now_s;
    out.first_token_s = r->first_token_s;
    out_text_take(&r->text, final, &out.text, &out.text_len);
    r->num_delivered += n;
    if (n == 0 && out.text_len == 0 && !final)
        return;
    r->cb(r->user, &out);
}

static void live_unlink(struct engine *e, struct engine_request *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        e->live = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

/* Ends a live request: the scheduler lets go of it (if it still holds it), the callback
 * hears the end, the request is freed. */
static void finish_live(struct engine *e, struct engine_request *r, enum finish_reason why,
                        const char *error)
{
    if (r->sr.status != SCHED_FINISHED)
        sched_abort(e->sched, &r->sr);
    live_unlink(e, r);
    deliver(e, r, NULL, NULL, 0, true, why, error);
    request_free(r);
}

/* ---- one step ---------------------------------------------------------------------- */

_Static_assert(ENGINE_MAX_KV_GROUPS == KV_MAX_GROUPS, "engine_stats' groups are the scheduler's");

/* Bytes in use over the cache's bytes: a block of group g costs g's layers. */
static double kv_usage(const struct model_config *c, const struct sched_stats *ss)
{
    double used = 0, all = 0;

    for (int l = 0; l < c->num_layers; l++) {
        int g = c->layer_kv_group[l];

        used += ss->group_blocks[g] - ss->group_free_blocks[g];
        all += ss->group_blocks[g];
    }
    return all > 0 ? used / all : 0;
}

static void publish_stats(struct engine *e)
{
    struct sched_stats ss;

    sched_get_stats(e->sched, &ss);
    pthread_mutex_lock(&e->lock);
    e->stats.num_running = ss.num_running;
    e->stats.num_waiting = ss.num_waiting;
    e->stats.num_blocks = ss.num_blocks;
    e->stats.num_free_blocks = ss.num_free_blocks;
    e->stats.num_kv_groups = ss.num_kv_groups;
    e->stats.kv_cache_usage = kv_usage(&e->model.cfg, &ss);
    for (int g = 0; g < ss.num_kv_groups; g++) {
        e->stats.kv_group_window[g] = e->model.cfg.kv_group_window[g];
        e->stats.kv_group_blocks[g] = ss.group_blocks[g];
        e->stats.kv_group_free_blocks[g] = ss.group_free_blocks[g];
    }
    e->stats.prefix_queries = ss.prefix_queries;
    e->stats.prefix_hits = ss.prefix_hits;
    e->stats.num_preemptions = ss.num_preemptions;
    e->stats.num_steps = e->num_steps;
    e->stats.num_decode_steps = e->num_decode_steps;
    e->stats.decode_step_s = e->decode_step_s;
    e->stats.decode_mask_s = e->decode_mask_s;
    e->stats.decode_mask_hidden_s = e->decode_mask_hidden_s;
    e->stats.decode_host_s = e->decode_host_s;
    e->stats.healthy = !e->dead;
    e->stats.alive_s = now_s();
    pthread_mutex_unlock(&e->lock);
}

/* Moves the inbox and the abort list into the scheduler. */
static void take_inbox(struct engine *e)
{
    struct engine_request *in, *r, *next;
    uint64_t *aborts;
    int num_aborts;
    bool drain_over;
    char err[ERR_LEN];

    pthread_mutex_lock(&e->lock);
    in = e->inbox;
    e->inbox = e->inbox_tail = NULL;
    /* They wait in the scheduler now: count them there at once, or engine_submit would see
     * neither count until the next publish and admit past max_waiting meanwhile. */
    e->stats.num_waiting += e->inbox_len;
    e->inbox_len = 0;
    aborts = e->aborts;
    num_aborts = e->num_aborts;
    e->aborts = NULL;
    e->num_aborts = e->cap_aborts = 0;
    drain_over = e->draining && now_s() >= e->drain_deadline_s;
    pthread_mutex_unlock(&e->lock);

    for (r = in; r; r = next) {
        next = r->next;
        r->next = r->prev = NULL;
        err[0] = '\0';
        if (sched_add(e->sched, &r->sr, err) != 0) {
            deliver(e, r, NULL, NULL, 0, true, FINISH_ERROR, err);
            request_free(r);
            continue;
        }
        r->next = e->live;
        if (e->live)
            e->live->prev = r;
        e->live = r;
    }
    for (int i = 0; i < num_aborts; i++)
        for (r = e->live; r; r = r->next)
            if (r->id == aborts[i]) {
                finish_live(e, r, FINISH_ABORT, NULL);
                break;
            }
    free(aborts);
    if (drain_over)
        while (e->live)
            finish_live(e, e->live, FINISH_ABORT, "server shutting down");
}

/* Whether token t ends the request like EOS (EOS ids and the request's stop ids). */
static bool is_stop_token(const struct engine_request *r, int32_t t)
{
    for (int i = 0; i < r->num_banned; i++)
        if (r->banned[i] == t)
            return true;
    return false;
}

/* Row i's mask in the runner's mask rows (written after runner_launch, read at finish). */
static uint32_t *mask_row(struct engine *e, int i)
{
    return e->masks + (size_t)i * e->mask_words;
}

/* The grammar's mask for a row: what may continue the output, and EOS/stop ids when the
 * output may end here. A failure (out of memory, an automaton past its bounds) marks the
 * request, which ends after the step; its row then allows only the stop ids. */
static void grammar_row(struct engine *e, struct engine_request *r, int i)
{
    uint32_t *mask = mask_row(e, i);

    /* fill_mask writes the grammar's words; only a tail the model's vocab adds is cleared */
    memset(mask + r->grammar_words, 0, (size_t)(e->mask_words - r->grammar_words) * sizeof *mask);
    if (grammar_matcher_fill_mask(r->matcher, mask)) {
        r->grammar_failed = true;
        memset(mask, 0, (size_t)e->mask_words * sizeof *mask);   /* it may have stopped midway */
    }
    if (grammar_matcher_is_accepting(r->matcher) || r->grammar_failed)
        for (int k = 0; k < r->num_banned; k++)
            if (r->banned[k] >= 0 && r->banned[k] < e->mask_words * 32)
                mask[r->banned[k] >> 5] |= 1u << (r->banned[k] & 31);
}

/* allowed_token_ids as the row's mask, ANDed into the grammar's when there is one: one
 * path for both backends (the GPU sampler knows masks, not id lists), equal in effect to
 * the sampler's allowed_ids pass (engine/sampler.h). */
static void allowed_ids_row(struct engine *e, const struct engine_request *r, int i)
{
    uint32_t *mask = mask_row(e, i);

    if (!r->matcher) {
        sampler_ids_to_mask(r->params.allowed_token_ids, r->params.num_allowed_token_ids, mask,
                            e->mask_words);
        return;
    }
    sampler_ids_to_mask(r->params.allowed_token_ids, r->params.num_allowed_token_ids, e->ids_mask,
                        e->mask_words);
    for (int w = 0; w < e->mask_words; w++)
        mask[w] &= e->ids_mask[w];
}

struct mask_args {
    struct engine *e;
    const struct step_batch *b;
};

/* Row i's grammar mask, on a mask_pool thread: only the request's own matcher and row of
 * e->masks are written. */
static void mask_task(void *arg, int i, int thread)
{
    const struct mask_args *a = arg;
    struct engine_request *r = a->b->reqs[a->b->sample_req[i]]->user;

    if (r->matcher)
        grammar_row(a->e, r, i);
}

/* The step's sampling rows, all but the masks' contents: a row with a grammar or
 * allowed_token_ids points at its mask row, which fill_masks writes once the runner has
 * launched the forward. */
static void fill_rows(struct engine *e, const struct step_batch *b)
{
    for (int i = 0; i < b->num_sample; i++) {
        struct engine_request *r = b->reqs[b->sample_req[i]]->user;
        struct sample_row *row = &e->rows[i];
        int num_output = r->sr.num_tokens - r->sr.num_prompt_tokens;

        row->temperature = r->params.temperature;
        row->top_k = r->params.top_k;
        row->top_p = r->params.top_p;
        row->min_p = r->params.min_p;
        row->presence_penalty = r->params.presence_penalty;
        row->frequency_penalty = r->params.frequency_penalty;
        row->repetition_penalty = r->params.repetition_penalty;
        row->seed = r->seed;
        row->counter = (uint32_t)num_output;
        row->num_logprobs = r->params.logprobs;
        row->prompt = r->tokens;
        row->num_prompt = r->sr.num_prompt_tokens;
        row->output = r->tokens + r->sr.num_prompt_tokens;
        row->num_output = num_output;
        row->banned = r->banned;
        row->num_banned = num_output < r->params.min_tokens ? r->num_banned : 0;
        row->allowed_ids = NULL;
        row->num_allowed_ids = 0;
        row->bias_ids = r->params.logit_bias_ids;
        row->bias = r->params.logit_bias;
        row->num_bias = r->params.num_logit_bias;
        row->allowed = r->matcher || r->params.num_allowed_token_ids ? mask_row(e, i) : NULL;
    }
}

/* Row i's grammar over its sampled token, on a mask_pool thread (only the request's own
 * matcher is written): the result waits in accept_rc for the deliveries (grammar_step).
 * EOS and stop ids, and requests the scheduler has ended, advance nothing. */
static void advance_task(void *arg, int i, int thread)
{
    const struct mask_args *a = arg;
    struct engine_request *r = a->b->reqs[a->b->sample_req[i]]->user;
    int32_t tok = a->e->sampled[i];

    r->accept_rc = 0;
    if (r->matcher && r->sr.status != SCHED_FINISHED && !r->grammar_failed &&
        !is_stop_token(r, tok))
        r->accept_rc = grammar_matcher_accept_token(r->matcher, tok);
}

/* fn for every sampling row of b: on the mask pool when two or more rows have a grammar
 * (a batch of structured requests: each row's work is its own), else on this thread. */
static void grammar_rows(struct engine *e, const struct step_batch *b,
                         void (*fn)(void *arg, int i, int thread))
{
    struct mask_args ma = { e, b };
    int num_grammars = 0;

    for (int i = 0; i < b->num_sample; i++)
        num_grammars += ((struct engine_request *)b->reqs[b->sample_req[i]]->user)->matcher != NULL;
    if (num_grammars > 1)
        threadpool_run(e->mask_pool, b->num_sample, fn, &ma);
    else if (num_grammars)
        for (int i = 0; i < b->num_sample; i++)
            fn(&ma, i, 0);
}

/* The masks of the rows fill_rows pointed at them, while the device runs the forward. */
static void fill_masks(struct engine *e, const struct step_batch *b)
{
    grammar_rows(e, b, mask_task);
    /* after the masks: allowed_ids_row shares one scratch row (e->ids_mask) */
    for (int i = 0; i < b->num_sample; i++) {
        struct engine_request *r = b->reqs[b->sample_req[i]]->user;
        if (r->params.num_allowed_token_ids)
            allowed_ids_row(e, r, i);
    }
}

/* The step on the runner, its masks made between launch and finish; *mask_s: their time,
 * *hidden: whether the device still ran the forward when they were done. */
static int run_step(struct engine *e, struct step_batch *b, double *mask_s, bool *hidden)
{
    int rc = runner_launch(e->runner, b, e->rows);
    double t0;

    if (rc)
        return rc;
    t0 = now_s();
    fill_masks(e, b);
    *mask_s = now_s() - t0;
    *hidden = runner_busy(e->runner);
    return runner_finish(e->runner, e->results);
}

/* A failed step fails the requests in it; a device error (-EIO) kills the engine. */
static void step_failed(struct engine *e, struct step_batch *b, int rc)
{
    char msg[160];

    snprintf(msg, sizeof msg, "engine step failed: %s", strerror(-rc));
    LOG(LL_ERR, "engine", "%s (%d requests in the step%s)", msg, b->num_reqs,
        rc == -EIO ? "; the engine cannot continue" : "");
    if (rc == -EIO) {   /* dead before anyone hears of it: a woken caller sees it */
        pthread_mutex_lock(&e->lock);
        e->dead = true;
        e->stats.healthy = false;
        pthread_mutex_unlock(&e->lock);
    }
    sched_fail_step(e->sched, b);   /* the step's requests are FINISHED with FINISH_ERROR */
    for (int i = 0; i < b->num_reqs; i++)
        finish_live(e, b->reqs[i]->user, FINISH_ERROR, msg);
    if (rc == -EIO)
        while (e->live)
            finish_live(e, e->live, FINISH_ERROR, msg);
}

/* r's grammar after its new token (advanced by advance_task): the request ends with "stop"
 * once the grammar is complete and nothing may follow, and with an error when the token did
 * not fit (only when the grammar allowed nothing the vocabulary has) or its mask failed.
 * Returns that error. */
static const char *grammar_step(struct engine *e, struct engine_request *r)
{
    const char *error = NULL;
    int rc = r->accept_rc;

    if (r->grammar_failed || rc == -E2BIG)
        error = "grammar: the automaton went past its bounds (nested too deep or too ambiguous)";
    else if (rc)
        error = "grammar: no token of the vocabulary can continue the output";
    if (error) {
        LOG(LL_WARN, "engine", "req %llu: %s", (unsigned long long)r->id, error);
        sched_finish(e->sched, &r->sr, FINISH_ERROR);
    } else if (grammar_matcher_is_done(r->matcher)) {
        sched_finish(e->sched, &r->sr, FINISH_STOP);
    }
    return error;
}

/* Runs one step; returns false when there was nothing to run. */
static bool engine_step(struct engine *e)
{
    struct sched_request **finished;
    struct step_batch *b;
    int num_finished, rc;
    double start = now_s(), runner_s;

    take_inbox(e);
    b = sched_schedule(e->sched);
    /* Before the step runs (it may take a while): who waits and who runs is known now. */
    publish_stats(e);
    if (!b || b->num_reqs == 0)
        return false;
    fill_rows(e, b);
    e->num_steps++;
    bool decode_only = b->decode_only;
    double t0 = now_s(), mask_s = 0;
    bool hidden = false;
    if (e->fault_step && (long)e->num_steps == e->fault_step && e->fault_hang_ms)
        usleep((useconds_t)e->fault_hang_ms * 1000);   /* OSPREY_FAULT_HANG_MS: test-only */
    if (e->fault_step && (long)e->num_steps == e->fault_step && !e->fault_hang_ms)
        rc = e->fault_sticky ? -EIO : -EFAULT;   /* OSPREY_FAULT_STEP: test-only */
    else
        rc = run_step(e, b, &mask_s, &hidden);
    runner_s = now_s() - t0 - mask_s;
    if (decode_only) {
        e->num_decode_steps++;
        e->decode_step_s += runner_s;
        e->decode_mask_s += mask_s;
        e->decode_mask_hidden_s += hidden ? mask_s : 0;
    }
    if (rc != 0) {
        step_failed(e, b, rc);
        publish_stats(e);
        return true;
    }
    for (int i = 0; i < b->num_sample; i++)
        e->sampled[i] = e->results[i].token;
    rc = sched_update(e->sched, b, e->sampled, &finished, &num_finished);
    if (rc != 0) {
        LOG(LL_ERR, "engine", "scheduler update failed: %s", strerror(-rc));
        pthread_mutex_lock(&e->lock);
        e->dead = true;   /* the scheduler's own state is wrong: nothing is safe */
        e->stats.healthy = false;
        pthread_mutex_unlock(&e->lock);
        while (e->live)
            finish_live(e, e->live, FINISH_ERROR, "internal error in the scheduler");
        publish_stats(e);
        return true;
    }
    /* Stats and counters first, so that whoever wakes on a final callback already sees
     * them. Stop strings found below end a few more requests; the step publishes again. */
    uint64_t prompt_tokens = 0;
    for (int i = 0; i < b->num_sample; i++) {
        struct engine_request *r = b->reqs[b->sample_req[i]]->user;
        if (r->num_delivered == 0)
            prompt_tokens += r->sr.num_prompt_tokens;
    }
    pthread_mutex_lock(&e->lock);
    e->stats.prompt_tokens += prompt_tokens;
    e->stats.generation_tokens += (uint64_t)b->num_sample;
    pthread_mutex_unlock(&e->lock);
    publish_stats(e);

    /* Requests the scheduler ended without a sample in this step (its length limit can end
     * a request before it samples): they get their final call first, before any request of
     * the step is freed below. */
    for (int i = 0; i < num_finished; i++) {
        bool sampled_now = false;
        for (int j = 0; j < b->num_sample && !sampled_now; j++)
            sampled_now = b->reqs[b->sample_req[j]] == finished[i];
        if (!sampled_now) {
            struct engine_request *r = finished[i]->user;
            live_unlink(e, r);
            deliver(e, r, NULL, NULL, 0, true, r->sr.finish_reason, NULL);
            request_free(r);
        }
    }

    /* Deliver every sampled token; the scheduler has appended it already. A stop string or
     * a complete grammar ends the request here; EOS, stop ids and length ended it in
     * sched_update. The grammars advance first, on the mask pool (a request a stop string
     * ends below has advanced for nothing, and is freed). */
    grammar_rows(e, b, advance_task);
    for (int i = 0; i < b->num_sample; i++) {
        struct engine_request *r = b->reqs[b->sample_req[i]]->user;
        int32_t tok = e->sampled[i];
        const char *error = NULL;
        bool final;

        if (out_text_push(&r->text, tok) != 0)
            LOG(LL_WARN, "engine", "req %llu: out of memory for its text", (unsigned long long)r->id);
        if (r->text.stopped && r->sr.status != SCHED_FINISHED)
            sched_finish(e->sched, &r->sr, FINISH_STOP);
        if (r->matcher && r->sr.status != SCHED_FINISHED)
            error = grammar_step(e, r);
        final = r->sr.status == SCHED_FINISHED;
        deliver(e, r, &tok, &e->results[i], 1, final,
                error ? FINISH_ERROR : r->text.stopped ? FINISH_STOP : r->sr.finish_reason, error);
        if (final) {
            live_unlink(e, r);
            request_free(r);
        }
    }
    if (decode_only)   /* counted before the stats go out, so the step's own are in them */
        e->decode_host_s += now_s() - start - runner_s - mask_s;
    publish_stats(e);
    return true;
}

/* ---- the loop ---------------------------------------------------------------------- */

static void stepper_cb(uv_idle_t *h)
{
    struct engine *e = h->data;
    bool quit;

    if (!engine_step(e)) {
        uv_idle_stop(&e->stepper);
        e->stepping = false;
    }
    pthread_mutex_lock(&e->lock);
    quit = e->draining && !e->live && !e->inbox;
    pthread_mutex_unlock(&e->lock);
    if (quit)
        uv_stop(&e->loop);
}

static void start_stepping(struct engine *e)
{
    if (!e->stepping) {
        e->stepping = true;
        uv_idle_start(&e->stepper, stepper_cb);
    }
}

static void drain_timer_cb(uv_timer_t *h)
{
    start_stepping(h->data);
}

/* Wakeups coalesce: one callback may stand for many submits and aborts. */
static void wakeup_cb(uv_async_t *h)
{
    struct engine *e = h->data;
    double left = -1;

    pthread_mutex_lock(&e->lock);
    if (e->draining)
        left = e->drain_deadline_s - now_s();
    e->stats.alive_s = now_s();      /* answers engine_ping */
    pthread_mutex_unlock(&e->lock);
    if (left >= 0 && !uv_is_active((uv_handle_t *)&e->drain_timer))
        uv_timer_start(&e->drain_timer, drain_timer_cb, (uint64_t)(left * 1000) + 1, 0);
    start_stepping(e);
}

static void *engine_thread(void *arg)
{
    struct engine *e = arg;

    publish_stats(e);   /* the cache's groups and pools are in /metrics before any step */
    uv_run(&e->loop, UV_RUN_DEFAULT);
    /* Whatever is left ends now, so that every callback gets its final call. */
    take_inbox(e);
    while (e->live)
        finish_live(e, e->live, FINISH_ABORT, "server shutting down");
    publish_stats(e);
    return NULL;
}

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

/* ---- public API -------------------------------------------------------------------- */

int engine_start(struct engine *e, char *err)
{
    int rc = uv_loop_init(&e->loop);

    if (rc == 0)
        rc = uv_async_init(&e->loop, &e->wakeup, wakeup_cb);
    if (rc == 0)
        rc = uv_idle_init(&e->loop, &e->stepper);
    if (rc == 0)
        rc = uv_timer_init(&e->loop, &e->drain_timer);
    if (rc != 0) {
        errf(err, "libuv: %s", uv_strerror(rc));
        return rc;
    }
    e->wakeup.data = e;
    e->stepper.data = e;
    e->drain_timer.data = e;
    rc = pthread_create(&e->thread, NULL, engine_thread, e);
    if (rc != 0) {
        errf(err, "cannot start the engine thread: %s", strerror(rc));
        return -rc;
    }
    pthread_mutex_lock(&e->lock);
    e->started = true;
    e->stats.ready = true;
    e->stats.alive_s = now_s();      /* not 0: a watchdog would take it for a long silence */
    pthread_mutex_unlock(&e->lock);
    return 0;
}

void engine_shutdown(struct engine *e, double grace_s)
{
    bool started;

    pthread_mutex_lock(&e->lock);
    started = e->started;
    e->draining = true;
    e->drain_deadline_s = now_s() + grace_s;
    pthread_mutex_unlock(&e->lock);
    if (!started)
        return;
    /* The loop steps until no request is left or the grace period ends. */
    uv_async_send(&e->wakeup);
    pthread_join(e->thread, NULL);
    pthread_mutex_lock(&e->lock);
    e->started = false;
    e->stats.ready = false;
    pthread_mutex_unlock(&e->lock);
    uv_close((uv_handle_t *)&e->wakeup, close_cb);
    uv_close((uv_handle_t *)&e->stepper, close_cb);
    uv_close((uv_handle_t *)&e->drain_timer, close_cb);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&e->loop) != 0)
        LOG(LL_WARN, "engine", "libuv loop did not close cleanly");
}

void engine_destroy(struct engine *e)
{
    struct engine_request *r, *next;

    if (!e)
        return;
    engine_shutdown(e, 0);
    for (r = e->inbox; r; r = next) {   /* submitted after the thread ended */
        next = r->next;
        deliver(e, r, NULL, NULL, 0, true, FINISH_ABORT, "server shutting down");
        request_free(r);
    }
    sched_destroy(e->sched);
    runner_destroy(e->runner);
    backend_destroy(e->be);
    model_close(&e->model);
    free(e->aborts);
    free(e->rows);
    free(e->results);
    free(e->sampled);
    free(e->ids_mask);
    threadpool_destroy(e->mask_pool);
    free(e->graph_sizes);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

static bool ids_in_vocab(const int32_t *ids, int n, int vocab)
{
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return false;
    return true;
}

int engine_submit(struct engine *e, const struct engine_request_desc *d, uint64_t *id, char *err)
{
    const struct gen_params *p = d->params;
    struct engine_request *r;
    int rc = 0;

    if (d->num_prompt <= 0 || p->max_tokens <= 0 || !d->cb) {
        errf(err, "a request needs a prompt, max_tokens >= 1 and a callback");
        return -EINVAL;
    }
    for (int i = 0; i < d->num_prompt; i++)
        if (d->prompt[i] < 0 || d->prompt[i] >= e->model.cfg.vocab_size) {
            errf(err, "prompt token %d at index %d is outside the vocabulary (0..%d)",
                 d->prompt[i], i, e->model.cfg.vocab_size - 1);
            return -EINVAL;
        }
    if (!ids_in_vocab(p->logit_bias_ids, p->num_logit_bias, e->model.cfg.vocab_size) ||
        !ids_in_vocab(p->allowed_token_ids, p->num_allowed_token_ids, e->model.cfg.vocab_size)) {
        errf(err, "a logit_bias or allowed_token_ids id is outside the vocabulary (0..%d)",
             e->model.cfg.vocab_size - 1);
        return -EINVAL;
    }
    if (p->grammar && grammar_mask_words(p->grammar) > e->mask_words) {
        errf(err, "the grammar was compiled for a vocabulary of more than %d tokens", e->mask_words * 32);
        return -EINVAL;
    }
    if ((long)d->num_prompt + p->max_tokens > e->max_model_len) {
        errf(err, "this model's maximum context length is %d tokens; the prompt has %d tokens "
             "and max_tokens is %d", e->max_model_len, d->num_prompt, p->max_tokens);
        return -E2BIG;
    }
    if ((long)d->num_prompt + p->max_tokens > e->max_request_tokens) {
        /* It would wait for blocks that can never all be free at once. */
        errf(err, "the KV cache holds %d tokens for one request; the prompt has %d tokens and "
             "max_tokens is %d", e->max_request_tokens, d->num_prompt, p->max_tokens);
        return -E2BIG;
    }
    r = request_create(e, d);
    if (!r) {
        errf(err, "out of memory");
        return -ENOMEM;
    }

    pthread_mutex_lock(&e->lock);
    if (e->dead) {
        errf(err, "the engine has failed and is not accepting requests");
        rc = -EIO;
    } else if (e->draining) {
        errf(err, "the server is shutting down");
        rc = -ESHUTDOWN;
    } else if (e->stats.num_waiting + e->inbox_len >= e->opt.max_waiting) {
        errf(err, "too many requests are waiting (%d); retry later", e->opt.max_waiting);
        rc = -EAGAIN;
    } else {
        r->id = e->next_id++;
        r->sr.id = r->id;
        r->seed = p->has_seed ? p->seed : rng_next(&e->rng);
        if (e->inbox_tail)
            e->inbox_tail->next = r;
        else
            e->inbox = r;
        e->inbox_tail = r;
        e->inbox_len++;
        *id = r->id;
    }
    pthread_mutex_unlock(&e->lock);
    if (rc != 0) {
        request_free(r);
        return rc;
    }
    uv_async_send(&e->wakeup);
    return 0;
}

void engine_abort(struct engine *e, uint64_t id)
{
    bool wake = false;

    pthread_mutex_lock(&e->lock);
    if (e->started) {
        if (e->num_aborts == e->cap_aborts) {
            int cap = e->cap_aborts ? e->cap_aborts * 2 : 16;
            uint64_t *a = realloc(e->aborts, cap * sizeof *a);
            if (a) {
                e->aborts = a;
                e->cap_aborts = cap;
            }
        }
        if (e->num_aborts < e->cap_aborts) {
            e->aborts[e->num_aborts++] = id;
            wake = true;
        }
    }
    pthread_mutex_unlock(&e->lock);
    if (wake)
        uv_async_send(&e->wakeup);
}

void engine_ping(struct engine *e)
{
    /* Under the lock: engine_shutdown clears `started` under it before closing the handle. */
    pthread_mutex_lock(&e->lock);
    if (e->started)
        uv_async_send(&e->wakeup);
    pthread_mutex_unlock(&e->lock);
}

void engine_get_stats(struct engine *e, struct engine_stats *st)
{
    pthread_mutex_lock(&e->lock);
    *st = e->stats;
    st->num_waiting += e->inbox_len;
    st->progress = __atomic_load_n(&e->progress, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&e->lock);
}

const struct model_config *engine_model_config(const struct engine *e)
{
    return &e->model.cfg;
}

int engine_max_model_len(const struct engine *e)
{
    return e->max_model_len;
}

int engine_max_request_tokens(const struct engine *e)
{
    return e->max_request_tokens;
}

/* forward_sim.c — the forward tests' tiny scheduler (see forward_sim.h). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/forward_sim.h"
#include "tests/unit/naive_forward.h"

void sim_create(struct sim *s, const struct fixture_spec *spec, const struct sim_options *so)
{
    int bs = so->block_size, num_blocks = MAX_SEQS * (MAX_LEN / bs + 1) / 2;
    struct runner_options o = { bs, num_blocks, MAX_BATCH_TOKENS, MAX_SEQS, MAX_LEN, false,
                                so->graph_sizes, so->num_graph_sizes, so->fused_rope_cache,
                                false, false, DT_F32, 1, 1, NULL, { 0 }, NULL, NULL, 0 };
    struct backend_options bo = { .num_threads = 2 };
    char err[ERR_LEN] = "";

    o.tensor_parallel_size = so->tensor_parallel_size;
    o.backend_threads = 1;
    o.piece_sizes = so->piece_sizes;
    o.num_piece_sizes = so->num_piece_sizes;
    o.kv_cache_dtype = so->kv_cache_dtype;
    o.calculate_kv_scales = so->calculate_kv_scales;
    memset(s, 0, sizeof *s);
    ck_assert_int_le(num_blocks + WINDOW_EXTRA_BLOCKS, MAX_FREE);
    s->rng = spec->seed * 7919 + bs;
    s->block_size = bs;
    s->borrowed = so->model != NULL;
    if (so->model)
        s->fx.m = *so->model;
    else
        ck_assert_int_eq(random_model_create(&s->fx, spec), 0);
    /* Each group's layers hold that group's blocks only. Window groups get more ids than
     * full layers have storage for: a layer sized for another group's pool would be handed
     * slots beyond its cache (cache_update refuses them). */
    for (int g = 0; g < s->fx.m.cfg.num_kv_groups; g++)
        o.group_num_blocks[g] = num_blocks + (s->fx.m.cfg.kv_group_window[g] ? WINDOW_EXTRA_BLOCKS : 0);
    ck_assert_int_eq(runner_backend_options(&s->fx.m.cfg, &o, &bo), 0);
    ck_assert_int_eq(backend_create(&s->be, "cpu", &bo, err), 0);
    if (so->patch)
        so->patch(s->be);
    ck_assert_msg(runner_create(&s->r, s->be, &s->fx.m, &o, err) == 0, "%s", err);
    s->kv_elem = dtype_size(runner_kv_dtype(s->be, o.kv_cache_dtype));
    s->free_out_of_window = so->free_out_of_window;
    s->num_groups = s->fx.m.cfg.num_kv_groups;
    for (int g = 0; g < s->num_groups; g++) {
        s->windows[g] = s->fx.m.cfg.kv_group_window[g];
        /* every group draws from its own shuffled pool: block ids far from contiguous */
        for (int i = 0; i < o.group_num_blocks[g]; i++)
            s->free_ids[g][i] = i;
        for (int i = o.group_num_blocks[g] - 1; i > 0; i--) {
            int j = test_randint(&s->rng, i + 1), t = s->free_ids[g][i];
            s->free_ids[g][i] = s->free_ids[g][j];
            s->free_ids[g][j] = t;
        }
        s->num_free[g] = o.group_num_blocks[g];
        s->group_blocks[g] = o.group_num_blocks[g];
    }
    ck_assert_int_eq(batch_init(&s->b, MAX_BATCH_TOKENS, MAX_SEQS, s->num_groups,
                                runner_max_blocks_per_req(s->r)), 0);
}

void sim_destroy(struct sim *s)
{
    batch_fini(&s->b);
    runner_destroy(s->r);
    backend_destroy(s->be);
    if (!s->borrowed)
        random_model_destroy(&s->fx);
}

/* A request of random tokens; with_ref: the naive forward's logits of every position. */
void sim_req_init(struct sim *s, struct sim_req *q, int prompt_len, int len, bool with_ref)
{
    int V = s->fx.m.cfg.vocab_size;

    memset(q, 0, sizeof *q);
    ck_assert_int_le(len, MAX_LEN);
    q->prompt_len = prompt_len;
    q->len = len;
    for (int i = 0; i < len; i++)
        q->tokens[i] = test_randint(&s->rng, V);
    if (with_ref) {
        q->ref = malloc(sizeof(double) * len * V);
        naive_forward(&s->fx.m, q->tokens, len, q->ref);
    }
}

/* Frees block `id` of window group g: NaN in every row of it in every layer of the group,
 * back on top of the group's free list (the next allocation takes it). */
static void free_poisoned(struct sim *s, int g, int32_t id)
{
    const struct model_config *c = &s->fx.m.cfg;
    size_t row = (size_t)c->num_kv_heads * c->head_dim, per_block = row * s->block_size;

    for (int l = 0; l < c->num_layers; l++) {
        void *kc, *vc;

        if (c->layer_kv_group[l] != g)
            continue;
        ck_assert_int_eq(runner_layer_cache(s->r, l, &kc, &vc), 0);
        for (size_t i = 0; i < per_block; i++)
            ((float *)kc)[id * per_block + i] = ((float *)vc)[id * per_block + i] = NAN;
    }
    ck_assert_int_lt(s->num_free[g], MAX_FREE);
    s->free_ids[g][s->num_free[g]++] = id;
    s->poisoned[g][id] = true;
    s->freed_blocks++;
}

/* Builds the step batch for s->reqs[0..k) taking s->n_new[i] tokens each: blocks allocated
 * as the context grows, block tables with KV_NO_BLOCK where a window group no longer needs
 * a block, slots, and a sampled row for each request whose prompt is complete. */
void sim_build(struct sim *s, int k)
{
    struct step_batch *b = &s->b;
    int bs = s->block_size, maxb = b->max_blocks_per_req, t = 0;
    bool prefill = false, decode = false;

    b->num_reqs = k;
    b->num_sample = 0;
    b->decode_only = true;
    b->max_query_len = b->max_seq_len = 0;
    b->num_tokens_padded = b->num_reqs_padded = b->num_sample_padded = 0;
    b->query_start_loc[0] = 0;
    for (int i = 0; i < k; i++) {
        struct sim_req *q = s->reqs[i];
        int n = s->n_new[i], seq = q->computed + n;

        for (int g = 0; g < s->num_groups; g++) {
            int32_t *row = b->block_table[g] + (size_t)i * maxb;
            int lo = s->windows[g] ? q->computed - s->windows[g] + 1 : 0;

            /* blocks wholly before the first new token's window serve no query any more */
            for (int j = 0; s->free_out_of_window && s->windows[g] && j < q->num_blocks[g] &&
                            (j + 1) * bs - 1 < lo; j++)
                if (q->blocks[g][j] != KV_NO_BLOCK) {
                    free_poisoned(s, g, q->blocks[g][j]);
                    q->blocks[g][j] = KV_NO_BLOCK;
                }
            while (q->num_blocks[g] * bs < seq) {
                int32_t id;

                ck_assert_int_gt(s->num_free[g], 0);
                id = s->free_ids[g][--s->num_free[g]];
                s->reused_blocks += s->poisoned[g][id];
                s->poisoned[g][id] = false;
                q->blocks[g][q->num_blocks[g]++] = id;
            }
            for (int j = 0; j < maxb; j++) {
                bool out = (j + 1) * bs - 1 < lo;
                row[j] = j < q->num_blocks[g] && !out ? q->blocks[g][j] : KV_NO_BLOCK;
                s->hidden_blocks += j < q->num_blocks[g] && out;
            }
        }
        for (int j = 0; j < n; j++, t++) {
            int pos = q->computed + j;
            b->input_ids[t] = q->tokens[pos];
            b->positions[t] = pos;
            for (int g = 0; g < s->num_groups; g++)
                b->slot_mapping[g][t] = (int64_t)q->blocks[g][pos / bs] * bs + pos % bs;
        }
        b->query_start_loc[i + 1] = t;
        b->seq_lens[i] = seq;
        if (seq >= q->prompt_len) {
            b->logits_indices[b->num_sample] = t - 1;
            b->sample_req[b->num_sample++] = i;
        }
        if (q->computed < q->prompt_len) {
            prefill = true;
            s->chunked_prompts += q->computed > 0;
        } else {
            decode = true;
        }
        b->decode_only &= n == 1;
        b->max_query_len = MAX(b->max_query_len, n);
        b->max_seq_len = MAX(b->max_seq_len, seq);
    }
    b->num_tokens = t;
    s->mixed_steps += prefill && decode;
    s->steps++;
}

/* Runs the built step through runner_logits (padded by `pad` tokens) and compares every
 * sampled row with the reference; then the requests advance. */
void sim_check_step(struct sim *s, int k, int pad)
{
    struct step_batch *b = &s->b;
    int V = s->fx.m.cfg.vocab_size;
    float *logits;

    if (pad) {
        ck_assert_int_eq(batch_pad(b, b->num_tokens + pad), 0);
        s->padded_steps++;
    }
    /* runner_logits pads an unpadded batch to itself, and a decode-only one samples a row per
     * token then (batch_pad), even for a request whose prompt is not complete: room for one
     * row per token */
    logits = malloc(sizeof(float) * MAX(MAX(b->num_tokens_padded, b->num_tokens), 1) * V);
    ck_assert_int_eq(runner_logits(s->r, b, logits), 0);
    for (int i = 0; i < b->num_sample; i++) {
        struct sim_req *q = s->reqs[b->sample_req[i]];
        const double *want = q->ref + (size_t)(q->computed + s->n_new[b->sample_req[i]] - 1) * V;

        for (int v = 0; v < V; v++) {
            double e = fabs(logits[(size_t)i * V + v] - want[v]);
            ck_assert_msg(isfinite(logits[(size_t)i * V + v]), "row %d: non-finite logit", i);
            s->max_err = MAX(s->max_err, e);
        }
    }
    for (int i = 0; i < k; i++)
        s->reqs[i]->computed += s->n_new[i];
    free(logits);
}

/* Picks this step's requests and token counts: request i joins at step i; each unfinished
 * one runs with probability 3/4; a prompt goes in chunks of random size. Returns k. */
int sim_pick(struct sim *s, struct sim_req *reqs, int nreq, int step, bool greedy)
{
    int k = 0;

    for (int i = 0; i < nreq && i <= step; i++) {
        struct sim_req *q = &reqs[i];
        bool done = greedy ? q->generated == q->len - q->prompt_len : q->computed == q->len;

        if (done || test_rand(&s->rng) > 0.75)
            continue;
        s->reqs[k] = q;
        s->n_new[k] = 1;
        if (q->computed < q->prompt_len) {
            int chunk = 1 + test_randint(&s->rng, q->prompt_len / 2 + 1);
            s->n_new[k] = MIN(q->prompt_len - q->computed, chunk);
        }
        k++;
    }
    return k;
}

bool sim_all_done(const struct sim_req *reqs, int nreq, bool greedy)
{
    for (int i = 0; i < nreq; i++)
        if (greedy ? reqs[i].generated < reqs[i].len - reqs[i].prompt_len
                   : reqs[i].computed < reqs[i].len)
            return false;
    return true;
}

/* Five teacher-forced requests over mixed steps; every sampled row against the reference.
 * Returns how many block table entries were hidden by a window. */
int sim_run_mixed(const struct fixture_spec *spec, int block_size, double tol,
                  const struct sim_options *extra)
{
    enum { NREQ = 5 };
    struct sim s;
    struct sim_req reqs[NREQ];
    struct sim_options so = { .block_size = block_size };

    if (extra) {
        so = *extra;
        so.block_size = block_size;
    }

    sim_create(&s, spec, &so);
    for (int i = 0; i < NREQ; i++) {
        int prompt = 3 + test_randint(&s.rng, 26);
        sim_req_init(&s, &reqs[i], prompt, prompt + 1 + test_randint(&s.rng, 6), true);
    }
    for (int step = 0; !sim_all_done(reqs, NREQ, false); step++) {
        int k = sim_pick(&s, reqs, NREQ, step, false);

        if (k == 0)
            continue;
        sim_build(&s, k);
        sim_check_step(&s, k, step % 3 == 2 ? 1 + test_randint(&s.rng, 4) : 0);
    }
    ck_assert_msg(s.max_err < tol, "max |logit - reference| = %g (tolerance %g)", s.max_err, tol);
    if (extra && extra->max_err)
        *extra->max_err = s.max_err;
    ck_assert_int_gt(s.mixed_steps, 0);
    ck_assert_int_gt(s.chunked_prompts, 0);
    ck_assert_int_gt(s.padded_steps, 0);
    for (int i = 0; i < NREQ; i++)
        free(reqs[i].ref);
    sim_destroy(&s);
    return s.hidden_blocks;
}





/* Greedy generation for reqs[0..nreq) over random mixed steps; tokens land in reqs. */
void sim_run_greedy(struct sim *s, struct sim_req *reqs, int nreq)
{
    struct sample_result res[MAX_SEQS];

    for (int step = 0; !sim_all_done(reqs, nreq, true); step++) {
        int k = sim_pick(s, reqs, nreq, step, true);

        if (k == 0)
            continue;
        sim_build(s, k);
        s->padded_replays += runner_padded_size(s->r, &s->b) > s->b.num_tokens;
        ck_assert_int_eq(runner_execute(s->r, &s->b, NULL, res), 0);
        for (int i = 0; i < s->b.num_sample; i++) {
            struct sim_req *q = s->reqs[s->b.sample_req[i]];
            int at = q->computed + s->n_new[s->b.sample_req[i]];

            ck_assert(res[i].token >= 0 && res[i].token < s->fx.m.cfg.vocab_size);
            q->tokens[at] = res[i].token;
            q->generated++;
        }
        for (int i = 0; i < k; i++)
            s->reqs[i]->computed += s->n_new[i];
    }
}

int sim_greedy_matches_naive(const struct fixture_spec *spec, int prompt_len, int gen_len)
{
    struct sim_options so = { .block_size = 4 };
    struct sim s;
    struct sim_req reqs[3];
    int checked = 0, V = spec->vocab;

    sim_create(&s, spec, &so);
    for (int r = 0; r < 3; r++)
        sim_req_init(&s, &reqs[r], prompt_len + 5 * r, prompt_len + 5 * r + gen_len, false);
    sim_run_greedy(&s, reqs, 3);
    for (int r = 0; r < 3; r++) {
        double *ref = malloc(sizeof(double) * reqs[r].len * V);

        naive_forward(&s.fx.m, reqs[r].tokens, reqs[r].len - 1, ref);
        for (int p = reqs[r].prompt_len - 1; p < reqs[r].len - 1; p++) {
            const double *row = ref + (size_t)p * V;
            int best = row[1] > row[0], second = !best;

            for (int v = 2; v < V; v++)
                if (row[v] > row[best])
                    second = best, best = v;
                else if (row[v] > row[second])
                    second = v;
            if (row[best] - row[second] > 1e-3) {
                ck_assert_int_eq(reqs[r].tokens[p + 1], best);
                checked++;
            }
        }
        free(ref);
    }
    sim_destroy(&s);
    return checked;
}

int sim_runner_create_patched(const struct fixture_spec *spec,
                              void (*patch)(struct backend_ops *ops), char *err)
{
    struct runner_options o = { 4, 64, 64, 4, 64, false, NULL, 0, false, false, false, DT_F32, 1, 1, NULL, { 0 }, NULL, NULL, 0 };
    struct backend_options bo = { .num_threads = 1 };
    struct backend_ops patched;
    const struct backend_ops *cpu;
    struct random_model fx;
    struct backend *be;
    struct runner *r = NULL;
    int rc;

    ck_assert_int_eq(random_model_create(&fx, spec), 0);
    ck_assert_int_eq(runner_backend_options(&fx.m.cfg, &o, &bo), 0);
    ck_assert_int_eq(backend_create(&be, "cpu", &bo, err), 0);
    cpu = be->ops;
    patched = *cpu;
    patch(&patched);
    be->ops = &patched;
    rc = runner_create(&r, be, &fx.m, &o, err);
    if (rc == 0)
        runner_destroy(r);
    be->ops = cpu;
    backend_destroy(be);
    random_model_destroy(&fx);
    return rc;
}

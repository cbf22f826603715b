/* test_forward.c — the paged, batched forward (engine/forward.c over the CPU backend, driven
 * through engine/runner.c) against the independent naive forward of naive_forward.c
 * (llama2.c style: one sequence, one token at a time, contiguous K/V arrays, no paging, no
 * slots, double accumulation). Random small models of every supported shape run
 * mixed batches (prefill chunks of prompts split over steps, decodes, padding) over shuffled
 * block ids at several block sizes; greedy tokens must not depend on the batch; the graph
 * path of the runner (with a fake graph backend that replays by calling the body again)
 * must equal the eager path. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/base/log.h"
#include "engine/runner.h"
#include "scheduler/batch.h"
#include "tests/unit/random_model.h"
#include "tests/unit/naive_forward.h"

/* |logit - reference|: f32 against double, logits of order 1 to 5; seen: 5e-6 */
#define TOL 1e-4

enum { MAX_LEN = 64, MAX_SEQS = 16, MAX_BATCH_TOKENS = 256, MAX_FREE = 1024 };

/* ==== a tiny scheduler: requests, shuffled blocks, step batches ==== */

struct sim_req {
    int32_t tokens[MAX_LEN];
    int prompt_len;
    int len;                   /* tokens known: teacher-forced runs; or prompt + max generated */
    int computed;              /* tokens in the KV cache */
    int generated;             /* greedy runs: tokens sampled so far */
    int32_t blocks[KV_MAX_GROUPS][MAX_LEN];
    int num_blocks[KV_MAX_GROUPS];
    double *ref;               /* [len, vocab] reference logits (teacher-forced runs) */
};

struct sim {
    struct random_model fx;
    struct backend *be;
    struct runner *r;
    struct step_batch b;
    int block_size, num_groups, windows[KV_MAX_GROUPS];
    int free_ids[KV_MAX_GROUPS][MAX_FREE], num_free[KV_MAX_GROUPS];
    uint64_t rng;
    int n_new[MAX_SEQS];       /* of the step being built */
    struct sim_req *reqs[MAX_SEQS];
    /* what the run covered, so that a test can prove it tested what it claims */
    double max_err;
    int steps, mixed_steps, chunked_prompts, padded_steps;
    int hidden_blocks;         /* block table entries a window group no longer reads */
    int padded_replays;        /* graph steps padded beyond their real tokens */
};

struct sim_options {
    int block_size;
    const int *graph_sizes;
    int num_graph_sizes;
    bool fused_rope_cache;
    void (*patch)(struct backend *be);   /* swaps ops before the runner exists */
};

static void sim_create(struct sim *s, const struct fixture_spec *spec, const struct sim_options *so)
{
    int bs = so->block_size, num_blocks = MAX_SEQS * (MAX_LEN / bs + 1) / 2;
    struct runner_options o = { bs, num_blocks, MAX_BATCH_TOKENS, MAX_SEQS, MAX_LEN, false,
                                so->graph_sizes, so->num_graph_sizes, so->fused_rope_cache,
                                false, false, DT_F32 };
    struct backend_options bo = { .num_threads = 2 };
    char err[ERR_LEN] = "";

    memset(s, 0, sizeof *s);
    ck_assert_int_le(num_blocks, MAX_FREE);
    s->rng = spec->seed * 7919 + bs;
    s->block_size = bs;
    ck_assert_int_eq(random_model_create(&s->fx, spec), 0);
    ck_assert_int_eq(runner_backend_options(&s->fx.m.cfg, &o, &bo), 0);
    ck_assert_int_eq(backend_create(&s->be, "cpu", &bo, err), 0);
    if (so->patch)
        so->patch(s->be);
    ck_assert_msg(runner_create(&s->r, s->be, &s->fx.m, &o, err) == 0, "%s", err);
    s->num_groups = s->fx.m.cfg.num_kv_groups;
    for (int g = 0; g < s->num_groups; g++) {
        s->windows[g] = s->fx.m.cfg.kv_group_window[g];
        /* every group draws from its own shuffled pool: block ids far from contiguous */
        for (int i = 0; i < num_blocks; i++)
            s->free_ids[g][i] = i;
        for (int i = num_blocks - 1; i > 0; i--) {
            int j = test_randint(&s->rng, i + 1), t = s->free_ids[g][i];
            s->free_ids[g][i] = s->free_ids[g][j];
            s->free_ids[g][j] = t;
        }
        s->num_free[g] = num_blocks;
    }
    ck_assert_int_eq(batch_init(&s->b, MAX_BATCH_TOKENS, MAX_SEQS, s->num_groups,
                                runner_max_blocks_per_req(s->r)), 0);
}

static void sim_destroy(struct sim *s)
{
    batch_fini(&s->b);
    runner_destroy(s->r);
    backend_destroy(s->be);
    random_model_destroy(&s->fx);
}

/* A request of random tokens; with_ref: the naive forward's logits of every position. */
static void req_init(struct sim *s, struct sim_req *q, int prompt_len, int len, bool with_ref)
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

/* Builds the step batch for s->reqs[0..k) taking s->n_new[i] tokens each: blocks allocated
 * as the context grows, block tables with KV_NO_BLOCK where a window group no longer needs
 * a block, slots, and a sampled row for each request whose prompt is complete. */
static void sim_build(struct sim *s, int k)
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

            while (q->num_blocks[g] * bs < seq) {
                ck_assert_int_gt(s->num_free[g], 0);
                q->blocks[g][q->num_blocks[g]++] = s->free_ids[g][--s->num_free[g]];
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
static void sim_check_step(struct sim *s, int k, int pad)
{
    struct step_batch *b = &s->b;
    int V = s->fx.m.cfg.vocab_size;
    float *logits;

    if (pad) {
        ck_assert_int_eq(batch_pad(b, b->num_tokens + pad), 0);
        s->padded_steps++;
    }
    /* runner_logits pads an unpadded batch to itself: num_sample rows then */
    logits = malloc(sizeof(float) * MAX(MAX(b->num_sample_padded, b->num_sample), 1) * V);
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
static int sim_pick(struct sim *s, struct sim_req *reqs, int nreq, int step, bool greedy)
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

static bool all_done(const struct sim_req *reqs, int nreq, bool greedy)
{
    for (int i = 0; i < nreq; i++)
        if (greedy ? reqs[i].generated < reqs[i].len - reqs[i].prompt_len
                   : reqs[i].computed < reqs[i].len)
            return false;
    return true;
}

/* Five teacher-forced requests over mixed steps; every sampled row against the reference.
 * Returns how many block table entries were hidden by a window. */
static int run_mixed(const struct fixture_spec *spec, int block_size, double tol)
{
    enum { NREQ = 5 };
    struct sim s;
    struct sim_req reqs[NREQ];
    struct sim_options so = { .block_size = block_size };

    sim_create(&s, spec, &so);
    for (int i = 0; i < NREQ; i++) {
        int prompt = 3 + test_randint(&s.rng, 26);
        req_init(&s, &reqs[i], prompt, prompt + 1 + test_randint(&s.rng, 6), true);
    }
    for (int step = 0; !all_done(reqs, NREQ, false); step++) {
        int k = sim_pick(&s, reqs, NREQ, step, false);

        if (k == 0)
            continue;
        sim_build(&s, k);
        sim_check_step(&s, k, step % 3 == 2 ? 1 + test_randint(&s.rng, 4) : 0);
    }
    ck_assert_msg(s.max_err < tol, "max |logit - reference| = %g (tolerance %g)", s.max_err, tol);
    ck_assert_int_gt(s.mixed_steps, 0);
    ck_assert_int_gt(s.chunked_prompts, 0);
    ck_assert_int_gt(s.padded_steps, 0);
    for (int i = 0; i < NREQ; i++)
        free(reqs[i].ref);
    sim_destroy(&s);
    return s.hidden_blocks;
}

static struct fixture_spec llama_spec(void)
{
    return (struct fixture_spec){ .arch = ARCH_LLAMA, .vocab = 96, .hidden = 64, .ffn = 96,
                                  .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .dtype = DT_BF16, .seed = 11 };
}

static void quiet(void)
{
    log_level = LL_WARN;
}

static void loud(void)
{
    log_level = LL_INFO;
}

/* ==== tests: logits against the naive forward ==== */

START_TEST(llama_gqa_mixed_batches_match_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();

    run_mixed(&spec, 16, TOL);
    spec.dtype = DT_F32;
    spec.seed = 12;
    run_mixed(&spec, 16, TOL);
}
END_TEST

START_TEST(block_sizes_1_5_8_and_32_give_the_same_logits_as_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();
    int sizes[] = { 1, 5, 8, 32 };

    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        spec.seed = 20 + i;
        run_mixed(&spec, sizes[i], TOL);
    }
}
END_TEST

START_TEST(tied_embeddings_match_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();

    spec.tied = true;
    spec.seed = 31;
    run_mixed(&spec, 16, TOL);
}
END_TEST

START_TEST(head_dim_other_than_hidden_over_heads_matches_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();

    spec.hidden = 48;          /* 4 heads of 16: 64 != 48 */
    spec.kv_heads = 1;         /* and multi-query attention */
    spec.seed = 41;
    run_mixed(&spec, 8, TOL);
}
END_TEST

START_TEST(qwen2_qkv_biases_match_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();

    spec.arch = ARCH_QWEN2;
    spec.bias = true;
    spec.tied = true;
    spec.rope_theta = 1000000.0;
    spec.seed = 51;
    run_mixed(&spec, 16, TOL);
}
END_TEST

START_TEST(qwen3_qk_norm_matches_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();

    spec.arch = ARCH_QWEN3;
    spec.qk_norm = true;
    spec.head_dim = 32;        /* 4 * 32 = 128 != hidden 64, as in Qwen3 */
    spec.seed = 61;
    run_mixed(&spec, 16, TOL);
}
END_TEST

START_TEST(llama3_rope_scaling_matches_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();

    /* short original context so that head_dim 16 spans all three bands */
    spec.rope = (struct rope_scaling){ .type = ROPE_LLAMA3, .factor = 8.0, .low_freq_factor = 1.0,
                                       .high_freq_factor = 4.0, .original_max_position_embeddings = 64 };
    spec.rope_theta = 500000.0;
    spec.seed = 71;
    run_mixed(&spec, 16, TOL);
    spec.rope = (struct rope_scaling){ .type = ROPE_LINEAR, .factor = 2.0 };
    spec.seed = 72;
    run_mixed(&spec, 8, TOL);
}
END_TEST

START_TEST(sliding_window_layers_mixed_with_full_ones_match_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();
    int mix[4] = { 0, 6, 0, 6 }, all[2] = { 9, 9 };

    spec.layers = 4;
    spec.windows = mix;        /* two KV groups; out-of-window blocks hidden from the table */
    spec.seed = 81;
    ck_assert_int_gt(run_mixed(&spec, 4, TOL), 0);
    spec.seed = 82;
    run_mixed(&spec, 16, TOL);
    spec.layers = 2;
    spec.windows = all;        /* Mistral-style: every layer windowed, one group */
    spec.arch = ARCH_MISTRAL;
    spec.seed = 83;
    ck_assert_int_gt(run_mixed(&spec, 4, TOL), 0);
}
END_TEST

/* ==== tests: greedy tokens through runner_execute ==== */

/* Greedy generation for reqs[0..nreq) over random mixed steps; tokens land in reqs. */
static void run_greedy(struct sim *s, struct sim_req *reqs, int nreq)
{
    struct sample_result res[MAX_SEQS];

    for (int step = 0; !all_done(reqs, nreq, true); step++) {
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

START_TEST(a_request_gives_the_same_greedy_tokens_alone_and_in_a_batch)
{
    struct fixture_spec spec = llama_spec();
    struct sim_options so = { .block_size = 8 };
    struct sim alone, batch;
    struct sim_req a, reqs[4];
    int gen = 12;
    double *ref;

    spec.seed = 91;
    sim_create(&alone, &spec, &so);
    req_init(&alone, &a, 14, 14 + gen, false);
    run_greedy(&alone, &a, 1);

    so.block_size = 16;
    sim_create(&batch, &spec, &so);
    for (int i = 0; i < 4; i++) {
        int prompt = 4 + test_randint(&batch.rng, 20);
        req_init(&batch, &reqs[i], prompt, prompt + 3 + test_randint(&batch.rng, 10), false);
    }
    reqs[2] = a;               /* the same prompt, joining at step 2 */
    memset(reqs[2].num_blocks, 0, sizeof reqs[2].num_blocks);
    reqs[2].computed = reqs[2].generated = 0;
    run_greedy(&batch, reqs, 4);
    ck_assert_int_gt(batch.mixed_steps, 0);
    ck_assert_mem_eq(a.tokens, reqs[2].tokens, sizeof(int32_t) * (14 + gen));

    /* and the naive forward agrees wherever its top two logits are not a near tie */
    ref = malloc(sizeof(double) * (14 + gen) * spec.vocab);
    naive_forward(&alone.fx.m, a.tokens, 14 + gen - 1, ref);
    for (int p = 13; p < 14 + gen - 1; p++) {
        const double *row = ref + (size_t)p * spec.vocab;
        int best = 0, second = -1;
        for (int v = 1; v < spec.vocab; v++)
            if (row[v] > row[best]) {
                second = best;
                best = v;
            } else if (second < 0 || row[v] > row[second]) {
                second = v;
            }
        if (row[best] - row[second] > 1e-2)
            ck_assert_int_eq(a.tokens[p + 1], best);
    }
    free(ref);
    sim_destroy(&alone);
    sim_destroy(&batch);
}
END_TEST

/* A fake graph backend: the cpu backend whose "graphs" remember the body and replay it by
 * calling it again against the restaged batch — what a CUDA graph does with fixed buffers. */
static struct backend_ops patched_ops;
static const struct backend_ops *cpu_ops;
static int (*graph_body[MAX_SEQS + 1])(void *);
static void *graph_arg[MAX_SEQS + 1];
static struct bk_batch last_staged, graph_staged[MAX_SEQS + 1];
static int captures, replays, exact_replays, fused_calls;

static int fake_stage(struct backend *be, const struct step_batch *b, const struct sample_row *rows,
                      struct bk_batch *dev)
{
    int rc = cpu_ops->stage(be, b, rows, dev);

    last_staged = *dev;
    return rc;
}

static int fake_capture(struct backend *be, int size, int (*body)(void *), void *arg)
{
    if (size > MAX_SEQS)
        return -EINVAL;
    graph_body[size] = body;
    graph_arg[size] = arg;
    graph_staged[size] = last_staged;
    captures++;
    return 0;
}

/* A real graph replays the scalars it was captured with: the staged batch must carry
 * exactly those, whatever the batch (only the arrays behind the pointers change). */
static int fake_replay(struct backend *be, int size)
{
    const struct bk_batch *c = &graph_staged[size], *n = &last_staged;

    if (c->num_tokens != size || n->num_tokens != size || n->num_reqs != c->num_reqs ||
        n->num_sample != c->num_sample || n->max_query_len != c->max_query_len ||
        n->max_seq_len != c->max_seq_len || n->max_blocks_per_req != c->max_blocks_per_req ||
        n->num_kv_groups != c->num_kv_groups)
        return -EINVAL;
    replays++;
    exact_replays += graph_body[size] != NULL && n->seq_lens[n->num_reqs - 1] > 0;
    return graph_body[size](graph_arg[size]);
}

static int fake_rope_cache_update(struct backend *be, void *q, void *k, const void *v,
                                  const int32_t *positions, const int64_t *slot_mapping, int n,
                                  const struct rope_params *p, void *k_cache, void *v_cache,
                                  const struct cache_layout *l)
{
    int rc = cpu_ops->rope(be, q, k, positions, n, p);

    fused_calls++;
    return rc ? rc : cpu_ops->cache_update(be, k, v, p->stride, slot_mapping, n, k_cache, v_cache, l);
}

static void patch_ops(struct backend *be)
{
    cpu_ops = be->ops;
    patched_ops = *be->ops;
    patched_ops.stage = fake_stage;
    patched_ops.graph_capture = fake_capture;
    patched_ops.graph_replay = fake_replay;
    patched_ops.rope_cache_update = fake_rope_cache_update;
    be->ops = &patched_ops;
}

START_TEST(graph_replay_of_padded_decode_batches_gives_the_eager_tokens)
{
    struct fixture_spec spec = llama_spec();
    int sizes[] = { 8, 1, 2, 4, 4 };   /* unsorted, with a duplicate */
    struct sim_options eager_so = { .block_size = 4 };
    struct sim_options graph_so = { .block_size = 4, .graph_sizes = sizes, .num_graph_sizes = 5,
                                    .patch = patch_ops };
    struct sim eager, graph;
    struct sim_req re[3], rg[3];

    spec.seed = 101;
    captures = replays = exact_replays = 0;
    sim_create(&eager, &spec, &eager_so);
    sim_create(&graph, &spec, &graph_so);
    ck_assert_int_eq(captures, 4);
    for (int i = 0; i < 3; i++) {
        req_init(&eager, &re[i], 3 + 2 * i, 3 + 2 * i + 9, false);
        rg[i] = re[i];
    }
    run_greedy(&eager, re, 3);
    run_greedy(&graph, rg, 3);
    ck_assert_int_gt(replays, 3);
    ck_assert_int_gt(graph.padded_replays, 0);
    ck_assert_int_gt(exact_replays, 0);        /* a batch of exactly a graph size, unpadded */
    ck_assert_int_eq(eager.padded_replays, 0);
    for (int i = 0; i < 3; i++)
        ck_assert_mem_eq(re[i].tokens, rg[i].tokens, sizeof(int32_t) * re[i].len);

    /* the padded sizes: a decode batch of 3 pads to 4, of 5 to 8, of 9 runs eagerly */
    graph.b.decode_only = true;
    graph.b.num_tokens = 3;
    ck_assert_int_eq(runner_padded_size(graph.r, &graph.b), 4);
    graph.b.num_tokens = 5;
    ck_assert_int_eq(runner_padded_size(graph.r, &graph.b), 8);
    graph.b.num_tokens = 9;
    ck_assert_int_eq(runner_padded_size(graph.r, &graph.b), 9);
    graph.b.decode_only = false;
    graph.b.num_tokens = 3;
    ck_assert_int_eq(runner_padded_size(graph.r, &graph.b), 3);
    ck_assert_int_eq(runner_padded_size(eager.r, &graph.b), 3);
    sim_destroy(&eager);
    sim_destroy(&graph);
}
END_TEST

START_TEST(the_fused_rope_cache_update_path_gives_the_same_logits)
{
    struct fixture_spec spec = llama_spec();
    struct sim_options so = { .block_size = 8, .fused_rope_cache = true, .patch = patch_ops };
    struct sim s;
    struct sim_req reqs[3];

    spec.seed = 111;
    fused_calls = 0;
    sim_create(&s, &spec, &so);
    for (int i = 0; i < 3; i++)
        req_init(&s, &reqs[i], 5 + 3 * i, 5 + 3 * i + 4, true);
    for (int step = 0; !all_done(reqs, 3, false); step++) {
        int k = sim_pick(&s, reqs, 3, step, false);
        if (k == 0)
            continue;
        sim_build(&s, k);
        sim_check_step(&s, k, 0);
    }
    ck_assert_msg(s.max_err < TOL, "max error %g", s.max_err);
    ck_assert_int_eq(fused_calls, s.steps * spec.layers);
    for (int i = 0; i < 3; i++)
        free(reqs[i].ref);
    sim_destroy(&s);
}
END_TEST

START_TEST(the_runner_refuses_bad_options_and_batches_it_cannot_run)
{
    struct fixture_spec spec = llama_spec();
    struct random_model fx;
    struct backend *be;
    struct runner *r = NULL;
    struct backend_options bo = { .num_threads = 1 };
    struct runner_options o = { 16, 8, 64, 4, 64, false, NULL, 0, false, false, false, DT_F32 };
    struct step_batch b;
    struct sample_result res[4];
    char err[ERR_LEN] = "";

    ck_assert_int_eq(random_model_create(&fx, &spec), 0);
    ck_assert_int_eq(runner_backend_options(&fx.m.cfg, &o, &bo), 0);
    ck_assert_int_eq(bo.max_blocks_per_req, 4);
    ck_assert_int_eq(bo.vocab_size, 96);
    ck_assert_int_eq(backend_create(&be, "cpu", &bo, err), 0);
    o.block_size = 0;
    ck_assert_int_eq(runner_create(&r, be, &fx.m, &o, err), -EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(err, "block_size 0"));
    o.block_size = 16;
    fx.m.cfg.num_kv_heads = 3;
    ck_assert_int_eq(runner_create(&r, be, &fx.m, &o, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "heads 4/3"));
    fx.m.cfg.num_kv_heads = 2;
    /* a config whose KV-cache groups were never filled (model_kv_groups), or that puts a
     * layer in a group it does not have */
    fx.m.cfg.num_kv_groups = 0;
    ck_assert_int_eq(runner_backend_options(&fx.m.cfg, &o, &bo), -EINVAL);
    ck_assert_int_eq(runner_create(&r, be, &fx.m, &o, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "0 KV-cache groups"));
    fx.m.cfg.num_kv_groups = 1;
    fx.m.cfg.layer_kv_group[1] = 1;
    ck_assert_int_eq(runner_create(&r, be, &fx.m, &o, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "layer 1 is in KV-cache group 1 of 1"));
    fx.m.cfg.layer_kv_group[1] = 0;
    ck_assert_int_eq(runner_create(&r, be, &fx.m, &o, err), 0);
    ck_assert_uint_eq(runner_kv_block_bytes(&fx.m.cfg, be, DT_F32, 16), 2 * 2 * 16 * 2 * 16 * 4);
    /* a batch with more tokens than the runner was sized for */
    ck_assert_int_eq(batch_init(&b, 128, 4, 1, 4), 0);
    b.num_reqs = 1;
    b.num_tokens = 100;
    b.query_start_loc[1] = 100;
    b.seq_lens[0] = 100;
    ck_assert_int_eq(runner_execute(r, &b, NULL, res), -EINVAL);
    batch_fini(&b);
    runner_destroy(r);
    backend_destroy(be);
    random_model_destroy(&fx);
}
END_TEST

Suite *forward_suite(void)
{
    Suite *s = suite_create("forward");
    TCase *tc = tcase_create("forward");

    tcase_add_unchecked_fixture(tc, quiet, loud);
    tcase_add_test(tc, llama_gqa_mixed_batches_match_the_naive_forward);
    tcase_add_test(tc, block_sizes_1_5_8_and_32_give_the_same_logits_as_the_naive_forward);
    tcase_add_test(tc, tied_embeddings_match_the_naive_forward);
    tcase_add_test(tc, head_dim_other_than_hidden_over_heads_matches_the_naive_forward);
    tcase_add_test(tc, qwen2_qkv_biases_match_the_naive_forward);
    tcase_add_test(tc, qwen3_qk_norm_matches_the_naive_forward);
    tcase_add_test(tc, llama3_rope_scaling_matches_the_naive_forward);
    tcase_add_test(tc, sliding_window_layers_mixed_with_full_ones_match_the_naive_forward);
    tcase_add_test(tc, a_request_gives_the_same_greedy_tokens_alone_and_in_a_batch);
    tcase_add_test(tc, graph_replay_of_padded_decode_batches_gives_the_eager_tokens);
    tcase_add_test(tc, the_fused_rope_cache_update_path_gives_the_same_logits);
    tcase_add_test(tc, the_runner_refuses_bad_options_and_batches_it_cannot_run);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

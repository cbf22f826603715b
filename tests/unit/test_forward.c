/* test_forward.c — the paged, batched forward (engine/forward.c over the CPU backend, driven
 * through engine/runner.c) against the independent naive forward of naive_forward.c
 * (llama2.c style: one sequence, one token at a time, contiguous K/V arrays, no paging, no
 * slots, double accumulation). Random small models of every supported shape run
 * mixed batches (prefill chunks of prompts split over steps, decodes, padding) over shuffled
 * block ids at several block sizes; greedy tokens must not depend on the batch; the graph
 * path of the runner (with a fake graph backend that replays by calling the body again:
 * fake_graphs.c) must equal the eager path. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/base/log.h"
#include "engine/runner.h"
#include "scheduler/batch.h"
#include "tests/unit/forward_sim.h"
#include "tests/unit/random_model.h"
#include "tests/unit/naive_forward.h"
#include "tests/unit/fake_graphs.h"
#include "tests/unit/fixtures.h"   /* fixture_quiet, fixture_loud */

/* |logit - reference|: f32 against double, logits of order 1 to 5; seen: 5e-6 */
#define TOL 1e-4

static struct fixture_spec llama_spec(void)
{
    return (struct fixture_spec){ .arch = ARCH_LLAMA, .vocab = 96, .hidden = 64, .ffn = 96,
                                  .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .dtype = DT_BF16, .seed = 11 };
}


/* ==== tests: logits against the naive forward ==== */

START_TEST(llama_gqa_mixed_batches_match_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();

    sim_run_mixed(&spec, 16, TOL, NULL);
    spec.dtype = DT_F32;
    spec.seed = 12;
    sim_run_mixed(&spec, 16, TOL, NULL);
}
END_TEST

START_TEST(block_sizes_1_5_8_and_32_give_the_same_logits_as_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();
    int sizes[] = { 1, 5, 8, 32 };

    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        spec.seed = 20 + i;
        sim_run_mixed(&spec, sizes[i], TOL, NULL);
    }
}
END_TEST

START_TEST(tied_embeddings_match_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();

    spec.tied = true;
    spec.seed = 31;
    sim_run_mixed(&spec, 16, TOL, NULL);
}
END_TEST

START_TEST(head_dim_other_than_hidden_over_heads_matches_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();

    spec.hidden = 48;          /* 4 heads of 16: 64 != 48 */
    spec.kv_heads = 1;         /* and multi-query attention */
    spec.seed = 41;
    sim_run_mixed(&spec, 8, TOL, NULL);
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
    sim_run_mixed(&spec, 16, TOL, NULL);
}
END_TEST

START_TEST(qwen3_qk_norm_matches_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();

    spec.arch = ARCH_QWEN3;
    spec.qk_norm = true;
    spec.head_dim = 32;        /* 4 * 32 = 128 != hidden 64, as in Qwen3 */
    spec.seed = 61;
    sim_run_mixed(&spec, 16, TOL, NULL);
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
    sim_run_mixed(&spec, 16, TOL, NULL);
    spec.rope = (struct rope_scaling){ .type = ROPE_LINEAR, .factor = 2.0 };
    spec.seed = 72;
    sim_run_mixed(&spec, 8, TOL, NULL);
}
END_TEST

START_TEST(sliding_window_layers_mixed_with_full_ones_match_the_naive_forward)
{
    struct fixture_spec spec = llama_spec();
    int mix[4] = { 0, 6, 0, 6 }, all[2] = { 9, 9 };

    spec.layers = 4;
    spec.windows = mix;        /* two KV groups; out-of-window blocks hidden from the table */
    spec.seed = 81;
    ck_assert_int_gt(sim_run_mixed(&spec, 4, TOL, NULL), 0);
    spec.seed = 82;
    sim_run_mixed(&spec, 16, TOL, NULL);
    spec.layers = 2;
    spec.windows = all;        /* Mistral-style: every layer windowed, one group */
    spec.arch = ARCH_MISTRAL;
    spec.seed = 83;
    ck_assert_int_gt(sim_run_mixed(&spec, 4, TOL, NULL), 0);
}
END_TEST

/* ==== tests: greedy tokens through runner_execute ==== */

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
    sim_req_init(&alone, &a, 14, 14 + gen, false);
    sim_run_greedy(&alone, &a, 1);

    so.block_size = 16;
    sim_create(&batch, &spec, &so);
    for (int i = 0; i < 4; i++) {
        int prompt = 4 + test_randint(&batch.rng, 20);
        sim_req_init(&batch, &reqs[i], prompt, prompt + 3 + test_randint(&batch.rng, 10), false);
    }
    reqs[2] = a;               /* the same prompt, joining at step 2 */
    memset(reqs[2].num_blocks, 0, sizeof reqs[2].num_blocks);
    reqs[2].computed = reqs[2].generated = 0;
    sim_run_greedy(&batch, reqs, 4);
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

static int fused_calls;

static int fake_rope_cache_update(struct backend *be, void *q, void *k, const void *v,
                                  const int32_t *positions, const int64_t *slot_mapping, int n,
                                  const struct rope_params *p, void *k_cache, void *v_cache,
                                  const struct cache_layout *l)
{
    int rc = fake_graphs_base->rope(be, q, k, positions, n, p);

    fused_calls++;
    return rc ? rc : fake_graphs_base->cache_update(be, k, v, p->stride, slot_mapping, n,
                                                    k_cache, v_cache, l);
}

static void patch_ops(struct backend *be)
{
    fake_graphs_patch(be)->rope_cache_update = fake_rope_cache_update;
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
    sim_create(&eager, &spec, &eager_so);
    sim_create(&graph, &spec, &graph_so);
    /* each size twice: the whole step, and the forward alone (for steps with masks) */
    ck_assert_int_eq(fake_graphs.captures, 8);
    ck_assert_int_eq(fake_graphs.forward_captures, 4);
    for (int i = 0; i < 3; i++) {
        sim_req_init(&eager, &re[i], 3 + 2 * i, 3 + 2 * i + 9, false);
        rg[i] = re[i];
    }
    sim_run_greedy(&eager, re, 3);
    sim_run_greedy(&graph, rg, 3);
    ck_assert_int_gt(fake_graphs.replays, 3);
    ck_assert_int_eq(fake_graphs.forward_replays, 0);   /* no masks: whole-step graphs only */
    ck_assert_int_gt(graph.padded_replays, 0);
    ck_assert_int_gt(fake_graphs.exact_replays, 0);   /* a batch of exactly a graph size, unpadded */
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
        sim_req_init(&s, &reqs[i], 5 + 3 * i, 5 + 3 * i + 4, true);
    for (int step = 0; !sim_all_done(reqs, 3, false); step++) {
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
    struct runner_options o = { 16, 8, 64, 4, 64, false, NULL, 0, false, false, false, DT_F32, 1, 1, NULL, { 0 }, NULL, NULL, 0 };
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

    tcase_add_unchecked_fixture(tc, fixture_quiet, fixture_loud);
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


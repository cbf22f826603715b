/* test_forward_gpt_oss.c — gpt-oss on the CPU backend. Each new piece against values worked
 * out by hand (YaRN's inverse frequencies of a 4-dim head, the clamped SwiGLU at chosen
 * points, a sink in a 2-key softmax), then the whole model (engine/forward.c through
 * engine/runner.c) against the independent naive forward (naive_forward.c's gpt-oss path,
 * which reads the experts as published, input-major and interleaved, as the cpu backend's moe
 * now does in place; the [gate; up] copy engine/weights.c lays out for other backends is
 * checked too): sinks, q/k/v/o biases, YaRN, alternating sliding
 * and full layers in two KV-cache groups, the biased router's top-k softmax and the clamped
 * SwiGLU, over mixed batches; and the one-line refusal of a backend without the new ops
 * (the CUDA backend of this build). */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/cpu/cpu_ops.h"    /* swiglu_oai_mul_cpu */
#include "engine/rope.h"
#include "engine/weights.h"
#include "tests/unit/forward_sim.h"
#include "tests/unit/naive_forward.h"
#include "tests/unit/fixtures.h"   /* fixture_quiet, fixture_loud */

/* |logit - reference|: f32 against double; seen: 1e-5 */
#define TOL 1e-4

/* gpt-oss's shape, small: sliding (window 6, shorter than the prompts) and full layers
 * alternating from a sliding layer 0, 4 experts top 2, a clamp of 1 (the real 7 would rarely
 * bite at these activations), YaRN factor 8 whose ramp crosses the middle of the 8
 * frequencies (beta_fast 32 at dim 0.2, beta_slow 1 at dim 3.2 over 256 original positions). */
static struct fixture_spec gpt_oss_spec(void)
{
    return fixture_gpt_oss_spec(1101);
}

/* ---- the pieces, by hand ---- */

/* head_dim 4, theta 100, factor 4 over 64 original positions, beta_fast 4, beta_slow 1:
 * frequencies 1 and 100^(-1/2) = 0.1. Frequency i turns 64 * f_i / (2 pi) times: 10.19 and
 * 1.02. The ramp runs from the dim turning beta_fast = 4 times,
 * low = 4 ln(64 / (4 * 2 pi)) / (2 ln 100) = 0.405940, to the one turning beta_slow = 1 time,
 * high = 4 ln(64 / (2 pi)) / (2 ln 100) = 1.008000. Dim 0 is below the ramp: kept, 1. Dim 1 is
 * (1 - 0.405940) / 0.602060 = 0.986712 up it: 0.1 * 0.013288 + 0.025 * 0.986712 = 0.0259966.
 * With truncate the ends become 0 and 2: dim 1 is half way, 0.05 + 0.0125 = 0.0625. */
START_TEST(yarn_inverse_frequencies_of_a_4_dim_head_are_as_worked_out_by_hand)
{
    struct rope_scaling s = { .type = ROPE_YARN, .factor = 4.0, .beta_fast = 4.0,
                              .beta_slow = 1.0, .original_max_position_embeddings = 64 };
    float inv[2];
    char err[ERR_LEN] = "";

    ck_assert_int_eq(rope_inv_freq(inv, 4, 100.0, &s, err), 0);
    ck_assert_double_eq_tol(inv[0], 1.0, 1e-6);
    ck_assert_double_eq_tol(inv[1], 0.0259966, 1e-6);
    s.truncate = true;
    ck_assert_int_eq(rope_inv_freq(inv, 4, 100.0, &s, err), 0);
    ck_assert_double_eq_tol(inv[0], 1.0, 1e-6);
    ck_assert_double_eq_tol(inv[1], 0.0625, 1e-7);
    s.beta_slow = 0.0;
    ck_assert_int_eq(rope_inv_freq(inv, 4, 100.0, &s, err), -EINVAL);
    ck_assert_msg(strstr(err, "yarn needs"), "%s", err);
}
END_TEST

/* (u + 1) g sigmoid(1.702 g) with g = min(gate, 7), u = clamp(up, -7, 7):
 *   gate 1, up 2:   3 * 1 * sigmoid(1.702) = 3 * 0.845796 = 2.537387
 *   gate 10, up .5: g = 7: 1.5 * 7 * sigmoid(11.914) = 10.5 * (1 - 6.7e-6) = 10.499930
 *   gate -3, up -9: u = -7: -6 * -3 * sigmoid(-5.106) = 18 * 0.0060238 = 0.108428
 *   gate 0, up 5:   0
 *   gate 2, up 8:   u = 7: 8 * 2 * sigmoid(3.404) = 16 * 0.967829 = 15.485269 */
START_TEST(clamped_swiglu_at_chosen_points_is_as_worked_out_by_hand)
{
    /* five rows of ffn 1: [gate | up] */
    const float gu[10] = { 1, 2, 10, 0.5f, -3, -9, 0, 5, 2, 8 };
    const double want[5] = { 2.537387, 10.499930, 0.108428, 0.0, 15.485269 };
    float out[5];

    ck_assert_int_eq(swiglu_oai_mul_cpu(out, gu, 5, 1, 1.702f, 7.0f), 0);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(fabs(out[i] - want[i]) < 2e-5, "row %d: %.6f, want %.6f", i, out[i], want[i]);
}
END_TEST

/* One head of dim 2, scale 1, a request of two tokens in one block. q = (1, 0) meets
 * k0 = (0, 0) and k1 = (ln 3, 0): logits 0 and ln 3, weights 1/4 and 3/4 without a sink, so
 * with v0 = (1, 0) and v1 = (0, 1) the last row is (1/4, 3/4). A sink of ln 2 adds e^(ln 2) = 2
 * to the denominator 1 + 3: (1/6, 3/6). The first row sees k0 alone: (1, 0), and with the
 * sink 1 / (1 + 2) of v0: (1/3, 0). */
START_TEST(a_sink_adds_its_logit_to_a_two_key_softmax_as_worked_out_by_hand)
{
    struct backend_options bo = { .num_threads = 1, .max_tokens = 4, .max_reqs = 1,
                                  .max_blocks_per_req = 1, .num_kv_groups = 1, .vocab_size = 4 };
    float kc[4 * 2] = { 0, 0, logf(3.0f), 0 }, vc[4 * 2] = { 1, 0, 0, 1 };
    float q[2 * 2] = { 1, 0, 1, 0 }, out[2 * 2], sink = logf(2.0f);
    int32_t qsl[2] = { 0, 2 }, seq[1] = { 2 }, table[1] = { 0 };
    struct bk_batch b = { .num_reqs = 1, .num_tokens = 2, .num_kv_groups = 1,
                          .max_blocks_per_req = 1, .query_start_loc = qsl, .seq_lens = seq };
    struct attn_params p = { 1, 1, 2, 1.0f, 0.0f, 0, { 1, 4, 1, 2, DT_F32, 0, 0 }, NULL };
    struct backend *be;
    char err[ERR_LEN];

    b.block_table[0] = table;
    ck_assert_int_eq(backend_create(&be, "cpu", &bo, err), 0);
    ck_assert(be->ops->attn_sinks);
    ck_assert_int_eq(be->ops->attention(be, out, q, 2, kc, vc, &b, 0, &p), 0);
    ck_assert_float_eq_tol(out[0], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(out[1], 0.0f, 1e-6f);
    ck_assert_float_eq_tol(out[2], 0.25f, 1e-6f);
    ck_assert_float_eq_tol(out[3], 0.75f, 1e-6f);
    p.sinks = &sink;
    ck_assert_int_eq(be->ops->attention(be, out, q, 2, kc, vc, &b, 0, &p), 0);
    ck_assert_float_eq_tol(out[0], 1.0f / 3.0f, 1e-6f);
    ck_assert_float_eq_tol(out[1], 0.0f, 1e-6f);
    ck_assert_float_eq_tol(out[2], 1.0f / 6.0f, 1e-6f);
    ck_assert_float_eq_tol(out[3], 0.5f, 1e-6f);
    backend_destroy(be);
}
END_TEST

/* ---- the experts as published ---- */

/* One moe call on experts as gpt-oss publishes them (f32 [hidden, 2 ffn], gate and up
 * interleaved; [ffn, hidden]) against the same numbers transposed here into the [gate; up]
 * layout: matmul_t.c sums each output in row order where matmul.c sums 16 interleaved
 * partial sums, so the two differ by rounding alone (seen: 1.1e-6 at most). */
static struct bk_weight f32_weight(void *data, int rows, int cols)
{
    return (struct bk_weight){ .data = data, .dtype = DT_F32, .rows = rows, .cols = cols };
}

START_TEST(published_experts_give_the_relaid_out_ones_results_within_rounding)
{
    enum { E = 4, K = 2, H = 72, F = 40, N = 5 };
    struct backend_options bo = { .num_threads = 2, .max_tokens = N, .max_reqs = 1,
                                  .max_blocks_per_req = 1, .num_kv_groups = 1, .vocab_size = 4 };
    static float gu_t[E][H][2 * F], dn_t[E][F][H], gu[E][2 * F][H], dn[E][H][F];
    static float gub[E][2 * F], gub_r[E][2 * F], dnb[E][H], router[E][H], rb[E];
    float x[N][H], out[2][N][H], worst = 0.0f;
    struct bk_weight w_gu[2][E], w_dn[2][E], w_gub[2][E], w_dnb[E], w_router, w_rb;
    struct moe_params p = { E, K, H, F, 0, true, NULL, MOE_ACT_SWIGLU_OAI, 1.702f, 7.0f };
    uint64_t rng = 77;
    struct backend *be;
    char err[ERR_LEN];

    for (int e = 0; e < E; e++) {
        for (int h = 0; h < H; h++)
            for (int c = 0; c < 2 * F; c++)   /* column c: gate c/2 (even) or up c/2 (odd) */
                gu[e][c % 2 * F + c / 2][h] = gu_t[e][h][c] = test_randf(&rng, -0.2f, 0.2f);
        for (int f = 0; f < F; f++)
            for (int h = 0; h < H; h++)
                dn[e][h][f] = dn_t[e][f][h] = test_randf(&rng, -0.2f, 0.2f);
        for (int c = 0; c < 2 * F; c++)
            gub_r[e][c % 2 * F + c / 2] = gub[e][c] = test_randf(&rng, -0.1f, 0.1f);
        for (int h = 0; h < H; h++) {
            dnb[e][h] = test_randf(&rng, -0.1f, 0.1f);
            router[e][h] = test_randf(&rng, -1.0f, 1.0f);
        }
        rb[e] = test_randf(&rng, -0.5f, 0.5f);
        w_gu[0][e] = f32_weight(gu_t[e], H, 2 * F);
        w_dn[0][e] = f32_weight(dn_t[e], F, H);
        w_gub[0][e] = f32_weight(gub[e], 2 * F, 1);
        w_gu[1][e] = f32_weight(gu[e], 2 * F, H);
        w_dn[1][e] = f32_weight(dn[e], H, F);
        w_gub[1][e] = f32_weight(gub_r[e], 2 * F, 1);
        w_dnb[e] = f32_weight(dnb[e], H, 1);
    }
    w_router = f32_weight(router, E, H);
    w_rb = f32_weight(rb, E, 1);
    for (int t = 0; t < N; t++)
        for (int h = 0; h < H; h++)
            x[t][h] = test_randf(&rng, -2.0f, 2.0f);
    ck_assert_int_eq(backend_create(&be, "cpu", &bo, err), 0);
    ck_assert(be->ops->moe_oai_published);
    p.work = malloc(moe_work_bytes(be, N, &p));
    ck_assert_ptr_nonnull(p.work);
    for (int i = 0; i < 2; i++) {
        struct moe_weights mw = { &w_router, w_gu[i], w_dn[i], NULL, NULL, NULL, &w_rb,
                                  w_gub[i], w_dnb, i == 0 };

        ck_assert_int_eq(be->ops->moe(be, out[i], x, &mw, N, &p), 0);
    }
    for (int t = 0; t < N; t++)
        for (int h = 0; h < H; h++) {
            ck_assert(isfinite(out[0][t][h]));
            ck_assert_msg(fabsf(out[0][t][h] - out[1][t][h]) <= 1e-5f * (1.0f + fabsf(out[1][t][h])),
                          "row %d dim %d: %g published, %g relaid out", t, h, out[0][t][h],
                          out[1][t][h]);
            worst = fmaxf(worst, fabsf(out[0][t][h] - out[1][t][h]));
        }
    printf("published vs relaid-out experts: max |difference| %.3g\n", worst);
    {   /* the wrong layout for the flag is refused, not read out of bounds */
        struct moe_weights mw = { &w_router, w_gu[1], w_dn[1], NULL, NULL, NULL, &w_rb,
                                  w_gub[1], w_dnb, true };

        ck_assert_int_eq(be->ops->moe(be, out[0], x, &mw, N, &p), -EINVAL);
    }
    free(p.work);
    backend_destroy(be);
}
END_TEST

/* The cpu backend binds gpt-oss's experts where the model holds them: no host copy at all
 * (weights.host_bytes is the f32 sinks alone). Without moe_oai_published (cuda) they are
 * laid out anew: kept for a backend that reads its parts in place, freed at once for one
 * that copies (so the host never holds all of them). */
static void relay_experts_kept(struct backend_ops *ops)
{
    ops->moe_oai_published = false;
}

/* As if upload_weight copied (cuda): the cpu one still shares the freed copy, but nothing
 * reads those weights before weights_free, which frees none of them (not the backend's own). */
static void relay_experts_copied(struct backend_ops *ops)
{
    ops->moe_oai_published = false;
    ops->weights_in_place = false;
}

static size_t host_bytes_of_upload(const struct model *m, void (*patch)(struct backend_ops *))
{
    struct backend_options bo = { .num_threads = 1, .max_tokens = 4, .max_reqs = 1,
                                  .max_blocks_per_req = 1, .num_kv_groups = 1,
                                  .vocab_size = m->cfg.vocab_size };
    struct backend_ops ops;
    struct backend *be;
    struct weights w;
    char err[ERR_LEN];
    size_t bytes;

    ck_assert_int_eq(backend_create(&be, "cpu", &bo, err), 0);
    const struct backend_ops *real = be->ops;
    ops = *real;
    if (patch)
        patch(&ops);
    be->ops = &ops;
    ck_assert_msg(weights_upload(&w, be, m, false, err) == 0, "%s", err);
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const struct layer_weights *lw = &w.layers[l];

        ck_assert_int_eq(lw->experts_oai_published, !patch);
        for (int e = 0; !patch && e < lw->num_experts; e++) {
            const struct expert_tensors *x = &m->layers[l].experts[e];

            ck_assert_ptr_eq(lw->expert_gate_up[e].data, x->gate_up_t.data);
            ck_assert_ptr_eq(lw->expert_down[e].data, x->down_t.data);
            ck_assert_ptr_eq(lw->expert_gate_up_bias[e].data, x->gate_up_bias.data);
        }
    }
    bytes = w.host_bytes;
    weights_free(&w, be);
    be->ops = real;
    backend_destroy(be);
    return bytes;
}

START_TEST(the_cpu_backend_keeps_no_host_copy_of_gpt_oss_experts)
{
    struct fixture_spec spec = gpt_oss_spec();
    struct random_model fx;
    size_t sinks, experts;

    ck_assert_int_eq(random_model_create(&fx, &spec), 0);
    const struct model_config *c = &fx.m.cfg;
    sinks = (size_t)c->num_layers * c->num_heads * sizeof(float);
    experts = (size_t)c->num_layers * c->num_experts *
              (3 * (size_t)c->hidden_size * c->moe_intermediate_size +
               2 * (size_t)c->moe_intermediate_size) * dtype_size(spec.dtype);
    ck_assert_uint_eq(host_bytes_of_upload(&fx.m, NULL), sinks);
    ck_assert_uint_eq(host_bytes_of_upload(&fx.m, relay_experts_kept), sinks + experts);
    ck_assert_uint_eq(host_bytes_of_upload(&fx.m, relay_experts_copied), sinks);
    random_model_destroy(&fx);
}
END_TEST

/* ---- the whole model ---- */

START_TEST(gpt_oss_mixed_batches_match_the_naive_forward)
{
    struct fixture_spec spec = gpt_oss_spec();

    ck_assert_int_gt(sim_run_mixed(&spec, 4, TOL, NULL), 0);   /* the window hid blocks */
    spec.seed++;
    spec.dtype = DT_F32;
    spec.rope.truncate = true;
    spec.swiglu_limit = 0.5;
    sim_run_mixed(&spec, 16, TOL, NULL);
    spec.seed++;                /* f16 experts: relaid out as 2-byte elements, widened after */
    spec.dtype = DT_F16;
    sim_run_mixed(&spec, 8, TOL, NULL);
}
END_TEST

/* The sliding layers' blocks that left every query's window go back to the pool NaN-poisoned
 * and are reused: a read of one would turn logits into NaN. */
START_TEST(gpt_oss_sliding_layers_never_read_freed_and_poisoned_blocks)
{
    struct fixture_spec spec = gpt_oss_spec();
    struct sim_options so = { .block_size = 2, .free_out_of_window = true };

    spec.seed += 50;
    sim_run_mixed(&spec, 2, TOL, &so);
}
END_TEST

/* The [gate; up] copy that backends without moe_oai_published read (cuda), on the cpu. */
static void relaid_experts(struct backend *be)
{
    static struct backend_ops ops;

    ops = *be->ops;
    ops.moe_oai_published = false;
    be->ops = &ops;
}

START_TEST(gpt_oss_relaid_out_experts_still_match_the_naive_forward)
{
    struct fixture_spec spec = gpt_oss_spec();
    double err[2];
    struct sim_options so = { .block_size = 4, .max_err = &err[0] };

    spec.seed += 30;
    sim_run_mixed(&spec, 4, TOL, &so);          /* as published (the cpu backend's own way) */
    so.patch = relaid_experts;
    so.max_err = &err[1];
    sim_run_mixed(&spec, 4, TOL, &so);
    printf("gpt-oss max |logit - naive|: experts as published %.3g, relaid out %.3g\n", err[0],
           err[1]);
}
END_TEST

START_TEST(gpt_oss_greedy_tokens_match_the_naive_forward)
{
    struct fixture_spec spec = gpt_oss_spec();

    spec.seed += 70;
    ck_assert_int_gt(sim_greedy_matches_naive(&spec, 8, 12), 20);
}
END_TEST

/* A backend without attention sinks or gpt-oss's MoE (cuda before issue 11's port) refuses
 * the model at runner_create in one line instead of serving wrong logits. */
static void no_sinks(struct backend_ops *ops)
{
    ops->attn_sinks = false;
}

static void no_oai_moe(struct backend_ops *ops)
{
    ops->moe_oai = false;
}

START_TEST(a_backend_without_sinks_or_the_gpt_oss_moe_refuses_it_in_one_line)
{
    struct fixture_spec spec = gpt_oss_spec();
    char err[ERR_LEN] = "";

    ck_assert_int_eq(sim_runner_create_patched(&spec, no_sinks, err), -ENOTSUP);
    ck_assert_str_eq(err, "GptOssForCausalLM: attention with sinks runs on the CPU backend only "
                          "in this build (the cpu backend has no attention-sinks op)");
    ck_assert_int_eq(sim_runner_create_patched(&spec, no_oai_moe, err), -ENOTSUP);
    ck_assert_str_eq(err, "GptOssForCausalLM: the MoE block with router and expert biases and the "
                          "clamped SwiGLU runs on the CPU backend only in this build (the cpu "
                          "backend has no gpt-oss moe op)");
}
END_TEST

Suite *forward_gpt_oss_suite(void)
{
    Suite *s = suite_create("forward_gpt_oss");
    TCase *tc = tcase_create("forward_gpt_oss");

    tcase_add_unchecked_fixture(tc, fixture_quiet, fixture_loud);
    tcase_add_test(tc, yarn_inverse_frequencies_of_a_4_dim_head_are_as_worked_out_by_hand);
    tcase_add_test(tc, clamped_swiglu_at_chosen_points_is_as_worked_out_by_hand);
    tcase_add_test(tc, a_sink_adds_its_logit_to_a_two_key_softmax_as_worked_out_by_hand);
    tcase_add_test(tc, published_experts_give_the_relaid_out_ones_results_within_rounding);
    tcase_add_test(tc, the_cpu_backend_keeps_no_host_copy_of_gpt_oss_experts);
    tcase_add_test(tc, gpt_oss_mixed_batches_match_the_naive_forward);
    tcase_add_test(tc, gpt_oss_relaid_out_experts_still_match_the_naive_forward);
    tcase_add_test(tc, gpt_oss_sliding_layers_never_read_freed_and_poisoned_blocks);
    tcase_add_test(tc, gpt_oss_greedy_tokens_match_the_naive_forward);
    tcase_add_test(tc, a_backend_without_sinks_or_the_gpt_oss_moe_refuses_it_in_one_line);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

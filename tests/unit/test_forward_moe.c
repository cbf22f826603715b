/* test_forward_moe.c — mixture-of-experts layers (Mixtral, Qwen3-MoE) on the CPU backend
 * (engine/cpu/moe.c through engine/forward.c and engine/runner.c) against the independent
 * naive forward (naive_forward.c's ref_moe, written from transformers' sparse MoE blocks):
 * softmax routing in f32, top-k, renormalization always (Mixtral) or by norm_topk_prob
 * (Qwen3-MoE), dense layers among MoE ones (mlp_only_layers), Qwen2-MoE's sigmoid-gated
 * shared expert, over mixed batches. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "tests/unit/forward_sim.h"
#include "tests/unit/naive_forward.h"
#include "tests/unit/fixtures.h"   /* fixture_quiet, fixture_loud */

/* |logit - reference|: f32 against double; seen: 5e-6 */
#define TOL 1e-4

static struct fixture_spec mixtral_spec(void)
{
    return (struct fixture_spec){ .arch = ARCH_MIXTRAL, .vocab = 96, .hidden = 64, .ffn = 96,
                                  .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .dtype = DT_BF16, .experts = 8, .top_k = 2, .moe_ffn = 48,
                                  .renormalize = true, .seed = 401 };
}

/* Qwen3-MoE's shape, small: 16 experts, top 4, q/k norm, layer 1 dense (mlp_only_layers). */
static struct fixture_spec qwen3_moe_spec(void)
{
    return (struct fixture_spec){ .arch = ARCH_QWEN3_MOE, .vocab = 96, .hidden = 64, .ffn = 80,
                                  .layers = 3, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .qk_norm = true, .dtype = DT_BF16, .experts = 16, .top_k = 4,
                                  .moe_ffn = 32, .renormalize = false, .dense_layers = 1u << 1,
                                  .rope_theta = 1000000.0, .seed = 501 };
}

/* Qwen2-MoE's shape, small: q/k/v biases, 8 experts top 2 unnormalized, a shared expert of
 * 80 behind its sigmoid gate. */
static struct fixture_spec qwen2_moe_spec(void)
{
    return (struct fixture_spec){ .arch = ARCH_QWEN2_MOE, .vocab = 96, .hidden = 64, .ffn = 96,
                                  .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .bias = true, .dtype = DT_BF16, .experts = 8, .top_k = 2,
                                  .moe_ffn = 24, .shared_ffn = 80, .seed = 701 };
}

START_TEST(mixtral_top2_of_8_mixed_batches_match_the_naive_forward)
{
    struct fixture_spec spec = mixtral_spec();

    sim_run_mixed(&spec, 8, TOL, NULL);
    spec.seed++;
    spec.dtype = DT_F32;
    sim_run_mixed(&spec, 4, TOL, NULL);
}
END_TEST

START_TEST(qwen3_moe_top4_of_16_with_a_dense_layer_matches_the_naive_forward)
{
    struct fixture_spec spec = qwen3_moe_spec();

    sim_run_mixed(&spec, 8, TOL, NULL);      /* norm_topk_prob false: weights as softmaxed */
    spec.seed++;
    spec.renormalize = true;
    sim_run_mixed(&spec, 16, TOL, NULL);
}
END_TEST

START_TEST(qwen2_moe_shared_expert_behind_its_sigmoid_gate_matches_the_naive_forward)
{
    struct fixture_spec spec = qwen2_moe_spec();

    sim_run_mixed(&spec, 8, TOL, NULL);
    spec.seed++;
    spec.dtype = DT_F32;
    spec.renormalize = true;
    sim_run_mixed(&spec, 4, TOL, NULL);
}
END_TEST

/* Greedy tokens through runner_execute agree with the naive forward's argmax wherever its
 * top two logits are not a near tie. */
START_TEST(moe_greedy_tokens_match_the_naive_forward)
{
    struct fixture_spec specs[2] = { mixtral_spec(), qwen3_moe_spec() };

    for (int i = 0; i < 2; i++) {
        specs[i].seed += 70;
        ck_assert_int_gt(sim_greedy_matches_naive(&specs[i], 6, 10), 20);
    }
}
END_TEST

/* A backend without the moe op (as the CUDA one was before kernels/moe.cu) refuses the model
 * in one line. */
static void no_moe(struct backend_ops *ops)
{
    ops->moe = NULL;
}

START_TEST(a_backend_without_the_moe_op_refuses_the_model_in_one_line)
{
    struct fixture_spec spec = mixtral_spec();
    char err[ERR_LEN] = "";

    ck_assert_int_eq(sim_runner_create_patched(&spec, no_moe, err), -ENOTSUP);
    ck_assert_str_eq(err, "MixtralForCausalLM: the mixture-of-experts block runs on the CPU backend "
                          "only in this build (the cpu backend has no moe op)");
}
END_TEST

Suite *forward_moe_suite(void)
{
    Suite *s = suite_create("forward_moe");
    TCase *tc = tcase_create("forward_moe");

    tcase_add_unchecked_fixture(tc, fixture_quiet, fixture_loud);
    tcase_add_test(tc, mixtral_top2_of_8_mixed_batches_match_the_naive_forward);
    tcase_add_test(tc, qwen3_moe_top4_of_16_with_a_dense_layer_matches_the_naive_forward);
    tcase_add_test(tc, qwen2_moe_shared_expert_behind_its_sigmoid_gate_matches_the_naive_forward);
    tcase_add_test(tc, moe_greedy_tokens_match_the_naive_forward);
    tcase_add_test(tc, a_backend_without_the_moe_op_refuses_the_model_in_one_line);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

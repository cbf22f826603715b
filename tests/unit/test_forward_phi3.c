/* test_forward_phi3.c — Phi-3 on the CPU backend against the independent naive forward:
 * q/k/v and gate/up fused as published, a partial rotary factor (the first rotary_dim dims of
 * each head turn, the rest pass), LongRoPE's short and long factors with its attention
 * factor on cos and sin, and a sliding window on every layer, over mixed batches. */
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

static struct fixture_spec phi3_spec(void)
{
    return (struct fixture_spec){ .arch = ARCH_PHI3, .vocab = 96, .hidden = 64, .ffn = 96,
                                  .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .dtype = DT_BF16, .seed = 601 };
}

/* LongRoPE over rotary_dim dims: factors in [1, 6) (short) and [2, 40) (long), as Phi-3's
 * grow from high to low frequencies, with attention factor 1.19 (Phi-3-mini-128k's). */
static void set_longrope(struct fixture_spec *s, int rotary_dim, int original, bool use_long)
{
    uint64_t rng = 99;

    s->rotary_dim = rotary_dim;
    s->rope.type = ROPE_LONGROPE;
    s->rope.num_factors = rotary_dim / 2;
    s->rope.original_max_position_embeddings = original;
    s->rope.attention_factor = 1.19;
    s->rope.use_long_factor = use_long;   /* what the runner picks for max_model_len 64 */
    for (int i = 0; i < rotary_dim / 2; i++) {
        s->rope.short_factor[i] = 1.0f + 5.0f * i / rotary_dim + test_randf(&rng, 0, 0.2f);
        s->rope.long_factor[i] = 2.0f + 38.0f * i / rotary_dim + test_randf(&rng, 0, 0.2f);
    }
}

START_TEST(phi3_fused_qkv_and_gate_up_match_the_naive_forward)
{
    struct fixture_spec spec = phi3_spec();
    int windows[2] = { 7, 7 };

    sim_run_mixed(&spec, 8, TOL, NULL);
    spec.seed++;
    spec.windows = windows;    /* Phi-3-mini-4k's sliding_window slides every layer */
    ck_assert_int_gt(sim_run_mixed(&spec, 4, TOL, NULL), 0);
}
END_TEST

START_TEST(phi3_longrope_short_and_long_factors_with_partial_rotary_match_the_naive_forward)
{
    struct fixture_spec spec = phi3_spec();

    set_longrope(&spec, 12, 128, false);   /* max_model_len 64 <= 128: short factors */
    sim_run_mixed(&spec, 8, TOL, NULL);
    spec.seed++;
    set_longrope(&spec, 16, 32, true);     /* 64 > 32: long factors, full rotary */
    sim_run_mixed(&spec, 8, TOL, NULL);
    spec.seed++;
    set_longrope(&spec, 12, 32, true);
    spec.dtype = DT_F32;
    sim_run_mixed(&spec, 16, TOL, NULL);
}
END_TEST

/* A backend whose rope ignores rotary_dim and mscale (the CUDA one in this build) refuses. */
static struct backend_ops no_ext_ops;

START_TEST(a_backend_without_partial_rope_refuses_phi3_in_one_line)
{
    struct fixture_spec spec = phi3_spec();
    struct runner_options o = { 4, 64, 64, 4, 64, false, NULL, 0, false, false, false, DT_F32, 1, 1, NULL, { 0 }, NULL, NULL, 0 };
    struct backend_options bo = { .num_threads = 1 };
    struct random_model fx;
    struct backend *be;
    struct runner *r = NULL;
    const struct backend_ops *cpu;
    char err[ERR_LEN] = "";

    set_longrope(&spec, 12, 128, false);
    ck_assert_int_eq(random_model_create(&fx, &spec), 0);
    ck_assert_int_eq(runner_backend_options(&fx.m.cfg, &o, &bo), 0);
    ck_assert_int_eq(backend_create(&be, "cpu", &bo, err), 0);
    cpu = be->ops;
    no_ext_ops = *cpu;
    no_ext_ops.rope_ext = false;
    be->ops = &no_ext_ops;
    ck_assert_int_eq(runner_create(&r, be, &fx.m, &o, err), -ENOTSUP);
    ck_assert_msg(strstr(err, "Phi3ForCausalLM: the partial rotary embedding (partial_rotary_factor) "
                              "runs on the CPU backend only"), "%s", err);
    fx.m.cfg.rotary_dim = fx.m.cfg.head_dim;
    fx.m.cfg.rope_scaling.num_factors = fx.m.cfg.head_dim / 2;
    ck_assert_int_eq(runner_create(&r, be, &fx.m, &o, err), -ENOTSUP);
    ck_assert_msg(strstr(err, "longrope's attention_factor runs on the CPU backend only"), "%s", err);
    be->ops = cpu;
    backend_destroy(be);
    random_model_destroy(&fx);
}
END_TEST

Suite *forward_phi3_suite(void)
{
    Suite *s = suite_create("forward_phi3");
    TCase *tc = tcase_create("forward_phi3");

    tcase_add_unchecked_fixture(tc, fixture_quiet, fixture_loud);
    tcase_add_test(tc, phi3_fused_qkv_and_gate_up_match_the_naive_forward);
    tcase_add_test(tc, phi3_longrope_short_and_long_factors_with_partial_rotary_match_the_naive_forward);
    tcase_add_test(tc, a_backend_without_partial_rope_refuses_phi3_in_one_line);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

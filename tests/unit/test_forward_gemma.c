/* test_forward_gemma.c — Gemma 2 and Gemma 3 on the CPU backend (engine/forward.c through
 * engine/runner.c) against the independent naive forward (naive_forward.c, written from the
 * math of transformers' modeling_gemma2.py / modeling_gemma3.py): scaled embeddings, (1 + w)
 * and sandwich norms, GeGLU, query_pre_attn_scalar, attention and final soft-caps, Gemma 3's
 * q/k norm and local RoPE base, sliding and full layers in two KV-cache groups over mixed
 * batches, with the window group's out-of-window blocks freed, poisoned and reused. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "tests/unit/forward_sim.h"
#include "tests/unit/naive_forward.h"
#include "tests/unit/fixtures.h"   /* fixture_quiet, fixture_loud */

/* |logit - reference|: f32 against double; seen: 6e-6 */
#define TOL 1e-4

/* Gemma 2's shape, small: sliding (window 6, shorter than the prompts) and full layers
 * alternating from a sliding layer 0, query_pre_attn_scalar != head_dim, soft-caps small
 * enough to bend the logits of these weights (the real 50 and 30 would barely touch them). */
static struct fixture_spec gemma2_spec(void)
{
    static const int windows[4] = { 6, 0, 6, 0 };

    return (struct fixture_spec){ .arch = ARCH_GEMMA2, .vocab = 96, .hidden = 64, .ffn = 96,
                                  .layers = 4, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .tied = true, .dtype = DT_BF16, .windows = windows,
                                  .query_pre_attn_scalar = 24, .attn_softcap = 1.5,
                                  .final_softcap = 3.0, .seed = 201 };
}

/* Gemma 3's shape, small: 3 local layers to 1 global, q/k norm, local RoPE base 10000,
 * global base 1e6 with linear scaling (as gemma-3-4b), no soft-caps. */
static struct fixture_spec gemma3_spec(void)
{
    static const int windows[4] = { 6, 6, 6, 0 };

    return (struct fixture_spec){ .arch = ARCH_GEMMA3, .vocab = 96, .hidden = 64, .ffn = 96,
                                  .layers = 4, .heads = 4, .kv_heads = 1, .head_dim = 16,
                                  .tied = true, .dtype = DT_BF16, .windows = windows,
                                  .query_pre_attn_scalar = 16, .rope_theta = 1000000.0,
                                  .rope_local_theta = 10000.0,
                                  .rope = { .type = ROPE_LINEAR, .factor = 8.0 }, .seed = 301 };
}

START_TEST(gemma2_mixed_batches_match_the_naive_forward)
{
    struct fixture_spec spec = gemma2_spec();

    ck_assert_int_gt(sim_run_mixed(&spec, 4, TOL, NULL), 0);   /* the window hid blocks */
    spec.seed++;
    spec.dtype = DT_F32;
    spec.tied = false;
    sim_run_mixed(&spec, 16, TOL, NULL);
}
END_TEST

START_TEST(gemma3_mixed_batches_match_the_naive_forward)
{
    struct fixture_spec spec = gemma3_spec();

    ck_assert_int_gt(sim_run_mixed(&spec, 4, TOL, NULL), 0);
    spec.seed++;
    spec.dtype = DT_F16;
    sim_run_mixed(&spec, 8, TOL, NULL);
}
END_TEST

/* The window group's blocks that left every query's window go back to the pool with NaN in
 * every row and are handed to other requests: one read of such a block (a stale table entry,
 * a window off by one block) turns logits into NaN or changes them. */
START_TEST(window_layers_never_read_freed_and_poisoned_blocks)
{
    struct fixture_spec specs[2] = { gemma2_spec(), gemma3_spec() };

    for (int i = 0; i < 2; i++) {
        enum { NREQ = 5 };
        struct sim_options so = { .block_size = 2, .free_out_of_window = true };
        struct sim s;
        struct sim_req reqs[NREQ];

        specs[i].seed += 50;
        sim_create(&s, &specs[i], &so);
        for (int r = 0; r < NREQ; r++) {
            int prompt = 12 + test_randint(&s.rng, 20);
            sim_req_init(&s, &reqs[r], prompt, prompt + 2 + test_randint(&s.rng, 8), true);
        }
        for (int step = 0; !sim_all_done(reqs, NREQ, false); step++) {
            int k = sim_pick(&s, reqs, NREQ, step, false);

            if (k == 0)
                continue;
            sim_build(&s, k);
            sim_check_step(&s, k, 0);
        }
        ck_assert_msg(s.max_err < TOL, "max |logit - reference| = %g", s.max_err);
        ck_assert_int_gt(s.freed_blocks, 0);
        ck_assert_int_gt(s.reused_blocks, 0);
        for (int r = 0; r < NREQ; r++)
            free(reqs[r].ref);
        sim_destroy(&s);
    }
}
END_TEST

/* Greedy generation through runner_execute (the CPU sampler on soft-capped logits) agrees
 * with the argmax of the naive forward wherever its top two are not a near tie. */
START_TEST(gemma_greedy_tokens_match_the_naive_forward)
{
    struct fixture_spec specs[2] = { gemma2_spec(), gemma3_spec() };

    for (int i = 0; i < 2; i++) {
        specs[i].seed += 70;
        ck_assert_int_gt(sim_greedy_matches_naive(&specs[i], 10, 12), 24);
    }
}
END_TEST

/* A backend without one of Gemma's ops (as the CUDA backend in this build) refuses the model
 * at runner creation with one line naming the feature, instead of running without it. */
static struct backend_ops no_gelu_ops, no_softcap_ops;

START_TEST(a_backend_without_gemma_ops_refuses_the_model_in_one_line)
{
    struct fixture_spec spec = gemma2_spec();
    struct runner_options o = { 4, 64, 64, 4, 64, false, NULL, 0, false, false, false, DT_F32, 1, 1, NULL, { 0 }, NULL, NULL, 0 };
    struct backend_options bo = { .num_threads = 1 };
    const struct backend_ops *cpu;
    struct random_model fx;
    struct backend *be;
    struct runner *r = NULL;
    char err[ERR_LEN] = "";

    ck_assert_int_eq(random_model_create(&fx, &spec), 0);
    ck_assert_int_eq(runner_backend_options(&fx.m.cfg, &o, &bo), 0);
    ck_assert_int_eq(backend_create(&be, "cpu", &bo, err), 0);
    cpu = be->ops;
    no_gelu_ops = *cpu;
    no_gelu_ops.gelu_tanh_mul = NULL;
    be->ops = &no_gelu_ops;
    ck_assert_int_eq(runner_create(&r, be, &fx.m, &o, err), -ENOTSUP);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(err, "Gemma2ForCausalLM: GeGLU (tanh GELU) runs on the CPU backend only"),
                  "%s", err);
    no_softcap_ops = *cpu;
    no_softcap_ops.softcap = NULL;
    be->ops = &no_softcap_ops;
    ck_assert_int_eq(runner_create(&r, be, &fx.m, &o, err), -ENOTSUP);
    ck_assert_msg(strstr(err, "final logit soft-capping runs on the CPU backend only"), "%s", err);
    be->ops = cpu;
    ck_assert_msg(runner_create(&r, be, &fx.m, &o, err) == 0, "%s", err);
    runner_destroy(r);
    backend_destroy(be);
    random_model_destroy(&fx);
}
END_TEST

Suite *forward_gemma_suite(void)
{
    Suite *s = suite_create("forward_gemma");
    TCase *tc = tcase_create("forward_gemma");

    tcase_add_unchecked_fixture(tc, fixture_quiet, fixture_loud);
    tcase_add_test(tc, gemma2_mixed_batches_match_the_naive_forward);
    tcase_add_test(tc, gemma3_mixed_batches_match_the_naive_forward);
    tcase_add_test(tc, window_layers_never_read_freed_and_poisoned_blocks);
    tcase_add_test(tc, gemma_greedy_tokens_match_the_naive_forward);
    tcase_add_test(tc, a_backend_without_gemma_ops_refuses_the_model_in_one_line);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

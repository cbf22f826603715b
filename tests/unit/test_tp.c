/* test_tp.c — tensor parallelism on the CPU backend (engine/comm_cpu.c, engine/tp_shard.c,
 * engine/runner_tp.c): the shared-memory all-reduce against a plain sum and its abort; TP = 2
 * and 4 against the independent naive forward over mixed batches (Llama with GQA, KV heads
 * replicated at TP = 4; Qwen2 biases; Qwen3 q/k norm; Mistral's window; sliding and full
 * layers in two KV groups; Gemma 2 and 3; Mixtral, Qwen3-MoE and Qwen2-MoE with every expert
 * split by its intermediate size; Phi-3's fused q/k/v and gate/up; gpt-oss's sinks, biases
 * and interleaved experts) and the same greedy
 * tokens as TP = 1; the refusals of shapes that do not shard. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/comm.h"
#include "engine/tp_shard.h"
#include "tests/unit/forward_sim.h"
#include "tests/unit/fixtures.h"   /* fixture_quiet, fixture_loud */

/* |logit - naive reference| for any TP size, as test_forward.c's TOL; seen: 6e-6 */
#define TOL 1e-4

/* ---- the all-reduce ---- */

enum { RANKS = 3, COUNT = 1001 };

struct reduce_job {
    struct comm *c;
    float *buf;
    int rc, calls;
    bool abort_first;          /* this rank fails before its first call */
};

static void *reduce_main(void *arg)
{
    struct reduce_job *j = arg;

    if (j->abort_first) {
        comm_abort(j->c);
        j->rc = -EIO;
        return NULL;
    }
    for (int i = 0; i < j->calls && !j->rc; i++)
        j->rc = comm_all_reduce(j->c, j->buf, COUNT - i, DT_F32);
    return NULL;
}

static void run_ranks(struct reduce_job *jobs, int n)
{
    pthread_t th[RANKS];

    for (int r = 0; r < n; r++)
        ck_assert_int_eq(pthread_create(&th[r], NULL, reduce_main, &jobs[r]), 0);
    for (int r = 0; r < n; r++)
        pthread_join(th[r], NULL);
}

START_TEST(the_cpu_all_reduce_gives_every_rank_the_plain_sum)
{
    struct comm *c[RANKS];
    struct reduce_job jobs[RANKS];
    float *in[RANKS], want[COUNT];
    uint64_t rng = 5;
    char err[ERR_LEN] = "";

    ck_assert_int_eq(comm_cpu_create(c, RANKS, COUNT, err), 0);
    for (int r = 0; r < RANKS; r++) {
        in[r] = malloc(COUNT * sizeof(float));
        jobs[r] = (struct reduce_job){ c[r], malloc(COUNT * sizeof(float)), 0, 1, false };
        for (int i = 0; i < COUNT; i++)
            jobs[r].buf[i] = in[r][i] = test_randf(&rng, -4.0f, 4.0f);
    }
    run_ranks(jobs, RANKS);
    for (int i = 0; i < COUNT; i++) {
        want[i] = 0.0f;
        for (int r = 0; r < RANKS; r++)
            want[i] += in[r][i];          /* rank order: the same bits on every rank */
    }
    for (int r = 0; r < RANKS; r++) {
        ck_assert_int_eq(jobs[r].rc, 0);
        ck_assert_mem_eq(jobs[r].buf, want, sizeof want);
    }
    /* 20 calls in a row of shrinking sizes: no rank overwrites a sum another still reads */
    for (int r = 0; r < RANKS; r++) {
        for (int i = 0; i < COUNT; i++)
            jobs[r].buf[i] = in[r][i];
        jobs[r].calls = 20;
    }
    run_ranks(jobs, RANKS);
    for (int call = 1; call < 20; call++)
        for (int i = 0; i < COUNT - call; i++)
            want[i] = 0.0f + want[i] + want[i] + want[i];
    for (int r = 0; r < RANKS; r++) {
        ck_assert_int_eq(jobs[r].rc, 0);
        ck_assert_mem_eq(jobs[r].buf, want, sizeof want);
    }
    /* beyond the scratch, or not f32: refused, not overrun */
    ck_assert_int_eq(comm_all_reduce(c[0], jobs[0].buf, COUNT + 1, DT_F32), -EINVAL);
    ck_assert_int_eq(comm_all_reduce(c[0], jobs[0].buf, 4, DT_BF16), -EINVAL);
    for (int r = 0; r < RANKS; r++) {
        free(in[r]);
        free(jobs[r].buf);
        comm_destroy(c[r]);
    }
}
END_TEST

START_TEST(a_rank_that_fails_wakes_its_peers_instead_of_hanging_them)
{
    struct comm *c[RANKS];
    struct reduce_job jobs[RANKS];
    char err[ERR_LEN] = "";

    ck_assert_int_eq(comm_cpu_create(c, RANKS, COUNT, err), 0);
    for (int r = 0; r < RANKS; r++)
        jobs[r] = (struct reduce_job){ c[r], calloc(COUNT, sizeof(float)), 0, 3, r == 1 };
    run_ranks(jobs, RANKS);
    ck_assert_int_eq(jobs[0].rc, -ECANCELED);
    ck_assert_int_eq(jobs[1].rc, -EIO);
    ck_assert_int_eq(jobs[2].rc, -ECANCELED);
    for (int r = 0; r < RANKS; r++) {
        free(jobs[r].buf);
        comm_destroy(c[r]);
    }
}
END_TEST

/* ---- the sharded model against the naive forward and against TP = 1 ---- */

static struct fixture_spec llama_spec(void)
{
    return (struct fixture_spec){ .arch = ARCH_LLAMA, .vocab = 96, .hidden = 64, .ffn = 96,
                                  .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .dtype = DT_BF16, .seed = 11 };
}

/* max |logit at TP = n - logit at TP = 1| over one prefill of 3 requests (printed; the
 * assertion is the naive-forward tolerance, which both are held to) */
static double tp_delta(const struct fixture_spec *spec, int block_size, int n)
{
    struct sim_options so = { .block_size = block_size, .tensor_parallel_size = 1 };
    struct sim s[2];
    struct sim_req q[2][3];
    float *l[2];
    double d = 0.0;
    int V = spec->vocab;

    for (int k = 0; k < 2; k++) {
        so.tensor_parallel_size = k ? n : 1;
        sim_create(&s[k], spec, &so);
        for (int i = 0; i < 3; i++) {
            sim_req_init(&s[k], &q[k][i], 4 + 9 * i, 4 + 9 * i, false);
            s[k].reqs[i] = &q[k][i];
            s[k].n_new[i] = 4 + 9 * i;
        }
        sim_build(&s[k], 3);
        l[k] = malloc(sizeof(float) * 3 * V);
        ck_assert_int_eq(s[k].b.num_sample, 3);
        ck_assert_int_eq(runner_logits(s[k].r, &s[k].b, l[k]), 0);
    }
    for (int i = 0; i < 3 * V; i++)
        d = fmax(d, fabs((double)l[1][i] - l[0][i]));
    ck_assert(d < 2 * TOL);
    for (int k = 0; k < 2; k++) {
        free(l[k]);
        sim_destroy(&s[k]);
    }
    return d;
}

/* Mixed teacher-forced batches at TP = 2 and 4 within TOL of the naive forward, then greedy
 * generation at TP = 2 and 4 giving TP = 1's tokens. */
static void check_tp(const struct fixture_spec *spec, int block_size)
{
    enum { NREQ = 3 };
    struct sim one, tp;
    struct sim_req a[NREQ], b[NREQ];
    struct sim_options so = { .block_size = block_size };

    for (int n = 2; n <= 4; n *= 2) {
        double err = -1.0;

        so.tensor_parallel_size = n;
        so.max_err = &err;
        sim_run_mixed(spec, block_size, TOL, &so);
        printf("tensor_parallel arch %d tp %d: max |logit - naive| %.3g, max |logit - tp 1| "
               "%.3g\n", spec->arch, n, err, tp_delta(spec, block_size, n));
        ck_assert(err >= 0.0);
    }
    so.max_err = NULL;
    so.tensor_parallel_size = 1;
    sim_create(&one, spec, &so);
    for (int i = 0; i < NREQ; i++)
        sim_req_init(&one, &a[i], 5 + 7 * i, 5 + 7 * i + 10, false);
    sim_run_greedy(&one, a, NREQ);
    for (int n = 2; n <= 4; n *= 2) {
        so.tensor_parallel_size = n;
        sim_create(&tp, spec, &so);
        for (int i = 0; i < NREQ; i++)
            sim_req_init(&tp, &b[i], 5 + 7 * i, 5 + 7 * i + 10, false);
        for (int i = 0; i < NREQ; i++)
            ck_assert_mem_eq(a[i].tokens, b[i].tokens, sizeof(int32_t) * a[i].prompt_len);
        sim_run_greedy(&tp, b, NREQ);
        for (int i = 0; i < NREQ; i++)
            ck_assert_msg(!memcmp(a[i].tokens, b[i].tokens, sizeof(int32_t) * a[i].len),
                          "request %d: TP = %d generated other tokens than TP = 1", i, n);
        sim_destroy(&tp);
    }
    sim_destroy(&one);
}

START_TEST(llama_gqa_at_tp_2_and_4_matches_tp_1_with_kv_heads_replicated_at_4)
{
    struct fixture_spec spec = llama_spec();

    check_tp(&spec, 16);
    spec.arch = ARCH_QWEN2;    /* q/k/v biases split with their rows */
    spec.bias = true;
    spec.tied = true;
    spec.seed = 12;
    check_tp(&spec, 8);
}
END_TEST

START_TEST(qwen3_qk_norm_at_tp_2_and_4_matches_tp_1)
{
    struct fixture_spec spec = llama_spec();

    spec.arch = ARCH_QWEN3;
    spec.qk_norm = true;
    spec.head_dim = 32;
    spec.seed = 61;
    check_tp(&spec, 16);
}
END_TEST

START_TEST(mistral_window_and_a_hybrid_of_two_kv_groups_at_tp_2_and_4_match_tp_1)
{
    struct fixture_spec spec = llama_spec();
    int all[2] = { 9, 9 }, mix[4] = { 0, 6, 0, 6 };

    spec.arch = ARCH_MISTRAL;
    spec.windows = all;
    spec.seed = 83;
    check_tp(&spec, 4);
    spec.arch = ARCH_LLAMA;
    spec.layers = 4;
    spec.windows = mix;
    spec.seed = 81;
    check_tp(&spec, 4);
}
END_TEST

START_TEST(gemma2_and_gemma3_at_tp_2_and_4_match_tp_1)
{
    static const int w2[4] = { 6, 0, 6, 0 }, w3[4] = { 6, 6, 6, 0 };
    struct fixture_spec g2 = { .arch = ARCH_GEMMA2, .vocab = 96, .hidden = 64, .ffn = 96,
                               .layers = 4, .heads = 4, .kv_heads = 2, .head_dim = 16,
                               .tied = true, .dtype = DT_BF16, .windows = w2,
                               .query_pre_attn_scalar = 24, .attn_softcap = 1.5,
                               .final_softcap = 3.0, .seed = 201 };
    struct fixture_spec g3 = { .arch = ARCH_GEMMA3, .vocab = 96, .hidden = 64, .ffn = 96,
                               .layers = 4, .heads = 4, .kv_heads = 1, .head_dim = 16,
                               .tied = true, .dtype = DT_BF16, .windows = w3,
                               .query_pre_attn_scalar = 16, .rope_theta = 1000000.0,
                               .rope_local_theta = 10000.0,
                               .rope = { .type = ROPE_LINEAR, .factor = 8.0 }, .seed = 301 };

    check_tp(&g2, 4);
    check_tp(&g3, 4);          /* one KV head: replicated on every rank */
}
END_TEST

/* MoE: every expert split by its intermediate size, the router replicated. The shapes of
 * test_forward_moe.c: Mixtral (every layer sparse), Qwen3-MoE (q/k norm, a dense layer
 * between sparse ones), Qwen2-MoE (biases, a sigmoid-gated shared expert). */
static struct fixture_spec mixtral_spec(void)
{
    return (struct fixture_spec){ .arch = ARCH_MIXTRAL, .vocab = 96, .hidden = 64, .ffn = 96,
                                  .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .dtype = DT_BF16, .experts = 8, .top_k = 2, .moe_ffn = 48,
                                  .renormalize = true, .seed = 411 };
}

static struct fixture_spec qwen2_moe_spec(void)
{
    return (struct fixture_spec){ .arch = ARCH_QWEN2_MOE, .vocab = 96, .hidden = 64, .ffn = 96,
                                  .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .bias = true, .dtype = DT_BF16, .experts = 8, .top_k = 2,
                                  .moe_ffn = 24, .shared_ffn = 80, .seed = 711 };
}

START_TEST(moe_experts_split_by_intermediate_size_at_tp_2_and_4_match_tp_1)
{
    struct fixture_spec mixtral = mixtral_spec(), qwen2 = qwen2_moe_spec();
    struct fixture_spec qwen3 = { .arch = ARCH_QWEN3_MOE, .vocab = 96, .hidden = 64, .ffn = 80,
                                  .layers = 3, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .qk_norm = true, .dtype = DT_BF16, .experts = 16, .top_k = 4,
                                  .moe_ffn = 32, .dense_layers = 1u << 1,
                                  .rope_theta = 1000000.0, .seed = 511 };

    check_tp(&mixtral, 8);
    check_tp(&qwen3, 16);
    check_tp(&qwen2, 8);
}
END_TEST

/* gpt-oss: sinks split with their heads, q/k/v biases with their rows, o's bias and every
 * expert's down bias added once (rank 0), the interleaved experts split by (gate, up) column
 * pairs with their gate_up bias, the biased router replicated; sliding and full layers. The
 * shape of test_forward_gpt_oss.c, with biases and sinks large enough that adding one twice
 * or dropping one moves the logits far past TOL. */
START_TEST(gpt_oss_sinks_biases_and_interleaved_experts_at_tp_2_and_4_match_tp_1)
{
    struct fixture_spec spec = fixture_gpt_oss_spec(1901);

    check_tp(&spec, 4);
    spec.dtype = DT_F32;
    spec.seed = 1902;
    check_tp(&spec, 8);
}
END_TEST

/* Phi-3 publishes q/k/v and gate/up fused: each rank takes its rows of each part. */
START_TEST(phi3_fused_qkv_and_gate_up_at_tp_2_and_4_match_tp_1)
{
    struct fixture_spec spec = llama_spec();
    int windows[2] = { 7, 7 };

    spec.arch = ARCH_PHI3;
    spec.seed = 611;
    check_tp(&spec, 8);
    spec.rotary_dim = 12;      /* partial rotary, every layer sliding */
    spec.windows = windows;
    spec.seed = 612;
    check_tp(&spec, 4);
}
END_TEST

/* ---- a rank that fails mid-step ---- */

static struct backend_ops failing_ops;
static const struct backend_ops *real_ops;
static int matmuls;

/* rank 0's third product (layer 0's gate_up) fails like a device: rank 1 by then waits in
 * (or heads for) the all-reduce after its own down projection */
static int failing_matmul(struct backend *be, void *out, const void *x, const struct bk_weight *w,
                          const struct bk_weight *bias, int n)
{
    return ++matmuls == 3 ? -EIO : real_ops->matmul(be, out, x, w, bias, n);
}

static void make_rank0_fail(struct backend *be)
{
    real_ops = be->ops;
    failing_ops = *be->ops;
    failing_ops.matmul = failing_matmul;
    be->ops = &failing_ops;
}

START_TEST(a_rank_that_fails_mid_step_fails_the_step_and_never_hangs_its_peer)
{
    struct fixture_spec spec = llama_spec();
    struct sim_options so = { .block_size = 16, .tensor_parallel_size = 2,
                              .patch = make_rank0_fail };
    struct sample_result res[MAX_SEQS];
    struct sim_req q;
    struct sim s;

    matmuls = 0;
    sim_create(&s, &spec, &so);
    sim_req_init(&s, &q, 9, 12, false);
    s.reqs[0] = &q;
    s.n_new[0] = 9;
    sim_build(&s, 1);
    ck_assert_int_eq(runner_execute(s.r, &s.b, NULL, res), -EIO);
    /* the group stays aborted: the next step fails at once too (the engine is dead) */
    sim_build(&s, 1);
    ck_assert_int_eq(runner_execute(s.r, &s.b, NULL, res), -EIO);
    ck_assert_int_ge(matmuls, 3);
    sim_destroy(&s);           /* joins the worker: it is not stuck in a barrier */
}
END_TEST

/* ---- refusals ---- */

static void refused(const struct fixture_spec *spec, int n, const char *needle)
{
    struct random_model fx;
    struct backend *be;
    struct runner *r = NULL;
    struct runner_options o = { .block_size = 16, .num_blocks = 8, .max_num_batched_tokens = 64,
                                .max_num_seqs = 4, .max_model_len = 64,
                                .tensor_parallel_size = n, .backend_threads = 1 };
    struct backend_options bo = { .num_threads = 1 };
    char err[ERR_LEN] = "";

    ck_assert_int_eq(random_model_create(&fx, spec), 0);
    ck_assert_int_eq(runner_backend_options(&fx.m.cfg, &o, &bo), 0);
    ck_assert_int_eq(backend_create(&be, "cpu", &bo, err), 0);
    ck_assert_int_eq(runner_create(&r, be, &fx.m, &o, err), -EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(err, needle) && strstr(err, "--tensor-parallel-size"), "%s", err);
    backend_destroy(be);
    random_model_destroy(&fx);
}

START_TEST(shapes_that_do_not_shard_are_refused_with_the_value_named)
{
    struct fixture_spec spec = llama_spec();
    char err[ERR_LEN] = "";

    refused(&spec, 3, "4 attention heads");
    spec.heads = 12;
    spec.kv_heads = 3;
    spec.head_dim = 8;
    refused(&spec, 2, "3 KV heads");            /* neither divides the other */
    spec = llama_spec();
    spec.ffn = 90;
    refused(&spec, 4, "intermediate_size 90");
    spec = mixtral_spec();
    spec.moe_ffn = 30;
    refused(&spec, 4, "moe_intermediate_size 30");
    spec = qwen2_moe_spec();
    spec.shared_ffn = 90;
    refused(&spec, 4, "shared_expert_intermediate_size 90");
    ck_assert_int_eq(tp_shard_check(&(struct model_config){ .num_heads = 4, .num_kv_heads = 2,
                                                            .intermediate_size = 8 }, 0, err),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "at least 1"));
}
END_TEST

Suite *tensor_parallel_suite(void)
{
    Suite *s = suite_create("tensor_parallel");
    TCase *tc = tcase_create("tensor_parallel");

    tcase_add_unchecked_fixture(tc, fixture_quiet, fixture_loud);
    tcase_add_test(tc, the_cpu_all_reduce_gives_every_rank_the_plain_sum);
    tcase_add_test(tc, a_rank_that_fails_wakes_its_peers_instead_of_hanging_them);
    tcase_add_test(tc, llama_gqa_at_tp_2_and_4_matches_tp_1_with_kv_heads_replicated_at_4);
    tcase_add_test(tc, qwen3_qk_norm_at_tp_2_and_4_matches_tp_1);
    tcase_add_test(tc, mistral_window_and_a_hybrid_of_two_kv_groups_at_tp_2_and_4_match_tp_1);
    tcase_add_test(tc, gemma2_and_gemma3_at_tp_2_and_4_match_tp_1);
    tcase_add_test(tc, moe_experts_split_by_intermediate_size_at_tp_2_and_4_match_tp_1);
    tcase_add_test(tc, phi3_fused_qkv_and_gate_up_at_tp_2_and_4_match_tp_1);
    tcase_add_test(tc, gpt_oss_sinks_biases_and_interleaved_experts_at_tp_2_and_4_match_tp_1);
    tcase_add_test(tc, a_rank_that_fails_mid_step_fails_the_step_and_never_hangs_its_peer);
    tcase_add_test(tc, shapes_that_do_not_shard_are_refused_with_the_value_named);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

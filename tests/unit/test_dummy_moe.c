/* test_dummy_moe.c — --load-format dummy for mixture-of-experts models (engine/model/
 * model_dummy.c, model_experts.c): a dummy Mixtral, Qwen3-MoE, Qwen2-MoE (shared expert) and
 * gpt-oss (fused interleaved experts, biases, sinks, router bias) generate on the cpu backend,
 * the same tokens for the same seed (at TP = 2 too) and others for another; a batch routes to more experts
 * than one token's top-k (a random router spreads tokens); every expert reads its own window
 * of the shared pool; the pools stay a small part of the bytes the tensors describe (the
 * 30B-A3B, 8x7B and gpt-oss-20b shapes: printed); a quantized MoE config stays refused. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"
#include "engine/model/gen_model.h"
#include "engine/model/model.h"
#include "tests/unit/fixtures.h"
#include "tests/unit/forward_sim.h"

enum { NREQ = 3, GEN = 8 };

static char root[FIXTURE_PATH];

static void setup(void)
{
    ck_assert_int_eq(fixture_tmpdir(root), 0);
}

static void teardown(void)
{
    fixture_rmtree(root);
}

/* A gen-model --no-weights folder of `preset` under root; its path in dir. */
static void no_weights(char *dir, size_t len, const char *preset)
{
    struct gen_model_opts o = { .config = preset, .seed = 3, .no_weights = true };
    char err[ERR_LEN] = "";

    snprintf(dir, len, "%s/%s", root, preset);
    o.out_dir = dir;
    ck_assert_msg(gen_model_write(&o, NULL, err) == 0, "%s: %s", preset, err);
}

/* ---- routing, counted on the way into the moe op ---- */

static const struct backend_ops *real_ops;
static struct backend_ops counting_ops;
static int most_experts;        /* the most distinct experts one moe call routed to */
static int top_k_seen;

static float weight_at(const struct bk_weight *w, size_t i)
{
    return w->dtype == DT_F32 ? ((const float *)w->data)[i]
                              : bf16_to_f32(((const uint16_t *)w->data)[i]);
}

/* The router's top-k of every row of x (the cpu backend's activations are f32), recomputed
 * here, then the real op. */
static int counting_moe(struct backend *be, void *out, const void *x, const struct moe_weights *w,
                        int n, const struct moe_params *p)
{
    const float *xf = x;
    bool used[512] = { false };
    int distinct = 0;

    ck_assert_int_le(p->num_experts, 512);
    for (int i = 0; i < n; i++) {
        double logit[512];
        bool taken[512] = { false };

        for (int e = 0; e < p->num_experts; e++) {
            logit[e] = w->router_bias ? weight_at(w->router_bias, (size_t)e) : 0.0;
            for (int h = 0; h < p->hidden; h++)
                logit[e] += (double)weight_at(w->router, (size_t)e * p->hidden + h) *
                            xf[(size_t)i * p->hidden + h];
        }
        for (int k = 0; k < p->top_k; k++) {
            int best = -1;

            for (int e = 0; e < p->num_experts; e++)
                if (!taken[e] && (best < 0 || logit[e] > logit[best]))
                    best = e;
            taken[best] = true;
            distinct += !used[best];
            used[best] = true;
        }
    }
    most_experts = MAX(most_experts, distinct);
    top_k_seen = p->top_k;
    return real_ops->moe(be, out, x, w, n, p);
}

static void count_routes(struct backend *be)
{
    real_ops = be->ops;
    counting_ops = *be->ops;
    counting_ops.moe = counting_moe;
    be->ops = &counting_ops;
}

/* Greedy tokens of NREQ requests (the same prompts whatever the weights' seed: the sim's
 * own seed draws them) on dir's dummy model drawn with `seed`, over tp ranks. */
static void generate(const char *dir, uint64_t seed, int tp, int32_t tokens[NREQ][MAX_LEN])
{
    struct fixture_spec spec = { .seed = 5 };
    struct sim_options so = { .block_size = 8, .patch = count_routes,
                              .tensor_parallel_size = tp };
    struct sim_req q[NREQ];
    struct model m;
    struct sim s;
    char err[ERR_LEN] = "";

    ck_assert_msg(model_open_dummy(&m, dir, seed, false, err) == 0, "%s", err);
    so.model = &m;
    sim_create(&s, &spec, &so);
    for (int i = 0; i < NREQ; i++)
        sim_req_init(&s, &q[i], 6 + 5 * i, 6 + 5 * i + GEN, false);
    sim_run_greedy(&s, q, NREQ);
    for (int i = 0; i < NREQ; i++) {
        ck_assert_int_eq(q[i].generated, GEN);
        memcpy(tokens[i], q[i].tokens, sizeof tokens[i]);
    }
    sim_destroy(&s);
    model_close(&m);
}

START_TEST(each_moe_family_generates_from_dummy_weights_by_its_seed)
{
    static const char *const presets[] = { "tiny-mixtral", "tiny-qwen3-moe", "tiny-qwen2-moe",
                                           "tiny-gpt-oss" };
    const char *preset = presets[_i];
    int32_t a[NREQ][MAX_LEN], b[NREQ][MAX_LEN], c[NREQ][MAX_LEN], d[NREQ][MAX_LEN];
    char dir[FIXTURE_PATH + 32];

    no_weights(dir, sizeof dir, preset);
    most_experts = 0;
    generate(dir, 7, 1, a);
    generate(dir, 7, 1, b);
    generate(dir, 8, 1, c);
    ck_assert_msg(!memcmp(a, b, sizeof a), "%s: the same seed generated other tokens", preset);
    generate(dir, 7, 2, d);    /* the dummy model shards like a checkpoint */
    ck_assert_msg(!memcmp(a, d, sizeof a), "%s: TP = 2 generated other tokens", preset);
    ck_assert_msg(memcmp(a, c, sizeof a), "%s: another seed generated the same tokens", preset);
    /* more experts than one token's top-k: tokens went to different experts */
    printf("dummy_moe %s: a batch routed to %d distinct experts (top-%d)\n", preset,
           most_experts, top_k_seen);
    ck_assert_msg(most_experts > top_k_seen, "%s: %d experts, top-%d", preset, most_experts,
                  top_k_seen);
}
END_TEST

/* ---- what the host holds ---- */

static size_t ref_bytes(const struct tensor_ref *t)
{
    return t->data ? t->nbytes : 0;
}

static size_t expert_bytes(const struct expert_tensors *x)
{
    return ref_bytes(&x->gate) + ref_bytes(&x->up) + ref_bytes(&x->down) +
           ref_bytes(&x->gate_up_t) + ref_bytes(&x->down_t) + ref_bytes(&x->gate_up_bias) +
           ref_bytes(&x->down_bias);
}

/* The bytes the model's tensors describe (what a checkpoint would hold). */
static size_t tensor_bytes(const struct model *m)
{
    size_t n = ref_bytes(&m->embed) + ref_bytes(&m->final_norm) +
               (m->lm_head.data != m->embed.data ? ref_bytes(&m->lm_head) : 0);

    for (int l = 0; l < m->cfg.num_layers; l++) {
        const struct layer_tensors *t = &m->layers[l];
        const struct tensor_ref *all[] = { &t->input_norm, &t->q, &t->k, &t->v, &t->o, &t->qkv,
                                           &t->q_bias, &t->k_bias, &t->v_bias, &t->o_bias,
                                           &t->sinks, &t->q_norm, &t->k_norm, &t->post_norm,
                                           &t->pre_ff_norm, &t->post_ff_norm, &t->gate, &t->up,
                                           &t->down, &t->gate_up, &t->router, &t->router_bias,
                                           &t->shared_gate };

        for (size_t i = 0; i < ARRAY_LEN(all); i++)
            n += ref_bytes(all[i]);
        n += expert_bytes(&t->shared);
        for (int e = 0; t->experts && e < m->cfg.num_experts; e++)
            n += expert_bytes(&t->experts[e]);
    }
    return n;
}

/* An expert's first weight: gate (per-expert families) or gate_up_t (gpt-oss). */
static const void *expert_data(const struct expert_tensors *x)
{
    return x->gate.data ? x->gate.data : x->gate_up_t.data;
}

START_TEST(the_pools_are_shared_and_every_expert_reads_its_own_window)
{
    static const char *const presets[] = { "qwen3-30b-a3b", "mixtral-8x7b", "gpt-oss-20b" };
    char dir[FIXTURE_PATH + 32], err[ERR_LEN] = "";
    struct model m;

    for (size_t p = 0; p < ARRAY_LEN(presets); p++) {
        size_t pool, all;
        int same = 0, E;

        double t0;

        no_weights(dir, sizeof dir, presets[p]);
        t0 = now_s();
        ck_assert_msg(model_open_dummy(&m, dir, 1, false, err) == 0, "%s", err);
        pool = model_dummy_bytes(&m);
        all = tensor_bytes(&m);
        E = m.cfg.num_experts;
        /* printed, not asserted: the draw's time on this machine */
        printf("dummy_moe %s: %d experts x %d layers, tensors of %.1f GiB share %zu MiB of "
               "host pools, opened in %.2f s\n", presets[p], E, m.cfg.num_layers,
               all / 1073741824.0, pool >> 20, now_s() - t0);
        ck_assert_int_gt(E, 1);
        ck_assert_msg(pool * 30 < all, "%s: %zu MiB of pools for %zu MiB of tensors",
                      presets[p], pool >> 20, all >> 20);
        /* windows hashed from the names: the experts of a layer differ (few share one) */
        for (int e = 1; e < E; e++)
            same += expert_data(&m.layers[1].experts[e]) == expert_data(&m.layers[1].experts[0]);
        ck_assert_int_le(same, 1);
        ck_assert_ptr_ne(m.layers[0].router.data, m.layers[1].router.data);
        model_close(&m);
        ck_assert_int_eq(model_dummy_bytes(&m), 0);
    }
}
END_TEST

START_TEST(a_quantized_moe_config_stays_refused_and_fp8_keeps_the_experts_float)
{
    static const char fp8_moe[] =
        "{\"architectures\": [\"MixtralForCausalLM\"], \"hidden_size\": 64, "
        "\"intermediate_size\": 128, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
        "\"num_key_value_heads\": 2, \"num_local_experts\": 4, \"num_experts_per_tok\": 2, "
        "\"vocab_size\": 512, \"max_position_embeddings\": 256, \"torch_dtype\": \"bfloat16\", "
        "\"quantization_config\": {\"quant_method\": \"fp8\", \"activation_scheme\": \"dynamic\"}}";
    char dir[FIXTURE_PATH + 32], err[ERR_LEN] = "";
    struct model m;

    no_weights(dir, sizeof dir, "tiny-mixtral");
    /* --quantization fp8: attention's linear weights e4m3, the router and experts as drawn */
    ck_assert_msg(model_open_dummy(&m, dir, 1, true, err) == 0, "%s", err);
    ck_assert_int_eq(m.layers[0].q.dtype, DT_F8_E4M3);
    ck_assert_int_eq(m.layers[0].router.dtype, DT_BF16);
    ck_assert_int_eq(m.layers[0].experts[3].down.dtype, DT_BF16);
    model_close(&m);
    ck_assert_int_eq(fixture_write(dir, "config.json", fp8_moe, sizeof fp8_moe - 1), 0);
    ck_assert_int_ne(model_open_dummy(&m, dir, 0, false, err), 0);
    /* refused where it is for a checkpoint, before any pool is drawn */
    ck_assert_msg(strstr(err, "quantization_config: fp8 per-tensor checkpoints of "
                         "MixtralForCausalLM are not supported (fp8 mixture-of-experts weights "
                         "are not implemented)"), "%s", err);
}
END_TEST

Suite *dummy_moe_suite(void)
{
    Suite *s = suite_create("dummy_moe");
    TCase *tc = tcase_create("dummy_moe");

    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, fixture_quiet, fixture_loud);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, each_moe_family_generates_from_dummy_weights_by_its_seed, 0, 4);
    tcase_add_test(tc, the_pools_are_shared_and_every_expert_reads_its_own_window);
    tcase_add_test(tc, a_quantized_moe_config_stays_refused_and_fp8_keeps_the_experts_float);
    suite_add_tcase(s, tc);
    return s;
}

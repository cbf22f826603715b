/* test_model_moe.c — Mixtral, Qwen2-MoE and Qwen3-MoE folders: config.json as published
 * (Mixtral-8x7B, Qwen1.5-MoE-A2.7B, Qwen3-30B-A3B) and with the config classes' defaults, which layers are MoE
 * (decoder_sparse_step, mlp_only_layers), what is refused; gen-model's tiny-mixtral,
 * tiny-qwen2-moe (with its shared expert) and tiny-qwen3-moe presets bind every expert as
 * published, and the same weights rewritten as
 * transformers 5's fused experts.gate_up_proj / experts.down_proj bind to the same slices. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/model/model.h"
#include "engine/model/safetensors.h"
#include "fixtures.h"

#define PATH FIXTURE_CONFIG_PATH

static const char mixtral_8x7b[] =
    "{\"architectures\":[\"MixtralForCausalLM\"],\"attention_dropout\":0.0,\"bos_token_id\":1,"
    "\"eos_token_id\":2,\"hidden_act\":\"silu\",\"hidden_size\":4096,\"initializer_range\":0.02,"
    "\"intermediate_size\":14336,\"max_position_embeddings\":32768,\"model_type\":\"mixtral\","
    "\"num_attention_heads\":32,\"num_experts_per_tok\":2,\"num_hidden_layers\":32,"
    "\"num_key_value_heads\":8,\"num_local_experts\":8,\"output_router_logits\":false,"
    "\"rms_norm_eps\":1e-05,\"rope_theta\":1000000.0,\"router_aux_loss_coef\":0.02,"
    "\"sliding_window\":null,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\","
    "\"transformers_version\":\"4.36.0.dev0\",\"use_cache\":true,\"vocab_size\":32000}";

static const char qwen3_30b_a3b[] =
    "{\"architectures\":[\"Qwen3MoeForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"bos_token_id\":151643,\"decoder_sparse_step\":1,\"eos_token_id\":151645,\"head_dim\":128,"
    "\"hidden_act\":\"silu\",\"hidden_size\":2048,\"initializer_range\":0.02,"
    "\"intermediate_size\":6144,\"max_position_embeddings\":40960,\"max_window_layers\":48,"
    "\"mlp_only_layers\":[],\"model_type\":\"qwen3_moe\",\"moe_intermediate_size\":768,"
    "\"norm_topk_prob\":true,\"num_attention_heads\":32,\"num_experts\":128,"
    "\"num_experts_per_tok\":8,\"num_hidden_layers\":48,\"num_key_value_heads\":4,"
    "\"output_router_logits\":false,\"rms_norm_eps\":1e-06,\"rope_scaling\":null,"
    "\"rope_theta\":1000000.0,\"router_aux_loss_coef\":0.001,\"sliding_window\":null,"
    "\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\",\"use_cache\":true,"
    "\"use_sliding_window\":false,\"vocab_size\":151936}";

static const char qwen15_moe_a27b[] =
    "{\"architectures\":[\"Qwen2MoeForCausalLM\"],\"attention_dropout\":0.0,\"bos_token_id\":151643,"
    "\"decoder_sparse_step\":1,\"eos_token_id\":151643,\"hidden_act\":\"silu\",\"hidden_size\":2048,"
    "\"initializer_range\":0.02,\"intermediate_size\":5632,\"max_position_embeddings\":8192,"
    "\"max_window_layers\":21,\"model_type\":\"qwen2_moe\",\"moe_intermediate_size\":1408,"
    "\"norm_topk_prob\":false,\"num_attention_heads\":16,\"num_experts\":60,"
    "\"num_experts_per_tok\":4,\"num_hidden_layers\":24,\"num_key_value_heads\":16,"
    "\"output_router_logits\":false,\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,"
    "\"router_aux_loss_coef\":0.001,\"shared_expert_intermediate_size\":5632,"
    "\"sliding_window\":32768,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\","
    "\"transformers_version\":\"4.39.0.dev0\",\"use_cache\":true,\"use_sliding_window\":false,"
    "\"vocab_size\":151936}";

START_TEST(mixtral_8x7b_config_gives_8_experts_top_2_renormalized)
{
    struct model_config c;

    fixture_config_ok(&c, mixtral_8x7b);
    ck_assert_int_eq(c.arch, ARCH_MIXTRAL);
    ck_assert_int_eq(c.num_experts, 8);
    ck_assert_int_eq(c.num_experts_per_tok, 2);
    ck_assert_int_eq(c.moe_intermediate_size, 14336);   /* Mixtral's experts: intermediate_size */
    ck_assert(c.norm_topk_prob);
    ck_assert(!c.qk_norm);
    ck_assert_int_eq(c.head_dim, 128);
    for (int l = 0; l < 32; l++) {
        ck_assert(c.layer_moe[l]);
        ck_assert_int_eq(c.layer_window[l], 0);            /* sliding_window null */
    }
    /* MixtralConfig's defaults; a window, when set, slides every layer as Mistral's */
    fixture_config_ok(&c, "{\"architectures\":[\"MixtralForCausalLM\"],\"vocab_size\":512,"
                 "\"hidden_size\":64,\"intermediate_size\":96,\"num_hidden_layers\":2,"
                 "\"num_attention_heads\":4,\"sliding_window\":16}");
    ck_assert_int_eq(c.num_experts, 8);
    ck_assert_int_eq(c.num_experts_per_tok, 2);
    ck_assert_int_eq(c.layer_window[0], 16);
    ck_assert_int_eq(c.layer_window[1], 16);
}
END_TEST

START_TEST(qwen3_30b_a3b_config_gives_128_experts_top_8_and_qk_norm)
{
    struct model_config c;

    fixture_config_ok(&c, qwen3_30b_a3b);
    ck_assert_int_eq(c.arch, ARCH_QWEN3_MOE);
    ck_assert_str_eq(c.arch_name, "Qwen3MoeForCausalLM");
    ck_assert_int_eq(c.num_experts, 128);
    ck_assert_int_eq(c.num_experts_per_tok, 8);
    ck_assert_int_eq(c.moe_intermediate_size, 768);
    ck_assert_int_eq(c.intermediate_size, 6144);
    ck_assert(c.norm_topk_prob);
    ck_assert(c.qk_norm);
    for (int l = 0; l < 48; l++)
        ck_assert(c.layer_moe[l]);
}
END_TEST

START_TEST(qwen15_moe_config_gives_a_shared_expert_and_qkv_biases)
{
    struct model_config c;

    fixture_config_ok(&c, qwen15_moe_a27b);
    ck_assert_int_eq(c.arch, ARCH_QWEN2_MOE);
    ck_assert_int_eq(c.num_experts, 60);
    ck_assert_int_eq(c.num_experts_per_tok, 4);
    ck_assert_int_eq(c.moe_intermediate_size, 1408);
    ck_assert_int_eq(c.shared_expert_intermediate_size, 5632);
    ck_assert(!c.norm_topk_prob);
    ck_assert(c.attention_bias);
    ck_assert(!c.qk_norm);
    ck_assert_int_eq(c.layer_window[0], 0);            /* use_sliding_window false */
}
END_TEST

START_TEST(qwen3_moe_sparse_step_and_mlp_only_layers_keep_some_layers_dense)
{
    struct model_config c;

    /* Qwen3MoeConfig: norm_topk_prob false and moe_intermediate_size 768 by default */
    fixture_config_ok(&c, "{\"architectures\":[\"Qwen3MoeForCausalLM\"],\"vocab_size\":512,"
                 "\"hidden_size\":64,\"intermediate_size\":96,\"num_hidden_layers\":6,"
                 "\"num_attention_heads\":4,\"num_experts\":4,\"num_experts_per_tok\":2,"
                 "\"decoder_sparse_step\":2,\"mlp_only_layers\":[3]}");
    ck_assert(!c.norm_topk_prob);
    ck_assert_int_eq(c.moe_intermediate_size, 768);
    for (int l = 0; l < 6; l++)   /* (l + 1) % 2 == 0 and l not in [3]: layers 1 and 5 */
        ck_assert_int_eq(c.layer_moe[l], l == 1 || l == 5);
}
END_TEST

static void check_refused(const char *base, const char *first, const char *fragment, int line)
{
    struct model_config c;
    char json[4096], err[ERR_LEN] = "";

    snprintf(json, sizeof json, "{%s,%s", first, base + 1);
    ck_assert_msg(fixture_config_parse(&c, json, err) == -EINVAL, "line %d: accepted %s", line, first);
    ck_assert_msg(strstr(err, fragment), "line %d: '%s' lacks '%s'", line, err, fragment);
}

START_TEST(moe_fields_osprey_cannot_honour_are_refused_with_file_and_field)
{
    check_refused(qwen3_30b_a3b, "\"num_experts_per_tok\":200",
                  PATH ": num_experts_per_tok: 200 is more than the 128 experts", __LINE__);
    check_refused(qwen3_30b_a3b, "\"num_experts\":0", PATH ": num_experts: 0 is out of range",
                  __LINE__);
    check_refused(qwen3_30b_a3b, "\"mlp_only_layers\":[48]",
                  PATH ": mlp_only_layers: expected layer indices in [0, 48)", __LINE__);
    check_refused(qwen3_30b_a3b, "\"mlp_only_layers\":3",
                  PATH ": mlp_only_layers: expected a list of layer indices", __LINE__);
    check_refused(qwen3_30b_a3b, "\"decoder_sparse_step\":0", PATH ": decoder_sparse_step: ",
                  __LINE__);
    check_refused(qwen3_30b_a3b, "\"norm_topk_prob\":1", PATH ": norm_topk_prob: expected true",
                  __LINE__);
    check_refused(qwen3_30b_a3b, "\"shared_expert_intermediate_size\":512",
                  PATH ": shared_expert_intermediate_size: a shared expert is Qwen2-MoE's", __LINE__);
    check_refused(qwen15_moe_a27b, "\"shared_expert_intermediate_size\":0",
                  PATH ": shared_expert_intermediate_size: 0 is out of range", __LINE__);
    check_refused(mixtral_8x7b, "\"num_local_experts\":-1", PATH ": num_local_experts: ", __LINE__);
}
END_TEST

static void open_preset(const char *preset, struct model *m, char *dir)
{
    char err[ERR_LEN] = "";

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    ck_assert_int_eq(fixture_gen(dir, preset, 1), 0);
    ck_assert_msg(model_open(m, dir, err) == 0, "%s: %s", preset, err);
}

static void shape_is(const struct tensor_ref *t, int64_t d0, int64_t d1, const char *what)
{
    ck_assert_msg(t->data && t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1,
                  "%s: [%lld, %lld], want [%lld, %lld]", what, (long long)t->shape[0],
                  (long long)t->shape[1], (long long)d0, (long long)d1);
}

START_TEST(generated_moe_presets_bind_every_expert_as_published)
{
    static const struct { const char *preset; int experts, ffn, shared; const char *up3; } p[] = {
        { "tiny-mixtral", 8, 128, 0, "block_sparse_moe.experts.3.w3" },
        { "tiny-qwen3-moe", 16, 32, 0, "mlp.experts.3.up_proj" },
        { "tiny-qwen2-moe", 8, 24, 96, "mlp.experts.3.up_proj" },
    };

    for (int i = 0; i < 3; i++) {
        struct model m;
        char dir[FIXTURE_PATH];

        open_preset(p[i].preset, &m, dir);
        ck_assert_int_eq(m.cfg.num_experts, p[i].experts);
        for (int l = 0; l < m.cfg.num_layers; l++) {
            const struct layer_tensors *t = &m.layers[l];

            ck_assert_ptr_nonnull(t->experts);
            ck_assert_ptr_null(t->gate.data);          /* no dense MLP in a MoE layer */
            shape_is(&t->router, p[i].experts, 64, "router");
            for (int e = 0; e < p[i].experts; e++) {
                shape_is(&t->experts[e].gate, p[i].ffn, 64, "gate");
                shape_is(&t->experts[e].up, p[i].ffn, 64, "up");
                shape_is(&t->experts[e].down, 64, p[i].ffn, "down");
            }
        }
        ck_assert_ptr_nonnull(strstr(m.layers[1].experts[3].up.name, p[i].up3));
        ck_assert_int_eq(m.cfg.shared_expert_intermediate_size, p[i].shared);
        if (p[i].shared) {
            shape_is(&m.layers[0].shared.down, 64, p[i].shared, "shared down");
            shape_is(&m.layers[1].shared_gate, 1, 64, "shared_expert_gate");
        } else {
            ck_assert_ptr_null(m.layers[0].shared_gate.data);
        }
        model_close(&m);
        fixture_rmtree(dir);
    }
}
END_TEST

/* tiny-qwen3-moe rewritten with its experts fused as transformers 5 writes them: every
 * expert's gate, up and down must be the same bytes as the per-expert tensors. */
START_TEST(fused_experts_bind_to_the_same_slices_as_per_expert_tensors)
{
    struct model a, b;
    char dir[FIXTURE_PATH], err[ERR_LEN] = "", tmp[FIXTURE_PATH + 64], path[FIXTURE_PATH + 64];
    struct st_set *set;
    struct st_write_tensor *w;
    int E = 16, F = 32, H = 64, n, k = 0;
    uint16_t *gu[2], *dn[2];
    char names[4][96];

    open_preset("tiny-qwen3-moe", &a, dir);
    ck_assert_int_eq(st_open(&set, dir, err), 0);
    n = st_num_tensors(set);
    w = calloc((size_t)n + 4, sizeof *w);
    for (int l = 0; l < 2; l++) {
        gu[l] = malloc((size_t)E * 2 * F * H * 2);
        dn[l] = malloc((size_t)E * H * F * 2);
        for (int e = 0; e < E; e++) {
            memcpy(gu[l] + (size_t)e * 2 * F * H, a.layers[l].experts[e].gate.data, (size_t)F * H * 2);
            memcpy(gu[l] + ((size_t)e * 2 * F + F) * H, a.layers[l].experts[e].up.data, (size_t)F * H * 2);
            memcpy(dn[l] + (size_t)e * H * F, a.layers[l].experts[e].down.data, (size_t)H * F * 2);
        }
        snprintf(names[2 * l], sizeof names[0], "model.layers.%d.mlp.experts.gate_up_proj", l);
        snprintf(names[2 * l + 1], sizeof names[0], "model.layers.%d.mlp.experts.down_proj", l);
    }
    for (int i = 0; i < n; i++) {
        const struct tensor_ref *t = st_tensor(set, i);

        if (strstr(t->name, ".experts."))
            continue;
        w[k] = (struct st_write_tensor){ .name = t->name, .dtype = t->dtype, .ndim = t->ndim,
                                         .data = t->data };
        memcpy(w[k++].shape, t->shape, sizeof t->shape);
    }
    for (int l = 0; l < 2; l++) {
        w[k++] = (struct st_write_tensor){ .name = names[2 * l], .dtype = DT_BF16, .ndim = 3,
                                           .shape = { E, 2 * F, H }, .data = gu[l] };
        w[k++] = (struct st_write_tensor){ .name = names[2 * l + 1], .dtype = DT_BF16, .ndim = 3,
                                           .shape = { E, H, F }, .data = dn[l] };
    }
    snprintf(tmp, sizeof tmp, "%s/rewrite.tmp", dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_msg(st_write(tmp, w, k, err) == 0, "%s", err);
    st_close(set);
    free(w);
    ck_assert_int_eq(rename(tmp, path), 0);
    for (int l = 0; l < 2; l++) {
        free(gu[l]);
        free(dn[l]);
    }
    model_close(&a);
    open_preset("tiny-qwen3-moe", &a, tmp);   /* the per-expert original, in a second folder */
    ck_assert_msg(model_open(&b, dir, err) == 0, "%s", err);
    for (int l = 0; l < 2; l++)
        for (int e = 0; e < E; e++) {
            shape_is(&b.layers[l].experts[e].up, F, H, "fused up");
            shape_is(&b.layers[l].experts[e].down, H, F, "fused down");
            ck_assert(!memcmp(a.layers[l].experts[e].gate.data, b.layers[l].experts[e].gate.data, (size_t)F * H * 2));
            ck_assert(!memcmp(a.layers[l].experts[e].up.data, b.layers[l].experts[e].up.data, (size_t)F * H * 2));
            ck_assert(!memcmp(a.layers[l].experts[e].down.data, b.layers[l].experts[e].down.data, (size_t)H * F * 2));
        }
    model_close(&a);
    model_close(&b);
    fixture_rmtree(dir);
    fixture_rmtree(tmp);
}
END_TEST

START_TEST(a_missing_expert_is_named)
{
    struct model m;
    char dir[FIXTURE_PATH], err[ERR_LEN] = "", tmp[FIXTURE_PATH + 64], path[FIXTURE_PATH + 64];
    struct st_set *set;
    struct st_write_tensor *w;
    int n, k = 0;

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    ck_assert_int_eq(fixture_gen(dir, "tiny-mixtral", 2), 0);
    ck_assert_int_eq(st_open(&set, dir, err), 0);
    n = st_num_tensors(set);
    w = calloc((size_t)n, sizeof *w);
    for (int i = 0; i < n; i++) {
        const struct tensor_ref *t = st_tensor(set, i);

        if (!strcmp(t->name, "model.layers.1.block_sparse_moe.experts.5.w2.weight"))
            continue;
        w[k] = (struct st_write_tensor){ .name = t->name, .dtype = t->dtype, .ndim = t->ndim,
                                         .data = t->data };
        memcpy(w[k++].shape, t->shape, sizeof t->shape);
    }
    snprintf(tmp, sizeof tmp, "%s/rewrite.tmp", dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_msg(st_write(tmp, w, k, err) == 0, "%s", err);
    st_close(set);
    free(w);
    ck_assert_int_eq(rename(tmp, path), 0);
    ck_assert_int_eq(model_open(&m, dir, err), -EINVAL);
    ck_assert_msg(strstr(err, "model.layers.1.block_sparse_moe.experts.5.w2.weight: missing"), "%s", err);
    fixture_rmtree(dir);
}
END_TEST

Suite *model_moe_suite(void)
{
    Suite *s = suite_create("model_moe");
    TCase *tc = tcase_create("moe");

    tcase_add_unchecked_fixture(tc, fixture_quiet, fixture_loud);
    tcase_add_test(tc, mixtral_8x7b_config_gives_8_experts_top_2_renormalized);
    tcase_add_test(tc, qwen3_30b_a3b_config_gives_128_experts_top_8_and_qk_norm);
    tcase_add_test(tc, qwen15_moe_config_gives_a_shared_expert_and_qkv_biases);
    tcase_add_test(tc, qwen3_moe_sparse_step_and_mlp_only_layers_keep_some_layers_dense);
    tcase_add_test(tc, moe_fields_osprey_cannot_honour_are_refused_with_file_and_field);
    tcase_add_test(tc, generated_moe_presets_bind_every_expert_as_published);
    tcase_add_test(tc, fused_experts_bind_to_the_same_slices_as_per_expert_tensors);
    tcase_add_test(tc, a_missing_expert_is_named);
    suite_add_tcase(s, tc);
    return s;
}

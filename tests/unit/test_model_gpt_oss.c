/* test_model_gpt_oss.c — gpt-oss folders: gpt-oss-20b's config.json as OpenAI published it
 * (quant_method mxfp4: its experts are read by the mxfp4 suite) and as a bf16 upload without the
 * quantization_config, transformers 5's rope_parameters spelling, GptOssConfig's defaults,
 * what is refused; gen-model's tiny-gpt-oss binds every tensor with each expert's slices
 * pointing into the fused tensors as published, and a folder with MXFP4 expert tensors but no
 * quantization_config is refused by name. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/model/model.h"
#include "engine/model/safetensors.h"
#include "fixtures.h"

#define PATH FIXTURE_CONFIG_PATH

/* gpt-oss-20b's config.json (openai/gpt-oss-20b), keys in its order; %s is where the
 * quantization_config sits (or nothing, as in a bf16 upload), %s the 24 layer_types. */
static const char gpt_oss_20b_fmt[] =
    "{\"architectures\":[\"GptOssForCausalLM\"],\"attention_bias\":true,\"attention_dropout\":0.0,"
    "\"eos_token_id\":200002,\"experts_per_token\":4,\"head_dim\":64,\"hidden_act\":\"silu\","
    "\"hidden_size\":2880,\"initial_context_length\":4096,\"initializer_range\":0.02,"
    "\"intermediate_size\":2880,\"layer_types\":[%s],\"max_position_embeddings\":131072,"
    "\"model_type\":\"gpt_oss\",\"num_attention_heads\":64,\"num_experts_per_tok\":4,"
    "\"num_hidden_layers\":24,\"num_key_value_heads\":8,\"num_local_experts\":32,"
    "\"output_router_logits\":false,\"pad_token_id\":199999,%s\"rms_norm_eps\":1e-05,"
    "\"rope_scaling\":{\"beta_fast\":32.0,\"beta_slow\":1.0,\"factor\":32.0,"
    "\"original_max_position_embeddings\":4096,\"rope_type\":\"yarn\",\"truncate\":false},"
    "\"rope_theta\":150000,\"router_aux_loss_coef\":0.9,\"sliding_window\":128,"
    "\"swiglu_limit\":7.0,\"tie_word_embeddings\":false,\"transformers_version\":\"4.55.0.dev0\","
    "\"use_cache\":true,\"vocab_size\":201088}";

static const char mxfp4[] =
    "\"quantization_config\":{\"modules_to_not_convert\":[\"model.layers.*.self_attn\","
    "\"model.layers.*.mlp.router\",\"model.embed_tokens\",\"lm_head\"],\"quant_method\":\"mxfp4\"},";

/* gpt-oss-20b's config.json with or without its quantization_config, into json. */
static void gpt_oss_20b(char *json, size_t len, bool quantized)
{
    char types[24 * 24] = "";

    for (int l = 0; l < 24; l++)
        snprintf(types + strlen(types), sizeof types - strlen(types), "%s\"%s\"", l ? "," : "",
                 l % 2 ? "full_attention" : "sliding_attention");
    snprintf(json, len, gpt_oss_20b_fmt, types, quantized ? mxfp4 : "");
}

/* What gpt-oss-20b's shape and GptOssConfig's defaults have in common. */
static void check_gpt_oss_shape(const struct model_config *c, int layers, int experts)
{
    ck_assert_int_eq(c->arch, ARCH_GPT_OSS);
    ck_assert_str_eq(c->arch_name, "GptOssForCausalLM");
    ck_assert_int_eq(c->num_layers, layers);
    ck_assert_int_eq(c->num_experts, experts);
    ck_assert_int_eq(c->num_experts_per_tok, 4);
    ck_assert_int_eq(c->moe_intermediate_size, c->intermediate_size);
    ck_assert(c->norm_topk_prob);               /* softmax over the top-k logits */
    ck_assert_int_eq(c->moe_act, MOE_ACT_SWIGLU_OAI);
    ck_assert_double_eq(c->swiglu_limit, 7.0);
    ck_assert_double_eq(c->swiglu_alpha, 1.702);
    ck_assert(c->attention_bias);
    ck_assert(c->attn_sinks);
    ck_assert(!c->qk_norm);
    ck_assert(!c->tie_word_embeddings);
    ck_assert_int_eq(c->head_dim, 64);
    ck_assert_double_eq(c->rope_theta, 150000.0);
    ck_assert_float_eq(c->rms_norm_eps, 1e-5f);
    ck_assert_int_eq(c->rope_scaling.type, ROPE_YARN);
    ck_assert_double_eq(c->rope_scaling.factor, 32.0);
    ck_assert_double_eq(c->rope_scaling.beta_fast, 32.0);
    ck_assert_double_eq(c->rope_scaling.beta_slow, 1.0);
    ck_assert_int_eq(c->rope_scaling.original_max_position_embeddings, 4096);
    ck_assert(!c->rope_scaling.truncate);
    ck_assert_double_eq_tol(c->rope_scaling.attention_factor, 0.1 * log(32.0) + 1.0, 1e-12);
    for (int l = 0; l < layers; l++) {   /* sliding from layer 0, then full, alternating */
        ck_assert(c->layer_moe[l]);
        ck_assert_int_eq(c->layer_window[l], l % 2 ? 0 : 128);
    }
    ck_assert_int_eq(c->num_kv_groups, 2);
}

START_TEST(gpt_oss_20b_as_published_parses_with_its_mxfp4_experts)
{
    struct model_config c;
    char json[4096];

    gpt_oss_20b(json, sizeof json, true);
    fixture_config_ok(&c, json);
    check_gpt_oss_shape(&c, 24, 32);
    ck_assert_int_eq(c.quant, QUANT_MXFP4);
    ck_assert(!model_fp8_weights(&c));   /* the experts are float once loaded */
}
END_TEST

START_TEST(gpt_oss_20b_in_bf16_gives_its_shape)
{
    struct model_config c;
    char json[4096];

    gpt_oss_20b(json, sizeof json, false);
    fixture_config_ok(&c, json);
    check_gpt_oss_shape(&c, 24, 32);
    ck_assert_int_eq(c.hidden_size, 2880);
    ck_assert_int_eq(c.intermediate_size, 2880);
    ck_assert_int_eq(c.num_heads, 64);
    ck_assert_int_eq(c.num_kv_heads, 8);
    ck_assert_int_eq(c.vocab_size, 201088);
    ck_assert_int_eq(c.max_position_embeddings, 131072);
    ck_assert_int_eq(c.num_eos_token_ids, 1);
    ck_assert_int_eq(c.eos_token_ids[0], 200002);
}
END_TEST

/* transformers 5 writes rope_parameters (with rope_theta inside) and no experts_per_token. */
START_TEST(transformers_5_rope_parameters_read_the_same)
{
    struct model_config c;

    fixture_config_ok(&c, "{\"architectures\":[\"GptOssForCausalLM\"],\"vocab_size\":384,"
                      "\"hidden_size\":64,\"intermediate_size\":32,\"num_hidden_layers\":4,"
                      "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":16,"
                      "\"num_local_experts\":4,\"num_experts_per_tok\":2,\"sliding_window\":8,"
                      "\"layer_types\":[\"sliding_attention\",\"full_attention\","
                      "\"sliding_attention\",\"full_attention\"],\"max_position_embeddings\":512,"
                      "\"rope_parameters\":{\"rope_type\":\"yarn\",\"factor\":4.0,\"beta_fast\":32.0,"
                      "\"beta_slow\":1.0,\"original_max_position_embeddings\":128,"
                      "\"truncate\":false,\"rope_theta\":150000.0},\"dtype\":\"float32\"}");
    ck_assert_int_eq(c.num_experts, 4);
    ck_assert_int_eq(c.num_experts_per_tok, 2);
    ck_assert_int_eq(c.rope_scaling.type, ROPE_YARN);
    ck_assert_double_eq(c.rope_scaling.factor, 4.0);
    ck_assert_int_eq(c.rope_scaling.original_max_position_embeddings, 128);
    ck_assert_double_eq_tol(c.rope_scaling.attention_factor, 0.1 * log(4.0) + 1.0, 1e-12);
    ck_assert_double_eq(c.rope_theta, 150000.0);
    for (int l = 0; l < 4; l++)
        ck_assert_int_eq(c.layer_window[l], l % 2 ? 0 : 8);
    ck_assert_int_eq(c.dtype, DT_F32);
}
END_TEST

/* GptOssConfig's defaults: 128 experts top 4, window 128 on alternating layers from a
 * sliding layer 0, YaRN factor 32 over 4096 positions untruncated, theta 150000, eps 1e-5,
 * head_dim 64, biases on. */
START_TEST(gpt_oss_config_class_defaults_fill_what_config_json_leaves_out)
{
    struct model_config c;

    fixture_config_ok(&c, "{\"model_type\":\"gpt_oss\",\"vocab_size\":512,\"hidden_size\":64,"
                      "\"intermediate_size\":32,\"num_hidden_layers\":6,\"num_attention_heads\":4,"
                      "\"num_key_value_heads\":2}");
    check_gpt_oss_shape(&c, 6, 128);
    /* a rope_scaling of another kind replaces the default yarn; truncate defaults on */
    fixture_config_ok(&c, "{\"model_type\":\"gpt_oss\",\"vocab_size\":512,\"hidden_size\":64,"
                      "\"intermediate_size\":32,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                      "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":2.0},"
                      "\"max_position_embeddings\":1000,\"attention_bias\":false}");
    ck_assert(c.rope_scaling.truncate);
    ck_assert_int_eq(c.rope_scaling.original_max_position_embeddings, 1000);
    ck_assert_double_eq(c.rope_scaling.beta_fast, 32.0);
    ck_assert(!c.attention_bias);
    ck_assert(c.attn_sinks);
    /* the original release's experts_per_token alone is the top-k */
    fixture_config_ok(&c, "{\"model_type\":\"gpt_oss\",\"vocab_size\":512,\"hidden_size\":64,"
                      "\"intermediate_size\":32,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                      "\"experts_per_token\":3}");
    ck_assert_int_eq(c.num_experts_per_tok, 3);
}
END_TEST

static void check_refused(const char *json, const char *fragment)
{
    struct model_config c;
    char err[ERR_LEN] = "";

    ck_assert_msg(fixture_config_parse(&c, json, err) == -EINVAL, "accepted %s", json);
    ck_assert_msg(strstr(err, fragment), "'%s' lacks '%s'", err, fragment);
}

#define BASE "{\"model_type\":\"gpt_oss\",\"vocab_size\":512,\"hidden_size\":64," \
             "\"intermediate_size\":32,\"num_hidden_layers\":2,\"num_attention_heads\":4,"

START_TEST(bad_gpt_oss_fields_are_refused_with_file_field_and_problem)
{
    check_refused(BASE "\"experts_per_token\":4,\"num_experts_per_tok\":2}",
                  PATH ": experts_per_token: 4 disagrees with num_experts_per_tok 2");
    check_refused(BASE "\"num_local_experts\":4,\"num_experts_per_tok\":8}",
                  PATH ": num_experts_per_tok: 8 is more than the 4 experts");
    check_refused(BASE "\"swiglu_limit\":0}", PATH ": swiglu_limit: must be > 0");
    check_refused(BASE "\"sliding_window\":null}",
                  PATH ": sliding_window: null, but GptOssForCausalLM has sliding-window layers");
    check_refused(BASE "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0,\"mscale\":1.0,"
                  "\"mscale_all_dim\":1.0}}",
                  PATH ": rope_scaling.mscale: mscale / mscale_all_dim (DeepSeek's yarn) are not "
                  "supported");
    check_refused(BASE "\"rope_scaling\":{\"rope_type\":\"yarn\"}}",
                  PATH ": rope_scaling.factor: missing");
    check_refused(BASE "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0,"
                  "\"truncate\":\"no\"}}", PATH ": rope_scaling.truncate: expected true or false");
}
END_TEST

/* tiny-gpt-oss as gen-model writes it: every tensor bound, each expert's slices pointing into
 * the fused [E, hidden, 2 ffn] and [E, ffn, hidden] tensors and [E, n] biases as published. */
START_TEST(tiny_gpt_oss_binds_every_expert_slice_of_the_fused_tensors)
{
    struct model m;
    char dir[FIXTURE_PATH], err[ERR_LEN] = "";

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    ck_assert_int_eq(fixture_gen(dir, "tiny-gpt-oss", 1), 0);
    ck_assert_msg(model_open(&m, dir, err) == 0, "%s", err);
    for (int l = 0; l < m.cfg.num_layers; l++) {
        const struct layer_tensors *lt = &m.layers[l];
        int64_t h = m.cfg.hidden_size, f = m.cfg.moe_intermediate_size;
        char name[128];
        const struct tensor_ref *gu, *gub, *dn, *dnb;

        ck_assert_ptr_nonnull(lt->o_bias.data);
        ck_assert_int_eq(lt->sinks.shape[0], m.cfg.num_heads);
        ck_assert_int_eq(lt->router_bias.shape[0], m.cfg.num_experts);
        ck_assert_ptr_nonnull(lt->q_bias.data);
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.gate_up_proj", l);
        gu = st_find(m.st, name);
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.gate_up_proj_bias", l);
        gub = st_find(m.st, name);
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.down_proj", l);
        dn = st_find(m.st, name);
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.down_proj_bias", l);
        dnb = st_find(m.st, name);
        ck_assert(gu && gub && dn && dnb);
        for (int e = 0; e < m.cfg.num_experts; e++) {
            const struct expert_tensors *x = &lt->experts[e];

            ck_assert_ptr_eq(x->gate_up_t.data, (const char *)gu->data + e * h * 2 * f * 2);
            ck_assert_int_eq(x->gate_up_t.shape[0], h);
            ck_assert_int_eq(x->gate_up_t.shape[1], 2 * f);
            ck_assert_ptr_eq(x->down_t.data, (const char *)dn->data + e * f * h * 2);
            ck_assert_int_eq(x->down_t.shape[0], f);
            ck_assert_int_eq(x->down_t.shape[1], h);
            ck_assert_ptr_eq(x->gate_up_bias.data, (const char *)gub->data + e * 2 * f * 2);
            ck_assert_int_eq(x->gate_up_bias.shape[0], 2 * f);
            ck_assert_ptr_eq(x->down_bias.data, (const char *)dnb->data + e * h * 2);
            ck_assert_ptr_null(x->gate.data);
        }
    }
    model_close(&m);
    fixture_rmtree(dir);
}
END_TEST

/* A folder whose experts are MXFP4 (gate_up_proj_blocks) but whose config.json lost the
 * quantization_config is refused by the tensor's name, not with "gate_up_proj: missing". */
START_TEST(mxfp4_expert_tensors_without_a_quantization_config_are_refused_by_name)
{
    struct model m;
    char dir[FIXTURE_PATH], err[ERR_LEN] = "";
    struct st_set *set;
    struct st_write_tensor *w;
    int n;

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    ck_assert_int_eq(fixture_gen(dir, "tiny-gpt-oss", 2), 0);
    ck_assert_int_eq(st_open(&set, dir, err), 0);
    n = st_num_tensors(set);
    w = fixture_write_list(set);
    for (int i = 0; i < n; i++)
        if (!strcmp(w[i].name, "model.layers.0.mlp.experts.gate_up_proj"))
            w[i].name = "model.layers.0.mlp.experts.gate_up_proj_blocks";
    fixture_replace_weights(dir, set, w, n);
    ck_assert_int_eq(model_open(&m, dir, err), -ENOTSUP);
    ck_assert_msg(strstr(err, "model.layers.0.mlp.experts.gate_up_proj_blocks: MXFP4 experts "
                              "(*_blocks, *_scales), but config.json has no quantization_config "
                              "with quant_method mxfp4"), "%s", err);
    fixture_rmtree(dir);
}
END_TEST

Suite *model_gpt_oss_suite(void)
{
    Suite *s = suite_create("model_gpt_oss");
    TCase *tc = tcase_create("model_gpt_oss");

    tcase_add_unchecked_fixture(tc, fixture_quiet, fixture_loud);
    tcase_add_test(tc, gpt_oss_20b_as_published_parses_with_its_mxfp4_experts);
    tcase_add_test(tc, gpt_oss_20b_in_bf16_gives_its_shape);
    tcase_add_test(tc, transformers_5_rope_parameters_read_the_same);
    tcase_add_test(tc, gpt_oss_config_class_defaults_fill_what_config_json_leaves_out);
    tcase_add_test(tc, bad_gpt_oss_fields_are_refused_with_file_field_and_problem);
    tcase_add_test(tc, tiny_gpt_oss_binds_every_expert_slice_of_the_fused_tensors);
    tcase_add_test(tc, mxfp4_expert_tensors_without_a_quantization_config_are_refused_by_name);
    suite_add_tcase(s, tc);
    return s;
}

/* test_model_config_gemma.c — Gemma 2 and Gemma 3 config.json parsing against values written
 * out by hand from the published configs and transformers' Gemma2Config / Gemma3TextConfig
 * defaults: soft-caps, query_pre_attn_scalar, sandwich and (1 + w) norms, GeGLU, the
 * sliding/full layer pattern and its two KV-cache groups, Gemma 3's local RoPE base, the
 * text_config of Gemma3ForConditionalGeneration, transformers 5's per-layer-type
 * rope_parameters, and what is refused. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/model/model.h"
#include "fixtures.h"

#define PATH FIXTURE_CONFIG_PATH

static const char gemma2_2b[] =
    "{\"architectures\":[\"Gemma2ForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"attn_logit_softcapping\":50.0,\"bos_token_id\":2,\"cache_implementation\":\"hybrid\","
    "\"eos_token_id\":[1,107],\"final_logit_softcapping\":30.0,\"head_dim\":256,"
    "\"hidden_act\":\"gelu_pytorch_tanh\",\"hidden_activation\":\"gelu_pytorch_tanh\","
    "\"hidden_size\":2304,\"initializer_range\":0.02,\"intermediate_size\":9216,"
    "\"max_position_embeddings\":8192,\"model_type\":\"gemma2\",\"num_attention_heads\":8,"
    "\"num_hidden_layers\":26,\"num_key_value_heads\":4,\"pad_token_id\":0,"
    "\"query_pre_attn_scalar\":256,\"rms_norm_eps\":1e-06,\"rope_theta\":10000.0,"
    "\"sliding_window\":4096,\"torch_dtype\":\"float32\",\"transformers_version\":\"4.42.4\","
    "\"use_cache\":true,\"vocab_size\":256000}";

static const char gemma3_1b[] =
    "{\"architectures\":[\"Gemma3ForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"attn_logit_softcapping\":null,\"bos_token_id\":2,\"cache_implementation\":\"hybrid\","
    "\"eos_token_id\":[1,106],\"final_logit_softcapping\":null,\"head_dim\":256,"
    "\"hidden_activation\":\"gelu_pytorch_tanh\",\"hidden_size\":1152,\"initializer_range\":0.02,"
    "\"intermediate_size\":6912,\"max_position_embeddings\":32768,\"model_type\":\"gemma3_text\","
    "\"num_attention_heads\":4,\"num_hidden_layers\":26,\"num_key_value_heads\":1,"
    "\"pad_token_id\":0,\"query_pre_attn_scalar\":256,\"rms_norm_eps\":1e-06,"
    "\"rope_local_base_freq\":10000,\"rope_scaling\":null,\"rope_theta\":1000000,"
    "\"sliding_window\":512,\"sliding_window_pattern\":6,\"torch_dtype\":\"bfloat16\","
    "\"transformers_version\":\"4.50.0.dev0\",\"use_cache\":true,\"vocab_size\":262144}";

/* gemma-3-4b-it: the text model's sizes are partly left to Gemma3TextConfig's defaults */
static const char gemma3_4b_mm[] =
    "{\"architectures\":[\"Gemma3ForConditionalGeneration\"],\"boi_token_index\":255999,"
    "\"eoi_token_index\":256000,\"eos_token_id\":[1,106],\"image_token_index\":262144,"
    "\"initializer_range\":0.02,\"mm_tokens_per_image\":256,\"model_type\":\"gemma3\","
    "\"text_config\":{\"hidden_size\":2560,\"intermediate_size\":10240,"
    "\"model_type\":\"gemma3_text\",\"num_hidden_layers\":34,\"rope_scaling\":{\"factor\":8.0,"
    "\"rope_type\":\"linear\"},\"sliding_window\":1024},\"torch_dtype\":\"bfloat16\","
    "\"transformers_version\":\"4.50.0.dev0\",\"vision_config\":{\"hidden_size\":1152,"
    "\"image_size\":896,\"intermediate_size\":4304,\"model_type\":\"siglip_vision_model\","
    "\"num_attention_heads\":16,\"num_hidden_layers\":27,\"patch_size\":14,"
    "\"vision_use_head\":false}}";

/* transformers 5 writes Gemma 3's RoPE per layer type and drops rope_local_base_freq */
static const char gemma3_v5[] =
    "{\"architectures\":[\"Gemma3ForCausalLM\"],\"dtype\":\"bfloat16\",\"head_dim\":32,"
    "\"hidden_size\":64,\"intermediate_size\":96,\"num_attention_heads\":4,"
    "\"num_hidden_layers\":4,\"num_key_value_heads\":2,\"vocab_size\":384,"
    "\"layer_types\":[\"sliding_attention\",\"full_attention\",\"sliding_attention\","
    "\"full_attention\"],\"sliding_window\":8,\"rope_parameters\":{\"full_attention\":{"
    "\"rope_type\":\"linear\",\"factor\":4.0,\"rope_theta\":500000.0},\"sliding_attention\":{"
    "\"rope_type\":\"default\",\"rope_theta\":20000.0}}}";

START_TEST(gemma_2_config_gives_soft_caps_sandwich_norms_and_alternating_windows)
{
    struct model_config c;

    fixture_config_ok(&c, gemma2_2b);
    ck_assert_int_eq(c.arch, ARCH_GEMMA2);
    ck_assert_str_eq(c.arch_name, "Gemma2ForCausalLM");
    ck_assert_int_eq(c.vocab_size, 256000);
    ck_assert_int_eq(c.hidden_size, 2304);
    ck_assert_int_eq(c.num_layers, 26);
    ck_assert_int_eq(c.num_heads, 8);
    ck_assert_int_eq(c.num_kv_heads, 4);
    ck_assert_int_eq(c.head_dim, 256);
    ck_assert_int_eq(c.mlp_act, MLP_GELU_TANH);
    ck_assert(c.norm_plus_one && c.sandwich_norms && c.scale_embeddings);
    ck_assert(c.tie_word_embeddings);          /* Gemma2Config's default */
    ck_assert(!c.qk_norm);
    ck_assert_double_eq(c.query_pre_attn_scalar, 256);
    ck_assert_double_eq(c.attn_softcap, 50.0);
    ck_assert_double_eq(c.final_softcap, 30.0);
    ck_assert_double_eq(c.rope_theta, 10000.0);
    ck_assert_double_eq(c.rope_local_theta, 0.0);   /* one RoPE for every layer */
    ck_assert_int_eq(c.dtype, DT_F32);
    ck_assert_int_eq(c.num_eos_token_ids, 2);
    ck_assert_int_eq(c.eos_token_ids[1], 107);
    /* layer 0 slides, layer 1 is global, and so on: two KV-cache groups */
    for (int l = 0; l < 26; l++)
        ck_assert_int_eq(c.layer_window[l], l % 2 == 0 ? 4096 : 0);
    ck_assert_int_eq(c.num_kv_groups, 2);
    ck_assert_int_eq(c.kv_group_window[0], 0);
    ck_assert_int_eq(c.kv_group_window[1], 4096);
    ck_assert_int_eq(c.layer_kv_group[0], 1);
    ck_assert_int_eq(c.layer_kv_group[1], 0);
}
END_TEST

START_TEST(gemma_2_soft_caps_set_to_null_are_off)
{
    struct model_config c;
    char json[2048];

    snprintf(json, sizeof json, "{\"attn_logit_softcapping\":null,\"final_logit_softcapping\":null,%s",
             gemma2_2b + 1);
    fixture_config_ok(&c, json);
    ck_assert_double_eq(c.attn_softcap, 0.0);
    ck_assert_double_eq(c.final_softcap, 0.0);
}
END_TEST

START_TEST(gemma_3_config_gives_local_rope_qk_norm_and_five_local_layers_to_one_global)
{
    struct model_config c;

    fixture_config_ok(&c, gemma3_1b);
    ck_assert_int_eq(c.arch, ARCH_GEMMA3);
    ck_assert_str_eq(c.arch_name, "Gemma3ForCausalLM");
    ck_assert(c.qk_norm && c.norm_plus_one && c.sandwich_norms && c.scale_embeddings);
    ck_assert(!c.multimodal);
    ck_assert_double_eq(c.attn_softcap, 0.0);
    ck_assert_double_eq(c.final_softcap, 0.0);
    ck_assert_double_eq(c.rope_theta, 1000000.0);
    ck_assert_double_eq(c.rope_local_theta, 10000.0);
    ck_assert_int_eq(c.rope_scaling.type, ROPE_DEFAULT);
    ck_assert_int_eq(c.num_kv_heads, 1);
    for (int l = 0; l < 26; l++)
        ck_assert_int_eq(c.layer_window[l], (l + 1) % 6 ? 512 : 0);
    ck_assert_int_eq(c.num_kv_groups, 2);
    ck_assert_int_eq(c.layer_kv_group[5], 0);
    ck_assert_int_eq(c.layer_kv_group[4], 1);
}
END_TEST

START_TEST(gemma_3_multimodal_config_reads_its_text_config_with_class_defaults)
{
    struct model_config c;
    char json[2048];

    fixture_config_ok(&c, gemma3_4b_mm);
    ck_assert_int_eq(c.arch, ARCH_GEMMA3);
    ck_assert(c.multimodal);
    ck_assert_int_eq(c.hidden_size, 2560);
    ck_assert_int_eq(c.intermediate_size, 10240);
    ck_assert_int_eq(c.num_layers, 34);
    ck_assert_int_eq(c.vocab_size, 262208);      /* Gemma3TextConfig's defaults from here */
    ck_assert_int_eq(c.num_heads, 8);
    ck_assert_int_eq(c.num_kv_heads, 4);
    ck_assert_int_eq(c.head_dim, 256);
    ck_assert_int_eq(c.max_position_embeddings, 131072);
    ck_assert_double_eq(c.query_pre_attn_scalar, 256);
    ck_assert_double_eq(c.rope_theta, 1000000.0);
    ck_assert_double_eq(c.rope_local_theta, 10000.0);
    ck_assert_int_eq(c.rope_scaling.type, ROPE_LINEAR);   /* global layers only */
    ck_assert_double_eq(c.rope_scaling.factor, 8.0);
    ck_assert(c.tie_word_embeddings);
    ck_assert_int_eq(c.dtype, DT_BF16);            /* from the top level */
    ck_assert_int_eq(c.num_eos_token_ids, 2);      /* from the top level */
    ck_assert_int_eq(c.eos_token_ids[1], 106);
    for (int l = 0; l < 34; l++)
        ck_assert_int_eq(c.layer_window[l], (l + 1) % 6 ? 1024 : 0);
    /* the top level's dtype and token ids count when text_config has none */
    snprintf(json, sizeof json, "{\"torch_dtype\":\"float32\",\"bos_token_id\":2,%s", gemma3_4b_mm + 1);
    fixture_config_ok(&c, json);
    ck_assert_int_eq(c.dtype, DT_F32);
    ck_assert_int_eq(c.bos_token_id, 2);
}
END_TEST

START_TEST(gemma_3_transformers_5_rope_parameters_per_layer_type)
{
    struct model_config c;

    fixture_config_ok(&c, gemma3_v5);
    ck_assert_double_eq(c.rope_theta, 500000.0);
    ck_assert_int_eq(c.rope_scaling.type, ROPE_LINEAR);
    ck_assert_double_eq(c.rope_scaling.factor, 4.0);
    ck_assert_double_eq(c.rope_local_theta, 20000.0);
    ck_assert_int_eq(c.layer_window[0], 8);
    ck_assert_int_eq(c.layer_window[1], 0);
}
END_TEST

/* `first` goes before the Gemma 3 1B config; cJSON takes the first of repeated keys. */
static void check_refused(const char *base, const char *first, const char *fragment, int line)
{
    struct model_config c;
    char json[4096], err[ERR_LEN] = "";

    snprintf(json, sizeof json, "{%s,%s", first, base + 1);
    ck_assert_msg(fixture_config_parse(&c, json, err) == -EINVAL, "line %d: accepted %s", line, first);
    ck_assert_msg(strstr(err, fragment), "line %d: '%s' lacks '%s'", line, err, fragment);
}
#define REFUSED(first, fragment) check_refused(gemma3_1b, first, fragment, __LINE__)

START_TEST(gemma_features_osprey_lacks_are_refused_with_file_and_field)
{
    REFUSED("\"hidden_activation\":\"gelu\"",
            PATH ": hidden_activation: 'gelu' is not supported for Gemma (gelu_pytorch_tanh)");
    REFUSED("\"use_bidirectional_attention\":true", PATH ": use_bidirectional_attention: true");
    REFUSED("\"sliding_window\":null", PATH ": sliding_window: null, but Gemma3ForCausalLM has sliding-window layers");
    REFUSED("\"query_pre_attn_scalar\":0", PATH ": query_pre_attn_scalar: must be > 0");
    REFUSED("\"attn_logit_softcapping\":-1", PATH ": attn_logit_softcapping: must be >= 0");
    REFUSED("\"rope_local_base_freq\":\"x\"", PATH ": rope_local_base_freq: expected a number");
    REFUSED("\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"default\"},"
            "\"sliding_attention\":{\"rope_type\":\"linear\",\"factor\":2}}",
            PATH ": rope_parameters.sliding_attention.rope_type: only \"default\"");
    check_refused(gemma2_2b, "\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"default\"}}",
                  PATH ": rope_parameters.full_attention: per-layer-type rope parameters are "
                  "supported for Gemma 3 only", __LINE__);
    check_refused(gemma3_4b_mm, "\"text_config\":7",
                  PATH ": text_config: missing or not an object", __LINE__);
    check_refused(gemma3_4b_mm, "\"text_config\":{\"model_type\":\"llama\",\"vocab_size\":8,"
                  "\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                  "\"num_attention_heads\":1}",
                  PATH ": text_config.model_type: expected \"gemma3_text\"", __LINE__);
    check_refused(gemma3_4b_mm, "\"text_config\":{\"model_type\":\"gemma3_text\",\"hidden_size\":-1}",
                  PATH " (text_config): hidden_size: ", __LINE__);
}
END_TEST

Suite *model_config_gemma_suite(void)
{
    Suite *s = suite_create("model_config_gemma");
    TCase *tc = tcase_create("gemma");

    tcase_add_unchecked_fixture(tc, fixture_quiet, fixture_loud);
    tcase_add_test(tc, gemma_2_config_gives_soft_caps_sandwich_norms_and_alternating_windows);
    tcase_add_test(tc, gemma_2_soft_caps_set_to_null_are_off);
    tcase_add_test(tc, gemma_3_config_gives_local_rope_qk_norm_and_five_local_layers_to_one_global);
    tcase_add_test(tc, gemma_3_multimodal_config_reads_its_text_config_with_class_defaults);
    tcase_add_test(tc, gemma_3_transformers_5_rope_parameters_per_layer_type);
    tcase_add_test(tc, gemma_features_osprey_lacks_are_refused_with_file_and_field);
    suite_add_tcase(s, tc);
    return s;
}

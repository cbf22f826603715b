/* test_model_config.c — config.json (+ generation_config.json) parsing against values
 * written out by hand from published configs: both transformers styles, every
 * architecture, rope scaling, sliding windows, eos merging, and every validation error with
 * its "<path>: <field>: <problem>" message. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/model/model.h"

#define PATH "m/config.json"

/* ---- configs of published models, as their config.json files say ---- */

static const char llama31_8b[] =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"bos_token_id\":128000,\"eos_token_id\":[128001,128008,128009],\"hidden_act\":\"silu\","
    "\"hidden_size\":4096,\"initializer_range\":0.02,\"intermediate_size\":14336,"
    "\"max_position_embeddings\":131072,\"mlp_bias\":false,\"model_type\":\"llama\","
    "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":8,"
    "\"pretraining_tp\":1,\"rms_norm_eps\":1e-05,\"rope_scaling\":{\"factor\":8.0,"
    "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192,"
    "\"rope_type\":\"llama3\"},\"rope_theta\":500000.0,\"tie_word_embeddings\":false,"
    "\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.43.0.dev0\",\"use_cache\":true,"
    "\"vocab_size\":128256}";

static const char llama2_7b[] =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"bos_token_id\":1,\"eos_token_id\":2,"
    "\"hidden_act\":\"silu\",\"hidden_size\":4096,\"initializer_range\":0.02,"
    "\"intermediate_size\":11008,\"max_position_embeddings\":4096,\"model_type\":\"llama\","
    "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":32,"
    "\"pretraining_tp\":1,\"rms_norm_eps\":1e-05,\"rope_scaling\":null,"
    "\"tie_word_embeddings\":false,\"torch_dtype\":\"float16\",\"use_cache\":true,"
    "\"vocab_size\":32000}";

/* transformers 5 writes rope_parameters and dtype. */
static const char llama32_1b_v5[] =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"dtype\":\"bfloat16\",\"head_dim\":64,"
    "\"hidden_size\":2048,\"intermediate_size\":8192,\"num_attention_heads\":32,"
    "\"num_hidden_layers\":16,\"num_key_value_heads\":8,\"vocab_size\":128256,"
    "\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-05,\"rope_parameters\":{"
    "\"factor\":32.0,\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
    "\"original_max_position_embeddings\":8192,\"rope_theta\":500000.0,\"rope_type\":\"llama3\"},"
    "\"tie_word_embeddings\":true,\"bos_token_id\":128000,\"eos_token_id\":128001}";

static const char qwen25_05b[] =
    "{\"architectures\":[\"Qwen2ForCausalLM\"],\"attention_dropout\":0.0,\"bos_token_id\":151643,"
    "\"eos_token_id\":151645,\"hidden_act\":\"silu\",\"hidden_size\":896,\"initializer_range\":0.02,"
    "\"intermediate_size\":4864,\"max_position_embeddings\":32768,\"max_window_layers\":21,"
    "\"model_type\":\"qwen2\",\"num_attention_heads\":14,\"num_hidden_layers\":24,"
    "\"num_key_value_heads\":2,\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,"
    "\"sliding_window\":32768,\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\","
    "\"use_cache\":true,\"use_sliding_window\":false,\"vocab_size\":151936}";

static const char qwen3_06b[] =
    "{\"architectures\":[\"Qwen3ForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"bos_token_id\":151643,\"eos_token_id\":151645,\"head_dim\":128,\"hidden_act\":\"silu\","
    "\"hidden_size\":1024,\"initializer_range\":0.02,\"intermediate_size\":3072,"
    "\"max_position_embeddings\":40960,\"max_window_layers\":28,\"model_type\":\"qwen3\","
    "\"num_attention_heads\":16,\"num_hidden_layers\":28,\"num_key_value_heads\":8,"
    "\"rms_norm_eps\":1e-06,\"rope_scaling\":null,\"rope_theta\":1000000,\"sliding_window\":null,"
    "\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\",\"use_cache\":true,"
    "\"use_sliding_window\":false,\"vocab_size\":151936}";

static const char mistral_7b[] =
    "{\"architectures\":[\"MistralForCausalLM\"],\"bos_token_id\":1,\"eos_token_id\":2,"
    "\"hidden_act\":\"silu\",\"hidden_size\":4096,\"initializer_range\":0.02,"
    "\"intermediate_size\":14336,\"max_position_embeddings\":32768,\"model_type\":\"mistral\","
    "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":8,"
    "\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,\"sliding_window\":4096,"
    "\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\",\"use_cache\":true,"
    "\"vocab_size\":32000}";

static int parse2(struct model_config *c, const char *json, const char *gen, char *err)
{
    return model_config_parse(c, json, strlen(json), gen, gen ? strlen(gen) : 0, PATH, err);
}

static void parse_ok(struct model_config *c, const char *json, const char *gen)
{
    char err[ERR_LEN] = "";
    int rc = parse2(c, json, gen, err);

    ck_assert_msg(rc == 0, "parse failed: %s", err);
}

START_TEST(llama_3_1_8b_config_gives_llama3_rope_and_three_eos)
{
    struct model_config c;

    parse_ok(&c, llama31_8b, NULL);
    ck_assert_int_eq(c.arch, ARCH_LLAMA);
    ck_assert_str_eq(c.arch_name, "LlamaForCausalLM");
    ck_assert_int_eq(c.vocab_size, 128256);
    ck_assert_int_eq(c.hidden_size, 4096);
    ck_assert_int_eq(c.intermediate_size, 14336);
    ck_assert_int_eq(c.num_layers, 32);
    ck_assert_int_eq(c.num_heads, 32);
    ck_assert_int_eq(c.num_kv_heads, 8);
    ck_assert_int_eq(c.head_dim, 128);
    ck_assert_int_eq(c.max_position_embeddings, 131072);
    ck_assert_float_eq_tol(c.rms_norm_eps, 1e-5f, 1e-12f);
    ck_assert_double_eq(c.rope_theta, 500000.0);
    ck_assert_int_eq(c.rope_scaling.type, ROPE_LLAMA3);
    ck_assert_double_eq(c.rope_scaling.factor, 8.0);
    ck_assert_double_eq(c.rope_scaling.low_freq_factor, 1.0);
    ck_assert_double_eq(c.rope_scaling.high_freq_factor, 4.0);
    ck_assert_int_eq(c.rope_scaling.original_max_position_embeddings, 8192);
    ck_assert(!c.tie_word_embeddings);
    ck_assert(!c.attention_bias);
    ck_assert(!c.qk_norm);
    ck_assert_int_eq(c.dtype, DT_BF16);
    ck_assert_int_eq(c.bos_token_id, 128000);
    ck_assert_int_eq(c.num_eos_token_ids, 3);
    ck_assert_int_eq(c.eos_token_ids[0], 128001);
    ck_assert_int_eq(c.eos_token_ids[1], 128008);
    ck_assert_int_eq(c.eos_token_ids[2], 128009);
    for (int l = 0; l < 32; l++)
        ck_assert_int_eq(c.layer_window[l], 0);
    ck_assert_float_eq(c.gen_temperature, -1.0f);
    ck_assert_float_eq(c.gen_top_p, -1.0f);
    ck_assert_int_eq(c.gen_top_k, 0);
}
END_TEST

START_TEST(llama_2_config_uses_defaults_for_absent_fields)
{
    struct model_config c;

    parse_ok(&c, llama2_7b, NULL);
    ck_assert_int_eq(c.num_kv_heads, 32);
    ck_assert_int_eq(c.head_dim, 128);
    ck_assert_double_eq(c.rope_theta, 10000.0);       /* absent: transformers' default */
    ck_assert_int_eq(c.rope_scaling.type, ROPE_DEFAULT);
    ck_assert_int_eq(c.dtype, DT_F16);
    ck_assert_int_eq(c.bos_token_id, 1);
    ck_assert_int_eq(c.num_eos_token_ids, 1);
    ck_assert_int_eq(c.eos_token_ids[0], 2);
}
END_TEST

START_TEST(transformers_5_style_with_rope_parameters_and_dtype)
{
    struct model_config c;

    parse_ok(&c, llama32_1b_v5, NULL);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert(c.tie_word_embeddings);
    ck_assert_double_eq(c.rope_theta, 500000.0);
    ck_assert_int_eq(c.rope_scaling.type, ROPE_LLAMA3);
    ck_assert_double_eq(c.rope_scaling.factor, 32.0);
    ck_assert_int_eq(c.rope_scaling.original_max_position_embeddings, 8192);
    ck_assert_int_eq(c.dtype, DT_BF16);
}
END_TEST

START_TEST(rope_scaling_type_may_be_spelled_type_and_linear_reads_factor)
{
    struct model_config c;

    parse_ok(&c, "{\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.5},"
                 "\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":512,\"hidden_size\":64,"
                 "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4}", NULL);
    ck_assert_int_eq(c.rope_scaling.type, ROPE_LINEAR);
    ck_assert_double_eq(c.rope_scaling.factor, 2.5);
    parse_ok(&c, "{\"rope_scaling\":{\"rope_type\":\"default\"},"
                 "\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":512,\"hidden_size\":64,"
                 "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4}", NULL);
    ck_assert_int_eq(c.rope_scaling.type, ROPE_DEFAULT);
}
END_TEST

START_TEST(head_dim_may_differ_from_hidden_over_heads)
{
    struct model_config c;

    parse_ok(&c, "{\"head_dim\":32,\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":512,"
                 "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                 "\"num_attention_heads\":4}", NULL);
    ck_assert_int_eq(c.head_dim, 32);
}
END_TEST

START_TEST(qwen2_has_qkv_bias_and_no_window_unless_enabled)
{
    struct model_config c;

    parse_ok(&c, qwen25_05b, NULL);
    ck_assert_int_eq(c.arch, ARCH_QWEN2);
    ck_assert(c.attention_bias);
    ck_assert(!c.qk_norm);
    ck_assert(c.tie_word_embeddings);
    ck_assert_int_eq(c.head_dim, 64);              /* 896 / 14 */
    ck_assert_double_eq(c.rope_theta, 1e6);
    ck_assert_float_eq_tol(c.rms_norm_eps, 1e-6f, 1e-13f);
    for (int l = 0; l < 24; l++)                   /* use_sliding_window is false */
        ck_assert_int_eq(c.layer_window[l], 0);
}
END_TEST

START_TEST(qwen_sliding_window_applies_from_max_window_layers_on)
{
    struct model_config c;

    parse_ok(&c, "{\"use_sliding_window\":true,\"sliding_window\":64,\"max_window_layers\":1,"
                 "\"architectures\":[\"Qwen2ForCausalLM\"],\"vocab_size\":512,\"hidden_size\":64,"
                 "\"intermediate_size\":128,\"num_hidden_layers\":3,\"num_attention_heads\":4}",
             NULL);
    ck_assert_int_eq(c.layer_window[0], 0);
    ck_assert_int_eq(c.layer_window[1], 64);
    ck_assert_int_eq(c.layer_window[2], 64);
}
END_TEST

START_TEST(qwen3_has_qk_norm_and_head_dim_128_by_default)
{
    struct model_config c;

    parse_ok(&c, qwen3_06b, NULL);
    ck_assert_int_eq(c.arch, ARCH_QWEN3);
    ck_assert(c.qk_norm);
    ck_assert(!c.attention_bias);
    ck_assert_int_eq(c.head_dim, 128);
    ck_assert_int_eq(c.max_position_embeddings, 40960);
    ck_assert_int_eq(c.layer_window[27], 0);
    parse_ok(&c, "{\"architectures\":[\"Qwen3ForCausalLM\"],\"vocab_size\":512,\"hidden_size\":64,"
                 "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4}", NULL);
    ck_assert_int_eq(c.head_dim, 128);             /* Qwen3Config's default */
}
END_TEST

START_TEST(mistral_window_applies_to_every_layer)
{
    struct model_config c;
    const char *tail = "\"architectures\":[\"MistralForCausalLM\"],\"vocab_size\":512,"
                       "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                       "\"num_attention_heads\":4}";
    char json[512];

    parse_ok(&c, mistral_7b, NULL);
    ck_assert_int_eq(c.arch, ARCH_MISTRAL);
    for (int l = 0; l < 32; l++)
        ck_assert_int_eq(c.layer_window[l], 4096);
    snprintf(json, sizeof json, "{\"sliding_window\":null,%s", tail);
    parse_ok(&c, json, NULL);
    ck_assert_int_eq(c.layer_window[0], 0);
    ck_assert_int_eq(c.layer_window[1], 0);
    snprintf(json, sizeof json, "{%s", tail);         /* absent: MistralConfig's 4096 */
    parse_ok(&c, json, NULL);
    ck_assert_int_eq(c.layer_window[1], 4096);
}
END_TEST

START_TEST(layer_types_give_per_layer_windows)
{
    struct model_config c;

    parse_ok(&c, "{\"layer_types\":[\"full_attention\",\"sliding_attention\",\"sliding_attention\","
                 "\"full_attention\"],\"sliding_window\":128,"
                 "\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":512,\"hidden_size\":64,"
                 "\"intermediate_size\":128,\"num_hidden_layers\":4,\"num_attention_heads\":4}",
             NULL);
    ck_assert_int_eq(c.layer_window[0], 0);
    ck_assert_int_eq(c.layer_window[1], 128);
    ck_assert_int_eq(c.layer_window[2], 128);
    ck_assert_int_eq(c.layer_window[3], 0);
}
END_TEST

START_TEST(eos_ids_merge_with_generation_config_without_repeats)
{
    struct model_config c;
    const char *gen = "{\"bos_token_id\":128000,\"do_sample\":true,"
                      "\"eos_token_id\":[128001,128008,128009],\"temperature\":0.6,\"top_p\":0.9,"
                      "\"top_k\":40}";

    parse_ok(&c, llama32_1b_v5, gen);
    ck_assert_int_eq(c.num_eos_token_ids, 3);
    ck_assert_int_eq(c.eos_token_ids[0], 128001);
    ck_assert_int_eq(c.eos_token_ids[1], 128008);
    ck_assert_int_eq(c.eos_token_ids[2], 128009);
    ck_assert_float_eq_tol(c.gen_temperature, 0.6f, 1e-6f);
    ck_assert_float_eq_tol(c.gen_top_p, 0.9f, 1e-6f);
    ck_assert_int_eq(c.gen_top_k, 40);
}
END_TEST

START_TEST(bos_comes_from_generation_config_when_config_has_none)
{
    struct model_config c;

    parse_ok(&c, "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":512,\"hidden_size\":64,"
                 "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4}",
             "{\"bos_token_id\":7,\"eos_token_id\":9}");
    ck_assert_int_eq(c.bos_token_id, 7);
    ck_assert_int_eq(c.num_eos_token_ids, 1);
    ck_assert_int_eq(c.eos_token_ids[0], 9);
    parse_ok(&c, "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":512,\"hidden_size\":64,"
                 "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4}", NULL);
    ck_assert_int_eq(c.bos_token_id, -1);
    ck_assert_int_eq(c.num_eos_token_ids, 0);
}
END_TEST

START_TEST(model_type_stands_in_for_missing_architectures)
{
    struct model_config c;

    parse_ok(&c, "{\"model_type\":\"qwen2\",\"vocab_size\":512,\"hidden_size\":64,"
                 "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4}", NULL);
    ck_assert_int_eq(c.arch, ARCH_QWEN2);
    ck_assert_str_eq(model_arch_name(ARCH_QWEN3), "Qwen3ForCausalLM");
    ck_assert_str_eq(model_arch_name(ARCH_MISTRAL), "MistralForCausalLM");
}
END_TEST

/* ---- validation: "<path>: <field>: <problem>" ---- */

/* `first` goes before a valid tiny config; cJSON takes the first of repeated keys. */
static void check_refused(const char *first, const char *gen, const char *where,
                          const char *fragment, int line)
{
    struct model_config c;
    char json[1024], err[ERR_LEN] = "";

    snprintf(json, sizeof json, "{%s%s\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":512,"
             "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
             "\"num_attention_heads\":4,\"num_key_value_heads\":2}", first, *first ? "," : "");
    ck_assert_msg(parse2(&c, json, gen, err) == -EINVAL, "line %d: accepted %s", line, first);
    ck_assert_msg(strstr(err, where), "line %d: '%s' lacks '%s'", line, err, where);
    ck_assert_msg(strstr(err, fragment), "line %d: '%s' lacks '%s'", line, err, fragment);
}
#define REFUSED(first, where, fragment) check_refused(first, NULL, where, fragment, __LINE__)

START_TEST(every_bad_field_is_refused_with_file_field_and_problem)
{
    REFUSED("\"architectures\":[\"GPT2LMHeadModel\"]", PATH ": architectures: ",
            "GPT2LMHeadModel' (supported: LlamaForCausalLM, Qwen2ForCausalLM");
    REFUSED("\"architectures\":\"LlamaForCausalLM\"", PATH ": architectures: ", "list of strings");
    REFUSED("\"hidden_size\":0", PATH ": hidden_size: ", "0 is out of range");
    REFUSED("\"hidden_size\":-64", PATH ": hidden_size: ", "out of range");
    REFUSED("\"hidden_size\":\"64\"", PATH ": hidden_size: ", "expected an integer, got a string");
    REFUSED("\"vocab_size\":512.5", PATH ": vocab_size: ", "expected an integer");
    REFUSED("\"intermediate_size\":[128]", PATH ": intermediate_size: ", "got an array");
    REFUSED("\"num_attention_heads\":6,\"num_key_value_heads\":4", PATH ": num_attention_heads: ",
            "6 is not a multiple of num_key_value_heads 4");
    REFUSED("\"num_key_value_heads\":0", PATH ": num_key_value_heads: ", "out of range");
    REFUSED("\"head_dim\":15", PATH ": head_dim: ", "15 is odd");
    REFUSED("\"hidden_size\":66,\"num_attention_heads\":4", PATH ": head_dim: ",
            "missing, and hidden_size 66");
    REFUSED("\"num_hidden_layers\":300", PATH ": num_hidden_layers: ", "300 is out of range [1, 256]");
    REFUSED("\"max_position_embeddings\":0", PATH ": max_position_embeddings: ", "out of range");
    REFUSED("\"rms_norm_eps\":-1", PATH ": rms_norm_eps: ", "must be > 0");
    REFUSED("\"rope_theta\":0", PATH ": rope_theta: ", "must be > 0");
    REFUSED("\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0}", PATH ": rope_scaling.rope_type: ",
            "'yarn' is not supported (supported: default, linear, llama3; longrope for Phi-3, yarn for gpt-oss)");
    REFUSED("\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2.0}", PATH ": rope_scaling.rope_type: ",
            "'dynamic'");
    REFUSED("\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"high_freq_factor\":4.0,"
            "\"original_max_position_embeddings\":8192}", PATH ": rope_scaling.low_freq_factor: ",
            "missing");
    REFUSED("\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":4.0,"
            "\"high_freq_factor\":1.0,\"original_max_position_embeddings\":8192}",
            PATH ": rope_scaling.high_freq_factor: ", "greater than low_freq_factor");
    REFUSED("\"rope_scaling\":{\"rope_type\":\"linear\"}", PATH ": rope_scaling.factor: ", "missing");
    REFUSED("\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":\"2\"}", PATH ": rope_scaling.factor: ",
            "expected a number");
    REFUSED("\"rope_scaling\":3", PATH ": rope_scaling: ", "expected an object");
    REFUSED("\"rope_scaling\":{\"rope_type\":5}", PATH ": rope_scaling.rope_type: ", "expected a string");
    REFUSED("\"rope_parameters\":{\"rope_type\":\"longrope\",\"rope_theta\":1e4}",
            PATH ": rope_parameters.rope_type: ", "'longrope'");
    REFUSED("\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":-5}",
            PATH ": rope_parameters.rope_theta: ", "must be > 0");
    REFUSED("\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"default\"}}",
            PATH ": rope_parameters.full_attention: ", "per-layer-type");
    REFUSED("\"torch_dtype\":\"int8\"", PATH ": torch_dtype: ", "'int8' is not supported");
    REFUSED("\"dtype\":16", PATH ": dtype: ", "expected a string");
    REFUSED("\"tie_word_embeddings\":\"yes\"", PATH ": tie_word_embeddings: ", "expected true or false");
    REFUSED("\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4}",
            PATH ": quantization_config: ", "quant_method 'gptq' is not supported");
    REFUSED("\"hidden_act\":\"gelu\"", PATH ": hidden_act: ", "'gelu' is not supported");
    REFUSED("\"attention_bias\":true", PATH ": attention_bias: ", "o_proj bias");
    REFUSED("\"mlp_bias\":true", PATH ": mlp_bias: ", "not supported");
    REFUSED("\"eos_token_id\":512", PATH ": eos_token_id: ", "[0, 512)");
    REFUSED("\"eos_token_id\":[1,\"2\"]", PATH ": eos_token_id: ", "token ids");
    REFUSED("\"eos_token_id\":[1,2,3,4,5,6,7,8,9]", PATH ": eos_token_id: ", "more than 8");
    REFUSED("\"bos_token_id\":512", PATH ": bos_token_id: ", "512 is out of range");
    REFUSED("\"layer_types\":[\"full_attention\"]", PATH ": layer_types: ", "1 entries for 2 layers");
    REFUSED("\"layer_types\":[\"full_attention\",\"chunked_attention\"],\"sliding_window\":8",
            PATH ": layer_types[1]: ", "full_attention");
    REFUSED("\"layer_types\":[\"full_attention\",\"sliding_attention\"]", PATH ": sliding_window: ",
            "missing or null");
    REFUSED("\"layer_types\":\"full_attention\"", PATH ": layer_types: ", "list of strings");
    REFUSED("\"sliding_window\":-1,\"architectures\":[\"MistralForCausalLM\"]", PATH ": sliding_window: ",
            "out of range");
}
END_TEST

START_TEST(qwen3_attention_bias_is_refused_but_qwen2_always_has_bias)
{
    struct model_config c;
    char err[ERR_LEN] = "";
    const char *q3 = "{\"attention_bias\":true,\"architectures\":[\"Qwen3ForCausalLM\"],\"vocab_size\":512,"
                     "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                     "\"num_attention_heads\":4}";

    ck_assert_int_eq(parse2(&c, q3, NULL, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, PATH ": attention_bias: "));
    ck_assert_ptr_nonnull(strstr(err, "Qwen3ForCausalLM"));
}
END_TEST

START_TEST(broken_json_and_missing_fields_are_refused)
{
    struct model_config c;
    char err[ERR_LEN] = "";

    ck_assert_int_eq(parse2(&c, "{\"vocab_size\":", NULL, err), -EINVAL);
    ck_assert_str_eq(err, PATH ": not valid JSON");
    ck_assert_int_eq(parse2(&c, "[1]", NULL, err), -EINVAL);
    ck_assert_str_eq(err, PATH ": not a JSON object");
    ck_assert_int_eq(parse2(&c, "{\"vocab_size\":512}", NULL, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, PATH ": architectures: missing (supported: "));
    ck_assert_int_eq(parse2(&c, "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":512,"
                                "\"intermediate_size\":128,\"num_hidden_layers\":2,"
                                "\"num_attention_heads\":4}", NULL, err), -EINVAL);
    ck_assert_str_eq(err, PATH ": hidden_size: missing");
}
END_TEST

START_TEST(bad_generation_config_is_named)
{
    check_refused("", "{\"temperature\":\"hot\"}", "m/generation_config.json: temperature: ",
                  "expected a number", __LINE__);
    check_refused("", "{\"top_p\":1.5}", "m/generation_config.json: top_p: ", "(0, 1]", __LINE__);
    check_refused("", "{\"top_k\":-1}", "m/generation_config.json: top_k: ", "out of range", __LINE__);
    check_refused("", "{\"eos_token_id\":[1,600]}", "m/generation_config.json: eos_token_id: ",
                  "[0, 512)", __LINE__);
    check_refused("", "[]", "m/generation_config.json", "not a JSON object", __LINE__);
}
END_TEST

Suite *model_config_suite(void)
{
    Suite *s = suite_create("model_config");
    TCase *cfg = tcase_create("config");

    tcase_add_test(cfg, llama_3_1_8b_config_gives_llama3_rope_and_three_eos);
    tcase_add_test(cfg, llama_2_config_uses_defaults_for_absent_fields);
    tcase_add_test(cfg, transformers_5_style_with_rope_parameters_and_dtype);
    tcase_add_test(cfg, rope_scaling_type_may_be_spelled_type_and_linear_reads_factor);
    tcase_add_test(cfg, head_dim_may_differ_from_hidden_over_heads);
    tcase_add_test(cfg, qwen2_has_qkv_bias_and_no_window_unless_enabled);
    tcase_add_test(cfg, qwen_sliding_window_applies_from_max_window_layers_on);
    tcase_add_test(cfg, qwen3_has_qk_norm_and_head_dim_128_by_default);
    tcase_add_test(cfg, mistral_window_applies_to_every_layer);
    tcase_add_test(cfg, layer_types_give_per_layer_windows);
    tcase_add_test(cfg, eos_ids_merge_with_generation_config_without_repeats);
    tcase_add_test(cfg, bos_comes_from_generation_config_when_config_has_none);
    tcase_add_test(cfg, model_type_stands_in_for_missing_architectures);
    tcase_add_test(cfg, every_bad_field_is_refused_with_file_field_and_problem);
    tcase_add_test(cfg, qwen3_attention_bias_is_refused_but_qwen2_always_has_bias);
    tcase_add_test(cfg, broken_json_and_missing_fields_are_refused);
    tcase_add_test(cfg, bad_generation_config_is_named);
    suite_add_tcase(s, cfg);
    return s;
}

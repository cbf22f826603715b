/* test_model_phi3.c — Phi-3 folders: config.json as published (Phi-3-mini-4k with its sliding
 * window, Phi-3-mini-128k's LongRoPE, Phi-4-mini's partial rotary factor), LongRoPE's
 * attention factor as transformers derives it, what is refused; and gen-model's tiny-phi3
 * binds qkv_proj and gate_up_proj fused as published. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/model/model.h"
#include "fixtures.h"

#define PATH FIXTURE_CONFIG_PATH

static const char phi3_mini_4k[] =
    "{\"architectures\":[\"Phi3ForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"bos_token_id\":1,\"embd_pdrop\":0.0,\"eos_token_id\":32000,\"hidden_act\":\"silu\","
    "\"hidden_size\":3072,\"initializer_range\":0.02,\"intermediate_size\":8192,"
    "\"max_position_embeddings\":4096,\"model_type\":\"phi3\",\"num_attention_heads\":32,"
    "\"num_hidden_layers\":32,\"num_key_value_heads\":32,\"original_max_position_embeddings\":4096,"
    "\"pad_token_id\":32000,\"resid_pdrop\":0.0,\"rms_norm_eps\":1e-05,\"rope_scaling\":null,"
    "\"rope_theta\":10000.0,\"sliding_window\":2047,\"tie_word_embeddings\":false,"
    "\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.40.2\",\"use_cache\":true,"
    "\"vocab_size\":32064}";

/* A config with LongRoPE factors of n entries each ("%s" takes the rest of the config). */
static void longrope_config(char *out, size_t len, const char *type, int n_short, int n_long,
                            const char *rest)
{
    char s[2048] = "", l[2048] = "";

    for (int i = 0; i < n_short; i++)
        snprintf(s + strlen(s), sizeof s - strlen(s), "%s%.3f", i ? "," : "", 1.0 + 0.01 * i);
    for (int i = 0; i < n_long; i++)
        snprintf(l + strlen(l), sizeof l - strlen(l), "%s%.3f", i ? "," : "", 1.5 + 0.5 * i);
    snprintf(out, len, "{\"rope_scaling\":{\"long_factor\":[%s],\"short_factor\":[%s],"
             "\"type\":\"%s\"},%s", l, s, type, rest + 1);
}

START_TEST(phi3_mini_4k_slides_every_layer_and_turns_every_dim)
{
    struct model_config c;

    fixture_config_ok(&c, phi3_mini_4k);
    ck_assert_int_eq(c.arch, ARCH_PHI3);
    ck_assert_int_eq(c.head_dim, 96);
    ck_assert_int_eq(c.rotary_dim, 96);
    ck_assert_int_eq(c.rope_scaling.type, ROPE_DEFAULT);
    ck_assert_int_eq(c.vocab_size, 32064);
    for (int l = 0; l < 32; l++)
        ck_assert_int_eq(c.layer_window[l], 2047);
    ck_assert_int_eq(c.num_kv_groups, 1);
}
END_TEST

START_TEST(phi3_mini_128k_longrope_derives_its_attention_factor)
{
    struct model_config c;
    char base[2048], json[8192];

    /* Phi-3-mini-128k: 131072 positions over an original 4096, factors for 96 / 2 dims */
    snprintf(base, sizeof base, "%s", phi3_mini_4k);
    *strstr(base, "\"max_position_embeddings\":4096") = '\0';
    snprintf(base + strlen(base), sizeof base - strlen(base), "\"max_position_embeddings\":131072%s",
             strstr(phi3_mini_4k, ",\"model_type\""));
    for (int i = 0; i < 2; i++) {
        longrope_config(json, sizeof json, i ? "su" : "longrope", 48, 48, base);
        fixture_config_ok(&c, json);
        ck_assert_int_eq(c.rope_scaling.type, ROPE_LONGROPE);
        ck_assert_int_eq(c.rope_scaling.num_factors, 48);
        ck_assert_float_eq_tol(c.rope_scaling.short_factor[10], 1.10f, 1e-6f);
        ck_assert_float_eq_tol(c.rope_scaling.long_factor[2], 2.5f, 1e-6f);
        ck_assert_int_eq(c.rope_scaling.original_max_position_embeddings, 4096);
        ck_assert_double_eq_tol(c.rope_scaling.factor, 32.0, 1e-12);
        /* sqrt(1 + ln 32 / ln 4096) */
        ck_assert_double_eq_tol(c.rope_scaling.attention_factor, sqrt(1.0 + log(32.0) / log(4096.0)),
                                1e-12);
    }
}
END_TEST

START_TEST(phi4_mini_partial_rotary_factor_turns_three_quarters_of_each_head)
{
    struct model_config c;
    char json[8192];
    const char *phi4 =
        "{\"architectures\":[\"Phi3ForCausalLM\"],\"hidden_size\":3072,\"intermediate_size\":8192,"
        "\"max_position_embeddings\":131072,\"model_type\":\"phi3\",\"num_attention_heads\":24,"
        "\"num_hidden_layers\":32,\"num_key_value_heads\":8,\"original_max_position_embeddings\":4096,"
        "\"partial_rotary_factor\":0.75,\"rope_theta\":10000.0,\"sliding_window\":262144,"
        "\"tie_word_embeddings\":true,\"vocab_size\":200064}";

    longrope_config(json, sizeof json, "longrope", 48, 48, phi4);
    fixture_config_ok(&c, json);
    ck_assert_int_eq(c.head_dim, 128);
    ck_assert_int_eq(c.rotary_dim, 96);
    ck_assert_int_eq(c.rope_scaling.num_factors, 48);
    ck_assert(c.tie_word_embeddings);
    /* without original_max_position_embeddings, Phi3Config's 4096 */
    *strstr(json, "\"original_max_position_embeddings\":4096,") = '\0';
    strcat(json, strstr(phi4, "\"partial_rotary_factor\""));
    fixture_config_ok(&c, json);
    ck_assert_int_eq(c.rope_scaling.original_max_position_embeddings, 4096);
    ck_assert_double_eq_tol(c.rope_scaling.factor, 32.0, 1e-12);
}
END_TEST

START_TEST(phi3_rope_it_does_not_implement_is_refused_with_file_and_field)
{
    struct model_config c;
    char json[8192], err[ERR_LEN] = "";

    longrope_config(json, sizeof json, "longrope", 47, 48, phi3_mini_4k);
    ck_assert_int_eq(fixture_config_parse(&c, json, err), -EINVAL);
    ck_assert_str_eq(err, PATH ": rope_scaling.short_factor: 47 numbers, expected 48 (rotary dims / 2)");
    longrope_config(json, sizeof json, "longrope", 48, 0, phi3_mini_4k);
    ck_assert_int_eq(fixture_config_parse(&c, json, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "rope_scaling.long_factor: 0 numbers, expected 48"));
    longrope_config(json, sizeof json, "yarn", 48, 48, phi3_mini_4k);
    ck_assert_int_eq(fixture_config_parse(&c, json, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, PATH ": rope_scaling.rope_type: 'yarn' is not supported"));
    snprintf(json, sizeof json, "{\"partial_rotary_factor\":0.01,%s", phi3_mini_4k + 1);
    ck_assert_int_eq(fixture_config_parse(&c, json, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, PATH ": partial_rotary_factor: 0.01 of head_dim 96 gives 0"));
    snprintf(json, sizeof json, "{\"partial_rotary_factor\":1.5,%s", phi3_mini_4k + 1);
    ck_assert_int_eq(fixture_config_parse(&c, json, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, PATH ": partial_rotary_factor: must be in (0, 1]"));
    /* Llama has no partial rotary and no longrope: refused rather than ignored */
    ck_assert_int_eq(fixture_config_parse(&c, "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":8,"
                               "\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                               "\"num_attention_heads\":4,\"partial_rotary_factor\":0.5}", err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "partial_rotary_factor: below 1 is supported for Phi-3 only"));
    ck_assert_int_eq(fixture_config_parse(&c, "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":8,"
                               "\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                               "\"num_attention_heads\":4,\"rope_scaling\":{\"type\":\"longrope\"}}",
                     err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "'longrope' is not supported"));
}
END_TEST

START_TEST(generated_tiny_phi3_binds_fused_qkv_and_gate_up)
{
    struct model m;
    char dir[FIXTURE_PATH], err[ERR_LEN] = "";

    ck_assert_int_eq(fixture_tmpdir(dir), 0);
    ck_assert_int_eq(fixture_gen(dir, "tiny-phi3", 1), 0);
    ck_assert_msg(model_open(&m, dir, err) == 0, "%s", err);
    ck_assert_int_eq(m.cfg.arch, ARCH_PHI3);
    for (int l = 0; l < m.cfg.num_layers; l++) {
        const struct layer_tensors *t = &m.layers[l];

        ck_assert_ptr_null(t->q.data);
        ck_assert_ptr_null(t->gate.data);
        ck_assert_int_eq(t->qkv.shape[0], (4 + 2 * 2) * 16);
        ck_assert_int_eq(t->qkv.shape[1], 64);
        ck_assert_int_eq(t->gate_up.shape[0], 2 * 128);
        ck_assert_ptr_nonnull(strstr(t->qkv.name, "self_attn.qkv_proj.weight"));
    }
    ck_assert_int_eq(m.cfg.rope_scaling.type, ROPE_LONGROPE);
    ck_assert_int_eq(m.cfg.rotary_dim, 12);
    model_close(&m);
    fixture_rmtree(dir);
}
END_TEST

Suite *model_phi3_suite(void)
{
    Suite *s = suite_create("model_phi3");
    TCase *tc = tcase_create("phi3");

    tcase_add_unchecked_fixture(tc, fixture_quiet, fixture_loud);
    tcase_add_test(tc, phi3_mini_4k_slides_every_layer_and_turns_every_dim);
    tcase_add_test(tc, phi3_mini_128k_longrope_derives_its_attention_factor);
    tcase_add_test(tc, phi4_mini_partial_rotary_factor_turns_three_quarters_of_each_head);
    tcase_add_test(tc, phi3_rope_it_does_not_implement_is_refused_with_file_and_field);
    tcase_add_test(tc, generated_tiny_phi3_binds_fused_qkv_and_gate_up);
    suite_add_tcase(s, tc);
    return s;
}

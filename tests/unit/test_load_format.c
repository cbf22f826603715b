/* test_load_format.c — --load-format dummy (vLLM's name): a folder with config.json and a
 * tokenizer but no weights (gen-model --no-weights) opens with random ones of the config's shapes and dtype, the same
 * bytes for the same seed; under --quantization fp8 the linear layers' come as F8_E4M3 with a
 * scale a row; the engine runs it on the cpu backend and `osprey generate` too; a folder
 * without weights is refused without it; quantized configs and unknown formats are refused
 * with one line each, and a MoE one opens (test_dummy_moe.c runs them). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "engine/base/util.h"
#include "engine/engine.h"
#include "engine/model/gen_model.h"
#include "engine/model/model.h"
#include "tests/integration/it_util.h"   /* it_run, daemon_bin */
#include "tests/unit/fixtures.h"

static char root[FIXTURE_PATH], dir[FIXTURE_PATH + 16];

/* A tiny model folder without weights (gen-model --no-weights): config.json, tokenizer. */
static void setup(void)
{
    struct gen_model_opts o = { .config = "tiny-qwen2", .seed = 3, .no_weights = true };
    char path[FIXTURE_PATH + 64], err[ERR_LEN] = "";

    ck_assert_int_eq(fixture_tmpdir(root), 0);
    snprintf(dir, sizeof dir, "%s/m", root);
    o.out_dir = dir;
    ck_assert_msg(gen_model_write(&o, NULL, err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_int_ne(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    ck_assert_int_eq(access(path, F_OK), 0);
}

static void teardown(void)
{
    fixture_rmtree(root);
}

START_TEST(a_folder_without_weights_opens_with_random_ones_of_the_config_s_shapes)
{
    struct model m, m2;
    char err[ERR_LEN] = "";
    const struct model_config *c;
    int64_t qd, kvd;

    ck_assert_int_ne(model_open(&m, dir, err), 0);
    ck_assert_msg(strstr(err, "no model.safetensors"), "%s", err);
    ck_assert_msg(model_open_dummy(&m, dir, 7, false, err) == 0, "%s", err);
    c = &m.cfg;
    qd = (int64_t)c->num_heads * c->head_dim;
    kvd = (int64_t)c->num_kv_heads * c->head_dim;
    ck_assert_int_eq(m.embed.dtype, DT_BF16);
    ck_assert_int_eq(m.embed.shape[0], c->vocab_size);
    ck_assert_int_eq(m.embed.shape[1], c->hidden_size);
    ck_assert_int_eq(m.layers[1].q.shape[0], qd);
    ck_assert_int_eq(m.layers[1].k.shape[0], kvd);
    ck_assert_int_eq(m.layers[1].down.shape[0], c->hidden_size);
    ck_assert_int_eq(m.layers[1].down.shape[1], c->intermediate_size);
    ck_assert_int_eq(m.layers[0].q_bias.shape[0], qd);   /* Qwen2's biases too */
    ck_assert_ptr_nonnull(m.layers[0].q_bias.data);
    ck_assert_ptr_null(m.layers[0].q.scale);
    /* norms neutral (1), weights small and not all equal */
    ck_assert_float_eq(bf16_to_f32(((const uint16_t *)m.final_norm.data)[0]), 1.0f);
    {
        const uint16_t *w = m.layers[0].o.data;
        float lo = 1, hi = -1;
        for (int i = 0; i < 4096; i++) {
            lo = fminf(lo, bf16_to_f32(w[i]));
            hi = fmaxf(hi, bf16_to_f32(w[i]));
        }
        ck_assert_msg(lo < -0.01f && hi > 0.01f && lo > -0.2f && hi < 0.2f, "%g..%g", lo, hi);
    }
    /* the same seed, the same bytes */
    ck_assert_msg(model_open_dummy(&m2, dir, 7, false, err) == 0, "%s", err);
    ck_assert_int_eq(memcmp(m.layers[1].o.data, m2.layers[1].o.data, m.layers[1].o.nbytes), 0);
    model_close(&m2);
    model_close(&m);
}
END_TEST

START_TEST(under_fp8_the_linear_weights_come_as_e4m3_with_a_scale_a_row)
{
    struct model m;
    char err[ERR_LEN] = "";

    ck_assert_msg(model_open_dummy(&m, dir, 7, true, err) == 0, "%s", err);
    ck_assert_int_eq(m.layers[0].gate.dtype, DT_F8_E4M3);
    ck_assert_ptr_nonnull(m.layers[0].gate.scale);
    ck_assert_int_eq(m.layers[0].gate.scale_block[0], 1);
    ck_assert_int_eq(m.layers[0].gate.scale_block[1], m.cfg.hidden_size);
    ck_assert_int_eq(m.layers[0].gate.nbytes, (size_t)m.cfg.intermediate_size * m.cfg.hidden_size);
    ck_assert_float_gt(model_scale_at(m.layers[0].gate.scale, m.cfg.intermediate_size - 1), 0.0f);
    ck_assert_int_eq(m.embed.dtype, DT_BF16);      /* not a linear layer: stays float */
    ck_assert_int_eq(m.layers[0].q_bias.dtype, DT_BF16);
    model_close(&m);
}
END_TEST

START_TEST(the_engine_runs_a_dummy_model_and_generate_takes_the_flag)
{
    struct engine_options o;
    struct engine *e = NULL;
    char err[ERR_LEN] = "", cmd[3 * FIXTURE_PATH], *out = NULL;

    for (int q = 0; q < 2; q++) {
        engine_options_init(&o);
        o.model_dir = dir;
        o.backend = "cpu";
        o.num_threads = 1;
        o.kv_cache_bytes = 1 << 20;
        o.max_model_len = 256;
        o.dummy_weights = true;
        o.quantization = q ? "fp8" : NULL;
        ck_assert_msg(engine_create(&e, &o, err) == 0, "%s", err);
        engine_destroy(e);
    }
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --backend cpu --threads 1 "
             "--load-format dummy --quantization fp8 --prompt-ids '[5, 77]' --max-tokens 4 "
             "--ignore-eos --ids", daemon_bin(), dir);
    ck_assert_msg(it_run(cmd, &out) == 0, "%s", out);
    ck_assert_msg(strstr(out, "quantized to fp8 at load") && strchr(out, '['), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --load-format pt --prompt-ids '[5]'",
             daemon_bin(), dir);
    ck_assert_int_ne(it_run(cmd, &out), 0);
    ck_assert_msg(strstr(out, "--load-format: \"pt\" is not one of auto, safetensors, dummy"),
                  "%s", out);
    free(out);
}
END_TEST

START_TEST(quantized_configs_and_unknown_formats_are_refused_and_moe_opens)
{
    static const char quantized[] =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 128,"
        " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
        " \"vocab_size\": 512, \"max_position_embeddings\": 256, \"torch_dtype\": \"bfloat16\","
        " \"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e4m3\","
        " \"activation_scheme\": \"dynamic\", \"weight_block_size\": [128, 128]}}";
    char moe_dir[FIXTURE_PATH + 16], err[ERR_LEN] = "";
    struct osprey_config c;
    char *argv[] = { "serve", "--model", "/m", "--load-format", "gguf", NULL };
    struct model m;

    ck_assert_int_eq(fixture_write(dir, "config.json", quantized, sizeof quantized - 1), 0);
    ck_assert_int_ne(model_open_dummy(&m, dir, 0, false, err), 0);
    ck_assert_msg(strstr(err, "--load-format dummy: config.json declares a fp8 block-wise "
                         "quantization_config"), "%s", err);
    /* MoE models open since issue 11 (test_dummy_moe.c) */
    snprintf(moe_dir, sizeof moe_dir, "%s/moe", root);
    ck_assert_int_eq(fixture_gen(moe_dir, "tiny-mixtral", 1), 0);
    ck_assert_msg(model_open_dummy(&m, moe_dir, 0, false, err) == 0, "%s", err);
    model_close(&m);
    config_init(&c);
    ck_assert_int_ne(config_load(&c, 5, argv, (char *[]){ NULL }, err), 0);
    ck_assert_msg(strstr(err, "--load-format: \"gguf\" is not one of auto, safetensors, dummy"),
                  "%s", err);
    config_fini(&c);
}
END_TEST

Suite *load_format_suite(void)
{
    Suite *s = suite_create("load_format");
    TCase *tc = tcase_create("dummy");

    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, a_folder_without_weights_opens_with_random_ones_of_the_config_s_shapes);
    tcase_add_test(tc, under_fp8_the_linear_weights_come_as_e4m3_with_a_scale_a_row);
    tcase_add_test(tc, the_engine_runs_a_dummy_model_and_generate_takes_the_flag);
    tcase_add_test(tc, quantized_configs_and_unknown_formats_are_refused_and_moe_opens);
    suite_add_tcase(s, tc);
    return s;
}

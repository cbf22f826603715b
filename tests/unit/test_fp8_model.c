/* test_fp8_model.c — FP8 checkpoints and the fp8 KV cache end to end on the CPU backend:
 * quantization_config in both published styles (and every other method refused by name),
 * tiny models written by gen-model --quantize fp8-block / fp8-channel whose logits must equal
 * those of the same weights dequantized by tests/unit/fp8_ref.c (independent code) into a
 * plain f32 checkpoint, and stay within a stated bound of a bf16 one; broken checkpoints
 * refused with one line naming the tensor; `osprey generate` on them; the fp8 KV cache close
 * to the bf16 one and holding twice its tokens; --quantization fp8 at load; unimplemented
 * options refused at engine creation, and none of the fp8 ones on the CUDA backend; /metrics naming the cache; Phi-3's
 * fused weights quantized, and quantized MoE checkpoints refused. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/model/gen_model.h"
#include "engine/model/model.h"
#include "engine/runner.h"
#include "engine/weights.h"
#include "scheduler/batch.h"
#include "server/metrics.h"
#include "tests/unit/fixtures.h"
#include "tests/unit/fp8_ref.h"
#include "tests/unit/prompt_logits.h"

#define PROMPT PROMPT_TOKENS
/* Greedy agreement asked of the approximate comparisons, teacher-forced over PROMPT positions.
 * The tiny random model's logits are nearly flat (range ~0.65 over 512 ids, top-2 gaps of a
 * few 1e-3), so a small error flips some argmaxes: the logit bound is the real measure. */
#define AGREE_MIN 36

static char root[FIXTURE_PATH], dir_bf16[FIXTURE_PATH + 32], dir_block[FIXTURE_PATH + 32],
            dir_channel[FIXTURE_PATH + 32];

static void gen(const char *dir, const char *quantize, int block)
{
    struct gen_model_opts o = { .config = "tiny", .out_dir = dir, .seed = 5,
                                .quantize = quantize, .quant_block = block };
    char err[ERR_LEN] = "";

    ck_assert_msg(gen_model_write(&o, NULL, err) == 0, "gen-model: %s", err);
}

static void setup(void)
{
    ck_assert_int_eq(fixture_tmpdir(root), 0);
    snprintf(dir_bf16, sizeof dir_bf16, "%s/bf16", root);
    snprintf(dir_block, sizeof dir_block, "%s/block", root);
    snprintf(dir_channel, sizeof dir_channel, "%s/channel", root);
    gen(dir_bf16, NULL, 0);
    /* blocks of 24 over 64- and 32-row, 64- and 128-column weights: partial last blocks */
    gen(dir_block, "fp8-block", 24);
    gen(dir_channel, "fp8-channel", 0);
}

static void teardown(void)
{
    fixture_rmtree(root);
}

static char *sub(const char *name)
{
    static char paths[8][FIXTURE_PATH + 64];
    static int next;
    char *p = paths[next++ % 8];

    snprintf(p, FIXTURE_PATH + 64, "%s/%s", root, name);
    return p;
}

struct diff {
    double max_abs;     /* max |a - b| over all logits */
    double range;       /* max |b| */
    int argmax_agree;   /* positions whose greedy token is the same */
};

static struct diff compare(const float *a, const float *b, int vocab)
{
    struct diff d = { 0, 0, 0 };

    for (int t = 0; t < PROMPT; t++) {
        int ia = 0, ib = 0;

        for (int v = 0; v < vocab; v++) {
            size_t i = (size_t)t * vocab + v;

            d.max_abs = fmax(d.max_abs, fabs((double)a[i] - b[i]));
            d.range = fmax(d.range, fabs((double)b[i]));
            ia = a[i] > a[(size_t)t * vocab + ia] ? v : ia;
            ib = b[i] > b[(size_t)t * vocab + ib] ? v : ib;
        }
        d.argmax_agree += ia == ib;
    }
    return d;
}

static struct diff compare_dirs(const char *a, struct prompt_opts ra, const char *b,
                                struct prompt_opts rb)
{
    int va, vb;
    float *la = prompt_logits(a, ra, &va), *lb = prompt_logits(b, rb, &vb);
    struct diff d;

    ck_assert_int_eq(va, vb);
    d = compare(la, lb, va);
    free(la);
    free(lb);
    return d;
}

static const struct prompt_opts plain = { DT_F32, false, false, NULL };

/* ---- quantization_config ---- */

static int parse_with(const char *qc, struct model_config *c, char *err)
{
    char json[2048];

    snprintf(json, sizeof json, "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":512,"
             "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
             "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"quantization_config\":%s}", qc);
    return model_config_parse(c, json, strlen(json), NULL, 0, "m/config.json", err);
}

static void refused(const char *qc, const char *fragment)
{
    struct model_config c;
    char err[ERR_LEN] = "";

    ck_assert_msg(parse_with(qc, &c, err) == -EINVAL, "accepted %s", qc);
    ck_assert_msg(strstr(err, "m/config.json: quantization_config"), "'%s'", err);
    ck_assert_msg(strstr(err, fragment), "'%s' lacks '%s'", err, fragment);
}

START_TEST(both_published_fp8_configs_parse_and_other_methods_are_refused_by_name)
{
    struct model_config c;
    char err[ERR_LEN] = "";

    ck_assert_msg(parse_with("{\"quant_method\":\"fp8\",\"fmt\":\"e4m3\",\"activation_scheme\":"
                             "\"dynamic\",\"weight_block_size\":[128,128]}", &c, err) == 0, "%s", err);
    ck_assert_int_eq(c.quant, QUANT_FP8_BLOCK);
    ck_assert_int_eq(c.quant_block[0], 128);
    ck_assert_int_eq(c.quant_block[1], 128);
    ck_assert_int_eq(parse_with("{\"quant_method\":\"fp8\",\"activation_scheme\":\"static\"}",
                                &c, err), 0);
    ck_assert_int_eq(c.quant, QUANT_FP8_TENSOR);
    ck_assert_int_eq(parse_with("{\"quant_method\":\"compressed-tensors\",\"format\":"
        "\"float-quantized\",\"config_groups\":{\"group_0\":{\"weights\":{\"type\":\"float\","
        "\"num_bits\":8,\"strategy\":\"channel\"},\"input_activations\":{\"dynamic\":true,"
        "\"strategy\":\"token\"},\"targets\":[\"Linear\"]}},\"ignore\":[\"lm_head\"]}", &c, err), 0);
    ck_assert_int_eq(c.quant, QUANT_FP8_CHANNEL);
    ck_assert_int_eq(parse_with("{\"quant_method\":\"compressed-tensors\",\"format\":"
        "\"float-quantized\",\"config_groups\":{\"group_0\":{\"weights\":{\"type\":\"float\","
        "\"num_bits\":8,\"strategy\":\"tensor\"},\"input_activations\":{\"dynamic\":false,"
        "\"strategy\":\"tensor\"},\"targets\":[\"Linear\"]}}}", &c, err), 0);
    ck_assert_int_eq(c.quant, QUANT_FP8_TENSOR);
    ck_assert_int_eq(parse_with("null", &c, err), 0);
    ck_assert_int_eq(c.quant, QUANT_NONE);

    refused("{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":128}",
            "quant_method 'gptq' is not supported (osprey reads fp8");
    refused("{\"quant_method\":\"awq\",\"bits\":4}", "quant_method 'awq' is not supported");
    refused("{\"quant_method\":\"bitsandbytes\",\"load_in_4bit\":true}",
            "quant_method 'bitsandbytes' is not supported");
    refused("{\"quant_method\":\"compressed-tensors\",\"format\":\"int-quantized\","
            "\"config_groups\":{\"group_0\":{\"weights\":{\"type\":\"int\",\"num_bits\":8,"
            "\"strategy\":\"channel\"}}}}", "format 'int-quantized' is not supported");
    refused("{\"quant_method\":\"compressed-tensors\",\"format\":\"float-quantized\","
            "\"config_groups\":{\"group_0\":{\"weights\":{\"type\":\"int\",\"num_bits\":8,"
            "\"strategy\":\"channel\"}}}}", "int weights of 8 bits are not supported");
    refused("{\"quant_method\":\"compressed-tensors\",\"format\":\"float-quantized\","
            "\"config_groups\":{\"group_0\":{\"weights\":{\"type\":\"float\",\"num_bits\":8,"
            "\"strategy\":\"block\"}}}}", "strategy: 'block' is not supported (channel, tensor)");
    refused("{\"quant_method\":\"compressed-tensors\",\"format\":\"float-quantized\","
            "\"config_groups\":{\"a\":{},\"b\":{}}}", "exactly one group, got 2");
    refused("{\"quant_method\":\"fp8\",\"fmt\":\"e5m2\"}", "fmt: 'e5m2' is not supported");
    refused("{\"quant_method\":\"fp8\",\"weight_block_size\":[128]}", "expected two integers");
    refused("{\"quant_method\":\"fp8\",\"weight_block_size\":[128,0]}", "weight_block_size[1]");
    refused("{\"bits\":4}", "quant_method string");
}
END_TEST

/* ---- FP8 checkpoints against their independent dequantization ---- */

START_TEST(fp8_checkpoints_give_the_logits_of_their_independent_dequantization)
{
    const char *dirs[2] = { dir_block, dir_channel }, *names[2] = { "block", "channel" };

    for (int i = 0; i < 2; i++) {
        char *ref32 = sub(i ? "ref32-channel" : "ref32-block");
        char *ref16 = sub(i ? "ref16-channel" : "ref16-block");
        struct diff exact, near, orig;

        ck_assert_int_eq(fp8_ref_dequantize(dirs[i], ref32, DT_F32), 0);
        ck_assert_int_eq(fp8_ref_dequantize(dirs[i], ref16, DT_BF16), 0);
        /* f32 holds code * scale exactly and the matmul sums in the same order: the loader's
         * dequantization must give the same logits to rounding */
        exact = compare_dirs(dirs[i], plain, ref32, plain);
        printf("fp8 %s vs its f32 dequantization: max |dlogit| %.3g of %.3g\n", names[i],
               exact.max_abs, exact.range);
        ck_assert_msg(exact.max_abs <= 1e-6 * exact.range, "%s: %g of %g", names[i],
                      exact.max_abs, exact.range);
        /* the bf16 plain checkpoint rounds each dequantized weight to 8 bits: within 2% of the
         * largest logit */
        near = compare_dirs(dirs[i], plain, ref16, plain);
        printf("fp8 %s vs its bf16 dequantization: max |dlogit| %.3g of %.3g, greedy agree "
               "%d/%d\n", names[i], near.max_abs, near.range, near.argmax_agree, PROMPT);
        ck_assert_msg(near.max_abs <= 0.02 * near.range, "%s: %g of %g", names[i], near.max_abs,
                      near.range);
        ck_assert_int_ge(near.argmax_agree, AGREE_MIN);
        /* and against the unquantized model: the quantization error itself, printed only */
        orig = compare_dirs(dirs[i], plain, dir_bf16, plain);
        printf("fp8 %s vs bf16 original: max |dlogit| %.3g of %.3g, greedy agree %d/%d\n",
               names[i], orig.max_abs, orig.range, orig.argmax_agree, PROMPT);
    }
}
END_TEST

struct bf16_scales {
    uint16_t buf[4096];      /* every scale of the tiny model: 14 tensors of at most 15 */
    int used;
};

static void scales_to_bf16(void *ctx, struct fp8_ref_tensor *t)
{
    struct bf16_scales *s = ctx;
    int64_t n = t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1);

    if (!strstr(t->name, "weight_scale"))
        return;
    ck_assert_int_le(s->used + n, (int64_t)ARRAY_LEN(s->buf));
    for (int64_t i = 0; i < n; i++)
        s->buf[s->used + i] = f32_to_bf16(((const float *)t->data)[i]);
    t->data = s->buf + s->used;
    t->dtype = DT_BF16;
    s->used += (int)n;
}

START_TEST(bf16_scales_are_read_like_f32_ones)
{
    static struct bf16_scales scales;
    char *dir = sub("bf16-scales"), *ref = sub("bf16-scales-ref");
    struct diff d;

    ck_assert_int_eq(fp8_ref_rewrite(dir_block, dir, scales_to_bf16, &scales, NULL, NULL, 0), 0);
    ck_assert_int_gt(scales.used, 14);
    ck_assert_int_eq(fp8_ref_dequantize(dir, ref, DT_F32), 0);
    d = compare_dirs(dir, plain, ref, plain);
    ck_assert_msg(d.max_abs <= 1e-6 * d.range, "%g of %g", d.max_abs, d.range);
}
END_TEST

/* ---- broken checkpoints ---- */

struct breakage {
    const char *target;          /* tensor to change */
    enum { DROP, SHAPE, DTYPE, TO_F8 } how;
};

static void break_one(void *ctx, struct fp8_ref_tensor *t)
{
    const struct breakage *b = ctx;
    static uint8_t zeros[1 << 16];

    if (strcmp(t->name, b->target))
        return;
    if (b->how == DROP) {
        t->drop = true;
    } else if (b->how == SHAPE) {
        t->shape[0] += 1;                      /* one more row of scales than the blocks */
        t->data = zeros;
    } else if (b->how == DTYPE) {
        t->dtype = DT_F8_E4M3;                 /* a scale tensor in fp8: not a scale dtype */
        t->data = zeros;
    } else {
        t->dtype = DT_F8_E4M3;                 /* the embedding as fp8: not a linear weight */
        t->data = zeros;
    }
}

static char *block_32(const char *text, void *ctx)
{
    char *s = strdup(text), *p = strstr(s, "[24, 24]");

    if (p)
        memcpy(p, "[32, 32]", 8);
    return s;
}

static char *no_quant(const char *text, void *ctx)
{
    char *s = strdup(text), *p = strstr(s, "\"quantization_config\"");

    if (p)
        memcpy(p, "\"quantization_confiX\"", 21);   /* an unknown key: ignored like others */
    return s;
}

/* The compressed-tensors config with static activations (input_activations.dynamic false):
 * every fp8 weight then needs its input_scale, which gen-model does not write. */
static char *static_acts(const char *text, void *ctx)
{
    const char *p = strstr(text, "\"dynamic\":");
    const char *t = p ? strstr(p, "true") : NULL;
    char *s = malloc(strlen(text) + 2);

    if (!t) {
        strcpy(s, text);
        return s;
    }
    snprintf(s, strlen(text) + 2, "%.*sfalse%s", (int)(t - text), text, t + 4);
    return s;
}

static void check_broken(const char *src, const char *name, struct breakage b,
                         char *(*edit)(const char *, void *), const char *f1, const char *f2)
{
    char *dir = sub(name), err[ERR_LEN] = "";
    struct model m;

    ck_assert_int_eq(fp8_ref_rewrite(src, dir, break_one, &b, edit, NULL, 0), 0);
    ck_assert_int_eq(model_open(&m, dir, err), -EINVAL);
    ck_assert_msg(strstr(err, f1) && strstr(err, f2), "%s: '%s' lacks '%s' or '%s'", name, err,
                  f1, f2);
    ck_assert_ptr_null(strchr(err, '\n'));
}

START_TEST(broken_fp8_checkpoints_are_one_line_naming_the_tensor)
{
    check_broken(dir_block, "no-scale",
                 (struct breakage){ "model.layers.1.self_attn.k_proj.weight_scale_inv", DROP }, NULL,
                 "model.layers.1.self_attn.k_proj.weight_scale_inv: missing",
                 "the scale of the F8_E4M3 weight model.layers.1.self_attn.k_proj.weight");
    check_broken(dir_channel, "no-channel-scale",
                 (struct breakage){ "model.layers.0.mlp.down_proj.weight_scale", DROP }, NULL,
                 "model.layers.0.mlp.down_proj.weight_scale: missing", "F8_E4M3");
    /* q_proj [64, 64] in blocks of 24: scales [3, 3]; the file says [4, 3] */
    check_broken(dir_block, "bad-shape",
                 (struct breakage){ "model.layers.0.self_attn.q_proj.weight_scale_inv", SHAPE }, NULL,
                 "model.layers.0.self_attn.q_proj.weight_scale_inv: expected [3, 3]",
                 "file has [4, 3]");
    check_broken(dir_channel, "bad-channel-shape",
                 (struct breakage){ "model.layers.0.mlp.up_proj.weight_scale", SHAPE }, NULL,
                 "model.layers.0.mlp.up_proj.weight_scale: expected [128, 1]", "file has [129, 1]");
    check_broken(dir_block, "bad-dtype",
                 (struct breakage){ "model.layers.0.mlp.gate_proj.weight_scale_inv", DTYPE }, NULL,
                 "model.layers.0.mlp.gate_proj.weight_scale_inv: dtype F8_E4M3",
                 "expected F32 or BF16");
    /* scales for blocks of 24, config says 32: q_proj wants ceil(64/32) = [2, 2] */
    check_broken(dir_block, "other-block", (struct breakage){ "none", DROP }, block_32,
                 "model.layers.0.self_attn.q_proj.weight_scale_inv: expected [2, 2]",
                 "weight_block_size [32, 32], file has [3, 3]");
    check_broken(dir_block, "no-config", (struct breakage){ "none", DROP }, no_quant,
                 "model.layers.0.self_attn.q_proj.weight: F8_E4M3 weights",
                 "no quantization_config");
    check_broken(dir_channel, "static-no-input-scale", (struct breakage){ "none", DROP },
                 static_acts, "model.layers.0.self_attn.q_proj.input_scale: missing",
                 "the config's activation scheme is static");
    check_broken(dir_block, "fp8-embed",
                 (struct breakage){ "model.embed_tokens.weight", TO_F8 }, NULL,
                 "model.embed_tokens.weight: F8_E4M3", "linear layers' weights only");
}
END_TEST

/* ---- osprey generate ---- */

START_TEST(osprey_generate_runs_both_fp8_formats_and_gives_the_reference_tokens)
{
    char *ref_b = sub("gen-ref-block"), *ref_c = sub("gen-ref-channel");
    char a[1024], b[1024];

    ck_assert_int_eq(fp8_ref_dequantize(dir_block, ref_b, DT_F32), 0);
    ck_assert_int_eq(fp8_ref_dequantize(dir_channel, ref_c, DT_F32), 0);
    osprey_generate_ids(dir_block, "", a, sizeof a);
    osprey_generate_ids(ref_b, "", b, sizeof b);
    ck_assert_str_eq(a, b);
    osprey_generate_ids(dir_channel, "", a, sizeof a);
    osprey_generate_ids(ref_c, "", b, sizeof b);
    ck_assert_str_eq(a, b);
    osprey_generate_ids(dir_channel, "--kv-cache-dtype fp8", a, sizeof a);   /* both fp8 at once runs */
}
END_TEST

/* ---- the fp8 KV cache ---- */

START_TEST(fp8_kv_cache_logits_stay_close_to_the_bf16_cache)
{
    struct prompt_opts bf = { DT_BF16, false, false, NULL }, f8 = { DT_F8_E4M3, false, false, NULL };
    struct diff d = compare_dirs(dir_bf16, f8, dir_bf16, bf);

    /* K/V rounded to 3 mantissa bits instead of 8 (scale 1.0): over a 40-token prompt the
     * logits move by at most 5% of the largest one and the greedy token stays at AGREE_MIN
     * of the 40 positions at least (seen: 2.1%, 38/40) */
    printf("fp8 vs bf16 KV cache: max |dlogit| %.3g of %.3g, greedy agree %d/%d\n", d.max_abs,
           d.range, d.argmax_agree, PROMPT);
    ck_assert_msg(d.max_abs <= 0.05 * d.range, "%g of %g", d.max_abs, d.range);
    ck_assert_int_ge(d.argmax_agree, AGREE_MIN);
    ck_assert(d.max_abs > 0);   /* the caches really differ */
}
END_TEST

/* The tiny model with self_attn.k_scale / v_scale of layer l = scales[2l], scales[2l + 1];
 * stride 0 gives every one scales[0]. */
static void with_kv_scales_of(const char *dst, const float *scales, int stride)
{
    struct fp8_ref_tensor t[4];

    memset(t, 0, sizeof t);
    for (int i = 0; i < 4; i++) {
        snprintf(t[i].name, sizeof t[i].name, "model.layers.%d.self_attn.%s", i / 2,
                 i % 2 ? "v_scale" : "k_scale");
        t[i].dtype = DT_F32;
        t[i].ndim = 0;            /* a scalar, as vLLM's checkpoints store them */
        t[i].data = scales + i * stride;
    }
    ck_assert_int_eq(fp8_ref_rewrite(dir_bf16, dst, NULL, NULL, NULL, t, 4), 0);
}

static void with_kv_scales(const char *dst, const float *scale)
{
    with_kv_scales_of(dst, scale, 0);
}

START_TEST(calculated_kv_scales_come_from_the_first_prefill_and_are_used)
{
    float scales[4], again[4];
    struct prompt_opts calc = { DT_F8_E4M3, false, true, scales };
    struct prompt_opts fixed = { DT_F8_E4M3, false, false, again };
    struct prompt_opts bf = { DT_BF16, false, false, NULL };
    char *dir = sub("kv-calculated");
    struct diff same, near;
    int vocab;
    float *a, *b;

    a = prompt_logits(dir_bf16, calc, &vocab);
    for (int i = 0; i < 4; i++)   /* max |K| / 200, max |V| / 100: far from the default 1.0 */
        ck_assert_msg(scales[i] > 1e-4f && scales[i] < 0.5f, "scale %d: %g", i, scales[i]);
    /* the same scales given by a checkpoint give the same logits: these are what was used */
    with_kv_scales_of(dir, scales, 1);
    b = prompt_logits(dir, fixed, &vocab);
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(again[i], scales[i]);
    same = compare(a, b, vocab);
    ck_assert_msg(same.max_abs == 0, "%g", same.max_abs);
    free(a);
    free(b);
    near = compare_dirs(dir_bf16, calc, dir_bf16, bf);
    printf("fp8 KV with calculated scales vs bf16 KV: max |dlogit| %.3g of %.3g, greedy agree "
           "%d/%d\n", near.max_abs, near.range, near.argmax_agree, PROMPT);
    ck_assert_msg(near.max_abs <= 0.05 * near.range, "%g", near.max_abs);
    ck_assert_int_ge(near.argmax_agree, AGREE_MIN);
}
END_TEST

START_TEST(the_checkpoints_kv_scales_reach_the_fp8_cache)
{
    static const float tiny_scale = 1e-4f, eighth = 0.125f, negative = -1.0f;
    struct prompt_opts bf = { DT_BF16, false, false, NULL }, f8 = { DT_F8_E4M3, false, false, NULL };
    char *d_tiny = sub("kv-tiny"), *d_eighth = sub("kv-eighth"), *d_neg = sub("kv-neg");
    char err[ERR_LEN] = "";
    struct diff one, small, sat;
    struct model m;

    with_kv_scales(d_tiny, &tiny_scale);
    with_kv_scales(d_eighth, &eighth);
    with_kv_scales(d_neg, &negative);
    /* 0.125: K/V / 0.125 keep the fp8 range in use, as close to bf16 as scale 1.0;
     * 1e-4: everything above 0.0448 saturates at 448 * 1e-4, far from bf16 */
    one = compare_dirs(dir_bf16, f8, dir_bf16, bf);
    small = compare_dirs(d_eighth, f8, dir_bf16, bf);
    sat = compare_dirs(d_tiny, f8, dir_bf16, bf);
    printf("fp8 KV vs bf16 KV: scale 1: %.3g, scale 0.125: %.3g, scale 1e-4: %.3g (of %.3g)\n",
           one.max_abs, small.max_abs, sat.max_abs, one.range);
    ck_assert_msg(small.max_abs <= 0.05 * small.range, "%g", small.max_abs);
    ck_assert_msg(sat.max_abs > 5 * one.max_abs, "%g vs %g", sat.max_abs, one.max_abs);
    ck_assert_int_eq(model_open(&m, d_neg, err), -EINVAL);
    ck_assert_msg(strstr(err, "model.layers.0.self_attn.k_scale: -1 is not a positive scale"),
                  "%s", err);
}
END_TEST

START_TEST(fp8_cache_engine_holds_twice_the_tokens_of_bf16_in_the_same_memory)
{
    const char *dtypes[3] = { "auto", "bf16", "fp8" }, *names[3] = { "f32", "bf16", "fp8_e4m3" };
    int64_t tokens[3];

    for (int i = 0; i < 3; i++) {
        struct engine_options o;
        struct engine *e = NULL;
        struct engine_stats st;
        char err[ERR_LEN] = "";

        engine_options_init(&o);
        o.model_dir = dir_bf16;
        o.backend = "cpu";
        o.num_threads = 1;
        o.kv_cache_bytes = 1 << 20;
        o.max_num_seqs = 4;
        o.max_num_batched_tokens = 64;
        o.max_model_len = 256;
        o.kv_cache_dtype = dtypes[i];
        ck_assert_msg(engine_create(&e, &o, err) == 0, "%s", err);
        engine_get_stats(e, &st);
        ck_assert_str_eq(st.kv_cache_dtype, names[i]);
        tokens[i] = st.kv_cache_tokens;
        engine_destroy(e);
    }
    /* tiny: 2 layers x K,V x 2 KV heads x 16 = 128 elements per token: 1 MiB holds 2048
     * tokens of f32, 4096 of bf16, 8192 of fp8 */
    ck_assert_int_eq(tokens[0], 2048);
    ck_assert_int_eq(tokens[1], 4096);
    ck_assert_int_eq(tokens[2], 8192);
}
END_TEST

START_TEST(unimplemented_fp8_options_are_refused_at_engine_creation)
{
    static const struct { const char *dir_kind, *backend, *kv, *quant; bool calc; const char *want; }
    cases[] = {
        { "bf16", "cpu", NULL, NULL, true, "--calculate-kv-scales derives the fp8 cache's "
                                           "scales: it needs --kv-cache-dtype fp8" },
        { "bf16", "cuda", NULL, NULL, true, "--calculate-kv-scales derives the fp8 cache's "
                                            "scales: it needs --kv-cache-dtype fp8" },
        { "bf16", "cpu", "fp16", NULL, false, "--kv-cache-dtype fp16: expected auto, bf16 or fp8" },
        { "bf16", "cpu", NULL, "int8", false, "--quantization int8: expected fp8" },
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct engine_options o;
        struct engine *e = NULL;
        char err[ERR_LEN] = "";

        engine_options_init(&o);
        o.model_dir = !strcmp(cases[i].dir_kind, "block") ? dir_block : dir_bf16;
        o.backend = cases[i].backend;
        o.kv_cache_dtype = cases[i].kv;
        o.quantization = cases[i].quant;
        o.calculate_kv_scales = cases[i].calc;
        o.max_model_len = 256;
        ck_assert_int_ne(engine_create(&e, &o, err), 0);
        ck_assert_ptr_null(e);
        ck_assert_msg(strstr(err, cases[i].want), "case %zu: '%s'", i, err);
    }
}
END_TEST

/* FP8 weights, the fp8 KV cache and --calculate-kv-scales all pass the fp8 checks on cuda
 * (its FP8 GEMMs and absmax op: engine/cuda/cuda_fp8_gemm.c): what stops them here, if
 * anything, is the backend (no CUDA in this build, or no device), never an fp8 option. */
START_TEST(the_fp8_options_are_not_refused_on_cuda)
{
    static const struct { bool block; const char *kv, *quant; bool calc; } cases[] = {
        { false, "fp8", NULL, false },   /* the fp8 KV cache alone */
        { true, NULL, NULL, false },     /* a block-wise checkpoint */
        { false, NULL, "fp8", false },   /* --quantization fp8 */
        { true, "fp8", NULL, true },     /* all of it and --calculate-kv-scales */
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct engine_options o;
        struct engine *e = NULL;
        char err[ERR_LEN] = "";
        int rc;

        engine_options_init(&o);
        o.model_dir = cases[i].block ? dir_block : dir_bf16;
        o.backend = "cuda";
        o.kv_cache_dtype = cases[i].kv;
        o.quantization = cases[i].quant;
        o.calculate_kv_scales = cases[i].calc;
        o.max_model_len = 256;
        o.kv_cache_bytes = 1 << 20;
        rc = engine_create(&e, &o, err);
        if (rc == 0) {
            ck_assert_ptr_nonnull(e);
            engine_destroy(e);
        } else {
            ck_assert_ptr_null(e);
            ck_assert_msg(strstr(err, "backend cuda:") && !strstr(err, "fp8") &&
                          !strstr(err, "kv-cache-dtype") && !strstr(err, "quantiz"),
                          "case %zu refused for an fp8 option: '%s'", i, err);
        }
    }
}
END_TEST

static int load_config(struct osprey_config *c, char **env, char **argv, char *err)
{
    int argc = 0;

    while (argv[argc])
        argc++;
    config_init(c);
    return config_load(c, argc, argv, env, err);
}

START_TEST(the_fp8_options_come_from_flags_and_environment_and_bad_values_are_refused)
{
    char *env[] = { "OSPREY_KV_CACHE_DTYPE=fp8", "OSPREY_QUANTIZATION=fp8", NULL }, *none[] = { NULL };
    char *ok[] = { "serve", "--model", "/m", "--calculate-kv-scales", NULL };
    char *bad_kv[] = { "serve", "--model", "/m", "--kv-cache-dtype", "fp16", NULL };
    char *bad_q[] = { "serve", "--model", "/m", "--quantization=awq", NULL };
    char err[ERR_LEN] = "";
    struct osprey_config c;

    ck_assert_msg(load_config(&c, none, (char *[]){ "serve", "--model", "/m", NULL }, err) == 0, "%s", err);
    ck_assert_str_eq(c.kv_cache_dtype, "auto");
    ck_assert_str_eq(c.quantization, "none");
    ck_assert(!c.calculate_kv_scales);
    config_fini(&c);
    ck_assert_msg(load_config(&c, env, ok, err) == 0, "%s", err);
    ck_assert_str_eq(c.kv_cache_dtype, "fp8");
    ck_assert_str_eq(c.quantization, "fp8");
    ck_assert(c.calculate_kv_scales);
    config_fini(&c);
    ck_assert_int_eq(load_config(&c, none, bad_kv, err), -EINVAL);
    ck_assert_msg(strstr(err, "kv-cache-dtype") && strstr(err, "fp16"), "%s", err);
    config_fini(&c);
    ck_assert_int_eq(load_config(&c, none, bad_q, err), -EINVAL);
    ck_assert_msg(strstr(err, "quantization") && strstr(err, "awq"), "%s", err);
    config_fini(&c);
}
END_TEST

START_TEST(gen_model_writes_what_quantization_config_says_and_refuses_other_schemes)
{
    struct gen_model_opts o = { .config = "tiny", .out_dir = sub("bad-quant"), .quantize = "int4" };
    char err[ERR_LEN] = "";
    struct model m;

    ck_assert_int_eq(gen_model_write(&o, NULL, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "--quantize int4: expected fp8-block, fp8-channel or mxfp4"));
    o.quantize = "fp8-block";
    o.quant_block = 0x7fffffff;
    ck_assert_int_eq(gen_model_write(&o, NULL, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "--quant-block"));
    /* what was written: F8_E4M3 linear weights with their scales, float everything else */
    ck_assert_int_eq(model_open(&m, dir_block, err), 0);
    ck_assert_int_eq(m.cfg.quant, QUANT_FP8_BLOCK);
    ck_assert_int_eq(m.cfg.quant_block[0], 24);
    ck_assert_int_eq(m.layers[1].down.dtype, DT_F8_E4M3);
    ck_assert_int_eq(m.layers[1].down.scale->dtype, DT_F32);
    ck_assert_int_eq(m.layers[1].down.scale->shape[0], 3);   /* ceil(64 / 24) */
    ck_assert_int_eq(m.layers[1].down.scale->shape[1], 6);   /* ceil(128 / 24) */
    ck_assert_int_eq(m.embed.dtype, DT_BF16);
    ck_assert_int_eq(m.layers[0].input_norm.dtype, DT_BF16);
    model_close(&m);
    ck_assert_int_eq(model_open(&m, dir_channel, err), 0);
    ck_assert_int_eq(m.cfg.quant, QUANT_FP8_CHANNEL);
    ck_assert_int_eq(m.layers[0].q.scale->shape[0], 64);
    ck_assert_int_eq(m.layers[0].q.scale->shape[1], 1);
    ck_assert_int_eq(m.layers[0].q.scale_block[1], 64);
    model_close(&m);
}
END_TEST

START_TEST(metrics_name_the_kv_cache_dtype_and_capacity)
{
    struct metrics m;
    struct metrics_engine me = { .healthy = true, .kv_cache_dtype = "fp8_e4m3",
                                 .kv_cache_tokens = 8192 };
    size_t len;
    char *text;

    metrics_init(&m);
    ck_assert_ptr_nonnull(text = metrics_render(&m, &me, &len));
    ck_assert_ptr_nonnull(strstr(text, "\nosprey_kv_cache_info{dtype=\"fp8_e4m3\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nosprey_kv_cache_capacity_tokens 8192\n"));
    free(text);
    metrics_fini(&m);
}
END_TEST

/* ---- --quantization fp8 at load ---- */

START_TEST(quantizing_a_bf16_model_at_load_stays_close_to_it)
{
    struct prompt_opts q = { DT_F32, true, false, NULL };
    struct diff d = compare_dirs(dir_bf16, q, dir_bf16, plain);

    /* per-channel e4m3 weights: 3 mantissa bits per weight; bound 5% of the largest logit
     * and AGREE_MIN of 40 greedy tokens (seen: printed) */
    printf("--quantization fp8 vs bf16: max |dlogit| %.3g of %.3g, greedy agree %d/%d\n",
           d.max_abs, d.range, d.argmax_agree, PROMPT);
    ck_assert_msg(d.max_abs <= 0.05 * d.range, "%g of %g", d.max_abs, d.range);
    ck_assert_int_ge(d.argmax_agree, AGREE_MIN);
    ck_assert(d.max_abs > 0);
}
END_TEST


/* The KV budget sizes the cache from the weights' bytes before they are uploaded: fp8
 * linear weights take one byte and a scale a row, the rest stays at the activation dtype.
 * Counted by hand for a small untied model: hidden 8, 2 heads and 1 KV head of 4, ffn 16,
 * vocab 10, 2 layers. */
START_TEST(fp8_weights_count_one_byte_a_parameter_in_the_memory_budget)
{
    struct model_config c = { 0 };
    size_t lin = 8 * 8 + 2 * 8 * 4 + 8 * 8 + 3 * 8 * 16;   /* q, k+v, o, gate+up+down */
    size_t rows = 8 + 2 * 4 + 8 + 2 * 16 + 8;              /* their output rows */
    size_t rest = 4 * 8 + 8 + 2 * 4;                       /* 4 norms, q/k/v biases */
    size_t outer = 2 * 10 * 8 + 8;                         /* embeddings, head, final norm */

    c.hidden_size = 8;
    c.num_heads = 2;
    c.num_kv_heads = 1;
    c.head_dim = 4;
    c.intermediate_size = 16;
    c.vocab_size = 10;
    c.num_layers = 2;
    ck_assert_uint_eq(weights_bytes(&c, 2, false), 2 * (outer + 2 * (lin + rest)));
    ck_assert_uint_eq(weights_bytes(&c, 2, true),
                      2 * outer + 2 * (lin + 4 * rows + 2 * rest));
}
END_TEST

/* ---- the model families of the models branch ---- */

START_TEST(fused_phi3_weights_quantize_and_quantized_moe_checkpoints_are_refused_in_one_line)
{
    struct gen_model_opts o = { .config = "tiny-phi3", .out_dir = sub("phi3"), .seed = 5,
                                .quantize = "fp8-channel" };
    const char *moe[] = { "tiny-mixtral", "tiny-qwen3-moe", "tiny-qwen2-moe" };
    char err[ERR_LEN] = "";
    struct model m;

    /* Phi-3's fused qkv_proj and gate_up_proj are linear weights like any other */
    ck_assert_msg(gen_model_write(&o, NULL, err) == 0, "gen-model: %s", err);
    ck_assert_msg(model_open(&m, o.out_dir, err) == 0, "%s", err);
    ck_assert_int_eq(m.layers[0].qkv.dtype, DT_F8_E4M3);
    ck_assert_int_eq(m.layers[0].qkv.scale->shape[0], m.layers[0].qkv.shape[0]);
    ck_assert_int_eq(m.layers[1].gate_up.dtype, DT_F8_E4M3);
    model_close(&m);
    /* fp8 experts are not implemented: a quantized MoE checkpoint is refused by name */
    for (int i = 0; i < 3; i++) {
        o.config = moe[i];
        o.out_dir = sub(moe[i]);
        o.quantize = "fp8-block";
        o.quant_block = 24;
        ck_assert_int_eq(gen_model_write(&o, NULL, err), -EINVAL);
        ck_assert_msg(strstr(err, "quantization_config: fp8 block-wise checkpoints of ") &&
                      strstr(err, "are not supported (fp8 mixture-of-experts weights are not "
                             "implemented)") && !strchr(err, '\n'), "'%s'", err);
    }
}
END_TEST

Suite *fp8_model_suite(void)
{
    Suite *s = suite_create("fp8_model");
    TCase *tc = tcase_create("fp8_model");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, both_published_fp8_configs_parse_and_other_methods_are_refused_by_name);
    tcase_add_test(tc, fp8_checkpoints_give_the_logits_of_their_independent_dequantization);
    tcase_add_test(tc, bf16_scales_are_read_like_f32_ones);
    tcase_add_test(tc, broken_fp8_checkpoints_are_one_line_naming_the_tensor);
    tcase_add_test(tc, osprey_generate_runs_both_fp8_formats_and_gives_the_reference_tokens);
    tcase_add_test(tc, fp8_kv_cache_logits_stay_close_to_the_bf16_cache);
    tcase_add_test(tc, the_checkpoints_kv_scales_reach_the_fp8_cache);
    tcase_add_test(tc, calculated_kv_scales_come_from_the_first_prefill_and_are_used);
    tcase_add_test(tc, fp8_cache_engine_holds_twice_the_tokens_of_bf16_in_the_same_memory);
    tcase_add_test(tc, unimplemented_fp8_options_are_refused_at_engine_creation);
    tcase_add_test(tc, the_fp8_options_are_not_refused_on_cuda);
    tcase_add_test(tc, metrics_name_the_kv_cache_dtype_and_capacity);
    tcase_add_test(tc, gen_model_writes_what_quantization_config_says_and_refuses_other_schemes);
    tcase_add_test(tc, fp8_weights_count_one_byte_a_parameter_in_the_memory_budget);
    tcase_add_test(tc, the_fp8_options_come_from_flags_and_environment_and_bad_values_are_refused);
    tcase_add_test(tc, quantizing_a_bf16_model_at_load_stays_close_to_it);
    tcase_add_test(tc, fused_phi3_weights_quantize_and_quantized_moe_checkpoints_are_refused_in_one_line);
    suite_add_tcase(s, tc);
    return s;
}

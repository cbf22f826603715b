/* test_mxfp4.c — gpt-oss's MXFP4 experts (engine/model/mxfp4.h): the e2m1 values and e8m0
 * scales against the format's definition worked out here by hand, the nibble order and the
 * transposition to the published bf16 layout, the quantizer's choices; a gen-model
 * --quantize mxfp4 tiny-gpt-oss whose logits on the cpu backend equal, bit for bit, those of
 * a bf16 twin written from the blocks by this file's own dequantization, and its tokens under
 * tensor parallelism the twin's; broken checkpoints
 * refused in one line naming the tensor; mxfp4 on another family refused. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/model/gen_model.h"
#include "engine/model/model.h"
#include "engine/model/mxfp4.h"
#include "engine/model/safetensors.h"
#include "tests/unit/fixtures.h"
#include "tests/unit/fp8_ref.h"
#include "tests/unit/prompt_logits.h"

/* e2m1 by hand: codes 0..7 are 0, 0.5 (subnormal), then 2^(e-1) * (1, 1.5) for e = 1..3;
 * bit 3 is the sign */
static const float E2M1[16] = { 0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f };

START_TEST(e2m1_codes_and_e8m0_scales_are_the_format_s_values)
{
    for (unsigned c = 0; c < 16; c++) {
        ck_assert_msg(mxfp4_e2m1(c) == E2M1[c], "code %u: %g, expected %g", c, mxfp4_e2m1(c),
                      E2M1[c]);
        ck_assert(!!signbit(mxfp4_e2m1(c)) == (c >= 8));
    }
    /* 2^(s - 127): the bias is 127 */
    ck_assert(mxfp4_scale(127) == 1.0f);
    ck_assert(mxfp4_scale(128) == 2.0f);
    ck_assert(mxfp4_scale(126) == 0.5f);
    ck_assert(mxfp4_scale(120) == 1.0f / 128);
    ck_assert(mxfp4_scale(254) == 0x1p127f);
    ck_assert(mxfp4_scale(0) == 0x1p-127f);
}
END_TEST

/* One row of 32 values holding every code twice (byte j = code 2j % 16 low, 2j + 1 high),
 * another with the codes reversed: element k of row r lands at dst[k][r] times its scale. */
START_TEST(low_nibble_first_every_code_and_the_transposed_layout)
{
    uint8_t blocks[2][16], scales[2] = { 128, 125 };   /* x2, x1/4 */
    float f32[32][2];
    uint16_t bf16[32][2], f16[32][2];

    for (int j = 0; j < 16; j++) {
        blocks[0][j] = (uint8_t)((2 * j) % 16 | ((2 * j + 1) % 16) << 4);
        blocks[1][j] = (uint8_t)((15 - (2 * j) % 16) | (15 - (2 * j + 1) % 16) << 4);
    }
    mxfp4_dequantize(f32, DT_F32, &blocks[0][0], scales, 2, 32);
    mxfp4_dequantize(bf16, DT_BF16, &blocks[0][0], scales, 2, 32);
    mxfp4_dequantize(f16, DT_F16, &blocks[0][0], scales, 2, 32);
    for (int k = 0; k < 32; k++) {
        float want0 = E2M1[k % 16] * 2.0f, want1 = E2M1[15 - k % 16] * 0.25f;

        ck_assert_msg(f32[k][0] == want0, "row 0 element %d: %g, expected %g", k, f32[k][0], want0);
        ck_assert_msg(f32[k][1] == want1, "row 1 element %d: %g, expected %g", k, f32[k][1], want1);
        ck_assert(bf16_to_f32(bf16[k][0]) == want0);   /* exact in bf16 */
        ck_assert(bf16_to_f32(bf16[k][1]) == want1);
        ck_assert(f16_to_f32(f16[k][0]) == want0);     /* and in f16 */
        ck_assert(f16_to_f32(f16[k][1]) == want1);
    }
}
END_TEST

/* The scale is amax / 6 rounded up to a power of two; values round to the nearest e2m1, ties
 * to the even code (worked out by hand). */
START_TEST(the_quantizer_picks_the_smallest_unclipped_scale_and_the_nearest_code)
{
    static const struct { float x; uint8_t code; } near[] = {
        { 0.0f, 0 }, { -0.0f, 8 }, { 0.2f, 0 }, { 0.25f, 0 }, { 0.3f, 1 }, { 0.75f, 2 },
        { 1.25f, 2 }, { 1.3f, 3 }, { 1.75f, 4 }, { 2.5f, 4 }, { 3.5f, 6 }, { 5.0f, 6 },
        { 5.1f, 7 }, { 6.0f, 7 }, { 9.0f, 7 }, { -1.5f, 11 }, { -2.9f, 13 }, { -0.6f, 9 },
    };

    ck_assert_int_eq(mxfp4_scale_for(6.0f), 127);    /* 6 / 2^0 = 6 fits */
    ck_assert_int_eq(mxfp4_scale_for(6.5f), 128);    /* needs 2 */
    ck_assert_int_eq(mxfp4_scale_for(12.0f), 128);
    ck_assert_int_eq(mxfp4_scale_for(3.0f), 126);    /* 3 / 0.5 = 6 */
    ck_assert_int_eq(mxfp4_scale_for(0.04f), 120);   /* 0.04 / 6 = 0.0067 <= 2^-7 */
    ck_assert_int_eq(mxfp4_scale_for(0.0f), 0);
    for (size_t i = 0; i < sizeof near / sizeof *near; i++)
        ck_assert_msg(mxfp4_e2m1_from(near[i].x) == near[i].code, "%g: code %u, expected %u",
                      near[i].x, mxfp4_e2m1_from(near[i].x), near[i].code);
}
END_TEST

/* ---- a tiny gpt-oss in MXFP4 and its bf16 twin ---- */

static char root[FIXTURE_PATH], dir_q[FIXTURE_PATH + 32], dir_twin[FIXTURE_PATH + 32],
            dir_b[FIXTURE_PATH + 32];

static void gen(const char *dir, const char *quantize)
{
    struct gen_model_opts o = { .config = "tiny-gpt-oss", .out_dir = dir, .seed = 5,
                                .quantize = quantize };
    char err[ERR_LEN] = "";

    ck_assert_msg(gen_model_write(&o, NULL, err) == 0, "gen-model: %s", err);
}

/* config.json without its quantization_config (malloc'd). */
static char *no_quant(const char *text, void *ctx)
{
    cJSON *j = cJSON_Parse(text);
    char *out;

    cJSON_DeleteItemFromObject(j, "quantization_config");
    out = cJSON_Print(j);
    cJSON_Delete(j);
    return out;
}

/* Building the twin: whichever of a weight's _blocks and _scales comes second becomes the
 * float weight [E, in, out] in bf16, dequantized here; the first is dropped. */
struct twin {
    char base[128];
    const uint8_t *blocks, *scales;
    int64_t shape[4];           /* the blocks' [E, out, groups, 16] */
    void *bufs[16];
    int nbufs;
};

static void twin_mutate(void *ctx, struct fp8_ref_tensor *t)
{
    struct twin *tw = ctx;
    size_t len = strlen(t->name);
    bool is_blocks = len > 7 && !strcmp(t->name + len - 7, "_blocks");
    bool is_scales = len > 7 && !strcmp(t->name + len - 7, "_scales");
    int64_t E, out, groups, in;
    uint16_t *w;

    if (!is_blocks && !is_scales)
        return;
    if (strncmp(tw->base, t->name, len - 7) || tw->base[len - 7]) {   /* the first of the pair */
        snprintf(tw->base, sizeof tw->base, "%.*s", (int)(len - 7), t->name);
        tw->blocks = tw->scales = NULL;
    }
    if (is_blocks) {
        tw->blocks = t->data;
        memcpy(tw->shape, t->shape, sizeof tw->shape);
    } else {
        tw->scales = t->data;
    }
    if (!tw->blocks || !tw->scales) {
        t->drop = true;
        return;
    }
    E = tw->shape[0], out = tw->shape[1], groups = tw->shape[2], in = groups * 32;
    ck_assert_int_lt(tw->nbufs, 16);
    w = tw->bufs[tw->nbufs++] = malloc(sizeof *w * (size_t)(E * in * out));
    for (int64_t e = 0; e < E; e++)
        for (int64_t r = 0; r < out; r++)
            for (int64_t k = 0; k < in; k++) {
                int64_t blk = (e * out + r) * groups + k / 32;
                uint8_t byte = tw->blocks[blk * 16 + k % 32 / 2];
                float v = E2M1[k % 2 ? byte >> 4 : byte & 15] *
                          ldexpf(1.0f, (int)tw->scales[blk] - 127);

                w[(e * in + k) * out + r] = f32_to_bf16(v);
            }
    snprintf(t->name, sizeof t->name, "%s", tw->base);
    t->dtype = DT_BF16;
    t->ndim = 3;
    t->shape[0] = E;
    t->shape[1] = in;
    t->shape[2] = out;
    t->shape[3] = 0;
    t->data = w;
    tw->base[0] = '\0';
    tw->blocks = tw->scales = NULL;
}

static void setup(void)
{
    struct twin tw = { .nbufs = 0 };

    ck_assert_int_eq(fixture_tmpdir(root), 0);
    snprintf(dir_q, sizeof dir_q, "%s/mxfp4", root);
    snprintf(dir_twin, sizeof dir_twin, "%s/twin", root);
    snprintf(dir_b, sizeof dir_b, "%s/bf16", root);
    gen(dir_q, "mxfp4");
    gen(dir_b, NULL);
    ck_assert_int_eq(fp8_ref_rewrite(dir_q, dir_twin, twin_mutate, &tw, no_quant, NULL, 0), 0);
    ck_assert_int_eq(tw.nbufs, 2 * 4);   /* gate_up and down of 4 layers */
    for (int i = 0; i < tw.nbufs; i++)
        free(tw.bufs[i]);
}

static void teardown(void)
{
    fixture_rmtree(root);
}

START_TEST(mxfp4_logits_equal_their_independently_dequantized_bf16_twin_bit_for_bit)
{
    struct prompt_opts plain = { DT_F32, false, false, NULL };
    int vq, vt;
    float *lq = prompt_logits(dir_q, plain, &vq), *lt = prompt_logits(dir_twin, plain, &vt);

    ck_assert_int_eq(vq, vt);
    for (size_t i = 0; i < (size_t)PROMPT_TOKENS * vq; i++)
        ck_assert_msg(memcmp(&lq[i], &lt[i], sizeof *lq) == 0, "logit %zu: %.9g vs twin %.9g",
                      i, lq[i], lt[i]);
    free(lq);
    free(lt);
}
END_TEST

/* Tensor parallelism shards the dequantized experts as a bf16 checkpoint's: the MXFP4 model
 * at --tensor-parallel-size 2 gives the twin's tokens at 2 (the same sums in the same order). */
START_TEST(mxfp4_experts_shard_like_the_twin_s_under_tensor_parallelism)
{
    char q[512], twin[512];

    osprey_generate_ids(dir_q, "--tensor-parallel-size 2", q, sizeof q);
    osprey_generate_ids(dir_twin, "--tensor-parallel-size 2", twin, sizeof twin);
    ck_assert_str_eq(q, twin);
}
END_TEST

/* The loaded experts are the bf16 weights the same seed writes unquantized, each within the
 * largest half-gap of e2m1 (1) times its block's scale, the scale a power of two in
 * [amax / 6, amax / 3): gen-model quantizes what it would write, as the reference does. */
START_TEST(loaded_experts_are_the_seed_s_bf16_weights_quantized)
{
    struct model q, b;
    char err[ERR_LEN] = "";
    const struct tensor_ref *sc;
    struct st_set *st;

    ck_assert_msg(model_open(&q, dir_q, err) == 0, "%s", err);
    ck_assert_msg(model_open(&b, dir_b, err) == 0, "%s", err);
    ck_assert_int_eq(st_open(&st, dir_q, err), 0);
    ck_assert_int_eq(q.cfg.quant, QUANT_MXFP4);
    ck_assert_ptr_nonnull(q.layers[0].mxfp4_experts);
    sc = st_find(st, "model.layers.2.mlp.experts.gate_up_proj_scales");
    ck_assert_ptr_nonnull(sc);
    for (int e = 0; e < q.cfg.num_experts; e++) {
        const struct tensor_ref *tq = &q.layers[2].experts[e].gate_up_t;
        const struct tensor_ref *tb = &b.layers[2].experts[e].gate_up_t;
        int64_t in = tq->shape[0], out = tq->shape[1];

        ck_assert_int_eq(tq->dtype, DT_BF16);
        ck_assert_int_eq(in, tb->shape[0]);
        ck_assert_int_eq(out, tb->shape[1]);
        for (int64_t r = 0; r < out; r++)
            for (int64_t g = 0; g < in / 32; g++) {
                float s = ldexpf(1.0f, ((const uint8_t *)sc->data)[(e * out + r) * (in / 32) + g] - 127);
                float amax = 0;

                for (int64_t k = g * 32; k < g * 32 + 32; k++) {
                    float vq = bf16_to_f32(((const uint16_t *)tq->data)[k * out + r]);
                    float vb = bf16_to_f32(((const uint16_t *)tb->data)[k * out + r]);

                    ck_assert_msg(fabsf(vq - vb) <= s, "expert %d [%lld][%lld]: %g vs %g, "
                                  "scale %g", e, (long long)k, (long long)r, vq, vb, s);
                    amax = fmaxf(amax, fabsf(vb));
                }
                ck_assert_msg(s >= amax / 6 && s < amax / 3, "scale %g for amax %g", s, amax);
            }
    }
    st_close(st);
    model_close(&q);
    model_close(&b);
}
END_TEST

/* ---- broken checkpoints ---- */

struct breakage {
    const char *name;      /* the tensor changed */
    int how;               /* DROP, SHAPE, DTYPE (bf16), U8 */
};
enum { DROP, SHAPE, DTYPE, U8 };

static void break_one(void *ctx, struct fp8_ref_tensor *t)
{
    const struct breakage *b = ctx;

    if (strcmp(t->name, b->name))
        return;
    if (b->how == DROP) {
        t->drop = true;
    } else if (b->how == SHAPE) {
        t->shape[t->ndim - 1] = 1;            /* fewer bytes than the file holds: safe */
    } else if (b->how == DTYPE) {
        t->dtype = DT_BF16;                   /* the same bytes as BF16 */
        t->shape[t->ndim - 1] /= 2;
    } else {
        t->dtype = DT_U8;                     /* a bf16 tensor's bytes as U8 */
        t->shape[t->ndim - 1] *= 2;
    }
}

static void check_broken(struct breakage b, const char *want)
{
    char dst[FIXTURE_PATH + 64], err[ERR_LEN] = "";
    struct model m;

    snprintf(dst, sizeof dst, "%s/broken", root);
    ck_assert_int_eq(fp8_ref_rewrite(dir_q, dst, break_one, &b, NULL, NULL, 0), 0);
    ck_assert_int_ne(model_open(&m, dst, err), 0);
    ck_assert_msg(strstr(err, want), "%s: got '%s', expected '%s'", b.name, err, want);
    ck_assert_ptr_null(strchr(err, '\n'));
    fixture_rmtree(dst);
}

START_TEST(broken_mxfp4_checkpoints_are_one_line_naming_the_tensor)
{
    check_broken((struct breakage){ "model.layers.1.mlp.experts.gate_up_proj_scales", DROP },
                 "model.layers.1.mlp.experts.gate_up_proj_scales: missing (MXFP4 experts");
    check_broken((struct breakage){ "model.layers.3.mlp.experts.down_proj_blocks", DROP },
                 "model.layers.3.mlp.experts.down_proj_blocks: missing (MXFP4 experts");
    check_broken((struct breakage){ "model.layers.0.mlp.experts.down_proj_scales", SHAPE },
                 "model.layers.0.mlp.experts.down_proj_scales: expected [4, 64, 2], file has "
                 "[4, 64, 1]");
    check_broken((struct breakage){ "model.layers.2.mlp.experts.gate_up_proj_blocks", SHAPE },
                 "model.layers.2.mlp.experts.gate_up_proj_blocks: expected [4, 128, 2, 16], "
                 "file has [4, 128, 2, 1]");
    check_broken((struct breakage){ "model.layers.0.mlp.experts.gate_up_proj_blocks", DTYPE },
                 "model.layers.0.mlp.experts.gate_up_proj_blocks: dtype BF16, expected U8");
    /* a U8 tensor anywhere else */
    check_broken((struct breakage){ "model.layers.0.mlp.router.weight", U8 },
                 "model.layers.0.mlp.router.weight: U8 is read for MXFP4 experts' *_blocks and "
                 "*_scales only");
}
END_TEST

START_TEST(mxfp4_is_for_gpt_oss_only)
{
    static const char llama[] =
        "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
        "\"num_attention_heads\":4,\"num_hidden_layers\":2,\"num_key_value_heads\":2,"
        "\"vocab_size\":512,\"quantization_config\":{\"quant_method\":\"mxfp4\"}}";
    struct gen_model_opts o = { .config = "tiny", .out_dir = dir_b, .quantize = "mxfp4" };
    struct model_config c;
    char err[ERR_LEN] = "";

    ck_assert_int_eq(fixture_config_parse(&c, llama, err), -ENOTSUP);
    ck_assert_msg(strstr(err, "quantization_config: quant_method 'mxfp4' (MXFP4 experts: "
                              "*_blocks and *_scales tensors) is read for gpt-oss "
                              "(GptOssForCausalLM) only, not LlamaForCausalLM"), "%s", err);
    ck_assert_int_eq(gen_model_write(&o, NULL, err), -EINVAL);
    ck_assert_msg(strstr(err, "--quantize mxfp4: preset tiny: gpt-oss configs only"), "%s", err);
}
END_TEST

/* --load-format dummy reads an MXFP4 config: its experts are drawn in the float dtype they
 * have once loaded. */
START_TEST(dummy_weights_read_an_mxfp4_config)
{
    struct model m;
    char err[ERR_LEN] = "";

    ck_assert_msg(model_open_dummy(&m, dir_q, 1, false, err) == 0, "%s", err);
    ck_assert_int_eq(m.cfg.quant, QUANT_MXFP4);
    ck_assert_ptr_nonnull(m.layers[0].experts[3].gate_up_t.data);
    model_close(&m);
}
END_TEST

Suite *mxfp4_suite(void)
{
    Suite *s = suite_create("mxfp4");
    TCase *tc = tcase_create("format"), *tm = tcase_create("model");

    tcase_add_test(tc, e2m1_codes_and_e8m0_scales_are_the_format_s_values);
    tcase_add_test(tc, low_nibble_first_every_code_and_the_transposed_layout);
    tcase_add_test(tc, the_quantizer_picks_the_smallest_unclipped_scale_and_the_nearest_code);
    suite_add_tcase(s, tc);
    tcase_add_unchecked_fixture(tm, fixture_quiet, fixture_loud);
    tcase_add_checked_fixture(tm, setup, teardown);
    tcase_set_timeout(tm, 60);
    tcase_add_test(tm, mxfp4_logits_equal_their_independently_dequantized_bf16_twin_bit_for_bit);
    tcase_add_test(tm, mxfp4_experts_shard_like_the_twin_s_under_tensor_parallelism);
    tcase_add_test(tm, loaded_experts_are_the_seed_s_bf16_weights_quantized);
    tcase_add_test(tm, broken_mxfp4_checkpoints_are_one_line_naming_the_tensor);
    tcase_add_test(tm, mxfp4_is_for_gpt_oss_only);
    tcase_add_test(tm, dummy_weights_read_an_mxfp4_config);
    suite_add_tcase(s, tm);
    return s;
}

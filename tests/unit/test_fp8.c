/* test_fp8.c — float8_e4m3fn conversions (engine/base/fp8.c) against values worked out by
 * hand in the comments (ties to even, subnormals, the 448 limit, NaN) and against an
 * independent decoding formula written here; the fp8 and bf16 KV caches of the CPU backend
 * (cache_update on a poisoned cache, attention reading what it wrote); FP8 weights in the
 * CPU matmul; per-channel quantization at load (weights_quantize_fp8). */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/base/fp8.h"
#include "engine/cpu/cpu_ops.h"
#include "engine/weights.h"
#include "tests/unit/random_model.h"

/* e4m3fn from its definition, not from the code under test: sign, 4 exponent bits with
 * bias 7, 3 mantissa bits; exponent 0 is subnormal (m/8 * 2^-6); S.1111.111 is NaN. */
static double ref_decode(uint8_t c)
{
    int e = (c >> 3) & 15, m = c & 7;
    double v;

    if ((c & 0x7f) == 0x7f)
        return NAN;
    v = e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10);   /* (8+m)/8 * 2^(e-7) */
    return c & 0x80 ? -v : v;
}

START_TEST(every_code_decodes_as_the_format_defines_it)
{
    int nans = 0;

    for (int c = 0; c < 256; c++) {
        double want = ref_decode((uint8_t)c);
        float got = fp8_e4m3_to_f32((uint8_t)c);

        if (isnan(want)) {
            ck_assert_msg(isnan(got), "code 0x%02x", c);
            nans++;
            continue;
        }
        ck_assert_msg((double)got == want, "code 0x%02x: %g, want %g", c, got, want);
        ck_assert_int_eq(signbit(got) != 0, (c & 0x80) != 0);    /* 0x80 is -0 */
    }
    ck_assert_int_eq(nans, 2);                                   /* 0x7f and 0xff only */
    /* landmarks, by hand: 0x01 = 1/8 * 2^-6 = 2^-9; 0x08 = 2^-6 (first normal); 0x38 =
     * exponent 7 = 2^0; 0x3f = 1.875; 0x7e = 2^8 * 1.75 = 448; 0xc1 = -(2 * 1.125) */
    ck_assert_float_eq(fp8_e4m3_to_f32(0x01), 0.001953125f);
    ck_assert_float_eq(fp8_e4m3_to_f32(0x07), 0.013671875f);
    ck_assert_float_eq(fp8_e4m3_to_f32(0x08), 0.015625f);
    ck_assert_float_eq(fp8_e4m3_to_f32(0x38), 1.0f);
    ck_assert_float_eq(fp8_e4m3_to_f32(0x3f), 1.875f);
    ck_assert_float_eq(fp8_e4m3_to_f32(0x7e), 448.0f);
    ck_assert_float_eq(fp8_e4m3_to_f32(0xfe), -448.0f);
    ck_assert_float_eq(fp8_e4m3_to_f32(0xc1), -2.25f);
    /* the positive codes increase strictly: encoding can be checked against neighbours */
    for (int c = 1; c <= 0x7e; c++)
        ck_assert(ref_decode((uint8_t)c) > ref_decode((uint8_t)(c - 1)));
}
END_TEST

START_TEST(encoding_rounds_to_nearest_even_and_saturates_at_448)
{
    static const struct { float x; uint8_t want; } cases[] = {
        { 0.0f, 0x00 }, { -0.0f, 0x80 },
        { 1.0f, 0x38 },
        { 1.0625f, 0x38 },   /* halfway 1.0 (m 0) / 1.125 (m 1): tie to the even mantissa 0 */
        { 1.1875f, 0x3a },   /* halfway 1.125 (m 1) / 1.25 (m 2): tie to even, m 2 */
        { 1.07f, 0x39 },     /* just above the 1.0625 midpoint */
        { 8.5f, 0x50 },      /* spacing 1 in [8, 16): tie 8 / 9 -> 8 = 2^3, e 10, m 0 */
        { 9.5f, 0x52 },      /* tie 9 (m 1) / 10 (m 2) -> 10 */
        { 15.5f, 0x58 },     /* tie 15 (m 7) / 16: the carry moves to the next binade, e 11 m 0 */
        { 240.0f, 0x77 },    /* 128 * 1.875: e 14, m 7 */
        { -2.25f, 0xc1 },
        { 0.2f, 0x25 },      /* 0.125 * 1.6: m 4.8 -> 5, 0.203125 (e 4) */
        { 448.0f, 0x7e },    /* the largest finite value */
        { 450.0f, 0x7e },
        { 464.0f, 0x7e },    /* halfway 448 / 480, and 480 would be the NaN code: saturate */
        { 1000.0f, 0x7e }, { -500.0f, 0xfe },
        { INFINITY, 0x7e }, { -INFINITY, 0xfe },
        /* subnormals, in steps of 2^-9 = 0.001953125 */
        { 0.0009765625f, 0x00 },  /* 2^-10: half a step, tie to even 0 */
        { 0.0009765626f, 0x01 },  /* just above half a step */
        { 0.0029296875f, 0x02 },  /* 1.5 steps: tie to even 2 */
        { 0.0048828125f, 0x02 },  /* 2.5 steps: tie to even 2 */
        { 0.0068359375f, 0x04 },  /* 3.5 steps: tie to even 4 */
        { 0.0146484375f, 0x08 },  /* 7.5 steps: tie 7 / 8, 8 steps = 2^-6 = the first normal */
        { 0.00390625f, 0x02 },    /* 2^-8: exactly 2 steps */
        { 1e-30f, 0x00 }, { -1e-30f, 0x80 }, { 1e-45f, 0x00 },   /* f32 subnormal too */
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        ck_assert_msg(fp8_e4m3_from_f32(cases[i].x) == cases[i].want, "%.10g: 0x%02x, want 0x%02x",
                      cases[i].x, fp8_e4m3_from_f32(cases[i].x), cases[i].want);
    ck_assert_int_eq(fp8_e4m3_from_f32(NAN), 0x7f);
    ck_assert_int_eq(fp8_e4m3_from_f32(-NAN), 0xff);
}
END_TEST

START_TEST(every_value_encodes_to_its_nearest_code)
{
    uint64_t rng = 42;
    double val[256];

    /* every finite code reads back as itself */
    for (int c = 0; c < 256; c++) {
        val[c] = ref_decode((uint8_t)c);
        if ((c & 0x7f) != 0x7f)
            ck_assert_int_eq(fp8_e4m3_from_f32((float)val[c]), c);
    }
    /* random values within the range: no code is nearer than the chosen one */
    for (int i = 0; i < 3000; i++) {
        float x = ldexpf(test_randf(&rng, -0.875f, 0.875f), test_randint(&rng, 24) - 14);
        double err = fabs(val[fp8_e4m3_from_f32(x)] - x);

        for (int c = 0; c < 256; c++)
            if ((c & 0x7f) != 0x7f && fabs(val[c] - x) < err)
                ck_abort_msg("%.9g -> 0x%02x, but 0x%02x is nearer", x, fp8_e4m3_from_f32(x), c);
    }
}
END_TEST

/* ---- the fp8 KV cache ---- */

enum { CB = 4, CBS = 2, CKV = 1, CD = 4, CSLOTS = CB * CBS, CROW = CKV * CD };

START_TEST(fp8_cache_update_writes_the_expected_bytes_in_mapped_slots_only)
{
    struct cache_layout l = { CB, CBS, CKV, CD, DT_F8_E4M3, 2.0f, 0.5f };
    uint8_t kc[CSLOTS * CROW], vc[CSLOTS * CROW];
    /* token 1 is padding (slot -1): its values must land nowhere */
    const float k[3 * CROW] = { 1.0f, -2.0f, 0.5f, 1000.0f,   7, 7, 7, 7,
                                0.0078125f, -3.0f, 448.0f, 0.001f };
    const float v[3 * CROW] = { 0.1f, 0.0f, -0.0f, 3.0f,     7, 7, 7, 7,
                                1.0f, 1.0f, 1.0f, 1.0f };
    const int64_t slots[3] = { 5, KV_PADDING_SLOT, 2 };
    /* by hand, k / k_scale 2 and v / v_scale 0.5:
     * slot 5 K: 0.5 = 2^-1 (e 6) 0x30; -1 0xb8; 0.25 (e 5) 0x28; 500 saturates 0x7e
     * slot 5 V: 0.2 -> 0.203125 0x25; 0 0x00; -0 0x80; 6 = 4 * 1.5 (e 9, m 4) 0x4c
     * slot 2 K: 2^-8 = 2 subnormal steps 0x02; -1.5 0xbc; 224 = 128 * 1.75 0x76;
     *           0.0005 = 0.256 steps 0x00
     * slot 2 V: 2.0 (e 8) 0x40 x4 */
    const uint8_t k5[4] = { 0x30, 0xb8, 0x28, 0x7e }, v5[4] = { 0x25, 0x00, 0x80, 0x4c };
    const uint8_t k2[4] = { 0x02, 0xbc, 0x76, 0x00 }, v2[4] = { 0x40, 0x40, 0x40, 0x40 };

    memset(kc, 0xAA, sizeof kc);
    memset(vc, 0xAA, sizeof vc);
    ck_assert_int_eq(cache_update_cpu(k, v, CROW, slots, 3, kc, vc, &l), 0);
    for (int s = 0; s < CSLOTS; s++)
        for (int j = 0; j < CROW; j++) {
            uint8_t wk = s == 5 ? k5[j] : s == 2 ? k2[j] : 0xAA;
            uint8_t wv = s == 5 ? v5[j] : s == 2 ? v2[j] : 0xAA;

            ck_assert_msg(kc[s * CROW + j] == wk, "K slot %d [%d]: 0x%02x, want 0x%02x", s, j,
                          kc[s * CROW + j], wk);
            ck_assert_msg(vc[s * CROW + j] == wv, "V slot %d [%d]: 0x%02x, want 0x%02x", s, j,
                          vc[s * CROW + j], wv);
        }
}
END_TEST

START_TEST(cache_update_refuses_a_bad_scale_or_dtype_and_writes_nothing)
{
    struct cache_layout l = { CB, CBS, CKV, CD, DT_F8_E4M3, 0.0f, 1.0f };
    uint8_t kc[CSLOTS * CROW], vc[CSLOTS * CROW];
    const float k[CROW] = { 1, 2, 3, 4 }, v[CROW] = { 1, 2, 3, 4 };
    const int64_t slot = 3;

    memset(kc, 0xAA, sizeof kc);
    memset(vc, 0xAA, sizeof vc);
    ck_assert_int_eq(cache_update_cpu(k, v, CROW, &slot, 1, kc, vc, &l), -EINVAL);
    l.k_scale = NAN;
    ck_assert_int_eq(cache_update_cpu(k, v, CROW, &slot, 1, kc, vc, &l), -EINVAL);
    l.k_scale = 1.0f;
    l.dtype = DT_F16;
    ck_assert_int_eq(cache_update_cpu(k, v, CROW, &slot, 1, kc, vc, &l), -EINVAL);
    for (size_t i = 0; i < sizeof kc; i++)
        ck_assert(kc[i] == 0xAA && vc[i] == 0xAA);
}
END_TEST

START_TEST(bf16_cache_update_rounds_to_nearest_even)
{
    struct cache_layout l = { CB, CBS, CKV, CD, DT_BF16, 0, 0 };
    uint16_t kc[CSLOTS * CROW], vc[CSLOTS * CROW];
    /* 1 + 2^-8 is halfway between bf16 1.0 (0x3f80) and 1 + 2^-7 (0x3f81): even 0x3f80;
     * 1 + 3 * 2^-8 is halfway 0x3f81 / 0x3f82: even 0x3f82 */
    const float k[CROW] = { 1.0f + 1.0f / 256, 1.0f + 3.0f / 256, -2.0f, 0.0f };
    const int64_t slot = 6;

    memset(kc, 0xAA, sizeof kc);
    memset(vc, 0xAA, sizeof vc);
    ck_assert_int_eq(cache_update_cpu(k, k, CROW, &slot, 1, kc, vc, &l), 0);
    ck_assert_uint_eq(kc[6 * CROW + 0], 0x3f80);
    ck_assert_uint_eq(kc[6 * CROW + 1], 0x3f82);
    ck_assert_uint_eq(kc[6 * CROW + 2], 0xc000);
    ck_assert_uint_eq(vc[6 * CROW + 3], 0x0000);
    ck_assert_uint_eq(kc[5 * CROW + 3], 0xAAAA);
}
END_TEST

/* Attention over an fp8 (or bf16) cache equals attention over an f32 cache that holds the
 * same values decoded here: the op dequantizes exactly what cache_update wrote. */
static void attention_reads_what_was_written(enum dtype dt)
{
    enum { H = 4, KV = 2, D = 8, BS = 4, NB = 6, T = 10, STRIDE = (H + 2 * KV) * D };
    struct cache_layout l = { NB, BS, KV, D, dt, 0.03f, 0.02f };
    struct cache_layout lf = { NB, BS, KV, D, DT_F32, 0, 0 };
    float qkv[T * STRIDE], kf[NB * BS * KV * D], vf[NB * BS * KV * D];
    float out[T * H * D], ref[T * H * D];
    uint8_t kq[NB * BS * KV * D * 2], vq[NB * BS * KV * D * 2];
    int64_t slots[T];
    int32_t qsl[2] = { 0, T }, seq[1] = { T }, table[NB] = { 3, 0, 5, KV_NO_BLOCK, -1, -1 };
    struct bk_batch b = { .num_reqs = 1, .num_tokens = T, .num_kv_groups = 1,
                          .max_blocks_per_req = NB, .query_start_loc = qsl, .seq_lens = seq };
    struct attn_params p = { H, KV, D, 1.0f / sqrtf(D), 0.0f, 0, l, NULL };
    struct threadpool *tp;
    uint64_t rng = 7;

    ck_assert_int_eq(threadpool_create(&tp, 2), 0);
    b.block_table[0] = table;
    for (int i = 0; i < T * STRIDE; i++)
        qkv[i] = test_randf(&rng, -3, 3);
    for (int t = 0; t < T; t++)
        slots[t] = (int64_t)table[t / BS] * BS + t % BS;
    ck_assert_int_eq(cache_update_cpu(qkv + H * D, qkv + (H + KV) * D, STRIDE, slots, T, kq, vq,
                                      &l), 0);
    for (int i = 0; i < NB * BS * KV * D; i++) {
        if (dt == DT_F8_E4M3) {
            kf[i] = (float)(ref_decode(kq[i]) * l.k_scale);
            vf[i] = (float)(ref_decode(vq[i]) * l.v_scale);
        } else {
            kf[i] = bf16_to_f32(((uint16_t *)kq)[i]);
            vf[i] = bf16_to_f32(((uint16_t *)vq)[i]);
        }
    }
    ck_assert_int_eq(attention_cpu(tp, out, qkv, STRIDE, kq, vq, &b, 0, &p), 0);
    p.cache = lf;
    ck_assert_int_eq(attention_cpu(tp, ref, qkv, STRIDE, kf, vf, &b, 0, &p), 0);
    for (int i = 0; i < T * H * D; i++)
        ck_assert_msg(fabsf(out[i] - ref[i]) <= 1e-6f * (1 + fabsf(ref[i])), "[%d] %g vs %g", i,
                      out[i], ref[i]);
    threadpool_destroy(tp);
}

START_TEST(fp8_attention_dequantizes_what_cache_update_wrote)
{
    attention_reads_what_was_written(DT_F8_E4M3);
}
END_TEST

START_TEST(bf16_attention_widens_what_cache_update_wrote)
{
    attention_reads_what_was_written(DT_BF16);
}
END_TEST

START_TEST(absmax_takes_the_largest_magnitude_of_strided_rows)
{
    /* rows of 3 columns, 5 apart: the -9 and 100 between the rows must not count */
    const float x[13] = { 1, -4, 2, 100, 100, 0.5f, 3, -3.5f, -9, 100, 2, 0, 3.75f };
    float m = -1;

    ck_assert_int_eq(absmax_cpu(&m, x, 5, 3, 3), 0);
    ck_assert_float_eq(m, 4.0f);
    ck_assert_int_eq(absmax_cpu(&m, x, 5, 0, 3), 0);
    ck_assert_float_eq(m, 0.0f);
    ck_assert_int_eq(absmax_cpu(&m, x, 2, 3, 3), -EINVAL);
}
END_TEST

/* ---- FP8 weights ---- */

/* An F8_E4M3 [3, 5] weight in blocks of 2 x 2 (so the last block row and column are
 * partial), uploaded through the cpu backend, multiplies like the f32 matrix of
 * code * scale computed here. */
START_TEST(block_scaled_fp8_weights_multiply_as_their_dequantized_values)
{
    enum { R = 3, C = 5, N = 2 };
    uint8_t codes[R * C];
    float scales[2 * 3] = { 0.5f, 2.0f, 0.25f, 1.0f, 4.0f, 0.125f };   /* [ceil(3/2), ceil(5/2)] */
    float x[N * C], out[N * R];
    struct tensor_ref sref = { "w.weight_scale_inv", scales, DT_F32, 2, { 2, 3 }, sizeof scales,
                               NULL, { 0, 0 }, NULL };
    struct tensor_ref w = { "w.weight", codes, DT_F8_E4M3, 2, { R, C }, sizeof codes, &sref,
                            { 2, 2 }, NULL };
    struct backend_options bo = { .num_threads = 1 };
    struct backend *be;
    struct bk_weight bw;
    uint64_t rng = 3;
    char err[ERR_LEN] = "";

    for (int i = 0; i < R * C; i++)
        codes[i] = (uint8_t)(test_randint(&rng, 0x7e) | (i % 3 ? 0 : 0x80));
    for (int i = 0; i < N * C; i++)
        x[i] = test_randf(&rng, -1, 1);
    ck_assert_int_eq(backend_create(&be, "cpu", &bo, err), 0);
    ck_assert_msg(be->ops->upload_weight(be, &bw, &w, 1, err) == 0, "%s", err);
    ck_assert_int_eq(bw.dtype, DT_F8_E4M3);
    ck_assert_int_eq(be->ops->matmul(be, out, x, &bw, NULL, N), 0);
    for (int t = 0; t < N; t++)
        for (int r = 0; r < R; r++) {
            double want = 0;

            for (int c = 0; c < C; c++)
                want += x[t * C + c] * ref_decode(codes[r * C + c]) * scales[(r / 2) * 3 + c / 2];
            ck_assert_msg(fabs(out[t * R + r] - want) <= 1e-5 * (1 + fabs(want)), "[%d,%d] %g vs %g",
                          t, r, out[t * R + r], want);
        }
    be->ops->free_weight(be, &bw);
    backend_destroy(be);
}
END_TEST

START_TEST(fused_fp8_parts_keep_each_parts_scales_and_fp8_next_to_float_is_refused)
{
    uint8_t a[2 * 3] = { 0x38, 0x40, 0x30, 0xb8, 0x00, 0x7e }, c[1 * 3] = { 0x38, 0x38, 0x38 };
    float sa = 0.5f, sc[1] = { 3.0f }, x[3] = { 1.0f, 1.0f, 1.0f }, out[3];
    uint16_t bf[3] = { 0x3f80, 0x3f80, 0x3f80 };
    struct tensor_ref sar = { "a.weight_scale", &sa, DT_F32, 0, { 0 }, 4, NULL, { 0, 0 }, NULL };
    struct tensor_ref scr = { "c.weight_scale", sc, DT_F32, 2, { 1, 1 }, 4, NULL, { 0, 0 }, NULL };
    struct tensor_ref parts[2] = {
        { "a.weight", a, DT_F8_E4M3, 2, { 2, 3 }, sizeof a, &sar, { 2, 3 }, NULL },   /* per tensor */
        { "c.weight", c, DT_F8_E4M3, 2, { 1, 3 }, sizeof c, &scr, { 1, 3 }, NULL },   /* per channel */
    };
    struct tensor_ref mixed[2] = {
        parts[0], { "f.weight", bf, DT_BF16, 2, { 1, 3 }, sizeof bf, NULL, { 0, 0 }, NULL } };
    struct backend_options bo = { .num_threads = 1 };
    struct backend *be;
    struct bk_weight bw;
    char err[ERR_LEN] = "";

    ck_assert_int_eq(backend_create(&be, "cpu", &bo, err), 0);
    ck_assert_msg(be->ops->upload_weight(be, &bw, parts, 2, err) == 0, "%s", err);
    ck_assert_int_eq(be->ops->matmul(be, out, x, &bw, NULL, 1), 0);
    /* row 0: (1 + 2 + 0.5) * 0.5; row 1: (-1 + 0 + 448) * 0.5; row 2: 3 * 1 * 3 */
    ck_assert_float_eq_tol(out[0], 1.75f, 1e-6f);
    ck_assert_float_eq_tol(out[1], 223.5f, 1e-4f);
    ck_assert_float_eq_tol(out[2], 9.0f, 1e-6f);
    be->ops->free_weight(be, &bw);
    ck_assert_int_eq(be->ops->upload_weight(be, &bw, mixed, 2, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "f.weight"));
    ck_assert_ptr_nonnull(strstr(err, "F8_E4M3"));
    backend_destroy(be);
}
END_TEST

START_TEST(quantizing_at_load_gives_one_scale_per_row_of_amax_over_448)
{
    /* row 0: amax 896 -> scale 2, values / 2 = 448, -1, 0.5 -> 0x7e, 0xb8, 0x30
     * row 1: all zero -> scale 1, codes 0
     * row 2: amax 0.875 -> scale 0.875 / 448 = 1/512; 0.875 * 512 = 448 -> 0x7e,
     *        -0.4375 * 512 = -224 -> 0xf6, 0.001953125 * 512 = 1 -> 0x38 */
    const float w[9] = { 896.0f, -2.0f, 1.0f, 0, 0, 0, 0.875f, -0.4375f, 0.001953125f };
    const uint8_t want[9] = { 0x7e, 0xb8, 0x30, 0, 0, 0, 0x7e, 0xf6, 0x38 };
    const float want_s[3] = { 2.0f, 1.0f, 1.0f / 512 };
    struct tensor_ref t = { "w", w, DT_F32, 2, { 3, 3 }, sizeof w, NULL, { 0, 0 }, NULL }, sref, q;
    uint8_t data[9];
    float scales[3];

    ck_assert_int_eq(weights_quantize_fp8(&t, data, scales, &sref, &q), 0);
    for (int i = 0; i < 9; i++)
        ck_assert_msg(data[i] == want[i], "[%d] 0x%02x, want 0x%02x", i, data[i], want[i]);
    for (int r = 0; r < 3; r++)
        ck_assert_float_eq(scales[r], want_s[r]);
    ck_assert_int_eq(q.dtype, DT_F8_E4M3);
    ck_assert_ptr_eq(q.scale, &sref);
    ck_assert_int_eq(q.scale_block[0], 1);
    ck_assert_int_eq(q.scale_block[1], 3);
    ck_assert_int_eq(sref.shape[0], 3);
    t.ndim = 1;
    ck_assert_int_eq(weights_quantize_fp8(&t, data, scales, &sref, &q), -EINVAL);
}
END_TEST

Suite *fp8_suite(void)
{
    Suite *s = suite_create("fp8");
    TCase *tc = tcase_create("fp8");

    tcase_add_test(tc, every_code_decodes_as_the_format_defines_it);
    tcase_add_test(tc, encoding_rounds_to_nearest_even_and_saturates_at_448);
    tcase_add_test(tc, every_value_encodes_to_its_nearest_code);
    tcase_add_test(tc, fp8_cache_update_writes_the_expected_bytes_in_mapped_slots_only);
    tcase_add_test(tc, cache_update_refuses_a_bad_scale_or_dtype_and_writes_nothing);
    tcase_add_test(tc, bf16_cache_update_rounds_to_nearest_even);
    tcase_add_test(tc, fp8_attention_dequantizes_what_cache_update_wrote);
    tcase_add_test(tc, bf16_attention_widens_what_cache_update_wrote);
    tcase_add_test(tc, absmax_takes_the_largest_magnitude_of_strided_rows);
    tcase_add_test(tc, block_scaled_fp8_weights_multiply_as_their_dequantized_values);
    tcase_add_test(tc, fused_fp8_parts_keep_each_parts_scales_and_fp8_next_to_float_is_refused);
    tcase_add_test(tc, quantizing_at_load_gives_one_scale_per_row_of_amax_over_448);
    suite_add_tcase(s, tc);
    return s;
}

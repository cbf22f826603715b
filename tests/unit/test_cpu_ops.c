/* test_cpu_ops.c — the CPU backend's ops through its vtable, each against hand-computed
 * values or a plain double-precision loop written here: cache_update on a poisoned cache,
 * paged attention (padding, window, soft-cap, GQA), rmsnorm, silu_mul, rope, matmul, weight
 * upload, staging and sampling; plus the thread pool and backend selection. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/cpu/threadpool.h"
#include "tests/unit/random_model.h"

static struct backend *be;

static void setup(void)
{
    struct backend_options o = { .num_threads = 2, .max_tokens = 64, .max_reqs = 8,
                                 .max_blocks_per_req = 16, .num_kv_groups = 1, .vocab_size = 32 };
    char err[ERR_LEN];

    ck_assert_int_eq(backend_create(&be, "cpu", &o, err), 0);
}

static void teardown(void)
{
    backend_destroy(be);
    be = NULL;
}

static struct bk_weight f32_weight(float *data, int rows, int cols)
{
    return (struct bk_weight){ data, DT_F32, rows, cols, NULL, 0, 0, 0, NULL };
}

/* ---- cache_update ---- */

START_TEST(cache_update_writes_exactly_the_mapped_slots)
{
    enum { BLOCKS = 4, BS = 4, KV = 2, D = 3, ROW = KV * D, STRIDE = 10, N = 5 };
    struct cache_layout l = { BLOCKS, BS, KV, D, DT_F32, 0, 0 };
    float kc[BLOCKS * BS * ROW], vc[BLOCKS * BS * ROW], k[N * STRIDE], v[N * STRIDE];
    int64_t slots[N] = { 13, KV_PADDING_SLOT, 2, 7, KV_PADDING_SLOT };
    bool written[BLOCKS * BS] = { false };

    for (int i = 0; i < BLOCKS * BS * ROW; i++)
        kc[i] = vc[i] = NAN;
    for (int i = 0; i < N * STRIDE; i++) {
        k[i] = (float)i;
        v[i] = (float)-i;
    }
    ck_assert_int_eq(be->ops->cache_update(be, k, v, STRIDE, slots, N, kc, vc, &l), 0);
    for (int i = 0; i < N; i++) {
        if (slots[i] < 0)
            continue;
        written[slots[i]] = true;
        for (int j = 0; j < ROW; j++) {
            ck_assert_float_eq(kc[slots[i] * ROW + j], (float)(i * STRIDE + j));
            ck_assert_float_eq(vc[slots[i] * ROW + j], (float)-(i * STRIDE + j));
        }
    }
    for (int s = 0; s < BLOCKS * BS; s++)
        for (int j = 0; !written[s] && j < ROW; j++)
            ck_assert_msg(isnan(kc[s * ROW + j]) && isnan(vc[s * ROW + j]), "slot %d touched", s);
}
END_TEST

START_TEST(cache_update_refuses_a_slot_beyond_the_cache_and_writes_nothing_there)
{
    struct cache_layout l = { 2, 2, 1, 2, DT_F32, 0, 0 };
    float kc[8], vc[8], k[4] = { 1, 2, 3, 4 }, v[4] = { 5, 6, 7, 8 };
    int64_t slots[2] = { 4, 1 };

    for (int i = 0; i < 8; i++)
        kc[i] = vc[i] = NAN;
    ck_assert_int_eq(be->ops->cache_update(be, k, v, 2, slots, 2, kc, vc, &l), -EINVAL);
    ck_assert_float_eq(kc[2], 3.0f);   /* the valid token still landed */
    ck_assert_float_eq(vc[3], 8.0f);
    for (int i = 0; i < 8; i++)
        if (i != 2 && i != 3)
            ck_assert(isnan(kc[i]) && isnan(vc[i]));
}
END_TEST

/* ---- attention ---- */

enum { AB = 8, ABS = 4, AKV = 2, AH = 4, AD = 8, AMAXB = 6 };   /* cache and heads of the tests below */

struct attn_case {
    float kc[AB * ABS * AKV * AD], vc[AB * ABS * AKV * AD];
    int32_t qsl[5], seq[4], table[4 * AMAXB];
    struct bk_batch b;
    struct attn_params p;
};

static void attn_case_init(struct attn_case *c, uint64_t *rng)
{
    for (size_t i = 0; i < ARRAY_LEN(c->kc); i++) {
        c->kc[i] = test_randf(rng, -1, 1);
        c->vc[i] = test_randf(rng, -1, 1);
    }
    for (int i = 0; i < 4 * AMAXB; i++)
        c->table[i] = KV_NO_BLOCK;
    c->b = (struct bk_batch){ .num_kv_groups = 1, .max_blocks_per_req = AMAXB,
                              .query_start_loc = c->qsl, .seq_lens = c->seq };
    c->b.block_table[0] = c->table;
    c->p = (struct attn_params){ AH, AKV, AD, 1.0f / sqrtf(AD), 0.0f, 0, { AB, ABS, AKV, AD, DT_F32, 0, 0 }, NULL };
}

/* The reference: query row i of request r at position pos, keys (pos - window, pos] read
 * through the block table, scores soft-capped, softmax in double. */
static void naive_attention(double *o, const float *q, int pos, int r, int h,
                            const struct attn_case *c)
{
    int kvh = h / (AH / AKV), lo = c->p.window ? MAX(0, pos - c->p.window + 1) : 0;
    double s[64], m = -INFINITY, z = 0.0;

    for (int t = lo; t <= pos; t++) {
        int blk = c->table[r * AMAXB + t / ABS];
        const float *k = c->kc + ((blk * ABS + t % ABS) * AKV + kvh) * AD;
        double d = 0.0;

        for (int j = 0; j < AD; j++)
            d += (double)q[j] * k[j];
        d /= sqrt(AD);
        if (c->p.softcap > 0)
            d = c->p.softcap * tanh(d / c->p.softcap);
        s[t - lo] = d;
        m = MAX(m, d);
    }
    for (int j = 0; j < AD; j++)
        o[j] = 0.0;
    for (int t = lo; t <= pos; t++) {
        int blk = c->table[r * AMAXB + t / ABS];
        const float *v = c->vc + ((blk * ABS + t % ABS) * AKV + kvh) * AD;
        double e = exp(s[t - lo] - m);

        z += e;
        for (int j = 0; j < AD; j++)
            o[j] += e * v[j];
    }
    for (int j = 0; j < AD; j++)
        o[j] /= z;
}

START_TEST(attention_rows_of_padding_are_zero)
{
    static struct attn_case c;
    uint64_t rng = 1;
    float q[8 * AH * AD], out[8 * AH * AD];

    attn_case_init(&c, &rng);
    /* request 0 decodes at position 5 (blocks 3, 6); requests 1 and 2 are padding; tokens 3
     * to 7 belong to no request */
    c.table[0] = 3;
    c.table[1] = 6;
    memcpy(c.qsl, (int32_t[]){ 0, 1, 2, 3 }, sizeof(int32_t) * 4);
    memcpy(c.seq, (int32_t[]){ 6, 0, 0 }, sizeof(int32_t) * 3);
    c.b.num_reqs = 3;
    c.b.num_tokens = 8;
    for (int i = 0; i < 8 * AH * AD; i++) {
        q[i] = test_randf(&rng, -1, 1);
        out[i] = 7.0f;
    }
    ck_assert_int_eq(be->ops->attention(be, out, q, AH * AD, c.kc, c.vc, &c.b, 0, &c.p), 0);
    for (int i = AH * AD; i < 8 * AH * AD; i++)
        ck_assert_float_eq(out[i], 0.0f);
    for (int h = 0; h < AH; h++) {
        double want[AD];
        naive_attention(want, q + h * AD, 5, 0, h, &c);
        for (int j = 0; j < AD; j++)
            ck_assert_double_eq_tol(out[h * AD + j], want[j], 1e-5);
    }
}
END_TEST

START_TEST(attention_matches_a_naive_loop_with_gqa_window_and_softcap)
{
    static struct attn_case c;
    uint64_t rng = 2;
    enum { N = 7, QS = 3 * AH * AD };   /* q rows are wider than the heads: a qkv view */
    float q[N * QS], out[N * AH * AD];
    int pos[N];

    for (int variant = 0; variant < 3; variant++) {
        attn_case_init(&c, &rng);
        c.p.window = variant >= 1 ? 5 : 0;
        c.p.softcap = variant == 2 ? 0.7f : 0.0f;
        /* request 0: a prefill chunk of 5 new tokens after 14 in context (positions 14..18),
         * blocks 5 2 7 0 4; request 1: decode at position 9, blocks 1 6 3 */
        memcpy(c.table, (int32_t[]){ 5, 2, 7, 0, 4 }, sizeof(int32_t) * 5);
        memcpy(c.table + AMAXB, (int32_t[]){ 1, 6, 3 }, sizeof(int32_t) * 3);
        memcpy(c.qsl, (int32_t[]){ 0, 5, 6 }, sizeof(int32_t) * 3);
        memcpy(c.seq, (int32_t[]){ 19, 10 }, sizeof(int32_t) * 2);
        c.b.num_reqs = 2;
        c.b.num_tokens = N;              /* the last token is a padding row */
        for (int i = 0; i < 5; i++)
            pos[i] = 14 + i;
        pos[5] = 9;
        for (int i = 0; i < N * QS; i++)
            q[i] = test_randf(&rng, -2, 2);
        ck_assert_int_eq(be->ops->attention(be, out, q, QS, c.kc, c.vc, &c.b, 0, &c.p), 0);
        for (int i = 0; i < 6; i++)
            for (int h = 0; h < AH; h++) {
                double want[AD];
                naive_attention(want, q + i * QS + h * AD, pos[i], i < 5 ? 0 : 1, h, &c);
                for (int j = 0; j < AD; j++)
                    ck_assert_double_eq_tol(out[(i * AH + h) * AD + j], want[j], 2e-5);
            }
        for (int j = 0; j < AH * AD; j++)
            ck_assert_float_eq(out[6 * AH * AD + j], 0.0f);
    }
}
END_TEST

START_TEST(attention_refuses_a_missing_block_instead_of_reading_it)
{
    static struct attn_case c;
    uint64_t rng = 3;
    float q[AH * AD], out[AH * AD];

    attn_case_init(&c, &rng);
    c.table[0] = KV_NO_BLOCK;                  /* position 0 is in the (full) window */
    c.table[1] = 2;
    memcpy(c.qsl, (int32_t[]){ 0, 1 }, sizeof(int32_t) * 2);
    c.seq[0] = 6;
    c.b.num_reqs = 1;
    c.b.num_tokens = 1;
    for (int i = 0; i < AH * AD; i++)
        q[i] = 1.0f;
    ck_assert_int_eq(be->ops->attention(be, out, q, AH * AD, c.kc, c.vc, &c.b, 0, &c.p), -EINVAL);
    c.table[0] = AB;                           /* a block beyond the cache */
    ck_assert_int_eq(be->ops->attention(be, out, q, AH * AD, c.kc, c.vc, &c.b, 0, &c.p), -EINVAL);
    /* with a window of 2 the first block is out of reach and may be absent */
    c.table[0] = KV_NO_BLOCK;
    c.p.window = 2;
    ck_assert_int_eq(be->ops->attention(be, out, q, AH * AD, c.kc, c.vc, &c.b, 0, &c.p), 0);
}
END_TEST

/* ---- norms and activations ---- */

START_TEST(rmsnorm_scales_by_the_root_mean_square_times_the_weight)
{
    float x[8] = { 1, 2, 3, 4, -2, 0, 0, 2 }, out[8], w[4] = { 1, 1, 2, 0.5f };
    struct bk_weight wt = f32_weight(w, 4, 1);
    double r0 = 1.0 / sqrt(30.0 / 4 + 1e-5), r1 = 1.0 / sqrt(8.0 / 4 + 1e-5);

    ck_assert_int_eq(be->ops->rmsnorm(be, out, NULL, x, &wt, 2, 1e-5f), 0);
    ck_assert_double_eq_tol(out[0], 1 * r0, 1e-6);
    ck_assert_double_eq_tol(out[2], 3 * r0 * 2, 1e-6);
    ck_assert_double_eq_tol(out[3], 4 * r0 * 0.5, 1e-6);
    ck_assert_double_eq_tol(out[4], -2 * r1, 1e-6);
    ck_assert_double_eq_tol(out[7], 2 * r1 * 0.5, 1e-6);
}
END_TEST

START_TEST(rmsnorm_with_a_residual_adds_into_it_then_normalizes_the_sum)
{
    float x[4] = { 1, -1, 2, 0 }, res[4] = { 1, 3, -1, 2 }, out[4];
    uint16_t w[4] = { 0x3f80, 0x3f80, 0x4000, 0x3f80 };   /* bf16 1, 1, 2, 1 */
    struct bk_weight wt = { w, DT_BF16, 4, 1, NULL, 0, 0, 0, NULL };
    double r = 1.0 / sqrt((4 + 4 + 1 + 4) / 4.0 + 1e-6);  /* sum = 2, 2, 1, 2 */

    ck_assert_int_eq(be->ops->rmsnorm(be, out, res, x, &wt, 1, 1e-6f), 0);
    ck_assert_float_eq(res[0], 2.0f);
    ck_assert_float_eq(res[1], 2.0f);
    ck_assert_float_eq(res[2], 1.0f);
    ck_assert_float_eq(res[3], 2.0f);
    ck_assert_double_eq_tol(out[0], 2 * r, 1e-6);
    ck_assert_double_eq_tol(out[2], 1 * r * 2, 1e-6);
}
END_TEST

START_TEST(head_rmsnorm_normalizes_each_head_on_its_own)
{
    /* one row of stride 6: two heads of 2, then 2 elements that are not heads */
    float x[6] = { 3, 4, 1, 1, 9, 9 }, w[2] = { 1, 2 };
    struct bk_weight wt = f32_weight(w, 2, 1);
    double r0 = 1.0 / sqrt(12.5), r1 = 1.0;

    ck_assert_int_eq(be->ops->head_rmsnorm(be, x, 6, 2, 2, &wt, 1, 0.0f), 0);
    ck_assert_double_eq_tol(x[0], 3 * r0, 1e-6);
    ck_assert_double_eq_tol(x[1], 4 * r0 * 2, 1e-6);
    ck_assert_double_eq_tol(x[2], 1 * r1, 1e-6);
    ck_assert_double_eq_tol(x[3], 2 * r1, 1e-6);
    ck_assert_float_eq(x[4], 9.0f);
}
END_TEST

START_TEST(silu_mul_multiplies_silu_of_the_gate_by_up)
{
    /* two rows of [gate(3) | up(3)] */
    float gu[12] = { 1, -2, 0, 2, 3, 5, 4, 0.5f, -1, 1, -1, 2 }, out[6];

    ck_assert_int_eq(be->ops->silu_mul(be, out, gu, 2, 3), 0);
    ck_assert_double_eq_tol(out[0], 0.7310585786300049 * 2, 1e-6);   /* silu(1) = 1/(1+e^-1) */
    ck_assert_double_eq_tol(out[1], -0.2384058440442351 * 3, 1e-6);  /* -2/(1+e^2) */
    ck_assert_double_eq_tol(out[2], 0.0, 1e-7);
    ck_assert_double_eq_tol(out[3], 3.928055160151634 * 1, 1e-5);    /* 4/(1+e^-4) */
    ck_assert_double_eq_tol(out[5], -0.2689414213699951 * 2, 1e-6);  /* -1/(1+e) */
}
END_TEST

START_TEST(rope_turns_pair_i_and_i_plus_half_by_position_times_inv_freq)
{
    /* head_dim 4, one q head and one k head, rows of stride 8; inv_freq 1 and 0.5 */
    float inv[2] = { 1.0f, 0.5f };
    float qk[16] = { 1, 2, 3, 4, 5, 6, 7, 8,   1, 2, 3, 4, 5, 6, 7, 8 };
    int32_t pos[2] = { 0, 3 };
    struct rope_params p = { 1, 1, 4, 8, inv, 4, 1.0f };

    ck_assert_int_eq(be->ops->rope(be, qk, qk + 4, pos, 2, &p), 0);
    for (int i = 0; i < 8; i++)
        ck_assert_double_eq_tol(qk[i], i + 1, 1e-6);   /* position 0: no turn */
    /* position 3: pair (0,2) by 3 rad, pair (1,3) by 1.5 rad */
    ck_assert_double_eq_tol(qk[8], 1 * cos(3.0) - 3 * sin(3.0), 1e-5);
    ck_assert_double_eq_tol(qk[10], 3 * cos(3.0) + 1 * sin(3.0), 1e-5);
    ck_assert_double_eq_tol(qk[9], 2 * cos(1.5) - 4 * sin(1.5), 1e-5);
    ck_assert_double_eq_tol(qk[11], 4 * cos(1.5) + 2 * sin(1.5), 1e-5);
    ck_assert_double_eq_tol(qk[12], 5 * cos(3.0) - 7 * sin(3.0), 1e-5);   /* k */
    ck_assert_double_eq_tol(qk[15], 8 * cos(1.5) + 6 * sin(1.5), 1e-5);
}
END_TEST

/* ---- matmul ---- */

static void check_matmul(enum dtype dt, int n, bool with_bias)
{
    enum { ROWS = 45, COLS = 600 };     /* rows not a multiple of the task, cols over a slice */
    uint64_t rng = 5 + n;
    float *x = malloc(sizeof(float) * n * COLS), *out = malloc(sizeof(float) * n * ROWS);
    float *wf = malloc(sizeof(float) * ROWS * COLS), bias[ROWS];
    uint16_t *wb = malloc(sizeof(uint16_t) * ROWS * COLS);
    struct bk_weight w = { dt == DT_F32 ? (void *)wf : (void *)wb, dt, ROWS, COLS, NULL, 0, 0, 0, NULL };
    struct bk_weight bw = f32_weight(bias, ROWS, 1);

    for (int i = 0; i < ROWS * COLS; i++) {
        wb[i] = f32_to_bf16(test_randf(&rng, -1, 1));
        wf[i] = dt == DT_F32 ? test_randf(&rng, -1, 1) : bf16_to_f32(wb[i]);
    }
    for (int i = 0; i < n * COLS; i++)
        x[i] = test_randf(&rng, -1, 1);
    for (int i = 0; i < ROWS; i++)
        bias[i] = test_randf(&rng, -1, 1);
    ck_assert_int_eq(be->ops->matmul(be, out, x, &w, with_bias ? &bw : NULL, n), 0);
    for (int t = 0; t < n; t++)
        for (int r = 0; r < ROWS; r++) {
            double want = with_bias ? bias[r] : 0.0;
            for (int c = 0; c < COLS; c++)
                want += (double)x[t * COLS + c] * wf[r * COLS + c];
            ck_assert_msg(fabs(out[t * ROWS + r] - want) < 1e-4,
                          "dtype %d n %d: out[%d][%d] = %g, want %g", dt, n, t, r,
                          out[t * ROWS + r], want);
        }
    if (!with_bias) {   /* the LM head is the same product, f32 out */
        float *logits = malloc(sizeof(float) * n * ROWS);
        ck_assert_int_eq(be->ops->lm_head(be, logits, x, &w, n), 0);
        ck_assert_mem_eq(logits, out, sizeof(float) * n * ROWS);
        free(logits);
    }
    free(x);
    free(out);
    free(wf);
    free(wb);
}

START_TEST(matmul_matches_a_double_precision_loop)
{
    check_matmul(DT_F32, 1, false);
    check_matmul(DT_F32, 37, true);
    check_matmul(DT_BF16, 1, true);
    check_matmul(DT_BF16, 37, false);
}
END_TEST

/* ---- embedding, gather, weights ---- */

START_TEST(embedding_reads_table_rows_and_zeroes_ids_outside_the_table)
{
    uint16_t table[3 * 2] = { 0x3f80, 0x4000, 0x4040, 0x4080, 0xbf80, 0x0000 };  /* 1 2 3 4 -1 0 */
    struct bk_weight w = { table, DT_BF16, 3, 2, NULL, 0, 0, 0, NULL };
    int32_t ids[3] = { 2, 0, 1 }, bad[2] = { 1, 3 };
    float x[6];

    ck_assert_int_eq(be->ops->embedding(be, x, ids, &w, 3), 0);
    ck_assert_mem_eq(x, ((float[]){ -1, 0, 1, 2, 3, 4 }), sizeof x);
    ck_assert_int_eq(be->ops->embedding(be, x, bad, &w, 2), -EINVAL);
    ck_assert_float_eq(x[0], 3.0f);
    ck_assert_float_eq(x[2], 0.0f);
    ck_assert_float_eq(x[3], 0.0f);
}
END_TEST

START_TEST(gather_rows_copies_the_listed_rows_in_order)
{
    float x[8] = { 0, 1, 10, 11, 20, 21, 30, 31 }, out[6];
    int32_t rows[3] = { 3, 0, 3 };

    ck_assert_int_eq(be->ops->gather_rows(be, out, x, rows, 3, 2), 0);
    ck_assert_mem_eq(out, ((float[]){ 30, 31, 0, 1, 30, 31 }), sizeof out);
}
END_TEST

START_TEST(upload_weight_shares_single_tensors_and_stacks_parts_by_rows)
{
    float a[4] = { 1, 2, 3, 4 }, b[2] = { 5, 6 };
    uint16_t h[2] = { 0x3c00, 0xc000 };   /* f16 1, -2 */
    uint16_t bf[2] = { 0x3f80, 0x4000 };  /* bf16 1, 2 */
    struct tensor_ref ta = { "a", a, DT_F32, 2, { 2, 2 }, sizeof a, NULL, { 0, 0 }, NULL };
    struct tensor_ref tb = { "b", b, DT_F32, 2, { 1, 2 }, sizeof b, NULL, { 0, 0 }, NULL };
    struct tensor_ref th = { "h", h, DT_F16, 2, { 1, 2 }, sizeof h, NULL, { 0, 0 }, NULL };
    struct tensor_ref tbf = { "bf", bf, DT_BF16, 1, { 2 }, sizeof bf, NULL, { 0, 0 }, NULL };
    struct tensor_ref parts[3] = { ta, tb, th };
    struct bk_weight w;
    char err[ERR_LEN];

    ck_assert_int_eq(be->ops->upload_weight(be, &w, &ta, 1, err), 0);
    ck_assert_ptr_eq(w.data, a);                       /* zero copy */
    ck_assert_int_eq(w.rows, 2);
    ck_assert_int_eq(w.cols, 2);
    be->ops->free_weight(be, &w);
    ck_assert_float_eq(a[3], 4.0f);                    /* not freed, still ours */

    ck_assert_int_eq(be->ops->upload_weight(be, &w, &tbf, 1, err), 0);
    ck_assert_ptr_eq(w.data, bf);
    ck_assert_int_eq(w.dtype, DT_BF16);
    ck_assert_int_eq(w.rows, 2);
    ck_assert_int_eq(w.cols, 1);
    be->ops->free_weight(be, &w);

    ck_assert_int_eq(be->ops->upload_weight(be, &w, parts, 3, err), 0);
    ck_assert_int_eq(w.dtype, DT_F32);                 /* f16 among them: widened */
    ck_assert_int_eq(w.rows, 4);
    ck_assert_mem_eq(w.data, ((float[]){ 1, 2, 3, 4, 5, 6, 1, -2 }), 8 * sizeof(float));
    be->ops->free_weight(be, &w);
    ck_assert_ptr_null(w.data);

    parts[1].shape[1] = 1;                             /* columns differ */
    parts[1].nbytes = sizeof(float);
    ck_assert_int_eq(be->ops->upload_weight(be, &w, parts, 3, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "columns"));
    ta.nbytes = 8;                                     /* shorter than its shape */
    ck_assert_int_eq(be->ops->upload_weight(be, &w, &ta, 1, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "a"));
}
END_TEST

/* ---- staging and sampling ---- */

START_TEST(sample_runs_the_sampler_on_every_staged_row)
{
    struct step_batch b;
    struct bk_batch dev;
    struct sample_row rows[2] = {
        { .temperature = 0.0f, .top_p = 1, .repetition_penalty = 1, .num_logprobs = 2 },
        { .temperature = 1.0f, .top_p = 1, .repetition_penalty = 1, .seed = 9, .counter = 4,
          .num_logprobs = -1 },
    };
    struct sample_result got[2], want;
    float logits[3 * 32], scratch[64];
    uint64_t rng = 8;

    ck_assert_int_eq(batch_init(&b, 4, 4, 1, 2), 0);
    b.num_reqs = b.num_tokens = b.num_sample = 2;
    b.decode_only = true;
    ck_assert_int_eq(batch_pad(&b, 3), 0);             /* plus a padding row */
    ck_assert_int_eq(be->ops->stage(be, &b, rows, &dev), 0);
    ck_assert_int_eq(dev.num_sample, 3);
    ck_assert_ptr_eq(dev.input_ids, b.input_ids);
    for (int i = 0; i < 3 * 32; i++)
        logits[i] = test_randf(&rng, -3, 3);
    ck_assert_int_eq(be->ops->sample(be, logits, 32, &dev), 0);
    ck_assert_int_eq(be->ops->fetch_results(be, got, 2), 0);
    for (int i = 0; i < 2; i++) {
        sampler_sample_row(logits + i * 32, 32, &rows[i], &want, scratch);
        ck_assert_mem_eq(&got[i], &want, sizeof want);
    }
    ck_assert_int_eq(be->ops->fetch_results(be, got, 4), -EINVAL);
    b.num_tokens_padded = 65;                          /* beyond max_tokens */
    ck_assert_int_eq(be->ops->stage(be, &b, rows, &dev), -EINVAL);
    batch_fini(&b);
}
END_TEST

/* ---- the pool and the backend itself ---- */

static void count_task(void *arg, int task, int thread)
{
    atomic_int *hits = arg;
    atomic_fetch_add(&hits[task], 1);
    atomic_fetch_add(&hits[1000 + thread], 1);
}

START_TEST(the_thread_pool_runs_every_task_exactly_once)
{
    static atomic_int hits[1004];
    struct threadpool *tp;

    ck_assert_int_eq(threadpool_create(&tp, 3), 0);
    ck_assert_int_eq(threadpool_size(tp), 3);
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 1004; i++)
            atomic_store(&hits[i], 0);
        threadpool_run(tp, 1000, count_task, hits);
        for (int i = 0; i < 1000; i++)
            ck_assert_int_eq(atomic_load(&hits[i]), 1);
        ck_assert_int_eq(atomic_load(&hits[1000]) + atomic_load(&hits[1001]) +
                         atomic_load(&hits[1002]), 1000);
    }
    threadpool_destroy(tp);
    ck_assert_int_eq(threadpool_create(&tp, 0), -EINVAL);
}
END_TEST

START_TEST(backend_create_knows_cpu_and_refuses_cuda_without_it)
{
    struct backend_options o = { .num_threads = 1 };
    struct backend *b2;
    char err[ERR_LEN] = "";
    size_t free_b, total_b;

    ck_assert_str_eq(be->ops->name, "cpu");
    ck_assert_int_eq(be->ops->act_dtype, DT_F32);
    ck_assert_ptr_null(be->ops->graph_capture);
    ck_assert_int_eq(be->ops->mem_info(be, &free_b, &total_b), 0);
    ck_assert(total_b > 0 && free_b <= total_b);
#ifndef OSPREY_CUDA
    ck_assert(!backend_cuda_available());
    ck_assert_int_eq(backend_create(&b2, "cuda", &o, err), -ENODEV);
    ck_assert_ptr_nonnull(strstr(err, "cuda"));
#endif
    ck_assert_int_eq(backend_create(&b2, "tpu", &o, err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "tpu"));
    ck_assert_ptr_null(b2);
    backend_destroy(NULL);
}
END_TEST

Suite *cpu_ops_suite(void)
{
    Suite *s = suite_create("cpu_ops");
    TCase *tc = tcase_create("cpu_ops");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, cache_update_writes_exactly_the_mapped_slots);
    tcase_add_test(tc, cache_update_refuses_a_slot_beyond_the_cache_and_writes_nothing_there);
    tcase_add_test(tc, attention_rows_of_padding_are_zero);
    tcase_add_test(tc, attention_matches_a_naive_loop_with_gqa_window_and_softcap);
    tcase_add_test(tc, attention_refuses_a_missing_block_instead_of_reading_it);
    tcase_add_test(tc, rmsnorm_scales_by_the_root_mean_square_times_the_weight);
    tcase_add_test(tc, rmsnorm_with_a_residual_adds_into_it_then_normalizes_the_sum);
    tcase_add_test(tc, head_rmsnorm_normalizes_each_head_on_its_own);
    tcase_add_test(tc, silu_mul_multiplies_silu_of_the_gate_by_up);
    tcase_add_test(tc, rope_turns_pair_i_and_i_plus_half_by_position_times_inv_freq);
    tcase_add_test(tc, matmul_matches_a_double_precision_loop);
    tcase_add_test(tc, embedding_reads_table_rows_and_zeroes_ids_outside_the_table);
    tcase_add_test(tc, gather_rows_copies_the_listed_rows_in_order);
    tcase_add_test(tc, upload_weight_shares_single_tensors_and_stacks_parts_by_rows);
    tcase_add_test(tc, sample_runs_the_sampler_on_every_staged_row);
    tcase_add_test(tc, the_thread_pool_runs_every_task_exactly_once);
    tcase_add_test(tc, backend_create_knows_cpu_and_refuses_cuda_without_it);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

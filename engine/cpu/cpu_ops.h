/* cpu_ops.h — the CPU reference ops, one file per op family (engine/cpu/<op>.c), called by
 * the vtable in backend_cpu.c and directly by tests. Activations are f32, the KV cache f32,
 * bf16 or fp8 (cache_layout.dtype); weights are bf16, f32 or F8_E4M3 with scales (struct
 * bk_weight); every sum is taken in f32 or better. Each op
 * has the argument list of its backend_ops entry, with the thread pool in place of the
 * backend, and returns 0 or -EINVAL for a shape or index it cannot honour (nothing is read
 * or written out of bounds then). */
#ifndef OSPREY_CPU_OPS_H
#define OSPREY_CPU_OPS_H

#include <stdint.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/base/fp8.h"
#include "engine/cpu/threadpool.h"

/* Element i of a weight (or bias, or norm) in f32: bf16 widens by a shift, fp8 decodes and
 * takes its scale. */
static inline float weight_at(const struct bk_weight *w, size_t i)
{
    if (w->dtype == DT_BF16)
        return bf16_to_f32(((const uint16_t *)w->data)[i]);
    if (w->dtype == DT_F8_E4M3) {
        size_t r = i / w->cols, c = i % w->cols;
        return fp8_e4m3_to_f32(((const uint8_t *)w->data)[i]) *
               w->scale[r * w->scale_cols + c / w->scale_block];
    }
    return ((const float *)w->data)[i];
}

/* Columns [c0, c0 + nc) of row r of an F8_E4M3 weight in f32 (lut: fp8_e4m3_table), one
 * scale per run of columns that shares it. */
static inline void weight_row_fp8(float *dst, const struct bk_weight *w, const float *lut, int r,
                                  int c0, int nc)
{
    const uint8_t *src = (const uint8_t *)w->data + (size_t)r * w->cols;
    const float *scale = w->scale + (size_t)r * w->scale_cols;

    for (int c = c0; c < c0 + nc;) {
        int end = MIN(c0 + nc, (c / w->scale_block + 1) * w->scale_block);
        float s = scale[c / w->scale_block];

        for (; c < end; c++)
            dst[c - c0] = lut[src[c]] * s;
    }
}

/* Row r of a weight as f32 into dst[cols] (a plain copy for f32; a shift for bf16, written
 * so that the compiler vectorizes it). */
static inline void weight_row_f32(float *dst, const struct bk_weight *w, int r, int c0, int nc)
{
    size_t base = (size_t)r * w->cols + c0;

    if (w->dtype == DT_BF16) {
        const uint16_t *src = (const uint16_t *)w->data + base;
        for (int i = 0; i < nc; i++) {
            uint32_t u = (uint32_t)src[i] << 16;
            memcpy(&dst[i], &u, sizeof u);
        }
    } else {
        memcpy(dst, (const float *)w->data + base, (size_t)nc * sizeof *dst);
    }
}

/* Dot product of two f32 vectors with 16 independent partial sums, so that -O2/-O3 turn
 * the inner loop into SIMD without -ffast-math (the summation order is fixed). */
static inline float dot_f32(const float *a, const float *b, int n)
{
    float acc[16] = { 0 };
    float s = 0.0f;
    int i = 0;

    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++)
            acc[k] += a[i + k] * b[i + k];
    for (; i < n; i++)
        s += a[i] * b[i];
    for (int k = 0; k < 16; k++)
        s += acc[k];
    return s;
}

/* embedding.c */
int embedding_cpu(float *x, const int32_t *ids, const struct bk_weight *table, int n);
int gather_rows_cpu(float *out, const float *x, const int32_t *rows, int n, int dim);

/* rmsnorm.c */
int rmsnorm_cpu(float *out, float *residual, const float *x, const struct bk_weight *w, int n,
                float eps);
int head_rmsnorm_cpu(float *x, int stride, int heads, int head_dim, const struct bk_weight *w,
                     int n, float eps);

/* matmul.c: out[n, w.rows] = x[n, w.cols] · wᵀ (+ bias), threaded over output rows; w is
 * f32, bf16 or F8_E4M3 with scales (dequantized slice by slice: W8A16) */
int matmul_cpu(struct threadpool *tp, float *out, const float *x, const struct bk_weight *w,
               const struct bk_weight *bias, int n);

/* matmul_t.c: out[n, w.cols] = x[n, w.rows] · w (+ bias) for an input-major w, f32 or bf16,
 * threaded over output columns; with deinterleave (w.cols even), out's column j < cols / 2
 * is w's (and bias's) column 2j and column cols / 2 + j is 2j + 1 (gpt-oss's gate and up) */
int matmul_t_cpu(struct threadpool *tp, float *out, const float *x, const struct bk_weight *w,
                 const struct bk_weight *bias, int n, bool deinterleave);

/* rope.c */
int rope_cpu(float *q, float *k, const int32_t *positions, int n, const struct rope_params *p);

/* cache_update.c: the cache holds l->dtype (F32, BF16, or F8_E4M3 with l->k_scale/v_scale) */
int cache_update_cpu(const float *k, const float *v, int kv_stride, const int64_t *slot_mapping,
                     int n, void *k_cache, void *v_cache, const struct cache_layout *l);

/* cache_update.c: *out = max |x| over rows [n, cols] stride elements apart (0 for n = 0) */
int absmax_cpu(float *out, const float *x, int stride, int n, int cols);

/* attention.c: threaded over (request, head); reads the cache's dtype as cache_update wrote it */
int attention_cpu(struct threadpool *tp, float *out, const float *q, int q_stride,
                  const void *k_cache, const void *v_cache, const struct bk_batch *b,
                  int group, const struct attn_params *p);

/* activation.c */
int silu_mul_cpu(float *out, const float *gate_up, int n, int ffn);
int gelu_tanh_mul_cpu(float *out, const float *gate_up, int n, int ffn);
int swiglu_oai_mul_cpu(float *out, const float *gate_up, int n, int ffn, float alpha, float limit);

/* moe.c: a mixture-of-experts block (struct moe_params), the experts in index order */
int moe_cpu(struct threadpool *tp, float *out, const float *x, const struct moe_weights *w,
            int n, const struct moe_params *p);
size_t moe_cpu_work_bytes(int n, const struct moe_params *p);   /* its scratch (moe_params.work) */

/* scale.c */
int scale_cpu(float *x, int n, int dim, float s);
int softcap_cpu(float *logits, int n, int vocab, float cap);

#endif

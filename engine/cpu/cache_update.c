/* cache_update.c — kernel 1 of an attention layer, CPU reference: writes each new token's
 * K and V rows into its cache slot, converted to the cache's dtype (f32 as is, bf16 rounded
 * to nearest even, fp8 e4m3 as x / scale with the layer's k_scale or v_scale). Its CUDA twin
 * is kernels/cache_update.cu; the layer calls it before attention, which only reads the
 * cache. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "engine/cpu/cpu_ops.h"

/* One row of `row` f32 values into the cache's dtype at dst. */
static void write_row(void *dst, const float *src, size_t row, enum dtype dt, float scale)
{
    if (dt == DT_F8_E4M3) {
        fp8_e4m3_quantize(dst, src, row, scale);
    } else if (dt == DT_BF16) {
        for (size_t i = 0; i < row; i++)
            ((uint16_t *)dst)[i] = f32_to_bf16(src[i]);
    } else {
        memcpy(dst, src, row * sizeof(float));
    }
}

int absmax_cpu(float *out, const float *x, int stride, int n, int cols)
{
    float m = 0.0f;

    if (n < 0 || cols < 0 || stride < cols)
        return -EINVAL;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < cols; j++)
            m = fmaxf(m, fabsf(x[(size_t)i * stride + j]));
    *out = m;
    return 0;
}

/* k, v: [n, rows kv_stride apart, num_kv_heads * head_dim] (views into the fused qkv rows).
 * Token i goes to slot slot_mapping[i] = block * block_size + offset; KV_PADDING_SLOT
 * writes nothing and a slot beyond the cache writes nothing and returns -EINVAL. No other
 * slot is touched. A cache dtype other than F32, BF16 and F8_E4M3, or an fp8 scale that is
 * not finite and > 0, writes nothing and returns -EINVAL. */
int cache_update_cpu(const float *k, const float *v, int kv_stride, const int64_t *slot_mapping,
                     int n, void *k_cache, void *v_cache, const struct cache_layout *l)
{
    size_t row = (size_t)l->num_kv_heads * l->head_dim, es = dtype_size(l->dtype);
    int64_t num_slots = (int64_t)l->num_blocks * l->block_size;
    int rc = 0;

    if (l->dtype != DT_F32 && l->dtype != DT_BF16 && l->dtype != DT_F8_E4M3)
        return -EINVAL;
    if (l->dtype == DT_F8_E4M3 && !(isfinite(l->k_scale) && l->k_scale > 0 &&
                                    isfinite(l->v_scale) && l->v_scale > 0))
        return -EINVAL;
    for (int i = 0; i < n; i++) {
        int64_t slot = slot_mapping[i];

        if (slot == KV_PADDING_SLOT)
            continue;
        if (slot < 0 || slot >= num_slots) {
            rc = -EINVAL;
            continue;
        }
        write_row((char *)k_cache + slot * row * es, k + (size_t)i * kv_stride, row, l->dtype,
                  l->k_scale);
        write_row((char *)v_cache + slot * row * es, v + (size_t)i * kv_stride, row, l->dtype,
                  l->v_scale);
    }
    return rc;
}

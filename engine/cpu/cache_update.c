/* cache_update.c — kernel 1 of an attention layer, CPU reference: writes each new token's
 * K and V rows into its cache slot. Its CUDA twin is kernels/cache_update.cu; the layer
 * calls it before attention, which only reads the cache. */
#include <errno.h>
#include <string.h>

#include "engine/cpu/cpu_ops.h"

/* k, v: [n, rows kv_stride apart, num_kv_heads * head_dim] (views into the fused qkv rows).
 * Token i goes to slot slot_mapping[i] = block * block_size + offset; KV_PADDING_SLOT
 * writes nothing and a slot beyond the cache writes nothing and returns -EINVAL. No other
 * slot is touched. */
int cache_update_cpu(const float *k, const float *v, int kv_stride, const int64_t *slot_mapping,
                     int n, float *k_cache, float *v_cache, const struct cache_layout *l)
{
    size_t row = (size_t)l->num_kv_heads * l->head_dim;
    int64_t num_slots = (int64_t)l->num_blocks * l->block_size;
    int rc = 0;

    for (int i = 0; i < n; i++) {
        int64_t slot = slot_mapping[i];

        if (slot == KV_PADDING_SLOT)
            continue;
        if (slot < 0 || slot >= num_slots) {
            rc = -EINVAL;
            continue;
        }
        memcpy(k_cache + slot * row, k + (size_t)i * kv_stride, row * sizeof(float));
        memcpy(v_cache + slot * row, v + (size_t)i * kv_stride, row * sizeof(float));
    }
    return rc;
}

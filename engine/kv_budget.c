/* kv_budget.c — how many KV-cache blocks fit: the explicit --kv-cache-memory, or on a GPU
 * what --gpu-memory-utilization leaves after weights, activations and a reserve, or on a
 * CPU a modest default. The engine asks once, before the runner allocates the cache. */
#include <string.h>

#include "engine/backend.h"
#include "engine/kv_budget.h"
#include "engine/base/log.h"
#include "engine/runner.h"
#include "engine/base/util.h"
#include "engine/weights.h"
#include "scheduler/kv_cache.h"   /* kv_cache_max_blocks */

/* Activation buffers of a step of cap_tokens tokens and cap_reqs sampled rows (forward.h). */
static size_t activation_bytes(const struct model_config *c, int cap_tokens, int cap_reqs, size_t elem)
{
    size_t h = c->hidden_size, q = (size_t)c->num_heads * c->head_dim;
    size_t kv = (size_t)c->num_kv_heads * c->head_dim, ffn = c->intermediate_size;
    size_t per_token = 3 * h + (q + 2 * kv) + q + 3 * ffn;
    return elem * per_token * cap_tokens + (size_t)cap_reqs * (2 * h * elem + 4 * (size_t)c->vocab_size);
}

int kv_budget_max_request_tokens(int num_blocks, int block_size, int num_groups,
                                 const int *group_window, int max_num_batched_tokens,
                                 int max_model_len)
{
    struct kv_cache shape;   /* only what kv_cache_max_blocks reads: block size and groups */
    int lo = 0, hi = max_model_len;

    memset(&shape, 0, sizeof shape);
    shape.block_size = block_size;
    shape.num_groups = MIN(num_groups, KV_MAX_GROUPS);
    memcpy(shape.group_window, group_window, (size_t)shape.num_groups * sizeof *group_window);
    /* The blocks a request needs grow with its length: the largest that fits, by bisection. */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;

        if (kv_cache_max_blocks(&shape, mid, MIN(mid, max_num_batched_tokens)) <= num_blocks)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

int kv_budget_blocks(const struct model_config *c, const struct engine_options *o,
                     struct backend *be, const char *backend, enum dtype kv_dtype,
                     const struct backend_options *bo, char *err)
{
    int cap_tokens = bo->max_tokens, cap_reqs = bo->max_reqs;
    size_t block = runner_kv_block_bytes(c, be, kv_dtype, o->block_size), bytes = o->kv_cache_bytes;
    size_t elem = dtype_size(be->ops->act_dtype);

    if (bytes == 0 && !strcmp(backend, "cuda")) {
        const size_t reserve = 512ull << 20;
        size_t free_b = 0, total_b = 0, used, want, other;
        if (be->ops->mem_info(be, &free_b, &total_b) != 0) {
            errf(err, "cannot read the device's free memory");
            return 0;
        }
        used = total_b - free_b;   /* the CUDA context and whoever else is on the device */
        want = (size_t)(o->gpu_memory_utilization * (double)total_b);
        other = used + weights_bytes(c, elem) + activation_bytes(c, cap_tokens, cap_reqs, elem) + reserve;
        if (want <= other + block) {
            errf(err, "no GPU memory is left for the KV cache: %.2f GiB allowed "
                 "(--gpu-memory-utilization %.2f of %.2f GiB), %.2f GiB in use before loading, "
                 "weights %.2f GiB, activations %.2f GiB; raise --gpu-memory-utilization or lower "
                 "--max-num-batched-tokens", want / 1073741824.0, o->gpu_memory_utilization,
                 total_b / 1073741824.0, used / 1073741824.0,
                 weights_bytes(c, elem) / 1073741824.0,
                 activation_bytes(c, cap_tokens, cap_reqs, elem) / 1073741824.0);
            return 0;
        }
        bytes = want - other;
    } else if (bytes == 0) {
        size_t need = (size_t)o->max_num_seqs * bo->max_blocks_per_req * block;
        bytes = MIN((size_t)1 << 30, need);
    }
    if (bytes / block < 1 || bytes / block > INT32_MAX) {
        errf(err, "a KV cache of %zu bytes holds %zu blocks of %zu bytes; give --kv-cache-memory "
             "room for at least one", bytes, bytes / block, block);
        return 0;
    }
    return (int)(bytes / block);
}

/* kv_budget.c — how many KV-cache blocks fit: the explicit --kv-cache-memory, or on a GPU
 * what --gpu-memory-utilization leaves after weights, activations and a reserve, or on a
 * CPU a modest default; then how those bytes split among the KV-cache groups' pools, each
 * block costing only its own group's layers. The engine asks once, before the runner
 * allocates the cache. */
#include <errno.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/kv_budget.h"
#include "engine/base/log.h"
#include "engine/runner.h"
#include "engine/tp_shard.h"   /* tp_shard_config: one rank's share of a GPU */
#include "engine/base/util.h"
#include "engine/weights.h"
#include "scheduler/kv_cache.h"   /* kv_cache_max_blocks */

/* Activation buffers of a step of cap_tokens tokens and cap_reqs sampled rows (forward.h). */
static size_t activation_bytes(const struct model_config *c, const struct backend *be,
                               int cap_tokens, int cap_reqs, size_t elem)
{
    size_t h = c->hidden_size, q = (size_t)c->num_heads * c->head_dim;
    size_t kv = (size_t)c->num_kv_heads * c->head_dim, ffn = c->intermediate_size;
    size_t per_token = 3 * h + (q + 2 * kv) + q + 3 * ffn;
    struct moe_params mp = { c->num_experts, c->num_experts_per_tok, c->hidden_size,
                             c->moe_intermediate_size, c->shared_expert_intermediate_size,
                             false, NULL, c->moe_act, 0.0f, 0.0f };
    /* the runner's MoE scratch (runner_create.c) */
    size_t moe = c->num_experts ? moe_work_bytes(be, cap_tokens, &mp) : 0;

    return elem * per_token * cap_tokens + moe +
           (size_t)cap_reqs * (2 * h * elem + 4 * (size_t)c->vocab_size);
}

/* Only what kv_cache_max_blocks reads: block size and groups. */
static void cache_shape(struct kv_cache *shape, int block_size, int num_groups, const int *group_window)
{
    memset(shape, 0, sizeof *shape);
    shape->block_size = block_size;
    shape->num_groups = MIN(num_groups, KV_MAX_GROUPS);
    memcpy(shape->group_window, group_window, (size_t)shape->num_groups * sizeof *group_window);
}

static bool request_fits(const struct kv_cache *shape, const int *group_blocks, int num_tokens,
                         int max_chunk)
{
    for (int g = 0; g < shape->num_groups; g++)
        if (kv_cache_max_blocks(shape, g, num_tokens, max_chunk) > group_blocks[g])
            return false;
    return true;
}

int kv_budget_max_request_tokens(const int *group_blocks, int block_size, int num_groups,
                                 const int *group_window, int max_num_batched_tokens,
                                 int max_model_len)
{
    struct kv_cache shape;
    int lo = 0, hi = max_model_len;

    cache_shape(&shape, block_size, num_groups, group_window);
    /* The blocks a request needs grow with its length: the largest that fits, by bisection. */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;

        if (request_fits(&shape, group_blocks, mid, MIN(mid, max_num_batched_tokens)))
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Layers of each group. */
static void group_layers(const struct model_config *c, int *layers)
{
    memset(layers, 0, KV_MAX_GROUPS * sizeof *layers);
    for (int l = 0; l < c->num_layers; l++)
        layers[c->layer_kv_group[l]]++;
}

size_t kv_budget_bytes(const struct model_config *c, const int *blocks, size_t layer_block_bytes)
{
    int layers[KV_MAX_GROUPS];
    size_t bytes = 0;

    group_layers(c, layers);
    for (int g = 0; g < c->num_kv_groups; g++)
        bytes += (size_t)blocks[g] * layers[g] * layer_block_bytes;
    return bytes;
}

int kv_budget_split(const struct model_config *c, size_t bytes, size_t layer_block_bytes,
                    int block_size, int max_num_seqs, int max_num_batched_tokens,
                    int max_model_len, int *group_blocks, char *err)
{
    struct kv_cache shape;
    int layers[KV_MAX_GROUPS], full_layers = 0;
    size_t even = bytes / ((size_t)c->num_layers * layer_block_bytes), left = bytes;

    if (even < 1 || even > INT32_MAX) {
        errf(err, "a KV cache of %zu bytes holds %zu blocks of %zu bytes in each of %d layers; "
             "give --kv-cache-memory room for at least one", bytes, even, layer_block_bytes,
             c->num_layers);
        return -ENOMEM;
    }
    cache_shape(&shape, block_size, c->num_kv_groups, c->kv_group_window);
    group_layers(c, layers);
    for (int g = 0; g < c->num_kv_groups; g++)
        full_layers += c->kv_group_window[g] == 0 ? layers[g] : 0;
    for (int g = 0; g < c->num_kv_groups; g++) {
        size_t need = (size_t)max_num_seqs *
                      kv_cache_max_blocks(&shape, g, max_model_len,
                                          MIN(max_model_len, max_num_batched_tokens));

        if (c->kv_group_window[g] == 0)
            continue;
        /* with no full group, nobody could use what a window group leaves */
        group_blocks[g] = (int)(full_layers ? MIN(even, need) : even);
        left -= (size_t)group_blocks[g] * layers[g] * layer_block_bytes;
    }
    for (int g = 0; g < c->num_kv_groups; g++)
        if (c->kv_group_window[g] == 0)
            group_blocks[g] = (int)MIN(left / ((size_t)full_layers * layer_block_bytes),
                                       (size_t)INT32_MAX);
    return 0;
}

int kv_budget_blocks(const struct model_config *c, const struct engine_options *o,
                     struct backend *be, const char *backend, enum dtype kv_dtype,
                     const struct backend_options *bo, int *group_blocks, char *err)
{
    int cap_tokens = bo->max_tokens, cap_reqs = bo->max_reqs;
    size_t block = runner_kv_block_bytes(c, be, kv_dtype, o->block_size), bytes = o->kv_cache_bytes;
    size_t layer_block = block / c->num_layers;
    int max_len = bo->max_blocks_per_req * o->block_size;   /* max_model_len, resolved */
    size_t elem = dtype_size(be->ops->act_dtype);
    bool fp8 = model_fp8_weights(c) || o->quantization;   /* fp8 linear weights */

    if (bytes == 0 && !strcmp(backend, "cuda")) {
        const size_t reserve = 512ull << 20;
        size_t free_b = 0, total_b = 0, used, want, other, rank_block = block;
        struct model_config rank = *c;
        const struct model_config *rc = c;

        /* tensor parallelism: each GPU holds one rank's weights, activations and KV heads
         * (rank 0's device is measured: a host's GPUs alike), and each block the bytes left
         * there hold for the rank's KV heads is a block of the whole cache */
        if (o->tensor_parallel_size > 1) {
            tp_shard_config(c, o->tensor_parallel_size, &rank);
            rc = &rank;
            rank_block = runner_kv_block_bytes(rc, be, kv_dtype, o->block_size);
        }
        if (be->ops->mem_info(be, &free_b, &total_b) != 0) {
            errf(err, "cannot read the device's free memory");
            return -EIO;
        }
        used = total_b - free_b;   /* the CUDA context and whoever else is on the device */
        want = (size_t)(o->gpu_memory_utilization * (double)total_b);
        other = used + weights_bytes(rc, elem, fp8) + activation_bytes(rc, be, cap_tokens, cap_reqs, elem) +
                reserve;
        if (want <= other + rank_block) {
            errf(err, "no GPU memory is left for the KV cache: %.2f GiB allowed "
                 "(--gpu-memory-utilization %.2f of %.2f GiB), %.2f GiB in use before loading, "
                 "weights %.2f GiB, activations %.2f GiB%s; raise --gpu-memory-utilization or "
                 "lower --max-num-batched-tokens", want / 1073741824.0, o->gpu_memory_utilization,
                 total_b / 1073741824.0, used / 1073741824.0,
                 weights_bytes(rc, elem, fp8) / 1073741824.0,
                 activation_bytes(rc, be, cap_tokens, cap_reqs, elem) / 1073741824.0,
                 o->tensor_parallel_size > 1 ? " (one rank's, per GPU)" : "");
            return -ENOMEM;
        }
        bytes = (size_t)((double)(want - other) * ((double)block / (double)rank_block));
    } else if (bytes == 0) {
        /* what max_num_seqs requests of max_model_len tokens hold, window groups included */
        struct kv_cache shape;
        int per_req[KV_MAX_GROUPS];

        cache_shape(&shape, o->block_size, c->num_kv_groups, c->kv_group_window);
        for (int g = 0; g < c->num_kv_groups; g++)
            per_req[g] = kv_cache_max_blocks(&shape, g, max_len,
                                             MIN(max_len, o->max_num_batched_tokens));
        bytes = MIN((size_t)1 << 30,
                    (size_t)o->max_num_seqs * kv_budget_bytes(c, per_req, layer_block));
    }
    return kv_budget_split(c, bytes, layer_block, o->block_size, o->max_num_seqs,
                           o->max_num_batched_tokens, max_len, group_blocks, err);
}

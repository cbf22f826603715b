/* cuda_params.c — the backend's structs (engine/backend.h, engine/sampler.h) translated to
 * the kernels' own (kernels/kernels.h), which know nothing of the engine: the one place
 * where the two sets meet, so that kernels/ includes nothing of engine/ (the one-way rule,
 * scripts/check-includes.sh). Host-side copies of a few ints per op. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "engine/cuda/cuda_internal.h"

static_assert(CUDA_SAMPLE_MAX_LOGPROBS == SAMPLE_MAX_LOGPROBS,
              "kernels/kernels.h and engine/sampler.h disagree on the top logprobs per row");

int cuda__cache_layout(struct cuda_cache_layout *out, const struct cache_layout *l)
{
    /* DT_F32 is a zeroed layout's "the activation dtype": bf16 here */
    if (l->dtype != DT_F32 && l->dtype != DT_BF16 && l->dtype != DT_F8_E4M3)
        return -EINVAL;
    *out = (struct cuda_cache_layout){
        .num_blocks = l->num_blocks, .block_size = l->block_size,
        .num_kv_heads = l->num_kv_heads, .head_dim = l->head_dim,
        .dtype = l->dtype == DT_F8_E4M3 ? CUDA_KV_FP8_E4M3 : CUDA_KV_BF16,
        .k_scale = l->k_scale, .v_scale = l->v_scale,
    };
    return 0;
}

struct cuda_rope_params cuda__rope_params(const struct rope_params *p)
{
    return (struct cuda_rope_params){
        .num_heads = p->num_heads, .num_kv_heads = p->num_kv_heads, .head_dim = p->head_dim,
        .stride = p->stride, .inv_freq = p->inv_freq, .rotary_dim = p->rotary_dim,
        .mscale = p->mscale,
    };
}

int cuda__attn_params(struct cuda_attn_params *out, const struct attn_params *p)
{
    *out = (struct cuda_attn_params){
        .num_heads = p->num_heads, .num_kv_heads = p->num_kv_heads, .head_dim = p->head_dim,
        .scale = p->scale, .softcap = p->softcap, .window = p->window, .sinks = p->sinks,
    };
    return cuda__cache_layout(&out->cache, &p->cache);
}

int cuda__attn_batch(struct cuda_attn_batch *out, const struct bk_batch *b, int group)
{
    if (group < 0 || group >= b->num_kv_groups || group >= KV_MAX_GROUPS)
        return -EINVAL;
    *out = (struct cuda_attn_batch){
        .num_reqs = b->num_reqs, .num_tokens = b->num_tokens,
        .max_query_len = b->max_query_len, .max_seq_len = b->max_seq_len,
        .max_blocks_per_req = b->max_blocks_per_req,
        .query_start_loc = b->query_start_loc, .seq_lens = b->seq_lens,
        .block_table = b->block_table[group],
    };
    return 0;
}

void cuda__sample_result(struct sample_result *out, const struct cuda_sample_result *r)
{
    out->token = r->token;
    out->logprob = r->logprob;
    out->num_top = r->num_top;
    memcpy(out->top_ids, r->top_ids, sizeof out->top_ids);
    memcpy(out->top_logprobs, r->top_logprobs, sizeof out->top_logprobs);
}

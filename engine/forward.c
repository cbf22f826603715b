/* forward.c — the layer loop. Per layer (DESIGN.md "One attention layer"):
 *   xn = rmsnorm(residual += x) → qkv = xn·Wqkvᵀ (+ bias) → q/k norm (Qwen3) → rope →
 *   cache_update (kernel 1) → attention over the cache (kernel 2) → x = attn·Woᵀ →
 *   xn = rmsnorm(residual += x) → gate_up → silu·mul → x = act·Wdownᵀ
 * then the sampled rows go through the final norm and the LM head. */
#include <errno.h>
#include <math.h>

#include "engine/forward.h"

/* p + i elements of the backend's activation dtype */
static void *at(const struct forward_ctx *f, void *p, size_t i)
{
    return (char *)p + i * dtype_size(f->be->ops->act_dtype);
}

/* --calculate-kv-scales: layer l's scales from the K and V rows about to enter the cache. */
static int calc_kv_scales(const struct forward_ctx *f, const void *k, const void *v, int stride,
                          int n, int l)
{
    int cols = f->cfg->num_kv_heads * f->cfg->head_dim, rc;
    float km, vm;

    if (!f->be->ops->absmax)
        return -ENOTSUP;
    if ((rc = f->be->ops->absmax(f->be, &km, k, stride, n, cols)) ||
        (rc = f->be->ops->absmax(f->be, &vm, v, stride, n, cols)))
        return rc;
    f->k_scale[l] = km > 0.0f ? km / FORWARD_K_SCALE_RANGE : 1.0f;
    f->v_scale[l] = vm > 0.0f ? vm / FORWARD_V_SCALE_RANGE : 1.0f;
    return 0;
}

static int attention_block(const struct forward_ctx *f, const struct bk_batch *b, int l)
{
    const struct backend_ops *op = f->be->ops;
    const struct model_config *c = f->cfg;
    const struct layer_weights *lw = &f->w->layers[l];
    int n = b->num_tokens, H = c->num_heads, KV = c->num_kv_heads, D = c->head_dim;
    int stride = (H + 2 * KV) * D, g = f->layer_group[l], rc;
    void *q = f->qkv, *k = at(f, f->qkv, (size_t)H * D), *v = at(f, f->qkv, (size_t)(H + KV) * D);
    struct rope_params rp = { H, KV, D, stride, f->inv_freq };
    struct cache_layout cl = f->cache;
    struct attn_params ap;
    bool calc = f->calc_kv_scales && f->k_scale;

    if ((rc = op->matmul(f->be, f->qkv, f->xn, &lw->qkv, lw->qkv_bias.data ? &lw->qkv_bias : NULL, n)))
        return rc;
    if (lw->q_norm.data &&
        ((rc = op->head_rmsnorm(f->be, q, stride, H, D, &lw->q_norm, n, c->rms_norm_eps)) ||
         (rc = op->head_rmsnorm(f->be, k, stride, KV, D, &lw->k_norm, n, c->rms_norm_eps))))
        return rc;
    /* the scales must exist before the cache write: RoPE alone, then the scales */
    if (calc && ((rc = op->rope(f->be, q, k, b->positions, n, &rp)) ||
         (rc = calc_kv_scales(f, k, v, stride, n, l))))
        return rc;
    if (f->k_scale) {
        cl.k_scale = f->k_scale[l];
        cl.v_scale = f->v_scale[l];
    }
    ap = (struct attn_params){ H, KV, D, 1.0f / sqrtf((float)D), 0.0f, c->layer_window[l], cl };
    if (calc)
        rc = op->cache_update(f->be, k, v, stride, b->slot_mapping[g], n, f->k_cache[l],
                              f->v_cache[l], &cl);
    else if (f->fused_rope_cache && op->rope_cache_update)
        rc = op->rope_cache_update(f->be, q, k, v, b->positions, b->slot_mapping[g], n, &rp,
                                   f->k_cache[l], f->v_cache[l], &cl);
    else if (!(rc = op->rope(f->be, q, k, b->positions, n, &rp)))
        rc = op->cache_update(f->be, k, v, stride, b->slot_mapping[g], n, f->k_cache[l],
                              f->v_cache[l], &cl);
    if (rc)
        return rc;
    if ((rc = op->attention(f->be, f->attn, q, stride, f->k_cache[l], f->v_cache[l], b, g, &ap)))
        return rc;
    return op->matmul(f->be, f->x, f->attn, &lw->o, NULL, n);
}

static int mlp_block(const struct forward_ctx *f, int n, int l)
{
    const struct backend_ops *op = f->be->ops;
    const struct layer_weights *lw = &f->w->layers[l];
    int rc;

    if ((rc = op->rmsnorm(f->be, f->xn, f->residual, f->x, &lw->post_norm, n, f->cfg->rms_norm_eps)) ||
        (rc = op->matmul(f->be, f->gate_up, f->xn, &lw->gate_up, NULL, n)) ||
        (rc = op->silu_mul(f->be, f->act, f->gate_up, n, f->cfg->intermediate_size)))
        return rc;
    return op->matmul(f->be, f->x, f->act, &lw->down, NULL, n);
}

int forward(const struct forward_ctx *f, const struct bk_batch *b)
{
    const struct backend_ops *op = f->be->ops;
    const struct model_config *c = f->cfg;
    int n = b->num_tokens, rc;

    /* the residual stream starts as the embeddings; layer 0 has nothing to add to it */
    if ((rc = op->embedding(f->be, f->residual, b->input_ids, &f->w->embed, n)))
        return rc;
    for (int l = 0; l < c->num_layers; l++) {
        const struct bk_weight *norm = &f->w->layers[l].input_norm;

        rc = l == 0 ? op->rmsnorm(f->be, f->xn, NULL, f->residual, norm, n, c->rms_norm_eps)
                    : op->rmsnorm(f->be, f->xn, f->residual, f->x, norm, n, c->rms_norm_eps);
        if (rc || (rc = attention_block(f, b, l)) || (rc = mlp_block(f, n, l)))
            return rc;
        if (f->progress)
            __atomic_fetch_add(f->progress, 1, __ATOMIC_RELAXED);
    }
    /* only the sampled rows need the last residual add, the final norm and the LM head */
    if (b->num_sample == 0)
        return 0;
    if ((rc = op->gather_rows(f->be, f->sel_residual, f->residual, b->logits_indices,
                              b->num_sample, c->hidden_size)) ||
        (rc = op->gather_rows(f->be, f->sel_x, f->x, b->logits_indices, b->num_sample,
                              c->hidden_size)) ||
        (rc = op->rmsnorm(f->be, f->xn, f->sel_residual, f->sel_x, &f->w->final_norm,
                          b->num_sample, c->rms_norm_eps)))
        return rc;
    return op->lm_head(f->be, f->logits, f->xn, &f->w->lm_head, b->num_sample);
}

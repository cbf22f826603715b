/* forward.c — the layer loop. Per layer (DESIGN.md "One attention layer"):
 *   xn = rmsnorm(residual += x) → qkv = xn·Wqkvᵀ (+ bias) → q/k norm (Qwen3, Gemma 3) →
 *   rope → cache_update (kernel 1) → attention over the cache (kernel 2) → x = attn·Woᵀ →
 *   xn = rmsnorm(residual += x) → gate_up → silu·mul (GeGLU for Gemma) → x = act·Wdownᵀ
 *   (or, in a MoE layer, x = the top-k experts' MLPs of xn weighted by the router)
 * then the sampled rows go through the final norm and the LM head. The loop is written as
 * its pieces around attention (forward.h: forward_piece, forward_attention, forward_head)
 * so that the runner can replay the pieces as CUDA graphs per token count and run only the
 * attention, which reads the batch's requests, eagerly. Families differ by small
 * per-layer choices read from the config: Gemma scales the embeddings, normalizes the
 * attention and MLP outputs too (sandwich norms), soft-caps attention and final logits,
 * and gives Gemma 3's sliding layers their own RoPE frequencies; gpt-oss adds an o_proj bias
 * and attention sinks, and its MoE's biases and clamped SwiGLU. Under tensor parallelism
 * (f->comm) every rank runs this loop over its shard and sums the two row-parallel
 * products of each layer with the other ranks'. */
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

/* Tensor parallelism: x (a row-parallel product, this rank's part) becomes the full sum. */
static int all_reduce(const struct forward_ctx *f, int n)
{
    return f->comm ? comm_all_reduce(f->comm, f->x, (size_t)n * f->cfg->hidden_size,
                                     f->be->ops->act_dtype) : 0;
}

/* Layer l's cache layout (its group's blocks, its fp8 scales) and attention parameters. */
static struct attn_params layer_attn(const struct forward_ctx *f, int l)
{
    const struct model_config *c = f->cfg;
    double scale_of = c->query_pre_attn_scalar > 0 ? c->query_pre_attn_scalar : c->head_dim;
    struct cache_layout cl = f->cache;   /* a layer's storage holds its group's blocks only */

    cl.num_blocks = f->group_blocks[f->layer_group[l]];
    if (f->k_scale) {
        cl.k_scale = f->k_scale[l];
        cl.v_scale = f->v_scale[l];
    }
    return (struct attn_params){ c->num_heads, c->num_kv_heads, c->head_dim,
                                 (float)(1.0 / sqrt(scale_of)), (float)c->attn_softcap,
                                 c->layer_window[l], cl, f->w->layers[l].sinks.data };
}

/* Layer l up to its cache write: the input norm (with the residual add of the layer
 * before), qkv, the q/k norms, RoPE, and K and V into the cache. Leaves q in f->qkv. */
static int pre_attention(const struct forward_ctx *f, const struct bk_batch *b, int l)
{
    const struct backend_ops *op = f->be->ops;
    const struct model_config *c = f->cfg;
    const struct layer_weights *lw = &f->w->layers[l];
    int n = b->num_tokens, H = c->num_heads, KV = c->num_kv_heads, D = c->head_dim;
    int stride = (H + 2 * KV) * D, g = f->layer_group[l], rc;
    void *q = f->qkv, *k = at(f, f->qkv, (size_t)H * D), *v = at(f, f->qkv, (size_t)(H + KV) * D);
    bool local = c->layer_window[l] > 0 && f->inv_freq_local;
    struct rope_params rp = { H, KV, D, stride, local ? f->inv_freq_local : f->inv_freq,
                              c->rotary_dim ? c->rotary_dim : D, f->rope_mscale };
    struct attn_params ap;
    bool calc = f->calc_kv_scales && f->k_scale;

    rc = l == 0 ? op->rmsnorm(f->be, f->xn, NULL, f->residual, &lw->input_norm, n, c->rms_norm_eps)
                : op->rmsnorm(f->be, f->xn, f->residual, f->x, &lw->input_norm, n, c->rms_norm_eps);
    if (rc || (rc = op->matmul(f->be, f->qkv, f->xn, &lw->qkv,
                               lw->qkv_bias.data ? &lw->qkv_bias : NULL, n)))
        return rc;
    if (lw->q_norm.data &&
        ((rc = op->head_rmsnorm(f->be, q, stride, H, D, &lw->q_norm, n, c->rms_norm_eps)) ||
         (rc = op->head_rmsnorm(f->be, k, stride, KV, D, &lw->k_norm, n, c->rms_norm_eps))))
        return rc;
    /* the scales must exist before the cache write: RoPE alone, then the scales */
    if (calc && ((rc = op->rope(f->be, q, k, b->positions, n, &rp)) ||
         (rc = calc_kv_scales(f, k, v, stride, n, l))))
        return rc;
    ap = layer_attn(f, l);
    if (calc)
        return op->cache_update(f->be, k, v, stride, b->slot_mapping[g], n, f->k_cache[l],
                                f->v_cache[l], &ap.cache);
    if (f->fused_rope_cache && op->rope_cache_update)
        return op->rope_cache_update(f->be, q, k, v, b->positions, b->slot_mapping[g], n, &rp,
                                     f->k_cache[l], f->v_cache[l], &ap.cache);
    if ((rc = op->rope(f->be, q, k, b->positions, n, &rp)))
        return rc;
    return op->cache_update(f->be, k, v, stride, b->slot_mapping[g], n, f->k_cache[l],
                            f->v_cache[l], &ap.cache);
}

int forward_attention(const struct forward_ctx *f, const struct bk_batch *b, int l)
{
    const struct model_config *c = f->cfg;
    struct attn_params ap = layer_attn(f, l);
    int rc = f->be->ops->attention(f->be, f->attn, f->qkv, (c->num_heads + 2 * c->num_kv_heads) *
                                   c->head_dim, f->k_cache[l], f->v_cache[l], b,
                                   f->layer_group[l], &ap);

    if (!rc && f->progress)
        __atomic_fetch_add(f->progress, 1, __ATOMIC_RELAXED);
    return rc;
}

/* x = the MLP of xn: a MoE block (Mixtral, Qwen3-MoE, gpt-oss) or a dense gated MLP. */
static int ffn_block(const struct forward_ctx *f, int n, int l)
{
    const struct backend_ops *op = f->be->ops;
    const struct model_config *c = f->cfg;
    const struct layer_weights *lw = &f->w->layers[l];
    int ffn = c->intermediate_size, rc;

    if (lw->num_experts) {
        bool shared = lw->shared_gate.data != NULL;
        struct moe_params mp = { c->num_experts, c->num_experts_per_tok, c->hidden_size,
                                 c->moe_intermediate_size, c->shared_expert_intermediate_size,
                                 c->norm_topk_prob, f->moe_work, c->moe_act,
                                 (float)c->swiglu_alpha, (float)c->swiglu_limit };
        struct moe_weights mw = { &lw->router, lw->expert_gate_up, lw->expert_down,
                                  shared ? &lw->shared_gate_up : NULL,
                                  shared ? &lw->shared_down : NULL,
                                  shared ? &lw->shared_gate : NULL,
                                  lw->router_bias.data ? &lw->router_bias : NULL,
                                  lw->expert_gate_up_bias, lw->expert_down_bias,
                                  lw->experts_oai_published };
        /* a rank's experts hold their slice of the intermediate size: a partial sum */
        if ((rc = op->moe(f->be, f->x, f->xn, &mw, n, &mp)))
            return rc;
        return all_reduce(f, n);
    }
    if ((rc = op->matmul(f->be, f->gate_up, f->xn, &lw->gate_up, NULL, n)) ||
        (rc = c->mlp_act == MLP_GELU_TANH ? op->gelu_tanh_mul(f->be, f->act, f->gate_up, n, ffn)
                                          : op->silu_mul(f->be, f->act, f->gate_up, n, ffn)))
        return rc;
    if ((rc = op->matmul(f->be, f->x, f->act, &lw->down, NULL, n)))
        return rc;
    return all_reduce(f, n);
}

/* x holds the attention's output; leaves the MLP's in x. Sandwich norms (Gemma) normalize
 * the attention output before the residual add and the MLP output after it. */
static int mlp_block(const struct forward_ctx *f, int n, int l)
{
    const struct backend_ops *op = f->be->ops;
    const struct model_config *c = f->cfg;
    const struct layer_weights *lw = &f->w->layers[l];
    float eps = c->rms_norm_eps;
    int rc;

    if (!c->sandwich_norms)
        rc = op->rmsnorm(f->be, f->xn, f->residual, f->x, &lw->post_norm, n, eps);
    else if (!(rc = op->rmsnorm(f->be, f->xn, NULL, f->x, &lw->post_norm, n, eps)))
        rc = op->rmsnorm(f->be, f->xn, f->residual, f->xn, &lw->pre_ff_norm, n, eps);
    if (rc || (rc = ffn_block(f, n, l)))
        return rc;
    return c->sandwich_norms ? op->rmsnorm(f->be, f->x, NULL, f->x, &lw->post_ff_norm, n, eps) : 0;
}

/* Layer l after its attention: o_proj (+ bias, + the all-reduce), then the MLP block. */
static int post_attention(const struct forward_ctx *f, int n, int l)
{
    const struct layer_weights *lw = &f->w->layers[l];
    int rc = f->be->ops->matmul(f->be, f->x, f->attn, &lw->o, lw->o_bias.data ? &lw->o_bias : NULL, n);

    if (rc || (rc = all_reduce(f, n)))
        return rc;
    return mlp_block(f, n, l);
}

int forward_piece(const struct forward_ctx *f, const struct bk_batch *b, int p)
{
    const struct backend_ops *op = f->be->ops;
    const struct model_config *c = f->cfg;
    int n = b->num_tokens, rc;

    if (p < 0 || p > c->num_layers)
        return -EINVAL;
    if (p == 0) {
        /* the residual stream starts as the embeddings; layer 0 has nothing to add to it */
        if ((rc = op->embedding(f->be, f->residual, b->input_ids, &f->w->embed, n)) ||
            (f->embed_scale &&
             (rc = op->scale(f->be, f->residual, n, c->hidden_size, f->embed_scale))))
            return rc;
    } else if ((rc = post_attention(f, n, p - 1))) {
        return rc;
    }
    return p < c->num_layers ? pre_attention(f, b, p) : 0;
}

int forward_head(const struct forward_ctx *f, const struct bk_batch *b)
{
    const struct backend_ops *op = f->be->ops;
    const struct model_config *c = f->cfg;
    int rc;

    /* only the sampled rows need the last residual add, the final norm and the LM head */
    if (b->num_sample == 0 || (f->comm && f->comm->rank > 0))
        return 0;
    if ((rc = op->gather_rows(f->be, f->sel_residual, f->residual, b->logits_indices,
                              b->num_sample, c->hidden_size)) ||
        (rc = op->gather_rows(f->be, f->sel_x, f->x, b->logits_indices, b->num_sample,
                              c->hidden_size)) ||
        (rc = op->rmsnorm(f->be, f->xn, f->sel_residual, f->sel_x, &f->w->final_norm,
                          b->num_sample, c->rms_norm_eps)))
        return rc;
    if ((rc = op->lm_head(f->be, f->logits, f->xn, &f->w->lm_head, b->num_sample)))
        return rc;
    return c->final_softcap > 0 ? op->softcap(f->be, f->logits, b->num_sample, c->vocab_size,
                                              (float)c->final_softcap) : 0;
}

int forward(const struct forward_ctx *f, const struct bk_batch *b)
{
    int L = f->cfg->num_layers, rc;

    for (int p = 0; p <= L; p++)
        if ((rc = forward_piece(f, b, p)) || (p < L && (rc = forward_attention(f, b, p))))
            return rc;
    return forward_head(f, b);
}

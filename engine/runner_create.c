/* runner_create.c — making a runner and taking it down: the options checked, the backend's
 * sizes (runner_backend_options), the weights uploaded, the KV cache and activation buffers
 * allocated, the RoPE inverse frequencies and the fp8 KV scales, the graphs captured
 * (runner_graphs.c); and what a runner reports of itself (KV scales, caches, ranks). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/rope.h"
#include "engine/runner_internal.h"

int runner_backend_options(const struct model_config *cfg, const struct runner_options *o,
                           struct backend_options *bo)
{
    int largest = 0;

    if (cfg->num_layers < 1 || cfg->num_layers > MODEL_MAX_LAYERS || o->block_size < 1 ||
        cfg->num_kv_groups < 1 || cfg->num_kv_groups > KV_MAX_GROUPS)
        return -EINVAL;
    for (int i = 0; i < o->num_graph_sizes; i++)
        largest = MAX(largest, o->graph_sizes[i]);
    bo->max_tokens = MAX(o->max_num_batched_tokens, largest);
    bo->max_reqs = MAX(o->max_num_seqs, largest);
    bo->max_blocks_per_req = (o->max_model_len + o->block_size - 1) / o->block_size;
    bo->num_kv_groups = cfg->num_kv_groups;
    bo->vocab_size = cfg->vocab_size;
    return 0;
}

enum dtype runner_kv_dtype(const struct backend *be, enum dtype kv_cache_dtype)
{
    return kv_cache_dtype == DT_F32 ? be->ops->act_dtype : kv_cache_dtype;
}

size_t runner_kv_block_bytes(const struct model_config *cfg, const struct backend *be,
                             enum dtype kv_cache_dtype, int block_size)
{
    return (size_t)cfg->num_layers * 2 * block_size * cfg->num_kv_heads * cfg->head_dim *
           dtype_size(runner_kv_dtype(be, kv_cache_dtype));
}

/* ---- creation ---- */

/* Blocks of group g's layers: its own pool's size, else num_blocks. */
static int group_blocks(const struct runner_options *o, int g)
{
    return o->group_num_blocks[g] > 0 ? o->group_num_blocks[g] : o->num_blocks;
}

static int check_config(const struct model_config *c, const struct runner_options *o, char *err)
{
    if (c->num_layers < 1 || c->num_layers > MODEL_MAX_LAYERS || c->hidden_size < 1 ||
        c->intermediate_size < 1 || c->vocab_size < 1 || c->num_heads < 1 ||
        c->num_kv_heads < 1 || c->num_heads % c->num_kv_heads || c->head_dim < 2 ||
        c->head_dim % 2) {
        errf(err, "runner: unsupported model shape (layers %d, hidden %d, heads %d/%d, "
             "head_dim %d)", c->num_layers, c->hidden_size, c->num_heads, c->num_kv_heads,
             c->head_dim);
        return -EINVAL;
    }
    /* model_config_parse fills the groups; a config built by hand must call model_kv_groups */
    if (c->num_kv_groups < 1 || c->num_kv_groups > KV_MAX_GROUPS) {
        errf(err, "runner: the model config has %d KV-cache groups (1 to %d; model_kv_groups "
             "fills them)", c->num_kv_groups, KV_MAX_GROUPS);
        return -EINVAL;
    }
    for (int l = 0; l < c->num_layers; l++)
        if (c->layer_kv_group[l] < 0 || c->layer_kv_group[l] >= c->num_kv_groups) {
            errf(err, "runner: layer %d is in KV-cache group %d of %d", l, c->layer_kv_group[l],
                 c->num_kv_groups);
            return -EINVAL;
        }
    if (o->block_size < 1 || o->num_blocks < 1 || o->max_num_batched_tokens < 1 ||
        o->max_num_seqs < 1 || o->max_model_len < 1 || o->num_graph_sizes < 0 ||
        o->num_piece_sizes < 0) {
        errf(err, "runner: block_size %d, num_blocks %d, max_num_batched_tokens %d, "
             "max_num_seqs %d and max_model_len %d must be positive", o->block_size,
             o->num_blocks, o->max_num_batched_tokens, o->max_num_seqs, o->max_model_len);
        return -EINVAL;
    }
    for (int g = 0; g < KV_MAX_GROUPS; g++)
        if (o->group_num_blocks[g] < 0) {
            errf(err, "runner: group_num_blocks[%d] %d is negative", g, o->group_num_blocks[g]);
            return -EINVAL;
        }
    for (int i = 0; i < o->num_graph_sizes; i++)
        if (o->graph_sizes[i] < 1 || o->graph_sizes[i] >= PIECES_KEY_BASE) {
            errf(err, "runner: graph size %d must be 1 to %d", o->graph_sizes[i],
                 PIECES_KEY_BASE - 1);
            return -EINVAL;
        }
    for (int g = 0; g < c->num_kv_groups; g++)
        if ((double)group_blocks(o, g) * o->block_size * c->num_kv_heads * c->head_dim > 1e15) {
            errf(err, "runner: KV cache of %d blocks of %d tokens (group %d) is too large",
                 group_blocks(o, g), o->block_size, g);
            return -EINVAL;
        }
    return 0;
}

/* A zeroed device buffer of n elements of `size` bytes. */
static void *dev_buf(struct runner *r, size_t n, size_t size, char *err)
{
    return r->be->ops->alloc(r->be, n * size, err);
}

/* Bytes of every layer's K and V cache, each sized for its group's blocks. */
static size_t kv_cache_bytes(const struct runner *r)
{
    const struct model_config *c = &r->m->cfg;
    size_t layer_block = runner_kv_block_bytes(c, r->be, r->opt.kv_cache_dtype, r->opt.block_size) /
                         c->num_layers, bytes = 0;

    for (int l = 0; l < c->num_layers; l++)
        bytes += layer_block * group_blocks(&r->opt, c->layer_kv_group[l]);
    return bytes;
}

/* The attention output starts as zeros: a piecewise step's padding tokens belong to no
 * request, so attention never writes their rows, and the o_proj piece reads whatever is
 * there. Rows once written hold a finite output of an earlier step; a fresh device buffer
 * could hold any bits, NaN among them, and a NaN row would reach a MoE router's top-k. */
static int zero_attn(struct runner *r, size_t bytes, char *err)
{
    void *zeros = calloc(1, bytes);
    int rc;

    if (!zeros) {
        errf(err, "runner: out of host memory (%zu MiB of zeros)", bytes >> 20);
        return -ENOMEM;
    }
    if ((rc = r->be->ops->upload(r->be, r->fwd.attn, zeros, bytes)))
        errf(err, "runner: zeroing the attention buffer failed");
    free(zeros);
    return rc;
}

static int alloc_buffers(struct runner *r, char *err)
{
    const struct model_config *c = &r->m->cfg;
    struct forward_ctx *f = &r->fwd;
    size_t e = dtype_size(r->be->ops->act_dtype), T = r->cap_tokens, S = r->cap_sample;
    size_t kv_e = dtype_size(runner_kv_dtype(r->be, r->opt.kv_cache_dtype));
    size_t block = (size_t)r->opt.block_size * c->num_kv_heads * c->head_dim;

    r->k_cache = calloc(c->num_layers, sizeof *r->k_cache);
    r->v_cache = calloc(c->num_layers, sizeof *r->v_cache);
    if (!r->k_cache || !r->v_cache) {
        errf(err, "runner: out of memory");
        return -ENOMEM;
    }
    /* a layer holds its own group's blocks: a window group's few blocks cost little */
    for (int l = 0; l < c->num_layers; l++) {
        size_t cache = block * group_blocks(&r->opt, c->layer_kv_group[l]);

        if (!(r->k_cache[l] = dev_buf(r, cache, kv_e, err)) ||
            !(r->v_cache[l] = dev_buf(r, cache, kv_e, err)))
            return -ENOMEM;
    }
    if (!(f->residual = dev_buf(r, T * c->hidden_size, e, err)) ||
        !(f->x = dev_buf(r, T * c->hidden_size, e, err)) ||
        !(f->xn = dev_buf(r, T * c->hidden_size, e, err)) ||
        !(f->qkv = dev_buf(r, T * (c->num_heads + 2 * c->num_kv_heads) * c->head_dim, e, err)) ||
        !(f->attn = dev_buf(r, T * c->num_heads * c->head_dim, e, err)) ||
        !(f->gate_up = dev_buf(r, T * 2 * c->intermediate_size, e, err)) ||
        !(f->act = dev_buf(r, T * c->intermediate_size, e, err)) ||
        !(f->sel_residual = dev_buf(r, S * c->hidden_size, e, err)) ||
        !(f->sel_x = dev_buf(r, S * c->hidden_size, e, err)) ||
        !(f->logits = dev_buf(r, S * c->vocab_size, sizeof(float), err)) ||
        !(r->inv_freq = dev_buf(r, c->head_dim / 2, sizeof(float), err)) ||
        (c->rope_local_theta > 0 &&
         !(r->inv_freq_local = dev_buf(r, c->head_dim / 2, sizeof(float), err))))
        return -ENOMEM;
    if (c->num_experts) {
        struct moe_params mp = { c->num_experts, c->num_experts_per_tok, c->hidden_size,
                                 c->moe_intermediate_size, c->shared_expert_intermediate_size,
                                 c->norm_topk_prob, NULL, c->moe_act, 0.0f, 0.0f };

        if (!(f->moe_work = dev_buf(r, moe_work_bytes(r->be, (int)T, &mp), 1, err)))
            return -ENOMEM;
    }
    return zero_attn(r, T * c->num_heads * c->head_dim * e, err);
}

/* The global inverse frequencies (rope_theta, scaled) and, for Gemma 3, the local ones of
 * sliding layers (rope_local_base_freq, never scaled, as transformers' local rotary). */
static int upload_inv_freq(struct runner *r, char *err)
{
    const struct model_config *c = &r->m->cfg;
    const struct rope_scaling none = { .type = ROPE_DEFAULT };
    int rd = c->rotary_dim ? c->rotary_dim : c->head_dim;
    size_t bytes = rd / 2 * sizeof(float);
    float *host = malloc(bytes);
    struct rope_scaling *rs = malloc(sizeof *rs);
    int rc = host && rs ? 0 : -ENOMEM;

    if (!rc) {
        *rs = c->rope_scaling;
        /* longrope: the long factors once the engine serves contexts beyond the original
         * window, for every position (vLLM's choice; transformers switches per forward pass
         * by the sequence's length), else the short ones */
        rs->use_long_factor = rs->type == ROPE_LONGROPE &&
                              r->opt.max_model_len > rs->original_max_position_embeddings;
        if (rs->use_long_factor)
            LOG(LL_INFO, "runner", "longrope: max_model_len %d > original_max_position_embeddings "
                "%d: the long factors for every position", r->opt.max_model_len,
                rs->original_max_position_embeddings);
        rc = rope_inv_freq(host, rd, c->rope_theta, rs, err);
    }
    if (!rc)
        rc = r->be->ops->upload(r->be, r->inv_freq, host, bytes);
    if (!rc && r->inv_freq_local &&
        !(rc = rope_inv_freq(host, rd, c->rope_local_theta, &none, err)))
        rc = r->be->ops->upload(r->be, r->inv_freq_local, host, bytes);
    free(host);
    free(rs);
    return rc;
}

/* A model whose family needs an op the backend lacks is refused here, in one line, rather
 * than run without it. */
static int check_ops(const struct model_config *c, const struct backend *be, char *err)
{
    const struct backend_ops *op = be->ops;
    const char *what = NULL, *name = NULL;

    if (c->mlp_act == MLP_GELU_TANH && !op->gelu_tanh_mul)
        what = "GeGLU (tanh GELU)", name = "gelu_tanh_mul";
    else if (c->scale_embeddings && !op->scale)
        what = "the embedding scale", name = "scale";
    else if (c->final_softcap > 0 && !op->softcap)
        what = "final logit soft-capping", name = "softcap";
    else if (c->num_experts && !op->moe)
        what = "the mixture-of-experts block", name = "moe";
    else if (!op->rope_ext && c->rotary_dim && c->rotary_dim != c->head_dim)
        what = "the partial rotary embedding (partial_rotary_factor)", name = "partial rope";
    else if (!op->rope_ext && (c->rope_scaling.type == ROPE_LONGROPE ||
                               c->rope_scaling.type == ROPE_YARN) &&
             c->rope_scaling.attention_factor != 1.0)
        what = c->rope_scaling.type == ROPE_YARN ? "yarn's attention_factor"
                                                 : "longrope's attention_factor",
        name = "scaled rope";
    else if (c->attn_sinks && !op->attn_sinks)
        what = "attention with sinks", name = "attention-sinks";
    else if (c->moe_act == MOE_ACT_SWIGLU_OAI && !op->moe_oai)
        what = "the MoE block with router and expert biases and the clamped SwiGLU",
        name = "gpt-oss moe";
    if (!what)
        return 0;
    errf(err, "%s: %s runs on the CPU backend only in this build (the %s backend has no %s op)",
         c->arch_name, what, op->name, name);
    return -ENOTSUP;
}

/* HF multiplies the embeddings by sqrt(hidden_size) as a tensor of the model's dtype. */
static float embed_scale(const struct model_config *c)
{
    float s = (float)sqrt((double)c->hidden_size);

    if (!c->scale_embeddings)
        return 0.0f;
    if (c->dtype == DT_BF16)
        return bf16_to_f32(f32_to_bf16(s));
    if (c->dtype == DT_F16)
        return f16_to_f32(f32_to_f16(s));
    return s;
}

/* The fp8 cache's per-layer scales: the checkpoint's self_attn.k_scale / v_scale, else 1.0
 * (vLLM's default when a checkpoint has none). */
static int kv_scales(struct runner *r, char *err)
{
    const struct model *m = r->m;

    r->k_scale = calloc(m->cfg.num_layers, sizeof *r->k_scale);
    r->v_scale = calloc(m->cfg.num_layers, sizeof *r->v_scale);
    if (!r->k_scale || !r->v_scale) {
        errf(err, "runner: out of memory");
        return -ENOMEM;
    }
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const struct layer_tensors *lt = &m->layers[l];

        r->k_scale[l] = lt->k_scale.data ? model_scale_at(&lt->k_scale, 0) : 1.0f;
        r->v_scale[l] = lt->v_scale.data ? model_scale_at(&lt->v_scale, 0) : 1.0f;
    }
    return 0;
}
int runner_create(struct runner **out, struct backend *be, const struct model *m,
                  const struct runner_options *o, char *err)
{
    const struct model_config *c = &m->cfg;
    bool graphs = be->ops->graph_capture && be->ops->graph_replay && !o->enforce_eager;
    struct runner *r;
    int rc;

    *out = NULL;
    if ((rc = check_config(c, o, err)) || (rc = check_ops(c, be, err)))
        return rc;
    if (!(r = calloc(1, sizeof *r))) {
        errf(err, "runner: out of memory");
        return -ENOMEM;
    }
    r->be = be;
    r->m = m;
    r->opt = *o;
    r->max_blocks_per_req = (o->max_model_len + o->block_size - 1) / o->block_size;
    if (o->tensor_parallel_size > 1) {
        if ((rc = runner_tp_create(&r->tp, be, m, o, err)))
            goto fail;
        *out = r;
        return 0;
    }
    /* graphs only where the backend has them; sizes sorted, duplicates dropped */
    if (graphs && o->num_graph_sizes) {
        if (!(r->graph_sizes = malloc(o->num_graph_sizes * sizeof *r->graph_sizes))) {
            rc = -ENOMEM;
            goto fail;
        }
        memcpy(r->graph_sizes, o->graph_sizes, o->num_graph_sizes * sizeof *r->graph_sizes);
        r->num_graphs = graph_sizes_sort(r->graph_sizes, o->num_graph_sizes, INT32_MAX);
    }
    r->opt.graph_sizes = r->graph_sizes;
    r->opt.num_graph_sizes = r->num_graphs;
    r->cap_tokens = MAX(o->max_num_batched_tokens, r->num_graphs ? r->graph_sizes[r->num_graphs - 1] : 0);
    r->cap_sample = MAX(o->max_num_seqs, r->num_graphs ? r->graph_sizes[r->num_graphs - 1] : 0);
    r->greedy_rows = calloc(r->cap_sample, sizeof *r->greedy_rows);
    if (!r->greedy_rows) {
        rc = -ENOMEM;
        goto fail;
    }
    for (int i = 0; i < r->cap_sample; i++)
        r->greedy_rows[i] = (struct sample_row){ .top_p = 1.0f, .repetition_penalty = 1.0f,
                                                 .num_logprobs = -1 };
    double t0 = now_s(), t_weights, t_buffers;
    if ((rc = weights_upload(&r->w, be, m, o->quantize_fp8, err)))
        goto fail;
    t_weights = now_s();
    if ((rc = alloc_buffers(r, err)) || (rc = upload_inv_freq(r, err)))
        goto fail;
    if (runner_kv_dtype(be, o->kv_cache_dtype) == DT_F8_E4M3 && (rc = kv_scales(r, err)))
        goto fail;
    if (o->calculate_kv_scales && (!r->k_scale || !be->ops->absmax)) {
        errf(err, "runner: --calculate-kv-scales needs --kv-cache-dtype fp8 on a backend that "
             "can measure K and V (the absmax op: cpu and cuda)");
        rc = -EINVAL;
        goto fail;
    }
    t_buffers = now_s();
    r->fwd.be = be;
    r->fwd.cfg = c;
    r->fwd.w = &r->w;
    r->fwd.layer_group = c->layer_kv_group;
    r->fwd.k_cache = r->k_cache;
    r->fwd.v_cache = r->v_cache;
    r->fwd.cache = (struct cache_layout){ o->num_blocks, o->block_size, c->num_kv_heads,
                                          c->head_dim, runner_kv_dtype(be, o->kv_cache_dtype),
                                          1.0f, 1.0f };
    for (int g = 0; g < c->num_kv_groups; g++)
        r->fwd.group_blocks[g] = group_blocks(o, g);
    r->fwd.k_scale = r->k_scale;
    r->fwd.v_scale = r->v_scale;
    r->fwd.calc_kv_scales = o->calculate_kv_scales;
    r->fwd.inv_freq = r->inv_freq;
    r->fwd.inv_freq_local = r->inv_freq_local;
    r->fwd.embed_scale = embed_scale(c);
    r->fwd.rope_mscale = c->rope_scaling.type == ROPE_LONGROPE || c->rope_scaling.type == ROPE_YARN
                         ? (float)c->rope_scaling.attention_factor : 1.0f;
    r->fwd.fused_rope_cache = o->fused_rope_cache;
    r->fwd.comm = o->comm;
    r->forward_graphs = !(o->comm && o->comm->size > 1);
    /* piecewise graphs: not on a rank of a group of several, whose steps stay eager but for
     * the decode graphs (runner_tp.c runs one graph or one forward a step) */
    if (graphs && r->forward_graphs &&
        (rc = pieces_init(&r->pieces, o->piece_sizes, o->num_piece_sizes,
                          o->max_num_batched_tokens, &r->fwd, &r->dev))) {
        if (rc == -EINVAL)
            errf(err, "runner: piecewise graph sizes must be positive");
        goto fail;
    }
    /* a rank of a group of several captures later, together with its peers (runner_tp.c):
     * a graph's collectives need every rank capturing at once, in the same order */
    if ((r->num_graphs || r->pieces.num) && !(o->comm && o->comm->size > 1) &&
        (rc = runner_capture_graphs(r, err)))
        goto fail;
    LOG(LL_INFO, "runner", "%s on %s: %d layers, KV blocks of %d tokens (%zu MiB, %s), %d KV "
        "groups; weights %.2f s, KV cache and buffers %.2f s, %d decode graphs and %d "
        "piecewise buckets %.2f s", c->arch_name,
        be->ops->name, c->num_layers, o->block_size, kv_cache_bytes(r) >> 20,
        dtype_name(runner_kv_dtype(be, o->kv_cache_dtype)), r->m->cfg.num_kv_groups,
        t_weights - t0, t_buffers - t_weights, r->num_graphs, r->pieces.num, now_s() - t_buffers);
    *out = r;
    return 0;
fail:
    if (rc == -ENOMEM && err && !err[0])
        errf(err, "runner: out of memory");
    runner_destroy(r);
    return rc;
}

void runner_destroy(struct runner *r)
{
    struct backend *be;
    void *bufs[16];
    int n = 0;

    if (!r)
        return;
    be = r->be;
    runner_tp_destroy(r->tp);
    for (int l = 0; l < r->m->cfg.num_layers; l++) {
        if (r->k_cache && r->k_cache[l])
            be->ops->free(be, r->k_cache[l]);
        if (r->v_cache && r->v_cache[l])
            be->ops->free(be, r->v_cache[l]);
    }
    free(r->k_cache);
    free(r->v_cache);
    free(r->k_scale);
    free(r->v_scale);
    bufs[n++] = r->fwd.residual;
    bufs[n++] = r->fwd.x;
    bufs[n++] = r->fwd.xn;
    bufs[n++] = r->fwd.qkv;
    bufs[n++] = r->fwd.attn;
    bufs[n++] = r->fwd.gate_up;
    bufs[n++] = r->fwd.act;
    bufs[n++] = r->fwd.sel_residual;
    bufs[n++] = r->fwd.sel_x;
    bufs[n++] = r->fwd.logits;
    bufs[n++] = r->inv_freq;
    bufs[n++] = r->inv_freq_local;
    bufs[n++] = r->fwd.moe_work;
    for (int i = 0; i < n; i++)
        if (bufs[i])
            be->ops->free(be, bufs[i]);
    weights_free(&r->w, be);
    batch_fini(&r->pad_batch);
    pieces_fini(&r->pieces);
    free(r->greedy_rows);
    free(r->graph_sizes);
    free(r);
}

void runner_kv_scales(const struct runner *r, int layer, float *k_scale, float *v_scale)
{
    bool ok;

    if (r->tp) {
        runner_kv_scales(runner_tp_rank(r->tp, 0), layer, k_scale, v_scale);
        return;
    }
    ok = r->k_scale && layer >= 0 && layer < r->m->cfg.num_layers;

    *k_scale = ok ? r->k_scale[layer] : 1.0f;
    *v_scale = ok ? r->v_scale[layer] : 1.0f;
}

uint64_t runner_piece_steps(const struct runner *r)
{
    return r->tp ? 0 : r->pieces.steps;
}

int runner_max_blocks_per_req(const struct runner *r)
{
    return r->max_blocks_per_req;
}

int runner_layer_cache(const struct runner *r, int layer, void **k_cache, void **v_cache)
{
    if (r->tp)
        return -ENOTSUP;   /* each rank holds its KV heads only */
    if (layer < 0 || layer >= r->m->cfg.num_layers)
        return -EINVAL;
    *k_cache = r->k_cache[layer];
    *v_cache = r->v_cache[layer];
    return 0;
}

int runner_num_ranks(const struct runner *r)
{
    return r->tp ? runner_tp_size(r->tp) : 1;
}

void runner_rank_info(const struct runner *r, int rank, struct runner_rank_info *out)
{
    if (r->tp) {
        runner_tp_rank_info(r->tp, rank, out);
        return;
    }
    memset(out, 0, sizeof *out);
    out->kv_cache_bytes = kv_cache_bytes(r);
    out->weights_bytes = weights_bytes(&r->m->cfg, dtype_size(r->be->ops->act_dtype),
                                      model_fp8_weights(&r->m->cfg) || r->opt.quantize_fp8);
    out->graph_bytes = r->graph_bytes;
}

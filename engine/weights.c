/* weights.c — uploads a struct model to a backend: fuses q/k/v (and biases) and gate/up by
 * stacking rows, shares the embedding with the LM head when tied, turns Gemma's (1 + w)
 * norm weights into plain ones, binds gpt-oss's experts as published or lays them out as the
 * other families' (upload_oai_expert), and for --quantization fp8 turns float linear weights
 * into F8_E4M3 with per-channel scales on the way (MoE experts and routers stay as stored). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/fp8.h"
#include "engine/weights.h"

/* One weight quantized at load; the backend may use data in place, so it lives until
 * weights_free. */
struct weights_fp8 {
    struct weights_fp8 *next;
    struct tensor_ref scale;
    float *scales;
    uint8_t data[];
};

int weights_quantize_fp8(const struct tensor_ref *t, uint8_t *data, float *scales,
                         struct tensor_ref *scale_ref, struct tensor_ref *out)
{
    int64_t rows = t->shape[0], cols = t->shape[1];
    struct tensor_ref row = { .data = t->data, .dtype = t->dtype };

    if (t->ndim != 2 || rows < 1 || cols < 1 ||
        (t->dtype != DT_F32 && t->dtype != DT_BF16 && t->dtype != DT_F16))
        return -EINVAL;
    for (int64_t r = 0; r < rows; r++) {
        float amax = 0.0f;

        for (int64_t c = 0; c < cols; c++)
            amax = fmaxf(amax, fabsf(model_scale_at(&row, (size_t)(r * cols + c))));
        scales[r] = amax > 0.0f ? amax / FP8_E4M3_MAX : 1.0f;
        for (int64_t c = 0; c < cols; c++)
            data[r * cols + c] =
                fp8_e4m3_from_f32(model_scale_at(&row, (size_t)(r * cols + c)) / scales[r]);
    }
    *scale_ref = (struct tensor_ref){ .name = t->name, .data = scales, .dtype = DT_F32,
                                      .ndim = 2, .shape = { rows, 1 },
                                      .nbytes = (size_t)rows * sizeof(float) };
    *out = *t;
    out->data = data;
    out->dtype = DT_F8_E4M3;
    out->nbytes = (size_t)(rows * cols);
    out->scale = scale_ref;
    out->scale_block[0] = 1;
    out->scale_block[1] = cols;
    return 0;
}

/* A float linear weight quantized into a new weights_fp8 kept on w->fp8. */
static int quantize_part(struct weights *w, const struct tensor_ref *t, struct tensor_ref *out,
                         char *err)
{
    size_t n = (size_t)t->shape[0] * (size_t)t->shape[1];
    struct weights_fp8 *q = malloc(sizeof *q + n);
    float *scales = malloc((size_t)t->shape[0] * sizeof *scales);

    if (!q || !scales) {
        free(q);
        free(scales);
        errf(err, "weights: out of memory quantizing %s to fp8", t->name ? t->name : "?");
        return -ENOMEM;
    }
    q->scales = scales;
    q->next = w->fp8;
    w->fp8 = q;
    if (weights_quantize_fp8(t, q->data, scales, &q->scale, out)) {
        errf(err, "weights: %s: cannot quantize a %s tensor to fp8", t->name ? t->name : "?",
             dtype_name(t->dtype));
        return -EINVAL;
    }
    return 0;
}

/* Uploads the parts that are present (data != NULL); all absent leaves *out empty. */
static int upload(struct backend *be, struct bk_weight *out, const struct tensor_ref *parts,
                  int nparts, char *err)
{
    int present = 0;

    memset(out, 0, sizeof *out);
    for (int i = 0; i < nparts; i++)
        present += parts[i].data != NULL;
    if (present == 0)
        return 0;
    if (present != nparts) {
        errf(err, "weights: %s: some of the fused tensors are missing",
             parts[0].name ? parts[0].name : "?");
        return -EINVAL;
    }
    return be->ops->upload_weight(be, out, parts, nparts, err);
}

/* A linear weight's parts, quantized first when asked and still in a float dtype. */
static int upload_linear(struct weights *w, struct backend *be, struct bk_weight *out,
                         const struct tensor_ref *parts, int nparts, bool quantize, char *err)
{
    struct tensor_ref q[3];
    int rc;

    for (int i = 0; i < nparts; i++) {
        q[i] = parts[i];
        if (quantize && parts[i].data && parts[i].dtype != DT_F8_E4M3 &&
            (rc = quantize_part(w, &parts[i], &q[i], err)))
            return rc;
    }
    return upload(be, out, q, nparts, err);
}

/* A host buffer of `bytes` that lives until weights_free (w->host), or NULL (message in err). */
static void *host_buf(struct weights *w, size_t bytes, const char *name, char *err)
{
    void **host = realloc(w->host, (w->num_host + 1) * sizeof *host), *v = NULL;

    if (host) {
        w->host = host;
        v = malloc(bytes);
    }
    if (!v) {
        errf(err, "weights: out of memory for %s", name ? name : "?");
        return NULL;
    }
    w->host[w->num_host++] = v;
    w->host_bytes += bytes;
    return v;
}

/* A 1-D float tensor as f32 plus `add` in a host buffer of w's (NULL: message in err). */
static float *host_f32(struct weights *w, const struct tensor_ref *t, float add, char *err)
{
    size_t n = (size_t)t->shape[0];
    float *v;

    if (!(v = host_buf(w, n * sizeof *v, t->name, err)))
        return NULL;
    for (size_t i = 0; i < n; i++)
        v[i] = add + (t->dtype == DT_F32 ? ((const float *)t->data)[i]
                      : t->dtype == DT_F16 ? f16_to_f32(((const uint16_t *)t->data)[i])
                      : bf16_to_f32(((const uint16_t *)t->data)[i]));
    return v;
}

/* A 1-D float weight as f32 plus `add`, converted on the host: Gemma's 1 + w norms (exactly
 * what GemmaRMSNorm multiplies by: it widens w to f32 before adding 1). The backend then
 * stores it in its own dtype (cuda: bf16). */
static int upload_f32(struct weights *w, struct backend *be, struct bk_weight *out,
                      const struct tensor_ref *t, float add, char *err)
{
    struct tensor_ref one = *t;
    size_t n = (size_t)t->shape[0];
    float *v;

    if (!t->data)
        return upload(be, out, t, 1, err);
    if (!(v = host_f32(w, t, add, err)))
        return -ENOMEM;
    one.data = v;
    one.dtype = DT_F32;
    one.nbytes = n * sizeof *v;
    return upload(be, out, &one, 1, err);
}

/* gpt-oss's sinks: f32 device memory on every backend, as attn_params.sinks reads them,
 * which upload_weight does not promise (cuda makes every float weight bf16): allocated and
 * copied as plain memory, freed with ops->free (weights_free). */
static int upload_sinks(struct weights *w, struct backend *be, struct bk_weight *out,
                        const struct tensor_ref *t, char *err)
{
    size_t n = (size_t)t->shape[0];
    float *v;
    int rc;

    memset(out, 0, sizeof *out);
    if (!t->data)
        return 0;
    if (!(v = host_f32(w, t, 0.0f, err)))   /* bound 1-D [num_heads] (model.c) */
        return -ENOMEM;
    if (!(out->data = be->ops->alloc(be, n * sizeof *v, err)))
        return -ENOMEM;
    *out = (struct bk_weight){ .data = out->data, .dtype = DT_F32, .rows = (int)n, .cols = 1 };
    if ((rc = be->ops->upload(be, out->data, v, n * sizeof *v))) {
        errf(err, "weights: uploading %s failed", t->name ? t->name : "?");
        be->ops->free(be, out->data);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

/* A norm weight: as stored, or (norm_plus_one) 1 + w in f32. */
static int upload_norm(struct weights *w, struct backend *be, struct bk_weight *out,
                       const struct tensor_ref *t, bool plus_one, char *err)
{
    return plus_one ? upload_f32(w, be, out, t, 1.0f, err) : upload(be, out, t, 1, err);
}

/* dst[r][c] = src[c][col(r)] for r < rows, c < cols (src has src_cols columns): a transpose,
 * with col(r) gathering gpt-oss's interleaved gate (even) and up (odd) columns into gate rows
 * first when `deinterleave` (rows even), else col(r) = r. Elements of es bytes (2 or 4), in
 * tiles of 32 x 32 so that both sides stay in cache (a third faster than row by row on the
 * 0.6 GB of experts measured in docs/BENCHMARKS.md; gpt-oss-20b's are 38 GB). */
static void transpose_rows(void *dst, const void *src, int64_t rows, int64_t cols,
                           int64_t src_cols, size_t es, bool deinterleave)
{
    enum { TILE = 32 };
    int64_t half = rows / 2;

    for (int64_t r0 = 0; r0 < rows; r0 += TILE)
        for (int64_t c0 = 0; c0 < cols; c0 += TILE)
            for (int64_t r = r0; r < MIN(r0 + TILE, rows); r++) {
                int64_t col = !deinterleave ? r : r < half ? 2 * r : 2 * (r - half) + 1;
                int64_t c1 = MIN(c0 + TILE, cols);

                if (es == 2)
                    for (int64_t c = c0; c < c1; c++)
                        ((uint16_t *)dst)[r * cols + c] = ((const uint16_t *)src)[c * src_cols + col];
                else
                    for (int64_t c = c0; c < c1; c++)
                        ((uint32_t *)dst)[r * cols + c] = ((const uint32_t *)src)[c * src_cols + col];
            }
}

/* t's data laid out anew by transpose_rows as [rows, cols] (cols 0: 1-D), in t's dtype, and
 * uploaded into *dst. The copy lives until weights_free where the backend reads it in place
 * (weights_in_place); a backend that copies has it freed at once, so that the host holds one
 * tensor's copy at a time however many experts the model has. */
static int upload_relaid(struct weights *w, struct backend *be, struct bk_weight *dst,
                         const struct tensor_ref *t, int64_t rows, int64_t cols,
                         bool deinterleave, char *err)
{
    bool keep = be->ops->weights_in_place;
    size_t es = dtype_size(t->dtype), n = (size_t)rows * (size_t)(cols ? cols : 1);
    struct tensor_ref r = *t;
    void *v;
    int rc;

    if (t->dtype != DT_F32 && t->dtype != DT_BF16 && t->dtype != DT_F16) {
        errf(err, "weights: %s: %s experts are not read (bf16, f16 or f32)",
             t->name ? t->name : "?", dtype_name(t->dtype));
        return -EINVAL;
    }
    if (!(v = keep ? host_buf(w, n * es, t->name, err) : malloc(n * es))) {
        if (!keep)
            errf(err, "weights: out of memory for %s", t->name ? t->name : "?");
        return -ENOMEM;
    }
    transpose_rows(v, t->data, rows, cols ? cols : 1, cols ? rows : 0, es, deinterleave);
    r.data = v;
    r.ndim = cols ? 2 : 1;
    r.shape[0] = rows;
    r.shape[1] = cols;
    r.nbytes = n * es;
    rc = upload(be, dst, &r, 1, err);
    if (!keep)
        free(v);
    return rc;
}

/* gpt-oss's expert (input-major gate_up_t [hidden, 2 ffn] interleaved, down_t [ffn, hidden])
 * with its biases: bound as published where the backend's moe reads that layout (no copy on
 * cpu), else uploaded as the other families' [gate; up] [2 ffn, hidden] and [hidden, ffn],
 * the gate_up bias de-interleaved the same way. */
static int upload_oai_expert(struct weights *w, struct backend *be, struct layer_weights *lw,
                             int e, const struct expert_tensors *x, char *err)
{
    int64_t h = x->gate_up_t.shape[0], f2 = x->gate_up_t.shape[1];
    int rc;

    lw->experts_oai_published = be->ops->moe_oai_published;
    if (be->ops->moe_oai_published
        ? (rc = upload(be, &lw->expert_gate_up[e], &x->gate_up_t, 1, err)) ||
          (rc = upload(be, &lw->expert_down[e], &x->down_t, 1, err)) ||
          (rc = upload(be, &lw->expert_gate_up_bias[e], &x->gate_up_bias, 1, err))
        : (rc = upload_relaid(w, be, &lw->expert_gate_up[e], &x->gate_up_t, f2, h, true, err)) ||
          (rc = upload_relaid(w, be, &lw->expert_down[e], &x->down_t, h, f2 / 2, false, err)) ||
          (rc = upload_relaid(w, be, &lw->expert_gate_up_bias[e], &x->gate_up_bias, f2, 0, true,
                              err)))
        return rc;
    return upload(be, &lw->expert_down_bias[e], &x->down_bias, 1, err);
}

static int upload_layer(struct weights *w, struct backend *be, struct layer_weights *lw,
                        const struct layer_tensors *t, bool plus_one, int num_experts, bool quantize,
                        char *err)
{
    const struct tensor_ref qkv[3] = { t->q, t->k, t->v };
    const struct tensor_ref qkv_bias[3] = { t->q_bias, t->k_bias, t->v_bias };
    const struct tensor_ref gate_up[2] = { t->gate, t->up };
    int rc;

    if (t->experts) {   /* a MoE layer: the router and every expert */
        bool oai = t->experts[0].gate_up_t.data != NULL;

        lw->expert_gate_up = calloc(num_experts, sizeof *lw->expert_gate_up);
        lw->expert_down = calloc(num_experts, sizeof *lw->expert_down);
        if (oai) {
            lw->expert_gate_up_bias = calloc(num_experts, sizeof *lw->expert_gate_up_bias);
            lw->expert_down_bias = calloc(num_experts, sizeof *lw->expert_down_bias);
        }
        if (!lw->expert_gate_up || !lw->expert_down ||
            (oai && (!lw->expert_gate_up_bias || !lw->expert_down_bias))) {
            errf(err, "weights: out of memory");
            return -ENOMEM;
        }
        lw->num_experts = num_experts;
        const struct tensor_ref sgu[2] = { t->shared.gate, t->shared.up };

        if ((rc = upload(be, &lw->router, &t->router, 1, err)) ||
            (rc = upload(be, &lw->router_bias, &t->router_bias, 1, err)) ||
            (rc = upload(be, &lw->shared_gate_up, sgu, 2, err)) ||
            (rc = upload(be, &lw->shared_down, &t->shared.down, 1, err)) ||
            (rc = upload(be, &lw->shared_gate, &t->shared_gate, 1, err)))
            return rc;
        for (int e = 0; e < num_experts; e++) {
            const struct tensor_ref eg[2] = { t->experts[e].gate, t->experts[e].up };

            if (oai && (rc = upload_oai_expert(w, be, lw, e, &t->experts[e], err)))
                return rc;
            if (oai)
                continue;
            if ((rc = upload(be, &lw->expert_gate_up[e], eg, 2, err)) ||
                (rc = upload(be, &lw->expert_down[e], &t->experts[e].down, 1, err)))
                return rc;
        }
    }
    if ((rc = upload_norm(w, be, &lw->input_norm, &t->input_norm, plus_one, err)) ||
        (rc = t->qkv.data ? upload_linear(w, be, &lw->qkv, &t->qkv, 1, quantize, err)
                          : upload_linear(w, be, &lw->qkv, qkv, 3, quantize, err)) ||
        (rc = upload(be, &lw->qkv_bias, qkv_bias, 3, err)) ||
        (rc = upload_norm(w, be, &lw->q_norm, &t->q_norm, plus_one, err)) ||
        (rc = upload_norm(w, be, &lw->k_norm, &t->k_norm, plus_one, err)) ||
        (rc = upload_linear(w, be, &lw->o, &t->o, 1, quantize, err)) ||
        (rc = upload(be, &lw->o_bias, &t->o_bias, 1, err)) ||
        (rc = upload_sinks(w, be, &lw->sinks, &t->sinks, err)) ||
        (rc = upload_norm(w, be, &lw->post_norm, &t->post_norm, plus_one, err)) ||
        (rc = upload_norm(w, be, &lw->pre_ff_norm, &t->pre_ff_norm, plus_one, err)) ||
        (rc = upload_norm(w, be, &lw->post_ff_norm, &t->post_ff_norm, plus_one, err)) ||
        (rc = t->gate_up.data ? upload_linear(w, be, &lw->gate_up, &t->gate_up, 1, quantize, err)
                              : upload_linear(w, be, &lw->gate_up, gate_up, 2, quantize, err)) ||
        (rc = upload_linear(w, be, &lw->down, &t->down, 1, quantize, err)))
        return rc;
    return 0;
}

int weights_upload(struct weights *w, struct backend *be, const struct model *m,
                   bool quantize_fp8, char *err)
{
    bool plus_one = m->cfg.norm_plus_one;
    int rc;

    memset(w, 0, sizeof *w);
    w->layers = calloc(m->cfg.num_layers, sizeof *w->layers);
    if (!w->layers) {
        errf(err, "weights: out of memory");
        return -ENOMEM;
    }
    w->num_layers = m->cfg.num_layers;
    if ((rc = upload(be, &w->embed, &m->embed, 1, err)) ||
        (rc = upload_norm(w, be, &w->final_norm, &m->final_norm, plus_one, err)))
        goto fail;
    w->tied = m->cfg.tie_word_embeddings || !m->lm_head.data || m->lm_head.data == m->embed.data;
    if (w->tied)
        w->lm_head = w->embed;
    else if ((rc = upload(be, &w->lm_head, &m->lm_head, 1, err)))
        goto fail;
    for (int l = 0; l < m->cfg.num_layers; l++)
        if ((rc = upload_layer(w, be, &w->layers[l], &m->layers[l], plus_one, m->cfg.num_experts,
                               quantize_fp8, err)))
            goto fail;
    return 0;
fail:
    weights_free(w, be);
    return rc;
}

void weights_free(struct weights *w, struct backend *be)
{
    for (int l = 0; w->layers && l < w->num_layers; l++) {
        struct bk_weight *all[] = { &w->layers[l].input_norm, &w->layers[l].qkv,
                                    &w->layers[l].qkv_bias, &w->layers[l].q_norm,
                                    &w->layers[l].k_norm, &w->layers[l].o,
                                    &w->layers[l].o_bias, &w->layers[l].router_bias,
                                    &w->layers[l].post_norm, &w->layers[l].pre_ff_norm,
                                    &w->layers[l].post_ff_norm, &w->layers[l].gate_up,
                                    &w->layers[l].down };
        struct layer_weights *lw = &w->layers[l];

        for (size_t i = 0; i < ARRAY_LEN(all); i++)
            if (all[i]->data)
                be->ops->free_weight(be, all[i]);
        be->ops->free(be, lw->sinks.data);   /* plain memory (upload_sinks); NULL-safe */
        if (lw->router.data)
            be->ops->free_weight(be, &lw->router);
        if (lw->shared_gate_up.data)
            be->ops->free_weight(be, &lw->shared_gate_up);
        if (lw->shared_down.data)
            be->ops->free_weight(be, &lw->shared_down);
        if (lw->shared_gate.data)
            be->ops->free_weight(be, &lw->shared_gate);
        for (int e = 0; e < lw->num_experts; e++) {
            if (lw->expert_gate_up && lw->expert_gate_up[e].data)
                be->ops->free_weight(be, &lw->expert_gate_up[e]);
            if (lw->expert_down && lw->expert_down[e].data)
                be->ops->free_weight(be, &lw->expert_down[e]);
            if (lw->expert_gate_up_bias && lw->expert_gate_up_bias[e].data)
                be->ops->free_weight(be, &lw->expert_gate_up_bias[e]);
            if (lw->expert_down_bias && lw->expert_down_bias[e].data)
                be->ops->free_weight(be, &lw->expert_down_bias[e]);
        }
        free(lw->expert_gate_up);
        free(lw->expert_down);
        free(lw->expert_gate_up_bias);
        free(lw->expert_down_bias);
    }
    free(w->layers);
    if (w->embed.data)
        be->ops->free_weight(be, &w->embed);
    if (!w->tied && w->lm_head.data)
        be->ops->free_weight(be, &w->lm_head);
    if (w->final_norm.data)
        be->ops->free_weight(be, &w->final_norm);
    for (int i = 0; i < w->num_host; i++)
        free(w->host[i]);
    free(w->host);
    while (w->fp8) {
        struct weights_fp8 *next = w->fp8->next;

        free(w->fp8->scales);
        free(w->fp8);
        w->fp8 = next;
    }
    memset(w, 0, sizeof *w);
}

size_t weights_bytes(const struct model_config *c, size_t elem, bool fp8_linear)
{
    size_t h = c->hidden_size, q = (size_t)c->num_heads * c->head_dim;
    size_t kv = (size_t)c->num_kv_heads * c->head_dim, ffn = c->intermediate_size;
    size_t lin_elem = fp8_linear ? 1 : elem, scale = fp8_linear ? sizeof(float) : 0;
    /* q/k/v and o, their rows' scales, then the norms and biases at elem */
    size_t attn = lin_elem * (h * q + 2 * h * kv + q * h) + scale * (q + 2 * kv + h) +
                  elem * (4 * h + q + 2 * kv);
    size_t mlp = lin_elem * 3 * h * ffn + scale * (2 * ffn + h);
    /* experts and routers stay as stored (the cuda backend holds them in bf16) */
    size_t moe = elem * ((size_t)c->num_experts * (3 * h * c->moe_intermediate_size + h) +
                         3 * h * (size_t)c->shared_expert_intermediate_size + h);
    size_t all = elem * ((size_t)c->vocab_size * h * (c->tie_word_embeddings ? 1 : 2) + h);

    if (c->moe_act == MOE_ACT_SWIGLU_OAI)   /* gpt-oss: router and expert biases */
        moe += elem * (size_t)c->num_experts * (2 * (size_t)c->moe_intermediate_size + h + 1);
    if (c->attn_sinks)                      /* gpt-oss: o bias, f32 sinks */
        attn += elem * h + sizeof(float) * c->num_heads;

    for (int l = 0; l < c->num_layers; l++)
        all += attn + (c->layer_moe[l] && c->num_experts ? moe : mlp);
    return all;
}

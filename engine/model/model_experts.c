/* model_experts.c — binds a mixture-of-experts layer's tensors: the router, every expert
 * (one tensor each as published, or slices of transformers 5's fused 3-D tensors; gpt-oss's
 * input-major interleaved ones with their biases) and Qwen2-MoE's shared expert with its
 * gate. Called by model.c's bind_layer; under --load-format dummy every expert is bound one
 * by one (model_dummy.c's windows) whichever layout the family publishes. gpt-oss's MXFP4
 * experts are dequantized here, a layer at a time, into a buffer the layer owns. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/model/model_internal.h"
#include "engine/model/mxfp4.h"
#include "engine/model/safetensors.h"   /* st_find, st_shape_format, st_file_of */

/* Expert e's [rows, cols] slice at row r0 of a fused [E, R, cols] tensor. */
static struct tensor_ref expert_slice(const struct tensor_ref *t, int e, int64_t r0, int64_t rows)
{
    struct tensor_ref s = *t;
    size_t es = dtype_size(t->dtype);

    s.ndim = 2;
    s.shape[0] = rows;
    s.shape[1] = t->shape[2];
    s.shape[2] = 0;
    s.data = (const char *)t->data + ((size_t)e * t->shape[1] + r0) * t->shape[2] * es;
    s.nbytes = (size_t)rows * t->shape[2] * es;
    return s;
}

/* A fused [E, d1, d2] expert tensor (d2 0: a fused [E, d1] bias), checked like bind()
 * checks 2-D ones. */
static int bind_fused(struct binder *b, const struct tensor_ref **out, const char *name,
                      int64_t e, int64_t d1, int64_t d2)
{
    const struct tensor_ref *r = st_find(b->st, name);
    int64_t want[3] = { e, d1, d2 };
    int ndim = d2 ? 3 : 2;
    char ws[64], hs[128];

    if (!r) {
        errf(b->err, "%s: %s: missing", b->where, name);
        return -EINVAL;
    }
    if (r->ndim != ndim || r->shape[0] != e || r->shape[1] != d1 || (d2 && r->shape[2] != d2)) {
        st_shape_format(ws, sizeof ws, ndim, want);
        st_shape_format(hs, sizeof hs, r->ndim, r->shape);
        errf(b->err, "%s: %s: expected %s, file has %s", st_file_of(b->st, r), name, ws, hs);
        return -EINVAL;
    }
    *out = r;
    return 0;
}

/* Qwen2-MoE's shared expert and its sigmoid gate, when the config has one. */
static int bind_shared(struct binder *b, const struct model_config *c, const char *prefix, int l,
                       struct layer_tensors *lt)
{
    int64_t h = c->hidden_size, f = c->shared_expert_intermediate_size;
    char n[192];
    int rc;

    if (f == 0)
        return 0;
    snprintf(n, sizeof n, "%slayers.%d.mlp.shared_expert.gate_proj.weight", prefix, l);
    if ((rc = model__bind(b, &lt->shared.gate, n, 2, f, h)))
        return rc;
    snprintf(n, sizeof n, "%slayers.%d.mlp.shared_expert.up_proj.weight", prefix, l);
    if ((rc = model__bind(b, &lt->shared.up, n, 2, f, h)))
        return rc;
    snprintf(n, sizeof n, "%slayers.%d.mlp.shared_expert.down_proj.weight", prefix, l);
    if ((rc = model__bind(b, &lt->shared.down, n, 2, h, f)))
        return rc;
    snprintf(n, sizeof n, "%slayers.%d.mlp.shared_expert_gate.weight", prefix, l);
    return model__bind(b, &lt->shared_gate, n, 2, 1, h);
}

/* Row e of a 2-D [E, n] tensor (a fused bias) as a 1-D [n] tensor. */
static struct tensor_ref row_slice(const struct tensor_ref *t, int e)
{
    struct tensor_ref s = *t;
    size_t es = dtype_size(t->dtype);

    s.ndim = 1;
    s.shape[0] = t->shape[1];
    s.shape[1] = 0;
    s.data = (const char *)t->data + (size_t)e * t->shape[1] * es;
    s.nbytes = (size_t)t->shape[1] * es;
    return s;
}

/* --load-format dummy: gpt-oss's experts one by one in the published input-major layout
 * (gate_up_t [hidden, 2 ffn], down_t [ffn, hidden], their biases), each a window of the
 * pool, so that the upload and the tensor-parallel shards treat them as a checkpoint's. */
static int bind_gpt_oss_dummy(struct binder *b, const struct model_config *c, const char *prefix,
                              int l, struct layer_tensors *lt)
{
    int64_t h = c->hidden_size, f = c->moe_intermediate_size;
    const char *base = "%slayers.%d.mlp.experts.%d.%s";
    char n[192];
    int rc = 0;

    for (int e = 0; e < c->num_experts && rc == 0; e++) {
        struct expert_tensors *x = &lt->experts[e];

        snprintf(n, sizeof n, base, prefix, l, e, "gate_up_proj");
        if ((rc = model__bind(b, &x->gate_up_t, n, 2, h, 2 * f)))
            break;
        snprintf(n, sizeof n, base, prefix, l, e, "down_proj");
        if ((rc = model__bind(b, &x->down_t, n, 2, f, h)))
            break;
        snprintf(n, sizeof n, base, prefix, l, e, "gate_up_proj_bias");
        if ((rc = model__bind(b, &x->gate_up_bias, n, 1, 2 * f, 0)))
            break;
        snprintf(n, sizeof n, base, prefix, l, e, "down_proj_bias");
        rc = model__bind(b, &x->down_bias, n, 1, h, 0);
    }
    return rc;
}

/* An MXFP4 weight's two U8 tensors, `base`_blocks [E, out, in / 32, 16] and `base`_scales
 * [E, out, in / 32], checked; a wrong one is one line naming it. */
static int bind_mxfp4_pair(struct binder *b, const char *base, int64_t E, int64_t out, int64_t in,
                           const struct tensor_ref **blocks, const struct tensor_ref **scales)
{
    int64_t want[4] = { E, out, in / MXFP4_BLOCK, MXFP4_BLOCK_BYTES };
    char n[200], ws[96], hs[128];

    for (int k = 0; k < 2; k++) {
        const struct tensor_ref *r;
        int nd = k ? 3 : 4;

        snprintf(n, sizeof n, "%s_%s", base, k ? "scales" : "blocks");
        if (!(r = st_find(b->st, n))) {
            errf(b->err, "%s: %s: missing (MXFP4 experts: quantization_config is mxfp4)",
                 b->where, n);
            return -EINVAL;
        }
        if (r->dtype != DT_U8) {
            errf(b->err, "%s: %s: dtype %s, expected U8 (MXFP4 %s)", st_file_of(b->st, r), n,
                 dtype_name(r->dtype), k ? "e8m0 scales" : "packed e2m1 blocks");
            return -EINVAL;
        }
        if (r->ndim != nd || memcmp(r->shape, want, (size_t)nd * sizeof *want)) {
            st_shape_format(ws, sizeof ws, nd, want);
            st_shape_format(hs, sizeof hs, r->ndim, r->shape);
            errf(b->err, "%s: %s: expected %s, file has %s", st_file_of(b->st, r), n, ws, hs);
            return -EINVAL;
        }
        *(k ? scales : blocks) = r;
    }
    return 0;
}

/* One layer's MXFP4 experts to dequantize: expert e's gate_up and down, for the e of one
 * worker's share (first, first + step, ...). */
struct dequant_share {
    void *out;
    enum dtype dt;
    const uint8_t *gb, *gs, *db, *ds;
    int64_t h, f, E, first, step;
};

static void *dequant_experts(void *arg)
{
    const struct dequant_share *d = arg;
    size_t es = dtype_size(d->dt), gu_elems = (size_t)(d->E * d->h * 2 * d->f);
    size_t gg = (size_t)(2 * d->f * (d->h / MXFP4_BLOCK)), dg = (size_t)(d->h * (d->f / MXFP4_BLOCK));

    for (int64_t e = d->first; e < d->E; e += d->step) {
        mxfp4_dequantize((char *)d->out + (size_t)e * d->h * 2 * d->f * es, d->dt,
                         d->gb + e * gg * MXFP4_BLOCK_BYTES, d->gs + e * gg, 2 * d->f, d->h);
        mxfp4_dequantize((char *)d->out + (gu_elems + (size_t)e * d->f * d->h) * es, d->dt,
                         d->db + e * dg * MXFP4_BLOCK_BYTES, d->ds + e * dg, d->h, d->f);
    }
    return NULL;
}

/* The layer's experts spread over the host's cores, an expert at a time (gpt-oss-20b's 24
 * layers of 32 experts take ~45 s on one thread); a worker that cannot start leaves its share
 * to this thread. Every expert is written by exactly one worker, so the bytes are those of
 * one thread's pass. */
static void dequant_layer(const struct dequant_share *layer)
{
    enum { MAX_WORKERS = 32 };
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = (int)MIN(MIN((int64_t)MAX_WORKERS, layer->E), cpus > 0 ? (int64_t)cpus : 1);
    struct dequant_share share[MAX_WORKERS];
    pthread_t tid[MAX_WORKERS];
    bool started[MAX_WORKERS] = { false };

    for (int t = 0; t < n; t++) {
        share[t] = *layer;
        share[t].first = t;
        share[t].step = n;
        started[t] = t > 0 && pthread_create(&tid[t], NULL, dequant_experts, &share[t]) == 0;
    }
    for (int t = 0; t < n; t++)
        if (!started[t])
            dequant_experts(&share[t]);
    for (int t = 1; t < n; t++)
        if (started[t])
            pthread_join(tid[t], NULL);
}

/* gpt-oss's MXFP4 experts of layer l dequantized into lt->mxfp4_experts as the bf16
 * checkpoints publish them (gu [E, hidden, 2 ffn], dn [E, ffn, hidden]), in `dt`, the dtype
 * of the experts' biases: the model's float dtype as published. */
static int dequantize_gpt_oss(struct binder *b, const struct model_config *c, const char *prefix,
                              int l, enum dtype dt, struct layer_tensors *lt,
                              struct tensor_ref *gu, struct tensor_ref *dn)
{
    int64_t h = c->hidden_size, f = c->moe_intermediate_size, E = c->num_experts;
    const struct tensor_ref *gb, *gs, *db, *ds;
    size_t es = dtype_size(dt), gu_elems = (size_t)(E * h * 2 * f), all;
    char n[192];
    double t0 = now_s();
    int rc;

    if (h % MXFP4_BLOCK || f % MXFP4_BLOCK) {
        errf(b->err, "%s: hidden_size %lld and intermediate_size %lld must be multiples of %d "
             "for MXFP4 experts", b->where, (long long)h, (long long)f, MXFP4_BLOCK);
        return -EINVAL;
    }
    if (dt != DT_F32 && dt != DT_BF16 && dt != DT_F16) {
        errf(b->err, "%s: layer %d: experts' biases are %s; MXFP4 experts are dequantized to "
             "their float dtype (F32, BF16 or F16)", b->where, l, dtype_name(dt));
        return -EINVAL;
    }
    snprintf(n, sizeof n, "%slayers.%d.mlp.experts.gate_up_proj", prefix, l);
    if ((rc = bind_mxfp4_pair(b, n, E, 2 * f, h, &gb, &gs)))
        return rc;
    snprintf(n, sizeof n, "%slayers.%d.mlp.experts.down_proj", prefix, l);
    if ((rc = bind_mxfp4_pair(b, n, E, h, f, &db, &ds)))
        return rc;
    all = gu_elems + (size_t)(E * f * h);
    if (!(lt->mxfp4_experts = malloc(all * es))) {
        errf(b->err, "%s: out of memory for layer %d's dequantized MXFP4 experts (%zu MiB)",
             b->where, l, (all * es) >> 20);
        return -ENOMEM;
    }
    dequant_layer(&(struct dequant_share){ lt->mxfp4_experts, dt, gb->data, gs->data, db->data,
                                           ds->data, h, f, E, 0, 1 });
    *gu = (struct tensor_ref){ .name = gb->name, .data = lt->mxfp4_experts, .dtype = dt,
                               .ndim = 3, .shape = { E, h, 2 * f }, .nbytes = gu_elems * es };
    *dn = (struct tensor_ref){ .name = db->name, .dtype = dt, .ndim = 3, .shape = { E, f, h },
                               .data = (char *)lt->mxfp4_experts + gu_elems * es,
                               .nbytes = (size_t)(E * f * h) * es };
    b->mxfp4_bytes += all * es;
    b->mxfp4_dtype = dt;
    b->mxfp4_seconds += now_s() - t0;
    return 0;
}

/* gpt-oss's MoE block as published in bf16/f32: mlp.router.weight/bias and the fused
 * mlp.experts.gate_up_proj [E, hidden, 2 ffn] (gate and up interleaved), gate_up_proj_bias
 * [E, 2 ffn], down_proj [E, ffn, hidden], down_proj_bias [E, hidden], each expert bound as
 * its slices (expert_tensors' *_t fields, input-major). With quantization_config mxfp4 the two
 * weights come as *_blocks / *_scales and are dequantized (dequantize_gpt_oss); an MXFP4
 * folder that lost its quantization_config is refused by name. */
static int bind_gpt_oss(struct binder *b, const struct model_config *c, const char *prefix, int l,
                        struct layer_tensors *lt)
{
    int64_t h = c->hidden_size, f = c->moe_intermediate_size, E = c->num_experts;
    const struct tensor_ref *gu, *gub, *dn, *dnb;
    struct tensor_ref mx_gu, mx_dn;
    char n[192];
    bool mxfp4;
    int rc;

    snprintf(n, sizeof n, "%slayers.%d.mlp.experts.gate_up_proj_blocks", prefix, l);
    mxfp4 = b->st && st_find(b->st, n);
    if (mxfp4 && c->quant != QUANT_MXFP4) {
        errf(b->err, "%s: %s: MXFP4 experts (*_blocks, *_scales), but config.json has no "
             "quantization_config with quant_method mxfp4", b->where, n);
        return -ENOTSUP;
    }
    snprintf(n, sizeof n, "%slayers.%d.mlp.experts.gate_up_proj", prefix, l);
    /* an mxfp4 config whose folder holds the float experts reads those */
    mxfp4 = c->quant == QUANT_MXFP4 && b->st && !st_find(b->st, n);
    snprintf(n, sizeof n, "%slayers.%d.mlp.router.weight", prefix, l);
    if ((rc = model__bind(b, &lt->router, n, 2, E, h)))
        return rc;
    snprintf(n, sizeof n, "%slayers.%d.mlp.router.bias", prefix, l);
    if ((rc = model__bind(b, &lt->router_bias, n, 1, E, 0)))
        return rc;
    if (b->dummy)
        return bind_gpt_oss_dummy(b, c, prefix, l, lt);
    snprintf(n, sizeof n, "%slayers.%d.mlp.experts.gate_up_proj_bias", prefix, l);
    if ((rc = bind_fused(b, &gub, n, E, 2 * f, 0)))
        return rc;
    snprintf(n, sizeof n, "%slayers.%d.mlp.experts.down_proj_bias", prefix, l);
    if ((rc = bind_fused(b, &dnb, n, E, h, 0)))
        return rc;
    if (mxfp4) {
        if ((rc = dequantize_gpt_oss(b, c, prefix, l, gub->dtype, lt, &mx_gu, &mx_dn)))
            return rc;
        gu = &mx_gu;
        dn = &mx_dn;
    } else {
        snprintf(n, sizeof n, "%slayers.%d.mlp.experts.gate_up_proj", prefix, l);
        if ((rc = bind_fused(b, &gu, n, E, h, 2 * f)))
            return rc;
        snprintf(n, sizeof n, "%slayers.%d.mlp.experts.down_proj", prefix, l);
        if ((rc = bind_fused(b, &dn, n, E, f, h)))
            return rc;
    }
    for (int e = 0; e < E; e++) {
        lt->experts[e].gate_up_t = expert_slice(gu, e, 0, h);
        lt->experts[e].down_t = expert_slice(dn, e, 0, f);
        lt->experts[e].gate_up_bias = row_slice(gub, e);
        lt->experts[e].down_bias = row_slice(dnb, e);
    }
    return 0;
}

/* A MoE layer's router and experts: per-expert tensors as published, or transformers 5's
 * fused experts.gate_up_proj / experts.down_proj (gate rows first, as its chunk(2) reads). */
int model__bind_moe(struct binder *b, const struct model_config *c, const char *prefix, int l,
                    struct layer_tensors *lt)
{
    int64_t h = c->hidden_size, f = c->moe_intermediate_size, E = c->num_experts;
    const char *blk = "mlp.";
    static const char *const names[2][3] = { { "w1", "w3", "w2" },
                                             { "gate_proj", "up_proj", "down_proj" } };
    const char *const *nm = names[c->arch != ARCH_MIXTRAL];
    const struct tensor_ref *gu, *dn;
    char n[192];
    int rc;

    /* Mixtral as published names the block block_sparse_moe; transformers 5 calls it mlp */
    snprintf(n, sizeof n, "%slayers.%d.block_sparse_moe.gate.weight", prefix, l);
    if (c->arch == ARCH_MIXTRAL && b->st && st_find(b->st, n))
        blk = "block_sparse_moe.";
    if (!(lt->experts = calloc((size_t)E, sizeof *lt->experts))) {
        errf(b->err, "%s: out of memory", b->where);
        return -ENOMEM;
    }
    if (c->arch == ARCH_GPT_OSS)
        return bind_gpt_oss(b, c, prefix, l, lt);
    snprintf(n, sizeof n, "%slayers.%d.%sgate.weight", prefix, l, blk);
    if ((rc = model__bind(b, &lt->router, n, 2, E, h)))
        return rc;
    /* dummy weights bind per expert: windows of one pool instead of a fused tensor's bytes */
    snprintf(n, sizeof n, "%slayers.%d.%sexperts.gate_up_proj", prefix, l, blk);
    if (b->st && st_find(b->st, n)) {
        if ((rc = bind_fused(b, &gu, n, E, 2 * f, h)))
            return rc;
        snprintf(n, sizeof n, "%slayers.%d.%sexperts.down_proj", prefix, l, blk);
        if ((rc = bind_fused(b, &dn, n, E, h, f)))
            return rc;
        for (int e = 0; e < E; e++) {
            lt->experts[e].gate = expert_slice(gu, e, 0, f);
            lt->experts[e].up = expert_slice(gu, e, f, f);
            lt->experts[e].down = expert_slice(dn, e, 0, h);
        }
        return bind_shared(b, c, prefix, l, lt);
    }
    for (int e = 0; e < E && rc == 0; e++) {
        struct expert_tensors *x = &lt->experts[e];

        snprintf(n, sizeof n, "%slayers.%d.%sexperts.%d.%s.weight", prefix, l, blk, e, nm[0]);
        if (!(rc = model__bind(b, &x->gate, n, 2, f, h))) {
            snprintf(n, sizeof n, "%slayers.%d.%sexperts.%d.%s.weight", prefix, l, blk, e, nm[1]);
            if (!(rc = model__bind(b, &x->up, n, 2, f, h))) {
                snprintf(n, sizeof n, "%slayers.%d.%sexperts.%d.%s.weight", prefix, l, blk, e, nm[2]);
                rc = model__bind(b, &x->down, n, 2, h, f);
            }
        }
    }
    return rc ? rc : bind_shared(b, c, prefix, l, lt);
}

/* model_dummy.c — --load-format dummy (vLLM's name): a model folder with config.json and a
 * tokenizer but no weights gets random ones, so that benchmarks of 8B, 70B or 30B-A3B shapes
 * need no download. Every tensor the binder asks for points into one of two shared pools in the
 * config's dtype: the weights' (seeded, transformers' N(0, 0.02) as osprey gen-model draws
 * it, sized for the largest tensor plus a little slack; every tensor reads its own window of
 * it, at an offset hashed from its name, so that layers and experts differ) and the norms'
 * (their neutral value, 1, or 0 for Gemma's 1 + w). Biases and gpt-oss's sinks are drawn like
 * weights. Tensors share bytes on the host: a MoE model's hundreds of experts cost nothing
 * more there, but every expert is uploaded and read as its own copy (engine/weights.c), so
 * bandwidth figures are those of the real model; and a random router spreads tokens over the
 * experts, as a trained one with its load-balancing loss roughly does. Under --quantization
 * fp8 the linear layers' weights come as F8_E4M3 already, codes of the same draw with one
 * scale a row, as the quantizer at load would make them (experts and routers stay float, as
 * they do for a real checkpoint): drawing 8 billion floats and quantizing them on the host
 * would take a minute for nothing. */
#include "engine/base/fp8.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/rng.h"
#include "engine/base/util.h"
#include "engine/model/model_internal.h"

#define DUMMY_STD 0.02    /* transformers' initializer_range, as gen_model.c */
/* A tensor starts at one of DUMMY_SLOTS offsets DUMMY_STRIDE elements apart (64 bytes in
 * bf16: rows stay as aligned as malloc's), so the pools are that much longer than the
 * largest tensor. 4096 slots: 128 experts of a layer rarely share one. */
#define DUMMY_SLOTS 4096
#define DUMMY_STRIDE 32
#define DUMMY_SLACK ((size_t)DUMMY_SLOTS * DUMMY_STRIDE)

struct model_dummy {
    enum dtype dtype;
    void *weights, *norms;     /* pools of pool_elems and norm_elems elements */
    size_t pool_elems, norm_elems;
    uint8_t *codes;            /* fp8: the linear weights' e4m3 pool, linear_elems codes */
    size_t linear_elems;
    float *scales;             /* fp8: one per row, scale_rows of them */
    struct tensor_ref scale_ref;   /* what the fp8 tensors' .scale points at */
};

/* The draw: Irwin-Hall of four 16-bit uniforms of one hash, unit variance (gen_model.c's). */
static float draw(uint64_t seed, uint64_t i)
{
    uint64_t r = rng_at(seed, i);
    int32_t s = (int32_t)(r & 0xffff) + (int32_t)(r >> 16 & 0xffff) +
                (int32_t)(r >> 32 & 0xffff) + (int32_t)(r >> 48);

    return (float)(s - 131070) * (float)(1.0 / 37837.23);
}

static void store(void *pool, enum dtype dt, size_t i, float v)
{
    if (dt == DT_BF16)
        ((uint16_t *)pool)[i] = f32_to_bf16(v);
    else if (dt == DT_F16)
        ((uint16_t *)pool)[i] = f32_to_f16(v);
    else
        ((float *)pool)[i] = v;
}

/* Elements of the largest 2-D tensor the binder asks for in c: the embedding, fused q/k/v,
 * gate/up and down of the dense layers, and of a MoE layer the router, one expert (gpt-oss's
 * input-major gate_up [hidden, 2 ffn]) and the shared expert. */
static size_t largest_tensor(const struct model_config *c)
{
    int64_t h = c->hidden_size, qd = (int64_t)c->num_heads * c->head_dim;
    int64_t kvd = (int64_t)c->num_kv_heads * c->head_dim, ffn = c->intermediate_size;
    int64_t n = MAX((int64_t)c->vocab_size * h, MAX(qd + 2 * kvd, 2 * ffn) * h);

    n = MAX(n, h * MAX(qd, ffn));
    if (c->num_experts)
        n = MAX(n, h * MAX((int64_t)c->num_experts, 2 * (int64_t)c->moe_intermediate_size));
    return (size_t)MAX(n, h * (int64_t)c->shared_expert_intermediate_size);
}

int model__dummy_create(struct model_dummy **out, const struct model_config *c, uint64_t seed,
                        bool fp8, char *err)
{
    int64_t h = c->hidden_size, qd = (int64_t)c->num_heads * c->head_dim;
    int64_t kvd = (int64_t)c->num_kv_heads * c->head_dim, ffn = c->intermediate_size;
    int64_t wide = MAX(qd + 2 * kvd, 2 * ffn) * h;
    struct model_dummy *d;
    size_t es;

    *out = NULL;
    if (c->dtype != DT_BF16 && c->dtype != DT_F16 && c->dtype != DT_F32) {
        errf(err, "--load-format dummy: config.json's dtype %s is not a float dtype to draw "
             "weights in", dtype_name(c->dtype));
        return -EINVAL;
    }
    /* an MXFP4 config's experts are float once loaded: drawn as such */
    if (c->quant != QUANT_NONE && c->quant != QUANT_MXFP4) {
        errf(err, "--load-format dummy: config.json declares a %s quantization_config; dummy "
             "weights are drawn in the config's float dtype (use --quantization fp8 for fp8 "
             "weights)", model_quant_name(c->quant));
        return -EINVAL;
    }
    if (!(d = calloc(1, sizeof *d))) {
        errf(err, "--load-format dummy: out of memory");
        return -ENOMEM;
    }
    d->dtype = c->dtype;
    es = dtype_size(c->dtype);
    d->pool_elems = largest_tensor(c) + DUMMY_SLACK;
    d->norm_elems = (size_t)MAX(h, MAX(qd + 2 * kvd, c->head_dim));
    d->weights = malloc(d->pool_elems * es);
    d->norms = malloc(d->norm_elems * es);
    if (fp8) {
        size_t rows = (size_t)MAX(MAX(qd + 2 * kvd, 2 * ffn), h);

        d->linear_elems = (size_t)MAX(wide, h * MAX(qd, ffn)) + DUMMY_SLACK;
        d->codes = malloc(d->linear_elems);
        d->scales = malloc(rows * sizeof *d->scales);
        d->scale_ref = (struct tensor_ref){ .name = "(dummy weight_scale)", .data = d->scales,
                                            .dtype = DT_F32, .ndim = 2, .shape = { (int64_t)rows, 1 },
                                            .nbytes = rows * sizeof *d->scales };
        if (d->scales)   /* codes of N(0, 1) * 448 / 4: the row's absmax near 448, as quantized */
            for (size_t i = 0; i < rows; i++)
                d->scales[i] = (float)(DUMMY_STD * 4 / FP8_E4M3_MAX);
    }
    if (!d->weights || !d->norms || (fp8 && (!d->codes || !d->scales))) {
        errf(err, "--load-format dummy: out of host memory for %zu MiB of random weights",
             d->pool_elems * es >> 20);
        model__dummy_destroy(d);
        return -ENOMEM;
    }
    /* Irwin-Hall of four 16-bit uniforms per hash, unit variance, times the std: gen_model's
     * draw, one hash an element */
    for (size_t i = 0; i < d->pool_elems; i++)
        store(d->weights, d->dtype, i, draw(seed, i) * (float)DUMMY_STD);
    for (size_t i = 0; i < d->linear_elems; i++)
        d->codes[i] = fp8_e4m3_from_f32(draw(seed, i) * (FP8_E4M3_MAX / 4));
    for (size_t i = 0; i < d->norm_elems; i++)
        store(d->norms, d->dtype, i, c->norm_plus_one ? 0.0f : 1.0f);
    *out = d;
    return 0;
}

void model__dummy_destroy(struct model_dummy *d)
{
    if (!d)
        return;
    free(d->weights);
    free(d->norms);
    free(d->codes);
    free(d->scales);
    free(d);
}

size_t model__dummy_bytes(const struct model_dummy *d)
{
    size_t rows = d->scales ? (size_t)d->scale_ref.shape[0] : 0;

    return (d->pool_elems + d->norm_elems) * dtype_size(d->dtype) + d->linear_elems +
           rows * sizeof *d->scales;
}

/* Whether a 1-D tensor is drawn like a weight (biases, gpt-oss's sinks) rather than set to
 * a norm's neutral value. */
static bool drawn_1d(const char *name)
{
    size_t n = strlen(name);

    return (n >= 4 && !strcmp(name + n - 4, "bias")) || (n >= 5 && !strcmp(name + n - 5, "sinks"));
}

/* The window of a pool where `name` starts: a hash of the name, FNV-1a. */
static size_t offset_of(const char *name)
{
    uint64_t x = 0xcbf29ce484222325ull;

    for (const char *p = name; *p; p++)
        x = (x ^ (uint8_t)*p) * 0x100000001b3ull;
    return (size_t)(rng_mix(x) % DUMMY_SLOTS) * DUMMY_STRIDE;
}

int model__dummy_bind(struct model_dummy *d, struct tensor_ref *t, const char *name, int ndim,
                      int64_t d0, int64_t d1, bool linear)
{
    size_t n = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1), off = offset_of(name);
    bool norm = ndim == 1 && !drawn_1d(name);

    if (linear && d->codes) {
        if (ndim != 2 || n + off > d->linear_elems || (size_t)d0 > (size_t)d->scale_ref.shape[0])
            return -EINVAL;
        *t = (struct tensor_ref){ .name = "(dummy weight)", .data = d->codes + off,
                                  .dtype = DT_F8_E4M3, .ndim = 2, .shape = { d0, d1 },
                                  .nbytes = n, .scale = &d->scale_ref,
                                  .scale_block = { 1, d1 } };
        return 0;
    }
    if (norm ? n > d->norm_elems : n + off > d->pool_elems)
        return -EINVAL;   /* a shape the pools were not sized for: our bug, said by the caller */
    /* the caller's name buffer is not kept */
    *t = (struct tensor_ref){ .name = "(dummy weight)",
                              .data = norm ? d->norms
                                           : (char *)d->weights + off * dtype_size(d->dtype),
                              .dtype = d->dtype, .ndim = ndim, .shape = { d0, ndim == 2 ? d1 : 0 },
                              .nbytes = n * dtype_size(d->dtype) };
    return 0;
}

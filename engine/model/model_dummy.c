/* model_dummy.c — --load-format dummy (vLLM's name): a model folder with config.json and a
 * tokenizer but no weights gets random ones, so that benchmarks of 8B or 70B shapes need no
 * download. Every tensor the binder asks for points into one of two shared pools in the
 * config's dtype: the weights' (seeded, transformers' N(0, 0.02) as osprey gen-model draws
 * it, sized for the largest tensor; every tensor reads a prefix of it) and the norms' (their
 * neutral value, 1, or 0 for Gemma's 1 + w). Tensors share bytes: this is a shape, not a
 * model. Under --quantization fp8 the linear layers' weights come as F8_E4M3 already, codes
 * of the same draw with one scale a row, as the quantizer at load would make them: drawing
 * 8 billion floats and quantizing them on the host would take a minute for nothing. */
#include "engine/base/fp8.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/rng.h"
#include "engine/base/util.h"
#include "engine/model/model_internal.h"

#define DUMMY_STD 0.02    /* transformers' initializer_range, as gen_model.c */

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

int model__dummy_create(struct model_dummy **out, const struct model_config *c, uint64_t seed,
                        bool fp8, char *err)
{
    int64_t h = c->hidden_size, qd = (int64_t)c->num_heads * c->head_dim;
    int64_t kvd = (int64_t)c->num_kv_heads * c->head_dim, ffn = c->intermediate_size;
    int64_t big = (int64_t)c->vocab_size * h, wide = MAX(qd + 2 * kvd, 2 * ffn) * h;
    struct model_dummy *d;
    size_t es;

    *out = NULL;
    if (c->dtype != DT_BF16 && c->dtype != DT_F16 && c->dtype != DT_F32) {
        errf(err, "--load-format dummy: config.json's dtype %s is not a float dtype to draw "
             "weights in", dtype_name(c->dtype));
        return -EINVAL;
    }
    if (c->quant != QUANT_NONE) {
        errf(err, "--load-format dummy: config.json declares a %s quantization_config; dummy "
             "weights are drawn in the config's float dtype (use --quantization fp8 for fp8 "
             "weights)", model_quant_name(c->quant));
        return -EINVAL;
    }
    if (c->num_experts) {
        errf(err, "--load-format dummy: %s is a mixture-of-experts model; dummy weights are "
             "drawn for dense models only in this build", c->arch_name);
        return -ENOTSUP;
    }
    if (!(d = calloc(1, sizeof *d))) {
        errf(err, "--load-format dummy: out of memory");
        return -ENOMEM;
    }
    d->dtype = c->dtype;
    es = dtype_size(c->dtype);
    d->pool_elems = (size_t)MAX(big, MAX(wide, h * MAX(qd, ffn)));
    d->norm_elems = (size_t)MAX(h, MAX(qd + 2 * kvd, c->head_dim));
    d->weights = malloc(d->pool_elems * es);
    d->norms = malloc(d->norm_elems * es);
    if (fp8) {
        size_t rows = (size_t)MAX(MAX(qd + 2 * kvd, 2 * ffn), h);

        d->linear_elems = (size_t)MAX(wide, h * MAX(qd, ffn));
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

int model__dummy_bind(struct model_dummy *d, struct tensor_ref *t, const char *name, int ndim,
                      int64_t d0, int64_t d1, bool linear)
{
    size_t n = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1);
    bool norm = ndim == 1;

    if (linear && d->codes) {
        if (ndim != 2 || n > d->linear_elems || (size_t)d0 > (size_t)d->scale_ref.shape[0])
            return -EINVAL;
        *t = (struct tensor_ref){ .name = "(dummy weight)", .data = d->codes,
                                  .dtype = DT_F8_E4M3, .ndim = 2, .shape = { d0, d1 },
                                  .nbytes = n, .scale = &d->scale_ref,
                                  .scale_block = { 1, d1 } };
        return 0;
    }
    if (n > (norm ? d->norm_elems : d->pool_elems))
        return -EINVAL;   /* a shape the pools were not sized for: our bug, said by the caller */
    (void)name;   /* the caller's buffer: not kept */
    *t = (struct tensor_ref){ .name = "(dummy weight)", .data = norm ? d->norms : d->weights,
                              .dtype = d->dtype, .ndim = ndim, .shape = { d0, ndim == 2 ? d1 : 0 },
                              .nbytes = n * dtype_size(d->dtype) };
    return 0;
}

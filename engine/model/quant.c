/* quant.c — FP8 checkpoints as published, in vLLM's names. Two config styles:
 *   {"quant_method":"fp8","fmt":"e4m3","activation_scheme":"dynamic","weight_block_size":[128,128]}
 *     (Qwen3-*-FP8, DeepSeek-V3): F8_E4M3 weights with weight_scale_inv per 128x128 block, or
 *     without weight_block_size one weight_scale per tensor;
 *   {"quant_method":"compressed-tensors","format":"float-quantized","config_groups":{"group_0":
 *     {"weights":{"type":"float","num_bits":8,"strategy":"channel"|"tensor"},...}},...}
 *     (llm-compressor FP8): F8_E4M3 weights with weight_scale [out, 1] or one value.
 * Static activation schemes (activation_scheme "static", input_activations.dynamic false)
 * bind each weight's input_scale too: the CUDA backend quantizes that layer's activations
 * with it; the CPU backend computes W8A16 (weights dequantized, activations in f32) and
 * ignores it. gpt-oss's "mxfp4" (experts only) is accepted here and read by
 * model_experts.c. Other methods are refused with one line. */
#include "engine/model/quant.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/log.h"
#include "engine/model/safetensors.h"

static const char *str_member(const cJSON *o, const char *key)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

    return cJSON_IsString(j) ? j->valuestring : NULL;
}

static int parse_fp8(const cJSON *qc, const char *path, struct model_config *cfg, char *err)
{
    const char *fmt = str_member(qc, "fmt"), *act = str_member(qc, "activation_scheme");
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(qc, "weight_block_size");

    if (fmt && strcmp(fmt, "e4m3")) {
        errf(err, "%s: quantization_config.fmt: '%.32s' is not supported (e4m3)", path, fmt);
        return -EINVAL;
    }
    if (act && strcmp(act, "dynamic") && strcmp(act, "static")) {
        errf(err, "%s: quantization_config.activation_scheme: '%.32s' is not supported "
             "(dynamic, static)", path, act);
        return -EINVAL;
    }
    cfg->quant_static_input = act && !strcmp(act, "static");
    if (!bs || cJSON_IsNull(bs)) {
        cfg->quant = QUANT_FP8_TENSOR;
        return 0;
    }
    if (!cJSON_IsArray(bs) || cJSON_GetArraySize(bs) != 2 ||
        !cJSON_IsNumber(bs->child) || !cJSON_IsNumber(bs->child->next)) {
        errf(err, "%s: quantization_config.weight_block_size: expected two integers", path);
        return -EINVAL;
    }
    for (int i = 0; i < 2; i++) {
        double v = (i ? bs->child->next : bs->child)->valuedouble;

        if (v != floor(v) || v < 1 || v > 65536) {
            errf(err, "%s: quantization_config.weight_block_size[%d]: %g is not an integer in "
                 "[1, 65536]", path, i, v);
            return -EINVAL;
        }
        cfg->quant_block[i] = (int)v;
    }
    cfg->quant = QUANT_FP8_BLOCK;
    return 0;
}

static int parse_compressed(const cJSON *qc, const char *path, struct model_config *cfg,
                            char *err)
{
    const char *format = str_member(qc, "format"), *type, *strategy;
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(qc, "config_groups"), *g, *w, *bits;

    if (!format || strcmp(format, "float-quantized")) {
        errf(err, "%s: quantization_config.format: compressed-tensors format '%.32s' is not "
             "supported (osprey reads %s)", path, format ? format : "(missing)", QUANT_FORMATS);
        return -EINVAL;
    }
    if (!cJSON_IsObject(groups) || cJSON_GetArraySize(groups) != 1) {
        errf(err, "%s: quantization_config.config_groups: expected exactly one group, got %d",
             path, cJSON_IsObject(groups) ? cJSON_GetArraySize(groups) : 0);
        return -EINVAL;
    }
    g = groups->child;
    w = cJSON_GetObjectItemCaseSensitive(g, "weights");
    bits = cJSON_GetObjectItemCaseSensitive(w, "num_bits");
    type = str_member(w, "type");
    strategy = str_member(w, "strategy");
    if (!cJSON_IsObject(w) || !type || !strategy || !cJSON_IsNumber(bits)) {
        errf(err, "%s: quantization_config.config_groups.%s.weights: expected an object with "
             "type, num_bits and strategy", path, g->string);
        return -EINVAL;
    }
    if (strcmp(type, "float") || bits->valuedouble != 8) {
        errf(err, "%s: quantization_config: compressed-tensors %s weights of %g bits are not "
             "supported (osprey reads %s)", path, type, bits->valuedouble, QUANT_FORMATS);
        return -EINVAL;
    }
    {
        const cJSON *ia = cJSON_GetObjectItemCaseSensitive(g, "input_activations");
        const cJSON *dyn = cJSON_GetObjectItemCaseSensitive(ia, "dynamic");

        cfg->quant_static_input = cJSON_IsObject(ia) && cJSON_IsFalse(dyn);
    }
    if (!strcmp(strategy, "channel")) {
        cfg->quant = QUANT_FP8_CHANNEL;
    } else if (!strcmp(strategy, "tensor")) {
        cfg->quant = QUANT_FP8_TENSOR;
    } else {
        errf(err, "%s: quantization_config.config_groups.%s.weights.strategy: '%.32s' is not "
             "supported (channel, tensor)", path, g->string, strategy);
        return -EINVAL;
    }
    return 0;
}

int quant_config_parse(const cJSON *qc, const char *path, struct model_config *cfg, char *err)
{
    const char *method;

    cfg->quant = QUANT_NONE;
    cfg->quant_static_input = false;
    if (!qc || cJSON_IsNull(qc))
        return 0;
    if (!cJSON_IsObject(qc) || !(method = str_member(qc, "quant_method"))) {
        errf(err, "%s: quantization_config: expected an object with a quant_method string", path);
        return -EINVAL;
    }
    if (!strcmp(method, "fp8"))
        return parse_fp8(qc, path, cfg, err);
    if (!strcmp(method, "compressed-tensors"))
        return parse_compressed(qc, path, cfg, err);
    /* gpt-oss as OpenAI publishes it: 4-bit experts (*_blocks, *_scales), dequantized at
     * load (engine/model/model_experts.c); no other family publishes them */
    if (!strcmp(method, "mxfp4")) {
        if (cfg->arch == ARCH_GPT_OSS) {
            cfg->quant = QUANT_MXFP4;
            return 0;
        }
        errf(err, "%s: quantization_config: quant_method 'mxfp4' (MXFP4 experts: *_blocks and "
             "*_scales tensors) is read for gpt-oss (GptOssForCausalLM) only, not %s", path,
             cfg->arch_name[0] ? cfg->arch_name : model_arch_name(cfg->arch));
        return -ENOTSUP;
    }
    errf(err, "%s: quantization_config: quant_method '%.32s' is not supported (osprey reads %s)",
         path, method, QUANT_FORMATS);
    return -EINVAL;
}

static bool scale_dtype_ok(enum dtype t)
{
    return t == DT_F32 || t == DT_BF16 || t == DT_F16;
}

static int64_t elems_of(const struct tensor_ref *t)
{
    int64_t n = 1;

    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

int quant_bind_scale(const struct st_set *st, const struct model_config *cfg, const char *where,
                     const char *name, struct tensor_ref *t, char *err)
{
    int64_t out = t->shape[0], in = t->shape[1], want[2];
    const char *kind = cfg->quant == QUANT_FP8_BLOCK ? "weight_scale_inv" : "weight_scale";
    size_t base = strlen(name) - strlen("weight");
    const struct tensor_ref *s;
    char sname[192], ws[64], hs[64];
    bool ok;

    if (t->dtype != DT_F8_E4M3)
        return 0;
    if (cfg->quant == QUANT_NONE) {
        errf(err, "%s: %s: F8_E4M3 weights, but config.json has no quantization_config",
             st_file_of(st, st_find(st, name)), name);
        return -EINVAL;
    }
    if (cfg->quant == QUANT_MXFP4) {
        errf(err, "%s: %s: F8_E4M3 weights, but config.json's quantization_config is mxfp4 "
             "(MXFP4 experts, every other weight float)", st_file_of(st, st_find(st, name)), name);
        return -EINVAL;
    }
    snprintf(sname, sizeof sname, "%.*s%s", (int)base, name, kind);
    if (!(s = st_find(st, sname))) {
        errf(err, "%s: %s: missing (the scale of the F8_E4M3 weight %s)", where, sname, name);
        return -EINVAL;
    }
    if (!scale_dtype_ok(s->dtype)) {
        errf(err, "%s: %s: dtype %s, expected F32 or BF16", st_file_of(st, s), sname,
             dtype_name(s->dtype));
        return -EINVAL;
    }
    st_shape_format(hs, sizeof hs, s->ndim, s->shape);
    switch (cfg->quant) {
    case QUANT_FP8_BLOCK:
        want[0] = (out + cfg->quant_block[0] - 1) / cfg->quant_block[0];
        want[1] = (in + cfg->quant_block[1] - 1) / cfg->quant_block[1];
        if (s->ndim != 2 || s->shape[0] != want[0] || s->shape[1] != want[1]) {
            st_shape_format(ws, sizeof ws, 2, want);
            errf(err, "%s: %s: expected %s for weight [%lld, %lld] in blocks of "
                 "weight_block_size [%d, %d], file has %s", st_file_of(st, s), sname, ws,
                 (long long)out, (long long)in, cfg->quant_block[0], cfg->quant_block[1], hs);
            return -EINVAL;
        }
        t->scale_block[0] = cfg->quant_block[0];
        t->scale_block[1] = cfg->quant_block[1];
        break;
    case QUANT_FP8_CHANNEL:
        ok = (s->ndim == 2 && s->shape[0] == out && s->shape[1] == 1) ||
             (s->ndim == 1 && s->shape[0] == out);
        if (!ok) {
            errf(err, "%s: %s: expected [%lld, 1] (one scale per output channel), file has %s",
                 st_file_of(st, s), sname, (long long)out, hs);
            return -EINVAL;
        }
        t->scale_block[0] = 1;
        t->scale_block[1] = in;
        break;
    default:
        if (elems_of(s) != 1) {
            errf(err, "%s: %s: expected one value (per-tensor scale), file has %s",
                 st_file_of(st, s), sname, hs);
            return -EINVAL;
        }
        t->scale_block[0] = out;
        t->scale_block[1] = in;
        break;
    }
    t->scale = s;
    if (cfg->quant_static_input) {   /* the layer's static activation scale */
        float v;

        snprintf(sname, sizeof sname, "%.*sinput_scale", (int)base, name);
        if (!(s = st_find(st, sname))) {
            errf(err, "%s: %s: missing (the static activation scale of %s: the config's "
                 "activation scheme is static)", where, sname, name);
            return -EINVAL;
        }
        st_shape_format(hs, sizeof hs, s->ndim, s->shape);
        if (!scale_dtype_ok(s->dtype) || elems_of(s) != 1 ||
            !isfinite(v = model_scale_at(s, 0)) || v <= 0) {
            errf(err, "%s: %s: expected one positive F32 or BF16 value, file has %s %s",
                 st_file_of(st, s), sname, dtype_name(s->dtype), hs);
            return -EINVAL;
        }
        t->input_scale = s;
    }
    return 0;
}

int quant_bind_scalar(const struct st_set *st, const char *name, struct tensor_ref *t, char *err)
{
    const struct tensor_ref *s = st_find(st, name);
    char hs[64];
    float v;

    memset(t, 0, sizeof *t);
    if (!s)
        return 0;
    st_shape_format(hs, sizeof hs, s->ndim, s->shape);
    if (!scale_dtype_ok(s->dtype) || elems_of(s) != 1) {
        errf(err, "%s: %s: expected one F32 or BF16 value, file has %s %s", st_file_of(st, s),
             name, dtype_name(s->dtype), hs);
        return -EINVAL;
    }
    v = model_scale_at(s, 0);
    if (!isfinite(v) || v <= 0) {
        errf(err, "%s: %s: %g is not a positive scale", st_file_of(st, s), name, v);
        return -EINVAL;
    }
    *t = *s;
    return 0;
}

/* quant.h — FP8 checkpoints: config.json's quantization_config into struct model_config, and
 * each F8_E4M3 weight's scale tensor found and checked (engine/model/quant.c); gpt-oss's
 * "mxfp4" is accepted here and its experts read by model_experts.c. Used by model.c only; the
 * formats are described in model.h (enum quant_method). */
#ifndef OSPREY_QUANT_H
#define OSPREY_QUANT_H

#include <cjson/cJSON.h>

#include "engine/model/model.h"

struct st_set;

#define QUANT_FORMATS "fp8 (block-wise weight_block_size or per-tensor) and compressed-tensors " \
                      "float-quantized FP8 (strategy channel or tensor)"

/* Reads quantization_config (qc, a member of config.json `path`) into cfg->quant and
 * cfg->quant_block; cfg->arch must be known (mxfp4 is read for gpt-oss only: -ENOTSUP for
 * another family). Anything but the formats osprey reads is -EINVAL with one line naming the
 * quant_method and QUANT_FORMATS. */
int quant_config_parse(const cJSON *qc, const char *path, struct model_config *cfg, char *err);

/* For a bound linear weight t called `name` ("...proj.weight"): when it is F8_E4M3, finds its
 * scale (weight_scale_inv for block-wise, weight_scale otherwise), checks dtype and shape
 * against the config and sets t->scale and t->scale_block. A float weight is left as it is.
 * `where` names the file in "missing" messages. Returns 0 or -EINVAL naming the tensor. */
int quant_bind_scale(const struct st_set *st, const struct model_config *cfg, const char *where,
                     const char *name, struct tensor_ref *t, char *err);

/* Binds an optional one-value scale (self_attn.k_scale / v_scale): absent leaves t zeroed;
 * present must be F32/BF16/F16 with one element and be finite and > 0. */
int quant_bind_scalar(const struct st_set *st, const char *name, struct tensor_ref *t, char *err);

#endif

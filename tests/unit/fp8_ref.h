/* fp8_ref.h — for the fp8_model suite: FP8 checkpoints read and dequantized by code written
 * for the tests alone (its own safetensors header reading with cJSON, its own e4m3 decoding),
 * so that the loader under test is compared with something it did not produce. Also
 * rewrites a checkpoint with one change, to build broken ones. */
#ifndef OSPREY_TEST_FP8_REF_H
#define OSPREY_TEST_FP8_REF_H

#include <stdint.h>

#include "engine/base/util.h"

/* e4m3fn from the format's definition (sign, 4 exponent bits bias 7, 3 mantissa bits). */
double fp8_ref_decode(uint8_t c);

/* One tensor of a checkpoint being rewritten; a mutation may change any field, point data at
 * its own memory (kept until the write ends) or set drop. */
struct fp8_ref_tensor {
    char name[128];
    enum dtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
    bool drop;
};

/* Copies src's config.json, generation_config.json and tokenizer files to dst, writing
 * dst/model.safetensors from src's tensors after mutate(ctx, t) ran on each one (mutate may be
 * NULL), plus extra[n_extra]. config_edit, when not NULL, replaces the text of config.json
 * (malloc'd by it). */
int fp8_ref_rewrite(const char *src, const char *dst,
                    void (*mutate)(void *ctx, struct fp8_ref_tensor *t), void *ctx,
                    char *(*config_edit)(const char *text, void *ctx),
                    const struct fp8_ref_tensor *extra, int n_extra);

/* A plain checkpoint of src's FP8 model: every F8_E4M3 weight times its scale (block sizes
 * from src's quantization_config), written in out_dtype (F32 or BF16); scale tensors left
 * out; quantization_config removed from config.json. */
int fp8_ref_dequantize(const char *src, const char *dst, enum dtype out_dtype);

#endif

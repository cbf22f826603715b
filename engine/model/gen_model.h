/* gen_model.h — writes a complete random-weight Hugging Face model folder (config.json,
 * generation_config.json, model.safetensors, tokenizer.json, tokenizer_config.json) from a
 * preset or a config.json-shaped file: what tests, benchmarks and `make serve` run on.
 * The same options and seed give a byte-identical folder. */
#ifndef OSPREY_GEN_MODEL_H
#define OSPREY_GEN_MODEL_H

#include <stdbool.h>
#include <stdint.h>

struct gen_model_opts {
    const char *config;          /* a preset name (gen_model_preset_name) or a config.json */
    const char *out_dir;         /* created when missing */
    uint64_t seed;
    const char *tokenizer_dir;   /* copy this folder's tokenizer; NULL = generate a BPE */
    const char *dtype;           /* "bf16", "f16", "f32"; NULL = the config's (bf16 default) */
    const char *quantize;        /* NULL, "fp8-block" (weight_scale_inv per quant_block^2 block,
                                  * quant_method fp8) or "fp8-channel" (weight_scale per output
                                  * row, compressed-tensors): linear weights written F8_E4M3;
                                  * "mxfp4" (gpt-oss only): experts as *_blocks / *_scales
                                  * (engine/model/mxfp4.h), quant_method mxfp4 */
    int quant_block;             /* fp8-block: weight_block_size; 0 = 128 */
    bool no_weights;             /* config.json and tokenizer only (for --load-format dummy) */
};

struct gen_model_stats {
    int num_tensors;
    uint64_t weight_bytes;       /* model.safetensors data */
    double seconds;              /* writing model.safetensors */
};

/* Writes the folder. Returns 0, or a negative errno with a one-line message naming the
 * file, field or preset in err. stats may be NULL. */
int gen_model_write(const struct gen_model_opts *o, struct gen_model_stats *stats, char *err);

/* Preset i's name, or NULL past the last one. */
const char *gen_model_preset_name(int i);

#endif

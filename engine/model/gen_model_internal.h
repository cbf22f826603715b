/* gen_model_internal.h — what the files of `osprey gen-model` share: gen_model_presets.c
 * (the preset table and its lookups), gen_model_config.c (config.json and
 * generation_config.json, per family) and gen_model.c (the weights, the folder). Nothing
 * outside them includes it. */
#ifndef OSPREY_GEN_MODEL_INTERNAL_H
#define OSPREY_GEN_MODEL_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "engine/model/gen_tokenizer.h"
#include "engine/model/model.h"

#define TRANSFORMERS_VERSION "4.46.0"
#define INIT_STD 0.02    /* transformers' initializer_range */

struct preset {
    const char *name;
    enum model_arch arch;
    int vocab, hidden, ffn, layers, heads, kv_heads, head_dim, max_pos;
    double rope_theta, rms_norm_eps;
    bool tied;
    double llama3_factor;     /* rope_scaling llama3 (low 1, high 4, original 8192); 0 = none */
    int window;               /* sliding_window: every layer (Mistral), or the odd layers (mixed) */
    bool mixed;               /* layer_types alternate full_attention / sliding_attention */
    int pattern;              /* Gemma: every pattern-th layer is global, the others slide */
    double linear_factor;     /* Gemma 3: rope_scaling linear of the global layers; 0 = none */
    int experts, top_k, moe_ffn; /* Mixtral / Qwen3-MoE: every layer a MoE block; 0 = dense */
};

enum gen_quant { GEN_QUANT_NONE, GEN_QUANT_BLOCK, GEN_QUANT_CHANNEL, GEN_QUANT_MXFP4 };

/* gen_model_presets.c: the preset called name, or NULL. */
const struct preset *gen_preset_find(const char *name);
/* gen_model_presets.c: every preset's name, ", "-separated, into out (cut to cap). */
void gen_preset_list(char *out, size_t cap);

/* gen_model_config.c: a preset's config (as transformers writes it), else the file spec
 * (*from_file says which). Returns 0 or a negative errno with a message in err. */
int gen_config_load(const char *spec, cJSON **out, bool *from_file, char *err);
/* Validates the config as text, the way model_open will read it. */
int gen_config_parse(const cJSON *j, const char *label, struct model_config *cfg, char *err);
/* Applies --dtype: "bf16" → "bfloat16" under the key the config already uses. */
int gen_config_set_dtype(cJSON *c, const char *dtype, char *err);
/* Adjusts the config to the tokenizer: vocab_size, bos/eos ids, transformers_version. */
int gen_config_fit_tokenizer(cJSON *c, const struct gen_tokenizer *t, bool from_file,
                             const struct model_config *cfg, const char *label, char *err);
/* --quantize into quantization_config. Returns 0 or -ENOMEM. */
int gen_config_set_quant(cJSON *c, enum gen_quant q, int block);
/* generation_config.json's text (the caller frees it), or NULL: out of memory. */
char *gen_config_generation(const struct gen_tokenizer *t);

#endif

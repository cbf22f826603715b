/* gen_model_config.c — gen-model's config.json: a preset written as transformers writes
 * each family's config (keys sorted, torch_dtype style), or a config.json-shaped file; then
 * --dtype, the tokenizer's ids and --quantize's quantization_config applied, each step
 * validated by model_config_parse; and generation_config.json. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/model/gen_model_internal.h"

static const char *model_type(enum model_arch a)
{
    return a == ARCH_QWEN2 ? "qwen2" : a == ARCH_QWEN3 ? "qwen3" : a == ARCH_MISTRAL ? "mistral"
         : a == ARCH_GEMMA2 ? "gemma2" : a == ARCH_GEMMA3 ? "gemma3_text"
         : a == ARCH_MIXTRAL ? "mixtral" : a == ARCH_QWEN3_MOE ? "qwen3_moe"
         : a == ARCH_PHI3 ? "phi3" : a == ARCH_QWEN2_MOE ? "qwen2_moe"
         : a == ARCH_GPT_OSS ? "gpt_oss" : "llama";
}

/* Gemma's own keys, as Gemma2Config / Gemma3TextConfig write them. */
static void gemma_config(cJSON *c, const struct preset *p)
{
    cJSON *lt = cJSON_AddArrayToObject(c, "layer_types");
    bool g2 = p->arch == ARCH_GEMMA2;

    for (int l = 0; l < p->layers; l++)
        cJSON_AddItemToArray(lt, cJSON_CreateString((l + 1) % p->pattern ? "sliding_attention"
                                                                         : "full_attention"));
    if (g2)
        cJSON_AddNumberToObject(c, "attn_logit_softcapping", 50.0);
    else
        cJSON_AddNullToObject(c, "attn_logit_softcapping");
    if (g2)
        cJSON_AddNumberToObject(c, "final_logit_softcapping", 30.0);
    else
        cJSON_AddNullToObject(c, "final_logit_softcapping");
    cJSON_AddStringToObject(c, "hidden_activation", "gelu_pytorch_tanh");
    cJSON_AddNumberToObject(c, "query_pre_attn_scalar", p->head_dim);
    if (!g2)
        cJSON_AddNumberToObject(c, "rope_local_base_freq", 10000.0);
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}

/* Orders obj's members by key, as transformers' to_json_string(sort_keys=True) does. */
static void sort_keys(cJSON *obj)
{
    cJSON *kids[128];
    int n = 0;

    for (cJSON *k = obj->child; k && n < (int)ARRAY_LEN(kids); k = k->next)
        kids[n++] = k;
    if (n == 0 || n == (int)ARRAY_LEN(kids))
        return;
    qsort(kids, (size_t)n, sizeof *kids, cmp_key);
    for (int i = 0; i < n; i++) {
        kids[i]->prev = i ? kids[i - 1] : kids[n - 1];   /* cJSON: the head's prev is the tail */
        kids[i]->next = i + 1 < n ? kids[i + 1] : NULL;
    }
    obj->child = kids[0];
}

/* MixtralConfig's / Qwen3MoeConfig's / GptOssConfig's expert keys. */
static void moe_config(cJSON *c, const struct preset *p)
{
    if (p->arch == ARCH_MIXTRAL || p->arch == ARCH_GPT_OSS) {
        cJSON_AddNumberToObject(c, "num_local_experts", p->experts);
    } else {
        cJSON_AddNumberToObject(c, "decoder_sparse_step", 1);
        cJSON_AddArrayToObject(c, "mlp_only_layers");
        cJSON_AddNumberToObject(c, "moe_intermediate_size", p->moe_ffn);
        cJSON_AddBoolToObject(c, "norm_topk_prob", p->arch == ARCH_QWEN3_MOE);
        cJSON_AddNumberToObject(c, "num_experts", p->experts);
        /* Qwen2-MoE's shared expert is as wide as intermediate_size (Qwen1.5-MoE-A2.7B's) */
        if (p->arch == ARCH_QWEN2_MOE)
            cJSON_AddNumberToObject(c, "shared_expert_intermediate_size", p->ffn);
    }
    cJSON_AddNumberToObject(c, "num_experts_per_tok", p->top_k);
    cJSON_AddBoolToObject(c, "output_router_logits", false);
    cJSON_AddNumberToObject(c, "router_aux_loss_coef", p->arch == ARCH_MIXTRAL ? 0.02 : 0.001);
}

/* Phi3Config's keys: partial rotary 0.75 and LongRoPE factors for its rotary dims, short
 * ones near 1 and long ones growing towards low frequencies as published ones do. */
static void phi3_config(cJSON *c, const struct preset *p)
{
    int half = (int)(p->head_dim * 0.75) / 2;
    cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
    cJSON *lf = cJSON_AddArrayToObject(rs, "long_factor"), *sf;

    for (int i = 0; i < half; i++)
        cJSON_AddItemToArray(lf, cJSON_CreateNumber(1.0 + 2.0 * i));
    sf = cJSON_AddArrayToObject(rs, "short_factor");
    for (int i = 0; i < half; i++)
        cJSON_AddItemToArray(sf, cJSON_CreateNumber(1.0 + 0.05 * i));
    cJSON_AddStringToObject(rs, "type", "longrope");
    cJSON_AddNumberToObject(c, "original_max_position_embeddings", 4096);
    cJSON_AddNumberToObject(c, "partial_rotary_factor", 0.75);
}

/* GptOssConfig's keys: layer_types from a sliding layer 0, YaRN with the published
 * parameters over an original context of max_pos / 32 (so that max_pos / original is the
 * factor, as in gpt-oss's own config), the SwiGLU clamp. */
static void gpt_oss_config(cJSON *c, const struct preset *p)
{
    cJSON *lt = cJSON_AddArrayToObject(c, "layer_types");
    cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");

    for (int l = 0; l < p->layers; l++)
        cJSON_AddItemToArray(lt, cJSON_CreateString(l % 2 ? "full_attention" : "sliding_attention"));
    cJSON_AddNumberToObject(rs, "beta_fast", 32.0);
    cJSON_AddNumberToObject(rs, "beta_slow", 1.0);
    cJSON_AddNumberToObject(rs, "factor", 32.0);
    cJSON_AddNumberToObject(rs, "original_max_position_embeddings", p->max_pos / 32);
    cJSON_AddStringToObject(rs, "rope_type", "yarn");
    cJSON_AddBoolToObject(rs, "truncate", false);
    cJSON_AddNumberToObject(c, "swiglu_limit", 7.0);
}

/* The preset as transformers writes a config.json: keys sorted, torch_dtype style. */
static cJSON *preset_config(const struct preset *p)
{
    cJSON *c = cJSON_CreateObject(), *rs, *lt;
    bool qwen = p->arch == ARCH_QWEN2 || p->arch == ARCH_QWEN3 || p->arch == ARCH_QWEN3_MOE ||
                p->arch == ARCH_QWEN2_MOE;

    cJSON_AddItemToArray(cJSON_AddArrayToObject(c, "architectures"),
                         cJSON_CreateString(model_arch_name(p->arch)));
    if (p->experts)
        moe_config(c, p);
    if (p->arch == ARCH_LLAMA || p->arch == ARCH_QWEN3 || p->arch == ARCH_QWEN3_MOE ||
        p->arch == ARCH_GPT_OSS)
        cJSON_AddBoolToObject(c, "attention_bias", p->arch == ARCH_GPT_OSS);
    cJSON_AddNumberToObject(c, "attention_dropout", 0.0);
    cJSON_AddNumberToObject(c, "head_dim", p->head_dim);
    if (p->pattern)
        gemma_config(c, p);
    else
        cJSON_AddStringToObject(c, "hidden_act", "silu");
    cJSON_AddNumberToObject(c, "hidden_size", p->hidden);
    cJSON_AddNumberToObject(c, "initializer_range", INIT_STD);
    cJSON_AddNumberToObject(c, "intermediate_size", p->ffn);
    if (p->mixed) {
        lt = cJSON_AddArrayToObject(c, "layer_types");
        for (int l = 0; l < p->layers; l++)
            cJSON_AddItemToArray(lt, cJSON_CreateString(l % 2 ? "sliding_attention"
                                                               : "full_attention"));
    }
    cJSON_AddNumberToObject(c, "max_position_embeddings", p->max_pos);
    if (qwen)
        cJSON_AddNumberToObject(c, "max_window_layers", p->layers);
    if (p->arch == ARCH_LLAMA)
        cJSON_AddBoolToObject(c, "mlp_bias", false);
    cJSON_AddStringToObject(c, "model_type", model_type(p->arch));
    cJSON_AddNumberToObject(c, "num_attention_heads", p->heads);
    cJSON_AddNumberToObject(c, "num_hidden_layers", p->layers);
    cJSON_AddNumberToObject(c, "num_key_value_heads", p->kv_heads);
    cJSON_AddNumberToObject(c, "rms_norm_eps", p->rms_norm_eps);
    if (p->arch == ARCH_PHI3) {
        phi3_config(c, p);
    } else if (p->arch == ARCH_GPT_OSS) {
        gpt_oss_config(c, p);
    } else if (p->llama3_factor > 0) {
        rs = cJSON_AddObjectToObject(c, "rope_scaling");
        cJSON_AddNumberToObject(rs, "factor", p->llama3_factor);
        cJSON_AddNumberToObject(rs, "high_freq_factor", 4.0);
        cJSON_AddNumberToObject(rs, "low_freq_factor", 1.0);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", 8192);
        cJSON_AddStringToObject(rs, "rope_type", "llama3");
    } else if (p->linear_factor > 0) {
        rs = cJSON_AddObjectToObject(c, "rope_scaling");
        cJSON_AddNumberToObject(rs, "factor", p->linear_factor);
        cJSON_AddStringToObject(rs, "rope_type", "linear");
    } else {
        cJSON_AddNullToObject(c, "rope_scaling");
    }
    cJSON_AddNumberToObject(c, "rope_theta", p->rope_theta);
    if (p->window)
        cJSON_AddNumberToObject(c, "sliding_window", p->window);
    else if (p->arch != ARCH_LLAMA)
        cJSON_AddNullToObject(c, "sliding_window");
    cJSON_AddBoolToObject(c, "tie_word_embeddings", p->tied);
    cJSON_AddStringToObject(c, "torch_dtype", "bfloat16");
    cJSON_AddBoolToObject(c, "use_cache", true);
    if (qwen)
        cJSON_AddBoolToObject(c, "use_sliding_window", false);
    cJSON_AddNumberToObject(c, "vocab_size", p->vocab);
    sort_keys(c);
    return c;
}

/* A preset, else a file (*from_file says which). */
int gen_config_load(const char *spec, cJSON **out, bool *from_file, char *err)
{
    const struct preset *p;
    char *text = NULL, names[256] = "";
    size_t len = 0;
    int rc;

    *out = NULL;
    *from_file = false;
    if ((p = gen_preset_find(spec))) {
        *out = preset_config(p);
        return *out ? 0 : -ENOMEM;
    }
    if (access(spec, F_OK) != 0) {
        gen_preset_list(names, sizeof names);
        errf(err, "--config %s: no such preset or file (presets: %s)", spec, names);
        return -ENOENT;
    }
    if ((rc = read_file(spec, &text, &len, err)))
        return rc;
    *out = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(*out)) {
        errf(err, "%s: not a JSON object", spec);
        cJSON_Delete(*out);
        *out = NULL;
        return -EINVAL;
    }
    *from_file = true;
    return 0;
}

/* Sets obj[key] = item, in place when the key exists. Takes item. */
static int json_set(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return -ENOMEM;
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        return cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item) ? 0 : -ENOMEM;
    return cJSON_AddItemToObject(obj, key, item) ? 0 : -ENOMEM;
}

/* One id as an integer, several as a list (as transformers writes eos_token_id). */
static cJSON *id_json(const int *ids, int n)
{
    cJSON *a;

    if (n == 0)
        return cJSON_CreateNull();
    if (n == 1)
        return cJSON_CreateNumber(ids[0]);
    if ((a = cJSON_CreateArray()))
        for (int i = 0; i < n; i++)
            cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

/* Validates the config as text, the way model_open will read it. */
int gen_config_parse(const cJSON *j, const char *label, struct model_config *cfg, char *err)
{
    char *text = cJSON_PrintUnformatted(j);
    int rc;

    if (!text) {
        errf(err, "out of memory");
        return -ENOMEM;
    }
    rc = model_config_parse(cfg, text, strlen(text), NULL, 0, label, err);
    free(text);
    return rc;
}

/* Applies --dtype: "bf16" → "bfloat16" under the key the config already uses. */
int gen_config_set_dtype(cJSON *c, const char *dtype, char *err)
{
    static const char *const map[][2] = {
        { "bf16", "bfloat16" }, { "f16", "float16" }, { "f32", "float32" },
    };
    const char *key = cJSON_GetObjectItemCaseSensitive(c, "dtype") ? "dtype" : "torch_dtype";

    for (size_t i = 0; i < ARRAY_LEN(map); i++)
        if (!strcmp(dtype, map[i][0]))
            return json_set(c, key, cJSON_CreateString(map[i][1]));
    errf(err, "--dtype %s: expected bf16, f16 or f32", dtype);
    return -EINVAL;
}

char *gen_config_generation(const struct gen_tokenizer *t)
{
    cJSON *g = cJSON_CreateObject();
    char *s;

    cJSON_AddItemToObject(g, "bos_token_id", t->bos_id >= 0 ? cJSON_CreateNumber(t->bos_id)
                                                            : cJSON_CreateNull());
    cJSON_AddBoolToObject(g, "do_sample", true);
    cJSON_AddItemToObject(g, "eos_token_id", id_json(t->eos_ids, t->num_eos));
    cJSON_AddNumberToObject(g, "temperature", 0.6);
    cJSON_AddNumberToObject(g, "top_p", 0.9);
    cJSON_AddStringToObject(g, "transformers_version", TRANSFORMERS_VERSION);
    s = cJSON_Print(g);
    cJSON_Delete(g);
    return s;
}

/* Adjusts the config to the tokenizer: vocab_size (a preset grows to cover a copied
 * tokenizer; a file must already), bos/eos ids, transformers_version. */
int gen_config_fit_tokenizer(cJSON *c, const struct gen_tokenizer *t, bool from_file,
                             const struct model_config *cfg, const char *label, char *err)
{
    int rc;

    if (cfg->vocab_size < t->num_tokens) {
        if (from_file) {
            errf(err, "%s: vocab_size: %d is smaller than the tokenizer's %d ids", label,
                 cfg->vocab_size, t->num_tokens);
            return -EINVAL;
        }
        if ((rc = json_set(c, "vocab_size", cJSON_CreateNumber(t->num_tokens))))
            return rc;
    }
    if ((rc = json_set(c, "bos_token_id", t->bos_id >= 0 ? cJSON_CreateNumber(t->bos_id)
                                                         : cJSON_CreateNull())) ||
        (rc = json_set(c, "eos_token_id", id_json(t->eos_ids, t->num_eos))))
        return rc;
    if (!cJSON_GetObjectItemCaseSensitive(c, "transformers_version"))
        return json_set(c, "transformers_version", cJSON_CreateString(TRANSFORMERS_VERSION));
    return 0;
}

/* --quantize into quantization_config, in the styles osprey reads (engine/model/quant.c). */
int gen_config_set_quant(cJSON *c, enum gen_quant q, int block)
{
    cJSON *qc = cJSON_CreateObject(), *g, *grp, *w, *act, *bs;

    if (!qc)
        return -ENOMEM;
    if (q == GEN_QUANT_MXFP4) {   /* as openai/gpt-oss-20b's config.json has it */
        static const char *const keep[] = { "model.layers.*.self_attn", "model.layers.*.mlp.router",
                                            "model.embed_tokens", "lm_head" };
        cJSON *m = cJSON_AddArrayToObject(qc, "modules_to_not_convert");

        for (size_t i = 0; m && i < sizeof keep / sizeof *keep; i++)
            cJSON_AddItemToArray(m, cJSON_CreateString(keep[i]));
        cJSON_AddStringToObject(qc, "quant_method", "mxfp4");
    } else if (q == GEN_QUANT_BLOCK) {
        cJSON_AddStringToObject(qc, "quant_method", "fp8");
        cJSON_AddStringToObject(qc, "fmt", "e4m3");
        cJSON_AddStringToObject(qc, "activation_scheme", "dynamic");
        if ((bs = cJSON_AddArrayToObject(qc, "weight_block_size"))) {
            cJSON_AddItemToArray(bs, cJSON_CreateNumber(block));
            cJSON_AddItemToArray(bs, cJSON_CreateNumber(block));
        }
    } else {
        cJSON_AddStringToObject(qc, "quant_method", "compressed-tensors");
        cJSON_AddStringToObject(qc, "format", "float-quantized");
        g = cJSON_AddObjectToObject(qc, "config_groups");
        grp = g ? cJSON_AddObjectToObject(g, "group_0") : NULL;
        if ((w = grp ? cJSON_AddObjectToObject(grp, "weights") : NULL)) {
            cJSON_AddStringToObject(w, "type", "float");
            cJSON_AddNumberToObject(w, "num_bits", 8);
            cJSON_AddStringToObject(w, "strategy", "channel");
        }
        if ((act = grp ? cJSON_AddObjectToObject(grp, "input_activations") : NULL)) {
            cJSON_AddBoolToObject(act, "dynamic", true);
            cJSON_AddStringToObject(act, "strategy", "token");
        }
        if (grp)
            cJSON_AddItemToArray(cJSON_AddArrayToObject(grp, "targets"), cJSON_CreateString("Linear"));
        cJSON_AddItemToArray(cJSON_AddArrayToObject(qc, "ignore"), cJSON_CreateString("lm_head"));
    }
    return json_set(c, "quantization_config", qc);
}

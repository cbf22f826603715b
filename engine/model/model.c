/* model.c — a Hugging Face model folder: config.json (+ generation_config.json) into struct
 * model_config, then every tensor of the architecture bound by its HF name out of the
 * mapped safetensors (engine/model/safetensors.c) and checked against the config's shapes.
 * Both config styles are read: rope_theta/rope_scaling/torch_dtype (transformers 4) and
 * rope_parameters/dtype (transformers 5). Defaults follow transformers' config classes. */
#include "engine/model/model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/base/log.h"
#include "engine/model/model_internal.h"
#include "engine/model/quant.h"
#include "engine/model/safetensors.h"

#define SUPPORTED_ARCHS "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM, " \
    "Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3ForConditionalGeneration (text only), " \
    "MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, Phi3ForCausalLM, " \
    "GptOssForCausalLM"

static const struct {
    const char *name, *model_type;
    enum model_arch arch;
    int max_pos;                  /* transformers' default max_position_embeddings */
} archs[] = {
    { "LlamaForCausalLM",   "llama",   ARCH_LLAMA,   2048 },
    { "Qwen2ForCausalLM",   "qwen2",   ARCH_QWEN2,   32768 },
    { "Qwen3ForCausalLM",   "qwen3",   ARCH_QWEN3,   32768 },
    { "MistralForCausalLM", "mistral", ARCH_MISTRAL, 4096 * 32 },
    { "Gemma2ForCausalLM",  "gemma2",  ARCH_GEMMA2,  8192 },
    { "Gemma3ForCausalLM",  "gemma3_text", ARCH_GEMMA3, 131072 },
    { "MixtralForCausalLM", "mixtral", ARCH_MIXTRAL, 4096 * 32 },
    { "Qwen3MoeForCausalLM", "qwen3_moe", ARCH_QWEN3_MOE, 32768 },
    { "Phi3ForCausalLM",    "phi3",    ARCH_PHI3,    4096 },
    { "Qwen2MoeForCausalLM", "qwen2_moe", ARCH_QWEN2_MOE, 32768 },
    { "GptOssForCausalLM",  "gpt_oss", ARCH_GPT_OSS, 131072 },
};

const char *model_arch_name(enum model_arch a)
{
    for (size_t i = 0; i < ARRAY_LEN(archs); i++)
        if (archs[i].arch == a)
            return archs[i].name;
    return "?";
}

const char *model_quant_name(enum quant_method q)
{
    switch (q) {
    case QUANT_NONE: return "none";
    case QUANT_FP8_BLOCK: return "fp8 block-wise";
    case QUANT_FP8_TENSOR: return "fp8 per-tensor";
    case QUANT_FP8_CHANNEL: return "fp8 per-channel";
    case QUANT_MXFP4: return "mxfp4 experts";
    }
    return "?";
}

float model_scale_at(const struct tensor_ref *scale, size_t i)
{
    const uint16_t *h = scale->data;

    if (scale->dtype == DT_BF16)
        return bf16_to_f32(h[i]);
    if (scale->dtype == DT_F16)
        return f16_to_f32(h[i]);
    return ((const float *)scale->data)[i];
}

/* ---- the sections of config.json ---- */

static int parse_arch(struct cfg_parse *p, const cJSON *root, struct model_config *cfg,
                      int *max_pos)
{
    const cJSON *list = member(root, "architectures");
    int rc = 0;
    const char *model_type = get_str(p, root, "model_type", &rc);

    if (rc)
        return rc;
    if (list && (!cJSON_IsArray(list) || !cJSON_IsString(list->child)))
        return bad(p, "architectures", "expected a list of strings, got %s", json_type(list));
    for (size_t i = 0; i < ARRAY_LEN(archs); i++)
        if (list ? !strcmp(list->child->valuestring, archs[i].name)
                 : model_type && !strcmp(model_type, archs[i].model_type)) {
            cfg->arch = archs[i].arch;
            snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s", archs[i].name);
            *max_pos = archs[i].max_pos;
            return 0;
        }
    if (!list)
        return bad(p, "architectures", "missing (supported: %s)", SUPPORTED_ARCHS);
    errf(p->err, "%s: architectures: unknown architecture '%.64s' (supported: %s)", p->path,
         list->child->valuestring, SUPPORTED_ARCHS);
    return -EINVAL;
}

static int parse_sizes(struct cfg_parse *p, const cJSON *root, struct model_config *cfg)
{
    /* Gemma's published text_config leaves the sizes of its config class out (Gemma 2 and
     * Gemma 3 classes default to the 2B shape), so they have defaults; the others must say. */
    bool req = !is_gemma(cfg->arch);
    int rc;

    if (!req) {
        cfg->vocab_size = cfg->arch == ARCH_GEMMA2 ? 256000 : 262208;
        cfg->hidden_size = 2304;
        cfg->intermediate_size = 9216;
        cfg->num_layers = 26;
        cfg->num_heads = 8;
    }
    if ((rc = get_int(p, root, "vocab_size", "vocab_size", req, 1, MAX_VOCAB, &cfg->vocab_size)) ||
        (rc = get_int(p, root, "hidden_size", "hidden_size", req, 1, MAX_DIM, &cfg->hidden_size)) ||
        (rc = get_int(p, root, "intermediate_size", "intermediate_size", req, 1, MAX_DIM,
                      &cfg->intermediate_size)) ||
        (rc = get_int(p, root, "num_hidden_layers", "num_hidden_layers", req, 1,
                      MODEL_MAX_LAYERS, &cfg->num_layers)) ||
        (rc = get_int(p, root, "num_attention_heads", "num_attention_heads", req, 1, MAX_DIM,
                      &cfg->num_heads)))
        return rc;
    cfg->num_kv_heads = req ? cfg->num_heads : 4;
    if ((rc = get_int(p, root, "num_key_value_heads", "num_key_value_heads", false, 1, MAX_DIM,
                      &cfg->num_kv_heads)))
        return rc;
    if (cfg->num_heads % cfg->num_kv_heads) {
        errf(p->err, "%s: num_attention_heads: %d is not a multiple of num_key_value_heads %d",
             p->path, cfg->num_heads, cfg->num_kv_heads);
        return -EINVAL;
    }
    /* Qwen3's config class defaults head_dim to 128, Gemma's to 256, gpt-oss's to 64; the
     * others derive it. */
    if (cfg->arch == ARCH_QWEN3 || cfg->arch == ARCH_QWEN3_MOE)
        cfg->head_dim = 128;
    else if (cfg->arch == ARCH_GPT_OSS)
        cfg->head_dim = 64;
    else if (is_gemma(cfg->arch))
        cfg->head_dim = 256;
    else if (cfg->hidden_size % cfg->num_heads == 0)
        cfg->head_dim = cfg->hidden_size / cfg->num_heads;
    if ((rc = get_int(p, root, "head_dim", "head_dim", cfg->head_dim == 0, 1, MAX_DIM,
                      &cfg->head_dim))) {
        if (cfg->head_dim == 0)
            errf(p->err, "%s: head_dim: missing, and hidden_size %d is not a multiple of "
                 "num_attention_heads %d", p->path, cfg->hidden_size, cfg->num_heads);
        return rc;
    }
    if (cfg->head_dim % 2) {
        errf(p->err, "%s: head_dim: %d is odd; rotary embeddings need an even head_dim",
             p->path, cfg->head_dim);
        return -EINVAL;
    }
    return model__parse_rotary_dim(p, root, cfg);
}

/* rope_scaling (transformers 4) or rope_parameters (5); `field` names the object. */
static int parse_rope(struct cfg_parse *p, const cJSON *rs, const char *field,
                      struct model_config *cfg)
{
    struct rope_scaling *r = &cfg->rope_scaling;
    const cJSON *type = member(rs, "rope_type");
    char f[96];
    double omp = 0;
    int rc = 0;

    if (!cJSON_IsObject(rs))
        return bad(p, field, "expected an object, got %s", json_type(rs));
    for (const cJSON *e = rs->child; e; e = e->next)
        if (cJSON_IsObject(e)) {
            snprintf(f, sizeof f, "%s.%s", field, e->string);
            return bad(p, f, "%s", "per-layer-type rope parameters are not supported");
        }
    if (!type)
        type = member(rs, "type");
    if (type && !cJSON_IsString(type)) {
        snprintf(f, sizeof f, "%s.rope_type", field);
        return bad(p, f, "expected a string, got %s", json_type(type));
    }
    if (!type || !strcmp(type->valuestring, "default")) {
        r->type = ROPE_DEFAULT;
    } else if (!strcmp(type->valuestring, "linear")) {
        r->type = ROPE_LINEAR;
    } else if (!strcmp(type->valuestring, "llama3")) {
        r->type = ROPE_LLAMA3;
    } else if (cfg->arch == ARCH_PHI3 &&
               (!strcmp(type->valuestring, "longrope") || !strcmp(type->valuestring, "su"))) {
        r->type = ROPE_LONGROPE;
    } else if (cfg->arch == ARCH_GPT_OSS && !strcmp(type->valuestring, "yarn")) {
        r->type = ROPE_YARN;
    } else {
        snprintf(f, sizeof f, "%s.rope_type", field);
        errf(p->err, "%s: %s: '%.32s' is not supported (supported: default, linear, llama3; "
             "longrope for Phi-3, yarn for gpt-oss)", p->path, f, type->valuestring);
        return -EINVAL;
    }
    if (r->type == ROPE_DEFAULT)
        return 0;
    if (r->type == ROPE_LONGROPE)
        return model__parse_longrope(p, rs, field, cfg);
    if (r->type == ROPE_YARN)
        return model__parse_yarn(p, rs, field, cfg);
    snprintf(f, sizeof f, "%s.factor", field);
    if ((rc = get_pos(p, rs, "factor", f, true, false, &r->factor)))
        return rc;
    if (r->type == ROPE_LINEAR)
        return 0;
    snprintf(f, sizeof f, "%s.low_freq_factor", field);
    if ((rc = get_pos(p, rs, "low_freq_factor", f, true, false, &r->low_freq_factor)))
        return rc;
    snprintf(f, sizeof f, "%s.high_freq_factor", field);
    if ((rc = get_pos(p, rs, "high_freq_factor", f, true, false, &r->high_freq_factor)))
        return rc;
    if (r->high_freq_factor <= r->low_freq_factor) {
        errf(p->err, "%s: %s: %g must be greater than low_freq_factor %g", p->path, f,
             r->high_freq_factor, r->low_freq_factor);
        return -EINVAL;
    }
    snprintf(f, sizeof f, "%s.original_max_position_embeddings", field);
    if ((rc = get_pos(p, rs, "original_max_position_embeddings", f, true, false, &omp)))
        return rc;
    if (omp != floor(omp) || omp > 1e9)
        return bad(p, f, "%s", "expected a positive integer");
    r->original_max_position_embeddings = (int)omp;
    return 0;
}

static int parse_dtype(struct cfg_parse *p, const cJSON *root, struct model_config *cfg)
{
    static const struct { const char *name; enum dtype dt; } names[] = {
        { "bfloat16", DT_BF16 }, { "float16", DT_F16 }, { "half", DT_F16 },
        { "float32", DT_F32 }, { "float", DT_F32 },
    };
    const char *key = member(root, "dtype") ? "dtype" : "torch_dtype";
    int rc = 0;
    const char *s = get_str(p, root, key, &rc);

    cfg->dtype = DT_BF16;
    if (rc || !s)
        return rc;
    p->has_dtype = true;
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (!strcmp(s, names[i].name)) {
            cfg->dtype = names[i].dt;
            return 0;
        }
    errf(p->err, "%s: %s: '%.32s' is not supported (bfloat16, float16, float32)", p->path, key, s);
    return -EINVAL;
}

/* Sliding windows per layer. Mistral slides every layer by sliding_window (default 4096,
 * null = none). Qwen2/3 slide only with use_sliding_window, and then layers >=
 * max_window_layers. Llama has no window of its own; Gemma and gpt-oss (default window 128)
 * interleave sliding and full layers. A layer_types list overrides the per-architecture
 * pattern; a sliding_attention layer gets sliding_window. */
static int parse_windows(struct cfg_parse *p, const cJSON *root, struct model_config *cfg)
{
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    const cJSON *types = member(root, "layer_types");
    bool qwen = cfg->arch == ARCH_QWEN2 || cfg->arch == ARCH_QWEN3 || cfg->arch == ARCH_QWEN3_MOE ||
                cfg->arch == ARCH_QWEN2_MOE;
    bool every = cfg->arch == ARCH_MISTRAL || cfg->arch == ARCH_MIXTRAL || cfg->arch == ARCH_PHI3;
    bool use = false;
    /* MixtralConfig's and Phi3Config's sliding_window default to None, MistralConfig's to 4096 */
    int window = sw || cfg->arch == ARCH_LLAMA || cfg->arch == ARCH_MIXTRAL ||
                 cfg->arch == ARCH_PHI3 ? 0 : cfg->arch == ARCH_GPT_OSS ? 128 : 4096;
    int max_window_layers = 28, rc, i = 0;
    char f[64];

    /* 0 is "none" as null is: transformers 5 writes 0 for a Qwen2-MoE without a window */
    if ((rc = get_int(p, root, "sliding_window", "sliding_window", false, 0, INT32_MAX, &window)) ||
        (rc = get_bool(p, root, "use_sliding_window", &use)) ||
        (rc = get_int(p, root, "max_window_layers", "max_window_layers", false, 0, INT32_MAX,
                      &max_window_layers)))
        return rc;
    if (qwen && !use)
        window = 0;   /* transformers drops sliding_window when use_sliding_window is false */
    if (!types && (is_gemma(cfg->arch) || cfg->arch == ARCH_GPT_OSS)) {
        /* Gemma 2 and gpt-oss alternate sliding (even layers) and full; Gemma 3 has every
         * sliding_window_pattern-th layer full (transformers' default layer_types) */
        int pattern = cfg->arch == ARCH_GEMMA3 ? 6 : 2;

        if (is_gemma(cfg->arch) &&
            (rc = get_int(p, root, "sliding_window_pattern", "sliding_window_pattern", false, 1,
                          MODEL_MAX_LAYERS, &pattern)))
            return rc;
        if (!window)
            return bad(p, "sliding_window", "null, but %s has sliding-window layers",
                       cfg->arch_name);
        for (int l = 0; l < cfg->num_layers; l++)
            cfg->layer_window[l] = (l + 1) % pattern ? window : 0;
        return 0;
    }
    if (!types) {
        for (int l = 0; l < cfg->num_layers; l++)
            cfg->layer_window[l] = every ? window : qwen && l >= max_window_layers ? window : 0;
        return 0;
    }
    if (!cJSON_IsArray(types))
        return bad(p, "layer_types", "expected a list of strings, got %s", json_type(types));
    if (cJSON_GetArraySize(types) != cfg->num_layers) {
        errf(p->err, "%s: layer_types: %d entries for %d layers", p->path,
             cJSON_GetArraySize(types), cfg->num_layers);
        return -EINVAL;
    }
    for (const cJSON *t = types->child; t; t = t->next, i++) {
        snprintf(f, sizeof f, "layer_types[%d]", i);
        if (cJSON_IsString(t) && !strcmp(t->valuestring, "full_attention")) {
            cfg->layer_window[i] = 0;
        } else if (cJSON_IsString(t) && !strcmp(t->valuestring, "sliding_attention")) {
            if (!window && !qwen)
                return bad(p, "sliding_window", "%s",
                           "missing or null, but layer_types has sliding_attention layers");
            cfg->layer_window[i] = window;
        } else {
            return bad(p, f, "%s", "expected \"full_attention\" or \"sliding_attention\"");
        }
    }
    return 0;
}

/* Appends eos_token_id (an integer or a list of them) to cfg, without repeats. */
static int parse_eos(struct cfg_parse *p, const cJSON *root, struct model_config *cfg)
{
    const cJSON *e = member(root, "eos_token_id");
    const cJSON *one = e, *next = NULL;

    if (!e)
        return 0;
    if (cJSON_IsArray(e))
        one = e->child;
    for (; one; one = next) {
        int id = -1, k;

        next = cJSON_IsArray(e) ? one->next : NULL;
        if (!is_int(one) || one->valuedouble < 0 || one->valuedouble >= cfg->vocab_size) {
            errf(p->err, "%s: eos_token_id: expected token ids in [0, %d)", p->path,
                 cfg->vocab_size);
            return -EINVAL;
        }
        id = (int)one->valuedouble;
        for (k = 0; k < cfg->num_eos_token_ids && cfg->eos_token_ids[k] != id; k++)
            ;
        if (k < cfg->num_eos_token_ids)
            continue;
        if (cfg->num_eos_token_ids == MODEL_MAX_EOS) {
            errf(p->err, "%s: eos_token_id: more than %d distinct ids", p->path, MODEL_MAX_EOS);
            return -EINVAL;
        }
        cfg->eos_token_ids[cfg->num_eos_token_ids++] = id;
    }
    return 0;
}

static int parse_generation(struct cfg_parse *p, const char *json, size_t len,
                            struct model_config *cfg)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    double t = -1, top_p = -1;
    int rc = -EINVAL;

    if (!cJSON_IsObject(root)) {
        errf(p->err, "%s: not a JSON object", p->path);
        goto out;
    }
    if ((rc = parse_eos(p, root, cfg)) ||
        (cfg->bos_token_id < 0 &&
         (rc = get_int(p, root, "bos_token_id", "bos_token_id", false, 0, cfg->vocab_size - 1,
                       &cfg->bos_token_id))) ||
        (rc = get_pos(p, root, "temperature", "temperature", false, true, &t)) ||
        (rc = get_pos(p, root, "top_p", "top_p", false, false, &top_p)) ||
        (rc = get_int(p, root, "top_k", "top_k", false, 0, INT32_MAX, &cfg->gen_top_k)))
        goto out;
    if (top_p > 1) {
        rc = bad(p, "top_p", "%s", "must be in (0, 1]");
        goto out;
    }
    cfg->gen_temperature = (float)t;
    cfg->gen_top_p = (float)top_p;
out:
    cJSON_Delete(root);
    return rc;
}

/* Features of the family the contract cannot hold are refused, not silently dropped. */
static int check_unsupported(struct cfg_parse *p, const cJSON *root, struct model_config *cfg)
{
    bool attention_bias = false, mlp_bias = false, gemma = is_gemma(cfg->arch);
    /* Gemma's MLP reads hidden_activation (hidden_act is a leftover of Gemma 1 there) */
    const char *act_key = gemma && member(root, "hidden_activation") ? "hidden_activation"
                                                                      : "hidden_act";
    int rc = 0;
    const char *act = get_str(p, root, act_key, &rc);

    if (rc || (rc = get_bool(p, root, "attention_bias", &attention_bias)) ||
        (rc = get_bool(p, root, "mlp_bias", &mlp_bias)))
        return rc;
    if (gemma && act && strcmp(act, "gelu_pytorch_tanh"))
        return bad(p, act_key, "'%.32s' is not supported for Gemma (gelu_pytorch_tanh)", act);
    if (!gemma && act && strcmp(act, "silu") && strcmp(act, "swish"))
        return bad(p, act_key, "'%.32s' is not supported (silu)", act);
    cfg->mlp_act = gemma ? MLP_GELU_TANH : MLP_SILU;
    if ((rc = quant_config_parse(member(root, "quantization_config"), p->path, cfg, p->err)))
        return rc;
    if (mlp_bias)
        return bad(p, "mlp_bias", "%s", "true is not supported");
    /* Qwen2 always has q/k/v biases; elsewhere attention_bias also adds an o_proj bias,
     * which osprey's layer does not have. */
    if (attention_bias && cfg->arch != ARCH_QWEN2 && cfg->arch != ARCH_QWEN2_MOE &&
        cfg->arch != ARCH_GPT_OSS)
        return bad(p, "attention_bias", "true is not supported for %s (o_proj bias)",
                   cfg->arch_name);
    /* Qwen2 and Qwen2-MoE have q/k/v biases (and no o_proj bias); newer Qwen2MoeConfig
     * names them qkv_bias */
    cfg->attention_bias = cfg->arch == ARCH_QWEN2 || cfg->arch == ARCH_QWEN2_MOE;
    if (cfg->arch == ARCH_QWEN2_MOE && (rc = get_bool(p, root, "qkv_bias", &cfg->attention_bias)))
        return rc;
    cfg->qk_norm = cfg->arch == ARCH_QWEN3 || cfg->arch == ARCH_QWEN3_MOE || cfg->arch == ARCH_GEMMA3;
    /* gpt-oss's q/k/v/o biases (GptOssConfig: attention_bias true unless told otherwise) */
    if (cfg->arch == ARCH_GPT_OSS)
        cfg->attention_bias = !member(root, "attention_bias") || attention_bias;
    return 0;
}

/* transformers 5 writes Gemma 3's RoPE per layer type: rope_parameters.full_attention (theta
 * and scaling of global layers) and .sliding_attention (the local base, never scaled). */
static int parse_rope_per_type(struct cfg_parse *p, const cJSON *rp, struct model_config *cfg,
                               double *theta)
{
    const cJSON *full = member(rp, "full_attention"), *local = member(rp, "sliding_attention");
    const cJSON *lt = local ? member(local, "rope_type") : NULL;
    int rc;

    if (cfg->arch != ARCH_GEMMA3 || !cJSON_IsObject(full) || (local && !cJSON_IsObject(local)))
        return bad(p, "rope_parameters.full_attention", "%s",
                   "per-layer-type rope parameters are supported for Gemma 3 only "
                   "(full_attention and sliding_attention objects)");
    if ((rc = parse_rope(p, full, "rope_parameters.full_attention", cfg)) ||
        (rc = get_pos(p, full, "rope_theta", "rope_parameters.full_attention.rope_theta", false,
                      false, theta)))
        return rc;
    if (!local)
        return 0;
    if (lt && (!cJSON_IsString(lt) || strcmp(lt->valuestring, "default")))
        return bad(p, "rope_parameters.sliding_attention.rope_type", "%s",
                   "only \"default\" is supported for local layers");
    return get_pos(p, local, "rope_theta", "rope_parameters.sliding_attention.rope_theta", false,
                   false, &cfg->rope_local_theta);
}

static int parse_config(struct cfg_parse *p, const cJSON *root, struct model_config *cfg);

/* Gemma3ForConditionalGeneration: the language model is text_config (a gemma3_text config);
 * the vision tower and projector are left unloaded. Token ids and the dtype may sit at the
 * top level. */
static int parse_multimodal(struct cfg_parse *p, const cJSON *root, struct model_config *cfg)
{
    const cJSON *text = member(root, "text_config");
    char path[4200];
    struct cfg_parse tp = *p;
    int rc;

    if (!cJSON_IsObject(text))
        return bad(p, "text_config", "%s", "missing or not an object (Gemma3ForConditionalGeneration)");
    snprintf(path, sizeof path, "%s (text_config)", p->path);
    tp.path = path;
    if (!member(text, "model_type") && !member(text, "architectures"))
        return bad(p, "text_config.model_type", "%s", "missing (expected \"gemma3_text\")");
    if ((rc = parse_config(&tp, text, cfg)))
        return rc;
    /* a quantized folder's quantization_config sits beside text_config */
    if (cfg->quant == QUANT_NONE &&
        (rc = quant_config_parse(member(root, "quantization_config"), p->path, cfg, p->err)))
        return rc;
    if (cfg->arch != ARCH_GEMMA3)
        return bad(p, "text_config.model_type", "%s", "expected \"gemma3_text\"");
    p->has_dtype = tp.has_dtype;
    cfg->multimodal = true;
    if (!tp.has_dtype && (rc = parse_dtype(p, root, cfg)))
        return rc;
    if (cfg->bos_token_id < 0 &&
        (rc = get_int(p, root, "bos_token_id", "bos_token_id", false, 0, cfg->vocab_size - 1,
                      &cfg->bos_token_id)))
        return rc;
    LOG(LL_INFO, "model", "%s: Gemma3ForConditionalGeneration: serving its language model "
        "(text only); the vision tower and projector are not loaded", p->path);
    return parse_eos(p, root, cfg);
}

static int parse_config(struct cfg_parse *p, const cJSON *root, struct model_config *cfg)
{
    const cJSON *rp = member(root, "rope_parameters"), *rs = member(root, "rope_scaling");
    const cJSON *list = member(root, "architectures");
    double eps = 1e-6, theta = 10000;
    int rc;

    if (cJSON_IsArray(list) && cJSON_IsString(list->child) &&
        !strcmp(list->child->valuestring, "Gemma3ForConditionalGeneration"))
        return parse_multimodal(p, root, cfg);
    if ((rc = parse_arch(p, root, cfg, &cfg->max_position_embeddings)))
        return rc;
    /* Gemma's config classes tie the LM head to the embeddings unless told otherwise */
    cfg->tie_word_embeddings = is_gemma(cfg->arch);
    if (cfg->arch == ARCH_GEMMA3)
        theta = 1000000.0;
    if (cfg->arch == ARCH_GPT_OSS)   /* GptOssConfig's default_theta and rms_norm_eps */
        theta = 150000.0, eps = 1e-5;
    if ((rc = parse_sizes(p, root, cfg)) ||
        (rc = check_unsupported(p, root, cfg)) ||
        (is_gemma(cfg->arch) && (rc = model__parse_gemma(p, root, cfg))) ||
        ((cfg->arch == ARCH_MIXTRAL || cfg->arch == ARCH_QWEN3_MOE || cfg->arch == ARCH_QWEN2_MOE) &&
         (rc = model__parse_moe(p, root, cfg))) ||
        (cfg->arch == ARCH_GPT_OSS && (rc = model__parse_gpt_oss(p, root, cfg))) ||
        (rc = get_int(p, root, "max_position_embeddings", "max_position_embeddings", false, 1,
                      INT32_MAX, &cfg->max_position_embeddings)) ||
        (rc = get_pos(p, root, "rms_norm_eps", "rms_norm_eps", false, false, &eps)) ||
        (rc = get_bool(p, root, "tie_word_embeddings", &cfg->tie_word_embeddings)) ||
        (rc = parse_dtype(p, root, cfg)) ||
        (rc = parse_windows(p, root, cfg)))
        return rc;
    if (cfg->num_experts && cfg->quant != QUANT_NONE && cfg->quant != QUANT_MXFP4) {
        errf(p->err, "%s: quantization_config: %s checkpoints of %s are not supported "
             "(fp8 mixture-of-experts weights are not implemented)", p->path,
             model_quant_name(cfg->quant), cfg->arch_name);
        return -EINVAL;
    }
    cfg->num_kv_groups = model_kv_groups(cfg, cfg->kv_group_window, cfg->layer_kv_group,
                                         MODEL_MAX_KV_GROUPS);
    if (cfg->num_kv_groups < 0) {
        errf(p->err, "%s: layer_types / sliding_window: more than %d kinds of attention layer "
             "(KV-cache groups)", p->path, MODEL_MAX_KV_GROUPS);
        return -EINVAL;
    }
    cfg->rms_norm_eps = (float)eps;
    if ((rc = get_pos(p, root, "rope_theta", "rope_theta", false, false, &theta)))
        return rc;
    if (rp && cJSON_IsObject(rp) && member(rp, "full_attention")) {
        if ((rc = parse_rope_per_type(p, rp, cfg, &theta)))
            return rc;
    } else if (rp) {   /* transformers 5: theta and scaling in one object, which wins */
        if ((rc = parse_rope(p, rp, "rope_parameters", cfg)) ||
            (rc = get_pos(p, rp, "rope_theta", "rope_parameters.rope_theta", false, false, &theta)))
            return rc;
    } else if (rs && (rc = parse_rope(p, rs, "rope_scaling", cfg))) {
        return rc;
    }
    cfg->rope_theta = theta;
    if (cfg->rope_scaling.type == ROPE_LONGROPE && (rc = model__finish_longrope(p, root, cfg)))
        return rc;
    if ((rc = get_int(p, root, "bos_token_id", "bos_token_id", false, 0, cfg->vocab_size - 1,
                      &cfg->bos_token_id)))
        return rc;
    return parse_eos(p, root, cfg);
}

/* "<dir>/generation_config.json" beside path, for messages. */
static void gen_path_of(char *out, size_t len, const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash)
        snprintf(out, len, "%.*s/generation_config.json", (int)(slash - path), path);
    else
        snprintf(out, len, "generation_config.json");
}

/* model_config_parse, also telling whether config.json named the dtype. */
static int config_parse(struct model_config *cfg, const char *json, size_t len,
                        const char *gen_json, size_t gen_len, const char *path, char *err,
                        bool *has_dtype)
{
    struct cfg_parse p = { path, err, false };
    char gen_path[4096];
    cJSON *root = cJSON_ParseWithLength(json, len);
    int rc = -EINVAL;

    memset(cfg, 0, sizeof *cfg);
    cfg->bos_token_id = -1;
    cfg->gen_temperature = -1;
    cfg->gen_top_p = -1;
    if (!root)
        errf(err, "%s: not valid JSON", path);
    else if (!cJSON_IsObject(root))
        errf(err, "%s: not a JSON object", path);
    else
        rc = parse_config(&p, root, cfg);
    cJSON_Delete(root);
    if (rc == 0 && gen_json) {
        gen_path_of(gen_path, sizeof gen_path, path);
        p.path = gen_path;
        rc = parse_generation(&p, gen_json, gen_len, cfg);
    }
    *has_dtype = p.has_dtype;
    return rc;
}

int model_config_parse(struct model_config *cfg, const char *json, size_t len,
                       const char *gen_json, size_t gen_len, const char *path, char *err)
{
    bool has_dtype;

    return config_parse(cfg, json, len, gen_json, gen_len, path, err, &has_dtype);
}

/* ---- binding tensors ---- */

/* Binds `name` into t and checks its shape against want[0..ndim). Only linear layers'
 * weights may be F8_E4M3. */
static int bind_ref(struct binder *b, struct tensor_ref *t, const char *name, int ndim,
                    int64_t d0, int64_t d1, bool linear)
{
    const struct tensor_ref *r;
    int64_t want[2] = { d0, d1 };
    char ws[64], hs[128];

    if (b->dummy) {
        if (model__dummy_bind(b->dummy, t, name, ndim, d0, d1, linear)) {
            errf(b->err, "--load-format dummy: %s: no random weights for this shape", name);
            return -EINVAL;
        }
        return 0;
    }
    r = st_find(b->st, name);
    if (!r) {
        errf(b->err, "%s: %s: missing", b->where, name);
        return -EINVAL;
    }
    if (r->dtype == DT_U8) {
        errf(b->err, "%s: %s: U8 is read for MXFP4 experts' *_blocks and *_scales only",
             st_file_of(b->st, r), name);
        return -EINVAL;
    }
    if (r->ndim != ndim || r->shape[0] != d0 || (ndim == 2 && r->shape[1] != d1)) {
        st_shape_format(ws, sizeof ws, ndim, want);
        st_shape_format(hs, sizeof hs, r->ndim, r->shape);
        errf(b->err, "%s: %s: expected %s, file has %s", st_file_of(b->st, r), name, ws, hs);
        return -EINVAL;
    }
    if (r->dtype == DT_F8_E4M3 && !linear) {
        errf(b->err, "%s: %s: F8_E4M3 is read for linear layers' weights only",
             st_file_of(b->st, r), name);
        return -EINVAL;
    }
    *t = *r;
    return 0;
}

static int bind(struct binder *b, struct tensor_ref *t, const char *name, int ndim, int64_t d0,
                int64_t d1)
{
    return bind_ref(b, t, name, ndim, d0, d1, false);
}

int model__bind(struct binder *b, struct tensor_ref *t, const char *name, int ndim, int64_t d0,
                int64_t d1)
{
    return bind(b, t, name, ndim, d0, d1);
}

/* A linear layer's weight: bind, then its scale when it is F8_E4M3 (engine/model/quant.c). */
static int bind_linear(struct binder *b, const struct model_config *c, struct tensor_ref *t,
                       const char *name, int64_t d0, int64_t d1)
{
    int rc = bind_ref(b, t, name, 2, d0, d1, true);

    return rc || b->dummy ? rc : quant_bind_scale(b->st, c, b->where, name, t, b->err);
}

static int bind_layer(struct binder *b, const struct model_config *c, const char *prefix, int l,
                      struct layer_tensors *lt)
{
    int64_t h = c->hidden_size, qd = (int64_t)c->num_heads * c->head_dim;
    int64_t kvd = (int64_t)c->num_kv_heads * c->head_dim, ffn = c->intermediate_size;
    char n[160];
    int rc = 0;

#define BIND(field, suffix, ndim, d0, d1) do { if (rc == 0) { \
        snprintf(n, sizeof n, "%slayers.%d.%s", prefix, l, suffix); \
        rc = bind(b, &lt->field, n, ndim, d0, d1); } } while (0)
#define LINEAR(field, suffix, d0, d1) do { if (rc == 0) { \
        snprintf(n, sizeof n, "%slayers.%d.%s", prefix, l, suffix); \
        rc = bind_linear(b, c, &lt->field, n, d0, d1); } } while (0)
#define SCALAR(field, suffix) do { if (rc == 0 && !b->dummy) { \
        snprintf(n, sizeof n, "%slayers.%d.%s", prefix, l, suffix); \
        rc = quant_bind_scalar(b->st, n, &lt->field, b->err); } } while (0)
    BIND(input_norm, "input_layernorm.weight", 1, h, 0);
    if (c->arch == ARCH_PHI3) {   /* published fused: rows of q, then k, then v */
        LINEAR(qkv, "self_attn.qkv_proj.weight", qd + 2 * kvd, h);
    } else {
        LINEAR(q, "self_attn.q_proj.weight", qd, h);
        LINEAR(k, "self_attn.k_proj.weight", kvd, h);
        LINEAR(v, "self_attn.v_proj.weight", kvd, h);
    }
    LINEAR(o, "self_attn.o_proj.weight", h, qd);
    if (c->arch == ARCH_GPT_OSS && c->attention_bias)
        BIND(o_bias, "self_attn.o_proj.bias", 1, h, 0);
    if (c->attn_sinks)
        BIND(sinks, "self_attn.sinks", 1, c->num_heads, 0);
    SCALAR(k_scale, "self_attn.k_scale");
    SCALAR(v_scale, "self_attn.v_scale");
    if (c->attention_bias) {
        BIND(q_bias, "self_attn.q_proj.bias", 1, qd, 0);
        BIND(k_bias, "self_attn.k_proj.bias", 1, kvd, 0);
        BIND(v_bias, "self_attn.v_proj.bias", 1, kvd, 0);
    }
    if (c->qk_norm) {
        BIND(q_norm, "self_attn.q_norm.weight", 1, c->head_dim, 0);
        BIND(k_norm, "self_attn.k_norm.weight", 1, c->head_dim, 0);
    }
    BIND(post_norm, "post_attention_layernorm.weight", 1, h, 0);
    if (c->sandwich_norms) {
        BIND(pre_ff_norm, "pre_feedforward_layernorm.weight", 1, h, 0);
        BIND(post_ff_norm, "post_feedforward_layernorm.weight", 1, h, 0);
    }
    if (rc == 0 && c->layer_moe[l] && c->num_experts)
        return model__bind_moe(b, c, prefix, l, lt);
    if (c->arch == ARCH_PHI3) {   /* published fused: rows of gate, then up */
        LINEAR(gate_up, "mlp.gate_up_proj.weight", 2 * ffn, h);
        LINEAR(down, "mlp.down_proj.weight", h, ffn);
        return rc;
    }
    LINEAR(gate, "mlp.gate_proj.weight", ffn, h);
    LINEAR(up, "mlp.up_proj.weight", ffn, h);
    LINEAR(down, "mlp.down_proj.weight", h, ffn);
#undef BIND
#undef LINEAR
#undef SCALAR
    return rc;
}

static int bind_all(struct model *m, char *err)
{
    const struct model_config *c = &m->cfg;
    char where[4200], name[96];
    struct binder b = { .st = m->st, .where = where, .err = err, .dummy = m->dummy };
    int rc;

    if (m->dummy) {
        snprintf(where, sizeof where, "%s (--load-format dummy)", m->dir);
    } else {
        const char *one = m->st->files[0].path;
        size_t n = strlen(one);
        bool single = n >= 18 && !strcmp(one + n - 18, "/model.safetensors");

        snprintf(where, sizeof where, "%s/%s", m->dir,
                 single ? "model.safetensors" : "model.safetensors.index.json");
    }
    /* A Gemma 3 multimodal folder keeps its language model under language_model.model. (as
     * published) or model.language_model. (as transformers 4.52+ names it in memory). */
    snprintf(m->prefix, sizeof m->prefix, "%s",
             !c->multimodal ? "model."
             : m->st && st_find(m->st, "model.language_model.embed_tokens.weight")
             ? "model.language_model." : "language_model.model.");
    snprintf(name, sizeof name, "%sembed_tokens.weight", m->prefix);
    if ((rc = bind(&b, &m->embed, name, 2, c->vocab_size, c->hidden_size)))
        return rc;
    snprintf(name, sizeof name, "%snorm.weight", m->prefix);
    if ((rc = bind(&b, &m->final_norm, name, 1, c->hidden_size, 0)))
        return rc;
    /* A tied model may still ship lm_head.weight (a copy); the embedding is what is used. */
    snprintf(name, sizeof name, "%slm_head.weight",
             c->multimodal && !strcmp(m->prefix, "language_model.model.") ? "language_model." : "");
    if (c->tie_word_embeddings)
        m->lm_head = m->embed;
    else if ((rc = bind(&b, &m->lm_head, name, 2, c->vocab_size, c->hidden_size)))
        return rc;
    for (int l = 0; l < c->num_layers; l++)
        if ((rc = bind_layer(&b, c, m->prefix, l, &m->layers[l])))
            return rc;
    if (b.mxfp4_bytes)
        LOG(LL_INFO, "model", "%s: MXFP4 experts dequantized to %s, %.2f GiB, %.2f seconds",
            m->dir, dtype_name(b.mxfp4_dtype),
            (double)b.mxfp4_bytes / (1 << 30), b.mxfp4_seconds);
    return 0;
}

/* config.json and generation_config.json take a few KiB in real models (Llama 3, Qwen3:
 * under 2 KiB; quantization configs that list modules, tens of KiB): 16 MiB is margin
 * enough, and a config.json that is a symlink to /dev/zero is refused, not read until
 * memory runs out. */
#define MODEL_JSON_MAX ((size_t)16 << 20)

/* Reads dir/name into *out (a regular file of at most MODEL_JSON_MAX bytes); a missing
 * optional file leaves *out NULL. */
static int read_json(const char *dir, const char *name, bool optional, char **out, size_t *len,
                     char *path, size_t path_len, char *err)
{
    snprintf(path, path_len, "%s/%s", dir, name);
    *out = NULL;
    if (optional && access(path, F_OK) != 0)
        return 0;
    return read_file_bounded(path, MODEL_JSON_MAX, out, len, err);
}

/* model_open and model_open_dummy: dummy draws the tensors instead of mapping files. */
static int open_model(struct model *m, const char *dir, bool dummy, uint64_t seed, bool fp8,
                      char *err)
{
    char *cfg_text = NULL, *gen_text = NULL, path[4200], gen_path[4200];
    size_t cfg_len = 0, gen_len = 0;
    bool has_dtype = false;
    int rc;

    memset(m, 0, sizeof *m);
    if (strlen(dir) >= sizeof m->dir) {
        errf(err, "model folder path too long (%zu bytes)", strlen(dir));
        return -ENAMETOOLONG;
    }
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    if ((rc = read_json(dir, "config.json", false, &cfg_text, &cfg_len, path, sizeof path, err)) ||
        (rc = read_json(dir, "generation_config.json", true, &gen_text, &gen_len, gen_path,
                        sizeof gen_path, err)) ||
        (rc = config_parse(&m->cfg, cfg_text, cfg_len, gen_text, gen_len, path, err,
                           &has_dtype)))
        goto fail;
    /* without torch_dtype / dtype, dummy weights are bf16 (gen-model's default) */
    if (dummy && !has_dtype)
        m->cfg.dtype = DT_BF16;
    if ((rc = dummy ? model__dummy_create(&m->dummy, &m->cfg, seed, fp8, err) : st_open(&m->st, dir, err)))
        goto fail;
    if (!(m->layers = calloc((size_t)m->cfg.num_layers, sizeof *m->layers))) {
        errf(err, "%s: out of memory", dir);
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = bind_all(m, err)))
        goto fail;
    /* Without torch_dtype / dtype in config.json, the weights say what they are. */
    if (!has_dtype)
        m->cfg.dtype = m->embed.dtype;
    if (dummy)
        LOG(LL_INFO, "model", "%s: %s, %d layers, hidden %d, heads %d/%d, vocab %d, random %s "
            "weights%s (--load-format dummy, seed %llu), sharing %zu MiB of host memory",
            dir, m->cfg.arch_name, m->cfg.num_layers, m->cfg.hidden_size, m->cfg.num_heads,
            m->cfg.num_kv_heads, m->cfg.vocab_size, dtype_name(m->cfg.dtype),
            fp8 ? ", linear layers' as F8_E4M3 with per-row scales" : "", (unsigned long long)seed,
            model__dummy_bytes(m->dummy) >> 20);
    else
        LOG(LL_INFO, "model", "%s: %s, %d layers, hidden %d, heads %d/%d, vocab %d, %d tensors "
            "in %d file(s), quantization %s", dir, m->cfg.arch_name, m->cfg.num_layers,
            m->cfg.hidden_size, m->cfg.num_heads, m->cfg.num_kv_heads, m->cfg.vocab_size,
            st_num_tensors(m->st), m->st->num_files, model_quant_name(m->cfg.quant));
    if (m->cfg.quant_static_input)
        LOG(LL_INFO, "model", "%s: static activation scales (input_scale): the cuda backend "
            "quantizes activations with them, the cpu backend computes W8A16 and ignores them",
            dir);
    free(cfg_text);
    free(gen_text);
    return 0;
fail:
    free(cfg_text);
    free(gen_text);
    model_close(m);
    return rc;
}

int model_open(struct model *m, const char *dir, char *err)
{
    return open_model(m, dir, false, 0, false, err);
}

int model_open_dummy(struct model *m, const char *dir, uint64_t seed, bool fp8, char *err)
{
    return open_model(m, dir, true, seed, fp8, err);
}

size_t model_dummy_bytes(const struct model *m)
{
    return m->dummy ? model__dummy_bytes(m->dummy) : 0;
}

void model_close(struct model *m)
{
    st_close(m->st);
    model__dummy_destroy(m->dummy);
    for (int l = 0; m->layers && l < m->cfg.num_layers; l++) {
        free(m->layers[l].experts);
        free(m->layers[l].mxfp4_experts);
    }
    free(m->layers);
    memset(m, 0, sizeof *m);
}

/* gen_model.c — `osprey gen-model`: a random-weight model folder in Hugging Face's format.
 * The config comes from a preset (written here in transformers' torch_dtype style) or a
 * config.json-shaped file, is validated by model_config_parse, and decides the tensors.
 * Weights are N(0, 0.02) like transformers' init (norms 1.0; Gemma's (1 + w) norms 0.0), drawn
 * from a counter-based generator keyed by (seed, tensor name, element index) and streamed
 * into the file. --quantize writes the linear weights as FP8 checkpoints are published: the
 * bf16 weight divided by its scale (amax / 448 of its block or row) in F8_E4M3, the scale
 * beside it in f32, and the matching quantization_config (dense models only). */
#include "engine/model/gen_model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>   /* per-tensor keys */

#include "engine/base/fp8.h"
#include "engine/model/gen_tokenizer.h"
#include "engine/base/log.h"
#include "engine/base/rng.h"
#include "engine/model/model.h"
#include "engine/model/safetensors.h"

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

static const struct preset presets[] = {
    /* name            arch          vocab   hid   ffn    L   H   KV  D    max_pos theta eps  tied
     *                                                                     llama3 window mixed pattern
     *                                                                     linear experts top_k moe_ffn */
    { "tiny",          ARCH_LLAMA,   512,    64,   128,   2,  4,  2,  16,  2048,   5e5, 1e-5, false,
                                                                           0,     0,     false, 0, 0, 0, 0, 0 },
    { "tiny-qwen2",    ARCH_QWEN2,   512,    64,   128,   2,  4,  2,  16,  2048,   1e6, 1e-6, true,
                                                                           0,     0,     false, 0, 0, 0, 0, 0 },
    { "tiny-qwen3",    ARCH_QWEN3,   512,    64,   128,   2,  4,  2,  32,  2048,   1e6, 1e-6, true,
                                                                           0,     0,     false, 0, 0, 0, 0, 0 },
    { "tiny-mistral",  ARCH_MISTRAL, 512,    64,   128,   2,  4,  2,  16,  2048,   1e6, 1e-5, false,
                                                                           0,     32,    false, 0, 0, 0, 0, 0 },
    /* transformers' LlamaForCausalLM ignores layer_types; osprey honours them. */
    { "tiny-mixed",    ARCH_LLAMA,   512,    64,   128,   4,  4,  2,  16,  2048,   5e5, 1e-5, false,
                                                                           0,     32,    true,  0, 0, 0, 0, 0 },
    { "llama-3.2-1b",  ARCH_LLAMA,   128256, 2048, 8192,  16, 32, 8,  64,  131072, 5e5, 1e-5, true,
                                                                           32,    0,     false, 0, 0, 0, 0, 0 },
    { "bench-1.5b",    ARCH_LLAMA,   128256, 2048, 8192,  16, 32, 8,  64,  8192,   5e5, 1e-5, false,
                                                                           0,     0,     false, 0, 0, 0, 0, 0 },
    { "llama-3.1-8b",  ARCH_LLAMA,   128256, 4096, 14336, 32, 32, 8,  128, 131072, 5e5, 1e-5, false,
                                                                           8,     0,     false, 0, 0, 0, 0, 0 },
    /* 140 GB of bf16: a shape for --no-weights and --load-format dummy (fp8 fits one H200) */
    { "llama-3.1-70b", ARCH_LLAMA,   128256, 8192, 28672, 80, 64, 8,  128, 131072, 5e5, 1e-5, false,
                                                                           8,     0,     false, 0, 0, 0, 0, 0 },
    /* Gemma: window and pattern (Gemma 2 alternates from a sliding layer 0; Gemma 3 has 5
     * local layers to 1 global), soft-caps 50/30 on Gemma 2, Gemma 3's local RoPE base 1e4. */
    { "tiny-gemma2",   ARCH_GEMMA2,  512,    64,   128,   4,  4,  2,  16,  8192,   1e4, 1e-6, true,
                                                                           0,     32,    false, 2, 0, 0, 0, 0 },
    { "tiny-gemma3",   ARCH_GEMMA3,  512,    64,   128,   6,  4,  1,  32,  32768,  1e6, 1e-6, true,
                                                                           0,     32,    false, 6, 0, 0, 0, 0 },
    { "gemma-3-4b",    ARCH_GEMMA3,  262208, 2560, 10240, 34, 8,  4,  256, 131072, 1e6, 1e-6, true,
                                                                           0,     1024,  false, 6,
                                                                           8.0,   0, 0, 0 },
    /* MoE: experts, top-k, expert ffn. Mixtral's experts are intermediate_size wide; Qwen3-MoE
     * renormalizes its top 8 (norm_topk_prob) and has moe_intermediate_size. */
    { "tiny-mixtral",  ARCH_MIXTRAL, 512,    64,   128,   2,  4,  2,  16,  32768,  1e6, 1e-5, false,
                                                                           0,     0,     false, 0,
                                                                           0,     8, 2, 128 },
    { "tiny-qwen3-moe", ARCH_QWEN3_MOE, 512, 64,   128,   2,  4,  2,  32,  40960,  1e6, 1e-6, false,
                                                                           0,     0,     false, 0,
                                                                           0,     16, 4, 32 },
    { "tiny-qwen2-moe", ARCH_QWEN2_MOE, 512, 64,   96,    2,  4,  2,  16,  8192,   1e6, 1e-6, false,
                                                                           0,     0,     false, 0,
                                                                           0,     8, 2, 24 },
    { "mixtral-8x7b",  ARCH_MIXTRAL, 32000,  4096, 14336, 32, 32, 8,  128, 32768,  1e6, 1e-5, false,
                                                                           0,     0,     false, 0,
                                                                           0,     8, 2, 14336 },
    { "qwen3-30b-a3b", ARCH_QWEN3_MOE, 151936, 2048, 6144, 48, 32, 4, 128, 40960,  1e6, 1e-6, false,
                                                                           0,     0,     false, 0,
                                                                           0,     128, 8, 768 },
    /* Phi-3: fused projections, Phi-4-mini's partial rotary factor 0.75 and LongRoPE over
     * an original 4096 positions (phi3_config writes them) */
    { "tiny-phi3",     ARCH_PHI3,    512,    64,   128,   2,  4,  2,  16,  131072, 1e4, 1e-5, false,
                                                                           0,     0,     false, 0,
                                                                           0,     0, 0, 0 },
    /* gpt-oss: layers alternate sliding (from layer 0) and full, YaRN factor 32 over an
     * original max_pos / 32, biases, sinks, experts fused input-major as published in bf16
     * (gpt_oss_config writes its keys) */
    { "tiny-gpt-oss",  ARCH_GPT_OSS, 512,    64,   64,    4,  4,  2,  16,  4096,   1.5e5, 1e-5, false,
                                                                           0,     32,    false, 0,
                                                                           0,     4, 2, 64 },
    /* gpt-oss-20b's shape in bf16 (41 GB), and a CPU benchmark's scaled-down one (0.63 GB:
     * docs/BENCHMARKS.md) with its heads, window, experts and top-k */
    { "gpt-oss-20b",   ARCH_GPT_OSS, 201088, 2880, 2880,  24, 64, 8,  64,  131072, 1.5e5, 1e-5, false,
                                                                           0,     128,   false, 0,
                                                                           0,     32, 4, 2880 },
    { "bench-gpt-oss", ARCH_GPT_OSS, 4096,   720,  720,   6,  16, 4,  64,  131072, 1.5e5, 1e-5, false,
                                                                           0,     128,   false, 0,
                                                                           0,     32, 4, 720 },
};

const char *gen_model_preset_name(int i)
{
    return i >= 0 && i < (int)ARRAY_LEN(presets) ? presets[i].name : NULL;
}

/* ---- config.json ---- */

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
static int load_config(const char *spec, cJSON **out, bool *from_file, char *err)
{
    char *text = NULL, names[256] = "";
    size_t len = 0;
    int rc;

    *out = NULL;
    *from_file = false;
    for (size_t i = 0; i < ARRAY_LEN(presets); i++)
        if (!strcmp(spec, presets[i].name)) {
            *out = preset_config(&presets[i]);
            return *out ? 0 : -ENOMEM;
        }
    if (access(spec, F_OK) != 0) {
        for (size_t i = 0; i < ARRAY_LEN(presets); i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                     presets[i].name);
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
static int parse_json(const cJSON *j, const char *label, struct model_config *cfg, char *err)
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
static int set_dtype(cJSON *c, const char *dtype, char *err)
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

static char *generation_config(const struct gen_tokenizer *t)
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

/* ---- weights ---- */

struct gen_fill {
    uint64_t key;             /* XXH64(name, seed) */
    bool norm;                /* RMSNorm weights: all norm_value */
    float norm_value;         /* 1, or 0 for Gemma's (1 + w) norms */
    /* F8_E4M3 weights: [rows / sb0 rounded up, sc] scales, sc = ceil(cols / sb1) */
    const float *scales;
    int64_t cols, sb0, sb1, sc;
};

struct gen_tensor {
    char name[96];
    struct st_write_tensor w;
    struct gen_fill fill;
    bool scale;               /* an f32 scale tensor of --quantize, data in w.data */
};

enum gen_quant { GEN_QUANT_NONE, GEN_QUANT_BLOCK, GEN_QUANT_CHANNEL };

/* Element i of a tensor: the sum of four 16-bit uniforms of one hash, centred and scaled to
 * unit variance (Irwin-Hall, n = 4): close enough to a normal for random weights, and one
 * hash per element keeps 1.5 billion of them at a few seconds. */
static inline float gen_value(const struct gen_fill *f, uint64_t i)
{
    uint64_t h = rng_at(f->key, i);
    int32_t s = (int32_t)(h & 0xffff) + (int32_t)(h >> 16 & 0xffff) +
                (int32_t)(h >> 32 & 0xffff) + (int32_t)(h >> 48);

    return f->norm ? f->norm_value : (float)(s - 131070) * (float)(INIT_STD / 37837.23);
}

/* The weight as a bf16 checkpoint holds it: what --quantize quantizes. */
static inline float bf16_value(const struct gen_fill *f, uint64_t i)
{
    return bf16_to_f32(f32_to_bf16(gen_value(f, i)));
}

static int fill_cb(void *ctx, const struct st_write_tensor *t, void *buf, size_t offset_bytes,
                   size_t n_bytes)
{
    const struct gen_fill *f = ctx;
    size_t es = dtype_size(t->dtype), n = n_bytes / es;
    uint64_t first = offset_bytes / es;

    if (t->dtype == DT_F8_E4M3)
        for (size_t i = 0; i < n; i++) {
            uint64_t r = (first + i) / f->cols, c = (first + i) % f->cols;
            float s = f->scales[(r / f->sb0) * f->sc + c / f->sb1];

            ((uint8_t *)buf)[i] = fp8_e4m3_from_f32(bf16_value(f, first + i) / s);
        }
    else if (t->dtype == DT_BF16)
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)buf)[i] = f32_to_bf16(gen_value(f, first + i));
    else if (t->dtype == DT_F16)
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)buf)[i] = f32_to_f16(gen_value(f, first + i));
    else
        for (size_t i = 0; i < n; i++)
            ((float *)buf)[i] = gen_value(f, first + i);
    return 0;
}

/* A tensor of [d0], [d0, d1] or [d0, d1, d2] (gpt-oss's fused experts): trailing 0s drop. */
static void add_tensor(struct gen_tensor *v, int *n, const char *name, int64_t d0, int64_t d1,
                       int64_t d2, bool norm, const struct model_config *c)
{
    struct gen_tensor *t = &v[(*n)++];

    snprintf(t->name, sizeof t->name, "%s", name);
    t->w.ndim = d2 ? 3 : d1 ? 2 : 1;
    t->w.shape[0] = d0;
    t->w.shape[1] = d1;
    t->w.shape[2] = d2;
    t->fill.norm = norm;
    t->fill.norm_value = c->norm_plus_one ? 0.0f : 1.0f;
}

/* Every tensor model_open binds for cfg, with its shape. Returns the count. */
static int list_tensors(const struct model_config *c, struct gen_tensor *v)
{
    int64_t h = c->hidden_size, qd = (int64_t)c->num_heads * c->head_dim;
    int64_t kvd = (int64_t)c->num_kv_heads * c->head_dim, ffn = c->intermediate_size;
    char name[96];
    int n = 0;

    add_tensor(v, &n, "model.embed_tokens.weight", c->vocab_size, h, 0, false, c);
    add_tensor(v, &n, "model.norm.weight", h, 0, 0, true, c);
    if (!c->tie_word_embeddings)
        add_tensor(v, &n, "lm_head.weight", c->vocab_size, h, 0, false, c);
    for (int l = 0; l < c->num_layers; l++) {
#define LAYER3(suffix, d0, d1, d2, ones) do { \
        snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix); \
        add_tensor(v, &n, name, d0, d1, d2, ones, c); } while (0)
#define LAYER(suffix, d0, d1, ones) LAYER3(suffix, d0, d1, 0, ones)
        LAYER("input_layernorm.weight", h, 0, true);
        if (c->arch == ARCH_PHI3) {
            LAYER("self_attn.qkv_proj.weight", qd + 2 * kvd, h, false);
        } else {
            LAYER("self_attn.q_proj.weight", qd, h, false);
            LAYER("self_attn.k_proj.weight", kvd, h, false);
            LAYER("self_attn.v_proj.weight", kvd, h, false);
        }
        LAYER("self_attn.o_proj.weight", h, qd, false);
        if (c->attn_sinks) {   /* gpt-oss */
            LAYER("self_attn.o_proj.bias", h, 0, false);
            LAYER("self_attn.sinks", c->num_heads, 0, false);
        }
        if (c->attention_bias) {
            LAYER("self_attn.q_proj.bias", qd, 0, false);
            LAYER("self_attn.k_proj.bias", kvd, 0, false);
            LAYER("self_attn.v_proj.bias", kvd, 0, false);
        }
        if (c->qk_norm) {
            LAYER("self_attn.q_norm.weight", c->head_dim, 0, true);
            LAYER("self_attn.k_norm.weight", c->head_dim, 0, true);
        }
        LAYER("post_attention_layernorm.weight", h, 0, true);
        if (c->sandwich_norms) {
            LAYER("pre_feedforward_layernorm.weight", h, 0, true);
            LAYER("post_feedforward_layernorm.weight", h, 0, true);
        }
        if (c->num_experts && c->layer_moe[l] && c->moe_act == MOE_ACT_SWIGLU_OAI) {
            /* gpt-oss in bf16: a biased router, experts fused input-major (gate/up interleaved) */
            int64_t E = c->num_experts, f = c->moe_intermediate_size;

            LAYER("mlp.router.weight", E, h, false);
            LAYER("mlp.router.bias", E, 0, false);
            LAYER3("mlp.experts.gate_up_proj", E, h, 2 * f, false);
            LAYER("mlp.experts.gate_up_proj_bias", E, 2 * f, false);
            LAYER3("mlp.experts.down_proj", E, f, h, false);
            LAYER("mlp.experts.down_proj_bias", E, h, false);
            continue;
        }
        if (c->num_experts && c->layer_moe[l]) {
            /* as published: Mixtral's block_sparse_moe with w1/w3/w2, Qwen3-MoE's mlp */
            bool mx = c->arch == ARCH_MIXTRAL;
            const char *blk = mx ? "block_sparse_moe" : "mlp";
            int64_t f = c->moe_intermediate_size;
            char suffix[64];

            snprintf(suffix, sizeof suffix, "%s.gate.weight", blk);
            LAYER(suffix, c->num_experts, h, false);
            for (int e = 0; e < c->num_experts; e++) {
                snprintf(suffix, sizeof suffix, "%s.experts.%d.%s.weight", blk, e, mx ? "w1" : "gate_proj");
                LAYER(suffix, f, h, false);
                snprintf(suffix, sizeof suffix, "%s.experts.%d.%s.weight", blk, e, mx ? "w3" : "up_proj");
                LAYER(suffix, f, h, false);
                snprintf(suffix, sizeof suffix, "%s.experts.%d.%s.weight", blk, e, mx ? "w2" : "down_proj");
                LAYER(suffix, h, f, false);
            }
            if (c->shared_expert_intermediate_size) {
                int64_t sf = c->shared_expert_intermediate_size;

                LAYER("mlp.shared_expert.gate_proj.weight", sf, h, false);
                LAYER("mlp.shared_expert.up_proj.weight", sf, h, false);
                LAYER("mlp.shared_expert.down_proj.weight", h, sf, false);
                LAYER("mlp.shared_expert_gate.weight", 1, h, false);
            }
            continue;
        }
        if (c->arch == ARCH_PHI3) {
            LAYER("mlp.gate_up_proj.weight", 2 * ffn, h, false);
        } else {
            LAYER("mlp.gate_proj.weight", ffn, h, false);
            LAYER("mlp.up_proj.weight", ffn, h, false);
        }
        LAYER("mlp.down_proj.weight", h, ffn, false);
#undef LAYER
#undef LAYER3
    }
    return n;
}

/* --quantize: every linear weight (a "...proj.weight") becomes F8_E4M3 and gets its scale
 * tensor, amax / 448 over each block (or row) of the bf16 weight, appended after v[n).
 * Returns the new count, or -ENOMEM. */
static int add_scales(struct gen_tensor *v, int n, enum gen_quant q, int block, uint64_t seed)
{
    int total = n;

    for (int i = 0; i < n; i++) {
        struct gen_fill *f = &v[i].fill;
        size_t len = strlen(v[i].name);
        int64_t rows = v[i].w.shape[0], cols = v[i].w.shape[1], nr;
        struct gen_tensor *s;
        float *sv;

        if (len < 11 || strcmp(v[i].name + len - 11, "proj.weight"))
            continue;
        f->key = XXH64(v[i].name, len, seed);
        f->cols = cols;
        f->sb0 = q == GEN_QUANT_BLOCK ? block : 1;
        f->sb1 = q == GEN_QUANT_BLOCK ? block : cols;
        f->sc = (cols + f->sb1 - 1) / f->sb1;
        nr = (rows + f->sb0 - 1) / f->sb0;
        if (!(sv = calloc((size_t)(nr * f->sc), sizeof *sv)))
            return -ENOMEM;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                float *m = &sv[(r / f->sb0) * f->sc + c / f->sb1];
                *m = fmaxf(*m, fabsf(bf16_value(f, (uint64_t)(r * cols + c))));
            }
        for (int64_t k = 0; k < nr * f->sc; k++)
            sv[k] = sv[k] > 0 ? sv[k] / FP8_E4M3_MAX : 1.0f;
        f->scales = sv;
        s = &v[total++];
        snprintf(s->name, sizeof s->name, "%.*s%s", (int)(len - 6), v[i].name,
                 q == GEN_QUANT_BLOCK ? "weight_scale_inv" : "weight_scale");
        s->w.ndim = 2;
        s->w.shape[0] = nr;
        s->w.shape[1] = f->sc;
        s->w.data = sv;
        s->scale = true;
    }
    return total;
}

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const struct gen_tensor *)a)->name, ((const struct gen_tensor *)b)->name);
}

/* Writes model.safetensors, tensors sorted by name as the safetensors library does. */
static int write_weights(const struct model_config *c, enum dtype dt, uint64_t seed,
                         enum gen_quant q, int block, const char *path,
                         struct gen_model_stats *stats, char *err)
{
    /* every tensor of a layer, and a scale beside each of its (at most 7) linear weights */
    int max = 3 + (28 + 3 * c->num_experts) * c->num_layers, n, rc;
    struct gen_tensor *v = calloc((size_t)max, sizeof *v);
    struct st_write_tensor *w = calloc((size_t)max, sizeof *w);
    double t0 = now_s();

    if (!v || !w) {
        free(v);
        free(w);
        errf(err, "out of memory");
        return -ENOMEM;
    }
    n = list_tensors(c, v);
    if (q != GEN_QUANT_NONE && (n = add_scales(v, n, q, block, seed)) < 0) {
        rc = n;
        n = max;
        errf(err, "out of memory");
        goto out;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_tensor);
    stats->weight_bytes = 0;
    for (int i = 0; i < n; i++) {
        uint64_t elems = 1;

        v[i].fill.key = XXH64(v[i].name, strlen(v[i].name), seed);
        w[i] = v[i].w;
        w[i].name = v[i].name;
        w[i].dtype = v[i].scale ? DT_F32 : v[i].fill.scales ? DT_F8_E4M3 : dt;
        w[i].fill = v[i].scale ? NULL : fill_cb;
        w[i].ctx = &v[i].fill;
        for (int d = 0; d < w[i].ndim; d++)
            elems *= (uint64_t)w[i].shape[d];
        stats->weight_bytes += elems * dtype_size(w[i].dtype);
    }
    rc = st_write(path, w, n, err);
    stats->num_tensors = n;
    stats->seconds = now_s() - t0;
out:
    for (int i = 0; i < n; i++)
        if (v[i].scale)
            free((void *)v[i].w.data);
    free(v);
    free(w);
    return rc;
}

/* ---- the folder ---- */

static int write_file(const char *dir, const char *name, const char *data, size_t len, char *err)
{
    char path[4200];
    FILE *f;
    int rc = 0;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!(f = fopen(path, "wb"))) {
        rc = -errno;
        errf(err, "%s: %s", path, strerror(errno));
        return rc;
    }
    if (fwrite(data, 1, len, f) != len)
        rc = -EIO;
    if (fclose(f) != 0 && rc == 0)
        rc = -EIO;
    if (rc)
        errf(err, "%s: write failed", path);
    return rc;
}

/* mkdir -p. */
static int make_dirs(const char *dir, char *err)
{
    char p[4096];

    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) {
        errf(err, "--out: path too long");
        return -ENAMETOOLONG;
    }
    for (char *s = p + 1; ; s++) {
        bool end = *s == '\0';

        if (*s != '/' && !end)
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            int rc = -errno;
            errf(err, "%s: %s", p, strerror(errno));
            return rc;
        }
        if (end)
            return 0;
        *s = '/';
    }
}

/* Adjusts the config to the tokenizer: vocab_size (a preset grows to cover a copied
 * tokenizer; a file must already), bos/eos ids, transformers_version. */
static int fit_tokenizer(cJSON *c, const struct gen_tokenizer *t, bool from_file,
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

/* --quantize into quantization_config, in the two styles osprey reads (engine/model/quant.c). */
static int set_quant(cJSON *c, enum gen_quant q, int block)
{
    cJSON *qc = cJSON_CreateObject(), *g, *grp, *w, *act, *bs;

    if (!qc)
        return -ENOMEM;
    if (q == GEN_QUANT_BLOCK) {
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

int gen_model_write(const struct gen_model_opts *o, struct gen_model_stats *stats, char *err)
{
    struct gen_model_stats dummy;
    struct gen_tokenizer tok = { 0 };
    struct model_config cfg;
    char label[4200], *text = NULL, *gen = NULL;
    cJSON *c = NULL;
    bool from_file;
    enum gen_quant q = GEN_QUANT_NONE;
    int rc, block = o->quant_block ? o->quant_block : 128;

    if (!stats)
        stats = &dummy;
    if (o->quantize && !strcmp(o->quantize, "fp8-block"))
        q = GEN_QUANT_BLOCK;
    else if (o->quantize && !strcmp(o->quantize, "fp8-channel"))
        q = GEN_QUANT_CHANNEL;
    else if (o->quantize) {
        errf(err, "--quantize %.32s: expected fp8-block or fp8-channel", o->quantize);
        return -EINVAL;
    }
    if (block < 1 || block > 65536) {
        errf(err, "--quant-block %d: expected 1 to 65536", block);
        return -EINVAL;
    }
    memset(stats, 0, sizeof *stats);
    if ((rc = load_config(o->config, &c, &from_file, err)))
        return rc;
    snprintf(label, sizeof label, from_file ? "%s" : "preset %s", o->config);
    if ((o->dtype && (rc = set_dtype(c, o->dtype, err))) ||
        (rc = parse_json(c, label, &cfg, err)))
        goto out;
    rc = o->tokenizer_dir ? gen_tokenizer_copy(&tok, o->tokenizer_dir, err)
                          : gen_tokenizer_build(&tok, cfg.vocab_size, cfg.max_position_embeddings,
                                                o->seed, err);
    if (rc || (rc = fit_tokenizer(c, &tok, from_file, &cfg, label, err)) ||
        (q != GEN_QUANT_NONE && (rc = set_quant(c, q, block)) && (errf(err, "out of memory"), 1)) ||
        (rc = parse_json(c, label, &cfg, err)))
        goto out;
    text = cJSON_Print(c);
    gen = generation_config(&tok);
    if (!text || !gen) {
        errf(err, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = make_dirs(o->out_dir, err)) ||
        (rc = write_file(o->out_dir, "config.json", text, strlen(text), err)) ||
        (rc = write_file(o->out_dir, "generation_config.json", gen, strlen(gen), err)) ||
        (rc = write_file(o->out_dir, "tokenizer.json", tok.tokenizer_json,
                         tok.tokenizer_json_len, err)) ||
        (rc = write_file(o->out_dir, "tokenizer_config.json", tok.config_json,
                         tok.config_json_len, err)))
        goto out;
    snprintf(label, sizeof label, "%s/model.safetensors", o->out_dir);
    if (o->no_weights)
        goto out;
    rc = write_weights(&cfg, cfg.dtype, o->seed, q, block, label, stats, err);
out:
    free(text);
    free(gen);
    gen_tokenizer_fini(&tok);
    cJSON_Delete(c);
    return rc;
}

/* gen_model.c — `osprey gen-model`: a random-weight model folder in Hugging Face's format.
 * The config comes from a preset (gen_model_presets.c, written in transformers' torch_dtype
 * style by gen_model_config.c) or a config.json-shaped file, is validated by
 * model_config_parse, and decides the tensors.
 * Weights are N(0, 0.02) like transformers' init (norms 1.0; Gemma's (1 + w) norms 0.0), drawn
 * from a counter-based generator keyed by (seed, tensor name, element index) and streamed
 * into the file. --quantize writes the linear weights as FP8 checkpoints are published: the
 * bf16 weight divided by its scale (amax / 448 of its block or row) in F8_E4M3, the scale
 * beside it in f32, and the matching quantization_config (dense models only); --quantize
 * mxfp4 writes gpt-oss's experts as OpenAI publishes them (engine/model/mxfp4.h), quantized
 * from the bf16 values the same seed writes unquantized. */
#include "engine/model/gen_model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>   /* per-tensor keys */

#include "engine/base/fp8.h"
#include "engine/base/log.h"
#include "engine/base/rng.h"
#include "engine/model/gen_model_internal.h"
#include "engine/model/mxfp4.h"
#include "engine/model/safetensors.h"

/* ---- weights ---- */

struct gen_fill {
    uint64_t key;             /* XXH64(name, seed) */
    bool norm;                /* RMSNorm weights: all norm_value */
    float norm_value;         /* 1, or 0 for Gemma's (1 + w) norms */
    /* F8_E4M3 weights: [rows / sb0 rounded up, sc] scales, sc = ceil(cols / sb1) */
    const float *scales;
    int64_t cols, sb0, sb1, sc;
    /* MXFP4 *_blocks of an input-major [E, in, out] weight: one e8m0 byte per block of 32
     * along `in`, [E, out, in / 32] */
    const uint8_t *mx_scales;
    int64_t mx_in, mx_out;
};

struct gen_tensor {
    char name[96];
    struct st_write_tensor w;
    struct gen_fill fill;
    bool scale;               /* a scale tensor of --quantize, data in w.data */
    bool u8;                  /* MXFP4's blocks and scales */
};

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

    if (t->dtype == DT_U8)
        for (size_t i = 0; i < n_bytes; i++) {
            /* byte j of block (e, r, g): elements 2j (low nibble) and 2j + 1 along `in` */
            uint64_t blk = (first + i) / MXFP4_BLOCK_BYTES, j = (first + i) % MXFP4_BLOCK_BYTES;
            uint64_t groups = (uint64_t)(f->mx_in / MXFP4_BLOCK), g = blk % groups;
            uint64_t r = blk / groups % (uint64_t)f->mx_out, e = blk / groups / (uint64_t)f->mx_out;
            uint64_t k = g * MXFP4_BLOCK + 2 * j, at = (e * f->mx_in + k) * f->mx_out + r;
            float s = mxfp4_scale(f->mx_scales[blk]);

            ((uint8_t *)buf)[i] = (uint8_t)(mxfp4_e2m1_from(bf16_value(f, at) / s) |
                                            mxfp4_e2m1_from(bf16_value(f, at + f->mx_out) / s) << 4);
        }
    else if (t->dtype == DT_F8_E4M3)
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

/* --quantize mxfp4: gpt-oss's fused experts (gate_up_proj [E, hidden, 2 ffn], down_proj
 * [E, ffn, hidden]) become name_blocks [E, out, in / 32, 16] quantized from the bf16 values
 * the unquantized tensor holds (same key), and name_scales [E, out, in / 32] appended after
 * v[n). Returns the new count, or -ENOMEM. */
static int add_mxfp4(struct gen_tensor *v, int n, uint64_t seed)
{
    int total = n;

    for (int i = 0; i < n; i++) {
        struct gen_fill *f = &v[i].fill;
        size_t len = strlen(v[i].name);
        int64_t E = v[i].w.shape[0], in = v[i].w.shape[1], out = v[i].w.shape[2];
        int64_t groups = in / MXFP4_BLOCK;
        struct gen_tensor *s;
        uint8_t *sv;

        if (v[i].w.ndim != 3)
            continue;
        f->key = XXH64(v[i].name, len, seed);
        f->mx_in = in;
        f->mx_out = out;
        if (!(sv = malloc((size_t)(E * out * groups))))
            return -ENOMEM;
        for (int64_t e = 0; e < E; e++)
            for (int64_t r = 0; r < out; r++)
                for (int64_t g = 0; g < groups; g++) {
                    float amax = 0;

                    for (int64_t k = g * MXFP4_BLOCK; k < (g + 1) * MXFP4_BLOCK; k++)
                        amax = fmaxf(amax, fabsf(bf16_value(f, (uint64_t)((e * in + k) * out + r))));
                    sv[(e * out + r) * groups + g] = mxfp4_scale_for(amax);
                }
        f->mx_scales = sv;
        s = &v[total++];
        snprintf(s->name, sizeof s->name, "%s_scales", v[i].name);
        s->w.ndim = 3;
        s->w.shape[0] = E;
        s->w.shape[1] = out;
        s->w.shape[2] = groups;
        s->w.data = sv;
        s->scale = s->u8 = true;
        snprintf(v[i].name + len, sizeof v[i].name - len, "_blocks");
        v[i].w.ndim = 4;
        v[i].w.shape[1] = out;
        v[i].w.shape[2] = groups;
        v[i].w.shape[3] = MXFP4_BLOCK_BYTES;
        v[i].u8 = true;
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
    if (q != GEN_QUANT_NONE &&
        (n = q == GEN_QUANT_MXFP4 ? add_mxfp4(v, n, seed) : add_scales(v, n, q, block, seed)) < 0) {
        rc = n;
        n = max;
        errf(err, "out of memory");
        goto out;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_tensor);
    stats->weight_bytes = 0;
    for (int i = 0; i < n; i++) {
        uint64_t elems = 1;

        if (!v[i].fill.mx_scales)   /* MXFP4 blocks keep their bf16 tensor's key */
            v[i].fill.key = XXH64(v[i].name, strlen(v[i].name), seed);
        w[i] = v[i].w;
        w[i].name = v[i].name;
        w[i].dtype = v[i].u8 ? DT_U8 : v[i].scale ? DT_F32 : v[i].fill.scales ? DT_F8_E4M3 : dt;
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
    else if (o->quantize && !strcmp(o->quantize, "mxfp4"))
        q = GEN_QUANT_MXFP4;
    else if (o->quantize) {
        errf(err, "--quantize %.32s: expected fp8-block, fp8-channel or mxfp4", o->quantize);
        return -EINVAL;
    }
    if (block < 1 || block > 65536) {
        errf(err, "--quant-block %d: expected 1 to 65536", block);
        return -EINVAL;
    }
    memset(stats, 0, sizeof *stats);
    if ((rc = gen_config_load(o->config, &c, &from_file, err)))
        return rc;
    snprintf(label, sizeof label, from_file ? "%s" : "preset %s", o->config);
    if ((o->dtype && (rc = gen_config_set_dtype(c, o->dtype, err))) ||
        (rc = gen_config_parse(c, label, &cfg, err)))
        goto out;
    if (q == GEN_QUANT_MXFP4 && (cfg.arch != ARCH_GPT_OSS || cfg.hidden_size % MXFP4_BLOCK ||
                                 cfg.moe_intermediate_size % MXFP4_BLOCK)) {
        errf(err, "--quantize mxfp4: %s: gpt-oss configs only, with hidden_size and "
             "intermediate_size multiples of %d (MXFP4 blocks)", label, MXFP4_BLOCK);
        rc = -EINVAL;
        goto out;
    }
    rc = o->tokenizer_dir ? gen_tokenizer_copy(&tok, o->tokenizer_dir, err)
                          : gen_tokenizer_build(&tok, cfg.vocab_size, cfg.max_position_embeddings,
                                                o->seed, err);
    if (rc || (rc = gen_config_fit_tokenizer(c, &tok, from_file, &cfg, label, err)) ||
        (q != GEN_QUANT_NONE && (rc = gen_config_set_quant(c, q, block)) &&
         (errf(err, "out of memory"), 1)) ||
        (rc = gen_config_parse(c, label, &cfg, err)))
        goto out;
    text = cJSON_Print(c);
    gen = gen_config_generation(&tok);
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

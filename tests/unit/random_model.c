/* random_model.c — builds random small models in memory (see random_model.h). Weights
 * are scaled so that activations stay of order one through a few layers: linear weights
 * uniform in ±1.5/sqrt(in), norms 1 ± 0.2, embeddings ±1. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/rng.h"
#include "tests/unit/random_model.h"

double test_rand(uint64_t *state)
{
    return (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

float test_randf(uint64_t *state, float lo, float hi)
{
    return lo + (hi - lo) * (float)test_rand(state);
}

int test_randint(uint64_t *state, int n)
{
    return (int)(test_rand(state) * n);
}

static uint16_t to_bf16(float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1);   /* round to nearest even; test values are finite */
    return (uint16_t)(u >> 16);
}

static float from_f16(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v = e ? ldexpf(1.0f + m / 1024.0f, e - 15) : ldexpf(m / 1024.0f, -14);

    return h & 0x8000 ? -v : v;
}

double fixture_tensor_at(const struct tensor_ref *t, size_t i)
{
    if (t->dtype == DT_F32)
        return ((const float *)t->data)[i];
    if (t->dtype == DT_F16)
        return from_f16(((const uint16_t *)t->data)[i]);
    uint32_t u = (uint32_t)((const uint16_t *)t->data)[i] << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* A tensor of `rows` x `cols` (cols 0: 1-D) with values center + U(-scale, scale). */
static int make_tensor(struct random_model *fx, struct tensor_ref *t, const char *name,
                       int rows, int cols, float center, float scale, enum dtype dt,
                       uint64_t *rng)
{
    size_t n = (size_t)rows * (cols ? cols : 1), es = dt == DT_F32 ? 4 : 2;
    void *data = malloc(n * es), **blobs;

    blobs = realloc(fx->blobs, (fx->num_blobs + 1) * sizeof *blobs);
    if (!data || !blobs) {
        free(data);
        if (blobs)
            fx->blobs = blobs;
        return -ENOMEM;
    }
    fx->blobs = blobs;
    fx->blobs[fx->num_blobs++] = data;
    for (size_t i = 0; i < n; i++) {
        float v = center + test_randf(rng, -scale, scale);
        if (dt == DT_F32)
            ((float *)data)[i] = v;
        else if (dt == DT_BF16)
            ((uint16_t *)data)[i] = to_bf16(v);
        else
            ((uint16_t *)data)[i] = f32_to_f16(v);
    }
    *t = (struct tensor_ref){ .name = name, .data = data, .dtype = dt, .ndim = cols ? 2 : 1,
                              .shape = { rows, cols }, .nbytes = n * es };
    return 0;
}

static const char *arch_names[] = {
    [ARCH_LLAMA] = "LlamaForCausalLM", [ARCH_QWEN2] = "Qwen2ForCausalLM",
    [ARCH_QWEN3] = "Qwen3ForCausalLM", [ARCH_MISTRAL] = "MistralForCausalLM",
    [ARCH_GEMMA2] = "Gemma2ForCausalLM", [ARCH_GEMMA3] = "Gemma3ForCausalLM",
    [ARCH_MIXTRAL] = "MixtralForCausalLM", [ARCH_QWEN3_MOE] = "Qwen3MoeForCausalLM",
    [ARCH_PHI3] = "Phi3ForCausalLM", [ARCH_QWEN2_MOE] = "Qwen2MoeForCausalLM",
    [ARCH_GPT_OSS] = "GptOssForCausalLM",
};

static bool gemma(const struct fixture_spec *s)
{
    return s->arch == ARCH_GEMMA2 || s->arch == ARCH_GEMMA3;
}

/* A MoE layer's router and experts. The router's weights are larger than a projection's
 * so that the softmax is far from uniform and the top-k choice matters. */
static int make_experts(struct random_model *fx, struct layer_tensors *t,
                        const struct fixture_spec *s, uint64_t *rng)
{
    int h = s->hidden, f = s->moe_ffn;
    float ah = 1.5f / sqrtf((float)h), af = 1.5f / sqrtf((float)f);

    if (!(t->experts = calloc(s->experts, sizeof *t->experts)) ||
        make_tensor(fx, &t->router, "gate", s->experts, h, 0.0f, 6.0f / sqrtf((float)h),
                    s->dtype, rng))
        return -ENOMEM;
    if (s->arch == ARCH_GPT_OSS) {   /* input-major, [gate0 up0 gate1 up1 ...], biased */
        if (make_tensor(fx, &t->router_bias, "router.bias", s->experts, 0, 0.0f, 1.0f, s->dtype, rng))
            return -ENOMEM;
        for (int e = 0; e < s->experts; e++)
            if (make_tensor(fx, &t->experts[e].gate_up_t, "gate_up_proj", h, 2 * f, 0.0f, ah,
                            s->dtype, rng) ||
                make_tensor(fx, &t->experts[e].gate_up_bias, "gate_up_proj_bias", 2 * f, 0,
                            0.0f, 0.5f, s->dtype, rng) ||
                make_tensor(fx, &t->experts[e].down_t, "down_proj", f, h, 0.0f, af, s->dtype, rng) ||
                make_tensor(fx, &t->experts[e].down_bias, "down_proj_bias", h, 0, 0.0f, 0.3f,
                            s->dtype, rng))
                return -ENOMEM;
        return 0;
    }
    for (int e = 0; e < s->experts; e++)
        if (make_tensor(fx, &t->experts[e].gate, "w1", f, h, 0.0f, ah, s->dtype, rng) ||
            make_tensor(fx, &t->experts[e].up, "w3", f, h, 0.0f, ah, s->dtype, rng) ||
            make_tensor(fx, &t->experts[e].down, "w2", h, f, 0.0f, af, s->dtype, rng))
            return -ENOMEM;
    if (s->shared_ffn &&
        (make_tensor(fx, &t->shared.gate, "shared_expert.gate_proj", s->shared_ffn, h, 0.0f, ah,
                     s->dtype, rng) ||
         make_tensor(fx, &t->shared.up, "shared_expert.up_proj", s->shared_ffn, h, 0.0f, ah,
                     s->dtype, rng) ||
         make_tensor(fx, &t->shared.down, "shared_expert.down_proj", h, s->shared_ffn, 0.0f,
                     1.5f / sqrtf((float)s->shared_ffn), s->dtype, rng) ||
         make_tensor(fx, &t->shared_gate, "shared_expert_gate", 1, h, 0.0f, 3.0f / sqrtf((float)h),
                     s->dtype, rng)))
        return -ENOMEM;
    return 0;
}

static int make_layer(struct random_model *fx, struct layer_tensors *t, const struct fixture_spec *s,
                      uint64_t *rng, bool moe)
{
    int H = s->heads * s->head_dim, KV = s->kv_heads * s->head_dim, h = s->hidden, f = s->ffn;
    float ah = 1.5f / sqrtf((float)h), aq = 1.5f / sqrtf((float)H), af = 1.5f / sqrtf((float)f);
    enum dtype d = s->dtype;
    float nc = gemma(s) ? 0.0f : 1.0f;   /* Gemma's norms multiply by 1 + w */

    if (moe && make_experts(fx, t, s, rng))
        return -ENOMEM;
    if (s->arch == ARCH_PHI3)   /* fused as published: [q; k; v] and [gate; up] */
        return make_tensor(fx, &t->input_norm, "input_layernorm", h, 0, nc, 0.2f, d, rng) ||
               make_tensor(fx, &t->qkv, "qkv_proj", H + 2 * KV, h, 0.0f, ah, d, rng) ||
               make_tensor(fx, &t->o, "o_proj", h, H, 0.0f, aq, d, rng) ||
               make_tensor(fx, &t->post_norm, "post_attention_layernorm", h, 0, nc, 0.2f, d, rng) ||
               make_tensor(fx, &t->gate_up, "gate_up_proj", 2 * f, h, 0.0f, ah, d, rng) ||
               make_tensor(fx, &t->down, "down_proj", h, f, 0.0f, af, d, rng) ? -ENOMEM : 0;
    if (make_tensor(fx, &t->input_norm, "input_layernorm", h, 0, nc, 0.2f, d, rng) ||
        make_tensor(fx, &t->q, "q_proj", H, h, 0.0f, ah, d, rng) ||
        make_tensor(fx, &t->k, "k_proj", KV, h, 0.0f, ah, d, rng) ||
        make_tensor(fx, &t->v, "v_proj", KV, h, 0.0f, ah, d, rng) ||
        make_tensor(fx, &t->o, "o_proj", h, H, 0.0f, aq, d, rng) ||
        make_tensor(fx, &t->post_norm, "post_attention_layernorm", h, 0, nc, 0.2f, d, rng))
        return -ENOMEM;
    if (!moe &&
        (make_tensor(fx, &t->gate, "gate_proj", f, h, 0.0f, ah, d, rng) ||
         make_tensor(fx, &t->up, "up_proj", f, h, 0.0f, ah, d, rng) ||
         make_tensor(fx, &t->down, "down_proj", h, f, 0.0f, af, d, rng)))
        return -ENOMEM;
    /* gpt-oss: an o_proj bias and sinks of either sign around the logits' size */
    if (s->arch == ARCH_GPT_OSS &&
        (make_tensor(fx, &t->o_bias, "o_proj.bias", h, 0, 0.0f, 0.3f, d, rng) ||
         make_tensor(fx, &t->sinks, "sinks", s->heads, 0, 0.0f, 2.0f, d, rng)))
        return -ENOMEM;
    if ((s->bias || s->arch == ARCH_GPT_OSS) &&
        (make_tensor(fx, &t->q_bias, "q_proj.bias", H, 0, 0.0f, 0.3f, d, rng) ||
         make_tensor(fx, &t->k_bias, "k_proj.bias", KV, 0, 0.0f, 0.3f, d, rng) ||
         make_tensor(fx, &t->v_bias, "v_proj.bias", KV, 0, 0.0f, 0.3f, d, rng)))
        return -ENOMEM;
    if ((s->qk_norm || s->arch == ARCH_GEMMA3) &&
        (make_tensor(fx, &t->q_norm, "q_norm", s->head_dim, 0, nc, 0.2f, d, rng) ||
         make_tensor(fx, &t->k_norm, "k_norm", s->head_dim, 0, nc, 0.2f, d, rng)))
        return -ENOMEM;
    if (gemma(s) &&
        (make_tensor(fx, &t->pre_ff_norm, "pre_feedforward_layernorm", h, 0, nc, 0.2f, d, rng) ||
         make_tensor(fx, &t->post_ff_norm, "post_feedforward_layernorm", h, 0, nc, 0.2f, d, rng)))
        return -ENOMEM;
    return 0;
}

int random_model_create(struct random_model *fx, const struct fixture_spec *s)
{
    struct model_config *c = &fx->m.cfg;
    uint64_t rng = s->seed;

    memset(fx, 0, sizeof *fx);
    c->arch = s->arch;
    snprintf(c->arch_name, sizeof c->arch_name, "%s", arch_names[s->arch]);
    c->vocab_size = s->vocab;
    c->hidden_size = s->hidden;
    c->intermediate_size = s->ffn;
    c->num_layers = s->layers;
    c->num_heads = s->heads;
    c->num_kv_heads = s->kv_heads;
    c->head_dim = s->head_dim;
    c->rotary_dim = s->rotary_dim ? s->rotary_dim : s->head_dim;
    c->max_position_embeddings = 4096;
    c->rms_norm_eps = 1e-5f;
    c->rope_theta = s->rope_theta > 0 ? s->rope_theta : 10000.0;
    c->rope_scaling = s->rope;
    c->tie_word_embeddings = s->tied;
    c->attention_bias = s->bias || s->arch == ARCH_GPT_OSS;
    c->qk_norm = s->qk_norm || s->arch == ARCH_GEMMA3;
    if (s->experts) {
        c->num_experts = s->experts;
        c->num_experts_per_tok = s->top_k;
        c->moe_intermediate_size = s->moe_ffn;
        c->norm_topk_prob = s->renormalize;
        c->shared_expert_intermediate_size = s->shared_ffn;
        for (int l = 0; l < s->layers; l++)
            c->layer_moe[l] = !(s->dense_layers >> l & 1);
    }
    if (s->arch == ARCH_GPT_OSS) {
        c->moe_act = MOE_ACT_SWIGLU_OAI;
        c->swiglu_alpha = 1.702;
        c->swiglu_limit = s->swiglu_limit > 0 ? s->swiglu_limit : 7.0;
        c->attn_sinks = true;
    }
    if (gemma(s)) {
        c->mlp_act = MLP_GELU_TANH;
        c->norm_plus_one = c->sandwich_norms = c->scale_embeddings = true;
        c->query_pre_attn_scalar = s->query_pre_attn_scalar;
        c->attn_softcap = s->attn_softcap;
        c->final_softcap = s->final_softcap;
        c->rope_local_theta = s->rope_local_theta;
    }
    for (int l = 0; l < s->layers; l++)
        c->layer_window[l] = s->windows ? s->windows[l] : 0;
    c->num_kv_groups = model_kv_groups(c, c->kv_group_window, c->layer_kv_group,
                                       MODEL_MAX_KV_GROUPS);
    if (c->num_kv_groups < 0)
        goto fail;
    c->dtype = s->dtype;
    c->bos_token_id = 1;
    c->eos_token_ids[0] = 2;
    c->num_eos_token_ids = 1;
    c->gen_temperature = c->gen_top_p = -1.0f;

    fx->m.layers = calloc(s->layers, sizeof *fx->m.layers);
    if (!fx->m.layers ||
        make_tensor(fx, &fx->m.embed, "embed_tokens", s->vocab, s->hidden, 0.0f, 1.0f, s->dtype, &rng) ||
        make_tensor(fx, &fx->m.final_norm, "norm", s->hidden, 0, gemma(s) ? 0.0f : 1.0f, 0.2f,
                    s->dtype, &rng))
        goto fail;
    if (s->tied)
        fx->m.lm_head = fx->m.embed;
    else if (make_tensor(fx, &fx->m.lm_head, "lm_head", s->vocab, s->hidden, 0.0f,
                         3.0f / sqrtf((float)s->hidden), s->dtype, &rng))
        goto fail;
    for (int l = 0; l < s->layers; l++)
        if (make_layer(fx, &fx->m.layers[l], s, &rng, c->layer_moe[l]))
            goto fail;
    return 0;
fail:
    random_model_destroy(fx);
    return -ENOMEM;
}

void random_model_destroy(struct random_model *fx)
{
    for (int l = 0; fx->m.layers && l < fx->m.cfg.num_layers; l++)
        free(fx->m.layers[l].experts);
    for (int i = 0; i < fx->num_blobs; i++)
        free(fx->blobs[i]);
    free(fx->blobs);
    free(fx->m.layers);
    memset(fx, 0, sizeof *fx);
}

struct fixture_spec fixture_gpt_oss_spec(uint64_t seed)
{
    static const int windows[4] = { 6, 0, 6, 0 };

    return (struct fixture_spec){ .arch = ARCH_GPT_OSS, .vocab = 96, .hidden = 64, .ffn = 64,
                                  .layers = 4, .heads = 4, .kv_heads = 2, .head_dim = 16,
                                  .dtype = DT_BF16, .windows = windows, .experts = 4,
                                  .top_k = 2, .moe_ffn = 32, .renormalize = true,
                                  .rope_theta = 10000.0,
                                  /* attention_factor = 0.1 ln(8) + 1 */
                                  .rope = { .type = ROPE_YARN, .factor = 8.0, .beta_fast = 32.0,
                                            .beta_slow = 1.0,
                                            .original_max_position_embeddings = 256,
                                            .attention_factor = 1.2079441541679836 },
                                  .swiglu_limit = 1.0, .seed = seed };
}

/* random_model.h — random small models built in memory for the engine's tests: a struct
 * model as model_open() would give, for any shape the runner supports (GQA, tied
 * embeddings, head_dim != hidden / heads, Qwen2 biases, Qwen3 q/k norm, sliding-window
 * layers, rope scaling, Gemma 2/3's norms, GeGLU, soft-caps and local RoPE, MoE layers,
 * gpt-oss's sinks, biases and interleaved experts) with
 * bf16, f16 or
 * f32 weights. Also the tests' seeded random numbers. */
#ifndef OSPREY_TEST_MODEL_FIXTURE_H
#define OSPREY_TEST_MODEL_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/model/model.h"

struct fixture_spec {
    enum model_arch arch;      /* sets arch_name; biases and q/k norm follow the flags below */
    int vocab, hidden, ffn, layers, heads, kv_heads, head_dim;
    bool tied;                 /* lm_head is embed */
    bool bias;                 /* q/k/v biases (Qwen2) */
    bool qk_norm;              /* per-head q/k RMSNorm (Qwen3) */
    enum dtype dtype;          /* of every tensor */
    const int *windows;        /* [layers] sliding window per layer (0 = full), or NULL */
    struct rope_scaling rope;  /* zeroed = ROPE_DEFAULT */
    double rope_theta;         /* 0 = 10000 */
    /* Gemma (arch ARCH_GEMMA2 / ARCH_GEMMA3): (1 + w) and sandwich norms, scaled embeddings and
     * GeGLU always; Gemma 3 adds q/k norm. These are its optional knobs (0 = off / default). */
    double query_pre_attn_scalar, attn_softcap, final_softcap, rope_local_theta;
    /* MoE (arch ARCH_MIXTRAL / ARCH_QWEN3_MOE): experts of moe_ffn, top-k routing */
    int experts, top_k, moe_ffn;
    bool renormalize;          /* norm_topk_prob */
    int shared_ffn;            /* Qwen2-MoE's sigmoid-gated shared expert; 0 = none */
    unsigned dense_layers;     /* bit l: layer l keeps a dense MLP (mlp_only_layers) */
    /* Phi-3 (arch ARCH_PHI3): q/k/v and gate/up stored fused as published; rotary_dim < head_dim
     * for a partial rotary factor (0 = head_dim); rope may be ROPE_LONGROPE */
    int rotary_dim;
    /* gpt-oss (arch ARCH_GPT_OSS): q/k/v/o biases, sinks, router and expert biases and the
     * experts input-major with gate and up interleaved, always; rope may be ROPE_YARN. The
     * clamp of its SwiGLU (0 = GptOssConfig's 7): small values make the clamp bite. */
    double swiglu_limit;
    uint64_t seed;
};

struct random_model {
    struct model m;
    void **blobs;              /* every tensor's data, freed by random_model_destroy */
    int num_blobs;
};

/* Returns 0 or -ENOMEM. */
int random_model_create(struct random_model *fx, const struct fixture_spec *s);

/* The tests' small gpt-oss: 4 layers alternating a 6-token window and full attention, 4
 * heads of 16 over 2 KV heads, 4 experts top-2 of ffn 32, YaRN factor 8 over 256 positions,
 * a SwiGLU clamp of 1 (so that it bites), bf16. */
struct fixture_spec fixture_gpt_oss_spec(uint64_t seed);
void random_model_destroy(struct random_model *fx);

/* Element i of a tensor as a double (bf16, f16 or f32), decoded here independently. */
double fixture_tensor_at(const struct tensor_ref *t, size_t i);

/* Seeded random numbers (splitmix64): uniform in [0, 1), in [lo, hi), and an int in [0, n). */
double test_rand(uint64_t *state);
float test_randf(uint64_t *state, float lo, float hi);
int test_randint(uint64_t *state, int n);

#endif

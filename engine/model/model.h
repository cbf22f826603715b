/* model.h — a Hugging Face model folder in memory: the parsed config.json (plus
 * generation_config.json) and the tensors of the safetensors files, mmapped and named by
 * role. Nothing here is copied or converted: backends upload what they need
 * (engine/weights.c) and the folder stays mapped until model_close(). */
#ifndef OSPREY_MODEL_H
#define OSPREY_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/base/util.h"  /* enum dtype */

#define MODEL_MAX_LAYERS 256
#define MODEL_MAX_EOS    8
#define MODEL_MAX_KV_GROUPS 4   /* == KV_MAX_GROUPS (scheduler/batch.h), checked in engine/runner.c */

enum model_arch { ARCH_LLAMA, ARCH_QWEN2, ARCH_QWEN3, ARCH_MISTRAL, ARCH_GEMMA2, ARCH_GEMMA3,
                  ARCH_MIXTRAL, ARCH_QWEN3_MOE, ARCH_PHI3, ARCH_QWEN2_MOE, ARCH_GPT_OSS };
/* the gate's activation of the gated MLP: SwiGLU (Llama) or GeGLU with tanh GELU (Gemma) */
enum mlp_act { MLP_SILU, MLP_GELU_TANH };
enum rope_type { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3, ROPE_LONGROPE, ROPE_YARN };
/* the experts' activation: SwiGLU (Mixtral, Qwen), or gpt-oss's clamped one:
 * gate = min(gate, limit), up = clamp(up, ±limit), (up + 1) * gate * sigmoid(alpha * gate) */
enum moe_act { MOE_ACT_SILU, MOE_ACT_SWIGLU_OAI };

#define ROPE_MAX_FACTORS 256   /* longrope factors: rotary_dim / 2 of them */

/* config.json's quantization_config, in vLLM's terms. A quantized model's linear weights
 * (q/k/v/o, gate/up/down) are F8_E4M3 with a scale tensor beside each; embeddings, norms and
 * the LM head stay in a float dtype (a linear weight stored in a float dtype is used as it
 * is: compressed-tensors' "ignore" list). Weights are w = fp8 * scale in every scheme. */
enum quant_method {
    QUANT_NONE,
    QUANT_FP8_BLOCK,    /* "fp8" + weight_block_size [b0, b1]: weight_scale_inv [ceil(out/b0), ceil(in/b1)] */
    QUANT_FP8_TENSOR,   /* "fp8" without a block size, or compressed-tensors "tensor": one weight_scale */
    QUANT_FP8_CHANNEL,  /* compressed-tensors "channel": weight_scale [out, 1] */
    QUANT_MXFP4,        /* "mxfp4" (gpt-oss): experts' *_blocks / *_scales, dequantized at load
                         * (engine/model/mxfp4.h); every other weight float */
};

struct rope_scaling {
    enum rope_type type;
    double factor;                        /* linear, llama3, yarn; longrope: max_pos / original */
    double low_freq_factor, high_freq_factor;  /* llama3 */
    int original_max_position_embeddings; /* llama3, longrope, yarn */
    /* yarn (gpt-oss): frequencies blended between interpolated (/ factor) and kept along a
     * linear ramp over the dims whose rotations within original_max_position_embeddings fall
     * between beta_fast and beta_slow; truncate rounds the ramp's ends to whole dims
     * (transformers' default when the key is absent). cos and sin times attention_factor. */
    double beta_fast, beta_slow;
    bool truncate;
    /* longrope (Phi-3's "longrope" / "su"): per-frequency divisors, short ones within
     * original_max_position_embeddings, long ones beyond; cos and sin times attention_factor */
    float short_factor[ROPE_MAX_FACTORS], long_factor[ROPE_MAX_FACTORS];
    int num_factors;
    double attention_factor;              /* longrope, yarn (0.1 ln(factor) + 1 unless given) */
    bool use_long_factor;                 /* set by the runner: the engine serves contexts
                                           * beyond original_max_position_embeddings */
};

struct model_config {
    enum model_arch arch;
    char arch_name[64];        /* "LlamaForCausalLM", as written in config.json */
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int num_layers;
    int num_heads;             /* query heads */
    int num_kv_heads;          /* divides num_heads (GQA) */
    int head_dim;              /* config's head_dim, else hidden_size / num_heads */
    int rotary_dim;            /* head_dim × partial_rotary_factor: the dims RoPE turns (even) */
    int max_position_embeddings;
    float rms_norm_eps;
    double rope_theta;
    struct rope_scaling rope_scaling;
    bool tie_word_embeddings;  /* lm_head is embed_tokens */
    bool attention_bias;       /* q/k/v projections have biases (Qwen2) */
    bool qk_norm;              /* per-head RMSNorm of q and k before RoPE (Qwen3) */
    int layer_window[MODEL_MAX_LAYERS]; /* sliding window in tokens per layer, 0 = full attention */
    /* Gemma's per-layer choices; zero (off) for the Llama family */
    enum mlp_act mlp_act;      /* hidden_activation: silu, or gelu_pytorch_tanh (Gemma) */
    bool norm_plus_one;        /* every RMSNorm multiplies by (1 + weight) (Gemma) */
    bool sandwich_norms;       /* post-attention, pre- and post-feedforward norms (Gemma) */
    bool scale_embeddings;     /* embeddings times sqrt(hidden_size) in the model dtype (Gemma) */
    double query_pre_attn_scalar; /* softmax scale is its ^-0.5; 0 = head_dim (Llama) */
    double attn_softcap;       /* attn_logit_softcapping: tanh cap of attention logits, 0 = off */
    double final_softcap;      /* final_logit_softcapping: tanh cap of the LM head's logits, 0 = off */
    double rope_local_theta;   /* Gemma 3: rope_local_base_freq of sliding layers (no scaling);
                                * 0 = every layer uses rope_theta and rope_scaling */
    bool multimodal;           /* Gemma3ForConditionalGeneration: the config is text_config, the
                                * tensors sit under language_model., the vision tower is ignored */
    /* Mixture of experts (Mixtral, Qwen3-MoE); num_experts 0 = every layer dense */
    int num_experts;           /* num_local_experts (Mixtral) / num_experts (Qwen3-MoE) */
    int num_experts_per_tok;   /* top-k of the softmax routing */
    int moe_intermediate_size; /* ffn of one expert (Mixtral: intermediate_size) */
    bool norm_topk_prob;       /* the k weights renormalized to sum 1 (always for Mixtral) */
    int shared_expert_intermediate_size; /* Qwen2-MoE's shared expert (sigmoid-gated); 0 = none */
    bool layer_moe[MODEL_MAX_LAYERS]; /* the layer's MLP is a MoE block (decoder_sparse_step,
                                       * mlp_only_layers); else dense with intermediate_size */
    /* gpt-oss: router and expert biases, the clamped SwiGLU, o_proj bias, attention sinks */
    enum moe_act moe_act;
    double swiglu_alpha, swiglu_limit; /* MOE_ACT_SWIGLU_OAI: 1.702 and 7.0 by default */
    bool attn_sinks;           /* self_attn.sinks [num_heads]: one more logit per head */
    /* KV-cache groups (model_kv_groups), derived from layer_window once, when the config is
     * read: the engine, the runner, the backend's staging and the scheduler all read these. */
    int num_kv_groups;
    int kv_group_window[MODEL_MAX_KV_GROUPS];   /* 0 = full attention, else the window */
    int layer_kv_group[MODEL_MAX_LAYERS];       /* the group of each layer */
    enum dtype dtype;          /* torch_dtype / dtype: what the weights were trained in */
    enum quant_method quant;   /* QUANT_NONE without quantization_config */
    int quant_block[2];        /* QUANT_FP8_BLOCK: weight_block_size (rows, columns) */
    bool quant_static_input;   /* activation_scheme "static" / input_activations.dynamic false:
                                * every F8_E4M3 linear weight has a per-tensor input_scale */
    int bos_token_id;          /* -1 when absent */
    int eos_token_ids[MODEL_MAX_EOS];   /* config.json and generation_config.json, merged */
    int num_eos_token_ids;
    /* generation_config.json defaults for sampling; < 0 (or 0 for top_k) when absent */
    float gen_temperature, gen_top_p;
    int gen_top_k;
};

/* One tensor as stored: row-major, `data` points into a mapping owned by the model. */
struct tensor_ref {
    const char *name;          /* borrowed: points into the safetensors header copy */
    const void *data;
    enum dtype dtype;
    int ndim;
    int64_t shape[4];
    size_t nbytes;
    /* F8_E4M3 weights only (else NULL): element [r][c] is fp8 times scale element
     * (r / scale_block[0]) * ceil(cols / scale_block[1]) + c / scale_block[1]. The scale
     * tensor is F32, BF16 or F16 (model_scale_at reads it). */
    const struct tensor_ref *scale;
    int64_t scale_block[2];
    /* A static activation scheme's per-tensor input_scale (one positive value), else NULL:
     * the cuda backend quantizes the layer's activations with it; the cpu (W8A16) ignores it */
    const struct tensor_ref *input_scale;
};

/* One expert of a MoE layer: a SwiGLU MLP of moe_intermediate_size. Published either one
 * tensor per expert (Mixtral's w1/w3/w2, Qwen3-MoE's gate_proj/up_proj/down_proj) or fused
 * over experts (transformers 5: experts.gate_up_proj [E, 2 ffn, hidden], experts.down_proj
 * [E, hidden, ffn]); either way each expert's slices are bound as 2-D tensors. */
struct expert_tensors {
    struct tensor_ref gate, up, down;             /* [ffn, hidden] x2, [hidden, ffn] */
    /* gpt-oss publishes its experts input-major with gate and up interleaved:
     * gate_up_t [hidden, 2 ffn] (column 2i is gate i, 2i + 1 is up i) and down_t [ffn, hidden];
     * then gate, up and down are empty and engine/weights.c lays them out as the others' at
     * upload. Its biases: gate_up_bias [2 ffn] (interleaved the same way), down_bias [hidden]. */
    struct tensor_ref gate_up_t, down_t, gate_up_bias, down_bias;
};

/* Tensors of one decoder layer. Optional ones have data == NULL (biases without
 * attention_bias, q_norm/k_norm without qk_norm). Linear weights are [out, in]. */
struct layer_tensors {
    struct tensor_ref input_norm;                 /* [hidden] */
    struct tensor_ref q, k, v, o;                 /* [H*D, hidden] [KV*D, hidden] x2, [hidden, H*D] */
    struct tensor_ref qkv;                        /* [(H+2KV)*D, hidden] fused as published (Phi-3),
                                                   * then q, k, v are empty */
    struct tensor_ref q_bias, k_bias, v_bias;     /* [H*D] [KV*D] [KV*D] */
    struct tensor_ref q_norm, k_norm;             /* [D] */
    struct tensor_ref post_norm;                  /* [hidden] post_attention_layernorm */
    struct tensor_ref pre_ff_norm, post_ff_norm;  /* [hidden] Gemma's pre/post_feedforward_layernorm */
    struct tensor_ref gate, up, down;             /* [ffn, hidden] x2, [hidden, ffn]; dense layers */
    struct tensor_ref gate_up;                    /* [2 ffn, hidden] fused as published (Phi-3),
                                                   * then gate and up are empty */
    struct tensor_ref o_bias;                     /* [hidden] (gpt-oss) */
    struct tensor_ref sinks;                      /* [H] attention sinks (gpt-oss) */
    struct tensor_ref router;                     /* [num_experts, hidden]; MoE layers */
    struct tensor_ref router_bias;                /* [num_experts] (gpt-oss) */
    struct expert_tensors *experts;               /* [num_experts] or NULL (dense); owned */
    struct expert_tensors shared;                 /* Qwen2-MoE: [shared_ffn, hidden] x2, [hidden, shared_ffn] */
    struct tensor_ref shared_gate;                /* Qwen2-MoE: [1, hidden] */
    struct tensor_ref k_scale, v_scale;           /* fp8 KV-cache scales, one value each, optional */
    void *mxfp4_experts;   /* MXFP4 checkpoints: the layer's experts dequantized (gate_up then
                            * down, published bf16 layout), what experts[] point into; owned */
};

struct st_set;  /* the mapped safetensors files (engine/model/safetensors.h) */
struct model_dummy;   /* --load-format dummy's random pools (engine/model/model_dummy.c) */

struct model {
    struct model_config cfg;
    char dir[4096];
    struct st_set *st;
    struct tensor_ref embed;                      /* [vocab, hidden] */
    struct tensor_ref final_norm;                 /* [hidden] */
    struct tensor_ref lm_head;                    /* [vocab, hidden]; == embed when tied */
    struct layer_tensors *layers;                 /* [num_layers] */
    struct model_dummy *dummy;                    /* --load-format dummy's pools (st NULL) */
    char prefix[32];     /* of the decoder's tensors: "model." or, inside a Gemma 3
                          * multimodal folder, "language_model.model." */
};

/* Parses config.json text (and generation_config.json text, or NULL) into cfg. `path` names
 * the file in messages. Returns 0 or -EINVAL with "<path>: <field>: <problem>" in err. */
int model_config_parse(struct model_config *cfg, const char *json, size_t len,
                       const char *gen_json, size_t gen_len, const char *path, char *err);

/* Opens a model folder: config.json, generation_config.json when present, model.safetensors
 * or model.safetensors.index.json with its shards. Every tensor the architecture needs is
 * checked by name, dtype and shape. Returns 0, or a negative errno with a message naming
 * the file and tensor (and both shapes on a mismatch). On failure m needs no model_close. */
int model_open(struct model *m, const char *dir, char *err);

/* --load-format dummy: config.json (and generation_config.json) as model_open reads them,
 * but no safetensors: every tensor is random (seeded; engine/model/model_dummy.c), in the
 * config's float dtype; with fp8 (--quantization fp8) the linear layers' weights come as
 * F8_E4M3 with one scale a row, as quantizing at load would make them (MoE experts and
 * routers stay float). Tensors share the pools' bytes on the host (model_dummy_bytes); a
 * quantized config is refused in one line. */
int model_open_dummy(struct model *m, const char *dir, uint64_t seed, bool fp8, char *err);
/* Host bytes of a dummy model's random pools (0 for a model read from files). */
size_t model_dummy_bytes(const struct model *m);
void model_close(struct model *m);

const char *model_arch_name(enum model_arch a);
/* "none", "fp8 block-wise", "fp8 per-tensor", "fp8 per-channel" */
const char *model_quant_name(enum quant_method q);

/* The checkpoint's linear weights are F8_E4M3 (its quantization_config is an fp8 one):
 * MXFP4's experts are float once loaded, so an mxfp4 config is not. */
static inline bool model_fp8_weights(const struct model_config *c)
{
    return c->quant != QUANT_NONE && c->quant != QUANT_MXFP4;
}

/* Element i of a scale tensor (F32, BF16 or F16) as f32. */
float model_scale_at(const struct tensor_ref *scale, size_t i);

/* KV-cache groups (DESIGN.md): layers with the same attention kind share block tables and
 * slot mappings. Fills group_window[g] (0 = full attention, else the window in tokens) and
 * layer_group[l] for every layer; full attention is group 0 when present, the others follow
 * in order of first appearance. Returns the number of groups, or -EINVAL when the model
 * needs more than max_groups. model_config_parse calls it once into the config's
 * num_kv_groups, kv_group_window and layer_kv_group; everyone else reads those. */
int model_kv_groups(const struct model_config *cfg, int *group_window, int *layer_group,
                    int max_groups);

#endif

/* backend.h — the op vtable that the layer loop (engine/forward.c) runs on, and the device
 * view of a step. Two implementations: cpu (engine/cpu/, the numerical reference: f32
 * activations, an f32, bf16 or fp8 KV cache, bf16/f32/fp8 weights) and cuda (engine/cuda/ +
 * kernels/: bf16 activations, a bf16 or fp8 cache, cuBLAS; fp8 weights through cuBLASLt).
 * Every pointer an op takes is the backend's device memory (host memory on cpu); ops are
 * asynchronous on the backend's one stream and capturable in a CUDA graph: none allocates,
 * none synchronizes with the host. Every op returns 0 or a negative errno (-EIO for a
 * device error, which makes the engine dead).
 *
 * The KV cache update and the attention are separate ops: attention never writes the
 * cache, every layer calls cache_update (or the optional rope_cache_update) itself. There
 * is no flag for an attention that writes the cache too: no backend has one, and a flag
 * no backend sets would be a path no test runs. */
#ifndef OSPREY_BACKEND_H
#define OSPREY_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/model/model.h"     /* struct tensor_ref, enum dtype */
#include "engine/sampler.h"   /* struct sample_row, struct sample_result */
#include "scheduler/batch.h"  /* struct step_batch, KV_MAX_GROUPS */

struct backend;

/* A weight on the device: [rows, cols] row-major (linear layers: rows = out features).
 * F8_E4M3 weights carry f32 scales: w[r][c] = fp8[r][c] *
 * scale[(r / scale_row_block) * scale_cols + c / scale_block], where a scale_row_block of 0
 * means 1 (the cpu backend expands every row's scales; cuda keeps 128x128 blocks as
 * published, see engine/cuda/cuda_fp8_gemm.c). */
struct bk_weight {
    void *data;
    enum dtype dtype;
    int rows, cols;
    const float *scale;        /* [rows / scale_row_block, scale_cols] for F8_E4M3, else NULL */
    int scale_cols, scale_block;
    int scale_row_block;       /* rows sharing a scale row; 0 = 1 */
    const float *input_scale;  /* cuda, F8_E4M3: the static per-tensor activation scale (one
                                * f32 in device memory), NULL = dynamic per token */
};

/* The step batch as ops see it: counts include padding; pointers are device copies that the
 * backend keeps at fixed addresses (graphs replay against them): addresses that depend on
 * the padded counts alone, and those of input_ids, positions and slot_mapping on
 * num_tokens (and num_kv_groups) alone, since a piecewise graph reads only these while the
 * requests and sampled rows of the steps it serves vary. */
struct bk_batch {
    int num_reqs, num_tokens, num_sample;   /* padded counts */
    int max_query_len, max_seq_len;         /* upper bounds for dispatch */
    int num_kv_groups, max_blocks_per_req;
    const int32_t *input_ids;               /* [num_tokens] */
    const int32_t *positions;               /* [num_tokens] */
    const int32_t *query_start_loc;         /* [num_reqs + 1] */
    const int32_t *seq_lens;                /* [num_reqs] */
    const int32_t *logits_indices;          /* [num_sample] */
    const int32_t *block_table[KV_MAX_GROUPS];   /* [num_reqs, max_blocks_per_req] */
    const int64_t *slot_mapping[KV_MAX_GROUPS];  /* [num_tokens], KV_PADDING_SLOT = -1 */
};

/* Paged cache of one layer, for K and for V alike: [num_blocks, block_size, num_kv_heads,
 * head_dim]; slot s is block s / block_size, row s % block_size. Elements are `dtype`:
 * DT_F32 (a zeroed layout) means the backend's activation dtype; the cpu backend also holds
 * BF16 and F8_E4M3, the latter as x / k_scale (or v_scale) written and fp8 * scale read
 * (vLLM's per-tensor kv-cache scales, one pair per layer). */
struct cache_layout {
    int num_blocks, block_size, num_kv_heads, head_dim;
    enum dtype dtype;
    float k_scale, v_scale;    /* F8_E4M3 only, > 0 */
};

struct rope_params {
    int num_heads, num_kv_heads, head_dim;
    int stride;                /* elements between consecutive tokens' rows of q and of k */
    const float *inv_freq;     /* [rotary_dim / 2] device, rope scaling already applied */
    int rotary_dim;            /* the first rotary_dim dims of a head turn (pairs i, i +
                                * rotary_dim/2), the rest pass; == head_dim but for Phi-3's
                                * partial_rotary_factor. Needs backend_ops.rope_ext when less. */
    float mscale;              /* cos and sin times this (longrope's or yarn's attention_factor);
                                * 1 = none.
                                * Needs backend_ops.rope_ext when not 1. */
};

struct attn_params {
    int num_heads, num_kv_heads, head_dim;
    float scale;               /* softmax scale, head_dim^-0.5 for Llama */
    float softcap;             /* tanh soft-cap of the logits; 0 = off */
    int window;                /* sliding window in tokens; 0 = full causal */
    struct cache_layout cache;
    const float *sinks;        /* [num_heads] f32 device, or NULL: head h's softmax has one more
                                * logit, sinks[h], in its denominator and nothing in its sum of
                                * values (gpt-oss). Needs backend_ops.attn_sinks. */
};

/* A mixture-of-experts block (Mixtral, Qwen2-MoE, Qwen3-MoE, gpt-oss): softmax over the
 * router's logits (f32; plus its bias when given), the top_k largest, renormalized to sum 1
 * when `renormalize`, then the sum of those experts' gated MLPs (plus their biases when
 * given) weighted by them; plus, for Qwen2-MoE, a shared expert's MLP times
 * sigmoid(x · shared_gate). gpt-oss's softmax over its top-k logits is the renormalized case. */
struct moe_params {
    int num_experts, top_k;
    int hidden, ffn;           /* ffn: one expert's intermediate size */
    int shared_ffn;            /* the shared expert's, 0 = none */
    bool renormalize;          /* norm_topk_prob (always for Mixtral and gpt-oss) */
    void *work;                /* scratch of moe_work_bytes(be, max rows, p) bytes, owned by
                                * the runner */
    enum moe_act act;          /* MOE_ACT_SILU, or gpt-oss's clamped SwiGLU (needs
                                * backend_ops.moe_oai, as the biases below do) */
    float swiglu_alpha, swiglu_limit;   /* MOE_ACT_SWIGLU_OAI */
};

/* One MoE layer's weights on the device. */
struct moe_weights {
    const struct bk_weight *router;          /* [E, hidden] */
    const struct bk_weight *gate_up, *down;  /* [E] each [2 ffn, hidden] (gate rows first), [hidden, ffn] */
    const struct bk_weight *shared_gate_up, *shared_down; /* [2 shared_ffn, hidden], [hidden,
                                              * shared_ffn]; NULL without a shared expert */
    const struct bk_weight *shared_gate;     /* [1, hidden] */
    /* gpt-oss's biases, NULL where the family has none */
    const struct bk_weight *router_bias;     /* [E] */
    const struct bk_weight *gate_up_bias, *down_bias;  /* [E] each [2 ffn] (gate first), [hidden] */
    /* gpt-oss's experts as published, read in place (needs backend_ops.moe_oai_published):
     * gate_up [E] each [hidden, 2 ffn] input-major with gate i in column 2i and up i in
     * 2i + 1, its bias [2 ffn] interleaved the same way, down [E] each [ffn, hidden]
     * input-major. false: the layouts above. */
    bool oai_published;
};

struct backend_ops {
    const char *name;                       /* "cpu", "cuda" */
    enum dtype act_dtype;                   /* activations and the default KV cache: F32 (cpu),
                                             * BF16 (cuda); cache_layout.dtype may say otherwise */
    bool rope_ext;                          /* rope honours rope_params.rotary_dim < head_dim
                                             * and mscale != 1 (Phi-3); else runner_create
                                             * refuses such a model */
    bool attn_sinks;                        /* attention honours attn_params.sinks */
    bool moe_oai;                           /* moe honours moe_params.act MOE_ACT_SWIGLU_OAI and
                                             * the router and expert biases of moe_weights
                                             * (gpt-oss); without these two runner_create
                                             * refuses gpt-oss */
    bool moe_oai_published;                 /* moe reads gpt-oss's experts as published
                                             * (moe_weights.oai_published): weights.c binds
                                             * them without laying them out anew */
    bool weights_in_place;                  /* upload_weight may keep pointers into its parts'
                                             * host data (cpu), which must then outlive the
                                             * weight; false: it copies, and the parts may be
                                             * freed as soon as it returns */

    void (*destroy)(struct backend *be);

    /* Memory. alloc returns zeroed device memory or NULL (message in err). mem_info reports
     * free and total device bytes (for sizing the KV cache). */
    void *(*alloc)(struct backend *be, size_t bytes, char *err);
    void (*free)(struct backend *be, void *p);
    int (*mem_info)(struct backend *be, size_t *free_bytes, size_t *total_bytes);
    int (*upload)(struct backend *be, void *dst, const void *src, size_t bytes);   /* sync */
    int (*download)(struct backend *be, void *dst, const void *src, size_t bytes); /* sync */

    /* Uploads a weight made of `nparts` tensors stacked by rows (q,k,v → qkv; gate,up →
     * gate_up); every part has the same cols (1-D tensors: cols 1, stacked). The backend
     * picks the device dtype (cpu: bf16 or f32 as stored, f16 → f32; cuda: bf16). Whether
     * the parts' memory must outlive the weight: weights_in_place. */
    int (*upload_weight)(struct backend *be, struct bk_weight *out,
                         const struct tensor_ref *parts, int nparts, char *err);
    void (*free_weight)(struct backend *be, struct bk_weight *w);

    /* Copies a host step batch and its sampling rows ([b->num_sample]) into the backend's
     * persistent buffers (cuda: one async copy from pinned memory) and fills *dev. A row's
     * mask (sample_row.allowed) that is row i of mask_rows() is not read here: it may be
     * written until stage_masks, which hands it to the sampler. Any other mask is taken
     * now (cuda: copied into that row and uploaded with the batch). */
    int (*stage)(struct backend *be, const struct step_batch *b, const struct sample_row *rows,
                 struct bk_batch *dev);
    /* Host memory the caller writes the step's masks into, row i (of the sampled rows) at
     * i * backend_options.mask_words words, [max_reqs] rows: pinned on cuda (uploaded from
     * there), the sampler's own buffer on cpu. Fixed for the backend's life; write a row
     * only between the stage and the stage_masks of a step (or outside steps). */
    uint32_t *(*mask_rows)(struct backend *be);
    /* The masks written in the staged step's mask rows are final: make them the sampler's
     * (cuda: one async copy of the masked rows, queued after whatever was launched since
     * stage). A step whose rows point into mask_rows() calls it between stage and sample;
     * without such rows it does nothing. */
    int (*stage_masks)(struct backend *be);

    /* --- the ops; n is a number of token rows --- */
    /* x[n, hidden] = table[ids[i]] */
    int (*embedding)(struct backend *be, void *x, const int32_t *ids, const struct bk_weight *table, int n);
    /* residual == NULL: out = rmsnorm(x) * w. Else residual += x (in place), then
     * out = rmsnorm(residual) * w: the residual add fused with the norm. out may be x (each
     * row is read before it is written): Gemma's sandwich norms normalize in place. */
    int (*rmsnorm)(struct backend *be, void *out, void *residual, const void *x,
                   const struct bk_weight *w, int n, float eps);
    /* out[n, w.rows] = x[n, w.cols] · wᵀ (+ bias[w.rows] when bias != NULL) */
    int (*matmul)(struct backend *be, void *out, const void *x, const struct bk_weight *w,
                  const struct bk_weight *bias, int n);
    /* In place RMSNorm of each head_dim vector of x (row stride `stride`, `heads` heads per
     * row) times w[head_dim]: Qwen3's q/k norm. */
    int (*head_rmsnorm)(struct backend *be, void *x, int stride, int heads, int head_dim,
                        const struct bk_weight *w, int n, float eps);
    /* In place rotate-half RoPE of q[n, num_heads, head_dim] and k[n, num_kv_heads, head_dim]
     * at positions[n], angles in f32. */
    int (*rope)(struct backend *be, void *q, void *k, const int32_t *positions, int n,
                const struct rope_params *p);
    /* Kernel 1: writes K and V rows of each token i into slot slot_mapping[i] of the layer's
     * cache; a slot of KV_PADDING_SLOT writes nothing; no other slot is touched. */
    int (*cache_update)(struct backend *be, const void *k, const void *v, int kv_stride,
                        const int64_t *slot_mapping, int n, void *k_cache, void *v_cache,
                        const struct cache_layout *l);
    /* Kernel 2: out[num_tokens, num_heads * head_dim] = paged attention of q (row stride
     * q_stride) over the cache, K/V read only from the cache through the block table of
     * `group`; varlen (query_start_loc), causal within each request's new tokens, GQA,
     * optional window and soft-cap. Rows of padding requests (seq_len 0) are zeros. */
    int (*attention)(struct backend *be, void *out, const void *q, int q_stride,
                     const void *k_cache, const void *v_cache, const struct bk_batch *b,
                     int group, const struct attn_params *p);
    /* out[n, ffn] = silu(gate_up[:, :ffn]) * gate_up[:, ffn:] */
    int (*silu_mul)(struct backend *be, void *out, const void *gate_up, int n, int ffn);
    /* out[i] = x[rows[i]] for i < n; rows of width dim */
    int (*gather_rows)(struct backend *be, void *out, const void *x, const int32_t *rows, int n, int dim);
    /* logits[n, w.rows] in f32 = x[n, w.cols] · wᵀ */
    int (*lm_head)(struct backend *be, float *logits, const void *x, const struct bk_weight *w, int n);
    /* Samples every row of logits[b->num_sample, vocab] with the rows staged by stage();
     * results stay on the device until fetch_results. Capturable. */
    int (*sample)(struct backend *be, const float *logits, int vocab, const struct bk_batch *b);
    /* Waits for the step and copies n results to the host. */
    int (*fetch_results)(struct backend *be, struct sample_result *out, int n);

    /* --- ops of some model families; NULL where the backend lacks them, and then
     * runner_create refuses a model that needs one, naming it (engine/runner_create.c) --- */
    /* Gemma's GeGLU: out[n, ffn] = gelu_tanh(gate_up[:, :ffn]) * gate_up[:, ffn:], with
     * gelu_tanh(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x³))) */
    int (*gelu_tanh_mul)(struct backend *be, void *out, const void *gate_up, int n, int ffn);
    /* In place x[n, dim] *= s (Gemma's embeddings times sqrt(hidden)) */
    int (*scale)(struct backend *be, void *x, int n, int dim, float s);
    /* In place f32 logits[n, vocab] = cap * tanh(logits / cap) (Gemma 2's final soft-cap) */
    int (*softcap)(struct backend *be, float *logits, int n, int vocab, float cap);
    /* out[n, hidden] = the MoE block of x[n, hidden] (struct moe_params, struct moe_weights) */
    int (*moe)(struct backend *be, void *out, const void *x, const struct moe_weights *w, int n,
               const struct moe_params *p);
    /* Bytes of scratch (moe_params.work) the moe op needs for up to n rows of p's shape
     * (p->work unused); set together with moe: each backend lays its scratch out its own way
     * (cpu: one expert's rows at a time; cuda: every (token, expert) pair at once). */
    size_t (*moe_work_bytes)(int n, const struct moe_params *p);

    /* Optional (NULL when absent): RoPE of q and k plus the cache write of k and v in one
     * pass; same contract as rope followed by cache_update. */
    int (*rope_cache_update)(struct backend *be, void *q, void *k, const void *v,
                             const int32_t *positions, const int64_t *slot_mapping, int n,
                             const struct rope_params *p, void *k_cache, void *v_cache,
                             const struct cache_layout *l);

    /* Optional (NULL when absent): *out (host) = max |x| over rows [rows, cols] that lie
     * stride elements apart; synchronous. For --calculate-kv-scales. */
    int (*absmax)(struct backend *be, float *out, const void *x, int stride, int rows, int cols);

    /* Optional (NULL where every op has finished when it returns, as on cpu): whether work
     * queued on the stream is still running, without waiting (cudaStreamQuery). For the
     * figures of what a step's masks hid behind its forward; an error reads as false and
     * is left to the next op that waits. */
    bool (*busy)(struct backend *be);

    /* Optional CUDA graphs (NULL on cpu): capture whatever body launches as the graph of
     * key `size`; replay it. The key is the caller's: the runner keys a decode step's graph
     * by its batch size and the graph of its forward alone (no sampler) by minus that, and
     * the piecewise graphs of mixed and prefill steps from PIECES_KEY_BASE up
     * (engine/runner_pieces.h). */
    int (*graph_capture)(struct backend *be, int size, int (*body)(void *arg), void *arg);
    int (*graph_replay)(struct backend *be, int size);
};

struct backend {
    const struct backend_ops *ops;
};

/* Scratch bytes be's moe op needs for n rows (0 when the backend has no moe op). */
static inline size_t moe_work_bytes(const struct backend *be, int n, const struct moe_params *p)
{
    return be->ops->moe_work_bytes ? be->ops->moe_work_bytes(n, p) : 0;
}

struct backend_options {
    int num_threads;           /* cpu: worker threads for matmul and attention; 0 = all cores */
    int device;                /* cuda: device ordinal */
    int max_tokens;            /* largest num_tokens_padded of a step (staging buffers) */
    int max_reqs;              /* largest num_reqs_padded of a step */
    int max_blocks_per_req;
    int num_kv_groups;
    int vocab_size;            /* for sampling buffers */
    int mask_words;            /* words of a row of mask_rows(): at least (vocab_size + 31) /
                                * 32, which 0 (or less) means; more when the tokenizer's
                                * vocabulary, which grammars mask, is larger than the model's */
};

/* Creates the named backend ("cpu" or "cuda"). Returns 0, or -ENODEV ("cuda" without a
 * GPU, or a build without CUDA) / -ENOMEM with a message. */
int backend_create(struct backend **out, const char *name, const struct backend_options *opt, char *err);
void backend_destroy(struct backend *be);

/* True when the build has CUDA and a device is present: the default backend is then "cuda". */
bool backend_cuda_available(void);

/* The CPU backend (engine/cpu/backend_cpu.c); the CUDA one is declared in
 * engine/cuda/backend_cuda.h. backend_create is the way in for everyone else. */
int backend_cpu_create(struct backend **out, const struct backend_options *opt, char *err);

#endif

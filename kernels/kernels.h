/* kernels.h — the C launchers of the CUDA kernels, one .cu per op family (kernels/<op>.cu),
 * called by the CUDA backend (engine/cuda/). Shapes in tokens/heads/dims, row-major, bf16
 * unless named. Every launcher is asynchronous on the stream it takes, allocates nothing,
 * reads all batch-dependent data from device memory (so a captured graph replays with new
 * data), and returns 0, -EINVAL for a shape it does not support (nothing launched), or -EIO
 * for a launch error (logged by CUDA_OK). n == 0 launches nothing. */
#ifndef OSPREY_KERNELS_H
#define OSPREY_KERNELS_H

#include <math.h>       /* before extern "C": C++'s math.h has templates */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cuda_runtime_api.h>  /* cudaStream_t */

#ifdef __cplusplus
#include <cuda_bf16.h>
typedef __nv_bfloat16 bf16;
extern "C" {
#else
typedef uint16_t bf16;         /* the bits of a bfloat16: C code only moves them */
#endif

/* ---- the launchers' own parameter structs ----
 * kernels/ sees nothing of the engine (scripts/check-includes.sh): the CUDA backend
 * (engine/cuda/cuda_params.c) fills these from engine/backend.h's structs. */

/* What one element of the paged cache is. Zero is bf16, so that a layout filled with the
 * four sizes alone is the bf16 cache it always was. */
enum cuda_kv_dtype {
    CUDA_KV_BF16 = 0,
    CUDA_KV_FP8_E4M3 = 1,      /* float8_e4m3fn: x / scale written, e4m3 * scale read */
};

/* Paged cache of one layer, K and V alike: [num_blocks, block_size, num_kv_heads, head_dim];
 * slot s is block s / block_size, row s % block_size. For fp8, k_scale and v_scale are the
 * layer's per-tensor scales (finite, > 0), as engine/cpu/cache_update.c applies them:
 * the cache holds e4m3(x / scale), round to nearest even, saturated to +-448. */
struct cuda_cache_layout {
    int num_blocks, block_size, num_kv_heads, head_dim;
    enum cuda_kv_dtype dtype;
    float k_scale, v_scale;    /* fp8 only */
};

struct cuda_rope_params {
    int num_heads, num_kv_heads, head_dim;
    int stride;                /* elements between consecutive tokens' rows of q and of k */
    const float *inv_freq;     /* [rotary_dim / 2] device, rope scaling already applied */
    int rotary_dim;            /* dims that turn (0 = head_dim); the rest pass (Phi-3 partial) */
    float mscale;              /* cos and sin times this (0 = 1; LongRoPE's attention factor) */
};

struct cuda_attn_params {
    int num_heads, num_kv_heads, head_dim;
    float scale;               /* softmax scale */
    float softcap;             /* tanh soft-cap of the logits; 0 = off */
    int window;                /* sliding window in tokens; 0 = full causal */
    struct cuda_cache_layout cache;
    const float *sinks;        /* [num_heads] f32 device, or NULL: head h's softmax has one more
                                * logit, sinks[h] (not scaled), in its denominator only (gpt-oss) */
};

/* What attention reads of the step batch for one KV-cache group (device pointers, counts
 * padded as staged). */
struct cuda_attn_batch {
    int num_reqs, num_tokens;               /* padded counts */
    int max_query_len, max_seq_len;         /* upper bounds for dispatch */
    int max_blocks_per_req;
    const int32_t *query_start_loc;         /* [num_reqs + 1] */
    const int32_t *seq_lens;                /* [num_reqs] */
    const int32_t *block_table;             /* [num_reqs, max_blocks_per_req] of the group */
};

/* ---- embedding.cu ---- */

/* x[n, dim] = table[ids[i]] (table [vocab, dim]); an id outside the table gives a zero row. */
int embedding_cuda(bf16 *x, const int32_t *ids, const bf16 *table, int vocab, int dim, int n,
                   cudaStream_t s);

/* ---- gather.cu ---- */

/* out[i] = x[rows[i]] for i < n, rows of dim; a negative row gives zeros. */
int gather_rows_cuda(bf16 *out, const bf16 *x, const int32_t *rows, int n, int dim,
                     cudaStream_t s);

/* ---- rmsnorm.cu ---- */

/* residual == NULL: out = rmsnorm(x) * w. Else residual += x (rounded to bf16, in place),
 * then out = rmsnorm(residual) * w. Rows of dim; sums in f32. out may alias x. */
int rmsnorm_cuda(bf16 *out, bf16 *residual, const bf16 *x, const bf16 *w, int n, int dim,
                 float eps, cudaStream_t s);

/* In place: each of `heads` head_dim vectors of each of n rows (stride elements apart)
 * becomes rmsnorm(v) * w[head_dim] (Qwen3's q/k norm). head_dim <= 1024. */
int head_rmsnorm_cuda(bf16 *x, int stride, int heads, int head_dim, const bf16 *w, int n,
                      float eps, cudaStream_t s);

/* ---- activation.cu ---- */

/* out[n, ffn] = silu(gate_up[:, :ffn]) * gate_up[:, ffn:], in f32, rounded once. */
int silu_mul_cuda(bf16 *out, const bf16 *gate_up, int n, int ffn, cudaStream_t s);
/* out[n, ffn] = gelu_tanh(gate_up[:, :ffn]) * gate_up[:, ffn:] (Gemma's GeGLU, PyTorch's
 * tanh approximation), in f32, rounded once. */
int gelu_tanh_mul_cuda(bf16 *out, const bf16 *gate_up, int n, int ffn, cudaStream_t s);

/* ---- scale.cu ---- */

/* In place x[count] *= s in f32, rounded once (Gemma's embeddings times sqrt(hidden)). */
int scale_cuda(bf16 *x, size_t count, float s, cudaStream_t st);
/* In place f32 logits[count] = cap * tanh(logits / cap) (Gemma 2's final soft-cap). */
int softcap_cuda(float *logits, size_t count, float cap, cudaStream_t st);

/* ---- rope.cu ---- */

/* In place rotate-half RoPE of q[n, num_heads, head_dim] and k[n, num_kv_heads, head_dim]
 * (rows p->stride apart) at positions[n]: pair (i, i + rotary_dim/2) turns by
 * positions[t] * inv_freq[i], product, cos and sin in f32 as Hugging Face computes them. */
int rope_cuda(bf16 *q, bf16 *k, const int32_t *positions, int n,
              const struct cuda_rope_params *p, cudaStream_t s);

/* ---- cache_update.cu ---- */

/* Kernel 1 of an attention layer: the K and V rows of token i (k, v: [n, rows kv_stride
 * apart, num_kv_heads * head_dim]) go to slot slot_mapping[i] of k_cache and v_cache
 * ([num_blocks, block_size, num_kv_heads, head_dim] of l->dtype: bf16 copied, fp8 quantized
 * with the layout's scales, bit for bit as engine/cpu/cache_update.c). A negative slot (the
 * scheduler's KV_PADDING_SLOT, -1), or any slot outside the cache, writes nothing; no other
 * slot is touched. An fp8 scale that is not finite and > 0 is -EINVAL. */
int cache_update_cuda(const bf16 *k, const bf16 *v, int kv_stride, const int64_t *slot_mapping,
                      int n, void *k_cache, void *v_cache, const struct cuda_cache_layout *l,
                      cudaStream_t s);

/* The default path of an attention layer (runner option fused_rope_cache): rope_cuda of q
 * and k, and in the same pass the rotated k and the unchanged v (same row stride) written
 * to slot slot_mapping[t] of the paged cache — equal to rope_cuda followed by
 * cache_update_cuda. A negative slot writes no cache row. p->num_kv_heads and p->head_dim
 * must match the layout's. */
int rope_cache_update_cuda(bf16 *q, bf16 *k, const bf16 *v, const int32_t *positions,
                           const int64_t *slot_mapping, int n, const struct cuda_rope_params *p,
                           void *k_cache, void *v_cache, const struct cuda_cache_layout *l,
                           cudaStream_t s);

/* ---- attention.cu ---- */

/* What attention needs besides its operands: the SM count for the split heuristic and a
 * fixed f32 scratch for split-K partial results (allocated once, never during a step). */
struct attn_workspace {
    int num_sms;
    float *partial;            /* split-K partials: o, then (max, sum) per row and split */
    size_t partial_bytes;
};

/* Kernel 2: out[b->num_tokens, num_heads * head_dim] = paged attention of q (rows q_stride
 * apart, head h at h * head_dim) over the cache through b->block_table, for
 * any mix of prefill chunks and decodes (query_start_loc, seq_lens), causal within each
 * request's new tokens, GQA, optional window, soft-cap and sinks; rows of padding requests
 * (seq_len 0) and after the last request are zeros. head_dim: a multiple of 8, <= 256.
 * Long contexts with few requests split the keys over thread blocks and reduce after.
 * Steps of decodes only (b->max_query_len <= 1) with head_dim 64, 128 or 256 and at most 16
 * query heads per KV head take the decode kernel (kernels/attention_decode.cu).
 * An fp8 cache (p->cache.dtype) is read as e4m3 and widened to bf16 exactly; its scales
 * multiply the logits (k_scale) and the output (v_scale), which equals attention over the
 * dequantized K and V. */
int attention_cuda(bf16 *out, const bf16 *q, int q_stride, const void *k_cache,
                   const void *v_cache, const struct cuda_attn_batch *b,
                   const struct cuda_attn_params *p, const struct attn_workspace *ws,
                   cudaStream_t s);

/* Raises the shared-memory limit of every attention kernel; once, at backend creation (not
 * allowed inside a graph capture). Returns 0 or -EIO. */
int attention_cuda_init(void);

/* The number of key splits attention_cuda uses for this batch shape (1 = no split), for
 * tests and benchmarks that want to know which path ran. */
int attention_cuda_splits(const struct cuda_attn_batch *b, const struct cuda_attn_params *p,
                          const struct attn_workspace *ws);

/* Benchmarks only (tests/gpu/bench.c): for later calls, which decode kernel instantiation
 * runs for head_dim hd and the cache dtype (variant 0: the default; k: the k-th compiled
 * one, -ENOENT where there is none; -1: no decode kernel, the varlen kernel takes decodes
 * too), the blocks the split heuristic aims at (0 or 1: one wave of resident blocks, n: n
 * waves, -1: never split) and flags (1: launch the merge of the splits in plain stream
 * order, not as a programmatic dependent). name gets a description. Not thread-safe; the
 * daemon never calls it. */
int attention_decode_cuda_tune(int hd, bool fp8, int variant, int waves, int flags, char *name,
                               size_t name_len);

/* Tests and benchmarks only: for later calls, which varlen kernel shape takes batches with
 * prefills (-1: chosen by shape, the default; 0: four warps of 16 rows; 1: the prefill
 * variant, four warps of 32 rows; both 64-key tiles in two stages; head dims above 128
 * always take 0). -ENOENT for
 * another variant. name gets a description. Not thread-safe; the daemon never calls it. */
int attention_prefill_cuda_tune(int variant, char *name, size_t name_len);

/* ---- sampling.cu ---- */

#define CUDA_SAMPLE_MAX_LOGPROBS 20   /* == SAMPLE_MAX_LOGPROBS, checked in engine/cuda */

/* One sampled row as the kernel reads it (staged by engine/cuda/cuda_stage.c from struct
 * sample_row). Token lists live in one flat i32 array: prompt, then output, then banned,
 * then the logit_bias ids and their biases (f32 bits in i32 slots), starting at hist_off. */
struct cuda_sample_row {
    float temperature, top_p, min_p;
    float presence_penalty, frequency_penalty, repetition_penalty;
    int32_t top_k;
    int32_t num_logprobs;      /* -1 none, 0 chosen only, N <= CUDA_SAMPLE_MAX_LOGPROBS */
    int32_t greedy;            /* 1: argmax (the host applied its greedy threshold) */
    uint64_t seed;
    uint32_t counter;
    int32_t hist_off;          /* index of the row's first history token */
    int32_t num_prompt, num_output, num_banned;
    int32_t num_bias;          /* logit_bias entries: ids then biases after the banned ids */
    int32_t mask_off;          /* first word of the row's grammar mask in masks, or -1: none */
};

/* One row's result, as engine/sampler.h's struct sample_result (copied field by field). */
struct cuda_sample_result {
    int32_t token;
    float logprob;                                   /* of token, from the raw logits */
    int32_t num_top;
    int32_t top_ids[CUDA_SAMPLE_MAX_LOGPROBS];       /* descending, lowest id on ties */
    float top_logprobs[CUDA_SAMPLE_MAX_LOGPROBS];
};

/* Samples rows[num_rows] of logits[num_rows, vocab] (f32) exactly in engine/sampler.h's order
 * of operations into results[num_rows]. work (f32) and counts (i32, all zero on entry and
 * left all zero) are scratch of num_rows * vocab elements each. masks: the grammar bitmasks
 * the rows' mask_off point into ((vocab + 31) / 32 words a row; bit i clear: token i is
 * -inf after the bans), or NULL when no row has one. */
int sample_cuda(const float *logits, int vocab, int num_rows, const struct cuda_sample_row *rows,
                const int32_t *hist, const uint32_t *masks, float *work, int32_t *counts,
                struct cuda_sample_result *results, cudaStream_t s);

/* ---- quant.cu: FP8 linear layers ---- */

/* Activations quantized for a scaled FP8 GEMM: rows [0, n) of x[n, k] (bf16) become
 * q[n_pad, k] e4m3 = x / scale, rows [n, n_pad) zeros. group 0: one scale per row, absmax /
 * 448 (or *static_scale, a device f32, when set); group 128: one per row and 128-wide
 * k-block (L = ceil(k / 128) of them). The scales of rows below n_main lie at
 * scale[b * n_main + t] (cuBLASLt's token-major layout for N = n_main), those of rows
 * n_main.. n_pad after them as a second such block for N = n_pad - n_main: the GEMM may
 * run as two products (a row count that is a multiple of 4, then a padded tail). */
struct cuda_fp8_act {
    uint8_t *q;                /* [n_pad, k] */
    float *scale;              /* [L * n_pad] as above */
    int n, n_main, n_pad, k;
    int group;                 /* 0 or 128 */
    const float *static_scale; /* group 0 only; NULL = dynamic */
};
int fp8_quantize_act_cuda(const struct cuda_fp8_act *a, const bf16 *x, cudaStream_t s);

/* An fp8 weight [rows, cols] e4m3 with f32 scales: element [r][c] is
 * w[r][c] * scale[(r / row_block) * scale_ld + c / col_block]. */
struct cuda_fp8_weight {
    const uint8_t *w;
    const float *scale;
    int rows, cols;
    int row_block, col_block, scale_ld;
    const float *input_scale;  /* device f32: a static activation scale (x clamped to +-448 x
                                * it, as FP8 quantization saturates), or NULL */
};

/* out[n, rows] (bf16, or f32 when out_f32) = x[n, cols] · dequant(w)ᵀ (+ bias[rows], bf16
 * out only), f32 sums: W8A16 as the CPU backend computes it; for the weights that cuBLASLt's
 * scaled FP8 GEMM cannot take. */
int fp8_w8a16_gemm_cuda(void *out, bool out_f32, const bf16 *x, const struct cuda_fp8_weight *w,
                        const bf16 *bias, int n, cudaStream_t s);

/* The same product for decode-sized n (any n; blocks of up to 8 tokens), a block a tile of
 * 4 weight rows, each thread's x chunk read once for the 4, weights streamed 16 bytes a
 * load: -EINVAL (nothing launched) unless cols % 16 == 0, col_block % 16 == 0 (or >= cols),
 * and w->w and x are 16-byte aligned. */
int fp8_gemv_cuda(void *out, bool out_f32, const bf16 *x, const struct cuda_fp8_weight *w,
                  const bf16 *bias, int n, cudaStream_t s);

/* out[n, rows] += bias[rows], bf16. */
int bias_add_cuda(bf16 *out, const bf16 *bias, int n, int rows, cudaStream_t s);

/* *out (device f32) = max |x| over rows [rows, cols] that lie stride elements apart, NaNs
 * skipped (0 for no elements). */
int absmax_cuda(float *out, const bf16 *x, int stride, int rows, int cols, cudaStream_t s);
/* ---- gemv.cu: the bf16 decode GEMV ---- */

/* out[n, rows] (bf16, or f32 when out_f32) = x[n, cols] · wᵀ (+ bias[rows], bf16 out only,
 * added to the f32 sum before the one rounding), w [rows, cols] bf16 row-major, f32 sums;
 * for decode-sized n (any n: one token a block at n = 1, pairs above). -EINVAL (nothing
 * launched) unless cols % 8 == 0 and w and x are 16-byte aligned: the caller's cue to run
 * cuBLAS instead. */
int bf16_gemv_cuda(void *out, bool out_f32, const bf16 *x, const bf16 *w, const bf16 *bias,
                   int rows, int cols, int n, cudaStream_t s);

/* ---- moe.cu ---- */

#define CUDA_MOE_MAX_EXPERTS 256
#define CUDA_MOE_MAX_TOP_K 8

/* Which tile shape the grouped GEMMs take: chosen from the rows per expert (AUTO), or forced
 * (tests run both shapes on the same data; benchmarks compare them). */
enum cuda_moe_tile {
    CUDA_MOE_TILE_AUTO = 0,
    CUDA_MOE_TILE_DECODE = 1,  /* 16 x 32 tiles, 2 warps, 8 stages: weight-bandwidth-bound steps */
    CUDA_MOE_TILE_DECODE_WIDE = 2, /* 16 x 64 tiles, 4 warps, 6 stages */
    CUDA_MOE_TILE_PREFILL = 3, /* 64 x 128 tiles, 4 warps, 4 stages: many rows per expert */
    CUDA_MOE_TILE_GEMV = 4,    /* no tiles: a matrix-vector product a (token, slot) pair, for
                                * decode steps of a few tokens; needs hidden and ffn % 8 == 0
                                * and 16-byte aligned rows, else the decode tiles serve */
};

/* The experts' activation of gate and up (f32, before the one rounding of the product). */
enum cuda_moe_act {
    CUDA_MOE_ACT_SILU = 0,     /* silu(gate) * up */
    CUDA_MOE_ACT_SWIGLU_OAI = 1, /* gpt-oss: g = min(gate, limit), u = clamp(up, -limit,
                                * limit), (u + 1) * g * sigmoid(alpha * g) */
};

struct cuda_moe_params {
    int num_tokens;            /* n: rows of x, padding included */
    int num_experts, top_k;    /* E <= CUDA_MOE_MAX_EXPERTS, 1 <= k <= min(E, CUDA_MOE_MAX_TOP_K) */
    int hidden, ffn;           /* ffn: one expert's intermediate size */
    bool renormalize;          /* the k weights renormalized to sum 1 */
    enum cuda_moe_tile tile;
    enum cuda_moe_act act;     /* zero (the fields left out of an initializer): SiLU */
    float swiglu_alpha, swiglu_limit;   /* CUDA_MOE_ACT_SWIGLU_OAI only */
};

/* Every expert's weights (device), passed to the GEMM kernels by value: a captured graph
 * holds the addresses, which never move after loading. The biases (gpt-oss) are NULL where
 * the family has none; all of an expert's or none. */
struct cuda_moe_experts {
    const bf16 *gate_up[CUDA_MOE_MAX_EXPERTS];   /* [2 ffn, hidden], gate rows first */
    const bf16 *down[CUDA_MOE_MAX_EXPERTS];      /* [hidden, ffn] */
    const bf16 *gate_up_bias[CUDA_MOE_MAX_EXPERTS];   /* [2 ffn] (gate first), or NULL */
    const bf16 *down_bias[CUDA_MOE_MAX_EXPERTS];      /* [hidden], or NULL */
    const bf16 *router_bias;                     /* [E], added to the logits, or NULL */
};

/* Raises the shared-memory limit of the grouped GEMM kernels; once, at backend creation
 * (not allowed inside a graph capture). Returns 0 or -EIO. */
int moe_cuda_init(void);

/* Scratch bytes moe_experts_cuda needs for p (any tile shape): the routing, the grouping
 * padded to the worst case of p->num_tokens rows, and the [n * k, ffn] activations. */
size_t moe_experts_cuda_work_bytes(const struct cuda_moe_params *p);

/* The experts' half of a MoE block. From the router's logits[n, E] (f32, plus
 * w->router_bias when set): softmax, the k largest (the lower expert first among equal
 * probabilities, as engine/cpu/moe.c), weights renormalized when asked; the n * k (token,
 * slot) pairs grouped by expert on the device (a stable counting sort, each expert's rows
 * padded to the GEMM's M tile; grids sized for the worst case, blocks without work exit);
 * then two grouped GEMMs: gate_up (plus its bias) with p->act of gate and up in the
 * epilogue (f32, one rounding), and down (plus its bias), times the pair's routing weight
 * before its rounding. CUDA_MOE_TILE_GEMV (AUTO's choice for steps of few tokens): no
 * grouping, the same two products and epilogues as matrix-vector ones, a pair each. y[t * k + j, hidden] is token t's j-th expert's weighted
 * output. No host sync, no allocation: capturable. Returns -EINVAL for a shape outside
 * the limits above. */
int moe_experts_cuda(bf16 *y, const bf16 *x, const float *logits, const struct cuda_moe_params *p,
                     const struct cuda_moe_experts *w, void *work, cudaStream_t s);

/* CUDA_MOE_TILE_AUTO takes the GEMV path for steps of at most n tokens (default 4; 0: never;
 * negative: the default again). A tuning hook for tests and benchmarks, read on the host at
 * launch (a captured graph keeps the path it was captured with); not thread-safe. */
void moe_cuda_set_gemv_max(int n);

/* out[t] = Σ_j y[t * k + j] for j = 0 .. k-1 in that order, plus sigmoid(shared_gate[t]) *
 * shared[t] when shared != NULL (Qwen2-MoE's shared expert; shared_gate f32 [n]), in f32
 * rounded once: a fixed order, so results never depend on scheduling. Rows of hidden. */
int moe_combine_cuda(bf16 *out, const bf16 *y, int n, int top_k, int hidden, const bf16 *shared,
                     const float *shared_gate, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif

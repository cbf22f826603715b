/* forward.h — one step of the model over backend ops: the layer loop (llama2.c's forward(),
 * with paged attention). The runner owns everything a step touches and lends it here in a
 * struct forward_ctx; forward() only launches ops, so a CUDA graph can capture it. */
#ifndef OSPREY_FORWARD_H
#define OSPREY_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/backend.h"
#include "engine/comm.h"
#include "engine/model/model.h"
#include "engine/weights.h"

/* Borrowed pointers, all owned by the runner. Activation buffers are device memory in the
 * backend's act_dtype with room for max_tokens rows (the sampled ones for max_sample). */
struct forward_ctx {
    struct backend *be;
    const struct model_config *cfg;
    const struct weights *w;
    const int *layer_group;        /* [num_layers] KV group of each layer */
    void **k_cache, **v_cache;     /* [num_layers] each [group_blocks[g], block_size, KV, D] */
    struct cache_layout cache;     /* num_blocks, k_scale, v_scale come per layer from
                                    * group_blocks and the arrays below */
    int group_blocks[MODEL_MAX_KV_GROUPS];   /* blocks of group g's cache, its own block ids */
    float *k_scale, *v_scale;      /* [num_layers] host: fp8 cache scales, NULL otherwise */
    bool calc_kv_scales;           /* derive k_scale/v_scale from this step's K and V
                                    * (--calculate-kv-scales; needs be->ops->absmax) */
    const float *inv_freq;         /* [head_dim / 2] device, f32 */
    const float *inv_freq_local;   /* [head_dim / 2] of sliding-window layers (Gemma 3's
                                    * rope_local_base_freq), or NULL: every layer uses inv_freq */
    float rope_mscale;             /* cos and sin times this (longrope's attention_factor), 1 = none */
    float embed_scale;             /* embeddings times this (Gemma: sqrt(hidden) in the model
                                    * dtype); 0 = none */
    bool fused_rope_cache;         /* use be->ops->rope_cache_update when the backend has it */
    struct comm *comm;             /* tensor parallelism: this rank of the group, NULL = none.
                                    * cfg then is the rank's shard (heads, KV heads, ffn / N);
                                    * o and down are row-parallel, their outputs all-reduced;
                                    * the LM head is replicated and only rank 0 runs it */
    uint64_t *progress;            /* or NULL: bumped (atomically) after each layer's attention
                                      is issued, so that a watchdog can tell a long step that
                                      moves from a hung one */

    void *residual;                /* [max_tokens, hidden] the residual stream */
    void *x;                       /* [max_tokens, hidden] a sublayer's output */
    void *xn;                      /* [max_tokens, hidden] normalized input of a sublayer */
    void *qkv;                     /* [max_tokens, (H + 2 KV) * D] */
    void *attn;                    /* [max_tokens, H * D] */
    void *gate_up;                 /* [max_tokens, 2 * ffn] */
    void *act;                     /* [max_tokens, ffn] */
    void *moe_work;                /* moe_work_bytes(max_tokens) of scratch for MoE layers, or NULL */
    void *sel_residual, *sel_x;    /* [max_sample, hidden] the sampled rows */
    float *logits;                 /* [max_sample, vocab] f32 */
};

/* --calculate-kv-scales divides max |K| and max |V| of the first prefill by these, as vLLM
 * does (its K_SCALE_CONSTANT and V_SCALE_CONSTANT): room above the calibration batch's
 * largest value before fp8 saturates at 448. */
#define FORWARD_K_SCALE_RANGE 200.0f
#define FORWARD_V_SCALE_RANGE 100.0f

/* Runs the model over the staged batch b and leaves f32 logits of its b->num_sample rows
 * (logits_indices) in f->logits. Attention never writes the cache: each layer calls
 * cache_update (or rope_cache_update) first. Returns 0 or the first op's error. */
int forward(const struct forward_ctx *f, const struct bk_batch *b);

/* forward() in pieces around attention, for piecewise CUDA graphs (vLLM's): the parts that
 * depend on the batch only through num_tokens and device arrays (capturable once per token
 * count), and the attention and the head, which read the batch's requests and run eagerly.
 * forward() is, in order: piece 0, attention 0, piece 1, attention 1, …, piece L, head.
 *   piece 0: the embeddings, then layer 0 up to and including its cache write;
 *   piece p (0 < p < L): layer p-1's o_proj (+ all-reduce) and MLP, then layer p up to its
 *            cache write;
 *   piece L: the last layer's o_proj and MLP.
 * A piece runs over b->num_tokens rows (a padded count: padding tokens have slot
 * KV_PADDING_SLOT and write no cache); its rows are independent of each other. Returns 0,
 * -EINVAL for p outside 0..num_layers, or the first op's error. */
int forward_piece(const struct forward_ctx *f, const struct bk_batch *b, int p);

/* Layer l's attention over the cache into f->attn (q from f->qkv), for the requests of b:
 * b may be the real batch while the pieces ran padded; rows beyond its tokens are left as
 * they were. Bumps *f->progress. */
int forward_attention(const struct forward_ctx *f, const struct bk_batch *b, int l);

/* The sampled rows (logits_indices): last residual add, final norm, LM head, soft-cap, into
 * f->logits. Nothing on a tensor-parallel rank but 0. */
int forward_head(const struct forward_ctx *f, const struct bk_batch *b);

#endif

/* weights.h — a model's tensors on the backend, in the shapes the layer loop wants: q, k and
 * v fused into one [q; k; v] projection (and their biases), gate and up into [gate; up].
 * The backend picks the dtype and whether it copies (engine/backend.h upload_weight).
 * Gemma's (1 + w) RMSNorm weights are uploaded as 1 + w in f32, computed here once, so that
 * every backend's plain rmsnorm (out = x / rms · w) serves both norm kinds. gpt-oss's experts
 * (published input-major, gate and up interleaved) are bound as published where the backend's
 * moe reads them so (cpu: no copy at all); elsewhere each is copied into the [gate; up] rows
 * and [hidden, ffn] layout of the other MoE families, in its dtype, and that copy is freed
 * as soon as it is uploaded when the backend copies weights (cuda), so that the host holds
 * one expert's copy at a time, not all of them.
 * With quantize_fp8 (--quantization fp8) float linear weights become F8_E4M3 with one scale
 * per output channel before they are uploaded. */
#ifndef OSPREY_WEIGHTS_H
#define OSPREY_WEIGHTS_H

#include <stdbool.h>

#include "engine/backend.h"
#include "engine/model/model.h"

/* One decoder layer. Optional weights have data == NULL. Norms are [dim] (rows dim, cols 1). */
struct layer_weights {
    struct bk_weight input_norm;   /* [hidden] */
    struct bk_weight qkv;          /* [(H + 2 KV) * D, hidden]: rows of q, then k, then v */
    struct bk_weight qkv_bias;     /* [(H + 2 KV) * D] or none (Qwen2) */
    struct bk_weight q_norm, k_norm; /* [D] or none (Qwen3) */
    struct bk_weight o;            /* [hidden, H * D] */
    struct bk_weight o_bias;       /* [hidden] or none (gpt-oss) */
    struct bk_weight sinks;        /* [H] f32 attention sinks or none (gpt-oss) */
    struct bk_weight post_norm;    /* [hidden] before the MLP; Gemma: after attention */
    struct bk_weight pre_ff_norm, post_ff_norm; /* [hidden] or none (Gemma's sandwich norms) */
    struct bk_weight gate_up;      /* [2 * ffn, hidden]: rows of gate, then up; dense layers */
    struct bk_weight down;         /* [hidden, ffn] */
    /* MoE layers (num_experts > 0): the router and each expert's fused gate_up and down */
    int num_experts;
    struct bk_weight router;       /* [num_experts, hidden] */
    struct bk_weight *expert_gate_up; /* [num_experts] each [2 * moe_ffn, hidden] */
    struct bk_weight *expert_down; /* [num_experts] each [hidden, moe_ffn] */
    struct bk_weight router_bias;  /* [num_experts] or none; gpt-oss: */
    struct bk_weight *expert_gate_up_bias; /* [num_experts] each [2 * moe_ffn] (gate first) */
    struct bk_weight *expert_down_bias;    /* [num_experts] each [hidden]; both NULL elsewhere */
    bool experts_oai_published;    /* gpt-oss's experts bound as published, the model's own
                                    * memory (backend_ops.moe_oai_published; moe_weights
                                    * .oai_published): gate_up [hidden, 2 moe_ffn] and its bias
                                    * interleaved, down [moe_ffn, hidden] */
    struct bk_weight shared_gate_up, shared_down, shared_gate; /* Qwen2-MoE's shared expert
                                    * [2 shared_ffn, hidden], [hidden, shared_ffn], [1, hidden] */
};

struct weights_fp8;   /* a weight quantized at load: its bytes and scales (weights.c) */

struct weights {
    struct bk_weight embed;        /* [vocab, hidden] */
    struct bk_weight final_norm;   /* [hidden] */
    struct bk_weight lm_head;      /* [vocab, hidden]; a copy of embed's handle when tied */
    bool tied;                     /* lm_head shares embed's memory: freed once */
    struct layer_weights *layers;  /* [num_layers] */
    int num_layers;
    void **host;                   /* [num_host] copies made on the host, freed by weights_free
                                    * (the cpu backend uses them in place): the 1 + w norm
                                    * weights, f32 sinks, gpt-oss's experts laid out anew for a
                                    * backend that reads its parts in place but not
                                    * gpt-oss's layout */
    int num_host;
    size_t host_bytes;             /* their size (tests check that the cpu backend keeps no
                                    * copy of gpt-oss's experts) */
    struct weights_fp8 *fp8;       /* quantized at load; lives as long as the upload */
};

/* Uploads every tensor of m through be->upload_weight; with quantize_fp8, float linear
 * weights are quantized first (weights_quantize_fp8). Returns 0, or a negative errno with
 * the backend's message in err; on failure nothing stays allocated. */
int weights_upload(struct weights *w, struct backend *be, const struct model *m,
                   bool quantize_fp8, char *err);

/* t (a float [rows, cols] weight) as F8_E4M3 with one f32 scale per row, amax / 448 (1 for
 * a row of zeros): data[rows * cols] codes of w / scale, scales[rows]; *out is t with
 * dtype, data, nbytes and scale set, scale pointing at *scale_ref (filled here: F32
 * [rows, 1]). Returns 0 or -EINVAL for a tensor that is not a float matrix. */
int weights_quantize_fp8(const struct tensor_ref *t, uint8_t *data, float *scales,
                         struct tensor_ref *scale_ref, struct tensor_ref *out);
/* Frees what weights_upload allocated; safe on a zeroed or partly filled struct. */
void weights_free(struct weights *w, struct backend *be);

/* Bytes of every weight at elem bytes per parameter (2 on cuda, which holds bf16), the
 * layers' dense linear weights at one byte plus an f32 scale a row when fp8_linear (an fp8
 * checkpoint or --quantization fp8; finer scale blocks are fewer): for sizing the KV cache
 * before the upload and for the start-up memory report. */
size_t weights_bytes(const struct model_config *c, size_t elem, bool fp8_linear);

#endif

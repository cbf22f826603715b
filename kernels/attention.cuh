/* attention.cuh — what the two attention kernel files share: the launch arguments (one
 * struct for the varlen kernel of attention.cu and the decode kernel of attention_decode.cu),
 * the sm_80+ tensor-core and async-copy primitives, and the decode path's entry points that
 * attention_cuda dispatches to. Included by kernels/attention*.cu only. */
#ifndef OSPREY_KERNELS_ATTENTION_CUH
#define OSPREY_KERNELS_ATTENTION_CUH

#include <cuda_fp16.h>

#include "kernels/common.cuh"

#define LOG2E 1.4426950408889634f

/* Everything a block needs; passed by value as a __grid_constant__ parameter. */
struct attn_args {
    bf16 *out;                 /* [num_tokens, H * D] */
    const bf16 *q;             /* [num_tokens, q_stride], head h at h * D */
    const void *k_cache, *v_cache;            /* bf16, or e4m3 bytes (the FP8 kernels) */
    const int32_t *qsl, *seq_lens, *block_table;  /* block_table: this group's rows */
    float *part_o;             /* [splits, num_tokens, H, D] unnormalized partial outputs */
    float2 *part_ml;           /* [splits, num_tokens, H] (running max in log2 units, sum) */
    long long q_stride;
    int num_reqs, num_tokens, max_blocks;
    int H, KVH, G, D;
    int block_size, num_blocks;
    int window, num_splits;
    float scale, scale_log2, softcap;         /* scale: the softmax scale times k_scale */
    float v_scale;                            /* the output's factor: 1, or the fp8 v_scale */
    const float *sinks;        /* [H] f32 logits (natural units), or NULL: gpt-oss's sinks */
};

/* gpt-oss's attention sink: one more logit, `sink` (natural units, not scaled), in a row's
 * softmax denominator with no value. Folds e^sink into the row's final state (m: the running
 * max in log2 units, l: the sum of 2^(s - m)) and returns the factor the row's accumulated
 * output takes to stay relative to the new max. Called only once a row's state is complete
 * (the last split's merge, or the epilogue of an unsplit kernel), never inside the key loops:
 * every partial state of a split softmax would otherwise count the sink once more. A row with
 * no key (m = -inf, l = 0) ends with l = 1 and factor 0, so its output stays zeros. */
__device__ __forceinline__ float attn_fold_sink(float &m, float &l, float sink)
{
    float s2 = sink * LOG2E, mn = fmaxf(m, s2), c = exp2f(m - mn);

    l = l * c + exp2f(s2 - mn);
    m = mn;
    return c;
}

/* ---- tensor-core and async-copy primitives (sm_80+ PTX) ---- */

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool valid)
{
    unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
    int bytes = valid ? 16 : 0;   /* 0: nothing is read, the 16 bytes are zero-filled */

    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
                 "r"(bytes));
}

/* 8 bytes (8 e4m3 codes); .ca because .cg copies 16-byte units only */
__device__ __forceinline__ void cp_async8(void *smem, const void *gmem, bool valid)
{
    unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
    int bytes = valid ? 8 : 0;

    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s), "l"(gmem),
                 "r"(bytes));
}

__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::);
}

__device__ __forceinline__ void cp_async_wait_all()
{
    asm volatile("cp.async.wait_group 0;\n" ::);
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t *r, const void *smem)
{
    unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);

    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t *r, const void *smem)
{
    unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);

    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

/* c[16x8] += a[16x16] · b[16x8], bf16 in, f32 accumulate */
__device__ __forceinline__ void mma_bf16(float *c, const uint32_t *a, uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

/* c[16x8] += a[16x16] · b[16x8], f16 in, f32 accumulate (the fp8 cache's P · V: e4m3
 * widens to f16 in one instruction, and P in [0, 1] keeps more bits in f16 than in bf16) */
__device__ __forceinline__ void mma_f16(float *c, const uint32_t *a, uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_f16(float lo, float hi)
{
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

/* Waits until at most N of this thread's committed cp.async groups are still in flight. */
template <int N>
__device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* ---- the decode path (attention_decode.cu): every request of the step has one query ---- */

/* True when the decode kernel takes this shape: head_dim 64, 128 or 256, at most 16 query
 * heads per KV head. Else the varlen kernel runs the decodes too. */
bool attn_decode_supports(const struct cuda_attn_params *p, const struct cuda_attn_batch *b);

/* Its split count for this batch (1: none), bounded by the workspace. */
int attn_decode_splits(const struct cuda_attn_batch *b, const struct cuda_attn_params *p,
                       const struct attn_workspace *ws);

/* Launches it (and the merge of the splits when a.num_splits > 1); 0 or -EIO. */
int attn_decode_launch(const attn_args &a, bool fp8, cudaStream_t s);

/* Shared-memory limits and occupancies of its instantiations; once, outside any capture. */
int attn_decode_init(void);

#endif

/* cuda_internal.h — the CUDA backend's state, shared by its files: backend_cuda.c (vtable,
 * memory, weights, cuBLAS, ops), cuda_stage.c (the step batch and sampling rows into
 * persistent device buffers; sampling and its results), cuda_graph.c (capture and replay),
 * cuda_gemm_bias.c (products with a bias), cuda_fp8_gemm.c (fp8 weights' products) and
 * cuda_params.c (the kernels' parameter structs). Not a public header: engine code sees only engine/cuda/backend_cuda.h. */
#ifndef OSPREY_CUDA_INTERNAL_H
#define OSPREY_CUDA_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "engine/backend.h"
#include "engine/base/log.h"     /* LOG in cuda__status */
#include "kernels/kernels.h"

/* Bound on the penalty and ban token lists staged per step, over all sampled rows, when
 * the options give none: max_reqs * max_blocks_per_req * CUDA_HISTORY_PER_BLOCK tokens
 * (a full context of 16-token blocks per request), clamped to [CUDA_HISTORY_MIN,
 * CUDA_HISTORY_MAX]. A step with more is refused (-E2BIG), never truncated. */
#define CUDA_HISTORY_PER_BLOCK 16
#define CUDA_HISTORY_MIN (1 << 16)
#define CUDA_HISTORY_MAX (1 << 24)

#define CUDA_BLAS_WORKSPACE_BYTES ((size_t)32 << 20)   /* cuBLAS on Hopper wants 32 MiB */
#define CUDA_ATTN_PARTIAL_BYTES   ((size_t)64 << 20)   /* split-K partials of attention */

/* The staging area: one layout in pinned host memory and its device twin. */
struct cuda_stage {
    void *host;                /* pinned, cap_bytes */
    void *dev;                 /* device, cap_bytes */
    size_t cap_bytes;
    int hist_cap;              /* tokens of penalty/ban lists one step may stage */
    cudaEvent_t copied;        /* recorded after each upload: the host side is free again */
    bool pending;              /* an upload was recorded and not yet waited for */
    /* the sampling rows of the last staged step (device pointers into dev) */
    const struct cuda_sample_row *rows;
    const int32_t *hist;
    int num_rows;
    /* masks: a fixed buffer (graphs bake its address), row i at i * mask_words; the
     * engine writes mask_host itself (backend_ops.mask_rows) */
    uint32_t *mask_host;       /* pinned, [max_reqs * mask_words] */
    uint32_t *mask_dev;        /* device twin */
    int mask_words;            /* words a row: backend_options.mask_words, at least vocab_words */
    int vocab_words;           /* (vocab_size + 31) / 32: what the sampler reads of a row */
    int masked;                /* rows of the staged step up to the last masked one, when
                                * a row's mask is written in place: what stage_masks
                                * uploads (0: nothing) */
    cudaStream_t mask_stream;  /* stage_masks' copies: they run beside the forward, and the
                                * backend's stream waits for them (masks_copied) before
                                * sampling */
    cudaEvent_t masks_copied;  /* recorded after each such copy */
    bool masks_pending;        /* one was recorded and not yet waited for on the host */
};

struct cuda_graph {
    int size;                  /* the decode batch size it was captured for */
    cudaGraphExec_t exec;
};

/* FP8 linear layers (cuda_fp8_gemm.c): the quantized activations and their scales, sized at
 * upload for the largest fp8 weight and max_tokens; the cached cuBLASLt plans. */
struct fp8_plan;
struct cuda_fp8_state {
    uint8_t *act_q;            /* [max_tokens rounded up to 4, plus 4, max_k] e4m3 */
    float *act_scale;          /* as many rows, ceil(max_k / 128) scales each */
    void *tail_out;            /* [4, max_rows] f32 or bf16: a product's padded last rows */
    int max_k, max_rows;
    struct fp8_plan *plans;    /* hash table of cached shapes */
    float *absmax;             /* one f32 (the absmax op's result) */
    bool force_w8a16;          /* TEST_OSPREY_CUDA_FP8=w8a16: every fp8 product on our kernel */
    bool split_rows;           /* TEST_OSPREY_CUDA_FP8=split: per-channel products in rows of 4 too
                                * (=lt: cuBLASLt for every n; TEST_OSPREY_CUDA_FP8_GEMV_MAX=N) */
    int gemv_max;              /* products of up to this many rows run the GEMV */
    long num_cublaslt, num_gemv, num_w8a16;   /* products launched on each path */
    bool captured;             /* a graph holds act_q / act_scale / tail_out: they stay put */
};

struct backend_cuda {
    struct backend base;
    struct backend_options opt;
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;       /* for products with a bias epilogue (cuda_gemm_bias.c) */
    void *blas_workspace;      /* fixed, so that captures never allocate */
    bool dead;                 /* a device error happened: every op returns -EIO */

    struct attn_workspace attn;
    struct cuda_stage st;
    struct cuda_fp8_state fp8;
    int gemv_max;              /* bf16 products of up to this many rows run our GEMV (kernels/
                                * gemv.cu), larger ones cuBLAS; backend_cuda_set_gemv_max */
    long num_gemv;             /* bf16 products launched on it */

    /* sampling: per-row scratch and results (device), results' pinned mirror */
    float *sample_work;        /* [max_reqs, vocab_size] f32 */
    int32_t *sample_counts;    /* [max_reqs, vocab_size] i32, all zero between steps */
    struct cuda_sample_result *results;       /* [max_reqs] device */
    struct cuda_sample_result *results_host;  /* [max_reqs] pinned */

    struct cuda_graph *graphs;
    int num_graphs, cap_graphs;
};

static inline struct backend_cuda *cuda__of(struct backend *be)
{
    return (struct backend_cuda *)be;
}

/* Maps a kernel launcher's or a CUDA call's result to the op's: any -EIO (a device error,
 * already logged) marks the backend dead. Here, beside `dead`, because every file of the
 * backend calls it. */
static inline int cuda__status(struct backend_cuda *cu, int rc)
{
    if (rc == -EIO && !cu->dead) {
        cu->dead = true;
        LOG(LL_ERR, "cuda", "device error: the CUDA backend is dead, every later op fails");
    }
    return rc;
}

/* The way into every entry point: -EIO once the backend is dead, else the calling thread
 * bound to the backend's device. cudaSetDevice is per thread, and under tensor parallelism
 * one thread touches several ranks' backends (the engine thread stages every rank, rank 0
 * runs on it too), so no op may assume the thread is already on its device. Costs one
 * cudaGetDevice (thread-local state) when it is. */
static inline int cuda__enter(struct backend_cuda *cu)
{
    int cur = -1;

    if (cu->dead)
        return -EIO;
    if (cudaGetDevice(&cur) == cudaSuccess && cur == cu->device)
        return 0;
    if (cudaSetDevice(cu->device) != cudaSuccess) {
        LOG(LL_ERR, "cuda", "cannot bind the thread to device %d", cu->device);
        return cuda__status(cu, -EIO);
    }
    return 0;
}

/* cuda_params.c: the kernels' structs from the backend's. cuda__attn_batch returns -EINVAL
 * for a group the batch does not have; cuda__cache_layout and cuda__attn_params for a cache
 * dtype the kernels do not hold (bf16 and fp8 e4m3 they do). */
int cuda__cache_layout(struct cuda_cache_layout *out, const struct cache_layout *l);
struct cuda_rope_params cuda__rope_params(const struct rope_params *p);
int cuda__attn_params(struct cuda_attn_params *out, const struct attn_params *p);
int cuda__attn_batch(struct cuda_attn_batch *out, const struct bk_batch *b, int group);
void cuda__sample_result(struct sample_result *out, const struct cuda_sample_result *r);

/* cuda_stage.c */
int cuda__stage_init(struct backend_cuda *cu, char *err);
void cuda__stage_fini(struct backend_cuda *cu);
int cuda__stage(struct backend *be, const struct step_batch *b, const struct sample_row *rows,
                struct bk_batch *dev);
uint32_t *cuda__mask_rows(struct backend *be);
int cuda__stage_masks(struct backend *be);
int cuda__sample(struct backend *be, const float *logits, int vocab, const struct bk_batch *b);
int cuda__fetch_results(struct backend *be, struct sample_result *out, int n);
bool cuda__busy(struct backend *be);

/* cuda_gemm_bias.c: out = x · wᵀ + bias, bf16, one rounding */
int cuda__gemm_bias(struct backend_cuda *cu, void *out, const void *x, const struct bk_weight *w,
                    const struct bk_weight *bias, int n);

/* cuda_fp8_gemm.c: fp8 weights (parts already checked to stack into [rows, cols]) kept as
 * e4m3 with device scales; out (bf16, or f32 when out_f32) = x · wᵀ (+ bias); the absmax
 * op; the state's lifetime. */
int cuda__fp8_upload(struct backend_cuda *cu, struct bk_weight *out,
                     const struct tensor_ref *parts, int nparts, int64_t rows, int64_t cols,
                     char *err);
int cuda__fp8_gemm(struct backend_cuda *cu, void *out, bool out_f32, const void *x,
                   const struct bk_weight *w, const struct bk_weight *bias, int n);
int cuda__absmax(struct backend *be, float *out, const void *x, int stride, int rows, int cols);
int cuda__fp8_init(struct backend_cuda *cu, char *err);
void cuda__fp8_fini(struct backend_cuda *cu);

/* backend_cuda.c: out[n, w.rows] (bf16 or f32 out_type) = x[n, w.cols] · wᵀ (+ bias, bf16
 * out only), cuBLAS */
int cuda__gemm(struct backend_cuda *cu, void *out, cudaDataType_t out_type, const void *x,
               const struct bk_weight *w, const struct bk_weight *bias, int n);

/* cuda_moe.c: backend_ops.moe and its scratch size */
int cuda__moe(struct backend *be, void *out, const void *x, const struct moe_weights *w, int n,
              const struct moe_params *p);
size_t cuda__moe_work_bytes(int n, const struct moe_params *p);

/* cuda_graph.c */
int cuda__graph_capture(struct backend *be, int size, int (*body)(void *arg), void *arg);
int cuda__graph_replay(struct backend *be, int size);
void cuda__graphs_free(struct backend_cuda *cu);

#endif

/* bench_gemm.c — part of `osprey-gpu-tests --bench`: the decode-shaped products of the
 * bench-1.5b model (q/k/v, o, gate_up, down, LM head) at batch 1, 8 and 64, timed as the
 * runner calls them (cublasGemmEx, CUBLAS_GEMM_DEFAULT) next to each of cuBLASLt's first
 * heuristic candidates for the same product, as bandwidth of the weight read. Timed inside
 * a CUDA graph as the decode steps run; the weights rotate through copies filling 512 MiB,
 * so that none is read from L2, as in a real step that streams 3 GB of them. Nothing is
 * asserted: it says whether cuBLAS's own choice leaves speed on the table for skinny
 * products. gt_bench_fp8_gemm: the llama-3.1-8b products through the CUDA backend's matmul
 * op, bf16 weights against fp8 ones (per-channel and 128x128 blocks; activation
 * quantization included), decode batches 1 to 256 and a 4096-token prefill, and the
 * decode GEMV up to 8 rows side by side;
 * TEST_OSPREY_BENCH_FP8=gemv times only bf16 and the GEMV, up to 8 rows (bf16 there
 * is cuBLAS: the backend's bf16 GEMV off). gt_bench_gemv (--bench-gemv): the bf16 decode
 * products of bench-1.5b, llama-3.2-1b and llama-3.1-8b through the matmul / lm_head ops at
 * n = 1 and 2, cuBLAS against the backend's bf16 GEMV (kernels/gemv.cu), weights from DRAM. */
#ifdef OSPREY_CUDA
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "engine/base/util.h"
#include "engine/cuda/backend_cuda.h"   /* backend_cuda_stream, backend_cuda_fp8_counts */
#include "tests/gpu/gpu_test.h"

#define POOL_BYTES ((size_t)512 << 20)
#define ITERS 100
#define CANDIDATES 16

struct shape {
    const char *name;
    int rows, cols;            /* the weight: out features × in features */
    bool f32_out;
};

struct gemm_bench {
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    char *pool, *x, *out, *ws;
    size_t ws_bytes;
};

/* The k-th weight copy of `bytes` in the pool (wrapping). */
static const void *weight(struct gemm_bench *g, size_t bytes, int k)
{
    size_t copies = POOL_BYTES / bytes;

    return g->pool + (size_t)(k % (int)(copies ? copies : 1)) * bytes;
}

/* Seconds one of ITERS calls takes on the GPU: the calls are captured into a CUDA graph and
 * the graph is replayed, as the runner's decode steps are, so that the host's time to issue
 * a call (which exceeds the GPU's for the smaller products) is not what gets measured. */
static double graph_time(struct gemm_bench *g, bool (*call)(struct gemm_bench *, void *, int), void *arg)
{
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaEvent_t a = NULL, b = NULL;
    float ms = -1;
    bool ok = cudaStreamBeginCapture(g->stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess;

    for (int i = 0; i < ITERS && ok; i++)
        ok = call(g, arg, i);
    if (cudaStreamEndCapture(g->stream, &graph) != cudaSuccess)
        ok = false;
    if (ok && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess && cudaEventCreate(&a) == cudaSuccess &&
        cudaEventCreate(&b) == cudaSuccess && cudaGraphLaunch(exec, g->stream) == cudaSuccess &&
        cudaEventRecord(a, g->stream) == cudaSuccess && cudaGraphLaunch(exec, g->stream) == cudaSuccess &&
        cudaEventRecord(b, g->stream) == cudaSuccess && cudaEventSynchronize(b) == cudaSuccess &&
        cudaEventElapsedTime(&ms, a, b) != cudaSuccess)
        ms = -1;
    (void)cudaGetLastError();
    if (a)
        cudaEventDestroy(a);
    if (b)
        cudaEventDestroy(b);
    if (exec)
        cudaGraphExecDestroy(exec);
    if (graph)
        cudaGraphDestroy(graph);
    return ms > 0 ? ms * 1e-3 / ITERS : -1;
}

struct blas_call {
    const struct shape *s;
    int n;
};

static bool blas_once(struct gemm_bench *g, void *arg, int i)
{
    const struct blas_call *c = arg;
    float alpha = 1, beta = 0;

    return cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, c->s->rows, c->n, c->s->cols, &alpha,
                        weight(g, (size_t)c->s->rows * c->s->cols * 2, i), CUDA_R_16BF, c->s->cols, g->x,
                        CUDA_R_16BF, c->s->cols, &beta, g->out, c->s->f32_out ? CUDA_R_32F : CUDA_R_16BF,
                        c->s->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
}

struct lt_call {
    const struct shape *s;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    const cublasLtMatmulAlgo_t *algo;
};

static bool lt_once(struct gemm_bench *g, void *arg, int i)
{
    const struct lt_call *c = arg;
    float alpha = 1, beta = 0;

    return cublasLtMatmul(g->lt, c->desc, &alpha, weight(g, (size_t)c->s->rows * c->s->cols * 2, i), c->la,
                          g->x, c->lb, &beta, g->out, c->ld, g->out, c->ld, c->algo, g->ws, g->ws_bytes,
                          g->stream) == CUBLAS_STATUS_SUCCESS;
}

/* Times every heuristic candidate; returns the best time, its rank in *best_rank and the
 * first candidate's time in *first. */
static double time_lt(struct gemm_bench *g, const struct shape *s, int n, int *best_rank, int *num,
                      double *first)
{
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur[CANDIDATES];
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cudaDataType_t ot = s->f32_out ? CUDA_R_32F : CUDA_R_16BF;
    struct lt_call c = { .s = s };
    double best = -1;

    *num = 0;
    *best_rank = -1;
    *first = -1;
    if (cublasLtMatmulDescCreate(&c.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) ||
        cublasLtMatmulDescSetAttribute(c.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta) ||
        cublasLtMatmulDescSetAttribute(c.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb) ||
        cublasLtMatrixLayoutCreate(&c.la, CUDA_R_16BF, s->cols, s->rows, s->cols) ||
        cublasLtMatrixLayoutCreate(&c.lb, CUDA_R_16BF, s->cols, n, s->cols) ||
        cublasLtMatrixLayoutCreate(&c.ld, ot, s->rows, n, s->rows) ||
        cublasLtMatmulPreferenceCreate(&pref) ||
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &g->ws_bytes,
                                             sizeof g->ws_bytes) ||
        cublasLtMatmulAlgoGetHeuristic(g->lt, c.desc, c.la, c.lb, c.ld, c.ld, pref, CANDIDATES, heur, num))
        *num = 0;
    for (int k = 0; k < *num; k++) {
        double t;

        c.algo = &heur[k].algo;
        t = graph_time(g, lt_once, &c);
        if (k == 0)
            *first = t;
        if (t > 0 && (best < 0 || t < best)) {
            best = t;
            *best_rank = k;
        }
    }
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (c.ld)
        cublasLtMatrixLayoutDestroy(c.ld);
    if (c.lb)
        cublasLtMatrixLayoutDestroy(c.lb);
    if (c.la)
        cublasLtMatrixLayoutDestroy(c.la);
    if (c.desc)
        cublasLtMatmulDescDestroy(c.desc);
    return best;
}

void gt_bench_gemm(void)
{
    static const struct shape shapes[] = {
        { "qkv", 3072, 2048, false }, { "o", 2048, 2048, false }, { "gate_up", 16384, 2048, false },
        { "down", 2048, 8192, false }, { "lm_head", 128256, 2048, true },
    };
    static const int batches[] = { 1, 8, 64 };
    struct gemm_bench g = { .ws_bytes = (size_t)32 << 20 };

    if (cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking) != cudaSuccess ||
        cublasCreate(&g.blas) != CUBLAS_STATUS_SUCCESS || cublasLtCreate(&g.lt) != CUBLAS_STATUS_SUCCESS ||
        cudaMalloc((void **)&g.pool, POOL_BYTES) != cudaSuccess ||
        cudaMalloc((void **)&g.x, (size_t)64 * 8192 * 2) != cudaSuccess ||
        cudaMalloc((void **)&g.out, (size_t)64 * 128256 * 4) != cudaSuccess ||
        cudaMalloc((void **)&g.ws, g.ws_bytes) != cudaSuccess || cublasSetStream(g.blas, g.stream) ||
        cudaMemset(g.pool, 0, POOL_BYTES) != cudaSuccess ||
        cudaMemset(g.x, 0, (size_t)64 * 8192 * 2) != cudaSuccess ||
        cublasSetWorkspace(g.blas, g.ws, g.ws_bytes) != CUBLAS_STATUS_SUCCESS) {
        printf("gemm bench: cannot set up\n");
        goto out;
    }
    for (size_t s = 0; s < ARRAY_LEN(shapes); s++)
        for (size_t k = 0; k < ARRAY_LEN(batches); k++) {
            const struct shape *sh = &shapes[s];
            double wb = (double)sh->rows * sh->cols * 2;
            int n = batches[k], rank, num;
            struct blas_call bc = { sh, n };
            double first, t0 = graph_time(&g, blas_once, &bc), t1 = time_lt(&g, sh, n, &rank, &num, &first);

            printf("gemm %-7s %6d x %4d, batch %2d: cublasGemmEx %7.2f us (%5.0f GB/s); cuBLASLt's first "
                   "%7.2f us, best of %2d #%-2d %7.2f us (%5.0f GB/s)\n", sh->name, sh->rows, sh->cols, n,
                   t0 * 1e6, wb / t0 / 1e9, first * 1e6, num, rank, t1 * 1e6, wb / t1 / 1e9);
        }
out:
    cudaFree(g.pool);
    cudaFree(g.x);
    cudaFree(g.out);
    cudaFree(g.ws);
    if (g.lt)
        cublasLtDestroy(g.lt);
    if (g.blas)
        cublasDestroy(g.blas);
    if (g.stream)
        cudaStreamDestroy(g.stream);
}

/* ---- fp8 against bf16 through the backend's matmul op ---- */

#define FP8_ROTATE_BYTES ((size_t)256 << 20)   /* copies of a weight, so none stays in L2 */
#define FP8_ITERS 20

struct fp8_bench {
    struct backend *be;
    struct bk_weight *w;       /* [copies] */
    int copies, n;
    int iters;                 /* products a graph: FP8_ITERS when 0 */
    bool lm_head;              /* through the lm_head op (f32 out), else matmul */
    void *x, *out;
};

static int fp8_bench_body(void *arg)
{
    struct fp8_bench *b = arg;
    int rc = 0;

    for (int i = 0; i < (b->iters ? b->iters : FP8_ITERS) && !rc; i++)
        rc = b->lm_head ? b->be->ops->lm_head(b->be, b->out, b->x, &b->w[i % b->copies], b->n)
                        : b->be->ops->matmul(b->be, b->out, b->x, &b->w[i % b->copies], NULL, b->n);
    return rc;
}

/* Seconds a product takes: b->iters (FP8_ITERS) of them captured in a graph, the second
 * replay timed. */
static double fp8_bench_time(struct fp8_bench *b, int size)
{
    cudaStream_t st = backend_cuda_stream(b->be);
    cudaEvent_t e0 = NULL, e1 = NULL;
    float ms = -1;

    if (b->be->ops->graph_capture(b->be, size, fp8_bench_body, b) ||
        b->be->ops->graph_replay(b->be, size) || cudaEventCreate(&e0) != cudaSuccess ||
        cudaEventCreate(&e1) != cudaSuccess || cudaEventRecord(e0, st) != cudaSuccess ||
        b->be->ops->graph_replay(b->be, size) || cudaEventRecord(e1, st) != cudaSuccess ||
        cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
        ms = -1;
    if (e0)
        cudaEventDestroy(e0);
    if (e1)
        cudaEventDestroy(e1);
    return ms > 0 ? ms * 1e-3 / (b->iters ? b->iters : FP8_ITERS) : -1;
}

/* Uploads `copies` copies of a [rows, cols] weight: bf16, or fp8 with per-row scales
 * (block 0) or 128x128 blocks. The values are random bytes (fp8: codes below 0x78, finite). */
static int fp8_bench_weights(struct backend *be, struct bk_weight *w, int copies, int rows,
                             int cols, int kind, void *host, float *scales, char *err)
{
    struct tensor_ref sref = { .name = "scale", .data = scales, .dtype = DT_F32, .ndim = 2 };
    struct tensor_ref t = { .name = "bench.weight", .data = host, .ndim = 2,
                            .shape = { rows, cols } };

    if (kind == 0) {
        t.dtype = DT_BF16;
        t.nbytes = (size_t)rows * cols * 2;
    } else {
        t.dtype = DT_F8_E4M3;
        t.nbytes = (size_t)rows * cols;
        t.scale = &sref;
        if (kind == 1) {
            sref.shape[0] = rows, sref.shape[1] = 1;
            t.scale_block[0] = 1, t.scale_block[1] = cols;
        } else {
            sref.shape[0] = (rows + 127) / 128, sref.shape[1] = (cols + 127) / 128;
            t.scale_block[0] = 128, t.scale_block[1] = 128;
        }
        sref.nbytes = (size_t)sref.shape[0] * sref.shape[1] * 4;
    }
    for (int c = 0; c < copies; c++)
        if (be->ops->upload_weight(be, &w[c], &t, 1, err))
            return -1;
    return 0;
}

void gt_bench_fp8_gemm(void)
{
    static const struct shape shapes[] = {   /* llama-3.1-8b */
        { "qkv", 6144, 4096, false }, { "o", 4096, 4096, false },
        { "gate_up", 28672, 4096, false }, { "down", 4096, 14336, false },
    };
    static const int batches[] = { 1, 2, 4, 8, 16, 64, 128, 256, 4096 };
    /* kind: weights (0 bf16, 1 fp8 per channel, 2 fp8 128x128), the backend (0: as it runs
     * by default; 1: cuBLASLt for every n, up to 16 rows only: what the GEMV replaces; 2:
     * the GEMV for up to 8 rows), its largest n, and whether TEST_OSPREY_BENCH_FP8=gemv
     * times it */
    static const struct { const char *name; int w, be, max_n; bool gemv; } kinds[] = {
        { "bf16", 0, 0, 4096, true }, { "fp8 channel", 1, 0, 4096, false },
        { "fp8 128x128", 2, 0, 4096, false }, { "fp8 chan LT", 1, 1, 16, false },
        { "fp8 blk LT", 2, 1, 16, false }, { "fp8 chan GEMV", 1, 2, 8, true },
        { "fp8 blk GEMV", 2, 2, 8, true },
    };
    static const char *const be_env[][2] = {   /* TEST_OSPREY_CUDA_FP8, _GEMV_MAX per backend */
        { NULL, NULL }, { "lt", NULL }, { NULL, "8" },
    };
    const char *only = getenv("TEST_OSPREY_BENCH_FP8");
    bool gemv_only = only && !strcmp(only, "gemv");
    struct backend_options o = { .max_tokens = 4096, .max_reqs = 8, .max_blocks_per_req = 8,
                                 .num_kv_groups = 1, .vocab_size = 16 };
    struct backend *bes[3] = { NULL, NULL, NULL };
    size_t host_bytes = (size_t)28672 * 4096 * 2;
    uint8_t *host = malloc(host_bytes);
    float *scales = malloc((size_t)28672 * 128 * sizeof(float));
    char err[ERR_LEN] = "";
    int size = 1 << 20;
    uint64_t rng = 42;

    if (!host || !scales || backend_create(&bes[0], "cuda", &o, err)) {
        printf("fp8 gemm bench: cannot set up: %s\n", err);
        goto out;
    }
    backend_cuda_set_gemv_max(bes[0], 0);   /* bf16 on cuBLAS, as these rows always compared */
    for (size_t k = 1; k < ARRAY_LEN(bes); k++) {
        if (be_env[k][0])
            setenv("TEST_OSPREY_CUDA_FP8", be_env[k][0], 1);
        if (be_env[k][1])
            setenv("TEST_OSPREY_CUDA_FP8_GEMV_MAX", be_env[k][1], 1);
        if (backend_create(&bes[k], "cuda", &o, err))
            printf("fp8 gemm bench: no backend %zu: %s\n", k, err);
        unsetenv("TEST_OSPREY_CUDA_FP8");
        unsetenv("TEST_OSPREY_CUDA_FP8_GEMV_MAX");
    }
    for (size_t i = 0; i < host_bytes; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        host[i] = (uint8_t)((rng >> 33) % 0x78) | (uint8_t)(rng >> 56 & 0x80);
    }
    for (size_t i = 0; i < (size_t)28672 * 128; i++)
        scales[i] = 1.0f / 4096;
    /* the widest and the deepest fp8 weight first: the backend sizes its activation buffers
     * at upload, and may not move them once graphs use them */
    for (size_t k = 0; k < ARRAY_LEN(bes); k++) {
        struct bk_weight w;

        if (bes[k] && fp8_bench_weights(bes[k], &w, 1, 28672, 4096, 1, host, scales, err) == 0)
            bes[k]->ops->free_weight(bes[k], &w);
        if (bes[k] && fp8_bench_weights(bes[k], &w, 1, 4096, 14336, 1, host, scales, err) == 0)
            bes[k]->ops->free_weight(bes[k], &w);
    }
    printf("fp8 vs bf16 GEMMs (llama-3.1-8b shapes, the backend's matmul op in a graph, weights "
           "rotated through %zu MiB; fp8 = as by default, LT = cuBLASLt only, GEMV = the "
           "GEMV up to 8 rows):\n",
           FP8_ROTATE_BYTES >> 20);
    for (size_t s = 0; s < ARRAY_LEN(shapes); s++) {
        const struct shape *sh = &shapes[s];
        double t_bf16[ARRAY_LEN(batches)] = { 0 };

        for (size_t kd = 0; kd < ARRAY_LEN(kinds); kd++) {
            struct backend *be = bes[kinds[kd].be];
            int kind = kinds[kd].w;
            size_t wbytes = (size_t)sh->rows * sh->cols * (kind ? 1 : 2);
            int copies = (int)MAX(1, MIN(64, FP8_ROTATE_BYTES / wbytes));
            struct fp8_bench b = { .be = be, .copies = copies };
            long lt0, g0, w0, lt1, g1, w1;

            if (!be || (gemv_only && !kinds[kd].gemv))
                continue;
            b.w = calloc(copies, sizeof *b.w);
            b.x = be->ops->alloc(be, (size_t)4096 * sh->cols * 2, err);
            b.out = be->ops->alloc(be, (size_t)4096 * sh->rows * 2, err);
            if (!b.w || !b.x || !b.out ||
                fp8_bench_weights(be, b.w, copies, sh->rows, sh->cols, kind, host, scales, err)) {
                printf("fp8 gemm bench %s %s: %s\n", sh->name, kinds[kd].name, err);
            } else {
                backend_cuda_fp8_counts(be, &lt0, &g0, &w0);
                for (size_t k = 0; k < ARRAY_LEN(batches); k++) {
                    int n = batches[k];
                    double t, flops = 2.0 * n * sh->rows * sh->cols;

                    if (n > kinds[kd].max_n || (gemv_only && n > 8))
                        break;
                    b.n = n;
                    t = fp8_bench_time(&b, size++);
                    if (kind == 0)
                        t_bf16[k] = t;
                    printf("gemm8b %-7s %5d x %5d %-13s n %4d: %8.2f us, %6.1f TFLOP/s, %6.0f GB/s"
                           " of weights%s", sh->name, sh->rows, sh->cols, kinds[kd].name, n,
                           t * 1e6, flops / t / 1e12, wbytes / t / 1e9, kind ? "" : "\n");
                    if (kind)
                        printf(", %.2fx bf16\n", t_bf16[k] / t);
                }
                backend_cuda_fp8_counts(be, &lt1, &g1, &w1);
                if (kind && w1 > w0)
                    printf("  (%ld of these products ran the W8A16 kernel)\n", w1 - w0);
            }
            for (int c = 0; b.w && c < copies; c++)
                if (b.w[c].data)
                    be->ops->free_weight(be, &b.w[c]);
            free(b.w);
            be->ops->free(be, b.x);
            be->ops->free(be, b.out);
        }
    }
out:
    for (size_t k = 0; k < ARRAY_LEN(bes); k++)
        backend_destroy(bes[k]);
    free(host);
    free(scales);
}

/* ---- the bf16 decode GEMV against cuBLAS ---- */

void gt_bench_gemv(void)
{
    static const struct { const char *model, *name; int rows, cols; bool lm_head; } shapes[] = {
        { "1.5b", "qkv", 2048, 1536, false }, { "1.5b", "o", 1536, 1536, false },
        { "1.5b", "gate_up", 17920, 1536, false }, { "1.5b", "down", 1536, 8960, false },
        { "1.5b", "lm_head", 151936, 1536, true },
        { "1b", "qkv", 3072, 2048, false }, { "1b", "o", 2048, 2048, false },
        { "1b", "gate_up", 16384, 2048, false }, { "1b", "down", 2048, 8192, false },
        { "1b", "lm_head", 128256, 2048, true },
        { "8b", "qkv", 6144, 4096, false }, { "8b", "o", 4096, 4096, false },
        { "8b", "gate_up", 28672, 4096, false }, { "8b", "down", 4096, 14336, false },
        { "8b", "lm_head", 128256, 4096, true },
    };
    struct backend_options o = { .max_tokens = 16, .max_reqs = 8, .max_blocks_per_req = 8,
                                 .num_kv_groups = 1, .vocab_size = 16 };
    struct backend *be = NULL;
    size_t host_bytes = (size_t)128256 * 4096 * 2;   /* the largest weight: 8b's LM head */
    uint16_t *host = NULL;
    char err[ERR_LEN] = "";
    int size = 1 << 20;
    uint64_t rng = 7;

    if (!(host = malloc(host_bytes)) || backend_create(&be, "cuda", &o, err)) {
        printf("gemv bench: cannot set up: %s\n", err);
        goto out;
    }
    /* bf16 values in +-[2^-8, 2): finite, no subnormals */
    for (size_t i = 0; i < host_bytes / 2; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        host[i] = (uint16_t)(0x3b80 + (rng >> 33) % 0x480) | (uint16_t)(rng >> 48 & 0x8000);
    }
    printf("bf16 decode GEMV vs cuBLAS (the backend's matmul / lm_head op in a graph, weights "
           "rotated through %zu MiB; gemv = kernels/gemv.cu):\n", FP8_ROTATE_BYTES >> 20);
    for (size_t s = 0; s < ARRAY_LEN(shapes); s++) {
        size_t wbytes = (size_t)shapes[s].rows * shapes[s].cols * 2;
        int copies = (int)MAX(1, MIN(64, FP8_ROTATE_BYTES / wbytes));
        /* every copy once a graph: 20 of the smallest weights are ~100 MB, L2 holds 50 */
        struct fp8_bench b = { .be = be, .copies = copies, .iters = MAX(copies, FP8_ITERS),
                               .lm_head = shapes[s].lm_head };
        struct tensor_ref t = { .name = "bench.weight", .data = host, .dtype = DT_BF16, .ndim = 2,
                                .shape = { shapes[s].rows, shapes[s].cols }, .nbytes = wbytes };
        bool ok = (b.w = calloc(copies, sizeof *b.w)) &&
                  (b.x = be->ops->alloc(be, (size_t)2 * shapes[s].cols * 2, err)) &&
                  (b.out = be->ops->alloc(be, (size_t)2 * shapes[s].rows * 4, err));

        for (int c = 0; ok && c < copies; c++)
            ok = be->ops->upload_weight(be, &b.w[c], &t, 1, err) == 0;
        if (ok)
            ok = be->ops->upload(be, b.x, host, (size_t)2 * shapes[s].cols * 2) == 0;
        for (int n = 1; ok && n <= 2; n++) {
            double tb, tg;
            long g0, g1;

            b.n = n;
            backend_cuda_set_gemv_max(be, 0);
            tb = fp8_bench_time(&b, size++);
            backend_cuda_set_gemv_max(be, 2);
            g0 = backend_cuda_gemv_count(be);
            tg = fp8_bench_time(&b, size++);
            g1 = backend_cuda_gemv_count(be);
            printf("gemv %-4s %-7s %6d x %5d n %d: cublas %7.2f us %5.2f TB/s, gemv %7.2f us "
                   "%5.2f TB/s, %.2fx%s\n", shapes[s].model, shapes[s].name, shapes[s].rows,
                   shapes[s].cols, n, tb * 1e6, wbytes / tb / 1e12, tg * 1e6, wbytes / tg / 1e12,
                   tb / tg, g1 - g0 == b.iters ? "" : " (the GEMV did not run)");
        }
        if (!ok)
            printf("gemv bench %s %s: %s\n", shapes[s].model, shapes[s].name, err);
        for (int c = 0; b.w && c < copies; c++)
            if (b.w[c].data)
                be->ops->free_weight(be, &b.w[c]);
        free(b.w);
        if (b.x)
            be->ops->free(be, b.x);
        if (b.out)
            be->ops->free(be, b.out);
    }
out:
    backend_destroy(be);
    free(host);
}

#endif

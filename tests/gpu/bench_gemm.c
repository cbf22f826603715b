/* bench_gemm.c — part of `osprey-gpu-tests --bench`: the decode-shaped products of the
 * bench-1.5b model (q/k/v, o, gate_up, down, LM head) at batch 1, 8 and 64, timed as the
 * runner calls them (cublasGemmEx, CUBLAS_GEMM_DEFAULT) next to each of cuBLASLt's first
 * heuristic candidates for the same product, as bandwidth of the weight read. Timed inside
 * a CUDA graph as the decode steps run; the weights rotate through copies filling 512 MiB,
 * so that none is read from L2, as in a real step that streams 3 GB of them. Nothing is
 * asserted: it says whether cuBLAS's own choice leaves speed on the table for skinny
 * products. */
#ifdef OSPREY_CUDA
#include <stdio.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "engine/base/util.h"
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

#endif

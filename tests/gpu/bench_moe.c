/* bench_moe.c — `osprey-gpu-tests --bench-moe`: the MoE block on Qwen3-30B-A3B's expert
 * shapes (hidden 2048, expert ffn 768, 128 experts, top 8; 1.2 GB of bf16 experts per
 * layer) at n = 1, 2, 4, 8 .. 2048 tokens. For each n: the grouped GEMMs (routing and grouping
 * included) with each tile shape, in TFLOP/s and as GB/s of the distinct experts' weights
 * they must read against the measured device copy bandwidth (the weight-read floor of a
 * decode step); the whole op (router, experts, sum); and cuBLAS on one dense product of
 * the same work ([n k, hidden] · [2 ffn, hidden]ᵀ, then · [hidden, ffn]ᵀ); and the grouped
 * GEMMs again at the fastest tile with gpt-oss's router and expert biases and clamped SwiGLU
 * in their epilogues (the same main loops: they should cost the same). Up to n = 8, the
 * GEMV path too (forced, and with gpt-oss's epilogue), and the whole op with it off, so
 * that one run decides between the paths. The L2 (50 MB)
 * is flushed before each timed launch; medians of ITERS launches. Prints, never asserts. */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "engine/base/util.h"
#include "engine/cuda/backend_cuda.h"   /* backend_cuda_stream */
#include "kernels/kernels.h"
#include "tests/gpu/gpu_test.h"

#define E 128
#define K 8
#define HID 2048
#define FFN 768
#define MAXN 2048
#define ITERS 15
#define GEMV_BENCH_MAX 8   /* the GEMV path is timed up to this n */
#define FLUSH_BYTES ((size_t)256 << 20)

struct mb {
    struct backend *be;
    cudaStream_t st;
    void *flush;
    struct bk_weight router, gu[E], dn[E], dense_gu, dense_dn;
    struct cuda_moe_experts ex;
    struct moe_weights w;
    struct moe_params p;
    void *x, *out, *logits, *y, *kwork, *work, *big_x, *big_gu, *big_act;
    void *bias;                /* zeros: every expert's and the router's gpt-oss biases */
    struct cuda_moe_params kp;
    int n, mode;               /* mode: 0 experts only, 1 whole op, 2 dense cuBLAS */
};

static int run(struct mb *b)
{
    struct backend *be = b->be;

    if (b->mode == 0)
        return moe_experts_cuda(b->y, b->x, b->logits, &b->kp, &b->ex, b->kwork, b->st);
    if (b->mode == 1)
        return be->ops->moe(be, b->out, b->x, &b->w, b->n, &b->p);
    return be->ops->matmul(be, b->big_gu, b->big_x, &b->dense_gu, NULL, b->n * K) ||
           be->ops->matmul(be, b->big_x, b->big_act, &b->dense_dn, NULL, b->n * K);
}

/* Median seconds of one run with a cold L2. */
static double time_cold(struct mb *b)
{
    double t[ITERS];
    cudaEvent_t e0 = NULL, e1 = NULL;
    float ms;
    int i = 0;

    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess || run(b) ||
        cudaStreamSynchronize(b->st) != cudaSuccess)
        goto out;
    for (; i < ITERS; i++) {
        if (cudaMemsetAsync(b->flush, i & 0xff, FLUSH_BYTES, b->st) != cudaSuccess ||
            cudaEventRecord(e0, b->st) != cudaSuccess || run(b) ||
            cudaEventRecord(e1, b->st) != cudaSuccess || cudaEventSynchronize(e1) != cudaSuccess ||
            cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
            break;
        t[i] = ms / 1e3;
    }
out:
    if (e0)
        cudaEventDestroy(e0);
    if (e1)
        cudaEventDestroy(e1);
    return i == ITERS ? gt_median(t, ITERS) : NAN;
}

/* Device copy bandwidth (read + write bytes per second) of a 1 GiB copy. */
static double copy_gbs(struct mb *b, void *src, void *dst, size_t bytes)
{
    cudaEvent_t e0, e1;
    float ms = 0, best = 1e30f;

    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess)
        return NAN;
    for (int i = 0; i < 5; i++) {
        cudaEventRecord(e0, b->st);
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, b->st);
        cudaEventRecord(e1, b->st);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        best = fminf(best, ms);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return 2.0 * bytes / (best / 1e3) / 1e9;
}

static bool upload(struct mb *b, struct bk_weight *w, const uint16_t *h, int rows, int cols)
{
    struct tensor_ref r = { .name = "bench.weight", .dtype = DT_BF16, .ndim = 2,
                            .shape = { rows, cols }, .nbytes = (size_t)rows * cols * 2,
                            .data = (void *)h };
    char err[ERR_LEN] = "";

    if (b->be->ops->upload_weight(b->be, w, &r, 1, err)) {
        printf("bench-moe: %s\n", err);
        return false;
    }
    return true;
}

/* Distinct experts the routing of n rows picks (host top-k of the device logits). */
static int distinct_experts(struct mb *b, int n)
{
    float *l = malloc((size_t)n * E * 4);
    bool used[E] = { false };
    int count = 0;

    if (!l || b->be->ops->download(b->be, l, b->logits, (size_t)n * E * 4)) {
        free(l);
        return -1;
    }
    for (int r = 0; r < n; r++)
        for (int j = 0; j < K; j++) {
            int best = -1;
            for (int e = 0; e < E; e++)
                if (l[(size_t)r * E + e] > -INFINITY && (best < 0 || l[(size_t)r * E + e] > l[(size_t)r * E + best]))
                    best = e;
            used[best] = true;
            l[(size_t)r * E + best] = -INFINITY;
        }
    for (int e = 0; e < E; e++)
        count += used[e];
    free(l);
    return count;
}

/* The grouped GEMMs (mode 0) at `tile` with gpt-oss's biases (zeros) and clamped SwiGLU;
 * b's experts and parameters as they were afterwards. */
static double time_oai(struct mb *b, enum cuda_moe_tile tile)
{
    struct cuda_moe_params kp = b->kp;
    double s;

    for (int e = 0; e < E; e++)
        b->ex.gate_up_bias[e] = b->ex.down_bias[e] = b->bias;
    b->ex.router_bias = b->bias;
    b->kp.tile = tile;
    b->kp.act = CUDA_MOE_ACT_SWIGLU_OAI;
    b->kp.swiglu_alpha = 1.702f;
    b->kp.swiglu_limit = 7.0f;
    s = time_cold(b);
    for (int e = 0; e < E; e++)
        b->ex.gate_up_bias[e] = b->ex.down_bias[e] = NULL;
    b->ex.router_bias = NULL;
    b->kp = kp;
    return s;
}

int gt_bench_moe(void)
{
    static const int ns[] = { 1, 2, 4, 8, 16, 64, 256, 2048 };
    struct backend_options o = { .max_tokens = MAXN, .max_reqs = 1, .max_blocks_per_req = 1,
                                 .num_kv_groups = 1, .vocab_size = 16 };
    struct mb b = { 0 };
    size_t expert = (size_t)3 * FFN * HID, big = (size_t)MAXN * K * 2 * FFN;
    uint16_t *h = malloc(expert * 2 + (size_t)MAXN * HID * 2 + (size_t)E * HID * 2);
    float *xf = malloc((size_t)MAXN * HID * 4);
    uint64_t rng = 0x5eed;
    char err[ERR_LEN] = "";
    double gbs;
    int rc = 1;

    if (!h || !xf || backend_create(&b.be, "cuda", &o, err)) {
        printf("bench-moe: %s\n", err[0] ? err : "out of host memory");
        goto out;
    }
    b.st = backend_cuda_stream(b.be);
    /* every expert its own memory; the same values in each (the values do not matter) */
    for (size_t i = 0; i < expert + (size_t)E * HID; i++)
        h[i] = f32_to_bf16(gt_randf(&rng, -0.05f, 0.05f));
    for (int e = 0; e < E; e++)
        if (!upload(&b, &b.gu[e], h, 2 * FFN, HID) ||
            !upload(&b, &b.dn[e], h + (size_t)2 * FFN * HID, HID, FFN))
            goto out;
    if (!upload(&b, &b.router, h + expert, E, HID) ||
        !upload(&b, &b.dense_gu, h, 2 * FFN, HID) ||
        !upload(&b, &b.dense_dn, h + (size_t)2 * FFN * HID, HID, FFN))
        goto out;
    for (int e = 0; e < E; e++) {
        b.ex.gate_up[e] = b.gu[e].data;
        b.ex.down[e] = b.dn[e].data;
    }
    b.w = (struct moe_weights){ &b.router, b.gu, b.dn, NULL, NULL, NULL, NULL, NULL, NULL, false };
    b.p = (struct moe_params){ E, K, HID, FFN, 0, true, NULL, MOE_ACT_SILU, 0.0f, 0.0f };
    b.kp = (struct cuda_moe_params){ MAXN, E, K, HID, FFN, true, CUDA_MOE_TILE_AUTO,
                                     CUDA_MOE_ACT_SILU, 0.0f, 0.0f };
    if (!(b.flush = b.be->ops->alloc(b.be, FLUSH_BYTES, err)) ||
        !(b.x = b.be->ops->alloc(b.be, (size_t)MAXN * HID * 2, err)) ||
        !(b.out = b.be->ops->alloc(b.be, (size_t)MAXN * HID * 2, err)) ||
        !(b.logits = b.be->ops->alloc(b.be, (size_t)MAXN * E * 4, err)) ||
        !(b.y = b.be->ops->alloc(b.be, (size_t)MAXN * K * HID * 2, err)) ||
        !(b.kwork = b.be->ops->alloc(b.be, moe_experts_cuda_work_bytes(&b.kp), err)) ||
        !(b.work = b.be->ops->alloc(b.be, b.be->ops->moe_work_bytes(MAXN, &b.p), err)) ||
        !(b.big_x = b.be->ops->alloc(b.be, (size_t)MAXN * K * HID * 2, err)) ||
        !(b.big_gu = b.be->ops->alloc(b.be, big * 2, err)) ||
        !(b.big_act = b.be->ops->alloc(b.be, big, err)) ||
        !(b.bias = b.be->ops->alloc(b.be, (size_t)MAX(2 * FFN, MAX(HID, E)) * 2, err))) {
        printf("bench-moe: %s\n", err);
        goto out;
    }
    b.p.work = b.work;
    gbs = copy_gbs(&b, b.big_x, b.y, (size_t)MAXN * K * HID * 2);
    gt_fill(&rng, xf, (size_t)MAXN * HID, -1.0f, 1.0f);
    for (size_t i = 0; i < (size_t)MAXN * HID; i++)
        h[i] = f32_to_bf16(xf[i]);
    if (b.be->ops->upload(b.be, b.x, h, (size_t)MAXN * HID * 2))
        goto out;
    printf("moe bench: Qwen3-30B-A3B experts (hidden %d, ffn %d, %d experts, top %d), bf16; "
           "device copy %.0f GB/s\n", HID, FFN, E, K, gbs);
    printf("%5s %7s %9s %9s %10s %9s %9s %8s %9s %9s %9s %8s %9s %9s %11s\n", "n", "experts",
           "16x32_us", "16x64_us", "64x128_us", "TFLOP/s", "GB/s", "%copy", "op_us", "dense_us",
           "oai_us", "gemv_us", "gemv%copy", "op_old_us", "oai_gemv_us");
    for (size_t i = 0; i < ARRAY_LEN(ns); i++) {
        int n = ns[i], used;
        double t[3], top, dense, oai, flops = 6.0 * n * K * HID * FFN, bytes, best;
        double gemv = NAN, top_old = NAN, oai_gemv = NAN;
        static const enum cuda_moe_tile tiles[3] = { CUDA_MOE_TILE_DECODE,
            CUDA_MOE_TILE_DECODE_WIDE, CUDA_MOE_TILE_PREFILL };

        b.n = n;
        b.kp.num_tokens = n;
        if (b.be->ops->lm_head(b.be, b.logits, b.x, &b.router, n) ||
            (used = distinct_experts(&b, n)) < 0)
            goto out;
        b.mode = 0;
        for (int v = 0; v < 3; v++) {
            b.kp.tile = tiles[v];
            t[v] = time_cold(&b);
        }
        oai = time_oai(&b, tiles[t[0] <= t[1] && t[0] <= t[2] ? 0 : t[1] <= t[2] ? 1 : 2]);
        if (n <= GEMV_BENCH_MAX) {   /* the GEMV path forced, and the op without it */
            b.kp.tile = CUDA_MOE_TILE_GEMV;
            gemv = time_cold(&b);
            oai_gemv = time_oai(&b, CUDA_MOE_TILE_GEMV);
            moe_cuda_set_gemv_max(0);
            b.mode = 1;
            top_old = time_cold(&b);
            moe_cuda_set_gemv_max(-1);
        }
        b.kp.tile = CUDA_MOE_TILE_AUTO;
        b.mode = 1;
        top = time_cold(&b);
        b.mode = 2;
        dense = time_cold(&b);
        best = fmin(fmin(t[0], t[1]), t[2]);
        bytes = (double)used * expert * 2 + (double)n * HID * 2 + (double)n * K * HID * 2;
        printf("%5d %7d %9.1f %9.1f %10.1f %9.1f %9.0f %7.0f%% %9.1f %9.1f %9.1f %8.1f %8.0f%% %9.1f "
               "%11.1f\n", n, used, t[0] * 1e6, t[1] * 1e6, t[2] * 1e6, flops / best / 1e12,
               bytes / best / 1e9, 100.0 * bytes / best / 1e9 / gbs, top * 1e6, dense * 1e6,
               oai * 1e6, gemv * 1e6, 100.0 * bytes / gemv / 1e9 / gbs, top_old * 1e6,
               oai_gemv * 1e6);
        fflush(stdout);
    }
    printf("experts: the grouped GEMMs with routing and grouping, per tile shape; TFLOP/s and GB/s (distinct experts' weights + x + y) of the faster; op: the "
           "whole moe op (router, auto path: GEMV for n <= 4 by default, sum); dense: cuBLAS on [n*%d, %d] of the same work; oai: the experts at the "
           "fastest tile with gpt-oss's biases and clamped SwiGLU; gemv: the GEMV path forced (routing included), %%copy of the same bytes; "
           "op_old: the whole op with the GEMV path off; oai_gemv: the GEMV path with gpt-oss's biases and SwiGLU\n", K, HID);
    rc = 0;
out:
    if (b.be) {
        void *bufs[] = { b.flush, b.x, b.out, b.logits, b.y, b.kwork, b.work, b.big_x, b.big_gu, b.big_act,
                         b.bias };
        for (size_t i = 0; i < ARRAY_LEN(bufs); i++)
            if (bufs[i])
                b.be->ops->free(b.be, bufs[i]);
        for (int e = 0; e < E; e++) {
            if (b.gu[e].data)
                b.be->ops->free_weight(b.be, &b.gu[e]);
            if (b.dn[e].data)
                b.be->ops->free_weight(b.be, &b.dn[e]);
        }
        if (b.router.data)
            b.be->ops->free_weight(b.be, &b.router);
        if (b.dense_gu.data)
            b.be->ops->free_weight(b.be, &b.dense_gu);
        if (b.dense_dn.data)
            b.be->ops->free_weight(b.be, &b.dense_dn);
        backend_destroy(b.be);
    }
    free(h);
    free(xf);
    return rc;
}

#endif

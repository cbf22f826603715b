/* bench.c — `osprey-gpu-tests --bench`: the kernel figures of docs/BENCHMARKS.md. The
 * device-to-device copy bandwidth is the yardstick; cache_update (unfused after rope, and
 * fused with it) and decode attention over long contexts are reported as a share of it,
 * prefill attention in TFLOP/s (scripts/gpu/sdpa_bench.py times PyTorch on the same
 * shapes). Shapes are the bench-1.5b model's: 32 heads, 8 KV heads, head_dim 64, blocks of
 * 16. Timings are medians of repeated runs of many launches; nothing is asserted. The
 * memory-bound kernels (cache_update, decode attention) are timed from DRAM: before each
 * launch a write of FLUSH_BYTES (five times the 50 MB L2) evicts what the last one left, and
 * CUDA events time the launch alone. That write leaves the L2 full of dirty lines, whose
 * write-back the timed launch pays (~50 MB, ~12 us): decode attention's default rows are
 * also timed after a read of the flush buffer ("clean L2"), the state a decode step finds
 * after the weight-reading products before it. Decode attention runs at head_dim 64 and
 * 128 (the llama-3.1-8b shape), each variant of attention_decode.cu beside the varlen
 * kernel it replaced (OSPREY_BENCH_ALL_VARIANTS=1; OSPREY_BENCH=decode: nothing else).
 * Prefill attention runs at head_dim 128 and 64, every shape of the varlen kernel for
 * prefills side by side (OSPREY_BENCH=prefill: nothing else). */
#ifdef OSPREY_CUDA
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>             /* cublasSasum: the clean flush */
#include <cuda_runtime_api.h>

#include "engine/base/util.h"
#include "engine/cuda/cuda_internal.h"   /* struct backend_cuda: the stream the ops run on */
#include "tests/gpu/gpu_test.h"

#define H 32
#define KVH 8
#define D 64
#define BS 16
#define REPEATS 5

#define FLUSH_BYTES ((size_t)256 << 20)

struct bench {
    struct backend *be;
    double copy_gbs;           /* measured device copy bandwidth, GB/s (read + write) */
    void *flush;               /* [FLUSH_BYTES], written between launches to empty the L2 */
    /* clean: after the write, read the flush buffer back (cublasSasum into sum), so that the
     * L2 holds clean lines only and the timed launch pays no write-back of the flush's
     * dirty ones; NULL blas: the figure of record, a dirty L2 */
    cublasHandle_t blas;
    float *sum;
};

/* Median over REPEATS of the seconds one call of fn takes, each repeat `iters` calls. */
static double time_op(struct bench *bn, int iters, int (*fn)(struct bench *, void *), void *arg)
{
    double t[REPEATS];

    if (fn(bn, arg) || cudaDeviceSynchronize() != cudaSuccess)   /* warm up */
        return NAN;
    for (int r = 0; r < REPEATS; r++) {
        double t0 = now_s();
        for (int i = 0; i < iters; i++)
            if (fn(bn, arg))
                return NAN;
        if (cudaDeviceSynchronize() != cudaSuccess)
            return NAN;
        t[r] = (now_s() - t0) / iters;
    }
    return gt_median(t, REPEATS);
}

/* Median over `iters` launches of the seconds one call of fn takes with a cold L2: the
 * flush runs before each launch, outside the events that time it. */
static double time_op_dram(struct bench *bn, int iters, int (*fn)(struct bench *, void *), void *arg)
{
    cudaStream_t st = ((struct backend_cuda *)bn->be)->stream;   /* where the ops run */
    double *t = calloc(iters, sizeof *t), med = NAN;
    cudaEvent_t e0 = NULL, e1 = NULL;
    float ms;

    if (!t || cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess ||
        fn(bn, arg) || cudaDeviceSynchronize() != cudaSuccess)   /* warm up */
        goto out;
    for (int i = 0; i < iters; i++) {
        if (cudaMemsetAsync(bn->flush, i & 0xff, FLUSH_BYTES, st) != cudaSuccess ||
            (bn->blas && (cublasSetStream(bn->blas, st) != CUBLAS_STATUS_SUCCESS ||
                          cublasSasum(bn->blas, (int)(FLUSH_BYTES / 4), bn->flush, 1, bn->sum) !=
                              CUBLAS_STATUS_SUCCESS)) ||
            cudaEventRecord(e0, st) != cudaSuccess || fn(bn, arg) ||
            cudaEventRecord(e1, st) != cudaSuccess || cudaEventSynchronize(e1) != cudaSuccess ||
            cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
            goto out;
        t[i] = ms / 1e3;
    }
    med = gt_median(t, iters);
out:
    if (e0)
        cudaEventDestroy(e0);
    if (e1)
        cudaEventDestroy(e1);
    free(t);
    return med;
}

/* ---- copy bandwidth ---- */

struct copy_arg {
    void *dst, *src;
    size_t bytes;
};

static int copy_once(struct bench *bn, void *arg)
{
    struct copy_arg *c = arg;

    return cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, 0) == cudaSuccess ? 0 : -1;
}

static void bench_copy(struct bench *bn)
{
    char err[ERR_LEN] = "";
    struct copy_arg c = { .bytes = (size_t)1 << 30 };
    double s;

    c.src = bn->be->ops->alloc(bn->be, c.bytes, err);
    c.dst = bn->be->ops->alloc(bn->be, c.bytes, err);
    if (!c.src || !c.dst) {
        printf("copy: %s\n", err);
        goto out;
    }
    s = time_op(bn, 10, copy_once, &c);
    bn->copy_gbs = 2.0 * c.bytes / s / 1e9;
    printf("device copy 1 GiB: %.3f ms, %.0f GB/s (read + write)\n", s * 1e3, bn->copy_gbs);
out:
    bn->be->ops->free(bn->be, c.src);
    bn->be->ops->free(bn->be, c.dst);
}

/* ---- cache_update and the fused rope_cache_update ---- */

struct cu_arg {
    int n;
    void *qkv, *k_cache, *v_cache;
    int64_t *slots;
    int32_t *positions;
    float *inv_freq;
    struct cache_layout l;
    bool fused;
};

static int cache_once(struct bench *bn, void *arg)
{
    struct cu_arg *a = arg;
    const struct backend_ops *op = bn->be->ops;
    int stride = (H + 2 * KVH) * D, rc;
    char *q = a->qkv, *k = q + (size_t)H * D * 2, *v = k + (size_t)KVH * D * 2;
    struct rope_params rp = { H, KVH, D, stride, a->inv_freq, D, 1.0f };

    if (a->fused)
        return op->rope_cache_update(bn->be, q, k, v, a->positions, a->slots, a->n, &rp,
                                     a->k_cache, a->v_cache, &a->l);
    if ((rc = op->rope(bn->be, q, k, a->positions, a->n, &rp)))
        return rc;
    return op->cache_update(bn->be, k, v, stride, a->slots, a->n, a->k_cache, a->v_cache, &a->l);
}

static int cache_only(struct bench *bn, void *arg)
{
    struct cu_arg *a = arg;
    char *k = (char *)a->qkv + (size_t)H * D * 2, *v = k + (size_t)KVH * D * 2;

    return bn->be->ops->cache_update(bn->be, k, v, (H + 2 * KVH) * D, a->slots, a->n,
                                     a->k_cache, a->v_cache, &a->l);
}

static void bench_cache_update(struct bench *bn, int n)
{
    const struct backend_ops *op = bn->be->ops;
    char err[ERR_LEN] = "";
    struct cu_arg a = { .n = n, .l = { n / BS + 1, BS, KVH, D, DT_F32, 0, 0 } };
    size_t cache_bytes = (size_t)a.l.num_blocks * BS * KVH * D * 2;
    int64_t *slots = malloc(n * sizeof *slots);
    int32_t *pos = malloc(n * sizeof *pos);
    float inv[D / 2];
    double kv_bytes = 2.0 * n * KVH * D * 2, rope_bytes = 2.0 * n * (H + KVH) * D * 2;
    double t_cache, t_pair, t_fused;

    a.qkv = op->alloc(bn->be, (size_t)n * (H + 2 * KVH) * D * 2, err);
    a.k_cache = op->alloc(bn->be, cache_bytes, err);
    a.v_cache = op->alloc(bn->be, cache_bytes, err);
    a.slots = op->alloc(bn->be, n * sizeof *slots, err);
    a.positions = op->alloc(bn->be, n * sizeof *pos, err);
    a.inv_freq = op->alloc(bn->be, sizeof inv, err);
    if (!slots || !pos || !a.qkv || !a.k_cache || !a.v_cache || !a.slots || !a.positions || !a.inv_freq) {
        printf("cache_update: out of memory %s\n", err);
        goto out;
    }
    /* a shuffled block order, as a long-running cache has */
    for (int i = 0; i < n; i++) {
        int blk = (int)((i / BS) * 7919L % a.l.num_blocks);
        slots[i] = (int64_t)blk * BS + i % BS;
        pos[i] = i;
    }
    for (int i = 0; i < D / 2; i++)
        inv[i] = powf(500000.0f, -2.0f * i / D);
    if (op->upload(bn->be, a.slots, slots, n * sizeof *slots) ||
        op->upload(bn->be, a.positions, pos, n * sizeof *pos) ||
        op->upload(bn->be, a.inv_freq, inv, sizeof inv))
        goto out;
    t_cache = time_op_dram(bn, 100, cache_only, &a);
    t_pair = time_op_dram(bn, 100, cache_once, &a);
    a.fused = true;
    t_fused = time_op_dram(bn, 100, cache_once, &a);
    /* cache_update reads k and v and writes them: 2 × kv bytes. The fused kernel also reads
     * and writes q and k (rope_bytes), reads v and writes k and v to the cache (1.5 × kv). */
    printf("cache_update %5d tokens: %7.2f us, %6.0f GB/s = %4.0f%% of copy\n", n, t_cache * 1e6,
           2 * kv_bytes / t_cache / 1e9, 100.0 * 2 * kv_bytes / t_cache / 1e9 / bn->copy_gbs);
    printf("rope + cache_update %5d tokens: %7.2f us; fused rope_cache_update %7.2f us "
           "(%.0f GB/s moved by the fused kernel, %.2fx)\n", n, t_pair * 1e6, t_fused * 1e6,
           (rope_bytes + 1.5 * kv_bytes) / t_fused / 1e9, t_pair / t_fused);
out:
    free(slots);
    free(pos);
    op->free(bn->be, a.qkv);
    op->free(bn->be, a.k_cache);
    op->free(bn->be, a.v_cache);
    op->free(bn->be, a.slots);
    op->free(bn->be, a.positions);
    op->free(bn->be, a.inv_freq);
}

/* ---- attention: decodes over long contexts, and causal prefills ---- */

/* One attention shape on a backend sized for it: reqs requests of seq tokens each, q_len new
 * tokens each (1: decodes), h query heads and kvh KV heads of head_dim d, over a bf16 or an
 * fp8 (e4m3, one byte an element) cache. */
struct attn_arg {
    struct backend *be;
    void *out, *q, *k_cache, *v_cache;
    struct step_batch b;
    struct bk_batch dev;
    struct attn_params p;
    int q_stride;
    double kv_bytes;           /* the K and V bytes of the keys: what attention must read */
};

static int attn_once(struct bench *bn, void *arg)
{
    struct attn_arg *a = arg;

    return a->be->ops->attention(a->be, a->out, a->q, a->q_stride, a->k_cache, a->v_cache,
                                 &a->dev, 0, &a->p);
}

static void attn_shape_free(struct attn_arg *a)
{
    if (a->be) {
        a->be->ops->free(a->be, a->q);
        a->be->ops->free(a->be, a->out);
        a->be->ops->free(a->be, a->k_cache);
        a->be->ops->free(a->be, a->v_cache);
        backend_destroy(a->be);
    }
    batch_fini(&a->b);
    memset(a, 0, sizeof *a);
}

static bool attn_shape(struct attn_arg *a, int reqs, int seq, int q_len, int h, int kvh, int d,
                       bool fp8)
{
    char err[ERR_LEN] = "";
    int mb = (seq + BS - 1) / BS, T = reqs * q_len, nb = reqs * mb;
    size_t es = fp8 ? 1 : 2, cache_bytes = (size_t)nb * BS * kvh * d * es;
    struct backend_options o = { .max_tokens = T, .max_reqs = reqs, .max_blocks_per_req = mb,
                                 .num_kv_groups = 1, .vocab_size = 16 };
    struct step_batch *b = &a->b;

    memset(a, 0, sizeof *a);
    /* a backend sized for this batch: stage() checks the batch against its options */
    if (backend_create(&a->be, "cuda", &o, err) || batch_init(b, T, reqs, 1, mb)) {
        printf("attention: %s\n", err);
        goto fail;
    }
    b->num_reqs = b->num_reqs_padded = reqs;
    b->num_tokens = b->num_tokens_padded = T;
    b->max_query_len = q_len;
    b->max_seq_len = seq;
    b->query_start_loc[0] = 0;
    for (int r = 0; r < reqs; r++) {
        b->query_start_loc[r + 1] = (r + 1) * q_len;
        b->seq_lens[r] = seq;
        for (int j = 0; j < mb; j++)   /* interleaved blocks: requests' blocks are not adjacent */
            b->block_table[0][(size_t)r * mb + j] = j * reqs + r;
    }
    for (int i = 0; i < T; i++)
        b->slot_mapping[0][i] = KV_PADDING_SLOT;
    a->q_stride = (h + 2 * kvh) * d;
    a->q = a->be->ops->alloc(a->be, (size_t)T * a->q_stride * 2, err);
    a->out = a->be->ops->alloc(a->be, (size_t)T * h * d * 2, err);
    a->k_cache = a->be->ops->alloc(a->be, cache_bytes, err);
    a->v_cache = a->be->ops->alloc(a->be, cache_bytes, err);
    if (!a->q || !a->out || !a->k_cache || !a->v_cache ||
        a->be->ops->stage(a->be, b, NULL, &a->dev)) {
        printf("attention: out of memory %s\n", err);
        goto fail;
    }
    /* zeros: finite in bf16 and in e4m3 alike */
    if (cudaMemset(a->k_cache, 0, cache_bytes) != cudaSuccess ||
        cudaMemset(a->v_cache, 0, cache_bytes) != cudaSuccess ||
        cudaMemset(a->q, 0, (size_t)T * a->q_stride * 2) != cudaSuccess)
        goto fail;
    a->p = (struct attn_params){ h, kvh, d, 1.0f / sqrtf(d), 0.0f, 0,
                                 { nb, BS, kvh, d, fp8 ? DT_F8_E4M3 : DT_F32, 1.0f, 1.0f }, NULL };
    a->kv_bytes = 2.0 * reqs * seq * kvh * d * es;
    return true;
fail:
    attn_shape_free(a);
    return false;
}

/* Seconds one launch of the shape takes (decodes from DRAM, prefills back to back); clean:
 * from a clean L2 (struct bench). */
static double attn_time_l2(struct bench *bn, struct attn_arg *a, int q_len, bool clean)
{
    struct bench local = { a->be, bn->copy_gbs, bn->flush, clean ? bn->blas : NULL, bn->sum };

    return q_len == 1 ? time_op_dram(&local, 50, attn_once, a) : time_op(&local, 10, attn_once, a);
}

static double attn_time(struct bench *bn, struct attn_arg *a, int q_len)
{
    struct bench local = { a->be, bn->copy_gbs, bn->flush, NULL, NULL };

    return q_len == 1 ? time_op_dram(&local, 50, attn_once, a) : time_op(&local, 10, attn_once, a);
}

/* Decode attention of each shape at head_dim 64 (bench-1.5b) and 128 (llama-3.1-8b): the
 * decode kernel's default, its other compiled variants and split targets, and the varlen
 * kernel it replaced, bf16 and fp8, as a share of the copy bandwidth. */
static void bench_decode_attention(struct bench *bn)
{
    static const int shapes[][2] = { { 1, 32768 }, { 1, 131072 }, { 8, 8192 }, { 64, 4096 },
                                     { 256, 1024 }, { 256, 2048 } };
    static const int dims[] = { 64, 128 };
    /* (variant, waves, flags) of attention_decode_cuda_tune: the default, the varlen kernel,
     * the merge launched as a dependent, one wave less and more, the other instantiations
     * (those that do not exist for a shape are skipped), and the default's loads alone */
    static const int tries[][3] = { { 0, 0, 0 }, { -1, 0, 0 }, { 0, 0, 1 }, { 0, 2, 0 },
                                    { 1, 0, 0 }, { 2, 0, 0 }, { 3, 0, 0 }, { 4, 0, 0 },
                                    { 5, 0, 0 }, { 6, 0, 0 }, { 7, 0, 0 }, { 8, 0, 0 },
                                    { 9, 0, 0 }, { 100, 0, 0 } };
    const char *all = getenv("OSPREY_BENCH_ALL_VARIANTS");

    for (size_t di = 0; di < ARRAY_LEN(dims); di++)
        for (size_t si = 0; si < ARRAY_LEN(shapes); si++)
            for (int f = 0; f < 2; f++) {
                struct attn_arg a;
                const int *sh = shapes[si];
                double best = INFINITY;
                int best_i = 0;

                if (!attn_shape(&a, sh[0], sh[1], 1, H, KVH, dims[di], f))
                    continue;
                for (size_t ti = 0; ti < (all ? ARRAY_LEN(tries) : 2); ti++) {
                    char name[96];
                    double s;
                    if (attention_decode_cuda_tune(dims[di], f, tries[ti][0], tries[ti][1],
                                                   tries[ti][2], name, sizeof name))
                        continue;
                    s = attn_time(bn, &a, 1);
                    printf("decode attention %-4s D %3d %3d x %6d: %8.1f us, %6.0f GB/s of K+V = "
                           "%4.0f%% of copy  [%s]\n", f ? "fp8" : "bf16", dims[di], sh[0], sh[1],
                           s * 1e6, a.kv_bytes / s / 1e9, 100.0 * a.kv_bytes / s / 1e9 / bn->copy_gbs,
                           name);
                    if (tries[ti][1] == 0 && tries[ti][2] == 0 && tries[ti][0] <= 0 && bn->blas) {
                        double c = attn_time_l2(bn, &a, 1, true);
                        printf("decode attention %-4s D %3d %3d x %6d: %8.1f us, %6.0f GB/s of K+V = "
                               "%4.0f%% of copy  [%s, clean L2]\n", f ? "fp8" : "bf16", dims[di],
                               sh[0], sh[1], c * 1e6, a.kv_bytes / c / 1e9,
                               100.0 * a.kv_bytes / c / 1e9 / bn->copy_gbs, name);
                    }
                    if (tries[ti][0] >= 0 && tries[ti][0] < 100 && s < best)
                        best = s, best_i = (int)ti;
                }
                if (all)
                    printf("  best for %s D %d %d x %d: variant %d waves %d flags %d, %.1f us = "
                           "%.0f%% of copy\n", f ? "fp8" : "bf16", dims[di], sh[0], sh[1],
                           tries[best_i][0], tries[best_i][1], tries[best_i][2], best * 1e6,
                           100.0 * a.kv_bytes / best / 1e9 / bn->copy_gbs);
                attention_decode_cuda_tune(dims[di], f, 0, 0, 0, NULL, 0);
                attn_shape_free(&a);
            }
}

/* gpt-oss's attention sinks at its attention shape (64 heads, 8 KV heads, head_dim 64): the
 * same launches with and without sinks, decodes (split and not) and a prefill; the sinks
 * only touch the epilogues and merges, so the two should time the same. */
static void bench_sinks_attention(struct bench *bn)
{
    static const int shapes[][2] = { { 1, 32768 }, { 64, 4096 }, { 256, 1024 }, { 1, 4096 } };

    for (size_t si = 0; si < ARRAY_LEN(shapes); si++) {
        int reqs = shapes[si][0], seq = shapes[si][1], q_len = si == 3 ? seq : 1;
        char err[ERR_LEN] = "";
        struct attn_arg a;
        double s[2];
        float *sinks;

        if (!attn_shape(&a, reqs, seq, q_len, 64, 8, 64, false))
            continue;
        if (!(sinks = a.be->ops->alloc(a.be, 64 * sizeof *sinks, err))) {   /* zeros */
            printf("sinks attention: %s\n", err);
            attn_shape_free(&a);
            continue;
        }
        s[0] = attn_time(bn, &a, q_len);
        a.p.sinks = sinks;
        s[1] = attn_time(bn, &a, q_len);
        printf("gpt-oss attention H 64/8 D 64 %3d x %5d %s: %8.1f us without sinks, %8.1f us "
               "with (%+.1f%%)\n", reqs, seq, q_len == 1 ? "decode " : "prefill", s[0] * 1e6,
               s[1] * 1e6, 100.0 * (s[1] - s[0]) / s[0]);
        a.be->ops->free(a.be, sinks);
        attn_shape_free(&a);
    }
}

/* Prefill attention, one causal request of L tokens (32 query heads, 8 KV heads, bf16), at
 * head_dim 128 (llama-3.1-8b) and 64 (bench-1.5b): every shape of the varlen kernel for
 * batches with a prefill (attention_prefill_cuda_tune: the default and the prefill
 * variants), side by side in TFLOP/s, back to back from L2 as SDPA is timed. The first row
 * of each L is the default's. */
static void bench_prefill_attention(struct bench *bn)
{
    static const int lens[] = { 512, 1024, 2048, 4096, 8192 };
    static const int dims[] = { 128, 64 };

    for (size_t di = 0; di < ARRAY_LEN(dims); di++)
        for (size_t li = 0; li < ARRAY_LEN(lens); li++) {
            int L = lens[li], d = dims[di];
            double flops = 4.0 * H * d * ((double)L * (L + 1) / 2);   /* causal: QKᵀ and PV */
            struct attn_arg a;
            char name[64];

            if (!attn_shape(&a, 1, L, L, H, KVH, d, false))
                continue;
            for (int v = -1; attention_prefill_cuda_tune(v, name, sizeof name) == 0; v++) {
                double s = attn_time(bn, &a, L);
                printf("prefill attention D %3d 1 x %5d causal: %8.1f us, %6.1f TFLOP/s  [%s]\n",
                       d, L, s * 1e6, flops / s / 1e12, name);
            }
            attention_prefill_cuda_tune(-1, NULL, 0);
            attn_shape_free(&a);
        }
}

int gt_bench(void)
{
    struct backend_options o = { .max_tokens = 1, .max_reqs = 1, .max_blocks_per_req = 1,
                                 .num_kv_groups = 1, .vocab_size = 16 };
    struct bench bn = { 0 };
    char err[ERR_LEN] = "";
    /* OSPREY_BENCH=decode: the copy and decode attention only (the device windows);
     * OSPREY_BENCH=prefill: the copy and prefill attention only */
    const char *only = getenv("OSPREY_BENCH");
    bool only_decode = only && !strcmp(only, "decode"), only_prefill = only && !strcmp(only, "prefill");

    if (backend_create(&bn.be, "cuda", &o, err)) {
        printf("bench: %s\n", err);
        return 1;
    }
    printf("kernel benchmarks: H %d, KV heads %d, head_dim %d, block %d, bf16 (decode attention\n"
           "also over an fp8 e4m3 cache)\n", H, KVH, D, BS);
    bench_copy(&bn);
    bn.flush = bn.be->ops->alloc(bn.be, FLUSH_BYTES, err);
    if (bn.copy_gbs <= 0 || !bn.flush) {
        printf("bench: %s\n", bn.flush ? "no copy bandwidth" : err);
        bn.be->ops->free(bn.be, bn.flush);
        backend_destroy(bn.be);
        return 1;
    }
    bn.sum = bn.be->ops->alloc(bn.be, sizeof(float), err);
    if (!bn.sum || cublasCreate(&bn.blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetPointerMode(bn.blas, CUBLAS_POINTER_MODE_DEVICE) != CUBLAS_STATUS_SUCCESS) {
        printf("bench: no cuBLAS handle for the clean flush; dirty-L2 figures only\n");
        if (bn.blas)
            cublasDestroy(bn.blas);
        bn.blas = NULL;
    }
    if (only_prefill) {
        bench_prefill_attention(&bn);
        goto done;
    }
    for (int n = 1; n <= 16384 && !only_decode; n *= 16)
        bench_cache_update(&bn, n);
    if (!only_decode)
        bench_cache_update(&bn, 8192);
    bench_decode_attention(&bn);
    bench_sinks_attention(&bn);
    if (only_decode)
        goto done;
    bench_prefill_attention(&bn);
    gt_bench_gemm();
    gt_bench_fp8_gemm();
done:
    if (bn.blas)
        cublasDestroy(bn.blas);
    bn.be->ops->free(bn.be, bn.sum);
    bn.be->ops->free(bn.be, bn.flush);
    backend_destroy(bn.be);
    return 0;
}

#endif

/* moe.cu — the mixture-of-experts block's kernels: top-k routing from the router's f32
 * logits (plus gpt-oss's router bias), the (token, slot) pairs grouped by expert (a stable
 * counting sort, each expert's rows padded to the GEMM's M tile, after vLLM's
 * moe_align_block_size), the grouped GEMMs on bf16 mma.sync tensor cores (gate_up with
 * SiLU·mul, or gpt-oss's biases and clamped SwiGLU, in the epilogue, then down (plus its
 * bias) times the routing weight), or for steps of a few tokens the same two products as
 * GEMVs, one (token, slot) pair a grid row, and each token's sum of its k outputs in a
 * fixed order.
 * The router's product and Qwen2-MoE's shared expert are cuBLAS products
 * (engine/cuda/cuda_moe.c). CPU twin: engine/cpu/moe.c; test: tests/gpu/test_moe.c. */
#include "kernels/common.cuh"
#include "kernels/gemv.cuh"   /* ld_weights: the GEMVs' streaming load */

/* ---- routing: softmax and top-k, one warp per row ---- */

/* Softmax and top-k of one row of E logits (plus bias[E] when not NULL, in f32 as the CPU's
 * biased router product) by one warp; lane 0 writes the k ids and weights. EPL = experts per
 * lane (E <= 32 * EPL). Ties: the lower expert id first, as engine/cpu/moe.c's route_row,
 * which compares the probabilities. */
template <int EPL>
__device__ __forceinline__ void topk_row(const float *logits, const bf16 *bias, int E, int k,
                                         bool renormalize, int lane, int32_t *ids, float *wts)
{
    float p[EPL], m = -INFINITY, sum = 0.0f, sel_w[CUDA_MOE_MAX_TOP_K];
    int sel_e[CUDA_MOE_MAX_TOP_K];

#pragma unroll
    for (int i = 0; i < EPL; i++) {
        int e = lane + 32 * i;
        p[i] = e < E ? logits[e] + (bias ? __bfloat162float(bias[e]) : 0.0f) : -INFINITY;
        m = fmaxf(m, p[i]);
    }
    m = warp_max(m);
#pragma unroll
    for (int i = 0; i < EPL; i++) {
        p[i] = lane + 32 * i < E ? expf(p[i] - m) : 0.0f;
        sum += p[i];
    }
    sum = warp_sum(sum);
    /* probabilities are >= 0: -1 marks an expert that does not exist, -2 one taken */
#pragma unroll
    for (int i = 0; i < EPL; i++)
        p[i] = lane + 32 * i < E ? p[i] / sum : -1.0f;
#pragma unroll
    for (int j = 0; j < CUDA_MOE_MAX_TOP_K; j++) {
        float bv = -3.0f;
        int be = 0x7fffffff;

        if (j >= k)
            break;
#pragma unroll
        for (int i = 0; i < EPL; i++)
            if (p[i] > bv) {   /* ascending ids within a lane: strict keeps the lowest */
                bv = p[i];
                be = lane + 32 * i;
            }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oe = __shfl_xor_sync(0xffffffffu, be, o);
            if (ov > bv || (ov == bv && oe < be)) {
                bv = ov;
                be = oe;
            }
        }
#pragma unroll
        for (int i = 0; i < EPL; i++)
            if (lane + 32 * i == be)
                p[i] = -2.0f;
        sel_e[j] = be;
        sel_w[j] = bv;
    }
    if (lane != 0)
        return;
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < CUDA_MOE_MAX_TOP_K; j++)
        if (j < k)
            s += sel_w[j];
#pragma unroll
    for (int j = 0; j < CUDA_MOE_MAX_TOP_K; j++)
        if (j < k) {
            ids[j] = sel_e[j];
            wts[j] = renormalize ? sel_w[j] / s : sel_w[j];
        }
}

/* grid ceil(n / 4), block 128: one warp per row */
template <int EPL>
__global__ void moe_topk_kernel(const float *logits, const bf16 *bias, int n, int E, int k,
                                bool renormalize, int32_t *ids, float *wts)
{
    int row = blockIdx.x * 4 + (threadIdx.x >> 5);

    if (row < n)
        topk_row<EPL>(logits + (size_t)row * E, bias, E, k, renormalize, threadIdx.x & 31,
                      ids + (size_t)row * k, wts + (size_t)row * k);
}

/* ---- grouping: the pairs sorted by expert, each expert's rows padded to bm ---- */

#define ALIGN_THREADS 1024

/* One block of ALIGN_THREADS. sorted_pair[max_tiles * bm]: the pair (t * k + j) of each
 * row, -1 for padding; tile_expert[max_tiles]: the expert of each tile of bm rows, -1 past
 * the last. Within an expert, pairs keep their order (a stable sort: the layout, and so
 * any result, does not depend on scheduling). With logits (few rows: a decode step), the
 * block first routes the rows itself, one warp per row, which saves a launch. */
template <int EPL>
__global__ void __launch_bounds__(ALIGN_THREADS)
moe_align_kernel(const float *logits, const bf16 *bias, int n, int k, bool renormalize,
                 int32_t *ids, float *wts, int E, int bm, int max_tiles, int32_t *sorted_pair,
                 int32_t *tile_expert)
{
    __shared__ int cnt[CUDA_MOE_MAX_EXPERTS], base[CUDA_MOE_MAX_EXPERTS];
    __shared__ int tile_off[CUDA_MOE_MAX_EXPERTS + 1];
    __shared__ int wc[(ALIGN_THREADS / 32) * CUDA_MOE_MAX_EXPERTS];   /* [warp][expert] */
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nwarps = blockDim.x >> 5;
    int P = n * k;

    if (logits) {
        for (int r = warp; r < n; r += nwarps)
            topk_row<EPL>(logits + (size_t)r * E, bias, E, k, renormalize, lane,
                          ids + (size_t)r * k, wts + (size_t)r * k);
        __syncthreads();   /* the block's own global writes are visible to it after this */
    }
    for (int e = tid; e < E; e += blockDim.x)
        cnt[e] = 0;
    for (int i = tid; i < nwarps * E; i += blockDim.x)
        wc[i] = 0;
    __syncthreads();
    for (int i = tid; i < P; i += blockDim.x)
        atomicAdd(&cnt[ids[i]], 1);   /* integer counts: the order of the adds is moot */
    __syncthreads();
    if (tid == 0) {
        int t = 0;
        for (int e = 0; e < E; e++) {
            tile_off[e] = t;
            t += (cnt[e] + bm - 1) / bm;
        }
        tile_off[E] = t;
    }
    __syncthreads();
    for (int e = tid; e < E; e += blockDim.x) {
        base[e] = tile_off[e] * bm;
        for (int t = tile_off[e]; t < tile_off[e + 1]; t++)
            tile_expert[t] = e;
    }
    for (int t = tile_off[E] + tid; t < max_tiles; t += blockDim.x)
        tile_expert[t] = -1;
    for (int r = tid; r < max_tiles * bm; r += blockDim.x)
        sorted_pair[r] = -1;
    __syncthreads();
    /* Chunks of blockDim pairs in order: a pair's row is its expert's base, plus the pairs of
     * the same expert in earlier warps of the chunk, plus those in earlier lanes. */
    for (int c0 = 0; c0 < P; c0 += blockDim.x) {
        int i = c0 + tid, e = i < P ? ids[i] : -1;
        unsigned peers = __match_any_sync(0xffffffffu, e);
        int rank = __popc(peers & ((1u << lane) - 1));

        if (e >= 0 && rank == 0)
            wc[warp * E + e] = __popc(peers);
        __syncthreads();
        if (e >= 0) {
            int row = base[e] + rank;
            for (int w = 0; w < warp; w++)
                row += wc[w * E + e];
            sorted_pair[row] = i;
        }
        __syncthreads();
        for (int x = tid; x < E; x += blockDim.x) {
            int s = 0;
            for (int w = 0; w < nwarps; w++)
                s += wc[w * E + x];
            base[x] += s;
        }
        __syncthreads();
        if (e >= 0 && rank == 0)
            wc[warp * E + e] = 0;   /* only the entries set: the next chunk starts clean */
        __syncthreads();
    }
}

/* ---- the grouped GEMM ---- */

enum { MOE_GATE_UP, MOE_DOWN };

struct moe_gemm_args {
    const bf16 *a;             /* GATE_UP: x [n, K] (row = pair / top_k); DOWN: act [P, K] (row = pair) */
    const int32_t *sorted_pair, *tile_expert;
    const float *wts;          /* [P] routing weights (DOWN) */
    bf16 *out;                 /* GATE_UP: act [P, N]; DOWN: y [P, N] */
    int K, N, top_k;           /* GATE_UP: the weight has 2N rows, gate then up */
    int act;                   /* GATE_UP: enum cuda_moe_act */
    float alpha, limit;        /* CUDA_MOE_ACT_SWIGLU_OAI */
};

/* Each expert's weight and bias (GATE_UP [2N], DOWN [N]; NULL: none). Two pointer tables of
 * 2 KiB each: over the classic 4 KiB of kernel parameters, within sm_70+'s 32 KiB (CUDA 12.1+). */
struct moe_expert_ptrs {
    const bf16 *w[CUDA_MOE_MAX_EXPERTS];
    const bf16 *b[CUDA_MOE_MAX_EXPERTS];
};

/* The experts' activation of one (gate, up) pair in f32 (enum cuda_moe_act): SiLU as
 * activation.cu's, or gpt-oss's clamped SwiGLU as engine/cpu/activation.c's
 * swiglu_oai_mul_cpu (gate clamped above only, up on both sides, up + 1). */
__device__ __forceinline__ float moe_act(float gt, float up, const struct moe_gemm_args &g)
{
    if (g.act == CUDA_MOE_ACT_SWIGLU_OAI) {
        float x = fminf(gt, g.limit), y = fmaxf(fminf(up, g.limit), -g.limit);
        return (y + 1.0f) * x / (1.0f + expf(-g.alpha * x));
    }
    return gt / (1.0f + expf(-gt)) * up;
}

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool valid)
{
    unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    int bytes = valid ? 16 : 0;   /* 0: the 16 bytes are zero-filled, nothing is read */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(bytes));
}

__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::);
}

template <int N>
__device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(unsigned r[4], const void *smem)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

/* d += a · b: a 16x16 bf16 (row), b 16x8 bf16 (col), f32 accumulators */
__device__ __forceinline__ void mma_bf16(float d[4], const unsigned a[4], unsigned b0, unsigned b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* One CTA: BM rows of one expert (a tile of sorted_pair) times BN columns of its weight.
 * Warps WM x WN, each (BM / WM) x (BN / WN) of the tile; BK-deep stages, STAGES of them in
 * flight (cp.async). Shared memory rows are padded by 8 bf16 so that ldmatrix's eight
 * 16-byte rows fall in distinct banks. VEC: K % 8 == 0 and 16-byte aligned rows, loaded by
 * cp.async; else element by element (odd shapes of tests). GATE_UP: the tile's columns
 * are BN/2 gate rows of the weight and the matching BN/2 up rows, so the epilogue has both
 * halves of silu(gate) * up. */
/* Dynamic shared memory of a tile shape: the pipeline's stages, reused by the epilogue. */
template <int BM, int BN, int BK, int STAGES>
constexpr int gemm_smem_bytes()
{
    return STAGES * (BM + BN) * (BK + 8) * 2 > BM * (BN + 4) * 4 ? STAGES * (BM + BN) * (BK + 8) * 2
                                                                 : BM * (BN + 4) * 4;
}

template <int BM, int BN, int BK, int WM, int WN, int STAGES, int MODE, bool VEC>
__global__ void __launch_bounds__(WM * WN * 32)
moe_gemm_kernel(const struct moe_gemm_args g, const struct moe_expert_ptrs ptrs)
{
    constexpr int THREADS = WM * WN * 32, LD = BK + 8, WTM = BM / WM, WTN = BN / WN;
    constexpr int MT = WTM / 16, NT = WTN / 8, KC = BK / 8;   /* 8-element chunks per row */
    constexpr int A_CHUNKS = BM * KC / THREADS, B_CHUNKS = BN * KC / THREADS;
    static_assert(BM % (16 * WM) == 0 && BN % (16 * WN) == 0 && BK % 16 == 0, "tile shape");
    static_assert(BM * KC % THREADS == 0 && BN * KC % THREADS == 0, "chunks per thread");
    extern __shared__ __align__(16) unsigned char smem[];   /* gemm_smem_bytes */
    __shared__ int rows[BM];
    bf16 *sa = reinterpret_cast<bf16 *>(smem);              /* [STAGES][BM][LD] */
    bf16 *sb = sa + STAGES * BM * LD;                       /* [STAGES][BN][LD] */
    int tile = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int wm = warp / WN, wn = warp % WN;
    int e = g.tile_expert[tile];
    int n0 = MODE == MOE_GATE_UP ? blockIdx.y * (BN / 2) : blockIdx.y * BN;
    const bf16 *W = ptrs.w[e < 0 ? 0 : e], *bias = ptrs.b[e < 0 ? 0 : e];
    const bf16 *arow[A_CHUNKS], *brow[B_CHUNKS];
    float acc[MT][NT][4];

    if (e < 0)
        return;   /* past the last tile of this routing: the grid is sized for the worst */
    for (int r = tid; r < BM; r += THREADS)
        rows[r] = g.sorted_pair[(size_t)tile * BM + r];
    __syncthreads();
    /* the rows each thread loads never change along K */
#pragma unroll
    for (int c = 0; c < A_CHUNKS; c++) {
        int pair = rows[(tid + c * THREADS) / KC];
        arow[c] = pair < 0 ? nullptr
                           : g.a + (size_t)(MODE == MOE_GATE_UP ? pair / g.top_k : pair) * g.K;
    }
#pragma unroll
    for (int c = 0; c < B_CHUNKS; c++) {
        int i = (tid + c * THREADS) / KC, col;
        if (MODE == MOE_GATE_UP)
            col = i < BN / 2 ? n0 + i : n0 + i - BN / 2;
        else
            col = n0 + i;
        brow[c] = col >= g.N ? nullptr
                             : W + (size_t)(MODE == MOE_GATE_UP && i >= BN / 2 ? g.N + col : col) * g.K;
    }
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int q = 0; q < 4; q++)
                acc[i][j][q] = 0.0f;

    auto load_chunk = [&](bf16 *dst, const bf16 *src, int k) {
        if (VEC) {
            bool ok = src && k < g.K;
            cp_async16(dst, ok ? src + k : g.a, ok);
        } else {
#pragma unroll
            for (int q = 0; q < 8; q++)
                dst[q] = src && k + q < g.K ? src[k + q] : __float2bfloat16(0.0f);
        }
    };
    auto load_stage = [&](int stage, int kt) {
        int k0 = kt * BK;
#pragma unroll
        for (int c = 0; c < A_CHUNKS; c++) {
            int idx = tid + c * THREADS, r = idx / KC, kc = idx % KC * 8;
            load_chunk(sa + (stage * BM + r) * LD + kc, arow[c], k0 + kc);
        }
#pragma unroll
        for (int c = 0; c < B_CHUNKS; c++) {
            int idx = tid + c * THREADS, r = idx / KC, kc = idx % KC * 8;
            load_chunk(sb + (stage * BN + r) * LD + kc, brow[c], k0 + kc);
        }
    };

    int KT = (g.K + BK - 1) / BK;
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < KT)
            load_stage(s, s);
        cp_async_commit();
    }
    for (int kt = 0; kt < KT; kt++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();   /* stage kt has landed; stage kt - 1 is free for the prefetch */
        int nk = kt + STAGES - 1;
        if (nk < KT)
            load_stage(nk % STAGES, nk);
        cp_async_commit();
        const bf16 *a_s = sa + (kt % STAGES) * BM * LD, *b_s = sb + (kt % STAGES) * BN * LD;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            unsigned af[MT][4], bfr[NT][2];
#pragma unroll
            for (int i = 0; i < MT; i++)
                ldmatrix_x4(af[i], a_s + (wm * WTM + i * 16 + (lane & 15)) * LD + kk + (lane >> 4) * 8);
#pragma unroll
            for (int j = 0; j < NT; j += 2) {
                unsigned r[4];
                ldmatrix_x4(r, b_s + (wn * WTN + j * 8 + (lane & 7) + ((lane >> 4) << 3)) * LD +
                                   kk + ((lane >> 3) & 1) * 8);
                bfr[j][0] = r[0];
                bfr[j][1] = r[1];
                bfr[j + 1][0] = r[2];
                bfr[j + 1][1] = r[3];
            }
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < NT; j++)
                    mma_bf16(acc[i][j], af[i], bfr[j][0], bfr[j][1]);
        }
    }
    cp_async_wait<0>();
    __syncthreads();   /* the pipeline's shared memory becomes the epilogue's */

    /* accumulators → C[BM][BN + 4] (f32) → the mode's epilogue, columns across threads */
    float *C = reinterpret_cast<float *>(smem);
    constexpr int LC = BN + 4;
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++) {
            int r = wm * WTM + i * 16 + (lane >> 2), c = wn * WTN + j * 8 + (lane & 3) * 2;
            C[r * LC + c] = acc[i][j][0];
            C[r * LC + c + 1] = acc[i][j][1];
            C[(r + 8) * LC + c] = acc[i][j][2];
            C[(r + 8) * LC + c + 1] = acc[i][j][3];
        }
    __syncthreads();
    constexpr int OUT_COLS = MODE == MOE_GATE_UP ? BN / 2 : BN;
    for (int idx = tid; idx < BM * OUT_COLS; idx += THREADS) {
        int r = idx / OUT_COLS, c = idx % OUT_COLS, pair = rows[r], col = n0 + c;
        float v;

        if (pair < 0 || col >= g.N)
            continue;
        /* the biases join the f32 sums before anything else, as the CPU's biased products */
        if (MODE == MOE_GATE_UP) {
            float gt = C[r * LC + c], up = C[r * LC + BN / 2 + c];
            if (bias) {
                gt += __bfloat162float(bias[col]);
                up += __bfloat162float(bias[g.N + col]);
            }
            v = moe_act(gt, up, g);
        } else {
            v = (C[r * LC + c] + (bias ? __bfloat162float(bias[col]) : 0.0f)) * g.wts[pair];
        }
        g.out[(size_t)pair * g.N + col] = __float2bfloat16(v);
    }
}

/* ---- the GEMV path: decode steps of a few tokens ----
 * At one to four tokens the grouped GEMM's 16-row tiles are almost all padding and the
 * experts' weights are the whole cost, so each (token, slot) pair gets its own products as
 * matrix-vector ones, in the manner of quant.cu's fp8 tile GEMV: a warp takes GEMV_ROWS
 * weight rows whole, each lane the 16-byte chunks lane, lane + 32, ... of every row; its
 * x chunk (eight bf16) is loaded once for the rows, and GEMV_ROWS * GEMV_U independent
 * weight loads, which bypass L1 (each weight byte is read once a pair), are in flight
 * before the first is used. The warp's sums meet by shuffles; no shared memory, no
 * barrier. The grid is (row groups of one expert's product) x (n * k pairs), whatever the
 * routing: each block reads its pair's expert from the routing arrays on the device, so a
 * decode graph captured once replays for any routing. Pairs of one expert re-read its
 * weights (from L2 when close in time). The rounding points are the GEMM's: the activation
 * to bf16, then each weighted expert output; moe_combine_kernel sums as on the GEMM path. */

#define GEMV_WARPS 4
#define GEMV_ROWS 4   /* weight rows a warp: gate_up's 2 gate rows and their 2 up rows; down's 4 */
#define GEMV_U 4      /* chunks a row a lane per step: 16 loads of 16 bytes in flight a lane */
#define GEMV_STRIDE (32 * 8)   /* columns between one lane's chunks */

/* grid (ceil(N / (GEMV_WARPS * OUTS)), P), block GEMV_WARPS * 32; needs K % 8 == 0 and
 * 16-byte aligned rows (the launcher's vec). OUTS outputs a warp: GATE_UP 2 (columns o0,
 * o0 + 1 of act: gate rows o0, o0 + 1 and up rows N + o0, N + o0 + 1 of the [2N, K]
 * weight), DOWN 4 (columns o0 .. o0 + 3 of y). A warp past the last output re-reads the
 * last row (in bounds) and drops it. */
template <int MODE>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
moe_gemv_kernel(const struct moe_gemm_args g, const struct moe_expert_ptrs ptrs, const int32_t *ids)
{
    constexpr int OUTS = MODE == MOE_GATE_UP ? GEMV_ROWS / 2 : GEMV_ROWS;
    int pair = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int o0 = (blockIdx.x * GEMV_WARPS + warp) * OUTS, e = ids[pair];
    const bf16 *W = ptrs.w[e], *bias = ptrs.b[e];
    const bf16 *a = g.a + (size_t)(MODE == MOE_GATE_UP ? pair / g.top_k : pair) * g.K;
    const bf16 *wr[GEMV_ROWS];
    float acc[GEMV_ROWS];

    if (o0 >= g.N)
        return;   /* the whole warp: nothing below waits for the others */
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++) {
        int o = min(o0 + r % OUTS, g.N - 1);
        int row = MODE == MOE_GATE_UP && r >= OUTS ? g.N + o : o;

        wr[r] = W + (size_t)row * g.K;
        acc[r] = 0.0f;
    }
    for (int c0 = lane * 8; c0 < g.K; c0 += GEMV_U * GEMV_STRIDE) {
        uint4 q[GEMV_U][GEMV_ROWS];

        /* every load of the step first */
#pragma unroll
        for (int u = 0; u < GEMV_U; u++)
#pragma unroll
            for (int r = 0; r < GEMV_ROWS; r++)
                q[u][r] = c0 + u * GEMV_STRIDE < g.K ? ld_weights(wr[r] + c0 + u * GEMV_STRIDE)
                                                     : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < GEMV_U; u++) {
            int c = c0 + u * GEMV_STRIDE;

            if (c >= g.K)
                break;
            vec8 xv = load8(a + c);
#pragma unroll
            for (int r = 0; r < GEMV_ROWS; r++) {
                const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&q[u][r]);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    float2 f = __bfloat1622float2(h[i]);
                    acc[r] = fmaf(f.x, xv.v[2 * i], acc[r]);
                    acc[r] = fmaf(f.y, xv.v[2 * i + 1], acc[r]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++)
        acc[r] = warp_sum(acc[r]);
    if (lane != 0)
        return;
    /* the biases join the f32 sums before anything else, as in moe_gemm_kernel's epilogue */
#pragma unroll
    for (int j = 0; j < OUTS; j++) {
        int o = o0 + j;
        float v;

        if (o >= g.N)
            break;
        if (MODE == MOE_GATE_UP) {
            float gt = acc[j], up = acc[OUTS + j];
            if (bias) {
                gt += __bfloat162float(bias[o]);
                up += __bfloat162float(bias[g.N + o]);
            }
            v = moe_act(gt, up, g);
        } else {
            v = (acc[j] + (bias ? __bfloat162float(bias[o]) : 0.0f)) * g.wts[pair];
        }
        g.out[(size_t)pair * g.N + o] = __float2bfloat16(v);
    }
}

/* ---- the per-token sum ---- */

/* grid (n, ceil(hidden / 256)), block 256 */
__global__ void moe_combine_kernel(bf16 *out, const bf16 *y, int k, int hidden, const bf16 *shared,
                                   const float *shared_gate)
{
    int t = blockIdx.x, d = blockIdx.y * blockDim.x + threadIdx.x;
    float s = 0.0f;

    if (d >= hidden)
        return;
    for (int j = 0; j < k; j++)
        s += __bfloat162float(y[((size_t)t * k + j) * hidden + d]);
    if (shared) {
        float gl = shared_gate[t];
        s += 1.0f / (1.0f + expf(-gl)) * __bfloat162float(shared[(size_t)t * hidden + d]);
    }
    out[(size_t)t * hidden + d] = __float2bfloat16(s);
}

/* ---- launchers ---- */

/* The tile shapes, as <BM, BN, BK, WM, WN, STAGES>. DECODE: 16 x 32 tiles, 2 warps side by
 * side, 64-deep stages, 8 of them: few rows per expert, so the weights' bytes are the cost;
 * narrow tiles give enough CTAs (8 experts of a Qwen3-30B-A3B decode step: 384 for
 * gate_up) and deep pipelines enough bytes in flight (7 stages of 4 KiB of weights per CTA;
 * with 4 the H200 streamed a batch-1 step at 40% of its copy bandwidth, latency-bound).
 * DECODE_WIDE: 16 x 64, 4 warps. PREFILL: 64 x 128 tiles, 2 x 2 warps of 32 x 64, 64-deep
 * stages, 4 of them (110 KiB: two CTAs an SM). */
#define DECODE_CFG DEC_BM, 32, 64, 1, 2, 8
#define DECODE_WIDE_CFG DEC_BM, 64, 64, 1, 4, 6
#define PREFILL_CFG PRE_BM, 128, 64, 2, 2, 4
#define DEC_BM 16
#define PRE_BM 64

static int tile_bm(enum cuda_moe_tile t)
{
    return t == CUDA_MOE_TILE_PREFILL ? PRE_BM : DEC_BM;
}

/* Tiles of bm rows the routing can need at most: every expert's rows rounded up to bm adds
 * at most bm - 1 to each of at most min(E, P) experts. */
static int max_tiles(int P, int E, int bm)
{
    return (P + bm - 1) / bm + (E < P ? E : P);
}

struct moe_work_parts {
    int32_t *ids;              /* [P] */
    float *wts;                /* [P] */
    int32_t *sorted_pair;      /* [max_tiles(DEC_BM) * DEC_BM] (the larger of the two) */
    int32_t *tile_expert;      /* [max_tiles(DEC_BM)] */
    bf16 *act;                 /* [P, ffn] */
};

static size_t round256(size_t b)
{
    return (b + 255) & ~(size_t)255;
}

static size_t carve(const struct cuda_moe_params *p, void *work, struct moe_work_parts *w)
{
    size_t P = (size_t)p->num_tokens * p->top_k, off = 0;
    size_t rows = 0, tiles = 0;
    char *b = (char *)work;

    for (int bm = DEC_BM; bm <= PRE_BM; bm *= 4) {
        size_t t = (size_t)max_tiles((int)P, p->num_experts, bm);
        rows = t * bm > rows ? t * bm : rows;
        tiles = t > tiles ? t : tiles;
    }
    if (w) {
        w->ids = (int32_t *)(b + off);
        w->wts = (float *)(b + (off += round256(P * 4)));
        w->sorted_pair = (int32_t *)(b + (off += round256(P * 4)));
        w->tile_expert = (int32_t *)(b + (off += round256(rows * 4)));
        w->act = (bf16 *)(b + (off += round256(tiles * 4)));
        off += round256(P * p->ffn * 2);
    } else {
        off = 2 * round256(P * 4) + round256(rows * 4) + round256(tiles * 4) +
              round256(P * p->ffn * 2);
    }
    return off;
}

static bool valid(const struct cuda_moe_params *p)
{
    return p->num_tokens >= 0 && p->num_experts >= 1 && p->num_experts <= CUDA_MOE_MAX_EXPERTS &&
           p->top_k >= 1 && p->top_k <= CUDA_MOE_MAX_TOP_K && p->top_k <= p->num_experts &&
           p->hidden > 0 && p->ffn > 0 &&
           (int64_t)p->num_tokens * p->top_k * (p->ffn > p->hidden ? p->ffn : p->hidden) < ((int64_t)1 << 40) &&
           (int64_t)p->num_tokens * p->top_k < (1 << 28);
}

size_t moe_experts_cuda_work_bytes(const struct cuda_moe_params *p)
{
    return valid(p) ? carve(p, NULL, NULL) : 0;
}

/* Up to this many rows the align kernel routes them itself (<= 4 rows a warp). */
#define FUSED_TOPK_ROWS 128

/* Routing and grouping: a top-k kernel of many blocks, then the align kernel; or for few
 * rows the align kernel alone. Without group (the GEMV path), the top-k kernel alone. */
template <int EPL>
static int launch_route(const float *logits, const bf16 *bias, const struct cuda_moe_params *p,
                        const struct moe_work_parts *wk, int bm, int tiles, bool group,
                        cudaStream_t s)
{
    int n = p->num_tokens, E = p->num_experts, k = p->top_k;
    bool fused = group && n <= FUSED_TOPK_ROWS;

    if (!fused) {
        moe_topk_kernel<EPL><<<ceil_div_u(n, 4), 128, 0, s>>>(logits, bias, n, E, k,
                                                               p->renormalize, wk->ids, wk->wts);
        if (!CUDA_OK(cudaGetLastError()))
            return -EIO;
        if (!group)
            return 0;
    }
    moe_align_kernel<EPL><<<1, ALIGN_THREADS, 0, s>>>(fused ? logits : nullptr, bias, n, k,
                                                       p->renormalize, wk->ids, wk->wts, E, bm,
                                                       tiles, wk->sorted_pair, wk->tile_expert);
    return CUDA_OK(cudaGetLastError()) ? 0 : -EIO;
}

/* The experts' weights and biases as the kernels' pointer tables: pg for gate_up, pd for down. */
static void expert_tables(const struct cuda_moe_params *p, const struct cuda_moe_experts *w,
                          struct moe_expert_ptrs *pg, struct moe_expert_ptrs *pd)
{
    for (int e = 0; e < CUDA_MOE_MAX_EXPERTS; e++) {
        pg->w[e] = e < p->num_experts ? w->gate_up[e] : nullptr;
        pd->w[e] = e < p->num_experts ? w->down[e] : nullptr;
        pg->b[e] = e < p->num_experts ? w->gate_up_bias[e] : nullptr;
        pd->b[e] = e < p->num_experts ? w->down_bias[e] : nullptr;
    }
}

/* The two products of moe_gemm_args for p: gate_up (x → act) and down (act → y). */
static void gemm_args(bf16 *y, const bf16 *x, const struct cuda_moe_params *p,
                      const struct moe_work_parts *wk, struct moe_gemm_args *g1,
                      struct moe_gemm_args *g2)
{
    *g1 = (struct moe_gemm_args){ x, wk->sorted_pair, wk->tile_expert, wk->wts, wk->act,
                                  p->hidden, p->ffn, p->top_k, (int)p->act, p->swiglu_alpha,
                                  p->swiglu_limit };
    *g2 = (struct moe_gemm_args){ wk->act, wk->sorted_pair, wk->tile_expert, wk->wts, y,
                                  p->ffn, p->hidden, p->top_k, (int)p->act, p->swiglu_alpha,
                                  p->swiglu_limit };
}

/* The GEMV path's two launches (routing done: wk->ids and wk->wts on the device). */
static int launch_gemv(bf16 *y, const bf16 *x, const struct cuda_moe_params *p,
                       const struct cuda_moe_experts *w, const struct moe_work_parts *wk,
                       cudaStream_t s)
{
    struct moe_gemm_args g1, g2;
    struct moe_expert_ptrs pg, pd;
    unsigned P = (unsigned)(p->num_tokens * p->top_k);
    dim3 grid1(ceil_div_u(p->ffn, GEMV_WARPS * GEMV_ROWS / 2), P);
    dim3 grid2(ceil_div_u(p->hidden, GEMV_WARPS * GEMV_ROWS), P);

    gemm_args(y, x, p, wk, &g1, &g2);
    expert_tables(p, w, &pg, &pd);
    moe_gemv_kernel<MOE_GATE_UP><<<grid1, GEMV_WARPS * 32, 0, s>>>(g1, pg, wk->ids);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    moe_gemv_kernel<MOE_DOWN><<<grid2, GEMV_WARPS * 32, 0, s>>>(g2, pd, wk->ids);
    return CUDA_OK(cudaGetLastError()) ? 0 : -EIO;
}

template <int BM, int BN, int BK, int WM, int WN, int STAGES>
static int launch_gemms(bf16 *y, const bf16 *x, const struct cuda_moe_params *p,
                        const struct cuda_moe_experts *w, const struct moe_work_parts *wk,
                        int tiles, bool vec, cudaStream_t s)
{
    struct moe_gemm_args g1, g2;
    struct moe_expert_ptrs pg, pd;
    dim3 grid1(tiles, ceil_div_u(p->ffn, BN / 2)), grid2(tiles, ceil_div_u(p->hidden, BN));

    gemm_args(y, x, p, wk, &g1, &g2);
    expert_tables(p, w, &pg, &pd);
    constexpr int SMEM = gemm_smem_bytes<BM, BN, BK, STAGES>();
    if (vec) {
        moe_gemm_kernel<BM, BN, BK, WM, WN, STAGES, MOE_GATE_UP, true><<<grid1, WM * WN * 32, SMEM, s>>>(g1, pg);
        if (!CUDA_OK(cudaGetLastError()))
            return -EIO;
        moe_gemm_kernel<BM, BN, BK, WM, WN, STAGES, MOE_DOWN, true><<<grid2, WM * WN * 32, SMEM, s>>>(g2, pd);
    } else {
        moe_gemm_kernel<BM, BN, BK, WM, WN, STAGES, MOE_GATE_UP, false><<<grid1, WM * WN * 32, SMEM, s>>>(g1, pg);
        if (!CUDA_OK(cudaGetLastError()))
            return -EIO;
        moe_gemm_kernel<BM, BN, BK, WM, WN, STAGES, MOE_DOWN, false><<<grid2, WM * WN * 32, SMEM, s>>>(g2, pd);
    }
    return CUDA_OK(cudaGetLastError()) ? 0 : -EIO;
}

/* Lets the four kernels of a tile shape take its shared memory (beyond the default 48 KiB). */
template <int BM, int BN, int BK, int WM, int WN, int STAGES>
static bool allow_smem()
{
    constexpr int SMEM = gemm_smem_bytes<BM, BN, BK, STAGES>();
    return CUDA_OK(cudaFuncSetAttribute(moe_gemm_kernel<BM, BN, BK, WM, WN, STAGES, MOE_GATE_UP, true>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM)) &&
           CUDA_OK(cudaFuncSetAttribute(moe_gemm_kernel<BM, BN, BK, WM, WN, STAGES, MOE_DOWN, true>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM)) &&
           CUDA_OK(cudaFuncSetAttribute(moe_gemm_kernel<BM, BN, BK, WM, WN, STAGES, MOE_GATE_UP, false>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM)) &&
           CUDA_OK(cudaFuncSetAttribute(moe_gemm_kernel<BM, BN, BK, WM, WN, STAGES, MOE_DOWN, false>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
}

int moe_cuda_init(void)
{
    return allow_smem<DECODE_CFG>() && allow_smem<DECODE_WIDE_CFG>() && allow_smem<PREFILL_CFG>()
               ? 0 : -EIO;
}

/* Steps of up to this many tokens take the GEMV path (moe_cuda_set_gemv_max). */
#define MOE_GEMV_MAX 4
/* The GEMV path's grid has a row a pair: gridDim.y's limit. */
#define GEMV_MAX_PAIRS 65535

static int gemv_max = MOE_GEMV_MAX;

void moe_cuda_set_gemv_max(int n)
{
    gemv_max = n < 0 ? MOE_GEMV_MAX : n;
}

int moe_experts_cuda(bf16 *y, const bf16 *x, const float *logits, const struct cuda_moe_params *p,
                     const struct cuda_moe_experts *w, void *work, cudaStream_t s)
{
    struct moe_work_parts wk;
    enum cuda_moe_tile tile = p->tile;
    int P, bm, tiles, rc;
    bool vec;

    if (!valid(p) || !work || p->tile < CUDA_MOE_TILE_AUTO || p->tile > CUDA_MOE_TILE_GEMV ||
        (p->act != CUDA_MOE_ACT_SILU && p->act != CUDA_MOE_ACT_SWIGLU_OAI))
        return -EINVAL;
    for (int e = 0; e < p->num_experts; e++)
        if (!w->gate_up[e] || !w->down[e] || !w->gate_up_bias[e] != !w->down_bias[e])
            return -EINVAL;
    if (p->num_tokens == 0)
        return 0;
    P = p->num_tokens * p->top_k;
    carve(p, work, &wk);
    vec = p->hidden % 8 == 0 && p->ffn % 8 == 0 && aligned16(x) && aligned16(y) && aligned16(wk.act);
    for (int e = 0; e < p->num_experts && vec; e++)
        vec = aligned16(w->gate_up[e]) && aligned16(w->down[e]);
    /* GEMV for the few tokens of a decode step; decode tiles while an expert gets fewer
     * than ~24 rows on average. The GEMV path needs 16-byte rows: odd shapes (and too many
     * pairs for its grid), even when it is forced, take the decode tiles. */
    if (tile == CUDA_MOE_TILE_AUTO && p->num_tokens <= gemv_max)
        tile = CUDA_MOE_TILE_GEMV;
    if (tile == CUDA_MOE_TILE_GEMV && (!vec || P > GEMV_MAX_PAIRS))
        tile = CUDA_MOE_TILE_DECODE;
    if (tile == CUDA_MOE_TILE_AUTO)
        tile = P < 24 * p->num_experts ? CUDA_MOE_TILE_DECODE : CUDA_MOE_TILE_PREFILL;
    bool group = tile != CUDA_MOE_TILE_GEMV;
    bm = tile_bm(tile);
    tiles = max_tiles(P, p->num_experts, bm);
    rc = p->num_experts <= 32 ? launch_route<1>(logits, w->router_bias, p, &wk, bm, tiles, group, s)
       : p->num_experts <= 64 ? launch_route<2>(logits, w->router_bias, p, &wk, bm, tiles, group, s)
       : p->num_experts <= 128 ? launch_route<4>(logits, w->router_bias, p, &wk, bm, tiles, group, s)
       : launch_route<8>(logits, w->router_bias, p, &wk, bm, tiles, group, s);
    if (rc)
        return rc;
    if (!group)
        return launch_gemv(y, x, p, w, &wk, s);
    if (tile == CUDA_MOE_TILE_DECODE)
        return launch_gemms<DECODE_CFG>(y, x, p, w, &wk, tiles, vec, s);
    if (tile == CUDA_MOE_TILE_DECODE_WIDE)
        return launch_gemms<DECODE_WIDE_CFG>(y, x, p, w, &wk, tiles, vec, s);
    return launch_gemms<PREFILL_CFG>(y, x, p, w, &wk, tiles, vec, s);
}

int moe_combine_cuda(bf16 *out, const bf16 *y, int n, int top_k, int hidden, const bf16 *shared,
                     const float *shared_gate, cudaStream_t s)
{
    if (n < 0 || top_k < 1 || hidden <= 0 || (shared && !shared_gate))
        return -EINVAL;
    if (n == 0)
        return 0;
    moe_combine_kernel<<<dim3(n, ceil_div_u(hidden, 256)), 256, 0, s>>>(out, y, top_k, hidden,
                                                                         shared, shared_gate);
    return CUDA_OK(cudaGetLastError()) ? 0 : -EIO;
}

/* gemv.cu — the bf16 decode GEMV: out[n, rows] = x[n, cols] · wᵀ (+ bias), bf16 weights and
 * activations, f32 sums, for the one or two tokens of a decode step, where cuBLAS's GEMV
 * reads the small products' weights at 1.4-3.3 TB/s of the H200's ~4.2. The fp8 tile
 * kernel's design (kernels/quant.cu, w8_gemv_tile_kernel) on bf16 codes: a block of
 * BG_THREADS streams BG_ROWS whole rows; each thread takes the 8-column chunks tid,
 * tid + BG_THREADS, ... of all the tile's rows, loads its x chunk once (through L1) for the
 * tile's rows, and issues BG_ROWS * U independent 16-byte weight loads (bypassing L1: each
 * weight byte is read once) before it uses the first; the partial sums meet in shared
 * memory. The CPU twin is engine/cpu/matmul.c's bf16 product. */
#include "kernels/common.cuh"
#include "kernels/gemv.cuh"   /* the tile kernels' loads and sums, bf16_word_at */

/* 64 threads and 4 rows as the fp8 tile kernel: a 4096-row product is 1024 blocks, resident
 * at once at ~9 blocks an SM (~100 registers a thread), a single wave. */
#define BG_THREADS 64
#define BG_ROWS 4
#define BG_CHUNK 8                         /* bf16 columns in a 16-byte load */
#define BG_STRIDE (BG_THREADS * BG_CHUNK)  /* columns between one thread's chunks */

/* grid (ceil(rows / BG_ROWS), ceil(n / NT)), block BG_THREADS; cols % 8 == 0, w and x
 * 16-byte aligned. U chunks a thread a step: at U = 4 a 1536- or 2048-column row (the small
 * models' q/k/v/o/gate_up) is one step, the whole tile's loads in flight at once. Tiles and
 * token groups cut short (rows % 4, odd n) re-read their last row or token, which stays in
 * bounds, and drop the sums. */
template <int NT, int U, bool OUT_F32>
__global__ void __launch_bounds__(BG_THREADS)
bf16_gemv_kernel(void *out, const bf16 *x, const bf16 *w, const bf16 *bias, int rows, int K, int n)
{
    __shared__ float part[BG_THREADS / 32][NT * BG_ROWS];
    int tid = threadIdx.x;
    int r0 = blockIdx.x * BG_ROWS, t0 = blockIdx.y * NT;
    int nr = min(BG_ROWS, rows - r0), nt = min(NT, n - t0);
    const bf16 *wr[BG_ROWS], *xr[NT];
    float acc[NT][BG_ROWS];

#pragma unroll
    for (int r = 0; r < BG_ROWS; r++)
        wr[r] = w + (size_t)(r0 + min(r, nr - 1)) * K;
#pragma unroll
    for (int j = 0; j < NT; j++) {
        xr[j] = x + (size_t)(t0 + min(j, nt - 1)) * K;
#pragma unroll
        for (int r = 0; r < BG_ROWS; r++)
            acc[j][r] = 0.0f;
    }
    for (int c0 = tid * BG_CHUNK; c0 < K; c0 += U * BG_STRIDE) {
        uint4 q[U][BG_ROWS];

        tile_load_step<U, BG_ROWS, BG_STRIDE>(q, wr, c0, K);
#pragma unroll
        for (int u = 0; u < U; u++) {
            int c = c0 + u * BG_STRIDE;
            float xf[NT][BG_CHUNK];

            if (c >= K)
                break;
#pragma unroll
            for (int j = 0; j < NT; j++) {
                uint4 a = __ldg(reinterpret_cast<const uint4 *>(xr[j] + c));
                const uint32_t *aw = reinterpret_cast<const uint32_t *>(&a);

#pragma unroll
                for (int e = 0; e < BG_CHUNK; e++)
                    xf[j][e] = bf16_word_at(aw, e);
            }
#pragma unroll
            for (int r = 0; r < BG_ROWS; r++) {
                const uint32_t *qw = reinterpret_cast<const uint32_t *>(&q[u][r]);

#pragma unroll
                for (int e = 0; e < BG_CHUNK; e++) {
                    float wf = bf16_word_at(qw, e);

#pragma unroll
                    for (int j = 0; j < NT; j++)
                        acc[j][r] = fmaf(wf, xf[j][e], acc[j][r]);
                }
            }
        }
    }
    tile_partials(part, acc);
    if (tid < NT * BG_ROWS) {
        int j = tid / BG_ROWS, r = tid % BG_ROWS, row = r0 + r;
        size_t o = (size_t)(t0 + j) * rows + row;
        float v;

        if (j >= nt || r >= nr)
            return;
        v = tile_total(part, tid);
        if (bias)   /* before the one rounding, as cuBLASLt's bias epilogue adds it */
            v += __bfloat162float(bias[row]);
        if (OUT_F32)
            ((float *)out)[o] = v;
        else
            ((bf16 *)out)[o] = __float2bfloat16(v);
    }
}

template <int NT>
static void bg_launch(void *out, bool out_f32, const bf16 *x, const bf16 *w, const bf16 *bias,
                      int rows, int cols, int n, cudaStream_t s)
{
    dim3 grid(ceil_div_u(rows, BG_ROWS), ceil_div_u(n, NT));

    if (out_f32)
        bf16_gemv_kernel<NT, 4, true><<<grid, BG_THREADS, 0, s>>>(out, x, w, bias, rows, cols, n);
    else
        bf16_gemv_kernel<NT, 4, false><<<grid, BG_THREADS, 0, s>>>(out, x, w, bias, rows, cols, n);
}

int bf16_gemv_cuda(void *out, bool out_f32, const bf16 *x, const bf16 *w, const bf16 *bias,
                   int rows, int cols, int n, cudaStream_t s)
{
    if (n < 0 || rows <= 0 || cols <= 0 || cols % BG_CHUNK || !w || !x || !out ||
        !aligned16(w) || !aligned16(x) || (out_f32 && bias) || ceil_div_u(n, 2) > 65535)
        return -EINVAL;
    if (n == 0)
        return 0;
    /* one token a block for n = 1; pairs above (every weight byte read once a pair) */
    if (n == 1)
        bg_launch<1>(out, out_f32, x, w, bias, rows, cols, n, s);
    else
        bg_launch<2>(out, out_f32, x, w, bias, rows, cols, n, s);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

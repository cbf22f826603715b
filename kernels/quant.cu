/* quant.cu — FP8 (e4m3) linear layers' device side: bf16 activations quantized per token or
 * per 128-wide k-block for cuBLASLt's scaled FP8 GEMMs (engine/cuda/cuda_fp8_gemm.c), a
 * plain W8A16 product for the weights cuBLASLt cannot take (the fallback, and the check of
 * the fast path), the W8A16 decode GEMV (a block a tile of rows), a
 * bias add, and the absmax reduction of --calculate-kv-scales. CPU twins:
 * engine/cpu/matmul.c (W8A16, the reference) and engine/cpu/cache_update.c (absmax_cpu). */
#include <float.h>

#include "kernels/common.cuh"
#include "kernels/fp8.cuh"
#include "kernels/gemv.cuh"   /* the tile kernel's loads and sums, bf16_word_at */

#define FP8_MAX 448.0f
#define FP8_GROUP 128

/* The scale of row t, k-block b in the layout of struct cuda_fp8_act: rows below n_main in
 * the first region ([L][n_main], token-major within a block), the others in the second. */
__device__ __forceinline__ float *act_scale_at(const cuda_fp8_act &a, int L, int t, int b)
{
    if (t < a.n_main)
        return a.scale + (size_t)b * a.n_main + t;
    return a.scale + (size_t)L * a.n_main + (size_t)b * (a.n_pad - a.n_main) + (t - a.n_main);
}

/* e4m3(x / scale) without the NaN care of fp8_quantize: activations that are NaN give a NaN
 * product anyway. */
__device__ __forceinline__ uint8_t to_e4m3(float x)
{
    return (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
}

/* A dynamic scale from an absmax: absmax / 448, 1 for an all-zero row (any scale quantizes
 * zeros to zeros); never below FLT_MIN, so that x / scale stays finite. */
__device__ __forceinline__ float dyn_scale(float amax)
{
    return amax > 0.0f ? fmaxf(amax / FP8_MAX, FLT_MIN) : 1.0f;
}

/* Per token: grid (n_pad), block 256; one scale per row (static when a.static_scale). */
__global__ void quant_token_kernel(cuda_fp8_act a, const bf16 *x)
{
    __shared__ float red[32];
    int t = blockIdx.x, k = a.k;
    uint8_t *q = a.q + (size_t)t * k;
    const bf16 *xr = x + (size_t)t * k;
    float amax = 0.0f, s;

    if (t >= a.n) {   /* padding rows: zeros, which any scale leaves zero */
        for (int c = threadIdx.x; c < k; c += blockDim.x)
            q[c] = 0;
        if (threadIdx.x == 0)
            *act_scale_at(a, 1, t, 0) = 1.0f;
        return;
    }
    if (a.static_scale) {
        s = *a.static_scale;
    } else {
        for (int c = threadIdx.x; c < k; c += blockDim.x)
            amax = fmaxf(amax, fabsf(__bfloat162float(xr[c])));
        /* block max through block_sum's pattern: max is what we want, so reduce by hand */
        amax = warp_max(amax);
        if ((threadIdx.x & 31) == 0)
            red[threadIdx.x >> 5] = amax;
        __syncthreads();
        amax = (int)(threadIdx.x & 31) < (int)(blockDim.x >> 5) ? red[threadIdx.x & 31] : 0.0f;
        amax = warp_max(amax);
        s = dyn_scale(amax);
    }
    for (int c = threadIdx.x; c < k; c += blockDim.x)
        q[c] = to_e4m3(__bfloat162float(xr[c]) / s);
    if (threadIdx.x == 0)
        *act_scale_at(a, 1, t, 0) = s;
}

/* Per 128-wide k-block: grid (n_pad, ceil(L / 4)), block 128 = 4 warps, one k-block each,
 * 4 elements a lane. */
__global__ void quant_group_kernel(cuda_fp8_act a, const bf16 *x)
{
    int t = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, k = a.k;
    int L = (k + FP8_GROUP - 1) / FP8_GROUP, b = blockIdx.y * 4 + warp;
    int c0 = b * FP8_GROUP + lane * 4;
    uint8_t *q = a.q + (size_t)t * k;
    float v[4], amax = 0.0f, s;

    if (b >= L)
        return;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int c = c0 + j;
        v[j] = t < a.n && c < k ? __bfloat162float(x[(size_t)t * k + c]) : 0.0f;
        amax = fmaxf(amax, fabsf(v[j]));
    }
    amax = warp_max(amax);
    s = dyn_scale(amax);
#pragma unroll
    for (int j = 0; j < 4; j++)
        if (c0 + j < k)
            q[c0 + j] = to_e4m3(v[j] / s);
    if (lane == 0)
        *act_scale_at(a, L, t, b) = s;
}

int fp8_quantize_act_cuda(const struct cuda_fp8_act *a, const bf16 *x, cudaStream_t s)
{
    int L = (a->k + FP8_GROUP - 1) / FP8_GROUP;

    if (a->k <= 0 || a->n < 0 || a->n_main < 0 || a->n_main > a->n_pad || a->n > a->n_pad ||
        !a->q || !a->scale || (a->group != 0 && a->group != FP8_GROUP) ||
        (a->group && a->static_scale))
        return -EINVAL;
    if (a->n_pad == 0)
        return 0;
    if (a->group)
        quant_group_kernel<<<dim3(a->n_pad, ceil_div_u(L, 4)), 128, 0, s>>>(*a, x);
    else
        quant_token_kernel<<<a->n_pad, 256, 0, s>>>(*a, x);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

/* ---- W8A16: out = x · (e4m3 * scale)ᵀ, f32 sums ----
 * With a static activation scale, x is clamped to +-448 * scale first: what the scaled FP8
 * GEMM's quantization saturates, so that a layer means the same on every path. */

#define W8_ROWS 8      /* weight rows a block, one a warp */
#define W8_TOKENS 8    /* tokens a block: every weight element read once per 8 tokens */

__device__ __forceinline__ float e4m3_to_f32(uint8_t c)
{
    __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)c, __NV_E4M3);

    return __half2float(__half(h));
}

/* grid (ceil(rows / W8_ROWS), ceil(n / W8_TOKENS)), block 32 * W8_ROWS */
template <bool OUT_F32>
__global__ void w8a16_kernel(void *out, const bf16 *x, cuda_fp8_weight w, const bf16 *bias, int n)
{
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int r = blockIdx.x * W8_ROWS + warp, t0 = blockIdx.y * W8_TOKENS;
    int nt = min(W8_TOKENS, n - t0);
    float acc[W8_TOKENS] = { 0 };
    const uint8_t *wr;
    const float *sr;

    float lim = w.input_scale ? FP8_MAX * *w.input_scale : INFINITY;

    if (r >= w.rows)
        return;
    wr = w.w + (size_t)r * w.cols;
    sr = w.scale + (size_t)(r / w.row_block) * w.scale_ld;
    for (int c = lane; c < w.cols; c += 32) {
        float wv = e4m3_to_f32(wr[c]) * sr[c / w.col_block];

#pragma unroll
        for (int j = 0; j < W8_TOKENS; j++)
            if (j < nt)
                acc[j] += wv * fminf(lim, fmaxf(-lim, __bfloat162float(x[(size_t)(t0 + j) * w.cols + c])));
    }
#pragma unroll
    for (int j = 0; j < W8_TOKENS; j++) {
        float v = warp_sum(acc[j]);

        if (lane == 0 && j < nt) {
            size_t o = (size_t)(t0 + j) * w.rows + r;

            if (bias)
                v += __bfloat162float(bias[r]);
            if (OUT_F32)
                ((float *)out)[o] = v;
            else
                ((bf16 *)out)[o] = __float2bfloat16(v);
        }
    }
}

int fp8_w8a16_gemm_cuda(void *out, bool out_f32, const bf16 *x, const struct cuda_fp8_weight *w,
                        const bf16 *bias, int n, cudaStream_t s)
{
    dim3 grid(ceil_div_u(w->rows, W8_ROWS), ceil_div_u(n, W8_TOKENS));

    if (n < 0 || w->rows <= 0 || w->cols <= 0 || w->row_block < 1 || w->col_block < 1 ||
        w->scale_ld < 1 || !w->w || !w->scale || (out_f32 && bias))
        return -EINVAL;
    if (n == 0)
        return 0;
    if (out_f32)
        w8a16_kernel<true><<<grid, 32 * W8_ROWS, 0, s>>>(out, x, *w, bias, n);
    else
        w8a16_kernel<false><<<grid, 32 * W8_ROWS, 0, s>>>(out, x, *w, bias, n);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

/* ---- W8A16 for decode, row tiles: a block of TILE_THREADS streams TILE_ROWS whole rows ----
 * A few tokens (up to 8 a block) read every weight byte once, so the product streams the
 * e4m3 weights near the copy bandwidth: half the bytes of cuBLAS's bf16 GEMV, and no
 * activation quantization (cuBLASLt's scaled FP8 kernels are built for large n). It replaced
 * a kernel of one warp a row, which re-read x for every row: 1.2-1.4x faster on the H200.
 * Each thread takes the 16-column chunks tid, tid + TILE_THREADS, ... of all the tile's rows:
 * its x chunk (16 bf16 per token) is loaded once, through L1, for the TILE_ROWS rows, and it
 * issues TILE_ROWS * unroll independent 16-byte weight loads, which bypass L1 (each weight
 * byte is read once) before it uses the first. The codes become floats with integer
 * operations (no conversion unit on the way: at 16 conversions a clock an SM, f16 → f32
 * alone would cap the stream near 4.2 TB/s), the partial sums meet in shared memory, and a
 * per-row scale multiplies once per row, a 128x128 block's once per 16-column chunk. */

/* 64 threads: at the NT = 1 kernel's 72 registers an SM holds 14 such blocks, so the
 * 1024 tiles of a 4096-row product (o, down) are all resident at once, a single wave with
 * no tail of late blocks; 8 loads in flight a thread, ~60 KB an SM. */
#define TILE_THREADS 64
#define TILE_ROWS 4
#define TILE_STRIDE (TILE_THREADS * 16)   /* columns between one thread's chunks */

/* Four e4m3 codes (code i in byte i) as floats times 2^-120, exactly: each code's sign and
 * its 7 exponent-and-mantissa bits are moved to where a bf16's sign and low bits lie (eeee
 * to the exponent's low 4 bits, mmm to the mantissa's top 3), which reads as the code's
 * value times 2^(7 - 127), subnormals included (a bf16 subnormal for exponent 0); bf16 → f32
 * is then a shift. The bytes at bits 8..15 and 24..31 are already at the top of a 16-bit
 * half; the others are shifted there. e4m3fn's NaN (0x7f) reads as 480: checkpoints hold
 * none (quantizers saturate). */
__device__ __forceinline__ void e4m3x4_to_f32_scaled(uint32_t q, float *f)
{
    uint32_t odd = (q & 0x80008000u) | ((q >> 4) & 0x07f007f0u);          /* codes 1, 3 */
    uint32_t even = ((q << 8) & 0x80008000u) | ((q << 4) & 0x07f007f0u);  /* codes 0, 2 */

    f[0] = __uint_as_float(even << 16);
    f[1] = __uint_as_float(odd << 16);
    f[2] = __uint_as_float(even & 0xffff0000u);
    f[3] = __uint_as_float(odd & 0xffff0000u);
}

/* x[t][c .. c + 16) as 8 words of two bf16, clamped to +-lim when lim is finite (the
 * clamped value rounded to bf16: what the CPU reference multiplies, x clamped then stored). */
__device__ __forceinline__ void load_x_chunk(uint32_t *xw, const bf16 *p, float lim)
{
    uint4 a = __ldg(reinterpret_cast<const uint4 *>(p));
    uint4 b = __ldg(reinterpret_cast<const uint4 *>(p + 8));

    xw[0] = a.x, xw[1] = a.y, xw[2] = a.z, xw[3] = a.w;
    xw[4] = b.x, xw[5] = b.y, xw[6] = b.z, xw[7] = b.w;
    if (lim < INFINITY) {   /* a static activation scale: uniform across the grid */
#pragma unroll
        for (int i = 0; i < 8; i++) {
            __nv_bfloat162 h = __floats2bfloat162_rn(fminf(lim, fmaxf(-lim, bf16_word_at(xw, 2 * i))),
                                                     fminf(lim, fmaxf(-lim, bf16_word_at(xw, 2 * i + 1))));

            xw[i] = *reinterpret_cast<uint32_t *>(&h);
        }
    }
}

/* grid (ceil(rows / TILE_ROWS), ceil(n / NT)), block TILE_THREADS. ROW_SCALE: one scale a
 * row (col_block >= cols), applied to the row's sum; else one a 16-column chunk. Sums are
 * kept in units of 2^-120 (the codes' floats) for ROW_SCALE, in the product's own units
 * otherwise (the chunk's sum is scaled back first, so that scale * sum stays clear of f32's
 * subnormals); either way f32's range holds them (a product term below 2^-126, i.e. x times
 * the code's value below 2^-6, is rounded to 2^-149, an error of 2^-29 of a code unit). */
template <int NT, int U, bool ROW_SCALE, bool OUT_F32>
__global__ void __launch_bounds__(TILE_THREADS)
w8_gemv_tile_kernel(void *out, const bf16 *x, cuda_fp8_weight w, const bf16 *bias, int n)
{
    __shared__ float part[TILE_THREADS / 32][NT * TILE_ROWS];
    int tid = threadIdx.x, K = w.cols;
    int r0 = blockIdx.x * TILE_ROWS, t0 = blockIdx.y * NT;
    int nr = min(TILE_ROWS, w.rows - r0), nt = min(NT, n - t0);
    float lim = w.input_scale ? FP8_MAX * *w.input_scale : INFINITY;
    const uint8_t *wr[TILE_ROWS];
    const float *sr[TILE_ROWS];
    float acc[NT][TILE_ROWS];

#pragma unroll
    for (int r = 0; r < TILE_ROWS; r++) {
        int row = r0 + min(r, nr - 1);   /* past the last row: re-read it (in bounds), dropped */

        wr[r] = w.w + (size_t)row * K;
        sr[r] = w.scale + (size_t)(row / w.row_block) * w.scale_ld;
#pragma unroll
        for (int j = 0; j < NT; j++)
            acc[j][r] = 0.0f;
    }
    for (int c0 = tid * 16; c0 < K; c0 += U * TILE_STRIDE) {
        uint4 q[U][TILE_ROWS];

        tile_load_step<U, TILE_ROWS, TILE_STRIDE>(q, wr, c0, K);
#pragma unroll
        for (int u = 0; u < U; u++) {
            int c = c0 + u * TILE_STRIDE;
            uint32_t xw[NT][8];
            float cs[TILE_ROWS];

            if (c >= K)
                break;
#pragma unroll
            for (int j = 0; j < NT; j++)
                if (j < nt)
                    load_x_chunk(xw[j], x + (size_t)(t0 + j) * K + c, lim);
#pragma unroll
            for (int r = 0; r < TILE_ROWS; r++)
                cs[r] = ROW_SCALE ? 1.0f : sr[r][c / w.col_block];
#pragma unroll
            for (int r = 0; r < TILE_ROWS; r++) {
                const uint32_t *qw = reinterpret_cast<const uint32_t *>(&q[u][r]);
                float wf[16];

#pragma unroll
                for (int i = 0; i < 4; i++)
                    e4m3x4_to_f32_scaled(qw[i], wf + 4 * i);
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    float d = 0.0f;

                    if (j >= nt)
                        continue;
#pragma unroll
                    for (int e = 0; e < 16; e++)
                        d = fmaf(wf[e], bf16_word_at(xw[j], e), d);
                    acc[j][r] = ROW_SCALE ? acc[j][r] + d : fmaf(cs[r], d * 0x1p120f, acc[j][r]);
                }
            }
        }
    }
    tile_partials(part, acc);
    if (tid < NT * TILE_ROWS) {
        int j = tid / TILE_ROWS, r = tid % TILE_ROWS, row = r0 + r;
        float v;

        if (j >= nt || r >= nr)
            return;
        v = tile_total(part, tid);
        if (ROW_SCALE)
            v = v * 0x1p120f * w.scale[(size_t)(row / w.row_block) * w.scale_ld];
        if (bias)
            v += __bfloat162float(bias[row]);
        if (OUT_F32)
            ((float *)out)[(size_t)(t0 + j) * w.rows + row] = v;
        else
            ((bf16 *)out)[(size_t)(t0 + j) * w.rows + row] = __float2bfloat16(v);
    }
}

/* NT tokens a block, U chunks a thread a step: 2 for one or two tokens (8 loads in flight a
 * thread), 1 from 4 tokens up, whose x words take the registers. */
template <int NT>
static void tile_launch(void *out, bool out_f32, const bf16 *x, const cuda_fp8_weight &w,
                        const bf16 *bias, int n, cudaStream_t s)
{
    constexpr int U = NT <= 2 ? 2 : 1;
    dim3 grid(ceil_div_u(w.rows, TILE_ROWS), ceil_div_u(n, NT));
    bool row_scale = w.col_block >= w.cols;

    if (row_scale && out_f32)
        w8_gemv_tile_kernel<NT, U, true, true><<<grid, TILE_THREADS, 0, s>>>(out, x, w, bias, n);
    else if (row_scale)
        w8_gemv_tile_kernel<NT, U, true, false><<<grid, TILE_THREADS, 0, s>>>(out, x, w, bias, n);
    else if (out_f32)
        w8_gemv_tile_kernel<NT, U, false, true><<<grid, TILE_THREADS, 0, s>>>(out, x, w, bias, n);
    else
        w8_gemv_tile_kernel<NT, U, false, false><<<grid, TILE_THREADS, 0, s>>>(out, x, w, bias, n);
}

int fp8_gemv_cuda(void *out, bool out_f32, const bf16 *x, const struct cuda_fp8_weight *w,
                  const bf16 *bias, int n, cudaStream_t s)
{
    if (n < 0 || w->rows <= 0 || w->cols <= 0 || w->cols % 16 || w->row_block < 1 ||
        w->scale_ld < 1 || (w->col_block % 16 && w->col_block < w->cols) || !w->w ||
        !w->scale || !aligned16(w->w) || !aligned16(x) || (out_f32 && bias))
        return -EINVAL;
    if (n == 0)
        return 0;
    if (n == 1)
        tile_launch<1>(out, out_f32, x, *w, bias, n, s);
    else if (n == 2)
        tile_launch<2>(out, out_f32, x, *w, bias, n, s);
    else if (n <= 4)
        tile_launch<4>(out, out_f32, x, *w, bias, n, s);
    else
        tile_launch<8>(out, out_f32, x, *w, bias, n, s);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

/* ---- out[n, rows] += bias[rows], bf16 (a product whose GEMM had no bias epilogue) ---- */

__global__ void bias_add_kernel(bf16 *out, const bf16 *bias, int rows, size_t count)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

    if (i < count)
        out[i] = __float2bfloat16(__bfloat162float(out[i]) + __bfloat162float(bias[i % rows]));
}

int bias_add_cuda(bf16 *out, const bf16 *bias, int n, int rows, cudaStream_t s)
{
    size_t count = (size_t)n * rows;

    if (n < 0 || rows <= 0)
        return -EINVAL;
    if (n == 0)
        return 0;
    bias_add_kernel<<<ceil_div_u(count, 256), 256, 0, s>>>(out, bias, rows, count);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

/* ---- absmax: *out = max |x| over rows [rows, cols], stride elements apart ---- */

/* |x| of a non-negative float orders as its bits do, so the maximum is an atomicMax on the
 * bits. NaNs are skipped, as fmaxf skips them in absmax_cpu. grid-stride, block 256. */
__global__ void absmax_kernel(unsigned int *out, const bf16 *x, int stride, int rows, int cols)
{
    size_t count = (size_t)rows * cols;
    float m = 0.0f;

    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = fabsf(__bfloat162float(x[(i / cols) * stride + i % cols]));

        if (!isnan(v))
            m = fmaxf(m, v);
    }
    m = warp_max(m);
    if ((threadIdx.x & 31) == 0)
        atomicMax(out, __float_as_uint(m));
}

int absmax_cuda(float *out, const bf16 *x, int stride, int rows, int cols, cudaStream_t s)
{
    size_t count = (size_t)rows * cols;

    if (rows < 0 || cols < 0 || stride < cols)
        return -EINVAL;
    if (!CUDA_OK(cudaMemsetAsync(out, 0, sizeof *out, s)))
        return -EIO;
    if (count == 0)
        return 0;
    absmax_kernel<<<min(ceil_div_u(count, 256), 1024u), 256, 0, s>>>((unsigned int *)out, x,
                                                                     stride, rows, cols);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

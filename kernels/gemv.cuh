/* gemv.cuh — what the decode GEMVs' row-tile kernels share (kernels/quant.cu: fp8 weights,
 * kernels/gemv.cu: bf16 weights): the weight stream's 16-byte loads, a step of them, the bf16
 * words of a chunk widened to f32, and the meeting of the threads' sums in shared memory.
 * kernels/moe.cu's expert GEMV takes its loads too. */
#ifndef OSPREY_KERNELS_GEMV_CUH
#define OSPREY_KERNELS_GEMV_CUH

#include "kernels/common.cuh"   /* warp_sum */

/* 16 weight bytes, read once: not allocated in L1, which keeps x. */
__device__ __forceinline__ uint4 ld_weights(const void *p)
{
    uint4 r;

    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

/* bf16 number e of a chunk held as words of two each (bf16 → f32 is a shift). */
__device__ __forceinline__ float bf16_word_at(const uint32_t *xw, int e)
{
    return __uint_as_float(e & 1 ? xw[e >> 1] & 0xffff0000u : xw[e >> 1] << 16);
}

/* One step of a row tile's weight stream: the chunk at column c0 + u * STRIDE of each of the
 * tile's ROWS rows, 16 bytes each, every load issued before any is used (U * ROWS in flight
 * a thread); zeros past the row's K columns. */
template <int U, int ROWS, int STRIDE, typename T>
__device__ __forceinline__ void tile_load_step(uint4 (&q)[U][ROWS], const T *(&wr)[ROWS], int c0,
                                               int K)
{
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
        for (int r = 0; r < ROWS; r++)
            q[u][r] = c0 + u * STRIDE < K ? ld_weights(wr[r] + c0 + u * STRIDE)
                                          : make_uint4(0, 0, 0, 0);
}

/* The block's threads' sums acc[j][r] met in shared memory: part[warp][j * ROWS + r] holds
 * each warp's, and the block waits for all of them. */
template <int NT, int ROWS, int WARPS>
__device__ __forceinline__ void tile_partials(float (&part)[WARPS][NT * ROWS],
                                              const float (&acc)[NT][ROWS])
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            float v = warp_sum(acc[j][r]);

            if (lane == 0)
                part[warp][j * ROWS + r] = v;
        }
    __syncthreads();
}

/* The block's sum number i (j * ROWS + r) once tile_partials has run. */
template <int WARPS, int M>
__device__ __forceinline__ float tile_total(const float (&part)[WARPS][M], int i)
{
    float v = 0.0f;

#pragma unroll
    for (int k = 0; k < WARPS; k++)
        v += part[k][i];
    return v;
}

#endif

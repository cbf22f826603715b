/* common.cuh — device helpers shared by the kernels: 16-byte vectors of 8 bf16 widened to
 * f32 and back, warp reductions, and the launch check. Included by kernels/<op>.cu only. */
#ifndef OSPREY_KERNELS_COMMON_CUH
#define OSPREY_KERNELS_COMMON_CUH

#include <errno.h>
#include <stdint.h>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda_check.h"   /* CUDA_OK */
#include "kernels/kernels.h"

/* Launch configuration helpers */
static inline unsigned int ceil_div_u(long long a, long long b)
{
    return (unsigned int)((a + b - 1) / b);
}

/* True when p is 16-byte aligned: the vector paths need it. */
static inline bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

/* 8 bf16 in one 16-byte load, widened to f32 (bf16 → f32 is exact). */
struct vec8 {
    float v[8];
};

__device__ __forceinline__ vec8 load8(const bf16 *p)
{
    uint4 raw = *reinterpret_cast<const uint4 *>(p);
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&raw);
    vec8 r;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __bfloat1622float2(h[i]);
        r.v[2 * i] = f.x;
        r.v[2 * i + 1] = f.y;
    }
    return r;
}

/* Rounds 8 f32 to bf16 (to nearest even) and stores them in one 16-byte store. */
__device__ __forceinline__ void store8(bf16 *p, const vec8 &x)
{
    uint4 raw;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&raw);
#pragma unroll
    for (int i = 0; i < 4; i++)
        h[i] = __floats2bfloat162_rn(x.v[2 * i], x.v[2 * i + 1]);
    *reinterpret_cast<uint4 *>(p) = raw;
}

__device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ float warp_max(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

/* Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread
 * gets the total. `red` is 32 floats of shared memory; the call ends with a barrier so
 * that `red` can be reused. */
__device__ __forceinline__ float block_sum(float x, float *red)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;

    x = warp_sum(x);
    if (lane == 0)
        red[warp] = x;
    __syncthreads();
    x = lane < nwarps ? red[lane] : 0.0f;
    x = warp_sum(x);
    __syncthreads();
    return x;
}

#endif

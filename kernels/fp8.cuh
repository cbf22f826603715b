/* fp8.cuh — float8_e4m3fn on the device, as engine/base/fp8.c defines it on the host: the
 * fp8 KV cache's write (cache_update.cu, rope.cuh's fused write) and read (attention.cu).
 * Included by kernels/<op>.cu only. */
#ifndef OSPREY_KERNELS_FP8_CUH
#define OSPREY_KERNELS_FP8_CUH

#include <stdint.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

/* e4m3(x / scale), bit for bit fp8_e4m3_from_f32(x / scale) of engine/base/fp8.c: the
 * division is IEEE (nvcc's default -prec-div, no fast math), the conversion rounds to nearest
 * even and __NV_SATFINITE saturates everything beyond 448, infinities included, to +-448.
 * A NaN x gives 0x7f with x's sign, as on the host, where the division passes the NaN on
 * with its sign (x86); the GPU's division and conversion both return a positive canonical
 * NaN instead, so the code is made here from x. The scale is finite and > 0 (checked by the
 * launchers), so x / scale is NaN only for a NaN x. */
__device__ __forceinline__ uint8_t fp8_quantize(float x, float scale)
{
    if (isnan(x))
        return (uint8_t)((__float_as_uint(x) >> 24 & 0x80) | 0x7f);
    return (uint8_t)__nv_cvt_float_to_fp8(x / scale, __NV_SATFINITE, __NV_E4M3);
}

/* VEC values (VEC 8: one 8-byte store, p 8-byte aligned; else VEC single bytes) quantized to
 * p[0..VEC). */
template <int VEC>
__device__ __forceinline__ void fp8_store_vec(uint8_t *p, const float *v, float scale)
{
    if (VEC == 8) {
        uint2 raw;
        uint8_t *b = reinterpret_cast<uint8_t *>(&raw);
#pragma unroll
        for (int j = 0; j < 8; j++)
            b[j] = fp8_quantize(v[j], scale);
        *reinterpret_cast<uint2 *>(p) = raw;
    } else {
#pragma unroll
        for (int j = 0; j < VEC; j++)
            p[j] = fp8_quantize(v[j], scale);
    }
}

/* Two e4m3 codes (lo in the low byte) widened to a bf16 pair, exactly: every e4m3 value is
 * a half (5 exponent bits cover 2^-9 .. 448) and every half of that range a bf16. */
__device__ __forceinline__ __nv_bfloat162 fp8x2_to_bf162(uint16_t codes)
{
    __half2 h = __half2(__nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)codes, __NV_E4M3));

    return __float22bfloat162_rn(__half22float2(h));
}

#endif

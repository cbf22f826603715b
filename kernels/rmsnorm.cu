/* rmsnorm.cu — RMSNorm of hidden rows with the residual add fused in, and of each head of q
 * and k (Qwen3's q/k norm). HF's LlamaRMSNorm: x * rsqrt(mean(x²) + eps) * w, the mean in
 * f32. With a residual, the bf16 sum is what gets normalized (and stored), as in HF's bf16
 * forward. CPU twin: engine/cpu/rmsnorm.c. */
#include "kernels/common.cuh"

#define RMS_THREADS 256

/* One 16-byte chunk (or one element, VEC 1) of a row as f32. */
template <int VEC>
__device__ __forceinline__ void load_chunk(float *v, const bf16 *p)
{
    if (VEC == 8) {
        vec8 x = load8(p);
#pragma unroll
        for (int i = 0; i < 8; i++)
            v[i] = x.v[i];
    } else {
        v[0] = __bfloat162float(*p);
    }
}

template <int VEC>
__device__ __forceinline__ void store_chunk(bf16 *p, const float *v)
{
    if (VEC == 8) {
        vec8 x;
#pragma unroll
        for (int i = 0; i < 8; i++)
            x.v[i] = v[i];
        store8(p, x);
    } else {
        *p = __float2bfloat16(v[0]);
    }
}

/* grid n, block RMS_THREADS: one row per block. Pass 1 adds the residual and sums squares;
 * pass 2 reads the row again (each thread its own chunks, from L1/L2) and scales it. */
template <int VEC>
__global__ void __launch_bounds__(RMS_THREADS)
rmsnorm_kernel(bf16 *out, bf16 *residual, const bf16 *x, const bf16 *w, int dim, float eps)
{
    __shared__ float red[32];
    size_t row = (size_t)blockIdx.x * dim;
    const bf16 *in = residual ? residual + row : x + row;
    float ss = 0.0f, r;

    for (int c = threadIdx.x * VEC; c < dim; c += blockDim.x * VEC) {
        float v[VEC];

        load_chunk<VEC>(v, x + row + c);
        if (residual) {
            float res[VEC];
            load_chunk<VEC>(res, residual + row + c);
#pragma unroll
            for (int i = 0; i < VEC; i++)
                v[i] = __bfloat162float(__float2bfloat16(res[i] + v[i]));
            store_chunk<VEC>(residual + row + c, v);
        }
#pragma unroll
        for (int i = 0; i < VEC; i++)
            ss += v[i] * v[i];
    }
    ss = block_sum(ss, red);
    r = 1.0f / sqrtf(ss / dim + eps);
    for (int c = threadIdx.x * VEC; c < dim; c += blockDim.x * VEC) {
        float v[VEC], g[VEC];

        load_chunk<VEC>(v, in + c);
        load_chunk<VEC>(g, w + c);
#pragma unroll
        for (int i = 0; i < VEC; i++)
            v[i] = v[i] * r * g[i];
        store_chunk<VEC>(out + row + c, v);
    }
}

int rmsnorm_cuda(bf16 *out, bf16 *residual, const bf16 *x, const bf16 *w, int n, int dim,
                 float eps, cudaStream_t s)
{
    bool vec = dim % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(w) &&
               (!residual || aligned16(residual));

    if (n < 0 || dim <= 0)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (vec)
        rmsnorm_kernel<8><<<n, RMS_THREADS, 0, s>>>(out, residual, x, w, dim, eps);
    else
        rmsnorm_kernel<1><<<n, RMS_THREADS, 0, s>>>(out, residual, x, w, dim, eps);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

/* grid ceil(n * heads / 4), block 128: one warp per head vector, in place. */
template <int VEC>
__global__ void __launch_bounds__(128)
head_rmsnorm_kernel(bf16 *x, int stride, int heads, int head_dim, const bf16 *w, int total,
                    float eps)
{
    int vecid = blockIdx.x * 4 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    float ss = 0.0f, r;

    if (vecid >= total)
        return;
    bf16 *v = x + (size_t)(vecid / heads) * stride + (size_t)(vecid % heads) * head_dim;
    for (int c = lane * VEC; c < head_dim; c += 32 * VEC) {
        float a[VEC];
        load_chunk<VEC>(a, v + c);
#pragma unroll
        for (int i = 0; i < VEC; i++)
            ss += a[i] * a[i];
    }
    ss = warp_sum(ss);
    r = 1.0f / sqrtf(ss / head_dim + eps);
    for (int c = lane * VEC; c < head_dim; c += 32 * VEC) {
        float a[VEC], g[VEC];
        load_chunk<VEC>(a, v + c);
        load_chunk<VEC>(g, w + c);
#pragma unroll
        for (int i = 0; i < VEC; i++)
            a[i] = a[i] * r * g[i];
        store_chunk<VEC>(v + c, a);
    }
}

int head_rmsnorm_cuda(bf16 *x, int stride, int heads, int head_dim, const bf16 *w, int n,
                      float eps, cudaStream_t s)
{
    long long total = (long long)n * heads;
    bool vec = head_dim % 8 == 0 && stride % 8 == 0 && aligned16(x) && aligned16(w);

    if (n < 0 || heads <= 0 || head_dim <= 0 || head_dim > 1024 || stride < heads * head_dim ||
        total > INT32_MAX)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (vec)
        head_rmsnorm_kernel<8><<<ceil_div_u(total, 4), 128, 0, s>>>(x, stride, heads, head_dim,
                                                                    w, (int)total, eps);
    else
        head_rmsnorm_kernel<1><<<ceil_div_u(total, 4), 128, 0, s>>>(x, stride, heads, head_dim,
                                                                    w, (int)total, eps);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

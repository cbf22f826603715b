/* activation.cu — SwiGLU's gate, out = silu(gate) * up, over rows of [gate | up] (the fused
 * gate_up projection), in f32 with one rounding to bf16. CPU twin: engine/cpu/activation.c. */
#include "kernels/common.cuh"

/* grid (n, ceil(ffn / VEC / 256)), block 256 */
template <int VEC>
__global__ void silu_mul_kernel(bf16 *out, const bf16 *gate_up, int ffn)
{
    int t = blockIdx.x, c = (blockIdx.y * blockDim.x + threadIdx.x) * VEC;
    const bf16 *g = gate_up + (size_t)t * 2 * ffn + c;
    bf16 *o = out + (size_t)t * ffn + c;

    if (c >= ffn)
        return;
    if (VEC == 8) {
        vec8 a = load8(g), b = load8(g + ffn);
#pragma unroll
        for (int i = 0; i < 8; i++)
            a.v[i] = a.v[i] / (1.0f + expf(-a.v[i])) * b.v[i];
        store8(o, a);
    } else {
        float a = __bfloat162float(*g), b = __bfloat162float(g[ffn]);
        *o = __float2bfloat16(a / (1.0f + expf(-a)) * b);
    }
}

int silu_mul_cuda(bf16 *out, const bf16 *gate_up, int n, int ffn, cudaStream_t s)
{
    if (n < 0 || ffn <= 0)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (ffn % 8 == 0 && aligned16(out) && aligned16(gate_up))
        silu_mul_kernel<8><<<dim3(n, ceil_div_u(ffn / 8, 256)), 256, 0, s>>>(out, gate_up, ffn);
    else
        silu_mul_kernel<1><<<dim3(n, ceil_div_u(ffn, 256)), 256, 0, s>>>(out, gate_up, ffn);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

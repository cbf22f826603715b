/* activation.cu — the gated MLP's activation over rows of [gate | up] (the fused gate_up
 * projection): SwiGLU's silu(gate) * up and Gemma's GeGLU gelu_tanh(gate) * up, in f32 with
 * one rounding to bf16. CPU twin: engine/cpu/activation.c. */
#include "kernels/common.cuh"

enum { ACT_SILU, ACT_GELU_TANH };

template <int ACT>
__device__ __forceinline__ float act(float x)
{
    if (ACT == ACT_SILU)
        return x / (1.0f + expf(-x));
    /* PyTorch's gelu(approximate="tanh"); 0.7978845608 = sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

/* grid (n, ceil(ffn / VEC / 256)), block 256 */
template <int VEC, int ACT>
__global__ void gated_act_kernel(bf16 *out, const bf16 *gate_up, int ffn)
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
            a.v[i] = act<ACT>(a.v[i]) * b.v[i];
        store8(o, a);
    } else {
        float a = __bfloat162float(*g), b = __bfloat162float(g[ffn]);
        *o = __float2bfloat16(act<ACT>(a) * b);
    }
}

template <int ACT>
static int gated_act_cuda(bf16 *out, const bf16 *gate_up, int n, int ffn, cudaStream_t s)
{
    if (n < 0 || ffn <= 0)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (ffn % 8 == 0 && aligned16(out) && aligned16(gate_up))
        gated_act_kernel<8, ACT><<<dim3(n, ceil_div_u(ffn / 8, 256)), 256, 0, s>>>(out, gate_up, ffn);
    else
        gated_act_kernel<1, ACT><<<dim3(n, ceil_div_u(ffn, 256)), 256, 0, s>>>(out, gate_up, ffn);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

int silu_mul_cuda(bf16 *out, const bf16 *gate_up, int n, int ffn, cudaStream_t s)
{
    return gated_act_cuda<ACT_SILU>(out, gate_up, n, ffn, s);
}

int gelu_tanh_mul_cuda(bf16 *out, const bf16 *gate_up, int n, int ffn, cudaStream_t s)
{
    return gated_act_cuda<ACT_GELU_TANH>(out, gate_up, n, ffn, s);
}

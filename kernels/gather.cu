/* gather.cu — row gathering: out[i] = x[rows[i]], the sampled token rows before the final
 * norm and the LM head. 16-byte vectors when the width allows; a negative row index gives
 * a zero row (the CPU twin, engine/cpu/embedding.c, refuses it). */
#include "kernels/common.cuh"

/* grid (n, ceil(dim / VEC / 128)), block 128 */
template <int VEC>
__global__ void gather_rows_kernel(bf16 *out, const bf16 *x, const int32_t *rows, int dim)
{
    int i = blockIdx.x, c = (blockIdx.y * blockDim.x + threadIdx.x) * VEC;
    int32_t r = rows[i];
    bf16 *dst = out + (size_t)i * dim + c;

    if (c >= dim)
        return;
    if (r < 0) {
        for (int j = 0; j < VEC; j++)
            dst[j] = __float2bfloat16(0.0f);
        return;
    }
    const bf16 *src = x + (size_t)r * dim + c;
    if (VEC == 8)
        *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
    else
        *dst = *src;
}

int gather_rows_cuda(bf16 *out, const bf16 *x, const int32_t *rows, int n, int dim,
                     cudaStream_t s)
{
    if (n < 0 || dim <= 0)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (dim % 8 == 0 && aligned16(out) && aligned16(x))
        gather_rows_kernel<8><<<dim3(n, ceil_div_u(dim / 8, 128)), 128, 0, s>>>(out, x, rows, dim);
    else
        gather_rows_kernel<1><<<dim3(n, ceil_div_u(dim, 128)), 128, 0, s>>>(out, x, rows, dim);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

/* embedding.cu — token embedding lookup: x[i] = table[ids[i]], bf16 rows copied in 16-byte
 * vectors (2-byte elements when the width is not a multiple of 8). An id outside the table
 * gives a zero row: the server validates ids, so that is a bug upstream, never a read out
 * of bounds. CPU twin: engine/cpu/embedding.c. */
#include "kernels/common.cuh"

/* grid (n, ceil(dim / VEC / 128)), block 128: one thread per VEC elements of a row */
template <int VEC>
__global__ void embedding_kernel(bf16 *x, const int32_t *ids, const bf16 *table, int vocab,
                                 int dim)
{
    int t = blockIdx.x, c = (blockIdx.y * blockDim.x + threadIdx.x) * VEC;
    int32_t id = ids[t];
    bf16 *dst = x + (size_t)t * dim + c;

    if (c >= dim)
        return;
    if (id < 0 || id >= vocab) {
        for (int i = 0; i < VEC; i++)
            dst[i] = __float2bfloat16(0.0f);
        return;
    }
    const bf16 *src = table + (size_t)id * dim + c;
    if (VEC == 8)
        *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
    else
        *dst = *src;
}

int embedding_cuda(bf16 *x, const int32_t *ids, const bf16 *table, int vocab, int dim, int n,
                   cudaStream_t s)
{
    if (n < 0 || dim <= 0 || vocab <= 0)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (dim % 8 == 0 && aligned16(x) && aligned16(table))
        embedding_kernel<8><<<dim3(n, ceil_div_u(dim / 8, 128)), 128, 0, s>>>(x, ids, table,
                                                                             vocab, dim);
    else
        embedding_kernel<1><<<dim3(n, ceil_div_u(dim, 128)), 128, 0, s>>>(x, ids, table, vocab,
                                                                          dim);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

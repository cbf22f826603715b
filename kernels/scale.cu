/* scale.cu — elementwise scalings of whole buffers: Gemma's embedding scale on bf16 rows
 * (f32 product, one rounding) and its final logit soft-cap on f32 logits. Grid-stride loops;
 * the counts are the step's (a graph replays them unchanged). CPU twin: engine/cpu/scale.c. */
#include "kernels/common.cuh"

__global__ void scale_kernel(bf16 *x, size_t count, float s)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = __float2bfloat16(__bfloat162float(x[i]) * s);
}

__global__ void softcap_kernel(float *x, size_t count, float cap)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = cap * tanhf(x[i] / cap);
}

/* enough blocks to fill the GPU a few times over, never more than the work */
static unsigned blocks_for(size_t count)
{
    size_t b = (count + 255) / 256;
    return (unsigned)(b < 4096 ? b : 4096);
}

int scale_cuda(bf16 *x, size_t count, float s, cudaStream_t st)
{
    if (count == 0)
        return 0;
    scale_kernel<<<blocks_for(count), 256, 0, st>>>(x, count, s);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

int softcap_cuda(float *logits, size_t count, float cap, cudaStream_t st)
{
    if (!(cap > 0.0f))
        return -EINVAL;
    if (count == 0)
        return 0;
    softcap_kernel<<<blocks_for(count), 256, 0, st>>>(logits, count, cap);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

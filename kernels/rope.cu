/* rope.cu — rotary position embedding in place on q and k (the kernel is in rope.cuh).
 * The fused variant that also writes the paged cache is rope_cache_update_cuda, in
 * kernels/cache_update.cu. CPU twin: engine/cpu/rope.c. */
#include "kernels/rope.cuh"

int rope_cuda(bf16 *q, bf16 *k, const int32_t *positions, int n,
              const struct cuda_rope_params *p, cudaStream_t s)
{
    rope_args a = rope_args_of(q, k, positions, p);

    return rope_launch<false>(&a, n, s);
}

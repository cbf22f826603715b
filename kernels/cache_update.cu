/* cache_update.cu — the two ways an attention layer writes its new tokens' K and V rows
 * to their slots of the paged cache ([num_blocks, block_size, num_kv_heads, head_dim] per
 * layer, so slot s is one contiguous row of num_kv_heads * head_dim); a negative slot
 * (KV_PADDING_SLOT, -1) or any slot outside the cache writes nothing.
 *   cache_update_cuda       kernel 1 alone: one thread per 16-byte chunk of a row. Pure
 *                           bandwidth: n rows read and written, twice.
 *   rope_cache_update_cuda  the default GPU path: RoPE of q and k and the cache write in
 *                           one pass (rope.cuh's kernel, FUSED), one read of k and v.
 * CPU twins: engine/cpu/cache_update.c (and engine/cpu/rope.c). */
#include "kernels/common.cuh"
#include "kernels/rope.cuh"   /* rope_launch<true>, rope_args_of */

#define CACHE_THREADS 256

/* grid (n, ceil(2 * chunks / blockDim)): blockIdx.x is the token; the threads of a token
 * cover its K chunks then its V chunks, so that a warp writes consecutive bytes of a row. */
template <int VEC>
__global__ void __launch_bounds__(CACHE_THREADS)
cache_update_kernel(const bf16 *k, const bf16 *v, int kv_stride, const int64_t *slot_mapping,
                    bf16 *k_cache, bf16 *v_cache, int chunks, long long num_slots)
{
    int t = blockIdx.x, j = blockIdx.y * blockDim.x + threadIdx.x;
    int64_t slot = slot_mapping[t];

    if (j >= 2 * chunks || slot < 0 || slot >= num_slots)
        return;
    int which = j >= chunks, c = which ? j - chunks : j;
    const bf16 *src = (which ? v : k) + (size_t)t * kv_stride + (size_t)c * VEC;
    bf16 *dst = (which ? v_cache : k_cache) + (size_t)slot * chunks * VEC + (size_t)c * VEC;
    if (VEC == 8)
        *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
    else
        *dst = *src;
}

int cache_update_cuda(const bf16 *k, const bf16 *v, int kv_stride, const int64_t *slot_mapping,
                      int n, bf16 *k_cache, bf16 *v_cache, const struct cuda_cache_layout *l,
                      cudaStream_t s)
{
    int row = l->num_kv_heads * l->head_dim;
    long long num_slots = (long long)l->num_blocks * l->block_size;
    bool vec = row % 8 == 0 && kv_stride % 8 == 0 && aligned16(k) && aligned16(v) &&
               aligned16(k_cache) && aligned16(v_cache);
    int chunks = vec ? row / 8 : row;
    int threads = 2 * chunks < CACHE_THREADS ? (2 * chunks + 31) / 32 * 32 : CACHE_THREADS;
    dim3 grid(n, ceil_div_u(2 * chunks, threads));

    if (n < 0 || row <= 0 || kv_stride < row || num_slots <= 0)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (vec)
        cache_update_kernel<8><<<grid, threads, 0, s>>>(k, v, kv_stride, slot_mapping, k_cache,
                                                        v_cache, chunks, num_slots);
    else
        cache_update_kernel<1><<<grid, threads, 0, s>>>(k, v, kv_stride, slot_mapping, k_cache,
                                                        v_cache, chunks, num_slots);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

int rope_cache_update_cuda(bf16 *q, bf16 *k, const bf16 *v, const int32_t *positions,
                           const int64_t *slot_mapping, int n, const struct cuda_rope_params *p,
                           bf16 *k_cache, bf16 *v_cache, const struct cuda_cache_layout *l,
                           cudaStream_t s)
{
    rope_args a = rope_args_of(q, k, positions, p);

    if (l->num_kv_heads != p->num_kv_heads || l->head_dim != p->head_dim ||
        l->num_blocks <= 0 || l->block_size <= 0)
        return -EINVAL;
    a.v = v;
    a.slot_mapping = slot_mapping;
    a.k_cache = k_cache;
    a.v_cache = v_cache;
    a.num_slots = (long long)l->num_blocks * l->block_size;
    return rope_launch<true>(&a, n, s);
}

/* cache_update.cu — the two ways an attention layer writes its new tokens' K and V rows
 * to their slots of the paged cache ([num_blocks, block_size, num_kv_heads, head_dim] per
 * layer, so slot s is one contiguous row of num_kv_heads * head_dim; bf16 copied, or fp8
 * e4m3(x / scale) with the layer's k_scale or v_scale); a negative slot
 * (KV_PADDING_SLOT, -1) or any slot outside the cache writes nothing.
 *   cache_update_cuda       kernel 1 alone: one thread per 16-byte chunk of a row. Pure
 *                           bandwidth: n rows read and written, twice.
 *   rope_cache_update_cuda  the default GPU path: RoPE of q and k and the cache write in
 *                           one pass (rope.cuh's kernel, FUSED), one read of k and v.
 * CPU twins: engine/cpu/cache_update.c (and engine/cpu/rope.c). */
#include "kernels/common.cuh"
#include "kernels/fp8.cuh"    /* fp8_store_vec */
#include "kernels/rope.cuh"   /* rope_launch<true>, rope_args_of, load_vec */

#define CACHE_THREADS 256

/* grid (n, ceil(2 * chunks / blockDim)): blockIdx.x is the token; the threads of a token
 * cover its K chunks then its V chunks, so that a warp writes consecutive bytes of a row.
 * FP8: the cache row is e4m3(x / scale), one byte an element (a chunk of 8 is 8 bytes). */
template <int VEC, bool FP8>
__global__ void __launch_bounds__(CACHE_THREADS)
cache_update_kernel(const bf16 *k, const bf16 *v, int kv_stride, const int64_t *slot_mapping,
                    void *k_cache, void *v_cache, int chunks, long long num_slots,
                    float k_scale, float v_scale)
{
    int t = blockIdx.x, j = blockIdx.y * blockDim.x + threadIdx.x;
    int64_t slot = slot_mapping[t];

    if (j >= 2 * chunks || slot < 0 || slot >= num_slots)
        return;
    int which = j >= chunks, c = which ? j - chunks : j;
    const bf16 *src = (which ? v : k) + (size_t)t * kv_stride + (size_t)c * VEC;
    size_t at = (size_t)slot * chunks * VEC + (size_t)c * VEC;   /* element index */
    if (FP8) {
        uint8_t *dst = static_cast<uint8_t *>(which ? v_cache : k_cache) + at;
        float x[VEC];
        load_vec<VEC>(x, src);
        fp8_store_vec<VEC>(dst, x, which ? v_scale : k_scale);
    } else {
        bf16 *dst = static_cast<bf16 *>(which ? v_cache : k_cache) + at;
        if (VEC == 8)
            *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
        else
            *dst = *src;
    }
}

/* The layout's dtype and scales are ones this file writes: bf16, or fp8 with finite scales
 * > 0 (engine/cpu/cache_update.c refuses the same). */
static bool cache_dtype_ok(const struct cuda_cache_layout *l)
{
    if (l->dtype == CUDA_KV_BF16)
        return true;
    return l->dtype == CUDA_KV_FP8_E4M3 && isfinite(l->k_scale) && l->k_scale > 0.0f &&
           isfinite(l->v_scale) && l->v_scale > 0.0f;
}

template <int VEC>
static void cache_update_launch(dim3 grid, int threads, cudaStream_t s, const bf16 *k,
                                const bf16 *v, int kv_stride, const int64_t *slot_mapping,
                                void *k_cache, void *v_cache, int chunks, long long num_slots,
                                const struct cuda_cache_layout *l)
{
    if (l->dtype == CUDA_KV_FP8_E4M3)
        cache_update_kernel<VEC, true><<<grid, threads, 0, s>>>(
            k, v, kv_stride, slot_mapping, k_cache, v_cache, chunks, num_slots, l->k_scale,
            l->v_scale);
    else
        cache_update_kernel<VEC, false><<<grid, threads, 0, s>>>(
            k, v, kv_stride, slot_mapping, k_cache, v_cache, chunks, num_slots, 1.0f, 1.0f);
}

int cache_update_cuda(const bf16 *k, const bf16 *v, int kv_stride, const int64_t *slot_mapping,
                      int n, void *k_cache, void *v_cache, const struct cuda_cache_layout *l,
                      cudaStream_t s)
{
    int row = l->num_kv_heads * l->head_dim;
    long long num_slots = (long long)l->num_blocks * l->block_size;
    bool vec = row % 8 == 0 && kv_stride % 8 == 0 && aligned16(k) && aligned16(v) &&
               aligned16(k_cache) && aligned16(v_cache);
    int chunks = vec ? row / 8 : row;
    int threads = 2 * chunks < CACHE_THREADS ? (2 * chunks + 31) / 32 * 32 : CACHE_THREADS;
    dim3 grid(n, ceil_div_u(2 * chunks, threads));

    if (n < 0 || row <= 0 || kv_stride < row || num_slots <= 0 || !cache_dtype_ok(l))
        return -EINVAL;
    if (n == 0)
        return 0;
    if (vec)
        cache_update_launch<8>(grid, threads, s, k, v, kv_stride, slot_mapping, k_cache,
                               v_cache, chunks, num_slots, l);
    else
        cache_update_launch<1>(grid, threads, s, k, v, kv_stride, slot_mapping, k_cache,
                               v_cache, chunks, num_slots, l);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

int rope_cache_update_cuda(bf16 *q, bf16 *k, const bf16 *v, const int32_t *positions,
                           const int64_t *slot_mapping, int n, const struct cuda_rope_params *p,
                           void *k_cache, void *v_cache, const struct cuda_cache_layout *l,
                           cudaStream_t s)
{
    rope_args a = rope_args_of(q, k, positions, p);

    if (l->num_kv_heads != p->num_kv_heads || l->head_dim != p->head_dim ||
        l->num_blocks <= 0 || l->block_size <= 0 || !cache_dtype_ok(l))
        return -EINVAL;
    a.v = v;
    a.slot_mapping = slot_mapping;
    a.k_cache = k_cache;
    a.v_cache = v_cache;
    a.num_slots = (long long)l->num_blocks * l->block_size;
    a.fp8 = l->dtype == CUDA_KV_FP8_E4M3;
    a.k_scale = l->k_scale;
    a.v_scale = l->v_scale;
    return rope_launch<true>(&a, n, s);
}

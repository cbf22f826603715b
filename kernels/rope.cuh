/* rope.cuh — the RoPE kernel both of its entry points launch: rope_cuda (kernels/rope.cu,
 * q and k rotated in place) and rope_cache_update_cuda (kernels/cache_update.cu, the same
 * rotation plus the cache write of k and v: FUSED). HF's rotate-half: pair (i, i + rd/2)
 * turns by position * inv_freq[i], product and cos/sin in f32, both times mscale; rd is the
 * rotary dims (head_dim, or fewer for Phi-3's partial_rotary_factor: dims rd.. pass
 * untouched). One thread per VEC pairs of one head of one token: the first rd/2/VEC chunks
 * of a head rotate, the others carry 2 VEC pass-through dims each (the chunk count is
 * head_dim/2/VEC either way). Included by those two files only. */
#ifndef OSPREY_KERNELS_ROPE_CUH
#define OSPREY_KERNELS_ROPE_CUH

#include "kernels/common.cuh"
#include "kernels/fp8.cuh"   /* fp8_store_vec: the fused write to an fp8 cache */

#define ROPE_THREADS 128

/* What a rope thread needs; passed by value. */
struct rope_args {
    bf16 *q, *k;
    const bf16 *v;
    const int32_t *positions;
    const float *inv_freq;
    int stride, num_heads, num_kv_heads, head_dim;
    int rotary_dim;            /* even, <= head_dim */
    float mscale;              /* cos and sin times this */
    /* fused cache write (k_cache NULL: plain rope) */
    const int64_t *slot_mapping;
    void *k_cache, *v_cache;   /* bf16, or e4m3 bytes when fp8 */
    long long num_slots;
    bool fp8;                  /* the cache holds e4m3(x / k_scale or v_scale) */
    float k_scale, v_scale;
};

/* Rotates VEC pairs x[i..i+VEC) and x[half+i..) in registers. */
template <int VEC>
__device__ __forceinline__ void rotate(float *lo, float *hi, const float *cs, const float *sn)
{
#pragma unroll
    for (int j = 0; j < VEC; j++) {
        float x0 = lo[j], x1 = hi[j];
        lo[j] = x0 * cs[j] - x1 * sn[j];
        hi[j] = x1 * cs[j] + x0 * sn[j];
    }
}

template <int VEC>
__device__ __forceinline__ void load_vec(float *v, const bf16 *p)
{
    if (VEC == 8) {
        vec8 x = load8(p);
#pragma unroll
        for (int j = 0; j < 8; j++)
            v[j] = x.v[j];
    } else {
        v[0] = __bfloat162float(*p);
    }
}

template <int VEC>
__device__ __forceinline__ void store_vec(bf16 *p, const float *v)
{
    if (VEC == 8) {
        vec8 x;
#pragma unroll
        for (int j = 0; j < 8; j++)
            x.v[j] = v[j];
        store8(p, x);
    } else {
        *p = __float2bfloat16(v[0]);
    }
}

/* VEC values to element `at` of a cache: bf16, or e4m3(x / scale) when fp8. */
template <int VEC>
__device__ __forceinline__ void store_cache_vec(void *cache, size_t at, const float *v, bool fp8,
                                                float scale)
{
    if (fp8)
        fp8_store_vec<VEC>(static_cast<uint8_t *>(cache) + at, v, scale);
    else
        store_vec<VEC>(static_cast<bf16 *>(cache) + at, v);
}

/* grid (n, ceil(heads * chunks / ROPE_THREADS)): blockIdx.x is the token, the threads its
 * (head, chunk) pairs. Heads [0, H) are q, [H, H + KV) k, and, when FUSED, [H + KV,
 * H + 2 KV) v (copied to the cache, not rotated). */
template <int VEC, bool FUSED>
__global__ void __launch_bounds__(ROPE_THREADS) rope_kernel(const rope_args a)
{
    int half = a.head_dim / 2, chunks = half / VEC;
    int heads = a.num_heads + (FUSED ? 2 : 1) * a.num_kv_heads;
    int t = blockIdx.x, j = blockIdx.y * blockDim.x + threadIdx.x;

    if (j >= heads * chunks)
        return;
    int c = j % chunks, h = j / chunks, i = c * VEC;
    float lo[VEC], hi[VEC];

    if (FUSED && h >= a.num_heads + a.num_kv_heads) {
        /* a v head: straight to the cache */
        int64_t slot = a.slot_mapping[t];
        int kvh = h - a.num_heads - a.num_kv_heads;
        if (slot < 0 || slot >= a.num_slots)
            return;
        const bf16 *src = a.v + (size_t)t * a.stride + (size_t)kvh * a.head_dim;
        size_t dst = ((size_t)slot * a.num_kv_heads + kvh) * a.head_dim;
        load_vec<VEC>(lo, src + i);
        load_vec<VEC>(hi, src + half + i);
        store_cache_vec<VEC>(a.v_cache, dst + i, lo, a.fp8, a.v_scale);
        store_cache_vec<VEC>(a.v_cache, dst + half + i, hi, a.fp8, a.v_scale);
        return;
    }

    bool is_q = h < a.num_heads;
    int hh = is_q ? h : h - a.num_heads, rhalf = a.rotary_dim / 2, at_lo, at_hi;
    bf16 *x = (is_q ? a.q : a.k) + (size_t)t * a.stride + (size_t)hh * a.head_dim;

    if (i < rhalf) {           /* rotate the pair (i, i + rd/2) */
        float pos = (float)a.positions[t], cs[VEC], sn[VEC];

        at_lo = i;
        at_hi = rhalf + i;
#pragma unroll
        for (int j = 0; j < VEC; j++) {
            sincosf(pos * a.inv_freq[i + j], &sn[j], &cs[j]);
            cs[j] *= a.mscale;
            sn[j] *= a.mscale;
        }
        load_vec<VEC>(lo, x + at_lo);
        load_vec<VEC>(hi, x + at_hi);
        rotate<VEC>(lo, hi, cs, sn);
        store_vec<VEC>(x + at_lo, lo);
        store_vec<VEC>(x + at_hi, hi);
    } else {                   /* 2 VEC pass-through dims from rd on: only the cache needs them */
        if (!FUSED || is_q)
            return;
        at_lo = a.rotary_dim + 2 * (i - rhalf);
        at_hi = at_lo + VEC;
        load_vec<VEC>(lo, x + at_lo);
        load_vec<VEC>(hi, x + at_hi);
    }
    if (FUSED && !is_q) {
        int64_t slot = a.slot_mapping[t];
        if (slot < 0 || slot >= a.num_slots)
            return;
        size_t dst = ((size_t)slot * a.num_kv_heads + hh) * a.head_dim;
        /* fp8: the rotated k is rounded to bf16 first, as the unfused path's k rows are */
        if (a.fp8) {
#pragma unroll
            for (int j = 0; j < VEC; j++) {
                lo[j] = __bfloat162float(__float2bfloat16(lo[j]));
                hi[j] = __bfloat162float(__float2bfloat16(hi[j]));
            }
        }
        store_cache_vec<VEC>(a.k_cache, dst + at_lo, lo, a.fp8, a.k_scale);
        store_cache_vec<VEC>(a.k_cache, dst + at_hi, hi, a.fp8, a.k_scale);
    }
}

template <bool FUSED>
static inline int rope_launch(const rope_args *a, int n, cudaStream_t s)
{
    int half = a->head_dim / 2;
    /* 16-byte vectors need whole chunks on both sides of rd/2 and of rd */
    bool vec = half % 8 == 0 && a->stride % 8 == 0 && aligned16(a->q) && aligned16(a->k) &&
               (a->rotary_dim / 2) % 8 == 0 && (a->head_dim - a->rotary_dim) % 16 == 0 &&
               (!FUSED || (aligned16(a->v) && aligned16(a->k_cache) && aligned16(a->v_cache)));
    int heads = a->num_heads + (FUSED ? 2 : 1) * a->num_kv_heads;
    dim3 grid(n, ceil_div_u((long long)heads * (vec ? half / 8 : half), ROPE_THREADS));

    if (n < 0 || a->head_dim <= 0 || a->head_dim % 2 || a->num_heads <= 0 ||
        a->num_kv_heads <= 0 || a->stride <= 0 || a->rotary_dim <= 0 || a->rotary_dim % 2 ||
        a->rotary_dim > a->head_dim)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (vec)
        rope_kernel<8, FUSED><<<grid, ROPE_THREADS, 0, s>>>(*a);
    else
        rope_kernel<1, FUSED><<<grid, ROPE_THREADS, 0, s>>>(*a);
    if (!CUDA_OK(cudaGetLastError()))
        return -EIO;
    return 0;
}

static inline rope_args rope_args_of(bf16 *q, bf16 *k, const int32_t *positions,
                              const struct cuda_rope_params *p)
{
    rope_args a = {};

    a.q = q;
    a.k = k;
    a.positions = positions;
    a.inv_freq = p->inv_freq;
    a.stride = p->stride;
    a.num_heads = p->num_heads;
    a.num_kv_heads = p->num_kv_heads;
    a.head_dim = p->head_dim;
    a.rotary_dim = p->rotary_dim ? p->rotary_dim : p->head_dim;
    a.mscale = p->mscale ? p->mscale : 1.0f;
    return a;
}

#endif

/* sample_hash.h — the only source of randomness in sampling: a counter-based hash of
 * (seed, counter, token) and the Exp(1) draw made from it. Host and device code alike (the
 * CPU sampler, engine/sampler.c, and the GPU one, kernels/sampling.cu), so that a seed gives
 * the same stream on either backend and in any batch. */
#ifndef OSPREY_SAMPLE_HASH_H
#define OSPREY_SAMPLE_HASH_H

#include <math.h>     /* log */
#include <stdint.h>

#ifdef __CUDACC__
#define SAMPLE_HD __host__ __device__
#else
#define SAMPLE_HD
#endif

/* splitmix64 over (seed, counter, token): the only source of randomness in sampling. */
SAMPLE_HD static inline uint64_t sample_hash(uint64_t seed, uint32_t counter, uint32_t token)
{
    uint64_t x = seed ^ (((uint64_t)counter << 32) | token);
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    x += seed * 0xD6E8FEB86659FD93ull;   /* a second round keyed by the seed alone */
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* An Exp(1) draw for token `token` at step `counter`: -log(u), u uniform in (0, 1]. */
SAMPLE_HD static inline float sample_exponential(uint64_t seed, uint32_t counter, uint32_t token)
{
    double u = (double)((sample_hash(seed, counter, token) >> 11) + 1) * (1.0 / 9007199254740992.0);
    return (float)-log(u);
}

#endif

/* rng.h — the project's one seeded generator, splitmix64 (Steele, Lea, Flood 2014): a
 * 64-bit state stepped by the golden-ratio increment and a mixing finalizer. Used where a
 * seed must give the same numbers on every machine (request seeds, random weights, BPE
 * training). Sampling draws from its own counter hash, sample_hash() in engine/base/sample_hash.h. */
#ifndef OSPREY_RNG_H
#define OSPREY_RNG_H

#include <stdint.h>

#define RNG_GOLDEN 0x9e3779b97f4a7c15ull   /* 2^64 / the golden ratio, odd */

/* The finalizer: a bijection of 64-bit words whose every output bit depends on every input bit. */
static inline uint64_t rng_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Steps *state and returns the next number of its stream. */
static inline uint64_t rng_next(uint64_t *state)
{
    return rng_mix(*state += RNG_GOLDEN);
}

/* What the i-th call of rng_next from state seed returns (i >= 1), without stepping:
 * random access for streams filled in pieces (i = 0 gives the seed itself mixed). */
static inline uint64_t rng_at(uint64_t seed, uint64_t i)
{
    return rng_mix(seed + i * RNG_GOLDEN);
}

/* A number in [0, n), n > 0. The modulo bias is below n / 2^64: nothing a test or a
 * generated vocabulary can see. */
static inline uint64_t rng_below(uint64_t *state, uint64_t n)
{
    return rng_next(state) % n;
}

#endif

/* sampler.h — what a request asks of generation (struct gen_params), one row of logits to
 * sample (struct sample_row) and its result, and the CPU reference sampler. The GPU
 * sampler (kernels/sampling.cu) implements the same contract; both draw randomness from
 * sample_hash() so that a seed gives the same stream on either backend and in any batch.
 *
 * Order of operations for one row (vLLM's):
 *   logprobs  = log_softmax(raw logits)                   (reported; nothing below changes them)
 *   penalties : repetition over prompt+output tokens (logit > 0 ? /r : *r), then
 *               frequency and presence over output tokens (logit -= f*count + p*(count > 0))
 *   banned    : logit = -inf for each banned id (EOS and stop ids before min_tokens)
 *   allowed   : with a grammar, logit = -inf for every token its bitmask leaves out
 *   greedy    : temperature < SAMPLE_GREEDY_EPS → argmax (lowest id on ties); done
 *   otherwise : logits /= temperature; p = softmax; keep p >= min_p * max(p); keep the top_k
 *               largest (all tied with the k-th too); keep the smallest prefix of the
 *               descending order whose mass reaches top_p (the crossing token included);
 *               token = argmax over kept i of p_i / E_i, E_i = sample_exponential(seed,
 *               counter, i) (the exponential race: exact sampling, order-free, parallel). */
#ifndef OSPREY_SAMPLER_H
#define OSPREY_SAMPLER_H

#include <math.h>     /* log */
#include <stdbool.h>
#include <stdint.h>

#ifdef __CUDACC__
#define SAMPLE_HD __host__ __device__
#else
#define SAMPLE_HD
#endif

#define SAMPLE_MAX_LOGPROBS 20
#define SAMPLE_GREEDY_EPS   1e-5f

struct grammar;   /* engine/grammar/grammar.h: a compiled grammar, opaque here */

/* What one request asks for; validated at the edge (server/openai.c) before it gets here. */
struct gen_params {
    int max_tokens;            /* output tokens, >= 1 */
    int min_tokens;            /* EOS and stop token ids are banned before this many */
    float temperature;         /* 0 = greedy */
    float top_p;               /* (0, 1]; 1 = off */
    int top_k;                 /* <= 0 = off */
    float min_p;               /* [0, 1]; 0 = off */
    float presence_penalty;    /* [-2, 2]; 0 = off */
    float frequency_penalty;   /* [-2, 2]; 0 = off */
    float repetition_penalty;  /* > 0; 1 = off */
    bool has_seed;
    uint64_t seed;             /* when !has_seed the engine draws one per request */
    int logprobs;              /* -1 = none; 0 = the chosen token's; N <= 20: and the top N */
    bool ignore_eos;           /* EOS does not finish the request */
    bool skip_special_tokens;  /* in the text returned (default true) */
    char **stop;               /* [num_stop] stop strings, owned by whoever owns the params */
    int num_stop;
    int32_t *stop_token_ids;   /* [num_stop_token_ids] extra ids that finish like EOS */
    int num_stop_token_ids;
    int priority;              /* lower runs first among waiting requests; default 0 */
    struct grammar *grammar;   /* borrowed, or NULL: the output must be a sentence of it
                                * (engine_submit takes its own reference) */
};

/* Sets the defaults above: max_tokens 16, temperature 1, top_p 1, top_k 0, min_p 0,
 * penalties off, logprobs -1, skip_special_tokens true, no stops. */
void gen_params_init(struct gen_params *p);

/* One row of logits to sample, host side. Pointers are borrowed for the call. */
struct sample_row {
    float temperature;
    int top_k;
    float top_p, min_p;
    float presence_penalty, frequency_penalty, repetition_penalty;
    uint64_t seed;
    uint32_t counter;          /* tokens generated so far by this request: one draw per step */
    int num_logprobs;          /* -1 none, 0 chosen only, N chosen + top N */
    const int32_t *prompt;     /* [num_prompt] for the repetition penalty */
    int num_prompt;
    const int32_t *output;     /* [num_output] tokens generated so far */
    int num_output;
    const int32_t *banned;     /* [num_banned] ids set to -inf */
    int num_banned;
    const uint32_t *allowed;   /* [(vocab + 31) / 32] bit i: token i may come (a grammar's
                                  mask, EOS included when it may end), or NULL: all */
};

struct sample_result {
    int32_t token;
    float logprob;                                   /* of token, from the raw logits */
    int num_top;                                     /* entries below (num_logprobs, or 0) */
    int32_t top_ids[SAMPLE_MAX_LOGPROBS];            /* descending by logprob, lowest id on ties */
    float top_logprobs[SAMPLE_MAX_LOGPROBS];
};

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

/* The CPU reference: samples one row of `vocab` f32 logits (not modified) per the order of
 * operations above. scratch holds 2 * vocab floats. Returns 0. */
int sampler_sample_row(const float *logits, int vocab, const struct sample_row *row,
                       struct sample_result *out, float *scratch);

#endif

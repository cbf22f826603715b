/* sampler.h — one row of logits to sample (struct sample_row) and its result, and the CPU
 * reference sampler. What a request asks for is struct gen_params (engine/gen_params.h);
 * the engine turns it into a sample_row per step. The GPU
 * sampler (kernels/sampling.cu) implements the same contract; both draw randomness from
 * sample_hash() so that a seed gives the same stream on either backend and in any batch.
 *
 * Order of operations for one row (vLLM's):
 *   logprobs  = log_softmax(raw logits)                   (reported; nothing below changes them)
 *   allowed   : every id outside allowed_token_ids (when given) = -inf   (vLLM's order:
 *   bias      : logit += logit_bias[id]                     these two before the penalties)
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

#include <stdbool.h>
#include <stdint.h>

#include "engine/base/sample_hash.h"   /* sample_hash, sample_exponential */

#define SAMPLE_MAX_LOGPROBS 20
#define SAMPLE_GREEDY_EPS   1e-5f

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
    const int32_t *allowed_ids;   /* [num_allowed_ids] allowed_token_ids: the only ids that
                                   * may be drawn; 0: every id */
    int num_allowed_ids;
    const int32_t *bias_ids;   /* [num_bias] ids whose logit gets bias[i] added */
    const float *bias;
    int num_bias;
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

/* allowed_token_ids as a mask of words uint32 words (sample_row.allowed's layout): bit i set
 * for each listed id in [0, 32 * words), every other bit clear. The engine hands the GPU
 * sampler allowed_token_ids this way (alone, or ANDed with a grammar's mask); sampling with
 * the mask equals sampling with allowed_ids, since nothing after either pass revives a
 * -inf logit. */
void sampler_ids_to_mask(const int32_t *ids, int n, uint32_t *mask, int words);

/* The CPU reference: samples one row of `vocab` f32 logits (not modified) per the order of
 * operations above. scratch holds 2 * vocab floats. Returns 0. */
int sampler_sample_row(const float *logits, int vocab, const struct sample_row *row,
                       struct sample_result *out, float *scratch);

#endif

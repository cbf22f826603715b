/* gen_params.h — what one request asks of generation: the sampling parameters, limits and
 * stops of an OpenAI request, validated at the edge (server/openai_parse.c) and handed to
 * engine_submit() (engine/engine.h), which deep-copies it. The engine turns it into one
 * struct sample_row per step (engine/sampler.h) and into the scheduler's limits. */
#ifndef OSPREY_GEN_PARAMS_H
#define OSPREY_GEN_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

struct grammar;   /* engine/grammar/grammar.h: a compiled grammar, opaque here */

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
    bool include_stop_str_in_output;   /* the stop string that ended the text stays in it */
    int32_t *logit_bias_ids;   /* [num_logit_bias] ids whose logit gets logit_bias[i] added */
    float *logit_bias;         /* [num_logit_bias] in [-100, 100] (OpenAI's logit_bias) */
    int num_logit_bias;
    int32_t *allowed_token_ids;    /* [num_allowed_token_ids] only these may be sampled; none: all */
    int num_allowed_token_ids;
    struct grammar *grammar;   /* borrowed, or NULL: the output must be a sentence of it
                                * (engine_submit takes its own reference) */
};

/* Sets the defaults above: max_tokens 16, temperature 1, top_p 1, top_k 0, min_p 0,
 * penalties off, logprobs -1, skip_special_tokens true, no stops. */
void gen_params_init(struct gen_params *p);

#endif

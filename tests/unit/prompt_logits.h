/* prompt_logits.h — the logits of one fixed prompt through the runner on the cpu backend,
 * every position sampled in one prefill: what the fp8_model and mxfp4 suites compare between
 * a quantized checkpoint and its dequantized twin. */
#ifndef OSPREY_TEST_PROMPT_LOGITS_H
#define OSPREY_TEST_PROMPT_LOGITS_H

#include <stdbool.h>

#include "engine/base/util.h"

#define PROMPT_TOKENS 40   /* tokens of the prompt whose logits are compared: three KV blocks */

struct prompt_opts {
    enum dtype kv;
    bool quantize;
    bool calc;                 /* --calculate-kv-scales */
    float *scales;             /* when not NULL: [layers][2] k, v scales after the prefill */
};

/* logits[PROMPT_TOKENS, vocab] (malloc'd) of the model in dir; *vocab its vocabulary size. */
float *prompt_logits(const char *dir, struct prompt_opts ro, int *vocab);

#endif

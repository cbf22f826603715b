/* prompt_logits.h — the logits of one fixed prompt through the runner on the cpu backend,
 * every position sampled in one prefill, and `osprey generate`'s greedy ids: what the
 * fp8_model and mxfp4 suites compare between a quantized checkpoint and its dequantized twin. */
#ifndef OSPREY_TEST_PROMPT_LOGITS_H
#define OSPREY_TEST_PROMPT_LOGITS_H

#include <stdbool.h>
#include <stddef.h>

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

/* `osprey generate --model dir` (OSPREY_BIN, else build/osprey) on a fixed prompt, 24 greedy
 * tokens with --threads 2 and `extra` options: its JSON ids into out[len]. */
void osprey_generate_ids(const char *dir, const char *extra, char *out, size_t len);

#endif

/* naive_forward.h — an independent reference forward for the engine's tests (llama2.c
 * style, double precision): every Llama-family feature the runner supports (GQA, biases,
 * q/k norm, rope scaling, sliding windows, tied embeddings) and Gemma 2/3's ((1 + w) and
 * sandwich norms, scaled embeddings, GeGLU, query_pre_attn_scalar, soft-caps, local RoPE),
 * and gpt-oss's (sinks, o bias, YaRN, the biased router's top-k softmax, interleaved experts
 * with the clamped SwiGLU), written from the math of transformers' modeling files. */
#ifndef OSPREY_TEST_NAIVE_FORWARD_H
#define OSPREY_TEST_NAIVE_FORWARD_H

#include <stdint.h>

#include "engine/model/model.h"

/* Logits of every position of tokens[0..len): logits[len, vocab]. */
void naive_forward(const struct model *m, const int32_t *tokens, int len, double *logits);

#endif

/* scale.c — elementwise scalings of whole rows, CPU reference: Gemma's embedding scale
 * (x · sqrt(hidden)) and its final logit soft-cap (cap · tanh(logit / cap)). */
#include <math.h>

#include "engine/cpu/cpu_ops.h"

/* In place x[n, dim] *= s. */
int scale_cpu(float *x, int n, int dim, float s)
{
    for (size_t i = 0; i < (size_t)n * dim; i++)
        x[i] *= s;
    return 0;
}

/* In place logits[n, vocab] = cap * tanh(logits / cap); cap > 0. */
int softcap_cpu(float *logits, int n, int vocab, float cap)
{
    for (size_t i = 0; i < (size_t)n * vocab; i++)
        logits[i] = cap * tanhf(logits[i] / cap);
    return 0;
}

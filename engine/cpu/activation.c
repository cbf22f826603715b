/* activation.c — SwiGLU's gate: out = silu(gate) * up, CPU reference. The gate_up rows hold
 * [gate | up] (engine/weights.c fuses the two projections in that order). */
#include <math.h>

#include "engine/cpu/cpu_ops.h"

/* out[n, ffn] = silu(gate_up[:, :ffn]) * gate_up[:, ffn:], silu(x) = x / (1 + e^-x). */
int silu_mul_cpu(float *out, const float *gate_up, int n, int ffn)
{
    for (int t = 0; t < n; t++) {
        const float *g = gate_up + (size_t)t * 2 * ffn, *u = g + ffn;
        float *o = out + (size_t)t * ffn;

        for (int i = 0; i < ffn; i++)
            o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
    return 0;
}

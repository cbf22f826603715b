/* activation.c — the gated MLP's activations, CPU reference: SwiGLU's out = silu(gate) * up
 * (Llama), GeGLU's out = gelu_tanh(gate) * up (Gemma) and gpt-oss's clamped SwiGLU. The
 * gate_up rows hold [gate | up] (engine/weights.c fuses the two projections in that order,
 * and de-interleaves gpt-oss's). */
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

/* out[n, ffn] = gelu_tanh(gate_up[:, :ffn]) * gate_up[:, ffn:], with PyTorch's
 * gelu(approximate="tanh"): x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x³))). */
int gelu_tanh_mul_cpu(float *out, const float *gate_up, int n, int ffn)
{
    const float k = 0.7978845608028654f;   /* sqrt(2 / pi) */

    for (int t = 0; t < n; t++) {
        const float *g = gate_up + (size_t)t * 2 * ffn, *u = g + ffn;
        float *o = out + (size_t)t * ffn;

        for (int i = 0; i < ffn; i++) {
            float x = g[i];
            o[i] = 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x))) * u[i];
        }
    }
    return 0;
}

/* gpt-oss's experts: g = min(gate, limit), u = clamp(up, -limit, limit),
 * out = (u + 1) * g * sigmoid(alpha * g), over out[n, ffn] from gate_up[n, 2 ffn]. */
int swiglu_oai_mul_cpu(float *out, const float *gate_up, int n, int ffn, float alpha, float limit)
{
    for (int t = 0; t < n; t++) {
        const float *g = gate_up + (size_t)t * 2 * ffn, *u = g + ffn;
        float *o = out + (size_t)t * ffn;

        for (int i = 0; i < ffn; i++) {
            float x = fminf(g[i], limit), y = fmaxf(fminf(u[i], limit), -limit);

            o[i] = (y + 1.0f) * x / (1.0f + expf(-alpha * x));
        }
    }
    return 0;
}
